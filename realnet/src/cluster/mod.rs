//! The deployment file, `cluster.toml`: which nodes make up a cluster,
//! where they listen, where their state lives, and the jobs. Every daemon
//! and the operator CLI read the same file, so they agree on node ids,
//! roles and addresses without asking each other.
//!
//! It speaks the scenario files' vocabulary (`core::config_file`): the same
//! sizes, durations and schedules, and errors that name the file, the line
//! and the key. Relative paths resolve against the file's folder; unknown
//! keys and names that point nowhere are errors.
//!
//! Ids that outlive a process — a VM's and a job's travel in every restore
//! point manifest — are derived from names ([`vm_id`], [`job_id`]), so
//! adding a VM or reordering jobs never changes what an existing point
//! means. Node ids are positions in the file (the manager first, then
//! hosts, proxies and repositories in file order): they live only on the
//! wire, which every node reads from the same file.

mod deployment;
mod raw;
mod validate;

pub use deployment::REPOSITORY_MAX_TASKS;

#[cfg(test)]
mod tests;

use blockferry_core::config::Schedule;
use blockferry_core::config_file::FileError;
use blockferry_core::roles::{Role, Roster};
use blockferry_core::{BlockSize, Compression, JobId, NodeId, VmId};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// The manager's node name (`blockferry daemon --node manager`).
pub const MANAGER: &str = "manager";

/// A deployment file, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The file it was read from.
    pub file: PathBuf,
    pub manager: ManagerNode,
    pub sites: Vec<String>,
    pub hosts: Vec<HostNode>,
    pub proxies: Vec<ProxyNode>,
    pub repositories: Vec<RepositoryNode>,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ManagerNode {
    pub address: String,
    /// The catalog's folder.
    pub database: PathBuf,
    pub metrics_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostNode {
    pub name: String,
    pub site: String,
    pub address: String,
    /// A folder per VM; a VM's disks are the `*.img` files inside, by name.
    pub datastore: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyNode {
    pub name: String,
    pub site: String,
    pub address: String,
    pub task_slots: u32,
    /// Reads its site's hosts' datastores itself (`transport = "direct"`).
    pub direct: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryNode {
    pub name: String,
    pub site: String,
    pub address: String,
    pub path: PathBuf,
    /// Bytes it may hold (`None`: what the disk holds).
    pub capacity: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: String,
    pub vms: Vec<String>,
    pub schedule: Schedule,
    pub compression: Compression,
    pub block_size: BlockSize,
    pub verify_every: Option<u32>,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    Backup {
        proxy: Option<String>,
        repository: String,
        retention: u32,
        health_check: Option<Duration>,
    },
    Replication {
        source_proxy: String,
        target_proxy: String,
        target_host: String,
        metadata_repository: String,
        restore_points: u32,
        seed_from: Option<String>,
        /// Source VM → the VM folder on the target host that is its
        /// replica: the file's `map`, and `<vm>_replica` for the others.
        replicas: BTreeMap<String, String>,
    },
}

/// One node of the cluster as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    pub address: String,
}

impl Cluster {
    /// Reads and checks a deployment file.
    pub fn load(path: impl AsRef<Path>) -> Result<Cluster, FileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError::item(&path.display().to_string(), format!("cannot read the file: {e}")))?;
        Cluster::from_str(&text, path)
    }

    /// Parses and checks deployment text that was read from `file` (its
    /// folder anchors relative paths).
    pub fn from_str(text: &str, file: &Path) -> Result<Cluster, FileError> {
        let origin = file.display().to_string();
        let raw: raw::RawCluster = toml::from_str(text).map_err(|e| FileError::from_toml(&origin, text, &e))?;
        validate::validate(raw, file)
    }

    /// Every node, with its id: the manager, then hosts, proxies and
    /// repositories in file order.
    pub fn nodes(&self) -> Vec<NodeEntry> {
        let manager = std::iter::once((MANAGER, Role::Manager, &self.manager.address));
        let hosts = self.hosts.iter().map(|h| (h.name.as_str(), Role::Host, &h.address));
        let proxies = self.proxies.iter().map(|p| (p.name.as_str(), Role::Proxy, &p.address));
        let repositories = self.repositories.iter().map(|r| (r.name.as_str(), Role::Repository, &r.address));
        manager
            .chain(hosts)
            .chain(proxies)
            .chain(repositories)
            .enumerate()
            .map(|(i, (name, role, address))| NodeEntry { id: NodeId(i as u32), name: name.to_string(), role, address: address.clone() })
            .collect()
    }

    /// The operator's id: the one after every node's.
    pub fn operator(&self) -> NodeId {
        NodeId((1 + self.hosts.len() + self.proxies.len() + self.repositories.len()) as u32)
    }

    pub fn node(&self, name: &str) -> Option<NodeEntry> {
        self.nodes().into_iter().find(|n| n.name == name)
    }

    /// Which node plays which role, the operator included.
    pub fn roster(&self) -> Roster {
        let nodes = self.nodes().into_iter().map(|n| (n.id, n.role));
        Rc::new(nodes.chain(std::iter::once((self.operator(), Role::Operator))).collect())
    }
}

/// A VM's id: from its name (see the module documentation).
pub fn vm_id(name: &str) -> VmId {
    VmId(name_hash("vm", name))
}

/// A job's id: from its name.
pub fn job_id(name: &str) -> JobId {
    JobId(name_hash("job", name))
}

/// 31 bits of a keyed BLAKE3 of the name, never 0. Two names of a cluster
/// meeting on one id is refused when the deployment is built.
fn name_hash(kind: &str, name: &str) -> u32 {
    let digest = blake3::Hasher::new_derive_key(&format!("blockferry {kind} id")).update(name.as_bytes()).finalize();
    let [a, b, c, d, ..] = *digest.as_bytes();
    (u32::from_le_bytes([a, b, c, d]) & 0x7fff_ffff).max(1)
}
