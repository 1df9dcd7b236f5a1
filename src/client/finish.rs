//! Local file finishing for `get`, single-host and fan-out alike: the
//! `.part` beside the destination (fresh, or resumed and hashed), the
//! SHA-256 of everything written, and the durable finish (mode, mtime,
//! fsync, rename), so a destination is never a partial or corrupt file.
//! Imports nothing from the rest of the client.

use crate::proto::auth::to_hex;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Read size when hashing a local file.
const HASH_CHUNK: usize = 256 * 1024;

/// `dest` with `.part` appended.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// Feeds `hasher` with everything `r` yields, telling `progress` each
/// chunk's size; the byte count.
pub fn hash_reader(r: &mut dyn Read, hasher: &mut Sha256, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        progress(n as u64);
        total += n as u64;
    }
}

/// Writes to `inner`, hashing what is written.
pub struct Hashing<W: Write> {
    pub inner: W,
    pub hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hasher: Sha256::new() }
    }

    /// The digest of what was written so far, as lowercase hex.
    pub fn sha256_hex(&self) -> String {
        to_hex(&self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `.part` being written. Dropping it keeps the file (for `-c`);
/// `discard` removes it.
pub struct Part {
    pub path: PathBuf,
    pub out: Hashing<File>,
    /// Bytes already there (resumed): the offset to ask the server for.
    pub offset: u64,
    /// Whether the `.part` existed before.
    pub existed: bool,
}

impl Part {
    /// `dest.part`, empty: truncated if it was there.
    pub fn create(dest: &Path) -> io::Result<Part> {
        let path = part_path(dest);
        let existed = path.symlink_metadata().is_ok();
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        Ok(Part { path, out: Hashing::new(file), offset: 0, existed })
    }

    /// `dest.part` to append to, what it holds already hashed.
    pub fn resume(dest: &Path) -> io::Result<Part> {
        let path = part_path(dest);
        let existed = path.symlink_metadata().is_ok();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let mut hasher = Sha256::new();
        let offset = hash_reader(&mut file, &mut hasher, &mut |_| {})?;
        Ok(Part { path, out: Hashing { inner: file, hasher }, offset, existed })
    }

    /// Removes the `.part`.
    pub fn discard(self) {
        drop(self.out);
        let _ = fs::remove_file(&self.path);
    }

    /// Sets the mode and mtime the server gave, syncs, and renames the
    /// `.part` to `dest`.
    pub fn finish(self, dest: &Path, mode: Option<u32>, mtime: Option<i64>) -> io::Result<()> {
        let file = self.out.inner;
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o777))?;
        }
        if let Some(t) = mtime {
            let abs = Duration::from_secs(t.unsigned_abs());
            let when = if t >= 0 { UNIX_EPOCH.checked_add(abs) } else { UNIX_EPOCH.checked_sub(abs) };
            file.set_modified(when.unwrap_or(UNIX_EPOCH))?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&self.path, dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_part_resumes_hashes_and_finishes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        assert_eq!(part_path(&dest), dir.path().join("f.part"));
        let mut p = Part::create(&dest).unwrap();
        assert!(!p.existed);
        p.out.write_all(b"hello ").unwrap();
        drop(p);
        let mut p = Part::resume(&dest).unwrap();
        assert!(p.existed);
        assert_eq!(p.offset, 6);
        p.out.write_all(b"world").unwrap();
        // sha256("hello world")
        assert_eq!(p.out.sha256_hex(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        p.finish(&dest, Some(0o600), Some(1_000_000_000)).unwrap();
        let m = fs::metadata(&dest).unwrap();
        assert_eq!((m.mode() & 0o777, m.mtime()), (0o600, 1_000_000_000));
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert!(!part_path(&dest).exists());
        Part::create(&dest).unwrap().discard();
        assert!(!part_path(&dest).exists());
    }
}
