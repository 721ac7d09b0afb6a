//! A scenario under the discrete-event engine.

use super::RESTORE_WINDOW;
use super::RunOptions;
use super::actions::{self, Timed};
use super::faults::{self, FaultEngine};
use super::liveness;
use super::state::{NodeMaker, RunState};
use crate::des::Des;
use crate::net::SiteId;
use crate::report::Summary;
use crate::scenario::Scenario;
use blockferry_core::node::Input;
use blockferry_core::{NodeId, Timestamp};

/// The manager's node id (see `topology`).
const MANAGER: NodeId = NodeId(0);

pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<Summary, String> {
    let mut state = RunState::new(scenario, seed, options)?;
    let mut des = Des::with_services(state.topo.network.clone(), Box::new(state.world.clone())).starting_at(scenario.start);
    des.keep_trace();
    for info in state.topo.nodes.clone() {
        let node = state.make_node(info.id).ok_or("node without a role")?;
        des.add_node(info.site, node);
        if let Some(streams) = info.streams {
            des.set_streams(info.id, streams);
        }
        des.inject(scenario.start, info.id, Input::Start);
    }
    des.connect_all();
    // Who asks for operator actions and the end-of-run restores: not a node
    // the engine runs, so the manager's answers to it go nowhere.
    let operator = state.topo.operator();

    let end = scenario.start + scenario.duration;
    if let Some(rng) = state.breaks_rng(seed) {
        des.set_breaks_rng(rng);
    }
    let (steps, faults_end) = faults::timeline(scenario, &state.topo)?;
    let liveness = liveness::Plan::new(scenario, &steps, faults_end);
    let timeline = actions::merge(steps, actions::requests(scenario, &state.topo)?);
    for (at, item) in timeline.into_iter().filter(|(at, _)| *at <= end) {
        run_until(&mut des, &mut state, at);
        match item {
            Timed::Fault(step) => faults::apply(&mut des, &mut state, at, &step)?,
            Timed::Action(msg) => des.inject(at, MANAGER, Input::Message { from: operator, msg: *msg }),
        }
    }
    run_until(&mut des, &mut state, end);
    let (lan, wan) = des.network().lan_wan_bytes();
    let (jobs, bytes) = state.figures(lan, wan);

    // The liveness phase: faults off until every job has recovered.
    for step in &liveness.lifting {
        faults::apply(&mut des, &mut state, end, step)?;
    }
    while !state.all_recovered(liveness.quiet_from) && des.next_at().is_some_and(|t| t <= liveness.deadline) {
        step(&mut des, &mut state);
    }
    let phase_end = des.now().max(end);
    let phase = liveness.outcome(phase_end);

    // Prove every retained point restorable.
    for msg in state.restore_requests(scenario.restore_check) {
        des.inject(phase_end, MANAGER, Input::Message { from: operator, msg });
    }
    let deadline = phase_end + RESTORE_WINDOW;
    while !state.restores_done() && des.next_at().is_some_and(|t| t <= deadline) {
        step(&mut des, &mut state);
    }
    state.throttles = super::throttles::check(scenario, &state.topo, des.network(), &mut state.checker);
    let hash = des.trace().hash();
    Ok(state.summary(scenario, seed, "des", scenario.duration.as_secs(), hash, jobs, bytes, phase))
}

/// The discrete-event engine models every fault itself (see `crate::des`).
impl FaultEngine for Des {
    fn partition(&mut self, a: SiteId, b: SiteId) {
        Des::partition(self, a, b);
    }
    fn repair(&mut self, a: SiteId, b: SiteId) {
        Des::repair(self, a, b);
    }
    fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>) {
        Des::set_bandwidth(self, a, b, bandwidth_bps);
    }
    fn crash(&mut self, node: NodeId) {
        Des::crash(self, node);
    }
    fn restart(&mut self, node: NodeId, nodes: &NodeMaker) -> Result<(), String> {
        Des::restart(self, node, nodes.make(node).ok_or("restart of an unknown node")?);
        Ok(())
    }
}

/// Steps until `until`, feeding events to the run state.
fn run_until(des: &mut Des, state: &mut RunState, until: Timestamp) {
    while des.next_at().is_some_and(|t| t <= until) {
        step(des, state);
    }
    des.run_until(until);
    state.world.borrow_mut().advance_to(until);
}

fn step(des: &mut Des, state: &mut RunState) {
    // WAN bytes before the step: what sessions starting or ending in it are
    // measured from.
    state.tally.wan_now = Some(des.network().lan_wan_bytes().1);
    des.step();
    for entry in des.trace_mut().take_entries() {
        state.observe(entry.at, &entry.event);
    }
}
