//! Operator actions on a replica: failover, undo failover, failback,
//! commit or undo failback, permanent failover.
//!
//! Each action is a short, fixed list of host steps run one answer at a
//! time, then a conclusion. Snapshots taken on the way land in named slots:
//!
//! * **failover** to a point: power the source off (best effort: in a
//!   disaster it is gone), revert the replica to the point, snapshot it
//!   (`F`: anchors the replica's CBT for failback and shows what the
//!   failover started from), power it on — its guest now runs on the DR
//!   host.
//! * **undo failover**: power the replica off, revert it to its newest point
//!   (what it did since failover is dropped), forget `F`, power the source on.
//! * **failback**: power the replica off, snapshot it (`B`, its final
//!   content) and the source (`S0`, to undo to), then one task per disk from
//!   the target proxy back to the source proxy: the blocks the replica
//!   changed since `F` (its CBT) plus the blocks the source changed since
//!   the failover point's sync (the source's CBT) — or, without either
//!   CBT, every block whose digest differs from what the source proxy
//!   hashes. Then snapshot the source (`S1`, equal to `B`) and power it on.
//!   `B`'s metadata is reported and kept pending.
//! * **undo failback**: power the source off, revert it to `S0`, forget
//!   `S0` and `B`, power the replica on again (still failed over).
//! * **commit failback**: forget `S0` and `F`; `B` becomes the replica's
//!   newest point, in sync with the source as of `S1`; syncs resume.
//! * **permanent failover**: forget `F` and every replica point; the
//!   replica stays the production VM and the job skips it from now on.
//!
//! An action that arrives while its VM is syncing waits for the sync.

use super::{HostAnswer, Manager, ReplicaOp, ReplicaPoint, ReplicaState, ReplicaWork};
use crate::event::{ActionOutcome, Event, ReplicaOrigin};
use crate::hypervisor::SnapshotDisk;
use crate::ids::{ChangeId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::manifest::{PointDisk, PointHeader};
use crate::roles::manager::{Op, Task, TaskKind};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{BaseDigests, MetadataReport, OpId, ReadMode, ReplicaAction, ReplicaSink, ReplicaTask, TargetChanges};
use std::collections::{BTreeMap, VecDeque};

/// An action asked for.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub(super) requester: NodeId,
    pub(super) op: OpId,
    pub(super) vm: VmId,
    pub(super) action: ReplicaAction,
}

/// A replica that runs in place of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FailedOver {
    point: RestorePointId,
    /// `F`: the replica at power-on.
    snap: SnapshotId,
    change_ids: Vec<Option<ChangeId>>,
}

/// A source that runs again with its replica's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FailedBack {
    failover: FailedOver,
    /// The replica point the failback becomes on commit.
    point: RestorePointId,
    replica_snap: SnapshotId,
    before: SnapshotId,
    after: SnapshotId,
    after_at: Timestamp,
    after_disks: Vec<SnapshotDisk>,
}

#[derive(Debug, Clone, Copy)]
pub(in crate::roles::manager) enum ActStep {
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// `F`.
    Failover,
    /// `B`.
    Final,
    /// `S0`.
    Before,
    /// `S1`.
    After,
}

#[derive(Debug, Clone, Copy)]
enum Snap {
    Fixed(SnapshotId),
    Slot(Slot),
}

#[derive(Debug, Clone)]
enum Step {
    Power { host: NodeId, vm: VmId, on: bool, best_effort: bool },
    Revert { host: NodeId, snap: Snap },
    Snapshot { host: NodeId, vm: VmId, slot: Slot },
    Forget { host: NodeId, snap: Snap },
    CommitMetadata { repository: NodeId, header: PointHeader },
}

/// What an action does once its steps ran.
#[derive(Debug, Clone, Copy)]
enum Then {
    FailedOver { point: RestorePointId },
    FailoverUndone { point: RestorePointId, snap: SnapshotId },
    FailbackTasks,
    FailedBack,
    FailbackFailed,
    FailbackUndone,
    FailbackCommitted,
    Permanent,
}

#[derive(Debug)]
pub(super) struct ActionRun {
    pub(super) job: JobId,
    pub(super) vm: VmId,
    /// Names the failback's disk tasks in events.
    pub(super) session: SessionId,
    request: Request,
    prior: ReplicaState,
    steps: VecDeque<Step>,
    then: Then,
    slots: BTreeMap<Slot, (SnapshotId, Vec<SnapshotDisk>, Timestamp)>,
    /// Failback: the point it builds, and the failover it undoes.
    point: Option<RestorePointId>,
    failover: Option<FailedOver>,
    metadata: bool,
    open_tasks: u32,
    failure: Option<String>,
}

impl Manager {
    pub(super) fn request_action(&mut self, request: Request) {
        let job = self
            .cfg
            .jobs
            .iter()
            .find(|j| matches!(j.kind, crate::config::JobKind::Replication(_)) && j.vms.contains(&request.vm))
            .map(|j| j.id);
        let Some(job) = job else {
            let result = Err(format!("no replication job replicates {}", request.vm));
            return self.out.send(request.requester, Message::ReplicaActionDone { op: request.op, result });
        };
        let busy = self.replica(job, request.vm).is_some_and(|r| matches!(r.state, ReplicaState::Syncing(_) | ReplicaState::Acting));
        if busy && self.replication.queued.len() >= crate::roles::manager::validate::MAX_QUEUED_ACTIONS {
            let result = Err(format!("{} replica actions are waiting already: try again later", self.replication.queued.len()));
            return self.out.send(request.requester, Message::ReplicaActionDone { op: request.op, result });
        }
        if busy {
            return self.replication.queued.push(request);
        }
        match self.plan_action(job, &request) {
            Ok(run) => {
                self.replication.next_action += 1;
                let id = self.replication.next_action;
                if let Some(replica) = self.replica(job, request.vm) {
                    replica.state = ReplicaState::Acting;
                }
                self.replication.actions.insert(id, run);
                self.run_steps(id);
            }
            Err(reason) => {
                let replica = self.replica(job, request.vm).map_or(VmId(u32::MAX), |r| r.vm);
                let (vm, action) = (request.vm, request.action);
                self.out.event(Event::ReplicaActionFinished { job, vm, replica, action, result: Err(reason.clone()) });
                self.out.send(request.requester, Message::ReplicaActionDone { op: request.op, result: Err(reason) });
            }
        }
    }

    /// Starts the actions that waited for `vm`'s sync or action to end.
    pub(super) fn start_queued_actions(&mut self, vm: VmId) {
        let (now, later): (Vec<Request>, Vec<Request>) = std::mem::take(&mut self.replication.queued).into_iter().partition(|r| r.vm == vm);
        self.replication.queued = later;
        for request in now {
            self.request_action(request);
        }
    }

    /// The steps and conclusion of an action, if it applies now.
    fn plan_action(&mut self, job: JobId, request: &Request) -> Result<ActionRun, String> {
        let r = self.replication_job(job).cloned().ok_or("not a replication job")?;
        let source = self.source_host(request.vm);
        let (tgt, vm) = (r.target_host, request.vm);
        self.ids.session += 1;
        let session = SessionId(self.ids.session);
        let replica = self.replica(job, vm).ok_or("no replica record")?;
        let (replica_vm, prior) = (replica.vm, replica.state.clone());
        let power = |host, vm, on| Step::Power { host, vm, on, best_effort: false };
        let mut point = None;
        let mut failover = None;
        let (steps, then) = match (request.action, &prior) {
            (ReplicaAction::Failover { back }, ReplicaState::Ready) => {
                let n = replica.points.len();
                let p = n
                    .checked_sub(1 + back as usize)
                    .and_then(|i| replica.points.get(i))
                    .ok_or_else(|| format!("{vm}'s replica has {n} restore points, none {back} back from the newest"))?;
                let steps = vec![
                    Step::Power { host: source, vm, on: false, best_effort: true },
                    Step::Revert { host: tgt, snap: Snap::Fixed(p.snap) },
                    Step::Snapshot { host: tgt, vm: replica_vm, slot: Slot::Failover },
                    power(tgt, replica_vm, true),
                ];
                (steps, Then::FailedOver { point: p.point })
            }
            (ReplicaAction::UndoFailover, ReplicaState::FailedOver(fo)) => {
                let newest = replica.points.back().ok_or("the replica has no restore point to return to")?;
                let steps = vec![
                    power(tgt, replica_vm, false),
                    Step::Revert { host: tgt, snap: Snap::Fixed(newest.snap) },
                    Step::Forget { host: tgt, snap: Snap::Fixed(fo.snap) },
                    power(source, vm, true),
                ];
                (steps, Then::FailoverUndone { point: newest.point, snap: newest.snap })
            }
            (ReplicaAction::Failback, ReplicaState::FailedOver(fo)) => {
                failover = Some(fo.clone());
                self.ids.point += 1;
                point = Some(RestorePointId(self.ids.point));
                let steps = vec![
                    power(tgt, replica_vm, false),
                    Step::Snapshot { host: tgt, vm: replica_vm, slot: Slot::Final },
                    Step::Snapshot { host: source, vm, slot: Slot::Before },
                ];
                (steps, Then::FailbackTasks)
            }
            (ReplicaAction::UndoFailback, ReplicaState::FailedBack(fb)) => {
                point = Some(fb.point);
                let steps = vec![
                    power(source, vm, false),
                    Step::Revert { host: source, snap: Snap::Fixed(fb.before) },
                    Step::Forget { host: source, snap: Snap::Fixed(fb.before) },
                    Step::Forget { host: tgt, snap: Snap::Fixed(fb.replica_snap) },
                    power(tgt, replica_vm, true),
                ];
                (steps, Then::FailbackUndone)
            }
            (ReplicaAction::CommitFailback, ReplicaState::FailedBack(fb)) => {
                let disks =
                    (0u16..).zip(&fb.after_disks).map(|(index, d)| PointDisk { index, bytes: d.bytes, change_id: d.change_id }).collect();
                let parent = replica.points.back().map(|p| p.point);
                let header =
                    PointHeader { point: fb.point, job, session, vm, snapshot_at: fb.after_at, snapshot: fb.replica_snap, parent, disks };
                let steps = vec![
                    Step::Forget { host: source, snap: Snap::Fixed(fb.before) },
                    Step::Forget { host: tgt, snap: Snap::Fixed(fb.failover.snap) },
                    Step::CommitMetadata { repository: r.metadata_repository, header },
                ];
                (steps, Then::FailbackCommitted)
            }
            (ReplicaAction::PermanentFailover, ReplicaState::FailedOver(fo)) => {
                (vec![Step::Forget { host: tgt, snap: Snap::Fixed(fo.snap) }], Then::Permanent)
            }
            (action, state) => return Err(format!("{} does not apply to {vm}: {}", action.name(), describe(state))),
        };
        Ok(ActionRun {
            job,
            vm,
            session,
            request: request.clone(),
            prior,
            steps: steps.into(),
            then,
            slots: BTreeMap::new(),
            point,
            failover,
            metadata: false,
            open_tasks: 0,
            failure: None,
        })
    }

    /// Sends the next step, or concludes.
    pub(super) fn run_steps(&mut self, id: u64) {
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let Some(step) = a.steps.front().cloned() else { return self.conclude(id) };
        let resolve = |snap: Snap| match snap {
            Snap::Fixed(s) => Some(s),
            Snap::Slot(slot) => a.slots.get(&slot).map(|s| s.0),
        };
        let (to, msg): (NodeId, Box<dyn FnOnce(OpId) -> Message>) = match step {
            Step::Power { host, vm, on, .. } => (host, Box::new(move |op| Message::SetPower { op, vm, on })),
            Step::Revert { host, snap } => match resolve(snap) {
                Some(snap) => (host, Box::new(move |op| Message::RevertVm { op, snap })),
                None => return self.step_failed(id, "a snapshot the action needs is missing".into()),
            },
            Step::Forget { host, snap } => match resolve(snap) {
                Some(snap) => (host, Box::new(move |op| Message::CommitSnapshot { op, snap })),
                None => return self.step_failed(id, "a snapshot the action needs is missing".into()),
            },
            Step::Snapshot { host, vm, .. } => (host, Box::new(move |op| Message::CreateSnapshot { op, vm })),
            Step::CommitMetadata { repository, header } => (repository, Box::new(move |op| Message::CommitReplicaPoint { op, header })),
        };
        let op = self.op(to, Op::Replica(ReplicaOp::Action { action: id, step: ActStep::Step }));
        self.out.send(to, msg(op));
    }

    /// Whether the action's current step may be sent again after its
    /// answer was lost: powering, reverting and removing a snapshot end in
    /// the same state however often they run; a snapshot taken again at
    /// worst leaves the first behind.
    pub(super) fn action_step_repeatable(&self, id: u64) -> bool {
        let step = self.replication.actions.get(&id).and_then(|a| a.steps.front());
        // A snapshot asked again may leave the first one behind if only its
        // answer was lost (as a backup's snapshot asked again may): a
        // leftover snapshot, never a failed failback.
        matches!(step, Some(Step::Power { .. } | Step::Revert { .. } | Step::Forget { .. } | Step::Snapshot { .. }))
    }

    pub(super) fn on_action_answer(&mut self, id: u64, _step: ActStep, answer: HostAnswer) {
        let now = self.now;
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let Some(step) = a.steps.pop_front() else { return };
        match (step, answer) {
            (Step::Snapshot { slot, .. }, Ok((snap, disks))) => {
                a.slots.insert(slot, (snap, disks, now));
            }
            (Step::CommitMetadata { .. }, answer) => a.metadata = answer.is_ok(),
            (_, Ok(_)) | (Step::Power { best_effort: true, .. }, Err(_)) => {}
            (step, Err(reason)) => return self.step_failed(id, format!("{}: {reason}", step_name(&step))),
        }
        self.run_steps(id);
    }

    fn step_failed(&mut self, id: u64, reason: String) {
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        a.steps.clear();
        a.failure = Some(reason);
        if matches!(a.then, Then::FailbackTasks | Then::FailedBack) {
            // The source may hold part of the replica: put it back.
            return self.undo_failed_failback(id);
        }
        self.finish_action(id, None);
    }

    fn conclude(&mut self, id: u64) {
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let slot = |a: &ActionRun, s: Slot| a.slots.get(&s).cloned();
        match a.then {
            Then::FailedOver { point } => {
                let Some((snap, disks, _)) = slot(a, Slot::Failover) else { return self.finish_action(id, None) };
                let change_ids = disks.iter().map(|d| d.change_id).collect();
                a.prior = ReplicaState::FailedOver(FailedOver { point, snap, change_ids });
                self.finish_action(id, Some(ActionOutcome::FailedOver { point, snap }));
            }
            Then::FailoverUndone { point, snap } => {
                a.prior = ReplicaState::Ready;
                self.finish_action(id, Some(ActionOutcome::FailoverUndone { point, snap }));
            }
            Then::FailbackTasks => self.start_failback_tasks(id),
            Then::FailedBack => {
                let (Some(failover), Some(point)) = (a.failover.clone(), a.point) else { return self.finish_action(id, None) };
                let (Some(b), Some(s0), Some(s1)) = (slot(a, Slot::Final), slot(a, Slot::Before), slot(a, Slot::After)) else {
                    return self.finish_action(id, None);
                };
                let (replica_snap, source_snap, before, session) = (b.0, s1.0, s0.0, a.session);
                a.prior = ReplicaState::FailedBack(FailedBack {
                    failover,
                    point,
                    replica_snap,
                    before: s0.0,
                    after: s1.0,
                    after_at: s1.2,
                    after_disks: s1.1,
                });
                self.finish_action(id, Some(ActionOutcome::FailedBack { replica_snap, source_snap, before, session }));
            }
            Then::FailbackFailed => self.finish_action(id, None),
            Then::FailbackUndone => {
                let (point, source_snap) = match &a.prior {
                    ReplicaState::FailedBack(fb) => (fb.point, fb.before),
                    _ => return self.finish_action(id, None),
                };
                if let ReplicaState::FailedBack(fb) = std::mem::replace(&mut a.prior, ReplicaState::Ready) {
                    a.prior = ReplicaState::FailedOver(fb.failover);
                }
                let job = a.job;
                self.abort_failback_metadata(job, point);
                self.finish_action(id, Some(ActionOutcome::FailbackUndone { source_snap }));
            }
            Then::FailbackCommitted => self.commit_failback(id),
            Then::Permanent => {
                let (job, vm) = (a.job, a.vm);
                a.prior = ReplicaState::Permanent;
                let points: Vec<ReplicaPoint> = self.replica(job, vm).map(|r| r.points.drain(..).collect()).unwrap_or_default();
                for p in &points {
                    self.drop_replica_point(job, vm, p);
                }
                self.finish_action(id, Some(ActionOutcome::PermanentlyFailedOver));
            }
        }
    }

    fn commit_failback(&mut self, id: u64) {
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let ReplicaState::FailedBack(fb) = std::mem::replace(&mut a.prior, ReplicaState::Ready) else {
            return self.finish_action(id, None);
        };
        let (job, vm, session, metadata) = (a.job, a.vm, a.session, a.metadata);
        let point = ReplicaPoint {
            point: fb.point,
            snap: fb.replica_snap,
            change_ids: fb.after_disks.iter().map(|d| d.change_id).collect(),
            metadata,
        };
        self.add_replica_points(job, session, vm, vec![(point, ReplicaOrigin::Source { snap: fb.after })]);
        self.retire_replica_points(job, vm);
        self.finish_action(id, Some(ActionOutcome::FailbackCommitted));
    }

    fn abort_failback_metadata(&mut self, job: JobId, point: RestorePointId) {
        if let Some(repository) = self.replication_job(job).map(|r| r.metadata_repository) {
            self.out.send(repository, Message::AbortReplicaPoint { point });
        }
    }

    /// Ends an action: success with an outcome, or its failure.
    fn finish_action(&mut self, id: u64, outcome: Option<ActionOutcome>) {
        let Some(a) = self.replication.actions.remove(&id) else { return };
        let result = match (outcome, a.failure) {
            (Some(outcome), None) => Ok(outcome),
            (_, Some(reason)) => Err(reason),
            (None, None) => Err("the action lost track of its snapshots".into()),
        };
        let replica = match self.replica(a.job, a.vm) {
            Some(r) => {
                r.state = a.prior;
                r.vm
            }
            None => VmId(u32::MAX),
        };
        let (job, vm, action) = (a.job, a.vm, a.request.action);
        self.out.event(Event::ReplicaActionFinished { job, vm, replica, action, result: result.clone() });
        let answer = result.map(|_| ());
        self.out.send(a.request.requester, Message::ReplicaActionDone { op: a.request.op, result: answer });
        self.start_queued_actions(vm);
    }

    fn start_failback_tasks(&mut self, id: u64) {
        let now = self.now;
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let count = a.slots.get(&Slot::Final).map_or(0, |s| s.1.len());
        a.open_tasks = count as u32;
        if count == 0 {
            return self.failback_task_closed(id, None);
        }
        for disk in 0..count {
            self.ids.task += 1;
            let task = TaskId(self.ids.task);
            self.tasks.insert(
                task,
                Task { kind: TaskKind::Replica(ReplicaWork::Failback { action: id }), disk: disk as u16, attempt: 1, proxy: None },
            );
            self.scheduler.enqueue(task, now);
        }
        self.schedule();
    }

    /// A failback disk task: from the replica's final snapshot back to the
    /// source VM.
    pub(super) fn failback_task(&self, id: TaskId, action: u64, disk: u16) -> Option<(SessionId, VmId, ReplicaTask)> {
        let a = self.replication.actions.get(&action)?;
        let r = self.replication_job(a.job)?;
        let replica = self.replication.replicas.get(&(a.job, a.vm))?;
        let fo = a.failover.as_ref()?;
        let p = replica.points.iter().find(|p| p.point == fo.point)?;
        let (b, b_disks, _) = a.slots.get(&Slot::Final)?;
        let (s0, _, _) = a.slots.get(&Slot::Before)?;
        let d = usize::from(disk);
        let since = |ids: &[Option<ChangeId>]| ids.get(d).copied().flatten();
        let source = self.source_host(a.vm);
        let (mode, target_changes, report_base) = match (since(&fo.change_ids), since(&p.change_ids)) {
            (Some(f), Some(ps)) if p.metadata => {
                (ReadMode::Changed { since: f }, Some(TargetChanges { host: source, snap: *s0, since: ps }), Some(p.point))
            }
            _ => (ReadMode::DigestCompare, None, None),
        };
        let sink = ReplicaSink {
            task: id,
            proxy: r.source_proxy,
            host: source,
            vm: a.vm,
            disk,
            disk_bytes: b_disks.get(d)?.bytes,
            block_size: r.block_size,
            hash_snap: Some(*s0),
            report: MetadataReport { repository: r.metadata_repository, point: a.point?, base: report_base, initial: None },
        };
        let spec = ReplicaTask {
            task: id,
            host: r.target_host,
            vm: replica.vm,
            snap: *b,
            mode,
            base: BaseDigests::Target,
            target_changes,
            compression: r.compression,
            sink,
            rate: None,
        };
        Some((a.session, a.vm, spec))
    }

    pub(super) fn failback_task_closed(&mut self, id: u64, failure: Option<String>) {
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        a.open_tasks = a.open_tasks.saturating_sub(1);
        if a.failure.is_none() {
            a.failure = failure;
        }
        if a.open_tasks > 0 {
            return;
        }
        if a.failure.is_some() {
            return self.undo_failed_failback(id);
        }
        let vm = a.vm;
        let source = self.source_host(vm);
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        a.steps = VecDeque::from([
            Step::Snapshot { host: source, vm, slot: Slot::After },
            Step::Power { host: source, vm, on: true, best_effort: false },
            Step::Forget { host: source, snap: Snap::Slot(Slot::After) },
        ]);
        a.then = Then::FailedBack;
        self.run_steps(id);
    }

    /// A failback that failed: the source returns to `S0`, the replica
    /// runs again, the pending metadata goes.
    fn undo_failed_failback(&mut self, id: u64) {
        let Some(job) = self.replication.actions.get(&id).map(|a| a.job) else { return };
        let Some(tgt) = self.replication_job(job).map(|r| r.target_host) else { return };
        let Some(a) = self.replication.actions.get(&id) else { return };
        let source = self.source_host(a.vm);
        let replica_vm = self.replication.replicas.get(&(a.job, a.vm)).map_or(VmId(u32::MAX), |r| r.vm);
        if let Some(point) = a.point {
            self.abort_failback_metadata(job, point);
        }
        let Some(a) = self.replication.actions.get_mut(&id) else { return };
        let mut steps = VecDeque::new();
        if a.slots.contains_key(&Slot::Before) {
            steps.push_back(Step::Revert { host: source, snap: Snap::Slot(Slot::Before) });
            steps.push_back(Step::Forget { host: source, snap: Snap::Slot(Slot::Before) });
        }
        if a.slots.contains_key(&Slot::Final) {
            steps.push_back(Step::Forget { host: tgt, snap: Snap::Slot(Slot::Final) });
        }
        steps.push_back(Step::Power { host: tgt, vm: replica_vm, on: true, best_effort: true });
        a.steps = steps;
        // A step failing from here on ends the action (see `step_failed`).
        a.then = Then::FailbackFailed;
        self.run_steps(id);
    }
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Power { on: true, .. } => "powering on",
        Step::Power { on: false, .. } => "powering off",
        Step::Revert { .. } => "reverting to a snapshot",
        Step::Snapshot { .. } => "taking a snapshot",
        Step::Forget { .. } => "removing a snapshot",
        Step::CommitMetadata { .. } => "committing replica metadata",
    }
}

fn describe(state: &ReplicaState) -> &'static str {
    match state {
        ReplicaState::Ready => "its replica is in normal replication",
        ReplicaState::Syncing(_) => "its replica is syncing",
        ReplicaState::Acting => "another action is under way",
        ReplicaState::FailedOver(_) => "its replica is failed over",
        ReplicaState::FailedBack(_) => "its replica is failed back",
        ReplicaState::Permanent => "its replica was permanently failed over",
    }
}
