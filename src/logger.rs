//! The `log` backend, chosen once at start-up (`init`):
//!
//! - stderr: one line per record, `2026-11-25T10:00:00.123Z ferryd: info: message`
//!   (UTC, milliseconds). When `JOURNAL_STREAM` is set, journald is reading
//!   stderr and stamps each line itself, so the lines go without a timestamp.
//! - file: the stderr lines, always timestamped, appended to a file that
//!   ferryd opens itself (`O_APPEND|O_CLOEXEC`, mode 0640 when created) and
//!   opens again on HUP (`reopen`), for logrotate.
//! - syslog: RFC 3164 datagrams (`<PRI>Mmm dd hh:mm:ss ferryd[PID]: message`)
//!   to the system's socket (`/dev/log`) or a given Unix socket, through the
//!   `syslog` crate; levels map to severities error->err, warn->warning,
//!   info->info, debug and trace->debug.
//!
//! Either way a record is one line: newlines and carriage returns inside a
//! message are written as `\n` and `\r`, so no message can forge another.
//! The level can change at run time (`set_level`, on reload).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// Where log records go.
#[derive(Debug, Clone)]
pub enum LogTarget {
    Stderr,
    /// Appended to this file, reopened on HUP.
    File(PathBuf),
    /// `socket`: None for the system's default (`/dev/log`, then the BSD
    /// paths); Some for a custom Unix datagram (or stream) socket.
    Syslog { facility: Facility, socket: Option<PathBuf> },
}

/// Installs the logger for `target` at `level`. Call once, early. Errors: the
/// syslog socket or the log file cannot be opened, or a logger is already
/// installed.
pub fn init(ident: &str, target: LogTarget, level: LevelFilter) -> Result<(), String> {
    let logger: &'static dyn Log = match target {
        LogTarget::Stderr => Box::leak(Box::new(Stderr { ident: ident.to_string(), timestamps: !under_journald() })),
        LogTarget::Syslog { facility, socket } => Box::leak(Box::new(Syslog::open(ident, facility, socket)?)),
        LogTarget::File(path) => {
            if FILE.get().is_some() {
                return Err("a logger is already installed".to_string());
            }
            let file = open_log_file(&path)?;
            let f: &'static FileLog =
                Box::leak(Box::new(FileLog { ident: ident.to_string(), path, file: Mutex::new(file) }));
            log::set_logger(f).map_err(|_| "a logger is already installed".to_string())?;
            let _ = FILE.set(f);
            log::set_max_level(level);
            return Ok(());
        }
    };
    log::set_logger(logger).map_err(|_| "a logger is already installed".to_string())?;
    log::set_max_level(level);
    Ok(())
}

/// HUP: with the file backend, opens the log file's path again, so that the
/// lines from now on go to a new file once logrotate has renamed the old
/// one. When the path cannot be opened (say, the directory is not writable
/// by the user ferryd now runs as), the lines keep going to the old file,
/// which says why. Nothing for the other backends.
pub fn reopen() {
    let Some(f) = FILE.get() else { return };
    match open_log_file(&f.path) {
        Ok(new) => *f.file.lock().unwrap_or_else(|e| e.into_inner()) = new,
        Err(e) => log::error!("{e}; still logging to the file open before"),
    }
}

/// The log file (with the file backend), handed to `uid` and `gid` before
/// ferryd becomes them, so that it stays writable after the drop.
pub fn chown_file(uid: Option<u32>, gid: Option<u32>) -> Result<(), String> {
    let Some(f) = FILE.get() else { return Ok(()) };
    let file = f.file.lock().unwrap_or_else(|e| e.into_inner());
    std::os::unix::fs::fchown(&*file, uid, gid).map_err(|e| format!("cannot hand the log file {} over: {e}", f.path.display()))
}

/// The log file's path when the file backend is installed.
pub fn file_path() -> Option<&'static Path> {
    FILE.get().map(|f| f.path.as_path())
}

/// Installs the stderr logger at `level`; a second call changes nothing.
pub fn init_stderr(ident: &str, level: LevelFilter) {
    let _ = init(ident, LogTarget::Stderr, level);
}

/// Changes the level from now on (a reload). Both backends filter on
/// `log::max_level`, so this is all they need.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// A syslog facility by name, as syslog.conf spells it (`daemon`, `user`,
/// `auth`, `authpriv`, `local0`..`local7`, ...; case-insensitive, `LOG_`
/// prefix allowed).
pub fn parse_facility(s: &str) -> Result<Facility, String> {
    s.parse::<Facility>().map_err(|()| {
        format!("unknown syslog facility {s:?} (expected daemon, user, auth, authpriv, local0..local7, ...)")
    })
}

/// journald reads our stderr (systemd sets `JOURNAL_STREAM` for services
/// whose output goes to the journal).
fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// The message of a record, on one line.
fn one_line(r: &Record) -> String {
    let msg = r.args().to_string();
    match escape_breaks(&msg) {
        Cow::Borrowed(_) => msg,
        Cow::Owned(s) => s,
    }
}

fn escape_breaks(s: &str) -> Cow<'_, str> {
    if !s.contains(['\n', '\r']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.replace('\n', "\\n").replace('\r', "\\r"))
}

// ---- stderr -------------------------------------------------------------

struct Stderr {
    ident: String,
    timestamps: bool,
}

impl Log for Stderr {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(&self.ident, r, self.timestamps);
        // One write per line, so lines from a busy daemon never interleave.
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The line of a record as stderr shows it, newline included.
fn format_line(ident: &str, r: &Record, timestamp: bool) -> String {
    let level = match r.level() {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    };
    let msg = one_line(r);
    if timestamp {
        format!("{} {ident}: {level}: {msg}\n", crate::timefmt::millis(SystemTime::now()))
    } else {
        format!("{ident}: {level}: {msg}\n")
    }
}

// ---- file ---------------------------------------------------------------

/// The installed file backend, for `reopen` and `chown_file`.
static FILE: OnceLock<&'static FileLog> = OnceLock::new();

struct FileLog {
    ident: String,
    path: PathBuf,
    file: Mutex<File>,
}

/// Opens `path` for appending (`O_APPEND|O_CLOEXEC`); a file it creates gets
/// mode 0640 whatever the umask.
fn open_log_file(path: &Path) -> Result<File, String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: io::Error| format!("cannot open the log file {}: {}", path.display(), crate::term::io_text(&e));
    let mut o = std::fs::OpenOptions::new();
    o.append(true).custom_flags(libc::O_CLOEXEC).mode(0o640);
    match o.clone().create_new(true).open(path) {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(0o640)).map_err(err)?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => o.open(path).map_err(err),
        Err(e) => Err(err(e)),
    }
}

impl Log for FileLog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let line = format_line(&self.ident, r, true);
        // One write per line on an O_APPEND file: lines never interleave,
        // whoever else appends to the file.
        let _ = self.file.lock().unwrap_or_else(|e| e.into_inner()).write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

// ---- syslog -------------------------------------------------------------

/// How long a record may wait for a syslog daemon that does not read: a
/// wedged syslogd costs a dropped record, not a stalled event loop.
const SYSLOG_SEND_TIMEOUT: Duration = Duration::from_secs(1);

struct Syslog(Mutex<SyslogConn>);

struct SyslogConn {
    formatter: Formatter3164,
    socket: Option<PathBuf>,
    /// None after a send failed; the next record reconnects.
    logger: Option<syslog::Logger<LoggerBackend, Formatter3164>>,
}

impl Syslog {
    fn open(ident: &str, facility: Facility, socket: Option<PathBuf>) -> Result<Syslog, String> {
        let formatter = Formatter3164 { facility, hostname: None, process: ident.to_string(), pid: std::process::id() };
        let logger = connect(&formatter, socket.as_deref())?;
        Ok(Syslog(Mutex::new(SyslogConn { formatter, socket, logger: Some(logger) })))
    }
}

/// The paths the syslog crate tries when no socket is configured.
const DEFAULT_SYSLOG_SOCKETS: [&str; 3] = ["/dev/log", "/var/run/syslog", "/var/run/log"];

/// What `init` would fail on, found without installing anything or
/// creating anything (`ferryd --check-config`): a log file that could not
/// be opened for appending (its directory missing or not writable, the
/// file not writable), a syslog socket that is missing or does not answer.
pub fn check(target: &LogTarget) -> Result<(), String> {
    match target {
        LogTarget::Stderr => Ok(()),
        LogTarget::File(path) => {
            let err = |why: String| format!("cannot open the log file {}: {why}", path.display());
            if path.exists() {
                if path.is_dir() {
                    return Err(err("is a directory".into()));
                }
                // Opening an existing file to append changes nothing in it.
                return std::fs::OpenOptions::new().append(true).open(path).map(drop).map_err(|e| err(crate::term::io_text(&e)));
            }
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if !dir.is_dir() {
                return Err(err(format!("no directory {}", dir.display())));
            }
            rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
                .map_err(|e| err(format!("cannot create it in {}: {}", dir.display(), crate::term::io_text(&e.into()))))
        }
        LogTarget::Syslog { facility, socket } => {
            let formatter = Formatter3164 { facility: *facility, hostname: None, process: "ferryd".into(), pid: std::process::id() };
            connect(&formatter, socket.as_deref()).map(drop)
        }
    }
}

fn connect(f: &Formatter3164, socket: Option<&Path>) -> Result<syslog::Logger<LoggerBackend, Formatter3164>, String> {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket());
    let missing = match socket {
        Some(p) => (!is_socket(p)).then(|| p.display().to_string()),
        None => DEFAULT_SYSLOG_SOCKETS.iter().all(|p| !is_socket(Path::new(p))).then(|| "/dev/log".to_string()),
    };
    if let Some(at) = missing {
        return Err(format!("no syslog socket at {at} (is a syslog daemon running?)"));
    }
    let r = match socket {
        Some(p) => syslog::unix_custom(f.clone(), p),
        None => syslog::unix(f.clone()),
    };
    let logger = r.map_err(|e| {
        let at = socket.map_or_else(|| "/dev/log".to_string(), |p| p.display().to_string());
        format!("cannot open the syslog socket {at}: {}", syslog_error(&e))
    })?;
    match &logger.backend {
        LoggerBackend::Unix(s) => {
            let _ = s.set_write_timeout(Some(SYSLOG_SEND_TIMEOUT));
        }
        LoggerBackend::UnixStream(s) => {
            let _ = s.get_ref().set_write_timeout(Some(SYSLOG_SEND_TIMEOUT));
        }
        _ => {}
    }
    Ok(logger)
}

/// The innermost cause, without the crate's "Initialization error: Io error:" layers.
fn syslog_error(e: &syslog::Error) -> String {
    match e {
        syslog::Error::Initialization(inner) => match inner.downcast_ref::<syslog::Error>() {
            Some(e) => syslog_error(e),
            None => inner.to_string(),
        },
        syslog::Error::Io(e) | syslog::Error::Write(e) => e.to_string(),
    }
}

fn timed_out(e: &syslog::Error) -> bool {
    matches!(e, syslog::Error::Io(e) | syslog::Error::Write(e)
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

impl SyslogConn {
    /// Sends one record; after a failure (syslogd restarted: the socket is
    /// stale) reconnects once and tries again. A record that cannot be sent
    /// is dropped: there is nowhere else to say so.
    fn send(&mut self, level: Level, msg: &str) {
        for _ in 0..2 {
            if self.logger.is_none() {
                self.logger = connect(&self.formatter, self.socket.as_deref()).ok();
            }
            let Some(l) = self.logger.as_mut() else { return };
            // The pid changes when the daemon detaches after `init`.
            l.formatter.pid = std::process::id();
            let sent = match level {
                Level::Error => l.err(msg),
                Level::Warn => l.warning(msg),
                Level::Info => l.info(msg),
                Level::Debug | Level::Trace => l.debug(msg),
            };
            match sent {
                Ok(()) => return,
                Err(e) if timed_out(&e) => return,
                Err(_) => self.logger = None,
            }
        }
    }
}

impl Log for Syslog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = one_line(r);
        self.0.lock().unwrap_or_else(|e| e.into_inner()).send(r.level(), &msg);
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_log_file_is_0640_and_an_unusable_path_is_a_clear_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferryd.log");
        let mut f = open_log_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
        f.write_all(b"one\n").unwrap();
        // An existing file is appended to, its mode kept.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        open_log_file(&path).unwrap().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
        let e = open_log_file(&dir.path().join("no/such.log")).unwrap_err();
        assert!(e.starts_with("cannot open the log file ") && e.contains("No such file"), "{e}");
        let e = open_log_file(dir.path()).unwrap_err();
        assert!(e.contains("Is a directory"), "{e}");
    }

    #[test]
    fn facilities_parse_by_their_usual_names() {
        let cases = [("daemon", 3), ("user", 1), ("auth", 4), ("authpriv", 10), ("local0", 16), ("LOCAL7", 23)];
        for (name, code) in cases {
            assert_eq!(parse_facility(name).unwrap() as u8, code << 3, "{name}");
        }
        assert_eq!(parse_facility("log_daemon").unwrap() as u8, 3 << 3);
        let err = parse_facility("local9").unwrap_err();
        assert!(err.contains("\"local9\"") && err.contains("local0..local7"), "{err}");
    }

    #[test]
    fn line_breaks_in_messages_are_escaped() {
        assert_eq!(escape_breaks("plain"), "plain");
        assert!(matches!(escape_breaks("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_breaks("a\nb\r\nc"), "a\\nb\\r\\nc");
    }

    #[test]
    fn a_missing_syslog_socket_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.sock");
        let Err(e) = Syslog::open("ferryd", Facility::LOG_DAEMON, Some(path.clone())) else { panic!("opened") };
        assert_eq!(e, format!("no syslog socket at {} (is a syslog daemon running?)", path.display()));
    }
}
