//! The exec allow-list's matching rule (`exec.allowed`): which program an
//! argv[0] names, and whether the list allows it. `exec::authorize` applies
//! it to each request; the rule is `check_program`'s doc.

use crate::proto::{ErrorCode, ProtoError};
use crate::server::spawn::DEFAULT_PATH;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Checks `program` (an argv[0]) against the allow-list and returns the path
/// to spawn. `path_env` is the daemon's `PATH` (None: `/bin:/usr/bin`).
///
/// An empty list allows anything, and `program` is returned unchanged (the
/// spawn looks it up through `PATH` as before). Otherwise the rule is:
///
/// - A bare name (no `/`) is looked up here, as execvp(3) would, in the
///   absolute directories of `PATH` (empty and relative entries are skipped:
///   they would resolve against the request's `cwd`, which clients control).
///   It is allowed when a name entry equals it, or when the file it resolves to
///   is an absolute-path entry. The resolved path is what is spawned, so no
///   second `PATH` lookup can run something else than what was checked.
/// - An absolute path is allowed when it is an absolute-path entry, or when its
///   file name is a name entry and the name resolves through `PATH` to it.
/// - A relative path with a `/` (`./x`, `bin/x`) is never allowed.
///
/// Two absolute paths are the same when their directories are the same after
/// resolving symbolic links and `..`, and their file names are equal: `/bin/env`
/// is `/usr/bin/env` where `/bin` links to `/usr/bin`. The file name itself is
/// compared, not followed, so allowing `/bin/ls` never allows the multi-call
/// binary it may link to. An entry with a `/` that is not absolute matches
/// nothing.
pub fn check_program(allowed: &[String], program: &OsStr, path_env: Option<&OsStr>) -> Result<PathBuf, ProtoError> {
    if allowed.is_empty() {
        return Ok(PathBuf::from(program));
    }
    let refuse = || {
        ProtoError::new(
            ErrorCode::NotAllowed,
            format!("\"{}\" is not in this server's exec allow-list", program.to_string_lossy()),
        )
    };
    let is_name = |e: &str| !e.is_empty() && !e.contains('/');
    let names = || allowed.iter().filter(|e| is_name(e)).map(|e| OsStr::new(e.as_str()));
    let paths = || allowed.iter().filter(|e| e.starts_with('/')).map(Path::new);
    let path_env = path_env.unwrap_or(OsStr::new(DEFAULT_PATH));

    if !program.as_bytes().contains(&b'/') {
        let resolved = which(program, path_env);
        if names().any(|n| n == program) {
            let missing = format!("cannot run \"{}\": not found in PATH", program.to_string_lossy());
            return resolved.ok_or_else(|| ProtoError::new(ErrorCode::SpawnFailed, missing));
        }
        let r = resolved.ok_or_else(refuse)?;
        return match same_file_name_in_dir(&r, paths()) {
            Some(checked) => Ok(checked),
            None => Err(refuse()),
        };
    }
    let p = Path::new(program);
    if !p.is_absolute() {
        return Err(refuse());
    }
    // An absolute entry, the same file by the rule above; or spelled exactly
    // as an entry (a path whose directory does not exist fails at spawn).
    if let Some(checked) = same_file_name_in_dir(p, paths()) {
        return Ok(checked);
    }
    if paths().any(|e| e == p) {
        return Ok(p.to_path_buf());
    }
    // A name entry, when the name resolves to this very path.
    if let (Some(name), Some(me)) = (p.file_name(), identity(p)) {
        if names().any(|n| n == name) && which(name, path_env).and_then(|r| identity(&r)).as_ref() == Some(&me) {
            return Ok(me);
        }
    }
    Err(refuse())
}

/// `p`'s identity for the allow-list: its directory with links and `..`
/// resolved, then its own file name. None when `p` is not absolute or its
/// directory does not exist.
fn identity(p: &Path) -> Option<PathBuf> {
    if !p.is_absolute() {
        return None;
    }
    let name = p.file_name()?;
    let dir = p.parent()?.canonicalize().ok()?;
    Some(dir.join(name))
}

/// `p`'s identity, if it is that of one of `entries`.
fn same_file_name_in_dir<'a>(p: &Path, mut entries: impl Iterator<Item = &'a Path>) -> Option<PathBuf> {
    let me = identity(p)?;
    entries.any(|e| identity(e).as_ref() == Some(&me)).then_some(me)
}

/// Where execvp(3) would find `name` through `path_env`: the first regular
/// file this process may execute, in the absolute directories of the list.
fn which(name: &OsStr, path_env: &OsStr) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    std::env::split_paths(path_env).filter(|d| d.is_absolute()).map(|d| d.join(name)).find(|c| is_executable_file(c))
}

fn is_executable_file(p: &Path) -> bool {
    let Ok(md) = std::fs::metadata(p) else { return false };
    md.is_file()
        && md.permissions().mode() & 0o111 != 0
        && rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
}
