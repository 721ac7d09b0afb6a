//! The replication half of the checker: ARCHITECTURE.md invariants 3 and 4,
//! and what operator actions promise.
//!
//! * Every replica point announced holds the content it claims — its
//!   source snapshot, or the seed backup it was restored from — read from
//!   the replica's snapshot on the DR host; its stored metadata matches it;
//!   and every older retained point of the replica is still there, intact
//!   (invariant 3).
//! * A seeded or mapped replica's first sync transfers at most the blocks
//!   that differ between the replica's content before it (its seed or
//!   mapped point) and the source (invariant 4).
//! * Failover starts the replica from exactly the chosen point; undoing it
//!   returns the replica to its newest point; failback leaves the source
//!   equal to the replica's final content; undoing that returns the source
//!   to where it was. Every action the scenario asks for must succeed.
//!
//! Guest swap blocks are never replicated, so they are left out of every
//! comparison (on both sides, by the source VM's swap extent).

use super::describe;
use crate::report::{ActionRecord, FirstSync, ReplicationFigures, Transfer};
use crate::topology::Topology;
use crate::world::Hypervisors;
use crate::world::{PointDigests, World};
use blockferry_core::config::JobKind;
use blockferry_core::event::{ActionOutcome, ReplicaOrigin};
use blockferry_core::wire::message::{ReplicaAction, TaskStats};
use blockferry_core::{BlockSize, Digest, Event, JobId, RestorePointId, SessionId, SnapshotId, Timestamp, VmId};
use std::collections::BTreeMap;

/// A replica point the checker verified and expects to stay intact.
#[derive(Debug, Clone)]
struct Kept {
    job: JobId,
    vm: VmId,
    snap: SnapshotId,
    /// The source content it must hold (`None`: a mapped VM's own).
    expected: Option<SnapshotId>,
    /// It held it when added (a bad point is reported once, not again as
    /// "older").
    ok: bool,
    /// Order of arrival among all replica points (retention drops the
    /// earliest).
    seq: usize,
}

#[derive(Debug, Default)]
pub struct ReplicationChecker {
    /// Snapshots of every backup point seen (seeds are backup points).
    backup_snaps: BTreeMap<RestorePointId, SnapshotId>,
    kept: BTreeMap<RestorePointId, Kept>,
    /// Replica points seen so far.
    added: usize,
    /// Seed or mapped point of a session's first sync.
    initial: BTreeMap<(SessionId, VmId), (RestorePointId, &'static str)>,
    tasks: BTreeMap<(SessionId, VmId), TaskStats>,
    first_syncs: Vec<(JobId, SessionId, FirstSync)>,
    actions: Vec<(JobId, ActionRecord)>,
    skipped: Vec<(JobId, String)>,
}

impl ReplicationChecker {
    pub fn observe(&mut self, at: Timestamp, topo: &Topology, world: &World, event: &Event, violations: &mut Vec<String>) {
        match event {
            Event::PointCommitted { point, snap, .. } | Event::PointAdopted { point, snap, .. } => {
                self.backup_snaps.insert(*point, *snap);
            }
            Event::TaskFinished { session, disk, result: Ok(stats), .. } => {
                self.tasks.entry((*session, disk.vm)).or_default().add(stats);
            }
            Event::VmSkipped { job, reason, .. } => self.skipped.push((*job, reason.clone())),
            Event::ReplicaPointCommitted { job, session, vm, point, snap, origin, metadata, .. } => {
                let Some(block_size) = block_size(topo, *job) else { return };
                let check = Check { hv: world.hypervisors(), vm: *vm, block_size };
                let expected = match origin {
                    ReplicaOrigin::Source { snap } => Some(*snap),
                    ReplicaOrigin::Seed { point: seed } => match self.backup_snaps.get(seed) {
                        Some(snap) => Some(*snap),
                        None => return violations.push(format!("replica {point} of {vm} claims seed {seed}, a backup point never seen")),
                    },
                    ReplicaOrigin::Mapped => None,
                };
                let seq = self.added;
                self.added += 1;
                let mut kept = Kept { job: *job, vm: *vm, snap: *snap, expected, ok: true, seq };
                if let Some(v) = check.point(*point, &kept) {
                    violations.push(format!("at {at}: {v}"));
                    kept.ok = false;
                }
                if *metadata && let Some(v) = check.metadata(topo, world, *job, *point, *snap) {
                    violations.push(format!("at {at}: {v}"));
                }
                // Invariant 3: older points are intact. Their content was
                // compared when they were added and is compared again at
                // the end; in between it cannot change (see `Check::exists`).
                for (older, k) in self.kept.iter_mut().filter(|(_, k)| k.job == *job && k.vm == *vm && k.ok) {
                    if let Some(v) = check.exists(*older, k) {
                        violations.push(format!("at {at}: after {point} was added: {v}"));
                        k.ok = false;
                    }
                }
                match origin {
                    ReplicaOrigin::Seed { .. } => _ = self.initial.insert((*session, *vm), (*point, "seeded")),
                    ReplicaOrigin::Mapped => _ = self.initial.insert((*session, *vm), (*point, "mapped")),
                    ReplicaOrigin::Source { snap: source } => {
                        if let Some((initial, kind)) = self.initial.remove(&(*session, *vm))
                            && let Some(before) = self.kept.get(&initial).map(|k| k.snap)
                        {
                            let stats = self.tasks.get(&(*session, *vm)).copied().unwrap_or_default();
                            let sync = check.first_sync(topo, kind, before, *source, &stats);
                            if sync.blocks_transferred > sync.blocks_differing {
                                violations.push(format!(
                                    "{kind} first sync of {vm} transferred {} blocks, but only {} differ from the replica",
                                    sync.blocks_transferred, sync.blocks_differing
                                ));
                            }
                            self.first_syncs.push((*job, *session, sync));
                        }
                    }
                }
                self.kept.insert(*point, kept);
            }
            // The manager stops counting on a point before it asks the
            // host to remove it; a failed removal (its answer lost with a
            // connection) may well have removed it, so the point is no
            // longer promised either way.
            Event::ReplicaPointRemoved { point, .. } => {
                self.kept.remove(point);
            }
            Event::ReplicaActionFinished { job, vm, replica, action, result } => {
                let Some(block_size) = block_size(topo, *job) else { return };
                let check = Check { hv: world.hypervisors(), vm: *vm, block_size };
                let verdict = match result {
                    Ok(outcome) => self.action(&check, *replica, outcome),
                    Err(reason) => Some(format!("failed: {reason}")),
                };
                if let Some(v) = &verdict {
                    violations.push(format!("at {at}: {} of {vm}: {v}", action.name()));
                }
                let record = ActionRecord {
                    at_secs: (at - topo.start).as_secs(),
                    vm: topo.deployment.vms.get(vm).map_or_else(|| vm.to_string(), |v| v.name.clone()),
                    action: action.name().to_string(),
                    point_back: match action {
                        ReplicaAction::Failover { back } => Some(*back),
                        _ => None,
                    },
                    ok: result.is_ok(),
                    verified: verdict.is_none(),
                    transfer: match result {
                        Ok(ActionOutcome::FailedBack { replica_snap, before, session, .. }) => {
                            let stats = self.tasks.get(&(*session, *vm)).copied().unwrap_or_default();
                            Some(Transfer {
                                blocks_differing: check.differing(*before, *replica_snap),
                                blocks_transferred: stats.blocks_changed,
                                blocks_sent: stats.blocks_sent,
                                bytes_sent: stats.bytes_sent,
                            })
                        }
                        _ => None,
                    },
                };
                self.actions.push((*job, record));
            }
            _ => {}
        }
    }

    /// What a successful action must have left.
    fn action(&self, check: &Check, replica: VmId, outcome: &ActionOutcome) -> Option<String> {
        let hv = check.hv;
        match *outcome {
            ActionOutcome::FailedOver { point, snap } => match self.kept.get(&point) {
                Some(k) => {
                    let expected = k.expected.unwrap_or(k.snap);
                    check.snapshots(expected, snap).map(|v| format!("the replica did not start from {point}: {v}"))
                }
                None => Some(format!("failed over to {point}, which is not a retained replica point")),
            },
            ActionOutcome::FailoverUndone { point, snap } => check
                .each_disk(|disk, bs| Some((hv.point_digests(snap, disk, bs)?, hv.vm_point_digests(replica, disk, bs)?)))
                .map(|v| format!("the replica is not back at {point}: {v}")),
            ActionOutcome::FailedBack { replica_snap, source_snap, .. } => {
                check.snapshots(replica_snap, source_snap).map(|v| format!("the source does not hold the replica's content: {v}"))
            }
            ActionOutcome::FailbackUndone { source_snap } => check
                .each_disk(|disk, bs| Some((hv.point_digests(source_snap, disk, bs)?, hv.vm_point_digests(check.vm, disk, bs)?)))
                .map(|v| format!("the source is not back as it was before failback: {v}")),
            ActionOutcome::FailbackCommitted | ActionOutcome::PermanentlyFailedOver => None,
        }
    }

    /// At the end: every retained replica point is still intact. The run
    /// may stop while retention is removing a replica's oldest points
    /// (before their removal is reported), so only the newest
    /// `restore_points` of each replica must still be there; older ones
    /// are compared only if they are.
    pub fn finish(&self, topo: &Topology, world: &World, violations: &mut Vec<String>) {
        let mut newest_first: Vec<(&RestorePointId, &Kept)> = self.kept.iter().collect();
        newest_first.sort_by_key(|(_, k)| std::cmp::Reverse(k.seq));
        let mut seen: BTreeMap<(JobId, VmId), u32> = BTreeMap::new();
        for (point, k) in newest_first {
            let Some(JobKind::Replication(r)) = topo.deployment.job(k.job).map(|j| &j.kind) else { continue };
            let rank = seen.entry((k.job, k.vm)).or_default();
            *rank += 1;
            let check = Check { hv: world.hypervisors(), vm: k.vm, block_size: r.block_size };
            let retiring = *rank > r.restore_points.max(1) && check.exists(*point, k).is_some();
            if !k.ok || retiring {
                continue;
            }
            if let Some(v) = check.point(*point, k) {
                violations.push(format!("at the end: {v}"));
            }
        }
    }

    /// Adds the replication figures to the jobs' summaries; `wan` gives a
    /// session's bytes across WAN links, when measured.
    pub fn annotate(
        &self,
        topo: &Topology,
        wan: impl Fn(SessionId) -> Option<u64>,
        jobs: &mut BTreeMap<String, crate::report::JobSummary>,
    ) {
        for spec in &topo.deployment.jobs {
            if !matches!(spec.kind, JobKind::Replication(_)) {
                continue;
            }
            let mut figures = ReplicationFigures::default();
            for (_, reason) in self.skipped.iter().filter(|(j, _)| *j == spec.id) {
                figures.vms_skipped += 1;
                if !figures.skip_reasons.contains(reason) {
                    figures.skip_reasons.push(reason.clone());
                }
            }
            for (_, session, sync) in self.first_syncs.iter().filter(|(j, _, _)| *j == spec.id) {
                figures.first_syncs.push(FirstSync { wan_bytes: wan(*session), ..sync.clone() });
            }
            figures.actions = self.actions.iter().filter(|(j, _)| *j == spec.id).map(|(_, a)| a.clone()).collect();
            if let Some(j) = jobs.get_mut(&spec.name) {
                j.replication = Some(figures);
            }
        }
    }
}

fn block_size(topo: &Topology, job: JobId) -> Option<BlockSize> {
    topo.deployment.job(job).and_then(|j| match &j.kind {
        JobKind::Replication(r) => Some(r.block_size),
        JobKind::Backup(_) => None,
    })
}

/// Comparisons about one replicated VM at one block size.
struct Check<'a> {
    hv: &'a Hypervisors,
    /// The source VM (its swap extent is left out).
    vm: VmId,
    block_size: BlockSize,
}

impl Check<'_> {
    /// Runs `pair` (expected, actual) for each disk of the source VM and
    /// compares them without its swap blocks.
    fn each_disk(&self, pair: impl Fn(u16, BlockSize) -> Option<(PointDigests, PointDigests)>) -> Option<String> {
        let disks = self.hv.vm_disks(self.vm).map_or(0, |d| d.len());
        for disk in 0..disks as u16 {
            let Some((expected, actual)) = pair(disk, self.block_size) else {
                return Some(format!("disk {disk}: no content to compare"));
            };
            let swap = self.hv.swap_mask(self.vm, disk, self.block_size).unwrap_or_default();
            let outside_swap = |i: &usize| !swap.get(*i).is_some_and(|s| *s);
            let differing: Vec<usize> = if expected.len() == actual.len() {
                expected.differing_from(&actual).into_iter().filter(outside_swap).collect()
            } else {
                Vec::new()
            };
            if let Some(text) = describe(expected.len(), actual.len(), &differing) {
                return Some(format!("disk {disk}: {text}"));
            }
        }
        None
    }

    /// Two frozen snapshots hold the same content.
    fn snapshots(&self, expected: SnapshotId, actual: SnapshotId) -> Option<String> {
        self.each_disk(|disk, bs| Some((self.hv.point_digests(expected, disk, bs)?, self.hv.point_digests(actual, disk, bs)?)))
    }

    /// A replica point's snapshot is still on the host.
    ///
    /// That is all that can go wrong with a point verified before: a
    /// snapshot is a frozen position in each disk's append-only write log,
    /// so the world cannot change what it holds, only remove it. Comparing
    /// its content again on every new point would cost a whole-disk digest
    /// vector per older point for nothing.
    fn exists(&self, point: RestorePointId, k: &Kept) -> Option<String> {
        match self.hv.snapshot(k.snap) {
            None => Some(format!("replica point {point} of {}: its snapshot {} does not exist", self.vm, k.snap)),
            Some(info) if info.committed_at.is_some() => {
                Some(format!("replica point {point} of {}: its snapshot {} was removed", self.vm, k.snap))
            }
            Some(_) => None,
        }
    }

    /// A replica point is still on the host and holds what it must.
    fn point(&self, point: RestorePointId, k: &Kept) -> Option<String> {
        if let Some(v) = self.exists(point, k) {
            return Some(v);
        }
        let expected = k.expected?;
        self.snapshots(expected, k.snap).map(|v| format!("replica point {point} of {} differs from {expected}: {v}", self.vm))
    }

    /// The stored metadata of a replica point matches the replica.
    fn metadata(&self, topo: &Topology, world: &World, job: JobId, point: RestorePointId, snap: SnapshotId) -> Option<String> {
        let JobKind::Replication(r) = &topo.deployment.job(job)?.kind else { return None };
        let repo = topo.name(r.metadata_repository);
        let Some(manifest) = world.store(repo).and_then(|s| s.durable_replica_metadata().find(|m| m.point == point).cloned()) else {
            return Some(format!("replica point {point} is said to have metadata, but {repo} holds none durably"));
        };
        self.each_disk(|disk, bs| {
            let stored = manifest.disks.iter().find(|d| d.index == disk)?.digests.clone();
            Some((self.hv.point_digests(snap, disk, bs)?, PointDigests::new(stored, 0..0)))
        })
        .map(|v| format!("replica metadata of {point} at {repo} is wrong: {v}"))
    }

    /// Per disk, the digests of two snapshots with the swap blocks left out
    /// (`None` where a disk has no content to compare).
    fn pairs(&self, a: SnapshotId, b: SnapshotId) -> impl Iterator<Item = (Vec<Option<Digest>>, Vec<Option<Digest>>)> + '_ {
        let disks = self.hv.vm_disks(self.vm).map_or(0, |d| d.len());
        let bs = self.block_size;
        (0..disks as u16).filter_map(move |disk| {
            let (x, y) = (self.hv.snapshot_digests(a, disk, bs)?, self.hv.snapshot_digests(b, disk, bs)?);
            let swap = self.hv.swap_mask(self.vm, disk, bs).unwrap_or_default();
            let keep = |v: Vec<Digest>| v.into_iter().enumerate().map(|(i, d)| (!swap.get(i).is_some_and(|s| *s)).then_some(d)).collect();
            Some((keep(x), keep(y)))
        })
    }

    /// Blocks (swap left out) whose content differs between two snapshots.
    fn differing(&self, a: SnapshotId, b: SnapshotId) -> u64 {
        self.pairs(a, b).map(|(x, y)| x.iter().zip(&y).filter(|(p, q)| p.is_some() && p != q).count() as u64).sum()
    }

    /// Invariant 4's figures: blocks differing between the replica before
    /// its first sync and the source snapshot, against what was moved.
    fn first_sync(&self, topo: &Topology, kind: &str, before: SnapshotId, source: SnapshotId, stats: &TaskStats) -> FirstSync {
        let vm = self.vm;
        let (total, full_copy) = self
            .pairs(before, source)
            .map(|(x, y)| (x.len() as u64, y.iter().flatten().filter(|d| !d.is_zero_block()).count() as u64))
            .fold((0, 0), |(t, f), (x, y)| (t + x, f + y));
        let differing = self.differing(before, source);
        FirstSync {
            vm: topo.deployment.vms.get(&vm).map_or_else(|| vm.to_string(), |v| v.name.clone()),
            kind: kind.to_string(),
            blocks_total: total,
            blocks_full_copy: full_copy,
            blocks_differing: differing,
            blocks_transferred: stats.blocks_changed,
            blocks_sent: stats.blocks_sent,
            bytes_sent: stats.bytes_sent,
            wan_bytes: None,
        }
    }
}
