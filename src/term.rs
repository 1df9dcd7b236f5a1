//! What `ferry` and `ferryd` write for a person to read: checked writes to
//! stdout and stderr (never `print!`, which panics when the stream is
//! closed or full), the status a failed write ends with, and the one
//! escaping function for text a server or a peer chose (file names, error
//! messages, server strings), so that it never reaches a terminal raw.
//! Imports nothing from the rest of the crate.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The status of a program whose stdout went away (`| head`): what a shell
/// reports for one killed by SIGPIPE, as `cat` would be.
pub const BROKEN_PIPE: i32 = 128 + libc::SIGPIPE;

/// `bytes` on stdout, flushed. The error is the caller's to report
/// (`write_failed`).
pub fn out(bytes: &[u8]) -> io::Result<()> {
    let mut o = stdout();
    o.write_all(bytes)?;
    o.flush()
}

/// Our stdout, as `io::stdout()`, but a closed one (`>&-`) is an error:
/// the standard library quietly drops what is written to a closed fd 1
/// (EBADF), so a command with closed stdout would seem to succeed.
pub fn stdout() -> Stdout {
    Stdout { checked: false, inner: io::stdout() }
}

/// The writer `stdout()` gives.
pub struct Stdout {
    checked: bool,
    inner: io::Stdout,
}

/// Set by `note_closed_stdout` when fd 1 was closed at start.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Notes whether fd 1 is closed (`>&-`). To be called before the standard
/// library's start-up, which puts `/dev/null` on closed fds 0-2 (so that no
/// socket takes their number) and so hides it: `ferry` calls it from an
/// `.init_array` constructor. Writing to a closed stdout is then EBADF
/// (`stdout()`), whatever fd 1 holds by then.
pub extern "C" fn note_closed_stdout() {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Stdout {
    fn check(&mut self) -> io::Result<()> {
        if !self.checked {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if STDOUT_CLOSED.load(std::sync::atomic::Ordering::SeqCst) || unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            self.checked = true;
        }
        Ok(())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        self.inner.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.lock().flush()
    }
}

/// Set while the terminal stderr is on is raw (`ferry run -t`): no output
/// processing, so a line must end in CR LF to start the next one at the left.
static RAW_STDERR: AtomicBool = AtomicBool::new(false);
/// Set when the last output to the terminal stderr is on (the remote
/// command's, as `note_output` records it) left the cursor mid-line.
static MID_LINE: AtomicBool = AtomicBool::new(false);

/// Whether stderr's lines go to a raw terminal (see `RAW_STDERR`).
pub fn set_raw_stderr(raw: bool) {
    RAW_STDERR.store(raw, Ordering::Relaxed);
}

/// Records what was last written to the terminal stderr shares (a remote
/// prompt ends mid-line), so that our next line begins on a fresh one.
pub fn note_output(bytes: &[u8]) {
    if let Some(&last) = bytes.last() {
        MID_LINE.store(last != b'\n', Ordering::Relaxed);
    }
}

/// What `err` writes for `bytes`: on a fresh line when the terminal's
/// cursor is mid-line, and with CR LF line ends while it is raw.
fn for_terminal(bytes: &[u8], mid_line: bool, raw: bool) -> Cow<'_, [u8]> {
    if !mid_line && !raw {
        return Cow::Borrowed(bytes);
    }
    let mut v = Vec::with_capacity(bytes.len() + 8);
    if mid_line {
        v.extend_from_slice(if raw { b"\r\n" } else { b"\n" });
    }
    for &b in bytes {
        if b == b'\n' && raw {
            v.push(b'\r');
        }
        v.push(b);
    }
    Cow::Owned(v)
}

/// `bytes` on stderr, best effort: when stderr itself fails there is
/// nowhere left to say so. While ferry's terminal is raw, or a remote
/// prompt left its cursor mid-line, the lines are made to read right.
pub fn err(bytes: &[u8]) {
    let mid_line = MID_LINE.swap(false, Ordering::Relaxed);
    let bytes = for_terminal(bytes, mid_line, RAW_STDERR.load(Ordering::Relaxed));
    let mut e = io::stderr().lock();
    let _ = e.write_all(&bytes).and_then(|()| e.flush());
}

/// A formatted line on stdout (`outln!`): `Err` when it could not be written.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::term::out(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// A formatted line on stderr (`errln!`), best effort.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::term::err(format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

/// `PROG: MSG` on stderr, MSG escaped.
pub fn say(prog: &str, msg: impl std::fmt::Display) {
    err(format!("{prog}: {}\n", escape(&msg.to_string())).as_bytes());
}

/// An I/O error without Rust's "(os error N)"; where the errno's name is
/// what a user searches for, it leads (`ENOSPC: no space left on device`).
pub fn io_text(e: &io::Error) -> String {
    let named = match e.raw_os_error() {
        Some(libc::ENOSPC) => Some("ENOSPC: no space left on device"),
        Some(libc::EDQUOT) => Some("EDQUOT: disk quota exceeded"),
        Some(libc::EROFS) => Some("EROFS: read-only file system"),
        Some(libc::EMFILE) => Some("EMFILE: too many open files"),
        _ => None,
    };
    if let Some(n) = named {
        return n.to_string();
    }
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Whether `e` says the reader of our output went away.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// A write to `what` (stdout) failed: quietly `BROKEN_PIPE` when the reader
/// went away, else one line on stderr and `status`.
pub fn write_failed(prog: &str, what: &str, e: &io::Error, status: i32) -> i32 {
    if is_broken_pipe(e) {
        return BROKEN_PIPE;
    }
    say(prog, format_args!("cannot write {what}: {}", io_text(e)));
    status
}

/// A clap outcome that is not a parsed command line: `--help` and
/// `--version` written to stdout with a check (status 0, or as
/// `write_failed` with `fail_status`), a usage error printed on stderr
/// (`usage_status`).
pub fn clap_exit(prog: &str, e: &clap::Error, usage_status: i32, fail_status: i32) -> i32 {
    if e.use_stderr() {
        let _ = e.print();
        return usage_status;
    }
    match out(e.render().to_string().as_bytes()) {
        Ok(()) => 0,
        Err(w) => write_failed(prog, "stdout", &w, fail_status),
    }
}

/// `s` safe for a terminal, as `ls -b` (GNU `--quoting-style=escape`) shows
/// a name: `\n`, `\t` and the other C escapes, other control characters
/// (C0, DEL, C1) and the Unicode bidirectional controls as octal bytes
/// (`\033`), a backslash as `\\`. Printable text, UTF-8 included, is kept.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

/// As `escape`, for bytes that may not be UTF-8: each invalid byte as
/// octal (`\377`).
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return escape(s);
    }
    let mut out = String::with_capacity(b.len() + 8);
    let mut rest = b;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let ok = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                (ok, e.error_len().unwrap_or(rest.len() - e.valid_up_to()))
            }
        };
        for c in valid.chars() {
            push_char(&mut out, c);
        }
        for byte in &rest[valid.len()..valid.len() + bad] {
            let _ = write!(out, "\\{byte:03o}");
        }
        rest = &rest[valid.len() + bad..];
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn push_char(out: &mut String, c: char) {
    if !needs_escape(c) {
        out.push(c);
        return;
    }
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{b}' => out.push_str("\\v"),
        '\u{c}' => out.push_str("\\f"),
        c => {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{byte:03o}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_on_a_raw_terminal_end_in_crlf_and_start_on_a_fresh_line() {
        assert_eq!(&*for_terminal(b"ferry: x\n", false, false), b"ferry: x\n");
        assert_eq!(&*for_terminal(b"ferry: x\n", true, false), b"\nferry: x\n");
        assert_eq!(&*for_terminal(b"a\nb\n", false, true), b"a\r\nb\r\n");
        assert_eq!(&*for_terminal(b"ferry: x\n", true, true), b"\r\nferry: x\r\n");
    }

    #[test]
    fn control_characters_and_bad_utf8_are_escaped_as_ls_b_does() {
        assert_eq!(escape("plain name.txt"), "plain name.txt");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
        assert_eq!(escape("\u{1b}[31mred"), "\\033[31mred");
        assert_eq!(escape("a\nb\tc\\d"), "a\\nb\\tc\\\\d");
        assert_eq!(escape("\u{7f}\u{9b}"), "\\177\\302\\233");
        assert_eq!(escape("x\u{202e}y"), "x\\342\\200\\256y");
        assert_eq!(escape_bytes(b"ok\xff\n"), "ok\\377\\n");
        assert_eq!(escape_bytes(b"fine"), "fine");
    }

    #[test]
    fn a_write_to_a_closed_pipe_is_141() {
        assert_eq!(BROKEN_PIPE, 141);
        assert_eq!(write_failed("ferry", "stdout", &io::ErrorKind::BrokenPipe.into(), 255), 141);
    }
}
