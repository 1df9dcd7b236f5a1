//! The man pages keep up with the code: every flag the binaries accept has an
//! entry in its page's option list, and the protocol page names every error code.

use std::collections::BTreeSet;
use std::process::Command;

/// Flags as `--help` shows them (`-k, --keys <FILE>` gives `k` and `-keys`).
fn flags(bin: &str, args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    assert!(out.status.success());
    let mut set = BTreeSet::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        let spec = line.split("  ").next().unwrap();
        for word in spec.split([',', ' ']) {
            if let Some(long) = word.strip_prefix("--") {
                set.insert(format!("-{long}"));
            } else if let Some(short) = word.strip_prefix('-') {
                if short.len() == 1 {
                    set.insert(short.to_string());
                }
            }
        }
    }
    set
}

/// Flags with an `.It Fl ...` entry in `page` (every `Fl` word on such lines).
fn documented(page: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(format!("{}/man/{page}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut set = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with(".It")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            if pair[0] == "Fl" {
                set.insert(pair[1].to_string());
            }
        }
    }
    set
}

fn check(page: &str, want: BTreeSet<String>) {
    let have = documented(page);
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(missing.is_empty(), "{page} has no option-list entry for: {missing:?}");
}

#[test]
fn every_ferryd_flag_is_in_ferryd_8() {
    check("ferryd.8", flags(env!("CARGO_BIN_EXE_ferryd"), &[]));
}

#[test]
fn every_ferry_flag_is_in_ferry_1() {
    let bin = env!("CARGO_BIN_EXE_ferry");
    let mut all = flags(bin, &[]);
    for sub in ["run", "ping", "get", "put", "ls", "stat", "keygen"] {
        all.extend(flags(bin, &[sub]));
    }
    check("ferry.1", all);
}

#[test]
fn the_protocol_page_names_every_error_code() {
    let text = std::fs::read_to_string(format!("{}/man/ferry-protocol.7", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for code in ferry::proto::msg::ALL_CODES {
        assert!(text.contains(code.as_str()), "ferry-protocol.7 does not mention {}", code.as_str());
    }
}
