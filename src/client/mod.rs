//! The client: `ferry`'s single commands, its line session, datagram mode
//! and fan-out, all on one core built on `proto` (frames, the handshake
//! state machine, datagrams).
//!
//! This file is that core for TCP: `Session::connect` resolves the target,
//! connects, and runs `proto::handshake` (refusing a server whose `welcome`
//! MAC is wrong). After that the session sends requests and reads reply
//! frames; `exec` streams a command's output to two writers and returns its
//! exit. The writing half is shareable (`Writer`), so another thread can
//! forward stdin or signals while the main thread reads output: the two
//! directions never wait on each other.
//!
//! What lives here, and what each may import (never a module that imports
//! it back):
//! - `exit`: exit statuses, their mappings, `say`. Imports only `term`;
//!   `failure`: a file command's failure as a line and a status (`exit`).
//! - `finish`: a get's local file (`.part`, hashing, mode, mtime, rename).
//!   Imports nothing from the client.
//! - `encoding`, `format`, `target`, `flags`: `--encoding` decoders, `ls`/`stat`
//!   formatting, HOST[:PORT], flag values. Import nothing from the client.
//! - `files`: the file requests (`get`, `put`, `list`, `stat`) on a `Session`.
//! - `transfer`: the file subcommands (`failure`, `files`, `finish`, `format`).
//! - `tree`: directory trees, single, session and fan-out (`files`, `finish`, `format`, `fanout`).
//! - `cli`: the other subcommands and the line session (`exit`, `transfer`).
//! - `udp`: datagram mode, one `Request` state machine for `run -u`,
//!   `ping -u` and fan-out (`exit`, `encoding`).
//! - `fanout/`: `-H` to many hosts (`exit`, `finish`, `udp`); see its doc.
//! - `typo`: edit distance for did-you-mean, telling a mistyped subcommand
//!   from a HOST, naming an argument that is not UTF-8. Imports `term`.
//! - `tty`: our terminal under `run -t` and `shell`: raw mode and its
//!   restoring, the window size, local signals (`exit`).
//! - `transport`: which transport an address gets (TLS off loopback), and
//!   the non-blocking TLS client every TCP path drives (`proto`, `tls`).
//! - `stream`: the blocking stream under a `Session`: TCP, or TLS shared
//!   by the reading and the writing threads (`transport`).
//! - `writer`: the writing half of a `Session`, `--trace` (`stream`).
//!
//! Each may use this file's `Session`, `Error`, `Options` and helpers; this
//! file uses only `exit`, `target`, `stream`, `transport` and `writer`.

pub mod cli;
pub mod encoding;
pub mod exit;
pub mod failure;
pub mod fanout;
pub mod files;
pub mod finish;
pub mod flags;
pub mod format;
pub mod stream;
pub mod target;
pub mod transfer;
pub mod tree;
pub mod transport;
pub mod tty;
pub mod typo;
pub mod udp;
pub mod writer;

use crate::proto::auth::{self, Key};
use crate::proto::digest::Digest;
use crate::proto::frame::parse_header;
use crate::proto::handshake::{self, Handshake, Step};
use crate::proto::msg::{self, Reply, Stream};
use crate::proto::{encode_frame, ErrorCode, Header, ProtoError, MAX_HEADER};
use serde_json::{Map, Value};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use stream::Link;
use transport::Choice;
pub use writer::Writer;
pub(crate) use writer::redacted;
use writer::trace;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use target::Target;

/// Why a client operation failed. `Connect`, `Auth`, `Protocol` and `Io` are
/// "ferry errors" (exit 255); `Remote`, `Local` and `LocalRead` are the
/// server's or the local side's, and the subcommands decide their status.
#[derive(Debug)]
pub enum Error {
    /// Resolving or connecting.
    Connect(String),
    /// The handshake failed (either side's proof was wrong).
    Auth(String),
    /// The peer broke the protocol.
    Protocol(String),
    /// The server answered with an error frame.
    Remote(ProtoError),
    /// The connection failed or timed out.
    Io(io::Error),
    /// The TLS handshake failed, or the server does not speak TLS: no
    /// frame was exchanged (a wrong key ends here).
    Tls(String),
    /// Writing to a local output failed (for example a closed pipe).
    Local(io::Error),
    /// Reading a local input failed (or a file shrank while it was sent).
    LocalRead(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(s) => write!(f, "{s}"),
            Error::Auth(s) => write!(f, "authentication failed: {s}"),
            Error::Tls(s) => write!(f, "TLS: {s}"),
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            // The server's words, then its code (what to search for).
            Error::Remote(e) => write!(f, "{} ({})", e.message, e.code.as_str()),
            // Timeouts `Session` saw carry the host and the stage.
            Error::Io(e) if is_timeout(e) && e.get_ref().is_some() => write!(f, "{e}"),
            Error::Io(e) if is_timeout(e) => write!(f, "timed out"),
            Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => write!(f, "connection closed by the server"),
            Error::Io(e) => write!(f, "{}", io_text(e)),
            Error::Local(e) => write!(f, "local output: {}", io_text(e)),
            Error::LocalRead(e) => write!(f, "local input: {}", io_text(e)),
        }
    }
}

impl std::error::Error for Error {}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// A read timeout as the user should read it: which host, which stage.
fn timed_out(peer: &SocketAddr, stage: &str, after: Option<Duration>) -> Error {
    let after = after.map(|d| format!(" within {}s", d.as_secs_f64())).unwrap_or_default();
    Error::Io(io::Error::new(io::ErrorKind::TimedOut, format!("{peer}: timed out waiting for {stage}{after} (-w sets the limit)")))
}

impl Error {
    /// A failed handshake as the client reports it: a refused key or a
    /// server without the key is `Auth`, another error frame `Remote`.
    pub(crate) fn from_handshake(e: handshake::Error, key: &Key) -> Error {
        match e {
            handshake::Error::Refused(e) if e.code == ErrorCode::AuthFailed => {
                Error::Auth(format!("the server refused key \"{}\": wrong key? (-k names the keys file, -i the key)", key.id))
            }
            // We spoke in clear to a server that takes only TLS from us.
            handshake::Error::Refused(mut e) if e.code == ErrorCode::TlsRequired => {
                e.message = format!("{} (speak TLS: --tls, not --plaintext or {}=plaintext)", e.message, transport::ENV);
                Error::Remote(e)
            }
            handshake::Error::Refused(e) => Error::Remote(e),
            e @ handshake::Error::BadServerMac => Error::Auth(e.to_string()),
            e => Error::Protocol(e.to_string()),
        }
    }
}

impl From<io::Error> for Error {
    /// A TLS failure travels inside an I/O error from `transport`; it comes
    /// out as `Tls`, with its own sentence.
    fn from(e: io::Error) -> Error {
        if let Some(t) = transport::tls_error(&e) {
            return Error::Tls(t.to_string());
        }
        if let Some(n) = e.get_ref().and_then(|i| i.downcast_ref::<transport::NotTls>()) {
            return Error::Tls(n.to_string());
        }
        if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<transport::RefusedInClear>()) {
            return Error::Remote(r.0.clone());
        }
        Error::Io(e)
    }
}

/// Which address family to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Connect timeout and idle (read) timeout, as nc's -w.
    pub timeout: Option<Duration>,
    pub family: Family,
    /// Trace every frame header on stderr (MACs redacted), and say which
    /// transport each connection uses.
    pub trace: bool,
    /// TLS or not: by address (`Auto`), or forced.
    pub transport: Choice,
    /// The digest a get or put asks for (`--digest`); None: the best the
    /// server offers (blake3, else sha256).
    pub digest: Option<Digest>,
}

/// How a remote command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The status a shell would give: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        exit::shell(self.code, self.signal)
    }
}

/// What runs once a pipelined first request is sent (`connect_then`).
type First<'a> = &'a mut dyn FnMut(&Writer);

/// An authenticated connection.
pub struct Session {
    reader: BufReader<Link>,
    writer: Writer,
    /// The server's `hello.server` string.
    pub server: String,
    /// The digests the server announced in `hello`; None from an older
    /// server, which announces none, computes sha256 and takes no trailer.
    pub digests: Option<Vec<Digest>>,
    /// The digest asked for with `--digest` (None: the best offered).
    pub digest_asked: Option<Digest>,
    pub peer: SocketAddr,
    trace: bool,
    /// -w bounds only the wait for a command's first reply (see `timed_until_start`).
    timed_until_start: bool,
    /// The next put may cut the connection (see `last_request`).
    last: bool,
    /// A put cut the connection: nothing more can be asked on it.
    cut: bool,
    /// How this session was opened, to open it again (`reconnect`).
    again: Box<(Target, Key, Options)>,
    /// Called with the new connection each time `reconnect` replaces the
    /// old one (see `on_renew`).
    on_renew: Option<Box<dyn Fn(&Session)>>,
}

impl Session {
    /// Connects to `target` and authenticates with `key`.
    pub fn connect(target: &Target, key: &Key, opts: &Options) -> Result<Session, Error> {
        Session::open(target, key, opts, None)
    }

    /// `connect`, then sends `first` (a request without a body), then calls
    /// `then` with the writer (before reading anything the request caused).
    ///
    /// Over TLS the request is pipelined: it goes in the same write as
    /// `auth`, and `then` runs while the server answers; the server is
    /// already proven by its pinned certificate and runs the request only
    /// after our `auth` succeeds. Its `welcome` MAC is still checked before
    /// this returns, so nothing the request caused is read before that. In
    /// clear the server is not proven when `auth` leaves, so the request
    /// waits for its `welcome`, as any request does.
    pub fn connect_then(
        target: &Target,
        key: &Key,
        opts: &Options,
        first: Map<String, Value>,
        then: impl FnOnce(&Writer),
    ) -> Result<Session, Error> {
        let mut then = Some(then);
        let mut call = |w: &Writer| {
            if let Some(f) = then.take() {
                f(w)
            }
        };
        Session::open(target, key, opts, Some((first, &mut call)))
    }

    fn open(target: &Target, key: &Key, opts: &Options, first: Option<(Map<String, Value>, First<'_>)>) -> Result<Session, Error> {
        let tcp = connect_tcp(target, opts)?;
        let peer = tcp.peer_addr()?;
        tcp.set_nodelay(true)?;
        // The handshake is bounded even without -w: a silent server is an error.
        let bound = opts.timeout.unwrap_or(Duration::from_secs(30));
        let stream = if opts.transport.tls_for(&peer) {
            Link::tls(tcp, key, bound).map_err(|e| match Error::from(e) {
                Error::Io(e) => Error::Connect(format!("TLS handshake with {peer}: {}", io_text(&e))),
                e => e,
            })?
        } else {
            Link::Plain(tcp)
        };
        if opts.trace {
            exit::say(format_args!("{peer}: {}", stream.describe()));
        }
        stream.set_read_timeout(Some(bound))?;
        let writer = Writer { sock: Arc::new(Mutex::new(stream.try_clone()?)), trace: opts.trace };
        let mut s = Session {
            reader: BufReader::with_capacity(reader_capacity(&stream), stream),
            writer,
            server: String::new(),
            digests: None,
            digest_asked: opts.digest,
            peer,
            trace: opts.trace,
            timed_until_start: false,
            last: false,
            cut: false,
            again: Box::new((target.clone(), key.clone(), opts.clone())),
            on_renew: None,
        };
        s.handshake(key, first).map_err(|e| match e {
            Error::Io(io) if is_timeout(&io) => {
                timed_out(&peer, "the handshake", Some(opts.timeout.unwrap_or(Duration::from_secs(30))))
            }
            e => e,
        })?;
        s.reader.get_ref().set_read_timeout(opts.timeout)?;
        // -w bounds a stalled upload as it bounds a silent server.
        s.reader.get_ref().set_write_timeout(opts.timeout)?;
        Ok(s)
    }

    /// The v1 handshake; `first`, if any, sent with `auth` over TLS (see
    /// `connect_then`), after `welcome` in clear.
    fn handshake(&mut self, key: &Key, mut first: Option<(Map<String, Value>, First<'_>)>) -> Result<(), Error> {
        let mut hs = Handshake::new(key, auth::fresh_nonce());
        let tls = self.reader.get_ref().is_tls();
        loop {
            let h = self.recv_header()?;
            let body = self.read_body(h.size)?;
            match hs.on_frame(&h, &body) {
                Step::Send(mut bytes) => match first.take() {
                    Some((req, then)) if tls => {
                        encode_frame(&mut bytes, req, &[]);
                        self.writer.send_encoded(&bytes)?;
                        then(&self.writer);
                    }
                    not_yet => {
                        first = not_yet;
                        self.writer.send_raw(&bytes)?
                    }
                },
                Step::NeedMore => {}
                Step::Done(est) => {
                    self.server = est.server;
                    self.digests = est.digests;
                    if let Some((req, then)) = first {
                        self.writer.send(req, &[])?;
                        then(&self.writer);
                    }
                    return Ok(());
                }
                Step::Failed(e) => return Err(Error::from_handshake(e, key)),
            }
        }
    }

    /// A handle to send frames from another thread.
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    pub fn send(&self, header: Map<String, Value>, body: &[u8]) -> Result<(), Error> {
        Ok(self.writer.send(header, body)?)
    }

    /// Reads the next frame header. Its body (`size` bytes) must be read next.
    pub fn recv_header(&mut self) -> Result<Header, Error> {
        let mut len = [0u8; 4];
        if let Err(e) = self.reader.read_exact(&mut len) {
            if is_timeout(&e) && self.server.is_empty() {
                return Err(Error::Io(e));
            }
            if is_timeout(&e) {
                return Err(timed_out(&self.peer, "a reply", self.reader.get_ref().read_timeout().ok().flatten()));
            }
            return Err(Error::Io(e));
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_HEADER {
            return Err(Error::Protocol(format!("frame header length {len}")));
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        let h = parse_header(&buf).map_err(|e| Error::Protocol(e.to_string()))?;
        if self.trace {
            trace("<", &h.fields);
        }
        Ok(h)
    }

    /// Copies the current frame's body of `size` bytes to `out`.
    pub fn copy_body(&mut self, size: u64, out: &mut dyn Write) -> Result<(), Error> {
        self.copy_body_counting(size, out, &mut 0)
    }

    /// As `copy_body`, adding to `copied` the body bytes consumed, so that
    /// after an error the caller knows how much of the body is left.
    pub(crate) fn copy_body_counting(&mut self, size: u64, out: &mut dyn Write, copied: &mut u64) -> Result<(), Error> {
        let mut left = size;
        let mut big = Vec::new();
        while left > 0 {
            // A big body skips the reader's buffer: read straight into a
            // large one and written with one write each (large writes to
            // disk, one hash update each).
            if self.reader.buffer().is_empty() && left >= files::GET_CHUNK as u64 / 4 {
                if big.is_empty() {
                    big = vec![0u8; files::GET_CHUNK];
                }
                let want = left.min(big.len() as u64) as usize;
                let mut got = 0;
                while got < want {
                    match self.reader.get_mut().read(&mut big[got..want]) {
                        Ok(0) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if got > 0 => {
                            // What arrived is written before the error counts
                            // (and consumed from the stream even if writing fails).
                            *copied += got as u64;
                            out.write_all(&big[..got]).map_err(Error::Local)?;
                            return Err(e.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                // Consumed from the stream whether or not the write works:
                // after a local error (a full disk) the caller drains only
                // what is left of the body, and must not wait for more.
                left -= got as u64;
                *copied += got as u64;
                out.write_all(&big[..got]).map_err(Error::Local)?;
                continue;
            }
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Err(Error::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let n = buf.len().min(left.min(usize::MAX as u64) as usize);
            out.write_all(&buf[..n]).map_err(Error::Local)?;
            self.reader.consume(n);
            left -= n as u64;
            *copied += n as u64;
        }
        Ok(())
    }

    /// Reads the current frame's body into memory (for small bodies).
    pub fn read_body(&mut self, size: u64) -> Result<Vec<u8>, Error> {
        let mut v = Vec::new();
        self.copy_body(size, &mut v)?;
        Ok(v)
    }

    /// One ping; the round trip time.
    pub fn ping(&mut self) -> Result<Duration, Error> {
        let t = Instant::now();
        self.send(msg::request::ping(), &[])?;
        loop {
            let h = self.recv_header()?;
            self.read_body(h.size)?;
            match Reply::from_header(&h) {
                Reply::Pong => return Ok(t.elapsed()),
                Reply::Error(e) => return Err(Error::Remote(e)),
                _ => {}
            }
        }
    }

    /// Runs a command, streaming its stdout and stderr to the writers as the
    /// frames arrive. If `req.stdin` is set, the caller feeds stdin through
    /// `writer()` from another thread (ending with an empty `stdin` frame).
    pub fn exec(&mut self, req: &msg::Exec, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExitStatus, Error> {
        self.send(msg::request::exec(req), &[])?;
        self.read_exec(stdout, stderr)
    }

    /// Reads the replies to an `exec` already sent, up to its `exit`.
    pub fn read_exec(&mut self, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExitStatus, Error> {
        loop {
            let h = self.recv_header()?;
            if std::mem::take(&mut self.timed_until_start) {
                self.reader.get_ref().set_read_timeout(None)?;
                self.reader.get_ref().set_write_timeout(None)?;
            }
            match Reply::from_header(&h) {
                Reply::Output(Stream::Stdout) => {
                    self.copy_body(h.size, stdout)?;
                    stdout.flush().map_err(Error::Local)?;
                }
                Reply::Output(Stream::Stderr) => {
                    self.copy_body(h.size, stderr)?;
                    stderr.flush().map_err(Error::Local)?;
                }
                Reply::Exit { code, signal } => return Ok(ExitStatus { code, signal }),
                Reply::Error(e) => {
                    self.read_body(h.size)?;
                    return Err(Error::Remote(e));
                }
                _ => {
                    self.read_body(h.size)?;
                }
            }
        }
    }

    /// For a person at a terminal (`ferry shell`): from the command's first
    /// reply on (its first output, the prompt), -w no longer applies, so
    /// that it bounds the connect and the command's start, not their idle
    /// time at the prompt, as ssh's ConnectTimeout does.
    pub fn timed_until_start(&mut self) {
        self.timed_until_start = true;
    }

    /// The next request may end this connection: a sized put the server
    /// refuses while the body is on its way (a full disk, a quota) stops
    /// sending then and cuts the connection (see `cut`), instead of sending
    /// the rest for the server to drop so that the connection can go on.
    /// For the next request only.
    pub fn last_request(&mut self) {
        self.last = true;
    }

    /// A refused put cut the connection: a caller with more to ask
    /// connects again.
    pub fn cut(&self) -> bool {
        self.cut
    }

    /// Replaces the connection by a new one to the same server, as this one
    /// was opened: a tree goes on after cutting a refused file short, and a
    /// line session after a cut or an interrupted line. `on_renew`'s
    /// callback is kept and called with the new connection.
    pub fn reconnect(&mut self) -> Result<(), Error> {
        let (target, key, opts) = &*self.again;
        let mut next = Session::open(target, key, opts, None)?;
        next.timed_until_start = self.timed_until_start;
        next.on_renew = self.on_renew.take();
        *self = next;
        if let Some(f) = &self.on_renew {
            f(self);
        }
        Ok(())
    }

    /// `f` runs with the new connection whenever `reconnect` replaces the
    /// connection, also in the middle of a request (a tree): a holder of
    /// the old socket's handle (the line session's INT handler) takes the
    /// new one there and then.
    pub fn on_renew(&mut self, f: impl Fn(&Session) + 'static) {
        self.on_renew = Some(Box::new(f));
    }

    /// The socket's descriptor, to poll(2) it between requests.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.reader.get_ref().as_fd()
    }

    /// Whether reply bytes are already buffered (poll would not see them):
    /// in our buffer, or decrypted or undecrypted inside TLS.
    pub fn buffered(&self) -> bool {
        !self.reader.buffer().is_empty() || self.reader.get_ref().buffered()
    }

    /// Another handle on the socket, to shut it down from another thread
    /// (which interrupts a request blocked reading it, TLS or not).
    pub fn socket_handle(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().tcp_clone()
    }

    /// Between requests the socket turned readable: what the server sent
    /// unasked, as the error that ends the session (an error frame such as
    /// `shutting-down`, or the close itself).
    pub fn unasked(&mut self) -> Error {
        let h = match self.recv_header() {
            Ok(h) => h,
            Err(e) => return e,
        };
        match Reply::from_header(&h) {
            Reply::Error(e) => Error::Remote(e),
            _ => Error::Protocol(format!("unexpected {:?} frame between requests", h.kind)),
        }
    }

    /// The authenticated socket of a session in clear, for callers that
    /// speak frames themselves. Call it between requests, when no reply is
    /// in flight. Panics over TLS (see `try_into_raw`).
    pub fn into_raw(self) -> TcpStream {
        self.try_into_raw().expect("into_raw: the session is in clear")
    }

    /// As `into_raw`; None over TLS, whose socket carries records, not frames.
    pub fn try_into_raw(self) -> Option<TcpStream> {
        debug_assert!(self.reader.buffer().is_empty(), "reply bytes would be lost");
        match self.reader.into_inner() {
            Link::Plain(s) => Some(s),
            Link::Tls(_) => None,
        }
    }

    /// "TLS 1.3, TLS13_AES_128_GCM_SHA256, X25519MLKEM768", or plaintext v1.
    pub fn transport(&self) -> String {
        self.reader.get_ref().describe()
    }

    /// Says goodbye and waits for the server to close.
    pub fn bye(mut self) -> Result<(), Error> {
        self.send(msg::request::bye(), &[])?;
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        Ok(())
    }
}

/// `target`'s addresses of `family`, in the resolver's order (TCP, UDP and
/// fan-out alike); the error names the host.
pub(crate) fn resolve_addrs(target: &Target, family: Family) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", target.host))?
        .filter(|a| match family {
            Family::Any => true,
            Family::V4 => a.is_ipv4(),
            Family::V6 => a.is_ipv6(),
        })
        .collect();
    if addrs.is_empty() {
        return Err(format!("{}: no address of the requested family", target.host));
    }
    Ok(addrs)
}

/// An I/O error as `ls` would say it: without "(os error N)".
pub fn io_text(e: &io::Error) -> String {
    crate::term::io_text(e)
}

/// What to do about a `not-allowed` reply to a one-word (shell) command.
/// A shell command line the exec allow-list refused, as one line: the
/// server's reason, then what to do (its own "(send argv)" is dropped, the
/// hint says it).
pub(crate) fn argv_refusal(server_message: &str) -> String {
    let why = server_message.trim_end_matches(" (send argv)");
    format!("{why}: send argv with `ferry run --argv` (`!PROG ARGS` in the session)")
}

/// The command `run` sends: one word through `sh -c`, several as argv;
/// with `argv` (`run --argv`), argv always, even for one word.
pub(crate) fn command_of(words: &[String], argv: bool) -> msg::Command {
    match words {
        [one] if !argv => msg::Command::Shell(one.clone()),
        _ => msg::Command::Argv(words.to_vec()),
    }
}

/// The session's read buffer: 64 KiB over TCP, where it is never zeroed
/// (`TcpStream` reads into it as it is); one TLS record's plaintext over
/// TLS, where std zeroes the whole buffer at the first read (16 page faults
/// for 64 KiB, a cold command's cost). Big bodies bypass it either way.
fn reader_capacity(link: &Link) -> usize {
    if link.is_tls() {
        16 * 1024
    } else {
        64 * 1024
    }
}

fn connect_tcp(target: &Target, opts: &Options) -> Result<TcpStream, Error> {
    let addrs = resolve_addrs(target, opts.family).map_err(Error::Connect)?;
    let mut last = None;
    for a in &addrs {
        let r = match opts.timeout {
            Some(t) => TcpStream::connect_timeout(a, t),
            None => TcpStream::connect(a),
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one address was tried");
    let what = if is_timeout(&e) { "timed out".to_string() } else { io_text(&e) };
    Err(Error::Connect(format!("cannot connect to {target}: {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::msg::Command;

    #[test]
    fn commands_are_one_shell_word_or_argv() {
        assert_eq!(command_of(&["echo hi".into()], false), Command::Shell("echo hi".into()));
        assert_eq!(command_of(&["echo".into(), "hi".into()], false), Command::Argv(vec!["echo".into(), "hi".into()]));
        assert_eq!(command_of(&["echo".into()], true), Command::Argv(vec!["echo".into()]));
    }

}
