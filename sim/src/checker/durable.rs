//! Invariant 2's foundation, "blocks durable → manifest durable": a
//! durable manifest references only durable blocks, at every instant.
//!
//! Checking it when the manager reports a point committed is too late: a
//! repository that writes the manifest first and syncs the blocks after
//! has everything durable by the time it acknowledges, yet a crash in
//! between would have kept a manifest naming lost blocks. So the store
//! calls [`ManifestAudit::manifest_durable`] at the very instant a manifest
//! becomes durable (when its write completes), and the checker collects the
//! findings. (A block deleted later while an older durable manifest still
//! names it is left to the end-of-run restores; the next manifest of the
//! same disk that names it is caught here.)
//!
//! Looking every block of every manifest up in the store costs a map
//! lookup per block of the disk at each commit. But a block in the same slot
//! of the previous manifest of that disk (at that repository) was found
//! durable then, and it still is unless the store durably deleted it since.
//! So only the slots that changed, and the ones holding a block deleted
//! since, are looked up: the same answer as looking up everything.

use crate::world::Store;
use blockferry_core::block::DigestHasher;
use blockferry_core::manifest::Manifest;
use blockferry_core::{Digest, Timestamp, VmId};
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

/// The audit a store runs on each manifest it makes durable.
#[derive(Debug, Default)]
pub struct ManifestAudit {
    durable: Durable,
    findings: Vec<String>,
}

impl ManifestAudit {
    /// `store` made `manifest` durable at `at`: each block it references
    /// must be durable there already.
    pub fn manifest_durable(&mut self, at: Timestamp, store: &Store, manifest: &Manifest) {
        for disk in &manifest.disks {
            let lineage = Lineage { repository: store.name().to_string(), vm: manifest.vm, disk: disk.index };
            if let Some(missing) = self.durable.first_missing(store, lineage, &disk.digests) {
                let digest = disk.digests.get(missing).map_or_else(String::new, |d| format!(" ({d})"));
                self.findings.push(format!(
                    "at {at}: {} made the manifest of {} durable while disk {} block {missing}{digest} is not durable",
                    store.name(),
                    manifest.point,
                    disk.index
                ));
            }
        }
    }

    /// What the audit found since the last call.
    pub fn take_findings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.findings)
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
