//! A successful replica sync leaves a replica point: when a replication
//! job reports a VM's sync done without error, it announced a replica
//! restore point for that VM in that session (or skipped the VM, saying
//! why).
//!
//! The replication checker verifies each point it is told about; a sync
//! that made none would pass it untouched, with the replica's content
//! changed behind no point at all.

use crate::topology::Topology;
use blockferry_core::config::JobKind;
use blockferry_core::{Event, SessionId, Timestamp, VmId};
use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub struct ReplicaSyncs {
    /// VMs of sessions that announced a replica point.
    pointed: BTreeSet<(SessionId, VmId)>,
    /// VMs of sessions that were skipped.
    skipped: BTreeSet<(SessionId, VmId)>,
}

impl ReplicaSyncs {
    pub fn observe(&mut self, at: Timestamp, topo: &Topology, event: &Event, violations: &mut Vec<String>) {
        match event {
            Event::ReplicaPointCommitted { session, vm, .. } => _ = self.pointed.insert((*session, *vm)),
            Event::VmSkipped { session, vm, .. } => _ = self.skipped.insert((*session, *vm)),
            Event::VmFinished { job, session, vm, result } => {
                let key = (*session, *vm);
                let (pointed, skipped) = (self.pointed.remove(&key), self.skipped.remove(&key));
                let Some(spec) = topo.deployment.job(*job) else { return };
                if matches!(spec.kind, JobKind::Replication(_)) && result.is_ok() && !pointed && !skipped {
                    violations.push(format!(
                        "at {at}: replication job {} reported vm {vm} synced in session {session} but left no replica point",
                        spec.name
                    ));
                }
            }
            _ => {}
        }
    }
}
