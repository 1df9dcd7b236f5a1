//! The `get` and `put` modes: transfers over already authenticated
//! connections, one transfer at a time per connection, all connections in
//! one event loop; `measure` opens them and reports throughput and CPU/GiB.
//!
//! A put sends its pre-encoded header, then the body: from a generated 1 MiB
//! block sent again and again, or with `sendfile(2)` from a file. As `ferry
//! put` does, to a server that announced digests the body is hashed as it
//! is sent, 256 KiB ahead of the socket (a file's chunk read once, hashed,
//! then sent from the page cache or, over TLS, from the buffer), and the
//! digest follows in a `trailer` frame; to an older server it goes in the
//! header, computed once before the runs. A get reads
//! the body into one scratch buffer and drops it, hashing it first when the
//! server sends a SHA-256 (as `ferry get` does), and checks the digest.

use crate::hist::Histogram;
use crate::net::{self, error_text, is_would_block, next_header, Proto};
use crate::report::{cpu_row, grouped, latency_json, latency_row, plural, push_notes, round3, Common, Report};
use crate::sys;
use ferry::proto::{encode_frame, encode_head};
use ferry::proto::frame::parse_header;
use ferry::proto::msg::{self, Digest};
use crate::sock::Sock;
use mio::{Events, Poll};
use serde_json::{json, Value};
use ferry::proto::digest::Hasher;
use ferry::proto::msg::request::PutDigest;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Size of the generated block a put's body repeats.
pub const BLOCK: usize = 1 << 20;

/// Deterministic, incompressible-looking bytes (xorshift64*).
pub fn pattern_block() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(BLOCK);
    while v.len() < BLOCK {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v
}

/// The digest (hex) of `size` bytes of `block` repeated.
pub fn pattern_digest(digest: Digest, block: &[u8], size: u64) -> String {
    let mut h = digest.hasher().expect("a digest");
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        h.update(&block[..n]);
        left -= n as u64;
    }
    h.hex()
}

/// The digest (hex) and size of a file.
pub fn file_digest(digest: Digest, file: &File) -> io::Result<(String, u64)> {
    let mut h = digest.hasher().expect("a digest");
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    let mut f = file;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.hex(), size))
}

/// Where a put's body comes from.
pub enum Source {
    Pattern(Vec<u8>),
    File(File),
}

pub enum Op {
    /// `header` is the encoded put frame head (its `size` is `size`);
    /// `trailer`: the digest to hash the body with as it is sent and send
    /// after it (None: the header has the digest, or there is none).
    Put { header: Vec<u8>, size: u64, source: Source, trailer: Option<Digest> },
    /// `request` is the encoded get frame; `verify`: the digest to hash the
    /// body with and check `done` against (none: no check).
    Get { request: Vec<u8>, verify: Digest },
}

/// How many transfers each connection runs once the warm-up is over.
#[derive(Clone, Copy, Debug)]
pub enum Amount {
    /// Exactly this many per connection.
    Count(u64),
    /// As many as start within this time (at least one each).
    For(Duration),
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Durations (ns) of the measured transfers.
    pub hist: Histogram,
    pub transfers: u64,
    pub bytes: u64,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Our CPU time during the measured phase.
    pub client_cpu: Duration,
    /// The server's, when its pid is known.
    pub server_cpu: Option<Duration>,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum State {
    /// Waiting for the next transfer to start.
    Idle,
    /// Sending the request (and for a put, its body).
    Sending,
    /// Waiting for / reading the answer.
    Answer,
}

struct Conn {
    sock: Sock,
    state: State,
    /// Bytes of the request head sent.
    head_sent: usize,
    /// Body bytes sent (put).
    body_sent: u64,
    /// Body bytes still to read (get).
    body_left: u64,
    /// Bytes of the `file` body (get) for the byte count.
    got: u64,
    carry: Vec<u8>,
    /// Get: the body's digest so far. Put with a trailer: of the bytes
    /// hashed ahead (`hashed`).
    hasher: Option<Hasher>,
    /// Put with a trailer: body bytes hashed so far (sent up to there).
    hashed: u64,
    /// A file's chunk read to be hashed (and, over TLS, sent from), and
    /// the body offset it starts at.
    chunk: Vec<u8>,
    chunk_at: u64,
    /// The encoded trailer frame once the body is sent, and how much of it went.
    tail: Vec<u8>,
    tail_sent: usize,
    started: Instant,
    measured: bool,
    done: u64,
}

/// Runs a warm-up for `warmup` (transfers that start in it are not counted),
/// then the measured phase. `server_pid` is sampled for CPU time at its edges.
pub fn run(
    poll: &mut Poll,
    socks: Vec<Sock>,
    op: &Op,
    warmup: Duration,
    amount: Amount,
    stall: Duration,
    server_pid: Option<u32>,
) -> Result<Outcome, String> {
    let mut conns: Vec<Conn> = socks
        .into_iter()
        .map(|sock| Conn {
            sock,
            state: State::Idle,
            head_sent: 0,
            body_sent: 0,
            body_left: 0,
            got: 0,
            carry: Vec::with_capacity(512),
            hasher: None,
            hashed: 0,
            chunk: Vec::new(),
            chunk_at: 0,
            tail: Vec::new(),
            tail_sent: 0,
            started: Instant::now(),
            measured: false,
            done: 0,
        })
        .collect();
    let mut scratch = vec![0u8; 1 << 20];
    let mut events = Events::with_capacity(1024);
    let mut out = Outcome::default();
    let warm_until = Instant::now() + warmup;
    let mut measuring = warmup.is_zero();
    let mut t0 = Instant::now();
    let mut cpu0 = (sys::self_cpu(), server_pid.and_then(sys::proc_cpu));
    let mut last_progress = Instant::now();

    loop {
        let now = Instant::now();
        // Start what may start.
        let mut busy = 0;
        for (i, c) in conns.iter_mut().enumerate() {
            if c.state == State::Idle {
                let go = if !measuring {
                    now < warm_until
                } else {
                    match amount {
                        Amount::Count(n) => c.done < n,
                        Amount::For(d) => c.done == 0 || now < t0 + d,
                    }
                };
                if go {
                    c.state = State::Sending;
                    c.head_sent = 0;
                    c.body_sent = 0;
                    c.got = 0;
                    c.hasher = None;
                    c.hashed = 0;
                    c.tail.clear();
                    c.tail_sent = 0;
                    c.started = now;
                    c.measured = measuring;
                    send(c, op).map_err(|e| format!("connection {}: {e}", i + 1))?;
                }
            }
            if c.state != State::Idle {
                busy += 1;
            }
        }
        if busy == 0 {
            if measuring {
                out.elapsed = now.duration_since(t0);
                out.client_cpu = sys::self_cpu().saturating_sub(cpu0.0);
                out.server_cpu = match (cpu0.1, server_pid.and_then(sys::proc_cpu)) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                    _ => None,
                };
                return Ok(out);
            }
            // The warm-up is over and every connection is idle: measure from here.
            measuring = true;
            t0 = Instant::now();
            cpu0 = (sys::self_cpu(), server_pid.and_then(sys::proc_cpu));
            continue;
        }
        if now.duration_since(last_progress) > stall {
            return Err(format!("no transfer progress for {:.1} s", stall.as_secs_f64()));
        }
        net::poll_events(poll, &mut events, Duration::from_millis(100))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            let ctx = |e: String| format!("connection {}: {e}", i + 1);
            c.sock.flush_pending().map_err(|e| ctx(format!("write: {e}")))?;
            if c.state == State::Sending {
                let before = (c.head_sent, c.body_sent);
                send(c, op).map_err(ctx)?;
                if (c.head_sent, c.body_sent) != before {
                    last_progress = Instant::now();
                }
            }
            // Answering may finish the transfer: the next one starts at the top of the loop.
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                && receive(c, op, &mut scratch, &mut out).map_err(ctx)?
            {
                last_progress = Instant::now();
            }
        }
    }
}

/// Sends as much of the request (and put body) as the socket takes.
fn send(c: &mut Conn, op: &Op) -> Result<(), String> {
    let (head, size, trailer) = match op {
        Op::Put { header, size, trailer, .. } => (header.as_slice(), *size, *trailer),
        Op::Get { request, .. } => (request.as_slice(), 0, None),
    };
    while c.head_sent < head.len() {
        match c.sock.write(&head[c.head_sent..]) {
            Ok(n) => c.head_sent += n,
            Err(e) if is_would_block(&e) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    while c.body_sent < size {
        let mut left = size - c.body_sent;
        if let (Some(d), Op::Put { source, .. }) = (trailer, op) {
            if c.hashed == c.body_sent {
                hash_ahead(c, source, d, size)?;
            }
            left = c.hashed - c.body_sent;
        }
        let r = match op {
            Op::Put { source: Source::Pattern(block), .. } => {
                let off = (c.body_sent % block.len() as u64) as usize;
                let n = (block.len() - off).min(left as usize);
                c.sock.write(&block[off..off + n])
            }
            Op::Put { source: Source::File(_), .. } if c.sock.is_tls() && trailer.is_some() => {
                // The chunk just hashed, encrypted from the buffer.
                let from = (c.body_sent - c.chunk_at) as usize;
                c.sock.write(&c.chunk[from..from + left as usize])
            }
            Op::Put { source: Source::File(f), .. } if c.sock.is_tls() => {
                // Userspace TLS cannot sendfile: read and encrypt 64 KiB at a time.
                use std::os::unix::fs::FileExt;
                let mut chunk = [0u8; 64 * 1024];
                let want = left.min(chunk.len() as u64) as usize;
                match f.read_at(&mut chunk[..want], c.body_sent) {
                    Ok(0) => return Err("the file is shorter than it was".into()),
                    Ok(n) => c.sock.write(&chunk[..n]),
                    Err(e) => Err(e),
                }
            }
            Op::Put { source: Source::File(f), .. } => {
                let mut off = c.body_sent as libc::off_t;
                let n = left.min(1 << 30) as usize;
                // SAFETY: both descriptors are open; sendfile updates `off`.
                let r = unsafe { libc::sendfile(c.sock.tcp.as_raw_fd(), f.as_raw_fd(), &mut off, n) };
                match r {
                    0 => return Err("the file is shorter than it was".into()),
                    r if r > 0 => Ok(r as usize),
                    _ => Err(io::Error::last_os_error()),
                }
            }
            Op::Get { .. } => unreachable!("a get has no body"),
        };
        match r {
            Ok(n) => c.body_sent += n as u64,
            Err(e) if is_would_block(&e) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    if let Some(d) = trailer {
        if c.tail.is_empty() {
            let h = c.hasher.take().unwrap_or_else(|| d.hasher().expect("a digest"));
            encode_frame(&mut c.tail, msg::request::trailer(d, &h.hex()), b"");
        }
        while c.tail_sent < c.tail.len() {
            match c.sock.write(&c.tail[c.tail_sent..]) {
                Ok(n) => c.tail_sent += n,
                Err(e) if is_would_block(&e) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
    }
    c.state = State::Answer;
    Ok(())
}

/// How far a put with a trailer hashes ahead of the socket: `ferry put`'s
/// chunk (`HASH_SEND_CHUNK`).
const HASH_AHEAD: u64 = 256 * 1024;

/// Hashes the next chunk of a put's body (a file's read into `c.chunk`),
/// as `ferry put` does before it sends it.
fn hash_ahead(c: &mut Conn, source: &Source, digest: Digest, size: u64) -> Result<(), String> {
    let want = (size - c.hashed).min(HASH_AHEAD);
    let h = c.hasher.get_or_insert_with(|| digest.hasher().expect("a digest"));
    match source {
        Source::Pattern(block) => {
            // The block is a whole number of chunks: a chunk never wraps.
            let off = (c.hashed % block.len() as u64) as usize;
            let n = (block.len() - off).min(want as usize);
            h.update(&block[off..off + n]);
            c.hashed += n as u64;
        }
        Source::File(f) => {
            use std::os::unix::fs::FileExt;
            c.chunk.resize(want as usize, 0);
            let n = loop {
                match f.read_at(&mut c.chunk, c.hashed) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("reading the file: {e}")),
                    Ok(0) => return Err("the file is shorter than it was".into()),
                    Ok(n) => break n,
                }
            };
            c.chunk.truncate(n);
            h.update(&c.chunk);
            c.chunk_at = c.hashed;
            c.hashed += n as u64;
        }
    }
    Ok(())
}

/// Reads whatever the server sent. True if bytes arrived.
fn receive(c: &mut Conn, op: &Op, scratch: &mut [u8], out: &mut Outcome) -> Result<bool, String> {
    let mut have = c.carry.len();
    scratch[..have].copy_from_slice(&c.carry);
    c.carry.clear();
    let mut moved = false;
    loop {
        match c.sock.read(&mut scratch[have..]) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => {
                moved = true;
                let total = have + n;
                let used = frames(c, op, &scratch[..total], out)?;
                scratch.copy_within(used..total, 0);
                have = total - used;
            }
            Err(e) if is_would_block(&e) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    c.carry.extend_from_slice(&scratch[..have]);
    Ok(moved)
}

fn finish(c: &mut Conn, out: &mut Outcome, bytes: u64) {
    c.state = State::Idle;
    if c.measured {
        c.done += 1;
        out.transfers += 1;
        out.bytes += bytes;
        out.hist.record(c.started.elapsed().as_nanos() as u64);
    }
}

/// Handles the frames (and get body bytes) at the front of `buf`.
fn frames(c: &mut Conn, op: &Op, buf: &[u8], out: &mut Outcome) -> Result<usize, String> {
    let mut p = 0;
    loop {
        if c.body_left > 0 {
            let n = c.body_left.min((buf.len() - p) as u64) as usize;
            if let Op::Get { verify, .. } = op {
                if *verify != Digest::None {
                    c.hasher.get_or_insert_with(|| verify.hasher().expect("a digest")).update(&buf[p..p + n]);
                }
            }
            c.body_left -= n as u64;
            p += n;
            if c.body_left > 0 {
                return Ok(p);
            }
        }
        let Some((head, h, used)) = next_header(&buf[p..])? else { return Ok(p) };
        match (op, head.kind.as_ref()) {
            (_, "error") => return Err(format!("the server answered {}", error_text(h))),
            (Op::Put { size, .. }, "ok") if c.state == State::Answer => finish(c, out, *size),
            (Op::Get { .. }, "file") if c.state == State::Answer => {
                c.body_left = head.size;
                c.got = head.size;
            }
            (Op::Get { verify, .. }, "done") if c.state == State::Answer => {
                if *verify != Digest::None {
                    let done = parse_header(h).map_err(|e| format!("bad done frame: {e}"))?;
                    let theirs = done.str(verify.as_str());
                    let ours = c.hasher.take().map(|h| h.hex()).unwrap_or_default();
                    if theirs != Some(ours.as_str()) {
                        return Err(format!("digest mismatch: the server says {theirs:?}, the bytes hash to {ours}"));
                    }
                }
                let got = c.got;
                finish(c, out, got);
            }
            (_, kind) => return Err(format!("unexpected {kind} frame from the server")),
        }
        p += used;
    }
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

/// A put of `size` bytes at `path`: the digest in a trailer (`trailer`,
/// hashed as it is sent) or in the header (hashed once, here).
fn put_op(path: &str, size: u64, digest: Digest, file: Option<std::fs::File>, trailer: bool) -> Result<Op, String> {
    if trailer && digest != Digest::None {
        let source = match file {
            Some(f) => Source::File(f),
            None => Source::Pattern(pattern_block()),
        };
        let mut header = Vec::new();
        encode_head(&mut header, msg::request::put(path, None, PutDigest::Trailer(digest), false), size);
        return Ok(Op::Put { header, size, source, trailer: Some(digest) });
    }
    let (source, hex) = match file {
        Some(f) => {
            let hex = if digest != Digest::None {
                Some(file_digest(digest, &f).map_err(|e| format!("reading the file: {e}"))?.0)
            } else {
                None
            };
            (Source::File(f), hex)
        }
        None => {
            let block = pattern_block();
            let hex = (digest != Digest::None).then(|| pattern_digest(digest, &block, size));
            (Source::Pattern(block), hex)
        }
    };
    let how = match &hex {
        Some(h) => PutDigest::Header(digest, h),
        None => PutDigest::None,
    };
    let mut header = Vec::new();
    encode_head(&mut header, msg::request::put(path, None, how, false), size);
    Ok(Op::Put { header, size, source, trailer: None })
}

/// Whether a put's digest goes in a trailer: the server announced digests
/// (as `ferry put` decides). A digest it does not offer is refused here.
fn digest_in_trailer(socks: &[Sock], digest: Digest) -> Result<bool, String> {
    match socks.first().and_then(|s| s.digests.as_deref()) {
        None => Ok(false),
        Some(offered) if digest == Digest::None || offered.contains(&digest) => Ok(true),
        Some(_) => Err(format!("the server does not offer the {} digest", digest.as_str())),
    }
}

/// Get or put: `connections` transfers at a time, one thread.
pub fn measure(common: &Common, t: &Transfer) -> Result<Report, String> {
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
        (Some((size, file)), Some(size), label)
    } else {
        if let Some(size) = t.size {
            // Store the file to fetch first, on a connection of its own (not measured).
            let (mut poll, socks) = net::open(common.addr, &common.proto, 1, common.setup(false))?;
            let op = put_op(&t.path, size, Digest::Sha256, None, false)?;
            run(&mut poll, socks, &op, Duration::ZERO, Amount::Count(1), common.timeout, None)
                .map_err(|e| format!("storing the file to get: {e}"))?;
        }
        (None, t.size, String::new())
    };
    let t_setup = Instant::now();
    let (mut poll, socks) = net::open(common.addr, &common.proto, common.connections, common.setup(false))?;
    let setup = t_setup.elapsed();
    let trailer = t.put && digest_in_trailer(&socks, t.digest)?;
    let op = match op {
        Some((size, file)) => put_op(&t.path, size, t.digest, file, trailer)?,
        None => Op::Get { request: net::frame(msg::request::get(&t.path, 0, t.digest)), verify: t.digest },
    };
    let amount = match t.count {
        Some(n) => Amount::Count(n.max(1)),
        None => Amount::For(common.duration),
    };
    let o = run(&mut poll, socks, &op, common.warmup, amount, common.timeout, common.server_pid)?;
    let mode = if t.put { "put" } else { "get" };
    let secs = o.elapsed.as_secs_f64().max(1e-9);
    let gibs = o.bytes as f64 / gib;
    let per_gib = |d: Duration| if gibs > 0.0 { Some(round3(d.as_secs_f64() / gibs)) } else { None };
    let size = size_label.or_else(|| (o.transfers > 0).then(|| o.bytes / o.transfers));
    let mut m = common.base(mode);
    m.insert("path".into(), json!(t.path));
    m.insert("size_bytes".into(), json!(size));
    m.insert("digest".into(), json!(t.digest.as_str()));
    if t.put && t.digest != Digest::None {
        m.insert("digest_in".into(), json!(if trailer { "trailer" } else { "header" }));
    }
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
    if t.put && t.digest != Digest::None && !trailer {
        notes.push(format!("the put's {} (in the header: the server announced no digests) is computed once before the run; the server hashes every put", t.digest.as_str()));
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
        t.digest.as_str()
    );
    Ok(Report { json: Value::Object(m), title, rows })
}
