//! The Python client library (packaging/python/ferry_client.py) against the
//! real ferryd: runs its unittest script, packaging/python/test_ferry_client.py,
//! with `python3` (standard library only, nothing to install: sha256), and in
//! a venv with the `blake3` package (blake3), and fails with the script's
//! output when any of its tests fails.
mod common;

use common::{python_venv, run_bounded, Daemon};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The Python library's own blake3 dependency, when it is installed.
const BLAKE3: &str = "blake3==1.0.11";

#[test]
fn python_client_library_against_the_real_ferryd() {
    run_the_script("python3".into(), "sha256");
}

#[test]
fn python_client_library_with_blake3() {
    let venv = python_venv("blake3", BLAKE3, "FERRY_BLAKE3_VENV");
    run_the_script(venv.join("bin/python3"), "blake3");
}

fn run_the_script(python3: std::path::PathBuf, digest: &str) {
    let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
    let udp = d.udp_addr();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/python");
    let mut python = Command::new(python3);
    python
        .env("FERRY_TEST_DIGEST", digest)
        .args(["-B", "-m", "unittest", "-v", "test_ferry_client"])
        .current_dir(&dir)
        .env("FERRY_TEST_HOST", d.addr.ip().to_string())
        .env("FERRY_TEST_PORT", d.addr.port().to_string())
        .env("FERRY_TEST_UDP_PORT", udp.port().to_string())
        .env("FERRY_TEST_KEYS", &d.keys_path)
        .env("FERRY_TEST_ROOT", d.root.path())
        .env_remove("FERRY_KEYS");
    // Bounded: the whole script takes a few seconds.
    let out = run_bounded(python, Duration::from_secs(180), "python3 (the Python client needs Python 3.9 or later)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the Python client's tests failed ({}):\n{stderr}", out.status);
    assert!(stderr.contains("\nOK"), "unittest did not report OK:\n{stderr}");
    assert!(!stderr.contains("skipped"), "no test may be skipped here:\n{stderr}");
}
