//! A simulated repository store: answers core's `StorageOp`s and models
//! what a crash loses.
//!
//! The store keeps two views. The *live* view is what requests see. The
//! *durable* view is what survives a crash. Block puts and deletes and
//! manifest deletes go to the live view and to a journal; `Sync` hands the
//! journal to the disk, and it becomes durable when the sync completes.
//! `PutManifest` is durable on its own, atomically, when it completes.
//! A crash at time `t` keeps exactly what completed by `t` and drops the
//! rest; since the store's device serves requests in order, completion
//! order is issue order.
//!
//! Blocks are the bulk of a store (millions in a TiB-scale run), so each is
//! kept once, in one table, with its place in each view beside it, rather
//! than in two tables; manifests are shared between the views.
//!
//! Faults: `set_full` refuses writes (a `disk_full` fault); a put that
//! would exceed capacity is refused whole; `corrupt` damages stored blocks
//! at rest, which reads then report as damaged (and real payloads have
//! their bytes flipped too, so decoding them would fail as well). Putting a
//! damaged block again repairs it.

use super::pipe::Pipe;
use crate::checker::ManifestAudit;
use blockferry_core::block::EncodedBlock;
use blockferry_core::digest_table::{DigestTable, Slot};
use blockferry_core::manifest::Manifest;
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageCompletion, StorageError, StorageOp, StorageReply, StorageRequest};
use blockferry_core::{Digest, RestorePointId, Timestamp, WARM_CHUNK};
use rand::Rng;
use rand::seq::index::sample;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How long storage operations take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreTiming {
    pub write_bytes_per_sec: u64,
    pub read_bytes_per_sec: u64,
    /// Fixed cost of a request.
    pub request: Duration,
    /// A flush (sync, and the flush inside a manifest write).
    pub sync: Duration,
}

impl Default for StoreTiming {
    fn default() -> Self {
        StoreTiming {
            write_bytes_per_sec: 300_000_000,
            read_bytes_per_sec: 500_000_000,
            request: Duration::from_micros(100),
            sync: Duration::from_millis(5),
        }
    }
}

/// A block's copy in one view: its stored length and whether it is
/// damaged. A view that does not hold the block has no copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    /// Stored bytes: a block's payload is far below 4 GiB (block sizes are
    /// at most a few MiB), and a table of millions of blocks is the bulk of
    /// a large run, so every byte of a record counts.
    len: u32,
    damaged: bool,
}

impl Held {
    fn len(self) -> u64 {
        u64::from(self.len)
    }
}

/// A stored block's payload without its digest, which is the table's key:
/// a synthetic payload is its three figures, a real one is boxed (rare,
/// and a record stays 16 bytes).
#[derive(Debug, Clone)]
enum Kept {
    Synthetic { raw_len: u32, stored_len: u32, compressibility: u8 },
    Encoded(Box<EncodedBlock>),
}

impl Default for Kept {
    fn default() -> Self {
        Kept::Synthetic { raw_len: 0, stored_len: 0, compressibility: 0 }
    }
}

impl Kept {
    fn of(payload: BlockPayload) -> Kept {
        match payload {
            BlockPayload::Synthetic { raw_len, stored_len, compressibility, .. } => {
                Kept::Synthetic { raw_len, stored_len, compressibility }
            }
            BlockPayload::Encoded(e) => Kept::Encoded(Box::new(e)),
        }
    }

    fn payload(&self, digest: Digest) -> BlockPayload {
        match self {
            Kept::Synthetic { raw_len, stored_len, compressibility } => {
                BlockPayload::Synthetic { digest, raw_len: *raw_len, stored_len: *stored_len, compressibility: *compressibility }
            }
            Kept::Encoded(e) => BlockPayload::Encoded((**e).clone()),
        }
    }
}

/// A payload's stored length as a record keeps it (see [`Held::len`]).
fn stored_len(payload: &BlockPayload) -> u32 {
    u32::try_from(payload.stored_len()).unwrap_or(u32::MAX)
}

/// One stored block: its newest payload, and its copy in each view.
///
/// One payload serves both views: a put that repairs a damaged block
/// stores the same content again (equal digests), so the bytes differ from
/// the durable copy's only by the damage, which the flag carries.
#[derive(Debug, Clone, Default)]
struct Block {
    payload: Kept,
    live: Option<Held>,
    durable: Option<Held>,
    /// Journaled or in-flight changes that still name this block: it stays
    /// in the table until they are applied, even if neither view holds it.
    pending: u32,
}

/// One change, as journaled until it is durable.
#[derive(Debug, Clone)]
enum Change {
    /// A put of this length (the payload is in the block table).
    Put(Slot, u32),
    /// A delete (the digest is in the block table too).
    Delete(Slot),
    PutManifest(Arc<Manifest>),
    DeleteManifest(RestorePointId),
    PutReplica(Arc<Manifest>),
    DeleteReplica(RestorePointId),
}

impl Change {
    /// The block record a block change names.
    fn slot(&self) -> Option<Slot> {
        match *self {
            Change::Put(slot, _) | Change::Delete(slot) => Some(slot),
            _ => None,
        }
    }
}

/// Manifests and replica metadata of one view, and its block bytes.
#[derive(Debug, Clone, Default)]
struct View {
    manifests: BTreeMap<RestorePointId, Arc<Manifest>>,
    /// Replica metadata (digest vectors of replica points held elsewhere).
    replicas: BTreeMap<RestorePointId, Arc<Manifest>>,
    /// Payload bytes of the blocks the view holds.
    bytes: u64,
}

impl View {
    /// Applies a metadata change (block changes go through the table).
    fn apply_metadata(&mut self, change: &Change) {
        match change {
            Change::PutManifest(m) => _ = self.manifests.insert(m.point, m.clone()),
            Change::DeleteManifest(point) => _ = self.manifests.remove(point),
            Change::PutReplica(m) => _ = self.replicas.insert(m.point, m.clone()),
            Change::DeleteReplica(point) => _ = self.replicas.remove(point),
            Change::Put(..) | Change::Delete(..) => {}
        }
    }
}

/// Which view a block change is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Live,
    Durable,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Payload bytes in the live view.
    pub bytes_stored: u64,
    /// Payload bytes that would survive a crash now.
    pub bytes_durable: u64,
    pub blocks: u64,
    pub manifests: u64,
    /// Payload bytes ever accepted by puts.
    pub bytes_written: u64,
    pub puts_refused_full: u64,
    pub crashes: u64,
}

pub struct Store {
    name: String,
    capacity: u64,
    timing: StoreTiming,
    io: Pipe,
    /// Every block either view holds or a pending change names, by digest
    /// and by slot (see `DigestTable`; nothing reads them in order but
    /// `Recover` and `corrupt`, which sort).
    blocks: DigestTable<Block>,
    /// Blocks the live view holds.
    live_blocks: u64,
    live: View,
    durable: View,
    /// Every block deletion applied to the durable view, in order: lets the
    /// checker tell which blocks left it since it last looked.
    durably_deleted: Vec<Digest>,
    /// Changes since the last `Sync`, not durable yet.
    journal: Vec<Change>,
    /// Batches on their way to the durable view, by completion time.
    in_flight: VecDeque<(Timestamp, Vec<Change>)>,
    full: bool,
    stats: StoreStats,
    /// Checks every manifest at the instant it becomes durable.
    audit: ManifestAudit,
}

impl Store {
    pub fn new(name: &str, capacity: u64) -> Store {
        Store {
            name: name.to_string(),
            capacity,
            timing: StoreTiming::default(),
            io: Pipe::default(),
            blocks: DigestTable::default(),
            live_blocks: 0,
            live: View::default(),
            durable: View::default(),
            durably_deleted: Vec::new(),
            journal: Vec::new(),
            in_flight: VecDeque::new(),
            full: false,
            stats: StoreStats::default(),
            audit: ManifestAudit::default(),
        }
    }

    /// Sizes the block table for `blocks` blocks up front (a hint: the
    /// table still grows past it).
    pub fn reserve_blocks(&mut self, blocks: usize) {
        self.blocks.reserve(blocks);
    }

    pub fn set_timing(&mut self, timing: StoreTiming) {
        self.timing = timing;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Carries out one request at `now`.
    pub fn handle(&mut self, now: Timestamp, request: StorageRequest) -> (Timestamp, StorageCompletion) {
        self.settle(now);
        let (at, result) = match request.op {
            StorageOp::PutBlocks(blocks) => self.put_blocks(now, blocks),
            StorageOp::Sync => {
                let at = self.io.occupy(now, self.timing.sync, 0, 0);
                let batch = std::mem::take(&mut self.journal);
                self.in_flight.push_back((at, batch));
                (at, Ok(StorageReply::Done))
            }
            StorageOp::PutManifest(manifest) => self.put_metadata(now, manifest, Change::PutManifest),
            StorageOp::DeleteManifest(point) => {
                self.journal_metadata(Change::DeleteManifest(point));
                (self.io.occupy(now, self.timing.request, 0, 0), Ok(StorageReply::Done))
            }
            StorageOp::DeleteBlocks(digests) => {
                for chunk in digests.chunks(WARM_CHUNK) {
                    self.blocks.warm(chunk.iter().copied());
                    for digest in chunk {
                        self.journal_delete(*digest);
                    }
                }
                (self.io.occupy(now, self.timing.request, 0, 0), Ok(StorageReply::Done))
            }
            StorageOp::GetBlocks(digests) => self.get_blocks(now, &digests),
            StorageOp::PutReplicaMetadata(manifest) => self.put_metadata(now, manifest, Change::PutReplica),
            StorageOp::DeleteReplicaMetadata(point) => {
                // Durable on its own when it completes, like a manifest
                // write (but never refused: deleting frees space).
                let at = self.io.occupy(now, self.timing.request + self.timing.sync, 0, 0);
                let change = Change::DeleteReplica(point);
                self.live.apply_metadata(&change);
                self.in_flight.push_back((at, vec![change]));
                (at, Ok(StorageReply::Done))
            }
            StorageOp::RecoverReplicaMetadata => {
                let at = self.io.occupy(now, self.timing.request, 0, 0);
                (at, Ok(StorageReply::ReplicaMetadata(self.durable.replicas.values().map(|m| (**m).clone()).collect())))
            }
            StorageOp::Recover => {
                let mut blocks: Vec<Digest> = self.blocks.iter().filter(|(_, b)| b.durable.is_some()).map(|(d, _)| *d).collect();
                let listing = blocks.len() as u64 * 32;
                let at = self.io.occupy(now, self.timing.request, listing, self.timing.read_bytes_per_sec);
                let manifests = self.durable.manifests.values().map(|m| (**m).clone()).collect();
                blocks.sort_unstable();
                (at, Ok(StorageReply::Recovered { manifests, blocks }))
            }
        };
        self.refresh_stats();
        (at, StorageCompletion { id: request.id, result })
    }

    fn put_blocks(&mut self, now: Timestamp, blocks: Vec<BlockPayload>) -> (Timestamp, Result<StorageReply, StorageError>) {
        let fixed = self.timing.request;
        if self.full {
            self.stats.puts_refused_full += 1;
            return (self.io.occupy(now, fixed, 0, 0), Err(StorageError::Full));
        }
        // Zero blocks are never stored; a block already stored intact is
        // kept; a damaged one is replaced (the repair path). Sorted, so the
        // journal's order does not depend on the request's.
        let mut blocks = blocks;
        blocks.retain(|p| !p.digest().is_zero_block());
        blocks.sort_by_key(BlockPayload::digest);
        blocks.dedup_by_key(|p| p.digest());
        // A put is refused whole if it would not fit. Only near capacity
        // is the exact growth worth a lookup per block: every put looks its
        // blocks up once more below, and lookups in a table of millions of
        // blocks are most of a large run's store time.
        let most: u64 = blocks.iter().map(BlockPayload::stored_len).sum();
        if self.live.bytes + most > self.capacity {
            let growth: u64 = blocks
                .iter()
                .map(|p| match self.blocks.get(&p.digest()).and_then(|b| b.live) {
                    None => p.stored_len(),
                    Some(c) if c.damaged => p.stored_len().saturating_sub(c.len()),
                    Some(_) => 0,
                })
                .sum();
            if self.live.bytes + growth > self.capacity {
                self.stats.puts_refused_full += 1;
                return (self.io.occupy(now, fixed, 0, 0), Err(StorageError::Full));
            }
        }
        self.blocks.warm(blocks.iter().map(BlockPayload::digest));
        let mut bytes = 0;
        for payload in blocks {
            let (digest, len) = (payload.digest(), stored_len(&payload));
            // A new record starts empty and is filled like a repaired one.
            // (No slot only past 4 Gi records: memory runs out long before.)
            let Some((slot, _)) = self.blocks.find_or_insert_with(digest, Block::default) else { continue };
            let Some(block) = self.blocks.at_mut(slot).filter(|b| b.live.is_none_or(|c| c.damaged)) else { continue };
            block.payload = Kept::of(payload);
            bytes += u64::from(len);
            let change = Change::Put(slot, len);
            self.live_blocks += apply(block, Side::Live, &mut self.live, &change).1;
            block.pending += 1;
            self.journal.push(change);
        }
        self.stats.bytes_written += bytes;
        (self.io.occupy(now, fixed, bytes, self.timing.write_bytes_per_sec), Ok(StorageReply::Done))
    }

    /// A manifest or replica metadata write (`change` says which): durable
    /// on its own, atomically, when it completes.
    fn put_metadata(
        &mut self,
        now: Timestamp,
        manifest: Manifest,
        change: fn(Arc<Manifest>) -> Change,
    ) -> (Timestamp, Result<StorageReply, StorageError>) {
        if self.full {
            return (self.io.occupy(now, self.timing.request, 0, 0), Err(StorageError::Full));
        }
        let size = manifest.disks.iter().map(|d| d.digests.len() as u64 * 32).sum::<u64>() + 256;
        let at = self.io.occupy(now, self.timing.request + self.timing.sync, size, self.timing.write_bytes_per_sec);
        let change = change(Arc::new(manifest));
        self.live.apply_metadata(&change);
        self.in_flight.push_back((at, vec![change]));
        (at, Ok(StorageReply::Done))
    }

    fn get_blocks(&mut self, now: Timestamp, digests: &[Digest]) -> (Timestamp, Result<StorageReply, StorageError>) {
        self.blocks.warm(digests.iter().copied());
        let mut bytes = 0;
        let out = digests
            .iter()
            .map(|d| match self.blocks.get(d) {
                Some(Block { live: Some(c), .. }) if c.damaged => Err(StorageError::Damaged(*d)),
                Some(b @ Block { live: Some(c), .. }) => {
                    bytes += c.len();
                    Ok(b.payload.payload(*d))
                }
                _ => Err(StorageError::Missing(*d)),
            })
            .collect();
        (self.io.occupy(now, self.timing.request, bytes, self.timing.read_bytes_per_sec), Ok(StorageReply::Blocks(out)))
    }

    /// Deletes a block from the live view and journals it, if the live view
    /// holds it.
    fn journal_delete(&mut self, digest: Digest) {
        let Some(slot) = self.blocks.slot(&digest) else { return };
        let Some(block) = self.blocks.at_mut(slot).filter(|b| b.live.is_some()) else { return };
        let change = Change::Delete(slot);
        self.live_blocks -= apply(block, Side::Live, &mut self.live, &change).0;
        block.pending += 1;
        self.journal.push(change);
    }

    /// Applies a metadata change to the live view and journals it.
    fn journal_metadata(&mut self, change: Change) {
        self.live.apply_metadata(&change);
        self.journal.push(change);
    }

    /// Moves every batch completed by `now` into the durable view.
    pub fn settle(&mut self, now: Timestamp) {
        while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, batch)) = self.in_flight.pop_front() {
                for chunk in batch.chunks(WARM_CHUNK) {
                    self.blocks.warm_slots(chunk.iter().filter_map(Change::slot));
                    for change in chunk {
                        self.apply_durable(change);
                        if let Change::PutManifest(manifest) = change {
                            let mut audit = std::mem::take(&mut self.audit);
                            audit.manifest_durable(at, self, manifest);
                            self.audit = audit;
                        }
                    }
                }
            }
        }
        self.refresh_stats();
    }

    /// A change became durable.
    fn apply_durable(&mut self, change: &Change) {
        let (Change::Put(slot, _) | Change::Delete(slot)) = *change else {
            return self.durable.apply_metadata(change);
        };
        let Some(block) = self.blocks.at_mut(slot) else { return };
        let (removed, _) = apply(block, Side::Durable, &mut self.durable, change);
        block.pending = block.pending.saturating_sub(1);
        let gone = block.pending == 0 && block.live.is_none() && block.durable.is_none();
        if removed == 1
            && let Some(digest) = self.blocks.digest_at(slot)
        {
            self.durably_deleted.push(*digest);
        }
        if gone {
            self.blocks.remove_at_if(slot, |_| true);
        }
    }

    fn refresh_stats(&mut self) {
        self.stats.bytes_stored = self.live.bytes;
        self.stats.bytes_durable = self.durable.bytes;
        self.stats.blocks = self.live_blocks;
        self.stats.manifests = self.live.manifests.len() as u64;
    }

    // ----- fault hooks -----

    /// The node crashed at `now`: everything not durable by then is lost.
    pub fn crash(&mut self, now: Timestamp) {
        self.settle(now);
        self.in_flight.clear();
        self.journal.clear();
        self.blocks.retain(|_, b| {
            b.live = b.durable;
            b.pending = 0;
            b.durable.is_some()
        });
        self.live_blocks = self.blocks.len() as u64;
        self.live = self.durable.clone();
        self.stats.crashes += 1;
        self.refresh_stats();
    }

    /// A full disk refuses block and manifest writes until cleared.
    pub fn set_full(&mut self, full: bool) {
        self.full = full;
    }

    /// Damages up to `n` intact stored blocks at rest, chosen by `rng`;
    /// returns their digests.
    pub fn corrupt(&mut self, n: usize, rng: &mut impl Rng) -> Vec<Digest> {
        let mut intact: Vec<Digest> = self.blocks.iter().filter(|(_, b)| b.live.is_some_and(|c| !c.damaged)).map(|(d, _)| *d).collect();
        intact.sort_unstable();
        let n = n.min(intact.len());
        let mut chosen: Vec<Digest> = sample(rng, intact.len(), n).into_iter().map(|i| intact[i]).collect();
        chosen.sort_unstable();
        for digest in &chosen {
            if let Some(block) = self.blocks.get_mut(digest) {
                damage(block);
            }
        }
        chosen
    }

    // ----- inspection (checker, reports) -----

    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Manifests as requests see them.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.live.manifests.values().map(|m| &**m)
    }

    /// Manifests that would survive a crash now.
    pub fn durable_manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.durable.manifests.values().map(|m| &**m)
    }

    /// The manifest of `point` that would survive a crash now.
    pub fn durable_manifest(&self, point: RestorePointId) -> Option<&Arc<Manifest>> {
        self.durable.manifests.get(&point)
    }

    /// Replica metadata that would survive a crash now.
    pub fn durable_replica_metadata(&self) -> impl Iterator<Item = &Manifest> {
        self.durable.replicas.values().map(|m| &**m)
    }

    pub fn has_block(&self, digest: &Digest) -> bool {
        self.blocks.get(digest).is_some_and(|b| b.live.is_some())
    }

    /// Whether each of `digests` would survive a crash now: one answer per
    /// digest, found in two passes (slots, then records) so that the
    /// lookups' cache misses overlap.
    pub fn durable_blocks(&self, digests: &[Digest]) -> Vec<bool> {
        let slots: Vec<Option<Slot>> = digests.iter().map(|d| self.blocks.slot(d)).collect();
        slots.into_iter().map(|slot| slot.and_then(|s| self.blocks.at(s)).is_some_and(|b| b.durable.is_some())).collect()
    }

    /// How many blocks have left the durable view so far: a mark for
    /// [`Store::durably_deleted_since`].
    pub fn durable_deletions(&self) -> u64 {
        self.durably_deleted.len() as u64
    }

    /// The blocks that left the durable view after `mark` (some may have
    /// been stored again since).
    pub fn durably_deleted_since(&self, mark: u64) -> &[Digest] {
        let deleted = &self.durably_deleted;
        &deleted[usize::try_from(mark).unwrap_or(deleted.len()).min(deleted.len())..]
    }

    /// Violations of "a durable manifest references only durable blocks"
    /// found since the last call (see [`ManifestAudit`]).
    pub fn take_audit_findings(&mut self) -> Vec<String> {
        self.audit.take_findings()
    }

    pub fn is_damaged(&self, digest: &Digest) -> bool {
        self.blocks.get(digest).and_then(|b| b.live).is_some_and(|c| c.damaged)
    }
}

/// Applies a block put or delete to `block`'s copy in one view; returns
/// how many copies it removed and added there (0 or 1 each).
fn apply(block: &mut Block, side: Side, view: &mut View, change: &Change) -> (u64, u64) {
    let copy = match *change {
        Change::Put(_, len) => Some(Held { len, damaged: false }),
        Change::Delete(..) => None,
        _ => return (0, 0),
    };
    let slot = match side {
        Side::Live => &mut block.live,
        Side::Durable => &mut block.durable,
    };
    let old = std::mem::replace(slot, copy);
    view.bytes = view.bytes - old.map_or(0, Held::len) + copy.map_or(0, Held::len);
    (u64::from(old.is_some() && copy.is_none()), u64::from(old.is_none() && copy.is_some()))
}

/// Damages a block's copies at rest; a real payload also gets a byte
/// flipped.
fn damage(block: &mut Block) {
    for copy in [&mut block.live, &mut block.durable].into_iter().flatten() {
        copy.damaged = true;
    }
    if let Kept::Encoded(e) = &mut block.payload {
        let mid = e.payload.len() / 2;
        if let Some(b) = e.payload.get_mut(mid) {
            *b ^= 0x40;
        }
    }
}
