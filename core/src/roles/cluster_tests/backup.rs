//! Backups and restores when nothing goes wrong.

use super::*;
use crate::block::Digest;
use std::collections::BTreeSet;

/// A full backup of a two-disk VM restores to a new VM with exactly the
/// bytes of the snapshot it was read from, though the guest wrote on
/// after the snapshot; and every distinct non-zero block crossed to the
/// repository once with its payload, zero blocks never.
#[test]
fn a_two_disk_vm_restores_to_its_snapshot_byte_for_byte() {
    let mut c = cluster();
    assert!(c.run_until(EVERY, |c| c.events().any(|e| matches!(e, Event::SnapshotTaken { .. }))));
    for disk in 0..DISKS.len() {
        c.hypervisor(HOST).write(VM, disk, BLOCK / 2, &fresh_block(disk as u64 + 100));
    }
    let (point, snap) = backup(&mut c);
    assert_eq!(c.hypervisor(HOST).live_snapshots(), [], "the snapshot was removed");
    for disk in 0..DISKS.len() {
        let hv = c.hypervisor(HOST);
        assert_ne!(hv.disk(VM, disk), hv.snapshot_disk(snap, disk), "the guest wrote to disk {disk} after the snapshot");
    }
    assert_restores(&mut c, point, snap, VmId(7));

    let put = blocks_put(&c, 0);
    for (disk, put) in put.iter().enumerate() {
        let frozen = c.hypervisor(HOST).snapshot_disk(snap, disk).expect("frozen disk").to_vec();
        let non_zero: Vec<u64> = (0..).zip(frozen.chunks(BLOCK)).filter(|(_, b)| b.iter().any(|&x| x != 0)).map(|(i, _)| i).collect();
        let distinct: BTreeSet<Digest> = frozen.chunks(BLOCK).filter(|b| b.iter().any(|&x| x != 0)).map(Digest::of).collect();
        assert_eq!(put.iter().map(|(i, _)| *i).collect::<Vec<_>>(), non_zero, "disk {disk}: the blocks written");
        assert_eq!(put.iter().filter(|(_, payload)| *payload).count(), distinct.len(), "disk {disk}: payloads sent");
    }
}

/// An incremental reads only the blocks the host's changed block tracking
/// reports, sends only what changed (a block the repository holds
/// already as a reference, without its payload), and both points restore
/// to their own snapshots.
#[test]
fn an_incremental_reads_and_sends_only_the_blocks_that_changed() {
    let mut c = cluster();
    let (first, first_snap) = backup(&mut c);
    let hv = c.hypervisor(HOST);
    let disk0 = hv.disk(VM, 0).expect("disk 0");
    let (flipped, copy) = (!disk0[2 * BLOCK + 100], disk0[7 * BLOCK..8 * BLOCK].to_vec());
    hv.write(VM, 0, 2 * BLOCK + 100, &[flipped]);
    hv.write(VM, 0, 13 * BLOCK, &fresh_block(13));
    hv.write(VM, 1, BLOCK, &copy);
    let mark = c.crossed.len();
    let (second, second_snap) = backup(&mut c);
    assert_eq!(blocks_read(&c, mark), [vec![2, 13], vec![1]]);
    assert_eq!(blocks_put(&c, mark), [vec![(2, true), (13, true)], vec![(1, false)]]);
    assert_restores(&mut c, second, second_snap, VmId(7));
    assert_restores(&mut c, first, first_snap, VmId(8));
}
