//! Writes the seed corpora of the fuzz targets from the protocol's real
//! frames: `cargo run --example seeds -- DIR` (in tests/fuzz) fills
//! `DIR/{frame,header,paths,conn}/` with one file per seed, named by content.
//! The committed corpora in `tests/fuzz/seeds` are its output.
//!
//! The seeds are every request of the protocol (auth, ping, bye, exec by
//! string and by argv with stdin, signal, get, put sized and streaming, list,
//! stat, an unknown type) in sessions, plus malformed frames (length 0, over
//! the limit, not JSON, not an object, no type, bad sizes, deep nesting,
//! invalid UTF-8, duplicate keys) and paths that try to leave the root.

use ferry::proto::frame::encode_frame;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn frame(h: Value, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, h.as_object().unwrap().clone(), body);
    out
}

/// A frame with a header as given, byte for byte.
fn raw(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const NONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const SHA_HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

/// Request headers, one of each kind and variant, with their bodies.
fn requests() -> Vec<(Value, Vec<u8>)> {
    let mac = "ab".repeat(32);
    vec![
        (json!({"type":"auth","key_id":"k","nonce":NONCE,"mac":mac}), vec![]),
        (json!({"type":"ping"}), vec![]),
        (json!({"type":"ping","id":1}), vec![]),
        (json!({"type":"ping","id":"x"}), vec![]),
        (json!({"type":"ping","id":{"nested":[1,2.5,null]}}), vec![]),
        (json!({"type":"bye"}), vec![]),
        (json!({"type":"exec","cmd":"uname -a","id":2}), vec![]),
        (json!({"type":"exec","argv":["ls","-l"],"env":{"A":"b"},"cwd":"d","stdin":true,"timeout":2.5}), vec![]),
        (json!({"type":"exec","argv":[]}), vec![]),
        (json!({"type":"exec","cmd":"x","argv":["y"]}), vec![]),
        (json!({"type":"exec","cmd":"x","timeout":-1}), vec![]),
        (json!({"type":"stdin"}), b"input".to_vec()),
        (json!({"type":"stdin"}), vec![]),
        (json!({"type":"signal","signal":"TERM"}), vec![]),
        (json!({"type":"signal","signal":"BOGUS"}), vec![]),
        (json!({"type":"get","path":"f","id":3}), vec![]),
        (json!({"type":"get","path":"d/big","offset":1000,"digest":"none"}), vec![]),
        (json!({"type":"get","path":"f","offset":99999}), vec![]),
        (json!({"type":"get","path":"in/up"}), vec![]),
        (json!({"type":"put","path":"new/file","mode":420,"sha256":SHA_HELLO,"id":4}), b"hello".to_vec()),
        (json!({"type":"put","path":"f","sha256":"00".repeat(32)}), b"hello".to_vec()),
        (json!({"type":"put","path":"g"}), vec![]),
        (json!({"type":"put","path":"s","stream":true}), vec![]),
        (json!({"type":"data"}), b"chunk".to_vec()),
        (json!({"type":"data"}), vec![]),
        (json!({"type":"list"}), vec![]),
        (json!({"type":"list","path":"d"}), vec![]),
        (json!({"type":"stat","path":"f"}), vec![]),
        (json!({"type":"stat","path":"in"}), vec![]),
        (json!({"type":"frobnicate","id":9}), b"skipped body".to_vec()),
        // Paths that try to leave the root.
        (json!({"type":"get","path":"../outside/secret"}), vec![]),
        (json!({"type":"get","path":"/etc/passwd"}), vec![]),
        (json!({"type":"get","path":"outfile"}), vec![]),
        (json!({"type":"get","path":"slash/etc/passwd"}), vec![]),
        (json!({"type":"get","path":"abs"}), vec![]),
        (json!({"type":"list","path":"out"}), vec![]),
        (json!({"type":"stat","path":"dotdot/outside/secret"}), vec![]),
        (json!({"type":"put","path":"out/new"}), b"x".to_vec()),
        (json!({"type":"put","path":"outfile"}), b"x".to_vec()),
        (json!({"type":"get","path":"loop"}), vec![]),
        (json!({"type":"exec","cmd":"true","cwd":"out"}), vec![]),
    ]
}

/// Malformed frames: each is fatal to a connection.
fn malformed() -> Vec<Vec<u8>> {
    vec![
        vec![0, 0, 0, 0],
        0x10001u32.to_be_bytes().to_vec(),
        u32::MAX.to_be_bytes().to_vec(),
        raw(b"not json", b""),
        raw(b"[1,2]", b""),
        raw(b"{}", b""),
        raw(br#"{"type":3}"#, b""),
        raw(br#"{"type":"ping","size":-1}"#, b""),
        raw(br#"{"type":"ping","size":1.5}"#, b""),
        raw(br#"{"type":"ping","size":1e309}"#, b""),
        raw(br#"{"type":"stdin","size":18446744073709551615}"#, b"abc"),
        raw(br#"{"type":"ping","type":"bye"}"#, b""),
        raw(b"{\"type\":\"get\",\"path\":\"\xff\xfe\"}", b""),
        raw(br#"{"type":"get","path":"\ud800"}"#, b""),
        raw(br#"{"type":"get","path":"a\u0000b"}"#, b""),
        raw(&[b"{\"type\":\"ping\",\"id\":".as_slice(), &[b'['; 200], &[b']'; 200], b"}"].concat(), b""),
        raw(br#"{"type":"ping","id":"\u00e9\u2603\ud83d\ude00"}"#, b""),
    ]
}

/// Client sessions after the handshake, as the ferry client sends them.
fn sessions() -> Vec<Vec<u8>> {
    let f = |h: Value, b: &[u8]| frame(h, b);
    vec![
        cat(&[f(json!({"type":"ping","id":1}), b""), f(json!({"type":"ping","id":2}), b""), f(json!({"type":"bye"}), b"")]),
        cat(&[
            f(json!({"type":"put","path":"d/new","sha256":SHA_HELLO}), b"hello"),
            f(json!({"type":"get","path":"d/new"}), b""),
            f(json!({"type":"stat","path":"d/new"}), b""),
            f(json!({"type":"list","path":"d"}), b""),
        ]),
        cat(&[
            f(json!({"type":"put","path":"s","stream":true,"id":1}), b""),
            f(json!({"type":"data"}), b"hello "),
            f(json!({"type":"data"}), b"world"),
            f(json!({"type":"data"}), b""),
            f(json!({"type":"get","path":"s","digest":"none"}), b""),
        ]),
        cat(&[
            f(json!({"type":"put","path":"s","stream":true}), b""),
            f(json!({"type":"data"}), b"cut short"),
            f(json!({"type":"ping"}), b""),
        ]),
        cat(&[
            f(json!({"type":"exec","argv":["cat"],"stdin":true}), b""),
            f(json!({"type":"stdin"}), b"abc"),
            f(json!({"type":"signal","signal":"INT"}), b""),
            f(json!({"type":"stdin"}), b""),
            f(json!({"type":"ping"}), b""),
        ]),
        cat(&[f(json!({"type":"get","path":"d/big"}), b""), f(json!({"type":"get","path":"f","offset":3}), b"")]),
        cat(&[f(json!({"type":"put","path":"f","sha256":"00".repeat(32)}), b"hello"), f(json!({"type":"get","path":"f"}), b"")]),
    ]
}

fn write(dir: &Path, data: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    // Named by a hash of the content, as libFuzzer names corpus files.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    std::fs::write(dir.join(format!("seed-{h:016x}")), data).unwrap();
}

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).expect("usage: seeds DIR"));
    let reqs = requests();
    let mut frames: Vec<Vec<u8>> = reqs.iter().map(|(h, b)| frame(h.clone(), b)).collect();
    frames.extend(malformed());
    let sessions = sessions();

    // header: the header bytes alone (the L bytes after the length).
    for (h, _) in &reqs {
        write(&out.join("header"), &serde_json::to_vec(h).unwrap());
    }
    for m in malformed() {
        if m.len() > 4 {
            write(&out.join("header"), &m[4..]);
        }
    }
    for reply in [
        ferry::proto::msg::hello("ferryd 0.1.0", NONCE),
        ferry::proto::msg::exit(Some(0), None, Some(&json!(1))),
        ferry::proto::msg::done(Some(SHA_HELLO), None),
    ] {
        write(&out.join("header"), &serde_json::to_vec(&reply).unwrap());
    }

    // frame: [limit, seed, seed] + a stream: each frame, every session, all frames at once.
    for (i, s) in frames.iter().chain(&sessions).enumerate() {
        let mut v = vec![0, i as u8, 0x5a];
        v.extend_from_slice(s);
        write(&out.join("frame"), &v);
    }
    let mut all = vec![0, 1, 2];
    for f in frames.iter().filter(|f| f.len() > 4 && f[..4] != [0, 0, 0, 0] && f[0] == 0) {
        all.extend_from_slice(f);
    }
    write(&out.join("frame"), &all);

    // paths: [mode, path].
    let paths = [
        "f", ".", "", "d/sub/h", "in/g", "d/up", "d/sub/round/h", "self/self/f", "slash", "slash/etc/passwd", "dotdot",
        "dotdot/outside/secret", "out", "outfile", "d/out2/secret", "loop1", "proc", "proc/etc/passwd", "abs_in",
        "dangling", "fifo", "../x", "/etc", "a//b/./c/", "d/sub/", "new/dir/file", "in/new/file", "f/x", "\u{e9}",
    ];
    for p in paths {
        for mode in [0u8, 1, 2, 3 | 4 | 8] {
            let mut v = vec![mode];
            v.extend_from_slice(p.as_bytes());
            write(&out.join("paths"), &v);
        }
    }

    // conn: [flags, chunk] + a stream. Authenticated (flags bit 0): each request
    // alone and each session, fed whole and in pieces; not authenticated: the
    // auth frame, a request before it, garbage.
    for (i, s) in frames.iter().chain(&sessions).enumerate() {
        write(&out.join("conn"), &[&[1u8, 0][..], s].concat());
        if i % 3 == 0 {
            write(&out.join("conn"), &[&[1u8 | 2 | 4, 7][..], s].concat());
        }
    }
    write(&out.join("conn"), &[&[1u8 | 16 | 32, 0][..], &sessions[0]].concat());
    write(&out.join("conn"), &[&[1u8 | 8 | 128, 1][..], &sessions[1]].concat());
    write(&out.join("conn"), &[&[1u8 | 64, 0][..], &frames[6]].concat());
    for (i, s) in frames.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
        write(&out.join("conn"), &[&[(i as u8) & 0xfe, 0][..], s].concat());
    }
}
