//! Fault injection: the system under ferryd fails (a full disk, no file
//! descriptors left, the keys file gone at a reload) and ferryd reports it,
//! keeps what it had and goes on serving. SIGKILL mid-put and a plain full
//! disk mid-put are in tests/files.rs, accept under EMFILE in
//! tests/adversarial.rs.

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

/// Authenticates `key` on a fresh connection: the reply's type.
fn try_auth(d: &Daemon, key: &ferry::proto::auth::Key) -> String {
    let mut c = d.raw();
    let cn = ferry::proto::auth::to_hex(&ferry::proto::auth::fresh_nonce());
    let mac = ferry::proto::auth::client_mac(key.secret.as_bytes(), &c.server_nonce, &cn);
    c.send(json!({"type":"auth","key_id":key.id,"nonce":cn,"mac":mac}), b"");
    let r = c.frame().0;
    if r["type"] == "welcome" {
        "welcome".into()
    } else {
        r["code"].as_str().unwrap_or("?").into()
    }
}

/// Sends HUP and waits for the n-th line containing `needle`.
fn hup_and_wait(d: &Daemon, needle: &str, n: usize) -> String {
    d.signal(libc::SIGHUP);
    eventually(&format!("{needle} (x{n})"), WAIT, || d.log.count(needle) >= n);
    d.log.text().lines().filter(|l| l.contains(needle)).nth(n - 1).unwrap().to_string()
}

#[test]
fn a_keys_file_that_disappears_at_hup_keeps_the_old_keys() {
    let d = Daemon::start();
    let mut held = d.authed();
    let saved = std::fs::read(&d.keys_path).unwrap();
    std::fs::remove_file(&d.keys_path).unwrap();
    let line = hup_and_wait(&d, "keeping the running configuration", 1);
    assert!(line.contains("error") && line.contains(&d.keys_path.display().to_string()), "{line}");
    assert_eq!(try_auth(&d, &d.key), "welcome", "the old key still authenticates");
    held.ping();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"echo served"}), b"");
    assert_eq!(c.exec_output().0, b"served\n");

    // Broken in other ways: empty, group-readable, garbage. Each is refused.
    std::fs::write(&d.keys_path, b"").unwrap();
    std::fs::set_permissions(&d.keys_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    hup_and_wait(&d, "keeping the running configuration", 2);
    std::fs::write(&d.keys_path, &saved).unwrap();
    std::fs::set_permissions(&d.keys_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = hup_and_wait(&d, "keeping the running configuration", 3);
    assert!(line.contains("readable by group or others"), "{line}");
    std::fs::set_permissions(&d.keys_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&d.keys_path, b"only-an-id\n").unwrap();
    hup_and_wait(&d, "keeping the running configuration", 4);
    assert_eq!(try_auth(&d, &d.key), "welcome");
    assert!(!d.log.text().contains(&d.key.secret), "no secret in the log");

    // Back with a new key: the reload takes it, the old key is out.
    std::fs::remove_file(&d.keys_path).unwrap();
    ferry::keys::generate(&d.keys_path, "next").unwrap();
    let next = ferry::keys::load(&d.keys_path).unwrap().keys[0].clone();
    hup_and_wait(&d, "configuration reloaded", 1);
    assert_eq!(try_auth(&d, &next), "welcome");
    assert_eq!(try_auth(&d, &d.key), "auth-failed");
    held.ping();
}

#[test]
fn a_streaming_put_that_hits_the_file_size_limit_fails_cleanly() {
    // RLIMIT_FSIZE: writes past 1 MiB fail with EFBIG (a full disk's ENOSPC
    // takes the same path; tests/files.rs has the sized put).
    let d = Daemon::start_custom(&[], |cmd| limit(cmd, libc::RLIMIT_FSIZE, 1 << 20));
    write_file(&d.path("f"), b"old");
    let mut c = d.authed();
    c.send(json!({"type":"put","path":"f","stream":true,"id":"s"}), b"");
    // 3 MiB in 64 KiB data frames: the error comes at once, mid-stream;
    // the rest is consumed and dropped.
    for _ in 0..48 {
        c.send(json!({"type":"data"}), &[3u8; 64 * 1024]);
    }
    c.send(json!({"type":"data"}), b"");
    let (e, _) = c.frame();
    assert_eq!(e["code"], "no-space", "{e}");
    assert_eq!(e["id"], "s");
    c.ping();
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
    assert!(temp_files(d.root.path()).is_empty());
    // An exec whose output file hits the limit gets the default SIGXFSZ.
    c.send(json!({"type":"exec","cmd":"exec head -c 2000000 /dev/zero > big"}), b"");
    let exit = c.exec_output().2;
    assert_eq!(exit["signal"], libc::SIGXFSZ, "{exit}");
    c.ping();

    // The CLI's single put names the code, as put -r's lines do.
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big");
    std::fs::write(&big, vec![5u8; 2 << 20]).unwrap();
    let o = run_bounded({ let mut c = d.ferry(); c.args(["put", &d.target(), big.to_str().unwrap(), "f"]); c }, WAIT, "put");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.trim_end().ends_with("(no-space)"), "{err}");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
}

/// The request body bytes an access line counts (its `in=`).
fn bytes_in(line: &str) -> u64 {
    line.split(" in=").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap()
}

/// `ferry put` of one file stops sending once the server refuses it (the
/// server answers as soon as a write fails; the rest of a 1 GiB body would
/// only be dropped there), in clear and over TLS, and so does a session's
/// put line, which then goes on over a new connection.
#[test]
fn a_single_put_to_a_full_disk_stops_sending_when_refused() {
    let d = Daemon::start_custom(&[], |cmd| limit(cmd, libc::RLIMIT_FSIZE, 1 << 20));
    write_file(&d.path("f"), b"old");
    let local = tempfile::tempdir().unwrap();
    let big = local.path().join("big");
    // Sparse: read back as zeros from the page cache, fast on any disk.
    std::fs::File::create(&big).unwrap().set_len(1 << 30).unwrap();
    for (i, transport) in ["--plaintext", "--tls"].into_iter().enumerate() {
        let o = run_bounded(
            { let mut c = d.ferry(); c.args([transport, "put", &d.target(), big.to_str().unwrap(), "f"]); c },
            WAIT,
            "put",
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{transport}: {err}");
        assert!(err.trim_end().ends_with("(no-space)"), "{transport}: {err}");
        let needle = " put path=\"f\" in=";
        eventually("the put's access line", WAIT, || d.log.count(needle) > i);
        let text = d.log.text();
        let line = text.lines().filter(|l| l.contains(needle)).nth(i).unwrap();
        let got = bytes_in(line);
        assert!(got < 64 << 20, "{transport}: the server read {got} bytes of the 1 GiB body: {line}");
        assert!(line.ends_with("result=error:no-space"), "{line}");
        assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
        eventually("no temporary file left", WAIT, || temp_files(d.root.path()).is_empty());
    }
    // A session's put line does the same, then goes on over a new connection.
    let small = local.path().join("small");
    std::fs::write(&small, b"fits").unwrap();
    let lines = format!("put {} f\nput {} g\n", big.display(), small.display());
    let o = run_with_input({ let mut c = d.ferry(); c.args(["-q", &d.target()]); c }, lines.as_bytes());
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "the last line's status: {err}");
    assert!(err.trim_end().ends_with("(no-space)") && err.lines().count() == 1, "{err}");
    assert_eq!(std::fs::read(d.path("g")).unwrap(), b"fits");
    eventually("the session put's access line", WAIT, || d.log.count(" put path=\"f\" in=") > 2);
    let text = d.log.text();
    let line = text.lines().filter(|l| l.contains(" put path=\"f\" in=")).nth(2).unwrap();
    let got = bytes_in(line);
    assert!(got < 64 << 20, "session: the server read {got} bytes of the 1 GiB body: {line}");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old");
}

#[test]
fn with_no_fds_left_requests_fail_with_errors_and_work_again_after() {
    let d = Daemon::start_custom(&["--auth-timeout", "60"], |cmd| limit(cmd, libc::RLIMIT_NOFILE, 40));
    write_file(&d.path("f"), b"content");
    let mut c = d.authed();
    // Take every fd the daemon has left with idle connections.
    let mut fillers = Vec::new();
    for _ in 0..60 {
        fillers.push(std::net::TcpStream::connect(d.addr).unwrap());
    }
    assert!(d.log.wait_for("accept: ", WAIT).is_some(), "{}", d.log.text());
    // Each request that needs an fd fails with an error; the connection stays.
    c.send(json!({"type":"exec","cmd":"echo hi","id":1}), b"");
    let e = c.frame().0;
    assert_eq!((e["code"].as_str(), e["id"].as_u64()), (Some("spawn-failed"), Some(1)), "{e}");
    c.send(json!({"type":"get","path":"f","id":2}), b"");
    let e = c.frame().0;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["id"], 2);
    c.send(json!({"type":"put","path":"g","id":3}), b"new");
    let e = c.frame().0;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["id"], 3);
    c.ping();
    // Free them: everything works again, nothing was left behind.
    drop(fillers);
    eventually("the daemon accepts again", WAIT, || d.log.count("accepting again") >= 1);
    c.send(json!({"type":"exec","cmd":"echo hi"}), b"");
    assert_eq!(c.exec_output().0, b"hi\n");
    c.send(json!({"type":"put","path":"g"}), b"new");
    assert_eq!(c.frame().0["type"], "ok");
    assert!(temp_files(d.root.path()).is_empty());
    assert!(children_of(d.pid()).is_empty());
}

/// `put -r` cuts a refused big file short too, and goes on with the rest of
/// the tree over a new connection: each big file is named, the small ones
/// around them are stored, the status is 1.
#[test]
fn put_r_to_a_full_disk_cuts_each_refused_file_short_and_goes_on() {
    let d = Daemon::start_custom(&[], |cmd| limit(cmd, libc::RLIMIT_FSIZE, 1 << 20));
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("a-small"), b"a").unwrap();
    for big in ["big1", "big2"] {
        std::fs::File::create(tree.join(big)).unwrap().set_len(1 << 30).unwrap();
    }
    std::fs::write(tree.join("z-small"), b"z").unwrap();
    for (i, transport) in ["--plaintext", "--tls"].into_iter().enumerate() {
        let dest = format!("t{i}");
        let o = run_bounded(
            { let mut c = d.ferry(); c.args([transport, "-q", "put", "-r", &d.target(), tree.to_str().unwrap(), &dest]); c },
            WAIT,
            "put -r",
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{transport}: {err}");
        for big in ["big1", "big2"] {
            assert!(err.lines().any(|l| l.contains(big) && l.contains("no-space")), "{transport}: {err}");
            let needle = format!(" put path=\"{dest}/{big}\" in=");
            eventually("the big file's access line", WAIT, || d.log.count(&needle) == 1);
            let text = d.log.text();
            let line = text.lines().find(|l| l.contains(&needle)).unwrap();
            let got = bytes_in(line);
            assert!(got < 64 << 20, "{transport}: the server read {got} bytes of {big}'s 1 GiB: {line}");
        }
        assert_eq!(std::fs::read(d.path(&format!("{dest}/a-small"))).unwrap(), b"a", "{transport}");
        assert_eq!(std::fs::read(d.path(&format!("{dest}/z-small"))).unwrap(), b"z", "{transport}");
        assert!(!d.path(&format!("{dest}/big1")).exists() && !d.path(&format!("{dest}/big2")).exists());
        eventually("no temporary file left", WAIT, || temp_files(d.root.path()).is_empty());
    }
}
