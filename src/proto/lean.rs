//! The ping and exec paths without a map: a small hand-written scan of one
//! frame for the headers a load of pings and commands is made of, borrowed
//! from the input. A ping is `{"type":"ping"}` with an `id` (and a `size` of
//! 0) in any order; an exec is `{"type":"exec"}` with any of `id`, `size` 0,
//! `cmd`, `argv`, `env`, `cwd`, `stdin`, `login` and a whole-number `timeout`,
//! in any order. Anything it is not sure of (an escape, a float, a nested
//! value it does not know, `null`, a duplicate or unknown key, a body, an
//! exec its fields do not make) is left to the full decoder
//! (`frame::Decoder`, serde, then `Request::from_header`), which decides and
//! names what is wrong; so the scan never accepts what the decoder would
//! refuse, never refuses anything, and reads what it takes as the decoder
//! does (the exec's fields go through the same `ExecFields::check`).

use super::frame::{peek_header, FrameError};
use super::msg::{Exec, ExecFields};
use serde_json::Value;

/// The `id` of a request the scan recognised, as it was written.
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

/// A request the scan is sure of, with its `id` (None: no `id` field).
#[derive(Debug, PartialEq)]
pub enum Lean<'a> {
    Ping(Option<Id<'a>>),
    Exec(Option<Id<'a>>, Exec),
}

/// A `ping` or `exec` frame at the front of `input`, and the frame's length.
/// `Ok(None)` when it is not a frame the scan is sure of, or not all there
/// yet: decode it with `Decoder` then. A length the decoder would refuse is
/// its error here too.
pub fn request(input: &[u8]) -> Result<Option<(Lean<'_>, usize)>, FrameError> {
    let Some((head, end)) = peek_header(input)? else { return Ok(None) };
    Ok(scan(head).map(|r| (r, end)))
}

/// The header bytes of a ping or an exec: `Some` when sure, else None. The
/// ping's scan comes first and is left at once by anything else, so a ping
/// costs what it did before execs were scanned too.
fn scan(h: &[u8]) -> Option<Lean<'_>> {
    scan_ping(h).map(Lean::Ping).or_else(|| scan_exec(h))
}

/// A ping's header: `Some(id)` when sure, else None.
fn scan_ping(h: &[u8]) -> Option<Option<Id<'_>>> {
    let mut s = Scan { b: h, i: 0 };
    let (mut kind, mut id, mut size) = (false, None, false);
    s.open()?;
    loop {
        let key = s.key()?;
        match key {
            b"type" if !kind => {
                (s.bytes()? == b"ping").then_some(())?;
                kind = true;
            }
            b"id" if id.is_none() => id = Some(s.id()?),
            // A size of 0 only: a ping with a body is the decoder's.
            b"size" if !size => {
                s.zero()?;
                size = true;
            }
            _ => return None,
        }
        if s.next()? {
            break;
        }
    }
    (kind && s.end()).then_some(id)
}

/// An exec's header: its id and request when sure, else None.
fn scan_exec(h: &[u8]) -> Option<Lean<'_>> {
    let mut s = Scan { b: h, i: 0 };
    let (mut kind, mut id, mut size) = (false, None, false);
    // The fields, each at most once (a repeated one is the decoder's).
    let mut f = ExecFields::default();
    let (mut env, mut stdin, mut login) = (false, false, false);
    s.open()?;
    loop {
        let key = s.key()?;
        match key {
            b"type" if !kind => {
                (s.bytes()? == b"exec").then_some(())?;
                kind = true;
            }
            b"id" if id.is_none() => id = Some(s.id()?),
            b"size" if !size => {
                s.zero()?;
                size = true;
            }
            b"cmd" if f.cmd.is_none() => f.cmd = Some(s.string()?.to_owned()),
            b"argv" if f.argv.is_none() => {
                let mut v = Vec::new();
                s.strings(|w| v.push(w.to_owned()))?;
                f.argv = Some(v);
            }
            b"env" if !env => {
                // A repeated name is the decoder's too.
                s.env(|k, v| f.env.insert(k.to_owned(), v.to_owned()).is_none().then_some(()))?;
                env = true;
            }
            b"cwd" if f.cwd.is_none() => f.cwd = Some(s.string()?.to_owned()),
            b"stdin" if !stdin => {
                f.stdin = s.bool()?;
                stdin = true;
            }
            b"login" if !login => {
                f.login = s.bool()?;
                login = true;
            }
            b"timeout" if f.timeout.is_none() => f.timeout = Some(s.whole()?),
            _ => return None,
        }
        if s.next()? {
            break;
        }
    }
    if !(kind && s.end()) {
        return None;
    }
    // A refused exec is the decoder's, which names it (and its access line
    // quotes the raw fields).
    f.check().ok().map(|e| Lean::Exec(id, e))
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

    /// `{` of a header with at least one field.
    fn open(&mut self) -> Option<()> {
        self.ws();
        self.eat(b'{')?;
        self.ws();
        (self.peek()? != b'}').then_some(())
    }

    /// A field's name and its `:`.
    fn key(&mut self) -> Option<&'a [u8]> {
        let key = self.bytes()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// After a field's value: `,` (false: another field) or `}` (true).
    fn next(&mut self) -> Option<bool> {
        self.ws();
        let last = match self.peek()? {
            b',' => false,
            b'}' => true,
            _ => return None,
        };
        self.i += 1;
        self.ws();
        Some(last)
    }

    /// Nothing after the header's `}`.
    fn end(&self) -> bool {
        self.i == self.b.len()
    }

    /// A `size` of 0, ending there.
    fn zero(&mut self) -> Option<()> {
        self.eat(b'0')?;
        self.not_number()
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

    /// `true` or `false`, ending there.
    fn bool(&mut self) -> Option<bool> {
        for (word, v) in [(&b"true"[..], true), (b"false", false)] {
            if self.b.get(self.i..self.i + word.len()) == Some(word) {
                self.i += word.len();
                return Some(v);
            }
        }
        None
    }

    /// A whole number within `u64`, as serde gives it for an `f64` field (a
    /// fraction or an exponent is left to the decoder's own float parsing).
    fn whole(&mut self) -> Option<f64> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 || (n > 1 && self.b[start] == b'0') {
            return None;
        }
        self.not_number()?;
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        text.parse::<u64>().ok().map(|v| v as f64)
    }

    /// An array of plain strings, each given to `each`.
    fn strings(&mut self, mut each: impl FnMut(&'a str)) -> Option<()> {
        self.eat(b'[')?;
        self.ws();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            each(self.string()?);
            self.ws();
            if self.eat(b']').is_some() {
                return Some(());
            }
            self.eat(b',')?;
            self.ws();
        }
    }

    /// An object of plain strings, each name and value given to `each`
    /// (which may refuse it).
    fn env(&mut self, mut each: impl FnMut(&'a str, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let k = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            each(k, self.string()?)?;
            self.ws();
            if self.eat(b'}').is_some() {
                return Some(());
            }
            self.eat(b',')?;
            self.ws();
        }
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
    use crate::proto::msg::Request;
    use std::collections::BTreeMap;

    /// A `ping` frame at the front of `input`: its id and the frame's length.
    fn ping(input: &[u8]) -> Result<Option<(Option<Id<'_>>, usize)>, FrameError> {
        Ok(match request(input)? {
            Some((Lean::Ping(id), end)) => Some((id, end)),
            _ => None,
        })
    }

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

    /// Scans `h` as a request and, when sure, checks it agrees with the
    /// full decoder and `Request::from_header`: the same type, no body, the
    /// same id and the same exec. Some((type, id, exec)) when sure.
    fn lean_req(h: &[u8]) -> Option<(&'static str, Option<Value>, Option<Exec>)> {
        let f = framed(h);
        let (got, end) = request(&f).unwrap()?;
        assert_eq!(end, f.len());
        let full = parse_header(h).expect("the decoder takes what the scan takes");
        let read = Request::from_header(&full);
        let (kind, id, exec) = match got {
            Lean::Ping(id) => ("ping", id.map(Id::value), None),
            Lean::Exec(id, e) => ("exec", id.map(Id::value), Some(e)),
        };
        let text = String::from_utf8_lossy(h);
        assert_eq!((full.kind.as_str(), full.size, &full.id), (kind, 0, &id), "{text}");
        match (&exec, read) {
            (Some(e), Ok(Request::Exec(r))) => assert_eq!(e, &r, "{text}"),
            (None, Ok(Request::Ping)) => {}
            (e, r) => panic!("{text}: the scan read {e:?}, the decoder {r:?}"),
        }
        Some((kind, id, exec))
    }

    fn argv(words: &[&str]) -> Exec {
        Exec {
            command: crate::proto::msg::Command::Argv(words.iter().map(|w| w.to_string()).collect()),
            env: BTreeMap::new(),
            cwd: None,
            stdin: false,
            timeout: None,
            pty: None,
        }
    }

    #[test]
    fn execs_in_any_key_order_and_spacing_are_read_as_the_decoder_reads_them() {
        use crate::proto::msg::Command;
        let e = |h: &[u8]| lean_req(h).map(|(k, id, e)| (k, id, e.unwrap()));
        assert_eq!(e(br#"{"argv":["/bin/true"],"type":"exec"}"#), Some(("exec", None, argv(&["/bin/true"]))));
        assert_eq!(e(br#"{"type":"exec","id":7,"argv":["a", "b c"],"size":0}"#), Some(("exec", Some(Value::from(7)), argv(&["a", "b c"]))));
        let (_, id, x) = e(b" {\"cmd\" : \"echo hi | wc\",\n\"id\":\"r-1\", \"type\":\"exec\" } ").unwrap();
        assert_eq!((id, x.command), (Some(Value::from("r-1")), Command::Shell("echo hi | wc".into())));
        let (_, _, x) = e(br#"{"type":"exec","cmd":"x","env":{"B":"2","A":"1","":"e","K=V":""},"cwd":"sub/dir","stdin":true,"timeout":30}"#).unwrap();
        let env: BTreeMap<String, String> = [("A", "1"), ("B", "2"), ("", "e"), ("K=V", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!((x.env, x.cwd.as_deref(), x.stdin, x.timeout), (env, Some("sub/dir"), true, Some(30.0)));
        let (_, _, x) = e(br#"{"type":"exec","login":true,"stdin":false,"env":{}}"#).unwrap();
        assert_eq!(x.command, Command::Login);
        assert_eq!(e(br#"{"type":"exec","argv":["x"],"login":false}"#).map(|x| x.2), Some(argv(&["x"])));
        assert_eq!(e("{\"type\":\"exec\",\"argv\":[\"ünï\"]}".as_bytes()).map(|x| x.2), Some(argv(&["ünï"])));
        assert_eq!(e(br#"{"type":"exec","argv":["x"],"id":-9223372036854775808}"#).map(|x| x.1), Some(Some(Value::from(i64::MIN))));
        assert_eq!(e(br#"{"type":"exec","argv":["x"],"timeout":18446744073709551615}"#).unwrap().2.timeout, Some(u64::MAX as f64));
        // A ping keeps its own path.
        assert_eq!(lean_req(br#"{"id":1,"type":"ping"}"#), Some(("ping", Some(Value::from(1)), None)));
    }

    #[test]
    fn any_exec_the_scan_is_unsure_of_is_left_to_the_decoder() {
        let cases: &[&[u8]] = &[
            // Refused by the decoder: duplicates (of a field, of the type), wrong types,
            // fields that make no command, a bad timeout.
            br#"{"type":"exec","cmd":"a","cmd":"b"}"#,
            br#"{"type":"exec","argv":["a"],"argv":["b"]}"#,
            br#"{"type":"exec","cmd":"a","type":"exec"}"#,
            br#"{"type":"exec","cmd":"a","id":1,"id":2}"#,
            br#"{"type":"exec","cmd":"a","stdin":true,"stdin":true}"#,
            br#"{"type":"exec","cmd":"a","env":{},"env":{}}"#,
            br#"{"type":"exec","cmd":"a","cwd":"x","cwd":"x"}"#,
            br#"{"type":"exec","login":true,"login":true}"#,
            br#"{"type":"exec","cmd":"a","timeout":1,"timeout":1}"#,
            br#"{"type":"exec","cmd":"a","size":0,"size":0}"#,
            br#"{"type":"exec","cmd":1}"#,
            br#"{"type":"exec","cmd":["a"]}"#,
            br#"{"type":"exec","argv":"a"}"#,
            br#"{"type":"exec","argv":[1]}"#,
            br#"{"type":"exec","argv":["a",null]}"#,
            br#"{"type":"exec","argv":[]}"#,
            br#"{"type":"exec"}"#,
            br#"{"type":"exec","cmd":"a","argv":["b"]}"#,
            br#"{"type":"exec","cmd":"a","login":true}"#,
            br#"{"type":"exec","cmd":"a","stdin":1}"#,
            br#"{"type":"exec","cmd":"a","stdin":"true"}"#,
            br#"{"type":"exec","cmd":"a","env":{"A":1}}"#,
            br#"{"type":"exec","cmd":"a","env":["A"]}"#,
            br#"{"type":"exec","cmd":"a","timeout":0}"#,
            br#"{"type":"exec","cmd":"a","timeout":"5"}"#,
            br#"{"type":"exec","cmd":"a","cwd":3}"#,
            br#"{"type":"exec","cmd":"a","size":3}"#,
            // Accepted by the decoder, but not plain enough for the scan: escapes,
            // nulls, floats, a pty, unknown keys, a repeated env name, big ids.
            br#"{"type":"exec","cmd":"a\"b"}"#,
            br#"{"type":"exec","cmd":"\u0061"}"#,
            br#"{"type":"exec","argv":["a\\b"]}"#,
            br#"{"type":"exec","argv":["x"],"env":{"A\n":"1"}}"#,
            br#"{"type":"exec","argv":["x"],"env":{"A":"\t"}}"#,
            br#"{"type":"\u0065xec","argv":["x"]}"#,
            br#"{"type":"exec","\u0063md":"x"}"#,
            br#"{"type":"exec","cmd":"a","cwd":null}"#,
            br#"{"type":"exec","cmd":null,"argv":["x"]}"#,
            br#"{"type":"exec","cmd":"a","timeout":1.5}"#,
            br#"{"type":"exec","cmd":"a","timeout":1e3}"#,
            br#"{"type":"exec","cmd":"a","timeout":30.0}"#,
            br#"{"type":"exec","cmd":"a","timeout":99999999999999999999}"#,
            br#"{"type":"exec","pty":{"term":"xterm","rows":24,"cols":80}}"#,
            br#"{"type":"exec","cmd":"a","future":1}"#,
            br#"{"type":"exec","cmd":"a","env":{"A":"1","A":"2"}}"#,
            br#"{"type":"exec","cmd":"a","id":99999999999999999999}"#,
            br#"{"type":"exec","cmd":"a","id":1.0}"#,
            br#"{"type":"exec","cmd":"a","id":[1]}"#,
            // A ping with exec fields, bad JSON, not UTF-8.
            br#"{"type":"ping","cmd":"a"}"#,
            br#"{"type":"exec","argv":["a",]}"#,
            br#"{"type":"exec","argv":["a"}"#,
            br#"{"type":"exec","env":{"a":"b",}}"#,
            br#"{"type":"exec","cmd":"a","stdin":tru}"#,
            br#"{"type":"exec","cmd":"a","stdin":truex}"#,
            br#"{"type":"exec","cmd":"a"} ,"#,
            b"{\"type\":\"exec\",\"cmd\":\"\xff\"}",
            b"{\"type\":\"exec\",\"argv\":[\"\xc3\"]}",
        ];
        for h in cases {
            assert_eq!(lean_req(h), None, "{}", String::from_utf8_lossy(h));
        }
    }

    proptest::proptest! {
        /// Headers spliced from JSON tokens, most of them nearly execs: the
        /// scan takes only what the decoder takes, and reads it the same.
        #[test]
        fn the_exec_scan_never_disagrees_with_the_decoder(
            picks in proptest::collection::vec(0usize..EXEC_TOKENS.len(), 1..24),
        ) {
            let h: Vec<u8> = picks.iter().flat_map(|&i| EXEC_TOKENS[i].bytes()).collect();
            let _ = lean_req(&h);
        }

        /// Well-formed execs of generated words: each one is read by the scan
        /// (none needs the decoder) and read as the decoder reads it.
        #[test]
        fn plain_execs_are_all_taken(
            words in proptest::collection::vec("[a-zA-Z0-9 /=.é-]{0,12}", 1..5),
            env in proptest::collection::btree_map("[A-Z_]{1,6}", "[a-z0-9 =]{0,8}", 0..4),
            id in proptest::option::of(proptest::num::i64::ANY),
            timeout in proptest::option::of(1u64..100_000),
            shell in proptest::bool::ANY,
            stdin in proptest::bool::ANY,
        ) {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), Value::from("exec"));
            if shell {
                m.insert("cmd".into(), Value::from(words.join(" ")));
            } else {
                m.insert("argv".into(), Value::from(words.clone()));
            }
            if !env.is_empty() {
                m.insert("env".into(), serde_json::to_value(&env).unwrap());
            }
            if let Some(id) = id {
                m.insert("id".into(), Value::from(id));
            }
            if let Some(t) = timeout {
                m.insert("timeout".into(), Value::from(t));
            }
            m.insert("stdin".into(), Value::from(stdin));
            let h = serde_json::to_vec(&m).unwrap();
            let got = lean_req(&h);
            proptest::prop_assert!(got.is_some_and(|g| g.0 == "exec"), "{}", String::from_utf8_lossy(&h));
        }
    }

    const EXEC_TOKENS: [&str; 32] = [
        "{", "}", r#""type""#, r#""exec""#, r#""id""#, r#""size""#, ":", ",", " ", "0", "7", "-",
        r#""cmd""#, r#""argv""#, r#""env""#, r#""cwd""#, r#""stdin""#, r#""login""#, r#""timeout""#,
        "true", "false", "null", "[", "]", r#""a b""#, r#""A""#, r#""\n""#, "1.5", r#""ping""#, "30",
        r#""pty""#, "\t",
    ];
}
