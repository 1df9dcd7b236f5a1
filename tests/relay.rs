//! An attacker on the path, end to end: a TCP relay (a thread here) between
//! the real `ferry` and the real `ferryd`, both on 127.0.0.1, that rewrites a
//! command in flight, flips bytes in either direction, and records every byte
//! it carries.
//!
//! Over TLS (`ferry --tls`): nothing rewritten runs, a flipped byte ends the
//! connection with one line and status 255 and leaves no wrong file on disk,
//! and no plaintext of a command, its output or a file crosses the relay.
//! The same relay in clear (`--plaintext`) shows the attack works there: the
//! rewritten command runs, a flipped get is a wrong complete file, and the
//! markers cross in clear. So the TLS assertions are not vacuous.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the relay does to the bytes of one direction.
#[derive(Clone, Copy, Debug)]
enum Tamper {
    None,
    /// Replaces every `from` with `to` (same length), across chunk edges too.
    Replace(&'static [u8], &'static [u8]),
    /// XORs 0x01 into the byte at this offset of the direction's stream.
    Flip(usize),
    /// `Flip`, then (client to server only) once the broken record is whole
    /// at the server, reads nothing more until the server's answer has been
    /// forwarded to the client, and drops the rest: the client, blocked in its write, finds
    /// that answer waiting between two chunks of its put.
    FlipThenWait(usize),
}

/// Every byte that crossed, per direction, over all the relay's connections.
#[derive(Default)]
struct Seen {
    up: Mutex<Vec<u8>>,
    down: Mutex<Vec<u8>>,
    /// Bytes written to the client, counted after each write.
    down_written: std::sync::atomic::AtomicUsize,
}

struct Relay {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl Relay {
    /// Listens on 127.0.0.1 port 0 and relays each connection to `to`.
    fn start(to: SocketAddr, up: Tamper, down: Tamper) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                let Ok(d) = TcpStream::connect(to) else { continue };
                for t in [&c, &d] {
                    t.set_read_timeout(Some(WAIT)).unwrap();
                }
                let (c2, d2) = (c.try_clone().unwrap(), d.try_clone().unwrap());
                let s1 = s.clone();
                let s2 = s.clone();
                std::thread::spawn(move || pump(c, d, up, &s1.up, &s1));
                std::thread::spawn(move || pump(d2, c2, down, &s2.down, &s2));
            }
        });
        Relay { addr, seen }
    }

    fn target(&self) -> String {
        self.addr.to_string()
    }

    fn up(&self) -> Vec<u8> {
        self.seen.up.lock().unwrap().clone()
    }

    fn down(&self) -> Vec<u8> {
        self.seen.down.lock().unwrap().clone()
    }
}

/// Copies `from` to `to`, tampering as told, recording what it forwards.
fn pump(mut from: TcpStream, mut to: TcpStream, tamper: Tamper, seen: &Mutex<Vec<u8>>, all: &Seen) {
    use std::sync::atomic::Ordering;
    let down = std::ptr::eq(seen, &all.down);
    let mut buf = vec![0u8; 65536];
    // Bytes held back so a pattern split across reads is still found.
    let mut held: Vec<u8> = Vec::new();
    let mut off = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        match tamper {
            Tamper::None => {}
            Tamper::Flip(at) | Tamper::FlipThenWait(at) => {
                if at >= off && at < off + n {
                    chunk[at - off] ^= 0x01;
                }
            }
            Tamper::Replace(a, b) => {
                held.extend_from_slice(&chunk);
                let mut i = 0;
                while i + a.len() <= held.len() {
                    if &held[i..i + a.len()] == a {
                        held[i..i + a.len()].copy_from_slice(b);
                        i += a.len();
                    } else {
                        i += 1;
                    }
                }
                // Keep back what might start a pattern; send the rest.
                let keep = (1..a.len()).rev().find(|&k| held.ends_with(&a[..k])).unwrap_or(0);
                chunk = held.drain(..held.len() - keep).collect();
            }
        }
        // Wait once the record holding the flip is surely whole at the
        // server (a record is at most 16 KiB and 256 bytes of ciphertext).
        let flipped_here = matches!(tamper, Tamper::FlipThenWait(at) if at + 17 * 1024 >= off && at + 17 * 1024 < off + n);
        off += n;
        seen.lock().unwrap().extend_from_slice(&chunk);
        if to.write_all(&chunk).is_err() {
            break;
        }
        if down {
            all.down_written.fetch_add(chunk.len(), Ordering::SeqCst);
        }
        if flipped_here {
            let before = all.down_written.load(Ordering::SeqCst);
            let deadline = std::time::Instant::now() + WAIT;
            while all.down_written.load(Ordering::SeqCst) == before && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            // The server has answered (or the wait ran out): drop the rest.
            while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
            break;
        }
    }
    if !held.is_empty() {
        seen.lock().unwrap().extend_from_slice(&held);
        let _ = to.write_all(&held);
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn ferry(d: &Daemon, transport: &str, args: &[&str]) -> Output {
    let mut c = d.ferry();
    c.env_remove("FERRY_TRANSPORT").arg(transport).args(args);
    run_bounded(c, Duration::from_secs(30), "ferry through the relay")
}

/// A ferry error: status 255 and one line on stderr.
fn assert_one_line_255(o: &Output, what: &str) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(255), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: one line, got {err:?}");
}

/// The command: it touches `DIR/SAFE`; rewritten to EVIL it would touch
/// `DIR/EVIL`, the marker that must never appear. Its output holds a word
/// that is not in the command (`$((40+2))` is computed remotely).
fn command(dir: &Path) -> String {
    format!("touch {}/SAFE && echo CMDOUT-$((40+2))-Q7", dir.display())
}
const CMD_MARK: &[u8] = b"CMDOUT-$((40+2))-Q7";
const OUT_MARK: &[u8] = b"CMDOUT-42-Q7";

#[test]
fn over_tls_a_rewrite_never_runs_and_nothing_crosses_in_clear() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let cmd = command(dir.path());
    let r = Relay::start(d.addr, Tamper::Replace(b"SAFE", b"EVIL"), Tamper::None);
    let o = ferry(&d, "--tls", &["run", &r.target(), "--", "sh", "-c", &cmd]);
    assert!(!dir.path().join("EVIL").exists(), "the rewritten command ran");
    match o.status.code() {
        // The relay found nothing to rewrite: the command ran intact.
        Some(0) => {
            assert_eq!(text(&o.stdout), "CMDOUT-42-Q7\n");
            assert!(dir.path().join("SAFE").exists());
        }
        _ => {
            assert_one_line_255(&o, "a rewrite over TLS");
            assert!(!dir.path().join("SAFE").exists(), "ran although the connection failed");
        }
    }
    let (up, down) = (r.up(), r.down());
    assert!(!up.is_empty() && !down.is_empty(), "the relay carried the session");
    for m in [b"SAFE" as &[u8], b"EVIL", CMD_MARK, b"touch", b"exec", b"\"type\""] {
        assert!(!contains(&up, m), "{:?} crossed in clear, client to server", text(m));
    }
    for m in [OUT_MARK, b"stdout", b"\"exit\""] {
        assert!(!contains(&down, m), "{:?} crossed in clear, server to client", text(m));
    }
}

#[test]
fn in_clear_the_same_relay_rewrites_the_command_and_reads_everything() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let cmd = command(dir.path());
    let r = Relay::start(d.addr, Tamper::Replace(b"SAFE", b"EVIL"), Tamper::None);
    let o = ferry(&d, "--plaintext", &["run", &r.target(), "--", "sh", "-c", &cmd]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(dir.path().join("EVIL").exists(), "in clear the rewritten command runs: the attack works");
    assert!(!dir.path().join("SAFE").exists());
    assert!(contains(&r.up(), b"EVIL") && contains(&r.up(), CMD_MARK));
    assert!(contains(&r.down(), OUT_MARK), "the output crosses in clear");
}

/// Flips one byte at each of `offsets` in one direction of `ferry --tls
/// run`: every run either succeeds intact or fails with 255 and one line;
/// the command never runs altered. Returns the offsets that went unnoticed
/// (with the stream's length then).
fn flip_sweep(d: &Daemon, dir: &Path, up: bool, offsets: &[usize]) -> Vec<(usize, usize)> {
    let cmd = command(dir);
    let mut unnoticed = Vec::new();
    for &at in offsets {
        let _ = std::fs::remove_file(dir.join("SAFE"));
        let (u, w) = if up { (Tamper::Flip(at), Tamper::None) } else { (Tamper::None, Tamper::Flip(at)) };
        let r = Relay::start(d.addr, u, w);
        let o = ferry(d, "--tls", &["run", &r.target(), "--", "sh", "-c", &cmd]);
        assert!(!dir.join("EVIL").exists());
        let stream_len = if up { r.up().len() } else { r.down().len() };
        if o.status.code() == Some(0) {
            assert_eq!(text(&o.stdout), "CMDOUT-42-Q7\n", "flip at {at}, up: {up}");
            assert!(dir.join("SAFE").exists(), "exit 0 but the command did not run");
            unnoticed.push((at, stream_len));
        } else {
            assert_one_line_255(&o, &format!("flip at {at}, up: {up}"));
            assert!(o.stdout.is_empty() || o.stdout == b"CMDOUT-42-Q7\n", "altered output: {:?}", text(&o.stdout));
        }
    }
    unnoticed
}

/// A TLS 1.3 close_notify record: 5 header + 2 alert + 1 type + 16 tag.
const CLOSE_NOTIFY: usize = 24;

#[test]
fn over_tls_a_flipped_byte_anywhere_ends_the_session_with_255() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    // Learn each direction's length with a clean relay, then flip across it:
    // the handshake, the command's record (where `SAFE` would be in clear),
    // the output and the exit.
    let r = Relay::start(d.addr, Tamper::None, Tamper::None);
    let o = ferry(&d, "--tls", &["run", &r.target(), "--", "sh", "-c", &command(dir.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let (up_len, down_len) = (r.up().len(), r.down().len());
    // Where the command sits in a clear session of the same run.
    let p = Relay::start(d.addr, Tamper::None, Tamper::None);
    let o = ferry(&d, "--plaintext", &["run", &p.target(), "--", "sh", "-c", &command(dir.path())]);
    assert_eq!(o.status.code(), Some(0));
    let clear_at = p.up().windows(4).position(|w| w == b"SAFE").unwrap();

    let spread = |len: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..12).map(|i| i * len / 12).collect();
        v.extend([len.saturating_sub(CLOSE_NOTIFY + 8), len.saturating_sub(1)]);
        v
    };
    let mut ups = spread(up_len);
    // The clear command's offset, and as far from the end of the stream.
    ups.extend([clear_at, up_len.saturating_sub(p.up().len() - clear_at)]);
    let mut unnoticed = flip_sweep(&d, dir.path(), true, &ups);
    unnoticed.extend(flip_sweep(&d, dir.path(), false, &spread(down_len)));
    // Only a flip in a trailing close_notify, after the client has its
    // authenticated exit and stops reading, may go unnoticed: it carries
    // nothing.
    for (at, len) in unnoticed {
        assert!(at + CLOSE_NOTIFY >= len, "a flip at {at} of {len} went unnoticed");
    }
}

/// 600 kB served as `f.bin`, with a marker (`FILEBODY-MARK`) that a relay
/// can look for in the bytes that cross it. Returns the content.
fn served_marked_file(d: &Daemon) -> Vec<u8> {
    let mut body: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    body[1000..1020].copy_from_slice(b"FILEBODY-MARK-8d2e1b");
    write_file(&d.path("f.bin"), &body);
    body
}

#[test]
fn over_tls_a_flipped_get_leaves_no_wrong_file_and_a_flipped_put_leaves_nothing() {
    let d = Daemon::start();
    let local = tempfile::tempdir().unwrap();
    let body = served_marked_file(&d);

    // get: a flip in the server's stream, in the file's data.
    let r = Relay::start(d.addr, Tamper::None, Tamper::Flip(300_000));
    let dest = local.path().join("got.bin");
    let o = ferry(&d, "--tls", &["get", &r.target(), "f.bin", dest.to_str().unwrap()]);
    assert_one_line_255(&o, "a flipped get");
    assert!(!dest.exists(), "no destination file after a flipped get");
    let part = local.path().join("got.bin.part");
    if let Ok(p) = std::fs::read(&part) {
        assert!(p.len() < body.len() && body.starts_with(&p), "the .part holds only good bytes ({} of {})", p.len(), body.len());
    }
    assert!(!contains(&r.down(), b"FILEBODY-MARK"), "the file's content crossed in clear");
    // And a clean relay over TLS still moves it: the markers never in clear.
    let r = Relay::start(d.addr, Tamper::None, Tamper::None);
    let ok = local.path().join("ok.bin");
    let o = ferry(&d, "--tls", &["get", &r.target(), "f.bin", ok.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(std::fs::read(&ok).unwrap() == body);
    assert!(!contains(&r.down(), b"FILEBODY-MARK") && !contains(&r.up(), b"f.bin"));

    // put: a flip in the client's stream, in the file's data.
    let src = local.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();
    let r = Relay::start(d.addr, Tamper::Flip(300_000), Tamper::None);
    let o = ferry(&d, "--tls", &["put", &r.target(), src.to_str().unwrap(), "up.bin"]);
    assert_one_line_255(&o, "a flipped put");
    assert!(!contains(&r.up(), b"FILEBODY-MARK"), "the file's content crossed in clear");
    eventually("the served root holds only f.bin", WAIT, || {
        let names: Vec<_> = std::fs::read_dir(d.root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names == [std::ffi::OsString::from("f.bin")]
    });
}

/// A put whose record is broken on the way, where the server's answer (its
/// TLS alert) is already waiting when the client looks between two chunks of
/// the body: the broken connection is the error (status 255), not a refusal
/// read as a local read error (status 1, seen 1 run in 4 before the fix).
#[test]
fn over_tls_a_broken_put_answered_between_chunks_is_a_connection_error() {
    let d = Daemon::start();
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("big.bin");
    let mut body: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    body[1000..1020].copy_from_slice(b"FILEBODY-MARK-8d2e1b");
    std::fs::write(&src, &body).unwrap();
    let r = Relay::start(d.addr, Tamper::FlipThenWait(300_000), Tamper::None);
    let o = ferry(&d, "--tls", &["put", &r.target(), src.to_str().unwrap(), "up.bin"]);
    assert_one_line_255(&o, "a put broken on the way");
    let err = text(&o.stderr);
    assert!(!err.contains("refused while sent"), "{err}");
    assert!(!contains(&r.up(), b"FILEBODY-MARK"), "the file's content crossed in clear");
    eventually("nothing stored", WAIT, || std::fs::read_dir(d.root.path()).unwrap().next().is_none());
}

#[test]
fn in_clear_a_get_crosses_readable_and_only_the_digest_catches_a_flip() {
    let d = Daemon::start();
    let local = tempfile::tempdir().unwrap();
    served_marked_file(&d);
    let r = Relay::start(d.addr, Tamper::None, Tamper::Flip(300_000));
    let dest = local.path().join("got.bin");
    let o = ferry(&d, "--plaintext", &["get", &r.target(), "f.bin", dest.to_str().unwrap()]);
    assert!(contains(&r.down(), b"FILEBODY-MARK"), "in clear the file's content crosses");
    // The flip lands in the file; only the end-to-end digest, which sits in
    // clear too and which a relay that rewrites could recompute, refuses it.
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(!dest.exists());
}
