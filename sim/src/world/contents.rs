//! Every disk of the world, and what job blocks of them contain.
//!
//! A job block is a run of fine blocks. Its digest follows core's rules in
//! both payload modes:
//!
//! * **real**: the fine blocks' bytes are materialised and concatenated;
//!   the digest is `Digest::ZERO_BLOCK` if they are all zero, else BLAKE3.
//! * **synthetic**: no bytes; the digest is a function of the fine-block
//!   *contents*, so equal content always gets the same digest, whatever
//!   disk, snapshot or block size it is read through:
//!   1. all zero → `Digest::ZERO_BLOCK`;
//!   2. exactly the slices of one written-but-untraceable block → that
//!      block's digest;
//!   3. a run of one disk's generated content as the guest left it at some
//!      write → a [`RangeRef`] packed into the digest;
//!   4. anything else (content of several origins) → a keyed hash of the
//!      content list, remembered so a write of that digest can be resolved.
//!
//! Writing a synthetic block resolves its digest back to fine-block
//! contents (rules 1-4 in reverse), so a restored or replicated disk holds
//! *the same* content as its source, and reads back with the same digests
//! at any block size.

use super::content::{ContentKey, Fine, Fines, RangeRef, generated_bytes, mixed_digest};
use super::digest_cache::DigestCache;
use super::disk::Disk;
use crate::scenario::PayloadMode;
use blockferry_core::payload::{BlockData, SyntheticBlock};
use blockferry_core::{BlockSize, Digest, DiskId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

pub struct Contents {
    key: ContentKey,
    mode: PayloadMode,
    fine: BlockSize,
    disks: BTreeMap<DiskId, Disk>,
    /// Content of the rule-4 digests handed out by reads.
    mixed: BTreeMap<Digest, Vec<Fine>>,
    /// Whole-disk digest vectors the oracle computed (a cache: it never
    /// changes an answer).
    oracle: RefCell<DigestCache>,
}

impl Contents {
    pub fn new(key: ContentKey, mode: PayloadMode, fine: BlockSize) -> Contents {
        Contents { key, mode, fine, disks: BTreeMap::new(), mixed: BTreeMap::new(), oracle: RefCell::default() }
    }

    pub fn key(&self) -> &ContentKey {
        &self.key
    }

    pub fn mode(&self) -> PayloadMode {
        self.mode
    }

    /// The world's fine-block size.
    pub fn fine(&self) -> BlockSize {
        self.fine
    }

    pub fn insert(&mut self, disk: Disk) {
        self.disks.insert(disk.id(), disk);
    }

    pub fn disk(&self, id: DiskId) -> Option<&Disk> {
        self.disks.get(&id)
    }

    pub fn disk_mut(&mut self, id: DiskId) -> Option<&mut Disk> {
        self.disks.get_mut(&id)
    }

    /// Checks that `block_size` covers whole fine blocks.
    pub fn check_block_size(&self, block_size: BlockSize) -> Result<(), String> {
        if block_size < self.fine {
            return Err(format!(
                "block size {} bytes is finer than the world's content grain of {} bytes",
                block_size.bytes(),
                self.fine.bytes()
            ));
        }
        Ok(())
    }

    /// The fine blocks of `range` of `disk` at `position`.
    fn fines(disk: &Disk, range: Range<u64>, position: u64) -> Fines {
        range.map(|i| disk.fine_at(i, position)).collect()
    }

    /// Job block `block` of `disk` at `position`, as a read hands it out.
    /// Synthetic rule-4 digests are remembered (they may be written back).
    pub fn read_block(&mut self, disk: DiskId, position: u64, block_size: BlockSize, block: u64) -> Result<BlockData, String> {
        let d = self.disks.get(&disk).ok_or_else(|| format!("no disk {disk}"))?;
        let range = d.block_range(block_size, block);
        let lens = range.clone().map(|i| d.fine_len(i));
        let fines = Self::fines(d, range, position);
        match self.mode {
            PayloadMode::Real => Ok(BlockData::Bytes(self.materialise(&fines, lens))),
            PayloadMode::Synthetic => {
                let (digest, rule4) = self.synthetic_digest(&fines);
                let block = SyntheticBlock {
                    digest,
                    raw_len: u32::try_from(lens.clone().sum::<u64>()).unwrap_or(u32::MAX),
                    compressibility: self.compressibility(&fines, lens),
                };
                if rule4 {
                    self.mixed.entry(digest).or_insert_with(|| fines.to_vec());
                }
                Ok(BlockData::Synthetic(block))
            }
        }
    }

    /// The digest of job block `block` of `disk` at `position` (the oracle:
    /// remembers nothing).
    pub fn block_digest(&self, disk: &Disk, position: u64, block_size: BlockSize, block: u64) -> Digest {
        let range = disk.block_range(block_size, block);
        let lens = range.clone().map(|i| disk.fine_len(i));
        let fines = Self::fines(disk, range, position);
        match self.mode {
            PayloadMode::Real => real_digest(&self.materialise(&fines, lens)),
            PayloadMode::Synthetic => self.synthetic_digest(&fines).0,
        }
    }

    /// The digest of every job block of `disk` at `position` (the oracle).
    /// Derived from the vector computed last, recomputing only the blocks
    /// written in between (see `digest_cache`).
    pub fn disk_digests(&self, disk: &Disk, position: u64, block_size: BlockSize) -> Arc<[Digest]> {
        let id = disk.id();
        if let Some(digests) = self.oracle.borrow_mut().exact(id, block_size, position) {
            return digests;
        }
        let count = disk.block_count(block_size);
        let last = self.oracle.borrow_mut().take(id, block_size);
        let digests: Arc<[Digest]> = match last {
            Some((from, mut digests)) if from.abs_diff(position) < count => {
                let k = disk.per_block(block_size);
                let mut touched: Vec<u64> = disk.written_between(from.min(position), from.max(position)).map(|f| f / k).collect();
                touched.sort_unstable();
                touched.dedup();
                // In place, unless a caller still holds the old vector.
                let slots = Arc::make_mut(&mut digests);
                for block in touched {
                    if let Some(slot) = slots.get_mut(block as usize) {
                        *slot = self.block_digest(disk, position, block_size, block);
                    }
                }
                digests
            }
            _ => (0..count).map(|b| self.block_digest(disk, position, block_size, b)).collect(),
        };
        self.oracle.borrow_mut().insert(id, block_size, position, digests.clone());
        digests
    }

    /// The synthetic digest of `fines`; `true` when it is a rule-4 (mixed)
    /// digest.
    fn synthetic_digest(&self, fines: &[Fine]) -> (Digest, bool) {
        if fines.iter().all(|f| *f == Fine::Zero) {
            return (Digest::ZERO_BLOCK, false);
        }
        if let Some(Fine::Slice { digest, parts, .. }) = fines.first() {
            let whole = *parts as usize == fines.len()
                && fines.iter().enumerate().all(
                    |(j, f)| matches!(f, Fine::Slice { digest: d, parts: p, part, .. } if d == digest && p == parts && *part as usize == j),
                );
            if whole {
                return (**digest, false);
            }
        }
        if let Some((range, disk)) = self.range_of(fines) {
            return (range.with_check(disk.range_check(&range, &self.key)), false);
        }
        (mixed_digest(&self.key, fines), true)
    }

    /// The range a digest names and its origin disk, if it is one of this
    /// world's range digests over a disk it has (see [`RangeRef::decode`];
    /// the origin's check is remembered, see `range_checks`).
    fn decode_range(&self, digest: &Digest) -> Option<(RangeRef, &Disk)> {
        let (range, claimed) = RangeRef::parse(digest)?;
        let disk = self.disks.get(&range.origin)?;
        (disk.range_check(&range, &self.key) == claimed).then_some((range, disk))
    }

    /// The [`RangeRef`] naming exactly `fines`, if one does, and its origin
    /// disk.
    fn range_of(&self, fines: &[Fine]) -> Option<(RangeRef, &Disk)> {
        let mut origin = None;
        let mut first = None;
        let mut position = 0;
        for (j, fine) in fines.iter().enumerate() {
            match fine {
                Fine::Zero => {}
                Fine::Gen { origin: o, index, generation } => {
                    let f = index.checked_sub(j as u64)?;
                    if *origin.get_or_insert(*o) != *o || *first.get_or_insert(f) != f {
                        return None;
                    }
                    position = position.max(*generation);
                }
                Fine::Slice { .. } | Fine::Bytes(_) => return None,
            }
        }
        let (origin, first) = (origin?, first?);
        let disk = self.disks.get(&origin)?;
        let count = u32::try_from(fines.len()).ok()?;
        if first + u64::from(count) > disk.fine_count() {
            return None;
        }
        let matches = fines.iter().enumerate().all(|(j, f)| disk.guest_fine_at(first + j as u64, position) == *f);
        matches.then_some((RangeRef { origin, first, count, position }, disk))
    }

    /// Fine-block contents of a block of data about to be written over the
    /// fine blocks with lengths `lens`.
    pub fn resolve(&self, data: &BlockData, lens: impl Iterator<Item = u64> + Clone) -> Result<Fines, String> {
        let expected: u64 = lens.clone().sum();
        if data.raw_len() != expected {
            return Err(format!("block holds {} bytes, expected {expected}", data.raw_len()));
        }
        match (data, self.mode) {
            (BlockData::Bytes(bytes), PayloadMode::Real) => {
                let mut at = 0usize;
                let fines = lens.map(|len| {
                    let chunk = &bytes[at..at + len as usize];
                    at += len as usize;
                    if chunk.iter().all(|&b| b == 0) { Fine::Zero } else { Fine::Bytes(Arc::from(chunk)) }
                });
                Ok(fines.collect())
            }
            (BlockData::Synthetic(s), PayloadMode::Synthetic) => Ok(self.resolve_synthetic(s, lens.count())),
            (BlockData::Bytes(_), PayloadMode::Synthetic) => Err("real bytes written in a synthetic-payload world".into()),
            (BlockData::Synthetic(_), PayloadMode::Real) => Err("a synthetic block written in a real-payload world".into()),
        }
    }

    fn resolve_synthetic(&self, block: &SyntheticBlock, count: usize) -> Fines {
        if block.digest.is_zero_block() {
            return std::iter::repeat_n(Fine::Zero, count).collect();
        }
        if let Some(fines) = self.mixed.get(&block.digest).filter(|f| f.len() == count) {
            return fines.iter().cloned().collect();
        }
        let traced = self.decode_range(&block.digest).filter(|(r, _)| r.count as usize == count).and_then(|(r, disk)| {
            let end = r.first.checked_add(u64::from(r.count)).filter(|&end| end <= disk.fine_count())?;
            Some((r.first..end).map(|i| disk.guest_fine_at(i, r.position)).collect())
        });
        traced.unwrap_or_else(|| {
            let parts = u32::try_from(count).unwrap_or(u32::MAX);
            let digest = Arc::new(block.digest);
            (0..parts).map(|part| Fine::Slice { digest: digest.clone(), parts, part, compressibility: block.compressibility }).collect()
        })
    }

    /// Real-mode bytes of `fines` with lengths `lens`.
    fn materialise(&self, fines: &[Fine], lens: impl Iterator<Item = u64> + Clone) -> Vec<u8> {
        let mut out = Vec::with_capacity(lens.clone().sum::<u64>() as usize);
        for (fine, len) in fines.iter().zip(lens) {
            let len = len as usize;
            let start = out.len();
            match fine {
                Fine::Zero | Fine::Slice { .. } => out.resize(start + len, 0),
                Fine::Gen { origin, index, generation } => {
                    let compressibility = self.disks.get(origin).map_or(0.5, Disk::compressibility);
                    let origin_len = self.disks.get(origin).map_or(len as u64, |d| d.fine_len(*index)) as usize;
                    let mut bytes = generated_bytes(&self.key, *origin, *index, *generation, origin_len, compressibility);
                    bytes.resize(len, 0);
                    out.extend_from_slice(&bytes);
                }
                Fine::Bytes(bytes) => {
                    out.extend_from_slice(&bytes[..len.min(bytes.len())]);
                    out.resize(start + len, 0);
                }
            }
        }
        out
    }

    /// The modelled compressibility (percent) of a block: zero fine blocks
    /// count as fully compressible, generated ones as their origin's.
    fn compressibility(&self, fines: &[Fine], lens: impl Iterator<Item = u64> + Clone) -> u8 {
        let total: u64 = lens.clone().sum();
        if total == 0 {
            return 100;
        }
        let weighted: f64 = fines
            .iter()
            .zip(lens)
            .map(|(fine, len)| {
                let share = match fine {
                    Fine::Zero => 1.0,
                    Fine::Gen { origin, .. } => self.disks.get(origin).map_or(0.5, Disk::compressibility),
                    Fine::Slice { compressibility, .. } => f64::from(*compressibility) / 100.0,
                    Fine::Bytes(_) => 0.5,
                };
                share * len as f64
            })
            .sum();
        (weighted / total as f64 * 100.0).round().clamp(0.0, 100.0) as u8
    }
}

/// Core's digest rule for real bytes.
pub fn real_digest(bytes: &[u8]) -> Digest {
    if bytes.iter().all(|&b| b == 0) { Digest::ZERO_BLOCK } else { Digest::of(bytes) }
}
