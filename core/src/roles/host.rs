//! The host role: the hypervisor agent. It turns peers' requests
//! (snapshot, changed blocks, read) into hypervisor requests and relays the
//! completions back to whoever asked (disk tasks' data requests through
//! the mapping a direct-mode proxy shares, `super::data_requests`). It keeps no state beyond the requests
//! in flight, so a host restart simply fails them (the asker retries).

use super::RequestIds;
use super::data_requests::DataAsk;
use crate::hypervisor::{HypervisorCompletion, HypervisorOp, HypervisorReply, HypervisorRequest};
use crate::ids::{NodeId, RequestId};
use crate::limits::read_len;
use crate::node::{Input, Node, Outbox, Output};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::OpId;
use std::collections::BTreeMap;

/// Who asked for a hypervisor request, and how to phrase the answer.
#[derive(Debug)]
enum Asker {
    Snapshot {
        peer: NodeId,
        op: OpId,
    },
    Commit {
        peer: NodeId,
        op: OpId,
    },
    /// A disk task's changed blocks, read or write.
    Data {
        peer: NodeId,
        ask: DataAsk,
    },
    CreateVm {
        peer: NodeId,
        op: OpId,
    },
    /// A revert or power change: answered `HostDone`.
    Done {
        peer: NodeId,
        op: OpId,
    },
}

#[derive(Debug, Default)]
pub struct Host {
    ids: RequestIds,
    pending: BTreeMap<RequestId, Asker>,
    out: Outbox,
}

impl Host {
    pub fn new() -> Self {
        Self::default()
    }

    fn ask(&mut self, asker: Asker, op: HypervisorOp) {
        let id = self.ids.next();
        self.pending.insert(id, asker);
        self.out.hypervisor(HypervisorRequest { id, op });
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        if let Err(reason) = check(&msg) {
            return self.out.refuse(from, format!("{}: {reason}", msg.kind()));
        }
        let msg = match DataAsk::from_message(msg) {
            Ok((ask, op)) => return self.ask(Asker::Data { peer: from, ask }, op),
            Err(other) => other,
        };
        match msg {
            Message::CreateSnapshot { op, vm } => self.ask(Asker::Snapshot { peer: from, op }, HypervisorOp::CreateSnapshot { vm }),
            Message::CommitSnapshot { op, snap } => self.ask(Asker::Commit { peer: from, op }, HypervisorOp::CommitSnapshot { snap }),
            Message::CreateVm { op, vm, name, disks } => {
                self.ask(Asker::CreateVm { peer: from, op }, HypervisorOp::CreateVm { vm, name, disks })
            }
            Message::RevertVm { op, snap } => self.ask(Asker::Done { peer: from, op }, HypervisorOp::RevertToSnapshot { snap }),
            Message::SetPower { op, vm, on } => self.ask(Asker::Done { peer: from, op }, HypervisorOp::SetPower { vm, on }),
            Message::Ping { seq } => self.out.send(from, Message::Pong { seq }),
            // The driver measures round trips; nothing to do.
            Message::Pong { .. } => {}
            other => self.out.refuse_unhandled(from, "host", &other),
        }
    }

    fn on_completion(&mut self, done: HypervisorCompletion) {
        let Some(asker) = self.pending.remove(&done.id) else { return };
        let (peer, msg) = match (asker, done.result) {
            (Asker::Snapshot { peer, op }, Ok(HypervisorReply::SnapshotCreated { snap, disks })) => {
                (peer, Message::SnapshotCreated { op, snap, disks })
            }
            (Asker::Commit { peer, op }, Ok(HypervisorReply::SnapshotCommitted)) => (peer, Message::SnapshotCommitted { op }),
            (Asker::CreateVm { peer, op }, Ok(HypervisorReply::VmCreated)) => (peer, Message::VmCreated { op }),
            (Asker::Done { peer, op }, Ok(HypervisorReply::Done)) => (peer, Message::HostDone { op }),
            (
                Asker::Snapshot { peer, op } | Asker::Commit { peer, op } | Asker::CreateVm { peer, op } | Asker::Done { peer, op },
                Ok(other),
            ) => (peer, Message::HostFailed { op, reason: format!("unexpected hypervisor reply: {}", other.kind()) }),
            (
                Asker::Snapshot { peer, op } | Asker::Commit { peer, op } | Asker::CreateVm { peer, op } | Asker::Done { peer, op },
                Err(reason),
            ) => (peer, Message::HostFailed { op, reason }),
            (Asker::Data { peer, ask }, result) => (peer, ask.reply(result)),
        };
        self.out.send(peer, msg);
    }
}

/// A peer's request checked against the limits before the hypervisor is
/// asked: a read asks for at most a frame's worth of blocks
/// ([`read_len`]), whatever the message's count allows.
fn check(msg: &Message) -> Result<(), String> {
    match msg {
        Message::ReadBlocks { blocks, block_size, .. } => read_len(blocks.len() as u64, *block_size),
        _ => Ok(()),
    }
}

impl Node for Host {
    fn handle(&mut self, _now: Timestamp, input: Input) {
        match input {
            Input::Start => self.pending.clear(),
            Input::Message { from, msg } => self.on_message(from, msg),
            Input::Hypervisor(done) => self.on_completion(done),
            Input::Timer(_) | Input::PeerUp(_) | Input::PeerDown(_) | Input::Storage(_) => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockSize;
    use crate::ids::{SnapshotId, TaskId};
    use crate::roles::testing::Stepper;

    const PROXY: NodeId = NodeId(2);

    /// Found by the fuzzer (issue 13 §8): a proxy's `ReadBlocks` of as many
    /// blocks as a message may list made the host ask its hypervisor for
    /// all of them (2^16 blocks of 1 MiB: 64 GiB in one answer). A read of
    /// more than a frame's worth is refused and nothing is read; a batch
    /// of a proxy's size is read.
    #[test]
    fn a_read_of_more_than_a_frame_of_blocks_is_refused() {
        let read = |count: u64| Message::ReadBlocks {
            task: TaskId(1),
            batch: 0,
            snap: SnapshotId(1),
            disk: 0,
            block_size: BlockSize::LOCAL,
            blocks: (0..count).collect(),
        };
        let mut host = Stepper::start(Host::new());
        host.message(PROXY, read(1 << 16));
        assert!(host.node.pending.is_empty(), "the hypervisor is asked nothing");
        assert!(matches!(host.closed.as_slice(), [(PROXY, r)] if r.contains("read_blocks") && r.contains("limit")), "{:?}", host.closed);
        host.message(PROXY, read(8));
        assert_eq!(host.node.pending.len(), 1, "a batch of 8 MiB is read");
    }

    /// Issue 13 §6: a message no host handles is refused with a reason,
    /// not dropped, and answered with nothing.
    #[test]
    fn a_message_for_another_role_is_refused() {
        let mut host = Stepper::start(Host::new());
        host.message(NodeId(2), Message::AbortTasks);
        assert!(
            matches!(host.closed.as_slice(), [(NodeId(2), r)] if r.contains("abort_tasks") && r.contains("a host does not handle it")),
            "{:?}",
            host.closed
        );
        assert!(host.sent.is_empty());
    }
}
