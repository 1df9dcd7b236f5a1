//! ferryd: flags -> settings (defaults, config file, flags) -> bind ->
//! (daemonize) -> server::run. Fails loudly on stderr before detaching, with
//! sysexits codes: 64 usage, 69 unavailable, 70 internal, 78 configuration.

use clap::builder::TypedValueParser;
use clap::Parser;
use daemonize::{Daemonize, Outcome};
use ferry::config::{self, LogTarget, Overrides, Settings};
use ferry::logger;
use ferry::server::{self, Config};
use log::{error, info, LevelFilter};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_CONFIG: u8 = 78;
/// Our own output could not be written (`--check-config >/dev/full`).
const EX_IOERR: u8 = 74;

/// The usage lines, after `Usage: ` in --help and `usage: ` after a usage error.
const SYNOPSIS: &str = "ferryd [-d | -f] [-c FILE] [-k FILE] [-l ADDR:PORT]... [-r DIR] [--auth-timeout SECS]\n              [--check-config] [--drain-timeout SECS] [--idle-timeout SECS] [--log-level LEVEL]\n              [--max-children N] [--max-connections N] [--max-header BYTES] [--max-upload BYTES]\n              [--no-exec] [--pidfile FILE] [--read-only] [--udp ADDR:PORT]...";

/// The ferry daemon: runs commands and moves files for authenticated clients over a framed protocol.
#[derive(Parser, Debug)]
#[command(
    name = "ferryd",
    version,
    about,
    long_about = None,
    override_usage = SYNOPSIS
)]
struct Cli {
    /// Config file [default: /etc/ferry/ferryd.toml when it exists]; flags override it
    #[arg(short = 'c', long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Check the configuration, print it as it takes effect (no secrets) and exit: 0 valid, 78 not
    #[arg(long)]
    check_config: bool,

    /// Address to listen on, ADDR:PORT or [V6ADDR]:PORT (repeatable; port 0 picks a free port) [default: 127.0.0.1:7075]
    #[arg(short = 'l', long = "listen", value_name = "ADDR:PORT", value_parser = config::parse_listen)]
    listen: Vec<SocketAddr>,

    /// Also answer datagrams on this UDP address, ADDR:PORT (repeatable; replaces udp.listen) [default: none]
    #[arg(long = "udp", value_name = "ADDR:PORT", value_parser = config::parse_listen)]
    udp: Vec<SocketAddr>,

    /// Peers that may speak v1 in clear, ADDR/BITS or ADDR (repeatable; replaces plaintext_from; none: TLS for all) [default: 127.0.0.0/8, ::1]
    #[arg(long = "plaintext-from", value_name = "CIDR", value_parser = config::parse_plaintext_from)]
    plaintext_from: Vec<Option<config::Cidr>>,

    /// Directory served to clients; commands run there [default: the current directory]
    #[arg(short = 'r', long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Keys file [default: $FERRY_KEYS, else ~/.config/ferry/keys, created when missing]
    #[arg(short = 'k', long, value_name = "FILE")]
    keys: Option<PathBuf>,

    /// Detach: fork, new session, chdir /, umask 027, stdio to /dev/null, pidfile, log to syslog (or a file: [log] target)
    #[arg(short = 'd', long, conflicts_with = "foreground")]
    daemon: bool,

    /// Stay in the foreground, whatever the config file's daemon key says (the default; what systemd uses)
    #[arg(short = 'f', long)]
    foreground: bool,

    /// Pidfile written and locked in daemon mode, removed at exit
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,

    /// Log level: off, error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL", value_parser = log_level)]
    log_level: Option<LevelFilter>,

    /// Most connections at once; one more is refused with too-many-connections [default: 4096]
    #[arg(long, value_name = "N", value_parser = whole::<1, { u32::MAX as u64 }>.map(|n| n as usize), allow_negative_numbers = true)]
    max_connections: Option<usize>,

    /// Most commands running at once; further exec requests wait their turn [default: 64]
    #[arg(long, value_name = "N", value_parser = whole::<1, { u32::MAX as u64 }>.map(|n| n as usize), allow_negative_numbers = true)]
    max_children: Option<usize>,

    /// Seconds a client has to authenticate [default: 10]
    #[arg(long, value_name = "SECS", value_parser = whole::<1, { u64::MAX }>, allow_negative_numbers = true)]
    auth_timeout: Option<u64>,

    /// Seconds an authenticated connection may sit idle, 0 for no limit [default: 300]
    #[arg(long, value_name = "SECS", value_parser = whole::<0, { u64::MAX }>, allow_negative_numbers = true)]
    idle_timeout: Option<u64>,

    /// Seconds running requests get to finish after TERM or INT [default: 30]
    #[arg(long, value_name = "SECS", value_parser = whole::<0, { u64::MAX }>, allow_negative_numbers = true)]
    drain_timeout: Option<u64>,

    /// Largest frame header accepted, in bytes (64 to 65536) [default: 65536]
    #[arg(long, value_name = "BYTES", value_parser = whole::<64, 65536>.map(|n| n as usize), allow_negative_numbers = true)]
    max_header: Option<usize>,

    /// Refuse exec requests (code exec-disabled)
    #[arg(long)]
    no_exec: bool,

    /// Refuse put requests (code read-only); get, list and stat still work
    #[arg(long)]
    read_only: bool,

    /// Largest file a put may upload, in bytes; larger ones get too-large [default: no limit]
    #[arg(long, value_name = "BYTES", value_parser = whole::<0, { u64::MAX }>, allow_negative_numbers = true)]
    max_upload: Option<u64>,
}

impl Cli {
    /// The command line's say, with paths made absolute (a daemon changes
    /// to `/`, and a reload reads them again).
    fn overrides(&self) -> Overrides {
        let abs = |p: &Option<PathBuf>| p.as_ref().map(|p| absolute(p));
        Overrides {
            config: abs(&self.config),
            listen: self.listen.clone(),
            udp: self.udp.clone(),
            root: abs(&self.root),
            keys: abs(&self.keys),
            log_level: self.log_level,
            max_connections: self.max_connections,
            max_children: self.max_children,
            auth_timeout: self.auth_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
            max_header: self.max_header,
            max_upload: self.max_upload,
            no_exec: self.no_exec,
            read_only: self.read_only,
            daemon: self.daemon,
            foreground: self.foreground,
            pidfile: abs(&self.pidfile),
            plaintext_from: (!self.plaintext_from.is_empty())
                .then(|| self.plaintext_from.iter().flatten().copied().collect()),
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    ferry::term::say("ferryd", msg);
    ExitCode::from(code)
}

/// A whole number from MIN to MAX, said in words when it is not one.
fn whole<const MIN: u64, const MAX: u64>(s: &str) -> Result<u64, String> {
    let range = if MAX == u64::MAX || MAX == u32::MAX as u64 {
        format!("{MIN} or more")
    } else {
        format!("from {MIN} to {MAX}")
    };
    match s.trim().parse::<u64>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        _ => Err(format!("give a whole number, {range}")),
    }
}

/// `--log-level`: one of the names, listed when it is not.
fn log_level(s: &str) -> Result<LevelFilter, String> {
    s.parse().map_err(|_| "give one of off, error, warn, info, debug, trace".to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version go to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            return ExitCode::from(ferry::term::clap_exit("ferryd", &e, EX_USAGE.into(), EX_IOERR.into()) as u8)
        }
        // A usage error: one line `ferryd: WHAT` naming the argument, then
        // the synopsis (as ferryd(8) EXIT STATUS says).
        Err(e) => {
            let text = e.to_string();
            let para = text.split("\n\n").next().unwrap_or("");
            let words: Vec<&str> = para.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let what = words.join(" ");
            let what = what.trim_start_matches("error: ");
            ferry::errln!("ferryd: {what}\nusage: {SYNOPSIS}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let overrides = cli.overrides();
    let settings = match config::load(&overrides) {
        Ok(s) => s,
        Err(e) => return fail(EX_CONFIG, e),
    };
    if cli.check_config {
        // What a start would fail on: the log file or the syslog socket.
        if let Err((_, e)) = log_target(&settings).and_then(|(t, code)| logger::check(&t).map_err(|e| explain_log_error(&settings, code, e))) {
            return fail(EX_CONFIG, e);
        }
        return match ferry::term::out(settings.render().as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => ExitCode::from(ferry::term::write_failed("ferryd", "stdout", &e, EX_IOERR.into()) as u8),
        };
    }
    if let Err((code, e)) = init_logging(&settings) {
        return fail(code, e);
    }
    // A daemon killed during a put (SIGKILL, a crash) left its temporary file.
    let (removed, _) = server::ops::put::remove_stale_temp_files(&settings.server.root);
    if removed > 0 {
        info!("removed {removed} temporary file(s) of puts a previous run did not finish");
    }
    raise_fd_limit(settings.server.max_connections);
    let listeners = match server::bind(&settings.server).and_then(|t| Ok((t, server::udp::bind(&settings.server)?))) {
        Ok(l) => l,
        Err(e) => return fail(EX_UNAVAILABLE, e),
    };
    if settings.daemon {
        return detach(settings, listeners, overrides);
    }
    serve(settings, listeners, overrides, None)
}

/// The log backend the settings ask for (`auto`: syslog when daemonized),
/// set up before detaching so that a failure is the operator's to read: a
/// log file that cannot be opened is a configuration error (78), a syslog
/// that does not answer is unavailable (69).
fn init_logging(s: &Settings) -> Result<(), (u8, String)> {
    let (target, code) = log_target(s)?;
    logger::init("ferryd", target, s.server.log_level).map_err(|e| explain_log_error(s, code, e))
}

/// The log backend the settings ask for, and the status a failure to open
/// it gives.
fn log_target(s: &Settings) -> Result<(logger::LogTarget, u8), (u8, String)> {
    let syslog = |s: &Settings| -> Result<logger::LogTarget, (u8, String)> {
        let facility = logger::parse_facility(&s.log_facility).map_err(|e| (EX_CONFIG, e))?;
        Ok(logger::LogTarget::Syslog { facility, socket: s.log_socket.clone() })
    };
    let (target, code) = match s.log_target {
        LogTarget::Syslog => (syslog(s)?, EX_UNAVAILABLE),
        LogTarget::Auto if s.daemon => (syslog(s)?, EX_UNAVAILABLE),
        LogTarget::Stderr | LogTarget::Auto => (logger::LogTarget::Stderr, EX_SOFTWARE),
        LogTarget::File => (logger::LogTarget::File(s.log_path.clone()), EX_CONFIG),
    };
    Ok((target, code))
}

fn explain_log_error(s: &Settings, code: u8, e: String) -> (u8, String) {
    match s.log_target {
        // A detached daemon has no stderr: without syslog, it needs a file.
        LogTarget::Auto => {
            (code, format!("{e}; without syslog, a daemon logs to a file: set [log] target = \"file\" (and path)"))
        }
        _ => (code, e),
    }
}

/// Daemon mode: the process the operator started waits for the detached
/// daemon's verdict ("ready", or why not) and exits with it, so a second
/// instance, a bad user or a lock held elsewhere is one line on the
/// operator's terminal and a non-zero status.
fn detach(settings: Settings, listeners: Listeners, overrides: Overrides) -> ExitCode {
    if let Some(p) = &settings.pidfile {
        if let Some(holder) = pidfile_holder(p) {
            return fail(EX_UNAVAILABLE, format!("another ferryd (pid {holder}) holds the pidfile {}", p.display()));
        }
    }
    let (mut verdict, child_end) = match UnixStream::pair() {
        Ok(p) => p,
        Err(e) => return fail(EX_SOFTWARE, format!("cannot detach: {e}")),
    };
    // The user and group are dropped by `serve` (supplementary groups too),
    // not by daemonize, which keeps them.
    let mut d = Daemonize::new().working_directory("/").umask(0o027u32);
    if let Some(p) = &settings.pidfile {
        d = d.pid_file(p);
    }
    match d.execute() {
        Outcome::Parent(Ok(_)) => {
            drop(child_end);
            let mut text = String::new();
            let _ = verdict.read_to_string(&mut text);
            match text.trim_end().split_once(' ') {
                _ if text == "ready\n" => ExitCode::SUCCESS,
                Some((code, msg)) => fail(code.parse().unwrap_or(EX_SOFTWARE), msg),
                None => fail(EX_SOFTWARE, "the daemon exited during start-up"),
            }
        }
        Outcome::Parent(Err(e)) => fail(EX_SOFTWARE, format!("cannot detach: {e}")),
        Outcome::Child(Err(e)) => {
            let msg = match &settings.pidfile {
                Some(p) if pidfile_holder(p).is_some() => format!("the pidfile {} is locked by another ferryd", p.display()),
                _ => format!("cannot become a daemon: {e}"),
            };
            // Only the operator's process speaks: one line on their terminal.
            let mut child_end = child_end;
            let _ = writeln!(child_end, "{EX_UNAVAILABLE} {msg}");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Outcome::Child(Ok(_)) => {
            drop(verdict);
            let pidfile = settings.pidfile.clone();
            let code = serve(settings, listeners, overrides, Some(child_end));
            if let Some(p) = pidfile {
                let _ = std::fs::remove_file(p);
            }
            code
        }
    }
}

/// The pid in a pidfile that another process holds locked, if any.
fn pidfile_holder(path: &Path) -> Option<String> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).ok()?;
    // SAFETY: flock on a descriptor we own; the lock goes with the file.
    let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    if !locked {
        return None;
    }
    let pid = std::fs::read_to_string(path).unwrap_or_default().trim().to_string();
    Some(if pid.is_empty() { "?".into() } else { pid })
}

/// The bound TCP listeners and UDP sockets.
type Listeners = (Vec<mio::net::TcpListener>, Vec<mio::net::UdpSocket>);

/// Sets up the event loop and runs it. `ready` is the detached daemon's line
/// to the process that started it: "ready", or "CODE message".
fn serve(
    settings: Settings,
    (listeners, udp): Listeners,
    overrides: Overrides,
    ready: Option<UnixStream>,
) -> ExitCode {
    if let Err(e) = drop_privileges(&settings) {
        if let Some(mut r) = ready {
            let _ = writeln!(r, "{EX_UNAVAILABLE} {e}");
        }
        return fail(EX_UNAVAILABLE, e);
    }
    let reload: server::Reload = Box::new(move || config::load(&overrides).map(|s| s.server));
    let cfg: Config = settings.server;
    let server = match server::Server::new(cfg.clone(), listeners, Some(reload)).and_then(|s| s.with_udp(udp)) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot set up the event loop: {e}");
            if let Some(mut r) = ready {
                let _ = writeln!(r, "{EX_SOFTWARE} {msg}");
            }
            return fail(EX_SOFTWARE, msg);
        }
    };
    for addr in server.local_addrs() {
        info!("listening on {addr}");
    }
    for addr in server.udp_addrs() {
        info!("listening on {addr}/udp");
    }
    info!(
        "serving {} with {} key(s) from {}; {}; {}",
        cfg.root.display(),
        cfg.keys.keys.len(),
        settings.keys_file.display(),
        cfg.exec_summary(),
        if cfg.read_only { "read-only" } else { "read-write" }
    );
    if let Some(mut r) = ready {
        let _ = r.write_all(b"ready\n");
    }
    let mut addrs: Vec<String> = server.local_addrs().iter().map(ToString::to_string).collect();
    addrs.extend(server.udp_addrs().iter().map(|a| format!("{a}/udp")));
    let status = format!("serving {} on {}", cfg.root.display(), addrs.join(", "));
    server::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// Becomes `user` (and `group`, else the user's own group), with no
/// supplementary groups, once the sockets are bound. The pidfile is handed to
/// the user first so the daemon can still remove it (when its directory lets it).
fn drop_privileges(s: &Settings) -> Result<(), String> {
    use std::ffi::CString;
    if s.user.is_none() && s.group.is_none() {
        return Ok(());
    }
    // SAFETY: getpwnam/getgrnam with NUL-terminated names; the results are read
    // at once, before any other call could reuse their static storage.
    let (uid, user_gid) = match &s.user {
        Some(u) => {
            let name = CString::new(u.as_str()).map_err(|_| format!("user {u:?}: not a name"))?;
            let pw = unsafe { libc::getpwnam(name.as_ptr()) };
            if pw.is_null() {
                return Err(format!("user {u:?}: no such user"));
            }
            unsafe { (Some((*pw).pw_uid), Some((*pw).pw_gid)) }
        }
        None => (None, None),
    };
    let gid = match &s.group {
        Some(g) => {
            let name = CString::new(g.as_str()).map_err(|_| format!("group {g:?}: not a name"))?;
            let gr = unsafe { libc::getgrnam(name.as_ptr()) };
            if gr.is_null() {
                return Err(format!("group {g:?}: no such group"));
            }
            unsafe { (*gr).gr_gid }
        }
        None => user_gid.expect("a user when there is no group"),
    };
    if let Some(p) = &s.pidfile {
        if s.daemon {
            let _ = std::os::unix::fs::chown(p, uid, Some(gid));
        }
    }
    // The log file goes to the user too, as the pidfile does; the open
    // descriptor stays writable either way, but a HUP opens the path again
    // as the user (see reopen_check below).
    if let Err(e) = logger::chown_file(uid, Some(gid)) {
        log::warn!("{e}");
    }
    let who = format!("{}:{}", s.user.as_deref().unwrap_or("-"), s.group.as_deref().unwrap_or("-"));
    // SAFETY: plain system calls on integers and a one-element array.
    unsafe {
        if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 {
            return Err(format!("cannot become {who}: {}", std::io::Error::last_os_error()));
        }
        if let Some(uid) = uid {
            if libc::setuid(uid) != 0 {
                return Err(format!("cannot become {who}: {}", std::io::Error::last_os_error()));
            }
            if uid != 0 && libc::setuid(0) == 0 {
                return Err(format!("cannot become {who}: root could be regained"));
            }
        }
    }
    info!("running as {who} (uid {}, gid {gid})", unsafe { libc::getuid() });
    reopen_check(&who);
    Ok(())
}

/// After the drop, a HUP opens the log file's path as the new user: that
/// needs the directory writable by the user (to create the new file), unless
/// logrotate creates it (`create 0640 USER GROUP`). Said once at start, so
/// the operator learns it before the first rotation.
fn reopen_check(who: &str) {
    use std::os::unix::ffi::OsStrExt;
    let Some(dir) = logger::file_path().and_then(Path::parent) else { return };
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return };
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        log::warn!(
            "the log directory {} is not writable by {who}: a HUP can reopen the log file only if it exists \
             (logrotate: create 0640 with that user)",
            dir.display()
        );
    }
}

/// Raises the soft open-files limit toward what `max_connections` needs (each
/// connection holds a socket and, while a command runs, three pipes), never
/// past the hard limit. Running short is not fatal: accept errors are logged.
fn raise_fd_limit(max_connections: usize) {
    let want = (max_connections as u64).saturating_mul(4).saturating_add(64);
    let lim = ferry::sys::raise_nofile(Some(want));
    if lim.now > lim.old {
        log::debug!("open files limit raised from {} to {}", lim.old, lim.now);
    }
    if lim.now < want {
        log::warn!(
            "open files limit {} is low for {max_connections} connections; raise it (ulimit -n) or lower --max-connections",
            lim.now
        );
    }
}
