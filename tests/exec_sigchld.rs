//! Children reaped on SIGCHLD, the path for kernels without pidfds, forced
//! with `FERRYD_TEST_NO_PIDFD`; and the pidfd path where a child outlives its
//! connection. Statuses, signals, timeouts, the child limit and no leftover
//! process, end to end.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn without_pidfds(extra: &[&str]) -> Daemon {
    let d = Daemon::start_custom(extra, |c| {
        c.env("FERRYD_TEST_NO_PIDFD", "1");
    });
    assert!(d.log.wait_for("no pidfds: children are reaped on SIGCHLD", WAIT).is_some(), "{}", d.log.text());
    d
}

#[test]
fn exit_statuses_and_signals_come_back_without_pidfds() {
    let d = without_pidfds(&[]);
    let mut c = d.authed();
    for i in 0..20 {
        c.send(json!({"type":"exec","argv":["sh","-c",format!("echo {i}; exit {}", i % 7)]}), b"");
        let (out, _, exit) = c.exec_output();
        assert_eq!((out, exit["code"].as_i64()), (format!("{i}\n").into_bytes(), Some(i % 7)));
    }
    c.send(json!({"type":"exec","argv":["sleep","30"]}), b"");
    eventually("sleep started", WAIT, || !children_of(d.pid()).is_empty());
    c.send(json!({"type":"signal","signal":"INT"}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!(exit, json!({"type":"exit","code":null,"signal":2}));
    c.send(json!({"type":"exec","cmd":"sleep 30","timeout":0.3}), b"");
    let (_, _, exit) = c.exec_output();
    assert_eq!((exit["signal"].as_i64(), exit["timed_out"].as_bool()), (Some(15), Some(true)));
    assert!(children_of(d.pid()).is_empty(), "every child was reaped");
}

/// A client goes mid-command: its child is TERMed, reaped, and its slot
/// serves the next exec at once (one slot only).
fn an_orphan_is_reaped_and_frees_its_slot(d: &Daemon) {
    let mut c = d.authed();
    c.send(json!({"type":"exec","cmd":"sleep 30"}), b"");
    eventually("sleep started", WAIT, || children_of(d.pid()).len() == 1);
    drop(c);
    eventually("the orphan reaped", WAIT, || children_of(d.pid()).is_empty());
    let t = Instant::now();
    let mut b = d.authed();
    b.send(json!({"type":"exec","argv":["echo","next"]}), b"");
    let (out, _, exit) = b.exec_output();
    assert_eq!((out, exit["code"].as_i64()), (b"next\n".to_vec(), Some(0)));
    assert!(t.elapsed() < Duration::from_secs(5), "the slot waited for the kill grace: {:?}", t.elapsed());
}

#[test]
fn an_orphan_is_reaped_and_frees_its_slot_without_pidfds() {
    an_orphan_is_reaped_and_frees_its_slot(&without_pidfds(&["--max-children", "1"]));
}

#[test]
fn an_orphan_is_reaped_and_frees_its_slot_with_pidfds() {
    let d = Daemon::start_with(&["--max-children", "1"]);
    assert_eq!(d.log.count("no pidfds"), 0, "this kernel gives pidfds: {}", d.log.text());
    an_orphan_is_reaped_and_frees_its_slot(&d);
}

#[test]
fn a_waiting_exec_gets_the_slot_when_the_first_exits_without_pidfds() {
    let d = without_pidfds(&["--max-children", "1"]);
    let mut a = d.authed();
    let mut b = d.authed();
    a.send(json!({"type":"exec","cmd":"sleep 0.5"}), b"");
    eventually("first child running", WAIT, || children_of(d.pid()).len() == 1);
    b.send(json!({"type":"exec","argv":["echo","b"]}), b"");
    assert_eq!(b.exec_output().0, b"b\n");
    assert_eq!(a.exec_output().2["code"], 0);
}
