//! File requests on a `Session`: `get`, sized and streaming `put`, `list`
//! and `stat`.
//!
//! Bodies stream: a `get` body goes from the socket to the caller's writer
//! in pieces of up to `GET_CHUNK` bytes, a sized `put` body is read once,
//! hashed and sent (`Writer::send_file_hashed`) with its digest in a
//! `trailer` frame after it, and a streaming `put` sends `data` frames of at
//! most `DATA_CHUNK` bytes, then its trailer. No request holds a whole file in
//! memory.
//!
//! The digest is the best the server announced in `hello` (`blake3`, else
//! `sha256`), or the one asked for (`--digest`, `none` included). An older
//! server announces none: it gets sha256, and a sized put hashes the file
//! first and sends the digest in the header, as before; a streaming put is
//! checked against the server's `ok` instead.
//!
//! Each `put` reads exactly one reply frame (`ok` or `error`), whether the
//! server answered early (a bad path, say, right after the header) or at the
//! end. When a put cannot be completed (the local file shrank or failed to
//! read, the socket failed), the session shuts down its sending half rather
//! than end the body: the server then drops the temporary file, and the
//! session is not usable any more.

use super::stream::Link;
use super::{Error, Session, Writer};
use crate::proto::digest::Hasher;
use std::io::Write;
use crate::proto::frame::Header;
use crate::proto::msg::request::PutDigest;
use crate::proto::msg::{self, Digest, Entry, Kind, Reply};
use crate::proto::{ErrorCode, ProtoError};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};

/// The largest `data` frame a streaming put sends.
pub const DATA_CHUNK: usize = 256 * 1024;
/// How much of a file is sent between progress reports.
const SEND_CHUNK: u64 = 4 * 1024 * 1024;
/// A get body bigger than this is read straight from the socket in pieces
/// of up to this size, each written with one write (large writes to disk).
pub const GET_CHUNK: usize = 1024 * 1024;

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
    /// The digest asked for: the field `done` carries it in.
    pub digest: Digest,
}

/// The `ok` reply to a `put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOk {
    pub path: String,
    pub file_size: u64,
    /// The digest the server computed over what it wrote, and its hex
    /// (None with `none`).
    pub digest: Digest,
    pub hex: Option<String>,
}

/// What `get_body` does when the local writer fails half way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLocalError {
    /// Return at once; the session is left inside the reply (drop it).
    Return,
    /// Read and drop the rest of the reply first, so the session stays usable.
    Drain,
}

/// How a put of a file that changed while it was sent is reported (after
/// its path): the server was made to store nothing.
pub const CHANGED: &str = "changed while it was sent; nothing stored";

/// The chunk a put reads and hashes at a time before it sends it: small
/// enough to stay in cache between the read, the hash and the send.
const HASH_SEND_CHUNK: usize = 256 * 1024;

impl Writer {
    /// As `send_file`, hashing what is sent: each chunk is read once into a
    /// buffer (in cache) and hashed there, then sent, with `sendfile(2)` from
    /// the page cache in clear (the bytes are not copied again), or
    /// encrypted from the buffer over TLS. The file is read once, and the
    /// digest is known when the last byte is sent.
    pub fn send_file_hashed(&self, file: &File, offset: &mut u64, len: u64, hasher: &mut Hasher) -> io::Result<u64> {
        read_chunks(file, offset, len, HASH_SEND_CHUNK, |chunk, at| {
            hasher.update(chunk);
            let mut guard = self.lock();
            match &mut *guard {
                Link::Plain(sock) => match sendfile_range(sock, file, &mut { at }, chunk.len() as u64)? {
                    Sendfile::Done(n) if n < chunk.len() as u64 => {
                        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent"))
                    }
                    Sendfile::Done(_) => Ok(()),
                    Sendfile::Unsupported { sent, .. } => sock.write_all(&chunk[sent as usize..]),
                },
                tls @ Link::Tls(_) => tls.write_all(chunk),
            }
        })
    }
}

/// Reads up to `len` bytes of `file` from `*offset` in positioned reads of
/// at most `chunk` bytes, and hands each to `each` with the offset it was
/// read at; `*offset` moves past each chunk once `each` took it. Stops
/// early where the file ends. Returns the bytes handed on.
pub(super) fn read_chunks(
    file: &File,
    offset: &mut u64,
    len: u64,
    chunk: usize,
    mut each: impl FnMut(&[u8], u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; chunk];
    let mut sent = 0;
    while sent < len {
        let want = (len - sent).min(buf.len() as u64) as usize;
        let n = crate::sys::read_chunk_at(file, &mut buf[..want], *offset)?;
        if n == 0 {
            break;
        }
        each(&buf[..n], *offset)?;
        *offset += n as u64;
        sent += n as u64;
    }
    Ok(sent)
}

/// How a `sendfile_range` ended.
pub(super) enum Sendfile {
    /// All the bytes asked for, or fewer where the file ended.
    Done(u64),
    /// sendfile(2) cannot go from this file to this socket (EINVAL, ENOSYS,
    /// EOPNOTSUPP) after `sent` bytes: the caller copies the rest.
    Unsupported { sent: u64, err: io::Error },
}

/// Sends up to `len` bytes of `file` from `*offset` to `sock` with
/// sendfile(2) (calls of at most 1 GiB, retried on EINTR), `*offset`
/// moving past what went.
pub(super) fn sendfile_range(sock: &TcpStream, file: &File, offset: &mut u64, len: u64) -> io::Result<Sendfile> {
    use rustix::io::Errno;
    let mut sent = 0;
    while sent < len {
        let want = (len - sent).min(1 << 30) as usize;
        match rustix::fs::sendfile(sock, file, Some(&mut *offset), want) {
            Ok(0) => break,
            Ok(n) => sent += n as u64,
            Err(Errno::INTR) => {}
            Err(e @ (Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)) => return Ok(Sendfile::Unsupported { sent, err: e.into() }),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Sendfile::Done(sent))
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

/// The digest of the first `size` bytes of `file` (an older server's put,
/// whose digest goes in the header: the file is read once more).
fn hash_file(file: &File, size: u64, digest: Digest) -> Result<String, Error> {
    let mut h = digest.hasher().expect("a digest, not none");
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0;
    while at < size {
        let want = (size - at).min(buf.len() as u64) as usize;
        let n = crate::sys::read_chunk_at(file, &mut buf[..want], at).map_err(Error::LocalRead)?;
        if n == 0 {
            return Err(Error::LocalRead(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read")));
        }
        h.update(&buf[..n]);
        at += n as u64;
    }
    Ok(h.hex())
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
    /// The digest a transfer uses: `asked` (`--digest`), else the best the
    /// server announced. A digest the server does not announce is refused
    /// here, before any request.
    pub fn pick_digest(&self) -> Result<Digest, Error> {
        let asked = self.digest_asked;
        let offered = self.digests.as_deref().unwrap_or(&[Digest::Sha256]);
        match asked {
            None => Ok(Digest::best(offered)),
            Some(d) if d == Digest::None || offered.contains(&d) => Ok(d),
            Some(d) => {
                let names: Vec<&str> = offered.iter().map(|d| d.as_str()).collect();
                let m = format!("the server does not offer the {} digest (it offers {})", d.as_str(), names.join(", "));
                Err(Error::Remote(ProtoError::new(ErrorCode::BadRequest, m)))
            }
        }
    }

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
        self.get_reply(path, offset, digest)
    }

    /// Reads the `file` header answering a `get` of `path` from `offset`
    /// sent earlier with `digest` (a tree pipelines its gets).
    pub fn get_reply(&mut self, path: &str, offset: u64, digest: Digest) -> Result<FileInfo, Error> {
        let h = self.expect_reply("file")?;
        let info = FileInfo {
            path: h.str("path").unwrap_or(path).to_string(),
            size: h.size,
            file_size: u64_field(&h, "file_size")?,
            mode: mode_field(&h),
            mtime: h.fields.get("mtime").and_then(Value::as_i64),
            offset: h.fields.get("offset").and_then(Value::as_u64).unwrap_or(0),
            digest,
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
    /// server's digest of the whole file, as hex (None when none was asked).
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
        if info.digest == Digest::None {
            return Ok(None);
        }
        Ok(done.str(info.digest.as_str()).map(str::to_string))
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

    /// Puts `size` bytes of `file` (from its start) at `path`, with the
    /// digest `digest` (from `pick_digest`). `progress` is called with each
    /// count of bytes sent. The server checks the digest before it commits:
    /// a server that announced digests gets it in a trailer, computed as the
    /// file is sent; an older one gets the sha256 in the header, computed first.
    pub fn put_file(
        &mut self,
        path: &str,
        file: &File,
        size: u64,
        mode: Option<u32>,
        digest: Digest,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PutOk, Error> {
        let old_style = self.digests.is_none() && digest != Digest::None;
        let header_hex = if old_style { Some(hash_file(file, size, digest)?) } else { None };
        let how = match (&header_hex, digest) {
            (Some(h), d) => PutDigest::Header(d, h),
            (None, Digest::None) => PutDigest::None,
            (None, d) => PutDigest::Trailer(d),
        };
        let mut hasher = if old_style { None } else { digest.hasher() };
        let stamp = crate::sys::Stamp::of(file).map_err(Error::LocalRead)?;
        let (mut changed, mut refused, may_cut) = (false, false, std::mem::take(&mut self.last));
        let header = msg::request::put(path, mode, how, false);
        let sent = self.writer.send_head(header, size).and_then(|()| {
            let mut offset = 0;
            // The last byte is held back until the file is seen unchanged:
            // the server commits once it has the whole body (and trailer),
            // so a put cut before that stores nothing.
            let mut send_to = |end: u64, offset: &mut u64| -> io::Result<()> {
                while *offset < end {
                    // An answer before the whole body is a refusal: when
                    // nothing follows on this connection, stop here.
                    if may_cut && self.reply_waiting() {
                        refused = true;
                        return Err(io::Error::other("refused while sent"));
                    }
                    let want = (end - *offset).min(SEND_CHUNK);
                    let n = match &mut hasher {
                        Some(h) => self.writer.send_file_hashed(file, offset, want, h)?,
                        None => self.writer.send_file(file, offset, want)?,
                    };
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent"));
                    }
                    progress(n);
                }
                Ok(())
            };
            send_to(size.saturating_sub(1), &mut offset)?;
            if !stamp.unchanged(file) {
                changed = true;
                return Err(io::Error::other(CHANGED));
            }
            send_to(size, &mut offset)?;
            if let Some(h) = &hasher {
                self.writer.send(msg::request::trailer(digest, &h.hex()), &[])?;
            }
            Ok(())
        });
        match sent {
            Ok(()) => self.put_reply(digest),
            // The server's error, read after our write side is shut. What
            // was waiting may instead be what ended the connection (a TLS
            // alert for a record broken on the way, a close): that error is
            // the put's, never the marker above (it was taken for a local
            // read error, status 1, when the alert won the race).
            Err(_) if refused => {
                self.cut = true;
                self.shutdown_write();
                Err(match self.put_reply(Digest::None) {
                    Err(e) => e,
                    Ok(_) => Error::Protocol("the server said ok before the whole body".into()),
                })
            }
            Err(e) if changed => {
                // Cut the put short; whatever the server answers (a cut
                // body), the reason is the local change.
                let _ = self.abort_put(io::Error::other("cut"));
                Err(Error::LocalRead(e))
            }
            Err(e) => Err(self.abort_put(e)),
        }
    }

    /// Puts everything `input` yields at `path` as a streaming put, in
    /// `data` frames of at most `DATA_CHUNK` bytes, then (to a server that
    /// announced digests) a trailer with the digest of what was sent. An
    /// older server's sha256 in `ok` is checked against what was sent: a
    /// difference is `digest-mismatch`.
    ///
    /// With `input_fd` (the unbuffered descriptor `input` reads), the socket
    /// is watched while the input has nothing: a server that closes or
    /// answers ends the put at once, not when the input next yields.
    pub fn put_stream(
        &mut self,
        path: &str,
        mode: Option<u32>,
        digest: Digest,
        input: &mut dyn Read,
        input_fd: Option<std::os::fd::RawFd>,
    ) -> Result<PutOk, Error> {
        let trailer = self.digests.is_some() && digest != Digest::None;
        let how = match digest {
            Digest::None => PutDigest::None,
            d if trailer => PutDigest::Trailer(d),
            // An older server: its default, sha256, named in `ok`.
            _ => PutDigest::Default,
        };
        let header = msg::request::put(path, mode, how, true);
        self.send(header, &[])?;
        let mut buf = vec![0u8; DATA_CHUNK];
        let mut hasher = digest.hasher();
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
            if let Some(h) = &mut hasher {
                h.update(&buf[..n]);
            }
            if let Err(e) = self.writer.send(msg::request::data(), &buf[..n]) {
                return Err(self.abort_put(e));
            }
        }
        let mut end = self.writer.send(msg::request::data(), &[]);
        if let (true, Some(h), Ok(())) = (trailer, &hasher, &end) {
            end = self.writer.send(msg::request::trailer(digest, &h.hex()), &[]);
        }
        if let Err(e) = end {
            return Err(self.abort_put(e));
        }
        let ok = self.put_reply(digest)?;
        if let (false, Some(h), Some(theirs)) = (trailer, &hasher, &ok.hex) {
            let local = h.hex();
            if !theirs.eq_ignore_ascii_case(&local) {
                let d = digest.as_str();
                let m = format!("{:?}: the server stored {d} {theirs} but {local} was sent", ok.path);
                return Err(Error::Remote(ProtoError::new(ErrorCode::DigestMismatch, m)));
            }
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
    pub(super) fn reply_waiting(&self) -> bool {
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

    /// Reads the one reply to a put: `ok` or an error. `ok` names the
    /// digest the server computed (an older server's says nothing: sha256).
    fn put_reply(&mut self, asked: Digest) -> Result<PutOk, Error> {
        let h = self.expect_reply("ok")?;
        self.copy_body(h.size, &mut io::sink())?;
        let digest = match h.str("digest") {
            Some(name) => Digest::from_name(name).ok_or_else(|| Error::Protocol(format!("ok names digest {name:?}")))?,
            None if h.str("sha256").is_some() => Digest::Sha256,
            None => asked,
        };
        Ok(PutOk {
            path: str_field(&h, "path")?,
            file_size: u64_field(&h, "file_size")?,
            digest,
            hex: if digest == Digest::None { None } else { Some(str_field(&h, digest.as_str())?) },
        })
    }

    /// A put body could not be finished: stop sending (the server drops the
    /// temporary file) and prefer the server's own error, if it sent one.
    /// Shuts our side of the connection for writing: the server sees the
    /// end of a body cut short; its answers can still be read.
    pub(super) fn shutdown_write(&self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Write);
    }

    fn abort_put(&mut self, e: io::Error) -> Error {
        self.shutdown_write();
        match self.put_reply(Digest::None) {
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
            error: None,
        };
        let mut fields = h.fields;
        for k in ["type", "size", "id"] {
            fields.remove(k);
        }
        Ok((fields, entry))
    }
}
