//! From the file as written to a usable [`Scenario`]: defaults, per-kind
//! keys, ranges and every cross-reference. Each error names the item it is
//! about, so an operator can find it without a line number.

use super::raw::{RawFault, RawFaultKind, RawJob, RawJobKind, RawScenario};
use super::*;
use crate::net::tcp;
use std::collections::BTreeSet;

/// Defaults the contract leaves to us.
const DEFAULT_RETENTION: u32 = 7;
const DEFAULT_RESTORE_POINTS: u32 = 7;
const DEFAULT_TASK_SLOTS: u32 = 2;
const DEFAULT_COMPRESSIBILITY: f64 = 0.5;

type Result<T> = std::result::Result<T, ScenarioError>;

/// Checks a raw scenario and builds the typed one.
pub fn validate(raw: RawScenario, origin: &str) -> Result<Scenario> {
    let err = |message: String| ScenarioError::item(origin, message);
    let names = Names::collect(&raw, origin)?;

    if raw.duration.0.is_zero() {
        return Err(err("duration must be more than zero".into()));
    }
    let duration = raw.duration.0;
    let start = raw.start.map_or(DEFAULT_START, |s| s.0);
    let block_size = raw.block_size.map(|b| b.0).unwrap_or_default();
    let Some(first_site) = raw.sites.first() else {
        return Err(err("a scenario needs at least one [[site]]".into()));
    };
    let manager_site = raw.manager.as_ref().and_then(|m| m.site.clone()).unwrap_or_else(|| first_site.name.clone());
    names.site(&manager_site, "[manager]")?;

    let mut links = Vec::new();
    let mut linked = BTreeSet::new();
    for link in &raw.links {
        let between = names.site_pair(&link.between, "[[link]]")?;
        let what = format!("link between {:?} and {:?}", between[0], between[1]);
        if !linked.insert(ordered(&between)) {
            return Err(err(format!("{what} is declared twice")));
        }
        let loss = fraction(link.loss.unwrap_or(0.0), "loss", &what, origin)?;
        let breaks = fraction(link.breaks.unwrap_or(0.0), "breaks", &what, origin)?;
        links.push(Link { between, latency: link.latency.0, bandwidth_bps: link.bandwidth.0, loss, breaks });
    }

    let mut throttles = Vec::new();
    for (i, rule) in raw.throttles.iter().enumerate() {
        let what = format!("[[throttle]] #{}", i + 1);
        let between = names.site_pair(&rule.between, &what)?;
        if rule.bandwidth.0 < 8 {
            return Err(err(format!("{what}: bandwidth must be at least 8bit")));
        }
        throttles.push(Throttle { between, bandwidth_bps: rule.bandwidth.0 });
    }

    let mut hosts = Vec::new();
    for host in &raw.hosts {
        names.site(&host.site, &format!("host {:?}", host.name))?;
        hosts.push(Host { name: host.name.clone(), site: host.site.clone(), cbt: host.cbt.unwrap_or(true) });
    }

    let mut vms = Vec::new();
    for vm in &raw.vms {
        let what = format!("vm {:?}", vm.name);
        names.host(&vm.host, &what)?;
        if vm.disks.is_empty() {
            return Err(err(format!("{what} has no disks")));
        }
        if vm.disks.len() > usize::from(u16::MAX) {
            return Err(err(format!("{what} has more than {} disks", u16::MAX)));
        }
        if let Some(i) = vm.disks.iter().position(|d| d.0 == 0) {
            return Err(err(format!("{what}: disk {i} has size zero")));
        }
        let workload = match &vm.workload {
            Some(w) => {
                let hot_fraction = fraction(w.hot_fraction.unwrap_or(0.0), "workload.hot_fraction", &what, origin)?;
                Some(Workload { writes_per_hour: w.writes_per_hour, hot_fraction })
            }
            None => None,
        };
        let copy = match (&vm.copy_of, vm.copy_age) {
            (None, None) => None,
            (None, Some(_)) => return Err(err(format!("{what}: copy_age needs copy_of"))),
            (Some(of), age) => {
                let source =
                    raw.vms.iter().find(|v| &v.name == of).ok_or_else(|| err(format!("{what} names unknown vm {of:?} in copy_of")))?;
                if source.copy_of.is_some() || of == &vm.name {
                    return Err(err(format!("{what}: copy_of must name a VM that is not itself a copy")));
                }
                let sizes = |v: &super::raw::RawVm| v.disks.iter().map(|d| d.0).collect::<Vec<u64>>();
                if sizes(source) != sizes(vm) {
                    return Err(err(format!("{what} copies vm {of:?}, but their disks differ")));
                }
                Some(Copy { of: of.clone(), age: age.map(|a| a.0).unwrap_or_default() })
            }
        };
        vms.push(Vm {
            copy,
            zero_fraction: fraction(vm.zero_fraction.unwrap_or(0.0), "zero_fraction", &what, origin)?,
            compressibility: fraction(vm.compressibility.unwrap_or(DEFAULT_COMPRESSIBILITY), "compressibility", &what, origin)?,
            swap_fraction: fraction(vm.swap_fraction.unwrap_or(0.0), "swap_fraction", &what, origin)?,
            name: vm.name.clone(),
            host: vm.host.clone(),
            disks: vm.disks.iter().map(|d| d.0).collect(),
            workload,
        });
    }

    let mut proxies = Vec::new();
    for proxy in &raw.proxies {
        let what = format!("proxy {:?}", proxy.name);
        names.site(&proxy.site, &what)?;
        let task_slots = proxy.task_slots.unwrap_or(DEFAULT_TASK_SLOTS);
        if task_slots == 0 {
            return Err(err(format!("{what} needs at least one task slot")));
        }
        let streams = proxy.streams.unwrap_or(tcp::DEFAULT_STREAMS);
        if !(1..=tcp::MAX_STREAMS).contains(&streams) {
            return Err(err(format!("{what}: streams = {streams} is outside [1, {}]", tcp::MAX_STREAMS)));
        }
        let transport = proxy.transport.unwrap_or_default();
        let proxy = Proxy { name: proxy.name.clone(), site: proxy.site.clone(), task_slots, transport, streams };
        // Other sites' hosts are read through the network: with no host
        // in its own site, the key would do nothing.
        if transport == Transport::Direct && proxy.direct_hosts(&hosts).next().is_none() {
            return Err(err(format!(
                "{what}: transport = \"direct\" reads the datastores of hosts in its own site, and site {:?} has no [[host]]",
                proxy.site
            )));
        }
        proxies.push(proxy);
    }

    let mut repositories = Vec::new();
    for repo in &raw.repositories {
        let what = format!("repository {:?}", repo.name);
        names.site(&repo.site, &what)?;
        if repo.capacity.0 == 0 {
            return Err(err(format!("{what} has capacity zero")));
        }
        repositories.push(Repository { name: repo.name.clone(), site: repo.site.clone(), capacity: repo.capacity.0 });
    }

    let mut jobs = Vec::new();
    for job in &raw.jobs {
        jobs.push(job_of(job, &raw.jobs, &vms, &names, block_size, origin)?);
    }

    let mut faults = Vec::new();
    for (i, fault) in raw.faults.iter().enumerate() {
        faults.push(fault_of(i, fault, &names, &linked, start, duration, origin)?);
    }

    let mut actions = Vec::new();
    for (i, action) in raw.actions.iter().enumerate() {
        let what = format!("action #{} ({} at {})", i + 1, action_name(action.kind), humantime::format_duration(action.at.0));
        names.vm(&action.vm, &what)?;
        if action.at.0 > duration {
            return Err(err(format!("{what} is after the end of the run ({})", humantime::format_duration(duration))));
        }
        let replicated = jobs.iter().any(|j| matches!(j.kind, JobKind::Replication(_)) && j.vms.contains(&action.vm));
        if !replicated {
            return Err(err(format!("{what} names vm {:?}, which no replication job replicates", action.vm)));
        }
        actions.push(Action { at: start + action.at.0, kind: action.kind, vm: action.vm.clone(), point: action.point.unwrap_or_default() });
    }

    let mut expects = Vec::new();
    for expect in &raw.expects {
        names.job(&expect.job, "[[expect]]")?;
        expects.push(Expect {
            job: expect.job.clone(),
            min_restore_points: expect.min_restore_points,
            max_failed_sessions: expect.max_failed_sessions,
            max_wan_bytes: expect.max_wan_bytes.map(|s| s.0),
            min_sessions_ok: expect.min_sessions_ok,
        });
    }

    Ok(Scenario {
        origin: origin.to_string(),
        name: raw.name.clone(),
        seed: raw.seed.unwrap_or(0),
        duration,
        start,
        block_size,
        engine: raw.engine.unwrap_or_default(),
        payload: raw.payload.unwrap_or_default(),
        restore_check: raw.restore_check.unwrap_or_default(),
        sites: raw.sites.iter().map(|s| Site { name: s.name.clone() }).collect(),
        manager: Manager { site: manager_site },
        links,
        throttles,
        hosts,
        vms,
        proxies,
        repositories,
        jobs,
        faults,
        actions,
        expects,
    })
}

/// Every name the scenario declares, by namespace: sites; nodes (hosts,
/// proxies and repositories share one namespace, since faults name them by
/// `node`); VMs; jobs.
struct Names<'a> {
    origin: &'a str,
    sites: BTreeSet<&'a str>,
    hosts: BTreeSet<&'a str>,
    proxies: BTreeSet<&'a str>,
    repositories: BTreeSet<&'a str>,
    vms: BTreeMap<&'a str, &'a str>,
    jobs: BTreeMap<&'a str, RawJobKind>,
}

impl<'a> Names<'a> {
    fn collect(raw: &'a RawScenario, origin: &'a str) -> Result<Names<'a>> {
        let err = |message: String| ScenarioError::item(origin, message);
        let mut names = Names {
            origin,
            sites: BTreeSet::new(),
            hosts: BTreeSet::new(),
            proxies: BTreeSet::new(),
            repositories: BTreeSet::new(),
            vms: BTreeMap::new(),
            jobs: BTreeMap::new(),
        };
        for site in &raw.sites {
            if !names.sites.insert(&site.name) {
                return Err(err(format!("duplicate site name {:?}", site.name)));
            }
        }
        // Nodes share one namespace; "manager" is reserved for the manager.
        let mut nodes: BTreeMap<&str, &str> = BTreeMap::new();
        let declared = raw
            .hosts
            .iter()
            .map(|h| ("host", h.name.as_str()))
            .chain(raw.proxies.iter().map(|p| ("proxy", p.name.as_str())))
            .chain(raw.repositories.iter().map(|r| ("repository", r.name.as_str())));
        for (kind, name) in declared {
            if name == "manager" {
                return Err(err(format!("{kind} may not be named \"manager\" (the name is reserved for the manager node)")));
            }
            if let Some(other) = nodes.insert(name, kind) {
                return Err(err(if other == kind {
                    format!("duplicate {kind} name {name:?}")
                } else {
                    format!("{other} {name:?} and {kind} {name:?} share a name (hosts, proxies and repositories need distinct names)")
                }));
            }
            match kind {
                "host" => names.hosts.insert(name),
                "proxy" => names.proxies.insert(name),
                _ => names.repositories.insert(name),
            };
        }
        for vm in &raw.vms {
            if names.vms.insert(&vm.name, &vm.host).is_some() {
                return Err(err(format!("duplicate vm name {:?}", vm.name)));
            }
        }
        for job in &raw.jobs {
            if names.jobs.insert(&job.name, job.kind).is_some() {
                return Err(err(format!("duplicate job name {:?}", job.name)));
            }
        }
        Ok(names)
    }

    fn unknown(&self, what: &str, kind: &str, name: &str) -> ScenarioError {
        ScenarioError::item(self.origin, format!("{what} names unknown {kind} {name:?}"))
    }

    fn site(&self, name: &str, what: &str) -> Result<()> {
        if self.sites.contains(name) { Ok(()) } else { Err(self.unknown(what, "site", name)) }
    }

    fn host(&self, name: &str, what: &str) -> Result<()> {
        if self.hosts.contains(name) { Ok(()) } else { Err(self.unknown(what, "host", name)) }
    }

    fn proxy(&self, name: &str, what: &str) -> Result<()> {
        if self.proxies.contains(name) { Ok(()) } else { Err(self.unknown(what, "proxy", name)) }
    }

    fn repository(&self, name: &str, what: &str) -> Result<()> {
        if self.repositories.contains(name) { Ok(()) } else { Err(self.unknown(what, "repository", name)) }
    }

    fn vm(&self, name: &str, what: &str) -> Result<()> {
        if self.vms.contains_key(name) { Ok(()) } else { Err(self.unknown(what, "vm", name)) }
    }

    fn job(&self, name: &str, what: &str) -> Result<RawJobKind> {
        self.jobs.get(name).copied().ok_or_else(|| self.unknown(what, "job", name))
    }

    /// Any node a crash may hit.
    fn node(&self, name: &str, what: &str) -> Result<()> {
        let known = name == "manager" || self.hosts.contains(name) || self.proxies.contains(name) || self.repositories.contains(name);
        if known { Ok(()) } else { Err(self.unknown(what, "node", name)) }
    }

    /// Two distinct known sites.
    fn site_pair(&self, between: &[String], what: &str) -> Result<[String; 2]> {
        let [a, b] = between else {
            return Err(ScenarioError::item(self.origin, format!("{what}: `between` must name exactly two sites, not {}", between.len())));
        };
        self.site(a, what)?;
        self.site(b, what)?;
        if a == b {
            return Err(ScenarioError::item(self.origin, format!("{what}: `between` names site {a:?} twice")));
        }
        Ok([a.clone(), b.clone()])
    }
}

fn job_of(job: &RawJob, all: &[RawJob], vms: &[Vm], names: &Names, default_block: BlockSize, origin: &str) -> Result<Job> {
    let what = format!("job {:?}", job.name);
    let err = |message: String| ScenarioError::item(origin, message);
    if job.vms.is_empty() {
        return Err(err(format!("{what} lists no vms")));
    }
    let mut seen = BTreeSet::new();
    for vm in &job.vms {
        names.vm(vm, &what)?;
        if !seen.insert(vm) {
            return Err(err(format!("{what} lists vm {vm:?} twice")));
        }
    }
    if job.verify_every == Some(0) {
        return Err(err(format!("{what}: verify_every must be 1 or more")));
    }
    let kind_name = kind_name(job.kind);
    let foreign: Vec<&str> = match job.kind {
        RawJobKind::Backup => [
            ("source_proxy", job.source_proxy.is_some()),
            ("target_proxy", job.target_proxy.is_some()),
            ("target_host", job.target_host.is_some()),
            ("metadata_repository", job.metadata_repository.is_some()),
            ("restore_points", job.restore_points.is_some()),
            ("seed_from", job.seed_from.is_some()),
            ("map", job.map.is_some()),
        ]
        .iter()
        .filter_map(|(k, present)| present.then_some(*k))
        .collect(),
        RawJobKind::Replication => [
            ("proxy", job.proxy.is_some()),
            ("repository", job.repository.is_some()),
            ("retention", job.retention.is_some()),
            ("health_check", job.health_check.is_some()),
            ("window", job.window.is_some()),
        ]
        .iter()
        .filter_map(|(k, present)| present.then_some(*k))
        .collect(),
    };
    if let Some(key) = foreign.first() {
        return Err(err(format!("{what}: key {key:?} does not apply to a {kind_name} job")));
    }
    let required = |key: &str, value: &Option<String>| -> Result<String> {
        value.clone().ok_or_else(|| err(format!("{what} ({kind_name}) needs key {key:?}")))
    };
    let kind = match job.kind {
        RawJobKind::Backup => {
            if let Some(proxy) = &job.proxy {
                names.proxy(proxy, &what)?;
            }
            let repository = required("repository", &job.repository)?;
            names.repository(&repository, &what)?;
            let retention = job.retention.unwrap_or(DEFAULT_RETENTION);
            if retention == 0 {
                return Err(err(format!("{what}: retention must be 1 or more")));
            }
            let window = job.window.map(|w| w.0);
            if window.is_some_and(|w| w.is_zero()) {
                return Err(err(format!("{what}: window must be more than zero")));
            }
            JobKind::Backup(BackupJob {
                proxy: job.proxy.clone(),
                repository,
                retention,
                health_check: job.health_check.map(|e| e.0),
                window,
            })
        }
        RawJobKind::Replication => {
            let source_proxy = required("source_proxy", &job.source_proxy)?;
            names.proxy(&source_proxy, &what)?;
            let target_proxy = required("target_proxy", &job.target_proxy)?;
            names.proxy(&target_proxy, &what)?;
            let target_host = required("target_host", &job.target_host)?;
            names.host(&target_host, &what)?;
            let metadata_repository = required("metadata_repository", &job.metadata_repository)?;
            names.repository(&metadata_repository, &what)?;
            let restore_points = job.restore_points.unwrap_or(DEFAULT_RESTORE_POINTS);
            if restore_points == 0 {
                return Err(err(format!("{what}: restore_points must be 1 or more")));
            }
            if let Some(seed) = &job.seed_from {
                if names.job(seed, &what)? != RawJobKind::Backup {
                    return Err(err(format!("{what} seeds from job {seed:?}, which is not a backup job")));
                }
                let seed_vms = all.iter().find(|j| &j.name == seed).map(|j| j.vms.as_slice()).unwrap_or_default();
                if let Some(vm) = job.vms.iter().find(|vm| !seed_vms.contains(vm)) {
                    return Err(err(format!("{what} seeds from job {seed:?}, which does not back up vm {vm:?}")));
                }
            }
            let map = job.map.clone().unwrap_or_default();
            let mut targets = BTreeSet::new();
            for (source, target) in &map {
                if !job.vms.contains(source) {
                    return Err(err(format!("{what} maps vm {source:?}, which the job does not replicate")));
                }
                names.vm(target, &what)?;
                let on_host = vms.iter().any(|v| &v.name == target && v.host == target_host);
                if !on_host {
                    return Err(err(format!("{what} maps vm {source:?} to {target:?}, which is not on target host {target_host:?}")));
                }
                if source == target || job.vms.contains(target) {
                    return Err(err(format!("{what} maps vm {source:?} to {target:?}, a vm the job replicates")));
                }
                if !targets.insert(target) {
                    return Err(err(format!("{what} maps two vms to {target:?}")));
                }
            }
            JobKind::Replication(ReplicationJob {
                source_proxy,
                target_proxy,
                target_host,
                metadata_repository,
                restore_points,
                seed_from: job.seed_from.clone(),
                map,
            })
        }
    };
    Ok(Job {
        name: job.name.clone(),
        vms: job.vms.clone(),
        schedule: job.schedule.0,
        compression: job.compression.map(|c| c.0).unwrap_or_default(),
        block_size: job.block_size.map(|b| b.0).unwrap_or(default_block),
        verify_every: job.verify_every,
        throttle_bps: match job.throttle {
            Some(b) if b.0 < 8 => return Err(err(format!("{what}: throttle must be at least 8bit"))),
            b => b.map(|b| b.0),
        },
        kind,
    })
}

/// The keys each fault kind takes (beside `at` and `kind`), as the
/// contract's table lists them.
fn fault_keys(kind: RawFaultKind) -> &'static [&'static str] {
    match kind {
        RawFaultKind::Partition => &["between", "for"],
        RawFaultKind::Crash => &["node", "for"],
        RawFaultKind::CbtReset => &["vm"],
        RawFaultKind::CbtMiss => &["vm", "blocks"],
        RawFaultKind::DiskFull => &["node", "for"],
        RawFaultKind::CorruptBlock => &["node", "blocks"],
        RawFaultKind::SlowLink => &["between", "bandwidth", "for"],
    }
}

fn fault_of(
    index: usize,
    fault: &RawFault,
    names: &Names,
    linked: &BTreeSet<[String; 2]>,
    start: Timestamp,
    run: Duration,
    origin: &str,
) -> Result<Fault> {
    let err = |message: String| ScenarioError::item(origin, message);
    let name = fault_name(fault.kind);
    let what = format!("fault #{} ({name} at {})", index + 1, humantime::format_duration(fault.at.0));
    let present = [
        ("between", fault.between.is_some()),
        ("for", fault.for_.is_some()),
        ("node", fault.node.is_some()),
        ("vm", fault.vm.is_some()),
        ("blocks", fault.blocks.is_some()),
        ("bandwidth", fault.bandwidth.is_some()),
    ];
    let takes = fault_keys(fault.kind);
    if let Some((key, _)) = present.iter().find(|(key, present)| *present && !takes.contains(key)) {
        return Err(err(format!("{what}: key {key:?} does not apply to {name} faults (they take {})", takes.join(", "))));
    }
    if let Some((key, _)) = present.iter().find(|(key, present)| !*present && takes.contains(key)) {
        return Err(err(format!("{what} needs key {key:?}")));
    }
    if fault.at.0 > run {
        return Err(err(format!("{what} is after the end of the run ({})", humantime::format_duration(run))));
    }
    // Presence was checked above; these only unwrap what is known to be there.
    let for_ = fault.for_.map(|d| d.0).unwrap_or_default();
    if fault.for_.is_some() && for_.is_zero() {
        return Err(err(format!("{what}: `for` must be more than zero")));
    }
    let blocks = fault.blocks.unwrap_or_default();
    if fault.blocks.is_some() && blocks == 0 {
        return Err(err(format!("{what}: `blocks` must be 1 or more")));
    }
    let node = fault.node.clone().unwrap_or_default();
    let vm = fault.vm.clone().unwrap_or_default();
    let between = || -> Result<[String; 2]> {
        let pair = names.site_pair(fault.between.as_deref().unwrap_or_default(), &what)?;
        if !linked.contains(&ordered(&pair)) {
            return Err(err(format!("{what}: sites {:?} and {:?} have no [[link]] between them", pair[0], pair[1])));
        }
        Ok(pair)
    };
    let repository = |node: &str| -> Result<()> { names.repository(node, &what) };
    let kind = match fault.kind {
        RawFaultKind::Partition => FaultKind::Partition { between: between()?, duration: for_ },
        RawFaultKind::Crash => {
            names.node(&node, &what)?;
            FaultKind::Crash { node, duration: for_ }
        }
        RawFaultKind::CbtReset => {
            names.vm(&vm, &what)?;
            FaultKind::CbtReset { vm }
        }
        RawFaultKind::CbtMiss => {
            names.vm(&vm, &what)?;
            FaultKind::CbtMiss { vm, blocks }
        }
        RawFaultKind::DiskFull => {
            repository(&node)?;
            FaultKind::DiskFull { node, duration: for_ }
        }
        RawFaultKind::CorruptBlock => {
            repository(&node)?;
            FaultKind::CorruptBlock { node, blocks }
        }
        RawFaultKind::SlowLink => {
            FaultKind::SlowLink { between: between()?, bandwidth_bps: fault.bandwidth.map(|b| b.0).unwrap_or_default(), duration: for_ }
        }
    };
    Ok(Fault { at: start + fault.at.0, kind })
}

/// A value that must lie in [0, 1].
fn fraction(value: f64, key: &str, what: &str, origin: &str) -> Result<f64> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ScenarioError::item(origin, format!("{what}: {key} = {value} is outside [0, 1]")))
    }
}

/// A site pair in a canonical order, as a set key.
fn ordered(pair: &[String; 2]) -> [String; 2] {
    let mut pair = pair.clone();
    pair.sort();
    pair
}

fn kind_name(kind: RawJobKind) -> &'static str {
    match kind {
        RawJobKind::Backup => "backup",
        RawJobKind::Replication => "replication",
    }
}

fn fault_name(kind: RawFaultKind) -> &'static str {
    match kind {
        RawFaultKind::Partition => "partition",
        RawFaultKind::Crash => "crash",
        RawFaultKind::CbtReset => "cbt_reset",
        RawFaultKind::CbtMiss => "cbt_miss",
        RawFaultKind::DiskFull => "disk_full",
        RawFaultKind::CorruptBlock => "corrupt_block",
        RawFaultKind::SlowLink => "slow_link",
    }
}

fn action_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Failover => "failover",
        ActionKind::UndoFailover => "undo_failover",
        ActionKind::Failback => "failback",
        ActionKind::CommitFailback => "commit_failback",
        ActionKind::UndoFailback => "undo_failback",
        ActionKind::PermanentFailover => "permanent_failover",
    }
}
