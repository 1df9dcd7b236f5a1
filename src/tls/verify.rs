//! The certificate verifiers: a peer is accepted for its Ed25519 public key
//! alone, pinned to what the shared key derives. Names, validity dates,
//! issuers and extensions are not looked at: the certificate is only the
//! envelope TLS needs for the key. TLS 1.3 only, Ed25519 signatures only,
//! checked by the provider (aws-lc-rs through webpki).

use super::IdentityError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, PeerMisbehaved, SignatureScheme};
use std::collections::HashSet;

/// The peer's Ed25519 public key, from its end-entity certificate.
pub fn cert_public_key(cert: &CertificateDer<'_>) -> Result<[u8; 32], Error> {
    let ee =
        webpki::EndEntityCert::try_from(cert).map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let spki = ee.subject_public_key_info();
    super::identity::ed25519_public_key(spki.as_ref()).ok_or_else(|| IdentityError::NotEd25519.into())
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

/// The handshake signature, Ed25519 only, made by the certificate's key.
fn verify_ed25519(
    algs: &WebPkiSupportedAlgorithms,
    msg: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
    }
    verify_tls13_signature(msg, cert, dss, algs)
}

fn no_tls12() -> Error {
    Error::General("TLS 1.2 is not offered".into())
}

/// The client's verifier: the server must present exactly the server
/// identity of the client's key.
#[derive(Debug)]
pub struct PinnedServer {
    expected: Expected,
    algs: WebPkiSupportedAlgorithms,
}

/// The server public key a `PinnedServer` wants.
enum Expected {
    Known([u8; 32]),
    /// Derived when first needed (the client derives it while the server
    /// answers its hello: see `config::ClientKeys`).
    Derived(std::sync::Arc<dyn Fn() -> [u8; 32] + Send + Sync>),
}

impl std::fmt::Debug for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Known(k) => write!(f, "Known({k:02x?})"),
            Expected::Derived(_) => f.write_str("Derived"),
        }
    }
}

impl PinnedServer {
    pub fn new(server_public_key: [u8; 32]) -> PinnedServer {
        PinnedServer { expected: Expected::Known(server_public_key), algs: algorithms() }
    }

    /// Pinned to the key `derive` returns, called at each check (it is
    /// expected to compute once and remember).
    pub fn derived(derive: std::sync::Arc<dyn Fn() -> [u8; 32] + Send + Sync>) -> PinnedServer {
        PinnedServer { expected: Expected::Derived(derive), algs: algorithms() }
    }

    fn expected(&self) -> [u8; 32] {
        match &self.expected {
            Expected::Known(k) => *k,
            Expected::Derived(f) => f(),
        }
    }
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if cert_public_key(end_entity)? != self.expected() {
            return Err(IdentityError::ServerMismatch.into());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_ed25519(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server's verifier: a client certificate is required, and its key
/// must be the client identity of one of the keys. Which one the client
/// named (SNI) is not visible here: `ServerTls::peer_key_id` checks that
/// after the handshake.
#[derive(Debug)]
pub struct KnownClients {
    keys: HashSet<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl KnownClients {
    pub fn new(client_public_keys: impl IntoIterator<Item = [u8; 32]>) -> KnownClients {
        KnownClients { keys: client_public_keys.into_iter().collect(), algs: algorithms() }
    }
}

impl ClientCertVerifier for KnownClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if !self.keys.contains(&cert_public_key(end_entity)?) {
            return Err(IdentityError::UnknownClient.into());
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(no_tls12())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_ed25519(&self.algs, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
