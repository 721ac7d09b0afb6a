//! From a scenario to a deployment: node ids, the manager's configuration
//! database, and the network model. Both engines build their world from
//! this one mapping, so they run the same nodes with the same ids.
//!
//! Node ids: the manager is 0, then hosts, proxies and repositories in the
//! order the scenario lists them. VM and job ids are their scenario indexes.

use crate::net::{LinkSpec, Network, SiteId};
use crate::scenario::{self, Scenario};
use blockferry_core::config::{
    BackupJob, Deployment, JobKind, JobSpec, ProxySpec, REPLICA_VM_BASE, ReplicationJob, RepositorySpec, ThrottleRule, VmSpec,
};
use blockferry_core::roles::Roster;
use blockferry_core::{JobId, NodeId, Timestamp, VmId};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Disk tasks a repository accepts at once (the scenario format has no key
/// for it yet).
pub const REPOSITORY_MAX_TASKS: u32 = 8;

pub use blockferry_core::roles::Role;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    pub site: SiteId,
    /// A proxy's TCP flows per peer connection (`None` for other roles).
    pub streams: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Topology {
    pub nodes: Vec<NodeInfo>,
    pub by_name: BTreeMap<String, NodeId>,
    pub deployment: Deployment,
    pub network: Network,
    pub jobs: BTreeMap<String, JobId>,
    pub vms: BTreeMap<String, VmId>,
    /// Per repository node, how many blocks its store is expected to hold
    /// (see [`backed_up_blocks`]): a sizing hint for its index and store.
    pub expected_blocks: BTreeMap<NodeId, usize>,
    /// Direct-mode proxies and the hosts whose datastores each reads
    /// itself (see [`scenario::Proxy::direct_hosts`]).
    pub direct: BTreeMap<NodeId, Vec<NodeId>>,
    /// Some link breaks connections (`breaks > 0`): the run draws them.
    breaking: bool,
    /// When the run starts (reports give times as offsets from it).
    pub start: Timestamp,
}

/// The manager's node name (as `crash` faults name it).
pub const MANAGER: &str = "manager";

impl Topology {
    /// The operator's node id: the one after the deployment's nodes (under
    /// turmoil a host of its own beside the manager; the discrete-event
    /// runner injects its requests).
    pub fn operator(&self) -> NodeId {
        NodeId(self.nodes.len() as u32)
    }

    /// Which node plays which role, the operator included: what every
    /// node knows of the deployment.
    pub fn roster(&self) -> Roster {
        let nodes = self.nodes.iter().map(|n| (n.id, n.role));
        Rc::new(nodes.chain(std::iter::once((self.operator(), Role::Operator))).collect())
    }

    /// Builds the topology. The scenario was validated, so every name it
    /// references exists; a job kind this build does not run yet is skipped
    /// with `unsupported` naming it.
    pub fn build(s: &Scenario) -> Result<Topology, String> {
        let site = |name: &str| s.site_index(name).map(|i| SiteId(i as u32)).ok_or_else(|| format!("unknown site {name:?}"));
        let mut nodes = Vec::new();
        let mut add = |name: &str, role: Role, site: SiteId, streams: Option<u32>| {
            let id = NodeId(nodes.len() as u32);
            nodes.push(NodeInfo { id, name: name.to_string(), role, site, streams });
            id
        };
        add(MANAGER, Role::Manager, site(&s.manager.site)?, None);
        for h in &s.hosts {
            add(&h.name, Role::Host, site(&h.site)?, None);
        }
        for p in &s.proxies {
            add(&p.name, Role::Proxy, site(&p.site)?, Some(p.streams));
        }
        for r in &s.repositories {
            add(&r.name, Role::Repository, site(&r.site)?, None);
        }
        let by_name: BTreeMap<String, NodeId> = nodes.iter().map(|n| (n.name.clone(), n.id)).collect();
        let node = |name: &str| by_name.get(name).copied().ok_or_else(|| format!("unknown node {name:?}"));

        let vms: BTreeMap<String, VmId> = s.vms.iter().enumerate().map(|(i, v)| (v.name.clone(), VmId(i as u32))).collect();
        let vm = |name: &str| vms.get(name).copied().ok_or_else(|| format!("unknown vm {name:?}"));
        let direct = s
            .proxies
            .iter()
            .filter(|p| p.transport == scenario::Transport::Direct)
            .map(|p| Ok((node(&p.name)?, p.direct_hosts(&s.hosts).map(|h| node(&h.name)).collect::<Result<_, String>>()?)))
            .collect::<Result<_, String>>()?;
        let mut deployment = Deployment::default();
        for v in &s.vms {
            deployment.vms.insert(vm(&v.name)?, VmSpec { name: v.name.clone(), host: node(&v.host)? });
        }
        for p in &s.proxies {
            deployment.proxies.insert(node(&p.name)?, ProxySpec { name: p.name.clone(), task_slots: p.task_slots });
        }
        for r in &s.repositories {
            deployment.repositories.insert(node(&r.name)?, RepositorySpec { name: r.name.clone(), max_tasks: REPOSITORY_MAX_TASKS });
        }
        let mut jobs = BTreeMap::new();
        for (i, j) in s.jobs.iter().enumerate() {
            let id = JobId(i as u32);
            jobs.insert(j.name.clone(), id);
            let kind = match &j.kind {
                scenario::JobKind::Backup(b) => JobKind::Backup(BackupJob {
                    repository: node(&b.repository)?,
                    proxy: b.proxy.as_deref().map(node).transpose()?,
                    retention: b.retention,
                    compression: j.compression,
                    block_size: j.block_size,
                    verify_every: j.verify_every,
                    health_check: b.health_check,
                    window: b.window,
                }),
                scenario::JobKind::Replication(r) => replication_job(s, j, r, &node, &vm)?,
            };
            let vms = j.vms.iter().map(|n| vm(n)).collect::<Result<_, _>>()?;
            deployment.jobs.push(JobSpec {
                id,
                name: j.name.clone(),
                vms,
                schedule: j.schedule,
                kind,
                throttle: j.throttle_bps.map(|bps| bps / 8),
            });
        }

        for (i, t) in s.throttles.iter().enumerate() {
            let side = |name: &str| site(name).map(|id| nodes.iter().filter(|n| n.site == id).map(|n| n.id).collect());
            deployment.throttles.push(ThrottleRule {
                name: format!("throttle #{} ({} - {})", i + 1, t.between[0], t.between[1]),
                bytes_per_sec: t.bandwidth_bps / 8,
                sides: [side(&t.between[0])?, side(&t.between[1])?],
            });
        }

        let mut network = Network::default();
        for l in &s.links {
            let spec = LinkSpec { latency: l.latency, bandwidth_bps: Some(l.bandwidth_bps), loss: l.loss, breaks: l.breaks };
            network.set_link(site(&l.between[0])?, site(&l.between[1])?, spec);
        }
        for t in &s.throttles {
            network.meter(site(&t.between[0])?, site(&t.between[1])?);
        }
        let breaking = s.links.iter().any(|l| l.breaks > 0.0);
        let expected_blocks =
            s.repositories.iter().map(|r| Ok((node(&r.name)?, backed_up_blocks(s, &r.name)))).collect::<Result<_, String>>()?;
        Ok(Topology { nodes, by_name, deployment, network, jobs, vms, expected_blocks, direct, breaking, start: s.start })
    }

    pub fn has_breaking_links(&self) -> bool {
        self.breaking
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|id| &self.nodes[id.0 as usize])
    }

    pub fn name(&self, id: NodeId) -> &str {
        self.nodes.get(id.0 as usize).map_or("?", |n| n.name.as_str())
    }

    pub fn site_of(&self, id: NodeId) -> Option<SiteId> {
        self.nodes.get(id.0 as usize).map(|n| n.site)
    }
}

/// A replication job of the manager's configuration, with the checks the
/// scenario parser leaves to the deployment: the two ends of a disk task
/// need two proxies, a seed must come from a repository in the DR site, and
/// replica ids must stay clear of scenario VM ids.
fn replication_job(
    s: &Scenario,
    j: &scenario::Job,
    r: &scenario::ReplicationJob,
    node: &impl Fn(&str) -> Result<NodeId, String>,
    vm: &impl Fn(&str) -> Result<VmId, String>,
) -> Result<JobKind, String> {
    let what = format!("job {:?}", j.name);
    if r.source_proxy == r.target_proxy {
        return Err(format!("{what}: source_proxy and target_proxy must be two proxies (each runs one end of every disk task)"));
    }
    if s.vms.len() >= REPLICA_VM_BASE as usize {
        return Err(format!("{what}: at most {REPLICA_VM_BASE} vms (replica ids start there)"));
    }
    let seed_from = match &r.seed_from {
        Some(name) => {
            let index = s.jobs.iter().position(|x| &x.name == name).ok_or_else(|| format!("{what}: unknown seed job {name:?}"))?;
            let dr_site = s.host(&r.target_host).map(|h| h.site.as_str());
            if let scenario::JobKind::Backup(b) = &s.jobs[index].kind
                && s.repository(&b.repository).map(|x| x.site.as_str()) != dr_site
            {
                return Err(format!(
                    "{what} seeds from job {name:?}, whose repository {:?} is not in the DR site of target host {:?}",
                    b.repository, r.target_host
                ));
            }
            Some(JobId(index as u32))
        }
        None => None,
    };
    let map = r.map.iter().map(|(source, target)| Ok((vm(source)?, vm(target)?))).collect::<Result<BTreeMap<_, _>, String>>()?;
    Ok(JobKind::Replication(ReplicationJob {
        source_proxy: node(&r.source_proxy)?,
        target_proxy: node(&r.target_proxy)?,
        target_host: node(&r.target_host)?,
        metadata_repository: node(&r.metadata_repository)?,
        restore_points: r.restore_points,
        compression: j.compression,
        block_size: j.block_size,
        verify_every: j.verify_every,
        seed_from,
        map,
    }))
}

/// The guest each replica runs once failed over: its source VM's workload.
/// Ids as the manager names replicas (`ReplicationJob::replica_of`).
pub fn replica_guests(s: &Scenario) -> Vec<(VmId, scenario::Workload)> {
    let index = |name: &str| s.vm_index(name).map(|i| VmId(i as u32));
    let mut guests = Vec::new();
    for j in &s.jobs {
        let scenario::JobKind::Replication(r) = &j.kind else { continue };
        for name in &j.vms {
            let (Some(source), Some(spec)) = (index(name), s.vm(name).and_then(|v| v.workload)) else { continue };
            let replica = match r.map.get(name) {
                Some(target) => index(target),
                None => Some(VmId(REPLICA_VM_BASE.saturating_add(source.0))),
            };
            guests.extend(replica.map(|replica| (replica, spec)));
        }
    }
    guests
}

/// How many blocks the backup jobs into `repository` read in a full pass,
/// up to 4 Mi: its store's table is sized for them up front, since growing
/// a table of millions of blocks step by step copied and re-faulted it (a
/// third of a TiB-scale run's page faults). The cap keeps a scenario of
/// huge disks and tiny blocks from reserving gigabytes it may never fill.
pub fn backed_up_blocks(s: &Scenario, repository: &str) -> usize {
    const CAP: u64 = 1 << 22;
    let blocks: u64 = s
        .jobs
        .iter()
        .filter(|j| matches!(&j.kind, scenario::JobKind::Backup(b) if b.repository == repository))
        .flat_map(|j| j.vms.iter().map(move |vm| (j.block_size, vm)))
        .filter_map(|(size, name)| Some((size, s.vms.iter().find(|vm| vm.name == *name)?)))
        .flat_map(|(size, vm)| vm.disks.iter().map(move |&disk| size.blocks_for(disk)))
        .sum();
    usize::try_from(blocks.min(CAP)).unwrap_or(0)
}
