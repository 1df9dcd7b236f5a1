//! The transport sniff: a new connection (`server::conn::Conn` over
//! `server::transport::Transport` on the in-memory socket) fed arbitrary
//! first bytes, for a peer inside `plaintext_from` and one outside.
//!
//! Input: `[flags, chunk, stream...]`. flags bit 0: the peer is in
//! `plaintext_from` (greeted at accept). bit 1: the peer's EOF after the
//! stream. bit 2: the clock jumps past every deadline at the end. `chunk`: 0
//! feeds the stream whole, N feeds it N bytes at a time.
//!
//! Checked, besides "no panic": `proto::sniff` agrees with the first byte;
//! a peer outside `plaintext_from` hears nothing in clear but one
//! `tls-required` error (and only when its first byte is not 0x16, or it
//! said nothing); a stream starting with 0x16 gets, after any clear greeting,
//! TLS records only (content types 20 to 23), never a v1 frame; the
//! connection never gets past the handshake (no key proves itself here).
#![no_main]

use ferry::proto::sniff::{sniff, Transport as Kind, TLS_HANDSHAKE};
use ferry::server::conn::{Conn, Phase};
use ferry::server::testing::{decode_all, Duplex, Harness};
use ferry::server::transport::Transport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, chunk, stream) = match data {
        [f, c, rest @ ..] => (*f, *c as usize, rest),
        _ => return,
    };
    match (sniff(stream), stream.first()) {
        (Ok(None), None) => {}
        (Ok(Some(Kind::Tls)), Some(&TLS_HANDSHAKE)) | (Ok(Some(Kind::Frames)), Some(0)) => {}
        (Err(e), Some(&b)) => assert_eq!(e.0, b),
        other => panic!("sniff disagrees with the first byte: {other:?}"),
    }
    let plain = flags & 1 != 0;
    let mut h = Harness::new();
    let mut c = Conn::new(Transport::Plain(Duplex::default()), 0, "#1 fuzz".into(), plain, &mut h.ctx());
    c.pump(&mut h.ctx());
    let step = chunk.max(1).min(stream.len().max(1));
    for piece in if chunk == 0 { vec![stream] } else { stream.chunks(step).collect() } {
        let d = c.socket_mut().stream_mut().expect("a stream");
        d.input.extend_from_slice(piece);
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx());
        if c.is_closed() {
            break;
        }
    }
    if flags & 2 != 0 {
        if let Some(d) = c.socket_mut().stream_mut() {
            d.eof = true;
        }
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx());
    }
    if flags & 4 != 0 {
        h.now += std::time::Duration::from_secs(3600);
        c.on_deadline(&mut h.ctx());
        c.pump(&mut h.ctx());
    }
    assert!(!matches!(c.phase(), Phase::Ready | Phase::Running(_) | Phase::Queued { .. }), "authenticated by a fuzzer");
    let is_tls = c.socket_mut().is_tls();
    let Some(d) = c.socket_mut().stream_mut() else { return };
    let out = d.output.clone();
    // The clear part: the greeting of a plaintext peer, or one tls-required.
    let (clear, rest) = if plain {
        let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
        out.split_at(4 + len)
    } else {
        (&out[..0], &out[..])
    };
    if let Some(&first) = clear.first() {
        assert_eq!(first, 0);
    }
    if stream.first() == Some(&TLS_HANDSHAKE) {
        assert!(is_tls, "0x16 switches to TLS");
        // Records only: type, version, length.
        let mut pos = 0;
        while pos < rest.len() {
            assert!((20..=23).contains(&rest[pos]), "not a TLS record at {pos}: {:?}", &rest[pos..]);
            let Some(len) = rest.get(pos + 3..pos + 5) else { panic!("a cut record header") };
            pos += 5 + u16::from_be_bytes([len[0], len[1]]) as usize;
        }
    } else {
        assert!(!is_tls);
        let (frames, _) = decode_all(rest).expect("clear output is frames");
        if !plain {
            assert!(frames.len() <= 1, "{frames:?}");
            if let Some(f) = frames.first() {
                assert_eq!(f.0.str("code"), Some("tls-required"));
            }
        }
    }
});
