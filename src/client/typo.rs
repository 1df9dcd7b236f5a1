//! Did-you-mean for the command line: how far a mistyped word is from a
//! known one, and telling a mistyped subcommand from a session's HOST
//! (`ferry rnu host`), with the nearest subcommand as a hint; naming an
//! argument that is not UTF-8. Imports `term`.

/// Options before the subcommand that take a value (the next word).
pub const GLOBAL_VALUED: [&str; 7] = ["-k", "--keys", "-i", "--key-id", "-w", "--timeout", "--encoding"];

/// Edit distance with adjacent transpositions (`rnu` is 1 from `run`).
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A first word that cannot be the session's HOST: it is not a subcommand,
/// and the word after it is not a PORT (the session takes `HOST [PORT]`,
/// so `ferry rnu 127.0.0.1:7075` or `ferry stats h x` meant a subcommand).
/// A word with `:`, `.`, `[` or `/` in it reads as a host, never as a typo.
pub fn unknown_subcommand(args: &[String], names: &[String]) -> Option<String> {
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            words.extend(it.by_ref().cloned());
            break;
        }
        if GLOBAL_VALUED.contains(&a.as_str()) {
            it.next();
        } else if a == "--digest" && !words.is_empty() {
            it.next();
        } else if a == "--digest" {
            // A subcommand's flag given first: its value is no subcommand.
            return Some("--digest goes after get or put (ferry get --digest NAME HOST REMOTE [LOCAL])".into());
        } else if !a.starts_with('-') || a == "-" {
            words.push(a.clone());
        }
    }
    let (first, next) = (words.first()?, words.get(1)?);
    if first == "help" || names.contains(first) || names.contains(next) || first.contains([':', '.', '[', '/']) {
        return None;
    }
    if !next.is_empty() && next.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let near = names
        .iter()
        .map(|s| (distance(first, s), s.as_str()))
        .filter(|(d, s)| *d <= if s.len() <= 3 { 1 } else { 2 })
        .min();
    let hint = match near {
        Some((_, s)) => format!(" (did you mean {s}?)"),
        None => format!(" (subcommands: {}; a session takes HOST [PORT])", names.join(", ")),
    };
    Some(format!("unknown subcommand \"{first}\"{hint}"))
}

/// An argument that is not UTF-8, named (escaped) with why it cannot be sent.
pub fn not_utf8_argument() -> String {
    use std::os::unix::ffi::OsStrExt;
    match std::env::args_os().skip(1).find(|a| a.to_str().is_none()) {
        Some(a) => format!(
            "argument \"{}\" is not valid UTF-8: remote paths, hosts and commands must be UTF-8 (protocol v1 sends them as JSON strings; see ls in ferry(1))",
            crate::term::escape_bytes(a.as_bytes())
        ),
        None => "an argument is not valid UTF-8".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transposition_is_one_edit() {
        assert_eq!(distance("rnu", "run"), 1);
        assert_eq!(distance("stats", "stat"), 1);
        assert_eq!(distance("", "get"), 3);
        assert_eq!(distance("shell", "shell"), 0);
    }
}
