//! ferry-bench: a load generator for ferryd (and, for comparison, redis-server
//! through RESP), written to be fast itself: non-blocking `mio`, many
//! connections per thread, requests encoded once, no allocation per request,
//! latencies in a fixed log-linear histogram.
//!
//! - `net`: loopback resolution, frame scanning, the parallel connect+handshake
//!   (`open`: a poll and its authenticated connections).
//! - `load`: the closed-loop pipelined engine for `ping` and `exec`.
//! - `xfer`: `get` and `put` transfers.
//! - `idle`: holding idle connections.
//! - `udp`: datagrams, to ferryd's UDP ping or to a bare echo.
//! - `hist`: the histogram. `sys`: /proc, getrusage, rlimits.
//!
//! Each mode here returns a `Report`: one JSON object and the human table.

pub mod hist;
pub mod idle;
pub mod load;
pub mod net;
pub mod sys;
pub mod udp;
pub mod xfer;

use crate::proto::encode_head;
use crate::proto::msg::{self, Digest};
use hist::Histogram;
use net::{Proto, SetupOpts};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Options every mode shares.
#[derive(Clone)]
pub struct Common {
    pub host: String,
    pub addr: SocketAddr,
    pub proto: Proto,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    pub setup_parallel: usize,
    /// `--server-pid`, else the process found listening on the port.
    pub server_pid: Option<u32>,
    /// Why there is no server pid, when there is none.
    pub server_note: Option<String>,
}

impl Common {
    fn setup(&self, probe: bool) -> SetupOpts {
        SetupOpts { timeout: self.timeout, parallel: self.setup_parallel, probe }
    }

    /// The fields every report has.
    fn base(&self, mode: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tool".into(), json!("ferry-bench"));
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        m.insert("mode".into(), json!(mode));
        m.insert("protocol".into(), json!(self.proto.name()));
        m.insert("host".into(), json!(self.host));
        m.insert("port".into(), json!(self.addr.port()));
        m.insert("connections".into(), json!(self.connections));
        m.insert("server_pid".into(), json!(self.server_pid));
        m
    }

    /// The measured window of a run that starts at `start`: counting after
    /// the warm-up, for `duration`, then at most 2 s of drain.
    fn window(&self, start: Instant) -> load::Window {
        let from = start + self.warmup;
        load::Window {
            from,
            to: from + self.duration,
            stall: self.timeout,
            drain: self.timeout.min(Duration::from_secs(2)),
        }
    }

    fn notes(&self) -> Vec<String> {
        self.server_note.iter().cloned().collect()
    }
}

/// Each note as a "note" row of the table, and all of them as the JSON's "notes" array.
fn push_notes(notes: Vec<String>, m: &mut serde_json::Map<String, Value>, rows: &mut Vec<(String, String)>) {
    rows.extend(notes.iter().map(|n| ("note".to_string(), n.clone())));
    m.insert("notes".into(), json!(notes));
}

/// A mode's result: the JSON object and the human table, as (label, value) rows.
pub struct Report {
    pub json: Value,
    pub title: String,
    pub rows: Vec<(String, String)>,
}

impl Report {
    /// The aligned human table.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
        let mut s = format!("{}\n", self.title);
        for (k, v) in &self.rows {
            s.push_str(&format!("  {k:<w$}  {v}\n"));
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Latency percentiles in µs, for JSON.
fn latency_json(h: &Histogram) -> Value {
    let us = |ns: u64| round3(ns as f64 / 1000.0);
    json!({
        "min": us(h.min()),
        "mean": round3(h.mean() / 1000.0),
        "p50": us(h.quantile(0.50)),
        "p90": us(h.quantile(0.90)),
        "p99": us(h.quantile(0.99)),
        "p999": us(h.quantile(0.999)),
        "max": us(h.max()),
    })
}

/// A human duration for a value in ns.
fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

fn latency_row(h: &Histogram) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  (min {}, mean {}, max {})",
        human_ns(h.quantile(0.5)),
        human_ns(h.quantile(0.9)),
        human_ns(h.quantile(0.99)),
        human_ns(h.quantile(0.999)),
        human_ns(h.min()),
        human_ns(h.mean() as u64),
        human_ns(h.max())
    )
}

/// 1234567 as "1,234,567".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn cpu_row(client: Duration, server: Option<Duration>, pid: Option<u32>, per: Option<(&str, f64)>) -> String {
    let mut s = format!("client {:.2} s", client.as_secs_f64());
    match (server, pid) {
        (Some(d), Some(pid)) => s.push_str(&format!(", server {:.2} s (pid {pid})", d.as_secs_f64())),
        _ => s.push_str(", server not measured"),
    }
    if let Some((unit, n)) = per.filter(|(_, n)| *n > 0.0) {
        s.push_str(&format!("; per {unit}: client {:.1} µs", client.as_secs_f64() * 1e6 / n));
        if let Some(d) = server {
            s.push_str(&format!(", server {:.1} µs", d.as_secs_f64() * 1e6 / n));
        }
    }
    s
}

/// What `exec` runs.
#[derive(Clone, Debug)]
pub enum ExecCommand {
    Argv(Vec<String>),
    Shell(String),
}

/// Ping or exec: `connections` split over `threads`, each thread with its own
/// poll, opened in parallel, then the closed loop for warm-up + duration.
pub fn load(common: &Common, pipeline: usize, exec: Option<&ExecCommand>) -> Result<Report, String> {
    let (spec, mode) = match (&common.proto, exec) {
        (Proto::Resp, None) => (
            load::Spec {
                request: b"PING\r\n".to_vec(),
                expected: b"+PONG\r\n".to_vec(),
                reply: load::Reply::Resp,
                pipeline,
            },
            "ping",
        ),
        (Proto::Resp, Some(_)) => return Err("exec speaks ferry only (--resp is for ping and idle)".into()),
        (Proto::Ferry(_), None) => (
            load::Spec {
                request: net::frame(msg::request::ping()),
                expected: net::frame(msg::pong(None)),
                reply: load::Reply::Pong,
                pipeline,
            },
            "ping",
        ),
        (Proto::Ferry(_), Some(cmd)) => {
            let command = match cmd {
                ExecCommand::Argv(a) => msg::Command::Argv(a.clone()),
                ExecCommand::Shell(s) => msg::Command::Shell(s.clone()),
            };
            let req = msg::Exec { command, env: Default::default(), cwd: None, stdin: false, timeout: None };
            (
                load::Spec {
                    request: net::frame(msg::request::exec(&req)),
                    expected: net::frame(msg::exit(Some(0), None, None)),
                    reply: load::Reply::Exit,
                    pipeline,
                },
                "exec",
            )
        }
    };
    let threads = common.threads.clamp(1, common.connections.max(1));
    let spec = Arc::new(spec);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let start_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let abort = Arc::new(AtomicBool::new(false));
    let t_setup = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let n = common.connections / threads + usize::from(t < common.connections % threads);
        let (common, spec, barrier, go, start_at, abort) =
            (common.clone(), spec.clone(), barrier.clone(), go.clone(), start_at.clone(), abort.clone());
        handles.push(std::thread::spawn(move || -> Result<Option<load::Outcome>, String> {
            // Every thread reaches both barriers, whatever happens in its setup.
            let ready = net::open(common.addr, &common.proto, n, common.setup(false));
            if ready.is_err() {
                abort.store(true, Ordering::SeqCst);
            }
            barrier.wait();
            go.wait();
            let (mut poll, socks) = ready?;
            if abort.load(Ordering::SeqCst) {
                return Ok(None);
            }
            let start = *start_at.get().expect("set before the go barrier");
            load::run(&mut poll, socks, &spec, common.window(start)).map(Some)
        }));
    }
    barrier.wait();
    let setup = t_setup.elapsed();
    let start = Instant::now();
    start_at.set(start).expect("set once");
    go.wait();
    let aborted = abort.load(Ordering::SeqCst);
    let mut cpu = None;
    if !aborted {
        let from = start + common.warmup;
        std::thread::sleep(from.saturating_duration_since(Instant::now()));
        let c0 = (sys::self_cpu(), common.server_pid.and_then(sys::proc_cpu));
        std::thread::sleep((from + common.duration).saturating_duration_since(Instant::now()));
        let c1 = (sys::self_cpu(), common.server_pid.and_then(sys::proc_cpu));
        cpu = Some((c1.0.saturating_sub(c0.0), c0.1.zip(c1.1).map(|(a, b)| b.saturating_sub(a))));
    }
    let mut total = load::Outcome::default();
    let mut first_err = None;
    for h in handles {
        match h.join().map_err(|_| "a load thread panicked".to_string()).and_then(|r| r) {
            Ok(Some(o)) => {
                total.hist.merge(&o.hist);
                total.ops += o.ops;
                total.failed += o.failed;
                total.replies += o.replies;
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let (client_cpu, server_cpu) = cpu.expect("measured when nothing failed");
    let secs = common.duration.as_secs_f64();
    let rate = total.ops as f64 / secs;
    let mut m = common.base(mode);
    m.insert("threads".into(), json!(threads));
    m.insert("pipeline".into(), json!(pipeline));
    m.insert("warmup_s".into(), json!(common.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(secs));
    m.insert("setup_s".into(), json!(round3(setup.as_secs_f64())));
    m.insert("ops".into(), json!(total.ops));
    m.insert("ops_per_s".into(), json!(round3(rate)));
    m.insert("latency_us".into(), latency_json(&total.hist));
    m.insert("replies_total".into(), json!(total.replies));
    m.insert("client_cpu_s".into(), json!(round3(client_cpu.as_secs_f64())));
    m.insert("server_cpu_s".into(), json!(server_cpu.map(|d| round3(d.as_secs_f64()))));
    // CPU per operation is steadier than rates on a shared machine.
    let per_op = |d: Duration| (total.ops > 0).then(|| round3(d.as_secs_f64() * 1e6 / total.ops as f64));
    m.insert("client_cpu_us_per_op".into(), json!(per_op(client_cpu)));
    m.insert("server_cpu_us_per_op".into(), json!(server_cpu.and_then(per_op)));
    let what = if mode == "exec" { "executions" } else { "requests" };
    let mut rows = vec![
        (
            "setup".to_string(),
            format!("{:.2} s to open {}", setup.as_secs_f64(), plural(common.connections, "connection")),
        ),
        ("measured".to_string(), format!("{secs:.2} s after {:.2} s of warm-up", common.warmup.as_secs_f64())),
        (what.to_string(), format!("{} ({}/s)", grouped(total.ops), grouped(rate.round() as u64))),
    ];
    if let Some(cmd) = exec {
        m.insert(
            "command".into(),
            match cmd {
                ExecCommand::Argv(a) => json!(a),
                ExecCommand::Shell(s) => json!(s),
            },
        );
        m.insert("failed".into(), json!(total.failed));
        rows.push(("failed".into(), format!("{} (non-zero exit or signal)", grouped(total.failed))));
    }
    rows.push(("latency".into(), latency_row(&total.hist)));
    let unit = if mode == "exec" { "execution" } else { "request" };
    rows.push(("cpu".into(), cpu_row(client_cpu, server_cpu, common.server_pid, Some((unit, total.ops as f64)))));
    push_notes(common.notes(), &mut m, &mut rows);
    let title = format!(
        "ferry-bench {mode}: {} {}, {}, {}, pipeline {pipeline}",
        common.proto.name(),
        common.addr,
        plural(common.connections, "connection"),
        plural(threads, "thread")
    );
    Ok(Report { json: Value::Object(m), title, rows })
}

/// Options of `get` and `put`.
pub struct Transfer {
    pub put: bool,
    pub path: String,
    /// Put: the size of the generated body. Get: if given, a file of this
    /// size is first stored at `path` (not measured).
    pub size: Option<u64>,
    pub file: Option<std::path::PathBuf>,
    pub digest: Digest,
    pub count: Option<u64>,
}

fn put_op(path: &str, size: u64, digest: Digest, file: Option<std::fs::File>) -> Result<xfer::Op, String> {
    let (source, sha) = match file {
        Some(f) => {
            let sha = if digest == Digest::Sha256 {
                Some(xfer::file_sha256(&f).map_err(|e| format!("reading the file: {e}"))?.0)
            } else {
                None
            };
            (xfer::Source::File(f), sha)
        }
        None => {
            let block = xfer::pattern_block();
            let sha = (digest == Digest::Sha256).then(|| xfer::pattern_sha256(&block, size));
            (xfer::Source::Pattern(block), sha)
        }
    };
    let mut header = Vec::new();
    encode_head(&mut header, msg::request::put(path, None, sha.as_deref(), false), size);
    Ok(xfer::Op::Put { header, size, source })
}

/// Get or put: `connections` transfers at a time, one thread.
pub fn transfer(common: &Common, t: &Transfer) -> Result<Report, String> {
    if matches!(common.proto, Proto::Resp) {
        return Err("get and put speak ferry only".into());
    }
    let gib = (1u64 << 30) as f64;
    let (op, size_label, source_label) = if t.put {
        let (size, file) = match &t.file {
            Some(p) => {
                let f = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let len = f.metadata().map_err(|e| format!("{}: {e}", p.display()))?.len();
                (len, Some(f))
            }
            None => (t.size.unwrap_or(64 << 20), None),
        };
        let label = t.file.as_ref().map_or("generated".to_string(), |p| p.display().to_string());
        (put_op(&t.path, size, t.digest, file)?, Some(size), label)
    } else {
        if let Some(size) = t.size {
            // Store the file to fetch first, on a connection of its own (not measured).
            let (mut poll, socks) = net::open(common.addr, &common.proto, 1, common.setup(false))?;
            let op = put_op(&t.path, size, Digest::Sha256, None)?;
            xfer::run(&mut poll, socks, &op, Duration::ZERO, xfer::Amount::Count(1), common.timeout, None)
                .map_err(|e| format!("storing the file to get: {e}"))?;
        }
        let request = net::frame(msg::request::get(&t.path, 0, t.digest));
        (xfer::Op::Get { request, verify: t.digest == Digest::Sha256 }, t.size, String::new())
    };
    let t_setup = Instant::now();
    let (mut poll, socks) = net::open(common.addr, &common.proto, common.connections, common.setup(false))?;
    let setup = t_setup.elapsed();
    let amount = match t.count {
        Some(n) => xfer::Amount::Count(n.max(1)),
        None => xfer::Amount::For(common.duration),
    };
    let o = xfer::run(&mut poll, socks, &op, common.warmup, amount, common.timeout, common.server_pid)?;
    let mode = if t.put { "put" } else { "get" };
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let gibs = o.bytes as f64 / gib;
    let per_gib = |d: Duration| if gibs > 0.0 { Some(round3(d.as_secs_f64() / gibs)) } else { None };
    let size = size_label.or_else(|| (o.transfers > 0).then(|| o.bytes / o.transfers));
    let mut m = common.base(mode);
    m.insert("path".into(), json!(t.path));
    m.insert("size_bytes".into(), json!(size));
    m.insert("digest".into(), json!(if t.digest == Digest::Sha256 { "sha256" } else { "none" }));
    if t.put {
        m.insert("source".into(), json!(source_label));
    }
    m.insert("warmup_s".into(), json!(common.warmup.as_secs_f64()));
    m.insert("setup_s".into(), json!(round3(setup.as_secs_f64())));
    m.insert("transfers".into(), json!(o.transfers));
    m.insert("bytes".into(), json!(o.bytes));
    m.insert("elapsed_s".into(), json!(round3(secs)));
    m.insert("ops".into(), json!(o.transfers));
    m.insert("ops_per_s".into(), json!(round3(o.transfers as f64 / secs)));
    m.insert("mb_per_s".into(), json!(round3(o.bytes as f64 / secs / 1e6)));
    m.insert("mib_per_s".into(), json!(round3(o.bytes as f64 / secs / (1u64 << 20) as f64)));
    m.insert("latency_us".into(), latency_json(&o.hist));
    m.insert("client_cpu_s".into(), json!(round3(o.client_cpu.as_secs_f64())));
    m.insert("server_cpu_s".into(), json!(o.server_cpu.map(|d| round3(d.as_secs_f64()))));
    m.insert("client_cpu_s_per_gib".into(), json!(per_gib(o.client_cpu)));
    m.insert("server_cpu_s_per_gib".into(), json!(o.server_cpu.and_then(per_gib)));
    let mut notes = common.notes();
    if t.put && t.digest == Digest::Sha256 {
        notes.push("the put's SHA-256 is computed once before the run; the server hashes every put".into());
    }
    let mut rows = vec![
        (
            "setup".to_string(),
            format!("{:.2} s to open {}", setup.as_secs_f64(), plural(common.connections, "connection")),
        ),
        (
            "transfers".to_string(),
            format!(
                "{} of {} bytes in {secs:.3} s ({:.2} transfers/s)",
                grouped(o.transfers),
                grouped(size.unwrap_or(0)),
                o.transfers as f64 / secs
            ),
        ),
        (
            "throughput".to_string(),
            format!(
                "{:.1} MB/s ({:.1} MiB/s)",
                o.bytes as f64 / secs / 1e6,
                o.bytes as f64 / secs / (1u64 << 20) as f64
            ),
        ),
        ("transfer time".to_string(), latency_row(&o.hist)),
    ];
    let mut cpu = cpu_row(o.client_cpu, o.server_cpu, common.server_pid, None);
    if gibs > 0.0 {
        cpu.push_str(&format!("; per GiB: client {:.3} s", o.client_cpu.as_secs_f64() / gibs));
        if let Some(d) = o.server_cpu {
            cpu.push_str(&format!(", server {:.3} s", d.as_secs_f64() / gibs));
        }
    }
    rows.push(("cpu".into(), cpu));
    push_notes(notes, &mut m, &mut rows);
    let title = format!(
        "ferry-bench {mode}: ferry {}, {}, path {:?}, digest {}",
        common.addr,
        plural(common.connections, "connection"),
        t.path,
        if t.digest == Digest::Sha256 { "sha256" } else { "none" }
    );
    Ok(Report { json: Value::Object(m), title, rows })
}

/// Idle: open `connections` (authenticated, one ping each), hold them for
/// `duration`, and report the server's RSS and fds per connection.
pub fn idle(common: &Common) -> Result<Report, String> {
    let pid = common.server_pid;
    let rss0 = pid.and_then(sys::rss_kib);
    let fds0 = pid.and_then(sys::fd_count);
    let t_setup = Instant::now();
    let (mut poll, mut socks) = net::open(common.addr, &common.proto, common.connections, common.setup(true))?;
    let setup = t_setup.elapsed();
    let peak = idle::hold(&mut poll, &mut socks, common.duration, pid)?;
    let rss1 = pid.and_then(sys::rss_kib);
    let fds1 = pid.and_then(sys::fd_count);
    let client_rss = sys::self_rss_kib();
    drop(socks);
    let mut rss2 = None;
    if let (Some(pid), Some(f0)) = (pid, fds0) {
        idle::wait_fds_at_most(pid, f0, Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
        rss2 = sys::rss_kib(pid);
    }
    let n = common.connections.max(1) as f64;
    let per_conn = rss0.zip(rss1).map(|(a, b)| round3((b as f64 - a as f64) * 1024.0 / n));
    let fds_per = fds0.zip(fds1).map(|(a, b)| round3((b as f64 - a as f64) / n));
    let mut m = common.base("idle");
    m.insert("hold_s".into(), json!(common.duration.as_secs_f64()));
    m.insert("setup_s".into(), json!(round3(setup.as_secs_f64())));
    m.insert("rss_before_kib".into(), json!(rss0));
    m.insert("rss_after_kib".into(), json!(rss1));
    m.insert("rss_peak_kib".into(), json!(peak));
    m.insert("rss_closed_kib".into(), json!(rss2));
    m.insert("rss_per_conn_bytes".into(), json!(per_conn));
    m.insert("fds_before".into(), json!(fds0));
    m.insert("fds_after".into(), json!(fds1));
    m.insert("fds_per_conn".into(), json!(fds_per));
    m.insert("client_rss_kib".into(), json!(client_rss));
    let what = match common.proto {
        Proto::Ferry(_) => "authenticated, one ping each",
        Proto::Resp => "one PING each",
    };
    let mut rows = vec![(
        "setup".to_string(),
        format!(
            "{:.2} s to open {} ({what}), held {:.2} s",
            setup.as_secs_f64(),
            plural(common.connections, "connection"),
            common.duration.as_secs_f64()
        ),
    )];
    match (rss0, rss1, fds0, fds1) {
        (Some(r0), Some(r1), Some(f0), Some(f1)) => {
            rows.push((
                "server RSS".into(),
                format!(
                    "{} KiB before, {} KiB with the connections (peak {}), {} KiB after closing them",
                    grouped(r0),
                    grouped(r1),
                    peak.map_or("?".into(), grouped),
                    rss2.map_or("?".into(), grouped)
                ),
            ));
            rows.push((
                "per connection".into(),
                format!("{:.0} bytes of RSS, {:.2} fds", per_conn.unwrap_or(0.0), fds_per.unwrap_or(0.0)),
            ));
            rows.push(("server fds".into(), format!("{f0} before, {f1} with the connections")));
        }
        _ => rows.push(("server".into(), "not measured".into())),
    }
    push_notes(common.notes(), &mut m, &mut rows);
    let title = format!(
        "ferry-bench idle: {} {}, {}",
        common.proto.name(),
        common.addr,
        plural(common.connections, "connection")
    );
    Ok(Report { json: Value::Object(m), title, rows })
}

/// Datagrams: ferryd's UDP ping, or with `Target::Bare` an echo, on one
/// socket with `spec.pipeline` requests in flight, for warm-up + duration.
pub fn udp(common: &Common, spec: &udp::Spec) -> Result<Report, String> {
    let bare = matches!(spec.target, udp::Target::Bare { .. });
    let o = udp::run(common.addr, spec, common.window(Instant::now()), common.server_pid)?;
    let secs = common.duration.as_secs_f64();
    let rate = o.ops as f64 / secs;
    let protocol = if bare { "udp-echo" } else { "ferry-udp" };
    let mut m = common.base("udp");
    m.insert("protocol".into(), json!(protocol));
    m.remove("connections");
    m.insert("pipeline".into(), json!(spec.pipeline));
    m.insert("request_bytes".into(), json!(o.request_bytes));
    m.insert("reply_bytes".into(), json!(o.reply_bytes));
    m.insert("warmup_s".into(), json!(common.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(secs));
    m.insert("rto_ms".into(), json!(round3(spec.rto.as_secs_f64() * 1000.0)));
    m.insert("retries".into(), json!(spec.retries));
    m.insert("ops".into(), json!(o.ops));
    m.insert("ops_per_s".into(), json!(round3(rate)));
    m.insert("latency_us".into(), latency_json(&o.hist));
    m.insert("replies_total".into(), json!(o.replies));
    m.insert("requests".into(), json!(o.requests));
    m.insert("datagrams_sent".into(), json!(o.datagrams));
    m.insert("retransmits".into(), json!(o.retransmits));
    m.insert("lost".into(), json!(o.lost));
    m.insert("replayed".into(), json!(o.replayed));
    m.insert("stray".into(), json!(o.stray));
    m.insert("client_cpu_s".into(), json!(round3(o.client_cpu.as_secs_f64())));
    m.insert("server_cpu_s".into(), json!(o.server_cpu.map(|d| round3(d.as_secs_f64()))));
    let per_op = |d: Duration| (o.ops > 0).then(|| round3(d.as_secs_f64() * 1e6 / o.ops as f64));
    m.insert("client_cpu_us_per_op".into(), json!(per_op(o.client_cpu)));
    m.insert("server_cpu_us_per_op".into(), json!(o.server_cpu.and_then(per_op)));
    let what = if bare { "echoes" } else { "pings" };
    let mut rows = vec![
        ("measured".to_string(), format!("{secs:.2} s after {:.2} s of warm-up", common.warmup.as_secs_f64())),
        (what.to_string(), format!("{} ({}/s)", grouped(o.ops), grouped(rate.round() as u64))),
        ("latency".into(), latency_row(&o.hist)),
        (
            "datagrams".into(),
            format!(
                "{} sent ({} bytes each, replies {} bytes), {} retransmitted, {} requests lost, {} replayed, {} stray",
                grouped(o.datagrams),
                o.request_bytes,
                o.reply_bytes,
                grouped(o.retransmits),
                grouped(o.lost),
                grouped(o.replayed),
                grouped(o.stray)
            ),
        ),
        ("cpu".into(), cpu_row(o.client_cpu, o.server_cpu, common.server_pid, Some(("request", o.ops as f64)))),
    ];
    push_notes(common.notes(), &mut m, &mut rows);
    let title = format!(
        "ferry-bench udp: {} {}/udp, pipeline {}, retransmit after {} ms (doubling) up to {} times",
        if bare { "bare echo" } else { "ferry" },
        common.addr,
        spec.pipeline,
        spec.rto.as_millis(),
        spec.retries
    );
    Ok(Report { json: Value::Object(m), title, rows })
}
