//! `exec` end to end against the real daemon.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn output_streams_as_it_is_produced() {
    let d = Daemon::start();
    let mut c = d.authed();
    let t = Instant::now();
    c.send(json!({"type":"exec","cmd":"echo a; sleep 2; echo b"}), b"");
    let mut arrivals = Vec::new();
    loop {
        let (h, body) = c.frame();
        match h["type"].as_str().unwrap() {
            "stdout" => arrivals.push((body, t.elapsed())),
            "exit" => break,
            other => panic!("{other}"),
        }
    }
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert_eq!(arrivals[0].0, b"a\n");
    assert_eq!(arrivals[1].0, b"b\n");
    let gap = arrivals[1].1 - arrivals[0].1;
    assert!(gap >= Duration::from_millis(1500), "the first line waited for the second: {arrivals:?}");
}

#[test]
fn five_mib_of_output_arrives_byte_exact() {
    let d = Daemon::start();
    let data: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    write_file(&d.path("big.bin"), &data);
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["cat","big.bin"],"id":"big"}), b"");
    let mut out = Vec::new();
    loop {
        let (h, body) = c.frame();
        assert_eq!(h["id"], "big", "every reply echoes the id");
        match h["type"].as_str().unwrap() {
            "stdout" => {
                assert!(body.len() <= 64 * 1024);
                out.extend(body);
            }
            "exit" => {
                assert_eq!(h["code"], 0);
                break;
            }
            other => panic!("{other}"),
        }
    }
    assert!(out == data, "output differs (got {} bytes)", out.len());
}

#[test]
fn stdin_reaches_the_command() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["wc","-c"],"stdin":true}), b"");
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        c.send(json!({"type":"stdin"}), &chunk);
    }
    c.send(json!({"type":"stdin","size":0}), b"");
    let (out, _, exit) = c.exec_output();
    assert_eq!(String::from_utf8_lossy(&out).trim(), "1048576");
    assert_eq!(exit["code"], 0);
}

#[test]
fn a_command_that_stops_reading_stdin_does_not_wedge_the_connection() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["head","-c","10"],"stdin":true}), b"");
    let chunk = vec![b'y'; 64 * 1024];
    for _ in 0..32 {
        c.send(json!({"type":"stdin"}), &chunk);
    }
    c.send(json!({"type":"stdin","size":0}), b"");
    let (out, _, exit) = c.exec_output();
    assert_eq!(out, b"yyyyyyyyyy");
    assert_eq!(exit["code"], 0);
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0["type"], "pong");
}

#[test]
fn a_signal_reaches_the_command() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["sleep","30"]}), b"");
    // The child exists once the daemon has a child process.
    eventually("sleep started", WAIT, || !children_of(d.pid()).is_empty());
    let t = Instant::now();
    c.send(json!({"type":"signal","signal":"TERM"}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit, json!({"type":"exit","code":null,"signal":15}));
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_timeout_terms_then_kills() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 30","timeout":0.5}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit["signal"], 15, "{exit}");
    assert_eq!(exit["timed_out"], true);
    // A command that ignores TERM gets KILL two seconds later.
    let t = Instant::now();
    c.send(json!({"type":"exec","cmd":"trap '' TERM; sleep 30","timeout":0.5}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit["signal"], 9, "{exit}");
    assert!(t.elapsed() >= Duration::from_millis(2400), "KILL came before the grace: {:?}", t.elapsed());
}

#[test]
fn exit_codes_stdout_and_stderr_are_kept_apart() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"echo out; echo err >&2; exit 7"}), b"");
    let (out, err, exit) = c.exec_output();
    assert_eq!((out.as_slice(), err.as_slice()), (b"out\n".as_slice(), b"err\n".as_slice()));
    assert_eq!(exit, json!({"type":"exit","code":7,"signal":null}));
}

#[test]
fn argv_runs_without_a_shell() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["echo","$HOME; rm -rf x"]}), b"");
    let (out, _, _) = c.exec_output();
    assert_eq!(out, b"$HOME; rm -rf x\n");
}

#[test]
fn a_program_that_cannot_start_is_spawn_failed_and_not_fatal() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","argv":["/nonexistent/program"],"id":3}), b"");
    let (e, _) = c.frame();
    assert_eq!((e["code"].as_str(), e["id"].as_i64()), (Some("spawn-failed"), Some(3)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("/nonexistent/program"));
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0["type"], "pong");
}

#[test]
fn no_exec_refuses_exec() {
    let d = Daemon::start_with(&["--no-exec"]);
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"touch made"}), b"");
    assert_eq!(c.frame().0["code"], "exec-disabled");
    c.send(json!({"type":"ping"}), b"");
    assert_eq!(c.frame().0["type"], "pong");
    assert!(!d.path("made").exists());
}

#[test]
fn cwd_and_env() {
    let d = Daemon::start();
    std::fs::create_dir(d.path("sub")).unwrap();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"pwd; echo $FOO","cwd":"sub","env":{"FOO":"bar"}}), b"");
    let (out, _, _) = c.exec_output();
    let root = d.root.path().canonicalize().unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), format!("{}/sub\nbar\n", root.display()));
    for (cwd, code) in [("..", "bad-path"), ("/tmp", "bad-path"), ("missing", "not-found")] {
        c.send(json!({"type":"exec","cmd":"pwd","cwd":cwd}), b"");
        assert_eq!(c.frame().0["code"], code, "{cwd}");
    }
    std::os::unix::fs::symlink("/", d.path("escape")).unwrap();
    c.send(json!({"type":"exec","cmd":"pwd","cwd":"escape"}), b"");
    assert_eq!(c.frame().0["code"], "bad-path");
}

#[test]
fn requests_sent_during_an_exec_wait_their_turn() {
    let d = Daemon::start();
    let mut c = d.authed();
    let mut bytes = frame(json!({"type":"exec","cmd":"sleep 0.5; echo done","id":1}), b"");
    bytes.extend(frame(json!({"type":"ping","id":2}), b""));
    bytes.extend(frame(json!({"type":"exec","argv":["echo","second"],"id":3}), b""));
    c.send_bytes(&bytes);
    let (out, _, exit) = c.exec_output();
    assert_eq!((out.as_slice(), exit["id"].as_i64()), (b"done\n".as_slice(), Some(1)));
    assert_eq!(c.frame().0, json!({"type":"pong","id":2}));
    let (out, _, exit) = c.exec_output();
    assert_eq!((out.as_slice(), exit["id"].as_i64()), (b"second\n".as_slice(), Some(3)));
}

#[test]
fn two_hundred_concurrent_clients() {
    let d = Daemon::start();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (addr, key) = (d.addr, d.key.clone());
            std::thread::spawn(move || {
                let mut c = Raw::connect(addr);
                c.server_nonce = c.frame().0["nonce"].as_str().unwrap().to_string();
                c.auth(&key);
                c.send(json!({"type":"exec","argv":["echo",format!("client {i}")]}), b"");
                let (out, _, exit) = c.exec_output();
                assert_eq!(exit["code"], 0);
                String::from_utf8(out).unwrap()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), format!("client {i}\n"));
    }
    eventually("every child reaped", WAIT, || children_of(d.pid()).is_empty());
}

#[test]
fn execs_beyond_max_children_wait_for_a_slot() {
    let d = Daemon::start_with(&["--max-children", "1"]);
    let mut a = d.authed();
    let mut b = d.authed();
    let t = Instant::now();
    a.send(json!({"type":"exec","cmd":"sleep 1"}), b"");
    eventually("first child running", WAIT, || children_of(d.pid()).len() == 1);
    b.send(json!({"type":"exec","argv":["echo","b"]}), b"");
    let (out, _, _) = b.exec_output();
    assert_eq!(out, b"b\n");
    assert!(t.elapsed() >= Duration::from_millis(900), "b ran before a's slot was free: {:?}", t.elapsed());
    a.exec_output();
}

#[test]
fn a_client_that_never_reads_costs_bounded_memory_and_slows_no_one() {
    let d = Daemon::start();
    let mut idle = d.authed();
    idle.send(json!({"type":"ping"}), b"");
    idle.frame();
    let before = d.rss_kib();
    let mut hog = d.authed();
    hog.send(json!({"type":"exec","argv":["cat","/dev/zero"]}), b"");
    // Over two seconds the producer is far faster than any buffer: watch RSS
    // while another client is served.
    let mut peak = 0;
    let t = Instant::now();
    let mut served = 0;
    while t.elapsed() < Duration::from_secs(2) {
        peak = peak.max(d.rss_kib());
        let s = Instant::now();
        idle.send(json!({"type":"exec","argv":["echo","hi"]}), b"");
        let (out, _, _) = idle.exec_output();
        assert_eq!(out, b"hi\n");
        assert!(s.elapsed() < Duration::from_secs(5), "other clients stalled: {:?}", s.elapsed());
        served += 1;
    }
    assert!(served > 0);
    let growth = peak.saturating_sub(before);
    assert!(growth < 8 * 1024, "daemon RSS grew by {growth} KiB against a non-reading client");
    // Hanging up ends the command: nothing is left running.
    drop(hog);
    eventually("cat killed and reaped", WAIT, || children_of(d.pid()).is_empty());
}

#[test]
fn a_client_that_disconnects_mid_exec_leaves_no_process() {
    let d = Daemon::start();
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 30 & sleep 30; wait"}), b"");
    eventually("children started", WAIT, || !children_of(d.pid()).is_empty());
    let sh = children_of(d.pid())[0];
    eventually("grandchildren started", WAIT, || children_of(sh).len() == 2);
    let grandchildren = children_of(sh);
    drop(c);
    eventually("children gone", WAIT, || children_of(d.pid()).is_empty());
    for g in grandchildren {
        eventually("grandchild gone", WAIT, || !std::path::Path::new(&format!("/proc/{g}")).exists());
    }
}
