//! The per-entry requests of a tree that are not files: `mkdir` and
//! `symlink`, answered at once; the recursive `list`; and the upload tally
//! that makes a tree's puts count together against `max_upload`.
//!
//! Every path is confined as a `put`'s is (`openat2` beneath the root, no
//! `..`), and the last component is never followed: `mkdir` on a link, or a
//! `symlink` over a directory, is refused. A link's target must stay inside
//! the root read from where the link sits (`proto::tree::target_inside`),
//! else `bad-path`. A new link is made under a temporary name and renamed
//! into place, so a reader sees the old entry or the new link.

use super::ctx::Ctx;
use super::list::entry;
use super::put::{set_mtime, temp_name};
use crate::paths::{self, RelPath};
use crate::proto::msg::{self, Entry, Kind, Put};
use crate::proto::tree::{self, Mkdir, Symlink};
use crate::proto::{ErrorCode, ProtoError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde_json::{Map, Value};

/// The most entries a recursive listing holds: its body stays a size a
/// client can take in one piece.
pub const MAX_TREE_ENTRIES: usize = 1_000_000;

fn writable(ctx: &Ctx) -> Result<(), ProtoError> {
    if ctx.cfg.read_only {
        return Err(ProtoError::new(ErrorCode::ReadOnly, "this server is read-only"));
    }
    Ok(())
}

/// The parent directory of `p` (created as needed) and its last name.
fn parent_of<'a>(p: &RelPath<'a>, root: &OwnedFd) -> Result<(OwnedFd, &'a str), ProtoError> {
    let Some((parent, name)) = p.split_last() else {
        return Err(ProtoError::new(ErrorCode::BadPath, format!("\"{}\": names the root itself", p.text)));
    };
    Ok((paths::open_dir_creating(root.as_fd(), p, parent)?, name))
}

/// `mkdir`: the directory, its parents, then its mode and mtime.
pub fn mkdir(req: &Mkdir, id: Option<&Value>, ctx: &Ctx) -> Result<Map<String, Value>, ProtoError> {
    if req.mode.is_some_and(|m| m > 0o7777) {
        return Err(ProtoError::new(ErrorCode::BadRequest, "mkdir: mode must be permission bits (at most 0o7777)"));
    }
    writable(ctx)?;
    let p = RelPath::parse(&req.path)?;
    let root = paths::open_root(&ctx.cfg.root)?;
    let (dir, name) = parent_of(&p, &root)?;
    match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(p.error(e)),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
        Errno::LOOP | Errno::NOTDIR => ProtoError::new(ErrorCode::NotADirectory, format!("\"{}\": exists and is not a directory", req.path)),
        e => p.error(e),
    })?;
    if let Some(mode) = req.mode {
        // Permission bits only: no set-id or sticky directories from a client.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777)).map_err(|e| p.error(e))?;
    }
    if let Some(t) = req.mtime {
        set_mtime(&fd, t).map_err(|e| p.error(e))?;
    }
    if req.sync {
        rustix::fs::syncfs(&fd).map_err(|e| p.error(e))?;
    }
    Ok(tree::made(&req.path, "dir", id))
}

/// `symlink`: a link inside the root, made under a temporary name and
/// renamed over what is there (a file or a link, not a directory).
pub fn symlink(req: &Symlink, id: Option<&Value>, ctx: &Ctx) -> Result<Map<String, Value>, ProtoError> {
    writable(ctx)?;
    let p = RelPath::parse(&req.path)?;
    if !tree::target_inside(&p.joined(), &req.target) {
        let msg = format!("\"{}\": the link's target {:?} leads outside the served root", req.path, req.target);
        return Err(ProtoError::new(ErrorCode::BadPath, msg));
    }
    let root = paths::open_root(&ctx.cfg.root)?;
    let (dir, name) = parent_of(&p, &root)?;
    if let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            return Err(p.error(Errno::ISDIR));
        }
    }
    let tmp = temp_name();
    rustix::fs::symlinkat(req.target.as_str(), &dir, tmp.as_str()).map_err(|e| p.error(e))?;
    if let Err(e) = rustix::fs::renameat(&dir, tmp.as_str(), &dir, name) {
        let _ = rustix::fs::unlinkat(&dir, tmp.as_str(), AtFlags::empty());
        return Err(p.error(e));
    }
    Ok(tree::made(&req.path, "link", id))
}

/// The recursive `listing`: every entry under the path (the path itself not
/// included), named by its path relative to it, parents before children,
/// siblings by name. Links are not followed; a link's `target` is given when
/// it stays inside the root. A directory whose name is not UTF-8 is listed
/// (with `name_hex`) but not entered: its entries could not be asked for.
/// A directory that cannot be opened or read carries an `error` (its
/// entries read so far stay listed); the listing goes on.
pub fn list(req: &msg::PathReq, id: Option<&Value>, ctx: &Ctx) -> Result<(Map<String, Value>, Vec<u8>), ProtoError> {
    let p = RelPath::parse(&req.path)?;
    let root = paths::open_root(&ctx.cfg.root)?;
    let base = p.joined();
    let top = paths::open(root.as_fd(), &p, OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut entries = Vec::new();
    walk(&top, "", &base, &mut entries).map_err(|e| match e {
        Walk::Errno(e) => p.error(e),
        Walk::TooMany => ProtoError::new(
            ErrorCode::TooLarge,
            format!("\"{}\": more than {MAX_TREE_ENTRIES} entries in one recursive listing", req.path),
        ),
    })?;
    let body = serde_json::to_vec(&entries).expect("entries serialize");
    Ok((msg::listing(&req.path, id), body))
}

enum Walk {
    Errno(Errno),
    TooMany,
}

/// Lists `dir` (at `prefix` under the listed path, `base` from the root)
/// into `out`, then each subdirectory in turn. Directories are opened from
/// their parent without following links.
fn walk(dir: &OwnedFd, prefix: &str, base: &str, out: &mut Vec<Entry>) -> Result<(), Walk> {
    let mut here = Vec::new();
    for item in rustix::fs::Dir::read_from(dir).map_err(Walk::Errno)? {
        let item = item.map_err(Walk::Errno)?;
        let name = item.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        let rel = format!("{prefix}{}", name.to_string_lossy());
        let mut e = entry(rel.clone(), &st);
        if name.to_str().is_err() {
            let mut bytes = prefix.as_bytes().to_vec();
            bytes.extend_from_slice(name.to_bytes());
            e.name_hex = Some(crate::proto::auth::to_hex(&bytes));
        } else if e.kind == Kind::Link {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).ok().and_then(|t| t.into_string().ok());
            let from_root = if base == "." { rel.clone() } else { format!("{base}/{rel}") };
            e.target = target.filter(|t| tree::target_inside(&from_root, t));
        }
        here.push(e);
    }
    here.sort_by(|a, b| a.name.cmp(&b.name));
    for e in here {
        if out.len() >= MAX_TREE_ENTRIES {
            return Err(Walk::TooMany);
        }
        let enter = e.kind == Kind::Dir && e.name_hex.is_none();
        let name = e.name.clone();
        out.push(e);
        if enter {
            let last = &name[prefix.len()..];
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            // A directory swapped for something else since it was read is
            // left out; one that cannot be opened or read carries its error.
            let at = out.len() - 1;
            let walked = match rustix::fs::openat(dir, last, flags, Mode::empty()) {
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => Err(Walk::Errno(e)),
                Ok(sub) => walk(&sub, &format!("{name}/"), base, out),
            };
            match walked {
                Err(Walk::Errno(e)) => {
                    let shown = if base == "." { name.clone() } else { format!("{base}/{name}") };
                    let err = crate::paths::errno_error(&shown, e);
                    out[at].error = Some(msg::EntryError { code: err.code.as_str().to_string(), message: err.message });
                }
                Err(Walk::TooMany) => return Err(Walk::TooMany),
                Ok(()) => {}
            }
        }
    }
    Ok(())
}

/// What a connection's tree puts have taken so far: the puts of one tree
/// (the same `tree` id, one after another on a connection) share one
/// `max_upload`. A put of another tree, or of none, starts afresh.
#[derive(Debug, Default)]
pub struct Tally {
    tree: Option<String>,
    used: u64,
}

impl Tally {
    /// The bytes the earlier puts of `put`'s tree took (0 outside a tree),
    /// and this put's declared size counted in when it fits under `max`.
    pub fn admit(&mut self, put: &Put, max: Option<u64>) -> u64 {
        let Some(t) = &put.tree else { return 0 };
        if self.tree.as_deref() != Some(t.as_str()) {
            self.tree = Some(t.clone());
            self.used = 0;
        }
        let before = self.used;
        let size = put.size.unwrap_or(0);
        if max.is_none_or(|m| before.saturating_add(size) <= m) {
            self.used = before.saturating_add(size);
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(tree: Option<&str>, size: u64) -> Put {
        Put { path: "f".into(), size: Some(size), mode: None, digest: Default::default(), expect: None, trailer: false, mtime: None, tree: tree.map(Into::into) }
    }

    #[test]
    fn a_trees_puts_count_together_and_a_new_tree_starts_afresh() {
        let mut t = Tally::default();
        assert_eq!(t.admit(&put(Some("a"), 60), Some(100)), 0);
        assert_eq!(t.admit(&put(Some("a"), 60), Some(100)), 60, "refused: not counted");
        assert_eq!(t.admit(&put(Some("a"), 40), Some(100)), 60);
        assert_eq!(t.admit(&put(Some("a"), 1), Some(100)), 100);
        assert_eq!(t.admit(&put(None, 90), Some(100)), 0);
        assert_eq!(t.admit(&put(Some("b"), 10), Some(100)), 0);
        assert_eq!(t.admit(&put(Some("b"), 10), None), 10);
    }
}
