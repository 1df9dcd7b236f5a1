//! `get -r REMOTE [LOCAL]`: a remote directory here, as scp gets it (LOCAL
//! an existing directory: into it, under REMOTE's name; else LOCAL becomes
//! the copy; no LOCAL: REMOTE's name here).
//!
//! One recursive `list`, then a `get` per file, `WINDOW` of them in flight.
//! Each file goes through its `.part` as a single get does (hashed, checked
//! against the server's digest, mode and mtime set, renamed into place).
//! Links are made after the files, and only when their target stays inside
//! the tree being written; directories get their modes and mtimes last,
//! deepest first. With `-c`, a file already here at its full size is asked
//! for its digest only (a `get` from its end) and skipped when it matches;
//! a `.part` is resumed from where it ends.

use super::local::{self, is_plain, under};
use super::{basename, remote_join, remote_text, Outcome, Progress, Show, TreeError, WINDOW};
use crate::client::files::OnLocalError;
use crate::client::finish::{part_path, Part};
use crate::client::{io_text, Error, Session};
use crate::proto::msg::{self, Digest, Entry, Kind, Reply};
use crate::proto::tree as wire;
use std::io;
use std::path::{Path, PathBuf};

/// Where the tree lands here (ferry(1), Directory trees): LOCAL ending in
/// `/` is a directory to put the copy in, under REMOTE's name; an existing
/// directory LOCAL takes the copy in too, except with `-c` when it holds no
/// entry of that name: then LOCAL is the cut copy itself, resumed in place.
/// Otherwise LOCAL becomes the copy.
pub fn destination(remote: &str, local: Option<&str>, resume: bool) -> Result<PathBuf, TreeError> {
    let named = || {
        basename(remote)
            .map(PathBuf::from)
            .ok_or_else(|| TreeError::Usage(format!("\"{remote}\" names no directory to name a local one after: give LOCAL")))
    };
    let Some(l) = local else { return named() };
    let inside = |l: &str| match basename(remote) {
        Some(n) => Path::new(l).join(n),
        None => PathBuf::from(l),
    };
    Ok(if l.ends_with('/') {
        inside(l)
    } else if Path::new(l).is_dir() {
        let within = inside(l);
        if resume && within.symlink_metadata().is_err() {
            PathBuf::from(l)
        } else {
            within
        }
    } else {
        PathBuf::from(l)
    })
}

/// Makes the directory a tree lands in, and the missing ones on the way.
fn make_top(dest: &Path) -> io::Result<()> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    local::make_dir(dest)
}

/// One file to fetch: from `offset` (a `.part` resumed), or, with `verify`,
/// only its digest (a complete file here, for `-c`).
#[derive(Debug, Clone)]
struct Fetch {
    rel: String,
    size: u64,
    offset: u64,
    verify: bool,
}

/// The listing of the tree at `remote`.
fn listing(s: &mut Session, remote: &str) -> Result<Vec<Entry>, TreeError> {
    s.send(wire::list_recursive(remote), &[])?;
    let h = s.recv_header()?;
    let body = s.read_body(h.size)?;
    match Reply::from_header(&h) {
        Reply::Error(e) => Err(Error::Remote(e).into()),
        _ if h.kind != "listing" => Err(TreeError::Ferry(Error::Protocol(format!("expected listing, got {:?}", h.kind)))),
        _ => serde_json::from_slice(&body).map_err(|e| TreeError::Ferry(Error::Protocol(format!("listing body: {e}")))),
    }
}

/// What to ask for a file: with `-c`, a complete file is only verified and
/// a `.part` resumed.
fn plan(dest: &Path, e: &Entry, resume: bool) -> Fetch {
    let mut f = Fetch { rel: e.name.clone(), size: e.file_size, offset: 0, verify: false };
    if resume {
        let here = under(dest, &e.name);
        if here.symlink_metadata().is_ok_and(|m| m.is_file() && m.len() == e.file_size) {
            f.offset = e.file_size;
            f.verify = true;
        } else if let Ok(m) = part_path(&here).symlink_metadata() {
            if m.is_file() && m.len() <= e.file_size {
                f.offset = m.len();
            }
        }
    }
    f
}

/// Hashes a local file whole (None with `none`).
fn local_hex(path: &Path, digest: Digest) -> io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let Some(mut h) = digest.hasher() else { return Ok(None) };
    crate::client::finish::hash_reader(&mut f, &mut h, &mut |_| {})?;
    Ok(Some(h.hex()))
}

/// The digests of a tree's gets: `file` for the files fetched (the
/// session's), `verify` for the ones `-c` only checks.
#[derive(Debug, Clone, Copy)]
struct Digests {
    file: Digest,
    verify: Digest,
}

impl Digests {
    fn of(&self, f: &Fetch) -> Digest {
        if f.verify {
            self.verify
        } else {
            self.file
        }
    }
}

/// Reads the reply to one fetch into place. `Ok(Some(f))`: the file here
/// differs from the server's and must be fetched whole.
fn receive(s: &mut Session, p: &mut Progress, (remote, dest): (&str, &Path), f: &Fetch, d: Digests) -> Result<Option<Fetch>, Error> {
    let path = remote_join(remote, &f.rel);
    let here = under(dest, &f.rel);
    let digest = d.of(f);
    let info = match s.get_reply(&path, f.offset, digest) {
        Ok(info) => info,
        Err(Error::Remote(e)) if !e.code.is_fatal() => {
            p.fail(&f.rel, &remote_text(&e));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if f.verify {
        let theirs = s.get_body(&info, &mut io::sink(), OnLocalError::Drain)?;
        return Ok(match (theirs, local_hex(&here, digest)) {
            (Some(t), Ok(Some(o))) if t.eq_ignore_ascii_case(&o) => {
                p.skipped(f.size);
                None
            }
            _ => Some(Fetch { offset: 0, verify: false, ..f.clone() }),
        });
    }
    let opened = if f.offset > 0 { Part::resume(&here, digest) } else { Part::create(&here, digest) };
    let mut part = match opened {
        Ok(part) if part.offset == f.offset => part,
        other => {
            s.get_body(&info, &mut io::sink(), OnLocalError::Drain)?;
            let why = match other {
                Err(e) => io_text(&e),
                Ok(_) => format!("{} changed while the tree was fetched", part_path(&here).display()),
            };
            p.fail(&f.rel, &why);
            return Ok(None);
        }
    };
    p.bytes(f.offset);
    let bar = p.bar();
    let theirs = match s.get_body(&info, &mut bar.wrap_write(&mut part.out), OnLocalError::Drain) {
        Ok(t) => t,
        Err(Error::Local(e)) => {
            p.fail(&f.rel, &io_text(&e));
            return Ok(None);
        }
        // `changed` replaces `done`: the session is in step, the .part is
        // a mix of two versions.
        Err(Error::Remote(r)) if r.code == crate::proto::ErrorCode::Changed => {
            part.discard();
            p.fail(&f.rel, "the file changed on the server while it was sent; removed its .part");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Some(ours) = part.out.hex() {
        if !theirs.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(&ours)) {
            part.discard();
            let d = digest.as_str();
            let why = match theirs {
                Some(t) => format!("digest mismatch: the received file has {d} {ours}, the server's is {t}; removed"),
                None => format!("digest mismatch: the received file has {d} {ours}, the server sent no {d}; removed"),
            };
            p.fail(&f.rel, &why);
            return Ok(None);
        }
    }
    match part.finish_with(&here, info.mode, info.mtime, false) {
        Ok(()) => p.entry_done(true),
        Err(e) => p.fail(&f.rel, &io_text(&e)),
    }
    Ok(None)
}

/// Fetches `todo` with up to `WINDOW` gets in flight; what must be fetched
/// again whole.
fn fetch_all(s: &mut Session, p: &mut Progress, at: (&str, &Path), todo: &[Fetch], d: Digests) -> Result<Vec<Fetch>, Error> {
    let mut again = Vec::new();
    let mut asked = 0;
    for (i, f) in todo.iter().enumerate() {
        while asked < todo.len() && asked - i < WINDOW {
            let a = &todo[asked];
            s.send(msg::request::get(&remote_join(at.0, &a.rel), a.offset, d.of(a)), &[])?;
            asked += 1;
        }
        again.extend(receive(s, p, at, f, d)?);
    }
    Ok(again)
}

/// `get -r`: the directory `remote` here. `TreeError::NotADirectory` when
/// it is not one (the caller then gets it as a file).
pub fn run(s: &mut Session, show: Show<'_>, remote: &str, local: Option<&str>, resume: bool) -> Result<Outcome, TreeError> {
    let top = s.stat(remote)?;
    if top.kind != Kind::Dir {
        return Err(TreeError::NotADirectory);
    }
    let dest = destination(remote, local, resume)?;
    let entries = listing(s, remote)?;
    let (files, bytes) =
        entries.iter().filter(|e| e.kind == Kind::File).fold((0, 0), |(n, b), e| (n + 1, b + e.file_size));
    let digest = s.pick_digest()?;
    let d = Digests { file: digest, verify: super::put::check_digest(s, digest) };
    let mut p = Progress::new(show, &dest.display().to_string(), files, bytes);
    p.digest = digest;
    make_top(&dest).map_err(|e| TreeError::Failed(format!("{}: {}", dest.display(), io_text(&e))))?;
    let mut todo = Vec::new();
    let mut dirs = Vec::new();
    let mut links = Vec::new();
    // Nothing is written under a directory that could not be made (a link
    // or a file in its place is never written through).
    let mut unmade: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for e in &entries {
        let under_unmade = e.name.match_indices('/').any(|(i, _)| unmade.contains(&e.name[..i]));
        if under_unmade {
            p.fail(&e.name, "skipped: its directory could not be made");
            continue;
        }
        if let Some(hex) = &e.name_hex {
            let raw = crate::proto::auth::from_hex(hex).unwrap_or_else(|| e.name.clone().into_bytes());
            p.fail_bytes(&raw, "the name is not UTF-8: it cannot be asked for");
            continue;
        }
        if !is_plain(&e.name) {
            p.fail(&e.name, "bad-path: the server named an entry outside the tree");
            continue;
        }
        match e.kind {
            Kind::Dir => match local::make_dir(&under(&dest, &e.name)) {
                Ok(()) => {
                    // The server could not read it: what it holds is missing.
                    if let Some(err) = &e.error {
                        p.fail(&e.name, &err.text());
                    }
                    dirs.push(e)
                }
                Err(err) => {
                    unmade.insert(&e.name);
                    p.fail(&e.name, &io_text(&err));
                }
            },
            Kind::File => todo.push(plan(&dest, e, resume)),
            Kind::Link => links.push(e),
            Kind::Other => p.fail(&e.name, "not a regular file, directory or link: skipped"),
        }
    }
    let again = fetch_all(s, &mut p, (remote, &dest), &todo, d)?;
    fetch_all(s, &mut p, (remote, &dest), &again, d)?;
    for e in links {
        let made = match &e.target {
            None => Err("bad-path: the link leads outside the served root".to_string()),
            Some(t) if !wire::target_inside(&e.name, t) => Err(format!("bad-path: the link's target {t:?} leads outside the tree")),
            Some(t) => local::make_link(&under(&dest, &e.name), t).map_err(|err| io_text(&err)),
        };
        match made {
            Ok(()) => p.entry_done(false),
            Err(why) => p.fail(&e.name, &why),
        }
    }
    for e in dirs.iter().rev() {
        match local::finish_dir(&under(&dest, &e.name), e.mode, e.mtime) {
            Ok(()) => p.entry_done(false),
            Err(err) => p.fail(&e.name, &io_text(&err)),
        }
    }
    if let Err(err) = local::finish_dir(&dest, top.mode, top.mtime).and_then(|()| local::sync_fs(&dest)) {
        p.fail(&dest.display().to_string(), &io_text(&err));
    }
    Ok(p.finish())
}
