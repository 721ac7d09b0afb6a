//! The liveness phase, as TigerBeetle's VOPR runs one: once the scenario's
//! time is up, every fault still in force is lifted (partitions repaired,
//! crashed nodes restarted, links back to speed, disks no longer full) and
//! the run goes on, faults off, until every job has completed a successful
//! session since the faults stopped — or until the bound runs out, which
//! fails the run. So liveness is checked on every run, however close to the
//! end its last fault falls, and a run never passes because it stopped
//! looking too early.
//!
//! Invariant 6 (ARCHITECTURE.md): once faults stop, every scheduled job
//! completes within a bound. The bound is two schedule periods of the
//! slowest job (a session may have just been skipped while the previous
//! one was failing) plus [`LIVENESS_SLACK`] for the retries a failing task
//! may still be waiting out.

use super::faults::FaultStep;
use crate::scenario::Scenario;
use blockferry_core::Timestamp;
use std::time::Duration;

/// Beyond two schedule periods, how long a job may take to recover after
/// the faults end (its retries back off up to half an hour, and the
/// manager's watchdog gives up on a silent task after ten minutes).
pub const LIVENESS_SLACK: Duration = Duration::from_secs(3600);

/// How long after the faults stop every job must have succeeded.
pub fn bound(scenario: &Scenario) -> Duration {
    scenario.jobs.iter().filter_map(|j| j.schedule.period()).map(|p| p * 2).max().unwrap_or_default() + LIVENESS_SLACK
}

/// A run's liveness phase, planned from its fault timeline before the run:
/// what to lift at the scenario's end, and how long to go on at most.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The scenario's end, where the phase begins.
    pub end: Timestamp,
    /// When the faults stop: when the last one ends (the run's start if
    /// there are none), or at `end` if one is still in force then.
    pub quiet_from: Timestamp,
    /// Every job must have recovered by then.
    pub deadline: Timestamp,
    /// The steps that end what is still in force at `end`.
    pub lifting: Vec<FaultStep>,
}

impl Plan {
    /// The plan for `scenario`, whose fault `steps` end at `faults_end`.
    pub fn new(scenario: &Scenario, steps: &[(Timestamp, FaultStep)], faults_end: Timestamp) -> Plan {
        let end = scenario.start + scenario.duration;
        let quiet_from = faults_end.min(end);
        Plan { end, quiet_from, deadline: quiet_from + bound(scenario), lifting: lifting(steps, end) }
    }

    /// How the phase went, had it run until `stopped`.
    pub fn outcome(&self, stopped: Timestamp) -> Phase {
        Phase { quiet_from: self.quiet_from, phase: stopped.max(self.end) - self.end }
    }
}

/// How a run's liveness phase went.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// When the faults stopped.
    pub quiet_from: Timestamp,
    /// How long the run went on past the scenario's duration.
    pub phase: Duration,
}

/// The steps that lift what is still in force at `end`: of the steps
/// scheduled after it, those that end a fault. A fault that would only
/// start later never starts.
fn lifting(steps: &[(Timestamp, FaultStep)], end: Timestamp) -> Vec<FaultStep> {
    steps
        .iter()
        .filter(|(at, _)| *at > end)
        .filter(|(_, step)| match step {
            FaultStep::Repair(..) | FaultStep::Restart(_) | FaultStep::DiskFull { full: false, .. } => true,
            // A slow link's end puts the link back to its normal speed; a
            // start after `end` would have been followed by that end too,
            // so applying it is harmless either way.
            FaultStep::Bandwidth(..) => true,
            FaultStep::Partition(..)
            | FaultStep::Crash { .. }
            | FaultStep::DiskFull { full: true, .. }
            | FaultStep::Corrupt { .. }
            | FaultStep::CbtReset(_)
            | FaultStep::CbtMiss(..) => false,
        })
        .map(|(_, step)| step.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::SiteId;

    fn at(secs: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_secs(secs)
    }

    #[test]
    fn only_the_ends_of_faults_after_the_run_are_applied() {
        let (a, b) = (SiteId(0), SiteId(1));
        let steps = vec![
            (at(10), FaultStep::Partition(a, b)),
            (at(20), FaultStep::Repair(a, b)),
            (at(90), FaultStep::Partition(a, b)),
            (at(150), FaultStep::Repair(a, b)),
            (at(160), FaultStep::DiskFull { repository: "r".into(), full: true }),
            (at(170), FaultStep::DiskFull { repository: "r".into(), full: false }),
        ];
        let lifted = lifting(&steps, at(100));
        assert_eq!(lifted, vec![FaultStep::Repair(a, b), FaultStep::DiskFull { repository: "r".into(), full: false }]);
    }
}
