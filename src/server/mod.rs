//! The daemon: one thread, one `mio::Poll`, connections in a `Slab`.
//!
//! `Server` owns the poll, the listeners, the connections, the signal source,
//! the spawner, the count of running children and the children left behind
//! by closed connections. A child's exit is an event of its own (its pidfd,
//! under its connection's or datagram slot's `Role::Child` token, or
//! `token::ORPHANS`); on a kernel without pidfds, SIGCHLD reaps them all. It knows nothing of frames: each event is recorded on the
//! connection that owns the token and the connection is pumped (`conn`).
//!
//! The loop (`run`): sleep until an event or the nearest deadline, dispatch
//! the events, then sweep: pump connections that ran out of budget, fire
//! expired deadlines, hand free child slots to waiting execs, remove closed
//! connections, and move the shutdown along. Datagram mode (`udp`) lives in
//! the same loop: its sockets and its execs' pipes are one more event source.
//!
//! What lives here, from the bottom up (each imports only what is above it
//! in this list, plus `proto`, `config`, `paths`, `sys` and `tls`):
//! - `buf`: the output buffer; `io`: the `Socket` trait and the error-kind
//!   predicates; `token`: reserved tokens and the token ↔ source mapping;
//!   `spawn`: starting a child (pidfd, pipes, the prepared environment);
//!   `transport`: a connection's stream in clear or under TLS (rustls), one
//!   `Socket` (imports `io` and `crate::tls`).
//! - `ops`: where a request becomes work, for both transports: policy, child
//!   slots, the access line, and one module per operation.
//! - `conn`: a TCP connection's phases, buffers and flow control; `udp`: the
//!   datagram loop and its replay protection.
//! - `testing`: an in-memory socket and a stand-in reactor for unit tests
//!   and the fuzz targets.
//! - this file: `Server`, the loop and the sweep, `bind` for the listeners.

mod buf;
pub mod conn;
pub mod io;
pub mod transport;
pub mod ops;
#[doc(hidden)]
pub mod testing;
pub mod spawn;
pub mod token;
pub mod udp;

pub use crate::config::{Config, UdpConfig};
use crate::proto::msg;
use crate::proto::{encode_frame, ErrorCode, ProtoError};
use conn::{Conn, Step};
use io::{interrupted, would_block};
use log::{error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll};
use ops::exec::{kill_group, KILL_GRACE, OUTPUT_GRACE};
use ops::Ctx;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use spawn::{Child, Spawner};
use std::time::{Duration, Instant};
use token::{Role, Source};
use transport::Transport;
use crate::tls::ServerTls;

/// Connections the kernel may queue before ferryd accepts them.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds every listen address. Errors name the address.
pub fn bind(cfg: &Config) -> Result<Vec<TcpListener>, String> {
    if cfg.listen.len() > token::MAX_LISTENERS {
        return Err(format!("at most {} listen addresses", token::MAX_LISTENERS));
    }
    let mut out = Vec::new();
    for addr in &cfg.listen {
        // mio binds with SO_REUSEADDR and the standard library's backlog of
        // 128: a burst of connects would overflow it and wait out a 1 s SYN
        // retransmit. Listening again only raises the backlog (the kernel
        // caps it at net.core.somaxconn).
        let l = TcpListener::bind(*addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        // SAFETY: listen(2) on a socket we own; no memory is shared.
        if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&l), LISTEN_BACKLOG) } != 0 {
            return Err(format!("cannot listen on {addr}: {}", std::io::Error::last_os_error()));
        }
        out.push(l);
    }
    Ok(out)
}

/// How often accept is retried after it failed for want of fds or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Where the shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    No,
    /// TERM received: requests in flight may finish until then.
    Draining(Instant),
    /// The drain timeout passed and children got TERM: KILL at that instant.
    Killing(Instant),
    /// Children got KILL: their `exit` frames (signal KILL) go out, and the
    /// connections close, until then at most.
    Flushing(Instant),
    Done,
}

/// Tells systemd (with `Type=notify`) where the daemon stands; nothing
/// without `NOTIFY_SOCKET`.
pub fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        warn!("sd_notify: {e}");
    }
}

/// A child whose connection is gone, waiting to be reaped.
struct Orphan {
    child: Child,
    /// When it gets KILL if it is still there.
    kill_at: Option<Instant>,
}

/// Reads the configuration again (for HUP): a new `Config`, or why not.
pub type Reload = Box<dyn FnMut() -> Result<Config, String>>;

pub struct Server {
    poll: Poll,
    cfg: Config,
    reload: Option<Reload>,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn<Transport<TcpStream>>>,
    /// Every key's TLS identities, derived again on reload.
    tls: ServerTls,
    signals: Signals,
    spawner: Spawner,
    children: usize,
    waiters: VecDeque<usize>,
    orphans: Vec<Orphan>,
    /// Connections that ran out of budget with work left.
    pending: Vec<usize>,
    /// Connections to remove after the event batch.
    closed: Vec<usize>,
    /// No deadline of any connection or orphan is earlier than this.
    next_deadline: Option<Instant>,
    scratch: Vec<u8>,
    shutdown: Shutdown,
    /// Connections accepted so far, for log names.
    serial: u64,
    /// Accept failed for want of fds or memory: try again then (the
    /// listener is edge-triggered, so the backlog raises no new event).
    accept_retry: Option<Instant>,
    udp: udp::Udp,
}

/// The context a connection works in, from the server's fields (a macro so
/// the borrow checker sees each field borrowed separately).
macro_rules! ctx {
    ($s:expr, $now:expr) => {
        Ctx {
            registry: $s.poll.registry(),
            cfg: &$s.cfg,
            tls: &$s.tls,
            now: $now,
            children: &mut $s.children,
            waiters: &mut $s.waiters,
            scratch: &mut $s.scratch,
            spawner: &$s.spawner,
            upload_used: 0,
        }
    };
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Server {
    /// Sets up the poll and registers the listeners and signals.
    pub fn new(cfg: Config, mut listeners: Vec<TcpListener>, reload: Option<Reload>) -> std::io::Result<Server> {
        let poll = Poll::new()?;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, token::listener(i), Interest::READABLE)?;
        }
        // SIGXFSZ is caught (and ignored) so that a write over RLIMIT_FSIZE
        // fails with EFBIG instead of killing the daemon; children get the
        // default action back at exec, as for every caught signal.
        // With pidfds each child's exit is an event of its own: no SIGCHLD
        // (its handler, a socketpair write and a scan of every connection).
        let pidfd = spawn::pidfds_available();
        let mut signals = if pidfd {
            Signals::new([SIGTERM, SIGINT, SIGHUP, SIGXFSZ])?
        } else {
            info!("no pidfds: children are reaped on SIGCHLD");
            Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGXFSZ])?
        };
        poll.registry().register(&mut signals, token::SIGNALS, Interest::READABLE)?;
        let spawner = Spawner::new(cfg.exec_env_clear, pidfd)?;
        Ok(Server {
            poll,
            tls: ServerTls::new(&cfg.keys),
            cfg,
            reload,
            listeners,
            conns: Slab::new(),
            signals,
            spawner,
            children: 0,
            waiters: VecDeque::new(),
            orphans: Vec::new(),
            pending: Vec::new(),
            closed: Vec::new(),
            next_deadline: None,
            scratch: vec![0; 64 * 1024],
            shutdown: Shutdown::No,
            serial: 0,
            accept_retry: None,
            udp: udp::Udp::new(),
        })
    }

    /// Adds the UDP sockets `udp::bind` made.
    pub fn with_udp(mut self, sockets: Vec<mio::net::UdpSocket>) -> std::io::Result<Server> {
        self.udp.add_sockets(self.poll.registry(), sockets)?;
        Ok(self)
    }

    /// The UDP addresses actually bound.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.local_addrs()
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// Runs until a TERM or INT has been handled. Errors only when the poll itself fails.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while self.shutdown != Shutdown::Done {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                match token::parse(ev.token()) {
                    Source::Signals => self.on_signals(now),
                    Source::Orphans => self.reap_orphans(),
                    Source::Listener(i) => self.accept(i, now),
                    src @ (Source::Udp(_) | Source::UdpExec(..)) => self.on_udp(Some(src), now),
                    Source::Conn(key, role) => {
                        let Some(c) = self.conns.get_mut(key) else { continue };
                        match role {
                            Role::Child => {
                                c.reap(&mut ctx!(self, now));
                            }
                            Role::Socket => {
                                if ev.is_read_closed() || ev.is_error() {
                                    c.on_socket_hup();
                                }
                                c.on_socket_event(
                                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                                    ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                                )
                            }
                            pipe => c.on_pipe_event(pipe),
                        }
                        self.pump(key, now);
                    }
                }
            }
            self.sweep(now);
        }
        self.finish();
        Ok(())
    }

    /// How long the poll may sleep: not at all with work pending, else until
    /// the nearest deadline.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.pending.is_empty() || self.udp.has_backlog() {
            return Some(Duration::ZERO);
        }
        let shutdown = match self.shutdown {
            Shutdown::Draining(t) | Shutdown::Killing(t) | Shutdown::Flushing(t) => Some(t),
            _ => None,
        };
        earliest(earliest(self.next_deadline, shutdown), self.accept_retry).map(|d| d.saturating_duration_since(now))
    }

    fn pump(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let mut ctx = ctx!(self, now);
        let step = conn.pump(&mut ctx);
        self.next_deadline = earliest(self.next_deadline, conn.deadline(&self.cfg));
        if let Some(child) = conn.take_orphan() {
            let kill_at = now + KILL_GRACE;
            if let Some(fd) = child.pidfd() {
                let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
                let mut src = mio::unix::SourceFd(&fd);
                // Registered under its connection's token since the spawn;
                // that key may serve another connection now.
                if let Err(e) = self.poll.registry().reregister(&mut src, token::ORPHANS, Interest::READABLE) {
                    // Reaped at its kill deadline instead.
                    warn!("cannot watch an orphaned child: {e}");
                }
            }
            self.orphans.push(Orphan { child, kill_at: Some(kill_at) });
            self.next_deadline = earliest(self.next_deadline, Some(kill_at));
        }
        match step {
            Step::Idle => {}
            Step::Yield => self.pending.push(key),
            Step::Close => self.closed.push(key),
        }
    }

    /// A UDP event (`None`: the backlog of the last turn).
    fn on_udp(&mut self, src: Option<Source>, now: Instant) {
        let mut ctx = ctx!(self, now);
        match src {
            Some(src) => self.udp.on_event(src, &mut ctx),
            None => self.udp.sweep(&mut ctx),
        }
        self.next_deadline = earliest(self.next_deadline, self.udp.deadline());
    }

    fn accept(&mut self, i: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(i) else { return };
            let (mut sock, peer) = match listener.accept() {
                Ok(s) => s,
                Err(e) if would_block(&e) => {
                    if self.accept_retry.take().is_some() {
                        info!("accept: accepting again");
                    }
                    return;
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS...: the connection waits in the
                    // backlog; try again shortly, without spinning.
                    if self.accept_retry.is_none() {
                        warn!("accept: {e}; retrying every {}ms", ACCEPT_RETRY.as_millis());
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            if self.accept_retry.take().is_some() {
                info!("accept: accepting again");
            }
            self.serial += 1;
            let name = format!("#{} {}", self.serial, peer);
            if self.conns.len() >= self.cfg.max_connections || self.conns.vacant_key() > token::MAX_CONN_KEY {
                warn!("{name}: refused: {} connections already", self.conns.len());
                let err = ProtoError::new(ErrorCode::TooManyConnections, "too many connections, try again later");
                let mut frame = Vec::new();
                encode_frame(&mut frame, msg::error(&err, None), &[]);
                // Best effort: a fresh socket's send buffer takes one small frame.
                let _ = sock.write(&frame);
                continue;
            }
            let _ = sock.set_nodelay(true);
            let key = self.conns.vacant_key();
            if let Err(e) = self.poll.registry().register(
                &mut sock,
                token::conn(key, Role::Socket),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                warn!("{name}: cannot register: {e}");
                continue;
            }
            info!("{name}: accepted");
            let plain = self.cfg.plaintext_allowed(peer.ip());
            let conn = Conn::new(Transport::Plain(sock), key, name, plain, &mut ctx!(self, now));
            self.conns.insert(conn);
            self.pump(key, now);
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let signals: Vec<i32> = self.signals.pending().collect();
        for sig in signals {
            match sig {
                SIGCHLD => self.reap(now),
                SIGTERM | SIGINT => self.on_stop(sig, now),
                SIGHUP => self.on_reload(),
                _ => {}
            }
        }
    }

    /// Reaps every child that has exited (SIGCHLD says "at least one").
    fn reap(&mut self, now: Instant) {
        let running: Vec<usize> =
            self.conns.iter().filter(|(_, c)| c.child_pid().is_some()).map(|(k, _)| k).collect();
        for key in running {
            let conn = &mut self.conns[key];
            if conn.reap(&mut ctx!(self, now)) {
                self.pump(key, now);
            }
        }
        self.udp.reap(&mut ctx!(self, now));
        self.reap_orphans();
    }

    /// Reaps the orphans that have exited (their pidfds share one token).
    fn reap_orphans(&mut self) {
        let before = self.orphans.len();
        self.orphans.retain_mut(|o| !matches!(o.child.try_wait(), Ok(Some(_)) | Err(_)));
        self.children -= before - self.orphans.len();
    }

    /// HUP: read the configuration again and apply it to new requests and
    /// connections; no connection is dropped. A bad one keeps the old.
    fn on_reload(&mut self) {
        crate::logger::reopen();
        let Some(reload) = self.reload.as_mut() else {
            info!("HUP: no configuration to reload");
            return;
        };
        notify(&[sd_notify::NotifyState::Reloading]);
        match reload() {
            Ok(mut new) => {
                if new.listen != self.cfg.listen || new.udp.listen != self.cfg.udp.listen {
                    warn!("HUP: listen addresses changed; they take effect on a restart");
                    new.listen = self.cfg.listen.clone();
                    new.udp.listen = self.cfg.udp.listen.clone();
                }
                crate::logger::set_level(new.log_level);
                // New keys get identities; open sessions keep the config they began with.
                self.tls = self.tls.reload(&new.keys);
                info!(
                    "HUP: configuration reloaded: {} key(s), {}, {}",
                    new.keys.keys.len(),
                    new.exec_summary(),
                    if new.read_only { "read-only" } else { "read-write" }
                );
                self.cfg = new;
                // Children of the new configuration start from the
                // environment prepared for it.
                self.spawner.set_env_clear(self.cfg.exec_env_clear);
                // Deadlines follow the new timeouts from each connection's
                // last activity: those already past them fire now.
                self.next_deadline = Some(Instant::now());
            }
            Err(e) => error!("HUP: {e}; keeping the running configuration"),
        }
        notify(&[sd_notify::NotifyState::Ready]);
    }

    fn on_stop(&mut self, sig: i32, now: Instant) {
        let name = if sig == SIGINT { "INT" } else { "TERM" };
        if self.shutdown != Shutdown::No {
            info!("second {name}: stopping now");
            self.shutdown = Shutdown::Done;
            return;
        }
        info!(
            "{name}: stopped accepting; draining {} connections for up to {}s",
            self.conns.len(),
            self.cfg.drain_timeout.as_secs()
        );
        notify(&[sd_notify::NotifyState::Stopping]);
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shutdown = Shutdown::Draining(now + self.cfg.drain_timeout);
        self.udp.drain();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.conns[key].drain();
            self.pump(key, now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.pending) {
            self.pump(key, now);
        }
        if self.udp.has_backlog() {
            self.on_udp(None, now);
        }
        if self.next_deadline.is_some_and(|d| d <= now) {
            self.fire_deadlines(now);
        }
        if self.accept_retry.is_some_and(|t| t <= now) {
            // Still set if this round fails too (warned once); cleared once
            // the backlog is empty or a connection is accepted.
            self.accept_retry = (!self.listeners.is_empty()).then_some(now + ACCEPT_RETRY);
            for i in 0..self.listeners.len() {
                self.accept(i, now);
            }
        }
        while self.children < self.cfg.max_children {
            let Some(key) = self.waiters.pop_front() else { break };
            if self.conns.get(key).is_some_and(|c| c.is_queued()) {
                self.pump(key, now);
            }
        }
        for key in std::mem::take(&mut self.closed) {
            if self.conns.get(key).is_some_and(|c| c.is_closed()) {
                let mut conn = self.conns.remove(key);
                if let Some(s) = conn.socket_mut().stream_mut() {
                    let _ = self.poll.registry().deregister(s);
                }
                info!("{}: closed: {}", conn.name(), conn.reason());
            }
        }
        match self.shutdown {
            Shutdown::Draining(_) | Shutdown::Killing(_) | Shutdown::Flushing(_)
                if self.conns.is_empty() && self.udp.running() == 0 =>
            {
                self.shutdown = Shutdown::Done
            }
            Shutdown::Draining(until) if now >= until => {
                let busy = self.conns.iter().filter(|(_, c)| c.child_pid().is_some()).count() + self.udp.running();
                warn!("drain timeout: TERM to {busy} running commands, KILL in {}s", KILL_GRACE.as_secs());
                for (_, c) in self.conns.iter_mut() {
                    c.term_child();
                }
                self.udp.term_children();
                self.shutdown = Shutdown::Killing(now + KILL_GRACE);
            }
            Shutdown::Killing(until) if now >= until => {
                let busy = self.conns.iter().filter(|(_, c)| c.child_pid().is_some()).count() + self.udp.running();
                warn!("drain timeout: KILL to {busy} running commands");
                for (_, c) in self.conns.iter_mut() {
                    c.kill_child();
                }
                self.udp.kill_children();
                // Reaped, the rest of their output read (OUTPUT_GRACE at most), `exit` sent.
                self.shutdown = Shutdown::Flushing(now + OUTPUT_GRACE + KILL_GRACE);
            }
            Shutdown::Flushing(until) if now >= until => self.shutdown = Shutdown::Done,
            _ => {}
        }
    }

    /// Fires every expired deadline, then finds the next one.
    fn fire_deadlines(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline(&self.cfg).is_some_and(|d| d <= now))
            .map(|(k, _)| k)
            .collect();
        for key in expired {
            self.conns[key].on_deadline(&mut ctx!(self, now));
            self.pump(key, now);
        }
        self.udp.on_deadline(&mut ctx!(self, now));
        for o in &mut self.orphans {
            if o.kill_at.is_some_and(|t| t <= now) {
                kill_group(o.child.id() as i32, libc::SIGKILL);
                o.kill_at = None;
            }
        }
        let conns = self.conns.iter().filter_map(|(_, c)| c.deadline(&self.cfg));
        let orphans = self.orphans.iter().filter_map(|o| o.kill_at);
        self.next_deadline = earliest(conns.chain(orphans).min(), self.udp.deadline());
    }

    /// Last act: no child outlives the daemon.
    fn finish(&mut self) {
        let now = Instant::now();
        for (_, c) in self.conns.iter_mut() {
            c.kill_and_reap_child();
            // Every connection gets its access and closed lines, even these.
            c.close_at_exit(now);
            info!("{}: closed: {}", c.name(), c.reason());
        }
        for o in &mut self.orphans {
            kill_group(o.child.id() as i32, libc::SIGKILL);
            let _ = o.child.wait();
        }
        self.udp.kill_and_reap();
        // Dropping the connections removes the temporary files of unfinished puts.
        self.conns.clear();
        info!("exiting");
    }
}
