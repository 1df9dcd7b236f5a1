//! ferry: a framed remote command and file daemon (`ferryd`) and its client (`ferry`).
//!
//! Every message on the wire is a frame (`u32` big-endian header length, a JSON
//! header, a body whose size the header gives), so replies are never glued
//! together or cut short, whatever the output size. The protocol is written up
//! in `man/ferry-protocol.7`.
//!
//! # Layout
//! - `proto`: the pure protocol: frame codec, messages, handshake MACs, keys format.
//! - `server`: the daemon: one `mio` reactor, connections as state machines in a slab.
//! - `client`: a blocking client on `std::net`, used by the `ferry` binary.
//! - `config`: ferryd's settings: defaults, the TOML config file, the flags.
//! - `keys`: finding, creating and loading keys files (permissions checked).
//! - `paths`: resolving request paths inside the served root.
//! - `sys`: the wall clock in Unix seconds and the open-files limit.
//! - `term`: checked writes to stdout and stderr, and escaping untrusted text for a terminal.
//! - `timefmt`: UTC times as ferry prints them (jiff does the calendar).
//! - `logger`: the `log` backends (stderr, timestamped unless journald reads it; syslog).

pub mod bench;
pub mod client;
pub mod config;
pub mod keys;
pub mod logger;
pub mod paths;
pub mod proto;
pub mod server;
pub mod sys;
pub mod term;
pub mod timefmt;
