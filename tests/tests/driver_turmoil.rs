//! The same realnet driver, over turmoil's simulated TCP: two core nodes on
//! turmoil hosts exchange pings; a seed replays the exact event trace; a
//! crashed and restarted responder is reported down, then up again, and the
//! pings resume; a partition (which turmoil reports to nobody: it just drops
//! segments) is noticed by the keepalive within its timeout, and the link is
//! redialed after the repair; a quiet connection stays up on keepalives.

use blockferry_core::{Event, Node, NodeId, Timestamp};
use blockferry_realnet::{Backoff, Clock, Driver, DriverConfig, EventSink, Keepalive};
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

/// Keepalive of the tests: a dead link is noticed within a second.
const KEEPALIVE: Keepalive = Keepalive { interval: Duration::from_millis(200), timeout: Duration::from_secs(1) };

fn config(id: NodeId, peer: NodeId) -> DriverConfig {
    DriverConfig::new(name(id), id, format!("0.0.0.0:{PORT}"))
        .peer(peer, name(peer), format!("{}:{PORT}", name(peer)))
        .with_backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(400) })
        .with_keepalive(KEEPALIVE)
        // A dial into a partition never completes under turmoil.
        .with_connect_timeouts(Duration::from_millis(500), Duration::from_millis(500))
}

/// The simulation's clock from the Unix epoch: event times read as time
/// since the simulation started.
fn epoch_clock() -> TurmoilClock {
    TurmoilClock::starting_at(Timestamp::ZERO)
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
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, epoch_clock);
    add_host(
        &mut sim,
        N0,
        N1,
        &trace,
        move || PingPong::pinger(N1, Duration::from_millis(100), 5).with_jitter(seed::rng(seed, Stream::Node(0))),
        epoch_clock,
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
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, epoch_clock);
    add_host(&mut sim, N0, N1, &trace, || PingPong::pinger(N1, Duration::from_millis(100), PINGS), epoch_clock);

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

/// Each node's view of its peer: the `PeerUp`/`PeerDown` events, with times.
fn peer_events(trace: &Trace, node: NodeId) -> Vec<(Duration, Event)> {
    trace
        .entries()
        .iter()
        .filter(|e| e.node == node && matches!(e.event, Event::PeerUp { .. } | Event::PeerDown { .. }))
        .map(|e| (e.at.as_duration(), e.event.clone()))
        .collect()
}

#[test]
fn partition_is_noticed_by_keepalive_and_healed_by_redialing() {
    const PINGS: u64 = 60;
    let (cut, heal) = (Duration::from_secs(1), Duration::from_secs(3));
    let trace = Rc::new(RefCell::new(Trace::keeping()));
    let mut sim = sim(5);
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, epoch_clock);
    add_host(&mut sim, N0, N1, &trace, || PingPong::pinger(N1, Duration::from_millis(100), PINGS), epoch_clock);

    step_until(&mut sim, cut);
    sim.partition(name(N0), name(N1));
    step_until(&mut sim, heal);
    sim.repair(name(N0), name(N1));
    step_until(&mut sim, Duration::from_secs(8));
    drop(sim);
    let trace = trace.replace(Trace::default());

    for (node, peer) in [(N0, N1), (N1, N0)] {
        let seen = peer_events(&trace, node);
        let kinds: Vec<&Event> = seen.iter().map(|(_, e)| e).collect();
        assert_eq!(
            kinds,
            vec![&Event::PeerUp { peer }, &Event::PeerDown { peer }, &Event::PeerUp { peer }],
            "{node}'s view of {peer}: exactly one down for the partition"
        );
        // Down once the timeout has passed without traffic (the last bytes
        // crossed just before the cut), and well before the repair.
        let down = seen[1].0;
        assert!(down >= cut + KEEPALIVE.timeout - Duration::from_millis(200), "{node}: down at {down:?}, too early");
        assert!(down <= cut + KEEPALIVE.timeout + Duration::from_millis(250), "{node}: down at {down:?}, not within the timeout");
        // Up again after the repair, once the dialer's next attempt lands
        // (its backoff is capped at 400 ms, a dial into the partition fails
        // after 500 ms).
        let up = seen[2].0;
        assert!(up >= heal && up <= heal + Duration::from_secs(1), "{node}: up again at {up:?}");
    }
    // Pings sent while the link was down were lost with the connection; the
    // ones after the repair are answered.
    let answered = pongs(&trace);
    assert_eq!(answered.last(), Some(&(PINGS - 1)), "the last ping is answered: {answered:?}");
}

#[test]
fn a_quiet_connection_stays_up_on_keepalives() {
    let trace = Rc::new(RefCell::new(Trace::keeping()));
    let mut sim = sim(6);
    add_host(&mut sim, N1, N0, &trace, PingPong::responder, epoch_clock);
    // One ping, then nothing for 20 idle timeouts.
    add_host(&mut sim, N0, N1, &trace, || PingPong::pinger(N1, Duration::from_millis(100), 1), epoch_clock);
    step_until(&mut sim, KEEPALIVE.timeout * 20);
    drop(sim);
    let trace = trace.replace(Trace::default());
    assert_eq!(pongs(&trace), vec![0]);
    for (node, peer) in [(N0, N1), (N1, N0)] {
        let kinds: Vec<Event> = peer_events(&trace, node).into_iter().map(|(_, e)| e).collect();
        assert_eq!(kinds, vec![Event::PeerUp { peer }], "{node} lost a quiet but healthy connection");
    }
}
