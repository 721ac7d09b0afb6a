//! Restore-point manifests: a logical full per VM.
//!
//! Every restore point lists, for each disk, the digest of every block
//! (`Digest::ZERO_BLOCK` for zero and swap blocks), as Proxmox Backup
//! Server's fixed index does. An incremental only adds the blocks it did not
//! already have; retention can delete any manifest without breaking the
//! others (forever-forward incremental), and blocks no manifest references
//! are garbage.

use crate::block::{BlockSize, Digest};
use crate::ids::{JobId, RestorePointId, SessionId, VmId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub point: RestorePointId,
    pub job: JobId,
    pub session: SessionId,
    pub vm: VmId,
    /// The snapshot instant: the point holds the disks as they were then.
    pub snapshot_at: Timestamp,
    /// The point this one was built on, if any (for display; every point is
    /// complete on its own).
    pub parent: Option<RestorePointId>,
    pub disks: Vec<DiskManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskManifest {
    pub index: u16,
    pub bytes: u64,
    pub block_size: BlockSize,
    pub digests: Vec<Digest>,
}

impl Manifest {
    /// Every non-zero digest this point references (with repeats).
    pub fn referenced(&self) -> impl Iterator<Item = Digest> + '_ {
        self.disks.iter().flat_map(|d| d.digests.iter().copied()).filter(|d| !d.is_zero_block())
    }
}
