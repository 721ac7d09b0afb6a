//! One life of a role (see [`crate::driver`]): the node, the inputs it
//! is fed — the corpus's, or noise of every sort — and what the fuzzer
//! learnt from its outputs to make the next ones.

use crate::catch::feed;
use crate::completions::{Backends, push_bounded};
use crate::driver::{AGES, Fuzzer, Target, truncate};
use crate::harvest::{Found, Key, Pools};
use crate::messages::{answer_to, build};
use crate::values::Gen;
use crate::variants::variant_of;
use blockferry_core::node::{Input, Node, Output, TimerId};
use blockferry_core::roles::{Authorised, Direct, Host, Manager, Proxy, Repository};
use blockferry_core::wire::{MAX_FRAME_DEFAULT, frame_len};
use blockferry_core::{Message, NodeId, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

/// A role's state machine that can also be printed: the length of its
/// `Debug` text is the fuzzer's measure of how much state it holds.
trait Fuzzed: Node + fmt::Debug {}
impl<T: Node + fmt::Debug> Fuzzed for T {}

type Subject = Authorised<Box<dyn Fuzzed>>;

/// What a life learnt from its node's outputs: what to answer, which
/// timers to fire, which ids to use.
#[derive(Default)]
pub(crate) struct Knowledge {
    timers: BTreeMap<TimerId, Timestamp>,
    /// Recent sends: the peer, the message's kind and what it named.
    recent: VecDeque<(NodeId, &'static str, Found)>,
    pools: Pools,
    pub(crate) backends: Backends,
    /// What the latest messages naming a task told the node (its disk's
    /// size and block size...): an answer about the task names it too.
    tasks: VecDeque<(u64, Found)>,
    /// Inputs a real driver feeds next (`PeerDown` after a `Close`).
    queued: VecDeque<Input>,
    pub(crate) refusals: u64,
    /// Messages sent that no frame can carry (a driver cannot send them).
    pub(crate) oversized_sends: u64,
    /// Print every output (a verbose run).
    pub(crate) verbose: bool,
    /// What the node sent and reported, by kind: how deep the life went.
    pub(crate) sent: BTreeMap<&'static str, u64>,
    pub(crate) events: BTreeMap<&'static str, u64>,
}

/// Bounds on what a life keeps, whatever the node does.
const RECENT: usize = 32;
const TIMERS: usize = 1024;
const QUEUED: usize = 16;
const TASKS: usize = 64;

impl Knowledge {
    fn take(&mut self, output: Output) {
        if self.verbose {
            println!("    → {}", truncate(format!("{output:?}"), 300));
        }
        match output {
            Output::Send { to, msg } => {
                *self.sent.entry(msg.kind()).or_default() += 1;
                if frame_len(&msg).is_ok_and(|len| len > MAX_FRAME_DEFAULT) {
                    self.oversized_sends += 1;
                }
                let mut found = Found::of(&msg);
                self.pools.add(&found);
                let task = found.first(Key::Task);
                if let Some((_, told)) = self.tasks.iter().rev().find(|(t, _)| Some(*t) == task) {
                    found.extend(told);
                }
                push_bounded(&mut self.recent, (to, msg.kind(), found), RECENT);
            }
            Output::SetTimer { id, at } => {
                if self.timers.len() < TIMERS || self.timers.contains_key(&id) {
                    self.timers.insert(id, at);
                }
            }
            Output::CancelTimer(id) => _ = self.timers.remove(&id),
            Output::Storage(request) => {
                self.pools.add(&Found::of(&request));
                self.backends.storage_request(request);
            }
            Output::Hypervisor(request) => {
                self.pools.add(&Found::of(&request));
                self.backends.hypervisor_request(request);
            }
            Output::Event(event) => {
                if let Some(name) = variant_of(&event) {
                    *self.events.entry(name).or_default() += 1;
                }
            }
            Output::Close { peer, .. } => {
                self.refusals += 1;
                if self.queued.len() < QUEUED {
                    self.queued.push_back(Input::PeerDown(peer));
                }
            }
        }
    }
}

/// One life of a role (see the module documentation).
pub(crate) struct Life<'f> {
    fuzzer: &'f Fuzzer,
    rng: ChaCha8Rng,
    target: Target,
    /// The deployment's node this life plays.
    pub(crate) id: NodeId,
    node: Subject,
    corpus: &'f [(Timestamp, Input)],
    cursor: usize,
    /// Percent of inputs that are random rather than the corpus's next.
    pub(crate) noise: u32,
    /// Inputs the life lasts (unless its node panics).
    pub(crate) length: u64,
    pub(crate) now: Timestamp,
    pub(crate) k: Knowledge,
}

impl<'f> Life<'f> {
    pub(crate) fn new(fuzzer: &'f Fuzzer, target: Target, seed: u64, number: u64) -> Life<'f> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((target as u64) << 56) ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // `Fuzzer::new` made sure the deployment has a node of every role.
        let candidates: Vec<NodeId> = fuzzer.roster.iter().filter(|(_, r)| **r == target.role()).map(|(id, _)| *id).collect();
        let id = candidates[rng.random_range(0..candidates.len())];
        let length = match rng.random_range(0..100) {
            0..30 => rng.random_range(50..500),
            30..80 => rng.random_range(500..5_000),
            80..98 => rng.random_range(5_000..50_000),
            _ => rng.random_range(50_000..500_000),
        };
        let noise = [2, 10, 30, 60, 100][rng.random_range(0..5)];
        let corpus = fuzzer.corpus.inputs.get(&id).map_or(&[][..], Vec::as_slice);
        Life {
            fuzzer,
            rng,
            target,
            id,
            node: make(fuzzer, id, target),
            corpus,
            cursor: 0,
            noise,
            length,
            now: Timestamp::ZERO,
            k: Knowledge::default(),
        }
    }

    /// Feeds one input and drains the node; `Err` is a panic's message.
    pub(crate) fn feed(&mut self, input: Input) -> Result<(), String> {
        if let Input::Message { msg, .. } = &input {
            // What peers told the node (a task's disk size) is what it holds.
            let found = Found::of(msg);
            self.k.pools.add(&found);
            if let Some(task) = found.first(Key::Task) {
                push_bounded(&mut self.k.tasks, (task, found), TASKS);
            }
        }
        let k = &mut self.k;
        feed(&mut self.node, self.now, input, |output| k.take(output))
    }

    pub(crate) fn measure(&self, age: u64, by_age: &mut BTreeMap<u64, usize>) {
        let bytes = format!("{:?}", self.node).len();
        let age = AGES.iter().copied().filter(|a| *a <= age).max().unwrap_or(0);
        let largest = by_age.entry(age).or_default();
        *largest = (*largest).max(bytes);
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn draw<'a>(rng: &'a mut ChaCha8Rng, pools: &'a Pools, fuzzer: &'a Fuzzer, ctx: Option<&'a Found>) -> Gen<'a> {
        Gen { rng, pools, ctx, stock: &fuzzer.stock }
    }

    /// The next input: what a driver owes, the corpus's next, or noise.
    pub(crate) fn next_input(&mut self) -> Input {
        if let Some(input) = self.k.queued.pop_front() {
            return input;
        }
        if self.cursor < self.corpus.len()
            && !self.chance(self.noise)
            && let Some(input) = self.replay()
        {
            return input;
        }
        self.advance_clock();
        match self.rng.random_range(0..1000) {
            0..400 => self.reply(),
            400..580 => self.fresh(),
            580..700 => self.timer(),
            700..850 => self.completion(),
            850..910 => {
                let peer = self.fuzzer.stock.nodes[self.rng.random_range(0..self.fuzzer.stock.nodes.len())].0;
                if self.chance(50) { Input::PeerUp(peer) } else { Input::PeerDown(peer) }
            }
            910..995 => self.old_message(),
            _ => self.crash(),
        }
    }

    /// Random inputs arrive a little later than the last, now and then
    /// much later.
    fn advance_clock(&mut self) {
        let nanos = match self.rng.random_range(0..100) {
            0..90 => self.rng.random_range(0..20_000_000),
            90..99 => self.rng.random_range(0..10_000_000_000),
            _ => self.rng.random_range(0..3_600_000_000_000),
        };
        self.now = self.now + Duration::from_nanos(nanos);
    }

    /// The corpus's next input this incarnation can take (a timer it
    /// armed, a completion of a request it made, anything else), sometimes
    /// mutated.
    fn replay(&mut self) -> Option<Input> {
        while let Some((at, input)) = self.corpus.get(self.cursor) {
            self.cursor += 1;
            let usable = match input {
                Input::Start => false,
                Input::Timer(id) => self.k.timers.remove(id).map(|armed| self.now = self.now.max(armed)).is_some(),
                Input::Storage(c) => self.k.backends.take_if_pending(c.id),
                Input::Hypervisor(c) => self.k.backends.take_if_pending(c.id),
                Input::Message { .. } | Input::PeerUp(_) | Input::PeerDown(_) => true,
            };
            if usable {
                self.now = self.now.max(*at);
                let mutate = self.noise > 2 && self.chance(self.noise / 3);
                return Some(match input {
                    Input::Message { from, msg } if mutate => self.mutate(*from, msg),
                    _ => input.clone(),
                });
            }
        }
        None
    }

    /// A corpus message again: the same kind with values drawn from it
    /// (mostly) or anywhere, or as it was from another peer.
    fn mutate(&mut self, from: NodeId, msg: &Message) -> Input {
        let found = Found::of(msg);
        let mut g = Self::draw(&mut self.rng, &self.k.pools, self.fuzzer, Some(&found));
        if g.chance(30) {
            return Input::Message { from: g.node(None), msg: msg.clone() };
        }
        let msg = build(&mut g, msg.kind()).unwrap_or_else(|| msg.clone());
        Input::Message { from, msg }
    }

    /// Any corpus message of this node's, at any time, mutated or not.
    fn old_message(&mut self) -> Input {
        let messages = self.corpus.iter().filter(|(_, i)| matches!(i, Input::Message { .. })).count();
        let Some((_, Input::Message { from, msg })) =
            self.corpus.iter().filter(|(_, i)| matches!(i, Input::Message { .. })).nth(self.rng.random_range(0..messages.max(1)))
        else {
            return self.fresh();
        };
        if self.chance(50) { Input::Message { from: *from, msg: msg.clone() } } else { self.mutate(*from, msg) }
    }

    /// An answer to something the node sent: a kind the peer's role may
    /// send this one, naming what the request named.
    fn reply(&mut self) -> Input {
        if self.k.recent.is_empty() {
            return self.fresh();
        }
        // Mostly one of the latest: what a peer answers next.
        let len = self.k.recent.len();
        let nth = if self.chance(50) { len - 1 - self.rng.random_range(0..len.min(4)) } else { self.rng.random_range(0..len) };
        let (peer, asked, found) = &self.k.recent[nth];
        let kind = match answer_to(asked) {
            Some(answer) if self.rng.random_range(0..100) < 80 => answer,
            _ => {
                let peer_role = self.fuzzer.roster.get(peer).copied();
                let mut kinds = self.fuzzer.kinds.iter().filter(|(_, r)| {
                    r.is_some_and(|r| r.to.contains(&self.target.role()) && peer_role.is_some_and(|p| r.from.contains(&p)))
                });
                let count = kinds.clone().count();
                let Some((kind, _)) = kinds.nth(self.rng.random_range(0..count.max(1))) else { return self.fresh() };
                kind.as_str()
            }
        };
        let mut g = Self::draw(&mut self.rng, &self.k.pools, self.fuzzer, Some(found));
        let from = if g.chance(95) { *peer } else { g.node(None) };
        match build(&mut g, kind) {
            Some(msg) => Input::Message { from, msg },
            None => self.fresh(),
        }
    }

    /// A message of any kind (mostly one the node takes), mostly from a
    /// peer whose role may send it.
    fn fresh(&mut self) -> Input {
        let kinds = if self.chance(70) { &self.fuzzer.taken[&self.target] } else { &self.fuzzer.kinds };
        let (kind, route) = &kinds[self.rng.random_range(0..kinds.len())];
        let mut g = Self::draw(&mut self.rng, &self.k.pools, self.fuzzer, None);
        let from = match route {
            Some(r) if r.to.contains(&self.target.role()) && !r.from.is_empty() && g.chance(75) => {
                let role = r.from[g.below(r.from.len())];
                g.node(Some(role))
            }
            _ => g.node(None),
        };
        match build(&mut g, kind) {
            Some(msg) => Input::Message { from, msg },
            None => Input::PeerUp(from),
        }
    }

    /// A timer the node armed (mostly the earliest), or, rarely, one it
    /// never armed.
    fn timer(&mut self) -> Input {
        let armed = match self.rng.random_range(0..100) {
            _ if self.k.timers.is_empty() => None,
            0..70 => self.k.timers.iter().min_by_key(|(_, at)| **at).map(|(id, at)| (*id, *at)),
            70..97 => self.k.timers.iter().nth(self.rng.random_range(0..self.k.timers.len())).map(|(id, at)| (*id, *at)),
            _ => None,
        };
        match armed {
            Some((id, at)) => {
                self.k.timers.remove(&id);
                self.now = self.now.max(at);
                Input::Timer(id)
            }
            None => Input::Timer(TimerId([0, 1, u64::MAX, u64::MAX - 1, 1 << 32, 1 << 63][self.rng.random_range(0..6)])),
        }
    }

    /// A storage or hypervisor completion (see [`Backends`]).
    fn completion(&mut self) -> Input {
        let mut g = Self::draw(&mut self.rng, &self.k.pools, self.fuzzer, None);
        // A manager makes no requests: anything it gets is for none.
        let storage = match self.target {
            Target::Repository => true,
            Target::Host | Target::Proxy => false,
            Target::Manager => g.chance(50),
        };
        if storage {
            Input::Storage(self.k.backends.storage_completion(&mut g))
        } else {
            Input::Hypervisor(self.k.backends.hypervisor_completion(&mut g))
        }
    }

    /// The node crashes and comes back fresh on the same store: what it
    /// had in flight is gone.
    fn crash(&mut self) -> Input {
        self.node = make(self.fuzzer, self.id, self.target);
        self.k.timers.clear();
        self.k.queued.clear();
        self.k.backends.crash();
        Input::Start
    }
}

/// A fresh node of the deployment, as production builds it.
fn make(fuzzer: &Fuzzer, id: NodeId, target: Target) -> Subject {
    let topo = &fuzzer.corpus.topo;
    let role: Box<dyn Fuzzed> = match target {
        Target::Manager => Box::new(Manager::new(topo.deployment.clone())),
        Target::Host => Box::new(Host::new()),
        Target::Proxy => match topo.direct.get(&id) {
            Some(hosts) => Box::new(Direct::new(Proxy::new(), hosts.iter().copied())),
            None => Box::new(Proxy::new()),
        },
        Target::Repository => Box::new(Repository::new().expecting_blocks(topo.expected_blocks.get(&id).copied().unwrap_or(0))),
    };
    Authorised::new(role, target.role(), fuzzer.roster.clone())
}
