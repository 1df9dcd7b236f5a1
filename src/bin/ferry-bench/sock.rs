//! A load connection's socket: TCP as before, or TLS through the client's
//! non-blocking `ferry::client::transport::TlsClient` (`--tls`), behind the
//! same non-blocking `Read`/`Write` the engines already use. For RESP peers
//! (`--resp --tls`) the configuration trusts whatever certificate the
//! server shows (`--tls-insecure`): a benchmark switch, never a client's.
//!
//! Edge-triggered polling needs two promises from a TLS read: it returns
//! fewer bytes than asked only once the socket is drained (so "a short read
//! emptied the socket" stays true; it knows from its own short socket read,
//! and does not read again only to hear WouldBlock), and ciphertext a write
//! could not push out stays queued until `flush_pending`, which the engines
//! call on every event.

use ferry::client::transport::TlsClient;
use ferry::proto::auth::Key;
use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// How TLS connections of a run are made.
#[derive(Clone)]
pub struct TlsSetup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    label: String,
}

impl TlsSetup {
    /// ferry's TLS for `key`: the same configuration as `ferry --tls`.
    pub fn ferry(key: &Key) -> TlsSetup {
        TlsSetup { config: ferry::tls::client_config(key), name: ferry::tls::server_name(&key.id), label: key.id.clone() }
    }

    /// TLS 1.3 to a RESP server, its certificate not checked (only the
    /// handshake's signature is): `--tls-insecure`, for benchmarks only.
    pub fn insecure(host: &str) -> TlsSetup {
        let provider = ferry::tls::provider();
        let verifier = Arc::new(AnyServer(provider.clone()));
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3 suites")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::try_from("localhost").expect("a DNS name"));
        TlsSetup { config: Arc::new(config), name, label: "(resp)".into() }
    }

    pub fn client(&self) -> TlsClient {
        TlsClient::with_name(self.config.clone(), self.name.clone(), &self.label)
    }
}

/// Accepts any server certificate; checks the handshake signature with it.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One load connection.
pub struct Sock {
    pub tcp: TcpStream,
    tls: Option<Box<TlsClient>>,
    /// The digests the server announced in `hello` (ferry; None from an
    /// older server, or before the handshake is over).
    pub digests: Option<Vec<ferry::proto::msg::Digest>>,
}

impl Sock {
    pub fn plain(tcp: TcpStream) -> Sock {
        Sock { tcp, tls: None, digests: None }
    }

    /// Starts TLS on a connection just connected (its ClientHello goes
    /// out with the next `flush_pending`).
    pub fn start_tls(&mut self, tls: TlsClient) {
        self.tls = Some(Box::new(tls));
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes queued ciphertext; a full socket is not an error.
    pub fn flush_pending(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.write_to(&mut self.tcp)?;
        }
        Ok(())
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.read(buf),
            Some(tls) => tls_read(tls, &mut self.tcp, buf),
        }
    }
}

/// A TLS read over `tcp` (see the module doc for its two promises).
fn tls_read<S: Read + Write>(tls: &mut TlsClient, tcp: &mut S, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    // A short socket read emptied it: once its plaintext is taken, this
    // call ends (short, or WouldBlock) without another read (one syscall
    // less per reply; later bytes raise a new edge).
    let mut drained = false;
    loop {
        match tls.plaintext(&mut buf[got..]) {
            Ok(0) => return Ok(got),
            Ok(n) => {
                got += n;
                if got == buf.len() {
                    return Ok(got);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(got),
            Err(_) if got > 0 => return Ok(got),
            Err(e) => return Err(e),
        }
        if drained {
            return if got > 0 { Ok(got) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        match tls.read_from_sock(tcp) {
            Ok(_) => {
                drained = tls.socket_drained();
                if tls.wants_write() {
                    tls.write_to(tcp)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) if got > 0 => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else { return self.tcp.write(buf) };
        if !tls.write_to(&mut self.tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.send(buf)?;
        tls.write_to(&mut self.tcp)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()
    }
}

impl Source for Sock {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.register(r, t, i)
    }

    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.tcp.reregister(r, t, i)
    }

    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.tcp.deregister(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::proto::auth::Keys;
    use rustls::ServerConnection;

    /// An in-memory socket: reads take from `input` (WouldBlock when it is
    /// all taken) and are counted; writes go to `output`.
    #[derive(Default)]
    struct Mem {
        input: Vec<u8>,
        pos: usize,
        reads: usize,
        output: Vec<u8>,
    }

    impl Read for Mem {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.input.len() - self.pos);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Moves the server's records into `mem`'s input.
    fn to_client(server: &mut ServerConnection, mem: &mut Mem) {
        while server.wants_write() {
            server.write_tls(&mut mem.input).unwrap();
        }
    }

    /// Moves the client's records (in `mem`'s output) into the server.
    fn to_server(server: &mut ServerConnection, mem: &mut Mem) {
        let out = std::mem::take(&mut mem.output);
        let mut rd = &out[..];
        while !rd.is_empty() {
            server.read_tls(&mut rd).unwrap();
            server.process_new_packets().unwrap();
        }
    }

    /// A reply that arrives whole costs one socket read (no read that only
    /// says WouldBlock); more than the socket read can take at once is read
    /// on until the socket is empty; a partial record is WouldBlock after one
    /// read.
    #[test]
    fn a_whole_reply_costs_one_socket_read_and_a_big_one_reads_on() {
        let key = Key { id: "bench".into(), secret: "correct horse battery staple".into() };
        let mut server = ferry::tls::ServerTls::new(&Keys { keys: vec![key.clone()] }).accept().unwrap();
        let mut tls = TlsSetup::ferry(&key).client();
        let mut mem = Mem::default();
        let mut buf = vec![0u8; 256 * 1024];
        for _ in 0..10 {
            tls.write_to(&mut mem).unwrap();
            to_server(&mut server, &mut mem);
            to_client(&mut server, &mut mem);
            let _ = tls_read(&mut tls, &mut mem, &mut buf);
            if !tls.is_handshaking() && !server.is_handshaking() && mem.output.is_empty() {
                break;
            }
        }
        assert!(!tls.is_handshaking(), "handshake done");
        tls.write_to(&mut mem).unwrap();
        to_server(&mut server, &mut mem);

        for pong in [&b"pong 1"[..], b"pong 2"] {
            server.writer().write_all(pong).unwrap();
            to_client(&mut server, &mut mem);
            let reads = mem.reads;
            assert_eq!(tls_read(&mut tls, &mut mem, &mut buf).unwrap(), pong.len());
            assert_eq!(&buf[..pong.len()], pong);
            assert_eq!(mem.reads - reads, 1, "one socket read for a whole reply");
        }

        let big = vec![7u8; 48 * 1024];
        server.writer().write_all(&big).unwrap();
        to_client(&mut server, &mut mem);
        let reads = mem.reads;
        let mut got = 0;
        while got < big.len() {
            got += tls_read(&mut tls, &mut mem, &mut buf[got..]).unwrap();
        }
        assert!(buf[..got] == big[..], "all of it, in order");
        assert!(mem.reads - reads >= 2, "the room of one read is smaller than the reply");

        server.writer().write_all(b"cut").unwrap();
        let mut rec = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut rec).unwrap();
        }
        mem.input.extend_from_slice(&rec[..rec.len() - 3]);
        let reads = mem.reads;
        assert_eq!(tls_read(&mut tls, &mut mem, &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(mem.reads - reads, 1, "a partial record: WouldBlock after the short read");
        mem.input.extend_from_slice(&rec[rec.len() - 3..]);
        assert_eq!(tls_read(&mut tls, &mut mem, &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"cut");
    }
}
