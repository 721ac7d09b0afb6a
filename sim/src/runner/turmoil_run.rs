//! A scenario under turmoil: every node on its own turmoil host, run by the
//! production driver over turmoil's TCP, with the world's hypervisors and
//! stores behind the driver's services. Slower than the discrete-event
//! engine (turmoil ticks every host every tick), so meant for short
//! scenarios; what it adds is the real driver: framing, handshakes,
//! keepalives, reconnects and timers, meeting the same fault timeline as
//! the discrete-event engine (applied through [`faults::apply`]; the
//! turmoil side is [`super::turmoil_faults`], link bandwidth, loss and
//! breaks are the shaped transport's, `crate::turmoil_transport`).

use super::RESTORE_WINDOW;
use super::RunOptions;
use super::actions::{self, Timed};
use super::faults;
use super::liveness;
use super::operator::{Mailbox, Operator};
use super::state::RunState;
use super::turmoil_faults::{HostInfo, TurmoilFaults};
use crate::des::Services as _;
use crate::report::Summary;
use crate::scenario::Scenario;
use crate::seed::{self, Stream};
use crate::trace::Trace;
use crate::turmoil_transport::{Endpoint, Links, ShapedTcp, TurmoilClock};
use crate::world::World;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::storage::{StorageCompletion, StorageRequest};
use blockferry_core::{Node, NodeId, Timestamp};
use blockferry_realnet::services::LocalBoxFuture;
use blockferry_realnet::{Backoff, Driver, DriverConfig, EventSink, Keepalive, Services};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// turmoil's step. Coarse on purpose: every tick polls every host.
const TICK: Duration = Duration::from_millis(10);
const PORT: u16 = 7000;
const OPERATOR_NAME: &str = "operator";

/// Keepalive of the simulated drivers: tighter than production's, so a
/// partition is noticed within seconds of simulated time (the
/// discrete-event engine breaks connections at once). The timeout stays
/// well above the gaps the link shaper leaves in a busy connection (one
/// 64 KiB piece per stream sharing the link: 100 ms each at 5 Mbit).
const KEEPALIVE: Keepalive = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(5) };
/// A dial into a partition never completes under turmoil: give up after
/// this, back off, try again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF: Backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };

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
    let state = Rc::new(RefCell::new(RunState::new(scenario, seed, options)?));
    let trace = Rc::new(RefCell::new(Trace::default()));
    let (topo, nodes, world) = {
        let st = state.borrow();
        (st.topo.clone(), st.nodes.clone(), st.world.clone())
    };
    let links = Links::new(topo.network.clone(), state.borrow().breaks_rng(seed), TICK);
    let operator_id = topo.operator();
    let manager_site = topo.site_of(NodeId(0)).ok_or("no manager")?;
    let mut hosts: Vec<HostInfo> = topo.nodes.iter().map(|n| HostInfo { name: n.name.clone(), site: n.site }).collect();
    // The operator sits beside the manager, the only node it talks to.
    hosts.push(HostInfo { name: OPERATOR_NAME.to_string(), site: manager_site });
    // Proxies' connections bundle their `streams` (the operator is no node).
    let endpoint = |index: usize, host: &HostInfo| Endpoint { site: host.site, streams: topo.nodes.get(index).and_then(|n| n.streams) };
    let sites: Rc<BTreeMap<String, _>> = Rc::new(hosts.iter().enumerate().map(|(i, h)| (h.name.clone(), endpoint(i, h))).collect());

    let mailbox: Mailbox = Rc::default();
    let end = scenario.duration;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed::derive_u64(seed, Stream::Turmoil))
        .tick_duration(TICK)
        .tcp_capacity(1 << 16)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(1))
        .simulation_duration(end + liveness::bound(scenario) + RESTORE_WINDOW + Duration::from_secs(3600))
        .build();

    let addr = |name: &str| format!("{name}:{PORT}");
    for (index, host) in hosts.iter().enumerate() {
        let id = NodeId(index as u32);
        let mut config = DriverConfig::new(host.name.clone(), id, format!("0.0.0.0:{PORT}"))
            .with_backoff(BACKOFF)
            .with_keepalive(KEEPALIVE)
            .with_connect_timeouts(CONNECT_TIMEOUT, CONNECT_TIMEOUT)
            .simulated();
        for (peer_index, peer) in hosts.iter().enumerate() {
            let peer_id = NodeId(peer_index as u32);
            // Only the manager talks to the operator.
            let involves_operator = peer_id == operator_id || id == operator_id;
            if peer_id != id && (!involves_operator || peer_id == NodeId(0) || id == NodeId(0)) {
                config = config.peer(peer_id, peer.name.clone(), addr(&peer.name));
            }
        }
        let transport = ShapedTcp::new(links.clone(), endpoint(index, host), sites.clone());
        let (state, trace, mailbox, links) = (state.clone(), trace.clone(), mailbox.clone(), links.clone());
        let (nodes, world, start) = (nodes.clone(), world.clone(), scenario.start);
        // Runs at start and on every restart: nothing here may borrow the
        // run state, which is busy applying the fault step that restarts it.
        sim.host(host.name.as_str(), move || {
            let config = config.clone();
            let node: Option<Box<dyn Node>> =
                if id == operator_id { Some(Box::new(Operator::new(NodeId(0), mailbox.clone()))) } else { nodes.make(id) };
            let services = WorldServices { world: world.clone(), node: id };
            let (state, trace, links, transport) = (state.clone(), trace.clone(), links.clone(), transport.clone());
            async move {
                let node = node.ok_or("node without a role")?;
                let sink: EventSink = Box::new(move |at, event| {
                    trace.borrow_mut().record(at, id, event);
                    let mut st = state.borrow_mut();
                    st.tally.wan_now = Some(links.borrow().lan_wan_bytes().1);
                    st.observe(at, event);
                });
                Driver::new(config, node, transport, TurmoilClock::starting_at(start), sink)?
                    .with_services(Box::new(services))
                    .run()
                    .await?;
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

    // Faults and operator actions, at their times.
    let (steps, faults_end) = faults::timeline(scenario, &topo)?;
    let liveness = liveness::Plan::new(scenario, &steps, faults_end);
    let timeline = actions::merge(steps, actions::requests(scenario, &topo)?);
    // Turmoil counts time from zero; the scenario's clock from its start.
    let start = scenario.start;
    for (at, item) in timeline.into_iter().filter(|(at, _)| *at - start <= end) {
        step_until(&mut sim, at - start)?;
        match item {
            Timed::Fault(step) => {
                let now = (start + sim.elapsed()).max(at);
                let mut engine = TurmoilFaults { sim: &mut sim, hosts: &hosts, links: &links };
                faults::apply(&mut engine, &mut state.borrow_mut(), now, &step)?;
            }
            Timed::Action(msg) => mailbox.borrow_mut().push_back(*msg),
        }
    }
    step_until(&mut sim, end)?;
    let (lan, wan) = links.borrow().lan_wan_bytes();
    let (jobs, bytes) = state.borrow().figures(lan, wan);

    // The liveness phase: faults off until every job has recovered.
    for step in &liveness.lifting {
        let now = start + sim.elapsed();
        let mut engine = TurmoilFaults { sim: &mut sim, hosts: &hosts, links: &links };
        faults::apply(&mut engine, &mut state.borrow_mut(), now, step)?;
    }
    while !state.borrow().all_recovered(liveness.quiet_from) && sim.elapsed() < liveness.deadline - start {
        sim.step().map_err(|e| format!("turmoil failed at {:?}: {e}", sim.elapsed()))?;
    }
    let phase_end = sim.elapsed().max(end);
    let phase = liveness.outcome(start + phase_end);

    let requests = state.borrow_mut().restore_requests(scenario.restore_check);
    mailbox.borrow_mut().extend(requests);
    let deadline = phase_end + RESTORE_WINDOW;
    while !state.borrow().restores_done() && sim.elapsed() < deadline {
        sim.step().map_err(|e| format!("turmoil failed at {:?}: {e}", sim.elapsed()))?;
    }
    drop(sim);
    let hash = trace.borrow().hash();
    let mut state = Rc::try_unwrap(state).map_err(|_| "run state still shared after the simulation")?.into_inner();
    state.throttles = super::throttles::check(scenario, &state.topo, links.borrow().network(), &mut state.checker);
    Ok(state.summary(scenario, seed, "turmoil", end.as_secs(), hash, jobs, bytes, phase))
}

fn step_until(sim: &mut turmoil::Sim<'_>, until: Duration) -> Result<(), String> {
    while sim.elapsed() < until {
        sim.step().map_err(|e| format!("turmoil failed at {:?}: {e}", sim.elapsed()))?;
    }
    Ok(())
}
