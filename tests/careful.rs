//! The client as careful as the daemon (issue 19, items 1 to 3 and fan-out's
//! write errors), against a real ferryd: a symbolic link planted at
//! `LOCAL.part` or LOCAL is never followed (get, get -c, fan-out get); a
//! directory destination is resolved or refused before the fetch; long
//! names fit; remote names reach the terminal escaped; and no subcommand of
//! `ferry` or `ferryd` panics when its output is closed, cut or full.

mod common;

use common::*;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn assert_status(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
}

/// A file of ours that a planted link points at: its bytes and mode must not change.
fn precious(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("precious.txt");
    fs::write(&p, b"my own words\n").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn assert_untouched(p: &Path) {
    assert_eq!(fs::read(p).unwrap(), b"my own words\n", "{} was written through a link", p.display());
    assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o7777, 0o600, "{} changed mode", p.display());
}

#[test]
fn a_link_planted_at_the_part_is_never_followed() {
    let d = Daemon::start();
    write_file(&d.path("report.txt"), b"the server's bytes\n");
    fs::set_permissions(d.path("report.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    let here = tempfile::tempdir().unwrap();
    let mine = precious(here.path());
    let shared = here.path().join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::symlink(&mine, shared.join("report.txt.part")).unwrap();
    let t = d.target();
    for args in [&["get", &t, "report.txt", "shared/report.txt"][..], &["get", "-c", &t, "report.txt", "shared/report.txt"]] {
        let mut cmd = d.ferry();
        cmd.current_dir(here.path()).args(args);
        let out = run_with_input(cmd, b"");
        assert_status(&out, 1);
        assert!(text(&out.stderr).contains("shared/report.txt.part: is a symbolic link"), "{}", text(&out.stderr));
        assert_untouched(&mine);
        assert!(!shared.join("report.txt").exists());
    }

    // Fan-out: LOCAL/HOST/NAME.part.
    let host_dir = here.path().join("fleet").join(&t);
    fs::create_dir_all(&host_dir).unwrap();
    std::os::unix::fs::symlink(&mine, host_dir.join("report.txt.part")).unwrap();
    let mut cmd = d.ferry();
    cmd.current_dir(here.path()).args(["get", "-H", &t, "report.txt", "fleet"]);
    let out = run_with_input(cmd, b"");
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("is a symbolic link"), "{}", text(&out.stderr));
    assert_untouched(&mine);

    // A link at LOCAL itself is replaced by the file, its target left alone.
    fs::remove_file(shared.join("report.txt.part")).unwrap();
    std::os::unix::fs::symlink(&mine, shared.join("report.txt")).unwrap();
    let mut cmd = d.ferry();
    cmd.current_dir(here.path()).args(["get", &t, "report.txt", "shared/report.txt"]);
    assert_status(&run_with_input(cmd, b""), 0);
    assert_untouched(&mine);
    assert!(!fs::symlink_metadata(shared.join("report.txt")).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(shared.join("report.txt")).unwrap(), b"the server's bytes\n");
}

#[test]
fn directory_destinations_and_long_names() {
    let d = Daemon::start();
    write_file(&d.path("f.txt"), b"data\n");
    let long = "n".repeat(253);
    write_file(&d.path(&long), b"long\n");
    let here = tempfile::tempdir().unwrap();
    let t = d.target();
    let ferry = |args: &[&str]| {
        let mut cmd = d.ferry();
        cmd.current_dir(here.path()).args(args);
        run_with_input(cmd, b"")
    };
    // An existing directory (no trailing /) takes the file inside it.
    fs::create_dir(here.path().join("into")).unwrap();
    assert_status(&ferry(&["get", &t, "f.txt", "into"]), 0);
    assert_eq!(fs::read(here.path().join("into/f.txt")).unwrap(), b"data\n");
    // A destination that is a directory fails before the fetch, leaving nothing.
    fs::create_dir(here.path().join("into/g.txt")).unwrap();
    write_file(&d.path("g.txt"), b"g\n");
    let out = ferry(&["get", &t, "g.txt", "into"]);
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("into/g.txt: is a directory"), "{}", text(&out.stderr));
    assert!(!here.path().join("into/g.txt.part").exists());
    // Fan-out: DIR/HOST/NAME a directory fails the same way, nothing asked for.
    fs::create_dir_all(here.path().join("fleet").join(&t).join("g.txt")).unwrap();
    let out = ferry(&["get", "-H", &t, "g.txt", "fleet"]);
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("g.txt: is a directory"), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_millis(200));
    assert!(d.log.count("f.txt") > 0, "the access log names what was fetched");
    assert_eq!(d.log.count("g.txt"), 0, "g.txt was asked for:\n{}", d.log.text());
    // A name of 253 bytes: its .part would not fit in 255.
    assert_status(&ferry(&["get", &t, &long]), 0);
    assert_eq!(fs::read(here.path().join(&long)).unwrap(), b"long\n");
    let left: Vec<_> = fs::read_dir(here.path()).unwrap().flatten().filter(|e| e.file_name().len() > 200).collect();
    assert_eq!(left.len(), 1, "only the file itself, no .part");
}

#[test]
fn remote_names_reach_the_terminal_escaped_and_json_stays_exact() {
    let d = Daemon::start();
    let red = "red\u{1b}[31mX";
    let nl = "two\nlines";
    write_file(&d.path(red), b"");
    write_file(&d.path(nl), b"");
    let t = d.target();
    let ferry = |args: &[&str]| {
        let mut cmd = d.ferry();
        cmd.args(args);
        run_with_input(cmd, b"")
    };
    let out = ferry(&["ls", &t]);
    assert_status(&out, 0);
    let listing = text(&out.stdout);
    assert!(!out.stdout.contains(&0x1b), "{listing:?}");
    assert!(listing.contains("red\\033[31mX\n") && listing.contains("two\\nlines\n"), "{listing:?}");
    assert_eq!(listing.lines().count(), 2, "{listing:?}");
    for (name, shown) in [(red, "red\\033[31mX"), (nl, "two\\nlines")] {
        let out = ferry(&["stat", &t, name]);
        assert_status(&out, 0);
        assert!(!out.stdout.contains(&0x1b));
        assert!(text(&out.stdout).starts_with(&format!("path: {shown}\nkind: file\n")), "{}", text(&out.stdout));
        // A remote error naming it is escaped too.
        let out = ferry(&["get", &t, &format!("{name}/x"), "-"]);
        assert_status(&out, 1);
        assert!(!out.stderr.contains(&0x1b) && text(&out.stderr).lines().count() == 1, "{:?}", text(&out.stderr));
    }
    let out = ferry(&["ls", "--json", &t]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, [red, nl].iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>());
    let out = ferry(&["stat", "--json", &t, red]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["path"], red);
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn reader_gone() -> Stdio {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { libc::close(fds[0]) };
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

/// Runs `argv` with `input`, its stdout a pipe nobody reads any more.
fn to_gone_reader(argv: &[String], input: &[u8]) -> Output {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdout(reader_gone()).stderr(Stdio::piped()).stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
    }
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    let _ = watchdog.join();
    out
}

/// Runs `argv` with `input` under bash with `redir` (closing or pointing
/// stdout and stderr), bounded; the status and what bash's stderr caught.
fn shell(argv: &[String], input: &[u8], redir: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!("\"$@\" {redir}; exit ${{PIPESTATUS[0]}}")).arg("bash").args(argv);
    run_with_input(cmd, input)
}

fn no_panic(what: &str, out: &Output) {
    assert_ne!(out.status.code(), Some(101), "{what}: {}", text(&out.stderr));
    assert!(out.status.code().is_some(), "{what}: killed by a signal: {:?}", out.status);
    for b in [&out.stdout, &out.stderr] {
        assert!(!text(b).contains("panicked"), "{what}: {}", text(b));
    }
}

#[test]
fn no_subcommand_panics_on_a_closed_cut_or_full_output() {
    let d = Daemon::start();
    write_file(&d.path("f.txt"), &vec![b'x'; 300_000]);
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("up.txt");
    fs::write(&local, b"up\n").unwrap();
    let t = d.target();
    let ferry = ferry_bin().to_string();
    let keys = d.keys_path.display().to_string();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let mut n = 0;
    let mut keyfile = || {
        n += 1;
        here.path().join(format!("k{n}")).display().to_string()
    };
    let conf = d.conf_dir().join("check.toml");
    fs::write(&conf, format!("root = {:?}\nkeys = {keys:?}\n", d.path("."))).unwrap();
    let local = local.display().to_string();
    // (argv, stdin, whether stdout carries output: its reader gone is 141)
    let cases: Vec<(Vec<String>, &[u8], bool)> = vec![
        (s(&[&ferry, "-k", &keys, "ping", "-c", "2", "--interval", "0.05", &t]), b"", true),
        (s(&[&ferry, "-k", &keys, "run", "-n", &t, "--", "seq 1 20000"]), b"", true),
        (s(&[&ferry, "-k", &keys, "get", &t, "f.txt", "-"]), b"", true),
        (s(&[&ferry, "-k", &keys, "put", &t, &local, "up.txt"]), b"", false),
        (s(&[&ferry, "-k", &keys, "ls", &t]), b"", true),
        (s(&[&ferry, "-k", &keys, "stat", &t, "f.txt"]), b"", true),
        (s(&[&ferry, "-k", &keys, &t]), b"echo hi\nls\nseq 1 20000\n", true),
        (s(&[&ferry, "-k", &keys, "ping", "-H", &t]), b"", true),
        (s(&[&ferry, "-k", &keys, "run", "-H", &t, "--", "seq 1 20000"]), b"", true),
        (s(&[&ferry, "-k", &keys, "run", "--json", "-H", &t, "--", "echo hi"]), b"", true),
        (s(&[&ferry, "--help"]), b"", true),
        (s(&[&ferry, "run", "--help"]), b"", true),
        (s(&[ferryd_bin(), "--help"]), b"", true),
        (s(&[ferryd_bin(), "--config", &conf.display().to_string(), "--check-config"]), b"", true),
    ];
    for (argv, input, outputs) in &cases {
        let what = argv[1..].join(" ");
        for redir in [">&- 2>&-", "2>&1 | head -c1 >/dev/null", ">/dev/full", "2>/dev/full", ">/dev/full 2>/dev/full"] {
            let out = shell(argv, input, redir);
            no_panic(&format!("{what} {redir}"), &out);
            if redir == ">/dev/full" && *outputs {
                assert_eq!(out.status.code(), Some(if argv[0] == ferryd_bin() { 74 } else { 255 }), "{what} {redir}");
                let err = text(&out.stderr);
                assert!(err.lines().any(|l| l.ends_with("cannot write stdout: ENOSPC: no space left on device")), "{what}: {err}");
            }
        }
        let out = to_gone_reader(argv, input);
        no_panic(&format!("{what} | (reader gone)"), &out);
        let want = if *outputs { 141 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{what} | (reader gone): {}", text(&out.stderr));
        if *outputs && !what.contains("-H") {
            assert!(out.stderr.is_empty(), "EPIPE ends ferry quietly: {what}: {}", text(&out.stderr));
        }
    }
    // keygen: the key is written whatever becomes of the message.
    for redir in [">&- 2>&-", "2>&1 | head -c1 >/dev/null", ">/dev/full 2>/dev/full"] {
        let file = keyfile();
        let out = shell(&s(&[&ferry, "keygen", "--id", "x", &file]), b"", redir);
        no_panic(&format!("keygen {redir}"), &out);
        assert_status(&out, 0);
        assert!(fs::read_to_string(&file).unwrap().starts_with("x "));
    }
}

#[test]
fn fan_out_write_errors_are_not_ok() {
    let d = Daemon::start();
    let t = d.target();
    let keys = d.keys_path.display().to_string();
    let ferry = ferry_bin().to_string();
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    for argv in [
        s(&[&ferry, "-k", &keys, "ping", "-H", &t]),
        s(&[&ferry, "-k", &keys, "run", "--json", "-H", &t, "--", "echo hi"]),
        s(&[&ferry, "-k", &keys, "run", "-H", &t, "--", "echo hi"]),
    ] {
        let out = shell(&argv, b"", ">/dev/full");
        assert_status(&out, 255);
        let err = text(&out.stderr);
        assert_eq!(err.lines().filter(|l| l.contains("cannot write stdout")).count(), 1, "{err}");
        assert_status(&to_gone_reader(&argv, b""), 141);
    }
}
