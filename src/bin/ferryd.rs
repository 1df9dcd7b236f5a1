//! ferryd: flags -> Config -> keys -> bind -> server::run. Maps failures to
//! sysexits codes: 64 usage, 69 unavailable, 70 internal, 78 configuration.

use clap::builder::TypedValueParser;
use clap::Parser;
use ferry::proto::auth::Keys;
use ferry::server::{self, Config};
use ferry::{keys, logger};
use log::{error, info, LevelFilter};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_CONFIG: u8 = 78;

/// The ferry daemon: runs commands for authenticated clients over a framed protocol.
#[derive(Parser, Debug)]
#[command(name = "ferryd", version, about, long_about = None)]
struct Cli {
    /// Address to listen on, ADDR:PORT or [V6ADDR]:PORT (repeatable; port 0 picks a free port)
    #[arg(short = 'l', long = "listen", value_name = "ADDR:PORT", value_parser = parse_listen)]
    listen: Vec<SocketAddr>,

    /// Directory served to clients; commands run there [default: the current directory]
    #[arg(short = 'r', long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Keys file [default: $FERRY_KEYS, else ~/.config/ferry/keys, created when missing]
    #[arg(short = 'k', long, value_name = "FILE")]
    keys: Option<PathBuf>,

    /// Stay in the foreground and log to stderr (the default)
    #[arg(short = 'f', long)]
    foreground: bool,

    /// Log level: off, error, warn, info, debug or trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: LevelFilter,

    /// Most connections at once; one more is refused with too-many-connections
    #[arg(long, value_name = "N", default_value_t = Config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Most commands running at once; further exec requests wait their turn
    #[arg(long, value_name = "N", default_value_t = Config::DEFAULT_MAX_CHILDREN,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    max_children: usize,

    /// Seconds a client has to authenticate
    #[arg(long, value_name = "SECS", default_value_t = Config::DEFAULT_AUTH_TIMEOUT,
          value_parser = clap::value_parser!(u64).range(1..))]
    auth_timeout: u64,

    /// Seconds an authenticated connection may sit idle (0: no limit)
    #[arg(long, value_name = "SECS", default_value_t = Config::DEFAULT_IDLE_TIMEOUT)]
    idle_timeout: u64,

    /// Seconds running commands get to finish after TERM or INT
    #[arg(long, value_name = "SECS", default_value_t = Config::DEFAULT_DRAIN_TIMEOUT)]
    drain_timeout: u64,

    /// Largest frame header accepted, in bytes (at most 65536)
    #[arg(long, value_name = "BYTES", default_value_t = ferry::proto::MAX_HEADER,
          value_parser = clap::value_parser!(u32).range(64..=65536).map(|n| n as usize))]
    max_header: usize,

    /// Refuse exec requests (code exec-disabled)
    #[arg(long)]
    no_exec: bool,

    /// Refuse put requests (code read-only); get, list and stat still work
    #[arg(long)]
    read_only: bool,

    /// Largest file a put may upload, in bytes; larger ones get too-large [default: no limit]
    #[arg(long, value_name = "BYTES")]
    max_upload: Option<u64>,
}

/// `ADDR:PORT`, `[V6]:PORT`, a bare address (port 7075), or `HOST:PORT` resolved once.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, ferry::proto::DEFAULT_PORT));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| format!("{s}: no address")),
        Err(e) => Err(format!("{s}: {e} (expected ADDR:PORT)")),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("ferryd: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(EX_USAGE);
        }
        Err(e) => {
            // --help and --version go to stdout and succeed.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    logger::init_stderr("ferryd", cli.log_level);

    let root = cli.root.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = match root.canonicalize() {
        Ok(r) if r.is_dir() => r,
        Ok(r) => return fail(EX_CONFIG, format!("root {} is not a directory", r.display())),
        Err(e) => return fail(EX_CONFIG, format!("root {}: {e}", root.display())),
    };
    let keys = match load_keys(cli.keys.as_deref()) {
        Ok(k) => k,
        Err(e) => return fail(EX_CONFIG, e),
    };

    let mut cfg = Config::new(root, keys);
    if !cli.listen.is_empty() {
        cfg.listen = cli.listen.clone();
    }
    cfg.max_connections = cli.max_connections;
    cfg.max_children = cli.max_children;
    cfg.auth_timeout = Duration::from_secs(cli.auth_timeout);
    cfg.idle_timeout = Duration::from_secs(cli.idle_timeout);
    cfg.drain_timeout = Duration::from_secs(cli.drain_timeout);
    cfg.max_header = cli.max_header;
    cfg.allow_exec = !cli.no_exec;
    cfg.read_only = cli.read_only;
    cfg.max_upload = cli.max_upload;

    raise_fd_limit(cfg.max_connections);
    let listeners = match server::bind(&cfg) {
        Ok(l) => l,
        Err(e) => return fail(EX_UNAVAILABLE, e),
    };
    let server = match server::Server::new(cfg.clone(), listeners) {
        Ok(s) => s,
        Err(e) => return fail(EX_SOFTWARE, format!("cannot set up the event loop: {e}")),
    };
    for addr in server.local_addrs() {
        info!("listening on {addr}");
    }
    info!(
        "serving {} with {} key(s); exec {}; {}",
        cfg.root.display(),
        cfg.keys.keys.len(),
        if cfg.allow_exec { "enabled" } else { "disabled" },
        if cfg.read_only { "read-only" } else { "read-write" }
    );
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

/// `--keys FILE`, else the user's keys file, created with one key on first start.
fn load_keys(flag: Option<&std::path::Path>) -> Result<Keys, String> {
    if let Some(path) = flag {
        return keys::load(path);
    }
    let path = keys::user_path().ok_or("no keys file: give --keys FILE or set FERRY_KEYS")?;
    if !path.exists() {
        keys::generate(&path, "default")?;
        eprintln!("ferryd: created keys file {} with a new key \"default\"", path.display());
    }
    keys::load(&path)
}

/// Raises the soft open-files limit toward what `max_connections` needs (each
/// connection holds a socket and, while a command runs, three pipes), never
/// past the hard limit. Running short is not fatal: accept errors are logged.
fn raise_fd_limit(max_connections: usize) {
    let want = (max_connections as u64).saturating_mul(4).saturating_add(64);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want as libc::rlim_t {
            return;
        }
        let old = lim.rlim_cur;
        lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
        if lim.rlim_cur > old && libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            log::debug!("open files limit raised from {old} to {}", lim.rlim_cur);
        }
        if lim.rlim_cur < want as libc::rlim_t {
            log::warn!(
                "open files limit {} is low for {max_connections} connections; raise it (ulimit -n) or lower --max-connections",
                lim.rlim_cur
            );
        }
    }
}
