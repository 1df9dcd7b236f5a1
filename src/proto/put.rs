//! The `put` request and its `trailer`: how a put names its digest (in the
//! header, old style; or `trailer:true`, the digest in a frame after the
//! body), with the checks a server makes before it takes one. Part of the
//! wire vocabulary, kept beside `msg` (which turns these errors into
//! `bad-request`).

use super::digest::Digest;
use serde::Deserialize;

/// The `put` request. `size` is the body that follows the header; a
/// streaming put has no body of its own and sends `data` frames instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub path: String,
    /// `None` for a streaming put.
    pub size: Option<u64>,
    pub mode: Option<u32>,
    /// The digest the server computes over the body (`sha256` unless named).
    pub digest: Digest,
    /// The client's digest from the header (old style), lowercase hex,
    /// checked to be 64 hex digits.
    pub expect: Option<String>,
    /// The client's digest comes in a `trailer` frame after the body.
    pub trailer: bool,
    /// The file's mtime, and the tree it belongs to (`proto::tree`).
    pub mtime: Option<i64>,
    pub tree: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PutFields {
    path: String,
    #[serde(default)]
    stream: bool,
    mode: Option<u32>,
    digest: Option<Digest>,
    sha256: Option<String>,
    blake3: Option<String>,
    #[serde(default)]
    trailer: bool,
    mtime: Option<i64>,
    tree: Option<String>,
}

/// A put's `trailer` frame: the client's digest of the body it sent, in
/// the field named after the put's digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Trailer {
    pub digest: Digest,
    /// Lowercase hex, checked to be 64 hex digits.
    pub hex: String,
}

/// A digest's hex from a header field: 64 hex digits, lowercased.
pub(super) fn digest_hex(kind: &str, field: &str, hex: String) -> Result<String, String> {
    if super::digest::is_digest_hex(&hex) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(format!("{kind}: {field} must be 64 hex digits"))
    }
}

impl Put {
    pub(super) fn from_fields(f: PutFields, size: u64) -> Result<Put, String> {
        let bad = |m: &str| Err(format!("put: {m}"));
        if f.stream && size > 0 {
            return bad("a streaming put has no body of its own");
        }
        let (named, expect) = match (f.sha256, f.blake3) {
            (Some(_), Some(_)) => return bad("give at most one of sha256 and blake3"),
            (Some(h), None) => (Some(Digest::Sha256), Some(digest_hex("put", "sha256", h)?)),
            (None, Some(h)) => (Some(Digest::Blake3), Some(digest_hex("put", "blake3", h)?)),
            (None, None) => (None, None),
        };
        let digest = match (f.digest, named) {
            (Some(d), Some(n)) if d != n => return bad("the digest named differs from the digest given"),
            (d, n) => d.or(n).unwrap_or_default(),
        };
        if digest == Digest::None && f.trailer {
            return bad("a trailer needs a digest (not \"none\")");
        }
        if expect.is_some() && f.trailer {
            return bad("the digest goes in the header or in the trailer, not both");
        }
        if f.mode.is_some_and(|m| m > 0o7777) {
            return bad("mode must be permission bits (at most 0o7777)");
        }
        if f.tree.is_some() && f.stream {
            return bad("a tree's put is sized, not streamed");
        }
        let size = (!f.stream).then_some(size);
        Ok(Put { path: f.path, size, mode: f.mode, digest, expect, trailer: f.trailer, mtime: f.mtime, tree: f.tree })
    }
}

/// The fields of a `trailer` frame: exactly one digest's hex.
#[derive(Deserialize)]
pub(super) struct TrailerFields {
    sha256: Option<String>,
    blake3: Option<String>,
}

impl TrailerFields {
    pub(super) fn trailer(self) -> Result<Trailer, String> {
        let (digest, hex) = match (self.sha256, self.blake3) {
            (Some(h), None) => (Digest::Sha256, digest_hex("trailer", "sha256", h)?),
            (None, Some(h)) => (Digest::Blake3, digest_hex("trailer", "blake3", h)?),
            _ => return Err("trailer: give exactly one of sha256 and blake3".into()),
        };
        Ok(Trailer { digest, hex })
    }
}
