//! The manager role: the backup server. It owns the configuration and the
//! catalog of restore points, starts job sessions on schedule, hands each VM
//! disk to the scheduler as a task, retries failed tasks later in the
//! session, commits restore points, releases snapshots and applies
//! retention.
//!
//! A VM's run inside a session: snapshot → one task per disk → (all ok)
//! commit the point at the repository → commit (remove) the snapshot →
//! retention. If a task fails for good, the pending point is aborted at the
//! repository (nothing becomes visible) and the snapshot is still removed,
//! so the VM never keeps a stale delta.

mod restore;
mod scheduler;

use crate::config::{BackupJob, Deployment, JobKind, JobSpec};
use crate::event::Event;
use crate::hypervisor::SnapshotDisk;
use crate::ids::{ChangeId, DiskId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::node::{Input, Node, Outbox, Output, TimerId};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{BackupTask, DiskTarget, OpId, ReadMode, TaskStats};
use scheduler::Scheduler;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Attempts per disk task within one session.
pub const MAX_ATTEMPTS: u32 = 3;
/// Wait before a failed task is tried again.
pub const RETRY_DELAY: Duration = Duration::from_secs(60);
/// Timer that wakes the scheduler for delayed retries (job timers are 0..n).
const SCHEDULER_WAKE: TimerId = TimerId(u64::MAX);

/// A restore point in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRecord {
    pub point: RestorePointId,
    pub session: SessionId,
    pub snapshot_at: Timestamp,
    /// Per disk, the CBT id the point's snapshot closed.
    pub change_ids: Vec<Option<ChangeId>>,
    /// Per disk, its size.
    pub disk_bytes: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VmState {
    Snapshotting,
    Transferring,
    Committing,
    Releasing,
    Done,
}

#[derive(Debug)]
struct VmRun {
    state: VmState,
    snap: Option<SnapshotId>,
    disks: Vec<SnapshotDisk>,
    snapshot_at: Timestamp,
    /// Tasks queued or running.
    open_tasks: u32,
    failure: Option<String>,
}

#[derive(Debug)]
struct Session {
    job: JobId,
    /// 0 for the job's first session.
    run: u64,
    vms: BTreeMap<VmId, VmRun>,
}

/// What a manager operation's answer continues.
#[derive(Debug, Clone, Copy)]
enum Op {
    Snapshot { session: SessionId, vm: VmId },
    CommitPoint { session: SessionId, vm: VmId, point: RestorePointId },
    Release { session: SessionId, vm: VmId },
    Delete { job: JobId, vm: VmId, point: RestorePointId },
    CreateVm { restore: u64 },
}

/// What a disk task works for.
#[derive(Debug, Clone, Copy)]
enum TaskKind {
    Backup { session: SessionId, vm: VmId },
    Restore { restore: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Task {
    kind: TaskKind,
    disk: u16,
    attempt: u32,
    proxy: Option<NodeId>,
}

#[derive(Debug, Default)]
struct Counters {
    session: u64,
    task: u64,
    op: u64,
    point: u64,
}

#[derive(Debug)]
pub struct Manager {
    cfg: Deployment,
    now: Timestamp,
    ids: Counters,
    runs: BTreeMap<JobId, u64>,
    running: BTreeMap<JobId, SessionId>,
    sessions: BTreeMap<SessionId, Session>,
    catalog: BTreeMap<(JobId, VmId), VecDeque<PointRecord>>,
    ops: BTreeMap<OpId, Op>,
    tasks: BTreeMap<TaskId, Task>,
    restores: BTreeMap<u64, restore::Restore>,
    scheduler: Scheduler,
    out: Outbox,
}

impl Manager {
    pub fn new(cfg: Deployment) -> Self {
        Manager {
            cfg,
            now: Timestamp::ZERO,
            ids: Counters::default(),
            runs: BTreeMap::new(),
            running: BTreeMap::new(),
            sessions: BTreeMap::new(),
            catalog: BTreeMap::new(),
            ops: BTreeMap::new(),
            tasks: BTreeMap::new(),
            restores: BTreeMap::new(),
            scheduler: Scheduler::default(),
            out: Outbox::default(),
        }
    }

    /// The retained restore points of a job's VM, oldest first.
    pub fn points(&self, job: JobId, vm: VmId) -> impl Iterator<Item = &PointRecord> {
        self.catalog.get(&(job, vm)).into_iter().flatten()
    }

    fn job(&self, job: JobId) -> Option<&JobSpec> {
        self.cfg.jobs.iter().find(|j| j.id == job)
    }

    fn backup_job(&self, job: JobId) -> Option<&BackupJob> {
        self.job(job).map(|j| match &j.kind {
            JobKind::Backup(b) => b,
        })
    }

    fn op(&mut self, op: Op) -> OpId {
        self.ids.op += 1;
        self.ops.insert(self.ids.op, op);
        self.ids.op
    }

    fn vm_run(&mut self, session: SessionId, vm: VmId) -> Option<&mut VmRun> {
        self.sessions.get_mut(&session)?.vms.get_mut(&vm)
    }

    fn on_job_timer(&mut self, index: usize) {
        let Some(spec) = self.cfg.jobs.get(index) else { return };
        let (job, every, vms) = (spec.id, spec.every, spec.vms.clone());
        self.out.set_timer(TimerId(index as u64), self.now + every);
        if self.running.contains_key(&job) {
            self.out.event(Event::SessionSkipped { job, reason: "the previous session is still running".into() });
            return;
        }
        self.ids.session += 1;
        let session = SessionId(self.ids.session);
        let run = self.runs.entry(job).or_default();
        let this_run = *run;
        *run += 1;
        self.running.insert(job, session);
        self.out.event(Event::SessionStarted { job, session });
        let mut runs = BTreeMap::new();
        for vm in vms {
            let run =
                VmRun { state: VmState::Snapshotting, snap: None, disks: Vec::new(), snapshot_at: self.now, open_tasks: 0, failure: None };
            runs.insert(vm, run);
        }
        self.sessions.insert(session, Session { job, run: this_run, vms: runs });
        let vms: Vec<VmId> = self.sessions[&session].vms.keys().copied().collect();
        for vm in vms {
            match self.cfg.vms.get(&vm).map(|v| v.host) {
                Some(host) => {
                    let op = self.op(Op::Snapshot { session, vm });
                    self.out.send(host, Message::CreateSnapshot { op, vm });
                }
                None => self.finish_vm(session, vm, Err(format!("{vm} is not in the configuration"))),
            }
        }
    }

    fn on_snapshot(&mut self, session: SessionId, vm: VmId, snap: SnapshotId, disks: Vec<SnapshotDisk>) {
        let now = self.now;
        let Some(job) = self.sessions.get(&session).map(|s| s.job) else { return };
        let host = self.cfg.vms.get(&vm).map(|v| v.host).unwrap_or(NodeId(u32::MAX));
        let Some(run) = self.vm_run(session, vm) else { return };
        run.state = VmState::Transferring;
        run.snap = Some(snap);
        run.snapshot_at = now;
        run.open_tasks = disks.len() as u32;
        let count = disks.len();
        run.disks = disks;
        self.out.event(Event::SnapshotTaken { job, session, vm, host, snap });
        if count == 0 {
            return self.vm_transferred(session, vm);
        }
        for disk in 0..count {
            self.ids.task += 1;
            let task = TaskId(self.ids.task);
            self.tasks.insert(task, Task { kind: TaskKind::Backup { session, vm }, disk: disk as u16, attempt: 1, proxy: None });
            self.scheduler.enqueue(task, now);
        }
        self.schedule();
    }

    /// Places due tasks on proxies and starts them.
    fn schedule(&mut self) {
        let mut scheduler = std::mem::take(&mut self.scheduler);
        let needs = |task: TaskId| self.tasks.get(&task).map_or((None, NodeId(u32::MAX)), |t| self.needs(t.kind));
        let placed = scheduler.place(self.now, &self.cfg, needs);
        self.scheduler = scheduler;
        for placement in placed {
            let Some(task) = self.tasks.get_mut(&placement.task) else { continue };
            task.proxy = Some(placement.proxy);
            match task.kind {
                TaskKind::Backup { .. } => self.start_backup_task(placement.task, placement.proxy),
                TaskKind::Restore { .. } => self.start_restore_task(placement.task, placement.proxy),
            }
        }
        if let Some(due) = self.scheduler.next_due(self.now) {
            self.out.set_timer(SCHEDULER_WAKE, due);
        }
    }

    /// The proxy a task must run on (if its job names one) and the
    /// repository it uses.
    fn needs(&self, kind: TaskKind) -> (Option<NodeId>, NodeId) {
        match kind {
            TaskKind::Backup { session, .. } => match self.sessions.get(&session).and_then(|s| self.backup_job(s.job)) {
                Some(b) => (b.proxy, b.repository),
                None => (None, NodeId(u32::MAX)),
            },
            TaskKind::Restore { restore } => (None, self.restores.get(&restore).map_or(NodeId(u32::MAX), |r| r.repository)),
        }
    }

    fn start_backup_task(&mut self, id: TaskId, proxy: NodeId) {
        let Some(task) = self.tasks.get(&id).copied() else { return };
        let TaskKind::Backup { session: session_id, vm } = task.kind else { return };
        let Some(session) = self.sessions.get(&session_id) else { return };
        let (job, run_index) = (session.job, session.run);
        let Some(b) = self.backup_job(job).cloned() else { return };
        let Some(run) = session.vms.get(&vm) else { return };
        let (Some(snap), Some(disk)) = (run.snap, run.disks.get(task.disk as usize).copied()) else { return };
        let host = self.cfg.vms.get(&vm).map(|v| v.host).unwrap_or(NodeId(u32::MAX));
        let base = self.catalog.get(&(job, vm)).and_then(|c| c.back());
        let verify = b.verify_every.is_some_and(|n| n > 0 && run_index > 0 && run_index % u64::from(n) == 0);
        let mode = match base.map(|p| p.change_ids.get(task.disk as usize).copied().flatten()) {
            None => ReadMode::Full,
            Some(_) if verify => ReadMode::DigestCompare,
            Some(Some(since)) => ReadMode::Changed { since },
            Some(None) => ReadMode::DigestCompare,
        };
        let spec = BackupTask {
            task: id,
            job,
            target: DiskTarget { session: session_id, vm, disk: task.disk },
            host,
            snap,
            disk_bytes: disk.bytes,
            repository: b.repository,
            base: base.map(|p| p.point),
            mode,
            block_size: b.block_size,
            compression: b.compression,
        };
        self.out.event(Event::TaskAssigned {
            task: id,
            session: session_id,
            disk: DiskId { vm, index: task.disk },
            proxy,
            repository: b.repository,
            attempt: task.attempt,
        });
        self.out.send(proxy, Message::StartBackupTask(spec));
    }

    fn on_task_done(&mut self, id: TaskId, result: Result<TaskStats, String>) {
        let Some(mut task) = self.tasks.remove(&id) else { return };
        let Some(proxy) = task.proxy else { return };
        self.scheduler.release(proxy, self.needs(task.kind).1);
        let (session, vm) = match task.kind {
            TaskKind::Backup { session, vm } => (session, vm),
            TaskKind::Restore { restore } => {
                self.restore_task_done(restore, result);
                return self.schedule();
            }
        };
        let disk = DiskId { vm, index: task.disk };
        self.out.event(Event::TaskFinished { task: id, session, disk, proxy, result: result.clone() });
        match result {
            Ok(_) => self.task_closed(session, vm, None),
            Err(_) if task.attempt < MAX_ATTEMPTS => {
                task.attempt += 1;
                task.proxy = None;
                self.tasks.insert(id, task);
                self.scheduler.enqueue(id, self.now + RETRY_DELAY);
            }
            Err(reason) => self.task_closed(session, vm, Some(reason)),
        }
        self.schedule();
    }

    /// A task of the VM ended for good; when it was the last, commit or abort.
    fn task_closed(&mut self, session: SessionId, vm: VmId, failure: Option<String>) {
        let Some(run) = self.vm_run(session, vm) else { return };
        run.open_tasks = run.open_tasks.saturating_sub(1);
        if run.failure.is_none() {
            run.failure = failure;
        }
        if run.open_tasks == 0 {
            self.vm_transferred(session, vm);
        }
    }

    fn vm_transferred(&mut self, session: SessionId, vm: VmId) {
        let Some(job) = self.sessions.get(&session).map(|s| s.job) else { return };
        let Some(repository) = self.backup_job(job).map(|b| b.repository) else { return };
        let parent = self.catalog.get(&(job, vm)).and_then(|c| c.back()).map(|p| p.point);
        let Some(run) = self.vm_run(session, vm) else { return };
        if run.failure.is_some() {
            self.out.send(repository, Message::AbortPoint { session, vm });
            return self.release_snapshot(session, vm);
        }
        run.state = VmState::Committing;
        let (snapshot_at, disks) = (run.snapshot_at, (0..run.disks.len() as u16).collect());
        self.ids.point += 1;
        let point = RestorePointId(self.ids.point);
        let op = self.op(Op::CommitPoint { session, vm, point });
        self.out.send(repository, Message::CommitPoint { op, point, job, session, vm, snapshot_at, parent, disks });
    }

    fn on_point_committed(&mut self, session: SessionId, vm: VmId, point: RestorePointId, result: Result<(), String>) {
        let Some(job) = self.sessions.get(&session).map(|s| s.job) else { return };
        let Some(b) = self.backup_job(job).cloned() else { return };
        let host = self.cfg.vms.get(&vm).map(|v| v.host).unwrap_or(NodeId(u32::MAX));
        let Some(run) = self.vm_run(session, vm) else { return };
        match result {
            Ok(()) => {
                let record = PointRecord {
                    point,
                    session,
                    snapshot_at: run.snapshot_at,
                    change_ids: run.disks.iter().map(|d| d.change_id).collect(),
                    disk_bytes: run.disks.iter().map(|d| d.bytes).collect(),
                };
                let snap = run.snap.unwrap_or(SnapshotId(0));
                let snapshot_at = run.snapshot_at;
                self.out.event(Event::PointCommitted { job, session, vm, point, repository: b.repository, host, snap, snapshot_at });
                let restoring: Vec<RestorePointId> = self.restores.values().map(|r| r.point).collect();
                let chain = self.catalog.entry((job, vm)).or_default();
                chain.push_back(record);
                // Retention: drop the oldest points beyond the limit, but
                // never one a restore is reading (it goes next time).
                let mut expired = Vec::new();
                while chain.len() > b.retention.max(1) as usize && chain.front().is_some_and(|p| !restoring.contains(&p.point)) {
                    if let Some(old) = chain.pop_front() {
                        expired.push(old.point);
                    }
                }
                for point in expired {
                    let op = self.op(Op::Delete { job, vm, point });
                    self.out.send(b.repository, Message::DeletePoint { op, point });
                }
            }
            Err(reason) => {
                run.failure = Some(format!("commit failed: {reason}"));
                self.out.send(b.repository, Message::AbortPoint { session, vm });
            }
        }
        self.release_snapshot(session, vm);
    }

    fn release_snapshot(&mut self, session: SessionId, vm: VmId) {
        let host = self.cfg.vms.get(&vm).map(|v| v.host);
        let Some(run) = self.vm_run(session, vm) else { return };
        run.state = VmState::Releasing;
        match (run.snap, host) {
            (Some(snap), Some(host)) => {
                let op = self.op(Op::Release { session, vm });
                self.out.send(host, Message::CommitSnapshot { op, snap });
            }
            _ => {
                let result = run.failure.clone().map_or(Ok(()), Err);
                self.finish_vm(session, vm, result);
            }
        }
    }

    fn finish_vm(&mut self, session: SessionId, vm: VmId, result: Result<(), String>) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let job = s.job;
        let Some(run) = s.vms.get_mut(&vm) else { return };
        run.state = VmState::Done;
        self.out.event(Event::VmFinished { job, session, vm, result });
        if s.vms.values().all(|r| r.state == VmState::Done) {
            let ok = s.vms.values().all(|r| r.failure.is_none());
            self.sessions.remove(&session);
            self.running.remove(&job);
            self.out.event(Event::SessionFinished { job, session, ok });
        }
    }

    fn on_host_answer(&mut self, op: OpId, answer: Result<(SnapshotId, Vec<SnapshotDisk>), String>) {
        let Some(op) = self.ops.remove(&op) else { return };
        match (op, answer) {
            (Op::Snapshot { session, vm }, Ok((snap, disks))) => self.on_snapshot(session, vm, snap, disks),
            (Op::Snapshot { session, vm }, Err(reason)) => {
                if let Some(run) = self.vm_run(session, vm) {
                    run.failure = Some(format!("snapshot failed: {reason}"));
                }
                self.finish_vm(session, vm, Err(format!("snapshot failed: {reason}")));
            }
            (Op::CreateVm { restore }, answer) => self.on_vm_created(restore, answer.map(|_| ())),
            (Op::Release { session, vm }, answer) => {
                let Some(run) = self.vm_run(session, vm) else { return };
                if let Err(reason) = answer
                    && run.failure.is_none()
                {
                    run.failure = Some(format!("snapshot could not be removed: {reason}"));
                }
                let result = run.failure.clone().map_or(Ok(()), Err);
                self.finish_vm(session, vm, result);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::SnapshotCreated { op, snap, disks } => self.on_host_answer(op, Ok((snap, disks))),
            Message::SnapshotCommitted { op } | Message::VmCreated { op } => self.on_host_answer(op, Ok((SnapshotId(0), Vec::new()))),
            Message::RestoreVm { op, point, host, new_vm, name } => self.start_restore(from, op, point, host, new_vm, name),
            Message::HostFailed { op, reason } => self.on_host_answer(op, Err(reason)),
            Message::TaskDone { task, result } => self.on_task_done(task, result),
            Message::PointCommitted { op, result } => {
                if let Some(Op::CommitPoint { session, vm, point }) = self.ops.remove(&op) {
                    self.on_point_committed(session, vm, point, result);
                }
            }
            Message::PointDeleted { op, result } => {
                if let Some(Op::Delete { job, vm, point }) = self.ops.remove(&op) {
                    self.out.event(Event::PointRemoved { job, vm, point, result });
                }
            }
            Message::Ping { seq } => self.out.send(from, Message::Pong { seq }),
            _ => {}
        }
    }

    /// A proxy went away: its running tasks failed (and will be retried).
    fn on_peer_down(&mut self, peer: NodeId) {
        let lost: Vec<TaskId> = self.tasks.iter().filter(|(_, t)| t.proxy == Some(peer)).map(|(id, _)| *id).collect();
        for task in lost {
            self.on_task_done(task, Err(format!("lost connection to proxy {peer}")));
        }
    }
}

impl Node for Manager {
    fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = now;
        match input {
            Input::Start => {
                for index in 0..self.cfg.jobs.len() {
                    self.out.set_timer(TimerId(index as u64), now);
                }
            }
            Input::Timer(SCHEDULER_WAKE) => self.schedule(),
            Input::Timer(TimerId(index)) => self.on_job_timer(index as usize),
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::PeerDown(peer) => self.on_peer_down(peer),
            Input::PeerUp(_) | Input::Storage(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
