//! Which transport a connection or a datagram uses, and the one
//! non-blocking TLS client every TCP path drives (the blocking `Session`,
//! fan-out, ferry-bench).
//!
//! Selection: TLS 1.3 to any address that is not loopback, v1 in clear to
//! loopback (127.0.0.0/8, ::1), unless `--tls`/`--plaintext` or
//! `FERRY_TRANSPORT` says otherwise. Datagrams follow the same rule:
//! sealed where TCP would use TLS, tagged v1 where it would be in clear.
//!
//! `TlsClient` wraps a rustls `UnbufferedClientConnection` without owning a
//! socket: the caller reads ciphertext into it (`read_from`), takes
//! plaintext out (`plaintext`), queues plaintext (`send`) and writes
//! ciphertext out (`write_to`), each call non-blocking. It also drops the one
//! v1 greeting a ferryd sends at accept to a peer it would let speak in clear
//! (the server sends it before it has seen our first byte, and voids it once
//! it sees a ClientHello), so the callers hand rustls nothing but TLS.
//!
//! The unbuffered API (issue 18: the buffered one cost ferry-bench's TLS
//! ping about 2,400 instructions a request more than plaintext) lets rustls
//! work on our buffers: records are deframed and decrypted where they were
//! read (`rx`, no copy into rustls's own), as the caller asks for plaintext
//! (the part of a record its buffer has no room for waits in `plain`), and
//! application data is encrypted into the one outgoing buffer (`tx`) that
//! `write_to` writes from. Both buffers are kept, so a steady exchange
//! allocates nothing of ours. rustls 0.23 still allocates inside: a `Vec`
//! per decrypted record (`ReadTraffic::next_record` pops `received_plaintext`;
//! "TODO … requires in-place decryption" in its source) and one per record it
//! encrypts (`write_fragments` encodes each into a `Vec` before copying it
//! into our buffer); no public API of 0.23 avoids them.
//!
//! Imports `proto` and `tls` only.

use crate::proto::auth::Key;
use crate::proto::frame::{parse_header, peek_header};
use crate::proto::msg::Reply;
use crate::proto::ProtoError;
use crate::proto::sniff::TLS_HANDSHAKE;
use crate::tls::{client_config_lazy, server_name, ClientKeys, TlsError};
use rustls::pki_types::ServerName;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus, WriteTraffic};
use rustls::ClientConfig;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The environment variable that sets the transport (`tls`, `plaintext`, `auto`).
pub const ENV: &str = "FERRY_TRANSPORT";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// TLS off loopback, clear on loopback.
    #[default]
    Auto,
    /// TLS (sealed datagrams) everywhere, loopback included.
    Tls,
    /// v1 in clear (tagged datagrams) everywhere.
    Plaintext,
}

impl Choice {
    /// From the flags (`--tls`, `--plaintext`; clap keeps them exclusive),
    /// else the environment's value, else `Auto`.
    pub fn from_flags(tls: bool, plaintext: bool, env: Option<&str>) -> Result<Choice, String> {
        match (tls, plaintext) {
            (true, true) => return Err("--tls and --plaintext exclude each other".into()),
            (true, false) => return Ok(Choice::Tls),
            (false, true) => return Ok(Choice::Plaintext),
            (false, false) => {}
        }
        match env.map(str::trim) {
            None | Some("") => Ok(Choice::Auto),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "auto" => Ok(Choice::Auto),
                "tls" => Ok(Choice::Tls),
                "plaintext" | "plain" => Ok(Choice::Plaintext),
                _ => Err(format!("{ENV}={v:?}: expected tls, plaintext or auto")),
            },
        }
    }

    /// Whether a connection to `addr` uses TLS (a datagram to it is sealed).
    pub fn tls_for(self, addr: &SocketAddr) -> bool {
        match self {
            Choice::Tls => true,
            Choice::Plaintext => false,
            Choice::Auto => !is_loopback(addr.ip()),
        }
    }
}

/// 127.0.0.0/8, ::1, and 127.0.0.0/8 mapped into IPv6.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// Where the leading v1 greeting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// No byte from the server yet: a greeting may come first.
    Maybe,
    /// One greeting was dropped: what follows must be TLS.
    Dropped,
    /// TLS records flow to rustls.
    Tls,
}

/// The first byte of a TLS alert record.
const TLS_ALERT: u8 = 0x15;

/// How much ciphertext one socket read takes: a few records at once, so a
/// bulk transfer costs one read per 64 KiB rather than per record.
const RX_CHUNK: usize = 64 * 1024;

/// The room of the first read: the server's flight and a command's replies
/// fit, and a one-shot command never touches (zeroes, faults in) the rest.
/// A read that fills its room doubles the next one, up to `RX_CHUNK`.
const RX_FIRST: usize = 8 * 1024;

/// Makes room for `want` bytes after `rx[..*end]`: drops what was taken
/// (`..*pos`), moving the rest to the front, and grows the vector (zeroed
/// once) only when that is not enough. Whatever is unread stays in order.
fn rx_room(rx: &mut Vec<u8>, pos: &mut usize, end: &mut usize, want: usize) {
    if *pos == *end {
        (*pos, *end) = (0, 0);
    }
    if rx.len() - *end >= want {
        return;
    }
    rx.copy_within(*pos..*end, 0);
    *end -= *pos;
    *pos = 0;
    if rx.len() - *end < want {
        rx.resize(*end + want, 0);
    }
}

/// The most ciphertext `send` lets wait for the socket before it takes no
/// more (the buffered rustls API's default limit, kept).
const TX_LIMIT: usize = 64 * 1024;

/// The most plaintext one `send` encrypts at once (four full records).
const TX_CHUNK: usize = 64 * 1024;

/// A record's size beyond its plaintext (TLS 1.3: a 5-byte header, the
/// content type, a 16-byte tag), rounded up.
const RECORD_OVERHEAD: usize = 32;

/// Makes room for `want` bytes after `buf[..*end]`, as `rx_room` does, for
/// the outgoing buffer (`..*pos` already written).
fn tx_room(buf: &mut Vec<u8>, pos: &mut usize, end: &mut usize, want: usize) {
    rx_room(buf, pos, end, want)
}

/// A ferry TLS client connection without a socket (see the module doc).
pub struct TlsClient {
    conn: UnbufferedClientConnection,
    key_id: String,
    greeting: Greeting,
    /// Ciphertext read from the socket that rustls has not taken yet:
    /// `rx[rx_pos..rx_end]`. The vector stays zeroed up to its length, so a
    /// read never clears memory again (a 64 KiB `resize` per read was most
    /// of a TLS ping's client CPU).
    rx: Vec<u8>,
    rx_pos: usize,
    rx_end: usize,
    /// The room the next read asks for (`RX_FIRST` doubling to `RX_CHUNK`).
    rx_want: usize,
    /// The socket said end of file.
    eof: bool,
    /// The last socket read filled less than its room: the socket was empty.
    short: bool,
    /// Records made and not yet written to the socket: `tx[tx_pos..tx_end]`.
    /// Encrypted straight into it; kept (zeroed once) for the next ones.
    tx: Vec<u8>,
    tx_pos: usize,
    tx_end: usize,
    /// Plaintext decrypted that the caller had no room for:
    /// `plain[plain_pos..]`, handed out before anything else.
    plain: Vec<u8>,
    plain_pos: usize,
    /// rustls holds decrypted records not yet taken (a read stopped at them).
    held: bool,
    /// Plaintext queued during the handshake, encrypted once it is done.
    early: Vec<u8>,
    /// The server's close_notify came: reads end once `plain` is taken.
    peer_closed: bool,
    /// A close was asked for and its close_notify queued (or, before the
    /// handshake ended, given up: the TCP close says it).
    closing: bool,
    /// rustls failed: the connection is never driven again.
    dead: bool,
    /// Identities `new` left to derive (see `derive_identities`).
    keys: Option<Arc<ClientKeys>>,
}

/// Why `drive` stopped.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// No whole record left to process (rustls waits for the socket).
    Input,
    /// Decrypted records wait in rustls (`drive` was given nowhere to put them).
    Plaintext,
    /// The caller's buffer is full.
    Full,
    /// The handshake is done and what there was to send is encrypted.
    Wrote,
    /// Both sides sent close_notify.
    Closed,
}

/// An I/O error carrying a TLS failure (the `TlsError` inside, for `tls_error`).
fn tls_io(e: TlsError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The `TlsError` inside an I/O error made by this module, if any.
pub fn tls_error(e: &io::Error) -> Option<&TlsError> {
    e.get_ref().and_then(|i| i.downcast_ref::<TlsError>())
}

/// The server's bytes were no TLS: an error for the user, as an I/O error.
#[derive(Debug, Clone)]
pub struct NotTls(pub String);

impl std::fmt::Display for NotTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotTls {}

/// The server refused the connection in clear before TLS began (say
/// `too-many-connections`): its error, as the I/O error's inner value.
#[derive(Debug, Clone)]
pub struct RefusedInClear(pub ProtoError);

impl std::fmt::Display for RefusedInClear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server refused the connection: {}", self.0)
    }
}

impl std::error::Error for RefusedInClear {}

fn not_tls(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, NotTls(m))
}

impl TlsClient {
    /// A client for `key` (its configuration built here).
    /// Its identities are derived at `derive_identities` (call it once the
    /// hello is written), or else when the handshake needs them.
    pub fn new(key: &Key) -> TlsClient {
        let (config, keys) = client_config_lazy(key);
        let mut c = TlsClient::with_config(config, &key.id);
        c.keys = Some(keys);
        c
    }

    /// Derives this client's identities now, if `new` left them for later:
    /// a cold client does it while the server answers its hello.
    pub fn derive_identities(&mut self) {
        if let Some(k) = self.keys.take() {
            k.derive();
        }
    }

    /// A client with a configuration already built for the key `key_id`
    /// (fan-out and ferry-bench build it once for many connections).
    pub fn with_config(config: Arc<ClientConfig>, key_id: &str) -> TlsClient {
        TlsClient::with_name(config, server_name(key_id), key_id)
    }

    /// A client of any configuration and server name (ferry-bench's RESP
    /// peer); `key_id` only names the key in failure messages. Its
    /// ClientHello is queued at once (`wants_write`).
    pub fn with_name(config: Arc<ClientConfig>, name: ServerName<'static>, key_id: &str) -> TlsClient {
        let conn = UnbufferedClientConnection::new(config, name).expect("a TLS 1.3 client config connects");
        let mut c = TlsClient {
            conn,
            key_id: key_id.to_string(),
            greeting: Greeting::Maybe,
            rx: Vec::new(),
            rx_pos: 0,
            rx_end: 0,
            rx_want: RX_FIRST,
            eof: false,
            short: false,
            tx: Vec::new(),
            tx_pos: 0,
            tx_end: 0,
            plain: Vec::new(),
            plain_pos: 0,
            held: false,
            early: Vec::new(),
            peer_closed: false,
            closing: false,
            dead: false,
            keys: None,
        };
        c.drive(None, None).expect("a new TLS client makes its ClientHello");
        c
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Ciphertext waits to be written.
    pub fn wants_write(&self) -> bool {
        self.tx_pos < self.tx_end
    }

    /// One read from `sock` (Ok(0): end of file); during the handshake,
    /// its records processed then (after it, records are decrypted as the
    /// caller takes `plaintext`). `WouldBlock` passes through. A failed
    /// handshake (here) or a broken record (here or at `plaintext`) is an
    /// `InvalidData` error carrying a `TlsError`.
    pub fn read_from(&mut self, sock: &mut dyn Read) -> io::Result<usize> {
        rx_room(&mut self.rx, &mut self.rx_pos, &mut self.rx_end, self.rx_want);
        let room = self.rx.len() - self.rx_end;
        let n = sock.read(&mut self.rx[self.rx_end..])?;
        self.rx_end += n;
        self.short = n < room;
        if n == room && self.rx_want < RX_CHUNK {
            self.rx_want = (self.rx_want * 2).min(RX_CHUNK);
        }
        if n == 0 {
            self.eof = true;
        }
        self.feed()?;
        Ok(n)
    }

    /// The last `read_from` took fewer bytes than it had room for, so it
    /// emptied the socket: under edge-triggered polling, bytes that come
    /// later raise a new readable event, and a caller that has taken the
    /// plaintext can wait for it rather than read again to hear `WouldBlock`.
    pub fn socket_drained(&self) -> bool {
        self.short
    }

    /// `read_from`, and on a failed handshake the alert rustls queued
    /// written to `sock` (best effort) before the error is returned, so
    /// the server hears why (and logs the key) instead of a bare close.
    pub fn read_from_sock<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<usize> {
        let r = self.read_from(sock);
        if r.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::WouldBlock) {
            let _ = self.write_to(sock);
        }
        r
    }

    /// Past the greeting, runs rustls over what was read.
    fn feed(&mut self) -> io::Result<()> {
        if self.greeting != Greeting::Tls && !self.skip_greeting()? {
            if self.eof {
                let m = match self.greeting {
                    Greeting::Maybe => "the server closed the connection before the TLS handshake",
                    _ => "the server closed the connection after greeting in clear: it does not speak TLS",
                };
                return Err(not_tls(m.into()));
            }
            return Ok(());
        }
        if !self.conn.is_handshaking() {
            // Records after the handshake are processed as `plaintext` asks.
            return Ok(());
        }
        self.drive(None, None).map(|_| ())
    }

    /// Runs rustls over `rx[rx_pos..rx_end]` until it needs more input, has
    /// closed, or (with `out`) has filled it; without `out`, until it holds
    /// plaintext. Handshake records, alerts, the plaintext `early` and `app`
    /// go into `tx` (`Stop::Wrote` once the last two are encrypted); with
    /// `out`, plaintext goes to `out[*got..]`, what does not fit to `plain`
    /// (an empty `out` parks every record there and runs on to
    /// WriteTraffic). A failure queues rustls's alert and marks the
    /// connection dead.
    fn drive(&mut self, mut out: Option<(&mut [u8], &mut usize)>, app: Option<&[u8]>) -> io::Result<Stop> {
        if self.dead {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: the connection failed earlier"));
        }
        let TlsClient { conn, rx, rx_pos, rx_end, tx, tx_pos, tx_end, plain, held, early, peer_closed, closing, .. } = self;
        let failed = loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut rx[*rx_pos..*rx_end]);
            let state = match state {
                Ok(s) => s,
                Err(e) => {
                    *rx_pos += discard;
                    break e;
                }
            };
            let stop = match state {
                ConnectionState::ReadTraffic(mut rt) => match out.as_mut() {
                    None => {
                        *held = true;
                        Some(Stop::Plaintext)
                    }
                    Some((buf, got)) => {
                        while let Some(rec) = rt.next_record() {
                            let rec = rec.map_err(|e| tls_io(TlsError::Tls(e)))?;
                            let p = rec.payload;
                            let k = (buf.len() - **got).min(p.len());
                            buf[**got..**got + k].copy_from_slice(&p[..k]);
                            **got += k;
                            if k < p.len() {
                                plain.extend_from_slice(&p[k..]);
                            }
                        }
                        *held = false;
                        if buf.is_empty() {
                            // Parking plaintext on the way to WriteTraffic.
                            None
                        } else if **got == buf.len() {
                            Some(Stop::Full)
                        } else if *rx_pos + discard == *rx_end {
                            // Nothing more to process: no call to rustls only to hear so.
                            Some(Stop::Input)
                        } else {
                            None
                        }
                    }
                },
                ConnectionState::EncodeTlsData(mut enc) => {
                    append_growing(tx, tx_pos, tx_end, 1024, |room| {
                        enc.encode(room).map_err(|e| match e {
                            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Short::Needs(required_size),
                            e => Short::Failed(io::Error::other(e)),
                        })
                    })?;
                    None
                }
                // Queued in `tx`: `write_to` sends it, in order.
                ConnectionState::TransmitTlsData(t) => {
                    t.done();
                    None
                }
                ConnectionState::WriteTraffic(mut w) => {
                    if !early.is_empty() {
                        let data = std::mem::take(early);
                        encrypt(&mut w, &data, tx, tx_pos, tx_end)?;
                    }
                    if *closing {
                        *closing = false;
                        append_growing(tx, tx_pos, tx_end, 64, |room| w.queue_close_notify(room).map_err(short))?;
                    }
                    if let Some(data) = app {
                        encrypt(&mut w, data, tx, tx_pos, tx_end)?;
                    }
                    Some(Stop::Wrote)
                }
                ConnectionState::BlockedHandshake => Some(Stop::Input),
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => {
                    *peer_closed = true;
                    Some(Stop::Closed)
                }
                // No early data is offered; nothing else is known.
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: unexpected connection state")),
            };
            *rx_pos += discard;
            if let Some(stop) = stop {
                return Ok(stop);
            }
        };
        // The alert rustls queued for the failure: one more call hands it
        // out (the bytes that failed were discarded above).
        if let Ok(ConnectionState::EncodeTlsData(mut enc)) = conn.process_tls_records(&mut rx[*rx_pos..*rx_end]).state {
            tx_room(tx, tx_pos, tx_end, 1024);
            if let Ok(n) = enc.encode(&mut tx[*tx_end..]) {
                *tx_end += n;
            }
        }
        self.dead = true;
        Err(tls_io(TlsError::on_client(&self.key_id, failed)))
    }

    /// Drops one leading v1 greeting frame; true once TLS bytes follow.
    /// A second frame in clear means a server without TLS: its error, if
    /// it sent one, is the message.
    fn skip_greeting(&mut self) -> io::Result<bool> {
        let pending = &self.rx[self.rx_pos..self.rx_end];
        match pending.first() {
            None => return Ok(false),
            // A handshake record, or an alert (a server refusing our hello).
            Some(&TLS_HANDSHAKE | &TLS_ALERT) => {
                self.greeting = Greeting::Tls;
                return Ok(true);
            }
            Some(0) => {}
            Some(&b) if self.greeting == Greeting::Maybe => {
                return Err(not_tls(format!("the server's first byte 0x{b:02x} starts neither TLS nor a ferry frame")))
            }
            Some(&b) => return Err(not_tls(format!("byte 0x{b:02x} after the greeting starts no TLS record"))),
        }
        let bad = |e: &dyn std::fmt::Display| not_tls(format!("the server sent a broken frame in clear: {e}"));
        let Some((head, used)) = peek_header(pending).map_err(|e| bad(&e))? else { return Ok(false) };
        let h = parse_header(head).map_err(|e| bad(&e))?;
        match (self.greeting, Reply::from_header(&h)) {
            (Greeting::Maybe, Reply::Hello { .. }) if h.size == 0 => {
                self.rx_pos += used;
                self.greeting = Greeting::Dropped;
                self.skip_greeting()
            }
            // An error before reading anything (too-many-connections) ends the connection.
            (Greeting::Maybe, Reply::Error(e)) => Err(io::Error::new(io::ErrorKind::ConnectionRefused, RefusedInClear(e))),
            (_, Reply::Error(e)) => Err(not_tls(format!("the server answered in clear: {e} (it does not speak TLS?)"))),
            (_, _) => Err(not_tls(format!("the server does not speak TLS: it sent a {:?} frame in clear", h.kind))),
        }
    }

    /// Decrypted bytes into `out`: Ok(0) after the server's close_notify,
    /// `WouldBlock` when none are here yet, `UnexpectedEof` when the
    /// connection ended without close_notify. Records are decrypted here,
    /// as many as `out` takes; the rest of one that does not fit is kept
    /// for the next call.
    pub fn plaintext(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.plain_pos < self.plain.len() {
            let k = out.len().min(self.plain.len() - self.plain_pos);
            out[..k].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + k]);
            self.plain_pos += k;
            if self.plain_pos == self.plain.len() {
                self.plain.clear();
                self.plain_pos = 0;
            }
            return Ok(k);
        }
        if out.is_empty() {
            return Ok(0);
        }
        if self.greeting != Greeting::Tls {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut got = 0;
        let stop = if self.rx_pos == self.rx_end && !self.held && !self.dead && !self.conn.is_handshaking() {
            // Nothing to process (the steady state between replies).
            Stop::Input
        } else {
            self.drive(Some((out, &mut got)), None)?
        };
        if got > 0 {
            return Ok(got);
        }
        if stop == Stop::Closed || self.peer_closed {
            return Ok(0);
        }
        if self.eof {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection without close_notify"));
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Whether bytes wait here (ciphertext not yet processed, or plaintext
    /// not yet taken) that a poll(2) on the socket would not show.
    pub fn buffered(&mut self) -> bool {
        self.rx_pos < self.rx_end || self.held || self.plain_pos < self.plain.len()
    }

    /// Plaintext encrypted at once into the outgoing records (queued until
    /// the handshake is done, if it is not): the count taken, 0 when
    /// `TX_LIMIT` bytes already wait for the socket.
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        let waiting = self.tx_end - self.tx_pos + self.early.len();
        if data.is_empty() || waiting >= TX_LIMIT {
            return Ok(0);
        }
        let data = &data[..data.len().min(TX_CHUNK).min(TX_LIMIT - waiting)];
        if self.conn.is_handshaking() || !self.early.is_empty() || self.greeting != Greeting::Tls {
            self.early.extend_from_slice(data);
            if !self.conn.is_handshaking() {
                self.drive_out()?;
            }
            return Ok(data.len());
        }
        // Any record waiting (in rustls or in `rx`) is decrypted into
        // `plain` on the way to WriteTraffic, where `data` is encrypted.
        match self.drive(Some((&mut [], &mut 0)), Some(data))? {
            Stop::Wrote => Ok(data.len()),
            Stop::Closed => Err(io::Error::new(io::ErrorKind::BrokenPipe, "the TLS session is closed")),
            _ => {
                self.early.extend_from_slice(data);
                Ok(data.len())
            }
        }
    }

    /// Drives rustls for what it has to send (`early`, a close_notify): any
    /// plaintext it decrypts on the way is kept in `plain` for the reader.
    fn drive_out(&mut self) -> io::Result<()> {
        if self.greeting != Greeting::Tls && self.rx_pos < self.rx_end {
            // The greeting is not past yet: nothing of the server's to run.
            return Ok(());
        }
        // An empty `out` parks each record's plaintext in `plain`.
        self.drive(Some((&mut [], &mut 0)), None).map(|_| ())
    }

    /// Writes queued ciphertext to `sock`: Ok(true) when none is left,
    /// Ok(false) when the socket is full.
    pub fn write_to(&mut self, sock: &mut dyn Write) -> io::Result<bool> {
        while self.tx_pos < self.tx_end {
            match sock.write(&self.tx[self.tx_pos..self.tx_end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.tx_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        (self.tx_pos, self.tx_end) = (0, 0);
        Ok(true)
    }

    /// Queues a close_notify (write it out with `write_to`). Before the
    /// handshake is done there is none: the TCP close says it.
    pub fn close(&mut self) {
        if self.dead || self.conn.is_handshaking() {
            return;
        }
        self.closing = true;
        let _ = self.drive_out();
    }

    /// "TLS 1.3, TLS13_AES_128_GCM_SHA256, X25519MLKEM768" once negotiated.
    pub fn describe(&self) -> String {
        let version = match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(v) => format!("{v:?}"),
            None => "TLS (handshake not done)".to_string(),
        };
        let suite = self.conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
        let group = self.conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
        [Some(version), suite, group].into_iter().flatten().collect::<Vec<_>>().join(", ")
    }
}

/// Encrypts `data` into `tx[*end..]` as records (grown as needed).
fn encrypt(
    w: &mut WriteTraffic<'_, ClientConnectionData>,
    data: &[u8],
    tx: &mut Vec<u8>,
    pos: &mut usize,
    end: &mut usize,
) -> io::Result<()> {
    let want = data.len() + (data.len() / 16384 + 1) * RECORD_OVERHEAD;
    append_growing(tx, pos, end, want, |room| w.encrypt(data, room).map_err(short))
}

/// Why `append_growing`'s writer did not write.
enum Short {
    /// The room was too small: it needs this many bytes.
    Needs(usize),
    Failed(io::Error),
}

fn short(e: EncryptError) -> Short {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => Short::Needs(required_size),
        e => Short::Failed(io::Error::other(e)),
    }
}

/// Appends to `tx[..*end]` what `put` writes into the room after it (at
/// first `want` bytes), the room grown to what `put` says it needs until
/// it fits (rustls's encoders write into a caller's buffer this way).
fn append_growing(
    tx: &mut Vec<u8>,
    pos: &mut usize,
    end: &mut usize,
    mut want: usize,
    mut put: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    loop {
        tx_room(tx, pos, end, want);
        match put(&mut tx[*end..]) {
            Ok(n) => {
                *end += n;
                return Ok(());
            }
            Err(Short::Needs(n)) => want = n,
            Err(Short::Failed(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
