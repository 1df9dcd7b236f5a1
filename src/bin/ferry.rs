//! ferry: the client. Parses the command line and calls `ferry::client::cli`
//! (commands), `ferry::client::udp` (`run -u`, `ping -u`) or
//! `ferry::client::transfer` (files).
//! Exit status: the remote command's, 255 for a ferry error, 2 for usage;
//! for the file commands 0, or 1 for a remote or local file error.

use clap::{Args, Parser, Subcommand};
use ferry::client::{cli, encoding, transfer, udp, Family, Options, Target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Run commands and move files on a ferryd server over a framed, authenticated protocol.
///
/// With HOST [PORT] and no subcommand, ferry reads commands from stdin, one a
/// line, runs each in turn and exits with the last one's status.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, subcommand_negates_reqs = true)]
struct Cli {
    #[command(flatten)]
    opts: Opts,

    #[command(subcommand)]
    cmd: Option<Cmd>,

    /// Server, as HOST, HOST:PORT or [V6ADDR]:PORT (port 7075 by default)
    #[arg(value_name = "HOST[:PORT]", required = true)]
    host: Option<String>,

    /// Port, as netcat takes it
    #[arg(value_name = "PORT")]
    port: Option<String>,

    /// Decode the commands' output from LABEL (gbk, shift_jis, windows-1252...) to UTF-8 [default: $FERRY_ENCODING]
    #[arg(long = "encoding", value_name = "LABEL")]
    encoding: Option<String>,
}

#[derive(Args, Debug)]
struct Opts {
    /// Keys file [default: $FERRY_KEYS, else ~/.config/ferry/keys, else /etc/ferry/keys]
    #[arg(short = 'k', long = "keys", value_name = "FILE", global = true)]
    keys: Option<PathBuf>,

    /// Key id to authenticate with [default: the file's first key]
    #[arg(short = 'i', long = "key-id", value_name = "ID", global = true)]
    key_id: Option<String>,

    /// Connect and idle timeout in seconds
    #[arg(short = 'w', long = "timeout", value_name = "SECS", global = true)]
    timeout: Option<f64>,

    /// Trace protocol frames on stderr (MACs redacted)
    #[arg(short = 'v', long = "verbose", global = true)]
    verbose: bool,

    /// Print only errors of ferry's own
    #[arg(short = 'q', long = "quiet", global = true)]
    quiet: bool,

    /// Use IPv4 addresses only
    #[arg(short = '4', global = true, conflicts_with = "ipv6")]
    ipv4: bool,

    /// Use IPv6 addresses only
    #[arg(short = '6', global = true)]
    ipv6: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one command and exit with its status
    Run {
        /// Do not forward stdin (the command reads /dev/null)
        #[arg(short = 'n')]
        no_stdin: bool,
        /// One authenticated UDP datagram each way (no stdin; output cut to fit the reply)
        #[arg(short = 'u', long = "udp")]
        udp: bool,
        /// Decode the command's output from LABEL (gbk, shift_jis, windows-1252...) to UTF-8 [default: $FERRY_ENCODING]
        #[arg(long = "encoding", value_name = "LABEL")]
        encoding: Option<String>,
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        /// The command: one argument runs through sh -c, several run as argv
        #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Measure the round trip to a server
    Ping {
        /// Number of pings
        #[arg(short = 'c', long = "count", value_name = "N", default_value_t = 1)]
        count: u32,
        /// Seconds between pings
        #[arg(long = "interval", value_name = "SECS", default_value_t = 1.0)]
        interval: f64,
        /// Ping over UDP: one authenticated datagram each way
        #[arg(short = 'u', long = "udp")]
        udp: bool,
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
    },
    /// Fetch a remote file (to LOCAL.part, checked, then renamed)
    Get {
        /// Resume from the size of an existing LOCAL.part
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        /// The file, relative to the served root
        #[arg(value_name = "REMOTE")]
        remote: String,
        /// Where to write [default: REMOTE's name here; into it if a directory; - for stdout]
        #[arg(value_name = "LOCAL")]
        local: Option<String>,
    },
    /// Send a file (checked by the server, replaced atomically)
    Put {
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        /// The file to send; - reads stdin
        #[arg(value_name = "LOCAL")]
        local: String,
        /// Where to put it [default: LOCAL's name in the root; into it if a directory]
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
    },
    /// List a remote directory, as ls -l
    Ls {
        /// Print the server's listing as a JSON array
        #[arg(long = "json")]
        json: bool,
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        #[arg(value_name = "PATH", default_value = ".")]
        path: String,
    },
    /// Describe a remote path
    Stat {
        /// Print the stat fields as a JSON object
        #[arg(long = "json")]
        json: bool,
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Append a new random key to a keys file (created with mode 0600)
    Keygen {
        /// The new key's id
        #[arg(long = "id", value_name = "ID", default_value = "default")]
        id: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{what} must be a non-negative number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(real_main(cli).clamp(0, 255) as u8)
}

fn real_main(cli: Cli) -> i32 {
    let o = &cli.opts;
    let timeout = match o.timeout.map(|t| seconds(t, "-w")).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ferry: {e}");
            return 2;
        }
    };
    let opts = Options {
        timeout,
        family: if o.ipv4 { Family::V4 } else if o.ipv6 { Family::V6 } else { Family::Any },
        trace: o.verbose,
    };
    if let Some(Cmd::Keygen { id, file }) = &cli.cmd {
        return cli::keygen(file, id, o.quiet);
    }
    let (host, port) = match &cli.cmd {
        Some(
            Cmd::Run { host, .. }
            | Cmd::Ping { host, .. }
            | Cmd::Get { host, .. }
            | Cmd::Put { host, .. }
            | Cmd::Ls { host, .. }
            | Cmd::Stat { host, .. },
        ) => (host.as_str(), None),
        _ => (cli.host.as_deref().expect("clap requires HOST"), cli.port.as_deref()),
    };
    let target = match Target::parse(host, port) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ferry: {e}");
            return 2;
        }
    };
    // Output is decoded for run and the session only: files stay byte-exact.
    let label = match &cli.cmd {
        Some(Cmd::Run { encoding, .. }) => Some(encoding.as_deref().or(cli.encoding.as_deref())),
        None => Some(cli.encoding.as_deref()),
        Some(_) if cli.encoding.is_some() => {
            eprintln!("ferry: --encoding applies to run and the session only");
            return 2;
        }
        Some(_) => None,
    };
    let encoding = match label {
        Some(flag) => {
            let env = std::env::var_os(encoding::ENV).map(|v| v.to_string_lossy().into_owned());
            match encoding::choose(flag, env.as_deref()) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("ferry: {e}");
                    return 2;
                }
            }
        }
        None => None,
    };
    let ui = transfer::Ui::new(o.quiet);
    let key = match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("ferry: {e}");
            return cli::EXIT_FERRY_ERROR;
        }
    };
    match cli.cmd {
        Some(Cmd::Run { udp: true, command, .. }) => udp::run(&target, &key, &opts, command, encoding),
        Some(Cmd::Run { no_stdin, command, .. }) => cli::run(&target, &key, &opts, command, !no_stdin, encoding),
        Some(Cmd::Ping { count, interval, udp, .. }) => match seconds(interval, "--interval") {
            Ok(i) if udp => udp::ping(&target, &key, &opts, count, i, o.quiet),
            Ok(i) => cli::ping(&target, &key, &opts, count, i, o.quiet),
            Err(e) => {
                eprintln!("ferry: {e}");
                2
            }
        },
        Some(Cmd::Get { resume, remote, local, .. }) => {
            transfer::get(&target, &key, &opts, ui, &remote, local.as_deref(), resume)
        }
        Some(Cmd::Put { local, remote, .. }) => transfer::put(&target, &key, &opts, ui, &local, remote.as_deref()),
        Some(Cmd::Ls { json, path, .. }) => transfer::ls(&target, &key, &opts, &path, json),
        Some(Cmd::Stat { json, path, .. }) => transfer::stat(&target, &key, &opts, &path, json),
        Some(Cmd::Keygen { .. }) => unreachable!("handled above"),
        None => cli::session(&target, &key, &opts, o.quiet, encoding),
    }
}
