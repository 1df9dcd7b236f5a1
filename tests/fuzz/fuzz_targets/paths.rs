//! The path resolver on arbitrary request paths: `RelPath::parse`, then, on a
//! temporary root made once (files, directories, links that stay inside,
//! links that lead out, a loop, a FIFO), `paths::open`, `open_dir_creating`
//! and `resolve_existing`. Never a panic, and nothing outside the root is
//! ever opened or created: every descriptor's `/proc/self/fd` link is checked
//! to be inside the root, and the directory beside the root is checked to be
//! untouched.
//!
//! Input: `[mode, path bytes...]` (the path as UTF-8, lossily: request paths
//! are JSON strings). `mode` picks the open flags and whether parents are
//! created.
#![no_main]

use ferry::paths::{self, RelPath};
use libfuzzer_sys::fuzz_target;
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::OFlags;
use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Tree {
    _dir: tempfile::TempDir,
    /// Canonical.
    root: PathBuf,
    outside: PathBuf,
    root_fd: OwnedFd,
    /// Each directory of the tree and the names it holds, to undo creations.
    layout: Vec<(PathBuf, BTreeSet<String>)>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        std::fs::write(root.join("f"), b"f").unwrap();
        std::fs::write(root.join("d/g"), b"g").unwrap();
        std::fs::write(root.join("d/sub/h"), b"h").unwrap();
        for (target, link) in [
            ("d", "in"),                          // a link that stays inside
            ("../f", "d/up"),                     // .. that stays inside
            ("../../d/sub", "d/sub/round"),       // up twice, back down
            (".", "self"),                        // the root itself
            ("/", "slash"),                       // absolute: out
            ("..", "dotdot"),                     // the root's parent
            ("../outside", "out"),                // beside the root
            ("../outside/secret", "outfile"),     // a file beside the root
            ("../../outside", "d/out2"),          // out from a subdirectory
            ("loop2", "loop1"),                   // a loop
            ("loop1", "loop2"),
            ("/proc/self/root", "proc"),          // a magic link's way out
            ("missing", "dangling"),
        ] {
            symlink(target, root.join(link)).unwrap();
        }
        symlink(root.join("d"), root.join("abs_in")).unwrap(); // absolute, even if inside: refused
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &root.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let layout = [root.clone(), root.join("d"), root.join("d/sub"), outside.clone()]
            .into_iter()
            .map(|d| {
                let names = names(&d);
                (d, names)
            })
            .collect();
        let root_fd = paths::open_root(&root).unwrap();
        // libFuzzer ends with exit(): statics are not dropped, so remove the tree then.
        BASE.set(base).unwrap();
        unsafe { libc::atexit(remove_tree) };
        Tree { _dir: dir, root, outside, root_fd, layout }
    })
}

static BASE: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_tree() {
    if let Some(base) = BASE.get() {
        let _ = std::fs::remove_dir_all(base);
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect()
}

/// Panics unless `fd` refers to something inside the root.
fn check_inside(t: &Tree, fd: &OwnedFd, what: &str) {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert!(link.starts_with(&t.root), "{what} opened {link:?}, outside the root {:?}", t.root);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, path)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(path);
    let t = tree();

    // The spelling rules alone.
    let Ok(p) = RelPath::parse(&text) else {
        assert!(paths::join(&t.root, &text).is_err());
        assert!(paths::resolve_existing(&t.root, &text).is_err());
        return;
    };
    assert!(!p.parts.iter().any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('/')));
    let joined = p.joined();
    assert!(!joined.starts_with('/'));
    assert!(paths::join(&t.root, &text).unwrap().starts_with(&t.root));

    // Opening it. FIFOs must not block: reads are opened O_NONBLOCK, as `get` does.
    let flags = match mode & 3 {
        0 => OFlags::PATH,
        1 => OFlags::RDONLY | OFlags::NONBLOCK,
        2 => OFlags::RDONLY | OFlags::DIRECTORY,
        _ => OFlags::PATH | OFlags::NOFOLLOW,
    };
    if let Ok(fd) = paths::open(t.root_fd.as_fd(), &p, flags) {
        check_inside(t, &fd, "open");
    }

    // An exec's working directory: a path, checked after canonicalize.
    if mode & 4 != 0 {
        if let Ok(real) = paths::resolve_existing(&t.root, &text) {
            assert!(real.starts_with(&t.root), "resolve_existing gave {real:?}");
            assert_eq!(real.canonicalize().ok().as_ref(), Some(&real), "resolve_existing is canonical");
        }
    }

    // A put's parent directories, created beneath the root; then undone.
    if mode & 8 != 0 {
        if let Some((parent, _)) = p.split_last() {
            if let Ok(fd) = paths::open_dir_creating(t.root_fd.as_fd(), &p, parent) {
                check_inside(t, &fd, "open_dir_creating");
            }
        }
        for (dir, want) in &t.layout {
            let have = names(dir);
            if have != *want {
                assert!(*dir != t.outside, "something was created beside the root: {have:?}");
                for extra in have.difference(want) {
                    std::fs::remove_dir_all(dir.join(extra)).unwrap();
                }
            }
        }
    }
});
