//! Datagram mode (`ferry-bench udp`): ferryd's authenticated UDP ping
//! (`proto::datagram`) with `pipeline` requests in flight on one socket, or,
//! for the baseline, datagrams of the same size to an unauthenticated echo
//! (`benches/baseline.c echo`), through the same loop.
//!
//! Each ferry request is made as it is sent: a fresh nonce (16 random bytes;
//! getrandom fills a pool of them at a time) and the current `ts`, written
//! and tagged into the slot's buffer by `datagram::PingEncoder` (the bytes
//! `encode_request` makes, without its map). A reply counts once its tag
//! checks with the key (`datagram::Tagger`) and its nonce is one in flight;
//! any other datagram is ignored, as the protocol says.
//!
//! With `--tls` the pings are sealed (`proto::sealed`, the keys from
//! `tls::datagram_keys`): the first 12 bytes of the nonce are the seal's
//! nonce, and a reply, whose nonce is not in clear, is opened under each
//! request in flight until one opens it (one try at `-P 1`).
//!
//! Loss: a request with no reply after `rto` is sent again unchanged (same
//! nonce: ferryd answers a retransmission from its reply cache), the wait
//! doubling each time; after `retries` retransmissions it counts as lost and
//! its slot sends a fresh request. A lost datagram costs a slot some time,
//! never the run; a run with no reply at all for `stall` is an error.

use crate::hist::Histogram;
use crate::net;
use crate::report::{cpu_row, grouped, latency_json, latency_row, push_notes, round3, Common, Report, Window};
use crate::sys;
use ferry::proto::auth::Key;
use ferry::proto::datagram::{self, Direction, PingEncoder, Tagger, MAX_DATAGRAM, NONCE_BYTES};
use ferry::proto::sealed::{self, DatagramKeys};
use ferry::proto::msg;
use ferry::proto::ErrorCode;
use ferry::sys::unix_now;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Who answers.
pub enum Target {
    /// ferryd: authenticated pings with this key.
    Ferry(Key),
    /// An echo: datagrams of `size` bytes (at least 16), sent back as they are.
    Bare { size: usize },
}

pub struct Spec {
    pub target: Target,
    /// Seal the pings (`--tls`).
    pub sealed: bool,
    /// Requests in flight.
    pub pipeline: usize,
    /// The first retransmission comes this long after the first send; the wait doubles.
    pub rto: Duration,
    /// Retransmissions of one request before it counts as lost.
    pub retries: u32,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Latencies (ns, from the request's first send) of the replies inside the window.
    pub hist: Histogram,
    /// Replies inside the window.
    pub ops: u64,
    /// Every reply, warm-up and drain included.
    pub replies: u64,
    /// Requests made (each a fresh nonce), and datagrams sent (retransmissions included).
    pub requests: u64,
    pub datagrams: u64,
    pub retransmits: u64,
    /// Requests given up after `retries` retransmissions.
    pub lost: u64,
    /// `replayed` answers: the first reply was lost and the server's cache no
    /// longer held it; the request was served, its reply is not counted.
    pub replayed: u64,
    /// Datagrams ignored: duplicates, answers to requests given up, bad tags.
    pub stray: u64,
    pub request_bytes: usize,
    /// The size of the last reply.
    pub reply_bytes: usize,
    /// CPU time over the window: ours, and the server's when its pid is known.
    pub client_cpu: Duration,
    pub server_cpu: Option<Duration>,
}

/// A request in flight (or, after the window, an idle slot).
struct Slot {
    bytes: Vec<u8>,
    /// The nonce (ferry) or the sequence number (bare) that replies carry.
    key: u128,
    first: Instant,
    /// Datagrams sent for this request.
    tries: u32,
    /// Bumped at each send, so a stale timer entry is recognised.
    gen: u64,
    busy: bool,
}

/// What a datagram from the server is.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The reply to the request with this key.
    Reply(u128),
    /// ferryd's `replayed` for this nonce.
    Replayed(u128),
    /// An authenticated error other than `replayed`: the run cannot go on.
    Fatal(String),
    /// Not for us (a bad tag, malformed): ignored.
    Stray,
}

/// A ferry target's key, ready for the fast paths: pings are written by
/// `datagram::PingEncoder`, reply tags checked with a keyed `Tagger`.
struct Ferry {
    pinger: PingEncoder,
    reply: Tagger,
    secret: Vec<u8>,
    key_id: String,
    /// `--tls`: the datagram keys that seal requests and open replies.
    sealed: Option<DatagramKeys>,
}

impl Ferry {
    fn new(key: &Key, sealed: bool) -> Ferry {
        let secret = key.secret.as_bytes();
        Ferry {
            pinger: PingEncoder::new(&key.id, secret),
            reply: Tagger::new(Direction::Reply, secret),
            secret: secret.to_vec(),
            key_id: key.id.clone(),
            sealed: sealed.then(|| ferry::tls::datagram_keys(key)),
        }
    }

    /// The sealed ping for `nonce` (its first 12 bytes are the seal's nonce).
    fn sealed_ping(&self, keys: &DatagramKeys, buf: &mut Vec<u8>, nonce: u128, ts: i64) -> Result<(), String> {
        let mut plain = Vec::with_capacity(64);
        let mut header = msg::request::ping();
        header.insert("ts".into(), json!(ts));
        ferry::proto::encode_frame(&mut plain, header, b"");
        *buf = sealed::seal_request(keys, &self.key_id, seal_nonce(nonce), &plain).map_err(|e| format!("seal: {e}"))?;
        Ok(())
    }

    /// Opens a sealed reply under each request in flight; the one it answers.
    fn open_sealed<'a>(&self, keys: &DatagramKeys, bytes: &[u8], flying: impl Iterator<Item = &'a u128>) -> Answer {
        for &k in flying {
            let Ok(plain) = sealed::open_reply(keys, &self.key_id, &seal_nonce(k), bytes) else { continue };
            let Ok(Some((head, _))) = ferry::proto::frame::peek_header(&plain) else { return Answer::Stray };
            let Ok(header) = ferry::proto::frame::parse_header(head) else { return Answer::Stray };
            return match msg::Reply::from_header(&header) {
                msg::Reply::Pong => Answer::Reply(k),
                msg::Reply::Error(e) if e.code == ErrorCode::Replayed => Answer::Replayed(k),
                msg::Reply::Error(e) => Answer::Fatal(format!("ferryd answered {}: {}", e.code.as_str(), e.message)),
                _ => Answer::Fatal(format!("ferryd answered a ping with a {:?} reply", header.kind)),
            };
        }
        Answer::Stray
    }

    /// The ping request datagram for `nonce` and `ts`, into `buf`. The nonce's
    /// bytes are big-endian, so its hex is `{nonce:032x}` (see `nonce_key`).
    fn ping(&self, buf: &mut Vec<u8>, nonce: u128, ts: i64) {
        self.pinger.encode(buf, &nonce.to_be_bytes(), ts);
    }

    /// Reads a reply. The fast path is a pong: no body, the tag checked with
    /// the keyed state, the header read into borrowed fields. Anything else
    /// goes through `datagram::decode_reply`.
    fn answer(&self, bytes: &[u8]) -> Answer {
        #[derive(Deserialize)]
        struct Pong<'a> {
            #[serde(rename = "type", borrow)]
            kind: &'a str,
            #[serde(borrow)]
            nonce: &'a str,
        }
        let Ok((head, body)) = datagram::split(bytes) else { return Answer::Stray };
        if body.is_empty() {
            if !self.reply.check(bytes) {
                return Answer::Stray;
            }
            if let Ok(p) = serde_json::from_slice::<Pong>(head) {
                if p.kind == "pong" {
                    return nonce_key(p.nonce).map_or(Answer::Stray, Answer::Reply);
                }
            }
        }
        let Ok(reply) = datagram::decode_reply(&self.secret, bytes) else { return Answer::Stray };
        let Some(key) = reply.header.str("nonce").and_then(nonce_key) else { return Answer::Stray };
        match reply.kind() {
            msg::Reply::Pong => Answer::Reply(key),
            msg::Reply::Error(e) if e.code == ErrorCode::Replayed => Answer::Replayed(key),
            msg::Reply::Error(e) => {
                let hint = match e.code {
                    ErrorCode::ClockSkew => " (this machine's clock and the server's differ by more than udp.window)",
                    _ => "",
                };
                Answer::Fatal(format!("ferryd answered {}: {}{hint}", e.code.as_str(), e.message))
            }
            _ => Answer::Fatal(format!("ferryd answered a ping with a {:?} reply", reply.header.kind)),
        }
    }
}

/// The seal nonce of a request key: its first 12 big-endian bytes.
fn seal_nonce(k: u128) -> [u8; sealed::NONCE_LEN] {
    k.to_be_bytes()[..sealed::NONCE_LEN].try_into().expect("12 of 16 bytes")
}

/// A nonce's 32 hex digits as a number (the key replies are matched by).
fn nonce_key(nonce: &str) -> Option<u128> {
    if !datagram::is_udp_nonce(nonce) {
        return None;
    }
    u128::from_str_radix(nonce, 16).ok()
}

/// Random nonces, drawn from getrandom a pool at a time.
struct Nonces {
    pool: Vec<u8>,
    at: usize,
}

impl Nonces {
    const POOL: usize = 1024 * NONCE_BYTES;

    fn new() -> Nonces {
        Nonces { pool: vec![0; Self::POOL], at: Self::POOL }
    }

    fn next(&mut self) -> Result<u128, String> {
        if self.at == self.pool.len() {
            getrandom::getrandom(&mut self.pool).map_err(|e| format!("the OS random source failed: {e}"))?;
            self.at = 0;
        }
        let n = u128::from_le_bytes(self.pool[self.at..self.at + NONCE_BYTES].try_into().expect("16 bytes"));
        self.at += NONCE_BYTES;
        Ok(n)
    }
}

/// The size of a ferry ping request with `key` (they all have it while `ts`
/// has 10 digits): what the bare mode sends.
pub fn ping_size(key: &Key) -> usize {
    let mut buf = Vec::new();
    Ferry::new(key, false).ping(&mut buf, 0, unix_now());
    buf.len()
}

fn refused(addr: SocketAddr, bare: bool) -> String {
    if bare {
        format!("port unreachable: nothing is bound to {addr}/udp (is the echo running?)")
    } else {
        format!("port unreachable: nothing is bound to {addr}/udp (ferryd serves UDP with --udp or udp.listen)")
    }
}

/// The run's state: the socket, the slots and the counts.
struct Run<'a> {
    sock: UdpSocket,
    addr: SocketAddr,
    spec: &'a Spec,
    ferry: Option<Ferry>,
    slots: Vec<Slot>,
    /// Key of each request in flight → its slot.
    flying: HashMap<u128, usize>,
    /// (deadline, slot, gen) of every send, soonest first; stale ones are skipped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    nonces: Nonces,
    seq: u128,
    out: Outcome,
}

impl Run<'_> {
    fn send(&mut self, i: usize) -> Result<(), String> {
        let s = &mut self.slots[i];
        s.tries += 1;
        s.gen += 1;
        let wait = self.spec.rto.saturating_mul(1 << (s.tries - 1).min(16));
        self.timers.push(Reverse((Instant::now() + wait, i, s.gen)));
        self.out.datagrams += 1;
        match self.sock.send(&s.bytes) {
            Ok(_) => Ok(()),
            // A full send buffer loses the datagram, as the network may: the timer resends it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(refused(self.addr, self.ferry.is_none())),
            Err(e) => Err(format!("send: {e}")),
        }
    }

    /// A new request on slot `i`, sent.
    fn fresh(&mut self, i: usize) -> Result<(), String> {
        let key = match &self.ferry {
            Some(f) => {
                let mut nonce = self.nonces.next()?;
                match &f.sealed {
                    Some(keys) => {
                        // Only the first 12 bytes are the seal's: the key is what they give.
                        nonce &= !0u128 << 32;
                        f.sealed_ping(keys, &mut self.slots[i].bytes, nonce, unix_now())?;
                    }
                    None => f.ping(&mut self.slots[i].bytes, nonce, unix_now()),
                }
                nonce
            }
            None => {
                self.seq += 1;
                self.slots[i].bytes[..16].copy_from_slice(&self.seq.to_le_bytes());
                self.seq
            }
        };
        let s = &mut self.slots[i];
        s.key = key;
        // Timed from here: making the request (its nonce, its tag) is not
        // part of the round trip, as the echo's has nothing to make.
        s.first = Instant::now();
        s.tries = 0;
        s.busy = true;
        self.flying.insert(key, i);
        self.out.requests += 1;
        self.out.request_bytes = s.bytes.len();
        self.send(i)
    }

    fn answer(&self, bytes: &[u8]) -> Answer {
        match &self.ferry {
            Some(Ferry { sealed: Some(keys), .. }) => {
                let f = self.ferry.as_ref().expect("matched");
                f.open_sealed(keys, bytes, self.flying.keys())
            }
            Some(f) => f.answer(bytes),
            None => {
                let s = &self.slots[0];
                if bytes.len() != s.bytes.len() {
                    return Answer::Stray;
                }
                Answer::Reply(u128::from_le_bytes(bytes[..16].try_into().expect("16 bytes")))
            }
        }
    }
}

/// Runs the loop against `addr` until `window.to`, then drains for at most
/// `window.drain`. `server_pid` is sampled for CPU time at the window's edges.
pub fn run(addr: SocketAddr, spec: &Spec, window: Window, server_pid: Option<u32>) -> Result<Outcome, String> {
    let local: SocketAddr =
        if addr.is_ipv4() { ([127, 0, 0, 1], 0).into() } else { (std::net::Ipv6Addr::LOCALHOST, 0).into() };
    let mut sock = UdpSocket::bind(local).map_err(|e| format!("udp socket: {e}"))?;
    // Connected: datagrams from anyone else never reach us, and an ICMP port
    // unreachable comes back as ECONNREFUSED.
    sock.connect(addr).map_err(|e| format!("udp connect {addr}: {e}"))?;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    poll.registry().register(&mut sock, Token(0), Interest::READABLE).map_err(|e| format!("poll: {e}"))?;
    let depth = spec.pipeline.max(1);
    let (ferry, size) = match &spec.target {
        Target::Ferry(key) => (Some(Ferry::new(key, spec.sealed)), 0),
        Target::Bare { size } => (None, (*size).clamp(16, MAX_DATAGRAM)),
    };
    let now = Instant::now();
    let mut r = Run {
        sock,
        addr,
        spec,
        ferry,
        slots: (0..depth)
            .map(|_| Slot { bytes: vec![b'x'; size], key: 0, first: now, tries: 0, gen: 0, busy: false })
            .collect(),
        flying: HashMap::with_capacity(depth * 2),
        timers: BinaryHeap::new(),
        nonces: Nonces::new(),
        seq: 0,
        out: Outcome::default(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut events = Events::with_capacity(64);
    let mut in_flight = depth;
    let (mut stopping, mut cpu0, mut last_progress) = (false, None, now);
    let sample = || (sys::self_cpu(), server_pid.and_then(sys::proc_cpu));
    for i in 0..depth {
        r.fresh(i)?;
    }
    loop {
        let now = Instant::now();
        if cpu0.is_none() && now >= window.from {
            cpu0 = Some(sample());
        }
        if !stopping && now >= window.to {
            stopping = true;
            let (c0, c1) = (cpu0.unwrap_or_else(sample), sample());
            r.out.client_cpu = c1.0.saturating_sub(c0.0);
            r.out.server_cpu = c0.1.zip(c1.1).map(|(a, b)| b.saturating_sub(a));
        }
        if stopping && (in_flight == 0 || now >= window.to + window.drain) {
            break;
        }
        if in_flight > 0 && now.duration_since(last_progress) > window.stall {
            let who = if r.ferry.is_some() {
                "ferryd answers nothing to a key it does not hold (-k, -i) or to a port without --udp"
            } else {
                "is the echo running on that port?"
            };
            return Err(format!(
                "no reply for {:.1} s with {in_flight} requests in flight ({} datagrams sent): {who}",
                window.stall.as_secs_f64(),
                r.out.datagrams
            ));
        }
        // Expired timers: resend, or give up and start afresh.
        while let Some(&Reverse((at, i, gen))) = r.timers.peek() {
            if at > now {
                break;
            }
            r.timers.pop();
            let s = &r.slots[i];
            if !s.busy || s.gen != gen {
                continue;
            }
            if s.tries <= spec.retries {
                r.out.retransmits += 1;
                r.send(i)?;
            } else {
                r.out.lost += 1;
                let key = s.key;
                r.flying.remove(&key);
                if stopping {
                    r.slots[i].busy = false;
                    in_flight -= 1;
                } else {
                    r.fresh(i)?;
                }
            }
        }
        let edge = if cpu0.is_none() {
            window.from
        } else if stopping {
            window.to + window.drain
        } else {
            window.to
        };
        let wake = r.timers.peek().map_or(edge, |Reverse((at, _, _))| (*at).min(edge));
        let timeout = wake.saturating_duration_since(now).min(Duration::from_millis(100));
        net::poll_events(&mut poll, &mut events, timeout)?;
        if events.is_empty() {
            continue;
        }
        loop {
            let n = match r.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(refused(addr, r.ferry.is_none())),
                Err(e) => return Err(format!("recv: {e}")),
            };
            let now = Instant::now();
            let (key, replayed) = match r.answer(&buf[..n]) {
                Answer::Reply(k) => (k, false),
                Answer::Replayed(k) => (k, true),
                Answer::Fatal(e) => return Err(e),
                Answer::Stray => {
                    r.out.stray += 1;
                    continue;
                }
            };
            let Some(i) = r.flying.remove(&key) else {
                r.out.stray += 1;
                continue;
            };
            last_progress = now;
            if replayed {
                r.out.replayed += 1;
            } else {
                r.out.replies += 1;
                r.out.reply_bytes = n;
                if now >= window.from && now < window.to {
                    r.out.hist.record(now.duration_since(r.slots[i].first).as_nanos() as u64);
                    r.out.ops += 1;
                }
            }
            if stopping {
                r.slots[i].busy = false;
                in_flight -= 1;
            } else {
                r.fresh(i)?;
            }
        }
    }
    Ok(r.out)
}

/// Datagrams: ferryd's UDP ping, or with `Target::Bare` an echo, on one
/// socket with `spec.pipeline` requests in flight, for warm-up + duration.
pub fn measure(common: &Common, spec: &Spec) -> Result<Report, String> {
    let bare = matches!(spec.target, Target::Bare { .. });
    let o = run(common.addr, spec, common.window(Instant::now()), common.server_pid)?;
    let secs = common.duration.as_secs_f64();
    let rate = o.ops as f64 / secs;
    let protocol = if bare { "udp-echo" } else { "ferry-udp" };
    let mut m = common.base("udp");
    m.insert("protocol".into(), json!(protocol));
    m.remove("connections");
    m.insert("pipeline".into(), json!(spec.pipeline));
    m.insert("request_bytes".into(), json!(o.request_bytes));
    m.insert("reply_bytes".into(), json!(o.reply_bytes));
    m.insert("warmup_s".into(), json!(common.warmup.as_secs_f64()));
    m.insert("duration_s".into(), json!(secs));
    m.insert("rto_ms".into(), json!(round3(spec.rto.as_secs_f64() * 1000.0)));
    m.insert("retries".into(), json!(spec.retries));
    m.insert("ops".into(), json!(o.ops));
    m.insert("ops_per_s".into(), json!(round3(rate)));
    m.insert("latency_us".into(), latency_json(&o.hist));
    m.insert("replies_total".into(), json!(o.replies));
    m.insert("requests".into(), json!(o.requests));
    m.insert("datagrams_sent".into(), json!(o.datagrams));
    m.insert("retransmits".into(), json!(o.retransmits));
    m.insert("lost".into(), json!(o.lost));
    m.insert("replayed".into(), json!(o.replayed));
    m.insert("stray".into(), json!(o.stray));
    m.insert("client_cpu_s".into(), json!(round3(o.client_cpu.as_secs_f64())));
    m.insert("server_cpu_s".into(), json!(o.server_cpu.map(|d| round3(d.as_secs_f64()))));
    let per_op = |d: Duration| (o.ops > 0).then(|| round3(d.as_secs_f64() * 1e6 / o.ops as f64));
    m.insert("client_cpu_us_per_op".into(), json!(per_op(o.client_cpu)));
    m.insert("server_cpu_us_per_op".into(), json!(o.server_cpu.and_then(per_op)));
    let what = if bare { "echoes" } else { "pings" };
    let mut rows = vec![
        ("measured".to_string(), format!("{secs:.2} s after {:.2} s of warm-up", common.warmup.as_secs_f64())),
        (what.to_string(), format!("{} ({}/s)", grouped(o.ops), grouped(rate.round() as u64))),
        ("latency".into(), latency_row(&o.hist)),
        (
            "datagrams".into(),
            format!(
                "{} sent ({} bytes each, replies {} bytes), {} retransmitted, {} requests lost, {} replayed, {} stray",
                grouped(o.datagrams),
                o.request_bytes,
                o.reply_bytes,
                grouped(o.retransmits),
                grouped(o.lost),
                grouped(o.replayed),
                grouped(o.stray)
            ),
        ),
        ("cpu".into(), cpu_row(o.client_cpu, o.server_cpu, common.server_pid, Some(("request", o.ops as f64)))),
    ];
    push_notes(common.notes(), &mut m, &mut rows);
    let title = format!(
        "ferry-bench udp: {} {}/udp, pipeline {}, retransmit after {} ms (doubling) up to {} times",
        if bare { "bare echo" } else { "ferry" },
        common.addr,
        spec.pipeline,
        spec.rto.as_millis(),
        spec.retries
    );
    Ok(Report { json: Value::Object(m), title, rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry::proto::datagram::{reply, request};
    use ferry::proto::ProtoError;

    fn key() -> Key {
        Key { id: "bench".into(), secret: "a-secret-for-the-tests".into() }
    }

    #[test]
    fn the_hand_made_request_is_the_codecs() {
        let k = key();
        let f = Ferry::new(&k, false);
        let mut buf = Vec::new();
        for (nonce, ts) in [(0u128, 1_700_000_000), (u128::MAX, 1_764_000_000), (0x0102_0304, -5)] {
            f.ping(&mut buf, nonce, ts);
            let hex = format!("{nonce:032x}");
            let want = datagram::encode_request(&k.id, k.secret.as_bytes(), request::ping(&hex, ts), b"");
            assert_eq!(buf, want);
            let r = datagram::decode_request(&buf, |id| (id == "bench").then_some(k.secret.as_bytes())).unwrap();
            assert_eq!((r.nonce.as_str(), r.ts), (hex.as_str(), ts));
            if ts > 1_000_000_000 {
                assert_eq!(ping_size(&k), buf.len(), "every 10-digit ts gives the same size");
            }
        }
    }

    #[test]
    fn replies_are_checked_and_matched() {
        let k = key();
        let f = Ferry::new(&k, false);
        let nonce = "00000000000000000000000001020304";
        let pong = datagram::encode_reply(k.secret.as_bytes(), reply::pong(nonce, 42, None), b"");
        assert_eq!(f.answer(&pong), Answer::Reply(0x0102_0304));
        let mut bad = pong.clone();
        bad[5] ^= 1;
        assert_eq!(f.answer(&bad), Answer::Stray);
        let other = datagram::encode_reply(b"another key", reply::pong(nonce, 42, None), b"");
        assert_eq!(f.answer(&other), Answer::Stray);
        assert_eq!(f.answer(&pong[..pong.len() - 1]), Answer::Stray);
        // A request's tag is not a reply's.
        let req = datagram::encode_request(&k.id, k.secret.as_bytes(), request::ping(nonce, 1), b"");
        assert_eq!(f.answer(&req), Answer::Stray);
        let e = ProtoError::new(ErrorCode::Replayed, "already served");
        let replayed = datagram::encode_reply(k.secret.as_bytes(), reply::error(&e, nonce, None), b"");
        assert_eq!(f.answer(&replayed), Answer::Replayed(0x0102_0304));
        let e = ProtoError::new(ErrorCode::ClockSkew, "ts is 99s off");
        let skew = datagram::encode_reply(k.secret.as_bytes(), reply::clock_skew(&e, nonce, 7, None), b"");
        match f.answer(&skew) {
            Answer::Fatal(m) => assert!(m.contains("clock-skew: ts is 99s off") && m.contains("clock"), "{m}"),
            a => panic!("{a:?}"),
        }
    }

    #[test]
    fn sealed_pings_open_on_the_server_and_their_pongs_here() {
        let k = key();
        let f = Ferry::new(&k, true);
        let keys = ferry::tls::datagram_keys(&k);
        let nonce: u128 = 0x0102_0304_0506_0708_090a_0b0c_0000_0000;
        let mut buf = Vec::new();
        f.sealed_ping(&keys, &mut buf, nonce, 1_700_000_000).unwrap();
        let req = sealed::open_request(&buf, |id| (id == k.id).then_some(&keys)).unwrap();
        assert_eq!(req.nonce, seal_nonce(nonce));
        let mut plain = Vec::new();
        ferry::proto::encode_frame(&mut plain, msg::pong(None), b"");
        let reply = sealed::seal_reply(&keys, &k.id, &req.nonce, [9; 12], &plain).unwrap();
        let flying = [7u128 << 32, nonce];
        assert!(matches!(f.open_sealed(&keys, &reply, flying.iter()), Answer::Reply(n) if n == nonce));
        assert!(matches!(f.open_sealed(&keys, &reply, [7u128 << 32].iter()), Answer::Stray));
    }

    #[test]
    fn nonces_do_not_repeat_across_pools() {
        let mut n = Nonces::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3000 {
            assert!(seen.insert(n.next().unwrap()));
        }
    }
}
