//! The Python client library (packaging/python/ferry_client.py) against the
//! real ferryd: runs its unittest script, packaging/python/test_ferry_client.py,
//! with `python3` (standard library only, nothing to install), and fails with
//! the script's output when any of its tests fails.
mod common;

use common::Daemon;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn python_client_library_against_the_real_ferryd() {
    let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
    let udp = d.udp_addr();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/python");
    let child = Command::new("python3")
        .args(["-B", "-m", "unittest", "-v", "test_ferry_client"])
        .current_dir(&dir)
        .env("FERRY_TEST_HOST", d.addr.ip().to_string())
        .env("FERRY_TEST_PORT", d.addr.port().to_string())
        .env("FERRY_TEST_UDP_PORT", udp.port().to_string())
        .env("FERRY_TEST_KEYS", &d.keys_path)
        .env("FERRY_TEST_ROOT", d.root.path())
        .env_remove("FERRY_KEYS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the Python client needs Python 3.9 or later)");
    // Bounded: the whole script takes a few seconds.
    let pid = child.id() as i32;
    let t = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while t.elapsed() < Duration::from_secs(180) {
            std::thread::sleep(Duration::from_millis(100));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the Python client's tests failed ({}):\n{stderr}", out.status);
    assert!(stderr.contains("\nOK"), "unittest did not report OK:\n{stderr}");
    assert!(!stderr.contains("skipped"), "no test may be skipped here:\n{stderr}");
}
