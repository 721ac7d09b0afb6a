//! From a [`Cluster`] to what the manager knows (core's [`Deployment`]):
//! node ids for names, VM and job ids from names, and which host holds
//! each VM — found by looking for the VM's folder in the hosts' datastores.

use super::{Cluster, JobKind, vm_id};
use blockferry_core::config::{BackupJob, Deployment, JobKind as CoreJobKind, JobSpec, ProxySpec, RepositorySpec, VmSpec};
use blockferry_core::{NodeId, VmId};
use std::collections::BTreeMap;
use std::path::Path;

/// Disk tasks a repository takes at once.
pub const REPOSITORY_MAX_TASKS: u32 = 8;

impl Cluster {
    /// Which host holds each VM a job names: the one host whose datastore
    /// has a folder of that name. Read where the datastores are reachable
    /// (the manager's machine, or `blockferry up`).
    pub fn locate_vms(&self) -> Result<BTreeMap<String, String>, String> {
        let mut located = BTreeMap::new();
        for job in &self.jobs {
            for vm in &job.vms {
                if located.contains_key(vm) {
                    continue;
                }
                let holders: Vec<&str> =
                    self.hosts.iter().filter(|h| is_vm_folder(&h.datastore.join(vm))).map(|h| h.name.as_str()).collect();
                match holders.as_slice() {
                    [host] => _ = located.insert(vm.clone(), host.to_string()),
                    [] => {
                        let looked: Vec<String> = self.hosts.iter().map(|h| h.datastore.display().to_string()).collect();
                        return Err(format!("VM {vm:?} of job {:?} is in no host's datastore (looked in {})", job.name, looked.join(", ")));
                    }
                    many => return Err(format!("VM {vm:?} is in the datastores of several hosts: {}", many.join(", "))),
                }
            }
        }
        Ok(located)
    }

    /// The manager's view of the cluster, `located` saying which host holds
    /// each VM ([`Cluster::locate_vms`]).
    pub fn deployment(&self, located: &BTreeMap<String, String>) -> Result<Deployment, String> {
        let ids: BTreeMap<String, NodeId> = self.nodes().into_iter().map(|n| (n.name, n.id)).collect();
        let node = |name: &str| ids.get(name).copied().ok_or_else(|| format!("no node {name:?}"));
        let mut deployment = Deployment::default();
        let mut vm_names: BTreeMap<VmId, &str> = BTreeMap::new();
        for (vm, host) in located {
            let id = vm_id(vm);
            if let Some(other) = vm_names.insert(id, vm) {
                return Err(format!("VMs {other:?} and {vm:?} have the same id {id}: rename one"));
            }
            deployment.vms.insert(id, VmSpec { name: vm.clone(), host: node(host)? });
        }
        for p in &self.proxies {
            deployment.proxies.insert(node(&p.name)?, ProxySpec { name: p.name.clone(), task_slots: p.task_slots });
        }
        for r in &self.repositories {
            deployment.repositories.insert(node(&r.name)?, RepositorySpec { name: r.name.clone(), max_tasks: REPOSITORY_MAX_TASKS });
        }
        let mut job_names = BTreeMap::new();
        for job in &self.jobs {
            let id = super::job_id(&job.name);
            if let Some(other) = job_names.insert(id, &job.name) {
                return Err(format!("jobs {other:?} and {:?} have the same id {id}: rename one", job.name));
            }
            let kind = match &job.kind {
                JobKind::Backup { proxy, repository, retention, health_check } => CoreJobKind::Backup(BackupJob {
                    repository: node(repository)?,
                    proxy: proxy.as_deref().map(node).transpose()?,
                    retention: *retention,
                    compression: job.compression,
                    block_size: job.block_size,
                    verify_every: job.verify_every,
                    health_check: *health_check,
                    window: None,
                }),
                JobKind::Replication { .. } => {
                    return Err(format!("job {:?}: the daemons do not run replication jobs yet", job.name));
                }
            };
            let vms =
                job.vms.iter().map(|vm| if located.contains_key(vm) { Ok(vm_id(vm)) } else { Err(format!("VM {vm:?} was not located")) });
            deployment.jobs.push(JobSpec {
                id,
                name: job.name.clone(),
                vms: vms.collect::<Result<_, _>>()?,
                schedule: job.schedule,
                kind,
                throttle: None,
            });
        }
        Ok(deployment)
    }
}

/// A folder holding at least one `*.img` file.
fn is_vm_folder(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "img")))
}
