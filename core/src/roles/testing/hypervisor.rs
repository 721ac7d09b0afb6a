//! A host's hypervisor in memory: VMs whose disks are plain bytes, so a
//! test can compare what a restore wrote with what a snapshot froze.
//!
//! It keeps the promises of [`HypervisorOp`] and no more: a snapshot
//! freezes the disks while guest writes go on; changed block tracking
//! reports, per job block, whether any of its bytes were written between
//! two snapshots of the VM (every allocated block without a base); reads
//! see only a live snapshot; creating a VM twice as the same empty VM is
//! answered as done (the first answer may have been lost), anything else
//! that exists already is refused; a request with a block out of range
//! changes nothing. Every request completes at once.

use crate::block::BlockSize;
use crate::hypervisor::{ChangedBlocks, HypervisorOp, HypervisorReply, SnapshotDisk};
use crate::ids::{ChangeId, SnapshotId, VmId};
use crate::payload::BlockData;
use bitvec::vec::BitVec;
use std::collections::BTreeMap;
use std::ops::Range;

/// Changed block tracking's grain: the smallest job block.
const GRAIN: usize = BlockSize::MIN as usize;

#[derive(Debug, Clone)]
struct Disk {
    bytes: Vec<u8>,
    /// Per grain, the CBT epoch of its last write (0: never written).
    written: Vec<u64>,
}

impl Disk {
    fn new(bytes: Vec<u8>, epoch: u64) -> Disk {
        let written = bytes.chunks(GRAIN).map(|g| if g.iter().any(|&b| b != 0) { epoch } else { 0 }).collect();
        Disk { bytes, written }
    }

    fn write(&mut self, offset: usize, data: &[u8], epoch: u64) {
        let end = offset + data.len();
        self.bytes[offset..end].copy_from_slice(data);
        for grain in offset / GRAIN..end.div_ceil(GRAIN) {
            self.written[grain] = epoch;
        }
    }
}

#[derive(Debug)]
struct Vm {
    name: String,
    disks: Vec<Disk>,
    powered: bool,
}

#[derive(Debug)]
struct Snapshot {
    vm: VmId,
    /// The disks as frozen, kept after the commit for tests to compare.
    disks: Vec<Disk>,
    /// The CBT epoch this snapshot closed.
    closes: u64,
    committed: bool,
}

#[derive(Debug)]
pub(crate) struct MemHypervisor {
    vms: BTreeMap<VmId, Vm>,
    snapshots: BTreeMap<SnapshotId, Snapshot>,
    /// The CBT epoch guest writes are stamped with now; a snapshot closes it.
    epoch: u64,
    next_snapshot: u64,
}

impl Default for MemHypervisor {
    fn default() -> Self {
        MemHypervisor { vms: BTreeMap::new(), snapshots: BTreeMap::new(), epoch: 1, next_snapshot: 1 }
    }
}

impl MemHypervisor {
    /// Registers a VM whose disks hold `disks` (its non-zero grains count
    /// as written, so a first backup reads them).
    pub fn add_vm(&mut self, vm: VmId, name: &str, disks: Vec<Vec<u8>>) {
        let disks = disks.into_iter().map(|bytes| Disk::new(bytes, self.epoch)).collect();
        self.vms.insert(vm, Vm { name: name.into(), disks, powered: true });
    }

    /// A guest write to a VM's disk.
    pub fn write(&mut self, vm: VmId, disk: usize, offset: usize, data: &[u8]) {
        let disk = self.vms.get_mut(&vm).and_then(|v| v.disks.get_mut(disk)).expect("the test writes to a disk it made");
        disk.write(offset, data, self.epoch);
    }

    /// A VM's disk as the guest sees it now.
    pub fn disk(&self, vm: VmId, disk: usize) -> Option<&[u8]> {
        Some(&self.vms.get(&vm)?.disks.get(disk)?.bytes)
    }

    /// A disk as the snapshot froze it (committed or not).
    pub fn snapshot_disk(&self, snap: SnapshotId, disk: usize) -> Option<&[u8]> {
        Some(&self.snapshots.get(&snap)?.disks.get(disk)?.bytes)
    }

    /// Snapshots not committed yet.
    pub fn live_snapshots(&self) -> Vec<SnapshotId> {
        self.snapshots.iter().filter(|(_, s)| !s.committed).map(|(id, _)| *id).collect()
    }

    /// Carries out one request.
    pub fn serve(&mut self, op: HypervisorOp) -> Result<HypervisorReply, String> {
        match op {
            HypervisorOp::CreateSnapshot { vm } => self.create_snapshot(vm),
            HypervisorOp::ChangedBlocks { snap, disk, since, block_size } => {
                self.changed_blocks(snap, disk, since, block_size).map(HypervisorReply::ChangedBlocks)
            }
            HypervisorOp::ReadBlocks { snap, disk, block_size, blocks } => {
                let disk = &self.live_snapshot(snap)?.disks.get(usize::from(disk)).ok_or(format!("{snap} has no disk {disk}"))?.bytes;
                let read = |b: u64| Ok((b, BlockData::Bytes(disk[block_range(disk.len(), block_size, b)?].to_vec())));
                blocks.into_iter().map(read).collect::<Result<_, String>>().map(HypervisorReply::BlocksRead)
            }
            HypervisorOp::CommitSnapshot { snap } => {
                // Idempotent: the answer to a first commit may have been lost.
                self.snapshots.get_mut(&snap).ok_or(format!("no snapshot {snap}"))?.committed = true;
                Ok(HypervisorReply::SnapshotCommitted)
            }
            HypervisorOp::CreateVm { vm, name, disks } => self.create_vm(vm, name, disks),
            HypervisorOp::WriteBlocks { vm, disk, block_size, blocks } => self.write_blocks(vm, disk, block_size, blocks),
            HypervisorOp::RevertToSnapshot { snap } => {
                let frozen = self.live_snapshot(snap)?;
                let (vm, frozen) = (frozen.vm, frozen.disks.clone());
                let epoch = self.epoch;
                let disks = &mut self.vms.get_mut(&vm).ok_or(format!("no {vm}"))?.disks;
                for (disk, old) in disks.iter_mut().zip(frozen) {
                    // Written back grain by grain, so CBT sees the revert.
                    for (grain, old) in old.bytes.chunks(GRAIN).enumerate() {
                        let at = grain * GRAIN;
                        if disk.bytes[at..at + old.len()] != *old {
                            disk.write(at, old, epoch);
                        }
                    }
                }
                Ok(HypervisorReply::Done)
            }
            HypervisorOp::SetPower { vm, on } => {
                self.vms.get_mut(&vm).ok_or(format!("no {vm}"))?.powered = on;
                Ok(HypervisorReply::Done)
            }
        }
    }

    fn create_snapshot(&mut self, vm: VmId) -> Result<HypervisorReply, String> {
        let disks = self.vms.get(&vm).ok_or(format!("no {vm}"))?.disks.clone();
        let snap = SnapshotId(self.next_snapshot);
        self.next_snapshot += 1;
        let closes = self.epoch;
        self.epoch += 1;
        let reply = disks.iter().map(|d| SnapshotDisk { bytes: d.bytes.len() as u64, change_id: Some(ChangeId(closes)) }).collect();
        self.snapshots.insert(snap, Snapshot { vm, disks, closes, committed: false });
        Ok(HypervisorReply::SnapshotCreated { snap, disks: reply })
    }

    fn live_snapshot(&self, snap: SnapshotId) -> Result<&Snapshot, String> {
        match self.snapshots.get(&snap) {
            Some(s) if !s.committed => Ok(s),
            Some(_) => Err(format!("{snap} was committed")),
            None => Err(format!("no snapshot {snap}")),
        }
    }

    /// Blocks with a grain written after `since` (a change id an earlier
    /// snapshot of the VM closed), up to the snapshot; every block with a
    /// written grain without one. A change id of no earlier snapshot of
    /// the VM is answered "unavailable".
    fn changed_blocks(&self, snap: SnapshotId, disk: u16, since: Option<ChangeId>, block_size: BlockSize) -> Result<ChangedBlocks, String> {
        let s = self.live_snapshot(snap)?;
        let frozen = s.disks.get(usize::from(disk)).ok_or(format!("{snap} has no disk {disk}"))?;
        let count = block_size.blocks_for(frozen.bytes.len() as u64) as usize;
        let swap = BitVec::repeat(false, count);
        let after = match since {
            None => 0,
            Some(ChangeId(c)) if c < s.closes && self.snapshots.values().any(|p| p.vm == s.vm && p.closes == c) => c,
            Some(_) => return Ok(ChangedBlocks::Unavailable { swap }),
        };
        let per_block = block_size.bytes() as usize / GRAIN;
        let changed = (0..count).map(|b| frozen.written.iter().skip(b * per_block).take(per_block).any(|&e| e > after)).collect();
        Ok(ChangedBlocks::Known { changed, swap })
    }

    fn create_vm(&mut self, vm: VmId, name: String, disks: Vec<u64>) -> Result<HypervisorReply, String> {
        if let Some(existing) = self.vms.get(&vm) {
            let same = existing.name == name && existing.disks.iter().map(|d| d.bytes.len() as u64).eq(disks.iter().copied());
            if same && existing.disks.iter().all(|d| d.written.iter().all(|&e| e == 0)) {
                return Ok(HypervisorReply::VmCreated);
            }
            return Err(format!("{vm} exists already"));
        }
        let disks = disks.iter().map(|&bytes| usize::try_from(bytes).map(|n| Disk::new(vec![0; n], self.epoch)));
        let disks = disks.collect::<Result<_, _>>().map_err(|e| e.to_string())?;
        self.vms.insert(vm, Vm { name, disks, powered: false });
        Ok(HypervisorReply::VmCreated)
    }

    fn write_blocks(
        &mut self,
        vm: VmId,
        disk: u16,
        block_size: BlockSize,
        blocks: Vec<(u64, BlockData)>,
    ) -> Result<HypervisorReply, String> {
        let epoch = self.epoch;
        let target = self.vms.get_mut(&vm).and_then(|v| v.disks.get_mut(usize::from(disk))).ok_or(format!("{vm} has no disk {disk}"))?;
        // Every block checked before any is written: a bad request changes nothing.
        let mut writes = Vec::with_capacity(blocks.len());
        for (index, data) in blocks {
            let range = block_range(target.bytes.len(), block_size, index)?;
            match data {
                BlockData::Bytes(bytes) if bytes.len() == range.len() => writes.push((range.start, bytes)),
                BlockData::Bytes(bytes) => return Err(format!("block {index} is {} bytes, its place {}", bytes.len(), range.len())),
                BlockData::Synthetic(_) => return Err(format!("block {index} is synthetic: this hypervisor keeps bytes")),
            }
        }
        for (offset, bytes) in writes {
            target.write(offset, &bytes, epoch);
        }
        Ok(HypervisorReply::BlocksWritten)
    }
}

/// The bytes of block `index` of a disk of `len` bytes (the last block may
/// be short).
fn block_range(len: usize, block_size: BlockSize, index: u64) -> Result<Range<usize>, String> {
    let size = block_size.bytes() as usize;
    let start = usize::try_from(index).ok().and_then(|i| i.checked_mul(size)).filter(|&s| s < len);
    let start = start.ok_or(format!("block {index} is beyond a disk of {len} bytes"))?;
    Ok(start..(start + size).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs() -> BlockSize {
        BlockSize::new(8192).expect("a valid block size")
    }

    fn changed(hv: &MemHypervisor, snap: SnapshotId, since: Option<ChangeId>) -> Vec<usize> {
        match hv.changed_blocks(snap, 0, since, bs()) {
            Ok(ChangedBlocks::Known { changed, .. }) => changed.iter_ones().collect(),
            other => panic!("{other:?}"),
        }
    }

    fn snapshot(hv: &mut MemHypervisor) -> (SnapshotId, ChangeId) {
        match hv.serve(HypervisorOp::CreateSnapshot { vm: VmId(0) }) {
            Ok(HypervisorReply::SnapshotCreated { snap, disks }) => (snap, disks[0].change_id.expect("CBT")),
            other => panic!("{other:?}"),
        }
    }

    /// CBT reports what was written between two snapshots, however often
    /// a grain was written, and a snapshot keeps its content while the
    /// guest writes on.
    #[test]
    fn changed_blocks_are_those_written_between_snapshots() {
        let mut hv = MemHypervisor::default();
        let mut disk = vec![0; 4 * 8192];
        disk[8192] = 1;
        hv.add_vm(VmId(0), "vm", vec![disk]);
        let (first, since) = snapshot(&mut hv);
        assert_eq!(changed(&hv, first, None), [1], "only block 1 is allocated");
        hv.write(VmId(0), 0, 3 * 8192 + 5, &[7]);
        let (second, _) = snapshot(&mut hv);
        hv.write(VmId(0), 0, 0, &[9]);
        assert_eq!(changed(&hv, second, Some(since)), [3], "not block 0: written after the snapshot");
        assert_eq!(hv.snapshot_disk(first, 0).map(|d| d[3 * 8192 + 5]), Some(0));
        assert_eq!(hv.snapshot_disk(second, 0).map(|d| d[3 * 8192 + 5]), Some(7));
        let unknown = hv.changed_blocks(second, 0, Some(ChangeId(99)), bs());
        assert!(matches!(unknown, Ok(ChangedBlocks::Unavailable { .. })), "{unknown:?}");
    }

    /// A revert gives the disk the snapshot's bytes back, and changed block
    /// tracking sees the blocks it wrote back as changed.
    #[test]
    fn a_revert_restores_the_snapshot_and_counts_as_a_change() {
        let mut hv = MemHypervisor::default();
        hv.add_vm(VmId(0), "vm", vec![vec![1; 4 * 8192]]);
        let (first, since) = snapshot(&mut hv);
        hv.write(VmId(0), 0, 2 * 8192, &[5; 8192]);
        assert!(matches!(hv.serve(HypervisorOp::RevertToSnapshot { snap: first }), Ok(HypervisorReply::Done)));
        assert_eq!(hv.disk(VmId(0), 0), hv.snapshot_disk(first, 0));
        let (second, _) = snapshot(&mut hv);
        assert_eq!(changed(&hv, second, Some(since)), [2]);
        hv.serve(HypervisorOp::CommitSnapshot { snap: first }).expect("committed");
        assert!(hv.serve(HypervisorOp::RevertToSnapshot { snap: first }).is_err(), "a committed snapshot is gone");
    }

    /// A write with one bad block writes nothing.
    #[test]
    fn a_write_with_a_block_out_of_range_changes_nothing() {
        let mut hv = MemHypervisor::default();
        hv.serve(HypervisorOp::CreateVm { vm: VmId(1), name: "new".into(), disks: vec![2 * 8192] }).expect("created");
        let blocks = vec![(0, BlockData::Bytes(vec![1; 8192])), (2, BlockData::Bytes(vec![1; 8192]))];
        let write = HypervisorOp::WriteBlocks { vm: VmId(1), disk: 0, block_size: bs(), blocks };
        assert!(hv.serve(write).is_err());
        assert!(hv.disk(VmId(1), 0).is_some_and(|d| d.iter().all(|&b| b == 0)));
    }
}
