//! Operator actions of a scenario (`[[action]]`): failover and failback
//! requests the runner hands the manager at their time, under either engine
//! (the discrete-event runner injects them; under turmoil the operator node
//! sends them over the network).

use crate::scenario::{ActionKind, PointRef, Scenario};
use crate::topology::Topology;
use blockferry_core::wire::message::ReplicaAction;
use blockferry_core::{Message, Timestamp};

/// Op ids of action requests, clear of the end-of-run restores' (from 1).
const FIRST_OP: u64 = 1 << 40;

/// The scenario's actions as manager requests, in time order.
pub fn requests(scenario: &Scenario, topo: &Topology) -> Result<Vec<(Timestamp, Message)>, String> {
    let mut out = Vec::with_capacity(scenario.actions.len());
    for (i, a) in scenario.actions.iter().enumerate() {
        let vm = topo.vms.get(&a.vm).copied().ok_or_else(|| format!("action on unknown vm {:?}", a.vm))?;
        let action = match a.kind {
            ActionKind::Failover => ReplicaAction::Failover {
                back: match a.point {
                    PointRef::Latest => 0,
                    PointRef::Previous => 1,
                    PointRef::Back(n) => n,
                },
            },
            ActionKind::UndoFailover => ReplicaAction::UndoFailover,
            ActionKind::Failback => ReplicaAction::Failback,
            ActionKind::CommitFailback => ReplicaAction::CommitFailback,
            ActionKind::UndoFailback => ReplicaAction::UndoFailback,
            ActionKind::PermanentFailover => ReplicaAction::PermanentFailover,
        };
        out.push((a.at, Message::ReplicaAction { op: FIRST_OP + i as u64, vm, action }));
    }
    out.sort_by_key(|(at, _)| *at);
    Ok(out)
}

/// A fault step or an action, at its time.
pub enum Timed<F> {
    Fault(F),
    Action(Box<Message>),
}

/// Faults and actions in one time order (a fault first at equal times).
pub fn merge<F>(faults: Vec<(Timestamp, F)>, actions: Vec<(Timestamp, Message)>) -> Vec<(Timestamp, Timed<F>)> {
    let mut all: Vec<(Timestamp, Timed<F>)> = faults.into_iter().map(|(at, f)| (at, Timed::Fault(f))).collect();
    all.extend(actions.into_iter().map(|(at, m)| (at, Timed::Action(Box::new(m)))));
    all.sort_by_key(|(at, t)| (*at, matches!(t, Timed::Action(_))));
    all
}
