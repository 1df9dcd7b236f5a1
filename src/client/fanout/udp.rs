//! Fan-out in datagram mode (`run -u`, `ping -u` with `-H`): one
//! `client::udp::Request` per host, all sent at once over one socket per
//! address family, each retransmitted on its own schedule; replies matched
//! to hosts by nonce (tagged) or by address, then opened under each
//! candidate's nonce (sealed: off loopback, or with `--tls`, as for one
//! host). Driven by `poll_loop`. Imports `fan`, `outcome`,
//! `poll_loop` and `client::udp`.

use super::fan::{Fan, Op, Pong};
use super::outcome::Outcome;
use super::poll_loop::Transport;
use crate::client::udp::{self, any_addr, Request, Sent};
use crate::client::{io_text, resolve_addrs};
use crate::proto::datagram::{self, ExecResult};
use crate::proto::sealed::{self, DatagramKeys, Kind};
use crate::proto::msg::{ErrorCode, Reply, Stream};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Token};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const UDP4: Token = Token(usize::MAX - 2);
const UDP6: Token = Token(usize::MAX - 3);

pub(super) struct Udp {
    /// Each host's request in flight (None once it has its outcome).
    reqs: Vec<Option<Request>>,
    by_nonce: HashMap<String, usize>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    buf: Vec<u8>,
    /// The key's datagram keys, for the hosts whose requests are sealed.
    keys: DatagramKeys,
}

impl Udp {
    /// Resolves every host and opens the sockets; a host that does not
    /// resolve is finished at once.
    pub(super) fn new(fan: &mut Fan) -> io::Result<Udp> {
        let mut u = Udp {
            reqs: Vec::new(),
            by_nonce: HashMap::new(),
            v4: None,
            v6: None,
            buf: vec![0; datagram::MAX_DATAGRAM + 1],
            keys: crate::tls::datagram_keys(fan.key),
        };
        let now = Instant::now();
        for i in 0..fan.slots.len() {
            fan.slots[i].started = Some(now);
            let peer = match resolve_addrs(&fan.slots[i].host.target, fan.opts.family) {
                Ok(a) => a[0],
                Err(e) => {
                    fan.finish(i, Outcome::Unreachable(e));
                    u.reqs.push(None);
                    continue;
                }
            };
            let (sock, token) = if peer.is_ipv4() { (&mut u.v4, UDP4) } else { (&mut u.v6, UDP6) };
            if sock.is_none() {
                let mut s = UdpSocket::bind(any_addr(peer))?;
                recv_errors(&s, peer.is_ipv4());
                fan.poll.registry().register(&mut s, token, Interest::READABLE)?;
                *sock = Some(s);
            }
            if fan.opts.trace {
                let how = udp::datagram_transport(fan.opts.transport.tls_for(&peer));
                fan.trace_note(i, &format!("{peer}/udp: {how}"));
            }
            match request(fan, &u.keys, peer, now) {
                Ok(r) => {
                    u.by_nonce.insert(r.nonce.clone(), i);
                    u.reqs.push(Some(r));
                }
                Err(e) => {
                    fan.finish(i, Outcome::Error(e.to_string()));
                    u.reqs.push(None);
                }
            }
        }
        Ok(u)
    }

    fn finish(&mut self, fan: &mut Fan, i: usize, outcome: Outcome) {
        if let Some(r) = self.reqs[i].take() {
            self.by_nonce.remove(&r.nonce);
        }
        fan.finish(i, outcome);
    }

    /// The ICMP errors queued on the socket of `token` (IP_RECVERR): a
    /// host that answered port unreachable is over at once, as a single
    /// `ping -u` says, rather than after the whole timeout.
    fn on_icmp_errors(&mut self, fan: &mut Fan, token: Token) {
        use std::os::fd::AsRawFd;
        let sock = if token == UDP4 { self.v4.as_ref() } else { self.v6.as_ref() };
        let Some(fd) = sock.map(|s| s.as_raw_fd()) else { return };
        while let Some((peer, errno)) = next_icmp_error(fd) {
            let hit: Vec<usize> = (0..self.reqs.len()).filter(|&i| self.reqs[i].as_ref().is_some_and(|r| r.peer == peer)).collect();
            for i in hit {
                let m = if errno == libc::ECONNREFUSED {
                    udp::UdpError::Unreachable(peer).to_string()
                } else {
                    format!("{peer}/udp: {}", io_text(&io::Error::from_raw_os_error(errno)))
                };
                self.finish(fan, i, Outcome::Unreachable(m));
            }
        }
    }

    /// A reply datagram for host `i`.
    fn on_reply(&mut self, fan: &mut Fan, i: usize, reply: datagram::Reply) {
        let Some(req) = self.reqs[i].take() else { return };
        self.by_nonce.remove(&req.nonce);
        let outcome = match (fan.op, reply.kind()) {
            (Op::Ping { interval, .. }, Reply::Pong) => {
                let rtt = req.first.elapsed().as_secs_f64() * 1000.0;
                let again = if req.sent > 1 { format!(" ({} datagrams sent)", req.sent) } else { String::new() };
                if fan.on_pong(i, rtt, &again) == Pong::Last {
                    Outcome::Done
                } else {
                    match request(fan, &self.keys, req.peer, Instant::now() + *interval) {
                        Ok(next) => {
                            self.by_nonce.insert(next.nonce.clone(), i);
                            self.reqs[i] = Some(next);
                            return;
                        }
                        Err(e) => Outcome::Error(e.to_string()),
                    }
                }
            }
            (Op::Run { .. }, Reply::Other(k)) if k == "result" => match ExecResult::from_reply(&reply) {
                Some(r) => {
                    fan.output(i, Stream::Stdout, &r.stdout);
                    fan.output(i, Stream::Stderr, &r.stderr);
                    if r.truncated && !fan.plan.quiet {
                        let m = format!(
                            "ferry: {}: output truncated to fit one datagram: {} of {} stdout bytes and {} of {} stderr bytes\n",
                            fan.slots[i].host.name,
                            r.stdout.len(),
                            r.stdout_total,
                            r.stderr.len(),
                            r.stderr_total
                        );
                        fan.out.stderr(m.as_bytes());
                    }
                    Outcome::Exited { code: r.code, signal: r.signal }
                }
                None => Outcome::Error("protocol error: a result whose counts do not match its body".into()),
            },
            (Op::Run { .. }, Reply::Error(e)) if e.code == ErrorCode::SpawnFailed => Outcome::SpawnFailed(e.message),
            (Op::Run { command, argv }, Reply::Error(e)) => Outcome::run_error(command.len() == 1 && !argv, &e),
            (_, Reply::Error(e)) => Outcome::server_error(&e),
            (_, _) => Outcome::Error(format!("protocol error: unexpected {:?} reply", reply.header.kind)),
        };
        self.finish(fan, i, outcome);
    }
}

/// Asks Linux to queue ICMP errors on the (unconnected, shared) socket,
/// with the address each failed datagram was sent to. Best effort.
fn recv_errors(s: &UdpSocket, v4: bool) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    let (level, name) = if v4 { (libc::IPPROTO_IP, libc::IP_RECVERR) } else { (libc::IPPROTO_IPV6, libc::IPV6_RECVERR) };
    // SAFETY: setsockopt with a valid fd and an int option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// One queued ICMP error of `fd`: where the datagram had been sent, and
/// the error (`ECONNREFUSED` for port unreachable). None when none is left.
fn next_icmp_error(fd: std::os::fd::RawFd) -> Option<(SocketAddr, i32)> {
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 512];
    let mut control = [0u64; 64];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: a zeroed msghdr pointed at live local buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg on our own socket into the buffers above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut errno = libc::ECONNREFUSED;
    // SAFETY: walking the control messages the kernel wrote into `msg`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_RECVERR) || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_RECVERR) {
                let ee = libc::CMSG_DATA(c).cast::<libc::sock_extended_err>().read_unaligned();
                errno = ee.ee_errno as i32;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let peer = match name.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for an AF_INET socket.
            let a = unsafe { *(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            SocketAddr::from((u32::from_be(a.sin_addr.s_addr).to_be_bytes(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { *(&name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            SocketAddr::from((a.sin6_addr.s6_addr, u16::from_be(a.sin6_port)))
        }
        _ => return next_icmp_error(fd),
    };
    Some((peer, errno))
}

/// A fresh request (a new nonce each time) to `peer`, first sent at `at`;
/// sealed with `keys` where the transport rule says TLS.
fn request(fan: &Fan, keys: &DatagramKeys, peer: SocketAddr, at: Instant) -> Result<Request, udp::UdpError> {
    let header = match fan.op {
        Op::Run { command, argv } => udp::exec_header(command, *argv),
        _ => udp::ping_header(),
    };
    let seal = fan.opts.transport.tls_for(&peer).then_some(keys);
    Request::new(fan.key, header, peer, fan.opts.timeout, at, seal)
}

/// Sends what `r` has due on `sock`; why the host is over, if it is.
fn send_due(r: &mut Request, sock: &UdpSocket, now: Instant) -> Option<String> {
    while r.due(now) {
        match r.on_send(sock.send_to(&r.bytes, r.peer)) {
            Ok(Sent::Ok) => {}
            Ok(Sent::Blocked) => break,
            Err(e) => return Some(format!("cannot send to {}: {}", r.peer, io_text(&e))),
        }
    }
    r.expired(now).then(|| r.no_reply(now).to_string())
}

impl Transport for Udp {
    /// Sends what is due and gives up on what is past its deadline.
    fn prepare(&mut self, fan: &mut Fan) -> Option<Duration> {
        let now = Instant::now();
        for i in 0..self.reqs.len() {
            let Udp { reqs, v4, v6, .. } = &mut *self;
            let Some(r) = reqs[i].as_mut() else { continue };
            let sock = if r.peer.is_ipv4() { v4.as_ref() } else { v6.as_ref() };
            if let Some(m) = send_due(r, sock.expect("bound for every family resolved"), now) {
                self.finish(fan, i, Outcome::Unreachable(m));
            }
        }
        let live = self.reqs.iter().flatten();
        let next = live.clone().map(Request::wake).min();
        let mut timeout = next.map(|d| d.saturating_duration_since(Instant::now()));
        if live.clone().any(|r| r.blocked) {
            timeout = Some(timeout.map_or(Duration::from_millis(5), |t| t.min(Duration::from_millis(5))));
        }
        timeout
    }

    fn on_event(&mut self, fan: &mut Fan, ev: &Event) {
        let key = fan.key;
        let secret = key.secret.as_bytes();
        loop {
            let sock = if ev.token() == UDP4 { self.v4.as_ref() } else { self.v6.as_ref() };
            let Some(sock) = sock else { return };
            let (n, from) = match sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.on_icmp_errors(fan, ev.token());
                    return;
                }
                Err(_) => {
                    self.on_icmp_errors(fan, ev.token());
                    continue;
                }
            };
            let bytes = &self.buf[..n];
            if sealed::classify(bytes) == Some(Kind::Sealed) {
                // No nonce in clear: the hosts at that address, each tried.
                let hit = self.reqs.iter().enumerate().find_map(|(i, r)| {
                    let r = r.as_ref().filter(|r| r.peer == from && r.sealed.is_some())?;
                    r.accept(key, Some(&self.keys), bytes).ok().map(|reply| (i, reply))
                });
                if let Some((i, reply)) = hit {
                    self.on_reply(fan, i, reply);
                }
                continue;
            }
            let Ok(reply) = datagram::decode_reply(secret, bytes) else { continue };
            let Some(nonce) = reply.header.str("nonce") else { continue };
            let Some(&i) = self.by_nonce.get(nonce) else { continue };
            // A tagged reply never answers a request that was sealed.
            if self.reqs[i].as_ref().is_some_and(|r| r.nonce == nonce && r.sealed.is_none()) {
                self.on_reply(fan, i, reply);
            }
        }
    }

    fn on_signal(&mut self, fan: &mut Fan, _sig: i32) {
        fan.interrupted += 1;
        for i in 0..self.reqs.len() {
            if self.reqs[i].is_some() {
                self.finish(fan, i, Outcome::Cancelled);
            }
        }
    }

    fn sweep(&mut self, _fan: &mut Fan) {}
}
