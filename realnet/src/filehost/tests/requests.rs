//! Bad requests get clear errors and change nothing: not the images, not
//! the host's state.

use super::*;
use blockferry_core::Digest;
use blockferry_core::payload::SyntheticBlock;

const STRANGER: VmId = VmId(77);

/// Runs `op`, expects an error containing every one of `words`, and checks
/// the datastore (images and state) is as it was.
fn refused(store: &Datastore, host: &FileHost, op: HypervisorOp, words: &[&str]) {
    let before = store.tree();
    let err = host.handle(op.clone()).expect_err("a bad request must fail");
    for word in words {
        assert!(err.contains(word), "{op:?}: {err:?} lacks {word:?}");
    }
    assert_eq!(store.tree(), before, "{op:?} changed the datastore");
}

#[test]
fn requests_about_unknown_vms_snapshots_or_disks_are_refused() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    let blocks = vec![(0, BlockData::Bytes(vec![1; BLOCK]))];
    refused(&store, &host, HypervisorOp::CreateSnapshot { vm: STRANGER }, &["vm77", "not a VM"]);
    refused(&store, &host, HypervisorOp::WriteBlocks { vm: STRANGER, disk: 0, block_size: BS, blocks: blocks.clone() }, &["vm77"]);
    refused(&store, &host, HypervisorOp::SetPower { vm: STRANGER, on: true }, &["vm77"]);
    let gone = SnapshotId(snap.0 + 1_000_000);
    refused(&store, &host, HypervisorOp::ReadBlocks { snap: gone, disk: 0, block_size: BS, blocks: vec![0] }, &["no snapshot"]);
    refused(&store, &host, HypervisorOp::RevertToSnapshot { snap: gone }, &["no snapshot"]);
    refused(&store, &host, HypervisorOp::ReadBlocks { snap, disk: 2, block_size: BS, blocks: vec![0] }, &["no disk 2"]);
    refused(&store, &host, HypervisorOp::ChangedBlocks { snap, disk: 2, since: None, block_size: BS }, &["no disk 2"]);
    refused(&store, &host, HypervisorOp::WriteBlocks { vm: VM, disk: 2, block_size: BS, blocks }, &["no disk 2", FOLDER]);
}

/// A block past the end is an error naming the image, and a write request
/// with one such block writes none of its good ones either.
#[test]
fn blocks_past_the_end_are_refused_naming_the_image() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    refused(
        &store,
        &host,
        HypervisorOp::ReadBlocks { snap, disk: 0, block_size: BS, blocks: vec![0, 6] },
        &["block 6", "past the end", DISK0],
    );
    let blocks = vec![(0, BlockData::Bytes(vec![1; BLOCK])), (3, BlockData::Bytes(vec![1; BLOCK]))];
    refused(&store, &host, HypervisorOp::WriteBlocks { vm: VM, disk: 1, block_size: BS, blocks }, &["block 3", "past the end", DISK1]);
}

/// Data that does not fit its place (a short block where a whole one
/// belongs, a whole one in the short last place, a simulator's descriptor)
/// is refused, and nothing of the request is written.
#[test]
fn blocks_of_the_wrong_size_or_kind_are_refused() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let good = (0, BlockData::Bytes(vec![1; BLOCK]));
    let write = |blocks: Vec<(u64, BlockData)>| HypervisorOp::WriteBlocks { vm: VM, disk: 0, block_size: BS, blocks };
    refused(&store, &host, write(vec![good.clone(), (1, BlockData::Bytes(vec![1; 4096]))]), &["block 1", "4096 bytes", DISK0]);
    refused(&store, &host, write(vec![good.clone(), (5, BlockData::Bytes(vec![1; BLOCK]))]), &["block 5", "holds 1234", DISK0]);
    let synthetic = BlockData::Synthetic(SyntheticBlock { digest: Digest([1; 32]), raw_len: BLOCK as u32, compressibility: 0 });
    refused(&store, &host, write(vec![good, (2, synthetic)]), &["block 2", "synthetic"]);
    let other_size =
        HypervisorOp::WriteBlocks { vm: VM, disk: 0, block_size: BlockSize::LOCAL, blocks: vec![(0, BlockData::Bytes(vec![1; BLOCK]))] };
    refused(&store, &host, other_size, &["block 0", "block size 1048576"]);
}

/// A read asking for more than a request may carry is refused before
/// anything is allocated or read.
#[test]
fn an_oversized_read_is_refused() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    let (snap, _) = snapshot(&host, VM);
    let blocks = vec![0; (crate::filehost::MAX_READ_BYTES / BLOCK as u64 + 1) as usize];
    refused(&store, &host, HypervisorOp::ReadBlocks { snap, disk: 0, block_size: BS, blocks }, &["more than", DISK0]);
}

/// `SetPower` has nothing to switch on a file host: it is recorded and
/// succeeds.
#[test]
fn power_is_recorded() {
    let store = Datastore::new();
    let host = store.open(SnapshotPolicy::IdentityOnly);
    assert_eq!(host.power(VM), None);
    assert_eq!(host.handle(HypervisorOp::SetPower { vm: VM, on: false }), Ok(HypervisorReply::Done));
    assert_eq!(host.power(VM), Some(false));
}
