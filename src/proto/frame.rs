//! The frame codec: `u32 BE length | JSON header | body of header.size bytes`.
//!
//! Pure: it works on byte slices only. It owns the rules of what makes a frame
//! valid and nothing else; what a frame *means* is `proto::msg`'s business.
//!
//! The decoder is incremental. Input that ends inside a frame is never an error:
//! `decode` answers `Ok(None)` ("read more") and the caller calls again with the
//! same bytes plus whatever has arrived since. Bodies are handed out in chunks
//! as they arrive, so a body never has to fit in memory.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;

/// The largest header the protocol allows (the `L` of a frame).
pub const MAX_HEADER: usize = 65536;

/// A decoded frame header: the JSON object, with `type`, `size` and `id` checked
/// and pulled out for convenience. `fields` keeps the whole object (unknown
/// fields are ignored by whoever reads it, never rejected).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub kind: String,
    pub size: u64,
    pub id: Option<Value>,
    pub fields: Map<String, Value>,
}

impl Header {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }
}

/// Why a byte stream is not a valid frame. Every variant is fatal for the
/// connection; `code()` gives the wire error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// `L = 0`.
    EmptyHeader,
    /// `L` over the limit.
    TooLarge(u32),
    /// The header is not UTF-8 JSON.
    NotJson(String),
    /// The header is JSON but not an object.
    NotObject,
    /// No `type`, or a `type` that is not a string.
    NoType,
    /// A `size` that is not a non-negative integer.
    BadSize,
}

impl FrameError {
    pub fn code(&self) -> super::ErrorCode {
        match self {
            FrameError::TooLarge(_) => super::ErrorCode::FrameTooLarge,
            _ => super::ErrorCode::BadFrame,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::EmptyHeader => write!(f, "header length is 0"),
            FrameError::TooLarge(n) => write!(f, "header length {n} is over the limit of {MAX_HEADER}"),
            FrameError::NotJson(e) => write!(f, "header is not JSON: {e}"),
            FrameError::NotObject => write!(f, "header is not a JSON object"),
            FrameError::NoType => write!(f, "header has no string \"type\""),
            FrameError::BadSize => write!(f, "header \"size\" is not a non-negative integer"),
        }
    }
}

/// One thing the decoder found at the front of its input.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// A complete header. If `size > 0`, `Body` items follow.
    Header(Header),
    /// A piece of the current frame's body, as a range of the input slice.
    /// `last` is set on the piece that completes the body.
    Body { range: Range<usize>, last: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary, expecting the 4-byte length.
    Len,
    /// Inside a body, this many bytes still to come.
    Body(u64),
}

/// Incremental frame decoder. See the module doc.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    max_header: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_HEADER)
    }
}

impl Decoder {
    /// A decoder that refuses headers longer than `max_header` (at most `MAX_HEADER`).
    pub fn new(max_header: usize) -> Decoder {
        Decoder { state: State::Len, max_header: max_header.clamp(1, MAX_HEADER) }
    }

    /// The longest header this decoder takes.
    pub fn max_header(&self) -> usize {
        self.max_header
    }

    /// True between frames (no header half-read is tracked here; only bodies are).
    pub fn at_boundary(&self) -> bool {
        self.state == State::Len
    }

    /// Bytes of the current body not yet handed out.
    pub fn body_remaining(&self) -> u64 {
        match self.state {
            State::Body(n) => n,
            State::Len => 0,
        }
    }

    /// `n` bytes of the current body were taken straight from the socket
    /// (at most `body_remaining`): true when that was its last byte.
    pub fn take_body(&mut self, n: u64) -> bool {
        let State::Body(remaining) = self.state else { return false };
        debug_assert!(n <= remaining);
        let left = remaining - n.min(remaining);
        self.state = if left == 0 { State::Len } else { State::Body(left) };
        left == 0
    }

    /// Decodes the next item at the front of `input`. Returns the item and how
    /// many bytes of `input` it used, or `Ok(None)` when more bytes are needed.
    pub fn decode(&mut self, input: &[u8]) -> Result<Option<(Item, usize)>, FrameError> {
        match self.state {
            State::Body(remaining) => {
                if input.is_empty() {
                    return Ok(None);
                }
                let n = (input.len() as u64).min(remaining) as usize;
                let left = remaining - n as u64;
                self.state = if left == 0 { State::Len } else { State::Body(left) };
                Ok(Some((Item::Body { range: 0..n, last: left == 0 }, n)))
            }
            State::Len => {
                let Some((head, end)) = split_header(input, self.max_header)? else { return Ok(None) };
                let header = parse_header(head)?;
                if header.size > 0 {
                    self.state = State::Body(header.size);
                }
                Ok(Some((Item::Header(header), end)))
            }
        }
    }
}

/// The header bytes of the frame at the front of `input` and where its body
/// starts, without parsing the header: for a caller that keeps its own input
/// buffer and skips bodies itself (ferry-bench's fast path). `Ok(None)` until
/// the length and the whole header have arrived. The length is judged as
/// `Decoder` judges it, from the first four bytes alone.
pub fn peek_header(input: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    split_header(input, MAX_HEADER)
}

fn split_header(input: &[u8], max_header: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(len) = input.get(..4) else { return Ok(None) };
    let len = u32::from_be_bytes(len.try_into().expect("four bytes"));
    // The length is judged before a single header byte is buffered.
    if len == 0 {
        return Err(FrameError::EmptyHeader);
    }
    if len as usize > max_header {
        return Err(FrameError::TooLarge(len));
    }
    let end = 4 + len as usize;
    Ok(input.get(4..end).map(|head| (head, end)))
}

/// A header's `type` and `size`, read without copying the rest: what a
/// client counting replies needs from most frames. It checks less than
/// `parse_header`: duplicate keys other than `type` and `size` go unnoticed.
/// An invalid header gets `parse_header`'s error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub kind: Cow<'a, str>,
    pub size: u64,
}

impl<'a> HeaderRef<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<HeaderRef<'a>, FrameError> {
        #[derive(serde::Deserialize)]
        struct Raw<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<Kind<'a>>,
            size: Option<u64>,
        }
        match serde_json::from_slice::<Raw>(bytes) {
            Ok(Raw { kind: Some(Kind(kind)), size }) => Ok(HeaderRef { kind, size: size.unwrap_or(0) }),
            Ok(_) => Err(FrameError::NoType),
            Err(e) => Err(parse_header(bytes).err().unwrap_or_else(|| FrameError::NotJson(e.to_string()))),
        }
    }
}

/// A string borrowed from the input unless it has escapes (serde's own `Cow`
/// always copies).
struct Kind<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Kind<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Kind<'a>, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Kind<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Kind<'a>, E> {
                Ok(Kind(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Kind<'a>, E> {
                Ok(Kind(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Parses and checks one header (the `L` bytes after the length).
pub fn parse_header(bytes: &[u8]) -> Result<Header, FrameError> {
    let value: TopLevel = serde_json::from_slice(bytes).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let TopLevel::Object(fields) = value else {
        return Err(FrameError::NotObject);
    };
    let kind = match fields.get("type") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(FrameError::NoType),
    };
    let size = match fields.get("size") {
        None => 0,
        Some(v) => v.as_u64().ok_or(FrameError::BadSize)?,
    };
    let id = fields.get("id").cloned();
    Ok(Header { kind, size, id, fields })
}

/// A header's top level, parsed in one pass with duplicate keys refused: two
/// parsers that keep different duplicates (the first, the last) would see two
/// different requests in `{"type":"ping","type":"exec"}`. Values below the top
/// level are plain `Value`s.
enum TopLevel {
    Object(Map<String, Value>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TopLevel, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> serde::de::Visitor<'de> for TopVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<TopLevel, A::Error> {
        let mut m = Map::new();
        while let Some(k) = a.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format_args!("duplicate key {k:?}")));
            }
            let v = a.next_value::<Value>()?;
            m.insert(k, v);
        }
        Ok(TopLevel::Object(m))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<TopLevel, A::Error> {
        while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }
}

/// Appends one frame to `out`. `header` must be a JSON object; its `size` is set
/// to `body.len()` (or removed when the body is empty, since absent means 0).
pub fn encode_frame(out: &mut Vec<u8>, header: Map<String, Value>, body: &[u8]) {
    encode_head(out, header, body.len() as u64);
    out.extend_from_slice(body);
}

/// Appends the length and header of a frame whose `size`-byte body the caller
/// sends separately (a file streamed from disk, say).
pub fn encode_head(out: &mut Vec<u8>, mut header: Map<String, Value>, size: u64) {
    if size == 0 {
        header.remove("size");
    } else {
        header.insert("size".into(), Value::from(size));
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, &header).expect("a JSON map always serializes");
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn raw(header: &str, body: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(body);
        v
    }

    /// Feeds `chunks` one after another, the way a socket delivers them, and
    /// collects every header and the concatenated body of each frame.
    fn decode_chunks(chunks: &[&[u8]]) -> Result<Vec<(Header, Vec<u8>)>, FrameError> {
        let mut dec = Decoder::default();
        let mut buf = Vec::new();
        let mut frames: Vec<(Header, Vec<u8>)> = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some((item, used)) = dec.decode(&buf)? {
                match item {
                    Item::Header(h) => frames.push((h, Vec::new())),
                    Item::Body { range, .. } => frames.last_mut().unwrap().1.extend_from_slice(&buf[range]),
                }
                buf.drain(..used);
            }
        }
        assert!(buf.is_empty(), "bytes left over: {buf:?}");
        Ok(frames)
    }

    #[test]
    fn decodes_a_frame_with_a_body() {
        let bytes = raw(r#"{"type":"stdout","size":5,"id":7}"#, b"hello");
        let frames = decode_chunks(&[&bytes]).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0.kind, "stdout");
        assert_eq!(frames[0].0.size, 5);
        assert_eq!(frames[0].0.id, Some(json!(7)));
        assert_eq!(frames[0].1, b"hello");
    }

    #[test]
    fn two_frames_glued_together_come_apart() {
        let mut bytes = raw(r#"{"type":"ping"}"#, b"");
        bytes.extend(raw(r#"{"type":"stdin","size":3}"#, b"abc"));
        let frames = decode_chunks(&[&bytes]).unwrap();
        assert_eq!(frames.iter().map(|f| f.0.kind.as_str()).collect::<Vec<_>>(), ["ping", "stdin"]);
        assert_eq!(frames[1].1, b"abc");
    }

    #[test]
    fn partial_input_is_need_more_never_an_error() {
        let bytes = raw(r#"{"type":"stdout","size":3}"#, b"xyz");
        let header_end = bytes.len() - 3;
        for cut in 0..header_end {
            let mut dec = Decoder::default();
            assert_eq!(dec.decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn unknown_fields_are_kept_not_rejected() {
        let h = parse_header(br#"{"type":"ping","future":[1,2,{"x":null}]}"#).unwrap();
        assert_eq!(h.kind, "ping");
        assert_eq!(h.size, 0);
        assert!(h.fields.contains_key("future"));
    }

    #[test]
    fn length_zero_is_bad_frame() {
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&[0, 0, 0, 0]), Err(FrameError::EmptyHeader));
        assert_eq!(FrameError::EmptyHeader.code().as_str(), "bad-frame");
    }

    #[test]
    fn length_over_64k_is_rejected_before_the_header_arrives() {
        let mut dec = Decoder::default();
        assert_eq!(dec.decode(&65537u32.to_be_bytes()), Err(FrameError::TooLarge(65537)));
        assert_eq!(dec.decode(&u32::MAX.to_be_bytes()), Err(FrameError::TooLarge(u32::MAX)));
        assert_eq!(FrameError::TooLarge(1).code().as_str(), "frame-too-large");
        // Exactly 65536 is allowed: the decoder waits for the bytes.
        assert_eq!(dec.decode(&65536u32.to_be_bytes()), Ok(None));
    }

    #[test]
    fn every_bad_header_is_named() {
        let cases: &[(&[u8], FrameError)] = &[
            (b"not json", FrameError::NotJson(String::new())),
            (b"\xff\xfe{}", FrameError::NotJson(String::new())),
            (b"[1,2]", FrameError::NotObject),
            (b"\"ping\"", FrameError::NotObject),
            (b"{}", FrameError::NoType),
            (br#"{"type":3}"#, FrameError::NoType),
            (br#"{"type":null}"#, FrameError::NoType),
            (br#"{"type":"ping","size":-1}"#, FrameError::BadSize),
            (br#"{"type":"ping","size":1.5}"#, FrameError::BadSize),
            (br#"{"type":"ping","size":"3"}"#, FrameError::BadSize),
            (br#"{"type":"ping","size":null}"#, FrameError::BadSize),
            (br#"{"type":"ping","size":1e309}"#, FrameError::NotJson(String::new())),
            (br#"{"type":"ping","type":"exec"}"#, FrameError::NotJson(String::new())),
            (br#"{"type":"ping","size":0,"size":5}"#, FrameError::NotJson(String::new())),
            (b"null", FrameError::NotObject),
            (b"[{\"type\":\"ping\"}]", FrameError::NotObject),
        ];
        for (bytes, want) in cases {
            let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(bytes);
            let got = Decoder::default().decode(&frame).unwrap_err();
            match (want, &got) {
                (FrameError::NotJson(_), FrameError::NotJson(_)) => {}
                _ => assert_eq!(&got, want, "for {:?}", String::from_utf8_lossy(bytes)),
            }
            assert_eq!(got.code().as_str(), "bad-frame");
        }
    }

    #[test]
    fn peek_judges_the_length_first_and_waits_for_the_whole_header() {
        let bytes = raw(r#"{"type":"file","size":3}"#, b"abc");
        let end = bytes.len() - 3;
        for cut in 0..end {
            assert_eq!(peek_header(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(peek_header(&bytes[..end]), Ok(Some((&bytes[4..end], end))));
        assert_eq!(peek_header(&bytes), Ok(Some((&bytes[4..end], end))));
        assert_eq!(peek_header(&[0, 0, 0, 0, b'{']), Err(FrameError::EmptyHeader));
        assert_eq!(peek_header(&[0, 1, 0, 1]), Err(FrameError::TooLarge(65537)));
        assert_eq!(peek_header(&[0, 1, 0, 0]), Ok(None));
        // Not JSON: peeking does not look inside.
        assert_eq!(peek_header(b"\0\0\0\x02{x"), Ok(Some((&b"{x"[..], 6))));
    }

    #[test]
    fn header_ref_reads_type_and_size_and_names_what_is_wrong() {
        let h = HeaderRef::parse(br#"{"type":"file","size":3,"sha256":null,"x":{"y":[1]}}"#).unwrap();
        assert_eq!((h.kind.as_ref(), h.size), ("file", 3));
        assert!(matches!(h.kind, Cow::Borrowed(_)));
        let h = HeaderRef::parse(br#"{"type":"p\u006fng"}"#).unwrap();
        assert_eq!((h.kind.as_ref(), h.size), ("pong", 0));
        let cases: &[(&[u8], FrameError)] = &[
            (b"{}", FrameError::NoType),
            (br#"{"type":null}"#, FrameError::NoType),
            (br#"{"type":3}"#, FrameError::NoType),
            (br#"{"type":"ping","size":-1}"#, FrameError::BadSize),
            (br#"{"type":"ping","size":"3"}"#, FrameError::BadSize),
            (b"[1]", FrameError::NotObject),
        ];
        for (bytes, want) in cases {
            assert_eq!(&HeaderRef::parse(bytes).unwrap_err(), want, "{}", String::from_utf8_lossy(bytes));
        }
        assert!(matches!(HeaderRef::parse(b"{\"type\":"), Err(FrameError::NotJson(_))));
        assert!(matches!(HeaderRef::parse(br#"{"type":"a","type":"b"}"#), Err(FrameError::NotJson(_))));
    }

    #[test]
    fn a_smaller_limit_is_honoured() {
        let mut dec = Decoder::new(16);
        assert_eq!(dec.decode(&17u32.to_be_bytes()), Err(FrameError::TooLarge(17)));
    }

    #[test]
    fn encode_sets_and_drops_size() {
        let mut out = Vec::new();
        let mut h = Map::new();
        h.insert("type".into(), json!("stdout"));
        h.insert("size".into(), json!(99));
        encode_frame(&mut out, h.clone(), b"");
        assert_eq!(out, raw(r#"{"type":"stdout"}"#, b""));
        out.clear();
        encode_frame(&mut out, h, b"ab");
        let frames = decode_chunks(&[&out]).unwrap();
        assert_eq!(frames[0].0.size, 2);
        assert_eq!(frames[0].1, b"ab");
    }

    fn stream() -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        let bodies: [&[u8]; 5] = [b"", b"x", b"hello world", &[0u8, 255, 10, 13], b""];
        for (i, body) in bodies.iter().enumerate() {
            let mut h = Map::new();
            h.insert("type".into(), json!(format!("t{i}")));
            h.insert("id".into(), json!(i));
            h.insert("note".into(), json!("é ü \u{2603}"));
            encode_frame(&mut bytes, h, body);
            want.push((format!("t{i}"), body.to_vec()));
        }
        (bytes, want)
    }

    #[test]
    fn split_at_every_point_decodes_the_same_frames() {
        let (bytes, want) = stream();
        for cut in 0..=bytes.len() {
            let got = decode_chunks(&[&bytes[..cut], &bytes[cut..]]).unwrap();
            let got: Vec<_> = got.into_iter().map(|(h, b)| (h.kind, b)).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let got = decode_chunks(&bytewise).unwrap();
        assert_eq!(got.into_iter().map(|(h, b)| (h.kind, b)).collect::<Vec<_>>(), want);
    }

    proptest! {
        #[test]
        fn random_splits_decode_the_same_frames(
            frames in proptest::collection::vec(("[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..300)), 1..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut bytes = Vec::new();
            for (kind, body) in &frames {
                let mut h = Map::new();
                h.insert("type".into(), json!(kind));
                encode_frame(&mut bytes, h, body);
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.push(0);
            points.push(bytes.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
            let got = decode_chunks(&chunks).unwrap();
            let got: Vec<_> = got.into_iter().map(|(h, b)| (h.kind, b)).collect();
            prop_assert_eq!(got, frames);
        }
    }
}
