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
        crate::term::set_raw_stderr(false);
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
        // Our own lines (-v, errors) on the raw terminal end in CR LF.
        crate::term::set_raw_stderr(io::stderr().is_terminal());
        Ok(Raw { _private: () })
    }
}

/// Whether our terminal is (meant to be) raw now: modes are saved to put back.
pub fn is_raw() -> bool {
    SAVED.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Before ferry stops (TSTP): the saved modes go back on the terminal but
/// stay saved, for `resume` and for the final `restore`.
fn suspend() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = saved.as_ref() {
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, t);
        crate::term::set_raw_stderr(false);
    }
}

/// After ferry is continued (CONT, as `fg` sends): raw again, since the
/// shell that continued us put its own modes on the terminal.
fn resume() {
    let saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = saved.as_ref() {
        let mut raw = t.clone();
        raw.make_raw();
        let _ = termios::tcsetattr(stdin_fd(), OptionalActions::Now, &raw);
        crate::term::set_raw_stderr(io::stderr().is_terminal());
    }
}

/// Our stdout while the remote terminal's output goes to it: notes where
/// the cursor is left (`term::note_output`) when stderr shares the
/// terminal, so ferry's own next line starts on a fresh one.
pub struct Screen<W: io::Write> {
    inner: W,
    shared: bool,
}

impl<W: io::Write> Screen<W> {
    pub fn new(inner: W) -> Screen<W> {
        Screen { inner, shared: io::stdout().is_terminal() && io::stderr().is_terminal() }
    }
}

impl<W: io::Write> io::Write for Screen<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.shared {
            crate::term::note_output(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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

/// `TERM` for the remote terminal: ours, or `dumb` when it is unset or
/// empty. `Err` holds `dumb` too, for a `TERM` that cannot be sent (not 1
/// to 256 printable ASCII characters without `=` or `/`, the protocol's
/// rule), which the caller says once.
pub fn term_name(env: Option<&std::ffi::OsStr>) -> Result<String, String> {
    let dumb = || "dumb".to_string();
    let Some(t) = env.filter(|t| !t.is_empty()) else {
        return Ok(dumb());
    };
    match t.to_str() {
        Some(t) if crate::proto::pty::term_is_sendable(t) => Ok(t.to_string()),
        _ => Err(dumb()),
    }
}

/// What ferry says of a `TERM` that `term_name` refused.
pub fn term_warning(env: &std::ffi::OsStr) -> String {
    let shown: String = env.to_string_lossy().chars().take(40).flat_map(char::escape_default).collect();
    let more = if env.len() > 40 { "..." } else { "" };
    format!(
        "TERM \"{shown}{more}\" cannot be sent (1 to {} printable ASCII characters without '=' or '/'); the remote terminal is dumb",
        msg::MAX_TERM
    )
}

/// The local signals, on a thread of their own: WINCH sends the new size
/// (a `resize` frame); INT (only `kill` can send it in raw mode) goes to the
/// remote command as `run` forwards it; TERM, HUP and QUIT end ferry with
/// 128 + N, the terminal restored (the server then hangs up the remote one).
/// TSTP (only `kill` sends it in raw mode: ^Z goes to the remote terminal)
/// puts our terminal's modes back and stops ferry; CONT (`fg`, or after a
/// STOP) makes it raw again and sends the size, which may have changed
/// meanwhile, as ssh does. `sent` is the size the request gave: a change
/// before the watch began is sent at once.
pub fn watch_signals(writer: Writer, sent: WinSize) {
    use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGWINCH};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGCONT]) else {
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
                SIGTSTP => {
                    suspend();
                    let _ = signal_hook::low_level::emulate_default_handler(SIGTSTP);
                }
                SIGCONT if is_raw() => {
                    resume();
                    let now = size();
                    last = now;
                    let _ = writer.send(msg::request::resize(now), &[]);
                }
                SIGCONT => {}
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

/// Whether `-t` (and `shell`) gets a terminal: always with `-tt`; with `-t`,
/// when stdin is one. Without, one line says so (unless quiet), as ssh
/// does, and the command (or the login shell) runs on pipes.
pub fn wanted(count: u8, quiet: bool) -> bool {
    if count >= 2 || io::stdin().is_terminal() {
        return true;
    }
    if !quiet {
        exit::say("no terminal allocated: stdin is not a terminal (-tt forces one)");
    }
    false
}

/// What `run -t` cannot go with, as one usage line in ferry's words (not
/// clap's): `hosts` is -H or --hostfile, `gather` -b.
pub fn conflict(no_stdin: bool, udp: bool, hosts: bool, json: bool, gather: bool) -> Option<&'static str> {
    Some(if hosts {
        "-t goes with one HOST, not with -H"
    } else if no_stdin {
        "-t does not go with -n: what is typed goes to the remote terminal (without -t, -n gives the command /dev/null)"
    } else if udp {
        "-t goes over TCP, not with -u: a datagram has no terminal"
    } else if json {
        "-t goes with one HOST, not with --json"
    } else if gather {
        "-t goes with one HOST, not with -b"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_is_ours_unless_it_cannot_be_sent() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(term_name(Some(OsStr::new("xterm-256color"))), Ok("xterm-256color".into()));
        assert_eq!(term_name(None), Ok("dumb".into()));
        assert_eq!(term_name(Some(OsStr::new(""))), Ok("dumb".into()));
        let long = "x".repeat(msg::MAX_TERM + 1);
        for bad in ["a b", "x=y", "../../x", "/", "\x1b[31m", "caf\u{e9}", long.as_str()] {
            assert_eq!(term_name(Some(OsStr::new(bad))), Err("dumb".into()), "{bad:?}");
        }
        assert_eq!(term_name(Some(OsStr::from_bytes(b"vt\xff"))), Err("dumb".into()));
        let w = term_warning(OsStr::new("a=\x1b"));
        assert_eq!(w, "TERM \"a=\\u{1b}\" cannot be sent (1 to 256 printable ASCII characters without '=' or '/'); the remote terminal is dumb");
        assert!(term_warning(OsStr::new(&long)).contains("xxx...\""));
    }

    #[test]
    fn what_t_does_not_go_with_is_said_one_at_a_time() {
        assert_eq!(conflict(false, false, false, false, false), None);
        assert_eq!(conflict(true, true, true, true, true), Some("-t goes with one HOST, not with -H"));
        assert!(conflict(true, true, false, false, false).unwrap().starts_with("-t does not go with -n"));
        assert!(conflict(false, true, false, false, false).unwrap().starts_with("-t goes over TCP, not with -u"));
        assert_eq!(conflict(false, false, false, true, true), Some("-t goes with one HOST, not with --json"));
        assert_eq!(conflict(false, false, false, false, true), Some("-t goes with one HOST, not with -b"));
    }

    #[test]
    fn restore_without_raw_mode_does_nothing() {
        restore();
        restore();
        assert!(SAVED.lock().unwrap().is_none());
    }
}
