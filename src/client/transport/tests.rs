use super::*;
use crate::proto::auth::Keys;
use crate::proto::encode_frame;
use crate::proto::msg;
use crate::tls::ServerTls;
use rustls::ServerConnection;

fn key(id: &str, secret: &str) -> Key {
    Key { id: id.into(), secret: secret.into() }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn loopback_is_plaintext_and_everything_else_tls() {
    let auto = Choice::default();
    assert_eq!(auto, Choice::Auto);
    for a in ["127.0.0.1:7075", "127.9.8.7:1", "[::1]:7075", "[::ffff:127.0.0.1]:7075"] {
        assert!(!auto.tls_for(&addr(a)), "{a} is loopback");
    }
    for a in ["10.0.0.1:7075", "192.168.1.5:7075", "8.8.8.8:53", "[fe80::1]:7075", "[2001:db8::1]:7075", "0.0.0.0:7075"] {
        assert!(auto.tls_for(&addr(a)), "{a} is not loopback");
    }
    assert!(Choice::Tls.tls_for(&addr("127.0.0.1:7075")), "--tls forces TLS on loopback");
    assert!(!Choice::Plaintext.tls_for(&addr("10.0.0.1:7075")), "--plaintext forces clear");
}

#[test]
fn flags_beat_the_environment_which_beats_the_default() {
    assert_eq!(Choice::from_flags(false, false, None), Ok(Choice::Auto));
    assert_eq!(Choice::from_flags(false, false, Some("")), Ok(Choice::Auto));
    assert_eq!(Choice::from_flags(false, false, Some("tls")), Ok(Choice::Tls));
    assert_eq!(Choice::from_flags(false, false, Some("TLS")), Ok(Choice::Tls));
    assert_eq!(Choice::from_flags(false, false, Some("plaintext")), Ok(Choice::Plaintext));
    assert_eq!(Choice::from_flags(false, false, Some("auto")), Ok(Choice::Auto));
    assert_eq!(Choice::from_flags(true, false, Some("plaintext")), Ok(Choice::Tls));
    assert_eq!(Choice::from_flags(false, true, Some("tls")), Ok(Choice::Plaintext));
    assert!(Choice::from_flags(true, true, None).is_err());
    let e = Choice::from_flags(false, false, Some("ssl")).unwrap_err();
    assert!(e.contains("FERRY_TRANSPORT") && e.contains("tls, plaintext or auto"), "{e}");
    assert!(Choice::from_flags(true, false, Some("ssl")).is_ok(), "a flag makes a bad environment moot");
}

/// A stub ferryd side: a rustls server for `keys`, fed and drained through
/// byte vectors, that may greet in clear first as ferryd does for a
/// `plaintext_from` peer.
struct Stub {
    server: ServerConnection,
    /// Bytes on their way to the client.
    to_client: Vec<u8>,
}

impl Stub {
    fn new(keys: &[Key], greet: bool) -> Stub {
        let tls = ServerTls::new(&Keys { keys: keys.to_vec() });
        let mut to_client = Vec::new();
        if greet {
            encode_frame(&mut to_client, msg::hello("ferryd-stub", &"ab".repeat(32)), &[]);
        }
        Stub { server: tls.accept().unwrap(), to_client }
    }

    /// One round: client → server → client. The server's error, if any.
    fn round(&mut self, c: &mut TlsClient) -> io::Result<Result<(), rustls::Error>> {
        let mut wire = Vec::new();
        c.write_to(&mut wire)?;
        let mut r = &wire[..];
        while !r.is_empty() {
            self.server.read_tls(&mut r).unwrap();
            if let Err(e) = self.server.process_new_packets() {
                self.server.write_tls(&mut self.to_client).unwrap();
                // The alert reaches the client, whose error says why.
                c.read_from(&mut &std::mem::take(&mut self.to_client)[..])?;
                return Ok(Err(e));
            }
        }
        while self.server.wants_write() {
            self.server.write_tls(&mut self.to_client).unwrap();
        }
        if !self.to_client.is_empty() {
            // In two pieces, so a greeting or a record cut anywhere is handled.
            let all = std::mem::take(&mut self.to_client);
            let cut = all.len() / 3;
            c.read_from(&mut &all[..cut])?;
            c.read_from(&mut &all[cut..])?;
        }
        Ok(Ok(()))
    }

    fn handshake(&mut self, c: &mut TlsClient) -> io::Result<()> {
        for _ in 0..10 {
            if let Err(e) = self.round(c)? {
                panic!("server failed: {e}");
            }
            if !c.is_handshaking() && !self.server.is_handshaking() && !c.wants_write() {
                return Ok(());
            }
        }
        panic!("no handshake in 10 rounds");
    }
}

fn exchange(greet: bool) {
    let k = key("alice", "correct horse battery staple");
    let mut stub = Stub::new(std::slice::from_ref(&k), greet);
    let mut c = TlsClient::new(&k);
    stub.handshake(&mut c).unwrap();
    let d = c.describe();
    assert!(d.starts_with("TLS 1.3, TLS13_AES_128_GCM_SHA256, "), "{d}");
    assert!(d.contains("X25519"), "{d}");
    // Inside TLS the server greets again, as v1 does; then both ways.
    let mut inner = Vec::new();
    encode_frame(&mut inner, msg::hello("ferryd-stub", &"cd".repeat(32)), &[]);
    stub.server.writer().write_all(&inner).unwrap();
    assert_eq!(c.send(b"request").unwrap(), 7);
    stub.round(&mut c).unwrap().unwrap();
    let mut got = vec![0u8; 200];
    let n = c.plaintext(&mut got).unwrap();
    assert_eq!(&got[..n], &inner[..], "the inner greeting is the v1 one, not dropped");
    let mut srv = [0u8; 7];
    stub.server.reader().read_exact(&mut srv).unwrap();
    assert_eq!(&srv, b"request");
    assert_eq!(c.plaintext(&mut got).unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn a_leading_greeting_in_clear_is_dropped() {
    exchange(true);
}

#[test]
fn no_greeting_goes_straight_to_tls() {
    exchange(false);
}

#[test]
fn a_wrong_key_fails_the_handshake_with_a_clear_message() {
    let server_key = key("alice", "the server's secret");
    let mut stub = Stub::new(&[server_key], true);
    let mut c = TlsClient::new(&key("alice", "another secret"));
    let mut err = None;
    for _ in 0..5 {
        match stub.round(&mut c) {
            Err(e) => {
                err = Some(e);
                break;
            }
            Ok(Err(_)) => {}
            Ok(Ok(())) => {}
        }
    }
    let e = err.expect("the client refuses the server");
    let t = tls_error(&e).expect("a TlsError inside");
    let m = t.to_string();
    assert!(m.contains("key alice") && m.ends_with("wrong key?"), "{m}");
    assert!(!m.contains('\n'));
}

#[test]
fn an_unknown_key_id_looks_like_a_wrong_secret() {
    let mut stub = Stub::new(&[key("bob", "s")], false);
    let mut c = TlsClient::new(&key("alice", "s"));
    let mut msg = String::new();
    for _ in 0..5 {
        if let Err(e) = stub.round(&mut c) {
            msg = tls_error(&e).expect("a TlsError").to_string();
            break;
        }
    }
    // The server shows a decoy identity: ids cannot be probed.
    assert_eq!(msg, "the server does not hold key alice as given here (another secret, or no such key): wrong key?");
}

#[test]
fn a_server_without_tls_is_told_apart() {
    // An old ferryd: greets, reads 0x16 0x03 as a frame length, answers in clear.
    let mut wire = Vec::new();
    encode_frame(&mut wire, msg::hello("old", &"ab".repeat(32)), &[]);
    let err = crate::proto::ProtoError::new(crate::proto::ErrorCode::FrameTooLarge, "frame header too large");
    encode_frame(&mut wire, msg::error(&err, None), &[]);
    let mut c = TlsClient::new(&key("k", "s"));
    let e = c.read_from(&mut &wire[..]).unwrap_err();
    let m = e.get_ref().unwrap().to_string();
    assert!(m.contains("answered in clear") && m.contains("frame-too-large"), "{m}");

    // A server that refuses before reading anything says why in clear.
    let busy = crate::proto::ProtoError::new(crate::proto::ErrorCode::TooManyConnections, "1000 connections");
    let mut refusal = Vec::new();
    encode_frame(&mut refusal, msg::error(&busy, None), &[]);
    let mut c = TlsClient::new(&key("k", "s"));
    let e = c.read_from(&mut &refusal[..]).unwrap_err();
    let r = e.get_ref().and_then(|i| i.downcast_ref::<RefusedInClear>()).expect("refused in clear");
    assert_eq!(r.0.code, crate::proto::ErrorCode::TooManyConnections);

    let mut c = TlsClient::new(&key("k", "s"));
    let e = c.read_from(&mut &b"SSH-2.0-OpenSSH_9.2\r\n"[..]).unwrap_err();
    assert!(e.to_string().contains("0x53 starts neither TLS nor a ferry frame"), "{e}");

    // A greeting cut short waits for the rest; the end of file then says so.
    let mut c = TlsClient::new(&key("k", "s"));
    assert_eq!(c.read_from(&mut &wire[..5]).unwrap(), 5);
    let e = c.read_from(&mut &b""[..]).unwrap_err();
    assert!(e.to_string().contains("closed the connection"), "{e}");
}

#[test]
fn the_receive_buffer_is_reused_not_cleared_and_keeps_unread_bytes_in_order() {
    let (mut rx, mut pos, mut end) = (Vec::new(), 0, 0);
    rx_room(&mut rx, &mut pos, &mut end, 8);
    assert_eq!(rx.len(), 8, "grown once to the room asked for");
    rx[..8].copy_from_slice(b"abcdefgh");
    (pos, end) = (5, 8);
    // Room for 8 more: "fgh" (unread) moves to the front, the rest is room.
    rx_room(&mut rx, &mut pos, &mut end, 8);
    assert_eq!((pos, end), (0, 3));
    assert_eq!(&rx[..3], b"fgh");
    assert_eq!(rx.len(), 11, "grown only by what compaction did not free");
    // Everything read: the next room comes from the front, no growth.
    (pos, end) = (3, 3);
    rx_room(&mut rx, &mut pos, &mut end, 8);
    assert_eq!((pos, end, rx.len()), (0, 0, 11));
    // Enough room after the data already: nothing moves.
    rx[..2].copy_from_slice(b"xy");
    (pos, end) = (1, 2);
    rx_room(&mut rx, &mut pos, &mut end, 8);
    assert_eq!((pos, end, rx.len()), (1, 2, 11));
}

/// `socket_drained` says whether the last read took less than its room:
/// a read that fills its room (a socket with more behind) is not drained,
/// a short one is.
#[test]
fn socket_drained_follows_the_last_reads_room() {
    let k = key("alice", "correct horse battery staple");
    let mut c = TlsClient::new(&k);
    assert!(!c.socket_drained(), "nothing read yet");
    // A record header announcing more than the first read's room.
    let mut wire = vec![0x16, 0x03, 0x03, 0x40, 0x00];
    wire.resize(5 + 0x4000, 0);
    assert_eq!(c.read_from(&mut &wire[..]).unwrap(), RX_FIRST);
    assert!(!c.socket_drained(), "the read filled its room: more may wait");
    let mut c = TlsClient::new(&k);
    assert_eq!(c.read_from(&mut &wire[..100]).unwrap(), 100);
    assert!(c.socket_drained(), "a short read emptied the socket");
}

/// A client and a stub server with the handshake done.
fn connected() -> (Stub, TlsClient) {
    let k = key("alice", "correct horse battery staple");
    let mut stub = Stub::new(std::slice::from_ref(&k), true);
    let mut c = TlsClient::new(&k);
    stub.handshake(&mut c).unwrap();
    (stub, c)
}

impl Stub {
    /// The records the server has queued for the client, as bytes.
    fn wire(&mut self) -> Vec<u8> {
        while self.server.wants_write() {
            self.server.write_tls(&mut self.to_client).unwrap();
        }
        std::mem::take(&mut self.to_client)
    }

    /// What the client has written, into the server; its plaintext.
    fn take(&mut self, c: &mut TlsClient) -> Result<Vec<u8>, rustls::Error> {
        let mut wire = Vec::new();
        assert!(c.write_to(&mut wire).unwrap(), "a Vec takes everything");
        let mut r = &wire[..];
        while !r.is_empty() {
            self.server.read_tls(&mut r).unwrap();
            self.server.process_new_packets()?;
        }
        let mut got = Vec::new();
        match self.server.reader().read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("server read: {e}"),
        }
        Ok(got)
    }
}

/// Reads everything the client can give now, `step` bytes per call.
fn drain(c: &mut TlsClient, step: usize, got: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = vec![0u8; step];
    loop {
        match c.plaintext(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn a_reply_cut_across_records_and_reads_comes_whole_and_in_order() {
    let (mut stub, mut c) = connected();
    // Three records of different sizes (one over 16 KiB: two records).
    let parts = [pattern(100, 1), pattern(20_000, 2), pattern(3, 3)];
    for p in &parts {
        stub.server.writer().write_all(p).unwrap();
    }
    let wire = stub.wire();
    let want: Vec<u8> = parts.concat();
    // Fed 7 bytes per socket read: every record arrives cut, header included.
    let mut got = Vec::new();
    for piece in wire.chunks(7) {
        assert_eq!(c.read_from(&mut &piece[..]).unwrap(), piece.len());
        drain(&mut c, 4096, &mut got).unwrap();
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the bytes come in order");
    assert!(!c.buffered(), "nothing left behind");
    assert_eq!(c.plaintext(&mut [0u8; 16]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn plaintext_the_caller_has_no_room_for_is_kept_for_the_next_read() {
    let (mut stub, mut c) = connected();
    let want = pattern(40_000, 9);
    stub.server.writer().write_all(&want).unwrap();
    let wire = stub.wire();
    // Every record read before any is taken (reads grow to 64 KiB).
    let mut r = &wire[..];
    while !r.is_empty() {
        c.read_from(&mut r).unwrap();
    }
    assert!(c.buffered(), "records wait to be taken");
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    let n = c.plaintext(&mut buf).unwrap();
    assert_eq!(n, 1000, "the caller's buffer is filled");
    got.extend_from_slice(&buf[..n]);
    // A request sent meanwhile: the records decrypted on the way are kept too.
    assert_eq!(c.send(b"more please").unwrap(), 11);
    assert_eq!(stub.take(&mut c).unwrap(), b"more please");
    drain(&mut c, 1000, &mut got).unwrap();
    assert!(got == want, "{} bytes of {}, in order", got.len(), want.len());
    // A read of one byte at a time loses nothing either.
    stub.server.writer().write_all(b"xyz").unwrap();
    c.read_from(&mut &stub.wire()[..]).unwrap();
    let mut one = Vec::new();
    drain(&mut c, 1, &mut one).unwrap();
    assert_eq!(one, b"xyz");
}

#[test]
fn requests_and_replies_reuse_the_clients_buffers() {
    let (mut stub, mut c) = connected();
    let mut caps = None;
    for i in 0..50u8 {
        let req = pattern(60, i);
        assert_eq!(c.send(&req).unwrap(), req.len());
        assert!(c.wants_write());
        assert_eq!(stub.take(&mut c).unwrap(), req);
        assert!(!c.wants_write());
        let reply = pattern(120, i);
        stub.server.writer().write_all(&reply).unwrap();
        c.read_from(&mut &stub.wire()[..]).unwrap();
        let mut got = Vec::new();
        drain(&mut c, 8192, &mut got).unwrap();
        assert_eq!(got, reply);
        let now = (c.rx.len(), c.tx.len(), c.plain.capacity(), c.early.capacity());
        assert_eq!(*caps.get_or_insert(now), now, "round {i}: no buffer grew or was dropped");
    }
}

#[test]
fn data_sent_during_the_handshake_goes_once_it_is_done() {
    let k = key("alice", "correct horse battery staple");
    let mut stub = Stub::new(std::slice::from_ref(&k), false);
    let mut c = TlsClient::new(&k);
    assert!(c.wants_write(), "the ClientHello is queued at once");
    assert!(c.is_handshaking());
    assert_eq!(c.send(b"early bird").unwrap(), 10);
    stub.handshake(&mut c).unwrap();
    assert_eq!(stub.take(&mut c).unwrap(), b"early bird");
}

#[test]
fn close_notify_both_ways() {
    let (mut stub, mut c) = connected();
    // The server's reply, then its close_notify: the reply, then Ok(0).
    stub.server.writer().write_all(b"last words").unwrap();
    stub.server.send_close_notify();
    c.read_from(&mut &stub.wire()[..]).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(c.plaintext(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], b"last words");
    assert_eq!(c.plaintext(&mut buf).unwrap(), 0, "close_notify ends the stream");
    assert_eq!(c.plaintext(&mut buf).unwrap(), 0, "and keeps it ended");
    // Ours reaches the server, which then reads the end.
    c.close();
    assert!(c.wants_write());
    assert_eq!(stub.take(&mut c).unwrap(), b"");
    let mut rest = [0u8; 8];
    assert_eq!(stub.server.reader().read(&mut rest).unwrap(), 0, "the server heard close_notify");
}

#[test]
fn an_end_without_close_notify_is_unexpected() {
    let (mut stub, mut c) = connected();
    stub.server.writer().write_all(b"cut").unwrap();
    c.read_from(&mut &stub.wire()[..]).unwrap();
    assert_eq!(c.read_from(&mut &b""[..]).unwrap(), 0);
    let mut buf = [0u8; 8];
    assert_eq!(c.plaintext(&mut buf).unwrap(), 3, "what came before the end is read");
    assert_eq!(c.plaintext(&mut buf).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn a_corrupted_record_is_an_error_carrying_a_tls_error_and_the_alert_goes_out() {
    let (mut stub, mut c) = connected();
    stub.server.writer().write_all(b"a reply").unwrap();
    let mut wire = stub.wire();
    let last = wire.len() - 1;
    wire[last] ^= 0x40; // in the tag
    let e = match c.read_from(&mut &wire[..]) {
        Err(e) => e,
        Ok(_) => c.plaintext(&mut [0u8; 64]).unwrap_err(),
    };
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    let t = tls_error(&e).expect("a TlsError inside");
    assert!(t.to_string().to_lowercase().contains("decrypt"), "{t}");
    // The alert that says why is queued, and the server hears it.
    assert!(c.wants_write(), "an alert is queued");
    let heard = stub.take(&mut c).unwrap_err();
    assert!(matches!(heard, rustls::Error::AlertReceived(rustls::AlertDescription::BadRecordMac)), "{heard:?}");
    // The connection is dead: no more plaintext, no more sending.
    assert!(c.plaintext(&mut [0u8; 8]).is_err());
    assert!(c.send(b"x").is_err());
}

#[test]
fn a_key_update_the_server_asks_for_is_answered_and_traffic_goes_on() {
    let (mut stub, mut c) = connected();
    for i in 0..3u8 {
        // The server renews its keys and asks the client to renew its own.
        stub.server.refresh_traffic_keys().unwrap();
        let reply = pattern(300, i);
        stub.server.writer().write_all(&reply).unwrap();
        c.read_from(&mut &stub.wire()[..]).unwrap();
        let mut got = Vec::new();
        drain(&mut c, 8192, &mut got).unwrap();
        assert_eq!(got, reply, "round {i}: the reply after the update");
        // The client's next records are under its new keys: the server reads them.
        let req = pattern(50, i + 100);
        assert_eq!(c.send(&req).unwrap(), req.len());
        assert_eq!(stub.take(&mut c).unwrap(), req, "round {i}");
    }
}
