//! A scenario under turmoil: every node on its own turmoil host, run by the
//! production driver over turmoil's TCP, with the world's hypervisors and
//! stores behind the driver's services. Slower than the discrete-event
//! engine (turmoil ticks every host every tick), so meant for short
//! scenarios; what it adds is the real driver: framing, handshakes,
//! reconnects and timers.

use super::RESTORE_WINDOW;
use super::RunOptions;
use super::operator::{Mailbox, Operator};
use super::state::RunState;
use crate::des::Services as _;
use crate::report::Summary;
use crate::scenario::Scenario;
use crate::seed::{self, Stream};
use crate::trace::Trace;
use crate::turmoil_transport::{TurmoilClock, TurmoilTcp};
use crate::world::World;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageRequest};
use blockferry_core::{Node, NodeId, Timestamp};
use blockferry_realnet::services::LocalBoxFuture;
use blockferry_realnet::{Backoff, Driver, DriverConfig, EventSink, Services};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// turmoil's step. Coarse on purpose: every tick polls every host.
const TICK: Duration = Duration::from_millis(10);
const PORT: u16 = 7000;
const OPERATOR_NAME: &str = "operator";

/// The world seen through one node's driver: the request is carried out at
/// once and its completion delivered at the time the world says.
struct WorldServices {
    world: Rc<RefCell<World>>,
    node: NodeId,
}

impl Services for WorldServices {
    fn storage(&mut self, now: Timestamp, request: StorageRequest) -> LocalBoxFuture<StorageCompletion> {
        let (at, done) = self.world.borrow_mut().storage(now, self.node, request);
        Box::pin(async move {
            tokio::time::sleep(at - now).await;
            done
        })
    }

    fn hypervisor(&mut self, now: Timestamp, request: HypervisorRequest) -> LocalBoxFuture<HypervisorCompletion> {
        let (at, done) = self.world.borrow_mut().hypervisor(now, self.node, request);
        Box::pin(async move {
            tokio::time::sleep(at - now).await;
            done
        })
    }
}

pub fn run(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<Summary, String> {
    if !scenario.faults.is_empty() {
        return Err("faults are not simulated under turmoil by this build yet; use --engine des".into());
    }
    let state = Rc::new(RefCell::new(RunState::new(scenario, seed, options)?));
    let trace = Rc::new(RefCell::new(Trace::default()));
    let topo = state.borrow().topo.clone();
    let operator_id = NodeId(topo.nodes.len() as u32);
    let mailbox: Mailbox = Rc::default();
    let end = scenario.duration;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed::derive_u64(seed, Stream::Turmoil))
        .tick_duration(TICK)
        .tcp_capacity(1 << 16)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .simulation_duration(end + RESTORE_WINDOW + Duration::from_secs(3600))
        .build();

    let addr = |name: &str| format!("{name}:{PORT}");
    let mut peers: Vec<(NodeId, String)> = topo.nodes.iter().map(|n| (n.id, n.name.clone())).collect();
    peers.push((operator_id, OPERATOR_NAME.to_string()));
    for (id, name) in peers.clone() {
        let mut config = DriverConfig::new(name.clone(), id, format!("0.0.0.0:{PORT}"))
            .with_backoff(Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) });
        for (peer, peer_name) in &peers {
            // Only the manager talks to the operator.
            let involves_operator = *peer == operator_id || id == operator_id;
            if *peer != id && (!involves_operator || *peer == NodeId(0) || id == NodeId(0)) {
                config = config.peer(*peer, peer_name.clone(), addr(peer_name));
            }
        }
        let (state, trace, mailbox) = (state.clone(), trace.clone(), mailbox.clone());
        sim.host(name.as_str(), move || {
            let config = config.clone();
            let node: Option<Box<dyn Node>> =
                if id == operator_id { Some(Box::new(Operator::new(NodeId(0), mailbox.clone()))) } else { state.borrow().make_node(id) };
            let services = WorldServices { world: state.borrow().world.clone(), node: id };
            let (state, trace) = (state.clone(), trace.clone());
            async move {
                let node = node.ok_or("node without a role")?;
                let sink: EventSink = Box::new(move |at, event| {
                    trace.borrow_mut().record(at, id, event);
                    state.borrow_mut().observe(at, event);
                });
                Driver::new(config, node, TurmoilTcp, TurmoilClock::new(), sink)?.with_services(Box::new(services)).run().await?;
                Ok(())
            }
        });
    }
    for a in &topo.nodes {
        for b in &topo.nodes {
            if a.id < b.id
                && let Some(latency) = topo.network.latency(a.site, b.site)
            {
                sim.set_link_latency(a.name.as_str(), b.name.as_str(), latency.max(Duration::from_millis(1)));
            }
        }
    }

    // Operator actions go out through the operator node at their time.
    let actions = super::actions::requests(scenario, &topo)?;
    for (at, msg) in actions.into_iter().filter(|(at, _)| at.as_duration() <= end) {
        step_until(&mut sim, at.as_duration())?;
        mailbox.borrow_mut().push_back(msg);
    }
    step_until(&mut sim, end)?;
    let (jobs, bytes) = state.borrow().figures(0, 0);
    let requests = state.borrow_mut().restore_requests();
    mailbox.borrow_mut().extend(requests);
    let deadline = end + RESTORE_WINDOW;
    while !state.borrow().restores_done() && sim.elapsed() < deadline {
        sim.step().map_err(|e| format!("turmoil failed at {:?}: {e}", sim.elapsed()))?;
    }
    drop(sim);
    let hash = trace.borrow().hash();
    let state = Rc::try_unwrap(state).map_err(|_| "run state still shared after the simulation")?.into_inner();
    Ok(state.summary(scenario, seed, "turmoil", end.as_secs(), hash, jobs, bytes, None))
}

fn step_until(sim: &mut turmoil::Sim<'_>, until: Duration) -> Result<(), String> {
    while sim.elapsed() < until {
        sim.step().map_err(|e| format!("turmoil failed at {:?}: {e}", sim.elapsed()))?;
    }
    Ok(())
}
