//! The Python library's secure transports (packaging/python/ferry_client.py,
//! ferry-protocol(7) TLS and Sealed datagrams), through its unittest script
//! packaging/python/test_ferry_tls.py, run with the Python of the Ansible
//! venv (tests/ansible.rs makes it; ansible-core brings `cryptography`):
//!
//! - the test vectors of the protocol page (derivation, public keys,
//!   certificates, SNI names, sealed datagrams), the choice of transport and
//!   sealed datagrams against a stand-in UDP server;
//! - TLS end to end through a TLS front built here from `ferry::tls::ServerTls`
//!   (rustls, the server configuration ferryd uses) that relays the decrypted
//!   stream to a plaintext ferryd: exec, stdin, signals, get and put, a wrong
//!   and an unknown key. One front sends a v1 `hello` before anything (as
//!   ferryd does at accept to a peer it takes plaintext from), the other
//!   nothing (as to any other peer);
//! - the connection plugin over TLS: `ansible -m command` with
//!   `ansible_ferry_transport=tls` through the front;
//! - the same script against ferryd's own TLS (on loopback, where it sends
//!   its hello first, and with `--plaintext-from none`, where it sends
//!   nothing) and its sealed datagrams.
mod common;

use common::{frame, python_venv, run_bounded, Daemon};
use ferry::tls::ServerTls;
use rustls::ServerConnection;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The venv of tests/ansible.rs: ansible-core depends on cryptography.
fn venv() -> PathBuf {
    python_venv("ansible", "ansible-core==2.19.14", "FERRY_ANSIBLE_VENV")
}

fn io_err(e: rustls::Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// A TLS front on 127.0.0.1 for the plaintext ferryd at `backend`: ferry's
/// server TLS for the daemon's keys, then the decrypted stream relayed both
/// ways. `hello_first`: send a v1 hello at accept, before reading anything.
fn tls_front(d: &Daemon, hello_first: bool) -> SocketAddr {
    let keys = ferry::keys::load(&d.keys_path).unwrap();
    let tls = ServerTls::new(&keys);
    let backend = d.addr;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { break };
            let tls = tls.clone();
            std::thread::spawn(move || {
                let _ = relay(tcp, &tls, backend, hello_first);
            });
        }
    });
    addr
}

fn relay(mut tcp: TcpStream, tls: &ServerTls, backend: SocketAddr, hello_first: bool) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    if hello_first {
        let hello = json!({"type": "hello", "proto": 1, "server": "ferryd (TLS front)",
                           "nonce": "00".repeat(32), "auth": ["hmac-sha256"]});
        tcp.write_all(&frame(hello, b""))?;
    }
    let mut first = [0u8; 1];
    if tcp.peek(&mut first)? == 0 || first[0] != 0x16 {
        return Ok(());
    }
    let mut conn = tls.accept().map_err(io_err)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    if tls.peer_key_id(&conn).is_err() {
        return Ok(());
    }
    let back = TcpStream::connect(backend)?;
    back.set_nodelay(true)?;
    let conn = Arc::new(Mutex::new(conn));
    // TLS records go out in the order they are made: the sender's lock is
    // taken before the connection's is let go.
    let sender = Arc::new(Mutex::new(tcp.try_clone()?));

    let (c2, s2, mut back_w, mut tcp_r) = (conn.clone(), sender.clone(), back.try_clone()?, tcp);
    let up = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = tcp_r.read(&mut buf)?;
            let (plain, out, end) = {
                let mut c = c2.lock().unwrap();
                let mut plain = Vec::new();
                let mut end = n == 0;
                // rustls takes a bounded amount at a time: feed it all.
                let mut rest = &buf[..n];
                while !rest.is_empty() && !end {
                    c.read_tls(&mut rest)?;
                    c.process_new_packets().map_err(io_err)?;
                    match c.reader().read_to_end(&mut plain) {
                        Ok(_) => end = true, // close_notify
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                (plain, pending(&mut c), end)
            };
            if !out.is_empty() {
                s2.lock().unwrap().write_all(&out)?;
            }
            back_w.write_all(&plain)?;
            if end {
                let _ = back_w.shutdown(Shutdown::Write);
                return Ok(());
            }
        }
    });
    let mut back_r = back;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = back_r.read(&mut buf).unwrap_or(0);
        let mut c = conn.lock().unwrap();
        if n == 0 {
            c.send_close_notify();
        } else {
            c.writer().write_all(&buf[..n])?;
        }
        let out = pending(&mut c);
        let mut s = sender.lock().unwrap();
        drop(c);
        s.write_all(&out)?;
        if n == 0 {
            let _ = s.shutdown(Shutdown::Both);
            break;
        }
    }
    let _ = up.join();
    Ok(())
}

fn pending(c: &mut ServerConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// Runs test_ferry_tls.py with `envs`; fails with its output unless every
/// test passed and none was skipped but those whose line names one of `may_skip`.
fn run_script(envs: &[(&str, String)], may_skip: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/python");
    let mut python = Command::new(venv().join("bin/python3"));
    python
        .args(["-B", "-m", "unittest", "-v", "test_ferry_tls"])
        .current_dir(&dir)
        .env_remove("FERRY_KEYS")
        .env_remove("FERRY_TRANSPORT");
    for (k, v) in envs {
        python.env(k, v);
    }
    let out = run_bounded(python, Duration::from_secs(240), "the venv's python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "the Python TLS tests failed ({}):\n{stderr}", out.status);
    assert!(stderr.contains("\nOK"), "unittest did not report OK:\n{stderr}");
    for line in stderr.lines().filter(|l| l.contains("... skipped")) {
        assert!(may_skip.iter().any(|c| line.contains(c)), "no test may be skipped here: {line}\n{stderr}");
    }
}

#[test]
fn python_tls_vectors_and_tls_through_a_rustls_front() {
    let d = Daemon::start();
    let front = tls_front(&d, true);
    let quiet = tls_front(&d, false);
    run_script(&[
        ("FERRY_TEST_HOST", "127.0.0.1".into()),
        ("FERRY_TEST_TLS_PORT", front.port().to_string()),
        ("FERRY_TEST_TLS_QUIET_PORT", quiet.port().to_string()),
        ("FERRY_TEST_PLAIN_PORT", d.addr.port().to_string()),
        ("FERRY_TEST_KEYS", d.keys_path.display().to_string()),
        ("FERRY_TEST_ROOT", d.root.path().display().to_string()),
    ],
        // Nothing here takes sealed datagrams: that class runs against ferryd.
        &[".SealedUdpTests."],
    );
}

/// ferryd's own TLS, with the library forced to it: on loopback (ferryd
/// sends its hello first, then takes the ClientHello), and from a peer
/// outside `plaintext_from` (`--plaintext-from none`: nothing first).
#[test]
fn python_tls_against_ferryd() {
    let d = Daemon::start();
    let quiet = Daemon::start_on("127.0.0.1:0", Some(&d), &["--plaintext-from", "none"]);
    run_script(
        &[
            ("FERRY_TEST_HOST", "127.0.0.1".into()),
            ("FERRY_TEST_TLS_PORT", d.addr.port().to_string()),
            ("FERRY_TEST_TLS_QUIET_PORT", quiet.addr.port().to_string()),
            ("FERRY_TEST_PLAIN_PORT", d.addr.port().to_string()),
            ("FERRY_TEST_KEYS", d.keys_path.display().to_string()),
            ("FERRY_TEST_ROOT", d.root.path().display().to_string()),
        ],
        &[".SealedUdpTests."],
    );
}

/// ferryd's sealed datagrams, with the library forced to seal on loopback.
#[test]
fn python_sealed_datagrams_against_ferryd() {
    let d = Daemon::start_with(&["--udp", "127.0.0.1:0"]);
    let udp = d.udp_addr();
    run_script(
        &[
            ("FERRY_TEST_HOST", "127.0.0.1".into()),
            ("FERRY_TEST_SEALED_UDP_PORT", udp.port().to_string()),
            ("FERRY_TEST_KEYS", d.keys_path.display().to_string()),
        ],
        &[".TlsTests.", ".TlsAuthTests."],
    );
}

/// The connection plugin over TLS: `ansible_ferry_transport=tls` to a host on
/// 127.0.0.1 (where auto means plaintext) reaches it through the TLS-only
/// front; the same host without the override is unreachable there, and
/// reachable with ANSIBLE_FERRY_TRANSPORT=tls.
#[test]
fn ansible_plugin_over_tls_with_the_transport_override() {
    let venv = venv();
    let d = Daemon::start();
    let front = tls_front(&d, true);
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.ini");
    let host = |name: &str, extra: &str| {
        format!(
            "{name} ansible_host=127.0.0.1 ansible_port={} ansible_ferry_keys={} ansible_connection=ferry \
             ansible_python_interpreter=/usr/bin/python3{extra}\n",
            front.port(),
            d.keys_path.display()
        )
    };
    std::fs::write(&inv, host("overridden", " ansible_ferry_transport=tls") + &host("auto", "")).unwrap();
    let ansible = |env_tls: bool| {
        let mut cmd = Command::new(venv.join("bin/ansible"));
        cmd.arg("all")
            .arg("-i")
            .arg(&inv)
            .args(["-m", "command", "-a", "echo over-tls", "-o"])
            .current_dir(dir.path())
            .env("ANSIBLE_CONNECTION_PLUGINS", src.join("packaging/ansible/connection"))
            .env("ANSIBLE_HOME", dir.path().join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", dir.path().join("local-tmp"))
            .env("ANSIBLE_CONFIG", dir.path().join("none.cfg"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_TIMEOUT", "5")
            .env_remove("FERRY_KEYS")
            .env_remove("FERRY_TRANSPORT");
        if env_tls {
            cmd.env("ANSIBLE_FERRY_TRANSPORT", "tls");
        } else {
            cmd.env_remove("ANSIBLE_FERRY_TRANSPORT");
        }
        let out = run_bounded(cmd, Duration::from_secs(120), "ansible");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{text}");
        text
    };
    let text = ansible(false);
    let line = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").to_string();
    assert!(line("overridden").contains("CHANGED") && line("overridden").contains("over-tls"), "{text}");
    assert!(line("auto").contains("UNREACHABLE"), "auto is plaintext to loopback:\n{text}");
    let text = ansible(true);
    assert_eq!(text.matches("over-tls").count(), 2, "ANSIBLE_FERRY_TRANSPORT=tls reaches both:\n{text}");
}
