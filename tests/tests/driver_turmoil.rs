//! The same realnet driver, over turmoil's simulated TCP: two core nodes on
//! turmoil hosts exchange pings; a seed replays the exact event trace; a
//! crashed and restarted responder is reported down, then up again, and the
//! pings resume.

use blockferry_core::{Event, Node, NodeId};
use blockferry_realnet::{Backoff, Clock, Driver, DriverConfig, EventSink, TokioClock};
use blockferry_sim::seed::{self, Stream};
use blockferry_sim::trace::Trace;
use blockferry_sim::turmoil_transport::{TurmoilClock, TurmoilTcp};
use blockferry_tests::fixtures::PingPong;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use turmoil::{Builder, Sim};

const N0: NodeId = NodeId(0);
const N1: NodeId = NodeId(1);
const PORT: u16 = 7000;

fn name(id: NodeId) -> String {
    format!("n{}", id.0)
}

fn sim(seed: u64) -> Sim<'static> {
    Builder::new()
        .rng_seed(seed::derive_u64(seed, Stream::Turmoil))
        .tick_duration(Duration::from_millis(1))
        .tcp_capacity(4096)
        .simulation_duration(Duration::from_secs(60))
        .build()
}

fn config(id: NodeId, peer: NodeId) -> DriverConfig {
    DriverConfig::new(name(id), id, format!("0.0.0.0:{PORT}"))
        .peer(peer, name(peer), format!("{}:{PORT}", name(peer)))
        .with_backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(400) })
}

/// Puts node `id` on host "n{id}", driven by the realnet driver over
/// turmoil's TCP. `make` builds the node afresh on every (re)start; every
/// event goes into `trace`, which lives outside the simulation.
fn add_host<N, C>(
    sim: &mut Sim<'static>,
    id: NodeId,
    peer: NodeId,
    trace: &Rc<RefCell<Trace>>,
    make: impl Fn() -> N + 'static,
    clock: fn() -> C,
) where
    N: Node + 'static,
    C: Clock + 'static,
{
    let trace = trace.clone();
    sim.host(name(id), move || {
        let trace = trace.clone();
        let node = make();
        async move {
            let sink: EventSink = Box::new(move |at, event| trace.borrow_mut().record(at, id, event));
            Driver::new(config(id, peer), node, TurmoilTcp, clock(), sink)?.run().await?;
            Ok(())
        }
    });
}

fn step_until(sim: &mut Sim<'static>, until: Duration) {
    while sim.elapsed() < until {
        if let Err(e) = sim.step() {
            panic!("simulation failed at {:?}: {e}", sim.elapsed());
        }
    }
}

fn pongs(trace: &Trace) -> Vec<u64> {
    trace
        .entries()
        .iter()
        .filter_map(|e| match e.event {
            Event::PongReceived { seq, .. } => Some(seq),
            _ => None,
        })
        .collect()
}

/// Two nodes, five pings 100 ms apart (plus the seed's jitter), two
/// simulated seconds; returns the trace.
fn ping_pong(seed: u64) -> Trace {
    let trace = Rc::new(RefCell::new(Trace::keeping()));
    let mut sim = sim(seed);
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, TokioClock::new);
    add_host(
        &mut sim,
        N0,
        N1,
        &trace,
        move || PingPong::pinger(N1, Duration::from_millis(100), 5).with_jitter(seed::rng(seed, Stream::Node(0))),
        TokioClock::new,
    );
    step_until(&mut sim, Duration::from_secs(2));
    drop(sim);
    trace.replace(Trace::default())
}

#[test]
fn two_nodes_ping_pong_over_turmoil() {
    let trace = ping_pong(1);
    assert_eq!(pongs(&trace), vec![0, 1, 2, 3, 4]);
    let ups: Vec<NodeId> = trace.entries().iter().filter(|e| matches!(e.event, Event::PeerUp { .. })).map(|e| e.node).collect();
    assert_eq!(ups.len(), 2, "each side sees the other come up once: {ups:?}");
    assert!(ups.contains(&N0) && ups.contains(&N1));
}

#[test]
fn same_seed_same_trace_hash() {
    let (a, b) = (ping_pong(7), ping_pong(7));
    assert_eq!(pongs(&a).len(), 5);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.len(), b.len());
}

#[test]
fn another_seed_still_delivers_every_pong() {
    let (a, b) = (ping_pong(7), ping_pong(8));
    assert_eq!(pongs(&b), vec![0, 1, 2, 3, 4]);
    assert_ne!(a.hash(), b.hash(), "the seed must reach the run");
}

#[test]
fn crashed_responder_goes_down_and_comes_back() {
    const PINGS: u64 = 30;
    let trace = Rc::new(RefCell::new(Trace::keeping()));
    let mut sim = sim(3);
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, TurmoilClock::new);
    add_host(&mut sim, N0, N1, &trace, || PingPong::pinger(N1, Duration::from_millis(100), PINGS), TurmoilClock::new);

    step_until(&mut sim, Duration::from_secs(1));
    let answered_before_crash = pongs(&trace.borrow()).len();
    assert!(answered_before_crash >= 5, "only {answered_before_crash} pongs before the crash");
    sim.crash(name(N1));
    step_until(&mut sim, Duration::from_millis(1500));
    sim.bounce(name(N1));
    step_until(&mut sim, Duration::from_secs(5));
    drop(sim);
    let trace = trace.replace(Trace::default());

    let pinger: Vec<&Event> = trace.entries().iter().filter(|e| e.node == N0).map(|e| &e.event).collect();
    let peer_events: Vec<&Event> = pinger.iter().copied().filter(|e| matches!(e, Event::PeerUp { .. } | Event::PeerDown { .. })).collect();
    assert_eq!(
        peer_events,
        vec![&Event::PeerUp { peer: N1 }, &Event::PeerDown { peer: N1 }, &Event::PeerUp { peer: N1 }],
        "pinger's view of the responder"
    );
    let second_up = pinger.iter().rposition(|e| matches!(e, Event::PeerUp { .. })).unwrap_or(0);
    let resumed: Vec<u64> = pinger[second_up..]
        .iter()
        .filter_map(|e| match e {
            Event::PongReceived { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert!(resumed.len() > 10, "pings did not resume after the restart: {resumed:?}");
    assert_eq!(resumed.last(), Some(&(PINGS - 1)), "the last ping is answered");

    // The down and the second up are on the simulation's one timeline:
    // after the crash (1 s) and after the restart (1.5 s).
    let at =
        |want: &Event, nth: usize| trace.entries().iter().filter(|e| e.node == N0 && &e.event == want).nth(nth).map(|e| e.at.as_duration());
    let down = at(&Event::PeerDown { peer: N1 }, 0).unwrap_or_default();
    let up_again = at(&Event::PeerUp { peer: N1 }, 1).unwrap_or_default();
    assert!(down >= Duration::from_secs(1) && down < Duration::from_millis(1500), "down at {down:?}");
    assert!(up_again >= Duration::from_millis(1500), "up again at {up_again:?}");

    // The restarted responder is a fresh node that sees n0 come up once.
    let responder_ups = trace.entries().iter().filter(|e| e.node == N1 && matches!(e.event, Event::PeerUp { .. })).count();
    assert_eq!(responder_ups, 2, "one up per life of the responder");
}
