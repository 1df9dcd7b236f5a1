//! The `idle` mode: holds idle connections, watching that the server keeps
//! them, waits for the server to let go of them after they are closed, and
//! reports the server's RSS and fds per connection (`measure`).

use crate::net::{self, is_would_block, Proto};
use crate::report::{grouped, plural, push_notes, round3, Common, Report};
use crate::sys;
use crate::sock::Sock;
use mio::{Events, Poll};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

/// Holds `socks` (registered in `poll`) for `hold`. Any byte or close from
/// the server on one of them is an error: an idle connection hears nothing.
/// Samples the RSS of `pid` about every 200 ms; returns the highest seen.
pub fn hold(poll: &mut Poll, socks: &mut [Sock], hold: Duration, pid: Option<u32>) -> Result<Option<u64>, String> {
    let until = Instant::now() + hold;
    let mut events = Events::with_capacity(1024);
    let mut peak = pid.and_then(sys::rss_kib);
    loop {
        if let Some(rss) = pid.and_then(sys::rss_kib) {
            peak = Some(peak.map_or(rss, |p| p.max(rss)));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(peak);
        }
        net::poll_events(poll, &mut events, left.min(Duration::from_millis(200)))?;
        for ev in events.iter() {
            if !(ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                continue;
            }
            let i = ev.token().0;
            let mut buf = [0u8; 512];
            match socks[i].read(&mut buf) {
                Ok(0) => return Err(format!("connection {}: the server closed an idle connection", i + 1)),
                Ok(n) => {
                    return Err(format!(
                        "connection {}: the server sent {:?} on an idle connection",
                        i + 1,
                        String::from_utf8_lossy(&buf[..n])
                    ))
                }
                Err(e) if is_would_block(&e) => {}
                Err(e) => return Err(format!("connection {}: {e}", i + 1)),
            }
        }
    }
}

/// Waits (at most `limit`) until `pid` has no more than `fds` open files.
pub fn wait_fds_at_most(pid: u32, fds: u64, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        match sys::fd_count(pid) {
            Some(n) if n > fds => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}

/// Idle: open `connections` (authenticated, one ping each), hold them for
/// `duration`, and report the server's RSS and fds per connection.
pub fn measure(common: &Common) -> Result<Report, String> {
    let pid = common.server_pid;
    let rss0 = pid.and_then(sys::rss_kib);
    let fds0 = pid.and_then(sys::fd_count);
    let t_setup = Instant::now();
    let (mut poll, mut socks) = net::open(common.addr, &common.proto, common.connections, common.setup(true))?;
    let setup = t_setup.elapsed();
    let peak = hold(&mut poll, &mut socks, common.duration, pid)?;
    let rss1 = pid.and_then(sys::rss_kib);
    let fds1 = pid.and_then(sys::fd_count);
    let client_rss = sys::self_rss_kib();
    drop(socks);
    let mut rss2 = None;
    if let (Some(pid), Some(f0)) = (pid, fds0) {
        wait_fds_at_most(pid, f0, Duration::from_secs(5));
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
