//! UTC times as ferry prints them: the listing's minutes, `stat`'s seconds and
//! the log's ISO 8601 milliseconds. Calendar arithmetic is jiff's, not ours;
//! no time zone database is consulted (everything is UTC).

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;

/// Unix seconds as a jiff timestamp, clamped into jiff's range (about
/// years -9999 to 9999) so a hostile mtime cannot make formatting fail.
fn at(t: i64) -> Timestamp {
    let t = t.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// `YYYY-MM-DD HH:MM` (UTC), the listing's time column.
pub fn minutes(t: i64) -> String {
    at(t).strftime("%Y-%m-%d %H:%M").to_string()
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for `stat`.
pub fn seconds(t: i64) -> String {
    at(t).strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `t` as UTC ISO 8601 with milliseconds: `2026-11-25T10:00:00.123Z`.
pub fn millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = at(d.as_secs().min(i64::MAX as u64) as i64);
    format!("{}.{:03}Z", secs.strftime("%Y-%m-%dT%H:%M:%S"), d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        assert_eq!(minutes(0), "1970-01-01 00:00");
        assert_eq!(seconds(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(seconds(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(seconds(4_107_542_400), "2100-03-01 00:00:00 UTC");
        assert_eq!(seconds(4_107_542_399), "2100-02-28 23:59:59 UTC");
        assert_eq!(minutes(1_795_000_000), "2026-11-18 11:06");
        let t = UNIX_EPOCH + Duration::from_millis(1_764_064_800_123);
        assert_eq!(millis(t), "2025-11-25T10:00:00.123Z");
    }

    #[test]
    fn out_of_range_times_clamp_instead_of_failing() {
        assert!(seconds(i64::MAX).starts_with("9999-12-3"), "{}", seconds(i64::MAX));
        assert!(minutes(i64::MIN).starts_with("-9999-"), "{}", minutes(i64::MIN));
    }
}
