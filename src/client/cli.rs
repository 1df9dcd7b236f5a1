//! What the `ferry` subcommands do, returning the process exit status:
//! the remote command's status (128 + signal when signalled), 127 when the
//! remote program could not be started, 255 for any ferry error. The file
//! subcommands (`get`, `put`, `ls`, `stat`) are in `transfer`.

use super::encoding::Output;
use super::exit::{self, fail};
use super::{command_of, transfer, Error, Options, Session, Target, Writer};
use crate::{keys, outln};
use crate::proto::auth::Key;
use crate::proto::msg::{Command, Exec, SignalName};
use crate::proto::ErrorCode;
use encoding_rs::Encoding;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;


/// The key to use: `-k FILE` (else the default search) and `-i ID` (else the first).
pub fn load_key(file: Option<&Path>, id: Option<&str>) -> Result<Key, String> {
    let path = match file {
        Some(p) => p.to_path_buf(),
        None => keys::client_path().ok_or("no keys file: give -k FILE or set FERRY_KEYS")?,
    };
    let keys = keys::load(&path)?;
    match id {
        Some(id) => keys.get(id).cloned().ok_or_else(|| format!("keys file {} has no key {id:?}", path.display())),
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
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.stdin(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = writer.stdin(&[]);
    });
}

/// Ends both output streams (the decoders' last characters) after a command.
fn finish_outputs(out: &mut Output<impl Write>, err: &mut Output<impl Write>) -> Result<(), Error> {
    let r = out.finish();
    err.finish().and(r).map_err(Error::Local)
}

/// `ferry run`: one command; exits with its status. With `encoding`, its
/// stdout and stderr are decoded from it and written as UTF-8.
pub fn run(
    target: &Target,
    key: &Key,
    opts: &Options,
    command: Vec<String>,
    with_stdin: bool,
    encoding: Option<&'static Encoding>,
) -> i32 {
    let mut session = match Session::connect(target, key, opts) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let req = Exec { command: command_of(&command), env: Default::default(), cwd: None, stdin: with_stdin, timeout: None };
    forward_signals(session.writer(), Arc::new(AtomicBool::new(true)));
    if let Err(e) = session.send(crate::proto::msg::request::exec(&req), &[]) {
        return fail(e);
    }
    if with_stdin {
        forward_stdin(session.writer());
    }
    let (mut out, mut err) = (Output::new(encoding, io::stdout().lock()), Output::new(encoding, io::stderr()));
    let result = session.read_exec(&mut out, &mut err);
    let finished = finish_outputs(&mut out, &mut err);
    match result.and_then(|status| finished.map(|()| status)) {
        Ok(status) => status.shell_code(),
        Err(e) => exit_for(&e),
    }
}

/// `ferry HOST [PORT]`: each line of stdin is a shell command, run in turn,
/// except the file commands `transfer::session_line` takes. With
/// `encoding`, each command's output is decoded as `run` does (the file
/// commands' output is not).
pub fn session(target: &Target, key: &Key, opts: &Options, quiet: bool, encoding: Option<&'static Encoding>) -> i32 {
    let mut session = match Session::connect(target, key, opts) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let interactive = io::stdin().is_terminal();
    if interactive && !quiet {
        exit::say(format_args!("connected to {} ({}); type commands, `quit` or Ctrl-D to end", session.peer, session.server));
    }
    let running = Arc::new(AtomicBool::new(false));
    forward_signals(session.writer(), running.clone());
    let ui = transfer::Ui::new(quiet);
    let mut last = 0;
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        if interactive {
            crate::term::err(b"ferry> ");
        }
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return fail(format!("reading stdin: {e}")),
        }
        let cmd = line.trim_end_matches(['\n', '\r']);
        if cmd.trim().is_empty() {
            continue;
        }
        if cmd.trim() == "quit" {
            break;
        }
        match transfer::session_line(&mut session, &ui, cmd) {
            transfer::Line::NotMine => {}
            transfer::Line::Status(status) => {
                last = status;
                continue;
            }
            transfer::Line::End(status) => return status,
        }
        let req = Exec { command: Command::Shell(cmd.to_string()), env: Default::default(), cwd: None, stdin: false, timeout: None };
        running.store(true, Ordering::SeqCst);
        let (mut out, mut err) = (Output::new(encoding, io::stdout().lock()), Output::new(encoding, io::stderr()));
        let result = session.exec(&req, &mut out, &mut err);
        running.store(false, Ordering::SeqCst);
        // Each command's output ends with it: a character it left cut is U+FFFD.
        let finished = finish_outputs(&mut out, &mut err);
        drop((out, err));
        let result = result.and_then(|status| finished.map(|()| status));
        last = match result {
            Ok(status) => status.shell_code(),
            Err(Error::Remote(e)) if !e.code.is_fatal() => {
                exit::say(&e.message);
                if e.code == ErrorCode::SpawnFailed { exit::SPAWN_FAILED } else { exit::FERRY_ERROR }
            }
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
pub fn keygen(file: &Path, id: &str, quiet: bool) -> i32 {
    match keys::generate(file, id) {
        Ok(()) => {
            if !quiet {
                exit::say(format_args!("wrote key {id:?} to {}", file.display()));
            }
            0
        }
        Err(e) => fail(e),
    }
}
