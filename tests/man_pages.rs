//! The man pages keep up with the code: every flag the binaries accept has an
//! entry in its page's option list, the protocol page names every error code,
//! and every config key `ferryd --check-config` prints is described in
//! ferryd.toml.5 and present in the packaged example config, which is valid.

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

// ---- the configuration file --------------------------------------------

fn read(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `name` qualified with its table: `listen`, `exec.allowed`.
fn qualified(table: &Option<String>, name: &str) -> String {
    match table {
        Some(t) => format!("{t}.{name}"),
        None => name.to_string(),
    }
}

fn is_key(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A temporary keys file made with `ferry::keys::generate`.
fn temp_keys() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    ferry::keys::generate(&keys, "man-pages").unwrap();
    (dir, keys)
}

/// `ferryd --check-config` with `args`; its standard output, which must succeed.
fn check_config(args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .args(args)
        .arg("--check-config")
        .env("FERRY_KEYS", "/nonexistent/ferry-man-pages-keys")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "ferryd {args:?} --check-config: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The built-in configuration as `--check-config` prints it (no config file).
fn default_rendering() -> String {
    let (_dir, keys) = temp_keys();
    check_config(&["--config".as_ref(), "/dev/null".as_ref(), "--keys".as_ref(), keys.as_os_str()])
}

/// `(key, value)` of every key `--check-config` prints, in its order: the
/// `key = value` lines, and the `# key: what` comments of keys without a
/// value (value None).
fn rendered_keys(text: &str) -> Vec<(String, Option<String>)> {
    let mut table = None;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = Some(t.to_string());
        } else if let Some((name, _)) = line.strip_prefix("# ").and_then(|l| l.split_once(':')) {
            if is_key(name) {
                keys.push((qualified(&table, name), None));
            }
        } else if let Some((name, value)) = line.split_once(" = ") {
            if is_key(name) {
                let value = value.split("  #").next().unwrap().trim().to_string();
                keys.push((qualified(&table, name), Some(value)));
            }
        }
    }
    keys
}

/// Keys with an `.It Cm key` entry in ferryd.toml.5, in order, qualified by
/// the `[table]` its `.Ss` heading names.
fn keys_in_page() -> Vec<String> {
    let mut table = None;
    let mut keys = Vec::new();
    for line in read("man/ferryd.toml.5").lines() {
        if line.starts_with(".Sh") || line.starts_with(".Ss") {
            table = line.split_once('[').and_then(|(_, r)| r.split_once(']')).map(|(t, _)| t.to_string());
        } else if let Some(rest) = line.strip_prefix(".It Cm ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            if is_key(name) {
                keys.push(qualified(&table, name));
            }
        }
    }
    keys
}

/// `(key, value, commented out)` of every `key = value` and `#key = value`
/// line of the packaged example config, in order.
fn keys_in_example() -> Vec<(String, String, bool)> {
    let mut table = None;
    let mut keys = Vec::new();
    for line in read("packaging/ferryd.toml").lines() {
        if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = Some(t.to_string());
            continue;
        }
        let (body, commented) = match line.strip_prefix('#') {
            Some(b) => (b, true),
            None => (line, false),
        };
        if let Some((name, value)) = body.split_once(" = ") {
            if is_key(name) {
                keys.push((qualified(&table, name), value.trim().to_string(), commented));
            }
        }
    }
    keys
}

#[test]
fn every_config_key_is_in_ferryd_toml_5_and_in_the_packaged_example() {
    let rendered = rendered_keys(&default_rendering());
    let want: Vec<&String> = rendered.iter().map(|(k, _)| k).collect();
    assert!(want.len() >= 20 && want.contains(&&"exec.allowed".to_string()), "{want:?}");

    let page = keys_in_page();
    let missing: Vec<_> = want.iter().filter(|k| !page.contains(k)).collect();
    assert!(missing.is_empty(), "ferryd.toml.5 has no `.It Cm` entry for: {missing:?}");

    let example = keys_in_example();
    let in_example: Vec<&String> = example.iter().map(|(k, _, _)| k).collect();
    let missing: Vec<_> = want.iter().filter(|k| !in_example.contains(k)).collect();
    assert!(missing.is_empty(), "packaging/ferryd.toml lacks: {missing:?}");
    let unknown: Vec<_> = in_example.iter().filter(|k| !want.contains(k)).collect();
    assert!(unknown.is_empty(), "packaging/ferryd.toml has keys ferryd does not print: {unknown:?}");

    // The example follows the page's order.
    let page_order: Vec<&String> = page.iter().filter(|k| in_example.contains(k)).collect();
    assert_eq!(in_example, page_order, "packaging/ferryd.toml is not in the order of ferryd.toml.5");

    // A commented-out key shows its built-in default, where it has one. The
    // root's default is the directory ferryd starts in: it cannot be written down.
    for (key, value, commented) in &example {
        let default = rendered.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.as_ref());
        if let (true, Some(default), false) = (commented, default, key == "root") {
            assert_eq!(value, default, "packaging/ferryd.toml: #{key} is not the default");
        }
    }
}

#[test]
fn the_packaged_example_config_passes_check_config() {
    let (dir, keys) = temp_keys();
    let example = format!("{}/packaging/ferryd.toml", env!("CARGO_MANIFEST_DIR"));
    let mut args: Vec<std::ffi::OsString> =
        vec!["--config".into(), example.clone().into(), "--keys".into(), keys.clone().into()];
    // A root the example sets may not exist on this machine.
    let root = keys_in_example().into_iter().find(|(k, _, commented)| k == "root" && !commented);
    if let Some((_, value, _)) = root {
        let path = std::path::Path::new(&example).parent().unwrap().join(value.trim_matches('"'));
        if !path.is_dir() {
            args.extend(["--root".into(), dir.path().as_os_str().to_owned()]);
        }
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let printed = check_config(&args);
    assert!(printed.contains("# key ids: man-pages"), "{printed}");
    assert!(printed.contains(&format!("# from {example}")), "{printed}");
}
