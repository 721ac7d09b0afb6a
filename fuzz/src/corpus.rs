//! Real traffic to start from: a short discrete-event run of
//! `fuzz/corpus.toml`, recording every input each node was fed, in order
//! and with its time.
//!
//! Random values alone rarely get a role past its first checks: a proxy
//! acts on blocks only for a task it runs, a repository on a disk only of
//! a session it holds. Replaying what a node really received, and mutating
//! it on the way, takes a fuzzed role into the states production reaches
//! (tasks mid-transfer, points being committed, replicas failing over), and
//! the ids it then holds are the ones the generator's values refer to.

use blockferry_core::node::{Input, Node, Output};
use blockferry_core::wire::message::ReplicaAction;
use blockferry_core::{Message, NodeId, RestorePointId, Timestamp, VmId};
use blockferry_sim::des::Des;
use blockferry_sim::runner::{RunOptions, RunState};
use blockferry_sim::scenario::Scenario;
use blockferry_sim::topology::Topology;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The scenario the corpus comes from (also the fuzzed roles' deployment).
pub const SCENARIO: &str = include_str!("../corpus.toml");

/// What a run fed its nodes.
pub struct Corpus {
    /// The deployment: node ids and roles, the manager's configuration.
    pub topo: Topology,
    /// Every input of each node, with the time it was fed.
    pub inputs: BTreeMap<NodeId, Vec<(Timestamp, Input)>>,
}

/// What the recorders share.
#[derive(Default)]
struct Log {
    inputs: BTreeMap<NodeId, Vec<(Timestamp, Input)>>,
    /// Restore points the manager committed (operator restores name one).
    committed: Vec<RestorePointId>,
}

/// A node of the run that writes down what it is fed.
struct Recorder {
    node: Box<dyn Node>,
    id: NodeId,
    log: Rc<RefCell<Log>>,
}

impl Node for Recorder {
    fn handle(&mut self, now: Timestamp, input: Input) {
        self.log.borrow_mut().inputs.entry(self.id).or_default().push((now, input.clone()));
        self.node.handle(now, input);
    }

    fn poll_output(&mut self) -> Option<Output> {
        let output = self.node.poll_output()?;
        if let Output::Send { msg: Message::CommitPoint { header, .. }, .. } = &output {
            self.log.borrow_mut().committed.push(header.point);
        }
        Some(output)
    }
}

/// Operator requests the capture makes, at offsets from the start: a
/// restore of the first committed point, then failover, undo, failover
/// and failback of the replicated VM.
fn operator_requests() -> [(Duration, ReplicaAction); 5] {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    [
        (minutes(100), ReplicaAction::Failover { back: 1 }),
        (minutes(110), ReplicaAction::UndoFailover),
        (minutes(130), ReplicaAction::Failover { back: 0 }),
        (minutes(140), ReplicaAction::Failback),
        (minutes(160), ReplicaAction::CommitFailback),
    ]
}

impl Corpus {
    /// Runs the corpus scenario (a fraction of a second) and keeps what
    /// every node was fed.
    pub fn capture() -> Result<Corpus, String> {
        let scenario = Scenario::from_str(SCENARIO, "fuzz/corpus.toml").map_err(|e| e.to_string())?;
        let state = RunState::new(&scenario, scenario.seed, &RunOptions::default())?;
        let mut des = Des::with_services(state.topo.network.clone(), Box::new(state.world.clone()));
        let log = Rc::new(RefCell::new(Log::default()));
        for info in &state.topo.nodes {
            let node = state.make_node(info.id).ok_or_else(|| format!("{} has no role to run", info.name))?;
            des.add_node(info.site, Box::new(Recorder { node, id: info.id, log: log.clone() }));
            if let Some(streams) = info.streams {
                des.set_streams(info.id, streams);
            }
            des.inject(Timestamp::ZERO, info.id, Input::Start);
        }
        des.connect_all();
        let manager = NodeId(0);
        let operator = state.topo.operator();
        let replicated = state.topo.vms.get("db01").copied().ok_or("the corpus scenario has no db01")?;
        let run_until = |des: &mut Des, until: Timestamp| {
            while des.next_at().is_some_and(|at| at <= until) {
                des.step();
                state.world.borrow_mut().advance_to(des.now());
            }
        };
        let restore_at = Timestamp::ZERO + Duration::from_secs(90 * 60);
        run_until(&mut des, restore_at);
        let point = log.borrow().committed.first().copied().ok_or("the corpus run committed no point in 90 minutes")?;
        let host = state.topo.deployment.vms.get(&replicated).map(|v| v.host).ok_or("db01 has no host")?;
        let restore = Message::RestoreVm { op: 1, point, host, new_vm: VmId(1000), name: "db01-restored".into() };
        des.inject(restore_at, manager, Input::Message { from: operator, msg: restore });
        for (op, (offset, action)) in (2..).zip(operator_requests()) {
            let at = Timestamp::ZERO + offset;
            run_until(&mut des, at);
            des.inject(at, manager, Input::Message { from: operator, msg: Message::ReplicaAction { op, vm: replicated, action } });
        }
        run_until(&mut des, Timestamp::ZERO + scenario.duration);
        drop(des);
        let inputs = std::mem::take(&mut log.borrow_mut().inputs);
        Ok(Corpus { topo: state.topo, inputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every node is recorded; the payloads are real (a production node
    /// refuses a synthetic one, and the fuzzed nodes are production ones);
    /// the operator's requests reached the manager.
    #[test]
    fn every_node_is_recorded_with_real_payloads_and_the_operators_requests() {
        let corpus = Corpus::capture().expect("the corpus scenario runs");
        assert_eq!(corpus.inputs.len(), corpus.topo.nodes.len());
        let messages =
            || corpus.inputs.values().flatten().filter_map(|(_, i)| if let Input::Message { msg, .. } = i { Some(msg) } else { None });
        assert!(!messages().any(Message::carries_synthetic));
        assert!(messages().any(|m| matches!(m, Message::PutBlocks { blocks, .. } if blocks.iter().any(|b| b.payload.is_some()))));
        for kind in ["restore_vm", "replica_action", "write_blocks", "replica_blocks", "health_check"] {
            assert!(messages().any(|m| m.kind() == kind), "no {kind} in the corpus");
        }
    }
}
