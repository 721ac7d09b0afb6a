//! The oracle's memory of whole-disk digest vectors.
//!
//! The checker asks for the digest vector of a disk at some write-log
//! position after every commit (and the replication checks ask for several
//! older ones again). Recomputing one costs a synthetic digest per block —
//! O(disk size) per question — while two positions of one disk differ only
//! in the blocks the writes between them touched. So the cache keeps a few
//! recent vectors per (disk, block size) and derives a new one from the
//! nearest by recomputing just those blocks.
//!
//! This is sound because a job block's digest at a position is a pure
//! function of its fine blocks' contents at that position (see
//! `contents`), and a disk's content only changes through its append-only
//! write log: a block no write between the two positions touched holds the
//! same content, hence the same digest, at both.

use blockferry_core::{BlockSize, Digest, DiskId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Vectors kept per (disk, block size): the two positions checks of one
/// disk move forward from (its latest backup snapshot and its latest
/// replication snapshot). Four kept no more work away, and cost 190 MB at
/// the 2 TiB scale.
const PER_DISK: usize = 2;
/// Vectors kept overall (memory stays bounded however many disks a run
/// creates, say by restoring every point at the end). Enough that a day of
/// 20 VMs, half of them replicated, never evicts one disk's vectors for
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
    entries: BTreeMap<(DiskId, BlockSize), Vec<Entry>>,
    clock: u64,
    len: usize,
}

impl DigestCache {
    /// The cached vector of `disk` at `position`, if any.
    pub fn exact(&mut self, disk: DiskId, block_size: BlockSize, position: u64) -> Option<Arc<[Digest]>> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(&(disk, block_size))?.iter_mut().find(|e| e.position == position)?;
        entry.used = clock;
        Some(entry.digests.clone())
    }

    /// The cached vector of `disk` nearest to `position` (fewest log writes
    /// apart), with its position.
    pub fn nearest(&self, disk: DiskId, block_size: BlockSize, position: u64) -> Option<(u64, Arc<[Digest]>)> {
        self.entries.get(&(disk, block_size))?.iter().min_by_key(|e| e.position.abs_diff(position)).map(|e| (e.position, e.digests.clone()))
    }

    /// When `disk`'s vectors are at their limit, takes the least recently
    /// used one out (the next insert would evict it anyway) so that its
    /// memory can hold the next vector: a fresh multi-MiB vector per check
    /// is a page fault per 4 KiB.
    pub fn take_spare(&mut self, disk: DiskId, block_size: BlockSize) -> Option<Arc<[Digest]>> {
        let list = self.entries.get_mut(&(disk, block_size)).filter(|list| list.len() >= PER_DISK)?;
        let oldest = list.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i)?;
        self.len -= 1;
        Some(list.swap_remove(oldest).digests)
    }

    /// Remembers `digests` as `disk`'s vector at `position`, evicting the
    /// least recently used vectors beyond the limits.
    pub fn insert(&mut self, disk: DiskId, block_size: BlockSize, position: u64, digests: Arc<[Digest]>) {
        self.clock += 1;
        let entry = Entry { position, digests, used: self.clock };
        let list = self.entries.entry((disk, block_size)).or_default();
        list.push(entry);
        self.len += 1;
        if list.len() > PER_DISK
            && let Some(oldest) = list.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i)
        {
            list.swap_remove(oldest);
            self.len -= 1;
        }
        while self.len > TOTAL {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .flat_map(|(key, list)| list.iter().enumerate().map(move |(i, e)| (e.used, *key, i)))
            .min_by_key(|(used, _, _)| *used);
        let Some((_, key, i)) = oldest else { return };
        if let Some(list) = self.entries.get_mut(&key) {
            list.swap_remove(i);
            self.len -= 1;
            if list.is_empty() {
                self.entries.remove(&key);
            }
        }
    }
}
