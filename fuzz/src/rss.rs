//! The process's memory, as Linux reports it in `/proc/self/status`.

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), if the system
/// has one.
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory now, KiB.
pub fn resident_kib() -> Option<u64> {
    status_kib("VmRSS")
}

/// The peak resident memory since the start or the last [`reset_peak`], KiB.
pub fn peak_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// Restarts the peak at the current resident size (`clear_refs` mode 5,
/// Linux 4.0 and later), so each role's peak is its own. `false` if the
/// system does not allow it: peaks then include earlier roles'.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_at_least_what_is_resident() {
        let (Some(now), Some(peak)) = (resident_kib(), peak_kib()) else { return };
        assert!(now > 0 && peak >= now, "{now} {peak}");
    }
}
