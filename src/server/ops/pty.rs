//! The terminal of an `exec` that asked for one (`pty` in the request): the
//! pseudo-terminal pair, the child's new session with the terminal as its
//! controlling terminal, and what the connection does to the terminal while
//! the command runs (`resize`, signals to its foreground job, the end of
//! input). `exec` owns the child and its lifecycle; this file only opens and
//! wires the terminal, so a PTY command is an ordinary `Exec` whose stdout
//! is the terminal's master side and whose stderr is already at EOF.
//!
//! The master side is read and written through two duplicates of one
//! descriptor (mio's pipe types, registered under the connection's stdout
//! and stdin tokens), so reads, writes, readiness and backpressure are
//! exactly those of a piped exec. Reading it fails with EIO once every
//! process has closed the slave side: that is its EOF.

use crate::config::Config;
use crate::proto::msg::{self, WinSize};
use crate::proto::{ErrorCode, ProtoError};
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry, Token};
use rustix::pty::OpenptFlags;
use rustix::termios::{self, Winsize};
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::super::token::Role;

/// The end-of-file character, when the terminal's cannot be read.
const DEFAULT_VEOF: u8 = 0x04;

/// A command's terminal, as the server holds it: the master side.
pub struct Term {
    master: OwnedFd,
}

/// Whether this server gives terminals (`allow_pty`); checked with the rest
/// of the exec policy, before anything is spawned or queued.
pub fn authorize(cfg: &Config) -> Result<(), ProtoError> {
    if cfg.allow_pty {
        Ok(())
    } else {
        Err(ProtoError::new(ErrorCode::NotAllowed, "this server gives no terminals (allow_pty = false); run without -t"))
    }
}

/// The account's login shell, as sshd finds it: the passwd entry of the
/// user ferryd runs as; `fallback` (the `cmd` shell) when it has none.
pub fn login_shell(fallback: &Path) -> PathBuf {
    passwd_shell().filter(|s| !s.as_os_str().is_empty()).unwrap_or_else(|| fallback.to_path_buf())
}

fn passwd_shell() -> Option<PathBuf> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwuid_r writes
    // only into it and `buf`, whose length it is given.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwuid_r(libc::geteuid(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        if r != 0 || out.is_null() || pw.pw_shell.is_null() {
            return None;
        }
        let bytes = std::ffi::CStr::from_ptr(pw.pw_shell).to_bytes().to_vec();
        Some(PathBuf::from(OsString::from_vec(bytes)))
    }
}

/// A login shell's argv[0]: its name after a dash (`-bash`), as login(1) does.
pub fn login_arg0(shell: &Path) -> OsString {
    let mut a = OsString::from("-");
    a.push(shell.file_name().unwrap_or(shell.as_os_str()));
    a
}

fn winsize(size: WinSize) -> Winsize {
    Winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// Opens a terminal of `p`'s size: the master side, which the server
/// keeps, and the slave side, for `spawn::Spec` as the child's standard
/// input, output and error with `Session::Terminal` (a new session with the
/// terminal as its controlling terminal, so ^C typed is the foreground
/// job's INT, and closing the master hangs it up). The caller sets `TERM`
/// to the client's, and drops the slave side once the child is spawned.
pub fn open(p: &msg::Pty) -> io::Result<(Term, OwnedFd)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(OsString::from_vec(name.into_bytes()))?
        .into();
    // Before exec: the program reads its size once at start.
    termios::tcsetwinsize(&slave, winsize(p.size))?;
    Ok((Term { master }, slave))
}

impl Term {
    /// The master side as the child's output (read) and input (write),
    /// non-blocking and registered under `token_of(Stdout)` and `(Stdin)`.
    pub fn register(&self, token_of: impl Fn(Role) -> Token, registry: &Registry) -> io::Result<(Receiver, Sender)> {
        let mut out = Receiver::from(self.master.try_clone()?);
        // One open file: non-blocking for both duplicates (and for `master`,
        // whose ioctls do not care).
        out.set_nonblocking(true)?;
        let mut input = Sender::from(self.master.try_clone()?);
        registry.register(&mut out, token_of(Role::Stdout), Interest::READABLE)?;
        registry.register(&mut input, token_of(Role::Stdin), Interest::WRITABLE)?;
        Ok((out, input))
    }

    /// The client's window changed: TIOCSWINSZ, which also sends the
    /// foreground job SIGWINCH.
    pub fn resize(&self, size: WinSize) {
        let _ = termios::tcsetwinsize(&self.master, winsize(size));
    }

    /// The process group a signal from the client is for: the terminal's
    /// foreground job (what ^C would reach), else `session`.
    pub fn foreground(&self, session: i32) -> i32 {
        match termios::tcgetpgrp(&self.master) {
            Ok(pid) => pid.as_raw_nonzero().get(),
            Err(_) => session,
        }
    }

    /// What the end of the client's input is on a terminal: its EOF
    /// character (^D unless changed), as if typed. The terminal itself stays
    /// open: a terminal has no half-close.
    pub fn eof_char(&self) -> u8 {
        match termios::tcgetattr(&self.master) {
            Ok(t) => match t.special_codes[termios::SpecialCodeIndex::VEOF] {
                0 => DEFAULT_VEOF,
                c => c,
            },
            Err(_) => DEFAULT_VEOF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pty(rows: u16, cols: u16) -> msg::Pty {
        msg::Pty { term: "xterm-test".into(), size: WinSize { rows, cols } }
    }

    /// Runs `script` on a fresh terminal, spawned as `exec` does; everything
    /// it wrote there.
    fn run(p: &msg::Pty, script: &str, during: impl FnOnce(&Term)) -> (String, std::process::ExitStatus) {
        use crate::server::spawn::{pidfds_available, Session, Spawner, Spec, Stdio};
        use std::os::fd::AsFd;
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let (term, slave) = open(p).unwrap();
        let env = [("TERM".to_string(), p.term.clone())].into_iter().collect();
        let argv = [std::ffi::OsStr::new("/bin/sh"), "-c".as_ref(), script.as_ref()];
        let spec = Spec {
            program: argv[0],
            argv: &argv,
            env: &env,
            cwd: Path::new("/"),
            stdio: [Stdio::Fd(slave.as_fd()); 3],
            session: Session::Terminal,
        };
        let mut child = sp.spawn(&spec).unwrap();
        drop(slave);
        during(&term);
        let mut out = Vec::new();
        let mut f = std::fs::File::from(term.master.try_clone().unwrap());
        let mut buf = [0u8; 4096];
        // EIO once the child and its terminal are gone: the end.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (String::from_utf8_lossy(&out).into_owned(), child.wait().unwrap())
    }

    #[test]
    fn the_child_leads_a_session_on_its_terminal_with_term_and_size_set() {
        let (out, status) = run(&pty(33, 101), r#"tty; stty size; echo "T=$TERM"; ps -o sid= -p $$; echo "me=$$""#, |_| {});
        assert!(status.success(), "{out}");
        assert!(out.contains("/dev/pts/"), "{out}");
        assert!(out.contains("33 101"), "{out}");
        assert!(out.contains("T=xterm-test"), "{out}");
        let me = out.lines().find_map(|l| l.strip_prefix("me=")).unwrap().trim().to_string();
        assert!(out.lines().any(|l| l.trim() == me), "session id is the child's pid: {out}");
        // The terminal turns \n into \r\n, as a terminal does.
        assert!(out.contains("\r\n"), "{out:?}");
    }

    #[test]
    fn resize_is_seen_and_eof_is_the_terminals_character() {
        let (out, _) = run(&pty(10, 20), "read x; stty size", |t| {
            assert_eq!(t.eof_char(), 0x04);
            t.resize(WinSize { rows: 44, cols: 55 });
            // A line for `read`, written where a client's stdin would go.
            rustix::io::write(&t.master, b"go\n").unwrap();
        });
        assert!(out.contains("44 55"), "{out}");
    }

    #[test]
    fn a_policy_without_terminals_refuses() {
        let mut cfg = Config::for_tests(PathBuf::from("/"));
        assert!(authorize(&cfg).is_ok());
        cfg.allow_pty = false;
        assert_eq!(authorize(&cfg).unwrap_err().code, ErrorCode::NotAllowed);
    }

    #[test]
    fn login_shells_are_named_with_a_dash() {
        assert_eq!(login_arg0(Path::new("/bin/bash")), OsString::from("-bash"));
        assert!(login_shell(Path::new("/bin/sh")).is_absolute());
    }
}
