//! The `exec` operation: one child process, its three pipes, and the rules for
//! when the final `exit` frame may go out.
//!
//! The child runs in a process group of its own, so `signal` requests, the
//! timeout and a dropped connection reach everything it started. Its pipes are
//! non-blocking and registered in the server's `Poll` under the connection's
//! tokens; readiness is stored here and cleared on `WouldBlock`.
//!
//! An exec is finished on a conjunction: stdout at EOF, stderr at EOF, and the
//! child reaped. Only then is `exit` sent, so no output can follow it.

use super::super::buf::Buf;
use super::super::token::{self, Role};
use super::Ctx;
use crate::proto::msg::{self, Command, SignalName, Stream};
use crate::proto::{encode_frame, ErrorCode, ProtoError};
use mio::unix::pipe::{Receiver, Sender};
use mio::{Interest, Registry};
use serde_json::Value;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// After a TERM for a timeout, how long until KILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
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
    fn new(pipe: Option<Receiver>, stream: Stream) -> Output {
        Output { pipe, ready: true, stream }
    }

    fn at_eof(&self) -> bool {
        self.pipe.is_none()
    }

    /// Moves what the pipe has into `out` as frames, up to `room` bytes.
    fn pump(&mut self, out: &mut Buf, id: Option<&Value>, room: usize, scratch: &mut [u8]) -> usize {
        let Some(pipe) = self.pipe.as_mut() else { return 0 };
        if !self.ready || room == 0 {
            return 0;
        }
        let want = room.min(scratch.len()).min(CHUNK);
        loop {
            match pipe.read(&mut scratch[..want]) {
                Ok(0) => {
                    self.pipe = None;
                    return 0;
                }
                Ok(n) => {
                    encode_frame(out.tail(), msg::output(self.stream, id), &scratch[..n]);
                    return n;
                }
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
    stdin_ready: bool,
    /// Bytes from `stdin` frames not yet taken by the child.
    stdin_buf: Vec<u8>,
    /// An EOF (`stdin` of size 0) arrived: close the pipe once `stdin_buf` is written.
    stdin_eof: bool,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    /// When the request's timeout sends TERM.
    term_at: Option<Instant>,
    /// When a TERM already sent is followed by KILL.
    kill_at: Option<Instant>,
    timed_out: bool,
}

impl Exec {
    /// Spawns the child for `req` and registers its pipes under `key`'s tokens.
    pub fn start(req: &msg::Exec, id: Option<Value>, key: usize, ctx: &mut Ctx) -> Result<Exec, ProtoError> {
        let cwd = match &req.cwd {
            Some(rel) => crate::paths::resolve_existing(&ctx.cfg.root, rel)?,
            None => ctx.cfg.root.clone(),
        };
        if !cwd.is_dir() {
            return Err(ProtoError::new(ErrorCode::BadPath, format!("cwd {:?} is not a directory", req.cwd)));
        }
        let mut cmd = match &req.command {
            Command::Shell(s) => {
                let mut c = std::process::Command::new(&ctx.cfg.shell);
                c.arg("-c").arg(s);
                c
            }
            Command::Argv(argv) => {
                let mut c = std::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        cmd.current_dir(&cwd)
            .envs(&req.env)
            .stdin(if req.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            let what = match &req.command {
                Command::Shell(_) => ctx.cfg.shell.display().to_string(),
                Command::Argv(argv) => argv[0].clone(),
            };
            ProtoError::new(ErrorCode::SpawnFailed, format!("cannot run {what:?}: {e}"))
        })?;
        let pgid = child.id() as i32;
        let pipes = register_pipes(&mut child, key, ctx.registry);
        let (out, err, stdin) = match pipes {
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
            id,
            stdout: Output::new(Some(out), Stream::Stdout),
            stderr: Output::new(Some(err), Stream::Stderr),
            stdin,
            stdin_ready: true,
            stdin_buf: Vec::new(),
            stdin_eof: false,
            status: None,
            term_at: req.timeout.map(|t| ctx.now + Duration::from_secs_f64(t.min(1e9))),
            kill_at: None,
            timed_out: false,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Records readiness for one of the child's pipes.
    pub fn on_event(&mut self, role: Role) {
        match role {
            Role::Stdout => self.stdout.ready = true,
            Role::Stderr => self.stderr.ready = true,
            Role::Stdin => self.stdin_ready = true,
            Role::Socket => {}
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

    /// EOF from the client: close the child's stdin once the backlog is written.
    pub fn close_stdin(&mut self) {
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
        if self.stdin_eof && self.stdin_buf.is_empty() {
            self.stdin = None;
        }
        total
    }

    /// Moves child output into `out` while it stays below `high_water`.
    /// Returns bytes moved.
    pub fn pump_output(&mut self, out: &mut Buf, high_water: usize, budget: usize, scratch: &mut [u8]) -> usize {
        let mut moved = 0;
        loop {
            let room = high_water.saturating_sub(out.len()).min(budget.saturating_sub(moved));
            let n = self.stdout.pump(out, self.id.as_ref(), room, scratch);
            let room = high_water.saturating_sub(out.len()).min(budget.saturating_sub(moved + n));
            let m = self.stderr.pump(out, self.id.as_ref(), room, scratch);
            moved += n + m;
            if n + m == 0 {
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
                self.status = Some(status);
                // Nothing more will read it: close stdin so no write can block.
                self.stdin = None;
                self.stdin_buf.clear();
                true
            }
            _ => false,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_some() && self.stdout.at_eof() && self.stderr.at_eof()
    }

    /// The final frame, once `is_finished`.
    pub fn exit_frame(&self) -> serde_json::Map<String, Value> {
        let status = self.status.expect("exit_frame after the child was reaped");
        let mut m = msg::exit(status.code(), status.signal(), self.id.as_ref());
        if self.timed_out {
            m.insert("timed_out".into(), Value::Bool(true));
        }
        m
    }

    pub fn signal(&self, sig: SignalName) {
        if self.status.is_none() {
            kill_group(self.pgid, sig.number());
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        if self.status.is_some() {
            return None;
        }
        self.kill_at.or(self.term_at)
    }

    /// The timeout: TERM first, KILL `KILL_GRACE` later.
    pub fn on_deadline(&mut self, now: Instant) {
        if self.status.is_some() {
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
            self.status = self.child.wait().ok();
        }
    }

    /// KILL now (drain timeout passed).
    pub fn kill(&self) {
        if self.status.is_none() {
            kill_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Takes the child's pipes, makes them non-blocking (mio's `From` conversions
/// do not) and registers them under `key`'s tokens.
fn register_pipes(child: &mut Child, key: usize, registry: &Registry) -> io::Result<(Receiver, Receiver, Option<Sender>)> {
    let mut out = Receiver::from(child.stdout.take().expect("stdout is piped"));
    let mut err = Receiver::from(child.stderr.take().expect("stderr is piped"));
    out.set_nonblocking(true)?;
    err.set_nonblocking(true)?;
    registry.register(&mut out, token::conn(key, Role::Stdout), Interest::READABLE)?;
    registry.register(&mut err, token::conn(key, Role::Stderr), Interest::READABLE)?;
    let stdin = match child.stdin.take() {
        Some(s) => {
            let mut s = Sender::from(s);
            s.set_nonblocking(true)?;
            registry.register(&mut s, token::conn(key, Role::Stdin), Interest::WRITABLE)?;
            Some(s)
        }
        None => None,
    };
    Ok((out, err, stdin))
}
