//! The `ferry` binary as a user runs it: exit statuses, pipes, the session.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};


#[test]
fn run_propagates_output_and_exit_status() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &d.target(), "--", "echo out; echo err >&2; exit 42"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
}

#[test]
fn run_with_several_arguments_uses_argv() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &d.target(), "--", "printf", "%s|", "a b", "$HOME"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(text(&out.stdout), "a b|$HOME|");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_reports_a_signal_as_128_plus_it() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &d.target(), "--", "kill -KILL $$"]);
    assert_eq!(run_with_input(cmd, b"").status.code(), Some(137));
}

#[test]
fn run_forwards_stdin() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut cmd = d.ferry();
    cmd.args(["run", &d.target(), "--", "sha256sum"]);
    let out = run_with_input(cmd, &data);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let local = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut local_in = local.stdin.as_ref().unwrap();
    local_in.write_all(&data).unwrap();
    let mut local = local;
    drop(local.stdin.take());
    let expected = local.wait_with_output().unwrap().stdout;
    assert_eq!(text(&out.stdout), text(&expected));
}

#[test]
fn a_command_reading_and_writing_a_lot_at_once_does_not_deadlock() {
    let d = Daemon::start();
    let data = vec![b'q'; 8 * 1024 * 1024];
    let mut cmd = d.ferry();
    cmd.args(["run", &d.target(), "--", "cat"]);
    let out = run_with_input(cmd, &data);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout == data, "got {} bytes back", out.stdout.len());
}

/// Our stdin on /dev/null is taken as -n: the command gets the server's
/// /dev/null; any other stdin (here a pipe we close at once) is forwarded.
#[test]
fn run_with_stdin_on_dev_null_gives_the_command_dev_null() {
    let d = Daemon::start();
    let probe = ["run", &d.target(), "--", "readlink /proc/self/fd/0; cat"];
    let o = d.ferry().args(probe).stdin(Stdio::null()).output().unwrap();
    assert_eq!((o.status.code(), text(&o.stdout)), (Some(0), "/dev/null\n".to_string()), "{}", text(&o.stderr));
    let o = run_with_input({ let mut c = d.ferry(); c.args(probe); c }, b"piped\n");
    let out = text(&o.stdout);
    assert!(out.starts_with("pipe:[") && out.ends_with("]\npiped\n"), "{out:?}");
    assert_eq!(o.status.code(), Some(0));
}

/// Stdin that cannot be read (a directory) is said, as `cat < /tmp` would;
/// the command gets EOF and its status stands.
#[test]
fn run_says_when_its_stdin_cannot_be_read() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let o = d
        .ferry()
        .args(["run", &d.target(), "--", "wc -c"])
        .stdin(std::fs::File::open(dir.path()).unwrap())
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert_eq!((o.status.code(), text(&o.stdout).trim()), (Some(0), "0"), "{err}");
    assert_eq!(err, "ferry: reading stdin: Is a directory; the command's stdin ends there\n");
}

#[test]
fn run_forwards_sigint_to_the_remote_command() {
    use std::io::BufRead;
    let d = Daemon::start();
    let mut child = d
        .ferry()
        .args(["run", "-n", &d.target(), "--", "trap 'echo caught; exit 3' INT; echo ready; while :; do sleep 0.1; done"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = kill_after(child.id() as i32, 2 * WAIT);
    // The trap is set once "ready" is out (a child of ferryd is not enough:
    // its shell may not have read the trap yet, and INT then kills it).
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    guard.join().unwrap();
    assert_eq!(rest, "caught\n");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn a_missing_program_is_127() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &d.target(), "--", "/no/such/program", "x"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("/no/such/program"), "{}", text(&out.stderr));
}

#[test]
fn ferry_errors_are_255_with_one_line() {
    let d = Daemon::start();
    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &format!("127.0.0.1:{port}"), "--", "true"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
    // A key the server does not have.
    let (_dir, other_keys, _) = make_keys();
    let mut cmd = Command::new(ferry_bin());
    cmd.arg("-k").arg(&other_keys).args(["run", "-n", &d.target(), "--", "true"]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("authentication failed"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).trim_end().ends_with("wrong key? (-k names the keys file, -i the key)"), "{}", text(&out.stderr));
    // A command line over the server's header limit: 255, and how to send it.
    let long = "x".repeat(100_000);
    let mut cmd = d.ferry();
    cmd.args(["run", "-n", &d.target(), "--", "echo", &long]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("(frame-too-large): send a long script on stdin"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A key id the file does not have.
    let mut cmd = d.ferry();
    cmd.args(["-i", "nope", "run", "-n", &d.target(), "--", "true"]);
    assert_eq!(run_with_input(cmd, b"").status.code(), Some(255));
}

#[test]
fn usage_errors_are_2() {
    for args in [&["run"][..], &["--no-such-flag", "h"], &["run", "host"], &["ping"]] {
        let out = run_with_input(
            {
                let mut c = Command::new(ferry_bin());
                c.args(args);
                c
            },
            b"",
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn netcat_style_session_runs_each_line_in_turn() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.arg(d.addr.ip().to_string()).arg(d.addr.port().to_string());
    let out = run_with_input(cmd, b"echo one\n\necho two >&2\nprintf 'three\\n'\nexit 5\n");
    assert_eq!(text(&out.stdout), "one\nthree\n");
    assert_eq!(text(&out.stderr), "two\n", "no prompt when stdin is not a terminal");
    assert_eq!(out.status.code(), Some(5), "the last command's status");
}

#[test]
fn netcat_style_session_stops_at_quit_and_never_glues_outputs() {
    let d = Daemon::start();
    write_file(&d.path("big"), &vec![b'x'; 300_000]);
    let mut cmd = d.ferry();
    cmd.arg(d.target());
    let out = run_with_input(cmd, b"cat big\necho END\nquit\necho never\n");
    let stdout = text(&out.stdout);
    assert_eq!(stdout.len(), 300_000 + 4);
    assert!(stdout.ends_with("xEND\n"));
    assert!(!stdout.contains("never"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn ping_reports_round_trips() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["ping", "-c", "3", "--interval", "0.01", &d.target()]);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches("pong from").count(), 3, "{stdout}");
    assert!(stdout.contains("3 pings: min/avg/max"), "{stdout}");
}

#[test]
fn keygen_writes_a_private_key_the_daemon_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/keys");
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["keygen", "--id", "ci"]).arg(&path);
    let out = run_with_input(cmd, b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let keys = ferry::keys::load(&path).unwrap();
    assert!(!text(&out.stdout).contains(&keys.get("ci").unwrap().secret));
    assert!(!text(&out.stderr).contains(&keys.get("ci").unwrap().secret));
    // The same id twice is refused, as a file error (1): ferry(1) keygen.
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["keygen", "--id", "ci"]).arg(&path);
    assert_eq!(run_with_input(cmd, b"").status.code(), Some(1));
}

#[test]
fn verbose_traces_frames_without_secrets() {
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["-v", "run", "-n", &d.target(), "--", "true"]);
    let out = run_with_input(cmd, b"");
    let err = text(&out.stderr);
    assert!(err.contains(r#""type":"hello""#) && err.contains(r#""type":"exit""#), "{err}");
    assert!(err.contains("<redacted>"));
    assert!(!err.contains(&d.key.secret));
}

#[test]
fn ipv6_literals_are_understood() {
    let v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !v6 {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    }
    let mut d = Daemon::start();
    d.signal(libc::SIGTERM);
    d.wait_exit(WAIT);
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(ferryd_bin())
        .args(["--listen", "[::1]:0", "--keys"])
        .arg(&d.keys_path)
        .arg("--root")
        .arg(root.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = capture(child.stderr.take().unwrap());
    let line = log.wait_for("listening on", WAIT).expect("listening");
    let addr = line.rsplit("listening on ").next().unwrap().trim().to_string();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut cmd = d.ferry();
    cmd.args(["-6", "run", "-n", &addr, "--", "echo v6"]);
    let out = run_with_input(cmd, b"");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert_eq!(text(&out.stdout), "v6\n", "{}", text(&out.stderr));
}
