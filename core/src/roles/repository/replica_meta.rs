//! Replica metadata: the digest vector of every disk of every replica
//! restore point, kept by a repository for replication jobs that name it
//! their metadata repository. The replica's blocks live on the target host,
//! not here: these vectors only let a source proxy without CBT send just
//! the blocks whose digest differs.
//!
//! A point's vector is assembled like a backup point's: the receiving
//! proxy reports, per disk, the base point it built on and the blocks it
//! hashed or wrote (`PutReplicaDisk`, in chunks); the vector stays pending
//! until the manager commits the point, which writes it durably and
//! atomically (`PutReplicaMetadata`) before acknowledging. The vectors are
//! kept apart from backup manifests so they never count as references to
//! blocks this repository does not hold.
//!
//! After a restart they are reloaded lazily, on the first replica request.
//! A (re)started manager lists them to rebuild its replica catalog.

use super::{Continuation, Repository};
use crate::block::{BlockSize, Digest};
use crate::ids::{NodeId, RestorePointId};
use crate::manifest::{DiskManifest, Manifest, PointHeader, apply_changes};
use crate::storage::{StorageError, StorageOp, StorageReply};
use crate::wire::Message;
use crate::wire::message::OpId;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct ReplicaMeta {
    load: Load,
    /// Replica requests that arrived while loading, replayed after.
    held: Vec<(NodeId, Message)>,
    points: BTreeMap<RestorePointId, Manifest>,
    pending: BTreeMap<RestorePointId, BTreeMap<u16, PendingDisk>>,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum Load {
    #[default]
    NotLoaded,
    Loading,
    Loaded,
}

#[derive(Debug)]
struct PendingDisk {
    base: Option<RestorePointId>,
    bytes: u64,
    block_size: BlockSize,
    /// Reported (index, digest) pairs in arrival order: applied in order,
    /// a later report of an index wins.
    changes: Vec<(u64, Digest)>,
    finished: Option<DiskManifest>,
}

/// What a replica metadata storage request continues.
#[derive(Debug)]
pub(super) enum Then {
    Load,
    Commit { peer: NodeId, op: OpId, manifest: Manifest },
    Delete { peer: NodeId, op: OpId, point: RestorePointId },
}

impl Repository {
    /// The committed replica metadata (for inspection and tests).
    pub fn replica_metadata(&self) -> impl Iterator<Item = &Manifest> {
        self.replica.points.values()
    }

    pub(super) fn on_replica_message(&mut self, from: NodeId, msg: Message) {
        match self.replica.load {
            Load::Loaded => {}
            Load::Loading => return self.replica.held.push((from, msg)),
            Load::NotLoaded => {
                self.replica.load = Load::Loading;
                self.replica.held.push((from, msg));
                return self.storage(StorageOp::RecoverReplicaMetadata, Continuation::Replica(Then::Load));
            }
        }
        match msg {
            Message::PutReplicaDisk { task, point, base, disk, bytes, block_size, changes, first, last } => {
                let pending = self.replica.pending.entry(point).or_default();
                let entry =
                    pending.entry(disk).or_insert_with(|| PendingDisk { base, bytes, block_size, changes: Vec::new(), finished: None });
                if first {
                    *entry = PendingDisk { base, bytes, block_size, changes: Vec::new(), finished: None };
                }
                entry.changes.extend(changes);
                if last {
                    let result = self.finish_replica_disk(point, disk);
                    self.out.send(from, Message::DiskFinished { task, result });
                }
            }
            Message::GetReplicaDigests { task, batch, point, disk, blocks } => {
                let result = self.replica_digests(point, disk, &blocks);
                self.out.send(from, Message::Digests { task, batch, result });
            }
            Message::CommitReplicaPoint { op, header } => {
                let point = header.point;
                let assembled = header
                    .disks
                    .iter()
                    .map(|d| {
                        let pending = self.replica.pending.get(&point).and_then(|p| p.get(&d.index));
                        let mut disk = pending.and_then(|p| p.finished.clone()).ok_or_else(|| {
                            format!("replica metadata of {point} disk {} was not reported (the repository may have restarted)", d.index)
                        })?;
                        disk.change_id = d.change_id;
                        Ok(disk)
                    })
                    .collect::<Result<Vec<_>, String>>();
                match assembled {
                    Ok(disks) => {
                        let PointHeader { point, job, session, vm, snapshot_at, snapshot, parent, .. } = header;
                        let manifest = Manifest { point, job, session, vm, snapshot_at, snapshot, parent, disks };
                        let then = Continuation::Replica(Then::Commit { peer: from, op, manifest: manifest.clone() });
                        self.storage(StorageOp::PutReplicaMetadata(manifest), then);
                    }
                    Err(e) => self.out.send(from, Message::ReplicaPointCommitted { op, result: Err(e) }),
                }
            }
            Message::ListReplicaPoints { op } => {
                let points = self.replica.points.values().map(Manifest::header).collect();
                self.out.send(from, Message::ReplicaPoints { op, points });
            }
            Message::AbortReplicaPoint { point } => {
                self.replica.pending.remove(&point);
            }
            Message::DeleteReplicaPoint { op, point } => {
                if self.replica.points.contains_key(&point) {
                    let then = Continuation::Replica(Then::Delete { peer: from, op, point });
                    self.storage(StorageOp::DeleteReplicaMetadata(point), then);
                } else {
                    let result = Err(format!("no replica metadata for {point}"));
                    self.out.send(from, Message::ReplicaPointDeleted { op, result });
                }
            }
            other => self.out.refuse_unhandled(from, "repository's replica metadata", &other),
        }
    }

    pub(super) fn on_replica_storage(&mut self, then: Then, result: Result<StorageReply, StorageError>) {
        match (then, result) {
            (Then::Load, Ok(StorageReply::ReplicaMetadata(manifests))) => {
                self.replica.points = manifests.into_iter().map(|m| (m.point, m)).collect();
                self.replica.load = Load::Loaded;
                for (from, msg) in std::mem::take(&mut self.replica.held) {
                    self.on_replica_message(from, msg);
                }
            }
            (Then::Load, other) => {
                // Without the metadata every request would be answered
                // wrongly: refuse the held ones and try again next time.
                let reason = match other {
                    Ok(reply) => format!("unexpected store reply: {}", reply.kind()),
                    Err(e) => e.to_string(),
                };
                self.replica.load = Load::NotLoaded;
                for (from, msg) in std::mem::take(&mut self.replica.held) {
                    self.refuse_replica(from, msg, &reason);
                }
            }
            (Then::Commit { peer, op, manifest }, result) => {
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                if result.is_ok() {
                    self.replica.pending.remove(&manifest.point);
                    self.replica.points.insert(manifest.point, manifest);
                }
                self.out.send(peer, Message::ReplicaPointCommitted { op, result });
            }
            (Then::Delete { peer, op, point }, result) => {
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                if result.is_ok() {
                    self.replica.points.remove(&point);
                }
                self.out.send(peer, Message::ReplicaPointDeleted { op, result });
            }
        }
    }

    /// Answers a replica request with an error (metadata unavailable).
    fn refuse_replica(&mut self, from: NodeId, msg: Message, reason: &str) {
        let e = format!("replica metadata unavailable: {reason}");
        let answer = match msg {
            Message::PutReplicaDisk { task, last: true, .. } => Message::DiskFinished { task, result: Err(e) },
            Message::GetReplicaDigests { task, batch, .. } => Message::Digests { task, batch, result: Err(e) },
            Message::CommitReplicaPoint { op, .. } => Message::ReplicaPointCommitted { op, result: Err(e) },
            Message::DeleteReplicaPoint { op, .. } => Message::ReplicaPointDeleted { op, result: Err(e) },
            // Nothing listed: the manager keeps waiting, and asks again
            // when it restarts.
            Message::ListReplicaPoints { .. } => return,
            _ => return,
        };
        self.out.send(from, answer);
    }

    /// The full vector of a reported disk: its base's, with the changes.
    fn finish_replica_disk(&mut self, point: RestorePointId, disk: u16) -> Result<(), String> {
        let Some(pending) = self.replica.pending.get(&point).and_then(|p| p.get(&disk)) else {
            return Err(format!("nothing reported for {point} disk {disk}"));
        };
        let count = pending.block_size.blocks_for(pending.bytes) as usize;
        let base = match pending.base {
            None => None,
            Some(base) => {
                let d = self
                    .replica
                    .points
                    .get(&base)
                    .and_then(|m| m.disks.iter().find(|d| d.index == disk))
                    .ok_or_else(|| format!("base replica point {base} disk {disk} has no metadata"))?;
                if d.block_size != pending.block_size {
                    return Err(format!("base {base} uses {} byte blocks, this sync {}", d.block_size.bytes(), pending.block_size.bytes()));
                }
                Some(d.digests.clone())
            }
        };
        let digests = apply_changes(base.as_deref(), count, pending.changes.iter().copied())?;
        let manifest = DiskManifest { index: disk, bytes: pending.bytes, change_id: None, block_size: pending.block_size, digests };
        if let Some(p) = self.replica.pending.get_mut(&point).and_then(|p| p.get_mut(&disk)) {
            p.finished = Some(manifest);
        }
        Ok(())
    }

    fn replica_digests(&self, point: RestorePointId, disk: u16, blocks: &[u64]) -> Result<Vec<Digest>, String> {
        let manifest = self.replica.points.get(&point).ok_or_else(|| format!("no replica metadata for {point}"))?;
        let d = manifest.disks.iter().find(|d| d.index == disk).ok_or_else(|| format!("replica point {point} has no disk {disk}"))?;
        blocks
            .iter()
            .map(|&i| d.digests.get(i as usize).copied().ok_or_else(|| format!("replica point {point} disk {disk} has no block {i}")))
            .collect()
    }
}
