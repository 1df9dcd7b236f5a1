//! What every fan-out shares, whatever the transport: the plan and the
//! operation, each host's slot (its output, its outcome, its timings), and
//! finishing a host. Imports `outcome`, `output` and `hosts`; the transports
//! (`tcp`, `udp`) build on it, never the other way round.

use super::hosts::Host;
use super::outcome::Outcome;
use super::output::{self, Lines, Out};
use crate::client::{redacted, Options};
use crate::proto::auth::Key;
use crate::proto::digest::Digest;
use crate::proto::msg::Stream;
use encoding_rs::Encoding;
use mio::Poll;
use serde_json::{Map, Value};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What every host is asked to do.
pub enum Op {
    /// `argv`: send argv even for one word (`run --argv`).
    Run { command: Vec<String>, argv: bool },
    Ping { count: u32, interval: Duration },
    /// One local file, hashed once here, sent to every host from the page cache.
    /// The file is hashed once with both digests, so each host gets the
    /// best it announced, in the header (the body goes with sendfile).
    Put { file: File, size: u64, sha256: String, blake3: String, mode: u32, name: String, remote: Option<String> },
    /// REMOTE into `dir/HOST/name`.
    Get { remote: String, dir: PathBuf, name: String },
}

/// How `run` output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stream,
    Gather,
    Json,
}

/// Everything a fan-out needs.
pub struct Plan {
    pub hosts: Vec<Host>,
    pub fanout: usize,
    pub mode: Mode,
    pub quiet: bool,
    pub encoding: Option<&'static Encoding>,
}

/// One host, whatever the transport.
pub(super) struct Slot {
    pub(super) host: Host,
    pub(super) started: Option<Instant>,
    finished: Option<Instant>,
    pub(super) outcome: Option<Outcome>,
    lines: Lines,
    rtts: Vec<f64>,
    /// A get's or put's digest, and its hex once checked (for `--json`).
    pub(super) digest: Option<(Digest, Option<String>)>,
}

/// What a pong means for its host.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pong {
    /// Another ping is due after the interval.
    Again,
    /// That was the last: finish the host with `Outcome::Done`.
    Last,
}

pub(super) struct Fan<'a> {
    pub(super) slots: Vec<Slot>,
    pub(super) poll: Poll,
    pub(super) key: &'a Key,
    pub(super) opts: &'a Options,
    pub(super) op: &'a Op,
    pub(super) plan: &'a Plan,
    pub(super) out: Out,
    /// INT or TERM seen so far.
    pub(super) interrupted: u32,
}

impl<'a> Fan<'a> {
    pub(super) fn new(plan: &'a Plan, op: &'a Op, key: &'a Key, opts: &'a Options) -> io::Result<Fan<'a>> {
        let slots = plan
            .hosts
            .iter()
            .map(|h| Slot {
                host: h.clone(),
                started: None,
                finished: None,
                outcome: None,
                lines: Lines::new(plan.encoding),
                rtts: Vec::new(),
                digest: None,
            })
            .collect();
        Ok(Fan { slots, poll: Poll::new()?, key, opts, op, plan, out: Out::new(), interrupted: 0 })
    }

    pub(super) fn all_done(&self) -> bool {
        self.slots.iter().all(|s| s.outcome.is_some())
    }

    /// Host `i` is over (the transport has closed what it held): flush its
    /// partial lines, and print its JSON object. A host finishes once.
    pub(super) fn finish(&mut self, i: usize, outcome: Outcome) {
        let slot = &mut self.slots[i];
        if slot.outcome.is_some() {
            return;
        }
        slot.lines.flush_decoders();
        slot.finished = Some(Instant::now());
        slot.outcome = Some(outcome);
        match self.plan.mode {
            Mode::Stream => {
                self.emit_lines(i, Stream::Stdout, true);
                self.emit_lines(i, Stream::Stderr, true);
            }
            Mode::Gather => self.emit_lines(i, Stream::Stderr, true),
            Mode::Json => {
                let s = &self.slots[i];
                let duration = match (s.started, s.finished) {
                    (Some(a), Some(b)) => (b - a).as_secs_f64(),
                    _ => 0.0,
                };
                let rtts = matches!(self.op, Op::Ping { .. }).then_some(&s.rtts[..]);
                let digest = s.digest.as_ref().map(|(d, h)| (*d, h.as_deref()));
                let line = output::json_line(&s.host.name, s.outcome.as_ref().expect("just set"), &s.lines, duration, rtts, digest);
                self.out.stdout(line.as_bytes());
            }
        }
    }

    fn emit_lines(&mut self, i: usize, stream: Stream, all: bool) {
        let slot = &mut self.slots[i];
        if let Some(text) = slot.lines.take_lines(stream, all, &slot.host.name) {
            self.out.write(stream, &text);
        }
    }

    /// Output bytes of host `i`, then its complete lines where they stream.
    pub(super) fn output(&mut self, i: usize, stream: Stream, bytes: &[u8]) {
        self.slots[i].lines.push(stream, bytes);
        let streams = match self.plan.mode {
            Mode::Stream => true,
            Mode::Gather => stream == Stream::Stderr,
            Mode::Json => false,
        };
        if streams {
            self.emit_lines(i, stream, false);
        }
    }

    /// Host `i`'s pong after `rtt` ms (`note` ends its line): recorded and
    /// printed.
    pub(super) fn on_pong(&mut self, i: usize, rtt: f64, note: &str) -> Pong {
        let Op::Ping { count, .. } = self.op else { unreachable!("a pong answers a ping") };
        let slot = &mut self.slots[i];
        slot.rtts.push(rtt);
        let seq = slot.rtts.len();
        if self.plan.mode != Mode::Json && !self.plan.quiet {
            let line = format!("{}: pong seq={seq} time={rtt:.3} ms{note}\n", crate::term::escape(&slot.host.name));
            self.out.stdout(line.as_bytes());
        }
        if seq as u32 >= *count {
            Pong::Last
        } else {
            Pong::Again
        }
    }

    /// `--trace`: a frame header to or from host `i`, MACs redacted.
    pub(super) fn trace(&self, i: usize, dir: &str, header: &Map<String, Value>) {
        if self.opts.trace {
            crate::errln!("ferry: {}: {dir} {}", crate::term::escape(&self.slots[i].host.name), redacted(header));
        }
    }

    /// With `-v`, a line about host `i` (its transport).
    pub(super) fn trace_note(&self, i: usize, note: &str) {
        if self.opts.trace {
            crate::errln!("ferry: {}: {note}", crate::term::escape(&self.slots[i].host.name));
        }
    }

    /// Prints the `-b` groups (gather mode) and the summary; the exit status.
    pub(super) fn report(&mut self) -> i32 {
        if self.plan.mode == Mode::Gather {
            let text = output::gathered(self.slots.iter().map(|s| (s.host.name.as_str(), &s.lines.out[..])));
            self.out.stdout(&text);
        }
        self.out.flush();
        // Our reader went away (`| head`): 141 without a word, as cat.
        if self.out.failed.as_ref().is_some_and(crate::term::is_broken_pipe) {
            return crate::client::exit::BROKEN_PIPE;
        }
        let outcomes = || self.slots.iter().map(|s| s.outcome.as_ref().expect("every host finished"));
        let worst = outcomes().map(Outcome::status).max().unwrap_or(0);
        let ferry_error = outcomes().any(Outcome::is_ferry_error);
        let hosts = self.slots.iter().map(|s| (s.host.name.as_str(), s.outcome.as_ref().expect("every host finished")));
        let text = output::summary(hosts, self.plan.quiet);
        self.out.stderr(text.as_bytes());
        match &self.out.failed {
            // The summary said how the hosts did; this says the output was lost.
            Some(e) => crate::client::exit::stdout_failed(e),
            None => crate::client::exit::fleet(worst, ferry_error, false),
        }
    }
}
