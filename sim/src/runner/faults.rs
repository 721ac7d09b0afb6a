//! The fault schedule of a scenario as timed steps: each fault with a
//! duration becomes a start and an end step, so both engines apply the same
//! timeline — through the same [`apply`], each engine providing only its
//! own network and node operations ([`FaultEngine`]).

use super::state::{NodeMaker, RunState};
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
    let mut last_end = s.start;
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

/// An engine's side of the faults: the network and the nodes' processes.
/// The world's side (stores, hypervisors) is the run state's, the same for
/// every engine.
pub trait FaultEngine {
    /// No traffic between two sites; their open connections break.
    fn partition(&mut self, a: SiteId, b: SiteId);
    fn repair(&mut self, a: SiteId, b: SiteId);
    /// A link's bandwidth from now on (`None`: unlimited).
    fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>);
    /// The node's process stops at once (nothing if it is down already).
    fn crash(&mut self, node: NodeId);
    /// The node's process starts again as a fresh state machine made by
    /// `nodes` (nothing if it is up).
    fn restart(&mut self, node: NodeId, nodes: &NodeMaker) -> Result<(), String>;
}

/// Applies one fault step at `at`: the engine's side first (a crashed node
/// stops before its store loses what it had not synced), then the world's.
pub fn apply(engine: &mut impl FaultEngine, state: &mut RunState, at: Timestamp, step: &FaultStep) -> Result<(), String> {
    match step {
        FaultStep::Partition(a, b) => engine.partition(*a, *b),
        FaultStep::Repair(a, b) => engine.repair(*a, *b),
        FaultStep::Bandwidth(a, b, bps) => engine.set_bandwidth(*a, *b, *bps),
        FaultStep::Crash { node, .. } => engine.crash(*node),
        FaultStep::Restart(node) => engine.restart(*node, &state.nodes)?,
        FaultStep::DiskFull { .. } | FaultStep::Corrupt { .. } | FaultStep::CbtReset(_) | FaultStep::CbtMiss(..) => {}
    }
    state.apply_to_world(at, step)
}
