//! Scenario files (see `shared/SCENARIOS.md`, the contract): a topology,
//! jobs, a fault schedule, operator actions and expectations in one TOML
//! file, parsed into the typed [`Scenario`] and checked for consistency
//! before anything runs.
//!
//! Parsing is two steps: serde reads the file into `raw` structs that deny
//! unknown keys and parse value grammars (so those errors carry a line),
//! then `validate` resolves defaults, checks every cross-reference and the
//! per-kind keys of jobs and faults, and builds the types below.

mod point_ref;
mod raw;
pub use blockferry_core::config_file::units;
mod validate;

#[cfg(test)]
mod tests;

/// A scenario file that cannot be used, and why.
pub use blockferry_core::config_file::FileError as ScenarioError;
pub use point_ref::PointRef;

use blockferry_core::config::Schedule;
use blockferry_core::{BlockSize, Compression, Timestamp};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Where a run's clock starts when the scenario does not say (`start`).
pub const DEFAULT_START: Timestamp = Timestamp(1_767_225_600 * 1_000_000_000);

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Where it was read from (for messages and reproduce lines).
    pub origin: String,
    pub name: String,
    /// The default seed; a command-line seed overrides it.
    pub seed: u64,
    /// Simulated time the run may take.
    pub duration: Duration,
    /// The wall-clock instant the run starts at (every node's clock reads
    /// it at the start; fault and action times are offsets from it).
    pub start: Timestamp,
    /// Default job block size.
    pub block_size: BlockSize,
    pub engine: Engine,
    pub payload: PayloadMode,
    /// Which retained points the end-of-run restores prove restorable (an
    /// extension of the contract).
    pub restore_check: RestoreCheck,
    pub sites: Vec<Site>,
    pub manager: Manager,
    pub links: Vec<Link>,
    /// Network traffic throttling rules (an extension of the contract).
    pub throttles: Vec<Throttle>,
    pub hosts: Vec<Host>,
    pub vms: Vec<Vm>,
    pub proxies: Vec<Proxy>,
    pub repositories: Vec<Repository>,
    pub jobs: Vec<Job>,
    pub faults: Vec<Fault>,
    pub actions: Vec<Action>,
    pub expects: Vec<Expect>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// The discrete-event engine.
    #[default]
    Des,
    /// The real async driver over turmoil's TCP.
    Turmoil,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// Blocks travel as descriptors (digest, modelled sizes).
    #[default]
    Synthetic,
    /// Block bytes are materialised and run through the real pipeline.
    Real,
}

/// Which retained backup points are restored at the end of a run.
///
/// Every committed point is already compared digest for digest with its
/// snapshot, and its blocks checked durable, when it commits; the restores
/// at the end prove the restore path on top of that. Restoring every point
/// of a long chain re-reads nearly the same blocks once per point, which
/// dominates a TiB-scale run, so such a run may restore only the newest
/// point of each VM (the one that depends on the whole chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreCheck {
    /// Every retained point that was not reported inconsistent.
    #[default]
    All,
    /// The newest such point of each VM in each job.
    Newest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub name: String,
}

/// Where the manager (backup server) runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub site: String,
}

/// A WAN link between two sites.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub between: [String; 2],
    pub latency: Duration,
    pub bandwidth_bps: u64,
    /// Packet loss rate: bounds each TCP connection's throughput (see
    /// `crate::net::tcp`).
    pub loss: f64,
    /// Probability that a connection on this link breaks, per message.
    pub breaks: f64,
}

/// A network traffic throttling rule: disk-task traffic between the two
/// sites may use at most `bandwidth_bps` together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    pub between: [String; 2],
    pub bandwidth_bps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub site: String,
    /// Changed block tracking available.
    pub cbt: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    pub name: String,
    pub host: String,
    /// Disk sizes in bytes.
    pub disks: Vec<u64>,
    /// Share of blocks that start all zero, in [0, 1].
    pub zero_fraction: f64,
    /// 0 = random bytes, 1 = highly compressible.
    pub compressibility: f64,
    /// Share of blocks the guest reports as swap, in [0, 1].
    pub swap_fraction: f64,
    pub workload: Option<Workload>,
    /// A ready-to-use copy of another VM (what replica mapping adopts):
    /// it starts with that VM's content as it was `copy_age` before the
    /// run (the source's workload having run meanwhile).
    pub copy: Option<Copy>,
}

/// Where a copied VM's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub of: String,
    /// How old the copy is at time zero.
    pub age: Duration,
}

/// Guest writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Block writes per hour over the whole VM.
    pub writes_per_hour: u64,
    /// Share of writes that hit the hot set, in [0, 1].
    pub hot_fraction: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub name: String,
    pub site: String,
    /// Concurrent disk tasks.
    pub task_slots: u32,
    pub transport: Transport,
    /// TCP connections a task spreads its batches over, per peer.
    pub streams: u32,
}

impl Proxy {
    /// The hosts whose datastores this proxy reads itself in direct mode:
    /// those of its own site, as a SAN-attached or hot-add proxy reaches
    /// only its own site's storage. It reads any other host's VMs through
    /// that host (network mode, as Veeam fails over to it).
    pub fn direct_hosts<'a>(&'a self, hosts: &'a [Host]) -> impl Iterator<Item = &'a Host> + 'a {
        hosts.iter().filter(move |h| h.site == self.site)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Reads through the host.
    #[default]
    Network,
    /// Reads the datastore directly.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub site: String,
    /// Bytes.
    pub capacity: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    pub vms: Vec<String>,
    /// When sessions start ("every <period>" or "daily at HH:MM").
    pub schedule: Schedule,
    pub compression: Compression,
    /// The job's block size (its own, or the scenario's default).
    pub block_size: BlockSize,
    /// Every Nth session re-reads all blocks and compares digests.
    pub verify_every: Option<u32>,
    /// Bandwidth cap of the job's disk tasks together, bits per second.
    pub throttle_bps: Option<u64>,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    Backup(BackupJob),
    Replication(ReplicationJob),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    /// `None`: the scheduler picks one.
    pub proxy: Option<String>,
    pub repository: String,
    /// Restore points kept.
    pub retention: u32,
    /// Period of the at-rest health check of the newest point.
    pub health_check: Option<Duration>,
    /// Backup window: sessions still running this long after their start
    /// are terminated.
    pub window: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationJob {
    pub source_proxy: String,
    pub target_proxy: String,
    pub target_host: String,
    pub metadata_repository: String,
    /// Replica restore points kept on the target host.
    pub restore_points: u32,
    /// A backup job whose points seed the replicas.
    pub seed_from: Option<String>,
    /// Source VM → existing VM on the target host to map the replica to.
    pub map: BTreeMap<String, String>,
}

/// A scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Offset from the start of the run.
    pub at: Timestamp,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// No traffic between the two sites for `duration`.
    Partition { between: [String; 2], duration: Duration },
    /// The node (host, proxy, repository or "manager") stops, losing
    /// unsynced writes, and restarts after `duration`.
    Crash { node: String, duration: Duration },
    /// The VM's host answers "CBT unavailable" on its next pass.
    CbtReset { vm: String },
    /// The VM's host's CBT silently omits this many changed blocks once.
    CbtMiss { vm: String, blocks: u64 },
    /// The repository's store refuses writes for `duration`.
    DiskFull { node: String, duration: Duration },
    /// This many blocks stored at the repository are damaged at rest.
    CorruptBlock { node: String, blocks: u64 },
    /// The link runs at `bandwidth_bps` for `duration`.
    SlowLink { between: [String; 2], bandwidth_bps: u64, duration: Duration },
}

impl FaultKind {
    /// The kind's name as scenario files spell it.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Partition { .. } => "partition",
            FaultKind::Crash { .. } => "crash",
            FaultKind::CbtReset { .. } => "cbt_reset",
            FaultKind::CbtMiss { .. } => "cbt_miss",
            FaultKind::DiskFull { .. } => "disk_full",
            FaultKind::CorruptBlock { .. } => "corrupt_block",
            FaultKind::SlowLink { .. } => "slow_link",
        }
    }
}

/// An operator action on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub at: Timestamp,
    pub kind: ActionKind,
    pub vm: String,
    pub point: PointRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Failover,
    UndoFailover,
    Failback,
    CommitFailback,
    UndoFailback,
    PermanentFailover,
}

/// Checked at the end of the run, beside the invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub job: String,
    pub min_restore_points: Option<u32>,
    pub max_failed_sessions: Option<u32>,
    /// Bytes.
    pub max_wan_bytes: Option<u64>,
    pub min_sessions_ok: Option<u32>,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::item(&origin, format!("cannot read the file: {e}")))?;
        Scenario::from_str(&text, &origin)
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub fn from_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let raw: raw::RawScenario = toml::from_str(text).map_err(|e| ScenarioError::from_toml(origin, text, &e))?;
        validate::validate(raw, origin)
    }

    pub fn site_index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| s.name == name)
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }

    pub fn vm_index(&self, name: &str) -> Option<usize> {
        self.vms.iter().position(|v| v.name == name)
    }

    pub fn proxy(&self, name: &str) -> Option<&Proxy> {
        self.proxies.iter().find(|p| p.name == name)
    }

    pub fn repository(&self, name: &str) -> Option<&Repository> {
        self.repositories.iter().find(|r| r.name == name)
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The smallest and largest block size any job uses (the scenario's
    /// default when there are no jobs). The world's content granularity is
    /// the smallest, so every job block covers whole content blocks.
    pub fn block_size_range(&self) -> (BlockSize, BlockSize) {
        let sizes = self.jobs.iter().map(|j| j.block_size);
        let min = sizes.clone().min().unwrap_or(self.block_size);
        let max = sizes.max().unwrap_or(self.block_size);
        (min, max)
    }
}
