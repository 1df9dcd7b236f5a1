//! The CLI contract: every subcommand's bad-argument path exits 2 with one
//! line on stderr that starts `ferry: ` and names the argument at fault,
//! before any keys file is read or any connection made (no server runs
//! here, and `$FERRY_KEYS` points nowhere). Also ferryd's usage errors: 64
//! with its full synopsis, and enum-like options that list their values.

mod common;

use std::process::Command;

/// Runs `ferry ARGS` and checks the contract; the line.
fn usage_error(args: &[&str], names: &str) -> String {
    let out = Command::new(common::ferry_bin())
        .args(args)
        .env("FERRY_KEYS", "/nonexistent/keys")
        .env_remove("FERRY_ENCODING")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "ferry {args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "ferry {args:?}: one line, got {err:?}");
    let line = lines[0];
    assert!(line.starts_with("ferry: "), "ferry {args:?}: {line}");
    assert!(line.contains(names), "ferry {args:?}: {line:?} does not name {names:?}");
    for leak in ["os error", "ParseIntError", "ParseFloatError", "invalid digit", "float literal", "panicked"] {
        assert!(!line.contains(leak), "ferry {args:?}: Rust internals in {line:?}");
    }
    assert!(out.stdout.is_empty(), "ferry {args:?}: nothing on stdout");
    line.to_string()
}

#[test]
fn global_options() {
    usage_error(&["-w", "0", "h"], "--timeout");
    usage_error(&["-w", "-1", "h"], "--timeout");
    usage_error(&["-w", "soon", "h"], "--timeout");
    usage_error(&["--bogus", "h"], "--bogus");
    usage_error(&["-4", "-6", "h"], "-6");
    usage_error(&["--encoding", "klingon", "h"], "klingon");
    usage_error(&[], "HOST");
    // The subcommand comes first; the line says so.
    let l = usage_error(&["127.0.0.1:7", "run", "--", "echo", "hi"], "ferry run 127.0.0.1:7");
    assert!(l.contains("subcommand comes first"), "{l}");
}

#[test]
fn run() {
    usage_error(&["run"], "HOST");
    usage_error(&["run", "h"], "COMMAND");
    usage_error(&["run", "--bogus", "h", "x"], "--bogus");
    usage_error(&["run", "-b", "h", "x"], "-b");
    usage_error(&["run", "--json", "h", "x"], "--json");
    usage_error(&["run", "-f", "0", "-H", "h", "x"], "--fanout");
    usage_error(&["run", "-H", "h"], "COMMAND");
    usage_error(&["run", "-H", "web[1-", "x"], "web[1-");
    usage_error(&["run", "-b", "--json", "-H", "h", "x"], "--json");
    usage_error(&["run", "--hostfile", "/nonexistent/hosts", "x"], "/nonexistent/hosts");
}

#[test]
fn ping() {
    usage_error(&["ping"], "HOST");
    usage_error(&["ping", "-c", "0", "h"], "--count");
    usage_error(&["ping", "-c", "many", "h"], "--count");
    usage_error(&["ping", "--interval", "-2", "h"], "--interval");
    usage_error(&["ping", "h", "extra"], "extra");
    usage_error(&["ping", "-H", "a", "b"], "\"b\"");
    let empty = tempfile::NamedTempFile::new().unwrap();
    usage_error(&["ping", "--hostfile", empty.path().to_str().unwrap()], "--hostfile");
}

#[test]
fn get() {
    usage_error(&["get"], "HOST");
    usage_error(&["get", "h"], "REMOTE");
    usage_error(&["get", "h", "."], "\".\"");
    usage_error(&["get", "-c", "h", "f", "-"], "-c");
    usage_error(&["get", "h", "a", "b", "c"], "'c'");
    usage_error(&["get", "-c", "-H", "h", "f"], "-c");
    usage_error(&["get", "-H", "h", "a", "b", "c"], "REMOTE [LOCAL]");
    usage_error(&["get", "-H", "h", "f", "-"], "stdout");
}

#[test]
fn put() {
    usage_error(&["put"], "HOST");
    usage_error(&["put", "h"], "LOCAL");
    usage_error(&["put", "h", "-"], "REMOTE");
    usage_error(&["put", "h", "a", "b", "c"], "'c'");
    usage_error(&["put", "-H", "h", "-"], "stdin");
    usage_error(&["put", "--encoding", "gbk", "h", "f"], "--encoding");
}

#[test]
fn ls_stat_keygen() {
    usage_error(&["ls"], "HOST");
    usage_error(&["ls", "h", "a", "b"], "'b'");
    usage_error(&["ls", "--bogus", "h"], "--bogus");
    usage_error(&["stat", "h"], "PATH");
    usage_error(&["stat", "-c", "1", "h", "p"], "-c");
    usage_error(&["keygen"], "FILE");
    usage_error(&["keygen", "--id"], "--id");
}

#[test]
fn help_goes_to_stdout_and_succeeds() {
    for args in [&["--help"][..], &["run", "--help"], &["get", "-h"], &["--version"]] {
        let out = Command::new(common::ferry_bin()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty() && out.stderr.is_empty(), "{args:?}");
    }
    // The usage lines match what parses: the subcommand, then HOST.
    let out = Command::new(common::ferry_bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ferry [OPTIONS] HOST[:PORT] [PORT]"), "{text}");
    assert!(text.contains("ferry [OPTIONS] <COMMAND> [COMMAND OPTIONS] HOST[:PORT]"), "{text}");
    assert!(!text.contains("[HOST[:PORT]] [PORT] <COMMAND>"), "{text}");
}

fn ferryd_usage(args: &[&str]) -> String {
    let out = Command::new(common::ferryd_bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "ferryd {args:?}: {err}");
    err
}

#[test]
fn ferryd_usage_errors_show_the_whole_synopsis_and_valid_values() {
    let err = ferryd_usage(&["--root", "/tmp", "--bogus"]);
    assert!(err.contains("--bogus"), "{err}");
    for flag in ["-l ADDR:PORT", "-r DIR", "-k FILE", "-c FILE", "--idle-timeout", "--pidfile", "--udp"] {
        assert!(err.contains(flag), "the usage names {flag}: {err}");
    }
    let err = ferryd_usage(&["--log-level", "loud"]);
    assert!(err.contains("loud") && err.contains("off, error, warn, info, debug, trace"), "{err}");
    assert!(!err.contains("attempted to convert"), "{err}");
}
