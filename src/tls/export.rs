//! A key's client identity as PEM files, so that clients other than ferry
//! (`openssl s_client -cert C -key K`, Python's `ssl`) can present it.
//! `ferry keys export-tls` will write these; the functions stay pure.

use super::identity::{Identity, Role};
use crate::proto::auth::Key;

/// The client certificate of `key`, PEM (`CERTIFICATE`).
pub fn client_cert_pem(key: &Key) -> String {
    pem("CERTIFICATE", Identity::derive(key, Role::Client).cert().as_ref())
}

/// The client's private key of `key`, PEM (`PRIVATE KEY`, PKCS#8). As
/// secret as the key itself.
pub fn client_key_pem(key: &Key) -> String {
    pem("PRIVATE KEY", Identity::derive(key, Role::Client).pkcs8().secret_pkcs8_der())
}

/// The server certificate of `key`, PEM: what a client pins, for tools
/// that compare certificates rather than keys.
pub fn server_cert_pem(key: &Key) -> String {
    pem("CERTIFICATE", Identity::derive(key, Role::Server).cert().as_ref())
}

/// RFC 7468 text: base64 in lines of 64 characters.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn pem_files_round_trip_through_rustls_pki_types() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let key = Key { id: "example".into(), secret: "example-secret-do-not-use".into() };
        let id = Identity::derive(&key, Role::Client);
        let cert = CertificateDer::from_pem_slice(client_cert_pem(&key).as_bytes()).unwrap();
        assert_eq!(cert, id.cert());
        let pk = PrivateKeyDer::from_pem_slice(client_key_pem(&key).as_bytes()).unwrap();
        assert_eq!(pk.secret_der(), id.pkcs8().secret_pkcs8_der());
        assert!(client_cert_pem(&key).lines().all(|l| l.len() <= 64));
        assert_ne!(server_cert_pem(&key), client_cert_pem(&key));
    }
}
