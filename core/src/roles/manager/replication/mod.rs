//! Replication jobs, driven by the manager (an `impl Manager` like
//! `restore`): keeping a replica VM on a DR host in sync with its source,
//! with restore points, seeding, mapping, failover and failback.
//!
//! * A **replica** is a VM on the job's target host: `replica_of(vm)` —
//!   new (id `REPLICA_VM_BASE` + source id), restored from a seed backup,
//!   or a mapped VM adopted as is. Its **restore points** are hypervisor
//!   snapshots of it that are never merged until retention drops them, so
//!   reverting to one (before every sync, after a failed one, at failover)
//!   is the host's business and never touches the others. Their digest
//!   vectors (**replica metadata**) go to the job's metadata repository.
//! * A **sync** (one per VM per session, `sync`): snapshot the source;
//!   prepare the replica (revert it to its newest point — dropping whatever
//!   an interrupted sync left —, or create it, restore the seed onto it, or
//!   snapshot the mapped VM); one task per disk from the source proxy to
//!   the target proxy (`tasks`); snapshot the replica as the new point;
//!   commit the metadata; retention; release the source snapshot.
//! * **Actions** (`failover`) come from the operator: failover, undo,
//!   failback, commit or undo it, permanent failover. A VM whose replica is
//!   failed over is skipped by its job's sessions until it is back.
//! * A (re)started manager **rebuilds** its replica points from the replica
//!   metadata the repositories list (`recover`); until its metadata
//!   repository has answered, a job skips its VMs. What it cannot rebuild:
//!   a failover in progress (the replica is then treated as in normal
//!   replication), and points whose metadata was never stored.

mod failover;
mod recover;
mod sync;
mod tasks;

use super::Manager;
use crate::event::ReplicaOrigin;
use crate::hypervisor::SnapshotDisk;
use crate::ids::{ChangeId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, VmId};
use crate::wire::Message;
use std::collections::{BTreeMap, VecDeque};

pub(super) use failover::ActStep;
pub(super) use sync::SyncStep;

/// What a replication operation's answer continues (inside `Op`).
#[derive(Debug, Clone, Copy)]
pub(super) enum ReplicaOp {
    Sync {
        session: SessionId,
        vm: VmId,
        step: SyncStep,
    },
    Action {
        action: u64,
        step: ActStep,
    },
    /// Retention: a replica point's snapshot (`snap`) or, with `None`,
    /// its metadata going away.
    Retire {
        job: JobId,
        vm: VmId,
        point: RestorePointId,
        snap: Option<SnapshotId>,
    },
}

/// What a replica disk task works for (inside `TaskKind`).
#[derive(Debug, Clone, Copy)]
pub(super) enum ReplicaWork {
    Sync { session: SessionId, vm: VmId },
    Failback { action: u64 },
}

/// The manager's replication state: replicas, sessions, actions.
#[derive(Debug, Default)]
pub(super) struct Replication {
    replicas: BTreeMap<(JobId, VmId), Replica>,
    sessions: BTreeMap<SessionId, sync::SyncSession>,
    actions: BTreeMap<u64, failover::ActionRun>,
    /// Actions waiting for their VM's sync to end.
    queued: Vec<failover::Request>,
    next_action: u64,
    /// Metadata repositories whose replica points are not listed yet.
    listing: std::collections::BTreeSet<NodeId>,
    /// Operations whose peer went away before it answered, asked again
    /// when it is back (see [`Manager::replica_op_lost`]).
    asked_again: Vec<(NodeId, ReplicaOp)>,
}

/// One replicated VM of a job.
#[derive(Debug)]
struct Replica {
    vm: VmId,
    /// The VM exists on the target host.
    created: bool,
    /// What a seeded or mapped replica held before its first sync: kept as
    /// its first point (again, should that sync fail).
    first: Option<ReplicaOrigin>,
    points: VecDeque<ReplicaPoint>,
    state: ReplicaState,
}

/// A replica restore point.
#[derive(Debug, Clone)]
struct ReplicaPoint {
    point: RestorePointId,
    /// The replica's snapshot on the target host that holds the point.
    snap: SnapshotId,
    /// Per disk, the source's CBT id this point is in sync with (`None`:
    /// the next sync compares digests).
    change_ids: Vec<Option<ChangeId>>,
    /// Its digest vectors are stored at the metadata repository.
    metadata: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplicaState {
    /// Normal: syncs run.
    Ready,
    /// A sync of this session is working on it.
    Syncing(SessionId),
    /// An operator action is under way.
    Acting,
    FailedOver(failover::FailedOver),
    FailedBack(failover::FailedBack),
    /// The replica became the production VM; the job no longer handles it.
    Permanent,
}

impl ReplicaState {
    /// Why a sync cannot run now, if it cannot.
    fn blocks_sync(&self) -> Option<&'static str> {
        match self {
            ReplicaState::Ready => None,
            ReplicaState::Syncing(_) => Some("a sync of its replica is still running"),
            ReplicaState::Acting => Some("an operator action on its replica is under way"),
            ReplicaState::FailedOver(_) => Some("its replica is failed over"),
            ReplicaState::FailedBack(_) => Some("its replica is failed back, awaiting commit or undo"),
            ReplicaState::Permanent => Some("its replica was permanently failed over"),
        }
    }
}

/// A host's snapshot answer, or the failure.
pub(super) type HostAnswer = Result<(SnapshotId, Vec<SnapshotDisk>), String>;

impl Manager {
    fn replication_job(&self, job: JobId) -> Option<&crate::config::ReplicationJob> {
        self.job(job).and_then(|j| match &j.kind {
            crate::config::JobKind::Replication(r) => Some(r),
            crate::config::JobKind::Backup(_) => None,
        })
    }

    /// The replica record of a job's VM, made on first use.
    fn replica(&mut self, job: JobId, vm: VmId) -> Option<&mut Replica> {
        let replica_vm = self.replication_job(job)?.replica_of(vm);
        let replicas = &mut self.replication.replicas;
        Some(replicas.entry((job, vm)).or_insert_with(|| Replica {
            vm: replica_vm,
            created: false,
            first: None,
            points: VecDeque::new(),
            state: ReplicaState::Ready,
        }))
    }

    fn source_host(&self, vm: VmId) -> NodeId {
        self.cfg.vms.get(&vm).map_or(NodeId(u32::MAX), |v| v.host)
    }

    /// An answer to a replication operation.
    pub(super) fn on_replica_answer(&mut self, op: ReplicaOp, answer: HostAnswer) {
        match op {
            ReplicaOp::Sync { session, vm, step } => self.on_sync_answer(session, vm, step, answer),
            ReplicaOp::Action { action, step } => self.on_action_answer(action, step, answer),
            ReplicaOp::Retire { job, vm, point, snap } => {
                // The snapshot removal decides; the metadata is only
                // bookkeeping (an orphan vector is harmless).
                if snap.is_some() {
                    let result = answer.map(|_| ());
                    self.out.event(crate::event::Event::ReplicaPointRemoved { job, vm, point, result });
                }
            }
        }
    }

    /// Replication messages the manager receives.
    pub(super) fn on_replication_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::ReplicaPointCommitted { op, result } | Message::ReplicaPointDeleted { op, result } => {
                if let Some((_, super::Op::Replica(r))) = self.ops.remove(&op) {
                    self.on_replica_answer(r, result.map(|()| (SnapshotId(0), Vec::new())));
                }
            }
            Message::ReplicaAction { op, vm, action } => self.request_action(failover::Request { requester: from, op, vm, action }),
            Message::ReplicaPoints { points, .. } => self.on_replica_points(from, points),
            other => self.out.refuse_unhandled(from, "manager's replication", &other),
        }
    }

    /// Drops a job's VM's replica points beyond `restore_points`, oldest
    /// first: the host snapshot goes (events follow its answer) and so does
    /// the metadata.
    fn retire_replica_points(&mut self, job: JobId, vm: VmId) {
        let Some(r) = self.replication_job(job).cloned() else { return };
        let Some(replica) = self.replication.replicas.get_mut(&(job, vm)) else { return };
        let mut retired = Vec::new();
        while replica.points.len() > r.restore_points.max(1) as usize {
            retired.extend(replica.points.pop_front());
        }
        for old in retired {
            self.drop_replica_point(job, vm, &old);
        }
    }

    /// Removes a replica point from the host (and its metadata).
    fn drop_replica_point(&mut self, job: JobId, vm: VmId, old: &ReplicaPoint) {
        let Some(r) = self.replication_job(job).cloned() else { return };
        let point = old.point;
        self.remove_replica_snapshot(r.target_host, ReplicaOp::Retire { job, vm, point, snap: Some(old.snap) });
        if old.metadata {
            let op = self.op(r.metadata_repository, super::Op::Replica(ReplicaOp::Retire { job, vm, point, snap: None }));
            self.out.send(r.metadata_repository, Message::DeleteReplicaPoint { op, point });
        }
    }

    /// Asks `host` to remove a retired point's snapshot.
    fn remove_replica_snapshot(&mut self, host: NodeId, retire: ReplicaOp) {
        let ReplicaOp::Retire { snap: Some(snap), .. } = retire else { return };
        let op = self.op(host, super::Op::Replica(retire));
        self.out.send(host, Message::CommitSnapshot { op, snap });
    }

    /// `peer` went away before answering `op`: it may have been done or
    /// not. Operations that end in the same state however often they run
    /// wait for the peer and are asked again (`true`): a retired point's
    /// snapshot removal (so a replica point is never left half retired),
    /// and an action's power, revert, removal and snapshot steps (so a
    /// broken connection does not fail an operator's failover or failback).
    /// Others fail now (`false`).
    pub(super) fn replica_op_lost(&mut self, peer: NodeId, op: ReplicaOp) -> bool {
        let waits = match op {
            ReplicaOp::Retire { snap, .. } => snap.is_some(),
            ReplicaOp::Action { action, .. } => self.action_step_repeatable(action),
            ReplicaOp::Sync { .. } => false,
        };
        if waits {
            self.replication.asked_again.push((peer, op));
        }
        waits
    }

    /// `peer` is back: what it may have missed is asked again.
    pub(super) fn ask_replica_ops_again(&mut self, peer: NodeId) {
        let (again, keep) = std::mem::take(&mut self.replication.asked_again).into_iter().partition(|(p, _)| *p == peer);
        self.replication.asked_again = keep;
        for (_, op) in again {
            match op {
                ReplicaOp::Retire { .. } => self.remove_replica_snapshot(peer, op),
                ReplicaOp::Action { action, .. } => self.run_steps(action),
                ReplicaOp::Sync { .. } => {}
            }
        }
    }
}
