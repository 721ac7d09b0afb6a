//! Replica disk tasks: what the sending proxy is told, and what happens
//! when a task ends. They go through the scheduler like backup tasks
//! (placed on the sending proxy, counted against the metadata repository)
//! and are retried the same way.
//!
//! How a sync decides what to send, per disk:
//! * a new, empty replica: `Full`;
//! * a replica snapshotted before the sync (seeded, mapped, or one whose
//!   first sync failed), or one whose newest point has no metadata: compare
//!   digests with what the target proxy hashes on the replica;
//! * otherwise CBT since the newest point's change id, with the newest
//!   point's metadata as the fallback (and for verification sessions).

use super::{Manager, ReplicaWork};
use crate::event::Event;
use crate::ids::{DiskId, JobId, NodeId, SessionId, TaskId, VmId};
use crate::roles::manager::throttle::Legs;
use crate::roles::manager::{MAX_ATTEMPTS, Task, TaskKind, retry_delay};
use crate::wire::Message;
use crate::wire::message::{BaseDigests, MetadataReport, ReadMode, ReplicaSink, ReplicaTask, TaskStats};

impl Manager {
    /// The proxy a replica task runs on, and the repository it uses.
    pub(in crate::roles::manager) fn replica_needs(&self, work: ReplicaWork) -> (Option<NodeId>, NodeId) {
        let failback = matches!(work, ReplicaWork::Failback { .. });
        match self.replica_work_job(work).and_then(|job| self.replication_job(job)) {
            Some(r) => (Some(if failback { r.target_proxy } else { r.source_proxy }), r.metadata_repository),
            None => (None, NodeId(u32::MAX)),
        }
    }

    /// The replication job a replica task works for.
    fn replica_work_job(&self, work: ReplicaWork) -> Option<JobId> {
        match work {
            ReplicaWork::Sync { session, .. } => self.replication.sessions.get(&session).map(|s| s.job),
            ReplicaWork::Failback { action } => self.replication.actions.get(&action).map(|a| a.job),
        }
    }

    pub(in crate::roles::manager) fn start_replica_task(&mut self, id: TaskId, proxy: NodeId) {
        let Some(task) = self.tasks.get(&id).copied() else { return };
        let TaskKind::Replica(work) = task.kind else { return };
        let built = match work {
            ReplicaWork::Sync { session, vm } => self.sync_task(id, session, vm, task.disk).map(|spec| (session, vm, spec)),
            ReplicaWork::Failback { action } => self.failback_task(id, action, task.disk),
        };
        let Some((session, vm, mut spec)) = built else {
            return self.on_task_done(id, Err("the replica task's session or snapshot is gone".into()));
        };
        let legs = Legs { proxy, source: spec.host, destination: spec.sink.proxy };
        spec.rate = self.throttle_admit(id, legs, self.replica_work_job(work));
        self.out.event(Event::TaskAssigned {
            task: id,
            session,
            disk: DiskId { vm, index: task.disk },
            proxy,
            // Where the task's data goes.
            repository: spec.sink.proxy,
            attempt: task.attempt,
        });
        self.out.send(proxy, Message::StartReplicaTask(Box::new(spec)));
    }

    fn sync_task(&self, id: TaskId, session: SessionId, vm: VmId, disk: u16) -> Option<ReplicaTask> {
        let s = self.replication.sessions.get(&session)?;
        let r = self.replication_job(s.job)?;
        let run = s.vms.get(&vm)?;
        let (snap, bytes) = (run.snap?, run.disks.get(usize::from(disk))?.bytes);
        let replica = self.replication.replicas.get(&(s.job, vm))?;
        let newest = replica.points.back();
        let verify = r.verify_every.is_some_and(|n| n > 0 && s.run > 0 && s.run % u64::from(n) == 0);
        let hash_base = run.base.and_then(|b| b.snap);
        let metadata = |p: &super::ReplicaPoint| BaseDigests::Metadata { repository: r.metadata_repository, point: p.point };
        let (mode, base) = match newest {
            _ if run.full => (ReadMode::Full, BaseDigests::Target),
            Some(p) if hash_base.is_none() && p.metadata => match p.change_ids.get(usize::from(disk)).copied().flatten() {
                Some(since) if !verify => (ReadMode::Changed { since }, metadata(p)),
                _ => (ReadMode::DigestCompare, metadata(p)),
            },
            _ => (ReadMode::DigestCompare, BaseDigests::Target),
        };
        let report = MetadataReport {
            repository: r.metadata_repository,
            point: run.point?,
            base: match base {
                BaseDigests::Metadata { point, .. } => Some(point),
                BaseDigests::Target => None,
            },
            initial: run.initial,
        };
        let sink = ReplicaSink {
            task: id,
            proxy: r.target_proxy,
            host: r.target_host,
            vm: replica.vm,
            disk,
            disk_bytes: bytes,
            block_size: r.block_size,
            hash_snap: hash_base.or(newest.map(|p| p.snap)),
            report,
        };
        let host = self.source_host(vm);
        Some(ReplicaTask { task: id, host, vm, snap, mode, base, target_changes: None, compression: r.compression, sink, rate: None })
    }

    /// A replica task ended: report it, retry it, or close it.
    pub(in crate::roles::manager) fn replica_task_done(
        &mut self,
        id: TaskId,
        mut task: Task,
        proxy: NodeId,
        result: Result<TaskStats, String>,
    ) {
        let TaskKind::Replica(work) = task.kind else { return };
        let (session, vm) = match work {
            ReplicaWork::Sync { session, vm } => (session, vm),
            ReplicaWork::Failback { action } => match self.replication.actions.get(&action) {
                Some(a) => (a.session, a.vm),
                None => return,
            },
        };
        let disk = DiskId { vm, index: task.disk };
        self.out.event(Event::TaskFinished { task: id, session, disk, proxy, result: result.clone() });
        let failure = match result {
            Ok(_) => None,
            Err(_) if task.attempt < MAX_ATTEMPTS => {
                task.attempt += 1;
                task.proxy = None;
                self.tasks.insert(id, task);
                self.scheduler.enqueue(id, self.now + retry_delay(task.attempt - 1));
                return;
            }
            Err(reason) => Some(reason),
        };
        match work {
            ReplicaWork::Sync { session, vm } => {
                let Some(run) = self.sync_run_mut(session, vm) else { return };
                run.open_tasks = run.open_tasks.saturating_sub(1);
                if run.failure.is_none() {
                    run.failure = failure;
                }
                if run.open_tasks == 0 {
                    self.vm_synced(session, vm);
                }
            }
            ReplicaWork::Failback { action } => self.failback_task_closed(action, failure),
        }
    }

    fn sync_run_mut(&mut self, session: SessionId, vm: VmId) -> Option<&mut super::sync::SyncRun> {
        self.replication.sessions.get_mut(&session)?.vms.get_mut(&vm)
    }
}
