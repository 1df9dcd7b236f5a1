//! What every mode shares: the options (`Common`), the measured `Window`, and
//! the `Report` (one JSON object and the human table) with the helpers that
//! format latencies, counts and CPU time for both. Owns no I/O: the modes
//! (`load`, `xfer`, `idle`, `udp`) measure and fill a `Report`, `main` prints it.

use crate::hist::Histogram;
use crate::net::{Proto, SetupOpts};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// When the run starts counting and when it stops sending.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from: Instant,
    pub to: Instant,
    /// No reply on a busy thread for this long is an error.
    pub stall: Duration,
    /// How long to wait for replies still in flight at `to` (not counted).
    pub drain: Duration,
}

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
    /// `--tls`: every connection over TLS (ferry's, or to a RESP server).
    pub tls: Option<crate::sock::TlsSetup>,
    /// `--tls` was given (udp: the datagrams are sealed).
    pub secure: bool,
}

impl Common {
    pub fn setup(&self, probe: bool) -> SetupOpts {
        SetupOpts { timeout: self.timeout, parallel: self.setup_parallel, probe, tls: self.tls.clone() }
    }

    /// The fields every report has.
    pub fn base(&self, mode: &str) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tool".into(), json!("ferry-bench"));
        m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        m.insert("mode".into(), json!(mode));
        m.insert("protocol".into(), json!(self.proto.name()));
        m.insert("tls".into(), json!(self.secure));
        m.insert("host".into(), json!(self.host));
        m.insert("port".into(), json!(self.addr.port()));
        m.insert("connections".into(), json!(self.connections));
        m.insert("server_pid".into(), json!(self.server_pid));
        m
    }

    /// The measured window of a run that starts at `start`: counting after
    /// the warm-up, for `duration`, then at most 2 s of drain.
    pub fn window(&self, start: Instant) -> Window {
        let from = start + self.warmup;
        Window { from, to: from + self.duration, stall: self.timeout, drain: self.timeout.min(Duration::from_secs(2)) }
    }

    pub fn notes(&self) -> Vec<String> {
        self.server_note.iter().cloned().collect()
    }
}

/// Each note as a "note" row of the table, and all of them as the JSON's "notes" array.
pub fn push_notes(notes: Vec<String>, m: &mut serde_json::Map<String, Value>, rows: &mut Vec<(String, String)>) {
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

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Latency percentiles in µs, for JSON.
pub fn latency_json(h: &Histogram) -> Value {
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
pub fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

pub fn latency_row(h: &Histogram) -> String {
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
pub fn grouped(n: u64) -> String {
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

pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

pub fn cpu_row(client: Duration, server: Option<Duration>, pid: Option<u32>, per: Option<(&str, f64)>) -> String {
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
