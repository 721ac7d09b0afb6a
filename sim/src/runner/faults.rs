//! The fault schedule of a scenario as timed steps: each fault with a
//! duration becomes a start and an end step, so both engines apply the same
//! timeline.

use crate::net::SiteId;
use crate::scenario::{FaultKind, Scenario};
use crate::topology::{Role, Topology};
use blockferry_core::{NodeId, Timestamp, VmId};

#[derive(Debug, Clone, PartialEq)]
pub enum FaultStep {
    Partition(SiteId, SiteId),
    Repair(SiteId, SiteId),
    Crash {
        node: NodeId,
        role: Role,
    },
    Restart(NodeId),
    /// Set a link's bandwidth (slow_link start, and back at its end).
    Bandwidth(SiteId, SiteId, Option<u64>),
    DiskFull {
        repository: String,
        full: bool,
    },
    Corrupt {
        repository: String,
        blocks: u64,
        draw: u64,
    },
    CbtReset(VmId),
    CbtMiss(VmId, u64),
}

/// Every fault step in time order (ties keep file order), and when the
/// last one ends.
pub fn timeline(s: &Scenario, topo: &Topology) -> Result<(Vec<(Timestamp, FaultStep)>, Timestamp), String> {
    let site = |name: &str| s.site_index(name).map(|i| SiteId(i as u32)).ok_or_else(|| format!("unknown site {name:?}"));
    let node = |name: &str| topo.node(name).ok_or_else(|| format!("unknown node {name:?}"));
    let vm = |name: &str| topo.vms.get(name).copied().ok_or_else(|| format!("unknown vm {name:?}"));
    let mut steps = Vec::new();
    let mut last_end = Timestamp::ZERO;
    for (index, fault) in s.faults.iter().enumerate() {
        let at = fault.at;
        let mut span = |start: FaultStep, end: FaultStep, duration| {
            let until = at + duration;
            last_end = last_end.max(until);
            steps.push((at, start));
            steps.push((until, end));
        };
        match &fault.kind {
            FaultKind::Partition { between, duration } => {
                let (a, b) = (site(&between[0])?, site(&between[1])?);
                span(FaultStep::Partition(a, b), FaultStep::Repair(a, b), *duration);
            }
            FaultKind::Crash { node: name, duration } => {
                let n = node(name)?;
                span(FaultStep::Crash { node: n.id, role: n.role }, FaultStep::Restart(n.id), *duration);
            }
            FaultKind::SlowLink { between, bandwidth_bps, duration } => {
                let (a, b) = (site(&between[0])?, site(&between[1])?);
                let normal = topo.network.link(a, b).and_then(|l| l.bandwidth_bps);
                span(FaultStep::Bandwidth(a, b, Some(*bandwidth_bps)), FaultStep::Bandwidth(a, b, normal), *duration);
            }
            FaultKind::DiskFull { node: name, duration } => {
                let repository = name.clone();
                span(
                    FaultStep::DiskFull { repository: repository.clone(), full: true },
                    FaultStep::DiskFull { repository, full: false },
                    *duration,
                );
            }
            FaultKind::CorruptBlock { node: name, blocks } => {
                last_end = last_end.max(at);
                steps.push((at, FaultStep::Corrupt { repository: name.clone(), blocks: *blocks, draw: index as u64 }));
            }
            FaultKind::CbtReset { vm: name } => {
                last_end = last_end.max(at);
                steps.push((at, FaultStep::CbtReset(vm(name)?)));
            }
            FaultKind::CbtMiss { vm: name, blocks } => {
                last_end = last_end.max(at);
                steps.push((at, FaultStep::CbtMiss(vm(name)?, *blocks)));
            }
        }
    }
    steps.sort_by_key(|(at, _)| *at);
    Ok((steps, last_end))
}
