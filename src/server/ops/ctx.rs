//! What every op is given (`Ctx`, `Via`) and what it answers with
//! (`FrameUse`, `Progress`): the vocabulary `ops/mod.rs` and each op module
//! share, kept apart so that no op imports the module that dispatches to it.

use crate::config::Config;
use crate::tls::ServerTls;
use crate::server::buf::Buf;
use crate::proto::ProtoError;
use crate::server::spawn::Spawner;
use crate::server::token::{self, Role};
use mio::{Registry, Token};
use std::collections::VecDeque;
use std::time::Instant;

/// What a connection may use of the server while it handles an event.
pub struct Ctx<'a> {
    pub registry: &'a Registry,
    pub cfg: &'a Config,
    /// Every key's TLS identities (rebuilt on reload).
    pub tls: &'a ServerTls,
    pub now: Instant,
    /// Children running now, across all connections.
    pub children: &'a mut usize,
    /// Connections whose `exec` waits for a free child slot, in arrival order.
    pub waiters: &'a mut VecDeque<usize>,
    /// A shared buffer for socket and pipe reads.
    pub scratch: &'a mut [u8],
    /// Starts children, with the environment of this configuration.
    pub spawner: &'a Spawner,
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

/// Where an op's output goes in one turn: the connection's output buffer
/// (kept below `high_water`), or straight to its socket (a get's sendfile,
/// while `*writable`), `budget` bytes at most.
pub struct Output<'a, S> {
    pub sock: &'a mut S,
    /// The socket's stored write readiness, cleared on `WouldBlock`.
    pub writable: &'a mut bool,
    pub out: &'a mut Buf,
    pub high_water: usize,
    pub budget: usize,
    pub scratch: &'a mut [u8],
}
