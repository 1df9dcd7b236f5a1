//! Local file finishing for `get`, single-host and fan-out alike: the
//! `.part` beside the destination (fresh, or resumed and hashed), the
//! digest (sha256 or blake3) of everything written, and the durable finish (mode, mtime,
//! fsync, rename), so a destination is never a partial or corrupt file.
//! Imports nothing from the rest of the client.

use crate::proto::auth::to_hex;
use crate::proto::digest::{Digest, Hasher};
use crate::sys::Streamed;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// Read size when hashing a local file.
const HASH_CHUNK: usize = 256 * 1024;

/// The longest file name most file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// `dest` with `.part` appended; when that name would not fit in
/// `NAME_MAX` bytes, the name cut short and a hash of the whole name added
/// (`NAME~HASH16.part`), the same every time so that `-c` finds it.
pub fn part_path(dest: &Path) -> PathBuf {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let Some(name) = dest.file_name() else {
        let mut p = dest.as_os_str().to_owned();
        p.push(".part");
        return PathBuf::from(p);
    };
    let bytes = name.as_bytes();
    let mut part = if bytes.len() + ".part".len() <= NAME_MAX {
        bytes.to_vec()
    } else {
        let hash = to_hex(&Sha256::digest(bytes));
        // 255 = kept + "~" + 16 + ".part"
        let mut kept = bytes[..NAME_MAX - 1 - 16 - 5].to_vec();
        kept.push(b'~');
        kept.extend_from_slice(&hash.as_bytes()[..16]);
        kept
    };
    part.extend_from_slice(b".part");
    dest.with_file_name(std::ffi::OsString::from_vec(part))
}

/// Why an existing path may not be written through or replaced.
fn refuse(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}; not touching it", path.display()))
}

/// Checks an opened `.part`: a regular file of ours (the caller opened it
/// with `O_NOFOLLOW`, so not a symbolic link).
fn check_ours(path: &Path, file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(refuse(path, "exists and is not a regular file"));
    }
    // SAFETY: geteuid has no preconditions.
    if m.uid() != unsafe { libc::geteuid() } {
        return Err(refuse(path, "exists and belongs to another user"));
    }
    Ok(())
}

/// An `O_NOFOLLOW` open that names a symbolic link says so in plain words.
fn no_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return refuse(path, "is a symbolic link");
    }
    e
}

/// Checks the destination before anything is fetched: absent, or a regular
/// file or symbolic link that the finished file replaces (a link is
/// replaced, never followed). A directory or a device is refused.
pub fn check_dest(dest: &Path) -> io::Result<()> {
    match dest.symlink_metadata() {
        Ok(m) if m.is_dir() => Err(io::Error::other(format!("{}: is a directory", dest.display()))),
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => Err(refuse(dest, "exists and is not a regular file")),
        _ => Ok(()),
    }
}

/// The mode a new file gets when the server gives none: 0666 less the umask.
fn default_mode() -> u32 {
    // SAFETY: umask has no preconditions; it is set back at once.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    0o666 & !(mask as u32)
}

/// Feeds `hasher` with everything `r` yields, telling `progress` each
/// chunk's size; the byte count.
pub fn hash_reader(r: &mut dyn Read, hasher: &mut Hasher, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
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

/// Writes to `inner`, hashing what is written (unless the digest is `none`).
pub struct Hashing<W: Write> {
    pub inner: W,
    pub hasher: Option<Hasher>,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W, digest: Digest) -> Hashing<W> {
        Hashing { inner, hasher: digest.hasher() }
    }

    /// The digest of what was written so far, as lowercase hex.
    pub fn hex(&self) -> Option<String> {
        self.hasher.as_ref().map(Hasher::hex)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
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
    /// Written with early writeback (`sys::Streamed`).
    pub out: Hashing<Streamed>,
    /// Bytes already there (resumed): the offset to ask the server for.
    pub offset: u64,
    /// Whether the `.part` existed before.
    pub existed: bool,
}

impl Part {
    /// `dest.part`, new and empty, mode 0600 until finished: created with
    /// `O_CREAT | O_EXCL | O_NOFOLLOW`, so a link planted there is never
    /// followed. A `.part` of ours left by an earlier get is replaced; one
    /// that is a link, not a regular file, or another user's is refused.
    pub fn create(dest: &Path, digest: Digest) -> io::Result<Part> {
        check_dest(dest)?;
        let path = part_path(dest);
        let mut existed = false;
        let file = loop {
            match open_new(&path) {
                Ok(f) => break f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !existed => {
                    existed = true;
                    let m = path.symlink_metadata()?;
                    if m.file_type().is_symlink() {
                        return Err(refuse(&path, "is a symbolic link"));
                    }
                    if !m.is_file() {
                        return Err(refuse(&path, "exists and is not a regular file"));
                    }
                    drop(open_existing(&path)?);
                    fs::remove_file(&path)?;
                }
                Err(e) => return Err(no_link(&path, e)),
            }
        };
        Ok(Part { path, out: Hashing::new(Streamed::new(file), digest), offset: 0, existed })
    }

    /// `dest.part` to append to, what it holds already hashed: opened with
    /// `O_NOFOLLOW` and checked to be a regular file of ours; created as
    /// `create` does when there is none.
    pub fn resume(dest: &Path, digest: Digest) -> io::Result<Part> {
        check_dest(dest)?;
        let path = part_path(dest);
        let file = match open_existing(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Part::create(dest, digest),
            Err(e) => return Err(e),
        };
        let mut out = Hashing::new(Streamed::new(file), digest);
        let offset = match &mut out.hasher {
            Some(h) => hash_reader(&mut *out.inner, h, &mut |_| {})?,
            None => {
                use std::io::Seek;
                out.inner.seek(io::SeekFrom::End(0))?
            }
        };
        Ok(Part { path, out, offset, existed: true })
    }

    /// Removes the `.part`.
    pub fn discard(self) {
        drop(self.out);
        let _ = fs::remove_file(&self.path);
    }

    /// Sets the mode and mtime the server gave, syncs, and renames the
    /// `.part` to `dest`.
    /// The mode and mtime are set on the open `.part` (never through a
    /// path), and a destination that is a symbolic link is replaced, not
    /// followed.
    pub fn finish(self, dest: &Path, mode: Option<u32>, mtime: Option<i64>) -> io::Result<()> {
        self.finish_with(dest, mode, mtime, true)
    }

    /// `finish`, with the fsync before the rename only when `sync`: a tree
    /// syncs its file system once at the end instead (`client::tree`).
    pub fn finish_with(self, dest: &Path, mode: Option<u32>, mtime: Option<i64>, sync: bool) -> io::Result<()> {
        check_dest(dest)?;
        let file = self.out.inner.into_inner();
        let mode = mode.map_or_else(default_mode, |m| m & 0o777);
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some(t) = mtime {
            let abs = Duration::from_secs(t.unsigned_abs());
            let when = if t >= 0 { UNIX_EPOCH.checked_add(abs) } else { UNIX_EPOCH.checked_sub(abs) };
            file.set_modified(when.unwrap_or(UNIX_EPOCH))?;
        }
        if sync {
            file.sync_all()?;
        }
        drop(file);
        fs::rename(&self.path, dest)
    }
}

/// A new file: `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600.
fn open_new(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// An existing `.part` to append to: `O_NOFOLLOW`, then checked.
fn open_existing(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| no_link(path, e))?;
    check_ours(path, &file)?;
    Ok(file)
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
        let mut p = Part::create(&dest, Digest::Sha256).unwrap();
        assert!(!p.existed);
        p.out.write_all(b"hello ").unwrap();
        drop(p);
        let mut p = Part::resume(&dest, Digest::Sha256).unwrap();
        assert!(p.existed);
        assert_eq!(p.offset, 6);
        p.out.write_all(b"world").unwrap();
        // sha256("hello world")
        assert_eq!(p.out.hex().unwrap(), "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        p.finish(&dest, Some(0o600), Some(1_000_000_000)).unwrap();
        let m = fs::metadata(&dest).unwrap();
        assert_eq!((m.mode() & 0o777, m.mtime()), (0o600, 1_000_000_000));
        assert_eq!(fs::read(&dest).unwrap(), b"hello world");
        assert!(!part_path(&dest).exists());
        Part::create(&dest, Digest::Sha256).unwrap().discard();
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn a_resumed_part_is_hashed_with_the_digest_of_the_get() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        let mut p = Part::create(&dest, Digest::Blake3).unwrap();
        p.out.write_all(b"hello ").unwrap();
        drop(p);
        let mut p = Part::resume(&dest, Digest::Blake3).unwrap();
        assert_eq!(p.offset, 6);
        p.out.write_all(b"world").unwrap();
        // blake3("hello world")
        assert_eq!(p.out.hex().unwrap(), "d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24");
        drop(p);
        let p = Part::resume(&dest, Digest::None).unwrap();
        assert_eq!((p.offset, p.out.hex()), (11, None));
    }

    #[test]
    fn a_new_part_is_0600_and_replaces_a_stale_one_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f");
        fs::write(part_path(&dest), b"stale").unwrap();
        let p = Part::create(&dest, Digest::Sha256).unwrap();
        assert!(p.existed);
        assert_eq!(p.out.inner.metadata().unwrap().mode() & 0o777, 0o600);
        assert_eq!(p.out.inner.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_link_at_the_part_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        fs::write(&precious, b"mine").unwrap();
        fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).unwrap();
        let dest = dir.path().join("f");
        std::os::unix::fs::symlink(&precious, part_path(&dest)).unwrap();
        for r in [Part::create(&dest, Digest::Sha256).map(drop), Part::resume(&dest, Digest::Sha256).map(drop)] {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        assert_eq!(fs::read(&precious).unwrap(), b"mine");
        assert_eq!(fs::metadata(&precious).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_link_at_the_destination_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious");
        fs::write(&precious, b"mine").unwrap();
        let dest = dir.path().join("f");
        std::os::unix::fs::symlink(&precious, &dest).unwrap();
        let mut p = Part::create(&dest, Digest::Sha256).unwrap();
        p.out.write_all(b"new").unwrap();
        p.finish(&dest, Some(0o644), Some(0)).unwrap();
        assert_eq!(fs::read(&precious).unwrap(), b"mine");
        assert!(!fs::symlink_metadata(&dest).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
    }

    #[test]
    fn a_directory_destination_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let e = Part::create(dir.path(), Digest::Sha256).map(drop).unwrap_err();
        assert!(e.to_string().ends_with(": is a directory"), "{e}");
    }

    #[test]
    fn long_names_get_a_part_name_that_fits() {
        let long = "x".repeat(253);
        let p = part_path(&Path::new("d").join(&long));
        let name = p.file_name().unwrap().len();
        assert!(name <= NAME_MAX, "{name}");
        assert!(p.to_str().unwrap().ends_with(".part") && p.starts_with("d"));
        assert_eq!(p, part_path(&Path::new("d").join(&long)));
        assert_ne!(p, part_path(&Path::new("d").join("x".repeat(254))));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("y".repeat(255));
        let mut part = Part::create(&dest, Digest::Sha256).unwrap();
        part.out.write_all(b"ok").unwrap();
        part.finish(&dest, None, None).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"ok");
    }
}
