//! Small facts about the process and the clock that the daemon, the client and
//! ferry-bench all need: the wall clock in Unix seconds and the open-files limit.

use std::time::{SystemTime, UNIX_EPOCH};

use rustix::process::{getrlimit, setrlimit, Resource};

/// The wall clock in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The open-files limit before and after an attempt to raise the soft limit
/// to `want` (None: as far as the hard limit allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub old: u64,
    pub now: u64,
}

/// Raises the soft open-files limit toward `want`, never past the hard limit
/// and never lowering it. Failing to raise it is not an error: callers decide
/// whether the result is enough.
pub fn raise_nofile(want: Option<u64>) -> NoFile {
    let lim = getrlimit(Resource::Nofile);
    let old = lim.current.unwrap_or(u64::MAX);
    let hard = lim.maximum;
    let target = match (want, hard) {
        (Some(w), Some(h)) => w.min(h),
        (Some(w), None) => w,
        (None, h) => h.unwrap_or(u64::MAX),
    };
    if target <= old {
        return NoFile { old, now: old };
    }
    let new = rustix::process::Rlimit { current: Some(target), maximum: hard };
    let now = if setrlimit(Resource::Nofile, new).is_ok() { target } else { old };
    NoFile { old, now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_is_idempotent() {
        let a = raise_nofile(Some(64));
        assert!(a.now >= a.old.min(64));
        let b = raise_nofile(None);
        assert!(b.now >= b.old);
        assert_eq!(raise_nofile(None).now, raise_nofile(None).old);
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }
}
