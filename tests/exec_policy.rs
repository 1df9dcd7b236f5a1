//! The exec policy of the config file (`allow_exec`, `[exec]` allowed,
//! env_clear, timeout, shell) against the real daemon.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A daemon started with `--config` on a file holding `toml`. The directory
/// holding the file lives as long as the daemon.
struct Configured {
    d: Daemon,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Configured {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.d
    }
}

fn with_config(toml: &str) -> Configured {
    with_config_custom(toml, |_| {})
}

fn with_config_custom(toml: &str, tweak: impl FnOnce(&mut std::process::Command)) -> Configured {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferryd.toml");
    write_file(&path, toml.as_bytes());
    let d = Daemon::start_custom(&["--config", path.to_str().unwrap()], tweak);
    Configured { d, _dir: dir }
}

/// Sends an exec and reads its one reply, which must be an error; the code.
fn refused(c: &mut Raw, exec: Value) -> Value {
    c.send(exec, b"");
    let (h, body) = c.frame();
    assert_eq!(h["type"], "error", "{h}");
    assert!(body.is_empty());
    h
}

/// The connection is still served: a ping gets its pong.
fn still_open(c: &mut Raw) {
    c.send(json!({"type":"ping","id":"after"}), b"");
    let (h, _) = c.frame();
    assert_eq!(h, json!({"type":"pong","id":"after"}));
}

fn run(c: &mut Raw, exec: Value) -> (String, Value) {
    c.send(exec, b"");
    let (out, err, exit) = c.exec_output();
    assert_eq!(exit["code"], 0, "{exit}: {}", String::from_utf8_lossy(&err));
    (String::from_utf8(out).unwrap(), exit)
}

#[test]
fn an_argv_program_outside_the_list_is_not_allowed_and_does_not_run() {
    let d = with_config(
        r#"
allow_exec = true
[exec]
allowed = ["echo", "/usr/bin/env"]
"#,
    );
    let mut c = d.authed();
    let h = refused(&mut c, json!({"type":"exec","argv":["touch","made"],"id":7}));
    assert_eq!(h["code"], "not-allowed", "{h}");
    assert_eq!(h["id"], 7);
    assert!(h["message"].as_str().unwrap().contains("touch"), "{h}");
    assert!(!d.path("made").exists(), "a refused program ran");
    still_open(&mut c);

    // A name on the list runs, bare or by the absolute path it resolves to.
    assert_eq!(run(&mut c, json!({"type":"exec","argv":["echo","hi"]})).0, "hi\n");
    let echo = ["/usr/bin/echo", "/bin/echo"].into_iter().find(|p| Path::new(p).exists()).unwrap();
    assert_eq!(run(&mut c, json!({"type":"exec","argv":[echo,"abs"]})).0, "abs\n");
    // An absolute entry runs, and so does the bare name that resolves to it.
    assert!(run(&mut c, json!({"type":"exec","argv":["/usr/bin/env"]})).0.contains("PATH="));
    assert!(run(&mut c, json!({"type":"exec","argv":["env"]})).0.contains("PATH="));

    // A relative path with a slash never runs, even to a listed name; nor
    // does a request PATH change what a name means.
    std::fs::create_dir(d.path("bin")).unwrap();
    std::fs::copy("/bin/sh", d.path("bin/echo")).unwrap();
    for argv in [json!(["./bin/echo", "x"]), json!(["bin/echo", "x"])] {
        let h = refused(&mut c, json!({"type":"exec","argv":argv}));
        assert_eq!(h["code"], "not-allowed", "{h}");
    }
    let root = d.root.path().to_str().unwrap();
    let (out, _) = run(
        &mut c,
        json!({"type":"exec","argv":["echo","-c","echo from sh"],"env":{"PATH":format!("{root}/bin")}}),
    );
    assert_eq!(out, "-c echo from sh\n", "the request's PATH chose the program");
    still_open(&mut c);
}

#[test]
fn cmd_is_checked_as_its_shell() {
    let d = with_config(
        r#"
[exec]
allowed = ["echo"]
"#,
    );
    let mut c = d.authed();
    let h = refused(&mut c, json!({"type":"exec","cmd":"echo hi"}));
    assert_eq!(h["code"], "not-allowed", "{h}");
    assert!(h["message"].as_str().unwrap().contains("argv"), "the message points at argv: {h}");
    still_open(&mut c);
    assert_eq!(run(&mut c, json!({"type":"exec","argv":["echo","hi"]})).0, "hi\n");
}

#[test]
fn cmd_runs_when_the_shell_is_listed_by_name_or_path() {
    for entry in ["sh", "/bin/sh"] {
        let d = with_config(&format!("[exec]\nallowed = [\"{entry}\"]\n"));
        let mut c = d.authed();
        assert_eq!(run(&mut c, json!({"type":"exec","cmd":"echo $((6 * 7))"})).0, "42\n", "{entry}");
        // The shell is allowed, not the programs it could be named as.
        let h = refused(&mut c, json!({"type":"exec","argv":["echo","no"]}));
        assert_eq!(h["code"], "not-allowed", "{entry}: {h}");
    }
}

#[test]
fn allow_exec_false_is_exec_disabled() {
    let d = with_config("allow_exec = false\n");
    let mut c = d.authed();
    for exec in [json!({"type":"exec","cmd":"true"}), json!({"type":"exec","argv":["true"]})] {
        let h = refused(&mut c, exec);
        assert_eq!(h["code"], "exec-disabled", "{h}");
    }
    still_open(&mut c);
}

fn env_names(out: &str) -> Vec<&str> {
    let mut names: Vec<&str> = out.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    names.sort();
    names
}

#[test]
fn env_clear_keeps_only_path_home_lang_and_the_request_env() {
    let tweak = |cmd: &mut std::process::Command| {
        cmd.env("FERRY_TEST_LEAK", "1").env("HOME", "/tmp/ferry-home").env("LANG", "C.UTF-8");
    };
    let d = with_config_custom("[exec]\nenv_clear = true\n", tweak);
    let mut c = d.authed();
    let (out, _) = run(&mut c, json!({"type":"exec","argv":["env"],"env":{"FOO":"bar"}}));
    assert_eq!(env_names(&out), ["FOO", "HOME", "LANG", "PATH"], "{out}");
    assert!(out.lines().any(|l| l == "FOO=bar"), "{out}");
    assert!(out.lines().any(|l| l == "HOME=/tmp/ferry-home"), "{out}");
    assert!(out.lines().any(|l| l == "LANG=C.UTF-8"), "{out}");
    assert!(out.lines().any(|l| l == format!("PATH={}", std::env::var("PATH").unwrap())), "{out}");
    // The request's env may replace a kept one; a cmd's shell sees the same.
    let (out, _) = run(&mut c, json!({"type":"exec","cmd":"env","env":{"LANG":"C"}}));
    assert!(out.lines().any(|l| l == "LANG=C"), "{out}");
    assert!(!out.contains("FERRY_TEST_LEAK"), "{out}");

    // Without env_clear the daemon's environment is inherited (the control).
    let d = with_config_custom("[exec]\nenv_clear = false\n", tweak);
    let mut c = d.authed();
    let (out, _) = run(&mut c, json!({"type":"exec","argv":["env"]}));
    assert!(out.lines().any(|l| l == "FERRY_TEST_LEAK=1"), "{out}");
}

#[test]
fn a_reload_prepares_the_environment_of_the_new_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferryd.toml");
    write_file(&path, b"[exec]\nenv_clear = false\n");
    let d = Daemon::start_custom(&["--config", path.to_str().unwrap()], |cmd| {
        cmd.env("FERRY_TEST_LEAK", "1");
    });
    let mut c = d.authed();
    let (out, _) = run(&mut c, json!({"type":"exec","argv":["env"]}));
    assert!(out.lines().any(|l| l == "FERRY_TEST_LEAK=1"), "{out}");
    for (clear, n) in [(true, 1), (false, 2)] {
        write_file(&path, format!("[exec]\nenv_clear = {clear}\n").as_bytes());
        d.signal(libc::SIGHUP);
        eventually("the reload", WAIT, || d.log.count("configuration reloaded") >= n);
        // The same connection: a new request takes the new configuration.
        let (out, _) = run(&mut c, json!({"type":"exec","argv":["env"]}));
        assert_eq!(out.contains("FERRY_TEST_LEAK=1"), !clear, "env_clear = {clear}: {out}");
        assert!(!out.contains("NOTIFY_SOCKET"), "{out}");
    }
}

/// Runs `exec` and reads up to its `exit`; the exit header and how long it took.
fn timed(c: &mut Raw, exec: Value) -> (Value, Duration) {
    let t = Instant::now();
    c.send(exec, b"");
    let (_, _, exit) = c.exec_output();
    (exit, t.elapsed())
}

#[test]
fn the_timeout_ceiling_applies_to_requests_with_and_without_a_timeout() {
    let d = with_config("[exec]\ntimeout = 1\n");
    let mut c = d.authed();
    for exec in [
        json!({"type":"exec","argv":["sleep","30"]}),
        json!({"type":"exec","argv":["sleep","30"],"timeout":60}),
        json!({"type":"exec","cmd":"sleep 30; echo never"}),
    ] {
        let (exit, took) = timed(&mut c, exec.clone());
        assert_eq!(exit["timed_out"], true, "{exec}: {exit}");
        assert_eq!(exit["signal"], libc::SIGTERM, "{exec}: {exit}");
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "{exec}: {took:?}");
    }
    // A shorter timeout of the request's own stays its own.
    let (exit, took) = timed(&mut c, json!({"type":"exec","argv":["sleep","30"],"timeout":0.2}));
    assert_eq!(exit["timed_out"], true, "{exit}");
    assert!(took < Duration::from_millis(900), "{took:?}");
    // A command that ends in time is not marked.
    let (exit, _) = timed(&mut c, json!({"type":"exec","argv":["true"]}));
    assert_eq!(exit, json!({"type":"exit","code":0,"signal":null}));
}

#[test]
fn the_configured_shell_runs_cmd() {
    let Some(bash) = ["/bin/bash", "/usr/bin/bash"].into_iter().find(|p| Path::new(p).exists()) else {
        eprintln!("no bash here: skipped");
        return;
    };
    let d = with_config(&format!("[exec]\nshell = \"{bash}\"\n"));
    let mut c = d.authed();
    let (out, _) = run(&mut c, json!({"type":"exec","cmd":"echo \"[$BASH_VERSION]\""}));
    assert!(out.len() > "[]\n".len() && out.starts_with('['), "not bash: {out:?}");
    // The allow-list then checks that shell.
    let d = with_config(&format!("[exec]\nshell = \"{bash}\"\nallowed = [\"sh\"]\n"));
    let mut c = d.authed();
    let h = refused(&mut c, json!({"type":"exec","cmd":"true"}));
    assert_eq!(h["code"], "not-allowed", "{h}");
    let d = with_config(&format!("[exec]\nshell = \"{bash}\"\nallowed = [\"bash\"]\n"));
    let mut c = d.authed();
    let (out, _) = run(&mut c, json!({"type":"exec","cmd":"echo \"[$BASH_VERSION]\""}));
    assert!(out.len() > "[]\n".len(), "not bash: {out:?}");
}

#[test]
fn the_policy_answers_at_once_even_when_every_child_slot_is_busy() {
    let d = with_config("max_children = 1\n[exec]\nallowed = [\"sh\", \"echo\"]\n");
    let mut busy = d.authed();
    busy.send(json!({"type":"exec","argv":["sh","-c","echo started; sleep 5"]}), b"");
    assert_eq!(busy.frame().1, b"started\n");
    let mut c = d.authed();
    let t = Instant::now();
    let e = refused(&mut c, json!({"type":"exec","argv":["touch","x"]}));
    assert_eq!(e["code"], "not-allowed");
    assert!(t.elapsed() < Duration::from_secs(3), "the refusal did not wait for the slot: {:?}", t.elapsed());
    still_open(&mut c);
}
