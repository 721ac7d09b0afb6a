//! The receiving end of a replica disk sync: decode what the sender sends
//! and write it to the VM through its host; hash the VM's blocks when the
//! sender asks (mapping, seeding, no metadata); at the end, report the
//! point's digest vector to the metadata repository.
//!
//! Host requests carry ids from this run's own range (given by the proxy),
//! so a late answer to a failed earlier attempt of the same task is
//! recognised and ignored instead of being taken for this attempt's.
//!
//! The digests hashed and written are kept until the end (40 bytes per
//! block, the size of the metadata itself) and reported in chunks.
//!
//! When the connection to the sender breaks, the receiver keeps what it
//! has (writes in flight go on) and waits for the sender to come back and
//! ask which blocks are written (`ResumeReplica`): see
//! [`super::replica_source`]. The proxy drops it if the sender stays away.

use super::backup_task::Progress;
use crate::block::Digest;
use crate::ids::NodeId;
use crate::limits::read_len;
use crate::node::Outbox;
use crate::payload::decode;
use crate::wire::Message;
use crate::wire::message::{BlockRef, ReplicaSink};
use bitvec::vec::BitVec;
use std::collections::BTreeMap;

/// Digests per `PutReplicaDisk` (about 2.6 MB a message).
const CHUNK: usize = 65_536;

#[derive(Debug)]
pub struct ReplicaTarget {
    sink: ReplicaSink,
    sender: NodeId,
    /// The id of this run's next host request (see `open`).
    next_host_batch: u64,
    blocks_total: u64,
    /// Blocks hashed and written, as (index, digest) in arrival order (a
    /// later entry for an index wins; sorted once, when reported).
    hashed: Vec<(u64, Digest)>,
    written: Vec<(u64, Digest)>,
    /// Host reads for hashing in flight: host batch → sender's batch.
    hashing: BTreeMap<u64, u64>,
    /// Host writes in flight: host batch → sender's batch and digests.
    writing: BTreeMap<u64, (u64, Vec<(u64, Digest)>)>,
    /// `DiskFinished` answers still awaited from the metadata repository.
    reports: u32,
    /// `FinishReplica` came (a sender that resumed may send it again).
    finishing: bool,
    /// The connection to the sender broke and it has not asked to resume.
    waiting: bool,
}

impl ReplicaTarget {
    /// Opens the receiving end; its host requests are numbered from
    /// `first_batch`, a range of this run's own, so a host's late answer
    /// to an earlier run of the task is never taken for this one's.
    pub fn open(sender: NodeId, sink: ReplicaSink, first_batch: u64) -> ReplicaTarget {
        let blocks_total = sink.block_size.blocks_for(sink.disk_bytes);
        ReplicaTarget {
            sink,
            sender,
            next_host_batch: first_batch,
            blocks_total,
            hashed: Vec::new(),
            written: Vec::new(),
            hashing: BTreeMap::new(),
            writing: BTreeMap::new(),
            reports: 0,
            finishing: false,
            waiting: false,
        }
    }

    /// A peer went away: the sender is waited for (`true`); without its
    /// host or metadata repository the sync cannot go on (`false`: fail it).
    pub fn suspend_for(&mut self, peer: NodeId) -> bool {
        self.waiting = peer == self.sender;
        self.waiting
    }

    /// Waiting for the sender to come back and resume.
    pub fn is_suspended(&self) -> bool {
        self.waiting
    }

    /// `from` asks to resume: if it is this sync's sender, it hears which
    /// blocks the host has written; `false` if it is not.
    pub fn resume(&mut self, from: NodeId, out: &mut Outbox) -> bool {
        if from != self.sender {
            return false;
        }
        self.waiting = false;
        let mut written = BitVec::repeat(false, self.blocks_total as usize);
        for &(index, _) in &self.written {
            written.set(index as usize, true);
        }
        out.send(self.sender, Message::ReplicaProgress { task: self.sink.task, written: Ok(written) });
        true
    }

    pub fn depends_on(&self, peer: NodeId) -> bool {
        peer == self.sink.host || peer == self.sender || peer == self.sink.report.repository
    }

    /// Tells the sender, which reports the failure to the manager.
    pub fn fail(&mut self, reason: String, out: &mut Outbox) {
        let reason = format!("writing {}/disk{}: {reason}", self.sink.vm, self.sink.disk);
        out.send(self.sender, Message::ReplicaFinished { task: self.sink.task, result: Err(reason) });
    }

    /// Handles one reply; an `Err` fails the task (the proxy reports it).
    pub fn step(&mut self, msg: Message, out: &mut Outbox) -> Result<Progress, String> {
        let sink = &self.sink;
        match msg {
            Message::HashBlocks { batch, blocks, .. } => {
                let snap = sink.hash_snap.ok_or("asked to hash blocks, but no snapshot of the VM was given")?;
                // The host refuses a larger read (and closes the connection).
                read_len(blocks.len() as u64, sink.block_size).map_err(|e| format!("asked to hash blocks: {e}"))?;
                let host_batch = self.next_host_batch;
                self.next_host_batch += 1;
                let sink = &self.sink;
                let read =
                    Message::ReadBlocks { task: sink.task, batch: host_batch, snap, disk: sink.disk, block_size: sink.block_size, blocks };
                out.send(sink.host, read);
                self.hashing.insert(host_batch, batch);
            }
            Message::BlocksRead { batch: host_batch, result, .. } => {
                let Some(batch) = self.hashing.remove(&host_batch) else { return Ok(Progress::Running) };
                let blocks = result.map_err(|e| format!("reading blocks to hash: {e}"))?;
                let digests: Vec<Digest> = blocks.iter().map(|(_, data)| data.digest()).collect();
                self.hashed.extend(blocks.iter().map(|(i, _)| *i).zip(digests.iter().copied()));
                bound(&mut self.hashed, self.blocks_total);
                out.send(self.sender, Message::Digests { task: sink.task, batch, result: Ok(digests) });
            }
            Message::ReplicaBlocks { batch, blocks, .. } => self.write(batch, blocks, out)?,
            Message::BlocksWritten { batch: host_batch, result, .. } => {
                let Some((batch, digests)) = self.writing.remove(&host_batch) else { return Ok(Progress::Running) };
                let result = result.map_err(|e| format!("the host could not write: {e}"));
                if result.is_ok() {
                    self.written.extend(digests);
                    bound(&mut self.written, self.blocks_total);
                }
                out.send(self.sender, Message::ReplicaAck { task: sink.task, batch, result });
            }
            Message::FinishReplica { .. } if !self.finishing => {
                self.finishing = true;
                self.report(out);
            }
            Message::DiskFinished { result, .. } => {
                result.map_err(|e| format!("the metadata repository refused the digests: {e}"))?;
                self.reports = self.reports.saturating_sub(1);
                if self.reports == 0 {
                    out.send(self.sender, Message::ReplicaFinished { task: sink.task, result: Ok(()) });
                    return Ok(Progress::Finished);
                }
            }
            _ => {}
        }
        Ok(Progress::Running)
    }

    /// Decodes a batch (which verifies each block against its digest) and
    /// writes it.
    fn write(&mut self, batch: u64, blocks: Vec<BlockRef>, out: &mut Outbox) -> Result<(), String> {
        let mut data = Vec::with_capacity(blocks.len());
        let mut digests = Vec::with_capacity(blocks.len());
        for block in blocks {
            if block.index >= self.blocks_total {
                return Err(format!("block {} is beyond the disk's {} blocks", block.index, self.blocks_total));
            }
            let payload = block.payload.ok_or_else(|| format!("block {} came without its payload", block.index))?;
            if payload.digest() != block.digest {
                return Err(format!("block {} names digest {:?} but carries {:?}", block.index, block.digest, payload.digest()));
            }
            data.push((block.index, decode(&payload).map_err(|e| format!("block {}: {e}", block.index))?));
            digests.push((block.index, block.digest));
        }
        let host_batch = self.next_host_batch;
        self.next_host_batch += 1;
        let sink = &self.sink;
        out.send(
            sink.host,
            Message::WriteBlocks {
                task: sink.task,
                batch: host_batch,
                vm: sink.vm,
                disk: sink.disk,
                block_size: sink.block_size,
                blocks: data,
            },
        );
        self.writing.insert(host_batch, (batch, digests));
        Ok(())
    }

    /// Reports the digest vectors: the initial point's (what was hashed),
    /// then the new point's (hashed, overwritten by what was written).
    fn report(&mut self, out: &mut Outbox) {
        let (sink, report) = (&self.sink, self.sink.report);
        let mut vectors = Vec::new();
        let hashed = latest_by_index(self.hashed.clone());
        if let Some(initial) = report.initial {
            vectors.push((initial, None, hashed.iter().filter(|(_, d)| !d.is_zero_block()).copied().collect()));
        }
        let changes = latest_by_index(hashed.into_iter().chain(self.written.iter().copied()).collect());
        // On an all-zero base, zero digests change nothing.
        let changes: Vec<(u64, Digest)> = changes.into_iter().filter(|(_, d)| report.base.is_some() || !d.is_zero_block()).collect();
        vectors.push((report.point, report.base, changes));
        for (point, base, changes) in vectors {
            let chunks: Vec<&[(u64, Digest)]> = if changes.is_empty() { vec![&[]] } else { changes.chunks(CHUNK).collect() };
            let last = chunks.len() - 1;
            for (n, chunk) in chunks.into_iter().enumerate() {
                out.send(
                    report.repository,
                    Message::PutReplicaDisk {
                        task: sink.task,
                        point,
                        base,
                        disk: sink.disk,
                        bytes: sink.disk_bytes,
                        block_size: sink.block_size,
                        changes: chunk.to_vec(),
                        first: n == 0,
                        last: n == last,
                    },
                );
            }
            self.reports += 1;
        }
    }
}

/// Keeps a list of (index, digest) entries within twice the disk's blocks:
/// a sender that sends blocks again (after a broken connection, or without
/// end) cannot grow it further, as only the last entry per index counts.
fn bound(entries: &mut Vec<(u64, Digest)>, blocks: u64) {
    if entries.len() as u64 > blocks.saturating_mul(2) {
        *entries = latest_by_index(std::mem::take(entries));
    }
}

/// `entries` in index order, one per index: the last one given for it.
fn latest_by_index(mut entries: Vec<(u64, Digest)>) -> Vec<(u64, Digest)> {
    // Stable: entries for one index stay in arrival order.
    entries.sort_by_key(|(index, _)| *index);
    let mut out: Vec<(u64, Digest)> = Vec::with_capacity(entries.len());
    for (index, digest) in entries {
        match out.last_mut() {
            Some(last) if last.0 == index => last.1 = digest,
            _ => out.push((index, digest)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_entry_of_an_index_wins_and_indexes_come_in_order() {
        let d = |n: u8| Digest([n; 32]);
        let entries = vec![(5, d(1)), (2, d(2)), (5, d(3)), (0, d(4)), (2, d(5)), (5, d(6))];
        assert_eq!(latest_by_index(entries), vec![(0, d(4)), (2, d(5)), (5, d(6))]);
        assert_eq!(latest_by_index(Vec::new()), Vec::new());
    }

    #[test]
    fn a_list_sent_again_and_again_stays_within_twice_the_disk() {
        let d = |n: u8| Digest([n; 32]);
        let mut entries = Vec::new();
        for round in 0..100u8 {
            entries.extend((0..4).map(|i| (i, d(round))));
            bound(&mut entries, 4);
            assert!(entries.len() <= 8, "{}", entries.len());
        }
        assert_eq!(latest_by_index(entries), (0..4).map(|i| (i, d(99))).collect::<Vec<_>>());
    }
}
