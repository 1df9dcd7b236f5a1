//! A TCP connection's transport: v1 frames in clear on the socket, or TLS 1.3
//! (a rustls `ServerConnection`) over it. Both are one `Socket`, so the
//! connection machine reads and writes plaintext either way and never
//! looks inside; it only asks, at the sniff, to switch (`start_tls`).
//!
//! The TLS side follows rustls's mio example, edge-triggered: a read drains
//! the plaintext rustls holds, then `read_tls` until `WouldBlock`, each batch
//! through `process_new_packets`; a write first pushes the records still
//! queued (`write_tls` until `WouldBlock`, which the write then reports, so
//! no more plaintext is taken while records wait), encrypts, and pushes
//! again. A get reads and encrypts its file in `TLS_CHUNK` pieces (no
//! sendfile: the kernel here has no TLS ULP). A close queues close_notify;
//! the TCP write side is shut once every record is out.
//!
//! Generic over the byte stream so that unit tests run it on `Duplex`.

use super::io::{would_block, Socket};
use crate::tls::{ServerTls, TlsError};
use rustls::ServerConnection;
use std::fs::File;
use std::io::{self, Read, Write};

/// Plaintext a TLS get reads and encrypts at once (at most: rustls queues
/// at most 64 KiB of records by default, so a bigger chunk is cut to that).
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
        let conn = tls.accept().map_err(io::Error::other)?;
        *self = Transport::Tls(Box::new(Tls {
            inner,
            conn,
            first,
            clear,
            server: Some(tls.clone()),
            notified: false,
            shut: false,
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
        Some(server.peer_key_id(&t.conn))
    }

    fn tls_summary(&self) -> Option<String> {
        let Transport::Tls(t) = self else { return None };
        let suite = t.conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
        let group = t.conn.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
        Some(format!("TLS 1.3, {}, {}", suite.unwrap_or_default(), group.unwrap_or_default()))
    }
}

/// A TLS session over `inner`.
pub struct Tls<T> {
    inner: T,
    conn: ServerConnection,
    /// The client's first bytes, read by the sniff before the switch: rustls
    /// reads them before the stream.
    first: Vec<u8>,
    /// Bytes queued in clear before the switch (a v1 greeting to a peer in
    /// `plaintext_from`): they go out before the first record.
    clear: Vec<u8>,
    /// Kept until the handshake's outcome is judged, for the key table.
    server: Option<ServerTls>,
    /// close_notify is queued: shut the TCP write side once the records are out.
    notified: bool,
    shut: bool,
}

/// What `read_tls` reads: the sniffed bytes first, then the stream.
struct Source<'a, T> {
    first: &'a mut Vec<u8>,
    inner: &'a mut T,
}

impl<T: Read> Read for Source<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.first.is_empty() {
            return self.inner.read(buf);
        }
        let n = buf.len().min(self.first.len());
        buf[..n].copy_from_slice(&self.first[..n]);
        self.first.drain(..n);
        if self.first.is_empty() {
            // The sniffed bytes held a ClientHello at most: give the room back.
            *self.first = Vec::new();
        }
        Ok(n)
    }
}

impl<T: Socket> Tls<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => {}
                // The peer closed TCP without close_notify: an end like any other
                // (an unfinished frame is never served).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let mut src = Source { first: &mut self.first, inner: &mut self.inner };
            match self.conn.read_tls(&mut src) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(err) = self.conn.process_new_packets() {
                // Send the alert rustls queued, best effort, and say why.
                let _ = self.push();
                let why = match &self.server {
                    Some(s) => s.handshake_error(&self.conn, err),
                    None => TlsError::Tls(err),
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
            // Handshake flights go out as soon as they are made.
            match self.push() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push()?;
        let n = self.conn.writer().write(buf)?;
        match self.push() {
            Ok(()) => Ok(n),
            Err(e) if would_block(&e) => Ok(n),
            Err(e) => Err(e),
        }
    }

    fn wants_write(&self) -> bool {
        !self.clear.is_empty() || self.conn.wants_write()
    }

    /// Writes what is queued (clear bytes, then records) until done or
    /// `WouldBlock`; then the half-close a close asked for.
    fn push(&mut self) -> io::Result<()> {
        while !self.clear.is_empty() {
            match self.inner.write(&self.clear)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    self.clear.drain(..n);
                }
            }
        }
        if self.clear.capacity() > 0 && self.clear.is_empty() {
            self.clear = Vec::new();
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.inner)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        if self.notified && !self.shut {
            self.shut = true;
            self.inner.shutdown_write()?;
        }
        Ok(())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if !self.notified {
            self.notified = true;
            self.conn.send_close_notify();
        }
        match self.push() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(()),
        }
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.push()?;
        let mut buf = vec![0; len.min(TLS_CHUNK)];
        let n = file.read_at(&mut buf, *offset)?;
        let n = self.write(&buf[..n])?;
        *offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
