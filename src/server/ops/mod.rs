//! Operations, one module each. Those that outlive one frame (`exec`, `get`,
//! `put`) sit behind the `Op` enum; `list` and `stat` answer at once, and
//! `ping` and `bye` stay inline in `conn`.

pub mod exec;
pub mod get;
pub mod list;
pub mod put;
pub mod stat;

pub use exec::Exec;
pub use get::Get;
pub use put::Put;

use crate::config::Config;
use mio::Registry;
use std::collections::VecDeque;
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

/// A request in flight.
/// (Boxed, so an idle connection's `Phase` stays small.)
pub enum Op {
    Exec(Box<Exec>),
    Get(Box<Get>),
    Put(Box<Put>),
}
