//! How fast the discrete-event engine runs an idle world: 10 nodes, each
//! with a 30 s keepalive timer (what an idle daemon does), for 1000
//! simulated hours. Prints one line and writes it to reports/des-idle.md.
//!
//! Run: `cargo bench -p blockferry-sim --bench des_idle`

use blockferry_core::node::{Input, Node, Outbox, Output, TimerId};
use blockferry_core::{NodeId, Timestamp};
use blockferry_sim::des::Des;
use blockferry_sim::net::{Network, SiteId};
use std::time::{Duration, Instant};

/// A daemon with nothing to do but keep its keepalive timer running.
struct Idle {
    out: Outbox,
}

const KEEPALIVE: TimerId = TimerId(0);
const PERIOD: Duration = Duration::from_secs(30);

impl Node for Idle {
    fn handle(&mut self, now: Timestamp, input: Input) {
        if matches!(input, Input::PeerUp(NodeId(0)) | Input::Timer(_)) {
            self.out.set_timer(KEEPALIVE, now + PERIOD);
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }
}

fn main() {
    const NODES: u32 = 10;
    const HOURS: u64 = 1000;
    let mut des = Des::new(Network::default());
    for _ in 0..NODES {
        des.add_node(SiteId(0), Box::new(Idle { out: Outbox::default() }));
    }
    des.connect_all();
    let wall = Instant::now();
    des.run_until(Timestamp::ZERO + Duration::from_secs(HOURS * 3600));
    let secs = wall.elapsed().as_secs_f64();
    let steps = des.stats().steps;
    let line = format!(
        "des idle world: {NODES} nodes, {HOURS} simulated hours, {steps} steps in {secs:.3} s wall = {:.0} simulated hours per wall second",
        HOURS as f64 / secs
    );
    println!("{line}");
    let report = format!(
        "# Discrete-event engine: idle world\n\nCommand: `cargo bench -p blockferry-sim --bench des_idle`\n\n{line}\n\n\
         For comparison, turmoil ticks every host every tick: 10 idle hosts at a 10 ms tick cost ~5 s of wall time per\n\
         simulated hour on this machine (../shared/NOTES.md).\n"
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/des-idle.md");
    if let Err(e) = std::fs::write(path, report) {
        eprintln!("could not write {path}: {e}");
    }
}
