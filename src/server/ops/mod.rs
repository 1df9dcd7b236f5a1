//! Where a request becomes work, for TCP and UDP alike. `start` matches the
//! request, applies the policy (exec, read-only, what UDP serves) and the
//! child slots, and answers with a `Start`: a reply now, an `Op` in flight,
//! or an exec waiting for a slot. The transports only encode what it says.
//!
//! Every op has the same surface, behind the `Op` enum (no boxing per frame,
//! no trait objects): frames and body in (`on_frame`, `on_body`, `end_body`),
//! output out under a budget (`pump`), and the child's lifecycle for `exec`
//! (`on_pipe_event`, `try_reap`, `deadline`, `abandon`). One module per
//! operation; `ping` stays inline here, `bye` is the connection's.
//!
//! May import: `buf`, `io` and `token` of the server, `config`, `paths` and
//! `proto`. Not `conn`, not `udp`: they import this.

pub mod access;
pub mod exec;
pub mod get;
pub mod list;
pub mod put;
pub mod stat;

pub use exec::Exec;
pub use get::Get;
pub use put::Put;

use super::buf::Buf;
use super::io::Socket;
use super::token::{self, Role};
use crate::config::Config;
use crate::proto::msg::{self, Request, SignalName};
use crate::proto::{ErrorCode, Header, ProtoError};
use mio::{Registry, Token};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::process::Child;
use std::time::Instant;

/// What a connection may use of the server while it handles an event.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub cfg: &'a Config,
    pub now: Instant,
    /// Children running now, across all connections.
    pub children: &'a mut usize,
    /// Connections whose `exec` waits for a free child slot, in arrival order.
    pub waiters: &'a mut VecDeque<usize>,
    /// A shared buffer for socket and pipe reads.
    pub scratch: &'a mut [u8],
}

/// Which transport a request came by: what it may ask for, and whose tokens
/// an exec's pipes register under.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// The connection with this slab key: every op; an exec may wait for a slot.
    Tcp { key: usize },
    /// A datagram: `ping`, `stat` and `exec` (no stdin, no queue). `slot` is
    /// the exec slot it would take, `running` the datagram execs running.
    Udp { slot: usize, running: usize },
}

impl Via {
    pub fn token(self, role: Role) -> Token {
        match self {
            Via::Tcp { key } => token::conn(key, role),
            Via::Udp { slot, .. } => token::udp_exec(slot, role),
        }
    }
}

/// An answer made at once.
pub enum Reply {
    Pong,
    /// A header and its body (`stat`: none; `list`: the entries).
    Frame(Map<String, Value>, Vec<u8>),
}

/// What a request leads to.
pub enum Start {
    Reply(Reply),
    /// In flight: its answer comes over later turns.
    Running(Op),
    /// Refused, with a body still to come that is read and dropped (a `put`).
    Refused(Op, ProtoError),
    /// An exec waiting for a free child slot (TCP only): `resume` it then.
    Queued(Box<msg::Exec>),
    /// Nothing to answer (a late `stdin` or `signal`; `bye` is the connection's).
    Nothing,
}

/// Starts serving `req` (`kind` is its header's type, for messages).
pub fn start(
    req: Result<Request, ProtoError>,
    id: Option<&Value>,
    kind: &str,
    via: Via,
    ctx: &mut Ctx,
) -> Result<Start, ProtoError> {
    let tcp = matches!(via, Via::Tcp { .. });
    match req? {
        Request::Ping => Ok(Start::Reply(Reply::Pong)),
        Request::Stat(p) => Ok(Start::Reply(Reply::Frame(stat::stat(&p, id, ctx)?, Vec::new()))),
        Request::Exec(e) => exec::admit(e, id, via, ctx),
        Request::Unknown(t) => Err(ProtoError::new(ErrorCode::UnknownType, format!("unknown request type {t:?}"))),
        _ if !tcp => Err(ProtoError::new(
            ErrorCode::UnknownType,
            format!("{kind:?} is not served over UDP (ping, stat and exec are; the rest is TCP's)"),
        )),
        Request::List(p) => {
            let (header, body) = list::list(&p, id, ctx)?;
            Ok(Start::Reply(Reply::Frame(header, body)))
        }
        Request::Get(g) => Ok(Start::Running(Op::Get(Box::new(Get::start(&g, id.cloned(), ctx)?)))),
        Request::Put(p) => match Put::start(&p, id.cloned(), ctx) {
            (put, None) => Ok(Start::Running(Op::Put(Box::new(put)))),
            (put, Some(e)) => Ok(Start::Refused(Op::Put(Box::new(put)), e)),
        },
        Request::Auth(_) => Err(ProtoError::new(ErrorCode::BadRequest, "already authenticated")),
        Request::Data => Err(ProtoError::new(ErrorCode::BadRequest, "a data frame outside a streaming put")),
        Request::Bye | Request::Stdin | Request::Signal(_) => Ok(Start::Nothing),
    }
}

/// Spawns a queued exec once a child slot is free.
pub fn resume(req: &msg::Exec, id: Option<Value>, via: Via, ctx: &mut Ctx) -> Result<Op, ProtoError> {
    Ok(Op::Exec(Box::new(Exec::start(req, id, via, ctx)?)))
}

/// What a frame that arrives while an op runs is to it.
pub enum FrameUse {
    /// Its body is the op's (stdin, a streaming put's data).
    Body,
    /// It ends the op's body (an empty `data`): call `end_body`.
    End,
    /// Taken (a signal, stdin's EOF); nothing to answer.
    Used,
    /// Answered with this error; the op goes on.
    Answer(ProtoError),
    /// The op fails with this error, and the frame is then served as a request.
    Interrupt(ProtoError),
    /// Not the op's: it waits until the op is done.
    Hold,
}

/// What a turn of `pump` achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Things done (0: waiting for the socket, a pipe or the output buffer).
    Moved(usize),
    /// The whole answer is queued: the op is over.
    Done,
    /// A get's file ended before the size its header promised.
    Short,
}

/// A request in flight.
/// (Boxed, so an idle connection's `Phase` stays small.)
pub enum Op {
    Exec(Box<Exec>),
    Get(Box<Get>),
    Put(Box<Put>),
}

impl Op {
    pub fn id(&self) -> Option<&Value> {
        match self {
            Op::Exec(e) => e.id(),
            Op::Get(g) => g.id(),
            Op::Put(p) => p.id(),
        }
    }

    /// Whether the next frame may be decoded now: a get's body goes out over
    /// many turns and nothing may be queued inside it; an exec's stdin backlog
    /// must drain first.
    pub fn takes_frames(&self) -> bool {
        match self {
            Op::Exec(e) => !e.stdin_backlog(),
            Op::Get(_) => false,
            Op::Put(_) => true,
        }
    }

    pub fn on_frame(&mut self, h: &Header) -> FrameUse {
        match self {
            Op::Exec(e) => e.on_frame(h),
            Op::Put(p) => p.on_frame(h),
            Op::Get(_) => FrameUse::Hold,
        }
    }

    /// True when the request frame's own body is the op's (a sized put),
    /// ending it.
    pub fn body_in_request(&self) -> bool {
        matches!(self, Op::Put(p) if !p.is_stream())
    }

    /// A piece of body; an error to report, once.
    pub fn on_body(&mut self, chunk: &[u8]) -> Option<ProtoError> {
        match self {
            Op::Exec(e) => {
                e.push_stdin(chunk);
                None
            }
            Op::Put(p) => p.on_body(chunk),
            Op::Get(_) => None,
        }
    }

    /// The body is complete: the answer is queued in `out`, or the error
    /// returned (none when one was reported already).
    pub fn end_body(self, out: &mut Buf) -> Result<(), ProtoError> {
        match self {
            Op::Put(p) => match p.finish() {
                Some(Ok(reply)) => {
                    crate::proto::encode_frame(out.tail(), reply, &[]);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Ok(()),
            },
            Op::Exec(_) | Op::Get(_) => Ok(()),
        }
    }

    /// Moves output into `out` (below `high_water`) or straight to `sock`
    /// (a get's sendfile, while `*writable`), up to `budget` bytes.
    pub fn pump<S: Socket>(
        &mut self,
        sock: &mut S,
        writable: &mut bool,
        out: &mut Buf,
        high_water: usize,
        budget: usize,
        scratch: &mut [u8],
    ) -> std::io::Result<Progress> {
        match self {
            Op::Exec(e) => {
                let moved = e.pump_stdin() + e.pump_output(out, high_water, budget, scratch);
                if !e.is_finished() {
                    return Ok(Progress::Moved(moved));
                }
                crate::proto::encode_frame(out.tail(), e.exit().frame(e.id()), &[]);
                Ok(Progress::Done)
            }
            Op::Get(g) => g.pump(sock, writable, out, high_water, budget, scratch),
            Op::Put(_) => Ok(Progress::Moved(0)),
        }
    }

    /// Reply body bytes so far, for the access line.
    pub fn bytes_out(&self) -> u64 {
        match self {
            Op::Exec(e) => e.bytes_out(),
            Op::Get(g) => g.sent(),
            Op::Put(_) => 0,
        }
    }

    /// The access result of a finished op, when it is not `ok`.
    pub fn result(&self) -> Option<String> {
        match self {
            Op::Exec(e) if e.is_finished() => Some(e.exit().result()),
            _ => None,
        }
    }

    /// The op's own deadline (an exec's timeout steps), or else `idle`.
    pub fn deadline(&self, idle: Option<Instant>) -> Option<Instant> {
        match self {
            Op::Exec(e) => e.deadline(),
            Op::Get(_) | Op::Put(_) => idle,
        }
    }

    /// Acts on an expired deadline; false when it was the idle one (the
    /// transfer stopped moving).
    pub fn on_deadline(&mut self, now: Instant) -> bool {
        match self {
            Op::Exec(e) => {
                e.on_deadline(now);
                true
            }
            Op::Get(_) | Op::Put(_) => false,
        }
    }

    pub fn pid(&self) -> Option<i32> {
        match self {
            Op::Exec(e) => Some(e.pid()),
            _ => None,
        }
    }

    pub fn on_pipe_event(&mut self, role: Role) {
        if let Op::Exec(e) = self {
            e.on_event(role);
        }
    }

    /// Reaps the child if it exited (and frees its slot). True when reaped now.
    pub fn try_reap(&mut self, children: &mut usize) -> bool {
        match self {
            Op::Exec(e) => {
                let reaped = e.try_reap();
                if reaped {
                    *children -= 1;
                }
                reaped
            }
            _ => false,
        }
    }

    pub fn signal(&self, sig: SignalName) {
        if let Op::Exec(e) = self {
            e.signal(sig);
        }
    }

    pub fn kill_and_reap(&mut self) {
        if let Op::Exec(e) = self {
            e.kill_and_reap();
        }
    }

    /// The requester went: a child is signalled and handed over to be reaped;
    /// a put's temporary file goes with it.
    pub fn abandon(self) -> Option<Child> {
        match self {
            Op::Exec(e) => e.abandon(),
            Op::Get(_) | Op::Put(_) => None,
        }
    }
}
