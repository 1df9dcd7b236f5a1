//! The file subcommands of `ferry` (`get`, `put`, `ls`, `stat`) and the
//! same commands as lines of the netcat-style session.
//!
//! A `get` to a file writes `LOCAL.part`, hashes the whole file as it goes
//! (for `-c`, the existing `.part` first), compares with the server's `done`
//! digest, sets the mode and mtime the `file` header gave, and renames the
//! `.part` to LOCAL: LOCAL is never a partial or corrupt file. A `put` of a
//! regular file hashes it as it sends it and sends the digest after it, so
//! the server checks it before it commits; anything else (`-`, a pipe) is a
//! streaming put, checked the same way. The digest is blake3 when the server
//! offers it, else sha256 (`--digest` chooses); messages and the finished
//! progress line name it.
//!
//! Exit statuses: 0 success; 1 a remote error (its message on stderr), a
//! digest that differs, or a local file that cannot be read or written; 2
//! usage; 255 a ferry error (connection, authentication, protocol).

use super::files::OnLocalError;
use super::finish::{part_path, Hashing, Part};
use super::tree::{self, Outcome, TreeError};
use super::format;
use super::exit;
use super::failure::{print, with_session, Failure};
use super::{Error, Options, Session, Target};
use crate::proto::auth::Key;
use crate::proto::msg::{Digest, Entry, Kind};
use crate::proto::ErrorCode;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;


/// `--digest NAME` of `get` and `put`, flattened into their flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DigestFlag {
    /// The digest checked end to end [default: blake3 when the server offers it, else sha256]
    #[arg(long = "digest", value_name = "blake3|sha256|none", value_parser = parse_digest)]
    pub digest: Option<Digest>,
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    // clap names the value and the flag already.
    Digest::from_name(s).ok_or_else(|| "expected blake3, sha256 or none".to_string())
}

/// How the commands talk to the user: progress bars only on a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub progress: bool,
}

impl Ui {
    /// Progress when stderr is a terminal and not `-q`.
    pub fn new(quiet: bool) -> Ui {
        Ui { progress: !quiet && io::stderr().is_terminal() }
    }

    /// A bar for a transfer of `len` bytes, `pos` of them already there.
    /// It fills the terminal's width (the name is shortened to leave the
    /// bar room), so it never wraps. The name is escaped as `ls` shows it:
    /// a remote name (or a local one made from it) never reaches the
    /// terminal raw.
    fn bar(&self, len: u64, pos: u64, name: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let (template, room) = format::fit(format::columns(), false);
        let style = ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ");
        let bar = ProgressBar::new(len).with_style(style).with_position(pos).with_message(format::cut_name(&crate::term::escape(name), room));
        bar.reset_elapsed();
        bar
    }

    /// A counter for a stream of unknown length.
    fn spinner(&self, name: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{msg} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}")
            .expect("a valid template");
        let bar = ProgressBar::new_spinner().with_style(style).with_message(crate::term::escape(name).into_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// Ends a bar with what was moved, the elapsed time, the average rate and
/// the digest checked, in place of the ETA:
/// `name: 1.00 GiB in 3.2s (320.00 MiB/s, blake3)`. `from` is where it
/// started (a resumed get counts only what moved now).
fn finish_bar(bar: &ProgressBar, from: u64, digest: Digest) {
    if bar.is_hidden() {
        return;
    }
    let moved = bar.position().saturating_sub(from);
    let secs = bar.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { (moved as f64 / secs) as u64 } else { moved };
    let name = bar.message();
    bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
    bar.finish_with_message(format!(
        "{name}: {} in {secs:.1}s ({}/s, {})",
        indicatif::BinaryBytes(moved),
        indicatif::BinaryBytes(rate),
        digest.as_str()
    ));
}

/// The last component of a remote path, to name a local file after.
fn remote_basename(remote: &str) -> Option<&str> {
    let name = remote.trim_end_matches('/').rsplit('/').next()?;
    (!matches!(name, "" | "." | "..")).then_some(name)
}

/// The last component of a local path, to name a remote file after.
fn local_basename(local: &str) -> Option<String> {
    let name = Path::new(local).file_name()?.to_str()?;
    Some(name.to_string())
}

/// Where a `get` writes.
#[derive(Debug, PartialEq)]
enum Dest {
    Stdout,
    File(PathBuf),
    /// An existing device or FIFO (`/dev/null`, a tape, a pipe): written in
    /// place, as `scp` does, never replaced by a renamed `.part`.
    Special(PathBuf),
}

/// LOCAL as scp reads it: absent, the remote basename here; a directory,
/// the remote basename in it; `-`, stdout.
fn get_dest(remote: &str, local: Option<&str>) -> Result<Dest, Failure> {
    let base = || {
        remote_basename(remote)
            .ok_or_else(|| Failure::Usage(format!("\"{remote}\" names no file to name a local one after: give LOCAL")))
    };
    Ok(match local {
        Some("-") => Dest::Stdout,
        None => Dest::File(PathBuf::from(base()?)),
        Some(l) if Path::new(l).is_dir() => Dest::File(Path::new(l).join(base()?)),
        // `dir/` names a directory, never a file called `dir/.part`.
        Some(l) if l.ends_with('/') => return Err(Failure::Failed(format!("{l}: no such directory here"))),
        Some(l) if fs::metadata(l).is_ok_and(|m| !m.is_file()) => Dest::Special(PathBuf::from(l)),
        Some(l) => Dest::File(PathBuf::from(l)),
    })
}

/// Compares our digest of the whole file with the server's (nothing to
/// compare with `none`).
/// `resumed`: the digest covers a kept `.part` too, which may be the one
/// that differs.
fn check_digest(remote: &str, digest: Digest, ours: Option<String>, theirs: Option<String>, resumed: bool) -> Result<(), Failure> {
    let Some(ours) = ours else { return Ok(()) };
    let d = digest.as_str();
    let Some(theirs) = theirs else {
        return Err(Failure::Ferry(Error::Protocol(format!("done without the {d} asked for"))));
    };
    if ours.eq_ignore_ascii_case(&theirs) {
        return Ok(());
    }
    let why = if resumed {
        "the kept .part may not have been the start of this file, or the file changed on the server"
    } else {
        "the file may have changed on the server while it was sent"
    };
    Err(Failure::Failed(format!("{remote}: digest mismatch: the received file has {d} {ours}, the server's {theirs} ({why})")))
}

/// A local file error of a get: `finish`'s own refusals name their path.
fn part_failure(dest: &Path, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        Some(_) => Failure::local(&part_path(dest).display(), e),
        None => Failure::Failed(e.to_string()),
    }
}

/// A `get` into `dest` through its `.part`.
fn get_file(
    s: &mut Session,
    ui: &Ui,
    remote: &str,
    dest: &Path,
    resume: bool,
    on_local: OnLocalError,
) -> Result<(), Failure> {
    let digest = s.pick_digest().map_err(|e| Failure::from_error(e, &dest.display()))?;
    // A resumed .part is hashed with the digest of this get.
    let opened = if resume { Part::resume(dest, digest) } else { Part::create(dest, digest) };
    let mut part = opened.map_err(|e| part_failure(dest, &e))?;
    let info = match s.get_start(remote, part.offset, digest) {
        Ok(info) => info,
        // The server checks the offset against the file: a .part longer
        // than the remote file cannot be resumed, and the .part is the one
        // to blame.
        Err(Error::Remote(p)) if resume && part.existed && p.code == ErrorCode::BadRequest && p.message.starts_with("offset ") => {
            return Err(Failure::Failed(format!(
                "the local {} ({} bytes) is longer than the remote file \"{remote}\": remove it, or get without -c",
                part.path.display(),
                part.offset
            )));
        }
        Err(e) => {
            let f = Failure::from_error(e, &part.path.display());
            if !(resume && part.existed) {
                part.discard();
            }
            return Err(f);
        }
    };
    let bar = ui.bar(info.file_size, part.offset, &dest.display().to_string());
    let resumed_from = part.offset;
    // A cut transfer keeps its .part, for -c.
    let theirs = match s.get_body(&info, &mut bar.wrap_write(&mut part.out), on_local) {
        Ok(t) => t,
        // `changed` replaces `done`: the .part mixes two versions of the file.
        Err(Error::Remote(p)) if p.code == ErrorCode::Changed => {
            bar.abandon();
            let name = part.path.display().to_string();
            part.discard();
            return Err(Failure::Failed(format!("{remote}: the file changed on the server while it was sent; removed {name}")));
        }
        // The server's file shrank (or the server went away): its frame
        // was announced whole, so the connection ends inside it.
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            bar.abandon();
            let why = format!(
                "{} \"{remote}\" (the file may have shrunk on the server while it was sent); {} is kept for -c",
                Failure::CUT_IN_A_GET,
                part.path.display()
            );
            return Err(Failure::Ferry(Error::Io(io::Error::new(io::ErrorKind::UnexpectedEof, why))));
        }
        Err(e) => {
            bar.abandon();
            return Err(Failure::from_error(e, &part.path.display()));
        }
    };
    if let Err(f) = check_digest(remote, digest, part.out.hex(), theirs, resumed_from > 0) {
        bar.abandon();
        let name = part.path.display().to_string();
        part.discard();
        return Err(match f {
            Failure::Failed(m) => Failure::Failed(format!("{m}; removed {name}")),
            f => f,
        });
    }
    part.finish(dest, info.mode, info.mtime).map_err(|e| part_failure(dest, &e))?;
    finish_bar(&bar, resumed_from, digest);
    Ok(())
}

/// A `get` to stdout: checked all the same, but what was written stays written.
/// A get streamed into `out` (stdout, a device): checked at the end, since
/// nothing can be renamed into place.
fn get_stream(
    s: &mut Session,
    ui: &Ui,
    remote: &str,
    out: impl Write,
    name: &str,
    on_local: OnLocalError,
) -> Result<(), Failure> {
    let digest = s.pick_digest().map_err(|e| Failure::from_error(e, &name))?;
    let info = s.get_start(remote, 0, digest).map_err(|e| Failure::from_error(e, &name))?;
    let bar = ui.bar(info.file_size, 0, remote);
    let mut out = Hashing::new(bar.wrap_write(out), digest);
    let theirs = s.get_body(&info, &mut out, on_local).map_err(|e| Failure::from_error(e, &name));
    let flushed = out.flush().map_err(|e| Failure::local(&name, &e));
    let r = theirs.and_then(|t| flushed.and_then(|()| check_digest(remote, digest, out.hex(), t, false)));
    if r.is_ok() {
        finish_bar(&bar, 0, digest)
    } else {
        bar.abandon()
    }
    r
}

fn run_get(
    s: &mut Session,
    ui: &Ui,
    remote: &str,
    dest: &Dest,
    resume: bool,
    on_local: OnLocalError,
) -> Result<(), Failure> {
    match dest {
        Dest::Stdout => get_stream(s, ui, remote, crate::term::stdout(), "stdout", on_local),
        Dest::Special(p) => {
            let name = p.display().to_string();
            let f = OpenOptions::new().write(true).open(p).map_err(|e| Failure::local(&name, &e))?;
            get_stream(s, ui, remote, f, &name, on_local)
        }
        Dest::File(p) => get_file(s, ui, remote, p, resume, on_local),
    }
}

/// A `get` command line that cannot work, checked before any key is read
/// or connection made: the message for status 2.
pub fn get_usage(remote: &str, local: Option<&str>, resume: bool) -> Option<String> {
    match get_dest(remote, local) {
        Ok(Dest::Stdout) if resume => Some("-c cannot resume a get to stdout".into()),
        Ok(Dest::Special(p)) if resume => Some(format!("-c cannot resume a get into {}, which is not a file", p.display())),
        Ok(_) => None,
        Err(Failure::Usage(m)) => Some(m),
        Err(_) => None,
    }
}

/// `ferry get [-c] HOST REMOTE [LOCAL]`.
pub fn get(target: &Target, key: &Key, opts: &Options, ui: Ui, remote: &str, local: Option<&str>, resume: bool) -> i32 {
    let dest = match get_dest(remote, local) {
        Ok(Dest::Stdout) if resume => return Failure::Usage("-c cannot resume a get to stdout".into()).report(),
        Ok(Dest::Special(p)) if resume => {
            return Failure::Usage(format!("-c cannot resume a get into {}, which is not a file", p.display())).report()
        }
        Ok(d) => d,
        Err(f) => return f.report(),
    };
    with_session(target, key, opts, |s| run_get(s, &ui, remote, &dest, resume, OnLocalError::Return))
}

/// Where a put goes: REMOTE, or inside it when it is a directory (or ends
/// in `/`), or LOCAL's basename when there is no REMOTE.
fn put_target(s: &mut Session, local: &str, remote: Option<&str>) -> Result<String, Failure> {
    let base = || {
        local_basename(local)
            .ok_or_else(|| Failure::Usage(format!("\"{local}\" names no file to name a remote one after: give REMOTE")))
    };
    let Some(remote) = remote else { return base() };
    let is_dir = remote.ends_with('/')
        || match s.stat(remote) {
            Ok(e) => e.kind == Kind::Dir,
            Err(Error::Remote(p)) if !p.code.is_fatal() => false,
            Err(e) => return Err(Failure::Ferry(e)),
        };
    if !is_dir {
        return Ok(remote.to_string());
    }
    let dir = remote.trim_end_matches('/');
    Ok(match dir {
        "." => base()?,
        "" => format!("{remote}{}", base()?),
        d => format!("{d}/{}", base()?),
    })
}

/// A streaming put of everything `input` yields.
fn put_reader(s: &mut Session, ui: &Ui, input: &mut File, what: &str, remote: &str) -> Result<(), Failure> {
    use std::os::fd::AsRawFd;
    let fd = input.as_raw_fd();
    let bar = ui.spinner(what);
    let mut counted = bar.wrap_read(input);
    let digest = s.pick_digest().map_err(|e| Failure::from_error(e, &what))?;
    let r = s.put_stream(remote, None, digest, &mut counted, Some(fd)).map_err(|e| Failure::from_error(e, &what));
    if let Ok(ok) = &r {
        finish_bar(&bar, 0, ok.digest)
    } else {
        bar.abandon()
    }
    r.map(drop)
}

/// A put of LOCAL: sized with its digest when a regular file, else streamed.
fn run_put(s: &mut Session, ui: &Ui, local: &str, remote: Option<&str>) -> Result<(), Failure> {
    if local == "-" {
        let remote = remote.ok_or_else(|| Failure::Usage("put from stdin (-) needs REMOTE".into()))?;
        // Unbuffered (a dup of fd 0), so that polling it tells the truth.
        use std::os::fd::AsFd;
        let fd = io::stdin().as_fd().try_clone_to_owned().map_err(|e| Failure::local(&"stdin", &e))?;
        return put_reader(s, ui, &mut File::from(fd), "stdin", remote);
    }
    let mut file = File::open(local).map_err(|e| Failure::local(&local, &e))?;
    let meta = file.metadata().map_err(|e| Failure::local(&local, &e))?;
    if meta.is_dir() {
        return Err(Failure::Failed(format!("{local}: is a directory (-r copies a directory)")));
    }
    let remote = put_target(s, local, remote)?;
    if !meta.is_file() {
        return put_reader(s, ui, &mut file, local, &remote);
    }
    let digest = s.pick_digest().map_err(|e| Failure::from_error(e, &local))?;
    let bar = ui.bar(meta.len(), 0, local);
    let mode = meta.permissions().mode() & 0o777;
    // The size is fixed now: a growing file is sent as it was.
    let r = s.put_file(&remote, &file, meta.len(), Some(mode), digest, &mut |n| bar.inc(n));
    match r {
        Ok(ok) => {
            finish_bar(&bar, 0, ok.digest);
            Ok(())
        }
        Err(e) => {
            bar.abandon();
            Err(Failure::from_error(e, &local))
        }
    }
}

/// `ferry put HOST LOCAL [REMOTE]`.
pub fn put(target: &Target, key: &Key, opts: &Options, ui: Ui, local: &str, remote: Option<&str>) -> i32 {
    if local == "-" && remote.is_none() {
        return Failure::Usage("put from stdin (-) needs REMOTE".into()).report();
    }
    with_session(target, key, opts, |s| {
        s.last_request();
        run_put(s, &ui, local, remote)
    })
}

/// A tree's outcome: status 1 when any entry failed (each said already).
fn tree_status(r: Result<Outcome, TreeError>) -> Result<(), Failure> {
    match r {
        Ok(o) if o.failed > 0 => Err(Failure::Failed(format!("{} of {} entries failed", o.failed, o.entries))),
        Ok(_) => Ok(()),
        Err(TreeError::Usage(m)) => Err(Failure::Usage(m)),
        Err(TreeError::Failed(m)) => Err(Failure::Failed(m)),
        Err(TreeError::Ferry(e)) => Err(Failure::from_error(e, &"the tree")),
        Err(TreeError::NotADirectory) => unreachable!("handled by the callers"),
    }
}

/// `get -r`: a directory as a tree, a file as a single get.
fn run_get_tree(s: &mut Session, ui: &Ui, remote: &str, local: Option<&str>, resume: bool, on_local: OnLocalError) -> Result<(), Failure> {
    match tree::get::run(s, tree::Show { progress: ui.progress, host: None }, remote, local, resume) {
        Err(TreeError::NotADirectory) => run_get(s, ui, remote, &get_dest(remote, local)?, resume, on_local),
        r => tree_status(r),
    }
}

/// `put -r`: a directory as a tree, a file as a single put.
fn run_put_tree(s: &mut Session, ui: &Ui, local: &str, remote: Option<&str>, resume: bool) -> Result<(), Failure> {
    match tree::put::run(s, tree::Show { progress: ui.progress, host: None }, local, remote, resume) {
        Err(TreeError::NotADirectory) => run_put(s, ui, local, remote),
        r => tree_status(r),
    }
}

/// `ferry get -r [-c] HOST REMOTE [LOCAL]`.
pub fn get_tree(target: &Target, key: &Key, opts: &Options, ui: Ui, remote: &str, local: Option<&str>, resume: bool) -> i32 {
    with_session(target, key, opts, |s| run_get_tree(s, &ui, remote, local, resume, OnLocalError::Return))
}

/// `ferry put -r [-c] HOST LOCAL [REMOTE]`.
pub fn put_tree(target: &Target, key: &Key, opts: &Options, ui: Ui, local: &str, remote: Option<&str>, resume: bool) -> i32 {
    // A tree's puts share the connection: only a single file's may cut it.
    let single = std::fs::metadata(local).is_ok_and(|m| !m.is_dir());
    with_session(target, key, opts, |s| {
        if single {
            s.last_request();
        }
        run_put_tree(s, &ui, local, remote, resume)
    })
}

/// A session's `get -r`, `put -r` (with `-c`) or `ls -R` line; None for any other.
fn tree_line(s: &mut Session, ui: &Ui, words: &[&str]) -> Option<Result<(), Failure>> {
    let flags: String = words.iter().skip(1).take_while(|w| w.starts_with('-') && w.len() > 1).map(|w| &w[1..]).collect();
    let rest = &words[1 + words.iter().skip(1).take_while(|w| w.starts_with('-') && w.len() > 1).count()..];
    let (first, known) = (words[0], flags.chars().all(|c| "rcR".contains(c)));
    Some(match (first, rest) {
        ("ls", [path]) if flags == "R" => run_ls_tree(s, path, false),
        ("ls", []) if flags == "R" => run_ls_tree(s, ".", false),
        ("get" | "put", _) if !flags.contains('r') => return None,
        ("get", [remote, local @ ..]) if known && local.len() <= 1 => {
            run_get_tree(s, ui, remote, local.first().copied(), flags.contains('c'), OnLocalError::Drain)
        }
        ("put", [local, remote @ ..]) if known && remote.len() <= 1 && *local != "-" => {
            run_put_tree(s, ui, local, remote.first().copied(), flags.contains('c'))
        }
        ("get", _) => Err(Failure::Usage(GET_USAGE.into())),
        ("put", _) => Err(Failure::Usage(PUT_USAGE.into())),
        _ => return None,
    })
}

/// `ls -R`: every entry under PATH, named by its path under it.
fn run_ls_tree(s: &mut Session, path: &str, json: bool) -> Result<(), Failure> {
    let fail = |e| Failure::from_error(e, &"stdout");
    s.send(crate::proto::tree::list_recursive(path), &[]).map_err(fail)?;
    let h = s.recv_header().map_err(fail)?;
    let body = s.read_body(h.size).map_err(fail)?;
    if let crate::proto::msg::Reply::Error(e) = crate::proto::msg::Reply::from_header(&h) {
        return match e.code {
            // A file: its one line, as plain `ls` prints it.
            ErrorCode::NotADirectory => {
                let entry = s.stat(path).map_err(|e| tree_failure(e))?;
                if entry.kind == Kind::Dir {
                    return Err(Failure::Failed(tree::remote_text(&e)));
                }
                let entries = vec![entry];
                if json {
                    print(&[serde_json::to_vec(&entries).expect("entries serialize").as_slice(), b"\n"].concat())
                } else {
                    print(format::table(&entries).as_bytes())
                }
            }
            _ => Err(tree_failure(Error::Remote(e))),
        };
    }
    let entries: Vec<Entry> = serde_json::from_slice(&body).map_err(|e| Failure::Ferry(Error::Protocol(format!("listing body: {e}"))))?;
    if json {
        print(&[body.as_slice(), b"\n"].concat())?;
    } else {
        print(format::table(&entries).as_bytes())?;
    }
    // A directory the server could not read: named on stderr, status 1.
    let unread: Vec<&Entry> = entries.iter().filter(|e| e.error.is_some()).collect();
    for e in &unread {
        exit::say(format_args!("{}: {}", crate::term::escape(&e.name), e.error.as_ref().map(|x| x.text()).unwrap_or_default()));
    }
    match unread.len() {
        0 => Ok(()),
        n => Err(Failure::Failed(format!("{n} directories could not be read"))),
    }
}

/// A failure of `ls -R`, a remote error with its code as `get` prints it.
fn tree_failure(e: Error) -> Failure {
    match e {
        Error::Remote(p) if !p.code.is_fatal() => Failure::Failed(tree::remote_text(&p)),
        e => Failure::from_error(e, &"stdout"),
    }
}

/// `ferry ls -R HOST [PATH]`.
pub fn ls_tree(target: &Target, key: &Key, opts: &Options, path: &str, json: bool) -> i32 {
    with_session(target, key, opts, |s| run_ls_tree(s, path, json))
}


/// `ls` of a path: a directory's entries, or the one entry a file is.
fn entries_or_self(s: &mut Session, path: &str) -> Result<Result<Vec<u8>, Entry>, Error> {
    match s.list_raw(path) {
        Ok(body) => Ok(Ok(body)),
        Err(Error::Remote(p)) if p.code == ErrorCode::NotADirectory => Ok(Err(s.stat(path)?)),
        Err(e) => Err(e),
    }
}

fn run_ls(s: &mut Session, path: &str, json: bool) -> Result<(), Failure> {
    let listing = entries_or_self(s, path).map_err(|e| Failure::from_error(e, &"stdout"))?;
    let entries = match listing {
        Ok(body) if json => return print(&[body.as_slice(), b"\n"].concat()),
        Ok(body) => serde_json::from_slice::<Vec<Entry>>(&body)
            .map_err(|e| Failure::Ferry(Error::Protocol(format!("listing body: {e}"))))?,
        Err(entry) => vec![entry],
    };
    if json {
        let mut text = serde_json::to_vec(&entries).expect("entries serialize");
        text.push(b'\n');
        return print(&text);
    }
    print(format::table(&entries).as_bytes())
}

/// `ferry ls [--json] HOST [PATH]`.
pub fn ls(target: &Target, key: &Key, opts: &Options, path: &str, json: bool) -> i32 {
    with_session(target, key, opts, |s| run_ls(s, path, json))
}

fn run_stat(s: &mut Session, path: &str, json: bool) -> Result<(), Failure> {
    let (fields, entry) = s.stat_fields(path).map_err(|e| Failure::from_error(e, &"stdout"))?;
    if json {
        let mut text = serde_json::to_vec(&serde_json::Value::Object(fields)).expect("JSON serializes");
        text.push(b'\n');
        return print(&text);
    }
    print(format::stat_lines(&entry).as_bytes())
}

/// `ferry stat [--json] HOST PATH`.
pub fn stat(target: &Target, key: &Key, opts: &Options, path: &str, json: bool) -> i32 {
    with_session(target, key, opts, |s| run_stat(s, path, json))
}

/// What a session line came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Not a file command: run it in the shell.
    NotMine,
    /// Done, with this status; the session goes on.
    Status(i32),
    /// Ctrl-C cancelled it; the connection was shut down to stop it, so the
    /// session must reconnect.
    Interrupted,
    /// The session cannot go on: exit with this status.
    End(i32),
}

/// The session's file lines and their usage.
const GET_USAGE: &str = "usage: get [-r] [-c] REMOTE [LOCAL]";
const PUT_USAGE: &str = "usage: put [-r [-c]] LOCAL [REMOTE]";

/// Runs a session line if it is a file command: `get [-r] [-c] REMOTE [LOCAL]`,
/// `put [-r [-c]] LOCAL [REMOTE]`, `ls -R [PATH]`, or `ls` with no word or one not starting with `-`
/// (so `ls -la` stays a shell command). Words split with shell quoting
/// (`get "a file.txt"`); a `get` or `put` with the wrong words gets its
/// usage (status 2). `cancelled` is set by Ctrl-C, which shuts the socket
/// down: the line then ends as `Interrupted`, a get's `.part` kept for `-c`.
pub fn session_line(s: &mut Session, ui: &Ui, line: &str, cancelled: &std::sync::atomic::AtomicBool) -> Line {
    let first = line.split_whitespace().next().unwrap_or("");
    if !matches!(first, "get" | "put" | "ls") {
        return Line::NotMine;
    }
    let Some(words) = shlex::split(line) else {
        if first == "ls" {
            return Line::NotMine;
        }
        let usage = if first == "get" { GET_USAGE } else { PUT_USAGE };
        return Line::Status(Failure::Usage(format!("{line}: unbalanced quotes ({usage})")).report());
    };
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut part = None;
    let r = if let Some(r) = tree_line(s, ui, &words) {
        r
    } else { match words.as_slice() {
        ["get", "-c", remote, rest @ ..] | ["get", remote, rest @ ..] if rest.len() <= 1 && !remote.starts_with('-') => {
            let resume = words[1] == "-c";
            match get_dest(remote, rest.first().copied()) {
                Ok(Dest::File(p)) => {
                    part = Some((part_path(&p), remote.to_string(), rest.first().map(|l| l.to_string())));
                    run_get(s, ui, remote, &Dest::File(p), resume, OnLocalError::Drain)
                }
                Ok(_) if resume => Err(Failure::Usage("-c resumes a get into a file only".into())),
                Ok(d) => run_get(s, ui, remote, &d, false, OnLocalError::Drain),
                Err(f) => Err(f),
            }
        }
        ["get", ..] => Err(Failure::Usage(GET_USAGE.into())),
        ["put", "-", ..] if words.len() <= 3 => {
            Err(Failure::Usage("put -: stdin carries the session's commands; use `ferry put HOST - REMOTE`".into()))
        }
        // A refused put may cut the connection (the loop connects again).
        ["put", local, rest @ ..] if rest.len() <= 1 => {
            s.last_request();
            run_put(s, ui, local, rest.first().copied())
        }
        ["put", ..] => Err(Failure::Usage(PUT_USAGE.into())),
        ["ls"] => run_ls(s, ".", false),
        ["ls", path] if !path.starts_with('-') => run_ls(s, path, false),
        _ => return Line::NotMine,
    } };
    if cancelled.load(std::sync::atomic::Ordering::SeqCst) {
        match part {
            Some((p, remote, local)) if p.exists() => {
                let local = local.map(|l| format!(" {}", shlex::try_quote(&l).unwrap_or_default())).unwrap_or_default();
                let remote = shlex::try_quote(&remote).unwrap_or_default();
                exit::say(format_args!("interrupted; kept {} (`get -c {remote}{local}` resumes)", p.display()));
            }
            _ => exit::say("interrupted"),
        }
        return Line::Interrupted;
    }
    match r.map_err(|f| f.from_peer(&s.peer)) {
        Ok(()) => Line::Status(0),
        Err(f) if f.is_fatal() => Line::End(f.report()),
        Err(f) => Line::Status(f.report()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::io_text;

    #[test]
    fn remote_basenames() {
        assert_eq!(remote_basename("a/b/c.txt"), Some("c.txt"));
        assert_eq!(remote_basename("c"), Some("c"));
        assert_eq!(remote_basename("dir/"), Some("dir"));
        assert_eq!(remote_basename("."), None);
        assert_eq!(remote_basename("a/.."), None);
        assert_eq!(remote_basename(""), None);
    }

    #[test]
    fn get_destinations_follow_scp() {
        assert_eq!(get_dest("a/b", None).unwrap(), Dest::File("b".into()));
        assert_eq!(get_dest("a/b", Some("-")).unwrap(), Dest::Stdout);
        assert_eq!(get_dest("a/b", Some("x/y")).unwrap(), Dest::File("x/y".into()));
        let dir = std::env::temp_dir();
        assert_eq!(get_dest("a/b", Some(dir.to_str().unwrap())).unwrap(), Dest::File(dir.join("b")));
        assert!(matches!(get_dest(".", None), Err(Failure::Usage(_))));
        assert_eq!(part_path(Path::new("d/f.tar")), PathBuf::from("d/f.tar.part"));
    }

    #[test]
    fn io_errors_read_like_ls() {
        assert_eq!(io_text(&io::Error::from_raw_os_error(libc::ENOENT)), "No such file or directory");
        assert_eq!(io_text(&io::Error::from_raw_os_error(libc::ENOSPC)), "ENOSPC: no space left on device");
    }
}
