//! ferry: a framed remote command and file daemon (`ferryd`) and its client (`ferry`).
//!
//! Every message on the wire is a frame (`u32` big-endian header length, a JSON
//! header, a body whose size the header gives), so replies are never glued
//! together or cut short, whatever the output size. The protocol is written up
//! in `man/ferry-protocol.7`.
//!
//! # Layout
//! Each module may import only what is listed beside it (checked by
//! `.ci/layout.py`: no import cycle between files, no file over 700 lines of
//! non-test code, no wire word spelled outside `proto`).
//! - `proto`: the pure protocol: frame codec, messages, handshake MACs and the
//!   client's handshake state machine, datagrams, keys format. Imports nothing
//!   else of the crate.
//! - `server`: the daemon: one `mio` reactor, connections as state machines in a
//!   slab; `server::io` is the socket seam, `server::ops` the only place a request
//!   becomes work (TCP and UDP), `server::transport` the socket type that tells
//!   TLS from v1 and wraps TLS, `server::udp` the datagram loop. Imports `proto`,
//!   `tls`, `config`, `paths`, `logger`, `sys`.
//! - `client`: one client core on `std::net` for single commands, the line
//!   session and fan-out, in clear or over TLS. Imports `proto`, `keys`,
//!   `sys`, `term`, `timefmt`, `tls`.
//! - `config`: every ferryd setting type: defaults, the TOML config file, the flags.
//! - `cidr`: address blocks, for `plaintext_from`. Imports nothing else of the crate.
//! - `keys`: finding, creating and loading keys files (permissions checked).
//! - `paths`: resolving request paths inside the served root.
//! - `sys`: the wall clock in Unix seconds and the open-files limit.
//! - `term`: checked writes to stdout and stderr, and escaping untrusted text
//!   for a terminal. Imports nothing else of the crate.
//! - `tls`: TLS 1.3 keyed by the shared key: derived Ed25519 identities, pinned
//!   verifiers, configs, the PEM export. Imports `proto`.
//! - `timefmt`: UTC times as ferry prints them (jiff does the calendar).
//! - `logger`: the `log` backends (stderr, timestamped unless journald reads it;
//!   a file of ferryd's own; syslog).
//!
//! The binaries (`src/bin`) are thin: flags in, exit statuses out. ferry-bench
//! (`src/bin/ferry-bench/`) is a binary of its own, not library API.

pub mod cidr;
pub mod client;
pub mod config;
pub mod keys;
pub mod logger;
pub mod paths;
pub mod proto;
pub mod server;
pub mod sys;
pub mod term;
pub mod tls;
pub mod timefmt;
