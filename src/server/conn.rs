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
//! ACCESS LOG: every request served after authentication (bye and the stdin
//! and signal frames of a running command are not requests) gets one info line
//! when it ends, from an `Access` record kept while it is in flight:
//! `access: #12 127.0.0.1:5555 key=laptop exec argv=["ls","-l"] in=0 out=1234 dur=0.012s result=exit:0`.
//! `in` counts request body bytes (stdin, the upload), `out` reply body bytes
//! (stdout and stderr, the file, the listing); `result` is `exit:CODE`,
//! `signal:N`, `ok`, `error:CODE`, or `aborted` when the connection went first.
//! Commands and paths are quoted with every control character escaped, so a
//! newline in them cannot forge a line. Never a secret, never a MAC.
//!
//! Backpressure: when the output buffer reaches `HIGH_WATER`, the connection
//! stops reading its child's pipes and stops parsing requests; once its input
//! buffer is full (`IN_CAP`) it stops reading the socket. Requests that arrive
//! while an exec runs wait in the input buffer, in order.

use super::buf::Buf;
use super::io::{interrupted, would_block, Socket};
use super::ops::access::Access;
use super::ops::{self, Ctx, FrameUse, Op, Progress, Reply, Start, Via};
use super::token::Role;
use crate::config::Config;
use crate::proto::auth::{self, to_hex};
use crate::proto::msg::{self, Request};
use crate::proto::{encode_frame, Decoder, ErrorCode, Header, Item, ProtoError, MAX_HEADER};
use log::{debug, info, warn};
use serde_json::{Map, Value};
use std::io;
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

/// Where a connection stands. See the module doc for the transitions.
pub enum Phase {
    /// `hello` sent; waiting for `auth` until `deadline`.
    AwaitAuth { nonce: String, deadline: Instant },
    /// Authenticated, between requests.
    Ready,
    /// An `exec` waiting for a free child slot.
    Queued { req: Box<msg::Exec>, id: Option<Value> },
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
    /// The op in flight's; `ends_op` when it is the request's own body (a sized put).
    Op { ends_op: bool },
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
    held: Option<Box<Header>>,
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
    /// The request in flight, for its access line.
    access: Option<Access>,
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
            access: None,
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
        if let Phase::Running(op) = &mut self.phase {
            op.on_pipe_event(role);
        }
    }

    /// Reaps this connection's child if it exited. True when one was reaped.
    pub fn reap(&mut self, ctx: &mut Ctx) -> bool {
        match &mut self.phase {
            Phase::Running(op) => op.try_reap(ctx.children),
            _ => false,
        }
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
                self.release_idle_buffers();
                return Step::Idle;
            }
            budget = budget.saturating_sub(moved);
            if budget == 0 {
                return Step::Yield;
            }
        }
    }

    /// A connection between requests with nothing buffered keeps no buffer:
    /// thousands of idle connections cost little more than their sockets.
    fn release_idle_buffers(&mut self) {
        if matches!(self.phase, Phase::Ready | Phase::AwaitAuth { .. }) && self.inbuf.is_empty() {
            self.inbuf = Vec::new();
            self.out.release_if_empty();
        }
    }

    /// The next time `on_deadline` has something to do.
    pub fn deadline(&self, cfg: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitAuth { deadline, .. } => Some(*deadline),
            Phase::Ready if cfg.idle_timeout.is_zero() => None,
            Phase::Ready => Some(self.last_active + cfg.idle_timeout),
            Phase::Running(op) => op.deadline((!cfg.idle_timeout.is_zero()).then(|| self.last_active + cfg.idle_timeout)),
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
            Phase::Running(op) => {
                if !op.on_deadline(ctx.now) {
                    self.begin_close(format!("transfer idle for {}s", ctx.cfg.idle_timeout.as_secs()))
                }
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
        if let Phase::Running(op) = &self.phase {
            op.signal(msg::SignalName::TERM);
        }
    }

    /// The daemon is exiting: KILL and reap the child in flight.
    pub fn kill_and_reap_child(&mut self) {
        if let Phase::Running(op) = &mut self.phase {
            op.kill_and_reap();
        }
    }

    /// Pid of the running child, if any.
    pub fn child_pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Running(op) => op.pid(),
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
        // A transport with bytes of its own to push (TLS records) gets them out
        // before the connection counts its output as sent.
        if self.sock_write && self.out.is_empty() && self.sock.wants_write() {
            match self.sock.flush() {
                Ok(()) => {}
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
            if self.out.is_empty() && !self.sock.wants_write() {
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
            Phase::Running(op) => self.held.is_none() && op.takes_frames(),
            Phase::Queued { .. } | Phase::Closing { .. } | Phase::Closed => false,
        }
    }

    /// Decodes and handles frames while the phase allows. Returns a count of
    /// things done (bytes consumed, plus one for a held request taken up).
    fn parse(&mut self, ctx: &mut Ctx) -> usize {
        let mut used = 0;
        let mut done = 0;
        while self.may_parse() {
            if let Some(h) = self.held.take().map(|h| *h) {
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
                    let mut ended = false;
                    if let (Sink::Op { ends_op }, Phase::Running(op)) = (self.sink, &mut self.phase) {
                        if let Some(a) = &mut self.access {
                            a.bytes_in += chunk.len() as u64;
                        }
                        failed = op.on_body(chunk).map(|err| (err, op.id().cloned()));
                        ended = last && ends_op;
                    }
                    used += n;
                    if let Some((err, id)) = failed {
                        self.fail(err, id);
                    }
                    if ended {
                        self.end_body();
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
            Phase::Running(op) => match op.on_frame(&h) {
                FrameUse::Body => self.sink = Sink::Op { ends_op: false },
                FrameUse::End => self.end_body(),
                FrameUse::Used => debug!("{}: {:?} frame to pid {:?}", self.name, h.kind, op.pid()),
                FrameUse::Answer(err) => self.send_error(err, h.id),
                FrameUse::Interrupt(err) => {
                    let id = op.id().cloned();
                    self.phase = Phase::Ready;
                    self.fail(err, id);
                    self.end_access("ok");
                    self.on_header(h, ctx);
                }
                FrameUse::Hold => self.held = Some(Box::new(h)),
            },
            // Anything else waits until the request in flight is done.
            _ => self.held = Some(Box::new(h)),
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
        let req = Request::from_header(&h);
        match req {
            Ok(Request::Bye) => return self.begin_close("bye"),
            // Late stdin or signal for a command that has already ended: the
            // race is normal (a command may exit while its input is in flight).
            Ok(Request::Stdin | Request::Signal(_)) => return,
            _ => {}
        }
        self.access = Some(Access::new(&h, &req, self.now));
        if self.draining {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), id);
        } else {
            self.serve(&h, req, id, ctx);
        }
        // A request answered at once ends here; one in flight ends in `op_done`
        // (or when the connection goes).
        if !matches!(self.phase, Phase::Running(_) | Phase::Queued { .. }) {
            self.end_access("ok");
        }
    }

    fn serve(&mut self, h: &Header, req: Result<Request, ProtoError>, id: Option<Value>, ctx: &mut Ctx) {
        match ops::start(req, id.as_ref(), &h.kind, Via::Tcp { key: self.key }, ctx) {
            Err(e) => self.fail(e, id),
            Ok(Start::Nothing) => {}
            Ok(Start::Reply(Reply::Pong)) => msg::encode_pong(self.out.tail(), id.as_ref()),
            Ok(Start::Reply(Reply::Frame(header, body))) => {
                self.count_out(body.len());
                self.queue(header, &body)
            }
            Ok(Start::Queued(req)) => {
                debug!("{}: exec waits for a free child slot", self.name);
                self.phase = Phase::Queued { req, id };
            }
            Ok(Start::Running(op)) => {
                debug!("{}: {} started{}", self.name, h.kind, op.pid().map(|p| format!(" as pid {p}")).unwrap_or_default());
                self.begin_op(op, h.size);
            }
            Ok(Start::Refused(op, e)) => {
                self.phase = Phase::Running(op);
                self.fail(e, id);
                self.begin_body(h.size);
            }
        }
    }

    fn begin_op(&mut self, op: Op, size: u64) {
        self.phase = Phase::Running(op);
        self.begin_body(size);
    }

    /// A sized put's body is its own frame's: it ends now if it is empty.
    fn begin_body(&mut self, size: u64) {
        if let Phase::Running(op) = &self.phase {
            if op.body_in_request() {
                if size == 0 {
                    self.end_body();
                } else {
                    self.sink = Sink::Op { ends_op: true };
                }
            }
        }
    }

    /// Spawns a queued exec once its slot is free.
    fn resume(&mut self, req: &msg::Exec, id: Option<Value>, ctx: &mut Ctx) {
        match ops::resume(req, id.clone(), Via::Tcp { key: self.key }, ctx) {
            Ok(op) => {
                debug!("{}: exec started as pid {:?}", self.name, op.pid());
                self.phase = Phase::Running(op);
            }
            Err(err) => {
                self.phase = Phase::Ready;
                self.fail(err, id);
                self.end_access("ok");
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
                self.resume(&req, id, ctx);
                1
            }
            Phase::Running(op) => {
                let (sock, writable) = (&mut self.sock, &mut self.sock_write);
                let progress = op.pump(sock, writable, &mut self.out, HIGH_WATER, budget, ctx.scratch);
                if let Some(a) = &mut self.access {
                    a.bytes_out = op.bytes_out();
                }
                match progress {
                    Ok(Progress::Moved(n)) => n,
                    Ok(Progress::Done) => {
                        if let (Some(r), Some(a)) = (op.result(), &mut self.access) {
                            a.set_result(|| r);
                        }
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
        self.end_access("ok");
        if self.draining {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), None);
        }
    }

    /// The op in flight has its whole body (a put): it answers, and is done.
    fn end_body(&mut self) {
        let Phase::Running(op) = std::mem::replace(&mut self.phase, Phase::Ready) else { return };
        let id = op.id().cloned();
        if let Err(e) = op.end_body(&mut self.out) {
            self.fail(e, id);
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

    /// Answers the request in flight with an error (its access result); a
    /// fatal code also closes the connection.
    fn fail(&mut self, err: ProtoError, id: Option<Value>) {
        if let Some(a) = &mut self.access {
            a.set_result(|| format!("error:{}", err.code.as_str()));
        }
        self.send_error(err, id);
    }

    /// Sends an error frame; a fatal code also closes the connection.
    fn send_error(&mut self, err: ProtoError, id: Option<Value>) {
        self.queue(msg::error(&err, id.as_ref()), &[]);
        if err.code.is_fatal() {
            self.begin_close(err.to_string());
        } else {
            debug!("{}: error: {}", self.name, err);
        }
    }

    fn count_out(&mut self, n: usize) {
        if let Some(a) = &mut self.access {
            a.bytes_out += n as u64;
        }
    }

    /// Writes the access line of the request in flight, if any; `result`
    /// unless one was recorded.
    fn end_access(&mut self, result: &str) {
        if let Some(a) = self.access.take() {
            a.log(&self.name, self.key_id.as_deref(), self.now, result);
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
            Phase::Running(op) => {
                debug!("{}: abandoning the request in flight (pid {:?})", self.name, op.pid());
                self.orphan = op.abandon();
            }
            other => self.phase = other,
        }
        self.end_access("aborted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::{client_mac, server_mac};
    use crate::server::testing::{Duplex, Harness};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123";
    const CLIENT_NONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

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
        assert_eq!(w[0]["type"], msg::WELCOME);
        assert_eq!(w[0]["mac"], server_mac(SECRET.as_bytes(), CLIENT_NONCE, &sn));
        c
    }

    #[test]
    fn hello_carries_a_fresh_nonce() {
        let mut h = Harness::new();
        let a = written(&mut h.conn()).remove(0);
        let b = written(&mut h.conn()).remove(0);
        assert_eq!(a["type"], msg::HELLO);
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

    // ---- the access log ---------------------------------------------------

    thread_local! {
        /// Log lines of the current test's thread, as `LEVEL: message`.
        static LINES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A logger that keeps each thread's lines for that thread's test.
    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            LINES.with(|l| l.borrow_mut().push(format!("{}: {}", r.level(), r.args())));
        }
        fn flush(&self) {}
    }

    /// Starts capturing this thread's log lines (the logger is installed once per process).
    fn capture_logs() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_boxed_logger(Box::new(Capture)).expect("no other logger in unit tests");
            log::set_max_level(log::LevelFilter::Debug);
        });
        LINES.with(|l| l.borrow_mut().clear());
    }

    /// The access lines logged so far on this thread.
    fn access_lines() -> Vec<String> {
        LINES.with(|l| l.borrow().iter().filter_map(|x| x.strip_prefix("INFO: access: ").map(str::to_string)).collect())
    }

    /// Drives a running exec to its end the way the reactor does: pipe
    /// readiness from the poll, reaping, pumping. Bounded.
    fn finish_exec(h: &mut Harness, c: &mut Conn<Duplex>) {
        let mut events = mio::Events::with_capacity(16);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !matches!(c.phase, Phase::Ready) {
            assert!(Instant::now() < deadline, "the command did not finish");
            h.poll.poll(&mut events, Some(Duration::from_millis(10))).unwrap();
            for ev in events.iter() {
                if let super::super::token::Source::Conn(_, role) = super::super::token::parse(ev.token()) {
                    c.on_pipe_event(role);
                }
            }
            c.reap(&mut h.ctx());
            c.on_socket_event(true, true);
            c.pump(&mut h.ctx());
        }
    }

    #[test]
    fn an_exec_gets_one_access_line_with_its_bytes_duration_and_status() {
        capture_logs();
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        let script = "cat; printf %s 12345 >&2; exit 3";
        let mut bytes = frame(json!({"type":"exec","argv":["sh","-c",script],"stdin":true,"id":1}), b"");
        bytes.extend(frame(json!({"type":"stdin"}), b"howdy"));
        // A bad signal frame is answered, but the command's result stays its exit.
        bytes.extend(frame(json!({"type":"signal","signal":"BOGUS"}), b""));
        bytes.extend(frame(json!({"type":"stdin"}), b""));
        send(&mut h, &mut c, &bytes);
        assert!(access_lines().is_empty(), "no line while the command runs");
        h.now += Duration::from_millis(1500);
        finish_exec(&mut h, &mut c);
        let w = written(&mut c);
        assert_eq!(w.last().unwrap()["code"], 3, "{w:?}");
        assert_eq!(
            access_lines(),
            [format!(r#"#1 test key=k exec argv=["sh","-c","{script}"] in=5 out=10 dur=1.500s result=exit:3"#)]
        );
    }

    #[test]
    fn a_command_string_is_quoted_so_it_cannot_forge_a_line() {
        capture_logs();
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        send(&mut h, &mut c, &frame(json!({"type":"exec","cmd":"exit 0\n\u{1b}[2Jaccess: forged \"x\""}), b""));
        finish_exec(&mut h, &mut c);
        let lines = access_lines();
        assert_eq!(
            lines,
            [r#"#1 test key=k exec cmd="exit 0\n\u001b[2Jaccess: forged \"x\"" in=0 out=0 dur=0.000s result=exit:0"#]
        );
        assert!(!lines[0].contains(['\n', '\u{1b}']));
    }

    #[test]
    fn a_killed_command_reports_its_signal_and_an_abandoned_one_is_aborted() {
        capture_logs();
        let mut h = Harness::new();
        let mut c = authed(&mut h);
        send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["sh","-c","kill -9 $$"]}), b""));
        finish_exec(&mut h, &mut c);
        assert!(access_lines()[0].ends_with("result=signal:9"), "{:?}", access_lines());

        let mut c = authed(&mut h);
        send(&mut h, &mut c, &frame(json!({"type":"exec","argv":["sleep","30"]}), b""));
        c.sock.eof = true;
        send(&mut h, &mut c, b"");
        let mut child = c.take_orphan().expect("the child is left to be reaped");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(access_lines()[1], r#"#1 test key=k exec argv=["sleep","30"] in=0 out=0 dur=0.000s result=aborted"#);
    }

    #[test]
    fn a_put_gets_its_access_line_once_the_body_is_in() {
        capture_logs();
        let (mut h, _dir) = with_root();
        let mut c = authed(&mut h);
        let bytes = frame(json!({"type":"put","path":"sub/f"}), &[7u8; 1000]);
        send(&mut h, &mut c, &bytes[..500]);
        assert!(access_lines().is_empty());
        h.now += Duration::from_millis(12);
        send(&mut h, &mut c, &bytes[500..]);
        assert_eq!(access_lines(), [r#"#1 test key=k put path="sub/f" in=1000 out=0 dur=0.012s result=ok"#]);

        // Streaming: the data frames' bodies are counted.
        let mut bytes = frame(json!({"type":"put","path":"s","stream":true}), b"");
        bytes.extend(frame(json!({"type":"data"}), b"hello "));
        bytes.extend(frame(json!({"type":"data"}), b"world"));
        bytes.extend(frame(json!({"type":"data"}), b""));
        send(&mut h, &mut c, &bytes);
        assert_eq!(access_lines()[1], r#"#1 test key=k put path="s" in=11 out=0 dur=0.000s result=ok"#);
    }

    #[test]
    fn an_error_reply_is_the_result_and_a_refused_put_still_counts_its_body() {
        capture_logs();
        let (mut h, _dir) = with_root();
        h.cfg.read_only = true;
        let mut c = authed(&mut h);
        let bytes = frame(json!({"type":"put","path":"f","id":"p"}), &[b'x'; 1000]);
        send(&mut h, &mut c, &bytes[..100]);
        assert_eq!(written(&mut c)[0]["code"], "read-only");
        assert!(access_lines().is_empty(), "the line comes when the body has been skipped");
        send(&mut h, &mut c, &bytes[100..]);
        let mut more = frame(json!({"type":"get","path":"missing"}), b"");
        more.extend(frame(json!({"type":"fr\nob"}), b"skipped"));
        more.extend(frame(json!({"type":"exec"}), b""));
        send(&mut h, &mut c, &more);
        assert_eq!(
            access_lines(),
            [
                r#"#1 test key=k put path="f" in=1000 out=0 dur=0.000s result=error:read-only"#,
                r#"#1 test key=k get path="missing" in=0 out=0 dur=0.000s result=error:not-found"#,
                r#"#1 test key=k unknown type="fr\nob" in=0 out=0 dur=0.000s result=error:unknown-type"#,
                r#"#1 test key=k exec in=0 out=0 dur=0.000s result=error:bad-request"#,
            ]
        );
    }

    #[test]
    fn get_list_stat_and_ping_are_logged_with_their_reply_bodies() {
        capture_logs();
        let (mut h, dir) = with_root();
        std::fs::write(dir.path().join("f"), vec![1u8; 300_000]).unwrap();
        let mut c = authed(&mut h);
        let mut bytes = frame(json!({"type":"get","path":"f","offset":1000}), b"");
        bytes.extend(frame(json!({"type":"list","path":"."}), b""));
        bytes.extend(frame(json!({"type":"stat","path":"f"}), b""));
        bytes.extend(frame(json!({"type":"ping"}), b""));
        send_all(&mut h, &mut c, &bytes);
        let w = written(&mut c);
        let listing = w.iter().find(|f| f["type"] == "listing").unwrap()["body"].as_str().unwrap().len();
        assert_eq!(
            access_lines(),
            [
                r#"#1 test key=k get path="f" in=0 out=299000 dur=0.000s result=ok"#.to_string(),
                format!(r#"#1 test key=k list path="." in=0 out={listing} dur=0.000s result=ok"#),
                r#"#1 test key=k stat path="f" in=0 out=0 dur=0.000s result=ok"#.to_string(),
            ]
        );
        let debug = LINES.with(|l| l.borrow().iter().filter(|x| x.starts_with("DEBUG: access: ")).cloned().collect::<Vec<_>>());
        assert_eq!(debug, ["DEBUG: access: #1 test key=k ping in=0 out=0 dur=0.000s result=ok"], "pings log at debug");
    }

    #[test]
    fn no_access_line_before_auth_and_failed_auth_is_a_warning_with_the_peer() {
        capture_logs();
        let mut h = Harness::new();
        let mut c = h.conn();
        written(&mut c);
        let mac = "00".repeat(32);
        send(&mut h, &mut c, &frame(json!({"type":"auth","key_id":"k","nonce":CLIENT_NONCE,"mac":mac}), b""));
        let lines = LINES.with(|l| l.borrow().clone());
        assert!(lines.contains(&r#"WARN: #1 test: auth failed for key id "k""#.to_string()), "{lines:?}");
        assert!(!lines.iter().any(|l| l.contains(&mac) || l.contains(SECRET)), "{lines:?}");
        assert!(access_lines().is_empty());
    }

    #[test]
    fn long_details_are_cut() {
        let h = Header { kind: "exec".into(), size: 0, id: None, fields: Map::new() };
        let req = Ok(Request::Exec(msg::Exec {
            command: msg::Command::Argv(vec!["é".repeat(5000), "x".into()]),
            env: Default::default(),
            cwd: None,
            stdin: false,
            timeout: None,
        }));
        let a = Access::new(&h, &req, Instant::now());
        let detail = a.detail().1;
        assert!(detail.len() <= ops::access::MAX_DETAIL + 3 && detail.ends_with("..."), "{}", detail.len());
    }
}
#[cfg(test)]
mod size_probe {
    /// Every connection costs this much before any buffer: an idle daemon's
    /// memory per connection starts here (the slab holds one per client).
    #[test]
    fn a_connection_stays_small() {
        let size = std::mem::size_of::<super::Conn<mio::net::TcpStream>>();
        assert!(size <= 512, "Conn is {size} bytes; box what only busy connections need");
    }
}
