//! The `put` operation: a body written to a temporary file beside the target,
//! checked against the client's digest, fsynced once, and renamed over the
//! target (then the directory is fsynced). Readers see the old file or the
//! new one. A put of a tree (`tree` set) is renamed without those two
//! fsyncs: the tree's last `mkdir` syncs the file system once (`ops::tree`).
//! Its `mtime` is set before the rename, and the tree's puts share
//! `max_upload` (`upload_limit`).
//!
//! The body comes either as the `put` frame's own body (sized put) or as
//! `data` frames ended by an empty one (streaming put). The connection reads
//! the socket straight into the put's write buffer (`body_room`,
//! `body_filled`) where it can, and feeds what came with a header through
//! `on_body`; the bytes are hashed there, in cache, and go to the file in
//! `WRITE_CHUNK` writes. The server computes the digest the request names
//! (`sha256` unless `blake3` or `none`). The client's digest comes in the
//! header (old style) or, with `trailer:true`, in a `trailer` frame after the
//! body: the put then waits for it before it commits. Whatever goes wrong (a bad path, `too-large`, a full
//! disk, a digest that differs), the error is reported at once, the temporary
//! file is removed, and the rest of the body is still consumed and dropped, so
//! the connection goes on with the next request. A put dropped half way (the
//! peer gone, the daemon stopping) removes its temporary file too: that is
//! `Target`'s `Drop`.

use super::ctx::{Ctx, FrameUse};
use crate::paths::{self, RelPath};
use crate::proto::auth::{fresh_nonce, to_hex};
use crate::proto::digest::{Digest, Hasher};
use crate::proto::msg::{self, Request};
use crate::proto::{ErrorCode, Header, ProtoError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};
use serde_json::{Map, Value};
use crate::sys::Streamed;
use std::fs::File;
use std::io::Write;

/// The mode of a new file when the request gives none.
pub const DEFAULT_MODE: u32 = 0o644;
/// The body goes to the file in writes of this size (the last one shorter).
pub const WRITE_CHUNK: usize = 1024 * 1024;

/// Where the body goes: an open temporary file in the target's directory.
struct Target {
    dir: OwnedFd,
    name: String,
    tmp: String,
    /// Written with early writeback (`sys::Streamed`).
    file: Streamed,
    expect: Option<String>,
    mode: u32,
    mtime: Option<i64>,
    /// A tree's file is not fsynced on its own: the tree's last `mkdir`
    /// syncs the file system once (`proto::tree`).
    sync: bool,
    committed: bool,
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.committed {
            let _ = rustix::fs::unlinkat(&self.dir, self.tmp.as_str(), AtFlags::empty());
        }
    }
}

/// Where a put's trailer stands.
#[derive(Debug)]
enum Trailer {
    /// The request has none (the digest is in the header, or not given).
    None,
    /// To come after the body; `body_done` once the body has ended.
    Awaited { body_done: bool },
    /// Arrived: the client's hex, or what was wrong with the frame.
    Got(Result<String, ProtoError>),
}

/// A `put` in flight.
pub struct Put {
    id: Option<Value>,
    path: String,
    stream: bool,
    /// None once an error was reported: the rest of the body is dropped.
    target: Option<Target>,
    received: u64,
    max_upload: Option<u64>,
    digest: Digest,
    hasher: Option<Hasher>,
    trailer: Trailer,
    /// Body bytes not yet written: `wbuf[..wlen]`. Allocated once per put
    /// (never zero-filled again), and kept after an error to drop the rest
    /// of the body into.
    wbuf: Vec<u8>,
    wlen: usize,
}

impl Put {
    /// Starts a put. The put is returned even when it cannot proceed, since
    /// its body must still be consumed; the error is to be reported now.
    pub fn start(req: &msg::Put, id: Option<&Value>, ctx: &Ctx) -> (Put, Option<ProtoError>) {
        let mut put = Put {
            id: id.cloned(),
            path: req.path.clone(),
            stream: req.size.is_none(),
            target: None,
            received: 0,
            max_upload: upload_limit(ctx),
            digest: req.digest,
            hasher: req.digest.hasher(),
            trailer: if req.trailer { Trailer::Awaited { body_done: false } } else { Trailer::None },
            // A fresh allocation this size is mapped zero pages: no memset.
            wbuf: vec![0; req.size.map_or(WRITE_CHUNK, |s| s.min(WRITE_CHUNK as u64) as usize)],
            wlen: 0,
        };
        match Target::open(req, ctx) {
            Ok(t) => {
                put.target = Some(t);
                (put, None)
            }
            Err(e) => (put, Some(e)),
        }
    }

    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// A frame while a put runs. After a body that a trailer follows, only
    /// the `trailer` frame is the put's. While a streaming put runs, only
    /// `data` frames carry its body, and only an empty one ends it; any
    /// other frame fails the put (and is then served). A sized put's body is
    /// its own frame's: others wait.
    pub fn on_frame(&mut self, h: &Header) -> FrameUse {
        if let Trailer::Awaited { body_done: true } = self.trailer {
            if h.kind != "trailer" {
                let m = format!("a put with trailer:true is followed by its trailer frame, not a {:?} frame", h.kind);
                return FrameUse::Interrupt(ProtoError::new(ErrorCode::BadRequest, m));
            }
            // A trailer with a body is still the put's trailer: one error,
            // and its body is skipped (the connection stays in step).
            self.trailer = Trailer::Got(match Request::from_header(h) {
                _ if h.size != 0 => Err(ProtoError::new(ErrorCode::BadRequest, "a trailer frame has no body")),
                Ok(Request::Trailer(t)) if t.digest == self.digest => Ok(t.hex),
                Ok(Request::Trailer(t)) => Err(ProtoError::new(
                    ErrorCode::BadRequest,
                    format!("trailer: the put's digest is {}, the trailer gives {}", self.digest.as_str(), t.digest.as_str()),
                )),
                Ok(_) => unreachable!("a trailer frame reads as a trailer"),
                Err(e) => Err(e),
            });
            return FrameUse::End;
        }
        match (self.stream, h.kind.as_str(), h.size) {
            (false, ..) => FrameUse::Hold,
            (true, "data", 0) => FrameUse::End,
            (true, "data", _) => FrameUse::Body,
            (true, kind, _) => FrameUse::Interrupt(ProtoError::new(
                ErrorCode::BadRequest,
                format!("streaming put ended by a {kind:?} frame, not an empty data frame"),
            )),
        }
    }

    /// The body has ended: true when the put must now wait for its trailer
    /// (the caller then keeps it running), false when it can finish.
    pub fn body_ended(&mut self) -> bool {
        match &mut self.trailer {
            Trailer::Awaited { body_done } => {
                *body_done = true;
                true
            }
            Trailer::None | Trailer::Got(_) => false,
        }
    }

    /// Writes a piece of the body that came through the input buffer. An
    /// error is returned once, to be reported; the temporary file is gone by then.
    pub fn on_body(&mut self, mut chunk: &[u8]) -> Option<ProtoError> {
        while !chunk.is_empty() {
            let room = self.body_room(chunk.len() as u64);
            if room.is_empty() {
                // An empty sized put cannot have a body: nothing to keep.
                return None;
            }
            let n = room.len();
            room.copy_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if let Some(e) = self.body_filled(n) {
                return Some(e);
            }
        }
        None
    }

    /// Where the next body bytes may be read to, straight from the socket:
    /// at most `want` bytes of the write buffer.
    pub fn body_room(&mut self, want: u64) -> &mut [u8] {
        let end = self.wbuf.len().min(self.wlen.saturating_add(want.min(usize::MAX as u64) as usize));
        &mut self.wbuf[self.wlen..end]
    }

    /// `n` bytes were put in `body_room`: counted, hashed, written once the
    /// buffer is full. An error is returned once, to be reported.
    pub fn body_filled(&mut self, n: usize) -> Option<ProtoError> {
        self.received += n as u64;
        let Some(t) = self.target.as_mut() else {
            // Refused: the body is read and dropped.
            return None;
        };
        if self.max_upload.is_some_and(|max| self.received > max) {
            self.target = None;
            self.wlen = 0;
            return Some(too_large(self.max_upload.unwrap_or(0)));
        }
        let new = &self.wbuf[self.wlen..self.wlen + n];
        if let Some(h) = &mut self.hasher {
            h.update(new);
        }
        self.wlen += n;
        if self.wlen == self.wbuf.len() {
            let r = t.file.write_all(&self.wbuf[..self.wlen]);
            self.wlen = 0;
            if let Err(e) = r {
                self.target = None;
                return Some(io_error(&self.path, e));
            }
        }
        None
    }

    /// The body is complete (and its trailer in, if one was due): commit.
    /// `None` when an error was already reported; otherwise the `ok` reply
    /// or the error that stopped the commit.
    pub fn finish(mut self) -> Option<Result<Map<String, Value>, ProtoError>> {
        let mut t = self.target.take()?;
        if self.wlen > 0 {
            if let Err(e) = t.file.write_all(&self.wbuf[..self.wlen]) {
                return Some(Err(io_error(&self.path, e)));
            }
        }
        let hex = self.hasher.take().map(|h| h.hex());
        let expect = match std::mem::replace(&mut self.trailer, Trailer::None) {
            Trailer::Got(Err(e)) => return Some(Err(e)),
            Trailer::Got(Ok(h)) => Some(h),
            Trailer::Awaited { .. } => {
                return Some(Err(ProtoError::new(ErrorCode::BadRequest, "put: the trailer never came")))
            }
            Trailer::None => t.expect.take(),
        };
        let checked = (self.digest, hex.as_deref(), expect.as_deref());
        Some(t.commit(checked, &self.path).map(|()| msg::ok(&self.path, self.received, self.digest, hex.as_deref(), self.id.as_ref())))
    }
}

/// A fresh name for a put's temporary file: `.ferry-` + 16 hex digits + `.tmp`.
pub fn temp_name() -> String {
    format!(".ferry-{}.tmp", &to_hex(&fresh_nonce())[..16])
}

/// True for a name `temp_name` could have made.
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(".ferry-")
        .and_then(|r| r.strip_suffix(".tmp"))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Removes the temporary files of puts that a killed daemon left in `root`
/// (SIGKILL or a crash: nothing else leaves one). Walks the tree without
/// following symbolic links. Returns (files removed, directories read).
pub fn remove_stale_temp_files(root: &std::path::Path) -> (usize, usize) {
    let (mut removed, mut dirs) = (0, 0);
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        dirs += 1;
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            let name = e.file_name();
            if kind.is_dir() {
                todo.push(e.path());
            } else if kind.is_file() && name.to_str().is_some_and(is_temp_name) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
    }
    (removed, dirs)
}

/// What this put may take: `max_upload`, less what the earlier puts of its
/// tree took.
fn upload_limit(ctx: &Ctx) -> Option<u64> {
    ctx.cfg.max_upload.map(|m| m.saturating_sub(ctx.upload_used))
}

/// Sets a modification time (the access time is left as it is).
pub fn set_mtime(fd: impl AsFd, mtime: i64) -> rustix::io::Result<()> {
    let omit = Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT };
    rustix::fs::futimens(fd, &Timestamps { last_access: omit, last_modification: Timespec { tv_sec: mtime, tv_nsec: 0 } })
}

fn too_large(max: u64) -> ProtoError {
    ProtoError::new(ErrorCode::TooLarge, format!("uploads are limited to {max} bytes on this server"))
}

fn io_error(path: &str, e: std::io::Error) -> ProtoError {
    paths::errno_error(path, rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO))
}

impl Target {
    fn open(req: &msg::Put, ctx: &Ctx) -> Result<Target, ProtoError> {
        if ctx.cfg.read_only {
            return Err(ProtoError::new(ErrorCode::ReadOnly, "this server is read-only"));
        }
        if let (Some(size), Some(max)) = (req.size, upload_limit(ctx)) {
            if size > max {
                if req.tree.is_some() {
                    let all = ctx.cfg.max_upload.unwrap_or(0);
                    let msg = format!("a tree's uploads are limited to {all} bytes on this server, and this file goes over");
                    return Err(ProtoError::new(ErrorCode::TooLarge, msg));
                }
                return Err(too_large(max));
            }
        }
        let p = RelPath::parse(&req.path)?;
        let Some((parent, name)) = p.split_last() else {
            return Err(ProtoError::new(ErrorCode::BadPath, format!("\"{}\": names no file", req.path)));
        };
        let root = paths::open_root(&ctx.cfg.root)?;
        let dir = paths::open_dir_creating(root.as_fd(), &p, parent)?;
        let old_mode = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(p.error(rustix::io::Errno::ISDIR))
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => Some(st.st_mode & 0o7777),
            _ => None,
        };
        let tmp = temp_name();
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(&dir, tmp.as_str(), flags, Mode::from_raw_mode(0o600)).map_err(|e| p.error(e))?;
        Ok(Target {
            dir,
            name: name.to_string(),
            tmp,
            file: Streamed::new(File::from(fd)),
            expect: req.expect.clone(),
            // Explicit modes keep their permission bits only: no set-id files.
            mode: req.mode.map(|m| m & 0o777).or(old_mode).unwrap_or(DEFAULT_MODE),
            mtime: req.mtime,
            sync: req.tree.is_none(),
            committed: false,
        })
    }

    /// Checks the digest (the one computed, the client's), then syncs once
    /// (not a tree's file), sets the mode and mtime, and renames. Nothing is renamed on a mismatch.
    fn commit(&mut self, (digest, got, want): (Digest, Option<&str>, Option<&str>), path: &str) -> Result<(), ProtoError> {
        let err = |e: rustix::io::Errno| paths::errno_error(path, e);
        if let (Some(got), Some(want)) = (got, want) {
            if want != got {
                let d = digest.as_str();
                let msg = format!("\"{path}\": the body's {d} is {got}, the client's is {want}");
                return Err(ProtoError::new(ErrorCode::DigestMismatch, msg));
            }
        }
        if self.sync {
            self.file.sync_all().map_err(|e| io_error(path, e))?;
        }
        rustix::fs::fchmod(&*self.file, Mode::from_raw_mode(self.mode)).map_err(err)?;
        if let Some(t) = self.mtime {
            set_mtime(&*self.file, t).map_err(err)?;
        }
        rustix::fs::renameat(&self.dir, self.tmp.as_str(), &self.dir, self.name.as_str()).map_err(err)?;
        self.committed = true;
        if self.sync {
            rustix::fs::fsync(&self.dir).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_only_they() {
        assert!(is_temp_name(&temp_name()));
        for other in [".ferry-0123456789abcdef.tm", "ferry-0123456789abcdef.tmp", ".ferry-0123456789ABCDEF.tmp", ".ferry-01.tmp", "x"] {
            assert!(!is_temp_name(other), "{other}");
        }
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let stale = [dir.path().join(temp_name()), dir.path().join("a/b").join(temp_name())];
        for p in &stale {
            std::fs::write(p, b"partial").unwrap();
        }
        std::fs::write(dir.path().join("a/keep.tmp"), b"mine").unwrap();
        let outside = tempfile::tempdir().unwrap();
        let theirs = outside.path().join(temp_name());
        std::fs::write(&theirs, b"not in the root").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let (removed, dirs) = remove_stale_temp_files(dir.path());
        assert_eq!((removed, dirs), (2, 3));
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(dir.path().join("a/keep.tmp").exists());
        assert!(theirs.exists(), "links are not followed");
    }
}
