//! Garbage collection: reclaiming the space of deleted blocks.
//!
//! Deleting a block only appends a tombstone; the space comes back here.
//! A sealed pack with no live block and no tombstone still needed is
//! deleted. A sealed pack whose live records are a small share of it is
//! *compacted*: its live records are copied verbatim to the open pack, its
//! needed tombstones too, the copies are synced, and the pack is deleted.
//! A tombstone is needed while the pack holding the record it kills
//! exists (else that record would come back on the next open).
//!
//! A crash during compaction leaves both copies of some records; the newer
//! one is primary on open and the older a shadow, dropped when its pack
//! goes (see [`super::index`]). A record that fails its checksum is never
//! copied: its pack is left as it is, and the damage reported.

use super::error::StoreError;
use super::index::BlockIndex;
use super::packs::{Batch, Packs};
use super::record::{self, Loc, What};
use blockferry_core::Digest;

/// Bytes of copies appended at a time while compacting.
const COPY_BATCH: u64 = 8 << 20;

/// What a collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub packs_removed: u64,
    pub packs_compacted: u64,
    /// Bytes of pack files before less after.
    pub bytes_freed: u64,
}

/// Deletes dead packs and compacts up to `compactions` sparse ones, the
/// sparsest first.
pub fn collect(packs: &mut Packs, index: &mut BlockIndex, compact_below: f64, compactions: usize) -> Result<GcReport, StoreError> {
    let before = packs.total_len();
    let mut report = GcReport::default();
    remove_dead(packs, index, &mut report)?;
    let mut tried = Vec::new();
    while (report.packs_compacted as usize) < compactions {
        let Some(number) = sparsest(packs, index, compact_below, &tried) else { break };
        tried.push(number);
        if compact(packs, index, number)? {
            report.packs_compacted += 1;
            remove_dead(packs, index, &mut report)?;
        }
    }
    report.bytes_freed = before.saturating_sub(packs.total_len());
    if report != GcReport::default() {
        tracing::info!(
            removed = report.packs_removed,
            compacted = report.packs_compacted,
            freed = report.bytes_freed,
            "store garbage collected"
        );
    }
    Ok(report)
}

/// Whether pack `number` holds tombstones that still kill something.
fn tombstones_needed(packs: &Packs, number: u32) -> bool {
    packs.get(number).is_some_and(|p| p.tomb_targets.keys().any(|target| *target != number && packs.contains(*target)))
}

/// Deletes every sealed pack with no live record and no needed tombstone,
/// until none is left (deleting one can free the tombstones of another).
fn remove_dead(packs: &mut Packs, index: &mut BlockIndex, report: &mut GcReport) -> Result<(), StoreError> {
    loop {
        let dead: Vec<u32> = packs
            .iter()
            .filter(|(n, p)| p.sealed && !packs.is_open(*n) && index.pack_live(*n) == 0)
            .map(|(n, _)| n)
            .filter(|n| !tombstones_needed(packs, *n))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        for number in dead {
            packs.remove(number)?;
            index.drop_pack(number);
            report.packs_removed += 1;
        }
    }
}

/// The sealed, undamaged pack with the smallest live share below
/// `compact_below`, not among `skip`.
fn sparsest(packs: &Packs, index: &BlockIndex, compact_below: f64, skip: &[u32]) -> Option<u32> {
    packs
        .iter()
        .filter(|(n, p)| p.sealed && !p.damaged && !packs.is_open(*n) && !skip.contains(n) && p.content_len() > 0)
        .map(|(n, p)| (n, index.pack_live(n) as f64 / p.content_len() as f64))
        .filter(|(_, share)| *share < compact_below)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(n, _)| n)
}

/// Copies pack `number`'s live records and needed tombstones forward and
/// deletes it; false if a damaged record kept it.
fn compact(packs: &mut Packs, index: &mut BlockIndex, number: u32) -> Result<bool, StoreError> {
    let records = match packs.sealed_records(number) {
        Ok(records) => records,
        Err(e) => {
            tracing::error!("pack not compacted: {e}");
            return Ok(false);
        }
    };
    let mut batch = Batch::default();
    let mut moved: Vec<(Digest, Loc, u64)> = Vec::new();
    for r in records {
        let at = Loc { pack: number, offset: r.offset };
        match r.what {
            What::Block if index.get(&r.digest).is_some_and(|e| e.at == at) => {
                let bytes = packs.read(at, r.body_len)?;
                if let Err(reason) = record::check_block_record(&bytes, &r.digest) {
                    let path = packs.path(number);
                    tracing::error!(block = %r.digest, path = %path.display(), offset = r.offset, "pack not compacted, damaged block: {reason}");
                    index.mark_damaged(&r.digest);
                    flush(packs, index, &mut batch, &mut moved)?;
                    return Ok(false);
                }
                moved.push((r.digest, at, batch.len()));
                batch.raw(r, &bytes);
            }
            What::Block => {}
            What::Tombstone(target) if target.pack != number && packs.contains(target.pack) => batch.tombstone(r.digest, target),
            What::Tombstone(_) => {}
        }
        if batch.len() >= COPY_BATCH {
            flush(packs, index, &mut batch, &mut moved)?;
        }
    }
    flush(packs, index, &mut batch, &mut moved)?;
    packs.sync()?;
    packs.remove(number)?;
    index.drop_pack(number);
    Ok(true)
}

/// Appends the copies gathered so far and points the index at them.
fn flush(packs: &mut Packs, index: &mut BlockIndex, batch: &mut Batch, moved: &mut Vec<(Digest, Loc, u64)>) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let base = packs.append(batch)?;
    for (digest, from, offset) in moved.drain(..) {
        index.relocate(&digest, from, Loc { pack: base.pack, offset: base.offset + offset });
    }
    *batch = Batch::default();
    Ok(())
}
