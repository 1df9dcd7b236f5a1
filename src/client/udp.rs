//! Datagram mode: `ferry ping -u` and `ferry run -u`, one authenticated
//! request datagram and one reply datagram (`proto::datagram`), no
//! connection and no handshake.
//!
//! A request gets a fresh nonce and the current time; if no reply comes, the
//! *same* bytes (same nonce) are sent again after 200 ms, then 400, 800...
//! until `-w` (5 s by default) runs out. The server runs a request at most
//! once per nonce and answers a retransmission with the reply it cached, so
//! retrying is safe. A reply counts only if its tag is the key's and it
//! echoes our nonce: anything else (a forged or damaged reply, an answer to
//! another request) is dropped as if it had been lost.
//!
//! Off loopback (or with `--tls`) the request is sealed (`proto::sealed`:
//! AES-256-GCM under a key derived from the shared key, only the key id in
//! clear) and only a sealed reply bound to it is accepted; to loopback (or
//! with `--plaintext`) it is tagged v1, as TCP is TLS or clear.
//!
//! Exit statuses as for `ferry run` over TCP: the remote status (128 +
//! signal), 127 for `spawn-failed`, 255 for no reply, any other error reply
//! (`not-allowed`, `busy`, `clock-skew`, `replayed`...) or a local failure.

use super::exit::{self, fail};
use super::encoding::Output;
use super::{command_of, resolve_addrs, ExitStatus, Options, Target};
use crate::proto::auth::Key;
use crate::proto::datagram::{self, ExecResult};
use crate::proto::frame::{encode_frame, parse_header, peek_header};
use crate::proto::sealed::{self, DatagramKeys};
use crate::proto::msg::{Exec, Reply};
use crate::proto::{ErrorCode, ProtoError};
use encoding_rs::Encoding;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use crate::sys::unix_now;
use std::time::{Duration, Instant};

/// How long to wait for a reply without `-w`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retransmission interval; it doubles after each.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Why an exchange got no usable reply.
#[derive(Debug)]
pub enum UdpError {
    /// The host name did not resolve (to an address of the family asked for).
    Resolve(String),
    /// The socket failed.
    Io(io::Error),
    /// The host answered ICMP port unreachable: nothing listens there.
    Unreachable(SocketAddr),
    /// Nothing acceptable came back before the deadline.
    NoReply {
        peer: SocketAddr,
        waited: Duration,
        sent: u32,
        /// The host answered "port unreachable" (ICMP) at least once.
        refused: bool,
        /// The request was an exec, which may simply still be running.
        exec: bool,
        /// The request was sealed (an older ferryd drops those unanswered).
        sealed: bool,
    },
    /// The key cannot seal datagrams (an id over 255 bytes).
    Seal(String),
}

impl std::fmt::Display for UdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdpError::Resolve(s) => write!(f, "{s}"),
            UdpError::Io(e) => write!(f, "{}", super::io_text(e)),
            UdpError::Seal(e) => write!(f, "{e}"),
            UdpError::Unreachable(peer) => write!(
                f,
                "no UDP listener at {peer} (the host answered port unreachable): is ferryd started with --udp, on that port?"
            ),
            UdpError::NoReply { peer, waited, sent, refused, exec, sealed } => {
                let datagrams = if *sent == 1 { "datagram" } else { "datagrams" };
                write!(f, "no reply from {peer}/udp in {:.1} s ({sent} {datagrams} sent", waited.as_secs_f64())?;
                if *refused {
                    write!(f, "; port unreachable")?;
                }
                write!(
                    f,
                    "): likely a wrong key (ferryd answers nothing to a key it does not hold: -k, -i), \
                     UDP not enabled on the server (ferryd --udp), or clock skew"
                )?;
                if *sealed {
                    // --plaintext helps only an old server that takes tagged ones from us.
                    write!(
                        f,
                        "; or a ferryd too old to open sealed datagrams (--plaintext sends them tagged, \
                         which it answers only from addresses in its plaintext_from)"
                    )?;
                } else {
                    write!(
                        f,
                        "; or your address is outside the server's plaintext_from, the only \
                         addresses it takes tagged datagrams from (--tls seals them)"
                    )?;
                }
                if *exec {
                    write!(f, "; or the command still runs (a longer -w waits for it)")?;
                }
                Ok(())
            }
        }
    }
}

/// An answered request.
#[derive(Debug)]
pub struct Exchange {
    pub reply: datagram::Reply,
    pub peer: SocketAddr,
    /// From the first send to the reply.
    pub elapsed: Duration,
    /// Datagrams sent (1 when the first was answered).
    pub sent: u32,
    /// Our clock when the request was made, Unix seconds (its `ts`).
    pub ts: i64,
}

fn trace(dir: &str, header: &Map<String, Value>, note: &str) {
    crate::errln!("ferry: {dir} {}{note}", Value::Object(header.clone()));
}

/// When to send each datagram, from the first: 0, 200 ms, 600 ms, 1.4 s,
/// 3 s... (each gap twice the one before), as long as it is before `timeout`.
pub fn send_times(timeout: Duration) -> impl Iterator<Item = Duration> {
    let mut next = Some((Duration::ZERO, FIRST_RETRY));
    std::iter::from_fn(move || {
        let (at, gap) = next?;
        if at >= timeout && at > Duration::ZERO {
            return None;
        }
        next = at.checked_add(gap).zip(gap.checked_mul(2));
        Some(at)
    })
}

/// One request datagram and its retransmission schedule, without a
/// socket: `exchange` drives one for a single host, fan-out one per host
/// over a shared socket.
#[derive(Debug)]
pub struct Request {
    pub peer: SocketAddr,
    /// The request's nonce, which its reply echoes.
    pub nonce: String,
    /// The sealed datagram, sent unchanged each time.
    pub bytes: Vec<u8>,
    /// When to send (again), earliest first.
    schedule: VecDeque<Instant>,
    pub first: Instant,
    pub deadline: Instant,
    pub sent: u32,
    /// The host answered "port unreachable" (ICMP) at least once.
    pub refused: bool,
    /// The last send did not fit the socket buffer: try again soon.
    pub blocked: bool,
    /// Our clock when the request was made, Unix seconds (its `ts`).
    pub ts: i64,
    exec: bool,
    /// Sealed: the request's AEAD nonce, which its reply is bound to.
    pub sealed: Option<[u8; sealed::NONCE_LEN]>,
}

/// What became of one send.
pub enum Sent {
    Ok,
    /// The socket buffer is full; `Request::due` stays true.
    Blocked,
}

impl Request {
    /// Tags `header` (from `exec_header` or `ping_header`) for `peer`, or
    /// with `seal` seals it; the first send due at `now`, the last reply
    /// accepted until `timeout` after it.
    pub fn new(
        key: &Key,
        header: Map<String, Value>,
        peer: SocketAddr,
        timeout: Option<Duration>,
        now: Instant,
        seal: Option<&DatagramKeys>,
    ) -> Result<Request, UdpError> {
        let nonce = header.get("nonce").and_then(Value::as_str).unwrap_or_default().to_string();
        let ts = header.get("ts").and_then(Value::as_i64).unwrap_or_else(unix_now);
        let exec = header.get("type").and_then(Value::as_str) == Some("exec");
        let (bytes, sealed) = match seal {
            None => (datagram::encode_request(&key.id, key.secret.as_bytes(), header, &[]), None),
            Some(keys) => {
                // key_id and nonce travel outside the sealed message.
                let mut header = header;
                header.remove("nonce");
                let mut plain = Vec::with_capacity(128);
                encode_frame(&mut plain, header, &[]);
                let n = sealed::fresh_nonce();
                let bytes = sealed::seal_request(keys, &key.id, n, &plain)
                    .map_err(|e| UdpError::Seal(format!("cannot seal a datagram for key {:?}: {e}", key.id)))?;
                (bytes, Some(n))
            }
        };
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        let schedule = send_times(timeout).map(|at| now + at).collect();
        let deadline = now + timeout;
        Ok(Request {
            peer,
            nonce,
            bytes,
            schedule,
            first: now,
            deadline,
            sent: 0,
            refused: false,
            blocked: false,
            ts,
            exec,
            sealed,
        })
    }

    /// The reply in `bytes` if it is this request's: tagged with the key and
    /// echoing our nonce, or (sealed) opening under our nonce. A sealed
    /// reply's header gets our nonce added, so both read alike after.
    pub fn accept(&self, key: &Key, seal: Option<&DatagramKeys>, bytes: &[u8]) -> Result<datagram::Reply, String> {
        let (Some(n), Some(keys)) = (self.sealed, seal) else {
            let reply = datagram::decode_reply(key.secret.as_bytes(), bytes).map_err(|e| e.to_string())?;
            return match reply.answers(&self.nonce) {
                true => Ok(reply),
                false => Err("answers another request".into()),
            };
        };
        let plain = sealed::open_reply(keys, &key.id, &n, bytes).map_err(|e| e.to_string())?;
        let bad = |e: &dyn std::fmt::Display| format!("sealed reply: {e}");
        let (head, used) = peek_header(&plain).map_err(|e| bad(&e))?.ok_or_else(|| bad(&"cut short"))?;
        let mut header = parse_header(head).map_err(|e| bad(&e))?;
        let body = plain[used..].to_vec();
        if header.size != body.len() as u64 {
            return Err(bad(&"body size differs from the header's"));
        }
        header.fields.insert("nonce".into(), Value::from(self.nonce.as_str()));
        Ok(datagram::Reply { header, body })
    }

    /// Whether a send is due.
    pub fn due(&self, now: Instant) -> bool {
        self.blocked || self.schedule.front().is_some_and(|&at| at <= now)
    }

    /// Records the result of a send; an error that ends the exchange
    /// comes back. ICMP errors of earlier sends surface here: they count.
    pub fn on_send(&mut self, r: io::Result<usize>) -> io::Result<Sent> {
        match r {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.blocked = true;
                return Ok(Sent::Blocked);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => self.refused = true,
            Err(e) => return Err(e),
        }
        self.sent += 1;
        self.blocked = false;
        self.schedule.pop_front();
        Ok(Sent::Ok)
    }

    /// When something is next to do: a send, or giving up.
    pub fn wake(&self) -> Instant {
        self.schedule.front().map_or(self.deadline, |&at| at.min(self.deadline))
    }

    /// Past the deadline with nothing left to send: `no_reply`.
    pub fn expired(&self, now: Instant) -> bool {
        self.deadline <= now && !self.blocked
    }

    pub fn no_reply(&self, now: Instant) -> UdpError {
        UdpError::NoReply {
            peer: self.peer,
            waited: now - self.first,
            sent: self.sent,
            refused: self.refused,
            exec: self.exec,
            sealed: self.sealed.is_some(),
        }
    }
}

/// A fresh exec request header for `command` (as `run` sends it).
pub fn exec_header(command: &[String], argv: bool) -> Map<String, Value> {
    let req = Exec { command: command_of(command, argv), env: Default::default(), cwd: None, stdin: false, timeout: None, pty: None };
    datagram::request::exec(&req, &datagram::fresh_udp_nonce(), unix_now())
}

/// A fresh ping request header.
pub fn ping_header() -> Map<String, Value> {
    datagram::request::ping(&datagram::fresh_udp_nonce(), unix_now())
}

/// The unbound local address of `peer`'s family.
pub fn any_addr(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

/// Sends the request `header`, retransmitting it unchanged, and waits for
/// the reply that answers it.
pub fn exchange(target: &Target, key: &Key, opts: &Options, header: Map<String, Value>) -> Result<Exchange, UdpError> {
    exchange_once(target, key, opts, header, true)
}

/// What `-v` says of a host's datagrams.
pub fn datagram_transport(sealed: bool) -> &'static str {
    if sealed {
        "sealed (AES-256-GCM)"
    } else {
        "tagged v1 (HMAC, in clear)"
    }
}

/// `exchange`; `announce`: with `-v`, say whether the datagrams are sealed
/// or tagged (once per host: `ping -c` says it on its first round only).
fn exchange_once(
    target: &Target,
    key: &Key,
    opts: &Options,
    header: Map<String, Value>,
    announce: bool,
) -> Result<Exchange, UdpError> {
    let peer = resolve_addrs(target, opts.family).map_err(UdpError::Resolve)?[0];
    let sock = UdpSocket::bind(any_addr(peer)).map_err(UdpError::Io)?;
    // Connected: the kernel drops datagrams from anyone else, and reports
    // ICMP port unreachable to us.
    sock.connect(peer).map_err(UdpError::Io)?;
    let mut traced = header.clone();
    traced.insert("key_id".into(), Value::from(key.id.as_str()));
    let keys = opts.transport.tls_for(&peer).then(|| crate::tls::datagram_keys(key));
    if opts.trace && announce {
        exit::say(format_args!("{peer}/udp: {}", datagram_transport(keys.is_some())));
    }
    let mut req = Request::new(key, header, peer, opts.timeout, Instant::now(), keys.as_ref())?;
    let mut buf = vec![0u8; datagram::MAX_DATAGRAM + 1];
    loop {
        let now = Instant::now();
        if req.due(now) {
            if opts.trace {
                trace(">", &traced, if req.sent > 0 { " (again)" } else { "" });
            }
            let r = sock.send(&req.bytes);
            req.on_send(r).map_err(UdpError::Io)?;
            if req.refused {
                return Err(UdpError::Unreachable(peer));
            }
            continue;
        }
        if now >= req.deadline {
            return Err(req.no_reply(now));
        }
        sock.set_read_timeout(Some(req.wake().saturating_duration_since(now).max(Duration::from_millis(1))))
            .map_err(UdpError::Io)?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {
                continue
            }
            // ICMP port unreachable: no one listens, so say so at once.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(UdpError::Unreachable(peer)),
            Err(e) => return Err(UdpError::Io(e)),
        };
        match req.accept(key, keys.as_ref(), &buf[..n]) {
            Ok(reply) => {
                if opts.trace {
                    trace("<", &reply.header.fields, "");
                }
                return Ok(Exchange { reply, peer, elapsed: req.first.elapsed(), sent: req.sent, ts: req.ts });
            }
            Err(e) => {
                if opts.trace {
                    exit::say(format_args!("< {n} bytes ignored: {e}"));
                }
            }
        }
    }
}

/// The status and message for an error reply, as `ferry run` gives them over
/// TCP: 127 for `spawn-failed`, 255 for the rest. `clock-skew` says by how
/// much the clocks differ.
fn error_reply(e: &ProtoError, ex: &Exchange) -> i32 {
    match e.code {
        ErrorCode::SpawnFailed => {
            exit::say(&e.message);
            exit::SPAWN_FAILED
        }
        ErrorCode::ClockSkew => {
            let server = ex.reply.header.fields.get("ts").and_then(Value::as_i64);
            let by = match server.map(|s| s - ex.ts) {
                Some(d) if d >= 0 => format!(" (the server's clock is {d} s ahead of ours)"),
                Some(d) => format!(" (the server's clock is {} s behind ours)", d.unsigned_abs()),
                None => String::new(),
            };
            fail(format_args!("{}{by} ({})", e.message, e.code.as_str()))
        }
        _ => fail(super::Error::Remote(e.clone())),
    }
}

/// A reply that is neither what was asked for nor an error.
fn unexpected(ex: &Exchange) -> i32 {
    fail(format_args!("protocol error: unexpected {:?} reply", ex.reply.header.kind))
}

/// `ferry run -u`: one exec request; its output and status.
pub fn run(
    target: &Target,
    key: &Key,
    opts: &Options,
    command: Vec<String>,
    argv: bool,
    encoding: Option<&'static Encoding>,
) -> i32 {
    let ex = match exchange(target, key, opts, exec_header(&command, argv)) {
        Ok(ex) => ex,
        Err(e) => return fail(e),
    };
    let result = match ex.reply.kind() {
        Reply::Error(e) if e.code == ErrorCode::NotAllowed && !argv && command.len() == 1 => {
            return fail(super::argv_refusal(&e.message));
        }
        Reply::Error(e) => return error_reply(&e, &ex),
        _ if ex.reply.header.kind != "result" => return unexpected(&ex),
        _ => match ExecResult::from_reply(&ex.reply) {
            Some(r) => r,
            None => return fail("protocol error: a result whose counts do not match its body"),
        },
    };
    if let Err(e) = write_result(&result, encoding) {
        return exit::stdout_failed(&e);
    }
    if result.truncated {
        exit::say(format_args!(
            "output truncated to fit one datagram: {} of {} stdout bytes and {} of {} stderr bytes shown (run without -u for all of it)",
            result.stdout.len(),
            result.stdout_total,
            result.stderr.len(),
            result.stderr_total
        ));
    }
    if result.timed_out {
        exit::say("the server stopped the command at its time limit for datagram requests (udp.exec_timeout)");
    }
    ExitStatus { code: result.code, signal: result.signal }.shell_code()
}

/// Writes the two streams, each through its own decoder when asked.
fn write_result(r: &ExecResult, encoding: Option<&'static Encoding>) -> io::Result<()> {
    let mut out = Output::new(encoding, io::stdout().lock());
    out.write_all(&r.stdout)?;
    out.finish()?;
    let mut err = Output::new(encoding, io::stderr().lock());
    err.write_all(&r.stderr)?;
    err.finish()
}

/// `ferry ping -u`: `count` requests, each its own round trip.
pub fn ping(target: &Target, key: &Key, opts: &Options, count: u32, interval: Duration, quiet: bool) -> i32 {
    let mut times = Vec::new();
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(interval);
        }
        let ex = match exchange_once(target, key, opts, ping_header(), i == 0) {
            Ok(ex) => ex,
            Err(e) => return fail(e),
        };
        match ex.reply.kind() {
            Reply::Pong => {}
            Reply::Error(e) => return error_reply(&e, &ex),
            _ => return unexpected(&ex),
        }
        let ms = ex.elapsed.as_secs_f64() * 1000.0;
        if !quiet {
            let again = if ex.sent > 1 { format!(" ({} datagrams sent)", ex.sent) } else { String::new() };
            if let Err(e) = crate::outln!("pong from {}/udp: seq={} time={ms:.3} ms{again}", ex.peer, i + 1) {
                return exit::stdout_failed(&e);
            }
        }
        times.push(ms);
    }
    if !quiet && count > 1 {
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        let max = times.iter().copied().fold(0.0, f64::max);
        let avg = times.iter().sum::<f64>() / times.len() as f64;
        if let Err(e) = crate::outln!("{count} pings: min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms") {
            return exit::stdout_failed(&e);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmissions_double_until_the_timeout() {
        let ms = |t: Duration| t.as_millis() as u64;
        let at: Vec<u64> = send_times(Duration::from_secs(5)).map(ms).collect();
        assert_eq!(at, [0, 200, 600, 1400, 3000]);
        let at: Vec<u64> = send_times(Duration::from_secs(1)).map(ms).collect();
        assert_eq!(at, [0, 200, 600]);
        assert_eq!(send_times(Duration::ZERO).map(ms).collect::<Vec<_>>(), [0], "one datagram even with -w 0");
        assert_eq!(send_times(Duration::from_secs(3600)).count(), 15);
    }

    #[test]
    fn the_no_reply_line_names_the_causes() {
        let peer = "127.0.0.1:7075".parse().unwrap();
        let e = UdpError::NoReply { peer, waited: Duration::from_millis(5004), sent: 5, refused: false, exec: false, sealed: false };
        let s = e.to_string();
        assert!(s.starts_with("no reply from 127.0.0.1:7075/udp in 5.0 s (5 datagrams sent)"), "{s}");
        for cause in ["wrong key", "UDP not enabled", "clock skew"] {
            assert!(s.contains(cause), "{s}");
        }
        assert!(!s.contains('\n') && !s.contains("still runs"));
        // Tagged: the server may take those only from plaintext_from; sealing is the way out.
        assert!(s.contains("outside the server's plaintext_from") && s.contains("--tls seals them"), "{s}");
        assert!(!s.contains("--plaintext"), "{s}");
        // Sealed: --plaintext only for an old server, and only from plaintext_from.
        let e = UdpError::NoReply { peer, waited: Duration::from_millis(5004), sent: 5, refused: false, exec: false, sealed: true };
        let s = e.to_string();
        assert!(s.contains("too old to open sealed datagrams") && s.contains("only from addresses in its plaintext_from"), "{s}");
        assert!(!s.contains("--tls"), "{s}");
        let e = UdpError::NoReply { peer, waited: Duration::from_millis(900), sent: 1, refused: true, exec: true, sealed: false };
        let s = e.to_string();
        assert!(s.contains("(1 datagram sent; port unreachable)") && s.ends_with("or the command still runs (a longer -w waits for it)"), "{s}");
    }
}
