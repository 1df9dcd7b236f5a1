//! A short smoke of `ferry-bench` against the real daemon (and a tiny RESP
//! stand-in), so the load generator never rots. Each mode runs for about a
//! second with `--json`; the tests check the fields and that the counts are
//! above zero, never a time or a rate beyond that.

mod common;

use common::{run_with_input, Daemon};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn bench_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry-bench"));
    c.env_remove("FERRY_KEYS");
    c
}

/// Runs ferry-bench against `d` with `args` and `--json`; the parsed object.
fn bench(d: &Daemon, args: &[&str]) -> Value {
    let mut cmd = bench_bin();
    cmd.arg("--port").arg(d.addr.port().to_string()).arg("-k").arg(&d.keys_path);
    cmd.args(["--json", "-w", "20"]).args(args);
    json_of(run_with_input(cmd, b""), args)
}

fn json_of(out: Output, args: &[&str]) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry-bench {args:?} failed ({}):\n{stderr}", out.status);
    assert_eq!(stdout.lines().count(), 1, "one JSON object on stdout: {stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["tool"], "ferry-bench");
    assert!(stderr.contains("ferry-bench"), "the human table goes to stderr with --json: {stderr}");
    v
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The latency object has every percentile, each above zero and in order.
fn check_latency(v: &Value) {
    let l = &v["latency_us"];
    let get = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("latency_us.{k} missing in {v}"));
    for k in ["min", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(get(k) > 0.0, "latency_us.{k} in {v}");
    }
    assert!(
        get("min") <= get("p50") && get("p50") <= get("p99") && get("p99") <= get("p999") && get("p999") <= get("max")
    );
}

#[test]
fn ping_pipelined_over_several_connections() {
    let d = Daemon::start();
    let v = bench(&d, &["ping", "-c", "4", "-P", "4", "-d", "1", "--warmup", "0.2"]);
    assert_eq!(v["mode"], "ping");
    assert_eq!(v["protocol"], "ferry");
    assert_eq!(v["connections"], 4);
    assert_eq!(v["pipeline"], 4);
    assert_eq!(v["threads"], 1);
    assert!(num(&v, "ops") > 0.0 && num(&v, "ops_per_s") > 0.0, "{v}");
    assert!(num(&v, "replies_total") >= num(&v, "ops"));
    check_latency(&v);
    // The daemon is found by its listening port.
    assert_eq!(v["server_pid"], d.pid());
    for k in ["server_cpu_s", "client_cpu_s", "server_cpu_us_per_op", "client_cpu_us_per_op"] {
        assert!(num(&v, k) >= 0.0, "{k}: {v}");
    }
    assert_eq!(v["notes"], serde_json::json!([]));
}

#[test]
fn exec_runs_true_in_a_loop() {
    let d = Daemon::start();
    let v = bench(&d, &["exec", "-c", "2", "-d", "1", "--warmup", "0.2"]);
    assert_eq!(v["mode"], "exec");
    assert_eq!(v["command"], serde_json::json!(["true"]));
    assert!(num(&v, "ops") > 0.0 && num(&v, "ops_per_s") > 0.0, "{v}");
    assert_eq!(v["failed"], 0);
    check_latency(&v);
    // Two threads and a failing command are counted, not fatal.
    let v = bench(&d, &["exec", "-t", "2", "-c", "2", "-d", "0.5", "--warmup", "0", "--", "sh", "-c", "exit 3"]);
    assert_eq!(v["threads"], 2);
    assert!(num(&v, "ops") > 0.0);
    assert_eq!(v["failed"], v["ops"]);
}

#[test]
fn put_then_get_a_small_file() {
    let d = Daemon::start();
    let size = 256 * 1024u64;
    let v = bench(&d, &["put", "--path", "b/x.dat", "--size", "256K", "-n", "3", "-c", "2"]);
    assert_eq!(v["mode"], "put");
    assert_eq!(v["transfers"], 6);
    assert_eq!(v["bytes"], 6 * size);
    assert_eq!(v["size_bytes"], size);
    assert_eq!(v["source"], "generated");
    assert!(num(&v, "mb_per_s") > 0.0 && num(&v, "ops_per_s") > 0.0, "{v}");
    check_latency(&v);
    for k in ["client_cpu_s_per_gib", "server_cpu_s_per_gib"] {
        assert!(num(&v, k) >= 0.0, "{k}: {v}");
    }
    assert_eq!(std::fs::metadata(d.path("b/x.dat")).unwrap().len(), size);

    for digest in ["sha256", "none"] {
        let v = bench(&d, &["get", "--path", "b/x.dat", "--digest", digest, "-n", "2"]);
        assert_eq!(v["mode"], "get");
        assert_eq!(v["digest"], digest);
        assert_eq!(v["transfers"], 2);
        assert_eq!(v["bytes"], 2 * size);
        assert!(num(&v, "mb_per_s") > 0.0, "{v}");
        check_latency(&v);
    }
    // get --size stores the file first.
    let v = bench(&d, &["get", "--path", "c.dat", "--size", "64K", "-d", "0.3"]);
    assert!(num(&v, "transfers") >= 1.0 && num(&v, "bytes") > 0.0, "{v}");
    assert_eq!(std::fs::metadata(d.path("c.dat")).unwrap().len(), 64 * 1024);
}

#[test]
fn idle_connections_are_measured_on_the_daemon() {
    let d = Daemon::start();
    let v = bench(&d, &["idle", "-c", "50", "-d", "0.3"]);
    assert_eq!(v["mode"], "idle");
    assert_eq!(v["connections"], 50);
    assert_eq!(v["server_pid"], d.pid());
    assert!(num(&v, "fds_after") - num(&v, "fds_before") >= 50.0, "{v}");
    assert!(num(&v, "rss_before_kib") > 0.0 && num(&v, "rss_after_kib") > 0.0, "{v}");
    for k in ["rss_per_conn_bytes", "fds_per_conn", "rss_closed_kib", "rss_peak_kib", "setup_s", "hold_s"] {
        assert!(v[k].is_number(), "{k}: {v}");
    }
}

/// A stand-in for redis-server: answers every line with +PONG.
fn fake_resp_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                    if s.write_all(&b"+PONG\r\n".repeat(lines)).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn resp_ping_and_idle_use_the_same_client() {
    let port = fake_resp_server().to_string();
    let args = ["--port", &port, "--json", "ping", "--resp", "-c", "3", "-P", "2", "-d", "0.5", "--warmup", "0.1"];
    let v = json_of(
        run_with_input(
            {
                let mut c = bench_bin();
                c.args(args);
                c
            },
            b"",
        ),
        &args,
    );
    assert_eq!(v["protocol"], "resp");
    assert!(num(&v, "ops") > 0.0, "{v}");
    check_latency(&v);
    let args = ["--port", &port, "--json", "idle", "--resp", "-c", "5", "-d", "0.1"];
    let mut c = bench_bin();
    c.args(args);
    let v = json_of(run_with_input(c, b""), &args);
    assert_eq!(v["connections"], 5);
    assert_eq!(v["protocol"], "resp");
}

/// Failures are one line on stderr and a non-zero status.
fn fails(mut cmd: Command, needle: &str) {
    cmd.args(["-w", "20"]);
    let out = run_with_input(cmd, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ferry-bench: ") && stderr.contains(needle), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn auth_failure_and_refused_connections_are_one_line() {
    let d = Daemon::start();
    let (_dir, other_keys, _) = common::make_keys();
    let mut c = bench_bin();
    c.arg("--port").arg(d.addr.port().to_string()).arg("-k").arg(&other_keys).args(["ping", "-c", "3", "-d", "1"]);
    fails(c, "authentication failed");

    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = bench_bin();
    c.arg("--port").arg(free.to_string()).arg("-k").arg(&d.keys_path).args(["ping", "-d", "1"]);
    fails(c, "connection refused");

    let mut c = bench_bin();
    c.arg("--port")
        .arg(d.addr.port().to_string())
        .arg("-k")
        .arg(&d.keys_path)
        .args(["get", "--path", "nope", "-n", "1"]);
    fails(c, "not-found");
}

/// Runs `ferry-bench udp` at `port` with `args` and `--json`; the parsed object.
fn bench_udp(port: u16, keys: &std::path::Path, args: &[&str]) -> Value {
    let mut cmd = bench_bin();
    cmd.arg("--port").arg(port.to_string()).arg("-k").arg(keys);
    cmd.args(["--json", "-w", "20", "udp"]).args(args);
    json_of(run_with_input(cmd, b""), args)
}

/// A stand-in for `baseline echo`: every datagram back as it came.
fn udp_echo() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, peer)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], peer);
        }
    });
    port
}

#[test]
fn udp_pings_ferryd_and_a_bare_echo_with_the_same_client() {
    let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
    let port = d.udp_addr().port();
    for pipeline in ["1", "32"] {
        // A retransmission's second reply would be stray: none on a slow CI machine either.
        let v = bench_udp(port, &d.keys_path, &["-P", pipeline, "-d", "1", "--warmup", "0.2", "--rto", "5000"]);
        assert_eq!(v["mode"], "udp");
        assert_eq!(v["protocol"], "ferry-udp");
        assert_eq!(v["pipeline"].to_string(), pipeline);
        assert!(num(&v, "ops") > 0.0 && num(&v, "ops_per_s") > 0.0, "{v}");
        assert!(num(&v, "replies_total") >= num(&v, "ops"));
        assert!(num(&v, "datagrams_sent") >= num(&v, "requests") && num(&v, "requests") >= num(&v, "replies_total"));
        // Every reply checked: nothing on loopback is forged, and nonces never repeat.
        assert_eq!((v["stray"].as_u64(), v["replayed"].as_u64()), (Some(0), Some(0)), "{v}");
        assert!(num(&v, "request_bytes") > 36.0 && num(&v, "reply_bytes") > 36.0, "{v}");
        check_latency(&v);
        // The daemon is found by its UDP socket.
        assert_eq!(v["server_pid"], d.pid());
        assert!(num(&v, "server_cpu_us_per_op") >= 0.0, "{v}");
    }
    let size = bench_udp(port, &d.keys_path, &["-d", "0.3", "--warmup", "0"])["request_bytes"].clone();

    // The bare echo gets datagrams of the same size, from the same loop.
    let echo = udp_echo();
    let v = bench_udp(echo, &d.keys_path, &["--bare", "-P", "8", "-d", "1", "--warmup", "0.2"]);
    assert_eq!(v["protocol"], "udp-echo");
    assert_eq!(v["request_bytes"], size);
    assert_eq!(v["reply_bytes"], size);
    assert!(num(&v, "ops") > 0.0, "{v}");
    check_latency(&v);
}

#[test]
fn udp_without_an_answer_fails_in_one_line_and_in_bounded_time() {
    let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
    let port = d.udp_addr().port().to_string();
    // Another key: ferryd stays silent, and the run stops at -w.
    let (_dir, other_keys, _) = common::make_keys();
    let mut c = bench_bin();
    c.args(["--port", &port, "-k"]).arg(&other_keys).args(["udp", "-d", "5", "--rto", "50", "-w", "1"]);
    let t = std::time::Instant::now();
    let out = run_with_input(c, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no reply for 1.0 s") && stderr.contains("key"), "{stderr}");
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());

    // Nothing bound: the ICMP port unreachable ends it at once.
    let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = bench_bin();
    c.arg("--port").arg(free.to_string()).arg("-k").arg(&d.keys_path).args(["udp", "-d", "1"]);
    fails(c, "port unreachable");

    let mut c = bench_bin();
    c.args(["--port", &port, "-k"]).arg(&d.keys_path).args(["udp", "-c", "2"]);
    fails(c, "-P sets the requests in flight");
}

/// True when the ferryd under test speaks TLS (the server half merged).
fn tls_ferryd() -> bool {
    let out = Command::new(common::ferryd_bin()).arg("--help").output().unwrap();
    let yes = String::from_utf8_lossy(&out.stdout).contains("--plaintext-from");
    if !yes {
        eprintln!("SKIPPED: this ferryd does not speak TLS yet (no --plaintext-from)");
    }
    yes
}

#[test]
fn every_mode_runs_over_tls_with_the_same_client() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let v = bench(&d, &["--tls", "ping", "-c", "2", "-P", "2", "-d", "0.5", "--warmup", "0.1"]);
    assert_eq!(v["tls"], true);
    assert!(num(&v, "ops") > 0.0, "{v}");
    check_latency(&v);
    let v = bench(&d, &["--tls", "exec", "-d", "0.5", "--warmup", "0.1"]);
    assert!(num(&v, "ops") > 0.0, "{v}");
    let v = bench(&d, &["--tls", "put", "--size", "1M", "-n", "2"]);
    assert_eq!(v["transfers"], 2, "{v}");
    let v = bench(&d, &["--tls", "get", "--size", "1M", "-n", "2"]);
    assert_eq!(v["transfers"], 2, "{v}");
    let v = bench(&d, &["--tls", "idle", "-c", "3", "-d", "0.3"]);
    assert_eq!(v["connections"], 3, "{v}");
    let v = bench(&d, &["ping", "-d", "0.3", "--warmup", "0"]);
    assert_eq!(v["tls"], false, "plaintext unless --tls");

    let u = Daemon::start_udp(&[]);
    let port = u.udp_addr().port();
    let v = bench_udp(port, &u.keys_path, &["--tls", "-d", "0.5", "--warmup", "0.1", "-P", "2"]);
    assert_eq!(v["tls"], true);
    assert!(num(&v, "requests") > 0.0, "{v}");
}

#[test]
fn tls_to_resp_needs_the_insecure_switch_and_ferry_refuses_it() {
    let mut c = bench_bin();
    c.args(["--port", "1", "--tls", "ping", "--resp"]);
    fails(c, "--tls-insecure");
}

/// `--resp --tls --tls-insecure` against a real redis-server with a TLS
/// port and a throwaway certificate, when redis-server and openssl are
/// installed (skipped otherwise): the client compare.sh uses for both.
#[test]
fn resp_over_tls_to_redis_server_when_installed() {
    let have = |bin: &str, arg: &str| Command::new(bin).arg(arg).output().is_ok_and(|o| o.status.success());
    if !have("redis-server", "--version") || !have("openssl", "version") {
        eprintln!("SKIPPED: needs redis-server and openssl");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("r.crt"), dir.path().join("r.key"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
        .arg("--tls-cert-file")
        .arg(&crt)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&crt)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut cmd = bench_bin();
    cmd.args(["--port", &port.to_string(), "--json", "-w", "20", "--tls", "--tls-insecure"]);
    cmd.args(["ping", "--resp", "-c", "2", "-d", "0.5", "--warmup", "0.1"]);
    let out = run_with_input(cmd, b"");
    let _ = redis.kill();
    let _ = redis.wait();
    assert!(up, "redis-server did not listen on {port}");
    let v = json_of(out, &["ping", "--resp", "--tls"]);
    assert_eq!(v["protocol"], "resp");
    assert_eq!(v["tls"], true);
    assert!(num(&v, "ops") > 0.0, "{v}");
}

#[test]
fn pty_echo_times_keys_through_ferry_run_t() {
    let d = Daemon::start();
    let remote = "stty -icanon; echo FERRY-PTY-READY; exec cat >/dev/null";
    let mut cmd = bench_bin();
    cmd.args(["--json", "-w", "20", "pty-echo", "-n", "20", "--warmup-keys", "5", "--"]);
    cmd.arg(common::ferry_bin()).arg("-k").arg(&d.keys_path).args(["run", "-t", &d.target(), "--", remote]);
    let v = json_of(run_with_input(cmd, b""), &["pty-echo"]);
    assert_eq!(v["mode"], "pty-echo");
    let row = &v["commands"][0];
    assert_eq!(row["keys"], 20, "{v}");
    assert!(num(row, "p50_us") > 0.0 && num(row, "p99_us") >= num(row, "p50_us"), "{v}");
    // The session ended with the ^C it was sent: its command shows in the log.
    assert!(d.log.wait_for(" pty ", common::WAIT).is_some(), "{}", d.log.text());
}

/// A put sends what `ferry put` sends: the digest after the data, in a
/// trailer frame (which ferryd checks: a wrong one fails the run), from a
/// generated body or a file (not a whole number of 256 KiB chunks), in
/// clear and over TLS; to a server that announces no digests, in the header.
#[test]
fn a_put_sends_its_digest_in_a_trailer_as_ferry_put_does() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.bin");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    for tls in [false, true] {
        for digest in ["sha256", "blake3"] {
            let mut args = vec!["put", "--digest", digest, "-n", "2", "-c", "2", "--warmup", "0"];
            if tls {
                args.insert(0, "--tls");
            }
            let v = bench(&d, &[&args[..], &["--path", "gen.dat", "--size", "300K"]].concat());
            assert_eq!((v["digest_in"].as_str(), v["transfers"].as_u64()), (Some("trailer"), Some(4)), "{v}");
            let v = bench(&d, &[&args[..], &["--path", "file.dat", "--file", f]].concat());
            assert_eq!((v["digest_in"].as_str(), v["transfers"].as_u64()), (Some("trailer"), Some(4)), "{v}");
            assert!(std::fs::read(d.path("file.dat")).unwrap() == data, "{tls} {digest}");
        }
    }
    // An older server gets the sha256 in the header, checked there.
    let (_keys_dir, keys, key) = common::make_keys();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = common::old_server(listener, key, Vec::new(), false);
    let mut cmd = bench_bin();
    cmd.arg("--port").arg(port.to_string()).arg("-k").arg(&keys);
    let args = ["--json", "-w", "20", "put", "--path", "old.dat", "--size", "300K", "-n", "1", "-c", "1", "--warmup", "0"];
    cmd.args(args);
    let v = json_of(run_with_input(cmd, b""), &args);
    assert_eq!(v["digest_in"], "header", "{v}");
    let seen = server.join().unwrap();
    let put = seen.iter().find(|h| h["type"] == "put").expect("a put");
    assert!(put["sha256"].is_string() && put.get("trailer").is_none(), "{put}");
    assert!(!seen.iter().any(|h| h["type"] == "trailer"), "{seen:?}");
}
