//! Every message one node sends another. The enum grows with the protocol;
//! adding a variant at the end keeps older encodings decodable, anything
//! else bumps [`super::PROTOCOL_VERSION`].
//!
//! Conversations (see ARCHITECTURE.md "Flows"): the manager drives hosts
//! (snapshots) and proxies (disk tasks) and commits restore points at
//! repositories; a source proxy reads from a host and writes to a
//! repository. Every request carries the id its answer echoes (`op` for the
//! manager's operations, `task` + `batch` for a task's pipeline).

use super::frame::frame_len;
use crate::block::{BlockSize, Compression, Digest};
use crate::hypervisor::{ChangedBlocks, SnapshotDisk};
use crate::ids::{ChangeId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::manifest::PointHeader;
use crate::payload::{BlockData, BlockPayload};
use bitvec::vec::BitVec;
use serde::{Deserialize, Serialize};

/// Id of one manager operation (snapshot, commit, delete...).
pub type OpId = u64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Liveness probe; answered with `Pong` carrying the same sequence.
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },

    // manager ↔ host
    CreateSnapshot {
        op: OpId,
        vm: VmId,
    },
    SnapshotCreated {
        op: OpId,
        snap: SnapshotId,
        disks: Vec<SnapshotDisk>,
    },
    CommitSnapshot {
        op: OpId,
        snap: SnapshotId,
    },
    SnapshotCommitted {
        op: OpId,
    },
    HostFailed {
        op: OpId,
        reason: String,
    },

    // manager ↔ proxy
    /// Boxed, like the other large and rare task specs, so that the
    /// message type stays small: every block batch moves one through the
    /// nodes' queues (same encoding).
    StartBackupTask(Box<BackupTask>),
    TaskDone {
        task: TaskId,
        result: Result<TaskStats, String>,
    },

    // proxy ↔ host
    GetChangedBlocks {
        task: TaskId,
        snap: SnapshotId,
        disk: u16,
        since: Option<ChangeId>,
        block_size: BlockSize,
    },
    ChangedBlocksReply {
        task: TaskId,
        reply: Result<ChangedBlocks, String>,
    },
    ReadBlocks {
        task: TaskId,
        batch: u64,
        snap: SnapshotId,
        disk: u16,
        block_size: BlockSize,
        blocks: Vec<u64>,
    },
    BlocksRead {
        task: TaskId,
        batch: u64,
        result: Result<Vec<(u64, BlockData)>, String>,
    },

    // proxy ↔ repository
    GetDigests {
        task: TaskId,
        batch: u64,
        point: RestorePointId,
        disk: u16,
        blocks: Vec<u64>,
    },
    Digests {
        task: TaskId,
        batch: u64,
        result: Result<Vec<Digest>, String>,
    },
    HaveDigests {
        task: TaskId,
        batch: u64,
        digests: Vec<Digest>,
    },
    HaveReply {
        task: TaskId,
        batch: u64,
        have: BitVec,
    },
    PutBlocks {
        task: TaskId,
        batch: u64,
        target: DiskTarget,
        blocks: Vec<BlockRef>,
    },
    BlocksAck {
        task: TaskId,
        batch: u64,
        result: Result<(), String>,
    },
    FinishDisk {
        task: TaskId,
        target: DiskTarget,
        bytes: u64,
        block_size: BlockSize,
        base: Option<RestorePointId>,
    },
    DiskFinished {
        task: TaskId,
        result: Result<(), String>,
    },

    // manager ↔ repository
    CommitPoint {
        op: OpId,
        header: PointHeader,
    },
    PointCommitted {
        op: OpId,
        result: Result<(), String>,
    },
    AbortPoint {
        session: SessionId,
        vm: VmId,
    },
    /// The manager (re)started: pending points of sessions older than
    /// `before` belong to a manager that is gone.
    AbortPendingBefore {
        before: SessionId,
    },
    /// What committed points the repository holds (catalog rebuild).
    ListPoints {
        op: OpId,
    },
    Points {
        op: OpId,
        points: Vec<PointHeader>,
    },
    /// Which blocks of a pending disk the repository has acknowledged, so a
    /// retried task resumes instead of starting over.
    GetProgress {
        task: TaskId,
        target: DiskTarget,
    },
    Progress {
        task: TaskId,
        done: BitVec,
    },
    /// The manager (re)started: tasks of its previous incarnation are void.
    AbortTasks,
    /// Health check: re-read and verify every block of these points.
    HealthCheck {
        op: OpId,
        points: Vec<RestorePointId>,
    },
    HealthReport {
        op: OpId,
        result: Result<Vec<DamagedBlock>, String>,
    },
    DeletePoint {
        op: OpId,
        point: RestorePointId,
    },
    PointDeleted {
        op: OpId,
        result: Result<(), String>,
    },

    // restore: operator → manager → host (new VM) and proxy (one task per disk)
    RestoreVm {
        op: OpId,
        point: RestorePointId,
        host: NodeId,
        new_vm: VmId,
        name: String,
    },
    RestoreDone {
        op: OpId,
        result: Result<(), String>,
    },
    CreateVm {
        op: OpId,
        vm: VmId,
        name: String,
        disks: Vec<u64>,
    },
    VmCreated {
        op: OpId,
    },
    StartRestoreTask(RestoreTask),

    // restore: proxy ↔ repository, proxy ↔ host
    ReadPoint {
        task: TaskId,
        batch: u64,
        point: RestorePointId,
        disk: u16,
        first: u64,
        count: u64,
        /// The point's block size: bounds what the answer carries (a
        /// throttled reader paces its requests by it).
        block_size: BlockSize,
    },
    PointBlocks {
        task: TaskId,
        batch: u64,
        result: Result<Vec<(u64, BlockPayload)>, String>,
    },
    WriteBlocks {
        task: TaskId,
        batch: u64,
        vm: VmId,
        disk: u16,
        block_size: BlockSize,
        blocks: Vec<(u64, BlockData)>,
    },
    BlocksWritten {
        task: TaskId,
        batch: u64,
        result: Result<(), String>,
    },

    // replication: manager → sending proxy; sender ↔ receiving proxy
    StartReplicaTask(Box<ReplicaTask>),
    /// Sets up the receiving end of a replica disk task (sent before any
    /// block of it, on the same connection).
    OpenReplica(Box<ReplicaSink>),
    /// "Hash these blocks of what you hold": the receiver reads them from
    /// its host and answers `Digests`.
    HashBlocks {
        task: TaskId,
        batch: u64,
        blocks: Vec<u64>,
    },
    /// Blocks to write to the replica; every ref carries its payload (a
    /// zero block's is empty).
    ReplicaBlocks {
        task: TaskId,
        batch: u64,
        blocks: Vec<BlockRef>,
    },
    ReplicaAck {
        task: TaskId,
        batch: u64,
        result: Result<(), String>,
    },
    /// Every batch is written: report the metadata, then answer.
    FinishReplica {
        task: TaskId,
    },
    ReplicaFinished {
        task: TaskId,
        result: Result<(), String>,
    },
    /// The sender is back after a broken connection: "which blocks have
    /// you written?" Answered `ReplicaProgress`; the sync goes on from
    /// there instead of starting over.
    ResumeReplica {
        task: TaskId,
    },
    /// The blocks of the disk the receiver's host acknowledged writing in
    /// this sync (set bits), or why the sync cannot resume (the receiver
    /// restarted, or gave up waiting).
    ReplicaProgress {
        task: TaskId,
        written: Result<BitVec, String>,
    },

    // replication: receiving proxy / sender ↔ metadata repository
    /// One chunk of a replica point's disk metadata: its digest vector is
    /// `base`'s (all zero when `None`) with `changes` applied. `first`
    /// starts the disk over (a retried task); `last` finishes it and is
    /// answered with `DiskFinished`.
    PutReplicaDisk {
        task: TaskId,
        point: RestorePointId,
        base: Option<RestorePointId>,
        disk: u16,
        bytes: u64,
        block_size: BlockSize,
        changes: Vec<(u64, Digest)>,
        first: bool,
        last: bool,
    },
    /// Digests of a replica point's blocks (answered with `Digests`).
    GetReplicaDigests {
        task: TaskId,
        batch: u64,
        point: RestorePointId,
        disk: u16,
        blocks: Vec<u64>,
    },

    // replication: manager ↔ metadata repository
    /// Makes a replica point's reported metadata durable. The header's
    /// `snapshot` is the replica's snapshot on the target host, its disks'
    /// change ids the source's CBT ids the point was synced at.
    CommitReplicaPoint {
        op: OpId,
        header: PointHeader,
    },
    ReplicaPointCommitted {
        op: OpId,
        result: Result<(), String>,
    },
    AbortReplicaPoint {
        point: RestorePointId,
    },
    DeleteReplicaPoint {
        op: OpId,
        point: RestorePointId,
    },
    ReplicaPointDeleted {
        op: OpId,
        result: Result<(), String>,
    },

    // replication: manager ↔ host
    RevertVm {
        op: OpId,
        snap: SnapshotId,
    },
    SetPower {
        op: OpId,
        vm: VmId,
        on: bool,
    },
    /// A revert or power change is done.
    HostDone {
        op: OpId,
    },

    // operator → manager: failover and failback
    ReplicaAction {
        op: OpId,
        /// The source VM whose replica the action is about.
        vm: VmId,
        action: ReplicaAction,
    },
    ReplicaActionDone {
        op: OpId,
        result: Result<(), String>,
    },

    /// A (re)started manager rebuilds its replica catalog from the metadata
    /// repositories: every replica point they hold metadata for.
    ListReplicaPoints {
        op: OpId,
    },
    ReplicaPoints {
        op: OpId,
        points: Vec<PointHeader>,
    },

    /// Throttling: the rate of a running throttled task changed (tasks
    /// under a rule share its bandwidth, so rates change as tasks start and
    /// end).
    SetTaskRate {
        task: TaskId,
        bytes_per_sec: u64,
    },
    /// The manager gave up on a task (its session ran out of its window):
    /// drop it without answering.
    CancelTask {
        task: TaskId,
    },
    /// Manager → proxy, when their connection comes up: which of the
    /// manager's tasks do you run? Answered by `TasksRunning` with this op.
    ListTasks {
        op: OpId,
    },
    /// Proxy → manager: the manager's tasks this proxy runs now. Sent as
    /// the answer to `ListTasks` (`op` set: a task placed before that
    /// request and missing here is gone) and every
    /// [`crate::roles::proxy::REPORT_EVERY`] while it runs any (`op` unset:
    /// the manager's watchdog hears each listed task is alive).
    TasksRunning {
        op: Option<OpId>,
        tasks: Vec<TaskId>,
    },
    /// Connection keepalive: sent by a driver on a connection it has had
    /// nothing to write on for a while, so the other end can tell a quiet
    /// peer from a dead link (no TCP keepalive or retransmission is assumed).
    /// It belongs to the driver, not the protocol between roles: drivers
    /// swallow it on receipt, so no node ever sees one, and nodes never send
    /// it.
    Keepalive,

    // operator → manager: start a session of a job now (any schedule,
    // `manual` included). Appended after `Keepalive` so the variants before
    // it keep their wire index.
    RunJob {
        op: OpId,
        job: JobId,
    },
    /// The session `RunJob` started, or why none did (an unknown job, the
    /// previous session still running, the catalog not read yet).
    JobStarted {
        op: OpId,
        result: Result<SessionId, String>,
    },
}

/// An operator action on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaAction {
    /// Power the replica on at a restore point, counted back from the
    /// newest (0 = newest).
    Failover { back: u32 },
    /// Discard what the replica did since failover; the source runs again.
    UndoFailover,
    /// Sync the replica's changes back to the source VM and run it there.
    Failback,
    /// Keep the failback: the replica becomes a replica again.
    CommitFailback,
    /// Return the source to its state before failback; the replica runs.
    UndoFailback,
    /// The replica becomes the production VM: its restore points go and
    /// the VM leaves the job.
    PermanentFailover,
}

impl ReplicaAction {
    /// The action's name as scenario files spell it.
    pub fn name(&self) -> &'static str {
        match self {
            ReplicaAction::Failover { .. } => "failover",
            ReplicaAction::UndoFailover => "undo_failover",
            ReplicaAction::Failback => "failback",
            ReplicaAction::CommitFailback => "commit_failback",
            ReplicaAction::UndoFailback => "undo_failback",
            ReplicaAction::PermanentFailover => "permanent_failover",
        }
    }
}

/// Where a replica task's sender learns what the receiving VM holds, when
/// it compares digests instead of trusting CBT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BaseDigests {
    /// The receiver hashes its VM locally (mapping, seeding, missing
    /// metadata, failback).
    Target,
    /// Replica metadata of this point at the metadata repository.
    Metadata { repository: NodeId, point: RestorePointId },
}

/// Blocks the receiving VM changed on its own since the content both sides
/// share (the source VM during failover): they are sent too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetChanges {
    pub host: NodeId,
    pub snap: SnapshotId,
    pub since: ChangeId,
}

/// Everything the sending proxy needs to sync one disk onto a replica (or,
/// on failback, a replica's disk back onto its source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaTask {
    pub task: TaskId,
    /// Read side: a snapshot of `vm` on `host`.
    pub host: NodeId,
    pub vm: VmId,
    pub snap: SnapshotId,
    pub mode: ReadMode,
    pub base: BaseDigests,
    pub target_changes: Option<TargetChanges>,
    pub compression: Compression,
    /// Write side.
    pub sink: ReplicaSink,
    /// Throttling, if the task is under a rule or job cap.
    pub rate: Option<TaskRate>,
}

/// The receiving end of a replica disk task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSink {
    pub task: TaskId,
    pub proxy: NodeId,
    pub host: NodeId,
    pub vm: VmId,
    pub disk: u16,
    pub disk_bytes: u64,
    pub block_size: BlockSize,
    /// A live snapshot of `vm` to read when asked to hash (`BaseDigests::Target`).
    pub hash_snap: Option<SnapshotId>,
    pub report: MetadataReport,
}

/// Where and how the receiver reports the replica metadata of its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataReport {
    pub repository: NodeId,
    /// The point this sync builds: `base`'s vector plus what was hashed and
    /// written (all zero plus that when `None`).
    pub point: RestorePointId,
    pub base: Option<RestorePointId>,
    /// Seeding and mapping: the point of the VM's content before the sync,
    /// whose vector is what the receiver hashed.
    pub initial: Option<RestorePointId>,
}

/// Everything a proxy needs to restore one disk of a restore point onto a
/// new VM's disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTask {
    pub task: TaskId,
    pub point: RestorePointId,
    pub repository: NodeId,
    pub host: NodeId,
    pub vm: VmId,
    pub disk: u16,
    pub disk_bytes: u64,
    pub block_size: BlockSize,
    /// Throttling, if the task is under a rule.
    pub rate: Option<TaskRate>,
}

/// A block a health check found damaged or missing at rest, and where a
/// checked point uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedBlock {
    pub point: RestorePointId,
    pub disk: u16,
    pub index: u64,
    pub digest: Digest,
}

/// A throttled task's pacing: the rate its traffic with `peers` may use
/// together (both directions). The peers are the legs of its data path that
/// cross a throttling rule, or its data's destination under a job cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRate {
    pub bytes_per_sec: u64,
    pub peers: Vec<NodeId>,
}

/// Which pending restore point and disk a block belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DiskTarget {
    pub session: SessionId,
    pub vm: VmId,
    pub disk: u16,
}

/// One block of an incremental: its position and digest, and its payload
/// unless the repository already has the digest (or it is a zero block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRef {
    pub index: u64,
    pub digest: Digest,
    pub payload: Option<BlockPayload>,
}

/// How a disk task decides which blocks to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadMode {
    /// No previous point: read every allocated block.
    Full,
    /// Trust CBT: read blocks changed since this id (falls back to
    /// `DigestCompare` if the host answers "CBT unavailable").
    Changed { since: ChangeId },
    /// Read every allocated block and send those whose digest differs from
    /// the previous point's (no CBT, or a verification pass).
    DigestCompare,
}

/// Everything a proxy needs to back up one disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupTask {
    pub task: TaskId,
    pub job: JobId,
    pub target: DiskTarget,
    pub host: NodeId,
    pub snap: SnapshotId,
    pub disk_bytes: u64,
    pub repository: NodeId,
    pub base: Option<RestorePointId>,
    pub mode: ReadMode,
    pub block_size: BlockSize,
    pub compression: Compression,
    /// A retry: ask the repository what it already acknowledged and skip it.
    pub resume: bool,
    /// Blocks to read and send whatever CBT or the base says: a health
    /// check found them damaged at the repository.
    pub reread: Vec<u64>,
    /// A verification pass (`DigestCompare` with a base): also ask CBT for
    /// its changes since this id, to count the changed blocks it missed.
    pub verify_since: Option<ChangeId>,
    /// Throttling, if the task is under a rule or job cap.
    pub rate: Option<TaskRate>,
}

/// What a disk task did, for the session report and the byte accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Blocks in the disk.
    pub blocks_total: u64,
    /// Blocks read from the snapshot.
    pub blocks_read: u64,
    /// Blocks whose content differs from the previous point (or all
    /// non-zero blocks on a full).
    pub blocks_changed: u64,
    /// Blocks whose payload crossed the network.
    pub blocks_sent: u64,
    /// Changed blocks the repository already had (deduplicated).
    pub blocks_deduped: u64,
    /// Zero blocks found among those read.
    pub blocks_zero: u64,
    /// Swap blocks skipped without reading.
    pub blocks_swap: u64,
    pub bytes_read: u64,
    /// Payload bytes sent (compressed).
    pub bytes_sent: u64,
    /// Fell back from CBT to digest comparison.
    pub cbt_fallback: bool,
    /// Verification pass: changed blocks (by digest) that CBT did not report.
    pub cbt_missed: u64,
    /// Blocks an earlier attempt already delivered (skipped on resume).
    pub blocks_resumed: u64,
}

impl TaskStats {
    pub fn add(&mut self, other: &TaskStats) {
        self.blocks_total += other.blocks_total;
        self.blocks_read += other.blocks_read;
        self.blocks_changed += other.blocks_changed;
        self.blocks_sent += other.blocks_sent;
        self.blocks_deduped += other.blocks_deduped;
        self.blocks_zero += other.blocks_zero;
        self.blocks_swap += other.blocks_swap;
        self.bytes_read += other.bytes_read;
        self.bytes_sent += other.bytes_sent;
        self.cbt_fallback |= other.cbt_fallback;
        self.cbt_missed += other.cbt_missed;
        self.blocks_resumed += other.blocks_resumed;
    }
}

impl Message {
    /// A short name for logs and traces (never the payload).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::CreateSnapshot { .. } => "create_snapshot",
            Message::SnapshotCreated { .. } => "snapshot_created",
            Message::CommitSnapshot { .. } => "commit_snapshot",
            Message::SnapshotCommitted { .. } => "snapshot_committed",
            Message::HostFailed { .. } => "host_failed",
            Message::StartBackupTask(_) => "start_backup_task",
            Message::StartRestoreTask(_) => "start_restore_task",
            Message::RestoreVm { .. } => "restore_vm",
            Message::RestoreDone { .. } => "restore_done",
            Message::CreateVm { .. } => "create_vm",
            Message::VmCreated { .. } => "vm_created",
            Message::ReadPoint { .. } => "read_point",
            Message::PointBlocks { .. } => "point_blocks",
            Message::WriteBlocks { .. } => "write_blocks",
            Message::BlocksWritten { .. } => "blocks_written",
            Message::TaskDone { .. } => "task_done",
            Message::GetChangedBlocks { .. } => "get_changed_blocks",
            Message::ChangedBlocksReply { .. } => "changed_blocks_reply",
            Message::ReadBlocks { .. } => "read_blocks",
            Message::BlocksRead { .. } => "blocks_read",
            Message::GetDigests { .. } => "get_digests",
            Message::Digests { .. } => "digests",
            Message::HaveDigests { .. } => "have_digests",
            Message::HaveReply { .. } => "have_reply",
            Message::PutBlocks { .. } => "put_blocks",
            Message::BlocksAck { .. } => "blocks_ack",
            Message::FinishDisk { .. } => "finish_disk",
            Message::DiskFinished { .. } => "disk_finished",
            Message::CommitPoint { .. } => "commit_point",
            Message::PointCommitted { .. } => "point_committed",
            Message::AbortPoint { .. } => "abort_point",
            Message::AbortPendingBefore { .. } => "abort_pending_before",
            Message::ListPoints { .. } => "list_points",
            Message::Points { .. } => "points",
            Message::GetProgress { .. } => "get_progress",
            Message::Progress { .. } => "progress",
            Message::AbortTasks => "abort_tasks",
            Message::HealthCheck { .. } => "health_check",
            Message::HealthReport { .. } => "health_report",
            Message::DeletePoint { .. } => "delete_point",
            Message::PointDeleted { .. } => "point_deleted",
            Message::StartReplicaTask(_) => "start_replica_task",
            Message::OpenReplica(_) => "open_replica",
            Message::HashBlocks { .. } => "hash_blocks",
            Message::ReplicaBlocks { .. } => "replica_blocks",
            Message::ReplicaAck { .. } => "replica_ack",
            Message::FinishReplica { .. } => "finish_replica",
            Message::ReplicaFinished { .. } => "replica_finished",
            Message::ResumeReplica { .. } => "resume_replica",
            Message::ReplicaProgress { .. } => "replica_progress",
            Message::PutReplicaDisk { .. } => "put_replica_disk",
            Message::GetReplicaDigests { .. } => "get_replica_digests",
            Message::CommitReplicaPoint { .. } => "commit_replica_point",
            Message::ReplicaPointCommitted { .. } => "replica_point_committed",
            Message::AbortReplicaPoint { .. } => "abort_replica_point",
            Message::DeleteReplicaPoint { .. } => "delete_replica_point",
            Message::ReplicaPointDeleted { .. } => "replica_point_deleted",
            Message::RevertVm { .. } => "revert_vm",
            Message::SetPower { .. } => "set_power",
            Message::HostDone { .. } => "host_done",
            Message::ReplicaAction { .. } => "replica_action",
            Message::ReplicaActionDone { .. } => "replica_action_done",
            Message::ListReplicaPoints { .. } => "list_replica_points",
            Message::ReplicaPoints { .. } => "replica_points",
            Message::SetTaskRate { .. } => "set_task_rate",
            Message::CancelTask { .. } => "cancel_task",
            Message::ListTasks { .. } => "list_tasks",
            Message::TasksRunning { .. } => "tasks_running",
            Message::Keepalive => "keepalive",
            Message::RunJob { .. } => "run_job",
            Message::JobStarted { .. } => "job_started",
        }
    }

    /// A request that pulls block data back: its batch and the most payload
    /// the answer can carry (plaintext size; compressed is smaller). A
    /// throttled task charges this when it asks, and settles with the
    /// answer's real size ([`Message::pulled_batch`]).
    pub fn pull_estimate(&self) -> Option<(u64, u64)> {
        match self {
            Message::ReadPoint { batch, count, block_size, .. } => Some((*batch, count.saturating_mul(u64::from(block_size.bytes())))),
            Message::ReadBlocks { batch, blocks, block_size, .. } => {
                Some((*batch, (blocks.len() as u64).saturating_mul(u64::from(block_size.bytes()))))
            }
            _ => None,
        }
    }

    /// The batch an answer to a [`Message::pull_estimate`] request settles.
    pub fn pulled_batch(&self) -> Option<u64> {
        match self {
            Message::PointBlocks { batch, .. } | Message::BlocksRead { batch, .. } => Some(*batch),
            _ => None,
        }
    }

    /// Whether the message carries a simulator's synthetic block (a
    /// descriptor standing for bytes it does not hold). Only nodes of a
    /// simulated deployment take one: anywhere else a repository would
    /// store the descriptor as if it were the block.
    pub fn carries_synthetic(&self) -> bool {
        let payload = |p: &BlockPayload| matches!(p, BlockPayload::Synthetic { .. });
        let data = |d: &BlockData| matches!(d, BlockData::Synthetic(_));
        match self {
            Message::PutBlocks { blocks, .. } | Message::ReplicaBlocks { blocks, .. } => {
                blocks.iter().any(|b| b.payload.as_ref().is_some_and(payload))
            }
            Message::PointBlocks { result: Ok(blocks), .. } => blocks.iter().any(|(_, p)| payload(p)),
            Message::BlocksRead { result: Ok(blocks), .. } | Message::WriteBlocks { blocks, .. } => blocks.iter().any(|(_, d)| data(d)),
            _ => false,
        }
    }

    /// Bytes the message occupies on a link: its frame, plus what its
    /// synthetic payloads stand for. Links and throttling both count this.
    pub fn wire_bytes(&self) -> u64 {
        frame_len(self).map_or(0, |n| n as u64) + self.modelled_extra_bytes()
    }

    /// Bytes a simulated link charges beyond the encoded frame: synthetic
    /// block payloads stand for bytes they do not carry.
    pub fn modelled_extra_bytes(&self) -> u64 {
        match self {
            Message::PutBlocks { blocks, .. } | Message::ReplicaBlocks { blocks, .. } => {
                blocks.iter().filter_map(|b| b.payload.as_ref()).map(BlockPayload::modelled_extra_bytes).sum()
            }
            Message::PointBlocks { result: Ok(blocks), .. } => blocks.iter().map(|(_, p)| p.modelled_extra_bytes()).sum(),
            Message::BlocksRead { result: Ok(blocks), .. } | Message::WriteBlocks { blocks, .. } => blocks
                .iter()
                .map(|(_, data)| match data {
                    BlockData::Synthetic(s) if !s.digest.is_zero_block() => u64::from(s.raw_len),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }
}
