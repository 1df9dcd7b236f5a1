//! The wire words of a directory tree (`get -r`, `put -r`): the `mkdir` and
//! `symlink` requests, their `ok` reply, the `put` and `list` fields a tree
//! adds, and the one rule both ends apply to a symbolic link: its target,
//! read from where the link sits, must stay inside the root.
//!
//! A tree is not a request of its own. `put -r` is a pipeline of the
//! per-entry requests the server already serves (`put` for each file, with
//! `mtime` and a `tree` id; `symlink` for each link; `mkdir` for each
//! directory, deepest first, to create empty ones and set modes and mtimes
//! once their contents are in); `get -r` is one `list` with `recursive`,
//! then a pipeline of `get`s. Each file is atomic and checked by its digest
//! exactly as a single `get` or `put` is. Imports nothing else of the crate.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The `mkdir` request: create `path` (and its parents), then set its mode
/// (permission bits only) and mtime when given. An existing directory is
/// only given the mode and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mkdir {
    pub path: String,
    pub mode: Option<u32>,
    pub mtime: Option<i64>,
    /// The tree's last request: sync the file system (`syncfs`) before the
    /// answer, which makes the tree's files durable (they are renamed into
    /// place without an fsync each).
    #[serde(default)]
    pub sync: bool,
}

/// The `symlink` request: a link at `path` to `target`, replacing a file or
/// link there (never a directory). `target` must stay inside the root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Symlink {
    pub path: String,
    pub target: String,
}

/// True when a link at `link` (a root-relative path) to `target` leads to
/// somewhere inside the root, read lexically: `target` is relative and its
/// `..` components never climb above the root from the link's directory.
/// An empty or absolute target, or one with a NUL byte, is outside.
pub fn target_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth: Vec<&str> = link.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if depth.pop().is_none() {
        return false;
    }
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            c => depth.push(c),
        }
    }
    true
}

fn request(kind: &str, path: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("path".into(), json!(path));
    m
}

/// `{"type":"mkdir","path":...,"mode":...,"mtime":...}`.
pub fn mkdir(path: &str, mode: Option<u32>, mtime: Option<i64>, sync: bool) -> Map<String, Value> {
    let mut m = request("mkdir", path);
    if sync {
        m.insert("sync".into(), json!(true));
    }
    if let Some(mode) = mode {
        m.insert("mode".into(), json!(mode));
    }
    if let Some(t) = mtime {
        m.insert("mtime".into(), json!(t));
    }
    m
}

/// `{"type":"symlink","path":...,"target":...}`.
pub fn symlink(path: &str, target: &str) -> Map<String, Value> {
    let mut m = request("symlink", path);
    m.insert("target".into(), json!(target));
    m
}

/// `{"type":"list","path":...,"recursive":true}`: every entry under `path`,
/// with paths relative to it.
pub fn list_recursive(path: &str) -> Map<String, Value> {
    let mut m = request("list", path);
    m.insert("recursive".into(), json!(true));
    m
}

/// A sized `put` of one file of a tree (`m`, the put's header with its
/// digest fields) with the tree's fields added: `mtime` is set on the file,
/// and `tree` names the tree, whose puts together count against the
/// server's upload limit.
pub fn put(mut m: Map<String, Value>, mtime: i64, tree: &str) -> Map<String, Value> {
    m.insert("mtime".into(), json!(mtime));
    m.insert("tree".into(), json!(tree));
    m
}

/// The `ok` answer to `mkdir` (`kind` `dir`) and `symlink` (`kind` `link`).
pub fn made(path: &str, kind: &str, id: Option<&Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!("ok"));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    m.insert("path".into(), json!(path));
    m.insert("kind".into(), json!(kind));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_inside_and_outside_the_root() {
        assert!(target_inside("a/l", "b"));
        assert!(target_inside("a/l", "../b"));
        assert!(target_inside("a/b/l", "../../c/d"));
        assert!(target_inside("l", "."));
        assert!(target_inside("a/l", "x/../../y"));
        assert!(!target_inside("l", ".."));
        assert!(!target_inside("a/l", "../.."));
        assert!(!target_inside("a/l", "../../etc/passwd"));
        assert!(!target_inside("a/l", "/etc/passwd"));
        assert!(!target_inside("a/l", ""));
        assert!(!target_inside("a/l", "x/../../../y"));
        assert!(!target_inside("", "x"));
        assert!(!target_inside("./l", "../x"));
    }

    #[test]
    fn builders_spell_the_wire_words() {
        let m = mkdir("d", Some(0o755), Some(7), true);
        assert_eq!(Value::Object(m), json!({"type":"mkdir","path":"d","sync":true,"mode":0o755,"mtime":7}));
        assert_eq!(Value::Object(symlink("l", "t")), json!({"type":"symlink","path":"l","target":"t"}));
        assert_eq!(Value::Object(list_recursive(".")), json!({"type":"list","path":".","recursive":true}));
        assert_eq!(Value::Object(made("d", "dir", Some(&json!(3)))), json!({"type":"ok","id":3,"path":"d","kind":"dir"}));
    }
}
