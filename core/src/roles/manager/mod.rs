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
//!
//! Surviving faults: an operation whose peer goes away fails at once (the
//! VM fails cleanly for this session, the next one catches up); failed disk
//! tasks are retried with growing delays and resume where the repository's
//! acknowledgements left off; a (re)started manager voids its previous
//! incarnation's tasks and pending points and rebuilds its catalog from the
//! repositories before it schedules anything.

mod catalog;
mod ownership;
mod planted;
pub use ownership::{RECONNECT_GRACE, TASK_SILENCE};
mod replication;
mod restore;
mod scheduler;
mod snapshot_wait;
mod throttle;
mod timers;
mod validate;
mod window;

use crate::config::{BackupJob, Deployment, JobKind, JobSpec};
use crate::event::Event;
use crate::hypervisor::SnapshotDisk;
use crate::ids::{DiskId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::manifest::{PointDisk, PointHeader};
use crate::node::{Input, Node, Outbox, Output};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{BackupTask, DamagedBlock, DiskTarget, OpId, ReadMode, TaskRate, TaskStats};
use catalog::Catalog;
use scheduler::Scheduler;
use std::collections::BTreeMap;
use std::time::Duration;
use throttle::{Legs, Throttle};
use timers::Timer;

/// Attempts per disk task within one session.
pub const MAX_ATTEMPTS: u32 = 5;
/// Wait before the first retry of a failed task; each further retry waits
/// four times longer (30 s, 2 min, 8 min, 32 min).
pub const RETRY_DELAY: Duration = Duration::from_secs(30);
/// How long a (re)started manager waits for repositories to list their
/// points before it schedules jobs without them.
pub const CATALOG_WAIT: Duration = Duration::from_secs(60);

fn retry_delay(attempt: u32) -> Duration {
    RETRY_DELAY * 4u32.saturating_pow(attempt.saturating_sub(1).min(8))
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
    /// Disks whose task finished: their pending data lives at the
    /// repository until the commit, so they are redone if it restarts.
    done_disks: Vec<u16>,
    failure: Option<String>,
    /// Changed blocks a verification pass found CBT had missed.
    cbt_missed: u64,
    /// Some disk trusted CBT: the point is not a verified anchor.
    trusted_cbt: bool,
    /// Damaged blocks this run's tasks were told to read again, per disk,
    /// with when each was found: repaired once the point commits (a health
    /// report that arrives after the tasks started waits for the next
    /// session, even for a block they re-read: they may have read it before
    /// the repository knew it was damaged, and so not repaired it).
    repairs_taken: BTreeMap<u16, BTreeMap<u64, Timestamp>>,
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
    Delete { point: RestorePointId },
    Health { job: JobId },
    CreateVm { restore: u64 },
    Replica(replication::ReplicaOp),
}

impl Op {
    /// What the operation is, for refusal reasons.
    fn name(&self) -> &'static str {
        match self {
            Op::Snapshot { .. } => "a snapshot",
            Op::CommitPoint { .. } => "a point's commit",
            Op::Release { .. } => "a snapshot's removal",
            Op::Delete { .. } => "a point's deletion",
            Op::Health { .. } => "a health check",
            Op::CreateVm { .. } => "a restore's new VM",
            Op::Replica(_) => "a replication step",
        }
    }
}

/// What a disk task works for.
#[derive(Debug, Clone, Copy)]
enum TaskKind {
    Backup { session: SessionId, vm: VmId },
    Restore { restore: u64 },
    Replica(replication::ReplicaWork),
}

#[derive(Debug, Clone, Copy)]
struct Task {
    kind: TaskKind,
    disk: u16,
    attempt: u32,
    proxy: Option<NodeId>,
}

/// Id counters. A (re)started manager starts them at the current time in
/// nanoseconds since the Unix epoch — later than any id an earlier
/// incarnation handed out, as long as it did not hand out more than one
/// per nanosecond. A clock set back between incarnations is caught by the
/// durable high-water marks: every point a repository lists lifts the
/// point and session counters above its ids ([`Counters::above`]), and
/// the manager schedules nothing before its repositories have listed.
#[derive(Debug, Default)]
struct Counters {
    session: u64,
    task: u64,
    op: u64,
    point: u64,
}

impl Counters {
    fn starting_at(now: Timestamp) -> Counters {
        Counters { session: now.0, task: now.0, op: now.0, point: now.0 }
    }

    fn lifted(self, floor: u64) -> Counters {
        Counters { session: self.session.max(floor), task: self.task.max(floor), op: self.op.max(floor), point: self.point.max(floor) }
    }

    /// Lifts the counters above the ids of a durable point.
    fn above(&mut self, point: &PointHeader) {
        self.point = self.point.max(point.point.0);
        self.session = self.session.max(point.session.0);
    }
}

#[derive(Debug)]
pub struct Manager {
    cfg: Deployment,
    now: Timestamp,
    ids: Counters,
    runs: BTreeMap<JobId, u64>,
    running: BTreeMap<JobId, SessionId>,
    sessions: BTreeMap<SessionId, Session>,
    catalog: Catalog,
    /// Operations awaiting an answer, with the peer that owes it.
    ops: BTreeMap<OpId, (NodeId, Op)>,
    /// Repositories that have not answered `ListPoints` since the start.
    catalog_pending: Vec<NodeId>,
    /// Jobs schedule only once the catalog is rebuilt.
    scheduling: bool,
    /// Snapshots whose removal could not be sent (host unreachable).
    unreleased: Vec<(NodeId, SnapshotId)>,
    /// Snapshot requests lost with their host's connection.
    snapshots_waiting: snapshot_wait::SnapshotsWaiting,
    /// Commits whose repository went away before it answered: asked again
    /// (with the same point id) when it is back.
    commits_waiting: Vec<(NodeId, SessionId, VmId, RestorePointId)>,
    /// Blocks a health check found damaged, per (job, vm, disk), and when
    /// it last found each: the next backup re-reads them from the source,
    /// which repairs them.
    repairs: BTreeMap<(JobId, VmId, u16), BTreeMap<u64, Timestamp>>,
    /// Per (job, vm), the newest point whose every block was read and
    /// compared (a full or a verification pass): points after it rely on CBT.
    anchors: BTreeMap<(JobId, VmId), RestorePointId>,
    tasks: BTreeMap<TaskId, Task>,
    /// Where placed tasks run, and when each was last heard of.
    placements: ownership::Placements,
    restores: BTreeMap<u64, restore::Restore>,
    replication: replication::Replication,
    scheduler: Scheduler,
    throttle: Throttle,
    /// Bugs planted on purpose (see `planted`); none in a real manager.
    planted: planted::Planted,
    /// See [`Manager::with_ids_above`].
    ids_floor: u64,
    out: Outbox,
}

/// The operation an answer settles (see [`Manager::op`]).
/// Whether `msg` is a kind of answer `op` can have: a snapshot is answered
/// created or failed, never "done". The wrong kind from the right peer is
/// refused, not taken for something it is not.
fn may_answer(op: &Op, msg: &Message) -> bool {
    let failed = matches!(msg, Message::HostFailed { .. });
    match op {
        Op::Snapshot { .. } => failed || matches!(msg, Message::SnapshotCreated { .. }),
        Op::Release { .. } => failed || matches!(msg, Message::SnapshotCommitted { .. }),
        Op::CreateVm { .. } => failed || matches!(msg, Message::VmCreated { .. }),
        Op::CommitPoint { .. } => matches!(msg, Message::PointCommitted { .. }),
        Op::Delete { .. } => matches!(msg, Message::PointDeleted { .. }),
        Op::Health { .. } => matches!(msg, Message::HealthReport { .. }),
        // A replication step is a host operation (any of its answers) or a
        // replica metadata one; its step checks the rest.
        Op::Replica(_) => !matches!(msg, Message::PointCommitted { .. } | Message::PointDeleted { .. } | Message::HealthReport { .. }),
    }
}

fn answered_op(msg: &Message) -> Option<OpId> {
    match msg {
        Message::SnapshotCreated { op, .. }
        | Message::SnapshotCommitted { op }
        | Message::VmCreated { op }
        | Message::HostDone { op }
        | Message::HostFailed { op, .. }
        | Message::PointCommitted { op, .. }
        | Message::PointDeleted { op, .. }
        | Message::HealthReport { op, .. }
        | Message::ReplicaPointCommitted { op, .. }
        | Message::ReplicaPointDeleted { op, .. } => Some(*op),
        _ => None,
    }
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
            catalog: Catalog::default(),
            ops: BTreeMap::new(),
            catalog_pending: Vec::new(),
            scheduling: false,
            unreleased: Vec::new(),
            snapshots_waiting: Default::default(),
            commits_waiting: Vec::new(),
            repairs: BTreeMap::new(),
            anchors: BTreeMap::new(),
            tasks: BTreeMap::new(),
            placements: ownership::Placements::default(),
            restores: BTreeMap::new(),
            replication: replication::Replication::default(),
            scheduler: Scheduler::default(),
            throttle: Throttle::default(),
            planted: planted::Planted::default(),
            ids_floor: 0,
            out: Outbox::default(),
        }
    }

    /// Ids this manager hands out stay above `floor` after every (re)start:
    /// a daemon passes the highest id its durable catalog ever recorded, so
    /// no id is used twice even if the wall clock went back.
    pub fn with_ids_above(mut self, floor: u64) -> Self {
        self.ids_floor = floor;
        self
    }

    /// The retained restore points of a job's VM, oldest first.
    pub fn points(&self, job: JobId, vm: VmId) -> impl Iterator<Item = &PointHeader> {
        self.catalog.chain(job, vm)
    }

    /// A task is about to start: its pacing, if it is throttled (the other
    /// tasks sharing its caps are told their new rates).
    fn throttle_admit(&mut self, task: TaskId, legs: Legs, job: Option<JobId>) -> Option<TaskRate> {
        let (rate, changes) = self.throttle.admit(&self.cfg, task, legs, job);
        self.send_rate_changes(changes);
        rate
    }

    fn send_rate_changes(&mut self, changes: Vec<throttle::RateChange>) {
        for c in changes {
            self.out.send(c.proxy, Message::SetTaskRate { task: c.task, bytes_per_sec: c.rate });
        }
    }

    fn job(&self, job: JobId) -> Option<&JobSpec> {
        self.cfg.job(job)
    }

    fn backup_job(&self, job: JobId) -> Option<&BackupJob> {
        self.job(job).and_then(|j| match &j.kind {
            JobKind::Backup(b) => Some(b),
            _ => None,
        })
    }

    /// Records an operation that `peer` will answer.
    fn op(&mut self, peer: NodeId, op: Op) -> OpId {
        self.ids.op += 1;
        self.ops.insert(self.ids.op, (peer, op));
        self.ids.op
    }

    fn vm_run(&mut self, session: SessionId, vm: VmId) -> Option<&mut VmRun> {
        self.sessions.get_mut(&session)?.vms.get_mut(&vm)
    }

    fn on_job_timer(&mut self, index: usize) {
        let Some(spec) = self.cfg.jobs.get(index) else { return };
        let (job, schedule) = (spec.id, spec.schedule);
        if let Some(next) = schedule.after(self.now) {
            self.out.set_timer(Timer::Job(index).id(), next);
        }
        if let Err(reason) = self.start_session(index) {
            self.out.event(Event::SessionSkipped { job, reason });
        }
    }

    /// The operator asks for a session of `job` now, whatever its schedule.
    fn on_run_job(&mut self, from: NodeId, op: OpId, job: JobId) {
        let result = if !self.scheduling {
            Err("the manager is still reading its catalog from the repositories; try again in a moment".to_string())
        } else {
            match self.cfg.jobs.iter().position(|j| j.id == job) {
                Some(index) => self.start_session(index),
                None => Err(format!("no job {job} in the configuration")),
            }
        };
        self.out.send(from, Message::JobStarted { op, result });
    }

    /// Starts a session of the job at `index`, unless its previous one is
    /// still running (the reason is returned).
    fn start_session(&mut self, index: usize) -> Result<SessionId, String> {
        let Some(spec) = self.cfg.jobs.get(index) else { return Err(format!("no job at index {index}")) };
        let (job, vms) = (spec.id, spec.vms.clone());
        let replication = matches!(spec.kind, JobKind::Replication(_));
        if self.running.contains_key(&job) {
            return Err("the previous session is still running".into());
        }
        self.ids.session += 1;
        let session = SessionId(self.ids.session);
        let run = self.runs.entry(job).or_default();
        let this_run = *run;
        *run += 1;
        self.running.insert(job, session);
        self.out.event(Event::SessionStarted { job, session });
        if let Some(window) = self.backup_job(job).and_then(|b| b.window) {
            self.out.set_timer(Timer::Window(index).id(), self.now + window);
        }
        if replication {
            self.start_replication_session(job, session, this_run, vms);
            return Ok(session);
        }
        let mut runs = BTreeMap::new();
        for vm in vms {
            let run = VmRun {
                state: VmState::Snapshotting,
                snap: None,
                disks: Vec::new(),
                snapshot_at: self.now,
                open_tasks: 0,
                done_disks: Vec::new(),
                failure: None,
                cbt_missed: 0,
                trusted_cbt: false,
                repairs_taken: BTreeMap::new(),
            };
            runs.insert(vm, run);
        }
        self.sessions.insert(session, Session { job, run: this_run, vms: runs });
        let vms: Vec<VmId> = self.sessions[&session].vms.keys().copied().collect();
        for vm in vms {
            match self.cfg.vms.get(&vm).map(|v| v.host) {
                Some(host) => {
                    let op = self.op(host, Op::Snapshot { session, vm });
                    self.out.send(host, Message::CreateSnapshot { op, vm });
                }
                None => self.finish_vm(session, vm, Err(format!("{vm} is not in the configuration"))),
            }
        }
        Ok(session)
    }

    fn on_snapshot(&mut self, session: SessionId, vm: VmId, snap: SnapshotId, disks: Vec<SnapshotDisk>) {
        let now = self.now;
        let Some(job) = self.sessions.get(&session).map(|s| s.job) else { return };
        let host = self.cfg.vms.get(&vm).map(|v| v.host).unwrap_or(NodeId(u32::MAX));
        let Some(run) = self.vm_run(session, vm) else { return };
        run.snap = Some(snap);
        if run.failure.is_some() {
            // The session ran out of its window while the snapshot was made.
            return self.release_snapshot(session, vm);
        }
        run.state = VmState::Transferring;
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
            let kind = task.kind;
            self.task_placed(placement.task);
            match kind {
                TaskKind::Backup { .. } => self.start_backup_task(placement.task, placement.proxy),
                TaskKind::Restore { .. } => self.start_restore_task(placement.task, placement.proxy),
                TaskKind::Replica(_) => self.start_replica_task(placement.task, placement.proxy),
            }
        }
        if let Some(due) = self.scheduler.next_due(self.now) {
            self.out.set_timer(Timer::SchedulerWake.id(), due);
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
            TaskKind::Restore { restore } => match self.restores.get(&restore) {
                Some(r) => (r.proxy, r.repository),
                None => (None, NodeId(u32::MAX)),
            },
            TaskKind::Replica(work) => self.replica_needs(work),
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
        let base = self.catalog.newest(job, vm);
        let verify = b.verify_every.is_some_and(|n| n > 0 && run_index > 0 && run_index % u64::from(n) == 0);
        let base_change = base.and_then(|p| p.disks.get(task.disk as usize).and_then(|d| d.change_id));
        let mode = match base.map(|p| p.disks.get(task.disk as usize).and_then(|d| d.change_id)) {
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
            resume: task.attempt > 1,
            reread: self.repairs.get(&(job, vm, task.disk)).map(|r| r.keys().copied().collect()).unwrap_or_default(),
            verify_since: if verify { base_change } else { None },
            rate: self.throttle_admit(id, Legs { proxy, source: host, destination: b.repository }, Some(job)),
        };
        self.out.event(Event::TaskAssigned {
            task: id,
            session: session_id,
            disk: DiskId { vm, index: task.disk },
            proxy,
            repository: b.repository,
            attempt: task.attempt,
        });
        let trusted_cbt = matches!(spec.mode, ReadMode::Changed { .. });
        let taken = self.repairs.get(&(job, vm, task.disk)).cloned().unwrap_or_default();
        self.out.send(proxy, Message::StartBackupTask(Box::new(spec)));
        if let Some(run) = self.vm_run(session_id, vm) {
            run.trusted_cbt |= trusted_cbt;
            run.repairs_taken.insert(task.disk, taken);
        }
    }

    fn on_task_done(&mut self, id: TaskId, result: Result<TaskStats, String>) {
        let Some(mut task) = self.tasks.remove(&id) else { return };
        self.task_unplaced(id);
        let changes = self.throttle.release(&self.cfg, id);
        self.send_rate_changes(changes);
        let Some(proxy) = task.proxy else { return };
        self.scheduler.release(proxy, self.needs(task.kind).1);
        let (session, vm) = match task.kind {
            TaskKind::Backup { session, vm } => (session, vm),
            TaskKind::Restore { restore } => {
                // Connection losses are transient: retry like a backup task
                // (writing the same blocks again is harmless). A damaged
                // block fails every attempt and is reported at the end.
                if result.is_err() && task.attempt < MAX_ATTEMPTS {
                    task.attempt += 1;
                    task.proxy = None;
                    self.tasks.insert(id, task);
                    self.scheduler.enqueue(id, self.now + retry_delay(task.attempt - 1));
                } else {
                    self.restore_task_done(restore, result);
                }
                return self.schedule();
            }
            TaskKind::Replica(_) => {
                self.replica_task_done(id, task, proxy, result);
                return self.schedule();
            }
        };
        let disk = DiskId { vm, index: task.disk };
        self.out.event(Event::TaskFinished { task: id, session, disk, proxy, result: result.clone() });
        match result {
            Ok(stats) => {
                if let Some(run) = self.vm_run(session, vm) {
                    run.done_disks.push(task.disk);
                    run.cbt_missed += stats.cbt_missed;
                }
                self.task_closed(session, vm, None)
            }
            Err(_) if task.attempt < MAX_ATTEMPTS => {
                task.attempt += 1;
                task.proxy = None;
                self.tasks.insert(id, task);
                self.scheduler.enqueue(id, self.now + retry_delay(task.attempt - 1));
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
        let Some(run) = self.vm_run(session, vm) else { return };
        if run.failure.is_some() {
            self.out.send(repository, Message::AbortPoint { session, vm });
            return self.release_snapshot(session, vm);
        }
        run.state = VmState::Committing;
        if run.snap.is_none() {
            return;
        }
        self.ids.point += 1;
        self.send_commit(repository, session, vm, RestorePointId(self.ids.point));
    }

    /// Asks a repository again for commits whose answer was lost with the
    /// connection (committing a point twice is answered "committed").
    fn resend_commits(&mut self, repository: NodeId) {
        let (resend, keep): (Vec<_>, Vec<_>) = self.commits_waiting.drain(..).partition(|(r, ..)| *r == repository);
        self.commits_waiting = keep;
        for (_, session, vm, point) in resend {
            self.send_commit(repository, session, vm, point);
        }
    }

    /// Asks `repository` to commit `point`, the VM's point of `session`.
    fn send_commit(&mut self, repository: NodeId, session: SessionId, vm: VmId, point: RestorePointId) {
        let Some(header) = self.point_header(session, vm, point) else { return };
        let op = self.op(repository, Op::CommitPoint { session, vm, point });
        self.out.send(repository, Message::CommitPoint { op, header });
    }

    /// The header of `point`, the VM's point of `session`: what the
    /// repository commits and the catalog keeps (its parent is the
    /// catalog's newest point of the VM now). `None` before the snapshot.
    fn point_header(&self, session: SessionId, vm: VmId, point: RestorePointId) -> Option<PointHeader> {
        let s = self.sessions.get(&session)?;
        let run = s.vms.get(&vm)?;
        let disks =
            run.disks.iter().enumerate().map(|(i, d)| PointDisk { index: i as u16, bytes: d.bytes, change_id: d.change_id }).collect();
        let parent = self.catalog.newest(s.job, vm).map(|p| p.point);
        Some(PointHeader { point, job: s.job, session, vm, snapshot_at: run.snapshot_at, snapshot: run.snap?, parent, disks })
    }

    fn on_point_committed(&mut self, session: SessionId, vm: VmId, point: RestorePointId, result: Result<(), String>) {
        let Some(job) = self.sessions.get(&session).map(|s| s.job) else { return };
        let Some(b) = self.backup_job(job).cloned() else { return };
        let host = self.cfg.vms.get(&vm).map(|v| v.host).unwrap_or(NodeId(u32::MAX));
        let header = self.point_header(session, vm, point);
        let Some(run) = self.vm_run(session, vm) else { return };
        match (result, header) {
            (Ok(()), Some(header)) => {
                let (snap, snapshot_at) = (header.snapshot, header.snapshot_at);
                let (cbt_missed, anchored) = (run.cbt_missed, !run.trusted_cbt);
                let repaired = std::mem::take(&mut run.repairs_taken);
                self.out.event(Event::PointCommitted { job, session, vm, point, repository: b.repository, host, snap, snapshot_at });
                self.flag_cbt_misses(job, vm, point, cbt_missed, anchored);
                for (disk, blocks) in repaired {
                    if let Some(pending) = self.repairs.get_mut(&(job, vm, disk)) {
                        pending.retain(|b, found| blocks.get(b) != Some(found));
                    }
                }
                self.repairs.retain(|_, blocks| !blocks.is_empty());
                self.catalog.push(header);
                self.apply_retention(job, vm);
            }
            // A commit is only asked for once the snapshot is known.
            (Ok(()), None) => {}
            (Err(reason), _) => {
                run.failure = Some(format!("commit failed: {reason}"));
                self.out.send(b.repository, Message::AbortPoint { session, vm });
            }
        }
        self.release_snapshot(session, vm);
    }

    /// A verification pass found changes CBT had missed: every point since
    /// the last verified anchor may hold stale blocks. They are reported
    /// (the new point, read in full, is right and repairs the chain).
    fn flag_cbt_misses(&mut self, job: JobId, vm: VmId, point: RestorePointId, cbt_missed: u64, anchored: bool) {
        if cbt_missed > 0 {
            let anchor = self.anchors.get(&(job, vm)).copied();
            let points: Vec<RestorePointId> =
                self.catalog.chain(job, vm).map(|p| p.point).filter(|p| *p != point && anchor.is_none_or(|a| *p > a)).collect();
            self.out.event(Event::PointsInconsistent { job, vm, points, missed_blocks: cbt_missed });
        }
        if anchored {
            self.anchors.insert((job, vm), point);
        }
    }

    /// Deletes the oldest points beyond the job's retention, except points
    /// a restore is reading (they go next time).
    fn apply_retention(&mut self, job: JobId, vm: VmId) {
        let Some(b) = self.backup_job(job).cloned() else { return };
        let restoring: Vec<RestorePointId> = self.restores.values().map(|r| r.point).collect();
        for point in self.catalog.expire(job, vm, b.retention as usize, &restoring) {
            // It leaves the catalog now; the repository's deletion is
            // retried until confirmed (see `Catalog::reconcile`).
            self.out.event(Event::PointRemoved { job, vm, point, result: Ok(()) });
            let op = self.op(b.repository, Op::Delete { point });
            self.out.send(b.repository, Message::DeletePoint { op, point });
        }
    }

    fn release_snapshot(&mut self, session: SessionId, vm: VmId) {
        let host = self.cfg.vms.get(&vm).map(|v| v.host);
        let Some(run) = self.vm_run(session, vm) else { return };
        run.state = VmState::Releasing;
        match (run.snap, host) {
            (Some(snap), Some(host)) => {
                let op = self.op(host, Op::Release { session, vm });
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
        let Some((_, op)) = self.ops.remove(&op) else { return };
        match (op, answer) {
            (Op::Snapshot { session, vm }, Ok((snap, disks))) => self.on_snapshot(session, vm, snap, disks),
            (Op::Snapshot { session, vm }, Err(reason)) => {
                if let Some(run) = self.vm_run(session, vm) {
                    run.failure = Some(format!("snapshot failed: {reason}"));
                }
                self.finish_vm(session, vm, Err(format!("snapshot failed: {reason}")));
            }
            (Op::CreateVm { restore }, answer) => self.on_vm_created(restore, answer.map(|_| ())),
            (Op::Replica(op), answer) => self.on_replica_answer(op, answer),
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
            // Answered by a repository's own messages: `may_answer` refused
            // a host's answer to them before it got here.
            (Op::CommitPoint { .. } | Op::Delete { .. } | Op::Health { .. }, _) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        // An answer is believed only from the peer the request went to.
        if let Some(op) = answered_op(&msg)
            && let Some((asked, _)) = self.ops.get(&op)
            && *asked != from
        {
            return self.out.refuse(from, format!("{} answers operation {op}, which was asked of {asked}", msg.kind()));
        }
        if let Err(reason) = self.check(from, &msg) {
            return self.out.refuse(from, format!("{}: {reason}", msg.kind()));
        }
        if let Some(op) = answered_op(&msg)
            && let Some((_, asked)) = self.ops.get(&op)
            && !may_answer(asked, &msg)
        {
            return self.out.refuse(from, format!("{} cannot answer operation {op} ({})", msg.kind(), asked.name()));
        }
        match msg {
            Message::SnapshotCreated { op, snap, disks } => self.on_host_answer(op, Ok((snap, disks))),
            Message::SnapshotCommitted { op } | Message::VmCreated { op } | Message::HostDone { op } => {
                self.on_host_answer(op, Ok((SnapshotId(0), Vec::new())))
            }
            Message::RestoreVm { op, point, host, new_vm, name } => self.start_restore(from, op, point, host, new_vm, name),
            Message::RunJob { op, job } => self.on_run_job(from, op, job),
            Message::HostFailed { op, reason } => self.on_host_answer(op, Err(reason)),
            Message::TaskDone { task, result } => self.on_task_report(from, task, result),
            Message::TasksRunning { op, tasks } => self.on_tasks_running(from, op, tasks),
            Message::PointCommitted { op, result } => {
                if let Some((_, Op::CommitPoint { session, vm, point })) = self.ops.remove(&op) {
                    self.on_point_committed(session, vm, point, result);
                }
            }
            Message::PointDeleted { op, result } => {
                if let Some((_, Op::Delete { point, .. })) = self.ops.remove(&op)
                    && result.is_ok()
                {
                    self.catalog.deleted(point);
                }
            }
            Message::Points { points, .. } => self.on_points(from, points),
            Message::HealthReport { op, result } => {
                if let Some((_, Op::Health { job })) = self.ops.remove(&op) {
                    self.on_health_report(job, result);
                }
            }
            msg @ (Message::ReplicaPointCommitted { .. }
            | Message::ReplicaPointDeleted { .. }
            | Message::ReplicaAction { .. }
            | Message::ReplicaPoints { .. }) => self.on_replication_message(from, msg),
            Message::Ping { seq } => self.out.send(from, Message::Pong { seq }),
            // The driver measures round trips; nothing to do.
            Message::Pong { .. } => {}
            other => self.out.refuse_unhandled(from, "manager", &other),
        }
    }

    /// A peer went away. Its running tasks wait a while for it to come
    /// back (see `ownership`); operations it owed an answer fail now rather
    /// than wait forever.
    fn on_peer_down(&mut self, peer: NodeId) {
        let changes = self.throttle.peer_down(&self.cfg, peer);
        self.send_rate_changes(changes);
        self.proxy_lost(peer);
        if self.cfg.repositories.contains_key(&peer) {
            self.redo_finished_disks(peer);
        }
        let owed: Vec<(OpId, Op)> = self.ops.iter().filter(|(_, (p, _))| *p == peer).map(|(id, (_, op))| (*id, *op)).collect();
        for (id, op) in owed {
            let reason = format!("lost connection to {peer}");
            match op {
                Op::Replica(replica) if self.replica_op_lost(peer, replica) => {
                    self.ops.remove(&id);
                }
                Op::Snapshot { session, vm } => {
                    self.ops.remove(&id);
                    self.snapshot_lost(peer, session, vm);
                }
                Op::Replica(_) => self.on_host_answer(id, Err(reason)),
                Op::CreateVm { restore } => {
                    // Asked again when the host is back (creating is
                    // idempotent: the answer may be what was lost).
                    self.ops.remove(&id);
                    self.restore_waits_for_host(restore);
                }
                Op::Release { session, vm } => {
                    // The point stands; the snapshot is removed once the
                    // host is back.
                    if let Some(snap) = self.vm_run(session, vm).and_then(|r| r.snap) {
                        self.unreleased.push((peer, snap));
                    }
                    self.ops.remove(&id);
                    let result = self.vm_run(session, vm).and_then(|r| r.failure.clone()).map_or(Ok(()), Err);
                    self.finish_vm(session, vm, result);
                }
                Op::CommitPoint { session, vm, point } => {
                    // It may have been committed: ask again when it is back.
                    self.ops.remove(&id);
                    self.commits_waiting.push((peer, session, vm, point));
                }
                Op::Health { job } => {
                    self.ops.remove(&id);
                    self.on_health_report(job, Err(reason));
                }
                Op::Delete { .. } => {
                    // Reconciled when the repository is back.
                    self.ops.remove(&id);
                }
            }
        }
    }

    /// A repository went away: disks already finished for it in running
    /// sessions may be lost with its memory, so they run again as resumed
    /// tasks (which cost nothing if it still has them).
    fn redo_finished_disks(&mut self, repository: NodeId) {
        let mut redo = Vec::new();
        for (session_id, session) in self.sessions.iter_mut() {
            let uses_repo =
                self.cfg.jobs.iter().any(|j| j.id == session.job && matches!(&j.kind, JobKind::Backup(b) if b.repository == repository));
            if !uses_repo {
                continue;
            }
            for (vm, run) in session.vms.iter_mut().filter(|(_, r)| r.state == VmState::Transferring) {
                for disk in run.done_disks.drain(..) {
                    run.open_tasks += 1;
                    redo.push((*session_id, *vm, disk));
                }
            }
        }
        for (session, vm, disk) in redo {
            self.ids.task += 1;
            let task = TaskId(self.ids.task);
            self.tasks.insert(task, Task { kind: TaskKind::Backup { session, vm }, disk, attempt: 2, proxy: None });
            self.scheduler.enqueue(task, self.now + RETRY_DELAY);
        }
        self.schedule();
    }

    fn on_peer_up(&mut self, peer: NodeId) {
        let changes = self.throttle.peer_up(&self.cfg, peer);
        self.send_rate_changes(changes);
        let (release, keep): (Vec<_>, Vec<_>) = self.unreleased.drain(..).partition(|(host, _)| *host == peer);
        self.unreleased = keep;
        for (_, snap) in release {
            self.ids.op += 1;
            self.out.send(peer, Message::CommitSnapshot { op: self.ids.op, snap });
        }
        self.ask_replica_ops_again(peer);
        self.ask_snapshots_again(peer);
        if self.cfg.repositories.contains_key(&peer) {
            self.ids.op += 1;
            self.out.send(peer, Message::ListPoints { op: self.ids.op });
            self.resend_commits(peer);
        }
        if self.cfg.proxies.contains_key(&peer) {
            self.ask_tasks(peer);
        }
        self.resume_restores_on(peer);
    }

    /// (Re)start: void the previous incarnation's work, rebuild the catalog.
    fn on_start(&mut self) {
        let now = self.now;
        let floor = self.ids_floor;
        *self = Manager::new(std::mem::take(&mut self.cfg)).with_planted(self.planted).with_ids_above(floor);
        self.now = now;
        self.ids = if self.planted.ids_start_over { Counters::default() } else { Counters::starting_at(now).lifted(floor) };
        let before = SessionId(self.ids.session + 1);
        for proxy in self.cfg.proxies.keys() {
            self.out.send(*proxy, Message::AbortTasks);
        }
        self.catalog_pending = self.cfg.repositories.keys().copied().collect();
        for repo in self.catalog_pending.clone() {
            self.out.send(repo, Message::AbortPendingBefore { before });
            self.ids.op += 1;
            self.out.send(repo, Message::ListPoints { op: self.ids.op });
        }
        self.out.set_timer(Timer::CatalogReady.id(), now + CATALOG_WAIT);
        self.list_replica_points();
        if self.catalog_pending.is_empty() && self.replica_catalog_listed() {
            self.start_scheduling();
        }
    }

    fn start_scheduling(&mut self) {
        if self.scheduling {
            return;
        }
        self.scheduling = true;
        self.out.cancel_timer(Timer::CatalogReady.id());
        for (index, job) in self.cfg.jobs.iter().enumerate() {
            if let Some(first) = job.schedule.first(self.now) {
                self.out.set_timer(Timer::Job(index).id(), first);
            }
            if let JobKind::Backup(BackupJob { health_check: Some(every), .. }) = &job.kind {
                self.out.set_timer(Timer::Health(index).id(), self.now + *every);
            }
        }
    }

    /// Health check: the repository re-reads every block of the job's newest
    /// points and reports what is damaged.
    fn on_health_timer(&mut self, index: usize) {
        let Some(spec) = self.cfg.jobs.get(index) else { return };
        let JobKind::Backup(b) = &spec.kind else { return };
        let (job, repository) = (spec.id, b.repository);
        if let Some(every) = b.health_check {
            self.out.set_timer(Timer::Health(index).id(), self.now + every);
        }
        let points: Vec<RestorePointId> = spec.vms.iter().filter_map(|vm| self.catalog.newest(job, *vm)).map(|p| p.point).collect();
        if points.is_empty() {
            return;
        }
        let op = self.op(repository, Op::Health { job });
        self.out.send(repository, Message::HealthCheck { op, points });
    }

    fn on_health_report(&mut self, job: JobId, result: Result<Vec<DamagedBlock>, String>) {
        let damaged = match result {
            Ok(d) => d,
            Err(reason) => {
                return self.out.event(Event::HealthChecked { job, damaged_points: Vec::new(), damaged_blocks: 0, error: Some(reason) });
            }
        };
        let mut points = Vec::new();
        for block in &damaged {
            let Some(vm) = self.catalog.find(block.point).map(|p| p.vm) else { continue };
            self.repairs.entry((job, vm, block.disk)).or_default().insert(block.index, self.now);
            if !points.contains(&block.point) {
                points.push(block.point);
            }
        }
        self.out.event(Event::HealthChecked { job, damaged_points: points, damaged_blocks: damaged.len() as u64, error: None });
    }

    /// A repository listed its points: adopt what the catalog lacks, drop
    /// what is gone, and apply retention to what was adopted.
    fn on_points(&mut self, repository: NodeId, mut points: Vec<PointHeader>) {
        // A point whose commit is still being confirmed joins the catalog
        // with that answer, not as a stray.
        let committing: Vec<RestorePointId> = self
            .ops
            .values()
            .filter_map(|(_, op)| match op {
                Op::CommitPoint { point, .. } => Some(*point),
                _ => None,
            })
            .chain(self.commits_waiting.iter().map(|(.., point)| *point))
            .collect();
        for point in &points {
            self.ids.above(point);
        }
        // Not ours to catalogue: see `validate`.
        points.retain(|p| !committing.contains(&p.point) && self.cfg.vms.contains_key(&p.vm));
        let jobs: Vec<JobId> =
            self.cfg.jobs.iter().filter(|j| matches!(&j.kind, JobKind::Backup(b) if b.repository == repository)).map(|j| j.id).collect();
        let found = self.catalog.reconcile(&jobs, points);
        for (job, vm, point) in found.lost {
            self.out.event(Event::PointLost { job, vm, point, repository });
        }
        for point in found.to_delete {
            self.ids.op += 1;
            self.out.send(repository, Message::DeletePoint { op: self.ids.op, point });
        }
        for p in &found.adopted {
            let host = self.cfg.vms.get(&p.vm).map_or(NodeId(u32::MAX), |v| v.host);
            self.out.event(Event::PointAdopted { job: p.job, vm: p.vm, point: p.point, repository, host, snap: p.snapshot });
        }
        for (job, vm) in self.catalog.keys() {
            if jobs.contains(&job) {
                self.apply_retention(job, vm);
            }
        }
        self.catalog_pending.retain(|r| *r != repository);
        if self.catalog_pending.is_empty() && self.replica_catalog_listed() {
            self.start_scheduling();
        }
    }
}

impl Node for Manager {
    fn handle(&mut self, now: Timestamp, input: Input) {
        self.now = now;
        match input {
            Input::Start => self.on_start(),
            Input::Timer(id) => match Timer::from_id(id) {
                Some(Timer::SchedulerWake) => self.schedule(),
                Some(Timer::CatalogReady) => self.start_scheduling(),
                Some(Timer::Watchdog) => self.on_watchdog(),
                Some(Timer::SnapshotRetry) => self.on_snapshot_retry_timer(),
                Some(Timer::Window(index)) => self.on_window_timer(index),
                Some(Timer::Health(index)) => self.on_health_timer(index),
                Some(Timer::Job(index)) => self.on_job_timer(index),
                None => {}
            },
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::PeerDown(peer) => self.on_peer_down(peer),
            Input::PeerUp(peer) => self.on_peer_up(peer),
            Input::Storage(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

#[cfg(test)]
mod tests;
