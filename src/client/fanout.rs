//! Fan-out: `ferry run|ping|put|get -H HOSTS`, one `mio` event loop driving
//! a small non-blocking state machine per host (connect, handshake with
//! `proto::auth`, the request, its reply frames). No thread per host.
//!
//! At most `fanout` hosts are connecting or authenticating at once; a host
//! whose request has been sent no longer counts, so a command that hangs on
//! some hosts never holds up the others. Each host has its own deadlines:
//! the handshake (`-w`, else 30 s) and, with `-w`, the time without a byte
//! from it; a host past its deadline is dropped (the server ends a command
//! whose client went away) and the others go on.
//!
//! Output (for `run`): each complete line is written as `HOST: line` as it
//! arrives, a host's stdout to stdout and its stderr to stderr, buffered per
//! host and stream until its newline, so no line ever mixes two hosts; what
//! is left without a newline when the command ends is written with one.
//! `gather` prints each distinct stdout once under the hosts that produced
//! it (stderr still streams with prefixes); `json` prints one object per
//! host as it finishes. A summary goes to stderr at the end.
//!
//! Exit status: 0 when every host succeeded; 255 when any host could not
//! be reached, authenticated, timed out or failed in the protocol; else the
//! largest status of the hosts (the remote status for `run`, 128 + signal,
//! 127 spawn-failed, 1 for a file error, 130 for a host the interrupt kept
//! from running).

use super::exit::{self, FERRY_ERROR as EXIT_FERRY_ERROR};
use super::finish::{hash_reader, part_path, Part};
use super::hosts::Host;
use super::{command_of, io_text, resolve_addrs, Options};
use crate::proto::auth::{self, Key};
use crate::proto::frame::Header;
use crate::proto::msg::{self, Digest, ErrorCode, Exec, ProtoError, Reply, SignalName};
use crate::proto::{encode_frame, encode_head, Decoder, Item};
use encoding_rs::Encoding;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Hosts connecting and authenticating at once, by default.
pub const DEFAULT_FANOUT: usize = 64;
/// The handshake's bound without `-w`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A line longer than this without a newline is written as a line of its own.
const MAX_LINE: usize = 64 * 1024;
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);

/// What every host is asked to do.
pub enum Op {
    Run { command: Vec<String> },
    Ping { count: u32, interval: Duration },
    /// One local file, hashed once here, sent to every host from the page cache.
    Put { file: File, size: u64, sha256: String, mode: u32, name: String, remote: Option<String> },
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

/// How one host ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// A `run` whose command ended.
    Exited { code: Option<i32>, signal: Option<i32> },
    /// A ping, put or get that worked.
    Done,
    /// The remote program could not start (127).
    SpawnFailed(String),
    /// A file error, remote or local (1).
    FileError(String),
    Unreachable(String),
    AuthFailed(String),
    TimedOut(String),
    /// The protocol, the connection lost, a server error.
    Error(String),
    /// The interrupt came before the request was sent.
    Cancelled,
}

impl Outcome {
    fn status(&self) -> i32 {
        match self {
            Outcome::Exited { code: Some(c), .. } => *c,
            Outcome::Exited { code: None, signal: Some(s) } => 128 + s,
            Outcome::Exited { .. } => EXIT_FERRY_ERROR,
            Outcome::Done => 0,
            Outcome::SpawnFailed(_) => exit::SPAWN_FAILED,
            Outcome::FileError(_) => 1,
            Outcome::Cancelled => 128 + libc::SIGINT,
            Outcome::Unreachable(_) | Outcome::AuthFailed(_) | Outcome::TimedOut(_) | Outcome::Error(_) => {
                EXIT_FERRY_ERROR
            }
        }
    }

    /// The summary category and JSON `status`.
    fn category(&self) -> &'static str {
        match self {
            _ if self.status() == 0 => "ok",
            Outcome::Exited { .. } | Outcome::SpawnFailed(_) | Outcome::FileError(_) => "failed",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::AuthFailed(_) => "auth-failed",
            Outcome::TimedOut(_) => "timed-out",
            Outcome::Error(_) => "error",
            Outcome::Cancelled => "interrupted",
            Outcome::Done => "ok",
        }
    }

    /// Why, for the summary line and JSON `error`.
    fn why(&self) -> Option<String> {
        match self {
            Outcome::Exited { code: Some(0), .. } | Outcome::Done => None,
            Outcome::Exited { code: Some(c), .. } => Some(format!("exit {c}")),
            Outcome::Exited { signal: Some(s), .. } => Some(format!("signal {s}")),
            Outcome::Exited { .. } => Some("no status".into()),
            Outcome::SpawnFailed(m)
            | Outcome::FileError(m)
            | Outcome::Unreachable(m)
            | Outcome::AuthFailed(m)
            | Outcome::TimedOut(m)
            | Outcome::Error(m) => Some(m.clone()),
            Outcome::Cancelled => Some("interrupted before it ran".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    Hello,
    Welcome,
    /// `put`: the stat that says whether REMOTE is a directory.
    Stat,
    /// The request is sent; its replies are read.
    Request,
}

/// Where the current frame's body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Skip,
    Stdout,
    Stderr,
    File,
}

struct GetFile {
    part: Part,
    dest: PathBuf,
    mode: Option<u32>,
    mtime: Option<i64>,
}

struct Conn {
    sock: TcpStream,
    addrs: Vec<SocketAddr>,
    phase: Phase,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    dec: Decoder,
    sink: Sink,
    server_nonce: String,
    client_nonce: String,
    /// A `put` body still to send with sendfile: (offset, end).
    sendfile: Option<(u64, u64)>,
    last_io: Instant,
}

struct Slot {
    host: Host,
    conn: Option<Conn>,
    started: Option<Instant>,
    finished: Option<Instant>,
    outcome: Option<Outcome>,
    holds_slot: bool,
    /// Pending partial lines (stream), or everything (gather, json).
    out: Vec<u8>,
    err: Vec<u8>,
    decoders: Option<(encoding_rs::Decoder, encoding_rs::Decoder)>,
    rtts: Vec<f64>,
    ping_sent: Option<Instant>,
    ping_next: Option<Instant>,
    get: Option<GetFile>,
    put_path: String,
}

struct Fan<'a> {
    slots: Vec<Slot>,
    poll: Poll,
    key: &'a Key,
    opts: &'a Options,
    op: &'a Op,
    plan: &'a Plan,
    stdout: io::BufWriter<io::Stdout>,
    stdout_broken: bool,
    connecting: usize,
    interrupted: u32,
}

/// Raises the soft limit on open files to the hard one: a socket per host.
fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A server's error reply as a host's outcome.
fn server_error(e: &ProtoError) -> Outcome {
    Outcome::Error(format!("server error {e}"))
}

impl<'a> Fan<'a> {
    fn new(plan: &'a Plan, op: &'a Op, key: &'a Key, opts: &'a Options) -> io::Result<Fan<'a>> {
        let slots = plan
            .hosts
            .iter()
            .map(|h| Slot {
                host: h.clone(),
                conn: None,
                started: None,
                finished: None,
                outcome: None,
                holds_slot: false,
                out: Vec::new(),
                err: Vec::new(),
                decoders: plan.encoding.map(|e| (e.new_decoder_with_bom_removal(), e.new_decoder_with_bom_removal())),
                rtts: Vec::new(),
                ping_sent: None,
                ping_next: None,
                get: None,
                put_path: String::new(),
            })
            .collect();
        Ok(Fan {
            slots,
            poll: Poll::new()?,
            key,
            opts,
            op,
            plan,
            stdout: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            stdout_broken: false,
            connecting: 0,
            interrupted: 0,
        })
    }

    fn write_stdout(&mut self, bytes: &[u8]) {
        if self.stdout_broken {
            return;
        }
        if self.stdout.write_all(bytes).is_err() {
            self.stdout_broken = true;
        }
    }

    fn write_stderr(&mut self, bytes: &[u8]) {
        let _ = self.stdout.flush();
        let _ = io::stderr().lock().write_all(bytes);
    }

    /// Starts connecting host `i`. False when out of file descriptors (the
    /// host stays queued).
    fn start(&mut self, i: usize) -> bool {
        let now = Instant::now();
        let slot = &mut self.slots[i];
        slot.started.get_or_insert(now);
        let addrs = match resolve_addrs(&slot.host.target, self.opts.family) {
            Ok(a) => a,
            Err(e) => {
                self.finish(i, Outcome::Unreachable(e));
                return true;
            }
        };
        self.connect_next(i, addrs, None)
    }

    /// Tries the next address of host `i`; `last` is why the previous failed.
    fn connect_next(&mut self, i: usize, mut addrs: Vec<SocketAddr>, last: Option<io::Error>) -> bool {
        if let Some(c) = self.slots[i].conn.take() {
            let mut sock = c.sock;
            let _ = self.poll.registry().deregister(&mut sock);
        }
        if addrs.is_empty() {
            let target = &self.slots[i].host.target;
            let why = last.map_or("no address".to_string(), |e| io_text(&e));
            self.finish(i, Outcome::Unreachable(format!("cannot connect to {target}: {why}")));
            return true;
        }
        let addr = addrs.remove(0);
        let mut sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
                addrs.insert(0, addr);
                if self.connecting == 0 && self.slots.iter().all(|s| s.conn.is_none()) {
                    self.finish(i, Outcome::Error(format!("cannot open a socket: {}", io_text(&e))));
                    return true;
                }
                return false;
            }
            Err(e) => return self.connect_next(i, addrs, Some(e)),
        };
        if let Err(e) = self.poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE) {
            return self.connect_next(i, addrs, Some(e));
        }
        if !self.slots[i].holds_slot {
            self.slots[i].holds_slot = true;
            self.connecting += 1;
        }
        self.slots[i].conn = Some(Conn {
            sock,
            addrs,
            phase: Phase::Connect,
            inbuf: Vec::new(),
            out: Vec::new(),
            dec: Decoder::default(),
            sink: Sink::Skip,
            server_nonce: String::new(),
            client_nonce: String::new(),
            sendfile: None,
            last_io: Instant::now(),
        });
        true
    }

    fn release_slot(&mut self, i: usize) {
        if self.slots[i].holds_slot {
            self.slots[i].holds_slot = false;
            self.connecting -= 1;
        }
    }

    /// Host `i` is over: close its connection, flush its partial lines, and
    /// print its JSON object.
    fn finish(&mut self, i: usize, outcome: Outcome) {
        if self.slots[i].outcome.is_some() {
            return;
        }
        self.release_slot(i);
        if let Some(c) = self.slots[i].conn.take() {
            let mut sock = c.sock;
            let _ = self.poll.registry().deregister(&mut sock);
        }
        if let Some(g) = self.slots[i].get.take() {
            // A get cut short keeps no .part: there is no -c with -H.
            g.part.discard();
        }
        self.flush_decoders(i);
        let slot = &mut self.slots[i];
        slot.finished = Some(Instant::now());
        slot.outcome = Some(outcome);
        match self.plan.mode {
            Mode::Stream => {
                for stream in [msg::Stream::Stdout, msg::Stream::Stderr] {
                    self.emit_lines(i, stream, true);
                }
            }
            Mode::Gather => self.emit_lines(i, msg::Stream::Stderr, true),
            Mode::Json => {
                let line = self.json_line(i);
                self.write_stdout(line.as_bytes());
            }
        }
    }

    fn json_line(&self, i: usize) -> String {
        let s = &self.slots[i];
        let o = s.outcome.as_ref().expect("finished");
        let (code, signal) = match o {
            Outcome::Exited { code, signal } => (json!(code), json!(signal)),
            Outcome::Done => (json!(0), Value::Null),
            Outcome::SpawnFailed(_) | Outcome::FileError(_) => (json!(o.status()), Value::Null),
            _ => (Value::Null, Value::Null),
        };
        let duration = match (s.started, s.finished) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let error = match o {
            Outcome::Exited { .. } | Outcome::Done => Value::Null,
            _ => json!(o.why()),
        };
        let mut v = json!({
            "host": s.host.name,
            "status": o.category(),
            "code": code,
            "signal": signal,
            "stdout": String::from_utf8_lossy(&s.out),
            "stderr": String::from_utf8_lossy(&s.err),
            "duration": (duration * 1e6).round() / 1e6,
            "error": error,
        });
        if matches!(self.op, Op::Ping { .. }) {
            v["rtt_ms"] = json!(s.rtts);
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }

    /// Writes the complete lines of host `i`'s `stream` buffer with its
    /// prefix; at the end (`all`) the rest too, with a newline.
    fn emit_lines(&mut self, i: usize, stream: msg::Stream, all: bool) {
        let slot = &mut self.slots[i];
        let buf = match stream {
            msg::Stream::Stdout => &mut slot.out,
            msg::Stream::Stderr => &mut slot.err,
        };
        let cut = match buf.iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if all || buf.len() >= MAX_LINE => buf.len(),
            None => 0,
        };
        let cut = if all { buf.len() } else { cut };
        if cut == 0 {
            return;
        }
        let prefix = format!("{}: ", slot.host.name);
        let mut text = Vec::with_capacity(cut + 16);
        for line in buf[..cut].split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(prefix.as_bytes());
            text.extend_from_slice(line);
            if line.last() != Some(&b'\n') {
                text.push(b'\n');
            }
        }
        buf.drain(..cut);
        match stream {
            msg::Stream::Stdout => self.write_stdout(&text),
            msg::Stream::Stderr => self.write_stderr(&text),
        }
    }

    /// Output bytes of host `i` (decoded when asked), then its complete lines.
    fn output(&mut self, i: usize, stream: msg::Stream, bytes: &[u8]) {
        let slot = &mut self.slots[i];
        let buf = match stream {
            msg::Stream::Stdout => &mut slot.out,
            msg::Stream::Stderr => &mut slot.err,
        };
        match &mut slot.decoders {
            Some((d_out, d_err)) => {
                let d = if stream == msg::Stream::Stdout { d_out } else { d_err };
                decode_into(d, bytes, false, buf);
            }
            None => buf.extend_from_slice(bytes),
        }
        let streams = match self.plan.mode {
            Mode::Stream => true,
            Mode::Gather => stream == msg::Stream::Stderr,
            Mode::Json => false,
        };
        if streams {
            self.emit_lines(i, stream, false);
        }
    }

    fn flush_decoders(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if let Some((d_out, d_err)) = &mut slot.decoders {
            decode_into(d_out, &[], true, &mut slot.out);
            decode_into(d_err, &[], true, &mut slot.err);
        }
    }

    fn trace(&self, i: usize, dir: &str, header: &Map<String, Value>) {
        if self.opts.trace {
            let mut h = header.clone();
            if h.contains_key("mac") {
                h.insert("mac".into(), Value::from("<redacted>"));
            }
            eprintln!("ferry: {}: {dir} {}", self.slots[i].host.name, Value::Object(h));
        }
    }

    /// Queues a frame for host `i` and writes what the socket takes.
    fn send(&mut self, i: usize, header: Map<String, Value>, body: &[u8]) {
        self.trace(i, ">", &header);
        if let Some(c) = &mut self.slots[i].conn {
            encode_frame(&mut c.out, header, body);
        }
        self.flush_out(i);
    }

    /// Writes what host `i` has queued, then any sendfile body; fails the
    /// host on a socket error.
    fn flush_out(&mut self, i: usize) {
        let Some(c) = &mut self.slots[i].conn else { return };
        let mut err = None;
        while !c.out.is_empty() {
            match c.sock.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                    c.last_io = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_none() {
            if let (Some((offset, end)), Op::Put { file, .. }) = (&mut c.sendfile, self.op) {
                while *offset < *end {
                    let want = (*end - *offset).min(1 << 30) as usize;
                    match rustix::fs::sendfile(&c.sock, file, Some(offset), want) {
                        Ok(0) => {
                            err = Some(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent"));
                            break;
                        }
                        Ok(_) => c.last_io = Instant::now(),
                        Err(rustix::io::Errno::AGAIN) => return,
                        Err(rustix::io::Errno::INTR) => {}
                        Err(e) => {
                            err = Some(e.into());
                            break;
                        }
                    }
                }
                if err.is_none() {
                    c.sendfile = None;
                }
            }
        }
        if let Some(e) = err {
            self.finish(i, Outcome::Error(format!("connection lost: {}", io_text(&e))));
        }
    }

    fn on_event(&mut self, i: usize, ev: &mio::event::Event) {
        let Some(c) = &mut self.slots[i].conn else { return };
        if c.phase == Phase::Connect {
            let err = match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) if ev.is_error() || ev.is_read_closed() => {
                    Some(io::Error::from(io::ErrorKind::ConnectionRefused))
                }
                Ok(None) => None,
            };
            if let Some(e) = err {
                let addrs = std::mem::take(&mut c.addrs);
                if !self.connect_next(i, addrs, Some(e)) {
                    // Out of descriptors: requeued by the caller's next round.
                    self.slots[i].conn = None;
                }
                return;
            }
            match c.sock.peer_addr() {
                Ok(_) => {
                    let _ = c.sock.set_nodelay(true);
                    c.phase = Phase::Hello;
                    c.last_io = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    let addrs = std::mem::take(&mut c.addrs);
                    self.connect_next(i, addrs, Some(e));
                    return;
                }
            }
        }
        if ev.is_writable() {
            self.flush_out(i);
        }
        self.read_all(i);
    }

    /// Reads what host `i` has sent and handles every frame in it.
    fn read_all(&mut self, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let Some(c) = &mut self.slots[i].conn else { return };
            match c.sock.read(&mut buf) {
                Ok(0) => {
                    self.handle_input(i);
                    let lost = match self.slots[i].conn.as_ref().map(|c| c.phase) {
                        Some(Phase::Hello | Phase::Connect) => "the server closed the connection before its hello",
                        Some(_) => "connection closed by the server",
                        None => return,
                    };
                    self.finish(i, Outcome::Error(lost.into()));
                    return;
                }
                Ok(n) => {
                    c.last_io = Instant::now();
                    c.inbuf.extend_from_slice(&buf[..n]);
                    self.handle_input(i);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.handle_input(i);
                    self.finish(i, Outcome::Error(format!("connection lost: {}", io_text(&e))));
                    return;
                }
            }
        }
    }

    /// Decodes the frames in host `i`'s input buffer.
    fn handle_input(&mut self, i: usize) {
        let Some(c) = &mut self.slots[i].conn else { return };
        let mut input = std::mem::take(&mut c.inbuf);
        let mut used = 0;
        loop {
            let Some(c) = &mut self.slots[i].conn else { return };
            let item = match c.dec.decode(&input[used..]) {
                Ok(Some((item, n))) => {
                    let start = used;
                    used += n;
                    match item {
                        Item::Header(h) => Ok(h),
                        Item::Body { range, .. } => Err((c.sink, start + range.start..start + range.end)),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.finish(i, Outcome::Error(format!("protocol error: {e}")));
                    return;
                }
            };
            match item {
                Ok(h) => self.on_frame(i, h),
                Err((sink, range)) => self.on_body(i, sink, &input[range]),
            }
            if self.slots[i].conn.is_none() {
                return;
            }
        }
        input.drain(..used);
        if let Some(c) = &mut self.slots[i].conn {
            c.inbuf = input;
        }
    }

    fn on_body(&mut self, i: usize, sink: Sink, bytes: &[u8]) {
        match sink {
            Sink::Skip => {}
            Sink::Stdout => self.output(i, msg::Stream::Stdout, bytes),
            Sink::Stderr => self.output(i, msg::Stream::Stderr, bytes),
            Sink::File => {
                let Some(g) = &mut self.slots[i].get else { return };
                if let Err(e) = g.part.out.write_all(bytes) {
                    let m = format!("{}: {}", g.part.path.display(), io_text(&e));
                    self.finish(i, Outcome::FileError(m));
                }
            }
        }
    }

    fn set_sink(&mut self, i: usize, h: &Header, sink: Sink) {
        if let Some(c) = &mut self.slots[i].conn {
            c.sink = if h.size > 0 { sink } else { Sink::Skip };
        }
    }

    fn on_frame(&mut self, i: usize, h: Header) {
        self.trace(i, "<", &h.fields);
        self.set_sink(i, &h, Sink::Skip);
        let phase = self.slots[i].conn.as_ref().map(|c| c.phase).expect("a connection");
        let reply = Reply::from_header(&h);
        match phase {
            Phase::Connect => {}
            Phase::Hello => self.on_hello(i, &h, reply),
            Phase::Welcome => self.on_welcome(i, reply),
            Phase::Stat => self.on_stat(i, &h, reply),
            Phase::Request => self.on_reply(i, &h, reply),
        }
    }

    fn on_hello(&mut self, i: usize, h: &Header, reply: Reply) {
        let nonce = match reply {
            Reply::Hello { nonce } if auth::is_nonce_hex(&nonce) => nonce,
            Reply::Hello { .. } => return self.finish(i, Outcome::Error("protocol error: hello without a valid nonce".into())),
            Reply::Error(e) => {
                return self.finish(i, server_error(&e))
            }
            _ => return self.finish(i, Outcome::Error(format!("protocol error: expected hello, got {:?}", h.kind))),
        };
        if h.fields.get("proto").and_then(Value::as_u64) != Some(msg::PROTO_VERSION) {
            let m = format!("protocol error: server speaks protocol {:?}, not 1", h.fields.get("proto"));
            return self.finish(i, Outcome::Error(m));
        }
        let client_nonce = auth::to_hex(&auth::fresh_nonce());
        let mac = auth::client_mac(self.key.secret.as_bytes(), &nonce, &client_nonce);
        let c = self.slots[i].conn.as_mut().expect("a connection");
        c.server_nonce = nonce;
        c.client_nonce = client_nonce.clone();
        c.phase = Phase::Welcome;
        self.send(i, msg::auth(&self.key.id, &client_nonce, &mac), &[]);
    }

    fn on_welcome(&mut self, i: usize, reply: Reply) {
        let c = self.slots[i].conn.as_ref().expect("a connection");
        let secret = self.key.secret.as_bytes();
        match reply {
            Reply::Welcome { mac } if auth::verify_server_mac(secret, &c.client_nonce, &c.server_nonce, &mac) => {}
            Reply::Welcome { .. } => {
                return self.finish(i, Outcome::AuthFailed("the server could not prove it knows the key".into()))
            }
            Reply::Error(e) if e.code == ErrorCode::AuthFailed => {
                return self.finish(i, Outcome::AuthFailed(format!("the server refused key {:?}", self.key.id)))
            }
            Reply::Error(e) => {
                return self.finish(i, server_error(&e))
            }
            _ => return self.finish(i, Outcome::Error("protocol error: expected welcome".into())),
        }
        if self.interrupted > 0 {
            return self.finish(i, Outcome::Cancelled);
        }
        self.release_slot(i);
        self.request(i);
    }

    /// Sends host `i` its request (authenticated, or after the put's stat).
    fn request(&mut self, i: usize) {
        self.slots[i].conn.as_mut().expect("a connection").phase = Phase::Request;
        match self.op {
            Op::Run { command } => {
                let req =
                    Exec { command: command_of(command), env: Default::default(), cwd: None, stdin: false, timeout: None };
                self.send(i, msg::request::exec(&req), &[]);
            }
            Op::Ping { .. } => {
                self.slots[i].ping_sent = Some(Instant::now());
                self.send(i, msg::request::ping(), &[]);
            }
            Op::Put { remote: Some(r), .. } if !r.ends_with('/') && self.slots[i].put_path.is_empty() => {
                self.slots[i].conn.as_mut().expect("a connection").phase = Phase::Stat;
                self.send(i, msg::request::stat(r), &[]);
            }
            Op::Put { size, sha256, mode, name, remote, .. } => {
                if self.slots[i].put_path.is_empty() {
                    self.slots[i].put_path = match remote {
                        None => name.clone(),
                        Some(r) => format!("{r}{name}"),
                    };
                }
                let header = msg::request::put(&self.slots[i].put_path, Some(*mode), Some(sha256), false);
                self.trace(i, ">", &header);
                let c = self.slots[i].conn.as_mut().expect("a connection");
                encode_head(&mut c.out, header, *size);
                c.sendfile = (*size > 0).then_some((0, *size));
                self.flush_out(i);
            }
            Op::Get { remote, .. } => self.send(i, msg::request::get(remote, 0, Digest::Sha256), &[]),
        }
    }

    fn on_stat(&mut self, i: usize, h: &Header, reply: Reply) {
        let Op::Put { name, remote: Some(r), .. } = self.op else { return };
        let is_dir = match reply {
            Reply::Error(e) if !e.code.is_fatal() => false,
            Reply::Error(e) => {
                return self.finish(i, server_error(&e))
            }
            _ => h.str("kind") == Some("dir"),
        };
        self.slots[i].put_path = match (is_dir, r.trim_end_matches('/')) {
            (false, _) => r.clone(),
            (true, ".") => name.clone(),
            (true, d) => format!("{d}/{name}"),
        };
        self.request(i);
    }

    /// Host `i`'s pong after `rtt` ms (TCP or datagram; `note` ends its
    /// line): recorded and printed; finishes the host after the last one.
    /// True when another ping is due.
    fn on_pong(&mut self, i: usize, rtt: f64, note: &str) -> bool {
        let Op::Ping { count, .. } = self.op else { unreachable!("a pong answers a ping") };
        let slot = &mut self.slots[i];
        slot.rtts.push(rtt);
        let seq = slot.rtts.len();
        if self.plan.mode != Mode::Json && !self.plan.quiet {
            let line = format!("{}: pong seq={seq} time={rtt:.3} ms{note}\n", slot.host.name);
            self.write_stdout(line.as_bytes());
        }
        if seq as u32 >= *count {
            self.finish(i, Outcome::Done);
            return false;
        }
        true
    }

    fn on_reply(&mut self, i: usize, h: &Header, reply: Reply) {
        match (self.op, reply) {
            (Op::Run { .. }, Reply::Output(s)) => {
                self.set_sink(i, h, if s == msg::Stream::Stdout { Sink::Stdout } else { Sink::Stderr })
            }
            (Op::Run { .. }, Reply::Exit { code, signal }) => self.finish(i, Outcome::Exited { code, signal }),
            (Op::Run { .. }, Reply::Error(e)) if e.code == ErrorCode::SpawnFailed => {
                self.finish(i, Outcome::SpawnFailed(e.message))
            }
            (Op::Ping { interval, .. }, Reply::Pong) => {
                let rtt = self.slots[i].ping_sent.take().map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
                if self.on_pong(i, rtt, "") {
                    self.slots[i].ping_next = Some(Instant::now() + *interval);
                }
            }
            (Op::Put { .. }, Reply::Other(k)) if k == "ok" => self.finish(i, Outcome::Done),
            (Op::Get { .. }, Reply::Other(k)) if k == "file" => self.on_get_file(i, h),
            (Op::Get { remote, .. }, Reply::Other(k)) if k == "done" => {
                let Some(g) = self.slots[i].get.take() else {
                    return self.finish(i, Outcome::Error("protocol error: done before file".into()));
                };
                let ours = g.part.out.sha256_hex();
                match h.str("sha256") {
                    Some(theirs) if theirs.eq_ignore_ascii_case(&ours) => {}
                    Some(theirs) => {
                        g.part.discard();
                        let m = format!("{remote}: digest mismatch: received sha256 {ours}, the server's {theirs}");
                        return self.finish(i, Outcome::FileError(m));
                    }
                    None => {
                        g.part.discard();
                        return self.finish(i, Outcome::Error("protocol error: done without sha256".into()));
                    }
                }
                match g.part.finish(&g.dest, g.mode, g.mtime) {
                    Ok(()) => self.finish(i, Outcome::Done),
                    Err(e) => self.finish(i, Outcome::FileError(format!("{}: {}", g.dest.display(), io_text(&e)))),
                }
            }
            (Op::Put { .. } | Op::Get { .. }, Reply::Error(e)) if !e.code.is_fatal() => {
                let m = if e.message.is_empty() { e.code.as_str().to_string() } else { e.message };
                self.finish(i, Outcome::FileError(m))
            }
            (_, Reply::Error(e)) => self.finish(i, server_error(&e)),
            _ => {}
        }
    }

    fn on_get_file(&mut self, i: usize, h: &Header) {
        let Op::Get { dir, name, .. } = self.op else { return };
        let host_dir = dir.join(&self.slots[i].host.name);
        let dest = host_dir.join(name);
        let part = match fs::create_dir_all(&host_dir).and_then(|()| Part::create(&dest)) {
            Ok(p) => p,
            Err(e) => {
                let m = format!("{}: {}", part_path(&dest).display(), io_text(&e));
                return self.finish(i, Outcome::FileError(m));
            }
        };
        self.slots[i].get = Some(GetFile {
            part,
            dest,
            mode: h.fields.get("mode").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok()),
            mtime: h.fields.get("mtime").and_then(Value::as_i64),
        });
        self.set_sink(i, h, Sink::File);
    }

    /// The first Ctrl-C: INT to every running command, nothing new starts;
    /// the second: every connection closed (the server ends what runs).
    fn interrupt(&mut self, sig: i32) {
        self.interrupted += 1;
        let run = matches!(self.op, Op::Run { .. });
        for i in 0..self.slots.len() {
            if self.slots[i].outcome.is_some() {
                continue;
            }
            let phase = self.slots[i].conn.as_ref().map(|c| c.phase);
            match phase {
                Some(Phase::Request) if run && self.interrupted == 1 => {
                    let name = if sig == libc::SIGTERM { SignalName::TERM } else { SignalName::INT };
                    self.send(i, msg::request::signal(name), &[]);
                }
                Some(Phase::Request | Phase::Stat) => {
                    self.finish(i, Outcome::Error(format!("interrupted (signal {sig}) while it ran")))
                }
                _ => self.finish(i, Outcome::Cancelled),
            }
        }
    }

    /// The earliest deadline of any host (handshake, idle, next ping).
    fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().filter_map(|s| self.deadline(s)).min()
    }

    fn deadline(&self, s: &Slot) -> Option<Instant> {
        let c = s.conn.as_ref()?;
        let t = match c.phase {
            Phase::Connect | Phase::Hello | Phase::Welcome => {
                Some(s.started? + self.opts.timeout.unwrap_or(HANDSHAKE_TIMEOUT))
            }
            _ => self.opts.timeout.map(|t| c.last_io + t),
        };
        match (t, s.ping_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn check_deadlines(&mut self) {
        let now = Instant::now();
        for i in 0..self.slots.len() {
            if let Some(next) = self.slots[i].ping_next {
                if next <= now {
                    self.slots[i].ping_next = None;
                    self.slots[i].ping_sent = Some(now);
                    if let Some(c) = &mut self.slots[i].conn {
                        c.last_io = now;
                    }
                    self.send(i, msg::request::ping(), &[]);
                }
            }
            let Some(c) = &self.slots[i].conn else { continue };
            let phase = c.phase;
            let Some(d) = self.deadline(&self.slots[i]) else { continue };
            if d > now {
                continue;
            }
            let secs = self.opts.timeout.unwrap_or(HANDSHAKE_TIMEOUT).as_secs_f64();
            let m = match phase {
                Phase::Connect => format!("cannot connect to {}: timed out after {secs} s", self.slots[i].host.target),
                Phase::Hello | Phase::Welcome => format!("no handshake in {secs} s"),
                _ => format!("nothing from the server for {secs} s"),
            };
            self.finish(i, Outcome::TimedOut(m));
        }
    }

    fn all_done(&self) -> bool {
        self.slots.iter().all(|s| s.outcome.is_some())
    }

    fn run(&mut self) -> io::Result<()> {
        let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
        self.poll.registry().register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        let mut queue: VecDeque<usize> = (0..self.slots.len()).collect();
        let mut events = Events::with_capacity(1024);
        while !self.all_done() {
            if self.interrupted > 0 {
                while let Some(i) = queue.pop_front() {
                    self.finish(i, Outcome::Cancelled);
                }
            }
            while self.connecting < self.plan.fanout.max(1) {
                let Some(i) = queue.pop_front() else { break };
                if !self.start(i) {
                    queue.push_front(i);
                    break;
                }
            }
            if self.all_done() {
                break;
            }
            let _ = self.stdout.flush();
            let timeout = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            // With hosts waiting on descriptors, look again soon.
            let timeout = match (timeout, queue.is_empty()) {
                (t, true) => t,
                (Some(t), false) => Some(t.min(Duration::from_millis(50))),
                (None, false) => Some(Duration::from_millis(50)),
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                if ev.token() == SIGNAL_TOKEN {
                    for sig in signals.pending() {
                        self.interrupt(sig);
                    }
                } else if ev.token().0 < self.slots.len() {
                    self.on_event(ev.token().0, ev);
                    // A host whose connect ran out of descriptors goes back to the queue.
                    let s = &self.slots[ev.token().0];
                    if s.outcome.is_none() && s.conn.is_none() {
                        self.release_slot(ev.token().0);
                        queue.push_front(ev.token().0);
                    }
                }
            }
            self.check_deadlines();
        }
        let _ = self.stdout.flush();
        Ok(())
    }

    /// `-b`: each distinct stdout once, under the hosts that gave it.
    fn print_gathered(&mut self) {
        let mut groups: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
        for s in &self.slots {
            if s.out.is_empty() {
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == s.out) {
                Some(g) => g.1.push(s.host.name.clone()),
                None => groups.push((s.out.clone(), vec![s.host.name.clone()])),
            }
        }
        let mut text = Vec::new();
        for (out, names) in groups {
            let title = format!("{} ({})", super::hosts::fold(&names), names.len());
            let rule = "-".repeat(title.chars().count().clamp(15, 78));
            text.extend_from_slice(format!("{rule}\n{title}\n{rule}\n").as_bytes());
            text.extend_from_slice(&out);
            if out.last() != Some(&b'\n') {
                text.push(b'\n');
            }
        }
        self.write_stdout(&text);
        let _ = self.stdout.flush();
    }

    /// The summary on stderr; the exit status.
    fn summary(&mut self) -> i32 {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let mut lines = String::new();
        let mut worst = 0;
        let mut ferry_error = false;
        for s in &self.slots {
            let o = s.outcome.as_ref().expect("every host finished");
            let cat = o.category();
            match counts.iter_mut().find(|c| c.0 == cat) {
                Some(c) => c.1 += 1,
                None => counts.push((cat, 1)),
            }
            if cat != "ok" {
                lines.push_str(&format!("ferry: {cat}: {}: {}\n", s.host.name, o.why().unwrap_or_default()));
            }
            worst = worst.max(o.status());
            ferry_error |= o.status() == EXIT_FERRY_ERROR && !matches!(o, Outcome::Exited { .. });
        }
        counts.sort_by_key(|c| ["ok", "failed", "unreachable", "auth-failed", "timed-out", "error", "interrupted"]
            .iter()
            .position(|k| *k == c.0));
        let n = self.slots.len();
        let parts: Vec<String> = counts.iter().map(|(c, k)| format!("{k} {c}")).collect();
        let head = format!("ferry: {n} host{}: {}\n", if n == 1 { "" } else { "s" }, parts.join(", "));
        let all_ok = worst == 0 && !ferry_error;
        if !(self.plan.quiet && all_ok) {
            lines.insert_str(0, &head);
        }
        self.write_stderr(lines.as_bytes());
        if self.stdout_broken {
            return 128 + libc::SIGPIPE;
        }
        if ferry_error {
            EXIT_FERRY_ERROR
        } else {
            worst
        }
    }
}

/// Decodes `bytes` with `d` and appends the UTF-8 to `out`.
fn decode_into(d: &mut encoding_rs::Decoder, mut bytes: &[u8], last: bool, out: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        let (result, read, written, _) = d.decode_to_utf8(bytes, &mut buf, last);
        out.extend_from_slice(&buf[..written]);
        bytes = &bytes[read..];
        if result == encoding_rs::CoderResult::InputEmpty {
            return;
        }
    }
}

/// Runs `op` on every host of `plan`; the exit status (see the module doc).
pub fn run(plan: &Plan, op: &Op, key: &Key, opts: &Options) -> i32 {
    raise_nofile();
    fan_out(plan, op, key, opts, |fan| fan.run().map_err(|e| format!("event loop: {e}")))
}

/// Makes the `Fan`, lets `drive` take every host to its outcome, then
/// prints the `-b` groups and the summary; the exit status.
fn fan_out(plan: &Plan, op: &Op, key: &Key, opts: &Options, drive: impl FnOnce(&mut Fan) -> Result<(), String>) -> i32 {
    let mut fan = match Fan::new(plan, op, key, opts) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ferry: {e}");
            return EXIT_FERRY_ERROR;
        }
    };
    if let Err(e) = drive(&mut fan) {
        eprintln!("ferry: {e}");
        return EXIT_FERRY_ERROR;
    }
    if plan.mode == Mode::Gather {
        fan.print_gathered();
    }
    fan.summary()
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
        .ok_or_else(|| format!("{local:?} names no file to name a remote one after"))?
        .to_string();
    let mut hasher = Sha256::new();
    let size = hash_reader(&mut file, &mut hasher, &mut |_| {}).map_err(|e| format!("{local}: {}", io_text(&e)))?;
    Ok(Op::Put {
        file,
        size,
        sha256: auth::to_hex(&hasher.finalize()),
        mode: meta.permissions().mode() & 0o777,
        name,
        remote: remote.map(str::to_string),
    })
}

/// One host's datagram exchange.
struct UdpReq {
    addr: SocketAddr,
    nonce: String,
    bytes: Vec<u8>,
    /// When to send (again), from the first send.
    schedule: VecDeque<Instant>,
    first: Instant,
    deadline: Instant,
    sent: u32,
    /// Sends since the last reply that did not fit the socket buffer.
    retry_soon: bool,
}

const UDP4: Token = Token(usize::MAX - 2);
const UDP6: Token = Token(usize::MAX - 3);

impl Fan<'_> {
    /// A fresh request datagram for host `i` (a new nonce each time).
    fn udp_request(&self, addr: SocketAddr, now: Instant) -> UdpReq {
        use crate::proto::datagram;
        let nonce = datagram::fresh_udp_nonce();
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let header = match self.op {
            Op::Run { command } => {
                let req =
                    Exec { command: command_of(command), env: Default::default(), cwd: None, stdin: false, timeout: None };
                datagram::request::exec(&req, &nonce, ts)
            }
            _ => datagram::request::ping(&nonce, ts),
        };
        let bytes = datagram::encode_request(&self.key.id, self.key.secret.as_bytes(), header, &[]);
        let timeout = self.opts.timeout.unwrap_or(super::udp::DEFAULT_TIMEOUT);
        let schedule = super::udp::send_times(timeout).map(|at| now + at).collect();
        UdpReq { addr, nonce, bytes, schedule, first: now, deadline: now + timeout, sent: 0, retry_soon: false }
    }

    /// A reply datagram: to whom it answers, and what it says.
    fn on_udp_reply(&mut self, reqs: &mut [Option<UdpReq>], i: usize, reply: crate::proto::datagram::Reply) {
        use crate::proto::datagram::ExecResult;
        let Some(req) = reqs[i].take() else { return };
        match (self.op, reply.kind()) {
            (Op::Ping { interval, .. }, Reply::Pong) => {
                let rtt = req.first.elapsed().as_secs_f64() * 1000.0;
                let again = if req.sent > 1 { format!(" ({} datagrams sent)", req.sent) } else { String::new() };
                if self.on_pong(i, rtt, &again) {
                    let mut next = self.udp_request(req.addr, Instant::now() + *interval);
                    next.first = Instant::now() + *interval;
                    reqs[i] = Some(next);
                }
            }
            (Op::Run { .. }, Reply::Other(k)) if k == "result" => match ExecResult::from_reply(&reply) {
                Some(r) => {
                    self.output(i, msg::Stream::Stdout, &r.stdout);
                    self.output(i, msg::Stream::Stderr, &r.stderr);
                    if r.truncated && !self.plan.quiet {
                        let m = format!(
                            "ferry: {}: output truncated to fit one datagram: {} of {} stdout bytes and {} of {} stderr bytes\n",
                            self.slots[i].host.name,
                            r.stdout.len(),
                            r.stdout_total,
                            r.stderr.len(),
                            r.stderr_total
                        );
                        self.write_stderr(m.as_bytes());
                    }
                    self.finish(i, Outcome::Exited { code: r.code, signal: r.signal });
                }
                None => self.finish(i, Outcome::Error("protocol error: a result whose counts do not match its body".into())),
            },
            (Op::Run { .. }, Reply::Error(e)) if e.code == ErrorCode::SpawnFailed => {
                self.finish(i, Outcome::SpawnFailed(e.message))
            }
            (_, Reply::Error(e)) => self.finish(i, server_error(&e)),
            (_, _) => self.finish(i, Outcome::Error(format!("protocol error: unexpected {:?} reply", reply.header.kind))),
        }
    }

    #[allow(clippy::needless_range_loop)] // `reqs[i]` is replaced inside the loops
    fn run_udp(&mut self) -> io::Result<()> {
        use crate::proto::datagram;
        use mio::net::UdpSocket;
        let mut signals = signal_hook_mio::v1_0::Signals::new([libc::SIGINT, libc::SIGTERM])?;
        self.poll.registry().register(&mut signals, SIGNAL_TOKEN, Interest::READABLE)?;
        let now = Instant::now();
        let mut reqs: Vec<Option<UdpReq>> = Vec::with_capacity(self.slots.len());
        let mut by_nonce = std::collections::HashMap::new();
        let (mut v4, mut v6): (Option<UdpSocket>, Option<UdpSocket>) = (None, None);
        for i in 0..self.slots.len() {
            self.slots[i].started = Some(now);
            let addr = match resolve_addrs(&self.slots[i].host.target, self.opts.family) {
                Ok(a) => a[0],
                Err(e) => {
                    self.finish(i, Outcome::Unreachable(e));
                    reqs.push(None);
                    continue;
                }
            };
            let (sock, token, any) = if addr.is_ipv4() {
                (&mut v4, UDP4, SocketAddr::from(([0, 0, 0, 0], 0)))
            } else {
                (&mut v6, UDP6, SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)))
            };
            if sock.is_none() {
                let mut s = UdpSocket::bind(any)?;
                self.poll.registry().register(&mut s, token, Interest::READABLE)?;
                *sock = Some(s);
            }
            reqs.push(Some(self.udp_request(addr, now)));
        }
        let mut events = Events::with_capacity(256);
        let mut buf = vec![0u8; datagram::MAX_DATAGRAM + 1];
        let secret = self.key.secret.as_bytes();
        while !self.all_done() {
            let now = Instant::now();
            // Send what is due.
            for i in 0..reqs.len() {
                let Some(r) = &mut reqs[i] else { continue };
                if r.sent == 0 {
                    by_nonce.insert(r.nonce.clone(), i);
                }
                while r.schedule.front().is_some_and(|&at| at <= now) || r.retry_soon {
                    let sock = if r.addr.is_ipv4() { v4.as_ref() } else { v6.as_ref() };
                    match sock.expect("bound above").send_to(&r.bytes, r.addr) {
                        Ok(_) => {
                            r.sent += 1;
                            r.retry_soon = false;
                            r.schedule.pop_front();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) => {
                            r.retry_soon = true;
                            break;
                        }
                        // ICMP errors of earlier sends surface here: the next send goes on.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                        Err(e) => {
                            let m = format!("cannot send to {}: {}", r.addr, io_text(&e));
                            reqs[i] = None;
                            self.finish(i, Outcome::Unreachable(m));
                            break;
                        }
                    }
                }
            }
            // Give up on what is past its deadline.
            for i in 0..reqs.len() {
                let Some(r) = &reqs[i] else { continue };
                if r.deadline <= now && !r.retry_soon {
                    let e = super::udp::UdpError::NoReply {
                        peer: r.addr,
                        waited: now - r.first,
                        sent: r.sent,
                        refused: false,
                        exec: matches!(self.op, Op::Run { .. }),
                    };
                    reqs[i] = None;
                    self.finish(i, Outcome::Unreachable(e.to_string()));
                }
            }
            if self.all_done() {
                break;
            }
            let _ = self.stdout.flush();
            let soon = reqs.iter().flatten().any(|r| r.retry_soon);
            let next = reqs.iter().flatten().flat_map(|r| r.schedule.front().copied().into_iter().chain([r.deadline])).min();
            let mut timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
            if soon {
                timeout = Some(timeout.map_or(Duration::from_millis(5), |t| t.min(Duration::from_millis(5))));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for ev in events.iter() {
                if ev.token() == SIGNAL_TOKEN {
                    if signals.pending().next().is_some() {
                        self.interrupted += 1;
                        for (i, r) in reqs.iter_mut().enumerate() {
                            if r.take().is_some() {
                                self.finish(i, Outcome::Cancelled);
                            }
                        }
                    }
                    continue;
                }
                let sock = if ev.token() == UDP4 { v4.as_ref() } else { v6.as_ref() };
                let Some(sock) = sock else { continue };
                loop {
                    let n = match sock.recv_from(&mut buf) {
                        Ok((n, _)) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    let Ok(reply) = datagram::decode_reply(secret, &buf[..n]) else { continue };
                    let Some(nonce) = reply.header.str("nonce") else { continue };
                    let Some(&i) = by_nonce.get(nonce) else { continue };
                    if reqs[i].as_ref().is_some_and(|r| r.nonce == nonce) {
                        by_nonce.remove(reply.header.str("nonce").unwrap_or_default());
                        self.on_udp_reply(&mut reqs, i, reply);
                    }
                }
            }
        }
        let _ = self.stdout.flush();
        Ok(())
    }
}

/// `run -u` and `ping -u` with `-H`: every request datagram sent at once,
/// each retransmitted on its own schedule (as `udp` does for one host),
/// replies matched to hosts by nonce. The exit status as for `run`.
pub fn run_udp(plan: &Plan, op: &Op, key: &Key, opts: &Options) -> i32 {
    fan_out(plan, op, key, opts, |fan| fan.run_udp().map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::Command;

    #[test]
    fn outcomes_have_a_status_a_category_and_a_reason() {
        let exited = |code, signal| Outcome::Exited { code, signal };
        for (o, status, cat) in [
            (exited(Some(0), None), 0, "ok"),
            (exited(Some(3), None), 3, "failed"),
            (exited(None, Some(9)), 137, "failed"),
            (Outcome::Done, 0, "ok"),
            (Outcome::SpawnFailed("x".into()), 127, "failed"),
            (Outcome::FileError("x".into()), 1, "failed"),
            (Outcome::Unreachable("x".into()), 255, "unreachable"),
            (Outcome::AuthFailed("x".into()), 255, "auth-failed"),
            (Outcome::TimedOut("x".into()), 255, "timed-out"),
            (Outcome::Error("x".into()), 255, "error"),
            (Outcome::Cancelled, 130, "interrupted"),
        ] {
            assert_eq!((o.status(), o.category()), (status, cat), "{o:?}");
            assert_eq!(o.why().is_none(), status == 0, "{o:?}");
        }
        assert_eq!(exited(None, Some(2)).why().as_deref(), Some("signal 2"));
        assert_eq!(exited(Some(4), None).why().as_deref(), Some("exit 4"));
    }

    #[test]
    fn commands_are_shell_or_argv_as_for_one_host() {
        assert_eq!(command_of(&["echo hi".into()]), Command::Shell("echo hi".into()));
        assert_eq!(command_of(&["echo".into(), "hi".into()]), Command::Argv(vec!["echo".into(), "hi".into()]));
    }
}
