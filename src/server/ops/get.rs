//! The `get` operation: one open file streamed as the body of a `file` frame,
//! then `done` with the digest of the whole file (`sha256` or `blake3`, as
//! asked; none with `digest:"none"`).
//!
//! Nothing is copied that need not be, and no buffer is zero-filled:
//! - `digest:"none"`: the body goes from the page cache to the socket with
//!   `sendfile(2)`, once the `file` header has left the output buffer.
//! - a digest, on a socket that can `sendfile` (plain TCP): each `CHUNK` is
//!   read into the get's own buffer (in cache) and hashed there, then the same
//!   range goes out with `sendfile(2)`. The file's bytes are read once by the
//!   CPU and never copied into the socket.
//! - a digest over TLS (which must see the bytes): each `CHUNK` is read
//!   straight into the output buffer's spare room, hashed there, and
//!   encrypted from there; reading stops at the connection's high-water mark
//!   like any other producer.
//! A resumed get (`offset > 0`) with a digest first hashes the part it does
//! not send.
//!
//! The file's size, mtime and ctime are taken when it is opened and again
//! after the last byte: if they moved, `changed` (an error frame) replaces
//! `done`, since each side hashes what it reads and the digest cannot tell.
//!
//! The body's size is fixed when the header goes out. A file that shrinks
//! while it is sent can no longer fill the frame: the connection is closed
//! rather than padded (`Progress::Short`), and the client sees a cut frame.

use super::super::io::{interrupted, would_block, Socket};
use super::ctx::{Ctx, Output, Progress};
use crate::server::buf::Buf;
use crate::paths::{self, RelPath};
use crate::proto::digest::Hasher;
use crate::proto::msg::{self, Digest};
use crate::proto::{encode_head, ErrorCode, ProtoError};
use rustix::fd::AsFd;
use rustix::fs::{FileType, OFlags};
use serde_json::{Map, Value};
use std::fs::File;

/// The largest read from the file at once on the digest paths: small enough
/// to stay in a core's cache between the read, the hash and the send.
pub const CHUNK: usize = 256 * 1024;

/// A `get` in flight.
pub struct Get {
    id: Option<Value>,
    /// The `file` header and its body size, queued by the first `pump`.
    head: Option<(Map<String, Value>, u64)>,
    file: File,
    /// The next byte of the file to send, and the end of the body.
    pos: u64,
    end: u64,
    /// With a digest: the hash so far, and how far into the file it covers
    /// (it starts at 0: a resumed get hashes the prefix it does not send).
    digest: Digest,
    hasher: Option<Hasher>,
    hashed: u64,
    offset: u64,
    /// The read-and-hash buffer of the digest path over `sendfile` (and of a
    /// resumed get's prefix), allocated once per get.
    buf: Vec<u8>,
    /// The file ended before the size the header promised.
    short: bool,
    /// The file's size and times when it was opened: if they moved by the
    /// end, the body may mix two versions and the get ends in `changed`.
    stamp: crate::sys::Stamp,
}

impl Get {
    /// Opens the file; its `file` header goes out with the first `pump`.
    pub fn start(req: &msg::Get, id: Option<&Value>, ctx: &Ctx) -> Result<Get, ProtoError> {
        let p = RelPath::parse(&req.path)?;
        let root = paths::open_root(&ctx.cfg.root)?;
        // O_NONBLOCK: opening a FIFO must not stall the reactor (it is refused below).
        let fd = paths::open(root.as_fd(), &p, OFlags::RDONLY | OFlags::NONBLOCK)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| p.error(e))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {}
            FileType::Directory => return Err(p.error(rustix::io::Errno::ISDIR)),
            _ => return Err(ProtoError::new(ErrorCode::BadPath, format!("\"{}\": not a regular file", req.path))),
        }
        let file_size = st.st_size as u64;
        let stamp = crate::sys::Stamp::of(&fd).map_err(|e| p.error(rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO)))?;
        if req.offset > file_size {
            let msg = format!("offset {} is beyond the end of \"{}\" ({file_size} bytes)", req.offset, req.path);
            return Err(ProtoError::new(ErrorCode::BadRequest, msg));
        }
        let header = msg::file(&req.path, file_size, st.st_mode & 0o7777, st.st_mtime, req.offset, id);
        Ok(Get {
            head: Some((header, file_size - req.offset)),
            id: id.cloned(),
            file: File::from(fd),
            pos: req.offset,
            end: file_size,
            digest: req.digest,
            hasher: req.digest.hasher(),
            hashed: 0,
            offset: req.offset,
            buf: Vec::new(),
            short: false,
            stamp,
        })
    }

    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// Body bytes produced so far (queued or sent), for the access log.
    pub fn sent(&self) -> u64 {
        self.pos - self.offset
    }

    /// Moves up to `budget` bytes of the body: straight to `sock` with
    /// sendfile (no digest; or a digest on a socket that `sends_files`, each
    /// chunk hashed first), once `out` is empty and while `*writable`; or
    /// into `out`, hashed there (a digest over TLS), while it is below
    /// `high_water`.
    pub fn pump<S: Socket>(&mut self, o: Output<S>) -> std::io::Result<Progress> {
        let Output { sock, writable, out, high_water, budget, .. } = o;
        // The header counts as one thing done, so the connection flushes it.
        let mut moved = 0;
        if let Some((header, size)) = self.head.take() {
            encode_head(out.tail(), header, size);
            moved = 1;
        }
        if self.hasher.is_some() {
            // A resumed get hashes the prefix it does not send.
            while self.hashed < self.offset && moved < budget {
                let want = (self.offset - self.hashed).min(CHUNK as u64) as usize;
                match self.read_and_hash(want)? {
                    0 => return Ok(Progress::Short),
                    n => moved += n,
                }
            }
            if self.hashed < self.offset {
                return Ok(Progress::Moved(moved));
            }
            if sock.sends_files() {
                moved += self.hash_and_send(sock, writable, out.is_empty(), budget - moved.min(budget))?;
            } else {
                moved += self.hash_into(out, high_water, budget - moved.min(budget))?;
            }
            if self.short {
                return Ok(Progress::Short);
            }
        } else {
            while out.is_empty() && *writable && self.pos < self.end && moved < budget {
                let want = ((self.end - self.pos) as usize).min(budget - moved);
                match sock.send_file(&self.file, &mut self.pos, want) {
                    Ok(0) => return Ok(Progress::Short),
                    Ok(n) => moved += n,
                    Err(e) if would_block(&e) => *writable = false,
                    Err(e) if interrupted(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if self.pos < self.end {
            return Ok(Progress::Moved(moved));
        }
        if !self.stamp.unchanged(&self.file) {
            let m = "the file changed on the server while it was sent (its size or times moved); send the get again";
            let err = ProtoError::new(ErrorCode::Changed, m);
            crate::proto::encode_frame(out.tail(), msg::error(&err, self.id.as_ref()), &[]);
            return Ok(Progress::Done);
        }
        let hex = self.hasher.take().map(|h| h.hex());
        crate::proto::encode_frame(out.tail(), msg::done(self.digest, hex.as_deref(), self.id.as_ref()), &[]);
        Ok(Progress::Done)
    }

    /// Reads up to `want` bytes at `hashed` into the get's buffer and hashes
    /// them. 0 at the end of the file.
    fn read_and_hash(&mut self, want: usize) -> std::io::Result<usize> {
        if self.buf.len() < CHUNK {
            // Once per get: a fresh allocation this size is mapped zero pages.
            self.buf = vec![0; CHUNK];
        }
        let n = loop {
            match rustix::io::pread(&self.file, &mut self.buf[..want], self.hashed) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(h) = &mut self.hasher {
            h.update(&self.buf[..n]);
        }
        self.hashed += n as u64;
        Ok(n)
    }

    /// The digest path on a socket that can `sendfile`: hashes a chunk ahead,
    /// then sends that range from the page cache. Bytes sent.
    fn hash_and_send<S: Socket>(&mut self, sock: &mut S, writable: &mut bool, out_empty: bool, budget: usize) -> std::io::Result<usize> {
        let mut moved = 0;
        while out_empty && *writable && self.pos < self.end && moved < budget {
            if self.hashed == self.pos {
                let want = ((self.end - self.hashed) as usize).min(CHUNK);
                if self.read_and_hash(want)? == 0 {
                    self.short = true;
                    return Ok(moved);
                }
            }
            let want = (self.hashed - self.pos) as usize;
            match sock.send_file(&self.file, &mut self.pos, want) {
                Ok(0) => {
                    self.short = true;
                    return Ok(moved);
                }
                Ok(n) => moved += n,
                Err(e) if would_block(&e) => *writable = false,
                Err(e) if interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// The digest path when the transport must see the bytes (TLS): reads
    /// straight into the output buffer's spare room (no zero-fill), hashes
    /// there. Bytes queued.
    fn hash_into(&mut self, buf: &mut Buf, high_water: usize, budget: usize) -> std::io::Result<usize> {
        let mut moved = 0;
        while self.pos < self.end && buf.len() < high_water && moved < budget {
            let want = ((self.end - self.pos) as usize).min(CHUNK);
            let out = buf.tail();
            out.reserve(want);
            let start = out.len();
            let n = loop {
                match rustix::io::pread(&self.file, &mut out.spare_capacity_mut()[..want], self.pos) {
                    Ok((filled, _)) => break filled.len(),
                    Err(rustix::io::Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            };
            // SAFETY: pread initialised the first `n` bytes of the spare room.
            unsafe { out.set_len(start + n) };
            if n == 0 {
                self.short = true;
                return Ok(moved);
            }
            if let Some(h) = &mut self.hasher {
                h.update(&out[start..]);
            }
            self.pos += n as u64;
            self.hashed = self.pos;
            moved += n;
        }
        Ok(moved)
    }
}
