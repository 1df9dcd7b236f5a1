//! Test support: a guard that runs the real `ferryd` on 127.0.0.1 port 0, and
//! a raw frame-level connection for conformance tests.
//!
//! Every wait here is bounded: socket reads have a timeout, log waits have a
//! deadline, and the daemon is killed if it does not stop on TERM.
#![allow(dead_code)]

pub mod pause;
pub mod pty;

use ferry::client::{Options, Session, Target};
use ferry::proto::auth::{self, Key};
use serde_json::{json, Map, Value};
use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous for two busy cores; a healthy daemon answers in milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

/// The captured stderr of a daemon, shared with the thread that reads it.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
    /// Set (under `lines`' lock) when the stream has ended: no line comes after.
    ended: AtomicBool,
}

impl Log {
    /// Waits until a line containing `needle` appears; returns it. None at
    /// the timeout, or as soon as the stream ends without such a line.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            if self.ended.load(Ordering::SeqCst) {
                return None;
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            lines = self.changed.wait_timeout(lines, left).unwrap().0;
        }
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A ferryd that did not get as far as listening.
#[derive(Debug)]
pub struct StartError {
    /// Its exit status (69 when it cannot bind); None when it was killed
    /// after WAIT with no word.
    pub code: Option<i32>,
    pub log: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ferryd did not report listening (exit status {:?}):\n{}", self.code, self.log)
    }
}

/// A running `ferryd`, stopped (TERM, then KILL) on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    pub keys_path: PathBuf,
    pub key: Key,
    pub log: Arc<Log>,
    _keys_dir: tempfile::TempDir,
}

pub fn ferryd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferryd")
}

pub fn ferry_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ferry")
}

/// A fresh keys file with one key, `test`, made at test time.
pub fn make_keys() -> (tempfile::TempDir, PathBuf, Key) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    ferry::keys::generate(&path, "test").unwrap();
    let key = ferry::keys::load(&path).unwrap().first().unwrap().clone();
    (dir, path, key)
}

/// Reads a child's stderr into a `Log` on a thread.
pub fn capture(stderr: impl Read + Send + 'static) -> Arc<Log> {
    let log = Arc::new(Log::default());
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("FERRY_TEST_LOG").is_some() {
                eprintln!("[ferryd] {line}");
            }
            l.lines.lock().unwrap().push(line);
            l.changed.notify_all();
        }
        let _held = l.lines.lock().unwrap();
        l.ended.store(true, Ordering::SeqCst);
        l.changed.notify_all();
    });
    log
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Starts ferryd with `extra` flags and waits for its "listening on" line.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::start_custom(extra, |_| {})
    }

    /// As `start_with`, with a last say on the command (limits, environment).
    /// No config file is read unless `extra` names one.
    pub fn start_custom(extra: &[&str], tweak: impl FnOnce(&mut Command)) -> Daemon {
        let root = tempfile::tempdir().unwrap();
        let (keys_dir, keys_path, key) = make_keys();
        let mut cmd = Command::new(ferryd_bin());
        cmd.args(["--listen", "127.0.0.1:0", "--foreground", "--log-level", "debug"])
            .arg("--root")
            .arg(root.path())
            .arg("--keys")
            .arg(&keys_path);
        if !extra.contains(&"--config") {
            cmd.args(["--config", "/dev/null"]);
        }
        cmd.args(extra);
        tweak(&mut cmd);
        Daemon::spawn(cmd, root, keys_dir, keys_path, key)
    }

    /// Starts ferryd from a config file alone: `listen`, `root` and `keys`
    /// are written into it, then `toml` (which may add keys and sections).
    /// Returns the daemon and the config file's path.
    pub fn start_config(toml: &str, extra: &[&str], tweak: impl FnOnce(&mut Command)) -> (Daemon, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let (keys_dir, keys_path, key) = make_keys();
        let file = keys_dir.path().join("ferryd.toml");
        let text = format!("listen = [\"127.0.0.1:0\"]\nroot = {:?}\nkeys = {:?}\n{toml}", root.path(), keys_path);
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new(ferryd_bin());
        cmd.arg("--config").arg(&file).args(extra);
        tweak(&mut cmd);
        (Daemon::spawn(cmd, root, keys_dir, keys_path, key), file)
    }

    /// As `start_config`, with ferryd started through `wrapper` (a program
    /// and its words, followed by ferryd's path and `--config FILE`), which
    /// must end by exec-ing it (so its pid is ferryd's).
    pub fn start_config_via(toml: &str, wrapper: &[&std::ffi::OsStr]) -> (Daemon, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let (keys_dir, keys_path, key) = make_keys();
        let file = keys_dir.path().join("ferryd.toml");
        let text = format!("listen = [\"127.0.0.1:0\"]\nroot = {:?}\nkeys = {:?}\n{toml}", root.path(), keys_path);
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..]).arg(ferryd_bin()).arg("--config").arg(&file);
        (Daemon::spawn(cmd, root, keys_dir, keys_path, key), file)
    }

    fn spawn(cmd: Command, root: tempfile::TempDir, keys_dir: tempfile::TempDir, keys_path: PathBuf, key: Key) -> Daemon {
        match Daemon::try_spawn(cmd, root, keys_dir, keys_path, key) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// As `spawn`; a ferryd that exits before it listens (a start-up
    /// failure, such as an address in use) is an Err with its exit status
    /// and log, not a panic.
    fn try_spawn(
        mut cmd: Command,
        root: tempfile::TempDir,
        keys_dir: tempfile::TempDir,
        keys_path: PathBuf,
        key: Key,
    ) -> Result<Daemon, StartError> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ferryd starts");
        let log = capture(child.stderr.take().unwrap());
        let Some(line) = log.wait_for("listening on ", WAIT) else {
            let _ = child.kill();
            let code = child.wait().ok().and_then(|st| st.code());
            return Err(StartError { code, log: log.text() });
        };
        let addr = line.rsplit("listening on ").next().unwrap().trim().parse().expect("an address");
        Ok(Daemon { child, addr, root, keys_path, key, log, _keys_dir: keys_dir })
    }

    /// Where the keys file and any config file of this daemon live.
    pub fn conf_dir(&self) -> &Path {
        self._keys_dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// A raw connection, hello already read.
    pub fn raw(&self) -> Raw {
        let mut r = Raw::connect(self.addr);
        let hello = r.frame().0;
        assert_eq!(hello["type"], "hello", "{hello}");
        r.server_nonce = hello["nonce"].as_str().unwrap().to_string();
        r
    }

    /// A raw connection past the handshake.
    pub fn authed(&self) -> Raw {
        let mut r = self.raw();
        r.auth(&self.key);
        r
    }

    /// A library client session.
    pub fn session(&self) -> Session {
        let target = Target { host: self.addr.ip().to_string(), port: self.addr.port() };
        Session::connect(&target, &self.key, &Options { timeout: Some(WAIT), ..Default::default() }).unwrap()
    }

    /// `ferry` with this daemon's keys file, and neither `$FERRY_KEYS` nor
    /// `$FERRY_ENCODING` from the test's environment.
    pub fn ferry(&self) -> Command {
        let mut c = Command::new(ferry_bin());
        c.arg("-k").arg(&self.keys_path).env_remove("FERRY_KEYS").env_remove("FERRY_ENCODING");
        c
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// `ferry put TARGET - REMOTE` running, its stdin a pipe the test
    /// writes, its stderr piped, its stdout dropped.
    pub fn put_from_pipe(&self, remote: &str) -> Child {
        self.ferry()
            .args(["put", &self.target(), "-", remote])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the daemon to exit; its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- ferryd log ---\n{}\n---", self.log.text());
        }
    }
}

pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Pids of the processes whose `/proc/PID/stat` fields after the
/// parenthesised command (`f[0]` the state, field 3; `f[1]` the parent
/// pid; `f[3]` the process group) satisfy `pred`.
pub fn pids_where(pred: impl Fn(&[&str]) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if !f.is_empty() && pred(&f) {
            out.push(pid);
        }
    }
    out
}

/// Pids of the processes whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<i32> {
    pids_where(|f| f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid))
}

/// Waits (bounded) until `f` holds.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A frame-level connection, the way any client in any language sees ferryd.
pub struct Raw {
    pub sock: TcpStream,
    pub server_nonce: String,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock.set_write_timeout(Some(WAIT)).unwrap();
        sock.set_nodelay(true).unwrap();
        Raw { sock, server_nonce: String::new() }
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, header: Value, body: &[u8]) {
        let bytes = frame(header, body);
        self.send_bytes(&bytes);
    }

    /// Reads one frame: the header as JSON and the body.
    pub fn frame(&mut self) -> (Value, Vec<u8>) {
        self.try_frame().expect("a frame")
    }

    pub fn try_frame(&mut self) -> std::io::Result<(Value, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.sock.read_exact(&mut len)?;
        let mut h = vec![0u8; u32::from_be_bytes(len) as usize];
        self.sock.read_exact(&mut h)?;
        let h: Value = serde_json::from_slice(&h).expect("the server sends JSON headers");
        let mut body = vec![0u8; h["size"].as_u64().unwrap_or(0) as usize];
        self.sock.read_exact(&mut body)?;
        Ok((h, body))
    }

    /// True once the server has closed the connection (EOF or reset), bounded by WAIT.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    pub fn auth(&mut self, key: &Key) {
        let cn = auth::to_hex(&auth::fresh_nonce());
        let mac = auth::client_mac(key.secret.as_bytes(), &self.server_nonce, &cn);
        self.send(json!({"type":"auth","key_id":key.id,"nonce":cn,"mac":mac}), b"");
        let (w, _) = self.frame();
        assert_eq!(w["type"], "welcome", "{w}");
        assert!(auth::verify_server_mac(key.secret.as_bytes(), &cn, &self.server_nonce, w["mac"].as_str().unwrap()));
    }

    /// One ping answered: the connection still serves requests.
    pub fn ping(&mut self) {
        self.send(json!({"type":"ping","id":"probe"}), b"");
        let (h, _) = self.frame();
        assert_eq!(h, json!({"type":"pong","id":"probe"}), "the connection serves the next request");
    }

    /// Reads an exec's replies up to `exit`: (stdout, stderr, exit header).
    pub fn exec_output(&mut self) -> (Vec<u8>, Vec<u8>, Value) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            let (h, body) = self.frame();
            match h["type"].as_str().unwrap() {
                "stdout" => out.extend(body),
                "stderr" => err.extend(body),
                "exit" => return (out, err, h),
                other => panic!("unexpected {other}: {h}"),
            }
        }
    }
}

pub fn frame(header: Value, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let Value::Object(m) = header else { panic!("header must be an object") };
    ferry::proto::encode_frame(&mut out, m, body);
    out
}

/// A frame with a hand-written header, for malformed cases.
pub fn raw_frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

pub fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

pub fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// A thread that SIGKILLs `pid` once `limit` has passed since now, and
/// returns as soon as the process is gone (checked every 50 ms: a child
/// being waited for has no readiness signal to offer a second thread).
pub fn kill_after(pid: i32, limit: Duration) -> std::thread::JoinHandle<()> {
    let t = Instant::now();
    std::thread::spawn(move || {
        while t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
    })
}

/// Runs `cmd` with `input` on stdin and everything captured; killed if it
/// outlives 2 × WAIT.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let watchdog = kill_after(child.id() as i32, WAIT * 2);
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    drop(watchdog);
    out
}

/// Runs `cmd` to its end with stdin from /dev/null and its output captured,
/// killed after `limit`; a command that cannot start panics naming `what`.
pub fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let child = child.unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let watchdog = kill_after(child.id() as i32, limit);
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    out
}

/// Every file under `dir` whose name marks an unfinished put (`.ferry-*`).
pub fn temp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.extend(temp_files(&e.path()));
        } else if name.starts_with(".ferry-") {
            out.push(e.path().display().to_string());
        }
    }
    out
}

/// Makes `cmd`'s process start with `resource` (`libc::RLIMIT_*`) limited
/// to `value`, soft and hard: RLIMIT_FSIZE stands in for a full disk,
/// RLIMIT_NOFILE for a process out of file descriptors.
pub fn limit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: libc::rlim_t) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit in the child before exec touches nothing shared.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
            if libc::setrlimit(resource, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Raises this test process's own open-files soft limit to its hard limit;
/// returns the limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

/// The SHA-256 of `bytes` in lowercase hex, as the protocol writes digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ferry::proto::auth::to_hex(&sha2::Sha256::digest(bytes))
}

/// Output bytes as text, invalid UTF-8 replaced (for asserts and messages).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

static VENVS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

/// A Python venv with `requirement` (say `ansible-core==2.19.14`) installed
/// from the Python package registry, made once and kept as
/// CARGO_TARGET_TMPDIR/NAME-venv-REQUIREMENT (`==` as `-`), or in the
/// directory `$override_var` names, for
/// later runs. A marker file is written last, so a run cut short leaves a
/// venv the next run makes again. Panics, saying what to install, when
/// python3 or its venv module is missing or pip fails.
pub fn python_venv(name: &str, requirement: &str, override_var: &str) -> PathBuf {
    let mut made = VENVS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, dir)) = made.iter().find(|(r, _)| r == requirement) {
        return dir.clone();
    }
    let dir = match std::env::var_os(override_var) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-venv-{}", requirement.replace("==", "-"))),
    };
    let ready = dir.join(".ferry-ready");
    if !ready.exists() {
        let t = Instant::now();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        let mut mk = Command::new("python3");
        mk.args(["-m", "venv"]).arg(&dir);
        let out = run_bounded(mk, Duration::from_secs(120), "python3 -m venv");
        assert!(
            out.status.success(),
            "cannot make a Python venv for {requirement} with `python3 -m venv` ({}): {}\n\
             install python3 and its venv module (Debian: apt-get install python3-venv)",
            out.status,
            text(&out.stderr)
        );
        let mut pip = Command::new(dir.join("bin/python3"));
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "-q", requirement]);
        let out = run_bounded(pip, Duration::from_secs(600), "pip install");
        assert!(
            out.status.success(),
            "cannot install {requirement} into {} from the Python package registry ({}):\n{}{}",
            dir.display(),
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        std::fs::write(&ready, requirement).unwrap();
        eprintln!("made the venv {} in {:.1} s", dir.display(), t.elapsed().as_secs_f64());
    }
    made.push((requirement.to_string(), dir.clone()));
    dir
}

/// Waits (bounded by WAIT) for `child` to exit; kills it and panics with
/// `what` if it does not.
pub fn wait_child(child: &mut Child, what: &str) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > WAIT {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Daemon {
    /// ferryd with a UDP socket on a free port of 127.0.0.1 too, and `extra` flags.
    pub fn start_udp(extra: &[&str]) -> Daemon {
        let mut args = vec!["--udp", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Daemon::start_with(&args)
    }

    /// The first UDP address of a daemon started with `--udp` (or `udp.listen`),
    /// from its `listening on ADDR:PORT/udp` line.
    pub fn udp_addr(&self) -> SocketAddr {
        let line = self.log.wait_for("/udp", WAIT).unwrap_or_else(|| panic!("no UDP listening line:\n{}", self.log.text()));
        line.rsplit("listening on ").next().unwrap().trim().trim_end_matches("/udp").parse().expect("an address")
    }
}

impl Daemon {
    /// ferryd listening on `listen` only (say `127.0.0.3:0`: 127.0.0.0/8 is
    /// all local on Linux), with `extra` flags. With `same_keys`, it holds
    /// that daemon's keys file (a fleet sharing one key); else a fresh key.
    pub fn start_on(listen: &str, same_keys: Option<&Daemon>, extra: &[&str]) -> Daemon {
        match Daemon::try_start_on(listen, same_keys, extra) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// As `start_on`; a ferryd that cannot start (say, `listen` is taken)
    /// is an Err.
    pub fn try_start_on(listen: &str, same_keys: Option<&Daemon>, extra: &[&str]) -> Result<Daemon, StartError> {
        let root = tempfile::tempdir().unwrap();
        let (keys_dir, keys_path, mut key) = make_keys();
        if let Some(d) = same_keys {
            std::fs::write(&keys_path, std::fs::read(&d.keys_path).unwrap()).unwrap();
            key = d.key.clone();
        }
        let mut cmd = Command::new(ferryd_bin());
        cmd.args(["--listen", listen, "--foreground", "--log-level", "debug", "--config", "/dev/null"])
            .arg("--root")
            .arg(root.path())
            .arg("--keys")
            .arg(&keys_path)
            .args(extra);
        Daemon::try_spawn(cmd, root, keys_dir, keys_path, key)
    }
}

/// A Unix datagram socket in a temp dir standing in for syslogd or a
/// service manager's NOTIFY_SOCKET; every read is bounded by WAIT.
pub struct Inbox {
    pub sock: UnixDatagram,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Inbox {
    pub fn new() -> Inbox {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        let sock = Inbox::bind(&path);
        Inbox { sock, path, _dir: dir }
    }

    fn bind(path: &Path) -> UnixDatagram {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(WAIT)).unwrap();
        sock
    }

    /// A new socket at the same path, as a restarted syslogd makes.
    pub fn rebind(&mut self) {
        std::fs::remove_file(&self.path).unwrap();
        self.sock = Inbox::bind(&self.path);
    }

    fn try_recv(&self) -> std::io::Result<String> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.sock.recv(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// The next datagram.
    pub fn recv(&self) -> String {
        self.try_recv().expect("a datagram within WAIT")
    }

    /// Reads datagrams until one contains `needle`; returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let mut seen = Vec::new();
        while seen.len() < 1000 {
            let msg = self.try_recv().unwrap_or_else(|e| panic!("no {needle:?} in {seen:?}: {e}"));
            if msg.contains(needle) {
                return msg;
            }
            seen.push(msg);
        }
        panic!("no {needle:?} in {seen:?}");
    }
}

/// A tiny deterministic generator (xorshift64) for test data and garbage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// A byte stream a frame-level client can use: TCP in clear, or TLS.
pub trait Duplex: Read + Write + Send {}
impl<T: Read + Write + Send> Duplex for T {}

/// A TLS session to `addr` for `key` (as `ferry --tls` makes), up to the
/// `hello` inside TLS: (stream, server nonce). A clear `hello` sent at accept
/// (the peer is in `plaintext_from`) is skipped.
pub fn tls_session(addr: SocketAddr, key: &Key) -> std::io::Result<(Box<dyn Duplex>, String)> {
    let mut t = TcpStream::connect(addr)?;
    t.set_read_timeout(Some(WAIT))?;
    t.set_write_timeout(Some(WAIT))?;
    t.set_nodelay(true)?;
    let mut conn = ferry::tls::connect(key).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    while conn.wants_write() {
        conn.write_tls(&mut t)?;
    }
    let mut first = [0u8; 1];
    if t.peek(&mut first)? == 1 && first[0] == 0 {
        let mut r = Raw { sock: t, server_nonce: String::new() };
        let (h, _) = r.try_frame()?;
        assert_eq!(h["type"], "hello", "the one clear frame is the greeting");
        t = r.sock;
    }
    let mut s: Box<dyn Duplex> = Box::new(rustls::StreamOwned::new(conn, t));
    let (h, _) = read_frame_from(&mut s)?;
    if h["type"] != "hello" {
        return Err(std::io::Error::other(format!("not a hello: {h}")));
    }
    Ok((s, h["nonce"].as_str().unwrap_or_default().to_string()))
}

/// Reads one frame from any stream: the header as JSON and the body.
pub fn read_frame_from(s: &mut dyn Read) -> std::io::Result<(Value, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut h = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut h)?;
    let h: Value = serde_json::from_slice(&h).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut body = vec![0u8; h["size"].as_u64().unwrap_or(0) as usize];
    s.read_exact(&mut body)?;
    Ok((h, body))
}

/// Plays an older ferryd (no `digests` in hello) for one connection, over
/// the v1 handshake: `stat` says not found (or, with `stat_dir`, a
/// directory), a put's body is checked against the sha256 of its header
/// (`digest-mismatch` when they differ: tests that expect success see it),
/// `symlink` and `mkdir` are answered ok, a recursive `list` holds one file
/// `f`, and a get of anything is answered with `file` and sha256 in `done`.
/// Returns the request headers seen.
pub fn old_server(listener: std::net::TcpListener, key: Key, file: Vec<u8>, stat_dir: bool) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let sn = auth::to_hex(&auth::fresh_nonce());
        s.write_all(&frame(json!({"type":"hello","proto":1,"server":"ferryd/0.0-old","auth":["hmac-sha256"],"nonce":sn}), b""))
            .unwrap();
        let (a, _) = read_frame_from(&mut s).unwrap();
        let cn = a["nonce"].as_str().unwrap().to_string();
        assert!(auth::verify_client_mac(key.secret.as_bytes(), &sn, &cn, a["mac"].as_str().unwrap()));
        s.write_all(&frame(json!({"type":"welcome","mac":auth::server_mac(key.secret.as_bytes(), &cn, &sn)}), b"")).unwrap();
        let mut seen = Vec::new();
        let ok = |h: &Value| frame(json!({"type":"ok","path":h["path"]}), b"");
        while let Ok((h, body)) = read_frame_from(&mut s) {
            seen.push(h.clone());
            let reply = match h["type"].as_str().unwrap() {
                "stat" if stat_dir => frame(json!({"type":"stat","name":h["path"],"kind":"dir","file_size":0,"mode":0o755,"mtime":1}), b""),
                "stat" => frame(json!({"type":"error","code":"not-found","message":"no"}), b""),
                "put" => {
                    let sha = sha256_hex(&body);
                    if h["sha256"].as_str() == Some(sha.as_str()) {
                        frame(json!({"type":"ok","path":h["path"],"file_size":body.len(),"sha256":sha}), b"")
                    } else {
                        frame(json!({"type":"error","code":"digest-mismatch","message":format!("sha256 {sha}, the header's {}", h["sha256"])}), b"")
                    }
                }
                "symlink" | "mkdir" => ok(&h),
                "list" => {
                    let l = json!([{"name":"f","kind":"file","file_size":file.len(),"mode":0o644,"mtime":1}]);
                    frame(json!({"type":"listing"}), l.to_string().as_bytes())
                }
                "get" => {
                    assert!(h.get("digest").is_none(), "an old server is asked for its default: {h}");
                    let mut f = frame(json!({"type":"file","path":h["path"],"file_size":file.len(),"mode":0o644,"mtime":1,"offset":0}), &file);
                    f.extend(frame(json!({"type":"done","sha256":sha256_hex(&file)}), b""));
                    f
                }
                _ => break,
            };
            s.write_all(&reply).unwrap();
        }
        seen
    })
}

/// `s` without terminal escape sequences (CSI ... letter).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
