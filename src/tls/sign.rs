//! A rustls signing key over an Ed25519 key pair already derived, so that a
//! client builds its configuration with the pair computed once.
//!
//! `with_client_auth_cert` takes the key as PKCS#8 and derives the pair
//! again from it; with the public key, the certificate's signature and the
//! PKCS#8 encoding each deriving their own, a cold `ferry --tls` computed
//! six Ed25519 base-point multiplications before its first byte where three
//! do (the server's public key, the client's pair, the certificate's
//! signature). The signature is the same: Ed25519 (RFC 8032) over the bytes
//! rustls hands us, by aws-lc-rs.

use aws_lc_rs::signature::Ed25519KeyPair;
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};
use std::sync::Arc;

/// An Ed25519 key that signs TLS 1.3 CertificateVerify messages.
pub struct Ed25519Key(Arc<Ed25519KeyPair>);

impl Ed25519Key {
    pub fn new(pair: Ed25519KeyPair) -> Ed25519Key {
        Ed25519Key(Arc::new(pair))
    }
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Key")
    }
}

impl SigningKey for Ed25519Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SignatureScheme::ED25519).then(|| Box::new(Ed25519Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

struct Ed25519Signer(Arc<Ed25519KeyPair>);

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Signer")
    }
}

impl Signer for Ed25519Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.0.sign(message).as_ref().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, ED25519};

    #[test]
    fn signs_ed25519_only_and_the_signature_verifies() {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let public = pair.public_key().as_ref().to_vec();
        let key = Ed25519Key::new(pair);
        assert_eq!(key.algorithm(), SignatureAlgorithm::ED25519);
        assert!(key.choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256, SignatureScheme::RSA_PSS_SHA256]).is_none());
        let signer = key.choose_scheme(&[SignatureScheme::RSA_PSS_SHA256, SignatureScheme::ED25519]).expect("Ed25519 offered");
        assert_eq!(signer.scheme(), SignatureScheme::ED25519);
        let sig = signer.sign(b"TLS 1.3, client CertificateVerify").unwrap();
        assert_eq!(sig.len(), 64);
        UnparsedPublicKey::new(&ED25519, &public).verify(b"TLS 1.3, client CertificateVerify", &sig).expect("verifies");
        assert!(UnparsedPublicKey::new(&ED25519, &public).verify(b"another message", &sig).is_err());
    }
}
