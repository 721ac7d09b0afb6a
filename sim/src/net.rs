//! The network model both engines share: sites joined by links with latency
//! and bandwidth. Bandwidth is modelled as serialization delay on a pipe per
//! direction: a message occupies the pipe for `bytes * 8 / bandwidth`, so
//! concurrent transfers over one WAN link share it and queue behind each
//! other, and arrival = departure + serialization + latency. Per-direction
//! FIFO order follows from the pipe being busy until the previous message
//! has left.

use blockferry_core::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// Index of a site in the topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkSpec {
    pub latency: Duration,
    /// Bits per second; `None` means unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Probability that a message breaks the connection it travels on.
    pub loss: f64,
}

impl LinkSpec {
    /// A site's own LAN: 10 Gbit, 200 µs.
    pub const LAN: LinkSpec = LinkSpec { latency: Duration::from_micros(200), bandwidth_bps: Some(10_000_000_000), loss: 0.0 };

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

/// Sites, the links between them, and the pipes' occupancy.
#[derive(Debug, Clone, Default)]
pub struct Network {
    specs: BTreeMap<(SiteId, SiteId), LinkSpec>,
    pipes: BTreeMap<(SiteId, SiteId), Pipe>,
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

    /// Puts `bytes` on the pipe from `from` to `to` at `now`; returns when
    /// they arrive, or `None` when the sites are not linked.
    pub fn transmit(&mut self, now: Timestamp, from: SiteId, to: SiteId, bytes: u64) -> Option<Timestamp> {
        let latency = self.link(from, to)?.latency;
        self.serialize(now, from, to, bytes).map(|done| done + latency)
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

    #[test]
    fn one_mib_on_100_mbit_takes_about_84_ms() {
        let spec = LinkSpec { latency: Duration::ZERO, bandwidth_bps: Some(100_000_000), loss: 0.0 };
        let d = spec.serialization_delay(1024 * 1024);
        assert!((83..=84).contains(&d.as_millis()), "{d:?}");
    }

    #[test]
    fn messages_queue_behind_each_other_on_one_pipe() {
        let mut net = Network::default();
        let (a, b) = (SiteId(0), SiteId(1));
        net.set_link(a, b, LinkSpec { latency: Duration::from_millis(40), bandwidth_bps: Some(8_000_000), loss: 0.0 });
        // 1 MB at 8 Mbit/s = 1 s on the wire.
        let first = net.transmit(Timestamp::ZERO, a, b, 1_000_000).unwrap();
        let second = net.transmit(Timestamp::ZERO, a, b, 1_000_000).unwrap();
        assert_eq!(first, Timestamp::ZERO + Duration::from_millis(1040));
        assert_eq!(second, Timestamp::ZERO + Duration::from_millis(2040));
        // The other direction is a separate pipe.
        let back = net.transmit(Timestamp::ZERO, b, a, 1_000_000).unwrap();
        assert_eq!(back, first);
        assert_eq!(net.bytes_sent(a, b), 2_000_000);
    }

    #[test]
    fn unlinked_sites_cannot_talk() {
        let mut net = Network::default();
        assert!(net.transmit(Timestamp::ZERO, SiteId(0), SiteId(1), 1).is_none());
        assert!(net.transmit(Timestamp::ZERO, SiteId(0), SiteId(0), 1).is_some());
    }
}
