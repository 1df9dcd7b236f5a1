//! The whole connection state machine (`server::conn::Conn`) fed arbitrary
//! byte streams through the in-memory socket of `server::testing`: no
//! sockets, no reactor, exec disabled (nothing is ever spawned), a fresh
//! temporary root per run (in $TMPDIR, else on /dev/shm when there is one).
//!
//! Input: `[flags, chunk, stream...]`.
//! - flags bit 0: do the handshake first (with the harness's fixed key), so
//!   `stream` is requests; without it `stream` meets an unauthenticated
//!   connection.
//! - bit 1: the peer's EOF after the stream. bit 2: writes block while the
//!   stream is fed (a client that does not read), then unblock. bit 3:
//!   `read_only`. bit 4: the clock jumps past every deadline at the end.
//!   bit 5: the server drains at the end. bit 6: a 256-byte header limit.
//!   bit 7: `max_upload` of 1000 bytes.
//! - `chunk`: 0 feeds the stream whole, N feeds it N bytes at a time.
//!
//! Checked, besides "no panic": what the server writes is always well-formed
//! frames; before authentication it writes nothing but `hello` and one
//! fatal error; no child is ever started; a file beside the root (reachable
//! through links in the root) is never read, written or replaced, and
//! nothing is created beside the root.
#![no_main]

use ferry::proto::msg::ErrorCode;
use ferry::server::conn::{Phase, Step};
use ferry::server::testing::{decode_all, Duplex, Harness};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

/// Turns a connection may take per feed (each moves up to 256 KiB).
const TURNS: usize = 64;

/// The content of the file beside the root: random per process, so the
/// fuzzer cannot have it in its input by chance.
fn marker() -> &'static [u8] {
    static M: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        let n = ferry::proto::auth::fresh_nonce();
        format!("FERRY-FUZZ-SECRET-{}", ferry::proto::auth::to_hex(&n)).into_bytes()
    })
}

/// A logger that formats every record and drops it: the access lines and
/// their quoting are built, as in a daemon logging at debug.
struct Sink;

impl log::Log for Sink {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        // (Line breaks are the logger backends' to escape: `ferry::logger`.)
        std::hint::black_box(r.args().to_string());
    }
    fn flush(&self) {}
}

thread_local! {
    static HARNESS: RefCell<Harness> = RefCell::new({
        let _ = log::set_boxed_logger(Box::new(Sink));
        log::set_max_level(log::LevelFilter::Debug);
        Harness::new()
    });
}

/// A root with a few files and links (some leading out), and beside it a
/// directory with one secret file.
fn make_tree() -> tempfile::TempDir {
    // Puts fsync: a memory file system keeps runs fast ($TMPDIR wins, run.sh sets it).
    let shm = Path::new("/dev/shm");
    let dir = if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), marker()).unwrap();
    std::fs::write(root.join("f"), b"hello\n").unwrap();
    std::fs::write(root.join("d/big"), vec![b'x'; 70_000]).unwrap();
    for (target, link) in [
        ("d", "in"),
        ("../f", "d/up"),
        ("/", "slash"),
        ("..", "dotdot"),
        ("../outside", "out"),
        ("../outside/secret", "outfile"),
        ("loop", "loop"),
    ] {
        symlink(target, root.join(link)).unwrap();
    }
    symlink(outside.join("secret"), root.join("abs")).unwrap();
    dir
}

fn check_outside(dir: &Path) {
    let outside = dir.join("outside");
    let names: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["secret"], "something was created beside the root");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), marker(), "the file beside the root changed");
    let beside: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside.len(), 2, "something was created beside the root: {beside:?}");
}

/// Pumps until the connection stops yielding (bounded).
fn settle(h: &mut Harness, c: &mut ferry::server::conn::Conn<Duplex>) -> Step {
    h.send_all(c, b"", TURNS)
}

fuzz_target!(|data: &[u8]| {
    let [flags, chunk, stream @ ..] = data else { return };
    let (flags, chunk) = (*flags, *chunk as usize);
    let authed = flags & 1 != 0;
    let dir = make_tree();

    HARNESS.with(|h| {
        let h = &mut *h.borrow_mut();
        h.cfg.root = dir.path().join("root").canonicalize().unwrap();
        h.cfg.allow_exec = false;
        h.cfg.read_only = flags & 8 != 0;
        h.cfg.max_header = if flags & 64 != 0 { 256 } else { ferry::proto::MAX_HEADER };
        h.cfg.max_upload = (flags & 128 != 0).then_some(1000);
        h.now = std::time::Instant::now();

        let mut c = if authed { h.authed() } else { h.conn() };
        let mut out = std::mem::take(&mut c.socket_mut().output);
        let hello_len = if authed { 0 } else { out.len() };

        c.socket_mut().write_blocked = flags & 4 != 0;
        let mut step = Step::Idle;
        if chunk == 0 {
            step = h.send_all(&mut c, stream, TURNS);
        } else {
            for piece in stream.chunks(chunk) {
                step = h.send_all(&mut c, piece, TURNS);
                if step == Step::Close {
                    break;
                }
            }
        }
        c.socket_mut().write_blocked = false;
        if step != Step::Close {
            step = settle(h, &mut c);
        }
        if step != Step::Close && flags & 32 != 0 {
            c.drain();
            step = settle(h, &mut c);
        }
        if step != Step::Close && flags & 16 != 0 {
            h.now += Duration::from_secs(3600);
            c.on_deadline(&mut h.ctx());
            step = settle(h, &mut c);
        }
        if step != Step::Close && flags & 2 != 0 {
            c.socket_mut().eof = true;
            step = settle(h, &mut c);
        }

        assert_eq!(h.children, 0, "a child was started with exec disabled");
        assert!(c.child_pid().is_none() && c.take_orphan().is_none(), "a child was started with exec disabled");
        out.extend_from_slice(&c.socket_mut().output);

        // Never the file beside the root, in any frame or body.
        assert!(!out.windows(marker().len()).any(|w| w == marker()), "the file beside the root was sent");

        let (frames, complete) = decode_all(&out).expect("the server wrote a malformed frame");
        // A reply is cut only when the connection goes under it: the peer
        // hung up or the transfer stalled. Never by anything queued inside it.
        if !complete && step != Step::Yield {
            let why = c.reason();
            assert!(
                why.starts_with("peer closed") || why.starts_with("transfer idle"),
                "the server stopped in the middle of a frame ({why})"
            );
        }
        if !authed {
            // hello, then at most one error, which closes.
            let (hello, rest) = frames.split_first().expect("hello");
            assert_eq!(hello.0.kind, "hello");
            assert!(rest.len() <= 1, "more than one reply before authentication: {rest:?}");
            if let Some((h, _)) = rest.first() {
                assert_eq!(h.kind, "error", "a reply before authentication: {h:?}");
                let code = h.str("code").unwrap_or_default();
                let fatal = [
                    ErrorCode::AuthRequired,
                    ErrorCode::AuthFailed,
                    ErrorCode::BadFrame,
                    ErrorCode::FrameTooLarge,
                    ErrorCode::ShuttingDown,
                ];
                assert!(fatal.iter().any(|f| f.as_str() == code), "error {code:?} before authentication");
                assert!(matches!(c.phase(), Phase::Closing { .. } | Phase::Closed));
            }
            assert!(out.len() >= hello_len);
        }
        drop(c);
    });
    check_outside(dir.path());
});
