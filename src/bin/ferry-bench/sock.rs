//! A load connection's socket: TCP as before, or TLS through the client's
//! non-blocking `ferry::client::transport::TlsClient` (`--tls`), behind the
//! same non-blocking `Read`/`Write` the engines already use. For RESP peers
//! (`--resp --tls`) the configuration trusts whatever certificate the
//! server shows (`--tls-insecure`): a benchmark switch, never a client's.
//!
//! Edge-triggered polling needs two promises from a TLS read: it returns
//! fewer bytes than asked only once the socket is drained (so "a short read
//! emptied the socket" stays true), and ciphertext a write could not push
//! out stays queued until `flush_pending`, which the engines call on every
//! event.

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
        let Some(tls) = &mut self.tls else { return self.tcp.read(buf) };
        let mut got = 0;
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
                Err(e) if got > 0 => {
                    let _ = e;
                    return Ok(got);
                }
                Err(e) => return Err(e),
            }
            match tls.read_from_sock(&mut self.tcp) {
                Ok(_) => {
                    if tls.wants_write() {
                        tls.write_to(&mut self.tcp)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if got > 0 => return Ok(got),
                Err(e) => return Err(e),
            }
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
