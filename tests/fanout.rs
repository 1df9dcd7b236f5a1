//! `ferry -H` end to end: several real ferryd instances on different
//! loopback addresses (127.0.0.2, 127.0.0.3, ...: all local on Linux), one
//! address with nothing listening, one daemon with another key, one whose
//! command hangs. Every wait is bounded.

mod common;

use common::{children_of, eventually, text, wait_child, Daemon, WAIT};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A daemon on 127.0.0.N, sharing `first`'s key when given.
fn on(n: u8, first: Option<&Daemon>, extra: &[&str]) -> Daemon {
    Daemon::start_on(&format!("127.0.0.{n}:0"), first, extra)
}

/// An address where nothing listens: a port bound, then closed.
fn down(n: u8) -> String {
    let l = TcpListener::bind(format!("127.0.0.{n}:0")).unwrap();
    l.local_addr().unwrap().to_string()
}

/// `ferry` with `d`'s keys, with everything captured, bounded by WAIT.
fn ferry(d: &Daemon, args: &[&str]) -> Output {
    let mut c = d.ferry();
    c.args(args).stdin(Stdio::null());
    common::run_with_input(c, b"")
}

fn hosts(ds: &[&Daemon]) -> String {
    ds.iter().map(|d| d.target()).collect::<Vec<_>>().join(",")
}

fn sorted_lines(b: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = text(b).lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn prefixed_lines_summary_and_the_largest_status() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    std::fs::write(a.path("name"), "alpha\n").unwrap();
    std::fs::write(b.path("name"), "beta\n").unwrap();
    let (ha, hb) = (a.target(), b.target());
    let all = hosts(&[&a, &b]);

    let o = ferry(&a, &["run", "-H", &all, "--", "cat name; echo warn >&2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(sorted_lines(&o.stdout), [format!("{ha}: alpha"), format!("{hb}: beta")]);
    let err = text(&o.stderr);
    assert!(err.contains(&format!("{ha}: warn\n")) && err.contains(&format!("{hb}: warn\n")), "{err}");
    assert!(err.contains("ferry: 2 hosts: 2 ok"), "{err}");

    // Each host's status; ferry exits with the largest. -f 1: one at a time.
    std::fs::write(a.path("code"), "3").unwrap();
    std::fs::write(b.path("code"), "5").unwrap();
    let o = ferry(&a, &["run", "-f", "1", "-H", &ha, "-H", &hb, "--", "exit $(cat code)"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("ferry: 2 hosts: 2 failed"), "{err}");
    assert!(err.contains(&format!("ferry: failed: {ha}: exit 3")), "{err}");
    assert!(err.contains(&format!("ferry: failed: {hb}: exit 5")), "{err}");

    // -x leaves a host out; several words run as argv.
    let o = ferry(&a, &["run", "-H", &all, "-x", &hb, "--", "printf", "%s|", "a b"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{ha}: a b|\n"));

    // A host file, with a comment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, format!("# the fleet\n{ha}\n{hb}\n")).unwrap();
    let o = ferry(&a, &["run", "--hostfile", file.to_str().unwrap(), "--", "cat name"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(sorted_lines(&o.stdout).len(), 2);
}

#[test]
fn down_and_wrong_key_hosts_are_255_and_named() {
    let a = on(2, None, &[]);
    let other = on(4, None, &[]); // its own key
    let gone = down(5);
    let spec = format!("{},{},{gone}", a.target(), other.target());
    let o = ferry(&a, &["run", "-H", &spec, "--", "echo ran"]);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("{}: ran\n", a.target()));
    let err = text(&o.stderr);
    assert!(err.contains("ferry: 3 hosts: 1 ok, 1 unreachable, 1 auth-failed"), "{err}");
    assert!(err.contains(&format!("ferry: unreachable: {gone}: cannot connect to {gone}: Connection refused")), "{err}");
    assert!(err.contains(&format!("ferry: auth-failed: {}: the server refused key", other.target())), "{err}");

    // JSON: one object per host, with the error of each.
    let o = ferry(&a, &["run", "--json", "-H", &spec, "--", "echo ran; echo e >&2; exit 2"]);
    assert_eq!(o.status.code(), Some(255));
    let objs: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 3, "{}", text(&o.stdout));
    let by = |h: &str| objs.iter().find(|v| v["host"] == h).unwrap_or_else(|| panic!("no {h}"));
    let v = by(&a.target());
    assert_eq!((v["code"].as_i64(), v["signal"].is_null(), v["error"].is_null()), (Some(2), true, true), "{v}");
    assert_eq!((v["stdout"].as_str(), v["stderr"].as_str()), (Some("ran\n"), Some("e\n")));
    assert!(v["duration"].as_f64().unwrap() >= 0.0);
    let v = by(&gone);
    assert!(v["code"].is_null() && v["error"].as_str().unwrap().contains("Connection refused"), "{v}");
    assert_eq!(v["status"], "unreachable");
    assert_eq!(by(&other.target())["status"], "auth-failed");
}

#[test]
fn bad_host_specs_are_usage_errors() {
    let a = on(2, None, &[]);
    for (spec, why) in [("web[1-", "without ']'"), ("web[3-1]", "backwards"), ("a,,b", "empty host"), ("h:99999", "bad port")] {
        let o = ferry(&a, &["run", "-H", spec, "--", "true"]);
        assert_eq!(o.status.code(), Some(2), "{spec}");
        let err = text(&o.stderr);
        assert!(err.starts_with("ferry: -H: ") && err.contains(why), "{spec}: {err}");
    }
    let o = ferry(&a, &["run", "-H", "a", "-x", "a", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ferry(&a, &["run", "-H", "a", "-b", "--json", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ferry(&a, &["run", "-H", "a"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ferry(&a, &["run", "--json", &a.target(), "--", "true"]);
    assert_eq!(o.status.code(), Some(2), "--json needs -H");
}

/// A port no other socket of this host holds, on any address, and kept so:
/// a socket bound to 0.0.0.0:0 with SO_REUSEADDR, never listening. The
/// kernel hands out no port that is bound on any address, so nothing else
/// can get this one while the socket lives; yet a listener with
/// SO_REUSEADDR (as ferryd's are) may still bind it on one address, since a
/// bound socket that does not listen does not conflict with one.
fn reserved_port() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own from the start, with
    // a zeroed sockaddr_in of the size we pass.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let one: libc::c_int = 1;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        assert_eq!(libc::setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), len), 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        let mut sa_len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut sa as *mut libc::sockaddr_in).cast::<libc::sockaddr>();
        assert_eq!(libc::bind(raw, p, sa_len), 0, "bind: {}", std::io::Error::last_os_error());
        assert_eq!(libc::getsockname(raw, p, &mut sa_len), 0, "getsockname: {}", std::io::Error::last_os_error());
        (fd, u16::from_be(sa.sin_port))
    }
}

#[test]
fn ranges_reach_every_address() {
    // Two daemons on the same port of 127.0.0.2 and 127.0.0.3: one range.
    // The port is reserved on every address first, so no other socket of
    // the host (another test's ferryd on 127.0.0.3:0, say) can take it
    // before both daemons listen on it: no retry, no race.
    let (_reservation, port) = reserved_port();
    let a = Daemon::start_on(&format!("127.0.0.2:{port}"), None, &[]);
    let b = Daemon::start_on(&format!("127.0.0.3:{port}"), Some(&a), &[]);
    assert_eq!((a.addr.port(), b.addr.port()), (port, port));
    let o = ferry(&a, &["run", "-H", &format!("127.0.0.[2-3]:{port}"), "--", "echo hi"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(sorted_lines(&o.stdout), [format!("127.0.0.2:{port}: hi"), format!("127.0.0.3:{port}: hi")]);
    drop(b);
}

#[test]
fn partial_lines_of_several_hosts_never_mix() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let c = on(6, Some(&a), &[]);
    let all = hosts(&[&a, &b, &c]);
    // Each line is written in three pieces, slowly, on every host at once.
    let cmd = "for i in 1 2 3 4; do printf \"l$i-\"; sleep 0.05; printf 'mid-'; sleep 0.05; printf \"end\\n\"; done; printf tail";
    let o = ferry(&a, &["run", "-H", &all, "--", cmd]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for d in [&a, &b, &c] {
        let mine: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix(&format!("{}: ", d.target()))).collect();
        assert_eq!(mine, ["l1-mid-end", "l2-mid-end", "l3-mid-end", "l4-mid-end", "tail"], "{out}");
    }
    assert_eq!(out.lines().count(), 15, "{out}");
}

#[test]
fn gather_prints_each_output_once_under_its_hosts() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let c = on(6, Some(&a), &[]);
    for (d, v) in [(&a, "same\n"), (&b, "same\n"), (&c, "other\n")] {
        std::fs::write(d.path("v"), v).unwrap();
    }
    let all = hosts(&[&a, &b, &c]);
    let o = ferry(&a, &["run", "-b", "-H", &all, "--", "cat v; echo line2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let ab = format!("{},{} (2)", a.target(), b.target());
    let cc = format!("{} (1)", c.target());
    let lines: Vec<&str> = out.lines().collect();
    let i = lines.iter().position(|l| *l == ab).unwrap_or_else(|| panic!("{out}"));
    assert!(lines[i - 1].starts_with("---") && lines[i + 1].starts_with("---"), "{out}");
    assert_eq!(&lines[i + 2..i + 4], ["same", "line2"], "{out}");
    let j = lines.iter().position(|l| *l == cc).unwrap_or_else(|| panic!("{out}"));
    assert_eq!(&lines[j + 2..j + 4], ["other", "line2"], "{out}");
    assert_eq!(out.matches("same").count(), 1, "{out}");
}

#[test]
fn a_hung_host_times_out_alone_and_its_command_is_ended() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    std::fs::write(a.path("hang"), "").unwrap();
    let all = hosts(&[&a, &b]);
    let t = Instant::now();
    let o = ferry(&a, &["-w", "1", "run", "-H", &all, "--", "if [ -f hang ]; then sleep 60; fi; echo done"]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(text(&o.stdout), format!("{}: done\n", b.target()));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("ferry: timed-out: {}: nothing from the server for 1 s", a.target())), "{err}");
    // ferryd ends a command whose client went away.
    eventually("the hung command ends", WAIT, || children_of(a.pid()).is_empty());
}

#[test]
fn ctrl_c_ends_every_remote_command_and_prints_the_summary() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let all = hosts(&[&a, &b]);
    let mut child = a
        .ferry()
        // `exec`: no fork between "started" and the sleep. A shell's child
        // that takes INT between fork and exec (its handler still the
        // shell's) loses it, and the sleep then runs its full minute.
        .args(["run", "-H", &all, "--", "echo started; exec sleep 60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = seen.clone();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            s.lock().unwrap().push(l);
        }
    });
    eventually("both hosts started", WAIT, || seen.lock().unwrap().len() == 2);
    assert_eq!(children_of(a.pid()).len() + children_of(b.pid()).len(), 2, "one command on each");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = wait_child(&mut child, "ferry did not end after Ctrl-C");
    reader.join().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(err.contains("ferry: 2 hosts: 2 failed"), "{err}");
    assert!(err.contains(&format!("ferry: failed: {}: signal 2", a.target())), "{err}");
    eventually("no command left", WAIT, || children_of(a.pid()).is_empty() && children_of(b.pid()).is_empty());
}

#[test]
fn put_and_get_with_every_host() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let gone = down(5);
    let all = hosts(&[&a, &b]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("payload.bin");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &body).unwrap();
    let o = ferry(&a, &["put", "-H", &all, local.to_str().unwrap(), "drop/"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for d in [&a, &b] {
        assert_eq!(std::fs::read(d.path("drop/payload.bin")).unwrap(), body);
    }
    // An existing directory as REMOTE gets the file inside, as with one host.
    let o = ferry(&a, &["put", "-H", &all, local.to_str().unwrap(), "drop"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    std::fs::write(a.path("drop/payload.bin"), b"from a").unwrap();
    let into = dir.path().join("got");
    let spec = format!("{all},{gone}");
    let o = ferry(&a, &["get", "-H", &spec, "drop/payload.bin", into.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(into.join(a.target()).join("payload.bin")).unwrap(), b"from a");
    assert_eq!(std::fs::read(into.join(b.target()).join("payload.bin")).unwrap(), body);
    assert!(!into.join(&gone).exists());

    // A file missing on the servers: status 1 with the server's message.
    let o = ferry(&a, &["get", "-H", &all, "nope", into.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("ferry: failed: "), "{}", text(&o.stderr));
    // ... and leaves no empty HOST:PORT folders behind; the folders a
    // successful get filled stay.
    let fresh = dir.path().join("fresh");
    let o = ferry(&a, &["get", "-H", &all, "nope", fresh.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    for d in [&a, &b] {
        assert!(!fresh.join(d.target()).exists(), "{}", d.target());
        assert!(into.join(d.target()).join("payload.bin").exists());
    }
}

#[test]
fn ping_reaches_every_host() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let o = ferry(&a, &["ping", "-c", "2", "--interval", "0.05", "-H", &hosts(&[&a, &b])]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for d in [&a, &b] {
        assert_eq!(out.matches(&format!("{}: pong seq=", d.target())).count(), 2, "{out}");
    }
}

#[test]
fn datagrams_to_every_host_at_once() {
    let a = on(2, None, &["--udp", "127.0.0.2:0"]);
    let b = on(3, Some(&a), &["--udp", "127.0.0.3:0"]);
    let (ua, ub) = (a.udp_addr().to_string(), b.udp_addr().to_string());
    let no_udp = on(6, Some(&a), &[]); // TCP only: never answers a datagram
    let o = ferry(&a, &["run", "-u", "-H", &format!("{ua},{ub}"), "--", "echo hi; exit 4"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert_eq!(sorted_lines(&o.stdout), [format!("{ua}: hi"), format!("{ub}: hi")]);

    // A closed UDP port answers port unreachable: said at once, per host,
    // as a single `ping -u` says it, not after the whole -w.
    let spec = format!("{ua},{}", no_udp.target());
    let t = Instant::now();
    let o = ferry(&a, &["-w", "3", "ping", "-u", "-H", &spec]);
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(255), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains(&format!("{ua}: pong seq=1")), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    let want = format!("ferry: unreachable: {}: no UDP listener at {}", no_udp.target(), no_udp.target());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("wrong key"), "{err}");
}

#[test]
fn an_encoding_decodes_each_host_stream() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    // "é" in windows-1252, split from its newline by a pause.
    let o = ferry(&a, &["run", "--encoding", "windows-1252", "-H", &hosts(&[&a, &b]), "--", "printf '\\351'; sleep 0.1; echo"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(sorted_lines(&o.stdout), [format!("{}: é", a.target()), format!("{}: é", b.target())]);
}


/// README: a closed pipe ends ferry with 141 quietly, as cat, -H too: no
/// summary, whichever way the hosts were stopped.
#[test]
fn a_closed_stdout_is_141_without_a_summary() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let all = hosts(&[&a, &b]);
    for args in [&["run", "-H", &all, "--", "seq 1 100000"][..], &["ping", "-c", "50", "--interval", "0.01", "-H", &all]] {
        let mut child = a.ferry().args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        // The reader is gone once the BufReader is dropped.
        let st = wait_child(&mut child, "ferry did not end when its stdout closed");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(!first.is_empty());
        assert_eq!(st.code(), Some(141), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}: quietly");
    }
}

/// ferry(1): an interrupt is 130. A second Ctrl-C closes the connections
/// of commands that ignored the first: they count as interrupted.
#[test]
fn a_second_ctrl_c_counts_the_hosts_as_interrupted() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let all = hosts(&[&a, &b]);
    let mut child = a
        .ferry()
        .args(["run", "-H", &all, "--", "trap '' INT; echo started; sleep 5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = wait_child(&mut child, "ferry did not end after two Ctrl-C");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(st.code(), Some(130), "{err}");
    assert!(err.contains("ferry: 2 hosts: 2 interrupted"), "{err}");
    assert!(!err.contains("error"), "{err}");
}

/// Two hosts that write without end (`yes`) into a reader that leaves
/// (`| head -c 100`): ferry ends with 141 and both commands are stopped.
/// It used to stay in one host's read loop for ever (that host sent faster
/// than ferry drained it), deaf to the closed pipe and to TERM; a few runs
/// in a row showed it.
#[test]
fn a_fan_out_of_endless_output_into_a_reader_that_leaves_ends() {
    let a = on(2, None, &[]);
    let b = on(3, Some(&a), &[]);
    let all = hosts(&[&a, &b]);
    // `cmd` on both hosts, its first 100 bytes read, then our reader gone:
    // 141, and no command left on either server.
    let leave_early = |cmd: &str, what: &str| {
        use std::io::Read;
        let mut child = a
            .ferry()
            .args(["run", "-H", &all, "--", cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 100];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let st = wait_child(&mut child, what);
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert_eq!(st.code(), Some(141), "{what}: {err}");
        eventually("no command left", WAIT, || children_of(a.pid()).is_empty() && children_of(b.pid()).is_empty());
    };
    for round in 0..8 {
        leave_early("yes", &format!("round {round}: ferry did not end once its reader left"));
    }
    // A command that the INT does not stop (as one whose shell lost it
    // between its fork and its exec): its connection is closed a second
    // later, and ferryd ends it.
    leave_early("trap '' INT; exec yes", "ferry did not end once its reader left, the INT ignored");
}
