//! The `exec` operation: one child process, its three pipes, and the rules for
//! when the final `exit` frame may go out.
//!
//! The child runs in a process group of its own, so `signal` requests, the
//! timeout and a dropped connection reach everything it started. Its pipes are
//! non-blocking and registered in the server's `Poll` under the connection's
//! tokens; readiness is stored here and cleared on `WouldBlock`.
//!
//! An exec is finished on a conjunction: stdout at EOF, stderr at EOF, and the
//! child reaped. Only then is `exit` sent, so no output can follow it. A
//! process the child left running in the background may hold the pipes open
//! (`sh -c 'daemon & echo started'`): once the child is reaped, its output is
//! read for `OUTPUT_GRACE` more, then the process group is killed, the pipes
//! are closed and `exit` goes out with the child's status.
//!
//! The exec policy (`allow_exec`, `exec.allowed`, `exec.env_clear`,
//! `exec.timeout`) is applied in `Exec::start` before anything is spawned; see
//! `authorize` and `check_program` for the allow-list's matching rule.
//!
//! The child is started by `server::spawn` (pipes from `pipe2`, non-blocking
//! on our side only; the environment prepared once per configuration). Its
//! pidfd is registered under the `Role::Child` token, so its exit is an event
//! of its own; without pidfds the server reaps on SIGCHLD.
//!
//! One wake per exit: the write ends of the child's stdout and stderr pipes
//! stay open here (never read nor written) until the child is reaped, and are
//! closed then. A child that exits closes its own ends before it becomes a
//! zombie, so without ours the pipes' hang-ups would wake the reactor first
//! and the pidfd a moment later, often in two turns. With ours, its exit is
//! one event: reaped, our ends closed, the pipes are read to their end at
//! once, and `exit` goes out. Output still wakes the reactor as it comes; a
//! pipe held by what the child left behind reaches its end when that closes.

use super::super::buf::Buf;
use super::super::spawn::{self, Child, Session, Spec, Stdio};
use super::super::token::Role;
use super::allow::check_program;
use super::ctx::{Ctx, FrameUse, Via};
use super::pty::{self, Term};
use crate::proto::msg::{self, Command, Request, SignalName, Stream};
use crate::proto::{encode_frame, ErrorCode, Header, ProtoError};
use crate::config::Config;
use mio::unix::pipe::{Receiver, Sender};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use serde_json::Value;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// After a TERM for a timeout, how long until KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the child is reaped, how long its pipes may stay open (held by
/// processes it left behind) before the group is killed and `exit` is sent.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// The largest chunk read from a child's pipe at once (one frame's body).
pub const CHUNK: usize = 64 * 1024;

/// Sends `sig` to the process group `pgid`. A group already gone is fine.
pub fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// A child's output pipe and whether it may have bytes for us.
struct Output {
    pipe: Option<Receiver>,
    ready: bool,
    stream: Stream,
}

impl Output {
    /// Not ready until the poll says so: the pipe is registered
    /// edge-triggered, and epoll reports a descriptor's readiness at the
    /// moment it is added (`ep_insert` polls it), so output the child wrote
    /// before the registration still comes as an event. A read before that
    /// would only find `EAGAIN` for a command that has not written yet.
    fn new(pipe: Option<Receiver>, stream: Stream) -> Output {
        Output { pipe, ready: false, stream }
    }

    fn at_eof(&self) -> bool {
        self.pipe.is_none()
    }

    /// Moves what the pipe has into `out` as frames, up to `room` bytes.
    fn pump(&mut self, out: &mut Buf, id: Option<&Value>, room: usize, scratch: &mut [u8]) -> usize {
        let want = room.min(scratch.len()).min(CHUNK);
        let n = self.read(&mut scratch[..want]);
        if n > 0 {
            encode_frame(out.tail(), msg::output(self.stream, id), &scratch[..n]);
        }
        n
    }

    /// One read of the pipe into `buf`: bytes read, 0 when there are none now
    /// (readiness cleared) or at EOF (the pipe dropped).
    fn read(&mut self, buf: &mut [u8]) -> usize {
        let Some(pipe) = self.pipe.as_mut() else { return 0 };
        if !self.ready || buf.is_empty() {
            return 0;
        }
        loop {
            match pipe.read(buf) {
                Ok(0) => {
                    self.pipe = None;
                    return 0;
                }
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return 0;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.pipe = None;
                    return 0;
                }
            }
        }
    }
}

/// A running `exec` request.
pub struct Exec {
    child: Child,
    /// The child's pid, which is also its process group id.
    pgid: i32,
    id: Option<Value>,
    stdout: Output,
    stderr: Output,
    stdin: Option<Sender>,
    /// Our copies of the write ends of the child's stdout and stderr pipes,
    /// closed once it is reaped (see the module doc). None on a terminal.
    writers: Option<(OwnedFd, OwnedFd)>,
    stdin_ready: bool,
    /// Bytes from `stdin` frames not yet taken by the child.
    stdin_buf: Vec<u8>,
    /// An EOF (`stdin` of size 0) arrived: close the pipe once `stdin_buf` is written.
    stdin_eof: bool,
    /// The EOF character was typed on a terminal in canonical mode: typed
    /// once more if it leaves that mode while the command runs (see `close_stdin`).
    eof_again: bool,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    /// When it was reaped: the pipes get `OUTPUT_GRACE` from then.
    reaped_at: Option<Instant>,
    /// When the request's timeout sends TERM.
    term_at: Option<Instant>,
    /// When a TERM already sent is followed by KILL.
    kill_at: Option<Instant>,
    timed_out: bool,
    /// Output bytes framed so far.
    out_total: u64,
    /// The command's terminal, when it asked for one (see `pty`).
    term: Option<Term>,
}

/// How a child ended: its exit code or the signal that killed it, and
/// whether the request's timeout had sent it TERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

impl Exit {
    /// Appends the whole `exit` frame to `out`, without building a map.
    pub fn encode(&self, out: &mut Vec<u8>, id: Option<&Value>) {
        msg::encode_exit(out, self.code, self.signal, self.timed_out, id);
    }

    /// The `exit` frame's header.
    pub fn frame(&self, id: Option<&Value>) -> serde_json::Map<String, Value> {
        let mut m = msg::exit(self.code, self.signal, id);
        if self.timed_out {
            m.insert("timed_out".into(), Value::Bool(true));
        }
        m
    }

    /// The access line's result: `exit:CODE` or `signal:N`, and ` timed_out=true`.
    pub fn result(&self) -> String {
        let mut r = match (self.code, self.signal) {
            (Some(c), _) => format!("exit:{c}"),
            (None, Some(s)) => format!("signal:{s}"),
            (None, None) => "exit:?".to_string(),
        };
        if self.timed_out {
            r.push_str(" timed_out=true");
        }
        r
    }
}

impl Exec {
    /// Spawns the child for `req` and registers its pipes under the tokens
    /// of `via` (a connection's, or a datagram exec slot's). `program` is
    /// what `authorize` answered for `req` with the config of this moment:
    /// nothing is spawned for a request the exec policy refuses.
    pub fn start(req: &msg::Exec, program: PathBuf, id: Option<&Value>, via: Via, ctx: &mut Ctx) -> Result<Exec, ProtoError> {
        // The root itself was checked at startup (and reload): no stat per
        // exec; a root removed since fails at the child's chdir.
        let resolved;
        let cwd: &Path = match &req.cwd {
            Some(rel) => {
                resolved = crate::paths::resolve_existing(&ctx.cfg.root, rel)?;
                if !resolved.is_dir() {
                    return Err(ProtoError::new(ErrorCode::BadPath, format!("cwd \"{rel}\" is not a directory")));
                }
                &resolved
            }
            None => &ctx.cfg.root,
        };
        // `program` is what the policy checked; the child sees the name it was
        // asked for as its argv[0], as with execvp.
        let login_arg0;
        let argv: Vec<&OsStr> = match &req.command {
            Command::Shell(s) => vec![ctx.cfg.shell.as_os_str(), OsStr::new("-c"), OsStr::new(s)],
            Command::Argv(argv) => argv.iter().map(OsStr::new).collect(),
            Command::Login => {
                login_arg0 = pty::login_arg0(&program);
                vec![login_arg0.as_os_str()]
            }
        };
        let cannot = |what: &str, e: io::Error| {
            let name = match &req.command {
                Command::Shell(_) => ctx.cfg.shell.display().to_string(),
                Command::Argv(argv) => argv[0].clone(),
                Command::Login => program.display().to_string(),
            };
            ProtoError::new(ErrorCode::SpawnFailed, format!("cannot {what} \"{name}\": {e}"))
        };
        let mut spec = Spec {
            program: program.as_os_str(),
            argv: &argv,
            env: &req.env,
            cwd,
            stdio: [Stdio::Null; 3],
            session: Session::Group,
        };
        // On a terminal: its slave side as 0, 1 and 2, a session of its own
        // with it as the controlling terminal, `TERM` the client's. Else three
        // pipes (stdin only when asked for), non-blocking on our side.
        let (term, mut child, pipes, writers) = match &req.pty {
            Some(p) => {
                let (term, slave) = pty::open(p).map_err(|e| ProtoError::new(ErrorCode::SpawnFailed, format!("cannot open a terminal: {e}")))?;
                let mut env = req.env.clone();
                env.insert("TERM".into(), p.term.clone());
                spec.env = &env;
                spec.stdio = [Stdio::Fd(slave.as_fd()); 3];
                spec.session = Session::Terminal;
                let child = ctx.spawner.spawn(&spec).map_err(|e| cannot("run", e))?;
                // The slave side must close with the child, not stay open here.
                drop(slave);
                let pipes = term.register(|role| via.token(role), ctx.registry).map(|(out, input)| (out, None, Some(input)));
                (Some(term), child, pipes, None)
            }
            None => {
                let pipes = (|| Ok::<_, io::Error>((spawn::pipe()?, spawn::pipe()?, if req.stdin { Some(spawn::pipe()?) } else { None })))();
                let ((out_r, out_w), (err_r, err_w), stdin) = pipes.map_err(|e| cannot("make pipes for", e))?;
                spec.stdio = [stdin.as_ref().map_or(Stdio::Null, |(r, _)| Stdio::Fd(r.as_fd())), Stdio::Fd(out_w.as_fd()), Stdio::Fd(err_w.as_fd())];
                let child = ctx.spawner.spawn(&spec).map_err(|e| cannot("run", e))?;
                // The write ends stay open until the child is reaped (see the
                // module doc); the child made them blocking, which nothing here
                // minds: they are never written.
                let stdin = stdin.map(|(_, w)| w);
                let pipes = register_pipes(out_r, err_r, stdin, |role| via.token(role), ctx.registry).map(|(o, e, i)| (o, Some(e), i));
                (None, child, pipes, Some((out_w, err_w)))
            }
        };
        let pgid = child.id() as i32;
        let (out, err, stdin) = match pipes.and_then(|p| register_child(&child, |role| via.token(role), ctx.registry).map(|()| p)) {
            Ok(p) => p,
            Err(e) => {
                kill_group(pgid, libc::SIGKILL);
                let _ = child.wait();
                return Err(ProtoError::new(ErrorCode::SpawnFailed, format!("cannot set up pipes: {e}")));
            }
        };
        *ctx.children += 1;
        Ok(Exec {
            child,
            pgid,
            id: id.cloned(),
            stdout: Output::new(Some(out), Stream::Stdout),
            stderr: Output::new(err, Stream::Stderr),
            stdin,
            writers,
            stdin_ready: true,
            stdin_buf: Vec::new(),
            stdin_eof: false,
            eof_again: false,
            status: None,
            reaped_at: None,
            term_at: effective_timeout(req.timeout, ctx.cfg.exec_timeout).map(|t| ctx.now + t),
            kill_at: None,
            timed_out: false,
            out_total: 0,
            term,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// Records readiness for one of the child's pipes.
    pub fn on_event(&mut self, role: Role) {
        match role {
            Role::Stdout => self.stdout.ready = true,
            Role::Stderr => self.stderr.ready = true,
            Role::Stdin => self.stdin_ready = true,
            Role::Socket | Role::Child => {}
        }
    }

    /// True when a `stdin` frame's body should go to the child.
    pub fn takes_stdin(&self) -> bool {
        self.stdin.is_some() && !self.stdin_eof
    }

    /// True while stdin bytes wait for the child (the connection stops parsing).
    pub fn stdin_backlog(&self) -> bool {
        !self.stdin_buf.is_empty()
    }

    pub fn push_stdin(&mut self, bytes: &[u8]) {
        if self.takes_stdin() {
            self.stdin_buf.extend_from_slice(bytes);
        }
    }

    /// EOF from the client: close the child's stdin once the backlog is
    /// written (on a terminal: type its EOF character). A terminal in
    /// canonical mode gets it once more, if it then leaves that mode before
    /// the command ends: an interactive shell that was still starting
    /// (`run -tt HOST </dev/null`) switches its line editor on and would
    /// have lost the first one (the switch turns a pending EOF into a NUL
    /// byte), and then waits for input that will never come.
    pub fn close_stdin(&mut self) {
        if let Some(t) = &self.term {
            if self.takes_stdin() {
                self.stdin_buf.push(t.eof_char());
                self.eof_again = t.is_canonical();
            }
        }
        self.stdin_eof = true;
        if self.stdin_buf.is_empty() {
            self.stdin = None;
        }
    }

    /// Writes backlog to the child's stdin. Returns bytes written.
    pub fn pump_stdin(&mut self) -> usize {
        let Some(pipe) = self.stdin.as_mut() else {
            self.stdin_buf.clear();
            return 0;
        };
        let mut total = 0;
        while self.stdin_ready && !self.stdin_buf.is_empty() {
            match pipe.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.stdin_ready = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The child closed its stdin (EPIPE): what it did not read is dropped.
                    self.stdin = None;
                    self.stdin_buf.clear();
                    return total;
                }
            }
        }
        if self.stdin_eof && self.stdin_buf.is_empty() && !self.eof_again {
            self.stdin = None;
        }
        total
    }

    /// The second EOF character of `close_stdin`, once the terminal has
    /// left canonical mode (checked as output comes: a line editor turns
    /// it off before it draws its prompt).
    fn eof_once_more(&mut self) {
        let Some(t) = &self.term else { return };
        if self.eof_again && self.stdin.is_some() && !t.is_canonical() {
            self.eof_again = false;
            self.stdin_buf.push(t.eof_char());
            self.pump_stdin();
        }
    }

    /// Moves child output into `out` while it stays below `high_water`.
    /// Returns bytes moved.
    pub fn pump_output(&mut self, out: &mut Buf, high_water: usize, budget: usize, scratch: &mut [u8]) -> usize {
        if self.eof_again {
            self.eof_once_more();
        }
        let mut moved = 0;
        loop {
            let room = high_water.saturating_sub(out.len()).min(budget.saturating_sub(moved));
            let n = self.stdout.pump(out, self.id.as_ref(), room, scratch);
            let room = high_water.saturating_sub(out.len()).min(budget.saturating_sub(moved + n));
            let m = self.stderr.pump(out, self.id.as_ref(), room, scratch);
            moved += n + m;
            self.out_total += (n + m) as u64;
            if n + m == 0 {
                return moved;
            }
        }
    }

    /// Reads what the pipes have, up to about `budget` bytes, and hands each
    /// chunk to `sink` instead of framing it (a datagram exec keeps prefixes
    /// and counts totals). Returns bytes read.
    pub fn read_output(&mut self, scratch: &mut [u8], budget: usize, mut sink: impl FnMut(Stream, &[u8])) -> usize {
        let mut moved = 0;
        loop {
            let mut n = 0;
            for out in [&mut self.stdout, &mut self.stderr] {
                let want = budget.saturating_sub(moved + n).min(scratch.len()).min(CHUNK);
                let got = out.read(&mut scratch[..want]);
                if got > 0 {
                    sink(out.stream, &scratch[..got]);
                    n += got;
                }
            }
            moved += n;
            if n == 0 || moved >= budget {
                return moved;
            }
        }
    }

    /// Reaps the child if it has exited. Returns true when it was reaped now.
    pub fn try_reap(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.reaped(status);
                true
            }
            _ => false,
        }
    }

    /// The child is gone: nothing more will read its stdin (closed, so no
    /// write can block), and its output pipes end once what it left behind
    /// closes them too, so our write ends go and the pipes are read now.
    fn reaped(&mut self, status: ExitStatus) {
        self.status = Some(status);
        self.reaped_at = Some(Instant::now());
        self.stdin = None;
        self.stdin_buf.clear();
        if self.writers.take().is_some() {
            self.stdout.ready = true;
            self.stderr.ready = true;
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_some() && self.stdout.at_eof() && self.stderr.at_eof()
    }

    /// How the child ended, once `is_finished`.
    pub fn exit(&self) -> Exit {
        let status = self.status.expect("exit after the child was reaped");
        Exit { code: status.code(), signal: status.signal(), timed_out: self.timed_out }
    }

    /// Child output framed so far, in bytes (for the access line).
    pub fn bytes_out(&self) -> u64 {
        self.out_total
    }

    /// Takes a frame that arrived while the command runs: `stdin` (its body
    /// goes to the child; empty: EOF) and `signal`. Anything else waits.
    pub fn on_frame(&mut self, h: &Header) -> FrameUse {
        if h.kind != "stdin" && h.kind != "signal" && h.kind != "resize" {
            return FrameUse::Hold;
        }
        match Request::from_header(h) {
            Ok(Request::Stdin) if h.size == 0 => self.close_stdin(),
            Ok(Request::Stdin) if self.takes_stdin() => return FrameUse::Body,
            Ok(Request::Signal(sig)) => self.signal(sig),
            Ok(Request::Resize(size)) => match &self.term {
                Some(t) => t.resize(size),
                None => return FrameUse::Answer(ProtoError::new(ErrorCode::BadRequest, "resize: the command has no terminal")),
            },
            Ok(_) => {}
            // A bad stdin or signal frame is answered; the command's result is its exit.
            Err(err) => return FrameUse::Answer(err),
        }
        FrameUse::Used
    }

    /// Sends `sig` to the command's process group (on a terminal, to its
    /// foreground job, as the key that makes it would).
    pub fn signal(&self, sig: SignalName) {
        if self.status.is_none() {
            let group = self.term.as_ref().map_or(self.pgid, |t| t.foreground(self.pgid));
            kill_group(group, sig.number());
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        if self.status.is_some() {
            // Reaped, output still open: the grace for processes left behind.
            return self.reaped_at.filter(|_| !self.is_finished()).map(|t| t + OUTPUT_GRACE);
        }
        self.kill_at.or(self.term_at)
    }

    /// The timeout: TERM first, KILL `KILL_GRACE` later.
    pub fn on_deadline(&mut self, now: Instant) {
        if self.status.is_some() {
            if self.deadline().is_some_and(|t| now >= t) {
                // What the child left behind holds its pipes: kill the group
                // and stop reading, so `exit` can go.
                kill_group(self.pgid, libc::SIGKILL);
                self.stdout.pipe = None;
                self.stderr.pipe = None;
            }
            return;
        }
        if let Some(k) = self.kill_at {
            if now >= k {
                kill_group(self.pgid, libc::SIGKILL);
                self.kill_at = None;
                self.term_at = None;
            }
        } else if let Some(t) = self.term_at {
            if now >= t {
                self.timed_out = true;
                kill_group(self.pgid, libc::SIGTERM);
                self.term_at = None;
                self.kill_at = Some(now + KILL_GRACE);
            }
        }
    }

    /// The connection is going away: TERM the group and hand the child over
    /// to be reaped (and KILLed if it lingers). None if already reaped.
    /// The pipes close with `self`, which also takes them out of the poll.
    pub fn abandon(self) -> Option<Child> {
        if self.status.is_some() {
            return None;
        }
        kill_group(self.pgid, libc::SIGTERM);
        Some(self.child)
    }

    /// KILL and wait: the daemon is exiting and leaves nothing behind.
    pub fn kill_and_reap(&mut self) {
        if self.status.is_none() {
            kill_group(self.pgid, libc::SIGKILL);
            if let Ok(status) = self.child.wait() {
                self.reaped(status);
            }
        }
    }

    /// KILL now (the drain timeout passed and TERM did not end it): its
    /// group, and on a terminal the foreground job too; the child is then
    /// reaped as usual and its `exit` says KILL.
    pub fn kill(&self) {
        if self.status.is_none() {
            if let Some(t) = &self.term {
                let fg = t.foreground(self.pgid);
                if fg != self.pgid {
                    kill_group(fg, libc::SIGKILL);
                }
            }
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Registers our ends of the child's pipes under `token_of(role)`.
fn register_pipes(
    out: OwnedFd,
    err: OwnedFd,
    stdin: Option<OwnedFd>,
    token_of: impl Fn(Role) -> Token,
    registry: &Registry,
) -> io::Result<(Receiver, Receiver, Option<Sender>)> {
    let mut out = Receiver::from(out);
    let mut err = Receiver::from(err);
    registry.register(&mut out, token_of(Role::Stdout), Interest::READABLE)?;
    registry.register(&mut err, token_of(Role::Stderr), Interest::READABLE)?;
    let stdin = match stdin {
        Some(s) => {
            let mut s = Sender::from(s);
            registry.register(&mut s, token_of(Role::Stdin), Interest::WRITABLE)?;
            Some(s)
        }
        None => None,
    };
    Ok((out, err, stdin))
}

/// Registers the child's pidfd, if it has one, under `token_of(Role::Child)`:
/// its exit is then an event of its own. It leaves the poll when it is
/// closed, once the child is reaped.
fn register_child(child: &Child, token_of: impl Fn(Role) -> Token, registry: &Registry) -> io::Result<()> {
    if let Some(fd) = child.pidfd() {
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token_of(Role::Child), Interest::READABLE)?;
    }
    Ok(())
}

pub use spawn::{DEFAULT_PATH, KEPT_ENV};

/// An exec's timeout: the request's, capped by the server's ceiling; the
/// ceiling alone when the request gives none.
pub fn effective_timeout(requested: Option<f64>, ceiling: Option<Duration>) -> Option<Duration> {
    // Requests are checked to be positive and finite; both are capped at ~31
    // years so the deadline arithmetic cannot overflow.
    const FOREVER: Duration = Duration::from_secs(1_000_000_000);
    let requested = requested.map(|t| Duration::from_secs_f64(t.clamp(0.0, FOREVER.as_secs_f64())));
    let t = match (requested, ceiling) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    };
    t.map(|t| t.min(FOREVER))
}

/// The exec policy for one request, before any spawn: `exec-disabled` when
/// the server runs no commands, `not-allowed` when the program (argv[0], or
/// the shell for a `cmd`) is outside `exec.allowed`. Returns the program to
/// spawn (see `check_program`).
pub fn authorize(req: &msg::Exec, cfg: &Config) -> Result<PathBuf, ProtoError> {
    if !cfg.allow_exec {
        return Err(ProtoError::new(ErrorCode::ExecDisabled, "exec is disabled on this server"));
    }
    if req.pty.is_some() {
        pty::authorize(cfg)?;
    }
    // The daemon's PATH, looked up only for a list to check.
    let path_env = if cfg.exec_allowed.is_empty() { None } else { std::env::var_os("PATH") };
    match &req.command {
        Command::Login => check_program(&cfg.exec_allowed, pty::login_shell(&cfg.shell).as_os_str(), path_env.as_deref()),
        Command::Argv(argv) => check_program(&cfg.exec_allowed, OsStr::new(&argv[0]), path_env.as_deref()),
        Command::Shell(_) => check_program(&cfg.exec_allowed, cfg.shell.as_os_str(), path_env.as_deref()).map_err(|e| {
            if e.code == ErrorCode::NotAllowed {
                let shell = &cfg.shell;
                let msg = format!("cmd runs through \"{}\", which is not in the exec allow-list (send argv)", shell.display());
                ProtoError::new(ErrorCode::NotAllowed, msg)
            } else {
                e
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::ffi::OsString;
    use std::fs;

    /// A directory of fake programs and a PATH naming it.
    struct Bin {
        dir: tempfile::TempDir,
    }

    impl Bin {
        fn new(progs: &[&str]) -> Bin {
            let dir = tempfile::tempdir().unwrap();
            for p in progs {
                let f = dir.path().join(p);
                fs::write(&f, "#!/bin/sh\n").unwrap();
                fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
            }
            Bin { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().canonicalize().unwrap().join(name)
        }

        fn s(&self, name: &str) -> String {
            self.path(name).to_str().unwrap().to_string()
        }

        fn env(&self) -> OsString {
            self.dir.path().canonicalize().unwrap().into_os_string()
        }
    }

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn check(allowed: &[String], prog: &str, path_env: &OsStr) -> Result<PathBuf, ErrorCode> {
        check_program(allowed, OsStr::new(prog), Some(path_env)).map_err(|e| e.code)
    }

    #[test]
    fn an_empty_list_allows_anything_unchanged() {
        let b = Bin::new(&[]);
        for p in ["ls", "./x", "bin/x", "/nowhere/y"] {
            assert_eq!(check(&[], p, &b.env()), Ok(PathBuf::from(p)));
        }
    }

    #[test]
    fn a_name_entry_allows_that_bare_name_resolved_through_path() {
        let b = Bin::new(&["tool", "other"]);
        let allowed = list(&["tool"]);
        assert_eq!(check(&allowed, "tool", &b.env()), Ok(b.path("tool")));
        assert_eq!(check(&allowed, "other", &b.env()), Err(ErrorCode::NotAllowed));
        assert_eq!(check(&allowed, "nope", &b.env()), Err(ErrorCode::NotAllowed));
        // Allowed but not there: the spawn's error, not the policy's.
        assert_eq!(check(&allowed, "tool", OsStr::new("/nonexistent")), Err(ErrorCode::SpawnFailed));
    }

    #[test]
    fn a_name_entry_allows_the_absolute_path_it_resolves_to_and_no_other() {
        let b = Bin::new(&["tool"]);
        let elsewhere = Bin::new(&["tool"]);
        let allowed = list(&["tool"]);
        assert_eq!(check(&allowed, &b.s("tool"), &b.env()), Ok(b.path("tool")));
        assert_eq!(check(&allowed, &elsewhere.s("tool"), &b.env()), Err(ErrorCode::NotAllowed));
        // The same directory spelled through `..`.
        let dotted = format!("{}/../{}/tool", b.s(""), b.path("").file_name().unwrap().to_str().unwrap());
        assert_eq!(check(&allowed, &dotted, &b.env()), Ok(b.path("tool")));
    }

    #[test]
    fn an_absolute_entry_allows_that_path_and_a_bare_name_resolving_to_it() {
        let b = Bin::new(&["tool", "other"]);
        let allowed = list(&[&b.s("tool")]);
        assert_eq!(check(&allowed, &b.s("tool"), &b.env()), Ok(b.path("tool")));
        assert_eq!(check(&allowed, "tool", &b.env()), Ok(b.path("tool")));
        assert_eq!(check(&allowed, "other", &b.env()), Err(ErrorCode::NotAllowed));
        assert_eq!(check(&allowed, &b.s("other"), &b.env()), Err(ErrorCode::NotAllowed));
        // A bare name found first somewhere else is that other file: refused.
        let first = Bin::new(&["tool"]);
        let path = std::env::join_paths([first.env(), b.env()]).unwrap();
        assert_eq!(check(&allowed, "tool", &path), Err(ErrorCode::NotAllowed));
        // An absolute entry whose directory does not exist still matches itself
        // exactly (the spawn then fails).
        let allowed = list(&["/nonexistent/dir/tool"]);
        assert_eq!(check(&allowed, "/nonexistent/dir/tool", &b.env()), Ok(PathBuf::from("/nonexistent/dir/tool")));
    }

    #[test]
    fn directory_links_are_resolved_but_file_links_are_not() {
        let b = Bin::new(&["multi"]);
        let links = tempfile::tempdir().unwrap();
        let dir_link = links.path().join("bin");
        std::os::unix::fs::symlink(b.dir.path(), &dir_link).unwrap();
        std::os::unix::fs::symlink(b.path("multi"), b.path("ls")).unwrap();
        // The entry names the file through a linked directory: the same file.
        let allowed = list(&[dir_link.join("ls").to_str().unwrap()]);
        assert_eq!(check(&allowed, &b.s("ls"), &b.env()), Ok(b.path("ls")));
        assert_eq!(check(&allowed, "ls", &b.env()), Ok(b.path("ls")));
        // What `ls` links to is another name: not allowed by `ls`.
        assert_eq!(check(&allowed, &b.s("multi"), &b.env()), Err(ErrorCode::NotAllowed));
        assert_eq!(check(&allowed, "multi", &b.env()), Err(ErrorCode::NotAllowed));
    }

    #[test]
    fn relative_paths_with_a_slash_are_never_allowed() {
        let b = Bin::new(&["tool"]);
        let allowed = list(&["tool", &b.s("tool")]);
        for p in ["./tool", "bin/tool", "../tool", ""] {
            assert_eq!(check(&allowed, p, &b.env()), Err(ErrorCode::NotAllowed), "{p:?}");
        }
    }

    #[test]
    fn relative_and_empty_path_entries_are_not_searched() {
        let b = Bin::new(&["tool"]);
        let allowed = list(&["tool"]);
        let cwd_entries = std::env::join_paths([OsString::from(""), OsString::from("."), b.env()]).unwrap();
        assert_eq!(check(&allowed, "tool", &cwd_entries), Ok(b.path("tool")));
        assert_eq!(check(&allowed, "tool", OsStr::new(".:bin:")), Err(ErrorCode::SpawnFailed));
    }

    #[test]
    fn non_executables_and_directories_are_skipped_as_execvp_does() {
        let first = tempfile::tempdir().unwrap();
        fs::write(first.path().join("tool"), "data").unwrap();
        fs::create_dir(first.path().join("other")).unwrap();
        let b = Bin::new(&["tool", "other"]);
        let path = std::env::join_paths([first.path().as_os_str(), &b.env()]).unwrap();
        let allowed = list(&["tool", "other"]);
        assert_eq!(check(&allowed, "tool", &path), Ok(b.path("tool")));
        assert_eq!(check(&allowed, "other", &path), Ok(b.path("other")));
    }

    #[test]
    fn malformed_entries_match_nothing() {
        let b = Bin::new(&["tool"]);
        let allowed = list(&["", "bin/tool", "./tool"]);
        assert_eq!(check(&allowed, "tool", &b.env()), Err(ErrorCode::NotAllowed));
        assert_eq!(check(&allowed, "bin/tool", &b.env()), Err(ErrorCode::NotAllowed));
    }

    fn exec_req(command: Command) -> msg::Exec {
        msg::Exec { command, env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None }
    }

    #[test]
    fn authorize_checks_the_shell_for_cmd_and_argv0_for_argv() {
        let mut cfg = Config::for_tests(PathBuf::from("/"));
        let sh = exec_req(Command::Shell("echo hi".into()));
        let echo = exec_req(Command::Argv(vec!["echo".into(), "hi".into()]));
        assert_eq!(authorize(&sh, &cfg), Ok(PathBuf::from("/bin/sh")));
        cfg.exec_allowed = list(&["/nonexistent/only"]);
        let e = authorize(&sh, &cfg).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotAllowed);
        assert!(e.message.contains("argv"), "{}", e.message);
        assert_eq!(authorize(&echo, &cfg).unwrap_err().code, ErrorCode::NotAllowed);
        cfg.exec_allowed = list(&["/bin/sh"]);
        assert!(authorize(&sh, &cfg).is_ok());
        assert_eq!(authorize(&echo, &cfg).unwrap_err().code, ErrorCode::NotAllowed);
        cfg.allow_exec = false;
        assert_eq!(authorize(&sh, &cfg).unwrap_err().code, ErrorCode::ExecDisabled);
    }

    #[test]
    fn the_timeout_ceiling_caps_and_fills_in() {
        let s = Duration::from_secs;
        assert_eq!(effective_timeout(None, None), None);
        assert_eq!(effective_timeout(Some(2.5), None), Some(Duration::from_millis(2500)));
        assert_eq!(effective_timeout(None, Some(s(3))), Some(s(3)));
        assert_eq!(effective_timeout(Some(10.0), Some(s(3))), Some(s(3)));
        assert_eq!(effective_timeout(Some(1.0), Some(s(3))), Some(s(1)));
        assert_eq!(effective_timeout(Some(1e300), None), Some(s(1_000_000_000)));
        assert_eq!(effective_timeout(None, Some(s(u64::MAX))), Some(s(1_000_000_000)));
    }
}
