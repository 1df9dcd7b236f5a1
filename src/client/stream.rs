//! The blocking link under a `Session`: a `TcpStream` as it always
//! was (v1 in clear on loopback: nothing added to the fast path), or TLS
//! through one `transport::TlsClient` shared by the reading thread and the
//! writing ones (stdin forwarding, signals).
//!
//! THREADS OVER TLS
//! A rustls connection is one state: reading and writing both go through
//! it, so it sits behind a mutex. The socket is non-blocking and nobody
//! ever sleeps holding that mutex: a reader takes it, drains what rustls
//! has decrypted, reads what the socket has (never more than one 64 KiB
//! read), lets it go, then sleeps in poll(2) on the descriptor; a writer
//! takes it, encrypts a chunk, writes what the socket takes, lets it go
//! and sleeps in poll(2) for POLLOUT if the socket was full. Only the
//! reading thread reads the socket, so its POLLIN wakeups are never stolen;
//! both may write queued ciphertext (a reader flushes alerts and what a
//! sleeping writer left), which TLS allows in any order since rustls
//! queues whole records. A writer keeps the `Writer`'s own lock for a whole
//! frame, so two writers' frames never interleave.
//!
//! Imports `transport` (and `proto`, `tls` through it).

use super::transport::TlsClient;
use crate::proto::auth::Key;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A session's connection.
pub enum Link {
    Plain(TcpStream),
    Tls(Arc<Shared>),
}

/// One TLS connection, shared by a `Session`'s reader and its writers.
pub struct Shared {
    /// Non-blocking.
    sock: TcpStream,
    tls: Mutex<TlsClient>,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sleeps until `fd` is ready for `events` or `deadline` passes (TimedOut).
fn wait(fd: RawFd, events: i16, deadline: Option<Instant>) -> io::Result<()> {
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                left.as_millis().clamp(1, i32::MAX as u128) as i32
            }
        };
        let mut p = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one pollfd on the stack, for the duration of the call.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            -1 => return Err(io::Error::last_os_error()),
            0 => {}
            _ => return Ok(()),
        }
    }
}

fn deadline(t: Option<Duration>) -> Option<Instant> {
    t.map(|t| Instant::now() + t)
}

impl Link {
    /// Runs the TLS handshake for `key` on the connected `sock`, within
    /// `timeout`; the stream then carries v1 frames inside TLS.
    pub fn tls(sock: TcpStream, key: &Key, timeout: Duration) -> io::Result<Link> {
        sock.set_nonblocking(true)?;
        let mut tls = TlsClient::new(key);
        let until = Some(Instant::now() + timeout);
        let fd = sock.as_raw_fd();
        loop {
            tls.write_to(&mut &sock)?;
            // Our hello is out: the server computes its answer meanwhile.
            tls.derive_identities();
            if !tls.is_handshaking() && !tls.wants_write() {
                break;
            }
            match tls.read_from_sock(&mut &sock) {
                Ok(0) if tls.is_handshaking() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let events = libc::POLLIN | if tls.wants_write() { libc::POLLOUT } else { 0 };
            wait(fd, events, until).map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"),
                _ => e,
            })?;
        }
        let shared = Shared { sock, tls: Mutex::new(tls), read_timeout: Mutex::new(None), write_timeout: Mutex::new(None) };
        Ok(Link::Tls(Arc::new(shared)))
    }

    /// A second handle on the same connection (for the `Writer`).
    pub fn try_clone(&self) -> io::Result<Link> {
        Ok(match self {
            Link::Plain(s) => Link::Plain(s.try_clone()?),
            Link::Tls(t) => Link::Tls(t.clone()),
        })
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.set_read_timeout(t),
            Link::Tls(s) => {
                *lock(&s.read_timeout) = t;
                Ok(())
            }
        }
    }

    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match self {
            Link::Plain(s) => s.read_timeout(),
            Link::Tls(s) => Ok(*lock(&s.read_timeout)),
        }
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.set_write_timeout(t),
            Link::Tls(s) => {
                *lock(&s.write_timeout) = t;
                Ok(())
            }
        }
    }

    /// Ends our direction. Over TLS a close_notify goes first (best effort).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.shutdown(how),
            Link::Tls(s) => {
                if how != Shutdown::Read {
                    let mut tls = lock(&s.tls);
                    tls.close();
                    let _ = tls.write_to(&mut &s.sock);
                }
                s.sock.shutdown(how)
            }
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Link::Tls(_))
    }

    /// A second descriptor on the TCP socket itself (to shut it down).
    pub fn tcp_clone(&self) -> io::Result<TcpStream> {
        match self {
            Link::Plain(s) => s.try_clone(),
            Link::Tls(s) => s.sock.try_clone(),
        }
    }

    /// Bytes TLS holds that a poll(2) on the socket would not show.
    pub fn buffered(&self) -> bool {
        match self {
            Link::Plain(_) => false,
            Link::Tls(s) => lock(&s.tls).buffered(),
        }
    }

    /// What `-v` says of the transport.
    pub fn describe(&self) -> String {
        match self {
            Link::Plain(_) => "plaintext v1 (no TLS)".into(),
            Link::Tls(s) => lock(&s.tls).describe(),
        }
    }
}

impl std::os::fd::AsFd for Link {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Link::Plain(s) => s.as_fd(),
            Link::Tls(s) => s.sock.as_fd(),
        }
    }
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Link::Plain(s) => s.as_raw_fd(),
            Link::Tls(s) => s.sock.as_raw_fd(),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush_until(deadline(*lock(&s.write_timeout))),
        }
    }
}

impl Shared {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let until = deadline(*lock(&self.read_timeout));
        loop {
            let want_out = {
                let mut tls = lock(&self.tls);
                match tls.plaintext(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return r,
                }
                // Alerts, and what a writer asleep on POLLOUT left queued.
                tls.write_to(&mut &self.sock)?;
                match tls.read_from(&mut &self.sock) {
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                tls.wants_write()
            };
            let events = libc::POLLIN | if want_out { libc::POLLOUT } else { 0 };
            wait(self.sock.as_raw_fd(), events, until)?;
        }
    }

    /// Encrypts what the send buffer takes of `buf` and writes it all out.
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let until = deadline(*lock(&self.write_timeout));
        loop {
            let n = lock(&self.tls).send(buf)?;
            self.flush_until(until)?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Writes all queued ciphertext, sleeping (unlocked) while the socket is full.
    fn flush_until(&self, until: Option<Instant>) -> io::Result<()> {
        loop {
            if lock(&self.tls).write_to(&mut &self.sock)? {
                return Ok(());
            }
            wait(self.sock.as_raw_fd(), libc::POLLOUT, until)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::Keys;
    use crate::proto::{encode_frame, msg};
    use crate::tls::ServerTls;
    use std::net::TcpListener;

    /// A stub ferryd over a real socket: greets in clear as ferryd does a
    /// loopback peer, then echoes everything inside TLS until close_notify.
    fn echo_server(key: &Key) -> (std::net::SocketAddr, std::thread::JoinHandle<u64>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let tls = ServerTls::new(&Keys { keys: vec![key.clone()] });
        let h = std::thread::spawn(move || {
            let (mut sock, _) = l.accept().unwrap();
            let mut greeting = Vec::new();
            encode_frame(&mut greeting, msg::hello("stub", &"ab".repeat(32)), &[]);
            sock.write_all(&greeting).unwrap();
            let mut s = rustls::StreamOwned::new(tls.accept().unwrap(), sock);
            let mut buf = vec![0u8; 100_000];
            let mut echoed = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        s.write_all(&buf[..n]).unwrap();
                        echoed += n as u64;
                    }
                    Err(_) => break,
                }
            }
            s.conn.send_close_notify();
            let _ = s.flush();
            echoed
        });
        (addr, h)
    }

    #[test]
    fn a_writer_thread_and_a_reader_share_one_tls_connection() {
        let key = Key { id: "k".into(), secret: "s3cret".into() };
        let (addr, server) = echo_server(&key);
        let tcp = TcpStream::connect(addr).unwrap();
        let mut reader = Link::tls(tcp, &key, Duration::from_secs(10)).unwrap();
        assert!(reader.describe().starts_with("TLS 1.3, TLS13_AES_128_GCM_SHA256"), "{}", reader.describe());
        reader.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut writer = reader.try_clone().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let sent = data.clone();
        // The writer outruns what the server echoes: both directions fill,
        // and neither thread may wait on the other.
        let w = std::thread::spawn(move || {
            for c in sent.chunks(50_000) {
                writer.write_all(c).unwrap();
            }
            writer.flush().unwrap();
            writer
        });
        let mut got = vec![0u8; data.len()];
        reader.read_exact(&mut got).unwrap();
        assert!(got == data, "3 MB echoed intact");
        let writer = w.join().unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(server.join().unwrap(), data.len() as u64);
    }

    #[test]
    fn a_silent_server_times_the_handshake_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let key = Key { id: "k".into(), secret: "s".into() };
        let e = Link::tls(tcp, &key, Duration::from_millis(200)).err().expect("no handshake");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(l);
    }
}
