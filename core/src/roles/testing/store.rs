//! A repository's store in memory, honest about durability: what a crash
//! keeps is what the contract of [`StorageOp`] says is durable, so a test
//! that restarts a repository sees what a real restart would leave.
//!
//! Two views, as the simulator's store keeps them: the *live* one answers
//! requests; the *durable* one is what survives [`MemStore::crash`].
//! Block puts and deletes and manifest deletes reach the durable view only
//! at the next `Sync`; manifests and replica metadata are durable at once
//! (written atomically). Every request completes at once, in order.

use crate::block::Digest;
use crate::ids::RestorePointId;
use crate::manifest::Manifest;
use crate::payload::BlockPayload;
use crate::storage::{StorageError, StorageOp, StorageReply};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, Clone)]
struct View {
    blocks: BTreeMap<Digest, BlockPayload>,
    manifests: BTreeMap<RestorePointId, Manifest>,
    replica: BTreeMap<RestorePointId, Manifest>,
}

impl View {
    /// Applies a change that needs no answer.
    fn apply(&mut self, op: &StorageOp) {
        match op {
            StorageOp::PutBlocks(payloads) => {
                self.blocks.extend(payloads.iter().map(|p| (p.digest(), p.clone())));
            }
            StorageOp::DeleteBlocks(digests) => digests.iter().for_each(|d| _ = self.blocks.remove(d)),
            StorageOp::PutManifest(m) => _ = self.manifests.insert(m.point, m.clone()),
            StorageOp::DeleteManifest(point) => _ = self.manifests.remove(point),
            StorageOp::PutReplicaMetadata(m) => _ = self.replica.insert(m.point, m.clone()),
            StorageOp::DeleteReplicaMetadata(point) => _ = self.replica.remove(point),
            StorageOp::Sync | StorageOp::GetBlocks(_) | StorageOp::Recover | StorageOp::RecoverReplicaMetadata => {}
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct MemStore {
    live: View,
    durable: View,
    /// Changes made live since the last `Sync`, oldest first.
    journal: Vec<StorageOp>,
    /// Writes are refused as if the disk were full.
    pub full: bool,
}

impl MemStore {
    /// Carries out one request.
    pub fn serve(&mut self, op: StorageOp) -> Result<StorageReply, StorageError> {
        match op {
            StorageOp::PutBlocks(_) if self.full => return Err(StorageError::Full),
            StorageOp::GetBlocks(digests) => {
                let read = |d: &Digest| self.live.blocks.get(d).cloned().ok_or(StorageError::Missing(*d));
                return Ok(StorageReply::Blocks(digests.iter().map(read).collect()));
            }
            StorageOp::Recover => {
                let manifests = self.live.manifests.values().cloned().collect();
                return Ok(StorageReply::Recovered { manifests, blocks: self.live.blocks.keys().copied().collect() });
            }
            StorageOp::RecoverReplicaMetadata => return Ok(StorageReply::ReplicaMetadata(self.live.replica.values().cloned().collect())),
            StorageOp::Sync => self.journal.drain(..).for_each(|op| self.durable.apply(&op)),
            // Atomic and durable on their own.
            StorageOp::PutManifest(_) | StorageOp::PutReplicaMetadata(_) | StorageOp::DeleteReplicaMetadata(_) => {
                self.live.apply(&op);
                self.durable.apply(&op);
            }
            StorageOp::PutBlocks(_) | StorageOp::DeleteBlocks(_) | StorageOp::DeleteManifest(_) => {
                self.live.apply(&op);
                self.journal.push(op);
            }
        }
        Ok(StorageReply::Done)
    }

    /// The machine went down: what was not durable is gone.
    pub fn crash(&mut self) {
        self.journal.clear();
        self.live = self.durable.clone();
    }

    /// The digests of every block in the store.
    pub fn digests(&self) -> BTreeSet<Digest> {
        self.live.blocks.keys().copied().collect()
    }

    pub fn block(&self, digest: &Digest) -> Option<&BlockPayload> {
        self.live.blocks.get(digest)
    }

    /// The committed manifests, by point.
    pub fn manifests(&self) -> &BTreeMap<RestorePointId, Manifest> {
        &self.live.manifests
    }

    /// Every non-zero digest a manifest references.
    pub fn referenced(&self) -> BTreeSet<Digest> {
        self.live.manifests.values().flat_map(Manifest::referenced).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Compression;
    use crate::payload::{BlockData, encode};

    fn payload(byte: u8) -> BlockPayload {
        encode(&BlockData::Bytes(vec![byte; 4096]), Compression::Optimal)
    }

    /// What a crash keeps: synced puts and deletes, and manifests; never a
    /// put or a delete after the last sync.
    #[test]
    fn a_crash_keeps_what_was_synced_and_nothing_after() {
        let mut store = MemStore::default();
        let (a, b) = (payload(1), payload(2));
        store.serve(StorageOp::PutBlocks(vec![a.clone()])).expect("put");
        store.serve(StorageOp::Sync).expect("sync");
        store.serve(StorageOp::PutBlocks(vec![b.clone()])).expect("put");
        store.serve(StorageOp::DeleteBlocks(vec![a.digest()])).expect("delete");
        assert_eq!(store.digests(), BTreeSet::from([b.digest()]));
        store.crash();
        assert_eq!(store.digests(), BTreeSet::from([a.digest()]), "the unsynced put and delete are lost");
        match store.serve(StorageOp::GetBlocks(vec![a.digest(), b.digest()])) {
            Ok(StorageReply::Blocks(read)) => assert_eq!(read, [Ok(a), Err(StorageError::Missing(b.digest()))]),
            other => panic!("{other:?}"),
        }
    }
}
