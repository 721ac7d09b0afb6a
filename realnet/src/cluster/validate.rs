//! From the file as written to a [`Cluster`]: defaults, per-kind keys of
//! jobs, every name resolved, relative paths anchored at the file's folder.

use super::raw::{RawCluster, RawJob, RawJobKind, RawTransport};
use super::{Cluster, HostNode, Job, JobKind, MANAGER, ManagerNode, ProxyNode, RepositoryNode};
use blockferry_core::config_file::FileError;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DEFAULT_TASK_SLOTS: u32 = 2;
const DEFAULT_RETENTION: u32 = 7;
const DEFAULT_RESTORE_POINTS: u32 = 7;

type Result<T> = std::result::Result<T, FileError>;

pub fn validate(raw: RawCluster, file: &Path) -> Result<Cluster> {
    let origin = file.display().to_string();
    let err = |message: String| FileError::item(&origin, message);
    let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |path: &str| if Path::new(path).is_absolute() { PathBuf::from(path) } else { folder.join(path) };

    let mut sites = Vec::new();
    for site in &raw.sites {
        if sites.contains(&site.name) {
            return Err(err(format!("site {:?} is declared twice", site.name)));
        }
        sites.push(site.name.clone());
    }
    // Node names are one namespace: `daemon --node NAME` picks any.
    let mut names = BTreeSet::from([MANAGER.to_string()]);
    let mut node = |kind: &str, name: &str, site: &str, address: &str| -> Result<()> {
        if name.is_empty() {
            return Err(err(format!("a {kind} has an empty name")));
        }
        if !names.insert(name.to_string()) {
            return Err(err(format!("{kind} {name:?}: the name is taken (\"{MANAGER}\" and every node's name must be unique)")));
        }
        if !sites.iter().any(|s| s == site) {
            return Err(err(format!("{kind} {name:?} is in unknown site {site:?}")));
        }
        check_address(address).map_err(|e| err(format!("{kind} {name:?}: {e}")))
    };
    check_address(&raw.manager.address).map_err(|e| err(format!("[manager]: {e}")))?;
    for h in &raw.hosts {
        node("host", &h.name, &h.site, &h.address)?;
    }
    for p in &raw.proxies {
        node("proxy", &p.name, &p.site, &p.address)?;
    }
    for r in &raw.repositories {
        node("repository", &r.name, &r.site, &r.address)?;
    }
    let hosts: Vec<HostNode> = raw
        .hosts
        .iter()
        .map(|h| HostNode { name: h.name.clone(), site: h.site.clone(), address: h.address.clone(), datastore: resolve(&h.datastore) })
        .collect();
    let mut proxies = Vec::new();
    for p in &raw.proxies {
        let task_slots = p.task_slots.unwrap_or(DEFAULT_TASK_SLOTS);
        if task_slots == 0 {
            return Err(err(format!("proxy {:?}: task_slots must be 1 or more", p.name)));
        }
        let direct = p.transport == Some(RawTransport::Direct);
        if direct && !hosts.iter().any(|h| h.site == p.site) {
            return Err(err(format!("proxy {:?} reads directly, but site {:?} has no host", p.name, p.site)));
        }
        proxies.push(ProxyNode { name: p.name.clone(), site: p.site.clone(), address: p.address.clone(), task_slots, direct });
    }
    let repositories: Vec<RepositoryNode> = raw
        .repositories
        .iter()
        .map(|r| RepositoryNode {
            name: r.name.clone(),
            site: r.site.clone(),
            address: r.address.clone(),
            path: resolve(&r.path),
            capacity: r.capacity.map(|c| c.0),
        })
        .collect();

    let host_names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let proxy_names: Vec<String> = proxies.iter().map(|p| p.name.clone()).collect();
    let repository_names: Vec<String> = repositories.iter().map(|r| r.name.clone()).collect();
    let job_kinds: BTreeMap<&str, RawJobKind> = raw.jobs.iter().map(|j| (j.name.as_str(), j.kind)).collect();
    if job_kinds.len() != raw.jobs.len() {
        return Err(err("two jobs have the same name".into()));
    }
    let refs = Refs { err: &err, hosts: &host_names, proxies: &proxy_names, repositories: &repository_names, jobs: &job_kinds };
    let jobs = raw.jobs.iter().map(|j| refs.job(j)).collect::<Result<Vec<_>>>()?;

    let manager = ManagerNode {
        address: raw.manager.address.clone(),
        database: resolve(&raw.manager.database),
        metrics_address: raw.manager.metrics_address.clone(),
    };
    if let Some(metrics) = &manager.metrics_address {
        check_address(metrics).map_err(|e| err(format!("[manager] metrics_address: {e}")))?;
    }
    Ok(Cluster { file: file.to_path_buf(), manager, sites, hosts, proxies, repositories, jobs })
}

/// `host:port`, the port a number (the host may be a name: it is looked up
/// when the daemon binds or dials).
fn check_address(address: &str) -> std::result::Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("address {address:?} is not host:port")),
    }
}

/// Whether `list` holds `name`.
fn named(list: &[String], name: &str) -> bool {
    list.iter().any(|n| n == name)
}

/// What a job may name, for resolving its references.
struct Refs<'a> {
    err: &'a dyn Fn(String) -> FileError,
    hosts: &'a [String],
    proxies: &'a [String],
    repositories: &'a [String],
    jobs: &'a BTreeMap<&'a str, RawJobKind>,
}

impl Refs<'_> {
    fn job(&self, job: &RawJob) -> Result<Job> {
        let what = format!("job {:?}", job.name);
        let err = |m: String| (self.err)(format!("{what}: {m}"));
        let of_kind = |kind: RawJobKind, present: &[(&str, bool)]| -> Result<()> {
            match present.iter().find(|(_, is)| *is) {
                Some((key, _)) => {
                    Err(err(format!("key {key:?} belongs to {} jobs", if kind == RawJobKind::Backup { "backup" } else { "replication" })))
                }
                None => Ok(()),
            }
        };
        let required = |key: &str, value: &Option<String>, list: &[String], noun: &str| -> Result<String> {
            let name = value.clone().ok_or_else(|| err(format!("needs key {key:?}")))?;
            if named(list, &name) { Ok(name) } else { Err(err(format!("{key} names unknown {noun} {name:?}"))) }
        };
        if job.vms.is_empty() {
            return Err(err("names no VM (vms = [...])".into()));
        }
        let unique: BTreeSet<&String> = job.vms.iter().collect();
        if unique.len() != job.vms.len() {
            return Err(err("names a VM twice".into()));
        }
        let kind = match job.kind {
            RawJobKind::Backup => {
                of_kind(
                    RawJobKind::Replication,
                    &[
                        ("source_proxy", job.source_proxy.is_some()),
                        ("target_proxy", job.target_proxy.is_some()),
                        ("target_host", job.target_host.is_some()),
                        ("metadata_repository", job.metadata_repository.is_some()),
                        ("restore_points", job.restore_points.is_some()),
                        ("seed_from", job.seed_from.is_some()),
                        ("map", job.map.is_some()),
                    ],
                )?;
                let proxy = match &job.proxy {
                    Some(p) if !named(self.proxies, p) => return Err(err(format!("proxy names unknown proxy {p:?}"))),
                    p => p.clone(),
                };
                let retention = job.retention.unwrap_or(DEFAULT_RETENTION);
                if retention == 0 {
                    return Err(err("retention must be 1 or more".into()));
                }
                JobKind::Backup {
                    proxy,
                    repository: required("repository", &job.repository, self.repositories, "repository")?,
                    retention,
                    health_check: job.health_check.map(|e| e.0),
                }
            }
            RawJobKind::Replication => {
                of_kind(
                    RawJobKind::Backup,
                    &[
                        ("proxy", job.proxy.is_some()),
                        ("repository", job.repository.is_some()),
                        ("retention", job.retention.is_some()),
                        ("health_check", job.health_check.is_some()),
                    ],
                )?;
                let restore_points = job.restore_points.unwrap_or(DEFAULT_RESTORE_POINTS);
                if restore_points == 0 {
                    return Err(err("restore_points must be 1 or more".into()));
                }
                if let Some(seed) = &job.seed_from {
                    match self.jobs.get(seed.as_str()) {
                        None => return Err(err(format!("seed_from names unknown job {seed:?}"))),
                        Some(RawJobKind::Replication) => return Err(err(format!("seeds from job {seed:?}, which is not a backup job"))),
                        Some(RawJobKind::Backup) => {}
                    }
                }
                let map = job.map.clone().unwrap_or_default();
                if let Some(vm) = map.keys().find(|vm| !job.vms.contains(vm)) {
                    return Err(err(format!("map names VM {vm:?}, which the job does not replicate")));
                }
                let replicas =
                    job.vms.iter().map(|vm| (vm.clone(), map.get(vm).cloned().unwrap_or_else(|| format!("{vm}_replica")))).collect();
                JobKind::Replication {
                    source_proxy: required("source_proxy", &job.source_proxy, self.proxies, "proxy")?,
                    target_proxy: required("target_proxy", &job.target_proxy, self.proxies, "proxy")?,
                    target_host: required("target_host", &job.target_host, self.hosts, "host")?,
                    metadata_repository: required("metadata_repository", &job.metadata_repository, self.repositories, "repository")?,
                    restore_points,
                    seed_from: job.seed_from.clone(),
                    replicas,
                }
            }
        };
        Ok(Job {
            name: job.name.clone(),
            vms: job.vms.clone(),
            schedule: job.schedule.0,
            compression: job.compression.map(|c| c.0).unwrap_or_default(),
            block_size: job.block_size.map(|b| b.0).unwrap_or_default(),
            verify_every: job.verify_every,
            kind,
        })
    }
}
