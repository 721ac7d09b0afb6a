//! Errors of the disk store. Every one names the file (and, for damage,
//! the offset) it is about: an operator must be able to find what broke.

use blockferry_core::storage::StorageError;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {action}: {source}", path.display())]
    Io { path: PathBuf, action: &'static str, source: io::Error },
    #[error("{} is locked: the store is open in another process or handle", path.display())]
    Locked { path: PathBuf },
    #[error("{} at offset {offset}: {reason}", path.display())]
    Damaged { path: PathBuf, offset: u64, reason: String },
    /// A flush failed: what the disk holds is unknown, so the store takes
    /// no more requests until it is opened again (and recovers).
    #[error("the store stopped after a failed flush ({0}); restart to recover")]
    Stopped(String),
    #[error("{0}")]
    Refused(String),
}

impl StoreError {
    /// Whether the disk (or the user's quota) ran out of space.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if is_out_of_space(source))
    }
}

pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// Maps an IO error on `path` to a [`StoreError`] naming it.
pub fn at<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { path: path.to_path_buf(), action, source }
}

impl From<StoreError> for StorageError {
    /// A full disk is `Full` (the session fails with that reason); every
    /// other failure is `Io` with the path in its text.
    fn from(e: StoreError) -> StorageError {
        if e.is_out_of_space() { StorageError::Full } else { StorageError::Io(e.to_string()) }
    }
}
