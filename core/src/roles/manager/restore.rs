//! Restores, driven by the manager: a requester (the operator CLI, or the
//! simulator's checker) asks for a restore point to be restored onto a host
//! as a new VM. The manager registers the VM on the host, then hands one
//! restore task per disk to the scheduler like any other disk task, and
//! answers `RestoreDone` when every disk is written (or one failed for good).
//!
//! Replica seeding restores the same way, onto the new replica on the DR
//! host through the replication job's target proxy, and continues the sync
//! instead of answering anyone.

use super::throttle::Legs;
use super::{Manager, Op, Task, TaskKind};
use crate::BlockSize;
use crate::event::Event;
use crate::ids::{NodeId, RestorePointId, SessionId, TaskId, VmId};
use crate::wire::Message;
use crate::wire::message::{OpId, RestoreTask, TaskStats};

#[derive(Debug)]
pub(super) struct Restore {
    requester: NodeId,
    requester_op: OpId,
    pub(super) point: RestorePointId,
    pub(super) repository: NodeId,
    /// The proxy the restore must use (seeding: the target proxy).
    pub(super) proxy: Option<NodeId>,
    /// Seeding: the replication session and VM waiting for it.
    seed: Option<(SessionId, VmId)>,
    host: NodeId,
    vm: VmId,
    block_size: BlockSize,
    disk_bytes: Vec<u64>,
    open_tasks: u32,
    failure: Option<String>,
    /// The new VM's name, kept to ask the host again.
    name: String,
    /// The connection to the host broke before it said the VM exists: it
    /// is asked again when it is back.
    awaiting_host: bool,
}

impl Restore {
    /// A restore of `point` from `source` (repository, block size, disk
    /// sizes) onto `vm` at `host`, asked by nobody in particular (callers
    /// set the requester, proxy and seed they need).
    fn of(source: (NodeId, BlockSize, Vec<u64>), point: RestorePointId, host: NodeId, vm: VmId) -> Restore {
        let (repository, block_size, disk_bytes) = source;
        Restore {
            requester: NodeId(u32::MAX),
            requester_op: 0,
            point,
            repository,
            proxy: None,
            seed: None,
            host,
            vm,
            block_size,
            disk_bytes,
            open_tasks: 0,
            failure: None,
            name: String::new(),
            awaiting_host: false,
        }
    }
}

impl Manager {
    /// What restoring `point` needs: its repository, block size and disk
    /// sizes, if the catalog has it.
    fn restore_source(&self, point: RestorePointId) -> Option<(NodeId, BlockSize, Vec<u64>)> {
        let header = self.catalog.find(point)?;
        let b = self.backup_job(header.job)?;
        Some((b.repository, b.block_size, header.disks.iter().map(|d| d.bytes).collect()))
    }

    pub(super) fn start_restore(
        &mut self,
        requester: NodeId,
        requester_op: OpId,
        point: RestorePointId,
        host: NodeId,
        vm: VmId,
        name: String,
    ) {
        let busy = self.restores.len() >= super::validate::MAX_RESTORES;
        let source = self.restore_source(point).filter(|_| !busy);
        let Some(source) = source else {
            let result = Err(if busy {
                format!("{} restores are running, the most the manager runs at once: try again later", self.restores.len())
            } else {
                format!("restore point {point} is not in the catalog")
            });
            self.out.event(Event::RestoreFinished { point, host, vm, result: result.clone() });
            return self.out.send(requester, Message::RestoreDone { op: requester_op, result });
        };
        self.begin_restore(Restore { requester, requester_op, proxy: None, seed: None, ..Restore::of(source, point, host, vm) }, name);
    }

    /// Restores the seed backup `point` onto the new replica `vm` on `host`
    /// through `proxy`; the sync of `seed` (session, source VM) goes on
    /// when it is done.
    pub(super) fn start_seed_restore(
        &mut self,
        point: RestorePointId,
        host: NodeId,
        proxy: NodeId,
        vm: VmId,
        name: String,
        seed: (SessionId, VmId),
    ) {
        let Some(source) = self.restore_source(point) else {
            return self.seed_restored(seed.0, seed.1, point, Err(format!("seed {point} is not in the catalog")));
        };
        let restore = Restore { proxy: Some(proxy), seed: Some(seed), ..Restore::of(source, point, host, vm) };
        self.begin_restore(restore, name);
    }

    /// Registers the new VM, then restores its disks.
    fn begin_restore(&mut self, restore: Restore, name: String) {
        self.out.event(Event::RestoreStarted { point: restore.point, host: restore.host, vm: restore.vm });
        self.ids.op += 1;
        let id = self.ids.op;
        self.restores.insert(id, Restore { name, ..restore });
        self.create_vm(id);
    }

    /// Asks the restore's host to create the new VM.
    fn create_vm(&mut self, restore: u64) {
        let Some(r) = self.restores.get_mut(&restore) else { return };
        r.awaiting_host = false;
        let (host, vm, name, disks) = (r.host, r.vm, r.name.clone(), r.disk_bytes.clone());
        let op = self.op(host, Op::CreateVm { restore });
        self.out.send(host, Message::CreateVm { op, vm, name, disks });
    }

    /// The host went away before it answered: ask again when it is back.
    pub(super) fn restore_waits_for_host(&mut self, restore: u64) {
        if let Some(r) = self.restores.get_mut(&restore) {
            r.awaiting_host = true;
        }
    }

    /// A host is back: the restores waiting for it ask again.
    pub(super) fn resume_restores_on(&mut self, host: NodeId) {
        let waiting: Vec<u64> = self.restores.iter().filter(|(_, r)| r.awaiting_host && r.host == host).map(|(id, _)| *id).collect();
        for restore in waiting {
            self.create_vm(restore);
        }
    }

    pub(super) fn on_vm_created(&mut self, restore: u64, result: Result<(), String>) {
        let Some(r) = self.restores.get_mut(&restore) else { return };
        if let Err(reason) = result {
            r.failure = Some(format!("the host could not create the VM: {reason}"));
            return self.finish_restore(restore);
        }
        r.open_tasks = r.disk_bytes.len() as u32;
        if r.open_tasks == 0 {
            return self.finish_restore(restore);
        }
        for disk in 0..r.disk_bytes.len() {
            self.ids.task += 1;
            let task = TaskId(self.ids.task);
            self.tasks.insert(task, Task { kind: TaskKind::Restore { restore }, disk: disk as u16, attempt: 1, proxy: None });
            self.scheduler.enqueue(task, self.now);
        }
        self.schedule();
    }

    pub(super) fn start_restore_task(&mut self, id: TaskId, proxy: NodeId) {
        let Some(task) = self.tasks.get(&id).copied() else { return };
        let TaskKind::Restore { restore } = task.kind else { return };
        let Some(legs) = self.restores.get(&restore).map(|r| Legs { proxy, source: r.repository, destination: r.host }) else { return };
        let rate = self.throttle_admit(id, legs, None);
        let Some(r) = self.restores.get(&restore) else { return };
        let spec = RestoreTask {
            task: id,
            point: r.point,
            repository: r.repository,
            host: r.host,
            vm: r.vm,
            disk: task.disk,
            disk_bytes: r.disk_bytes.get(task.disk as usize).copied().unwrap_or(0),
            block_size: r.block_size,
            rate,
        };
        self.out.send(proxy, Message::StartRestoreTask(spec));
    }

    /// A restore task ended for good (succeeded, or failed every attempt).
    pub(super) fn restore_task_done(&mut self, restore: u64, result: Result<TaskStats, String>) {
        let Some(r) = self.restores.get_mut(&restore) else { return };
        r.open_tasks = r.open_tasks.saturating_sub(1);
        if let Err(reason) = result
            && r.failure.is_none()
        {
            r.failure = Some(reason);
        }
        if r.open_tasks == 0 {
            self.finish_restore(restore);
        }
    }

    fn finish_restore(&mut self, restore: u64) {
        let Some(r) = self.restores.remove(&restore) else { return };
        let result = r.failure.map_or(Ok(()), Err);
        self.out.event(Event::RestoreFinished { point: r.point, host: r.host, vm: r.vm, result: result.clone() });
        match r.seed {
            Some((session, vm)) => self.seed_restored(session, vm, r.point, result),
            None => self.out.send(r.requester, Message::RestoreDone { op: r.requester_op, result }),
        }
    }
}
