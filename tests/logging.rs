//! ferryd's logs as an operator reads them: one access line per request on
//! stderr (timestamped, or plain under journald), auth failures at warn with
//! the peer, the syslog backend's RFC 3164 datagrams, and the file backend's
//! lines (the daemon-mode file tests, rotation included, are in daemon.rs).
//!
//! This file is its own process, so one test may install the `log` backend
//! here (the syslog test); the others only read a real daemon's stderr, and
//! use raw frames (the client library logs nothing, and must not log into
//! the syslog test's socket).

mod common;

use common::*;
use ferry::logger::{self, LogTarget};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// `2026-11-25T10:00:00.123Z ` at the start of `line`, within a minute of now.
fn assert_timestamped(line: &str) {
    let (ts, _) = line.split_once(' ').unwrap_or_else(|| panic!("no timestamp: {line:?}"));
    let shape = ts.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        23 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    assert!(ts.len() == 24 && shape, "not a UTC ISO 8601 timestamp: {line:?}");
    let now = SystemTime::now();
    let lo = ferry::timefmt::millis(now - Duration::from_secs(60));
    let hi = ferry::timefmt::millis(now + Duration::from_secs(60));
    assert!(lo.as_str() <= ts && ts <= hi.as_str(), "{ts} is not now ({lo}..{hi})");
}

/// The value of ` name=VALUE` in an access line (up to the next space).
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name}= in {line:?}"));
    line[at + name.len() + 2..].split(' ').next().unwrap()
}

fn assert_duration(line: &str) {
    let dur = field(line, "dur");
    let secs = dur.strip_suffix('s').and_then(|d| d.parse::<f64>().ok());
    assert!(secs.is_some_and(|s| (0.0..60.0).contains(&s)) && dur.len() >= 6, "dur={dur} in {line:?}");
}

#[test]
fn exec_put_and_error_access_lines_on_stderr_carry_a_timestamp_and_every_field() {
    let d = Daemon::start();
    let mut c = d.authed();
    let peer = c.sock.local_addr().unwrap().to_string();

    let argv = ["sh", "-c", "cat >/dev/null; printf 123456; printf ab >&2; exit 4"];
    c.send(json!({"type":"exec","argv":argv,"stdin":true,"id":1}), b"");
    c.send(json!({"type":"stdin"}), b"input");
    c.send(json!({"type":"stdin"}), b"");
    let (out, err, exit) = c.exec_output();
    assert_eq!((out.len(), err.len(), exit["code"].as_i64()), (6, 2, Some(4)));

    let body: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    c.send(json!({"type":"put","path":"up/f.bin","id":2}), &body);
    assert_eq!(c.frame().0["type"], "ok");
    c.send(json!({"type":"get","path":"up/f.bin","id":3}), b"");
    assert_eq!(c.frame().1.len(), body.len());
    assert_eq!(c.frame().0["type"], "done");
    c.send(json!({"type":"stat","path":"nowhere"}), b"");
    assert_eq!(c.frame().0["code"], "not-found");

    let exec = d.log.wait_for(" exec argv=", WAIT).expect("an access line for the exec");
    // The daemon's first connection.
    let conn = format!("#1 {peer}");
    let head = format!(" ferryd: info: access: {conn} key=test exec ");
    assert!(exec.contains(&head), "{exec:?} lacks {head:?}");
    assert!(exec.contains(r#" argv=["sh","-c","cat >/dev/null; printf 123456; printf ab >&2; exit 4"] "#), "{exec}");
    assert_eq!((field(&exec, "in"), field(&exec, "out"), field(&exec, "result")), ("5", "8", "exit:4"), "{exec}");
    assert!(exec.ends_with("result=exit:4"), "{exec}");
    assert_timestamped(&exec);
    assert_duration(&exec);

    let put = d.log.wait_for(" put path=", WAIT).expect("an access line for the put");
    let want = format!(" ferryd: info: access: {conn} key=test put path=\"up/f.bin\" in=70000 out=0 dur=");
    assert!(put.contains(&want) && put.ends_with(" result=ok"), "{put:?} lacks {want:?}");
    assert_timestamped(&put);
    assert_duration(&put);

    let get = d.log.wait_for(" get path=", WAIT).expect("an access line for the get");
    assert!(get.contains(" get path=\"up/f.bin\" in=0 out=70000 ") && get.ends_with(" result=ok"), "{get}");
    let stat = d.log.wait_for(" stat path=", WAIT).expect("an access line for the failed stat");
    assert!(stat.contains(" stat path=\"nowhere\" in=0 out=0 ") && stat.ends_with(" result=error:not-found"), "{stat}");

    // One line per request, and every line of the log is timestamped.
    assert_eq!(d.log.count(" access: "), 4, "{}", d.log.text());
    for line in d.log.text().lines() {
        assert_timestamped(line);
    }
    assert!(!d.log.text().contains(&d.key.secret), "a secret was logged");
}

#[test]
fn under_journald_lines_go_without_a_timestamp() {
    let d = Daemon::start_custom(&[], |cmd| {
        cmd.env("JOURNAL_STREAM", "8:1234");
    });
    let mut c = d.authed();
    let peer = c.sock.local_addr().unwrap().to_string();
    c.send(json!({"type":"ping","id":1}), b"");
    assert_eq!(c.frame().0["type"], "pong");
    let line = d.log.wait_for(" ping ", WAIT).expect("an access line for the ping");
    assert!(line.starts_with("ferryd: debug: access: #1 "), "pings log at debug: {line:?}");
    assert!(line.contains(&format!(" {peer} key=test ping in=0 out=0 dur=")) && line.ends_with(" result=ok"), "{line}");
    for line in d.log.text().lines() {
        assert!(line.starts_with("ferryd: "), "a plain line under journald: {line:?}");
    }
}

#[test]
fn an_auth_failure_is_a_warning_with_the_peer_address_and_no_mac() {
    let d = Daemon::start();
    let mut c = d.raw();
    let peer = c.sock.local_addr().unwrap().to_string();
    let mac = "ab".repeat(32);
    c.send(json!({"type":"auth","key_id":"test","nonce":"11".repeat(32),"mac":mac}), b"");
    assert_eq!(c.frame().0["code"], "auth-failed");
    let line = d.log.wait_for("auth failed", WAIT).expect("an auth failure line");
    assert!(line.contains(&format!(" ferryd: warn: #1 {peer}: auth failed for key id \"test\"")), "{line}");
    assert_timestamped(&line);
    assert!(c.closed());
    drop(c);
    d.log.wait_for("closed:", WAIT).expect("the connection is closed");
    let log = d.log.text();
    assert!(!log.contains(&mac) && !log.contains(&d.key.secret), "a MAC or secret was logged:\n{log}");
    assert_eq!(d.log.count(" access: "), 0, "no request was served:\n{log}");
}

/// `<PRI>Mmm dd hh:mm:ss ferryd[PID]: MESSAGE` (RFC 3164, no hostname, as
/// local syslog(3) sends it): returns MESSAGE after checking the rest.
fn rfc3164(dgram: &str, pri: u8, pid: u32) -> &str {
    let rest = dgram.strip_prefix(&format!("<{pri}>")).unwrap_or_else(|| panic!("not <{pri}>: {dgram:?}"));
    let (stamp, rest) = rest.split_at(15);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let b = stamp.as_bytes();
    let ok = months.contains(&&stamp[..3])
        && b[3] == b' '
        && stamp[4..6].trim_start().bytes().all(|c| c.is_ascii_digit())
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && [7, 8, 10, 11, 13, 14].iter().all(|&i| b[i].is_ascii_digit());
    assert!(ok, "not an RFC 3164 timestamp: {dgram:?}");
    rest.strip_prefix(&format!(" ferryd[{pid}]: ")).unwrap_or_else(|| panic!("no ferryd[{pid}] tag: {dgram:?}"))
}

#[test]
fn the_syslog_backend_sends_rfc3164_datagrams_at_the_mapped_priorities() {
    let mut syslogd = Inbox::new();
    let facility = logger::parse_facility("local3").unwrap();

    // A socket nobody listens on is an error naming it, and installs nothing.
    let missing = syslogd.path.with_file_name("missing");
    let target = LogTarget::Syslog { facility, socket: Some(missing.clone()) };
    let err = logger::init("ferryd", target, log::LevelFilter::Info).unwrap_err();
    assert!(err.contains("syslog") && err.contains(&missing.display().to_string()), "{err}");

    let target = LogTarget::Syslog { facility, socket: Some(syslogd.path.clone()) };
    logger::init("ferryd", target, log::LevelFilter::Info).unwrap();
    let pid = std::process::id();
    // local3 is 19: PRI = 19 * 8 + severity.
    log::error!("an error");
    log::warn!("a warning");
    log::debug!("filtered out at info");
    log::info!("two\nlines");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 3, pid), "an error");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 4, pid), "a warning");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 6, pid), "two\\nlines", "one record, one line");

    // The level changes at run time; trace maps to debug.
    logger::set_level(log::LevelFilter::Trace);
    log::debug!("now shown");
    log::trace!("trace too");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 7, pid), "now shown");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 7, pid), "trace too");
    logger::set_level(log::LevelFilter::Warn);
    log::info!("filtered out at warn");
    log::warn!("still here");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 4, pid), "still here");

    // syslogd restarts (a new socket at the same path): records still arrive.
    syslogd.rebind();
    log::error!("after the restart");
    assert_eq!(rfc3164(&syslogd.recv(), 19 * 8 + 3, pid), "after the restart");

    // Only one backend per process.
    let again = logger::init("ferryd", LogTarget::Stderr, log::LevelFilter::Info).unwrap_err();
    assert!(again.contains("already"), "{again}");
}

#[test]
fn a_foreground_daemon_configured_for_syslog_sends_its_access_lines_there() {
    let syslogd = Inbox::new();
    let (keys_dir, keys_path, key) = make_keys();
    let root = tempfile::tempdir().unwrap();
    let conf = keys_dir.path().join("ferryd.toml");
    let toml = format!(
        "listen = [\"127.0.0.1:0\"]\nroot = {:?}\nkeys = {:?}\n\
         [log]\ntarget = \"syslog\"\nfacility = \"daemon\"\nsocket = {:?}\n",
        root.path(),
        keys_path,
        syslogd.path
    );
    std::fs::write(&conf, toml).unwrap();
    let mut child = Command::new(ferryd_bin())
        .arg("--config")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = KillOnDrop(pid as i32);

    // daemon is 3: info = <30>.
    let listening = syslogd.wait_for("listening on ");
    let addr: std::net::SocketAddr = listening.rsplit("listening on ").next().unwrap().trim().parse().unwrap();
    assert!(rfc3164(&listening, 30, pid).starts_with("listening on "), "{listening}");

    let mut c = Raw::connect(addr);
    c.server_nonce = c.frame().0["nonce"].as_str().unwrap().to_string();
    c.auth(&key);
    c.send(json!({"type":"exec","cmd":"printf hi","id":1}), b"");
    let (out, _, exit) = c.exec_output();
    assert_eq!((out.as_slice(), exit["code"].as_i64()), (&b"hi"[..], Some(0)));
    let access = syslogd.wait_for(" access: ");
    let msg = rfc3164(&access, 30, pid);
    assert!(msg.starts_with("access: #1 127.0.0.1:"), "{msg}");
    assert!(msg.contains(" key=test exec cmd=\"printf hi\" in=0 out=2 dur="), "{msg}");
    assert!(msg.ends_with(" result=exit:0"), "{msg}");

    drop(c);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = wait_child(&mut child, "ferryd did not exit on TERM");
    assert_eq!(status.code(), Some(0));
    std::mem::forget(guard);
}

/// KILLs `pid` if the test fails before it stopped the daemon.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

#[test]
fn the_file_backend_writes_the_stderr_lines_timestamped_even_under_journald() {
    let (keys_dir, keys_path, key) = make_keys();
    let root = tempfile::tempdir().unwrap();
    let conf = keys_dir.path().join("ferryd.toml");
    let log = keys_dir.path().join("ferryd.log");
    let toml = format!(
        "listen = [\"127.0.0.1:0\"]\nroot = {:?}\nkeys = {:?}\n[log]\ntarget = \"file\"\npath = {:?}\n",
        root.path(),
        keys_path,
        log
    );
    std::fs::write(&conf, toml).unwrap();
    let mut child = Command::new(ferryd_bin())
        .arg("--config")
        .arg(&conf)
        .env("JOURNAL_STREAM", "8:1234")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guard = KillOnDrop(pid as i32);
    let stderr = capture(child.stderr.take().unwrap());
    let in_file = |needle: &str| {
        let mut found = None;
        eventually(&format!("{needle:?} in the log file"), WAIT, || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            found = text.lines().find(|l| l.contains(needle)).map(str::to_string);
            found.is_some()
        });
        found.unwrap()
    };

    let listening = in_file(" ferryd: info: listening on ");
    assert_timestamped(&listening);
    let addr: std::net::SocketAddr = listening.rsplit("listening on ").next().unwrap().trim().parse().unwrap();
    let mut c = Raw::connect(addr);
    c.server_nonce = c.frame().0["nonce"].as_str().unwrap().to_string();
    c.auth(&key);
    c.send(json!({"type":"exec","cmd":"printf hi","id":1}), b"");
    assert_eq!(c.exec_output().2["code"], 0);
    let access = in_file(" access: ");
    assert!(access.contains(" ferryd: info: access: #1 127.0.0.1:"), "{access}");
    assert!(access.contains(" key=test exec cmd=\"printf hi\" in=0 out=2 dur=") && access.ends_with(" result=exit:0"), "{access}");
    assert_timestamped(&access);
    assert_duration(&access);

    drop(c);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(wait_child(&mut child, "ferryd did not exit on TERM").code(), Some(0));
    std::mem::forget(guard);
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        assert_timestamped(line);
    }
    // None once stderr has ended without a line.
    assert!(stderr.wait_for("ferryd", WAIT).is_none(), "nothing on stderr: {}", stderr.text());
}
