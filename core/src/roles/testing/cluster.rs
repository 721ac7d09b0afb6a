//! Stepping several roles against each other, as a deployment runs them:
//! each node wrapped in [`Authorised`] with one shared roster, every
//! message carried on its pair's connection in order, storage served by an
//! in-memory store and hypervisor requests by an in-memory hypervisor, and
//! time a virtual clock that moves only to the next timer. A test steps
//! the whole deployment, and crafts what a real one meets: a message
//! injected from any peer, held or dropped, a broken connection, a
//! restarted node.
//!
//! The connection semantics are the real drivers' (and the simulator's):
//! both ends of a pair are told `PeerUp` when it connects and `PeerDown`
//! when it breaks; what was in flight on a broken connection is lost;
//! what a node sends while its pair is down waits in the pair's send queue
//! and goes out, in order, after both ends heard `PeerUp` (so what they
//! send on hearing it queues behind). A node that closes a connection sees
//! it broken and made again [`REDIAL`] later. A crash loses the node's
//! state, timers, pending completions, unsent queue and whatever its store
//! had not made durable; a restart is a fresh node fed `Start` that then
//! connects again.
//!
//! Messages and completions take no time: everything due now is carried
//! out, in the order it arose, before the clock moves to the next timer.

use super::hypervisor::MemHypervisor;
use super::store::MemStore;
use crate::config::Deployment;
use crate::event::Event;
use crate::hypervisor::HypervisorCompletion;
use crate::ids::NodeId;
use crate::node::{Input, Node, Output, TimerId};
use crate::roles::{Authorised, Host, Manager, Proxy, Repository, Role, Roster};
use crate::storage::{StorageCompletion, StorageError};
use crate::time::Timestamp;
use crate::wire::Message;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// How long after a node closes a connection its pair connects again (a
/// driver's dial loop).
const REDIAL: Duration = Duration::from_secs(1);

/// What becomes of a message about to be delivered (see [`Cluster::intercept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    /// Lost, though its connection holds.
    Drop,
    /// Kept aside until [`Cluster::release_held`].
    Hold,
}

/// A message that reached its addressee (or, for a peer outside the
/// cluster such as the operator, left its sender).
#[derive(Debug, Clone)]
pub(crate) struct Crossed {
    pub at: Timestamp,
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

/// A node the cluster can also look into (see [`Cluster::node`]).
trait AnyNode: Node {
    fn as_any(&self) -> &dyn Any;
}

impl<N: Node + Any> AnyNode for N {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

type Make = Box<dyn Fn() -> Box<dyn AnyNode>>;
/// A test's say over each message about to be delivered (from, to, what).
type Intercept = Box<dyn FnMut(NodeId, NodeId, &Message) -> Verdict>;

struct Slot {
    make: Make,
    node: Box<dyn AnyNode>,
    alive: bool,
    /// Completions of an earlier incarnation are never delivered.
    incarnation: u64,
    timers: BTreeMap<TimerId, Timestamp>,
}

#[derive(Debug, Default)]
struct Link {
    up: bool,
    /// Bumped at each break: deliveries of an older epoch are lost.
    epoch: u64,
    /// Sent while down (or behind such), oldest first.
    queued: VecDeque<(NodeId, NodeId, Message)>,
}

#[derive(Debug)]
enum Due {
    Deliver { from: NodeId, to: NodeId, epoch: u64, msg: Message },
    Complete { node: NodeId, incarnation: u64, input: Input },
}

pub(crate) struct Cluster {
    pub now: Timestamp,
    slots: BTreeMap<NodeId, Slot>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    /// Everything due now, in the order it arose.
    due: VecDeque<Due>,
    redials: BTreeSet<(Timestamp, NodeId, NodeId)>,
    intercept: Option<Intercept>,
    held: Vec<Due>,
    /// Each repository's store.
    pub stores: BTreeMap<NodeId, MemStore>,
    /// Each host's hypervisor.
    pub hypervisors: BTreeMap<NodeId, MemHypervisor>,
    /// Every message delivered, oldest first.
    pub crossed: Vec<Crossed>,
    pub events: Vec<(Timestamp, NodeId, Event)>,
    /// Connections closed: by whom, to whom, why.
    pub closed: Vec<(NodeId, NodeId, String)>,
    /// A test crafts input that nodes must refuse ([`Cluster::expecting_refusals`]).
    refusals_expected: bool,
}

fn key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Cluster {
    /// The deployment `roster` names, each node the production role with
    /// `deployment` for the manager; operators stay outside (what is sent
    /// to them is recorded, and a test speaks for them with
    /// [`Cluster::inject`]). Nothing runs before [`Cluster::start`].
    pub fn new(deployment: Deployment, roster: &[(NodeId, Role)]) -> Cluster {
        let roster: Roster = Rc::new(roster.iter().copied().collect());
        let mut cluster = Cluster {
            now: Timestamp::ZERO,
            slots: BTreeMap::new(),
            links: BTreeMap::new(),
            due: VecDeque::new(),
            redials: BTreeSet::new(),
            intercept: None,
            held: Vec::new(),
            stores: BTreeMap::new(),
            hypervisors: BTreeMap::new(),
            crossed: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            refusals_expected: false,
        };
        for (&id, &role) in roster.iter() {
            let r = roster.clone();
            let make: Make = match role {
                Role::Manager => {
                    let cfg = deployment.clone();
                    Box::new(move || Box::new(Authorised::new(Manager::new(cfg.clone()), role, r.clone())))
                }
                Role::Host => {
                    cluster.hypervisors.insert(id, MemHypervisor::default());
                    Box::new(move || Box::new(Authorised::new(Host::new(), role, r.clone())))
                }
                Role::Proxy => Box::new(move || Box::new(Authorised::new(Proxy::new(), role, r.clone()))),
                Role::Repository => {
                    cluster.stores.insert(id, MemStore::default());
                    Box::new(move || Box::new(Authorised::new(Repository::new(), role, r.clone())))
                }
                Role::Operator => continue,
            };
            let node = make();
            cluster.slots.insert(id, Slot { make, node, alive: false, incarnation: 0, timers: BTreeMap::new() });
        }
        cluster
    }

    /// Starts every node, then connects every pair.
    /// Refusals are part of the test: nodes may close connections
    /// (recorded in `closed`) instead of failing the test at once.
    pub fn expecting_refusals(mut self) -> Self {
        self.refusals_expected = true;
        self
    }

    pub fn start(&mut self) {
        let ids: Vec<NodeId> = self.slots.keys().copied().collect();
        for &id in &ids {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.alive = true;
            }
            self.feed(id, Input::Start);
        }
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                self.connect(a, b);
            }
        }
    }

    /// The role running as `id`, if it is an `N`.
    pub fn node<N: Node + Any>(&self, id: NodeId) -> Option<&N> {
        // Through the box: a box of a node is a node (and `Any`) too.
        (*self.slots.get(&id)?.node).as_any().downcast_ref::<Authorised<N>>().map(Authorised::inner)
    }

    pub fn hypervisor(&mut self, host: NodeId) -> &mut MemHypervisor {
        self.hypervisors.get_mut(&host).expect("the test names a host of the cluster")
    }

    pub fn store(&mut self, repository: NodeId) -> &mut MemStore {
        self.stores.get_mut(&repository).expect("the test names a repository of the cluster")
    }

    /// Messages delivered from `from` to `to`, oldest first.
    pub fn between(&self, from: NodeId, to: NodeId) -> impl Iterator<Item = &Message> {
        self.crossed.iter().filter(move |c| c.from == from && c.to == to).map(|c| &c.msg)
    }

    /// Events recorded so far, without who recorded them.
    pub fn events(&self) -> impl DoubleEndedIterator<Item = &Event> {
        self.events.iter().map(|(_, _, e)| e)
    }

    /// Decides the fate of every message about to be delivered from now on.
    pub fn intercept(&mut self, verdict: impl FnMut(NodeId, NodeId, &Message) -> Verdict + 'static) {
        self.intercept = Some(Box::new(verdict));
    }

    /// Delivers every message from now on.
    pub fn stop_intercepting(&mut self) {
        self.intercept = None;
    }

    /// Puts the held messages back on their connections, in the order
    /// they were held (those whose connection broke since are lost).
    pub fn release_held(&mut self) {
        self.due.extend(self.held.drain(..));
    }

    /// `msg` reaches `to` as if `from` sent it, whatever the connection
    /// between them: a crafted input.
    pub fn inject(&mut self, from: NodeId, to: NodeId, msg: Message) {
        self.crossed.push(Crossed { at: self.now, from, to, msg: msg.clone() });
        self.feed_alive(to, Input::Message { from, msg });
    }

    /// Breaks the connection between `a` and `b`: what is in flight is
    /// lost, both ends are told. It stays down until [`Cluster::connect`].
    pub fn break_link(&mut self, a: NodeId, b: NodeId) {
        let link = self.links.entry(key(a, b)).or_default();
        let was_up = link.up;
        link.up = false;
        link.epoch += 1;
        if was_up {
            self.feed_alive(a, Input::PeerDown(b));
            self.feed_alive(b, Input::PeerDown(a));
        }
    }

    /// Connects `a` and `b`, if both run and they are not connected: both
    /// ends are told, then what waited in the pair's queue goes out.
    pub fn connect(&mut self, a: NodeId, b: NodeId) {
        if !self.is_alive(a) || !self.is_alive(b) || self.links.get(&key(a, b)).is_some_and(|l| l.up) {
            return;
        }
        self.links.entry(key(a, b)).or_default().up = true;
        self.feed_alive(a, Input::PeerUp(b));
        self.feed_alive(b, Input::PeerUp(a));
        let link = self.links.entry(key(a, b)).or_default();
        let epoch = link.epoch;
        let queued: Vec<_> = link.queued.drain(..).collect();
        self.due.extend(queued.into_iter().map(|(from, to, msg)| Due::Deliver { from, to, epoch, msg }));
    }

    /// The node stops at once: its state, timers, pending completions and
    /// unsent messages are gone, its connections break, and its store
    /// keeps only what was durable.
    pub fn crash(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(&id).filter(|s| s.alive) else { return };
        slot.alive = false;
        slot.incarnation += 1;
        slot.timers.clear();
        if let Some(store) = self.stores.get_mut(&id) {
            store.crash();
        }
        let pairs: Vec<(NodeId, NodeId)> = self.links.keys().filter(|(a, b)| *a == id || *b == id).copied().collect();
        for (a, b) in pairs {
            self.break_link(a, b);
            if let Some(link) = self.links.get_mut(&(a, b)) {
                link.queued.retain(|(from, ..)| *from != id);
            }
        }
    }

    /// The node comes back as a fresh role (crashing first if it runs),
    /// is fed `Start`, and connects to every running node.
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.node = (slot.make)();
        slot.alive = true;
        self.feed(id, Input::Start);
        let others: Vec<NodeId> = self.slots.keys().copied().filter(|&other| other != id).collect();
        for other in others {
            self.connect(id, other);
        }
    }

    pub fn is_alive(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| s.alive)
    }

    /// Carries out one thing: what is due now, else the earliest timer or
    /// redial (moving the clock to it). `false` when nothing is left.
    pub fn step(&mut self) -> bool {
        if let Some(due) = self.due.pop_front() {
            self.carry(due);
            return true;
        }
        let timer = self.slots.iter().filter(|(_, s)| s.alive).flat_map(|(&id, s)| s.timers.iter().map(move |(&t, &at)| (at, id, t))).min();
        let redial = self.redials.first().copied();
        match (timer, redial) {
            (_, Some((at, a, b))) if timer.is_none_or(|(t, ..)| at <= t) => {
                self.redials.remove(&(at, a, b));
                self.now = self.now.max(at);
                self.connect(a, b);
            }
            (Some((at, id, timer)), _) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.timers.remove(&timer);
                }
                self.now = self.now.max(at);
                self.feed(id, Input::Timer(timer));
            }
            (None, _) => return false,
        }
        true
    }

    /// Steps until `done` holds (`true`) or nothing is left within
    /// `within` of virtual time (`false`, the clock then at its end).
    pub fn run_until(&mut self, within: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let end = self.now + within;
        loop {
            if done(self) {
                return true;
            }
            if self.due.is_empty() && self.next_timed().is_none_or(|at| at > end) {
                self.now = self.now.max(end);
                return false;
            }
            self.step();
        }
    }

    /// Runs everything due within `d`; the clock ends `d` later.
    pub fn advance(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Carries out everything due now (timers due now too), without
    /// moving the clock.
    pub fn settle(&mut self) {
        self.advance(Duration::ZERO);
    }

    fn next_timed(&self) -> Option<Timestamp> {
        let timers = self.slots.values().filter(|s| s.alive).flat_map(|s| s.timers.values().copied());
        timers.chain(self.redials.iter().map(|(at, ..)| *at)).min()
    }

    fn carry(&mut self, due: Due) {
        match due {
            Due::Deliver { from, to, epoch, msg } => {
                if !self.links.get(&key(from, to)).is_some_and(|l| l.up && l.epoch == epoch) {
                    return;
                }
                let verdict = self.intercept.as_mut().map_or(Verdict::Deliver, |f| f(from, to, &msg));
                match verdict {
                    Verdict::Deliver => {
                        self.crossed.push(Crossed { at: self.now, from, to, msg: msg.clone() });
                        self.feed_alive(to, Input::Message { from, msg });
                    }
                    Verdict::Drop => {}
                    Verdict::Hold => self.held.push(Due::Deliver { from, to, epoch, msg }),
                }
            }
            Due::Complete { node, incarnation, input } => {
                if self.slots.get(&node).is_some_and(|s| s.alive && s.incarnation == incarnation) {
                    self.feed(node, input);
                }
            }
        }
    }

    fn feed_alive(&mut self, id: NodeId, input: Input) {
        if self.is_alive(id) {
            self.feed(id, input);
        }
    }

    /// One input, then the full drain (the node contract's invariant).
    fn feed(&mut self, id: NodeId, input: Input) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.node.handle(self.now, input);
        let outputs: Vec<Output> = std::iter::from_fn(|| slot.node.poll_output()).collect();
        for output in outputs {
            self.carry_out(id, output);
        }
    }

    fn carry_out(&mut self, id: NodeId, output: Output) {
        let incarnation = self.slots.get(&id).map_or(0, |s| s.incarnation);
        match output {
            Output::Send { to, msg } if !self.slots.contains_key(&to) => {
                self.crossed.push(Crossed { at: self.now, from: id, to, msg });
            }
            Output::Send { to, msg } => {
                let link = self.links.entry(key(id, to)).or_default();
                if link.up && link.queued.is_empty() {
                    let epoch = link.epoch;
                    self.due.push_back(Due::Deliver { from: id, to, epoch, msg });
                } else {
                    link.queued.push_back((id, to, msg));
                }
            }
            Output::SetTimer { id: timer, at } => {
                let now = self.now;
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.timers.insert(timer, at.max(now));
                }
            }
            Output::CancelTimer(timer) => {
                if let Some(slot) = self.slots.get_mut(&id) {
                    slot.timers.remove(&timer);
                }
            }
            Output::Storage(request) => {
                let result = match self.stores.get_mut(&id) {
                    Some(store) => store.serve(request.op),
                    None => Err(StorageError::Io(format!("{id} has no store"))),
                };
                let input = Input::Storage(StorageCompletion { id: request.id, result });
                self.due.push_back(Due::Complete { node: id, incarnation, input });
            }
            Output::Hypervisor(request) => {
                let result = match self.hypervisors.get_mut(&id) {
                    Some(hypervisor) => hypervisor.serve(request.op),
                    None => Err(format!("{id} has no hypervisor")),
                };
                let input = Input::Hypervisor(HypervisorCompletion { id: request.id, result });
                self.due.push_back(Due::Complete { node: id, incarnation, input });
            }
            Output::Event(event) => self.events.push((self.now, id, event)),
            Output::Close { peer, reason } => {
                // Every node here is honest: one refusing another's input
                // is a bug in the sender (or a limit set too low), unless
                // the test crafted that input.
                assert!(self.refusals_expected, "{id} refused input from {peer}: {reason}");
                self.closed.push((id, peer, reason));
                if self.links.get(&key(id, peer)).is_some_and(|l| l.up) {
                    self.break_link(id, peer);
                    self.redials.insert((self.now + REDIAL, key(id, peer).0, key(id, peer).1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANAGER: NodeId = NodeId(0);
    const HOST: NodeId = NodeId(1);

    fn pongs(c: &Cluster) -> Vec<u64> {
        c.between(HOST, MANAGER)
            .filter_map(|m| match m {
                Message::Pong { seq } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// The drivers' connection semantics: what a node sends while its
    /// pair is down goes out once it is up again; what was in flight when
    /// it broke is lost, and so is what a crashed node had not sent.
    #[test]
    fn sends_wait_for_the_connection_and_breaks_lose_what_was_in_flight() {
        let mut c = Cluster::new(Deployment::default(), &[(MANAGER, Role::Manager), (HOST, Role::Host)]);
        c.start();
        c.settle();
        c.break_link(MANAGER, HOST);
        c.inject(MANAGER, HOST, Message::Ping { seq: 1 });
        c.settle();
        assert_eq!(pongs(&c), Vec::<u64>::new(), "the host's answer waits for the connection");
        c.connect(MANAGER, HOST);
        c.settle();
        assert_eq!(pongs(&c), [1]);

        c.inject(MANAGER, HOST, Message::Ping { seq: 2 });
        c.break_link(MANAGER, HOST);
        c.connect(MANAGER, HOST);
        c.settle();
        assert_eq!(pongs(&c), [1], "the answer in flight was lost with the connection");

        c.break_link(MANAGER, HOST);
        c.inject(MANAGER, HOST, Message::Ping { seq: 3 });
        c.restart(HOST);
        c.settle();
        assert_eq!(pongs(&c), [1], "the crashed host's unsent answer died with it");
        c.inject(MANAGER, HOST, Message::Ping { seq: 4 });
        c.settle();
        assert_eq!(pongs(&c), [1, 4], "the restarted host is connected");
    }
}
