//! A VM's guest workload: block writes at random instants.
//!
//! Writes arrive as a Poisson process of `writes_per_hour` per VM (so
//! exponential gaps), each on a disk chosen in proportion to its size; a
//! `hot_fraction` share of them hit the disk's hot set (one contiguous
//! extent of about 5% of the disk at a seeded place, see `Disk::hot`), the
//! rest fall uniformly on the other blocks. The generator owns its RNG,
//! derived from the world key and the VM's name, so adding a VM never
//! shifts another VM's writes, and is pulled lazily: the hypervisor applies
//! every write due before it answers a request.

use crate::scenario::Workload;
use blockferry_core::Timestamp;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use std::time::Duration;

/// Where a disk's writes may land.
#[derive(Clone, Debug)]
pub struct DiskTarget {
    pub index: u16,
    pub bytes: u64,
    pub fine_count: u64,
    pub hot: Range<u64>,
}

#[derive(Clone, Debug)]
pub struct GuestWorkload {
    mean_gap_nanos: f64,
    hot_fraction: f64,
    rng: ChaCha8Rng,
    next_at: Timestamp,
    disks: Vec<DiskTarget>,
    total_bytes: u64,
}

impl GuestWorkload {
    /// A workload starting at `start`; `None` when it never writes.
    pub fn new(spec: Workload, rng: ChaCha8Rng, start: Timestamp, disks: Vec<DiskTarget>) -> Option<GuestWorkload> {
        let total_bytes: u64 = disks.iter().filter(|d| d.fine_count > 0).map(|d| d.bytes).sum();
        if spec.writes_per_hour == 0 || total_bytes == 0 {
            return None;
        }
        let mut w = GuestWorkload {
            mean_gap_nanos: 3600e9 / spec.writes_per_hour as f64,
            hot_fraction: spec.hot_fraction.clamp(0.0, 1.0),
            rng,
            next_at: start,
            disks,
            total_bytes,
        };
        w.next_at = start + w.gap();
        Some(w)
    }

    /// When the next write lands.
    pub fn next_at(&self) -> Timestamp {
        self.next_at
    }

    /// Takes the due write — (disk index, fine block) — and draws the next.
    pub fn pop(&mut self) -> (u16, u64) {
        let target = self.target();
        self.next_at = self.next_at + self.gap();
        target
    }

    fn gap(&mut self) -> Duration {
        let u: f64 = self.rng.random();
        let nanos = -(1.0 - u).ln() * self.mean_gap_nanos;
        Duration::from_nanos(nanos.round().clamp(0.0, 1e18) as u64)
    }

    fn target(&mut self) -> (u16, u64) {
        let mut at = self.rng.random_range(0..self.total_bytes);
        let disk = self
            .disks
            .iter()
            .filter(|d| d.fine_count > 0)
            .find(|d| {
                let here = at < d.bytes;
                if !here {
                    at -= d.bytes;
                }
                here
            })
            .or_else(|| self.disks.iter().rfind(|d| d.fine_count > 0))
            .cloned();
        let Some(disk) = disk else { return (0, 0) };
        let hot_len = disk.hot.end - disk.hot.start;
        let cold_len = disk.fine_count - hot_len;
        let hot = hot_len > 0 && (cold_len == 0 || self.rng.random_bool(self.hot_fraction));
        let index = if hot {
            disk.hot.start + self.rng.random_range(0..hot_len)
        } else {
            let j = self.rng.random_range(0..cold_len);
            if j < disk.hot.start { j } else { j + hot_len }
        };
        (disk.index, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn workload(writes_per_hour: u64, hot_fraction: f64) -> GuestWorkload {
        let disks = vec![
            DiskTarget { index: 0, bytes: 3 << 30, fine_count: 3072, hot: 100..250 },
            DiskTarget { index: 1, bytes: 1 << 30, fine_count: 1024, hot: 0..50 },
        ];
        GuestWorkload::new(Workload { writes_per_hour, hot_fraction }, ChaCha8Rng::seed_from_u64(1), Timestamp::ZERO, disks).unwrap()
    }

    #[test]
    fn rate_disk_share_and_hot_share() {
        let mut w = workload(3600, 0.5);
        let hour = Timestamp::from_duration(Duration::from_secs(100 * 3600));
        let (mut n, mut disk0, mut hot) = (0u32, 0u32, 0u32);
        while w.next_at() <= hour {
            let (disk, index) = w.pop();
            n += 1;
            if disk == 0 {
                disk0 += 1;
                hot += u32::from((100..250).contains(&index));
                assert!(index < 3072);
            } else {
                assert!(index < 1024);
            }
        }
        assert!((340_000..380_000).contains(&n), "{n} writes in 100 h at 3600/h");
        let share0 = f64::from(disk0) / f64::from(n);
        assert!((0.73..0.77).contains(&share0), "{share0}");
        let hot_share = f64::from(hot) / f64::from(disk0);
        assert!((0.48..0.53).contains(&hot_share), "{hot_share}");
    }

    #[test]
    fn silent_workloads_are_none_and_runs_replay() {
        let none =
            GuestWorkload::new(Workload { writes_per_hour: 0, hot_fraction: 0.0 }, ChaCha8Rng::seed_from_u64(1), Timestamp::ZERO, vec![]);
        assert!(none.is_none());
        let (mut a, mut b) = (workload(100, 0.1), workload(100, 0.1));
        for _ in 0..50 {
            assert_eq!((a.next_at(), a.pop()), (b.next_at(), b.pop()));
        }
    }
}
