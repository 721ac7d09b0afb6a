//! The discrete-event engine: steps core state machines directly.
//!
//! One priority queue of scheduled inputs keyed by (time, sequence number);
//! the engine pops the earliest, jumps `now` to its time, feeds it to its
//! node and drains the node's outputs (the drain invariant of
//! `blockferry_core::node`). Sends become deliveries scheduled through the
//! [`Network`] model; timers become scheduled inputs, cancelled lazily by a
//! per-timer generation. Nothing else advances time, so an idle simulated day
//! costs nothing, and the sequence number makes ties replay in the order they
//! were scheduled: one seed, one run.

use crate::net::{Network, SiteId};
use crate::trace::Trace;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::node::{Input, Node, Output, TimerId};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageRequest};
use blockferry_core::wire::frame_len;
use blockferry_core::{NodeId, Timestamp};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// What an engine step does.
#[derive(Debug)]
enum Scheduled {
    /// Feed `input` to the node.
    Input(NodeId, Input),
    /// Fire a timer, unless it was moved or cancelled since (generation).
    Timer(NodeId, TimerId, u64),
}

#[derive(Debug)]
struct Entry {
    at: Timestamp,
    seq: u64,
    what: Scheduled,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Slot {
    node: Box<dyn Node>,
    site: SiteId,
    /// Armed timers and their current generation.
    timers: BTreeMap<TimerId, u64>,
}

/// What carries out nodes' storage and hypervisor requests: the simulated
/// world. Each answer says when the request completes.
pub trait Services {
    fn storage(&mut self, now: Timestamp, node: NodeId, request: StorageRequest) -> (Timestamp, StorageCompletion);
    fn hypervisor(&mut self, now: Timestamp, node: NodeId, request: HypervisorRequest) -> (Timestamp, HypervisorCompletion);
}

/// A world with no storage and no hypervisors: every request fails at once.
pub struct NoServices;

impl Services for NoServices {
    fn storage(&mut self, now: Timestamp, _: NodeId, request: StorageRequest) -> (Timestamp, StorageCompletion) {
        (now, StorageCompletion { id: request.id, result: Err(StorageError::Io("this node has no storage".into())) })
    }
    fn hypervisor(&mut self, now: Timestamp, _: NodeId, request: HypervisorRequest) -> (Timestamp, HypervisorCompletion) {
        (now, HypervisorCompletion { id: request.id, result: Err("this node has no hypervisor".into()) })
    }
}

/// Counters the engine keeps about itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct DesStats {
    pub steps: u64,
    pub messages: u64,
    pub message_bytes: u64,
}

pub struct Des {
    now: Timestamp,
    seq: u64,
    next_generation: u64,
    queue: BinaryHeap<Reverse<Entry>>,
    slots: Vec<Slot>,
    net: Network,
    services: Box<dyn Services>,
    trace: Trace,
    stats: DesStats,
}

impl Des {
    /// An engine whose nodes have no storage or hypervisor.
    pub fn new(net: Network) -> Self {
        Self::with_services(net, Box::new(NoServices))
    }

    pub fn with_services(net: Network, services: Box<dyn Services>) -> Self {
        Des {
            now: Timestamp::ZERO,
            seq: 0,
            next_generation: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            net,
            services,
            trace: Trace::default(),
            stats: DesStats::default(),
        }
    }

    /// Keeps trace entries (for printing), not only their hash.
    pub fn keep_trace(&mut self) {
        self.trace = Trace::keeping();
    }

    /// Adds a node at `site`; node ids are assigned in order from 0.
    pub fn add_node(&mut self, site: SiteId, node: Box<dyn Node>) -> NodeId {
        let id = NodeId(u32::try_from(self.slots.len()).expect("fewer than 2^32 nodes"));
        self.slots.push(Slot { node, site, timers: BTreeMap::new() });
        id
    }

    /// Connects every pair of nodes whose sites are linked: both ends are
    /// told `PeerUp` after one round trip (the handshake), as the real
    /// driver does.
    pub fn connect_all(&mut self) {
        let n = self.slots.len();
        for a in 0..n {
            for b in a + 1..n {
                let (sa, sb) = (self.slots[a].site, self.slots[b].site);
                let Some(latency) = self.net.latency(sa, sb) else { continue };
                let at = self.now + latency * 2;
                let (a, b) = (NodeId(a as u32), NodeId(b as u32));
                self.schedule(at, Scheduled::Input(a, Input::PeerUp(b)));
                self.schedule(at, Scheduled::Input(b, Input::PeerUp(a)));
            }
        }
    }

    /// Feeds `input` to `node` at `at` (scenario actions, faults, tests).
    pub fn inject(&mut self, at: Timestamp, node: NodeId, input: Input) {
        self.schedule(at.max(self.now), Scheduled::Input(node, input));
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn trace_mut(&mut self) -> &mut Trace {
        &mut self.trace
    }

    pub fn network(&self) -> &Network {
        &self.net
    }

    pub fn stats(&self) -> DesStats {
        self.stats
    }

    /// Time of the next scheduled step, if any.
    pub fn next_at(&self) -> Option<Timestamp> {
        self.queue.peek().map(|Reverse(e)| e.at)
    }

    /// Runs one scheduled step; `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(entry)) = self.queue.pop() else { return false };
        self.now = entry.at;
        self.stats.steps += 1;
        match entry.what {
            Scheduled::Input(node, input) => self.feed(node, input),
            Scheduled::Timer(node, id, generation) => {
                let slot = &mut self.slots[node.0 as usize];
                if slot.timers.get(&id) == Some(&generation) {
                    slot.timers.remove(&id);
                    self.feed(node, Input::Timer(id));
                }
            }
        }
        true
    }

    /// Runs every step scheduled up to and including `until`, then sets the
    /// clock to `until`. Returns the number of steps run.
    pub fn run_until(&mut self, until: Timestamp) -> u64 {
        let mut steps = 0;
        while self.next_at().is_some_and(|at| at <= until) {
            self.step();
            steps += 1;
        }
        self.now = self.now.max(until);
        steps
    }

    fn schedule(&mut self, at: Timestamp, what: Scheduled) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, what }));
    }

    /// One input, then the full drain.
    fn feed(&mut self, node: NodeId, input: Input) {
        let now = self.now;
        self.slots[node.0 as usize].node.handle(now, input);
        while let Some(output) = self.slots[node.0 as usize].node.poll_output() {
            self.carry_out(node, output);
        }
    }

    fn carry_out(&mut self, node: NodeId, output: Output) {
        match output {
            Output::Send { to, msg } => {
                let Some(dest) = self.slots.get(to.0 as usize) else { return };
                let from_site = self.slots[node.0 as usize].site;
                let bytes = frame_len(&msg).unwrap_or(0) as u64 + msg.modelled_extra_bytes();
                if let Some(at) = self.net.transmit(self.now, from_site, dest.site, bytes) {
                    self.stats.messages += 1;
                    self.stats.message_bytes += bytes;
                    self.schedule(at, Scheduled::Input(to, Input::Message { from: node, msg }));
                }
            }
            Output::SetTimer { id, at } => {
                self.next_generation += 1;
                let generation = self.next_generation;
                self.slots[node.0 as usize].timers.insert(id, generation);
                self.schedule(at.max(self.now), Scheduled::Timer(node, id, generation));
            }
            Output::CancelTimer(id) => {
                self.slots[node.0 as usize].timers.remove(&id);
            }
            Output::Storage(request) => {
                let (at, done) = self.services.storage(self.now, node, request);
                self.schedule(at.max(self.now), Scheduled::Input(node, Input::Storage(done)));
            }
            Output::Hypervisor(request) => {
                let (at, done) = self.services.hypervisor(self.now, node, request);
                self.schedule(at.max(self.now), Scheduled::Input(node, Input::Hypervisor(done)));
            }
            Output::Event(event) => self.trace.record(self.now, node, &event),
        }
    }
}
