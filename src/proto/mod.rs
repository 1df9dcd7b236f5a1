//! The wire protocol, pure: no sockets, no files, no clock. Imports nothing
//! from the rest of the crate; the server, the client and ferry-bench build on it.
//!
//! - `frame`: the codec (length, JSON header, body) and its validity rules.
//! - `msg`: the vocabulary (requests, replies, error codes).
//! - `pty`: an exec's terminal (`pty`, `resize`) and the rule for its `TERM`.
//! - `put`: the put request's digest fields and its trailer frame.
//! - `digest`: the transfer digests (sha256, blake3): names, choice, one hasher.
//! - `auth`: nonces, the handshake MACs, the keys-file format.
//! - `handshake`: the client's handshake as a state machine (frames in, steps out).
//! - `datagram`: the UDP codec (tag, length, JSON header, body) and its messages.
//! - `sealed`: sealed datagrams (AES-256-GCM, key id in clear) and how to tell them from v1.
//! - `sniff`: TLS or v1 frames, from a TCP client's first byte.

pub mod auth;
pub mod datagram;
pub mod digest;
pub mod direct;
pub mod entry;
pub mod frame;
pub mod handshake;
pub mod lean;
pub mod msg;
pub mod pty;
pub mod put;
pub mod sealed;
pub mod sniff;
pub mod tree;

pub use frame::{encode_frame, encode_head, Decoder, FrameError, Header, Item, MAX_HEADER};
pub use msg::{ErrorCode, ProtoError, Reply, Request};

/// The TCP port ferryd listens on by default.
pub const DEFAULT_PORT: u16 = 7075;
