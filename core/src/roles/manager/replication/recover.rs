//! Rebuilding the replica catalog after the manager (re)starts: each
//! metadata repository lists the replica points it holds metadata for;
//! they become the replicas' points again, oldest first, with the source
//! CBT ids they were synced at, so syncs go on as incrementals.

use super::{Manager, Replica, ReplicaPoint, ReplicaState};
use crate::config::JobKind;
use crate::ids::NodeId;
use crate::manifest::PointHeader;
use crate::wire::Message;
use std::collections::VecDeque;

impl Manager {
    /// Asks every metadata repository for its replica points.
    pub(in crate::roles::manager) fn list_replica_points(&mut self) {
        let repositories: std::collections::BTreeSet<NodeId> = self
            .cfg
            .jobs
            .iter()
            .filter_map(|j| match &j.kind {
                JobKind::Replication(r) => Some(r.metadata_repository),
                JobKind::Backup(_) => None,
            })
            .collect();
        for repository in repositories {
            self.ids.op += 1;
            self.out.send(repository, Message::ListReplicaPoints { op: self.ids.op });
            self.replication.listing.insert(repository);
        }
    }

    /// Every metadata repository has listed its replica points.
    pub(in crate::roles::manager) fn replica_catalog_listed(&self) -> bool {
        self.replication.listing.is_empty()
    }

    pub(super) fn on_replica_points(&mut self, repository: NodeId, mut points: Vec<PointHeader>) {
        if !self.replication.listing.remove(&repository) {
            return;
        }
        points.sort_by_key(|p| (p.snapshot_at, p.point));
        for header in &points {
            self.ids.above(header);
        }
        for header in points {
            let Some(r) = self.replication_job(header.job).cloned() else { continue };
            // Only the VMs the job replicates: a listing cannot make the
            // manager hold replicas of anything else.
            if r.metadata_repository != repository || !self.job(header.job).is_some_and(|j| j.vms.contains(&header.vm)) {
                continue;
            }
            let (job, vm) = (header.job, header.vm);
            let replica = self.replication.replicas.entry((job, vm)).or_insert_with(|| Replica {
                vm: r.replica_of(vm),
                created: true,
                first: None,
                points: VecDeque::new(),
                state: ReplicaState::Ready,
            });
            if replica.points.iter().any(|p| p.point == header.point) {
                continue;
            }
            replica.points.push_back(ReplicaPoint {
                point: header.point,
                snap: header.snapshot,
                change_ids: header.disks.iter().map(|d| d.change_id).collect(),
                metadata: true,
            });
        }
        let keys: Vec<_> = self.replication.replicas.keys().copied().collect();
        for (job, vm) in keys {
            self.retire_replica_points(job, vm);
        }
        // Jobs wait for the whole catalog (bounded by `CATALOG_WAIT`).
        if self.catalog_pending.is_empty() && self.replica_catalog_listed() {
            self.start_scheduling();
        }
    }
}
