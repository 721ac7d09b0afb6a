//! What the manager checks in its peers' messages before it acts on them
//! (issue 13 §1 and §3), and the bounds of what peers can make it hold.
//!
//! Repositories list points and report damage; what they say sizes the
//! catalog and the repair lists, so a listing with more than a message's
//! worth of entries, a point with more disks than a VM can have, or damage
//! outside a point's disks is refused whole. Points of VMs the deployment
//! does not know are not refused (a VM taken out of the configuration
//! leaves its points behind) but not catalogued either, so the catalog
//! holds at most jobs × VMs chains. Operator requests are answered with an
//! error once [`MAX_RESTORES`] restores run or [`MAX_QUEUED_ACTIONS`]
//! replica actions wait.

use super::Manager;
use crate::ids::NodeId;
use crate::limits::{self, MAX_DISKS_PER_VM};
use crate::manifest::PointHeader;
use crate::wire::Message;
use crate::wire::message::DamagedBlock;

/// Restores running at once; more are answered "try again later". A
/// restore holds a few hundred bytes plus a task per disk, so this is far
/// from a memory limit; it leaves room for a simulator's end-of-run check,
/// which restores every retained point of every VM at once (140 in the
/// 2 TiB day).
pub const MAX_RESTORES: usize = 1024;
/// Replica actions waiting for their replica to be free.
pub const MAX_QUEUED_ACTIONS: usize = 64;
/// The longest name an operator may give a restored VM.
pub const MAX_VM_NAME_BYTES: usize = 255;

impl Manager {
    /// Why `msg` from `from` must be refused, if it must.
    pub(super) fn check(&self, from: NodeId, msg: &Message) -> Result<(), String> {
        match msg {
            Message::Points { points, .. } | Message::ReplicaPoints { points, .. } => {
                limits::list_len("points", points.len())?;
                points.iter().try_for_each(listed)
            }
            Message::HealthReport { result: Ok(damaged), .. } => {
                limits::list_len("damaged blocks", damaged.len())?;
                damaged.iter().try_for_each(|b| self.damage_fits(b))
            }
            Message::TasksRunning { tasks, .. } => limits::list_len("tasks", tasks.len()),
            // Summed per VM: a count beyond any disk's blocks is a lie (and
            // would overflow the sum; found by the fuzzer).
            Message::TaskDone { result: Ok(stats), .. } if stats.cbt_missed > limits::MAX_DISK_BLOCKS => {
                Err(format!("{} blocks CBT missed, more than any disk has", stats.cbt_missed))
            }
            Message::RestoreVm { name, .. } if name.len() > MAX_VM_NAME_BYTES => {
                Err(format!("a VM name of {} bytes from {from} is longer than the limit of {MAX_VM_NAME_BYTES}", name.len()))
            }
            _ => Ok(()),
        }
    }

    /// Damage is reported inside a catalogued point's disks (a point the
    /// catalog does not hold, deleted since the check began, is skipped).
    fn damage_fits(&self, block: &DamagedBlock) -> Result<(), String> {
        let Some(point) = self.catalog.find(block.point) else { return Ok(()) };
        let Some(disk) = point.disks.get(usize::from(block.disk)) else {
            return Err(format!("damage in disk {} of {}, which has {} disks", block.disk, block.point, point.disks.len()));
        };
        let Some(job) = self.backup_job(point.job) else { return Ok(()) };
        limits::indexes_below([block.index], job.block_size.blocks_for(disk.bytes)).map_err(|e| format!("damage in {}: {e}", block.point))
    }
}

/// The largest id a durable point or session may carry: ids start at the
/// clock in nanoseconds since 1970 and count up from there, which stays
/// below 2^63 until the year 2262. A listing above it would lift the
/// manager's counters (`Counters::above`) to where they overflow.
pub const MAX_DURABLE_ID: u64 = 1 << 63;

/// A listed point has ids a manager can have given it, no more disks than
/// a VM can have, each of a size a disk can have.
fn listed(point: &PointHeader) -> Result<(), String> {
    if point.point.0 > MAX_DURABLE_ID || point.session.0 > MAX_DURABLE_ID {
        return Err(format!("{} of session {} has an id above {MAX_DURABLE_ID}", point.point, point.session));
    }
    if point.disks.len() > MAX_DISKS_PER_VM {
        return Err(format!("{} has {} disks, more than the limit of {MAX_DISKS_PER_VM}", point.point, point.disks.len()));
    }
    match point.disks.iter().find(|d| d.bytes > limits::MAX_DISK_BYTES) {
        Some(d) => {
            Err(format!("{} disk {} of {} bytes is larger than the limit of {}", point.point, d.index, d.bytes, limits::MAX_DISK_BYTES))
        }
        None => Ok(()),
    }
}
