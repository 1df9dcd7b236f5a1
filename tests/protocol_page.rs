//! The protocol page's Python client is run against the real daemon, so the
//! page cannot drift from what ferryd speaks.

mod common;

use common::*;
use std::process::Command;

#[test]
fn the_python_client_of_the_protocol_page_works() {
    let page = std::fs::read_to_string(format!("{}/man/ferry-protocol.7", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let start = page.find(".\\\" python-client-begin\n").expect("begin marker") + ".\\\" python-client-begin\n".len();
    let end = page.find(".\\\" python-client-end").expect("end marker");
    // The page is roff: `\e` is how it spells a backslash.
    let client = page[start..end].replace("\\e", "\\");
    let d = Daemon::start();
    let client = client.replace("7075", &d.addr.port().to_string());
    assert!(client.contains(&d.addr.port().to_string()), "the client names the default port");
    let out = Command::new("python3").arg("-c").arg(&client).env("FERRY_KEYS", &d.keys_path).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the client failed:\n{stdout}\n{stderr}");
    let uname = Command::new("uname").arg("-a").output().unwrap().stdout;
    assert!(stdout.starts_with(String::from_utf8_lossy(&uname).as_ref()), "{stdout}");
    assert!(stdout.ends_with("exit code: 3 signal: None\n"), "{stdout}");
    assert_eq!(stderr, "oops\n");
}
