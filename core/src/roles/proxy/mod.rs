//! The proxy role: the data mover. It runs disk tasks the manager hands it,
//! each an independent pipeline ([`backup_task`]), and routes every reply to
//! the task it belongs to. For replication it is either end of a replica
//! disk sync: the sender ([`replica_source`], started by the manager) or the
//! receiver ([`replica_target`], opened by the sender).

mod backup_task;
mod replica_source;
mod replica_target;
mod restore_task;
mod walk;

use crate::ids::{NodeId, TaskId};
use crate::node::{Input, Node, Outbox, Output, TimerId};
use crate::time::Timestamp;
use crate::wire::Message;
use backup_task::{BackupRun, Progress};
use replica_source::ReplicaSource;
use replica_target::ReplicaTarget;
use restore_task::RestoreRun;
use std::collections::{BTreeMap, BTreeSet};

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

    fn depends_on(&self, peer: NodeId) -> bool {
        match self {
            Run::Backup(r) => r.depends_on(peer),
            Run::Restore(r) => r.depends_on(peer),
            Run::ReplicaSource(r) => r.depends_on(peer),
            Run::ReplicaTarget(r) => r.depends_on(peer),
        }
    }

    fn is_suspended(&self) -> bool {
        match self {
            Run::Backup(r) => r.is_suspended(),
            Run::Restore(r) => r.is_suspended(),
            _ => false,
        }
    }

    fn resume(&mut self, out: &mut Outbox) -> Progress {
        match self {
            Run::Backup(r) => r.resume(out),
            Run::Restore(r) => r.resume(out),
            _ => Progress::Running,
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

/// How long a suspended restore waits for its peers to come back.
pub const RESUME_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

#[derive(Debug, Default)]
pub struct Proxy {
    tasks: BTreeMap<TaskId, Run>,
    /// Replica receivers opened so far (tells attempts of a task apart).
    opened: u64,
    /// Peers whose connection is down now.
    down: BTreeSet<NodeId>,
    out: Outbox,
}

impl Proxy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tasks running now.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        let task = match &msg {
            Message::StartBackupTask(spec) => {
                let run = BackupRun::start(from, spec.clone(), &mut self.out);
                self.tasks.insert(spec.task, Run::Backup(run));
                return;
            }
            Message::StartRestoreTask(spec) => {
                let (run, progress) = RestoreRun::start(from, spec.clone(), &mut self.out);
                if !progress.is_finished() {
                    self.tasks.insert(spec.task, Run::Restore(run));
                }
                return;
            }
            Message::StartReplicaTask(spec) => {
                let run = ReplicaSource::start(from, spec.clone(), &mut self.out);
                self.tasks.insert(spec.task, Run::ReplicaSource(run));
                return;
            }
            Message::OpenReplica(sink) => {
                self.opened += 1;
                let run = ReplicaTarget::open(from, sink.clone(), self.opened);
                self.tasks.insert(sink.task, Run::ReplicaTarget(run));
                return;
            }
            Message::Ping { seq } => return self.out.send(from, Message::Pong { seq: *seq }),
            // The manager restarted: its earlier tasks are void, and the
            // slots they held are free in its new view.
            Message::AbortTasks => return self.tasks.clear(),
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
            | Message::ReplicaFinished { task, .. } => *task,
            _ => return,
        };
        if let Some(run) = self.tasks.get_mut(&task)
            && run.on_message(msg, &mut self.out).is_finished()
        {
            self.tasks.remove(&task);
        }
    }

    /// A peer a task depends on went away. Backups and restores wait for it
    /// to come back (up to [`RESUME_WAIT`]) and go on from where they were;
    /// other tasks fail now and the manager retries them.
    fn on_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        self.down.insert(peer);
        let lost: Vec<TaskId> = self.tasks.iter().filter(|(_, run)| run.depends_on(peer)).map(|(id, _)| *id).collect();
        for task in lost {
            match self.tasks.get_mut(&task) {
                Some(Run::Restore(run)) => {
                    run.suspend();
                    self.out.set_timer(TimerId(task.0), now + RESUME_WAIT);
                }
                Some(Run::Backup(run)) => {
                    run.suspend();
                    self.out.set_timer(TimerId(task.0), now + RESUME_WAIT);
                }
                Some(_) => {
                    if let Some(mut run) = self.tasks.remove(&task) {
                        run.fail(format!("lost connection to {peer}"), &mut self.out);
                    }
                }
                None => {}
            }
        }
    }

    /// Suspended restores go on once every peer they need is back.
    fn on_peer_up(&mut self, peer: NodeId) {
        self.down.remove(&peer);
        let ready: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, run)| run.is_suspended() && !self.down.iter().any(|d| run.depends_on(*d)))
            .map(|(id, _)| *id)
            .collect();
        for task in ready {
            self.out.cancel_timer(TimerId(task.0));
            if let Some(run) = self.tasks.get_mut(&task)
                && run.resume(&mut self.out).is_finished()
            {
                self.tasks.remove(&task);
            }
        }
    }

    /// A suspended restore waited too long for its peer.
    fn on_resume_timeout(&mut self, task: TaskId) {
        if self.tasks.get(&task).is_some_and(Run::is_suspended)
            && let Some(mut run) = self.tasks.remove(&task)
        {
            run.fail("a peer stayed unreachable".into(), &mut self.out);
        }
    }
}

impl Node for Proxy {
    fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::Start => {
                self.tasks.clear();
                self.down.clear();
            }
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::PeerDown(peer) => self.on_peer_down(now, peer),
            Input::PeerUp(peer) => self.on_peer_up(peer),
            Input::Timer(TimerId(task)) => self.on_resume_timeout(TaskId(task)),
            Input::Storage(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
