//! The `put` operation: a body written to a temporary file beside the target,
//! fsynced, checked against the client's digest, and renamed over the target
//! (then the directory is fsynced). Readers see the old file or the new one.
//! A put of a tree (`tree` set) is renamed without those two fsyncs: the
//! tree's last `mkdir` syncs the file system once (`ops::tree`).
//!
//! The body comes either as the `put` frame's own body (sized put) or as
//! `data` frames ended by an empty one (streaming put); the connection feeds
//! it here chunk by chunk. Whatever goes wrong (a bad path, `too-large`, a full
//! disk, a digest that differs), the error is reported at once, the temporary
//! file is removed, and the rest of the body is still consumed and dropped, so
//! the connection goes on with the next request. A put dropped half way (the
//! peer gone, the daemon stopping) removes its temporary file too: that is
//! `Target`'s `Drop`.

use super::ctx::{Ctx, FrameUse};
use crate::paths::{self, RelPath};
use crate::proto::auth::{fresh_nonce, to_hex};
use crate::proto::msg;
use crate::proto::{ErrorCode, Header, ProtoError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Write;

/// The mode of a new file when the request gives none.
pub const DEFAULT_MODE: u32 = 0o644;

/// Where the body goes: an open temporary file in the target's directory.
struct Target {
    dir: OwnedFd,
    name: String,
    tmp: String,
    file: File,
    hasher: Sha256,
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

/// A `put` in flight.
pub struct Put {
    id: Option<Value>,
    path: String,
    stream: bool,
    /// None once an error was reported: the rest of the body is dropped.
    target: Option<Target>,
    received: u64,
    max_upload: Option<u64>,
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

    /// A frame while a streaming put runs: only `data` frames carry its body,
    /// and only an empty one ends it; any other frame fails the put (and is
    /// then served). A sized put's body is its own frame's: others wait.
    pub fn on_frame(&mut self, h: &Header) -> FrameUse {
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

    /// Writes a piece of the body. An error is returned once, to be reported;
    /// the temporary file is gone by then.
    pub fn on_body(&mut self, chunk: &[u8]) -> Option<ProtoError> {
        self.received += chunk.len() as u64;
        let t = self.target.as_mut()?;
        if self.max_upload.is_some_and(|max| self.received > max) {
            self.target = None;
            return Some(too_large(self.max_upload.unwrap_or(0)));
        }
        t.hasher.update(chunk);
        if let Err(e) = t.file.write_all(chunk) {
            self.target = None;
            return Some(io_error(&self.path, e));
        }
        None
    }

    /// The body is complete: commit. `None` when an error was already
    /// reported; otherwise the `ok` reply or the error that stopped the commit.
    pub fn finish(mut self) -> Option<Result<Map<String, Value>, ProtoError>> {
        let mut t = self.target.take()?;
        let sha = to_hex(&std::mem::take(&mut t.hasher).finalize());
        Some(t.commit(&sha, &self.path).map(|()| msg::ok(&self.path, self.received, &sha, self.id.as_ref())))
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
            file: File::from(fd),
            hasher: Sha256::new(),
            expect: req.sha256.clone(),
            // Explicit modes keep their permission bits only: no set-id files.
            mode: req.mode.map(|m| m & 0o777).or(old_mode).unwrap_or(DEFAULT_MODE),
            mtime: req.mtime,
            sync: req.tree.is_none(),
            committed: false,
        })
    }

    fn commit(&mut self, sha: &str, path: &str) -> Result<(), ProtoError> {
        let err = |e: rustix::io::Errno| paths::errno_error(path, e);
        if self.sync {
            self.file.sync_all().map_err(|e| io_error(path, e))?;
        }
        if let Some(want) = &self.expect {
            if want != sha {
                let msg = format!("\"{path}\": the body's sha256 is {sha}, the request said {want}");
                return Err(ProtoError::new(ErrorCode::DigestMismatch, msg));
            }
        }
        rustix::fs::fchmod(&self.file, Mode::from_raw_mode(self.mode)).map_err(err)?;
        if let Some(t) = self.mtime {
            set_mtime(&self.file, t).map_err(err)?;
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
