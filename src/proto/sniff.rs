//! Which transport a TCP client speaks, from the first byte it sends.
//!
//! A TLS connection starts with a handshake record: content type 22 (0x16).
//! A v1 connection's first client frame starts with its `u32` big-endian
//! header length, at most 65536, so its first byte is 0 (a v1 client only
//! answers the server's `hello`, so the server must send `hello` on a v1
//! connection before the client writes anything: sniffing is for a server
//! that waits for the client's first byte, a few milliseconds, before it
//! decides whether to greet in clear). Anything else is neither.
//!
//! Pure: the caller passes what it has read so far.

/// The first byte of a TLS record carrying a handshake message.
pub const TLS_HANDSHAKE: u8 = 0x16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TLS ClientHello (TLS 1.3 in ferry's case; the handshake decides).
    Tls,
    /// v1 frames in clear.
    Frames,
}

/// The first byte is neither 0x16 nor 0x00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown(pub u8);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "first byte 0x{:02x} starts neither TLS nor a frame", self.0)
    }
}

impl std::error::Error for Unknown {}

/// `Ok(None)` until a byte has arrived; then the transport, or `Unknown`.
pub fn sniff(buf: &[u8]) -> Result<Option<Transport>, Unknown> {
    match buf.first() {
        None => Ok(None),
        Some(&TLS_HANDSHAKE) => Ok(Some(Transport::Tls)),
        Some(0x00) => Ok(Some(Transport::Frames)),
        Some(&b) => Err(Unknown(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_decides() {
        assert_eq!(sniff(b""), Ok(None));
        assert_eq!(sniff(&[0x16]), Ok(Some(Transport::Tls)));
        assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x02, 0x00]), Ok(Some(Transport::Tls)));
        assert_eq!(sniff(&[0x00]), Ok(Some(Transport::Frames)));
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Err(Unknown(b'G')));
        assert_eq!(sniff(&[0x15, 0x03, 0x03]), Err(Unknown(0x15)), "a TLS alert is not a hello");
        assert_eq!(Unknown(0x47).to_string(), "first byte 0x47 starts neither TLS nor a frame");
    }

    #[test]
    fn every_v1_frame_starts_with_zero() {
        let mut out = Vec::new();
        crate::proto::frame::encode_frame(&mut out, crate::proto::msg::request::ping(), b"");
        assert_eq!(sniff(&out), Ok(Some(Transport::Frames)));
        // The largest header length the codec accepts still has a zero first byte.
        assert_eq!((crate::proto::MAX_HEADER as u32).to_be_bytes()[0], 0);
    }
}
