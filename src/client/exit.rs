//! Every exit status `ferry` gives, in one place: the subcommands, datagram
//! mode and fan-out all take their numbers and mappings from here. Imports
//! nothing from the rest of the client.
//!
//! A remote command's status passes through (128 + signal when signalled,
//! as a shell reports it); 127 when the remote program could not start; 1
//! for a remote or local file error; 2 for a command line that cannot work;
//! 255 for a ferry error (connection, authentication, protocol).

/// Success.
pub const OK: i32 = 0;
/// A remote error, a digest mismatch or a local file error.
pub const FAILED: i32 = 1;
/// A command line that cannot work.
pub const USAGE: i32 = 2;
/// The remote program could not be started (as a shell says "not found").
pub const SPAWN_FAILED: i32 = 127;
/// A ferry error: connection, authentication, protocol, no reply.
pub const FERRY_ERROR: i32 = 255;
/// Our own stdout went away (`| head`): what a shell reports for SIGPIPE.
pub const BROKEN_PIPE: i32 = crate::term::BROKEN_PIPE;
/// A fan-out host the interrupt kept from running, as if ^C had ended it.
pub const INTERRUPTED: i32 = 128 + libc::SIGINT;

/// The status a shell gives a command that ended with `code` or was killed
/// by `signal`; neither is a ferry error.
pub fn shell(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => FERRY_ERROR,
    }
}

/// Prints `ferry: MSG` on stderr (escaped: it may hold a server's words)
/// and gives 255.
pub fn fail(msg: impl std::fmt::Display) -> i32 {
    say(msg);
    FERRY_ERROR
}

/// Prints `ferry: MSG` on stderr, escaped for the terminal; never panics.
pub fn say(msg: impl std::fmt::Display) {
    crate::term::say("ferry", msg);
}

/// A write to our stdout failed: `BROKEN_PIPE` quietly when its reader went
/// away (as `cat` dies of SIGPIPE), else one line and 255.
pub fn stdout_failed(e: &std::io::Error) -> i32 {
    crate::term::write_failed("ferry", "stdout", e, FERRY_ERROR)
}

/// A fan-out's status from its hosts': SIGPIPE's if our stdout went away,
/// else 255 if any host had a ferry error (not merely a command exiting
/// 255), else the largest status of any host.
pub fn fleet(worst: i32, ferry_error: bool, stdout_broken: bool) -> i32 {
    if stdout_broken {
        BROKEN_PIPE
    } else if ferry_error {
        FERRY_ERROR
    } else {
        worst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_a_shell_gives_them() {
        assert_eq!(shell(Some(3), None), 3);
        assert_eq!(shell(None, Some(9)), 137);
        assert_eq!(shell(None, None), 255);
        assert_eq!((BROKEN_PIPE, INTERRUPTED), (141, 130));
        assert_eq!(fleet(3, false, false), 3);
        assert_eq!(fleet(3, true, false), 255);
        assert_eq!(fleet(0, true, true), 141);
    }
}
