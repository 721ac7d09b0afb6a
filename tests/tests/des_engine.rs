//! Two core nodes exchanging messages under the discrete-event engine:
//! delivery, link latency, and determinism of the trace hash per seed.

use blockferry_core::{Event, NodeId};
use blockferry_sim::des::Des;
use blockferry_sim::net::{LinkSpec, Network, SiteId};
use blockferry_sim::seed::{self, Stream};
use blockferry_tests::fixtures::{PingPong, RefusesFirstPing};
use std::time::Duration;

const PINGS: u64 = 20;

fn run(seed: u64) -> Des {
    let mut net = Network::default();
    net.set_link(
        SiteId(0),
        SiteId(1),
        LinkSpec { latency: Duration::from_millis(40), bandwidth_bps: Some(100_000_000), ..LinkSpec::default() },
    );
    let mut des = Des::new(net);
    des.keep_trace();
    let pinger = PingPong::pinger(NodeId(1), Duration::from_secs(1), PINGS).with_jitter(seed::rng(seed, Stream::Node(0)));
    des.add_node(SiteId(0), Box::new(pinger));
    des.add_node(SiteId(1), Box::new(PingPong::responder()));
    des.connect_all();
    while des.step() {}
    des
}

fn pongs(des: &Des) -> Vec<(u64, u64)> {
    des.trace()
        .entries()
        .iter()
        .filter_map(|e| match e.event {
            Event::PongReceived { seq, rtt_nanos, .. } => Some((seq, rtt_nanos)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_ping_is_answered_after_one_wan_round_trip() {
    let des = run(1);
    let pongs = pongs(&des);
    assert_eq!(pongs.len() as u64, PINGS);
    for (i, (seq, rtt)) in pongs.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        // 2 × 40 ms latency plus a few microseconds of serialization.
        assert!((80_000_000..81_000_000).contains(rtt), "rtt {rtt} ns");
    }
    assert!(des.now().as_duration() >= Duration::from_secs(PINGS - 1));
}

#[test]
fn same_seed_same_trace_hash() {
    assert_eq!(run(7).trace().hash(), run(7).trace().hash());
}

#[test]
fn another_seed_passes_with_another_trace() {
    let (a, b) = (run(7), run(8));
    assert_eq!(pongs(&b).len() as u64, PINGS);
    assert_ne!(a.trace().hash(), b.trace().hash(), "the seed must reach the run");
}

/// A node that refuses its peer's input closes the connection: both ends
/// hear `PeerDown`, the pair connects again, and later pings are answered.
#[test]
fn a_refused_input_breaks_the_connection_and_it_is_made_again() {
    let mut des = Des::new(Network::default());
    des.keep_trace();
    des.add_node(SiteId(0), Box::new(PingPong::pinger(NodeId(1), Duration::from_secs(1), 3)));
    des.add_node(SiteId(0), Box::new(RefusesFirstPing::default()));
    des.connect_all();
    while des.step() {}
    let seqs: Vec<u64> = pongs(&des).into_iter().map(|(seq, _)| seq).collect();
    assert_eq!(seqs, [1, 2], "the refused ping is not answered, the later ones are");
    let refused = des.trace().entries().iter().filter(|e| matches!(e.event, Event::InputRefused { peer: NodeId(0), .. })).count();
    let downs = des.trace().entries().iter().filter(|e| matches!(e.event, Event::PeerDown { .. })).count();
    assert_eq!((refused, downs), (1, 2), "one refusal; each end hears the connection go down once");
}
