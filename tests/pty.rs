//! `ferry run -t` and `ferry shell`, driven through the real binaries on a
//! pseudo-terminal the test opens (the client's controlling terminal, so a
//! window change is its SIGWINCH): the remote command has a terminal of the
//! client's size and TERM, sees a resize, gets ^C as an interrupt, and a
//! full-screen program's output arrives; the client's terminal modes are
//! the same after as before (`stty -g`), also when the server is killed.

mod common;

use common::{Daemon, WAIT};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `ferry` on a fresh terminal of its own, and everything it wrote there.
struct Term {
    child: Child,
    master: File,
    /// Kept to ask the terminal's modes (`stty -g`) while and after ferry runs.
    slave: OwnedFd,
    /// The modes before ferry started.
    before: String,
    screen: Arc<Mutex<String>>,
}

fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty fills two descriptors; no name or termios.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both were just opened and are owned here.
    unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) }
}

/// The terminal's modes as `stty -g` prints them.
fn stty_g(slave: &OwnedFd) -> String {
    let out = Command::new("stty").arg("-g").stdin(Stdio::from(slave.try_clone().unwrap())).output().unwrap();
    assert!(out.status.success(), "stty -g: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Term {
    /// Runs `cmd` as the session leader of a `rows`×`cols` terminal.
    fn start(mut cmd: Command, rows: u16, cols: u16) -> Term {
        let (master, slave) = open_pty(rows, cols);
        let before = stty_g(&slave);
        let fd = slave.as_raw_fd();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let master = File::from(master);
        let screen = Arc::new(Mutex::new(String::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), screen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Term { child, master, slave, before, screen }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if s.contains(needle) {
                return s;
            }
            assert!(Instant::now() < deadline, "no {needle:?} on the terminal:\n{s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The window changes, as a terminal emulator's would (ferry gets WINCH).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
    }

    /// ferry's exit status.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ferry did not end:\n{:?}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_t(d: &Daemon, args: &[&str]) -> Command {
    let mut c = d.ferry();
    c.arg("run").arg("-t").arg(d.target()).arg("--").args(args).env("TERM", "xterm-256color");
    c
}

#[test]
fn the_command_has_a_terminal_of_our_size_and_term_and_our_modes_come_back() {
    let d = Daemon::start();
    let script = r#"tty; stty size; echo "term=$TERM"; test -t 0 && test -t 1 && test -t 2 && echo all-ttys; exit 7"#;
    let mut t = Term::start(run_t(&d, &[script]), 31, 97);
    let before = t.before.clone();
    assert_eq!(t.wait(), 7, "{:?}", t.screen());
    let s = t.screen();
    assert!(s.contains("/dev/pts/"), "{s:?}");
    assert!(s.contains("31 97"), "{s:?}");
    assert!(s.contains("term=xterm-256color"), "{s:?}");
    assert!(s.contains("all-ttys"), "{s:?}");
    assert_eq!(stty_g(&t.slave), before);
    // The access line says the command had a terminal.
    assert!(d.log.wait_for(" pty ", WAIT).is_some() || d.log.text().contains(" pty"), "{}", d.log.text());
}

#[test]
fn a_resize_is_seen_by_a_running_loop_and_ctrl_c_interrupts_it() {
    let d = Daemon::start();
    let script = "trap 'echo got-int; exit 42' INT; echo ready; while :; do stty size; sleep 0.1; done";
    let mut t = Term::start(run_t(&d, &[script]), 24, 80);
    let before = t.before.clone();
    t.wait_for("24 80");
    // Raw mode: the terminal no longer echoes or cooks what is typed.
    assert_ne!(stty_g(&t.slave), before);
    t.resize(40, 132);
    t.wait_for("40 132");
    // ^C typed here is a byte for the remote terminal, which makes it INT.
    t.send(b"\x03");
    t.wait_for("got-int");
    assert_eq!(t.wait(), 42, "{:?}", t.screen());
    assert_eq!(stty_g(&t.slave), before);
}

#[test]
fn ctrl_c_kills_a_program_that_does_not_catch_it() {
    let d = Daemon::start();
    let mut t = Term::start(run_t(&d, &["echo ready; exec sleep 100"]), 24, 80);
    t.wait_for("ready");
    t.send(b"\x03");
    assert_eq!(t.wait(), 130, "{:?}", t.screen());
}

#[test]
fn a_full_screen_program_draws() {
    let d = Daemon::start();
    let mut t = Term::start(run_t(&d, &["top", "-n", "1"]), 24, 80);
    assert_eq!(t.wait(), 0, "{:?}", t.screen());
    let s = t.screen();
    assert!(s.contains("load average"), "{s:?}");
    // It moved the cursor and cleared the screen: it knew it had a terminal.
    assert!(s.contains("\x1b["), "{s:?}");
}

#[test]
fn the_terminal_comes_back_when_the_server_is_killed() {
    let d = Daemon::start();
    let mut t = Term::start(run_t(&d, &["echo started; exec sleep 100"]), 24, 80);
    let before = t.before.clone();
    t.wait_for("started");
    d.signal(libc::SIGKILL);
    assert_eq!(t.wait(), 255, "{:?}", t.screen());
    assert_eq!(stty_g(&t.slave), before);
    assert!(t.screen().contains("closed the connection"), "{:?}", t.screen());
}

#[test]
fn the_terminal_comes_back_when_ferry_is_terminated() {
    let d = Daemon::start();
    let mut t = Term::start(run_t(&d, &["echo started; exec sleep 100"]), 24, 80);
    let before = t.before.clone();
    t.wait_for("started");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(t.child.id() as i32, libc::SIGTERM) };
    assert_eq!(t.wait(), 128 + libc::SIGTERM);
    assert_eq!(stty_g(&t.slave), before);
}

#[test]
fn shell_runs_the_login_shell_on_a_terminal() {
    let d = Daemon::start();
    let mut c = d.ferry();
    c.arg("shell").arg(d.target()).env("TERM", "vt100");
    let mut t = Term::start(c, 24, 80);
    // A login shell: $0 starts with a dash.
    t.send(b"echo \"zero=$0\"; tty\n");
    t.wait_for("zero=-");
    t.wait_for("/dev/pts/");
    t.send(b"exit 5\n");
    assert_eq!(t.wait(), 5, "{:?}", t.screen());
}

#[test]
fn tt_forces_a_terminal_for_a_script_and_its_end_of_input_is_eof() {
    let d = Daemon::start();
    // No terminal here at all: stdin is a pipe. The remote `cat` reads to EOF
    // (the server types ^D at the end of our input) and exits.
    let mut c = d.ferry();
    c.args(["run", "-tt"]).arg(d.target()).args(["--", "sh", "-c", "tty; cat; echo cat-done"]);
    let out = common::run_with_input(c, b"one line\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("cat-done"), "{text}");
    // -t alone with no terminal: as ssh, none, and one line says so.
    let mut c = d.ferry();
    c.args(["run", "-t"]).arg(d.target()).args(["--", "tty"]);
    let out = common::run_with_input(c, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not a tty"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-tt forces one"));
}

#[test]
fn a_server_without_terminals_refuses_and_udp_has_none() {
    let (d, _) = Daemon::start_config("allow_pty = false\n", &[], |_| {});
    let mut c = d.ferry();
    c.args(["run", "-tt"]).arg(d.target()).args(["--", "tty"]);
    let out = common::run_with_input(c, b"");
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_pty = false") && err.contains("not-allowed"), "{err}");
    // Commands without a terminal still run.
    let out = d.ferry().args(["run", "-n"]).arg(d.target()).args(["--", "echo", "fine"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = d.ferry().args(["run", "-t", "-u"]).arg(d.target()).args(["--", "tty"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = d.ferry().args(["run", "-t", "-H"]).arg(d.target()).args(["--", "tty"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
