//! The client's own terminal while a remote command runs on a terminal
//! (`run -t`, `shell`): raw mode, restored on every way out; the window size
//! and its changes; and the local signals that end ferry. Imports nothing
//! from the client but `Writer` and `exit`.
//!
//! Raw mode is undone by `restore`, which every exit path calls: the normal
//! end and errors through `Raw`'s `Drop` (before any message is printed, so
//! it is not drawn in raw mode), TERM, HUP and QUIT from the signal thread
//! (before the process exits), and a panic through the same `Drop`. The
//! saved modes live in one static, so whichever path comes first restores
//! them and the others find nothing to do.

use super::exit;
use super::Writer;
use crate::proto::msg::{self, SignalName, WinSize};
use rustix::termios::{self, OptionalActions, Termios};
use std::io::{self, IsTerminal, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;

/// The modes to put back, taken by the first `restore`.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// The terminal size when there is no terminal to ask (`-tt` in a script).
pub const DEFAULT_SIZE: WinSize = WinSize { rows: 24, cols: 80 };

fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Puts the modes saved by `Raw::enter` back on stdin, once.
pub fn restore() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &t);
    }
}

/// Raw mode on our stdin while it lives (a no-op when stdin is no terminal).
pub struct Raw {
    _private: (),
}

impl Raw {
    /// Saves stdin's modes and makes it raw: every byte typed (^C, ^D, ^Z
    /// included) goes to the remote terminal as it is, nothing is echoed
    /// here, and output is not post-processed (the remote terminal does it).
    pub fn enter() -> io::Result<Raw> {
        if !io::stdin().is_terminal() {
            return Ok(Raw { _private: () });
        }
        let saved = termios::tcgetattr(stdin_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved);
        if let Err(e) = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &raw) {
            restore();
            return Err(e.into());
        }
        Ok(Raw { _private: () })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        restore();
    }
}

/// Our window's size: stdin's terminal, else stdout's, else `DEFAULT_SIZE`.
pub fn size() -> WinSize {
    let of = |fd: BorrowedFd<'_>| {
        termios::tcgetwinsize(fd).ok().filter(|w| w.ws_row > 0 && w.ws_col > 0).map(|w| WinSize { rows: w.ws_row, cols: w.ws_col })
    };
    of(stdin_fd()).or_else(|| of(io::stdout().as_fd())).unwrap_or(DEFAULT_SIZE)
}

/// `TERM` for the remote terminal: ours, or `dumb` when unset or unusable.
pub fn term_name(env: Option<&str>) -> String {
    match env {
        Some(t) if !t.is_empty() && t.len() <= msg::MAX_TERM && t.bytes().all(|b| b.is_ascii_graphic() && b != b'=' && b != b'/') => {
            t.to_string()
        }
        _ => "dumb".to_string(),
    }
}

/// The local signals, on a thread of their own: WINCH sends the new size
/// (a `resize` frame); INT (only `kill` can send it in raw mode) goes to the
/// remote command as `run` forwards it; TERM, HUP and QUIT end ferry with
/// 128 + N, the terminal restored (the server then hangs up the remote one).
/// `sent` is the size the request gave: a change before the watch began
/// is sent at once.
pub fn watch_signals(writer: Writer, sent: WinSize) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT]) else {
        return;
    };
    let mut last = sent;
    let now = size();
    if now != last {
        last = now;
        let _ = writer.send(msg::request::resize(now), &[]);
    }
    std::thread::spawn(move || {
        for sig in signals.forever() {
            match sig {
                SIGWINCH => {
                    let now = size();
                    if now != last {
                        last = now;
                        let _ = writer.send(msg::request::resize(now), &[]);
                    }
                }
                SIGINT => {
                    if writer.signal(SignalName::INT).is_err() {
                        restore();
                        std::process::exit(128 + sig);
                    }
                }
                _ => {
                    restore();
                    std::process::exit(128 + sig);
                }
            }
        }
    });
}

/// Copies our stdin to the remote terminal as it comes (a keystroke is a
/// frame), then sends EOF (the server types the terminal's EOF character).
pub fn forward_stdin(writer: Writer) {
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = writer.stdin(&[]);
    });
}

/// Whether `-t` gets a terminal: always with `-tt`; with `-t`, when stdin is one.
/// Without, one line says so (unless quiet), as ssh does.
pub fn wanted(count: u8, quiet: bool) -> bool {
    if count >= 2 || io::stdin().is_terminal() {
        return true;
    }
    if !quiet {
        exit::say("no terminal for the command: stdin is not a terminal (-tt forces one)");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_is_ours_unless_it_cannot_be_sent() {
        assert_eq!(term_name(Some("xterm-256color")), "xterm-256color");
        for bad in [None, Some(""), Some("a b"), Some("x=y"), Some("../../x")] {
            assert_eq!(term_name(bad), "dumb", "{bad:?}");
        }
        assert_eq!(term_name(Some(&"x".repeat(msg::MAX_TERM + 1))), "dumb");
    }

    #[test]
    fn restore_without_raw_mode_does_nothing() {
        restore();
        restore();
        assert!(SAVED.lock().unwrap().is_none());
    }
}
