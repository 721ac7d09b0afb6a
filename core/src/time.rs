//! Time as a value. Core never reads a clock: every entry point takes `now`,
//! which the driver derives from its own notion of time (simulated or real).
//!
//! A [`Timestamp`] is absolute — time since the Unix epoch, UTC — because
//! it outlives processes: it orders restore points for retention, seeds id
//! counters and decides when `daily at 22:00` is due. A daemon that restarts
//! reads the wall clock again and carries on from where time is, not from
//! zero. The simulator starts each run at a fixed instant (the scenario's
//! `start`), so its traces stay deterministic.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// Nanoseconds since the Unix epoch (1970-01-01T00:00:00Z), leap seconds
/// not counted (as the system clock counts them). `u64` nanoseconds last until
/// the year 2554.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

/// One day: `daily` schedules repeat at this period (UTC has no daylight
/// saving, so every day is this long).
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Timestamp {
    /// The Unix epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// Parses an RFC 3339 instant in UTC, such as `2026-01-01T00:00:00Z`.
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let instant = humantime::parse_rfc3339(text).map_err(|e| format!("{text:?} is not an RFC 3339 instant in UTC ({e})"))?;
        let since_epoch = instant.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{text:?} is before 1970"))?;
        Ok(Timestamp::from_duration(since_epoch))
    }

    /// Time since the start of this instant's day (UTC).
    pub fn time_of_day(self) -> Duration {
        Duration::from_nanos(self.0 % DAY.as_nanos() as u64)
    }

    /// The first instant at or after `self` whose time of day is `at`
    /// (`at` beyond a day wraps around).
    pub fn next_time_of_day(self, at: Duration) -> Timestamp {
        let day = DAY.as_nanos() as u64;
        let at = (at.as_nanos() % u128::from(day)) as u64;
        let midnight = self.0 - self.0 % day;
        let today = Timestamp(midnight.saturating_add(at));
        if today >= self { today } else { today + DAY }
    }

    pub fn from_duration(d: Duration) -> Self {
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// Time elapsed since `earlier`, zero if `earlier` is in the future.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, earlier: Timestamp) -> Duration {
        self.saturating_since(earlier)
    }
}

/// RFC 3339 in UTC to the millisecond: `2026-01-01T22:00:00.000Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let instant = std::time::UNIX_EPOCH + self.as_duration();
        write!(f, "{}", humantime::format_rfc3339_millis(instant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn reads_and_writes_rfc3339_in_utc() {
        let t = at("2026-01-01T00:00:00Z");
        assert_eq!(t.0, 1_767_225_600 * 1_000_000_000);
        assert_eq!((t + Duration::from_millis(22 * 3_600_000 + 5)).to_string(), "2026-01-01T22:00:00.005Z");
        assert!(Timestamp::parse_rfc3339("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn the_next_time_of_day_is_today_or_tomorrow() {
        let ten_pm = Duration::from_secs(22 * 3600);
        assert_eq!(at("2026-03-04T08:30:00Z").next_time_of_day(ten_pm), at("2026-03-04T22:00:00Z"));
        assert_eq!(at("2026-03-04T22:00:00Z").next_time_of_day(ten_pm), at("2026-03-04T22:00:00Z"));
        assert_eq!(at("2026-03-04T22:00:01Z").next_time_of_day(ten_pm), at("2026-03-05T22:00:00Z"));
        assert_eq!(at("2026-12-31T23:59:00Z").next_time_of_day(Duration::ZERO), at("2027-01-01T00:00:00Z"));
        assert_eq!(at("2026-03-04T22:00:01Z").time_of_day(), ten_pm + Duration::from_secs(1));
    }
}
