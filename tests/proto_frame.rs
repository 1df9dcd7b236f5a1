//! Frame rules against the real daemon, in raw bytes.

mod common;

use common::*;
use serde_json::json;

/// Sends `bytes` after auth and expects a fatal error with `code`, then close.
fn expect_fatal(d: &Daemon, bytes: &[u8], code: &str) {
    let mut c = d.authed();
    c.send_bytes(bytes);
    let (h, _) = c.frame();
    assert_eq!(h["type"], "error", "{h}");
    assert_eq!(h["code"], code, "{h}");
    assert!(h["message"].as_str().is_some_and(|m| !m.is_empty()), "errors carry a message: {h}");
    assert!(c.closed(), "connection closed after {code}");
}

#[test]
fn hello_is_as_specified() {
    let d = Daemon::start();
    let mut c = Raw::connect(d.addr);
    let (h, body) = c.frame();
    assert!(body.is_empty());
    assert_eq!(h["type"], "hello");
    assert_eq!(h["proto"], 1);
    assert_eq!(h["server"], format!("ferryd {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(h["auth"], json!(["hmac-sha256"]));
    let nonce = h["nonce"].as_str().unwrap();
    assert_eq!(nonce.len(), 64);
    assert!(nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    // Fresh per connection.
    assert_ne!(d.raw().server_nonce, d.raw().server_nonce);
}

#[test]
fn every_bad_frame_is_answered_then_closed() {
    let d = Daemon::start();
    expect_fatal(&d, &[0, 0, 0, 0], "bad-frame");
    expect_fatal(&d, &[0xff, 0xff, 0xff, 0xff], "frame-too-large");
    expect_fatal(&d, &65537u32.to_be_bytes(), "frame-too-large");
    expect_fatal(&d, &raw_frame(b"not json at all", b""), "bad-frame");
    expect_fatal(&d, &raw_frame(b"\xff\xfe\xfd", b""), "bad-frame");
    expect_fatal(&d, &raw_frame(b"[\"ping\"]", b""), "bad-frame");
    expect_fatal(&d, &raw_frame(b"{\"id\":1}", b""), "bad-frame");
    expect_fatal(&d, &raw_frame(b"{\"type\":7}", b""), "bad-frame");
    expect_fatal(&d, &raw_frame(br#"{"type":"ping","size":-1}"#, b""), "bad-frame");
    expect_fatal(&d, &raw_frame(br#"{"type":"ping","size":2.5}"#, b""), "bad-frame");
    expect_fatal(&d, &raw_frame(br#"{"type":"ping","size":"9"}"#, b""), "bad-frame");
    // The daemon is still up and serving.
    let mut c = d.authed();
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0["type"], "pong");
}

#[test]
fn a_header_of_exactly_64k_is_accepted() {
    let d = Daemon::start();
    let mut c = d.authed();
    let base = br#"{"type":"ping","id":1,"pad":""}"#.len();
    let pad = "x".repeat(65536 - base);
    let header = format!(r#"{{"type":"ping","id":1,"pad":"{pad}"}}"#);
    assert_eq!(header.len(), 65536);
    c.send_bytes(&raw_frame(header.as_bytes(), b""));
    assert_eq!(c.frame().0, json!({"type":"pong","id":1}));
}

#[test]
fn unknown_type_skips_the_body_and_keeps_the_connection() {
    let d = Daemon::start();
    let mut c = d.authed();
    let body = vec![b'z'; 100_000];
    c.send(json!({"type":"teleport","id":"t1","future_field":[1,2]}), &body);
    c.send(json!({"type":"ping","id":2}), b"");
    let (e, _) = c.frame();
    assert_eq!(e["type"], "error");
    assert_eq!(e["code"], "unknown-type");
    assert_eq!(e["id"], "t1");
    assert_eq!(c.frame().0, json!({"type":"pong","id":2}));
}

#[test]
fn unknown_fields_are_ignored_and_ids_echoed() {
    let d = Daemon::start();
    let mut c = d.authed();
    for id in [json!(1), json!("abc"), json!(null), json!(2.5), json!(true)] {
        c.send(json!({"type":"ping","id":id,"extra":{"nested":true}}), b"");
        assert_eq!(c.frame().0, json!({"type":"pong","id":id}));
    }
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0, json!({"type":"pong"}), "no id in, no id out");
}

#[test]
fn glued_and_byte_by_byte_frames_decode_the_same() {
    let d = Daemon::start();
    let mut c = d.authed();
    // Three requests in one write.
    let mut glued = Vec::new();
    for i in 0..3 {
        glued.extend(frame(json!({"type":"ping","id":i}), b""));
    }
    c.send_bytes(&glued);
    for i in 0..3 {
        assert_eq!(c.frame().0, json!({"type":"pong","id":i}));
    }
    // One request, one byte per write.
    for b in frame(json!({"type":"ping","id":"slow"}), b"") {
        c.send_bytes(&[b]);
    }
    assert_eq!(c.frame().0, json!({"type":"pong","id":"slow"}));
}

#[test]
fn a_bad_request_is_not_fatal() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","id":5}), b"");
    let (e, _) = c.frame();
    assert_eq!((e["code"].as_str(), e["id"].as_i64()), (Some("bad-request"), Some(5)));
    c.send(json!({"type":"signal","signal":"USR1"}), b"");
    // Stray signal frames with no command running are dropped silently,
    // but a malformed one is still an error.
    assert_eq!(c.frame().0["code"], "bad-request");
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0["type"], "pong");
}

#[test]
fn bye_flushes_and_closes() {
    let d = Daemon::start();
    let mut c = d.authed();
    let mut bytes = frame(json!({"type":"ping","id":1}), b"");
    bytes.extend(frame(json!({"type":"bye"}), b""));
    bytes.extend(frame(json!({"type":"ping","id":2}), b""));
    c.send_bytes(&bytes);
    assert_eq!(c.frame().0, json!({"type":"pong","id":1}));
    assert!(c.closed(), "nothing after bye");
    drop(c);
    assert!(d.log.wait_for("closed: bye", WAIT).is_some());
}
