//! No id is ever reused in a run: each session, task, restore point and
//! snapshot id names one thing, whatever restarted in between.
//!
//! The manager seeds its id counters from the clock and lifts them above
//! what its repositories hold (issue 13 §4); a counter that started over
//! after a crash would hand out an id that already names a point or a
//! session, and the catalog, the repositories' pending state and this
//! checker's own bookkeeping would then confuse the two. Each event is
//! reduced to "this id names that thing"; the same id seen again naming
//! something else is a violation. (Seeing the same pairing again is fine: a
//! retried task keeps its id, and a re-placed one is assigned again.)

use blockferry_core::{DiskId, Event, JobId, NodeId, RestorePointId, SessionId, SnapshotId, TaskId, Timestamp, VmId};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Debug;

/// What a restore point id names: a backup or a replica point of a VM made
/// by a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointOf {
    Backup { job: JobId, vm: VmId, session: SessionId },
    Replica { job: JobId, vm: VmId, session: SessionId },
}

#[derive(Debug, Default)]
pub struct UniqueIds {
    sessions: BTreeMap<SessionId, JobId>,
    tasks: BTreeMap<TaskId, (SessionId, DiskId)>,
    points: BTreeMap<RestorePointId, PointOf>,
    /// A host's snapshot of a VM (snapshot ids are the host's).
    snapshots: BTreeMap<(NodeId, SnapshotId), VmId>,
}

impl UniqueIds {
    pub fn observe(&mut self, at: Timestamp, event: &Event, violations: &mut Vec<String>) {
        let found = match event {
            Event::SessionStarted { job, session } => {
                // A session starts once: its id seen again is reuse even
                // for the same job.
                if self.sessions.insert(*session, *job).is_some() { Some(format!("session {session} started twice")) } else { None }
            }
            Event::TaskAssigned { task, session, disk, .. } => names(&mut self.tasks, *task, (*session, *disk)),
            Event::PointCommitted { job, vm, session, point, host, snap, .. } => {
                names(&mut self.points, *point, PointOf::Backup { job: *job, vm: *vm, session: *session })
                    .or_else(|| names(&mut self.snapshots, (*host, *snap), *vm))
            }
            Event::ReplicaPointCommitted { job, vm, session, point, .. } => {
                names(&mut self.points, *point, PointOf::Replica { job: *job, vm: *vm, session: *session })
            }
            Event::SnapshotTaken { vm, host, snap, .. } => names(&mut self.snapshots, (*host, *snap), *vm),
            _ => None,
        };
        if let Some(reuse) = found {
            violations.push(format!("at {at}: an id was reused: {reuse}"));
        }
    }
}

/// Records that `id` names `thing`; describes the reuse if it named
/// something else before.
fn names<K: Ord + Debug, V: PartialEq + Debug>(map: &mut BTreeMap<K, V>, id: K, thing: V) -> Option<String> {
    match map.entry(id) {
        Entry::Vacant(v) => {
            v.insert(thing);
            None
        }
        Entry::Occupied(o) if *o.get() == thing => None,
        Entry::Occupied(o) => Some(format!("{:?} named {:?} and now names {thing:?}", o.key(), o.get())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_naming_two_things_is_reported_once_per_reuse() {
        let mut map = BTreeMap::new();
        assert_eq!(names(&mut map, TaskId(1), (SessionId(1), DiskId { vm: VmId(0), index: 0 })), None);
        assert_eq!(names(&mut map, TaskId(1), (SessionId(1), DiskId { vm: VmId(0), index: 0 })), None, "a retry keeps its id");
        let reuse = names(&mut map, TaskId(1), (SessionId(2), DiskId { vm: VmId(0), index: 0 }));
        assert!(reuse.is_some_and(|r| r.contains("TaskId(1)") && r.contains("SessionId(2)")));
    }
}
