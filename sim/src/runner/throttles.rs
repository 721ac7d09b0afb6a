//! Did the network traffic throttling rules and job caps hold? The network
//! model (the discrete-event engine's, or the turmoil transport's shaper)
//! meters the bytes crossing each throttled site pair per second; here the busiest window of
//! [`WINDOW_SECS`] is compared with what the rule allows. A job's cap is
//! checked against its fastest disk task (a task's share never exceeds the
//! cap), in both engines.
//!
//! The bound allows what pacing legitimately lets through beyond the rate:
//! every task's idle credit ([`BURST`]) and the one message (a batch, or a
//! pulled batch's answer) a task may send into debt — two batches per task
//! slot to be safe — plus 5% for the unpaced control traffic (acks,
//! digests, commits) on the link and the idle credit each of a stream of
//! short tasks may start with.

use crate::checker::Checker;
use crate::net::{Network, SiteId};
use crate::report::{JobSummary, ThrottleFigures};
use crate::scenario::Scenario;
use crate::topology::Topology;
use blockferry_core::pacing::BURST;
use blockferry_core::roles::proxy::{BATCH_BYTES, WINDOW};

/// The length of the window the rate is measured over.
pub const WINDOW_SECS: u64 = 300;

/// Measures every rule of the scenario; a rule exceeded is a violation.
pub fn check(scenario: &Scenario, topo: &Topology, network: &Network, checker: &mut Checker) -> Vec<ThrottleFigures> {
    let slots: u64 = topo.deployment.proxies.values().map(|p| u64::from(p.task_slots)).sum();
    let in_flight = slots * 2 * BATCH_BYTES;
    let mut figures = Vec::new();
    for rule in &scenario.throttles {
        let site = |name: &str| scenario.site_index(name).map(|i| SiteId(i as u32));
        let (Some(a), Some(b)) = (site(&rule.between[0]), site(&rule.between[1])) else { continue };
        let Some(per_second) = network.metered(a, b) else { continue };
        let limit = rule.bandwidth_bps / 8;
        let allowed_secs = WINDOW_SECS as f64 + BURST.as_secs_f64();
        let bound = (limit as f64 * allowed_secs * 1.05) as u64 + in_flight;
        let peak = busiest_window(per_second, WINDOW_SECS);
        if peak > bound {
            checker.violation(format!(
                "throttle between {:?} and {:?}: {peak} bytes crossed in {WINDOW_SECS}s, the rule allows at most {bound} ({} bit/s)",
                rule.between[0], rule.between[1], rule.bandwidth_bps
            ));
        }
        figures.push(ThrottleFigures {
            between: rule.between.clone(),
            limit_bps: rule.bandwidth_bps,
            bytes: per_second.values().sum(),
            peak_bps: peak * 8 / WINDOW_SECS,
            window_secs: WINDOW_SECS,
        });
    }
    figures
}

/// Every job with a throttle: its fastest task may not beat the cap by
/// more than the pacer's credit and one window of batches.
pub fn check_jobs(scenario: &Scenario, jobs: &std::collections::BTreeMap<String, JobSummary>, checker: &mut Checker) {
    for job in &scenario.jobs {
        let (Some(cap_bps), Some(fastest)) = (job.throttle_bps, jobs.get(&job.name).and_then(|j| j.fastest_task)) else { continue };
        let secs = fastest.millis as f64 / 1000.0 + BURST.as_secs_f64();
        let bound = (cap_bps as f64 / 8.0 * secs * 1.02) as u64 + WINDOW as u64 * BATCH_BYTES;
        if fastest.bytes_sent > bound {
            checker.violation(format!(
                "throttle of job {:?}: a task moved {} bytes in {} ms, the cap of {cap_bps} bit/s allows at most {bound}",
                job.name, fastest.bytes_sent, fastest.millis
            ));
        }
    }
}

/// The most bytes in any `window` consecutive seconds.
fn busiest_window(per_second: &std::collections::BTreeMap<u64, u64>, window: u64) -> u64 {
    let mut sum = 0u64;
    let mut best = 0u64;
    let mut tail = per_second.iter().peekable();
    for (&second, &bytes) in per_second {
        sum += bytes;
        while let Some(&(&old, &old_bytes)) = tail.peek() {
            if old + window > second {
                break;
            }
            sum -= old_bytes;
            tail.next();
        }
        best = best.max(sum);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn the_busiest_window_slides_over_gaps() {
        let bins = BTreeMap::from([(0, 5), (1, 5), (10, 7), (12, 1), (400, 2)]);
        assert_eq!(busiest_window(&bins, 1), 7);
        assert_eq!(busiest_window(&bins, 3), 10);
        assert_eq!(busiest_window(&bins, 11), 17);
        assert_eq!(busiest_window(&bins, 1000), 20);
    }
}
