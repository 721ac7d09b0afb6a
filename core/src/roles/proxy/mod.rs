//! The proxy role: the data mover. It runs disk tasks the manager hands it,
//! each an independent pipeline ([`backup_task`]), and routes every reply to
//! the task it belongs to.

mod backup_task;
mod restore_task;

use crate::ids::{NodeId, TaskId};
use crate::node::{Input, Node, Outbox, Output};
use crate::time::Timestamp;
use crate::wire::Message;
use backup_task::{BackupRun, Progress};
use restore_task::RestoreRun;
use std::collections::BTreeMap;

/// A task this proxy runs.
#[derive(Debug)]
enum Run {
    Backup(BackupRun),
    Restore(RestoreRun),
}

impl Run {
    fn on_message(&mut self, msg: Message, out: &mut Outbox) -> Progress {
        match self {
            Run::Backup(r) => r.on_message(msg, out),
            Run::Restore(r) => r.on_message(msg, out),
        }
    }

    fn depends_on(&self, peer: NodeId) -> bool {
        match self {
            Run::Backup(r) => r.depends_on(peer),
            Run::Restore(r) => r.depends_on(peer),
        }
    }

    fn fail(&mut self, reason: String, out: &mut Outbox) {
        match self {
            Run::Backup(r) => r.fail(reason, out),
            Run::Restore(r) => r.fail(reason, out),
        }
    }
}

#[derive(Debug, Default)]
pub struct Proxy {
    tasks: BTreeMap<TaskId, Run>,
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
            Message::Ping { seq } => return self.out.send(from, Message::Pong { seq: *seq }),
            Message::ChangedBlocksReply { task, .. }
            | Message::BlocksRead { task, .. }
            | Message::Digests { task, .. }
            | Message::HaveReply { task, .. }
            | Message::BlocksAck { task, .. }
            | Message::DiskFinished { task, .. }
            | Message::PointBlocks { task, .. }
            | Message::BlocksWritten { task, .. } => *task,
            _ => return,
        };
        if let Some(run) = self.tasks.get_mut(&task)
            && run.on_message(msg, &mut self.out).is_finished()
        {
            self.tasks.remove(&task);
        }
    }

    /// A peer a task depends on went away: those tasks fail now (the
    /// manager retries them) rather than wait forever.
    fn on_peer_down(&mut self, peer: NodeId) {
        let lost: Vec<TaskId> = self.tasks.iter().filter(|(_, run)| run.depends_on(peer)).map(|(id, _)| *id).collect();
        for task in lost {
            if let Some(mut run) = self.tasks.remove(&task) {
                run.fail(format!("lost connection to {peer}"), &mut self.out);
            }
        }
    }
}

impl Node for Proxy {
    fn handle(&mut self, _now: Timestamp, input: Input) {
        match input {
            Input::Start => self.tasks.clear(),
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::PeerDown(peer) => self.on_peer_down(peer),
            Input::Timer(_) | Input::PeerUp(_) | Input::Storage(_) | Input::Hypervisor(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}
