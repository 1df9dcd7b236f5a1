//! The access line, one per request served, for TCP (`conn`) and UDP (`udp`)
//! alike: the request's kind and detail, quoted so nothing in a command or a
//! path can forge a line, the key id, the byte counts, the duration and the
//! result. The transport says who asked (`#12 PEER` or `udp PEER`).

use crate::proto::frame::Header;
use crate::proto::msg::{self, Request};
use crate::proto::ProtoError;
use std::fmt::{Display, Write as _};
use std::time::Instant;

/// The request in flight, for its one access line.
pub struct Access {
    kind: &'static str,
    /// ` argv=[...]`, ` cmd="..."`, ` path="..."`, ` type="..."` or empty.
    detail: String,
    start: Instant,
    /// Request body bytes (stdin, the upload) and reply body bytes (output,
    /// the file, the listing).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Set by the first error reply, or by the exec's exit.
    result: Option<String>,
}

impl Access {
    pub fn new(h: &Header, req: &Result<Request, ProtoError>, now: Instant) -> Access {
        // Access lines are info (pings: debug): no detail to quote when
        // they are not written.
        let (kind, detail) = if log::log_enabled!(log::Level::Info) {
            describe(h, req)
        } else {
            (kind_of(h), String::new())
        };
        Access { kind, detail, start: now, bytes_in: 0, bytes_out: 0, result: None }
    }

    /// A `ping`'s (no detail).
    pub fn ping(now: Instant) -> Access {
        Access { kind: "ping", detail: String::new(), start: now, bytes_in: 0, bytes_out: 0, result: None }
    }

    /// Records the request's outcome unless one is already known.
    pub fn set_result(&mut self, result: impl FnOnce() -> String) {
        self.result.get_or_insert_with(result);
    }

    /// The line for a request from `who`, authenticated as `key`; `default_result`
    /// unless one was recorded.
    pub fn line(&self, who: impl Display, key: Option<&str>, now: Instant, default_result: &str) -> String {
        let mut l = format!("access: {who} key=");
        push_key(&mut l, key);
        let dur = now.saturating_duration_since(self.start).as_secs_f64();
        let result = self.result.as_deref().unwrap_or(default_result);
        let _ = write!(
            l,
            " {}{} in={} out={} dur={dur:.3}s result={result}",
            self.kind, self.detail, self.bytes_in, self.bytes_out
        );
        l
    }

    /// Logs the line. Pings are liveness probes, often sent by the thousand:
    /// their lines are debug, so an info log shows the work that was done.
    pub fn log(&self, who: impl Display, key: Option<&str>, now: Instant, default_result: &str) {
        let level = self.level();
        if log::log_enabled!(level) {
            log::log!(level, "{}", self.line(who, key, now, default_result));
        }
    }

    fn level(&self) -> log::Level {
        if self.kind == "ping" {
            log::Level::Debug
        } else {
            log::Level::Info
        }
    }

    /// True when the line will be written at this log level (so its result
    /// is worth spelling out).
    pub fn will_log(&self) -> bool {
        log::log_enabled!(self.level())
    }

    #[cfg(test)]
    pub fn detail(&self) -> (&'static str, &str) {
        (self.kind, &self.detail)
    }
}

/// Details longer than this (quoted) are cut: a log line stays a log line.
pub const MAX_DETAIL: usize = 1024;

/// The request's kind and its detail: ` argv=[...]`, ` cmd="..."`,
/// ` path="..."`, ` type="..."` or empty.
/// The request's kind as the access line names it (`unknown` for a type
/// this server does not serve).
fn kind_of(h: &Header) -> &'static str {
    match h.kind.as_str() {
        "ping" => "ping",
        "exec" => "exec",
        "get" => "get",
        "put" => "put",
        "list" => "list",
        "mkdir" => "mkdir",
        "symlink" => "symlink",
        "stat" => "stat",
        "auth" => "auth",
        "data" => "data",
        _ => "unknown",
    }
}

/// ` argv=["a","b"]`, cut once past `MAX_DETAIL`.
fn argv_into<'a>(detail: &mut String, argv: impl Iterator<Item = &'a str>) {
    detail.push_str(" argv=[");
    for (i, a) in argv.enumerate() {
        if i > 0 {
            detail.push(',');
        }
        quote_into(detail, a);
        if detail.len() > MAX_DETAIL {
            break;
        }
    }
    detail.push(']');
}

/// An exec refused as malformed: what it asked, from its raw fields (the
/// terminal and its `TERM`, the login shell, the command), so that the
/// line says what was refused, not a bare `exec`.
fn asked_exec(detail: &mut String, h: &Header) {
    use serde_json::Value;
    let raw = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(p) = h.fields.get("pty") {
        detail.push_str(" pty");
        match p.get("term") {
            Some(t) => {
                detail.push_str(" term=");
                quote_into(detail, &raw(t));
            }
            None => {
                detail.push('=');
                quote_into(detail, &p.to_string());
            }
        }
    }
    if h.fields.get("login").is_some_and(|v| v != &Value::Bool(false)) {
        detail.push_str(" login");
    }
    match h.fields.get("argv") {
        Some(Value::Array(argv)) => {
            let words: Vec<String> = argv.iter().map(raw).collect();
            argv_into(detail, words.iter().map(String::as_str));
        }
        Some(other) => {
            detail.push_str(" argv=");
            quote_into(detail, &other.to_string());
        }
        None => {}
    }
    if let Some(cmd) = h.fields.get("cmd") {
        detail.push_str(" cmd=");
        quote_into(detail, &raw(cmd));
    }
}

pub fn describe(h: &Header, req: &Result<Request, ProtoError>) -> (&'static str, String) {
    let mut detail = String::new();
    let kind = match kind_of(h) {
        "unknown" => {
            detail.push_str(" type=");
            quote_into(&mut detail, &h.kind);
            "unknown"
        }
        known => known,
    };
    if let Ok(Request::Exec(msg::Exec { pty: Some(_), .. })) = req {
        detail.push_str(" pty");
    }
    match req {
        Ok(Request::Exec(e)) => match &e.command {
            msg::Command::Argv(argv) => argv_into(&mut detail, argv.iter().map(String::as_str)),
            msg::Command::Shell(cmd) => {
                detail.push_str(" cmd=");
                quote_into(&mut detail, cmd);
            }
            msg::Command::Login => detail.push_str(" login"),
        },
        Err(_) if h.kind == "exec" => asked_exec(&mut detail, h),
        Ok(Request::Get(msg::Get { path, .. }) | Request::Put(msg::Put { path, .. }))
        | Ok(Request::List(msg::PathReq { path }) | Request::Stat(msg::PathReq { path }))
        | Ok(Request::ListTree(msg::PathReq { path })) => {
            detail.push_str(" path=");
            quote_into(&mut detail, path);
        }
        Ok(Request::Mkdir(crate::proto::tree::Mkdir { path, .. }) | Request::Symlink(crate::proto::tree::Symlink { path, .. })) => {
            detail.push_str(" path=");
            quote_into(&mut detail, path);
        }
        _ => {}
    }
    if detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push_str("...");
    }
    (kind, detail)
}

/// Appends ` key=K`'s value: bare when it is plain, quoted otherwise, `-` for none.
pub fn push_key(l: &mut String, key: Option<&str>) {
    match key {
        Some(k) if k.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\') => l.push_str(k),
        Some(k) => quote_into(l, k),
        None => l.push('-'),
    }
}

/// Appends `s` in double quotes, JSON-style: `"` and `\` escaped, control
/// characters (C0, DEL, C1) and line separators as `\n`, `\r`, `\t` or `\uXXXX`.
pub fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn describe_json(v: Value) -> (&'static str, String) {
        let Value::Object(mut fields) = v else { panic!() };
        let kind = fields.remove("type").and_then(|t| t.as_str().map(String::from)).unwrap();
        let h = Header { kind, size: 0, id: None, fields };
        let req = Request::from_header(&h);
        describe(&h, &req)
    }

    #[test]
    fn a_refused_exec_is_logged_with_what_it_asked() {
        assert_eq!(describe_json(json!({"type":"exec","pty":{"term":"a=b"}})), ("exec", r#" pty term="a=b""#.into()));
        assert_eq!(
            describe_json(json!({"type":"exec","argv":["vi","x"],"pty":{"term":"x y","rows":1}})),
            ("exec", r#" pty term="x y" argv=["vi","x"]"#.into())
        );
        assert_eq!(describe_json(json!({"type":"exec","pty":true})), ("exec", r#" pty="true""#.into()));
        assert_eq!(describe_json(json!({"type":"exec","login":true,"cmd":"ls"})), ("exec", r#" login cmd="ls""#.into()));
        assert_eq!(describe_json(json!({"type":"exec","cmd":7})), ("exec", r#" cmd="7""#.into()));
        // Accepted ones as before.
        assert_eq!(describe_json(json!({"type":"exec","login":true})), ("exec", " login".into()));
        assert_eq!(describe_json(json!({"type":"exec","login":true,"pty":{"term":"vt100"}})), ("exec", " pty login".into()));
    }
}
