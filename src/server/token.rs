//! The token scheme: which `mio::Token` stands for which source.
//!
//! Reserved tokens sit at the top of the range (signals, the pidfds of
//! orphaned children, then listeners and UDP sockets going down, then the
//! pipes and pidfds of datagram execs, `STRIDE` tokens a slot); every source
//! a connection owns is `slab key * STRIDE + role`.

use mio::Token;

pub const SIGNALS: Token = Token(usize::MAX - 1);
/// Every orphaned child's pidfd (children whose connection is gone).
pub const ORPHANS: Token = Token(usize::MAX - 2);
/// Tokens per connection or datagram exec slot: one per `Role`, rounded up.
const STRIDE: usize = 8;
/// Listener `i` is `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 3;
pub const MAX_LISTENERS: usize = 64;
/// UDP socket `i` is `UDP_BASE - i`.
const UDP_BASE: usize = LISTENER_BASE - MAX_LISTENERS;
pub const MAX_UDP_SOCKETS: usize = 64;
/// Datagram exec slots (at most one child each).
pub const MAX_UDP_EXECS: usize = 1 << 16;
/// Datagram exec slot `s`, source `role`, is `UDP_EXEC_BASE + s * STRIDE + role`.
const UDP_EXEC_BASE: usize = UDP_BASE - MAX_UDP_SOCKETS + 1 - MAX_UDP_EXECS * STRIDE;
/// Slab keys above this would collide with reserved tokens.
pub const MAX_CONN_KEY: usize = UDP_EXEC_BASE / STRIDE - 1;

/// A source a connection owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Socket = 0,
    Stdout = 1,
    Stderr = 2,
    Stdin = 3,
    /// The child's pidfd: readable once it exited.
    Child = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signals,
    Orphans,
    Listener(usize),
    Conn(usize, Role),
    /// A UDP socket, by index.
    Udp(usize),
    /// A pipe of the datagram exec in a slot.
    UdpExec(usize, Role),
}

pub fn listener(i: usize) -> Token {
    debug_assert!(i < MAX_LISTENERS);
    Token(LISTENER_BASE - i)
}

pub fn conn(key: usize, role: Role) -> Token {
    debug_assert!(key <= MAX_CONN_KEY);
    Token(key * STRIDE + role as usize)
}

pub fn udp(i: usize) -> Token {
    debug_assert!(i < MAX_UDP_SOCKETS);
    Token(UDP_BASE - i)
}

pub fn udp_exec(slot: usize, role: Role) -> Token {
    debug_assert!(slot < MAX_UDP_EXECS);
    Token(UDP_EXEC_BASE + slot * STRIDE + role as usize)
}

/// The role of a token's offset in its stride (offsets past `Child` are never registered).
fn role(n: usize) -> Role {
    match n % STRIDE {
        0 => Role::Socket,
        1 => Role::Stdout,
        2 => Role::Stderr,
        3 => Role::Stdin,
        _ => Role::Child,
    }
}

pub fn parse(t: Token) -> Source {
    if t == SIGNALS {
        return Source::Signals;
    }
    if t == ORPHANS {
        return Source::Orphans;
    }
    if t.0 <= LISTENER_BASE && t.0 > LISTENER_BASE - MAX_LISTENERS {
        return Source::Listener(LISTENER_BASE - t.0);
    }
    if t.0 <= UDP_BASE && t.0 > UDP_BASE - MAX_UDP_SOCKETS {
        return Source::Udp(UDP_BASE - t.0);
    }
    if t.0 >= UDP_EXEC_BASE {
        let n = t.0 - UDP_EXEC_BASE;
        return Source::UdpExec(n / STRIDE, role(n));
    }
    Source::Conn(t.0 / STRIDE, role(t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0, 1, 7, 4095, MAX_CONN_KEY] {
            for role in [Role::Socket, Role::Stdout, Role::Stderr, Role::Stdin, Role::Child] {
                assert_eq!(parse(conn(key, role)), Source::Conn(key, role));
            }
        }
        for i in 0..MAX_LISTENERS {
            assert_eq!(parse(listener(i)), Source::Listener(i));
        }
        assert_eq!(parse(SIGNALS), Source::Signals);
        assert_eq!(parse(ORPHANS), Source::Orphans);
        assert_eq!(listener(0).0 + 1, ORPHANS.0);
    }

    #[test]
    fn udp_tokens_round_trip_and_collide_with_nothing() {
        let roles = [Role::Socket, Role::Stdout, Role::Stderr, Role::Stdin, Role::Child];
        for i in 0..MAX_UDP_SOCKETS {
            assert_eq!(parse(udp(i)), Source::Udp(i));
        }
        for slot in [0, 1, 2, 1000, MAX_UDP_EXECS - 1] {
            for role in roles {
                assert_eq!(parse(udp_exec(slot, role)), Source::UdpExec(slot, role));
            }
        }
        // The ranges meet without a gap or an overlap.
        assert_eq!(udp(MAX_UDP_SOCKETS - 1).0 - 1, udp_exec(MAX_UDP_EXECS - 1, Role::Socket).0 + STRIDE - 1);
        assert_eq!(listener(MAX_LISTENERS - 1).0 - 1, udp(0).0);
        assert!(conn(MAX_CONN_KEY, Role::Child).0 < udp_exec(0, Role::Socket).0);
        assert_eq!(parse(conn(MAX_CONN_KEY, Role::Child)), Source::Conn(MAX_CONN_KEY, Role::Child));
    }
}
