//! Holding idle connections: watches that the server keeps them, and waits
//! for the server to let go of them after they are closed.

use super::net::is_would_block;
use mio::net::TcpStream;
use mio::{Events, Poll};
use std::io::Read;
use std::time::{Duration, Instant};

/// Holds `socks` (registered in `poll`) for `hold`. Any byte or close from
/// the server on one of them is an error: an idle connection hears nothing.
/// Samples the RSS of `pid` about every 200 ms; returns the highest seen.
pub fn hold(poll: &mut Poll, socks: &mut [TcpStream], hold: Duration, pid: Option<u32>) -> Result<Option<u64>, String> {
    let until = Instant::now() + hold;
    let mut events = Events::with_capacity(1024);
    let mut peak = pid.and_then(super::sys::rss_kib);
    loop {
        if let Some(rss) = pid.and_then(super::sys::rss_kib) {
            peak = Some(peak.map_or(rss, |p| p.max(rss)));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(peak);
        }
        super::net::poll_events(poll, &mut events, left.min(Duration::from_millis(200)))?;
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
        match super::sys::fd_count(pid) {
            Some(n) if n > fds => std::thread::sleep(Duration::from_millis(20)),
            _ => return,
        }
    }
}
