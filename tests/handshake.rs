//! The mutual HMAC handshake and the keys file, against the real daemon.

mod common;

use common::*;
use ferry::proto::auth;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn auth_frame(key_id: &str, server_nonce: &str, secret: &[u8]) -> serde_json::Value {
    let cn = auth::to_hex(&auth::fresh_nonce());
    let mac = auth::client_mac(secret, server_nonce, &cn);
    json!({"type":"auth","key_id":key_id,"nonce":cn,"mac":mac})
}

#[test]
fn the_server_proves_it_knows_the_key() {
    let d = Daemon::start();
    let mut c = d.raw();
    let cn = auth::to_hex(&auth::fresh_nonce());
    let mac = auth::client_mac(d.key.secret.as_bytes(), &c.server_nonce, &cn);
    c.send(json!({"type":"auth","id":"a1","key_id":"test","nonce":cn,"mac":mac}), b"");
    let (w, _) = c.frame();
    assert_eq!(w["type"], "welcome");
    assert_eq!(w["id"], "a1");
    let expected = auth::server_mac(d.key.secret.as_bytes(), &cn, &c.server_nonce);
    assert_eq!(w["mac"], expected);
    assert!(d.log.wait_for("authenticated as test", WAIT).is_some());
}

#[test]
fn wrong_mac_and_unknown_key_id_are_indistinguishable() {
    let d = Daemon::start();
    let mut replies = Vec::new();
    for (key_id, secret) in [("test", b"not-the-right-secret".as_slice()), ("nobody", d.key.secret.as_bytes())] {
        let mut c = d.raw();
        let nonce = c.server_nonce.clone();
        c.send(auth_frame(key_id, &nonce, secret), b"");
        let (h, body) = c.frame();
        assert!(c.closed(), "closed after auth-failed");
        replies.push((h, body));
    }
    assert_eq!(replies[0], replies[1], "same reply for both failures");
    assert_eq!(replies[0].0["code"], "auth-failed");
}

#[test]
fn malformed_auth_fails() {
    let d = Daemon::start();
    for bad in [
        json!({"type":"auth","key_id":"test"}),
        json!({"type":"auth","key_id":"test","nonce":"short","mac":"00"}),
        json!({"type":"auth","key_id":5,"nonce":"00","mac":"00"}),
    ] {
        let mut c = d.raw();
        c.send(bad, b"");
        assert_eq!(c.frame().0["code"], "auth-failed");
        assert!(c.closed());
    }
    // A correct MAC over a nonce that is not 64 hex digits is refused too.
    let mut c = d.raw();
    let mac = auth::client_mac(d.key.secret.as_bytes(), &c.server_nonce, "abc");
    c.send(json!({"type":"auth","key_id":"test","nonce":"abc","mac":mac}), b"");
    assert_eq!(c.frame().0["code"], "auth-failed");
}

#[test]
fn any_other_frame_before_welcome_is_auth_required() {
    let d = Daemon::start();
    for t in ["ping", "exec", "bye", "made-up"] {
        let mut c = d.raw();
        c.send(json!({"type":t,"cmd":"touch pwned"}), b"");
        let (h, _) = c.frame();
        assert_eq!(h["code"], "auth-required", "{t}");
        assert!(c.closed());
    }
    assert!(!d.path("pwned").exists());
}

#[test]
fn no_auth_within_the_timeout_closes() {
    let d = Daemon::start_with(&["--auth-timeout", "1"]);
    let mut c = d.raw();
    let t = Instant::now();
    assert!(c.closed(), "closed by the server");
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(900), "closed too early: {waited:?}");
    assert!(waited < Duration::from_secs(10), "closed too late: {waited:?}");
    assert!(d.log.wait_for("no authentication within 1s", WAIT).is_some());
}

fn ferryd_with_keys(keys: &std::path::Path) -> std::process::Output {
    let root = tempfile::tempdir().unwrap();
    Command::new(ferryd_bin())
        .args(["--listen", "127.0.0.1:0", "--root"])
        .arg(root.path())
        .arg("--keys")
        .arg(keys)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_readable_keys_file_is_refused() {
    let (_dir, path, _key) = make_keys();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ferryd_with_keys(&path);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by group or others"), "{err}");
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
}

#[test]
fn a_malformed_keys_file_is_refused_without_echoing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "# keys\ngood 0123456789abcdef0123\nbad tooshort9\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ferryd_with_keys(&path);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("tooshort9") && !err.contains("0123456789abcdef0123"), "{err}");
}

#[test]
fn first_start_creates_a_private_keys_file() {
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut child = Command::new(ferryd_bin())
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(root.path())
        .env("HOME", home.path())
        .env_remove("FERRY_KEYS")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = capture(child.stderr.take().unwrap());
    let ok = log.wait_for("listening on", WAIT).is_some();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(ok, "{}", log.text());
    assert_eq!(status.code(), Some(0));
    let path = home.path().join(".config/ferry/keys");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let keys = ferry::keys::load(&path).unwrap();
    assert_eq!(keys.first().unwrap().id, "default");
    assert!(log.text().contains("created keys file"), "{}", log.text());
    assert!(!log.text().contains(&keys.first().unwrap().secret), "the secret is never printed");
}
