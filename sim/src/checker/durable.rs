//! Invariant 5's durability half, in time proportional to what changed:
//! every block a committed point references must be durable at its store.
//!
//! Looking every block of every committed point up in the store costs a map
//! lookup per block of the disk at each commit. But a block in the same slot
//! of the previous point of that disk (at that repository) was found durable
//! then, and it still is unless the store durably deleted it since. So only
//! the slots that changed, and the ones holding a block deleted since, are
//! looked up: the same answer as looking up everything.

use crate::world::Store;
use blockferry_core::block::DigestHasher;
use blockferry_core::{Digest, VmId};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

/// One disk of one VM at one repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lineage {
    pub repository: String,
    pub vm: VmId,
    pub disk: u16,
}

/// A point's disk whose every block was durable (its digests, shared with
/// the stored manifest), and the store's deletion mark then.
#[derive(Debug)]
struct Proven {
    digests: Arc<[Digest]>,
    deletions: u64,
}

#[derive(Debug, Default)]
pub struct Durable {
    proven: BTreeMap<Lineage, Proven>,
    /// The deletion filter's bits, all clear between calls: set for one
    /// check and cleared again word by word where they were set (a fresh
    /// 512 KiB filter per point's disk cost a whole clear, and page faults).
    filter: Vec<u64>,
}

impl Durable {
    /// The first block of `digests` (a point's disk, as stored at `store`)
    /// that is not durable there.
    pub fn first_missing(&mut self, store: &Store, lineage: Lineage, digests: &Arc<[Digest]>) -> Option<usize> {
        let proven = self.proven.remove(&lineage);
        let deleted = proven.as_ref().map_or(&[][..], |p| store.durably_deleted_since(p.deletions));
        let filter = Deleted::set(&mut self.filter, deleted);
        // The slots to look up, then one batched lookup: independent
        // lookups overlap their cache misses, which dominate here.
        let before: &[Digest] = proven.as_ref().map_or(&[], |p| &p.digests);
        let mut unknown = Vec::new();
        for (i, d) in digests.iter().enumerate() {
            // A slot that held the same block before needs a look only if
            // that block may have been deleted since.
            let known = before.get(i) == Some(d);
            if (!known || filter.may_contain(d)) && !d.is_zero_block() {
                unknown.push(i);
            }
        }
        filter.clear(deleted);
        let wanted: Vec<Digest> = unknown.iter().map(|&i| digests[i]).collect();
        let missing = store.durable_blocks(&wanted).iter().position(|durable| !durable).map(|k| unknown[k]);
        if missing.is_none() {
            self.proven.insert(lineage, Proven { digests: digests.clone(), deletions: store.durable_deletions() });
        }
        missing
    }
}

/// Blocks deleted since a mark, as a filter of two bits per block: one at
/// 22 bits of the digest's first four bytes (cheap: tested for every slot),
/// one at 22 bits of a hash of the whole digest (tested only where the
/// first is set). A hit only means "look it up in the store"; with both,
/// a false hit is about 50 times rarer than with the first alone, and each
/// costs a store lookup far outside the caches.
struct Deleted<'a> {
    bits: &'a mut Vec<u64>,
}

/// 4 Mbit: the tens of thousands of blocks a TiB-scale repository deletes
/// between two points of a disk set about 2% of the bits (two each), so
/// about one intact slot in 2,500 is looked up again.
const FILTER_BITS: u32 = 22;

impl<'a> Deleted<'a> {
    /// The filter of `deleted`, in `bits` (all clear on entry).
    fn set(bits: &'a mut Vec<u64>, deleted: &[Digest]) -> Deleted<'a> {
        bits.resize(1 << (FILTER_BITS - 6), 0);
        for d in deleted {
            for bit in [Self::first_bit(d), Self::second_bit(d)] {
                bits[bit / 64] |= 1 << (bit % 64);
            }
        }
        Deleted { bits }
    }

    /// Clears the words holding the bits `deleted` set (no other bit is
    /// set), leaving the filter empty for the next use.
    fn clear(self, deleted: &[Digest]) {
        for d in deleted {
            self.bits[Self::first_bit(d) / 64] = 0;
            self.bits[Self::second_bit(d) / 64] = 0;
        }
    }

    fn first_bit(d: &Digest) -> usize {
        (u32::from_le_bytes([d.0[0], d.0[1], d.0[2], d.0[3]]) >> (32 - FILTER_BITS)) as usize
    }

    fn second_bit(d: &Digest) -> usize {
        (BuildHasherDefault::<DigestHasher>::default().hash_one(d) >> (64 - FILTER_BITS)) as usize
    }

    fn has(&self, bit: usize) -> bool {
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }

    fn may_contain(&self, d: &Digest) -> bool {
        self.has(Self::first_bit(d)) && self.has(Self::second_bit(d))
    }
}
