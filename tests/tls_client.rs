//! The client over TLS, end to end with the real binaries: `ferry --tls`
//! (run, stdin, get, put, fan-out, datagrams sealed), `-v` naming the
//! suite, a wrong key ending in the TLS handshake with status 255, the
//! transport chosen from the environment, and `ferry export-tls` feeding
//! `openssl s_client`.
//!
//! Every test needs a ferryd that speaks TLS. Against an older one (the
//! server half not merged yet) each test says so on stderr and passes
//! without checking anything: see `tls_ferryd`.

mod common;

use common::Daemon;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// True when the ferryd under test speaks TLS (it has `--plaintext-from`).
fn tls_ferryd() -> bool {
    let out = Command::new(common::ferryd_bin()).arg("--help").output().unwrap();
    let yes = String::from_utf8_lossy(&out.stdout).contains("--plaintext-from");
    if !yes {
        eprintln!("SKIPPED: this ferryd does not speak TLS yet (no --plaintext-from)");
    }
    yes
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(d: &Daemon, args: &[&str]) -> Output {
    d.ferry().env_remove("FERRY_TRANSPORT").args(args).output().unwrap()
}

#[test]
fn run_over_tls_says_the_suite_with_v() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let o = run(&d, &["-v", "--tls", "run", &d.target(), "--", "echo", "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hi\n");
    let err = text(&o.stderr);
    assert!(err.contains("TLS 1.3, TLS13_AES_128_GCM_SHA256, X25519"), "{err}");
    assert!(d.log.wait_for("over TLS", common::WAIT).is_some() || d.log.text().contains("TLS"), "{}", d.log.text());

    // Loopback without a flag stays in clear, and says so.
    let o = run(&d, &["-v", "run", &d.target(), "--", "true"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stderr).contains("plaintext v1"), "{}", text(&o.stderr));
}

#[test]
fn stdin_and_output_cross_tls_both_ways_at_once() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let mut c = d.ferry();
    c.env_remove("FERRY_TRANSPORT").args(["--tls", "run", &d.target(), "--", "sh", "-c", "cat; echo done >&2"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = child.stdin.take().unwrap();
    let feed = input.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&feed).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout == input, "3 MB echoed through cat: got {} bytes", o.stdout.len());
    assert_eq!(text(&o.stderr), "done\n");
}

#[test]
fn get_and_put_over_tls() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let local = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let src = local.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let o = run(&d, &["--tls", "put", &d.target(), src.to_str().unwrap(), "up.bin"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::read(d.path("up.bin")).unwrap() == data, "the put arrived whole");

    let back = local.path().join("back.bin");
    let o = run(&d, &["--tls", "get", &d.target(), "up.bin", back.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::read(&back).unwrap() == data, "the get came back whole");

    // A streamed put (stdin), and ls, over TLS too.
    let mut c = d.ferry();
    c.env_remove("FERRY_TRANSPORT").args(["--tls", "put", &d.target(), "-", "stream.bin"]);
    let mut child = c.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&data[..100_000]).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(d.path("stream.bin")).unwrap(), &data[..100_000]);
    let o = run(&d, &["--tls", "ls", &d.target()]);
    assert!(text(&o.stdout).contains("stream.bin"), "{}", text(&o.stdout));
}

#[test]
fn fan_out_over_tls() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let hosts = format!("{},localhost:{}", d.target(), d.addr.port());
    let o = run(&d, &["-v", "--tls", "run", "-H", &hosts, "--", "echo", "hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).matches(": hi\n").count(), 2, "{}", text(&o.stdout));
    assert_eq!(text(&o.stderr).matches("TLS 1.3, TLS13_AES_128_GCM_SHA256").count(), 2, "{}", text(&o.stderr));

    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("f.bin");
    let data = vec![7u8; 300_000];
    std::fs::write(&src, &data).unwrap();
    let o = run(&d, &["--tls", "put", "-H", &d.target(), src.to_str().unwrap(), "fan.bin"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(d.path("fan.bin")).unwrap(), data);
    let dir = local.path().join("got");
    let o = run(&d, &["--tls", "get", "-H", &d.target(), "fan.bin", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(dir.join(d.target()).join("fan.bin")).unwrap(), data);
    let o = run(&d, &["--tls", "ping", "-H", &hosts]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

#[test]
fn datagrams_are_sealed_with_tls() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start_udp(&[]);
    let addr = d.udp_addr().to_string();
    // -v says it once per host, not every round.
    let o = run(&d, &["-v", "--tls", "ping", "-u", "-c", "2", "--interval", "0.1", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stderr).matches("sealed (AES-256-GCM)").count(), 1, "{}", text(&o.stderr));
    // And with -H, for each host.
    let two = format!("{addr},localhost:{}", d.udp_addr().port());
    let o = run(&d, &["-v", "--tls", "run", "-u", "-H", &two, "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stderr).matches("/udp: sealed (AES-256-GCM)").count(), 2, "{}", text(&o.stderr));
    let o = run(&d, &["-v", "ping", "-u", "-H", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("/udp: tagged v1 (HMAC, in clear)"), "{}", text(&o.stderr));
    let o = run(&d, &["--tls", "run", "-u", &addr, "--", "echo", "sealed"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "sealed\n");
    let o = run(&d, &["--tls", "run", "-u", "-H", &format!("{addr},localhost:{}", d.udp_addr().port()), "--", "echo", "x"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).matches(": x\n").count(), 2, "{}", text(&o.stdout));
    // In clear on loopback by default, as before.
    let o = run(&d, &["-v", "ping", "-u", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("tagged v1"), "{}", text(&o.stderr));
}

#[test]
fn a_wrong_key_fails_in_the_tls_handshake_with_255() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("keys");
    // The same id as the daemon's, another secret.
    ferry::keys::generate(&wrong, &d.key.id).unwrap();
    let o = Command::new(common::ferry_bin())
        .env_remove("FERRY_TRANSPORT")
        .arg("-k")
        .arg(&wrong)
        .args(["--tls", "run", &d.target(), "--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(o.stdout.is_empty());
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("key {}", d.key.id)) && err.trim_end().ends_with("wrong key?"), "{err}");
    assert!(!d.log.text().contains("authenticated"), "no frame was exchanged:\n{}", d.log.text());
    // The client's alert reaches the server before it closes: one warning naming the key.
    let line = d.log.wait_for("the client refused our identity", common::WAIT).unwrap_or_else(|| d.log.text());
    assert!(line.contains("warn") && line.contains(&format!("key {}", d.key.id)), "{line}");

    // An id the server does not hold fails exactly as a wrong secret does
    // (ids cannot be probed); the server's log names the id.
    let other = dir.path().join("other");
    ferry::keys::generate(&other, "nobody").unwrap();
    let o2 = Command::new(common::ferry_bin())
        .env_remove("FERRY_TRANSPORT")
        .arg("-k")
        .arg(&other)
        .args(["--tls", "run", &d.target(), "--", "echo", "hi"])
        .output()
        .unwrap();
    assert_eq!(o2.status.code(), Some(255));
    assert_eq!(text(&o2.stderr).replace("nobody", "ID"), err.replace(&d.key.id, "ID"));
    let line = d.log.wait_for("no known key ID", common::WAIT).unwrap_or_else(|| d.log.text());
    assert!(line.contains("warn") && line.contains("TLS client named no known key ID \"nobody\""), "{line}");
}

#[test]
fn the_environment_chooses_the_transport_and_flags_win() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start();
    let o = d.ferry().env("FERRY_TRANSPORT", "tls").args(["-v", "run", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("TLS 1.3"), "{}", text(&o.stderr));
    let o = d
        .ferry()
        .env("FERRY_TRANSPORT", "tls")
        .args(["-v", "--plaintext", "run", &d.target(), "--", "true"])
        .output()
        .unwrap();
    assert!(text(&o.stderr).contains("plaintext v1"), "{}", text(&o.stderr));
    let o = d.ferry().env("FERRY_TRANSPORT", "ssl").args(["run", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("FERRY_TRANSPORT"), "{}", text(&o.stderr));
    let o = d.ferry().args(["--tls", "--plaintext", "run", &d.target(), "--", "true"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn export_tls_feeds_openssl_s_client() {
    if !tls_ferryd() {
        return;
    }
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: no openssl");
        return;
    }
    // TLS for every peer, so the greeting comes inside TLS, as a remote
    // openssl would see it.
    let d = Daemon::start_with(&["--plaintext-from", "none"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tls");
    let o = run(&d, &["export-tls", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let id = &d.key.id;
    let (crt, key) = (out.join(format!("{id}.crt")), out.join(format!("{id}.key")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&crt).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(out.join(format!("{id}-server.crt")).exists());
    let name = ferry::tls::sni_name(id);
    assert!(text(&o.stderr).contains(&name), "{}", text(&o.stderr));
    let server_crt = out.join(format!("{id}-server.crt"));
    // As ferry(1)'s EXAMPLES: the server pinned with -CAfile and -verify_return_error.
    let s_client = |name: &str| {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &d.target(), "-tls1_3", "-quiet", "-servername", name, "-cert"])
            .arg(&crt)
            .arg("-key")
            .arg(&key)
            .arg("-CAfile")
            .arg(&server_crt)
            .arg("-verify_return_error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Hold stdin open a moment so s_client reads the greeting, then close.
        let stdin = child.stdin.take().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let o = s_client(&name);
    let got = text(&o.stdout);
    assert!(got.contains("\"type\":\"hello\"") && got.contains("\"proto\":1"), "stdout {got:?}\nstderr {}", text(&o.stderr));
    // Another server identity (here the decoy for an id the server lacks) is refused.
    let o = s_client(&ferry::tls::sni_name("nobody"));
    assert!(!o.status.success() && o.stdout.is_empty(), "stdout {:?}\nstderr {}", text(&o.stdout), text(&o.stderr));
}

#[test]
fn clear_to_a_tls_only_server_says_how_to_speak_tls() {
    if !tls_ferryd() {
        return;
    }
    let d = Daemon::start_with(&["--plaintext-from", "none"]);
    let o = run(&d, &["run", &d.target(), "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = text(&o.stderr);
    assert!(err.contains("tls-required") && err.contains("--tls"), "{err}");
    let o = run(&d, &["run", "--tls", &d.target(), "--", "echo", "ok"]);
    assert_eq!(text(&o.stdout), "ok\n", "{}", text(&o.stderr));
}
