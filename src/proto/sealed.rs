//! Sealed datagrams: a datagram's message encrypted and authenticated with
//! AES-256-GCM, the key id in clear.
//!
//! ```text
//! offset  size    field
//! 0       4       MAGIC     "FSQ1" for a request, "FSR1" for a reply
//! 4       12      NONCE     random, fresh for every datagram sealed
//! 16      16      TAG       the AES-256-GCM tag
//! 32      1       KIDLEN    1..=255, never 0
//! 33      KIDLEN  KEY ID    the key id's UTF-8 bytes
//! 33+K    rest    CIPHERTEXT, as long as the plaintext
//!
//! request AAD = MAGIC + KIDLEN + KEY ID                  (key: udp request key)
//! reply   AAD = MAGIC + KIDLEN + KEY ID + request NONCE  (key: udp reply key)
//! ```
//!
//! The plaintext is what a v1 datagram carries after its tag (`L`, header,
//! body; see `datagram`). The keys come from `tls::identity::datagram_keys`.
//!
//! Why no (key, nonce) pair is ever used twice for two plaintexts: each
//! direction has its own key, and every seal, a reply included, draws a
//! fresh random nonce. A server may answer one request nonce several times
//! (a cached reply resent byte for byte, or `replayed`); each such answer is
//! a new seal with a new nonce, tied to the request by the request nonce in
//! its AAD. With 96-bit random nonces, a key stays safe for well over 2^32
//! datagrams a direction.
//!
//! Telling sealed from v1: a v1 datagram's `L` (bytes 32..36) is at most
//! 65507, so byte 32 is always 0; a sealed datagram's byte 32 is KIDLEN,
//! never 0. `classify` looks at that byte only: no trial decryption.
//!
//! Pure: slices in, vectors out; `fresh_nonce` asks the OS for random bytes.

use super::datagram::{self, Malformed, MAX_DATAGRAM};
use super::frame::{parse_header, Header};
use serde_json::{Map, Value};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

pub const REQUEST_MAGIC: [u8; 4] = *b"FSQ1";
pub const REPLY_MAGIC: [u8; 4] = *b"FSR1";
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// The offset of KIDLEN: the byte that tells sealed (non-zero) from v1 (0).
pub const KIDLEN_AT: usize = 32;
/// Bytes before the key id.
pub const FIXED_LEN: usize = KIDLEN_AT + 1;
/// The longest key id a sealed datagram can name.
pub const MAX_KEY_ID: usize = 255;

/// The two AES-256-GCM keys of one key of the keys file.
pub struct DatagramKeys {
    request: LessSafeKey,
    reply: LessSafeKey,
}

impl DatagramKeys {
    pub fn new(request: &[u8; 32], reply: &[u8; 32]) -> DatagramKeys {
        let key =
            |k: &[u8; 32]| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).expect("32 bytes is an AES-256 key"));
        DatagramKeys { request: key(request), reply: key(reply) }
    }

    fn for_dir(&self, dir: Dir) -> &LessSafeKey {
        match dir {
            Dir::Request => &self.request,
            Dir::Reply => &self.reply,
        }
    }
}

impl std::fmt::Debug for DatagramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatagramKeys(<secret>)")
    }
}

/// Which codec a received datagram is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// v1: HMAC tag, then `L`, header, body (`proto::datagram`).
    Tagged,
    /// This module's format.
    Sealed,
}

/// The codec for a datagram, by its byte 32; None when it is too short to
/// be either (both need more than 32 bytes).
pub fn classify(datagram: &[u8]) -> Option<Kind> {
    match datagram.get(KIDLEN_AT)? {
        0 => Some(Kind::Tagged),
        _ => Some(Kind::Sealed),
    }
}

/// Why a sealed datagram was not made or not accepted. As for v1, none of
/// these gets an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than the fixed part and the key id, or KIDLEN is 0.
    Short,
    /// More than `MAX_DATAGRAM` bytes.
    TooLong,
    /// Not the magic of the direction expected.
    BadMagic,
    /// A key id that is empty, longer than 255 bytes, or not UTF-8.
    BadKeyId,
    /// A request for a key id the receiver does not hold.
    UnknownKey,
    /// A reply that names another key id than the request's.
    WrongKeyId,
    /// Authentication failed: tampered, another key, or (a reply) another request.
    BadTag,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SealError::Short => "sealed datagram too short",
            SealError::TooLong => "sealed datagram longer than 65507 bytes",
            SealError::BadMagic => "not a sealed datagram of this direction",
            SealError::BadKeyId => "key id empty, over 255 bytes or not UTF-8",
            SealError::UnknownKey => "unknown key id",
            SealError::WrongKeyId => "reply for another key id",
            SealError::BadTag => "authentication failed",
        })
    }
}

impl std::error::Error for SealError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Reply,
}

impl Dir {
    fn magic(self) -> [u8; 4] {
        match self {
            Dir::Request => REQUEST_MAGIC,
            Dir::Reply => REPLY_MAGIC,
        }
    }
}

/// 12 fresh random bytes: the nonce of one seal.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).expect("the OS random source failed");
    n
}

/// MAGIC + KIDLEN + KEY ID, and for a reply the request's nonce.
fn aad(dir: Dir, key_id: &[u8], request_nonce: Option<&[u8; NONCE_LEN]>) -> Vec<u8> {
    let mut a = Vec::with_capacity(4 + 1 + key_id.len() + NONCE_LEN);
    a.extend_from_slice(&dir.magic());
    a.push(key_id.len() as u8);
    a.extend_from_slice(key_id);
    if let Some(n) = request_nonce {
        a.extend_from_slice(n);
    }
    a
}

fn seal(
    dir: Dir,
    keys: &DatagramKeys,
    key_id: &str,
    nonce: [u8; NONCE_LEN],
    request_nonce: Option<&[u8; NONCE_LEN]>,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let kid = key_id.as_bytes();
    if kid.is_empty() || kid.len() > MAX_KEY_ID {
        return Err(SealError::BadKeyId);
    }
    let start = FIXED_LEN + kid.len();
    if start + plaintext.len() > MAX_DATAGRAM {
        return Err(SealError::TooLong);
    }
    let mut out = Vec::with_capacity(start + plaintext.len());
    out.extend_from_slice(&dir.magic());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&[0u8; TAG_LEN]);
    out.push(kid.len() as u8);
    out.extend_from_slice(kid);
    out.extend_from_slice(plaintext);
    let tag = keys
        .for_dir(dir)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(dir, kid, request_nonce)),
            &mut out[start..],
        )
        .expect("AES-GCM seals any datagram-sized input");
    out[16..32].copy_from_slice(tag.as_ref());
    Ok(out)
}

/// A request sealed with `keys` under `nonce` (use `fresh_nonce`; a client
/// that retransmits sends the same bytes again, it does not seal again).
pub fn seal_request(
    keys: &DatagramKeys,
    key_id: &str,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal(Dir::Request, keys, key_id, nonce, None, plaintext)
}

/// A reply to the request with `request_nonce`, sealed under its own fresh
/// `nonce` (never the request's: see the module doc).
pub fn seal_reply(
    keys: &DatagramKeys,
    key_id: &str,
    request_nonce: &[u8; NONCE_LEN],
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    debug_assert_ne!(&nonce, request_nonce, "a reply draws its own nonce");
    seal(Dir::Reply, keys, key_id, nonce, Some(request_nonce), plaintext)
}

/// A sealed datagram's fields, before authentication.
struct Parts<'a> {
    nonce: [u8; NONCE_LEN],
    tag: &'a [u8],
    key_id: &'a str,
    ciphertext: &'a [u8],
}

fn parse(dir: Dir, bytes: &[u8]) -> Result<Parts<'_>, SealError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(SealError::TooLong);
    }
    let kidlen = *bytes.get(KIDLEN_AT).ok_or(SealError::Short)? as usize;
    if kidlen == 0 || bytes.len() < FIXED_LEN + kidlen {
        return Err(SealError::Short);
    }
    if bytes[..4] != dir.magic() {
        return Err(SealError::BadMagic);
    }
    let key_id = std::str::from_utf8(&bytes[FIXED_LEN..FIXED_LEN + kidlen]).map_err(|_| SealError::BadKeyId)?;
    Ok(Parts {
        nonce: bytes[4..16].try_into().expect("12 bytes"),
        tag: &bytes[16..32],
        key_id,
        ciphertext: &bytes[FIXED_LEN + kidlen..],
    })
}

fn open(
    dir: Dir,
    key: &LessSafeKey,
    p: &Parts<'_>,
    request_nonce: Option<&[u8; NONCE_LEN]>,
) -> Result<Vec<u8>, SealError> {
    let mut buf = p.ciphertext.to_vec();
    key.open_in_place_separate_tag(
        Nonce::assume_unique_for_key(p.nonce),
        Aad::from(aad(dir, p.key_id.as_bytes(), request_nonce)),
        p.tag,
        &mut buf,
    )
    .map_err(|_| SealError::BadTag)?;
    Ok(buf)
}

/// An authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedRequest {
    pub key_id: String,
    /// The request's nonce: what "at most once" remembers, and what the
    /// reply is bound to.
    pub nonce: [u8; NONCE_LEN],
    pub plaintext: Vec<u8>,
}

/// A throwaway key: an unknown key id's datagram is opened with it, so every
/// well-formed request costs one AEAD open, whether its key exists or not.
fn no_key() -> &'static DatagramKeys {
    static NO_KEY: std::sync::OnceLock<DatagramKeys> = std::sync::OnceLock::new();
    NO_KEY.get_or_init(|| DatagramKeys::new(&[0x5a; 32], &[0xa5; 32]))
}

/// Reads a request: its structure, then opens it with the keys `keys_of`
/// gives for its key id (None: unknown key id).
pub fn open_request<'k>(
    bytes: &[u8],
    keys_of: impl FnOnce(&str) -> Option<&'k DatagramKeys>,
) -> Result<OpenedRequest, SealError> {
    let p = parse(Dir::Request, bytes)?;
    let keys = keys_of(p.key_id);
    let key: &DatagramKeys = match keys {
        Some(k) => k,
        None => no_key(),
    };
    let opened = open(Dir::Request, &key.request, &p, None);
    match (keys, opened) {
        (None, _) => Err(SealError::UnknownKey),
        (Some(_), Err(e)) => Err(e),
        (Some(_), Ok(plaintext)) => Ok(OpenedRequest { key_id: p.key_id.to_string(), nonce: p.nonce, plaintext }),
    }
}

/// Reads the reply to our request (`key_id`, `request_nonce`); a reply to
/// another request fails authentication.
pub fn open_reply(
    keys: &DatagramKeys,
    key_id: &str,
    request_nonce: &[u8; NONCE_LEN],
    bytes: &[u8],
) -> Result<Vec<u8>, SealError> {
    let p = parse(Dir::Reply, bytes)?;
    if p.key_id != key_id {
        return Err(SealError::WrongKeyId);
    }
    open(Dir::Reply, &keys.reply, &p, Some(request_nonce))
}

/// The header and body of an opened request's plaintext (`L`, header,
/// body), with the framing checks of a v1 datagram (`datagram::Datagram`).
pub fn parse_plaintext(p: &[u8]) -> Result<(Header, &[u8]), Malformed> {
    if p.len() < 5 {
        return Err(Malformed::Short);
    }
    let len = u32::from_be_bytes(p[..4].try_into().expect("four bytes"));
    let rest = &p[4..];
    if len == 0 || len as usize > rest.len() {
        return Err(Malformed::BadLength(len));
    }
    let (head, body) = rest.split_at(len as usize);
    let header = parse_header(head).map_err(Malformed::Header)?;
    match header.size.cmp(&(body.len() as u64)) {
        std::cmp::Ordering::Greater => Err(Malformed::ShortBody),
        std::cmp::Ordering::Less => Err(Malformed::Trailing),
        std::cmp::Ordering::Equal => Ok((header, body)),
    }
}

/// The plaintext of a sealed reply from the v1 reply datagram that says the
/// same: its tag dropped and, from its header, the `nonce` (a sealed reply
/// is bound to its request by the AAD instead). The header loses at least
/// that field, so the plaintext is no longer than the v1 datagram less its
/// tag. None if `v1` is not a well-formed reply datagram.
pub fn plaintext_of_v1_reply(v1: &[u8]) -> Option<Vec<u8>> {
    let (head, body) = datagram::split(v1).ok()?;
    let mut map: Map<String, Value> = serde_json::from_slice(head).ok()?;
    map.remove("nonce");
    map.remove("size");
    let mut out = Vec::with_capacity(v1.len());
    super::frame::encode_frame(&mut out, map, body);
    Some(out)
}

/// Bytes a sealed reply takes beyond the v1 one for the same message under
/// key id `key_id`: its fixed part and key id, less the v1 tag.
pub fn extra_over_v1(key_id: &str) -> usize {
    FIXED_LEN + key_id.len() - datagram::TAG_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> DatagramKeys {
        DatagramKeys::new(&[b; 32], &[b ^ 0xff; 32])
    }

    const N1: [u8; 12] = [1; 12];
    const N2: [u8; 12] = [2; 12];
    const PING: &[u8] = b"\x00\x00\x00\x0f{\"type\":\"ping\"}";

    #[test]
    fn request_round_trip_and_layout() {
        let k = keys(7);
        let d = seal_request(&k, "alice", N1, PING).unwrap();
        assert_eq!(&d[..4], b"FSQ1");
        assert_eq!(&d[4..16], &N1);
        assert_eq!(d[32], 5);
        assert_eq!(&d[33..38], b"alice");
        assert_eq!(d.len(), 38 + PING.len(), "ciphertext as long as the plaintext");
        assert_ne!(&d[38..], PING, "the message is encrypted");
        assert_eq!(classify(&d), Some(Kind::Sealed));
        let r = open_request(&d, |id| (id == "alice").then_some(&k)).unwrap();
        assert_eq!(r, OpenedRequest { key_id: "alice".into(), nonce: N1, plaintext: PING.to_vec() });
    }

    #[test]
    fn reply_round_trip_bound_to_the_request_nonce() {
        let k = keys(9);
        let d = seal_reply(&k, "alice", &N1, N2, b"pong").unwrap();
        assert_eq!(&d[..4], b"FSR1");
        assert_eq!(&d[4..16], &N2, "the reply's own nonce");
        assert_eq!(open_reply(&k, "alice", &N1, &d).unwrap(), b"pong");
        assert_eq!(open_reply(&k, "alice", &N2, &d), Err(SealError::BadTag), "another request's reply");
        assert_eq!(open_reply(&k, "bob", &N1, &d), Err(SealError::WrongKeyId));
        assert_eq!(open_reply(&keys(10), "alice", &N1, &d), Err(SealError::BadTag), "another key");
    }

    #[test]
    fn every_flipped_byte_fails() {
        let k = keys(3);
        let req = seal_request(&k, "k", N1, PING).unwrap();
        for i in 0..req.len() {
            let mut t = req.clone();
            t[i] ^= 0x01;
            assert!(open_request(&t, |id| (id == "k").then_some(&k)).is_err(), "request byte {i}");
        }
        let rep = seal_reply(&k, "k", &N1, N2, b"result").unwrap();
        for i in 0..rep.len() {
            let mut t = rep.clone();
            t[i] ^= 0x80;
            assert!(open_reply(&k, "k", &N1, &t).is_err(), "reply byte {i}");
        }
    }

    #[test]
    fn wrong_key_unknown_key_and_direction() {
        let (k, other) = (keys(1), keys(2));
        let d = seal_request(&k, "a", N1, PING).unwrap();
        assert_eq!(open_request(&d, |_| Some(&other)), Err(SealError::BadTag));
        assert_eq!(open_request(&d, |_| None), Err(SealError::UnknownKey));
        // A request cannot pass for a reply, nor a reply for a request, even
        // with the magic rewritten: the directions' keys differ.
        assert_eq!(open_reply(&k, "a", &N1, &d), Err(SealError::BadMagic));
        let mut r = seal_reply(&k, "a", &N1, N2, PING).unwrap();
        r[..4].copy_from_slice(b"FSQ1");
        assert_eq!(open_request(&r, |_| Some(&k)), Err(SealError::BadTag));
    }

    #[test]
    fn malformed_and_limits() {
        let k = keys(4);
        assert_eq!(open_request(&[], |_| Some(&k)), Err(SealError::Short));
        assert_eq!(open_request(&[0xff; 32], |_| Some(&k)), Err(SealError::Short));
        let mut d = seal_request(&k, "abc", N1, b"").unwrap();
        assert_eq!(open_request(&d, |_| Some(&k)).unwrap().plaintext, b"", "empty plaintext is fine");
        d.truncate(35);
        assert_eq!(open_request(&d, |_| Some(&k)), Err(SealError::Short), "key id cut");
        assert_eq!(seal_request(&k, "", N1, PING), Err(SealError::BadKeyId));
        assert_eq!(seal_request(&k, &"x".repeat(256), N1, PING), Err(SealError::BadKeyId));
        assert!(seal_request(&k, &"x".repeat(255), N1, PING).is_ok());
        let big = vec![0u8; MAX_DATAGRAM - FIXED_LEN - 1];
        assert_eq!(seal_request(&k, "x", N1, &big).unwrap().len(), MAX_DATAGRAM);
        assert_eq!(seal_request(&k, "xy", N1, &big), Err(SealError::TooLong));
        let mut bad = seal_request(&k, "ab", N1, PING).unwrap();
        bad[33] = 0xff;
        assert_eq!(open_request(&bad, |_| Some(&k)), Err(SealError::BadKeyId));
    }

    #[test]
    fn classify_by_byte_32() {
        assert_eq!(classify(&[0u8; 32]), None);
        let v1 = crate::proto::datagram::encode_reply(b"secret", crate::proto::msg::request::ping(), b"");
        assert_eq!(classify(&v1), Some(Kind::Tagged));
        // Whatever the tag's bytes, a v1 datagram's byte 32 is L's high byte.
        let mut v = v1.clone();
        v[..32].copy_from_slice(b"FSQ1FSQ1FSQ1FSQ1FSQ1FSQ1FSQ1FSQ1");
        assert_eq!(classify(&v), Some(Kind::Tagged));
        assert_eq!(classify(&seal_request(&keys(1), "a", N1, b"").unwrap()), Some(Kind::Sealed));
    }

    #[test]
    fn fresh_nonces_differ() {
        assert_ne!(fresh_nonce(), fresh_nonce());
    }

    #[test]
    fn plaintexts_parse_as_v1_datagrams_do() {
        let (h, body) = parse_plaintext(PING).unwrap();
        assert_eq!((h.kind.as_str(), body), ("ping", &b""[..]));
        assert_eq!(parse_plaintext(b"\x00\x00"), Err(Malformed::Short));
        assert_eq!(parse_plaintext(b"\x00\x00\x00\x00{}"), Err(Malformed::BadLength(0)));
        assert_eq!(parse_plaintext(b"\x00\x00\x00\x20{}"), Err(Malformed::BadLength(32)));
        assert!(matches!(parse_plaintext(b"\x00\x00\x00\x02{}"), Err(Malformed::Header(_))));
        assert_eq!(parse_plaintext(b"\x00\x00\x00\x0f{\"type\":\"ping\"}x"), Err(Malformed::Trailing));
    }

    #[test]
    fn a_v1_reply_becomes_a_plaintext_without_its_tag_and_nonce() {
        let mut h = Map::new();
        h.insert("type".into(), "pong".into());
        h.insert("nonce".into(), "00ff".into());
        h.insert("ts".into(), 1700000001.into());
        let v1 = datagram::encode_reply(b"secret", h, b"");
        let p = plaintext_of_v1_reply(&v1).unwrap();
        assert_eq!(p, b"\x00\x00\x00\x1f{\"ts\":1700000001,\"type\":\"pong\"}".to_vec());
        assert!(p.len() <= v1.len() - datagram::TAG_LEN);
        assert_eq!(extra_over_v1("example"), 33 + 7 - 32);
        let mut with_body = Map::new();
        with_body.insert("type".into(), "result".into());
        let v1 = datagram::encode_reply(b"secret", with_body, b"out");
        let p = plaintext_of_v1_reply(&v1).unwrap();
        let (h, body) = parse_plaintext(&p).unwrap();
        assert_eq!((h.kind.as_str(), h.size, body), ("result", 3, &b"out"[..]));
    }
}
