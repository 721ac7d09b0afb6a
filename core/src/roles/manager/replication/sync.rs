//! One replication session: per VM, a sync of its replica.
//!
//! snapshot the source → prepare the replica → disk tasks → snapshot the
//! replica (the new point) → commit the metadata → retention → wind down.
//!
//! Preparing: a replica with points is reverted to its newest one (a no-op
//! unless an earlier sync was interrupted); a new one is created empty, and
//! then filled by the sync or restored from the seed backup, or — mapping —
//! is the mapped VM. Seeded
//! and mapped replicas are then snapshotted as they are: that snapshot is
//! read by the target proxy to hash what the replica holds, and becomes the
//! replica's first point (seed or mapped state) beside the synced one.
//!
//! Winding down, in order: on failure, revert the replica to its newest
//! point (so a failed sync never leaves it damaged) and abort the pending
//! metadata; drop a snapshot taken only for hashing; release the source
//! snapshot.

use super::{Manager, ReplicaOp, ReplicaOrigin, ReplicaPoint, ReplicaState, ReplicaWork};
use crate::event::Event;
use crate::hypervisor::SnapshotDisk;
use crate::ids::{JobId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::manifest::{PointDisk, PointHeader};
use crate::roles::manager::{Op, Task, TaskKind};
use crate::time::Timestamp;
use crate::wire::Message;
use std::collections::BTreeMap;

/// Where a VM's sync is, as far as answers go.
#[derive(Debug, Clone, Copy)]
pub(in crate::roles::manager) enum SyncStep {
    SourceSnapshot,
    CreateReplica,
    /// A mapped VM is powered off before it is adopted.
    MapPowerOff,
    Revert,
    BaseSnapshot,
    PointSnapshot,
    CommitInitial,
    CommitPoint,
    RollBack,
    DropBase,
    Release,
}

#[derive(Debug)]
pub(super) struct SyncSession {
    pub(super) job: JobId,
    /// 0 for the job's first session.
    pub(super) run: u64,
    pub(super) vms: BTreeMap<VmId, SyncRun>,
}

/// A snapshot of the replica taken before the sync: read to hash what the
/// replica holds and, with an origin, kept as its first point.
#[derive(Debug, Clone, Copy)]
pub(super) struct Base {
    pub(super) snap: Option<SnapshotId>,
    pub(super) at: Timestamp,
    pub(super) origin: Option<ReplicaOrigin>,
}

#[derive(Debug, Default)]
pub(super) struct SyncRun {
    done: bool,
    pub(super) snap: Option<SnapshotId>,
    pub(super) disks: Vec<SnapshotDisk>,
    snapshot_at: Timestamp,
    pub(super) base: Option<Base>,
    /// The replica was just created empty.
    pub(super) full: bool,
    pub(super) point: Option<RestorePointId>,
    pub(super) initial: Option<RestorePointId>,
    point_snap: Option<SnapshotId>,
    pub(super) open_tasks: u32,
    commits: u32,
    metadata: (bool, bool),
    rolled_back: bool,
    pub(super) failure: Option<String>,
}

impl Manager {
    /// Starts a replication session (the session is already counted as
    /// running and announced).
    pub(in crate::roles::manager) fn start_replication_session(&mut self, job: JobId, session: SessionId, run: u64, vms: Vec<VmId>) {
        let runs = vms.iter().map(|vm| (*vm, SyncRun::default())).collect();
        self.replication.sessions.insert(session, SyncSession { job, run, vms: runs });
        for vm in vms {
            match self.sync_blocker(job, vm) {
                Some(reason) => self.skip_vm(session, vm, reason),
                None => {
                    if let Some(replica) = self.replica(job, vm) {
                        replica.state = ReplicaState::Syncing(session);
                    }
                    let host = self.source_host(vm);
                    let op = self.op(host, Op::Replica(ReplicaOp::Sync { session, vm, step: SyncStep::SourceSnapshot }));
                    self.out.send(host, Message::CreateSnapshot { op, vm });
                }
            }
        }
    }

    /// Why the VM cannot be synced in this session, if it cannot.
    fn sync_blocker(&mut self, job: JobId, vm: VmId) -> Option<String> {
        if !self.cfg.vms.contains_key(&vm) {
            return Some(format!("{vm} is not in the configuration"));
        }
        let r = self.replication_job(job)?.clone();
        if self.replication.listing.contains(&r.metadata_repository) {
            // Ask again (the repository may have been unable to answer).
            self.ids.op += 1;
            self.out.send(r.metadata_repository, Message::ListReplicaPoints { op: self.ids.op });
            return Some("the replica catalog is being rebuilt from the metadata repository".into());
        }
        let replica = self.replica(job, vm)?;
        if let Some(reason) = replica.state.blocks_sync() {
            return Some(reason.to_string());
        }
        let seeded = !replica.created && !r.map.contains_key(&vm) && r.seed_from.is_some();
        if let (true, Some(seed_job)) = (seeded, r.seed_from)
            && self.catalog.newest(seed_job, vm).is_none()
        {
            let name = self.job(seed_job).map_or_else(|| seed_job.to_string(), |j| j.name.clone());
            let vm_name = self.cfg.vms.get(&vm).map_or_else(|| vm.to_string(), |v| v.name.clone());
            return Some(format!("the job seeds replicas, and seed job {name:?} has no backup of {vm_name} yet"));
        }
        None
    }

    fn skip_vm(&mut self, session: SessionId, vm: VmId, reason: String) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        self.out.event(Event::VmSkipped { job, session, vm, reason });
        self.finish_sync_vm(session, vm);
    }

    fn sync_run(&mut self, session: SessionId, vm: VmId) -> Option<&mut SyncRun> {
        self.replication.sessions.get_mut(&session)?.vms.get_mut(&vm)
    }

    fn send_sync(&mut self, session: SessionId, vm: VmId, step: SyncStep, to: crate::ids::NodeId, msg: impl FnOnce(u64) -> Message) {
        let op = self.op(to, Op::Replica(ReplicaOp::Sync { session, vm, step }));
        self.out.send(to, msg(op));
    }

    pub(super) fn on_sync_answer(&mut self, session: SessionId, vm: VmId, step: SyncStep, answer: super::HostAnswer) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let now = self.now;
        let Some(run) = self.sync_run(session, vm) else { return };
        match (step, answer) {
            (SyncStep::SourceSnapshot, Ok((snap, disks))) => {
                (run.snap, run.disks, run.snapshot_at) = (Some(snap), disks, now);
                let host = self.source_host(vm);
                self.out.event(Event::SnapshotTaken { job, session, vm, host, snap });
                self.prepare_replica(session, vm);
            }
            (SyncStep::CreateReplica, Ok(_)) => {
                let Some(r) = self.replication_job(job).cloned() else { return };
                let Some(replica) = self.replica(job, vm) else { return };
                replica.created = true;
                let replica_vm = replica.vm;
                // A seeded replica receives its seed only now that the host
                // said the VM is new (so empty): a seed restored over an
                // older replica a restarted manager forgot would keep that
                // replica's blocks wherever the seed holds zeros.
                match r.seed_from.and_then(|seed| self.catalog.newest(seed, vm)).map(|p| p.point) {
                    Some(point) => {
                        let name = self.seed_name(vm);
                        self.start_seed_restore(point, r.target_host, r.target_proxy, replica_vm, name, (session, vm));
                    }
                    None => {
                        if let Some(run) = self.sync_run(session, vm) {
                            run.full = true;
                        }
                        self.start_sync_tasks(session, vm);
                    }
                }
            }
            (SyncStep::Revert, Ok(_)) => self.start_sync_tasks(session, vm),
            (SyncStep::MapPowerOff, Ok(_)) => {
                self.snapshot_base(session, vm, Some(Base { snap: None, at: Timestamp::ZERO, origin: Some(ReplicaOrigin::Mapped) }))
            }
            (SyncStep::CreateReplica, Err(reason)) => {
                // It may exist already (a restarted manager forgot it): the
                // next session hashes what is there instead.
                if let Some(replica) = self.replica(job, vm) {
                    replica.created = true;
                }
                self.fail_sync(session, vm, format!("creating the replica failed: {reason}"));
            }
            (SyncStep::BaseSnapshot, Err(reason)) => {
                if let Some(replica) = self.replica(job, vm)
                    && replica.points.is_empty()
                    && replica.first.is_none()
                {
                    // Nothing known to be there: create it next time.
                    replica.created = false;
                }
                self.fail_sync(session, vm, format!("snapshotting the replica failed: {reason}"));
            }
            (SyncStep::BaseSnapshot, Ok((snap, _))) => {
                if let Some(base) = &mut run.base {
                    (base.snap, base.at) = (Some(snap), now);
                }
                self.start_sync_tasks(session, vm);
            }
            (SyncStep::PointSnapshot, Ok((snap, _))) => {
                run.point_snap = Some(snap);
                self.commit_replica_points(session, vm);
            }
            (SyncStep::CommitInitial | SyncStep::CommitPoint, result) => {
                let ok = result.is_ok();
                if matches!(step, SyncStep::CommitInitial) {
                    run.metadata.0 = ok;
                } else {
                    run.metadata.1 = ok;
                }
                run.commits = run.commits.saturating_sub(1);
                if run.commits == 0 {
                    self.replica_points_committed(session, vm);
                }
            }
            (SyncStep::RollBack | SyncStep::DropBase, _) => self.wind_down(session, vm),
            (SyncStep::Release, result) => {
                if let Err(reason) = result
                    && run.failure.is_none()
                {
                    run.failure = Some(format!("the source snapshot could not be removed: {reason}"));
                }
                run.snap = None;
                self.wind_down(session, vm);
            }
            (SyncStep::SourceSnapshot, Err(reason)) => {
                run.failure = Some(format!("snapshot failed: {reason}"));
                self.wind_down(session, vm);
            }
            (step, Err(reason)) => {
                run.failure = Some(format!("{step:?} on the target host failed: {reason}"));
                self.wind_down(session, vm);
            }
        }
    }

    fn prepare_replica(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(r) = self.replication_job(job).cloned() else { return };
        let Some(replica) = self.replica(job, vm) else { return };
        let (replica_vm, created, first, newest) = (replica.vm, replica.created, replica.first, replica.points.back().map(|p| p.snap));
        let host = r.target_host;
        let base = |origin| Some(Base { snap: None, at: Timestamp::ZERO, origin });
        match (created, newest) {
            (true, Some(snap)) => self.send_sync(session, vm, SyncStep::Revert, host, |op| Message::RevertVm { op, snap }),
            // No point yet (the first sync failed): hash what it holds.
            (true, None) => self.snapshot_base(session, vm, base(first)),
            (false, _) if r.map.contains_key(&vm) => {
                if let Some(replica) = self.replica(job, vm) {
                    (replica.created, replica.first) = (true, Some(ReplicaOrigin::Mapped));
                }
                // A replica never runs its own guest: stop it before it is
                // read, so what is hashed is what stays.
                self.send_sync(session, vm, SyncStep::MapPowerOff, host, |op| Message::SetPower { op, vm: replica_vm, on: false });
            }
            // New, or seeded once created (see the answer to `CreateReplica`).
            (false, _) => {
                let disks = self.sync_run(session, vm).map(|run| run.disks.iter().map(|d| d.bytes).collect()).unwrap_or_default();
                let name = self.seed_name(vm);
                self.send_sync(session, vm, SyncStep::CreateReplica, host, |op| Message::CreateVm { op, vm: replica_vm, name, disks });
            }
        }
    }

    fn seed_name(&self, vm: VmId) -> String {
        format!("{}_replica", self.cfg.vms.get(&vm).map_or_else(|| vm.to_string(), |v| v.name.clone()))
    }

    /// The seed backup was restored onto the new replica (or not).
    pub(in crate::roles::manager) fn seed_restored(
        &mut self,
        session: SessionId,
        vm: VmId,
        point: RestorePointId,
        result: Result<(), String>,
    ) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        match result {
            Ok(()) => {
                let origin = Some(ReplicaOrigin::Seed { point });
                if let Some(replica) = self.replica(job, vm) {
                    (replica.created, replica.first) = (true, origin);
                }
                self.snapshot_base(session, vm, Some(Base { snap: None, at: Timestamp::ZERO, origin }));
            }
            Err(reason) => {
                // The VM may exist, part restored: hash it next time.
                if let Some(replica) = self.replica(job, vm) {
                    replica.created = true;
                }
                self.fail_sync(session, vm, format!("restoring the seed {point} failed: {reason}"));
            }
        }
    }

    fn snapshot_base(&mut self, session: SessionId, vm: VmId, base: Option<Base>) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(host) = self.replication_job(job).map(|r| r.target_host) else { return };
        let Some(replica_vm) = self.replica(job, vm).map(|r| r.vm) else { return };
        if let Some(run) = self.sync_run(session, vm) {
            run.base = base;
        }
        self.send_sync(session, vm, SyncStep::BaseSnapshot, host, |op| Message::CreateSnapshot { op, vm: replica_vm });
    }

    /// The replica is ready: one task per disk.
    fn start_sync_tasks(&mut self, session: SessionId, vm: VmId) {
        let now = self.now;
        self.ids.point += 1;
        let point = RestorePointId(self.ids.point);
        let initial = self.sync_run(session, vm).and_then(|r| r.base).and_then(|b| b.origin).map(|_| ());
        let initial = initial.map(|()| {
            self.ids.point += 1;
            RestorePointId(self.ids.point)
        });
        let Some(run) = self.sync_run(session, vm) else { return };
        (run.point, run.initial) = (Some(point), initial);
        let count = run.disks.len();
        run.open_tasks = count as u32;
        if count == 0 {
            return self.vm_synced(session, vm);
        }
        for disk in 0..count {
            self.ids.task += 1;
            let task = TaskId(self.ids.task);
            let kind = TaskKind::Replica(ReplicaWork::Sync { session, vm });
            self.tasks.insert(task, Task { kind, disk: disk as u16, attempt: 1, proxy: None });
            self.scheduler.enqueue(task, now);
        }
        self.schedule();
    }

    /// Every disk task ended for good.
    pub(super) fn vm_synced(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(host) = self.replication_job(job).map(|r| r.target_host) else { return };
        let Some(replica_vm) = self.replica(job, vm).map(|r| r.vm) else { return };
        match self.sync_run(session, vm).map(|r| r.failure.is_some()) {
            // A planted bug: success without a replica point.
            Some(false) if self.planted.no_replica_points => self.wind_down(session, vm),
            Some(false) => self.send_sync(session, vm, SyncStep::PointSnapshot, host, |op| Message::CreateSnapshot { op, vm: replica_vm }),
            Some(true) => self.wind_down(session, vm),
            None => {}
        }
    }

    /// The replica holds the new point: make its metadata (and the initial
    /// point's) durable.
    fn commit_replica_points(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(repo) = self.replication_job(job).map(|r| r.metadata_repository) else { return };
        let parent = self.replica(job, vm).and_then(|r| r.points.back()).map(|p| p.point);
        let Some(run) = self.sync_run(session, vm) else { return };
        let (Some(point), Some(point_snap)) = (run.point, run.point_snap) else { return };
        let disks = |with_ids: bool| -> Vec<PointDisk> {
            (0u16..)
                .zip(&run.disks)
                .map(|(index, d)| PointDisk { index, bytes: d.bytes, change_id: d.change_id.filter(|_| with_ids) })
                .collect()
        };
        let mut headers = Vec::new();
        if let (Some(initial), Some(Base { snap: Some(snap), at, .. })) = (run.initial, run.base) {
            let header = PointHeader { point: initial, job, session, vm, snapshot_at: at, snapshot: snap, parent, disks: disks(false) };
            headers.push((SyncStep::CommitInitial, header));
        }
        let parent = run.initial.or(parent);
        let header =
            PointHeader { point, job, session, vm, snapshot_at: run.snapshot_at, snapshot: point_snap, parent, disks: disks(true) };
        headers.push((SyncStep::CommitPoint, header));
        run.commits = headers.len() as u32;
        for (step, header) in headers {
            self.send_sync(session, vm, step, repo, |op| Message::CommitReplicaPoint { op, header });
        }
    }

    fn replica_points_committed(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(run) = self.sync_run(session, vm) else { return };
        let disk_bytes: Vec<u64> = run.disks.iter().map(|d| d.bytes).collect();
        let mut points = Vec::new();
        if let (Some(initial), Some(Base { snap: Some(snap), origin: Some(origin), .. })) = (run.initial, run.base) {
            let none = vec![None; disk_bytes.len()];
            points.push((ReplicaPoint { point: initial, snap, change_ids: none, metadata: run.metadata.0 }, origin));
            // It is a point now: not a snapshot to drop.
            run.base = None;
        }
        let (Some(point), Some(snap), Some(source)) = (run.point, run.point_snap, run.snap) else { return };
        let change_ids = run.disks.iter().map(|d| d.change_id).collect();
        let origin = ReplicaOrigin::Source { snap: source };
        points.push((ReplicaPoint { point, snap, change_ids, metadata: run.metadata.1 }, origin));
        self.add_replica_points(job, session, vm, points);
        self.retire_replica_points(job, vm);
        self.wind_down(session, vm);
    }

    /// Appends points to a replica, announcing each with what it holds.
    pub(super) fn add_replica_points(&mut self, job: JobId, session: SessionId, vm: VmId, points: Vec<(ReplicaPoint, ReplicaOrigin)>) {
        let Some(replica) = self.replica(job, vm) else { return };
        let replica_vm = replica.vm;
        replica.points.extend(points.iter().map(|(p, _)| p.clone()));
        for (p, origin) in points {
            self.out.event(Event::ReplicaPointCommitted {
                job,
                session,
                vm,
                replica: replica_vm,
                point: p.point,
                snap: p.snap,
                origin,
                metadata: p.metadata,
            });
        }
    }

    fn fail_sync(&mut self, session: SessionId, vm: VmId, reason: String) {
        if let Some(run) = self.sync_run(session, vm)
            && run.failure.is_none()
        {
            run.failure = Some(reason);
        }
        self.wind_down(session, vm);
    }

    /// The clean-up steps, one answer at a time (see the module docs).
    pub(super) fn wind_down(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.replication.sessions.get(&session).map(|s| s.job) else { return };
        let Some(r) = self.replication_job(job).cloned() else { return };
        let newest = self.replica(job, vm).and_then(|rep| rep.points.back()).map(|p| p.snap);
        let source_host = self.source_host(vm);
        let Some(run) = self.sync_run(session, vm) else { return };
        if run.failure.is_some() && !run.rolled_back {
            run.rolled_back = true;
            for point in [run.point, run.initial].into_iter().flatten() {
                self.out.send(r.metadata_repository, Message::AbortReplicaPoint { point });
            }
            let Some(run) = self.sync_run(session, vm) else { return };
            let seeded_state = run.base.filter(|b| b.origin.is_some()).and_then(|b| b.snap);
            // Nothing was written before tasks started: no revert needed.
            if let (true, Some(snap)) = (run.point.is_some(), newest.or(seeded_state)) {
                return self.send_sync(session, vm, SyncStep::RollBack, r.target_host, |op| Message::RevertVm { op, snap });
            }
        }
        let Some(run) = self.sync_run(session, vm) else { return };
        if let Some(snap) = run.base.take().and_then(|b| b.snap) {
            return self.send_sync(session, vm, SyncStep::DropBase, r.target_host, |op| Message::CommitSnapshot { op, snap });
        }
        if let Some(snap) = run.snap {
            return self.send_sync(session, vm, SyncStep::Release, source_host, |op| Message::CommitSnapshot { op, snap });
        }
        self.finish_sync_vm(session, vm);
    }

    fn finish_sync_vm(&mut self, session: SessionId, vm: VmId) {
        let Some(s) = self.replication.sessions.get_mut(&session) else { return };
        let job = s.job;
        let Some(run) = s.vms.get_mut(&vm) else { return };
        if run.done {
            return;
        }
        run.done = true;
        let result = run.failure.clone().map_or(Ok(()), Err);
        if let Some(replica) = self.replication.replicas.get_mut(&(job, vm))
            && replica.state == ReplicaState::Syncing(session)
        {
            replica.state = ReplicaState::Ready;
        }
        self.out.event(Event::VmFinished { job, session, vm, result });
        self.start_queued_actions(vm);
        let Some(s) = self.replication.sessions.get(&session) else { return };
        if s.vms.values().all(|r| r.done) {
            let ok = s.vms.values().all(|r| r.failure.is_none());
            self.replication.sessions.remove(&session);
            self.running.remove(&job);
            self.out.event(Event::SessionFinished { job, session, ok });
        }
    }
}
