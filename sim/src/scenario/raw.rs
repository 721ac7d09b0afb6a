//! The file as written: serde structs mirroring the TOML tables one to one.
//! Every table denies unknown keys (a typo is an error, never ignored);
//! values with a grammar (sizes, durations, ...) are parsed here already so
//! their errors carry a line. Keys that only some kinds of job or fault take
//! are optional here and checked per kind in `validate`.

use super::PointRef;
use super::units::{Bandwidth, Block, Comp, Dur, Every, Instant, ScheduleText, Size};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: String,
    pub seed: Option<u64>,
    pub duration: Dur,
    pub start: Option<Instant>,
    pub block_size: Option<Block>,
    pub engine: Option<super::Engine>,
    pub payload: Option<super::PayloadMode>,
    pub restore_check: Option<super::RestoreCheck>,
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    pub manager: Option<RawManager>,
    #[serde(default, rename = "link")]
    pub links: Vec<RawLink>,
    #[serde(default, rename = "throttle")]
    pub throttles: Vec<RawThrottle>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<RawHost>,
    #[serde(default, rename = "vm")]
    pub vms: Vec<RawVm>,
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<RawProxy>,
    #[serde(default, rename = "repository")]
    pub repositories: Vec<RawRepository>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<RawJob>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<RawFault>,
    #[serde(default, rename = "action")]
    pub actions: Vec<RawAction>,
    #[serde(default, rename = "expect")]
    pub expects: Vec<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManager {
    pub site: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub between: Vec<String>,
    pub latency: Dur,
    pub bandwidth: Bandwidth,
    pub loss: Option<f64>,
    pub breaks: Option<f64>,
}

/// Extension: a network traffic throttling rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThrottle {
    pub between: Vec<String>,
    pub bandwidth: Bandwidth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: String,
    pub site: String,
    pub cbt: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVm {
    pub name: String,
    pub host: String,
    pub disks: Vec<Size>,
    pub zero_fraction: Option<f64>,
    pub compressibility: Option<f64>,
    pub swap_fraction: Option<f64>,
    pub workload: Option<RawWorkload>,
    pub copy_of: Option<String>,
    pub copy_age: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub writes_per_hour: u64,
    pub hot_fraction: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub name: String,
    pub site: String,
    pub task_slots: Option<u32>,
    pub transport: Option<super::Transport>,
    pub streams: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    pub name: String,
    pub site: String,
    pub capacity: Size,
}

/// Both job kinds in one table; `validate` refuses keys of the other kind.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: String,
    pub kind: RawJobKind,
    pub vms: Vec<String>,
    pub schedule: ScheduleText,
    pub compression: Option<Comp>,
    pub block_size: Option<Block>,
    pub verify_every: Option<u32>,
    /// Extension: bandwidth cap of the job's disk tasks together.
    pub throttle: Option<Bandwidth>,
    // backup
    pub proxy: Option<String>,
    pub repository: Option<String>,
    pub retention: Option<u32>,
    pub health_check: Option<Every>,
    /// Extension: backup window.
    pub window: Option<Dur>,
    // replication
    pub source_proxy: Option<String>,
    pub target_proxy: Option<String>,
    pub target_host: Option<String>,
    pub metadata_repository: Option<String>,
    pub restore_points: Option<u32>,
    pub seed_from: Option<String>,
    pub map: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawJobKind {
    Backup,
    Replication,
}

/// Every fault kind in one table; `validate` checks that exactly the keys of
/// the kind are present.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub at: Dur,
    pub kind: RawFaultKind,
    pub between: Option<Vec<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    pub node: Option<String>,
    pub vm: Option<String>,
    pub blocks: Option<u64>,
    pub bandwidth: Option<Bandwidth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFaultKind {
    Partition,
    Crash,
    CbtReset,
    CbtMiss,
    DiskFull,
    CorruptBlock,
    SlowLink,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub at: Dur,
    pub kind: super::ActionKind,
    pub vm: String,
    pub point: Option<PointRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub job: String,
    pub min_restore_points: Option<u32>,
    pub max_failed_sessions: Option<u32>,
    pub max_wan_bytes: Option<Size>,
    pub min_sessions_ok: Option<u32>,
}
