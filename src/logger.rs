//! The `log` backend, chosen once at start-up (`init`):
//!
//! - stderr: one line per record, `2026-11-25T10:00:00.123Z ferryd: info: message`
//!   (UTC, milliseconds). When `JOURNAL_STREAM` is set, journald is reading
//!   stderr and stamps each line itself, so the lines go without a timestamp.
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
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use syslog::{Facility, Formatter3164, LoggerBackend};

/// Where log records go.
#[derive(Debug, Clone)]
pub enum LogTarget {
    Stderr,
    /// `socket`: None for the system's default (`/dev/log`, then the BSD
    /// paths); Some for a custom Unix datagram (or stream) socket.
    Syslog { facility: Facility, socket: Option<PathBuf> },
}

/// Installs the logger for `target` at `level`. Call once, early. Errors: the
/// syslog socket cannot be opened, or a logger is already installed.
pub fn init(ident: &str, target: LogTarget, level: LevelFilter) -> Result<(), String> {
    let logger: Box<dyn Log> = match target {
        LogTarget::Stderr => Box::new(Stderr { ident: ident.to_string(), timestamps: !under_journald() }),
        LogTarget::Syslog { facility, socket } => Box::new(Syslog::open(ident, facility, socket)?),
    };
    log::set_boxed_logger(logger).map_err(|_| "a logger is already installed".to_string())?;
    log::set_max_level(level);
    Ok(())
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
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let msg = one_line(r);
        let line = if self.timestamps {
            format!("{} {}: {level}: {msg}\n", utc_timestamp(SystemTime::now()), self.ident)
        } else {
            format!("{}: {level}: {msg}\n", self.ident)
        };
        // One write per line, so lines from a busy daemon never interleave.
        let _ = io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `t` as UTC ISO 8601 with milliseconds: `2026-11-25T10:00:00.123Z`.
pub fn utc_timestamp(t: SystemTime) -> String {
    crate::timefmt::millis(t.max(UNIX_EPOCH))
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

fn connect(f: &Formatter3164, socket: Option<&Path>) -> Result<syslog::Logger<LoggerBackend, Formatter3164>, String> {
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

    fn at(secs: u64, millis: u32) -> String {
        utc_timestamp(UNIX_EPOCH + Duration::new(secs, millis * 1_000_000))
    }

    #[test]
    fn timestamps_are_utc_iso8601_with_milliseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(951_782_400, 999), "2000-02-29T00:00:00.999Z");
        assert_eq!(at(1_795_600_859, 7), "2026-11-25T10:00:59.007Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
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
        assert!(e.starts_with(&format!("cannot open the syslog socket {}: ", path.display())), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
    }
}
