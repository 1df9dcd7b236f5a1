//! The `log` backend: one line per record on stderr, `ferryd: LEVEL: message`.
//! (syslog arrives with daemon mode; the choice of backend is made once, here.)

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Stderr {
    name: &'static str,
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
        // One write per line, so lines from a busy daemon never interleave.
        let line = format!("{}: {level}: {}\n", self.name, r.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the stderr logger at `level`. Call once, early.
pub fn init_stderr(name: &'static str, level: LevelFilter) {
    let _ = log::set_boxed_logger(Box::new(Stderr { name }));
    log::set_max_level(level);
}
