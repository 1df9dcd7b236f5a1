//! `ferry ping -u` and `ferry run -u` with the real binaries, against ferryd
//! started with `--udp 127.0.0.1:0`, through a small UDP proxy that drops or
//! damages chosen datagrams, and against fake servers that answer with the
//! test's own key (a reply for another nonce, a `clock-skew` error).

mod common;

use common::{make_keys, Daemon};
use ferry::proto::datagram::{self, reply};
use ferry::proto::msg::{ErrorCode, ProtoError};
use serde_json::{Map, Value};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// ferryd with a UDP socket on a free port; the daemon and that address.
fn udp_daemon(extra: &[&str]) -> (Daemon, SocketAddr) {
    let d = Daemon::start_udp(extra);
    let addr = d.udp_addr();
    (d, addr)
}

fn run_u(d: &Daemon, addr: SocketAddr, extra: &[&str], command: &[&str]) -> Output {
    let mut c = d.ferry();
    c.args(["run", "-u"]).args(extra).arg(addr.to_string()).arg("--").args(command);
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_u_gives_output_and_status() {
    let (d, addr) = udp_daemon(&[]);
    let o = run_u(&d, addr, &[], &["echo out; echo err >&2; exit 3"]);
    assert_eq!(o.stdout, b"out\n");
    assert_eq!(o.stderr, b"err\n");
    assert_eq!(o.status.code(), Some(3));

    // Several arguments are argv, run without a shell.
    let o = run_u(&d, addr, &[], &["printf", "%s|", "a b", "$HOME"]);
    assert_eq!(o.stdout, b"a b|$HOME|");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    // A signal is 128 + its number.
    let o = run_u(&d, addr, &[], &["kill -9 $$"]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));

    // The command reads nothing: there is no stdin in datagram mode.
    let mut c = d.ferry();
    c.args(["run", "-u", &addr.to_string(), "--", "wc -c"]);
    let o = common::run_with_input(c, b"not sent\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
}

#[test]
fn a_slow_command_is_waited_for_and_runs_once() {
    let (d, addr) = udp_daemon(&[]);
    // The datagram is sent again at 0.2 and 0.6 s while the command runs; the
    // server answers once it has ended.
    let o = run_u(&d, addr, &["-v"], &["sleep 1; echo x >> counter; echo done"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, b"done\n");
    assert!(stderr(&o).contains("(again)"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.path("counter")).unwrap(), "x\n", "ran once");

    // One that outlives -w: the line says it may still be running.
    let o = run_u(&d, addr, &["-w", "0.5"], &["sleep 3"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).trim_end().ends_with("or the command still runs (a longer -w waits for it)"), "{}", stderr(&o));
}

#[test]
fn the_servers_time_limit_is_reported() {
    let (d, _) = Daemon::start_config("[udp]\nlisten = [\"127.0.0.1:0\"]\nexec_timeout = 1\n", &[], |_| {});
    let addr = d.udp_addr();
    let o = run_u(&d, addr, &[], &["echo started; sleep 10"]);
    assert_eq!(o.stdout, b"started\n");
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM), "{}", stderr(&o));
    assert!(stderr(&o).contains("time limit for datagram requests (udp.exec_timeout)"), "{}", stderr(&o));
}

#[test]
fn run_u_errors_exit_as_over_tcp() {
    let (d, addr) = udp_daemon(&[]);
    let o = run_u(&d, addr, &[], &["/no/such/program", "x"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("ferry: "), "{}", stderr(&o));

    // Every child slot taken (by a TCP command here): busy, at once.
    let (d, addr) = udp_daemon(&["--max-children", "1"]);
    let mut slow = d.ferry();
    slow.args(["run", "-n", &d.target(), "--", "touch started; sleep 3"]).stdout(std::process::Stdio::null());
    let mut slow = slow.spawn().unwrap();
    common::eventually("the TCP command started", common::WAIT, || d.path("started").exists());
    let o = run_u(&d, addr, &[], &["touch ran"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("busy"), "{}", stderr(&o));
    assert!(!d.path("ran").exists());
    slow.kill().unwrap();
    slow.wait().unwrap();

    let (d, addr) = udp_daemon(&["--no-exec"]);
    let o = run_u(&d, addr, &[], &["true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("exec-disabled"), "{}", stderr(&o));
}

#[test]
fn run_u_decodes_with_encoding() {
    let (d, addr) = udp_daemon(&[]);
    let o = run_u(&d, addr, &["--encoding", "gbk"], &[r"printf '\304\343\272\303'; printf '\312\300\275\347' >&2"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "你好");
    assert_eq!(String::from_utf8(o.stderr).unwrap(), "世界");
    let o = d.ferry().env("FERRY_ENCODING", "gbk").args(["run", "-u", &addr.to_string(), "--", r"printf '\304\343'"]).output().unwrap();
    assert_eq!(String::from_utf8(o.stdout).unwrap(), "你");
}

#[test]
fn run_u_warns_when_the_output_was_cut() {
    let (d, addr) = udp_daemon(&[]);
    let o = run_u(&d, addr, &[], &["seq 1 100000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let full: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert!(!o.stdout.is_empty() && o.stdout.len() < 1400, "{} bytes", o.stdout.len());
    assert!(full.as_bytes().starts_with(&o.stdout), "the output is a prefix of seq's");
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("truncated") && err.contains(&format!("{} of {}", o.stdout.len(), full.len())), "{err}");
}

#[test]
fn ping_u_prints_round_trips() {
    let (d, addr) = udp_daemon(&[]);
    let o = d.ferry().args(["ping", "-u", "-c", "2", "--interval", "0.05", &addr.to_string()]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with(&format!("pong from {addr}/udp: seq=1 time=")) && lines[0].ends_with(" ms"), "{out}");
    assert!(lines[1].contains("seq=2"), "{out}");
    assert!(lines[2].starts_with("2 pings: min/avg/max = "), "{out}");

    let o = d.ferry().args(["ping", "-u", "-q", &addr.to_string()]).output().unwrap();
    assert!(o.status.success() && o.stdout.is_empty() && o.stderr.is_empty());
}

/// Runs `cmd`, which must exit 255 with the one "no reply" line, within `w` seconds (plus slack).
fn assert_no_reply(mut cmd: Command, w: f64) {
    let t = Instant::now();
    let o = cmd.output().unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("ferry: no reply from "), "{err}");
    for cause in ["wrong key", "UDP not enabled", "clock skew"] {
        assert!(err.contains(cause), "{err}");
    }
    assert!(took >= w - 0.05 && took < w + 1.5, "gave up after {took:.2} s with -w {w}");
}

#[test]
fn a_wrong_key_gets_silence_and_exits_255_within_w() {
    let (d, addr) = udp_daemon(&[]);
    let (_dir, other_keys, _) = make_keys();
    let mut c = Command::new(common::ferry_bin());
    c.arg("-k").arg(&other_keys).args(["-w", "1", "run", "-u", &addr.to_string(), "--", "touch ran"]);
    assert_no_reply(c, 1.0);
    assert!(!d.path("ran").exists());

    // Same without -u's default: -w 0.5 for ping.
    let mut c = Command::new(common::ferry_bin());
    c.arg("-k").arg(&other_keys).args(["-w", "0.5", "ping", "-u", &addr.to_string()]);
    assert_no_reply(c, 0.5);
}

#[test]
fn no_udp_listener_is_reported_at_once() {
    // TCP only: the host answers ICMP port unreachable, which ends the wait
    // at once, naming the address, not the key.
    let d = Daemon::start();
    let t = Instant::now();
    let o = d.ferry().args(["-w", "5", "ping", "-u", &d.target()]).output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "waited {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("ferry: no UDP listener at {}", d.target())), "{err}");
    assert!(!err.contains("key"), "{err}");
}

#[test]
fn the_default_wait_is_five_seconds() {
    // A socket that never answers.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let d = Daemon::start();
    let mut c = d.ferry();
    c.args(["-v", "ping", "-u", &sink.local_addr().unwrap().to_string()]);
    let t = Instant::now();
    let o = c.output().unwrap();
    let took = t.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(255));
    assert!((4.9..6.5).contains(&took), "{took}");
    // 0, 0.2, 0.6, 1.4 and 3 s: five sends of the same datagram.
    let mut buf = [0u8; 2048];
    sink.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    while let Ok(n) = sink.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got.len(), 5, "{}", stderr(&o));
    assert!(got.iter().all(|g| g == &got[0]), "retransmissions are the same bytes (same nonce)");
    assert!(stderr(&o).contains("(5 datagrams sent)"), "{}", stderr(&o));
}

// ---- a proxy that loses or damages datagrams ------------------------------

type Policy = Box<dyn FnMut(usize, &mut Vec<u8>) -> bool + Send>;

/// A UDP relay between one client and `upstream`. Each datagram goes
/// through its direction's policy with its index (0, 1, ...): false drops it.
struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    replies: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: SocketAddr, mut on_request: Policy, mut on_reply: Policy) -> Proxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(upstream).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, replies) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
        {
            let (stop, requests, client) = (stop.clone(), requests.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, from)) = front.recv_from(&mut buf) else { continue };
                    *client.lock().unwrap() = Some(from);
                    let mut d = buf[..n].to_vec();
                    if on_request(requests.fetch_add(1, Ordering::SeqCst), &mut d) {
                        let _ = back.send(&d);
                    }
                }
            });
        }
        {
            let (stop, replies) = (stop.clone(), replies.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    let Ok(n) = back2.recv(&mut buf) else { continue };
                    let mut d = buf[..n].to_vec();
                    let to = *client.lock().unwrap();
                    if on_reply(replies.fetch_add(1, Ordering::SeqCst), &mut d) {
                        if let Some(to) = to {
                            let _ = front2.send_to(&d, to);
                        }
                    }
                }
            });
        }
        Proxy { addr, stop, requests, replies }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pass() -> Policy {
    Box::new(|_, _| true)
}

#[test]
fn a_lost_request_is_sent_again_and_the_command_runs_once() {
    let (d, addr) = udp_daemon(&[]);
    let proxy = Proxy::start(addr, Box::new(|i, _| i > 0), pass());
    let o = run_u(&d, proxy.addr, &["-v"], &["echo x >> counter; wc -l < counter"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    assert_eq!(std::fs::read_to_string(d.path("counter")).unwrap(), "x\n");
    assert!(stderr(&o).contains("(again)"), "{}", stderr(&o));
    assert!(proxy.requests.load(Ordering::SeqCst) >= 2, "sent again after 200 ms");
}

#[test]
fn a_lost_reply_is_asked_again_and_the_command_still_runs_once() {
    let (d, addr) = udp_daemon(&[]);
    // The server runs the command and answers; the answer is lost, so the
    // client sends the same datagram again and gets the cached reply.
    let proxy = Proxy::start(addr, pass(), Box::new(|i, _| i > 0));
    let o = run_u(&d, proxy.addr, &[], &["echo x >> counter; wc -l < counter"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    assert_eq!(std::fs::read_to_string(d.path("counter")).unwrap(), "x\n", "ran once");
    assert!(proxy.requests.load(Ordering::SeqCst) >= 2);
}

#[test]
fn a_reply_with_a_broken_tag_is_ignored_as_if_lost() {
    let (d, addr) = udp_daemon(&[]);
    let damage: Policy = Box::new(|i, d: &mut Vec<u8>| {
        if i == 0 {
            d[5] ^= 0x01; // inside the tag
        }
        true
    });
    let proxy = Proxy::start(addr, pass(), damage);
    let o = run_u(&d, proxy.addr, &["-v"], &["echo x >> counter; echo done"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, b"done\n");
    assert!(stderr(&o).contains("ignored: wrong tag"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.path("counter")).unwrap(), "x\n");

    // Every reply damaged: as good as none.
    let all: Policy = Box::new(|_, d: &mut Vec<u8>| {
        let last = d.len() - 1;
        d[last] ^= 0x20; // the header or the body: malformed, or no longer its tag
        true
    });
    let proxy = Proxy::start(addr, pass(), all);
    let mut c = d.ferry();
    c.args(["-w", "1", "ping", "-u", &proxy.addr.to_string()]);
    assert_no_reply(c, 1.0);
    assert!(proxy.replies.load(Ordering::SeqCst) >= 2, "the server did answer");
}

// ---- fake servers that hold the key ----------------------------------------

/// A UDP server on 127.0.0.1 that reads requests with `key` and answers each
/// with what `answer` gives for (its nonce, its ts).
fn fake_server(d: &Daemon, answer: impl Fn(&str, i64) -> Vec<Map<String, Value>> + Send + 'static) -> (SocketAddr, Arc<AtomicBool>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (key, stop2) = (d.key.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop2.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
            let secret = key.secret.as_bytes();
            let Ok(req) = datagram::decode_request(&buf[..n], |id| (id == key.id).then_some(secret)) else { continue };
            for h in answer(&req.nonce, req.ts) {
                let _ = sock.send_to(&datagram::encode_reply(secret, h, b""), from);
            }
        }
    });
    (addr, stop)
}

#[test]
fn a_reply_to_another_nonce_is_ignored() {
    let d = Daemon::start();
    let (addr, stop) = fake_server(&d, |nonce, _| {
        vec![reply::pong(&"ab".repeat(16), 0, None), reply::pong(nonce, 0, None)]
    });
    let o = d.ferry().args(["-v", "ping", "-u", &addr.to_string()]).output().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ignored: answers another request"), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("seq=1"));
}

#[test]
fn clock_skew_says_by_how_much() {
    let d = Daemon::start();
    let (addr, stop) = fake_server(&d, |nonce, ts| {
        let e = ProtoError::new(ErrorCode::ClockSkew, "the request's time is outside the server's window");
        vec![reply::clock_skew(&e, nonce, ts + 3600, None)]
    });
    let o = d.ferry().args(["run", "-u", &addr.to_string(), "--", "true"]).output().unwrap();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("clock-skew") && err.contains("3600 s ahead of ours"), "{err}");
}
