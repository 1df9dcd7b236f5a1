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
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    usage_error(&["keygen", "--id", "a b", keys.to_str().unwrap()], "--id \"a b\"");
    assert!(!keys.exists(), "nothing written for a bad id");
}

#[test]
fn a_duplicate_key_id_is_a_file_error_and_leaves_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let k = keys.to_str().unwrap();
    let ok = Command::new(common::ferry_bin()).args(["keygen", "-q", "--id", "ci", k]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let before = std::fs::read(&keys).unwrap();
    let out = Command::new(common::ferry_bin()).args(["keygen", "--id", "ci", k]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.lines().count() == 1 && err.contains("already has a key \"ci\""), "{err}");
    assert_eq!(std::fs::read(&keys).unwrap(), before);
}

#[test]
fn a_mistyped_subcommand_is_named_not_taken_for_a_host() {
    let l = usage_error(&["rnu", "127.0.0.1:39281"], "unknown subcommand \"rnu\"");
    assert!(l.ends_with("(did you mean run?)"), "{l}");
    let l = usage_error(&["pnig", "127.0.0.1:39281"], "unknown subcommand \"pnig\"");
    assert!(l.ends_with("(did you mean ping?)"), "{l}");
    let l = usage_error(&["-w", "2", "stats", "h", "x"], "unknown subcommand \"stats\"");
    assert!(l.ends_with("(did you mean stat?)"), "{l}");
    // A get/put flag before the subcommand: its value is no subcommand.
    usage_error(&["--digest", "none", "h"], "--digest goes after get or put");
    // The -H-only flags name what was given, and only that.
    let l = usage_error(&["get", "--json", "h", "f", "x"], "--json goes with -H or --hostfile");
    assert!(!l.contains("-x") && !l.contains("-b"), "{l}");
    usage_error(&["run", "-b", "-x", "a", "h", "true"], "-x and -b go with -H or --hostfile");
    // A bad --digest value is said once.
    let l = usage_error(&["get", "--digest", "md5", "h", "f"], "expected blake3, sha256 or none");
    assert_eq!(l.matches("md5").count(), 1, "{l}");
    // HOST PORT is still a session (which fails later, not as usage).
    let out = Command::new(common::ferry_bin())
        .args(["-w", "1", "127.0.0.1", "1"])
        .env("FERRY_KEYS", "/nonexistent/keys")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_second_host_word_before_dashes_is_a_usage_error() {
    let l = usage_error(&["run", "-H", "h1", "h2", "--", "true"], "\"h2\"");
    assert!(l.contains("-H h1,h2"), "{l}");
}

#[test]
fn an_argument_that_is_not_utf8_is_named() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(common::ferry_bin())
        .arg("get")
        .arg("h")
        .arg(std::ffi::OsStr::from_bytes(b"dir/ab\xff"))
        .env("FERRY_KEYS", "/nonexistent/keys")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ferry: argument \"dir/ab\\377\"") && err.contains("must be UTF-8"), "{err}");
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

/// ferryd's usage error: one line `ferryd: WHAT`, then the synopsis after
/// `usage: ` (ferryd(8) EXIT STATUS), status 64.
fn ferryd_usage(args: &[&str]) -> String {
    let out = Command::new(common::ferryd_bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(64), "ferryd {args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("ferryd: "), "ferryd {args:?}: {err}");
    assert!(lines[1].starts_with("usage: ferryd [-d | -f]"), "ferryd {args:?}: {err}");
    assert!(lines[2..].iter().all(|l| l.starts_with("       ")), "ferryd {args:?}: only the synopsis follows: {err}");
    assert!(!err.contains("error:") && !err.contains("For more information"), "{err}");
    err
}

#[test]
fn ferryd_usage_errors_are_one_line_naming_the_argument() {
    assert!(ferryd_usage(&["--bogus"]).lines().next().unwrap().contains("--bogus"));
    assert!(ferryd_usage(&["-d", "-f"]).lines().next().unwrap().contains("--foreground"));
    assert!(ferryd_usage(&["--max-children"]).lines().next().unwrap().contains("--max-children"));
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
