//! The datagram codec (`proto::datagram`) on arbitrary bytes. The input is
//! what follows the tag (`L`, the header, the body): the target tags it
//! itself, with the request label and with the reply label, so the fuzzer
//! reaches the framing and field checks behind the tag. Besides "no panic":
//!
//! - a datagram decodes as a request only with the request label's tag, and
//!   as a reply only with the reply label's;
//! - what decodes stops decoding when cut anywhere, extended by a byte, or
//!   changed in any one byte (the input picks which);
//! - a decoded request's header goes through `Request::from_header`, and its
//!   fields encode back to a request that decodes to the same type, nonce,
//!   ts, fields and body;
//! - a `result` reply built for it, with outputs and a reply limit the input
//!   picks, is never over the limit and reads back with its counts.
#![no_main]

use ferry::proto::datagram::{
    self, decode_reply, decode_request, encode_request, encode_result, tag, Direction, ExecOutcome, ExecResult,
};
use ferry::proto::msg::Request;
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"0123456789abcdef0123";

fn keys(id: &str) -> Option<&'static [u8]> {
    (id == "k").then_some(SECRET)
}

fn tagged(dir: Direction, signed: &[u8]) -> Vec<u8> {
    let mut out = tag(dir, SECRET, signed).to_vec();
    out.extend_from_slice(signed);
    out
}

fuzz_target!(|data: &[u8]| {
    // Untagged bytes: never a panic, never accepted.
    assert!(decode_request(data, keys).is_err());
    assert!(decode_reply(SECRET, data).is_err());

    let request = tagged(Direction::Request, data);
    let reply = tagged(Direction::Reply, data);
    // The labels keep the directions apart.
    assert!(decode_reply(SECRET, &request).is_err(), "a request tag passed as a reply's");
    assert!(decode_request(&reply, keys).is_err(), "a reply tag passed as a request's");
    let _ = decode_reply(SECRET, &reply);

    let Ok(r) = decode_request(&request, keys) else { return };
    assert_eq!(r.key_id, "k");
    assert!(datagram::is_udp_nonce(&r.nonce));
    assert_eq!(r.body.len() as u64, r.header.size);

    // Cut, extended or changed: refused.
    let pick = data.first().copied().unwrap_or(0) as usize;
    let cut = pick % request.len();
    assert!(decode_request(&request[..cut], keys).is_err(), "cut at {cut}");
    let mut longer = request.clone();
    longer.push(data.last().copied().unwrap_or(0));
    assert!(decode_request(&longer, keys).is_err(), "extended");
    let mut changed = request.clone();
    let at = (pick * 7 + 3) % changed.len();
    changed[at] ^= 1 | data.get(1).copied().unwrap_or(0x5a);
    assert!(decode_request(&changed, keys).is_err(), "byte {at} changed");

    // The server reads the request's fields (nothing here may panic).
    let _ = Request::from_header(&r.header);

    // Re-encoded, the same header and body.
    let mut fields = r.header.fields.clone();
    fields.remove("key_id");
    if let Ok(head) = serde_json::to_vec(&fields) {
        if head.len() + r.body.len() + datagram::OVERHEAD + 64 <= datagram::MAX_DATAGRAM {
            let again = encode_request("k", SECRET, fields, r.body);
            let r2 = decode_request(&again, keys).expect("a request we encoded decodes");
            assert_eq!((&r2.header.kind, &r2.nonce, r2.ts, r2.body), (&r.header.kind, &r.nonce, r.ts, r.body));
            // `size` is written only for a body; every other field is kept.
            let names = |h: &ferry::proto::frame::Header| {
                h.fields.keys().filter(|k| *k != "size").cloned().collect::<Vec<_>>()
            };
            assert_eq!(names(&r2.header), names(&r.header));
        }
    }

    // A result for it fits whatever limit and outputs the input picks.
    let max_reply = 512 + (u16::from_le_bytes([pick as u8, data.get(2).copied().unwrap_or(0)]) as usize % 65_000);
    let id = r.header.id.as_ref().filter(|v| serde_json::to_vec(v).map_or(false, |j| j.len() <= 64));
    let (out, err) = r.body.split_at(r.body.len() / 2);
    let o = ExecOutcome {
        code: Some(pick as i32 - 128),
        signal: None,
        timed_out: pick % 2 == 0,
        stdout: out,
        stderr: err,
        stdout_total: out.len() as u64 * (1 + pick as u64 % 3),
        stderr_total: err.len() as u64,
    };
    let bytes = encode_result(SECRET, max_reply, &r.nonce, id, &o);
    assert!(bytes.len() <= max_reply, "{} > {max_reply}", bytes.len());
    let back = decode_reply(SECRET, &bytes).expect("a reply we encoded decodes");
    assert!(back.answers(&r.nonce));
    let x = ExecResult::from_reply(&back).expect("a result we encoded reads back");
    assert_eq!((x.stdout_total, x.stderr_total), (o.stdout_total, o.stderr_total));
    assert!(out.starts_with(&x.stdout) && err.starts_with(&x.stderr));
    assert_eq!(x.truncated, (x.stdout.len() as u64) < o.stdout_total || (x.stderr.len() as u64) < o.stderr_total);
});
