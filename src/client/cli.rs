//! What the `ferry` subcommands do, returning the process exit status:
//! the remote command's status (128 + signal when signalled), 127 when the
//! remote program could not be started, 255 for any ferry error. The file
//! subcommands (`get`, `put`, `ls`, `stat`) are in `transfer`.

use super::encoding::Output;
use super::exit::{self, fail};
use super::{command_of, transfer, tty, Error, Options, Session, Target, Writer};
use crate::{keys, outln};
use crate::proto::auth::Key;
use crate::proto::msg::{Command, Exec, Pty, SignalName};
use crate::proto::ErrorCode;
use encoding_rs::Encoding;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};


/// The key to use: `-k FILE` (else the default search) and `-i ID` (else the first).
pub fn load_key(file: Option<&Path>, id: Option<&str>) -> Result<Key, String> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => keys::client_path().ok_or("no keys file: give -k FILE or set FERRY_KEYS")?,
    };
    let keys = keys::load(&path).map_err(|e| {
        if path.exists() {
            e
        } else {
            format!("{e}: give -k FILE, set FERRY_KEYS, or make one with `ferry keygen {}`", path.display())
        }
    })?;
    match id {
        Some(id) => keys.get(id).cloned().ok_or_else(|| format!("keys file {} has no key \"{id}\"", path.display())),
        None => Ok(keys.first().cloned().expect("a parsed keys file has a key")),
    }
}

/// Exit status for an error that ended a command.
fn exit_for(e: &Error) -> i32 {
    match e {
        Error::Local(io) => exit::stdout_failed(io),
        Error::Remote(p) if p.code == ErrorCode::SpawnFailed => {
            exit::say(&p.message);
            exit::SPAWN_FAILED
        }
        e => fail(e),
    }
}

/// Forwards INT and TERM to the remote command while `running`; otherwise
/// they end ferry as they would any program.
fn forward_signals(writer: Writer, running: Arc<AtomicBool>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else { return };
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let name = if sig == SIGINT { SignalName::INT } else { SignalName::TERM };
            if !running.load(Ordering::SeqCst) || writer.signal(name).is_err() {
                std::process::exit(128 + sig);
            }
        }
    });
}

/// Copies our stdin to the remote command's, then sends EOF.
fn forward_stdin(writer: Writer) {
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if writer.stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // (`< /tmp`): said, as `cat` would; the command gets EOF.
                Err(e) => {
                    exit::say(format_args!("reading stdin: {}; the command's stdin ends there", super::io_text(&e)));
                    break;
                }
            }
        }
        let _ = writer.stdin(&[]);
    });
}

/// Whether our stdin is /dev/null (character device 1:3 on Linux), as under
/// cron, systemd and `< /dev/null`.
fn stdin_is_null() -> bool {
    rustix::fs::fstat(io::stdin()).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
            && (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev)) == (1, 3)
    })
}

/// Ends both output streams (the decoders' last characters) after a command.
fn finish_outputs(out: &mut Output<impl Write>, err: &mut Output<impl Write>) -> Result<(), Error> {
    let r = out.finish();
    err.finish().and(r).map_err(Error::Local)
}

/// `ferry run`: one command; exits with its status. With `encoding`, its
/// stdout and stderr are decoded from it and written as UTF-8. No words:
/// the login shell on pipes (`ferry shell` with stdin not a terminal, as
/// `echo ls | ssh HOST` runs it), reading its commands from our stdin.
pub fn run(
    target: &Target,
    key: &Key,
    opts: &Options,
    command: Vec<String>,
    argv: bool,
    with_stdin: bool,
    encoding: Option<&'static Encoding>,
) -> i32 {
    let command = if command.is_empty() { Command::Login } else { command_of(&command, argv) };
    let shell = matches!(command, Command::Shell(_));
    let login = command == Command::Login;
    // Our stdin on /dev/null is `-n`: the command gets its own /dev/null, and
    // no thread, frame or pipe carries an empty stream.
    let with_stdin = with_stdin && !stdin_is_null();
    let req = Exec { command, env: Default::default(), cwd: None, stdin: with_stdin, timeout: None, pty: None };
    // Over TLS the exec goes with `auth`, and the signal thread starts
    // while the server answers (see `Session::connect_then`).
    let exec = crate::proto::msg::request::exec(&req);
    let mut session = match Session::connect_then(target, key, opts, exec, |w| forward_signals(w.clone(), Arc::new(AtomicBool::new(true)))) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Our stdin is read only once the server has proven the key.
    if with_stdin {
        forward_stdin(session.writer());
    }
    let (mut out, mut err) = (Output::new(encoding, crate::term::stdout()), Output::new(encoding, io::stderr()));
    let result = session.read_exec(&mut out, &mut err);
    let finished = finish_outputs(&mut out, &mut err);
    let result = result.and_then(|status| finished.map(|()| status));
    // A server older than exec's `login` field reads it as a request with no command.
    if let Err(Error::Remote(p)) = &result {
        if login && p.code == ErrorCode::BadRequest && p.message.starts_with("exec: give exactly one of cmd and argv") {
            return fail(format_args!(
                "{}'s ferryd is too old to run the login shell without a terminal: give a command, or -tt for a terminal",
                session.peer
            ));
        }
    }
    ended(&session, result, shell)
}

/// `ferry run -t` and `ferry shell`: `command` (None: the login shell) on a
/// terminal the server opens, of our window's size and `TERM`. Our terminal
/// is raw until the end (see `tty`); bytes go both ways as they come.
/// `words` as for `run` (none: the login shell).
pub fn run_tty(target: &Target, key: &Key, opts: &Options, words: &[String], argv: bool, encoding: Option<&'static Encoding>, quiet: bool) -> i32 {
    let command = if words.is_empty() { Command::Login } else { command_of(words, argv) };
    let shell = matches!(command, Command::Shell(_));
    let term_env = std::env::var_os("TERM");
    let term = tty::term_name(term_env.as_deref()).unwrap_or_else(|dumb| {
        if !quiet {
            super::exit::say(tty::term_warning(term_env.as_deref().unwrap_or_default()));
        }
        dumb
    });
    let size = tty::size();
    let pty = Pty { term, size };
    let req = Exec { command, env: Default::default(), cwd: None, stdin: true, timeout: None, pty: Some(pty) };
    // Over TLS the exec goes with `auth` (see `Session::connect_then`).
    let mut session = match Session::connect_then(target, key, opts, crate::proto::msg::request::exec(&req), |_| {}) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Someone typing: -w bounds the start, not their pauses (a script's -tt keeps it).
    if io::stdin().is_terminal() {
        session.timed_until_start();
    }
    let result = {
        let raw = match tty::Raw::enter() {
            Ok(r) => r,
            Err(e) => return fail(format_args!("cannot put the terminal in raw mode: {}", super::io_text(&e))),
        };
        tty::watch_signals(session.writer(), size);
        tty::forward_stdin(session.writer());
        let (mut out, mut err) = (Output::new(encoding, tty::Screen::new(crate::term::stdout())), Output::new(encoding, io::stderr()));
        let result = session.read_exec(&mut out, &mut err);
        let finished = finish_outputs(&mut out, &mut err);
        drop(raw);
        result.and_then(|status| finished.map(|()| status))
    };
    // The server's word is about terminals; what to do about it is ours to say.
    if let Err(Error::Remote(p)) = &result {
        if p.code == ErrorCode::NotAllowed && p.message.contains("allow_pty") {
            return fail(format_args!("{}: {p}; run without -t", session.peer));
        }
    }
    ended(&session, result, shell)
}

/// `run`'s status once the command's replies are read: its own, or why not.
fn ended(session: &Session, result: Result<super::ExitStatus, Error>, shell: bool) -> i32 {
    match result {
        Ok(status) => status.shell_code(),
        // The allow-list refused the shell (it says "send argv"), not the terminal.
        Err(Error::Remote(p)) if p.code == ErrorCode::NotAllowed && shell && p.message.ends_with("(send argv)") => {
            fail(super::argv_refusal(&p.message))
        }
        // A command line over the server's header limit: say how to send it.
        Err(Error::Remote(p)) if p.code == ErrorCode::FrameTooLarge => fail(format_args!(
            "{} closed the connection: {} ({}): send a long script on stdin (`ferry run HOST -- sh -s < script`)",
            session.peer,
            p.message,
            p.code.as_str()
        )),
        Err(Error::Remote(p)) if p.code.is_fatal() => {
            fail(format_args!("{} closed the connection: {}", session.peer, p.message))
        }
        // (Over TLS a write of our stdin into the closed socket is what
        // the reader sees first: BrokenPipe. Local output errors are `Local`.)
        Err(Error::Io(e))
            if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
        {
            fail(format_args!("{} closed the connection before the command's exit status came", session.peer))
        }
        Err(e) => exit_for(&e),
    }
}

/// What the line session is doing, for its signal thread.
const IDLE: u8 = 0;
const EXEC: u8 = 1;
const FILE: u8 = 2;
/// A file line that INT cancelled: its socket is (being) shut down.
const CANCELLED: u8 = 3;

/// The line session's signals. INT: during a command, sent to it; during
/// a file line, cancels that line (the socket is shut down, which ends the
/// blocked read; the session reconnects); at an interactive prompt, wakes
/// the input loop to clear the line. TERM during a command is sent to it.
/// Anything else ends ferry as it would any program.
struct Signals {
    state: Arc<AtomicU8>,
    cancelled: Arc<AtomicBool>,
    writer: Arc<Mutex<Writer>>,
    socket: Arc<Mutex<Option<TcpStream>>>,
    /// Readable when INT came at the prompt.
    wake: UnixStream,
}

impl Signals {
    fn start(session: &Session, interactive: bool) -> Option<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).ok()?;
        let (wake, mut wake_tx) = UnixStream::pair().ok()?;
        let me = Signals {
            state: Arc::new(AtomicU8::new(IDLE)),
            cancelled: Arc::new(AtomicBool::new(false)),
            writer: Arc::new(Mutex::new(session.writer())),
            socket: Arc::new(Mutex::new(session.socket_handle().ok())),
            wake,
        };
        let (state, cancelled, writer, socket) = (me.state.clone(), me.cancelled.clone(), me.writer.clone(), me.socket.clone());
        std::thread::spawn(move || {
            for sig in signals.forever() {
                match (sig, state.load(Ordering::SeqCst)) {
                    (SIGINT | SIGTERM, EXEC) => {
                        let name = if sig == SIGINT { SignalName::INT } else { SignalName::TERM };
                        let w = writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        if w.signal(name).is_err() {
                            std::process::exit(128 + sig);
                        }
                    }
                    (SIGINT, FILE) if interactive => {
                        // Under the socket's lock, so that a line ending at
                        // this moment sees CANCELLED and reconnects only
                        // after the old socket is shut down.
                        let held = socket.lock().unwrap_or_else(|p| p.into_inner());
                        if state.compare_exchange(FILE, CANCELLED, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                            cancelled.store(true, Ordering::SeqCst);
                            if let Some(s) = held.as_ref() {
                                let _ = s.shutdown(std::net::Shutdown::Both);
                            }
                        } else if state.load(Ordering::SeqCst) == IDLE {
                            let _ = wake_tx.write_all(&[1]);
                        }
                    }
                    // Again while the cancelled line winds up: once is enough.
                    (SIGINT, CANCELLED) if interactive => {}
                    (SIGINT, IDLE) if interactive => {
                        let _ = wake_tx.write_all(&[1]);
                    }
                    _ => std::process::exit(128 + sig),
                }
            }
        });
        Some(me)
    }

    /// What the signal thread holds of the session (the writer for a
    /// command's signals, the socket a cancelled line shuts down), moved to
    /// each new connection as `Session::reconnect` makes it, also in the
    /// middle of a line (a tree going on after a refused file).
    fn follow(&self, session: &mut Session) {
        let (state, writer, socket) = (self.state.clone(), self.writer.clone(), self.socket.clone());
        session.on_renew(move |s: &Session| {
            *writer.lock().unwrap_or_else(|p| p.into_inner()) = s.writer();
            let mut held = socket.lock().unwrap_or_else(|p| p.into_inner());
            *held = s.socket_handle().ok();
            // INT cancelled the line while its old socket was being
            // replaced (the thread sets CANCELLED under this lock): the new
            // socket is shut down too, so the line ends as interrupted.
            if state.load(Ordering::SeqCst) == CANCELLED {
                if let Some(sock) = held.as_ref() {
                    let _ = sock.shutdown(std::net::Shutdown::Both);
                }
            }
        });
    }
}

/// What the session's input gave.
enum Next {
    Line(String),
    Eof,
    /// INT at the prompt: the line being typed is dropped.
    Interrupt,
    /// The server sent an error frame or closed the connection while we waited.
    Gone(Error),
    /// Reading stdin failed.
    Failed(io::Error),
}

/// Stdin read in lines with poll(2), watching the socket (and the INT
/// wake-up) while no request is in flight. It reads the descriptor itself,
/// with no `BufReader`, so that poll never misses bytes already buffered.
struct Input {
    buf: Vec<u8>,
    eof: bool,
}

impl Input {
    fn next(&mut self, session: &mut Session, wake: Option<&UnixStream>) -> Next {
        use std::os::fd::AsRawFd;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Next::Line(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Next::Eof;
                }
                let rest = std::mem::take(&mut self.buf);
                return Next::Line(String::from_utf8_lossy(&rest).into_owned());
            }
            if session.buffered() {
                return Next::Gone(session.unasked());
            }
            let mut fds = [
                libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: session.fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: wake.map_or(-1, |w| w.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: three valid pollfd structs; a negative fd is ignored.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Next::Failed(e);
            }
            let ready = |f: &libc::pollfd| f.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if ready(&fds[2]) {
                if let Some(mut w) = wake {
                    let _ = w.read(&mut [0u8; 64]);
                }
                self.buf.clear();
                return Next::Interrupt;
            }
            if ready(&fds[1]) {
                return Next::Gone(session.unasked());
            }
            if ready(&fds[0]) || fds[0].revents & libc::POLLNVAL != 0 {
                let mut chunk = [0u8; 64 * 1024];
                // SAFETY: reading into a buffer of the length given.
                let n = unsafe { libc::read(0, chunk.as_mut_ptr().cast(), chunk.len()) };
                match n {
                    0 => self.eof = true,
                    n if n > 0 => self.buf.extend_from_slice(&chunk[..n as usize]),
                    _ => {
                        let e = io::Error::last_os_error();
                        if e.kind() != io::ErrorKind::Interrupted {
                            return Next::Failed(e);
                        }
                    }
                }
            }
        }
    }
}

/// Why the server ended a session that was waiting for input, in one line.
fn gone_text(peer: &SocketAddr, e: &Error, idle: Duration) -> String {
    match e {
        Error::Remote(p) if p.code == ErrorCode::ShuttingDown => {
            format!("{peer} closed the connection: the server is shutting down")
        }
        Error::Remote(p) if p.code == ErrorCode::IdleTimeout => format!(
            "{peer} closed the connection: {} without a request (the server's idle timeout, ferryd --idle-timeout)",
            p.message
        ),
        Error::Remote(p) => format!("{peer} closed the connection: {} ({})", p.message, p.code.as_str()),
        Error::Io(io) if matches!(io.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => format!(
            "{peer} closed the connection after {:.0}s idle (likely the server's idle timeout, ferryd --idle-timeout)",
            idle.as_secs_f64()
        ),
        e => format!("{peer}: {e}"),
    }
}


/// The command of a session line: `!PROG ARGS` is argv (words split with
/// shell quoting), anything else a shell command line.
fn line_command(line: &str) -> Result<Command, String> {
    let Some(rest) = line.strip_prefix('!') else { return Ok(Command::Shell(line.to_string())) };
    match shlex::split(rest) {
        Some(words) if !words.is_empty() => Ok(Command::Argv(words)),
        Some(_) => Err("usage: !PROG [ARGS...] runs PROG with ARGS, no shell".into()),
        None => Err(format!("{line}: unbalanced quotes (usage: !PROG [ARGS...])")),
    }
}

/// `ferry HOST [PORT]`: each line of stdin is a shell command, run in turn,
/// except the file commands `transfer::session_line` takes and `!PROG ARGS`
/// argv lines. While it waits for a line it watches the socket: a server
/// that closes or sends an error frame ends the session at once (255).
/// With `encoding`, each command's output is decoded as `run` does (the
/// file commands' output is not).
pub fn session(target: &Target, key: &Key, opts: &Options, quiet: bool, encoding: Option<&'static Encoding>) -> i32 {
    let mut session = match Session::connect(target, key, opts) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let interactive = io::stdin().is_terminal();
    if interactive && !quiet {
        exit::say(format_args!("connected to {} ({}); type commands, `quit` or Ctrl-D to end", session.peer, session.server));
    }
    let signals = Signals::start(&session, interactive);
    if let Some(sig) = &signals {
        sig.follow(&mut session);
    }
    // The state before: a file line's end may find it CANCELLED.
    let set_state = |s: u8| signals.as_ref().map_or(IDLE, |sig| sig.state.swap(s, Ordering::SeqCst));
    let ui = transfer::Ui::new(quiet);
    let mut last = 0;
    let mut input = Input { buf: Vec::new(), eof: false };
    let mut idle_since = Instant::now();
    loop {
        if interactive {
            crate::term::err(b"ferry> ");
        }
        let line = match input.next(&mut session, signals.as_ref().map(|s| &s.wake)) {
            Next::Line(l) => l,
            Next::Eof => {
                if interactive {
                    crate::term::err(b"\n");
                }
                break;
            }
            Next::Interrupt => {
                crate::term::err(b"\n");
                continue;
            }
            Next::Gone(e) => {
                if interactive {
                    crate::term::err(b"\n");
                }
                return fail(gone_text(&session.peer, &e, idle_since.elapsed()));
            }
            Next::Failed(e) => return fail(format_args!("reading stdin: {}", super::io_text(&e))),
        };
        let cmd = line.trim_end_matches('\r');
        if cmd.trim().is_empty() {
            continue;
        }
        if cmd.trim() == "quit" {
            break;
        }
        let cancelled = signals.as_ref().map(|s| s.cancelled.clone()).unwrap_or_default();
        cancelled.store(false, Ordering::SeqCst);
        let _ = set_state(FILE);
        let mut r = transfer::session_line(&mut session, &ui, cmd, &cancelled);
        if set_state(IDLE) == CANCELLED && r != transfer::Line::Interrupted {
            // INT came as the line ended: it is done, but its socket is shut.
            exit::say("interrupted");
            r = transfer::Line::Interrupted;
        }
        idle_since = Instant::now();
        match r {
            transfer::Line::NotMine => {}
            // A refused put cut the connection short (its error is said): a new one.
            transfer::Line::Status(status) if session.cut() => {
                if let Err(e) = session.reconnect() {
                    return fail(format_args!("connecting again after the refused put: {e}"));
                }
                last = status;
                continue;
            }
            transfer::Line::Status(status) => {
                last = status;
                continue;
            }
            transfer::Line::Interrupted => {
                // The connection was shut down to stop the request: a new one.
                if let Err(e) = session.reconnect() {
                    return fail(format_args!("reconnecting after the interrupt: {e}"));
                }
                last = exit::INTERRUPTED;
                continue;
            }
            transfer::Line::End(status) => return status,
        }
        let command = match line_command(cmd) {
            Ok(c) => c,
            Err(m) => {
                exit::say(&m);
                last = exit::USAGE;
                continue;
            }
        };
        let shell = matches!(command, Command::Shell(_));
        let req = Exec { command, env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None };
        let _ = set_state(EXEC);
        let (mut out, mut err) = (Output::new(encoding, crate::term::stdout()), Output::new(encoding, io::stderr()));
        let result = session.exec(&req, &mut out, &mut err);
        let _ = set_state(IDLE);
        idle_since = Instant::now();
        // Each command's output ends with it: a character it left cut is U+FFFD.
        let finished = finish_outputs(&mut out, &mut err);
        drop((out, err));
        let result = result.and_then(|status| finished.map(|()| status));
        last = match result {
            Ok(status) => status.shell_code(),
            Err(Error::Remote(e)) if !e.code.is_fatal() => {
                if e.code == ErrorCode::NotAllowed && shell {
                    exit::say(super::argv_refusal(&e.message));
                } else {
                    exit::say(&e.message);
                }
                if e.code == ErrorCode::SpawnFailed { exit::SPAWN_FAILED } else { exit::FERRY_ERROR }
            }
            // Drained or timed out between lines: as when waiting for one.
            Err(e @ Error::Remote(_)) => return fail(gone_text(&session.peer, &e, Duration::ZERO)),
            Err(e) => return exit_for(&e),
        };
        if interactive && !quiet && last != 0 {
            exit::say(format_args!("exit {last}"));
        }
    }
    let _ = session.bye();
    last
}

/// `ferry ping`: round trips on one authenticated connection.
pub fn ping(target: &Target, key: &Key, opts: &Options, count: u32, interval: Duration, quiet: bool) -> i32 {
    let t = std::time::Instant::now();
    let mut session = match Session::connect(target, key, opts) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let setup = t.elapsed();
    let server = crate::term::escape(&session.server).into_owned();
    if !quiet {
        if let Err(e) = outln!("connected to {} ({server}) in {:.3} ms", session.peer, ms(setup)) {
            return exit::stdout_failed(&e);
        }
    }
    let mut times = Vec::new();
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(interval);
        }
        match session.ping() {
            Ok(rtt) => {
                if !quiet {
                    if let Err(e) = outln!("pong from {}: seq={} time={:.3} ms", session.peer, i + 1, ms(rtt)) {
                        return exit::stdout_failed(&e);
                    }
                }
                times.push(ms(rtt));
            }
            Err(e) => return fail(e),
        }
    }
    if !quiet && count > 1 {
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(0.0, f64::max);
        let avg = times.iter().sum::<f64>() / times.len() as f64;
        if let Err(e) = outln!("{count} pings: min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms") {
            return exit::stdout_failed(&e);
        }
    }
    let _ = session.bye();
    0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `ferry keygen`: appends a new key to FILE (created 0600).
/// An id that is not one word is a usage error (2); an id the file already
/// has is a file error (1): the file stays as it was.
pub fn keygen(file: &Path, id: &str, quiet: bool) -> i32 {
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        exit::say(format_args!("--id \"{id}\": a key id is one word, without spaces (see `ferry keygen --help`)"));
        return exit::USAGE;
    }
    if let Ok(existing) = keys::load(file) {
        if existing.get(id).is_some() {
            exit::say(format_args!("keys file {} already has a key \"{id}\": choose another --id", file.display()));
            return exit::FAILED;
        }
    }
    match keys::generate(file, id) {
        Ok(()) => {
            if !quiet {
                exit::say(format_args!("wrote key \"{id}\" to {}", file.display()));
            }
            0
        }
        Err(e) => fail(e),
    }
}

/// `ferry export-tls DIR`: the key's TLS client certificate and private
/// key (`DIR/ID.crt`, `DIR/ID.key`, 0600) and its server certificate
/// (`DIR/ID-server.crt`), as PEM, for `openssl s_client` and other clients.
/// A key id that is no plain file name is written under its SNI label.
pub fn export_tls(key: &Key, dir: &Path, quiet: bool) -> i32 {
    use crate::tls::export::{client_cert_pem, client_key_pem, server_cert_pem};
    use std::os::unix::fs::OpenOptionsExt;
    let plain = !key.id.is_empty() && key.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    let stem = if plain && !key.id.starts_with('.') { key.id.clone() } else { crate::tls::sni_name(&key.id) };
    let write = |name: String, text: String, mode: u32| -> io::Result<std::path::PathBuf> {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("export")));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    };
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| write(format!("{stem}.key"), client_key_pem(key), 0o600))
        .and_then(|k| Ok((write(format!("{stem}.crt"), client_cert_pem(key), 0o600)?, k)))
        .and_then(|(c, k)| Ok((c, k, write(format!("{stem}-server.crt"), server_cert_pem(key), 0o644)?)));
    match result {
        Ok((c, k, s)) => {
            if !quiet {
                exit::say(format_args!(
                    "wrote {}, {} and {} (key {:?}, TLS name {})",
                    c.display(),
                    k.display(),
                    s.display(),
                    key.id,
                    crate::tls::sni_name(&key.id)
                ));
            }
            0
        }
        Err(e) => fail(format_args!("export-tls {}: {e}", dir.display())),
    }
}
