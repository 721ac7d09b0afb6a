//! What opening a store found and what `verify` found: every finding names
//! the file (and offset) it is about, so an operator can act on it.

use blockferry_core::{Digest, RestorePointId};
use std::fmt;
use std::path::PathBuf;

/// A file that cannot be used: a manifest, replica metadata or a pack
/// index that is torn, damaged or misnamed, or a pack that disagrees with
/// its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// A stretch of a pack holding no readable record where durable records
/// were: whatever blocks were there are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// Bytes written after a pack's last sync mark, cut off on open: they were
/// never durable (a crash came before the `Sync` that would have made them
/// so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruncatedTail {
    pub path: PathBuf,
    pub offset: u64,
    pub bytes: u64,
}

/// A committed point some of whose blocks the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncompletePoint {
    pub point: RestorePointId,
    pub path: PathBuf,
    pub missing: u64,
    pub first_missing: Digest,
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub removed_temp_files: Vec<PathBuf>,
    pub truncated_tails: Vec<TruncatedTail>,
    /// Packs that held nothing durable (created after the last sync).
    pub removed_packs: Vec<PathBuf>,
    /// Pack indexes rebuilt from their packs (missing or damaged ones).
    pub rebuilt_indexes: Vec<PathBuf>,
    pub damaged_files: Vec<DamagedFile>,
    pub damaged_ranges: Vec<DamagedRange>,
    /// Served all the same (the point exists; reading the missing blocks
    /// fails naming them, and a health check finds them), but reported.
    pub incomplete_points: Vec<IncompletePoint>,
    pub packs: u64,
    pub blocks: u64,
    pub points: u64,
}

impl RecoveryReport {
    /// Whether nothing was damaged or missing (a crash's torn tail and
    /// leftover temporary files are expected, not damage).
    pub fn is_clean(&self) -> bool {
        self.damaged_files.is_empty() && self.damaged_ranges.is_empty() && self.incomplete_points.is_empty()
    }

    /// Logs every finding: damage as errors, crash leftovers as warnings.
    pub fn log(&self) {
        for f in &self.damaged_files {
            tracing::error!(path = %f.path.display(), "damaged file not used: {}", f.reason);
        }
        for r in &self.damaged_ranges {
            tracing::error!(path = %r.path.display(), offset = r.offset, len = r.len, "damaged stretch of a pack: its records are lost");
        }
        for p in &self.incomplete_points {
            tracing::error!(
                point = %p.point, path = %p.path.display(), missing = p.missing, first = %p.first_missing,
                "restore point references blocks the store does not hold"
            );
        }
        for t in &self.truncated_tails {
            tracing::warn!(path = %t.path.display(), offset = t.offset, bytes = t.bytes, "cut a pack's unsynced tail");
        }
        for p in &self.removed_packs {
            tracing::warn!(path = %p.display(), "removed a pack that held nothing durable");
        }
        for p in &self.rebuilt_indexes {
            tracing::warn!(path = %p.display(), "rebuilt a pack index from its pack");
        }
        for p in &self.removed_temp_files {
            tracing::warn!(path = %p.display(), "removed a file a crash left half-written");
        }
        tracing::info!(packs = self.packs, blocks = self.blocks, points = self.points, "store opened");
    }
}

/// A stored block that does not read back as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlock {
    pub digest: Digest,
    pub pack: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// The committed points that reference it, in order.
    pub points: Vec<RestorePointId>,
}

/// A block committed points reference that the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingBlock {
    pub digest: Digest,
    pub points: Vec<RestorePointId>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    pub points_checked: u64,
    pub damaged_blocks: Vec<DamagedBlock>,
    pub missing_blocks: Vec<MissingBlock>,
    pub damaged_files: Vec<DamagedFile>,
    /// Stretches of packs found unreadable when the store was opened.
    pub damaged_ranges: Vec<DamagedRange>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damaged_blocks.is_empty() && self.missing_blocks.is_empty() && self.damaged_files.is_empty() && self.damaged_ranges.is_empty()
    }
}

fn points(points: &[RestorePointId]) -> String {
    if points.is_empty() {
        return "no committed point".into();
    }
    points.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// One line per finding, as `blockferry verify` prints it.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.damaged_blocks {
            writeln!(
                f,
                "damaged block {} in {} at offset {}: {}; needed by {}",
                b.digest,
                b.pack.display(),
                b.offset,
                b.reason,
                points(&b.points)
            )?;
        }
        for b in &self.missing_blocks {
            writeln!(f, "missing block {}; needed by {}", b.digest, points(&b.points))?;
        }
        for d in &self.damaged_files {
            writeln!(f, "damaged file {}: {}", d.path.display(), d.reason)?;
        }
        for r in &self.damaged_ranges {
            writeln!(f, "damaged stretch of {} at offset {}, {} bytes", r.path.display(), r.offset, r.len)?;
        }
        write!(
            f,
            "checked {} blocks ({} bytes) and {} points: {}",
            self.blocks_checked,
            self.bytes_checked,
            self.points_checked,
            if self.is_clean() { "no damage" } else { "DAMAGE FOUND" }
        )
    }
}
