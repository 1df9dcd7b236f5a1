//! The handshake's cryptography and the keys-file format.
//!
//! Pure except for `fresh_nonce`, which asks the OS for random bytes. The MAC
//! transcripts are fixed by the protocol:
//!   client mac = HMAC-SHA256(key, "ferry-client|" + server_nonce + "|" + client_nonce)
//!   server mac = HMAC-SHA256(key, "ferry-server|" + client_nonce + "|" + server_nonce)
//! with nonces as 64 lowercase hex digits and MACs sent as lowercase hex.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes in a nonce (sent as twice as many hex digits).
pub const NONCE_LEN: usize = 32;
/// The shortest secret a keys file may hold.
pub const MIN_SECRET_LEN: usize = 16;

/// 32 fresh random bytes.
pub fn fresh_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut n).expect("the OS random source failed");
    n
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Lowercase hex only, as the protocol sends it.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// True for a nonce as the protocol writes it: 64 lowercase hex digits.
pub fn is_nonce_hex(s: &str) -> bool {
    s.len() == NONCE_LEN * 2 && from_hex(s).is_some()
}

fn mac(key: &[u8], parts: &[&str]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p.as_bytes());
    }
    m
}

/// The MAC the client sends in `auth`.
pub fn client_mac(key: &[u8], server_nonce: &str, client_nonce: &str) -> String {
    to_hex(&mac(key, &["ferry-client|", server_nonce, "|", client_nonce]).finalize().into_bytes())
}

/// The MAC the server sends in `welcome`.
pub fn server_mac(key: &[u8], client_nonce: &str, server_nonce: &str) -> String {
    to_hex(&mac(key, &["ferry-server|", client_nonce, "|", server_nonce]).finalize().into_bytes())
}

/// Checks a client MAC in constant time (the `hmac` crate's `verify_slice`).
pub fn verify_client_mac(key: &[u8], server_nonce: &str, client_nonce: &str, mac_hex: &str) -> bool {
    let given = from_hex(mac_hex).unwrap_or_default();
    mac(key, &["ferry-client|", server_nonce, "|", client_nonce]).verify_slice(&given).is_ok()
}

/// Checks a server MAC in constant time.
pub fn verify_server_mac(key: &[u8], client_nonce: &str, server_nonce: &str, mac_hex: &str) -> bool {
    let given = from_hex(mac_hex).unwrap_or_default();
    mac(key, &["ferry-server|", client_nonce, "|", server_nonce]).verify_slice(&given).is_ok()
}

/// One key of a keys file. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({:?}, <secret>)", self.id)
    }
}

/// The keys of a keys file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub keys: Vec<Key>,
}

impl Keys {
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn first(&self) -> Option<&Key> {
        self.keys.first()
    }

    /// Parses a keys file: `KEY_ID SECRET` a line, `#` comments and blank lines
    /// allowed. Errors name the line and never quote a secret.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let keys = Keys::parse_maybe_empty(text)?;
        if keys.keys.is_empty() {
            return Err("no key in the file".into());
        }
        Ok(keys)
    }

    /// `parse`, but a file with no key (empty, or comments only) is no
    /// error: `ferry keygen` adds the first key to such a file.
    pub fn parse_maybe_empty(text: &str) -> Result<Keys, String> {
        let mut keys = Keys::default();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(id), Some(secret), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {n}: expected `KEY_ID SECRET`"));
            };
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(format!("line {n}: the secret of key {id:?} is shorter than {MIN_SECRET_LEN} characters"));
            }
            if keys.get(id).is_some() {
                return Err(format!("line {n}: key {id:?} appears twice"));
            }
            keys.keys.push(Key { id: id.to_string(), secret: secret.to_string() });
        }
        Ok(keys)
    }
}

/// A new random secret for `ferry keygen` and first start: 32 bytes as hex.
pub fn fresh_secret() -> String {
    to_hex(&fresh_nonce())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SN: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const CN: &str = "00000000000000000000000000000000000000000000000000000000000000ff";

    #[test]
    fn macs_match_known_answers() {
        // Computed independently with Python's hmac module:
        //   hmac.new(b"correct horse battery", ("ferry-client|"+SN+"|"+CN).encode(), "sha256").hexdigest()
        let key = b"correct horse battery";
        assert_eq!(client_mac(key, SN, CN), "0f12706b334984caae2f71df36b5d8a37bb9b73a6ba88971336742449287adb9");
        assert_eq!(server_mac(key, CN, SN), "fca13931254b89d55db0492cbc177d8e9fa8a58466cb3e683c2ad3a9eb793201");
    }

    #[test]
    fn verify_accepts_the_right_mac_only() {
        let key = b"sixteen chars!!!";
        let m = client_mac(key, SN, CN);
        assert!(verify_client_mac(key, SN, CN, &m));
        assert!(!verify_client_mac(b"another key here", SN, CN, &m));
        assert!(!verify_client_mac(key, CN, SN, &m), "nonces swapped");
        assert!(!verify_client_mac(key, SN, CN, &m.to_uppercase()), "hex is lowercase");
        assert!(!verify_client_mac(key, SN, CN, &m[..62]));
        assert!(!verify_client_mac(key, SN, CN, ""));
        // The client and server transcripts differ, so one cannot stand for the other.
        assert!(!verify_server_mac(key, SN, CN, &m));
        assert!(verify_server_mac(key, CN, SN, &server_mac(key, CN, SN)));
    }

    #[test]
    fn nonces_are_fresh_and_hex() {
        let a = to_hex(&fresh_nonce());
        let b = to_hex(&fresh_nonce());
        assert_ne!(a, b);
        assert!(is_nonce_hex(&a));
        assert!(!is_nonce_hex(&a.to_uppercase()));
        assert!(!is_nonce_hex(&a[1..]));
        assert_eq!(from_hex("00ff7f"), Some(vec![0, 255, 127]));
        assert_eq!(from_hex("0g"), None);
    }

    #[test]
    fn keys_file_parses_comments_blanks_and_order() {
        let k = Keys::parse("# ferry keys\n\nalice 0123456789abcdef\n  bob   a-much-longer-secret-value  \n").unwrap();
        assert_eq!(k.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(k.get("bob").unwrap().secret, "a-much-longer-secret-value");
        assert_eq!(k.first().unwrap().id, "alice");
        assert!(!format!("{k:?}").contains("0123456789abcdef"), "Debug shows no secret");
    }

    #[test]
    fn keys_file_errors_name_the_line_not_the_secret() {
        for (text, line) in [
            ("alice\n", "line 1"),
            ("# c\nalice tiny1\n", "line 2"),
            ("a 0123456789abcdef extra\n", "line 1"),
            ("a 0123456789abcdef\na fedcba9876543210\n", "line 2"),
        ] {
            let e = Keys::parse(text).unwrap_err();
            assert!(e.starts_with(line), "{e}");
            assert!(!e.contains("tiny1") && !e.contains("fedcba"), "{e}");
        }
        assert!(Keys::parse("# only comments\n").is_err());
    }
}
