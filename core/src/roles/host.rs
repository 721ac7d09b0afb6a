//! The host role: the hypervisor agent. It turns peers' requests
//! (snapshot, changed blocks, read) into hypervisor requests and relays the
//! completions back to whoever asked. It keeps no state beyond the requests
//! in flight, so a host restart simply fails them (the asker retries).

use super::RequestIds;
use crate::hypervisor::{HypervisorCompletion, HypervisorOp, HypervisorReply, HypervisorRequest};
use crate::ids::TaskId;
use crate::ids::{NodeId, RequestId};
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
    Changed {
        peer: NodeId,
        task: TaskId,
    },
    Read {
        peer: NodeId,
        task: TaskId,
        batch: u64,
    },
    CreateVm {
        peer: NodeId,
        op: OpId,
    },
    Write {
        peer: NodeId,
        task: TaskId,
        batch: u64,
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
        match msg {
            Message::CreateSnapshot { op, vm } => self.ask(Asker::Snapshot { peer: from, op }, HypervisorOp::CreateSnapshot { vm }),
            Message::CommitSnapshot { op, snap } => self.ask(Asker::Commit { peer: from, op }, HypervisorOp::CommitSnapshot { snap }),
            Message::GetChangedBlocks { task, snap, disk, since, block_size } => {
                self.ask(Asker::Changed { peer: from, task }, HypervisorOp::ChangedBlocks { snap, disk, since, block_size })
            }
            Message::ReadBlocks { task, batch, snap, disk, block_size, blocks } => {
                self.ask(Asker::Read { peer: from, task, batch }, HypervisorOp::ReadBlocks { snap, disk, block_size, blocks })
            }
            Message::CreateVm { op, vm, name, disks } => {
                self.ask(Asker::CreateVm { peer: from, op }, HypervisorOp::CreateVm { vm, name, disks })
            }
            Message::WriteBlocks { task, batch, vm, disk, block_size, blocks } => {
                self.ask(Asker::Write { peer: from, task, batch }, HypervisorOp::WriteBlocks { vm, disk, block_size, blocks })
            }
            Message::RevertVm { op, snap } => self.ask(Asker::Done { peer: from, op }, HypervisorOp::RevertToSnapshot { snap }),
            Message::SetPower { op, vm, on } => self.ask(Asker::Done { peer: from, op }, HypervisorOp::SetPower { vm, on }),
            Message::Ping { seq } => self.out.send(from, Message::Pong { seq }),
            _ => {}
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
            ) => (peer, Message::HostFailed { op, reason: format!("unexpected hypervisor reply {other:?}") }),
            (
                Asker::Snapshot { peer, op } | Asker::Commit { peer, op } | Asker::CreateVm { peer, op } | Asker::Done { peer, op },
                Err(reason),
            ) => (peer, Message::HostFailed { op, reason }),
            (Asker::Write { peer, task, batch }, result) => {
                let result = match result {
                    Ok(HypervisorReply::BlocksWritten) => Ok(()),
                    Ok(other) => Err(format!("unexpected hypervisor reply {other:?}")),
                    Err(e) => Err(e),
                };
                (peer, Message::BlocksWritten { task, batch, result })
            }
            (Asker::Changed { peer, task }, result) => {
                let reply = match result {
                    Ok(HypervisorReply::ChangedBlocks(c)) => Ok(c),
                    Ok(other) => Err(format!("unexpected hypervisor reply {other:?}")),
                    Err(e) => Err(e),
                };
                (peer, Message::ChangedBlocksReply { task, reply })
            }
            (Asker::Read { peer, task, batch }, result) => {
                let result = match result {
                    Ok(HypervisorReply::BlocksRead(blocks)) => Ok(blocks),
                    Ok(other) => Err(format!("unexpected hypervisor reply {other:?}")),
                    Err(e) => Err(e),
                };
                (peer, Message::BlocksRead { task, batch, result })
            }
        };
        self.out.send(peer, msg);
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
