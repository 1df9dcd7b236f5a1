//! The server name (SNI) a ClientHello carries, read from the client's first
//! records before rustls takes them: rustls's unbuffered server connection
//! keeps the name but has no `server_name()` to give it back, and the key id
//! the client named is what `peer_key_id` and the failure log lines need.
//!
//! Only the parse is done here; rustls still checks the hello. The name is
//! lowercased as rustls does, so both see the same name.

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello is not all there yet.
    Incomplete,
    /// The hello is complete (or is no ClientHello): its host name, if any.
    Done(Option<String>),
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
/// rustls refuses a bigger handshake message anyway.
const MAX_HELLO: usize = 64 * 1024;

/// The SNI host name of the ClientHello at the start of `records` (TLS
/// records, possibly split across several handshake records).
pub fn client_hello_sni(records: &[u8]) -> Sni {
    let mut msg = Vec::new();
    let mut rest = records;
    loop {
        if msg.len() >= 4 {
            let len = u32::from_be_bytes([0, msg[1], msg[2], msg[3]]) as usize;
            if msg[0] != CLIENT_HELLO || len > MAX_HELLO {
                return Sni::Done(None);
            }
            if msg.len() >= 4 + len {
                return Sni::Done(parse_hello(&msg[4..4 + len]));
            }
        }
        if rest.len() < 5 {
            return Sni::Incomplete;
        }
        if rest[0] != HANDSHAKE {
            return Sni::Done(None);
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if rest.len() < 5 + len {
            return Sni::Incomplete;
        }
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
}

/// A cursor over a ClientHello body; `None` when it runs short.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
}

fn parse_hello(body: &[u8]) -> Option<String> {
    let mut r = Rd(body);
    r.take(2 + 32)?; // legacy_version, random
    let n = r.u8()?;
    r.take(n)?; // legacy_session_id
    let n = r.u16()?;
    r.take(n)?; // cipher_suites
    let n = r.u8()?;
    r.take(n)?; // legacy_compression_methods
    let n = r.u16()?;
    let mut exts = Rd(r.take(n)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let n = exts.u16()?;
        let data = exts.take(n)?;
        if kind != 0 {
            continue;
        }
        let mut list = Rd(data);
        let n = list.u16()?;
        let mut names = Rd(list.take(n)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let n = names.u16()?;
            let name = names.take(n)?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(|s| s.to_ascii_lowercase());
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn hello(name: &str) -> Vec<u8> {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn reads_the_name_once_the_hello_is_complete() {
        let h = hello("K-Alice.ferry");
        assert_eq!(client_hello_sni(&h), Sni::Done(Some("k-alice.ferry".into())));
        assert_eq!(client_hello_sni(&h[..h.len() - 1]), Sni::Incomplete);
        assert_eq!(client_hello_sni(&h[..3]), Sni::Incomplete);
    }

    #[test]
    fn a_hello_split_across_records_is_joined() {
        let h = hello("alice.example");
        let body = &h[5..];
        let mut split = Vec::new();
        for part in [&body[..10], &body[10..]] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(client_hello_sni(&split), Sni::Done(Some("alice.example".into())));
    }

    #[test]
    fn no_name_or_no_hello() {
        let h = hello("127.0.0.1"); // an IP address: no SNI
        assert_eq!(client_hello_sni(&h), Sni::Done(None));
        assert_eq!(client_hello_sni(&[23, 3, 3, 0, 1, 0]), Sni::Done(None));
    }
}
