//! The repository role: blocks by digest, restore-point manifests, atomic
//! commit, retention and garbage collection.
//!
//! * Blocks are deduplicated across every point of the repository: a proxy
//!   asks `HaveDigests` and sends payloads only for what is missing.
//! * A point being written is *pending*: per disk, the blocks that changed
//!   (index → digest) on top of its base point. `FinishDisk` turns that into
//!   the disk's full digest vector; nothing pending is visible to readers.
//! * `CommitPoint` is atomic: blocks durable (`Sync`), then the manifest
//!   durable (`PutManifest`), then the acknowledgement. A crash before the
//!   manifest is durable leaves only unreferenced blocks, which GC removes.
//! * Retention deletes manifests; blocks no manifest references are garbage.
//!   Collection runs after every commit, deletion and abort, pending points
//!   or not, with a writer cutoff (as Proxmox Backup Server's): it sweeps
//!   only garbage last touched before the oldest pending point started, so
//!   a block a pending point stored, or that a proxy was told "we have it",
//!   cannot disappear under its task (see `writers` for why that holds).

use super::RequestIds;
use crate::block::Digest;
use crate::ids::{NodeId, RequestId, RestorePointId, SessionId, TaskId, VmId};
use crate::limits::read_len;
use crate::manifest::{DiskManifest, Manifest, PointHeader, apply_changes};
use crate::node::{Input, Node, Outbox, Output, TimerId};
use crate::payload::decode;
use crate::storage::{StorageCompletion, StorageOp, StorageReply, StorageRequest};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{BlockRef, DamagedBlock, DiskTarget, OpId};
use bitvec::vec::BitVec;
use std::collections::{BTreeMap, BTreeSet};

mod references;
mod replica_meta;
#[cfg(test)]
mod tests;
mod validate;
mod writers;

use references::{Epoch, References, Slots};
use writers::Writers;

/// A point being written, per disk.
#[derive(Debug)]
struct PendingPoint {
    /// When it started, for garbage collection (see `writers`): before its
    /// first block is touched, and no later than its task's first ask.
    started: Epoch,
    disks: BTreeMap<u16, PendingDisk>,
}

#[derive(Debug, Default)]
struct PendingDisk {
    /// Blocks written, as (index, digest) in arrival order: a later write
    /// of an index (a resent batch) wins. A list, not a map: a first full
    /// backup adds every block of the disk here.
    changes: Vec<(u64, Digest)>,
    finished: Option<DiskManifest>,
}

/// Blocks read per storage request during a health check.
const HEALTH_CHUNK: usize = 256;

/// A health check in progress.
#[derive(Debug)]
struct HealthRun {
    peer: NodeId,
    op: OpId,
    /// Every checked digest and where the checked points use it.
    uses: BTreeMap<Digest, Vec<(RestorePointId, u16, u64)>>,
    todo: Vec<Digest>,
    damaged: Vec<Digest>,
}

/// What to do when a storage request completes.
#[derive(Debug)]
enum Continuation {
    /// A chunk of a health check's reads.
    Health {
        check: u64,
        digests: Vec<Digest>,
    },
    Recover,
    StoreBlocks {
        peer: NodeId,
        task: TaskId,
        batch: u64,
        target: DiskTarget,
        refs: Vec<(u64, Digest)>,
        stored: Vec<Digest>,
    },
    CommitSync {
        peer: NodeId,
        op: OpId,
        manifest: Manifest,
    },
    CommitManifest {
        peer: NodeId,
        op: OpId,
        manifest: Manifest,
    },
    DeleteManifest {
        peer: NodeId,
        op: OpId,
        point: RestorePointId,
    },
    Collect,
    ReadPoint {
        peer: NodeId,
        task: TaskId,
        batch: u64,
        point: RestorePointId,
        disk: u16,
        indexes: Vec<u64>,
    },
    /// Replica metadata (see `replica_meta`).
    Replica(replica_meta::Then),
}

/// Bugs a repository can be built with, only to prove that the simulator's
/// checker catches them (see the constructors of [`Repository`]).
#[derive(Debug, Default, Clone, Copy)]
struct Planted {
    skip_sync_before_manifest: bool,
    sync_after_manifest: bool,
    unreadable_is_intact: bool,
    forget_damage: bool,
}

/// Retries recovery when the store could not answer.
const RECOVER_RETRY: TimerId = TimerId(1);

/// Messages held while the repository recovers its catalog (beyond them,
/// a peer is refused and tries again after reconnecting).
const MAX_HELD: usize = 4096;
/// Points written at once (each a running disk task's VM): beyond them a
/// new point's writes are answered with an error.
const MAX_PENDING_POINTS: usize = 4096;
/// Aborted points remembered (to refuse their late writes).
const MAX_ABORTED: usize = 4096;
const RECOVER_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Repository {
    now: Timestamp,
    recovered: bool,
    /// Messages that arrived while recovering, replayed after.
    held: Vec<(NodeId, Message)>,
    ids: RequestIds,
    /// Every block in the store, whether manifests reference it, and when
    /// unreferenced ones were last touched.
    blocks: References,
    manifests: BTreeMap<RestorePointId, Manifest>,
    pending: BTreeMap<(SessionId, VmId), PendingPoint>,
    /// The epoch clock and the tasks told blocks exist before they named
    /// their point: with `pending`, what garbage collection must spare.
    writers: Writers,
    /// Points the manager aborted: blocks for them still in flight from a
    /// proxy are refused, rather than starting the point over (it would
    /// stay pending forever and hold garbage collection back). Kept until
    /// a manager restart voids older sessions.
    aborted: BTreeSet<(SessionId, VmId)>,
    /// The (session, VM) of every committed manifest.
    committed: BTreeSet<(SessionId, VmId)>,
    /// Sessions before this one belong to a manager that is gone
    /// (`AbortPendingBefore`): their writes are refused, as aborted ones.
    void_before: Option<SessionId>,
    requests: BTreeMap<RequestId, Continuation>,
    /// Blocks a health check found damaged: reported missing to proxies, so
    /// the next backup sends them again, which repairs them.
    damaged: BTreeSet<Digest>,
    health: BTreeMap<u64, HealthRun>,
    next_check: u64,
    /// Replica metadata of replication jobs.
    replica: replica_meta::ReplicaMeta,
    /// Planted bugs (see [`Planted`]); all off in a real repository.
    planted: Planted,
    /// How many blocks the store is expected to hold (a sizing hint, see
    /// [`Repository::expecting_blocks`]).
    expected_blocks: usize,
    out: Outbox,
}

impl Repository {
    pub fn new() -> Self {
        Self::default()
    }

    /// A repository that commits manifests without first making their
    /// blocks durable: the bug the atomic commit exists to prevent. Only for
    /// proving that the simulator's checker catches it; never deploy it.
    pub fn skipping_sync_before_manifest() -> Self {
        Repository { planted: Planted { skip_sync_before_manifest: true, ..Planted::default() }, ..Self::default() }
    }

    /// A repository that writes a manifest first and syncs its blocks
    /// after (acknowledging once both are done): every commit leaves a
    /// moment when a durable manifest names blocks a crash would lose. Only
    /// for proving that the simulator's checker catches it; never deploy it.
    pub fn syncing_after_manifest() -> Self {
        Repository { planted: Planted { sync_after_manifest: true, ..Planted::default() }, ..Self::default() }
    }

    /// A repository whose health check counts a block it cannot read as
    /// intact, so damage at rest goes unreported. Only for proving that the
    /// simulator's checker catches it; never deploy it.
    pub fn trusting_unreadable_blocks() -> Self {
        Repository { planted: Planted { unreadable_is_intact: true, ..Planted::default() }, ..Self::default() }
    }

    /// A repository whose health check reports damage but forgets it, so
    /// the next backup's copies of the damaged blocks are taken for
    /// duplicates and dropped: nothing is ever repaired. Only for proving
    /// that the simulator's checker catches it; never deploy it.
    pub fn forgetting_damage() -> Self {
        Repository { planted: Planted { forget_damage: true, ..Planted::default() }, ..Self::default() }
    }

    /// Sizes the block index for `blocks` blocks up front (a hint from the
    /// deployment: the index still grows past it). A repository of a few
    /// TiB holds millions of blocks, and growing the index there step by
    /// step copies it again each time.
    pub fn expecting_blocks(self, blocks: usize) -> Self {
        Repository { expected_blocks: blocks, ..self }
    }

    /// Committed restore points (what a reader may see).
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.values()
    }

    fn storage(&mut self, op: StorageOp, then: Continuation) {
        let id = self.ids.next();
        self.requests.insert(id, then);
        self.out.storage(StorageRequest { id, op });
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if let Err(reason) = validate::check(&msg) {
            return self.out.refuse(from, format!("{}: {reason}", msg.kind()));
        }
        if !self.recovered {
            if self.held.len() >= MAX_HELD {
                return self.out.refuse(from, format!("{}: {MAX_HELD} messages wait for the repository to recover already", msg.kind()));
            }
            self.held.push((from, msg));
            return;
        }
        match msg {
            Message::HaveDigests { task, batch, digests } => {
                let epoch = self.writers.now();
                let have: BitVec = digests.iter().map(|d| self.blocks.confirm(d, epoch) && !self.damaged.contains(d)).collect();
                if have.any() {
                    // The task will reference these, maybe before naming its point.
                    self.writers.asked(task, self.now);
                }
                self.out.send(from, Message::HaveReply { task, batch, have });
            }
            Message::GetDigests { task, batch, point, disk, blocks } => {
                let result = self.digests_of(point, disk, &blocks);
                self.out.send(from, Message::Digests { task, batch, result });
            }
            Message::PutBlocks { task, batch, target, blocks } => self.put_blocks(from, task, batch, target, blocks),
            Message::FinishDisk { task, target, bytes, block_size, base } => {
                let result = match self.not_aborted(target) {
                    Ok(()) => self.finish_disk(task, target, bytes, block_size, base),
                    Err(reason) => Err(self.refused(task, reason)),
                };
                self.out.send(from, Message::DiskFinished { task, result });
            }
            // Asked again after the answer was lost: it is committed.
            Message::CommitPoint { op, header } if self.manifests.contains_key(&header.point) => {
                self.out.send(from, Message::PointCommitted { op, result: Ok(()) })
            }
            Message::CommitPoint { op, header } => match self.assemble(header) {
                Ok(manifest) if self.planted.skip_sync_before_manifest => {
                    self.storage(StorageOp::PutManifest(manifest.clone()), Continuation::CommitManifest { peer: from, op, manifest })
                }
                Ok(manifest) if self.planted.sync_after_manifest => {
                    // The store serves requests in order: the sync completes
                    // after the manifest, and its answer acknowledges both.
                    self.storage(StorageOp::PutManifest(manifest.clone()), Continuation::Collect);
                    self.storage(StorageOp::Sync, Continuation::CommitManifest { peer: from, op, manifest })
                }
                Ok(manifest) => self.storage(StorageOp::Sync, Continuation::CommitSync { peer: from, op, manifest }),
                Err(e) => self.out.send(from, Message::PointCommitted { op, result: Err(e) }),
            },
            Message::AbortPoint { session, vm } => {
                self.pending.remove(&(session, vm));
                self.aborted.insert((session, vm));
                // Bounded: the oldest sessions' go first (their tasks are
                // long gone).
                while self.aborted.len() > MAX_ABORTED {
                    self.aborted.pop_first();
                }
                self.collect_garbage();
            }
            Message::AbortPendingBefore { before } => {
                self.pending.retain(|(session, _), _| *session >= before);
                self.aborted.retain(|(session, _)| *session >= before);
                self.void_before = self.void_before.max(Some(before));
                self.collect_garbage();
            }
            Message::HealthCheck { op, points } => self.start_health_check(from, op, &points),
            Message::ListPoints { op } => {
                let points = self.manifests.values().map(Manifest::header).collect();
                self.out.send(from, Message::Points { op, points });
            }
            Message::GetProgress { task, target } => {
                let changes = self.pending.get(&(target.session, target.vm)).and_then(|p| p.disks.get(&target.disk)).map(|d| &d.changes);
                let mut done = BitVec::new();
                if let Some(changes) = changes
                    && let Some(last) = changes.iter().map(|(index, _)| *index).max()
                {
                    done.resize(last as usize + 1, false);
                    for &(index, _) in changes {
                        done.set(index as usize, true);
                    }
                }
                self.out.send(from, Message::Progress { task, done });
            }
            Message::DeletePoint { op, point } => {
                if self.manifests.contains_key(&point) {
                    self.storage(StorageOp::DeleteManifest(point), Continuation::DeleteManifest { peer: from, op, point });
                } else {
                    self.out.send(from, Message::PointDeleted { op, result: Err(format!("no restore point {point}")) });
                }
            }
            Message::ReadPoint { task, batch, point, disk, first, count, .. } => {
                self.read_point(from, task, batch, point, disk, first, count)
            }
            msg @ (Message::PutReplicaDisk { .. }
            | Message::GetReplicaDigests { .. }
            | Message::CommitReplicaPoint { .. }
            | Message::AbortReplicaPoint { .. }
            | Message::DeleteReplicaPoint { .. }
            | Message::ListReplicaPoints { .. }) => self.on_replica_message(from, msg),
            Message::Ping { seq } => self.out.send(from, Message::Pong { seq }),
            // The driver measures round trips; nothing to do.
            Message::Pong { .. } => {}
            other => self.out.refuse_unhandled(from, "repository", &other),
        }
    }

    /// Restore: the non-zero blocks of `count` blocks from `first`, read
    /// from the store and returned with their indexes.
    #[allow(clippy::too_many_arguments)]
    fn read_point(&mut self, peer: NodeId, task: TaskId, batch: u64, point: RestorePointId, disk: u16, first: u64, count: u64) {
        let (end, block_size) = match self.manifests.get(&point).and_then(|m| m.disks.iter().find(|d| d.index == disk)) {
            Some(d) => ((d.digests.len() as u64).min(first.saturating_add(count)), d.block_size),
            None => {
                let result = Err(format!("no restore point {point} with disk {disk}"));
                return self.out.send(peer, Message::PointBlocks { task, batch, result });
            }
        };
        // Bounded by the point's own block size, not the one the message claims.
        if let Err(reason) = read_len(end.saturating_sub(first), block_size) {
            return self.out.refuse(peer, format!("read_point: {reason}"));
        }
        let wanted: Vec<u64> = (first..end).collect();
        let digests = match self.digests_of(point, disk, &wanted) {
            Ok(d) => d,
            Err(e) => return self.out.send(peer, Message::PointBlocks { task, batch, result: Err(e) }),
        };
        let (indexes, digests): (Vec<u64>, Vec<Digest>) = wanted.into_iter().zip(digests).filter(|(_, d)| !d.is_zero_block()).unzip();
        if digests.is_empty() {
            return self.out.send(peer, Message::PointBlocks { task, batch, result: Ok(Vec::new()) });
        }
        self.storage(StorageOp::GetBlocks(digests), Continuation::ReadPoint { peer, task, batch, point, disk, indexes });
    }

    fn digests_of(&self, point: RestorePointId, disk: u16, blocks: &[u64]) -> Result<Vec<Digest>, String> {
        let manifest = self.manifests.get(&point).ok_or_else(|| format!("no restore point {point}"))?;
        let disk = manifest.disks.iter().find(|d| d.index == disk).ok_or_else(|| format!("{point} has no disk {disk}"))?;
        blocks
            .iter()
            .map(|&i| disk.digests.get(i as usize).copied().ok_or_else(|| format!("{point} disk {} has no block {i}", disk.index)))
            .collect()
    }

    /// Whether `target`'s point may still be written: not aborted, and not
    /// committed (a late write would open it again as a pending point
    /// that never ends, holding garbage collection back).
    fn not_aborted(&self, target: DiskTarget) -> Result<(), String> {
        let key = (target.session, target.vm);
        if self.void_before.is_some_and(|before| target.session < before) || self.aborted.contains(&key) {
            return Err(format!("the point of {} in session {} was aborted", target.vm, target.session));
        }
        if self.committed.contains(&key) {
            return Err(format!("the point of {} in session {} is committed", target.vm, target.session));
        }
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING_POINTS {
            return Err(format!("{MAX_PENDING_POINTS} points are pending here already"));
        }
        Ok(())
    }

    /// A write of `task` was refused for `reason`: its point needs nothing
    /// spared, so neither does its ask.
    fn refused(&mut self, task: TaskId, reason: String) -> String {
        self.writers.named(task);
        reason
    }

    /// The pending point `task` writes `target` of, started now if new. It
    /// counts as started no later than the task's ask (see `writers`).
    fn open_point(&mut self, task: TaskId, target: DiskTarget) -> &mut PendingPoint {
        let asked = self.writers.named(task);
        let writers = &mut self.writers;
        let point = self
            .pending
            .entry((target.session, target.vm))
            .or_insert_with(|| PendingPoint { started: writers.start(), disks: BTreeMap::new() });
        point.started = point.started.min(asked.unwrap_or(point.started));
        point
    }

    fn put_blocks(&mut self, peer: NodeId, task: TaskId, batch: u64, target: DiskTarget, blocks: Vec<BlockRef>) {
        if let Err(reason) = self.not_aborted(target) {
            let reason = self.refused(task, reason);
            return self.out.send(peer, Message::BlocksAck { task, batch, result: Err(reason) });
        }
        // Opened before any block is touched: the point protects them all.
        self.open_point(task, target);
        let epoch = self.writers.now();
        let mut refs = Vec::with_capacity(blocks.len());
        let mut payloads = Vec::new();
        let mut stored = Vec::new();
        for block in blocks {
            refs.push((block.index, block.digest));
            match block.payload {
                Some(payload) if !self.blocks.confirm(&block.digest, epoch) || self.damaged.contains(&block.digest) => {
                    stored.push(block.digest);
                    payloads.push(payload);
                }
                Some(_) => {}
                // A proxy sends a digest repeated in one batch with its
                // payload once, then as references.
                None if block.digest.is_zero_block() || self.blocks.confirm(&block.digest, epoch) || stored.contains(&block.digest) => {}
                None => {
                    let reason =
                        format!("block {:?} (index {}) was sent without payload but is not in the repository", block.digest, block.index);
                    self.out.send(peer, Message::BlocksAck { task, batch, result: Err(reason) });
                    return;
                }
            }
        }
        let then = Continuation::StoreBlocks { peer, task, batch, target, refs, stored };
        if payloads.is_empty() {
            self.blocks_stored(then);
        } else {
            self.storage(StorageOp::PutBlocks(payloads), then);
        }
    }

    fn blocks_stored(&mut self, then: Continuation) {
        let Continuation::StoreBlocks { peer, task, batch, target, refs, stored } = then else { return };
        self.blocks.stored(&stored, self.writers.now());
        for digest in &stored {
            self.damaged.remove(digest);
        }
        if let Err(reason) = self.not_aborted(target) {
            // Aborted while the blocks were written: they stay unreferenced
            // until garbage collection.
            return self.out.send(peer, Message::BlocksAck { task, batch, result: Err(reason) });
        }
        let Some(point) = self.pending.get_mut(&(target.session, target.vm)) else {
            // Committed or aborted meanwhile: never open it again (it would
            // stay pending forever and hold garbage collection back).
            let reason = format!("the point of {} in session {} is no longer pending", target.vm, target.session);
            return self.out.send(peer, Message::BlocksAck { task, batch, result: Err(reason) });
        };
        let disk = point.disks.entry(target.disk).or_default();
        disk.finished = None;
        disk.changes.extend(refs);
        self.out.send(peer, Message::BlocksAck { task, batch, result: Ok(()) });
    }

    fn finish_disk(
        &mut self,
        task: TaskId,
        target: DiskTarget,
        bytes: u64,
        block_size: crate::BlockSize,
        base: Option<RestorePointId>,
    ) -> Result<(), String> {
        let count = block_size.blocks_for(bytes) as usize;
        let base = match base {
            None => None,
            Some(point) => {
                let manifest = self.manifests.get(&point).ok_or_else(|| format!("base restore point {point} is gone"))?;
                let disk = manifest
                    .disks
                    .iter()
                    .find(|d| d.index == target.disk)
                    .ok_or_else(|| format!("base {point} has no disk {}", target.disk))?;
                if disk.block_size != block_size {
                    return Err(format!("base {point} uses {} byte blocks, this task {}", disk.block_size.bytes(), block_size.bytes()));
                }
                Some(disk.digests.clone())
            }
        };
        let pending = self.open_point(task, target).disks.entry(target.disk).or_default();
        let digests = apply_changes(base.as_deref(), count, pending.changes.iter().copied())?;
        pending.finished = Some(DiskManifest { index: target.disk, bytes, change_id: None, block_size, digests });
        Ok(())
    }

    fn assemble(&mut self, header: PointHeader) -> Result<Manifest, String> {
        let (session, vm) = (header.session, header.vm);
        let pending = self.pending.get(&(session, vm)).ok_or_else(|| format!("nothing was written for {vm} in session {session}"))?;
        let disks = header
            .disks
            .iter()
            .map(|d| {
                let mut disk = pending
                    .disks
                    .get(&d.index)
                    .and_then(|p| p.finished.clone())
                    .ok_or_else(|| format!("disk {} of {vm} is not finished", d.index))?;
                disk.change_id = d.change_id;
                Ok(disk)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let PointHeader { point, job, session, vm, snapshot_at, snapshot, parent, .. } = header;
        Ok(Manifest { point, job, session, vm, snapshot_at, snapshot, parent, disks })
    }

    /// Starts re-reading every block of `points` from the store.
    fn start_health_check(&mut self, peer: NodeId, op: OpId, points: &[RestorePointId]) {
        let mut uses: BTreeMap<Digest, Vec<(RestorePointId, u16, u64)>> = BTreeMap::new();
        for point in points {
            let Some(manifest) = self.manifests.get(point) else {
                let result = Err(format!("no restore point {point}"));
                return self.out.send(peer, Message::HealthReport { op, result });
            };
            for disk in &manifest.disks {
                for (index, digest) in disk.digests.iter().enumerate().filter(|(_, d)| !d.is_zero_block()) {
                    uses.entry(*digest).or_default().push((*point, disk.index, index as u64));
                }
            }
        }
        self.next_check += 1;
        let check = self.next_check;
        let todo = uses.keys().copied().collect();
        self.health.insert(check, HealthRun { peer, op, uses, todo, damaged: Vec::new() });
        self.health_step(check);
    }

    /// Reads the next chunk of a health check, or reports when done.
    fn health_step(&mut self, check: u64) {
        let Some(run) = self.health.get_mut(&check) else { return };
        if run.todo.is_empty() {
            let Some(run) = self.health.remove(&check) else { return };
            let mut found = Vec::new();
            for digest in run.damaged {
                if !self.planted.forget_damage {
                    self.damaged.insert(digest);
                }
                for &(point, disk, index) in run.uses.get(&digest).into_iter().flatten() {
                    found.push(DamagedBlock { point, disk, index, digest });
                }
            }
            return self.out.send(run.peer, Message::HealthReport { op: run.op, result: Ok(found) });
        }
        let keep = run.todo.len().saturating_sub(HEALTH_CHUNK);
        let digests: Vec<Digest> = run.todo.split_off(keep);
        self.storage(StorageOp::GetBlocks(digests.clone()), Continuation::Health { check, digests });
    }

    fn on_storage(&mut self, done: StorageCompletion) {
        let Some(then) = self.requests.remove(&done.id) else { return };
        match (then, done.result) {
            (Continuation::Health { check, digests }, result) => {
                let Some(run) = self.health.get_mut(&check) else { return };
                match result {
                    Ok(StorageReply::Blocks(blocks)) => {
                        for (digest, block) in digests.iter().zip(blocks) {
                            let intact =
                                block.is_ok_and(|b| b.digest() == *digest && decode(&b).is_ok()) || self.planted.unreadable_is_intact;
                            if !intact {
                                run.damaged.push(*digest);
                            }
                        }
                    }
                    Ok(_) | Err(_) => run.damaged.extend(digests),
                }
                self.health_step(check);
            }
            (Continuation::Recover, Ok(StorageReply::Recovered { manifests, blocks })) => self.recovered_from(manifests, blocks),
            (Continuation::Recover, _) => {
                // Without its catalog the repository must not answer anything:
                // retry recovery later rather than serve an empty repository.
                self.out.set_timer(RECOVER_RETRY, self.now + RECOVER_RETRY_DELAY);
            }
            (then @ Continuation::StoreBlocks { .. }, Ok(_)) => self.blocks_stored(then),
            (Continuation::StoreBlocks { peer, task, batch, .. }, Err(e)) => {
                self.out.send(peer, Message::BlocksAck { task, batch, result: Err(e.to_string()) });
            }
            (Continuation::CommitSync { peer, op, manifest }, Ok(_)) => {
                self.storage(StorageOp::PutManifest(manifest.clone()), Continuation::CommitManifest { peer, op, manifest });
            }
            (Continuation::CommitManifest { peer, op, manifest }, Ok(_)) => {
                self.pending.remove(&(manifest.session, manifest.vm));
                self.add_manifest(manifest);
                // The cutoff may have moved on.
                self.collect_garbage();
                self.out.send(peer, Message::PointCommitted { op, result: Ok(()) });
            }
            (Continuation::CommitSync { peer, op, .. } | Continuation::CommitManifest { peer, op, .. }, Err(e)) => {
                self.out.send(peer, Message::PointCommitted { op, result: Err(e.to_string()) });
            }
            (Continuation::DeleteManifest { peer, op, point }, Ok(_)) => {
                if let Some(manifest) = self.manifests.remove(&point) {
                    self.committed.remove(&(manifest.session, manifest.vm));
                    for disk in &manifest.disks {
                        let (prev, next) = neighbours(&self.manifests, &manifest, disk.index);
                        self.blocks.remove(&Slots { prev, this: &disk.digests, next }, self.writers.now());
                    }
                }
                self.collect_garbage();
                self.out.send(peer, Message::PointDeleted { op, result: Ok(()) });
            }
            (Continuation::DeleteManifest { peer, op, .. }, Err(e)) => {
                self.out.send(peer, Message::PointDeleted { op, result: Err(e.to_string()) });
            }
            (Continuation::Collect, _) => {}
            (Continuation::Replica(then), result) => self.on_replica_storage(then, result),
            (Continuation::ReadPoint { peer, task, batch, point, disk, indexes }, result) => {
                let result = match result {
                    Ok(StorageReply::Blocks(blocks)) if blocks.len() == indexes.len() => indexes
                        .into_iter()
                        .zip(blocks)
                        .map(|(i, b)| b.map(|b| (i, b)).map_err(|e| format!("restore point {point} disk {disk} block {i}: {e}")))
                        .collect(),
                    Ok(_) => Err("the store answered a different number of blocks".to_string()),
                    Err(e) => Err(format!("restore point {point} disk {disk}: {e}")),
                };
                self.out.send(peer, Message::PointBlocks { task, batch, result });
            }
        }
    }

    /// A manifest became committed: its blocks are referenced.
    fn add_manifest(&mut self, manifest: Manifest) {
        for disk in &manifest.disks {
            let (prev, next) = neighbours(&self.manifests, &manifest, disk.index);
            self.blocks.insert(&Slots { prev, this: &disk.digests, next });
        }
        self.committed.insert((manifest.session, manifest.vm));
        self.manifests.insert(manifest.point, manifest);
    }

    fn recovered_from(&mut self, mut manifests: Vec<Manifest>, blocks: Vec<Digest>) {
        self.blocks = References::with_capacity(self.expected_blocks.max(blocks.len()));
        self.blocks.stored(&blocks, self.writers.now());
        self.manifests.clear();
        self.committed.clear();
        // In point order, each disk joins the end of its lineage: only what
        // differs from the previous point is counted.
        manifests.sort_by_key(|m| m.point);
        for manifest in manifests {
            self.add_manifest(manifest);
        }
        self.recovered = true;
        self.collect_garbage();
        for (from, msg) in std::mem::take(&mut self.held) {
            self.on_message(from, msg);
        }
    }

    /// Deletes blocks no manifest references that were last touched
    /// before the oldest writer started (see `writers`).
    fn collect_garbage(&mut self) {
        let cutoff = self.writers.cutoff(self.now, self.pending.values().map(|p| p.started));
        let garbage = self.blocks.take_garbage(cutoff);
        if garbage.is_empty() {
            return;
        }
        self.storage(StorageOp::DeleteBlocks(garbage), Continuation::Collect);
        self.storage(StorageOp::Sync, Continuation::Collect);
    }
}

/// The digest vectors of disk `index` of the committed points of
/// `manifest`'s VM just before and just after it: its neighbours in the
/// disk's lineage (see `references`).
fn neighbours<'a>(
    manifests: &'a BTreeMap<RestorePointId, Manifest>,
    manifest: &Manifest,
    index: u16,
) -> (Option<&'a [Digest]>, Option<&'a [Digest]>) {
    let disk_of = |m: &'a Manifest| (m.vm == manifest.vm).then(|| m.disks.iter().find(|d| d.index == index)).flatten();
    let prev = manifests.range(..manifest.point).rev().find_map(|(_, m)| disk_of(m));
    let next = manifests.range(manifest.point..).filter(|(p, _)| **p != manifest.point).find_map(|(_, m)| disk_of(m));
    (prev.map(|d| &d.digests[..]), next.map(|d| &d.digests[..]))
}

impl Node for Repository {
    fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = now;
        match input {
            Input::Timer(RECOVER_RETRY) if !self.recovered => self.storage(StorageOp::Recover, Continuation::Recover),
            Input::Start => {
                // A (re)start forgets everything but how it was deployed.
                *self = Repository { now, planted: self.planted, expected_blocks: self.expected_blocks, ..Repository::default() };
                self.storage(StorageOp::Recover, Continuation::Recover);
            }
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::Storage(done) => self.on_storage(done),
            Input::Timer(_) | Input::PeerUp(_) | Input::PeerDown(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
