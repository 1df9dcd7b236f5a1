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

    /// Asked right after a `read` that returned bytes: true when that read
    /// also drained the socket (the transport's read of it was short) and
    /// the transport holds no plaintext back. The reactor polls
    /// edge-triggered, and bytes that arrive later raise a new readable
    /// event, so the connection can wait for that event instead of reading
    /// once more to be told `WouldBlock` (tokio's reading of a short read,
    /// too). Not once the poll has reported the peer's close: that EOF was
    /// signalled with the bytes before it, and the connection reads on to
    /// it. The default, false, keeps reading until `WouldBlock`.
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
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
