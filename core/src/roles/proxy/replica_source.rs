//! The sending end of a replica disk sync: read a snapshot, send what the
//! receiving VM lacks to the receiving proxy, which writes it there.
//!
//! It runs on the source proxy for replication, and on the target proxy for
//! failback (the replica's disk goes back onto its source VM).
//!
//! 1. Open the receiving end (`OpenReplica`), then ask which blocks to read:
//!    the receiving host's CBT first when the receiving VM changed on its
//!    own (failback: those blocks are sent too), then our host's CBT.
//! 2. Which blocks to send:
//!    * `Full` (a new, empty replica): every allocated block but zeros;
//!    * `Changed`: what CBT says changed, zero blocks included (they
//!      overwrite something);
//!    * `DigestCompare` (no CBT, verification, seeding, mapping): every
//!      block is read, hashed and compared with what the receiving VM holds
//!      — from replica metadata, or hashed by the receiver itself — and only
//!      differing ones are sent. An unavailable CBT on either side falls
//!      back to this.
//!
//!    Swap blocks are never read or sent.
//! 3. Batches stream inside a window ([`WINDOW`]): read (plus base digests
//!    when comparing), encode, `ReplicaBlocks`, wait for `ReplicaAck`.
//! 4. When every batch is acknowledged: `FinishReplica`; once the receiver
//!    has reported the metadata (`ReplicaFinished`), `TaskDone`.
//!
//! A broken connection to a peer once streaming has begun does not fail
//! the sync (over a WAN that breaks now and then, a large first sync would
//! never finish if every break started it over): the batches in flight are
//! forgotten, and when every peer is back the sender asks the receiver
//! which blocks its host has written (`ResumeReplica`, `ReplicaProgress`)
//! and sends only what is neither written there nor settled here. A
//! receiver that restarted or gave up waiting answers that it cannot
//! resume, and the task fails (the manager runs it again). A break while
//! planning fails the task: nothing was sent yet.

use super::backup_task::{Progress, WINDOW};
use super::walk::{BatchWalk, take_ready};
use crate::block::Digest;
use crate::hypervisor::ChangedBlocks;
use crate::ids::NodeId;
use crate::node::Outbox;
use crate::payload::{BlockData, encode};
use crate::wire::Message;
use crate::wire::message::{BaseDigests, BlockRef, ReadMode, ReplicaTask, TaskStats};
use bitvec::vec::BitVec;
use std::collections::BTreeMap;

#[derive(Debug)]
enum Stage {
    /// Waiting for the receiving host's changed blocks (failback).
    TargetPlanning,
    /// Waiting for our host's changed blocks; `target` holds the receiving
    /// side's answer, if one was asked for.
    Planning {
        target: Option<ChangedBlocks>,
    },
    Streaming,
    /// `FinishReplica` sent.
    Finishing,
    /// Back from a broken connection: `ResumeReplica` sent, waiting for
    /// what the receiver has written.
    Resyncing,
}

#[derive(Debug, Default)]
struct Batch {
    blocks: Vec<u64>,
    read: Option<Vec<(u64, BlockData)>>,
    base: Option<Vec<Digest>>,
    /// What the batch did; it counts once the batch is settled, so a batch
    /// lost with a connection and sent again counts once.
    stats: TaskStats,
}

#[derive(Debug)]
pub struct ReplicaSource {
    spec: ReplicaTask,
    manager: NodeId,
    stage: Stage,
    compare: bool,
    walk: BatchWalk,
    /// Every block the plan reads, and those of them done with: written by
    /// the receiver, or found not to need sending.
    planned: BitVec,
    settled: BitVec,
    batches: BTreeMap<u64, Batch>,
    /// A peer is away: nothing moves until [`ReplicaSource::resume`].
    suspended: bool,
    stats: TaskStats,
}

impl ReplicaSource {
    /// Starts the task; its batch ids start at `first_batch` (see
    /// [`BatchWalk::new`]).
    pub fn start(manager: NodeId, spec: ReplicaTask, first_batch: u64, out: &mut Outbox) -> ReplicaSource {
        out.send(spec.sink.proxy, Message::OpenReplica(Box::new(spec.sink.clone())));
        let stage = match spec.target_changes {
            Some(t) => {
                let sink = &spec.sink;
                out.send(
                    t.host,
                    Message::GetChangedBlocks {
                        task: spec.task,
                        snap: t.snap,
                        disk: sink.disk,
                        since: Some(t.since),
                        block_size: sink.block_size,
                    },
                );
                Stage::TargetPlanning
            }
            None => {
                ask_changed(&spec, out);
                Stage::Planning { target: None }
            }
        };
        let stats = TaskStats { blocks_total: spec.sink.block_size.blocks_for(spec.sink.disk_bytes), ..TaskStats::default() };
        let walk = BatchWalk::new(BitVec::new(), spec.sink.block_size, first_batch);
        ReplicaSource {
            compare: spec.mode == ReadMode::DigestCompare,
            spec,
            manager,
            stage,
            walk,
            planned: BitVec::new(),
            settled: BitVec::new(),
            batches: BTreeMap::new(),
            suspended: false,
            stats,
        }
    }

    /// The manager that started this task (and hears how it ends).
    pub fn manager(&self) -> NodeId {
        self.manager
    }

    pub fn depends_on(&self, peer: NodeId) -> bool {
        let repository = match self.spec.base {
            BaseDigests::Metadata { repository, .. } => Some(repository),
            BaseDigests::Target => None,
        };
        peer == self.spec.host
            || peer == self.spec.sink.proxy
            || Some(peer) == repository
            || self.spec.target_changes.is_some_and(|t| t.host == peer)
    }

    /// A peer went away. Once streaming, the sync waits for it (see the
    /// module doc) and forgets what is in flight; while planning it cannot
    /// (`false`: fail it).
    pub fn suspend(&mut self) -> bool {
        if matches!(self.stage, Stage::TargetPlanning | Stage::Planning { .. }) {
            return false;
        }
        self.suspended = true;
        self.batches.clear();
        true
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Every peer is back: ask the receiver what it holds.
    pub fn resume(&mut self, out: &mut Outbox) -> Progress {
        self.suspended = false;
        self.stage = Stage::Resyncing;
        out.send(self.spec.sink.proxy, Message::ResumeReplica { task: self.spec.task });
        Progress::Running
    }

    /// The receiver's answer to `ResumeReplica`: read again every planned
    /// block neither settled here nor written there.
    fn resync(&mut self, written: BitVec, out: &mut Outbox) -> Result<Progress, String> {
        let mut to_read = self.planned.clone();
        to_read &= !self.settled.clone();
        let len = to_read.len();
        for index in written.iter_ones().filter(|&i| i < len) {
            if to_read.replace(index, false) {
                // Written, its acknowledgement lost with the connection.
                self.stats.blocks_resumed += 1;
                self.stats.blocks_changed += 1;
                self.settled.set(index, true);
            }
        }
        self.walk.restart(to_read);
        self.stage = Stage::Streaming;
        self.pump(out)
    }

    pub fn fail(&mut self, reason: String, out: &mut Outbox) {
        let reason = format!("replica sync of {}/disk{}: {reason}", self.spec.vm, self.spec.sink.disk);
        out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Err(reason) });
    }

    /// Handles one reply; an `Err` fails the task (the proxy reports it).
    pub fn step(&mut self, msg: Message, out: &mut Outbox) -> Result<Progress, String> {
        match msg {
            Message::BlocksRead { batch, .. } | Message::Digests { batch, .. } | Message::ReplicaAck { batch, .. }
                if !self.batches.contains_key(&batch) =>
            {
                // A reply for a batch forgotten with a broken connection.
                Ok(Progress::Running)
            }
            Message::ChangedBlocksReply { reply, .. } => match std::mem::replace(&mut self.stage, Stage::Streaming) {
                Stage::TargetPlanning => {
                    let target = reply.map_err(|e| format!("receiving host's changed blocks: {e}"))?;
                    ask_changed(&self.spec, out);
                    self.stage = Stage::Planning { target: Some(target) };
                    Ok(Progress::Running)
                }
                Stage::Planning { target } => self.plan(reply?, target, out),
                other => {
                    self.stage = other;
                    Ok(Progress::Running)
                }
            },
            Message::BlocksRead { batch, result, .. } => {
                self.batch(batch)?.read = Some(result.map_err(|e| format!("reading blocks: {e}"))?);
                self.try_send(batch, out)
            }
            Message::Digests { batch, result, .. } => {
                self.batch(batch)?.base = Some(result.map_err(|e| format!("digests of the receiving side: {e}"))?);
                self.try_send(batch, out)
            }
            Message::ReplicaAck { batch, result, .. } => {
                result.map_err(|e| format!("the receiving side could not write: {e}"))?;
                self.settle(batch);
                self.pump(out)
            }
            Message::ReplicaProgress { written, .. } if matches!(self.stage, Stage::Resyncing) => {
                self.resync(written.map_err(|e| format!("the receiving side cannot resume: {e}"))?, out)
            }
            Message::ReplicaFinished { result, .. } => {
                result.map_err(|e| format!("the receiving side could not finish: {e}"))?;
                out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Ok(self.stats) });
                Ok(Progress::Finished)
            }
            _ => Ok(Progress::Running),
        }
    }

    fn batch(&mut self, id: u64) -> Result<&mut Batch, String> {
        self.batches.get_mut(&id).ok_or_else(|| format!("reply for unknown batch {id}"))
    }

    /// A batch is done with: its blocks need no sending again, and its
    /// figures count.
    fn settle(&mut self, id: u64) {
        let Some(batch) = self.batches.remove(&id) else { return };
        self.stats.add(&batch.stats);
        for index in batch.blocks {
            if let Some(mut bit) = self.settled.get_mut(index as usize) {
                *bit = true;
            }
        }
    }

    /// Decides which blocks to read from both changed-block answers.
    fn plan(&mut self, own: ChangedBlocks, target: Option<ChangedBlocks>, out: &mut Outbox) -> Result<Progress, String> {
        let total = self.stats.blocks_total as usize;
        let all = BitVec::repeat(true, total);
        let (mut to_read, mut swap) = match own {
            ChangedBlocks::Known { changed, swap } => (changed, swap),
            ChangedBlocks::Unavailable { swap } => {
                self.stats.cbt_fallback = true;
                self.compare = self.spec.mode != ReadMode::Full;
                (all.clone(), swap)
            }
        };
        if to_read.len() != total {
            return Err(format!("host answered {} blocks for a disk of {total}", to_read.len()));
        }
        match target {
            Some(ChangedBlocks::Known { mut changed, .. }) => {
                changed.resize(total, false);
                to_read |= changed;
            }
            Some(ChangedBlocks::Unavailable { .. }) => {
                self.stats.cbt_fallback = true;
                self.compare = true;
            }
            None => {}
        }
        // Comparing against a VM that may hold anything: every block counts,
        // allocated on this side or not.
        if self.compare {
            to_read = all;
        }
        swap.resize(total, false);
        self.stats.blocks_swap = (to_read.clone() & &swap).count_ones() as u64;
        to_read &= !swap;
        self.planned = to_read.clone();
        self.settled = BitVec::repeat(false, total);
        self.walk = BatchWalk::new(to_read, self.spec.sink.block_size, self.walk.next_id());
        self.stage = Stage::Streaming;
        self.pump(out)
    }

    /// Starts batches while the window has room; finishes when all are done.
    fn pump(&mut self, out: &mut Outbox) -> Result<Progress, String> {
        if self.suspended {
            return Ok(Progress::Running);
        }
        while self.batches.len() < WINDOW {
            let Some((id, blocks)) = self.walk.next_batch() else { break };
            let (spec, sink) = (&self.spec, &self.spec.sink);
            let read = Message::ReadBlocks {
                task: spec.task,
                batch: id,
                snap: spec.snap,
                disk: sink.disk,
                block_size: sink.block_size,
                blocks: blocks.clone(),
            };
            out.send(spec.host, read);
            if self.compare {
                match spec.base {
                    BaseDigests::Target => out.send(sink.proxy, Message::HashBlocks { task: spec.task, batch: id, blocks: blocks.clone() }),
                    BaseDigests::Metadata { repository, point } => out.send(
                        repository,
                        Message::GetReplicaDigests { task: spec.task, batch: id, point, disk: sink.disk, blocks: blocks.clone() },
                    ),
                }
            }
            self.batches.insert(id, Batch { blocks, ..Batch::default() });
        }
        if self.batches.is_empty() && matches!(self.stage, Stage::Streaming) {
            self.stage = Stage::Finishing;
            out.send(self.spec.sink.proxy, Message::FinishReplica { task: self.spec.task });
        }
        Ok(Progress::Running)
    }

    /// Once a batch's reads (and base digests) are in: encode, keep what
    /// the receiving side lacks, send it.
    fn try_send(&mut self, id: u64, out: &mut Outbox) -> Result<Progress, String> {
        let (compare, compression) = (self.compare, self.spec.compression);
        // A new replica starts all zero: zero blocks need no write.
        let skip_zero = self.spec.mode == ReadMode::Full && !compare;
        let batch = self.batch(id)?;
        let Some((read, base)) = take_ready(&batch.blocks, &mut batch.read, &mut batch.base, compare)? else {
            return Ok(Progress::Running);
        };
        let mut blocks = Vec::new();
        let stats = &mut batch.stats;
        for (n, (index, data)) in read.into_iter().enumerate() {
            stats.blocks_read += 1;
            stats.bytes_read += data.raw_len();
            let payload = encode(&data, compression);
            let digest = payload.digest();
            let zero = digest.is_zero_block();
            stats.blocks_zero += u64::from(zero);
            if base.as_ref().is_some_and(|b| b[n] == digest) || (zero && skip_zero) {
                continue;
            }
            stats.blocks_changed += 1;
            if !zero {
                stats.blocks_sent += 1;
                stats.bytes_sent += payload.stored_len();
            }
            blocks.push(BlockRef { index, digest, payload: Some(payload) });
        }
        if blocks.is_empty() {
            self.settle(id);
            return self.pump(out);
        }
        out.send(self.spec.sink.proxy, Message::ReplicaBlocks { task: self.spec.task, batch: id, blocks });
        Ok(Progress::Running)
    }
}

/// Asks our host which blocks to read (all allocated ones unless `Changed`).
fn ask_changed(spec: &ReplicaTask, out: &mut Outbox) {
    let since = match spec.mode {
        ReadMode::Changed { since } => Some(since),
        ReadMode::Full | ReadMode::DigestCompare => None,
    };
    let sink = &spec.sink;
    out.send(
        spec.host,
        Message::GetChangedBlocks { task: spec.task, snap: spec.snap, disk: sink.disk, since, block_size: sink.block_size },
    );
}
