//! File steps every durable change of the store is made of: a file written
//! whole under a temporary name, flushed, renamed over its final name and
//! the folder flushed (so a crash leaves the old file or the new one, never
//! a part), and the folder flushes that make creations and removals
//! durable.

use super::error::{StoreError, at};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The suffix of files being written: what a crash leaves behind, removed
/// on open.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` as `dir/name`, atomically and durably.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let result = write_and_flush(&temp, bytes).and_then(|()| {
        let path = dir.join(name);
        fs::rename(&temp, &path).map_err(at(&path, "renaming the written file into place"))
    });
    if result.is_err() {
        // Best effort: a leftover is removed on the next open anyway.
        let _ = fs::remove_file(&temp);
    }
    result?;
    sync_dir(dir)
}

fn write_and_flush(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = File::create(path).map_err(at(path, "creating"))?;
    file.write_all(bytes).map_err(at(path, "writing"))?;
    file.sync_all().map_err(at(path, "flushing"))
}

/// Flushes a folder: creations, renames and removals in it become durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir, "flushing the folder"))
}

/// Removes `path`; a file already gone is fine.
pub fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(at(path, "removing")(e)),
        _ => Ok(()),
    }
}

/// The names in `dir` and their paths, sorted.
pub fn list(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(at(dir, "listing"))? {
        let entry = entry.map_err(at(dir, "listing"))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Removes the temporary files a crash left in `dir`; returns their paths.
pub fn remove_temp_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    for (name, path) in list(dir)? {
        if name.ends_with(TEMP_SUFFIX) {
            remove_if_present(&path)?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}
