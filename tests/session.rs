//! The line session (`ferry HOST [PORT]`) and `ferry run`, end to end with
//! the real binaries: they watch the socket while they wait for stdin, so a
//! server that goes (idle timeout, TERM, killed) ends them at once with one
//! line saying why and status 255. Also `run --argv` against an exec
//! allow-list, and `!PROG ARGS` session lines.
//!
//! The interactive behaviour (Ctrl-C, Ctrl-D, quoting) is driven through a
//! pseudo-terminal in `tests/session_pty.rs`.

mod common;

use common::{Daemon, WAIT};
use std::io::Read;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A client started with stdin a pipe the test keeps open, so it can only
/// end by noticing the server.
fn held_open(mut cmd: Command) -> (Child, ChildStdin) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Waits for `child` to exit within `limit`; its status code and stderr.
fn exits_within(child: &mut Child, limit: Duration, what: &str) -> (i32, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (st.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running {limit:?} after the server closed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err:?}");
    lines[0]
}

#[test]
fn a_session_ends_at_the_idle_timeout_without_waiting_for_stdin() {
    let d = Daemon::start_with(&["--idle-timeout", "1"]);
    let mut cmd = d.ferry();
    cmd.arg(d.target());
    let (mut child, _stdin) = held_open(cmd);
    assert!(d.log.wait_for("authenticated as", WAIT).is_some(), "{}", d.log.text());
    assert!(d.log.wait_for("closed: idle", WAIT).is_some(), "{}", d.log.text());
    let (code, err) = exits_within(&mut child, Duration::from_secs(1), "the session");
    assert_eq!(code, 255, "{err}");
    let line = one_line(&err);
    assert!(line.starts_with(&format!("ferry: {} closed the connection", d.target())), "{line}");
    assert!(line.contains("idle for 1s without a request (the server's idle timeout"), "{line}");
}

#[test]
fn a_session_ends_when_the_server_shuts_down() {
    let mut d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.arg(d.target());
    let (mut child, _stdin) = held_open(cmd);
    assert!(d.log.wait_for("authenticated as", WAIT).is_some(), "{}", d.log.text());
    d.signal(libc::SIGTERM);
    // ferryd sends `shutting-down` to an idle connection as it starts to
    // drain; how long it then lingers before closing is the server's
    // business. The session must be gone within 1 s of the frame.
    assert!(d.log.wait_for("draining", WAIT).is_some(), "{}", d.log.text());
    let (code, err) = exits_within(&mut child, Duration::from_secs(1), "the session");
    assert_eq!(code, 255, "{err}");
    assert_eq!(one_line(&err), format!("ferry: {} closed the connection: the server is shutting down", d.target()));
    assert!(d.wait_exit(WAIT).is_some());
}

#[test]
fn run_with_stdin_open_ends_when_the_server_dies() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["run", &d.target(), "--", "cat"]);
    let (mut child, _stdin) = held_open(cmd);
    assert!(d.log.wait_for("pid ", WAIT).is_some(), "the exec started: {}", d.log.text());
    d.signal(libc::SIGKILL);
    let (code, err) = exits_within(&mut child, Duration::from_secs(1), "ferry run");
    assert_eq!(code, 255, "{err}");
    assert!(one_line(&err).contains("closed the connection"), "{err}");
}

fn allow_list() -> Daemon {
    let (d, _) = Daemon::start_config("allow_exec = true\n[exec]\nallowed = [\"echo\"]\n", &[], |_| {});
    d
}

#[test]
fn argv_runs_an_allowed_program_with_no_arguments() {
    let d = allow_list();
    // One word goes to the shell by default, which the list refuses, and the
    // message says what to do.
    let out = d.ferry().args(["run", "-n", &d.target(), "--", "echo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--argv"), "{err}");
    let out = d.ferry().args(["run", "-n", "--argv", &d.target(), "--", "echo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"\n");
    let out = d.ferry().args(["run", "-n", "-a", &d.target(), "--", "echo", "a b"]).output().unwrap();
    assert_eq!(out.stdout, b"a b\n");
}

#[test]
fn a_refused_shell_command_is_one_line() {
    let d = allow_list();
    let out = d.ferry().args(["run", "-n", &d.target(), "--", "ls"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = one_line(&err);
    assert!(line.contains("allow-list") && line.contains("--argv"), "{line}");
}

/// Fan-out says the same as a single `run`: a one-word command refused by the
/// allow-list names `--argv`, and `--argv` then runs it.
#[test]
fn a_refused_shell_command_under_fan_out_names_argv() {
    let d = allow_list();
    let out = d.ferry().args(["run", "-n", "-H", &d.target(), "--", "echo"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("allow-list") && err.contains("--argv") && err.contains("(not-allowed)"), "{err}");
    let out = d.ferry().args(["run", "-n", "--argv", "-H", &d.target(), "--", "echo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn server_named_paths_are_escaped_once_as_ls_b() {
    let d = Daemon::start();
    for (name, shown) in [("no\nx", r#""no\nx""#), ("a\\b", r#""a\\b""#), ("\u{1b}[2J", r#""\033[2J""#)] {
        let out = d.ferry().args(["get", &d.target(), name]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(one_line(&err), format!("ferry: {shown}: no such file or directory"));
    }
}

#[test]
fn session_argv_lines_start_with_a_bang_and_split_with_quotes() {
    let d = allow_list();
    let mut cmd = d.ferry();
    cmd.arg(d.target());
    let out = common::run_with_input(cmd, b"!echo 'a  b' \"c\"\n!echo\necho via-shell\n!echo 'open\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "a  b c\n\n", "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--argv"), "the shell line is refused with the hint: {err}");
    assert!(err.contains("unbalanced quotes"), "{err}");
    assert_eq!(out.status.code(), Some(2), "the last line was a usage error: {err}");
}

#[test]
fn session_file_lines_take_quotes_and_give_usage() {
    let d = Daemon::start();
    std::fs::write(d.path("a file.txt"), b"spaced\n").unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut cmd = d.ferry();
    cmd.arg(d.target()).current_dir(local.path());
    let out = common::run_with_input(cmd, b"get \"a file.txt\"\nget\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(std::fs::read(local.path().join("a file.txt")).unwrap(), b"spaced\n", "{err}");
    assert!(err.contains("usage: get [-r] [-c] REMOTE [LOCAL]"), "{err}");
    assert!(!err.contains("not found"), "a bare get is not sent to the shell: {err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
}

#[test]
fn verbose_shows_the_size_of_frames_sent_and_received() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["-v", "run", &d.target(), "--", "cat"]);
    let out = common::run_with_input(cmd, b"hello\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("ferry: > ") && l.contains("\"size\":6") && l.contains("stdin")), "{err}");
    assert!(err.lines().any(|l| l.starts_with("ferry: < ") && l.contains("\"size\":6") && l.contains("stdout")), "{err}");
}

#[test]
fn a_piped_session_stopped_by_the_drain_says_so_in_the_documented_words() {
    let mut d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.arg(d.target());
    let (mut child, mut stdin) = held_open(cmd);
    std::io::Write::write_all(&mut stdin, b"sleep 1\necho after\n").unwrap();
    assert!(d.log.wait_for("pid ", WAIT).is_some(), "{}", d.log.text());
    d.signal(libc::SIGTERM);
    let (code, err) = exits_within(&mut child, WAIT, "the session");
    assert_eq!(code, 255, "{err}");
    assert_eq!(one_line(&err), format!("ferry: {} closed the connection: the server is shutting down", d.target()));
    assert!(d.wait_exit(WAIT).is_some());
}

/// One form for a server's refusal: its message, then its code.
#[test]
fn a_server_error_reads_message_then_code() {
    let d = Daemon::start_with(&["--no-exec"]);
    let out = d.ferry().args(["run", "-n", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = one_line(&err);
    assert!(line.starts_with("ferry: ") && line.ends_with(" (exec-disabled)"), "{line}");
    assert!(!line.contains("server error"), "{line}");
}
