//! The `get` operation: one open file streamed as the body of a `file` frame,
//! then `done` with the SHA-256 of the whole file.
//!
//! With `digest:"none"` the body goes from the page cache to the socket with
//! `sendfile(2)`, once the `file` header has left the output buffer: nothing
//! is copied through the daemon. With `sha256` the file is read in `CHUNK`s
//! straight into the output buffer and hashed there, and reading stops at the
//! connection's high-water mark like any other producer. A resumed get
//! (`offset > 0`) with a digest first hashes the part it does not send.
//!
//! The body's size is fixed when the header goes out. A file that shrinks
//! while it is sent can no longer fill the frame: the connection is closed
//! rather than padded (`Progress::Short`), and the client sees a cut frame.

use super::super::io::{interrupted, would_block, Socket};
use super::ctx::{Ctx, Output, Progress};
use crate::paths::{self, RelPath};
use crate::proto::auth::to_hex;
use crate::proto::msg::{self, Digest};
use crate::proto::{encode_head, ErrorCode, ProtoError};
use rustix::fd::AsFd;
use rustix::fs::{FileType, OFlags};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// The largest read from the file at once on the digest path.
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
    /// With a digest: the hash so far, and how much of the unsent prefix
    /// (`0..offset`) it covers.
    hasher: Option<Sha256>,
    hashed: u64,
    offset: u64,
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
            hasher: (req.digest == Digest::Sha256).then(Sha256::new),
            hashed: 0,
            offset: req.offset,
        })
    }

    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// Body bytes produced so far (queued or sent), for the access log.
    pub fn sent(&self) -> u64 {
        self.pos - self.offset
    }

    /// Moves up to `budget` bytes of the body: into `out` (digest path, while
    /// it is below `high_water`) or into `sock` (sendfile path, once `out` is
    /// empty and while `*writable`).
    pub fn pump<S: Socket>(&mut self, o: Output<S>) -> std::io::Result<Progress> {
        let Output { sock, writable, out, high_water, budget, scratch } = o;
        // The header counts as one thing done, so the connection flushes it.
        let mut moved = 0;
        if let Some((header, size)) = self.head.take() {
            encode_head(out.tail(), header, size);
            moved = 1;
        }
        if let Some(h) = &mut self.hasher {
            // A resumed get hashes the prefix it does not send.
            while self.hashed < self.offset && moved < budget {
                let want = ((self.offset - self.hashed) as usize).min(scratch.len());
                let n = self.file.read_at(&mut scratch[..want], self.hashed)?;
                if n == 0 {
                    return Ok(Progress::Short);
                }
                h.update(&scratch[..n]);
                self.hashed += n as u64;
                moved += n;
            }
            if self.hashed < self.offset {
                return Ok(Progress::Moved(moved));
            }
            while self.pos < self.end && out.len() < high_water && moved < budget {
                let want = ((self.end - self.pos) as usize).min(CHUNK);
                let buf = out.tail();
                let start = buf.len();
                buf.resize(start + want, 0);
                let n = match self.file.read_at(&mut buf[start..], self.pos) {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                };
                buf.truncate(start + n);
                if n == 0 {
                    return Ok(Progress::Short);
                }
                h.update(&buf[start..]);
                self.pos += n as u64;
                moved += n;
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
        let sha = self.hasher.take().map(|h| to_hex(&h.finalize()));
        crate::proto::encode_frame(out.tail(), msg::done(sha.as_deref(), self.id.as_ref()), &[]);
        Ok(Progress::Done)
    }
}
