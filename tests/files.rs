//! `get`, `put`, `list` and `stat` end to end, frame by frame, against the
//! real daemon: bytes and digests, confinement to the root, atomic puts that
//! leave nothing behind, and the limits.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Deterministic bytes that do not compress or repeat in short periods.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}

/// A `get` over a raw connection: (file header, body, done header).
fn get(c: &mut Raw, req: Value) -> Result<(Value, Vec<u8>, Value), Value> {
    c.send(req, b"");
    let (h, body) = c.frame();
    if h["type"] == "error" {
        return Err(h);
    }
    assert_eq!(h["type"], "file", "{h}");
    let (done, _) = c.frame();
    assert_eq!(done["type"], "done", "{done}");
    Ok((h, body, done))
}

#[test]
fn round_trips_are_byte_exact_with_matching_digests() {
    let d = Daemon::start();
    let mut c = d.authed();
    for (i, len) in [0usize, 1, 65535, 65536, 65537, 20 * 1024 * 1024].into_iter().enumerate() {
        let data = noise(len, i as u64 + 7);
        let name = format!("dir/f{len}");
        c.send(json!({"type":"put","path":name,"sha256":sha256_hex(&data),"id":i}), &data);
        let (ok, _) = c.frame();
        assert_eq!(ok, json!({"type":"ok","path":name,"file_size":len,"digest":"sha256","sha256":sha256_hex(&data),"id":i}));
        assert!(std::fs::read(d.path(&name)).unwrap() == data, "the file on disk is the body ({len} bytes)");

        let (file, body, done) = get(&mut c, json!({"type":"get","path":name,"id":i})).unwrap();
        assert_eq!(file["file_size"], len);
        assert_eq!(file["size"].as_u64().unwrap_or(0), len as u64);
        assert_eq!(file["offset"], 0);
        assert_eq!(file["id"], i);
        assert_eq!(file["mode"], 0o644);
        assert!(body == data, "get returns the bytes ({len})");
        assert_eq!(done, json!({"type":"done","digest":"sha256","sha256":sha256_hex(&data),"id":i}));

        let (_, body, done) = get(&mut c, json!({"type":"get","path":name,"digest":"none"})).unwrap();
        assert!(body == data);
        assert_eq!(done, json!({"type":"done","digest":"none"}), "digest none: no hex");
    }
    assert!(temp_files(d.root.path()).is_empty());
}

#[test]
fn a_resumed_get_sends_the_tail_and_digests_the_whole_file() {
    let d = Daemon::start();
    let data = noise(300_000, 3);
    write_file(&d.path("f"), &data);
    let mut c = d.authed();
    for offset in [0usize, 1, 123_457, 299_999, 300_000] {
        let (file, body, done) = get(&mut c, json!({"type":"get","path":"f","offset":offset})).unwrap();
        assert_eq!(file["offset"], offset);
        assert_eq!(file["file_size"], 300_000);
        assert!(body == data[offset..], "offset {offset}");
        assert_eq!(done["sha256"], sha256_hex(&data), "the digest covers the whole file");
    }
    let (e, _) = {
        c.send(json!({"type":"get","path":"f","offset":300_001}), b"");
        c.frame()
    };
    assert_eq!(e["code"], "bad-request", "{e}");
    c.ping();
}

#[test]
fn paths_never_leave_the_root() {
    let d = Daemon::start();
    let outside = tempfile::tempdir().unwrap();
    write_file(&outside.path().join("secret"), b"secret");
    std::fs::create_dir(d.path("sub")).unwrap();
    write_file(&d.path("sub/ok"), b"ok");
    symlink("/", d.path("slash")).unwrap();
    symlink(outside.path().join("secret"), d.path("outfile")).unwrap();
    symlink(outside.path(), d.path("outdir")).unwrap();
    symlink("../sub/ok", d.path("sub/up")).unwrap();
    let mut c = d.authed();
    let bad = ["../x", "/etc/passwd", "a/../../x", "sub/../../x", "slash", "slash/etc/passwd", "outfile", "outdir/secret", "a\0b"];
    for path in bad {
        c.send(json!({"type":"get","path":path}), b"");
        assert_eq!(c.frame().0["code"], "bad-path", "get {path:?}");
        c.send(json!({"type":"stat","path":path}), b"");
        assert_eq!(c.frame().0["code"], "bad-path", "stat {path:?}");
        c.send(json!({"type":"list","path":path}), b"");
        assert_eq!(c.frame().0["code"], "bad-path", "list {path:?}");
    }
    for path in ["../x", "/tmp/ferry-put-escape", "slash/tmp/ferry-put-escape", "outdir/new", "outfile", "a\0b"] {
        c.send(json!({"type":"put","path":path}), b"payload");
        let (e, _) = c.frame();
        // "outfile" is a link in the root: a put replaces the link itself.
        if path == "outfile" {
            assert_eq!(e["type"], "ok", "{e}");
            continue;
        }
        assert_eq!(e["code"], "bad-path", "put {path:?}: {e}");
    }
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"secret");
    assert!(!Path::new("/tmp/ferry-put-escape").exists());
    assert!(!outside.path().join("new").exists());
    assert!(std::fs::symlink_metadata(d.path("outfile")).unwrap().is_file());
    // Links that stay inside are fine.
    let (_, body, _) = get(&mut c, json!({"type":"get","path":"sub/up"})).unwrap();
    assert_eq!(body, b"ok");
    c.ping();
}

#[test]
fn a_rejected_put_still_consumes_its_body() {
    let d = Daemon::start();
    let mut c = d.authed();
    // The body looks like a frame: if it were parsed, this would be a ping.
    let body = frame(json!({"type":"ping","id":"smuggled"}), b"");
    c.send(json!({"type":"put","path":"../escape","id":1}), &body);
    let (e, _) = c.frame();
    assert_eq!(e["code"], "bad-path");
    assert_eq!(e["id"], 1);
    c.ping();
}

#[test]
fn errors_name_what_is_wrong() {
    let d = Daemon::start();
    std::fs::create_dir(d.path("dir")).unwrap();
    write_file(&d.path("file"), b"x");
    let mut c = d.authed();
    let cases = [
        (json!({"type":"get","path":"missing"}), "not-found"),
        (json!({"type":"get","path":"dir"}), "is-a-directory"),
        (json!({"type":"get","path":"file/x"}), "not-a-directory"),
        (json!({"type":"list","path":"file"}), "not-a-directory"),
        (json!({"type":"stat","path":"missing"}), "not-found"),
        (json!({"type":"put","path":"dir"}), "is-a-directory"),
        (json!({"type":"put","path":"."}), "bad-path"),
        (json!({"type":"get","path":"file","digest":"md5"}), "bad-request"),
        (json!({"type":"data","size":0}), "bad-request"),
    ];
    for (req, code) in cases {
        c.send(req.clone(), b"");
        let (e, _) = c.frame();
        assert_eq!(e["code"], code, "{req}: {e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    c.ping();
}

#[test]
fn put_creates_parents_keeps_modes_and_replaces_atomically() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"a/b/c/run.sh","mode":0o750}), b"#!/bin/sh\n");
    assert_eq!(c.frame().0["type"], "ok");
    let meta = std::fs::metadata(d.path("a/b/c/run.sh")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
    // Set-id bits are not honoured.
    c.send(json!({"type":"put","path":"suid","mode":0o4755}), b"x");
    assert_eq!(c.frame().0["type"], "ok");
    assert_eq!(std::fs::metadata(d.path("suid")).unwrap().permissions().mode() & 0o7777, 0o755);
    // Replacing a file without a mode keeps the old file's mode.
    std::fs::set_permissions(d.path("a/b/c/run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    c.send(json!({"type":"put","path":"a/b/c/run.sh"}), b"new");
    assert_eq!(c.frame().0["type"], "ok");
    assert_eq!(std::fs::read(d.path("a/b/c/run.sh")).unwrap(), b"new");
    assert_eq!(std::fs::metadata(d.path("a/b/c/run.sh")).unwrap().permissions().mode() & 0o7777, 0o700);
}

#[test]
fn a_digest_mismatch_writes_nothing() {
    let d = Daemon::start();
    write_file(&d.path("f"), b"old contents");
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"f","sha256":sha256_hex(b"something else"),"id":"p"}), b"new contents");
    let (e, _) = c.frame();
    assert_eq!(e["code"], "digest-mismatch", "{e}");
    assert_eq!(e["id"], "p");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old contents");
    assert!(temp_files(d.root.path()).is_empty());
    c.ping();
}

#[test]
fn streaming_put_takes_data_frames_until_an_empty_one() {
    let d = Daemon::start();
    let data = noise(700_000, 11);
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"streamed","stream":true,"sha256":sha256_hex(&data),"id":5}), b"");
    for chunk in data.chunks(100_003) {
        c.send(json!({"type":"data"}), chunk);
    }
    c.send(json!({"type":"data"}), b"");
    let (ok, _) = c.frame();
    assert_eq!(ok, json!({"type":"ok","path":"streamed","file_size":700_000,"digest":"sha256","sha256":sha256_hex(&data),"id":5}));
    assert!(std::fs::read(d.path("streamed")).unwrap() == data);

    // Another request before the empty data frame fails the put, then is served.
    c.send(json!({"type":"put","path":"cut","stream":true}), b"");
    c.send(json!({"type":"data"}), b"partial");
    c.send(json!({"type":"ping","id":"after"}), b"");
    assert_eq!(c.frame().0["code"], "bad-request");
    assert_eq!(c.frame().0, json!({"type":"pong","id":"after"}));
    assert!(!d.path("cut").exists());
    assert!(temp_files(d.root.path()).is_empty());
}

#[test]
fn read_only_refuses_puts_but_serves_files() {
    let d = Daemon::start_with(&["--read-only"]);
    write_file(&d.path("f"), b"data");
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"new"}), b"body");
    assert_eq!(c.frame().0["code"], "read-only");
    c.send(json!({"type":"put","path":"new2","stream":true}), b"");
    c.send(json!({"type":"data"}), b"body");
    c.send(json!({"type":"data"}), b"");
    assert_eq!(c.frame().0["code"], "read-only");
    assert!(!d.path("new").exists() && !d.path("new2").exists());
    assert_eq!(get(&mut c, json!({"type":"get","path":"f"})).unwrap().1, b"data");
    c.ping();
}

#[test]
fn max_upload_refuses_before_writing() {
    let d = Daemon::start_with(&["--max-upload", "1000"]);
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"big"}), &[7u8; 1001]);
    assert_eq!(c.frame().0["code"], "too-large");
    c.send(json!({"type":"put","path":"fits"}), &[7u8; 1000]);
    assert_eq!(c.frame().0["type"], "ok");
    // A streaming put is cut off when it crosses the limit; the rest is dropped.
    c.send(json!({"type":"put","path":"streamed","stream":true}), b"");
    for _ in 0..3 {
        c.send(json!({"type":"data"}), &[1u8; 600]);
    }
    c.send(json!({"type":"data"}), b"");
    assert_eq!(c.frame().0["code"], "too-large");
    c.ping();
    assert!(!d.path("big").exists() && !d.path("streamed").exists());
    assert!(temp_files(d.root.path()).is_empty());
}

#[test]
fn list_and_stat_describe_entries() {
    let d = Daemon::start();
    std::fs::create_dir(d.path("dir")).unwrap();
    write_file(&d.path("b.txt"), b"12345");
    std::fs::set_permissions(d.path("b.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    write_file(&d.path("a.txt"), b"");
    symlink("b.txt", d.path("link")).unwrap();
    let mtime = std::fs::metadata(d.path("b.txt")).unwrap().modified().unwrap();
    let mtime = mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut c = d.authed();
    c.send(json!({"type":"list","id":1}), b"");
    let (h, body) = c.frame();
    assert_eq!(h["type"], "listing");
    assert_eq!(h["path"], ".");
    assert_eq!(h["id"], 1);
    let entries: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.txt", "b.txt", "dir", "link"], "sorted by name");
    assert_eq!(entries[1], json!({"name":"b.txt","kind":"file","file_size":5,"mode":0o640,"mtime":mtime}));
    assert_eq!(entries[2]["kind"], "dir");
    assert_eq!(entries[3]["kind"], "link");

    c.send(json!({"type":"stat","path":"b.txt"}), b"");
    let (h, body) = c.frame();
    assert!(body.is_empty());
    assert_eq!(h, json!({"type":"stat","path":"b.txt","kind":"file","file_size":5,"mode":0o640,"mtime":mtime}));
    c.send(json!({"type":"stat","path":"link"}), b"");
    assert_eq!(c.frame().0["kind"], "file", "stat follows links that stay inside");
    c.send(json!({"type":"stat","path":"dir"}), b"");
    assert_eq!(c.frame().0["kind"], "dir");
    c.send(json!({"type":"list","path":"dir"}), b"");
    let (h, body) = c.frame();
    assert_eq!(h["path"], "dir");
    assert_eq!(body, b"[]");
}

#[test]
fn a_client_gone_mid_put_leaves_no_file_and_no_temp_file() {
    let d = Daemon::start();
    write_file(&d.path("f"), b"old");
    let mut c = d.authed();
    let mut head = frame(json!({"type":"put","path":"f"}), &[0u8; 100_000]);
    head.truncate(head.len() - 50_000);
    c.send_bytes(&head);
    // The temporary file exists while the body comes in.
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    drop(c);
    assert!(d.log.wait_for("closed: peer closed", WAIT).is_some(), "{}", d.log.text());
    assert!(temp_files(d.root.path()).is_empty(), "the temp file is removed");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
}

#[test]
fn sigterm_mid_put_removes_the_temp_file() {
    let mut d = Daemon::start_with(&["--drain-timeout", "1"]);
    write_file(&d.path("f"), b"old");
    let mut c = d.authed();
    let mut bytes = frame(json!({"type":"put","path":"f"}), &[0u8; 100_000]);
    bytes.truncate(bytes.len() - 50_000);
    c.send_bytes(&bytes);
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(WAIT), Some(0));
    assert!(temp_files(d.root.path()).is_empty(), "the temp file is removed");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
}

#[test]
fn sigkill_mid_put_leaves_the_old_file_intact_and_the_next_start_cleans_up() {
    let mut d = Daemon::start();
    write_file(&d.path("f"), b"old");
    let mut c = d.authed();
    let mut bytes = frame(json!({"type":"put","path":"f"}), &[9u8; 100_000]);
    bytes.truncate(bytes.len() - 50_000);
    c.send_bytes(&bytes);
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    d.signal(libc::SIGKILL);
    d.wait_exit(WAIT);
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
    assert_eq!(temp_files(d.root.path()).len(), 1, "a killed daemon leaves its temp file");
    // The next start on the same root removes it.
    let mut next = std::process::Command::new(ferryd_bin())
        .args(["--listen", "127.0.0.1:0", "--config", "/dev/null", "--root"])
        .arg(d.root.path())
        .arg("--keys")
        .arg(&d.keys_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = capture(next.stderr.take().unwrap());
    let line = log.wait_for("listening on", WAIT);
    let _ = next.kill();
    let _ = next.wait();
    assert!(line.is_some(), "{}", log.text());
    assert!(log.text().contains("removed 1 temporary file(s)"), "{}", log.text());
    assert!(temp_files(d.root.path()).is_empty());
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
}

#[test]
fn a_full_disk_fails_the_put_and_keeps_the_connection() {
    // RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG.
    let d = Daemon::start_custom(&[], |cmd| limit(cmd, libc::RLIMIT_FSIZE, 1 << 20));
    write_file(&d.path("f"), b"old");
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"f","id":"big"}), &noise(3 << 20, 5));
    let (e, _) = c.frame();
    assert_eq!(e["code"], "no-space", "{e}");
    assert_eq!(e["id"], "big");
    c.ping();
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
    assert!(temp_files(d.root.path()).is_empty());
    // The daemon still writes what fits.
    c.send(json!({"type":"put","path":"small"}), b"fits");
    assert_eq!(c.frame().0["type"], "ok");
}

#[test]
fn a_component_swapped_for_a_link_mid_put_cannot_escape() {
    let d = Daemon::start();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path("d")).unwrap();
    let mut c = d.authed();
    let mut bytes = frame(json!({"type":"put","path":"d/f"}), &[1u8; 100_000]);
    let rest = bytes.split_off(bytes.len() - 50_000);
    c.send_bytes(&bytes);
    eventually("the temp file appears", WAIT, || temp_files(d.root.path()).len() == 1);
    std::fs::rename(d.path("d"), d.path("moved")).unwrap();
    symlink(outside.path(), d.path("d")).unwrap();
    c.send_bytes(&rest);
    assert_eq!(c.frame().0["type"], "ok");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was written outside");
    assert_eq!(std::fs::read(d.path("moved/f")).unwrap().len(), 100_000, "the file went where the put began");
    // A new request through the link is refused.
    c.send(json!({"type":"put","path":"d/g"}), b"x");
    assert_eq!(c.frame().0["code"], "bad-path");
}

#[test]
fn a_ping_is_answered_while_another_client_pulls_a_gibibyte() {
    let d = Daemon::start();
    let f = std::fs::File::create(d.path("big")).unwrap();
    f.set_len(1 << 30).unwrap();
    let mut puller = d.authed();
    let t = std::thread::spawn(move || {
        use std::io::Read;
        puller.send(json!({"type":"get","path":"big","digest":"none"}), b"");
        let mut len = [0u8; 4];
        puller.sock.read_exact(&mut len).unwrap();
        let mut h = vec![0u8; u32::from_be_bytes(len) as usize];
        puller.sock.read_exact(&mut h).unwrap();
        let mut left = 1u64 << 30;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = puller.sock.read(&mut buf[..(left.min(1 << 20) as usize)]).unwrap();
            assert!(n > 0, "the body was cut short");
            left -= n as u64;
        }
        assert_eq!(puller.frame().0, json!({"type":"done","digest":"none"}));
    });
    let mut c = d.authed();
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    // Ping for as long as the transfer runs (bounded by the count).
    while !t.is_finished() && rounds < 2000 {
        let start = Instant::now();
        c.send(json!({"type":"ping"}), b"");
        assert_eq!(c.frame().0["type"], "pong");
        worst = worst.max(start.elapsed());
        rounds += 1;
    }
    t.join().unwrap();
    assert!(rounds > 0);
    // Generous for two busy cores; a reactor that served the get to the end
    // before the ping would take as long as the whole transfer.
    assert!(worst < Duration::from_millis(500), "worst ping during the get: {worst:?} over {rounds} pings");
}
