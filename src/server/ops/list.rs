//! The `list` operation: a directory's entries as a JSON array, sorted by
//! name. Entries are described as they are (a link is a `link`, not what it
//! points to); the directory itself is reached through links that stay in
//! the root. Names that are not UTF-8 are shown with U+FFFD in place of the
//! bad bytes.

use super::ctx::Ctx;
use crate::paths::{self, RelPath};
use crate::proto::msg::{self, Entry, Kind};
use crate::proto::ProtoError;
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, FileType, OFlags, Stat};
use serde_json::{Map, Value};

/// What a `stat` structure describes.
pub fn entry(name: String, st: &Stat) -> Entry {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Link,
        _ => Kind::Other,
    };
    Entry { name, kind, file_size: st.st_size as u64, mode: st.st_mode & 0o7777, mtime: st.st_mtime, name_hex: None, target: None }
}

/// The `listing` header and its body.
pub fn start(req: &msg::PathReq, id: Option<&Value>, ctx: &Ctx) -> Result<(Map<String, Value>, Vec<u8>), ProtoError> {
    let p = RelPath::parse(&req.path)?;
    let root = paths::open_root(&ctx.cfg.root)?;
    let dir = paths::open(root.as_fd(), &p, OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut entries = Vec::new();
    for item in rustix::fs::Dir::read_from(&dir).map_err(|e| p.error(e))? {
        let item = item.map_err(|e| p.error(e))?;
        let name = item.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        // An entry removed since readdir saw it is simply left out.
        let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        let mut e = entry(name.to_string_lossy().into_owned(), &st);
        if name.to_str().is_err() {
            // Protocol paths are JSON strings: such a name can be shown
            // exactly (name_hex), not asked for.
            e.name_hex = Some(crate::proto::auth::to_hex(name.to_bytes()));
        }
        entries.push(e);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let body = serde_json::to_vec(&entries).expect("entries serialize");
    Ok((msg::listing(&req.path, id), body))
}
