//! A peer that is not loopback: a network namespace joined to the host by a
//! veth pair made here (10.231.N.1/30 on the host side, 10.231.N.2/30 inside),
//! ferryd bound on the host side's address and `ferry` run inside the
//! namespace with `ip netns exec`.
//!
//! The default client speaks TLS off loopback; a `--plaintext` client from
//! there gets `tls-required` until `plaintext_from` names it; datagrams are
//! sealed by default and a tagged v1 one from that peer gets silence.
//!
//! Needs root and iproute2: without them each test prints why and returns
//! (SKIPPED, not checked). Names carry the test's pid and a counter; the
//! namespace (and with it the veth pair) goes in Drop, on panic too.

mod common;

use common::*;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace and a veth pair; removed on drop.
struct Netns {
    name: String,
    host_if: String,
    /// The host side's address, where ferryd listens.
    host: String,
    /// The namespace side's address, the peer.
    peer: String,
    subnet: String,
}

fn ip(args: &[&str]) -> Output {
    let o = Command::new("ip").args(args).output().expect("ip runs");
    o
}

fn ip_ok(args: &[&str]) {
    let o = ip(args);
    assert!(o.status.success(), "ip {}: {}", args.join(" "), text(&o.stderr));
}

impl Netns {
    /// None (with the reason printed) when this machine cannot make one.
    fn make() -> Option<Netns> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: not root, cannot make a network namespace");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIPPED: no `ip` (iproute2)");
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // A /30 no interface here already uses: third octet from the pid.
        let used = text(&ip(&["-o", "addr"]).stdout);
        let octet = (0..250u32)
            .map(|i| (pid + n * 37 + i) % 250 + 1)
            .find(|o| !used.contains(&format!("10.231.{o}.")))
            .expect("a free 10.231.N.0/30");
        let tag = format!("{}{}", pid % 100_000, n);
        let ns = Netns {
            name: format!("ferry-t{tag}"),
            host_if: format!("fh{tag}"),
            host: format!("10.231.{octet}.1"),
            peer: format!("10.231.{octet}.2"),
            subnet: format!("10.231.{octet}.0/30"),
        };
        let o = ip(&["netns", "add", &ns.name]);
        if !o.status.success() {
            eprintln!("SKIPPED: ip netns add failed: {}", text(&o.stderr));
            return None;
        }
        // From here on, Drop cleans up whatever was made.
        let peer_if = format!("fn{tag}");
        ip_ok(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &peer_if]);
        ip_ok(&["link", "set", &peer_if, "netns", &ns.name]);
        ip_ok(&["addr", "add", &format!("{}/30", ns.host), "dev", &ns.host_if]);
        ip_ok(&["link", "set", &ns.host_if, "up"]);
        ip_ok(&["netns", "exec", &ns.name, "ip", "addr", "add", &format!("{}/30", ns.peer), "dev", &peer_if]);
        ip_ok(&["netns", "exec", &ns.name, "ip", "link", "set", &peer_if, "up"]);
        ip_ok(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ferry` with `d`'s keys, run inside the namespace.
    fn ferry(&self, d: &Daemon, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, ferry_bin(), "-k"]).arg(&d.keys_path);
        if !args.contains(&"-w") {
            c.args(["-w", "10"]);
        }
        c
            .args(args)
            .env_remove("FERRY_TRANSPORT")
            .env_remove("FERRY_KEYS")
            .env_remove("FERRY_ENCODING");
        run_bounded(c, Duration::from_secs(30), "ferry in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the host side removes its peer too; the namespace last.
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// ferryd on the host side's address (TCP and UDP), with `extra` flags.
fn daemon_on(ns: &Netns, extra: &[&str]) -> Daemon {
    let udp = format!("{}:0", ns.host);
    let mut args = vec!["--udp", udp.as_str()];
    args.extend_from_slice(extra);
    Daemon::start_on(&format!("{}:0", ns.host), None, &args)
}

#[test]
fn off_loopback_the_client_uses_tls_and_clear_needs_plaintext_from() {
    let Some(ns) = Netns::make() else { return };
    let d = daemon_on(&ns, &[]);
    let target = d.target();
    assert!(target.starts_with(&ns.host), "{target}");

    // The default client: TLS, said by -v.
    let o = ns.ferry(&d, &["-v", "run", &target, "--", "echo", "from-the-peer"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(text(&o.stdout), "from-the-peer\n");
    assert!(err.contains("TLS 1.3"), "{err}");
    let peer_line = d.log.wait_for("over TLS", WAIT).unwrap_or_else(|| panic!("{}", d.log.text()));
    assert!(d.log.text().contains(&ns.peer), "the daemon saw the namespace's address: {peer_line}");

    // In clear from that peer: tls-required, one line, 255; nothing ran.
    let o = ns.ferry(&d, &["--plaintext", "run", &target, "--", "touch", "ran-in-clear"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(255), "{err}");
    assert!(err.contains("tls-required"), "{err}");
    assert!(!d.path("ran-in-clear").exists());

    // Sealed datagrams by default; a tagged v1 datagram gets silence.
    let udp = d.udp_addr().to_string();
    let o = ns.ferry(&d, &["-v", "ping", "-u", &udp]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("sealed"), "{err}");
    let o = ns.ferry(&d, &["-w", "1", "--plaintext", "run", "-u", &udp, "--", "touch", "tagged-ran"]);
    assert_eq!(o.status.code(), Some(255), "a tagged datagram from outside plaintext_from: {}", text(&o.stderr));
    assert!(!d.path("tagged-ran").exists(), "a tagged datagram from outside plaintext_from ran");
    assert!(d.log.wait_for("tagged datagram from outside plaintext_from", WAIT).is_some(), "{}", d.log.text());
}

#[test]
fn plaintext_from_naming_the_peer_lets_it_speak_in_clear() {
    let Some(ns) = Netns::make() else { return };
    let d = daemon_on(&ns, &["--plaintext-from", &ns.subnet]);
    let target = d.target();
    let o = ns.ferry(&d, &["-v", "--plaintext", "run", &target, "--", "echo", "clear"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(text(&o.stdout), "clear\n");
    assert!(err.contains("plaintext v1"), "{err}");
    // TLS still works from there, and is still the default.
    let o = ns.ferry(&d, &["-v", "run", &target, "--", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("TLS 1.3"), "{}", text(&o.stderr));
    // Tagged v1 datagrams from the named peer are answered.
    let udp = d.udp_addr().to_string();
    let o = ns.ferry(&d, &["-v", "--plaintext", "ping", "-u", &udp]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("tagged v1"), "{}", text(&o.stderr));
}

#[test]
fn the_plaintext_from_config_key_names_the_peer_too() {
    let Some(ns) = Netns::make() else { return };
    let toml = format!("plaintext_from = [{:?}]\n", ns.subnet);
    let (d, _) = Daemon::start_config(&toml, &["--foreground", "--listen", &format!("{}:0", ns.host)], |_| {});
    let o = ns.ferry(&d, &["--plaintext", "run", &d.target(), "--", "echo", "clear"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stderr), d.log.text());
    assert_eq!(text(&o.stdout), "clear\n");
}
