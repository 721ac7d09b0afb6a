//! Snapshots in both modes: what reads see, what a guest write does to
//! them, commit and revert.

use super::*;
use crate::filehost::IMAGE_CHANGED;
use blockferry_core::ChangeId;
use blockferry_core::hypervisor::ChangedBlocks;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Reads return each image byte for byte, the short last block short, in
/// the order asked; snapshots carry no change ids (no CBT).
#[test]
fn a_snapshot_reads_back_each_image_byte_for_byte() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, disks) = snapshot(&host, VM);
    assert_eq!(
        disks,
        vec![SnapshotDisk { bytes: DISK0_LEN as u64, change_id: None }, SnapshotDisk { bytes: DISK1_LEN as u64, change_id: None }]
    );
    for (disk, (_, bytes)) in (0u16..).zip(contents()) {
        assert_eq!(read_disk(&host, snap, disk, bytes.len() as u64), Ok(bytes), "disk {disk}");
    }
    let last = read(&host, snap, 0, vec![5]).expect("the last block reads");
    assert_eq!(last[0].1.len(), 1234, "the short last block is short");
}

/// No CBT: whatever `since` says, the answer is "unavailable", sized to
/// the disk, so the proxy reads everything and compares digests.
#[test]
fn changed_blocks_are_unavailable_so_the_proxy_compares_digests() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    for since in [None, Some(ChangeId(3))] {
        let reply = host.handle(HypervisorOp::ChangedBlocks { snap, disk: 0, since, block_size: BS });
        assert_eq!(reply, Ok(HypervisorReply::ChangedBlocks(ChangedBlocks::Unavailable { swap: bitvec::vec::BitVec::repeat(false, 6) })));
    }
}

/// Without reflinks a guest write after the snapshot (even right after,
/// within one tick of the kernel's clock, and of the same bytes) fails the
/// read of that image with the advice, naming the image; the other image
/// reads on.
#[test]
fn without_reflinks_a_guest_write_fails_the_read_and_names_the_image() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    let same = fs::read(store.image(DISK0)).expect("image")[..16].to_vec();
    guest_write(&store.image(DISK0), 0, &same);
    let err = read(&host, snap, 0, vec![0]).expect_err("a moved image must not be read");
    assert!(err.contains(IMAGE_CHANGED) && err.contains(DISK0), "{err}");
    assert_eq!(read_disk(&host, snap, 1, DISK1_LEN as u64), Ok(contents()[1].1.clone()));
}

/// An image replaced by another file (same size, renamed over it) is a
/// change too.
#[test]
fn without_reflinks_an_image_renamed_over_fails_the_read() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    let other = store.path().join(FOLDER).join("replacement");
    fs::copy(store.image(DISK1), &other).expect("copy");
    fs::rename(&other, store.image(DISK1)).expect("rename");
    let err = read(&host, snap, 1, vec![0]).expect_err("a replaced image must not be read");
    assert!(err.contains(IMAGE_CHANGED) && err.contains(DISK1), "{err}");
}

/// A guest that never stops writing: the snapshot itself fails with the
/// advice, rather than every read later.
#[test]
fn without_reflinks_an_image_being_written_cannot_be_snapshotted() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let stop = Arc::new(AtomicBool::new(false));
    let guest = {
        let (stop, path) = (Arc::clone(&stop), store.image(DISK1));
        std::thread::spawn(move || {
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                guest_write(&path, (i % 64) * 4096, &[i as u8; 4096]);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let result = host.handle(HypervisorOp::CreateSnapshot { vm: VM });
    stop.store(true, Ordering::Relaxed);
    guest.join().expect("the guest thread ends");
    let err = result.expect_err("a busy image must not be snapshotted");
    assert!(err.contains(IMAGE_CHANGED) && err.contains(DISK1), "{err}");
}

/// Committing forgets the snapshot; committing again succeeds (a lost
/// answer, asked again); an id the host never issued is refused.
#[test]
fn commit_is_idempotent_and_unknown_ids_are_refused() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    for _ in 0..2 {
        assert_eq!(host.handle(HypervisorOp::CommitSnapshot { snap }), Ok(HypervisorReply::SnapshotCommitted));
    }
    let err = read(&host, snap, 0, vec![0]).expect_err("a committed snapshot is gone");
    assert!(err.contains("no snapshot"), "{err}");
    let never = SnapshotId(u64::MAX);
    let err = host.handle(HypervisorOp::CommitSnapshot { snap: never }).expect_err("never issued");
    assert!(err.contains("never issued"), "{err}");
}

/// Without reflinks a revert can only be to a snapshot nothing changed
/// since (it has no copy to go back to): refused otherwise, naming the
/// image, and the image is left as it is.
#[test]
fn without_reflinks_revert_works_only_when_there_is_nothing_to_undo() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    assert_eq!(host.handle(HypervisorOp::RevertToSnapshot { snap }), Ok(HypervisorReply::Done));
    guest_write(&store.image(DISK1), 10, b"guest");
    let before = store.tree();
    let err = host.handle(HypervisorOp::RevertToSnapshot { snap }).expect_err("nothing to revert with");
    assert!(err.contains("cannot revert") && err.contains(DISK1) && err.contains("reflinks"), "{err}");
    assert_eq!(store.tree(), before);
}

/// With reflinks the snapshot keeps its instant while the guest writes,
/// shrinks and grows the images; a revert brings the instant back and
/// keeps the snapshot; a commit deletes its copies.
#[test]
fn reflink_snapshots_keep_their_instant_and_revert_to_it() {
    let store = Datastore::for_reflinks();
    let Some(host) = store.open_reflinks("reflink_snapshots_keep_their_instant_and_revert_to_it") else { return };
    let (snap, _) = snapshot(&host, VM);
    let copies = store.path().join(".blockferry/snapshots").join(snap.0.to_string());
    assert!(copies.join(DISK0).is_file() && copies.join(DISK1).is_file(), "copies under {}", copies.display());
    guest_write(&store.image(DISK0), (BLOCK + 5) as u64, &random(3 * BLOCK, 99));
    OpenOptions::new().write(true).open(store.image(DISK1)).and_then(|f| f.set_len(BLOCK as u64)).expect("guest shrinks disk 1");
    for (disk, (_, bytes)) in (0u16..).zip(contents()) {
        assert_eq!(read_disk(&host, snap, disk, bytes.len() as u64), Ok(bytes), "disk {disk} as frozen");
    }
    assert_eq!(host.handle(HypervisorOp::RevertToSnapshot { snap }), Ok(HypervisorReply::Done));
    for (name, bytes) in contents() {
        assert_eq!(fs::read(store.image(name)).expect("image"), bytes, "{name} reverted");
    }
    guest_write(&store.image(DISK1), 0, b"after the revert");
    assert_eq!(read_disk(&host, snap, 1, DISK1_LEN as u64), Ok(contents()[1].1.clone()), "the snapshot stays");
    assert_eq!(host.handle(HypervisorOp::CommitSnapshot { snap }), Ok(HypervisorReply::SnapshotCommitted));
    assert!(!copies.exists(), "commit deletes the copies");
}
