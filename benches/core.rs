//! Core figures for ferryd, with a baseline measured in the same run.
//!
//! `cargo bench --bench core` starts the release `ferryd` on 127.0.0.1:0 and reports:
//! - RSS of the idle daemon, and per connection with N idle authenticated connections;
//! - ping round trips per second over 1 connection and over 50, each next to
//!   the same request/response traffic (the same frame bytes) against a plain
//!   thread-per-connection echo server, the floor any TCP server sits on here.
//!
//! Only ratios from one run mean anything on a shared machine. Nothing here
//! gates CI. Environment: FERRY_BENCH_SECS (default 3), FERRY_BENCH_IDLE (default 1000).

use ferry::client::{Options, Session, Target};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain struct in, plain struct out.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    key: ferry::proto::auth::Key,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        ferry::keys::generate(&keys, "bench").unwrap();
        let key = ferry::keys::load(&keys).unwrap().first().unwrap().clone();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn", "--keys"])
            .arg(&keys)
            .arg("--root")
            .arg(dir.path())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A quiet daemon (per-connection info lines cost time) hides its
        // "listening on" line, so the port comes from its socket in /proc.
        let pid = child.id();
        let addr = wait_listening(pid);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
        Daemon { child, addr, key, _dir: dir }
    }

    fn session(&self) -> Session {
        let t = Target { host: "127.0.0.1".into(), port: self.addr.port() };
        Session::connect(&t, &self.key, &Options { timeout: Some(Duration::from_secs(30)), ..Default::default() }).unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The port of the LISTEN socket `pid` owns, from /proc (bounded wait).
fn wait_listening(pid: u32) -> SocketAddr {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        for l in table.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = u16::from_str_radix(f[1].rsplit(':').next().unwrap(), 16).unwrap();
                return SocketAddr::from(([127, 0, 0, 1], port));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("ferryd did not start listening");
}

/// The ping frame and the pong frame, as bytes on the wire.
fn frames() -> (Vec<u8>, Vec<u8>) {
    let mut ping = Vec::new();
    ferry::proto::encode_frame(&mut ping, json!({"type":"ping"}).as_object().unwrap().clone(), b"");
    let mut pong = Vec::new();
    ferry::proto::encode_frame(&mut pong, json!({"type":"pong"}).as_object().unwrap().clone(), b"");
    (ping, pong)
}

/// A baseline server: one thread per connection, reads a ping frame, writes a pong frame.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (ping, pong) = frames();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (n, pong) = (ping.len(), pong.clone());
            s.set_nodelay(true).unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; n];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&pong).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Round trips per second over `conns` connections for `secs`, each connection
/// on its own thread doing write-ping/read-pong.
fn round_trips(conns: Vec<TcpStream>, secs: u64) -> f64 {
    let (ping, pong) = frames();
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut s| {
            let (ping, n) = (ping.clone(), pong.len());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; n];
                let mut count = 0u64;
                while Instant::now() < until {
                    s.write_all(&ping).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    count += 1;
                }
                count
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

/// Authenticated ferry sessions, handed over as raw sockets for the ping loop.
fn ferry_conns(d: &Daemon, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| d.session().into_raw()).collect()
}

fn echo_conns(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_nofile();
    let secs = env_num("FERRY_BENCH_SECS", 3);
    let idle_n = env_num("FERRY_BENCH_IDLE", 1000) as usize;
    let d = Daemon::start();
    let pid = d.child.id();
    let echo = echo_server();

    println!("# ferry core figures ({} cores, loopback, {secs} s per rate)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let rss0 = rss_kib(pid);
    let fd0 = fds(pid);
    println!("idle daemon RSS: {rss0} KiB, {fd0} fds");

    let mut sessions: Vec<Session> = (0..idle_n).map(|_| d.session()).collect();
    // One ping on each so every connection has done a request.
    for s in sessions.iter_mut() {
        s.ping().unwrap();
    }
    let rss1 = rss_kib(pid);
    let fd1 = fds(pid);
    println!(
        "{idle_n} idle authenticated connections: RSS {rss1} KiB (+{} KiB, {:.2} KiB per connection), {fd1} fds",
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / idle_n as f64
    );
    drop(sessions);

    println!();
    println!("| pings, request/response | ferryd req/s | echo baseline req/s | ferryd / baseline |");
    println!("|---|---:|---:|---:|");
    for n in [1usize, 50] {
        let base = round_trips(echo_conns(echo, n), secs);
        let ferry = round_trips(ferry_conns(&d, n), secs);
        println!("| {n} connection{} | {ferry:.0} | {base:.0} | {:.2} |", if n == 1 { "" } else { "s" }, ferry / base);
    }
}
