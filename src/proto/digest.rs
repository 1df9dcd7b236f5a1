//! The digests a transfer can carry: their names on the wire, which one a
//! client picks from what a server announces, and one hasher over either.
//!
//! `blake3` (32-byte output, the default length) and `sha256` are both
//! spelled as 64 lowercase hex digits. A server announces what it computes
//! in `hello` (`"digests":["blake3","sha256"]`); a server that announces
//! nothing is an older one, which computes `sha256` only.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// A digest algorithm, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    /// The protocol's default: what a request that names none gets.
    #[default]
    Sha256,
    Blake3,
    None,
}

/// A digest field is one of the three names; anything else (null, a
/// number, "md5") gets that said, not serde's words.
impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        v.as_str()
            .and_then(Digest::from_name)
            .ok_or_else(|| serde::de::Error::custom(format!("digest must be one of blake3, sha256, none (not {v})")))
    }
}

/// What this build's server announces, best first.
pub const OFFERED: [Digest; 2] = [Digest::Blake3, Digest::Sha256];

impl Digest {
    /// The name on the wire, which is also the field a digest's hex is sent in.
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Blake3 => "blake3",
            Digest::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<Digest> {
        match name {
            "sha256" => Some(Digest::Sha256),
            "blake3" => Some(Digest::Blake3),
            "none" => Some(Digest::None),
            _ => None,
        }
    }

    /// The digests a `hello` names, unknown names left out; an older server's
    /// `hello` names none, and computes `sha256`.
    pub fn announced(names: Option<&[serde_json::Value]>) -> Vec<Digest> {
        match names {
            None => vec![Digest::Sha256],
            Some(v) => v
                .iter()
                .filter_map(|n| n.as_str().and_then(Digest::from_name))
                .filter(|d| *d != Digest::None)
                .collect(),
        }
    }

    /// The best digest both sides have: `blake3` when the server offers it,
    /// else `sha256` (every server computes it).
    pub fn best(offered: &[Digest]) -> Digest {
        if offered.contains(&Digest::Blake3) {
            Digest::Blake3
        } else {
            Digest::Sha256
        }
    }

    /// A hasher for this digest (none for `None`).
    pub fn hasher(self) -> Option<Hasher> {
        match self {
            Digest::Sha256 => Some(Hasher::Sha256(Sha256::new())),
            Digest::Blake3 => Some(Hasher::Blake3(Box::default())),
            Digest::None => None,
        }
    }
}

/// True for 64 hex digits: the spelling of both digests.
pub fn is_digest_hex(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A running digest of either kind.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn digest(&self) -> Digest {
        match self {
            Hasher::Sha256(_) => Digest::Sha256,
            Hasher::Blake3(_) => Digest::Blake3,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The digest of everything so far, as lowercase hex (the hasher goes on).
    pub fn hex(&self) -> String {
        match self {
            Hasher::Sha256(h) => super::auth::to_hex(&h.clone().finalize()),
            Hasher::Blake3(h) => h.finalize().to_hex().to_string(),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hasher({})", self.digest().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hex(d: Digest, input: &[u8]) -> String {
        let mut h = d.hasher().unwrap();
        // Fed in uneven pieces: the result must not depend on how it was cut.
        for piece in input.chunks(7) {
            h.update(piece);
        }
        h.hex()
    }

    /// The test vectors of ferry-protocol(7), DIGESTS. The input of the last
    /// is the bytes 0, 1, ..., 250, 0, 1, ... (i mod 251), 2049 of them: the
    /// BLAKE3 reference vectors' input, long enough to cross a 1 KiB chunk.
    #[test]
    fn known_answers() {
        let long: Vec<u8> = (0..2049u32).map(|i| (i % 251) as u8).collect();
        let cases: [(Digest, &[u8], &str); 6] = [
            (Digest::Blake3, b"", "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"),
            (Digest::Blake3, b"abc", "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"),
            (Digest::Blake3, &long, "5f4d72f40d7a5f82b15ca2b2e44b1de3c2ef86c426c95c1af0b6879522563030"),
            (Digest::Sha256, b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            (Digest::Sha256, b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (Digest::Sha256, &long, "26e1e2808e3a6cf967ca03f6749a063c5ed55f92f5874653a1faabed78346f00"),
        ];
        for (d, input, want) in cases {
            assert_eq!(hex(d, input), want, "{} of {} bytes", d.as_str(), input.len());
            assert!(is_digest_hex(want));
        }
    }

    #[test]
    fn the_client_picks_blake3_only_when_offered() {
        assert_eq!(Digest::best(&Digest::announced(None)), Digest::Sha256);
        assert_eq!(Digest::best(&Digest::announced(Some(&[json!("sha256")]))), Digest::Sha256);
        let both = [json!("sha256"), json!("blake3"), json!("md5"), json!(7)];
        assert_eq!(Digest::announced(Some(&both)), vec![Digest::Sha256, Digest::Blake3]);
        assert_eq!(Digest::best(&Digest::announced(Some(&both))), Digest::Blake3);
        assert_eq!(Digest::announced(Some(&[json!("none")])), vec![]);
        for d in [Digest::Sha256, Digest::Blake3, Digest::None] {
            assert_eq!(Digest::from_name(d.as_str()), Some(d));
        }
        assert_eq!(Digest::from_name("md5"), None);
    }
}
