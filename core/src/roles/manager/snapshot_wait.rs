//! A backup's snapshot request whose host connection broke before the
//! answer came. Over a WAN that breaks now and then (a manager in another
//! site than its hosts), failing the VM at once failed whole sessions for
//! a break of a second, session after session. Instead the request is made
//! again when the host is back, if that happens within [`SNAPSHOT_GRACE`];
//! otherwise the VM fails as before, so a session still ends.
//!
//! If the first request did reach the host and only its answer was lost,
//! the host holds a snapshot nobody will release (a leak a host-side
//! snapshot sweep must collect), which is the price of not failing.

use super::{Manager, Op, VmState};
use crate::ids::{NodeId, SessionId, VmId};
use crate::time::Timestamp;
use crate::wire::Message;
use std::time::Duration;

/// How long a snapshot waits for its host to come back.
pub const SNAPSHOT_GRACE: Duration = super::RECONNECT_GRACE;

/// Snapshots to ask again: host, session, VM, since when.
#[derive(Debug, Default)]
pub(super) struct SnapshotsWaiting(Vec<(NodeId, SessionId, VmId, Timestamp)>);

impl Manager {
    /// `host` went away before answering the snapshot of `vm` in `session`.
    pub(super) fn snapshot_lost(&mut self, host: NodeId, session: SessionId, vm: VmId) {
        if self.snapshots_waiting.0.is_empty() {
            self.out.set_timer(super::Timer::SnapshotRetry.id(), self.now + SNAPSHOT_GRACE);
        }
        self.snapshots_waiting.0.push((host, session, vm, self.now));
    }

    /// `host` is back: its lost snapshot requests are made again (for VMs
    /// still waiting for one; a VM whose session ran out of its window
    /// meanwhile ends now).
    pub(super) fn ask_snapshots_again(&mut self, host: NodeId) {
        let (again, keep) = std::mem::take(&mut self.snapshots_waiting.0).into_iter().partition(|(h, ..)| *h == host);
        self.snapshots_waiting.0 = keep;
        for (_, session, vm, _) in again {
            let Some(run) = self.vm_run(session, vm).filter(|r| r.state == VmState::Snapshotting) else { continue };
            if let Some(failure) = run.failure.clone() {
                self.finish_vm(session, vm, Err(failure));
                continue;
            }
            let op = self.op(host, Op::Snapshot { session, vm });
            self.out.send(host, Message::CreateSnapshot { op, vm });
        }
    }

    /// Snapshots whose host stayed away for [`SNAPSHOT_GRACE`] fail.
    pub(super) fn on_snapshot_retry_timer(&mut self) {
        let now = self.now;
        let (expired, keep) = std::mem::take(&mut self.snapshots_waiting.0)
            .into_iter()
            .partition(|(.., since)| now.saturating_since(*since) >= SNAPSHOT_GRACE);
        self.snapshots_waiting.0 = keep;
        for (host, session, vm, _) in expired {
            if self.vm_run(session, vm).is_some_and(|r| r.state == VmState::Snapshotting) {
                let reason = format!("snapshot failed: lost connection to {host}, which stayed away {} s", SNAPSHOT_GRACE.as_secs());
                self.finish_vm(session, vm, Err(reason));
            }
        }
        if let Some(first) = self.snapshots_waiting.0.iter().map(|(.., since)| *since).min() {
            self.out.set_timer(super::Timer::SnapshotRetry.id(), first + SNAPSHOT_GRACE);
        }
    }
}
