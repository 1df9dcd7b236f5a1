//! ferryd's TLS transport and sealed datagrams, against the real binary on
//! 127.0.0.1: a TLS client made here from `ferry::tls::connect` and rustls's
//! `StreamOwned`, v1 clients in clear beside it.
//!
//! Loopback is in `plaintext_from` by default, so ferryd greets at accept and a
//! TLS client skips that one clear `hello`; `--plaintext-from none` makes
//! loopback a peer that must use TLS.

mod common;

use common::*;
use ferry::proto::auth::{self, Key};
use rustls::{ClientConnection, StreamOwned};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

type Stream = StreamOwned<ClientConnection, TcpStream>;

fn write_frame(s: &mut impl Write, header: Value, body: &[u8]) {
    s.write_all(&frame(header, body)).unwrap();
    s.flush().unwrap();
}

/// One frame: the header as JSON and the body (tests/common's reader).
fn read_frame(r: &mut dyn Read) -> std::io::Result<(Value, Vec<u8>)> {
    common::read_frame_from(r)
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(WAIT)).unwrap();
    t.set_write_timeout(Some(WAIT)).unwrap();
    t
}

/// A TLS client session up to the `hello` inside TLS: (stream, server nonce).
/// A clear `hello` sent at accept (loopback is a plaintext peer) is skipped.
fn tls_hello(addr: SocketAddr, key: &Key) -> std::io::Result<(Stream, String)> {
    let mut t = tcp(addr);
    let mut conn = ferry::tls::connect(key).unwrap();
    while conn.wants_write() {
        conn.write_tls(&mut t)?;
    }
    let mut first = [0u8; 1];
    if t.peek(&mut first)? == 1 && first[0] == 0 {
        let (h, _) = read_frame(&mut t)?;
        assert_eq!(h["type"], "hello", "the one clear frame is the greeting");
    }
    let mut s = StreamOwned::new(conn, t);
    let (h, _) = read_frame(&mut s)?;
    assert_eq!(h["type"], "hello", "{h}");
    Ok((s, h["nonce"].as_str().unwrap().to_string()))
}

fn auth_as(s: &mut Stream, nonce: &str, key: &Key) -> Value {
    let cn = auth::to_hex(&auth::fresh_nonce());
    let mac = auth::client_mac(key.secret.as_bytes(), nonce, &cn);
    write_frame(s, json!({"type":"auth","key_id":key.id,"nonce":cn,"mac":mac}), b"");
    read_frame(s).unwrap().0
}

fn tls_authed(addr: SocketAddr, key: &Key) -> Stream {
    let (mut s, nonce) = tls_hello(addr, key).expect("a TLS session");
    let w = auth_as(&mut s, &nonce, key);
    assert_eq!(w["type"], "welcome", "{w}");
    s
}

fn ping(s: &mut Stream) {
    write_frame(s, json!({"type":"ping","id":"p"}), b"");
    assert_eq!(read_frame(s).unwrap().0, json!({"type":"pong","id":"p"}));
}

fn exec_output(s: &mut Stream) -> (Vec<u8>, Value) {
    let mut out = Vec::new();
    loop {
        let (h, body) = read_frame(s).unwrap();
        match h["type"].as_str().unwrap() {
            "stdout" | "stderr" => out.extend(body),
            "exit" => return (out, h),
            other => panic!("unexpected {other}: {h}"),
        }
    }
}

#[test]
fn a_tls_session_runs_a_command_and_moves_files_both_ways() {
    let d = Daemon::start();
    let mut s = tls_authed(d.addr, &d.key);
    assert!(d.log.wait_for("TLS for key test (TLS 1.3, TLS13_AES_128_GCM_SHA256", WAIT).is_some(), "{}", d.log.text());
    assert!(d.log.wait_for("authenticated as test over TLS", WAIT).is_some());
    write_frame(&mut s, json!({"type":"exec","cmd":"echo over tls"}), b"");
    let (out, exit) = exec_output(&mut s);
    assert_eq!(out, b"over tls\n");
    assert_eq!(exit["code"], 0);

    // A put, then a get of a file larger than a chunk and not a multiple of it.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 12345).map(|i| (i * 7 % 251) as u8).collect();
    write_frame(&mut s, json!({"type":"put","path":"up"}), &data);
    assert_eq!(read_frame(&mut s).unwrap().0["type"], "ok");
    assert_eq!(std::fs::read(d.path("up")).unwrap(), data);
    write_frame(&mut s, json!({"type":"get","path":"up"}), b"");
    let (h, body) = read_frame(&mut s).unwrap();
    assert_eq!(h["type"], "file");
    assert!(body == data, "the file comes back byte for byte");
    assert_eq!(read_frame(&mut s).unwrap().0["type"], "done");
    ping(&mut s);

    // bye: the server ends the session with close_notify, a clean TLS EOF.
    write_frame(&mut s, json!({"type":"bye"}), b"");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("a clean close_notify, not a truncation");
    assert!(rest.is_empty());
}

#[test]
fn a_wrong_key_fails_the_handshake_with_no_frame_and_the_server_logs_the_key_id() {
    let d = Daemon::start();
    let wrong = Key { id: d.key.id.clone(), secret: "not-the-secret-at-all-0123456789".into() };
    let Err(err) = tls_hello(d.addr, &wrong) else { panic!("the handshake fails") };
    assert!(err.to_string().contains("server") || err.kind() == std::io::ErrorKind::InvalidData, "{err}");
    let line = d.log.wait_for("TLS handshake failed", WAIT).unwrap_or_else(|| panic!("{}", d.log.text()));
    assert!(line.contains("key test") && line.contains("127.0.0.1"), "{line}");
    // An unknown key id: a decoy identity, which the client refuses; the log names the id.
    let stranger = Key { id: "nobody".into(), secret: d.key.secret.clone() };
    assert!(tls_hello(d.addr, &stranger).is_err());
    assert!(d.log.wait_for("named no known key ID \"nobody\"", WAIT).is_some(), "{}", d.log.text());
}

#[test]
fn the_auth_inside_tls_must_name_the_key_of_the_handshake() {
    let d = Daemon::start();
    ferry::keys::generate(&d.keys_path, "other").unwrap();
    let other = ferry::keys::load(&d.keys_path).unwrap().get("other").unwrap().clone();
    d.signal(libc::SIGHUP);
    assert!(d.log.wait_for("configuration reloaded", WAIT).is_some());
    let (mut s, nonce) = tls_hello(d.addr, &d.key).unwrap();
    let reply = auth_as(&mut s, &nonce, &other);
    assert_eq!(reply["code"], "auth-failed", "{reply}");
    assert!(d.log.wait_for("is not the TLS key test", WAIT).is_some(), "{}", d.log.text());
}

#[test]
fn a_peer_outside_plaintext_from_gets_tls_required_and_tls_still_works() {
    let d = Daemon::start_with(&["--plaintext-from", "none"]);
    // A v1 client waits for hello, gets nothing; after the grace, tls-required.
    let t0 = Instant::now();
    let mut quiet = tcp(d.addr);
    let (h, _) = read_frame(&mut quiet).unwrap();
    assert_eq!(h["code"], "tls-required", "{h}");
    assert!(t0.elapsed() >= Duration::from_millis(900) && t0.elapsed() < Duration::from_secs(5));
    // One that speaks first in clear gets it at once.
    let mut eager = tcp(d.addr);
    eager.write_all(&frame(json!({"type":"ping"}), b"")).unwrap();
    let (h, _) = read_frame(&mut eager).unwrap();
    assert_eq!(h["code"], "tls-required");
    let mut rest = Vec::new();
    let _ = eager.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after the error");
    // No greeting in clear for TLS either: the first byte is a record.
    let mut s = tls_authed(d.addr, &d.key);
    ping(&mut s);
}

#[test]
fn tls_and_v1_clients_share_one_listener() {
    let d = Daemon::start();
    let mut plain = d.authed();
    let mut a = tls_authed(d.addr, &d.key);
    let mut plain2 = d.authed();
    let mut b = tls_authed(d.addr, &d.key);
    for _ in 0..3 {
        plain.ping();
        ping(&mut a);
        plain2.ping();
        ping(&mut b);
    }
    write_frame(&mut a, json!({"type":"exec","cmd":"echo a"}), b"");
    plain.send(json!({"type":"exec","cmd":"echo p"}), b"");
    assert_eq!(exec_output(&mut a).0, b"a\n");
    assert_eq!(plain.exec_output().0, b"p\n");
}

#[test]
fn hup_adds_and_removes_keys_under_tls() {
    let d = Daemon::start();
    let mut old = tls_authed(d.addr, &d.key);
    // Replace the file: "test" out, "fresh" in.
    let other = d.conf_dir().join("keys2");
    ferry::keys::generate(&other, "fresh").unwrap();
    let fresh = ferry::keys::load(&other).unwrap().get("fresh").unwrap().clone();
    std::fs::copy(&other, &d.keys_path).unwrap();
    d.signal(libc::SIGHUP);
    assert!(d.log.wait_for("configuration reloaded", WAIT).is_some());
    let mut s = tls_authed(d.addr, &fresh);
    ping(&mut s);
    assert!(tls_hello(d.addr, &d.key).is_err(), "the removed key no longer makes a session");
    // The session made with the removed key stays until it ends.
    ping(&mut old);
}

#[test]
fn term_drains_a_tls_session_running_a_command() {
    let mut d = Daemon::start();
    let mut idle = tls_authed(d.addr, &d.key);
    let mut s = tls_authed(d.addr, &d.key);
    write_frame(&mut s, json!({"type":"exec","cmd":"sleep 1; echo finished"}), b"");
    std::thread::sleep(Duration::from_millis(200));
    d.signal(libc::SIGTERM);
    let (out, exit) = exec_output(&mut s);
    assert_eq!(out, b"finished\n");
    assert_eq!(exit["code"], 0);
    // The idle session was told and closed at once.
    let (h, _) = read_frame(&mut idle).unwrap();
    assert_eq!(h["code"], "shutting-down");
    assert_eq!(d.wait_exit(WAIT), Some(0), "{}", d.log.text());
}

#[test]
fn slow_and_half_open_handshakes_end_at_the_auth_timeout() {
    let d = Daemon::start_with(&["--auth-timeout", "1"]);
    let key = d.key.clone();
    // Slowloris: a ClientHello a byte at a time, slower than the timeout allows.
    let mut slow = tcp(d.addr);
    let mut conn = ferry::tls::connect(&key).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let (h, _) = read_frame(&mut slow).unwrap();
    assert_eq!(h["type"], "hello");
    let t0 = Instant::now();
    for b in &hello {
        if slow.write_all(&[*b]).is_err() || t0.elapsed() > Duration::from_secs(3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rest = Vec::new();
    let r = slow.read_to_end(&mut rest);
    assert!(!matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the server hung up: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "closed near the 1 s auth timeout");
    // Half-open: a whole ClientHello, then silence (no Finished).
    let mut half = tcp(d.addr);
    half.write_all(&hello).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = half.read_to_end(&mut buf);
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(d.log.wait_for("no TLS handshake within 1s", WAIT).is_some(), "{}", d.log.text());
}

// ---- sealed datagrams -------------------------------------------------------

mod sealed_datagrams {
    use super::*;
    use ferry::proto::datagram;
    use ferry::proto::sealed::{self, DatagramKeys};
    use std::net::UdpSocket;

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    fn udp_socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        s
    }

    /// A sealed request for `header` under `key`: (bytes, request nonce).
    fn sealed_request(key: &Key, header: Value, body: &[u8]) -> (Vec<u8>, [u8; 12]) {
        let mut plain = Vec::new();
        let Value::Object(m) = header else { panic!() };
        ferry::proto::encode_frame(&mut plain, m, body);
        let nonce = sealed::fresh_nonce();
        let keys: DatagramKeys = ferry::tls::datagram_keys(key);
        (sealed::seal_request(&keys, &key.id, nonce, &plain).unwrap(), nonce)
    }

    fn answer(s: &UdpSocket) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65536];
        s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    }

    fn open(key: &Key, nonce: &[u8; 12], reply: &[u8]) -> Value {
        let plain = sealed::open_reply(&ferry::tls::datagram_keys(key), &key.id, nonce, reply).expect("the reply opens");
        let (h, _) = sealed::parse_plaintext(&plain).unwrap();
        assert!(h.fields.get("nonce").is_none(), "a sealed reply's header has no nonce");
        let mut v = serde_json::Value::Object(h.fields.clone());
        v["type"] = json!(h.kind);
        v
    }

    #[test]
    fn a_sealed_exec_and_ping_round_trip_and_replies_are_sealed() {
        let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
        let addr = d.udp_addr();
        let s = udp_socket();
        s.connect(addr).unwrap();
        let (req, nonce) = sealed_request(&d.key, json!({"type":"ping","ts":now()}), b"");
        s.send(&req).unwrap();
        let reply = answer(&s).expect("a sealed pong");
        assert_eq!(&reply[..4], b"FSR1");
        assert_eq!(open(&d.key, &nonce, &reply)["type"], "pong");

        let (req, nonce) = sealed_request(&d.key, json!({"type":"exec","cmd":"echo sealed","ts":now()}), b"");
        s.send(&req).unwrap();
        let reply = answer(&s).expect("a sealed result");
        let plain = sealed::open_reply(&ferry::tls::datagram_keys(&d.key), &d.key.id, &nonce, &reply).unwrap();
        let (h, body) = sealed::parse_plaintext(&plain).unwrap();
        assert_eq!((h.kind.as_str(), body), ("result", &b"sealed\n"[..]));
        assert!(!reply.windows(6).any(|w| w == b"sealed"), "no plaintext on the wire");

        // The same bytes again: the cached reply, still opening under the request.
        s.send(&req).unwrap();
        let again = answer(&s).expect("the cached reply");
        assert!(sealed::open_reply(&ferry::tls::datagram_keys(&d.key), &d.key.id, &nonce, &again).is_ok());
    }

    #[test]
    fn tampered_wrong_key_and_replayed_from_elsewhere_get_silence_or_replayed() {
        let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
        let addr = d.udp_addr();
        let s = udp_socket();
        s.connect(addr).unwrap();
        let (req, _) = sealed_request(&d.key, json!({"type":"exec","cmd":"touch pwned","ts":now()}), b"");
        for i in [0, 5, 20, 33, req.len() - 1] {
            let mut bad = req.clone();
            bad[i] ^= 0x40;
            s.send(&bad).unwrap();
            assert!(answer(&s).is_none(), "a datagram flipped at {i} gets silence");
        }
        let wrong = Key { id: d.key.id.clone(), secret: "another-secret-entirely-0123456789".into() };
        let (w, _) = sealed_request(&wrong, json!({"type":"ping","ts":now()}), b"");
        s.send(&w).unwrap();
        assert!(answer(&s).is_none(), "another secret: silence");
        let stranger = Key { id: "nobody".into(), secret: d.key.secret.clone() };
        let (w, _) = sealed_request(&stranger, json!({"type":"ping","ts":now()}), b"");
        s.send(&w).unwrap();
        assert!(answer(&s).is_none(), "an unknown key id: silence");
        assert!(!d.path("pwned").exists());

        // Replayed from another address: `replayed`, sealed; the command ran once.
        let (req, nonce) = sealed_request(&d.key, json!({"type":"exec","cmd":"echo x >> once","ts":now()}), b"");
        s.send(&req).unwrap();
        answer(&s).expect("the first answer");
        let other = udp_socket();
        other.connect(addr).unwrap();
        other.send(&req).unwrap();
        let r = answer(&other).expect("replayed");
        assert_eq!(open(&d.key, &nonce, &r)["code"], "replayed");
        assert_eq!(std::fs::read(d.path("once")).unwrap(), b"x\n");
    }

    #[test]
    fn tagged_datagrams_only_from_plaintext_from() {
        let d = Daemon::start_with(&["--udp", "127.0.0.1:0", "--plaintext-from", "none"]);
        let addr = d.udp_addr();
        let s = udp_socket();
        s.connect(addr).unwrap();
        let mut h = ferry::proto::msg::request::ping();
        h.insert("nonce".into(), json!(datagram::fresh_udp_nonce()));
        h.insert("ts".into(), json!(now()));
        s.send(&datagram::encode_request(&d.key.id, d.key.secret.as_bytes(), h, b"")).unwrap();
        assert!(answer(&s).is_none(), "a v1 datagram from outside plaintext_from: silence");
        let (req, nonce) = sealed_request(&d.key, json!({"type":"ping","ts":now()}), b"");
        s.send(&req).unwrap();
        assert_eq!(open(&d.key, &nonce, &answer(&s).expect("sealed is served")).get("type").unwrap(), "pong");
    }
}

/// Daemon RSS per idle authenticated connection, TLS and v1 in clear, in one
/// run: `FERRY_IDLE_N=10000 cargo test --release --test tls idle -- --ignored --nocapture`.
/// Not a pass/fail test: it prints the figures.
///
/// Measured (2 cores, rustls 0.23.48, aws-lc-rs, AES-128-GCM, X25519MLKEM768):
/// the buffered `ServerConnection` 7,915 B at 2,000 and 8,668 B at 10,000;
/// the unbuffered one with per-thread scratch buffers 4,173 B and 4,601 B
/// (v1 in clear about 505 B). The 2,000 figure is flattered by the warm-up's
/// freed heap being reused; trust the 10,000 one. Of a TLS session's heap,
/// about 3,000 B are rustls's own (the connection struct 1,080, the
/// handshake deframer's span list 640 that is allocated with room for 16
/// and never freed, the two record queues 2 x 96, key schedule 224, state
/// 192, the client's certificate 223) plus aws-lc's two AEAD contexts
/// (about 2 x 610). With rustls patched to drop the span list and the two
/// queues once empty (in `HandshakeIter::drop` and `ChunkVecBuffer::pop`),
/// 3,746 B at 10,000 (3,385 at 2,000).
#[test]
#[ignore]
fn idle_memory_per_connection() {
    let n: usize = std::env::var("FERRY_IDLE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let d = Daemon::start_with(&["--max-connections", "20000", "--idle-timeout", "0"]);
    let cfg = ferry::tls::client_config(&d.key);
    let tls_one = || {
        let mut t = tcp(d.addr);
        let mut conn = ClientConnection::new(cfg.clone(), ferry::tls::server_name(&d.key.id)).unwrap();
        while conn.wants_write() {
            conn.write_tls(&mut t).unwrap();
        }
        let (h, _) = read_frame(&mut t).unwrap();
        assert_eq!(h["type"], "hello");
        let mut s = StreamOwned::new(conn, t);
        let (h, _) = read_frame(&mut s).unwrap();
        let w = auth_as(&mut s, h["nonce"].as_str().unwrap(), &d.key);
        assert_eq!(w["type"], "welcome");
        s
    };
    // Warm up: allocator arenas, the key table, slab growth to a first size.
    let warm: Vec<_> = (0..200).map(|_| tls_one()).collect();
    let plain_warm: Vec<_> = (0..200).map(|_| d.authed()).collect();
    drop((warm, plain_warm));
    std::thread::sleep(Duration::from_millis(500));
    let base = d.rss_kib();
    let t0 = Instant::now();
    let tls: Vec<_> = (0..n).map(|_| tls_one()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let with_tls = d.rss_kib();
    println!(
        "idle TLS: {n} connections in {:.1}s, {} B each ({} KiB -> {} KiB)",
        t0.elapsed().as_secs_f64(),
        (with_tls - base) * 1024 / n as u64,
        base,
        with_tls
    );
    // As many as the test's own file limit leaves room for.
    let m = n.min(4000);
    let plain: Vec<_> = (0..m).map(|_| d.authed()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let with_plain = d.rss_kib();
    println!("idle v1 in clear: {m} connections, {} B each", (with_plain - with_tls) * 1024 / m as u64);
    drop((tls, plain));
}

/// Throughput of a get over TLS from the page cache to memory, best of 3:
/// `FERRY_GET_MIB=512 cargo test --release --test tls get_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn get_throughput_over_tls() {
    let mib: usize = std::env::var("FERRY_GET_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let d = Daemon::start();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    {
        let mut f = std::fs::File::create(d.path("big")).unwrap();
        for _ in 0..mib {
            f.write_all(&chunk).unwrap();
        }
    }
    let mut s = tls_authed(d.addr, &d.key);
    let mut best = 0f64;
    let mut buf = vec![0u8; 256 * 1024];
    for _ in 0..3 {
        let t0 = Instant::now();
        write_frame(&mut s, json!({"type":"get","path":"big"}), b"");
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut h = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut h).unwrap();
        let h: Value = serde_json::from_slice(&h).unwrap();
        let mut left = h["size"].as_u64().unwrap() as usize;
        while left > 0 {
            let n = s.read(&mut buf[..left.min(256 * 1024)]).unwrap();
            assert!(n > 0);
            left -= n;
        }
        assert_eq!(read_frame(&mut s).unwrap().0["type"], "done");
        best = best.max((mib * 1024 * 1024) as f64 / t0.elapsed().as_secs_f64() / 1e9);
    }
    println!("get over TLS: {mib} MiB, best {best:.2} GB/s (chunk {} KiB)", ferry::server::transport::TLS_CHUNK / 1024);
}

/// The server killed while `ferry --tls run` is still sending stdin: the
/// same words as in clear (it used to print a bare "Broken pipe"), 255.
#[test]
fn a_server_killed_while_stdin_streams_over_tls_is_named() {
    use std::io::BufRead;
    use std::process::Stdio;
    let d = Daemon::start();
    let mut cmd = d.ferry();
    cmd.args(["--tls", "run", &d.target(), "--", "echo $$; exec sleep 30"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'y'; 64 * 1024];
        // Until the pipe breaks (ferry gone), bounded by count.
        for _ in 0..200_000 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    // The command's first line is the readiness signal: it runs.
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let remote: i32 = line.trim().parse().expect("the remote shell's pid");
    d.signal(libc::SIGKILL);
    let _killer = kill_after(child.id() as i32, Duration::from_secs(60));
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    // SAFETY: kills the command ferryd left behind (SIGKILL does not drain).
    unsafe { libc::kill(remote, libc::SIGKILL) };
    feeder.join().unwrap();
    assert_eq!(status.code(), Some(255), "{err}");
    assert!(err.contains("closed the connection before the command's exit status came"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
}
