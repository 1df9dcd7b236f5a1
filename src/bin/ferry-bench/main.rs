//! ferry-bench: a load generator for ferryd (and redis-server, through RESP,
//! driven by the same code). Modes: ping, exec, get, put, idle, udp, pty-echo; see `--help`.
//!
//! Output: a human table on stdout, or with `--json` one JSON object on stdout
//! (the table then goes to stderr). Exit status: 0; 1 with one line on stderr
//! for any failure (refused connection, authentication, a server error, a
//! stall); 2 for a usage error.
//!
//! Modules (each depends only on those listed before it):
//! - `sys`: /proc and getrusage: CPU time, RSS, fds, who listens on a port.
//! - `hist`: the latency histogram (an adapter over `hdrhistogram`).
//! - `sock`: a connection's socket, TCP or TLS (`--tls`) behind one non-blocking Read/Write.
//! - `net`: loopback resolution, frame scanning, opening authenticated connections.
//! - `report`: the options every mode shares, the measured window, the report.
//! - `ptyecho`: the keystroke echo of interactive clients on terminals of its own.
//! - `load` (ping, exec), `xfer` (get, put), `idle`, `udp`: one module per mode,
//!   each with its engine and the `measure` that turns a run into a `Report`.
//! - `main` (this file): flags → `Common` → one mode's `measure` → print.

use clap::{Args, Parser, Subcommand};
mod hist;
mod idle;
mod load;
mod net;
mod ptyecho;
mod report;
mod sock;
mod sys;
mod udp;
mod xfer;

use ferry::proto::auth::Key;
use ferry::proto::msg::Digest;
use load::ExecCommand;
use report::Common;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xfer::Transfer;

/// Load generator for ferryd: many non-blocking connections per thread,
/// requests encoded once, latencies in a histogram. Loopback servers only.
#[derive(Parser, Debug)]
#[command(name = "ferry-bench", version)]
struct Cli {
    #[command(flatten)]
    opts: Opts,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Args, Debug)]
struct Opts {
    /// Server host: a loopback address or name
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,

    /// Server port [default: 7075, or 6379 with --resp]
    #[arg(long, global = true)]
    port: Option<u16>,

    /// Keys file [default: $FERRY_KEYS, else ~/.config/ferry/keys, else /etc/ferry/keys]
    #[arg(short = 'k', long = "keys", value_name = "KEYSFILE", global = true)]
    keys: Option<PathBuf>,

    /// Key id [default: the file's first key]
    #[arg(short = 'i', long = "key-id", value_name = "ID", global = true)]
    key_id: Option<String>,

    /// Connections [default: 1; idle: 1000]
    #[arg(short = 'c', long = "connections", value_name = "N", global = true)]
    connections: Option<usize>,

    /// Threads, the connections spread over them (ping and exec) [default: 1]
    #[arg(short = 't', long = "threads", value_name = "THREADS", global = true)]
    threads: Option<usize>,

    /// Measured time in seconds [default: 5]; for get and put, transfers start until then
    /// unless -n is given; for idle, how long to hold the connections before measuring
    /// [default: 10, since servers free idle buffers lazily]
    #[arg(short = 'd', long = "duration", value_name = "SECS", global = true)]
    duration: Option<f64>,

    /// Warm-up seconds before measuring [default: 1 for ping and exec, 0 for get and put]
    #[arg(long, value_name = "SECS", global = true)]
    warmup: Option<f64>,

    /// Bound in seconds on each connect and handshake, and on a run without progress
    #[arg(short = 'w', long = "timeout", value_name = "SECS", default_value_t = 10.0, global = true)]
    timeout: f64,

    /// At most this many connections connecting or authenticating at once
    #[arg(long, value_name = "N", default_value_t = 256, global = true)]
    setup_parallel: usize,

    /// The server's pid, for its CPU time, RSS and fds [default: the process listening on the port]
    #[arg(long, value_name = "PID", global = true)]
    server_pid: Option<u32>,

    /// Print one JSON object on stdout (the human table goes to stderr)
    #[arg(long, global = true)]
    json: bool,

    /// TLS 1.3 under the protocol: ferry's TLS keyed by the key (ping, exec, get, put,
    /// idle), sealed datagrams (udp), or TLS to a RESP server (with --resp; see --tls-insecure)
    #[arg(long, global = true)]
    tls: bool,

    /// With --resp --tls: accept whatever certificate the RESP server shows (redis's test
    /// certificate). A benchmark switch: it gives up authenticating the server
    #[arg(long, global = true, requires = "tls")]
    tls_insecure: bool,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Round trips: requests/s and latency percentiles
    Ping {
        /// Requests in flight per connection
        #[arg(short = 'P', long = "pipeline", value_name = "D", default_value_t = 1)]
        pipeline: usize,
        /// Speak RESP (PING / +PONG, no authentication) to a redis-server
        #[arg(long)]
        resp: bool,
    },
    /// Commands in a loop on open connections: executions/s and latency
    Exec {
        /// Requests in flight per connection
        #[arg(short = 'P', long = "pipeline", value_name = "D", default_value_t = 1)]
        pipeline: usize,
        /// Run this through the server's shell
        #[arg(long, value_name = "CMD", conflicts_with = "argv")]
        cmd: Option<String>,
        /// Run this argv [default: true]: the words up to the next option (for words that
        /// start with '-', give the argv after `--` instead)
        #[arg(long, value_name = "A", num_args = 1.., conflicts_with = "rest")]
        argv: Option<Vec<String>>,
        /// The argv, after `--` (as --argv)
        #[arg(value_name = "ARGV", last = true)]
        rest: Vec<String>,
    },
    /// Fetch a file: MB/s and CPU time per GiB on both ends
    Get {
        #[command(flatten)]
        t: TransferArgs,
    },
    /// Store a file: MB/s and CPU time per GiB on both ends
    Put {
        #[command(flatten)]
        t: TransferArgs,
        /// Send this file instead of generated bytes (with sendfile)
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Hold authenticated connections: the server's RSS and fds per connection
    Idle {
        /// Speak RESP (one PING each) to a redis-server
        #[arg(long)]
        resp: bool,
    },
    /// Keystroke echo round trips of interactive clients (ferry run -t, ssh -t), in turn
    PtyEcho {
        #[command(flatten)]
        p: PtyEchoArgs,
    },
    /// Datagrams: authenticated UDP pings to ferryd --udp (--port is the UDP port), one socket
    Udp {
        /// Requests in flight
        #[arg(short = 'P', long = "pipeline", value_name = "D", default_value_t = 1)]
        pipeline: usize,
        /// Send datagrams of a ferry ping request's size to a bare UDP echo
        /// (benches/baseline.c echo) instead: no key, no tag, no nonce
        #[arg(long)]
        bare: bool,
        /// Milliseconds before the first retransmission of a request (same nonce); the wait doubles
        #[arg(long, value_name = "MS", default_value_t = 200.0)]
        rto: f64,
        /// Retransmissions of one request before it counts as lost (its slot then sends a new one)
        #[arg(long, value_name = "N", default_value_t = 3)]
        retries: u32,
    },
}

#[derive(Args, Debug)]
struct PtyEchoArgs {
    /// Measured keys per command
    #[arg(short = 'n', long = "count", value_name = "N", default_value_t = 1000)]
    count: usize,
    /// Keys per command before measuring
    #[arg(long = "warmup-keys", value_name = "N", default_value_t = 50)]
    warmup_keys: usize,
    /// The client commands, separated by `::`, each run on a terminal of its own; each
    /// must start a remote program that prints FERRY-PTY-READY once its terminal echoes
    /// key by key, e.g. `stty -icanon; echo FERRY-PTY-READY; exec cat >/dev/null`
    #[arg(value_name = "COMMAND", last = true, required = true)]
    commands: Vec<String>,
}

#[derive(Args, Debug)]
struct TransferArgs {
    /// The remote path, relative to the server's root
    #[arg(long, value_name = "REMOTE", default_value = "ferry-bench.dat")]
    path: String,
    /// Bytes (suffixes K, M, G: powers of 1024). put: the generated body [default: 64M];
    /// get: store a file this big at --path first (not measured)
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    size: Option<u64>,
    /// get: the digest the server sends and the client checks; put: the digest the server checks, hashed as the body is sent and sent after it in a trailer frame, as ferry put does (in the header, hashed once before the run, to a server that announces no digests)
    #[arg(long, value_name = "none|sha256|blake3", default_value = "sha256", value_parser = parse_digest)]
    digest: Digest,
    /// Transfers per connection (instead of as many as start within -d)
    #[arg(short = 'n', long = "count", value_name = "N")]
    count: Option<u64>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1u64 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("{s:?} is not a size (try 4096, 64K, 1M, 1G)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    match s {
        "none" => Ok(Digest::None),
        "sha256" => Ok(Digest::Sha256),
        "blake3" => Ok(Digest::Blake3),
        _ => Err(format!("{s:?}: expected none, sha256 or blake3")),
    }
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{what} must be a number of seconds, 0 or more"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let o = &cli.opts;
    if let Mode::PtyEcho { p } = &cli.mode {
        let commands = ptyecho::split_commands(&p.commands);
        if commands.is_empty() || p.count == 0 {
            return Err("pty-echo needs a command after -- and -n of at least 1".into());
        }
        let (json, table) = ptyecho::measure(&commands, p.count, p.warmup_keys, secs(o.timeout, "-w")?)?;
        if o.json {
            eprint!("{table}");
            println!("{json}");
        } else {
            print!("{table}");
        }
        return Ok(());
    }
    let resp = matches!(cli.mode, Mode::Ping { resp: true, .. } | Mode::Idle { resp: true });
    let bare = matches!(cli.mode, Mode::Udp { bare: true, .. });
    let is_udp = matches!(cli.mode, Mode::Udp { .. });
    let is_load = matches!(cli.mode, Mode::Ping { .. } | Mode::Exec { .. }) || is_udp;
    if is_udp && (o.connections.is_some_and(|c| c != 1) || o.threads.is_some_and(|t| t != 1)) {
        return Err("udp uses one socket on one thread: -P sets the requests in flight (-c and -t do not apply)".into());
    }
    let is_transfer = matches!(cli.mode, Mode::Get { .. } | Mode::Put { .. });
    if o.threads.is_some_and(|t| t != 1) && !is_load {
        return Err("-t applies to ping and exec only".into());
    }
    let connections = o.connections.unwrap_or(if matches!(cli.mode, Mode::Idle { .. }) { 1000 } else { 1 });
    if connections == 0 {
        return Err("-c must be at least 1".into());
    }
    let port = o.port.unwrap_or(if resp { 6379 } else { ferry::proto::DEFAULT_PORT });
    let addr = net::resolve(&o.host, port)?;
    let proto = if resp {
        net::Proto::Resp
    } else if bare {
        // The key only sizes the datagrams; without one, a key id of "default".
        let key = ferry::client::cli::load_key(o.keys.as_deref(), o.key_id.as_deref())
            .unwrap_or(Key { id: "default".into(), secret: String::new() });
        net::Proto::Ferry(key)
    } else {
        net::Proto::Ferry(ferry::client::cli::load_key(o.keys.as_deref(), o.key_id.as_deref())?)
    };
    let limit = ferry::sys::raise_nofile(None).now;
    if connections as u64 + 64 > limit {
        return Err(format!(
            "{connections} connections need more open files than the limit of {limit} (raise ulimit -Hn)"
        ));
    }
    let default_duration = if matches!(cli.mode, Mode::Idle { .. }) { 10.0 } else { 5.0 };
    let duration = secs(o.duration.unwrap_or(default_duration), "-d")?;
    let warmup = secs(o.warmup.unwrap_or(if is_transfer { 0.0 } else { 1.0 }), "--warmup")?;
    let timeout = secs(o.timeout, "-w")?;
    if timeout.is_zero() {
        return Err("-w must be above 0".into());
    }
    if is_load && duration.is_zero() {
        return Err("-d must be above 0".into());
    }
    let (server_pid, server_note) = match o.server_pid {
        Some(pid) if std::path::Path::new(&format!("/proc/{pid}")).exists() => (Some(pid), None),
        Some(pid) => return Err(format!("--server-pid {pid}: no such process")),
        None => {
            let found = if is_udp { sys::pid_bound_udp(port) } else { sys::pid_listening_on(port) };
            match found {
                Some(pid) => (Some(pid), None),
                None => (
                    None,
                    Some(format!(
                        "server side not measured: no --server-pid, and no process found {} port {port}",
                        if is_udp { "bound to UDP" } else { "listening on" }
                    )),
                ),
            }
        }
    };
    let tls = match (&proto, o.tls, o.tls_insecure) {
        (_, false, _) => None,
        // Datagrams are sealed instead (udp::Spec::sealed).
        _ if is_udp => None,
        (net::Proto::Resp, true, true) => Some(sock::TlsSetup::insecure(&o.host)),
        (net::Proto::Resp, true, false) => {
            return Err("--resp --tls needs --tls-insecure: ferry-bench cannot check a RESP server's certificate".into())
        }
        (net::Proto::Ferry(_), true, true) => return Err("--tls-insecure is for --resp only".into()),
        (net::Proto::Ferry(key), true, false) => Some(sock::TlsSetup::ferry(key)),
    };
    let common = Common {
        tls,
        secure: o.tls,
        host: o.host.clone(),
        addr,
        proto,
        connections,
        threads: o.threads.unwrap_or(1).max(1),
        duration,
        warmup,
        timeout,
        setup_parallel: o.setup_parallel.max(1),
        server_pid,
        server_note,
    };
    let report = match &cli.mode {
        Mode::Ping { pipeline, .. } => load::measure(&common, (*pipeline).max(1), None)?,
        Mode::Exec { pipeline, cmd, argv, rest } => {
            let command = match (cmd, argv) {
                (Some(_), _) if !rest.is_empty() => return Err("exec takes --cmd or an argv, not both".into()),
                (Some(c), _) => ExecCommand::Shell(c.clone()),
                (None, Some(a)) => ExecCommand::Argv(a.clone()),
                (None, None) if !rest.is_empty() => ExecCommand::Argv(rest.clone()),
                (None, None) => ExecCommand::Argv(vec!["true".into()]),
            };
            load::measure(&common, (*pipeline).max(1), Some(&command))?
        }
        Mode::Get { t } | Mode::Put { t, .. } => {
            let (put, file) = match &cli.mode {
                Mode::Put { file, .. } => (true, file.clone()),
                _ => (false, None),
            };
            if file.is_some() && t.size.is_some() {
                return Err("put takes --size or --file, not both".into());
            }
            let spec = Transfer { put, path: t.path.clone(), size: t.size, file, digest: t.digest, count: t.count };
            xfer::measure(&common, &spec)?
        }
        Mode::Idle { .. } => idle::measure(&common)?,
        Mode::PtyEcho { .. } => unreachable!("measured above"),
        Mode::Udp { pipeline, bare, rto, retries } => {
            let rto = secs(rto / 1000.0, "--rto")?;
            if rto.is_zero() {
                return Err("--rto must be above 0".into());
            }
            let net::Proto::Ferry(key) = &common.proto else { unreachable!("udp speaks ferry or bare") };
            let target =
                if *bare { udp::Target::Bare { size: udp::ping_size(key) } } else { udp::Target::Ferry(key.clone()) };
            if *bare && o.tls {
                return Err("--bare sends no ferry datagrams to seal (--tls)".into());
            }
            let spec = udp::Spec { target, sealed: o.tls, pipeline: (*pipeline).max(1), rto, retries: *retries };
            udp::measure(&common, &spec)?
        }
    };
    if o.json {
        eprint!("{}", report.table());
        println!("{}", report.json);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
