//! Fan-out over TCP: for each host a small non-blocking state machine
//! (connect, `proto::handshake`, the request, its reply frames) driven by
//! `poll_loop`. No thread per host.
//!
//! At most `fanout` hosts are connecting or authenticating at once; a host
//! whose request has been sent no longer counts, so a command that hangs on
//! some hosts never holds up the others. Each host has its own deadlines:
//! the handshake (`-w`, else 30 s) and, with `-w`, the time without a byte
//! from it; a host past its deadline is dropped (the server ends a command
//! whose client went away) and the others go on.
//!
//! A host that is not loopback (or every host, with `--tls`) gets TLS: the
//! same frames go through a `transport::TlsClient` between the buffers and
//! the socket, and a put's body is read and encrypted in 64 KiB chunks
//! instead of sent with sendfile(2).
//!
//! Imports `fan`, `outcome`, `poll_loop` and, from the client, `finish`
//! (the `.part` of a get), `transport` and the shared helpers of `client`.

use super::fan::{Fan, Op, Pong};
use super::getfile::{finish_get, pick_digest, GetFile};
use super::outcome::Outcome;
use super::poll_loop::Transport;
use super::sock::{read_tls, send_file, send_file_tls, write_out};
use crate::client::transport::TlsClient;
use crate::client::{command_of, io_text, resolve_addrs, Error};
use crate::proto::auth;
use crate::proto::frame::Header;
use crate::proto::handshake::{Handshake, Step};
use crate::proto::msg::request::PutDigest;
use crate::proto::msg::{self, Digest, ErrorCode, Exec, Reply, SignalName, Stream};
use crate::proto::{encode_frame, encode_head, Decoder, Item};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The handshake's bound without `-w`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a connection is. The handshake is `proto::handshake`'s; the two
/// variants only say which of its frames is awaited, for the messages.
enum Phase {
    Connect,
    Hello(Handshake),
    Welcome(Handshake),
    /// `put`: the stat that says whether REMOTE is a directory.
    Stat,
    /// The request is sent; its replies are read.
    Request,
}

impl Phase {
    fn in_handshake(&self) -> bool {
        matches!(self, Phase::Connect | Phase::Hello(_) | Phase::Welcome(_))
    }
}

/// Where the current frame's body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Skip,
    Stdout,
    Stderr,
    File,
}

struct Conn {
    sock: TcpStream,
    /// Addresses still to try if this one fails.
    addrs: Vec<SocketAddr>,
    phase: Phase,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    dec: Decoder,
    sink: Sink,
    /// A `put` body still to send with sendfile: (offset, end).
    sendfile: Option<(u64, u64)>,
    last_io: Instant,
    /// TLS between the buffers and the socket, for a host that gets it.
    tls: Option<TlsClient>,
}

/// One host's TCP state, beside its `Slot`.
#[derive(Default)]
struct Host {
    conn: Option<Conn>,
    /// Counts against `fanout` (connecting or authenticating).
    holds_slot: bool,
    get: Option<GetFile>,
    put_path: String,
    ping_sent: Option<Instant>,
    ping_next: Option<Instant>,
    /// The digest of a get or put: the best the server announced, or `--digest`.
    digest: Digest,
    /// A get's `DIR/HOST` if this run made it (removed at the end if empty).
    made_dir: Option<std::path::PathBuf>,
}

pub(super) struct Tcp {
    hosts: Vec<Host>,
    /// The key's TLS configuration, built for the first host that needs it.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Hosts not started yet, in order.
    queue: VecDeque<usize>,
    connecting: usize,
    /// Hosts whose socket had more to read when their turn's share was
    /// read (see `read_all`): read again before the next sleep.
    unread: Vec<usize>,
}

/// Reads of one host's socket per turn of the loop. A host that sends
/// without end (`yes`) would otherwise keep the loop in its read forever,
/// deaf to INT, TERM, a closed stdout and the other hosts.
const READS_PER_TURN: usize = 16;

impl Tcp {
    pub(super) fn new(n: usize) -> Tcp {
        Tcp { hosts: (0..n).map(|_| Host::default()).collect(), tls_config: None, queue: (0..n).collect(), connecting: 0, unread: Vec::new() }
    }

    fn conn(&mut self, i: usize) -> &mut Conn {
        self.hosts[i].conn.as_mut().expect("a connection")
    }

    /// Starts connecting host `i`. False when out of file descriptors (the
    /// host stays queued).
    fn start(&mut self, fan: &mut Fan, i: usize) -> bool {
        let slot = &mut fan.slots[i];
        slot.started.get_or_insert_with(Instant::now);
        match resolve_addrs(&slot.host.target, fan.opts.family) {
            Ok(addrs) => self.connect_next(fan, i, addrs, None),
            Err(e) => {
                self.finish(fan, i, Outcome::Unreachable(e));
                true
            }
        }
    }

    /// Tries the next address of host `i`; `last` is why the previous failed.
    fn connect_next(&mut self, fan: &mut Fan, i: usize, mut addrs: Vec<SocketAddr>, last: Option<io::Error>) -> bool {
        if let Some(mut c) = self.hosts[i].conn.take() {
            let _ = fan.poll.registry().deregister(&mut c.sock);
        }
        if addrs.is_empty() {
            let why = last.map_or("no address".to_string(), |e| io_text(&e));
            let m = format!("cannot connect to {}: {why}", fan.slots[i].host.target);
            self.finish(fan, i, Outcome::Unreachable(m));
            return true;
        }
        let addr = addrs.remove(0);
        let mut sock = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
                addrs.insert(0, addr);
                if self.connecting == 0 && self.hosts.iter().all(|h| h.conn.is_none()) {
                    self.finish(fan, i, Outcome::Error(format!("cannot open a socket: {}", io_text(&e))));
                    return true;
                }
                return false;
            }
            Err(e) => return self.connect_next(fan, i, addrs, Some(e)),
        };
        if let Err(e) = fan.poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE) {
            return self.connect_next(fan, i, addrs, Some(e));
        }
        if !self.hosts[i].holds_slot {
            self.hosts[i].holds_slot = true;
            self.connecting += 1;
        }
        self.hosts[i].conn = Some(Conn {
            sock,
            addrs,
            phase: Phase::Connect,
            inbuf: Vec::new(),
            out: Vec::new(),
            dec: Decoder::default(),
            sink: Sink::Skip,
            sendfile: None,
            last_io: Instant::now(),
            tls: None,
        });
        true
    }

    fn release_slot(&mut self, i: usize) {
        if self.hosts[i].holds_slot {
            self.hosts[i].holds_slot = false;
            self.connecting -= 1;
        }
    }

    /// Host `i` is over: its connection closed, a get's `.part` removed
    /// (there is no -c with -H), then the fan's finish.
    fn finish(&mut self, fan: &mut Fan, i: usize, outcome: Outcome) {
        if fan.slots[i].outcome.is_some() {
            return;
        }
        self.release_slot(i);
        if let Some(mut c) = self.hosts[i].conn.take() {
            let _ = fan.poll.registry().deregister(&mut c.sock);
        }
        if let Some(g) = self.hosts[i].get.take() {
            g.part.discard();
        }
        if let Some(d) = self.hosts[i].made_dir.take() {
            let _ = fs::remove_dir(d); // only if empty: one holding the file stays
        }
        fan.finish(i, outcome);
    }

    /// Queues a frame for host `i` and writes what the socket takes.
    fn send(&mut self, fan: &mut Fan, i: usize, header: Map<String, Value>, body: &[u8]) {
        fan.trace(i, ">", &header);
        if let Some(c) = &mut self.hosts[i].conn {
            encode_frame(&mut c.out, header, body);
        }
        self.flush_out(fan, i);
    }

    /// Writes what host `i` has queued, then any sendfile body; fails the
    /// host on a socket error.
    fn flush_out(&mut self, fan: &mut Fan, i: usize) {
        let Some(c) = &mut self.hosts[i].conn else { return };
        let r = match write_out(&mut c.out, c.tls.as_mut(), &mut c.sock, &mut c.last_io) {
            Ok(true) => match (&mut c.sendfile, fan.op, &mut c.tls) {
                (Some((offset, end)), Op::Put { file, .. }, None) => {
                    send_file(&c.sock, file, offset, *end, &mut c.last_io)
                }
                (Some((offset, end)), Op::Put { file, .. }, Some(tls)) => {
                    send_file_tls(tls, &mut c.sock, file, offset, *end, &mut c.last_io)
                }
                _ => Ok(true),
            },
            r => r,
        };
        match r {
            Ok(true) => c.sendfile = None,
            Ok(false) => {}
            Err(e) => self.finish(fan, i, lost(e)),
        }
    }

    /// Reads what host `i` has sent and handles every frame in it.
    fn read_all(&mut self, fan: &mut Fan, i: usize) {
        let mut buf = [0u8; 64 * 1024];
        for _ in 0..READS_PER_TURN {
            let Some(c) = &mut self.hosts[i].conn else { return };
            let r = match &mut c.tls {
                None => c.sock.read(&mut buf),
                Some(tls) => read_tls(tls, &mut c.sock, &mut c.inbuf),
            };
            match r {
                Ok(0) => {
                    self.handle_input(fan, i);
                    let lost = match self.hosts[i].conn.as_ref().map(|c| &c.phase) {
                        Some(Phase::Hello(_) | Phase::Connect) => "the server closed the connection before its hello",
                        Some(_) => "connection closed by the server",
                        None => return,
                    };
                    return self.finish(fan, i, Outcome::Error(lost.into()));
                }
                Ok(n) => {
                    c.last_io = Instant::now();
                    if c.tls.is_none() {
                        c.inbuf.extend_from_slice(&buf[..n]);
                    }
                    self.handle_input(fan, i);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.handle_input(fan, i);
                    return self.finish(fan, i, lost(e));
                }
            }
            // TLS may have records to answer (alerts, the handshake's next flight).
            if self.hosts[i].conn.as_ref().is_some_and(|c| c.tls.as_ref().is_some_and(TlsClient::wants_write)) {
                self.flush_out(fan, i);
            }
        }
        // Its share read and no WouldBlock yet: no new edge will say there
        // is more, so the loop comes back to it before it sleeps.
        if self.hosts[i].conn.is_some() && !self.unread.contains(&i) {
            self.unread.push(i);
        }
    }

    /// Decodes the frames in host `i`'s input buffer.
    fn handle_input(&mut self, fan: &mut Fan, i: usize) {
        let Some(c) = &mut self.hosts[i].conn else { return };
        let input = std::mem::take(&mut c.inbuf);
        let mut used = 0;
        loop {
            let Some(c) = &mut self.hosts[i].conn else { return };
            match c.dec.decode(&input[used..]) {
                Ok(Some((Item::Header(h), n))) => {
                    used += n;
                    self.on_frame(fan, i, h);
                }
                Ok(Some((Item::Body { range, .. }, n))) => {
                    let (sink, start) = (c.sink, used);
                    used += n;
                    self.on_body(fan, i, sink, &input[start + range.start..start + range.end]);
                }
                Ok(None) => break,
                Err(e) => return self.finish(fan, i, Outcome::Error(format!("protocol error: {e}"))),
            }
        }
        if let Some(c) = &mut self.hosts[i].conn {
            c.inbuf = input;
            c.inbuf.drain(..used);
        }
    }

    fn on_body(&mut self, fan: &mut Fan, i: usize, sink: Sink, bytes: &[u8]) {
        match sink {
            Sink::Skip => {}
            Sink::Stdout => fan.output(i, Stream::Stdout, bytes),
            Sink::Stderr => fan.output(i, Stream::Stderr, bytes),
            Sink::File => {
                let Some(g) = &mut self.hosts[i].get else { return };
                if let Err(e) = g.part.out.write_all(bytes) {
                    let m = format!("{}: {}", g.part.path.display(), io_text(&e));
                    self.finish(fan, i, Outcome::FileError(m));
                }
            }
        }
    }

    fn set_sink(&mut self, i: usize, h: &Header, sink: Sink) {
        if let Some(c) = &mut self.hosts[i].conn {
            c.sink = if h.size > 0 { sink } else { Sink::Skip };
        }
    }

    fn on_frame(&mut self, fan: &mut Fan, i: usize, h: Header) {
        fan.trace(i, "<", &h.fields);
        self.set_sink(i, &h, Sink::Skip);
        let c = self.conn(i);
        let step = match &mut c.phase {
            Phase::Connect => return,
            Phase::Hello(hs) | Phase::Welcome(hs) => hs.on_frame(&h, &[]),
            Phase::Stat => return self.on_stat(fan, i, &h),
            Phase::Request => return self.on_reply(fan, i, &h, Reply::from_header(&h)),
        };
        self.on_handshake(fan, i, step);
    }

    fn on_handshake(&mut self, fan: &mut Fan, i: usize, step: Step) {
        match step {
            Step::Send(bytes) => {
                let c = self.conn(i);
                if let Phase::Hello(hs) = std::mem::replace(&mut c.phase, Phase::Connect) {
                    c.phase = Phase::Welcome(hs);
                }
                if let Ok(h) = crate::proto::frame::parse_header(&bytes[4..]) {
                    fan.trace(i, ">", &h.fields);
                }
                c.out.extend_from_slice(&bytes);
                self.flush_out(fan, i);
            }
            Step::NeedMore => {}
            Step::Failed(e) => self.finish(fan, i, Outcome::from_error(Error::from_handshake(e, fan.key))),
            Step::Done(_) if fan.interrupted > 0 => self.finish(fan, i, Outcome::Cancelled),
            Step::Done(est) => {
                let digest = match pick_digest(est.digests, fan.opts.digest) {
                    Ok(d) => d,
                    Err(m) => return self.finish(fan, i, Outcome::FileError(m)),
                };
                self.hosts[i].digest = digest;
                if matches!(fan.op, Op::Get { .. } | Op::Put { .. }) {
                    fan.slots[i].digest = Some((digest, None));
                }
                if let Some(tls) = self.hosts[i].conn.as_ref().and_then(|c| c.tls.as_ref()) {
                    fan.trace_note(i, &tls.describe());
                }
                self.release_slot(i);
                self.request(fan, i);
            }
        }
    }

    /// Sends host `i` its request (authenticated, or after the put's stat).
    fn request(&mut self, fan: &mut Fan, i: usize) {
        self.conn(i).phase = Phase::Request;
        match fan.op {
            Op::Run { command, argv } => {
                let req =
                    Exec { command: command_of(command, *argv), env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None };
                self.send(fan, i, msg::request::exec(&req), &[]);
            }
            Op::Ping { .. } => {
                self.hosts[i].ping_sent = Some(Instant::now());
                self.send(fan, i, msg::request::ping(), &[]);
            }
            Op::Put { remote: Some(r), .. } if !r.ends_with('/') && self.hosts[i].put_path.is_empty() => {
                self.conn(i).phase = Phase::Stat;
                self.send(fan, i, msg::request::stat(r), &[]);
            }
            Op::Put { size, sha256, blake3, mode, name, remote, .. } => {
                let h = &mut self.hosts[i];
                if h.put_path.is_empty() {
                    h.put_path = match remote {
                        None => name.clone(),
                        Some(r) => format!("{r}{name}"),
                    };
                }
                let how = match h.digest {
                    Digest::Blake3 => PutDigest::Header(Digest::Blake3, blake3),
                    Digest::Sha256 => PutDigest::Header(Digest::Sha256, sha256),
                    Digest::None => PutDigest::None,
                };
                let header = msg::request::put(&h.put_path, Some(*mode), how, false);
                fan.trace(i, ">", &header);
                let c = self.conn(i);
                encode_head(&mut c.out, header, *size);
                c.sendfile = (*size > 0).then_some((0, *size));
                self.flush_out(fan, i);
            }
            Op::Get { remote, .. } => {
                // The local file first: one that cannot be written fails
                // before anything is fetched.
                if self.open_part(fan, i) {
                    let digest = self.hosts[i].digest;
                    self.send(fan, i, msg::request::get(remote, 0, digest), &[]);
                }
            }
        }
    }

    fn on_stat(&mut self, fan: &mut Fan, i: usize, h: &Header) {
        let Op::Put { name, remote: Some(r), .. } = fan.op else { return };
        let is_dir = match Reply::from_header(h) {
            Reply::Error(e) if !e.code.is_fatal() => false,
            Reply::Error(e) => return self.finish(fan, i, Outcome::server_error(&e)),
            _ => h.str("kind") == Some("dir"),
        };
        self.hosts[i].put_path = match (is_dir, r.trim_end_matches('/')) {
            (false, _) => r.clone(),
            (true, ".") => name.clone(),
            (true, d) => format!("{d}/{name}"),
        };
        self.request(fan, i);
    }

    fn on_reply(&mut self, fan: &mut Fan, i: usize, h: &Header, reply: Reply) {
        match (fan.op, reply) {
            (Op::Run { .. }, Reply::Output(s)) => {
                self.set_sink(i, h, if s == Stream::Stdout { Sink::Stdout } else { Sink::Stderr })
            }
            (Op::Run { .. }, Reply::Exit { code, signal }) => self.finish(fan, i, Outcome::Exited { code, signal }),
            (Op::Run { .. }, Reply::Error(e)) if e.code == ErrorCode::SpawnFailed => {
                self.finish(fan, i, Outcome::SpawnFailed(e.message))
            }
            (Op::Ping { interval, .. }, Reply::Pong) => {
                let rtt = self.hosts[i].ping_sent.take().map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0);
                match fan.on_pong(i, rtt, "") {
                    Pong::Again => self.hosts[i].ping_next = Some(Instant::now() + *interval),
                    Pong::Last => self.finish(fan, i, Outcome::Done),
                }
            }
            (Op::Put { .. }, Reply::Other(k)) if k == "ok" => {
                let d = self.hosts[i].digest;
                fan.slots[i].digest = Some((d, h.str(d.as_str()).map(str::to_string)));
                self.finish(fan, i, Outcome::Done)
            }
            (Op::Get { .. }, Reply::Other(k)) if k == "file" => self.on_get_file(fan, i, h),
            (Op::Get { remote, .. }, Reply::Other(k)) if k == "done" => {
                let d = self.hosts[i].digest;
                let outcome = match self.hosts[i].get.take() {
                    Some(g) => {
                        let ours = g.part.out.hex();
                        let o = finish_get(g, remote, d, h.str(d.as_str()));
                        fan.slots[i].digest = Some((d, ours.filter(|_| o == Outcome::Done)));
                        o
                    }
                    None => Outcome::Error("protocol error: done before file".into()),
                };
                self.finish(fan, i, outcome)
            }
            (Op::Put { .. } | Op::Get { .. }, Reply::Error(e)) if !e.code.is_fatal() => {
                let m = if e.message.is_empty() { e.code.as_str().to_string() } else { e.message };
                self.finish(fan, i, Outcome::FileError(m))
            }
            (Op::Run { command, argv }, Reply::Error(e)) => {
                let shell = command.len() == 1 && !argv;
                self.finish(fan, i, Outcome::run_error(shell, &e))
            }
            (_, Reply::Error(e)) => self.finish(fan, i, Outcome::server_error(&e)),
            _ => {}
        }
    }

    /// Creates host `i`'s `DIR/HOST/NAME.part`; false (the host finished
    /// with a file error) when it cannot be.
    fn open_part(&mut self, fan: &mut Fan, i: usize) -> bool {
        let Op::Get { dir, name, .. } = fan.op else { return false };
        let host_dir = dir.join(&fan.slots[i].host.name);
        self.hosts[i].made_dir = fs::symlink_metadata(&host_dir).is_err().then(|| host_dir.clone());
        match GetFile::open(&host_dir, name, self.hosts[i].digest) {
            Ok(g) => {
                self.hosts[i].get = Some(g);
                true
            }
            Err(m) => {
                self.finish(fan, i, Outcome::FileError(m));
                false
            }
        }
    }

    fn on_get_file(&mut self, fan: &mut Fan, i: usize, h: &Header) {
        let Some(g) = self.hosts[i].get.as_mut() else {
            return self.finish(fan, i, Outcome::Error("protocol error: a file reply to no get".into()));
        };
        g.mode = h.fields.get("mode").and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok());
        g.mtime = h.fields.get("mtime").and_then(Value::as_i64);
        self.set_sink(i, h, Sink::File);
    }

    /// The earliest deadline of host `i` (handshake, idle, next ping).
    fn deadline(&self, fan: &Fan, i: usize) -> Option<Instant> {
        let h = &self.hosts[i];
        let c = h.conn.as_ref()?;
        let t = if c.phase.in_handshake() {
            Some(fan.slots[i].started? + fan.opts.timeout.unwrap_or(HANDSHAKE_TIMEOUT))
        } else {
            fan.opts.timeout.map(|t| c.last_io + t)
        };
        match (t, h.ping_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A connection error as the host's outcome (a TLS failure says why).
fn lost(e: io::Error) -> Outcome {
    use crate::tls::TlsError;
    // A key the server does not share is an authentication failure, as in v1.
    if let Some(
        t @ (TlsError::ServerIdentityMismatch { .. } | TlsError::RefusedByServer { .. } | TlsError::UnknownToServer { .. }),
    ) = crate::client::transport::tls_error(&e)
    {
        return Outcome::AuthFailed(format!("TLS: {t}"));
    }
    match Error::from(e) {
        Error::Io(e) => Outcome::Error(format!("connection lost: {}", io_text(&e))),
        e => Outcome::from_error(e),
    }
}

impl Transport for Tcp {
    fn prepare(&mut self, fan: &mut Fan) -> Option<Duration> {
        for i in std::mem::take(&mut self.unread) {
            self.read_all(fan, i);
        }
        if fan.interrupted > 0 {
            while let Some(i) = self.queue.pop_front() {
                self.finish(fan, i, Outcome::Cancelled);
            }
        }
        while self.connecting < fan.plan.fanout.max(1) {
            let Some(i) = self.queue.pop_front() else { break };
            if !self.start(fan, i) {
                self.queue.push_front(i);
                break;
            }
        }
        let next = (0..self.hosts.len()).filter_map(|i| self.deadline(fan, i)).min();
        let timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
        if !self.unread.is_empty() {
            return Some(Duration::ZERO);
        }
        // With hosts waiting on descriptors, look again soon.
        match (timeout, self.queue.is_empty()) {
            (t, true) => t,
            (Some(t), false) => Some(t.min(Duration::from_millis(50))),
            (None, false) => Some(Duration::from_millis(50)),
        }
    }

    fn on_event(&mut self, fan: &mut Fan, ev: &Event) {
        let i = ev.token().0;
        let Some(c) = self.hosts.get_mut(i).and_then(|h| h.conn.as_mut()) else { return };
        if matches!(c.phase, Phase::Connect) {
            let err = match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => Some(e),
                Ok(None) if ev.is_error() || ev.is_read_closed() => Some(io::Error::from(io::ErrorKind::ConnectionRefused)),
                Ok(None) => None,
            };
            let err = match (err, c.sock.peer_addr()) {
                (Some(e), _) => Some(e),
                (None, Ok(peer)) => {
                    let _ = c.sock.set_nodelay(true);
                    c.phase = Phase::Hello(Handshake::new(fan.key, auth::fresh_nonce()));
                    c.last_io = Instant::now();
                    if fan.opts.transport.tls_for(&peer) {
                        let cfg = self.tls_config.get_or_insert_with(|| crate::tls::client_config(fan.key)).clone();
                        let tls = TlsClient::with_config(cfg, &fan.key.id);
                        if fan.opts.trace {
                            fan.trace_note(i, &format!("TLS to {peer}"));
                        }
                        // Its ClientHello goes out with the flush below.
                        c.tls = Some(tls);
                    } else if fan.opts.trace {
                        fan.trace_note(i, &format!("plaintext v1 to {peer}"));
                    }
                    None
                }
                (None, Err(e)) if e.kind() == io::ErrorKind::NotConnected => return,
                (None, Err(e)) => Some(e),
            };
            if let Some(e) = err {
                let addrs = std::mem::take(&mut c.addrs);
                if !self.connect_next(fan, i, addrs, Some(e)) {
                    // Out of descriptors: back to the queue.
                    self.hosts[i].conn = None;
                    self.release_slot(i);
                    self.queue.push_front(i);
                }
                return;
            }
        }
        let tls_out = self.hosts[i].conn.as_ref().is_some_and(|c| c.tls.as_ref().is_some_and(TlsClient::wants_write));
        if ev.is_writable() || tls_out {
            self.flush_out(fan, i);
        }
        self.read_all(fan, i);
    }

    /// The first Ctrl-C: INT to every running command, nothing new starts;
    /// the second: every connection closed (the server ends what runs).
    fn on_signal(&mut self, fan: &mut Fan, sig: i32) {
        fan.interrupted += 1;
        let run = matches!(fan.op, Op::Run { .. });
        for i in 0..self.hosts.len() {
            if fan.slots[i].outcome.is_some() {
                continue;
            }
            match self.hosts[i].conn.as_ref().map(|c| &c.phase) {
                Some(Phase::Request) if run && fan.interrupted == 1 => {
                    let name = if sig == libc::SIGTERM { SignalName::TERM } else { SignalName::INT };
                    self.send(fan, i, msg::request::signal(name), &[]);
                }
                Some(Phase::Request | Phase::Stat) => self.finish(fan, i, Outcome::Interrupted),
                _ => self.finish(fan, i, Outcome::Cancelled),
            }
        }
    }

    fn sweep(&mut self, fan: &mut Fan) {
        let now = Instant::now();
        for i in 0..self.hosts.len() {
            if self.hosts[i].ping_next.is_some_and(|next| next <= now) {
                let h = &mut self.hosts[i];
                h.ping_next = None;
                h.ping_sent = Some(now);
                if let Some(c) = &mut h.conn {
                    c.last_io = now;
                }
                self.send(fan, i, msg::request::ping(), &[]);
            }
            let Some(c) = &self.hosts[i].conn else { continue };
            if self.deadline(fan, i).map_or(true, |d| d > now) {
                continue;
            }
            let secs = fan.opts.timeout.unwrap_or(HANDSHAKE_TIMEOUT).as_secs_f64();
            let m = match c.phase {
                Phase::Connect => format!("cannot connect to {}: timed out after {secs} s", fan.slots[i].host.target),
                Phase::Hello(_) | Phase::Welcome(_) => format!("no handshake in {secs} s"),
                _ => format!("nothing from the server for {secs} s"),
            };
            self.finish(fan, i, Outcome::TimedOut(m));
        }
    }
}
