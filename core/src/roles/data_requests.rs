//! A disk task's data requests of a hypervisor — changed blocks, reads and
//! writes — as messages and as hypervisor ops. One mapping, used by the
//! host role (which carries them out for the proxies that send them) and
//! by a direct-mode proxy (which carries out its reads on the datastore
//! itself, see `proxy::direct`), so both phrase requests and answers the
//! same way and a task cannot tell which one served it.

use crate::hypervisor::{HypervisorOp, HypervisorReply};
use crate::ids::TaskId;
use crate::wire::Message;

/// Which data request a hypervisor op was made for, and so how its answer
/// is phrased back to the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataAsk {
    /// `GetChangedBlocks`: answered `ChangedBlocksReply`.
    Changed { task: TaskId },
    /// `ReadBlocks`: answered `BlocksRead`.
    Read { task: TaskId, batch: u64 },
    /// `WriteBlocks`: answered `BlocksWritten`.
    Write { task: TaskId, batch: u64 },
}

impl DataAsk {
    /// The hypervisor op a data request message asks for; any other
    /// message comes back unchanged.
    pub(crate) fn from_message(msg: Message) -> Result<(DataAsk, HypervisorOp), Message> {
        match msg {
            Message::GetChangedBlocks { task, snap, disk, since, block_size } => {
                Ok((DataAsk::Changed { task }, HypervisorOp::ChangedBlocks { snap, disk, since, block_size }))
            }
            Message::ReadBlocks { task, batch, snap, disk, block_size, blocks } => {
                Ok((DataAsk::Read { task, batch }, HypervisorOp::ReadBlocks { snap, disk, block_size, blocks }))
            }
            Message::WriteBlocks { task, batch, vm, disk, block_size, blocks } => {
                Ok((DataAsk::Write { task, batch }, HypervisorOp::WriteBlocks { vm, disk, block_size, blocks }))
            }
            other => Err(other),
        }
    }

    /// The answer the task expects, from the hypervisor's. A reply of
    /// another kind than asked for is a failure, never a panic.
    pub(crate) fn reply(self, result: Result<HypervisorReply, String>) -> Message {
        let unexpected = |other: HypervisorReply| format!("unexpected hypervisor reply: {}", other.kind());
        match self {
            DataAsk::Changed { task } => {
                let reply = result.and_then(|r| match r {
                    HypervisorReply::ChangedBlocks(c) => Ok(c),
                    other => Err(unexpected(other)),
                });
                Message::ChangedBlocksReply { task, reply }
            }
            DataAsk::Read { task, batch } => {
                let result = result.and_then(|r| match r {
                    HypervisorReply::BlocksRead(blocks) => Ok(blocks),
                    other => Err(unexpected(other)),
                });
                Message::BlocksRead { task, batch, result }
            }
            DataAsk::Write { task, batch } => {
                let result = result.and_then(|r| match r {
                    HypervisorReply::BlocksWritten => Ok(()),
                    other => Err(unexpected(other)),
                });
                Message::BlocksWritten { task, batch, result }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockSize;
    use crate::hypervisor::ChangedBlocks;
    use crate::ids::{SnapshotId, VmId};
    use bitvec::vec::BitVec;

    const TASK: TaskId = TaskId(9);

    #[test]
    fn each_request_maps_to_its_op_and_other_messages_come_back() {
        let read =
            Message::ReadBlocks { task: TASK, batch: 4, snap: SnapshotId(2), disk: 1, block_size: BlockSize::LOCAL, blocks: vec![7] };
        let (ask, op) = DataAsk::from_message(read).expect("a read is a data request");
        assert_eq!(ask, DataAsk::Read { task: TASK, batch: 4 });
        assert_eq!(op, HypervisorOp::ReadBlocks { snap: SnapshotId(2), disk: 1, block_size: BlockSize::LOCAL, blocks: vec![7] });
        let write = Message::WriteBlocks { task: TASK, batch: 5, vm: VmId(3), disk: 0, block_size: BlockSize::LOCAL, blocks: vec![] };
        assert!(matches!(DataAsk::from_message(write), Ok((DataAsk::Write { batch: 5, .. }, HypervisorOp::WriteBlocks { .. }))));
        assert_eq!(DataAsk::from_message(Message::Ping { seq: 1 }), Err(Message::Ping { seq: 1 }));
    }

    #[test]
    fn answers_of_the_wrong_kind_and_failures_become_errors() {
        let changed = ChangedBlocks::Unavailable { swap: BitVec::new() };
        let ok = DataAsk::Changed { task: TASK }.reply(Ok(HypervisorReply::ChangedBlocks(changed.clone())));
        assert_eq!(ok, Message::ChangedBlocksReply { task: TASK, reply: Ok(changed) });
        let wrong = DataAsk::Read { task: TASK, batch: 1 }.reply(Ok(HypervisorReply::Done));
        assert!(matches!(wrong, Message::BlocksRead { batch: 1, result: Err(e), .. } if e.contains("unexpected hypervisor reply")));
        let failed = DataAsk::Write { task: TASK, batch: 2 }.reply(Err("disk gone".into()));
        assert_eq!(failed, Message::BlocksWritten { task: TASK, batch: 2, result: Err("disk gone".into()) });
    }
}
