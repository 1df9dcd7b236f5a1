//! The soak: N clients for T seconds against one ferryd, mixing ping, exec
//! (stdin in, digest out), get and put, every byte checked end to end by
//! SHA-256. Reports requests, errors (must be 0), bytes verified and the
//! daemon's peak RSS and fd count.
//!
//! Every fourth client speaks TLS (`tls_session`), the rest v1 in clear.
//!
//! CI runs `soak_short` (50 clients, 10 s, small files). The full soak
//! (files up to 4 MiB, puts up to 1 MiB, stdin up to 256 KiB):
//!
//! ```sh
//! benches/soak.sh [CLIENTS] [SECONDS]      # default 200 clients, 60 s, release build
//! ```
//!
//! which is `FERRY_SOAK_CLIENTS=N FERRY_SOAK_SECS=T cargo test --release
//! --test soak -- --ignored --nocapture soak_full`.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    pings: AtomicU64,
    execs: AtomicU64,
    gets: AtomicU64,
    puts: AtomicU64,
    connections: AtomicU64,
    tls_clients: AtomicU64,
}

/// The files every client may get: (name, digest, size).
fn shared_files(d: &Daemon, max: usize) -> Vec<(String, String, usize)> {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    std::fs::create_dir(d.path("shared")).unwrap();
    [0usize, 1, 4096, 65537, 300_000, 1 << 20, 4 << 20]
        .iter()
        .filter(|&&len| len <= max)
        .map(|&len| {
            let data = rng.bytes(len);
            let name = format!("shared/f{len}");
            write_file(&d.path(&name), &data);
            (name, sha256_hex(&data), len)
        })
        .collect()
}

/// A client's connection: v1 in clear, or TLS (`tls_session`).
struct Conn {
    s: Box<dyn Duplex>,
}

impl Conn {
    fn send(&mut self, header: serde_json::Value, body: &[u8]) {
        // A write error shows as the next read's.
        let _ = self.s.write_all(&frame(header, body)).and_then(|_| self.s.flush());
    }

    fn try_frame(&mut self) -> std::io::Result<(serde_json::Value, Vec<u8>)> {
        read_frame_from(&mut self.s)
    }

    /// Opens a connection and authenticates it: over TLS when `tls`.
    fn open(addr: std::net::SocketAddr, key: &ferry::proto::auth::Key, tls: bool) -> Result<Conn, String> {
        let (s, server_nonce): (Box<dyn Duplex>, String) = if tls {
            tls_session(addr, key).map_err(|e| format!("TLS session: {e}"))?
        } else {
            let mut r = Raw::connect(addr);
            let (hello, _) = r.try_frame().map_err(|e| format!("no hello: {e}"))?;
            (Box::new(r.sock), hello["nonce"].as_str().unwrap_or_default().to_string())
        };
        let mut c = Conn { s };
        use ferry::proto::auth;
        let cn = auth::to_hex(&auth::fresh_nonce());
        let mac = auth::client_mac(key.secret.as_bytes(), &server_nonce, &cn);
        c.send(json!({"type":"auth","key_id":key.id,"nonce":cn,"mac":mac}), b"");
        let (w, _) = c.try_frame().map_err(|e| format!("auth: {e}"))?;
        (w["type"] == "welcome").then_some(c).ok_or(format!("auth: {w}"))
    }
}

/// One request of a random kind; Ok(bytes verified) or what went wrong.
fn one_request(
    c: &mut Conn,
    rng: &mut Rng,
    me: usize,
    files: &[(String, String, usize)],
    max: usize,
    t: &Totals,
) -> Result<u64, String> {
    let id = rng.next() >> 12;
    match rng.below(10) {
        0..=3 => {
            c.send(json!({"type":"ping","id":id}), b"");
            let (h, _) = c.try_frame().map_err(|e| format!("ping: {e}"))?;
            t.pings.fetch_add(1, Relaxed);
            (h == json!({"type":"pong","id":id})).then_some(0).ok_or(format!("ping: {h}"))
        }
        4..=5 => {
            // stdin up to 256 KiB through sha256sum; the digest comes back on stdout.
            let len = rng.below(max as u64 / 16) as usize;
            let data = rng.bytes(len);
            c.send(json!({"type":"exec","argv":["sha256sum"],"stdin":true,"id":id}), b"");
            for chunk in data.chunks(64 * 1024) {
                c.send(json!({"type":"stdin","id":id}), chunk);
            }
            c.send(json!({"type":"stdin","id":id}), b"");
            let mut out = Vec::new();
            loop {
                let (h, body) = c.try_frame().map_err(|e| format!("exec: {e}"))?;
                match h["type"].as_str() {
                    Some("stdout") => out.extend(body),
                    Some("exit") if h["code"] == 0 => break,
                    _ => return Err(format!("exec: {h} {}", String::from_utf8_lossy(&body))),
                }
            }
            t.execs.fetch_add(1, Relaxed);
            let want = format!("{}  -\n", sha256_hex(&data));
            (out == want.as_bytes()).then_some(data.len() as u64).ok_or(format!("exec: digest {:?}", String::from_utf8_lossy(&out)))
        }
        6..=7 => {
            let (name, sha, len) = &files[rng.below(files.len() as u64) as usize];
            c.send(json!({"type":"get","path":name,"id":id}), b"");
            let (h, body) = c.try_frame().map_err(|e| format!("get: {e}"))?;
            if h["type"] != "file" || body.len() != *len {
                return Err(format!("get {name}: {h}"));
            }
            let (done, _) = c.try_frame().map_err(|e| format!("get: {e}"))?;
            t.gets.fetch_add(1, Relaxed);
            (done["sha256"] == *sha && sha256_hex(&body) == *sha)
                .then_some(*len as u64)
                .ok_or(format!("get {name}: digest {done}"))
        }
        _ => {
            // A put with its digest, then the file read back.
            let len = rng.below(max as u64 / 4) as usize;
            let data = rng.bytes(len);
            let sha = sha256_hex(&data);
            let name = format!("c{me}/f{}", rng.below(4));
            c.send(json!({"type":"put","path":name,"sha256":sha,"id":id}), &data);
            let (ok, _) = c.try_frame().map_err(|e| format!("put: {e}"))?;
            if ok["type"] != "ok" || ok["sha256"] != sha || ok["file_size"] != data.len() {
                return Err(format!("put {name}: {ok}"));
            }
            c.send(json!({"type":"get","path":name,"id":id}), b"");
            let (h, body) = c.try_frame().map_err(|e| format!("get back: {e}"))?;
            let (done, _) = c.try_frame().map_err(|e| format!("get back: {e}"))?;
            t.puts.fetch_add(1, Relaxed);
            (h["type"] == "file" && body == data && done["sha256"] == sha)
                .then_some(2 * data.len() as u64)
                .ok_or(format!("put {name}: read back {h} {done}"))
        }
    }
}

/// Runs the soak, with files up to `max` bytes (puts up to `max`/4, stdin
/// up to `max`/16). Prints the report; panics on any error.
fn soak(clients: usize, secs: u64, max: usize) {
    // Info is the default level: the access lines are part of the load.
    let (d, _) = Daemon::start_config("[log]\nlevel = \"info\"\n", &["--foreground"], |_| {});
    let files = Arc::new(shared_files(&d, max));
    let totals = Arc::new(Totals::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pid = d.pid();
    let base_fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let monitor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut rss, mut fds) = (0u64, 0usize);
            while !stop.load(Relaxed) {
                rss = rss.max(rss_kib(pid));
                fds = fds.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            (rss, fds)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let addr = d.addr;
    let key = d.key.clone();
    let workers: Vec<_> = (0..clients)
        .map(|me| {
            let (files, t) = (files.clone(), totals.clone());
            let key = key.clone();
            // Every fourth client speaks TLS (loopback allows both).
            let tls = me % 4 == 3;
            if tls {
                t.tls_clients.fetch_add(1, Relaxed);
            }
            std::thread::spawn(move || {
                let mut rng = Rng(0x2545f4914f6cdd1d ^ (me as u64 + 1).wrapping_mul(0x9e3779b97f4a7c15));
                let mut errors = Vec::new();
                while Instant::now() < deadline {
                    // A connection serves 1 to 50 requests, then goes (bye or plain close).
                    let mut c = match Conn::open(addr, &key, tls) {
                        Ok(c) => c,
                        Err(e) => {
                            errors.push(e);
                            t.errors.fetch_add(1, Relaxed);
                            continue;
                        }
                    };
                    t.connections.fetch_add(1, Relaxed);
                    let n = 1 + rng.below(50);
                    for _ in 0..n {
                        if Instant::now() >= deadline {
                            break;
                        }
                        t.requests.fetch_add(1, Relaxed);
                        match one_request(&mut c, &mut rng, me, &files, max, &t) {
                            Ok(b) => {
                                t.bytes.fetch_add(b, Relaxed);
                            }
                            Err(e) => {
                                t.errors.fetch_add(1, Relaxed);
                                errors.push(e);
                                break;
                            }
                        }
                    }
                    if rng.below(2) == 0 {
                        c.send(json!({"type":"bye"}), b"");
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors: Vec<String> = Vec::new();
    for w in workers {
        errors.extend(w.join().expect("a client thread panicked"));
    }
    let elapsed = started.elapsed();
    stop.store(true, Relaxed);
    let (peak_rss, peak_fds) = monitor.join().unwrap();
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let t = &totals;
    let requests = t.requests.load(Relaxed);
    println!(
        "soak: {clients} clients ({} over TLS), {:.1} s: {requests} requests ({:.0}/s; ping {}, exec {}, get {}, put+get {}), {} connections, \
         {} errors, {:.1} MiB verified by SHA-256; daemon peak RSS {} KiB (VmHWM {hwm}), peak fds {} (idle {base_fds})",
        t.tls_clients.load(Relaxed),
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        t.pings.load(Relaxed),
        t.execs.load(Relaxed),
        t.gets.load(Relaxed),
        t.puts.load(Relaxed),
        t.connections.load(Relaxed),
        t.errors.load(Relaxed),
        t.bytes.load(Relaxed) as f64 / (1 << 20) as f64,
        peak_rss,
        peak_fds,
    );
    assert!(errors.is_empty(), "{} errors, the first: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    assert!(requests > clients as u64, "too few requests: {requests}");
    // Afterwards: no child, every connection closed.
    eventually("no child left", WAIT, || children_of(pid).is_empty());
    eventually("every connection closed", WAIT, || {
        std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0) <= base_fds
    });
    assert!(!d.log.text().contains("panicked"));
    if t.tls_clients.load(Relaxed) > 0 {
        assert!(d.log.count("over TLS") > 0, "the TLS clients' sessions were not TLS");
    }
}

/// The CI soak: 50 clients for 10 s, files up to 300 KB (a debug build
/// hashes slowly: the full soak's sizes would make it a hashing benchmark).
#[test]
fn soak_short() {
    soak(50, 10, 300_000);
}

/// The full soak: `FERRY_SOAK_CLIENTS` (200) clients for `FERRY_SOAK_SECS` (60) s.
#[test]
#[ignore = "minutes long: run with benches/soak.sh"]
fn soak_full() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    soak(env("FERRY_SOAK_CLIENTS", 200) as usize, env("FERRY_SOAK_SECS", 60), 4 << 20);
}
