//! What a fan-out prints: each host's output as `HOST: line` lines (buffered
//! per host and stream until the newline, so no line mixes two hosts), the
//! `-b` groups, the `json` objects and the summary. Owns our stdout and its
//! SIGPIPE state. Imports `outcome` and `hosts` (to fold names) only.

use super::hosts;
use super::outcome::Outcome;
use crate::proto::digest::Digest;
use crate::proto::msg::Stream;
use encoding_rs::Encoding;
use serde_json::{json, Value};
use std::io::{self, Write};

/// A line longer than this without a newline is written as a line of its own.
const MAX_LINE: usize = 64 * 1024;

/// Our stdout (buffered; given up once a write fails, the error kept for
/// the exit status) and stderr.
pub(super) struct Out {
    stdout: io::BufWriter<crate::term::Stdout>,
    /// The first error writing stdout: EPIPE (its reader went away) or
    /// another (a full disk...).
    pub(super) failed: Option<io::Error>,
}

impl Out {
    pub(super) fn new() -> Out {
        Out { stdout: io::BufWriter::with_capacity(64 * 1024, crate::term::stdout()), failed: None }
    }

    pub(super) fn stdout(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            if let Err(e) = self.stdout.write_all(bytes) {
                self.failed = Some(e);
            }
        }
    }

    /// Stderr, after what stdout holds, so the two interleave as they came.
    pub(super) fn stderr(&mut self, bytes: &[u8]) {
        self.flush();
        crate::term::err(bytes);
    }

    pub(super) fn write(&mut self, stream: Stream, bytes: &[u8]) {
        match stream {
            Stream::Stdout => self.stdout(bytes),
            Stream::Stderr => self.stderr(bytes),
        }
    }

    pub(super) fn flush(&mut self) {
        if self.failed.is_none() {
            if let Err(e) = self.stdout.flush() {
                self.failed = Some(e);
            }
        }
    }
}

/// One host's output: partial lines (stream), or everything (gather, json).
pub(super) struct Lines {
    pub(super) out: Vec<u8>,
    pub(super) err: Vec<u8>,
    /// `--encoding`: one decoder per stream.
    decoders: Option<(encoding_rs::Decoder, encoding_rs::Decoder)>,
}

impl Lines {
    pub(super) fn new(encoding: Option<&'static Encoding>) -> Lines {
        let decoders = encoding.map(|e| (e.new_decoder_with_bom_removal(), e.new_decoder_with_bom_removal()));
        Lines { out: Vec::new(), err: Vec::new(), decoders }
    }

    /// Appends output bytes (decoded when asked).
    pub(super) fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        match &mut self.decoders {
            Some((d_out, d_err)) => {
                let d = if stream == Stream::Stdout { d_out } else { d_err };
                decode_into(d, bytes, false, buf);
            }
            None => buf.extend_from_slice(bytes),
        }
    }

    /// The end of the output: what the decoders still hold.
    pub(super) fn flush_decoders(&mut self) {
        if let Some((d_out, d_err)) = &mut self.decoders {
            decode_into(d_out, &[], true, &mut self.out);
            decode_into(d_err, &[], true, &mut self.err);
        }
    }

    /// Takes the complete lines of `stream` (at the end, `all`, the rest
    /// too, with a newline), each prefixed with `name: `.
    pub(super) fn take_lines(&mut self, stream: Stream, all: bool, name: &str) -> Option<Vec<u8>> {
        let buf = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        let cut = match buf.iter().rposition(|&b| b == b'\n') {
            _ if all => buf.len(),
            Some(p) => p + 1,
            None if buf.len() >= MAX_LINE => buf.len(),
            None => 0,
        };
        if cut == 0 {
            return None;
        }
        let prefix = format!("{}: ", crate::term::escape(name));
        let mut text = Vec::with_capacity(cut + 16);
        for line in buf[..cut].split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(prefix.as_bytes());
            text.extend_from_slice(line);
            if line.last() != Some(&b'\n') {
                text.push(b'\n');
            }
        }
        buf.drain(..cut);
        Some(text)
    }
}

/// Decodes `bytes` with `d` and appends the UTF-8 to `out`.
fn decode_into(d: &mut encoding_rs::Decoder, mut bytes: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        let (result, read, written, _) = d.decode_to_utf8(bytes, &mut buf, last);
        out.extend_from_slice(&buf[..written]);
        bytes = &bytes[read..];
        if result == encoding_rs::CoderResult::InputEmpty {
            return;
        }
    }
}

/// One finished host as a `json` line; `rtts` for a ping; for a get or a
/// put, `"digest"` names the digest used and, once checked, the field named
/// after it holds its hex.
pub(super) fn json_line(
    name: &str,
    o: &Outcome,
    lines: &Lines,
    duration: f64,
    rtts: Option<&[f64]>,
    digest: Option<(Digest, Option<&str>)>,
) -> String {
    let (code, signal) = match o {
        Outcome::Exited { code, signal } => (json!(code), json!(signal)),
        Outcome::Done => (json!(0), Value::Null),
        Outcome::SpawnFailed(_) | Outcome::FileError(_) => (json!(o.status()), Value::Null),
        _ => (Value::Null, Value::Null),
    };
    let error = match o {
        Outcome::Exited { .. } | Outcome::Done => Value::Null,
        _ => json!(o.why()),
    };
    let mut v = json!({
        "host": name,
        "status": o.category(),
        "code": code,
        "signal": signal,
        "stdout": String::from_utf8_lossy(&lines.out),
        "stderr": String::from_utf8_lossy(&lines.err),
        "duration": (duration * 1e6).round() / 1e6,
        "error": error,
    });
    if let Some(rtts) = rtts {
        v["rtt_ms"] = json!(rtts);
    }
    if let Some((d, hex)) = digest {
        v["digest"] = json!(d.as_str());
        if let Some(h) = hex {
            v[d.as_str()] = json!(h);
        }
    }
    let mut line = v.to_string();
    line.push('\n');
    line
}

/// `-b`: each distinct stdout once, under the hosts (name, stdout) that gave it.
pub(super) fn gathered<'a>(hosts: impl Iterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut groups: Vec<(&[u8], Vec<String>)> = Vec::new();
    for (name, out) in hosts {
        if out.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == out) {
            Some(g) => g.1.push(name.to_string()),
            None => groups.push((out, vec![name.to_string()])),
        }
    }
    let mut text = Vec::new();
    for (out, names) in groups {
        let title = format!("{} ({})", crate::term::escape(&hosts::fold(&names)), names.len());
        let rule = "-".repeat(title.chars().count().clamp(15, 78));
        text.extend_from_slice(format!("{rule}\n{title}\n{rule}\n").as_bytes());
        text.extend_from_slice(out);
        if out.last() != Some(&b'\n') {
            text.push(b'\n');
        }
    }
    text
}

/// The summary for stderr: its head (left out when `quiet` and all went
/// well), then a line for each host that did not.
pub(super) fn summary<'a>(hosts: impl ExactSizeIterator<Item = (&'a str, &'a Outcome)>, quiet: bool) -> String {
    let n = hosts.len();
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    let mut lines = String::new();
    let mut all_ok = true;
    for (name, o) in hosts {
        let cat = o.category();
        match counts.iter_mut().find(|c| c.0 == cat) {
            Some(c) => c.1 += 1,
            None => counts.push((cat, 1)),
        }
        if cat != "ok" {
            let why = o.why().unwrap_or_default();
            let (name, why) = (crate::term::escape(name), crate::term::escape(&why));
            lines.push_str(&format!("ferry: {cat}: {name}: {why}\n"));
        }
        all_ok &= o.status() == 0;
    }
    counts.sort_by_key(|c| Outcome::rank(c.0));
    let parts: Vec<String> = counts.iter().map(|(c, k)| format!("{k} {c}")).collect();
    let head = format!("ferry: {n} host{}: {}\n", if n == 1 { "" } else { "s" }, parts.join(", "));
    if !(quiet && all_ok) {
        lines.insert_str(0, &head);
    }
    lines
}
