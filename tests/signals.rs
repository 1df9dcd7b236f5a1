//! Daemon-wide behaviour: TERM/INT drain, limits, start-up failures.

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn term_closes_idle_connections_and_exits_zero() {
    let mut d = Daemon::start();
    let mut idle = d.authed();
    let mut unauthed = d.raw();
    d.signal(libc::SIGTERM);
    let (h, _) = idle.frame();
    assert_eq!(h["code"], "shutting-down");
    assert!(idle.closed());
    assert_eq!(unauthed.frame().0["code"], "shutting-down");
    assert!(unauthed.closed());
    assert_eq!(d.wait_exit(WAIT), Some(0));
    assert!(d.log.text().contains("listening on"));
    assert!(d.log.wait_for("exiting", WAIT).is_some());
    // No longer accepting.
    assert!(std::net::TcpStream::connect(d.addr).is_err());
}

#[test]
fn term_lets_a_running_command_finish() {
    let mut d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 1; echo finished"}), b"");
    eventually("command started", WAIT, || !children_of(d.pid()).is_empty());
    d.signal(libc::SIGINT);
    assert!(d.log.wait_for("stopped accepting", WAIT).is_some());
    let (out, _, exit) = c.exec_output();
    assert_eq!(out, b"finished\n");
    assert_eq!(exit["code"], 0);
    assert_eq!(c.frame().0["code"], "shutting-down");
    assert_eq!(d.wait_exit(WAIT), Some(0));
}

/// Issue 17: an idle client that holds its connection and never reads nor
/// hangs up (a line session waiting for input, a monitoring client) must not
/// hold up a stop: nothing is owed to it but the `shutting-down` frame.
#[test]
fn term_with_idle_clients_that_never_hang_up_exits_within_a_second() {
    let mut d = Daemon::start();
    let mut idle = d.authed();
    idle.ping();
    let _unauthed = d.raw();
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(WAIT);
    let took = t.elapsed();
    assert_eq!(status, Some(0), "{}", d.log.text());
    assert!(took < Duration::from_secs(1), "TERM to exit took {took:?} with only idle clients");
    // The client was told why, then saw an orderly end of stream.
    assert_eq!(idle.frame().0["code"], "shutting-down");
    assert!(idle.closed());
}

/// The prompt close is for idle connections only: a running command still
/// finishes and gets its output and exit, while an idle neighbour goes at once.
#[test]
fn term_closes_the_idle_at_once_and_lets_a_sleep_2_finish() {
    let mut d = Daemon::start();
    let mut busy = d.authed();
    let mut idle = d.authed();
    busy.send(json!({"type":"exec","cmd":"sleep 2; echo finished"}), b"");
    eventually("command started", WAIT, || !children_of(d.pid()).is_empty());
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(idle.frame().0["code"], "shutting-down");
    assert!(idle.closed());
    assert!(t.elapsed() < Duration::from_millis(1500), "the idle client waited {:?}", t.elapsed());
    let (out, _, exit) = busy.exec_output();
    assert_eq!(out, b"finished\n");
    assert_eq!(exit["code"], 0);
    assert_eq!(busy.frame().0["code"], "shutting-down");
    assert_eq!(d.wait_exit(WAIT), Some(0));
}

#[test]
fn the_drain_timeout_kills_what_is_left() {
    let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["sleep","30"]}), b"");
    eventually("command started", WAIT, || !children_of(d.pid()).is_empty());
    let child = children_of(d.pid())[0];
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit["signal"], 15, "TERM first: {exit}");
    assert_eq!(d.wait_exit(WAIT), Some(0));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(10), "{took:?}");
    assert!(!std::path::Path::new(&format!("/proc/{child}")).exists(), "child left behind");
}

#[test]
fn a_command_that_ignores_term_gets_kill_after_the_grace() {
    let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
    let mut c = d.authed();
    // An ignored TERM is inherited by sleep too.
    c.send(json!({"type":"exec","argv":["sh","-c","trap '' TERM; echo started; sleep 30"]}), b"");
    assert_eq!(c.frame().1, b"started\n");
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    // The KILL is the command's end as any other: its exit frame says so.
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(c.frame().0["code"], "shutting-down");
    assert_eq!(d.wait_exit(WAIT), Some(0));
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(2900), "KILL comes 2 s after the TERM at the drain timeout: {took:?}");
    assert!(children_of(d.pid()).is_empty());
    assert!(d.log.text().contains("drain timeout: KILL to 1 running commands"), "{}", d.log.text());
}

/// ferry(1)'s promise end to end: 143 for the drain's TERM, 137 for the KILL
/// after it, with and without a terminal.
#[test]
fn the_client_of_a_command_killed_by_the_drain_exits_137() {
    use std::io::BufRead;
    for tty in [false, true] {
        let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
        let mut c = d.ferry();
        c.arg("run");
        if tty {
            c.arg("-tt");
        }
        c.arg(d.target()).args(["--", "sh", "-c", "trap '' TERM; echo started; exec sleep 30"]);
        let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let _watchdog = common::kill_after(child.id() as i32, WAIT * 2);
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("started"), "{line:?}");
        d.signal(libc::SIGTERM);
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(137), "tty {tty}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(d.wait_exit(WAIT), Some(0));
    }
}

#[test]
fn a_second_term_stops_at_once() {
    let mut d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["sleep","30"]}), b"");
    eventually("command started", WAIT, || !children_of(d.pid()).is_empty());
    let child = children_of(d.pid())[0];
    d.signal(libc::SIGTERM);
    assert!(d.log.wait_for("stopped accepting", WAIT).is_some());
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!std::path::Path::new(&format!("/proc/{child}")).exists(), "child killed and reaped");
}

#[test]
fn one_connection_over_the_limit_is_refused() {
    let d = Daemon::start_with(&["--max-connections", "2"]);
    let _a = d.authed();
    let _b = d.raw();
    let mut c = Raw::connect(d.addr);
    let (h, _) = c.frame();
    assert_eq!(h["code"], "too-many-connections");
    assert!(c.closed());
    assert!(d.log.wait_for("refused", WAIT).is_some());
    drop(_b);
    // A slot frees once a connection goes.
    eventually("slot freed", WAIT, || d.log.count("closed: peer closed") >= 1);
    let mut e = d.authed();
    e.send(json!({"type":"ping"}), b"");
    assert_eq!(e.frame().0["type"], "pong");
}

#[test]
fn idle_authenticated_connections_time_out() {
    let d = Daemon::start_with(&["--idle-timeout", "1"]);
    let mut c = d.authed();
    let t = Instant::now();
    let (h, _) = c.frame();
    assert_eq!((h["type"].as_str(), h["code"].as_str()), (Some("error"), Some("idle-timeout")), "{h}");
    assert_eq!(h["message"], "idle for 1s");
    assert!(c.closed());
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(d.log.wait_for("idle for 1s", WAIT).is_some());
}

#[test]
fn startup_failures_have_sysexits_codes_and_one_line() {
    let (_dir, keys, _) = make_keys();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(ferryd_bin())
            .arg("--keys")
            .arg(&keys)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
    };
    let (code, err, stdout) = run(&["--listen", &port]);
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("cannot listen on") && err.lines().count() == 1, "{err}");
    assert!(stdout.is_empty(), "nothing on stdout");
    let (code, err, _) = run(&["--root", "/nonexistent/dir", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(78), "{err}");
    let (code, err, _) = run(&["--no-such-flag"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, err, _) = run(&["--listen", "not an address"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, err, _) = run(&["--keys", "/nonexistent/keys"]);
    assert_eq!(code, Some(64), "--keys given twice is a usage error: {err}");
}

#[test]
fn warn_level_hides_the_listening_line() {
    let (_dir, keys, _) = make_keys();
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(ferryd_bin())
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn", "--keys"])
        .arg(&keys)
        .arg("--root")
        .arg(root.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = capture(child.stderr.take().unwrap());
    // Without the line, readiness is a listening socket the daemon owns.
    eventually("ferryd listening", WAIT, || has_listener(child.id() as i32));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!log.text().contains("listening on"), "{}", log.text());
}

/// True when `pid` owns a TCP socket in the LISTEN state.
fn has_listener(pid: i32) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let inodes: Vec<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9])
    })
}

/// A put still streaming when the drain runs out: ferryd logs its access
/// line (`aborted`) and its `closed` line as it exits, and `ferry put -`,
/// whose stdin stays open, ends at once with one line naming the host.
#[test]
fn a_put_cut_by_the_drain_is_logged_and_its_client_ends_at_once() {
    use std::io::Write;
    let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
    let mut child = d.put_from_pipe("x");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"start\n").unwrap();
    assert!(d.log.wait_for("authenticated as", WAIT).is_some(), "{}", d.log.text());
    std::thread::sleep(Duration::from_millis(200));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0), "{}", d.log.text());
    let gone = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(gone.elapsed() < Duration::from_secs(1), "ferry put - still waits for stdin after ferryd exited");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The daemon has exited, but the thread reading its stderr may not have
    // the last lines yet: wait for the last one.
    assert!(d.log.wait_for("info: exiting", WAIT).is_some(), "{}", d.log.text());
    let log = d.log.text();
    assert!(log.lines().any(|l| l.contains("access: #1 ") && l.contains(" put ") && l.ends_with("result=aborted")), "{log}");
    assert!(log.lines().any(|l| l.contains("#1 ") && l.contains(": closed: ")), "{log}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(255), "{err}");
    assert_eq!(err, format!("ferry: {} closed the connection\n", d.target()));
    drop(stdin);
}
