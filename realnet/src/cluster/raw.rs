//! `cluster.toml` as written: serde structs mirroring its tables one to
//! one. Every table denies unknown keys (a typo is an error naming its
//! line, never ignored); values with a grammar are parsed here already so
//! their errors carry a line too. Keys of one job kind only are optional
//! here and checked per kind in `validate`.

use blockferry_core::config_file::units::{Block, Comp, Every, ScheduleText, Size};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub manager: RawManager,
    #[serde(default, rename = "site")]
    pub sites: Vec<RawSite>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<RawHost>,
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<RawProxy>,
    #[serde(default, rename = "repository")]
    pub repositories: Vec<RawRepository>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<RawJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManager {
    pub address: String,
    pub database: String,
    /// Prometheus text metrics (issue 15), optional.
    pub metrics_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: String,
    pub site: String,
    pub address: String,
    pub datastore: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTransport {
    Network,
    Direct,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub name: String,
    pub site: String,
    pub address: String,
    pub task_slots: Option<u32>,
    pub transport: Option<RawTransport>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    pub name: String,
    pub site: String,
    pub address: String,
    pub path: String,
    pub capacity: Option<Size>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawJobKind {
    Backup,
    Replication,
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
    // backup
    pub proxy: Option<String>,
    pub repository: Option<String>,
    pub retention: Option<u32>,
    pub health_check: Option<Every>,
    // replication
    pub source_proxy: Option<String>,
    pub target_proxy: Option<String>,
    pub target_host: Option<String>,
    pub metadata_repository: Option<String>,
    pub restore_points: Option<u32>,
    pub seed_from: Option<String>,
    pub map: Option<BTreeMap<String, String>>,
}
