//! The request side of a connection: frames decoded while the phase and the
//! output's high-water mark allow, the handshake, requests handed to
//! `ops::start` and the op in flight driven, replies and errors queued, and
//! one access line per request.

use super::{Conn, Phase, Sink, HIGH_WATER};
use crate::server::io::Socket;
use crate::server::ops::access::Access;
use crate::server::ops::{self, Ctx, FrameUse, Op, Output, Progress, Reply, Start, Via};
use crate::proto::auth;
use crate::proto::lean;
use crate::proto::msg::{self, Request};
use crate::proto::{encode_frame, ErrorCode, Header, Item, ProtoError};
use log::{debug, info, warn};
use serde_json::{Map, Value};

impl<S: Socket> Conn<S> {
    /// True when the next frame may be handled now.
    pub(super) fn may_parse(&self) -> bool {
        if self.out.len() >= HIGH_WATER {
            return false;
        }
        match &self.phase {
            Phase::AwaitAuth { .. } | Phase::Ready => true,
            Phase::Running(op) => self.held.is_none() && op.takes_frames(),
            Phase::Sniff { .. }
            | Phase::Handshake { .. }
            | Phase::Queued { .. }
            | Phase::Closing { .. }
            | Phase::Closed => false,
        }
    }

    /// Decodes and handles frames while the phase allows. Returns a count of
    /// things done (bytes consumed, plus one for a held request taken up).
    pub(super) fn parse(&mut self, ctx: &mut Ctx) -> usize {
        let mut used = 0;
        let mut done = 0;
        while self.may_parse() {
            if let Some(h) = self.held.take().map(|h| *h) {
                self.on_header(h, ctx);
                done += 1;
                continue;
            }
            // A plain ping or exec between requests is read without a map;
            // the decoder takes anything the scan is not sure of (and errors).
            if matches!(self.phase, Phase::Ready) && !self.draining && self.decoder.at_boundary() {
                if let Ok(Some((req, n))) = lean::request(&self.inbuf[used..]) {
                    if n - 4 <= self.decoder.max_header() {
                        // Owned before the input is let go: the id as a value.
                        let (id, exec) = match req {
                            lean::Lean::Ping(id) => (id.map(lean::Id::value), None),
                            lean::Lean::Exec(id, e) => (id.map(lean::Id::value), Some(e)),
                        };
                        used += n;
                        match exec {
                            None => self.on_ping(id),
                            Some(e) => self.on_exec(id, e, ctx),
                        }
                        continue;
                    }
                }
            }
            match self.decoder.decode(&self.inbuf[used..]) {
                Ok(None) => break,
                Ok(Some((Item::Header(h), n))) => {
                    used += n;
                    self.on_header(h, ctx);
                }
                Ok(Some((Item::Body { range, last }, n))) => {
                    let chunk = &self.inbuf[used + range.start..used + range.end];
                    let mut failed = None;
                    let mut ended = false;
                    if let (Sink::Op { ends_op }, Phase::Running(op)) = (self.sink, &mut self.phase) {
                        if let Some(a) = &mut self.access {
                            a.bytes_in += chunk.len() as u64;
                        }
                        failed = op.on_body(chunk).map(|err| (err, op.id().cloned()));
                        ended = last && ends_op;
                    }
                    used += n;
                    if let Some((err, id)) = failed {
                        self.fail(err, id);
                    }
                    if ended {
                        self.end_body();
                    }
                }
                Err(e) => {
                    used = self.inbuf.len();
                    self.fail(ProtoError::new(e.code(), e.to_string()), None);
                    break;
                }
            }
        }
        self.inbuf.drain(..used);
        // Idle connections give big buffers back; an upload keeps its buffer
        // so the body moves without an allocation per chunk.
        if self.inbuf.is_empty() && self.inbuf.capacity() > 16 * 1024 && !matches!(self.phase, Phase::Running(Op::Put(_))) {
            self.inbuf = Vec::new();
        }
        used + done
    }

    pub(super) fn on_header(&mut self, h: Header, ctx: &mut Ctx) {
        self.sink = Sink::Discard;
        match &mut self.phase {
            Phase::AwaitAuth { .. } => self.on_auth(h, ctx),
            Phase::Ready => self.on_request(h, ctx),
            Phase::Running(op) => match op.on_frame(&h) {
                FrameUse::Body => self.sink = Sink::Op { ends_op: false },
                FrameUse::End => self.end_body(),
                FrameUse::Used => debug!("{}: {:?} frame to pid {:?}", self.name, h.kind, op.pid()),
                FrameUse::Answer(err) => self.send_error(err, h.id),
                FrameUse::Interrupt(err) => {
                    let id = op.id().cloned();
                    self.phase = Phase::Ready;
                    self.fail(err, id);
                    self.end_access("ok");
                    self.on_header(h, ctx);
                }
                FrameUse::Hold => self.held = Some(Box::new(h)),
            },
            // Anything else waits until the request in flight is done.
            _ => self.held = Some(Box::new(h)),
        }
    }

    pub(super) fn on_auth(&mut self, h: Header, ctx: &mut Ctx) {
        let Phase::AwaitAuth { nonce, .. } = &self.phase else { return };
        let req = match Request::from_header(&h) {
            Ok(Request::Auth(a)) => a,
            _ if h.kind == "auth" => {
                warn!("{}: auth failed: malformed auth frame", self.name);
                return self.fail(ProtoError::new(ErrorCode::AuthFailed, "authentication failed"), h.id);
            }
            _ => {
                let err = ProtoError::new(ErrorCode::AuthRequired, format!("authenticate before {:?}", h.kind));
                return self.fail(err, h.id);
            }
        };
        // An unknown key id is checked against a throwaway key, so it takes the
        // same path, the same time and gets the same reply as a wrong MAC.
        let key = ctx.cfg.keys.get(&req.key_id);
        let secret = key.map_or(&ctx.cfg.decoy_key[..], |k| k.secret.as_bytes());
        let mac_ok = auth::verify_client_mac(secret, nonce, &req.nonce, &req.mac);
        // Over TLS, the key named must be the one the handshake proved.
        let same_key = self.tls_key.as_deref().map_or(true, |k| k == req.key_id);
        if mac_ok && same_key && key.is_some() && auth::is_nonce_hex(&req.nonce) {
            let mac = auth::server_mac(secret, &req.nonce, nonce);
            self.queue(msg::welcome(&mac, h.id.as_ref()), &[]);
            let over = if self.tls_key.is_some() { " over TLS" } else { "" };
            info!("{}: authenticated as {}{over}", self.name, req.key_id);
            self.key_id = Some(req.key_id);
            self.phase = Phase::Ready;
            self.last_active = self.now;
        } else {
            match &self.tls_key {
                Some(k) if **k != *req.key_id => {
                    warn!("{}: auth failed: key id {:?} is not the TLS key {k}", self.name, req.key_id)
                }
                _ => warn!("{}: auth failed for key id {:?}", self.name, req.key_id),
            }
            self.fail(ProtoError::new(ErrorCode::AuthFailed, "authentication failed"), h.id);
        }
    }

    /// A ping the scan recognised: what `on_request` does for one, without
    /// a `Header` (its access line is debug, as for every ping).
    fn on_ping(&mut self, id: Option<Value>) {
        self.access = Some(Access::ping(self.now));
        msg::encode_pong(self.out.tail(), id.as_ref());
        self.end_access("ok");
    }

    /// An exec the scan recognised: `on_request` with its header, whose
    /// `fields` stay empty (they are read only to describe a refused exec,
    /// and the scan takes no exec it would refuse).
    fn on_exec(&mut self, id: Option<Value>, e: msg::Exec, ctx: &mut Ctx) {
        let h = Header { kind: "exec".into(), size: 0, id, fields: Map::new() };
        self.on_request_read(h, Ok(Request::Exec(e)), ctx);
    }

    pub(super) fn on_request(&mut self, h: Header, ctx: &mut Ctx) {
        let req = Request::from_header(&h);
        self.on_request_read(h, req, ctx);
    }

    /// A request read from its header `h`.
    fn on_request_read(&mut self, h: Header, req: Result<Request, ProtoError>, ctx: &mut Ctx) {
        let id = h.id.clone();
        match req {
            Ok(Request::Bye) => return self.begin_close("bye"),
            // Late stdin, signal or resize for a command that has already ended: the
            // race is normal (a command may exit while its input is in flight).
            Ok(Request::Stdin | Request::Signal(_) | Request::Resize(_)) => return,
            _ => {}
        }
        self.access = Some(Access::new(&h, &req, self.now));
        if self.draining {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), id);
        } else {
            self.serve(&h, req, id, ctx);
        }
        // A request answered at once ends here; one in flight ends in `op_done`
        // (or when the connection goes).
        if !matches!(self.phase, Phase::Running(_) | Phase::Queued { .. }) {
            self.end_access("ok");
        }
    }

    pub(super) fn serve(&mut self, h: &Header, req: Result<Request, ProtoError>, id: Option<Value>, ctx: &mut Ctx) {
        ctx.upload_used = match &req {
            Ok(Request::Put(p)) => self.tally.admit(p, ctx.cfg.max_upload),
            _ => 0,
        };
        match ops::start(req, id.as_ref(), &h.kind, Via::Tcp { key: self.key }, ctx) {
            Err(e) => self.fail(e, id),
            Ok(Start::Nothing) => {}
            Ok(Start::Reply(Reply::Pong)) => msg::encode_pong(self.out.tail(), id.as_ref()),
            Ok(Start::Reply(Reply::Frame(header, body))) => {
                self.count_out(body.len());
                self.queue(header, &body)
            }
            Ok(Start::Queued(req)) => {
                debug!("{}: exec waits for a free child slot", self.name);
                self.phase = Phase::Queued { req, id };
            }
            Ok(Start::Running(op)) => {
                debug!("{}: {} started (pid {:?})", self.name, h.kind, op.pid());
                self.begin_op(op, h.size);
            }
            Ok(Start::Refused(op, e)) => {
                self.phase = Phase::Running(op);
                self.fail(e, id);
                self.begin_body(h.size);
            }
        }
    }

    pub(super) fn begin_op(&mut self, op: Op, size: u64) {
        self.phase = Phase::Running(op);
        self.begin_body(size);
    }

    /// A sized put's body is its own frame's: it ends now if it is empty.
    pub(super) fn begin_body(&mut self, size: u64) {
        if let Phase::Running(op) = &self.phase {
            if op.body_in_request() {
                if size == 0 {
                    self.end_body();
                } else {
                    self.sink = Sink::Op { ends_op: true };
                }
            }
        }
    }

    /// Spawns a queued exec once its slot is free.
    pub(super) fn resume(&mut self, req: &msg::Exec, id: Option<Value>, ctx: &mut Ctx) {
        match ops::resume(req, id.as_ref(), Via::Tcp { key: self.key }, ctx) {
            Ok(op) => {
                debug!("{}: exec started as pid {:?}", self.name, op.pid());
                self.phase = Phase::Running(op);
            }
            Err(err) => {
                self.phase = Phase::Ready;
                self.fail(err, id);
                self.end_access("ok");
            }
        }
    }

    /// Advances the request in flight. Returns a count of things done.
    pub(super) fn run_op(&mut self, ctx: &mut Ctx, budget: usize) -> usize {
        match &mut self.phase {
            Phase::Queued { .. } if *ctx.children < ctx.cfg.max_children => {
                let Phase::Queued { req, id } = std::mem::replace(&mut self.phase, Phase::Ready) else {
                    unreachable!()
                };
                self.resume(&req, id, ctx);
                1
            }
            Phase::Running(op) => {
                let progress = op.pump(Output {
                    sock: &mut self.sock,
                    writable: &mut self.sock_write,
                    out: &mut self.out,
                    high_water: HIGH_WATER,
                    budget,
                    scratch: ctx.scratch,
                });
                if let Some(a) = &mut self.access {
                    a.bytes_out = op.bytes_out();
                }
                match progress {
                    Ok(Progress::Moved(n)) => n,
                    Ok(Progress::Done) => {
                        if let Some(a) = self.access.as_mut().filter(|a| a.will_log()) {
                            if let Some(r) = op.result() {
                                a.set_result(|| r);
                            }
                        }
                        self.op_done();
                        1
                    }
                    // The frame's size is promised: a body that cannot be
                    // completed leaves nothing to do but close.
                    Ok(Progress::Short) => {
                        warn!("{}: get: the file shrank while it was sent", self.name);
                        self.close_now("file shrank during get");
                        1
                    }
                    Err(e) => {
                        warn!("{}: get: {e}", self.name);
                        self.close_now(&format!("get failed: {e}"));
                        1
                    }
                }
            }
            _ => 0,
        }
    }

    /// A request in flight has been answered in full: back to `Ready`.
    pub(super) fn op_done(&mut self) {
        self.phase = Phase::Ready;
        self.last_active = self.now;
        self.end_access("ok");
        if self.draining {
            self.fail(ProtoError::new(ErrorCode::ShuttingDown, "the server is shutting down"), None);
        }
    }

    /// The op in flight has its whole body (a put): it answers, and is done.
    pub(super) fn end_body(&mut self) {
        if let Phase::Running(op) = &mut self.phase {
            if op.body_ended() {
                // A put's trailer is still to come.
                self.sink = Sink::Discard;
                return;
            }
        }
        let Phase::Running(op) = std::mem::replace(&mut self.phase, Phase::Ready) else { return };
        let id = op.id().cloned();
        if let Err(e) = op.end_body(&mut self.out) {
            self.fail(e, id);
        }
        self.op_done();
    }

    /// The peer shut down its side: the session is over. Replies already
    /// produced are flushed; a command in flight is terminated (as sshd does
    /// when its client goes). Stdin EOF has its own frame, so no client needs
    /// a half-close to finish a request.
    pub(super) fn on_peer_eof(&mut self) -> usize {
        if !self.peer_eof {
            return 0;
        }
        match &self.phase {
            Phase::Closing { shut: true, .. } => {
                self.close_now("done");
                1
            }
            Phase::Closing { .. } | Phase::Closed => 0,
            Phase::Running(_) | Phase::Queued { .. } => {
                self.begin_close("peer closed during a command");
                1
            }
            Phase::Sniff { .. } | Phase::Handshake { .. } | Phase::AwaitAuth { .. } | Phase::Ready => {
                if self.inbuf.is_empty() {
                    self.begin_close("peer closed");
                } else {
                    self.begin_close("peer closed in the middle of a frame");
                }
                1
            }
        }
    }

    // ---- replies and closing --------------------------------------------

    pub(super) fn queue(&mut self, header: Map<String, Value>, body: &[u8]) {
        encode_frame(self.out.tail(), header, body);
    }

    /// Answers the request in flight with an error (its access result); a
    /// fatal code also closes the connection.
    pub(super) fn fail(&mut self, err: ProtoError, id: Option<Value>) {
        if let Some(a) = &mut self.access {
            a.set_result(|| format!("error:{}", err.code.as_str()));
        }
        self.send_error(err, id);
    }

    /// Sends an error frame; a fatal code also closes the connection.
    pub(super) fn send_error(&mut self, err: ProtoError, id: Option<Value>) {
        self.queue(msg::error(&err, id.as_ref()), &[]);
        if err.code.is_fatal() {
            self.begin_close(err.to_string());
        } else {
            debug!("{}: error: {}", self.name, err);
        }
    }

    pub(super) fn count_out(&mut self, n: usize) {
        if let Some(a) = &mut self.access {
            a.bytes_out += n as u64;
        }
    }

    /// Writes the access line of the request in flight, if any; `result`
    /// unless one was recorded.
    pub(super) fn end_access(&mut self, result: &str) {
        if let Some(a) = self.access.take() {
            a.log(&self.name, self.key_id.as_deref(), self.now, result);
        }
    }
}
