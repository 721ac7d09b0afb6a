//! The proxy role: the data mover. It runs disk tasks the manager hands it,
//! each an independent pipeline ([`backup_task`]), and routes every reply to
//! the task it belongs to. For replication it is either end of a replica
//! disk sync: the sender ([`replica_source`], started by the manager) or the
//! receiver ([`replica_target`], opened by the sender). In direct mode a
//! layer around it ([`direct`]) reads the host's datastore itself.

mod backup_task;
mod direct;
mod paced;
mod replica_source;
mod replica_target;
mod restore_task;
mod timers;
mod validate;
mod walk;

use crate::ids::{NodeId, TaskId};
use crate::node::{Input, Node, Outbox, Output};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::TaskRate;
pub use backup_task::{BATCH_BYTES, WINDOW};
use backup_task::{BackupRun, Progress};
pub use direct::Direct;
use paced::PacedFlow;
use replica_source::ReplicaSource;
use replica_target::ReplicaTarget;
use restore_task::RestoreRun;
use std::collections::{BTreeMap, BTreeSet};
use timers::Timer;

/// A task this proxy runs.
#[derive(Debug)]
enum Run {
    Backup(BackupRun),
    Restore(RestoreRun),
    ReplicaSource(ReplicaSource),
    ReplicaTarget(ReplicaTarget),
}

impl Run {
    /// Feeds a reply to the task; a failed step ends it with `TaskDone`.
    fn on_message(&mut self, msg: Message, out: &mut Outbox) -> Progress {
        let step = match self {
            Run::Backup(r) => r.step(msg, out),
            Run::Restore(r) => r.step(msg, out),
            Run::ReplicaSource(r) => r.step(msg, out),
            Run::ReplicaTarget(r) => r.step(msg, out),
        };
        step.unwrap_or_else(|reason| {
            self.fail(reason, out);
            Progress::Finished
        })
    }

    /// The manager that started the task, for the tasks a manager tracks
    /// (a replica receiver is opened by the sending proxy instead).
    fn manager(&self) -> Option<NodeId> {
        match self {
            Run::Backup(r) => Some(r.manager()),
            Run::Restore(r) => Some(r.manager()),
            Run::ReplicaSource(r) => Some(r.manager()),
            Run::ReplicaTarget(_) => None,
        }
    }

    fn depends_on(&self, peer: NodeId) -> bool {
        match self {
            Run::Backup(r) => r.depends_on(peer),
            Run::Restore(r) => r.depends_on(peer),
            Run::ReplicaSource(r) => r.depends_on(peer),
            Run::ReplicaTarget(r) => r.depends_on(peer),
        }
    }

    /// Whether a run of this kind takes `msg` at all: a restore never
    /// gets blocks to hash, a backup never a replica acknowledgement. The
    /// wrong kind from a peer the task depends on is refused, not fed to
    /// a step that would ignore it.
    fn takes(&self, msg: &Message) -> bool {
        use Message as M;
        match self {
            Run::Backup(_) => matches!(
                msg,
                M::ChangedBlocksReply { .. }
                    | M::BlocksRead { .. }
                    | M::Digests { .. }
                    | M::HaveReply { .. }
                    | M::BlocksAck { .. }
                    | M::DiskFinished { .. }
                    | M::Progress { .. }
            ),
            Run::Restore(_) => matches!(msg, M::PointBlocks { .. } | M::BlocksWritten { .. }),
            Run::ReplicaSource(_) => matches!(
                msg,
                M::ChangedBlocksReply { .. }
                    | M::BlocksRead { .. }
                    | M::Digests { .. }
                    | M::ReplicaAck { .. }
                    | M::ReplicaFinished { .. }
                    | M::ReplicaProgress { .. }
            ),
            Run::ReplicaTarget(_) => matches!(
                msg,
                M::HashBlocks { .. }
                    | M::BlocksRead { .. }
                    | M::ReplicaBlocks { .. }
                    | M::BlocksWritten { .. }
                    | M::FinishReplica { .. }
                    | M::DiskFinished { .. }
            ),
        }
    }

    /// `peer`, which the task depends on, went away: whether the task
    /// waits for it (suspended, going on from where it was once it is
    /// back) rather than failing now.
    fn suspend_for(&mut self, peer: NodeId) -> bool {
        match self {
            Run::Backup(r) => {
                r.suspend();
                true
            }
            Run::Restore(r) => {
                r.suspend();
                true
            }
            Run::ReplicaSource(r) => r.suspend(),
            Run::ReplicaTarget(r) => r.suspend_for(peer),
        }
    }

    fn is_suspended(&self) -> bool {
        match self {
            Run::Backup(r) => r.is_suspended(),
            Run::Restore(r) => r.is_suspended(),
            Run::ReplicaSource(r) => r.is_suspended(),
            Run::ReplicaTarget(r) => r.is_suspended(),
        }
    }

    /// Every peer of a suspended task is back. A replica receiver stays
    /// suspended: it goes on when its sender asks (`ResumeReplica`).
    fn resume(&mut self, out: &mut Outbox) -> Progress {
        match self {
            Run::Backup(r) => r.resume(out),
            Run::Restore(r) => r.resume(out),
            Run::ReplicaSource(r) => r.resume(out),
            Run::ReplicaTarget(_) => Progress::Running,
        }
    }

    fn fail(&mut self, reason: String, out: &mut Outbox) {
        match self {
            Run::Backup(r) => r.fail(reason, out),
            Run::Restore(r) => r.fail(reason, out),
            Run::ReplicaSource(r) => r.fail(reason, out),
            Run::ReplicaTarget(r) => r.fail(reason, out),
        }
    }
}

/// How long a proxy runs a manager's tasks on after losing the connection
/// to it. A short break costs nothing: the manager finds them running when
/// it is back. After this the proxy drops them, a margin before the
/// manager gives up on them and starts them again
/// ([`crate::roles::manager::RECONNECT_GRACE`]), so a task never runs
/// twice at once (twice the traffic a throttling rule allowed it).
pub const MANAGER_GRACE: std::time::Duration = std::time::Duration::from_secs(100);

/// How long a suspended restore waits for its peers to come back.
pub const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// How often a proxy tells its manager which of its tasks it runs (while
/// it runs any): the heartbeat the manager's task watchdog listens for.
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Proxy {
    tasks: BTreeMap<TaskId, Run>,
    /// Runs started so far: each gets its own range of batch ids (see
    /// [`Proxy::batch_range`]).
    runs: u64,
    /// Peers whose connection is down now.
    down: BTreeSet<NodeId>,
    /// Throttled tasks' pacing.
    paced: BTreeMap<TaskId, PacedFlow>,
    /// Per set of paced peers, when the traffic of the throttled tasks
    /// that ended has drained: the next task on that path starts there.
    drained: BTreeMap<Vec<NodeId>, Timestamp>,
    /// Whether the running-tasks report timer is armed.
    reporting: bool,
    /// Managers with tasks here whose connection is down, since when.
    managers_lost: BTreeMap<NodeId, Timestamp>,
    /// A planted bug (see [`Proxy::ignoring_throttles`]).
    ignore_throttles: bool,
    out: Outbox,
}

impl Proxy {
    pub fn new() -> Self {
        Self::default()
    }

    /// A proxy that runs every task at full speed whatever rate it was
    /// given. Only for proving that the simulator's checker notices a
    /// throttling rule broken; never deploy it.
    pub fn ignoring_throttles() -> Self {
        Proxy { ignore_throttles: true, ..Self::default() }
    }

    /// Number of tasks running now.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    fn on_message(&mut self, now: Timestamp, from: NodeId, msg: Message) {
        if let Err(reason) = validate::check(&msg) {
            return self.out.refuse(from, format!("{}: {reason}", msg.kind()));
        }
        let task = match msg {
            Message::StartBackupTask(spec) => {
                let (task, rate) = (spec.task, spec.rate.clone());
                let first = self.batch_range();
                return self.start(now, task, rate, |out| (Run::Backup(BackupRun::start(from, *spec, first, out)), Progress::Running));
            }
            Message::StartRestoreTask(spec) => {
                let (task, rate) = (spec.task, spec.rate.clone());
                let first = self.batch_range();
                return self.start(now, task, rate, |out| {
                    let (run, progress) = RestoreRun::start(from, spec, first, out);
                    (Run::Restore(run), progress)
                });
            }
            Message::StartReplicaTask(spec) => {
                let (task, rate) = (spec.task, spec.rate.clone());
                let first = self.batch_range();
                return self
                    .start(now, task, rate, |out| (Run::ReplicaSource(ReplicaSource::start(from, *spec, first, out)), Progress::Running));
            }
            Message::OpenReplica(sink) => {
                let task = sink.task;
                let run = ReplicaTarget::open(from, *sink, self.batch_range());
                self.out.cancel_timer(Timer::Resume(task).id());
                self.tasks.insert(task, Run::ReplicaTarget(run));
                return;
            }
            Message::ResumeReplica { task } => return self.resume_replica(from, task),
            Message::SetTaskRate { task, bytes_per_sec } => return self.set_rate(now, task, bytes_per_sec),
            Message::CancelTask { task } => return self.drop_task(task),
            Message::ListTasks { op } => return self.report_tasks(from, Some(op)),
            Message::Ping { seq } => return self.out.send(from, Message::Pong { seq }),
            // The manager restarted: its earlier tasks are void, and the
            // slots they held are free in its new view.
            Message::AbortTasks => {
                self.tasks.clear();
                self.paced.clear();
                return;
            }
            Message::ChangedBlocksReply { task, .. }
            | Message::BlocksRead { task, .. }
            | Message::Digests { task, .. }
            | Message::HaveReply { task, .. }
            | Message::BlocksAck { task, .. }
            | Message::DiskFinished { task, .. }
            | Message::Progress { task, .. }
            | Message::PointBlocks { task, .. }
            | Message::BlocksWritten { task, .. }
            | Message::HashBlocks { task, .. }
            | Message::ReplicaBlocks { task, .. }
            | Message::ReplicaAck { task, .. }
            | Message::FinishReplica { task }
            | Message::ReplicaFinished { task, .. }
            | Message::ReplicaProgress { task, .. } => task,
            // The driver measures round trips; nothing to do.
            Message::Pong { .. } => return,
            other => return self.out.refuse_unhandled(from, "proxy", &other),
        };
        // A reply is believed only from a peer the task asked something,
        // and only if it is a kind of reply the task can get.
        if let Some(run) = self.tasks.get(&task) {
            if !run.depends_on(from) {
                return self.out.refuse(from, format!("{} for task {}, which asked nothing of {from}", msg.kind(), task.0));
            }
            if !run.takes(&msg) {
                return self.out.refuse(from, format!("{} for task {}, which never takes one", msg.kind(), task.0));
            }
        }
        if let Some(flow) = self.paced.get_mut(&task) {
            flow.received(now, from, &msg);
        }
        self.drive(now, task, |run, out| run.on_message(msg, out));
    }

    /// Starts a task the manager handed over, paced if it has a rate.
    fn start(&mut self, now: Timestamp, task: TaskId, rate: Option<TaskRate>, start: impl FnOnce(&mut Outbox) -> (Run, Progress)) {
        if let Some(rate) = rate.filter(|_| !self.ignore_throttles) {
            let drained_at = self.drained.get(&rate.peers).copied().unwrap_or(Timestamp::ZERO);
            self.paced.insert(task, PacedFlow::new(rate, Timer::Pace(task).id(), drained_at));
        }
        let (run, progress) = paced::through(self.paced.get_mut(&task), now, &mut self.out, start);
        if progress.is_finished() {
            self.finished(task);
        } else {
            self.tasks.insert(task, run);
            if !self.reporting {
                self.reporting = true;
                self.out.set_timer(Timer::Report.id(), now + REPORT_EVERY);
            }
        }
    }

    /// The first batch id of a new run. Runs of one task (the manager gave
    /// up on one and started it again, possibly while the first still ran)
    /// share a task id, so replies are told apart by batch: each run numbers
    /// its batches from its own range, 2^32 wide (a run never asks for 2^32
    /// batches: that is 32 PiB).
    fn batch_range(&mut self) -> u64 {
        self.runs += 1;
        self.runs << 32
    }

    /// Forgets a task without a word (the manager gave up on it). What it
    /// still had queued is dropped, but what it sent keeps its path busy
    /// for the next task.
    fn drop_task(&mut self, task: TaskId) {
        self.tasks.remove(&task);
        self.out.cancel_timer(Timer::Resume(task).id());
        self.retire_flow(task);
    }

    /// Managers gone for [`MANAGER_GRACE`] lose their tasks here.
    fn on_orphan_timer(&mut self, now: Timestamp) {
        let gone: Vec<NodeId> =
            self.managers_lost.iter().filter(|(_, at)| now.saturating_since(**at) >= MANAGER_GRACE).map(|(m, _)| *m).collect();
        for manager in gone {
            self.managers_lost.remove(&manager);
            let orphans: Vec<TaskId> = self.tasks.iter().filter(|(_, run)| run.manager() == Some(manager)).map(|(id, _)| *id).collect();
            for task in orphans {
                self.drop_task(task);
            }
        }
        if let Some(first) = self.managers_lost.values().min() {
            self.out.set_timer(Timer::Orphans.id(), *first + MANAGER_GRACE);
        }
    }

    /// Tells `manager` which of its tasks this proxy runs: the answer to
    /// its `ListTasks` (`op`), or the periodic heartbeat.
    fn report_tasks(&mut self, manager: NodeId, op: Option<u64>) {
        let tasks = self.tasks.iter().filter(|(_, run)| run.manager() == Some(manager)).map(|(id, _)| *id).collect();
        self.out.send(manager, Message::TasksRunning { op, tasks });
    }

    /// The heartbeat: every manager with tasks here hears which run, so
    /// its watchdog can tell a live task from one lost with its messages.
    fn on_report_timer(&mut self, now: Timestamp) {
        let managers: BTreeSet<NodeId> = self.tasks.values().filter_map(Run::manager).collect();
        for manager in &managers {
            self.report_tasks(*manager, None);
        }
        self.reporting = !self.tasks.is_empty();
        if self.reporting {
            self.out.set_timer(Timer::Report.id(), now + REPORT_EVERY);
        }
    }

    /// Runs one step of a task, its sends going through its pacer if it
    /// has one; forgets the task if the step finished it.
    fn drive(&mut self, now: Timestamp, task: TaskId, step: impl FnOnce(&mut Run, &mut Outbox) -> Progress) {
        let Some(run) = self.tasks.get_mut(&task) else { return };
        if paced::through(self.paced.get_mut(&task), now, &mut self.out, |out| step(run, out)).is_finished() {
            self.tasks.remove(&task);
            self.finished(task);
        }
    }

    /// A task ended: whatever it still had queued goes out as sent.
    fn finished(&mut self, task: TaskId) {
        if let Some(flow) = self.retire_flow(task) {
            flow.flush(&mut self.out);
        }
    }

    /// Forgets a task's pacing, remembering when its path drains.
    fn retire_flow(&mut self, task: TaskId) -> Option<PacedFlow> {
        let flow = self.paced.remove(&task)?;
        let drained = self.drained.entry(flow.peers().to_vec()).or_default();
        *drained = (*drained).max(flow.drained_at());
        Some(flow)
    }

    /// The manager changed a throttled task's rate (tasks sharing a cap
    /// started or ended).
    fn set_rate(&mut self, now: Timestamp, task: TaskId, bytes_per_sec: u64) {
        if let Some(flow) = self.paced.get_mut(&task) {
            flow.set_rate(now, bytes_per_sec, &mut self.out);
        }
    }

    /// A paced task's queue may move on.
    fn on_pace_timer(&mut self, now: Timestamp, task: TaskId) {
        if let Some(flow) = self.paced.get_mut(&task) {
            flow.release(now, &mut self.out);
        }
    }

    /// A replica sender is back and asks its receiver to go on (see
    /// [`replica_source`]); a receiver this proxy no longer has (it
    /// restarted, or gave up waiting) says so, and the sync starts over.
    fn resume_replica(&mut self, from: NodeId, task: TaskId) {
        if let Some(Run::ReplicaTarget(run)) = self.tasks.get_mut(&task)
            && run.resume(from, &mut self.out)
        {
            self.out.cancel_timer(Timer::Resume(task).id());
            return;
        }
        let written = Err(format!("no replica sync of task {} from {from} is open here", task.0));
        self.out.send(from, Message::ReplicaProgress { task, written });
    }

    /// A peer a task depends on went away. Most tasks wait for it to come
    /// back (up to [`RESUME_WAIT`]) and go on from where they were (see
    /// [`Run::suspend_for`]); the others fail now and the manager retries
    /// them.
    fn on_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        self.down.insert(peer);
        if self.tasks.values().any(|run| run.manager() == Some(peer)) && !self.managers_lost.contains_key(&peer) {
            self.managers_lost.insert(peer, now);
            let first = self.managers_lost.values().min().copied().unwrap_or(now);
            self.out.set_timer(Timer::Orphans.id(), first + MANAGER_GRACE);
        }
        for flow in self.paced.values_mut() {
            flow.discard_to(peer);
        }
        let lost: Vec<TaskId> = self.tasks.iter().filter(|(_, run)| run.depends_on(peer)).map(|(id, _)| *id).collect();
        for task in lost {
            let Some(run) = self.tasks.get_mut(&task) else { continue };
            let was_suspended = run.is_suspended();
            if run.suspend_for(peer) {
                // The wait runs from the first peer lost.
                if !was_suspended {
                    self.out.set_timer(Timer::Resume(task).id(), now + RESUME_WAIT);
                }
            } else {
                self.drive(now, task, |run, out| {
                    run.fail(format!("lost connection to {peer}"), out);
                    Progress::Finished
                });
            }
        }
    }

    /// Suspended tasks go on once every peer they need is back.
    fn on_peer_up(&mut self, now: Timestamp, peer: NodeId) {
        self.down.remove(&peer);
        self.managers_lost.remove(&peer);
        let ready: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, run)| run.is_suspended() && !self.down.iter().any(|d| run.depends_on(*d)))
            .map(|(id, _)| *id)
            .collect();
        for task in ready {
            self.drive(now, task, Run::resume);
            if !self.tasks.get(&task).is_some_and(Run::is_suspended) {
                self.out.cancel_timer(Timer::Resume(task).id());
            }
        }
    }

    /// A suspended restore waited too long for its peer.
    fn on_resume_timeout(&mut self, now: Timestamp, task: TaskId) {
        if self.tasks.get(&task).is_some_and(Run::is_suspended) {
            self.drive(now, task, |run, out| {
                run.fail("a peer stayed unreachable".into(), out);
                Progress::Finished
            });
        }
    }
}

impl Node for Proxy {
    fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Start => {
                self.tasks.clear();
                self.paced.clear();
                self.drained.clear();
                self.down.clear();
                self.reporting = false;
                self.managers_lost.clear();
            }
            Input::Message { from, msg } => self.on_message(now, from, msg),
            Input::PeerDown(peer) => self.on_peer_down(now, peer),
            Input::PeerUp(peer) => self.on_peer_up(now, peer),
            Input::Timer(id) => match Timer::from_id(id) {
                Timer::Report => self.on_report_timer(now),
                Timer::Orphans => self.on_orphan_timer(now),
                Timer::Pace(task) => self.on_pace_timer(now, task),
                Timer::Resume(task) => self.on_resume_timeout(now, task),
            },
            Input::Storage(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

#[cfg(test)]
mod tests;
