//! The proxy against crafted inputs.

use super::*;
use crate::block::{BlockSize, Compression};
use crate::ids::{JobId, SessionId, SnapshotId, VmId};
use crate::roles::testing::Stepper;
use crate::wire::message::{BackupTask, DiskTarget, ReadMode};

const MANAGER: NodeId = NodeId(0);
const HOST: NodeId = NodeId(1);
const REPOSITORY: NodeId = NodeId(4);

/// A full backup of a disk of `disk_bytes` in 1 MiB blocks: task 7 of
/// session 1, VM 0's disk 0 on `host`, to `repository`.
pub(super) fn backup_spec(host: NodeId, repository: NodeId, disk_bytes: u64) -> BackupTask {
    BackupTask {
        task: TaskId(7),
        job: JobId(0),
        target: DiskTarget { session: SessionId(1), vm: VmId(0), disk: 0 },
        host,
        snap: SnapshotId(3),
        disk_bytes,
        repository,
        base: None,
        mode: ReadMode::Full,
        block_size: BlockSize::LOCAL,
        compression: Compression::Optimal,
        resume: false,
        reread: Vec::new(),
        verify_since: None,
        rate: None,
    }
}

/// Issue 13 §1: a task for a disk larger than any disk (its bitmaps would
/// be sized from it) is refused: nothing starts, nothing is asked of the
/// host, and the connection to the sender is closed with the reason.
#[test]
fn a_task_for_an_impossible_disk_is_refused_and_starts_nothing() {
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, u64::MAX))));
    assert_eq!(proxy.node.running(), 0);
    assert!(proxy.sent.is_empty(), "{:?}", proxy.sent);
    let refused = proxy.closed.as_slice();
    assert!(matches!(refused, [(MANAGER, r)] if r.contains("start_backup_task") && r.contains("larger than the limit")), "{refused:?}");

    // The same task for a real disk starts.
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, 4 << 20))));
    assert_eq!(proxy.node.running(), 1);
}

/// Issue 13 §2: a task's replies are believed only from the peers it asked:
/// blocks "read" by another host are refused (and change nothing), those
/// of its own host are taken.
#[test]
fn a_reply_from_a_peer_the_task_asked_nothing_is_refused() {
    const OTHER_HOST: NodeId = NodeId(5);
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, 4 << 20))));
    proxy.take_sent();
    proxy.message(OTHER_HOST, all_changed(4));
    let refused = proxy.closed.as_slice();
    assert!(matches!(refused, [(OTHER_HOST, r)] if r.contains("changed_blocks_reply")), "{refused:?}");
    assert!(proxy.take_sent().is_empty(), "a refused reply changes nothing");
    proxy.message(HOST, all_changed(4));
    // The plan is made: the host is asked for blocks.
    let sent = proxy.take_sent();
    assert!(sent.iter().any(|(to, msg)| *to == HOST && matches!(msg, Message::ReadBlocks { .. })), "{sent:?}");
}

/// Issue 13 §6: a reply of a kind the task never takes is refused, even
/// from a peer the task depends on (the repository "acknowledging" replica
/// blocks to a backup), and a message no proxy handles is refused too,
/// instead of being dropped without a word.
#[test]
fn a_reply_of_the_wrong_kind_and_a_message_for_another_role_are_refused() {
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, 4 << 20))));
    proxy.take_sent();
    proxy.message(REPOSITORY, Message::ReplicaAck { task: TaskId(7), batch: 0, result: Ok(()) });
    assert!(
        matches!(proxy.closed.as_slice(), [(REPOSITORY, r)] if r.contains("replica_ack") && r.contains("never takes")),
        "{:?}",
        proxy.closed
    );
    assert!(proxy.take_sent().is_empty());
    assert_eq!(proxy.node.running(), 1, "the task goes on");

    proxy.message(
        MANAGER,
        Message::CommitPoint {
            op: 1,
            header: crate::manifest::PointHeader {
                point: crate::ids::RestorePointId(1),
                job: JobId(0),
                session: SessionId(1),
                vm: VmId(0),
                snapshot_at: crate::time::Timestamp::ZERO,
                snapshot: SnapshotId(3),
                parent: None,
                disks: Vec::new(),
            },
        },
    );
    assert!(
        matches!(proxy.closed.last(), Some((MANAGER, r)) if r.contains("commit_point") && r.contains("a proxy does not handle it")),
        "{:?}",
        proxy.closed
    );
}

/// Task 7's host says all of the disk's `blocks` blocks changed.
fn all_changed(blocks: usize) -> Message {
    use crate::hypervisor::ChangedBlocks;
    use bitvec::vec::BitVec;
    let reply = Ok(ChangedBlocks::Known { changed: BitVec::repeat(true, blocks), swap: BitVec::repeat(false, blocks) });
    Message::ChangedBlocksReply { task: TaskId(7), reply }
}

/// Found by the fuzzer (issue 13 §8): a block the host "read" as a
/// simulator's descriptor of zero bytes (a peer of a simulated deployment
/// may send one) made the proxy panic modelling its compressed size; it is
/// encoded as an empty block and the task goes on.
#[test]
fn an_empty_synthetic_block_from_the_host_is_no_panic() {
    use crate::block::Digest;
    use crate::payload::{BlockData, SyntheticBlock};
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, 4 << 20))));
    proxy.message(HOST, all_changed(4));
    let sent = proxy.take_sent();
    let Some((batch, blocks)) = sent.iter().find_map(|(_, msg)| match msg {
        Message::ReadBlocks { batch, blocks, .. } => Some((*batch, blocks.clone())),
        _ => None,
    }) else {
        panic!("the host is asked for blocks: {sent:?}")
    };
    let empty = BlockData::Synthetic(SyntheticBlock { digest: Digest([7; 32]), raw_len: 0, compressibility: 50 });
    let read = blocks.iter().map(|&index| (index, empty.clone())).collect();
    proxy.message(HOST, Message::BlocksRead { task: TaskId(7), batch, result: Ok(read) });
    // The batch is encoded: the repository is asked which digests it has.
    let sent = proxy.take_sent();
    assert!(sent.iter().any(|(to, msg)| *to == REPOSITORY && matches!(msg, Message::HaveDigests { .. })), "{sent:?}");
}

/// Found by the fuzzer (issue 13 §8): the receiving end of a replica sync
/// passed a sender's `HashBlocks` of any length on to its host as one
/// read (which the host now refuses, closing the connection). A request
/// to hash more than a frame's worth of blocks fails the task instead; the
/// host is asked nothing.
#[test]
fn a_request_to_hash_more_than_a_frame_of_blocks_fails_the_replica_task() {
    use crate::wire::message::{MetadataReport, ReplicaSink};
    const SENDER: NodeId = NodeId(6);
    let sink = ReplicaSink {
        task: TaskId(9),
        proxy: NodeId(7),
        host: HOST,
        vm: VmId(0),
        disk: 0,
        disk_bytes: 1 << 30,
        block_size: BlockSize::LOCAL,
        hash_snap: Some(SnapshotId(3)),
        report: MetadataReport { repository: REPOSITORY, point: crate::ids::RestorePointId(1), base: None, initial: None },
    };
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(SENDER, Message::OpenReplica(Box::new(sink)));
    proxy.message(SENDER, Message::HashBlocks { task: TaskId(9), batch: 1, blocks: (0..1024).collect() });
    let sent = proxy.take_sent();
    assert!(!sent.iter().any(|(to, _)| *to == HOST), "{sent:?}");
    assert!(matches!(sent.as_slice(), [(SENDER, Message::ReplicaFinished { result: Err(e), .. })] if e.contains("limit")), "{sent:?}");
}

/// Noticed by the fuzzer: a task id a manager never hands out would share
/// its timer ids with the proxy's own (report, orphans, pacing). A task
/// whose id is that large is refused and starts nothing.
#[test]
fn a_task_id_beyond_any_a_manager_hands_out_is_refused() {
    let mut proxy = Stepper::start(Proxy::new());
    for task in [u64::MAX, 1 << 63, validate::MAX_TASK_ID + 1] {
        let spec = BackupTask { task: TaskId(task), ..backup_spec(HOST, REPOSITORY, 4 << 20) };
        proxy.message(MANAGER, Message::StartBackupTask(Box::new(spec)));
        assert_eq!(proxy.node.running(), 0, "task {task}");
        assert!(matches!(proxy.closed.last(), Some((MANAGER, r)) if r.contains("beyond any a manager hands out")), "{:?}", proxy.closed);
    }
    let spec = BackupTask { task: TaskId(validate::MAX_TASK_ID), ..backup_spec(HOST, REPOSITORY, 4 << 20) };
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(spec)));
    assert_eq!(proxy.node.running(), 1);
}

/// Found by the swarm (seed 696): a digest comparison read the whole disk
/// again after every suspension, because only blocks the repository
/// stored count as progress there; over a link that breaks often it never
/// finished. Blocks found equal to the base are remembered by the task:
/// after a break and a resync it reads none of them again.
#[test]
fn a_resumed_digest_comparison_does_not_read_unchanged_blocks_again() {
    use crate::hypervisor::ChangedBlocks;
    use crate::ids::RestorePointId;
    use crate::payload::{BlockData, encode};
    use bitvec::vec::BitVec;
    let spec = BackupTask { base: Some(RestorePointId(1)), mode: ReadMode::DigestCompare, ..backup_spec(HOST, REPOSITORY, 4 << 20) };
    let block = |i: u64| BlockData::Bytes(vec![i as u8 + 1; 1 << 20]);
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(spec)));
    let reply = Ok(ChangedBlocks::Known { changed: BitVec::repeat(true, 4), swap: BitVec::repeat(false, 4) });
    proxy.message(HOST, Message::ChangedBlocksReply { task: TaskId(7), reply });
    let reads = |sent: &[(NodeId, Message)]| -> Vec<(u64, Vec<u64>)> {
        sent.iter()
            .filter_map(|(_, m)| if let Message::ReadBlocks { batch, blocks, .. } = m { Some((*batch, blocks.clone())) } else { None })
            .collect()
    };
    let sent = proxy.take_sent();
    let [(batch, blocks)] = reads(&sent).try_into().expect("one batch of the four blocks");
    assert_eq!(blocks, [0, 1, 2, 3]);
    // Blocks 0-2 are as in the base, block 3 differs.
    let base: Vec<_> = (0..4).map(|i| encode(&block(if i == 3 { 9 } else { i }), Compression::Optimal).digest()).collect();
    proxy.message(REPOSITORY, Message::Digests { task: TaskId(7), batch, result: Ok(base) });
    proxy.message(HOST, Message::BlocksRead { task: TaskId(7), batch, result: Ok((0..4).map(|i| (i, block(i))).collect()) });
    // The repository goes away before it answers about block 3.
    proxy.feed(Input::PeerDown(REPOSITORY));
    proxy.feed(Input::PeerUp(REPOSITORY));
    proxy.take_sent();
    proxy.message(REPOSITORY, Message::Progress { task: TaskId(7), done: BitVec::new() });
    let again = reads(&proxy.take_sent());
    assert_eq!(again.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<_>>(), [3], "only the changed block is read again: {again:?}");
}
