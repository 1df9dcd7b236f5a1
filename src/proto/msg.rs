//! The wire vocabulary: every message type, field name and error code the
//! protocol spells, in one file. Requests are read from a decoded `Header`;
//! replies are built here as JSON maps ready for `encode_frame`.

use super::frame::Header;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Protocol version spoken in `hello`.
pub const PROTO_VERSION: u64 = 1;
/// The one authentication scheme of protocol v1.
pub const AUTH_SCHEME: &str = "hmac-sha256";
/// The `type` of the server's greeting and of its answer to a good `auth`.
pub const HELLO: &str = "hello";
pub const WELCOME: &str = "welcome";

/// Error codes, as sent in `{"type":"error","code":...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadFrame,
    FrameTooLarge,
    AuthRequired,
    AuthFailed,
    TooManyConnections,
    ShuttingDown,
    UnknownType,
    BadRequest,
    BadPath,
    NotFound,
    SpawnFailed,
    ExecDisabled,
    NotAllowed,
    PermissionDenied,
    IsADirectory,
    NotADirectory,
    DigestMismatch,
    /// A `get`: the server's file changed while it was sent (the body is not
    /// a version of the file that ever existed).
    Changed,
    TooLarge,
    ReadOnly,
    NoSpace,
    IoError,
    /// Datagram mode: every child slot is taken (a datagram exec never waits).
    Busy,
    /// Datagram mode: the request's `ts` is outside the server's window.
    ClockSkew,
    /// Datagram mode: a request already served whose reply is no longer cached.
    Replayed,
    /// The connection was idle for the server's idle timeout and is closed.
    IdleTimeout,
    /// A peer outside `plaintext_from` spoke v1 in clear (or nothing) where
    /// only TLS is accepted.
    TlsRequired,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad-frame",
            ErrorCode::FrameTooLarge => "frame-too-large",
            ErrorCode::AuthRequired => "auth-required",
            ErrorCode::AuthFailed => "auth-failed",
            ErrorCode::TooManyConnections => "too-many-connections",
            ErrorCode::ShuttingDown => "shutting-down",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::BadPath => "bad-path",
            ErrorCode::NotFound => "not-found",
            ErrorCode::SpawnFailed => "spawn-failed",
            ErrorCode::ExecDisabled => "exec-disabled",
            ErrorCode::NotAllowed => "not-allowed",
            ErrorCode::PermissionDenied => "permission-denied",
            ErrorCode::IsADirectory => "is-a-directory",
            ErrorCode::NotADirectory => "not-a-directory",
            ErrorCode::DigestMismatch => "digest-mismatch",
            ErrorCode::Changed => "changed",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::ReadOnly => "read-only",
            ErrorCode::NoSpace => "no-space",
            ErrorCode::IoError => "io-error",
            ErrorCode::Busy => "busy",
            ErrorCode::ClockSkew => "clock-skew",
            ErrorCode::Replayed => "replayed",
            ErrorCode::IdleTimeout => "idle-timeout",
            ErrorCode::TlsRequired => "tls-required",
        }
    }

    /// Fatal codes close the connection once the error frame is flushed.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::AuthRequired
                | ErrorCode::AuthFailed
                | ErrorCode::TooManyConnections
                | ErrorCode::ShuttingDown
                | ErrorCode::IdleTimeout
                | ErrorCode::TlsRequired
        )
    }
}

/// A protocol error: a code and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProtoError {
        ProtoError { code, message: message.into() }
    }
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// The `auth` request, the client's half of the handshake.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Auth {
    pub key_id: String,
    pub nonce: String,
    pub mac: String,
}

/// The signals a client may send to a running command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SignalName {
    TERM,
    KILL,
    INT,
    HUP,
}

impl SignalName {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalName::TERM => "TERM",
            SignalName::KILL => "KILL",
            SignalName::INT => "INT",
            SignalName::HUP => "HUP",
        }
    }

    pub fn number(self) -> i32 {
        match self {
            SignalName::TERM => libc::SIGTERM,
            SignalName::KILL => libc::SIGKILL,
            SignalName::INT => libc::SIGINT,
            SignalName::HUP => libc::SIGHUP,
        }
    }
}

/// What an `exec` runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A string for `/bin/sh -c`.
    Shell(String),
    /// A program and its arguments, run without a shell.
    Argv(Vec<String>),
    /// The account's login shell: neither `cmd` nor `argv`, and `login: true`
    /// (implied by `pty`, so servers before `login` take it with a terminal).
    Login,
}

pub use super::pty::{Pty, WinSize, MAX_TERM};

/// `pty.term` must be a plain word a terminfo lookup can take.
fn check_pty(p: &Pty) -> Result<(), ProtoError> {
    if super::pty::term_is_sendable(&p.term) {
        return Ok(());
    }
    Err(ProtoError::new(ErrorCode::BadRequest, format!("exec: pty.term must be 1 to {MAX_TERM} printable characters without '=' or '/'")))
}

/// The `exec` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    pub command: Command,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub stdin: bool,
    pub timeout: Option<f64>,
    /// Run on a new pseudo-terminal (stdin then always goes to it).
    pub pty: Option<Pty>,
}

/// An `exec` header's fields as read, before they are checked (by serde
/// from the decoder's map, or by `lean`'s scan: one check for both).
#[derive(Deserialize, Default)]
pub(super) struct ExecFields {
    pub(super) cmd: Option<String>,
    pub(super) argv: Option<Vec<String>>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    pub(super) cwd: Option<String>,
    #[serde(default)]
    pub(super) stdin: bool,
    pub(super) timeout: Option<f64>,
    pub(super) pty: Option<Pty>,
    #[serde(default)]
    pub(super) login: bool,
}

impl ExecFields {
    /// The request these fields make, or why they make none.
    pub(super) fn check(self) -> Result<Exec, ProtoError> {
        let f = self;
        let command = match (f.cmd, f.argv) {
            (Some(_), _) | (_, Some(_)) if f.login => {
                return Err(ProtoError::new(ErrorCode::BadRequest, "exec: login goes without cmd and argv"))
            }
            (Some(cmd), None) => Command::Shell(cmd),
            (None, Some(argv)) if !argv.is_empty() => Command::Argv(argv),
            (None, Some(_)) => return Err(ProtoError::new(ErrorCode::BadRequest, "exec: argv is empty")),
            (None, None) if f.pty.is_some() || f.login => Command::Login,
            _ => return Err(ProtoError::new(ErrorCode::BadRequest, "exec: give exactly one of cmd and argv (or login)")),
        };
        if let Some(p) = &f.pty {
            check_pty(p)?;
        }
        if let Some(t) = f.timeout {
            if !(t.is_finite() && t > 0.0) {
                return Err(ProtoError::new(ErrorCode::BadRequest, "exec: timeout must be a positive number"));
            }
        }
        Ok(Exec { command, env: f.env, cwd: f.cwd, stdin: f.stdin, timeout: f.timeout, pty: f.pty })
    }
}

/// Which digest a `get` computes over the whole file, and a `put` over its body.
pub use super::digest::Digest;

/// The `get` request: the file at `path`, from `offset` to its end.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Get {
    pub path: String,
    #[serde(default)]
    pub offset: u64,
    #[serde(default)]
    pub digest: Digest,
}

pub use super::put::{Put, Trailer};
use super::put::{PutFields, TrailerFields};

fn bad_request(message: String) -> ProtoError {
    ProtoError::new(ErrorCode::BadRequest, message)
}

/// `list` and `stat` both name one path (`list` defaults to the root, ".").
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PathReq {
    pub path: String,
}

pub use super::entry::{Entry, EntryError, Kind};

/// A request, read from a frame header.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Auth(Auth),
    Ping,
    Bye,
    Exec(Exec),
    /// Bytes for the running command's stdin: the frame's body (size 0 = EOF).
    Stdin,
    Signal(SignalName),
    /// The running command's terminal changed size.
    Resize(WinSize),
    Get(Get),
    Put(Put),
    /// A piece of a streaming put: the frame's body (size 0 = the end).
    Data,
    /// The client's digest of a put's body, after the body.
    Trailer(Trailer),
    /// `List`, and `list` with `recursive` (every entry under the path).
    List(PathReq),
    ListTree(PathReq),
    Mkdir(super::tree::Mkdir),
    Symlink(super::tree::Symlink),
    Stat(PathReq),
    /// A valid frame of a type this server does not know.
    Unknown(String),
}

fn fields<T: for<'de> Deserialize<'de>>(header: &Header) -> Result<T, ProtoError> {
    // From the map itself: no copy of every key and value first.
    T::deserialize(&header.fields)
        .map_err(|e| ProtoError::new(ErrorCode::BadRequest, format!("{}: {e}", header.kind)))
}

impl Request {
    /// Reads the request a header carries. A known type with bad fields is
    /// `bad-request`; an unknown type is `Request::Unknown`, not an error, so
    /// the caller can skip its body and answer `unknown-type`.
    pub fn from_header(header: &Header) -> Result<Request, ProtoError> {
        Ok(match header.kind.as_str() {
            "auth" => Request::Auth(fields(header)?),
            "ping" => Request::Ping,
            "bye" => Request::Bye,
            "stdin" => Request::Stdin,
            "signal" => {
                #[derive(Deserialize)]
                struct S {
                    signal: SignalName,
                }
                Request::Signal(fields::<S>(header)?.signal)
            }
            "exec" => Request::Exec(fields::<ExecFields>(header)?.check()?),
            "resize" => Request::Resize(fields(header)?),
            "get" => Request::Get(fields(header)?),
            "put" => Request::Put(Put::from_fields(fields::<PutFields>(header)?, header.size).map_err(bad_request)?),
            "trailer" => Request::Trailer(fields::<TrailerFields>(header)?.trailer().map_err(bad_request)?),
            "data" => Request::Data,
            "list" => {
                #[derive(Deserialize)]
                struct L { path: Option<String>, #[serde(default)] recursive: bool }
                let l = fields::<L>(header)?;
                let p = PathReq { path: l.path.unwrap_or_else(|| ".".into()) };
                if l.recursive { Request::ListTree(p) } else { Request::List(p) }
            }
            "mkdir" => Request::Mkdir(fields(header)?),
            "symlink" => Request::Symlink(fields(header)?),
            "stat" => Request::Stat(fields(header)?),
            other => Request::Unknown(other.to_string()),
        })
    }
}

/// Builds a reply header of `kind` answering a request with `id`.
fn reply(kind: &str, id: Option<&Value>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    if let Some(id) = id {
        m.insert("id".into(), id.clone());
    }
    m
}

pub fn hello(server: &str, nonce_hex: &str) -> Map<String, Value> {
    let mut m = reply("hello", None);
    m.insert("proto".into(), json!(PROTO_VERSION));
    m.insert("server".into(), json!(server));
    m.insert("auth".into(), json!([AUTH_SCHEME]));
    m.insert("digests".into(), json!(super::digest::OFFERED.map(Digest::as_str)));
    m.insert("nonce".into(), json!(nonce_hex));
    m
}

pub fn auth(key_id: &str, nonce_hex: &str, mac_hex: &str) -> Map<String, Value> {
    let mut m = reply("auth", None);
    m.insert("key_id".into(), json!(key_id));
    m.insert("nonce".into(), json!(nonce_hex));
    m.insert("mac".into(), json!(mac_hex));
    m
}

pub fn welcome(mac_hex: &str, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("welcome", id);
    m.insert("mac".into(), json!(mac_hex));
    m
}

pub fn pong(id: Option<&Value>) -> Map<String, Value> {
    reply("pong", id)
}

pub use super::direct::{encode_exit, encode_pong};

/// The header of a `stdout` or `stderr` chunk (the size is set by the encoder).
pub fn output(stream: Stream, id: Option<&Value>) -> Map<String, Value> {
    reply(stream.as_str(), id)
}

pub fn exit(code: Option<i32>, signal: Option<i32>, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("exit", id);
    m.insert("code".into(), json!(code));
    m.insert("signal".into(), json!(signal));
    m
}

/// The header of a `get` reply; its body (`size`, set by the encoder) follows.
pub fn file(path: &str, file_size: u64, mode: u32, mtime: i64, offset: u64, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("file", id);
    m.insert("path".into(), json!(path));
    m.insert("file_size".into(), json!(file_size));
    m.insert("mode".into(), json!(mode));
    m.insert("mtime".into(), json!(mtime));
    m.insert("offset".into(), json!(offset));
    m
}

/// `"digest": NAME` and, with a value, `NAME: hex`.
fn insert_digest(m: &mut Map<String, Value>, digest: Digest, hex: Option<&str>) {
    m.insert("digest".into(), json!(digest.as_str()));
    if let Some(h) = hex {
        m.insert(digest.as_str().into(), json!(h));
    }
}

/// The end of a `get`: the digest of the whole file, in the field named
/// after it, when one was asked for.
pub fn done(digest: Digest, hex: Option<&str>, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("done", id);
    insert_digest(&mut m, digest, hex);
    m
}

/// A `put` committed, with the digest the server computed over the body.
pub fn ok(path: &str, file_size: u64, digest: Digest, hex: Option<&str>, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("ok", id);
    m.insert("path".into(), json!(path));
    m.insert("file_size".into(), json!(file_size));
    insert_digest(&mut m, digest, hex);
    m
}

/// The header of a `list` reply; the body is a JSON array of `Entry`.
pub fn listing(path: &str, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("listing", id);
    m.insert("path".into(), json!(path));
    m
}

/// A `stat` reply: the entry's fields, with `path` for `name`.
pub fn stat(path: &str, e: &Entry, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("stat", id);
    m.insert("path".into(), json!(path));
    m.insert("kind".into(), json!(e.kind));
    m.insert("file_size".into(), json!(e.file_size));
    m.insert("mode".into(), json!(e.mode));
    m.insert("mtime".into(), json!(e.mtime));
    m
}

pub fn error(err: &ProtoError, id: Option<&Value>) -> Map<String, Value> {
    let mut m = reply("error", id);
    m.insert("code".into(), json!(err.code.as_str()));
    m.insert("message".into(), json!(err.message));
    m
}

/// Client-side request builders (the server never sends these).
pub mod request {
    use super::*;

    pub fn ping() -> Map<String, Value> {
        reply("ping", None)
    }

    pub fn bye() -> Map<String, Value> {
        reply("bye", None)
    }

    pub fn exec(req: &Exec) -> Map<String, Value> {
        let mut m = reply("exec", None);
        match &req.command {
            Command::Shell(cmd) => m.insert("cmd".into(), json!(cmd)),
            Command::Argv(argv) => m.insert("argv".into(), json!(argv)),
            Command::Login => m.insert("login".into(), json!(true)),
        };
        if !req.env.is_empty() {
            m.insert("env".into(), json!(req.env));
        }
        if let Some(cwd) = &req.cwd {
            m.insert("cwd".into(), json!(cwd));
        }
        if req.stdin {
            m.insert("stdin".into(), json!(true));
        }
        if let Some(t) = req.timeout {
            m.insert("timeout".into(), json!(t));
        }
        if let Some(p) = &req.pty {
            m.insert("pty".into(), json!({"term": p.term, "rows": p.size.rows, "cols": p.size.cols}));
        }
        m
    }

    pub fn stdin() -> Map<String, Value> {
        reply("stdin", None)
    }

    pub fn signal(sig: SignalName) -> Map<String, Value> {
        let mut m = reply("signal", None);
        m.insert("signal".into(), json!(sig.as_str()));
        m
    }

    /// The client's terminal changed size (to a command on a pty).
    pub fn resize(size: WinSize) -> Map<String, Value> {
        let mut m = reply("resize", None);
        m.insert("rows".into(), json!(size.rows));
        m.insert("cols".into(), json!(size.cols));
        m
    }

    pub fn get(path: &str, offset: u64, digest: Digest) -> Map<String, Value> {
        let mut m = reply("get", None);
        m.insert("path".into(), json!(path));
        if offset > 0 {
            m.insert("offset".into(), json!(offset));
        }
        // sha256 is the default: left out, so that an older server is asked what it knows.
        if digest != Digest::Sha256 {
            m.insert("digest".into(), json!(digest.as_str()));
        }
        m
    }

    /// How a put's digest travels: none asked; the server's default
    /// (sha256, named in `ok`) with nothing to check; in the header (old
    /// style); or in a `trailer` frame after the body.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PutDigest<'a> {
        None,
        Default,
        Header(Digest, &'a str),
        Trailer(Digest),
    }

    /// A sized put (the encoder sets `size`) or, with `stream`, a streaming one.
    pub fn put(path: &str, mode: Option<u32>, digest: PutDigest, stream: bool) -> Map<String, Value> {
        let mut m = reply("put", None);
        m.insert("path".into(), json!(path));
        if stream {
            m.insert("stream".into(), json!(true));
        }
        if let Some(mode) = mode {
            m.insert("mode".into(), json!(mode));
        }
        match digest {
            PutDigest::None => {
                m.insert("digest".into(), json!("none"));
            }
            PutDigest::Default => {}
            PutDigest::Header(d, hex) => {
                m.insert(d.as_str().into(), json!(hex));
            }
            PutDigest::Trailer(d) => {
                m.insert("digest".into(), json!(d.as_str()));
                m.insert("trailer".into(), json!(true));
            }
        }
        m
    }

    /// The trailer of a put: our digest of the body sent.
    pub fn trailer(digest: Digest, hex: &str) -> Map<String, Value> {
        let mut m = reply("trailer", None);
        m.insert(digest.as_str().into(), json!(hex));
        m
    }

    pub fn data() -> Map<String, Value> {
        reply("data", None)
    }

    pub fn list(path: &str) -> Map<String, Value> {
        let mut m = reply("list", None);
        m.insert("path".into(), json!(path));
        m
    }

    pub fn stat(path: &str) -> Map<String, Value> {
        let mut m = reply("stat", None);
        m.insert("path".into(), json!(path));
        m
    }
}

/// The two output streams of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Replies as a client reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Hello { nonce: String },
    Welcome { mac: String },
    Pong,
    Output(Stream),
    Exit { code: Option<i32>, signal: Option<i32> },
    Error(ProtoError),
    Other(String),
}

impl Reply {
    pub fn from_header(h: &Header) -> Reply {
        let int = |k: &str| h.fields.get(k).and_then(Value::as_i64).map(|v| v as i32);
        match h.kind.as_str() {
            "hello" => Reply::Hello { nonce: h.str("nonce").unwrap_or_default().to_string() },
            "welcome" => Reply::Welcome { mac: h.str("mac").unwrap_or_default().to_string() },
            "pong" => Reply::Pong,
            "stdout" => Reply::Output(Stream::Stdout),
            "stderr" => Reply::Output(Stream::Stderr),
            "exit" => Reply::Exit { code: int("code"), signal: int("signal") },
            "error" => {
                let code = h.str("code").unwrap_or("unknown");
                let message = h.str("message").unwrap_or("").to_string();
                // Codes this build does not know keep their text in the message.
                let known = ALL_CODES.iter().copied().find(|c| c.as_str() == code);
                match known {
                    Some(c) => Reply::Error(ProtoError::new(c, message)),
                    None => Reply::Error(ProtoError::new(ErrorCode::BadRequest, format!("{code}: {message}"))),
                }
            }
            other => Reply::Other(other.to_string()),
        }
    }
}

pub const ALL_CODES: [ErrorCode; 27] = [
    ErrorCode::BadFrame,
    ErrorCode::FrameTooLarge,
    ErrorCode::AuthRequired,
    ErrorCode::AuthFailed,
    ErrorCode::TooManyConnections,
    ErrorCode::ShuttingDown,
    ErrorCode::UnknownType,
    ErrorCode::BadRequest,
    ErrorCode::BadPath,
    ErrorCode::NotFound,
    ErrorCode::SpawnFailed,
    ErrorCode::ExecDisabled,
    ErrorCode::NotAllowed,
    ErrorCode::PermissionDenied,
    ErrorCode::IsADirectory,
    ErrorCode::NotADirectory,
    ErrorCode::DigestMismatch,
    ErrorCode::Changed,
    ErrorCode::TooLarge,
    ErrorCode::ReadOnly,
    ErrorCode::NoSpace,
    ErrorCode::IoError,
    ErrorCode::Busy,
    ErrorCode::ClockSkew,
    ErrorCode::Replayed,
    ErrorCode::IdleTimeout,
    ErrorCode::TlsRequired,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::parse_header;

    fn req(json: &str) -> Result<Request, ProtoError> {
        Request::from_header(&parse_header(json.as_bytes()).unwrap())
    }

    #[test]
    fn codes_are_kebab_and_fatality_is_as_specified() {
        let fatal: Vec<_> = ALL_CODES.iter().filter(|c| c.is_fatal()).map(|c| c.as_str()).collect();
        assert_eq!(
            fatal,
            [
                "bad-frame",
                "frame-too-large",
                "auth-required",
                "auth-failed",
                "too-many-connections",
                "shutting-down",
                "idle-timeout",
                "tls-required"
            ]
        );
        for c in ALL_CODES {
            assert!(c.as_str().chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'));
        }
    }

    #[test]
    fn exec_takes_cmd_or_argv_but_not_both() {
        assert!(matches!(req(r#"{"type":"exec","cmd":"ls"}"#), Ok(Request::Exec(Exec { command: Command::Shell(_), .. }))));
        let Ok(Request::Exec(e)) = req(r#"{"type":"exec","argv":["ls","-l"],"env":{"A":"1"},"stdin":true,"timeout":2.5}"#)
        else {
            panic!()
        };
        assert_eq!(e.command, Command::Argv(vec!["ls".into(), "-l".into()]));
        assert_eq!(e.env.get("A").map(String::as_str), Some("1"));
        assert!(e.stdin);
        assert_eq!(e.timeout, Some(2.5));
        for bad in [
            r#"{"type":"exec"}"#,
            r#"{"type":"exec","cmd":"ls","argv":["ls"]}"#,
            r#"{"type":"exec","argv":[]}"#,
            r#"{"type":"exec","argv":"ls"}"#,
            r#"{"type":"exec","cmd":"ls","env":{"A":1}}"#,
            r#"{"type":"exec","cmd":"ls","timeout":-1}"#,
            r#"{"type":"exec","cmd":"ls","timeout":0}"#,
        ] {
            assert_eq!(req(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn a_pty_exec_reads_term_and_size_and_may_omit_the_command() {
        let Ok(Request::Exec(e)) = req(r#"{"type":"exec","pty":{"term":"xterm-256color","rows":40,"cols":132}}"#) else {
            panic!("a login shell on a pty")
        };
        assert_eq!(e.command, Command::Login);
        assert_eq!(e.pty, Some(Pty { term: "xterm-256color".into(), size: WinSize { rows: 40, cols: 132 } }));
        let Ok(Request::Exec(e)) = req(r#"{"type":"exec","argv":["top"],"pty":{"term":"vt100"}}"#) else { panic!() };
        assert_eq!(e.pty.unwrap().size, WinSize { rows: 0, cols: 0 });
        // The builder writes what the parser reads.
        let sent = Exec { command: Command::Login, env: Default::default(), cwd: None, stdin: false, timeout: None, pty: Some(Pty { term: "dumb".into(), size: WinSize { rows: 24, cols: 80 } }) };
        let wire = Value::Object(request::exec(&sent));
        assert_eq!(wire, json!({"type":"exec","login":true,"pty":{"term":"dumb","rows":24,"cols":80}}));
        assert_eq!(req(&wire.to_string()), Ok(Request::Exec(sent)));
        for bad in [
            r#"{"type":"exec"}"#,
            r#"{"type":"exec","pty":{"rows":1,"cols":1}}"#,
            r#"{"type":"exec","pty":{"term":""}}"#,
            r#"{"type":"exec","pty":{"term":"a b"}}"#,
            r#"{"type":"exec","pty":{"term":"../x"}}"#,
            r#"{"type":"exec","pty":{"term":"x","rows":70000}}"#,
            r#"{"type":"exec","pty":{"term":"x","cols":-1}}"#,
            r#"{"type":"exec","pty":true}"#,
            r#"{"type":"exec","login":true,"cmd":"ls"}"#,
            r#"{"type":"exec","login":true,"argv":["ls"],"pty":{"term":"vt100"}}"#,
            r#"{"type":"exec","login":"yes"}"#,
        ] {
            assert_eq!(req(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
        assert_eq!(req(&format!(r#"{{"type":"exec","pty":{{"term":"{}"}}}}"#, "x".repeat(MAX_TERM))).map(|_| ()), Ok(()));
        // `login` alone: the login shell on pipes (ferry shell with stdin not a terminal).
        let Ok(Request::Exec(e)) = req(r#"{"type":"exec","login":true,"stdin":true}"#) else { panic!("login on pipes") };
        assert_eq!((e.command, e.pty, e.stdin), (Command::Login, None, true));
        let sent = Exec { command: Command::Login, env: Default::default(), cwd: None, stdin: true, timeout: None, pty: None };
        assert_eq!(Value::Object(request::exec(&sent)), json!({"type":"exec","login":true,"stdin":true}));
        assert!(req(&format!(r#"{{"type":"exec","pty":{{"term":"{}"}}}}"#, "x".repeat(MAX_TERM + 1))).is_err());
    }

    #[test]
    fn resize_frames_carry_rows_and_cols() {
        assert_eq!(req(r#"{"type":"resize","rows":50,"cols":200}"#), Ok(Request::Resize(WinSize { rows: 50, cols: 200 })));
        let w = Value::Object(request::resize(WinSize { rows: 3, cols: 4 }));
        assert_eq!(w, json!({"type":"resize","rows":3,"cols":4}));
        assert_eq!(req(r#"{"type":"resize","rows":"50"}"#).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(req(r#"{"type":"resize","rows":65536,"cols":1}"#).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn signals_and_unknown_types() {
        assert_eq!(req(r#"{"type":"signal","signal":"INT"}"#), Ok(Request::Signal(SignalName::INT)));
        assert_eq!(req(r#"{"type":"signal","signal":"USR1"}"#).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(req(r#"{"type":"frobnicate","x":1}"#), Ok(Request::Unknown("frobnicate".into())));
    }

    #[test]
    fn file_requests_read_their_fields() {
        assert_eq!(
            req(r#"{"type":"get","path":"a/b"}"#),
            Ok(Request::Get(Get { path: "a/b".into(), offset: 0, digest: Digest::Sha256 }))
        );
        assert_eq!(
            req(r#"{"type":"get","path":"a","offset":7,"digest":"none"}"#),
            Ok(Request::Get(Get { path: "a".into(), offset: 7, digest: Digest::None }))
        );
        assert_eq!(
            req(r#"{"type":"get","path":"a","digest":"blake3"}"#),
            Ok(Request::Get(Get { path: "a".into(), offset: 0, digest: Digest::Blake3 }))
        );
        let sha = "AB".repeat(32);
        let put = |path: &str, size, mode, digest, expect: Option<String>, trailer| {
            Request::Put(Put { path: path.into(), size, mode, digest, expect, trailer, mtime: None, tree: None })
        };
        // Old style: the digest in the header.
        assert_eq!(
            req(&format!(r#"{{"type":"put","path":"x","size":3,"mode":420,"sha256":"{sha}"}}"#)).unwrap(),
            put("x", Some(3), Some(0o644), Digest::Sha256, Some("ab".repeat(32)), false)
        );
        assert_eq!(
            req(&format!(r#"{{"type":"put","path":"x","blake3":"{sha}"}}"#)).unwrap(),
            put("x", Some(0), None, Digest::Blake3, Some("ab".repeat(32)), false)
        );
        // The digest after the body.
        assert_eq!(
            req(r#"{"type":"put","path":"x","digest":"blake3","trailer":true}"#).unwrap(),
            put("x", Some(0), None, Digest::Blake3, None, true)
        );
        assert_eq!(
            req(r#"{"type":"put","path":"x","stream":true}"#).unwrap(),
            put("x", None, None, Digest::Sha256, None, false)
        );
        assert_eq!(
            req(r#"{"type":"put","path":"x","digest":"none"}"#).unwrap(),
            put("x", Some(0), None, Digest::None, None, false)
        );
        assert_eq!(
            req(&format!(r#"{{"type":"trailer","blake3":"{sha}"}}"#)).unwrap(),
            Request::Trailer(Trailer { digest: Digest::Blake3, hex: "ab".repeat(32) })
        );
        assert_eq!(
            req(r#"{"type":"put","path":"x","size":3,"mtime":-5,"tree":"t","digest":"blake3","trailer":true}"#).unwrap(),
            Request::Put(Put {
                path: "x".into(),
                size: Some(3),
                mode: None,
                digest: Digest::Blake3,
                expect: None,
                trailer: true,
                mtime: Some(-5),
                tree: Some("t".into())
            })
        );
        assert_eq!(
            req(r#"{"type":"list","path":"d","recursive":true}"#),
            Ok(Request::ListTree(PathReq { path: "d".into() }))
        );
        assert_eq!(req(r#"{"type":"put","path":"x","stream":true,"tree":"t"}"#).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(req(r#"{"type":"list"}"#), Ok(Request::List(PathReq { path: ".".into() })));
        assert_eq!(req(r#"{"type":"stat","path":"f"}"#), Ok(Request::Stat(PathReq { path: "f".into() })));
        for bad in [
            r#"{"type":"get"}"#,
            r#"{"type":"get","path":"a","offset":-1}"#,
            r#"{"type":"get","path":"a","digest":"md5"}"#,
            r#"{"type":"put","size":1}"#,
            r#"{"type":"put","path":"x","stream":true,"size":4}"#,
            r#"{"type":"put","path":"x","sha256":"abc"}"#,
            r#"{"type":"put","path":"x","mode":65536}"#,
            r#"{"type":"put","path":"x","digest":"none","trailer":true}"#,
            r#"{"type":"put","path":"x","digest":"md5","trailer":true}"#,
            &format!(r#"{{"type":"put","path":"x","digest":"sha256","blake3":"{sha}"}}"#),
            &format!(r#"{{"type":"put","path":"x","sha256":"{sha}","blake3":"{sha}"}}"#),
            &format!(r#"{{"type":"put","path":"x","sha256":"{sha}","trailer":true}}"#),
            r#"{"type":"trailer"}"#,
            r#"{"type":"trailer","blake3":"abc"}"#,
            &format!(r#"{{"type":"trailer","sha256":"{sha}","blake3":"{sha}"}}"#),
            r#"{"type":"stat"}"#,
        ] {
            assert_eq!(req(bad).unwrap_err().code, ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn not_allowed_is_a_known_non_fatal_code() {
        assert!(!ErrorCode::NotAllowed.is_fatal());
        let h = parse_header(br#"{"type":"error","code":"not-allowed","message":"no"}"#).unwrap();
        assert_eq!(Reply::from_header(&h), Reply::Error(ProtoError::new(ErrorCode::NotAllowed, "no")));
    }

    #[test]
    fn the_pong_fast_path_writes_the_same_frame() {
        for id in [None, Some(json!(1)), Some(json!("a\"b")), Some(json!(null)), Some(json!(1.5))] {
            let mut fast = Vec::new();
            encode_pong(&mut fast, id.as_ref());
            let mut slow = Vec::new();
            crate::proto::encode_frame(&mut slow, pong(id.as_ref()), &[]);
            assert_eq!(fast, slow, "{id:?}");
        }
    }

    #[test]
    fn the_exit_fast_path_writes_the_same_frame() {
        for id in [None, Some(json!(7)), Some(json!("a\"b\n")), Some(json!({"x":[1]}))] {
            for (code, signal) in [(Some(0), None), (Some(255), None), (Some(-1), None), (None, Some(9)), (None, None)] {
                for timed_out in [false, true] {
                    let mut fast = Vec::new();
                    encode_exit(&mut fast, code, signal, timed_out, id.as_ref());
                    let mut m = exit(code, signal, id.as_ref());
                    if timed_out {
                        m.insert("timed_out".into(), Value::Bool(true));
                    }
                    let mut slow = Vec::new();
                    crate::proto::encode_frame(&mut slow, m, &[]);
                    assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&slow));
                }
            }
        }
    }

    #[test]
    fn replies_echo_the_id() {
        let id = json!("abc");
        assert_eq!(Value::Object(pong(Some(&id))), json!({"type":"pong","id":"abc"}));
        assert_eq!(Value::Object(exit(Some(3), None, None)), json!({"type":"exit","code":3,"signal":null}));
        let e = ProtoError::new(ErrorCode::UnknownType, "no such type");
        assert_eq!(
            Value::Object(error(&e, Some(&json!(1)))),
            json!({"type":"error","code":"unknown-type","message":"no such type","id":1})
        );
    }
}
