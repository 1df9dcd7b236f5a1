//! Sealed datagrams on the server: which codec a datagram is for, opening a
//! sealed request into the same `datagram::Request` a v1 one gives (so both
//! are judged and served by one path), and sealing the reply.
//!
//! Replies are made as v1 datagrams first, with `udp.max_reply` lowered by
//! what sealing adds (`Seal::extra`), then turned into a sealed reply under
//! a fresh nonce (`Seal::wrap`): one encoder per reply for both codecs.
//! A request's datagram keys are derived once per key and kept while its
//! secret is unchanged (a reload that changes it derives them again).

use crate::config::Config;
use crate::proto::auth::to_hex;
use crate::proto::datagram::{self, DatagramError, Malformed, Request};
use crate::proto::sealed::{self, DatagramKeys, Kind, SealError, NONCE_LEN};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a datagram gets no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Silence {
    /// A v1 (or sealed) datagram that failed its checks.
    Datagram(DatagramError),
    /// A tagged v1 datagram from a peer outside `plaintext_from`.
    Clear,
}

impl std::fmt::Display for Silence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Silence::Datagram(e) => e.fmt(f),
            Silence::Clear => f.write_str("a tagged datagram from outside plaintext_from"),
        }
    }
}

fn silence(e: SealError) -> Silence {
    Silence::Datagram(match e {
        SealError::UnknownKey => DatagramError::UnknownKey,
        SealError::BadTag => DatagramError::BadTag,
        SealError::TooLong => DatagramError::Malformed(Malformed::TooLong),
        _ => DatagramError::Malformed(Malformed::Short),
    })
}

/// How a request's replies are sealed: None for a v1 request.
pub struct Seal {
    keys: Arc<DatagramKeys>,
    key_id: String,
    request_nonce: [u8; NONCE_LEN],
}

impl Seal {
    /// Bytes sealing adds to a reply: to take off `udp.max_reply` before
    /// the v1 reply is encoded.
    pub fn extra(seal: Option<&Seal>) -> usize {
        seal.map_or(0, |s| sealed::extra_over_v1(&s.key_id))
    }

    /// The reply to send for v1 reply bytes `v1`: themselves for a v1
    /// request, else sealed under a fresh nonce.
    pub fn wrap(seal: Option<&Seal>, v1: Vec<u8>) -> Vec<u8> {
        let Some(s) = seal else { return v1 };
        let plain = sealed::plaintext_of_v1_reply(&v1).expect("our own reply datagrams are well formed");
        let mut nonce = sealed::fresh_nonce();
        while nonce == s.request_nonce {
            nonce = sealed::fresh_nonce();
        }
        sealed::seal_reply(&s.keys, &s.key_id, &s.request_nonce, nonce, &plain)
            .expect("a reply within udp.max_reply less the seal's bytes fits a datagram")
    }
}

/// Every key's datagram keys, derived on first use.
#[derive(Default)]
pub struct KeyCache {
    /// key id → (the secret they were derived from, the keys).
    map: HashMap<String, (String, Arc<DatagramKeys>)>,
}

impl KeyCache {
    fn get(&mut self, cfg: &Config, id: &str) -> Option<Arc<DatagramKeys>> {
        let key = cfg.keys.get(id)?;
        match self.map.get(id) {
            Some((secret, k)) if *secret == key.secret => Some(k.clone()),
            _ => {
                let k = Arc::new(crate::tls::datagram_keys(key));
                self.map.insert(id.to_string(), (key.secret.clone(), k.clone()));
                Some(k)
            }
        }
    }
}

/// A request authenticated by either codec: the request (its body in
/// `plain` for a sealed one), and how to seal its replies.
pub fn read_request<'a>(
    bytes: &'a [u8],
    plain: &'a mut Vec<u8>,
    peer: SocketAddr,
    cfg: &Config,
    cache: &mut KeyCache,
) -> Result<(Request<'a>, Option<Seal>), Silence> {
    match sealed::classify(bytes) {
        Some(Kind::Sealed) => {
            let mut found = None;
            let slot = &mut found;
            let opened = sealed::open_request(bytes, move |id| {
                *slot = cache.get(cfg, id);
                slot.as_deref()
            })
            .map_err(silence)?;
            let keys = found.expect("open_request opened it with these keys");
            *plain = opened.plaintext;
            let (header, body) = sealed::parse_plaintext(plain).map_err(|m| Silence::Datagram(m.into()))?;
            let ts = header.fields.get("ts").and_then(serde_json::Value::as_i64);
            let ts = ts.ok_or(Silence::Datagram(Malformed::Field("ts").into()))?;
            // The replay checks key on a v1 nonce (16 bytes): the sealed nonce,
            // marked so that it is no v1 client's random nonce.
            let nonce = format!("{}ffffffff", to_hex(&opened.nonce));
            let req = Request { key_id: opened.key_id.clone(), nonce, ts, header, body };
            Ok((req, Some(Seal { keys, key_id: opened.key_id, request_nonce: opened.nonce })))
        }
        Some(Kind::Tagged) if !cfg.plaintext_allowed(peer.ip()) => Err(Silence::Clear),
        _ => {
            let keys = &cfg.keys;
            let req = datagram::decode_request(bytes, |id| keys.get(id).map(|k| k.secret.as_bytes()));
            Ok((req.map_err(Silence::Datagram)?, None))
        }
    }
}
