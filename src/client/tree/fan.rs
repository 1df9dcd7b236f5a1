//! `get -r` and `put -r` with `-H`: the tree from or to every host, one
//! session per host, at most `fanout` hosts at once (a thread each: a tree
//! is a long pipelined conversation, not one request to multiplex). A
//! failing entry is reported as `HOST: path: why`; at the end the summary
//! every fan-out prints (`N hosts: x ok, y failed`, then a line for each
//! host that was not ok) goes to stderr; with `--json`, one object per
//! host on stdout as it finishes.
//!
//! Exit status as for fan-out: 0 when every host copied the whole tree;
//! 255 when any host could not be reached, authenticated or failed in the
//! protocol; else the largest status (1 for a tree with failed entries).

use super::{Outcome, Show, TreeError};
use crate::client::fanout::hosts::Host;
use crate::client::fanout::{self, TreeEnd};
use crate::client::{exit, Error, Options, Session};
use crate::proto::auth::Key;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Which way the trees go.
#[derive(Debug, Clone)]
pub enum Way {
    /// Each host's `remote` into `dir/HOST/` (created).
    Get { remote: String, dir: PathBuf },
    /// `local` to each host, where `put -r` puts it.
    Put { local: String, remote: Option<String> },
}

/// How one host's tree ended: its status, whether that is a ferry error,
/// how it ended for the summary, and its entries (all, failed).
struct End {
    status: i32,
    ferry: bool,
    end: TreeEnd,
    entries: usize,
    failed: usize,
}

fn one(host: &Host, way: &Way, resume: bool, key: &Key, opts: &Options) -> End {
    let show = Show { progress: false, host: Some(&host.name) };
    let mut s = match Session::connect(&host.target, key, opts) {
        Ok(s) => s,
        Err(e) => return End { status: exit::FERRY_ERROR, ferry: true, end: TreeEnd::Ferry(e), entries: 0, failed: 0 },
    };
    let r = match way {
        Way::Get { remote, dir } => {
            // `dir/HOST/`: a directory to land in, made only once the host
            // answered (a host that fails leaves no empty directory).
            let here = format!("{}/", dir.join(&host.name).display());
            super::get::run(&mut s, show, remote, Some(&here), resume)
        }
        Way::Put { local, remote } => super::put::run(&mut s, show, local, remote.as_deref(), resume),
    };
    let failed = |status, m: String| End { status, ferry: false, end: TreeEnd::Failed(m), entries: 0, failed: 0 };
    let end = match r {
        Ok(o @ Outcome { failed: 0, .. }) => End { status: 0, ferry: false, end: TreeEnd::Ok, entries: o.entries, failed: 0 },
        Ok(o) => End {
            status: exit::FAILED,
            ferry: false,
            end: TreeEnd::Failed(format!("{} of {} entries failed", o.failed, o.entries)),
            entries: o.entries,
            failed: o.failed,
        },
        Err(TreeError::NotADirectory) => failed(exit::FAILED, "not a directory (-r with -H copies a directory)".into()),
        Err(TreeError::Usage(m)) => failed(exit::USAGE, m),
        Err(TreeError::Failed(m)) => failed(exit::FAILED, m),
        Err(TreeError::Ferry(Error::Local(e) | Error::LocalRead(e))) => failed(exit::FAILED, crate::client::io_text(&e)),
        Err(TreeError::Ferry(e)) => End { status: exit::FERRY_ERROR, ferry: true, end: TreeEnd::Ferry(e), entries: 0, failed: 0 },
    };
    if !end.ferry {
        let _ = s.bye();
    }
    end
}

/// Copies the tree for every host; the exit status. With `json`, one
/// object per host on stdout as it finishes; the summary on stderr (its
/// head left out with `quiet` when every host was ok).
pub fn run(hosts: &[Host], way: &Way, resume: bool, fanout: usize, key: &Key, opts: &Options, json: bool, quiet: bool) -> i32 {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<End>>> = Mutex::new((0..hosts.len()).map(|_| None).collect());
    let stdout_failed: Mutex<Option<std::io::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..fanout.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = hosts.get(i) else { break };
                let t0 = Instant::now();
                let r = one(host, way, resume, key, opts);
                let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                if json {
                    let line = fanout::tree_json_line(&host.name, &r.end, r.entries, r.failed, t0.elapsed().as_secs_f64());
                    if let Err(e) = crate::term::out(line.as_bytes()) {
                        stdout_failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
                    }
                }
                results[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let (mut worst, mut ferry) = (0, false);
    let mut ends = Vec::new();
    for r in &results {
        let r = r.as_ref().expect("every host ran");
        worst = worst.max(r.status);
        ferry |= r.ferry;
        ends.push(&r.end);
    }
    let named: Vec<(&str, &TreeEnd)> = hosts.iter().map(|h| h.name.as_str()).zip(ends).collect();
    crate::term::err(fanout::tree_summary(&named, quiet).as_bytes());
    match stdout_failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) if crate::term::is_broken_pipe(&e) => exit::BROKEN_PIPE,
        Some(e) => exit::stdout_failed(&e),
        None => exit::fleet(worst, ferry, false),
    }
}
