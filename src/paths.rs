//! Request paths, resolved inside the served root with the kernel's help.
//!
//! A request path is relative to the root. Its spelling is checked first:
//! absolute paths, `..` components and NUL bytes are `bad-path` outright. What
//! is left is opened with `openat2(2)` from a descriptor of the root with
//! `RESOLVE_BENEATH`: the kernel follows symbolic links component by component
//! and refuses (`EXDEV`) any step that would leave the root, so a link that
//! leads outside, or a component swapped for one during the request, cannot
//! take a request out of the root. Files are then used through descriptors,
//! never through their path again.

use crate::proto::{ErrorCode, ProtoError};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::path::{Component, Path, PathBuf};

/// How `openat2` resolves request paths: beneath the root, no /proc magic links.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// A request path whose spelling passed the checks, as its normal components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath<'a> {
    /// The path as the request spelled it, for messages and replies.
    pub text: &'a str,
    pub parts: Vec<&'a str>,
}

impl<'a> RelPath<'a> {
    /// Checks the spelling: no NUL, not absolute, no `..` component.
    pub fn parse(text: &'a str) -> Result<RelPath<'a>, ProtoError> {
        let bad = |why: &str| ProtoError::new(ErrorCode::BadPath, format!("\"{text}\": {why}"));
        if text.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        let mut parts = Vec::new();
        for c in Path::new(text).components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().expect("a &str's components are UTF-8")),
                Component::CurDir => {}
                Component::ParentDir => return Err(bad("contains a `..` component")),
                Component::RootDir | Component::Prefix(_) => return Err(bad("is absolute")),
            }
        }
        Ok(RelPath { text, parts })
    }

    /// The path relative to the root, `.` for the root itself.
    pub fn joined(&self) -> String {
        if self.parts.is_empty() {
            ".".to_string()
        } else {
            self.parts.join("/")
        }
    }

    /// The parent's components and the last one (None for the root itself).
    pub fn split_last(&self) -> Option<(&[&'a str], &'a str)> {
        let (last, parent) = self.parts.split_last()?;
        Some((parent, last))
    }

    /// Maps an errno from working on this path to the protocol's error.
    pub fn error(&self, e: Errno) -> ProtoError {
        errno_error(self.text, e)
    }
}

/// The protocol error for an errno met while working on `path`.
pub fn errno_error(path: &str, e: Errno) -> ProtoError {
    let (code, what) = match e {
        Errno::NOENT => (ErrorCode::NotFound, "no such file or directory".to_string()),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => (ErrorCode::PermissionDenied, "permission denied".to_string()),
        Errno::XDEV => (ErrorCode::BadPath, "leads outside the served root".to_string()),
        Errno::LOOP => (ErrorCode::BadPath, "too many levels of symbolic links".to_string()),
        Errno::ISDIR => (ErrorCode::IsADirectory, "is a directory".to_string()),
        Errno::NOTDIR => (ErrorCode::NotADirectory, "a component is not a directory".to_string()),
        Errno::NAMETOOLONG => (ErrorCode::BadPath, "name too long".to_string()),
        Errno::NOSPC | Errno::DQUOT | Errno::FBIG => (ErrorCode::NoSpace, format!("no space left: {e}")),
        e => (ErrorCode::IoError, std::io::Error::from(e).to_string()),
    };
    ProtoError::new(code, format!("\"{path}\": {what}"))
}

/// Opens the served root as a directory descriptor to resolve paths from.
pub fn open_root(root: &Path) -> Result<OwnedFd, ProtoError> {
    rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ProtoError::new(ErrorCode::IoError, format!("cannot open the served root: {e}")))
}

/// Opens `rel` (components joined by `/`) beneath `dir`. `openat2` answers
/// `EAGAIN` when a rename raced the lookup; that is retried a few times.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    // openat2 refuses O_PATH with anything but O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW.
    let flags = if flags.contains(OFlags::PATH) { flags | OFlags::CLOEXEC } else { flags | OFlags::CLOEXEC | OFlags::NOCTTY };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags, mode, RESOLVE) {
            Err(Errno::AGAIN) if tries < 8 => tries += 1,
            r => return r,
        }
    }
}

/// Opens the existing path `p` beneath `root` with `flags`.
pub fn open(root: BorrowedFd<'_>, p: &RelPath<'_>, flags: OFlags) -> Result<OwnedFd, ProtoError> {
    open_beneath(root, &p.joined(), flags, Mode::empty()).map_err(|e| p.error(e))
}

/// Opens the directory `parts` beneath `root` for writing entries into it,
/// creating missing directories (mode 0755, less the umask) one by one.
pub fn open_dir_creating(root: BorrowedFd<'_>, p: &RelPath<'_>, parts: &[&str]) -> Result<OwnedFd, ProtoError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY;
    let full = if parts.is_empty() { ".".to_string() } else { parts.join("/") };
    match open_beneath(root, &full, flags, Mode::empty()) {
        Err(Errno::NOENT) => {}
        r => return r.map_err(|e| p.error(e)),
    }
    let mut dir = open_beneath(root, ".", flags, Mode::empty()).map_err(|e| p.error(e))?;
    for (i, name) in parts.iter().enumerate() {
        match rustix::fs::mkdirat(dir.as_fd(), *name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(p.error(e)),
        }
        // Reopen from the root so links among the new components stay confined.
        dir = open_beneath(root, &parts[..=i].join("/"), flags, Mode::empty()).map_err(|e| p.error(e))?;
    }
    Ok(dir)
}

/// Checks the spelling of a request path and returns it joined to `root`.
/// `root` must already be canonical (absolute, no links).
pub fn join(root: &Path, rel: &str) -> Result<PathBuf, ProtoError> {
    let p = RelPath::parse(rel)?;
    let mut out = root.to_path_buf();
    out.extend(p.parts);
    Ok(out)
}

/// Resolves an existing path: `join`, then follow links and check the result
/// is still inside the root. (Used for an exec's working directory, which a
/// child needs as a path.)
pub fn resolve_existing(root: &Path, rel: &str) -> Result<PathBuf, ProtoError> {
    let joined = join(root, rel)?;
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProtoError::new(ErrorCode::NotFound, format!("\"{rel}\": no such file or directory")),
        _ => ProtoError::new(ErrorCode::BadPath, format!("\"{rel}\": {e}")),
    })?;
    if !real.starts_with(root) {
        return Err(ProtoError::new(ErrorCode::BadPath, format!("\"{rel}\": leads outside the served root")));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn spelling_rules() {
        let root = Path::new("/srv/root");
        assert_eq!(join(root, "a/b").unwrap(), Path::new("/srv/root/a/b"));
        assert_eq!(join(root, ".").unwrap(), root);
        assert_eq!(join(root, "").unwrap(), root);
        assert_eq!(join(root, "./a//b/").unwrap(), Path::new("/srv/root/a/b"));
        for bad in ["/etc/passwd", "..", "a/../../b", "a/..", "a\0b", "../x"] {
            assert_eq!(RelPath::parse(bad).unwrap_err().code, ErrorCode::BadPath, "{bad:?}");
        }
        let p = RelPath::parse("./a//b/").unwrap();
        assert_eq!(p.joined(), "a/b");
        assert_eq!(p.split_last(), Some((&["a"][..], "b")));
        assert_eq!(RelPath::parse(".").unwrap().split_last(), None);
    }

    #[test]
    fn errnos_map_to_codes() {
        for (e, code) in [
            (Errno::NOENT, ErrorCode::NotFound),
            (Errno::ACCESS, ErrorCode::PermissionDenied),
            (Errno::XDEV, ErrorCode::BadPath),
            (Errno::ISDIR, ErrorCode::IsADirectory),
            (Errno::NOTDIR, ErrorCode::NotADirectory),
            (Errno::NOSPC, ErrorCode::NoSpace),
            (Errno::FBIG, ErrorCode::NoSpace),
            (Errno::IO, ErrorCode::IoError),
        ] {
            assert_eq!(errno_error("x", e).code, code, "{e:?}");
        }
    }

    /// A root with `inside/f`, a link to `/`, a link to a file outside and a
    /// link that stays inside.
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        std::fs::write(root.join("inside/f"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        symlink("/", root.join("slash")).unwrap();
        symlink(dir.path().join("secret"), root.join("outfile")).unwrap();
        symlink("../inside/f", root.join("inside/up")).unwrap();
        symlink("inside", root.join("in")).unwrap();
        let root = root.canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn the_kernel_keeps_opens_beneath_the_root() {
        let (_d, root) = tree();
        let fd = open_root(&root).unwrap();
        let open = |rel: &str| open(fd.as_fd(), &RelPath::parse(rel).unwrap(), OFlags::RDONLY).map(|_| ());
        assert_eq!(open("inside/f"), Ok(()));
        assert_eq!(open("in/f"), Ok(()), "a link inside the root is followed");
        assert_eq!(open("inside/up"), Ok(()), "a link with .. that stays inside is followed");
        for bad in ["slash", "slash/etc/passwd", "outfile"] {
            assert_eq!(open(bad).unwrap_err().code, ErrorCode::BadPath, "{bad}");
        }
        assert_eq!(open("missing").unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(open("inside/f/x").unwrap_err().code, ErrorCode::NotADirectory);
    }

    #[test]
    fn missing_parents_are_created_but_never_outside() {
        let (_d, root) = tree();
        let fd = open_root(&root).unwrap();
        let p = RelPath::parse("new/deeper/file").unwrap();
        let (parent, _) = p.split_last().unwrap();
        open_dir_creating(fd.as_fd(), &p, parent).unwrap();
        assert!(root.join("new/deeper").is_dir());
        let p = RelPath::parse("slash/tmp/ferry-should-not-exist/f").unwrap();
        let (parent, _) = p.split_last().unwrap();
        assert_eq!(open_dir_creating(fd.as_fd(), &p, parent).unwrap_err().code, ErrorCode::BadPath);
        assert!(!Path::new("/tmp/ferry-should-not-exist").exists());
    }
}
