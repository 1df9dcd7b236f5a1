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
use crate::client::files::{OnLocalError, CHANGED};
use crate::client::finish::hash_reader;
use crate::client::{io_text, Error, Session, Writer};
use crate::proto::digest::Hasher;
use crate::sys::Stamp;
use crate::proto::auth::{fresh_nonce, to_hex};
use crate::proto::msg::request::{self as req, PutDigest};
use crate::proto::msg::{Digest, Entry, Kind};
use crate::proto::{encode_frame, encode_head, tree as wire, ErrorCode};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// How a file that changed while it was sent is reported where nothing
/// checked it (`--digest none`) and the server stored it.
const CHANGED_STORED: &str = "changed while it was sent; stored as it was read";

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
    /// A file that changed while it was sent (`send_file`).
    changed: bool,
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
    fn sent(&mut self, s: &mut Session, p: &mut Progress, rel: &str, file: bool, changed: bool) -> Result<(), Error> {
        self.pending.push_back(Pending { rel: rel.to_string(), file, changed });
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
        let r = reply(s)?;
        self.settle(p, e, r);
        Ok(())
    }

    /// Reports an entry's reply.
    fn settle(&mut self, p: &mut Progress, e: Pending, r: Result<crate::proto::Header, crate::proto::ProtoError>) {
        match r {
            // Nothing checked the content (`--digest none`): it was stored.
            Ok(_) if e.changed => p.fail(&e.rel, CHANGED_STORED),
            Ok(_) => p.entry_done(e.file),
            Err(err) if err.code == ErrorCode::ReadOnly => {
                self.refused.get_or_insert(err);
            }
            Err(err) if self.refused.is_some() => drop(err),
            // The digest sent for it was made not to match: refused, as meant.
            Err(err) if e.changed && err.code == ErrorCode::DigestMismatch => p.fail(&e.rel, CHANGED),
            Err(err) => p.fail(&e.rel, &remote_text(&err)),
        }
    }

    /// Between the chunks of a big file's body: reads the replies that came
    /// to the earlier requests. The server answered all of them before it
    /// began this body, so a reply waiting once none is pending is this
    /// file's own, sent early: a refusal (a full disk, a quota).
    fn refused_early(&mut self, s: &mut Session, p: &mut Progress) -> Result<bool, Error> {
        while s.reply_waiting() {
            if self.pending.is_empty() {
                return Ok(true);
            }
            self.take(s, p)?;
        }
        Ok(false)
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

/// A file opened to be sent: its stamp (taken at the open, before any
/// read), its size as hashed, the digest (None with `none`), and the last
/// byte hashed.
struct Opened {
    file: File,
    stamp: Stamp,
    size: u64,
    hex: Option<String>,
    last: u8,
}

/// Opens a file and hashes it from its start (`Digest::None`: sized only).
fn hash_file(path: &Path, digest: Digest) -> io::Result<Opened> {
    let mut file = File::open(path)?;
    let stamp = Stamp::of(&file)?;
    let Some(mut h) = digest.hasher() else {
        let size = file.metadata()?.len();
        return Ok(Opened { file, stamp, size, hex: None, last: 0 });
    };
    let mut r = LastByte(&mut file, 0);
    let size = hash_reader(&mut r, &mut h, &mut |_| {})?;
    let last = r.1;
    Ok(Opened { file, stamp, size, hex: Some(h.hex()), last })
}

/// A reader that keeps the last byte it gave.
struct LastByte<R>(R, u8);

impl<R: Read> Read for LastByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n > 0 {
            self.1 = buf[n - 1];
        }
        Ok(n)
    }
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

/// Sends one file's put (batched when small). None when the local file
/// could not be read (reported, nothing sent); else whether it changed
/// while it was sent.
///
/// A big file's stamp is taken when it is opened and compared before its
/// last byte goes, as a single put does. A change (a shrink included) cannot
/// cut the put without cutting the tree's session, so the put is made to
/// fail instead: a shrunk file's missing bytes are sent as zeros, and the
/// digest the server checks cannot match (a trailer of zeros; to an older
/// server, whose digest is in the header, a last byte other than the one
/// hashed). The server stores nothing and answers `digest-mismatch`, which
/// `Pipe::take` reports as the change. With `--digest none` nothing is
/// checked: the file is stored, and reported as changed.
fn send_file(s: &mut Session, pipe: &mut Pipe, p: &mut Progress, root: &Path, dest: &str, rel: &str, (mode, mtime, size): (u32, i64, u64), how: How<'_>) -> Result<Option<bool>, Error> {
    let path = local::under(root, rel);
    let remote = remote_join(dest, rel);
    let mode = Some(mode & 0o777);
    if size as usize <= BATCH {
        let (body, hex) = match read_small(&path, size, how.digest) {
            Ok(r) => r,
            Err(e) => {
                p.fail(rel, &io_text(&e));
                return Ok(None);
            }
        };
        let header = req::put(&remote, mode, header_digest(how.digest, &hex), false);
        encode_frame(&mut pipe.batch, wire::put(header, mtime, how.tree), &body);
        p.bytes(body.len() as u64);
        return Ok(Some(false));
    }
    // A trailer: opened and sized only, hashed while it is sent.
    let hashed = if how.trailer { hash_file(&path, Digest::None) } else { hash_file(&path, how.digest) };
    let Opened { file, stamp, size, hex, last } = match hashed {
        Ok(r) => r,
        Err(e) => {
            p.fail(rel, &io_text(&e));
            return Ok(None);
        }
    };
    let mut hasher = if how.trailer { how.digest.hasher() } else { None };
    let put_digest = if hasher.is_some() { PutDigest::Trailer(how.digest) } else { header_digest(how.digest, &hex) };
    encode_head(&mut pipe.batch, wire::put(req::put(&remote, mode, put_digest, false), mtime, how.tree), size);
    pipe.flush(s)?;
    if size == 0 {
        // Empty when it was read (the listing said bigger): sent as it was.
        if let Some(h) = hasher {
            encode_frame(&mut pipe.batch, req::trailer(how.digest, &h.hex()), &[]);
        }
        return Ok(Some(false));
    }
    let w = s.writer();
    let mut offset = 0;
    let shrank = match send_body(&w, p, &file, &mut offset, size - 1, &mut hasher, &mut |p| pipe.refused_early(s, p))? {
        Body::Refused => return cut_short(s, pipe, p, rel),
        body => body == Body::Shrank,
    };
    let changed = shrank || !stamp.unchanged(&file);
    if changed && hex.is_some() && hasher.is_none() {
        w.send_encoded(&[!last])?;
        p.bytes(1);
    } else if send_body(&w, p, &file, &mut offset, size, &mut hasher, &mut |p| pipe.refused_early(s, p))? == Body::Refused {
        return cut_short(s, pipe, p, rel);
    }
    if let Some(h) = hasher {
        let hex = if changed { "0".repeat(h.hex().len()) } else { h.hex() };
        encode_frame(&mut pipe.batch, req::trailer(how.digest, &hex), &[]);
    }
    Ok(Some(changed))
}

/// The server refused a file while its body was on its way (its answer is
/// waiting): the rest would only be dropped there, so the connection is cut
/// here, the answer reported, and a new connection carries the rest of the
/// tree (unless the server refuses every write: the tree stops then).
fn cut_short(s: &mut Session, pipe: &mut Pipe, p: &mut Progress, rel: &str) -> Result<Option<bool>, Error> {
    s.shutdown_write();
    let r = reply(s)?;
    pipe.settle(p, Pending { rel: rel.to_string(), file: true, changed: false }, r);
    if pipe.refused.is_none() {
        s.reconnect()?;
    }
    Ok(None)
}

/// How a `send_body` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Sent,
    /// The file ended first: the body's size is promised, so zeros stood
    /// for what is gone.
    Shrank,
    /// `refused` said so before a chunk: the rest is not sent.
    Refused,
}

/// Sends `file` from `*offset` up to `end` (hashed into `hasher` when
/// given), asking `refused` before each chunk of at most 4 MiB.
fn send_body(
    w: &Writer,
    p: &mut Progress,
    file: &File,
    offset: &mut u64,
    end: u64,
    hasher: &mut Option<Hasher>,
    refused: &mut dyn FnMut(&mut Progress) -> Result<bool, Error>,
) -> Result<Body, Error> {
    while *offset < end {
        if refused(p)? {
            return Ok(Body::Refused);
        }
        let want = (end - *offset).min(4 << 20);
        let n = match hasher {
            Some(h) => w.send_file_hashed(file, offset, want, h)?,
            None => w.send_file(file, offset, want)?,
        };
        if n == 0 {
            let zeros = vec![0u8; (end - *offset).min(4 << 20) as usize];
            while *offset < end {
                let n = (end - *offset).min(zeros.len() as u64);
                w.send_encoded(&zeros[..n as usize])?;
                *offset += n;
                p.bytes(n);
            }
            return Ok(Body::Shrank);
        }
        p.bytes(n);
    }
    Ok(Body::Sent)
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
        let ours = hash_file(&local::under(root, rel), digest).map(|o| o.hex);
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
            if skip.contains(&e.rel) {
                continue;
            }
            if let Some(changed) = send_file(s, &mut pipe, &mut p, root, &dest, &e.rel, (mode, mtime, size), how)? {
                pipe.sent(s, &mut p, &e.rel, true, changed)?;
            }
        }
    }
    for e in &entries {
        if pipe.refused.is_some() {
            break;
        }
        if let What::Link { target } = &e.what {
            encode_frame(&mut pipe.batch, wire::symlink(&remote_join(&dest, &e.rel), target), &[]);
            pipe.sent(s, &mut p, &e.rel, false, false)?;
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
            pipe.sent(s, &mut p, &e.rel, false, false)?;
        }
    }
    let (mode, mtime) = {
        use std::os::unix::fs::MetadataExt;
        (top.mode() & 0o777, top.mtime())
    };
    if pipe.refused.is_none() {
        encode_frame(&mut pipe.batch, wire::mkdir(&dest, Some(mode), Some(mtime), true), &[]);
        pipe.sent(s, &mut p, &dest, false, false)?;
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
