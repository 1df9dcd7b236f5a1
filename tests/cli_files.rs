//! `ferry get`, `put`, `ls` and `stat`, and the session's file lines, run as
//! a user runs them against a real ferryd on 127.0.0.1: bytes, digests,
//! modes and times compared, resume, exit statuses, and a quiet stderr when
//! it is not a terminal. Every child is bounded by a watchdog.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};


fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).unwrap();
    v
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn mtime_of(p: &Path) -> i64 {
    fs::metadata(p).unwrap().modified().unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn set_mtime(p: &Path, secs: u64) {
    let f = fs::File::open(p).unwrap(); // futimens needs ownership, not a writable fd
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

/// `ferry ARGS` against `d`, run in `cwd`.
fn ferry_in(d: &Daemon, cwd: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut cmd = d.ferry();
    cmd.current_dir(cwd).args(args);
    run_with_input(cmd, input)
}

fn assert_status(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn put_and_get_round_trips_keep_bytes_digest_mode_and_mtime() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    let t = d.target();
    for (i, size) in [0, 1, 65_535, 65_536, 65_537, 20 * 1024 * 1024].into_iter().enumerate() {
        let data = random(size);
        let src = here.path().join(format!("src{i}"));
        fs::write(&src, &data).unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o640)).unwrap();
        let remote = format!("dir/f{i}");

        let out = ferry_in(&d, here.path(), &["put", &t, &format!("src{i}"), &remote], b"");
        assert_status(&out, 0);
        assert!(out.stderr.is_empty() && out.stdout.is_empty(), "put is quiet: {}", text(&out.stderr));
        let stored = fs::read(d.path(&remote)).unwrap();
        assert_eq!(stored.len(), size);
        assert_eq!(sha256_hex(&stored), sha256_hex(&data), "put of {size} B");
        assert_eq!(mode_of(&d.path(&remote)), 0o640, "put keeps the mode");

        set_mtime(&d.path(&remote), 1_600_000_000 + i as u64);
        let out = ferry_in(&d, here.path(), &["get", &t, &remote, &format!("back{i}")], b"");
        assert_status(&out, 0);
        assert!(out.stderr.is_empty() && out.stdout.is_empty(), "get is quiet: {}", text(&out.stderr));
        let back = here.path().join(format!("back{i}"));
        let got = fs::read(&back).unwrap();
        assert_eq!(got.len(), size);
        assert_eq!(sha256_hex(&got), sha256_hex(&data), "get of {size} B");
        assert_eq!(mode_of(&back), 0o640, "get sets the mode");
        assert_eq!(mtime_of(&back), 1_600_000_000 + i as i64, "get sets the mtime");
        assert!(!here.path().join(format!("back{i}.part")).exists());
    }
}

#[test]
fn get_defaults_to_the_remote_basename_here_or_in_a_directory() {
    let d = Daemon::start();
    fs::create_dir(d.path("a")).unwrap();
    write_file(&d.path("a/name.txt"), b"contents\n");
    let here = tempfile::tempdir().unwrap();
    assert_status(&ferry_in(&d, here.path(), &["get", &d.target(), "a/name.txt"], b""), 0);
    assert_eq!(fs::read(here.path().join("name.txt")).unwrap(), b"contents\n");
    fs::create_dir(here.path().join("into")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["get", &d.target(), "a/name.txt", "into"], b""), 0);
    assert_eq!(fs::read(here.path().join("into/name.txt")).unwrap(), b"contents\n");
}

#[test]
fn put_defaults_to_the_local_basename_and_goes_into_remote_directories() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    fs::create_dir(here.path().join("sub")).unwrap();
    write_file(&here.path().join("sub/up.bin"), b"up");
    fs::create_dir(d.path("dest")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["put", &d.target(), "sub/up.bin"], b""), 0);
    assert_eq!(fs::read(d.path("up.bin")).unwrap(), b"up");
    assert_status(&ferry_in(&d, here.path(), &["put", &d.target(), "sub/up.bin", "dest"], b""), 0);
    assert_eq!(fs::read(d.path("dest/up.bin")).unwrap(), b"up");
    assert_status(&ferry_in(&d, here.path(), &["put", &d.target(), "sub/up.bin", "new/"], b""), 0);
    assert_eq!(fs::read(d.path("new/up.bin")).unwrap(), b"up");
}

#[test]
fn get_dash_writes_stdout_and_nothing_else() {
    let d = Daemon::start();
    let data = random(300_000);
    write_file(&d.path("blob"), &data);
    let here = tempfile::tempdir().unwrap();
    let out = ferry_in(&d, here.path(), &["get", &d.target(), "blob", "-"], b"");
    assert_status(&out, 0);
    assert!(out.stdout == data, "stdout has {} bytes", out.stdout.len());
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(fs::read_dir(here.path()).unwrap().count(), 0, "no local file");
}

#[test]
fn put_dash_streams_stdin_in_data_frames() {
    let d = Daemon::start();
    let data = random(3 * 1024 * 1024 + 17);
    let here = tempfile::tempdir().unwrap();
    let out = ferry_in(&d, here.path(), &["-v", "put", &d.target(), "-", "piped/in.bin"], &data);
    assert_status(&out, 0);
    let trace = text(&out.stderr);
    assert!(trace.contains(r#""stream":true"#), "a streaming put: {trace}");
    assert!(trace.contains(r#""type":"data""#), "{trace}");
    assert!(trace.contains(r#""type":"ok""#), "{trace}");
    assert_eq!(sha256_hex(&fs::read(d.path("piped/in.bin")).unwrap()), sha256_hex(&data));
    // An empty stdin makes an empty file.
    assert_status(&ferry_in(&d, here.path(), &["put", &d.target(), "-", "empty"], b""), 0);
    assert_eq!(fs::read(d.path("empty")).unwrap(), b"");
}

#[test]
fn put_dash_without_remote_is_a_usage_error() {
    let d = Daemon::start();
    let out = ferry_in(&d, Path::new("."), &["put", &d.target(), "-"], b"x");
    assert_status(&out, 2);
    assert!(text(&out.stderr).contains("REMOTE"), "{}", text(&out.stderr));
}

#[test]
fn get_continue_resumes_from_the_part_with_an_offset() {
    let d = Daemon::start();
    let data = random(1024 * 1024 + 3);
    write_file(&d.path("big"), &data);
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("big.part"), &data[..300_000]);
    let out = ferry_in(&d, here.path(), &["-v", "get", "-c", &d.target(), "big"], b"");
    assert_status(&out, 0);
    let trace = text(&out.stderr);
    assert!(trace.contains(r#""offset":300000"#), "the request resumed at the .part's size: {trace}");
    assert!(trace.contains(&format!(r#""size":{}"#, data.len() - 300_000)), "only the rest was sent: {trace}");
    assert!(fs::read(here.path().join("big")).unwrap() == data);
    assert!(!here.path().join("big.part").exists());
}

#[test]
fn get_continue_checks_the_whole_file_and_drops_a_bad_part() {
    let d = Daemon::start();
    let data = random(500_000);
    write_file(&d.path("big"), &data);
    let here = tempfile::tempdir().unwrap();
    let mut prefix = data[..200_000].to_vec();
    prefix[1234] ^= 0xff;
    write_file(&here.path().join("out.part"), &prefix);
    let out = ferry_in(&d, here.path(), &["-v", "get", "-c", &d.target(), "big", "out"], b"");
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains(r#""offset":200000"#), "{err}");
    assert!(err.contains("ferry: big: digest mismatch"), "{err}");
    assert!(!here.path().join("out").exists(), "no file made from a bad prefix");
    assert!(!here.path().join("out.part").exists(), "the bad .part is removed");
    // With the bad .part gone, -c starts over and succeeds.
    assert_status(&ferry_in(&d, here.path(), &["get", "-c", &d.target(), "big", "out"], b""), 0);
    assert!(fs::read(here.path().join("out")).unwrap() == data);
}

#[test]
fn get_continue_with_a_part_longer_than_the_file_blames_the_part() {
    let d = Daemon::start();
    write_file(&d.path("small"), b"1234");
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("small.part"), b"123456789");
    let out = ferry_in(&d, here.path(), &["get", "-c", &d.target(), "small"], b"");
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("small.part (9 bytes) is longer than the remote file \"small\""), "{err}");
    assert!(err.contains("remove it, or get without -c"), "{err}");
    assert!(here.path().join("small.part").exists(), "the .part is the user's to remove");
}

#[test]
fn get_continue_to_stdout_is_a_usage_error() {
    let d = Daemon::start();
    assert_status(&ferry_in(&d, Path::new("."), &["get", "-c", &d.target(), "x", "-"], b""), 2);
}

#[test]
fn remote_errors_exit_1_with_the_message_and_leave_no_local_file() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("local"), b"data");
    let t = d.target();
    let cases: [(&[&str], &str); 7] = [
        (&["get", &t, "nope"], "no such file"),
        (&["get", &t, "../x", "x"], "ferry: "),
        (&["get", &t, "/etc/passwd", "p"], "ferry: "),
        (&["put", &t, "local", "../escape"], "ferry: "),
        (&["stat", &t, "nope"], "no such file"),
        (&["ls", &t, "nope"], "no such file"),
        (&["ls", &t, "a/../../x"], "ferry: "),
    ];
    for (args, needle) in cases {
        let out = ferry_in(&d, here.path(), args, b"");
        assert_status(&out, 1);
        let err = text(&out.stderr);
        assert!(err.starts_with("ferry: ") && err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    }
    let left: Vec<_> = fs::read_dir(here.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["local"], "no .part or file left behind");
}

#[test]
fn local_file_errors_exit_1() {
    let d = Daemon::start();
    write_file(&d.path("f"), b"x");
    let here = tempfile::tempdir().unwrap();
    let out = ferry_in(&d, here.path(), &["put", &d.target(), "missing"], b"");
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("missing: No such file or directory"), "{}", text(&out.stderr));
    let out = ferry_in(&d, here.path(), &["get", &d.target(), "f", "no/such/dir/f"], b"");
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("no/such/dir/f.part"), "{}", text(&out.stderr));
}

#[test]
fn a_refused_connection_exits_255() {
    let (_dir, keys, _) = make_keys();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let here = tempfile::tempdir().unwrap();
    for args in [&["get", "x"][..], &["put", "-", "x"], &["ls"], &["stat", "x"]] {
        let mut cmd = Command::new(ferry_bin());
        cmd.current_dir(here.path()).arg("-k").arg(&keys).env_remove("FERRY_KEYS");
        cmd.arg(args[0]).arg(format!("127.0.0.1:{port}")).args(&args[1..]);
        let out = run_with_input(cmd, b"data");
        assert_status(&out, 255);
        assert_eq!(text(&out.stderr).lines().count(), 1, "{}", text(&out.stderr));
    }
    assert_eq!(fs::read_dir(here.path()).unwrap().count(), 0);
}

/// A root with known entries: a.txt (0644, 5 B), secret (0600, 0 B), a
/// directory and a link, all with mtime 1_700_000_000 (2023-11-14 22:13:20 UTC).
fn known_root(d: &Daemon) {
    write_file(&d.path("a.txt"), b"hello");
    write_file(&d.path("secret"), b"");
    fs::set_permissions(d.path("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(d.path("sub")).unwrap();
    std::os::unix::fs::symlink("a.txt", d.path("link")).unwrap();
    for f in ["a.txt", "secret", "sub"] {
        set_mtime(&d.path(f), 1_700_000_000);
    }
}

#[test]
fn ls_prints_a_table_and_json() {
    let d = Daemon::start();
    known_root(&d);
    let out = ferry_in(&d, Path::new("."), &["ls", &d.target()], b"");
    assert_status(&out, 0);
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert_eq!(rows[0], ["-rw-r--r--", "5", "2023-11-14", "22:13", "a.txt"], "{table}");
    assert_eq!((rows[1][0], rows[1][1], rows[1][4]), ("lrwxrwxrwx", "5", "link"), "{table}");
    assert_eq!(rows[2], ["-rw-------", "0", "2023-11-14", "22:13", "secret"], "{table}");
    assert_eq!((&rows[3][0][..1], &rows[3][2..]), ("d", &["2023-11-14", "22:13", "sub"][..]), "{table}");
    let widths: Vec<usize> = table.lines().map(|l| l.find(" 20").unwrap()).collect();
    assert!(widths.windows(2).all(|w| w[0] == w[1]), "sizes are aligned: {table}");

    let out = ferry_in(&d, Path::new("."), &["ls", "--json", &d.target(), "."], b"");
    assert_status(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.txt", "link", "secret", "sub"]);
    assert_eq!(v[0]["kind"], "file");
    assert_eq!(v[0]["file_size"], 5);
    assert_eq!(v[0]["mode"], 0o644);
    assert_eq!(v[0]["mtime"], 1_700_000_000);
    assert_eq!(v[3]["kind"], "dir");

    // A file lists as itself, as ls -l does.
    let out = ferry_in(&d, Path::new("."), &["ls", &d.target(), "a.txt"], b"");
    assert_status(&out, 0);
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["-rw-r--r--", "5", "2023-11-14", "22:13", "a.txt"]
    );
}

#[test]
fn stat_prints_lines_and_json() {
    let d = Daemon::start();
    known_root(&d);
    let out = ferry_in(&d, Path::new("."), &["stat", &d.target(), "secret"], b"");
    assert_status(&out, 0);
    assert_eq!(text(&out.stdout), "path: secret\nkind: file\nsize: 0\nmode: 0600\nmtime: 2023-11-14 22:13:20 UTC\n");
    let out = ferry_in(&d, Path::new("."), &["stat", "--json", &d.target(), "a.txt"], b"");
    assert_status(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"path":"a.txt","kind":"file","file_size":5,"mode":0o644,"mtime":1_700_000_000}));
    let out = ferry_in(&d, Path::new("."), &["stat", &d.target(), "sub"], b"");
    assert!(text(&out.stdout).contains("kind: dir\n"), "{}", text(&out.stdout));
}

#[test]
fn the_session_understands_get_put_and_ls_lines() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    let data = random(200_000);
    write_file(&here.path().join("mine.bin"), &data);
    let script = "put mine.bin up.bin\n\
                  get up.bin down.bin\n\
                  ls\n\
                  ls -1\n\
                  get up.bin -\n\
                  get nope\n";
    let out = ferry_in(&d, here.path(), &[&d.target()], script.as_bytes());
    assert_status(&out, 1); // the last line's status: a remote error
    assert_eq!(sha256_hex(&fs::read(d.path("up.bin")).unwrap()), sha256_hex(&data));
    assert_eq!(sha256_hex(&fs::read(here.path().join("down.bin")).unwrap()), sha256_hex(&data));
    let stdout = out.stdout;
    let split = stdout.len() - data.len();
    assert!(stdout[split..] == data, "get up.bin - wrote the file to stdout last");
    let listing = text(&stdout[..split]);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(
        lines[0].starts_with("-rw-") && lines[0].contains(" 200000 ") && lines[0].ends_with(" up.bin"),
        "ferry's ls: {listing}"
    );
    assert_eq!(lines[1], "up.bin", "ls -1 ran in the shell: {listing}");
    assert_eq!(lines.len(), 2, "{listing}");
    assert_eq!(text(&out.stderr).trim(), r#"ferry: "nope": no such file or directory"#);
}

#[test]
fn a_session_line_status_becomes_the_last_status() {
    let d = Daemon::start();
    write_file(&d.path("f"), b"x");
    let here = tempfile::tempdir().unwrap();
    let out = ferry_in(&d, here.path(), &[&d.target()], b"get nope\nget f\n");
    assert_status(&out, 0);
    let out = ferry_in(&d, here.path(), &[&d.target()], b"get f\nls nope\n");
    assert_status(&out, 1);
}

#[test]
fn an_early_put_error_leaves_the_connection_usable() {
    let d = Daemon::start_with(&["--read-only"]);
    write_file(&d.path("present"), b"p");
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("big"), &random(4 * 1024 * 1024));
    let out = ferry_in(&d, here.path(), &[&d.target()], b"put big\nls\n");
    assert_status(&out, 0);
    assert!(text(&out.stderr).contains("read-only"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim_end().ends_with(" present"), "{}", text(&out.stdout));
    assert!(!d.path("big").exists());
}

#[test]
fn a_streaming_put_stops_at_an_early_error() {
    let d = Daemon::start_with(&["--read-only"]);
    let mut child = d.put_from_pipe("endless");
    // An endless stdin: ferry must answer without reading it to the end.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'y'; 64 * 1024];
        let t = Instant::now();
        while t.elapsed() < WAIT * 2 && stdin.write_all(&chunk).is_ok() {}
    });
    let status = wait_child(&mut child, "ferry kept streaming after the server refused the put");
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("read-only"), "{err}");
    feeder.join().unwrap();
}

#[test]
fn nothing_but_errors_on_stderr_when_it_is_not_a_terminal() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    let data = random(2 * 1024 * 1024);
    write_file(&here.path().join("f"), &data);
    let t = d.target();
    for (args, input) in [
        (&["put", &t, "f"][..], &b""[..]),
        (&["put", &t, "-", "g"], &data[..]),
        (&["get", &t, "f", "back"], b""),
        (&["get", &t, "g", "-"], b""),
        (&["ls", &t], b""),
        (&["stat", &t, "f"], b""),
    ] {
        let out = ferry_in(&d, here.path(), args, input);
        assert_status(&out, 0);
        assert!(out.stderr.is_empty(), "{args:?} wrote to stderr: {}", text(&out.stderr));
    }
}

#[test]
fn an_mtime_before_1970_survives_a_get() {
    let d = Daemon::start();
    write_file(&d.path("old"), b"o");
    let f = fs::File::options().write(true).open(d.path("old")).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 365)).unwrap();
    let here = tempfile::tempdir().unwrap();
    assert_status(&ferry_in(&d, here.path(), &["get", &d.target(), "old"], b""), 0);
    assert_eq!(mtime_of_signed(&here.path().join("old")), -86_400 * 365);
    let out = ferry_in(&d, here.path(), &["stat", &d.target(), "old"], b"");
    assert!(text(&out.stdout).contains("mtime: 1969-01-01 00:00:00 UTC"), "{}", text(&out.stdout));
}

fn mtime_of_signed(p: &Path) -> i64 {
    let m = fs::metadata(p).unwrap().modified().unwrap();
    match m.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Runs `ferry ARGS` in `cwd` with stderr on a fresh pseudo-terminal; what
/// it wrote there, and its status.
fn ferry_on_a_tty(d: &Daemon, cwd: &Path, args: &[&str]) -> (String, Option<i32>) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(r, 0, "openpty");
    let (master, slave) = unsafe { (fs::File::from(OwnedFd::from_raw_fd(master)), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = d.ferry();
    cmd.current_dir(cwd).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the slave: the master then reads EOF (EIO) once ferry exits
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &master, &mut all);
        all
    });
    let status = wait_child(&mut child, "ferry did not finish");
    (text(&reader.join().unwrap()), status.code())
}

#[test]
fn a_terminal_gets_a_progress_bar_unless_quiet() {
    let d = Daemon::start();
    write_file(&d.path("f"), &random(3 * 1024 * 1024));
    let here = tempfile::tempdir().unwrap();
    let (tty, code) = ferry_on_a_tty(&d, here.path(), &["get", &d.target(), "f", "a"]);
    assert_eq!(code, Some(0), "{tty}");
    assert!(tty.contains("/3.00 MiB"), "bytes and total on the bar: {tty:?}");
    assert!(tty.contains("/s") && tty.contains("ETA"), "rate and ETA: {tty:?}");
    // The last line: the size, the time it took, the average rate and the digest checked.
    assert!(tty.contains("a: 3.00 MiB in ") && tty.trim_end().ends_with("/s, blake3)"), "the summary line: {tty:?}");
    let (tty, code) = ferry_on_a_tty(&d, here.path(), &["-q", "get", &d.target(), "f", "b"]);
    assert_eq!(code, Some(0), "{tty}");
    assert_eq!(tty, "", "-q: no bar");
}

#[test]
fn get_into_a_fifo_writes_through_it_and_leaves_it_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let d = Daemon::start();
    let data = random(300_000);
    fs::write(d.path("blob"), &data).unwrap();
    let here = tempfile::tempdir().unwrap();
    let fifo = here.path().join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    let out = ferry_in(&d, here.path(), &["get", &d.target(), "blob", "pipe"], b"");
    assert_status(&out, 0);
    assert!(reader.join().unwrap() == data, "the bytes went through the FIFO");
    assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was not replaced by a file");
    assert!(!here.path().join("pipe.part").exists());
    let out = ferry_in(&d, here.path(), &["get", "-c", &d.target(), "blob", "pipe"], b"");
    assert_status(&out, 2);
}

/// A server name that is not UTF-8 cannot travel in a v1 path (a JSON
/// string): the listing shows it exactly all the same (`name_hex`), as
/// `ls -b` would (`\377`), and `--json` carries its bytes.
#[test]
fn ls_shows_a_name_that_is_not_utf8_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let d = Daemon::start();
    fs::create_dir(d.path("dir")).unwrap();
    fs::write(d.path("dir").join(std::ffi::OsStr::from_bytes(b"ab\xff")), b"").unwrap();
    fs::write(d.path("dir/plain"), b"").unwrap();
    let out = ferry_in(&d, Path::new("."), &["ls", &d.target(), "dir"], b"");
    assert_status(&out, 0);
    let listing = text(&out.stdout);
    assert!(listing.lines().any(|l| l.ends_with(" ab\\377")), "{listing}");
    assert!(!listing.contains('\u{fffd}'), "{listing}");
    let out = ferry_in(&d, Path::new("."), &["ls", "--json", &d.target(), "dir"], b"");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let odd = v.as_array().unwrap().iter().find(|e| e.get("name_hex").is_some()).expect("name_hex marks it");
    assert_eq!(odd["name_hex"], "6162ff");
    assert!(v.as_array().unwrap().iter().any(|e| e["name"] == "plain" && e.get("name_hex").is_none()), "{v}");
}

/// A get past `ulimit -f` (RLIMIT_FSIZE, SIGXFSZ left at its default, as a
/// shell leaves it) is a local write error like a full disk's: one line
/// naming the .part, status 1, the .part kept for -c; not a silent death
/// by SIGXFSZ (status 153).
#[test]
fn a_get_past_the_file_size_limit_says_so_and_keeps_the_part() {
    let d = Daemon::start();
    fs::write(d.path("big"), random(3 << 20)).unwrap();
    let here = tempfile::tempdir().unwrap();
    let mut cmd = d.ferry();
    cmd.current_dir(here.path()).args(["-q", "get", &d.target(), "big", "copy"]);
    // (SIGXFSZ keeps this test's disposition, the default.)
    limit(&mut cmd, libc::RLIMIT_FSIZE, 1 << 20);
    let out = run_with_input(cmd, b"");
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.starts_with("ferry: ") && err.contains("copy.part") && err.contains("File too large"), "{err}");
    assert_eq!(fs::metadata(here.path().join("copy.part")).unwrap().len(), 1 << 20, "the .part is kept for -c");
    assert!(!here.path().join("copy").exists());
}

/// A directory where a file is expected, on either side: status 1 and a
/// line that says `-r` copies one; nothing is made.
#[test]
fn a_directory_without_r_is_refused_with_a_hint() {
    let d = Daemon::start();
    fs::create_dir(d.path("rdir")).unwrap();
    let local = tempfile::tempdir().unwrap();
    fs::create_dir(local.path().join("ldir")).unwrap();
    let out = ferry_in(&d, local.path(), &["get", &d.target(), "rdir", "got"], b"");
    assert_status(&out, 1);
    assert!(text(&out.stderr).trim_end().ends_with("is a directory (-r copies a directory)"), "{}", text(&out.stderr));
    assert!(!local.path().join("got").exists() && !local.path().join("got.part").exists());
    let out = ferry_in(&d, local.path(), &["put", &d.target(), "ldir", "sent"], b"");
    assert_status(&out, 1);
    assert_eq!(text(&out.stderr).trim_end(), "ferry: ldir: is a directory (-r copies a directory)");
    assert!(!d.path("sent").exists());
}
