//! The socket side of a connection: queued output written until `WouldBlock`,
//! input read into the buffer (or discarded while closing), a put's body
//! read straight into the put's write buffer, readiness cleared when the
//! socket says so.

use super::{Conn, Phase, Sink, IN_CAP};
use crate::server::io::{interrupted, would_block, Socket};

impl<S: Socket> Conn<S> {

    /// Writes queued output until `WouldBlock`. Returns bytes written.
    pub(super) fn flush(&mut self) -> usize {
        let mut total = 0;
        while self.sock_write && !self.out.is_empty() {
            match self.sock.write(self.out.pending()) {
                Ok(0) => {
                    self.close_now("socket write returned 0");
                    return total;
                }
                Ok(n) => {
                    self.out.consume(n);
                    total += n;
                }
                Err(e) if would_block(&e) => self.sock_write = false,
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return total;
                }
            }
        }
        // A transport with bytes of its own to push (TLS records) gets them out
        // before the connection counts its output as sent.
        if self.sock_write && self.out.is_empty() && self.sock.wants_write() {
            match self.sock.flush() {
                Ok(()) => {}
                Err(e) if would_block(&e) => self.sock_write = false,
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return total;
                }
            }
        }
        if total > 0 {
            self.last_active = self.now;
        }
        if let Phase::Closing { shut: shut @ false, .. } = &mut self.phase {
            if self.out.is_empty() && !self.sock.wants_write() {
                // Half-close: the peer reads what it is owed, then EOF.
                let _ = self.sock.shutdown_write();
                *shut = true;
                total += 1;
            }
        }
        total
    }

    /// After a read of `n` bytes of the `want` asked for: a short read of a
    /// socket that says so has emptied its queue, and the read that would
    /// only return `WouldBlock` is skipped (see `Socket::short_read_drains`);
    /// so does a TLS transport whose own read of the socket was short
    /// (`Socket::read_drained`).
    fn drained(&mut self, n: usize, want: usize) {
        if !self.peer_hup && ((n < want && self.sock.short_read_drains()) || self.sock.read_drained()) {
            self.sock_read = false;
        }
    }

    /// Reads the socket into the input buffer (or, when closing, discards).
    pub(super) fn fill(&mut self, scratch: &mut [u8]) -> usize {
        if !self.sock_read || self.peer_eof || self.is_closed() {
            return 0;
        }
        if let Some(n) = self.fill_body() {
            return n;
        }
        let discard = matches!(self.phase, Phase::Closing { .. });
        let room = if discard { scratch.len() } else { IN_CAP.saturating_sub(self.inbuf.len()).min(scratch.len()) };
        if room == 0 {
            return 0;
        }
        loop {
            match self.sock.read(&mut scratch[..room]) {
                Ok(0) => {
                    self.peer_eof = true;
                    return 1;
                }
                Ok(n) => {
                    if !discard {
                        self.inbuf.extend_from_slice(&scratch[..n]);
                    } else if let Phase::Closing { prompt, .. } = &mut self.phase {
                        // The peer is still talking: close only once it hangs up.
                        *prompt = false;
                    }
                    self.last_active = self.now;
                    self.drained(n, room);
                    return n;
                }
                Err(e) if would_block(&e) => {
                    self.sock_read = false;
                    return 0;
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return 0;
                }
            }
        }
    }

    /// Reads a body the op takes straight from the socket (a put's), with no
    /// copy through the input buffer: only between frames' headers, when
    /// nothing is left unparsed. None when this does not apply.
    fn fill_body(&mut self) -> Option<usize> {
        let remaining = self.decoder.body_remaining();
        if remaining == 0 || !self.inbuf.is_empty() {
            return None;
        }
        let (Sink::Op { ends_op }, Phase::Running(op)) = (self.sink, &mut self.phase) else { return None };
        let room = op.body_room(remaining)?;
        let want = room.len();
        let n = loop {
            match self.sock.read(room) {
                Ok(0) => {
                    self.peer_eof = true;
                    return Some(1);
                }
                Ok(n) => break n,
                Err(e) if would_block(&e) => {
                    self.sock_read = false;
                    return Some(0);
                }
                Err(e) if interrupted(&e) => {}
                Err(e) => {
                    self.close_io(&e);
                    return Some(0);
                }
            }
        };
        self.last_active = self.now;
        if !self.peer_hup && ((n < want && self.sock.short_read_drains()) || self.sock.read_drained()) {
            self.sock_read = false;
        }
        let last = self.decoder.take_body(n as u64);
        if let Some(a) = &mut self.access {
            a.bytes_in += n as u64;
        }
        if let Some(err) = op.body_filled(n) {
            let id = op.id().cloned();
            self.fail(err, id);
        }
        if last && ends_op {
            self.end_body();
        }
        Some(n)
    }
}
