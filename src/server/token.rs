//! The token scheme: which `mio::Token` stands for which source.
//!
//! Reserved tokens sit at the top of the range (signals, then listeners going
//! down); every source a connection owns is `slab key * 4 + role`.

use mio::Token;

pub const SIGNALS: Token = Token(usize::MAX - 1);
/// Listener `i` is `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 2;
pub const MAX_LISTENERS: usize = 64;
/// Slab keys above this would collide with reserved tokens.
pub const MAX_CONN_KEY: usize = (usize::MAX - 2 - MAX_LISTENERS) / 4 - 1;

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
}

pub fn listener(i: usize) -> Token {
    debug_assert!(i < MAX_LISTENERS);
    Token(LISTENER_BASE - i)
}

pub fn conn(key: usize, role: Role) -> Token {
    debug_assert!(key <= MAX_CONN_KEY);
    Token(key * 4 + role as usize)
}

pub fn parse(t: Token) -> Source {
    if t == SIGNALS {
        return Source::Signals;
    }
    if t.0 <= LISTENER_BASE && t.0 > LISTENER_BASE - MAX_LISTENERS {
        return Source::Listener(LISTENER_BASE - t.0);
    }
    let role = match t.0 % 4 {
        0 => Role::Socket,
        1 => Role::Stdout,
        2 => Role::Stderr,
        _ => Role::Stdin,
    };
    Source::Conn(t.0 / 4, role)
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
}
