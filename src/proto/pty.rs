//! An exec's terminal: the `pty` field (its `TERM` and window size) and the
//! `resize` request's size, with the one rule both ends apply to `TERM`.
//! Imports nothing else of the crate (`msg` checks the field with it).

use serde::{Deserialize, Serialize};

/// The most `TERM` may hold, in bytes.
pub const MAX_TERM: usize = 256;

/// A terminal's window size, in characters (0: unknown, as TIOCGWINSZ says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct WinSize {
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
}

/// An exec's `pty` field: run the command on a new pseudo-terminal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pty {
    /// `TERM` for the command (the client's).
    pub term: String,
    #[serde(flatten)]
    pub size: WinSize,
}

/// Whether `term` may go in `pty.term`: 1 to `MAX_TERM` printable ASCII
/// characters without `=` or `/`, a plain word a terminfo lookup can take.
/// The client sends `dumb` for anything else.
pub fn term_is_sendable(term: &str) -> bool {
    !term.is_empty() && term.len() <= MAX_TERM && term.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b'/')
}
