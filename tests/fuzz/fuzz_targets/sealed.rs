//! The sealed datagram codec (`proto::sealed`) and the server's reading of
//! a sealed request's plaintext, on arbitrary bytes.
//!
//! Checked, besides "no panic":
//! - `classify` is by byte 32 alone; arbitrary bytes never open, as a
//!   request or as a reply;
//! - the input sealed as a request (key id and nonce from the input) opens
//!   to the same key id, nonce and plaintext, and stops opening when cut,
//!   extended or changed in any one byte; it never opens as a reply;
//! - a reply sealed to it opens only under its request nonce;
//! - the plaintext reader (`parse_plaintext`) either refuses the input or
//!   gives a header whose `size` is the body's length.
#![no_main]

use ferry::proto::sealed::{self, classify, open_reply, open_request, parse_plaintext, DatagramKeys, Kind};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static DatagramKeys {
    static K: std::sync::OnceLock<DatagramKeys> = std::sync::OnceLock::new();
    K.get_or_init(|| DatagramKeys::new(&[7; 32], &[9; 32]))
}

fuzz_target!(|data: &[u8]| {
    match (classify(data), data.get(32)) {
        (None, None) | (Some(Kind::Tagged), Some(0)) => {}
        (Some(Kind::Sealed), Some(b)) if *b != 0 => {}
        other => panic!("classify: {other:?}"),
    }
    assert!(open_request(data, |id| (id == "k").then(keys)).is_err(), "arbitrary bytes opened");
    assert!(open_reply(keys(), "k", &[0; 12], data).is_err());
    if let Ok((h, body)) = parse_plaintext(data) {
        assert_eq!(h.size, body.len() as u64);
    }

    let (head, plain) = data.split_at(data.len().min(13));
    let kid_len = 1 + head.first().copied().unwrap_or(0) as usize % 8;
    let kid: String = std::iter::repeat('k').take(kid_len).collect();
    let mut nonce = [0u8; 12];
    for (n, b) in nonce.iter_mut().zip(head.iter().skip(1)) {
        *n = *b;
    }
    let Ok(req) = sealed::seal_request(keys(), &kid, nonce, plain) else {
        assert!(plain.len() + 33 + kid_len > 65507, "only a too long plaintext fails to seal");
        return;
    };
    assert_eq!(classify(&req), Some(Kind::Sealed));
    let opened = open_request(&req, |id| (id == kid).then(keys)).expect("what we sealed opens");
    assert_eq!((opened.key_id.as_str(), opened.nonce, &opened.plaintext[..]), (kid.as_str(), nonce, plain));
    assert!(open_reply(keys(), &kid, &nonce, &req).is_err(), "a request is no reply");
    let pick = plain.first().copied().unwrap_or(0) as usize;
    let cut = pick % req.len();
    assert!(open_request(&req[..cut], |id| (id == kid).then(keys)).is_err(), "cut at {cut}");
    let mut longer = req.clone();
    longer.push(pick as u8);
    assert!(open_request(&longer, |id| (id == kid).then(keys)).is_err(), "extended");
    let mut changed = req.clone();
    let at = (pick * 31 + 7) % changed.len();
    changed[at] ^= 1 | plain.get(1).copied().unwrap_or(0x20);
    assert!(open_request(&changed, |id| (id == kid).then(keys)).is_err(), "byte {at} changed");

    let mut reply_nonce = nonce;
    reply_nonce[0] ^= 0xff;
    let reply = sealed::seal_reply(keys(), &kid, &nonce, reply_nonce, &plain[..plain.len().min(1000)]).unwrap();
    assert!(open_reply(keys(), &kid, &nonce, &reply).is_ok());
    assert!(open_reply(keys(), &kid, &reply_nonce, &reply).is_err(), "bound to its request's nonce");
});
