//! What the host role asks of its hypervisor backend, and the answers.
//! The sim answers from its virtual hypervisor, realnet from disk images.

use crate::block::BlockSize;
use crate::ids::{ChangeId, RequestId, SnapshotId, VmId};
use crate::payload::BlockData;
use bitvec::vec::BitVec;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypervisorRequest {
    pub id: RequestId,
    pub op: HypervisorOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HypervisorOp {
    /// Freeze the VM's disks: reads of the snapshot see this instant; guest
    /// writes go on (to a delta) and stay visible to the guest.
    CreateSnapshot { vm: VmId },
    /// Blocks of `block_size` changed since `since` (`None`: every
    /// allocated block), plus the blocks the guest reports as swap.
    ChangedBlocks { snap: SnapshotId, disk: u16, since: Option<ChangeId>, block_size: BlockSize },
    /// Read blocks of the snapshot.
    ReadBlocks { snap: SnapshotId, disk: u16, block_size: BlockSize, blocks: Vec<u64> },
    /// Merge the snapshot's delta back and forget the snapshot.
    CommitSnapshot { snap: SnapshotId },
    /// Register a new VM with empty disks of these sizes (restore target).
    CreateVm { vm: VmId, name: String, disks: Vec<u64> },
    /// Write blocks to a VM's disk (restore, replica sync).
    WriteBlocks { vm: VmId, disk: u16, block_size: BlockSize, blocks: Vec<(u64, BlockData)> },
    /// Return the VM's disks to a live snapshot's content: what a replica
    /// does to drop an unfinished sync (its newest restore point is a
    /// snapshot), or to fail over to an older point. The snapshot stays.
    RevertToSnapshot { snap: SnapshotId },
    /// Power the VM on (its guest starts writing) or off.
    SetPower { vm: VmId, on: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypervisorCompletion {
    pub id: RequestId,
    pub result: Result<HypervisorReply, String>,
}

/// A disk as a snapshot found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDisk {
    pub bytes: u64,
    /// The CBT epoch this snapshot closes: the next incremental asks for
    /// changes since it. `None` when the host has no CBT.
    pub change_id: Option<ChangeId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangedBlocks {
    /// `changed[i]`: block i must be read; `swap[i]`: block i is guest swap
    /// (never read, restored as zeros).
    Known { changed: BitVec, swap: BitVec },
    /// CBT lost or reset: the caller must read everything and compare digests.
    Unavailable { swap: BitVec },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HypervisorReply {
    SnapshotCreated {
        snap: SnapshotId,
        disks: Vec<SnapshotDisk>,
    },
    ChangedBlocks(ChangedBlocks),
    BlocksRead(Vec<(u64, BlockData)>),
    SnapshotCommitted,
    VmCreated,
    BlocksWritten,
    /// A revert or power change is done.
    Done,
}

impl HypervisorReply {
    /// The kind of reply, for messages about a reply of the wrong kind
    /// (never the reply itself: it may hold megabytes of blocks).
    pub fn kind(&self) -> &'static str {
        match self {
            HypervisorReply::SnapshotCreated { .. } => "snapshot created",
            HypervisorReply::ChangedBlocks(_) => "changed blocks",
            HypervisorReply::BlocksRead(_) => "blocks read",
            HypervisorReply::SnapshotCommitted => "snapshot committed",
            HypervisorReply::VmCreated => "VM created",
            HypervisorReply::BlocksWritten => "blocks written",
            HypervisorReply::Done => "done",
        }
    }
}
