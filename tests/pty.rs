//! `ferry run -t` and `ferry shell`, driven through the real binaries on a
//! pseudo-terminal the test opens (the client's controlling terminal, so a
//! window change is its SIGWINCH): the remote command has a terminal of the
//! client's size and TERM, sees a resize, gets ^C as an interrupt, and a
//! full-screen program's output arrives; the client's terminal modes are
//! the same after as before (`stty -g`), also when the server is killed.

mod common;

use common::pty::{open_pty, Pty};
use common::{Daemon, WAIT};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `ferry` on a fresh terminal of its own, and everything it wrote there.
struct Term {
    pty: Pty,
    /// Kept to ask the terminal's modes (`stty -g`) while and after ferry runs.
    slave: OwnedFd,
    /// The modes before ferry started.
    before: String,
}

/// The terminal's modes as `stty -g` prints them.
fn stty_g(slave: &OwnedFd) -> String {
    let out = Command::new("stty").arg("-g").stdin(Stdio::from(slave.try_clone().unwrap())).output().unwrap();
    assert!(out.status.success(), "stty -g: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Term {
    /// Runs `cmd` as the session leader of a `rows`×`cols` terminal.
    fn start(cmd: Command, rows: u16, cols: u16) -> Term {
        let (master, slave) = open_pty(rows, cols);
        let before = stty_g(&slave);
        let pty = Pty::spawn(cmd, master, &slave);
        Term { pty, slave, before }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.pty.wait_for(needle, 1)
    }

    /// The window changes, as a terminal emulator's would (ferry gets WINCH).
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCSWINSZ reads one winsize.
        let r = unsafe { libc::ioctl(self.pty.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0);
    }

    /// ferry's exit status.
    fn wait(&mut self) -> i32 {
        self.pty.wait("ferry")
    }
}

impl std::ops::Deref for Term {
    type Target = Pty;
    fn deref(&self) -> &Pty {
        &self.pty
    }
}

impl std::ops::DerefMut for Term {
    fn deref_mut(&mut self) -> &mut Pty {
        &mut self.pty
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
    assert!(err.contains("not-allowed: the server does not allow terminals (allow_pty = false); run without -t"), "{err}");
    // The start-up line says so, as it says exec and read-write.
    assert!(d.log.wait_for("; exec enabled, no terminals; read-write", WAIT).is_some(), "{}", d.log.text());
    // Commands without a terminal still run.
    let out = d.ferry().args(["run", "-n"]).arg(d.target()).args(["--", "echo", "fine"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    // What -t does not go with is said in ferry's words, not clap's.
    for (flags, says) in [
        (&["-u"][..], "-t goes over TCP, not with -u: a datagram has no terminal"),
        (&["-n"][..], "-t does not go with -n"),
        (&["-H", "127.0.0.1"][..], "-t goes with one HOST, not with -H"),
        (&["--json"][..], "-t goes with one HOST, not with --json"),
        (&["-b"][..], "-t goes with one HOST, not with -b"),
    ] {
        let out = d.ferry().args(["run", "-t"]).args(flags).arg(d.target()).args(["--", "tty"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.starts_with(&format!("ferry: {says}")) && err.lines().count() == 1, "{flags:?}: {err}");
    }
}

#[test]
fn a_refused_terminal_request_is_logged_with_what_it_asked() {
    let d = Daemon::start();
    assert!(d.log.wait_for("; exec enabled, terminals allowed; ", WAIT).is_some(), "{}", d.log.text());
    let mut c = d.authed();
    c.send(serde_json::json!({"type":"exec","pty":{"term":"a=b"}}), b"");
    assert_eq!(c.frame().0["code"], "bad-request");
    let line = d.log.wait_for(r#"exec pty term="a=b" "#, WAIT).unwrap_or_else(|| d.log.text());
    assert!(line.contains("access:") && line.contains("bad-request"), "{line}");
}

#[test]
fn shell_without_a_terminal_runs_the_login_shell_on_pipes_and_ends_at_eof() {
    let d = Daemon::start();
    // `echo ... | ferry shell HOST`: as with ssh, no terminal, one line says
    // so, and the login shell reads its commands from the pipe and exits at EOF.
    let mut c = d.ferry();
    c.arg("shell").arg(d.target());
    let out = common::run_with_input(c, b"echo \"zero=$0\"; tty\necho second-line\n");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text} {err}");
    assert!(text.contains("zero=-"), "a login shell: {text}");
    assert!(text.contains("not a tty") && text.contains("second-line"), "{text}");
    assert!(!text.contains('\r'), "pipes, not a terminal: {text:?}");
    assert!(err.contains("stdin is not a terminal"), "{err}");
    // The access line names the login shell and no terminal.
    let line = d.log.wait_for(" login", WAIT).unwrap_or_default();
    assert!(!line.contains(" pty"), "{line}");
    // Nothing to read: the shell ends at once, with nothing said.
    let mut c = d.ferry();
    c.args(["run", "-q", "-t"]).arg(d.target()).stdin(Stdio::null());
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty() && !String::from_utf8_lossy(&out.stderr).contains("ferry:"), "{out:?}");
}

#[test]
fn shell_takes_every_option_its_synopsis_lists() {
    let d = Daemon::start();
    // ferry(1): shell [-46qv] [--encoding label] [--plaintext | --tls] [-i id] [-k file] [-w secs]
    let mut c = d.ferry();
    c.args(["shell", "-4", "-q", "--encoding", "latin1", "--plaintext", "-w", "5"]).arg(d.target());
    let out = common::run_with_input(c, b"printf 'caf\\351\\n'\n");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "caf\u{e9}\n");
    assert!(out.stderr.is_empty(), "-q: {}", String::from_utf8_lossy(&out.stderr));
    let mut c = d.ferry();
    c.args(["shell", "-v", "--tls"]).arg(d.target());
    let out = common::run_with_input(c, b"echo over-tls\n");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("over-tls"));
}

#[test]
fn after_a_stop_and_fg_the_terminal_is_raw_again_and_the_size_is_sent() {
    let d = Daemon::start();
    let script = "echo ready; while :; do stty size; sleep 0.1; done";
    let mut t = Term::start(run_t(&d, &[script]), 24, 80);
    let before = t.before.clone();
    t.wait_for("24 80");
    assert_ne!(stty_g(&t.slave), before);
    let pid = t.child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTSTP) };
    // Stopped: our modes are back, as a shell expects of a stopped job.
    common::eventually("ferry stopped with the modes back", WAIT, || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('T')) && stty_g(&t.slave) == before
    });
    // The window changes while it is stopped (no WINCH reaches a stopped
    // process's handler in time); `fg` sends CONT.
    t.resize(33, 99);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    common::eventually("raw mode again", WAIT, || stty_g(&t.slave) != before);
    t.wait_for("33 99");
    t.send(b"\x03");
    assert_eq!(t.wait(), 130, "{:?}", t.screen());
    assert_eq!(stty_g(&t.slave), before);
}

#[test]
fn an_unusable_term_is_said_once_and_a_window_of_0x0_is_24x80() {
    let d = Daemon::start();
    for bad in ["a=b", "/", "vt\x1b[0m", "caf\u{e9}", "x y"] {
        let mut c = d.ferry();
        c.args(["run", "-tt"]).arg(d.target()).args(["--", "echo \"term=$TERM\""]).env("TERM", bad);
        let out = common::run_with_input(c, b"");
        let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{bad:?}: {err}");
        assert!(text.contains("term=dumb"), "{bad:?}: {text}");
        assert_eq!(err.matches("cannot be sent").count(), 1, "{bad:?}: {err}");
        assert!(err.contains("the remote terminal is dumb"), "{err}");
    }
    // -q says nothing of it; an unset TERM is dumb without a word.
    let mut c = d.ferry();
    c.args(["run", "-q", "-tt"]).arg(d.target()).args(["--", "echo \"term=$TERM\""]).env("TERM", "a=b");
    let out = common::run_with_input(c, b"");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = d.ferry();
    c.args(["run", "-tt"]).arg(d.target()).args(["--", "echo \"term=$TERM\""]).env_remove("TERM");
    let out = common::run_with_input(c, b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("term=dumb") && out.stderr.is_empty(), "{out:?}");
    // A terminal that says 0x0 (a serial line, a fresh pty) gives 24x80 remotely.
    let mut t = Term::start(run_t(&d, &["stty size"]), 0, 0);
    assert_eq!(t.wait(), 0, "{:?}", t.screen());
    assert!(t.screen().contains("24 80"), "{:?}", t.screen());
}

/// Whether every line on the terminal ended in CR LF (a bare LF written
/// while the terminal is raw shows as one, and the next line staircases).
fn no_bare_lf(s: &str) -> bool {
    s.match_indices('\n').all(|(i, _)| i > 0 && s.as_bytes()[i - 1] == b'\r')
}

#[test]
fn ferrys_own_lines_read_right_on_a_raw_terminal() {
    let d = Daemon::start();
    // -v traces every frame while the terminal is raw.
    let mut c = d.ferry();
    c.args(["run", "-v", "-t"]).arg(d.target()).args(["--", "echo one; echo two"]).env("TERM", "vt100");
    let mut t = Term::start(c, 24, 80);
    assert_eq!(t.wait(), 0, "{:?}", t.screen());
    let s = t.screen();
    assert!(s.contains("ferry: < ") && s.contains("\"exit\""), "{s:?}");
    assert!(no_bare_lf(&s), "{s:?}");
    // The server vanishes while a prompt waits: the message starts on a
    // line of its own, after the terminal is restored.
    let mut t = Term::start(run_t(&d, &["printf 'prompt$ '; exec sleep 100"]), 24, 80);
    t.wait_for("prompt$ ");
    d.signal(libc::SIGKILL);
    assert_eq!(t.wait(), 255, "{:?}", t.screen());
    let s = t.screen();
    assert!(s.contains("prompt$ \r\nferry: "), "{s:?}");
    assert!(no_bare_lf(&s), "{s:?}");
}

#[test]
fn w_bounds_the_start_of_an_interactive_shell_not_its_idle_time() {
    let d = Daemon::start();
    let mut c = d.ferry();
    c.args(["shell", "-w", "1"]).arg(d.target()).env("TERM", "vt100");
    let mut t = Term::start(c, 24, 80);
    t.send(b"echo started-$((6*7))\n");
    t.wait_for("started-42");
    // A person reading the screen for longer than -w: nothing ends.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(t.child.try_wait().unwrap().is_none(), "ended while idle: {:?}", t.screen());
    t.send(b"echo still-$((6*7)); exit 4\n");
    t.wait_for("still-42");
    assert_eq!(t.wait(), 4, "{:?}", t.screen());
}

#[test]
fn tt_with_no_command_and_no_input_ends_the_login_shell() {
    let d = Daemon::start();
    // `ferry run -tt HOST </dev/null`: the EOF typed while the shell starts
    // would be lost when its line editor turns canonical mode off; the
    // server types it once more then, and the shell logs out.
    for _ in 0..3 {
        let mut c = d.ferry();
        c.args(["run", "-tt"]).arg(d.target()).env("TERM", "vt100");
        let out = common::run_with_input(c, b"");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text:?} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("logout") || text.contains("exit"), "{text:?}");
    }
}
