//! Datagram mode: authenticated UDP request/reply in the same reactor.
//!
//! `Udp` owns the UDP sockets, the seen set, the reply cache and the execs
//! started by datagrams. The reactor hands it socket and pipe events
//! (`on_event`), calls `sweep` while it has a backlog, `reap` on SIGCHLD and
//! `on_deadline` for exec timeouts; the codec is `proto::datagram`. What a
//! request is answered with is decided by `ops::start`, as for TCP; this
//! file judges the datagram, encodes the answer and keeps the execs' output.
//! `replay.rs` holds the seen set, the reply cache and the strangers' budget.
//! May import `ops`, `token` and `replay`; never `conn`.
//!
//! A datagram is read and judged in this order; the first that applies wins:
//! 1. malformed, unknown key id, wrong tag, a sealed datagram that does not
//!    open, a tagged (v1) datagram from a peer outside `plaintext_from`:
//!    silence (counted; a debug line at most once a second); a sealed request
//!    is judged from here on as the v1 request inside it (`sealed.rs`), and
//!    every answer to it is sealed under a fresh nonce;
//! 2. `ts` more than `udp.window` from our clock: `clock-skew`, with our time;
//! 3. `(key_id, nonce)` seen: running, nothing; reply cached, the same reply
//!    again (to the address the request came from; from another, `replayed`);
//!    otherwise `replayed`;
//! 4. the seen set full: dropped (a warning at most every 10 s);
//! 5. served: `ping`, `stat` and errors answer at once; an `exec` that may
//!    run (policy, a free child slot, else `busy`) is spawned and answered
//!    when it ends. Every answer of step 5 is cached.
//!
//! The seen set holds a 128-bit fingerprint of `(key_id, nonce)` until our
//! clock is past `ts + udp.window` (and as long on the monotonic clock, so
//! a clock stepped forward lets nothing back in): by then the window check
//! refuses the request anyway. It lives in memory, so "at most once" holds
//! within one run of the daemon.
//!
//! An exec's output is read to the end (its totals are counted) but only a
//! prefix of each stream is kept, `udp.max_reply` bytes at most; the reply
//! splits its budget as `datagram::split_budget` says.
//!
//! Fairness: one turn reads at most `MAX_DATAGRAMS_PER_TURN` datagrams or
//! `MAX_BYTES_PER_TURN` bytes; the rest waits for the next turn, so a flood
//! costs TCP clients at most that much work between two of their events.
//! And a flood costs at most `udp.max_rejects` failed checks a second,
//! counted by `SLICE` (a tenth of them each):
//! past that, the sockets are not read until the slice ends, and the kernel
//! drops what overflows their receive buffers at no cost to the reactor
//! (`Strangers`). Good requests are not limited, but one caught in a flood
//! waits for the slice's end, or is lost and retransmitted by its client.

mod replay;
mod sealed;

use super::ops::access::Access;
use super::ops::{self, Ctx, Exec, Op, Reply, Start, Via};
use super::token::{self, Role, Source};
use crate::config::Config;
use crate::proto::datagram::{self, reply, DatagramError, ExecOutcome, MAX_DATAGRAM};
use crate::proto::msg::{self, Request, Stream};
use crate::proto::{ErrorCode, ProtoError};
use crate::sys::unix_now;
use log::{debug, info, warn};
use mio::net::UdpSocket;
use mio::{Interest, Registry};
use replay::{due, Cache, Cached, Seen, Strangers};
use sealed::{KeyCache, Seal, Silence};
use serde_json::Value;
use slab::Slab;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Datagrams read in one reactor turn, at most.
pub const MAX_DATAGRAMS_PER_TURN: usize = 64;
/// Bytes of datagrams read in one reactor turn, at most (about).
pub const MAX_BYTES_PER_TURN: usize = 256 * 1024;
/// Bytes of child output read for one exec in one turn.
const EXEC_BUDGET: usize = 256 * 1024;
/// A request `id` longer than this (as JSON) is `bad-request`: it is echoed
/// in every reply, which must fit `udp.max_reply`.
pub const MAX_ID_JSON: usize = 64;
/// How often the "dropped" debug line and the "seen set full" warning may come.
const DROP_LOG_EVERY: Duration = Duration::from_secs(1);
const FULL_WARN_EVERY: Duration = Duration::from_secs(10);

/// Binds every `udp.listen` address. Errors name the address.
pub fn bind(cfg: &Config) -> Result<Vec<UdpSocket>, String> {
    if cfg.udp.listen.len() > token::MAX_UDP_SOCKETS {
        return Err(format!("at most {} udp.listen addresses", token::MAX_UDP_SOCKETS));
    }
    let mut out = Vec::new();
    for addr in &cfg.udp.listen {
        let s = UdpSocket::bind(*addr).map_err(|e| format!("cannot listen on {addr}/udp: {e}"))?;
        out.push(s);
    }
    Ok(out)
}

// ---- the execs -----------------------------------------------------------------

/// An exec started by a datagram, until its reply goes out.
struct Running {
    exec: Box<Exec>,
    fp: u128,
    key_id: String,
    /// The request's key: the reply is tagged with it even if a reload drops it meanwhile.
    secret: Vec<u8>,
    nonce: String,
    /// How the reply is sealed (None: a v1 request).
    seal: Option<Seal>,
    id: Option<Value>,
    peer: SocketAddr,
    sock: usize,
    /// Prefixes kept (at most `keep` bytes each) and totals read.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    totals: [u64; 2],
    keep: usize,
    access: Access,
}

/// Counts of datagrams that got no answer.
#[derive(Default)]
struct Drops {
    malformed: u64,
    unknown_key: u64,
    bad_tag: u64,
    /// Tagged datagrams from peers outside `plaintext_from`.
    clear: u64,
    last_log: Option<Instant>,
}

struct Sock {
    sock: UdpSocket,
    readable: bool,
}

/// Datagram mode's state. See the module doc.
pub struct Udp {
    sockets: Vec<Sock>,
    buf: Vec<u8>,
    seen: Seen,
    cache: Cache,
    inflight: HashMap<u128, usize>,
    execs: Slab<Running>,
    /// Execs whose turn's read budget ran out with output left.
    pending: Vec<usize>,
    drops: Drops,
    strangers: Strangers,
    full_warned: Option<Instant>,
    /// Salt of the fingerprints.
    salt: [u8; 32],
    epoch: Instant,
    draining: bool,
    /// The socket the next turn starts reading at (round robin).
    next_sock: usize,
    /// Datagram keys of the keys sealed requests used.
    keys: KeyCache,
}

impl Udp {
    pub fn new() -> Udp {
        Udp {
            sockets: Vec::new(),
            buf: Vec::new(),
            seen: Seen::default(),
            cache: Cache::default(),
            inflight: HashMap::new(),
            execs: Slab::new(),
            pending: Vec::new(),
            drops: Drops::default(),
            strangers: Strangers::default(),
            full_warned: None,
            salt: crate::proto::auth::fresh_nonce(),
            epoch: Instant::now(),
            draining: false,
            next_sock: 0,
            keys: KeyCache::default(),
        }
    }

    /// Takes the bound sockets and registers them.
    pub fn add_sockets(&mut self, registry: &Registry, sockets: Vec<UdpSocket>) -> io::Result<()> {
        for mut sock in sockets {
            let i = self.sockets.len();
            registry.register(&mut sock, token::udp(i), Interest::READABLE)?;
            self.sockets.push(Sock { sock, readable: true });
        }
        if !self.sockets.is_empty() {
            self.buf = vec![0; MAX_DATAGRAM + 1];
        }
        Ok(())
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().filter_map(|s| s.sock.local_addr().ok()).collect()
    }

    /// Work left for the next turn: datagrams not read yet (unless reading
    /// is paused: then `deadline` says when it resumes), output not read yet.
    pub fn has_backlog(&self) -> bool {
        (self.strangers.paused_until.is_none() && self.sockets.iter().any(|s| s.readable)) || !self.pending.is_empty()
    }

    /// A socket or a pipe is ready.
    pub fn on_event(&mut self, src: Source, ctx: &mut Ctx) {
        match src {
            Source::Udp(i) => {
                if let Some(s) = self.sockets.get_mut(i) {
                    s.readable = true;
                }
                self.receive(ctx);
            }
            Source::UdpExec(slot, role) => {
                if let Some(r) = self.execs.get_mut(slot) {
                    if role == Role::Child {
                        if r.exec.try_reap() {
                            *ctx.children -= 1;
                        }
                    } else {
                        r.exec.on_event(role);
                    }
                    self.pump(slot, ctx);
                }
            }
            _ => {}
        }
    }

    /// The backlog of the last turn.
    pub fn sweep(&mut self, ctx: &mut Ctx) {
        for slot in std::mem::take(&mut self.pending) {
            self.pump(slot, ctx);
        }
        if self.sockets.iter().any(|s| s.readable) {
            self.receive(ctx);
        }
    }

    /// Reaps exited children (SIGCHLD, without pidfds).
    pub fn reap(&mut self, ctx: &mut Ctx) {
        let slots: Vec<usize> = self.execs.iter().map(|(k, _)| k).collect();
        for slot in slots {
            if self.execs[slot].exec.try_reap() {
                *ctx.children -= 1;
                self.pump(slot, ctx);
            }
        }
    }

    /// The next exec timeout step (TERM, then KILL), or the end of a pause.
    pub fn deadline(&self) -> Option<Instant> {
        let execs = self.execs.iter().filter_map(|(_, r)| r.exec.deadline()).min();
        match (execs, self.strangers.paused_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acts on expired exec deadlines and ends a pause whose slice is over
    /// (the sockets are then read in the same turn's sweep or the next).
    pub fn on_deadline(&mut self, ctx: &mut Ctx) {
        self.strangers.paused(ctx.now);
        let expired: Vec<usize> =
            self.execs.iter().filter(|(_, r)| r.exec.deadline().is_some_and(|d| d <= ctx.now)).map(|(k, _)| k).collect();
        for slot in expired {
            self.execs[slot].exec.on_deadline(ctx.now);
            self.pump(slot, ctx);
        }
    }

    /// TERM or INT: running execs finish; new requests get `shutting-down`.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Execs still running.
    pub fn running(&self) -> usize {
        self.execs.len()
    }

    /// The drain timeout passed: TERM every running exec's group.
    pub fn term_children(&self) {
        for (_, r) in self.execs.iter() {
            r.exec.signal(msg::SignalName::TERM);
        }
    }

    /// The daemon exits: nothing outlives it.
    pub fn kill_and_reap(&mut self) {
        for (_, r) in self.execs.iter_mut() {
            r.exec.kill_and_reap();
        }
        let d = &self.drops;
        if d.malformed + d.unknown_key + d.bad_tag + d.clear > 0 {
            info!(
                "udp: {} datagrams got no answer ({} malformed, {} unknown key id, {} wrong tag, {} in clear)",
                d.malformed + d.unknown_key + d.bad_tag + d.clear,
                d.malformed,
                d.unknown_key,
                d.bad_tag,
                d.clear
            );
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    // ---- reading datagrams ---------------------------------------------------

    /// Reads and handles datagrams until the sockets are dry or the turn's cap is reached.
    fn receive(&mut self, ctx: &mut Ctx) {
        let mut buf = std::mem::take(&mut self.buf);
        let (mut count, mut bytes) = (0, 0);
        let n = self.sockets.len();
        let now_wall = unix_now();
        'sockets: for k in 0..n {
            let i = (self.next_sock + k) % n;
            while self.sockets[i].readable {
                if count >= MAX_DATAGRAMS_PER_TURN || bytes >= MAX_BYTES_PER_TURN || self.strangers.paused(ctx.now) {
                    // The rest waits for the next turn, this socket first.
                    self.next_sock = i;
                    break 'sockets;
                }
                match self.sockets[i].sock.recv_from(&mut buf) {
                    Ok((len, peer)) => {
                        count += 1;
                        bytes += len;
                        self.on_datagram(i, &buf[..len], peer, now_wall, ctx);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.sockets[i].readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // An ICMP error queued on the socket, say: counted as a read.
                        count += 1;
                        debug!("udp: receive: {e}");
                    }
                }
            }
        }
        self.buf = buf;
    }

    /// Counts a datagram that gets no answer, against the strangers' budget
    /// too; a debug line at most once a second.
    fn drop_silently(&mut self, e: Silence, peer: SocketAddr, now: Instant, max_rejects: usize) {
        self.strangers.count(now, max_rejects);
        let d = &mut self.drops;
        match e {
            Silence::Datagram(DatagramError::Malformed(_)) => d.malformed += 1,
            Silence::Datagram(DatagramError::UnknownKey) => d.unknown_key += 1,
            Silence::Datagram(DatagramError::BadTag) => d.bad_tag += 1,
            Silence::Clear => d.clear += 1,
        }
        if due(&mut d.last_log, now, DROP_LOG_EVERY) {
            debug!(
                "udp: no answer to {peer}: {e} (so far {} malformed, {} unknown key id, {} wrong tag, {} in clear)",
                d.malformed, d.unknown_key, d.bad_tag, d.clear
            );
        }
    }

    fn send(&self, sock: usize, peer: SocketAddr, bytes: &[u8]) {
        let Some(s) = self.sockets.get(sock) else { return };
        match s.sock.send_to(bytes, peer) {
            Ok(_) => {}
            // A full send buffer drops the reply, as the network may: the
            // client retransmits and gets it from the cache.
            Err(e) => debug!("udp: reply to {peer}: {e}"),
        }
    }

    fn on_datagram(&mut self, sock: usize, bytes: &[u8], peer: SocketAddr, now_wall: i64, ctx: &mut Ctx) {
        let mut plain = Vec::new();
        let (req, seal) = match sealed::read_request(bytes, &mut plain, peer, ctx.cfg, &mut self.keys) {
            Ok(r) => r,
            Err(e) => return self.drop_silently(e, peer, ctx.now, ctx.cfg.udp.max_rejects),
        };
        let keys = &ctx.cfg.keys;
        let secret = keys.get(&req.key_id).expect("read_request found it").secret.as_bytes().to_vec();
        let ucfg = &ctx.cfg.udp;
        // v1 replies are made to fit what is left once sealed (see `sealed`).
        let max_reply = ucfg.max_reply - Seal::extra(seal.as_ref());
        let window = ucfg.window.as_secs() as i64;
        // An id too long for a reply is refused, and not echoed.
        let (id, id_err) = match &req.header.id {
            Some(v) if serde_json::to_vec(v).map_or(usize::MAX, |j| j.len()) > MAX_ID_JSON => {
                let m = format!("id: at most {MAX_ID_JSON} bytes of JSON over UDP");
                (None, Some(ProtoError::new(ErrorCode::BadRequest, m)))
            }
            id => (id.clone(), None),
        };
        let parsed = Request::from_header(&req.header);
        let access = Access::new(&req.header, &parsed, ctx.now);

        if req.ts.abs_diff(now_wall) > window as u64 {
            let err = ProtoError::new(
                ErrorCode::ClockSkew,
                format!("ts is {}s off (window {window}s)", req.ts.saturating_sub(now_wall)),
            );
            let r = error_datagram(&secret, max_reply, &err, &req.nonce, id.as_ref(), Some(now_wall));
            self.send(sock, peer, &Seal::wrap(seal.as_ref(), r));
            access.log(format_args!("udp {peer}"), Some(&req.key_id), ctx.now, "error:clock-skew");
            return;
        }

        let now_ms = self.now_ms(ctx.now);
        self.seen.purge(now_ms, now_wall, window);
        self.cache.purge(now_ms);
        let fp = replay::fingerprint(&self.salt, &req.key_id, &req.nonce);
        if self.seen.set.contains(&fp) {
            if self.inflight.contains_key(&fp) {
                debug!("udp {peer}: nonce {} is running; its reply comes when it ends", req.nonce);
            } else if let Some(c) = self.cache.map.get(&fp).filter(|c| c.peer == peer) {
                debug!("udp {peer}: nonce {} again: the cached reply", req.nonce);
                self.send(sock, peer, &c.reply);
            } else {
                let err = ProtoError::new(ErrorCode::Replayed, "already served");
                let r = error_datagram(&secret, max_reply, &err, &req.nonce, id.as_ref(), None);
                self.send(sock, peer, &Seal::wrap(seal.as_ref(), r));
                access.log(format_args!("udp {peer}"), Some(&req.key_id), ctx.now, "error:replayed");
            }
            return;
        }
        if self.seen.set.len() >= ucfg.seen_max {
            if due(&mut self.full_warned, ctx.now, FULL_WARN_EVERY) {
                warn!(
                    "udp: the seen set is full ({} requests within the window, udp.seen_max); new requests are dropped",
                    self.seen.set.len()
                );
            }
            return;
        }
        self.seen.insert(fp, req.ts, now_ms, now_wall, window);

        let started = match (id_err, self.draining) {
            (Some(e), _) => Err(e),
            (None, true) => Err(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down")),
            (None, false) => {
                let via = Via::Udp { slot: self.execs.vacant_key(), running: self.execs.len() };
                ops::start(parsed, id.as_ref(), &req.header.kind, via, ctx)
            }
        };
        let reply = match started {
            Ok(Start::Running(Op::Exec(exec))) => {
                debug!("udp {peer}: exec as pid {}", exec.pid());
                let slot = self.execs.insert(Running {
                    exec,
                    fp,
                    key_id: req.key_id,
                    secret,
                    nonce: req.nonce,
                    seal,
                    id,
                    peer,
                    sock,
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    totals: [0, 0],
                    keep: max_reply,
                    access,
                });
                self.inflight.insert(fp, slot);
                return;
            }
            Ok(Start::Reply(Reply::Pong)) => {
                Ok(datagram::encode_reply(&secret, reply::pong(&req.nonce, unix_now(), id.as_ref()), b""))
            }
            Ok(Start::Reply(Reply::Frame(h, body))) => {
                let r = datagram::encode_reply(&secret, reply::with_nonce(h, &req.nonce), &body);
                if r.len() <= max_reply {
                    Ok(r)
                } else {
                    let m = format!("the reply would be over udp.max_reply ({max_reply} bytes)");
                    Err(ProtoError::new(ErrorCode::TooLarge, m))
                }
            }
            // `ops::start` answers nothing else for a datagram.
            Ok(_) => Err(ProtoError::new(ErrorCode::UnknownType, "not served over UDP")),
            Err(e) => Err(e),
        };
        let (reply, result) = match reply {
            Ok(r) => (r, "ok".to_string()),
            Err(e) => {
                let r = error_datagram(&secret, max_reply, &e, &req.nonce, id.as_ref(), None);
                (r, format!("error:{}", e.code.as_str()))
            }
        };
        let reply = Seal::wrap(seal.as_ref(), reply);
        self.send(sock, peer, &reply);
        access.log(format_args!("udp {peer}"), Some(&req.key_id), ctx.now, &result);
        self.cache_reply(fp, reply, peer, now_ms, ctx.cfg);
    }

    fn cache_reply(&mut self, fp: u128, reply: Vec<u8>, peer: SocketAddr, now_ms: u64, cfg: &Config) {
        // As long as a retransmission could pass the window check.
        let until = now_ms.saturating_add(cfg.udp.window.as_millis() as u64 * 2 + 1000);
        self.cache.insert(fp, Cached { reply, peer, until }, cfg.udp.cache_max, cfg.udp.cache_bytes);
    }

    // ---- running execs ----------------------------------------------------------

    /// Reads the exec's output; sends its reply once it is finished.
    fn pump(&mut self, slot: usize, ctx: &mut Ctx) {
        let Some(r) = self.execs.get_mut(slot) else { return };
        let keep = r.keep;
        let (out, err, totals) = (&mut r.stdout, &mut r.stderr, &mut r.totals);
        let n = r.exec.read_output(ctx.scratch, EXEC_BUDGET, |stream, bytes| {
            let (buf, total) = match stream {
                Stream::Stdout => (&mut *out, &mut totals[0]),
                Stream::Stderr => (&mut *err, &mut totals[1]),
            };
            *total += bytes.len() as u64;
            let room = keep.saturating_sub(buf.len()).min(bytes.len());
            buf.extend_from_slice(&bytes[..room]);
        });
        if n >= EXEC_BUDGET {
            if !self.pending.contains(&slot) {
                self.pending.push(slot);
            }
        } else if r.exec.is_finished() {
            self.finish(slot, ctx);
        }
    }

    fn finish(&mut self, slot: usize, ctx: &mut Ctx) {
        let mut r = self.execs.remove(slot);
        self.inflight.remove(&r.fp);
        let exit = r.exec.exit();
        let o = ExecOutcome {
            code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            stdout: &r.stdout,
            stderr: &r.stderr,
            stdout_total: r.totals[0],
            stderr_total: r.totals[1],
        };
        let max_reply = ctx.cfg.udp.max_reply - Seal::extra(r.seal.as_ref());
        let bytes = datagram::encode_result(&r.secret, max_reply, &r.nonce, r.id.as_ref(), &o);
        let head = u32::from_be_bytes(bytes[datagram::TAG_LEN..datagram::OVERHEAD].try_into().expect("4 bytes"));
        let out = bytes.len() - datagram::OVERHEAD - head as usize;
        let bytes = Seal::wrap(r.seal.as_ref(), bytes);
        let mut result = exit.result();
        if (out as u64) < o.stdout_total + o.stderr_total {
            result.push_str(" truncated=true");
        }
        self.send(r.sock, r.peer, &bytes);
        r.access.bytes_out = out as u64;
        r.access.log(format_args!("udp {}", r.peer), Some(&r.key_id), ctx.now, &result);
        let now_ms = self.now_ms(ctx.now);
        self.cache_reply(r.fp, bytes, r.peer, now_ms, ctx.cfg);
    }
}

impl Default for Udp {
    fn default() -> Self {
        Udp::new()
    }
}

/// An error reply that fits `max_reply`: the message is cut if it must be.
/// `server_ts` is added for `clock-skew`.
fn error_datagram(
    secret: &[u8],
    max_reply: usize,
    err: &ProtoError,
    nonce: &str,
    id: Option<&Value>,
    server_ts: Option<i64>,
) -> Vec<u8> {
    let mut err = err.clone();
    loop {
        let h = match server_ts {
            Some(ts) => reply::clock_skew(&err, nonce, ts, id),
            None => reply::error(&err, nonce, id),
        };
        let bytes = datagram::encode_reply(secret, h, b"");
        if bytes.len() <= max_reply || err.message.is_empty() {
            return bytes;
        }
        let mut cut = err.message.len() / 2;
        while !err.message.is_char_boundary(cut) {
            cut -= 1;
        }
        err.message.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_replies_are_cut_to_fit() {
        let nonce = "00112233445566778899aabbccddeeff";
        let id = json!("i".repeat(60));
        let long = ProtoError::new(ErrorCode::NotAllowed, "é".repeat(2000));
        for max in [crate::config::UdpConfig::MIN_MAX_REPLY, 1400] {
            let bytes = error_datagram(b"key", max, &long, nonce, Some(&id), None);
            assert!(bytes.len() <= max, "{} > {max}", bytes.len());
            let r = datagram::decode_reply(b"key", &bytes).unwrap();
            assert_eq!((r.header.str("code"), r.header.id.as_ref()), (Some("not-allowed"), Some(&id)));
            assert!(r.header.str("message").unwrap().len() > max / 4, "cut no more than needed");
        }
        let short = ProtoError::new(ErrorCode::ClockSkew, "off");
        let r = datagram::decode_reply(b"key", &error_datagram(b"key", 512, &short, nonce, None, Some(42))).unwrap();
        assert_eq!((r.header.str("message"), r.header.fields.get("ts")), (Some("off"), Some(&json!(42))));
    }

    #[test]
    fn access_details_are_quoted_as_on_tcp() {
        let h = crate::proto::frame::parse_header(br#"{"type":"exec","cmd":"a\nb \"c\""}"#).unwrap();
        let a = Access::new(&h, &Request::from_header(&h), Instant::now());
        assert_eq!(a.detail(), ("exec", r#" cmd="a\nb \"c\"""#));
        let h = crate::proto::frame::parse_header(br#"{"type":"fr\u0007ob"}"#).unwrap();
        let a = Access::new(&h, &Request::from_header(&h), Instant::now());
        assert_eq!(a.detail(), ("unknown", r#" type="fr\u0007ob""#));
    }
}
