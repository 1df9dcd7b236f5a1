//! One client connection as an explicit state machine.
//!
//! `Conn` owns the socket, its input and output buffers, the frame decoder and
//! the request in flight. The reactor records readiness (`on_socket_event`,
//! `on_pipe_event`) and then calls `pump`, which does all the work that
//! readiness allows and answers with a `Step`. `Conn` is generic over the
//! socket so the state machine is unit-tested on an in-memory stream. It
//! does not know what an op does: `ops::start` turns each request into a
//! reply or an `Op`, and the connection feeds it frames and pumps it.
//! Files: this one (phases and the reactor's API), `wire.rs` (the socket
//! side), `serve.rs` (frames, requests and the access line), `tests.rs`.
//! May import `buf`, `io`, `ops` and `token`; never `udp`.
//!
//! LIFECYCLE (`Phase`)
//! - `Sniff` (at accept) --first byte 0x16--> `Handshake` (any `hello` already sent is void);
//!   a peer in `plaintext_from` got `hello` at accept: any other first byte --> `AwaitAuth`;
//!   any other peer got nothing: another byte, or none within `SNIFF_GRACE` --> `Closing` (tls-required).
//! - `Handshake` --TLS up and the client's key named--> `AwaitAuth` (`hello` sent inside TLS; the `auth`
//!   must name that key); a failed handshake --> `Closed` (rustls sent its alert; no frame); the auth
//!   timeout, which counts from accept --> `Closing`.
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
//!   When the server is stopping and nothing was unread, `Closed` as soon as the output is out
//!   and a last read finds nothing: an idle client does not hold up a stop.
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

mod serve;
#[cfg(test)]
mod tests;
mod wire;

use super::buf::Buf;
use super::io::Socket;
use super::ops::access::Access;
use super::ops::{Ctx, Op};
use super::token::Role;
use crate::config::Config;
use crate::proto::auth::{self, to_hex};
use crate::proto::msg;
use crate::proto::sniff::{self, Transport};
use crate::proto::{Decoder, ErrorCode, Header, ProtoError, MAX_HEADER};
use log::{debug, info, warn};
use serde_json::Value;
use std::io;
use super::spawn::Child;
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

/// How long a peer outside `plaintext_from` has to send its first byte
/// before it gets tls-required (a TLS client speaks first, at once).
pub const SNIFF_GRACE: Duration = Duration::from_secs(1);

/// Where a connection stands. See the module doc for the transitions.
pub enum Phase {
    /// Waiting for the client's first byte. `hello`: the nonce of the v1
    /// greeting sent at accept (a peer in `plaintext_from`); None: nothing
    /// was sent, and only TLS is accepted. `grace` bounds the wait for a
    /// peer that was not greeted.
    Sniff { hello: Option<String>, grace: Instant, deadline: Instant },
    /// A TLS handshake under way, bounded by the auth timeout.
    Handshake { deadline: Instant },
    /// `hello` sent; waiting for `auth` until `deadline`.
    AwaitAuth { nonce: String, deadline: Instant },
    /// Authenticated, between requests.
    Ready,
    /// An `exec` waiting for a free child slot.
    Queued { req: Box<msg::Exec>, id: Option<Value> },
    /// A request in flight.
    Running(Op),
    /// Flushing what is owed, then waiting for the peer to hang up.
    /// `shut` once our write side is shut down. `prompt` when the server is
    /// stopping and nothing was unread: once the output is out and a last read
    /// finds nothing, the socket closes at once instead of lingering (a close
    /// with unread input would send RST, which is what `LINGER` protects from).
    Closing { since: Instant, shut: bool, prompt: bool },
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
    /// A request that arrived while an op runs, waiting its turn.
    held: Option<Box<Header>>,
    phase: Phase,
    sock_read: bool,
    sock_write: bool,
    /// The peer shut down its write side: no more requests will come.
    peer_eof: bool,
    /// An event said the peer's side is closed (or in error): read until
    /// 0 or `WouldBlock`, never trusting a short read (see `Socket::short_read_drains`).
    peer_hup: bool,
    /// The server is shutting down: finish the request in flight, then close.
    draining: bool,
    /// Last time bytes moved on the socket or a request finished.
    last_active: Instant,
    now: Instant,
    key_id: Option<String>,
    /// The key the client proved in the TLS handshake; its `auth` must name it.
    tls_key: Option<Box<str>>,
    /// Why the connection closes, set once by whatever closed it first.
    reason: Option<String>,
    /// A child left behind by a close, for the reactor to reap.
    orphan: Option<Child>,
    /// The request in flight, for its access line.
    access: Option<Access>,
    /// What the puts of the current tree took of `max_upload`.
    tally: crate::server::ops::tree::Tally,
}

impl<S: Socket> Conn<S> {
    /// A new connection: `hello` is queued at once for a peer that may speak
    /// in clear (`plain`); any other waits for a TLS ClientHello.
    pub fn new(sock: S, key: usize, name: String, plain: bool, ctx: &mut Ctx) -> Conn<S> {
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
            peer_hup: false,
            draining: false,
            last_active: ctx.now,
            now: ctx.now,
            key_id: None,
            tls_key: None,
            reason: None,
            orphan: None,
            access: None,
            tally: Default::default(),
        };
        let deadline = ctx.now + ctx.cfg.auth_timeout;
        let hello = plain.then(|| conn.greet(ctx));
        conn.phase = Phase::Sniff { hello, grace: ctx.now + SNIFF_GRACE, deadline };
        conn
    }

    /// Queues `hello` with a fresh nonce; returns the nonce.
    fn greet(&mut self, ctx: &Ctx) -> String {
        let nonce = to_hex(&auth::fresh_nonce());
        self.queue(msg::hello(&ctx.cfg.server_name, &nonce), &[]);
        nonce
    }

    /// The sniff: the client's first byte picks the transport. Returns a
    /// count of things done.
    fn sniff(&mut self, ctx: &mut Ctx) -> usize {
        let Phase::Sniff { hello, deadline, .. } = &mut self.phase else { return 0 };
        let Some(&first) = self.inbuf.first() else { return 0 };
        let deadline = *deadline;
        match (sniff::sniff(&self.inbuf), hello.take()) {
            (Ok(Some(Transport::Tls)), _) => {
                // A greeting still queued goes first, in clear, as the client expects.
                let clear = self.out.pending().to_vec();
                self.out.consume(clear.len());
                let first = std::mem::take(&mut self.inbuf);
                if let Err(e) = self.sock.start_tls(ctx.tls, first, clear) {
                    self.close_io(&e);
                    return 1;
                }
                debug!("{}: TLS ClientHello", self.name);
                self.phase = Phase::Handshake { deadline };
                self.sock_read = true;
            }
            (_, Some(nonce)) => self.phase = Phase::AwaitAuth { nonce, deadline },
            (_, None) => {
                info!("{}: refused: first byte 0x{first:02x} is not TLS and the peer is outside plaintext_from", self.name);
                self.inbuf.clear();
                self.fail(ProtoError::new(ErrorCode::TlsRequired, "this server accepts only TLS from your address"), None);
            }
        }
        1
    }

    /// After the TLS handshake: the key the client proved, then `hello`
    /// inside TLS. Returns a count of things done.
    fn on_handshake(&mut self, ctx: &mut Ctx) -> usize {
        let Phase::Handshake { deadline } = self.phase else { return 0 };
        if self.sock.handshaking() {
            return 0;
        }
        match self.sock.peer_key_id() {
            Some(Ok(id)) => {
                info!("{}: TLS for key {} ({})", self.name, id, self.sock.tls_summary().unwrap_or_default());
                self.tls_key = Some(id.into());
                let nonce = self.greet(ctx);
                self.phase = Phase::AwaitAuth { nonce, deadline };
            }
            Some(Err(e)) => {
                warn!("{}: TLS handshake failed: {e}", self.name);
                self.close_now("TLS handshake failed");
            }
            None => self.close_now("TLS handshake without TLS"),
        }
        1
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

    /// The event also said the peer's side is closed or in error: an end of
    /// stream may wait behind bytes, which no later event would announce.
    pub fn on_socket_hup(&mut self) {
        self.peer_hup = true;
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
            moved += self.sniff(ctx) + self.on_handshake(ctx);
            moved += self.parse(ctx);
            moved += self.on_peer_eof();
            self.close_if_nothing_unread(ctx.scratch);
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
        if matches!(self.phase, Phase::Ready | Phase::AwaitAuth { .. } | Phase::Sniff { .. }) && self.inbuf.is_empty() {
            self.inbuf = Vec::new();
            self.out.release_if_empty();
        }
    }

    /// The next time `on_deadline` has something to do.
    pub fn deadline(&self, cfg: &Config) -> Option<Instant> {
        match &self.phase {
            Phase::Sniff { hello: None, grace, deadline } => Some((*grace).min(*deadline)),
            Phase::Sniff { deadline, .. } | Phase::Handshake { deadline } => Some(*deadline),
            Phase::AwaitAuth { deadline, .. } => Some(*deadline),
            Phase::Ready if cfg.idle_timeout.is_zero() => None,
            Phase::Ready => Some(self.last_active + cfg.idle_timeout),
            Phase::Running(op) => {
                let idle = (!cfg.idle_timeout.is_zero()).then(|| self.last_active + cfg.idle_timeout);
                op.deadline(idle)
            }
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
            Phase::Sniff { hello: None, .. } => {
                info!("{}: refused: no TLS ClientHello within {}s", self.name, SNIFF_GRACE.as_secs());
                self.fail(ProtoError::new(ErrorCode::TlsRequired, "this server accepts only TLS from your address"), None)
            }
            Phase::Handshake { .. } => {
                self.begin_close(format!("no TLS handshake within {}s", ctx.cfg.auth_timeout.as_secs()))
            }
            Phase::AwaitAuth { .. } | Phase::Sniff { .. } => {
                self.begin_close(format!("no authentication within {}s", ctx.cfg.auth_timeout.as_secs()))
            }
            Phase::Ready => {
                // How long it really was (a reload may have lowered the timeout).
                let why = format!("idle for {}s", ctx.now.saturating_duration_since(self.last_active).as_secs());
                self.fail(ProtoError::new(ErrorCode::IdleTimeout, why), None)
            }
            Phase::Running(op) => {
                if !op.on_deadline(ctx.now) {
                    // No frame: a get may be cut in the middle of its body.
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
        // Nothing can be said in clear to a peer that did not get `hello`,
        // nor in the middle of a handshake.
        if matches!(self.phase, Phase::Sniff { hello: None, .. } | Phase::Handshake { .. }) {
            self.begin_close("the server is shutting down");
        } else if matches!(
            self.phase,
            Phase::Sniff { .. } | Phase::AwaitAuth { .. } | Phase::Ready | Phase::Queued { .. }
        ) {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), None);
        }
    }

    /// The drain timeout is over: TERM the child in flight (`kill_child` follows).
    pub fn term_child(&mut self) {
        if let Phase::Running(op) = &self.phase {
            op.signal(msg::SignalName::TERM);
        }
    }

    /// TERM did not end the child in flight: KILL it (its `exit` goes out
    /// once it is reaped, and the connection then closes as drained ones do).
    pub fn kill_child(&mut self) {
        if let Phase::Running(op) = &self.phase {
            op.kill();
        }
    }

    /// The daemon is exiting: KILL and reap the child in flight.
    pub fn kill_and_reap_child(&mut self) {
        if let Phase::Running(op) = &mut self.phase {
            op.kill_and_reap();
        }
    }

    /// The daemon is exiting with this connection open (the drain timeout
    /// ran out, or a second TERM): its request in flight gets its access
    /// line (`aborted`), and the connection a reason for its "closed" line.
    pub fn close_at_exit(&mut self, now: Instant) {
        self.now = now;
        self.close_now("the server exited");
    }

    /// Pid of the running child, if any.
    pub fn child_pid(&self) -> Option<i32> {
        match &self.phase {
            Phase::Running(op) => op.pid(),
            _ => None,
        }
    }

    // ---- closing (the socket side is in `wire`, requests in `serve`) ----

    fn begin_close(&mut self, reason: impl Into<String>) {
        self.reason.get_or_insert_with(|| reason.into());
        self.abandon_op();
        self.held = None;
        // Stopping with nothing unread: no request of the peer's can be cut.
        let prompt = self.draining && self.inbuf.is_empty();
        self.phase = Phase::Closing { since: self.now, shut: false, prompt };
    }

    /// A prompt close (see `Phase::Closing`): after our half-close, one more
    /// read, whatever the stored readiness says. Nothing there: close now. Bytes
    /// there: they are discarded and the connection lingers as any other.
    fn close_if_nothing_unread(&mut self, scratch: &mut [u8]) {
        let Phase::Closing { shut: true, prompt: true, .. } = self.phase else { return };
        self.sock_read = true;
        // Bytes read here clear `prompt` (see `fill`); an EOF closes as usual.
        if self.fill(scratch) == 0 && !self.is_closed() && !self.peer_eof {
            self.close_now("the server is shutting down");
        }
    }

    fn close_now(&mut self, reason: &str) {
        self.reason.get_or_insert_with(|| reason.to_string());
        self.abandon_op();
        self.phase = Phase::Closed;
    }

    fn close_io(&mut self, e: &io::Error) {
        if matches!(self.phase, Phase::Handshake { .. }) {
            // One line naming the key the client claimed, if it named one.
            warn!("{}: TLS handshake failed: {}", self.name, e);
            return self.close_now("TLS handshake failed");
        }
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
