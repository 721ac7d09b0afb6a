//! Reflink copies (FICLONE): a copy of a whole image that shares its
//! extents, made at once whatever the size, and frozen at the instant of
//! the clone while the original goes on changing. Only some filesystems
//! have them (XFS with reflink=1, btrfs, bcachefs; not ext4 or tmpfs).

use super::durable::sync_parent;
use super::error::At;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Support {
    Reflinks,
    /// The refusal, for the log.
    None(String),
}

/// Whether files in `dir` can be reflinked: clones a small probe file
/// there. A filesystem without them refuses the ioctl; that (and any other
/// refusal) means "no". Only failing to write the probe is an error.
pub(crate) fn probe(dir: &Path) -> Result<Support, String> {
    let src = dir.join("reflink-probe.src");
    let dst = dir.join("reflink-probe.dst");
    fs::write(&src, b"blockferry reflink probe").at("writing", &src)?;
    let _ = fs::remove_file(&dst);
    let outcome = clone_into(&src, &dst);
    let _ = fs::remove_file(&src);
    let _ = fs::remove_file(&dst);
    Ok(outcome.map_or_else(Support::None, |_| Support::Reflinks))
}

/// Makes `dst` (which must not exist) a reflink copy of `src`, fsynced, and
/// returns its size.
pub(crate) fn clone_into(src: &Path, dst: &Path) -> Result<u64, String> {
    let from = File::open(src).at("opening", src)?;
    let to = OpenOptions::new().write(true).create_new(true).open(dst).at("creating", dst)?;
    rustix::fs::ioctl_ficlone(&to, &from).at(&format!("reflinking {} to", src.display()), dst)?;
    to.sync_all().at("syncing", dst)?;
    Ok(to.metadata().at("reading", dst)?.len())
}

/// Replaces `live` with a reflink copy of `copy`, atomically: the clone is
/// made beside it under a name that is not a disk's and renamed over it,
/// so a crash leaves the old image or the new one, never half of each.
pub(crate) fn restore_over(copy: &Path, live: &Path) -> Result<(), String> {
    let name = live.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = live.with_file_name(format!(".blockferry-revert-{name}.tmp"));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", tmp.display())),
    }
    clone_into(copy, &tmp)?;
    fs::rename(&tmp, live).at(&format!("renaming {} to", tmp.display()), live)?;
    sync_parent(live)
}
