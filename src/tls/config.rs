//! The rustls configurations: `ServerTls` for ferryd (every key's server
//! identity behind an SNI resolver, every key's client identity accepted),
//! `client_config` for one key, and the check after a server handshake of
//! which key the client used.
//!
//! Both sides: TLS 1.3 only; AES-128-GCM first (the fastest here), then
//! AES-256-GCM and ChaCha20-Poly1305; X25519MLKEM768 first, X25519 for peers
//! without it; no resumption (every connection proves the key afresh, and
//! an idle server keeps no tickets).
//!
//! Rebuilding is cheap enough for SIGHUP: `ServerTls::reload` derives only
//! the keys that are new or whose secret changed, and connections already
//! open keep the configuration they started with (rustls holds an `Arc`).

use super::identity::{id_digest, parse_sni, sni_name, Identity, Role, SniKey};
use super::sign::Ed25519Key;
use super::verify::{cert_public_key, KnownClients, PinnedServer};
use super::{IdentityError, TlsError};
use crate::proto::auth::{Key, Keys};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, Error, ServerConfig, ServerConnection, SignatureScheme};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The aws-lc-rs provider cut to what ferry offers.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
        aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    p.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768, aws_lc_rs::kx_group::X25519];
    Arc::new(p)
}

fn certified(provider: &CryptoProvider, id: &Identity) -> Arc<CertifiedKey> {
    let signer = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(id.pkcs8()))
        .expect("the provider loads the Ed25519 keys we encode");
    Arc::new(CertifiedKey::new(vec![id.cert()], signer))
}

/// The SNI name a client sends for `key_id` (see `identity::sni_name`).
pub fn server_name(key_id: &str) -> ServerName<'static> {
    ServerName::try_from(sni_name(key_id)).expect("sni_name makes valid DNS names")
}

/// A client's configuration for `key`: its client identity, and the
/// server pinned to the key's server identity. Infallible: every secret
/// derives valid keys, and the provider supports what is asked of it
/// (the `expect`s are checked by every test that connects).
pub fn client_config(key: &Key) -> Arc<ClientConfig> {
    client_config_lazy(key).0
}

/// `client_config`, with its identities not derived yet: they are derived
/// at the first `ClientKeys::derive` or when the handshake first needs
/// them. A cold client derives them after its hello is written, while the
/// server computes its answer, instead of before.
pub fn client_config_lazy(key: &Key) -> (Arc<ClientConfig>, Arc<ClientKeys>) {
    let keys = Arc::new(ClientKeys { key: key.clone(), server: OnceLock::new(), client: OnceLock::new() });
    let pinned = keys.clone();
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the provider has TLS 1.3 suites")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer::derived(Arc::new(move || pinned.server_key()))))
        .with_client_cert_resolver(keys.clone());
    cfg.resumption = Resumption::disabled();
    (Arc::new(cfg), keys)
}

/// A client's identities for one key, derived once, when first needed:
/// the server's public key it pins and its own certified key.
pub struct ClientKeys {
    key: Key,
    server: OnceLock<[u8; 32]>,
    client: OnceLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKeys({:?})", self.key.id)
    }
}

impl ClientKeys {
    /// Derives both identities now (if not yet done).
    pub fn derive(&self) {
        self.server_key();
        self.certified();
    }

    fn server_key(&self) -> [u8; 32] {
        *self.server.get_or_init(|| *Identity::derive(&self.key, Role::Server).public_key())
    }

    fn certified(&self) -> Arc<CertifiedKey> {
        self.client
            .get_or_init(|| {
                let (client, pair) = Identity::derive_with_pair(&self.key, Role::Client);
                let cert = client.cert_signed(&pair);
                Arc::new(CertifiedKey::new(vec![cert], Arc::new(Ed25519Key::new(pair))))
            })
            .clone()
    }
}

impl ResolvesClientCert for ClientKeys {
    fn resolve(&self, _root_hint_subjects: &[&[u8]], _sigschemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.certified())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client connection for `key` (the configuration built each time; keep
/// `client_config`'s `Arc` to connect many times).
pub fn connect(key: &Key) -> Result<ClientConnection, Error> {
    ClientConnection::new(client_config(key), server_name(&key.id))
}

/// What the server holds for one key.
#[derive(Debug)]
struct Entry {
    id: String,
    /// Kept to tell, at reload, whether the key changed.
    secret: String,
    server: Arc<CertifiedKey>,
    client_public: [u8; 32],
}

/// Every key's entry, found by id, or by SHA-256 of the id for long ids.
#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<String, Arc<Entry>>,
    by_digest: HashMap<[u8; 32], Arc<Entry>>,
}

impl Table {
    fn find(&self, sni: &SniKey) -> Option<&Arc<Entry>> {
        match sni {
            SniKey::Id(id) => self.by_id.get(id),
            SniKey::Digest(d) => self.by_digest.get(d),
        }
    }

    fn by_name(&self, name: Option<&str>) -> Option<&Arc<Entry>> {
        self.find(&parse_sni(name?)?)
    }
}

/// The server's certificate for the key the client names in SNI. For a
/// name of no key held here, a decoy (`decoy_identity`): the client sees
/// the same identity mismatch as with a wrong secret, so key ids cannot be
/// probed. None (the handshake fails with `access_denied`) without a name.
#[derive(Debug)]
struct Resolver {
    table: Arc<Table>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        match self.table.by_name(Some(name)) {
            Some(e) => Some(e.server.clone()),
            None => Some(certified(&self.provider, &decoy_identity(name))),
        }
    }
}

/// The HKDF label of decoy identities.
const DECOY_LABEL: &str = "ferry-tls-decoy";

/// A server identity for an SNI name that names no key held here: derived
/// from a random secret of this process and the name, so the same name
/// gets the same identity while the process lives, and no client can tell
/// it from the identity of a key whose secret it lacks. Derived each time
/// (a key pair and a signature, what the handshake costs anyway).
fn decoy_identity(name: &str) -> Identity {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        getrandom::getrandom(&mut s).expect("the OS random source failed");
        s
    });
    Identity::from_seed(Role::Server, super::identity::derive(secret, name, DECOY_LABEL))
}

/// ferryd's TLS: the configuration to accept with, and the table of keys
/// that the post-handshake check needs.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    table: Arc<Table>,
}

impl ServerTls {
    /// Derives every key's identities. Infallible, as `client_config` is.
    pub fn new(keys: &Keys) -> ServerTls {
        ServerTls::build(keys, None)
    }

    /// The configuration for a reloaded keys file: unchanged keys keep the
    /// identities already derived.
    pub fn reload(&self, keys: &Keys) -> ServerTls {
        ServerTls::build(keys, Some(&self.table))
    }

    fn build(keys: &Keys, old: Option<&Table>) -> ServerTls {
        let provider = provider();
        let mut table = Table::default();
        for key in &keys.keys {
            let kept = old.and_then(|t| t.by_id.get(&key.id)).filter(|e| e.secret == key.secret);
            let entry = match kept {
                Some(e) => e.clone(),
                None => Arc::new(Entry {
                    id: key.id.clone(),
                    secret: key.secret.clone(),
                    server: certified(&provider, &Identity::derive(key, Role::Server)),
                    client_public: *Identity::derive(key, Role::Client).public_key(),
                }),
            };
            // Only ids too long to spell out go by digest, as the protocol says.
            if matches!(parse_sni(&sni_name(&key.id)), Some(SniKey::Digest(_))) {
                table.by_digest.insert(id_digest(&key.id), entry.clone());
            }
            table.by_id.insert(key.id.clone(), entry);
        }
        let table = Arc::new(table);
        let verifier = KnownClients::new(table.by_id.values().map(|e| e.client_public));
        let mut cfg = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the provider has TLS 1.3 suites")
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(Resolver { table: table.clone(), provider: provider.clone() }));
        cfg.ignore_client_order = true;
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        ServerTls { config: Arc::new(cfg), table }
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// A server connection with this configuration.
    pub fn accept(&self) -> Result<ServerConnection, Error> {
        ServerConnection::new(self.config.clone())
    }

    /// A server connection on rustls's unbuffered API: its owner keeps the
    /// records in and out (the daemon, in buffers it frees when idle).
    pub fn accept_unbuffered(&self) -> Result<UnbufferedServerConnection, Error> {
        UnbufferedServerConnection::new(self.config.clone())
    }

    /// After the handshake: the key id the client named, once its
    /// certificate is checked to be that key's client identity (the
    /// verifier only knew it was some key's).
    pub fn peer_key_id(&self, conn: &ServerConnection) -> Result<String, TlsError> {
        self.peer_key_id_of(conn.server_name(), conn.peer_certificates())
    }

    /// `peer_key_id` from the client's server name (SNI) and certificates,
    /// for a connection that does not keep the name itself (rustls's
    /// unbuffered connection has no `server_name()`).
    pub fn peer_key_id_of(&self, name: Option<&str>, certs: Option<&[CertificateDer<'_>]>) -> Result<String, TlsError> {
        let entry = self.table.by_name(name).ok_or_else(|| TlsError::UnknownKeyId { name: name.map(String::from) })?;
        let cert = certs.and_then(|c| c.first());
        let public = cert.map(cert_public_key).transpose().map_err(TlsError::Tls)?;
        match public {
            Some(p) if p == entry.client_public => Ok(entry.id.clone()),
            Some(_) => Err(TlsError::KeyMismatch { key_id: entry.id.clone() }),
            None => Err(TlsError::UnknownClientIdentity { key_id: Some(entry.id.clone()) }),
        }
    }

    /// What a failed server handshake means, with the key id the client
    /// named when there was one, for the log line.
    pub fn handshake_error(&self, conn: &ServerConnection, err: Error) -> TlsError {
        self.handshake_error_of(conn.server_name(), err)
    }

    /// `handshake_error` from the client's server name (SNI), if it sent one.
    pub fn handshake_error_of(&self, name: Option<&str>, err: Error) -> TlsError {
        let key_id = self.table.by_name(name).map(|e| e.id.clone());
        match (&err, IdentityError::of(&err)) {
            // A name of no key held here (the client got a decoy identity,
            // whatever it did next).
            _ if key_id.is_none() && name.is_some() => TlsError::UnknownKeyId { name: name.map(String::from) },
            (Error::NoCertificatesPresented, _) => TlsError::NoClientCertificate { key_id },
            (_, Some(IdentityError::UnknownClient | IdentityError::NotEd25519)) => {
                TlsError::UnknownClientIdentity { key_id }
            }
            (
                Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate | rustls::AlertDescription::CertificateUnknown,
                ),
                _,
            ) => TlsError::RefusedByClient { key_id },
            // The resolver found no certificate: the name is missing or unknown.
            (Error::General(_), _) if key_id.is_none() => TlsError::UnknownKeyId { name: name.map(String::from) },
            _ => TlsError::Tls(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use std::io::{Read, Write};

    fn key(id: &str, secret: &str) -> Key {
        Key { id: id.into(), secret: secret.into() }
    }

    fn alice() -> Key {
        key("alice", "alice-secret-0123456789")
    }

    fn server_keys() -> Keys {
        Keys {
            keys: vec![
                alice(),
                key("bob", "bob-secret-0123456789"),
                key(&"L".repeat(200), "long-id-secret-0123456789"),
            ],
        }
    }

    /// How each side's handshake ended.
    #[derive(Debug, Default)]
    struct Outcome {
        client: Option<Error>,
        server: Option<Error>,
    }

    /// Moves bytes both ways until neither side has anything to send; a side
    /// that fails still sends its alert, so the other sees it.
    fn pump(c: &mut ClientConnection, s: &mut ServerConnection) -> Outcome {
        let mut out = Outcome::default();
        for _ in 0..100 {
            let mut moved = false;
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() && out.server.is_none() {
                moved = true;
                s.read_tls(&mut rd).unwrap();
                if let Err(e) = s.process_new_packets() {
                    out.server = Some(e);
                }
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() && out.client.is_none() {
                moved = true;
                c.read_tls(&mut rd).unwrap();
                if let Err(e) = c.process_new_packets() {
                    out.client = Some(e);
                }
            }
            if !moved {
                break;
            }
        }
        out
    }

    fn handshake(
        client_cfg: Arc<ClientConfig>,
        name: ServerName<'static>,
        tls: &ServerTls,
    ) -> (ClientConnection, ServerConnection, Outcome) {
        let mut c = ClientConnection::new(client_cfg, name).unwrap();
        let mut s = tls.accept().unwrap();
        let out = pump(&mut c, &mut s);
        (c, s, out)
    }

    /// A client that pins the right server but presents `presented`'s client identity.
    fn client_presenting(pinned: &Key, presented: &Key) -> Arc<ClientConfig> {
        let server = Identity::derive(pinned, Role::Server);
        let client = Identity::derive(presented, Role::Client);
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer::new(*server.public_key())))
            .with_client_auth_cert(vec![client.cert()], PrivateKeyDer::Pkcs8(client.pkcs8()))
            .unwrap();
        Arc::new(cfg)
    }

    #[test]
    fn the_right_key_connects_with_aes128_and_the_hybrid_group() {
        let tls = ServerTls::new(&server_keys());
        let mut hello = Vec::new();
        connect(&alice()).unwrap().write_tls(&mut hello).unwrap();
        assert_eq!(crate::proto::sniff::sniff(&hello), Ok(Some(crate::proto::sniff::Transport::Tls)));
        let (mut c, mut s, out) = handshake(client_config(&alice()), server_name("alice"), &tls);
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        assert!(!c.is_handshaking() && !s.is_handshaking());
        assert_eq!(c.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(s.negotiated_cipher_suite().unwrap().suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(c.negotiated_key_exchange_group().unwrap().name(), rustls::NamedGroup::X25519MLKEM768);
        assert_eq!(s.server_name(), Some("mfwgsy3f.k.ferry"));
        assert_eq!(tls.peer_key_id(&s).unwrap(), "alice");

        c.writer().write_all(b"ping from client").unwrap();
        s.writer().write_all(b"pong from server").unwrap();
        let out = pump(&mut c, &mut s);
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        let mut got = vec![0u8; 16];
        s.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, b"ping from client");
        c.reader().read_exact(&mut got).unwrap();
        assert_eq!(got, b"pong from server");
    }

    #[test]
    fn plain_x25519_is_the_fallback() {
        let tls = ServerTls::new(&server_keys());
        let mut p = (*provider()).clone();
        p.kx_groups = vec![aws_lc_rs::kx_group::X25519];
        let client = Identity::derive(&alice(), Role::Client);
        let cfg = ClientConfig::builder_with_provider(Arc::new(p))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer::new(
                *Identity::derive(&alice(), Role::Server).public_key(),
            )))
            .with_client_auth_cert(vec![client.cert()], PrivateKeyDer::Pkcs8(client.pkcs8()))
            .unwrap();
        let (c, s, out) = handshake(Arc::new(cfg), server_name("alice"), &tls);
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        assert_eq!(c.negotiated_key_exchange_group().unwrap().name(), rustls::NamedGroup::X25519);
        assert_eq!(tls.peer_key_id(&s).unwrap(), "alice");
    }

    #[test]
    fn a_server_with_another_secret_fails_on_the_client_with_a_clear_message() {
        let tls = ServerTls::new(&Keys { keys: vec![key("alice", "the-server-has-another-secret")] });
        let (_c, s, out) = handshake(client_config(&alice()), server_name("alice"), &tls);
        let err = out.client.expect("the client refuses the server");
        assert_eq!(IdentityError::of(&err), Some(IdentityError::ServerMismatch));
        let e = TlsError::on_client("alice", err);
        assert!(matches!(e, TlsError::ServerIdentityMismatch { .. }), "{e:?}");
        assert_eq!(e.to_string(), "the server does not hold key alice as given here (another secret, or no such key): wrong key?");
        // The server learns it from the alert, and can log which key was named.
        let e = tls.handshake_error(&s, out.server.expect("the server sees the alert"));
        assert!(matches!(&e, TlsError::RefusedByClient { key_id: Some(k) } if k == "alice"), "{e:?}");
        assert_eq!(s.peer_certificates(), None, "the client sent no identity to a server it refused");
    }

    #[test]
    fn a_wrong_client_identity_fails_on_the_server() {
        let tls = ServerTls::new(&server_keys());
        let stranger = key("alice", "a-client-with-a-wrong-secret");
        let (_c, s, out) = handshake(client_presenting(&alice(), &stranger), server_name("alice"), &tls);
        let err = out.server.expect("the server refuses the client");
        assert_eq!(IdentityError::of(&err), Some(IdentityError::UnknownClient));
        let e = tls.handshake_error(&s, err);
        assert!(matches!(&e, TlsError::UnknownClientIdentity { key_id: Some(k) } if k == "alice"), "{e:?}");
        assert_eq!(e.to_string(), "key alice: client identity is no key's: wrong key?");
        let e = TlsError::on_client("alice", out.client.expect("the client sees the alert"));
        assert!(matches!(e, TlsError::RefusedByServer { .. }), "{e:?}");
    }

    #[test]
    fn another_keys_client_identity_is_caught_after_the_handshake() {
        // bob's client identity is one the server knows, so the verifier
        // (which does not see SNI) lets it through; peer_key_id does not.
        let tls = ServerTls::new(&server_keys());
        let bob = key("bob", "bob-secret-0123456789");
        let (_c, s, out) = handshake(client_presenting(&alice(), &bob), server_name("alice"), &tls);
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        assert!(matches!(tls.peer_key_id(&s), Err(TlsError::KeyMismatch { key_id }) if key_id == "alice"));
    }

    #[test]
    fn an_unknown_key_id_fails_as_a_wrong_secret_does() {
        let tls = ServerTls::new(&server_keys());
        let mallory = key("mallory", "mallory-secret-0123456789");
        let (_c, s, out) = handshake(client_config(&mallory), server_name("mallory"), &tls);
        let e = tls.handshake_error(&s, out.server.expect("the server sees the client's alert"));
        assert!(matches!(&e, TlsError::UnknownKeyId { name: Some(n) } if n == "nvqwy3dpoj4q.k.ferry"), "{e:?}");
        assert_eq!(e.to_string(), "TLS client named no known key ID \"mallory\"");
        // The client sees a decoy identity: the same mismatch as a wrong secret.
        let e = TlsError::on_client("mallory", out.client.expect("the client refuses the decoy"));
        assert!(matches!(e, TlsError::ServerIdentityMismatch { .. }), "{e:?}");
        let wrong = key("alice", "not-alices-secret-0123456789");
        let (_c, _s, out) = handshake(client_config(&wrong), server_name("alice"), &tls);
        let w = TlsError::on_client("alice", out.client.unwrap());
        assert_eq!(w.to_string().replace("alice", "mallory"), e.to_string());
    }

    #[test]
    fn a_client_without_a_certificate_is_logged_with_the_key_it_named() {
        let tls = ServerTls::new(&server_keys());
        let server = Identity::derive(&alice(), Role::Server);
        let cfg = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer::new(*server.public_key())))
            .with_no_client_auth();
        let (_c, s, out) = handshake(Arc::new(cfg), server_name("alice"), &tls);
        let e = tls.handshake_error(&s, out.server.expect("the server wants a certificate"));
        assert_eq!(e.to_string(), "key alice: TLS: peer sent no certificates (not a ferry client?)");
    }

    #[test]
    fn no_server_name_fails() {
        let tls = ServerTls::new(&server_keys());
        let ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let (_c, s, out) = handshake(client_config(&alice()), ip, &tls);
        let e = tls.handshake_error(&s, out.server.unwrap());
        assert!(matches!(e, TlsError::UnknownKeyId { name: None }), "{e:?}");
    }

    #[test]
    fn a_long_key_id_goes_by_its_digest() {
        let tls = ServerTls::new(&server_keys());
        let long = key(&"L".repeat(200), "long-id-secret-0123456789");
        let (_c, s, out) = handshake(client_config(&long), server_name(&long.id), &tls);
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        assert!(s.server_name().unwrap().ends_with(".h.ferry"));
        assert_eq!(tls.peer_key_id(&s).unwrap(), long.id);
    }

    #[test]
    fn a_short_key_id_is_not_accepted_by_digest() {
        let tls = ServerTls::new(&server_keys());
        let name =
            format!("{}{}", crate::tls::identity::base32(&id_digest("alice")), crate::tls::identity::SNI_DIGEST_SUFFIX);
        let name = ServerName::try_from(name).unwrap();
        let (_c, s, out) = handshake(client_config(&alice()), name, &tls);
        assert!(matches!(tls.handshake_error(&s, out.server.unwrap()), TlsError::UnknownKeyId { .. }));
    }

    #[test]
    fn reload_keeps_unchanged_keys_and_rederives_changed_ones() {
        let tls = ServerTls::new(&server_keys());
        let mut keys = server_keys();
        keys.keys[1].secret = "bob-has-a-new-secret-now".into();
        keys.keys.push(key("carol", "carol-secret-0123456789"));
        let next = tls.reload(&keys);
        assert!(Arc::ptr_eq(&tls.table.by_id["alice"], &next.table.by_id["alice"]));
        assert!(!Arc::ptr_eq(&tls.table.by_id["bob"], &next.table.by_id["bob"]));
        let (_c, s, out) = handshake(client_config(&keys.keys[3]), server_name("carol"), &next);
        assert!(out.server.is_none(), "{out:?}");
        assert_eq!(next.peer_key_id(&s).unwrap(), "carol");
        // bob's old secret no longer works on the new configuration.
        let (_c, _s, out) = handshake(client_config(&key("bob", "bob-secret-0123456789")), server_name("bob"), &next);
        assert!(out.client.is_some());
    }
}
