//! What ferry-bench reads about processes: RSS, open fds and CPU time from
//! /proc, its own CPU time from getrusage, the process listening on a TCP
//! port or bound to a UDP one. (The open-files limit is `ferry::sys`.)

use std::fs;
use std::time::Duration;

/// VmRSS of `pid` in KiB, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// Open file descriptors of `pid` (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// User + system CPU time of `pid` itself (not its reaped children), from
/// fields 14 and 15 of /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / hz))
}

/// User + system CPU time of this process, all threads (getrusage).
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Our own VmRSS in KiB.
pub fn self_rss_kib() -> Option<u64> {
    rss_kib(std::process::id())
}

/// Inodes of sockets on local `port` in `state` (hex, as /proc/net/* spells
/// it) with no remote address, from `tables`.
fn socket_inodes(tables: &[&str], port: u16, state: &str) -> Vec<String> {
    let mut out = Vec::new();
    for table in tables {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != state || !f[2].bytes().all(|b| b == b'0' || b == b':') {
                continue;
            }
            let p = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if p == Some(port) {
                out.push(f[9].to_string());
            }
        }
    }
    out
}

/// The process that holds one of `inodes` (the lowest pid when several do),
/// found through /proc/*/fd.
fn pid_holding(inodes: &[String]) -> Option<u32> {
    if inodes.is_empty() {
        return None;
    }
    let want: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut pids: Vec<u32> =
        fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
        fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|l| want.iter().any(|w| l.as_os_str() == w.as_str())))
    })
}

/// The process that holds a socket listening on TCP `port`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    // 0A: LISTEN.
    pid_holding(&socket_inodes(&["/proc/net/tcp", "/proc/net/tcp6"], port, "0A"))
}

/// The process that holds an unconnected UDP socket bound to `port`.
pub fn pid_bound_udp(port: u16) -> Option<u32> {
    // 07: TCP_CLOSE, which is how an unconnected UDP socket shows.
    pid_holding(&socket_inodes(&["/proc/net/udp", "/proc/net/udp6"], port, "07"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(fd_count(me).unwrap() >= 3);
        assert!(proc_cpu(me).is_some());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(pid_listening_on(l.local_addr().unwrap().port()), Some(me));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(pid_bound_udp(u.local_addr().unwrap().port()), Some(me));
    }
}
