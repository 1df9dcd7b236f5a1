//! Request paths, resolved inside the served root.
//!
//! A request path is relative to the root. Absolute paths, `..` components and
//! NUL bytes are refused outright (`bad-path`); what is left is joined to the
//! root and canonicalized, so a symbolic link that leads outside is refused too.

use crate::proto::{ErrorCode, ProtoError};
use std::path::{Component, Path, PathBuf};

/// Checks the spelling of a request path and returns it joined to `root`.
/// `root` must already be canonical (absolute, no links).
pub fn join(root: &Path, rel: &str) -> Result<PathBuf, ProtoError> {
    let bad = |why: &str| ProtoError::new(ErrorCode::BadPath, format!("{rel:?}: {why}"));
    if rel.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut out = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("contains a `..` component")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("is absolute")),
        }
    }
    Ok(out)
}

/// Resolves an existing path: `join`, then follow links and check the result
/// is still inside the root.
pub fn resolve_existing(root: &Path, rel: &str) -> Result<PathBuf, ProtoError> {
    let joined = join(root, rel)?;
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ProtoError::new(ErrorCode::NotFound, format!("{rel:?}: no such file or directory")),
        _ => ProtoError::new(ErrorCode::BadPath, format!("{rel:?}: {e}")),
    })?;
    if !real.starts_with(root) {
        return Err(ProtoError::new(ErrorCode::BadPath, format!("{rel:?}: leads outside the served root")));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_rules() {
        let root = Path::new("/srv/root");
        assert_eq!(join(root, "a/b").unwrap(), Path::new("/srv/root/a/b"));
        assert_eq!(join(root, ".").unwrap(), root);
        assert_eq!(join(root, "").unwrap(), root);
        assert_eq!(join(root, "./a//b/").unwrap(), Path::new("/srv/root/a/b"));
        for bad in ["/etc/passwd", "..", "a/../../b", "a/..", "a\0b"] {
            assert_eq!(join(root, bad).unwrap_err().code, ErrorCode::BadPath, "{bad:?}");
        }
    }

    #[test]
    fn links_out_of_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        let root = root.canonicalize().unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("in")).unwrap();
        assert_eq!(resolve_existing(&root, "out").unwrap_err().code, ErrorCode::BadPath);
        assert_eq!(resolve_existing(&root, "in").unwrap(), root.join("inside"));
        assert_eq!(resolve_existing(&root, "missing").unwrap_err().code, ErrorCode::NotFound);
    }
}
