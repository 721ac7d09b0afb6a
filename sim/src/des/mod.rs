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
//!
//! Faults follow the real driver's semantics ([`conns`]): a partition, a
//! crash or a link's `breaks` draw breaks connections (both ends are told
//! `PeerDown`, messages in flight are lost, later sends wait in a queue), and
//! a repair or restart reconnects them (`PeerUp` after a round trip, queue
//! flushed). A crashed node's pending timers and request completions die
//! with its incarnation.

mod conns;

use conns::Conns;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::time::Duration;

use crate::net::{Flow, Network, SiteId, tcp};
use crate::trace::Trace;
use blockferry_core::hypervisor::{HypervisorCompletion, HypervisorRequest};
use blockferry_core::node::{Input, Node, Output, TimerId};
use blockferry_core::storage::{StorageCompletion, StorageError, StorageRequest};
use blockferry_core::{Message, NodeId, Timestamp};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// What an engine step does.
#[derive(Debug)]
enum Scheduled {
    /// Feed `input` to the node, if it is still the same incarnation.
    Input(NodeId, u64, Input),
    /// Deliver a message sent on the pair's connection of this epoch.
    Deliver { from: NodeId, to: NodeId, epoch: u64, msg: Message },
    /// Fire a timer, unless it was moved or cancelled since (generation).
    Timer(NodeId, TimerId, u64),
    /// Re-establish the pair's connection (after a break or a repair).
    Reconnect(NodeId, NodeId),
}

/// How long a driver waits before redialing a broken connection.
pub const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A queue entry. What it does is boxed: messages and completions are
/// large, and the heap moves entries at every push and pop.
#[derive(Debug)]
struct Entry {
    at: Timestamp,
    seq: u64,
    what: Box<Scheduled>,
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
    alive: bool,
    /// Bumped on every crash: inputs scheduled for an older one are void.
    incarnation: u64,
    /// A proxy's TCP flows per peer connection (`None`: not a proxy).
    streams: Option<u32>,
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
    /// Messages lost in flight (broken connections).
    pub messages_lost: u64,
}

pub struct Des {
    now: Timestamp,
    seq: u64,
    next_generation: u64,
    queue: BinaryHeap<Reverse<Entry>>,
    slots: Vec<Slot>,
    net: Network,
    services: Box<dyn Services>,
    conns: Conns,
    /// Site pairs that cannot talk now.
    partitions: BTreeSet<(SiteId, SiteId)>,
    /// Draws which messages break their connection (only when some link
    /// has `breaks > 0`).
    rng: Option<ChaCha8Rng>,
    trace: Trace,
    stats: DesStats,
}

impl Des {
    /// An engine whose nodes have no storage or hypervisor.
    pub fn new(net: Network) -> Self {
        Self::with_services(net, Box::new(NoServices))
    }

    /// The engine's clock starts at `start` instead of the Unix epoch
    /// (before any node is added).
    pub fn starting_at(mut self, start: Timestamp) -> Self {
        self.now = start;
        self
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
            conns: Conns::default(),
            partitions: BTreeSet::new(),
            rng: None,
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
        self.slots.push(Slot { node, site, timers: BTreeMap::new(), alive: true, incarnation: 0, streams: None });
        id
    }

    /// Makes `node` a proxy whose connections bundle `streams` TCP flows
    /// (see [`tcp::bundle`]).
    pub fn set_streams(&mut self, node: NodeId, streams: u32) {
        if let Some(slot) = self.slots.get_mut(node.0 as usize) {
            slot.streams = Some(streams);
        }
    }

    /// The RNG that decides which messages a breaking link breaks on.
    pub fn set_breaks_rng(&mut self, rng: ChaCha8Rng) {
        self.rng = Some(rng);
    }

    /// Connects every pair of nodes whose sites are linked: both ends are
    /// told `PeerUp` after one round trip (the handshake), as the real
    /// driver does.
    pub fn connect_all(&mut self) {
        let n = self.slots.len() as u32;
        for a in 0..n {
            for b in a + 1..n {
                self.connect(NodeId(a), NodeId(b));
            }
        }
    }

    /// Starts the handshake of a pair, if it can talk: `PeerUp` to both
    /// after a round trip, then the queued messages.
    fn connect(&mut self, a: NodeId, b: NodeId) {
        let (sa, sb) = (self.slots[a.0 as usize].site, self.slots[b.0 as usize].site);
        let Some(latency) = self.net.latency(sa, sb) else { return };
        if !self.can_talk(a, b) {
            return;
        }
        let conn = self.conns.get(a, b);
        if conn.up || conn.reconnecting {
            return;
        }
        conn.reconnecting = true;
        self.schedule(self.now + latency * 2, Scheduled::Reconnect(a, b));
    }

    fn can_talk(&self, a: NodeId, b: NodeId) -> bool {
        let (sa, sb) = (self.slots[a.0 as usize].site, self.slots[b.0 as usize].site);
        self.slots[a.0 as usize].alive && self.slots[b.0 as usize].alive && !self.partitions.contains(&site_key(sa, sb))
    }

    fn reconnected(&mut self, a: NodeId, b: NodeId) {
        self.conns.get(a, b).reconnecting = false;
        if !self.can_talk(a, b) || self.conns.get(a, b).up {
            return;
        }
        self.conns.get(a, b).up = true;
        // What a node sends on hearing `PeerUp` queues behind what it sent
        // while the pair was down (a driver writes its per-peer queue in
        // order), then the queue goes out, in order, while the connection
        // holds.
        self.feed_alive(a, Input::PeerUp(b));
        self.feed_alive(b, Input::PeerUp(a));
        let mut queued = std::mem::take(&mut self.conns.get(a, b).queued).into_iter();
        while self.conns.get(a, b).up {
            let Some((from, to, msg)) = queued.next() else { break };
            self.transmit(from, to, msg);
        }
        self.conns.get(a, b).queued.extend(queued);
    }

    /// Breaks a pair's connection: in-flight messages are lost, both live
    /// ends are told.
    fn break_pair(&mut self, a: NodeId, b: NodeId) {
        self.net.reset_conn(a, b);
        if self.conns.break_pair(a, b) {
            self.feed_alive(a, Input::PeerDown(b));
            self.feed_alive(b, Input::PeerDown(a));
        }
    }

    /// Breaks a pair's connection on a live link (a drawn break, or a node
    /// closing it): it is made again after [`RECONNECT_DELAY`].
    fn break_and_redial(&mut self, a: NodeId, b: NodeId) {
        self.break_pair(a, b);
        self.conns.get(a, b).reconnecting = true;
        self.schedule(self.now + RECONNECT_DELAY, Scheduled::Reconnect(a, b));
    }

    /// No traffic between two sites until [`Des::repair`].
    pub fn partition(&mut self, a: SiteId, b: SiteId) {
        self.partitions.insert(site_key(a, b));
        for (x, y) in self.conns.pairs() {
            let (sx, sy) = (self.slots[x.0 as usize].site, self.slots[y.0 as usize].site);
            if site_key(sx, sy) == site_key(a, b) {
                self.break_pair(x, y);
            }
        }
    }

    pub fn repair(&mut self, a: SiteId, b: SiteId) {
        self.partitions.remove(&site_key(a, b));
        for (x, y) in self.conns.pairs() {
            self.connect(x, y);
        }
    }

    /// Changes a link's bandwidth (slow_link faults; `None`: unlimited).
    pub fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>) {
        self.net.set_bandwidth(a, b, bandwidth_bps);
    }

    /// The node stops at once: its state, timers and pending completions are
    /// gone and its connections break. The world's side of a crash (lost
    /// unsynced writes) is the caller's to apply.
    pub fn crash(&mut self, node: NodeId) {
        let slot = &mut self.slots[node.0 as usize];
        if !slot.alive {
            return;
        }
        slot.alive = false;
        slot.incarnation += 1;
        slot.timers.clear();
        for (a, b) in self.conns.pairs_of(node) {
            self.break_pair(a, b);
            // Its send queue died with the process.
            self.conns.get(a, b).queued.retain(|(from, _, _)| *from != node);
        }
    }

    /// The node comes back as `fresh` (a new state machine), gets `Start`,
    /// and reconnects.
    pub fn restart(&mut self, node: NodeId, fresh: Box<dyn Node>) {
        let slot = &mut self.slots[node.0 as usize];
        if slot.alive {
            return;
        }
        slot.alive = true;
        slot.node = fresh;
        self.feed(node, Input::Start);
        for (a, b) in self.conns.pairs_of(node) {
            self.connect(a, b);
        }
    }

    pub fn is_alive(&self, node: NodeId) -> bool {
        self.slots.get(node.0 as usize).is_some_and(|s| s.alive)
    }

    /// Feeds `input` to `node` at `at` (scenario actions, faults, tests).
    pub fn inject(&mut self, at: Timestamp, node: NodeId, input: Input) {
        let incarnation = self.slots[node.0 as usize].incarnation;
        self.schedule(at.max(self.now), Scheduled::Input(node, incarnation, input));
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
        match *entry.what {
            Scheduled::Input(node, incarnation, input) => {
                if self.slots[node.0 as usize].incarnation == incarnation {
                    self.feed_alive(node, input);
                }
            }
            Scheduled::Deliver { from, to, epoch, msg } => {
                if self.conns.epoch(from, to) == epoch && self.conns.get(from, to).up {
                    self.feed_alive(to, Input::Message { from, msg });
                } else {
                    self.stats.messages_lost += 1;
                }
            }
            Scheduled::Reconnect(a, b) => self.reconnected(a, b),
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
        self.queue.push(Reverse(Entry { at, seq: self.seq, what: Box::new(what) }));
    }

    fn feed_alive(&mut self, node: NodeId, input: Input) {
        if self.slots[node.0 as usize].alive {
            self.feed(node, input);
        }
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
                if to.0 as usize >= self.slots.len() || to == node {
                    return;
                }
                let conn = self.conns.get(node, to);
                if conn.up && conn.queued.is_empty() {
                    self.transmit(node, to, msg);
                } else {
                    conn.queued.push((node, to, msg));
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
                let incarnation = self.slots[node.0 as usize].incarnation;
                self.schedule(at.max(self.now), Scheduled::Input(node, incarnation, Input::Storage(done)));
            }
            Output::Hypervisor(request) => {
                let (at, done) = self.services.hypervisor(self.now, node, request);
                let incarnation = self.slots[node.0 as usize].incarnation;
                self.schedule(at.max(self.now), Scheduled::Input(node, incarnation, Input::Hypervisor(done)));
            }
            Output::Event(event) => self.trace.record(self.now, node, &event),
            // The node refused the peer's input: the connection breaks and
            // is made again, as a real driver's dial loop does.
            Output::Close { peer, .. } => {
                if peer.0 as usize >= self.slots.len() || peer == node || !self.conns.get(node, peer).up {
                    return;
                }
                self.break_and_redial(node, peer);
            }
        }
    }
}

impl Des {
    /// Puts a message on the wire of a connected pair. A link with `breaks`
    /// may break the connection instead: the message is lost, both ends are
    /// told, and the drivers redial after [`RECONNECT_DELAY`].
    fn transmit(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let (sender, receiver) = (&self.slots[from.0 as usize], &self.slots[to.0 as usize]);
        let flow = Flow { from: sender.site, to: receiver.site, ends: (from, to), streams: tcp::bundle(sender.streams, receiver.streams) };
        if self.net.link(flow.from, flow.to).is_some_and(|l| l.draw_break(self.rng.as_mut())) {
            self.stats.messages_lost += 1;
            self.break_and_redial(from, to);
            return;
        }
        let bytes = msg.wire_bytes();
        if let Some(at) = self.net.send(self.now, flow, bytes) {
            self.stats.messages += 1;
            self.stats.message_bytes += bytes;
            let epoch = self.conns.epoch(from, to);
            self.schedule(at, Scheduled::Deliver { from, to, epoch, msg });
        }
    }
}

fn site_key(a: SiteId, b: SiteId) -> (SiteId, SiteId) {
    if a <= b { (a, b) } else { (b, a) }
}
