//! The connection state machine driven through `testing`'s in-memory socket.

use super::*;
use crate::proto::auth::{self, client_mac, server_mac};
use crate::proto::msg::{self, Request};
use crate::proto::{encode_frame, Decoder, Header, Item};
use crate::server::ops::access::Access;
use crate::server::ops::{self, Op};
use crate::server::testing::{Duplex, Harness};
use crate::server::token;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123";
const CLIENT_NONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn frame(h: Value, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, h.as_object().unwrap().clone(), body);
    out
}

/// Decodes every frame the connection wrote (bodies as lossy text).
fn written(c: &mut Conn<Duplex>) -> Vec<Value> {
    let out = std::mem::take(&mut c.sock.output);
    let mut dec = Decoder::default();
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some((item, n)) = dec.decode(&out[pos..]).unwrap() {
        match item {
            Item::Header(h) => frames.push(Value::Object(h.fields)),
            Item::Body { range, .. } => {
                let body = String::from_utf8_lossy(&out[pos + range.start..pos + range.end]).into_owned();
                frames.last_mut().unwrap()["body"] = json!(body);
            }
        }
        pos += n;
    }
    assert_eq!(pos, out.len(), "a partial frame was written");
    frames
}

fn send(h: &mut Harness, c: &mut Conn<Duplex>, bytes: &[u8]) -> Step {
    c.sock.input.extend_from_slice(bytes);
    c.on_socket_event(true, true);
    c.pump(&mut h.ctx())
}

/// `send`, then pump as the reactor would until the turn's budget stops running out.
fn send_all(h: &mut Harness, c: &mut Conn<Duplex>, bytes: &[u8]) -> Step {
    let mut step = send(h, c, bytes);
    for _ in 0..1000 {
        if step != Step::Yield {
            break;
        }
        step = c.pump(&mut h.ctx());
    }
    step
}

fn authed(h: &mut Harness) -> Conn<Duplex> {
    let mut c = h.conn();
    let hello = written(&mut c).remove(0);
    let sn = hello["nonce"].as_str().unwrap().to_string();
    let mac = client_mac(SECRET.as_bytes(), &sn, CLIENT_NONCE);
    send(h, &mut c, &frame(json!({"type":"auth","key_id":"k","nonce":CLIENT_NONCE,"mac":mac}), b""));
    let w = written(&mut c);
    assert_eq!(w[0]["type"], msg::WELCOME);
    assert_eq!(w[0]["mac"], server_mac(SECRET.as_bytes(), CLIENT_NONCE, &sn));
    c
}

#[test]
fn hello_carries_a_fresh_nonce() {
    let mut h = Harness::new();
    let a = written(&mut h.conn()).remove(0);
    let b = written(&mut h.conn()).remove(0);
    assert_eq!(a["type"], msg::HELLO);
    assert_eq!(a["proto"], 1);
    assert_eq!(a["auth"], json!(["hmac-sha256"]));
    assert!(auth::is_nonce_hex(a["nonce"].as_str().unwrap()));
    assert_ne!(a["nonce"], b["nonce"]);
}

#[test]
fn good_auth_then_pipelined_pings_answer_in_order() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"ping","id":1}), b"");
    bytes.extend(frame(json!({"type":"ping","id":"two"}), b""));
    assert_eq!(send(&mut h, &mut c, &bytes), Step::Idle);
    assert_eq!(written(&mut c), [json!({"type":"pong","id":1}), json!({"type":"pong","id":"two"})]);
}

#[test]
fn wrong_mac_and_unknown_key_get_the_same_reply_and_close() {
    let mut h = Harness::new();
    let mut replies = Vec::new();
    for key_id in ["k", "nobody"] {
        let mut c = h.conn();
        written(&mut c);
        let mac = "00".repeat(32);
        send(&mut h, &mut c, &frame(json!({"type":"auth","key_id":key_id,"nonce":CLIENT_NONCE,"mac":mac}), b""));
        assert!(matches!(c.phase, Phase::Closing { shut: true, .. }));
        replies.push(written(&mut c));
    }
    assert_eq!(replies[0], replies[1]);
    assert_eq!(replies[0][0]["code"], "auth-failed");
}

#[test]
fn a_request_before_auth_is_auth_required_and_closes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    written(&mut c);
    send(&mut h, &mut c, &frame(json!({"type":"ping"}), b""));
    let w = written(&mut c);
    assert_eq!(w[0]["code"], "auth-required");
    assert!(c.sock.shut, "write side shut down after the error");
    // The peer hangs up: the connection is done.
    c.sock.eof = true;
    assert_eq!(send(&mut h, &mut c, b""), Step::Close);
}

#[test]
fn auth_timeout_closes() {
    let mut h = Harness::new();
    let mut c = h.conn();
    h.now += h.cfg.auth_timeout;
    c.on_deadline(&mut h.ctx());
    assert!(matches!(c.phase, Phase::Closing { .. }));
}

#[test]
fn unknown_type_skips_its_body_and_keeps_the_connection() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"frobnicate","id":9}), b"body bytes that are skipped");
    bytes.extend(frame(json!({"type":"ping"}), b""));
    send(&mut h, &mut c, &bytes);
    let w = written(&mut c);
    assert_eq!(w[0]["code"], "unknown-type");
    assert_eq!(w[0]["id"], 9);
    assert_eq!(w[1]["type"], "pong");
    assert!(matches!(c.phase, Phase::Ready));
}

#[test]
fn bad_frames_are_fatal() {
    for (bytes, code) in [
        (vec![0, 0, 0, 0], "bad-frame"),
        (vec![0, 1, 0, 1], "frame-too-large"),
        (frame(json!({"size":1}), b"x"), "bad-frame"),
    ] {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        send(&mut h, &mut c, &bytes);
        assert_eq!(written(&mut c)[0]["code"], code);
        assert!(matches!(c.phase, Phase::Closing { .. }));
    }
}

#[test]
fn a_frame_cut_by_eof_closes_quietly() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let bytes = frame(json!({"type":"ping"}), b"");
    c.sock.eof = true;
    send(&mut h, &mut c, &bytes[..5]);
    assert!(written(&mut c).is_empty());
    assert_eq!(c.pump(&mut h.ctx()), Step::Close);
}

#[test]
fn a_client_that_does_not_read_stops_being_parsed() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    c.sock.write_blocked = true;
    // Pings whose pongs exceed the high-water mark and then the input cap.
    let ping = frame(json!({"type":"ping","id":"x".repeat(1000)}), b"");
    let many: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 4000).collect();
    let mut step = send(&mut h, &mut c, &many);
    for _ in 0..100 {
        if step != Step::Yield {
            break;
        }
        step = c.pump(&mut h.ctx());
    }
    assert_eq!(step, Step::Idle);
    assert!(c.out.len() >= HIGH_WATER && c.out.len() < HIGH_WATER + 2 * ping.len());
    assert!(c.inbuf.len() <= IN_CAP);
    // Once it reads, the rest is served.
    c.sock.write_blocked = false;
    for _ in 0..100 {
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx());
    }
    assert_eq!(written(&mut c).len(), 4000);
}

#[test]
fn bye_flushes_then_half_closes() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"ping"}), b"");
    bytes.extend(frame(json!({"type":"bye"}), b""));
    bytes.extend(frame(json!({"type":"ping"}), b""));
    send(&mut h, &mut c, &bytes);
    assert_eq!(written(&mut c), [json!({"type":"pong"})]);
    assert!(c.sock.shut);
}

#[test]
fn exec_disabled_is_not_fatal() {
    let mut h = Harness::new();
    h.cfg.allow_exec = false;
    let mut c = authed(&mut h);
    send(&mut h, &mut c, &frame(json!({"type":"exec","cmd":"true"}), b""));
    assert_eq!(written(&mut c)[0]["code"], "exec-disabled");
    assert!(matches!(c.phase, Phase::Ready));
}

/// A harness serving a fresh temporary root.
fn with_root() -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::new();
    h.cfg.root = dir.path().canonicalize().unwrap();
    (h, dir)
}

#[test]
fn a_sized_put_split_anywhere_commits_once_its_body_is_complete() {
    let (mut h, dir) = with_root();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = frame(json!({"type":"put","path":"sub/f","id":1}), &body);
    for cut in [1, 4, 30, bytes.len() / 2, bytes.len() - 1] {
        let mut c = authed(&mut h);
        send_all(&mut h, &mut c, &bytes[..cut]);
        assert!(written(&mut c).is_empty(), "no reply before the body is complete (cut {cut})");
        if cut > 100 {
            assert!(matches!(c.phase, Phase::Running(Op::Put(_))));
        }
        send_all(&mut h, &mut c, &bytes[cut..]);
        let w = written(&mut c);
        assert_eq!(w[0]["type"], "ok", "{w:?}");
        assert_eq!(w[0]["file_size"], 200_000);
        assert!(matches!(c.phase, Phase::Ready));
        assert!(std::fs::read(dir.path().join("sub/f")).unwrap() == body);
    }
}

#[test]
fn a_put_error_is_sent_at_once_and_the_body_skipped() {
    let (mut h, dir) = with_root();
    h.cfg.read_only = true;
    let mut c = authed(&mut h);
    let bytes = frame(json!({"type":"put","path":"f","id":"p"}), &[b'x'; 1000]);
    send(&mut h, &mut c, &bytes[..100]);
    let w = written(&mut c);
    assert_eq!(w, [json!({"type":"error","code":"read-only","message":"this server is read-only","id":"p"})]);
    let mut rest = bytes[100..].to_vec();
    rest.extend(frame(json!({"type":"ping"}), b""));
    send(&mut h, &mut c, &rest);
    assert_eq!(written(&mut c), [json!({"type":"pong"})], "no second reply; the next request is served");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn a_streaming_put_ends_with_an_empty_data_frame() {
    let (mut h, dir) = with_root();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"put","path":"s","stream":true}), b"");
    bytes.extend(frame(json!({"type":"data"}), b"hello "));
    bytes.extend(frame(json!({"type":"data"}), b"world"));
    send(&mut h, &mut c, &bytes);
    assert!(written(&mut c).is_empty());
    send(&mut h, &mut c, &frame(json!({"type":"data"}), b""));
    assert_eq!(written(&mut c)[0]["file_size"], 11);
    assert_eq!(std::fs::read(dir.path().join("s")).unwrap(), b"hello world");
}

#[test]
fn a_dropped_connection_removes_the_temp_file() {
    let (mut h, dir) = with_root();
    let mut c = authed(&mut h);
    let bytes = frame(json!({"type":"put","path":"f"}), &[0u8; 5000]);
    send(&mut h, &mut c, &bytes[..3000]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temp file while the body comes");
    c.sock.eof = true;
    send(&mut h, &mut c, b"");
    assert!(matches!(c.phase, Phase::Closing { .. } | Phase::Closed));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing left behind");
}

#[test]
fn a_get_stops_at_the_high_water_mark_until_the_peer_reads() {
    let (mut h, dir) = with_root();
    let data: Vec<u8> = (0..3 * HIGH_WATER as u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("f"), &data).unwrap();
    let mut c = authed(&mut h);
    c.sock.write_blocked = true;
    let step = send_all(&mut h, &mut c, &frame(json!({"type":"get","path":"f"}), b""));
    assert_eq!(step, Step::Idle);
    assert!(c.out.len() >= HIGH_WATER && c.out.len() <= HIGH_WATER + ops::get::CHUNK + 200);
    c.sock.write_blocked = false;
    for _ in 0..1000 {
        c.on_socket_event(true, true);
        if c.pump(&mut h.ctx()) == Step::Idle && matches!(c.phase, Phase::Ready) {
            break;
        }
    }
    let w = written(&mut c);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["type"], "file");
    assert!(w[0]["body"].as_str().unwrap().len() >= data.len(), "the whole body came");
    assert_eq!(w[1]["sha256"], to_hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)));
}

#[test]
fn idle_timeout_closes_a_ready_connection() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let d = c.deadline(&h.cfg).unwrap();
    assert_eq!(d, h.now + h.cfg.idle_timeout);
    h.now = d;
    c.on_deadline(&mut h.ctx());
    assert!(matches!(c.phase, Phase::Closing { .. }));
}

// ---- the access log ---------------------------------------------------

thread_local! {
    /// Log lines of the current test's thread, as `LEVEL: message`.
    static LINES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A logger that keeps each thread's lines for that thread's test.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        LINES.with(|l| l.borrow_mut().push(format!("{}: {}", r.level(), r.args())));
    }
    fn flush(&self) {}
}

/// Starts capturing this thread's log lines (the logger is installed once per process).
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        log::set_boxed_logger(Box::new(Capture)).expect("no other logger in unit tests");
        log::set_max_level(log::LevelFilter::Debug);
    });
    LINES.with(|l| l.borrow_mut().clear());
}

/// The access lines logged so far on this thread.
fn access_lines() -> Vec<String> {
    LINES.with(|l| l.borrow().iter().filter_map(|x| x.strip_prefix("INFO: access: ").map(str::to_string)).collect())
}

/// Drives a running exec to its end the way the reactor does: pipe
/// readiness from the poll, reaping, pumping. Bounded.
fn finish_exec(h: &mut Harness, c: &mut Conn<Duplex>) {
    let mut events = mio::Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(c.phase, Phase::Ready) {
        assert!(Instant::now() < deadline, "the command did not finish");
        h.poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
        for ev in events.iter() {
            if let token::Source::Conn(_, role) = token::parse(ev.token()) {
                c.on_pipe_event(role);
            }
        }
        c.reap(&mut h.ctx());
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx());
    }
}

#[test]
fn an_exec_gets_one_access_line_with_its_bytes_duration_and_status() {
    capture_logs();
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let script = "cat; printf %s 12345 >&2; exit 3";
    let mut bytes = frame(json!({"type":"exec","argv":["sh","-c",script],"stdin":true,"id":1}), b"");
    bytes.extend(frame(json!({"type":"stdin"}), b"howdy"));
    // A bad signal frame is answered, but the command's result stays its exit.
    bytes.extend(frame(json!({"type":"signal","signal":"BOGUS"}), b""));
    bytes.extend(frame(json!({"type":"stdin"}), b""));
    send(&mut h, &mut c, &bytes);
    assert!(access_lines().is_empty(), "no line while the command runs");
    h.now += Duration::from_millis(1500);
    finish_exec(&mut h, &mut c);
    let w = written(&mut c);
    assert_eq!(w.last().unwrap()["code"], 3, "{w:?}");
    assert_eq!(
        access_lines(),
        [format!(r#"#1 test key=k exec argv=["sh","-c","{script}"] in=5 out=10 dur=1.500s result=exit:3"#)]
    );
}

/// The replies and the access line of one exec header, as raw bytes.
fn exec_as_written(header: &str) -> (Vec<Value>, Vec<String>) {
    capture_logs();
    LINES.with(|l| l.borrow_mut().clear());
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let mut bytes = (header.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    send(&mut h, &mut c, &bytes);
    if matches!(c.phase, Phase::Running(_)) {
        finish_exec(&mut h, &mut c);
    }
    (written(&mut c), access_lines())
}

#[test]
fn an_exec_read_by_the_scan_or_by_the_decoder_is_served_the_same() {
    // Each pair: a plain spelling (the scan's) and one with an escape or an
    // unknown key (the decoder's) of the same request.
    let pairs = [
        (r#"{"type":"exec","argv":["sh","-c","echo $A; exit 4"],"env":{"A":"x y"},"id":"q"}"#,
         r#"{"type":"exec","argv":["sh","-c","echo $A; exit \u0034"],"env":{"A":"x y"},"id":"q","later":[1]}"#),
        (r#"{"id":18446744073709551615,"cmd":"printf ab >&2","type":"exec","stdin":false,"timeout":30}"#,
         r#"{"id":18446744073709551615,"cmd":"printf a\u0062 >&2","type":"exec","stdin":false,"timeout":30.0}"#),
        (r#"{"type":"exec","argv":["/nonexistent/x"],"id":-3}"#, r#"{"type":"exec","argv":["/nonexistent/\u0078"],"id":-3}"#),
    ];
    for (plain, escaped) in pairs {
        let (a, b) = (exec_as_written(plain), exec_as_written(escaped));
        assert!(!a.0.is_empty() && a.1.len() == 1, "{plain}: {a:?}");
        assert_eq!(a, b, "{plain}");
    }
    // A duplicate key is still refused as a bad frame, the connection closed.
    let (w, _) = exec_as_written(r#"{"type":"exec","cmd":"true","cmd":"false"}"#);
    assert_eq!((w.len(), &w[0]["code"]), (1, &json!("bad-frame")), "{w:?}");
    assert!(w[0]["message"].as_str().unwrap().contains("duplicate key \"cmd\""), "{w:?}");
}

#[test]
fn a_command_string_is_quoted_so_it_cannot_forge_a_line() {
    capture_logs();
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    send(&mut h, &mut c, &frame(json!({"type":"exec","cmd":"exit 0\n\u{1b}[2Jaccess: forged \"x\""}), b""));
    finish_exec(&mut h, &mut c);
    let lines = access_lines();
    assert_eq!(
        lines,
        [r#"#1 test key=k exec cmd="exit 0\n\u001b[2Jaccess: forged \"x\"" in=0 out=0 dur=0.000s result=exit:0"#]
    );
    assert!(!lines[0].contains(['\n', '\u{1b}']));
}

#[test]
fn a_killed_command_reports_its_signal_and_an_abandoned_one_is_aborted() {
    capture_logs();
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["sh","-c","kill -9 $$"]}), b""));
    finish_exec(&mut h, &mut c);
    assert!(access_lines()[0].ends_with("result=signal:9"), "{:?}", access_lines());

    let mut c = authed(&mut h);
    send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["sleep","30"]}), b""));
    c.sock.eof = true;
    send(&mut h, &mut c, b"");
    let mut child = c.take_orphan().expect("the child is left to be reaped");
    crate::server::ops::exec::kill_group(child.id() as i32, libc::SIGKILL);
    let _ = child.wait();
    assert_eq!(access_lines()[1], r#"#1 test key=k exec argv=["sleep","30"] in=0 out=0 dur=0.000s result=aborted"#);
}

#[test]
fn a_put_gets_its_access_line_once_the_body_is_in() {
    capture_logs();
    let (mut h, _dir) = with_root();
    let mut c = authed(&mut h);
    let bytes = frame(json!({"type":"put","path":"sub/f"}), &[7u8; 1000]);
    send(&mut h, &mut c, &bytes[..500]);
    assert!(access_lines().is_empty());
    h.now += Duration::from_millis(12);
    send(&mut h, &mut c, &bytes[500..]);
    assert_eq!(access_lines(), [r#"#1 test key=k put path="sub/f" in=1000 out=0 dur=0.012s result=ok"#]);

    // Streaming: the data frames' bodies are counted.
    let mut bytes = frame(json!({"type":"put","path":"s","stream":true}), b"");
    bytes.extend(frame(json!({"type":"data"}), b"hello "));
    bytes.extend(frame(json!({"type":"data"}), b"world"));
    bytes.extend(frame(json!({"type":"data"}), b""));
    send(&mut h, &mut c, &bytes);
    assert_eq!(access_lines()[1], r#"#1 test key=k put path="s" in=11 out=0 dur=0.000s result=ok"#);
}

#[test]
fn an_error_reply_is_the_result_and_a_refused_put_still_counts_its_body() {
    capture_logs();
    let (mut h, _dir) = with_root();
    h.cfg.read_only = true;
    let mut c = authed(&mut h);
    let bytes = frame(json!({"type":"put","path":"f","id":"p"}), &[b'x'; 1000]);
    send(&mut h, &mut c, &bytes[..100]);
    assert_eq!(written(&mut c)[0]["code"], "read-only");
    assert!(access_lines().is_empty(), "the line comes when the body has been skipped");
    send(&mut h, &mut c, &bytes[100..]);
    let mut more = frame(json!({"type":"get","path":"missing"}), b"");
    more.extend(frame(json!({"type":"fr\nob"}), b"skipped"));
    more.extend(frame(json!({"type":"exec"}), b""));
    send(&mut h, &mut c, &more);
    assert_eq!(
        access_lines(),
        [
            r#"#1 test key=k put path="f" in=1000 out=0 dur=0.000s result=error:read-only"#,
            r#"#1 test key=k get path="missing" in=0 out=0 dur=0.000s result=error:not-found"#,
            r#"#1 test key=k unknown type="fr\nob" in=0 out=0 dur=0.000s result=error:unknown-type"#,
            r#"#1 test key=k exec in=0 out=0 dur=0.000s result=error:bad-request"#,
        ]
    );
}

#[test]
fn get_list_stat_and_ping_are_logged_with_their_reply_bodies() {
    capture_logs();
    let (mut h, dir) = with_root();
    std::fs::write(dir.path().join("f"), vec![1u8; 300_000]).unwrap();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"get","path":"f","offset":1000}), b"");
    bytes.extend(frame(json!({"type":"list","path":"."}), b""));
    bytes.extend(frame(json!({"type":"stat","path":"f"}), b""));
    bytes.extend(frame(json!({"type":"ping"}), b""));
    send_all(&mut h, &mut c, &bytes);
    let w = written(&mut c);
    let listing = w.iter().find(|f| f["type"] == "listing").unwrap()["body"].as_str().unwrap().len();
    assert_eq!(
        access_lines(),
        [
            r#"#1 test key=k get path="f" in=0 out=299000 dur=0.000s result=ok"#.to_string(),
            format!(r#"#1 test key=k list path="." in=0 out={listing} dur=0.000s result=ok"#),
            r#"#1 test key=k stat path="f" in=0 out=0 dur=0.000s result=ok"#.to_string(),
        ]
    );
    let debug = LINES.with(|l| l.borrow().iter().filter(|x| x.starts_with("DEBUG: access: ")).cloned().collect::<Vec<_>>());
    assert_eq!(debug, ["DEBUG: access: #1 test key=k ping in=0 out=0 dur=0.000s result=ok"], "pings log at debug");
}

#[test]
fn no_access_line_before_auth_and_failed_auth_is_a_warning_with_the_peer() {
    capture_logs();
    let mut h = Harness::new();
    let mut c = h.conn();
    written(&mut c);
    let mac = "00".repeat(32);
    send(&mut h, &mut c, &frame(json!({"type":"auth","key_id":"k","nonce":CLIENT_NONCE,"mac":mac}), b""));
    let lines = LINES.with(|l| l.borrow().clone());
    assert!(lines.contains(&r#"WARN: #1 test: auth failed for key id "k""#.to_string()), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains(&mac) || l.contains(SECRET)), "{lines:?}");
    assert!(access_lines().is_empty());
}

#[test]
fn long_details_are_cut() {
    let h = Header { kind: "exec".into(), size: 0, id: None, fields: Map::new() };
    let req = Ok(Request::Exec(msg::Exec {
        command: msg::Command::Argv(vec!["é".repeat(5000), "x".into()]),
        env: Default::default(),
        cwd: None,
        stdin: false,
        timeout: None,
        pty: None,
    }));
    let a = Access::new(&h, &req, Instant::now());
    let detail = a.detail().1;
    assert!(detail.len() <= ops::access::MAX_DETAIL + 3 && detail.ends_with("..."), "{}", detail.len());
}
/// Every connection costs this much before any buffer: an idle daemon's
/// memory per connection starts here (the slab holds one per client).
#[test]
fn a_connection_stays_small() {
    let size = std::mem::size_of::<Conn<mio::net::TcpStream>>();
    assert!(size <= 512, "Conn is {size} bytes; box what only busy connections need");
}

#[test]
fn a_stop_closes_an_idle_connection_once_its_frame_is_out() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    c.drain();
    assert_eq!(c.pump(&mut h.ctx()), Step::Close);
    assert!(c.sock.shut, "half-closed before the close");
    let w = written(&mut c);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["code"], "shutting-down");
}

#[test]
fn a_stop_waits_for_a_peer_that_cannot_read_yet() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    c.sock.write_blocked = true;
    c.drain();
    assert_eq!(c.pump(&mut h.ctx()), Step::Idle, "the frame is not out: no close yet");
    c.sock.write_blocked = false;
    c.on_socket_event(false, true);
    assert_eq!(c.pump(&mut h.ctx()), Step::Close);
    assert_eq!(written(&mut c)[0]["code"], "shutting-down");
}

#[test]
fn a_stop_lingers_where_input_is_unread() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    // Half a frame buffered: the peer is mid-request.
    let f = frame(json!({"type":"ping"}), b"");
    send(&mut h, &mut c, &f[..3]);
    c.drain();
    assert_eq!(c.pump(&mut h.ctx()), Step::Idle);
    assert!(matches!(c.phase, Phase::Closing { shut: true, .. }));
    // Bytes that arrive after our half-close also mean lingering.
    let mut h2 = Harness::new();
    let mut d = authed(&mut h2);
    d.sock.write_blocked = true;
    d.drain();
    d.pump(&mut h2.ctx());
    d.sock.write_blocked = false;
    d.sock.input.extend_from_slice(&f);
    d.on_socket_event(true, true);
    assert_eq!(d.pump(&mut h2.ctx()), Step::Idle);
    assert!(matches!(d.phase, Phase::Closing { shut: true, prompt: false, .. }));
    // ...until the peer hangs up.
    d.sock.eof = true;
    d.on_socket_event(true, false);
    assert_eq!(d.pump(&mut h2.ctx()), Step::Close);
}

/// What the exec wrote on stdout so far, and every frame.
fn stdout_text(frames: &[Value]) -> String {
    frames.iter().filter(|f| f["type"] == "stdout").map(|f| f["body"].as_str().unwrap_or("")).collect()
}

/// Drives a running exec as `finish_exec` does until its output holds `needle`.
fn drive_until(h: &mut Harness, c: &mut Conn<Duplex>, needle: &str) -> Vec<Value> {
    let mut events = mio::Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut frames = Vec::new();
    while !stdout_text(&frames).contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in {frames:?}");
        h.poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
        for ev in events.iter() {
            if let token::Source::Conn(_, role) = token::parse(ev.token()) {
                c.on_pipe_event(role);
            }
        }
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx());
        frames.extend(written(c));
    }
    frames
}

#[test]
fn a_pty_exec_is_sized_resized_fed_and_logged() {
    capture_logs();
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let script = "stty size; read x; stty size; echo \"got=$x\"; echo oops >&2";
    send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["sh","-c",script],"pty":{"term":"vt100","rows":10,"cols":20}}), b""));
    // The size is set before the program starts.
    let mut frames = drive_until(&mut h, &mut c, "10 20\r\n");
    let mut bytes = frame(json!({"type":"resize","rows":30,"cols":40}), b"");
    bytes.extend(frame(json!({"type":"stdin"}), b"hi\n"));
    send(&mut h, &mut c, &bytes);
    finish_exec(&mut h, &mut c);
    frames.extend(written(&mut c));
    let text = stdout_text(&frames);
    assert!(text.contains("30 40\r\n"), "{text:?}");
    assert!(text.contains("got=hi\r\n"), "{text:?}");
    // One terminal: stderr comes on it too, as stdout.
    assert!(text.contains("oops"), "{text:?}");
    assert!(frames.iter().all(|f| f["type"] != "stderr"), "{frames:?}");
    assert_eq!(frames.last().unwrap()["type"], "exit");
    assert_eq!(frames.last().unwrap()["code"], 0);
    let line = access_lines().pop().unwrap();
    assert!(line.starts_with(r#"#1 test key=k exec pty argv=["sh","-c","#), "{line}");
    assert!(line.ends_with("result=exit:0"), "{line}");
}

#[test]
fn a_resize_without_a_terminal_is_answered_and_a_policy_may_refuse_terminals() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    let mut bytes = frame(json!({"type":"exec","argv":["sh","-c","read x"],"stdin":true}), b"");
    bytes.extend(frame(json!({"type":"resize","rows":30,"cols":40}), b""));
    bytes.extend(frame(json!({"type":"stdin"}), b""));
    send(&mut h, &mut c, &bytes);
    finish_exec(&mut h, &mut c);
    let w = written(&mut c);
    assert_eq!(w[0]["code"], "bad-request", "{w:?}");
    assert_eq!(w.last().unwrap()["type"], "exit");

    h.cfg.allow_pty = false;
    send(&mut h, &mut c, &frame(json!({"type":"exec","pty":{"term":"vt100"}}), b""));
    let w = written(&mut c);
    assert_eq!(w[0]["code"], "not-allowed", "{w:?}");
    assert!(w[0]["message"].as_str().unwrap().contains("allow_pty"), "{w:?}");
}

#[test]
fn a_short_read_of_a_plain_socket_is_its_last_until_the_next_event() {
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    c.sock.short_read_drains = true;
    let reads = c.sock.reads;
    send(&mut h, &mut c, &frame(json!({"type":"ping","id":1}), b""));
    assert_eq!(written(&mut c), [json!({"type":"pong","id":1})]);
    assert_eq!(c.sock.reads - reads, 1, "no read that could only find nothing");
    // Bytes that come later come with an event of their own.
    send(&mut h, &mut c, &frame(json!({"type":"ping","id":2}), b""));
    assert_eq!(written(&mut c), [json!({"type":"pong","id":2})]);
    // A stream that cannot say so is read until it would block.
    c.sock.short_read_drains = false;
    let reads = c.sock.reads;
    send(&mut h, &mut c, &frame(json!({"type":"ping","id":3}), b""));
    assert_eq!(written(&mut c), [json!({"type":"pong","id":3})]);
    assert_eq!(c.sock.reads - reads, 2);
}

#[test]
fn an_end_of_stream_behind_a_request_is_seen_in_the_same_turn() {
    // The peer's last request and its FIN arrive together: one event, which
    // says the read side is closed. The short read of the request must not
    // end the reading, or the EOF would wait for an event that never comes.
    let mut h = Harness::new();
    let mut c = authed(&mut h);
    c.sock.short_read_drains = true;
    c.sock.eof = true;
    c.on_socket_hup();
    send(&mut h, &mut c, &frame(json!({"type":"ping","id":1}), b""));
    assert_eq!(written(&mut c), [json!({"type":"pong","id":1})]);
    assert!(c.sock.shut, "the connection half-closed after the peer's EOF");
    assert!(matches!(c.phase, Phase::Closing { .. } | Phase::Closed));
}

#[test]
fn a_silent_commands_exit_is_one_event_and_its_exit_frame_goes_out_with_it() {
    let mut h = Harness::new();
    if !h.spawner.uses_pidfd() {
        // Without pidfds SIGCHLD reaps (tests/exec_sigchld.rs): no pidfd event to watch.
        return;
    }
    let mut c = authed(&mut h);
    send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["true"],"id":7}), b""));
    let mut events = mio::Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.contains(&token::Role::Child) {
        assert!(Instant::now() < deadline, "the command did not finish: {seen:?}");
        assert!(written(&mut c).is_empty(), "nothing before the exit");
        h.poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
        for ev in events.iter() {
            if let token::Source::Conn(_, role) = token::parse(ev.token()) {
                c.on_pipe_event(role);
                seen.push(role);
            }
        }
    }
    // The pipes did not hang up when the child closed its ends: ours kept
    // them open, so the exit woke the reactor once, through the pidfd.
    assert_eq!(seen, [token::Role::Child]);
    assert!(c.reap(&mut h.ctx()));
    c.pump(&mut h.ctx());
    assert_eq!(written(&mut c), [json!({"type":"exit","code":0,"signal":null,"id":7})]);
    assert!(matches!(c.phase, Phase::Ready));
    // Nothing is left to wake it: the pipes and the pidfd are closed.
    h.poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
    assert!(events.is_empty(), "a wake after the exit");
}
