//! How `ferry ls` and `ferry stat` show entries: `ls -l` mode strings, UTC
//! times (`crate::timefmt`), and the listing table. Imports only `proto`.

use crate::proto::msg::{Entry, Kind};
use crate::term::escape;
use crate::timefmt;

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
            timefmt::minutes(e.mtime),
            shown_name(e)
        ));
    }
    out
}

/// An entry's name for the terminal: a name that is not UTF-8 from its
/// exact bytes (`name_hex`), invalid bytes in octal (`\377`).
fn shown_name(e: &Entry) -> String {
    match e.name_hex.as_deref().and_then(crate::proto::auth::from_hex) {
        Some(bytes) => crate::term::escape_bytes(&bytes).into_owned(),
        None => escape(&e.name).into_owned(),
    }
}

/// `ferry stat`'s lines: path, kind, size, mode (octal), mtime.
pub fn stat_lines(e: &Entry) -> String {
    format!(
        "path: {}\nkind: {}\nsize: {}\nmode: {:04o}\nmtime: {}\n",
        escape(&e.name),
        kind_name(e.kind),
        e.file_size,
        e.mode,
        timefmt::seconds(e.mtime)
    )
}

/// The terminal's width in columns (80 when it cannot be told).
pub fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}

/// `name` cut from the left to the room the terminal's width leaves it
/// beside the sizes, the rate and the bar (`fit`).
pub fn short_name(name: &str) -> String {
    cut_name(name, fit(columns(), false).1)
}

/// A progress line's template for a terminal `width` columns wide, and the
/// room left for the name (`{prefix}`, or `{msg}` without `count`): the
/// bar, then the rate, then the total are dropped as the width shrinks, so
/// the line never wraps (at 40 columns the bar was an empty `[]` on a
/// wrapped line). The widths counted are the longest each field takes.
pub fn fit(width: usize, count: bool) -> (&'static str, usize) {
    // `{msg}` (`9999/9999 files`) with a tree; `{bytes}` and the total up
    // to 10 columns each, the rate 12, the ETA 4, the bar at least 8.
    const TREE: [(&str, usize); 4] = [
        ("{prefix} {msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}", 1 + 15 + 1 + 10 + 1 + 21 + 1 + 12 + 5 + 4),
        ("{prefix} {msg} {bytes}/{total_bytes} {binary_bytes_per_sec}", 1 + 15 + 1 + 21 + 1 + 12),
        ("{prefix} {msg} {bytes}", 1 + 15 + 1 + 10),
        ("{msg}", 15),
    ];
    const FILE: [(&str, usize); 3] = [
        ("{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}", 1 + 10 + 1 + 21 + 1 + 12 + 5 + 4),
        ("{msg} {bytes}/{total_bytes} {binary_bytes_per_sec}", 1 + 21 + 1 + 12),
        ("{msg} {bytes}", 1 + 10),
    ];
    let choices: &[(&'static str, usize)] = if count { &TREE } else { &FILE };
    for &(t, fixed) in choices {
        if width >= fixed + 6 {
            return (t, width - fixed - 1);
        }
    }
    let (t, fixed) = choices[choices.len() - 1];
    (t, width.saturating_sub(fixed + 1).max(1))
}

/// `name` cut from the left to at most `max` columns (`…` then its end).
pub fn cut_name(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - max.saturating_sub(1)).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_fits_the_terminal() {
        for count in [true, false] {
            for width in [20, 40, 60, 80, 120, 200] {
                let (t, room) = fit(width, count);
                // The longest line: every field at its widest, the name at its room.
                let worst = t
                    .replace("{prefix}", &"n".repeat(room))
                    .replace("{msg}", if count { "9999/9999 files" } else { &"n"[..0] })
                    .replace("{wide_bar}", &"=".repeat(8))
                    .replace("{bytes}", "1023.99 Ki")
                    .replace("{total_bytes}", "1023.99 Ki")
                    .replace("{binary_bytes_per_sec}", "999.99 MiB/s")
                    .replace("{eta}", "59m");
                let worst = if count { worst } else { format!("{}{worst}", "n".repeat(room)) };
                assert!(worst.chars().count() <= width, "{width} {count}: {worst:?}");
            }
            assert!(!fit(40, count).0.contains("wide_bar"), "no bar at 40 columns");
            assert!(fit(120, count).0.contains("wide_bar"));
        }
        assert_eq!(cut_name("abcdef", 4), "…def");
        assert_eq!(cut_name("abc", 4), "abc");
    }

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
    fn the_table_aligns_sizes() {
        let e = |name: &str, kind, file_size| Entry { name: name.into(), kind, file_size, mode: 0o644, mtime: 0, name_hex: None, target: None, error: None };
        let t = table(&[e("a", Kind::File, 5), e("bb", Kind::Dir, 4096)]);
        assert_eq!(t, "-rw-r--r--    5 1970-01-01 00:00 a\ndrw-r--r-- 4096 1970-01-01 00:00 bb\n");
        assert_eq!(table(&[]), "");
        let mut odd = e("ab\u{fffd}", Kind::File, 1);
        odd.name_hex = Some("6162ff".into());
        assert!(table(&[odd]).ends_with(" ab\\377\n"));
    }
}
