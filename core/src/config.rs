//! What the manager knows about the deployment: its configuration
//! database's contents. Built by the driver from a topology (scenario file or
//! realnet config); ids are indexes the driver assigned.

use crate::block::{BlockSize, Compression};
use crate::ids::{JobId, NodeId, VmId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub vms: BTreeMap<VmId, VmSpec>,
    pub proxies: BTreeMap<NodeId, ProxySpec>,
    pub repositories: BTreeMap<NodeId, RepositorySpec>,
    pub jobs: Vec<JobSpec>,
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
    /// Runs every `every`, starting at time zero.
    pub every: Duration,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobKind {
    Backup(BackupJob),
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
}
