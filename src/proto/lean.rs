//! The ping path without a map: a small hand-written scan of one frame for
//! the header a load of pings is made of, `{"type":"ping"}` with an `id` (and
//! a `size` of 0) in any order, borrowed from the input. Anything it is not
//! sure of (an escape, a float, a nested value, a duplicate or unknown key, a
//! body) is left to the full decoder (`frame::Decoder`, serde), which decides
//! and names what is wrong; so the scan never accepts what the decoder
//! would refuse, and never refuses anything.

use super::frame::{peek_header, FrameError};
use serde_json::Value;

/// The `id` of a ping the scan recognised, as it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id<'a> {
    /// A JSON integer within `i64` or `u64`.
    Int(&'a str),
    /// A string with no escape and no control character.
    Str(&'a str),
    Null,
}

impl Id<'_> {
    /// The id as the full decoder would have given it.
    pub fn value(self) -> Value {
        match self {
            Id::Int(s) => s
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| s.parse::<i64>().map(Value::from))
                .expect("the scan checked it fits"),
            Id::Str(s) => Value::from(s),
            Id::Null => Value::Null,
        }
    }
}

/// A `ping` frame at the front of `input`: its id (None: no `id` field) and
/// the frame's length. `Ok(None)` when it is not a frame the scan is sure
/// of, or not all there yet: decode it with `Decoder` then. A length the
/// decoder would refuse is its error here too.
pub fn ping(input: &[u8]) -> Result<Option<(Option<Id<'_>>, usize)>, FrameError> {
    let Some((head, end)) = peek_header(input)? else { return Ok(None) };
    Ok(scan(head).map(|id| (id, end)))
}

/// The header bytes of a ping: `Some(id)` when sure, else None.
fn scan(h: &[u8]) -> Option<Option<Id<'_>>> {
    let mut s = Scan { b: h, i: 0 };
    let (mut kind, mut id, mut size) = (false, None, false);
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        return None;
    }
    loop {
        let key = s.bytes()?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        match key {
            b"type" if !kind => {
                (s.bytes()? == b"ping").then_some(())?;
                kind = true;
            }
            b"id" if id.is_none() => id = Some(s.id()?),
            // A size of 0 only: a ping with a body is the decoder's.
            b"size" if !size => {
                s.eat(b'0')?;
                s.not_number()?;
                size = true;
            }
            _ => return None,
        }
        s.ws();
        match s.peek()? {
            b',' => {
                s.i += 1;
                s.ws();
            }
            b'}' => {
                s.i += 1;
                break;
            }
            _ => return None,
        }
    }
    s.ws();
    (kind && s.i == h.len()).then_some(id)
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters, valid UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// A string's bytes, when it has no escape and no control character (a
    /// key or the type, compared with ASCII words: a match is UTF-8).
    fn bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = &self.b[start..self.i];
        self.i += 1;
        Some(s)
    }

    /// The next byte does not continue a number (a fraction or an exponent
    /// makes it a float, which the decoder keeps as one).
    fn not_number(&self) -> Option<()> {
        (!matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'-' | b'+'))).then_some(())
    }

    fn id(&mut self) -> Option<Id<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Id::Str),
            b'n' => {
                (self.b.get(self.i..self.i + 4)? == b"null").then_some(())?;
                self.i += 4;
                Some(Id::Null)
            }
            _ => {
                let start = self.i;
                let _ = self.eat(b'-');
                let digits = self.i;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i += 1;
                }
                let n = self.i - digits;
                // At least one digit, no leading zero (JSON), no -0 (a float to serde).
                if n == 0 || (n > 1 && self.b[digits] == b'0') || (digits > start && self.b[digits] == b'0') {
                    return None;
                }
                self.not_number()?;
                let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                // Within u64 or i64, as serde keeps integers; beyond, a float.
                (text.parse::<u64>().is_ok() || text.parse::<i64>().is_ok()).then_some(Id::Int(text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::parse_header;

    fn framed(h: &[u8]) -> Vec<u8> {
        let mut v = (h.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(h);
        v
    }

    /// Scans `h` and, when sure, checks it agrees with the full decoder.
    fn lean(h: &[u8]) -> Option<Option<Value>> {
        let f = framed(h);
        let got = ping(&f).unwrap().map(|(id, end)| {
            assert_eq!(end, f.len());
            id.map(Id::value)
        });
        if let Some(id) = &got {
            let full = parse_header(h).expect("the decoder takes what the scan takes");
            assert_eq!((full.kind.as_str(), full.size, &full.id), ("ping", 0, id), "{}", String::from_utf8_lossy(h));
        }
        got
    }

    #[test]
    fn pings_in_any_key_order_and_spacing_are_recognised() {
        assert_eq!(lean(br#"{"type":"ping"}"#), Some(None));
        assert_eq!(lean(br#"{"type":"ping","id":7}"#), Some(Some(Value::from(7))));
        assert_eq!(lean(br#"{"id":7,"type":"ping"}"#), Some(Some(Value::from(7))));
        assert_eq!(lean(br#"{"size":0,"id":-12,"type":"ping"}"#), Some(Some(Value::from(-12))));
        assert_eq!(lean(b" {\n\t\"id\" : \"a b\" ,\r \"type\":\"ping\" } "), Some(Some(Value::from("a b"))));
        assert_eq!(lean(br#"{"type":"ping","id":null}"#), Some(Some(Value::Null)));
        assert_eq!(lean(br#"{"type":"ping","id":0}"#), Some(Some(Value::from(0))));
        assert_eq!(lean(br#"{"type":"ping","id":18446744073709551615}"#), Some(Some(Value::from(u64::MAX))));
        assert_eq!(lean(br#"{"type":"ping","id":-9223372036854775808}"#), Some(Some(Value::from(i64::MIN))));
        assert_eq!(lean("{\"type\":\"ping\",\"id\":\"ünï\"}".as_bytes()), Some(Some(Value::from("ünï"))));
    }

    #[test]
    fn anything_unsure_is_left_to_the_decoder() {
        let cases: &[&[u8]] = &[
            // Escaped strings, in a key, in the type, in the id.
            br#"{"type":"p\u0069ng"}"#,
            br#"{"t\u0079pe":"ping"}"#,
            br#"{"type":"ping","id":"a\"b"}"#,
            br#"{"type":"ping","id":"a\\b"}"#,
            // Unknown fields, nested or not.
            br#"{"type":"ping","future":1}"#,
            br#"{"type":"ping","id":{"n":1}}"#,
            br#"{"type":"ping","id":[1]}"#,
            br#"{"type":"ping","id":true}"#,
            // Numbers that are floats, too big, or not JSON.
            br#"{"type":"ping","id":1.5}"#,
            br#"{"type":"ping","id":1e3}"#,
            br#"{"type":"ping","id":99999999999999999999}"#,
            br#"{"type":"ping","id":012}"#,
            br#"{"type":"ping","id":-}"#,
            br#"{"type":"ping","id":-0}"#,
            br#"{"type":"ping","id":-9999999999999999999}"#,
            br#"{"type":"ping","id":18446744073709551616}"#,
            br#"{"type":"ping","size":1}"#,
            br#"{"type":"ping","size":00}"#,
            // Other types, duplicates, no type, not an object, bad JSON.
            br#"{"type":"pong"}"#,
            br#"{"type":"exec","cmd":"x"}"#,
            br#"{"type":"ping","type":"exec"}"#,
            br#"{"type":"ping","id":1,"id":2}"#,
            br#"{"id":1}"#,
            br#"{}"#,
            br#"["ping"]"#,
            br#"{"type":"ping",}"#,
            br#"{"type":"ping"} x"#,
            br#"{"type":"ping""#,
            b"{\"type\":\"ping\",\"id\":\"\xff\"}",
            b"{\"type\":\"ping\",\"id\":\"a\nb\"}",
        ];
        for h in cases {
            assert_eq!(lean(h), None, "{}", String::from_utf8_lossy(h));
        }
    }

    proptest::proptest! {
        /// Headers spliced from JSON tokens, most of them nearly pings: the
        /// scan takes only what the decoder takes, and reads it the same.
        #[test]
        fn the_scan_never_disagrees_with_the_decoder(
            picks in proptest::collection::vec(0usize..TOKENS.len(), 1..14),
        ) {
            let h: Vec<u8> = picks.iter().flat_map(|&i| TOKENS[i].bytes()).collect();
            let _ = lean(&h);
        }
    }

    const TOKENS: [&str; 22] = [
        "{", "}", r#""type""#, r#""ping""#, r#""id""#, r#""size""#, ":", ",", " ", "0", "7", "-", "12",
        r#""a\"b""#, "null", "1.5", r#""x""#, "[", "]", r#""p\u0069ng""#, "e3", "\n",
    ];

    #[test]
    fn a_partial_frame_waits_and_a_bad_length_is_the_decoders_error() {
        let f = framed(br#"{"type":"ping","id":1}"#);
        for cut in 0..f.len() {
            assert_eq!(ping(&f[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = f.clone();
        two.extend_from_slice(&f);
        assert_eq!(ping(&two).unwrap().map(|(_, end)| end), Some(f.len()), "one frame at a time");
        assert_eq!(ping(&[0, 0, 0, 0]), Err(FrameError::EmptyHeader));
        assert_eq!(ping(&[0, 1, 0, 1]), Err(FrameError::TooLarge(65537)));
    }
}
