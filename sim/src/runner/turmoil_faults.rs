//! The turmoil engine's side of the faults: what turmoil models itself
//! (partitions between hosts, crashes and restarts of a host's software)
//! and what the run's shaped links model (bandwidth).
//!
//! A partition here only drops segments, as turmoil does: nobody is told,
//! and each end's driver notices through its keepalive timeout and redials
//! after the repair. A crash drops the host's runtime, closing its sockets
//! (its peers see the connections end); the restart runs the host's factory
//! again, which builds a fresh node.

use super::faults::FaultEngine;
use super::state::NodeMaker;
use crate::net::SiteId;
use crate::turmoil_transport::SharedLinks;
use blockferry_core::NodeId;

/// A turmoil host of the run: a node of the topology, or the operator.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub site: SiteId,
}

pub struct TurmoilFaults<'s, 'a> {
    pub sim: &'s mut turmoil::Sim<'a>,
    /// Every host, indexed by node id (the operator last).
    pub hosts: &'s [HostInfo],
    pub links: &'s SharedLinks,
}

impl TurmoilFaults<'_, '_> {
    /// Every pair of hosts, one in site `a` and one in site `b`.
    fn across(&self, a: SiteId, b: SiteId) -> Vec<(&str, &str)> {
        let mut pairs = Vec::new();
        for x in self.hosts.iter().filter(|h| h.site == a) {
            for y in self.hosts.iter().filter(|h| h.site == b && h.name != x.name) {
                pairs.push((x.name.as_str(), y.name.as_str()));
            }
        }
        pairs
    }

    fn host(&self, node: NodeId) -> Result<&str, String> {
        self.hosts.get(node.0 as usize).map(|h| h.name.as_str()).ok_or_else(|| format!("no host for node {node}"))
    }
}

impl FaultEngine for TurmoilFaults<'_, '_> {
    fn partition(&mut self, a: SiteId, b: SiteId) {
        for (x, y) in self.across(a, b) {
            self.sim.partition(x, y);
        }
    }

    fn repair(&mut self, a: SiteId, b: SiteId) {
        for (x, y) in self.across(a, b) {
            self.sim.repair(x, y);
        }
    }

    fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>) {
        self.links.borrow_mut().set_bandwidth(a, b, bandwidth_bps);
    }

    fn crash(&mut self, node: NodeId) {
        let Ok(name) = self.host(node).map(str::to_owned) else { return };
        if self.sim.is_host_running(name.as_str()) {
            self.sim.crash(name.as_str());
        }
    }

    /// `bounce` runs the host's factory, which makes the node with its own
    /// copy of `nodes`: the same maker the run state holds.
    fn restart(&mut self, node: NodeId, _nodes: &NodeMaker) -> Result<(), String> {
        let name = self.host(node)?.to_owned();
        if !self.sim.is_host_running(name.as_str()) {
            self.sim.bounce(name.as_str());
        }
        Ok(())
    }
}
