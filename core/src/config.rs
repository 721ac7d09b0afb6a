//! What the manager knows about the deployment: its configuration
//! database's contents. Built by the driver from a topology (scenario file or
//! realnet config); ids are indexes the driver assigned.

use crate::block::{BlockSize, Compression};
use crate::ids::{JobId, NodeId, VmId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub vms: BTreeMap<VmId, VmSpec>,
    pub proxies: BTreeMap<NodeId, ProxySpec>,
    pub repositories: BTreeMap<NodeId, RepositorySpec>,
    pub jobs: Vec<JobSpec>,
    /// Network traffic throttling rules (global configuration).
    pub throttles: Vec<ThrottleRule>,
}

/// A network traffic throttling rule: traffic of disk tasks between a node
/// of one side and a node of the other (in either direction) may use at
/// most `bytes_per_sec` together; the manager splits it evenly among the
/// tasks crossing the rule. Sides are node sets, the way Veeam's rules name
/// source and target IP ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThrottleRule {
    pub name: String,
    pub bytes_per_sec: u64,
    pub sides: [BTreeSet<NodeId>; 2],
}

impl Deployment {
    /// The job with id `job`.
    pub fn job(&self, job: JobId) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.id == job)
    }
}

impl ThrottleRule {
    /// Whether traffic between `a` and `b` crosses the rule.
    pub fn covers(&self, a: NodeId, b: NodeId) -> bool {
        let [x, y] = &self.sides;
        (x.contains(&a) && y.contains(&b)) || (x.contains(&b) && y.contains(&a))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub host: NodeId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxySpec {
    pub name: String,
    /// Disk tasks the proxy may run at once.
    pub task_slots: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositorySpec {
    pub name: String,
    /// Disk tasks writing to the repository at once.
    pub max_tasks: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: JobId,
    pub name: String,
    pub vms: Vec<VmId>,
    /// When sessions start.
    pub schedule: Schedule,
    pub kind: JobKind,
    /// Throttling: bytes per second the job's disk tasks may move together
    /// (split evenly among its running tasks).
    pub throttle: Option<u64>,
}

/// When a job's sessions start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// `every 1h`: once the manager is ready (its catalog rebuilt), then
    /// each period after the previous start.
    Every(Duration),
    /// `daily at 22:00`: at this time of day, UTC (time since midnight).
    DailyAt(Duration),
    /// Only when the operator says so.
    Manual,
}

impl Schedule {
    /// The first start once the manager is ready at `now`.
    pub fn first(self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(_) => Some(now),
            Schedule::DailyAt(at) => Some(now.next_time_of_day(at)),
            Schedule::Manual => None,
        }
    }

    /// The longest time between two starts (`None`: manual).
    pub fn period(self) -> Option<Duration> {
        match self {
            Schedule::Every(period) => Some(period),
            Schedule::DailyAt(_) => Some(crate::time::DAY),
            Schedule::Manual => None,
        }
    }

    /// The start after one that began at `started`.
    pub fn after(self, started: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(period) => Some(started + period),
            // Strictly after: a session started at 22:00 is not due again
            // until tomorrow's 22:00.
            Schedule::DailyAt(at) => Some((started + Duration::from_nanos(1)).next_time_of_day(at)),
            Schedule::Manual => None,
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(period) => write!(f, "every {}", humantime::format_duration(*period)),
            Schedule::DailyAt(at) => {
                let minutes = at.as_secs() / 60;
                write!(f, "daily at {:02}:{:02}", minutes / 60, minutes % 60)
            }
            Schedule::Manual => f.write_str("manual"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    Backup(BackupJob),
    Replication(ReplicationJob),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJob {
    pub repository: NodeId,
    /// `None`: the scheduler picks any proxy with a free slot.
    pub proxy: Option<NodeId>,
    /// Restore points kept per VM.
    pub retention: u32,
    pub compression: Compression,
    pub block_size: BlockSize,
    /// Every Nth session reads all blocks and compares digests.
    pub verify_every: Option<u32>,
    /// Re-hash the newest point's blocks at rest this often.
    pub health_check: Option<Duration>,
    /// Backup window: a session still transferring this long after it
    /// started is terminated; its unfinished VMs fail and leave no point.
    pub window: Option<Duration>,
}

/// Replica VM ids start here: `REPLICA_VM_BASE + source id`. Scenario VMs
/// are numbered from 0 and the simulator's end-of-run restores from
/// `n + 1000`, so a replica id can never collide with either.
pub const REPLICA_VM_BASE: u32 = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationJob {
    /// Reads the source VM's snapshot and sends blocks across.
    pub source_proxy: NodeId,
    /// Receives blocks and writes them to the replica through `target_host`.
    pub target_proxy: NodeId,
    pub target_host: NodeId,
    /// Keeps the replica metadata (digest vector per replica point).
    pub metadata_repository: NodeId,
    /// Replica restore points (host snapshots of the replica) kept.
    pub restore_points: u32,
    pub compression: Compression,
    pub block_size: BlockSize,
    /// Every Nth session compares digests instead of trusting CBT.
    pub verify_every: Option<u32>,
    /// Seeding: the first run restores the newest point of this backup job
    /// onto the replica, then sends only what differs.
    pub seed_from: Option<JobId>,
    /// Mapping: source VM → an existing VM on `target_host` that becomes
    /// its replica.
    pub map: BTreeMap<VmId, VmId>,
}

impl ReplicationJob {
    /// The replica of `source`: the mapped VM, or a new VM with id
    /// [`REPLICA_VM_BASE`] + source id.
    pub fn replica_of(&self, source: VmId) -> VmId {
        self.map.get(&source).copied().unwrap_or(VmId(REPLICA_VM_BASE.saturating_add(source.0)))
    }
}
