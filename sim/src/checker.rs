//! The invariant checker: watches the event stream of a run and compares
//! what the system claims against the oracle (the virtual hypervisors'
//! frozen snapshots) and the simulated stores.
//!
//! Checked as events happen:
//! * a committed restore point's manifest, read back from the repository's
//!   store, equals its snapshot digest for digest (invariants 1 and 5: no
//!   changed block skipped, nothing wrong stored), and is durable;
//! * a proxy never runs more disk tasks than it has slots;
//! * a finished restore wrote exactly the point's snapshot content onto the
//!   new VM;
//! * every manifest a store makes durable references only durable blocks,
//!   at that instant (`durable`; the stores run it, the runner collects it);
//! * health checks report the injected damage and the next backup repairs
//!   it (`health`); retention removes the oldest points and keeps at most
//!   its count (`retention`); a successful replica sync leaves a replica
//!   point (`replica_syncs`); backup windows hold (`windows`); no session,
//!   task, point or snapshot id is ever reused (`unique_ids`).
//!
//! At the end, every retained point must still be durable in its store
//! (invariant 2) and every restore requested must have succeeded.

mod durable;
mod health;
mod replica_syncs;
mod replication;
mod retention;
mod unique_ids;
mod windows;

pub use durable::ManifestAudit;
pub use replication::ReplicationChecker;

use crate::topology::Topology;
use crate::world::{PointDigests, World};
use blockferry_core::{BlockSize, Digest, Event, NodeId, RestorePointId, SnapshotId, Timestamp, VmId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A restore point the checker has verified and still expects to exist.
#[derive(Debug, Clone)]
pub struct Retained {
    pub job: blockferry_core::JobId,
    pub vm: VmId,
    pub repository: NodeId,
    pub host: NodeId,
    pub snap: SnapshotId,
    pub block_size: BlockSize,
    pub repository_name: String,
}

#[derive(Debug, Default)]
pub struct Checker {
    violations: Vec<String>,
    retained: BTreeMap<RestorePointId, Retained>,
    proxy_load: BTreeMap<NodeId, u32>,
    restores_ok: u64,
    damaged_restores_refused: u64,
    /// Points whose content differs from their snapshot, not yet reported
    /// by the system itself.
    suspects: BTreeMap<RestorePointId, Vec<String>>,
    /// Points the system reported inconsistent (never restored at the end).
    inconsistent: BTreeSet<RestorePointId>,
    /// Blocks damaged at rest by `corrupt_block` faults, per repository.
    damaged: BTreeMap<String, BTreeSet<Digest>>,
    /// Replicas: invariants 3 and 4, failover and failback.
    replication: ReplicationChecker,
    /// Health-check findings against the injected damage.
    health: health::Health,
    /// Retention keeps the newest N.
    retention: retention::Retention,
    /// Successful replica syncs leave points.
    replica_syncs: replica_syncs::ReplicaSyncs,
    /// Backup windows hold.
    windows: windows::Windows,
    /// Ids name one thing each, across restarts.
    unique_ids: unique_ids::UniqueIds,
}

/// Blocks listed in a violation message, at most.
const SHOW_BLOCKS: usize = 5;

impl Checker {
    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn retained(&self) -> &BTreeMap<RestorePointId, Retained> {
        &self.retained
    }

    /// Retained points that were not reported inconsistent: the ones the
    /// end-of-run restores must get right.
    pub fn trusted(&self) -> impl Iterator<Item = (&RestorePointId, &Retained)> {
        self.retained.iter().filter(|(p, _)| !self.inconsistent.contains(p))
    }

    pub fn restores_ok(&self) -> u64 {
        self.restores_ok
    }

    /// Whether the point's manifest references a block that is damaged at
    /// rest now.
    fn references_damage(&self, world: &World, point: RestorePointId, repository: &str) -> bool {
        let Some(store) = world.store(repository) else { return false };
        let Some(manifest) = store.manifests().find(|m| m.point == point) else { return false };
        manifest.referenced().any(|d| store.is_damaged(&d))
    }

    pub fn damaged_restores_refused(&self) -> u64 {
        self.damaged_restores_refused
    }

    /// The manager crashed: the tasks it had placed are void (its successor
    /// aborts them), so their slots are free.
    pub fn manager_crashed(&mut self) {
        self.proxy_load.clear();
        self.health.manager_crashed();
        self.windows.manager_crashed();
    }

    /// `repository` crashed at `at`.
    pub fn repository_crashed(&mut self, at: Timestamp, topo: &Topology, repository: &str) {
        self.health.repository_crashed(at, topo, repository);
    }

    /// A fault damaged these blocks at `repository` at `at`.
    pub fn damaged(&mut self, at: Timestamp, repository: &str, digests: Vec<Digest>) {
        self.health.damaged(at, repository, &digests);
        self.damaged.entry(repository.to_string()).or_default().extend(digests);
    }

    pub fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    pub fn replication(&self) -> &ReplicationChecker {
        &self.replication
    }

    /// End-of-run checks beyond the restores: replica points still intact,
    /// and a wrong backup point nobody reported is a violation.
    pub fn finish(&mut self, topo: &Topology, world: &World) {
        self.replication.finish(topo, world, &mut self.violations);
        self.retention.finish(topo, &mut self.violations);
        for (_, texts) in std::mem::take(&mut self.suspects) {
            self.violations.extend(texts);
        }
    }

    pub fn observe(&mut self, at: Timestamp, topo: &Topology, world: &World, event: &Event) {
        self.replication.observe(at, topo, world, event, &mut self.violations);
        self.health.observe(at, topo, world, event, &mut self.violations);
        self.retention.observe(at, topo, world, event, &mut self.violations);
        self.replica_syncs.observe(at, topo, event, &mut self.violations);
        self.windows.observe(at, topo, event, &mut self.violations);
        self.unique_ids.observe(at, event, &mut self.violations);
        match event {
            // Every node of a simulated deployment is honest: a refused
            // input is a bug in its sender, or a limit set too low.
            Event::InputRefused { peer, reason } => {
                self.violations.push(format!("at {at}: input from {} refused: {reason}", topo.name(*peer)));
            }
            Event::PointCommitted { job, vm, point, repository, host, snap, .. } => {
                let block_size = self.check_point(at, topo, world, *point, *repository, *snap).unwrap_or(world.hypervisors().fine());
                let repository_name = topo.name(*repository).to_string();
                let retained =
                    Retained { job: *job, vm: *vm, repository: *repository, host: *host, snap: *snap, block_size, repository_name };
                self.retained.insert(*point, retained);
            }
            Event::PointAdopted { job, vm, point, repository, host, snap } => {
                // Committed while nobody was listening (or before a manager
                // restart): it must be as right as any other point.
                let block_size = self.check_point(at, topo, world, *point, *repository, *snap).unwrap_or(world.hypervisors().fine());
                let repository_name = topo.name(*repository).to_string();
                let retained =
                    Retained { job: *job, vm: *vm, repository: *repository, host: *host, snap: *snap, block_size, repository_name };
                self.retained.insert(*point, retained);
            }
            Event::PointsInconsistent { points, .. } => {
                for point in points {
                    self.suspects.remove(point);
                    self.inconsistent.insert(*point);
                }
            }
            Event::PointLost { point, repository, .. } => {
                self.violations.push(format!("at {at}: committed {point} is gone from {}", topo.name(*repository)));
                self.retained.remove(point);
            }
            Event::PointRemoved { point, result: Ok(()), .. } => {
                self.retained.remove(point);
            }
            Event::TaskAssigned { proxy, .. } => {
                let load = self.proxy_load.entry(*proxy).or_default();
                *load += 1;
                let slots = topo.deployment.proxies.get(proxy).map_or(0, |p| p.task_slots);
                if *load > slots {
                    self.violations.push(format!("at {at}: proxy {} runs {} disk tasks with {slots} slots", topo.name(*proxy), *load));
                }
            }
            Event::TaskFinished { proxy, .. } => {
                if let Some(load) = self.proxy_load.get_mut(proxy) {
                    *load = load.saturating_sub(1);
                }
            }
            _ => {}
        }
    }

    /// Invariant 1: the committed manifest equals the snapshot. Returns
    /// the point's block size. (That its blocks are durable was checked
    /// when the store made the manifest durable: see `durable`.)
    fn check_point(
        &mut self,
        at: Timestamp,
        topo: &Topology,
        world: &World,
        point: RestorePointId,
        repository: NodeId,
        snap: SnapshotId,
    ) -> Option<BlockSize> {
        let repo = topo.name(repository);
        let Some(store) = world.store(repo) else {
            self.violations.push(format!("at {at}: {point} committed at {repo}, which has no store"));
            return None;
        };
        let Some(manifest) = store.durable_manifest(point) else {
            self.violations.push(format!("at {at}: {point} reported committed but its manifest is not durable at {repo}"));
            return None;
        };
        let expected_disks = world.hypervisors().vm_disks(manifest.vm).map_or(0, |d| d.len());
        if manifest.disks.len() != expected_disks {
            self.violations.push(format!("{point}: manifest has {} disks, the VM has {expected_disks}", manifest.disks.len()));
        }
        for disk in &manifest.disks {
            let Some(expected) = world.hypervisors().point_digests(snap, disk.index, disk.block_size) else {
                self.violations.push(format!("{point} disk {}: the oracle has no content for {snap}", disk.index));
                continue;
            };
            if let Some(text) = compare(&expected, &disk.digests) {
                // A violation unless the system itself reports the point
                // inconsistent later (a verification pass catching a lying
                // CBT); settled in `finish`.
                self.suspects.entry(point).or_default().push(format!("{point} ({repo}) disk {} differs from {snap}: {text}", disk.index));
            }
        }
        manifest.disks.first().map(|d| d.block_size)
    }

    /// A restore ended: it must have succeeded and written the snapshot.
    pub fn check_restore(&mut self, world: &World, point: RestorePointId, vm: VmId, result: &Result<(), String>) {
        let Some(retained) = self.retained.get(&point).cloned() else {
            return self.violations.push(format!("restore of {point} finished, but the point is not retained"));
        };
        if let Err(reason) = result {
            // Refusing to restore a block damaged at rest is correct (never
            // wrong bytes); failing for any other reason is not.
            if self.references_damage(world, point, retained.repository_name.as_str()) {
                self.damaged_restores_refused += 1;
                return;
            }
            return self.violations.push(format!("restore of {point} failed: {reason}"));
        }
        let hv = world.hypervisors();
        let Some(disks) = hv.vm_disks(retained.vm) else { return };
        for disk in 0..disks.len() as u16 {
            match hv.restored_differences(retained.snap, vm, disk, retained.block_size) {
                Some(found) => {
                    if let Some(text) = describe(found.expected as usize, found.actual as usize, &found.blocks) {
                        return self.violations.push(format!("restore of {point} disk {disk} onto {vm}: {text}"));
                    }
                }
                None => return self.violations.push(format!("restore of {point} disk {disk}: no content to compare")),
            }
        }
        self.restores_ok += 1;
    }
}

/// `None` when equal; otherwise how many blocks differ and the first few.
fn compare(expected: &PointDigests, actual: &Arc<[Digest]>) -> Option<String> {
    if expected.len() != actual.len() {
        return describe(expected.len(), actual.len(), &[]);
    }
    describe(expected.len(), actual.len(), &expected.differing(actual))
}

/// The text of a comparison: `None` when the lengths agree and no block
/// differs.
fn describe(expected: usize, actual: usize, differing: &[usize]) -> Option<String> {
    if expected != actual {
        return Some(format!("{actual} blocks, expected {expected}"));
    }
    if differing.is_empty() {
        return None;
    }
    let shown: Vec<String> = differing.iter().take(SHOW_BLOCKS).map(|i| i.to_string()).collect();
    Some(format!("{} of {} blocks differ (first: {})", differing.len(), expected, shown.join(", ")))
}
