//! The network model both engines share: sites joined by links with latency
//! and bandwidth. Bandwidth is modelled as serialization delay on a pipe per
//! direction: a message occupies the pipe for `bytes * 8 / bandwidth`, so
//! concurrent transfers over one WAN link share it and queue behind each
//! other, and arrival = departure + serialization + latency. Per-direction
//! FIFO order follows from the pipe being busy until the previous message
//! has left.
//!
//! On top of the pipe, packet loss bounds each connection ([`tcp`]): a
//! message also occupies its connection (node pair and direction) for
//! `bytes / rate`, the rate TCP sustains on that path, and is done when both
//! the pipe and the connection are through with it. Connections share the
//! link's bandwidth; each is held to its own rate.

pub mod tcp;

use blockferry_core::{NodeId, Timestamp};
use rand::Rng;
use std::collections::BTreeMap;
use std::time::Duration;

/// Index of a site in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct LinkSpec {
    pub latency: Duration,
    /// Bits per second; `None` means unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Packet loss rate as TCP sees it: bounds each connection's rate
    /// ([`tcp::mathis_rate`]); 0 leaves connections to the bandwidth.
    pub loss: f64,
    /// Probability that a message breaks the connection it travels on.
    pub breaks: f64,
}

impl LinkSpec {
    /// A site's own LAN: 10 Gbit, 200 µs.
    pub const LAN: LinkSpec = LinkSpec { latency: Duration::from_micros(200), bandwidth_bps: Some(10_000_000_000), loss: 0.0, breaks: 0.0 };

    /// Whether the next message on this link breaks its connection, drawn
    /// from `rng` (no draw at all on a link that never breaks, so adding
    /// one never shifts the draws of the others).
    pub fn draw_break(&self, rng: Option<&mut impl Rng>) -> bool {
        self.breaks > 0.0 && rng.is_some_and(|rng| rng.random_bool(self.breaks.min(1.0)))
    }

    /// Bytes per second a connection bundling `streams` TCP flows sustains
    /// on this link, if packet loss bounds it.
    pub fn conn_rate(&self, streams: u32) -> Option<f64> {
        tcp::mathis_rate(self.latency, self.loss, streams)
    }

    /// Time `bytes` occupy the link.
    pub fn serialization_delay(&self, bytes: u64) -> Duration {
        match self.bandwidth_bps {
            Some(bps) if bps > 0 => {
                let nanos = (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(bps));
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            _ => Duration::ZERO,
        }
    }
}

/// One direction of a link: busy until the last message has been put on it.
#[derive(Clone, Copy, Debug, Default)]
struct Pipe {
    busy_until: Timestamp,
}

/// One direction of a connection between two nodes: the sites it joins,
/// its ends (its own occupancy is theirs) and the TCP flows it bundles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub from: SiteId,
    pub to: SiteId,
    pub ends: (NodeId, NodeId),
    pub streams: u32,
}

/// Sites, the links between them, and the pipes' occupancy.
#[derive(Debug, Clone, Default)]
pub struct Network {
    specs: BTreeMap<(SiteId, SiteId), LinkSpec>,
    pipes: BTreeMap<(SiteId, SiteId), Pipe>,
    /// Per directed connection on a lossy link: busy until its last
    /// message has gone at the connection's rate.
    conns: BTreeMap<(NodeId, NodeId), Timestamp>,
    /// Bytes that crossed each directed site pair.
    bytes: BTreeMap<(SiteId, SiteId), u64>,
    /// Their sums inside sites and between sites: asked for at every
    /// simulation step.
    lan_wan: (u64, u64),
    /// Site pairs under a throttling rule: bytes put on the link (either
    /// direction) per second of simulated time, to check the rule held.
    meters: BTreeMap<(SiteId, SiteId), BTreeMap<u64, u64>>,
}

impl Network {
    /// Sets the link between two sites (both directions). A site's link to
    /// itself is its LAN, `LinkSpec::LAN` unless set.
    pub fn set_link(&mut self, a: SiteId, b: SiteId, spec: LinkSpec) {
        self.specs.insert(key(a, b), spec);
    }

    pub fn link(&self, a: SiteId, b: SiteId) -> Option<LinkSpec> {
        match self.specs.get(&key(a, b)) {
            Some(spec) => Some(*spec),
            None if a == b => Some(LinkSpec::LAN),
            None => None,
        }
    }

    /// Sends `bytes` on `flow` at `now`: they take the pipe for their
    /// serialization delay and the connection for `bytes / rate` (each from
    /// when it is free), and arrive a latency after the later of the two.
    /// `None` when the sites are not linked.
    pub fn send(&mut self, now: Timestamp, flow: Flow, bytes: u64) -> Option<Timestamp> {
        let spec = self.link(flow.from, flow.to)?;
        let wire = self.serialize(now, flow.from, flow.to, bytes)?;
        let done = match spec.conn_rate(flow.streams) {
            Some(rate) => {
                let busy = self.conns.entry(flow.ends).or_default();
                *busy = (*busy).max(now) + tcp::pacing_delay(bytes, rate);
                wire.max(*busy)
            }
            None => wire,
        };
        Some(done + spec.latency)
    }

    /// Forgets the connection between two nodes (both directions): it broke,
    /// and the next one starts with nothing queued on it.
    pub fn reset_conn(&mut self, a: NodeId, b: NodeId) {
        self.conns.remove(&(a, b));
        self.conns.remove(&(b, a));
    }

    /// Puts `bytes` on the pipe from `from` to `to`, starting no earlier than
    /// `now` nor before the pipe is free; returns when their last bit has
    /// left (arrival is that plus the link's latency), or `None` when the
    /// sites are not linked. Counts the bytes as sent.
    pub fn serialize(&mut self, now: Timestamp, from: SiteId, to: SiteId, bytes: u64) -> Option<Timestamp> {
        let spec = self.link(from, to)?;
        let pipe = self.pipes.entry((from, to)).or_default();
        let start = pipe.busy_until.max(now);
        let done = start + spec.serialization_delay(bytes);
        pipe.busy_until = done;
        *self.bytes.entry((from, to)).or_default() += bytes;
        match from == to {
            true => self.lan_wan.0 += bytes,
            false => self.lan_wan.1 += bytes,
        }
        if let Some(meter) = self.meters.get_mut(&key(from, to)) {
            *meter.entry(start.0 / 1_000_000_000).or_default() += bytes;
        }
        Some(done)
    }

    /// Changes a link's bandwidth (slow_link faults; `None`: unlimited).
    /// Sites that are not linked stay unlinked.
    pub fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>) {
        if let Some(mut spec) = self.link(a, b) {
            spec.bandwidth_bps = bandwidth_bps;
            self.set_link(a, b, spec);
        }
    }

    /// One-way latency between two sites (no serialization), if linked.
    pub fn latency(&self, a: SiteId, b: SiteId) -> Option<Duration> {
        self.link(a, b).map(|l| l.latency)
    }

    /// Bytes sent so far inside sites (LAN) and between sites (WAN).
    pub fn lan_wan_bytes(&self) -> (u64, u64) {
        self.lan_wan
    }

    /// Starts counting the bytes between two sites per second.
    pub fn meter(&mut self, a: SiteId, b: SiteId) {
        self.meters.entry(key(a, b)).or_default();
    }

    /// Bytes put on the link between two metered sites, per second of
    /// simulated time (seconds without traffic are absent).
    pub fn metered(&self, a: SiteId, b: SiteId) -> Option<&BTreeMap<u64, u64>> {
        self.meters.get(&key(a, b))
    }

    /// Bytes sent from `from` to `to` so far.
    pub fn bytes_sent(&self, from: SiteId, to: SiteId) -> u64 {
        self.bytes.get(&(from, to)).copied().unwrap_or(0)
    }
}

fn key(a: SiteId, b: SiteId) -> (SiteId, SiteId) {
    if a <= b { (a, b) } else { (b, a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn flow(a: SiteId, b: SiteId, ends: (u32, u32), streams: u32) -> Flow {
        Flow { from: a, to: b, ends: (NodeId(ends.0), NodeId(ends.1)), streams }
    }

    /// Arrival of `bytes` sent at time zero on the connection 0 → 1.
    fn one_message(spec: LinkSpec, streams: u32, bytes: u64) -> Duration {
        let mut net = Network::default();
        net.set_link(SiteId(0), SiteId(1), spec);
        let at = net.send(Timestamp::ZERO, flow(SiteId(0), SiteId(1), (0, 1), streams), bytes).unwrap();
        at - Timestamp::ZERO
    }

    #[test]
    fn one_mib_on_100_mbit_takes_about_84_ms() {
        let spec = LinkSpec { bandwidth_bps: Some(100_000_000), ..LinkSpec::default() };
        let d = spec.serialization_delay(1024 * 1024);
        assert!((83..=84).contains(&d.as_millis()), "{d:?}");
    }

    #[test]
    fn messages_queue_behind_each_other_on_one_pipe() {
        let mut net = Network::default();
        let (a, b) = (SiteId(0), SiteId(1));
        net.set_link(a, b, LinkSpec { latency: 40 * MS, bandwidth_bps: Some(8_000_000), ..LinkSpec::default() });
        // 1 MB at 8 Mbit/s = 1 s on the wire.
        let first = net.send(Timestamp::ZERO, flow(a, b, (0, 1), 1), 1_000_000).unwrap();
        let second = net.send(Timestamp::ZERO, flow(a, b, (2, 3), 1), 1_000_000).unwrap();
        assert_eq!(first, Timestamp::ZERO + Duration::from_millis(1040));
        assert_eq!(second, Timestamp::ZERO + Duration::from_millis(2040));
        // The other direction is a separate pipe.
        let back = net.send(Timestamp::ZERO, flow(b, a, (1, 0), 1), 1_000_000).unwrap();
        assert_eq!(back, first);
        assert_eq!(net.bytes_sent(a, b), 2_000_000);
    }

    #[test]
    fn unlinked_sites_cannot_talk() {
        let mut net = Network::default();
        assert!(net.send(Timestamp::ZERO, flow(SiteId(0), SiteId(1), (0, 1), 1), 1).is_none());
        assert!(net.send(Timestamp::ZERO, flow(SiteId(0), SiteId(0), (0, 1), 1), 1).is_some());
    }

    /// 100 Mbit, 80 ms, 0.5 % loss: one flow gets about 157 KB/s, so 1 MB
    /// takes about 6.35 s (plus the latency) where the pipe alone needs 80 ms.
    const WAN: LinkSpec = LinkSpec { latency: Duration::from_millis(80), bandwidth_bps: Some(100_000_000), loss: 0.005, breaks: 0.0 };

    #[test]
    fn packet_loss_holds_a_connection_to_the_mathis_rate() {
        let one = one_message(WAN, 1, 1_000_000) - 80 * MS;
        assert!((6340 * MS..6360 * MS).contains(&one), "{one:?}");
        // Five flows: five times the rate.
        let five = one_message(WAN, 5, 1_000_000) - 80 * MS;
        assert!((1265 * MS..1275 * MS).contains(&five), "{five:?}");
        // Without loss only the bandwidth counts: 80 ms on the pipe.
        let lossless = one_message(LinkSpec { loss: 0.0, ..WAN }, 1, 1_000_000) - 80 * MS;
        assert_eq!(lossless, 80 * MS);
    }

    #[test]
    fn a_bundle_never_beats_the_link() {
        // 64 flows would get 10 MB/s; the link carries 1 MB/s.
        let slow = LinkSpec { bandwidth_bps: Some(8_000_000), ..WAN };
        assert_eq!(one_message(slow, 64, 1_000_000), 1080 * MS);
    }

    #[test]
    fn two_connections_share_the_link_and_each_keeps_its_own_rate() {
        let mut net = Network::default();
        let (a, b) = (SiteId(0), SiteId(1));
        // 8 Mbit: 1 MB is 1 s on the pipe; one flow's cap is 157 KB/s, so
        // 100 KB takes about 0.64 s of its connection and 0.1 s of the pipe.
        net.set_link(a, b, LinkSpec { bandwidth_bps: Some(8_000_000), ..WAN });
        let x = net.send(Timestamp::ZERO, flow(a, b, (0, 1), 1), 100_000).unwrap();
        let y = net.send(Timestamp::ZERO, flow(a, b, (2, 3), 1), 100_000).unwrap();
        // Both are paced by their own connections, not queued behind each
        // other's pacing: y waited only for x's 0.1 s on the pipe.
        assert!(x - Timestamp::ZERO > 700 * MS && x - Timestamp::ZERO < 730 * MS, "{x:?}");
        assert_eq!(x, y, "the pipe was free again long before either connection was");
        // The same connection's next message queues behind its first.
        let x2 = net.send(Timestamp::ZERO, flow(a, b, (0, 1), 1), 100_000).unwrap();
        assert!(x2 - x > 630 * MS, "{x:?} {x2:?}");
        // A broken connection forgets its queue; the pipe does not.
        net.reset_conn(NodeId(1), NodeId(0));
        let fresh = net.send(Timestamp::ZERO, flow(a, b, (0, 1), 1), 100_000).unwrap();
        assert_eq!(fresh, x);
    }
}
