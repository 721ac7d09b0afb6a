//! The catalog: which restore points exist, per job and VM, oldest first.
//!
//! The repositories are the source of truth (a point is what a durable
//! manifest says); the catalog is the manager's view of it. It is rebuilt
//! from `ListPoints` when the manager starts and reconciled whenever a
//! repository reconnects, so a point whose commit acknowledgement was lost,
//! or a deletion that never got through, is set right then.

use crate::ids::{JobId, RestorePointId, VmId};
use crate::manifest::PointHeader;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
pub struct Catalog {
    chains: BTreeMap<(JobId, VmId), VecDeque<PointHeader>>,
    /// Points expired by retention whose deletion is not confirmed yet.
    deleting: BTreeMap<RestorePointId, (JobId, VmId)>,
    /// A planted bug (see `Manager::expiring_newest_points`): expire
    /// takes the newest points. Never set in a real manager.
    pub(super) expire_newest: bool,
}

/// What a reconciliation with a repository's listing found.
#[derive(Debug, Default, PartialEq)]
pub struct Reconciled {
    /// Points the repository holds that the catalog lacked.
    pub adopted: Vec<PointHeader>,
    /// Catalogued points the repository no longer has (never expected).
    pub lost: Vec<(JobId, VmId, RestorePointId)>,
    /// Deletions now confirmed by their absence.
    pub deleted: Vec<RestorePointId>,
    /// Deletions still to do (the repository still lists them).
    pub to_delete: Vec<RestorePointId>,
}

impl Catalog {
    pub fn chain(&self, job: JobId, vm: VmId) -> impl Iterator<Item = &PointHeader> {
        self.chains.get(&(job, vm)).into_iter().flatten()
    }

    pub fn newest(&self, job: JobId, vm: VmId) -> Option<&PointHeader> {
        self.chains.get(&(job, vm)).and_then(|c| c.back())
    }

    pub fn find(&self, point: RestorePointId) -> Option<&PointHeader> {
        self.chains.values().flatten().find(|p| p.point == point)
    }

    pub fn push(&mut self, header: PointHeader) {
        let chain = self.chains.entry((header.job, header.vm)).or_default();
        chain.push_back(header);
        chain.make_contiguous().sort_by_key(|p| (p.snapshot_at, p.point));
    }

    /// Drops the oldest points beyond `keep` and returns them, stopping at
    /// a point in `locked` (a restore is reading it; it goes next time).
    pub fn expire(&mut self, job: JobId, vm: VmId, keep: usize, locked: &[RestorePointId]) -> Vec<RestorePointId> {
        let Some(chain) = self.chains.get_mut(&(job, vm)) else { return Vec::new() };
        let mut expired = Vec::new();
        let newest = self.expire_newest;
        let next = |chain: &VecDeque<PointHeader>| if newest { chain.back() } else { chain.front() }.map(|p| p.point);
        while chain.len() > keep.max(1) && next(chain).is_some_and(|p| !locked.contains(&p)) {
            if let Some(old) = if newest { chain.pop_back() } else { chain.pop_front() } {
                self.deleting.insert(old.point, (job, vm));
                expired.push(old.point);
            }
        }
        expired
    }

    /// The repository confirmed a deletion: which chain it was in.
    pub fn deleted(&mut self, point: RestorePointId) -> Option<(JobId, VmId)> {
        self.deleting.remove(&point)
    }

    /// Makes the chains of `jobs` match what a repository lists: points it
    /// has that the catalog lacks are adopted, pending deletions it no
    /// longer lists are confirmed (and the others are to be sent again), and
    /// catalogued points it lacks are dropped as lost.
    pub fn reconcile(&mut self, jobs: &[JobId], listed: Vec<PointHeader>) -> Reconciled {
        let mut found = Reconciled::default();
        let is_listed = |point: RestorePointId| listed.iter().any(|l| l.point == point);
        for (&point, &(job, _)) in &self.deleting {
            if jobs.contains(&job) {
                if is_listed(point) { found.to_delete.push(point) } else { found.deleted.push(point) }
            }
        }
        for point in &found.deleted {
            self.deleting.remove(point);
        }
        for (&(job, vm), chain) in self.chains.iter_mut() {
            if jobs.contains(&job) {
                chain.retain(|p| {
                    let keep = is_listed(p.point);
                    if !keep {
                        found.lost.push((job, vm, p.point));
                    }
                    keep
                });
            }
        }
        for header in listed {
            if jobs.contains(&header.job) && self.find(header.point).is_none() && !self.deleting.contains_key(&header.point) {
                found.adopted.push(header.clone());
                self.push(header);
            }
        }
        found
    }

    /// Every (job, vm) with points.
    pub fn keys(&self) -> Vec<(JobId, VmId)> {
        self.chains.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, SnapshotId};
    use crate::time::Timestamp;

    fn point(n: u64, job: u32) -> PointHeader {
        PointHeader {
            point: RestorePointId(n),
            job: JobId(job),
            session: SessionId(n),
            vm: VmId(0),
            snapshot_at: Timestamp(n),
            snapshot: SnapshotId(n),
            parent: None,
            disks: Vec::new(),
        }
    }

    #[test]
    fn expire_keeps_the_newest_and_skips_locked() {
        let mut c = Catalog::default();
        for n in 1..=5 {
            c.push(point(n, 0));
        }
        assert_eq!(c.expire(JobId(0), VmId(0), 3, &[RestorePointId(2)]), vec![RestorePointId(1)]);
        assert_eq!(c.expire(JobId(0), VmId(0), 3, &[]), vec![RestorePointId(2)]);
        assert_eq!(c.newest(JobId(0), VmId(0)).map(|p| p.point), Some(RestorePointId(5)));
    }

    #[test]
    fn reconcile_adopts_and_drops_only_for_the_given_jobs() {
        let mut c = Catalog::default();
        c.push(point(1, 0));
        c.push(point(2, 0));
        c.push(point(9, 1));
        let found = c.reconcile(&[JobId(0)], vec![point(2, 0), point(3, 0)]);
        assert_eq!(found.adopted.iter().map(|p| p.point.0).collect::<Vec<_>>(), vec![3]);
        assert_eq!(found.lost, vec![(JobId(0), VmId(0), RestorePointId(1))]);
        assert_eq!(c.chain(JobId(0), VmId(0)).map(|p| p.point.0).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(c.chain(JobId(1), VmId(0)).count(), 1, "other jobs untouched");
    }

    #[test]
    fn deletions_are_confirmed_by_absence_and_never_readopted() {
        let mut c = Catalog::default();
        for n in 1..=3 {
            c.push(point(n, 0));
        }
        assert_eq!(c.expire(JobId(0), VmId(0), 1, &[]), vec![RestorePointId(1), RestorePointId(2)]);
        // The repository still lists point 1 (its delete was lost) but not 2.
        let found = c.reconcile(&[JobId(0)], vec![point(1, 0), point(3, 0)]);
        assert!(found.adopted.is_empty(), "a point being deleted is not adopted back");
        assert_eq!(found.to_delete, vec![RestorePointId(1)]);
        assert_eq!(found.deleted, vec![RestorePointId(2)]);
        assert_eq!(c.deleted(RestorePointId(1)), Some((JobId(0), VmId(0))));
    }
}
