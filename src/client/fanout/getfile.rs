//! A fan-out get's local side and the digest of a transfer: the `.part`
//! being written for one host, its check against the server's `done`, and
//! which digest a host gets. Imports `outcome` and the client's `finish`.

use super::outcome::Outcome;
use crate::client::finish::{part_path, Part};
use crate::client::io_text;
use crate::proto::digest::Digest;
use std::path::PathBuf;

pub(super) struct GetFile {
    pub(super) part: Part,
    pub(super) dest: PathBuf,
    pub(super) mode: Option<u32>,
    pub(super) mtime: Option<i64>,
}

impl GetFile {
    /// Creates `host_dir` (and what leads to it) and `host_dir/name.part`;
    /// the error as the host's failure line.
    pub(super) fn open(host_dir: &std::path::Path, name: &str, digest: Digest) -> Result<GetFile, String> {
        let dest = host_dir.join(name);
        match std::fs::create_dir_all(host_dir).and_then(|()| Part::create(&dest, digest)) {
            Ok(part) => Ok(GetFile { part, dest, mode: None, mtime: None }),
            Err(e) if e.raw_os_error().is_some() => Err(format!("{}: {}", part_path(&dest).display(), io_text(&e))),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The digest a host gets: `asked` (`--digest`) if it offers it, else the
/// best it announced (an older server announces none: sha256).
pub(super) fn pick_digest(announced: Option<Vec<Digest>>, asked: Option<Digest>) -> Result<Digest, String> {
    let offered = announced.unwrap_or_else(|| vec![Digest::Sha256]);
    match asked {
        None => Ok(Digest::best(&offered)),
        Some(d) if d == Digest::None || offered.contains(&d) => Ok(d),
        Some(d) => Err(format!("the server does not offer the {} digest", d.as_str())),
    }
}

/// A get's `done`: the digest checked against ours, then the file in place.
pub(super) fn finish_get(g: GetFile, remote: &str, digest: Digest, theirs: Option<&str>) -> Outcome {
    let d = digest.as_str();
    match (g.part.out.hex(), theirs) {
        (None, _) => {}
        (Some(ours), Some(theirs)) if theirs.eq_ignore_ascii_case(&ours) => {}
        (Some(ours), Some(theirs)) => {
            g.part.discard();
            return Outcome::FileError(format!("{remote}: digest mismatch: received {d} {ours}, the server's {theirs}"));
        }
        (Some(_), None) => {
            g.part.discard();
            return Outcome::Error(format!("protocol error: done without {d}"));
        }
    }
    match g.part.finish(&g.dest, g.mode, g.mtime) {
        Ok(()) => Outcome::Done,
        Err(e) if e.raw_os_error().is_none() => Outcome::FileError(e.to_string()),
        Err(e) => Outcome::FileError(format!("{}: {}", g.dest.display(), io_text(&e))),
    }
}
