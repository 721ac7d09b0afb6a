//! Sender-side pacing: how network traffic throttling rules are enforced
//! without IO. A [`Pacer`] is a token bucket kept as one timestamp (the
//! "theoretical arrival time" form of a token bucket, GCRA): the instant at
//! which everything charged so far has drained at the allowed rate. It reads
//! no clock; callers pass `now` and arm a timer for [`Pacer::ready_at`].
//!
//! A message may go once earlier traffic has drained (`ready_at <= now`);
//! its bytes are then charged, possibly putting the bucket into debt, so a
//! message larger than the bucket is never stuck — the next one just waits
//! longer. An idle pacer earns at most [`BURST`] of credit. So over any
//! interval `T`, a paced flow moves at most `rate × (T + BURST)` bytes plus
//! one message.

use crate::time::Timestamp;
use std::time::Duration;

/// Credit an idle flow may build up, as time at the allowed rate.
pub const BURST: Duration = Duration::from_millis(100);

/// One flow's token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    /// Allowed rate in bytes per second (at least 1).
    rate: u64,
    /// When everything charged so far has drained at `rate`.
    drained_at: Timestamp,
}

impl Pacer {
    /// A pacer allowing `bytes_per_sec`, with full credit.
    pub fn new(bytes_per_sec: u64) -> Self {
        Pacer { rate: bytes_per_sec.max(1), drained_at: Timestamp::ZERO }
    }

    /// A pacer whose path is busy until `drained_at` (earlier traffic).
    pub fn starting_at(bytes_per_sec: u64, drained_at: Timestamp) -> Self {
        Pacer { rate: bytes_per_sec.max(1), drained_at }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the allowed rate from `now` on. Debt already owed is
    /// rescaled, so it drains at the new rate rather than the old one.
    pub fn set_rate(&mut self, now: Timestamp, bytes_per_sec: u64) {
        let bytes_per_sec = bytes_per_sec.max(1);
        let owed = self.drained_at.saturating_since(now);
        let rescaled = owed.as_nanos().saturating_mul(u128::from(self.rate)) / u128::from(bytes_per_sec);
        self.drained_at = now + Duration::from_nanos(u64::try_from(rescaled).unwrap_or(u64::MAX));
        self.rate = bytes_per_sec;
    }

    /// The earliest time the next message may go.
    pub fn ready_at(&self) -> Timestamp {
        self.drained_at
    }

    /// Whether a message may go at `now`.
    pub fn is_ready(&self, now: Timestamp) -> bool {
        self.drained_at <= now
    }

    /// Counts `bytes` that crossed (or are crossing) the throttled path at
    /// `now`.
    pub fn charge(&mut self, now: Timestamp, bytes: u64) {
        let credit_floor = Timestamp(now.0.saturating_sub(BURST.as_nanos() as u64));
        let start = self.drained_at.max(credit_floor);
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.rate);
        self.drained_at = start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
    }
}

impl Pacer {
    /// Takes back `bytes` charged earlier that did not cross after all (an
    /// answer smaller than the request's estimate).
    pub fn refund(&mut self, bytes: u64) {
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.rate);
        self.drained_at = Timestamp(self.drained_at.0.saturating_sub(u64::try_from(nanos).unwrap_or(u64::MAX)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_millis(ms))
    }

    #[test]
    fn a_saturated_flow_moves_at_the_rate() {
        let mut p = Pacer::new(10 * MB);
        let mut now = at(1_000);
        let mut sent = 0;
        while now < at(11_000) {
            if p.is_ready(now) {
                p.charge(now, MB);
                sent += MB;
            } else {
                now = p.ready_at();
            }
        }
        // 10 s at 10 MB/s, plus the burst credit and one message.
        assert!(sent >= 100 * MB, "sent {sent}");
        assert!(sent <= 100 * MB + MB + MB, "sent {sent}");
    }

    #[test]
    fn idle_credit_is_capped_at_the_burst() {
        let mut p = Pacer::new(10 * MB);
        let now = at(60_000);
        let mut sent = 0;
        while p.is_ready(now) {
            p.charge(now, 100_000);
            sent += 100_000;
        }
        // 100 ms at 10 MB/s = 1 MB of credit, plus the message that went into debt.
        assert_eq!(sent, MB + 100_000);
    }

    #[test]
    fn a_large_message_goes_and_the_next_waits_for_it() {
        let mut p = Pacer::new(MB);
        p.charge(at(0), 5 * MB);
        assert!(!p.is_ready(at(4_000)));
        assert!(p.is_ready(at(5_000)));
    }

    #[test]
    fn a_refund_gives_back_what_did_not_cross() {
        let mut p = Pacer::new(MB);
        p.charge(at(0), 8 * MB);
        p.refund(5 * MB);
        assert_eq!(p.ready_at(), at(3_000));
    }

    #[test]
    fn lowering_the_rate_stretches_the_debt() {
        let mut p = Pacer::new(2 * MB);
        p.charge(at(1_000), 4 * MB + 200_000);
        assert_eq!(p.ready_at(), at(3_000));
        p.set_rate(at(2_000), MB);
        // 1 s of debt at 2 MB/s is 2 s at 1 MB/s.
        assert_eq!(p.ready_at(), at(4_000));
    }
}
