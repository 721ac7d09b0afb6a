//! One disk backup, as a windowed pipeline of batches.
//!
//! 1. Ask the host which blocks to read (CBT since the base point's change
//!    id; every allocated block on a full or a verification pass). If CBT is
//!    unavailable, fall back to reading everything and comparing digests
//!    with the base point's.
//! 2. Walk those blocks in batches; at most [`WINDOW`] batches are in flight,
//!    so memory stays flat whatever the disk size. Per batch: read from the
//!    host (and fetch the base digests when comparing), encode (digest +
//!    compress), drop zero blocks and unchanged ones, ask the repository
//!    which digests it already has, send the rest with `PutBlocks`, wait for
//!    the acknowledgement.
//! 3. When every batch is acknowledged, `FinishDisk`; when the repository
//!    confirms, report `TaskDone` to the manager.
//!
//! A broken connection suspends the task rather than failing it: batches in
//! flight are forgotten, and when the peers are back the task asks the
//! repository what it holds of this disk (it may have restarted and lost
//! everything pending) and goes on with the planned blocks it lacks, less
//! those it already found need no write (equal to the base, or zero on a
//! full: true whatever the repository lost, since the base is committed).
//! Nothing is recorded at the repository before its acknowledgement, so
//! resending is always safe.

use super::walk::{BatchWalk, take_ready};
use crate::block::Digest;
use crate::hypervisor::ChangedBlocks;
use crate::ids::NodeId;
use crate::node::Outbox;
use crate::payload::{BlockData, BlockPayload, encode};
use crate::wire::Message;
use crate::wire::message::{BackupTask, BlockRef, ReadMode, TaskStats};
use bitvec::vec::BitVec;
use std::collections::{BTreeMap, BTreeSet};

/// Batches in flight per task.
pub const WINDOW: usize = 4;
/// Plaintext bytes per batch (at least one block).
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    Running,
    Finished,
}

impl Progress {
    pub fn is_finished(&self) -> bool {
        *self == Progress::Finished
    }
}

#[derive(Debug)]
enum Stage {
    /// Waiting for the host's changed-block answer (and, on a retry, the
    /// repository's progress).
    Planning { changed: Option<ChangedBlocks>, done: Option<BitVec> },
    /// Batches flowing.
    Streaming,
    /// Back from a suspension: waiting for the repository's progress.
    Resyncing,
    /// `FinishDisk` sent.
    Finishing,
}

#[derive(Debug, Default)]
struct Batch {
    blocks: Vec<u64>,
    read: Option<Vec<(u64, BlockData)>>,
    /// Base digests of `blocks`, when comparing (`None` until they arrive).
    base: Option<Vec<Digest>>,
    /// Encoded blocks waiting for the repository's `HaveReply`.
    candidates: Vec<(u64, BlockPayload)>,
    /// Zero blocks that replace non-zero base content.
    zeroed: Vec<u64>,
    /// Added to the task's figures when the batch is acknowledged.
    stats: TaskStats,
}

#[derive(Debug)]
pub struct BackupRun {
    spec: BackupTask,
    manager: NodeId,
    stage: Stage,
    compare: bool,
    /// The blocks still to read, in batches.
    walk: BatchWalk,
    /// Every block the plan reads (to re-derive what to read after a resync).
    planned: BitVec,
    /// Planned blocks read and found to need no write: a resync skips them
    /// (a digest comparison over a link that keeps breaking read whole
    /// disks again after every break: swarm seed 696).
    unchanged: BitVec,
    /// Blocks sent whatever the base says (health-check repairs).
    forced: BitVec,
    /// Verification pass: the blocks CBT reports changed.
    claimed: Option<BitVec>,
    batches: BTreeMap<u64, Batch>,
    suspended: bool,
    stats: TaskStats,
}

impl BackupRun {
    /// Starts the task; its batch ids start at `first_batch` (see
    /// [`BatchWalk::new`]).
    pub fn start(manager: NodeId, spec: BackupTask, first_batch: u64, out: &mut Outbox) -> BackupRun {
        // A retry resumes after what the repository already acknowledged.
        let done = if spec.resume { None } else { Some(BitVec::new()) };
        let stats = TaskStats { blocks_total: spec.block_size.blocks_for(spec.disk_bytes), ..TaskStats::default() };
        let walk = BatchWalk::new(BitVec::new(), spec.block_size, first_batch);
        let run = BackupRun {
            compare: spec.mode == ReadMode::DigestCompare && spec.base.is_some(),
            spec,
            manager,
            stage: Stage::Planning { changed: None, done },
            walk,
            planned: BitVec::new(),
            unchanged: BitVec::new(),
            forced: BitVec::new(),
            claimed: None,
            batches: BTreeMap::new(),
            suspended: false,
            stats,
        };
        run.ask_for_plan(out);
        run
    }

    /// Asks for whatever the plan still lacks: the changed blocks, and on a
    /// retry the repository's progress.
    fn ask_for_plan(&self, out: &mut Outbox) {
        let Stage::Planning { changed, done } = &self.stage else { return };
        let spec = &self.spec;
        if changed.is_none() {
            let since = match spec.mode {
                ReadMode::Changed { since } => Some(since),
                ReadMode::DigestCompare => spec.verify_since,
                ReadMode::Full => None,
            };
            let (task, snap, disk, block_size) = (spec.task, spec.snap, spec.target.disk, spec.block_size);
            out.send(spec.host, Message::GetChangedBlocks { task, snap, disk, since, block_size });
        }
        if done.is_none() {
            out.send(spec.repository, Message::GetProgress { task: spec.task, target: spec.target });
        }
    }

    /// A peer went away: forget what is in flight (see the module doc).
    pub fn suspend(&mut self) {
        self.suspended = true;
        self.batches.clear();
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// The peers are back: ask again for what was lost.
    pub fn resume(&mut self, out: &mut Outbox) -> Progress {
        self.suspended = false;
        match self.stage {
            Stage::Planning { .. } => {
                self.ask_for_plan(out);
                Progress::Running
            }
            Stage::Streaming | Stage::Finishing | Stage::Resyncing => {
                self.stage = Stage::Resyncing;
                out.send(self.spec.repository, Message::GetProgress { task: self.spec.task, target: self.spec.target });
                Progress::Running
            }
        }
    }

    /// After a suspension: read again every planned block the repository
    /// does not hold.
    fn resync(&mut self, done: &BitVec, out: &mut Outbox) -> Result<Progress, String> {
        let mut to_read = self.planned.clone();
        let len = to_read.len();
        for index in done.iter_ones().chain(self.unchanged.iter_ones()).filter(|&i| i < len) {
            to_read.set(index, false);
        }
        self.walk.restart(to_read);
        self.stage = Stage::Streaming;
        self.pump(out)
    }

    /// The manager that started this task (and hears how it ends).
    pub fn manager(&self) -> NodeId {
        self.manager
    }

    /// Whether the task talks to `peer` (and so cannot go on without it).
    pub fn depends_on(&self, peer: NodeId) -> bool {
        peer == self.spec.host || peer == self.spec.repository
    }

    pub fn fail(&mut self, reason: String, out: &mut Outbox) {
        let reason = format!("{}: {reason}", self.spec.target_name());
        out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Err(reason) });
    }

    /// Handles one reply; an `Err` fails the task (the proxy reports it).
    pub fn step(&mut self, msg: Message, out: &mut Outbox) -> Result<Progress, String> {
        match msg {
            Message::BlocksRead { batch, .. }
            | Message::Digests { batch, .. }
            | Message::HaveReply { batch, .. }
            | Message::BlocksAck { batch, .. }
                if !self.batches.contains_key(&batch) =>
            {
                // A reply for a batch forgotten with a broken connection.
                Ok(Progress::Running)
            }
            Message::ChangedBlocksReply { reply, .. } => {
                if let Stage::Planning { changed, .. } = &mut self.stage {
                    *changed = Some(reply?);
                }
                self.plan(out)
            }
            Message::Progress { done: acked, .. } => match &mut self.stage {
                Stage::Planning { done, .. } => {
                    *done = Some(acked);
                    self.plan(out)
                }
                Stage::Resyncing => self.resync(&acked, out),
                Stage::Streaming | Stage::Finishing => Ok(Progress::Running),
            },
            Message::BlocksRead { batch, result, .. } => {
                let blocks = result.map_err(|e| format!("reading blocks: {e}"))?;
                self.batch(batch)?.read = Some(blocks);
                self.try_encode(batch, out)
            }
            Message::Digests { batch, result, .. } => {
                let digests = result.map_err(|e| format!("fetching base digests: {e}"))?;
                self.batch(batch)?.base = Some(digests);
                self.try_encode(batch, out)
            }
            Message::HaveReply { batch, have, .. } => self.send_blocks(batch, &have, out),
            Message::BlocksAck { batch, result, .. } => {
                result.map_err(|e| format!("repository refused blocks: {e}"))?;
                self.batch_done(batch);
                self.pump(out)
            }
            Message::DiskFinished { result, .. } => {
                result.map_err(|e| format!("repository could not finish the disk: {e}"))?;
                out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Ok(self.stats) });
                Ok(Progress::Finished)
            }
            _ => Ok(Progress::Running),
        }
    }

    /// A batch is through: its figures count now.
    fn batch_done(&mut self, id: u64) {
        if let Some(batch) = self.batches.remove(&id) {
            self.stats.add(&batch.stats);
        }
    }

    fn batch(&mut self, id: u64) -> Result<&mut Batch, String> {
        self.batches.get_mut(&id).ok_or_else(|| format!("reply for unknown batch {id}"))
    }

    /// Decides which blocks to read from the host's changed-block answer,
    /// less those the repository acknowledged on an earlier attempt.
    fn plan(&mut self, out: &mut Outbox) -> Result<Progress, String> {
        let Stage::Planning { changed: Some(_), done: Some(_) } = &self.stage else { return Ok(Progress::Running) };
        let Stage::Planning { changed: Some(changed), done: Some(done) } = std::mem::replace(&mut self.stage, Stage::Streaming) else {
            return Ok(Progress::Running);
        };
        let total = self.stats.blocks_total as usize;
        let (mut to_read, swap) = match changed {
            // A verification pass reads everything and keeps what CBT
            // claims, to count what it missed.
            ChangedBlocks::Known { changed, swap } if self.compare && self.spec.verify_since.is_some() => {
                self.claimed = Some(changed);
                (BitVec::repeat(true, total), swap)
            }
            ChangedBlocks::Known { changed, swap } => (changed, swap),
            ChangedBlocks::Unavailable { swap } => {
                self.stats.cbt_fallback = true;
                self.compare = self.spec.base.is_some();
                (BitVec::repeat(true, total), swap)
            }
        };
        if to_read.len() != total {
            return Err(format!("host answered {} blocks for a disk of {total}", to_read.len()));
        }
        let mut swap = swap;
        swap.resize(total, false);
        self.stats.blocks_swap = (to_read.clone() & &swap).count_ones() as u64;
        to_read &= !swap;
        self.stats.blocks_resumed = done.count_ones() as u64;
        let mut forced = BitVec::repeat(false, total);
        for &index in self.spec.reread.iter().filter(|&&i| (i as usize) < total) {
            to_read.set(index as usize, true);
            forced.set(index as usize, true);
        }
        self.forced = forced;
        self.planned = to_read.clone();
        self.unchanged = BitVec::repeat(false, total);
        for index in done.iter_ones().filter(|&i| i < total) {
            to_read.set(index, false);
        }
        self.walk.restart(to_read);
        self.pump(out)
    }

    /// Starts batches while the window has room; finishes when all are done.
    fn pump(&mut self, out: &mut Outbox) -> Result<Progress, String> {
        if self.suspended {
            return Ok(Progress::Running);
        }
        while self.batches.len() < WINDOW {
            let Some((id, blocks)) = self.walk.next_batch() else { break };
            let spec = &self.spec;
            out.send(
                spec.host,
                Message::ReadBlocks {
                    task: spec.task,
                    batch: id,
                    snap: spec.snap,
                    disk: spec.target.disk,
                    block_size: spec.block_size,
                    blocks: blocks.clone(),
                },
            );
            if let (true, Some(point)) = (self.compare, spec.base) {
                out.send(
                    spec.repository,
                    Message::GetDigests { task: spec.task, batch: id, point, disk: spec.target.disk, blocks: blocks.clone() },
                );
            }
            self.batches.insert(id, Batch { blocks, ..Batch::default() });
        }
        if self.batches.is_empty() && matches!(self.stage, Stage::Streaming) {
            self.stage = Stage::Finishing;
            self.finish_disk(out);
        }
        Ok(Progress::Running)
    }

    fn finish_disk(&self, out: &mut Outbox) {
        let spec = &self.spec;
        let (task, target, bytes, block_size, base) = (spec.task, spec.target, spec.disk_bytes, spec.block_size, spec.base);
        out.send(spec.repository, Message::FinishDisk { task, target, bytes, block_size, base });
    }

    /// Once a batch's reads (and base digests) are in: encode and filter.
    fn try_encode(&mut self, id: u64, out: &mut Outbox) -> Result<Progress, String> {
        let compare = self.compare;
        let compression = self.spec.compression;
        let on_base = self.spec.base.is_some();
        let forced = &self.forced;
        let claimed = self.claimed.as_ref();
        let batch = self.batches.get_mut(&id).ok_or_else(|| format!("reply for unknown batch {id}"))?;
        let Some((read, base)) = take_ready(&batch.blocks, &mut batch.read, &mut batch.base, compare)? else {
            return Ok(Progress::Running);
        };
        let unchanged = &mut self.unchanged;
        let mut settle = |index: u64| {
            if let Some(mut bit) = unchanged.get_mut(index as usize) {
                *bit = true;
            }
        };
        let mut stats = TaskStats::default();
        for (n, (index, data)) in read.into_iter().enumerate() {
            stats.blocks_read += 1;
            stats.bytes_read += data.raw_len();
            let payload = encode(&data, compression);
            let digest = payload.digest();
            let base_digest = base.as_ref().map(|b| b[n]);
            if base_digest == Some(digest) && !forced.get(index as usize).is_some_and(|f| *f) {
                settle(index);
                continue;
            }
            if base_digest.is_some() && claimed.is_some_and(|c| !c.get(index as usize).is_some_and(|b| *b)) {
                stats.cbt_missed += 1;
            }
            if digest.is_zero_block() {
                stats.blocks_zero += 1;
                // On a full the manifest starts all-zero: nothing to record.
                if on_base {
                    stats.blocks_changed += 1;
                    batch.zeroed.push(index);
                } else {
                    settle(index);
                }
                continue;
            }
            stats.blocks_changed += 1;
            batch.candidates.push((index, payload));
        }
        batch.stats = stats;
        if batch.candidates.is_empty() {
            return self.send_blocks(id, &BitVec::new(), out);
        }
        let digests: Vec<Digest> = batch.candidates.iter().map(|(_, p)| p.digest()).collect();
        out.send(self.spec.repository, Message::HaveDigests { task: self.spec.task, batch: id, digests });
        Ok(Progress::Running)
    }

    /// Sends the batch: payloads for digests the repository lacks (once per
    /// digest), references for the rest.
    fn send_blocks(&mut self, id: u64, have: &BitVec, out: &mut Outbox) -> Result<Progress, String> {
        let batch = self.batch(id)?;
        if have.len() != batch.candidates.len() {
            return Err(format!("repository answered {} of {} digests", have.len(), batch.candidates.len()));
        }
        let candidates = std::mem::take(&mut batch.candidates);
        let zeroed = std::mem::take(&mut batch.zeroed);
        let mut blocks: Vec<BlockRef> =
            zeroed.into_iter().map(|index| BlockRef { index, digest: Digest::ZERO_BLOCK, payload: None }).collect();
        let mut sent = BTreeSet::new();
        for ((index, payload), have) in candidates.into_iter().zip(have.iter().by_vals()) {
            let digest = payload.digest();
            if have || !sent.insert(digest) {
                batch.stats.blocks_deduped += 1;
                blocks.push(BlockRef { index, digest, payload: None });
            } else {
                batch.stats.blocks_sent += 1;
                batch.stats.bytes_sent += payload.stored_len();
                blocks.push(BlockRef { index, digest, payload: Some(payload) });
            }
        }
        if blocks.is_empty() {
            self.batch_done(id);
            return self.pump(out);
        }
        out.send(self.spec.repository, Message::PutBlocks { task: self.spec.task, batch: id, target: self.spec.target, blocks });
        Ok(Progress::Running)
    }
}

impl BackupTask {
    /// "vm3/disk1" style name for messages.
    pub fn target_name(&self) -> String {
        format!("{}/disk{}", self.target.vm, self.target.disk)
    }
}
