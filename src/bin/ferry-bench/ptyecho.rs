//! `pty-echo`: the keystroke echo round trip of interactive clients. Each
//! command (`ferry run -t ...`, `ssh -t ...`) runs as the session leader of a
//! pseudo-terminal this opens, as under a terminal emulator; its remote
//! program puts the remote terminal in non-canonical mode with echo on and
//! prints a marker, then discards what it reads. A byte written here ("a key
//! typed") is timed until the remote terminal's echo of it comes back. The
//! commands take turns key by key (A B A B ...), so they share the machine's
//! noise. Imports nothing of the other modes.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the remote program prints once its terminal echoes key by key.
pub const READY: &str = "FERRY-PTY-READY";

/// One client under a terminal of ours.
struct Session {
    argv: Vec<String>,
    child: Child,
    master: File,
    /// Microseconds per echoed key, after the warm-up.
    samples: Vec<u64>,
}

fn open_pty() -> Result<(OwnedFd, OwnedFd), String> {
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty fills two descriptors; no name, no termios.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    if r != 0 {
        return Err(format!("openpty: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both were just opened and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// Waits up to `limit` for the master to be readable.
fn readable(master: &File, limit: Duration) -> bool {
    let mut p = libc::pollfd { fd: master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = limit.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one pollfd, ours.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

impl Session {
    fn start(argv: &[String]) -> Result<Session, String> {
        let (master, slave) = open_pty()?;
        let fd = slave.as_raw_fd();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env("TERM", "xterm");
        let dup = |s: &OwnedFd| s.try_clone().map(Stdio::from).map_err(|e| e.to_string());
        cmd.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(dup(&slave)?);
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))?;
        drop(cmd);
        drop(slave);
        Ok(Session { argv: argv.to_vec(), child, master: File::from(master), samples: Vec::new() })
    }

    /// Reads until `needle` has been seen, within `limit`.
    fn read_until(&mut self, needle: &[u8], limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if seen.windows(needle.len()).any(|w| w == needle) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable(&self.master, left) {
                return Err(format!("{:?}: no {:?} within {limit:?}; got {:?}", self.argv, String::from_utf8_lossy(needle), String::from_utf8_lossy(&seen)));
            }
            match self.master.read(&mut buf) {
                Ok(0) | Err(_) => {
                    return Err(format!("{:?} ended: {:?}", self.argv, String::from_utf8_lossy(&seen)));
                }
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// One key: written, then timed until its echo arrives.
    fn key(&mut self, k: u8, limit: Duration) -> Result<Duration, String> {
        let t = Instant::now();
        self.master.write_all(&[k]).map_err(|e| e.to_string())?;
        self.read_until(&[k], limit)?;
        Ok(t.elapsed())
    }

    /// ^C for the remote program, then the client's end (killed if it lingers).
    fn finish(mut self, limit: Duration) -> Vec<u64> {
        let _ = self.master.write_all(b"\x03");
        let deadline = Instant::now() + limit;
        loop {
            // Keep draining so the client never blocks writing to us.
            if readable(&self.master, Duration::from_millis(20)) {
                let mut buf = [0u8; 4096];
                if !matches!(self.master.read(&mut buf), Ok(n) if n > 0) {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                break;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.samples
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `keys` measured keys (after `warmup` more) through each command in
/// turn; one JSON object with each command's percentiles in microseconds.
pub fn measure(commands: &[Vec<String>], keys: usize, warmup: usize, limit: Duration) -> Result<(Value, String), String> {
    let mut sessions = Vec::new();
    for argv in commands {
        let mut s = Session::start(argv)?;
        s.read_until(READY.as_bytes(), limit)?;
        sessions.push(s);
    }
    let alphabet = b"abcdefghijklmnopqrstuvwxyz";
    for i in 0..warmup + keys {
        for s in sessions.iter_mut() {
            let took = s.key(alphabet[i % alphabet.len()], limit)?;
            if i >= warmup {
                s.samples.push(took.as_micros() as u64);
            }
        }
    }
    let mut rows = Vec::new();
    let mut table = String::from("ferry-bench pty-echo: a key typed to its echo\ncommand\tp50 µs\tp90 µs\tp99 µs\tmean µs\n");
    for s in sessions {
        let argv = s.argv.clone();
        let mut v = s.finish(limit);
        v.sort_unstable();
        let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
        let (p50, p90, p99) = (pct(&v, 0.5), pct(&v, 0.9), pct(&v, 0.99));
        table += &format!("{}\t{p50}\t{p90}\t{p99}\t{mean:.0}\n", argv.join(" "));
        rows.push(json!({"argv": argv, "keys": v.len(), "p50_us": p50, "p90_us": p90, "p99_us": p99, "mean_us": mean}));
    }
    Ok((json!({"tool": "ferry-bench", "mode": "pty-echo", "commands": rows}), table))
}

/// The commands of `words`, separated by `::`.
pub fn split_commands(words: &[String]) -> Vec<Vec<String>> {
    words.split(|w| w == "::").filter(|c| !c.is_empty()).map(|c| c.to_vec()).collect()
}
