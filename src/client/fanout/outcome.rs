//! How one host of a fan-out ended: its exit status (from `client::exit`),
//! its summary category and its reason. Imports only `client::exit` and
//! the client's `Error`.

use crate::client::{exit, Error};
use crate::proto::ProtoError;

/// How one host ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    /// A `run` whose command ended.
    Exited { code: Option<i32>, signal: Option<i32> },
    /// A ping, put or get that worked.
    Done,
    /// The remote program could not start (127).
    SpawnFailed(String),
    /// A file error, remote or local (1).
    FileError(String),
    Unreachable(String),
    AuthFailed(String),
    TimedOut(String),
    /// The protocol, the connection lost, a server error.
    Error(String),
    /// The interrupt came before the request was sent.
    Cancelled,
    /// A second interrupt closed the connection while the request ran (the
    /// server ends what runs): 130, as for an interrupt.
    Interrupted,
}

/// The summary categories, in the order the summary lists them.
const CATEGORIES: [&str; 7] = ["ok", "failed", "unreachable", "auth-failed", "timed-out", "error", "interrupted"];

impl Outcome {
    /// A server's error reply.
    pub(super) fn server_error(e: &ProtoError) -> Outcome {
        Outcome::Error(Error::Remote(e.clone()).to_string())
    }

    /// A server's error reply to `run`: a one-word command the exec
    /// allow-list refused says what to do (`--argv`), as a single `run` does.
    pub(super) fn run_error(shell: bool, e: &ProtoError) -> Outcome {
        if shell && e.code == crate::proto::ErrorCode::NotAllowed {
            return Outcome::Error(format!("{} (not-allowed)", crate::client::argv_refusal(&e.message)));
        }
        Outcome::server_error(e)
    }

    /// A client error (from the handshake) as one host's outcome.
    pub(super) fn from_error(e: Error) -> Outcome {
        match e {
            Error::Auth(m) => Outcome::AuthFailed(m),
            Error::Remote(e) => Outcome::server_error(&e),
            e => Outcome::Error(e.to_string()),
        }
    }

    pub(super) fn status(&self) -> i32 {
        match self {
            Outcome::Exited { code, signal } => exit::shell(*code, *signal),
            Outcome::Done => exit::OK,
            Outcome::SpawnFailed(_) => exit::SPAWN_FAILED,
            Outcome::FileError(_) => exit::FAILED,
            Outcome::Cancelled | Outcome::Interrupted => exit::INTERRUPTED,
            Outcome::Unreachable(_) | Outcome::AuthFailed(_) | Outcome::TimedOut(_) | Outcome::Error(_) => {
                exit::FERRY_ERROR
            }
        }
    }

    /// A ferry error of this host, as opposed to a command exiting 255.
    pub(super) fn is_ferry_error(&self) -> bool {
        self.status() == exit::FERRY_ERROR && !matches!(self, Outcome::Exited { .. })
    }

    /// The summary category and JSON `status`.
    pub(super) fn category(&self) -> &'static str {
        match self {
            _ if self.status() == 0 => "ok",
            Outcome::Exited { .. } | Outcome::SpawnFailed(_) | Outcome::FileError(_) => "failed",
            Outcome::Unreachable(_) => "unreachable",
            Outcome::AuthFailed(_) => "auth-failed",
            Outcome::TimedOut(_) => "timed-out",
            Outcome::Error(_) => "error",
            Outcome::Cancelled | Outcome::Interrupted => "interrupted",
            Outcome::Done => "ok",
        }
    }

    /// Where the category comes in the summary.
    pub(super) fn rank(category: &str) -> Option<usize> {
        CATEGORIES.iter().position(|k| *k == category)
    }

    /// Why, for the summary line and JSON `error`.
    pub(super) fn why(&self) -> Option<String> {
        match self {
            Outcome::Exited { code: Some(0), .. } | Outcome::Done => None,
            Outcome::Exited { code: Some(c), .. } => Some(format!("exit {c}")),
            Outcome::Exited { signal: Some(s), .. } => Some(format!("signal {s}")),
            Outcome::Exited { .. } => Some("no status".into()),
            Outcome::SpawnFailed(m)
            | Outcome::FileError(m)
            | Outcome::Unreachable(m)
            | Outcome::AuthFailed(m)
            | Outcome::TimedOut(m)
            | Outcome::Error(m) => Some(m.clone()),
            Outcome::Cancelled => Some("interrupted before it ran".into()),
            Outcome::Interrupted => Some("interrupted while it ran".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_have_a_status_a_category_and_a_reason() {
        let exited = |code, signal| Outcome::Exited { code, signal };
        for (o, status, cat) in [
            (exited(Some(0), None), 0, "ok"),
            (exited(Some(3), None), 3, "failed"),
            (exited(None, Some(9)), 137, "failed"),
            (Outcome::Done, 0, "ok"),
            (Outcome::SpawnFailed("x".into()), 127, "failed"),
            (Outcome::FileError("x".into()), 1, "failed"),
            (Outcome::Unreachable("x".into()), 255, "unreachable"),
            (Outcome::AuthFailed("x".into()), 255, "auth-failed"),
            (Outcome::TimedOut("x".into()), 255, "timed-out"),
            (Outcome::Error("x".into()), 255, "error"),
            (Outcome::Cancelled, 130, "interrupted"),
            (Outcome::Interrupted, 130, "interrupted"),
        ] {
            assert_eq!((o.status(), o.category()), (status, cat), "{o:?}");
            assert_eq!(o.why().is_none(), status == 0, "{o:?}");
            assert!(Outcome::rank(cat).is_some());
        }
        assert_eq!(exited(None, Some(2)).why().as_deref(), Some("signal 2"));
        assert_eq!(exited(Some(4), None).why().as_deref(), Some("exit 4"));
        assert!(!exited(Some(255), None).is_ferry_error() && Outcome::Error("x".into()).is_ferry_error());
    }
}
