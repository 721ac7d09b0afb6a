//! Events: the observability spine. Every meaningful step a node takes emits
//! one; the simulator's checker and trace, realnet's logs and progress are
//! all built from this one stream.

use crate::ids::{DiskId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::time::Timestamp;
use crate::wire::message::{ReplicaAction, TaskStats};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    PeerUp {
        peer: NodeId,
    },
    PeerDown {
        peer: NodeId,
    },
    /// A `Pong` answered one of our pings; `rtt_nanos` measured in `now` time.
    PongReceived {
        peer: NodeId,
        seq: u64,
        rtt_nanos: u64,
    },

    SessionStarted {
        job: JobId,
        session: SessionId,
    },
    /// A scheduled run did not start (the previous one is still running).
    SessionSkipped {
        job: JobId,
        reason: String,
    },
    SnapshotTaken {
        job: JobId,
        session: SessionId,
        vm: VmId,
        host: NodeId,
        snap: SnapshotId,
    },
    TaskAssigned {
        task: TaskId,
        session: SessionId,
        disk: DiskId,
        proxy: NodeId,
        repository: NodeId,
        attempt: u32,
    },
    TaskFinished {
        task: TaskId,
        session: SessionId,
        disk: DiskId,
        proxy: NodeId,
        result: Result<TaskStats, String>,
    },
    PointCommitted {
        job: JobId,
        session: SessionId,
        vm: VmId,
        point: RestorePointId,
        repository: NodeId,
        host: NodeId,
        snap: SnapshotId,
        snapshot_at: Timestamp,
    },
    /// A point the repository holds that the catalog lacked (its commit
    /// acknowledgement was lost, or the manager restarted) was adopted.
    PointAdopted {
        job: JobId,
        vm: VmId,
        point: RestorePointId,
        repository: NodeId,
        host: NodeId,
        snap: SnapshotId,
    },
    /// A health check of the job's newest points ended: which points hold
    /// damaged blocks (the next backup re-reads them from the source).
    HealthChecked {
        job: JobId,
        damaged_points: Vec<RestorePointId>,
        damaged_blocks: u64,
        error: Option<String>,
    },
    /// A committed point the repository no longer has. Never expected: a
    /// committed point must survive everything but retention.
    PointLost {
        job: JobId,
        vm: VmId,
        point: RestorePointId,
        repository: NodeId,
    },
    /// A verification pass found `missed_blocks` changes CBT had not
    /// reported: these points (made since the last verified one) may hold
    /// stale blocks and must not be trusted for restore.
    PointsInconsistent {
        job: JobId,
        vm: VmId,
        points: Vec<RestorePointId>,
        missed_blocks: u64,
    },
    PointRemoved {
        job: JobId,
        vm: VmId,
        point: RestorePointId,
        result: Result<(), String>,
    },
    VmFinished {
        job: JobId,
        session: SessionId,
        vm: VmId,
        result: Result<(), String>,
    },
    SessionFinished {
        job: JobId,
        session: SessionId,
        ok: bool,
    },
    /// A restore of `point` onto a new VM `vm` on `host` began: retention
    /// spares the point until it ends (an operator's restore, or the seed
    /// of a replica).
    RestoreStarted {
        point: RestorePointId,
        host: NodeId,
        vm: VmId,
    },
    /// A restore of `point` onto a new VM `vm` on `host` ended.
    RestoreFinished {
        point: RestorePointId,
        host: NodeId,
        vm: VmId,
        result: Result<(), String>,
    },

    /// A VM of a session was not processed, and why (a seeded job without
    /// a seed backup, a replica that is failed over, ...).
    VmSkipped {
        job: JobId,
        session: SessionId,
        vm: VmId,
        reason: String,
    },
    /// A replica restore point exists: `snap` is the replica's snapshot on
    /// the target host holding it; `origin` is the content it must hold;
    /// `metadata` tells whether its digest vector is stored.
    ReplicaPointCommitted {
        job: JobId,
        session: SessionId,
        vm: VmId,
        replica: VmId,
        point: RestorePointId,
        snap: SnapshotId,
        origin: ReplicaOrigin,
        metadata: bool,
    },
    ReplicaPointRemoved {
        job: JobId,
        vm: VmId,
        point: RestorePointId,
        result: Result<(), String>,
    },
    /// An operator action on the replica of `vm` ended.
    ReplicaActionFinished {
        job: JobId,
        vm: VmId,
        replica: VmId,
        action: ReplicaAction,
        result: Result<ActionOutcome, String>,
    },
    // Last: a trace hashes each event's variant index, and earlier
    // variants keep theirs.
    /// The node refused a peer's input (a message it may not send, or
    /// values that fail validation) and closed the connection to it.
    InputRefused {
        peer: NodeId,
        reason: String,
    },
}

/// What a replica restore point must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaOrigin {
    /// The source VM as this snapshot froze it.
    Source { snap: SnapshotId },
    /// The seed: this backup restore point, restored.
    Seed { point: RestorePointId },
    /// A mapped VM's own content before its first sync.
    Mapped,
}

/// What a successful replica action left behind, for the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionOutcome {
    /// The replica runs from `point`; `snap` froze its content at power-on.
    FailedOver {
        point: RestorePointId,
        snap: SnapshotId,
    },
    /// The replica is back at its newest point (`snap`), powered off.
    FailoverUndone {
        point: RestorePointId,
        snap: SnapshotId,
    },
    /// The source holds the replica's final content: `source_snap` (the
    /// source after the sync) must equal `replica_snap`. `before` froze the
    /// source before it; `session` names the sync's disk tasks.
    FailedBack {
        replica_snap: SnapshotId,
        source_snap: SnapshotId,
        before: SnapshotId,
        session: SessionId,
    },
    /// The source is back as `source_snap` froze it before the failback.
    FailbackUndone {
        source_snap: SnapshotId,
    },
    FailbackCommitted,
    PermanentlyFailedOver,
}
