//! Backup windows: a backup session still transferring when its job's
//! window closes is terminated, as an operator expects of "terminate the
//! job if it exceeds the allowed backup window". VMs already committing
//! finish; the others fail with the reason: their tasks are cancelled
//! (queued ones dropped, running ones told to stop) and their pending
//! points aborted at the repository, so nothing partial is ever visible.
//! The next session catches up by itself: it reads the changes since the
//! newest committed point, which include everything the terminated one
//! did not save.

use super::{Manager, TaskKind, VmState};
use crate::event::Event;
use crate::ids::{DiskId, SessionId, TaskId, VmId};
use crate::wire::Message;

impl Manager {
    /// The window of the job at `index` closed: terminate its running
    /// session, if any (the timer is re-armed at every session start, so it
    /// can only fire for the newest session).
    pub(super) fn on_window_timer(&mut self, index: usize) {
        if self.planted.ignore_windows {
            return;
        }
        let Some(spec) = self.cfg.jobs.get(index) else { return };
        let Some(window) = self.backup_job(spec.id).and_then(|b| b.window) else { return };
        let Some(&session) = self.running.get(&spec.id) else { return };
        let reason = format!("the session exceeded its backup window of {}s", window.as_secs());
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let mut stopped = Vec::new();
        for (vm, run) in s.vms.iter_mut() {
            if matches!(run.state, VmState::Snapshotting | VmState::Transferring) && run.failure.is_none() {
                run.failure = Some(reason.clone());
                if run.state == VmState::Transferring {
                    stopped.push(*vm);
                }
            }
        }
        // Snapshotting VMs release their snapshot when it arrives.
        for vm in stopped {
            self.cancel_vm_tasks(session, vm);
            if let Some(run) = self.vm_run(session, vm) {
                run.open_tasks = 0;
            }
            self.vm_transferred(session, vm);
        }
        self.schedule();
    }

    /// Drops every task of a VM's backup: queued ones leave the queue,
    /// running ones free their slot and their proxy is told to stop.
    fn cancel_vm_tasks(&mut self, session: SessionId, vm: VmId) {
        let ids: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, t)| matches!(t.kind, TaskKind::Backup { session: s, vm: v } if s == session && v == vm))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(task) = self.tasks.remove(&id) else { continue };
            self.scheduler.cancel(id);
            if let Some(proxy) = task.proxy {
                self.scheduler.release(proxy, self.needs(task.kind).1);
                self.out.send(proxy, Message::CancelTask { task: id });
                let disk = DiskId { vm, index: task.disk };
                self.out.event(Event::TaskFinished { task: id, session, disk, proxy, result: Err("cancelled".into()) });
            }
            let changes = self.throttle.release(&self.cfg, id);
            self.send_rate_changes(changes);
        }
    }
}
