//! The closed-loop request engine behind `ping` and `exec` (and `ping --resp`):
//! every connection keeps `pipeline` requests in flight, and each reply sends
//! the next request at once. The request bytes are encoded once; a connection's
//! unsent bytes are a window into a buffer holding `pipeline + 1` copies, so
//! sending never copies or allocates. Replies are recognised by comparing
//! bytes with the expected reply first; anything else is parsed from borrowed
//! bytes (no allocation) and only errors allocate, on their way out.
//! `measure` spreads the connections over threads and reports the run.

use crate::hist::Histogram;
use crate::net::{self, error_text, is_would_block, next_header, Proto};
use crate::report::{cpu_row, grouped, latency_json, latency_row, plural, push_notes, round3, Common, Report, Window};
use crate::sys;
use ferry::proto::msg;
use crate::sock::Sock;
use mio::{Events, Poll};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

/// What completes a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A ferry `pong` frame.
    Pong,
    /// A ferry `exit` frame, after any `stdout`/`stderr` frames.
    Exit,
    /// A RESP simple string line (`+PONG\r\n`).
    Resp,
}

/// One workload: the request, sent as is, and what answers it.
pub struct Spec {
    /// The bytes of one request.
    pub request: Vec<u8>,
    /// The bytes of the usual reply, for the fast path.
    pub expected: Vec<u8>,
    pub reply: Reply,
    pub pipeline: usize,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Latencies (ns) of the replies that arrived inside the window.
    pub hist: Histogram,
    /// Replies inside the window.
    pub ops: u64,
    /// Of those, `exit` frames with a non-zero code or a signal.
    pub failed: u64,
    /// Every reply, warm-up and drain included.
    pub replies: u64,
}

struct Conn {
    sock: Sock,
    /// Bytes of a reply that has not arrived whole (at most a header).
    carry: Vec<u8>,
    /// Body bytes of the current frame still to skip.
    body_left: u64,
    /// Offset into the request of the next byte to send.
    wpos: usize,
    /// Bytes queued but not yet sent.
    wpend: usize,
    /// Send times of the requests in flight, oldest first.
    sent: VecDeque<Instant>,
}

/// Scans replies at the front of `buf`. Returns (bytes used, replies, failed).
#[inline]
fn scan(kind: Reply, expected: &[u8], buf: &[u8], body_left: &mut u64) -> Result<(usize, u32, u32), String> {
    let (mut p, mut done, mut failed) = (0usize, 0u32, 0u32);
    loop {
        if *body_left > 0 {
            let n = (*body_left).min((buf.len() - p) as u64);
            *body_left -= n;
            p += n as usize;
            if *body_left > 0 {
                break;
            }
        }
        let rest = &buf[p..];
        if rest.starts_with(expected) {
            p += expected.len();
            done += 1;
            continue;
        }
        if kind == Reply::Resp {
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > 64 * 1024 {
                    return Err("the server sent a RESP line longer than 64 KiB".into());
                }
                break;
            };
            match rest[0] {
                b'+' => {
                    p += end + 2;
                    done += 1;
                }
                _ => return Err(format!("the server answered {:?}", String::from_utf8_lossy(&rest[..end]))),
            }
            continue;
        }
        let Some((head, h, used)) = next_header(rest)? else { break };
        match (kind, head.kind.as_ref()) {
            (Reply::Pong, "pong") => done += 1,
            (Reply::Exit, "stdout" | "stderr") => {}
            (Reply::Exit, "exit") => {
                let msg::Reply::Exit { code, signal } = net::reply(h)? else { unreachable!("an exit header") };
                done += 1;
                if code != Some(0) || signal.is_some() {
                    failed += 1;
                }
            }
            (_, "error") => return Err(format!("the server answered {}", error_text(h))),
            (_, other) => return Err(format!("unexpected {other} frame from the server")),
        }
        *body_left = head.size;
        p += used;
    }
    Ok((p, done, failed))
}

/// Runs the closed loop on `socks` (registered in `poll` as `Token(index)`)
/// until `window.to`, then drains for at most `window.drain`.
pub fn run(poll: &mut Poll, socks: Vec<Sock>, spec: &Spec, window: Window) -> Result<Outcome, String> {
    let len = spec.request.len();
    let depth = spec.pipeline.max(1);
    let batch: Vec<u8> = spec.request.repeat(depth + 1);
    let mut conns: Vec<Conn> = socks
        .into_iter()
        .map(|sock| Conn {
            sock,
            carry: Vec::with_capacity(512),
            body_left: 0,
            wpos: 0,
            wpend: 0,
            sent: VecDeque::with_capacity(depth),
        })
        .collect();
    let mut out = Outcome::default();
    let mut scratch = vec![0u8; 256 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut stopping = false;
    let mut in_flight = 0usize;
    let mut last_progress = Instant::now();

    let start = Instant::now();
    for (i, c) in conns.iter_mut().enumerate() {
        for _ in 0..depth {
            c.sent.push_back(start);
        }
        c.wpend = depth * len;
        in_flight += depth;
        flush(c, &batch, len).map_err(|e| format!("connection {}: {e}", i + 1))?;
    }

    loop {
        let now = Instant::now();
        if !stopping && now >= window.to {
            stopping = true;
        }
        if stopping && (in_flight == 0 || now >= window.to + window.drain) {
            break;
        }
        if in_flight > 0 && now.duration_since(last_progress) > window.stall {
            return Err(format!(
                "no reply for {:.1} s with {in_flight} requests in flight",
                window.stall.as_secs_f64()
            ));
        }
        let wake = if stopping { window.to + window.drain } else { window.to };
        let timeout = wake.saturating_duration_since(now).min(Duration::from_millis(100));
        net::poll_events(poll, &mut events, timeout)?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            let ctx = |e: String| format!("connection {}: {e}", i + 1);
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                // Bytes carried over from the last read go in front of the new ones.
                let mut have = c.carry.len();
                scratch[..have].copy_from_slice(&c.carry);
                c.carry.clear();
                // A short read emptied the socket, and new bytes will raise a new
                // edge, so one read per event saves the read that would say
                // WouldBlock. Not when the event says the peer closed or failed.
                let to_the_end = ev.is_read_closed() || ev.is_error();
                loop {
                    let room = scratch.len() - have;
                    match c.sock.read(&mut scratch[have..]) {
                        Ok(0) => return Err(ctx("the server closed the connection".into())),
                        Ok(n) => {
                            let now = Instant::now();
                            let total = have + n;
                            let (used, done, failed) =
                                scan(spec.reply, &spec.expected, &scratch[..total], &mut c.body_left).map_err(ctx)?;
                            scratch.copy_within(used..total, 0);
                            have = total - used;
                            if done > 0 {
                                last_progress = now;
                            }
                            let counted = now >= window.from && now < window.to;
                            for _ in 0..done {
                                let Some(t) = c.sent.pop_front() else {
                                    return Err(ctx("a reply to a request that was not sent".into()));
                                };
                                out.replies += 1;
                                if counted {
                                    out.hist.record(now.duration_since(t).as_nanos() as u64);
                                    out.ops += 1;
                                }
                                if stopping {
                                    in_flight -= 1;
                                } else {
                                    c.sent.push_back(now);
                                    c.wpend += len;
                                }
                            }
                            if counted {
                                out.failed += failed as u64;
                            }
                            if n < room && !to_the_end {
                                break;
                            }
                        }
                        Err(e) if is_would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ctx(format!("read: {e}"))),
                    }
                }
                c.carry.extend_from_slice(&scratch[..have]);
            }
            flush(c, &batch, len).map_err(|e| format!("connection {}: {e}", i + 1))?;
        }
    }
    Ok(out)
}

/// Sends what is queued, up to WouldBlock.
#[inline]
fn flush(c: &mut Conn, batch: &[u8], len: usize) -> Result<(), String> {
    // TLS: ciphertext a full socket left queued goes first.
    c.sock.flush_pending().map_err(|e| format!("write: {e}"))?;
    while c.wpend > 0 {
        match c.sock.write(&batch[c.wpos..c.wpos + c.wpend]) {
            Ok(n) => {
                c.wpend -= n;
                c.wpos = (c.wpos + n) % len;
            }
            Err(e) if is_would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    Ok(())
}

/// What `exec` runs.
#[derive(Clone, Debug)]
pub enum ExecCommand {
    Argv(Vec<String>),
    Shell(String),
}

/// Ping or exec: `connections` split over `threads`, each thread with its own
/// poll, opened in parallel, then the closed loop for warm-up + duration.
pub fn measure(common: &Common, pipeline: usize, exec: Option<&ExecCommand>) -> Result<Report, String> {
    let (spec, mode) = match (&common.proto, exec) {
        (Proto::Resp, None) => (
            Spec { request: b"PING\r\n".to_vec(), expected: b"+PONG\r\n".to_vec(), reply: Reply::Resp, pipeline },
            "ping",
        ),
        (Proto::Resp, Some(_)) => return Err("exec speaks ferry only (--resp is for ping and idle)".into()),
        (Proto::Ferry(_), None) => (
            Spec {
                request: net::frame(msg::request::ping()),
                expected: net::frame(msg::pong(None)),
                reply: Reply::Pong,
                pipeline,
            },
            "ping",
        ),
        (Proto::Ferry(_), Some(cmd)) => {
            let command = match cmd {
                ExecCommand::Argv(a) => msg::Command::Argv(a.clone()),
                ExecCommand::Shell(s) => msg::Command::Shell(s.clone()),
            };
            let req = msg::Exec { command, env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None };
            (
                Spec {
                    request: net::frame(msg::request::exec(&req)),
                    expected: net::frame(msg::exit(Some(0), None, None)),
                    reply: Reply::Exit,
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
        handles.push(std::thread::spawn(move || -> Result<Option<Outcome>, String> {
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
            run(&mut poll, socks, &spec, common.window(start)).map(Some)
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
    let mut total = Outcome::default();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame;
    use ferry::proto::msg;

    #[test]
    fn scan_counts_pongs_across_splits_and_skips_bodies() {
        let pong = frame(msg::pong(None));
        let mut stream = pong.repeat(3);
        let mut left = 0;
        assert_eq!(scan(Reply::Pong, &pong, &stream, &mut left).unwrap(), (stream.len(), 3, 0));
        let cut = stream.len() - 5;
        assert_eq!(scan(Reply::Pong, &pong, &stream[..cut], &mut left).unwrap(), (pong.len() * 2, 2, 0));

        let exit0 = frame(msg::exit(Some(0), None, None));
        stream.clear();
        let mut out = Vec::new();
        ferry::proto::encode_frame(&mut out, msg::output(msg::Stream::Stdout, None), b"hello world");
        stream.extend_from_slice(&out);
        stream.extend_from_slice(&exit0);
        stream.extend_from_slice(&frame(msg::exit(Some(3), None, None)));
        // A cut inside the stdout body: the rest of the body is skipped next time.
        let (used, done, _) = scan(Reply::Exit, &exit0, &stream[..out.len() - 4], &mut left).unwrap();
        assert_eq!((used, done, left), (out.len() - 4, 0, 4));
        let (used, done, failed) = scan(Reply::Exit, &exit0, &stream[out.len() - 4..], &mut left).unwrap();
        assert_eq!((used, done, failed, left), (stream.len() - out.len() + 4, 2, 1, 0));

        let err = frame(msg::error(&ferry::proto::ProtoError::new(ferry::proto::ErrorCode::ExecDisabled, "no"), None));
        assert!(scan(Reply::Exit, &exit0, &err, &mut left).unwrap_err().contains("exec-disabled: no"));
    }

    #[test]
    fn scan_reads_resp_lines() {
        let mut left = 0;
        assert_eq!(scan(Reply::Resp, b"+PONG\r\n", b"+PONG\r\n+PONG\r\n+OK\r\n+PO", &mut left).unwrap(), (19, 3, 0));
        assert!(scan(Reply::Resp, b"+PONG\r\n", b"-NOAUTH x\r\n", &mut left).unwrap_err().contains("NOAUTH"));
    }
}
