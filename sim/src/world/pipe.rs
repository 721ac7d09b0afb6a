//! Device time: a host's datastore or a repository's disk serves one
//! request at a time at a fixed throughput, like the network's pipes
//! (`crate::net`). A request starts when the device is free, occupies it
//! for `fixed + bytes / throughput`, and completes then; concurrent tasks
//! on one device therefore share its throughput.

use blockferry_core::Timestamp;
use std::time::Duration;

#[derive(Clone, Copy, Debug, Default)]
pub struct Pipe {
    busy_until: Timestamp,
}

impl Pipe {
    /// Occupies the device from `max(now, busy)` for `fixed` plus `bytes`
    /// at `bytes_per_sec`; returns the completion time.
    pub fn occupy(&mut self, now: Timestamp, fixed: Duration, bytes: u64, bytes_per_sec: u64) -> Timestamp {
        let start = self.busy_until.max(now);
        let done = start + fixed + transfer_time(bytes, bytes_per_sec);
        self.busy_until = done;
        done
    }

    pub fn busy_until(&self) -> Timestamp {
        self.busy_until
    }
}

/// `bytes` at `bytes_per_sec` (zero throughput: no cost).
pub fn transfer_time(bytes: u64, bytes_per_sec: u64) -> Duration {
    if bytes_per_sec == 0 {
        return Duration::ZERO;
    }
    let nanos = (u128::from(bytes) * 1_000_000_000).div_ceil(u128::from(bytes_per_sec));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_queue_on_one_device() {
        let mut p = Pipe::default();
        let ms = Duration::from_millis;
        let first = p.occupy(Timestamp::ZERO, ms(1), 100_000_000, 100_000_000);
        assert_eq!(first, Timestamp::ZERO + ms(1001));
        let second = p.occupy(Timestamp::ZERO + ms(10), ms(0), 50_000_000, 100_000_000);
        assert_eq!(second, Timestamp::ZERO + ms(1501));
        let later = p.occupy(Timestamp::ZERO + ms(5000), ms(2), 0, 100_000_000);
        assert_eq!(later, Timestamp::ZERO + ms(5002));
    }
}
