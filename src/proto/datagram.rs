//! The datagram codec: one UDP datagram carries one message.
//!
//! ```text
//! TAG (32 bytes) | u32 big-endian L | header (L bytes, a JSON object) | body
//! ```
//!
//! The body is exactly `header.size` bytes (absent = 0) and ends the datagram.
//! The tag authenticates everything after it:
//!
//! ```text
//! request TAG = HMAC-SHA256(key, "ferry-udp-request|" + everything after the tag)
//! reply   TAG = HMAC-SHA256(key, "ferry-udp-reply|"   + everything after the tag)
//! ```
//!
//! A request's header carries `type`, `key_id`, `nonce` (32 lowercase hex
//! digits: 16 random bytes, fresh per request) and `ts` (the sender's Unix
//! time, integer seconds); a reply's header echoes the request's `nonce` (and
//! `id`). Anything else is malformed: too short, bytes after the body, `L`
//! past the end, a header that is not a JSON object, a missing or invalid
//! field. Tags are compared in constant time.
//!
//! Pure, like the rest of `proto`: byte slices in, byte vectors out, no
//! sockets and no clock (callers pass `ts`); `fresh_udp_nonce` asks the OS for
//! random bytes.
//!
//! For a client: build a header with `request::{ping, stat, exec}`, send
//! `encode_request(..)`, retransmit the same bytes, and read the answer with
//! `decode_reply(..)`, checking `nonce` with `Reply::answers`; an exec's
//! `result` splits into its two streams with `ExecResult::from_reply`.

use super::auth::{from_hex, to_hex};
use super::frame::{parse_header, FrameError, Header};
use super::msg::{self, ProtoError};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the tag at the front of every datagram.
pub const TAG_LEN: usize = 32;
/// The tag and the length field: the smallest datagram is this plus a header.
pub const OVERHEAD: usize = TAG_LEN + 4;
/// The largest UDP payload over IPv4; no datagram of the protocol is longer.
pub const MAX_DATAGRAM: usize = 65507;
/// Random bytes in a request nonce (sent as twice as many hex digits).
pub const NONCE_BYTES: usize = 16;
/// The MAC labels of the two directions.
pub const REQUEST_LABEL: &str = "ferry-udp-request|";
pub const REPLY_LABEL: &str = "ferry-udp-reply|";

/// Which way a datagram goes, which decides its tag's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Reply,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Direction::Request => REQUEST_LABEL.as_bytes(),
            Direction::Reply => REPLY_LABEL.as_bytes(),
        }
    }
}

/// Why bytes are not a datagram of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer bytes than a tag, a length and a one-byte header.
    Short,
    /// More than `MAX_DATAGRAM` bytes.
    TooLong,
    /// `L` is 0 or runs past the end of the datagram.
    BadLength(u32),
    /// The header is not a JSON object with a string `type` and a valid `size`.
    Header(FrameError),
    /// A field the protocol requires is missing or invalid.
    Field(&'static str),
    /// The body is shorter than `size`.
    ShortBody,
    /// Bytes after the body.
    Trailing,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Short => write!(f, "shorter than a tag, a length and a header"),
            Malformed::TooLong => write!(f, "longer than {MAX_DATAGRAM} bytes"),
            Malformed::BadLength(l) => write!(f, "header length {l} does not fit the datagram"),
            Malformed::Header(e) => write!(f, "{e}"),
            Malformed::Field(name) => write!(f, "missing or invalid {name:?}"),
            Malformed::ShortBody => write!(f, "body shorter than its size"),
            Malformed::Trailing => write!(f, "bytes after the body"),
        }
    }
}

/// Why a datagram was not accepted. None of these gets an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatagramError {
    Malformed(Malformed),
    /// A well-formed request for a key id the receiver does not hold.
    UnknownKey,
    /// The tag is not the one the key gives.
    BadTag,
}

impl From<Malformed> for DatagramError {
    fn from(m: Malformed) -> Self {
        DatagramError::Malformed(m)
    }
}

impl std::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatagramError::Malformed(m) => write!(f, "malformed datagram: {m}"),
            DatagramError::UnknownKey => write!(f, "unknown key id"),
            DatagramError::BadTag => write!(f, "wrong tag"),
        }
    }
}

impl std::error::Error for DatagramError {}

/// A datagram whose structure is valid; its tag is not checked yet.
#[derive(Debug, Clone)]
pub struct Datagram<'a> {
    tag: &'a [u8],
    /// Everything after the tag: what the tag covers.
    signed: &'a [u8],
    pub header: Header,
    pub body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Checks the framing: the tag, `L`, a JSON object header with a string
    /// `type` and a valid `size`, and a body of exactly `size` bytes to the end.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, Malformed> {
        let (head, body) = split(bytes)?;
        let (tag, signed) = bytes.split_at(TAG_LEN);
        let header = parse_header(head).map_err(Malformed::Header)?;
        match header.size.cmp(&(body.len() as u64)) {
            std::cmp::Ordering::Greater => return Err(Malformed::ShortBody),
            std::cmp::Ordering::Less => return Err(Malformed::Trailing),
            std::cmp::Ordering::Equal => {}
        }
        Ok(Datagram { tag, signed, header, body })
    }

    /// True when the tag is `secret`'s for this direction (constant time).
    pub fn verify(&self, dir: Direction, secret: &[u8]) -> bool {
        Tagger::new(dir, secret).over(self.signed).verify_slice(self.tag).is_ok()
    }
}

/// A datagram's header and body, cut where its `L` says: the framing checks
/// of `Datagram::parse` (size, `L`) without reading the header or the tag.
/// For a reader that checks the tag with a `Tagger` and reads the header its
/// own way; the body runs to the end, whatever the header's `size` says.
pub fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), Malformed> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(Malformed::TooLong);
    }
    if bytes.len() < OVERHEAD + 1 {
        return Err(Malformed::Short);
    }
    let len = u32::from_be_bytes(bytes[TAG_LEN..OVERHEAD].try_into().expect("four bytes"));
    let rest = &bytes[OVERHEAD..];
    if len == 0 || len as usize > rest.len() {
        return Err(Malformed::BadLength(len));
    }
    Ok(rest.split_at(len as usize))
}

/// The tag of one direction under one key, keyed once: a sender or reader of
/// many datagrams clones the keyed state instead of keying HMAC each time.
#[derive(Clone)]
pub struct Tagger(HmacSha256);

impl Tagger {
    pub fn new(dir: Direction, secret: &[u8]) -> Tagger {
        let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        m.update(dir.label());
        Tagger(m)
    }

    fn over(&self, signed: &[u8]) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(signed);
        m
    }

    /// The tag of `signed` (everything after the tag).
    pub fn tag(&self, signed: &[u8]) -> [u8; TAG_LEN] {
        self.over(signed).finalize().into_bytes().into()
    }

    /// Writes the tag of `datagram[TAG_LEN..]` into `datagram[..TAG_LEN]`.
    pub fn seal(&self, datagram: &mut [u8]) {
        let t = self.tag(&datagram[TAG_LEN..]);
        datagram[..TAG_LEN].copy_from_slice(&t);
    }

    /// True when `datagram` starts with the tag of the rest (constant time);
    /// false for anything shorter than a tag.
    pub fn check(&self, datagram: &[u8]) -> bool {
        datagram.len() >= TAG_LEN && self.over(&datagram[TAG_LEN..]).verify_slice(&datagram[..TAG_LEN]).is_ok()
    }
}

/// The tag of `signed` (everything after the tag) for `dir`.
pub fn tag(dir: Direction, secret: &[u8], signed: &[u8]) -> [u8; TAG_LEN] {
    Tagger::new(dir, secret).tag(signed)
}

/// Ping requests for one key, written into a reused buffer without building
/// a map: the bytes `encode_request(key_id, secret, request::ping(..), b"")`
/// gives (serde_json writes a map's keys in order). For a load generator.
pub struct PingEncoder {
    tagger: Tagger,
    key_id_json: String,
}

impl PingEncoder {
    pub fn new(key_id: &str, secret: &[u8]) -> PingEncoder {
        PingEncoder {
            tagger: Tagger::new(Direction::Request, secret),
            key_id_json: serde_json::to_string(key_id).expect("a string serializes"),
        }
    }

    /// Replaces `out` with the ping for `nonce` (as `to_hex` writes it) and `ts`.
    pub fn encode(&self, out: &mut Vec<u8>, nonce: &[u8; NONCE_BYTES], ts: i64) {
        use std::io::Write as _;
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        out.clear();
        out.resize(OVERHEAD, 0);
        out.extend_from_slice(br#"{"key_id":"#);
        out.extend_from_slice(self.key_id_json.as_bytes());
        out.extend_from_slice(br#","nonce":""#);
        for b in nonce {
            out.extend_from_slice(&[DIGITS[(b >> 4) as usize], DIGITS[(b & 15) as usize]]);
        }
        write!(out, r#"","ts":{ts},"type":"ping"}}"#).expect("writing to a Vec");
        let len = (out.len() - OVERHEAD) as u32;
        out[TAG_LEN..OVERHEAD].copy_from_slice(&len.to_be_bytes());
        self.tagger.seal(out);
    }
}

/// True for a nonce as the protocol writes it: 32 lowercase hex digits.
pub fn is_udp_nonce(s: &str) -> bool {
    s.len() == NONCE_BYTES * 2 && from_hex(s).is_some()
}

/// 16 fresh random bytes as 32 lowercase hex digits: a request's nonce.
pub fn fresh_udp_nonce() -> String {
    let mut n = [0u8; NONCE_BYTES];
    getrandom::getrandom(&mut n).expect("the OS random source failed");
    to_hex(&n)
}

/// The nonce's 16 bytes. `nonce` must satisfy `is_udp_nonce`.
pub fn nonce_bytes(nonce: &str) -> [u8; NONCE_BYTES] {
    let mut out = [0u8; NONCE_BYTES];
    out.copy_from_slice(&from_hex(nonce).expect("a checked nonce"));
    out
}

/// Tags and frames one datagram: `header` gets its `size` (or loses it for an
/// empty body), then the tag is computed over the rest.
fn encode(dir: Direction, secret: &[u8], header: Map<String, Value>, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; TAG_LEN];
    super::frame::encode_frame(&mut out, header, body);
    let t = tag(dir, secret, &out[TAG_LEN..]);
    out[..TAG_LEN].copy_from_slice(&t);
    out
}

/// A request datagram from a header made by `request::*` (with `type`,
/// `nonce`, `ts` and the request's fields): `key_id` and `size` are set here.
pub fn encode_request(key_id: &str, secret: &[u8], mut header: Map<String, Value>, body: &[u8]) -> Vec<u8> {
    header.insert("key_id".into(), json!(key_id));
    encode(Direction::Request, secret, header, body)
}

/// A reply datagram (`header` carries the request's `nonce`; see `reply::*`).
pub fn encode_reply(secret: &[u8], header: Map<String, Value>, body: &[u8]) -> Vec<u8> {
    encode(Direction::Reply, secret, header, body)
}

/// An authenticated request: its header (with `type` and `size` checked),
/// `key_id`, `nonce` and `ts` pulled out, and its body.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub key_id: String,
    pub nonce: String,
    pub ts: i64,
    pub header: Header,
    pub body: &'a [u8],
}

/// The fields every request carries, from a parsed datagram.
fn request_fields(header: &Header) -> Result<(String, String, i64), Malformed> {
    let key_id = match header.str("key_id") {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => return Err(Malformed::Field("key_id")),
    };
    let nonce = match header.str("nonce") {
        Some(n) if is_udp_nonce(n) => n.to_string(),
        _ => return Err(Malformed::Field("nonce")),
    };
    let ts = header.fields.get("ts").and_then(Value::as_i64).ok_or(Malformed::Field("ts"))?;
    Ok((key_id, nonce, ts))
}

/// A throwaway key: an unknown key id's tag is checked against it, so every
/// well-formed request costs one HMAC.
const NO_KEY: &[u8] = b"ferry-udp-no-such-key";

/// Reads a request: framing, fields, then the tag with the secret `secret_of`
/// gives for its `key_id` (None: unknown key id).
pub fn decode_request<'a, 'k>(
    bytes: &'a [u8],
    secret_of: impl FnOnce(&str) -> Option<&'k [u8]>,
) -> Result<Request<'a>, DatagramError> {
    let d = Datagram::parse(bytes)?;
    let (key_id, nonce, ts) = request_fields(&d.header)?;
    let secret = secret_of(&key_id);
    let ok = d.verify(Direction::Request, secret.unwrap_or(NO_KEY));
    match (secret, ok) {
        (None, _) => Err(DatagramError::UnknownKey),
        (Some(_), false) => Err(DatagramError::BadTag),
        (Some(_), true) => Ok(Request { key_id, nonce, ts, header: d.header, body: d.body }),
    }
}

/// An authenticated reply: its header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub header: Header,
    pub body: Vec<u8>,
}

impl Reply {
    /// True when this reply answers the request with `nonce`.
    pub fn answers(&self, nonce: &str) -> bool {
        self.header.str("nonce") == Some(nonce)
    }

    /// The reply as `msg::Reply` sees it (`Error` with its code, ...).
    pub fn kind(&self) -> msg::Reply {
        msg::Reply::from_header(&self.header)
    }
}

/// Reads a reply: framing, a `nonce` field, then the tag with `secret`.
pub fn decode_reply(secret: &[u8], bytes: &[u8]) -> Result<Reply, DatagramError> {
    let d = Datagram::parse(bytes)?;
    match d.header.str("nonce") {
        Some(n) if is_udp_nonce(n) => {}
        _ => return Err(Malformed::Field("nonce").into()),
    }
    if !d.verify(Direction::Reply, secret) {
        return Err(DatagramError::BadTag);
    }
    Ok(Reply { header: d.header, body: d.body.to_vec() })
}

/// Client-side request headers (`encode_request` adds `key_id` and `size`).
pub mod request {
    use super::*;

    fn base(mut m: Map<String, Value>, nonce: &str, ts: i64) -> Map<String, Value> {
        m.insert("nonce".into(), json!(nonce));
        m.insert("ts".into(), json!(ts));
        m
    }

    pub fn ping(nonce: &str, ts: i64) -> Map<String, Value> {
        base(msg::request::ping(), nonce, ts)
    }

    pub fn stat(path: &str, nonce: &str, ts: i64) -> Map<String, Value> {
        base(msg::request::stat(path), nonce, ts)
    }

    /// An exec: `cmd` or `argv`, `env`, `cwd`, `timeout` (`stdin` must be false:
    /// a datagram exec has no input).
    pub fn exec(req: &msg::Exec, nonce: &str, ts: i64) -> Map<String, Value> {
        base(msg::request::exec(req), nonce, ts)
    }
}

/// Server-side reply headers. Each carries the request's `nonce`, and its
/// `id` when it had one.
pub mod reply {
    use super::*;

    pub(super) fn base(kind: &str, nonce: &str, id: Option<&Value>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("nonce".into(), json!(nonce));
        if let Some(id) = id {
            m.insert("id".into(), id.clone());
        }
        m
    }

    /// `{"type":"pong","nonce":..,"ts":<server time>}`.
    pub fn pong(nonce: &str, server_ts: i64, id: Option<&Value>) -> Map<String, Value> {
        let mut m = base("pong", nonce, id);
        m.insert("ts".into(), json!(server_ts));
        m
    }

    /// A TCP reply header (a `stat`) with the nonce added.
    pub fn with_nonce(mut m: Map<String, Value>, nonce: &str) -> Map<String, Value> {
        m.insert("nonce".into(), json!(nonce));
        m
    }

    /// `{"type":"error","code":..,"message":..,"nonce":..}`.
    pub fn error(err: &ProtoError, nonce: &str, id: Option<&Value>) -> Map<String, Value> {
        with_nonce(msg::error(err, id), nonce)
    }

    /// `clock-skew`, with the server's time so the client can see how far off it is.
    pub fn clock_skew(err: &ProtoError, nonce: &str, server_ts: i64, id: Option<&Value>) -> Map<String, Value> {
        let mut m = error(err, nonce, id);
        m.insert("ts".into(), json!(server_ts));
        m
    }
}

/// How a command ended, and what it wrote (the prefixes the server kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutcome<'a> {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The first bytes of standard output (at least as many as fit a reply).
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    pub stdout_total: u64,
    pub stderr_total: u64,
}

/// Splits `budget` body bytes between the streams. Both whole if they fit;
/// otherwise each stream is owed half of the budget (stdout the odd byte) and
/// what one does not use goes to the other. Returns `(a, b)`.
pub fn split_budget(budget: usize, stdout_total: u64, stderr_total: u64) -> (usize, usize) {
    let a_total = usize::try_from(stdout_total).unwrap_or(usize::MAX);
    let b_total = usize::try_from(stderr_total).unwrap_or(usize::MAX);
    if a_total.saturating_add(b_total) <= budget {
        return (a_total, b_total);
    }
    let b_half = budget / 2;
    let a_half = budget - b_half;
    if a_total <= a_half {
        (a_total, budget - a_total)
    } else if b_total <= b_half {
        (budget - b_total, b_total)
    } else {
        (a_half, b_half)
    }
}

/// The `result` reply of an exec, at most `max_reply` bytes as long as its
/// fixed fields fit (a nonce, an `id` of a few dozen bytes: any `max_reply`
/// of 512 or more). The body is the first `a` bytes of stdout then the first
/// `b` bytes of stderr, split by `split_budget`; `truncated` when either was cut.
pub fn encode_result(secret: &[u8], max_reply: usize, nonce: &str, id: Option<&Value>, o: &ExecOutcome) -> Vec<u8> {
    let header = |a: usize, b: usize, truncated: bool| {
        let mut m = reply::base("result", nonce, id);
        m.insert("code".into(), json!(o.code));
        m.insert("signal".into(), json!(o.signal));
        m.insert("stdout".into(), json!(a));
        m.insert("stderr".into(), json!(b));
        m.insert("stdout_total".into(), json!(o.stdout_total));
        m.insert("stderr_total".into(), json!(o.stderr_total));
        m.insert("truncated".into(), json!(truncated));
        if o.timed_out {
            m.insert("timed_out".into(), json!(true));
        }
        m
    };
    // The header's length is bounded with every count at its largest
    // (`max_reply` has at least as many digits as any of them) and `false`.
    let mut upper = header(max_reply, max_reply, false);
    upper.insert("size".into(), json!(max_reply));
    let upper_len = serde_json::to_vec(&upper).map_or(0, |v| v.len());
    let budget = max_reply.saturating_sub(OVERHEAD + upper_len);
    let (a, b) = split_budget(budget, o.stdout_total, o.stderr_total);
    let (a, b) = (a.min(o.stdout.len()), b.min(o.stderr.len()));
    let truncated = (a as u64) < o.stdout_total || (b as u64) < o.stderr_total;
    let mut body = Vec::with_capacity(a + b);
    body.extend_from_slice(&o.stdout[..a]);
    body.extend_from_slice(&o.stderr[..b]);
    encode_reply(secret, header(a, b, truncated), &body)
}

/// An exec's `result` as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_total: u64,
    pub stderr_total: u64,
    pub truncated: bool,
    pub timed_out: bool,
}

impl ExecResult {
    /// Reads a `result` reply; None when it is another type or its counts do
    /// not add up to its body.
    pub fn from_reply(r: &Reply) -> Option<ExecResult> {
        let h = &r.header;
        if h.kind != "result" {
            return None;
        }
        let num = |k: &str| h.fields.get(k).and_then(Value::as_u64);
        let opt_int = |k: &str| match h.fields.get(k) {
            Some(Value::Null) | None => Some(None),
            Some(v) => v.as_i64().and_then(|n| i32::try_from(n).ok()).map(Some),
        };
        let a = usize::try_from(num("stdout")?).ok()?;
        let b = usize::try_from(num("stderr")?).ok()?;
        if a.checked_add(b)? != r.body.len() {
            return None;
        }
        Some(ExecResult {
            code: opt_int("code")?,
            signal: opt_int("signal")?,
            stdout: r.body[..a].to_vec(),
            stderr: r.body[a..].to_vec(),
            stdout_total: num("stdout_total")?,
            stderr_total: num("stderr_total")?,
            truncated: h.fields.get("truncated").and_then(Value::as_bool)?,
            timed_out: h.fields.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::{Command, ErrorCode};
    use proptest::prelude::*;

    const SECRET: &[u8] = b"a-test-secret-of-some-length";
    const NONCE: &str = "000102030405060708090a0b0c0d0e0f";

    fn keys(id: &str) -> Option<&'static [u8]> {
        (id == "k").then_some(SECRET)
    }

    fn ping() -> Vec<u8> {
        encode_request("k", SECRET, request::ping(NONCE, 1_700_000_000), b"")
    }

    #[test]
    fn a_request_round_trips() {
        let bytes = ping();
        let r = decode_request(&bytes, keys).unwrap();
        assert_eq!((r.key_id.as_str(), r.nonce.as_str(), r.ts), ("k", NONCE, 1_700_000_000));
        assert_eq!(r.header.kind, "ping");
        assert!(r.body.is_empty());

        let exec = msg::Exec {
            command: Command::Argv(vec!["echo".into(), "hi".into()]),
            env: [("A".to_string(), "1".to_string())].into(),
            cwd: Some("sub".into()),
            stdin: false,
            timeout: Some(2.5),
            pty: None,
        };
        let bytes = encode_request("k", SECRET, request::exec(&exec, NONCE, -5), b"xyz");
        let r = decode_request(&bytes, keys).unwrap();
        assert_eq!(r.ts, -5);
        assert_eq!(r.body, b"xyz");
        assert_eq!(msg::Request::from_header(&r.header), Ok(msg::Request::Exec(exec)));
    }

    #[test]
    fn the_tag_is_hmac_over_the_label_and_everything_after_it() {
        // Computed independently with Python:
        //   body = struct.pack(">I", len(h)) + h  where h = b'{"key_id":"k","nonce":"0001..0f","ts":1700000000,"type":"ping"}'
        //   hmac.new(SECRET, b"ferry-udp-request|" + body, "sha256").hexdigest()
        let bytes = ping();
        let head = br#"{"key_id":"k","nonce":"000102030405060708090a0b0c0d0e0f","ts":1700000000,"type":"ping"}"#;
        assert_eq!(&bytes[TAG_LEN..TAG_LEN + 4], &(head.len() as u32).to_be_bytes());
        assert_eq!(&bytes[OVERHEAD..], head);
        assert_eq!(to_hex(&bytes[..TAG_LEN]), "8ce3722ae70b0830a52eef53607cb6a75b41c4571564c3143f568c2b767e4b02");
        let mut m = HmacSha256::new_from_slice(SECRET).unwrap();
        m.update(b"ferry-udp-request|");
        m.update(&bytes[TAG_LEN..]);
        assert_eq!(&bytes[..TAG_LEN], &m.finalize().into_bytes()[..]);
    }

    #[test]
    fn the_tagger_seals_and_checks_what_the_codec_makes() {
        let bytes = ping();
        let request = Tagger::new(Direction::Request, SECRET);
        assert!(request.check(&bytes));
        assert_eq!(request.tag(&bytes[TAG_LEN..]), tag(Direction::Request, SECRET, &bytes[TAG_LEN..]));
        let mut resealed = bytes.clone();
        resealed[..TAG_LEN].fill(0);
        request.seal(&mut resealed);
        assert_eq!(resealed, bytes);
        assert!(!Tagger::new(Direction::Reply, SECRET).check(&bytes));
        assert!(!Tagger::new(Direction::Request, b"another key").check(&bytes));
        assert!(!request.check(&bytes[..TAG_LEN - 1]));
        let mut bad = bytes.clone();
        bad[TAG_LEN + 5] ^= 1;
        assert!(!request.check(&bad));
    }

    #[test]
    fn the_ping_encoder_writes_the_codecs_bytes() {
        let nonce: [u8; NONCE_BYTES] = core::array::from_fn(|i| i as u8);
        let enc = PingEncoder::new("k", SECRET);
        let mut out = b"left over".to_vec();
        enc.encode(&mut out, &nonce, 1_700_000_000);
        assert_eq!(out, ping());
        for (id, ts) in [("a \"quoted\" id é", -5), ("k", 0), ("k", i64::MAX)] {
            let nonce = [0xab; NONCE_BYTES];
            PingEncoder::new(id, SECRET).encode(&mut out, &nonce, ts);
            assert_eq!(out, encode_request(id, SECRET, request::ping(&to_hex(&nonce), ts), b""), "{id} {ts}");
        }
    }

    #[test]
    fn split_cuts_at_l_and_checks_only_the_framing() {
        let bytes = ping();
        let (head, body) = split(&bytes).unwrap();
        assert_eq!((head, body), (&bytes[OVERHEAD..], &b""[..]));
        let with_body = raw(b"{not json", b"xyz", Some(9));
        assert_eq!(split(&with_body).unwrap(), (&b"{not json"[..], &b"xyz"[..]));
        assert_eq!(split(&bytes[..OVERHEAD]), Err(Malformed::Short));
        assert_eq!(split(&raw(b"{}", b"", Some(3))), Err(Malformed::BadLength(3)));
        assert_eq!(split(&raw(b"{}", b"", Some(0))), Err(Malformed::BadLength(0)));
        assert_eq!(split(&vec![0; MAX_DATAGRAM + 1]), Err(Malformed::TooLong));
    }

    #[test]
    fn the_protocol_pages_worked_example() {
        let header = br#"{"type":"ping","key_id":"example","nonce":"000102030405060708090a0b0c0d0e0f","ts":1700000000}"#;
        assert_eq!(header.len(), 93);
        let mut signed = 93u32.to_be_bytes().to_vec();
        signed.extend_from_slice(header);
        let secret = b"example-secret-do-not-use";
        let t = tag(Direction::Request, secret, &signed);
        assert_eq!(to_hex(&t), "c382c45fe82b32beff5267f787a60ad97a30e34873224ee661164e0a8472a0ac");
        let bytes = [&t[..], &signed].concat();
        assert_eq!(bytes.len(), 129);
        let r = decode_request(&bytes, |id| (id == "example").then_some(&secret[..])).unwrap();
        assert_eq!((r.header.kind.as_str(), r.ts), ("ping", 1_700_000_000));
    }

    #[test]
    fn unknown_keys_and_wrong_tags_are_told_apart_but_both_refused() {
        let bytes = encode_request("nobody", SECRET, request::ping(NONCE, 0), b"");
        assert_eq!(decode_request(&bytes, keys).unwrap_err(), DatagramError::UnknownKey);
        let mut bytes = ping();
        bytes[3] ^= 1;
        assert_eq!(decode_request(&bytes, keys).unwrap_err(), DatagramError::BadTag);
        let bytes = encode_request("k", b"another secret entirely", request::ping(NONCE, 0), b"");
        assert_eq!(decode_request(&bytes, keys).unwrap_err(), DatagramError::BadTag);
    }

    #[test]
    fn a_request_tag_is_not_a_reply_tag() {
        let bytes = ping();
        assert_eq!(decode_reply(SECRET, &bytes).unwrap_err(), DatagramError::BadTag);
        let reply = encode_reply(SECRET, request::ping(NONCE, 0), b"");
        let with_key = {
            let mut h = request::ping(NONCE, 0);
            h.insert("key_id".into(), json!("k"));
            encode_reply(SECRET, h, b"")
        };
        assert!(decode_reply(SECRET, &reply).is_ok());
        assert_eq!(decode_request(&with_key, keys).unwrap_err(), DatagramError::BadTag);
    }

    #[test]
    fn a_reply_round_trips_and_a_broken_tag_is_refused() {
        let bytes = encode_reply(SECRET, reply::pong(NONCE, 42, Some(&json!(7))), b"");
        let r = decode_reply(SECRET, &bytes).unwrap();
        assert!(r.answers(NONCE));
        assert!(!r.answers("ffffffffffffffffffffffffffffffff"));
        assert_eq!(r.kind(), msg::Reply::Pong);
        assert_eq!(r.header.id, Some(json!(7)));
        assert_eq!(r.header.fields["ts"], 42);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_reply(SECRET, &bad).is_err(), "flipped byte {i}");
        }
        assert_eq!(decode_reply(b"wrong key", &bytes).unwrap_err(), DatagramError::BadTag);
        let e = ProtoError::new(ErrorCode::Busy, "all busy");
        let r = decode_reply(SECRET, &encode_reply(SECRET, reply::error(&e, NONCE, None), b"")).unwrap();
        assert_eq!(r.kind(), msg::Reply::Error(e));
    }

    /// A datagram with a hand-written header and a valid tag.
    fn raw(header: &[u8], body: &[u8], len: Option<u32>) -> Vec<u8> {
        let mut signed = len.unwrap_or(header.len() as u32).to_be_bytes().to_vec();
        signed.extend_from_slice(header);
        signed.extend_from_slice(body);
        let mut out = tag(Direction::Request, SECRET, &signed).to_vec();
        out.extend(signed);
        out
    }

    #[test]
    fn every_malformation_is_named() {
        let good = format!(r#"{{"type":"ping","key_id":"k","nonce":"{NONCE}","ts":1}}"#);
        assert!(decode_request(&raw(good.as_bytes(), b"", None), keys).is_ok());
        let with = |extra: &str| format!(r#"{{"type":"ping","key_id":"k","nonce":"{NONCE}","ts":1{extra}}}"#);
        let m = |e| DatagramError::Malformed(e);
        let cases: Vec<(Vec<u8>, DatagramError)> = vec![
            (vec![], m(Malformed::Short)),
            (vec![0; OVERHEAD], m(Malformed::Short)),
            (vec![0; MAX_DATAGRAM + 1], m(Malformed::TooLong)),
            (raw(good.as_bytes(), b"", Some(0)), m(Malformed::BadLength(0))),
            (raw(good.as_bytes(), b"", Some(good.len() as u32 + 1)), m(Malformed::BadLength(good.len() as u32 + 1))),
            (raw(good.as_bytes(), b"", Some(u32::MAX)), m(Malformed::BadLength(u32::MAX))),
            (raw(good.as_bytes(), b"x", None), m(Malformed::Trailing)),
            (raw(with(r#","size":2"#).as_bytes(), b"x", None), m(Malformed::ShortBody)),
            (raw(with(r#","size":-1"#).as_bytes(), b"", None), m(Malformed::Header(FrameError::BadSize))),
            (raw(b"[1]", b"", None), m(Malformed::Header(FrameError::NotObject))),
            (raw(br#"{"key_id":"k"}"#, b"", None), m(Malformed::Header(FrameError::NoType))),
            (raw(&good.as_bytes()[1..], b"", None), m(Malformed::Header(FrameError::NotJson(String::new())))),
            (raw(good.replace(r#""key_id":"k""#, r#""key_id":"""#).as_bytes(), b"", None), m(Malformed::Field("key_id"))),
            (raw(good.replace(r#""key_id":"k""#, r#""key_id":3"#).as_bytes(), b"", None), m(Malformed::Field("key_id"))),
            (raw(good.replace(NONCE, &NONCE.to_uppercase().replace('0', "A")).as_bytes(), b"", None), m(Malformed::Field("nonce"))),
            (raw(good.replace(NONCE, &NONCE[2..]).as_bytes(), b"", None), m(Malformed::Field("nonce"))),
            (raw(good.replace(NONCE, &"ab".repeat(32)).as_bytes(), b"", None), m(Malformed::Field("nonce"))),
            (raw(good.replace(r#""ts":1"#, r#""ts":1.5"#).as_bytes(), b"", None), m(Malformed::Field("ts"))),
            (raw(good.replace(r#""ts":1"#, r#""ts":"1""#).as_bytes(), b"", None), m(Malformed::Field("ts"))),
            (raw(good.replace(r#","ts":1"#, "").as_bytes(), b"", None), m(Malformed::Field("ts"))),
        ];
        for (bytes, want) in cases {
            let got = decode_request(&bytes, keys).unwrap_err();
            match (&want, &got) {
                (
                    DatagramError::Malformed(Malformed::Header(FrameError::NotJson(_))),
                    DatagramError::Malformed(Malformed::Header(FrameError::NotJson(_))),
                ) => {}
                _ => assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&bytes[TAG_LEN.min(bytes.len())..])),
            }
        }
        // A reply needs a nonce too.
        let no_nonce = encode_reply(SECRET, msg::pong(None), b"");
        assert_eq!(decode_reply(SECRET, &no_nonce).unwrap_err(), m(Malformed::Field("nonce")));
    }

    #[test]
    fn fresh_nonces_are_32_lowercase_hex_digits() {
        let (a, b) = (fresh_udp_nonce(), fresh_udp_nonce());
        assert!(is_udp_nonce(&a) && is_udp_nonce(&b));
        assert_ne!(a, b);
        assert_eq!(nonce_bytes(NONCE)[15], 15);
    }

    #[test]
    fn the_budget_split_shares_what_one_stream_leaves() {
        assert_eq!(split_budget(100, 30, 40), (30, 40));
        assert_eq!(split_budget(100, 1000, 10), (90, 10));
        assert_eq!(split_budget(100, 10, 1000), (10, 90));
        assert_eq!(split_budget(100, 1000, 1000), (50, 50));
        assert_eq!(split_budget(101, 1000, 1000), (51, 50));
        assert_eq!(split_budget(100, 60, 60), (50, 50));
        assert_eq!(split_budget(0, 5, 5), (0, 0));
        assert_eq!(split_budget(100, u64::MAX, 0), (100, 0));
    }

    fn outcome<'a>(out: &'a [u8], err: &'a [u8], out_total: u64, err_total: u64) -> ExecOutcome<'a> {
        ExecOutcome {
            code: Some(0),
            signal: None,
            timed_out: false,
            stdout: out,
            stderr: err,
            stdout_total: out_total,
            stderr_total: err_total,
        }
    }

    #[test]
    fn a_result_fits_max_reply_and_reads_back() {
        let big = vec![b'o'; 5000];
        let errs = vec![b'e'; 5000];
        for max in [512, 1400, 9000, MAX_DATAGRAM] {
            let o = outcome(&big, &errs, 588_895, 5000);
            let bytes = encode_result(SECRET, max, NONCE, Some(&json!("req-1")), &o);
            assert!(bytes.len() <= max, "{} for {max}", bytes.len());
            // Nearly full when the kept prefixes exceed the budget: the
            // header's bound is at most a few digits over its real length.
            assert!(max > 9000 || bytes.len() + 12 > max, "{} for {max}", bytes.len());
            let r = ExecResult::from_reply(&decode_reply(SECRET, &bytes).unwrap()).unwrap();
            assert!(r.truncated);
            assert_eq!((r.stdout_total, r.stderr_total), (588_895, 5000));
            assert!(r.stdout.iter().all(|&c| c == b'o') && r.stderr.iter().all(|&c| c == b'e'));
        }
        let o = outcome(b"hello\n", b"", 6, 0);
        let r = decode_reply(SECRET, &encode_result(SECRET, 1400, NONCE, None, &o)).unwrap();
        assert!(r.answers(NONCE));
        let x = ExecResult::from_reply(&r).unwrap();
        assert_eq!((x.stdout.as_slice(), x.stderr.as_slice(), x.code, x.truncated), (&b"hello\n"[..], &b""[..], Some(0), false));
        assert_eq!(r.header.fields["size"], 6);
        let timed = ExecOutcome { code: None, signal: Some(15), timed_out: true, ..outcome(b"", b"", 0, 0) };
        let r = decode_reply(SECRET, &encode_result(SECRET, 1400, NONCE, None, &timed)).unwrap();
        let x = ExecResult::from_reply(&r).unwrap();
        assert_eq!((x.code, x.signal, x.timed_out), (None, Some(15), true));
        assert_eq!(r.header.fields.get("size"), None, "an empty body has no size");
    }

    proptest! {
        /// Any prefix of a valid datagram, and the datagram with bytes
        /// appended, is malformed; never a panic.
        #[test]
        fn cut_or_extended_datagrams_never_decode(
            argv in proptest::collection::vec("[ -~]{0,20}", 1..4),
            body in proptest::collection::vec(any::<u8>(), 0..200),
            extra in proptest::collection::vec(any::<u8>(), 1..50),
        ) {
            let req = msg::Exec { command: Command::Argv(argv), env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None };
            let bytes = encode_request("k", SECRET, request::exec(&req, NONCE, 7), &body);
            prop_assert!(decode_request(&bytes, keys).is_ok());
            for cut in 0..bytes.len() {
                prop_assert!(decode_request(&bytes[..cut], keys).is_err());
                prop_assert!(decode_reply(SECRET, &bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.extend(&extra);
            prop_assert!(decode_request(&longer, keys).is_err());
        }

        /// Any change to a valid request or reply is refused.
        #[test]
        fn corrupted_datagrams_never_decode(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            body in proptest::collection::vec(any::<u8>(), 0..100),
            reply in any::<bool>(),
        ) {
            let bytes = if reply {
                let o = outcome(&body, b"", body.len() as u64, 0);
                encode_result(SECRET, 1400, NONCE, None, &o)
            } else {
                encode_request("k", SECRET, request::stat("some/path", NONCE, 1), &body)
            };
            let mut bad = bytes.clone();
            for (i, x) in &flips {
                let at = i.index(bad.len());
                bad[at] ^= x;
            }
            prop_assume!(bad != bytes);
            prop_assert!(decode_request(&bad, keys).is_err());
            prop_assert!(decode_reply(SECRET, &bad).is_err());
        }

        /// Random bytes never panic and never decode.
        #[test]
        fn random_bytes_never_decode(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(decode_request(&bytes, keys).is_err());
            prop_assert!(decode_reply(SECRET, &bytes).is_err());
        }

        /// The result fits whatever the outputs are; the body holds prefixes of both.
        #[test]
        fn results_always_fit(
            out_len in 0usize..20_000, err_len in 0usize..20_000,
            max in 512usize..4000, code in proptest::option::of(any::<i32>()),
        ) {
            let (out, err) = (vec![1u8; out_len.min(max)], vec![2u8; err_len.min(max)]);
            let o = ExecOutcome { code, ..outcome(&out, &err, out_len as u64, err_len as u64) };
            let bytes = encode_result(SECRET, max, NONCE, Some(&json!(123456)), &o);
            prop_assert!(bytes.len() <= max);
            let r = ExecResult::from_reply(&decode_reply(SECRET, &bytes).unwrap()).unwrap();
            prop_assert_eq!(r.truncated, r.stdout.len() < out_len || r.stderr.len() < err_len);
            prop_assert_eq!(r.code, code);
        }
    }
}
