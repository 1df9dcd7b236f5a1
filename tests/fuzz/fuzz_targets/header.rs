//! The header parser and `Request::from_header` on arbitrary bytes (the `L`
//! bytes after a frame's length): never a panic. What the server then does
//! with a request's fields without touching the world is run too: the auth
//! MAC check, the exec policy (with an allow-list, never spawning), the path
//! spelling rules, and the replies that echo a request's `id`.
#![no_main]

use ferry::paths::RelPath;
use ferry::proto::auth::{self, Key, Keys};
use ferry::proto::frame::{encode_frame, encode_head, parse_header, Decoder, Item};
use ferry::proto::msg::{self, ProtoError, Request};
use ferry::server::Config;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const NONCE: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        let keys = Keys { keys: vec![Key { id: "k".into(), secret: "0123456789abcdef0123".into() }] };
        let mut cfg = Config::new(std::env::temp_dir(), keys);
        cfg.exec_allowed = vec!["true".into(), "/bin/echo".into()];
        cfg
    })
}

/// Decodes the one frame in `bytes`, which must be exactly one whole frame.
fn one_frame(bytes: &[u8]) -> ferry::proto::frame::Header {
    match Decoder::default().decode(bytes) {
        Ok(Some((Item::Header(h), n))) => {
            assert_eq!(n, bytes.len(), "one frame, nothing after it");
            h
        }
        other => panic!("a reply we encoded does not decode: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(h) = parse_header(data) else { return };

    // The header encodes back to a frame that decodes to the same type and size.
    let mut out = Vec::new();
    encode_head(&mut out, h.fields.clone(), h.size);
    if out.len() - 4 <= ferry::proto::MAX_HEADER {
        let again = one_frame(&out);
        assert_eq!((&again.kind, again.size), (&h.kind, h.size));
    }

    let req = Request::from_header(&h);

    // Replies echo the id, whatever JSON it is, and always decode.
    out.clear();
    msg::encode_pong(&mut out, h.id.as_ref());
    let pong = one_frame(&out);
    assert_eq!(pong.kind, "pong");
    assert_eq!(pong.fields.get("id").is_some(), h.id.is_some());
    if let Err(e) = &req {
        assert!(!e.code.is_fatal(), "a request's fields are never a fatal error: {e}");
        out.clear();
        encode_frame(&mut out, msg::error(e, h.id.as_ref()), b"");
        assert_eq!(one_frame(&out).kind, "error");
    }

    let cfg = config();
    match req {
        Ok(Request::Auth(a)) => {
            let secret = cfg.keys.get(&a.key_id).map_or(&b"decoy"[..], |k| k.secret.as_bytes());
            // A fuzzer does not guess an HMAC: this is about not panicking on odd hex.
            let _ = auth::verify_client_mac(secret, NONCE, &a.nonce, &a.mac);
            let _ = auth::is_nonce_hex(&a.nonce);
        }
        Ok(Request::Exec(e)) => {
            // The policy only: checks names against the list and PATH, spawns nothing.
            match ferry::server::ops::exec::authorize(&e, cfg) {
                Ok(_) | Err(ProtoError { .. }) => {}
            }
            if let Some(cwd) = &e.cwd {
                let _ = RelPath::parse(cwd);
            }
            out.clear();
            encode_frame(&mut out, msg::request::exec(&e), b"");
            let again = one_frame(&out);
            let Ok(Request::Exec(back)) = Request::from_header(&again) else { panic!("exec round trip: {again:?}") };
            assert_eq!((&back.command, &back.env, &back.cwd, back.stdin), (&e.command, &e.env, &e.cwd, e.stdin));
            // serde_json reads floats to within an ulp, not always exactly.
            match (back.timeout, e.timeout) {
                (None, None) => {}
                (Some(a), Some(b)) => assert!((a - b).abs() <= b * 1e-15, "timeout {b} came back as {a}"),
                other => panic!("timeout round trip: {other:?}"),
            }
        }
        Ok(Request::Get(msg::Get { path, .. }))
        | Ok(Request::Put(msg::Put { path, .. }))
        | Ok(Request::List(msg::PathReq { path }))
        | Ok(Request::Stat(msg::PathReq { path })) => {
            if let Ok(p) = RelPath::parse(&path) {
                let _ = p.joined();
                let _ = p.split_last();
            }
        }
        _ => {}
    }
});
