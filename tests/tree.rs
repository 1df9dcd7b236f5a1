//! `ferry put -r`, `get -r` and `ls -R` against a real ferryd on 127.0.0.1:
//! a tree with nested and empty directories, links in and out of the root,
//! modes, a 0-byte and a large file goes there and back byte-identical
//! (`diff -r`, modes, mtimes); a cut get resumes with -c; -c skips what is
//! complete; a file-only daemon receives a tree; a path escape is refused;
//! one failing entry is named, the rest arrives, and the status is 1.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    getrandom::getrandom(&mut v).unwrap();
    v
}

fn ferry_in(d: &Daemon, cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = d.ferry();
    cmd.current_dir(cwd).args(args);
    run_with_input(cmd, b"")
}

fn assert_status(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, secs: u64) {
    fs::File::open(p).unwrap().set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs)).unwrap();
}

/// The test tree under `top`: nested and empty directories, a link inside
/// it, modes (a set-uid file among them), a 0-byte file and a `big` one.
fn make_tree(top: &Path, big: usize) {
    fs::create_dir_all(top.join("a/b/c")).unwrap();
    fs::create_dir_all(top.join("empty/deeper")).unwrap();
    fs::create_dir_all(top.join("lone")).unwrap();
    fs::write(top.join("a/small.txt"), b"hello tree\n").unwrap();
    fs::write(top.join("a/b/c/deep.bin"), random(70_000)).unwrap();
    fs::write(top.join("zero"), b"").unwrap();
    fs::write(top.join("big.bin"), random(big)).unwrap();
    fs::write(top.join("setuid"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("../zero", top.join("a/to-zero")).unwrap();
    std::os::unix::fs::symlink("b/c", top.join("a/to-dir")).unwrap();
    chmod(&top.join("a/small.txt"), 0o600);
    chmod(&top.join("zero"), 0o640);
    chmod(&top.join("setuid"), 0o4755);
    chmod(&top.join("a/b"), 0o750);
    chmod(&top.join("lone"), 0o700);
    set_mtime(&top.join("a/small.txt"), 1_500_000_000);
    set_mtime(&top.join("big.bin"), 1_400_000_000);
    set_mtime(&top.join("empty/deeper"), 1_300_000_000);
    set_mtime(&top.join("a/b"), 1_200_000_000);
}

/// Every entry under `top` by relative path: its kind, its permission
/// bits, its mtime (not for links), its link target.
fn describe(top: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(top).unwrap().display().to_string();
            if m.file_type().is_symlink() {
                out.push(format!("{rel} link {}", fs::read_link(e.path()).unwrap().display()));
            } else {
                let kind = if m.is_dir() { "dir" } else { "file" };
                out.push(format!("{rel} {kind} {:o} {} {}", m.mode() & 0o7777, m.mtime(), if m.is_dir() { 0 } else { m.len() }));
                if m.is_dir() {
                    todo.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn diff_r(a: &Path, b: &Path) {
    let out = Command::new("diff").arg("-r").arg("--no-dereference").arg(a).arg(b).output().expect("diff runs");
    assert!(out.status.success(), "diff -r {a:?} {b:?}:\n{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn a_tree_goes_there_and_back_byte_identical_with_modes_mtimes_links_and_empty_dirs() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    make_tree(&src, 9 * 1024 * 1024 + 7);

    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree", "up"]);
    assert_status(&out, 0);
    assert!(out.stderr.is_empty(), "quiet when stderr is no terminal: {}", text(&out.stderr));
    // scp: REMOTE did not exist, so it became the copy.
    let remote = d.path("up");
    diff_r(&src, &remote);
    let mut want = describe(&src);
    for l in want.iter_mut() {
        // Set-id bits are dropped.
        *l = l.replace("setuid file 4755", "setuid file 755");
    }
    assert_eq!(describe(&remote), want);
    assert_eq!(fs::read_link(remote.join("a/to-zero")).unwrap(), Path::new("../zero"));

    // Again into an existing directory: under LOCAL's name.
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree", "up"]);
    assert_status(&out, 0);
    assert_eq!(describe(&d.path("up/tree")), want);

    // And back: LOCAL absent becomes the copy; an existing one takes it in.
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "up", "back"]);
    assert_status(&out, 0);
    let back = here.path().join("back");
    let mut back_want = want.clone();
    back_want.push("tree dir 755 0 0".into());
    back_want.sort();
    let got = describe(&back);
    assert_eq!(got.iter().filter(|l| !l.starts_with("tree")).collect::<Vec<_>>(), want.iter().collect::<Vec<_>>());
    diff_r(&src, &back.join("tree"));
    diff_r(&remote, &back);
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "up", "back"]);
    assert_status(&out, 0);
    diff_r(&remote, &back.join("up"));
    assert_eq!(fs::metadata(back.join("up")).unwrap().mode() & 0o777, fs::metadata(&remote).unwrap().mode() & 0o777);
    let leftovers: Vec<_> = describe(here.path()).into_iter().filter(|l| l.contains(".part") || l.contains(".ferry-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // ls -R names every entry by its path under the directory.
    let out = ferry_in(&d, here.path(), &["ls", "-R", &t, "up"]);
    assert_status(&out, 0);
    let listing = text(&out.stdout);
    for name in ["a/b/c/deep.bin", "empty/deeper", "a/to-zero", "tree/big.bin", "zero"] {
        assert!(listing.lines().any(|l| l.ends_with(&format!(" {name}"))), "{name} in {listing}");
    }
    let out = ferry_in(&d, here.path(), &["ls", "-R", "--json", &t, "up"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v.as_array().unwrap().iter().find(|e| e["name"] == "a/to-zero").unwrap();
    assert_eq!((link["kind"].as_str(), link["target"].as_str()), (Some("link"), Some("../zero")));
}

#[test]
fn links_out_of_the_root_are_refused_as_bad_path_and_the_rest_arrives_with_status_1() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/keep"), b"kept").unwrap();
    std::os::unix::fs::symlink("../../../etc/passwd", src.join("sub/escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../keep-me", src.join("sub/inside")).unwrap();

    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("sub/escape: ") && err.contains("absolute: "), "{err}");
    assert_eq!(err.matches("(bad-path)").count(), 2, "{err}");
    assert!(err.contains("2 of "), "{err}");
    assert_eq!(fs::read(d.path("tree/sub/keep")).unwrap(), b"kept");
    assert_eq!(fs::read_link(d.path("tree/sub/inside")).unwrap(), Path::new("../keep-me"));
    assert!(fs::symlink_metadata(d.path("tree/sub/escape")).is_err());
    assert!(fs::symlink_metadata(d.path("tree/absolute")).is_err());

    // A link planted in the served tree that leads out: its target is not
    // even told, the get refuses it, and the rest still arrives.
    std::os::unix::fs::symlink("/etc", d.path("tree/planted")).unwrap();
    std::os::unix::fs::symlink("../../..", d.path("tree/sub/up3")).unwrap();
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree", "copy"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("planted: bad-path") && err.contains("sub/up3: bad-path"), "{err}");
    assert_eq!(fs::read(here.path().join("copy/sub/keep")).unwrap(), b"kept");
    assert!(fs::symlink_metadata(here.path().join("copy/planted")).is_err());

    // A link here where a directory of the tree goes is not written through.
    let elsewhere = tempfile::tempdir().unwrap();
    fs::create_dir_all(here.path().join("copy2/tree")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), here.path().join("copy2/tree/sub")).unwrap();
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree", "copy2"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("ferry: sub: ") && err.contains("sub/keep: skipped"), "{err}");
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0, "nothing written through the link");
}

#[test]
fn a_path_escape_is_refused_by_the_server_and_the_connection_goes_on() {
    let d = Daemon::start();
    let outside = tempfile::tempdir().unwrap();
    let mut c = d.authed();
    let refused = |c: &mut Raw, h: serde_json::Value, code: &str| {
        c.send(h.clone(), b"");
        let (reply, _) = c.frame();
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(code)), "{h} -> {reply}");
    };
    refused(&mut c, serde_json::json!({"type":"symlink","path":"l","target":"../x"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"symlink","path":"a/b/l","target":"../../../etc"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"symlink","path":"l","target":"/etc"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"symlink","path":"../l","target":"x"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"mkdir","path":"../up"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"mkdir","path":"/abs"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"mkdir","path":"m","mode":4096}), "bad-request");
    refused(&mut c, serde_json::json!({"type":"list","path":"..","recursive":true}), "bad-path");
    // A link to outside planted in the root cannot be used to go there.
    std::os::unix::fs::symlink(outside.path(), d.path("door")).unwrap();
    refused(&mut c, serde_json::json!({"type":"mkdir","path":"door/x"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"symlink","path":"door/l","target":"y"}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"list","path":"door","recursive":true}), "bad-path");
    refused(&mut c, serde_json::json!({"type":"mkdir","path":"door"}), "not-a-directory");
    c.send(serde_json::json!({"type":"put","path":"door/f","mode":420,"tree":"t1"}), b"x");
    assert_eq!(c.frame().0["code"], "bad-path");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside the root");
    // The connection goes on, and a link inside is made.
    c.send(serde_json::json!({"type":"symlink","path":"in/l","target":"../door"}), b"");
    let (ok, _) = c.frame();
    assert_eq!((ok["type"].as_str(), ok["kind"].as_str()), (Some("ok"), Some("link")), "{ok}");
    assert_eq!(fs::read_link(d.path("in/l")).unwrap(), Path::new("../door"));
}

#[test]
fn a_file_only_daemon_receives_and_serves_a_tree() {
    let (d, _) = Daemon::start_config("allow_exec = false\n", &[], |_| {});
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    make_tree(&here.path().join("tree"), 300_000);
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree", "."]);
    assert_status(&out, 0);
    diff_r(&here.path().join("tree"), &d.path("tree"));
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree", "again"]);
    assert_status(&out, 0);
    diff_r(&here.path().join("tree"), &here.path().join("again"));
    let out = ferry_in(&d, here.path(), &["run", &t, "--", "true"]);
    assert_status(&out, 255);
    assert!(text(&out.stderr).contains("exec-disabled"), "{}", text(&out.stderr));
}

#[test]
fn one_failing_file_is_named_the_rest_arrives_and_the_status_is_1() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("d/f{i:02}")), format!("file {i}")).unwrap();
    }
    // On the server, a directory stands where one file must go.
    fs::create_dir_all(d.path("tree/d/f07/occupied")).unwrap();
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("ferry: d/f07: ") && l.contains("is-a-directory")), "{err}");
    assert!(err.contains("1 of "), "{err}");
    for i in (0..20).filter(|i| *i != 7) {
        assert_eq!(fs::read_to_string(d.path(&format!("tree/d/f{i:02}"))).unwrap(), format!("file {i}"));
    }
    // The same the other way: a directory here where one file must go
    // (`copy` exists, so the tree lands in it as `copy/tree`).
    fs::create_dir_all(here.path().join("copy/tree/d/f03/occupied")).unwrap();
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree", "copy"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l.starts_with("ferry: d/f03: ")), "{err}");
    assert!(err.contains("1 of "), "{err}");
    for i in [0, 5, 19] {
        assert_eq!(fs::read_to_string(here.path().join(format!("copy/tree/d/f{i:02}"))).unwrap(), format!("file {i}"));
    }
}

#[test]
fn max_upload_counts_the_whole_tree() {
    let d = Daemon::start_with(&["--max-upload", "1000"]);
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    for i in 0..5 {
        fs::write(src.join(format!("f{i}")), vec![b'x'; 300]).unwrap();
    }
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert_eq!(err.matches("(too-large)").count(), 2, "300 x 3 fit in 1000, the 4th and 5th do not: {err}");
    assert!(d.path("tree/f2").exists() && !d.path("tree/f3").exists());
    // A single put of the same size still goes: the limit is per tree.
    let out = ferry_in(&d, here.path(), &["put", &t, "tree/f4", "single"]);
    assert_status(&out, 0);
}

fn inode(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

#[test]
fn put_c_skips_complete_files_by_size_and_digest() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    fs::create_dir_all(src.join("s")).unwrap();
    for i in 0..10 {
        fs::write(src.join(format!("s/f{i}")), random(1000 + i)).unwrap();
    }
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]), 0);
    // A tree cut short: two files missing, one of the right size but wrong.
    fs::remove_file(d.path("tree/s/f1")).unwrap();
    fs::remove_file(d.path("tree/s/f2")).unwrap();
    fs::write(d.path("tree/s/f3"), random(1003)).unwrap();
    let kept = inode(&d.path("tree/s/f5"));
    // The log is read by a thread: the first tree's 10 access lines first.
    eventually("the first tree's access lines", WAIT, || d.log.count(" put path=") >= 10);
    let before = d.log.count(" put path=");
    assert_eq!(before, 10);
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", "-c", &t, "tree"]), 0);
    eventually("the access lines", WAIT, || d.log.count(" put path=") >= before + 3);
    assert_eq!(d.log.count(" put path=") - before, 3, "only f1, f2 and f3 are sent again");
    diff_r(&src, &d.path("tree"));
    assert_eq!(inode(&d.path("tree/s/f5")), kept, "a complete file is left alone");
}

#[test]
fn a_cut_get_resumes_with_c() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path("tree/x")).unwrap();
    for i in 0..8 {
        fs::write(d.path(&format!("tree/x/small{i}")), random(5000)).unwrap();
    }
    fs::write(d.path("tree/x/y-big"), random(96 * 1024 * 1024)).unwrap();
    fs::write(d.path("tree/z-last"), b"last").unwrap();
    // Cut: the client is killed once the big file's .part has some of it.
    let mut child = d.ferry().current_dir(here.path()).args(["get", "-r", &t, "tree"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let part = here.path().join("tree/x/y-big.part");
    let t0 = Instant::now();
    let mut cut = false;
    while t0.elapsed() < WAIT {
        if fs::metadata(&part).is_ok_and(|m| m.len() > 0) {
            child.kill().unwrap();
            cut = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    assert!(cut, "the get was cut while the big file came (it finished first or never started)");
    let had = fs::metadata(&part).unwrap().len();
    assert!(had < 96 * 1024 * 1024);
    let small = inode(&here.path().join("tree/x/small3"));
    let out = ferry_in(&d, here.path(), &["get", "-r", "-c", &t, "tree"]);
    assert_status(&out, 0);
    diff_r(&d.path("tree"), &here.path().join("tree"));
    assert!(!part.exists());
    assert_eq!(inode(&here.path().join("tree/x/small3")), small, "complete files are skipped");
    let get = d.log.wait_for(" get path=\"tree/x/y-big\"", WAIT).unwrap();
    assert!(get.contains(" get path="), "{get}");
}

#[test]
fn the_session_takes_tree_lines() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    make_tree(&here.path().join("tree"), 100_000);
    let mut cmd = d.ferry();
    cmd.current_dir(here.path()).arg(&t);
    let out = run_with_input(cmd, b"put -r tree remote\nget -r remote back\nls -R remote\necho done\n");
    assert_status(&out, 0);
    diff_r(&here.path().join("tree"), &d.path("remote"));
    diff_r(&here.path().join("tree"), &here.path().join("back"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(" a/b/c/deep.bin\n") && stdout.ends_with("done\n"), "{stdout}");
}

#[test]
fn fan_out_puts_a_tree_to_every_host_and_gets_each_into_dir_host() {
    let a = Daemon::start_on("127.0.0.2:0", None, &[]);
    let b = Daemon::start_on("127.0.0.3:0", Some(&a), &[]);
    let here = tempfile::tempdir().unwrap();
    make_tree(&here.path().join("tree"), 200_000);
    let all = format!("{},{}", a.target(), b.target());
    let out = ferry_in(&a, here.path(), &["put", "-r", "-H", &all, "tree", "dst"]);
    assert_status(&out, 0);
    diff_r(&here.path().join("tree"), &a.path("dst"));
    diff_r(&here.path().join("tree"), &b.path("dst"));
    // Again: `dst` exists now, so the tree goes in as dst/tree. One host
    // refuses one file: its line names the host and the path.
    fs::create_dir_all(b.path("dst/tree/zero/occupied")).unwrap();
    let out = ferry_in(&a, here.path(), &["put", "-r", "-H", &all, "tree", "dst"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{}: zero: ", b.target())) && !err.contains(&format!("{}: zero", a.target())), "{err}");
    fs::create_dir(here.path().join("got")).unwrap();
    let out = ferry_in(&a, here.path(), &["get", "-r", "-H", &all, "dst", "got"]);
    assert_status(&out, 0);
    diff_r(&a.path("dst"), &here.path().join(format!("got/{}/dst", a.target())));
    diff_r(&b.path("dst"), &here.path().join(format!("got/{}/dst", b.target())));
}

#[test]
fn c_resumes_a_copy_made_under_a_new_name_in_place() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("big");
    fs::create_dir_all(src.join("s")).unwrap();
    for i in 0..6 {
        fs::write(src.join(format!("s/f{i}")), random(3000 + i)).unwrap();
    }
    // put -r big big2, cut: big2 exists on the server with files missing.
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", &t, "big", "big2"]), 0);
    fs::remove_file(d.path("big2/s/f4")).unwrap();
    fs::remove_file(d.path("big2/s/f5")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", "-c", &t, "big", "big2"]), 0);
    diff_r(&src, &d.path("big2"));
    assert!(!d.path("big2/big").exists(), "-c resumes big2 in place, no nested copy");
    // A copy that went inside an existing directory resumes there.
    fs::create_dir(d.path("into")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", &t, "big", "into"]), 0);
    fs::remove_file(d.path("into/big/s/f0")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", "-c", &t, "big", "into"]), 0);
    diff_r(&src, &d.path("into/big"));
    assert_eq!(fs::read_dir(d.path("into")).unwrap().count(), 1);

    // get -r big2 nn, cut; get -r -c resumes nn in place; again only checks.
    assert_status(&ferry_in(&d, here.path(), &["get", "-r", &t, "big2", "nn"]), 0);
    fs::remove_file(here.path().join("nn/s/f2")).unwrap();
    fs::write(here.path().join("nn/s/f3.part"), b"").unwrap();
    fs::remove_file(here.path().join("nn/s/f3")).unwrap();
    assert_status(&ferry_in(&d, here.path(), &["get", "-r", "-c", &t, "big2", "nn"]), 0);
    diff_r(&src, &here.path().join("nn"));
    let kept = inode(&here.path().join("nn/s/f1"));
    assert_status(&ferry_in(&d, here.path(), &["get", "-r", "-c", &t, "big2", "nn"]), 0);
    diff_r(&src, &here.path().join("nn"));
    assert_eq!(inode(&here.path().join("nn/s/f1")), kept, "a finished copy is only checked");
    // The session line follows the same rule.
    fs::remove_file(here.path().join("nn/s/f0")).unwrap();
    let mut cmd = d.ferry();
    cmd.current_dir(here.path()).arg(&t);
    assert_status(&run_with_input(cmd, b"get -r -c big2 nn\n"), 0);
    diff_r(&src, &here.path().join("nn"));
}

#[test]
fn a_trailing_slash_names_a_directory_to_land_in_and_missing_parents_are_made() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("small");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    // put -r small slash/: slash/small, as put f newd/ makes newd/f.
    assert_status(&ferry_in(&d, here.path(), &["put", "-r", &t, "small", "slash/"]), 0);
    diff_r(&src, &d.path("slash/small"));
    assert_status(&ferry_in(&d, here.path(), &["get", "-r", &t, "slash/small", "gslash/"]), 0);
    diff_r(&src, &here.path().join("gslash/small"));
    // get -r into a/b/c: the missing a/b are made, c is the copy.
    assert_status(&ferry_in(&d, here.path(), &["get", "-r", &t, "slash/small", "a/b/c"]), 0);
    diff_r(&src, &here.path().join("a/b/c"));
    // A file in the way of the parents: the tree fails, named, status 1.
    fs::write(here.path().join("plain"), b"").unwrap();
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "slash/small", "plain/x/y"]);
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("plain/x/y: "), "{}", text(&out.stderr));
    if unsafe { libc::geteuid() } != 0 {
        let ro = here.path().join("ro");
        fs::create_dir(&ro).unwrap();
        chmod(&ro, 0o555);
        let out = ferry_in(&d, here.path(), &["get", "-r", &t, "slash/small", "ro/x/y"]);
        assert_status(&out, 1);
        assert!(text(&out.stderr).contains("ermission denied"), "{}", text(&out.stderr));
    }
}

/// ferryd without the capabilities that let root read any directory
/// (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`): a mode-000 directory is
/// unreadable to it, as to a ferryd running as nobody. Non-root: as is.
fn start_without_dac_override() -> Daemon {
    Daemon::start_custom(&[], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                for cap in [1, 2] {
                    // CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2: out of the
                    // bounding set, so root's exec does not get them.
                    if libc::geteuid() == 0 && libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            })
        };
    })
}

#[test]
fn an_unreadable_server_directory_is_an_error_for_that_entry_and_status_1() {
    let d = start_without_dac_override();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path("tree/closed")).unwrap();
    fs::write(d.path("tree/closed/secret"), b"s").unwrap();
    fs::write(d.path("tree/open"), b"o").unwrap();
    chmod(&d.path("tree/closed"), 0o000);
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree"]);
    chmod(&d.path("tree/closed"), 0o755);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("ferry: closed: ") && err.contains("permission denied (permission-denied)"), "{err}");
    assert_eq!(fs::read(here.path().join("tree/open")).unwrap(), b"o", "the rest arrives");
    chmod(&d.path("tree/closed"), 0o000);
    let out = ferry_in(&d, here.path(), &["ls", "-R", &t, "tree"]);
    assert_status(&out, 1);
    assert!(text(&out.stdout).contains(" closed\n") && text(&out.stderr).contains("closed: "), "{}", text(&out.stderr));
    let out = ferry_in(&d, here.path(), &["ls", "-R", "--json", &t, "tree"]);
    assert_status(&out, 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let closed = v.as_array().unwrap().iter().find(|e| e["name"] == "closed").unwrap();
    assert_eq!(closed["error"]["code"], "permission-denied");
    chmod(&d.path("tree/closed"), 0o755);
}

#[test]
fn failing_names_are_escaped_once_and_bytes_that_are_not_utf8_show_as_octal() {
    use std::os::unix::ffi::OsStrExt;
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("bad\u{1b}\nname"), b"x").unwrap();
    fs::write(src.join(std::ffi::OsStr::from_bytes(b"n\xff")), b"y").unwrap();
    fs::create_dir_all(d.path("tree/bad\u{1b}\nname/occupied")).unwrap();
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.contains("ferry: bad\\033\\nname: ") && !err.contains("\\\\033"), "{err}");
    assert!(err.contains("ferry: tree/n\\377: the name is not UTF-8") || err.contains("ferry: n\\377: the name is not UTF-8"), "{err}");
    // A get of a server name that is not UTF-8.
    fs::write(d.path("tree").join(std::ffi::OsStr::from_bytes(b"s\xfe")), b"z").unwrap();
    let out = ferry_in(&d, here.path(), &["get", "-r", &t, "tree", "back"]);
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("ferry: s\\376: the name is not UTF-8"), "{}", text(&out.stderr));
}

#[test]
fn ls_r_of_a_file_prints_its_line_and_a_missing_path_its_code() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path("small")).unwrap();
    fs::write(d.path("small/f"), b"abc").unwrap();
    let out = ferry_in(&d, here.path(), &["ls", "-R", &t, "small/f"]);
    assert_status(&out, 0);
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));
    assert!(text(&out.stdout).trim_end().ends_with("small/f") || text(&out.stdout).trim_end().ends_with(" f"), "{}", text(&out.stdout));
    let plain = ferry_in(&d, here.path(), &["ls", &t, "small/f"]);
    assert_eq!(out.stdout, plain.stdout, "as plain ls prints it");
    let out = ferry_in(&d, here.path(), &["ls", "-R", &t, "nonexist"]);
    assert_status(&out, 1);
    assert!(text(&out.stderr).contains("(not-found)"), "{}", text(&out.stderr));
}

#[test]
fn a_read_only_server_stops_the_tree_with_one_message() {
    let d = Daemon::start_with(&["--read-only"]);
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    make_tree(&here.path().join("tree"), 1000);
    let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree"]);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert_eq!(err.lines().filter(|l| l.contains("read-only")).count(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn put_c_without_r_is_a_usage_error_that_says_so() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    fs::write(here.path().join("f"), b"f").unwrap();
    let out = ferry_in(&d, here.path(), &["put", "-c", &d.target(), "f"]);
    assert_status(&out, 2);
    assert!(text(&out.stderr).contains("put -r -c") && !text(&out.stderr).contains("required arguments"), "{}", text(&out.stderr));
}

#[test]
fn closed_stdout_is_an_error_255_not_silence() {
    let d = Daemon::start();
    fs::write(d.path("f"), b"f").unwrap();
    for args in [vec!["ls", "-R", &d.target()], vec!["run", &d.target(), "--", "echo", "x"], vec!["ls", &d.target()]] {
        let mut cmd = d.ferry();
        cmd.args(&args).stdin(Stdio::null()).stderr(Stdio::piped());
        use std::os::unix::process::CommandExt;
        // SAFETY: close is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                Ok(())
            })
        };
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(255), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("stdout"), "{args:?}: {}", text(&out.stderr));
    }
    // /dev/null (opened read-write, as subprocess.DEVNULL does) is not closed.
    let out = d.ferry().args(["ls", "-R", &d.target()]).stdin(Stdio::null()).stdout(Stdio::null()).output().unwrap();
    assert_status(&out, 0);
}

#[test]
fn tree_fan_out_prints_the_fan_out_summary_and_json_and_leaves_no_dir_for_a_failed_host() {
    let a = Daemon::start_on("127.0.0.2:0", None, &[]);
    let here = tempfile::tempdir().unwrap();
    fs::create_dir_all(a.path("t/s")).unwrap();
    fs::write(a.path("t/s/f"), b"f").unwrap();
    // A host nobody listens on: 127.0.0.4 on a's port (a listens on .2 only).
    let dead = format!("127.0.0.4:{}", a.addr.port());
    let all = format!("{},{dead}", a.target());
    fs::create_dir(here.path().join("got")).unwrap();
    let out = ferry_in(&a, here.path(), &["get", "-r", "-H", &all, "t", "got"]);
    assert_status(&out, 255);
    let err = text(&out.stderr);
    assert!(err.contains("ferry: 2 hosts: 1 ok, 1 unreachable\n"), "{err}");
    assert!(err.contains(&format!("ferry: unreachable: {dead}: ")), "{err}");
    assert_eq!(fs::read(here.path().join(format!("got/{}/t/s/f", a.target()))).unwrap(), b"f");
    assert!(!here.path().join(format!("got/{dead}")).exists(), "no empty directory for the failed host");
    // -c with -r -H resumes each host's tree inside dir/HOST (not in place).
    fs::remove_file(here.path().join(format!("got/{}/t/s/f", a.target()))).unwrap();
    let out = ferry_in(&a, here.path(), &["get", "-r", "-c", "-H", &a.target(), "t", "got"]);
    assert_status(&out, 0);
    assert_eq!(fs::read(here.path().join(format!("got/{}/t/s/f", a.target()))).unwrap(), b"f");
    // --json: one object per host.
    let out = ferry_in(&a, here.path(), &["put", "-r", "--json", "-H", &all, "got", "up"]);
    assert_status(&out, 255);
    let mut objs: Vec<serde_json::Value> = text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    objs.sort_by_key(|v| v["host"].as_str().unwrap().to_string());
    assert_eq!(objs.len(), 2, "{}", text(&out.stdout));
    assert_eq!((objs[0]["status"].as_str(), objs[0]["failed_entries"].as_u64()), (Some("ok"), Some(0)));
    assert!(objs[0]["entries"].as_u64().unwrap() >= 4);
    assert_eq!(objs[1]["status"], "unreachable");
}

/// `ferry ARGS` in `cwd` with stderr on a pseudo-terminal `cols` wide:
/// what it wrote there, each line as the terminal shows it (escape
/// sequences out, split at `\r` and `\n`), and its status.
fn ferry_on_a_narrow_tty(d: &Daemon, cwd: &Path, cols: u16, args: &[&str]) -> (Vec<String>, Option<i32>) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize { ws_row: 24, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty");
    let (master, slave) = unsafe { (fs::File::from(OwnedFd::from_raw_fd(master)), OwnedFd::from_raw_fd(slave)) };
    let mut cmd = d.ferry();
    cmd.current_dir(cwd).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = std::io::Read::read_to_end(&mut &master, &mut all);
        all
    });
    let status = wait_child(&mut child, "ferry did not finish");
    let raw = text(&reader.join().unwrap());
    let plain = strip_ansi(&raw);
    (plain.split(['\r', '\n']).map(str::to_string).filter(|l| !l.is_empty()).collect(), status.code())
}

#[test]
fn the_tree_progress_fits_a_narrow_terminal() {
    let d = Daemon::start();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("a-rather-long-directory-name-for-a-tree");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), random(200_000)).unwrap();
    }
    for cols in [40u16, 100] {
        let (lines, code) = ferry_on_a_narrow_tty(&d, here.path(), cols, &["put", "-r", &d.target(), "a-rather-long-directory-name-for-a-tree", &format!("c{cols}")]);
        assert_eq!(code, Some(0), "{lines:?}");
        assert!(!lines.is_empty());
        for l in &lines {
            assert!(l.chars().count() <= cols as usize, "{cols} columns: {l:?} in {lines:?}");
            assert!(!l.contains("[]"), "{l:?}");
        }
        assert!(lines.last().unwrap().contains("20 files"), "{lines:?}");
    }
}

/// The headers `ferry -v` traced as sent (`> {...}` lines).
fn sent_headers(stderr: &[u8]) -> Vec<serde_json::Value> {
    text(stderr)
        .lines()
        .filter_map(|l| l.find("> {").map(|i| &l[i + 2..]))
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

#[test]
fn a_tree_follows_the_negotiated_digest_blake3_by_default_with_a_trailer_for_big_files() {
    let d = Daemon::start();
    let t = d.target();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    make_tree(&src, 3 * 1024 * 1024 + 1);
    for (flag, want) in [(None, "blake3"), (Some("sha256"), "sha256")] {
        let mut args = vec!["-v", "put", "-r"];
        args.extend(flag.map(|f| ["--digest", f]).into_iter().flatten());
        let up = format!("up-{want}");
        args.extend([t.as_str(), "tree", up.as_str()]);
        let out = ferry_in(&d, here.path(), &args);
        assert_status(&out, 0);
        diff_r(&src, &d.path(&up));
        let sent = sent_headers(&out.stderr);
        let puts: Vec<_> = sent.iter().filter(|h| h["type"] == "put").collect();
        assert_eq!(puts.len(), 5, "{sent:?}");
        for p in &puts {
            let big = p["path"].as_str().unwrap().ends_with("big.bin");
            if big {
                // Hashed while sent, its digest after the body.
                assert_eq!((p["digest"].as_str(), p["trailer"].as_bool()), (Some(want), Some(true)), "{p}");
            } else {
                // Batched small files carry their digest in the header.
                assert!(p[want].as_str().is_some_and(|h| h.len() == 64) && p.get("trailer").is_none(), "{p}");
            }
        }
        let trailers: Vec<_> = sent.iter().filter(|h| h["type"] == "trailer").collect();
        assert_eq!(trailers.len(), 1, "{sent:?}");
        assert!(trailers[0][want].as_str().is_some_and(|h| h.len() == 64), "{:?}", trailers[0]);

        // get -r asks for, and checks, the same digest.
        let back = format!("back-{want}");
        let mut args = vec!["-v", "get", "-r"];
        args.extend(flag.map(|f| ["--digest", f]).into_iter().flatten());
        args.extend([t.as_str(), up.as_str(), back.as_str()]);
        let out = ferry_in(&d, here.path(), &args);
        assert_status(&out, 0);
        diff_r(&src, &here.path().join(&back));
        let gets: Vec<_> = sent_headers(&out.stderr).into_iter().filter(|h| h["type"] == "get").collect();
        assert_eq!(gets.len(), 5);
        // sha256 is the default a request need not name.
        let named = |g: &serde_json::Value| g["digest"] == want || (want == "sha256" && g.get("digest").is_none());
        assert!(gets.iter().all(named), "{gets:?}");

        // -c compares in that digest too: nothing is sent again.
        let mut args = vec!["-v", "put", "-r", "-c"];
        args.extend(flag.map(|f| ["--digest", f]).into_iter().flatten());
        args.extend([t.as_str(), "tree", up.as_str()]);
        let up_tree = format!("{up}/tree");
        fs::create_dir_all(d.path(&up_tree)).unwrap();
        // Into the existing directory: the copy is up/tree, filled first.
        let out = ferry_in(&d, here.path(), &["put", "-r", &t, "tree", &up]);
        assert_status(&out, 0);
        let out = ferry_in(&d, here.path(), &args);
        assert_status(&out, 0);
        let sent = sent_headers(&out.stderr);
        assert!(!sent.iter().any(|h| h["type"] == "put"), "complete files are skipped: {sent:?}");
        let checks: Vec<_> = sent.iter().filter(|h| h["type"] == "get").collect();
        assert_eq!(checks.len(), 5, "{sent:?}");
        assert!(checks.iter().all(|g| named(g)), "{checks:?}");
    }
}

#[test]
fn a_tree_to_and_from_a_server_without_digests_goes_with_sha256_in_the_headers() {
    let (_dir, keys, key) = make_keys();
    let here = tempfile::tempdir().unwrap();
    let src = here.path().join("tree");
    make_tree(&src, 600_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = common::old_server(listener, key.clone(), Vec::new(), false);
    let mut ferry = Command::new(ferry_bin());
    ferry.env("FERRY_KEYS", &keys).current_dir(here.path()).args(["put", "-r", &target, "tree"]);
    let out = run_bounded(ferry, Duration::from_secs(60), "ferry put -r against the stub");
    assert_status(&out, 0);
    let seen = server.join().unwrap();
    let puts: Vec<_> = seen.iter().filter(|h| h["type"] == "put").collect();
    assert_eq!(puts.len(), 5, "{seen:?}");
    assert!(puts.iter().all(|p| p.get("trailer").is_none() && p.get("blake3").is_none() && p.get("digest").is_none()), "{puts:?}");
    assert!(!seen.iter().any(|h| h["type"] == "trailer"), "no trailer to an old server: {seen:?}");

    let file = random(400_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = common::old_server(listener, key, file.clone(), true);
    let mut ferry = Command::new(ferry_bin());
    ferry.env("FERRY_KEYS", &keys).current_dir(here.path()).args(["get", "-r", &target, "old", "got"]);
    let out = run_bounded(ferry, Duration::from_secs(60), "ferry get -r against the stub");
    assert_status(&out, 0);
    assert!(fs::read(here.path().join("got/f")).unwrap() == file, "checked with sha256 and kept");
    server.join().unwrap();
}

/// A tree whose big file changes while it is sent: the relay holds the
/// client's bytes back after 1 MiB of them (the rest of the 24 MiB file not
/// sent yet, the client blocked), the test rewrites the file's first byte
/// (its mtime was set in the past, so the change is seen whatever the
/// clock's grain), then lets it go on.
fn put_tree_with_a_change(to: std::net::SocketAddr, keys: &Path, digest: Option<&str>) -> (Output, tempfile::TempDir) {
    let here = tempfile::tempdir().unwrap();
    let tree = here.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("big"), random(24 << 20)).unwrap();
    set_mtime(&tree.join("big"), 1_000_000);
    fs::write(tree.join("sub/small.txt"), b"small\n").unwrap();
    let relay = pause::PausingRelay::start(to, 1 << 20);
    let mut ferry = Command::new(ferry_bin());
    ferry.env("FERRY_KEYS", keys).env_remove("FERRY_TRANSPORT").current_dir(here.path()).arg("put");
    if let Some(d) = digest {
        ferry.args(["--digest", d]);
    }
    ferry.args(["-r", &relay.target, "tree"]);
    let run = std::thread::spawn(move || run_bounded(ferry, Duration::from_secs(120), "ferry put -r through the relay"));
    relay.wait_paused();
    {
        use std::os::unix::fs::FileExt;
        fs::OpenOptions::new().write(true).open(tree.join("big")).unwrap().write_all_at(b"X", 0).unwrap();
    }
    relay.go_on();
    (run.join().unwrap(), here)
}

#[test]
fn a_file_that_changes_while_a_tree_is_put_is_named_as_changed_and_the_rest_arrives() {
    let d = Daemon::start();
    for digest in [None, Some("sha256"), Some("none")] {
        let _ = fs::remove_dir_all(d.path("tree"));
        let (out, _here) = put_tree_with_a_change(d.addr, &d.keys_path, digest);
        assert_status(&out, 1);
        let err = text(&out.stderr);
        let want = if digest == Some("none") { "ferry: big: changed while it was sent; stored as it was read" } else { "ferry: big: changed while it was sent; nothing stored" };
        assert!(err.lines().any(|l| l == want), "{digest:?}: {err}");
        assert!(!err.contains("mismatch"), "{digest:?}: {err}");
        assert_eq!(fs::read(d.path("tree/sub/small.txt")).unwrap(), b"small\n", "{digest:?}: the rest of the tree arrives");
        assert_eq!(d.path("tree/big").exists(), digest == Some("none"), "{digest:?}");
        eventually("no temp file left", WAIT, || temp_files(&d.path("tree")).is_empty());
    }
    // An older server checks the sha256 of the header: the client spoils
    // the last byte, so it refuses the file.
    let (_dir, keys, key) = make_keys();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let server = old_server(listener, key, Vec::new(), false);
    let (out, _here) = put_tree_with_a_change(to, &keys, None);
    assert_status(&out, 1);
    let err = text(&out.stderr);
    assert!(err.lines().any(|l| l == "ferry: big: changed while it was sent; nothing stored"), "{err}");
    let seen = server.join().unwrap();
    let puts: Vec<_> = seen.iter().filter(|h| h["type"] == "put").map(|h| h["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(puts, ["tree/big", "tree/sub/small.txt"], "{seen:?}");
}

/// `get -r` into a disk that fills up (RLIMIT_FSIZE on the client, with
/// SIGXFSZ ignored, so each write past 1 MiB fails with EFBIG as a full
/// disk's ENOSPC would): every big file is reported with its path, the small
/// ones around them still arrive, the status is 1, and the session keeps its
/// place in the stream (it used to lose it after the first failed write and
/// die with a protocol error, or wait for the server's idle timeout).
#[test]
fn get_r_into_a_full_disk_reports_each_file_and_goes_on() {
    use std::os::unix::process::CommandExt;
    let d = Daemon::start();
    fs::create_dir_all(d.path("full")).unwrap();
    for i in 1..=3 {
        fs::write(d.path(&format!("full/big{i}")), vec![i as u8; 3 << 20]).unwrap();
    }
    fs::write(d.path("full/small-a"), b"a").unwrap();
    fs::write(d.path("full/zz-small"), b"z").unwrap();
    for transport in ["--plaintext", "--tls"] {
        let here = tempfile::tempdir().unwrap();
        let mut cmd = d.ferry();
        cmd.current_dir(here.path()).args([transport, "-q", "get", "-r", &d.target(), "full", "copy"]);
        // SAFETY: signal and setrlimit in the child before exec touch nothing shared.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit { rlim_cur: 1 << 20, rlim_max: 1 << 20 };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let t = Instant::now();
        let out = run_with_input(cmd, b"");
        assert_status(&out, 1);
        assert!(t.elapsed() < Duration::from_secs(60), "{transport}: it did not wait for a timeout");
        let err = text(&out.stderr);
        for i in 1..=3 {
            assert!(err.lines().any(|l| l.contains(&format!("big{i}")) && l.contains("File too large")), "{transport}: {err}");
        }
        assert!(!err.contains("protocol error") && !err.contains("closed the connection"), "{transport}: {err}");
        assert_eq!(fs::read(here.path().join("copy/small-a")).unwrap(), b"a", "{transport}");
        assert_eq!(fs::read(here.path().join("copy/zz-small")).unwrap(), b"z", "{transport}");
        for i in 1..=3 {
            assert!(!here.path().join(format!("copy/big{i}")).exists(), "{transport}: no cut file under its name");
        }
    }
}
