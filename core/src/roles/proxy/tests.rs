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
    use crate::hypervisor::ChangedBlocks;
    use bitvec::vec::BitVec;
    const OTHER_HOST: NodeId = NodeId(5);
    let mut proxy = Stepper::start(Proxy::new());
    proxy.message(MANAGER, Message::StartBackupTask(Box::new(backup_spec(HOST, REPOSITORY, 4 << 20))));
    proxy.take_sent();
    let changed = || {
        let reply = Ok(ChangedBlocks::Known { changed: BitVec::repeat(true, 4), swap: BitVec::repeat(false, 4) });
        Message::ChangedBlocksReply { task: TaskId(7), reply }
    };
    proxy.message(OTHER_HOST, changed());
    let refused = proxy.closed.as_slice();
    assert!(matches!(refused, [(OTHER_HOST, r)] if r.contains("changed_blocks_reply")), "{refused:?}");
    assert!(proxy.take_sent().is_empty(), "a refused reply changes nothing");
    proxy.message(HOST, changed());
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
