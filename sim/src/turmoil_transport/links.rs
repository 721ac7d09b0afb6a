//! The WAN and LAN links of a turmoil run, shared by every shaped stream
//! and by the runner (whose fault steps change them): bandwidth as
//! serialization delay on one pipe per direction (the same [`Network`]
//! model the discrete-event engine uses, so both charge a message the same
//! bytes), each connection held to the rate packet loss leaves TCP (the same
//! [`tcp`] model), breaks drawn from a seeded stream, and the bytes each
//! direction carried.

use crate::net::{Network, SiteId, tcp};
use blockferry_core::Timestamp;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::shaped::Route;

/// Shared between the runner and every stream of the run. Borrowed only
/// for the length of one call, never across an await.
pub type SharedLinks = Rc<RefCell<Links>>;

pub struct Links {
    net: Network,
    /// Draws which messages break their connection on links with `breaks`;
    /// `None` when no link has them (no draws, so adding an unbreaking link
    /// never shifts anything).
    breaks: Option<ChaCha8Rng>,
    /// How far back a stream that kept its pipe busy may start its next
    /// piece: the simulation's tick. A stream only learns its piece has
    /// left at the first tick after, and without this the pipe would idle
    /// until then, capping every link at one piece per tick.
    backfill: Duration,
}

impl Links {
    /// `network`'s links (its latencies are turmoil's to apply, its
    /// bandwidths, losses and breaks are ours), breaks drawn from `breaks`.
    pub fn new(network: Network, breaks: Option<ChaCha8Rng>, tick: Duration) -> SharedLinks {
        Rc::new(RefCell::new(Links { net: network, breaks, backfill: tick }))
    }

    /// Reserves the pipe `route` crosses for `cost` bytes of a stream that
    /// bundles `route.streams` TCP flows. The piece starts when the pipe is
    /// free, but no earlier than `now` — or than `after` (when this stream's
    /// previous piece left), if that is within one tick of `now`. On a lossy
    /// link it also takes the stream `cost / rate` from that start (a stream
    /// has one piece out at a time, so the start is when the stream itself
    /// is free). Returns when its last bit has left; sites without a link
    /// cost nothing.
    pub fn reserve(&mut self, now: Timestamp, after: Option<Timestamp>, route: Route, cost: u64) -> Timestamp {
        let floor = match after {
            Some(prev) => prev.max(Timestamp(now.0.saturating_sub(self.backfill.as_nanos() as u64))).min(now),
            None => now,
        };
        let wire = self.net.serialize(floor, route.from, route.to, cost).unwrap_or(now);
        let rate = self.net.link(route.from, route.to).and_then(|l| l.conn_rate(route.streams));
        rate.map_or(wire, |rate| wire.max(floor + tcp::pacing_delay(cost, rate)))
    }

    /// Whether the next message from `from` to `to` breaks its connection.
    pub fn breaks(&mut self, from: SiteId, to: SiteId) -> bool {
        self.net.link(from, to).is_some_and(|l| l.draw_break(self.breaks.as_mut()))
    }

    /// Changes a link's bandwidth (slow_link faults; `None`: unlimited).
    pub fn set_bandwidth(&mut self, a: SiteId, b: SiteId, bandwidth_bps: Option<u64>) {
        self.net.set_bandwidth(a, b, bandwidth_bps);
    }

    /// Bytes sent so far inside sites (LAN) and between sites (WAN).
    pub fn lan_wan_bytes(&self) -> (u64, u64) {
        self.net.lan_wan_bytes()
    }

    /// The network model, with its meters of throttled site pairs.
    pub fn network(&self) -> &Network {
        &self.net
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::LinkSpec;

    fn links(bps: u64) -> SharedLinks {
        let mut net = Network::default();
        net.set_link(
            SiteId(0),
            SiteId(1),
            LinkSpec { latency: Duration::from_millis(30), bandwidth_bps: Some(bps), ..LinkSpec::default() },
        );
        Links::new(net, None, Duration::from_millis(10))
    }

    const MS: u64 = 1_000_000;
    const AB: Route = Route { from: SiteId(0), to: SiteId(1), streams: 1 };
    const BA: Route = Route { from: SiteId(1), to: SiteId(0), streams: 1 };

    #[test]
    fn pieces_queue_behind_each_other_and_backfill_one_tick_at_most() {
        let links = links(8_000_000); // 1 byte per µs
        let mut l = links.borrow_mut();
        // 5000 bytes = 5 ms each; the second queues behind the first.
        assert_eq!(l.reserve(Timestamp(100 * MS), None, AB, 5000), Timestamp(105 * MS));
        assert_eq!(l.reserve(Timestamp(100 * MS), None, AB, 5000), Timestamp(110 * MS));
        // A stream whose piece left at 110 ms hears of it at the 120 ms
        // tick: its next piece starts at 110, not 120.
        assert_eq!(l.reserve(Timestamp(120 * MS), Some(Timestamp(110 * MS)), AB, 5000), Timestamp(115 * MS));
        // But not further back than a tick.
        assert_eq!(l.reserve(Timestamp(500 * MS), Some(Timestamp(115 * MS)), AB, 5000), Timestamp(495 * MS));
        // The other direction is its own pipe.
        assert_eq!(l.reserve(Timestamp(100 * MS), None, BA, 5000), Timestamp(105 * MS));
        assert_eq!(l.lan_wan_bytes(), (0, 25_000));
    }

    #[test]
    fn a_slower_link_takes_longer() {
        let links = links(8_000_000);
        let mut l = links.borrow_mut();
        l.set_bandwidth(SiteId(1), SiteId(0), Some(800_000));
        assert_eq!(l.reserve(Timestamp::ZERO, None, AB, 5000), Timestamp(50 * MS));
    }

    #[test]
    fn a_lossy_link_paces_each_stream_and_more_flows_go_faster() {
        let mut net = Network::default();
        let wan = LinkSpec { latency: Duration::from_millis(80), bandwidth_bps: Some(100_000_000), loss: 0.005, breaks: 0.0 };
        net.set_link(SiteId(0), SiteId(1), wan);
        let links = Links::new(net, None, Duration::from_millis(10));
        let mut l = links.borrow_mut();
        // 64 KiB at one flow's 157 KB/s: about 416 ms; the pipe alone, 5 ms.
        let one = l.reserve(Timestamp::ZERO, None, AB, 65_536);
        assert!((415 * MS..418 * MS).contains(&one.0), "{one:?}");
        let five = l.reserve(Timestamp::ZERO, None, Route { streams: 5, ..AB }, 65_536);
        assert!((83 * MS..84 * MS).contains(&five.0), "{five:?}");
        // The same figures the discrete-event network charges.
        let rate = wan.conn_rate(1).expect("capped");
        assert_eq!(one, Timestamp::ZERO + tcp::pacing_delay(65_536, rate));
    }
}
