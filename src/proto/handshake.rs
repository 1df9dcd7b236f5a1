//! The client's half of the v1 handshake as a state machine without sockets.
//!
//! Owns the order of the handshake and its checks; the MACs themselves are in
//! `auth`, the frame layout in `frame`. The caller owns the socket and the
//! clock, and passes in the client nonce, so the machine is pure and every
//! run is reproducible in a test.
//!
//! LIFECYCLE
//!   AwaitHello   --hello (proto 1, valid nonce)--> Send(auth)  AwaitWelcome
//!   AwaitWelcome --welcome (server MAC right)----> Done(Established)
//!   any          --error frame------------------> Failed(Refused)
//!   any          --anything else----------------> Failed(...)
//! After Done or Failed the machine is spent; feeding it more is a bug.
//!
//! Two ways in: `on_frame` for callers that already decode frames (the
//! blocking client, fan-out), `on_bytes` for callers that hold raw input
//! (ferry-bench's pre-encoded fast path).

use super::auth::{self, Key, NONCE_LEN};
use super::frame::{encode_frame, parse_header, peek_header, FrameError, Header};
use super::digest::Digest;
use super::msg::{self, ErrorCode, ProtoError, Reply, PROTO_VERSION};
use serde_json::Value;

/// What the caller does next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Write these bytes (one whole frame), then keep feeding.
    Send(Vec<u8>),
    /// `on_bytes` holds no whole frame yet: read more.
    NeedMore,
    /// Both sides proved they know the key; requests may follow.
    Done(Established),
    /// The handshake failed; close the connection.
    Failed(Error),
}

/// What the handshake learnt about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The `server` string of `hello` ("?" when absent).
    pub server: String,
    /// The digests `hello` announced; None from an older server, which
    /// announces none and computes `sha256` only.
    pub digests: Option<Vec<Digest>>,
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The server sent an error frame (`auth-failed`, `too-many-connections`, ...).
    Refused(ProtoError),
    /// `welcome` carried a MAC that is not ours: the server does not know the key.
    BadServerMac,
    /// `hello` without 64 lowercase hex digits of nonce.
    BadNonce,
    /// `hello` for a protocol version other than 1 (the `proto` field as sent).
    Version(Option<Value>),
    /// A frame other than the one the handshake expects (its `type`).
    Unexpected { expected: &'static str, got: String },
    /// Bytes that are not a frame (`on_bytes` only).
    Frame(FrameError),
}

impl Error {
    /// True when the server refused the key itself (`auth-failed`).
    pub fn is_auth_failed(&self) -> bool {
        matches!(self, Error::Refused(e) if e.code == ErrorCode::AuthFailed)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Refused(e) => write!(f, "{e}"),
            Error::BadServerMac => write!(f, "the server could not prove it knows the key"),
            Error::BadNonce => write!(f, "hello without a valid nonce"),
            Error::Version(v) => write!(f, "server speaks protocol {v:?}, not {PROTO_VERSION}"),
            Error::Unexpected { expected, got } => write!(f, "expected {expected}, got {got:?}"),
            Error::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Debug)]
enum State {
    AwaitHello,
    AwaitWelcome { server_nonce: String, server: String, digests: Option<Vec<Digest>> },
    Over,
}

/// One client handshake.
#[derive(Debug)]
pub struct Handshake {
    key_id: String,
    secret: Vec<u8>,
    /// Our nonce as hex, fixed at construction.
    client_nonce: String,
    state: State,
}

impl Handshake {
    /// A handshake proving `key`, with `client_nonce` fresh from
    /// `auth::fresh_nonce()` (or fixed, in tests).
    pub fn new(key: &Key, client_nonce: [u8; NONCE_LEN]) -> Handshake {
        Handshake {
            key_id: key.id.clone(),
            secret: key.secret.as_bytes().to_vec(),
            client_nonce: auth::to_hex(&client_nonce),
            state: State::AwaitHello,
        }
    }

    /// True once `Done` or `Failed` has been returned.
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }

    /// Feeds one decoded server frame. Handshake frames carry no body, so the
    /// body (if any) is not looked at. Never returns `NeedMore`.
    pub fn on_frame(&mut self, h: &Header, _body: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Over);
        let reply = Reply::from_header(h);
        if let Reply::Error(e) = reply {
            return Step::Failed(Error::Refused(e));
        }
        match state {
            State::AwaitHello => {
                let server_nonce = match reply {
                    Reply::Hello { nonce } if auth::is_nonce_hex(&nonce) => nonce,
                    Reply::Hello { .. } => return Step::Failed(Error::BadNonce),
                    _ => return Step::Failed(unexpected("hello", h)),
                };
                if h.fields.get("proto").and_then(Value::as_u64) != Some(PROTO_VERSION) {
                    return Step::Failed(Error::Version(h.fields.get("proto").cloned()));
                }
                let mac = auth::client_mac(&self.secret, &server_nonce, &self.client_nonce);
                let mut out = Vec::with_capacity(256);
                encode_frame(&mut out, msg::auth(&self.key_id, &self.client_nonce, &mac), &[]);
                let server = h.str("server").unwrap_or("?").to_string();
                let digests = h.fields.get("digests").and_then(Value::as_array).map(|v| Digest::announced(Some(v)));
                self.state = State::AwaitWelcome { server_nonce, server, digests };
                Step::Send(out)
            }
            State::AwaitWelcome { server_nonce, server, digests } => match reply {
                Reply::Welcome { mac } if auth::verify_server_mac(&self.secret, &self.client_nonce, &server_nonce, &mac) => {
                    Step::Done(Established { server, digests })
                }
                Reply::Welcome { .. } => Step::Failed(Error::BadServerMac),
                _ => Step::Failed(unexpected("welcome", h)),
            },
            State::Over => Step::Failed(unexpected("nothing", h)),
        }
    }

    /// Feeds raw input. Takes at most one whole frame (header and body) from
    /// the front of `input`; the count of bytes taken, and the step.
    pub fn on_bytes(&mut self, input: &[u8]) -> (Step, usize) {
        let (head, start) = match peek_header(input) {
            Ok(Some(split)) => split,
            Ok(None) => return (Step::NeedMore, 0),
            Err(e) => return self.fail(Error::Frame(e)),
        };
        let h = match parse_header(head) {
            Ok(h) => h,
            Err(e) => return self.fail(Error::Frame(e)),
        };
        let end = start.saturating_add(h.size.min(usize::MAX as u64) as usize);
        let Some(body) = input.get(start..end) else { return (Step::NeedMore, 0) };
        (self.on_frame(&h, body), end)
    }

    fn fail(&mut self, e: Error) -> (Step, usize) {
        self.state = State::Over;
        (Step::Failed(e), 0)
    }
}

fn unexpected(expected: &'static str, h: &Header) -> Error {
    Error::Unexpected { expected, got: h.kind.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The known-answer vectors of `auth`'s tests (computed with Python's hmac).
    const SN: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const CN: &str = "00000000000000000000000000000000000000000000000000000000000000ff";
    const CLIENT_MAC: &str = "0f12706b334984caae2f71df36b5d8a37bb9b73a6ba88971336742449287adb9";
    const SERVER_MAC: &str = "fca13931254b89d55db0492cbc177d8e9fa8a58466cb3e683c2ad3a9eb793201";

    fn key() -> Key {
        Key { id: "k1".into(), secret: "correct horse battery".into() }
    }

    fn client_nonce() -> [u8; NONCE_LEN] {
        let mut n = [0; NONCE_LEN];
        n[NONCE_LEN - 1] = 0xff;
        n
    }

    fn raw(header: &str) -> Vec<u8> {
        let mut v = (header.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v
    }

    fn hello() -> Vec<u8> {
        raw(&format!(r#"{{"type":"hello","proto":1,"server":"ferryd/0.1","auth":["hmac-sha256"],"nonce":"{SN}"}}"#))
    }

    fn auth_frame() -> Vec<u8> {
        // serde_json sorts keys, so the frame is this exact byte string.
        raw(&format!(r#"{{"key_id":"k1","mac":"{CLIENT_MAC}","nonce":"{CN}","type":"auth"}}"#))
    }

    fn header(bytes: &[u8]) -> Header {
        parse_header(&bytes[4..]).unwrap()
    }

    #[test]
    fn happy_path_sends_the_known_auth_frame_and_checks_the_known_welcome() {
        let mut hs = Handshake::new(&key(), client_nonce());
        assert_eq!(hs.on_frame(&header(&hello()), &[]), Step::Send(auth_frame()));
        let welcome = raw(&format!(r#"{{"type":"welcome","mac":"{SERVER_MAC}"}}"#));
        assert_eq!(hs.on_frame(&header(&welcome), &[]), Step::Done(Established { server: "ferryd/0.1".into(), digests: None }));
        assert!(hs.is_over());
    }

    #[test]
    fn bytes_split_anywhere_mean_need_more_never_an_error() {
        let mut input = hello();
        input.extend_from_slice(&raw(&format!(r#"{{"type":"welcome","mac":"{SERVER_MAC}"}}"#)));
        let first = hello().len();
        for cut in 0..first {
            let mut hs = Handshake::new(&key(), client_nonce());
            assert_eq!(hs.on_bytes(&input[..cut]), (Step::NeedMore, 0), "cut at {cut}");
        }
        let mut hs = Handshake::new(&key(), client_nonce());
        assert_eq!(hs.on_bytes(&input), (Step::Send(auth_frame()), first));
        for cut in first..input.len() {
            assert_eq!(hs.on_bytes(&input[first..cut]), (Step::NeedMore, 0));
        }
        let (step, used) = hs.on_bytes(&input[first..]);
        assert_eq!((step, used), (Step::Done(Established { server: "ferryd/0.1".into(), digests: None }), input.len() - first));
    }

    #[test]
    fn a_wrong_server_mac_fails() {
        let mut hs = Handshake::new(&key(), client_nonce());
        hs.on_bytes(&hello());
        // The client's MAC is a valid MAC, but for the other transcript.
        let welcome = raw(&format!(r#"{{"type":"welcome","mac":"{CLIENT_MAC}"}}"#));
        assert_eq!(hs.on_bytes(&welcome).0, Step::Failed(Error::BadServerMac));
        let mut hs = Handshake::new(&Key { id: "k1".into(), secret: "another secret value".into() }, client_nonce());
        hs.on_bytes(&hello());
        let welcome = raw(&format!(r#"{{"type":"welcome","mac":"{SERVER_MAC}"}}"#));
        assert_eq!(hs.on_bytes(&welcome).0, Step::Failed(Error::BadServerMac));
        let welcome = raw(r#"{"type":"welcome"}"#);
        let mut hs = Handshake::new(&key(), client_nonce());
        hs.on_bytes(&hello());
        assert_eq!(hs.on_bytes(&welcome).0, Step::Failed(Error::BadServerMac));
    }

    #[test]
    fn an_error_frame_at_either_step_carries_the_servers_code() {
        let refused = raw(r#"{"type":"error","code":"auth-failed","message":"no such key"}"#);
        let mut hs = Handshake::new(&key(), client_nonce());
        hs.on_bytes(&hello());
        let (step, used) = hs.on_bytes(&refused);
        assert_eq!(used, refused.len());
        let Step::Failed(e) = step else { panic!("{step:?}") };
        assert!(e.is_auth_failed());
        assert_eq!(e, Error::Refused(ProtoError::new(ErrorCode::AuthFailed, "no such key")));
        assert_eq!(e.to_string(), "auth-failed: no such key");

        let busy = raw(r#"{"type":"error","code":"too-many-connections","message":"limit 2"}"#);
        let mut hs = Handshake::new(&key(), client_nonce());
        let Step::Failed(e) = hs.on_bytes(&busy).0 else { panic!() };
        assert_eq!(e, Error::Refused(ProtoError::new(ErrorCode::TooManyConnections, "limit 2")));
        assert!(!e.is_auth_failed());
    }

    #[test]
    fn a_bad_hello_fails_with_what_is_wrong() {
        let cases = [
            (raw(r#"{"type":"hello","proto":1,"nonce":"ABC"}"#), Error::BadNonce),
            (raw(&format!(r#"{{"type":"hello","proto":2,"nonce":"{SN}"}}"#)), Error::Version(Some(json!(2)))),
            (raw(&format!(r#"{{"type":"hello","nonce":"{SN}"}}"#)), Error::Version(None)),
            (raw(r#"{"type":"pong"}"#), Error::Unexpected { expected: "hello", got: "pong".into() }),
            (vec![0, 0, 0, 0], Error::Frame(FrameError::EmptyHeader)),
            (raw("[1]"), Error::Frame(FrameError::NotObject)),
        ];
        for (bytes, want) in cases {
            let mut hs = Handshake::new(&key(), client_nonce());
            assert_eq!(hs.on_bytes(&bytes).0, Step::Failed(want));
            assert!(hs.is_over());
        }
        assert_eq!(Error::Version(Some(json!(2))).to_string(), "server speaks protocol Some(Number(2)), not 1");
        let e = Error::Unexpected { expected: "welcome", got: "pong".into() };
        assert_eq!(e.to_string(), r#"expected welcome, got "pong""#);
    }

    #[test]
    fn a_second_hello_is_not_a_welcome() {
        let mut hs = Handshake::new(&key(), client_nonce());
        hs.on_bytes(&hello());
        let want = Error::Unexpected { expected: "welcome", got: "hello".into() };
        assert_eq!(hs.on_bytes(&hello()).0, Step::Failed(want));
    }
}
