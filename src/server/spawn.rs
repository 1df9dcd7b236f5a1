//! Starting a child: a `vfork`-style `clone` that hands back a pidfd, pipes
//! made non-blocking by `pipe2`, and an environment prepared once.
//!
//! `Spawner` is made once by the server (and by the unit-test harness). It
//! holds what every spawn shares: the environment children start from (the
//! daemon's, without `NOTIFY_SOCKET`, or only `PATH`, `HOME` and `LANG` under
//! `exec.env_clear`), prepared as a C array once per configuration and again
//! on a HUP reload; `/dev/null` opened once; a stack for the child's first
//! instructions; the signals whose handlers the child must drop; and whether
//! the kernel gives pidfds. A spawn copies the environment only when the
//! request adds variables of its own.
//!
//! `Spawner::spawn` takes a `Spec`: program, argv, extra variables, cwd, the
//! three descriptors the child gets as 0, 1 and 2 (`Stdio::Null` or a
//! descriptor of the caller's), and the session: `Session::Group` (a process
//! group of its own, for `exec`) or `Session::Terminal` (a session of its own
//! with its stdin as the controlling terminal: `setsid` and `TIOCSCTTY`, for a
//! PTY). The child's three descriptors are made blocking, whatever flags the
//! caller's ends carry, so the same `pipe2(O_NONBLOCK | O_CLOEXEC)` pipe serves
//! both ends (`pipe`). A program without a `/` is searched in the `PATH` the
//! child gets, as execvp(3) does.
//!
//! The child is watched through a pidfd (`CLONE_PIDFD`, Linux 5.2) that the
//! caller registers in its poll: it becomes readable when the child exits.
//! On a kernel without pidfds (`pidfd_open` fails at startup), or when
//! `FERRYD_TEST_NO_PIDFD` is set in ferryd's environment (for the tests of that
//! path), `Child::pidfd` is None and the caller reaps on SIGCHLD instead.
//!
//! Why not std's `Command`: per spawn it captured the whole environment into
//! a map and copied it into a new C array (ferryd removes `NOTIFY_SOCKET`, so
//! there was always a change), opened `/dev/null`, made pipes that then took
//! an ioctl each to become non-blocking, and gave no pidfd, so every exit
//! cost a SIGCHLD through signal-hook's socketpair and a scan of every
//! connection. glibc's `posix_spawn` avoids the map but maps and unmaps a
//! stack per spawn, and neither can clear `O_NONBLOCK` on the child's side of
//! a pipe. Measured by `spawn_cost` in the tests below (see BENCHMARKS.md).
//!
//! May import nothing else of the crate: the PTY path and `ops::exec` both
//! build on it.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

/// The variables `exec.env_clear` keeps from the daemon's environment.
pub const KEPT_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];

/// The search path when the child's environment has no `PATH`, as glibc's execvp uses.
pub const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Set in ferryd's environment, any value: no pidfds, SIGCHLD reaps (tests).
pub const NO_PIDFD_ENV: &str = "FERRYD_TEST_NO_PIDFD";

/// The child's stack: its code runs on it from `clone` until `execve`.
const STACK: usize = 64 * 1024;

/// A pipe whose two ends are non-blocking and close-on-exec: (read, write).
/// Give one end to `spawn` (the child's copy is made blocking there) and keep
/// the other.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the child gets as one of its descriptors 0, 1 and 2.
#[derive(Clone, Copy)]
pub enum Stdio<'a> {
    /// `/dev/null` (read for 0, write for 1 and 2).
    Null,
    /// This descriptor, duplicated. Its open file description is made
    /// blocking: give a descriptor that only the child reads or writes (a
    /// pipe's end, a PTY's slave side); the caller may keep it open.
    Fd(BorrowedFd<'a>),
}

/// Where the child stands among processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Session {
    /// A process group of its own (its pid), so a signal to the group
    /// reaches everything it starts.
    Group,
    /// A session of its own, with its stdin (a PTY's slave side) as the
    /// controlling terminal: `setsid` then `ioctl(0, TIOCSCTTY)`.
    Terminal,
}

/// One child to start.
pub struct Spec<'a> {
    /// A path, or a name searched in the child's `PATH`.
    pub program: &'a OsStr,
    /// Its arguments, `argv[0]` included.
    pub argv: &'a [&'a OsStr],
    /// Variables set on top of the prepared environment.
    pub env: &'a BTreeMap<String, String>,
    pub cwd: &'a Path,
    /// Descriptors 0, 1 and 2 of the child.
    pub stdio: [Stdio<'a>; 3],
    pub session: Session,
}

/// A started child: its pid and, where the kernel gives one, a pidfd that
/// becomes readable once it exits. Dropping it neither kills nor reaps.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

impl Child {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    /// Register it for `READABLE` to learn that the child exited. None: the
    /// caller reaps on SIGCHLD.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// Reaps the child if it has exited. The pidfd is closed once it is reaped.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.wait_flags(libc::WNOHANG)
    }

    /// Waits for the child to exit and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        Ok(self.wait_flags(0)?.expect("a blocking wait returns a status"))
    }

    fn wait_flags(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own unreaped child writes one int we own.
            // The pid cannot have been reused: a child is not recycled before
            // its parent reaps it, and only this `Child` reaps it.
            let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if r == 0 {
                return Ok(None);
            }
            if r == self.pid {
                self.pidfd = None;
                return Ok(Some(ExitStatus::from_raw(status)));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The environment children start from, as `execve` takes it.
struct Env {
    /// `NAME=value` strings.
    vars: Vec<CString>,
    /// Pointers into `vars`, then a null.
    ptrs: Vec<*const libc::c_char>,
    /// Its `PATH`, if any.
    path: Option<Vec<u8>>,
}

impl Env {
    /// The daemon's environment without `NOTIFY_SOCKET` (the daemon's line to
    /// its service manager is not the command's); with `clear`, only `KEPT_ENV`.
    fn prepare(clear: bool) -> Env {
        let vars: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| k != "NOTIFY_SOCKET" && (!clear || KEPT_ENV.iter().any(|n| k == n)))
            .filter_map(|(k, v)| {
                let mut s = k.into_vec();
                s.push(b'=');
                s.extend_from_slice(v.as_bytes());
                CString::new(s).ok()
            })
            .collect();
        let path = vars.iter().find_map(|v| v.as_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec));
        let mut ptrs: Vec<*const libc::c_char> = vars.iter().map(|v| v.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Env { vars, ptrs, path }
    }
}

/// The signals whose handlers the child drops before it unblocks signals
/// (so no handler of the daemon's runs in the child, which shares its
/// memory until `execve`), plus SIGPIPE, which Rust ignores and every
/// program expects at its default.
fn signals_to_reset() -> Vec<libc::c_int> {
    let mut out = vec![libc::SIGPIPE];
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        // SAFETY: sigaction with a null new action only reads the current one into `old`.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0
            && old.sa_sigaction != libc::SIG_DFL
            && old.sa_sigaction != libc::SIG_IGN
        {
            out.push(sig);
        }
    }
    out
}

/// True when the kernel gives pidfds (and the tests did not turn them off
/// with `FERRYD_TEST_NO_PIDFD`).
pub fn pidfds_available() -> bool {
    if std::env::var_os(NO_PIDFD_ENV).is_some() {
        return false;
    }
    // SAFETY: pidfd_open(2) on our own pid returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the descriptor was just made and is ours alone.
    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    true
}

/// The child's stack, mapped once with a guard page below it.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        let page = 4096;
        let len = STACK + page;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK, -1, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the lowest page of the mapping we own becomes the guard.
        unsafe { libc::mprotect(base, page, libc::PROT_NONE) };
        Ok(Stack { base, len })
    }

    /// The top (stacks grow down on every architecture Linux runs ferry on).
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of our own mapping, 16-byte aligned.
        unsafe { (self.base as *mut u8).add(self.len) as *mut libc::c_void }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no child runs on it (a spawn returns
        // only once the child has exec'd or exited).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// Starts children. See the module doc. Not `Sync`: one thread spawns.
pub struct Spawner {
    env: Env,
    env_clear: bool,
    null_in: OwnedFd,
    null_out: OwnedFd,
    stack: Stack,
    reset: Vec<libc::c_int>,
    pidfd: bool,
}

impl Spawner {
    /// Prepares the environment (`exec.env_clear`: `env_clear`); `pidfd`:
    /// whether children come with a pidfd (`pidfds_available`). Make it after
    /// the daemon's signal handlers are installed.
    pub fn new(env_clear: bool, pidfd: bool) -> io::Result<Spawner> {
        let open = |flags| -> io::Result<OwnedFd> {
            // SAFETY: open(2) of a constant path; the result is checked.
            let fd = unsafe { libc::open(c"/dev/null".as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        Ok(Spawner {
            env: Env::prepare(env_clear),
            env_clear,
            null_in: open(libc::O_RDONLY)?,
            null_out: open(libc::O_WRONLY)?,
            stack: Stack::new()?,
            reset: signals_to_reset(),
            pidfd,
        })
    }

    /// Prepares the environment again (a HUP reload; `exec.env_clear` may have changed).
    pub fn set_env_clear(&mut self, env_clear: bool) {
        self.env = Env::prepare(env_clear);
        self.env_clear = env_clear;
    }

    /// Whether children come with a pidfd (else: reap on SIGCHLD).
    pub fn uses_pidfd(&self) -> bool {
        self.pidfd
    }

    /// Forces the SIGCHLD path (tests of the fallback).
    pub fn without_pidfd(mut self) -> Spawner {
        self.pidfd = false;
        self
    }

    /// The `PATH` children get unless a request sets its own.
    pub fn path(&self) -> Option<&OsStr> {
        self.env.path.as_deref().map(OsStr::from_bytes)
    }

    /// Starts the child `spec` describes. It has begun its program (or failed
    /// to, which is the error) when this returns.
    pub fn spawn(&self, spec: &Spec) -> io::Result<Child> {
        let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the program, an argument, the directory or the environment");
        let program = CString::new(spec.program.as_bytes()).map_err(nul)?;
        let argv: Vec<CString> = spec.argv.iter().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>().map_err(nul)?;
        // Sized with its null at once (a collect then a push would grow it).
        let mut argv_ptrs: Vec<*const libc::c_char> = Vec::with_capacity(argv.len() + 1);
        argv_ptrs.extend(argv.iter().map(|a| a.as_ptr()));
        argv_ptrs.push(std::ptr::null());
        let cwd = CString::new(spec.cwd.as_os_str().as_bytes()).map_err(nul)?;

        // The environment: the prepared array itself unless the request adds
        // variables; then the prepared entries they do not override, and theirs.
        let extra: Vec<CString>;
        let merged: Vec<*const libc::c_char>;
        let mut path = self.env.path.as_deref();
        let envp = if spec.env.is_empty() {
            self.env.ptrs.as_ptr()
        } else {
            extra = spec.env.iter().map(|(k, v)| CString::new(format!("{k}={v}"))).collect::<Result<_, _>>().map_err(nul)?;
            if spec.env.keys().any(|k| k.is_empty() || k.contains('=')) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "an environment variable name that is empty or has a '='"));
            }
            let overridden = |v: &CStr| {
                let b = v.to_bytes();
                let name = &b[..b.iter().position(|&c| c == b'=').unwrap_or(b.len())];
                std::str::from_utf8(name).is_ok_and(|n| spec.env.contains_key(n))
            };
            let mut m: Vec<*const libc::c_char> =
                self.env.vars.iter().filter(|v| !overridden(v)).map(|v| v.as_ptr()).collect();
            m.extend(extra.iter().map(|v| v.as_ptr()));
            m.push(std::ptr::null());
            if let Some(p) = spec.env.get("PATH") {
                path = Some(p.as_bytes());
            }
            merged = m;
            merged.as_ptr()
        };
        // A bare name is searched in the child's PATH: in the child, in a
        // buffer allocated here (no allocation happens in the child).
        let search = !program.as_bytes().contains(&b'/');
        let path: &[u8] = if search { path.unwrap_or(DEFAULT_PATH.as_bytes()) } else { b"" };
        let mut buf = vec![0u8; if search { path.len() + program.as_bytes().len() + 3 } else { 0 }];

        let fd = |i: usize| match spec.stdio[i] {
            Stdio::Null if i == 0 => self.null_in.as_raw_fd(),
            Stdio::Null => self.null_out.as_raw_fd(),
            Stdio::Fd(f) => f.as_raw_fd(),
        };
        let args = ChildArgs {
            program: program.as_ptr(),
            search,
            path: path.as_ptr(),
            path_len: path.len(),
            buf: buf.as_mut_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp,
            cwd: cwd.as_ptr(),
            fds: [fd(0), fd(1), fd(2)],
            terminal: spec.session == Session::Terminal,
            reset: self.reset.as_ptr(),
            reset_len: self.reset.len(),
            errno: AtomicI32::new(0),
        };

        // SAFETY: see `clone_child`'s safety argument. Every signal is blocked
        // from before the clone until the child has reset its dispositions,
        // and again in the parent until here.
        let (pid, pidfd) = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let r = clone_child(&args, self.stack.top(), self.pidfd);
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            r
        }?;
        let mut child = Child { pid, pidfd };
        let errno = args.errno.load(Ordering::Acquire);
        if errno != 0 {
            let _ = child.wait();
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(child)
    }

    #[cfg(test)]
    pub fn env_clear(&self) -> bool {
        self.env_clear
    }
}

/// What the child needs, all prepared by the parent: raw pointers into the
/// parent's memory, which the child shares (read-only but for `errno` and
/// `buf`) until it execs or exits.
struct ChildArgs {
    program: *const libc::c_char,
    search: bool,
    path: *const u8,
    path_len: usize,
    /// Room for `dir/program` and a NUL, when `search`.
    buf: *mut u8,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    fds: [RawFd; 3],
    terminal: bool,
    reset: *const libc::c_int,
    reset_len: usize,
    /// Set by the child when it fails before or at `execve`.
    errno: AtomicI32,
}

/// Clones a child that shares our memory and runs `child_main` on `stack`
/// until it execs or exits; we are suspended until then (`CLONE_VFORK`).
///
/// # Safety
/// This is what glibc's `posix_spawn` does, for the same reasons:
/// - `CLONE_VM | CLONE_VFORK`: no page tables are copied, and the parent
///   does not run while the child uses its memory, so nothing the child reads
///   (`ChildArgs` and what it points to, all alive in the caller's frame)
///   changes under it, and the parent's stack is untouched: the child runs on
///   `stack`, ours alone, which no other child uses at the same time (one
///   spawn at a time: `Spawner` is not `Sync`, and a spawn returns only once
///   its child is gone from the stack).
/// - The child calls only async-signal-safe functions (sigaction, dup2,
///   fcntl, setpgid, setsid, ioctl, chdir, sigprocmask, execve, _exit): no
///   allocation, no lock, no unwinding, nothing that would see the parent's
///   state half-changed.
/// - Signals are blocked by the caller across the clone. The child resets
///   every handler the daemon installed to its default before it restores a
///   signal mask, so no handler of the daemon's runs in the child (its
///   handler table is its own: no `CLONE_SIGHAND`).
/// - Its only write to shared memory is `errno` (an atomic) and `buf`.
unsafe fn clone_child(args: &ChildArgs, stack: *mut libc::c_void, want_pidfd: bool) -> io::Result<(i32, Option<OwnedFd>)> {
    let mut pidfd: libc::c_int = -1;
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if want_pidfd {
        flags |= libc::CLONE_PIDFD;
    }
    let pid = libc::clone(
        child_main,
        stack,
        flags,
        args as *const ChildArgs as *mut libc::c_void,
        &mut pidfd as *mut libc::c_int,
    );
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // A kernel that predates CLONE_PIDFD ignores the flag and leaves -1.
    let pidfd = (pidfd >= 0).then(|| OwnedFd::from_raw_fd(pidfd));
    Ok((pid, pidfd))
}

/// The child, from `clone` to `execve`. See `clone_child`.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent keeps alive; every
    // call below is async-signal-safe and touches only what it points to.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |a: &ChildArgs| -> ! {
            a.errno.store(*libc::__errno_location(), Ordering::Release);
            libc::_exit(127)
        };
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for i in 0..a.reset_len {
            libc::sigaction(*a.reset.add(i), &dfl, std::ptr::null_mut());
        }
        // 0, 1 and 2 from the descriptors given; a source that is itself one
        // of 0..2 (and not its own target) is moved out of the way first.
        let mut fds = a.fds;
        for i in 0..3 {
            if fds[i] < 3 && fds[i] != i as RawFd {
                fds[i] = libc::fcntl(fds[i], libc::F_DUPFD_CLOEXEC, 3);
                if fds[i] < 0 {
                    fail(a);
                }
            }
        }
        for (i, &f) in fds.iter().enumerate() {
            let target = i as RawFd;
            let ok = if f == target { libc::fcntl(target, libc::F_SETFD, 0) } else { libc::dup2(f, target) };
            if ok < 0 {
                fail(a);
            }
            let fl = libc::fcntl(target, libc::F_GETFL);
            if fl >= 0 && fl & libc::O_NONBLOCK != 0 && libc::fcntl(target, libc::F_SETFL, fl & !libc::O_NONBLOCK) < 0 {
                fail(a);
            }
        }
        if a.terminal {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                fail(a);
            }
        } else if libc::setpgid(0, 0) < 0 {
            fail(a);
        }
        if libc::chdir(a.cwd) < 0 {
            fail(a);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) < 0 {
            fail(a);
        }
        if !a.search {
            libc::execve(a.program, a.argv, a.envp);
            fail(a);
        }
        // execvp's search: every entry of PATH in turn (an empty one is the
        // current directory); EACCES is remembered and the search goes on,
        // as it does past a missing file.
        let name = CStr::from_ptr(a.program).to_bytes();
        let path = std::slice::from_raw_parts(a.path, a.path_len);
        let mut denied = false;
        for dir in path.split(|&b| b == b':') {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut n = 0;
            for part in [dir, b"/", name, b"\0"] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), a.buf.add(n), part.len());
                n += part.len();
            }
            libc::execve(a.buf as *const libc::c_char, a.argv, a.envp);
            match *libc::__errno_location() {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ELOOP | libc::ENAMETOOLONG | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => fail(a),
            }
        }
        if denied {
            *libc::__errno_location() = libc::EACCES;
        } else {
            *libc::__errno_location() = libc::ENOENT;
        }
        fail(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    fn os(v: &[&'static str]) -> Vec<&'static OsStr> {
        v.iter().map(|s| OsStr::new(*s)).collect()
    }

    /// Waits up to 10 s for `fd` to be readable.
    fn readable(fd: BorrowedFd, within: Duration) -> bool {
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd we own.
        unsafe { libc::poll(&mut p, 1, within.as_millis() as i32) == 1 }
    }

    /// Everything until EOF from a non-blocking descriptor, bounded in time.
    fn read_all(fd: OwnedFd) -> String {
        let mut f = std::fs::File::from(fd);
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no EOF within 10 s");
                    readable(std::os::fd::AsFd::as_fd(&f), Duration::from_millis(100));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        String::from_utf8(out).unwrap()
    }

    struct Run {
        status: ExitStatus,
        out: String,
        err: String,
    }

    /// Runs argv with piped stdin (given `input`), stdout and stderr.
    fn run(sp: &Spawner, argv: &[&'static str], env: &[(&str, &str)], input: &[u8]) -> io::Result<Run> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let argv = os(argv);
        let spec = Spec {
            program: argv[0],
            argv: &argv,
            env: &env,
            cwd: Path::new("/"),
            stdio: [Stdio::Fd(in_r.as_fd()), Stdio::Fd(out_w.as_fd()), Stdio::Fd(err_w.as_fd())],
            session: Session::Group,
        };
        let mut child = sp.spawn(&spec)?;
        drop((in_r, out_w, err_w));
        // Our ends stay non-blocking.
        // SAFETY: F_GETFL on a descriptor we own.
        assert_ne!(unsafe { libc::fcntl(out_r.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK, 0);
        let mut w = std::fs::File::from(in_w);
        w.write_all(input).unwrap();
        drop(w);
        let out = read_all(out_r);
        let err = read_all(err_r);
        if let Some(fd) = child.pidfd() {
            assert!(readable(fd, Duration::from_secs(10)), "the pidfd says the child exited");
        }
        let status = child.wait()?;
        Ok(Run { status, out, err })
    }

    #[test]
    fn a_child_gets_its_pipes_blocking_and_its_exit_status_comes_back() {
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let script = "cat; echo err >&2; for fd in 0 1 2; do grep ^flags /proc/self/fdinfo/$fd; done; exit 3";
        let r = run(&sp, &["/bin/sh", "-c", script], &[], b"stdin bytes\n").unwrap();
        assert_eq!(r.status.code(), Some(3));
        assert_eq!(r.err, "err\n");
        let mut lines = r.out.lines();
        assert_eq!(lines.next(), Some("stdin bytes"));
        for l in lines {
            // fdinfo flags are octal; grep's own descriptors are the child's.
            let flags = u32::from_str_radix(l.trim_start_matches("flags:").trim(), 8).unwrap();
            assert_eq!(flags & libc::O_NONBLOCK as u32, 0, "{l}");
        }
    }

    #[test]
    fn a_child_has_a_group_of_its_own_default_sigpipe_and_no_blocked_signals() {
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let script = "read pid comm state ppid pgrp sess rest < /proc/$$/stat; echo $pid $pgrp $sess";
        let r = run(&sp, &["/bin/sh", "-c", script], &[], b"").unwrap();
        let ids: Vec<i64> = r.out.trim().split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(ids[0], ids[1], "its pid is its group: {ids:?}");
        assert_ne!(ids[0], ids[2], "not a session leader: {ids:?}");
        // The program spawned reads its own masks (a shell would show its
        // own, which it changes while it waits for a child).
        let r = run(&sp, &["/bin/grep", "-E", "^(SigBlk|SigIgn)", "/proc/self/status"], &[], b"").unwrap();
        assert_eq!(r.out.lines().count(), 2, "{}", r.out);
        for l in r.out.lines() {
            let mask = u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
            if l.starts_with("SigBlk") {
                assert_eq!(mask, 0, "{l}");
            } else {
                assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE not ignored: {l}");
            }
        }
    }

    #[test]
    fn the_environment_is_prepared_and_a_request_adds_to_it() {
        let sp = Spawner::new(true, pidfds_available()).unwrap();
        assert!(sp.env_clear());
        let r = run(&sp, &["/usr/bin/env"], &[("FOO", "bar"), ("HOME", "/elsewhere")], b"").unwrap();
        let mut names: Vec<&str> = r.out.lines().map(|l| l.split('=').next().unwrap()).collect();
        names.sort();
        let mut want: Vec<&str> = KEPT_ENV.iter().copied().filter(|n| std::env::var_os(n).is_some() || *n == "HOME").collect();
        want.push("FOO");
        want.sort();
        assert_eq!(names, want, "{}", r.out);
        assert!(r.out.lines().any(|l| l == "HOME=/elsewhere"), "the request's value wins: {}", r.out);
        assert!(r.out.lines().any(|l| l == "FOO=bar"));
        let e = run(&sp, &["/usr/bin/env"], &[("A\0B", "x")], b"").err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_bare_name_is_searched_in_the_childs_path() {
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\necho tool ran\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let noexec = tempfile::tempdir().unwrap();
        std::fs::write(noexec.path().join("tool"), "#!/bin/sh\necho wrong\n").unwrap();
        let path = format!("/nonexistent::{}:{}", noexec.path().display(), dir.path().display());
        let r = run(&sp, &["tool"], &[("PATH", &path)], b"").unwrap();
        assert_eq!((r.status.code(), r.out.as_str()), (Some(0), "tool ran\n"));
        let only_noexec = format!("{}", noexec.path().display());
        let e = run(&sp, &["tool"], &[("PATH", &only_noexec)], b"").err().unwrap();
        assert_eq!(e.raw_os_error(), Some(libc::EACCES));
        let e = run(&sp, &["no-such-tool-here"], &[], b"").err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = run(&sp, &["/nonexistent/tool"], &[], b"").err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn without_pidfds_there_is_none_and_waiting_still_works() {
        let sp = Spawner::new(false, pidfds_available()).unwrap().without_pidfd();
        assert!(!sp.uses_pidfd());
        let r = run(&sp, &["/bin/sh", "-c", "kill -TERM $$"], &[], b"").unwrap();
        assert_eq!(r.status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_terminal_session_has_the_pty_as_its_controlling_tty() {
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills two descriptors; the rest may be null.
        let r = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
        // SAFETY: fresh descriptors, ours alone.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let env = BTreeMap::new();
        let argv = os(&["/bin/sh", "-c", "read pid comm state ppid pgrp sess rest < /proc/$$/stat; echo $pid $sess; tty; [ -t 0 ] && [ -t 2 ] && echo isatty"]);
        let spec = Spec {
            program: argv[0],
            argv: &argv,
            env: &env,
            cwd: Path::new("/"),
            stdio: [Stdio::Fd(slave.as_fd()), Stdio::Fd(slave.as_fd()), Stdio::Fd(slave.as_fd())],
            session: Session::Terminal,
        };
        let mut child = sp.spawn(&spec).unwrap();
        drop(slave);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0));
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        // Reading the master after the slave's last close ends in EIO.
        while readable(f.as_fd(), Duration::from_secs(10)) {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        let out = String::from_utf8_lossy(&out).replace('\r', "");
        let mut lines = out.lines();
        let ids: Vec<&str> = lines.next().unwrap().split(' ').collect();
        assert_eq!(ids[0], ids[1], "a session leader: {out}");
        assert!(lines.next().unwrap().starts_with("/dev/pts/"), "{out}");
        assert_eq!(lines.next(), Some("isatty"), "{out}");
    }

    /// Time and CPU per spawn+wait of /bin/true: std's `Command` (as ferryd
    /// used it), glibc's `posix_spawn` with the same stdio, and `Spawner`.
    /// `cargo test --release spawn_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn spawn_cost() {
        use std::os::unix::process::CommandExt;
        const N: usize = 2000;
        let cpu = || {
            // SAFETY: getrusage fills the struct we pass.
            let mut u: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
            let t = |v: libc::timeval| v.tv_sec as f64 * 1e6 + v.tv_usec as f64;
            t(u.ru_utime) + t(u.ru_stime)
        };
        let sp = Spawner::new(false, pidfds_available()).unwrap();
        let env = BTreeMap::new();
        let argv = os(&["/bin/true"]);
        let std_cmd = || {
            let mut c = std::process::Command::new("/bin/true")
                .env_remove("NOTIFY_SOCKET")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .current_dir("/")
                .spawn()
                .unwrap();
            let out = mio::unix::pipe::Receiver::from(c.stdout.take().unwrap());
            let err = mio::unix::pipe::Receiver::from(c.stderr.take().unwrap());
            out.set_nonblocking(true).unwrap();
            err.set_nonblocking(true).unwrap();
            c.wait().unwrap();
        };
        let posix = || {
            let (out_r, out_w) = pipe().unwrap();
            let (err_r, err_w) = pipe().unwrap();
            // SAFETY: the attribute and file-action objects live on this frame
            // and are destroyed here; every pointer passed is alive.
            unsafe {
                let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
                let mut at: libc::posix_spawnattr_t = std::mem::zeroed();
                libc::posix_spawn_file_actions_init(&mut fa);
                libc::posix_spawn_file_actions_adddup2(&mut fa, sp.null_in.as_raw_fd(), 0);
                libc::posix_spawn_file_actions_adddup2(&mut fa, out_w.as_raw_fd(), 1);
                libc::posix_spawn_file_actions_adddup2(&mut fa, err_w.as_raw_fd(), 2);
                libc::posix_spawnattr_init(&mut at);
                libc::posix_spawnattr_setflags(&mut at, (libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGDEF | libc::POSIX_SPAWN_SETSIGMASK) as _);
                let mut pid = 0;
                let prog = c"/bin/true";
                let argv = [prog.as_ptr(), std::ptr::null()];
                let r = libc::posix_spawn(&mut pid, prog.as_ptr(), &fa, &at, argv.as_ptr() as _, sp.env.ptrs.as_ptr() as _);
                assert_eq!(r, 0);
                libc::posix_spawn_file_actions_destroy(&mut fa);
                libc::posix_spawnattr_destroy(&mut at);
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            drop((out_r, out_w, err_r, err_w));
        };
        let ours = || {
            let (out_r, out_w) = pipe().unwrap();
            let (err_r, err_w) = pipe().unwrap();
            let spec = Spec {
                program: argv[0],
                argv: &argv,
                env: &env,
                cwd: Path::new("/"),
                stdio: [Stdio::Null, Stdio::Fd(out_w.as_fd()), Stdio::Fd(err_w.as_fd())],
                session: Session::Group,
            };
            let mut c = sp.spawn(&spec).unwrap();
            drop((out_w, err_w));
            c.wait().unwrap();
            drop((out_r, err_r));
        };
        let ways: [(&str, &dyn Fn()); 3] = [("std Command", &std_cmd), ("posix_spawn", &posix), ("Spawner (clone)", &ours)];
        let mut res = vec![(Vec::new(), Vec::new()); 3];
        for round in 0..5 {
            for (i, (_, f)) in ways.iter().enumerate() {
                let (t0, c0) = (Instant::now(), cpu());
                for _ in 0..N / 5 {
                    f();
                }
                if round > 0 {
                    res[i].0.push(t0.elapsed().as_secs_f64() * 1e6 / (N / 5) as f64);
                    res[i].1.push((cpu() - c0) / (N / 5) as f64);
                }
            }
        }
        for (i, (name, _)) in ways.iter().enumerate() {
            let med = |v: &mut Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            println!("{name:>16}: {:7.1} µs per spawn+wait, {:6.1} µs of this process's CPU", med(&mut res[i].0), med(&mut res[i].1));
        }
    }
}
