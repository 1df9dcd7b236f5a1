//! Datagram mode end to end: the real ferryd with `--udp 127.0.0.1:0`, and a
//! small UDP client written here on `proto::datagram` (the codec is the
//! protocol; the client binary has its own tests in udp_client.rs).
//!
//! Every wait is bounded: socket reads have timeouts, retransmissions stop at
//! `WAIT`, and "silence" means nothing within `QUIET`.

mod common;

use common::*;
use ferry::proto::auth::Key;
use ferry::proto::datagram::{self, request, DatagramError, ExecResult, Reply};
use ferry::proto::msg::{self, Command};
use serde_json::{json, Map, Value};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long "no reply" is waited for. A reply, when there is one, comes in
/// milliseconds on loopback.
const QUIET: Duration = Duration::from_millis(600);

/// The flood test runs alone (write lock); the others share (read lock), so
/// its timings measure the daemon, not this binary's other tests.
static ALONE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    ALONE.read().unwrap_or_else(|e| e.into_inner())
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A UDP client of one daemon, with one key.
struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    key: Key,
}

impl Client {
    fn new(d: &Daemon) -> Client {
        Client::with_key(d, d.key.clone())
    }

    fn with_key(d: &Daemon, key: Key) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Client { sock, server: d.udp_addr(), key }
    }

    fn secret(&self) -> &[u8] {
        self.key.secret.as_bytes()
    }

    /// A request datagram for `header` (made by `request::*`).
    fn datagram(&self, header: Map<String, Value>) -> Vec<u8> {
        datagram::encode_request(&self.key.id, self.secret(), header, b"")
    }

    fn send(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).unwrap();
    }

    /// The next datagram within `t`.
    fn recv(&self, t: Duration) -> Option<Vec<u8>> {
        self.sock.set_read_timeout(Some(t)).unwrap();
        let mut buf = vec![0u8; 70_000];
        match self.sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, self.server);
                Some(buf[..n].to_vec())
            }
            Err(_) => None,
        }
    }

    /// Sends `bytes` and retransmits them every 200 ms until a reply
    /// answering `nonce` comes; the reply, checked, and its raw bytes.
    fn ask_raw(&self, bytes: &[u8], nonce: &str) -> (Reply, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no reply for nonce {nonce}");
            self.send(bytes);
            let until = Instant::now() + Duration::from_millis(200);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                let Some(raw) = self.recv(left.max(Duration::from_millis(1))) else { break };
                let r = datagram::decode_reply(self.secret(), &raw).expect("the reply is tagged with our key");
                if r.answers(nonce) {
                    return (r, raw);
                }
            }
        }
    }

    fn ask(&self, header: Map<String, Value>, nonce: &str) -> Reply {
        self.ask_raw(&self.datagram(header), nonce).0
    }

    fn ping(&self) -> Reply {
        let nonce = datagram::fresh_udp_nonce();
        self.ask(request::ping(&nonce, now()), &nonce)
    }

    fn exec_req(&self, req: &msg::Exec) -> Reply {
        let nonce = datagram::fresh_udp_nonce();
        self.ask(request::exec(req, &nonce, now()), &nonce)
    }

    fn cmd(&self, cmd: &str) -> Reply {
        self.exec_req(&exec(Command::Shell(cmd.into())))
    }

    fn argv(&self, argv: &[&str]) -> Reply {
        self.exec_req(&exec(Command::Argv(argv.iter().map(|s| s.to_string()).collect())))
    }

    /// Asserts that nothing comes back within `QUIET`.
    fn silence(&self, what: &str) {
        if let Some(raw) = self.recv(QUIET) {
            panic!("{what}: got a reply: {:?}", datagram::decode_reply(self.secret(), &raw));
        }
    }
}

fn exec(command: Command) -> msg::Exec {
    msg::Exec { command, env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None }
}

fn result(r: &Reply) -> ExecResult {
    ExecResult::from_reply(r).unwrap_or_else(|| panic!("not a result: {:?}", r.header))
}

fn error_code(r: &Reply) -> String {
    assert_eq!(r.header.kind, "error", "{:?}", r.header);
    r.header.str("code").unwrap().to_string()
}

#[test]
fn ping_and_exec_round_trip_with_tags_checked_both_ways() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    assert!(d.log.wait_for("listening on 127.0.0.1:", WAIT).unwrap().ends_with(&d.addr.to_string()), "TCP first");
    let c = Client::new(&d);

    let nonce = datagram::fresh_udp_nonce();
    let (pong, raw) = c.ask_raw(&c.datagram(request::ping(&nonce, now())), &nonce);
    assert_eq!(pong.header.kind, "pong");
    assert!((pong.header.fields["ts"].as_i64().unwrap() - now()).abs() <= 2, "{:?}", pong.header);
    // The reply's tag is the reply label's, with our key; a broken one is refused.
    for i in [0, 31, 32, 40, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 1;
        assert!(datagram::decode_reply(c.secret(), &bad).is_err(), "byte {i} flipped");
    }
    assert_eq!(datagram::decode_reply(b"another key entirely", &raw).unwrap_err(), DatagramError::BadTag);

    let r = c.cmd("echo out; echo err >&2; exit 3");
    let x = result(&r);
    assert_eq!((x.stdout.as_slice(), x.stderr.as_slice(), x.code, x.signal), (&b"out\n"[..], &b"err\n"[..], Some(3), None));
    assert_eq!((x.stdout_total, x.stderr_total, x.truncated), (4, 4, false));

    // An id is echoed; the access line is TCP's shape.
    let nonce = datagram::fresh_udp_nonce();
    let mut h = request::exec(&exec(Command::Argv(vec!["echo".into(), "hi".into()])), &nonce, now());
    h.insert("id".into(), json!("req-7"));
    let r = c.ask(h, &nonce);
    assert_eq!(r.header.id, Some(json!("req-7")));
    assert_eq!(result(&r).stdout, b"hi\n");
    let line = d.log.wait_for(r#"exec argv=["echo","hi"]"#, WAIT).unwrap();
    let port = c.sock.local_addr().unwrap().port();
    let want = format!(r#"access: udp 127.0.0.1:{port} key=test exec argv=["echo","hi"] in=0 out=3 dur="#);
    assert!(line.contains(&want) && line.ends_with("s result=exit:0"), "{line}");
    assert!(d.log.text().contains(&format!("access: udp 127.0.0.1:{port} key=test ping in=0 out=0")), "pings are debug lines");
}

#[test]
fn stat_answers_as_over_tcp_and_other_types_are_tcp_only() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    write_file(&d.path("f"), b"12345");
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let r = c.ask(request::stat("f", &nonce, now()), &nonce);
    assert_eq!(r.header.kind, "stat");
    assert_eq!((r.header.fields["kind"].as_str(), r.header.fields["file_size"].as_u64()), (Some("file"), Some(5)));
    let nonce = datagram::fresh_udp_nonce();
    assert_eq!(error_code(&c.ask(request::stat("../x", &nonce, now()), &nonce)), "bad-path");
    let nonce = datagram::fresh_udp_nonce();
    let mut get = msg::request::get("f", 0, msg::Digest::Sha256);
    get.insert("nonce".into(), json!(nonce));
    get.insert("ts".into(), json!(now()));
    assert_eq!(error_code(&c.ask(get, &nonce)), "unknown-type");
    // No stdin over UDP; an id too long for a reply is refused and not echoed.
    let nonce = datagram::fresh_udp_nonce();
    let mut h = request::exec(&exec(Command::Shell("cat".into())), &nonce, now());
    h.insert("stdin".into(), json!(true));
    assert_eq!(error_code(&c.ask(h, &nonce)), "bad-request");
    // Nor a terminal: the reply says to use TCP.
    let nonce = datagram::fresh_udp_nonce();
    let mut h = request::exec(&exec(Command::Shell("tty".into())), &nonce, now());
    h.insert("pty".into(), json!({"term": "vt100", "rows": 24, "cols": 80}));
    let r = c.ask(h, &nonce);
    assert_eq!(error_code(&r), "bad-request");
    assert!(r.header.str("message").unwrap().contains("no terminal over UDP"), "{:?}", r.header);
    let nonce = datagram::fresh_udp_nonce();
    let mut h = request::ping(&nonce, now());
    h.insert("id".into(), json!("x".repeat(100)));
    let r = c.ask(h, &nonce);
    assert_eq!((error_code(&r), r.header.id.clone()), ("bad-request".to_string(), None));
}

#[test]
fn strangers_get_silence() {
    let _alone = shared();
    let start = Instant::now();
    let d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let good = c.datagram(request::ping(&nonce, now()));

    let mut bad_tag = good.clone();
    bad_tag[5] ^= 0x10;
    c.send(&bad_tag);
    c.silence("a wrong tag");

    let stranger = Key { id: "nobody".into(), secret: d.key.secret.clone() };
    let other = Client::with_key(&d, stranger);
    other.send(&other.datagram(request::ping(&datagram::fresh_udp_nonce(), now())));
    other.silence("an unknown key id");

    c.send(&good[..good.len() - 1]);
    c.silence("a truncated datagram");
    c.send(&good[..20]);
    c.silence("a datagram shorter than a tag");

    // Oversized: bytes after the body, and a header length past the end.
    let mut long = good.clone();
    long.resize(datagram::MAX_DATAGRAM, b'x');
    c.send(&long);
    c.silence("trailing bytes");
    let mut past = good.clone();
    past[datagram::TAG_LEN..datagram::OVERHEAD].copy_from_slice(&60_000u32.to_be_bytes());
    c.send(&past);
    c.silence("a header length past the end");
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    c.silence("not ferry at all");

    // None of them cost the nonce: the good datagram is still served.
    assert_eq!(c.ask_raw(&good, &nonce).0.header.kind, "pong");
    let line = d.log.wait_for("udp: no answer to", WAIT).expect("drops are logged at debug");
    assert!(line.contains("wrong tag"), "{line}");
    // At most a line a second (and the first at once).
    let lines = d.log.count("udp: no answer to") as u64;
    assert!(lines < 7 && lines <= start.elapsed().as_secs() + 1, "rate-limited:\n{}", d.log.text());
}

#[test]
fn a_stale_or_future_ts_is_clock_skew_and_runs_nothing() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    for skew in [-3600, 31, 3600] {
        let nonce = datagram::fresh_udp_nonce();
        let cmd = exec(Command::Shell("echo ran >> ran".into()));
        let r = c.ask(request::exec(&cmd, &nonce, now() + skew), &nonce);
        assert_eq!(error_code(&r), "clock-skew", "skew {skew}");
        assert!((r.header.fields["ts"].as_i64().unwrap() - now()).abs() <= 2, "{:?}", r.header);
        // Not recorded: the same nonce with a good ts is served.
        let r = c.ask(request::ping(&nonce, now()), &nonce);
        assert_eq!(r.header.kind, "pong");
    }
    assert!(!d.path("ran").exists());
}

#[test]
fn a_retransmitted_exec_runs_once_and_gets_the_same_reply() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let cmd = exec(Command::Shell("sleep 0.5; echo x >> counter; wc -l < counter".into()));
    let bytes = c.datagram(request::exec(&cmd, &nonce, now()));
    // Retransmit every 50 ms for 2 s: during the run nothing comes back,
    // after it the cached reply does, each time.
    let start = Instant::now();
    let mut replies = Vec::new();
    while start.elapsed() < Duration::from_secs(2) {
        c.send(&bytes);
        if let Some(raw) = c.recv(Duration::from_millis(50)) {
            replies.push((start.elapsed(), raw));
        }
    }
    assert!(replies.len() >= 3, "{} replies", replies.len());
    assert!(replies[0].0 >= Duration::from_millis(450), "the first reply came at {:?}", replies[0].0);
    assert!(replies.iter().all(|(_, r)| r == &replies[0].1), "the same bytes every time");
    let r = datagram::decode_reply(c.secret(), &replies[0].1).unwrap();
    assert_eq!(result(&r).stdout, b"1\n");
    assert_eq!(std::fs::read_to_string(d.path("counter")).unwrap(), "x\n");
    assert_eq!(d.log.count("access: udp"), 1, "one access line:\n{}", d.log.text());
}

#[test]
fn replayed_once_the_cache_let_the_reply_go_or_from_another_address() {
    let _alone = shared();
    let toml = "[udp]\nlisten = [\"127.0.0.1:0\"]\ncache_max = 1\n";
    let (d, _) = Daemon::start_config(toml, &["--log-level", "debug"], |_| {});
    let c = Client::new(&d);
    let first = datagram::fresh_udp_nonce();
    let a = c.datagram(request::exec(&exec(Command::Shell("echo a >> runs".into())), &first, now()));
    assert!(result(&c.ask_raw(&a, &first).0).code == Some(0));
    // The cached reply goes back to the address the request came from only.
    let elsewhere = Client::new(&d);
    let r = datagram::decode_reply(c.secret(), &elsewhere.ask_raw(&a, &first).1).unwrap();
    assert_eq!(error_code(&r), "replayed");
    assert_eq!(c.ask_raw(&a, &first).0.header.kind, "result");
    // A second request takes the one cache entry.
    c.cmd("echo b >> runs");
    let r = c.ask_raw(&a, &first).0;
    assert_eq!(error_code(&r), "replayed");
    assert_eq!(std::fs::read_to_string(d.path("runs")).unwrap(), "a\nb\n", "a ran once");
}

#[test]
fn long_output_is_truncated_to_fit_max_reply() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let cmd = exec(Command::Argv(vec!["seq".into(), "1".into(), "100000".into()]));
    let (r, raw) = c.ask_raw(&c.datagram(request::exec(&cmd, &nonce, now())), &nonce);
    // Full, but for the few digits the header's bound allows for.
    assert!(raw.len() <= 1400 && raw.len() > 1390, "{} bytes", raw.len());
    let x = result(&r);
    let all = std::process::Command::new("seq").args(["1", "100000"]).output().unwrap().stdout;
    assert!(x.truncated);
    assert_eq!((x.stdout_total, x.stderr_total), (all.len() as u64, 0));
    assert!(all.starts_with(&x.stdout) && x.stdout.len() > 1100, "{}", x.stdout.len());
    assert!(d.log.wait_for("result=exit:0 truncated=true", WAIT).is_some());

    // Both streams long: each gets half of the budget.
    let x = result(&c.cmd("seq 1 100000; seq 1 100000 >&2"));
    assert!(x.truncated && x.stdout.len().abs_diff(x.stderr.len()) <= 1, "{} {}", x.stdout.len(), x.stderr.len());
    // A short stderr is whole; stdout gets the rest.
    let x = result(&c.cmd("seq 1 100000; echo oops >&2"));
    assert_eq!(x.stderr, b"oops\n");
    assert!(x.stdout.len() > 1100);
}

#[test]
fn busy_when_every_child_slot_is_taken() {
    let _alone = shared();
    let d = Daemon::start_udp(&["--max-children", "1"]);
    let c = Client::new(&d);
    let mut tcp = d.authed();
    tcp.send(json!({"type":"exec","argv":["sleep","30"]}), b"");
    eventually("the TCP command runs", WAIT, || !children_of(d.pid()).is_empty());
    let r = c.argv(&["echo", "never"]);
    assert_eq!(error_code(&r), "busy");
    tcp.send(json!({"type":"signal","signal":"KILL"}), b"");
    assert_eq!(tcp.exec_output().2["signal"], 9);
    // The slot is free again (reaped on SIGCHLD).
    let deadline = Instant::now() + WAIT;
    loop {
        let r = c.argv(&["echo", "now"]);
        if r.header.kind == "result" {
            assert_eq!(result(&r).stdout, b"now\n");
            break;
        }
        assert_eq!(error_code(&r), "busy");
        assert!(Instant::now() < deadline, "the slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_exec_policy_applies() {
    let _alone = shared();
    let toml = "[exec]\nallowed = [\"echo\"]\n[udp]\nlisten = [\"127.0.0.1:0\"]\nexec_timeout = 1\n";
    let (d, _) = Daemon::start_config(toml, &[], |_| {});
    let c = Client::new(&d);
    assert_eq!(result(&c.argv(&["echo", "ok"])).stdout, b"ok\n");
    assert_eq!(error_code(&c.argv(&["ls"])), "not-allowed");
    assert_eq!(error_code(&c.cmd("echo via the shell")), "not-allowed");

    let d = Daemon::start_udp(&["--no-exec"]);
    let c = Client::new(&d);
    assert_eq!(error_code(&c.argv(&["echo", "ok"])), "exec-disabled");
    assert_eq!(c.ping().header.kind, "pong");
}

#[test]
fn udp_exec_timeout_is_a_ceiling() {
    let _alone = shared();
    let toml = "[udp]\nlisten = [\"127.0.0.1:0\"]\nexec_timeout = 1\n";
    let (d, _) = Daemon::start_config(toml, &[], |_| {});
    let c = Client::new(&d);
    let t = Instant::now();
    let mut req = exec(Command::Argv(vec!["sleep".into(), "30".into()]));
    req.timeout = Some(60.0);
    let x = result(&c.exec_req(&req));
    assert_eq!((x.code, x.signal, x.timed_out), (None, Some(15), true));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[test]
fn hup_adds_and_removes_keys_and_a_removed_key_falls_silent() {
    let _alone = shared();
    let d = Daemon::start_udp(&[]);
    let before = std::fs::read_to_string(&d.keys_path).unwrap();
    ferry::keys::generate(&d.keys_path, "other").unwrap();
    let other = ferry::keys::load(&d.keys_path).unwrap().get("other").unwrap().clone();
    let o = Client::with_key(&d, other);
    d.signal(libc::SIGHUP);
    eventually("the reload", WAIT, || d.log.count("configuration reloaded") == 1);
    assert_eq!(o.ping().header.kind, "pong");

    std::fs::write(&d.keys_path, before).unwrap();
    d.signal(libc::SIGHUP);
    eventually("the second reload", WAIT, || d.log.count("configuration reloaded") == 2);
    o.send(&o.datagram(request::ping(&datagram::fresh_udp_nonce(), now())));
    o.silence("a removed key");
    assert_eq!(Client::new(&d).ping().header.kind, "pong");
}

#[test]
fn term_lets_a_running_udp_exec_finish_and_refuses_new_requests() {
    let _alone = shared();
    let mut d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let cmd = exec(Command::Shell("sleep 1; echo finished".into()));
    let bytes = c.datagram(request::exec(&cmd, &nonce, now()));
    c.send(&bytes);
    eventually("the command runs", WAIT, || !children_of(d.pid()).is_empty());
    d.signal(libc::SIGTERM);
    assert!(d.log.wait_for("TERM: stopped accepting", WAIT).is_some());
    let late = c.ping();
    assert_eq!(error_code(&late), "shutting-down");
    let (r, _) = c.ask_raw(&bytes, &nonce);
    assert_eq!(result(&r).stdout, b"finished\n");
    assert_eq!(d.wait_exit(WAIT), Some(0));
}

#[test]
fn off_by_default_and_on_for_every_address_given() {
    let _alone = shared();
    let d = Daemon::start();
    assert!(d.log.wait_for("serving ", WAIT).is_some());
    assert!(!d.log.text().contains("/udp"), "{}", d.log.text());
    drop(d);
    let d = Daemon::start_udp(&["--udp", "[::1]:0"]);
    assert!(d.log.wait_for("serving ", WAIT).is_some());
    assert_eq!(d.log.count("/udp"), 2, "{}", d.log.text());
    let line = d.log.wait_for("listening on [::1]:", WAIT).unwrap();
    let v6: SocketAddr = line.rsplit("listening on ").next().unwrap().trim_end_matches("/udp").parse().unwrap();
    let mut c = Client::new(&d);
    c.sock = UdpSocket::bind("[::1]:0").unwrap();
    c.server = v6;
    assert_eq!(c.ping().header.kind, "pong");
}

#[test]
fn a_udp_exec_still_running_at_the_drain_timeout_gets_term_and_its_reply() {
    let _alone = shared();
    let mut d = Daemon::start_udp(&["--drain-timeout", "1"]);
    let c = Client::new(&d);
    let nonce = datagram::fresh_udp_nonce();
    let bytes = c.datagram(request::exec(&exec(Command::Argv(vec!["sleep".into(), "30".into()])), &nonce, now()));
    c.send(&bytes);
    eventually("the command runs", WAIT, || !children_of(d.pid()).is_empty());
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let x = result(&c.ask_raw(&bytes, &nonce).0);
    assert_eq!((x.code, x.signal), (None, Some(15)));
    assert_eq!(d.wait_exit(WAIT), Some(0));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(d.log.text().contains("drain timeout: TERM to 1 running commands"), "{}", d.log.text());
}

/// Garbage of every kind ferryd must stay silent to: random bytes, a
/// stranger's key id, a wrong tag, a cut datagram, now and then a big one.
fn garbage(rng: &mut Rng, key: &Key) -> Vec<u8> {
    let nonce = datagram::fresh_udp_nonce();
    match rng.next() % 50 {
        0 => {
            let mut h = request::ping(&nonce, now());
            h.insert("pad".into(), json!("p".repeat(32_000)));
            datagram::encode_request(&key.id, b"not the key", h, b"")
        }
        n if n % 4 == 0 => (0..1 + rng.next() % 1400).map(|_| rng.next() as u8).collect(),
        n if n % 4 == 1 => datagram::encode_request("nobody", key.secret.as_bytes(), request::ping(&nonce, now()), b""),
        n if n % 4 == 2 => datagram::encode_request(&key.id, b"not the key", request::stat("f", &nonce, now()), b""),
        _ => {
            let g = datagram::encode_request(&key.id, key.secret.as_bytes(), request::ping(&nonce, now()), b"");
            g[..(rng.next() as usize % g.len())].to_vec()
        }
    }
}

/// Worst ping bound under the flood: generous for a debug build on two busy
/// cores (the flooder, the pinger and the daemon share them; typical worst
/// seen: 50 ms), and far below what a reactor that reads its UDP socket dry
/// would cost while the flooder keeps it full (seconds: the whole flood).
const WORST_PING: Duration = Duration::from_millis(500);
/// And the median: a TCP ping is answered in the turn its frame arrives.
const MEDIAN_PING: Duration = Duration::from_millis(5);
/// RSS growth allowed over the flood: the daemon's UDP state is fixed-size
/// for strangers (one receive buffer, counters), so this is allocator noise.
const RSS_GROWTH_KIB: u64 = 2048;

#[test]
fn a_flood_of_garbage_does_not_slow_tcp_clients_or_grow_the_daemon() {
    let _alone = ALONE.write().unwrap_or_else(|e| e.into_inner());
    let d = Daemon::start_udp(&[]);
    let c = Client::new(&d);
    let mut tcp = d.authed();
    let mut ping = || {
        let t = Instant::now();
        tcp.send(json!({"type":"ping"}), b"");
        assert_eq!(tcp.frame().0["type"], "pong");
        t.elapsed()
    };
    let mut quiet: Vec<Duration> = (0..300).map(|_| ping()).collect();
    assert_eq!(c.ping().header.kind, "pong");
    let rss_before = d.rss_kib();

    // Made first, then sent as fast as the socket takes them, in bursts of
    // 200 with a 5 ms breath, so that most of them reach the daemon rather
    // than overflow its socket's receive buffer.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let junk: Vec<Vec<u8>> = (0..20_000).map(|_| garbage(&mut rng, &d.key)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let (server, flag) = (c.server, done.clone());
    let flooder = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        for burst in junk.chunks(200) {
            for g in burst {
                let _ = sock.send_to(g, server);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        flag.store(true, Ordering::SeqCst);
        t.elapsed()
    });
    let mut flood: Vec<Duration> = Vec::new();
    while !done.load(Ordering::SeqCst) {
        flood.push(ping());
    }
    // And while the daemon works off what is left in its socket.
    let after = Instant::now();
    while after.elapsed() < Duration::from_millis(300) {
        flood.push(ping());
    }
    let took = flooder.join().unwrap();
    // The daemon is whole: a real request is answered, and its memory is flat.
    assert_eq!(c.ping().header.kind, "pong");
    let rss_after = d.rss_kib();

    quiet.sort();
    flood.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "flood: 20000 datagrams sent in {:.0} ms; TCP pings quiet median {:.3} ms worst {:.3} ms; \
         during the flood {} pings, median {:.3} ms, p99 {:.3} ms, worst {:.3} ms; RSS {} -> {} KiB",
        ms(&took),
        ms(&quiet[quiet.len() / 2]),
        ms(quiet.last().unwrap()),
        flood.len(),
        ms(&flood[flood.len() / 2]),
        ms(&flood[flood.len() * 99 / 100]),
        ms(flood.last().unwrap()),
        rss_before,
        rss_after
    );
    assert!(*flood.last().unwrap() < WORST_PING, "worst TCP ping during the flood: {:?}", flood.last().unwrap());
    assert!(flood[flood.len() / 2] < MEDIAN_PING, "median TCP ping during the flood: {:?}", flood[flood.len() / 2]);
    assert!(rss_after <= rss_before + RSS_GROWTH_KIB, "RSS grew from {rss_before} to {rss_after} KiB");
    // The drops were counted, and logged at most once a second.
    let mut d = d;
    let lines = d.log.count("udp: no answer to") as u64;
    assert!(lines <= took.as_secs() + 2, "{lines} debug lines in {took:?}");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0));
    let counted = d.log.wait_for("datagrams got no answer", WAIT).expect("the count at exit");
    eprintln!("flood: {counted}");
}

#[test]
fn past_max_rejects_a_second_reading_pauses_and_says_so() {
    let _alone = shared();
    let toml = "[udp]\nlisten = [\"127.0.0.1:0\"]\nmax_rejects = 100\n";
    let (mut d, _file) = Daemon::start_config(toml, &["--foreground", "--log-level", "debug"], |_| {});
    let c = Client::new(&d);
    let mut tcp = d.authed();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let junk: Vec<Vec<u8>> = (0..200).map(|_| garbage(&mut rng, &d.key)).collect();
    // Sent at once: more than the 10 a 100 ms slice allows reach the daemon.
    // It judges 10, then leaves its socket unread until the slice ends.
    for g in &junk {
        let _ = c.sock.send_to(g, c.server);
    }
    let warning = d.log.wait_for("fail the checks", WAIT).expect("a warning that reading paused");
    assert!(
        warning.contains("warn: udp: more than 100 datagrams a second fail the checks (udp.max_rejects); reading pauses"),
        "{warning}"
    );
    // TCP is served meanwhile, and a real datagram is answered once the junk
    // ahead of it in the socket has been read (or dropped by the kernel).
    tcp.send(json!({"type":"ping"}), b"");
    assert_eq!(tcp.frame().0["type"], "pong");
    assert_eq!(c.ping().header.kind, "pong");
    // One warning per 10 s at most, however many slices paused.
    assert_eq!(d.log.count("fail the checks"), 1);
    drop(tcp);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0));
}
