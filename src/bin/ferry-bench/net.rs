//! Connections for the load generator: loopback address resolution, frame
//! scanning without allocation, and the non-blocking connect + setup state
//! machine that opens many authenticated connections at once. The wire
//! itself is `proto`'s: frame lengths (`frame::peek_header`), the handshake
//! (`proto::handshake`, fed raw bytes), replies (`msg::Reply`).

use ferry::proto::auth::{self, Key};
use ferry::proto::frame::{parse_header, peek_header, HeaderRef};
use ferry::proto::handshake::{self, Handshake, Step};
use ferry::proto::{encode_frame, msg, ErrorCode};
use crate::sock::{Sock, TlsSetup};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The protocol a run speaks.
#[derive(Clone)]
pub enum Proto {
    /// ferry frames, each connection authenticated with this key.
    Ferry(Key),
    /// RESP (redis): no handshake, inline `PING`.
    Resp,
}

impl Proto {
    pub fn name(&self) -> &'static str {
        match self {
            Proto::Ferry(_) => "ferry",
            Proto::Resp => "resp",
        }
    }
}

/// Resolves HOST:PORT to a loopback address; anything else is refused, since
/// ferry-bench only ever loads servers on this machine.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
    addrs.iter().copied().find(|a| a.ip().is_loopback()).ok_or_else(|| {
        format!("{host} is not a loopback address: ferry-bench only drives servers on this machine (127.0.0.0/8, ::1)")
    })
}

/// A frame header's `type` and `size`, its bytes, and where its body starts.
pub type Peeked<'a> = (HeaderRef<'a>, &'a [u8], usize);

/// The next whole frame header at the front of `buf`: its `type` and `size`,
/// its bytes (for the slow paths), and where the body starts. `Ok(None)` when
/// more bytes are needed. Allocates nothing (`proto::frame::peek_header`).
#[inline]
pub fn next_header(buf: &[u8]) -> Result<Option<Peeked<'_>>, String> {
    let Some((h, used)) = peek_header(buf).map_err(|e| format!("bad frame from the server: {e}"))? else {
        return Ok(None);
    };
    let head = HeaderRef::parse(h)
        .map_err(|e| format!("bad frame header from the server ({e}): {}", String::from_utf8_lossy(h)))?;
    Ok(Some((head, h, used)))
}

/// A header as `proto::msg` reads a reply. For the slow paths: it copies.
pub fn reply(h: &[u8]) -> Result<msg::Reply, String> {
    let header = parse_header(h).map_err(|e| format!("bad frame header from the server ({e})"))?;
    Ok(msg::Reply::from_header(&header))
}

/// `CODE: MESSAGE` of an error frame's header.
pub fn error_text(h: &[u8]) -> String {
    match reply(h) {
        Ok(msg::Reply::Error(e)) => e.to_string(),
        _ => String::from_utf8_lossy(h).into_owned(),
    }
}

/// One frame, encoded.
pub fn frame(header: serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(&mut v, header, b"");
    v
}

pub fn is_would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// How connections are opened.
#[derive(Clone)]
pub struct SetupOpts {
    /// Each connection's bound for connect + handshake (+ probe).
    pub timeout: Duration,
    /// At most this many connections connecting or authenticating at once.
    pub parallel: usize,
    /// After the handshake, one ping (ferry) or PING (RESP) round trip.
    pub probe: bool,
    /// TLS under the protocol (`--tls`).
    pub tls: Option<TlsSetup>,
}

/// Where a connection is in its setup:
/// Connecting → Handshake (ferry) → Probe (with `probe`) → Ready;
/// RESP skips the handshake.
enum Stage {
    Connecting,
    /// `proto::handshake` owns the exchange; `answered` once our half of
    /// it (the auth frame) is sent, so a timeout can say which side is late.
    Handshake {
        hs: Handshake,
        answered: bool,
    },
    /// One ping (PING) sent, its pong (+PONG) awaited.
    Probe,
    Ready,
}

impl Stage {
    /// What the connection waits for, for a timeout's message.
    fn awaited(&self) -> &'static str {
        match self {
            Stage::Connecting => "connect",
            Stage::Handshake { answered: false, .. } => "greeting from the server",
            Stage::Handshake { answered: true, .. } => "answer to authentication",
            Stage::Probe | Stage::Ready => "reply to the first ping",
        }
    }
}

struct Pending {
    sock: Sock,
    stage: Stage,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    deadline: Instant,
}

const RESP_PING: &[u8] = b"PING\r\n";

impl Pending {
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush_pending()?;
        while self.wpos < self.wbuf.len() {
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if is_would_block(&e) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.wbuf.extend_from_slice(bytes);
        self.flush().map_err(|e| format!("write failed during the handshake: {e}"))
    }

    /// Moves the connection as far as it can go; true once it is ready.
    fn advance(&mut self, proto: &Proto, probe: bool, tls: Option<&TlsSetup>) -> Result<bool, String> {
        if matches!(self.stage, Stage::Connecting) {
            if let Some(e) = self.sock.tcp.take_error().map_err(|e| e.to_string())? {
                return Err(connect_error(&e));
            }
            match self.sock.tcp.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) => return Err(connect_error(&e)),
            }
            let _ = self.sock.tcp.set_nodelay(true);
            if let Some(t) = tls {
                self.sock.start_tls(t.client());
            }
            self.stage = match proto {
                Proto::Ferry(key) => Stage::Handshake { hs: Handshake::new(key, auth::fresh_nonce()), answered: false },
                Proto::Resp if probe => {
                    self.send(RESP_PING)?;
                    Stage::Probe
                }
                Proto::Resp => Stage::Ready,
            };
        }
        self.flush().map_err(|e| format!("write failed during the handshake: {e}"))?;
        let mut buf = [0u8; 4096];
        let mut eof = false;
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if is_would_block(&e) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => match ferry::client::transport::tls_error(&e) {
                    Some(t) => return Err(format!("TLS: {t}")),
                    None => return Err(format!("connection failed during the handshake: {e}")),
                },
            }
        }
        while !matches!(self.stage, Stage::Ready) {
            let progressed = match proto {
                Proto::Ferry(key) => self.ferry_step(key, probe)?,
                Proto::Resp => self.resp_step()?,
            };
            if !progressed {
                break;
            }
        }
        if matches!(self.stage, Stage::Ready) {
            if !self.rbuf.is_empty() {
                return Err(format!(
                    "the server sent unexpected bytes after the handshake: {:?}",
                    String::from_utf8_lossy(&self.rbuf)
                ));
            }
            return Ok(true);
        }
        if eof {
            return Err(match self.stage {
                Stage::Handshake { answered: false, .. } => "the server closed the connection before greeting".into(),
                Stage::Handshake { answered: true, .. } => {
                    "the server closed the connection during authentication".into()
                }
                _ => "the server closed the connection".into(),
            });
        }
        Ok(false)
    }

    /// Consumes one frame of the handshake or the probe if a whole one is there.
    fn ferry_step(&mut self, key: &Key, probe: bool) -> Result<bool, String> {
        if let Stage::Handshake { hs, answered } = &mut self.stage {
            let (step, used) = hs.on_bytes(&self.rbuf);
            self.rbuf.drain(..used);
            match step {
                Step::NeedMore => return Ok(false),
                Step::Send(bytes) => {
                    *answered = true;
                    self.send(&bytes)?;
                }
                Step::Done(est) => {
                    self.sock.digests = est.digests;
                    if probe {
                        self.stage = Stage::Probe;
                        self.send(&frame(msg::request::ping()))?;
                    } else {
                        self.stage = Stage::Ready;
                    }
                }
                Step::Failed(e) => return Err(handshake_error(e, key)),
            }
            return Ok(true);
        }
        let Some((head, h, used)) = next_header(&self.rbuf)? else { return Ok(false) };
        if head.size > 0 {
            return Err(format!("unexpected {} frame with a body after the handshake", head.kind));
        }
        match reply(h)? {
            msg::Reply::Pong => {
                self.rbuf.drain(..used);
                self.stage = Stage::Ready;
                Ok(true)
            }
            msg::Reply::Error(e) => Err(format!("the server answered the first ping with {e}")),
            _ => Err(format!("unexpected {} frame from the server instead of a pong", head.kind)),
        }
    }

    fn resp_step(&mut self) -> Result<bool, String> {
        let Some(end) = self.rbuf.windows(2).position(|w| w == b"\r\n") else { return Ok(false) };
        let line = String::from_utf8_lossy(&self.rbuf[..end]).into_owned();
        if !line.starts_with('+') {
            return Err(format!("the server answered PING with {line:?}"));
        }
        self.rbuf.drain(..end + 2);
        self.stage = Stage::Ready;
        Ok(true)
    }
}

/// A failed handshake as one line, with a hint where one helps.
fn handshake_error(e: handshake::Error, key: &Key) -> String {
    match e {
        handshake::Error::Refused(e) if e.code == ErrorCode::AuthFailed => {
            format!("authentication failed with key id {:?}: the server said {e}", key.id)
        }
        handshake::Error::Refused(e) if e.code == ErrorCode::TooManyConnections => {
            format!("the server refused the connection: {e} (ferryd --max-connections sets the limit)")
        }
        handshake::Error::Refused(e) => format!("the server refused the connection: {e}"),
        handshake::Error::BadServerMac => {
            format!("authentication failed with key id {:?}: {e}: not the same secret", key.id)
        }
        e => format!("the server speaks another protocol: {e}"),
    }
}

fn connect_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused (is the server running on that port?)".into(),
        _ => e.to_string(),
    }
}

/// A fresh `Poll` and `n` connections registered in it, as `establish` opens
/// them: what every TCP mode starts with.
pub fn open(addr: SocketAddr, proto: &Proto, n: usize, opts: SetupOpts) -> Result<(Poll, Vec<Sock>), String> {
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let socks = establish(&mut poll, addr, proto, n, opts)?;
    Ok((poll, socks))
}

/// Opens `n` connections to `addr`, each registered in `poll` as `Token(i)`
/// for READABLE | WRITABLE, connected, authenticated (ferry) and, with
/// `probe`, past one ping. Up to `opts.parallel` are in progress at once.
/// Any failure is fatal: the error names the connection and the cause.
pub fn establish(
    poll: &mut Poll,
    addr: SocketAddr,
    proto: &Proto,
    n: usize,
    opts: SetupOpts,
) -> Result<Vec<Sock>, String> {
    let mut pending: Vec<Option<Pending>> = (0..n).map(|_| None).collect();
    let mut ready: Vec<Option<Sock>> = (0..n).map(|_| None).collect();
    let mut active: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let (mut next, mut done) = (0usize, 0usize);
    let parallel = opts.parallel.max(1);
    let fail = |i: usize, e: String| format!("{addr}: connection {} of {n}: {e}", i + 1);
    while done < n {
        while active.len() < parallel && next < n {
            let mut sock = TcpStream::connect(addr).map_err(|e| fail(next, connect_error(&e)))?;
            poll.registry()
                .register(&mut sock, Token(next), Interest::READABLE | Interest::WRITABLE)
                .map_err(|e| fail(next, e.to_string()))?;
            pending[next] = Some(Pending {
                sock: Sock::plain(sock),
                stage: Stage::Connecting,
                rbuf: Vec::new(),
                wbuf: Vec::new(),
                wpos: 0,
                deadline: Instant::now() + opts.timeout,
            });
            active.push(next);
            next += 1;
        }
        let now = Instant::now();
        for &i in &active {
            let p = pending[i].as_ref().expect("active connections are pending");
            if now >= p.deadline {
                let what = p.stage.awaited();
                return Err(fail(i, format!("no {what} within {:.1} s", opts.timeout.as_secs_f64())));
            }
        }
        poll_events(poll, &mut events, Duration::from_millis(50))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(p) = pending.get_mut(i).and_then(Option::as_mut) else { continue };
            if p.advance(proto, opts.probe, opts.tls.as_ref()).map_err(|e| fail(i, e))? {
                ready[i] = pending[i].take().map(|p| p.sock);
                active.retain(|&a| a != i);
                done += 1;
            }
        }
    }
    Ok(ready.into_iter().map(|s| s.expect("every connection is ready")).collect())
}

/// One poll for up to `timeout`; an interrupted poll is a turn with no
/// events (the caller's loop re-checks its clocks either way).
pub fn poll_events(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        Err(e) => Err(format!("poll: {e}")),
    }
}
