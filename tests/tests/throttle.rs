//! Network traffic throttling rules and job caps (issue 5): the manager
//! splits each cap among the tasks under it and proxies pace their traffic
//! in core. `scenarios/throttle-wan.toml` runs backups across a 1 Gbit WAN
//! under a 100 Mbit rule and a replication job capped at 20 Mbit.

use blockferry_sim::report::Summary;
use blockferry_sim::runner::{self, EngineChoice, RunOptions, Sabotage};
use blockferry_sim::scenario::Scenario;
use blockferry_tests::scenarios;

const RULE_BPS: u64 = 100_000_000;
const JOB_CAP_BPS: u64 = 20_000_000;

fn run(sabotage: Option<Sabotage>) -> Summary {
    let scenario = scenarios::load("throttle-wan");
    let options = RunOptions { engine: Some(EngineChoice::Des), sabotage, ..RunOptions::default() };
    runner::run_with(&scenario, &options).expect("scenario runs")
}

/// Pacing lives in core, so the real driver over turmoil's TCP (with the
/// transport's link shaper metering the WAN) must hold the caps as well.
/// The first 40 minutes only (turmoil is slower): the first fulls.
#[test]
fn the_real_driver_holds_the_caps_too() {
    let text = scenarios::text("throttle-wan");
    let first_fulls = text.replace("duration = \"4h\"", "duration = \"40m\"");
    let first_fulls = first_fulls.split("[[expect]]").next().unwrap_or_default();
    let scenario = Scenario::from_str(first_fulls, "throttle-wan-40m.toml").expect("scenario parses");
    let s = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).expect("scenario runs");
    assert!(s.ok, "{:?}", s.violations);
    let [rule] = s.throttles.as_slice() else { panic!("one rule measured: {:?}", s.throttles) };
    assert!(rule.peak_bps <= RULE_BPS * 103 / 100 && rule.peak_bps >= RULE_BPS * 90 / 100, "{rule:?}");
    let fastest = s.jobs["replicate-web"].fastest_task.expect("the capped job's tasks are timed");
    assert!(fastest.bps <= JOB_CAP_BPS * 102 / 100 && fastest.bps >= JOB_CAP_BPS * 80 / 100, "{fastest:?}");
}

#[test]
fn the_rule_and_the_job_cap_hold_and_are_used_in_full() {
    let s = run(None);
    assert!(s.ok, "{:?}", s.violations);
    let [rule] = s.throttles.as_slice() else { panic!("one rule measured: {:?}", s.throttles) };
    assert_eq!(rule.limit_bps, RULE_BPS);
    // The busiest 5 minutes ran at the cap: not above it (beyond control
    // traffic and credit), and not far below (pacing does not starve).
    assert!(rule.peak_bps <= RULE_BPS * 103 / 100, "rule peak {} bit/s", rule.peak_bps);
    assert!(rule.peak_bps >= RULE_BPS * 90 / 100, "rule peak {} bit/s: the cap is not used", rule.peak_bps);

    let fastest = s.jobs["replicate-web"].fastest_task.expect("the capped job's tasks are timed");
    assert!(fastest.bps <= JOB_CAP_BPS * 102 / 100, "{fastest:?}");
    assert!(fastest.bps >= JOB_CAP_BPS * 80 / 100, "{fastest:?}");
    // The uncapped job is not timed.
    assert!(s.jobs["backup-all"].fastest_task.is_none());
}

#[test]
fn a_proxy_that_ignores_its_rates_fails_the_run() {
    let s = run(Some(Sabotage::IgnoreThrottling));
    assert!(!s.ok, "the checker missed traffic above the throttling rule");
    assert!(s.violations.iter().any(|v| v.starts_with("throttle between \"prod\" and \"dr\"")), "{:?}", s.violations);
    assert!(s.violations.iter().any(|v| v.starts_with("throttle of job \"replicate-web\"")), "{:?}", s.violations);
    assert!(s.throttles[0].peak_bps > 3 * RULE_BPS, "unpaced, the 1 Gbit link should carry far more: {:?}", s.throttles);
}
