//! One client connection as an explicit state machine.
//!
//! `Conn` owns the socket, its input and output buffers, the frame decoder and
//! the request in flight. The reactor records readiness (`on_socket_event`,
//! `on_pipe_event`) and then calls `pump`, which does all the work that
//! readiness allows and answers with a `Step`. `Conn` is generic over the
//! socket so the state machine is unit-tested on an in-memory stream.
//!
//! LIFECYCLE (`Phase`)
//! - `AwaitAuth` --valid `auth`--> `Ready`; anything else --> `Closing` (auth-required / auth-failed);
//!   the auth timeout --> `Closing`.
//! - `Ready` --`exec`--> `Running`, or `Queued` when every child slot is taken;
//!   `Queued` --a slot frees--> `Running`; `Running` --`exit` queued--> `Ready`.
//! - `Ready` --`get`--> `Running` --`done` queued--> `Ready`.
//! - `Ready` --`put`--> `Running` --body complete (sized: the frame's body;
//!   streaming: an empty `data` frame), `ok` or error queued--> `Ready`.
//!   A streaming put interrupted by another frame fails and that frame is served.
//! - `ping`, `list`, `stat` and errors answer at once and stay in `Ready`; the
//!   idle timeout --> `Closing` (also from a `get` or `put` that stopped moving).
//! - Any phase --fatal error, `bye`, server drain, peer EOF--> `Closing`: terminate a running
//!   command (TERM, KILL later; the reactor reaps it), flush the output,
//!   shut down our write side, discard input until the peer's EOF or `LINGER`, then `Closed`.
//! - Any phase --socket error--> `Closed` at once. The reactor removes `Closed`
//!   connections after the event batch.
//!
//! Backpressure: when the output buffer reaches `HIGH_WATER`, the connection
//! stops reading its child's pipes and stops parsing requests; once its input
//! buffer is full (`IN_CAP`) it stops reading the socket. Requests that arrive
//! while an exec runs wait in the input buffer, in order.

use super::buf::Buf;
use super::ops::get::Progress;
use super::ops::{list, stat, Ctx, Exec, Get, Op, Put};
use super::token::Role;
use super::Config;
use crate::proto::auth::{self, to_hex};
use crate::proto::msg::{self, Request};
use crate::proto::{encode_frame, Decoder, ErrorCode, Header, Item, ProtoError, MAX_HEADER};
use log::{debug, info, warn};
use serde_json::{Map, Value};
use std::io::{self, Read, Write};
use std::process::Child;
use std::time::{Duration, Instant};

/// Output buffered above this stops the producers (child pipes, request parsing).
pub const HIGH_WATER: usize = 1024 * 1024;
/// Unparsed input kept at most: a whole header plus room for pipelined requests.
pub const IN_CAP: usize = 4 + MAX_HEADER + 64 * 1024;
/// Bytes a connection may move in one turn before others get theirs.
pub const BUDGET: usize = 256 * 1024;
/// How long a closing connection waits, without progress, for its peer to read
/// what it is owed and hang up.
pub const LINGER: Duration = Duration::from_secs(5);

/// What the socket must offer besides reading and writing.
pub trait Socket: Read + Write {
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Writes up to `len` bytes of `file` from `*offset`, advancing it. The
    /// default reads and writes (for in-memory test sockets, whose writes are
    /// all or nothing); a real socket uses `sendfile(2)`.
    fn send_file(&mut self, file: &std::fs::File, offset: &mut u64, len: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; len.min(64 * 1024)];
        let n = file.read_at(&mut buf, *offset)?;
        let n = self.write(&buf[..n])?;
        *offset += n as u64;
        Ok(n)
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn send_file(&mut self, file: &std::fs::File, offset: &mut u64, len: usize) -> io::Result<usize> {
        Ok(rustix::fs::sendfile(&*self, file, Some(offset), len)?)
    }
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// Where a connection stands. See the module doc for the transitions.
pub enum Phase {
    /// `hello` sent; waiting for `auth` until `deadline`.
    AwaitAuth { nonce: String, deadline: Instant },
    /// Authenticated, between requests.
    Ready,
    /// An `exec` waiting for a free child slot.
    Queued { req: msg::Exec, id: Option<Value> },
    /// A request in flight.
    Running(Op),
    /// Flushing what is owed, then waiting for the peer to hang up.
    /// `shut` once our write side is shut down.
    Closing { since: Instant, shut: bool },
    Closed,
}

/// What the reactor must do after `pump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing more until a new event or deadline.
    Idle,
    /// The turn's budget ran out with work left: pump again next turn.
    Yield,
    /// Remove the connection.
    Close,
}

/// Where the body of the frame being decoded goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Discard,
    Stdin,
    Put,
}

pub struct Conn<S> {
    sock: S,
    /// Slab key: the base of this connection's tokens.
    key: usize,
    /// `#serial peer`, the prefix of every log line about this connection.
    name: String,
    inbuf: Vec<u8>,
    out: Buf,
    decoder: Decoder,
    sink: Sink,
    /// A request that arrived while an exec runs, waiting its turn.
    held: Option<Header>,
    phase: Phase,
    sock_read: bool,
    sock_write: bool,
    /// The peer shut down its write side: no more requests will come.
    peer_eof: bool,
    /// The server is shutting down: finish the request in flight, then close.
    draining: bool,
    /// Last time bytes moved on the socket or a request finished.
    last_active: Instant,
    now: Instant,
    key_id: Option<String>,
    /// Why the connection closes, set once by whatever closed it first.
    reason: Option<String>,
    /// A child left behind by a close, for the reactor to reap.
    orphan: Option<Child>,
}

impl<S: Socket> Conn<S> {
    /// A new connection: `hello` is queued at once.
    pub fn new(sock: S, key: usize, name: String, ctx: &mut Ctx) -> Conn<S> {
        let nonce = to_hex(&auth::fresh_nonce());
        let mut conn = Conn {
            sock,
            key,
            name,
            inbuf: Vec::new(),
            out: Buf::default(),
            decoder: Decoder::new(ctx.cfg.max_header),
            sink: Sink::Discard,
            held: None,
            phase: Phase::Ready,
            sock_read: true,
            sock_write: true,
            peer_eof: false,
            draining: false,
            last_active: ctx.now,
            now: ctx.now,
            key_id: None,
            reason: None,
            orphan: None,
        };
        conn.queue(msg::hello(&ctx.cfg.server_name, &nonce), &[]);
        conn.phase = Phase::AwaitAuth { nonce, deadline: ctx.now + ctx.cfg.auth_timeout };
        conn
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the connection closed (for the one "closed" log line).
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("closed")
    }

    pub fn socket_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    pub fn is_queued(&self) -> bool {
        matches!(self.phase, Phase::Queued { .. })
    }

    pub fn on_socket_event(&mut self, readable: bool, writable: bool) {
        self.sock_read |= readable;
        self.sock_write |= writable;
    }

    pub fn on_pipe_event(&mut self, role: Role) {
        if let Phase::Running(Op::Exec(e)) = &mut self.phase {
            e.on_event(role);
        }
    }

    /// Reaps this connection's child if it exited. True when one was reaped.
    pub fn reap(&mut self, ctx: &mut Ctx) -> bool {
        if let Phase::Running(Op::Exec(e)) = &mut self.phase {
            if e.try_reap() {
                *ctx.children -= 1;
                return true;
            }
        }
        false
    }

    /// The child a close left behind, if any.
    pub fn take_orphan(&mut self) -> Option<Child> {
        self.orphan.take()
    }

    /// Does all the work readiness allows. See `Step`.
    pub fn pump(&mut self, ctx: &mut Ctx) -> Step {
        self.now = ctx.now;
        let mut budget = BUDGET;
        loop {
            let mut moved = self.flush();
            moved += self.run_op(ctx, budget);
            moved += self.fill(ctx.scratch);
            moved += self.parse(ctx);
            moved += self.on_peer_eof();
            if self.is_closed() {
                return Step::Close;
            }
            if moved == 0 {
                return Step::Idle;
            }
            budget = budget.saturating_sub(moved);
            if budget == 0 {
                return Step::Yield;
            }
        }
    }

    /// The next time `on_deadline` has something to do.
    pub fn deadline(&self, cfg: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitAuth { deadline, .. } => Some(*deadline),
            Phase::Ready if cfg.idle_timeout.is_zero() => None,
            Phase::Ready => Some(self.last_active + cfg.idle_timeout),
            Phase::Running(Op::Exec(e)) => e.deadline(),
            Phase::Running(_) if cfg.idle_timeout.is_zero() => None,
            Phase::Running(_) => Some(self.last_active + cfg.idle_timeout),
            Phase::Closing { since, .. } => Some((*since).max(self.last_active) + LINGER),
            Phase::Queued { .. } | Phase::Closed => None,
        }
    }

    /// Acts on an expired deadline (auth or idle timeout, exec timeout, linger).
    pub fn on_deadline(&mut self, ctx: &mut Ctx) {
        self.now = ctx.now;
        let Some(when) = self.deadline(ctx.cfg) else { return };
        if ctx.now < when {
            return;
        }
        match &mut self.phase {
            Phase::AwaitAuth { .. } => {
                self.begin_close(format!("no authentication within {}s", ctx.cfg.auth_timeout.as_secs()))
            }
            Phase::Ready => self.begin_close(format!("idle for {}s", ctx.cfg.idle_timeout.as_secs())),
            Phase::Running(Op::Exec(e)) => e.on_deadline(ctx.now),
            Phase::Running(_) => {
                self.begin_close(format!("transfer idle for {}s", ctx.cfg.idle_timeout.as_secs()))
            }
            Phase::Closing { .. } => self.close_now("peer did not hang up"),
            Phase::Queued { .. } | Phase::Closed => {}
        }
    }

    /// The server is shutting down: idle connections get `shutting-down` now,
    /// busy ones once their request is done.
    pub fn drain(&mut self) {
        self.draining = true;
        if matches!(self.phase, Phase::AwaitAuth { .. } | Phase::Ready | Phase::Queued { .. }) {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), None);
        }
    }

    /// The drain timeout is over: TERM the child in flight (KILL follows at exit).
    pub fn term_child(&mut self) {
        if let Phase::Running(Op::Exec(e)) = &self.phase {
            e.signal(crate::proto::msg::SignalName::TERM);
        }
    }

    /// The daemon is exiting: KILL and reap the child in flight.
    pub fn kill_and_reap_child(&mut self) {
        if let Phase::Running(Op::Exec(e)) = &mut self.phase {
            e.kill_and_reap();
        }
    }

    /// Pid of the running child, if any.
    pub fn child_pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Running(Op::Exec(e)) => Some(e.pid()),
            _ => None,
        }
    }

    // ---- the work -------------------------------------------------------

    /// Writes queued output until `WouldBlock`. Returns bytes written.
    fn flush(&mut self) -> usize {
        let mut total = 0;
        while self.sock_write && !self.out.is_empty() {
            match self.sock.write(self.out.pending()) {
                Ok(0) => {
                    self.close_now("socket write returned 0");
                    return total;
                }
                Ok(n) => {
                    self.out.consume(n);
                    total += n;
                }
                Err(e) if would_block(&e) => self.sock_write = false,
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return total;
                }
            }
        }
        if total > 0 {
            self.last_active = self.now;
        }
        if let Phase::Closing { shut: shut @ false, .. } = &mut self.phase {
            if self.out.is_empty() {
                // Half-close: the peer reads what it is owed, then EOF.
                let _ = self.sock.shutdown_write();
                *shut = true;
                total += 1;
            }
        }
        total
    }

    /// Reads the socket into the input buffer (or, when closing, discards).
    fn fill(&mut self, scratch: &mut [u8]) -> usize {
        if !self.sock_read || self.peer_eof || self.is_closed() {
            return 0;
        }
        let discard = matches!(self.phase, Phase::Closing { .. });
        let room = if discard { scratch.len() } else { IN_CAP.saturating_sub(self.inbuf.len()).min(scratch.len()) };
        if room == 0 {
            return 0;
        }
        loop {
            match self.sock.read(&mut scratch[..room]) {
                Ok(0) => {
                    self.peer_eof = true;
                    return 1;
                }
                Ok(n) => {
                    if !discard {
                        self.inbuf.extend_from_slice(&scratch[..n]);
                    }
                    self.last_active = self.now;
                    return n;
                }
                Err(e) if would_block(&e) => {
                    self.sock_read = false;
                    return 0;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return 0;
                }
            }
        }
    }

    /// True when the next frame may be handled now.
    fn may_parse(&self) -> bool {
        if self.out.len() >= HIGH_WATER {
            return false;
        }
        match &self.phase {
            Phase::AwaitAuth { .. } | Phase::Ready => true,
            Phase::Running(Op::Exec(e)) => self.held.is_none() && !e.stdin_backlog(),
            Phase::Running(_) => self.held.is_none(),
            Phase::Queued { .. } | Phase::Closing { .. } | Phase::Closed => false,
        }
    }

    /// Decodes and handles frames while the phase allows. Returns a count of
    /// things done (bytes consumed, plus one for a held request taken up).
    fn parse(&mut self, ctx: &mut Ctx) -> usize {
        let mut used = 0;
        let mut done = 0;
        while self.may_parse() {
            if let Some(h) = self.held.take() {
                self.on_header(h, ctx);
                done += 1;
                continue;
            }
            match self.decoder.decode(&self.inbuf[used..]) {
                Ok(None) => break,
                Ok(Some((Item::Header(h), n))) => {
                    used += n;
                    self.on_header(h, ctx);
                }
                Ok(Some((Item::Body { range, last }, n))) => {
                    let chunk = &self.inbuf[used + range.start..used + range.end];
                    let mut failed = None;
                    let mut put_done = false;
                    match (self.sink, &mut self.phase) {
                        (Sink::Stdin, Phase::Running(Op::Exec(e))) => e.push_stdin(chunk),
                        (Sink::Put, Phase::Running(Op::Put(p))) => {
                            failed = p.on_body(chunk).map(|err| (err, p.id().cloned()));
                            put_done = last && !p.is_stream();
                        }
                        _ => {}
                    }
                    used += n;
                    if let Some((err, id)) = failed {
                        self.fail(err, id);
                    }
                    if put_done {
                        self.finish_put();
                    }
                }
                Err(e) => {
                    used = self.inbuf.len();
                    self.fail(ProtoError::new(e.code(), e.to_string()), None);
                    break;
                }
            }
        }
        self.inbuf.drain(..used);
        // Idle connections give big buffers back; an upload keeps its buffer
        // so the body moves without an allocation per chunk.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 16 * 1024 && !matches!(self.phase, Phase::Running(Op::Put(_))) {
            self.inbuf = Vec::new();
        }
        used + done
    }

    fn on_header(&mut self, h: Header, ctx: &mut Ctx) {
        self.sink = Sink::Discard;
        match &mut self.phase {
            Phase::AwaitAuth { .. } => self.on_auth(h, ctx),
            Phase::Ready => self.on_request(h, ctx),
            Phase::Running(Op::Put(p)) if p.is_stream() => {
                if h.kind == "data" && h.size == 0 {
                    self.finish_put();
                } else if h.kind == "data" {
                    self.sink = Sink::Put;
                } else {
                    // Only an empty `data` frame ends a streaming put: this one fails.
                    let id = p.id().cloned();
                    self.phase = Phase::Ready;
                    let err = format!("streaming put ended by a {:?} frame, not an empty data frame", h.kind);
                    self.fail(ProtoError::new(ErrorCode::BadRequest, err), id);
                    self.on_header(h, ctx);
                }
            }
            Phase::Running(Op::Exec(e)) if h.kind == "stdin" || h.kind == "signal" => {
                match Request::from_header(&h) {
                    Ok(Request::Stdin) if h.size == 0 => e.close_stdin(),
                    Ok(Request::Stdin) if e.takes_stdin() => self.sink = Sink::Stdin,
                    Ok(Request::Signal(sig)) => {
                        debug!("{}: signal {} to pid {}", self.name, sig.as_str(), e.pid());
                        e.signal(sig);
                    }
                    Ok(_) => {}
                    Err(err) => self.fail(err, h.id),
                }
            }
            // Anything else waits until the command is done.
            _ => self.held = Some(h),
        }
    }

    fn on_auth(&mut self, h: Header, ctx: &mut Ctx) {
        let Phase::AwaitAuth { nonce, .. } = &self.phase else { return };
        let req = match Request::from_header(&h) {
            Ok(Request::Auth(a)) => a,
            _ if h.kind == "auth" => {
                warn!("{}: auth failed: malformed auth frame", self.name);
                return self.fail(ProtoError::new(ErrorCode::AuthFailed, "authentication failed"), h.id);
            }
            _ => {
                let err = ProtoError::new(ErrorCode::AuthRequired, format!("authenticate before {:?}", h.kind));
                return self.fail(err, h.id);
            }
        };
        // An unknown key id is checked against a throwaway key, so it takes the
        // same path, the same time and gets the same reply as a wrong MAC.
        let key = ctx.cfg.keys.get(&req.key_id);
        let secret = key.map_or(&ctx.cfg.decoy_key[..], |k| k.secret.as_bytes());
        let mac_ok = auth::verify_client_mac(secret, nonce, &req.nonce, &req.mac);
        if mac_ok && key.is_some() && auth::is_nonce_hex(&req.nonce) {
            let mac = auth::server_mac(secret, &req.nonce, nonce);
            self.queue(msg::welcome(&mac, h.id.as_ref()), &[]);
            info!("{}: authenticated as {}", self.name, req.key_id);
            self.key_id = Some(req.key_id);
            self.phase = Phase::Ready;
            self.last_active = self.now;
        } else {
            warn!("{}: auth failed for key id {:?}", self.name, req.key_id);
            self.fail(ProtoError::new(ErrorCode::AuthFailed, "authentication failed"), h.id);
        }
    }

    fn on_request(&mut self, h: Header, ctx: &mut Ctx) {
        let id = h.id.clone();
        if self.draining {
            return self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), id);
        }
        match Request::from_header(&h) {
            Err(e) => self.fail(e, id),
            Ok(Request::Ping) => self.queue(msg::pong(id.as_ref()), &[]),
            Ok(Request::Bye) => self.begin_close("bye"),
            Ok(Request::Auth(_)) => self.fail(ProtoError::new(ErrorCode::BadRequest, "already authenticated"), id),
            // Late stdin or signal for a command that has already ended: the
            // race is normal (a command may exit while its input is in flight).
            Ok(Request::Stdin | Request::Signal(_)) => {}
            Ok(Request::Data) => {
                self.fail(ProtoError::new(ErrorCode::BadRequest, "a data frame outside a streaming put"), id)
            }
            Ok(Request::List(req)) => match list::list(&req, id.as_ref(), ctx) {
                Ok((header, body)) => self.queue(header, &body),
                Err(e) => self.fail(e, id),
            },
            Ok(Request::Stat(req)) => match stat::stat(&req, id.as_ref(), ctx) {
                Ok(header) => self.queue(header, &[]),
                Err(e) => self.fail(e, id),
            },
            Ok(Request::Get(req)) => match Get::start(&req, id.clone(), ctx, &mut self.out) {
                Ok(g) => {
                    debug!("{}: get {:?} from {}", self.name, req.path, req.offset);
                    self.phase = Phase::Running(Op::Get(g));
                }
                Err(e) => self.fail(e, id),
            },
            Ok(Request::Put(req)) => {
                debug!("{}: put {:?} ({:?} bytes)", self.name, req.path, req.size);
                let (put, err) = Put::start(&req, id.clone(), ctx);
                self.phase = Phase::Running(Op::Put(put));
                if let Some(e) = err {
                    self.fail(e, id);
                }
                match req.size {
                    Some(0) => self.finish_put(),
                    Some(_) => self.sink = Sink::Put,
                    None => {}
                }
            }
            Ok(Request::Unknown(t)) => {
                self.fail(ProtoError::new(ErrorCode::UnknownType, format!("unknown request type {t:?}")), id)
            }
            Ok(Request::Exec(req)) => {
                if !ctx.cfg.allow_exec {
                    return self.fail(ProtoError::new(ErrorCode::ExecDisabled, "exec is disabled on this server"), id);
                }
                if *ctx.children >= ctx.cfg.max_children {
                    debug!("{}: exec waits for a free child slot", self.name);
                    ctx.waiters.push_back(self.key);
                    self.phase = Phase::Queued { req, id };
                } else {
                    self.spawn(req, id, ctx);
                }
            }
        }
    }

    fn spawn(&mut self, req: msg::Exec, id: Option<Value>, ctx: &mut Ctx) {
        match Exec::start(&req, id.clone(), self.key, ctx) {
            Ok(e) => {
                debug!("{}: exec {:?} as pid {}", self.name, req.command, e.pid());
                self.phase = Phase::Running(Op::Exec(e));
            }
            Err(err) => {
                self.phase = Phase::Ready;
                self.fail(err, id);
            }
        }
    }

    /// Advances the request in flight. Returns a count of things done.
    fn run_op(&mut self, ctx: &mut Ctx, budget: usize) -> usize {
        match &mut self.phase {
            Phase::Queued { .. } if *ctx.children < ctx.cfg.max_children => {
                let Phase::Queued { req, id } = std::mem::replace(&mut self.phase, Phase::Ready) else {
                    unreachable!()
                };
                self.spawn(req, id, ctx);
                1
            }
            Phase::Running(Op::Exec(e)) => {
                let mut moved = e.pump_stdin();
                moved += e.pump_output(&mut self.out, HIGH_WATER, budget, ctx.scratch);
                if e.is_finished() {
                    let frame = e.exit_frame();
                    self.queue(frame, &[]);
                    self.op_done();
                    moved += 1;
                }
                moved
            }
            Phase::Running(Op::Get(g)) => {
                match g.pump(&mut self.sock, &mut self.sock_write, &mut self.out, HIGH_WATER, budget, ctx.scratch) {
                    Ok(Progress::Moved(n)) => n,
                    Ok(Progress::Done) => {
                        self.op_done();
                        1
                    }
                    // The frame's size is promised: a body that cannot be
                    // completed leaves nothing to do but close.
                    Ok(Progress::Short) => {
                        warn!("{}: get: the file shrank while it was sent", self.name);
                        self.close_now("file shrank during get");
                        1
                    }
                    Err(e) => {
                        warn!("{}: get: {e}", self.name);
                        self.close_now(&format!("get failed: {e}"));
                        1
                    }
                }
            }
            _ => 0,
        }
    }

    /// A request in flight has been answered in full: back to `Ready`.
    fn op_done(&mut self) {
        self.phase = Phase::Ready;
        self.last_active = self.now;
        if self.draining {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), None);
        }
    }

    /// The put in flight has its whole body: commit it and answer.
    fn finish_put(&mut self) {
        let Phase::Running(Op::Put(p)) = std::mem::replace(&mut self.phase, Phase::Ready) else { return };
        let id = p.id().cloned();
        match p.finish() {
            None => {}
            Some(Ok(reply)) => self.queue(reply, &[]),
            Some(Err(e)) => self.fail(e, id),
        }
        self.op_done();
    }

    /// The peer shut down its side: the session is over. Replies already
    /// produced are flushed; a command in flight is terminated (as sshd does
    /// when its client goes). Stdin EOF has its own frame, so no client needs
    /// a half-close to finish a request.
    fn on_peer_eof(&mut self) -> usize {
        if !self.peer_eof {
            return 0;
        }
        match &self.phase {
            Phase::Closing { shut: true, .. } => {
                self.close_now("done");
                1
            }
            Phase::Closing { .. } | Phase::Closed => 0,
            Phase::Running(_) | Phase::Queued { .. } => {
                self.begin_close("peer closed during a command");
                1
            }
            Phase::AwaitAuth { .. } | Phase::Ready => {
                if self.inbuf.is_empty() {
                    self.begin_close("peer closed");
                } else {
                    self.begin_close("peer closed in the middle of a frame");
                }
                1
            }
        }
    }

    // ---- replies and closing --------------------------------------------

    fn queue(&mut self, header: Map<String, Value>, body: &[u8]) {
        encode_frame(self.out.tail(), header, body);
    }

    /// Sends an error frame; a fatal code also closes the connection.
    fn fail(&mut self, err: ProtoError, id: Option<Value>) {
        self.queue(msg::error(&err, id.as_ref()), &[]);
        if err.code.is_fatal() {
            self.begin_close(err.to_string());
        } else {
            debug!("{}: error: {}", self.name, err);
        }
    }

    fn begin_close(&mut self, reason: impl Into<String>) {
        self.reason.get_or_insert_with(|| reason.into());
        self.abandon_op();
        self.held = None;
        self.phase = Phase::Closing { since: self.now, shut: false };
    }

    fn close_now(&mut self, reason: &str) {
        self.reason.get_or_insert_with(|| reason.to_string());
        self.abandon_op();
        self.phase = Phase::Closed;
    }

    fn close_io(&mut self, e: &io::Error) {
        if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) {
            warn!("{}: socket error: {}", self.name, e);
        }
        self.close_now(&e.to_string());
    }

    /// A request in flight when the connection goes: its child is signalled
    /// and left for the reactor to reap.
    fn abandon_op(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Ready) {
            Phase::Running(Op::Exec(e)) => {
                debug!("{}: abandoning pid {}", self.name, e.pid());
                self.orphan = e.abandon();
            }
            // Dropping a put removes its temporary file.
            Phase::Running(Op::Put(_)) => debug!("{}: abandoning a put", self.name),
            other => self.phase = other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::{client_mac, server_mac, Key, Keys};
    use serde_json::json;
    use std::collections::VecDeque;

    /// An in-memory socket: `input` is what the peer sent, `output` what we wrote.
    #[derive(Default)]
    struct Duplex {
        input: Vec<u8>,
        pos: usize,
        eof: bool,
        output: Vec<u8>,
        write_blocked: bool,
        shut: bool,
    }

    impl Read for Duplex {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.input.len() {
                return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
            }
            let n = buf.len().min(self.input.len() - self.pos);
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Duplex {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.write_blocked {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for Duplex {
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.shut = true;
            Ok(())
        }
    }

    const SECRET: &str = "0123456789abcdef0123";
    const CLIENT_NONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    struct Harness {
        poll: mio::Poll,
        cfg: Config,
        children: usize,
        waiters: VecDeque<usize>,
        scratch: Vec<u8>,
        now: Instant,
    }

    impl Harness {
        fn new() -> Harness {
            let mut cfg = Config::for_tests(std::env::temp_dir());
            cfg.keys = Keys { keys: vec![Key { id: "k".into(), secret: SECRET.into() }] };
            Harness {
                poll: mio::Poll::new().unwrap(),
                cfg,
                children: 0,
                waiters: VecDeque::new(),
                scratch: vec![0; 64 * 1024],
                now: Instant::now(),
            }
        }

        fn ctx(&mut self) -> Ctx<'_> {
            Ctx {
                registry: self.poll.registry(),
                cfg: &self.cfg,
                now: self.now,
                children: &mut self.children,
                waiters: &mut self.waiters,
                scratch: &mut self.scratch,
            }
        }

        fn conn(&mut self) -> Conn<Duplex> {
            let mut ctx = self.ctx();
            let mut c = Conn::new(Duplex::default(), 0, "#1 test".into(), &mut ctx);
            c.pump(&mut ctx);
            c
        }
    }

    fn frame(h: Value, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, h.as_object().unwrap().clone(), body);
        out
    }

    /// Decodes every frame the connection wrote (bodies as lossy text).
    fn written(c: &mut Conn<Duplex>) -> Vec<Value> {
        let out = std::mem::take(&mut c.sock.output);
        let mut dec = Decoder::default();
        let mut frames = Vec::new();
        let mut pos = 0;
        while let Some((item, n)) = dec.decode(&out[pos..]).unwrap() {
            match item {
                Item::Header(h) => frames.push(Value::Object(h.fields)),
                Item::Body { range, .. } => {
                    let body = String::from_utf8_lossy(&out[pos + range.start..pos + range.end]).into_owned();
                    frames.last_mut().unwrap()["body"] = json!(body);
                }
            }
            pos += n;
        }
        assert_eq!(pos, out.len(), "a partial frame was written");
        frames
    }

    fn send(h: &mut Harness, c: &mut Conn<Duplex>, bytes: &[u8]) -> Step {
        c.sock.input.extend_from_slice(bytes);
        c.on_socket_event(true, true);
        c.pump(&mut h.ctx())
    }

    /// `send`, then pump as the reactor would until the turn's budget stops running out.
    fn send_all(h: &mut Harness, c: &mut Conn<Duplex>, bytes: &[u8]) -> Step {
        let mut step = send(h, c, bytes);
        for _ in 0..1000 {
            if step != Step::Yield {
                break;
            }
            step = c.pump(&mut h.ctx());
        }
        step
    }

    fn authed(h: &mut Harness) -> Conn<Duplex> {
        let mut c = h.conn();
        let hello = written(&mut c).remove(0);
        let sn = hello["nonce"].as_str().unwrap().to_string();
        let mac = client_mac(SECRET.as_bytes(), &sn, CLIENT_NONCE);
        send(h, &mut c, &frame(json!({"type":"auth","key_id":"k","nonce":CLIENT_NONCE,"mac":mac}), b""));
        let w = written(&mut c);
        assert_eq!(w[0]["type"], "welcome");
        assert_eq!(w[0]["mac"], server_mac(SECRET.as_bytes(), CLIENT_NONCE, &sn));
        c
    }

    #[test]
    fn hello_carries_a_fresh_nonce() {
        let mut h = Harness::new();
        let a = written(&mut h.conn()).remove(0);
        let b = written(&mut h.conn()).remove(0);
        assert_eq!(a["type"], "hello");
        assert_eq!(a["proto"], 1);
        assert_eq!(a["auth"], json!(["hmac-sha256"]));
        assert!(auth::is_nonce_hex(a["nonce"].as_str().unwrap()));
        assert_ne!(a["nonce"], b["nonce"]);
    }

    #[test]
    fn good_auth_then_pipelined_pings_answer_in_order() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let mut bytes = frame(json!({"type":"ping","id":1}), b"");
        bytes.extend(frame(json!({"type":"ping","id":"two"}), b""));
        assert_eq!(send(&mut h, &mut c, &bytes), Step::Idle);
        assert_eq!(written(&mut c), [json!({"type":"pong","id":1}), json!({"type":"pong","id":"two"})]);
    }

    #[test]
    fn wrong_mac_and_unknown_key_get_the_same_reply_and_close() {
        let mut h = Harness::new();
        let mut replies = Vec::new();
        for key_id in ["k", "nobody"] {
            let mut c = h.conn();
            written(&mut c);
            let mac = "00".repeat(32);
            send(&mut h, &mut c, &frame(json!({"type":"auth","key_id":key_id,"nonce":CLIENT_NONCE,"mac":mac}), b""));
            assert!(matches!(c.phase, Phase::Closing { shut: true, .. }));
            replies.push(written(&mut c));
        }
        assert_eq!(replies[0], replies[1]);
        assert_eq!(replies[0][0]["code"], "auth-failed");
    }

    #[test]
    fn a_request_before_auth_is_auth_required_and_closes() {
        let mut h = Harness::new();
        let mut c = h.conn();
        written(&mut c);
        send(&mut h, &mut c, &frame(json!({"type":"ping"}), b""));
        let w = written(&mut c);
        assert_eq!(w[0]["code"], "auth-required");
        assert!(c.sock.shut, "write side shut down after the error");
        // The peer hangs up: the connection is done.
        c.sock.eof = true;
        assert_eq!(send(&mut h, &mut c, b""), Step::Close);
    }

    #[test]
    fn auth_timeout_closes() {
        let mut h = Harness::new();
        let mut c = h.conn();
        h.now += h.cfg.auth_timeout;
        c.on_deadline(&mut h.ctx());
        assert!(matches!(c.phase, Phase::Closing { .. }));
    }

    #[test]
    fn unknown_type_skips_its_body_and_keeps_the_connection() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let mut bytes = frame(json!({"type":"frobnicate","id":9}), b"body bytes that are skipped");
        bytes.extend(frame(json!({"type":"ping"}), b""));
        send(&mut h, &mut c, &bytes);
        let w = written(&mut c);
        assert_eq!(w[0]["code"], "unknown-type");
        assert_eq!(w[0]["id"], 9);
        assert_eq!(w[1]["type"], "pong");
        assert!(matches!(c.phase, Phase::Ready));
    }

    #[test]
    fn bad_frames_are_fatal() {
        for (bytes, code) in [
            (vec![0, 0, 0, 0], "bad-frame"),
            (vec![0, 1, 0, 1], "frame-too-large"),
            (frame(json!({"size":1}), b"x"), "bad-frame"),
        ] {
            let mut h = Harness::new();
            let mut c = authed(&mut h);
            send(&mut h, &mut c, &bytes);
            assert_eq!(written(&mut c)[0]["code"], code);
            assert!(matches!(c.phase, Phase::Closing { .. }));
        }
    }

    #[test]
    fn a_frame_cut_by_eof_closes_quietly() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let bytes = frame(json!({"type":"ping"}), b"");
        c.sock.eof = true;
        send(&mut h, &mut c, &bytes[..5]);
        assert!(written(&mut c).is_empty());
        assert_eq!(c.pump(&mut h.ctx()), Step::Close);
    }

    #[test]
    fn a_client_that_does_not_read_stops_being_parsed() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        c.sock.write_blocked = true;
        // Pings whose pongs exceed the high-water mark and then the input cap.
        let ping = frame(json!({"type":"ping","id":"x".repeat(1000)}), b"");
        let many: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 4000).collect();
        let mut step = send(&mut h, &mut c, &many);
        for _ in 0..100 {
            if step != Step::Yield {
                break;
            }
            step = c.pump(&mut h.ctx());
        }
        assert_eq!(step, Step::Idle);
        assert!(c.out.len() >= HIGH_WATER && c.out.len() < HIGH_WATER + 2 * ping.len());
        assert!(c.inbuf.len() <= IN_CAP);
        // Once it reads, the rest is served.
        c.sock.write_blocked = false;
        for _ in 0..100 {
            c.on_socket_event(true, true);
            c.pump(&mut h.ctx());
        }
        assert_eq!(written(&mut c).len(), 4000);
    }

    #[test]
    fn bye_flushes_then_half_closes() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let mut bytes = frame(json!({"type":"ping"}), b"");
        bytes.extend(frame(json!({"type":"bye"}), b""));
        bytes.extend(frame(json!({"type":"ping"}), b""));
        send(&mut h, &mut c, &bytes);
        assert_eq!(written(&mut c), [json!({"type":"pong"})]);
        assert!(c.sock.shut);
    }

    #[test]
    fn exec_disabled_is_not_fatal() {
        let mut h = Harness::new();
        h.cfg.allow_exec = false;
        let mut c = authed(&mut h);
        send(&mut h, &mut c, &frame(json!({"type":"exec","cmd":"true"}), b""));
        assert_eq!(written(&mut c)[0]["code"], "exec-disabled");
        assert!(matches!(c.phase, Phase::Ready));
    }

    /// A harness serving a fresh temporary root.
    fn with_root() -> (Harness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Harness::new();
        h.cfg.root = dir.path().canonicalize().unwrap();
        (h, dir)
    }

    #[test]
    fn a_sized_put_split_anywhere_commits_once_its_body_is_complete() {
        let (mut h, dir) = with_root();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let bytes = frame(json!({"type":"put","path":"sub/f","id":1}), &body);
        for cut in [1, 4, 30, bytes.len() / 2, bytes.len() - 1] {
            let mut c = authed(&mut h);
            send_all(&mut h, &mut c, &bytes[..cut]);
            assert!(written(&mut c).is_empty(), "no reply before the body is complete (cut {cut})");
            if cut > 100 {
                assert!(matches!(c.phase, Phase::Running(Op::Put(_))));
            }
            send_all(&mut h, &mut c, &bytes[cut..]);
            let w = written(&mut c);
            assert_eq!(w[0]["type"], "ok", "{w:?}");
            assert_eq!(w[0]["file_size"], 200_000);
            assert!(matches!(c.phase, Phase::Ready));
            assert!(std::fs::read(dir.path().join("sub/f")).unwrap() == body);
        }
    }

    #[test]
    fn a_put_error_is_sent_at_once_and_the_body_skipped() {
        let (mut h, dir) = with_root();
        h.cfg.read_only = true;
        let mut c = authed(&mut h);
        let bytes = frame(json!({"type":"put","path":"f","id":"p"}), &[b'x'; 1000]);
        send(&mut h, &mut c, &bytes[..100]);
        let w = written(&mut c);
        assert_eq!(w, [json!({"type":"error","code":"read-only","message":"this server is read-only","id":"p"})]);
        let mut rest = bytes[100..].to_vec();
        rest.extend(frame(json!({"type":"ping"}), b""));
        send(&mut h, &mut c, &rest);
        assert_eq!(written(&mut c), [json!({"type":"pong"})], "no second reply; the next request is served");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_streaming_put_ends_with_an_empty_data_frame() {
        let (mut h, dir) = with_root();
        let mut c = authed(&mut h);
        let mut bytes = frame(json!({"type":"put","path":"s","stream":true}), b"");
        bytes.extend(frame(json!({"type":"data"}), b"hello "));
        bytes.extend(frame(json!({"type":"data"}), b"world"));
        send(&mut h, &mut c, &bytes);
        assert!(written(&mut c).is_empty());
        send(&mut h, &mut c, &frame(json!({"type":"data"}), b""));
        assert_eq!(written(&mut c)[0]["file_size"], 11);
        assert_eq!(std::fs::read(dir.path().join("s")).unwrap(), b"hello world");
    }

    #[test]
    fn a_dropped_connection_removes_the_temp_file() {
        let (mut h, dir) = with_root();
        let mut c = authed(&mut h);
        let bytes = frame(json!({"type":"put","path":"f"}), &[0u8; 5000]);
        send(&mut h, &mut c, &bytes[..3000]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temp file while the body comes");
        c.sock.eof = true;
        send(&mut h, &mut c, b"");
        assert!(matches!(c.phase, Phase::Closing { .. } | Phase::Closed));
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing left behind");
    }

    #[test]
    fn a_get_stops_at_the_high_water_mark_until_the_peer_reads() {
        let (mut h, dir) = with_root();
        let data: Vec<u8> = (0..3 * HIGH_WATER as u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let mut c = authed(&mut h);
        c.sock.write_blocked = true;
        let step = send_all(&mut h, &mut c, &frame(json!({"type":"get","path":"f"}), b""));
        assert_eq!(step, Step::Idle);
        assert!(c.out.len() >= HIGH_WATER && c.out.len() <= HIGH_WATER + super::super::ops::get::CHUNK + 200);
        c.sock.write_blocked = false;
        for _ in 0..1000 {
            c.on_socket_event(true, true);
            if c.pump(&mut h.ctx()) == Step::Idle && matches!(c.phase, Phase::Ready) {
                break;
            }
        }
        let w = written(&mut c);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0]["type"], "file");
        assert!(w[0]["body"].as_str().unwrap().len() >= data.len(), "the whole body came");
        assert_eq!(w[1]["sha256"], to_hex(&<sha2::Sha256 as sha2::Digest>::digest(&data)));
    }

    #[test]
    fn idle_timeout_closes_a_ready_connection() {
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let d = c.deadline(&h.cfg).unwrap();
        assert_eq!(d, h.now + h.cfg.idle_timeout);
        h.now = d;
        c.on_deadline(&mut h.ctx());
        assert!(matches!(c.phase, Phase::Closing { .. }));
    }
}
