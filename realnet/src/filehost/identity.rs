//! Snapshots without reflinks: an image's identity (device, inode, size,
//! mtime, ctime) stands in for its content. If the identity after a read
//! is the one recorded at the snapshot, nothing wrote to the image in
//! between, so the read saw the snapshot's instant; if it moved, the read
//! may be torn and the task fails rather than commit a torn point.

use super::error::At;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a task that read a moving image fails with (issue 14's wording,
/// so operators can search for it).
pub const IMAGE_CHANGED: &str = "image changed during backup: stop the VM or use a filesystem with reflinks";

/// File timestamps come from the kernel's coarse clock, which ticks every
/// 1 to 10 ms: a write in the same tick as the snapshot would leave mtime
/// and ctime as recorded. So a snapshot waits until the newest ctime is at
/// least this far in the past; any later write then gets a newer one.
/// (Linux 6.13 and later give a change right after a `stat` a fine-grained
/// stamp on ext4, XFS, btrfs and tmpfs, so there the wait only guards
/// older kernels and other filesystems; it costs nothing unless an image
/// changed in the last few milliseconds.)
const SETTLE: Duration = Duration::from_millis(25);

/// How many times a snapshot waits for images to settle before it gives
/// up: a guest writing without pause would fail every read anyway, so the
/// snapshot fails at once with the same advice.
const SETTLE_TRIES: u32 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    pub(crate) fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// ctime, not mtime: the kernel sets it on every change and no one can
    /// set it by hand (mtime can be set into the future with `touch`).
    fn changed_at(&self) -> Duration {
        let (secs, nanos) = self.ctime;
        let secs = u64::try_from(secs).unwrap_or(0);
        let nanos = u32::try_from(nanos).unwrap_or(0);
        Duration::new(secs, 0).saturating_add(Duration::from_nanos(u64::from(nanos)))
    }
}

/// The identities of `images`, taken once every image has been still for
/// [`SETTLE`] (see there for why).
pub(crate) fn capture_settled(images: &[&Path]) -> Result<Vec<Identity>, String> {
    for _ in 0..SETTLE_TRIES {
        let ids = images.iter().map(|p| fs::metadata(p).at("reading", p).map(|m| Identity::of(&m))).collect::<Result<Vec<_>, _>>()?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let newest = ids.iter().map(Identity::changed_at).max().unwrap_or_default();
        match now.checked_sub(newest) {
            Some(age) if age >= SETTLE => return Ok(ids),
            Some(age) => std::thread::sleep(SETTLE - age),
            // A ctime ahead of the clock: the clock was set back. Wait a
            // tick and look again; persistent skew ends in the error below.
            None => std::thread::sleep(SETTLE),
        }
    }
    let names: Vec<String> = images.iter().map(|p| p.display().to_string()).collect();
    Err(format!("{}: {IMAGE_CHANGED} (still being written when the snapshot was taken)", names.join(", ")))
}

/// Fails with [`IMAGE_CHANGED`] unless both the open file and whatever
/// the path names now have the recorded identity: the first catches
/// writes, the second an image replaced by a rename.
pub(crate) fn check_unchanged(path: &Path, file: &File, recorded: &Identity) -> Result<(), String> {
    let open = Identity::of(&file.metadata().at("reading", path)?);
    let named = Identity::of(&fs::metadata(path).at("reading", path)?);
    if open != *recorded || named != *recorded {
        return Err(format!("{}: {IMAGE_CHANGED}", path.display()));
    }
    Ok(())
}

/// Whether the image at `path` still has the recorded identity.
pub(crate) fn unchanged(path: &Path, recorded: &Identity) -> Result<bool, String> {
    Ok(Identity::of(&fs::metadata(path).at("reading", path)?) == *recorded)
}
