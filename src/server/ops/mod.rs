//! Where a request becomes work, for TCP and UDP alike. `start` matches the
//! request, applies the policy (exec, read-only, what UDP serves) and the
//! child slots, and answers with a `Start`: a reply now, an `Op` in flight,
//! or an exec waiting for a slot. The transports only encode what it says.
//!
//! Each op module starts the same way, `start(req, id, ctx)` (exec also takes
//! the `Via` its pipes register under): an answer for `list` and `stat`, the
//! op in flight for `exec`, `get` and `put`. Every op in flight has the same
//! surface, behind the `Op` enum (no boxing per frame, no trait objects):
//! frames and body in (`on_frame`, `on_body`, `end_body`), output out under
//! a budget (`pump`), and the child's lifecycle for `exec` (`on_pipe_event`,
//! `try_reap`, `deadline`, `abandon`). One module per operation; `ping`
//! stays inline here, `bye` is the connection's. `access` is the one access
//! line both transports write; `ctx` what every op is given and answers with;
//! `allow` the exec allow-list's rule; `pty` an exec's terminal. Children
//! are started by `server::spawn` (through `ctx.spawner`).
//!
//! May import: `buf`, `io`, `spawn` and `token` of the server, `config`,
//! `paths` and `proto`. Not `conn`, not `udp`: they import this.

pub mod access;
mod allow;
mod ctx;
pub mod exec;
pub mod get;
pub mod list;
pub mod put;
pub mod pty;
pub mod stat;
pub mod tree;
#[cfg(test)]
mod tests;

pub use ctx::{Ctx, FrameUse, Output, Progress, Via};
pub use exec::Exec;
pub use get::Get;
pub use put::Put;

use super::buf::Buf;
use super::io::Socket;
use super::token::{self, Role};
use crate::proto::msg::{self, Request, SignalName};
use crate::proto::{ErrorCode, Header, ProtoError};
use serde_json::{Map, Value};
use super::spawn::Child;
use std::time::Instant;

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
        Request::Stat(p) => Ok(Start::Reply(Reply::Frame(stat::start(&p, id, ctx)?, Vec::new()))),
        Request::Exec(e) => admit(e, id, via, ctx),
        Request::Unknown(t) => Err(ProtoError::new(ErrorCode::UnknownType, format!("unknown request type {t:?}"))),
        _ if !tcp => Err(ProtoError::new(
            ErrorCode::UnknownType,
            format!("{kind:?} is not served over UDP (ping, stat and exec are; the rest is TCP's)"),
        )),
        Request::List(p) => {
            let (header, body) = list::start(&p, id, ctx)?;
            Ok(Start::Reply(Reply::Frame(header, body)))
        }
        Request::ListTree(p) => {
            let (header, body) = tree::list(&p, id, ctx)?;
            Ok(Start::Reply(Reply::Frame(header, body)))
        }
        Request::Mkdir(m) => Ok(Start::Reply(Reply::Frame(tree::mkdir(&m, id, ctx)?, Vec::new()))),
        Request::Symlink(l) => Ok(Start::Reply(Reply::Frame(tree::symlink(&l, id, ctx)?, Vec::new()))),
        Request::Get(g) => Ok(Start::Running(Op::Get(Box::new(Get::start(&g, id, ctx)?)))),
        Request::Put(p) => match Put::start(&p, id, ctx) {
            (put, None) => Ok(Start::Running(Op::Put(Box::new(put)))),
            (put, Some(e)) => Ok(Start::Refused(Op::Put(Box::new(put)), e)),
        },
        Request::Auth(_) => Err(ProtoError::new(ErrorCode::BadRequest, "already authenticated")),
        Request::Data => Err(ProtoError::new(ErrorCode::BadRequest, "a data frame outside a streaming put")),
        Request::Trailer(_) => Err(ProtoError::new(ErrorCode::BadRequest, "a trailer frame outside a put")),
        Request::Bye | Request::Stdin | Request::Signal(_) | Request::Resize(_) => Ok(Start::Nothing),
    }
}

/// Admits an `exec`: the policy answers at once, even when every child slot
/// is busy. A connection's exec then runs, or waits for a slot; a datagram's
/// runs now or is `busy` (it has no queue, and a TCP exec waiting comes first).
fn admit(mut req: msg::Exec, id: Option<&Value>, via: Via, ctx: &mut Ctx) -> Result<Start, ProtoError> {
    // The policy's answer (the program it checked) is the spawn's when the
    // exec starts now, with the same config: it is not asked twice.
    let program = match via {
        Via::Tcp { key } => {
            let program = exec::authorize(&req, ctx.cfg)?;
            if *ctx.children >= ctx.cfg.max_children {
                ctx.waiters.push_back(key);
                return Ok(Start::Queued(Box::new(req)));
            }
            program
        }
        Via::Udp { running, .. } => {
            if req.stdin {
                return Err(ProtoError::new(ErrorCode::BadRequest, "exec: no stdin over UDP"));
            }
            if req.pty.is_some() {
                return Err(ProtoError::new(ErrorCode::BadRequest, "exec: no terminal over UDP (use TCP: ferry run -t)"));
            }
            let program = exec::authorize(&req, ctx.cfg)?;
            if *ctx.children >= ctx.cfg.max_children || !ctx.waiters.is_empty() || running >= token::MAX_UDP_EXECS {
                return Err(ProtoError::new(ErrorCode::Busy, "every child slot is taken; try again later"));
            }
            let t = exec::effective_timeout(req.timeout, Some(ctx.cfg.udp.exec_timeout));
            req.timeout = t.map(|t| t.as_secs_f64());
            program
        }
    };
    let e = Exec::start(&req, program, id, via, ctx)?;
    Ok(Start::Running(Op::Exec(Box::new(e))))
}

/// Spawns a queued exec once a child slot is free (the policy asked again:
/// the config may have been reloaded while it waited).
pub fn resume(req: &msg::Exec, id: Option<&Value>, via: Via, ctx: &mut Ctx) -> Result<Op, ProtoError> {
    let program = exec::authorize(req, ctx.cfg)?;
    Ok(Op::Exec(Box::new(Exec::start(req, program, id, via, ctx)?)))
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

    /// Where body bytes may be read to straight from the socket (a put's
    /// write buffer, at most `want` bytes); None for ops that take their
    /// body through `on_body`.
    pub fn body_room(&mut self, want: u64) -> Option<&mut [u8]> {
        match self {
            Op::Put(p) => Some(p.body_room(want)).filter(|r| !r.is_empty()),
            Op::Exec(_) | Op::Get(_) => None,
        }
    }

    /// `n` bytes were read into `body_room`; an error to report, once.
    pub fn body_filled(&mut self, n: usize) -> Option<ProtoError> {
        match self {
            Op::Put(p) => p.body_filled(n),
            Op::Exec(_) | Op::Get(_) => None,
        }
    }

    /// The body has ended: true when the op waits for one more frame (a
    /// put's trailer) before it answers.
    pub fn body_ended(&mut self) -> bool {
        match self {
            Op::Put(p) => p.body_ended(),
            Op::Exec(_) | Op::Get(_) => false,
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

    /// Moves what the op has to say, as `o` allows (see `Output`).
    pub fn pump<S: Socket>(&mut self, o: Output<S>) -> std::io::Result<Progress> {
        match self {
            Op::Exec(e) => {
                let moved = e.pump_stdin() + e.pump_output(o.out, o.high_water, o.budget, o.scratch);
                if !e.is_finished() {
                    return Ok(Progress::Moved(moved));
                }
                e.exit().encode(o.out.tail(), e.id());
                Ok(Progress::Done)
            }
            Op::Get(g) => g.pump(o),
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

    /// KILL a running command (drain timeout); its `exit` follows as usual.
    pub fn kill(&self) {
        if let Op::Exec(e) = self {
            e.kill();
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
