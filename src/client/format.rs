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

/// `name` cut from the left to at most a third of the width, so that the
/// sizes, the rate and some bar fit on one line.
pub fn short_name(name: &str) -> String {
    let max = (columns() / 3).max(8);
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
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
    fn the_table_aligns_sizes() {
        let e = |name: &str, kind, file_size| Entry { name: name.into(), kind, file_size, mode: 0o644, mtime: 0, name_hex: None, target: None };
        let t = table(&[e("a", Kind::File, 5), e("bb", Kind::Dir, 4096)]);
        assert_eq!(t, "-rw-r--r--    5 1970-01-01 00:00 a\ndrw-r--r-- 4096 1970-01-01 00:00 bb\n");
        assert_eq!(table(&[]), "");
        let mut odd = e("ab\u{fffd}", Kind::File, 1);
        odd.name_hex = Some("6162ff".into());
        assert!(table(&[odd]).ends_with(" ab\\377\n"));
    }
}
