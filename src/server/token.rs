//! The token scheme: which `mio::Token` stands for which source.
//!
//! Reserved tokens sit at the top of the range (signals, then listeners and
//! UDP sockets going down, then the pipes of datagram execs, four tokens a
//! slot); every source a connection owns is `slab key * 4 + role`.

use mio::Token;

pub const SIGNALS: Token = Token(usize::MAX - 1);
/// Listener `i` is `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 2;
pub const MAX_LISTENERS: usize = 64;
/// UDP socket `i` is `UDP_BASE - i`.
const UDP_BASE: usize = LISTENER_BASE - MAX_LISTENERS;
pub const MAX_UDP_SOCKETS: usize = 64;
/// Datagram exec slots (at most one child each).
pub const MAX_UDP_EXECS: usize = 1 << 16;
/// Datagram exec slot `s`, pipe `role`, is `UDP_EXEC_BASE + s * 4 + role`.
const UDP_EXEC_BASE: usize = UDP_BASE - MAX_UDP_SOCKETS + 1 - MAX_UDP_EXECS * 4;
/// Slab keys above this would collide with reserved tokens.
pub const MAX_CONN_KEY: usize = UDP_EXEC_BASE / 4 - 1;

/// A source a connection owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Socket = 0,
    Stdout = 1,
    Stderr = 2,
    Stdin = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Signals,
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
    Token(key * 4 + role as usize)
}

pub fn udp(i: usize) -> Token {
    debug_assert!(i < MAX_UDP_SOCKETS);
    Token(UDP_BASE - i)
}

pub fn udp_exec(slot: usize, role: Role) -> Token {
    debug_assert!(slot < MAX_UDP_EXECS);
    Token(UDP_EXEC_BASE + slot * 4 + role as usize)
}

fn role(n: usize) -> Role {
    match n % 4 {
        0 => Role::Socket,
        1 => Role::Stdout,
        2 => Role::Stderr,
        _ => Role::Stdin,
    }
}

pub fn parse(t: Token) -> Source {
    if t == SIGNALS {
        return Source::Signals;
    }
    if t.0 <= LISTENER_BASE && t.0 > LISTENER_BASE - MAX_LISTENERS {
        return Source::Listener(LISTENER_BASE - t.0);
    }
    if t.0 <= UDP_BASE && t.0 > UDP_BASE - MAX_UDP_SOCKETS {
        return Source::Udp(UDP_BASE - t.0);
    }
    if t.0 >= UDP_EXEC_BASE {
        let n = t.0 - UDP_EXEC_BASE;
        return Source::UdpExec(n / 4, role(n));
    }
    Source::Conn(t.0 / 4, role(t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for key in [0, 1, 7, 4095, MAX_CONN_KEY] {
            for role in [Role::Socket, Role::Stdout, Role::Stderr, Role::Stdin] {
                assert_eq!(parse(conn(key, role)), Source::Conn(key, role));
            }
        }
        for i in 0..MAX_LISTENERS {
            assert_eq!(parse(listener(i)), Source::Listener(i));
        }
        assert_eq!(parse(SIGNALS), Source::Signals);
    }

    #[test]
    fn udp_tokens_round_trip_and_collide_with_nothing() {
        let roles = [Role::Socket, Role::Stdout, Role::Stderr, Role::Stdin];
        for i in 0..MAX_UDP_SOCKETS {
            assert_eq!(parse(udp(i)), Source::Udp(i));
        }
        for slot in [0, 1, 2, 1000, MAX_UDP_EXECS - 1] {
            for role in roles {
                assert_eq!(parse(udp_exec(slot, role)), Source::UdpExec(slot, role));
            }
        }
        // The ranges meet without a gap or an overlap.
        assert_eq!(udp(MAX_UDP_SOCKETS - 1).0 - 1, udp_exec(MAX_UDP_EXECS - 1, Role::Stdin).0);
        assert_eq!(listener(MAX_LISTENERS - 1).0 - 1, udp(0).0);
        assert!(conn(MAX_CONN_KEY, Role::Stdin).0 < udp_exec(0, Role::Socket).0);
        assert_eq!(parse(conn(MAX_CONN_KEY, Role::Stdin)), Source::Conn(MAX_CONN_KEY, Role::Stdin));
    }
}
