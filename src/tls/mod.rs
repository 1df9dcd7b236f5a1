//! TLS 1.3 keyed by the shared key: the pieces the reactor and the client
//! wire in. No sockets here: rustls connections are driven by their owner.
//!
//! rustls 0.23 has no external-PSK mode, so each key of the keys file
//! becomes two Ed25519 identities (HKDF from its secret, the key id bound
//! in), each side presents a self-signed certificate for its own, and each
//! checks that the peer's public key is the one derived from the key
//! (libp2p's and Syncthing's approach). The client names its key id in SNI.
//!
//! - `identity`: the derivation, the certificates, the SNI name of a key id,
//!   the datagram keys.
//! - `verify`: the pinned-key certificate verifiers of both sides.
//! - `config`: the rustls configurations (`ServerTls`, `client_config`) and
//!   the post-handshake check of which key a client used.
//! - `sign`: a rustls signing key over an Ed25519 pair already derived.
//! - `export`: a key's client certificate and private key as PEM, for
//!   `openssl s_client` and other clients.
//!
//! Errors are typed: a refused identity travels inside rustls's error as
//! `IdentityError`, and `TlsError` turns a failed handshake into the
//! sentence a user or an operator needs.

pub mod config;
pub mod export;
pub mod identity;
pub mod sign;
pub mod verify;

pub use config::{client_config, client_config_lazy, connect, provider, server_name, ClientKeys, ServerTls};
pub use identity::{datagram_keys, parse_sni, sni_name, Identity, Role, SniKey};

use rustls::{AlertDescription, CertificateError, Error};
use std::sync::Arc;

/// Why a verifier refused a peer's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// The certificate's key is not Ed25519.
    NotEd25519,
    /// (client) The server's key is not the one derived from our key.
    ServerMismatch,
    /// (server) The client's key is no key's client identity.
    UnknownClient,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdentityError::NotEd25519 => "the certificate's key is not Ed25519",
            IdentityError::ServerMismatch => "the server's key is not the key's server identity",
            IdentityError::UnknownClient => "the client's key is no key's client identity",
        })
    }
}

impl std::error::Error for IdentityError {}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Error {
        Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
    }
}

impl IdentityError {
    /// The `IdentityError` inside a rustls error, if that is what it is.
    pub fn of(err: &Error) -> Option<IdentityError> {
        match err {
            Error::InvalidCertificate(CertificateError::Other(o)) => o.0.downcast_ref::<IdentityError>().copied(),
            _ => None,
        }
    }
}

/// A TLS handshake that failed, as the user or the operator should read it.
#[derive(Debug, Clone)]
pub enum TlsError {
    /// (client) The server presented another identity than the key gives:
    /// it holds another secret for this id, or it is not the server meant.
    ServerIdentityMismatch { key_id: String },
    /// (client) The server refused our identity (it holds another secret).
    RefusedByServer { key_id: String },
    /// (client) The server has no key with this id.
    UnknownToServer { key_id: String },
    /// (server) The client named no key we hold (`name` is its SNI, if any).
    UnknownKeyId { name: Option<String> },
    /// (server) The client sent no certificate (`key_id`: the key it named).
    NoClientCertificate { key_id: Option<String> },
    /// (server) The client's certificate is no key's client identity.
    UnknownClientIdentity { key_id: Option<String> },
    /// (server) The client's identity belongs to another key than it named.
    KeyMismatch { key_id: String },
    /// (server) The client refused our identity (it holds another secret).
    RefusedByClient { key_id: Option<String> },
    /// Anything else: not ferry's TLS, a broken peer, I/O-level garbage.
    Tls(Error),
}

fn id_or_unknown(id: &Option<String>) -> &str {
    id.as_deref().unwrap_or("(none named)")
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::ServerIdentityMismatch { key_id } => {
                write!(f, "the server does not hold key {key_id} as given here (another secret, or no such key): wrong key?")
            }
            TlsError::RefusedByServer { key_id } => write!(f, "the server refused key {key_id}: wrong key?"),
            TlsError::UnknownToServer { key_id } => write!(f, "the server does not know key {key_id}"),
            TlsError::UnknownKeyId { name: Some(n) } => match identity::parse_sni(n) {
                Some(identity::SniKey::Id(id)) => write!(f, "TLS client named no known key ID {id:?}"),
                _ => write!(f, "TLS client named no known key ID (server name {n:?})"),
            },
            TlsError::UnknownKeyId { name: None } => write!(f, "TLS client named no key (no server name)"),
            TlsError::NoClientCertificate { key_id } => {
                write!(f, "key {}: TLS: peer sent no certificates (not a ferry client?)", id_or_unknown(key_id))
            }
            TlsError::UnknownClientIdentity { key_id } => {
                write!(f, "key {}: client identity is no key's: wrong key?", id_or_unknown(key_id))
            }
            TlsError::KeyMismatch { key_id } => write!(f, "key {key_id}: client identity belongs to another key"),
            TlsError::RefusedByClient { key_id } => {
                write!(f, "key {}: the client refused our identity: wrong key?", id_or_unknown(key_id))
            }
            TlsError::Tls(e) => write!(f, "TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    /// What a client's failed handshake with key `key_id` means.
    pub fn on_client(key_id: &str, err: Error) -> TlsError {
        let key_id = key_id.to_string();
        match (&err, IdentityError::of(&err)) {
            (_, Some(IdentityError::ServerMismatch)) => TlsError::ServerIdentityMismatch { key_id },
            (Error::AlertReceived(AlertDescription::BadCertificate | AlertDescription::CertificateUnknown), _) => {
                TlsError::RefusedByServer { key_id }
            }
            (Error::AlertReceived(AlertDescription::AccessDenied), _) => TlsError::UnknownToServer { key_id },
            _ => TlsError::Tls(err),
        }
    }
}
