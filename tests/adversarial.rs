//! The adversarial suite: hostile and broken clients against the real daemon,
//! on loopback. Every test ends with `Baseline::check`: the daemon is up, a
//! fresh connection is served, and its open fds, children and RSS are back
//! where they were before the attack. Every loop is bounded.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// RSS may grow this much over the warmed-up baseline (allocator slack; a
/// leak or an unbounded buffer shows as far more).
const RSS_SLACK_KIB: u64 = 24 * 1024;

pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// The daemon's user + system CPU time, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).unwrap_or("");
    !state.is_empty() && state != "Z" && state != "X"
}

/// Pids of the processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    pids_where(|f| f.get(3).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) && f[0] != "Z")
}

/// What the daemon holds when nothing is going on.
pub struct Baseline {
    pid: i32,
    fds: usize,
    rss: u64,
}

impl Baseline {
    /// Measured on a fresh daemon: fds before anything, RSS after a warm-up
    /// (a ping, an exec, a put and a get) so first-use allocations are in.
    pub fn take(d: &Daemon) -> Baseline {
        let pid = d.pid();
        let fds = fd_count(pid);
        {
            let mut c = d.authed();
            c.ping();
            c.send(json!({"type":"exec","cmd":"echo warm"}), b"");
            assert_eq!(c.exec_output().2["code"], 0);
            c.send(json!({"type":"put","path":".warm"}), &[7u8; 100_000]);
            assert_eq!(c.frame().0["type"], "ok");
            c.send(json!({"type":"get","path":".warm"}), b"");
            assert_eq!(c.frame().0["type"], "file");
            assert_eq!(c.frame().0["type"], "done");
        }
        std::fs::remove_file(d.path(".warm")).unwrap();
        eventually("the warm-up connection is gone", WAIT, || fd_count(pid) <= fds);
        Baseline { pid, fds, rss: d.rss_kib() }
    }

    fn wait_fds(&self, what: &str) {
        let t = Instant::now();
        while fd_count(self.pid) > self.fds && t.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(fd_count(self.pid) <= self.fds, "{what}: {} fds open, {} at the baseline", fd_count(self.pid), self.fds);
    }

    /// The daemon is up, serves a fresh connection, and its fds, children and
    /// RSS come back to the baseline (bounded waits).
    pub fn check(&self, d: &Daemon, what: &str) {
        assert!(alive(self.pid), "{what}: the daemon died");
        eventually(&format!("{what}: no child left"), WAIT, || children_of(self.pid).is_empty());
        self.wait_fds(what);
        // Closed connections are gone (a full table would refuse this one).
        let mut c = d.authed();
        c.ping();
        drop(c);
        self.wait_fds(what);
        let limit = self.rss + RSS_SLACK_KIB;
        let t = Instant::now();
        while d.rss_kib() > limit && t.elapsed() < WAIT {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(d.rss_kib() <= limit, "{what}: RSS {} KiB, baseline {} KiB", d.rss_kib(), self.rss);
        assert!(temp_files(d.root.path()).is_empty(), "{what}: temporary files left");
        assert!(alive(self.pid), "{what}: the daemon died");
    }
}

/// Makes the next close of `s` a reset (RST), not a FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads the struct we pass, for its stated length.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

fn reset(c: Raw) {
    set_linger_zero(&c.sock);
    drop(c);
}

/// The first frame the server sends, or None when it closes first.
fn reply_or_close(c: &mut Raw) -> Option<Value> {
    c.try_frame().ok().map(|f| f.0)
}

// ---- slow and malformed input -------------------------------------------

#[test]
fn slowloris_before_auth_is_cut_by_the_auth_timeout() {
    let d = Daemon::start_with(&["--auth-timeout", "2", "--idle-timeout", "3"]);
    let base = Baseline::take(&d);
    // 200 connections, each sending its auth frame's header one byte every 2 s.
    let auth = frame(json!({"type":"auth","key_id":"test","nonce":"00","mac":"00"}), b"");
    let mut slow: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(d.addr).unwrap()).collect();
    let start = Instant::now();
    let mut open = slow.len();
    for round in 0..4 {
        for s in &mut slow {
            let _ = s.write(&auth[round..round + 1]);
        }
        // Others are served in the meantime.
        let mut c = d.authed();
        c.ping();
        std::thread::sleep(Duration::from_secs(2));
        if round >= 1 {
            open = slow
                .iter_mut()
                .filter(|s| {
                    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
                    let mut buf = [0u8; 4096];
                    let mut r: &TcpStream = s;
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) => return false,
                            Ok(_) => continue,
                            Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
                            Err(_) => return true,
                        }
                    }
                })
                .count();
            if open == 0 {
                break;
            }
        }
    }
    assert_eq!(open, 0, "slow connections still open after {:?}", start.elapsed());
    drop(slow);
    eventually("200 auth timeouts logged", WAIT, || d.log.count("no authentication within 2s") >= 200);
    base.check(&d, "slowloris");
}

#[test]
fn an_authenticated_slow_header_is_served_and_an_idle_one_closed() {
    // After auth, a slow client is a key holder's own connection: each byte
    // is activity, so it is served when the frame completes; silence for the
    // idle timeout closes it.
    let d = Daemon::start_with(&["--idle-timeout", "2"]);
    let base = Baseline::take(&d);
    let mut c = d.authed();
    let bytes = frame(json!({"type":"ping","id":1}), b"");
    for b in &bytes[..6] {
        c.send_bytes(&[*b]);
        std::thread::sleep(Duration::from_millis(300));
    }
    c.send_bytes(&bytes[6..]);
    assert_eq!(c.frame().0["type"], "pong");
    c.send_bytes(&bytes[..3]);
    let t = Instant::now();
    assert!(c.closed(), "the idle timeout closes a half-sent frame");
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(c);
    base.check(&d, "slow authenticated header");
}

#[test]
fn a_header_length_of_4_gib_is_refused_before_any_allocation() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    for authed in [false, true] {
        let mut c = if authed { d.authed() } else { d.raw() };
        c.send_bytes(&u32::MAX.to_be_bytes());
        let e = c.frame().0;
        assert_eq!(e["code"], "frame-too-large", "{e}");
        assert!(c.closed());
    }
    // Just over the limit, and zero.
    for (len, code) in [(65537u32, "frame-too-large"), (0, "bad-frame")] {
        let mut c = d.authed();
        c.send_bytes(&len.to_be_bytes());
        assert_eq!(c.frame().0["code"], code);
    }
    base.check(&d, "4 GiB header length");
}

#[test]
fn a_body_size_of_2_pow_63_is_streamed_through_not_allocated() {
    let d = Daemon::start_with(&["--max-upload", "1000000"]);
    let base = Baseline::take(&d);
    let big = 1u64 << 63;
    // A ping with a huge body: answered, and the body is discarded as it comes.
    let mut c = d.authed();
    c.send_bytes(&raw_frame(format!(r#"{{"type":"ping","size":{big}}}"#).as_bytes(), b""));
    assert_eq!(c.frame().0["type"], "pong");
    for _ in 0..64 {
        c.send_bytes(&[0u8; 64 * 1024]);
    }
    assert!(d.rss_kib() < base.rss + RSS_SLACK_KIB);
    reset(c);
    // A put of 2^63 bytes is too large at once; its body is still skipped.
    let mut c = d.authed();
    c.send_bytes(&raw_frame(format!(r#"{{"type":"put","path":"huge","size":{big}}}"#).as_bytes(), b""));
    assert_eq!(c.frame().0["code"], "too-large");
    c.send_bytes(&[0u8; 100_000]);
    drop(c);
    // 2^64 does not fit a u64: not a size.
    let mut c = d.authed();
    c.send_bytes(&raw_frame(br#"{"type":"ping","size":18446744073709551616}"#, b""));
    assert_eq!(c.frame().0["code"], "bad-frame");
    drop(c);
    base.check(&d, "2^63 body");
    assert!(!d.path("huge").exists());
}

#[test]
fn a_put_of_2_pow_63_without_max_upload_stops_with_the_client() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let mut c = d.authed();
    c.send_bytes(&raw_frame(format!(r#"{{"type":"put","path":"huge","size":{}}}"#, 1u64 << 63).as_bytes(), b""));
    for _ in 0..32 {
        c.send_bytes(&[1u8; 64 * 1024]);
    }
    eventually("the temp file grows", WAIT, || temp_files(d.root.path()).len() == 1);
    reset(c);
    base.check(&d, "2^63 put");
    assert!(!d.path("huge").exists());
}

/// Sends `header` (raw bytes) before and after auth; the reply or close.
fn try_header(d: &Daemon, header: &[u8], authed: bool) -> Option<Value> {
    let mut c = if authed { d.authed() } else { d.raw() };
    c.send_bytes(&raw_frame(header, b""));
    reply_or_close(&mut c)
}

#[test]
fn deep_nesting_unicode_escapes_and_invalid_utf8_are_bad_frames() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let deep = format!(r#"{{"type":"ping","x":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!(r#"{{"type":"ping","x":{}1{}}}"#, r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let invalid = b"{\"type\":\"ping\",\"x\":\"\xff\xfe\xc0\x80\"}".to_vec();
    let lone = br#"{"type":"ping","x":"\ud800"}"#.to_vec();
    for header in [deep.as_bytes(), deep_obj.as_bytes(), &invalid, &lone] {
        for authed in [false, true] {
            let r = try_header(&d, header, authed).expect("an error frame before the close");
            assert_eq!(r["code"], "bad-frame", "{r}");
        }
    }
    // 64 KiB of valid escapes in a string: just a long string.
    let mut esc = String::from(r#"{"type":"ping","id":""#);
    let mut n = 0;
    while esc.len() + 6 + 2 <= 65536 {
        esc.push_str(r"\u00e9");
        n += 1;
    }
    esc.push_str(r#""}"#);
    assert!(esc.len() > 65000 && esc.len() <= 65536);
    let r = try_header(&d, esc.as_bytes(), true).unwrap();
    assert_eq!(r["type"], "pong");
    assert_eq!(r["id"].as_str().unwrap(), "é".repeat(n));
    // Escapes of surrogate pairs, control characters and NUL in the path.
    let mut pairs = String::from(r#"{"type":"stat","path":""#);
    while pairs.len() + 12 + 2 <= 65536 {
        pairs.push_str(r"\ud83d\ude00");
    }
    pairs.push_str(r#""}"#);
    let r = try_header(&d, pairs.as_bytes(), true).unwrap();
    assert!(r["type"] == "error", "{r}");
    let r = try_header(&d, br#"{"type":"stat","path":"\u0000\u001b\n"}"#, true).unwrap();
    assert_eq!(r["code"], "bad-path", "{r}");
    base.check(&d, "malformed JSON");
}

#[test]
fn duplicate_keys_are_refused() {
    // Two parsers that disagree on which duplicate wins would see two
    // different requests: ferryd accepts none.
    let d = Daemon::start();
    let base = Baseline::take(&d);
    for h in [
        &br#"{"type":"ping","type":"exec","cmd":"touch pwned"}"#[..],
        br#"{"type":"exec","cmd":"true","cmd":"touch pwned"}"#,
        br#"{"type":"ping","size":0,"size":5}"#,
    ] {
        let r = try_header(&d, h, true).unwrap();
        assert_eq!(r["code"], "bad-frame", "{r}");
        assert!(r["message"].as_str().unwrap().contains("duplicate"), "{r}");
    }
    assert!(!d.path("pwned").exists());
    base.check(&d, "duplicate keys");
}

#[test]
fn numbers_as_floats_and_out_of_range_are_refused_or_exact() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    write_file(&d.path("f"), b"0123456789");
    let mut c = d.authed();
    // Ids are echoed as given.
    c.send_bytes(&raw_frame(br#"{"type":"ping","id":1.5}"#, b""));
    assert_eq!(c.frame().0["id"], 1.5);
    // Sizes, offsets and modes are integers.
    for (h, code) in [
        (&br#"{"type":"get","path":"f","offset":1.0}"#[..], "bad-request"),
        (br#"{"type":"get","path":"f","offset":1e3}"#, "bad-request"),
        (br#"{"type":"get","path":"f","offset":-1}"#, "bad-request"),
        (br#"{"type":"put","path":"g","mode":420.0}"#, "bad-request"),
        (br#"{"type":"exec","cmd":"true","timeout":-1e308}"#, "bad-request"),
    ] {
        c.send_bytes(&raw_frame(h, b""));
        let r = c.frame().0;
        assert_eq!(r["code"], code, "{}: {r}", String::from_utf8_lossy(h));
    }
    // A timeout of 1e308 s is capped, not an overflow.
    c.send_bytes(&raw_frame(br#"{"type":"exec","cmd":"exit 4","timeout":1e308}"#, b""));
    assert_eq!(c.exec_output().2["code"], 4);
    c.ping();
    // 1e309 is not a number JSON parsers can hold: a bad frame, fatal.
    for h in [&br#"{"type":"ping","size":1e309}"#[..], br#"{"type":"ping","id":1e309}"#, br#"{"type":"ping","id":-1e309}"#] {
        let r = try_header(&d, h, true).unwrap();
        assert_eq!(r["code"], "bad-frame", "{r}");
    }
    drop(c);
    base.check(&d, "numbers");
    assert!(!d.path("g").exists());
}

// ---- connections reset or half-closed in every state -----------------------

#[test]
fn a_reset_in_every_state_leaves_nothing_behind() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let data = vec![5u8; 8 << 20];
    write_file(&d.path("big"), &data);
    write_file(&d.path("keep"), b"old");
    let ping_frame = frame(json!({"type":"ping"}), b"");
    let body_frame = frame(json!({"type":"ping"}), &[0u8; 1000]);
    for authed in [false, true] {
        let conn = || if authed { d.authed() } else { d.raw() };
        // Right after connecting, without reading hello.
        let c = Raw::connect(d.addr);
        reset(c);
        // Mid-length, mid-header, mid-body.
        for cut in [2, 10, 500] {
            let mut c = conn();
            let f = if cut == 500 { &body_frame } else { &ping_frame };
            c.send_bytes(&f[..cut]);
            std::thread::sleep(Duration::from_millis(20));
            reset(c);
        }
    }
    // Mid-exec, with output pending and a grandchild.
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 30 & yes"}), b"");
    eventually("the command runs", WAIT, || !children_of(d.pid()).is_empty());
    let pgid = children_of(d.pid())[0];
    reset(c);
    eventually("the whole group is gone", WAIT, || group_members(pgid).is_empty());
    // Mid-exec with stdin open.
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["cat"],"stdin":true}), b"");
    c.send(json!({"type":"stdin"}), b"half");
    eventually("cat runs", WAIT, || !children_of(d.pid()).is_empty());
    reset(c);
    // Mid-get: the file frame and part of the body read.
    let mut c = d.authed();
    c.send(json!({"type":"get","path":"big"}), b"");
    let mut buf = vec![0u8; 100_000];
    c.sock.read_exact(&mut buf).unwrap();
    reset(c);
    // Mid-put, sized and streaming.
    let mut c = d.authed();
    let mut f = frame(json!({"type":"put","path":"keep"}), &[1u8; 200_000]);
    f.truncate(100_000);
    c.send_bytes(&f);
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    reset(c);
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"keep","stream":true}), b"");
    c.send(json!({"type":"data"}), &[2u8; 50_000]);
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    reset(c);
    base.check(&d, "resets");
    assert_eq!(std::fs::read(d.path("keep")).unwrap(), b"old");
    assert!(d.log.text().contains("closed"), "{}", d.log.text());
}

#[test]
fn a_half_closed_client_gets_its_replies_and_its_command_is_stopped() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    // Pipelined requests, then FIN: every reply comes, then EOF.
    let mut c = d.authed();
    for i in 0..3 {
        c.send(json!({"type":"ping","id":i}), b"");
    }
    c.send(json!({"type":"stat","path":"."}), b"");
    c.sock.shutdown(Shutdown::Write).unwrap();
    for i in 0..3 {
        assert_eq!(c.frame().0, json!({"type":"pong","id":i}));
    }
    assert_eq!(c.frame().0["type"], "stat");
    assert!(c.closed());
    // FIN during a command: the command is stopped (its stdin has its own frame).
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 30"}), b"");
    eventually("the command runs", WAIT, || !children_of(d.pid()).is_empty());
    c.sock.shutdown(Shutdown::Write).unwrap();
    eventually("the command is stopped", WAIT, || children_of(d.pid()).is_empty());
    assert!(c.closed());
    // A client that shuts its read side and keeps sending is still served.
    let mut c = d.authed();
    c.sock.shutdown(Shutdown::Read).unwrap();
    for _ in 0..100 {
        c.send(json!({"type":"ping"}), b"");
    }
    drop(c);
    // A client that never reads its FIN: the linger ends it.
    let mut c = d.authed();
    c.send(json!({"type":"bye"}), b"");
    std::thread::sleep(Duration::from_millis(100));
    base.check(&d, "half-closed");
    assert!(c.closed());
}

#[test]
fn ten_thousand_pipelined_pings_are_answered_in_order() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let mut c = d.authed();
    let mut bytes = Vec::new();
    for i in 0..10_000 {
        bytes.extend(frame(json!({"type":"ping","id":i}), b""));
    }
    let mut w = c.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    // Read nothing until every ping is sent (bounded by the write timeout).
    writer.join().unwrap();
    for i in 0..10_000 {
        let (h, _) = c.frame();
        assert_eq!(h, json!({"type":"pong","id":i}));
    }
    // The same with replies far larger than the buffers (24 MB against 1 MiB
    // of output buffer and the sockets'): backpressure, not memory.
    let id = "x".repeat(60_000);
    let mut bytes = Vec::new();
    for _ in 0..400 {
        bytes.extend(frame(json!({"type":"ping","id":id}), b""));
    }
    let mut w = c.sock.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes));
    std::thread::sleep(Duration::from_millis(500));
    let rss_stalled = d.rss_kib();
    for _ in 0..400 {
        assert_eq!(c.frame().0["id"].as_str().unwrap().len(), 60_000);
    }
    writer.join().unwrap().unwrap();
    assert!(rss_stalled < base.rss + RSS_SLACK_KIB, "RSS {rss_stalled} KiB with 24 MB of replies owed");
    drop(c);
    base.check(&d, "pipelining");
}

#[test]
fn five_thousand_connections_beyond_max_connections_are_refused() {
    assert!(raise_nofile() >= 6000, "this test needs 6000 open files");
    // A long auth timeout: the first 100 must not time out while the rest connect.
    let d = Daemon::start_with(&["--max-connections", "100", "--auth-timeout", "120"]);
    let base = Baseline::take(&d);
    let t = Instant::now();
    // 10 threads connect 510 each and read each first frame. (The daemon
    // closes refused connections first, so thousands of its TIME_WAITs sit on
    // loopback ports a new connect may reuse: that SYN waits for a 1 s
    // retransmit. Threads keep those waits from adding up.)
    let addr = d.addr;
    let threads: Vec<_> = (0..10)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut served, mut refused) = (Vec::new(), 0);
                for _ in 0..510 {
                    let mut c = Raw::connect(addr);
                    match reply_or_close(&mut c) {
                        Some(h) if h["type"] == "hello" => served.push(c),
                        Some(h) if h["code"] == "too-many-connections" => {
                            refused += 1;
                            assert!(c.closed());
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (served, refused)
            })
        })
        .collect();
    let (mut served, mut refused) = (Vec::new(), 0);
    for th in threads {
        let (s, r) = th.join().unwrap();
        served.extend(s);
        refused += r;
    }
    let hello = served.len();
    eprintln!("5,100 connections in {:?}", t.elapsed());
    assert_eq!(hello, 100, "exactly max_connections are served");
    assert_eq!(refused, 5_000);
    assert!(d.rss_kib() < base.rss + RSS_SLACK_KIB);
    drop(served);
    base.check(&d, "5000 connections");
}

#[test]
fn fd_exhaustion_neither_spins_nor_kills_and_the_backlog_is_served_after() {
    // 48 open files: after the daemon's own, room for a few dozen sockets.
    let d = Daemon::start_custom(&["--max-connections", "1000", "--auth-timeout", "30"], |cmd| limit(cmd, libc::RLIMIT_NOFILE, 48));
    let base = Baseline::take(&d);
    // Fill the table, then 20 more wait in the backlog.
    let mut held: Vec<Raw> = Vec::new();
    for _ in 0..60 {
        held.push(Raw::connect(d.addr));
    }
    assert!(d.log.wait_for("accept: ", WAIT).is_some(), "accept fails once fds run out:\n{}", d.log.text());
    // A second of refused accepts costs (almost) no CPU.
    let before = cpu_ticks(d.pid());
    for _ in 0..10 {
        // New connections keep arriving while the fds are exhausted.
        let _ = TcpStream::connect(d.addr);
        std::thread::sleep(Duration::from_millis(100));
    }
    let used = cpu_ticks(d.pid()) - before;
    assert!(used < 30, "{used} ticks of CPU in 1 s while fds were exhausted");
    // The connections accepted so far still answer; the rest wait in the backlog.
    let (mut served, mut waiting) = (Vec::new(), Vec::new());
    for mut c in held {
        c.sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        if c.try_frame().is_ok() {
            served.push(c);
        } else {
            waiting.push(c);
        }
    }
    assert!(!served.is_empty() && !waiting.is_empty(), "{} served, {} waiting", served.len(), waiting.len());
    assert!(alive(d.pid()));
    // Free the fds: the connections left in the backlog get their hello,
    // with no new connection to wake the listener.
    drop(served);
    for c in waiting.iter_mut() {
        c.sock.set_read_timeout(Some(WAIT)).unwrap();
        let h = c.frame().0;
        assert_eq!(h["type"], "hello", "{h}");
    }
    drop(waiting);
    base.check(&d, "fd exhaustion");
}

// ---- children that misbehave ----------------------------------------------

#[test]
fn a_grandchild_holding_the_pipe_does_not_hold_the_exit() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let mut c = d.authed();
    let t = Instant::now();
    c.send(json!({"type":"exec","cmd":"sleep 60 & echo $$; echo err >&2"}), b"");
    let (out, err, exit) = c.exec_output();
    let pgid: i32 = String::from_utf8_lossy(&out).trim().parse().unwrap();
    assert_eq!(err, b"err\n");
    assert_eq!(exit, json!({"type":"exit","code":0,"signal":null}));
    assert!(t.elapsed() < Duration::from_secs(10), "exit waited for the grandchild: {:?}", t.elapsed());
    eventually("the left-behind group is killed", WAIT, || group_members(pgid).is_empty());
    // Output the background process writes within the grace still comes.
    c.send(json!({"type":"exec","cmd":"(sleep 0.3; echo late) & echo early"}), b"");
    let (out, _, exit) = c.exec_output();
    assert_eq!(out, b"early\nlate\n");
    assert_eq!(exit["code"], 0);
    c.ping();
    drop(c);
    base.check(&d, "grandchild");
}

#[test]
fn a_child_that_closes_stdout_but_runs_on_is_waited_for() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let mut c = d.authed();
    let t = Instant::now();
    c.send(json!({"type":"exec","cmd":"echo a; exec >&- 2>&-; sleep 1.5; exit 3"}), b"");
    let (out, _, exit) = c.exec_output();
    assert_eq!(out, b"a\n");
    assert_eq!(exit["code"], 3, "the exit status is the command's");
    assert!(t.elapsed() >= Duration::from_millis(1400), "exit before the command ended");
    // Its pipes closed, it still answers signals and the timeout.
    c.send(json!({"type":"exec","cmd":"exec >&- 2>&-; sleep 30","timeout":0.5}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit["signal"], 15, "{exit}");
    c.ping();
    drop(c);
    base.check(&d, "closed stdout");
}

#[test]
fn a_gibibyte_of_output_to_a_slow_reader_costs_bounded_memory() {
    let d = Daemon::start();
    let base = Baseline::take(&d);
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"head -c 1073741824 /dev/zero"}), b"");
    // Read one byte a second (well, a few bytes over three seconds).
    let mut byte = [0u8; 1];
    for _ in 0..3 {
        c.sock.read_exact(&mut byte).unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    let rss = d.rss_kib();
    assert!(rss < base.rss + RSS_SLACK_KIB, "RSS {rss} KiB, baseline {} KiB", base.rss);
    // Others are served meanwhile.
    let mut other = d.authed();
    other.ping();
    assert!(!children_of(d.pid()).is_empty(), "the command is paused, not ended");
    drop((c, other));
    base.check(&d, "1 GiB to a slow reader");
}

// ---- the same before TLS: handshakes that never finish --------------------

/// A real ClientHello for the daemon's key, as `ferry --tls` would send it.
fn client_hello(d: &Daemon) -> Vec<u8> {
    let mut conn = ferry::tls::connect(&d.key).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 0x16, "a TLS handshake record");
    hello
}

/// True once the server has closed `s` (EOF or reset); false while it is
/// open. Reads and drops whatever the server sent (the clear `hello`, a
/// ServerHello, an alert).
fn server_closed(s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut buf = [0u8; 4096];
    let mut r: &TcpStream = s;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// `ferry --tls run` through the daemon works: others are served meanwhile.
fn tls_client_served(d: &Daemon, what: &str) {
    let mut c = d.ferry();
    c.env_remove("FERRY_TRANSPORT").args(["--tls", "run", &d.target(), "--", "echo", "served"]);
    let o = run_bounded(c, WAIT, "ferry --tls");
    assert_eq!(o.status.code(), Some(0), "{what}: {}", text(&o.stderr));
    assert_eq!(o.stdout, b"served\n", "{what}");
}

#[test]
fn a_slowloris_tls_handshake_is_cut_by_the_auth_timeout() {
    let d = Daemon::start_with(&["--auth-timeout", "2", "--idle-timeout", "3"]);
    let base = Baseline::take(&d);
    let hello = client_hello(&d);
    // 100 connections, each sending a ClientHello one byte every second.
    let mut slow: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(d.addr).unwrap()).collect();
    let start = Instant::now();
    let mut open = slow.len();
    for i in 0..6 {
        for s in &mut slow {
            let _ = s.write(&hello[i..i + 1]);
        }
        tls_client_served(&d, "during a TLS slowloris");
        d.authed().ping();
        std::thread::sleep(Duration::from_secs(1));
        open = slow.iter().filter(|s| !server_closed(s)).count();
        if open == 0 {
            break;
        }
    }
    assert_eq!(open, 0, "slow TLS handshakes still open after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(6), "closed near the 2 s auth timeout: {:?}", start.elapsed());
    drop(slow);
    eventually("100 TLS handshake timeouts logged", WAIT, || d.log.count("within 2s") >= 100);
    base.check(&d, "TLS slowloris");
}

#[test]
fn half_open_tls_handshakes_cost_bounded_memory_and_end_at_the_auth_timeout() {
    let d = Daemon::start_with(&["--auth-timeout", "2", "--idle-timeout", "3"]);
    let base = Baseline::take(&d);
    let hello = client_hello(&d);
    // 400 whole ClientHellos, then silence: the server answers with its
    // flight and waits for a Finished that never comes.
    let start = Instant::now();
    let half: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            s.write_all(&hello).unwrap();
            s
        })
        .collect();
    tls_client_served(&d, "beside 400 half-open TLS handshakes");
    let rss = d.rss_kib();
    assert!(rss <= base.rss + RSS_SLACK_KIB, "400 half-open handshakes: RSS {rss} KiB, baseline {} KiB", base.rss);
    eventually("the half-open handshakes are closed", WAIT, || half.iter().all(server_closed));
    assert!(start.elapsed() < Duration::from_secs(8), "closed near the 2 s auth timeout: {:?}", start.elapsed());
    drop(half);
    base.check(&d, "half-open TLS handshakes");
}

#[test]
fn garbage_after_0x16_and_a_huge_tls_record_length_are_closed_early() {
    let d = Daemon::start_with(&["--auth-timeout", "2", "--idle-timeout", "3"]);
    let base = Baseline::take(&d);
    let mut rng = Rng(0x16);
    let start = Instant::now();
    let mut conns = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(d.addr).unwrap();
        let mut bytes = vec![0x16];
        match i % 5 {
            // Random bytes after the content type.
            0 => bytes.extend(rng.bytes(4096)),
            // A handshake record of the largest length a header can say,
            // then as much as the server will take.
            1 => bytes.extend([0x03, 0x01, 0xff, 0xff]),
            // A plausible record header, a body that is not a ClientHello.
            2 => {
                bytes.extend([0x03, 0x01, 0x40, 0x00]);
                bytes.extend(rng.bytes(0x4000));
            }
            // A ClientHello claiming a 16 MiB body inside a legal record.
            3 => bytes.extend([0x03, 0x01, 0x00, 0x40, 0x01, 0xff, 0xff, 0xff]),
            // Application data before any handshake.
            _ => bytes = [0x17, 0x03, 0x03, 0xff, 0xff].iter().copied().chain(rng.bytes(1000)).collect(),
        }
        let _ = s.write_all(&bytes);
        conns.push(s);
    }
    // Keep feeding the huge records: the server must not buffer them.
    let junk = vec![0x41u8; 64 * 1024];
    let mut fed = 0usize;
    for s in conns.iter_mut().skip(1).step_by(5) {
        s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        for _ in 0..64 {
            match s.write(&junk) {
                Ok(n) => fed += n,
                Err(_) => break,
            }
        }
    }
    tls_client_served(&d, "beside TLS garbage");
    let rss = d.rss_kib();
    assert!(rss <= base.rss + RSS_SLACK_KIB, "TLS garbage: RSS {rss} KiB (fed {fed} bytes), baseline {} KiB", base.rss);
    eventually("every garbage connection is closed", WAIT, || conns.iter().all(server_closed));
    assert!(start.elapsed() < Duration::from_secs(8), "closed by the 2 s auth timeout at most: {:?}", start.elapsed());
    drop(conns);
    base.check(&d, "TLS garbage");
}
