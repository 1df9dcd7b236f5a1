//! Digests on the wire (issue 20): what `hello` announces, blake3 and
//! sha256 gets, puts with the digest after the body (`trailer`), the old
//! style with the digest in the header, and the client against a server
//! that announces no digests (an older ferryd), played by a stub here.
mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| (rng.next() >> 24) as u8).collect()
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// A sized put with `trailer:true`: header, body, trailer; the one reply.
fn put_with_trailer(c: &mut Raw, path: &str, digest: &str, body: &[u8], trailer_hex: &str) -> Value {
    c.send(json!({"type":"put","path":path,"digest":digest,"trailer":true,"id":"t"}), body);
    c.send(json!({"type":"trailer", digest: trailer_hex}), b"");
    c.frame().0
}

#[test]
fn hello_announces_blake3_then_sha256() {
    let d = Daemon::start();
    let mut c = Raw::connect(d.addr);
    let (hello, _) = c.frame();
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["digests"], json!(["blake3", "sha256"]));
}

#[test]
fn a_blake3_get_names_its_digest_and_covers_the_whole_file() {
    let d = Daemon::start();
    let data = noise(3 * 1024 * 1024 + 17, 5);
    write_file(&d.path("f"), &data);
    let mut c = d.authed();
    for offset in [0usize, 1, 1_000_000, data.len()] {
        c.send(json!({"type":"get","path":"f","offset":offset,"digest":"blake3","id":offset}), b"");
        let (file, body) = c.frame();
        assert_eq!(file["type"], "file", "{file}");
        assert!(body == data[offset..], "offset {offset}");
        let (done, _) = c.frame();
        assert_eq!(done, json!({"type":"done","digest":"blake3","blake3":blake3_hex(&data),"id":offset}));
    }
    // A bad digest is named in words, not serde's.
    for (bad, shown) in [(json!("md5"), "\"md5\""), (Value::Null, "null"), (json!(3), "3")] {
        c.send(json!({"type":"get","path":"f","digest":bad}), b"");
        let (e, _) = c.frame();
        assert_eq!(e["code"], "bad-request");
        assert_eq!(e["message"], format!("get: digest must be one of blake3, sha256, none (not {shown})"), "{e}");
    }
    c.ping();
}

#[test]
fn a_put_with_its_digest_in_a_trailer_is_checked_then_renamed() {
    let d = Daemon::start();
    let mut c = d.authed();
    for (digest, len) in [("blake3", 0usize), ("blake3", 2_500_000), ("sha256", 1_048_576), ("sha256", 65_537)] {
        let data = noise(len, len as u64);
        let hex = if digest == "blake3" { blake3_hex(&data) } else { sha256_hex(&data) };
        let ok = put_with_trailer(&mut c, "t.bin", digest, &data, &hex);
        assert_eq!(ok, json!({"type":"ok","path":"t.bin","file_size":len,"digest":digest,digest:hex,"id":"t"}));
        assert!(std::fs::read(d.path("t.bin")).unwrap() == data, "{digest} {len}");
    }
    // A streaming put takes the same trailer after its empty data frame.
    let data = noise(700_000, 9);
    c.send(json!({"type":"put","path":"s.bin","stream":true,"digest":"blake3","trailer":true}), b"");
    for chunk in data.chunks(100_003) {
        c.send(json!({"type":"data"}), chunk);
    }
    c.send(json!({"type":"data"}), b"");
    c.send(json!({"type":"trailer","blake3":blake3_hex(&data)}), b"");
    let (ok, _) = c.frame();
    assert_eq!(ok["blake3"], blake3_hex(&data), "{ok}");
    assert!(std::fs::read(d.path("s.bin")).unwrap() == data);
    assert!(temp_files(d.root.path()).is_empty());
    c.ping();
}

#[test]
fn a_trailer_that_differs_renames_nothing_and_leaves_no_temp_file() {
    let d = Daemon::start();
    write_file(&d.path("f"), b"old contents");
    let mut c = d.authed();
    let body = noise(1_500_000, 3);
    let e = put_with_trailer(&mut c, "f", "blake3", &body, &blake3_hex(b"something else"));
    assert_eq!((e["type"].as_str(), e["code"].as_str(), e["id"].as_str()), (Some("error"), Some("digest-mismatch"), Some("t")), "{e}");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old contents");
    assert!(temp_files(d.root.path()).is_empty());
    c.ping();

    // A trailer of another digest than the put's is refused the same way.
    let e = {
        c.send(json!({"type":"put","path":"f","digest":"blake3","trailer":true}), &body);
        c.send(json!({"type":"trailer","sha256":sha256_hex(&body)}), b"");
        c.frame().0
    };
    assert_eq!(e["code"], "bad-request", "{e}");
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old contents");

    // Another frame where the trailer should be: the put fails, that frame is served.
    c.send(json!({"type":"put","path":"f","digest":"sha256","trailer":true}), &body);
    c.send(json!({"type":"ping","id":"probe"}), b"");
    let (e, _) = c.frame();
    assert_eq!(e["code"], "bad-request", "{e}");
    assert_eq!(c.frame().0, json!({"type":"pong","id":"probe"}));
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old contents");
    assert!(temp_files(d.root.path()).is_empty());

    // A trailer with a body: one clear error, its body skipped, in step.
    c.send(json!({"type":"put","path":"f","digest":"blake3","trailer":true,"id":"b"}), &body);
    c.send(json!({"type":"trailer","blake3":blake3_hex(&body)}), b"some body");
    c.send(json!({"type":"ping","id":"after"}), b"");
    let (e, _) = c.frame();
    assert_eq!((e["code"].as_str(), e["message"].as_str(), e["id"].as_str()), (Some("bad-request"), Some("a trailer frame has no body"), Some("b")), "{e}");
    assert_eq!(c.frame().0, json!({"type":"pong","id":"after"}));
    assert_eq!(std::fs::read(d.path("f")).unwrap(), b"old contents");
    assert!(temp_files(d.root.path()).is_empty());

    // A trailer alone is no request.
    c.send(json!({"type":"trailer","sha256":sha256_hex(b"")}), b"");
    assert_eq!(c.frame().0["code"], "bad-request");
    c.ping();
}

#[test]
fn old_style_puts_with_the_digest_in_the_header_keep_working() {
    let d = Daemon::start();
    let mut c = d.authed();
    let data = noise(2_000_000, 4);
    // As a client from before trailers sends it: no digest field, sha256 in the header.
    c.send(json!({"type":"put","path":"o.bin","sha256":sha256_hex(&data),"mode":0o600}), &data);
    let (ok, _) = c.frame();
    assert_eq!(ok["sha256"], sha256_hex(&data), "{ok}");
    assert!(std::fs::read(d.path("o.bin")).unwrap() == data);
    // blake3 in the header works the same way.
    c.send(json!({"type":"put","path":"o.bin","blake3":blake3_hex(b"x")}), b"y");
    assert_eq!(c.frame().0["code"], "digest-mismatch");
    assert!(std::fs::read(d.path("o.bin")).unwrap() == data);
    assert!(temp_files(d.root.path()).is_empty());
}

#[test]
fn the_cli_uses_blake3_and_names_the_digest_it_was_asked_for() {
    let d = Daemon::start();
    let data = noise(5_000_000, 8);
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("up.bin"), &data);
    for digest in [None, Some("sha256"), Some("none"), Some("blake3")] {
        let up = here.path().join("up.bin");
        let mut args = vec!["-v".to_string(), "put".into()];
        args.extend(digest.map(|d| ["--digest".to_string(), d.to_string()]).into_iter().flatten());
        args.extend([d.target(), up.display().to_string(), "up.bin".into()]);
        let out = d.ferry().args(&args).output().unwrap();
        let trace = text(&out.stderr);
        assert!(out.status.success(), "{digest:?}: {trace}");
        assert!(std::fs::read(d.path("up.bin")).unwrap() == data);
        let want = digest.unwrap_or("blake3");
        assert!(trace.contains(&format!(r#""digest":"{want}""#)), "{digest:?}: {trace}");
        if want != "none" {
            assert!(trace.contains(r#""type":"trailer""#), "{digest:?}: the digest goes after the body: {trace}");
        }
        let dest = here.path().join(format!("down-{want}"));
        let mut args = vec!["-v".to_string(), "get".into()];
        args.extend(digest.map(|d| ["--digest".to_string(), d.to_string()]).into_iter().flatten());
        args.extend([d.target(), "up.bin".into(), dest.display().to_string()]);
        let out = d.ferry().args(&args).output().unwrap();
        let trace = text(&out.stderr);
        assert!(out.status.success(), "{digest:?}: {trace}");
        assert!(std::fs::read(&dest).unwrap() == data);
        assert!(trace.contains(&format!(r#""digest":"{want}""#)), "{digest:?}: {trace}");
    }
    // -c resumes with the digest of the get: the .part is hashed with blake3.
    let dest = here.path().join("resumed");
    write_file(&here.path().join("resumed.part"), &data[..1_234_567]);
    let out = d.ferry().args(["-v", "get", "-c", &d.target(), "up.bin", dest.to_str().unwrap()]).output().unwrap();
    let trace = text(&out.stderr);
    assert!(out.status.success(), "{trace}");
    assert!(trace.contains(r#""offset":1234567"#) && trace.contains(r#""digest":"blake3""#), "{trace}");
    assert!(std::fs::read(&dest).unwrap() == data);
}

#[test]
fn fan_out_json_names_the_digest_and_its_hex() {
    let d = Daemon::start();
    let data = noise(400_000, 12);
    let here = tempfile::tempdir().unwrap();
    let local = here.path().join("fan.bin");
    write_file(&local, &data);
    let target = d.target();
    for (digest, field) in [(None, "blake3"), (Some("sha256"), "sha256")] {
        let hex = if field == "blake3" { blake3_hex(&data) } else { sha256_hex(&data) };
        let mut put = vec!["put", "--json", "-H", target.as_str(), local.to_str().unwrap(), "fan.bin"];
        let mut get = vec!["get", "--json", "-H", target.as_str(), "fan.bin"];
        if let Some(d) = digest {
            put.splice(1..1, ["--digest", d]);
            get.splice(1..1, ["--digest", d]);
        }
        let into = here.path().join(format!("into-{field}"));
        get.push(into.to_str().unwrap());
        for args in [&put, &get] {
            let out = d.ferry().args(args).output().unwrap();
            assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
            let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
            assert_eq!((v["status"].as_str(), v["digest"].as_str()), (Some("ok"), Some(field)), "{args:?}: {v}");
            assert_eq!(v[field], hex, "{args:?}: {v}");
        }
        assert!(std::fs::read(into.join(&target).join("fan.bin")).unwrap() == data);
    }
}

#[test]
fn against_a_server_that_announces_no_digests_the_client_speaks_sha256_in_the_header() {
    let (_dir, keys, key) = make_keys();
    let data = noise(1_000_000, 6);
    let here = tempfile::tempdir().unwrap();
    write_file(&here.path().join("f"), &data);
    for cmd in ["put", "get"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let server = common::old_server(listener, key.clone(), data.clone(), false);
        let local = here.path().join(if cmd == "put" { "f" } else { "got" });
        let mut ferry = Command::new(ferry_bin());
        ferry.env("FERRY_KEYS", &keys).arg(cmd);
        if cmd == "put" {
            ferry.args([&target, local.to_str().unwrap(), "remote.bin"]);
        } else {
            ferry.args([&target, "remote.bin", local.to_str().unwrap()]);
        }
        let out = run_bounded(ferry, Duration::from_secs(60), "ferry against the stub");
        assert!(out.status.success(), "{cmd}: {}", text(&out.stderr));
        let seen = server.join().unwrap();
        let req = seen.iter().find(|h| h["type"] == cmd).expect("the request");
        assert!(req.get("trailer").is_none() && req.get("blake3").is_none(), "{cmd}: {req}");
        assert!(!seen.iter().any(|h| h["type"] == "trailer"), "no trailer to an old server: {seen:?}");
        if cmd == "get" {
            assert!(std::fs::read(&local).unwrap() == data);
        }
    }
    // Asking for blake3 there is refused before any request, status 1.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = common::old_server(listener, key.clone(), data.clone(), false);
    let mut ferry = Command::new(ferry_bin());
    ferry.env("FERRY_KEYS", &keys).args(["get", "--digest", "blake3", &target, "remote.bin", "-"]);
    let out = run_bounded(ferry, Duration::from_secs(60), "ferry against the stub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("does not offer the blake3 digest"), "{}", text(&out.stderr));
    let seen = server.join().unwrap();
    assert!(!seen.iter().any(|h| h["type"] == "get"), "{seen:?}");
}

/// A writer that runs `on_first` once, at the first bytes it is given.
struct AtFirstWrite<F: FnMut()>(Option<F>, u64);

impl<F: FnMut()> Write for AtFirstWrite<F> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Some(mut f) = self.0.take() {
            f();
        }
        self.1 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rewrites one byte in place (same size: only the times tell), with an
/// mtime set far back first so that the write moves it whatever the clock's
/// granularity.
fn rewrite_first_byte(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(b"X", 0).unwrap();
}

#[test]
fn a_get_of_a_file_that_changes_while_it_is_sent_ends_in_changed_not_done() {
    use ferry::client::Error;
    use ferry::proto::msg::Digest;
    let d = Daemon::start();
    // Far more than loopback's socket buffers hold: when the client has its
    // first bytes, the server is still sending.
    let size = 32u64 << 20;
    for digest in [Digest::Blake3, Digest::None] {
        let f = std::fs::File::create(d.path("big")).unwrap();
        f.set_len(size).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1)).unwrap();
        drop(f);
        let mut s = d.session();
        let info = s.get_start("big", 0, digest).unwrap();
        let path = d.path("big");
        let mut out = AtFirstWrite(Some(|| rewrite_first_byte(&path)), 0);
        match s.get_body(&info, &mut out, ferry::client::files::OnLocalError::Return) {
            Err(Error::Remote(p)) => {
                assert_eq!(p.code.as_str(), "changed", "{digest:?}: {p:?}");
                assert!(p.message.contains("changed on the server while it was sent"), "{}", p.message);
            }
            other => panic!("{digest:?}: expected changed, got {other:?}"),
        }
        assert_eq!(out.1, size, "the whole body came first");
        // The error frame replaced `done`: the session is in step.
        s.ping().unwrap();
        // An unchanged file still ends in done.
        let info = s.get_start("big", 0, digest).unwrap();
        assert!(s.get_body(&info, &mut std::io::sink(), ferry::client::files::OnLocalError::Return).is_ok());
    }
}

#[test]
fn a_put_of_a_file_that_changes_while_it_is_sent_stores_nothing() {
    use ferry::client::Error;
    use ferry::proto::msg::Digest;
    let d = Daemon::start();
    let local = tempfile::tempdir().unwrap();
    let path = local.path().join("big");
    write_file(&d.path("there"), b"old contents");
    for digest in [Digest::Blake3, Digest::Sha256, Digest::None] {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(9 << 20).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1)).unwrap();
        drop(f);
        let file = std::fs::File::open(&path).unwrap();
        let mut s = d.session();
        let mut first = true;
        let r = s.put_file("there", &file, 9 << 20, Some(0o644), digest, &mut |_| {
            if std::mem::take(&mut first) {
                rewrite_first_byte(&path);
            }
        });
        match r {
            Err(Error::LocalRead(e)) => assert_eq!(e.to_string(), "changed while it was sent; nothing stored", "{digest:?}"),
            other => panic!("{digest:?}: expected a local failure, got {other:?}"),
        }
        assert_eq!(std::fs::read(d.path("there")).unwrap(), b"old contents", "{digest:?}");
        eventually("no temp file left", Duration::from_secs(20), || temp_files(d.root.path()).is_empty());
        // The same file unchanged is stored.
        let mut s = d.session();
        s.put_file("copy", &file, 9 << 20, Some(0o644), digest, &mut |_| {}).unwrap();
        assert_eq!(std::fs::metadata(d.path("copy")).unwrap().len(), 9 << 20);
    }
}
