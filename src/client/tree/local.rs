//! The local side of a tree: walking a directory without following links
//! (what `put -r` sends), and making directories and links where `get -r`
//! writes (a link is made under a temporary name and renamed into place).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// What an entry of a local tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    File { size: u64, mode: u32, mtime: i64 },
    Dir { mode: u32, mtime: i64 },
    Link { target: String },
}

/// An entry of a local tree: its path relative to the tree, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub rel: String,
    pub what: What,
}

/// Walks `root` (a directory) without following links: every entry under
/// it, parents before children, siblings by name; and the entries that
/// cannot be sent, with why (a name that is not UTF-8, a device, a FIFO,
/// an unreadable directory).
pub fn walk(root: &Path) -> (Vec<Local>, Vec<(String, String)>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    walk_into(root, "", &mut out, &mut bad);
    (out, bad)
}

fn walk_into(dir: &Path, prefix: &str, out: &mut Vec<Local>, bad: &mut Vec<(String, String)>) {
    let shown = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}{name}") };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let at = if prefix.is_empty() { dir.display().to_string() } else { prefix.trim_end_matches('/').to_string() };
            bad.push((at, super::super::io_text(&e)));
            return;
        }
    };
    let mut here: Vec<(String, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        match e.file_name().into_string() {
            Ok(name) => here.push((name, e.path())),
            Err(raw) => bad.push((shown(&raw.to_string_lossy()), "the name is not UTF-8: it cannot be sent".into())),
        }
    }
    here.sort();
    for (name, path) in here {
        let rel = shown(&name);
        let m = match path.symlink_metadata() {
            Ok(m) => m,
            Err(e) => {
                bad.push((rel, super::super::io_text(&e)));
                continue;
            }
        };
        let (mode, mtime) = (m.mode() & 0o7777, m.mtime());
        let ft = m.file_type();
        if ft.is_symlink() {
            match fs::read_link(&path).map(PathBuf::into_os_string).map(std::ffi::OsString::into_string) {
                Ok(Ok(target)) => out.push(Local { rel, what: What::Link { target } }),
                Ok(Err(_)) => bad.push((rel, "the link's target is not UTF-8: it cannot be sent".into())),
                Err(e) => bad.push((rel, super::super::io_text(&e))),
            }
        } else if ft.is_dir() {
            out.push(Local { rel: rel.clone(), what: What::Dir { mode, mtime } });
            walk_into(&path, &format!("{rel}/"), out, bad);
        } else if ft.is_file() {
            out.push(Local { rel, what: What::File { size: m.len(), mode, mtime } });
        } else {
            bad.push((rel, "not a regular file, directory or link: skipped".into()));
        }
    }
}

/// True for a tree-relative path a server may name: relative, no `.` or
/// `..` component, no empty one.
pub fn is_plain(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// `rel` under `root`, for a path `is_plain` accepted.
pub fn under(root: &Path, rel: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(rel.split('/'));
    p
}

/// A UNIX time as a `SystemTime`.
fn when(t: i64) -> std::time::SystemTime {
    let abs = Duration::from_secs(t.unsigned_abs());
    let w = if t >= 0 { UNIX_EPOCH.checked_add(abs) } else { UNIX_EPOCH.checked_sub(abs) };
    w.unwrap_or(UNIX_EPOCH)
}

/// Makes the directory `p` (not through a link), keeping one that exists.
pub fn make_dir(p: &Path) -> io::Result<()> {
    match fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match p.symlink_metadata() {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io::Error::other("exists and is not a directory; not touching it")),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Gives a directory its permission bits (no set-id, no sticky) and mtime.
pub fn finish_dir(p: &Path, mode: u32, mtime: i64) -> io::Result<()> {
    let m = p.symlink_metadata()?;
    if !m.is_dir() {
        return Err(io::Error::other("is no longer a directory"));
    }
    fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o777))?;
    let f = fs::File::open(p)?;
    f.set_modified(when(mtime))
}

/// Syncs the file system `p` is on (`syncfs(2)`): the files of a tree are
/// renamed into place without an fsync each, and made durable here once.
pub fn sync_fs(p: &Path) -> io::Result<()> {
    let f = fs::File::open(p)?;
    rustix::fs::syncfs(&f).map_err(io::Error::from)
}

/// Makes a link at `p` to `target`, replacing a file or link there (never a
/// directory): made under a temporary name, then renamed into place.
pub fn make_link(p: &Path, target: &str) -> io::Result<()> {
    if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Err(io::Error::other("is a directory; not replacing it with a link"));
    }
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = p.with_file_name(format!(".{name}.ferry-link-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, p).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_lists_parents_first_and_does_not_follow_links() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("b/c")).unwrap();
        fs::create_dir(d.path().join("e")).unwrap();
        fs::write(d.path().join("b/c/f"), b"xy").unwrap();
        fs::write(d.path().join("a"), b"").unwrap();
        std::os::unix::fs::symlink("/etc", d.path().join("b/l")).unwrap();
        let (entries, bad) = walk(d.path());
        assert!(bad.is_empty());
        let rels: Vec<&str> = entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, ["a", "b", "b/c", "b/c/f", "b/l", "e"]);
        assert!(matches!(entries[3].what, What::File { size: 2, .. }));
        assert_eq!(entries[4].what, What::Link { target: "/etc".into() });
    }

    #[test]
    fn plain_paths_only() {
        assert!(is_plain("a/b"));
        for bad in ["", "/a", "a/../b", "..", "a//b", "./a", "a/"] {
            assert!(!is_plain(bad), "{bad}");
        }
    }

    #[test]
    fn links_replace_files_not_directories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        make_link(&f, "g").unwrap();
        assert_eq!(fs::read_link(&f).unwrap(), PathBuf::from("g"));
        fs::create_dir(d.path().join("dir")).unwrap();
        assert!(make_link(&d.path().join("dir"), "g").is_err());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2, "no temporary left");
    }
}
