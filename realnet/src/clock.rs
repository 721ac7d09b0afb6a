//! Where the driver's `now` comes from.
//!
//! Core never reads a clock; the driver reads one and passes the result as
//! `now` to every `handle` call. The clock is a trait so the simulator can
//! substitute its own notion of time.

use blockferry_core::Timestamp;

/// A source of [`Timestamp`]s: time since the Unix epoch.
pub trait Clock {
    /// The current time. Must never go backwards.
    fn now(&self) -> Timestamp;
}

/// The wall clock, read once when the clock is made, then advanced by
/// tokio's monotonic clock.
///
/// Anchoring on the wall clock is what lets a restarted daemon carry on
/// where time is (restore points made before the restart stay older than
/// the ones made after it, and id counters seeded from the time stay above
/// the earlier incarnation's). Advancing by the monotonic clock keeps time
/// from going backwards while the process runs, whatever NTP does to the
/// wall clock meanwhile. `tokio::time::Instant` (not `std::time`) keeps it
/// consistent with the driver's timers when tokio's time is paused; a
/// simulation, whose runs must not depend on the wall clock, brings its own
/// clock instead.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The wall clock's reading at `anchor`.
    wall: Timestamp,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the wall clock now. Must be called inside a tokio
    /// runtime when time is paused, so the anchor is on the same clock.
    pub fn new() -> Self {
        Self::reading(wall_clock())
    }

    /// A clock that reads `wall` now and advances with tokio's clock (for
    /// tests, and drivers that share one time base).
    pub fn reading(wall: Timestamp) -> Self {
        TokioClock { wall, anchor: tokio::time::Instant::now() }
    }
}

/// The wall clock now; a clock set before 1970 reads as the epoch.
fn wall_clock() -> Timestamp {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(Timestamp::ZERO, Timestamp::from_duration)
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.wall + tokio::time::Instant::now().saturating_duration_since(self.anchor)
    }
}

impl<C: Clock + ?Sized> Clock for std::rc::Rc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Issue 13 §4: a daemon's clock reads time since the Unix epoch, so
    /// a clock made after a restart reads later than one made before it.
    #[test]
    fn reads_the_wall_clock_and_never_goes_back() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            let before = TokioClock::new();
            let first = before.now();
            let wall = wall_clock();
            assert!(wall.saturating_since(first) < Duration::from_secs(5) && first.saturating_since(wall) < Duration::from_secs(5));
            assert!(first > Timestamp::parse_rfc3339("2025-01-01T00:00:00Z").unwrap(), "{first}");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let restarted = TokioClock::new();
            assert!(restarted.now() >= first + Duration::from_millis(20), "{} then {}", first, restarted.now());
            assert!(before.now() >= first + Duration::from_millis(20));
        });
    }
}
