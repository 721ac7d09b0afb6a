//! TCP over a lossy path, as a rate: a connection cannot move bytes faster
//! than its congestion window allows, and on a path that drops packets the
//! window settles where Mathis et al. ("The macroscopic behavior of the TCP
//! congestion avoidance algorithm", 1997) put it:
//!
//! ```text
//! rate ≤ MSS · C / (RTT · √p)      C = √(3/2) ≈ 1.22
//! ```
//!
//! That is why a link's `loss` is a packet loss rate and not a chance of
//! breaking a connection: 0.1 % loss slows a long transfer down, it does not
//! stop it. A proxy spreads a task's traffic over several connections
//! (`streams`, as Veeam's data movers do), so its bundle gets that many
//! times one flow's rate, never more than the link carries (the link's pipe
//! bounds that separately).

use std::time::Duration;

/// Maximum segment size of the modelled flows (Ethernet MTU, IPv4, no
/// options).
pub const MSS: f64 = 1460.0;

/// The Mathis constant for periodic loss with delayed ACKs off: √(3/2).
pub const MATHIS_C: f64 = 1.22;

/// TCP flows a proxy's connection to one peer bundles unless the scenario
/// says otherwise (Veeam's default: five per job).
pub const DEFAULT_STREAMS: u32 = 5;

/// Most flows a proxy may bundle (a bound, so a typo cannot make a lossy
/// link lossless).
pub const MAX_STREAMS: u32 = 64;

/// Bytes per second one bundle of `streams` TCP flows sustains on a path
/// with one-way `latency` and packet loss rate `loss`; `None` when loss does
/// not bound it (no loss, or no round trip to speak of).
pub fn mathis_rate(latency: Duration, loss: f64, streams: u32) -> Option<f64> {
    let rtt = 2.0 * latency.as_secs_f64();
    if loss <= 0.0 || rtt <= 0.0 {
        return None;
    }
    Some(f64::from(streams.max(1)) * MSS * MATHIS_C / (rtt * loss.sqrt()))
}

/// How long a connection needs to move `bytes` at `rate` bytes per second
/// (rounded up to whole nanoseconds, so a rate never looks faster than it
/// is).
pub fn pacing_delay(bytes: u64, rate: f64) -> Duration {
    let nanos = (bytes as f64 * 1e9 / rate).ceil();
    Duration::from_nanos(if nanos.is_finite() && nanos < u64::MAX as f64 { nanos as u64 } else { u64::MAX })
}

/// The flows a connection from `sender` to `receiver` bundles, given each
/// end's `streams` (`Some` for proxies only): the proxy end's, the
/// sender's when both are proxies, and a single flow between two nodes
/// that are not proxies.
pub fn bundle(sender: Option<u32>, receiver: Option<u32>) -> u32 {
    sender.or(receiver).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flow_at_80_ms_and_half_a_percent_loss_gets_about_157_kb_per_second() {
        let rate = mathis_rate(Duration::from_millis(80), 0.005, 1).expect("capped");
        assert!((157_000.0..158_000.0).contains(&rate), "{rate}");
        let five = mathis_rate(Duration::from_millis(80), 0.005, 5).expect("capped");
        assert!((five / rate - 5.0).abs() < 1e-9, "{five}");
    }

    #[test]
    fn no_loss_or_no_latency_means_no_cap() {
        assert_eq!(mathis_rate(Duration::from_millis(80), 0.0, 5), None);
        assert_eq!(mathis_rate(Duration::ZERO, 0.01, 1), None);
    }

    #[test]
    fn a_proxy_end_decides_the_bundle_and_the_sender_wins_a_tie() {
        assert_eq!(bundle(Some(5), None), 5);
        assert_eq!(bundle(None, Some(3)), 3);
        assert_eq!(bundle(Some(2), Some(7)), 2);
        assert_eq!(bundle(None, None), 1);
    }

    #[test]
    fn pacing_rounds_up() {
        assert_eq!(pacing_delay(1000, 1000.0), Duration::from_secs(1));
        assert_eq!(pacing_delay(1, 3.0), Duration::from_nanos(333_333_334));
    }
}
