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
//! Faults: `set_full` refuses writes (a `disk_full` fault); a put that
//! would exceed capacity is refused whole; `corrupt` damages stored blocks
//! at rest, which reads then report as damaged (and real payloads have
//! their bytes flipped too, so decoding them would fail as well). Putting a
//! damaged block again repairs it.

use super::pipe::Pipe;
use blockferry_core::manifest::Manifest;
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageCompletion, StorageError, StorageOp, StorageReply, StorageRequest};
use blockferry_core::{Digest, DigestMap, RestorePointId, Timestamp};
use rand::Rng;
use rand::seq::index::sample;
use std::collections::{BTreeMap, VecDeque};
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

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    payload: BlockPayload,
    damaged: bool,
}

/// One change, as journaled until it is durable.
#[derive(Debug, Clone)]
enum Change {
    Put(Digest, Stored),
    Delete(Digest),
    PutManifest(Manifest),
    DeleteManifest(RestorePointId),
    PutReplica(Manifest),
    DeleteReplica(RestorePointId),
}

/// Blocks and manifests: one of the two views.
#[derive(Debug, Clone, Default)]
struct View {
    /// A hash table (every put and read looks blocks up; nothing reads them
    /// in order but `Recover` and `corrupt`, which sort).
    blocks: DigestMap<Stored>,
    manifests: BTreeMap<RestorePointId, Manifest>,
    /// Replica metadata (digest vectors of replica points held elsewhere).
    replicas: BTreeMap<RestorePointId, Manifest>,
    bytes: u64,
    /// Every block deletion applied, in order: lets the checker tell which
    /// blocks left a view since it last looked.
    deleted: Vec<Digest>,
}

impl View {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(digest, stored) => {
                let len = stored.payload.stored_len();
                if let Some(old) = self.blocks.insert(digest, stored) {
                    self.bytes -= old.payload.stored_len();
                }
                self.bytes += len;
            }
            Change::Delete(digest) => {
                if let Some(old) = self.blocks.remove(&digest) {
                    self.bytes -= old.payload.stored_len();
                    self.deleted.push(digest);
                }
            }
            Change::PutManifest(m) => {
                self.manifests.insert(m.point, m);
            }
            Change::DeleteManifest(point) => {
                self.manifests.remove(&point);
            }
            Change::PutReplica(m) => {
                self.replicas.insert(m.point, m);
            }
            Change::DeleteReplica(point) => {
                self.replicas.remove(&point);
            }
        }
    }
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
    live: View,
    durable: View,
    /// Changes since the last `Sync`, not durable yet.
    journal: Vec<Change>,
    /// Batches on their way to the durable view, by completion time.
    in_flight: VecDeque<(Timestamp, Vec<Change>)>,
    full: bool,
    stats: StoreStats,
}

impl Store {
    pub fn new(name: &str, capacity: u64) -> Store {
        Store {
            name: name.to_string(),
            capacity,
            timing: StoreTiming::default(),
            io: Pipe::default(),
            live: View::default(),
            durable: View::default(),
            journal: Vec::new(),
            in_flight: VecDeque::new(),
            full: false,
            stats: StoreStats::default(),
        }
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
            StorageOp::PutManifest(manifest) => self.put_manifest(now, manifest),
            StorageOp::DeleteManifest(point) => {
                self.live.apply(Change::DeleteManifest(point));
                self.journal.push(Change::DeleteManifest(point));
                (self.io.occupy(now, self.timing.request, 0, 0), Ok(StorageReply::Done))
            }
            StorageOp::DeleteBlocks(digests) => {
                for digest in digests {
                    if self.live.blocks.contains_key(&digest) {
                        self.live.apply(Change::Delete(digest));
                        self.journal.push(Change::Delete(digest));
                    }
                }
                (self.io.occupy(now, self.timing.request, 0, 0), Ok(StorageReply::Done))
            }
            StorageOp::GetBlocks(digests) => self.get_blocks(now, &digests),
            StorageOp::PutReplicaMetadata(manifest) => self.put_replica(now, manifest),
            StorageOp::DeleteReplicaMetadata(point) => {
                // Durable on its own when it completes, like a manifest write.
                let at = self.io.occupy(now, self.timing.request + self.timing.sync, 0, 0);
                self.live.apply(Change::DeleteReplica(point));
                self.in_flight.push_back((at, vec![Change::DeleteReplica(point)]));
                (at, Ok(StorageReply::Done))
            }
            StorageOp::RecoverReplicaMetadata => {
                let at = self.io.occupy(now, self.timing.request, 0, 0);
                (at, Ok(StorageReply::ReplicaMetadata(self.durable.replicas.values().cloned().collect())))
            }
            StorageOp::Recover => {
                let listing = self.durable.blocks.len() as u64 * 32;
                let at = self.io.occupy(now, self.timing.request, listing, self.timing.read_bytes_per_sec);
                let manifests = self.durable.manifests.values().cloned().collect();
                let mut blocks: Vec<Digest> = self.durable.blocks.keys().copied().collect();
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
        // kept; a damaged one is replaced (the repair path).
        let mut new: BTreeMap<Digest, BlockPayload> = BTreeMap::new();
        for payload in blocks {
            let digest = payload.digest();
            let intact = self.live.blocks.get(&digest).is_some_and(|s| !s.damaged);
            if !digest.is_zero_block() && !intact {
                new.entry(digest).or_insert(payload);
            }
        }
        let growth: u64 =
            new.iter().map(|(d, p)| p.stored_len().saturating_sub(self.live.blocks.get(d).map_or(0, |s| s.payload.stored_len()))).sum();
        if self.live.bytes + growth > self.capacity {
            self.stats.puts_refused_full += 1;
            return (self.io.occupy(now, fixed, 0, 0), Err(StorageError::Full));
        }
        let bytes: u64 = new.values().map(BlockPayload::stored_len).sum();
        for (digest, payload) in new {
            let stored = Stored { payload, damaged: false };
            self.live.apply(Change::Put(digest, stored.clone()));
            self.journal.push(Change::Put(digest, stored));
        }
        self.stats.bytes_written += bytes;
        (self.io.occupy(now, fixed, bytes, self.timing.write_bytes_per_sec), Ok(StorageReply::Done))
    }

    fn put_manifest(&mut self, now: Timestamp, manifest: Manifest) -> (Timestamp, Result<StorageReply, StorageError>) {
        if self.full {
            return (self.io.occupy(now, self.timing.request, 0, 0), Err(StorageError::Full));
        }
        let size = manifest.disks.iter().map(|d| d.digests.len() as u64 * 32).sum::<u64>() + 256;
        let at = self.io.occupy(now, self.timing.request + self.timing.sync, size, self.timing.write_bytes_per_sec);
        self.live.apply(Change::PutManifest(manifest.clone()));
        self.in_flight.push_back((at, vec![Change::PutManifest(manifest)]));
        (at, Ok(StorageReply::Done))
    }

    /// Replica metadata is written like a manifest: durably and atomically.
    fn put_replica(&mut self, now: Timestamp, manifest: Manifest) -> (Timestamp, Result<StorageReply, StorageError>) {
        if self.full {
            return (self.io.occupy(now, self.timing.request, 0, 0), Err(StorageError::Full));
        }
        let size = manifest.disks.iter().map(|d| d.digests.len() as u64 * 32).sum::<u64>() + 256;
        let at = self.io.occupy(now, self.timing.request + self.timing.sync, size, self.timing.write_bytes_per_sec);
        self.live.apply(Change::PutReplica(manifest.clone()));
        self.in_flight.push_back((at, vec![Change::PutReplica(manifest)]));
        (at, Ok(StorageReply::Done))
    }

    fn get_blocks(&mut self, now: Timestamp, digests: &[Digest]) -> (Timestamp, Result<StorageReply, StorageError>) {
        let mut bytes = 0;
        let out = digests
            .iter()
            .map(|d| match self.live.blocks.get(d) {
                Some(s) if s.damaged => Err(StorageError::Damaged(*d)),
                Some(s) => {
                    bytes += s.payload.stored_len();
                    Ok(s.payload.clone())
                }
                None => Err(StorageError::Missing(*d)),
            })
            .collect();
        (self.io.occupy(now, self.timing.request, bytes, self.timing.read_bytes_per_sec), Ok(StorageReply::Blocks(out)))
    }

    /// Moves every batch completed by `now` into the durable view.
    pub fn settle(&mut self, now: Timestamp) {
        while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, batch)) = self.in_flight.pop_front() {
                for change in batch {
                    self.durable.apply(change);
                }
            }
        }
        self.refresh_stats();
    }

    fn refresh_stats(&mut self) {
        self.stats.bytes_stored = self.live.bytes;
        self.stats.bytes_durable = self.durable.bytes;
        self.stats.blocks = self.live.blocks.len() as u64;
        self.stats.manifests = self.live.manifests.len() as u64;
    }

    // ----- fault hooks -----

    /// The node crashed at `now`: everything not durable by then is lost.
    pub fn crash(&mut self, now: Timestamp) {
        self.settle(now);
        self.in_flight.clear();
        self.journal.clear();
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
        let mut intact: Vec<Digest> = self.live.blocks.iter().filter(|(_, s)| !s.damaged).map(|(d, _)| *d).collect();
        intact.sort_unstable();
        let n = n.min(intact.len());
        let mut chosen: Vec<Digest> = sample(rng, intact.len(), n).into_iter().map(|i| intact[i]).collect();
        chosen.sort_unstable();
        for digest in &chosen {
            for view in [&mut self.live, &mut self.durable] {
                if let Some(stored) = view.blocks.get_mut(digest) {
                    damage(stored);
                }
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
        self.live.manifests.values()
    }

    /// Manifests that would survive a crash now.
    pub fn durable_manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.durable.manifests.values()
    }

    /// Replica metadata that would survive a crash now.
    pub fn durable_replica_metadata(&self) -> impl Iterator<Item = &Manifest> {
        self.durable.replicas.values()
    }

    pub fn has_block(&self, digest: &Digest) -> bool {
        self.live.blocks.contains_key(digest)
    }

    pub fn has_durable_block(&self, digest: &Digest) -> bool {
        self.durable.blocks.contains_key(digest)
    }

    /// How many blocks have left the durable view so far: a mark for
    /// [`Store::durably_deleted_since`].
    pub fn durable_deletions(&self) -> u64 {
        self.durable.deleted.len() as u64
    }

    /// The blocks that left the durable view after `mark` (some may have
    /// been stored again since).
    pub fn durably_deleted_since(&self, mark: u64) -> &[Digest] {
        let deleted = &self.durable.deleted;
        &deleted[usize::try_from(mark).unwrap_or(deleted.len()).min(deleted.len())..]
    }

    pub fn is_damaged(&self, digest: &Digest) -> bool {
        self.live.blocks.get(digest).is_some_and(|s| s.damaged)
    }
}

/// Marks a block damaged; a real payload also gets a byte flipped.
fn damage(stored: &mut Stored) {
    stored.damaged = true;
    if let BlockPayload::Encoded(e) = &mut stored.payload {
        let mid = e.payload.len() / 2;
        if let Some(b) = e.payload.get_mut(mid) {
            *b ^= 0x40;
        }
    }
}
