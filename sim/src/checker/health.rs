//! Invariant 7, "damage is never silent", held against the damage the
//! faults injected: the checker knows every block a `corrupt_block` fault
//! damaged, so a health check's findings can be compared with the truth
//! rather than only counted.
//!
//! * **Completeness.** A health check re-reads the newest point of each VM
//!   of its job. It must report a point when that point references a block
//!   damaged at rest throughout the check. Which point was newest when the
//!   check started is not in the event stream, and neither is the start:
//!   the rule assumes a check reports within one period of its start, so
//!   the candidates are every point that was the VM's newest at some
//!   instant of the last period, and a block is required only if it was
//!   damaged before that period began, is still damaged, and every
//!   candidate references it. A check then must name one of the candidates.
//! * **Repair.** The next backup of the VM whose session starts after a
//!   finding must repair every found block its new point still references
//!   (the source still holds that content): once that point is committed,
//!   the block is intact at the repository again. Blocks damaged again
//!   after the finding are left out.
//!
//! A finding lives in the manager's memory and in the repository's; a crash
//! of either forgets it (the next check finds it again), so a crash drops
//! the findings it held instead of failing the repair rule.

use crate::topology::Topology;
use crate::world::{Store, World};
use blockferry_core::config::{JobKind, JobSpec};
use blockferry_core::{Digest, Event, JobId, RestorePointId, SessionId, Timestamp, VmId};
use std::collections::{BTreeMap, BTreeSet};

/// A point of a VM's chain, and when the checker saw it come and go.
#[derive(Debug, Clone, Copy)]
struct Seen {
    point: RestorePointId,
    /// Its place in the chain: snapshot instant, then id (the catalog's
    /// order).
    order: (Timestamp, RestorePointId),
    from: Timestamp,
    until: Option<Timestamp>,
}

#[derive(Debug, Default)]
pub struct Health {
    /// Blocks damaged at rest, per repository, and since when (at the
    /// latest) without interruption.
    injected: BTreeMap<String, BTreeMap<Digest, Timestamp>>,
    chains: BTreeMap<(JobId, VmId), Vec<Seen>>,
    /// Blocks a health check reported, per (job, VM), and when.
    found: BTreeMap<(JobId, VmId), BTreeMap<Digest, Timestamp>>,
    /// When each session started.
    started: BTreeMap<SessionId, Timestamp>,
}

/// Blocks listed in a violation message, at most.
const SHOW: usize = 3;

impl Health {
    /// A fault damaged `digests` at `repository` at `at`.
    pub fn damaged(&mut self, at: Timestamp, repository: &str, digests: &[Digest]) {
        let blocks = self.injected.entry(repository.to_string()).or_default();
        for d in digests {
            blocks.insert(*d, at);
        }
    }

    /// `repository` crashed at `at`: a repair it had not made durable is
    /// undone (its blocks are damaged again from now), and the damage its
    /// health checks found is forgotten.
    pub fn repository_crashed(&mut self, at: Timestamp, topo: &Topology, repository: &str) {
        if let Some(blocks) = self.injected.get_mut(repository) {
            blocks.values_mut().for_each(|since| *since = at);
        }
        self.found.retain(|(job, _), _| topo.deployment.job(*job).and_then(backup_repository).is_none_or(|r| topo.name(r) != repository));
    }

    /// The manager crashed: the repairs it planned are gone.
    pub fn manager_crashed(&mut self) {
        self.found.clear();
    }

    pub fn observe(&mut self, at: Timestamp, topo: &Topology, world: &World, event: &Event, violations: &mut Vec<String>) {
        match event {
            Event::SessionStarted { session, .. } => _ = self.started.insert(*session, at),
            Event::SessionFinished { session, .. } => _ = self.started.remove(session),
            Event::PointCommitted { job, session, vm, point, repository, snapshot_at, .. } => {
                self.seen(*job, *vm, *point, *snapshot_at, at);
                if let Some(text) = self.check_repairs(topo, world, *job, *vm, *session, *point, *repository) {
                    violations.push(format!("at {at}: {text}"));
                }
            }
            Event::PointAdopted { job, vm, point, repository, snap, .. } => {
                let instant = snapshot_instant(topo, world, *repository, *point, *snap).unwrap_or(at);
                self.seen(*job, *vm, *point, instant, at);
            }
            Event::PointRemoved { point, result: Ok(()), .. } | Event::PointLost { point, .. } => {
                for seen in self.chains.values_mut().flatten().filter(|s| s.point == *point && s.until.is_none()) {
                    seen.until = Some(at);
                }
            }
            Event::HealthChecked { job, damaged_points, error: None, .. } => {
                if let Some(text) = self.check_findings(at, topo, world, *job, damaged_points) {
                    violations.push(format!("at {at}: {text}"));
                }
            }
            _ => {}
        }
    }

    /// A point is in the chain from `at` (a point adopted again, after a
    /// manager restart, keeps its first arrival).
    fn seen(&mut self, job: JobId, vm: VmId, point: RestorePointId, instant: Timestamp, at: Timestamp) {
        let chain = self.chains.entry((job, vm)).or_default();
        if !chain.iter().any(|s| s.point == point && s.until.is_none()) {
            chain.push(Seen { point, order: (instant, point), from: at, until: None });
        }
    }

    /// A health check of `job` reported `reported` at `at`: remember what
    /// it found, and fail if it missed damage every candidate point holds.
    fn check_findings(&mut self, at: Timestamp, topo: &Topology, world: &World, job: JobId, reported: &[RestorePointId]) -> Option<String> {
        let spec = topo.deployment.job(job)?;
        let JobKind::Backup(b) = &spec.kind else { return None };
        let every = b.health_check?;
        let repository = topo.name(b.repository);
        let store = world.store(repository)?;
        let damaged: Vec<(Digest, Timestamp)> = self
            .injected
            .get(repository)
            .into_iter()
            .flatten()
            .filter(|(d, _)| store.is_damaged(d))
            .map(|(d, since)| (*d, *since))
            .collect();
        let period_start = Timestamp::from_duration(at.as_duration().saturating_sub(every));
        let mut missed = None;
        for &vm in &spec.vms {
            let chain = self.chains.entry((job, vm)).or_default();
            // Points gone for over a period can no longer be candidates.
            chain.retain(|s| s.until.is_none_or(|u| u + every >= at));
            let candidates = candidates(chain, period_start, at);
            for point in candidates.iter().filter(|p| reported.contains(p)) {
                let held = referenced(store, *point, damaged.iter().map(|(d, _)| *d));
                let found = self.found.entry((job, vm)).or_default();
                for d in held {
                    found.entry(d).or_insert(at);
                }
            }
            if missed.is_some() || candidates.is_empty() || candidates.iter().any(|p| reported.contains(p)) {
                continue;
            }
            // Damaged since before the period began, in every candidate.
            let mut required: BTreeSet<Digest> = damaged.iter().filter(|(_, since)| *since <= period_start).map(|(d, _)| *d).collect();
            for point in &candidates {
                if required.is_empty() {
                    break;
                }
                required = referenced(store, *point, required.iter().copied());
            }
            if !required.is_empty() {
                let newest = candidates.last().copied();
                missed = Some(format!(
                    "health check of job {} missed damage: {} blocks damaged at {repository} since before {period_start} are referenced by \
                     every newest point of vm {vm} in the last period (newest: {}; first: {}), but it reported none of them",
                    spec.name,
                    required.len(),
                    newest.map_or_else(|| "?".to_string(), |p| p.to_string()),
                    show(&required),
                ));
            }
        }
        missed
    }

    /// A point of `session` was committed: every block found damaged before
    /// the session started that the point references must be intact now.
    #[allow(clippy::too_many_arguments)]
    fn check_repairs(
        &mut self,
        topo: &Topology,
        world: &World,
        job: JobId,
        vm: VmId,
        session: SessionId,
        point: RestorePointId,
        repository: blockferry_core::NodeId,
    ) -> Option<String> {
        let started = *self.started.get(&session)?;
        let found = self.found.get_mut(&(job, vm))?;
        let due: BTreeMap<Digest, Timestamp> = found.iter().filter(|(_, f)| **f < started).map(|(d, f)| (*d, *f)).collect();
        found.retain(|_, f| *f >= started);
        if due.is_empty() {
            return None;
        }
        let name = topo.name(repository);
        let store = world.store(name)?;
        let injected = self.injected.get(name);
        let unrepaired: BTreeSet<Digest> = referenced(store, point, due.keys().copied())
            .into_iter()
            .filter(|d| store.is_damaged(d))
            // Damaged again after the finding: a new fault, not a missed repair.
            .filter(|d| injected.and_then(|i| i.get(d)).zip(due.get(d)).is_some_and(|(since, found)| since <= found))
            .collect();
        if unrepaired.is_empty() {
            return None;
        }
        let job_name = topo.deployment.job(job).map_or("?", |s| s.name.as_str());
        Some(format!(
            "{point} of job {job_name} (session {session}, started after the health check found them) still references {} blocks damaged \
             at {name} that it did not repair (first: {})",
            unrepaired.len(),
            show(&unrepaired)
        ))
    }
}

/// The points that were the newest of a chain at some instant of
/// `[from, to]`, oldest first: the newest at `from`, and every point seen
/// after it (a superset: a point that arrived late but older is included,
/// which only makes the rule ask for less).
fn candidates(chain: &[Seen], from: Timestamp, to: Timestamp) -> Vec<RestorePointId> {
    let alive_at = |s: &&Seen| s.from <= from && s.until.is_none_or(|u| u > from);
    let mut out: Vec<(Timestamp, RestorePointId)> = chain.iter().filter(alive_at).map(|s| s.order).max().into_iter().collect();
    out.extend(chain.iter().filter(|s| s.from > from && s.from <= to).map(|s| s.order));
    out.sort_unstable();
    out.dedup();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Which of `digests` the point's manifest at `store` references (none if
/// the store no longer has it).
fn referenced(store: &Store, point: RestorePointId, digests: impl Iterator<Item = Digest>) -> BTreeSet<Digest> {
    let wanted: BTreeSet<Digest> = digests.collect();
    let Some(manifest) = store.manifests().find(|m| m.point == point) else { return BTreeSet::new() };
    if wanted.is_empty() {
        return wanted;
    }
    manifest.referenced().filter(|d| wanted.contains(d)).collect()
}

/// The snapshot instant of a point, as the catalog orders it: from its
/// manifest at the repository, or else from the hypervisor's snapshot.
pub(super) fn snapshot_instant(
    topo: &Topology,
    world: &World,
    repository: blockferry_core::NodeId,
    point: RestorePointId,
    snap: blockferry_core::SnapshotId,
) -> Option<Timestamp> {
    let stored = world.store(topo.name(repository)).and_then(|s| s.manifests().find(|m| m.point == point)).map(|m| m.snapshot_at);
    stored.or_else(|| world.hypervisors().snapshot(snap).map(|s| s.at))
}

fn show(digests: &BTreeSet<Digest>) -> String {
    digests.iter().take(SHOW).map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

fn backup_repository(spec: &JobSpec) -> Option<blockferry_core::NodeId> {
    match &spec.kind {
        JobKind::Backup(b) => Some(b.repository),
        _ => None,
    }
}
