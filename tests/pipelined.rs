//! A first request pipelined after `auth` over TLS (ferry-protocol(7)):
//! `ferry --tls run` sends its `exec` with `auth`, before the server's
//! `welcome`, and the server runs it only after a successful auth; in
//! clear the client still waits for `welcome`. A request pipelined after a
//! wrong MAC never runs: no file from a `put`, none from an exec'd `touch`.

mod common;

use common::{frame, Daemon, WAIT};
use ferry::client::stream::Link;
use ferry::proto::auth;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A TLS connection to `d` (handshake done), its `hello` read: the link
/// and the server's nonce.
fn tls_hello(d: &Daemon) -> (Link, String) {
    let sock = TcpStream::connect(d.addr).unwrap();
    sock.set_nodelay(true).unwrap();
    let mut link = Link::tls(sock, &d.key, WAIT).expect("the TLS handshake");
    link.set_read_timeout(Some(WAIT)).unwrap();
    link.set_write_timeout(Some(WAIT)).unwrap();
    let (hello, _) = read_frame(&mut link).expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    let nonce = hello["nonce"].as_str().unwrap().to_string();
    (link, nonce)
}

/// One frame: the header as JSON and the body (tests/common's reader).
fn read_frame(r: &mut dyn Read) -> std::io::Result<(Value, Vec<u8>)> {
    common::read_frame_from(r)
}

/// `auth` (with `mac`, or the right one), then a `put` of `put.txt` and an
/// exec of `touch touched`, all in one write.
fn auth_put_touch(d: &Daemon, link: &mut Link, server_nonce: &str, mac: Option<&str>) -> String {
    let cn = auth::to_hex(&auth::fresh_nonce());
    let right = auth::client_mac(d.key.secret.as_bytes(), server_nonce, &cn);
    let mut bytes = frame(json!({"type":"auth","key_id":d.key.id,"nonce":cn,"mac":mac.unwrap_or(&right)}), b"");
    bytes.extend(frame(json!({"type":"put","path":"put.txt","id":1}), b"pipelined"));
    bytes.extend(frame(json!({"type":"exec","argv":["touch", d.path("touched")],"id":2}), b""));
    link.write_all(&bytes).unwrap();
    cn
}

/// How the access log names the pipelined exec.
const TOUCH_ACCESS: &str = r#" exec argv=["touch","#;

#[test]
fn requests_pipelined_after_auth_run_once_the_auth_succeeded() {
    let d = Daemon::start();
    let (mut link, nonce) = tls_hello(&d);
    let cn = auth_put_touch(&d, &mut link, &nonce, None);
    let (w, _) = read_frame(&mut link).unwrap();
    assert_eq!(w["type"], "welcome", "{w}");
    assert!(auth::verify_server_mac(d.key.secret.as_bytes(), &cn, &nonce, w["mac"].as_str().unwrap()));
    let (ok, _) = read_frame(&mut link).unwrap();
    assert_eq!((ok["type"].as_str(), ok["id"].as_u64()), (Some("ok"), Some(1)), "{ok}");
    let exit = loop {
        let (h, _) = read_frame(&mut link).unwrap();
        if h["type"] == "exit" {
            break h;
        }
    };
    assert_eq!(exit["code"], 0, "{exit}");
    assert_eq!(std::fs::read(d.path("put.txt")).unwrap(), b"pipelined");
    assert!(d.path("touched").exists());
    assert!(d.log.wait_for(TOUCH_ACCESS, WAIT).is_some(), "{}", d.log.text());
}

#[test]
fn nothing_pipelined_after_a_wrong_mac_runs() {
    let d = Daemon::start();
    let (mut link, nonce) = tls_hello(&d);
    auth_put_touch(&d, &mut link, &nonce, Some(&"0".repeat(64)));
    let (e, _) = read_frame(&mut link).unwrap();
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("auth-failed")), "{e}");
    // The server closes after its error; nothing else comes.
    let mut rest = Vec::new();
    let _ = link.read_to_end(&mut rest);
    assert!(rest.is_empty(), "more after the auth error: {}", text(&rest));
    assert!(d.log.wait_for("auth failed", WAIT).is_some(), "{}", d.log.text());
    // A later request on a good connection is served after the refused
    // one was fully handled (one thread serves both): by then any run of
    // the pipelined requests would have left its file.
    let mut r = d.authed();
    r.send(json!({"type":"exec","argv":["true"]}), b"");
    let (_, _, exit) = r.exec_output();
    assert_eq!(exit["code"], 0);
    assert!(!d.path("put.txt").exists(), "a pipelined put ran after a failed auth");
    assert!(!d.path("touched").exists(), "a pipelined exec ran after a failed auth");
    assert_eq!(common::temp_files(d.root.path()), Vec::<String>::new(), "no temporary file either");
    assert!(!d.log.text().contains(TOUCH_ACCESS), "{}", d.log.text());
}

/// `-v` traces frames as they go: over TLS the exec leaves before the
/// welcome comes; in clear after it.
#[test]
fn ferry_run_pipelines_its_exec_over_tls_only() {
    let d = Daemon::start();
    let order = |args: &[&str]| {
        let o = d.ferry().env_remove("FERRY_TRANSPORT").args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
        let err = text(&o.stderr);
        let exec = err.find(r#""type":"exec""#).unwrap_or_else(|| panic!("{err}"));
        let welcome = err.find(r#""type":"welcome""#).unwrap_or_else(|| panic!("{err}"));
        exec < welcome
    };
    assert!(order(&["-v", "--tls", "run", "-n", &d.target(), "--", "sh", "-c", "exit 7"]), "pipelined over TLS");
    assert!(!order(&["-v", "--plaintext", "run", "-n", &d.target(), "--", "sh", "-c", "exit 7"]), "not in clear");
}

/// `run -tt` pipelines its exec (with its terminal) the same way, and its
/// terminal, stdin and status work as without it.
#[test]
fn run_with_a_terminal_pipelines_its_exec_over_tls() {
    let d = Daemon::start();
    let mut c = d.ferry();
    c.env_remove("FERRY_TRANSPORT").args(["-v", "--tls", "run", "-tt"]).arg(d.target());
    c.args(["--", "sh", "-c", "tty; read l; echo got=$l; exit 6"]);
    let out = common::run_with_input(c, b"piped\n");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(6), "{text} {err}");
    assert!(text.contains("/dev/pts/") && text.contains("got=piped"), "{text}");
    let exec = err.find(r#""type":"exec""#).unwrap_or_else(|| panic!("{err}"));
    let welcome = err.find(r#""type":"welcome""#).unwrap_or_else(|| panic!("{err}"));
    assert!(exec < welcome, "{err}");
}
