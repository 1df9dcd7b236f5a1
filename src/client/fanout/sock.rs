//! The socket ends of fan-out's TCP hosts: a read through TLS, the queued
//! frames written in clear or through TLS, and a put body sent with
//! sendfile(2) in clear or read and encrypted through TLS.
//! Imports `client::transport` only.

use crate::client::transport::TlsClient;
use mio::net::TcpStream;
use std::fs;
use std::io;
use std::time::Instant;

/// One socket read through TLS: the plaintext appended to `inbuf`. The
/// count read from the socket (0: end of file).
pub(super) fn read_tls(tls: &mut TlsClient, sock: &mut TcpStream, inbuf: &mut Vec<u8>) -> io::Result<usize> {
    let n = tls.read_from_sock(sock)?;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tls.plaintext(&mut chunk) {
            Ok(0) => return Ok(0),
            Ok(m) => inbuf.extend_from_slice(&chunk[..m]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(n.max(1)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => {
                // A handshake failing here: the alert goes out before the close.
                let _ = tls.write_to(sock);
                return Err(e);
            }
        }
    }
}

/// Sends `file` from `*offset` to `end` with sendfile(2): true when all
/// of it went, false when the socket is full.
pub(super) fn send_file(sock: &TcpStream, file: &fs::File, offset: &mut u64, end: u64, last_io: &mut Instant) -> io::Result<bool> {
    while *offset < end {
        let want = (end - *offset).min(1 << 30) as usize;
        match rustix::fs::sendfile(sock, file, Some(offset), want) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent")),
            Ok(_) => *last_io = Instant::now(),
            Err(rustix::io::Errno::AGAIN) => return Ok(false),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// `send_file` through TLS: the file read and encrypted in 64 KiB chunks
/// (userspace TLS cannot sendfile): true when all of it went, false when
/// the socket is full.
pub(super) fn send_file_tls(
    tls: &mut TlsClient,
    sock: &mut TcpStream,
    file: &fs::File,
    offset: &mut u64,
    end: u64,
    last_io: &mut Instant,
) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !tls.write_to(sock)? {
            return Ok(false);
        }
        *last_io = Instant::now();
        if *offset >= end {
            return Ok(true);
        }
        let want = (end - *offset).min(buf.len() as u64) as usize;
        let n = match file.read_at(&mut buf[..want], *offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was sent")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *offset += tls.send(&buf[..n])? as u64;
    }
}

/// Writes `out` until it is empty (true) or the socket is full (false),
/// through `tls` when given; `last_io` is the time of the last write.
pub(super) fn write_out(out: &mut Vec<u8>, tls: Option<&mut TlsClient>, sock: &mut TcpStream, last_io: &mut Instant) -> io::Result<bool> {
    use std::io::Write;
    if let Some(tls) = tls {
        loop {
            if !out.is_empty() && !tls.is_handshaking() {
                let n = tls.send(out)?;
                out.drain(..n);
            }
            let flushed = tls.write_to(sock)?;
            *last_io = Instant::now();
            if !flushed {
                return Ok(false);
            }
            if out.is_empty() || tls.is_handshaking() {
                return Ok(out.is_empty());
            }
        }
    }
    while !out.is_empty() {
        match sock.write(out) {
            Ok(n) => {
                out.drain(..n);
                *last_io = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
