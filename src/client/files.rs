//! File requests on a `Session`: `get`, sized and streaming `put`, `list`
//! and `stat`.
//!
//! Bodies stream: a `get` body goes from the socket buffer to the caller's
//! writer chunk by chunk, a sized `put` body goes from the page cache to the
//! socket with `sendfile(2)` (`Writer::send_file`), and a
//! streaming `put` sends `data` frames of at most `DATA_CHUNK` bytes. No
//! request holds a whole file in memory.
//!
//! Each `put` reads exactly one reply frame (`ok` or `error`), whether the
//! server answered early (a bad path, say, right after the header) or at the
//! end. When a put cannot be completed (the local file shrank or failed to
//! read, the socket failed), the session shuts down its sending half rather
//! than end the body: the server then drops the temporary file, and the
//! session is not usable any more.

use super::{Error, Session};
use crate::proto::frame::Header;
use crate::proto::msg::{self, Digest, Entry, Kind, Reply};
use crate::proto::{ErrorCode, ProtoError};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::net::Shutdown;

/// The largest `data` frame a streaming put sends.
pub const DATA_CHUNK: usize = 256 * 1024;
/// How much of a file is sent between progress reports.
const SEND_CHUNK: u64 = 4 * 1024 * 1024;

/// The `file` header of a `get` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    /// Bytes in the body: `file_size - offset`.
    pub size: u64,
    pub file_size: u64,
    /// Permission bits, when the server gave them.
    pub mode: Option<u32>,
    /// Modification time in Unix seconds, when the server gave it.
    pub mtime: Option<i64>,
    pub offset: u64,
}

/// The `ok` reply to a `put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOk {
    pub path: String,
    pub file_size: u64,
    /// The digest the server computed over what it wrote.
    pub sha256: String,
}

/// What `get_body` does when the local writer fails half way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLocalError {
    /// Return at once; the session is left inside the reply (drop it).
    Return,
    /// Read and drop the rest of the reply first, so the session stays usable.
    Drain,
}

fn u64_field(h: &Header, key: &str) -> Result<u64, Error> {
    h.fields
        .get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Protocol(format!("{} without a valid {key:?}", h.kind)))
}

fn str_field(h: &Header, key: &str) -> Result<String, Error> {
    h.str(key).map(str::to_string).ok_or_else(|| Error::Protocol(format!("{} without a valid {key:?}", h.kind)))
}

fn kind_field(h: &Header) -> Result<Kind, Error> {
    let v = h.fields.get("kind").cloned().unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|_| Error::Protocol(format!("{} without a valid \"kind\"", h.kind)))
}

fn mode_field(h: &Header) -> Option<u32> {
    h.fields.get("mode").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok())
}

/// A frame that should not be here: a protocol error, unless it is an error frame.
fn unexpected(h: &Header, wanted: &str) -> Error {
    match Reply::from_header(h) {
        Reply::Error(e) => Error::Remote(e),
        _ => Error::Protocol(format!("expected {wanted}, got {:?}", h.kind)),
    }
}

fn is_socket_gone(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected)
}

impl Session {
    /// Reads the next reply header, skipping its body if it is not `wanted`.
    /// An error frame becomes `Error::Remote`.
    fn expect_reply(&mut self, wanted: &str) -> Result<Header, Error> {
        let h = self.recv_header()?;
        if h.kind == wanted {
            return Ok(h);
        }
        self.copy_body(h.size, &mut io::sink())?;
        Err(unexpected(&h, wanted))
    }

    /// Sends a `get` and reads its `file` header. The body follows: read it
    /// with `get_body`. A remote error (not-found, bad-path...) leaves the
    /// session ready for the next request.
    pub fn get_start(&mut self, path: &str, offset: u64, digest: Digest) -> Result<FileInfo, Error> {
        self.send(msg::request::get(path, offset, digest), &[])?;
        self.get_reply(path, offset)
    }

    /// Reads the `file` header answering a `get` of `path` from `offset`
    /// sent earlier (a tree pipelines its gets).
    pub fn get_reply(&mut self, path: &str, offset: u64) -> Result<FileInfo, Error> {
        let h = self.expect_reply("file")?;
        let info = FileInfo {
            path: h.str("path").unwrap_or(path).to_string(),
            size: h.size,
            file_size: u64_field(&h, "file_size")?,
            mode: mode_field(&h),
            mtime: h.fields.get("mtime").and_then(Value::as_i64),
            offset: h.fields.get("offset").and_then(Value::as_u64).unwrap_or(0),
        };
        if info.offset != offset || info.offset.checked_add(info.size) != Some(info.file_size) {
            return Err(Error::Protocol(format!(
                "file header for offset {offset} says offset {}, size {}, file_size {}",
                info.offset, info.size, info.file_size
            )));
        }
        Ok(info)
    }

    /// Copies a `get` body to `out` and reads the closing `done`: the
    /// server's SHA-256 of the whole file (None when no digest was asked).
    pub fn get_body(
        &mut self,
        info: &FileInfo,
        out: &mut dyn io::Write,
        on_local: OnLocalError,
    ) -> Result<Option<String>, Error> {
        let mut copied = 0;
        if let Err(e) = self.copy_body_counting(info.size, out, &mut copied) {
            if let (Error::Local(_), OnLocalError::Drain) = (&e, on_local) {
                self.copy_body(info.size - copied, &mut io::sink())?;
                self.expect_reply("done")?;
            }
            return Err(e);
        }
        let done = self.expect_reply("done")?;
        self.copy_body(done.size, &mut io::sink())?;
        Ok(done.str("sha256").map(str::to_string))
    }

    /// A whole `get` from `offset`: the `file` header and the server's digest.
    pub fn get(
        &mut self,
        path: &str,
        offset: u64,
        digest: Digest,
        out: &mut dyn io::Write,
    ) -> Result<(FileInfo, Option<String>), Error> {
        let info = self.get_start(path, offset, digest)?;
        let sha = self.get_body(&info, out, OnLocalError::Return)?;
        Ok((info, sha))
    }

    /// Puts `size` bytes of `file` (from its start) at `path`. `progress` is
    /// called with each count of bytes sent. With `sha256`, the server checks
    /// the digest before it commits.
    pub fn put_file(
        &mut self,
        path: &str,
        file: &File,
        size: u64,
        mode: Option<u32>,
        sha256: Option<&str>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutOk, Error> {
        let header = msg::request::put(path, mode, sha256, false);
        let sent = self.writer.send_head(header, size).and_then(|()| {
            let (mut offset, mut left) = (0, size);
            while left > 0 {
                let n = self.writer.send_file(file, &mut offset, left.min(SEND_CHUNK))?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent"));
                }
                left -= n;
                progress(n);
            }
            Ok(())
        });
        match sent {
            Ok(()) => self.put_reply(),
            Err(e) => Err(self.abort_put(e)),
        }
    }

    /// Puts everything `input` yields at `path` as a streaming put, in
    /// `data` frames of at most `DATA_CHUNK` bytes. The server's digest is
    /// checked against what was sent: a difference is `digest-mismatch`.
    ///
    /// With `input_fd` (the unbuffered descriptor `input` reads), the socket
    /// is watched while the input has nothing: a server that closes or
    /// answers ends the put at once, not when the input next yields.
    pub fn put_stream(
        &mut self,
        path: &str,
        mode: Option<u32>,
        input: &mut dyn Read,
        input_fd: Option<std::os::fd::RawFd>,
    ) -> Result<PutOk, Error> {
        self.send(msg::request::put(path, mode, None, true), &[])?;
        let mut buf = vec![0u8; DATA_CHUNK];
        let mut hasher = Sha256::new();
        loop {
            // An early error ends the stream now: the reply is already here.
            if self.reply_waiting() {
                break;
            }
            if let Some(fd) = input_fd {
                if !self.wait_for_input(fd)? {
                    continue;
                }
            }
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = self.reader.get_ref().shutdown(Shutdown::Write);
                    return Err(Error::LocalRead(e));
                }
            };
            hasher.update(&buf[..n]);
            if let Err(e) = self.writer.send(msg::request::data(), &buf[..n]) {
                return Err(self.abort_put(e));
            }
        }
        if let Err(e) = self.writer.send(msg::request::data(), &[]) {
            return Err(self.abort_put(e));
        }
        let ok = self.put_reply()?;
        let local = crate::proto::auth::to_hex(&hasher.finalize());
        if !ok.sha256.eq_ignore_ascii_case(&local) {
            let m = format!("{:?}: the server stored sha256 {} but {local} was sent", ok.path, ok.sha256);
            return Err(Error::Remote(ProtoError::new(ErrorCode::DigestMismatch, m)));
        }
        Ok(ok)
    }

    /// Waits until `fd` has input (true) or the socket has something
    /// (false: a reply to read); the server's close is `UnexpectedEof`.
    fn wait_for_input(&self, fd: std::os::fd::RawFd) -> Result<bool, Error> {
        use std::os::fd::AsRawFd;
        let sock = self.reader.get_ref().as_raw_fd();
        loop {
            let mut fds = [
                libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: sock, events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: two valid pollfd structs.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::LocalRead(e));
            }
            if fds[1].revents != 0 {
                if self.reply_waiting() {
                    return Ok(false);
                }
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            if fds[0].revents != 0 {
                return Ok(true);
            }
        }
    }

    /// True when reply bytes have arrived (without blocking).
    fn reply_waiting(&self) -> bool {
        use std::os::fd::AsRawFd;
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let mut b = 0u8;
        let fd = self.reader.get_ref().as_raw_fd();
        // SAFETY: a one-byte peek into a live local buffer on our own socket.
        let n = unsafe { libc::recv(fd, (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n > 0
    }

    /// Reads the one reply to a put: `ok` or an error.
    pub fn put_reply(&mut self) -> Result<PutOk, Error> {
        let h = self.expect_reply("ok")?;
        self.copy_body(h.size, &mut io::sink())?;
        Ok(PutOk {
            path: str_field(&h, "path")?,
            file_size: u64_field(&h, "file_size")?,
            sha256: str_field(&h, "sha256")?,
        })
    }

    /// A put body could not be finished: stop sending (the server drops the
    /// temporary file) and prefer the server's own error, if it sent one.
    fn abort_put(&mut self, e: io::Error) -> Error {
        let _ = self.reader.get_ref().shutdown(Shutdown::Write);
        match self.put_reply() {
            Err(Error::Remote(r)) => Error::Remote(r),
            _ if is_socket_gone(&e) || e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
                Error::Io(e)
            }
            _ => Error::LocalRead(e),
        }
    }

    /// The raw body of a `listing` reply: a JSON array of entries.
    pub fn list_raw(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        self.send(msg::request::list(path), &[])?;
        let h = self.expect_reply("listing")?;
        self.read_body(h.size)
    }

    /// A directory's entries, sorted by name (as the server sends them).
    pub fn list(&mut self, path: &str) -> Result<Vec<Entry>, Error> {
        let body = self.list_raw(path)?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("listing body: {e}")))
    }

    /// What is at `path`, as the `stat` reply's fields (`name` is the path).
    pub fn stat(&mut self, path: &str) -> Result<Entry, Error> {
        Ok(self.stat_fields(path)?.1)
    }

    /// The `stat` reply: its header fields (without `type`, `size`, `id`) and as an `Entry`.
    pub fn stat_fields(&mut self, path: &str) -> Result<(Map<String, Value>, Entry), Error> {
        self.send(msg::request::stat(path), &[])?;
        let h = self.expect_reply("stat")?;
        self.copy_body(h.size, &mut io::sink())?;
        let entry = Entry {
            name: h.str("path").unwrap_or(path).to_string(),
            kind: kind_field(&h)?,
            file_size: u64_field(&h, "file_size")?,
            mode: mode_field(&h).unwrap_or(0),
            mtime: h.fields.get("mtime").and_then(Value::as_i64).unwrap_or(0),
            name_hex: None,
            target: None,
        };
        let mut fields = h.fields;
        for k in ["type", "size", "id"] {
            fields.remove(k);
        }
        Ok((fields, entry))
    }
}
