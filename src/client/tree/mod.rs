//! Directory trees: `get -r` and `put -r`, for single commands, the line
//! session and fan-out (one session per host).
//!
//! A tree moves over one session, pipelined: up to `WINDOW` requests are
//! sent before their replies are read, so there is no round trip per file.
//! A put sends, in order, every file (a sized `put` with its digest, mode,
//! mtime and the tree's id), every link (`symlink`), then every directory
//! deepest first (`mkdir`: empty ones are created, and modes and mtimes are
//! set once their contents are in). A get lists the tree once (`list` with
//! `recursive`), then pipelines a `get` per file. Each file is atomic and
//! checked by its digest as a single get or put is. An error on one entry
//! is reported with its path and the rest goes on; `Outcome` counts them.
//!
//! `get` and `put` are the two directions; this module holds what they
//! share: where a tree lands is theirs, the reply reading, the one progress
//! bar and the failure lines are here.

pub mod fan;
pub mod get;
pub mod local;
pub mod put;

use super::{Error, Session};
use crate::proto::frame::Header;
use crate::proto::msg::{Digest, Reply};
use crate::proto::ProtoError;
use indicatif::{ProgressBar, ProgressStyle};
use std::io;
use std::time::Duration;

/// Requests in flight at most before the oldest reply is read: enough to
/// keep the link busy with small files, few enough that the replies never
/// fill a socket buffer while the client is still sending.
pub const WINDOW: usize = 64;

/// Why a tree could not be moved at all.
#[derive(Debug)]
pub enum TreeError {
    /// Exit 2: the command line cannot work.
    Usage(String),
    /// Exit 1: nothing could be done (the source is missing, say).
    Failed(String),
    /// Exit 255 (or 141, 1 for a local error: as for a single file).
    Ferry(Error),
    /// The source is not a directory: it moves as a single file (scp -r
    /// copies a file as it is).
    NotADirectory,
}

impl From<Error> for TreeError {
    fn from(e: Error) -> TreeError {
        match e {
            Error::Remote(p) if !p.code.is_fatal() => TreeError::Failed(remote_text(&p)),
            e => TreeError::Ferry(e),
        }
    }
}

/// What a tree came to: its entries, and how many of them failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    pub entries: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// A remote error's text, as a single get or put prints it.
pub fn remote_text(p: &ProtoError) -> String {
    if p.message.is_empty() {
        p.code.as_str().to_string()
    } else {
        format!("{} ({})", p.message, p.code.as_str())
    }
}

/// Reads one reply header and drops its body: an error frame is `Ok(Err)`.
pub fn reply(s: &mut Session) -> Result<Result<Header, ProtoError>, Error> {
    let h = s.recv_header()?;
    s.copy_body(h.size, &mut io::sink())?;
    match Reply::from_header(&h) {
        Reply::Error(e) if e.code.is_fatal() => Err(Error::Remote(e)),
        Reply::Error(e) => Ok(Err(e)),
        _ => Ok(Ok(h)),
    }
}

/// How a tree talks to the user: a progress bar or not, and with `-H`
/// the host its failure lines are prefixed with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Show<'a> {
    pub progress: bool,
    pub host: Option<&'a str>,
}

/// The one progress bar of a tree (files and bytes), and the failure lines.
pub struct Progress {
    bar: ProgressBar,
    host: Option<String>,
    files: u64,
    done: u64,
    pub outcome: Outcome,
    /// The digest the tree's files are checked with, named in the last line.
    pub digest: Digest,
}

impl Progress {
    /// A bar for `files` files of `bytes` bytes in all, shown when `show`.
    pub fn new(show: Show<'_>, name: &str, files: u64, bytes: u64) -> Progress {
        let bar = if show.progress {
            let (template, room) = super::format::fit(super::format::columns(), true);
            let style = ProgressStyle::with_template(template).expect("a valid template").progress_chars("=> ");
            let prefix = super::format::cut_name(&crate::term::escape(name), room);
            let bar = ProgressBar::new(bytes).with_style(style).with_prefix(prefix);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        let p = Progress { bar, host: show.host.map(str::to_string), files, done: 0, outcome: Outcome::default(), digest: Digest::Sha256 };
        p.show_count();
        p
    }

    fn show_count(&self) {
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("{}/{} files", self.done, self.files));
        }
    }

    /// The bar itself, to count a body's bytes as they are written.
    pub fn bar(&self) -> ProgressBar {
        self.bar.clone()
    }

    pub fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    /// One entry done (a file, a link, a directory).
    pub fn entry_done(&mut self, file: bool) {
        self.outcome.entries += 1;
        if file {
            self.done += 1;
            self.show_count();
        }
    }

    /// A file found complete and skipped (`-c`): its bytes count as moved.
    pub fn skipped(&mut self, size: u64) {
        self.outcome.skipped += 1;
        self.bytes(size);
        self.entry_done(true);
    }

    /// An entry failed: one line naming its path, and the tree goes on.
    pub fn fail(&mut self, path: &str, why: &str) {
        self.fail_shown(&crate::term::escape(path), why);
    }

    /// As `fail`, for a path given as its raw bytes (a name that is not
    /// UTF-8 shows its bytes as `\377`).
    pub fn fail_bytes(&mut self, path: &[u8], why: &str) {
        self.fail_shown(&crate::term::escape_bytes(path), why);
    }

    /// As `fail`, the path already escaped for the terminal (escaped once:
    /// the rest of the line is escaped here, not the path again).
    fn fail_shown(&mut self, shown: &str, why: &str) {
        use crate::term::escape;
        self.outcome.entries += 1;
        self.outcome.failed += 1;
        let line = match &self.host {
            Some(h) => format!("ferry: {}: {shown}: {}\n", escape(h), escape(why)),
            None => format!("ferry: {shown}: {}\n", escape(why)),
        };
        self.bar.suspend(|| crate::term::err(line.as_bytes()));
    }

    /// Ends the bar with what moved and the digest that checked it:
    /// `dir: 12 files, 3.1 MiB in 0.4s (7.7 MiB/s, blake3)`.
    pub fn finish(self) -> Outcome {
        if !self.bar.is_hidden() {
            let secs = self.bar.elapsed().as_secs_f64();
            let moved = self.bar.position();
            let rate = if secs > 0.0 { (moved as f64 / secs) as u64 } else { moved };
            // The longest form that fits the width: with the name, without
            // it, without the rate and digest (never a wrapped line).
            let width = super::format::columns();
            let what = format!("{} files, {} in {secs:.1}s", self.done, indicatif::BinaryBytes(moved));
            let full = format!("{what} ({}/s, {})", indicatif::BinaryBytes(rate), self.digest.as_str());
            let named = format!("{}: {full}", self.bar.prefix());
            let line = [named, full, what].into_iter().find(|l| l.chars().count() < width);
            let line = line.unwrap_or_else(|| format!("{} files", self.done));
            self.bar.set_style(ProgressStyle::with_template("{msg}").expect("a valid template"));
            self.bar.finish_with_message(line);
        }
        self.outcome
    }
}

/// Joins a tree-relative path to the tree's remote path.
pub fn remote_join(base: &str, rel: &str) -> String {
    match base.trim_end_matches('/') {
        "" | "." => rel.to_string(),
        b => format!("{b}/{rel}"),
    }
}

/// The last component of a path, to name a copy after: None for `.`, `..`,
/// `/` and the empty path.
pub fn basename(path: &str) -> Option<&str> {
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    (!matches!(name, "" | "." | "..")).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_basenames() {
        assert_eq!(remote_join(".", "a/b"), "a/b");
        assert_eq!(remote_join("d/", "a"), "d/a");
        assert_eq!(remote_join("", "a"), "a");
        assert_eq!(basename("x/y/"), Some("y"));
        assert_eq!(basename("."), None);
        assert_eq!(basename("a/.."), None);
        assert_eq!(basename("/"), None);
    }
}
