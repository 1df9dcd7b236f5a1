//! What a key of the keys file becomes for TLS and sealed datagrams: the
//! derivation (HKDF-SHA256), the two Ed25519 identities, their self-signed
//! certificates, the datagram keys, and the SNI name that carries a key id.
//!
//! Pure and deterministic: the same key always gives the same seeds, public
//! keys, certificates (Ed25519 signatures are deterministic) and names, so
//! `man/ferry-protocol.7` can give them as test vectors. It owns no verifier
//! and no rustls configuration (`verify`, `config`).
//!
//! ```text
//! PRK  = HKDF-Extract(salt = "ferry-derive-v1|" + key_id, IKM = secret)
//! OKM  = HKDF-Expand(PRK, info = LABEL, 32)
//! LABEL: "ferry-tls-server"      server's Ed25519 seed
//!        "ferry-tls-client"      client's Ed25519 seed
//!        "ferry-udp-request-key" AES-256-GCM key of sealed requests
//!        "ferry-udp-reply-key"   AES-256-GCM key of sealed replies
//! ```
//!
//! key_id and secret are the UTF-8 bytes of the keys file's words, as the
//! v1 handshake uses them.

use crate::proto::auth::Key;
use crate::proto::sealed::DatagramKeys;
use aws_lc_rs::hkdf;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use sha2::{Digest, Sha256};

/// The HKDF salt is this prefix followed by the key id.
pub const SALT_PREFIX: &str = "ferry-derive-v1|";
pub const SERVER_LABEL: &str = "ferry-tls-server";
pub const CLIENT_LABEL: &str = "ferry-tls-client";
pub const UDP_REQUEST_LABEL: &str = "ferry-udp-request-key";
pub const UDP_REPLY_LABEL: &str = "ferry-udp-reply-key";

/// 32 bytes of key material for `label`, bound to the key id by the salt.
pub fn derive(secret: &[u8], key_id: &str, label: &str) -> [u8; 32] {
    let mut salt = Vec::with_capacity(SALT_PREFIX.len() + key_id.len());
    salt.extend_from_slice(SALT_PREFIX.as_bytes());
    salt.extend_from_slice(key_id.as_bytes());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(secret);
    let mut out = [0u8; 32];
    // HKDF_SHA256 as the length type asks for 32 bytes, which never fails.
    prk.expand(&[label.as_bytes()], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 gives 32 bytes");
    out
}

/// The two AEAD keys of sealed datagrams, one per direction.
pub fn datagram_keys(key: &Key) -> DatagramKeys {
    let s = key.secret.as_bytes();
    DatagramKeys::new(&derive(s, &key.id, UDP_REQUEST_LABEL), &derive(s, &key.id, UDP_REPLY_LABEL))
}

/// Which end of a connection an identity belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Server => SERVER_LABEL,
            Role::Client => CLIENT_LABEL,
        }
    }

    /// The certificate's subject and issuer common name.
    fn common_name(self) -> &'static [u8; 12] {
        match self {
            Role::Server => b"ferry-server",
            Role::Client => b"ferry-client",
        }
    }
}

/// One side's Ed25519 identity for one key. `Debug` never shows the seed.
#[derive(Clone)]
pub struct Identity {
    pub role: Role,
    seed: [u8; 32],
    public: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({:?}, {})", self.role, crate::proto::auth::to_hex(&self.public))
    }
}

impl Identity {
    pub fn derive(key: &Key, role: Role) -> Identity {
        Identity::from_seed(role, derive(key.secret.as_bytes(), &key.id, role.label()))
    }

    pub fn from_seed(role: Role, seed: [u8; 32]) -> Identity {
        Identity::with_pair(role, seed).0
    }

    /// The identity and its key pair, derived once (for the side that signs).
    pub fn derive_with_pair(key: &Key, role: Role) -> (Identity, Ed25519KeyPair) {
        Identity::with_pair(role, derive(key.secret.as_bytes(), &key.id, role.label()))
    }

    fn with_pair(role: Role, seed: [u8; 32]) -> (Identity, Ed25519KeyPair) {
        let pair = pair(&seed);
        let public = pair.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes");
        (Identity { role, seed, public }, pair)
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The raw 32-byte Ed25519 public key (RFC 8032), what the peer pins.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    pub fn spki(&self) -> SubjectPublicKeyInfoDer<'static> {
        SubjectPublicKeyInfoDer::from(spki_der(&self.public).to_vec())
    }

    /// The private key as PKCS#8 v1 DER (RFC 8410), as rustls and OpenSSL load it.
    pub fn pkcs8(&self) -> PrivatePkcs8KeyDer<'static> {
        let doc = pair(&self.seed).to_pkcs8v1().expect("an Ed25519 key encodes");
        PrivatePkcs8KeyDer::from(doc.as_ref().to_vec())
    }

    /// The self-signed certificate: `cert_template` with this key, signed by it.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert_signed(&pair(&self.seed))
    }

    /// `cert`, signed with this identity's pair already derived.
    pub fn cert_signed(&self, pair: &Ed25519KeyPair) -> CertificateDer<'static> {
        let tbs = tbs_der(self.role, &self.public);
        let sig = pair.sign(&tbs);
        let mut body = tbs;
        body.extend_from_slice(&ED25519_ALG);
        body.extend_from_slice(&[0x03, 0x41, 0x00]); // BIT STRING, 65 bytes, no unused bits
        body.extend_from_slice(sig.as_ref());
        CertificateDer::from(der_wrap(0x30, &body))
    }
}

fn pair(seed: &[u8; 32]) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes are an Ed25519 seed")
}

/// AlgorithmIdentifier { id-Ed25519 (1.3.101.112) }, no parameters (RFC 8410).
const ED25519_ALG: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// The SubjectPublicKeyInfo of an Ed25519 key, before its 32 bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

pub fn spki_der(public: &[u8; 32]) -> [u8; 44] {
    let mut out = [0u8; 44];
    out[..12].copy_from_slice(&SPKI_PREFIX);
    out[12..].copy_from_slice(public);
    out
}

/// The Ed25519 public key of a SubjectPublicKeyInfo, if it is one.
pub fn ed25519_public_key(spki: &[u8]) -> Option<[u8; 32]> {
    let rest = spki.strip_prefix(&SPKI_PREFIX[..])?;
    rest.try_into().ok()
}

/// DER tag, short or long length, content (lengths < 64 KiB).
fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = Vec::with_capacity(n + 4);
    out.push(tag);
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// The TBSCertificate: X.509 v3, serial 1, Ed25519, issuer = subject =
/// CN=ferry-server (or ferry-client), valid from 1970-01-01 to 9999-12-31
/// (RFC 5280's "no expiry"), no extensions. Every field but the key is
/// fixed, so a peer can rebuild it byte for byte; peers check only the key.
fn tbs_der(role: Role, public: &[u8; 32]) -> Vec<u8> {
    let mut atv = vec![0x06, 0x03, 0x55, 0x04, 0x03]; // id-at-commonName
    atv.extend_from_slice(&der_wrap(0x0c, role.common_name())); // UTF8String
    let name = der_wrap(0x30, &der_wrap(0x31, &der_wrap(0x30, &atv)));
    let mut validity = der_wrap(0x17, b"700101000000Z"); // UTCTime
    validity.extend_from_slice(&der_wrap(0x18, b"99991231235959Z")); // GeneralizedTime
    let mut tbs = vec![0xa0, 0x03, 0x02, 0x01, 0x02]; // [0] version v3
    tbs.extend_from_slice(&[0x02, 0x01, 0x01]); // serialNumber 1
    tbs.extend_from_slice(&ED25519_ALG);
    tbs.extend_from_slice(&name);
    tbs.extend_from_slice(&der_wrap(0x30, &validity));
    tbs.extend_from_slice(&name);
    tbs.extend_from_slice(&spki_der(public));
    der_wrap(0x30, &tbs)
}

// ---------------------------------------------------------------------------
// SNI: a key id as a DNS name.

/// Every SNI name of the protocol ends in one of these.
pub const SNI_ID_SUFFIX: &str = ".k.ferry";
pub const SNI_DIGEST_SUFFIX: &str = ".h.ferry";
/// RFC 1035: a label is at most 63 octets, a name at most 253 in text form.
const MAX_LABEL: usize = 63;
const MAX_NAME: usize = 253;

/// What an SNI name says about the key: its id, or for an id too long to
/// spell out, the SHA-256 of the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SniKey {
    Id(String),
    Digest([u8; 32]),
}

impl SniKey {
    /// True when this names `key_id`.
    pub fn names(&self, key_id: &str) -> bool {
        match self {
            SniKey::Id(id) => id == key_id,
            SniKey::Digest(d) => *d == id_digest(key_id),
        }
    }
}

pub fn id_digest(key_id: &str) -> [u8; 32] {
    Sha256::digest(key_id.as_bytes()).into()
}

/// The SNI name for a key id: lowercase unpadded base32 (RFC 4648) of the
/// id's UTF-8 bytes, cut into labels of 63 characters (the last shorter),
/// then `.k.ferry`; if that is longer than 253 characters (ids over 151
/// bytes), the base32 of SHA-256(id) (52 characters) then `.h.ferry`.
pub fn sni_name(key_id: &str) -> String {
    let b32 = base32(key_id.as_bytes());
    let labels = b32.len().div_ceil(MAX_LABEL);
    if b32.len() + labels - 1 + SNI_ID_SUFFIX.len() <= MAX_NAME {
        let mut name = dotted(&b32);
        name.push_str(SNI_ID_SUFFIX);
        name
    } else {
        let mut name = base32(&id_digest(key_id));
        name.push_str(SNI_DIGEST_SUFFIX);
        name
    }
}

fn dotted(b32: &str) -> String {
    let parts: Vec<&str> = b32.as_bytes().chunks(MAX_LABEL).map(|c| std::str::from_utf8(c).expect("ASCII")).collect();
    parts.join(".")
}

/// The inverse of `sni_name`; None for any name `sni_name` cannot make
/// (another suffix, labels cut elsewhere, non-canonical base32, an id that
/// is not UTF-8 or that would have used the other form).
pub fn parse_sni(name: &str) -> Option<SniKey> {
    if let Some(b32) = name.strip_suffix(SNI_DIGEST_SUFFIX) {
        let d: [u8; 32] = unbase32(b32)?.try_into().ok()?;
        return (b32.len() == 52).then_some(SniKey::Digest(d));
    }
    let body = name.strip_suffix(SNI_ID_SUFFIX)?;
    let b32: String = body.split('.').collect();
    let id = String::from_utf8(unbase32(&b32)?).ok()?;
    (!id.is_empty() && sni_name(&id) == name).then_some(SniKey::Id(id))
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Lowercase RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The inverse of `base32`: lowercase only, no padding, unused bits zero.
pub fn unbase32(s: &str) -> Option<Vec<u8>> {
    // Lengths mod 8 of 1, 3 and 6 characters encode no whole number of bytes.
    if matches!(s.len() % 8, 1 | 3 | 6) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B32.iter().position(|&d| d == c)? as u32;
        acc = ((acc << 5) | v) & 0xfff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // What is left over must be zero bits, or two names would decode alike.
    (acc & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::to_hex;

    fn key(id: &str, secret: &str) -> Key {
        Key { id: id.into(), secret: secret.into() }
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32(plain.as_bytes()), enc);
            assert_eq!(unbase32(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(unbase32("MZXW6"), None, "lowercase only");
        assert_eq!(unbase32("mz"), None, "leftover bits must be zero ('my' is canonical)");
        assert_eq!(unbase32("m"), None);
        assert_eq!(unbase32("mzx"), None);
        assert_eq!(unbase32("mzxw6y"), None);
        assert_eq!(unbase32("mzxw6=="), None);
        for n in 0..=40u8 {
            let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            assert_eq!(unbase32(&base32(&bytes)).unwrap(), bytes);
        }
    }

    /// The key of the protocol page's worked example. Every value below was
    /// computed independently with Python's `cryptography` (HKDF, Ed25519,
    /// the certificate rebuilt field by field) and is printed in
    /// man/ferry-protocol.7.
    fn example() -> Key {
        key("example", "example-secret-do-not-use")
    }

    #[test]
    fn derivation_known_answers() {
        let k = example();
        let s = k.secret.as_bytes();
        assert_eq!(
            to_hex(&derive(s, "example", SERVER_LABEL)),
            "af7c28d20c79057950dc6f15525adc68f72d011b3d6ea26ba0f5dc996501f10a"
        );
        assert_eq!(
            to_hex(&derive(s, "example", CLIENT_LABEL)),
            "4f2e3dafb4df87a46b83c15934d58c716fa0c304f52e5f4bb7f6fea8b3732f56"
        );
        assert_eq!(
            to_hex(&derive(s, "example", UDP_REQUEST_LABEL)),
            "33f85442b6c8cf34bcb54803c4fb825c2c255db83a8d3d4bfddf08c369f6b214"
        );
        assert_eq!(
            to_hex(&derive(s, "example", UDP_REPLY_LABEL)),
            "7a510e463395d6165dbd64ad1e4dc8d983656f4db50c2086a73b6a861408925d"
        );
        let server = Identity::derive(&k, Role::Server);
        let client = Identity::derive(&k, Role::Client);
        assert_eq!(to_hex(server.seed()), "af7c28d20c79057950dc6f15525adc68f72d011b3d6ea26ba0f5dc996501f10a");
        assert_eq!(to_hex(server.public_key()), "e1ad9db73c17a1e3855d057c57e8ec66f23b3938b18ec1641c343cebbf4ffad8");
        assert_eq!(to_hex(client.public_key()), "c5c19862541a3569707f1aa5e99cc0ef8b4f5fd69515f22de408bbf3b3143e5f");
        let sha = |c: &[u8]| to_hex(&Sha256::digest(c));
        assert_eq!(server.cert().len(), 223);
        assert_eq!(sha(&server.cert()), "400366b9e8670b9b94bc2dc1a9cbadafca10f999cc6222afecc696d488d83900");
        assert_eq!(sha(&client.cert()), "dc68971eef87b59ce1b24f346576a32bde56fd252934348e8aecdfa5c6c727de");
        assert_eq!(sni_name("example"), "mv4gc3lqnrsq.k.ferry");
    }

    #[test]
    fn sealed_datagram_known_answers() {
        use crate::proto::sealed;
        let keys = datagram_keys(&example());
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        let reply_nonce: [u8; 12] = std::array::from_fn(|i| 12 + i as u8);
        let mut ping = 31u32.to_be_bytes().to_vec();
        ping.extend_from_slice(br#"{"type":"ping","ts":1700000000}"#);
        let req = sealed::seal_request(&keys, "example", nonce, &ping).unwrap();
        assert_eq!(
            to_hex(&req),
            "46535131000102030405060708090a0b0f5158721d514e2dc6d58830262a468a076578616d706c658e30607b\
             e88d2f1e2d0252c065590a0c13c5a9b1ceb97c898990a09f5bf0a9269a19ba"
        );
        let mut pong = 31u32.to_be_bytes().to_vec();
        pong.extend_from_slice(br#"{"type":"pong","ts":1700000001}"#);
        let rep = sealed::seal_reply(&keys, "example", &nonce, reply_nonce, &pong).unwrap();
        assert_eq!(
            to_hex(&rep),
            "465352310c0d0e0f101112131415161755a10c0c012cac723a79a2017db3e3b6076578616d706c65168f3505\
             f3456d2fd7612818be8378d626e17f7ba41743e9953ac6bb23b3302ca9bf0b"
        );
        assert_eq!(sealed::open_request(&req, |_| Some(&keys)).unwrap().plaintext, ping);
        assert_eq!(sealed::open_reply(&keys, "example", &nonce, &rep).unwrap(), pong);
    }

    #[test]
    fn the_key_id_and_the_label_both_change_everything() {
        let s = b"one secret for all of them";
        let all = [
            derive(s, "a", SERVER_LABEL),
            derive(s, "a", CLIENT_LABEL),
            derive(s, "b", SERVER_LABEL),
            derive(s, "a", UDP_REQUEST_LABEL),
            derive(s, "a", UDP_REPLY_LABEL),
            derive(b"another secret!!", "a", SERVER_LABEL),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn certificates_parse_and_carry_the_key() {
        let id = Identity::derive(&example(), Role::Client);
        let cert = id.cert();
        let ee = webpki::EndEntityCert::try_from(&cert).expect("webpki parses it");
        assert_eq!(ed25519_public_key(ee.subject_public_key_info().as_ref()), Some(*id.public_key()));
        assert_eq!(id.spki().as_ref(), ee.subject_public_key_info().as_ref());
        assert_eq!(ed25519_public_key(&[0u8; 44]), None);
        // The PKCS#8 document loads back to the same key.
        let pair = Ed25519KeyPair::from_pkcs8(id.pkcs8().secret_pkcs8_der()).unwrap();
        assert_eq!(pair.public_key().as_ref(), id.public_key());
        assert!(!format!("{id:?}").contains(&to_hex(id.seed())), "Debug shows no seed");
    }

    #[test]
    fn sni_names_known_answers_and_edge_cases() {
        assert_eq!(sni_name("a"), "me.k.ferry");
        assert_eq!(sni_name("A_b.c"), "ifpweltd.k.ferry", "uppercase, _ and . are just bytes");
        assert_eq!(sni_name("\u{e9}"), "youq.k.ferry", "UTF-8 bytes");
        // 151 bytes is the longest id spelled out: 242 characters in four labels.
        let longest = "x".repeat(151);
        let name = sni_name(&longest);
        assert!(name.ends_with(".k.ferry"));
        assert!(name.len() <= 253, "{}", name.len());
        assert_eq!(name.split('.').map(str::len).collect::<Vec<_>>(), [63, 63, 63, 53, 1, 5]);
        assert_eq!(sni_name(&"x".repeat(152)), "ndkksw6eozsogfqhzoatvsfeehzbx72hky4lovambdtmqp6vjnza.h.ferry");
        assert_eq!(sni_name(&"x".repeat(153)), "l44k2jsy7wcdoqehcvyz6i4c5ekhs4oysaluctj24ur64cf2bafq.h.ferry");
        for id in [
            "a",
            "A_b.c",
            "\u{e9}",
            "key-with-dashes",
            "#x",
            &longest,
            &"y".repeat(63),
            &"z".repeat(1000),
            "x\u{7f}\u{1F600}",
        ] {
            let name = sni_name(id);
            assert!(name.len() <= 253 && name.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{name}");
            assert!(rustls::pki_types::ServerName::try_from(name.as_str()).is_ok(), "{name} is a DNS name");
            let back = parse_sni(&name).unwrap();
            assert!(back.names(id), "{id:?}");
            if id.len() <= 151 {
                assert_eq!(back, SniKey::Id(id.to_string()));
            }
        }
    }

    #[test]
    fn sni_parse_refuses_what_sni_name_cannot_make() {
        for name in [
            "",
            ".k.ferry",
            "me.ferry",
            "me.k.ferry.",
            "ME.k.ferry",
            "mf.k.ferry",  // leftover bits set
            "m.k.ferry",   // no whole byte
            "m.e.k.ferry", // cut elsewhere than every 63 characters
            "7i.k.ferry",  // 0xfa: not UTF-8
            "abc.h.ferry", // a digest is 52 characters
            "example.com",
        ] {
            assert_eq!(parse_sni(name), None, "{name}");
        }
        // A short id's digest form is not what sni_name makes, but names it all the same.
        let d = SniKey::Digest(id_digest("a"));
        assert!(d.names("a") && !d.names("b"));
    }
}
