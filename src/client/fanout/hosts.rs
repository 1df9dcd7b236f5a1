//! HOSTS as pdsh and clush write them: `web[01-20]`, `db[1-3].example:7075`,
//! `a,b,c`, `127.0.0.[2-4]:7075`, `[::1]:7075`, several ranges in one name
//! (`r[1-2]n[1-3]`), lists inside a range (`n[1-3,7,10-12]`).
//!
//! A bracket holding a `:` is an IPv6 literal and is kept as it is; any
//! other bracket is a range of decimal numbers: `LO-HI` or `N`, comma
//! separated. A bound written with a leading zero gives the width every
//! number of that range is padded to (`[08-10]` is 08, 09, 10). Names are
//! kept in order, duplicates dropped. `-x` takes the same syntax and removes
//! every name it expands to; a name also matches the same host and port
//! written another way (`web1` and `web1:7075`).

use crate::client::Target;

/// The most names one set of specs may expand to: a typo such as
/// `n[1-99999999]` is an error, not an exhausted memory.
pub const MAX_HOSTS: usize = 100_000;

/// One host of a fan-out: its name as the user wrote it (after expansion),
/// which prefixes its output, and where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub target: Target,
}

/// Splits `spec` at the commas outside brackets.
fn split_top(spec: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '[' if depth > 0 => return Err(format!("\"{spec}\": nested '['")),
            '[' => depth += 1,
            ']' if depth == 0 => return Err(format!("\"{spec}\": ']' without '['")),
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(format!("\"{spec}\": '[' without ']'"));
    }
    parts.push(&spec[start..]);
    Ok(parts)
}

/// The numbers of one range body (`01-03,7`), padded as written.
fn range_values(body: &str, word: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in body.split(',') {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(lo) || !digits(hi) {
            return Err(format!("\"{word}\": bad range [{body}]: expected numbers such as [1-5] or [01-10,12]"));
        }
        let too_big = || format!("\"{word}\": range [{body}] is too large");
        let (a, b): (u64, u64) = (lo.parse().map_err(|_| too_big())?, hi.parse().map_err(|_| too_big())?);
        if a > b {
            return Err(format!("\"{word}\": range [{item}] goes backwards"));
        }
        if b - a >= MAX_HOSTS as u64 || out.len() + (b - a) as usize >= MAX_HOSTS {
            return Err(too_big());
        }
        let padded = lo.len() > 1 && lo.starts_with('0') || hi.len() > 1 && hi.starts_with('0');
        let width = if padded { lo.len() } else { 0 };
        out.extend((a..=b).map(|n| format!("{n:0width$}")));
    }
    Ok(out)
}

/// Expands one comma-free word: every range, as a cartesian product.
fn expand_word(word: &str) -> Result<Vec<String>, String> {
    if word.is_empty() {
        return Err("empty host name in the list".into());
    }
    let mut names = vec![String::new()];
    let mut rest = word;
    while let Some(open) = rest.find('[') {
        let close = open + rest[open..].find(']').expect("split_top checked the brackets");
        let (before, body) = (&rest[..open], &rest[open + 1..close]);
        for n in &mut names {
            n.push_str(before);
        }
        if body.contains(':') {
            // An IPv6 literal: kept with its brackets.
            for n in &mut names {
                n.push('[');
                n.push_str(body);
                n.push(']');
            }
        } else {
            let values = range_values(body, word)?;
            if names.len().saturating_mul(values.len()) > MAX_HOSTS {
                return Err(format!("\"{word}\" expands to more than {MAX_HOSTS} hosts"));
            }
            names = names.iter().flat_map(|n| values.iter().map(move |v| format!("{n}{v}"))).collect();
        }
        rest = &rest[close + 1..];
    }
    for n in &mut names {
        n.push_str(rest);
    }
    Ok(names)
}

/// Expands a HOSTS spec into host names, in order (duplicates kept).
pub fn expand(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for word in split_top(spec.trim())? {
        out.extend(expand_word(word.trim())?);
        if out.len() > MAX_HOSTS {
            return Err(format!("more than {MAX_HOSTS} hosts"));
        }
    }
    Ok(out)
}

/// The specs of a host file: one or more a line, blank lines and `#` comments skipped.
pub fn file_specs(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The hosts of `-H` specs (and host file lines), less those `-x` names.
/// An empty result is an error: there would be nothing to do.
pub fn resolve(specs: &[String], excludes: &[String]) -> Result<Vec<Host>, String> {
    let mut hosts: Vec<Host> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for spec in specs {
        for name in expand(spec)? {
            let target = Target::parse(&name, None).map_err(|e| format!("host {e}"))?;
            if seen.insert(name.clone()) {
                hosts.push(Host { name, target });
            }
        }
        if hosts.len() > MAX_HOSTS {
            return Err(format!("more than {MAX_HOSTS} hosts"));
        }
    }
    let mut drop_names = std::collections::HashSet::new();
    let mut drop_targets = std::collections::HashSet::new();
    for spec in excludes {
        for name in expand(spec)? {
            if let Ok(t) = Target::parse(&name, None) {
                drop_targets.insert((t.host, t.port));
            }
            drop_names.insert(name);
        }
    }
    hosts.retain(|h| !drop_names.contains(&h.name) && !drop_targets.contains(&(h.target.host.clone(), h.target.port)));
    if hosts.is_empty() {
        return Err("no hosts left to run on (every host was excluded)".into());
    }
    Ok(hosts)
}

/// Splits a name into runs of digits and of anything else.
fn tokens(name: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = name.as_bytes();
    for i in 1..=b.len() {
        if i == b.len() || b[i].is_ascii_digit() != b[i - 1].is_ascii_digit() {
            out.push(&name[start..i]);
            start = i;
        }
    }
    out
}

/// Folds names back into the range syntax, on one varying number at a
/// time, keeping the order: `web1,web2,web3,db1` is `web[1-3],db1`. What
/// `-b` titles its groups with.
pub fn fold(names: &[String]) -> String {
    // (the tokens of the first name, the index of the varying number, its values)
    let mut groups: Vec<(Vec<&str>, Option<usize>, Vec<&str>)> = Vec::new();
    for name in names {
        let t = tokens(name);
        let joined = groups.last_mut().and_then(|(first, k, values)| {
            if first.len() != t.len() || name.contains('[') {
                return None;
            }
            let differ: Vec<usize> = (0..t.len()).filter(|&i| first[i] != t[i]).collect();
            match (differ.as_slice(), *k) {
                ([i], None) if t[*i].as_bytes()[0].is_ascii_digit() => *k = Some(*i),
                ([i], Some(j)) if *i == j => {}
                _ => return None,
            }
            let i = k.expect("set above");
            values.push(t[i]);
            Some(())
        });
        if joined.is_none() {
            groups.push((t, None, Vec::new()));
        }
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(first, k, values)| {
            let Some(k) = k else { return first.concat() };
            let all: Vec<&str> = std::iter::once(first[k]).chain(values).collect();
            let mut ranges: Vec<(&str, &str)> = Vec::new();
            for v in all {
                let next = |a: &str, b: &str| {
                    let padded = |s: &str| s.len() > 1 && s.starts_with('0');
                    (a.len() == b.len() || !padded(a) && !padded(b))
                        && a.parse::<u64>().ok().and_then(|n| n.checked_add(1)) == b.parse().ok()
                };
                match ranges.last_mut() {
                    Some(r) if next(r.1, v) => r.1 = v,
                    _ => ranges.push((v, v)),
                }
            }
            let body: Vec<String> =
                ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            format!("{}[{}]{}", first[..k].concat(), body.join(","), first[k + 1..].concat())
        })
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Vec<String> {
        expand(s).unwrap_or_else(|err| panic!("{s:?}: {err}"))
    }

    #[test]
    fn ranges_keep_leading_zeros() {
        assert_eq!(e("web[01-03]"), ["web01", "web02", "web03"]);
        assert_eq!(e("web[08-10]"), ["web08", "web09", "web10"]);
        assert_eq!(e("web[8-10]"), ["web8", "web9", "web10"]);
        assert_eq!(e("n[001-002]x"), ["n001x", "n002x"]);
        assert_eq!(e("n[0-2]"), ["n0", "n1", "n2"]);
        assert_eq!(e("web[01-20]").len(), 20);
    }

    #[test]
    fn lists_in_and_out_of_brackets() {
        assert_eq!(e("a,b,c"), ["a", "b", "c"]);
        assert_eq!(e("n[1-2,5,7-8]"), ["n1", "n2", "n5", "n7", "n8"]);
        assert_eq!(e("db[1-2].example:7075,x"), ["db1.example:7075", "db2.example:7075", "x"]);
        assert_eq!(e("r[1-2]n[1-2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(e("127.0.0.[2-4]:7075"), ["127.0.0.2:7075", "127.0.0.3:7075", "127.0.0.4:7075"]);
        assert_eq!(e("127.0.0.1:[7075-7076]"), ["127.0.0.1:7075", "127.0.0.1:7076"]);
        assert_eq!(e(" a , b "), ["a", "b"]);
    }

    #[test]
    fn ipv6_literals_are_not_ranges() {
        assert_eq!(e("[::1]:7075"), ["[::1]:7075"]);
        assert_eq!(e("[::1]:7075,[fe80::1]:7076"), ["[::1]:7075", "[fe80::1]:7076"]);
        assert_eq!(e("[::1]:[7075-7076]"), ["[::1]:7075", "[::1]:7076"]);
        let h = resolve(&["[::1]:7075".into()], &[]).unwrap();
        assert_eq!(h[0].target, Target { host: "::1".into(), port: 7075 });
        assert_eq!(h[0].name, "[::1]:7075");
    }

    #[test]
    fn exclusion_and_duplicates() {
        let names = |h: Vec<Host>| h.into_iter().map(|h| h.name).collect::<Vec<_>>();
        let h = resolve(&["web[1-5]".into()], &["web[2-3]".into()]).unwrap();
        assert_eq!(names(h), ["web1", "web4", "web5"]);
        // The same host and port written another way is excluded too.
        let h = resolve(&["web1:7075,web2:99".into()], &["web1".into(), "web2:98".into()]).unwrap();
        assert_eq!(names(h), ["web2:99"]);
        let h = resolve(&["a,b".into(), "b,c,a".into()], &[]).unwrap();
        assert_eq!(names(h), ["a", "b", "c"]);
        assert!(resolve(&["a".into()], &["a".into()]).unwrap_err().contains("excluded"));
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            ("web[1-", "without ']'"),
            ("web1-]", "without '['"),
            ("web[[1]]", "nested"),
            ("web[a-c]", "bad range"),
            ("web[1-]", "bad range"),
            ("web[]", "bad range"),
            ("web[5-3]", "backwards"),
            ("a,,b", "empty host"),
            ("", "empty host"),
            ("n[0-99999999]", "too large"),
            ("a[1-1000]b[1-1000]", "more than"),
        ] {
            let err = expand(spec).unwrap_err();
            assert!(err.contains(why), "{spec:?}: {err}");
        }
        for bad in ["host:x", "host:70000", "[::1]5", ":5"] {
            assert!(resolve(&[bad.into()], &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_fold_back_into_ranges() {
        let f = |spec: &str| fold(&e(spec));
        assert_eq!(f("web[1-3],db1"), "web[1-3],db1");
        assert_eq!(f("web[01-03,05]"), "web[01-03,05]");
        assert_eq!(f("127.0.0.[2-4]:7075"), "127.0.0.[2-4]:7075");
        assert_eq!(f("a,b"), "a,b");
        assert_eq!(f("web7"), "web7");
        assert_eq!(f("n[9-10]"), "n[9-10]");
        assert_eq!(f("n[099-100]"), "n[099-100]");
        assert_eq!(f("[::1]:7075,[::1]:7076"), "[::1]:7075,[::1]:7076");
        assert_eq!(f("r[1-2]n[1-2]"), "r1n[1-2],r2n[1-2]");
        // Folding then expanding gives the names back.
        for spec in ["web[1-3],db1", "127.0.[1-2].[1-3]:7900,x9", "n[08-11]"] {
            assert_eq!(e(&fold(&e(spec))), e(spec), "{spec}");
        }
    }

    #[test]
    fn host_files_take_comments_and_blanks() {
        let specs = file_specs("# fleet\nweb[1-2]\n\n db1 db2  # two\n");
        assert_eq!(specs, ["web[1-2]", "db1", "db2"]);
    }
}
