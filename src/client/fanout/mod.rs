//! Fan-out: `ferry run|ping|put|get -H HOSTS`, every host driven by one
//! `mio` event loop, over TCP or (`-u`) datagrams. No thread per host.
//!
//! What lives here, each module importing only those listed before it:
//! - `hosts`: the HOSTS syntax (ranges, lists, files, exclusions) and folding
//!   names back into ranges.
//! - `outcome`: how one host ended, and its status, category and reason.
//! - `output`: `HOST: line` lines, `-b` groups, `json` objects, the summary.
//! - `fan`: what every transport shares: plan, operation, slots, finishing.
//! - `getfile`: a get's `.part` and its check, and which digest a host gets.
//! - `poll_loop`: the one event loop and the `Transport` it drives.
//! - `sock`: a TCP host's socket end: reads through TLS, put bodies by
//!   sendfile(2) or through TLS.
//! - `tcp`: the per-host connection state machine (connect, handshake,
//!   request, replies, a get's `.part`, a put's sendfile).
//! - `udp`: one `client::udp::Request` per host, matched by nonce.
//!
//! From the rest of the client they use `exit`, `finish`, `udp` and the
//! helpers of `client` itself; nothing outside `bin/ferry.rs` uses them
//! but through this file.
//!
//! Output (for `run`): each complete line is written as `HOST: line` as it
//! arrives, a host's stdout to stdout and its stderr to stderr; what is left
//! without a newline when the command ends is written with one. `gather`
//! prints each distinct stdout once under the hosts that produced it (stderr
//! still streams with prefixes); `json` prints one object per host as it
//! finishes. A summary goes to stderr at the end.
//!
//! Exit status: 0 when every host succeeded; 255 when any host could not
//! be reached, authenticated, timed out or failed in the protocol; else the
//! largest status of the hosts (the remote status for `run`, 128 + signal,
//! 127 spawn-failed, 1 for a file error, 130 for a host the interrupt kept
//! from running).

mod fan;
mod getfile;
pub mod hosts;
mod outcome;
mod output;
mod poll_loop;
mod sock;
mod tcp;
mod udp;

pub use fan::{Mode, Op, Plan};

use super::exit;
use super::{io_text, Options};
use crate::proto::auth::Key;
use fan::Fan;
use crate::proto::digest::Digest;
use std::fs::File;

/// How one host's tree (`get -r`/`put -r` with `-H`, run outside the event
/// loop) ended, for the summary and `--json` every fan-out prints.
#[derive(Debug)]
pub enum TreeEnd {
    Ok,
    /// Entries failed, or the tree could not be moved (status 1, or 2).
    Failed(String),
    /// Connecting, the handshake, the protocol (status 255).
    Ferry(super::Error),
}

fn end_text(end: &TreeEnd) -> String {
    match end {
        TreeEnd::Ok => String::new(),
        TreeEnd::Failed(m) => m.clone(),
        TreeEnd::Ferry(e) => e.to_string(),
    }
}

fn tree_outcome(end: &TreeEnd) -> outcome::Outcome {
    use super::Error;
    use outcome::Outcome;
    match end {
        TreeEnd::Ok => Outcome::Done,
        TreeEnd::Failed(m) => Outcome::FileError(m.clone()),
        TreeEnd::Ferry(Error::Connect(m)) => Outcome::Unreachable(m.clone()),
        TreeEnd::Ferry(Error::Io(e)) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
            Outcome::TimedOut(end_text(end))
        }
        TreeEnd::Ferry(Error::Auth(m)) => Outcome::AuthFailed(m.clone()),
        TreeEnd::Ferry(Error::Tls(m)) => Outcome::AuthFailed(format!("TLS: {m}")),
        TreeEnd::Ferry(_) => Outcome::Error(end_text(end)),
    }
}

/// The `--json` object of one host's tree (the fields of any fan-out host,
/// plus `entries` and `failed_entries`), one line.
pub fn tree_json_line(host: &str, end: &TreeEnd, entries: usize, failed: usize, duration: f64) -> String {
    let o = tree_outcome(end);
    let line = output::json_line(host, &o, &output::Lines::new(None), duration, None, None);
    let mut v: serde_json::Value = serde_json::from_str(&line).expect("our own JSON");
    v["entries"] = serde_json::json!(entries);
    v["failed_entries"] = serde_json::json!(failed);
    let mut line = v.to_string();
    line.push('\n');
    line
}

/// The summary of a tree fan-out, as every fan-out's: `N hosts: x ok, y
/// failed, ...`, then a line for each host that was not ok.
pub fn tree_summary(ends: &[(&str, &TreeEnd)], quiet: bool) -> String {
    let outcomes: Vec<(&str, outcome::Outcome)> = ends.iter().map(|(h, e)| (*h, tree_outcome(e))).collect();
    output::summary(outcomes.iter().map(|(h, o)| (*h, o)), quiet)
}

/// Hosts connecting and authenticating at once, by default.
pub const DEFAULT_FANOUT: usize = 64;

/// Runs `op` on every host of `plan` over TCP; the exit status (see the
/// module doc).
pub fn run(plan: &Plan, op: &Op, key: &Key, opts: &Options) -> i32 {
    // A socket per host.
    crate::sys::raise_nofile(None);
    fan_out(plan, op, key, opts, |fan| {
        poll_loop::drive(fan, &mut tcp::Tcp::new(fan.slots.len())).map_err(|e| format!("event loop: {e}"))
    })
}

/// `run -u` and `ping -u` with `-H`: every request datagram sent at once,
/// each retransmitted on its own schedule (as `client::udp` does for one
/// host). The exit status as for `run`.
pub fn run_udp(plan: &Plan, op: &Op, key: &Key, opts: &Options) -> i32 {
    fan_out(plan, op, key, opts, |fan| {
        let mut t = udp::Udp::new(fan).map_err(|e| e.to_string())?;
        poll_loop::drive(fan, &mut t).map_err(|e| e.to_string())
    })
}

/// Makes the `Fan`, lets `drive` take every host to its outcome, then
/// prints the `-b` groups and the summary; the exit status.
fn fan_out(plan: &Plan, op: &Op, key: &Key, opts: &Options, drive: impl FnOnce(&mut Fan) -> Result<(), String>) -> i32 {
    let mut fan = match Fan::new(plan, op, key, opts) {
        Ok(f) => f,
        Err(e) => return exit::fail(e),
    };
    if let Err(e) = drive(&mut fan) {
        return exit::fail(e);
    }
    fan.report()
}

/// Reads `r` to its end through `each`; the count of bytes.
fn hash_both(r: &mut dyn std::io::Read, each: &mut dyn FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
        total += n as u64;
    }
}

/// Opens and hashes the one local file a fan-out `put` sends (read once;
/// the hosts then get it from the page cache). Errors are for status 1.
pub fn put_op(local: &str, remote: Option<&str>) -> Result<Op, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = File::open(local).map_err(|e| format!("{local}: {}", io_text(&e)))?;
    let meta = file.metadata().map_err(|e| format!("{local}: {}", io_text(&e)))?;
    if !meta.is_file() {
        return Err(format!("{local}: not a regular file (a put to several hosts sends a regular file)"));
    }
    let name = std::path::Path::new(local)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("\"{local}\" names no file to name a remote one after"))?
        .to_string();
    let mut hashers = [Digest::Sha256.hasher(), Digest::Blake3.hasher()].map(|h| h.expect("a digest"));
    let size = {
        let [sha, b3] = &mut hashers;
        let mut both = |bytes: &[u8]| {
            sha.update(bytes);
            b3.update(bytes);
        };
        hash_both(&mut file, &mut both).map_err(|e| format!("{local}: {}", io_text(&e)))?
    };
    Ok(Op::Put {
        file,
        size,
        sha256: hashers[0].hex(),
        blake3: hashers[1].hex(),
        mode: meta.permissions().mode() & 0o777,
        name,
        remote: remote.map(str::to_string),
    })
}
