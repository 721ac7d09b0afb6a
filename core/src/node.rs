//! The sans-IO node contract every role implements.
//!
//! A driver owns a node and does exactly two things with it:
//!
//! 1. **Input.** It calls [`Node::handle`] with the current time and one
//!    [`Input`]: a message from a peer, a timer that fired, a peer that came
//!    up or went away, or the completion of a storage or hypervisor request
//!    the node made earlier.
//! 2. **Drain.** It then calls [`Node::poll_output`] until it returns `None`,
//!    carrying out each [`Output`] in order: send a message, arm or cancel a
//!    timer, start a storage or hypervisor request, record an [`Event`].
//!
//! **The drain invariant:** after `handle` returns, the driver drains every
//! output before it feeds the next input, and a node's state changes only
//! inside `handle`. `poll_output` never changes what the node will do next —
//! it only hands over what `handle` already decided. A driver that drains
//! late (or not at all) can reorder sends against timers; one that drains
//! fully keeps every run reproducible from its inputs.
//!
//! Time is only ever the `now` argument; randomness, where a role needs it,
//! is a seeded RNG given at construction.

use crate::event::Event;
use crate::hypervisor::{HypervisorCompletion, HypervisorRequest};
use crate::ids::NodeId;
use crate::storage::{StorageCompletion, StorageRequest};
use crate::time::Timestamp;
use crate::wire::Message;
use serde::{Deserialize, Serialize};

/// A timer, named by the node that sets it. Setting a timer with an id that
/// is already armed moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerId(pub u64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// The node (re)starts: the first input after construction or a crash.
    /// Roles with durable state recover it here.
    Start,
    Message {
        from: NodeId,
        msg: Message,
    },
    Timer(TimerId),
    /// A connection to the peer is established (both ends are told).
    PeerUp(NodeId),
    /// The connection to the peer broke; messages in flight may be lost.
    PeerDown(NodeId),
    /// A storage request of this node's completed.
    Storage(StorageCompletion),
    /// A hypervisor request of this node's completed.
    Hypervisor(HypervisorCompletion),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    Send {
        to: NodeId,
        msg: Message,
    },
    SetTimer {
        id: TimerId,
        at: Timestamp,
    },
    CancelTimer(TimerId),
    /// Ask the node's store to do something; the answer comes back as
    /// `Input::Storage` with the same request id.
    Storage(StorageRequest),
    /// Ask the node's hypervisor backend; answered by `Input::Hypervisor`.
    Hypervisor(HypervisorRequest),
    Event(Event),
    /// Close the connection to `peer`, which sent something this node
    /// refuses; the driver logs `reason`. What was queued for the peer is
    /// dropped, `PeerDown` follows, and a new connection is judged afresh.
    Close {
        peer: NodeId,
        reason: String,
    },
}

/// A role's state machine. See the module documentation for the contract.
pub trait Node {
    /// Feeds one input. Must not block, read a clock, or do IO.
    fn handle(&mut self, now: Timestamp, input: Input);
    /// Takes the next output decided by earlier `handle` calls.
    fn poll_output(&mut self) -> Option<Output>;
}

/// A FIFO of outputs: the usual way a role implements `poll_output`.
#[derive(Debug, Default)]
pub struct Outbox(std::collections::VecDeque<Output>);

impl Outbox {
    pub fn send(&mut self, to: NodeId, msg: Message) {
        self.0.push_back(Output::Send { to, msg });
    }
    pub fn set_timer(&mut self, id: TimerId, at: Timestamp) {
        self.0.push_back(Output::SetTimer { id, at });
    }
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.0.push_back(Output::CancelTimer(id));
    }
    pub fn event(&mut self, event: Event) {
        self.0.push_back(Output::Event(event));
    }
    pub fn storage(&mut self, request: StorageRequest) {
        self.0.push_back(Output::Storage(request));
    }
    pub fn hypervisor(&mut self, request: HypervisorRequest) {
        self.0.push_back(Output::Hypervisor(request));
    }
    /// Refuses a peer's input: the event log says who sent what, and the
    /// connection to the peer is closed. The caller changes nothing else.
    pub fn refuse(&mut self, peer: NodeId, reason: String) {
        self.0.push_back(Output::Event(Event::InputRefused { peer, reason: reason.clone() }));
        self.0.push_back(Output::Close { peer, reason });
    }
    /// Refuses a message the role does not take at all (its kind is routed
    /// to other roles, see `roles::authorise::route`): the wrapper in front
    /// of every production role refuses it first, so reaching this means a
    /// role and the route table disagree — refused all the same, never
    /// silently dropped.
    pub fn refuse_unhandled(&mut self, peer: NodeId, role: &str, msg: &Message) {
        self.refuse(peer, format!("{} from {peer}: a {role} does not handle it", msg.kind()));
    }
    pub fn push(&mut self, output: Output) {
        self.0.push_back(output);
    }
    pub fn pop(&mut self) -> Option<Output> {
        self.0.pop_front()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Outbox {
    type Item = Output;
    type IntoIter = std::collections::vec_deque::IntoIter<Output>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// A boxed node is a node: drivers can run roles chosen at run time.
impl<N: Node + ?Sized> Node for Box<N> {
    fn handle(&mut self, now: Timestamp, input: Input) {
        (**self).handle(now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        (**self).poll_output()
    }
}
