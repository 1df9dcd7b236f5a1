//! ferryd as an operator runs it: the config file (each key seen to work),
//! --check-config, bad configs, HUP reloads, the TERM drain, daemon mode with
//! its pidfile, syslog or log file (reopened on HUP), and systemd readiness
//! notifications.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

fn ferryd(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(ferryd_bin());
    cmd.args(args).env("FERRY_KEYS", "/nonexistent/ferry-test-keys");
    run_with_input(cmd, b"")
}

/// A config file with a fresh keys file beside it.
fn config_dir(toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    ferry::keys::generate(&dir.path().join("keys"), "k").unwrap();
    let file = dir.path().join("ferryd.toml");
    std::fs::write(&file, format!("keys = \"keys\"\nroot = \".\"\n{toml}")).unwrap();
    (dir, file)
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let (dir, file) = config_dir("max_children = 3\n[exec]\nallowed = [\"ls\"]\n[log]\nlevel = \"debug\"\n");
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config", "--max-connections", "99"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for want in ["max_children = 3", "max_connections = 99", "allowed = [\"ls\"]", "level = \"debug\"", "key ids: k"] {
        assert!(printed.contains(want), "{want:?} missing from:\n{printed}");
    }
    assert!(printed.contains(&dir.path().canonicalize().unwrap().display().to_string()), "root is resolved: {printed}");
    let secret = &ferry::keys::load(&dir.path().join("keys")).unwrap().keys[0].secret;
    assert!(!printed.contains(secret.as_str()), "a secret was printed");
    // The printed configuration is itself a valid config file.
    std::fs::write(dir.path().join("again.toml"), &printed).unwrap();
    let again = ferryd(&["--config", dir.path().join("again.toml").to_str().unwrap(), "--check-config"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

#[test]
fn bad_configs_exit_78_naming_the_key() {
    let cases = [
        ("listen_on = [\"127.0.0.1:1\"]\n", "line 3, key listen_on: unknown field"),
        ("max_children = \"many\"\n", "line 3, key max_children: invalid type"),
        ("[exec]\ntimeout = 0\n", "key exec.timeout: 0 is out of range"),
        ("[log]\ntarget = \"printer\"\n", "key log.target: unknown variant"),
    ];
    for (toml, want) in cases {
        let (_dir, file) = config_dir(toml);
        let out = ferryd(&["--config", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(78), "{toml}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{toml:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    // A missing keys file, and one others can read.
    let (dir, file) = config_dir("");
    std::fs::set_permissions(dir.path().join("keys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ferryd(&["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("readable by group or others"), "{}", text(&out.stderr));
    std::fs::remove_file(dir.path().join("keys")).unwrap();
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("keys file"), "{}", text(&out.stderr));
    // A config file that is not there.
    let out = ferryd(&["--config", "/nonexistent/ferryd.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("/nonexistent/ferryd.toml"));
}

#[test]
fn config_keys_take_effect_and_flags_override_them() {
    let (d, _) = Daemon::start_config(
        "max_upload = 10\nread_only = false\nmax_header = 256\nauth_timeout = 1\n[log]\nlevel = \"debug\"\n",
        &["--max-upload", "100"],
        |_| {},
    );
    // listen, root and keys came from the file alone.
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"f"}), &[1u8; 50]);
    assert_eq!(c.frame().0["type"], "ok", "the flag's max_upload (100) beat the file's (10)");
    assert!(d.path("f").exists(), "root comes from the file");
    c.send(json!({"type":"put","path":"g"}), &[1u8; 101]);
    assert_eq!(c.frame().0["code"], "too-large");
    // max_header: a 300-byte header is over 256.
    c.send(json!({"type":"ping","pad":"x".repeat(300)}), b"");
    assert_eq!(c.frame().0["code"], "frame-too-large");
    // log.level = debug shows debug lines.
    assert!(d.log.wait_for("debug", WAIT).is_some());
    // auth_timeout = 1: a silent client is dropped in about a second.
    let mut silent = d.raw();
    assert!(silent.closed(), "closed after auth_timeout");
}

#[test]
fn limits_and_policies_from_the_file() {
    let (d, _) = Daemon::start_config(
        "max_connections = 2\nmax_children = 1\nidle_timeout = 1\nread_only = true\nallow_exec = false\n",
        &[],
        |_| {},
    );
    let mut a = d.authed();
    a.send(json!({"type":"exec","cmd":"true"}), b"");
    assert_eq!(a.frame().0["code"], "exec-disabled");
    a.send(json!({"type":"put","path":"x"}), b"x");
    assert_eq!(a.frame().0["code"], "read-only");
    let _b = d.authed();
    let mut third = Raw::connect(d.addr);
    assert_eq!(third.frame().0["code"], "too-many-connections");
    // idle_timeout = 1: an idle authenticated connection is closed.
    assert!(a.closed(), "idle connection closed");
}

#[test]
fn max_children_from_the_file_queues_execs() {
    let (d, _) = Daemon::start_config("max_children = 1\n", &[], |_| {});
    let mut a = d.authed();
    let mut b = d.authed();
    a.send(json!({"type":"exec","cmd":"echo started; sleep 1; echo a"}), b"");
    assert_eq!(a.frame().1, b"started\n", "a holds the only child slot");
    b.send(json!({"type":"exec","cmd":"echo b"}), b"");
    let t = std::time::Instant::now();
    let (out, _, _) = b.exec_output();
    assert_eq!(out, b"b\n");
    assert!(t.elapsed() >= Duration::from_millis(500), "b waited for a's slot");
    assert_eq!(a.exec_output().0, b"a\n");
}

#[test]
fn hup_reloads_keys_and_limits_without_dropping_connections() {
    let (d, file) = Daemon::start_config("", &[], |_| {});
    let mut old_conn = d.authed();
    // Replace the keys file: a new key in, the old one out; and make the server read-only.
    let new_keys = d.conf_dir().join("keys2");
    ferry::keys::generate(&new_keys, "new").unwrap();
    let new_key = ferry::keys::load(&new_keys).unwrap().keys[0].clone();
    let text = std::fs::read_to_string(&file).unwrap().replace(&format!("{:?}", d.keys_path), &format!("{new_keys:?}"));
    std::fs::write(&file, format!("{text}read_only = true\n")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(d.log.wait_for("configuration reloaded", WAIT).is_some(), "{}", d.log.text());

    let mut fresh = d.raw();
    fresh.auth(&new_key);
    fresh.send(json!({"type":"put","path":"x"}), b"x");
    assert_eq!(fresh.frame().0["code"], "read-only", "the new limits apply to new requests");
    let mut refused = d.raw();
    let cn = ferry::proto::auth::to_hex(&ferry::proto::auth::fresh_nonce());
    let mac = ferry::proto::auth::client_mac(d.key.secret.as_bytes(), &refused.server_nonce, &cn);
    refused.send(json!({"type":"auth","key_id":d.key.id,"nonce":cn,"mac":mac}), b"");
    assert_eq!(refused.frame().0["code"], "auth-failed", "the removed key no longer authenticates");
    // The connection made with the old key is still served.
    old_conn.send(json!({"type":"ping","id":1}), b"");
    assert_eq!(old_conn.frame().0, json!({"type":"pong","id":1}));
}

#[test]
fn hup_with_a_broken_config_keeps_the_running_one() {
    let (d, file) = Daemon::start_config("", &[], |_| {});
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}max_children = \"lots\"\n")).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.log.wait_for("keeping the running configuration", WAIT).expect("the failed reload is logged");
    assert!(line.contains("max_children"), "{line}");
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"echo still"}), b"");
    assert_eq!(c.exec_output().0, b"still\n");
}

#[test]
fn the_drain_sends_term_before_kill() {
    let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"trap 'echo got TERM; exit 7' TERM; echo started; sleep 600 & wait"}), b"");
    let (h, body) = c.frame();
    assert_eq!((h["type"].as_str(), body.as_slice()), (Some("stdout"), &b"started\n"[..]));
    d.signal(libc::SIGTERM);
    let (out, _, exit) = c.exec_output();
    assert_eq!(out, b"got TERM\n");
    assert_eq!(exit["code"], 7, "the command got TERM and could clean up");
    assert_eq!(d.wait_exit(WAIT), Some(0));
}

#[test]
fn daemon_mode_pidfile_syslog_and_a_second_instance() {
    let syslog = Inbox::new();
    let (dir, file) = config_dir(&format!(
        "listen = [\"127.0.0.1:0\"]\npidfile = \"ferryd.pid\"\n[log]\nfacility = \"local3\"\nsocket = {:?}\n",
        syslog.path
    ));
    let pidfile = dir.path().join("ferryd.pid");
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "a detached daemon prints nothing");
    // The daemon logs to syslog (log.target auto): facility local3 (19), info (6) = <158>.
    let line = syslog.wait_for("listening on");
    assert!(line.starts_with("<158>"), "{line}");
    assert!(line.contains("ferryd"), "{line}");
    let addr: std::net::SocketAddr = line.rsplit("listening on ").next().unwrap().trim().parse().unwrap();
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let guard = KillOnDrop(pid);
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"), "the daemon changed to /");

    // It serves, and its access to a key works as in the foreground.
    let key = ferry::keys::load(&dir.path().join("keys")).unwrap().keys[0].clone();
    let mut c = Raw::connect(addr);
    let hello = c.frame().0;
    c.server_nonce = hello["nonce"].as_str().unwrap().to_string();
    c.auth(&key);

    // A second instance on the same pidfile refuses, on the operator's terminal.
    let second = ferryd(&["--config", file.to_str().unwrap(), "--daemon", "--listen", "127.0.0.1:0"]);
    assert_eq!(second.status.code(), Some(69));
    let err = text(&second.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&pid.to_string()) && err.contains("pidfile"), "{err}");

    // TERM: the daemon exits and removes its pidfile.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually("the daemon exits", WAIT, || !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
    eventually("the pidfile is removed", WAIT, || !pidfile.exists());
    std::mem::forget(guard);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

/// Kills a detached daemon if a test fails half way.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let notify = Inbox::new();
    let mut d = Daemon::start_custom(&[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    let ready = notify.wait_for("READY=1");
    assert!(ready.contains(&format!("STATUS=serving {}", d.root.path().canonicalize().unwrap().display())), "{ready}");
    assert!(ready.contains(&d.addr.to_string()), "{ready}");
    d.signal(libc::SIGHUP);
    notify.wait_for("RELOADING=1");
    notify.wait_for("READY=1");
    d.signal(libc::SIGTERM);
    notify.wait_for("STOPPING=1");
    assert_eq!(d.wait_exit(WAIT), Some(0));
}

#[test]
fn daemon_mode_drops_to_the_configured_user_and_group_after_binding() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let syslog = Inbox::new();
    // Port 0 is as good as a privileged one here: the socket is bound before the drop.
    let (_dir, file) = config_dir(&format!(
        "listen = [\"127.0.0.1:0\"]\nuser = \"nobody\"\ngroup = \"nogroup\"\n[log]\nsocket = {:?}\n",
        syslog.path
    ));
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let line = syslog.wait_for("listening on");
    let pid: i32 = line.split("ferryd[").nth(1).and_then(|r| r.split(']').next()).unwrap().parse().unwrap();
    let _guard = KillOnDrop(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = Command::new("id").args(["-u", "nobody"]).output().unwrap().stdout;
    let nobody = text(&nobody).trim().to_string();
    assert!(uid.split_whitespace().skip(1).all(|u| u == nobody), "{uid} (nobody is {nobody})");
    let gid = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    let nogroup = Command::new("getent").args(["group", "nogroup"]).output().unwrap().stdout;
    let nogroup = text(&nogroup).split(':').nth(2).unwrap_or("").to_string();
    assert!(gid.split_whitespace().skip(1).all(|g| g == nogroup), "{gid} (nogroup is {nogroup})");
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert!(groups.split_whitespace().skip(1).all(|g| g == nogroup), "no supplementary groups left: {groups}");
}

#[test]
fn an_unknown_user_is_a_config_error_before_detaching() {
    let (_dir, file) = config_dir("listen = [\"127.0.0.1:0\"]\nuser = \"no-such-user-ferry\"\n[log]\ntarget = \"stderr\"\n");
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
    assert_eq!(out.status.code(), Some(78), "checked before detaching");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("user \"no-such-user-ferry\": no such user"), "{err}");
}

#[test]
fn drain_timeout_and_max_upload_from_the_file() {
    let (mut d, _) = Daemon::start_config("drain_timeout = 1\nmax_upload = 5\n", &[], |_| {});
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"f"}), b"123456");
    assert_eq!(c.frame().0["code"], "too-large");
    c.send(json!({"type":"put","path":"f"}), b"12345");
    assert_eq!(c.frame().0["type"], "ok");
    c.send(json!({"type":"exec","cmd":"echo started; sleep 30"}), b"");
    assert_eq!(c.frame().1, b"started\n");
    let t = std::time::Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10), "drain_timeout = 1 cut the 30 s command short");
}

#[test]
fn log_target_syslog_in_the_foreground_and_the_daemon_key() {
    let syslog = Inbox::new();
    let (dir, file) = config_dir(&format!(
        "listen = [\"127.0.0.1:0\"]\n[log]\ntarget = \"syslog\"\nfacility = \"user\"\nsocket = {:?}\n",
        syslog.path
    ));
    let mut cmd = Command::new(ferryd_bin());
    cmd.arg("--config").arg(&file).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let line = syslog.wait_for("listening on");
    assert!(line.starts_with("<14>"), "user (1) and info (6): {line}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(wait_child(&mut child, "ferryd did not stop").success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("listening on"), "logs went to syslog, not stderr: {err}");

    // daemon = true in the file detaches; --foreground overrides it.
    let conf = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("daemon = true\npidfile = \"d.pid\"\n{conf}")).unwrap();
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config", "--foreground"]);
    assert!(text(&out.stdout).contains("daemon = false"), "{}", text(&out.stdout));
    let out = ferryd(&["--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pidfile = dir.path().join("d.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let _guard = KillOnDrop(pid);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually("the pidfile is removed", WAIT, || !pidfile.exists());
}

#[test]
fn commands_do_not_inherit_the_notify_socket() {
    let notify = Inbox::new();
    let d = Daemon::start_custom(&[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path).env("FERRY_TEST_MARK", "kept");
    });
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["env"]}), b"");
    let (out, _, _) = c.exec_output();
    let env = text(&out);
    assert!(env.contains("FERRY_TEST_MARK=kept"), "the control variable is inherited: {env}");
    assert!(!env.contains("NOTIFY_SOCKET"), "{env}");
}

/// Polls `path` (bounded by WAIT) until a line containing `needle` is in it;
/// returns that line. A missing file counts as an empty one.
fn wait_in_file(path: &std::path::Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no {needle:?} in {} within {WAIT:?}:\n{text}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `2026-11-25T10:00:00.123Z ferryd: LEVEL: ` at the start of `line`: the
/// stderr format, always timestamped.
fn assert_file_line(line: &str, level: &str) {
    let (ts, rest) = line.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {line:?}"));
    assert!(ts.len() == 24 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'), "not a UTC timestamp: {line:?}");
    assert!(rest.starts_with(&format!("ferryd: {level}: ")), "{line:?}");
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A syslog socket that is not there: this test's stand-in for a host
/// without /dev/log (the file target must not need one).
const NO_SYSLOG: &str = "/nonexistent/ferry-test/log";

#[test]
fn daemon_mode_logs_to_a_file_without_syslog_and_reopens_it_on_hup() {
    let (dir, file) = config_dir(&format!(
        "listen = [\"127.0.0.1:0\"]\n[log]\ntarget = \"file\"\npath = \"ferryd.log\"\nsocket = {NO_SYSLOG:?}\n"
    ));
    let (log, rotated, pidfile) = (dir.path().join("ferryd.log"), dir.path().join("ferryd.log.1"), dir.path().join("d.pid"));
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon", "--pidfile", pidfile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "a detached daemon prints nothing");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let guard = KillOnDrop(pid);

    // The lines of stderr, timestamped, in a file of mode 0640.
    let line = wait_in_file(&log, "listening on ");
    assert_file_line(&line, "info");
    assert_eq!(mode(&log), 0o640);
    let addr: std::net::SocketAddr = line.rsplit("listening on ").next().unwrap().trim().parse().unwrap();
    let key = ferry::keys::load(&dir.path().join("keys")).unwrap().keys[0].clone();
    let exec = |cmd: &str| {
        let mut c = Raw::connect(addr);
        c.server_nonce = c.frame().0["nonce"].as_str().unwrap().to_string();
        c.auth(&key);
        c.send(json!({"type":"exec","cmd":cmd}), b"");
        assert_eq!(c.exec_output().2["code"], 0);
    };
    exec("echo before");
    assert_file_line(&wait_in_file(&log, "cmd=\"echo before\""), "info");

    // logrotate: rename, then HUP; the lines from then on go to a new file.
    std::fs::rename(&log, &rotated).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_file_line(&wait_in_file(&log, "HUP: configuration reloaded"), "info");
    assert_eq!(mode(&log), 0o640, "a reopened file is new: 0640");
    exec("echo after");
    wait_in_file(&log, "cmd=\"echo after\"");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("cmd=\"echo before\"") && !old.contains("reloaded") && !old.contains("echo after"), "{old}");
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        assert_file_line(line, "info");
    }

    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually("the pidfile is removed", WAIT, || !pidfile.exists());
    wait_in_file(&log, "TERM: stopped accepting");
    std::mem::forget(guard);
}

#[test]
fn a_log_file_that_cannot_be_opened_is_a_config_error_before_detaching() {
    for path in ["/nonexistent/ferry-test/ferryd.log", "."] {
        let (dir, file) =
            config_dir(&format!("listen = [\"127.0.0.1:0\"]\npidfile = \"d.pid\"\n[log]\ntarget = \"file\"\npath = {path:?}\n"));
        let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
        assert_eq!(out.status.code(), Some(78), "{path}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line on the terminal: {err}");
        assert!(err.starts_with("ferryd: cannot open the log file "), "{err}");
        assert!(err.contains(if path == "." { "Is a directory" } else { path }), "{err}");
        assert!(!dir.path().join("d.pid").exists(), "it did not detach");
    }
}

#[test]
fn auto_in_daemon_mode_without_syslog_refuses_and_names_the_file_target() {
    let (dir, file) = config_dir(&format!("listen = [\"127.0.0.1:0\"]\npidfile = \"d.pid\"\n[log]\nsocket = {NO_SYSLOG:?}\n"));
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line on the terminal: {err}");
    assert!(err.contains(&format!("no syslog socket at {NO_SYSLOG} ")), "{err}");
    assert!(!err.contains("refused"), "{err}");
    assert!(err.contains("target = \"file\""), "{err}");
    assert!(!dir.path().join("d.pid").exists(), "it did not detach");
    // --check-config with --daemon finds the same, as 78.
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon", "--check-config"]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("no syslog socket at {NO_SYSLOG} ")), "{}", text(&out.stderr));
    // Without --daemon, auto is stderr: nothing to check.
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_config_finds_a_log_file_a_start_could_not_open_and_creates_nothing() {
    let (dir, file) = config_dir("[log]\ntarget = \"file\"\npath = \"missing/dir/ferryd.log\"\n");
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot open the log file") && err.contains("missing/dir"), "{err}");
    std::fs::create_dir_all(dir.path().join("missing/dir")).unwrap();
    let out = ferryd(&["--config", file.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!dir.path().join("missing/dir/ferryd.log").exists(), "the check created no log file");
}

#[test]
fn the_log_file_belongs_to_the_user_after_the_drop_and_a_hup_reopens_it_as_that_user() {
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: dropping privileges needs root");
        return;
    }
    let id = |args: &[&str]| -> u32 {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap().stdout;
        let out = text(&out);
        out.trim().rsplit(':').find(|f| !f.is_empty()).map_or(out.trim(), |f| f).parse().unwrap_or_else(|_| panic!("{out}"))
    };
    let nobody = id(&["id", "-u", "nobody"]);
    let nogroup = text(&Command::new("getent").args(["group", "nogroup"]).output().unwrap().stdout);
    let nogroup: u32 = nogroup.split(':').nth(2).unwrap().parse().unwrap();
    let (dir, file) = config_dir(&format!(
        "listen = [\"127.0.0.1:0\"]\npidfile = \"d.pid\"\nuser = \"nobody\"\ngroup = \"nogroup\"\n\
         [log]\ntarget = \"file\"\npath = \"logs/ferryd.log\"\nsocket = {NO_SYSLOG:?}\n"
    ));
    // The documented set-up: a log directory the run-as user may write to.
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::os::unix::fs::chown(&logs, Some(nobody), Some(nogroup)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let log = logs.join("ferryd.log");
    let out = ferryd(&["--config", file.to_str().unwrap(), "--daemon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pid: i32 = std::fs::read_to_string(dir.path().join("d.pid")).unwrap().trim().parse().unwrap();
    let _guard = KillOnDrop(pid);
    wait_in_file(&log, "running as nobody:nogroup");
    let first = wait_in_file(&log, "listening on ");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("not writable"), "no warning: the directory is right");
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!((meta.uid(), meta.gid(), mode(&log)), (nobody, nogroup, 0o640), "handed to the user at the drop");

    std::fs::rename(&log, logs.join("ferryd.log.1")).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    // The reload itself may fail (the keys file is root's), but the log is reopened first.
    wait_in_file(&log, "HUP: ");
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!((meta.uid(), meta.gid(), mode(&log)), (nobody, nogroup, 0o640), "created by the user after the drop");
    assert!(!std::fs::read_to_string(&log).unwrap().contains(&first), "a new file");
    unsafe { libc::kill(pid, libc::SIGTERM) };
    wait_in_file(&log, "TERM: stopped accepting");
}

/// ferryd.toml(5): a reload applies to open connections. A lowered
/// idle_timeout counts from each connection's last request: one already
/// idle longer is closed at once, saying how long it really was idle.
#[test]
fn hup_lowering_the_idle_timeout_applies_to_open_connections_at_once() {
    let (d, file) = Daemon::start_config("idle_timeout = 60\n", &[], |_| {});
    let mut c = d.authed();
    c.ping();
    std::thread::sleep(Duration::from_secs(3));
    let text = std::fs::read_to_string(&file).unwrap().replace("idle_timeout = 60", "idle_timeout = 1");
    std::fs::write(&file, text).unwrap();
    let t = Instant::now();
    d.signal(libc::SIGHUP);
    let (h, _) = c.frame();
    assert!(t.elapsed() < Duration::from_millis(800), "closed {:?} after the HUP", t.elapsed());
    assert_eq!(h["code"], "idle-timeout", "{h}");
    assert_eq!(h["message"], "idle for 3s", "{h}");
}
