//! The value grammars of configuration files (scenarios and deployment
//! files alike): sizes, bandwidths, durations, instants and schedules, as
//! strings, plus serde newtypes that parse them while the TOML is read — so
//! a bad value is reported with the line it sits on.
//!
//! Sizes are parsed by hand rather than with `bytesize`: that crate goes
//! through `f64` (silently truncating "0.1KiB" to 102 bytes) and accepts
//! decimal units (`KB` = 1000), while the contract says binary units and a
//! size must be an exact byte count.

use crate::block::{BlockSize, Compression};
use crate::config::Schedule;
use crate::time::Timestamp;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::time::Duration;

const SIZE_UNITS: [(&str, u64); 6] = [("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40), ("PiB", 1 << 50)];

const BANDWIDTH_UNITS: [(&str, u64); 6] =
    [("bit", 1), ("Kbit", 1_000), ("kbit", 1_000), ("Mbit", 1_000_000), ("Gbit", 1_000_000_000), ("Tbit", 1_000_000_000_000)];

/// A size with a binary unit ("64KiB", "1.5GiB", "4096B"; a bare number is
/// bytes). The result must be a whole number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) =
        split_number(text).ok_or_else(|| format!("invalid size {text:?}: expected a number and a unit such as \"64KiB\" or \"40GiB\""))?;
    let multiplier = if unit.is_empty() {
        1
    } else if let Some((_, m)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) {
        *m
    } else if ["KB", "MB", "GB", "TB", "PB", "kB", "K", "M", "G", "T", "k"].contains(&unit) {
        return Err(format!("invalid size {text:?}: use binary units (B, KiB, MiB, GiB, TiB, PiB)"));
    } else {
        return Err(format!("invalid size {text:?}: unknown unit {unit:?} (expected B, KiB, MiB, GiB, TiB or PiB)"));
    };
    exact_product(number, multiplier).ok_or_else(|| format!("invalid size {text:?}: not a whole number of bytes, or too large"))
}

/// A bandwidth in bits per second with a decimal unit ("100Mbit",
/// "1.5Gbit", "10Kbit"). Must be a whole, positive number of bit/s.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid bandwidth {text:?}: expected a number and a unit such as \"100Mbit\" or \"1Gbit\"");
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let Some((_, multiplier)) = BANDWIDTH_UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(format!("invalid bandwidth {text:?}: unknown unit {unit:?} (expected bit, Kbit, Mbit, Gbit or Tbit)"));
    };
    match exact_product(number, *multiplier) {
        Some(0) => Err(format!("invalid bandwidth {text:?}: must be more than zero")),
        Some(bps) => Ok(bps),
        None => Err(format!("invalid bandwidth {text:?}: not a whole number of bits per second, or too large")),
    }
}

/// A humantime duration ("90s", "20m", "6h", "1h 30m").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// A schedule: "every <duration>", the duration more than zero.
pub fn parse_every(text: &str) -> Result<Duration, String> {
    let rest = text
        .trim()
        .strip_prefix("every")
        .filter(|r| r.starts_with(char::is_whitespace))
        .ok_or_else(|| format!("invalid schedule {text:?}: expected \"every <duration>\", e.g. \"every 1h\""))?;
    let period = parse_duration(rest.trim()).map_err(|e| format!("invalid schedule {text:?}: {e}"))?;
    if period.is_zero() {
        return Err(format!("invalid schedule {text:?}: the period must be more than zero"));
    }
    Ok(period)
}

/// A job schedule: "every <duration>", "daily at HH:MM" (UTC) or "manual".
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let trimmed = text.trim();
    if trimmed.starts_with("every") {
        return parse_every(text).map(Schedule::Every);
    }
    if trimmed == "manual" {
        return Ok(Schedule::Manual);
    }
    let clock = trimmed
        .strip_prefix("daily")
        .and_then(|r| r.trim_start().strip_prefix("at"))
        .map(str::trim)
        .ok_or_else(|| format!("invalid schedule {text:?}: expected \"every <duration>\", \"daily at HH:MM\" (UTC) or \"manual\""))?;
    let (hours, minutes) = clock
        .split_once(':')
        .filter(|(h, m)| (1..=2).contains(&h.len()) && m.len() == 2)
        .and_then(|(h, m)| Some((h.parse::<u64>().ok()?, m.parse::<u64>().ok()?)))
        .filter(|&(h, m)| h < 24 && m < 60)
        .ok_or_else(|| format!("invalid schedule {text:?}: the time of day must be HH:MM between 00:00 and 23:59"))?;
    Ok(Schedule::DailyAt(Duration::from_secs(hours * 3600 + minutes * 60)))
}

/// A decimal number: its digits without the point, and how many of them
/// follow the point.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    digits: u128,
    scale: u32,
}

/// Splits "1.5 GiB" into the number and the unit (possibly empty).
fn split_number(text: &str) -> Option<(Decimal, &str)> {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(end);
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) if !frac.is_empty() => (int, frac),
        Some(_) => return None,
        None => (number, ""),
    };
    if int.is_empty() || frac.contains('.') || int.len() + frac.len() > 30 {
        return None;
    }
    let mut digits: u128 = 0;
    for c in int.chars().chain(frac.chars()) {
        digits = digits * 10 + u128::from(c.to_digit(10)?);
    }
    Some((Decimal { digits, scale: frac.len() as u32 }, unit.trim_start()))
}

/// `number * multiplier` if it is a whole number that fits in a u64.
fn exact_product(number: Decimal, multiplier: u64) -> Option<u64> {
    let scaled = number.digits.checked_mul(u128::from(multiplier))?;
    let divisor = 10u128.checked_pow(number.scale)?;
    if scaled % divisor != 0 {
        return None;
    }
    u64::try_from(scaled / divisor).ok()
}

/// Deserializes a string through one of the parsers above.
macro_rules! parsed_string {
    ($(#[$doc:meta])* $name:ident($inner:ty), $parser:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $parser(&text).map($name).map_err(de::Error::custom)
            }
        }
    };
}

parsed_string!(
    /// A size string, in bytes.
    Size(u64), parse_size
);
parsed_string!(
    /// A bandwidth string, in bits per second.
    Bandwidth(u64), parse_bandwidth
);
parsed_string!(
    /// A duration string.
    Dur(Duration), parse_duration
);
parsed_string!(
    /// An "every <duration>" string.
    Every(Duration), parse_every
);
parsed_string!(
    /// An RFC 3339 instant in UTC ("2026-01-01T00:00:00Z").
    Instant(Timestamp), Timestamp::parse_rfc3339
);
parsed_string!(
    /// A job's "every <duration>" or "daily at HH:MM" string.
    ScheduleText(Schedule), parse_schedule
);
parsed_string!(
    /// A block size string: a power of two between 4 KiB and 64 MiB.
    Block(BlockSize), parse_block_size
);
parsed_string!(
    /// A compression setting name ("optimal", ...).
    Comp(Compression), parse_compression
);

/// A job block size: a size that core accepts as a [`BlockSize`].
pub fn parse_block_size(text: &str) -> Result<BlockSize, String> {
    let bytes = parse_size(text)?;
    BlockSize::new(bytes).map_err(|e| format!("invalid block size {text:?}: {e}"))
}

/// A compression setting, by the names core gives them.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_binary_byte_counts() {
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("40GiB"), Ok(40 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("8 GiB"), Ok(8 << 30));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in
            ["", "GiB", "1.GiB", ".5GiB", "1..5GiB", "0.1KiB", "1.5B", "-1GiB", "10GB", "10 XB", "1e3KiB", "99999999999PiB", "1 GiB x"]
        {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_size("10GB").unwrap_err().contains("binary units"));
    }

    #[test]
    fn bandwidths_are_bits_per_second() {
        assert_eq!(parse_bandwidth("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_bandwidth("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("10Kbit"), Ok(10_000));
        assert_eq!(parse_bandwidth("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_bandwidth("64bit"), Ok(64));
        for bad in ["", "100", "100MB", "100Mbps", "0Mbit", "0.5bit", "fast", "1.2.3Gbit"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn durations_and_schedules() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_duration("40ms"), Ok(Duration::from_millis(40)));
        assert!(parse_duration("6 hrs later").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_every("every 1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_every("  every 30m "), Ok(Duration::from_secs(1800)));
        for bad in ["1h", "every", "every0s", "every 0s", "each 1h", "every soon"] {
            assert!(parse_every(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn schedules_are_periods_or_times_of_day() {
        assert_eq!(parse_schedule("every 2h"), Ok(Schedule::Every(Duration::from_secs(7200))));
        assert_eq!(parse_schedule("daily at 22:00"), Ok(Schedule::DailyAt(Duration::from_secs(22 * 3600))));
        assert_eq!(parse_schedule(" daily  at 7:05 "), Ok(Schedule::DailyAt(Duration::from_secs(7 * 3600 + 300))));
        assert_eq!(parse_schedule("manual"), Ok(Schedule::Manual));
        for bad in [
            "daily",
            "daily at",
            "daily at 24:00",
            "daily at 12:60",
            "daily at 12",
            "daily at 1:5",
            "daily 22:00",
            "weekly at 22:00",
            "manually",
        ] {
            let e = parse_schedule(bad).unwrap_err();
            assert!(e.contains(bad.trim()), "{bad:?}: {e}");
        }
    }
}
