//! ferry: the client. Parses the command line and calls `ferry::client::cli`
//! (commands), `ferry::client::udp` (`run -u`, `ping -u`) or
//! `ferry::client::transfer` (files).
//! Exit status: the remote command's, 255 for a ferry error, 2 for usage;
//! for the file commands 0, or 1 for a remote or local file error.

use clap::{Args, Parser, Subcommand};
use ferry::client::fanout::{self, hosts};
use ferry::client::tree::fan::Way;
use ferry::client::{cli, encoding, exit, transfer, transport, tty, udp, Family, Options, Target};
use ferry::client::flags::{count, positive_secs, seconds, secs};
use std::path::PathBuf;
use std::process::ExitCode;

/// Run commands and move files on a ferryd server over a framed, authenticated protocol.
///
/// With HOST [PORT] and no subcommand, ferry reads commands from stdin, one a
/// line, runs each in turn and exits with the last one's status. With a
/// subcommand, the subcommand comes first and HOST after it:
/// `ferry run HOST -- CMD`, `ferry get HOST REMOTE`.
#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    subcommand_negates_reqs = true,
    override_usage = "ferry [OPTIONS] HOST[:PORT] [PORT]\n       ferry [OPTIONS] <COMMAND> [COMMAND OPTIONS] HOST[:PORT] [ARGS]...\n       ferry [OPTIONS] <COMMAND> [COMMAND OPTIONS] -H HOSTS [ARGS]..."
)]
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

    /// Connect and idle timeout in seconds, more than 0 [default: none; the handshake waits 30 s at most]
    #[arg(short = 'w', long = "timeout", value_name = "SECS", global = true, value_parser = positive_secs, allow_negative_numbers = true)]
    timeout: Option<f64>,

    /// Say which transport (TLS suite and key exchange, or plaintext) each connection uses, and trace protocol frames on stderr (MACs redacted)
    #[arg(short = 'v', long = "verbose", global = true)]
    verbose: bool,

    /// Use TLS (sealed datagrams with -u), loopback included [default: $FERRY_TRANSPORT, else TLS to all but loopback]
    #[arg(long = "tls", global = true, conflicts_with = "plaintext")]
    tls: bool,

    /// Speak v1 in clear (tagged datagrams with -u), even off loopback
    #[arg(long = "plaintext", global = true)]
    plaintext: bool,

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

/// Fan-out: the same request to many hosts (run, ping, put, get).
#[derive(Args, Debug)]
struct Fleet {
    /// Do it on every host of HOSTS (pdsh syntax: web[01-20],db1:7075,[::1]:7075; repeatable)
    #[arg(short = 'H', long = "hosts", value_name = "HOSTS")]
    hosts: Vec<String>,
    /// Read HOSTS from FILE, one or more a line (# comments)
    #[arg(long = "hostfile", value_name = "FILE")]
    hostfile: Option<PathBuf>,
    /// Leave out the hosts of HOSTS (same syntax; repeatable)
    #[arg(short = 'x', long = "exclude", value_name = "HOSTS")]
    exclude: Vec<String>,
    /// At most N hosts connecting and authenticating at once
    #[arg(short = 'f', long = "fanout", value_name = "N", default_value_t = fanout::DEFAULT_FANOUT, value_parser = count::<usize>)]
    fanout: usize,
    /// Print one JSON object per host (host, status, code, signal, stdout, stderr, duration, error)
    #[arg(long = "json")]
    json: bool,
}

impl Fleet {
    fn active(&self) -> bool {
        !self.hosts.is_empty() || self.hostfile.is_some()
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one command and exit with its status
    #[command(override_usage = "ferry run [OPTIONS] HOST[:PORT] [--] COMMAND [ARGS]...\n       ferry run [OPTIONS] -H HOSTS | --hostfile FILE [--] COMMAND [ARGS]...")]
    Run {
        /// Do not forward stdin (the command reads /dev/null)
        #[arg(short = 'n')]
        no_stdin: bool,
        /// Run COMMAND (else the login shell) on a terminal the server opens, if stdin is one; -tt: always
        #[arg(short = 't', action = clap::ArgAction::Count)]
        tty: u8,
        /// Send COMMAND as argv, even one word (no shell; what an exec allow-list of programs takes)
        #[arg(short = 'a', long = "argv")]
        argv: bool,
        /// One authenticated UDP datagram each way (no stdin; output cut to fit the reply)
        #[arg(short = 'u', long = "udp")]
        udp: bool,
        /// Decode the command's output from LABEL (gbk, shift_jis, windows-1252...) to UTF-8 [default: $FERRY_ENCODING]
        #[arg(long = "encoding", value_name = "LABEL")]
        encoding: Option<String>,
        /// With -H: print each distinct output once, under the hosts that produced it
        #[arg(short = 'b', long = "gather")]
        gather: bool,
        #[command(flatten)]
        fleet: Fleet,
        /// The server (not with -H)
        #[arg(value_name = "HOST[:PORT]")]
        host: Option<String>,
        /// The command: one argument runs through sh -c, several run as argv
        #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The login shell on a terminal, as ssh HOST does (run -t HOST with no command)
    Shell {
        /// Decode the shell's output from LABEL (gbk, shift_jis, windows-1252...) to UTF-8 [default: $FERRY_ENCODING]
        #[arg(long = "encoding", value_name = "LABEL")]
        encoding: Option<String>,
        /// The server
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
    },
    /// Measure the round trip to a server
    #[command(override_usage = "ferry ping [OPTIONS] HOST[:PORT]\n       ferry ping [OPTIONS] -H HOSTS | --hostfile FILE")]
    Ping {
        /// Number of pings
        #[arg(short = 'c', long = "count", value_name = "N", default_value_t = 1, value_parser = count::<u32>, allow_negative_numbers = true)]
        count: u32,
        /// Seconds between pings
        #[arg(long = "interval", value_name = "SECS", default_value_t = 1.0, value_parser = secs, allow_negative_numbers = true)]
        interval: f64,
        /// Ping over UDP: one authenticated datagram each way
        #[arg(short = 'u', long = "udp")]
        udp: bool,
        #[command(flatten)]
        fleet: Fleet,
        /// The server (not with -H)
        #[arg(value_name = "HOST[:PORT]")]
        host: Option<String>,
    },
    /// Fetch a remote file (to LOCAL.part, checked, then renamed)
    #[command(override_usage = "ferry get [OPTIONS] HOST[:PORT] REMOTE [LOCAL]\n       ferry get [OPTIONS] -H HOSTS | --hostfile FILE REMOTE [DIR]")]
    Get {
        /// Resume from the size of an existing LOCAL.part (with -r: skip complete files, resume .part ones)
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        /// A directory and everything in it (one connection, pipelined); where it lands follows scp -r
        #[arg(short = 'r', long = "recursive")]
        recursive: bool,
        #[command(flatten)]
        digest: transfer::DigestFlag,
        #[command(flatten)]
        fleet: Fleet,
        /// The server (with -H, give REMOTE [LOCAL] only)
        #[arg(value_name = "HOST[:PORT]")]
        host: Option<String>,
        /// The file, relative to the served root
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
        /// Where to write [default: REMOTE's name here; into it if a directory; - for stdout; with -H, a directory: LOCAL/HOST/NAME]
        #[arg(value_name = "LOCAL")]
        local: Option<String>,
    },
    /// Send a file (checked by the server, replaced atomically)
    #[command(override_usage = "ferry put [OPTIONS] HOST[:PORT] LOCAL [REMOTE]\n       ferry put [OPTIONS] -H HOSTS | --hostfile FILE LOCAL [REMOTE]")]
    Put {
        /// A directory and everything in it (one connection, pipelined); where it lands follows scp -r
        #[arg(short = 'r', long = "recursive")]
        recursive: bool,
        /// With -r: skip the files the server already has whole (same size and digest)
        #[arg(short = 'c', long = "continue")]
        resume: bool,
        #[command(flatten)]
        digest: transfer::DigestFlag,
        #[command(flatten)]
        fleet: Fleet,
        /// The server (with -H, give LOCAL [REMOTE] only)
        #[arg(value_name = "HOST[:PORT]")]
        host: Option<String>,
        /// The file to send; - reads stdin
        #[arg(value_name = "LOCAL")]
        local: Option<String>,
        /// Where to put it [default: LOCAL's name in the root; into it if a directory]
        #[arg(value_name = "REMOTE")]
        remote: Option<String>,
    },
    /// List a remote directory, as ls -l
    Ls {
        /// Print the server's listing as a JSON array
        #[arg(long = "json")]
        json: bool,
        /// Everything under PATH, named by its path under it
        #[arg(short = 'R', long = "recursive")]
        recursive: bool,
        /// The server
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        /// The directory (or file), relative to the served root
        #[arg(value_name = "PATH", default_value = ".")]
        path: String,
    },
    /// Describe a remote path
    Stat {
        /// Print the stat fields as a JSON object
        #[arg(long = "json")]
        json: bool,
        /// The server
        #[arg(value_name = "HOST[:PORT]")]
        host: String,
        /// The path, relative to the served root
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Write the key's TLS client certificate and private key (DIR/ID.crt, DIR/ID.key, mode 0600) and its server certificate (DIR/ID-server.crt) for other TLS clients
    ExportTls {
        /// The directory to write into (created if missing)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Append a new random key to a keys file (created with mode 0600)
    ///
    /// Connects to nothing: -k, -i, -w, -v, -4 and -6 are accepted and ignored; -q applies.
    Keygen {
        /// The new key's id
        #[arg(long = "id", value_name = "ID", default_value = "default")]
        id: String,
        /// The keys file to append to (created 0600 if missing)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// The subcommand named on the command line, for the pointer to its help.
fn subcommand_named() -> Option<String> {
    std::env::args_os().skip(1).filter_map(|a| a.into_string().ok()).find(|a| subcommands().contains(a))
}

/// The subcommands' names, as clap knows them (`export-tls` included).
fn subcommands() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command().get_subcommands().map(|s| s.get_name().to_string()).collect()
}

/// A first word that is no subcommand and no HOST (see `client::typo`).
fn unknown_subcommand(args: &[String]) -> Option<String> {
    ferry::client::typo::unknown_subcommand(args, &subcommands())
}

/// Runs before std's start-up hides a closed stdout (`term::note_closed_stdout`).
#[used]
#[link_section = ".init_array"]
static NOTE_CLOSED_STDOUT: extern "C" fn() = ferry::term::note_closed_stdout;

fn main() -> ExitCode {
    // A write past RLIMIT_FSIZE (`ulimit -f`) fails with EFBIG, said as for a
    // full disk (the .part kept for -c), instead of killing us without a
    // word. ferry runs no program of its own, so nothing inherits this.
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if let Some(m) = unknown_subcommand(&args) {
        ferry::errln!("ferry: {}", ferry::term::escape(&m));
        return ExitCode::from(exit::USAGE as u8);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: to stdout, checked.
        Err(e) if !e.use_stderr() => {
            return ExitCode::from(ferry::term::clap_exit("ferry", &e, exit::USAGE, exit::FERRY_ERROR) as u8)
        }
        Err(e) if e.kind() == clap::error::ErrorKind::InvalidUtf8 => {
            ferry::errln!("ferry: {}", ferry::client::typo::not_utf8_argument());
            return ExitCode::from(exit::USAGE as u8);
        }
        Err(e) => {
            // One line: what was wrong, naming the argument, and where to look.
            let text = e.to_string();
            let para = text.split("\n\n").next().unwrap_or("");
            let words: Vec<&str> = para.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let first = words.join(" ");
            let first = first.trim_start_matches("error: ");
            let help = match subcommand_named() {
                Some(sub) => format!("ferry {sub} --help"),
                None => "ferry --help".into(),
            };
            ferry::errln!("ferry: {first} (see `{help}`)");
            return ExitCode::from(exit::USAGE as u8);
        }
    };
    ExitCode::from(real_main(cli).clamp(0, 255) as u8)
}

fn real_main(cli: Cli) -> i32 {
    let o = &cli.opts;
    if let (Some(host), Some(cmd)) = (&cli.host, &cli.cmd) {
        let sub = format!("{cmd:?}").split([' ', '{']).next().unwrap_or("").to_lowercase();
        return usage(format_args!("the subcommand comes first, then HOST: `ferry {sub} {host} ...`, not `ferry {host} {sub} ...`"));
    }
    let timeout = match o.timeout.map(|t| seconds(t, "-w")).transpose() {
        Ok(t) => t,
        Err(e) => {
            exit::say(&e);
            return 2;
        }
    };
    if let Some(Cmd::Put { resume: true, recursive: false, .. }) = &cli.cmd { return usage("put -c resumes a tree: use put -r -c (a single put is atomic, so a cut one left nothing to resume)"); }
    // Local commands: no transport to choose.
    if let Some(Cmd::Keygen { id, file }) = &cli.cmd {
        return cli::keygen(file, id, o.quiet);
    }
    if let Some(Cmd::ExportTls { dir }) = &cli.cmd {
        return match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
            Ok(key) => cli::export_tls(&key, dir, o.quiet),
            Err(e) => exit::fail(e),
        };
    }
    let env = std::env::var(transport::ENV).ok();
    let choice = match transport::Choice::from_flags(o.tls, o.plaintext, env.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    let opts = Options {
        timeout,
        family: if o.ipv4 { Family::V4 } else if o.ipv6 { Family::V6 } else { Family::Any },
        trace: o.verbose,
        transport: choice,
        digest: if let Some(Cmd::Get { digest, .. } | Cmd::Put { digest, .. }) = &cli.cmd { digest.digest } else { None },
    };
    if let Some(Cmd::Run { tty: 1.., no_stdin, udp, gather, fleet: f, .. }) = &cli.cmd {
        if let Some(m) = tty::conflict(*no_stdin, *udp, f.active(), f.json, *gather) { return usage(m); }
    }
    let fleet = match &cli.cmd {
        Some(Cmd::Run { fleet, .. } | Cmd::Ping { fleet, .. } | Cmd::Get { fleet, .. } | Cmd::Put { fleet, .. }) => Some(fleet),
        _ => None,
    };
    if let Some(f) = fleet.filter(|f| f.active()) {
        return fleet_main(&cli, f, &opts);
    }
    let gather = matches!(&cli.cmd, Some(Cmd::Run { gather: true, .. }));
    if fleet.is_some_and(|f| f.json || !f.exclude.is_empty()) || gather {
        // Name only the flags that were given.
        let given: Vec<&str> = [
            (fleet.is_some_and(|f| !f.exclude.is_empty()), "-x"),
            (gather, "-b"),
            (fleet.is_some_and(|f| f.json), "--json"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        let (last, rest) = given.split_last().expect("one was given");
        let named = if rest.is_empty() { last.to_string() } else { format!("{} and {last}", rest.join(", ")) };
        let verb = if rest.is_empty() { "goes" } else { "go" };
        return usage(&format!("{named} {verb} with -H or --hostfile"));
    }
    // Without -H the positionals are HOST then the rest, all required.
    let missing = match &cli.cmd {
        Some(Cmd::Run { host: None, .. } | Cmd::Ping { host: None, .. } | Cmd::Get { host: None, .. } | Cmd::Put { host: None, .. }) => {
            Some("HOST[:PORT] (or -H HOSTS)")
        }
        Some(Cmd::Run { command, tty: 0, .. }) if command.is_empty() => Some("COMMAND"),
        Some(Cmd::Get { remote: None, .. }) => Some("REMOTE"),
        Some(Cmd::Put { local: None, .. }) => Some("LOCAL"),
        _ => None,
    };
    if let Some(what) = missing {
        let sub = subcommand_named().unwrap_or_default();
        return usage(format_args!("missing {what} (see `ferry {sub} --help`)"));
    }
    let (host, port) = match &cli.cmd {
        Some(
            Cmd::Run { host: Some(host), .. }
            | Cmd::Ping { host: Some(host), .. }
            | Cmd::Get { host: Some(host), .. }
            | Cmd::Put { host: Some(host), .. }
            | Cmd::Ls { host, .. }
            | Cmd::Shell { host, .. }
            | Cmd::Stat { host, .. },
        ) => (host.as_str(), None),
        _ => (cli.host.as_deref().expect("clap requires HOST"), cli.port.as_deref()),
    };
    let target = match Target::parse(host, port) {
        Ok(t) => t,
        Err(e) => {
            exit::say(&e);
            return 2;
        }
    };
    // Output is decoded for run and the session only: files stay byte-exact.
    let label = match &cli.cmd {
        Some(Cmd::Run { encoding, .. }) => Some(encoding.as_deref().or(cli.encoding.as_deref())),
        Some(Cmd::Shell { encoding, .. }) => Some(encoding.as_deref().or(cli.encoding.as_deref())),
        None => Some(cli.encoding.as_deref()),
        Some(_) if cli.encoding.is_some() => {
            exit::say("--encoding applies to run and the session only");
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
                    exit::say(&e);
                    return 2;
                }
            }
        }
        None => None,
    };
    // Command lines that cannot work fail before the keys file is read.
    let late = match &cli.cmd {
        Some(Cmd::Get { remote: Some(r), local, resume, recursive: false, .. }) => transfer::get_usage(r, local.as_deref(), *resume),
        Some(Cmd::Put { local: Some(l), recursive: true, .. }) if l == "-" => Some("put -r sends a directory, not stdin".into()),
        Some(Cmd::Get { local: Some(l), recursive: true, .. }) if l == "-" => Some("get -r writes a directory, not stdout".into()),
        Some(Cmd::Put { local: Some(l), remote: None, .. }) if l == "-" => Some("put from stdin (-) needs REMOTE".into()),
        _ => None,
    };
    if let Some(m) = late {
        return usage(m);
    }
    let ui = transfer::Ui::new(o.quiet);
    let key = match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            exit::say(&e);
            return exit::FERRY_ERROR;
        }
    };
    match cli.cmd {
        Some(Cmd::Run { udp: true, command, argv, .. }) => udp::run(&target, &key, &opts, command, argv, encoding),
        // No command: the login shell (on pipes when stdin is not a terminal, as with ssh).
        Some(Cmd::Run { tty: t @ 1.., command, argv, .. }) if tty::wanted(t, o.quiet) => {
            cli::run_tty(&target, &key, &opts, &command, argv, encoding, o.quiet)
        }
        Some(Cmd::Shell { .. }) if tty::wanted(1, o.quiet) => cli::run_tty(&target, &key, &opts, &[], false, encoding, o.quiet),
        Some(Cmd::Shell { .. }) => cli::run(&target, &key, &opts, Vec::new(), false, true, encoding),
        Some(Cmd::Run { no_stdin, command, argv, .. }) => cli::run(&target, &key, &opts, command, argv, !no_stdin, encoding),
        Some(Cmd::Ping { count, interval, udp, .. }) => match seconds(interval, "--interval") {
            Ok(i) if udp => udp::ping(&target, &key, &opts, count, i, o.quiet),
            Ok(i) => cli::ping(&target, &key, &opts, count, i, o.quiet),
            Err(e) => {
                exit::say(&e);
                2
            }
        },
        Some(Cmd::Get { resume, remote: Some(remote), local, recursive: true, .. }) => {
            transfer::get_tree(&target, &key, &opts, ui, &remote, local.as_deref(), resume)
        }
        Some(Cmd::Put { local: Some(local), remote, recursive: true, resume, .. }) => {
            transfer::put_tree(&target, &key, &opts, ui, &local, remote.as_deref(), resume)
        }
        Some(Cmd::Get { resume, remote: Some(remote), local, .. }) => {
            transfer::get(&target, &key, &opts, ui, &remote, local.as_deref(), resume)
        }
        Some(Cmd::Put { local: Some(local), remote, .. }) => {
            transfer::put(&target, &key, &opts, ui, &local, remote.as_deref())
        }
        Some(Cmd::Get { .. } | Cmd::Put { .. }) => unreachable!("checked above"),
        Some(Cmd::Ls { json, path, recursive: true, .. }) => transfer::ls_tree(&target, &key, &opts, &path, json),
        Some(Cmd::Ls { json, path, .. }) => transfer::ls(&target, &key, &opts, &path, json),
        Some(Cmd::Stat { json, path, .. }) => transfer::stat(&target, &key, &opts, &path, json),
        Some(Cmd::Keygen { .. } | Cmd::ExportTls { .. }) => unreachable!("handled above"),
        None => cli::session(&target, &key, &opts, o.quiet, encoding),
    }
}

/// Whether `word` stands on its own before `--` after the subcommand (not
/// as an option's value): with -H, a word there is a second host, not the
/// command (`run -H h1 h2 -- true`).
fn host_word_before_dashes(word: &str) -> bool {
    const VALUED: [&str; 16] = [
        "-H", "--hosts", "--hostfile", "-x", "--exclude", "-f", "--fanout", "--encoding", "-k", "--keys", "-i", "--key-id",
        "-w", "--timeout", "-c", "--count",
    ];
    let args: Vec<String> = std::env::args_os().skip(1).filter_map(|a| a.into_string().ok()).collect();
    let Some(dashes) = args.iter().position(|a| a == "--") else { return false };
    let names = subcommands();
    let mut i = args.iter().position(|a| names.contains(a)).map_or(0, |p| p + 1);
    while i < dashes {
        let a = &args[i];
        if VALUED.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if a == word {
            return true;
        }
        i += 1;
    }
    false
}

fn usage(msg: impl std::fmt::Display) -> i32 {
    exit::say(msg);
    2
}

/// `run`, `ping`, `put` and `get` with `-H`/`--hostfile`: the positionals
/// shift left (there is no HOST), and one event loop serves every host.
fn fleet_main(cli: &Cli, fleet: &Fleet, opts: &Options) -> i32 {
    let o = &cli.opts;
    let mut specs = fleet.hosts.clone();
    if let Some(path) = &fleet.hostfile {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let before = specs.len();
                specs.extend(hosts::file_specs(&text));
                if specs.len() == before && fleet.hosts.is_empty() {
                    return usage(format_args!("--hostfile {}: no hosts in it (one or more a line, # comments)", path.display()));
                }
            }
            Err(e) => return usage(format_args!("--hostfile {}: {}", path.display(), ferry::client::io_text(&e))),
        }
    }
    let hosts = match hosts::resolve(&specs, &fleet.exclude) {
        Ok(h) => h,
        Err(e) => return usage(format_args!("-H: {e}")),
    };
    if fleet.fanout == 0 {
        return usage("-f must be at least 1");
    }
    let gather = matches!(cli.cmd, Some(Cmd::Run { gather: true, .. }));
    if gather && fleet.json {
        return usage("-b and --json cannot be combined");
    }
    let mode = if fleet.json {
        fanout::Mode::Json
    } else if gather {
        fanout::Mode::Gather
    } else {
        fanout::Mode::Stream
    };
    let way = match &cli.cmd {
        Some(Cmd::Get { recursive: true, host, remote, local, .. }) => match [host, remote, local].into_iter().flatten().collect::<Vec<_>>()[..] {
            [r] => Some(Way::Get { remote: r.clone(), dir: PathBuf::from(".") }),
            [r, l] if l != "-" => Some(Way::Get { remote: r.clone(), dir: PathBuf::from(l) }),
            _ => return usage("get -r -H HOSTS takes REMOTE [DIR]: each host's tree goes into DIR/HOST/"),
        },
        Some(Cmd::Put { recursive: true, host, local, remote, .. }) => match [host, local, remote].into_iter().flatten().collect::<Vec<_>>()[..] {
            [l] if l != "-" => Some(Way::Put { local: l.clone(), remote: None }),
            [l, r] if l != "-" => Some(Way::Put { local: l.clone(), remote: Some(r.clone()) }),
            _ => return usage("put -r -H HOSTS takes LOCAL [REMOTE] (a directory)"),
        },
        _ => None,
    };
    if let Some(way) = way {
        let resume = matches!(cli.cmd, Some(Cmd::Get { resume: true, .. } | Cmd::Put { resume: true, .. }));
        return match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
            Ok(key) => ferry::client::tree::fan::run(&hosts, &way, resume, fleet.fanout, &key, opts, fleet.json, o.quiet),
            Err(e) => exit::fail(e),
        };
    }
    let mut encoding = None;
    let op = match &cli.cmd {
        Some(Cmd::Run { host, command, encoding: label, udp, argv, .. }) => {
            if let Some(h) = host.as_deref().filter(|h| host_word_before_dashes(h)) {
                return usage(format_args!(
                    "\"{h}\": a second host before --: give -H h1,h2 (comma-separated), a range (-H 'web[1-3]') or -H again"
                ));
            }
            let words: Vec<String> = host.iter().chain(command).cloned().collect();
            if words.is_empty() {
                return usage("missing COMMAND; see ferry run --help");
            }
            let env = std::env::var_os(encoding::ENV).map(|v| v.to_string_lossy().into_owned());
            match encoding::choose(label.as_deref().or(cli.encoding.as_deref()), env.as_deref()) {
                Ok(e) => encoding = e,
                Err(e) => return usage(e),
            }
            if *udp {
                return udp_fleet(hosts, mode, o.quiet, encoding, opts, fanout::Op::Run { command: words, argv: *argv }, fleet.fanout, o);
            }
            fanout::Op::Run { command: words, argv: *argv }
        }
        Some(Cmd::Ping { host: Some(h), .. }) => return usage(format_args!("\"{h}\": give HOST or -H, not both")),
        Some(Cmd::Ping { count, interval, udp, .. }) => {
            let interval = match seconds(*interval, "--interval") {
                Ok(i) => i,
                Err(e) => return usage(e),
            };
            if *udp {
                let op = fanout::Op::Ping { count: *count, interval };
                return udp_fleet(hosts, mode, o.quiet, None, opts, op, fleet.fanout, o);
            }
            fanout::Op::Ping { count: *count, interval }
        }
        Some(Cmd::Get { resume, host, remote, local, .. }) => {
            if *resume {
                return usage("-c cannot be used with -H");
            }
            let words: Vec<&String> = [host, remote, local].into_iter().flatten().collect();
            let (remote, dir) = match words.as_slice() {
                [r] => (r.to_string(), "."),
                [r, l] => (r.to_string(), l.as_str()),
                _ => return usage("get -H HOSTS takes REMOTE [LOCAL]"),
            };
            if dir == "-" {
                return usage("get -H writes files into LOCAL/HOST/, not to stdout");
            }
            let name = remote.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string();
            if matches!(name.as_str(), "" | "." | "..") {
                return usage(format_args!("\"{remote}\" names no file to name the local ones after"));
            }
            fanout::Op::Get { remote, dir: PathBuf::from(dir), name }
        }
        Some(Cmd::Put { host, local, remote, .. }) => {
            let words: Vec<&String> = [host, local, remote].into_iter().flatten().collect();
            let (local, remote) = match words.as_slice() {
                [l] => (l.as_str(), None),
                [l, r] => (l.as_str(), Some(r.as_str())),
                _ => return usage("put -H HOSTS takes LOCAL [REMOTE]"),
            };
            if local == "-" {
                return usage("put -H sends a file, not stdin");
            }
            match fanout::put_op(local, remote) {
                Ok(op) => op,
                Err(e) => {
                    exit::say(&e);
                    return exit::FAILED;
                }
            }
        }
        _ => unreachable!("only run, ping, get and put take -H"),
    };
    if cli.encoding.is_some() && !matches!(op, fanout::Op::Run { .. }) {
        return usage("--encoding applies to run and the session only");
    }
    let key = match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            exit::say(&e);
            return exit::FERRY_ERROR;
        }
    };
    let plan = fanout::Plan { hosts, fanout: fleet.fanout, mode, quiet: o.quiet, encoding };
    fanout::run(&plan, &op, &key, opts)
}

#[allow(clippy::too_many_arguments)]
fn udp_fleet(
    hosts: Vec<hosts::Host>,
    mode: fanout::Mode,
    quiet: bool,
    encoding: Option<&'static encoding_rs::Encoding>,
    opts: &Options,
    op: fanout::Op,
    fanout: usize,
    o: &Opts,
) -> i32 {
    let key = match cli::load_key(o.keys.as_deref(), o.key_id.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            exit::say(&e);
            return exit::FERRY_ERROR;
        }
    };
    let plan = fanout::Plan { hosts, fanout, mode, quiet, encoding };
    fanout::run_udp(&plan, &op, &key, opts)
}
