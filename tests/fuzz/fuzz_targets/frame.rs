//! The frame decoder on arbitrary bytes, fed whole and split at arbitrary
//! points: it never panics, and both ways give the same frames (headers,
//! bodies, and the same final verdict: an error or "need more").
//!
//! Input: `[limit, seed_hi, seed_lo, stream...]`. `limit` picks the decoder's
//! header limit; the seed drives the chunk sizes of the split feed.
#![no_main]

use ferry::proto::frame::{Decoder, FrameError, Header, Item, MAX_HEADER};
use libfuzzer_sys::fuzz_target;

/// What a feed produced: frames (header, body) and how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<(Header, Vec<u8>)>,
    /// The error that stopped the decoder, if any.
    error: Option<FrameError>,
    /// Bytes left undecoded when the input ran out (no error).
    left: usize,
}

/// Feeds `chunks` in turn the way the connection does: append, decode until
/// "need more", drop what was used.
fn feed(max_header: usize, chunks: &[&[u8]]) -> Outcome {
    let mut dec = Decoder::new(max_header);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Outcome { frames: Vec::new(), error: None, left: 0 };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut used = 0;
        loop {
            let before = dec.body_remaining();
            match dec.decode(&buf[used..]) {
                Ok(None) => break,
                Ok(Some((Item::Header(h), n))) => {
                    assert!(n >= 5 && n <= buf.len() - used, "header used {n} of {}", buf.len() - used);
                    assert!(n - 4 <= max_header.clamp(1, MAX_HEADER), "a header over the limit was accepted");
                    assert_eq!(dec.body_remaining(), h.size, "body_remaining after a header");
                    assert_eq!(dec.at_boundary(), h.size == 0);
                    out.frames.push((h, Vec::new()));
                    used += n;
                }
                Ok(Some((Item::Body { range, last }, n))) => {
                    assert_eq!(range.start, 0);
                    assert_eq!(range.end, n);
                    assert!(n > 0, "an empty body item");
                    assert!(n <= buf.len() - used);
                    assert_eq!(dec.body_remaining(), before - n as u64);
                    assert_eq!(last, dec.body_remaining() == 0);
                    let frame = out.frames.last_mut().expect("a body item before any header");
                    frame.1.extend_from_slice(&buf[used..used + n]);
                    if last {
                        assert_eq!(frame.1.len() as u64, frame.0.size, "the body's length is the header's size");
                    }
                    used += n;
                }
                Err(e) => {
                    assert!(dec.at_boundary(), "an error inside a body");
                    out.error = Some(e);
                    return out;
                }
            }
        }
        buf.drain(..used);
    }
    out.left = buf.len();
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max_header = match data[0] {
        0..=127 => MAX_HEADER,
        l => (l as usize - 127) * 4,
    };
    let mut seed = u32::from(u16::from_be_bytes([data[1], data[2]])) | 1;
    let stream = &data[3..];

    let whole = feed(max_header, &[stream]);

    // Split into chunks of 0..=N bytes, N from the seed: small chunks most of
    // the time, so headers and lengths are cut everywhere.
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = match seed % 8 {
            0 => 0,
            1..=4 => (seed >> 8) as usize % 4 + 1,
            5 | 6 => (seed >> 8) as usize % 64 + 1,
            _ => (seed >> 8) as usize % 4096 + 1,
        };
        let end = (pos + n).min(stream.len());
        chunks.push(&stream[pos..end]);
        pos = end;
    }
    let split = feed(max_header, &chunks);
    assert_eq!(whole, split, "whole and split feeds disagree");

    // One byte at a time, as the slowest peer sends.
    if stream.len() <= 4096 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(whole, feed(max_header, &bytes), "whole and bytewise feeds disagree");
    }
});
