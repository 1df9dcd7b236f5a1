//! Small facts about the process and the clock that the daemon, the client and
//! ferry-bench all need: the wall clock in Unix seconds, the open-files limit, a
//! positioned read retried on EINTR, and a file written with early writeback.

use std::time::{SystemTime, UNIX_EPOCH};

use rustix::process::{getrlimit, setrlimit, Resource};

/// The wall clock in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The open-files limit before and after an attempt to raise the soft limit
/// to `want` (None: as far as the hard limit allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoFile {
    pub old: u64,
    pub now: u64,
}

/// Raises the soft open-files limit toward `want`, never past the hard limit
/// and never lowering it. Failing to raise it is not an error: callers decide
/// whether the result is enough.
pub fn raise_nofile(want: Option<u64>) -> NoFile {
    let lim = getrlimit(Resource::Nofile);
    let old = lim.current.unwrap_or(u64::MAX);
    let hard = lim.maximum;
    let target = match (want, hard) {
        (Some(w), Some(h)) => w.min(h),
        (Some(w), None) => w,
        (None, h) => h.unwrap_or(u64::MAX),
    };
    if target <= old {
        return NoFile { old, now: old };
    }
    let new = rustix::process::Rlimit { current: Some(target), maximum: hard };
    let now = if setrlimit(Resource::Nofile, new).is_ok() { target } else { old };
    NoFile { old, now }
}

/// What tells that an open file changed: its size, mtime and ctime in
/// nanoseconds, from `fstat`. A sender takes one before and one after it
/// sends a file; any difference means what went out may be a mix of two
/// versions (each side hashes what it reads, so a digest cannot tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(fd: impl rustix::fd::AsFd) -> std::io::Result<Stamp> {
        let st = rustix::fs::fstat(fd)?;
        Ok(Stamp {
            size: st.st_size as i64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        })
    }

    /// Whether the file still has this stamp (an `fstat` that fails counts
    /// as a change: nothing vouches for the file any more).
    pub fn unchanged(&self, fd: impl rustix::fd::AsFd) -> bool {
        Stamp::of(fd).is_ok_and(|now| now == *self)
    }
}

/// One positioned read of up to `buf.len()` bytes at `offset`, retried on
/// EINTR; 0 at the end of the file.
pub fn read_chunk_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// How many bytes a `Streamed` file takes before it starts their writeback.
pub const WRITEBACK_EVERY: u64 = 8 << 20;

/// A file written from start to end (a get's `.part`, a put's temporary file)
/// in writes of at most `MAX_WRITE` bytes, whose dirty pages are handed to
/// the disk as it grows: every
/// `WRITEBACK_EVERY` bytes, `sync_file_range(SYNC_FILE_RANGE_WRITE)` starts
/// the writeback of what is dirty and not yet being written, without waiting
/// for it. So the final fsync (or a tree's one syncfs) finds little left to
/// write, and a big transfer never piles up enough dirty pages for the kernel
/// to throttle its writes: on this project's machines 20 × 50 MiB written
/// with no fsync stalled for 2–4 s in about half the runs, and took
/// 0.35–0.5 s, to disk, with early writeback (BENCHMARKS.md, "Early
/// writeback"). It is only a hint: a file system without it loses nothing.
/// Derefs to the `File` for everything else.
pub struct Streamed {
    file: std::fs::File,
    unsent: u64,
}

impl Streamed {
    pub fn new(file: std::fs::File) -> Streamed {
        Streamed { file, unsent: 0 }
    }

    pub fn into_inner(self) -> std::fs::File {
        self.file
    }

    fn wrote(&mut self, n: usize) {
        self.unsent += n as u64;
        if self.unsent >= WRITEBACK_EVERY {
            self.unsent = 0;
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor this value owns; no
            // memory is passed. Offset 0 and length 0 mean the whole file.
            let _ = unsafe { libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        }
    }
}

/// The most a `Streamed` file takes in one `write(2)`. Callers hand it 1 MiB
/// at a time; on this project's VMs (kernel 6.18, virtio-balloon free page
/// reporting) each 1 MiB write into the page cache, once the machine had
/// been idle a few seconds, cost 18 times the kernel time of the same bytes
/// in 512 KiB or smaller writes: 20 × 50 MiB took 4.3–5.0 s of system time
/// in 1 MiB writes and 0.23–0.29 s in 64, 128, 256 or 512 KiB writes
/// (BENCHMARKS.md, "Write size"). 256 KiB keeps a margin below the cliff
/// at a cost of four syscalls per MiB.
pub const MAX_WRITE: usize = 256 * 1024;

impl std::io::Write for Streamed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(&buf[..buf.len().min(MAX_WRITE)])?;
        self.wrote(n);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl std::ops::Deref for Streamed {
    type Target = std::fs::File;
    fn deref(&self) -> &std::fs::File {
        &self.file
    }
}

impl std::ops::DerefMut for Streamed {
    fn deref_mut(&mut self) -> &mut std::fs::File {
        &mut self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_is_idempotent() {
        let a = raise_nofile(Some(64));
        assert!(a.now >= a.old.min(64));
        let b = raise_nofile(None);
        assert!(b.now >= b.old);
        assert_eq!(raise_nofile(None).now, raise_nofile(None).old);
    }

    #[test]
    fn a_streamed_file_holds_every_byte_across_its_writebacks() {
        use std::io::{Read, Seek, Write};
        let path = std::env::temp_dir().join(format!("ferry-streamed-{}", std::process::id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut s = Streamed::new(file);
        let chunk: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let rounds = (2 * WRITEBACK_EVERY as usize) / chunk.len() + 2;
        for _ in 0..rounds {
            s.write_all(&chunk).unwrap();
        }
        assert!(s.unsent < WRITEBACK_EVERY, "a writeback was started and the count reset");
        assert_eq!(s.write(&vec![7u8; 3 * MAX_WRITE]).unwrap(), MAX_WRITE, "one write(2) takes at most MAX_WRITE");
        s.write_all(&[7u8; 2 * MAX_WRITE]).unwrap();
        let mut file = s.into_inner();
        file.rewind().unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        let (ours, sevens) = back.split_at(rounds * chunk.len());
        assert!(ours.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
        assert!(sevens.len() == 3 * MAX_WRITE && sevens.iter().all(|&b| b == 7));
    }

    #[test]
    fn clock_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }

    #[test]
    fn a_stamp_sees_a_write_and_a_touch_but_not_a_read() {
        use std::io::{Read, Seek, Write};
        let dir = std::env::temp_dir().join(format!("ferry-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, b"0123456789").unwrap();
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
        // An old mtime, so that the write below (in the same clock tick as
        // the file's creation) moves it whatever the file system's granularity.
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1)).unwrap();
        let before = super::Stamp::of(&f).unwrap();
        let mut buf = [0u8; 4];
        f.read_exact(&mut buf).unwrap();
        assert!(before.unchanged(&f), "a read changes nothing");
        // Same size, same bytes count: only the times can tell.
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(b"abcd").unwrap();
        assert!(!before.unchanged(&f), "a rewrite in place is a change");
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1)).unwrap();
        let after = super::Stamp::of(&f).unwrap();
        f.set_len(20).unwrap();
        assert!(!after.unchanged(&f), "growing is a change");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
