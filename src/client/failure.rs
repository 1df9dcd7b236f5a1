//! Why a file command failed, and the status it gives: the one place
//! `ferry get`, `put`, `ls`, `stat` and their trees (and the session's
//! file lines) turn an error into a line on stderr and an exit status.

use super::exit;
use super::{io_text, Error, Options, Session, Target};
use crate::proto::auth::Key;
use std::io;

/// Why a file command failed; `report` prints it and gives the status.
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    /// Exit 1: a remote error, a digest mismatch, a local file error.
    Failed(String),
    BrokenPipe,
    /// Exit 255: writing to our stdout failed (not a closed pipe).
    Stdout(io::Error),
    /// Exit 255: the connection, the handshake or the protocol.
    Ferry(Error),
}

impl Failure {
    /// Whether the session can go on after this.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Failure::BrokenPipe | Failure::Stdout(_) | Failure::Ferry(_))
    }

    pub fn report(self) -> i32 {
        match self {
            Failure::Usage(m) => {
                exit::say(m);
                exit::USAGE
            }
            Failure::Failed(m) => {
                exit::say(m);
                exit::FAILED
            }
            Failure::BrokenPipe => exit::BROKEN_PIPE,
            Failure::Stdout(e) => exit::stdout_failed(&e),
            Failure::Ferry(e) => exit::fail(e),
        }
    }

    /// A client error; `local` names the local file a local error is about.
    pub fn from_error(e: Error, local: &dyn std::fmt::Display) -> Failure {
        match e {
            // A full disk says its code, as a tree's lines do (scripts look for it).
            Error::Remote(p) if p.code == crate::proto::ErrorCode::NoSpace => Failure::Failed(format!("{} ({})", p.message, p.code.as_str())),
            // A directory where a file was asked for: say how to copy one.
            Error::Remote(p) if p.code == crate::proto::ErrorCode::IsADirectory => {
                Failure::Failed(format!("{} (-r copies a directory)", if p.message.is_empty() { "is a directory" } else { &p.message }))
            }
            Error::Remote(p) if !p.code.is_fatal() => {
                Failure::Failed(if p.message.is_empty() { p.code.as_str().to_string() } else { p.message })
            }
            Error::Local(io) => Failure::local(local, &io),
            Error::LocalRead(io) => Failure::Failed(format!("{local}: {}", io_text(&io))),
            e => Failure::Ferry(e),
        }
    }

    /// The connection ended inside a get's body (see `from_peer`): the words
    /// that start the reason `get_file` gives.
    pub const CUT_IN_A_GET: &'static str = "in the middle of";

    /// A connection error, named with the host: the server closed the
    /// connection (with the reason it sent, if any), so the line says who.
    pub fn from_peer(self, peer: &std::net::SocketAddr) -> Failure {
        match self {
            Failure::Ferry(Error::Remote(p)) if p.code.is_fatal() => {
                // `Connect` displays its text as it is.
                Failure::Ferry(Error::Connect(format!("{peer} closed the connection: {}", p.message)))
            }
            Failure::Ferry(Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
            {
                // A get cut inside its body says which file and what likely happened.
                let within = e.get_ref().map(|m| m.to_string()).filter(|m| m.starts_with(Failure::CUT_IN_A_GET));
                let why = within.map(|m| format!(" {m}")).unwrap_or_default();
                Failure::Ferry(Error::Connect(format!("{peer} closed the connection{why}")))
            }
            f => f,
        }
    }

    /// A local write failed: our stdout's reader gone (quiet, 141); another
    /// error on our stdout (255); a local file's error (1).
    pub fn local(what: &dyn std::fmt::Display, e: &io::Error) -> Failure {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Failure::BrokenPipe;
        }
        if what.to_string() == "stdout" {
            return Failure::Stdout(io::Error::new(e.kind(), io_text(e)));
        }
        Failure::Failed(format!("{what}: {}", io_text(e)))
    }
}

pub fn status(r: Result<(), Failure>) -> i32 {
    r.map_or_else(Failure::report, |()| 0)
}

/// Connects, runs `f`, says goodbye; the exit status.
pub fn with_session(
    target: &Target,
    key: &Key,
    opts: &Options,
    f: impl FnOnce(&mut Session) -> Result<(), Failure>,
) -> i32 {
    let mut session = match Session::connect(target, key, opts) {
        Ok(s) => s,
        Err(e) => return Failure::Ferry(e).report(),
    };
    let r = f(&mut session).map_err(|f| f.from_peer(&session.peer));
    let fatal = r.as_ref().is_err_and(Failure::is_fatal);
    if !fatal {
        let _ = session.bye();
    }
    status(r)
}

/// Writes to our stdout: a closed pipe is 141, any other error 255.
pub fn print(bytes: &[u8]) -> Result<(), Failure> {
    crate::term::out(bytes).map_err(|e| if e.kind() == io::ErrorKind::BrokenPipe { Failure::BrokenPipe } else { Failure::Stdout(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_names_the_host_whichever_way_it_was_seen() {
        let peer: std::net::SocketAddr = "127.0.0.1:7075".parse().unwrap();
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::UnexpectedEof, io::ErrorKind::ConnectionReset] {
            let f = Failure::Ferry(Error::Io(io::Error::from(kind))).from_peer(&peer);
            match f {
                Failure::Ferry(e) => assert_eq!(e.to_string(), "127.0.0.1:7075 closed the connection", "{kind:?}"),
                f => panic!("{f:?}"),
            }
        }
        // A get cut inside its body keeps its reason; other texts do not show.
        let cut = io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} \"f\" (why)", Failure::CUT_IN_A_GET));
        let f = Failure::Ferry(Error::Io(cut)).from_peer(&peer);
        assert!(matches!(&f, Failure::Ferry(e) if e.to_string() == "127.0.0.1:7075 closed the connection in the middle of \"f\" (why)"), "{f:?}");
        let other = io::Error::new(io::ErrorKind::UnexpectedEof, "something else");
        let f = Failure::Ferry(Error::Io(other)).from_peer(&peer);
        assert!(matches!(&f, Failure::Ferry(e) if e.to_string() == "127.0.0.1:7075 closed the connection"), "{f:?}");
    }
}
