//! Events: the observability spine. Every meaningful step a node takes emits
//! one; the simulator's checker and trace, realnet's logs and progress are
//! all built from this one stream.

use crate::ids::{DiskId, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, VmId};
use crate::time::Timestamp;
use crate::wire::message::TaskStats;
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
    /// A restore of `point` onto a new VM `vm` on `host` ended.
    RestoreFinished {
        point: RestorePointId,
        host: NodeId,
        vm: VmId,
        result: Result<(), String>,
    },
}
