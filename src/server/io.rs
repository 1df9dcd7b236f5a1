//! What a connection's transport must offer (`Socket`), and the error-kind
//! predicates every reader and writer in the server matches on.
//!
//! `Socket` is the seam between `conn` and the bytes on the wire: the plain
//! `TcpStream` implements it here, the in-memory `Duplex` in `testing`, and
//! `transport::Transport` (plain, or a TLS session over either) the one the
//! daemon uses: its `Read`/`Write` move plaintext, `wants_write` reports
//! records it still holds, `Write::flush` pushes them out, `send_file` reads
//! and encrypts in chunks. The TLS methods have defaults for a stream that
//! cannot switch. Imports nothing from the rest of the server.

use std::fs::File;
use crate::tls::{ServerTls, TlsError};
use std::io::{self, Read, Write};

/// A connection's byte stream. `read` and `write` follow the non-blocking
/// convention: `WouldBlock` clears the stored readiness.
pub trait Socket: Read + Write {
    /// Half-closes: the peer reads what it is owed, then EOF.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// True while the transport itself holds bytes for the peer that a
    /// `Write::flush` must still push (a TLS session's encrypted records):
    /// the connection keeps flushing, and does not half-close, until it is
    /// false. A plain socket buffers nothing of its own.
    fn wants_write(&self) -> bool {
        false
    }

    /// Asked right after a `read` that returned bytes, for a transport whose
    /// reads are not the socket's (TLS returns plaintext, so the count says
    /// nothing of the socket): true when its own read of the socket was
    /// short, the socket says a short read drains it (`short_read_drains`),
    /// and the transport holds no plaintext back. The connection then skips
    /// the read that would only return `WouldBlock`, under the same rule and
    /// the same exception (an event that said the peer's side is closed).
    /// The default, false: the count read decides (`short_read_drains`).
    fn read_drained(&self) -> bool {
        false
    }

    /// Writes up to `len` bytes of `file` from `*offset`, advancing it. The
    /// default reads and writes (for in-memory test sockets, whose writes are
    /// all or nothing, and for transports that must see the bytes, like TLS);
    /// a plain socket uses `sendfile(2)`.
    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; len.min(64 * 1024)];
        let n = file.read_at(&mut buf, *offset)?;
        let n = self.write(&buf[..n])?;
        *offset += n as u64;
        Ok(n)
    }

    /// True when `send_file` moves the bytes without the CPU copying them
    /// (`sendfile(2)` on a plain socket): a get with a digest then hashes a
    /// chunk in its own buffer and sends the range from the page cache, rather
    /// than queueing the bytes it read.
    fn sends_files(&self) -> bool {
        false
    }

    /// True when a read that returns fewer bytes than asked for has emptied
    /// the kernel's receive queue, so the stored readiness may be cleared
    /// without the read that would only return `EAGAIN`. So for a plain TCP
    /// socket: epoll(7) (Q9) says so for stream sockets in edge-triggered
    /// mode, since bytes that arrive after the read (or while it runs: they
    /// wait in the socket's backlog and are queued when it is released) wake
    /// the poll again. An end of stream queued behind the bytes is not such
    /// an arrival: the connection trusts a short read only until an event
    /// says the peer's side is closed (`Conn::on_socket_hup`). Not so for a
    /// transport that holds bytes of its own (TLS plaintext) nor for the
    /// in-memory test streams, which raise no events.
    fn short_read_drains(&self) -> bool {
        false
    }

    /// Switches to TLS after the sniff: `first` are the client's bytes read
    /// so far (the start of its ClientHello), `clear` output queued in clear
    /// that must go out before the first record.
    fn start_tls(&mut self, _tls: &ServerTls, _first: Vec<u8>, _clear: Vec<u8>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "this transport cannot switch to TLS"))
    }

    /// True while a TLS handshake is under way.
    fn handshaking(&self) -> bool {
        false
    }

    /// Once the handshake is done: the key the client proved (asked once;
    /// None when the transport is not TLS).
    fn peer_key_id(&mut self) -> Option<Result<String, TlsError>> {
        None
    }

    /// Protocol, cipher suite and key exchange group, for the log.
    fn tls_summary(&self) -> Option<String> {
        None
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        Ok(rustix::fs::sendfile(&*self, file, Some(offset), len)?)
    }

    fn sends_files(&self) -> bool {
        true
    }

    fn short_read_drains(&self) -> bool {
        true
    }
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
