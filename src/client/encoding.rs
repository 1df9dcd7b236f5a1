//! `--encoding LABEL`: the remote command's output shown as UTF-8 text.
//!
//! ferry moves output bytes untouched. When asked, the client decodes each
//! stream from a legacy encoding (a WHATWG label: `gbk`, `shift_jis`,
//! `windows-1252`, `utf-16le`...) with `encoding_rs`, one streaming decoder
//! per stream, so a character whose bytes arrive in two frames comes out
//! whole; invalid sequences become U+FFFD. Only command output is decoded:
//! the wire and `ferry get` stay byte-exact.

use encoding_rs::{CoderResult, Decoder, Encoding};
use std::io::{self, Write};

/// The environment variable read when `--encoding` is not given.
pub const ENV: &str = "FERRY_ENCODING";

/// The encoding a WHATWG label names. Labels that the standard maps to its
/// "replacement" encoding (`iso-2022-kr`, `hz-gb-2312`...), which would turn
/// all output into one U+FFFD, are refused like unknown ones.
pub fn lookup(label: &str) -> Result<&'static Encoding, String> {
    Encoding::for_label_no_replacement(label.trim().as_bytes())
        .ok_or_else(|| format!("unknown encoding \"{label}\" (expected a WHATWG label such as gbk, shift_jis, big5, euc-kr, windows-1252, utf-16le)"))
}

/// The encoding to decode output from: `--encoding` when given, else a
/// non-empty `$FERRY_ENCODING`, else none (bytes as they come). The error
/// names the label and where it came from.
pub fn choose(flag: Option<&str>, env: Option<&str>) -> Result<Option<&'static Encoding>, String> {
    match (flag, env) {
        (Some(label), _) => lookup(label).map(Some).map_err(|e| format!("--encoding: {e}")),
        (None, Some(label)) if !label.trim().is_empty() => lookup(label).map(Some).map_err(|e| format!("{ENV}: {e}")),
        _ => Ok(None),
    }
}

/// A writer that decodes what is written to it from `encoding` and writes
/// UTF-8 to `inner`. A character cut at the end of one `write` is completed
/// by the next; `flush` flushes `inner` but keeps such a partial character.
/// Call `finish` at the end of the stream: a character still incomplete
/// then becomes U+FFFD.
pub struct Decoding<W: Write> {
    inner: W,
    decoder: Decoder,
    out: Vec<u8>,
    finished: bool,
}

/// Decoded output is produced in pieces of this size.
const CHUNK: usize = 16 * 1024;

impl<W: Write> Decoding<W> {
    /// Decodes from `encoding`, dropping a byte order mark of that encoding
    /// at the very start (as text viewers do); any other BOM is decoded as
    /// what it is in `encoding`.
    pub fn new(encoding: &'static Encoding, inner: W) -> Decoding<W> {
        Decoding { inner, decoder: encoding.new_decoder_with_bom_removal(), out: vec![0; CHUNK], finished: false }
    }

    fn decode(&mut self, mut src: &[u8], last: bool) -> io::Result<()> {
        loop {
            let (result, read, written, _) = self.decoder.decode_to_utf8(src, &mut self.out, last);
            self.inner.write_all(&self.out[..written])?;
            src = &src[read..];
            if result == CoderResult::InputEmpty {
                return Ok(());
            }
        }
    }

    /// Ends the stream: writes what the decoder holds (U+FFFD for an
    /// incomplete character) and flushes. Later calls do nothing.
    pub fn finish(&mut self) -> io::Result<()> {
        if !self.finished {
            self.finished = true;
            self.decode(&[], true)?;
        }
        self.inner.flush()
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Decoding<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("write after the decoder finished"));
        }
        self.decode(buf, false)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Either the bytes as they come or a decoding writer: what `ferry run`
/// and the session write output through.
pub enum Output<W: Write> {
    Raw(W),
    Decoded(Decoding<W>),
}

impl<W: Write> Output<W> {
    pub fn new(encoding: Option<&'static Encoding>, inner: W) -> Output<W> {
        match encoding {
            Some(e) => Output::Decoded(Decoding::new(e, inner)),
            None => Output::Raw(inner),
        }
    }

    /// Ends the stream (see `Decoding::finish`); flushes.
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            Output::Raw(w) => w.flush(),
            Output::Decoded(d) => d.finish(),
        }
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Raw(w) => w.write(buf),
            Output::Decoded(d) => d.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Output::Raw(w) => w.write_all(buf),
            Output::Decoded(d) => d.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Raw(w) => w.flush(),
            Output::Decoded(d) => d.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENTENCE: &str = "你好，世界！这是一个测试。";
    /// SENTENCE in GBK (from iconv), two bytes a character.
    const SENTENCE_GBK: &[u8] = b"\xc4\xe3\xba\xc3\xa3\xac\xca\xc0\xbd\xe7\xa3\xa1\xd5\xe2\xca\xc7\xd2\xbb\xb8\xf6\xb2\xe2\xca\xd4\xa1\xa3";

    fn decode_frames(label: &str, frames: &[&[u8]]) -> String {
        let mut d = Decoding::new(lookup(label).unwrap(), Vec::new());
        for f in frames {
            d.write_all(f).unwrap();
            d.flush().unwrap(); // as after every output frame: must not end a character
        }
        d.finish().unwrap();
        String::from_utf8(d.into_inner()).expect("the output is UTF-8")
    }

    #[test]
    fn gbk_split_at_every_byte_decodes_whole() {
        assert_eq!(decode_frames("gbk", &[SENTENCE_GBK]), SENTENCE);
        for cut in 0..=SENTENCE_GBK.len() {
            let (a, b) = SENTENCE_GBK.split_at(cut);
            assert_eq!(decode_frames("gbk", &[a, b]), SENTENCE, "cut at byte {cut}");
        }
        // Byte by byte, too.
        let bytes: Vec<&[u8]> = SENTENCE_GBK.chunks(1).collect();
        assert_eq!(decode_frames("GBK", &bytes), SENTENCE);
    }

    #[test]
    fn other_encodings_split_across_frames() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("日本語のテキスト");
        let (a, b) = sjis.split_at(3);
        assert_eq!(decode_frames("shift_jis", &[a, b]), "日本語のテキスト");
        let utf16: Vec<u8> = "añb€".encode_utf16().flat_map(u16::to_le_bytes).collect();
        for cut in 0..=utf16.len() {
            let (a, b) = utf16.split_at(cut);
            assert_eq!(decode_frames("utf-16le", &[a, b]), "añb€");
        }
        assert_eq!(decode_frames("windows-1252", &[b"caf\xe9 \x80"]), "café €");
        assert_eq!(decode_frames("latin1", &[b"\xe9"]), "é", "latin1 is windows-1252 in WHATWG");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        // 0xff is never a GBK lead byte; 0x81 0x20 is a lead byte without a valid trail.
        assert_eq!(decode_frames("gbk", &[b"a\xffb"]), "a\u{fffd}b");
        assert_eq!(decode_frames("gbk", &[b"a\x81", b" b"]), "a\u{fffd} b");
        // A character cut by the end of the stream.
        assert_eq!(decode_frames("gbk", &[b"ok\xc4"]), "ok\u{fffd}");
        assert_eq!(decode_frames("utf-8", &[b"\xe4\xbd", b"\xa0\xc3"]), "你\u{fffd}");
    }

    #[test]
    fn labels() {
        for good in ["gbk", "GB2312", " gb18030 ", "shift_jis", "sjis", "big5", "euc-kr", "windows-1252", "utf-16le", "utf-8"] {
            assert!(lookup(good).is_ok(), "{good}");
        }
        for bad in ["klingon", "", "iso-2022-kr", "hz-gb-2312"] {
            let e = lookup(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
        assert_eq!(choose(None, None).unwrap(), None);
        assert_eq!(choose(None, Some("")).unwrap(), None);
        assert_eq!(choose(None, Some("gbk")).unwrap(), Some(encoding_rs::GBK));
        assert_eq!(choose(Some("big5"), Some("gbk")).unwrap(), Some(encoding_rs::BIG5));
        assert!(choose(Some("nope"), None).unwrap_err().starts_with("--encoding: unknown encoding \"nope\""));
        assert!(choose(None, Some("nope")).unwrap_err().starts_with("FERRY_ENCODING: unknown encoding \"nope\""));
    }

    #[test]
    fn raw_output_passes_bytes() {
        let mut o = Output::new(None, Vec::new());
        o.write_all(b"\xc4\xe3\xff").unwrap();
        o.finish().unwrap();
        let Output::Raw(v) = o else { panic!() };
        assert_eq!(v, b"\xc4\xe3\xff");
    }
}
