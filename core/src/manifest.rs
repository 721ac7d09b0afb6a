//! Restore-point manifests: a logical full per VM.
//!
//! Every restore point lists, for each disk, the digest of every block
//! (`Digest::ZERO_BLOCK` for zero and swap blocks), as Proxmox Backup
//! Server's fixed index does. An incremental only adds the blocks it did not
//! already have; retention can delete any manifest without breaking the
//! others (forever-forward incremental), and blocks no manifest references
//! are garbage.

use crate::block::{BlockSize, Digest};
use crate::ids::{ChangeId, JobId, RestorePointId, SessionId, SnapshotId, VmId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub point: RestorePointId,
    pub job: JobId,
    pub session: SessionId,
    pub vm: VmId,
    /// The snapshot instant: the point holds the disks as they were then.
    pub snapshot_at: Timestamp,
    /// The hypervisor snapshot the point was read from.
    pub snapshot: SnapshotId,
    /// The point this one was built on, if any (for display; every point is
    /// complete on its own).
    pub parent: Option<RestorePointId>,
    pub disks: Vec<DiskManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskManifest {
    pub index: u16,
    pub bytes: u64,
    /// The CBT id the snapshot closed for this disk: the next incremental
    /// asks for changes since it.
    pub change_id: Option<ChangeId>,
    pub block_size: BlockSize,
    /// Shared, not copied, between the repository's catalog, the commit in
    /// flight and the store: a disk's vector is its size / block size long.
    pub digests: Arc<[Digest]>,
}

/// A disk's digest vector built on `base` (a previous point's, or none:
/// all zero blocks), cut or padded with zero blocks to `count`, with
/// `changes` (block index, digest) applied in order: what a finished disk
/// task holds. Built in place in its shared allocation (one copy of the
/// base, however large the disk).
pub fn apply_changes(
    base: Option<&[Digest]>,
    count: usize,
    changes: impl IntoIterator<Item = (u64, Digest)>,
) -> Result<Arc<[Digest]>, String> {
    let base = base.unwrap_or(&[]);
    let mut digests: Arc<[Digest]> = match base.get(..count) {
        // The usual case (a disk that kept its size): one memory copy.
        Some(kept) => Arc::from(kept),
        None => base.iter().copied().chain(std::iter::repeat(Digest::ZERO_BLOCK)).take(count).collect(),
    };
    let slots = Arc::get_mut(&mut digests).ok_or("a new digest vector is shared")?;
    for (index, digest) in changes {
        *slots.get_mut(index as usize).ok_or_else(|| format!("block {index} is beyond the disk's {count} blocks"))? = digest;
    }
    Ok(digests)
}

/// A restore point without its digests: what the manager's catalog keeps,
/// what `CommitPoint` carries and what `ListPoints` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointHeader {
    pub point: RestorePointId,
    pub job: JobId,
    pub session: SessionId,
    pub vm: VmId,
    pub snapshot_at: Timestamp,
    pub snapshot: SnapshotId,
    pub parent: Option<RestorePointId>,
    pub disks: Vec<PointDisk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointDisk {
    pub index: u16,
    pub bytes: u64,
    pub change_id: Option<ChangeId>,
}

impl Manifest {
    pub fn header(&self) -> PointHeader {
        PointHeader {
            point: self.point,
            job: self.job,
            session: self.session,
            vm: self.vm,
            snapshot_at: self.snapshot_at,
            snapshot: self.snapshot,
            parent: self.parent,
            disks: self.disks.iter().map(|d| PointDisk { index: d.index, bytes: d.bytes, change_id: d.change_id }).collect(),
        }
    }

    /// Every non-zero digest this point references (with repeats).
    pub fn referenced(&self) -> impl Iterator<Item = Digest> + '_ {
        self.disks.iter().flat_map(|d| d.digests.iter().copied()).filter(|d| !d.is_zero_block())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest([n; 32])
    }

    #[test]
    fn changes_apply_on_the_base_cut_or_padded_to_the_disk() {
        let z = Digest::ZERO_BLOCK;
        let base = [d(1), d(2), d(3)];
        assert_eq!(&*apply_changes(Some(&base), 2, [(1, d(9))]).unwrap(), &[d(1), d(9)]);
        assert_eq!(&*apply_changes(Some(&base), 5, [(4, d(7)), (4, d(8))]).unwrap(), &[d(1), d(2), d(3), z, d(8)], "later wins");
        assert_eq!(&*apply_changes(None, 2, []).unwrap(), &[z, z]);
        let e = apply_changes(Some(&base), 3, [(3, d(1))]).unwrap_err();
        assert!(e.contains("block 3 is beyond the disk's 3 blocks"), "{e}");
    }

    use proptest::prelude::*;

    /// Digests from a small alphabet (so vectors share some), zero blocks
    /// among them.
    fn digest() -> impl Strategy<Value = Digest> {
        prop_oneof![1 => Just(Digest::ZERO_BLOCK), 4 => (1u8..6).prop_map(d)]
    }

    fn digests(max: usize) -> impl Strategy<Value = Vec<Digest>> {
        prop::collection::vec(digest(), 0..max)
    }

    fn changes(max_index: u64) -> impl Strategy<Value = Vec<(u64, Digest)>> {
        prop::collection::vec((0..max_index, digest()), 0..12)
    }

    /// The model: the base, cut or padded with zero blocks to `count`,
    /// each change written over it in order.
    fn model(base: Option<&[Digest]>, count: usize, changes: &[(u64, Digest)]) -> Option<Vec<Digest>> {
        let mut disk: Vec<Digest> = base.unwrap_or(&[]).iter().copied().chain(std::iter::repeat(Digest::ZERO_BLOCK)).take(count).collect();
        for &(index, digest) in changes {
            *disk.get_mut(usize::try_from(index).ok()?)? = digest;
        }
        Some(disk)
    }

    proptest! {
        /// Issue 13 §7: applying changes gives the model, a vector exactly
        /// the disk's length; a change beyond the disk is refused, naming
        /// the first such block.
        #[test]
        fn applying_changes_gives_the_model(base in prop::option::of(digests(12)), count in 0usize..12, changes in changes(14)) {
            match (apply_changes(base.as_deref(), count, changes.iter().copied()), model(base.as_deref(), count, &changes)) {
                (Ok(got), Some(want)) => prop_assert_eq!(&*got, &want[..]),
                (Err(e), None) => {
                    let first = changes.iter().find(|(i, _)| *i as usize >= count).map(|(i, _)| *i);
                    prop_assert!(first.is_some_and(|i| e.contains(&format!("block {i} is beyond the disk's {count} blocks"))), "{}", e);
                }
                (got, want) => prop_assert!(false, "got {:?}, the model {:?}", got, want),
            }
        }

        /// What an incremental sends is what differs from its base (a
        /// block beyond the base's end that is not zero): applied to the
        /// base at the new size, it gives the new disk, whether the disk
        /// grew or shrank.
        #[test]
        fn the_difference_of_two_points_applied_to_the_first_gives_the_second(a in digests(20), b in digests(20)) {
            let differs = b.iter().enumerate().filter(|&(i, x)| a.get(i).unwrap_or(&Digest::ZERO_BLOCK) != x);
            let diff: Vec<(u64, Digest)> = differs.map(|(i, x)| (i as u64, *x)).collect();
            let got = apply_changes(Some(&a), b.len(), diff);
            prop_assert_eq!(got.as_deref(), Ok(&b[..]));
        }

        /// Batches sent again after a broken connection, or a disk's changes
        /// in two parts, make the same vector: applying is idempotent, and
        /// applying in two steps is applying the concatenation.
        #[test]
        fn changes_compose_and_resending_them_changes_nothing(
            (base, count, first, second) in (1usize..10).prop_flat_map(|n| (digests(10), Just(n), changes(n as u64), changes(n as u64)))
        ) {
            let once = apply_changes(Some(&base), count, first.iter().copied()).expect("within the disk");
            let twice = apply_changes(Some(&once), count, first.iter().copied()).expect("within the disk");
            prop_assert_eq!(&once, &twice);
            let stepwise = apply_changes(Some(&once), count, second.iter().copied()).expect("within the disk");
            let whole = apply_changes(Some(&base), count, first.iter().chain(&second).copied()).expect("within the disk");
            prop_assert_eq!(stepwise, whole);
        }
    }
}
