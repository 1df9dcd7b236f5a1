//! How `ferry ls` and `ferry stat` show entries: `ls -l` mode strings, UTC
//! times computed from Unix seconds (no time zone database, no crate), and
//! the listing table.

use crate::proto::msg::{Entry, Kind};

/// The wire name of a kind: `file`, `dir`, `link` or `other`.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Link => "link",
        Kind::Other => "other",
    }
}

/// `ls -l`'s mode column: `-rw-r--r--`, `drwxr-xr-x`, `lrwxrwxrwx`, with
/// s/S and t/T for the set-id and sticky bits. An `other` entry is `?`.
pub fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        Kind::File => '-',
        Kind::Dir => 'd',
        Kind::Link => 'l',
        Kind::Other => '?',
    });
    // (read, write, execute, special bit, special letter) per class.
    let classes =
        [(0o400, 0o200, 0o100, 0o4000, 's'), (0o040, 0o020, 0o010, 0o2000, 's'), (0o004, 0o002, 0o001, 0o1000, 't')];
    for (r, w, x, special, letter) in classes {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        s.push(match (mode & x != 0, mode & special != 0) {
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// The UTC civil date and time of Unix seconds `t`:
/// (year, month 1-12, day 1-31, hour, minute, second).
pub fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days: eras of 400 years from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// `YYYY-MM-DD HH:MM` (UTC), the listing's time column.
pub fn time_minutes(t: i64) -> String {
    let (y, mo, d, h, mi, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}")
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for `stat`.
pub fn time_seconds(t: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// The `ls -l`-like table: mode, size (right-aligned), time, name; one
/// entry a line, each line ending in a newline.
pub fn table(entries: &[Entry]) -> String {
    let width = entries.iter().map(|e| e.file_size.to_string().len()).max().unwrap_or(1);
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!(
            "{} {:>width$} {} {}\n",
            mode_string(e.kind, e.mode),
            e.file_size,
            time_minutes(e.mtime),
            e.name
        ));
    }
    out
}

/// `ferry stat`'s lines: path, kind, size, mode (octal), mtime.
pub fn stat_lines(e: &Entry) -> String {
    format!(
        "path: {}\nkind: {}\nsize: {}\nmode: {:04o}\nmtime: {}\n",
        e.name,
        kind_name(e.kind),
        e.file_size,
        e.mode,
        time_seconds(e.mtime)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_string(Kind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(Kind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(Kind::Link, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(Kind::Other, 0), "?---------");
        assert_eq!(mode_string(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::Dir, 0o1770), "drwxrwx--T");
    }

    #[test]
    fn civil_dates_match_known_instants() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(civil(4_107_542_399), (2100, 2, 28, 23, 59, 59));
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(civil(-62_135_596_800), (1, 1, 1, 0, 0, 0));
        assert_eq!(time_minutes(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(time_seconds(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn civil_round_trips_every_day_for_a_few_centuries() {
        // Against a day-by-day walk of the Gregorian calendar.
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let start = -2_208_988_800i64; // 1900-01-01
        for day in 0..(400 * 366) {
            assert_eq!(civil(start + day * 86_400 + 3661), (y, m, d, 1, 1, 1));
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn the_table_aligns_sizes() {
        let e = |name: &str, kind, file_size| Entry { name: name.into(), kind, file_size, mode: 0o644, mtime: 0 };
        let t = table(&[e("a", Kind::File, 5), e("bb", Kind::Dir, 4096)]);
        assert_eq!(t, "-rw-r--r--    5 1970-01-01 00:00 a\ndrw-r--r-- 4096 1970-01-01 00:00 bb\n");
        assert_eq!(table(&[]), "");
    }
}
