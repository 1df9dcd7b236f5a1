//! ferryd's configuration: built-in defaults, then the config file (TOML),
//! then the command line, each overriding the one before.
//!
//! The file is `--config FILE`, else `/etc/ferry/ferryd.toml` when it exists,
//! else none. Unknown keys and bad values are errors that name the file, the
//! line and the key; relative paths in the file are relative to the file's
//! directory. `load` is also what a HUP reload calls, with the same command
//! line, so flags keep overriding the file after a reload.

pub use crate::cidr::{parse_plaintext_from, Cidr};
use crate::keys;
use crate::proto::auth::{fresh_nonce, Keys};
use crate::proto::MAX_HEADER;
use log::LevelFilter;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the config file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/ferry/ferryd.toml";

/// Syslog facilities by name.
pub const FACILITIES: [&str; 20] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp", "local0",
    "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// Where logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    Stderr,
    Syslog,
    /// The file `[log] path`, written by ferryd itself.
    File,
    /// Syslog when daemonized, stderr otherwise.
    Auto,
}

/// Where `target = "file"` writes when `[log] path` is not given.
pub const DEFAULT_LOG_PATH: &str = "/var/log/ferry/ferryd.log";

/// Everything ferryd is told: what the server uses (and a reload may change)
/// and what only the process uses at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: Config,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// The keys file read (created with one key when it was the default and missing).
    pub keys_file: PathBuf,
    pub log_target: LogTarget,
    pub log_facility: String,
    /// A syslog socket other than the system's (`/dev/log`).
    pub log_socket: Option<PathBuf>,
    /// The log file of `target = "file"`.
    pub log_path: PathBuf,
    pub daemon: bool,
    pub pidfile: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// What the command line says; `None` (or empty, or false) where it is silent.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    /// `--udp`: replaces `udp.listen`.
    pub udp: Vec<SocketAddr>,
    pub root: Option<PathBuf>,
    pub keys: Option<PathBuf>,
    pub log_level: Option<LevelFilter>,
    pub max_connections: Option<usize>,
    pub max_children: Option<usize>,
    pub auth_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub drain_timeout: Option<u64>,
    pub max_header: Option<usize>,
    pub max_upload: Option<u64>,
    pub no_exec: bool,
    pub read_only: bool,
    pub daemon: bool,
    /// `--foreground`: not a daemon, whatever the file says.
    pub foreground: bool,
    pub pidfile: Option<PathBuf>,
    /// `--plaintext-from`: replaces `plaintext_from` (`none` alone: empty).
    pub plaintext_from: Option<Vec<Cidr>>,
}

// ---- what the server uses ------------------------------------------------

/// Everything the daemon is told. Built by `ferryd` from its flags.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    /// The served root, canonical (absolute, no links).
    pub root: PathBuf,
    pub keys: Keys,
    pub max_connections: usize,
    /// Children running at once; further execs wait their turn.
    pub max_children: usize,
    pub auth_timeout: Duration,
    /// Zero disables the idle timeout.
    pub idle_timeout: Duration,
    /// How long running requests may take to finish after TERM.
    pub drain_timeout: Duration,
    /// The largest frame header accepted (at most 65536).
    pub max_header: usize,
    pub allow_exec: bool,
    /// Give an exec a pseudo-terminal when it asks (`pty`).
    pub allow_pty: bool,
    /// Refuse `put` (`read-only`).
    pub read_only: bool,
    /// The largest `put` accepted, in bytes; None for no limit.
    pub max_upload: Option<u64>,
    /// What runs `cmd` strings, as `SHELL -c CMD`.
    pub shell: PathBuf,
    /// Programs an `exec` may run: names (matched against argv[0], or the
    /// shell for `cmd`) or absolute paths. Empty: any program.
    pub exec_allowed: Vec<String>,
    /// Run children with only PATH, HOME, LANG and the request's `env`.
    pub exec_env_clear: bool,
    /// A ceiling on every exec's timeout (and the timeout of those that give none).
    pub exec_timeout: Option<Duration>,
    /// The log level, applied again on reload.
    pub log_level: log::LevelFilter,
    /// Sent in `hello`.
    pub server_name: String,
    /// A random key that unknown key ids are checked against (see `conn::on_auth`).
    pub decoy_key: [u8; 32],
    /// Datagram mode (`[udp]`).
    pub udp: UdpConfig,
    /// Peers that may speak v1 in clear (TCP and tagged datagrams); every
    /// other peer must use TLS (sealed datagrams). Empty: TLS for everyone.
    pub plaintext_from: Vec<Cidr>,
}

impl Config {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    pub const DEFAULT_MAX_CHILDREN: usize = 64;
    pub const DEFAULT_AUTH_TIMEOUT: u64 = 10;
    pub const DEFAULT_IDLE_TIMEOUT: u64 = 300;
    pub const DEFAULT_DRAIN_TIMEOUT: u64 = 30;

    /// The defaults, serving `root` with `keys`.
    pub fn new(root: PathBuf, keys: Keys) -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], crate::proto::DEFAULT_PORT))],
            root,
            keys,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_children: Self::DEFAULT_MAX_CHILDREN,
            auth_timeout: Duration::from_secs(Self::DEFAULT_AUTH_TIMEOUT),
            idle_timeout: Duration::from_secs(Self::DEFAULT_IDLE_TIMEOUT),
            drain_timeout: Duration::from_secs(Self::DEFAULT_DRAIN_TIMEOUT),
            max_header: MAX_HEADER,
            allow_exec: true,
            allow_pty: true,
            read_only: false,
            max_upload: None,
            shell: PathBuf::from("/bin/sh"),
            exec_allowed: Vec::new(),
            exec_env_clear: false,
            exec_timeout: None,
            log_level: log::LevelFilter::Info,
            server_name: format!("ferryd {}", env!("CARGO_PKG_VERSION")),
            decoy_key: fresh_nonce(),
            udp: UdpConfig::default(),
            plaintext_from: Cidr::loopback(),
        }
    }

    /// True when `peer` may speak v1 in clear.
    pub fn plaintext_allowed(&self, peer: IpAddr) -> bool {
        self.plaintext_from.iter().any(|c| c.contains(peer))
    }

    #[cfg(test)]
    pub fn for_tests(root: PathBuf) -> Config {
        Config::new(root, Keys::default())
    }
}

/// The `[udp]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Addresses to bind; empty: datagram mode is off.
    pub listen: Vec<SocketAddr>,
    /// The largest reply datagram, tag included.
    pub max_reply: usize,
    /// How far a request's `ts` may be from our clock.
    pub window: Duration,
    /// A ceiling on a datagram exec's timeout (and the timeout of those that give none).
    pub exec_timeout: Duration,
    /// `(key_id, nonce)` pairs remembered at most.
    pub seen_max: usize,
    /// Replies cached at most, in entries and in bytes.
    pub cache_max: usize,
    pub cache_bytes: usize,
    /// Datagrams that fail the checks handled a second, at most.
    pub max_rejects: usize,
}

impl UdpConfig {
    pub const DEFAULT_MAX_REPLY: usize = 1400;
    /// Room for any error reply: a nonce, an id of `MAX_ID_JSON` bytes, a message.
    pub const MIN_MAX_REPLY: usize = 512;
    pub const DEFAULT_WINDOW: u64 = 30;
    pub const DEFAULT_EXEC_TIMEOUT: u64 = 10;
    pub const DEFAULT_SEEN_MAX: usize = 131_072;
    pub const DEFAULT_CACHE_MAX: usize = 4096;
    pub const DEFAULT_CACHE_BYTES: usize = 4 * 1024 * 1024;
    pub const DEFAULT_MAX_REJECTS: usize = 20_000;
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            listen: Vec::new(),
            max_reply: Self::DEFAULT_MAX_REPLY,
            window: Duration::from_secs(Self::DEFAULT_WINDOW),
            exec_timeout: Duration::from_secs(Self::DEFAULT_EXEC_TIMEOUT),
            seen_max: Self::DEFAULT_SEEN_MAX,
            cache_max: Self::DEFAULT_CACHE_MAX,
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
            max_rejects: Self::DEFAULT_MAX_REJECTS,
        }
    }
}

// ---- the file --------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Vec<Listen>>,
    root: Option<PathBuf>,
    keys: Option<PathBuf>,
    max_connections: Option<Positive<usize>>,
    max_children: Option<Positive<usize>>,
    auth_timeout: Option<Positive<u64>>,
    idle_timeout: Option<u64>,
    drain_timeout: Option<u64>,
    max_header: Option<HeaderLimit>,
    max_upload: Option<u64>,
    read_only: Option<bool>,
    allow_exec: Option<bool>,
    allow_pty: Option<bool>,
    daemon: Option<bool>,
    pidfile: Option<PathBuf>,
    plaintext_from: Option<Vec<CidrText>>,
    user: Option<Name>,
    group: Option<Name>,
    #[serde(default)]
    exec: ExecSection,
    #[serde(default)]
    udp: UdpSection,
    #[serde(default)]
    log: LogSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecSection {
    allowed: Option<Vec<Program>>,
    env_clear: Option<bool>,
    timeout: Option<Positive<u64>>,
    shell: Option<AbsPath>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UdpSection {
    listen: Option<Vec<Listen>>,
    max_reply: Option<ReplyLimit>,
    window: Option<Positive<u64>>,
    exec_timeout: Option<Positive<u64>>,
    seen_max: Option<Positive<usize>>,
    cache_max: Option<usize>,
    cache_bytes: Option<usize>,
    max_rejects: Option<Positive<usize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<Level>,
    target: Option<LogTarget>,
    facility: Option<Facility>,
    socket: Option<PathBuf>,
    path: Option<PathBuf>,
}

/// Values that check themselves while they are read, so that a bad one is
/// reported by the TOML reader with its place in the file.
macro_rules! checked {
    ($name:ident($inner:ty), $what:expr, |$v:ident| $check:expr) => {
        #[derive(Debug, Clone)]
        struct $name($inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let $v = <$inner>::deserialize(d)?;
                match $check {
                    Ok(v) => Ok($name(v)),
                    Err(why) if why.contains("(expected") => Err(de::Error::custom(why)),
                    Err(why) => Err(de::Error::custom(format!("{why} (expected {})", $what))),
                }
            }
        }
    };
}

checked!(Listen(String), "ADDR:PORT", |s| parse_listen(&s).map(|a| a.to_string()));
checked!(CidrText(String), "ADDR/BITS or ADDR", |s| s.parse::<Cidr>().map(|_| s));
checked!(HeaderLimit(usize), "a number of bytes from 64 to 65536", |n| if (64..=65536).contains(&n) {
    Ok(n)
} else {
    Err(format!("{n} is out of range"))
});
checked!(ReplyLimit(usize), "a number of bytes from 512 to 65507", |n| if (UdpConfig::MIN_MAX_REPLY
    ..=crate::proto::datagram::MAX_DATAGRAM)
    .contains(&n)
{
    Ok(n)
} else {
    Err(format!("{n} is out of range"))
});
checked!(Name(String), "a name without spaces", |s| if !s.is_empty() && !s.contains(char::is_whitespace) {
    Ok(s)
} else {
    Err(format!("{s:?} is not a name"))
});
checked!(Program(String), "a program name or an absolute path", |s| if s.is_empty()
    || s.contains(char::is_whitespace)
    || (s.contains('/') && !s.starts_with('/'))
{
    Err(format!("{s:?} is neither a name nor an absolute path"))
} else {
    Ok(s)
});
checked!(AbsPath(PathBuf), "an absolute path", |p| if p.is_absolute() {
    Ok(p)
} else {
    Err(format!("{} is not absolute", p.display()))
});
checked!(Level(String), "off, error, warn, info, debug or trace", |s| s
    .parse::<LevelFilter>()
    .map(|_| s.to_ascii_lowercase())
    .map_err(|_| format!("{s:?} is not a log level")));
checked!(Facility(String), "a syslog facility such as daemon or local0", |s| if FACILITIES.contains(&s.as_str()) {
    Ok(s)
} else {
    Err(format!("{s:?} is not a syslog facility"))
});

/// A number above zero.
#[derive(Debug, Clone, Copy)]
struct Positive<T>(T);

impl<'de, T: Deserialize<'de> + PartialOrd + Default + std::fmt::Display> Deserialize<'de> for Positive<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = T::deserialize(d)?;
        if v > T::default() {
            Ok(Positive(v))
        } else {
            Err(de::Error::custom(format!("{v} is out of range (expected a number above 0)")))
        }
    }
}

/// `ADDR:PORT`, `[V6]:PORT`, a bare address (port 7075), or `HOST:PORT` resolved once.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, crate::proto::DEFAULT_PORT));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| format!("{s}: no address")),
        Err(e) => Err(format!("{s}: {e} (expected ADDR:PORT)")),
    }
}

/// Reads the config file: errors name the file, the line and the key.
fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| describe(path, &text, &e))
}

/// `config file F, line N, key K: what is wrong`.
fn describe(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let Some(span) = e.span() else {
        return format!("config file {}: {msg}", path.display());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The section is the last `[table]` header above the line.
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string()).filter(|k| !k.is_empty());
    let full = match (section, key) {
        (Some(s), Some(k)) => format!(", key {s}.{k}"),
        (None, Some(k)) => format!(", key {k}"),
        _ => String::new(),
    };
    format!("config file {}, line {line_no}{full}: {msg}", path.display())
}

// ---- putting it together ---------------------------------------------------

/// Builds the settings from the defaults, the config file and the flags;
/// loads the keys file. Every error is one line for the operator.
pub fn load(o: &Overrides) -> Result<Settings, String> {
    let config_file = match &o.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    };
    let mut f = match &config_file {
        Some(p) => read_file(p)?,
        None => FileConfig::default(),
    };
    // Relative paths in the file are relative to the file's directory.
    if let Some(dir) = config_file.as_deref().and_then(Path::parent) {
        for p in [&mut f.root, &mut f.keys, &mut f.pidfile, &mut f.log.socket, &mut f.log.path].into_iter().flatten() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }

    let root = o.root.clone().or(f.root).unwrap_or_else(|| PathBuf::from("."));
    let root = match root.canonicalize() {
        Ok(r) if r.is_dir() => r,
        Ok(r) => return Err(format!("root {} is not a directory", r.display())),
        Err(e) => return Err(format!("root {}: {e}", root.display())),
    };
    let (keys_file, keys) = load_keys(o.keys.clone().or(f.keys))?;

    let mut c = Config::new(root, keys);
    if !o.listen.is_empty() {
        c.listen = o.listen.clone();
    } else if let Some(l) = f.listen {
        c.listen = l.iter().map(|a| parse_listen(&a.0)).collect::<Result<_, _>>()?;
    }
    if c.listen.is_empty() {
        return Err("listen: give at least one address".into());
    }
    let pick = |flag: Option<u64>, file: Option<u64>, default: u64| flag.or(file).unwrap_or(default);
    c.max_connections = o.max_connections.or(f.max_connections.map(|p| p.0)).unwrap_or(c.max_connections);
    c.max_children = o.max_children.or(f.max_children.map(|p| p.0)).unwrap_or(c.max_children);
    c.auth_timeout =
        Duration::from_secs(pick(o.auth_timeout, f.auth_timeout.map(|p| p.0), Config::DEFAULT_AUTH_TIMEOUT));
    c.idle_timeout = Duration::from_secs(pick(o.idle_timeout, f.idle_timeout, Config::DEFAULT_IDLE_TIMEOUT));
    c.drain_timeout = Duration::from_secs(pick(o.drain_timeout, f.drain_timeout, Config::DEFAULT_DRAIN_TIMEOUT));
    c.max_header = o.max_header.or(f.max_header.map(|h| h.0)).unwrap_or(c.max_header);
    c.max_upload = o.max_upload.or(f.max_upload);
    c.read_only = o.read_only || f.read_only.unwrap_or(false);
    c.allow_exec = !o.no_exec && f.allow_exec.unwrap_or(true);
    c.allow_pty = f.allow_pty.unwrap_or(true);
    c.exec_allowed = f.exec.allowed.unwrap_or_default().into_iter().map(|n| n.0).collect();
    c.exec_env_clear = f.exec.env_clear.unwrap_or(false);
    c.exec_timeout = f.exec.timeout.map(|t| Duration::from_secs(t.0));
    if let Some(shell) = f.exec.shell {
        c.shell = shell.0;
    }
    let (u, d) = (f.udp, &mut c.udp);
    if !o.udp.is_empty() {
        d.listen = o.udp.clone();
    } else if let Some(l) = u.listen {
        d.listen = l.iter().map(|a| parse_listen(&a.0)).collect::<Result<_, _>>()?;
    }
    d.max_reply = u.max_reply.map_or(d.max_reply, |m| m.0);
    d.window = u.window.map_or(d.window, |w| Duration::from_secs(w.0));
    d.exec_timeout = u.exec_timeout.map_or(d.exec_timeout, |t| Duration::from_secs(t.0));
    d.seen_max = u.seen_max.map_or(d.seen_max, |n| n.0);
    d.cache_max = u.cache_max.unwrap_or(d.cache_max);
    d.cache_bytes = u.cache_bytes.unwrap_or(d.cache_bytes);
    d.max_rejects = u.max_rejects.map_or(d.max_rejects, |n| n.0);
    if let Some(p) = &o.plaintext_from {
        c.plaintext_from = p.clone();
    } else if let Some(p) = f.plaintext_from {
        c.plaintext_from = p.iter().map(|c| c.0.parse().expect("checked while reading")).collect();
    }
    let file_level = f.log.level.map(|l| l.0.parse().expect("checked while reading"));
    c.log_level = o.log_level.or(file_level).unwrap_or(LevelFilter::Info);

    let user = f.user.map(|n| n.0);
    let group = f.group.map(|n| n.0);
    check_account(user.as_deref(), group.as_deref())?;
    Ok(Settings {
        server: c,
        config_file,
        keys_file,
        log_target: f.log.target.unwrap_or(LogTarget::Auto),
        log_facility: f.log.facility.map_or_else(|| "daemon".to_string(), |x| x.0),
        log_socket: f.log.socket,
        log_path: f.log.path.unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_PATH)),
        daemon: !o.foreground && (o.daemon || f.daemon.unwrap_or(false)),
        pidfile: absolute(o.pidfile.clone().or(f.pidfile))?,
        user,
        group,
    })
}

/// The `user` and `group` to run as must exist (checked before detaching).
fn check_account(user: Option<&str>, group: Option<&str>) -> Result<(), String> {
    use std::ffi::CString;
    if let Some(u) = user {
        let name = CString::new(u).map_err(|_| format!("user {u:?}: not a name"))?;
        // SAFETY: getpwnam reads a NUL-terminated name; we only test the result for null.
        if unsafe { libc::getpwnam(name.as_ptr()) }.is_null() {
            return Err(format!("user {u:?}: no such user"));
        }
    }
    if let Some(g) = group {
        let name = CString::new(g).map_err(|_| format!("group {g:?}: not a name"))?;
        // SAFETY: as above, for getgrnam.
        if unsafe { libc::getgrnam(name.as_ptr()) }.is_null() {
            return Err(format!("group {g:?}: no such group"));
        }
    }
    Ok(())
}

/// The keys file given, else the user's, created with one key on first start.
fn load_keys(given: Option<PathBuf>) -> Result<(PathBuf, Keys), String> {
    if let Some(path) = given {
        let keys = keys::load(&path)?;
        return Ok((absolute(Some(path))?.expect("given"), keys));
    }
    let path = keys::user_path().ok_or("no keys file: give --keys FILE, keys = in the config, or set FERRY_KEYS")?;
    if !path.exists() {
        keys::generate(&path, "default")?;
        crate::errln!("ferryd: created keys file {} with a new key \"default\"", path.display());
    }
    let keys = keys::load(&path)?;
    Ok((absolute(Some(path))?.expect("given"), keys))
}

/// Makes a path absolute against the current directory (a daemon changes to `/`).
fn absolute(p: Option<PathBuf>) -> Result<Option<PathBuf>, String> {
    match p {
        Some(p) if p.is_relative() => {
            let cwd = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
            Ok(Some(cwd.join(p)))
        }
        p => Ok(p),
    }
}

impl Settings {
    /// The effective configuration as TOML, for `--check-config`: every key,
    /// the keys file's path and key ids, never a secret.
    pub fn render(&self) -> String {
        let c = &self.server;
        let q = |s: &str| format!("{s:?}");
        let mut out = String::new();
        let _ = writeln!(out, "# ferryd {} effective configuration", env!("CARGO_PKG_VERSION"));
        match &self.config_file {
            Some(p) => writeln!(out, "# from {} and the command line", p.display()),
            None => writeln!(out, "# from built-in defaults and the command line (no config file)"),
        }
        .ok();
        let listen: Vec<String> = c.listen.iter().map(|a| q(&a.to_string())).collect();
        let _ = writeln!(out, "listen = [{}]", listen.join(", "));
        let _ = writeln!(out, "root = {}", q(&c.root.display().to_string()));
        let ids: Vec<&str> = c.keys.keys.iter().map(|k| k.id.as_str()).collect();
        let _ = writeln!(out, "keys = {}  # key ids: {}", q(&self.keys_file.display().to_string()), ids.join(", "));
        let _ = writeln!(out, "max_connections = {}", c.max_connections);
        let _ = writeln!(out, "max_children = {}", c.max_children);
        let _ = writeln!(out, "auth_timeout = {}", c.auth_timeout.as_secs());
        let _ = writeln!(out, "idle_timeout = {}", c.idle_timeout.as_secs());
        let _ = writeln!(out, "drain_timeout = {}", c.drain_timeout.as_secs());
        let _ = writeln!(out, "max_header = {}", c.max_header);
        match c.max_upload {
            Some(m) => writeln!(out, "max_upload = {m}"),
            None => writeln!(out, "# max_upload: no limit"),
        }
        .ok();
        let _ = writeln!(out, "read_only = {}", c.read_only);
        let _ = writeln!(out, "allow_exec = {}", c.allow_exec);
        let _ = writeln!(out, "allow_pty = {}", c.allow_pty);
        let plain: Vec<String> = c.plaintext_from.iter().map(|b| q(&b.to_string())).collect();
        let _ = writeln!(out, "plaintext_from = [{}]", plain.join(", "));
        let _ = writeln!(out, "daemon = {}", self.daemon);
        match &self.pidfile {
            Some(p) => writeln!(out, "pidfile = {}", q(&p.display().to_string())),
            None => writeln!(out, "# pidfile: none"),
        }
        .ok();
        for (k, v) in [("user", &self.user), ("group", &self.group)] {
            match v {
                Some(v) => writeln!(out, "{k} = {}", q(v)),
                None => writeln!(out, "# {k}: unchanged"),
            }
            .ok();
        }
        let _ = writeln!(out, "\n[exec]");
        let allowed: Vec<String> = c.exec_allowed.iter().map(|s| q(s)).collect();
        let _ = writeln!(out, "allowed = [{}]", allowed.join(", "));
        let _ = writeln!(out, "env_clear = {}", c.exec_env_clear);
        match c.exec_timeout {
            Some(t) => writeln!(out, "timeout = {}", t.as_secs()),
            None => writeln!(out, "# timeout: none"),
        }
        .ok();
        let _ = writeln!(out, "shell = {}", q(&c.shell.display().to_string()));
        let _ = writeln!(out, "\n[udp]");
        let u = &c.udp;
        let listen: Vec<String> = u.listen.iter().map(|a| q(&a.to_string())).collect();
        let _ = writeln!(out, "listen = [{}]", listen.join(", "));
        let _ = writeln!(out, "max_reply = {}", u.max_reply);
        let _ = writeln!(out, "window = {}", u.window.as_secs());
        let _ = writeln!(out, "exec_timeout = {}", u.exec_timeout.as_secs());
        let _ = writeln!(out, "seen_max = {}", u.seen_max);
        let _ = writeln!(out, "cache_max = {}", u.cache_max);
        let _ = writeln!(out, "cache_bytes = {}", u.cache_bytes);
        let _ = writeln!(out, "max_rejects = {}", u.max_rejects);
        let _ = writeln!(out, "\n[log]");
        let _ = writeln!(out, "level = {}", q(&c.log_level.to_string().to_ascii_lowercase()));
        let target = match self.log_target {
            LogTarget::Stderr => "stderr",
            LogTarget::Syslog => "syslog",
            LogTarget::File => "file",
            LogTarget::Auto => "auto",
        };
        let _ = writeln!(out, "target = {}", q(target));
        let _ = writeln!(out, "facility = {}", q(&self.log_facility));
        match &self.log_socket {
            Some(p) => writeln!(out, "socket = {}", q(&p.display().to_string())),
            None => writeln!(out, "# socket: the system's (/dev/log)"),
        }
        .ok();
        let _ = writeln!(out, "path = {}", q(&self.log_path.display().to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        toml::from_str(text).map_err(|e| describe(Path::new("f.toml"), text, &e))
    }

    #[test]
    fn a_full_file_reads() {
        let f = parse(
            "listen = [\"127.0.0.1:7075\", \"[::1]:7076\"]\nmax_children = 3\nread_only = true\n\
             [exec]\nallowed = [\"ls\", \"/bin/echo\"]\ntimeout = 5\nshell = \"/bin/bash\"\n\
             [log]\nlevel = \"debug\"\ntarget = \"syslog\"\nfacility = \"local3\"\n",
        )
        .unwrap();
        assert_eq!(f.listen.unwrap().len(), 2);
        assert_eq!(f.max_children.unwrap().0, 3);
        assert_eq!(f.exec.allowed.unwrap().len(), 2);
        assert_eq!(f.log.target, Some(LogTarget::Syslog));
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        for (text, want) in [
            ("root = \"/\"\nbogus = 1\n", "line 2, key bogus: unknown field `bogus`"),
            ("max_children = 0\n", "line 1, key max_children: 0 is out of range"),
            ("idle_timeout = \"ten\"\n", "line 1, key idle_timeout: invalid type"),
            ("\n[exec]\nshell = \"sh\"\n", "line 3, key exec.shell: sh is not absolute"),
            ("[log]\nlevel = \"loud\"\n", "line 2, key log.level: \"loud\" is not a log level"),
            ("[log]\nfacility = \"local9\"\n", "line 2, key log.facility: \"local9\" is not a syslog facility"),
            ("listen = [\"nowhere\"]\n", "line 1, key listen:"),
            ("[exec]\ncolour = 1\n", "line 2, key exec.colour: unknown field `colour`"),
            ("max_header = 10\n", "line 1, key max_header: 10 is out of range"),
            ("[exec]\nallowed = [\"bin/x\"]\n", "line 2, key exec.allowed: \"bin/x\" is neither"),
            ("[udp]\nmax_reply = 100\n", "line 2, key udp.max_reply: 100 is out of range (expected a number of bytes from 512 to 65507)"),
            ("[udp]\nmax_reply = 65508\n", "line 2, key udp.max_reply: 65508 is out of range"),
            ("[udp]\nwindow = 0\n", "line 2, key udp.window: 0 is out of range"),
            ("[udp]\nlisten = [\"nowhere\"]\n", "line 2, key udp.listen:"),
            ("[udp]\nseen_max = 0\n", "line 2, key udp.seen_max: 0 is out of range"),
            ("[udp]\nmax_rejects = 0\n", "line 2, key udp.max_rejects: 0 is out of range"),
            ("[udp]\nport = 1\n", "line 2, key udp.port: unknown field `port`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("config file f.toml, "), "{err}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        crate::keys::generate(&keys, "k").unwrap();
        let file = dir.path().join("ferryd.toml");
        std::fs::write(
            &file,
            format!(
                "root = {:?}\nkeys = {:?}\nmax_children = 3\nidle_timeout = 9\n[exec]\nenv_clear = true\n",
                dir.path(),
                keys
            ),
        )
        .unwrap();
        let mut o = Overrides { config: Some(file), ..Default::default() };
        let s = load(&o).unwrap();
        assert_eq!(s.server.max_children, 3);
        assert_eq!(s.server.idle_timeout, Duration::from_secs(9));
        assert!(s.server.exec_env_clear);
        assert_eq!(s.server.drain_timeout, Duration::from_secs(Config::DEFAULT_DRAIN_TIMEOUT));
        o.max_children = Some(7);
        o.no_exec = true;
        let s = load(&o).unwrap();
        assert_eq!(s.server.max_children, 7);
        assert!(!s.server.allow_exec);
        let text = s.render();
        assert!(text.contains("max_children = 7"), "{text}");
        assert!(text.contains("[udp]\nlisten = []\nmax_reply = 1400\n"), "{text}");
        assert!(!text.contains(&s.server.keys.keys[0].secret), "no secret in the rendering");
    }

    #[test]
    fn the_udp_table_reads_and_the_flag_replaces_its_listen() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        crate::keys::generate(&keys, "k").unwrap();
        let file = dir.path().join("ferryd.toml");
        let udp = "[udp]\nlisten = [\"127.0.0.1:7075\", \"[::1]\"]\nmax_reply = 9000\nwindow = 5\nexec_timeout = 3\n\
                   seen_max = 10\ncache_max = 0\ncache_bytes = 0\nmax_rejects = 7\n";
        std::fs::write(&file, format!("root = {:?}\nkeys = {:?}\n{udp}", dir.path(), keys)).unwrap();
        let mut o = Overrides { config: Some(file), ..Default::default() };
        let u = load(&o).unwrap().server.udp;
        assert_eq!(u.listen, ["127.0.0.1:7075".parse().unwrap(), "[::1]:7075".parse().unwrap()]);
        assert_eq!((u.max_reply, u.window, u.exec_timeout), (9000, Duration::from_secs(5), Duration::from_secs(3)));
        assert_eq!((u.seen_max, u.cache_max, u.cache_bytes, u.max_rejects), (10, 0, 0, 7));
        o.udp = vec!["127.0.0.1:9".parse().unwrap()];
        let s = load(&o).unwrap();
        assert_eq!(s.server.udp.listen, o.udp);
        assert!(s.render().contains("[udp]\nlisten = [\"127.0.0.1:9\"]\nmax_reply = 9000\nwindow = 5\n"), "{}", s.render());
        assert_eq!(UdpConfig::default().listen, [], "off by default");
    }

    #[test]
    fn plaintext_from_blocks() {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c("127.0.0.0/8").contains(ip("127.1.2.3")));
        assert!(!c("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(c("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")), "a mapped address is its IPv4 self");
        assert!(c("::1").contains(ip("::1")));
        assert!(!c("::1").contains(ip("::2")));
        assert!(c("10.0.0.0/0").contains(ip("192.168.1.1")));
        assert!(!c("10.0.0.0/0").contains(ip("::1")));
        assert!(c("fd00::/8").contains(ip("fd12::1")));
        assert!(c("10.1.2.3").contains(ip("10.1.2.3")) && !c("10.1.2.3").contains(ip("10.1.2.4")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert_eq!(c("::1").to_string(), "::1");
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
        let d = Config::for_tests(PathBuf::from("/"));
        assert!(d.plaintext_allowed(ip("127.0.0.1")) && d.plaintext_allowed(ip("::1")));
        assert!(!d.plaintext_allowed(ip("192.0.2.1")));
        assert_eq!(parse_plaintext_from("none"), Ok(None));
    }

    #[test]
    fn plaintext_from_in_the_file() {
        let f = parse("plaintext_from = []\n").unwrap();
        assert_eq!(f.plaintext_from.map(|v| v.len()), Some(0));
        let f = parse("plaintext_from = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        assert_eq!(f.plaintext_from.map(|v| v.len()), Some(2));
        assert!(parse("plaintext_from = [\"10.0.0.0/40\"]\n").is_err());
    }
}
