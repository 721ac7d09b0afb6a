//! Retention keeps the newest N: per (job, VM), the points retention
//! removes are always the oldest, and once it has run the job keeps at most
//! its `retention` points (at least one).
//!
//! Without this rule a retention that deleted the newest point would go
//! unnoticed: every point it keeps is still right and restorable, and only
//! the count in a snapshot would change. Order is the catalog's: snapshot
//! instant, then point id. The count is taken once the instant of the
//! change has passed (a commit and the deletions it causes share one
//! instant), and not while a restore reads one of the chain's points
//! (retention skips a point being restored, so the chain may run long).

use super::health::snapshot_instant;
use crate::topology::Topology;
use crate::world::World;
use blockferry_core::config::JobKind;
use blockferry_core::{Event, JobId, RestorePointId, Timestamp, VmId};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Retention {
    /// The points of each chain, by their place in it.
    chains: BTreeMap<(JobId, VmId), BTreeSet<(Timestamp, RestorePointId)>>,
    /// Chains changed at an instant, to count once it has passed.
    to_count: BTreeMap<(JobId, VmId), Timestamp>,
    /// Points a restore is reading.
    restoring: BTreeSet<RestorePointId>,
}

impl Retention {
    pub fn observe(&mut self, at: Timestamp, topo: &Topology, world: &World, event: &Event, violations: &mut Vec<String>) {
        let passed: Vec<(JobId, VmId)> = self.to_count.iter().filter(|(_, t)| **t < at).map(|(k, _)| *k).collect();
        for key in passed {
            self.to_count.remove(&key);
            if let Some(text) = self.count(topo, key) {
                violations.push(format!("at {at}: {text}"));
            }
        }
        match event {
            Event::PointCommitted { job, vm, point, snapshot_at, .. } => self.add(at, *job, *vm, (*snapshot_at, *point)),
            Event::PointAdopted { job, vm, point, repository, snap, .. } => {
                let instant = snapshot_instant(topo, world, *repository, *point, *snap).unwrap_or(at);
                self.add(at, *job, *vm, (instant, *point));
            }
            Event::PointRemoved { job, vm, point, result: Ok(()) } => {
                let chain = self.chains.entry((*job, *vm)).or_default();
                let Some(removed) = chain.iter().find(|(_, p)| p == point).copied() else { return };
                chain.remove(&removed);
                if let Some(newer) = chain.first().filter(|kept| **kept < removed) {
                    let name = topo.deployment.job(*job).map_or("?", |s| s.name.as_str());
                    violations.push(format!(
                        "at {at}: retention of job {name} removed {point} of vm {vm} but kept the older {} (it must remove the oldest)",
                        newer.1
                    ));
                }
                self.to_count.insert((*job, *vm), at);
            }
            Event::PointLost { job, vm, point, .. } => {
                if let Some(chain) = self.chains.get_mut(&(*job, *vm)) {
                    chain.retain(|(_, p)| p != point);
                }
            }
            Event::RestoreStarted { point, .. } => _ = self.restoring.insert(*point),
            Event::RestoreFinished { point, .. } => _ = self.restoring.remove(point),
            _ => {}
        }
    }

    /// Counts every chain still waiting (the run ended).
    pub fn finish(&mut self, topo: &Topology, violations: &mut Vec<String>) {
        for key in std::mem::take(&mut self.to_count).into_keys() {
            violations.extend(self.count(topo, key));
        }
    }

    /// A point joins its chain (once: a manager restart adopts again what
    /// it had).
    fn add(&mut self, at: Timestamp, job: JobId, vm: VmId, place: (Timestamp, RestorePointId)) {
        let chain = self.chains.entry((job, vm)).or_default();
        chain.retain(|(_, p)| *p != place.1);
        chain.insert(place);
        self.to_count.insert((job, vm), at);
    }

    /// The chain must hold at most the job's retention, unless a restore
    /// holds one of its points.
    fn count(&self, topo: &Topology, (job, vm): (JobId, VmId)) -> Option<String> {
        let spec = topo.deployment.job(job)?;
        let JobKind::Backup(b) = &spec.kind else { return None };
        let chain = self.chains.get(&(job, vm))?;
        let keep = b.retention.max(1) as usize;
        if chain.len() <= keep || chain.iter().any(|(_, p)| self.restoring.contains(p)) {
            return None;
        }
        Some(format!("retention of job {} keeps {} points of vm {vm}, more than its {keep}", spec.name, chain.len()))
    }
}
