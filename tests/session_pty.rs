//! The interactive line session on a real pseudo-terminal (openpty, the
//! session's controlling terminal, so ^C is the terminal's INT): Ctrl-C at
//! the prompt clears the line, Ctrl-C during a get cancels only the get and
//! keeps its `.part`, Ctrl-D ends after a newline, and file lines take shell
//! quoting.

mod common;

use common::pty::{open_pty, Pty};
use common::{eventually, strip_ansi, Daemon, WAIT};
use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant};

/// `ferry HOST` on a fresh 24-line terminal `cols` columns wide.
fn start_sized(cmd: Command, cols: u16) -> Pty {
    let (master, slave) = open_pty(24, cols);
    Pty::spawn(cmd, master, &slave)
}

fn start(cmd: Command) -> Pty {
    start_sized(cmd, 80)
}

#[test]
fn ctrl_c_clears_the_line_quotes_work_and_ctrl_d_ends_on_a_new_line() {
    let d = Daemon::start();
    std::fs::write(d.path("a file.txt"), b"spaced\n").unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut cmd = d.ferry();
    cmd.arg(d.target()).current_dir(local.path());
    let mut t = start(cmd);
    t.wait_for("ferry> ", 1);
    // A half-typed line, then ^C: the line is gone, a fresh prompt comes,
    // and the session is still there.
    t.send(b"echo never-run");
    t.wait_for("never-run", 1);
    t.send(b"\x03");
    t.wait_for("ferry> ", 2);
    t.send(b"echo after-$((6*7))\n");
    t.wait_for("after-42", 1);
    t.wait_for("ferry> ", 3);
    t.send(b"get 'a file.txt' \"copy 1.txt\"\n");
    t.wait_for("ferry> ", 4);
    assert_eq!(std::fs::read(local.path().join("copy 1.txt")).unwrap(), b"spaced\n", "{}", t.screen());
    t.send(b"\x04");
    assert_eq!(t.wait("the session"), 0, "{}", t.screen());
    let s = t.screen();
    assert!(!s.contains("never-run\r\nnever") && !s.contains("after-42never"), "{s}");
    assert!(s.matches("never-run").count() == 1, "the cleared line never ran: {s}");
    assert!(s.trim_end_matches(['\r', '\n']).ends_with("ferry> "), "{s:?}");
    assert!(s.ends_with("\n"), "Ctrl-D ends the prompt's line: {s:?}");
}

#[test]
fn ctrl_c_during_a_get_cancels_only_the_get_and_keeps_the_part() {
    let d = Daemon::start();
    // A large sparse file: the server sends it fast, the test interrupts
    // long before the end.
    let big = File::create(d.path("big")).unwrap();
    big.set_len(8 << 30).unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut cmd = d.ferry();
    cmd.arg(d.target()).current_dir(local.path());
    let mut t = start(cmd);
    t.wait_for("ferry> ", 1);
    t.send(b"get big\n");
    let part = local.path().join("big.part");
    let deadline = Instant::now() + WAIT;
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 {
        assert!(Instant::now() < deadline, "no .part:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(5));
    }
    t.send(b"\x03");
    let s = t.wait_for("interrupted", 1);
    assert!(s.contains("get -c big"), "{s}");
    t.wait_for("ferry> ", 2);
    let kept = std::fs::metadata(&part).expect("the .part is kept").len();
    assert!(kept > 0 && kept < 8 << 30, "{kept}");
    assert!(!local.path().join("big").exists());
    // The session goes on, on a new connection.
    t.send(b"echo still-$((1+1))\n");
    t.wait_for("still-2", 1);
    t.send(b"quit\n");
    assert_eq!(t.wait("the session"), 0, "{}", t.screen());
    let _ = std::fs::remove_file(&part);
}

/// A tree that cut a refused file short goes on over a new connection, and
/// Ctrl-C during that rest cancels it there and then (the INT handler takes
/// the new socket when the tree reconnects, not when the line ends).
#[test]
fn ctrl_c_stops_the_rest_of_a_tree_that_reconnected() {
    // Over 8 MiB is refused at once: the big file is cut short, the rest
    // (one fsync per file on the server) goes over a new connection.
    let d = Daemon::start_with(&["--max-upload", "8388608"]);
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    File::create(tree.join("a-big")).unwrap().set_len(1 << 30).unwrap();
    const SMALL: usize = 5000;
    for i in 0..SMALL {
        std::fs::write(tree.join(format!("f{i:05}")), b"x").unwrap();
    }
    let mut cmd = d.ferry();
    cmd.arg(d.target()).current_dir(local.path());
    let mut t = start(cmd);
    t.wait_for("ferry> ", 1);
    t.send(b"put -r tree t\n");
    let stored = || std::fs::read_dir(d.path("t")).map_or(0, |r| r.flatten().filter(|e| e.file_name().to_string_lossy().starts_with('f')).count());
    let deadline = Instant::now() + WAIT;
    while stored() == 0 {
        assert!(Instant::now() < deadline, "the rest of the tree never began:\n{}", t.screen());
        std::thread::sleep(Duration::from_millis(5));
    }
    t.send(b"\x03");
    t.wait_for("interrupted", 1);
    t.wait_for("ferry> ", 2);
    let n = stored();
    assert!(n < SMALL, "Ctrl-C did not stop the rest of the tree: all {n} files stored\n{}", t.screen());
    assert!(t.screen().contains("a-big"), "the refused file is named: {}", t.screen());
    // Its access line comes when the server has dropped the cut connection,
    // which may be after the rest began.
    eventually("the big file's access line", WAIT, || d.log.text().contains("put path=\"t/a-big\""));
    // The session goes on, on a new connection.
    t.send(b"echo still-$((2+2))\n");
    t.wait_for("still-4", 1);
    t.send(b"quit\n");
    assert_eq!(t.wait("the session"), 0, "{}", t.screen());
}

#[test]
fn the_progress_bar_fits_a_narrow_terminal_and_ends_with_time_and_rate() {
    let d = Daemon::start();
    std::fs::write(d.path("a-rather-long-file-name-for-a-narrow-terminal.bin"), vec![7u8; 3 << 20]).unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut cmd = d.ferry();
    cmd.args(["get", &d.target(), "a-rather-long-file-name-for-a-narrow-terminal.bin", "out.bin"]).current_dir(local.path());
    let mut t = start_sized(cmd, 50);
    assert_eq!(t.wait("the session"), 0, "{}", t.screen());
    // Let the reader catch the last bytes.
    std::thread::sleep(Duration::from_millis(200));
    let s = t.screen();
    // Each redraw starts at \r or a new line; none may be wider than the terminal.
    let plain = strip_ansi(&s);
    for piece in plain.split(['\r', '\n']) {
        assert!(piece.chars().count() <= 50, "{:?} is wider than 50 columns in {plain:?}", piece);
    }
    let last = plain.split(['\r', '\n']).map(str::trim_end).rfind(|p| !p.is_empty()).unwrap_or("");
    assert!(last.starts_with("out.bin: 3.00 MiB in ") && last.ends_with("/s, blake3)"), "{last:?}");
    assert!(!last.contains("ETA"), "the last line gives the elapsed time, not an ETA: {last:?}");
}

/// A name with a terminal escape sequence (here a remote one, and the local
/// file named after it) reaches the progress bar escaped, as `ls` shows it,
/// never raw.
#[test]
fn the_progress_bar_shows_a_hostile_name_escaped() {
    let d = Daemon::start();
    std::fs::write(d.path("evil\x1b[41mX"), vec![7u8; 3 << 20]).unwrap();
    let local = tempfile::tempdir().unwrap();
    std::fs::create_dir(local.path().join("out")).unwrap();
    let mut cmd = d.ferry();
    cmd.args(["get", &d.target(), "evil\x1b[41mX", "out/"]).current_dir(local.path());
    let mut t = start(cmd);
    assert_eq!(t.wait("the get"), 0, "{}", t.screen());
    let s = t.wait_for("out/evil\\033[41mX: 3.00 MiB in ", 1);
    assert!(!s.contains("\x1b[41m"), "the raw sequence reached the terminal: {s:?}");
    assert_eq!(std::fs::read(local.path().join("out/evil\x1b[41mX")).unwrap().len(), 3 << 20);
}
