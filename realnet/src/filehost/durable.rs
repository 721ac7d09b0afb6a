//! Durable file updates: what the file host writes must be there after a
//! crash or a restart, whole or not at all.

use super::error::At;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically: a temporary file beside it is
/// written and fsynced, renamed over `path`, and the folder fsynced so the
/// rename itself survives a crash. A reader (or a restarted daemon) sees
/// the old content or the new, never a torn mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = File::create(&tmp).at("creating", &tmp)?;
    file.write_all(bytes).at("writing", &tmp)?;
    file.sync_all().at("syncing", &tmp)?;
    drop(file);
    fs::rename(&tmp, path).at(&format!("renaming {} to", tmp.display()), path)?;
    sync_parent(path)
}

/// Fsyncs a folder: makes the creation, removal or renaming of entries in
/// it durable (a file's own fsync does not cover its name).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).at("syncing folder", dir)
}

/// Fsyncs the folder holding `path`.
pub(crate) fn sync_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}
