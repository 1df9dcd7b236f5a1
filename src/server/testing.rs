//! Test support for the connection state machine, without sockets: an
//! in-memory `Duplex` socket and a `Harness` that stands in for the reactor
//! (the `Ctx` a connection is pumped with). Shared by `conn`'s unit tests and
//! the fuzz targets in `tests/fuzz`; not part of the daemon's API.

use super::conn::{Conn, Step};
use super::io::Socket;
use super::ops::Ctx;
use crate::config::Config;
use crate::proto::auth::{client_mac, server_mac, Key, Keys};
use crate::proto::{encode_frame, Decoder, FrameError, Header, Item};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// An in-memory socket: `input` is what the peer sent (read from `pos`),
/// `output` what the connection wrote. Reads past the input would block, or
/// are EOF once `eof` is set; writes are all or nothing, or would block while
/// `write_blocked`. `reads` counts the calls to `read`; `short_read_drains`
/// makes it claim what a plain TCP socket claims (`Socket::short_read_drains`).
#[derive(Default)]
pub struct Duplex {
    pub input: Vec<u8>,
    pub pos: usize,
    pub eof: bool,
    pub output: Vec<u8>,
    pub write_blocked: bool,
    pub shut: bool,
    pub reads: usize,
    pub short_read_drains: bool,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        if self.pos == self.input.len() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = buf.len().min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_blocked {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Duplex {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shut = true;
        Ok(())
    }

    fn short_read_drains(&self) -> bool {
        self.short_read_drains
    }
}

/// The key id and secret a `Harness` accepts, and the client nonce `authed` sends.
pub const KEY_ID: &str = "k";
pub const SECRET: &str = "0123456789abcdef0123";
pub const CLIENT_NONCE: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// What the reactor lends a connection: a poll (for an exec's pipes), the
/// config (defaults, the one key `KEY_ID`), the child count, the exec queue,
/// the scratch buffer, and a clock the test moves by hand.
pub struct Harness {
    pub poll: mio::Poll,
    pub cfg: Config,
    /// `cfg.keys`' TLS identities.
    pub tls: crate::tls::ServerTls,
    pub children: usize,
    pub waiters: VecDeque<usize>,
    pub scratch: Vec<u8>,
    pub now: Instant,
    pub spawner: crate::server::spawn::Spawner,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// The defaults, serving the system temporary directory (set `cfg.root`
    /// to a canonical directory of your own before touching files).
    pub fn new() -> Harness {
        let keys = Keys { keys: vec![Key { id: KEY_ID.into(), secret: SECRET.into() }] };
        Harness {
            poll: mio::Poll::new().expect("a mio poll"),
            tls: crate::tls::ServerTls::new(&keys),
            cfg: Config::new(std::env::temp_dir(), keys),
            children: 0,
            waiters: VecDeque::new(),
            scratch: vec![0; 64 * 1024],
            now: Instant::now(),
            spawner: crate::server::spawn::Spawner::new(false, crate::server::spawn::pidfds_available()).expect("a spawner"),
        }
    }

    /// Serving `root`, which must be canonical.
    pub fn with_root(root: PathBuf) -> Harness {
        let mut h = Harness::new();
        h.cfg.root = root;
        h
    }

    pub fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            registry: self.poll.registry(),
            cfg: &self.cfg,
            tls: &self.tls,
            now: self.now,
            children: &mut self.children,
            waiters: &mut self.waiters,
            scratch: &mut self.scratch,
            spawner: &self.spawner,
            upload_used: 0,
        }
    }

    /// A new connection, pumped once: its `hello` is in its socket's output.
    pub fn conn(&mut self) -> Conn<Duplex> {
        let mut ctx = self.ctx();
        let mut c = Conn::new(Duplex::default(), 0, "#1 test".into(), true, &mut ctx);
        c.pump(&mut ctx);
        c
    }

    /// Appends `bytes` to what the peer sent, marks the socket ready and pumps once.
    pub fn send(&mut self, c: &mut Conn<Duplex>, bytes: &[u8]) -> Step {
        c.socket_mut().input.extend_from_slice(bytes);
        c.on_socket_event(true, true);
        c.pump(&mut self.ctx())
    }

    /// `send`, then pumps as the reactor would while the turn's budget runs
    /// out (at most `turns` more times).
    pub fn send_all(&mut self, c: &mut Conn<Duplex>, bytes: &[u8], turns: usize) -> Step {
        let mut step = self.send(c, bytes);
        for _ in 0..turns {
            if step != Step::Yield {
                break;
            }
            c.on_socket_event(true, true);
            step = c.pump(&mut self.ctx());
        }
        step
    }

    /// A connection that has done the handshake with `KEY_ID`; the `hello`
    /// and `welcome` are taken from its output. Panics if it is not welcomed.
    pub fn authed(&mut self) -> Conn<Duplex> {
        let mut c = self.conn();
        let out = std::mem::take(&mut c.socket_mut().output);
        let (frames, _) = decode_all(&out).expect("hello is a frame");
        let sn = frames[0].0.str("nonce").expect("hello has a nonce").to_string();
        let mac = client_mac(SECRET.as_bytes(), &sn, CLIENT_NONCE);
        let auth = serde_json::json!({"type":"auth","key_id":KEY_ID,"nonce":CLIENT_NONCE,"mac":mac});
        self.send(&mut c, &frame(auth, b""));
        let out = std::mem::take(&mut c.socket_mut().output);
        let (frames, _) = decode_all(&out).expect("welcome is a frame");
        assert_eq!(frames.first().map(|f| f.0.kind.as_str()), Some(crate::proto::msg::WELCOME), "{frames:?}");
        assert_eq!(frames[0].0.str("mac"), Some(server_mac(SECRET.as_bytes(), CLIENT_NONCE, &sn).as_str()));
        c
    }
}

/// One encoded frame: `h` must be a JSON object; `size` is set from `body`.
pub fn frame(h: Value, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, h.as_object().expect("a header is an object").clone(), body);
    out
}

/// Decoded frames (header and body) and whether the input ended at a frame boundary.
pub type Decoded = (Vec<(Header, Vec<u8>)>, bool);

/// Decodes a byte stream into frames (each header with the part of its body
/// that is there), and whether the stream ends at a frame boundary.
pub fn decode_all(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let mut dec = Decoder::default();
    let mut frames: Vec<(Header, Vec<u8>)> = Vec::new();
    let mut pos = 0;
    while let Some((item, n)) = dec.decode(&bytes[pos..])? {
        match item {
            Item::Header(h) => frames.push((h, Vec::new())),
            Item::Body { range, .. } => {
                let body = &bytes[pos + range.start..pos + range.end];
                frames.last_mut().expect("a body follows a header").1.extend_from_slice(body);
            }
        }
        pos += n;
    }
    Ok((frames, pos == bytes.len() && dec.at_boundary()))
}

/// Regressions found by the fuzz targets (`tests/fuzz`), each with the
/// reproducer's bytes.
#[cfg(test)]
mod fuzz_regressions {
    use super::*;
    use crate::server::conn::Phase;

    /// A harness serving a fresh root with `f` and the 70,000-byte `d/big`
    /// (the fuzz target's tree, without the links).
    fn served() -> (Harness, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("f"), b"hello\n").unwrap();
        std::fs::write(dir.path().join("d/big"), vec![b'x'; 70_000]).unwrap();
        (Harness::with_root(dir.path().canonicalize().unwrap()), dir)
    }

    fn kinds(frames: &[(Header, Vec<u8>)]) -> Vec<&str> {
        frames.iter().map(|f| f.0.kind.as_str()).collect()
    }

    /// conn crash-d2d142b5: a bad frame pipelined behind a `get` had its
    /// `error` queued right after the `file` header, inside the body the
    /// header announced, so the client read the error as file bytes and lost
    /// the framing. The get's reply now ends first, then the error, then the close.
    #[test]
    fn a_bad_frame_behind_a_get_waits_for_the_whole_body() {
        let (mut h, _dir) = served();
        let mut c = h.authed();
        let input = b"\x00\x00\x00\x1d{\"path\":\"d/big\",\"type\":\"get\"}\x00\x00\x00${\"offset\":3,\"path\":\"f\",\"0type\":\"get\"}";
        h.send_all(&mut c, input, 64);
        let (frames, complete) = decode_all(&c.socket_mut().output).unwrap();
        assert!(complete, "the output ends at a frame boundary");
        assert_eq!(kinds(&frames), ["file", "done", "error"]);
        assert_eq!(frames[0].1, vec![b'x'; 70_000]);
        assert_eq!(frames[2].0.str("code"), Some("bad-frame"));
        assert!(matches!(c.phase(), Phase::Closing { .. }));
    }
}
