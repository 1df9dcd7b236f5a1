//! `get -r` and `put -r` with `-H`: the tree from or to every host, one
//! session per host, at most `fanout` hosts at once (a thread each: a tree
//! is a long pipelined conversation, not one request to multiplex). A
//! failing entry is reported as `HOST: path: why`; each host that did not
//! finish cleanly gets one `HOST: ...` line at the end, and a summary line
//! goes to stderr when any did not.
//!
//! Exit status as for fan-out: 0 when every host copied the whole tree;
//! 255 when any host could not be reached, authenticated or failed in the
//! protocol; else the largest status (1 for a tree with failed entries).

use super::{Outcome, Show, TreeError};
use crate::client::fanout::hosts::Host;
use crate::client::{exit, Error, Options, Session};
use crate::proto::auth::Key;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Which way the trees go.
#[derive(Debug, Clone)]
pub enum Way {
    /// Each host's `remote` into `dir/HOST/` (created).
    Get { remote: String, dir: PathBuf },
    /// `local` to each host, where `put -r` puts it.
    Put { local: String, remote: Option<String> },
}

/// How one host's tree ended: its status, and a line when not 0.
fn one(host: &Host, way: &Way, resume: bool, key: &Key, opts: &Options) -> (i32, bool, Option<String>) {
    let show = Show { progress: false, host: Some(&host.name) };
    let mut s = match Session::connect(&host.target, key, opts) {
        Ok(s) => s,
        Err(e) => return (exit::FERRY_ERROR, true, Some(e.to_string())),
    };
    let r = match way {
        Way::Get { remote, dir } => {
            let here = dir.join(&host.name);
            match std::fs::create_dir_all(&here) {
                Ok(()) => super::get::run(&mut s, show, remote, here.to_str(), resume),
                Err(e) => Err(TreeError::Failed(format!("{}: {}", here.display(), crate::client::io_text(&e)))),
            }
        }
        Way::Put { local, remote } => super::put::run(&mut s, show, local, remote.as_deref(), resume),
    };
    let (status, ferry, line) = match r {
        Ok(Outcome { failed: 0, .. }) => (0, false, None),
        Ok(o) => (exit::FAILED, false, Some(format!("{} of {} entries failed", o.failed, o.entries))),
        Err(TreeError::NotADirectory) => (exit::FAILED, false, Some("not a directory (-r with -H copies a directory)".into())),
        Err(TreeError::Usage(m)) => (exit::USAGE, false, Some(m)),
        Err(TreeError::Failed(m)) => (exit::FAILED, false, Some(m)),
        Err(TreeError::Ferry(Error::Local(e) | Error::LocalRead(e))) => (exit::FAILED, false, Some(crate::client::io_text(&e))),
        Err(TreeError::Ferry(e)) => (exit::FERRY_ERROR, true, Some(e.to_string())),
    };
    if !ferry {
        let _ = s.bye();
    }
    (status, ferry, line)
}

/// Copies the tree for every host; the exit status.
pub fn run(hosts: &[Host], way: &Way, resume: bool, fanout: usize, key: &Key, opts: &Options) -> i32 {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<(i32, bool, Option<String>)>>> = Mutex::new(vec![None; hosts.len()]);
    std::thread::scope(|scope| {
        for _ in 0..fanout.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = hosts.get(i) else { break };
                let r = one(host, way, resume, key, opts);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let (mut worst, mut ferry, mut bad) = (0, false, Vec::new());
    for (host, r) in hosts.iter().zip(results) {
        let (status, f, line) = r.unwrap_or((exit::FERRY_ERROR, true, Some("not run".into())));
        if let Some(l) = line {
            exit::say(format_args!("{}: {l}", host.name));
        }
        if status != 0 {
            bad.push(host.name.as_str());
        }
        worst = worst.max(status);
        ferry |= f;
    }
    if !bad.is_empty() {
        exit::say(format_args!("{} of {} hosts did not copy the whole tree: {}", bad.len(), hosts.len(), bad.join(",")));
    }
    exit::fleet(worst, ferry, false)
}
