//! Connections between node pairs, as the real driver keeps them: a pair is
//! connected or not; a break bumps the pair's epoch so deliveries already in
//! flight on the old connection are lost; messages sent while disconnected
//! wait in the pair's queue (the driver's send queue) and go out, in order,
//! once the pair reconnects.

use blockferry_core::{Message, NodeId};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Conn {
    pub up: bool,
    /// Bumped on every break: deliveries of an older epoch are dropped.
    pub epoch: u64,
    /// A reconnect is scheduled (so a second one is not).
    pub reconnecting: bool,
    /// Sent while down, oldest first: (from, to, message).
    pub queued: Vec<(NodeId, NodeId, Message)>,
}

/// Every pair's connection, keyed with the lower id first.
#[derive(Debug, Default)]
pub struct Conns(BTreeMap<(NodeId, NodeId), Conn>);

impl Conns {
    pub fn key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
        if a <= b { (a, b) } else { (b, a) }
    }

    pub fn get(&mut self, a: NodeId, b: NodeId) -> &mut Conn {
        self.0.entry(Self::key(a, b)).or_default()
    }

    pub fn epoch(&self, a: NodeId, b: NodeId) -> u64 {
        self.0.get(&Self::key(a, b)).map_or(0, |c| c.epoch)
    }

    /// Marks the pair broken; returns whether it was up.
    pub fn break_pair(&mut self, a: NodeId, b: NodeId) -> bool {
        let conn = self.get(a, b);
        let was_up = conn.up;
        conn.up = false;
        conn.epoch += 1;
        was_up
    }

    /// Every pair that involves `node`.
    pub fn pairs_of(&self, node: NodeId) -> Vec<(NodeId, NodeId)> {
        self.0.keys().filter(|(a, b)| *a == node || *b == node).copied().collect()
    }

    pub fn pairs(&self) -> Vec<(NodeId, NodeId)> {
        self.0.keys().copied().collect()
    }
}
