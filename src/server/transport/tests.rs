//! The sniff and the TLS transport without sockets: a `Conn` over
//! `Transport<Duplex>`, a rustls client fed by hand.

use super::*;
use crate::proto::auth::{client_mac, Key};
use crate::proto::{Decoder, Item};
use crate::server::conn::{Conn, Phase, Step, SNIFF_GRACE};
use crate::server::testing::{frame, Duplex, Harness, CLIENT_NONCE, KEY_ID, SECRET};
use rustls::ClientConnection;
use serde_json::{json, Value};

type C = Conn<Transport<Duplex>>;

fn conn(h: &mut Harness, plain: bool) -> C {
    let mut ctx = h.ctx();
    let mut c = Conn::new(Transport::Plain(Duplex::default()), 0, "#1 test".into(), plain, &mut ctx);
    c.pump(&mut ctx);
    c
}

fn duplex(c: &mut C) -> &mut Duplex {
    c.socket_mut().stream_mut().unwrap()
}

fn send(h: &mut Harness, c: &mut C, bytes: &[u8]) -> Step {
    duplex(c).input.extend_from_slice(bytes);
    c.on_socket_event(true, true);
    c.pump(&mut h.ctx())
}

/// Headers of the frames in `bytes`.
fn frames(bytes: &[u8]) -> Vec<Value> {
    let mut dec = Decoder::default();
    let (mut out, mut pos) = (Vec::new(), 0);
    while let Some((item, n)) = dec.decode(&bytes[pos..]).unwrap() {
        if let Item::Header(h) = item {
            out.push(Value::Object(h.fields));
        }
        pos += n;
    }
    out
}

fn key() -> Key {
    Key { id: KEY_ID.into(), secret: SECRET.into() }
}

/// Moves records both ways until neither side has more; returns the
/// plaintext the client read.
fn shuttle(h: &mut Harness, c: &mut C, client: &mut ClientConnection) -> Vec<u8> {
    let mut plain = Vec::new();
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        send(h, c, &to_server);
        let out = std::mem::take(&mut duplex(c).output);
        if to_server.is_empty() && out.is_empty() {
            break;
        }
        let mut rd = &out[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        let _ = std::io::Read::read_to_end(&mut client.reader(), &mut plain);
    }
    plain
}

#[test]
fn a_peer_outside_plaintext_from_hears_nothing_and_clear_bytes_get_tls_required() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, false);
    assert!(duplex(&mut c).output.is_empty(), "nothing is sent before the client speaks");
    assert!(matches!(c.phase(), Phase::Sniff { hello: None, .. }));
    send(&mut h, &mut c, &frame(json!({"type":"ping"}), b""));
    let out = frames(&duplex(&mut c).output);
    assert_eq!(out[0]["code"], "tls-required");
    assert!(matches!(c.phase(), Phase::Closing { .. }));
}

#[test]
fn silence_past_the_grace_gets_tls_required() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, false);
    assert_eq!(c.deadline(&h.cfg), Some(h.now + SNIFF_GRACE));
    h.now += SNIFF_GRACE;
    c.on_deadline(&mut h.ctx());
    c.pump(&mut h.ctx());
    assert_eq!(frames(&duplex(&mut c).output)[0]["code"], "tls-required");
}

#[test]
fn a_plaintext_peer_is_greeted_at_once_and_v1_goes_on() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, true);
    let out = std::mem::take(&mut duplex(&mut c).output);
    let hello = &frames(&out)[0];
    assert_eq!(hello["type"], msg_hello());
    let mac = client_mac(SECRET.as_bytes(), hello["nonce"].as_str().unwrap(), CLIENT_NONCE);
    send(&mut h, &mut c, &frame(json!({"type":"auth","key_id":KEY_ID,"nonce":CLIENT_NONCE,"mac":mac}), b""));
    assert!(matches!(c.phase(), Phase::Ready));
}

fn msg_hello() -> &'static str {
    crate::proto::msg::HELLO
}

/// A TLS client on a plaintext peer's connection: the clear greeting comes
/// first and is void; the session greets again inside TLS, and the `auth`
/// there works; a ping is answered through TLS.
#[test]
fn tls_after_a_clear_greeting_handshakes_greets_inside_and_serves() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, true);
    let clear = std::mem::take(&mut duplex(&mut c).output);
    assert_eq!(frames(&clear)[0]["type"], msg_hello());
    let mut client = crate::tls::connect(&key()).unwrap();
    let plain = shuttle(&mut h, &mut c, &mut client);
    assert!(!client.is_handshaking());
    assert!(c.socket_mut().is_tls());
    let hello = &frames(&plain)[0];
    assert_eq!(hello["type"], msg_hello());
    let mac = client_mac(SECRET.as_bytes(), hello["nonce"].as_str().unwrap(), CLIENT_NONCE);
    let auth = frame(json!({"type":"auth","key_id":KEY_ID,"nonce":CLIENT_NONCE,"mac":mac}), b"");
    std::io::Write::write_all(&mut client.writer(), &auth).unwrap();
    std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"ping","id":7}), b"")).unwrap();
    let plain = shuttle(&mut h, &mut c, &mut client);
    let got = frames(&plain);
    assert_eq!(got[0]["type"], crate::proto::msg::WELCOME);
    assert_eq!(got[1], json!({"type":"pong","id":7}));
    // bye: close_notify, then the TCP half-close once it is out.
    std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"bye"}), b"")).unwrap();
    shuttle(&mut h, &mut c, &mut client);
    assert!(duplex(&mut c).shut, "the write side is shut after close_notify");
    let mut rest = Vec::new();
    assert_eq!(std::io::Read::read_to_end(&mut client.reader(), &mut rest).ok(), Some(0), "a clean close_notify");
}

#[test]
fn a_wrong_key_fails_the_handshake_without_a_frame() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, false);
    let wrong = Key { id: KEY_ID.into(), secret: "another secret entirely".into() };
    let mut client = crate::tls::connect(&wrong).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    send(&mut h, &mut c, &hello);
    assert!(matches!(c.phase(), Phase::Handshake { .. }));
    let out = std::mem::take(&mut duplex(&mut c).output);
    let mut rd = &out[..];
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
    }
    assert!(client.process_new_packets().is_err(), "the client refuses the server's identity");
    let mut alert = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut alert).unwrap();
    }
    assert_eq!(send(&mut h, &mut c, &alert), Step::Close);
    assert_eq!(c.reason(), "TLS handshake failed");
}

#[test]
fn a_half_open_handshake_ends_at_the_auth_timeout() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, true);
    let mut client = crate::tls::connect(&key()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    // Half the ClientHello, then nothing.
    send(&mut h, &mut c, &hello[..hello.len() / 2]);
    assert!(matches!(c.phase(), Phase::Handshake { .. }));
    h.now += h.cfg.auth_timeout;
    c.on_deadline(&mut h.ctx());
    assert!(matches!(c.phase(), Phase::Closing { .. } | Phase::Closed));
    assert!(c.reason().starts_with("no TLS handshake within"), "{}", c.reason());
}

/// The TLS session of connection `c`.
fn session(c: &mut C) -> &mut Tls<Duplex> {
    match c.socket_mut() {
        Transport::Tls(t) => t,
        _ => panic!("not TLS"),
    }
}

/// Records that arrive a byte at a time, and replies the socket will not
/// take at once, are served; once all is through, the session holds no
/// buffer of its own (issue 18: an idle TLS connection's memory).
#[test]
fn records_in_pieces_and_a_blocked_socket_are_served_and_an_idle_session_holds_no_buffer() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, false);
    let mut client = crate::tls::connect(&key()).unwrap();
    let plain = shuttle(&mut h, &mut c, &mut client);
    let hello = &frames(&plain)[0];
    let mac = client_mac(SECRET.as_bytes(), hello["nonce"].as_str().unwrap(), CLIENT_NONCE);
    let auth = frame(json!({"type":"auth","key_id":KEY_ID,"nonce":CLIENT_NONCE,"mac":mac}), b"");
    std::io::Write::write_all(&mut client.writer(), &auth).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    for b in &records {
        send(&mut h, &mut c, std::slice::from_ref(b));
    }
    assert!(matches!(c.phase(), Phase::Ready));
    let plain = shuttle(&mut h, &mut c, &mut client);
    assert_eq!(frames(&plain)[0]["type"], crate::proto::msg::WELCOME);

    // The pong is made while the socket takes nothing: it waits in the session.
    duplex(&mut c).write_blocked = true;
    std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"ping","id":8}), b"")).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    send(&mut h, &mut c, &records);
    assert!(duplex(&mut c).output.is_empty());
    assert!(!session(&mut c).outgoing.is_empty(), "the records wait");
    duplex(&mut c).write_blocked = false;
    let plain = shuttle(&mut h, &mut c, &mut client);
    assert_eq!(frames(&plain)[0], json!({"type":"pong","id":8}));

    let t = session(&mut c);
    assert_eq!(
        (t.incoming.capacity(), t.outgoing.capacity(), t.plain.capacity()),
        (0, 0, 0),
        "an idle session holds no buffer"
    );
    assert!(t.sni.is_none() && t.server.is_none(), "the handshake's leftovers are dropped");
}

/// What ferry keeps per TLS session beside rustls's connection (1,080 bytes
/// in rustls 0.23.48): the socket, three empty vectors, the handshake-only
/// SNI and key table, and flags. Idle TLS memory (issue 18: at most 4 KiB a
/// connection) is mostly rustls's; ours must not grow unnoticed.
#[test]
fn a_tls_session_adds_little_to_rustls_connection() {
    let ours = std::mem::size_of::<Tls<mio::net::TcpStream>>() - std::mem::size_of::<UnbufferedServerConnection>();
    assert!(ours <= 128, "Tls adds {ours} bytes to the rustls connection");
    let t = std::mem::size_of::<Transport<mio::net::TcpStream>>();
    let sock = std::mem::size_of::<mio::net::TcpStream>();
    assert!(t <= sock.max(8) + 8, "the transport is {t} bytes, the socket {sock}: TLS stays boxed");
}

/// A TLS session past `welcome` over a socket of the poll's kind (a short
/// read of it drains it), and its client.
fn authed_on_a_polled_socket(h: &mut Harness) -> (C, ClientConnection) {
    let mut c = conn(h, false);
    duplex(&mut c).short_read_drains = true;
    let mut client = crate::tls::connect(&key()).unwrap();
    let plain = shuttle(h, &mut c, &mut client);
    let hello = &frames(&plain)[0];
    let mac = client_mac(SECRET.as_bytes(), hello["nonce"].as_str().unwrap(), CLIENT_NONCE);
    std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"auth","key_id":KEY_ID,"nonce":CLIENT_NONCE,"mac":mac}), b"")).unwrap();
    shuttle(h, &mut c, &mut client);
    assert!(matches!(c.phase(), Phase::Ready));
    (c, client)
}

/// A record the socket hands over whole (a short read: the socket is then
/// empty) is served with one read of it: the connection waits for the next
/// readable event instead of reading again to hear WouldBlock. Bytes that
/// come later, with their event, are read and served.
#[test]
fn a_request_read_whole_costs_one_socket_read_and_the_next_event_is_served() {
    let mut h = Harness::new();
    let (mut c, mut client) = authed_on_a_polled_socket(&mut h);

    for id in 1..=3 {
        std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"ping","id":id}), b"")).unwrap();
        let mut records = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut records).unwrap();
        }
        let before = duplex(&mut c).reads;
        assert_eq!(send(&mut h, &mut c, &records), Step::Idle);
        assert_eq!(duplex(&mut c).reads - before, 1, "ping {id}: one socket read, none that would block");
        let out = std::mem::take(&mut duplex(&mut c).output);
        let mut rd = &out[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        let mut got = Vec::new();
        let _ = std::io::Read::read_to_end(&mut client.reader(), &mut got);
        assert_eq!(frames(&got), vec![json!({"type":"pong","id":id})]);
    }
}

/// `read_drained` is true only right after a read that emptied the socket
/// with nothing held back: plaintext the reader had no room for keeps the
/// connection reading, and so does the read that hands the held rest over
/// (bytes may have come since the socket was read, their event spent).
#[test]
fn read_drained_only_when_the_socket_was_emptied_and_nothing_is_held() {
    let mut h = Harness::new();
    let mut c = conn(&mut h, false);
    // A socket of the poll's kind: a short read of it drains it.
    duplex(&mut c).short_read_drains = true;
    let mut client = crate::tls::connect(&key()).unwrap();
    shuttle(&mut h, &mut c, &mut client);
    assert!(!client.is_handshaking());
    let ping = frame(json!({"type":"ping","id":9}), b"");
    std::io::Write::write_all(&mut client.writer(), &ping).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    duplex(&mut c).input.extend_from_slice(&records);
    let t = c.socket_mut();
    let mut small = [0u8; 5];
    assert_eq!(t.read(&mut small).unwrap(), 5);
    assert!(!t.read_drained(), "plaintext is held back: read on");
    let mut rest = vec![0u8; 1024];
    let n = t.read(&mut rest).unwrap();
    assert_eq!([&small[..], &rest[..n]].concat(), ping);
    assert!(!t.read_drained(), "the held rest was handed over: the socket may have more");
    let reads = t.stream_mut().unwrap().reads;
    assert_eq!(t.read(&mut rest).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    assert_eq!(t.stream_mut().unwrap().reads, reads + 1, "that read asked the socket");

    std::io::Write::write_all(&mut client.writer(), &ping).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    let t = c.socket_mut();
    t.stream_mut().unwrap().input.extend_from_slice(&records);
    assert_eq!(t.read(&mut rest).unwrap(), ping.len());
    assert!(t.read_drained(), "a short socket read, all plaintext taken");
    std::io::Write::write_all(&mut client.writer(), &ping).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    let t = c.socket_mut();
    let d = t.stream_mut().unwrap();
    d.input.extend_from_slice(&records);
    d.short_read_drains = false;
    assert_eq!(t.read(&mut rest).unwrap(), ping.len());
    assert!(!t.read_drained(), "a stream that raises no events is read until WouldBlock");
    assert!(!Transport::Plain(Duplex::default()).read_drained(), "in clear, the count read decides (short_read_drains)");
}

/// The last request and the peer's close reported by one event: the close
/// raises no event of its own later, so the connection reads on past the
/// short read to the EOF and ends, rather than wait for an edge that never
/// comes (a put refused over TLS left its connection open that way).
#[test]
fn a_close_reported_with_the_last_request_is_read_to_the_end() {
    let mut h = Harness::new();
    let (mut c, mut client) = authed_on_a_polled_socket(&mut h);

    std::io::Write::write_all(&mut client.writer(), &frame(json!({"type":"ping","id":4}), b"")).unwrap();
    let mut records = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut records).unwrap();
    }
    let d = duplex(&mut c);
    d.input.extend_from_slice(&records);
    d.eof = true;
    c.on_socket_event(true, true);
    c.on_socket_hup();
    let step = c.pump(&mut h.ctx());
    assert!(step == Step::Close || matches!(c.phase(), Phase::Closing { .. } | Phase::Closed), "{step:?}: the EOF was read");
    let out = std::mem::take(&mut duplex(&mut c).output);
    let mut rd = &out[..];
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
        let _ = client.process_new_packets();
    }
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut client.reader(), &mut got);
    assert_eq!(frames(&got)[0], json!({"type":"pong","id":4}), "the request before the close is answered");
}
