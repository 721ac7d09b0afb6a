//! The driver's side of storage and hypervisor requests: what the fuzzer
//! keeps of each request a role made, and the completion it feeds back —
//! mostly what a store or a hypervisor would answer (a store that really
//! keeps the blocks and manifests the role wrote, so a restart recovers
//! them), sometimes a failure, an answer of the wrong shape, or one for a
//! request nobody made.

use crate::harvest::Key;
use crate::values::Gen;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorOp, HypervisorReply, HypervisorRequest, SnapshotDisk};
use blockferry_core::limits::read_len;
use blockferry_core::manifest::{DiskManifest, Manifest};
use blockferry_core::payload::BlockPayload;
use blockferry_core::storage::{StorageCompletion, StorageError, StorageOp, StorageReply, StorageRequest};
use blockferry_core::{BlockSize, ChangeId, Digest, JobId, RequestId, RestorePointId, SessionId, SnapshotId, Timestamp, VmId};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Requests awaiting completion, at most this many of each kind (a role
/// that leaks requests shows as RSS, not as the fuzzer's memory).
const PENDING: usize = 64;
/// Blocks and manifests the store keeps.
const STORED_BLOCKS: usize = 256;
const STORED_MANIFESTS: usize = 16;

/// What a storage request needs for its answer.
#[derive(Debug)]
enum StorageAsk {
    Done,
    Blocks(Vec<Digest>),
    Recover,
    RecoverReplica,
}

/// What a hypervisor request needs for its answer.
#[derive(Debug)]
enum HypervisorAsk {
    Snapshot,
    Changed,
    Read {
        block_size: BlockSize,
        blocks: Vec<u64>,
    },
    /// A read beyond the limit (`limits::read_len`): refused (and counted)
    /// rather than carried out, as the fuzzer's memory is not the role's.
    Oversized,
    Committed,
    VmCreated,
    Written,
    Done,
}

/// Requests of the current incarnation not yet answered, and the store
/// (which outlives incarnations).
#[derive(Default)]
pub struct Backends {
    storage: VecDeque<(RequestId, StorageAsk)>,
    hypervisor: VecDeque<(RequestId, HypervisorAsk)>,
    /// Ids already answered: answering one again is a driver's bug the
    /// fuzzer plays now and then.
    answered: VecDeque<RequestId>,
    blocks: VecDeque<BlockPayload>,
    manifests: VecDeque<Manifest>,
    replica: VecDeque<Manifest>,
    /// Reads asked of the hypervisor beyond the limit: a role that passes a
    /// peer's request on unbounded.
    pub oversized: u64,
}

/// Appends `item`, dropping the oldest beyond `cap`.
pub(crate) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, cap: usize) {
    if queue.len() == cap {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Backends {
    /// A crash: requests in flight die with the incarnation.
    pub fn crash(&mut self) {
        self.storage.clear();
        self.hypervisor.clear();
    }

    pub fn has_pending(&self) -> bool {
        !self.storage.is_empty() || !self.hypervisor.is_empty()
    }

    /// Takes a storage request: the store applies writes at once.
    pub fn storage_request(&mut self, request: StorageRequest) {
        let ask = match request.op {
            StorageOp::PutBlocks(blocks) => {
                blocks.into_iter().for_each(|b| push_bounded(&mut self.blocks, b, STORED_BLOCKS));
                StorageAsk::Done
            }
            StorageOp::PutManifest(m) => {
                self.manifests.retain(|k| k.point != m.point);
                push_bounded(&mut self.manifests, m, STORED_MANIFESTS);
                StorageAsk::Done
            }
            StorageOp::PutReplicaMetadata(m) => {
                self.replica.retain(|k| k.point != m.point);
                push_bounded(&mut self.replica, m, STORED_MANIFESTS);
                StorageAsk::Done
            }
            StorageOp::DeleteManifest(point) => {
                self.manifests.retain(|m| m.point != point);
                StorageAsk::Done
            }
            StorageOp::DeleteReplicaMetadata(point) => {
                self.replica.retain(|m| m.point != point);
                StorageAsk::Done
            }
            StorageOp::DeleteBlocks(digests) => {
                self.blocks.retain(|b| !digests.contains(&b.digest()));
                StorageAsk::Done
            }
            StorageOp::Sync => StorageAsk::Done,
            StorageOp::GetBlocks(digests) => StorageAsk::Blocks(digests),
            StorageOp::Recover => StorageAsk::Recover,
            StorageOp::RecoverReplicaMetadata => StorageAsk::RecoverReplica,
        };
        push_bounded(&mut self.storage, (request.id, ask), PENDING);
    }

    pub fn hypervisor_request(&mut self, request: HypervisorRequest) {
        let ask = match request.op {
            HypervisorOp::CreateSnapshot { .. } => HypervisorAsk::Snapshot,
            HypervisorOp::ChangedBlocks { .. } => HypervisorAsk::Changed,
            HypervisorOp::ReadBlocks { block_size, blocks, .. } => {
                if read_len(blocks.len() as u64, block_size).is_err() {
                    self.oversized += 1;
                    HypervisorAsk::Oversized
                } else {
                    HypervisorAsk::Read { block_size, blocks }
                }
            }
            HypervisorOp::CommitSnapshot { .. } => HypervisorAsk::Committed,
            HypervisorOp::CreateVm { .. } => HypervisorAsk::VmCreated,
            HypervisorOp::WriteBlocks { .. } => HypervisorAsk::Written,
            HypervisorOp::RevertToSnapshot { .. } | HypervisorOp::SetPower { .. } => HypervisorAsk::Done,
        };
        push_bounded(&mut self.hypervisor, (request.id, ask), PENDING);
    }

    /// Whether a recorded completion answers a request this incarnation
    /// made (then it is taken off the pending list).
    pub fn take_if_pending(&mut self, id: RequestId) -> bool {
        let taken = if let Some(i) = self.storage.iter().position(|(r, _)| *r == id) {
            self.storage.remove(i).is_some()
        } else if let Some(i) = self.hypervisor.iter().position(|(r, _)| *r == id) {
            self.hypervisor.remove(i).is_some()
        } else {
            false
        };
        if taken {
            push_bounded(&mut self.answered, id, PENDING);
        }
        taken
    }

    /// An id to answer: mostly a pending one (taken off the list),
    /// sometimes one answered before or one never asked for.
    fn id(&mut self, g: &mut Gen, pending: Option<RequestId>) -> RequestId {
        match (g.below(20), pending) {
            (0, _) => RequestId(g.rng.random_range(0..1 << 20)),
            (1, _) if !self.answered.is_empty() => self.answered[g.below(self.answered.len())],
            (_, Some(id)) => {
                push_bounded(&mut self.answered, id, PENDING);
                id
            }
            _ => RequestId(g.rng.random_range(0..64)),
        }
    }

    /// A storage completion (see the module documentation).
    pub fn storage_completion(&mut self, g: &mut Gen) -> StorageCompletion {
        let ask = (!self.storage.is_empty()).then(|| g.below(self.storage.len())).and_then(|i| self.storage.remove(i));
        let (pending, ask) = match ask {
            Some((id, ask)) => (Some(id), ask),
            None => (None, StorageAsk::Done),
        };
        let id = self.id(g, pending);
        let result = match g.below(20) {
            0 => Err(StorageError::Full),
            1 => Err(StorageError::Io(g.text())),
            // An answer of another request's shape.
            2 => {
                let other = match g.below(3) {
                    0 => StorageAsk::Done,
                    1 => StorageAsk::Blocks(vec![g.digest()]),
                    _ => StorageAsk::Recover,
                };
                Ok(self.storage_reply(g, &other))
            }
            _ => Ok(self.storage_reply(g, &ask)),
        };
        StorageCompletion { id, result }
    }

    fn storage_reply(&self, g: &mut Gen, ask: &StorageAsk) -> StorageReply {
        match ask {
            StorageAsk::Done => StorageReply::Done,
            StorageAsk::Blocks(digests) => {
                let mut blocks: Vec<_> = digests.iter().map(|d| self.stored_block(g, *d)).collect();
                if g.chance(5) {
                    // One too few or one too many.
                    if g.chance(50) {
                        blocks.pop();
                    } else {
                        blocks.push(Ok(g.payload()));
                    }
                }
                StorageReply::Blocks(blocks)
            }
            StorageAsk::Recover => {
                let mut manifests: Vec<Manifest> = self.manifests.iter().cloned().collect();
                if g.chance(5) {
                    manifests.push(manifest(g));
                }
                let mut blocks: Vec<Digest> = self.blocks.iter().map(BlockPayload::digest).collect();
                blocks.extend(manifests.iter().flat_map(|m| m.referenced()).filter(|_| g.chance(95)).take(4096));
                blocks.sort();
                blocks.dedup();
                StorageReply::Recovered { manifests, blocks }
            }
            StorageAsk::RecoverReplica => {
                let mut manifests: Vec<Manifest> = self.replica.iter().cloned().collect();
                if g.chance(5) {
                    manifests.push(manifest(g));
                }
                StorageReply::ReplicaMetadata(manifests)
            }
        }
    }

    /// What the store holds under `digest`, or why not.
    fn stored_block(&self, g: &mut Gen, digest: Digest) -> Result<BlockPayload, StorageError> {
        match (g.below(20), self.blocks.iter().find(|b| b.digest() == digest)) {
            (0, _) => Err(StorageError::Damaged(digest)),
            (1, _) => Ok(g.payload()),
            (_, Some(block)) => Ok(block.clone()),
            (_, None) => Err(StorageError::Missing(digest)),
        }
    }

    /// A hypervisor completion (see the module documentation).
    pub fn hypervisor_completion(&mut self, g: &mut Gen) -> HypervisorCompletion {
        let ask = (!self.hypervisor.is_empty()).then(|| g.below(self.hypervisor.len())).and_then(|i| self.hypervisor.remove(i));
        let (pending, ask) = match ask {
            Some((id, ask)) => (Some(id), ask),
            None => (None, HypervisorAsk::Done),
        };
        let id = self.id(g, pending);
        let result = match g.below(20) {
            _ if matches!(ask, HypervisorAsk::Oversized) => Err("the fuzzer's hypervisor reads no more than the limit".into()),
            0 | 1 => Err(g.text()),
            2 => {
                let asks = [HypervisorAsk::Snapshot, HypervisorAsk::Changed, HypervisorAsk::Committed, HypervisorAsk::Done];
                let other = &asks[g.below(asks.len())];
                Ok(hypervisor_reply(g, other))
            }
            _ => Ok(hypervisor_reply(g, &ask)),
        };
        HypervisorCompletion { id, result }
    }
}

fn hypervisor_reply(g: &mut Gen, ask: &HypervisorAsk) -> HypervisorReply {
    match ask {
        HypervisorAsk::Snapshot => {
            let count = g.below(4);
            let disks = g.vec(count, |g| SnapshotDisk { bytes: g.bytes(), change_id: g.option(|g| ChangeId(g.num(Key::Change))) });
            HypervisorReply::SnapshotCreated { snap: SnapshotId(g.rng.random_range(0..1 << 20)), disks }
        }
        HypervisorAsk::Changed => HypervisorReply::ChangedBlocks(g.changed()),
        HypervisorAsk::Read { block_size, blocks } => {
            let mut read: Vec<_> = blocks.iter().map(|&index| (index, g.data(*block_size))).collect();
            match g.below(20) {
                0 => drop(read.pop()),
                1 => read.push((g.index(), g.data(*block_size))),
                2 if !read.is_empty() => read[0].0 = g.index(),
                _ => {}
            }
            HypervisorReply::BlocksRead(read)
        }
        HypervisorAsk::Committed => HypervisorReply::SnapshotCommitted,
        HypervisorAsk::VmCreated => HypervisorReply::VmCreated,
        HypervisorAsk::Written => HypervisorReply::BlocksWritten,
        HypervisorAsk::Done | HypervisorAsk::Oversized => HypervisorReply::Done,
    }
}

/// A manifest no role wrote: a store that recovers garbage.
fn manifest(g: &mut Gen) -> Manifest {
    let disks = (0..g.below(3))
        .map(|index| {
            let block_size = g.block_size();
            let count = g.below(64);
            DiskManifest {
                index: if g.chance(90) { index as u16 } else { g.disk() },
                bytes: if g.chance(70) { count as u64 * u64::from(block_size.bytes()) } else { g.bytes() },
                change_id: None,
                block_size,
                digests: Arc::from((0..count).map(|_| g.digest()).collect::<Vec<_>>()),
            }
        })
        .collect();
    Manifest {
        point: RestorePointId(g.num(Key::Point)),
        job: JobId(g.u32(Key::Job)),
        session: SessionId(g.num(Key::Session)),
        vm: VmId(g.u32(Key::Vm)),
        snapshot_at: Timestamp::ZERO + Duration::from_secs(g.rng.random_range(0..1 << 32)),
        snapshot: SnapshotId(g.num(Key::Snap)),
        parent: None,
        disks,
    }
}
