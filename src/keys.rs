//! Keys files on disk: where they are looked for, creating one on first start,
//! and refusing files that others can read. The format is `proto::auth::Keys`.

use crate::proto::auth::{fresh_secret, Keys};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$FERRY_KEYS`, else `~/.config/ferry/keys` (when `HOME` is set).
pub fn user_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERRY_KEYS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config/ferry/keys"))
}

/// The client's search order: `$FERRY_KEYS`, `~/.config/ferry/keys`, `/etc/ferry/keys`;
/// the first that exists (or the first candidate, so the error names it).
pub fn client_path() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("FERRY_KEYS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    candidates.extend(user_path());
    candidates.push(PathBuf::from("/etc/ferry/keys"));
    candidates.iter().find(|p| p.exists()).cloned().or_else(|| candidates.into_iter().next())
}

/// Reads and parses a keys file, refusing one that group or others can read.
pub fn load(path: &Path) -> Result<Keys, String> {
    let text = read_private(path)?;
    Keys::parse(&text).map_err(|e| format!("keys file {}: {e}", path.display()))
}

/// The text of a keys file, refusing one that group or others can read.
fn read_private(path: &Path) -> Result<String, String> {
    let meta = fs::metadata(path).map_err(|e| format!("keys file {}: {}", path.display(), crate::term::io_text(&e)))?;
    if meta.is_dir() {
        return Err(format!("keys file {} is a directory: name the keys file itself", path.display()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "keys file {} is readable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    fs::read_to_string(path).map_err(|e| format!("keys file {}: {}", path.display(), crate::term::io_text(&e)))
}

/// Appends a new random key named `id` to `path`, creating the file (mode 0600)
/// and its directory (mode 0700) when missing. Refuses an id already there.
pub fn generate(path: &Path, id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        return Err(format!("key id \"{id}\" must be one word"));
    }
    let mut newline = false;
    if path.exists() {
        // An empty or comment-only file (as ferry-keys(5) suggests creating) takes its first key.
        let text = read_private(path)?;
        let existing = Keys::parse_maybe_empty(&text).map_err(|e| format!("keys file {}: {e}", path.display()))?;
        newline = !text.is_empty() && !text.ends_with('\n');
        if existing.get(id).is_some() {
            return Err(format!("keys file {} already has a key \"{id}\"", path.display()));
        }
    } else if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let sep = if newline { "\n" } else { "" };
    writeln!(f, "{sep}{id} {}", fresh_secret())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_creates_a_private_file_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keys");
        generate(&path, "default").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        generate(&path, "ci").unwrap();
        let keys = load(&path).unwrap();
        assert_eq!(keys.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["default", "ci"]);
        assert_eq!(keys.first().unwrap().secret.len(), 64);
        assert!(generate(&path, "ci").unwrap_err().contains("already has"));
    }

    #[test]
    fn generate_fills_an_empty_or_comment_only_file() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("empty", ""), ("comments", "# ferry keys\n\n# no newline at the end")] {
            let path = dir.path().join(name);
            fs::OpenOptions::new().create(true).write(true).mode(0o600).open(&path).unwrap().write_all(text.as_bytes()).unwrap();
            generate(&path, "x").unwrap();
            let keys = load(&path).unwrap();
            assert_eq!(keys.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["x"], "{name}");
        }
        assert!(load(&dir.path().join("nothing")).is_err());
    }

    #[test]
    fn load_refuses_a_group_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        generate(&path, "k").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(e.contains("readable by group or others") && e.contains("640"), "{e}");
    }
}
