//! `put -r LOCAL [REMOTE]`: a local directory to the server, as scp puts it
//! (REMOTE an existing directory: into it, under LOCAL's name; else REMOTE
//! becomes the copy; no REMOTE: LOCAL's name in the root).
//!
//! The digest is the session's (`Session::pick_digest`: blake3 when the
//! server offers it, else sha256, or `--digest`). Files up to `BATCH` bytes
//! are read once (hashed as they are read) and their `put` frames, the
//! digest in the header, gathered into one write. A bigger one, to a server
//! that announces digests, is hashed while it is sent (read once) and its
//! digest follows in a `trailer` frame; to an older server it is hashed
//! (sha256), then sent from the page cache. With `-c`, the remote tree is
//! listed first and a file of the same size is asked for its digest (a
//! `get` from its end sends no body, only the digest), in the same digest:
//! a complete file is skipped.

use super::local::{self, Local, What};
use super::{basename, remote_join, remote_text, reply, Outcome, Progress, Show, TreeError, WINDOW};
use crate::client::files::OnLocalError;
use crate::client::finish::hash_reader;
use crate::client::{io_text, Error, Session};
use crate::proto::auth::{fresh_nonce, to_hex};
use crate::proto::msg::request::{self as req, PutDigest};
use crate::proto::msg::{Digest, Entry, Kind};
use crate::proto::{encode_frame, encode_head, tree as wire, ErrorCode};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Files up to this size are read into memory and batched; frames are
/// gathered up to this many bytes before they are written.
const BATCH: usize = 256 * 1024;

/// The name the tree takes: LOCAL's own name (`.` is named after the
/// directory it is).
fn local_name(local: &str) -> Option<String> {
    if let Some(b) = basename(local) {
        return Some(b.to_string());
    }
    let real = std::fs::canonicalize(local).ok()?;
    Some(real.file_name()?.to_str()?.to_string())
}

/// Where the tree lands on the server, by the rule `get -r` follows
/// (`get::destination`): REMOTE ending in `/` is a directory to put the copy
/// in; an existing directory takes it in too, except with `-c` when it holds
/// no entry of LOCAL's name (REMOTE is then the cut copy, resumed in place).
pub fn destination(s: &mut Session, local: &str, remote: Option<&str>, resume: bool) -> Result<String, TreeError> {
    let name = local_name(local);
    let named = || name.clone().ok_or_else(|| TreeError::Usage(format!("\"{local}\" names no directory to name a remote one after: give REMOTE")));
    let Some(remote) = remote else { return named() };
    if remote.ends_with('/') && !remote.trim_end_matches('/').is_empty() {
        return Ok(remote_join(remote, &named()?));
    }
    match s.stat(remote) {
        Ok(e) if e.kind == Kind::Dir => {
            let within = remote_join(remote, &named()?);
            if !resume {
                return Ok(within);
            }
            match s.stat(&within) {
                Ok(_) => Ok(within),
                Err(Error::Remote(p)) if p.code == ErrorCode::NotFound => Ok(remote.trim_end_matches('/').to_string()),
                Err(e) => Err(e.into()),
            }
        }
        Ok(_) => Err(TreeError::Failed(format!("{remote}: exists on the server and is not a directory"))),
        Err(Error::Remote(p)) if p.code == ErrorCode::NotFound => Ok(remote.trim_end_matches('/').to_string()),
        Err(e) => Err(e.into()),
    }
}

/// What a reply in flight answers.
struct Pending {
    rel: String,
    file: bool,
}

/// The requests of a tree on their way: frames gathered into one write,
/// and the entries whose replies are still to come, oldest first.
struct Pipe {
    batch: Vec<u8>,
    pending: VecDeque<Pending>,
    /// The server refuses every write (`read-only`): the tree stops there,
    /// with one message, not one line per entry.
    refused: Option<crate::proto::ProtoError>,
}

impl Pipe {
    fn flush(&mut self, s: &Session) -> Result<(), Error> {
        if !self.batch.is_empty() {
            s.writer().send_encoded(&self.batch)?;
            self.batch.clear();
        }
        Ok(())
    }

    /// Queues an entry; reads the oldest replies while too many are in flight.
    fn sent(&mut self, s: &mut Session, p: &mut Progress, rel: &str, file: bool) -> Result<(), Error> {
        self.pending.push_back(Pending { rel: rel.to_string(), file });
        if self.batch.len() >= BATCH {
            self.flush(s)?;
        }
        while self.pending.len() > WINDOW {
            self.take(s, p)?;
        }
        Ok(())
    }

    /// Reads the oldest reply.
    fn take(&mut self, s: &mut Session, p: &mut Progress) -> Result<(), Error> {
        self.flush(s)?;
        let Some(e) = self.pending.pop_front() else { return Ok(()) };
        match reply(s)? {
            Ok(_) => p.entry_done(e.file),
            Err(err) if err.code == ErrorCode::ReadOnly => {
                self.refused.get_or_insert(err);
            }
            Err(err) if self.refused.is_some() => drop(err),
            Err(err) => p.fail(&e.rel, &remote_text(&err)),
        }
        Ok(())
    }
}

/// Reads a small file whole, hashing it (no hex with `none`).
fn read_small(path: &Path, size: u64, digest: Digest) -> io::Result<(Vec<u8>, Option<String>)> {
    let mut f = File::open(path)?;
    let mut buf = Vec::with_capacity(size as usize + 1);
    f.read_to_end(&mut buf)?;
    let hex = digest.hasher().map(|mut h| {
        h.update(&buf);
        h.hex()
    });
    Ok((buf, hex))
}

/// Hashes a file from its start: the open file, its size as hashed, the
/// digest (None with `none`).
fn hash_file(path: &Path, digest: Digest) -> io::Result<(File, u64, Option<String>)> {
    let mut f = File::open(path)?;
    let Some(mut h) = digest.hasher() else {
        let size = f.metadata()?.len();
        return Ok((f, size, None));
    };
    let size = hash_reader(&mut f, &mut h, &mut |_| {})?;
    Ok((f, size, Some(h.hex())))
}

/// How a tree's files are sent: the digest, and whether the server takes
/// it in a trailer (it announced digests).
#[derive(Debug, Clone, Copy)]
struct How<'a> {
    digest: Digest,
    trailer: bool,
    tree: &'a str,
}

/// A put header carrying its digest in the header (or none).
fn header_digest(digest: Digest, hex: &Option<String>) -> PutDigest<'_> {
    match hex {
        Some(h) => PutDigest::Header(digest, h),
        None => PutDigest::None,
    }
}

/// Sends one file's put (batched when small); false when the local file
/// could not be read (reported, nothing sent).
fn send_file(s: &mut Session, pipe: &mut Pipe, p: &mut Progress, root: &Path, dest: &str, rel: &str, (mode, mtime, size): (u32, i64, u64), how: How<'_>) -> Result<bool, Error> {
    let path = local::under(root, rel);
    let remote = remote_join(dest, rel);
    let mode = Some(mode & 0o777);
    if size as usize <= BATCH {
        let (body, hex) = match read_small(&path, size, how.digest) {
            Ok(r) => r,
            Err(e) => {
                p.fail(rel, &io_text(&e));
                return Ok(false);
            }
        };
        let header = req::put(&remote, mode, header_digest(how.digest, &hex), false);
        encode_frame(&mut pipe.batch, wire::put(header, mtime, how.tree), &body);
        p.bytes(body.len() as u64);
        return Ok(true);
    }
    // A trailer: opened and sized only, hashed while it is sent.
    let hashed = if how.trailer { hash_file(&path, Digest::None) } else { hash_file(&path, how.digest) };
    let (file, size, hex) = match hashed {
        Ok(r) => r,
        Err(e) => {
            p.fail(rel, &io_text(&e));
            return Ok(false);
        }
    };
    let stamp = crate::sys::Stamp::of(&file);
    let mut hasher = if how.trailer { how.digest.hasher() } else { None };
    let put_digest = if hasher.is_some() { PutDigest::Trailer(how.digest) } else { header_digest(how.digest, &hex) };
    encode_head(&mut pipe.batch, wire::put(req::put(&remote, mode, put_digest, false), mtime, how.tree), size);
    pipe.flush(s)?;
    let w = s.writer();
    let (mut offset, mut left) = (0, size);
    while left > 0 {
        let want = left.min(4 << 20);
        let n = match &mut hasher {
            Some(h) => w.send_file_hashed(&file, &mut offset, want, h)?,
            None => w.send_file(&file, &mut offset, want)?,
        };
        if n == 0 {
            // The body's size is promised: a file that shrank cannot end it.
            let _ = s.reader.get_ref().shutdown(std::net::Shutdown::Write);
            return Err(Error::Io(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{rel}: the file shrank while it was sent"))));
        }
        left -= n;
        p.bytes(n);
    }
    if let Some(h) = hasher {
        // A file that changed while it was sent gets a digest that cannot
        // match: the server stores nothing and says digest-mismatch.
        let hex = if stamp.as_ref().is_ok_and(|st| st.unchanged(&file)) { h.hex() } else { "0".repeat(h.hex().len()) };
        encode_frame(&mut pipe.batch, req::trailer(how.digest, &hex), &[]);
    }
    Ok(true)
}

/// With `-c`: the files already on the server, complete (same size and
/// digest), to be skipped.
fn complete_files(s: &mut Session, root: &Path, dest: &str, entries: &[Local], p: &mut Progress, digest: Digest) -> Result<HashSet<String>, Error> {
    s.send(wire::list_recursive(dest), &[])?;
    let remote: Vec<Entry> = match reply_body(s)? {
        Ok(body) => serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("listing body: {e}")))?,
        Err(_) => return Ok(HashSet::new()),
    };
    let there: HashMap<&str, u64> = remote.iter().filter(|e| e.kind == Kind::File).map(|e| (e.name.as_str(), e.file_size)).collect();
    let same: Vec<(&str, u64)> = entries
        .iter()
        .filter_map(|e| match e.what {
            What::File { size, .. } if there.get(e.rel.as_str()) == Some(&size) => Some((e.rel.as_str(), size)),
            _ => None,
        })
        .collect();
    let mut done = HashSet::new();
    let mut i = 0;
    let mut asked = 0;
    while i < same.len() {
        while asked < same.len() && asked - i < WINDOW {
            let (rel, size) = same[asked];
            s.send(req::get(&remote_join(dest, rel), size, digest), &[])?;
            asked += 1;
        }
        let (rel, size) = same[i];
        i += 1;
        let theirs = match s.get_reply(&remote_join(dest, rel), size, digest) {
            Ok(info) => s.get_body(&info, &mut io::sink(), OnLocalError::Drain)?,
            Err(Error::Remote(e)) if !e.code.is_fatal() => continue,
            Err(e) => return Err(e),
        };
        let ours = hash_file(&local::under(root, rel), digest).map(|(_, _, hex)| hex);
        if let (Some(t), Ok(Some(o))) = (theirs, ours) {
            if t.eq_ignore_ascii_case(&o) {
                p.skipped(size);
                done.insert(rel.to_string());
            }
        }
    }
    Ok(done)
}

/// The digest `-c` compares files with: the session's, or with `--digest
/// none` the best the server offers (a complete file cannot be told without one).
pub fn check_digest(s: &Session, digest: Digest) -> Digest {
    match digest {
        Digest::None => Digest::best(s.digests.as_deref().unwrap_or(&[Digest::Sha256])),
        d => d,
    }
}

/// The body of a reply (a listing), or the error frame.
fn reply_body(s: &mut Session) -> Result<Result<Vec<u8>, crate::proto::ProtoError>, Error> {
    let h = s.recv_header()?;
    let body = s.read_body(h.size)?;
    match crate::proto::msg::Reply::from_header(&h) {
        crate::proto::msg::Reply::Error(e) if e.code.is_fatal() => Err(Error::Remote(e)),
        crate::proto::msg::Reply::Error(e) => Ok(Err(e)),
        _ => Ok(Ok(body)),
    }
}

/// `put -r`: the tree at `local` (a directory) to the server.
pub fn run(s: &mut Session, show: Show<'_>, local: &str, remote: Option<&str>, resume: bool) -> Result<Outcome, TreeError> {
    let root = Path::new(local);
    let top = std::fs::metadata(root).map_err(|e| TreeError::Failed(format!("{local}: {}", io_text(&e))))?;
    if !top.is_dir() {
        return Err(TreeError::NotADirectory);
    }
    let dest = destination(s, local, remote, resume)?;
    let (entries, bad) = local::walk(root);
    let (files, bytes) = entries.iter().fold((0, 0), |(n, b), e| match e.what {
        What::File { size, .. } => (n + 1, b + size),
        _ => (n, b),
    });
    let digest = s.pick_digest()?;
    let mut p = Progress::new(show, &dest, files, bytes);
    p.digest = digest;
    for (rel, why) in &bad {
        match rel {
            local::Bad::Path(rel) => p.fail(rel, why),
            local::Bad::Bytes(raw) => p.fail_bytes(raw, why),
        }
    }
    let skip = if resume { complete_files(s, root, &dest, &entries, &mut p, check_digest(s, digest))? } else { HashSet::new() };
    let tree = to_hex(&fresh_nonce()[..8]);
    let how = How { digest, trailer: s.digests.is_some() && digest != Digest::None, tree: &tree };
    let mut pipe = Pipe { batch: Vec::with_capacity(2 * BATCH), pending: VecDeque::new(), refused: None };
    for e in &entries {
        if pipe.refused.is_some() {
            break;
        }
        if let What::File { size, mode, mtime } = e.what {
            if !skip.contains(&e.rel) && send_file(s, &mut pipe, &mut p, root, &dest, &e.rel, (mode, mtime, size), how)? {
                pipe.sent(s, &mut p, &e.rel, true)?;
            }
        }
    }
    for e in &entries {
        if pipe.refused.is_some() {
            break;
        }
        if let What::Link { target } = &e.what {
            encode_frame(&mut pipe.batch, wire::symlink(&remote_join(&dest, &e.rel), target), &[]);
            pipe.sent(s, &mut p, &e.rel, false)?;
        }
    }
    // Deepest first, the tree's own directory last: a directory's mode and
    // mtime are set once nothing more is written into it.
    for e in entries.iter().rev() {
        if pipe.refused.is_some() {
            break;
        }
        if let What::Dir { mode, mtime } = e.what {
            encode_frame(&mut pipe.batch, wire::mkdir(&remote_join(&dest, &e.rel), Some(mode & 0o777), Some(mtime), false), &[]);
            pipe.sent(s, &mut p, &e.rel, false)?;
        }
    }
    let (mode, mtime) = {
        use std::os::unix::fs::MetadataExt;
        (top.mode() & 0o777, top.mtime())
    };
    if pipe.refused.is_none() {
        encode_frame(&mut pipe.batch, wire::mkdir(&dest, Some(mode), Some(mtime), true), &[]);
        pipe.sent(s, &mut p, &dest, false)?;
    }
    while !pipe.pending.is_empty() {
        pipe.take(s, &mut p)?;
    }
    let outcome = p.finish();
    match pipe.refused {
        Some(err) => Err(TreeError::Failed(format!("{dest}: {}; nothing more was sent", remote_text(&err)))),
        None => Ok(outcome),
    }
}
