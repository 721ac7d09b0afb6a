//! The oracle's memory of whole-disk digest vectors.
//!
//! The checker asks for the digest vector of a disk at some write-log
//! position after every commit (and the replication checks ask for older
//! ones again). Recomputing one costs a synthetic digest per block —
//! O(disk size) per question — while two positions of one disk differ only
//! in the blocks the writes between them touched. So the cache keeps the
//! latest vector per (disk, block size), and a new one is derived from it
//! by recomputing just those blocks — in place: the cached vector is taken
//! out and patched, so a question costs no whole-disk copy (and no fresh
//! multi-MiB allocation, a page fault per 4 KiB) unless someone still holds
//! the old vector. Checks of one disk move forward (its backup snapshots,
//! its replication snapshots a little behind), so the latest vector is
//! never far from the next question; keeping the latest of each kind as
//! well was no faster on the 2 TiB day and cost 90 MB.
//!
//! This is sound because a job block's digest at a position is a pure
//! function of its fine blocks' contents at that position (see
//! `contents`), and a disk's content only changes through its append-only
//! write log: a block no write between the two positions touched holds the
//! same content, hence the same digest, at both.

use blockferry_core::{BlockSize, Digest, DiskId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Vectors kept overall (memory stays bounded however many disks a run
/// creates, say by restoring every point at the end). Enough that a day of
/// 20 VMs, half of them replicated, never evicts one disk's vector for
/// another's (which costs a rebuild from scratch of a whole disk).
const TOTAL: usize = 256;

struct Entry {
    position: u64,
    digests: Arc<[Digest]>,
    /// Recency (higher is more recent), for eviction.
    used: u64,
}

#[derive(Default)]
pub struct DigestCache {
    entries: BTreeMap<(DiskId, BlockSize), Entry>,
    clock: u64,
}

impl DigestCache {
    /// The cached vector of `disk` if it is the one at `position`.
    pub fn exact(&mut self, disk: DiskId, block_size: BlockSize, position: u64) -> Option<Arc<[Digest]>> {
        self.clock += 1;
        let entry = self.entries.get_mut(&(disk, block_size)).filter(|e| e.position == position)?;
        entry.used = self.clock;
        Some(entry.digests.clone())
    }

    /// Takes `disk`'s cached vector out, with its position: the caller
    /// derives the next one from it and puts that back.
    pub fn take(&mut self, disk: DiskId, block_size: BlockSize) -> Option<(u64, Arc<[Digest]>)> {
        self.entries.remove(&(disk, block_size)).map(|e| (e.position, e.digests))
    }

    /// Remembers `digests` as `disk`'s vector at `position`, evicting the
    /// least recently used vectors beyond the limit.
    pub fn insert(&mut self, disk: DiskId, block_size: BlockSize, position: u64, digests: Arc<[Digest]>) {
        self.clock += 1;
        self.entries.insert((disk, block_size), Entry { position, digests, used: self.clock });
        while self.entries.len() > TOTAL {
            let oldest = self.entries.iter().min_by_key(|(_, e)| e.used).map(|(key, _)| *key);
            if let Some(key) = oldest {
                self.entries.remove(&key);
            }
        }
    }
}
