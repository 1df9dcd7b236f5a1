//! Operations that outlive one frame, one module each, behind the `Op` enum.
//! (`ping` and `bye` answer at once and stay inline in `conn`.)

pub mod exec;

pub use exec::Exec;

use super::Config;
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
pub enum Op {
    Exec(Exec),
}
