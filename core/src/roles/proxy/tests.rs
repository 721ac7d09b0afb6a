//! The proxy against crafted inputs.

use super::*;
use crate::block::{BlockSize, Compression};
use crate::ids::{JobId, SessionId, SnapshotId, VmId};
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
    let mut proxy = Proxy::new();
    proxy.handle(Timestamp::ZERO, Input::Start);
    let spec = backup_spec(HOST, REPOSITORY, u64::MAX);
    proxy.handle(Timestamp::ZERO, Input::Message { from: MANAGER, msg: Message::StartBackupTask(Box::new(spec)) });
    let outputs: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    assert_eq!(proxy.running(), 0);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Send { .. })), "{outputs:?}");
    let closed: Vec<&String> =
        outputs.iter().filter_map(|o| if let Output::Close { peer: MANAGER, reason } = o { Some(reason) } else { None }).collect();
    assert!(matches!(closed.as_slice(), [r] if r.contains("start_backup_task") && r.contains("larger than the limit")), "{outputs:?}");

    // The same task for a real disk starts.
    let spec = backup_spec(HOST, REPOSITORY, 4 << 20);
    proxy.handle(Timestamp::ZERO, Input::Message { from: MANAGER, msg: Message::StartBackupTask(Box::new(spec)) });
    assert_eq!(proxy.running(), 1);
}

/// Issue 13 §2: a task's replies are believed only from the peers it asked:
/// blocks "read" by another host are refused (and change nothing), those
/// of its own host are taken.
#[test]
fn a_reply_from_a_peer_the_task_asked_nothing_is_refused() {
    use crate::hypervisor::ChangedBlocks;
    use bitvec::vec::BitVec;
    const OTHER_HOST: NodeId = NodeId(5);
    let mut proxy = Proxy::new();
    proxy.handle(Timestamp::ZERO, Input::Start);
    let spec = backup_spec(HOST, REPOSITORY, 4 << 20);
    proxy.handle(Timestamp::ZERO, Input::Message { from: MANAGER, msg: Message::StartBackupTask(Box::new(spec)) });
    let _: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    let changed = || {
        let reply = Ok(ChangedBlocks::Known { changed: BitVec::repeat(true, 4), swap: BitVec::repeat(false, 4) });
        Message::ChangedBlocksReply { task: TaskId(7), reply }
    };
    proxy.handle(Timestamp::ZERO, Input::Message { from: OTHER_HOST, msg: changed() });
    let outputs: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    assert!(
        matches!(outputs.as_slice(), [Output::Event(_), Output::Close { peer: OTHER_HOST, reason }] if reason.contains("changed_blocks_reply")),
        "{outputs:?}"
    );
    proxy.handle(Timestamp::ZERO, Input::Message { from: HOST, msg: changed() });
    let outputs: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    // The plan is made: the repository is asked for its progress or the host for blocks.
    assert!(outputs.iter().any(|o| matches!(o, Output::Send { to: HOST, msg: Message::ReadBlocks { .. } })), "{outputs:?}");
}
