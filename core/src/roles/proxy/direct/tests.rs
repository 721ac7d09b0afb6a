//! The direct layer on its own (a scripted proxy) and around a real one.

use super::*;
use crate::block::{BlockSize, Digest};
use crate::hypervisor::{ChangedBlocks, HypervisorOp, HypervisorReply};
use crate::ids::{SnapshotId, TaskId, VmId};
use crate::payload::{BlockData, SyntheticBlock};
use bitvec::vec::BitVec;

const HOST: NodeId = NodeId(1);
const FAR_HOST: NodeId = NodeId(2);
const REPOSITORY: NodeId = NodeId(4);
const MANAGER: NodeId = NodeId(0);
const TASK: TaskId = TaskId(7);

/// A proxy that sends what it is told to and remembers what it was fed.
#[derive(Debug, Default)]
struct Scripted {
    to_send: Vec<(NodeId, Message)>,
    fed: Vec<Input>,
    out: Outbox,
}

impl Node for Scripted {
    fn handle(&mut self, _now: Timestamp, input: Input) {
        self.fed.push(input);
        for (to, msg) in self.to_send.drain(..) {
            self.out.send(to, msg);
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

fn read(batch: u64) -> Message {
    Message::ReadBlocks { task: TASK, batch, snap: SnapshotId(3), disk: 0, block_size: BlockSize::LOCAL, blocks: vec![5, 6] }
}

fn block() -> BlockData {
    BlockData::Synthetic(SyntheticBlock { digest: Digest::ZERO_BLOCK, raw_len: 1 << 20, compressibility: 50 })
}

/// A direct layer whose proxy sends `msgs` on its next input.
fn sending(msgs: Vec<(NodeId, Message)>) -> (Direct<Scripted>, Vec<Output>) {
    let mut direct = Direct::new(Scripted { to_send: msgs, ..Scripted::default() }, [HOST]);
    direct.handle(Timestamp::ZERO, Input::Timer(crate::node::TimerId(1)));
    let outputs = std::iter::from_fn(|| direct.poll_output()).collect();
    (direct, outputs)
}

fn requests(outputs: &[Output]) -> Vec<HypervisorRequest> {
    outputs.iter().filter_map(|o| if let Output::Hypervisor(r) = o { Some(r.clone()) } else { None }).collect()
}

/// The messages the proxy was fed (other inputs left out).
fn fed_messages(direct: &Direct<Scripted>) -> Vec<(NodeId, Message)> {
    direct.inner().fed.iter().filter_map(|i| if let Input::Message { from, msg } = i { Some((*from, msg.clone())) } else { None }).collect()
}

#[test]
fn a_read_of_a_reachable_host_becomes_a_hypervisor_request_and_its_answer_the_hosts_reply() {
    let (mut direct, outputs) = sending(vec![(HOST, read(11))]);
    assert!(!outputs.iter().any(|o| matches!(o, Output::Send { .. })), "nothing crosses the network: {outputs:?}");
    let [request] = requests(&outputs).try_into().expect("one hypervisor request");
    assert_eq!(request.op, HypervisorOp::ReadBlocks { snap: SnapshotId(3), disk: 0, block_size: BlockSize::LOCAL, blocks: vec![5, 6] });

    let blocks = vec![(5, block()), (6, block())];
    let done = HypervisorCompletion { id: request.id, result: Ok(HypervisorReply::BlocksRead(blocks.clone())) };
    direct.handle(Timestamp::ZERO, Input::Hypervisor(done));
    assert_eq!(fed_messages(&direct), vec![(HOST, Message::BlocksRead { task: TASK, batch: 11, result: Ok(blocks) })]);
    assert!(direct.pending.is_empty());
}

#[test]
fn changed_blocks_are_asked_of_the_datastore_too() {
    let ask = Message::GetChangedBlocks { task: TASK, snap: SnapshotId(3), disk: 1, since: None, block_size: BlockSize::LOCAL };
    let (mut direct, outputs) = sending(vec![(HOST, ask)]);
    let [request] = requests(&outputs).try_into().expect("one hypervisor request");
    assert!(matches!(request.op, HypervisorOp::ChangedBlocks { disk: 1, since: None, .. }), "{request:?}");
    let changed = ChangedBlocks::Known { changed: BitVec::repeat(true, 4), swap: BitVec::repeat(false, 4) };
    let done = HypervisorCompletion { id: request.id, result: Ok(HypervisorReply::ChangedBlocks(changed.clone())) };
    direct.handle(Timestamp::ZERO, Input::Hypervisor(done));
    assert_eq!(fed_messages(&direct), vec![(HOST, Message::ChangedBlocksReply { task: TASK, reply: Ok(changed) })]);
}

#[test]
fn a_failed_read_is_an_error_reply() {
    let (mut direct, outputs) = sending(vec![(HOST, read(12))]);
    let [request] = requests(&outputs).try_into().expect("one hypervisor request");
    let done = HypervisorCompletion { id: request.id, result: Err("snapshot 3 was committed".into()) };
    direct.handle(Timestamp::ZERO, Input::Hypervisor(done));
    let reply = Message::BlocksRead { task: TASK, batch: 12, result: Err("snapshot 3 was committed".into()) };
    assert_eq!(fed_messages(&direct), vec![(HOST, reply)]);
}

#[test]
fn an_unknown_completion_is_ignored() {
    let (mut direct, _) = sending(vec![(HOST, read(13))]);
    let stray = HypervisorCompletion { id: RequestId(999), result: Ok(HypervisorReply::Done) };
    direct.handle(Timestamp::ZERO, Input::Hypervisor(stray));
    assert!(fed_messages(&direct).is_empty());
    assert_eq!(direct.pending.len(), 1, "the real request still waits");
    assert!(direct.poll_output().is_none());
}

#[test]
fn other_hosts_writes_and_other_messages_go_over_the_network() {
    let write = Message::WriteBlocks { task: TASK, batch: 1, vm: VmId(2), disk: 0, block_size: BlockSize::LOCAL, blocks: vec![] };
    let sent = vec![(FAR_HOST, read(14)), (HOST, write.clone()), (REPOSITORY, Message::Ping { seq: 3 })];
    let (direct, outputs) = sending(sent.clone());
    let expected: Vec<Output> = sent.into_iter().map(|(to, msg)| Output::Send { to, msg }).collect();
    assert_eq!(outputs, expected);
    assert!(direct.pending.is_empty());
}

#[test]
fn answers_due_when_the_host_went_down_are_dropped_as_network_ones_would_be() {
    let (mut direct, outputs) = sending(vec![(HOST, read(15))]);
    let [request] = requests(&outputs).try_into().expect("one hypervisor request");
    direct.handle(Timestamp::ZERO, Input::PeerDown(HOST));
    let done = HypervisorCompletion { id: request.id, result: Ok(HypervisorReply::BlocksRead(vec![])) };
    direct.handle(Timestamp::ZERO, Input::Hypervisor(done));
    assert!(fed_messages(&direct).is_empty());
    assert!(direct.inner().fed.contains(&Input::PeerDown(HOST)), "the proxy still hears of it");
}

/// Around a real proxy: a backup task plans and reads through the
/// datastore, and its repository traffic is untouched.
#[test]
fn a_backup_task_of_a_direct_proxy_reads_through_the_datastore() {
    let mut proxy = Proxy::direct([HOST]);
    let spec = crate::roles::proxy::tests::backup_spec(HOST, REPOSITORY, 4 << 20);
    proxy.handle(Timestamp::ZERO, Input::Start);
    proxy.handle(Timestamp::ZERO, Input::Message { from: MANAGER, msg: Message::StartBackupTask(Box::new(spec)) });
    let outputs: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    assert!(!outputs.iter().any(|o| matches!(o, Output::Send { to: HOST, .. })), "{outputs:?}");
    let [plan] = requests(&outputs).try_into().expect("the changed-blocks request");
    assert!(matches!(plan.op, HypervisorOp::ChangedBlocks { .. }), "{plan:?}");

    let blocks = BlockSize::LOCAL.blocks_for(4 << 20) as usize;
    let changed = ChangedBlocks::Known { changed: BitVec::repeat(true, blocks), swap: BitVec::repeat(false, blocks) };
    let done = HypervisorCompletion { id: plan.id, result: Ok(HypervisorReply::ChangedBlocks(changed)) };
    proxy.handle(Timestamp::ZERO, Input::Hypervisor(done));
    let outputs: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
    let reads = requests(&outputs);
    assert!(!reads.is_empty() && reads.iter().all(|r| matches!(r.op, HypervisorOp::ReadBlocks { .. })), "{outputs:?}");
    assert!(!outputs.iter().any(|o| matches!(o, Output::Send { to: HOST, .. })), "{outputs:?}");
}
