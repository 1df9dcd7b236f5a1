//! What a connection's transport must offer (`Socket`), and the error-kind
//! predicates every reader and writer in the server matches on.
//!
//! `Socket` is the seam between `conn` and the bytes on the wire: the plain
//! `TcpStream` implements it here, the in-memory `Duplex` in `testing`, and a
//! TLS session wrapping a `TcpStream` is meant to be one more implementation
//! (its `Read`/`Write` move plaintext, `wants_write` reports records it still
//! holds, `Write::flush` pushes them out, `send_file` falls back to the default
//! copy). Imports nothing from the rest of the server.

use std::fs::File;
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
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, len: usize) -> io::Result<usize> {
        Ok(rustix::fs::sendfile(&*self, file, Some(offset), len)?)
    }
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
