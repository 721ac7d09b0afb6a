//! One disk restore: stream a restore point's disk from the repository onto
//! a new VM's disk through its host, in a window of batches.
//!
//! Per batch: `ReadPoint` (a range of block indexes; the repository returns
//! the non-zero blocks), decode every payload — which verifies its digest, so
//! a damaged block fails the restore naming it instead of writing wrong
//! bytes — then `WriteBlocks` to the host and wait for `BlocksWritten`.
//!
//! Reads and writes are idempotent, so a broken connection does not fail the
//! task: it is suspended, the batches in flight are forgotten, and when the
//! peer is back they are asked for again (replies to the forgotten ones are
//! ignored). The proxy fails the task if the peer stays away too long.

use super::backup_task::{BATCH_BYTES, Progress, WINDOW};
use crate::ids::NodeId;
use crate::node::Outbox;
use crate::payload::decode;
use crate::wire::Message;
use crate::wire::message::{RestoreTask, TaskStats};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct RestoreRun {
    spec: RestoreTask,
    manager: NodeId,
    /// Next block index to ask for.
    next: u64,
    blocks_total: u64,
    next_batch: u64,
    /// Batches in flight and the block range each covers.
    in_flight: BTreeMap<u64, (u64, u64)>,
    /// Ranges whose batches were lost with a connection, to ask again.
    lost: Vec<(u64, u64)>,
    suspended: bool,
    stats: TaskStats,
}

impl RestoreRun {
    /// Starts the task; its batch ids start at `first_batch` (an answer
    /// meant for an earlier run of the task is never taken for this one's).
    pub fn start(manager: NodeId, spec: RestoreTask, first_batch: u64, out: &mut Outbox) -> (RestoreRun, Progress) {
        let blocks_total = spec.block_size.blocks_for(spec.disk_bytes);
        let mut run = RestoreRun {
            spec,
            manager,
            next: 0,
            blocks_total,
            next_batch: first_batch,
            in_flight: BTreeMap::new(),
            lost: Vec::new(),
            suspended: false,
            stats: TaskStats { blocks_total, ..TaskStats::default() },
        };
        let progress = run.pump(out);
        (run, progress)
    }

    /// The manager that started this task (and hears how it ends).
    pub fn manager(&self) -> NodeId {
        self.manager
    }

    pub fn depends_on(&self, peer: NodeId) -> bool {
        peer == self.spec.host || peer == self.spec.repository
    }

    /// A peer went away: forget the batches in flight (they are asked for
    /// again on [`RestoreRun::resume`]).
    pub fn suspend(&mut self) {
        self.suspended = true;
        self.lost.extend(std::mem::take(&mut self.in_flight).into_values());
    }

    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    pub fn resume(&mut self, out: &mut Outbox) -> Progress {
        self.suspended = false;
        self.pump(out)
    }

    pub fn fail(&mut self, reason: String, out: &mut Outbox) {
        let reason = format!("restore of {} disk {}: {reason}", self.spec.point, self.spec.disk);
        out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Err(reason) });
    }

    /// Handles one reply; an `Err` fails the task (the proxy reports it).
    pub fn step(&mut self, msg: Message, out: &mut Outbox) -> Result<Progress, String> {
        match msg {
            Message::PointBlocks { batch, .. } | Message::BlocksWritten { batch, .. } if !self.in_flight.contains_key(&batch) => {
                // A reply to a batch lost with a connection: asked again.
                Ok(Progress::Running)
            }
            Message::PointBlocks { batch, result, .. } => {
                let blocks = result?;
                let mut data = Vec::with_capacity(blocks.len());
                for (index, payload) in blocks {
                    if index >= self.blocks_total {
                        return Err(format!("repository sent block {index} beyond the disk's {}", self.blocks_total));
                    }
                    self.stats.blocks_sent += 1;
                    self.stats.bytes_sent += payload.stored_len();
                    let block = decode(&payload).map_err(|e| format!("block {index}: {e}"))?;
                    data.push((index, block));
                }
                if data.is_empty() {
                    self.in_flight.remove(&batch);
                    return Ok(self.pump(out));
                }
                let spec = &self.spec;
                out.send(
                    spec.host,
                    Message::WriteBlocks {
                        task: spec.task,
                        batch,
                        vm: spec.vm,
                        disk: spec.disk,
                        block_size: spec.block_size,
                        blocks: data,
                    },
                );
                Ok(Progress::Running)
            }
            Message::BlocksWritten { batch, result, .. } => {
                result.map_err(|e| format!("host could not write: {e}"))?;
                self.in_flight.remove(&batch);
                Ok(self.pump(out))
            }
            _ => Ok(Progress::Running),
        }
    }

    fn pump(&mut self, out: &mut Outbox) -> Progress {
        if self.suspended {
            return Progress::Running;
        }
        let per_batch = (BATCH_BYTES / u64::from(self.spec.block_size.bytes())).max(1);
        while self.in_flight.len() < WINDOW {
            let (first, count) = match self.lost.pop() {
                Some(range) => range,
                None if self.next < self.blocks_total => {
                    let count = per_batch.min(self.blocks_total - self.next);
                    self.next += count;
                    (self.next - count, count)
                }
                None => break,
            };
            let batch = self.next_batch;
            self.next_batch += 1;
            let spec = &self.spec;
            out.send(
                spec.repository,
                Message::ReadPoint {
                    task: spec.task,
                    batch,
                    point: spec.point,
                    disk: spec.disk,
                    first,
                    count,
                    block_size: spec.block_size,
                },
            );
            self.in_flight.insert(batch, (first, count));
        }
        if self.in_flight.is_empty() {
            out.send(self.manager, Message::TaskDone { task: self.spec.task, result: Ok(self.stats) });
            return Progress::Finished;
        }
        Progress::Running
    }
}
