//! The entries of a `listing` body and the fields of a `stat` reply (the
//! recursive listing's per-entry error among them).

use serde::{Deserialize, Serialize};

/// What a directory entry or a stat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

/// One entry of a `listing` body, and the fields of a `stat` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub file_size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// In a listing, a name that is not UTF-8: its bytes in lowercase hex
    /// (`name` then has U+FFFD for what is not UTF-8). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    /// In a recursive listing, a link's target if it stays in the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// In a recursive listing, why a directory's entries are missing (it
    /// could not be opened or read): `{"code":..,"message":..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EntryError>,
}

/// The error of one entry of a recursive listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl EntryError {
    /// As a single request's error would print: `message (code)`.
    pub fn text(&self) -> String {
        if self.message.is_empty() {
            self.code.clone()
        } else {
            format!("{} ({})", self.message, self.code)
        }
    }
}

