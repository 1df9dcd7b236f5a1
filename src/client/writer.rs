//! The writing half of a `Session`: whole frames from any thread (the
//! reading thread, stdin forwarding, signals), never interleaved; files
//! sent with sendfile(2) in clear, in chunks over TLS; `--trace` lines
//! with MACs redacted.
//!
//! Imports `stream` and `files` (and `proto`).

use super::files;
use super::stream::Link;
use crate::proto::frame::parse_header;
use crate::proto::msg::{self, SignalName};
use crate::proto::{encode_frame, encode_head};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// The writing half of a session: whole frames, from any thread.
#[derive(Clone)]
pub struct Writer {
    /// Held for a whole frame, so frames from two threads never interleave.
    pub(super) sock: Arc<Mutex<Link>>,
    pub(super) trace: bool,
}

/// Bodies up to this size are copied next to their header and sent in one
/// write; larger ones are written from where they are.
const COALESCE_BODY: usize = 16 * 1024;

impl Writer {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn send(&self, header: Map<String, Value>, body: &[u8]) -> io::Result<()> {
        if self.trace {
            // As it goes on the wire: with the body's size, as received frames show it.
            let mut shown = header.clone();
            if !body.is_empty() {
                shown.insert("size".into(), Value::from(body.len()));
            }
            trace(">", &shown);
        }
        if body.len() > COALESCE_BODY {
            let mut head = Vec::with_capacity(128);
            encode_head(&mut head, header, body.len() as u64);
            let mut sock = self.lock();
            sock.write_all(&head)?;
            return sock.write_all(body);
        }
        let mut buf = Vec::with_capacity(64 + body.len());
        encode_frame(&mut buf, header, body);
        self.lock().write_all(&buf)
    }

    /// Sends a frame header announcing a `size`-byte body, which the caller
    /// sends next (with `send_file`).
    pub fn send_head(&self, header: Map<String, Value>, size: u64) -> io::Result<()> {
        let mut head = Vec::with_capacity(128);
        encode_head(&mut head, header, size);
        self.send_raw(&head)
    }

    /// Sends up to `len` bytes of `file` from `*offset` to the socket with
    /// `sendfile(2)` (page cache to socket, no copy through ferry), falling
    /// back to read and write where the kernel cannot. Over TLS the file is
    /// read and encrypted in 64 KiB chunks (userspace TLS cannot sendfile).
    /// Advances `*offset`; the count sent, short only at the end of the file.
    pub fn send_file(&self, file: &File, offset: &mut u64, len: u64) -> io::Result<u64> {
        let mut guard = self.lock();
        let sock = match &mut *guard {
            Link::Plain(s) => s,
            tls @ Link::Tls(_) => return copy_at(file, offset, len, tls, TLS_CHUNK),
        };
        match files::sendfile_range(sock, file, offset, len)? {
            files::Sendfile::Done(sent) => Ok(sent),
            files::Sendfile::Unsupported { sent: 0, .. } => copy_at(file, offset, len, sock, 256 * 1024),
            files::Sendfile::Unsupported { err, .. } => Err(err),
        }
    }

    /// Sends frames already encoded (`encode_frame`), in one write: a tree
    /// batches its small files' puts. Traced frame by frame (the last may
    /// be a header whose body follows).
    pub fn send_encoded(&self, frames: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while self.trace && at + 4 <= frames.len() {
            let len = u32::from_be_bytes(frames[at..at + 4].try_into().expect("4 bytes")) as usize;
            let Some(Ok(h)) = frames.get(at + 4..at + 4 + len).map(parse_header) else { break };
            trace(">", &h.fields);
            at += 4 + len + h.size as usize;
        }
        self.lock().write_all(frames)
    }

    /// Sends one already encoded frame.
    pub(super) fn send_raw(&self, frame: &[u8]) -> io::Result<()> {
        if self.trace {
            if let Ok(h) = parse_header(&frame[4..]) {
                trace(">", &h.fields);
            }
        }
        self.lock().write_all(frame)
    }

    pub fn stdin(&self, bytes: &[u8]) -> io::Result<()> {
        self.send(msg::request::stdin(), bytes)
    }

    pub fn signal(&self, sig: SignalName) -> io::Result<()> {
        self.send(msg::request::signal(sig), &[])
    }
}

/// The chunk a TLS put reads and encrypts at a time (TLS-NOTES: 64 KiB
/// chunks ran faster than 16 KiB ones; four records each).
const TLS_CHUNK: usize = 64 * 1024;

/// `send_file` without `sendfile(2)`: positioned reads of `chunk` bytes, then writes.
fn copy_at(file: &File, offset: &mut u64, len: u64, sock: &mut dyn Write, chunk: usize) -> io::Result<u64> {
    files::read_chunks(file, offset, len, chunk, |c, _| sock.write_all(c))
}

pub(super) fn trace(dir: &str, header: &Map<String, Value>) {
    crate::errln!("ferry: {dir} {}", redacted(header));
}

/// A header as `--trace` shows it: any MAC redacted.
pub(crate) fn redacted(header: &Map<String, Value>) -> Value {
    let mut h = header.clone();
    if h.contains_key("mac") {
        h.insert("mac".into(), Value::from("<redacted>"));
    }
    Value::Object(h)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_never_show_a_mac() {
        let h = msg::auth("k", "00", "secretmac");
        assert_eq!(redacted(&h)["mac"], "<redacted>");
        assert_eq!(redacted(&h)["key_id"], "k");
    }
}
