//! What a driver needs to know about its node and the node's peers.

use blockferry_core::NodeId;
use blockferry_core::wire::MAX_FRAME_DEFAULT;
use std::collections::BTreeMap;
use std::time::Duration;

/// Another node this one talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's name as in the topology; checked against the handshake.
    pub name: String,
    /// Where to dial the peer (`"host:port"`). Only used when this node has
    /// the lower id, since only the lower id dials.
    pub addr: String,
}

/// How long to wait between dial attempts: `initial` after a connection
/// breaks or a first attempt fails, doubling on every further failure up to
/// `max`. No jitter: with exactly one dialer per pair there is no thundering
/// herd to break up, and a jitter-free schedule keeps simulated runs easy to
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after `current`, doubled and capped.
    pub fn next(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max).max(self.initial)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(10) }
    }
}

/// Default bound on a peer's queue of encoded frames not yet written.
pub const MAX_QUEUED_BYTES_DEFAULT: usize = 64 * 1024 * 1024;

/// How a connection tells a quiet peer from a dead link, without relying on
/// TCP keepalive or retransmission timeouts (turmoil has neither, and a
/// half-open TCP connection can stay "established" for hours): a side that
/// has written nothing for `interval` writes a keepalive frame, and a side
/// that has read nothing for `timeout` closes the connection.
///
/// `timeout` must exceed `interval` (by a few intervals, so one delayed
/// keepalive does not cost a connection) and the longest time a single
/// frame can take to arrive on the slowest link; bytes of a frame still
/// arriving count as traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for Keepalive {
    /// 5 s / 20 s: a dead link is noticed within 20 s, for one tiny frame
    /// per idle connection every 5 s.
    fn default() -> Self {
        Keepalive { interval: Duration::from_secs(5), timeout: Duration::from_secs(20) }
    }
}

/// Everything a [`super::Driver`] needs besides the node, transport, clock
/// and event sink.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This node's name, sent in the handshake.
    pub name: String,
    /// This node's id: decides which side of each pair dials.
    pub id: NodeId,
    /// Where to listen for peers with a lower id (`"host:port"`, port 0 for
    /// any; [`super::Driver::listen`] reports what was bound).
    pub listen: String,
    /// Every peer this node may talk to. Names must be unique and must not
    /// be this node's.
    pub peers: BTreeMap<NodeId, Peer>,
    pub backoff: Backoff,
    /// Largest frame payload accepted or sent.
    pub max_frame: usize,
    /// Bound on each peer's queue of unwritten frames; beyond it the oldest
    /// are dropped.
    pub max_queued_bytes: usize,
    /// How long a dial may take before it counts as failed. Under turmoil a
    /// connect into a partition never completes on its own.
    pub connect_timeout: Duration,
    /// How long either side waits for the other's hello.
    pub handshake_timeout: Duration,
    /// Keepalive frames and the idle timeout of established connections.
    pub keepalive: Keepalive,
    /// The node runs in a simulated deployment (synthetic block payloads):
    /// its hello says so, and it connects only to peers that say the same.
    pub synthetic_payloads: bool,
}

impl DriverConfig {
    /// A configuration with no peers and default limits.
    pub fn new(name: impl Into<String>, id: NodeId, listen: impl Into<String>) -> Self {
        DriverConfig {
            name: name.into(),
            id,
            listen: listen.into(),
            peers: BTreeMap::new(),
            backoff: Backoff::default(),
            max_frame: MAX_FRAME_DEFAULT,
            max_queued_bytes: MAX_QUEUED_BYTES_DEFAULT,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            keepalive: Keepalive::default(),
            synthetic_payloads: false,
        }
    }

    /// A simulator's node: exchanges synthetic payloads, with simulated
    /// peers only.
    pub fn simulated(mut self) -> Self {
        self.synthetic_payloads = true;
        self
    }

    /// Adds (or replaces) a peer.
    pub fn peer(mut self, id: NodeId, name: impl Into<String>, addr: impl Into<String>) -> Self {
        self.peers.insert(id, Peer { name: name.into(), addr: addr.into() });
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets both the connect and the handshake timeout.
    pub fn with_connect_timeouts(mut self, connect: Duration, handshake: Duration) -> Self {
        self.connect_timeout = connect;
        self.handshake_timeout = handshake;
        self
    }

    /// Checks the configuration for mistakes that would otherwise show up
    /// later as confusing handshake refusals or busy loops.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::EmptyName(self.id));
        }
        if self.peers.contains_key(&self.id) {
            return Err(ConfigError::SelfAsPeer(self.id));
        }
        let mut names: BTreeMap<&str, NodeId> = BTreeMap::new();
        for (&id, peer) in &self.peers {
            if peer.name.is_empty() {
                return Err(ConfigError::EmptyName(id));
            }
            if peer.name == self.name {
                return Err(ConfigError::DuplicateName { name: peer.name.clone(), first: self.id, second: id });
            }
            if let Some(first) = names.insert(&peer.name, id) {
                return Err(ConfigError::DuplicateName { name: peer.name.clone(), first, second: id });
            }
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(ConfigError::Backoff(self.backoff));
        }
        if self.max_frame == 0 {
            return Err(ConfigError::ZeroLimit("max_frame"));
        }
        if self.max_queued_bytes == 0 {
            return Err(ConfigError::ZeroLimit("max_queued_bytes"));
        }
        for (what, d) in [("connect_timeout", self.connect_timeout), ("handshake_timeout", self.handshake_timeout)] {
            if d.is_zero() {
                return Err(ConfigError::ZeroLimit(what));
            }
        }
        let Keepalive { interval, timeout } = self.keepalive;
        // At least two keepalives fit in the timeout, so a single late one
        // never closes a healthy connection.
        if interval.is_zero() || timeout < interval.saturating_mul(2) {
            return Err(ConfigError::Keepalive(self.keepalive));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node {0} has an empty name")]
    EmptyName(NodeId),
    #[error("node {0} lists itself as a peer")]
    SelfAsPeer(NodeId),
    #[error("name {name:?} is used by both {first} and {second}")]
    DuplicateName { name: String, first: NodeId, second: NodeId },
    #[error("backoff {0:?} must have 0 < initial <= max")]
    Backoff(Backoff),
    #[error("{0} must be positive")]
    ZeroLimit(&'static str),
    #[error("keepalive {0:?} must have 0 < 2 * interval <= timeout")]
    Keepalive(Keepalive),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_and_self() {
        let base = DriverConfig::new("a", NodeId(0), "x:1");
        assert_eq!(base.clone().peer(NodeId(1), "b", "").validate(), Ok(()));
        assert!(matches!(base.clone().peer(NodeId(0), "b", "").validate(), Err(ConfigError::SelfAsPeer(_))));
        assert!(matches!(base.clone().peer(NodeId(1), "a", "").validate(), Err(ConfigError::DuplicateName { .. })));
        let dup = base.peer(NodeId(1), "b", "").peer(NodeId(2), "b", "");
        assert!(matches!(dup.validate(), Err(ConfigError::DuplicateName { .. })));
    }

    #[test]
    fn rejects_a_keepalive_timeout_too_close_to_the_interval() {
        let base = DriverConfig::new("a", NodeId(0), "x:1");
        assert_eq!(base.validate(), Ok(()));
        let tight = Keepalive { interval: Duration::from_secs(5), timeout: Duration::from_secs(9) };
        assert_eq!(base.clone().with_keepalive(tight).validate(), Err(ConfigError::Keepalive(tight)));
        let zero = Keepalive { interval: Duration::ZERO, timeout: Duration::from_secs(9) };
        assert!(base.with_keepalive(zero).validate().is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(350) };
        assert_eq!(b.next(Duration::from_millis(100)), Duration::from_millis(200));
        assert_eq!(b.next(Duration::from_millis(200)), Duration::from_millis(350));
        assert_eq!(b.next(Duration::from_millis(350)), Duration::from_millis(350));
    }
}
