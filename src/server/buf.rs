//! The output buffer of a connection: encoded frames not yet written.

/// Bytes queued for a socket, with a read cursor so partial writes are cheap.
#[derive(Debug, Default)]
pub struct Buf {
    data: Vec<u8>,
    pos: usize,
}

impl Buf {
    /// Bytes still to write.
    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pending(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// The vector to append encoded frames to.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }

    /// Gives the allocation back when nothing is pending.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.data = Vec::new();
            self.pos = 0;
        }
    }

    /// Marks `n` bytes as written.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.pos += n;
        if self.pos == self.data.len() {
            // Idle connections should cost almost nothing: give big buffers back.
            if self.data.capacity() > 64 * 1024 {
                self.data = Vec::new();
            } else {
                self.data.clear();
            }
            self.pos = 0;
        } else if self.pos >= 64 * 1024 && self.pos * 2 >= self.data.len() {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_consumes_keep_order() {
        let mut b = Buf::default();
        b.tail().extend_from_slice(b"hello world");
        b.consume(6);
        assert_eq!(b.pending(), b"world");
        b.tail().extend_from_slice(b"!");
        assert_eq!(b.pending(), b"world!");
        b.consume(6);
        assert!(b.is_empty());
    }

    #[test]
    fn compacts_after_a_large_partial_write() {
        let mut b = Buf::default();
        b.tail().extend(std::iter::repeat(7u8).take(200_000));
        b.consume(150_000);
        assert_eq!(b.len(), 50_000);
        assert!(b.pending().iter().all(|&x| x == 7));
    }
}
