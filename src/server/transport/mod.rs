//! A TCP connection's transport: v1 frames in clear on the socket, or TLS 1.3
//! (a rustls `UnbufferedServerConnection`) over it. Both are one `Socket`, so
//! the connection machine reads and writes plaintext either way and never
//! looks inside; it only asks, at the sniff, to switch (`start_tls`).
//!
//! The TLS side uses rustls's unbuffered API, so that an idle session holds
//! no buffer (issue 18: at most 4 KiB of daemon memory per idle TLS
//! connection; the buffered `ServerConnection` keeps a 4 KiB incoming buffer
//! for good). Records are read into, and made in, scratch buffers shared by
//! every connection of the reactor's thread (`SCRATCH`); a connection keeps
//! bytes of its own only while they wait: a partial record in (`incoming`),
//! records the socket did not take yet (`outgoing`), plaintext the reader's
//! buffer had no room for (`plain`). Each is freed (`Vec::new()`) once empty.
//!
//! Edge-triggered: a read returns plaintext held, else reads the socket and
//! runs `process_tls_records` until it yields plaintext, `WouldBlock` or the
//! end; handshake flights go out as soon as they are made. A socket read
//! that came back short emptied the socket: the connection is told so
//! (`read_drained`) and waits for the next readable event rather than read
//! again only to hear `WouldBlock` (one syscall less per request). A write
//! first pushes what waits (the clear greeting, then records: `WouldBlock`
//! while some remain, so no more plaintext is taken), then encrypts and
//! writes.
//! A get reads and encrypts its file in `TLS_CHUNK` pieces (no sendfile: the
//! kernel here has no TLS ULP). A close queues close_notify; the TCP write
//! side is shut once every record is out.
//!
//! rustls's unbuffered connection has no `server_name()`: the SNI (the key id
//! the client named) is read from the ClientHello by `hello` before rustls
//! takes it.
//!
//! Generic over the byte stream so that unit tests run it on `Duplex`.

use super::io::{would_block, Socket};
use crate::tls::{ServerTls, TlsError};
use hello::{client_hello_sni, Sni};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus};
use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Write};

mod hello;

/// Plaintext a TLS get reads and encrypts at once, and the most a write
/// encrypts at once.
/// TLS-NOTES measured records of one's own making at 1.2-1.4 GB/s with 16 KiB
/// and 1.7-2.0 GB/s with 64 KiB. Here (`get_throughput_over_tls`, 256 MiB from
/// the page cache to a rustls client in the test, 2 cores at load 6-9):
/// 16 KiB 0.45 GB/s, 64 KiB 0.45-0.60, 256 KiB 0.53 (capped to 64 KiB): no
/// difference beyond the noise, so the notes' 64 KiB stands.
pub const TLS_CHUNK: usize = 64 * 1024;

pub enum Transport<T> {
    Plain(T),
    Tls(Box<Tls<T>>),
    /// Only while `start_tls` moves the stream from one to the other.
    Switching,
}

impl<T> Transport<T> {
    /// The byte stream underneath (for registering with the poll).
    pub fn stream_mut(&mut self) -> Option<&mut T> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(t) => Some(&mut t.inner),
            Transport::Switching => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "transport switch failed")
}

impl<T: Socket> Read for Transport<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
            Transport::Switching => Err(gone()),
        }
    }
}

impl<T: Socket> Write for Transport<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
            Transport::Switching => Err(gone()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(t) => t.push(),
            Transport::Switching => Err(gone()),
        }
    }
}

impl<T: Socket> Socket for Transport<T> {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown_write(),
            Transport::Tls(t) => t.shutdown_write(),
            Transport::Switching => Err(gone()),
        }
    }

    fn wants_write(&self) -> bool {
        match self {
            Transport::Tls(t) => t.wants_write(),
            _ => false,
        }
    }

    fn read_drained(&self) -> bool {
        match self {
            Transport::Tls(t) => t.drained && t.plain.is_empty() && t.inner.short_read_drains(),
            _ => false,
        }
    }

    fn sends_files(&self) -> bool {
        matches!(self, Transport::Plain(s) if s.sends_files())
    }

    fn short_read_drains(&self) -> bool {
        matches!(self, Transport::Plain(s) if s.short_read_drains())
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.send_file(file, offset, len),
            Transport::Tls(t) => t.send_file(file, offset, len),
            Transport::Switching => Err(gone()),
        }
    }

    fn start_tls(&mut self, tls: &ServerTls, first: Vec<u8>, clear: Vec<u8>) -> io::Result<()> {
        let Transport::Plain(_) = self else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "TLS is already on"));
        };
        let Transport::Plain(inner) = std::mem::replace(self, Transport::Switching) else { unreachable!() };
        let conn = tls.accept_unbuffered().map_err(io::Error::other)?;
        *self = Transport::Tls(Box::new(Tls {
            inner,
            conn,
            incoming: first,
            unseen: true,
            outgoing: clear,
            plain: Vec::new(),
            sni: None,
            hello_read: false,
            server: Some(tls.clone()),
            notified: false,
            shut: false,
            peer_closed: false,
            dead: false,
            drained: false,
        }));
        Ok(())
    }

    fn handshaking(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.conn.is_handshaking())
    }

    fn peer_key_id(&mut self) -> Option<Result<String, TlsError>> {
        let Transport::Tls(t) = self else { return None };
        // The table is only needed up to here: drop the session's hold on it.
        let server = t.server.take()?;
        let id = server.peer_key_id_of(t.sni.as_deref(), t.conn.peer_certificates());
        t.sni = None;
        Some(id)
    }

    fn tls_summary(&self) -> Option<String> {
        let Transport::Tls(t) = self else { return None };
        let suite = t.conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
        let group = t.conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
        Some(format!("TLS 1.3, {}, {}", suite.unwrap_or_default(), group.unwrap_or_default()))
    }
}

/// A TLS session over `inner`. Idle, it holds the rustls connection and
/// empty vectors (no heap bytes of its own).
pub struct Tls<T> {
    inner: T,
    conn: UnbufferedServerConnection,
    /// Record bytes received and not yet taken by rustls (a partial record;
    /// at first the client's bytes the sniff read).
    incoming: Vec<u8>,
    /// `incoming` holds bytes rustls has not seen (the sniffed ones): run
    /// them before reading the socket.
    unseen: bool,
    /// Bytes the socket did not take yet: at first those queued in clear
    /// before the switch (a v1 greeting to a peer in `plaintext_from`, which
    /// goes out before the first record), then records.
    outgoing: Vec<u8>,
    /// Plaintext decrypted that the reader had no room for.
    plain: Vec<u8>,
    /// The server name the ClientHello carried, until the handshake's
    /// outcome is judged.
    sni: Option<Box<str>>,
    hello_read: bool,
    /// Kept until the handshake's outcome is judged, for the key table.
    server: Option<ServerTls>,
    /// close_notify is queued: shut the TCP write side once the records are out.
    notified: bool,
    shut: bool,
    /// The peer sent close_notify: reads end once `plain` is read.
    peer_closed: bool,
    /// rustls failed (or panicked) on this connection: it is never driven
    /// again. Its record position is then out of step with our buffers, and
    /// another call indexes past them (found by the sniff fuzz target).
    dead: bool,
    /// The last socket read was short (fewer bytes than `READ_ROOM`): the
    /// socket was empty then. See `Socket::read_drained`.
    drained: bool,
}

/// Scratch buffers shared by the connections of one reactor thread: records
/// read (`input`), records made (`output`), a get's file chunk (`file`).
struct Scratch {
    input: RefCell<Vec<u8>>,
    output: RefCell<Vec<u8>>,
    file: RefCell<Vec<u8>>,
}

thread_local! {
    static SCRATCH: Scratch = const {
        Scratch { input: RefCell::new(Vec::new()), output: RefCell::new(Vec::new()), file: RefCell::new(Vec::new()) }
    };
}

/// What the socket is read for at once, beyond a partial record held.
const READ_ROOM: usize = 64 * 1024;

/// Why `drive` stopped.
enum Stop {
    /// rustls needs more records.
    Input,
    /// `app` was encrypted (this many bytes of it).
    Sent(usize),
    /// Both sides sent close_notify.
    Closed,
}

/// Sets `v` to no allocation once it is empty.
fn release(v: &mut Vec<u8>) {
    if v.is_empty() && v.capacity() > 0 {
        *v = Vec::new();
    }
}

/// Writes `buf` from the front until done or `WouldBlock`, dropping what went.
fn write_out<T: Write>(inner: &mut T, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut done = 0;
    let r = loop {
        if done == buf.len() {
            break Ok(());
        }
        match inner.write(&buf[done..]) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) => break Err(e),
        }
    };
    buf.drain(..done);
    release(buf);
    r
}

/// Sends records just made: straight to the socket when nothing waits
/// before them, the rest (or all) into `outgoing`. `WouldBlock` is no error:
/// the bytes wait.
fn send<T: Write>(inner: &mut T, outgoing: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let mut done = 0;
    if outgoing.is_empty() {
        while done < bytes.len() {
            match inner.write(&bytes[done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if would_block(&e) => break,
                Err(e) => return Err(e),
            }
        }
    }
    outgoing.extend_from_slice(&bytes[done..]);
    Ok(())
}

/// Grows scratch `buf` to hold `n` more bytes after `len`.
fn room(buf: &mut Vec<u8>, len: usize, n: usize) {
    if buf.len() < len + n {
        buf.resize(len + n, 0);
    }
}

impl<T: Socket> Tls<T> {
    /// Runs rustls over `input` (record bytes not yet taken, from the front)
    /// until it needs more records or, with `app`, has encrypted it; with
    /// `close`, queues close_notify once the handshake allows. Plaintext goes
    /// to `out[*got..]`, what does not fit to `plain`; records made go out
    /// through `send`. Returns the bytes of `input` rustls is done with.
    fn drive(
        &mut self,
        input: &mut [u8],
        out: &mut [u8],
        got: &mut usize,
        app: Option<&[u8]>,
        close: bool,
    ) -> (usize, io::Result<Stop>) {
        // A bug of ours or of rustls on hostile bytes must cost one connection,
        // not the daemon: a panic here becomes an error that closes it.
        if self.dead {
            return (0, Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: the connection failed earlier")));
        }
        let run = std::panic::AssertUnwindSafe(|| self.drive_records(input, out, got, app, close));
        let r = std::panic::catch_unwind(run).unwrap_or_else(|_| {
            (0, Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: internal error (panic) on this connection")))
        });
        if matches!(&r.1, Err(e) if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)) {
            self.dead = true;
        }
        r
    }

    fn drive_records(
        &mut self,
        input: &mut [u8],
        out: &mut [u8],
        got: &mut usize,
        mut app: Option<&[u8]>,
        close: bool,
    ) -> (usize, io::Result<Stop>) {
        SCRATCH.with(|s| {
            let mut ob = s.output.borrow_mut();
            let Tls { inner, conn, outgoing, plain, notified, peer_closed, .. } = self;
            let mut used = 0;
            let mut olen = 0;
            let failed = loop {
                let UnbufferedStatus { discard, state } = conn.process_tls_records(&mut input[used..]);
                let state = match state {
                    Ok(state) => state,
                    Err(e) => {
                        used += discard;
                        break e;
                    }
                };
                let mut extra = 0;
                match state {
                    ConnectionState::ReadTraffic(mut rt) => {
                        while let Some(rec) = rt.next_record() {
                            let rec = match rec {
                                Ok(rec) => rec,
                                Err(e) => return (used + discard, Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                            };
                            extra += rec.discard;
                            let p = rec.payload;
                            let k = (out.len() - *got).min(p.len());
                            out[*got..*got + k].copy_from_slice(&p[..k]);
                            *got += k;
                            plain.extend_from_slice(&p[k..]);
                        }
                    }
                    ConnectionState::EncodeTlsData(mut enc) => loop {
                        match enc.encode(&mut ob[olen..]) {
                            Ok(n) => {
                                olen += n;
                                break;
                            }
                            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                                room(&mut ob, olen, required_size)
                            }
                            Err(e) => return (used + discard, Err(io::Error::other(e))),
                        }
                    },
                    ConnectionState::TransmitTlsData(t) => {
                        if let Err(e) = send(inner, outgoing, &ob[..olen]) {
                            return (used + discard, Err(e));
                        }
                        olen = 0;
                        t.done();
                    }
                    ConnectionState::WriteTraffic(mut w) => {
                        used += discard;
                        if close && !*notified {
                            *notified = true;
                            let n = loop {
                                match w.queue_close_notify(&mut ob[..]) {
                                    Ok(n) => break n,
                                    Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                                        room(&mut ob, 0, required_size)
                                    }
                                    Err(e) => return (used, Err(io::Error::other(e))),
                                }
                            };
                            return (used, send(inner, outgoing, &ob[..n]).map(|()| Stop::Input));
                        }
                        let Some(data) = app.take() else { return (used, Ok(Stop::Input)) };
                        let data = &data[..data.len().min(TLS_CHUNK)];
                        // Records of 16 KiB, each 22 bytes bigger.
                        room(&mut ob, 0, data.len() + (data.len() / 16384 + 1) * 32);
                        let n = loop {
                            match w.encrypt(data, &mut ob[..]) {
                                Ok(n) => break n,
                                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                                    room(&mut ob, 0, required_size)
                                }
                                Err(e) => return (used, Err(io::Error::other(e))),
                            }
                        };
                        return (used, send(inner, outgoing, &ob[..n]).map(|()| Stop::Sent(data.len())));
                    }
                    ConnectionState::BlockedHandshake => {
                        if close {
                            // No close_notify before the handshake is done: the TCP half-close says it.
                            *notified = true;
                        }
                        return (used + discard, Ok(Stop::Input));
                    }
                    ConnectionState::PeerClosed => *peer_closed = true,
                    ConnectionState::Closed => {
                        *peer_closed = true;
                        return (used + discard, Ok(Stop::Closed));
                    }
                    // No early data is offered; nothing else is known.
                    _ => {
                        return (
                            used + discard,
                            Err(io::Error::new(io::ErrorKind::InvalidData, "TLS: unexpected connection state")),
                        )
                    }
                }
                used += discard + extra;
            };
            // The handshake failed: send the alert rustls queued, best effort, and say why.
            // One call only: a queued record is handed out before rustls looks at
            // the input again; a second call would deframe the bad bytes anew
            // (an empty slice made it index past the end and panic; the same
            // slice, fail twice). The bytes it encodes are ours to send.
            if let Ok(ConnectionState::EncodeTlsData(mut enc)) = conn.process_tls_records(&mut input[used..]).state {
                room(&mut ob, olen, 1024);
                if let Ok(n) = enc.encode(&mut ob[olen..]) {
                    olen += n;
                    let _ = send(inner, outgoing, &ob[..olen]).and_then(|()| write_out(inner, outgoing));
                }
            }
            let why = match &self.server {
                Some(s) => s.handshake_error_of(self.sni.as_deref(), failed),
                None => TlsError::Tls(failed),
            };
            (used, Err(io::Error::new(io::ErrorKind::InvalidData, why)))
        })
    }

    /// `drive` over the partial record this connection holds (for writes and
    /// closes: no socket read).
    fn drive_held(&mut self, app: Option<&[u8]>, close: bool) -> io::Result<Stop> {
        let mut input = std::mem::take(&mut self.incoming);
        let (used, r) = self.drive(&mut input, &mut [], &mut 0, app, close);
        input.drain(..used);
        release(&mut input);
        self.incoming = input;
        r
    }

    /// Moves held plaintext into `buf`.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.plain.len());
        buf[..n].copy_from_slice(&self.plain[..n]);
        self.plain.drain(..n);
        release(&mut self.plain);
        n
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plain.is_empty() || buf.is_empty() {
            // Bytes may have come since the socket was last read, their
            // event already spent on this call: the next read asks the socket.
            self.drained = false;
            return Ok(self.take_plain(buf));
        }
        if self.peer_closed {
            return Ok(0);
        }
        SCRATCH.with(|s| {
            let mut sc = s.input.borrow_mut();
            loop {
                // The partial record held, then what the socket has.
                let held = self.incoming.len();
                room(&mut sc, held, READ_ROOM);
                sc[..held].copy_from_slice(&self.incoming);
                self.incoming = Vec::new();
                let mut len = held;
                if self.unseen {
                    self.unseen = false;
                } else {
                    match self.inner.read(&mut sc[held..held + READ_ROOM]) {
                        // The peer closed TCP (without close_notify: an end
                        // like any other; an unfinished frame is never served).
                        // The held record stays: rustls counts it as seen, and
                        // a close drives it again (dropping it made rustls index
                        // past an empty buffer; found by the sniff fuzz target).
                        Ok(0) => {
                            self.incoming = sc[..held].to_vec();
                            return Ok(0);
                        }
                        Ok(n) => {
                            len += n;
                            self.drained = n < READ_ROOM;
                        }
                        Err(e) => {
                            self.incoming = sc[..held].to_vec();
                            return Err(e);
                        }
                    }
                }
                if !self.hello_read {
                    if let Sni::Done(name) = client_hello_sni(&sc[..len]) {
                        self.sni = name.map(String::into_boxed_str);
                        self.hello_read = true;
                    }
                }
                let mut got = 0;
                let (used, r) = self.drive(&mut sc[..len], buf, &mut got, None, false);
                if used < len {
                    self.incoming = sc[used..len].to_vec();
                }
                match r {
                    Err(e) => return Err(e),
                    Ok(_) if got > 0 => return Ok(got),
                    Ok(Stop::Closed) => return Ok(0),
                    Ok(_) if self.peer_closed => return Ok(0),
                    // Records with no plaintext (a handshake flight, a partial
                    // record): read on, to WouldBlock or the end (an EOF queued
                    // behind them raises no event of its own).
                    Ok(_) => {}
                }
            }
        })
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        if buf.is_empty() {
            return Ok(0);
        }
        match self.drive_held(Some(buf), false)? {
            Stop::Sent(n) => Ok(n),
            // Still in the handshake: nothing can be sent yet.
            Stop::Input => Err(io::ErrorKind::WouldBlock.into()),
            Stop::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Writes what waits until done or `WouldBlock`; then the half-close a
    /// close asked for.
    fn push(&mut self) -> io::Result<()> {
        write_out(&mut self.inner, &mut self.outgoing)?;
        if self.notified && !self.shut {
            self.shut = true;
            self.inner.shutdown_write()?;
        }
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.notified {
            // close_notify once the handshake is done; before, or when it
            // failed, the TCP half-close alone says it.
            let _ = self.drive_held(None, true);
            self.notified = true;
        }
        match self.push() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(()),
        }
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.push()?;
        SCRATCH.with(|s| {
            let mut buf = s.file.borrow_mut();
            room(&mut buf, 0, TLS_CHUNK);
            let n = file.read_at(&mut buf[..len.min(TLS_CHUNK)], *offset)?;
            let n = self.write(&buf[..n])?;
            *offset += n as u64;
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests;
