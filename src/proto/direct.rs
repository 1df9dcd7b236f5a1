//! Frames written straight into an output buffer, without building a map:
//! the `pong` a load of pings is made of and the `exit` that ends every
//! command. Each writes the very bytes `frame::encode_frame` writes for the
//! map `msg` builds (serde_json's maps keep their keys sorted): the tests
//! in `msg` hold them to it.

use serde_json::Value;

/// Appends the whole `pong` frame to `out` without building a map: the
/// reply a load of pings is made of. The same frame as `encode_frame(pong(id))`
/// once parsed.
pub fn encode_pong(out: &mut Vec<u8>, id: Option<&Value>) {
    let start = out.len();
    // Room for the frame at once (see `EXIT_FRAME_ROOM`): an idle
    // connection's empty buffer would otherwise grow 4, 8, 16, 32 bytes.
    out.reserve(PONG_FRAME_ROOM);
    out.extend_from_slice(&[0; 4]);
    if let Some(id) = id {
        out.extend_from_slice(br#"{"id":"#);
        serde_json::to_writer(&mut *out, id).expect("a JSON value always serializes");
        out.extend_from_slice(br#","type":"pong"}"#);
    } else {
        out.extend_from_slice(br#"{"type":"pong"}"#);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Room for a `pong` frame with a short id: the length prefix,
/// `{"type":"pong"}` and up to 40 bytes of `"id":…,`.
const PONG_FRAME_ROOM: usize = 64;

/// Room for an `exit` frame without an id: the length prefix and the longest
/// such header, `{"code":-2147483648,"signal":-2147483648,"timed_out":true,"type":"exit"}`
/// (76 bytes), rounded up.
const EXIT_FRAME_ROOM: usize = 96;

/// Appends the whole `exit` frame to `out` without building a map: the same
/// bytes as `encode_frame` of `exit(code, signal, id)` (plus `timed_out`
/// when set), whose keys come out sorted.
pub fn encode_exit(out: &mut Vec<u8>, code: Option<i32>, signal: Option<i32>, timed_out: bool, id: Option<&Value>) {
    let start = out.len();
    // Room for the whole frame at once: a connection between requests keeps
    // no buffer, so without it the frame would grow it 4, 8, 16, 32, 64
    // bytes, a realloc each (1,200 of the exec's 17,000 instructions).
    out.reserve(EXIT_FRAME_ROOM);
    out.extend_from_slice(&[0; 4]);
    let num = |out: &mut Vec<u8>, v: Option<i32>| match v {
        // serde_json's integer writer (itoa), not the formatting machinery.
        Some(n) => serde_json::to_writer(&mut *out, &n).expect("an integer always serializes"),
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(br#"{"code":"#);
    num(out, code);
    if let Some(id) = id {
        out.extend_from_slice(br#","id":"#);
        serde_json::to_writer(&mut *out, id).expect("a JSON value always serializes");
    }
    out.extend_from_slice(br#","signal":"#);
    num(out, signal);
    if timed_out {
        out.extend_from_slice(br#","timed_out":true"#);
    }
    out.extend_from_slice(br#","type":"exit"}"#);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}
