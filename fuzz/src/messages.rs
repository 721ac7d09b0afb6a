//! A message of any kind, its fields drawn by [`Gen`]: with a context
//! (the request it answers, or the message it mutates) its ids are mostly
//! that message's; without one they are the role's recent ones or edges.
//!
//! Kinds are named as [`Message::kind`] names them and listed by
//! [`crate::variants::message_kinds`]: a kind [`build`] does not know
//! yields `None`, which the short run's coverage test reports.

use crate::harvest::Key;
use crate::values::Gen;
use blockferry_core::hypervisor::{ChangedBlocks, SnapshotDisk};
use blockferry_core::manifest::{PointDisk, PointHeader};
use blockferry_core::roles::Role;
use blockferry_core::time::Timestamp;
use blockferry_core::wire::message::{
    BackupTask, BaseDigests, BlockRef, DamagedBlock, DiskTarget, MetadataReport, ReadMode, ReplicaAction, ReplicaSink, ReplicaTask,
    RestoreTask, TargetChanges, TaskRate, TaskStats,
};
use blockferry_core::{ChangeId, JobId, Message, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use rand::Rng;
use std::time::Duration;

impl Gen<'_> {
    fn task(&mut self) -> TaskId {
        TaskId(self.num(Key::Task))
    }
    fn op(&mut self) -> u64 {
        self.num(Key::Op)
    }
    fn batch(&mut self) -> u64 {
        self.num(Key::Batch)
    }
    fn session(&mut self) -> SessionId {
        SessionId(self.num(Key::Session))
    }
    fn vm(&mut self) -> VmId {
        VmId(self.u32(Key::Vm))
    }
    fn snap(&mut self) -> SnapshotId {
        SnapshotId(self.num(Key::Snap))
    }
    fn point(&mut self) -> RestorePointId {
        RestorePointId(self.num(Key::Point))
    }
    fn change(&mut self) -> ChangeId {
        ChangeId(self.num(Key::Change))
    }
    fn job(&mut self) -> JobId {
        JobId(self.u32(Key::Job))
    }
    fn seq(&mut self) -> u64 {
        self.num(Key::Seq)
    }
    fn done(&mut self) -> Result<(), String> {
        self.result(|_| ())
    }
    fn indexes(&mut self) -> Vec<u64> {
        let len = self.long_count();
        self.vec(len, Gen::index)
    }
    fn digests(&mut self) -> Vec<blockferry_core::Digest> {
        let len = self.long_count();
        self.vec(len, Gen::digest)
    }

    fn target(&mut self) -> DiskTarget {
        DiskTarget { session: self.session(), vm: self.vm(), disk: self.disk() }
    }

    fn rate(&mut self) -> Option<TaskRate> {
        self.option(|g| {
            let bytes_per_sec = if g.chance(20) { g.num(Key::Bytes) } else { g.rng.random_range(0..(1 << 30)) };
            let len = g.count();
            TaskRate { bytes_per_sec, peers: g.vec(len, |g| g.node(None)) }
        })
    }

    fn block_ref(&mut self, with_payload: bool) -> BlockRef {
        let payload = if with_payload || self.chance(50) { Some(self.payload()) } else { None };
        BlockRef { index: self.index(), digest: payload.as_ref().map_or_else(|| self.digest(), |p| p.digest()), payload }
    }

    fn block_refs(&mut self, with_payload: bool) -> Vec<BlockRef> {
        let len = self.count();
        self.vec(len, |g| g.block_ref(with_payload))
    }

    /// Blocks with their data: mostly those the request asked for.
    fn data_list(&mut self) -> Vec<(u64, blockferry_core::payload::BlockData)> {
        let block_size = self.block_size();
        let mut indexes = self.answer_indexes();
        // Large blocks cost: a few are as good as many.
        if block_size.bytes() > 64 << 10 {
            indexes.truncate(4);
        }
        indexes.into_iter().map(|index| (index, self.data(block_size))).collect()
    }

    fn answer_digests(&mut self) -> Vec<blockferry_core::Digest> {
        let len = self.answer_len();
        self.vec(len, Gen::digest)
    }

    fn answer_bits(&mut self) -> bitvec::vec::BitVec {
        let len = self.answer_len();
        (0..len).map(|_| self.chance(50)).collect()
    }

    fn mode(&mut self) -> ReadMode {
        match self.below(3) {
            0 => ReadMode::Full,
            1 => ReadMode::Changed { since: self.change() },
            _ => ReadMode::DigestCompare,
        }
    }

    fn header(&mut self) -> PointHeader {
        let len = self.count();
        PointHeader {
            point: self.point(),
            job: self.job(),
            session: self.session(),
            vm: self.vm(),
            snapshot_at: Timestamp::ZERO + Duration::from_secs(self.rng.random_range(0..1 << 32)),
            snapshot: self.snap(),
            parent: self.option(Gen::point),
            disks: self.vec(len, |g| PointDisk { index: g.disk(), bytes: g.bytes(), change_id: g.option(Gen::change) }),
        }
    }

    fn headers(&mut self) -> Vec<PointHeader> {
        let len = self.count();
        self.vec(len, Gen::header)
    }

    fn stats(&mut self) -> TaskStats {
        let mut n = || if self.chance(90) { self.rng.random_range(0..1000) } else { u64::MAX };
        TaskStats {
            blocks_total: n(),
            blocks_read: n(),
            blocks_changed: n(),
            blocks_sent: n(),
            blocks_deduped: n(),
            blocks_zero: n(),
            blocks_swap: n(),
            bytes_read: n(),
            bytes_sent: n(),
            cbt_fallback: self.chance(20),
            cbt_missed: if self.chance(80) { 0 } else { self.rng.random() },
            blocks_resumed: if self.chance(80) { 0 } else { self.rng.random() },
        }
    }

    fn snapshot_disks(&mut self) -> Vec<SnapshotDisk> {
        let len = self.count();
        self.vec(len, |g| SnapshotDisk { bytes: g.bytes(), change_id: g.option(Gen::change) })
    }

    /// What a host's changed-block tracking answers.
    pub fn changed(&mut self) -> ChangedBlocks {
        if self.chance(80) {
            ChangedBlocks::Known { changed: self.bits(), swap: self.bits() }
        } else {
            ChangedBlocks::Unavailable { swap: self.bits() }
        }
    }

    fn sink(&mut self) -> ReplicaSink {
        ReplicaSink {
            task: self.task(),
            proxy: self.node(Some(Role::Proxy)),
            host: self.node(Some(Role::Host)),
            vm: self.vm(),
            disk: self.disk(),
            disk_bytes: self.bytes(),
            block_size: self.block_size(),
            hash_snap: self.option(Gen::snap),
            report: MetadataReport {
                repository: self.node(Some(Role::Repository)),
                point: self.point(),
                base: self.option(Gen::point),
                initial: self.option(Gen::point),
            },
        }
    }

    fn backup_task(&mut self) -> BackupTask {
        let len = self.count();
        BackupTask {
            task: self.task(),
            job: self.job(),
            target: self.target(),
            host: self.node(Some(Role::Host)),
            snap: self.snap(),
            disk_bytes: self.bytes(),
            repository: self.node(Some(Role::Repository)),
            base: self.option(Gen::point),
            mode: self.mode(),
            block_size: self.block_size(),
            compression: self.compression(),
            resume: self.chance(30),
            reread: self.vec(len, Gen::index),
            verify_since: self.option(Gen::change),
            rate: self.rate(),
        }
    }

    fn replica_task(&mut self) -> ReplicaTask {
        ReplicaTask {
            task: self.task(),
            host: self.node(Some(Role::Host)),
            vm: self.vm(),
            snap: self.snap(),
            mode: self.mode(),
            base: if self.chance(50) {
                BaseDigests::Target
            } else {
                BaseDigests::Metadata { repository: self.node(Some(Role::Repository)), point: self.point() }
            },
            target_changes: self.option(|g| TargetChanges { host: g.node(Some(Role::Host)), snap: g.snap(), since: g.change() }),
            compression: self.compression(),
            sink: self.sink(),
            rate: self.rate(),
        }
    }

    fn restore_task(&mut self) -> RestoreTask {
        RestoreTask {
            task: self.task(),
            point: self.point(),
            repository: self.node(Some(Role::Repository)),
            host: self.node(Some(Role::Host)),
            vm: self.vm(),
            disk: self.disk(),
            disk_bytes: self.bytes(),
            block_size: self.block_size(),
            rate: self.rate(),
        }
    }

    fn action(&mut self) -> ReplicaAction {
        match self.below(6) {
            0 => ReplicaAction::Failover { back: if self.chance(80) { self.rng.random_range(0..4) } else { u32::MAX } },
            1 => ReplicaAction::UndoFailover,
            2 => ReplicaAction::Failback,
            3 => ReplicaAction::CommitFailback,
            4 => ReplicaAction::UndoFailback,
            _ => ReplicaAction::PermanentFailover,
        }
    }
}

/// The kind of answer a request of `kind` expects, if it expects one: a
/// reply to it is mostly of this kind (the routes say only who may send
/// what).
pub fn answer_to(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "ping" => "pong",
        "create_snapshot" => "snapshot_created",
        "commit_snapshot" => "snapshot_committed",
        "start_backup_task" | "start_restore_task" | "start_replica_task" => "task_done",
        "get_changed_blocks" => "changed_blocks_reply",
        "read_blocks" => "blocks_read",
        "get_digests" | "get_replica_digests" | "hash_blocks" => "digests",
        "have_digests" => "have_reply",
        "put_blocks" => "blocks_ack",
        "finish_disk" | "put_replica_disk" => "disk_finished",
        "commit_point" => "point_committed",
        "list_points" => "points",
        "get_progress" => "progress",
        "health_check" => "health_report",
        "delete_point" => "point_deleted",
        "restore_vm" => "restore_done",
        "create_vm" => "vm_created",
        "read_point" => "point_blocks",
        "write_blocks" => "blocks_written",
        "replica_blocks" => "replica_ack",
        "finish_replica" => "replica_finished",
        "resume_replica" => "replica_progress",
        "commit_replica_point" => "replica_point_committed",
        "delete_replica_point" => "replica_point_deleted",
        "revert_vm" | "set_power" => "host_done",
        "replica_action" => "replica_action_done",
        "list_replica_points" => "replica_points",
        "list_tasks" => "tasks_running",
        "run_job" => "job_started",
        _ => return None,
    })
}

/// A message of `kind` (see the module documentation).
pub fn build(g: &mut Gen, kind: &str) -> Option<Message> {
    Some(match kind {
        "ping" => Message::Ping { seq: g.seq() },
        "pong" => Message::Pong { seq: g.seq() },
        "create_snapshot" => Message::CreateSnapshot { op: g.op(), vm: g.vm() },
        "snapshot_created" => Message::SnapshotCreated { op: g.op(), snap: g.snap(), disks: g.snapshot_disks() },
        "commit_snapshot" => Message::CommitSnapshot { op: g.op(), snap: g.snap() },
        "snapshot_committed" => Message::SnapshotCommitted { op: g.op() },
        "host_failed" => Message::HostFailed { op: g.op(), reason: g.text() },
        "start_backup_task" => Message::StartBackupTask(Box::new(g.backup_task())),
        "task_done" => Message::TaskDone { task: g.task(), result: g.result(Gen::stats) },
        "get_changed_blocks" => Message::GetChangedBlocks {
            task: g.task(),
            snap: g.snap(),
            disk: g.disk(),
            since: g.option(Gen::change),
            block_size: g.block_size(),
        },
        "changed_blocks_reply" => Message::ChangedBlocksReply { task: g.task(), reply: g.result(Gen::changed) },
        "read_blocks" => Message::ReadBlocks {
            task: g.task(),
            batch: g.batch(),
            snap: g.snap(),
            disk: g.disk(),
            block_size: g.block_size(),
            blocks: g.indexes(),
        },
        "blocks_read" => Message::BlocksRead { task: g.task(), batch: g.batch(), result: g.result(Gen::data_list) },
        "get_digests" => Message::GetDigests { task: g.task(), batch: g.batch(), point: g.point(), disk: g.disk(), blocks: g.indexes() },
        "digests" => Message::Digests { task: g.task(), batch: g.batch(), result: g.result(Gen::answer_digests) },
        "have_digests" => Message::HaveDigests { task: g.task(), batch: g.batch(), digests: g.digests() },
        "have_reply" => Message::HaveReply { task: g.task(), batch: g.batch(), have: g.answer_bits() },
        "put_blocks" => Message::PutBlocks { task: g.task(), batch: g.batch(), target: g.target(), blocks: g.block_refs(false) },
        "blocks_ack" => Message::BlocksAck { task: g.task(), batch: g.batch(), result: g.done() },
        "finish_disk" => Message::FinishDisk {
            task: g.task(),
            target: g.target(),
            bytes: g.bytes(),
            block_size: g.block_size(),
            base: g.option(Gen::point),
        },
        "disk_finished" => Message::DiskFinished { task: g.task(), result: g.done() },
        "commit_point" => Message::CommitPoint { op: g.op(), header: g.header() },
        "point_committed" => Message::PointCommitted { op: g.op(), result: g.done() },
        "abort_point" => Message::AbortPoint { session: g.session(), vm: g.vm() },
        "abort_pending_before" => Message::AbortPendingBefore { before: g.session() },
        "list_points" => Message::ListPoints { op: g.op() },
        "points" => Message::Points { op: g.op(), points: g.headers() },
        "get_progress" => Message::GetProgress { task: g.task(), target: g.target() },
        "progress" => Message::Progress { task: g.task(), done: g.bits() },
        "abort_tasks" => Message::AbortTasks,
        "health_check" => Message::HealthCheck { op: g.op(), points: (0..g.count()).map(|_| g.point()).collect() },
        "health_report" => Message::HealthReport {
            op: g.op(),
            result: g.result(|g| {
                let len = g.count();
                g.vec(len, |g| DamagedBlock { point: g.point(), disk: g.disk(), index: g.index(), digest: g.digest() })
            }),
        },
        "delete_point" => Message::DeletePoint { op: g.op(), point: g.point() },
        "point_deleted" => Message::PointDeleted { op: g.op(), result: g.done() },
        "restore_vm" => Message::RestoreVm { op: g.op(), point: g.point(), host: g.node(Some(Role::Host)), new_vm: g.vm(), name: g.text() },
        "restore_done" => Message::RestoreDone { op: g.op(), result: g.done() },
        "create_vm" => Message::CreateVm { op: g.op(), vm: g.vm(), name: g.text(), disks: (0..g.count()).map(|_| g.bytes()).collect() },
        "vm_created" => Message::VmCreated { op: g.op() },
        "start_restore_task" => Message::StartRestoreTask(g.restore_task()),
        "read_point" => Message::ReadPoint {
            task: g.task(),
            batch: g.batch(),
            point: g.point(),
            disk: g.disk(),
            first: g.index(),
            count: if g.chance(90) { g.rng.random_range(0..64) } else { g.num(Key::Index) },
            block_size: g.block_size(),
        },
        "point_blocks" => Message::PointBlocks {
            task: g.task(),
            batch: g.batch(),
            result: g.result(|g| g.answer_indexes().into_iter().map(|index| (index, g.payload())).collect()),
        },
        "write_blocks" => Message::WriteBlocks {
            task: g.task(),
            batch: g.batch(),
            vm: g.vm(),
            disk: g.disk(),
            block_size: g.block_size(),
            blocks: g.data_list(),
        },
        "blocks_written" => Message::BlocksWritten { task: g.task(), batch: g.batch(), result: g.done() },
        "start_replica_task" => Message::StartReplicaTask(Box::new(g.replica_task())),
        "open_replica" => Message::OpenReplica(Box::new(g.sink())),
        "hash_blocks" => Message::HashBlocks { task: g.task(), batch: g.batch(), blocks: g.indexes() },
        "replica_blocks" => Message::ReplicaBlocks { task: g.task(), batch: g.batch(), blocks: g.block_refs(true) },
        "replica_ack" => Message::ReplicaAck { task: g.task(), batch: g.batch(), result: g.done() },
        "finish_replica" => Message::FinishReplica { task: g.task() },
        "replica_finished" => Message::ReplicaFinished { task: g.task(), result: g.done() },
        "resume_replica" => Message::ResumeReplica { task: g.task() },
        "replica_progress" => Message::ReplicaProgress { task: g.task(), written: g.result(Gen::bits) },
        "put_replica_disk" => Message::PutReplicaDisk {
            task: g.task(),
            point: g.point(),
            base: g.option(Gen::point),
            disk: g.disk(),
            bytes: g.bytes(),
            block_size: g.block_size(),
            changes: (0..g.long_count()).map(|_| (g.index(), g.digest())).collect(),
            first: g.chance(50),
            last: g.chance(50),
        },
        "get_replica_digests" => {
            Message::GetReplicaDigests { task: g.task(), batch: g.batch(), point: g.point(), disk: g.disk(), blocks: g.indexes() }
        }
        "commit_replica_point" => Message::CommitReplicaPoint { op: g.op(), header: g.header() },
        "replica_point_committed" => Message::ReplicaPointCommitted { op: g.op(), result: g.done() },
        "abort_replica_point" => Message::AbortReplicaPoint { point: g.point() },
        "delete_replica_point" => Message::DeleteReplicaPoint { op: g.op(), point: g.point() },
        "replica_point_deleted" => Message::ReplicaPointDeleted { op: g.op(), result: g.done() },
        "revert_vm" => Message::RevertVm { op: g.op(), snap: g.snap() },
        "set_power" => Message::SetPower { op: g.op(), vm: g.vm(), on: g.chance(50) },
        "host_done" => Message::HostDone { op: g.op() },
        "replica_action" => Message::ReplicaAction { op: g.op(), vm: g.vm(), action: g.action() },
        "replica_action_done" => Message::ReplicaActionDone { op: g.op(), result: g.done() },
        "list_replica_points" => Message::ListReplicaPoints { op: g.op() },
        "replica_points" => Message::ReplicaPoints { op: g.op(), points: g.headers() },
        "set_task_rate" => Message::SetTaskRate {
            task: g.task(),
            bytes_per_sec: if g.chance(80) { g.rng.random_range(0..(1 << 30)) } else { g.num(Key::Bytes) },
        },
        "cancel_task" => Message::CancelTask { task: g.task() },
        "list_tasks" => Message::ListTasks { op: g.op() },
        "tasks_running" => Message::TasksRunning { op: g.option(Gen::op), tasks: (0..g.count()).map(|_| g.task()).collect() },
        "keepalive" => Message::Keepalive,
        "run_job" => Message::RunJob { op: g.op(), job: g.job() },
        "job_started" => Message::JobStarted { op: g.op(), result: g.result(Gen::session) },
        _ => return None,
    })
}
