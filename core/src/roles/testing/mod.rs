//! Stepping roles in unit tests. [`Stepper`] steps one role against
//! crafted inputs: feed an input, collect what it sent, closed and timed,
//! and fire its timers in order. [`Cluster`] steps a deployment's roles
//! against each other, with an in-memory store ([`MemStore`]) and
//! hypervisor ([`hypervisor::MemHypervisor`]) behind them.

mod cluster;
mod hypervisor;
mod store;

pub(crate) use cluster::{Cluster, Crossed, Verdict};
pub(crate) use store::MemStore;

use crate::event::Event;
use crate::ids::NodeId;
use crate::node::{Input, Node, Output, TimerId};
use crate::time::Timestamp;
use crate::wire::Message;
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) struct Stepper<N> {
    pub node: N,
    pub now: Timestamp,
    timers: BTreeMap<TimerId, Timestamp>,
    /// What the node sent, oldest first (taken by [`Stepper::take_sent`]).
    pub sent: Vec<(NodeId, Message)>,
    /// Peers whose connection the node closed, and why.
    pub closed: Vec<(NodeId, String)>,
    pub events: Vec<Event>,
}

impl<N: Node> Stepper<N> {
    /// The node, started at `Timestamp::ZERO`.
    pub fn start(node: N) -> Self {
        Self::start_at(node, Timestamp::ZERO)
    }

    /// The node, started at `now`.
    pub fn start_at(node: N, now: Timestamp) -> Self {
        let mut s = Stepper { node, now, timers: BTreeMap::new(), sent: Vec::new(), closed: Vec::new(), events: Vec::new() };
        s.feed(Input::Start);
        s
    }

    pub fn feed(&mut self, input: Input) {
        self.node.handle(self.now, input);
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Send { to, msg } => self.sent.push((to, msg)),
                Output::Close { peer, reason } => self.closed.push((peer, reason)),
                Output::SetTimer { id, at } => _ = self.timers.insert(id, at),
                Output::CancelTimer(id) => _ = self.timers.remove(&id),
                Output::Event(event) => self.events.push(event),
                Output::Storage(_) | Output::Hypervisor(_) => {}
            }
        }
    }

    pub fn message(&mut self, from: NodeId, msg: Message) {
        self.feed(Input::Message { from, msg });
    }

    pub fn take_sent(&mut self) -> Vec<(NodeId, Message)> {
        std::mem::take(&mut self.sent)
    }

    /// Fires due timers, earliest first, until `pick` finds what it looks
    /// for in what was sent (which it may answer) or `limit` passes (from
    /// now).
    pub fn run_until<T>(&mut self, limit: Duration, mut pick: impl FnMut(&mut Self) -> Option<T>) -> Option<T> {
        let end = self.now + limit;
        loop {
            if let Some(found) = pick(self) {
                return Some(found);
            }
            let (&id, &at) = self.timers.iter().min_by_key(|(_, at)| **at)?;
            if at > end {
                return None;
            }
            self.timers.remove(&id);
            self.now = self.now.max(at);
            self.feed(Input::Timer(id));
        }
    }
}
