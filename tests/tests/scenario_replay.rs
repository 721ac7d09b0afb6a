//! Replays every scenario file under the discrete-event engine: each must
//! pass (invariants and expectations), and its summary is snapshotted so any
//! change in behaviour — bytes moved, sessions, the trace itself — shows up
//! in review. Plus the scenario-specific outcomes each file exists to show.

use blockferry_sim::report::Summary;
use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::{RestoreCheck, Scenario};
use blockferry_tests::scenarios::{self, load};
use std::path::Path;

fn run(name: &str, seed: Option<u64>) -> Summary {
    let scenario = load(name);
    let summary = runner::run(&scenario, seed, Some(EngineChoice::Des)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(summary.ok, "{name} failed:\n{}", summary.violations.join("\n"));
    summary
}

/// Scenario files in `dir`, by file stem, sorted.
fn scenario_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

#[test]
fn every_scenario_file_passes_and_matches_its_snapshot() {
    let names = scenario_names(&scenarios::dir());
    assert!(names.len() >= 4, "scenario files found: {names:?}");
    for name in names {
        let summary = run(&name, None);
        insta::assert_json_snapshot!(name.clone(), summary);
    }
}

/// Failing swarm seeds, once fixed, are kept as scenario files: each must
/// pass from now on.
#[test]
fn every_regression_scenario_passes() {
    let dir = scenarios::dir().join("regressions");
    let names = scenario_names(&dir);
    assert!(!names.is_empty(), "no regression scenarios in {}", dir.display());
    for name in names {
        let path = dir.join(format!("{name}.toml"));
        let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let summary = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(summary.ok, "regression {name} failed again:\n{}", summary.violations.join("\n"));
    }
}

#[test]
fn same_seed_same_trace_hash_other_seed_other_trace() {
    let a = run("backup-basic", Some(42));
    let b = run("backup-basic", Some(42));
    let c = run("backup-basic", Some(43));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn basic_keeps_seven_points_and_incrementals_send_only_what_changed() {
    let s = run("backup-basic", None);
    let job = &s.jobs["backup-db"];
    assert_eq!(job.restore_points, 7);
    assert_eq!(job.sessions_ok, 12);
    let last = job.last_session;
    assert!(last.blocks_changed > 0 && last.blocks_sent <= last.blocks_changed, "{last:?}");
    // 10 GiB of disk in 1 MiB blocks: an hourly incremental moves a small
    // share of it, and its bytes are its changed blocks compressed.
    assert!(last.blocks_changed < 10 * 1024 / 4, "{last:?}");
    let per_block = last.bytes_sent / last.blocks_sent.max(1);
    assert!(per_block < 1024 * 1024 && per_block > 256 * 1024, "compressed block size {per_block}");
}

#[test]
fn end_of_run_restores_cover_every_point_or_the_newest_per_vm() {
    let all = run("backup-basic", None);
    assert_eq!(all.restores.requested, 7, "every retained point");
    assert_eq!(all.restores.verified, 7);
    let mut scenario = load("backup-basic");
    scenario.restore_check = RestoreCheck::Newest;
    let newest = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap_or_else(|e| panic!("{e}"));
    assert!(newest.ok, "{:?}", newest.violations);
    assert_eq!((newest.restores.requested, newest.restores.verified), (1, 1), "one VM, one job: its newest point");
    let job = |s: &Summary| (s.jobs["backup-db"].sessions_ok, s.jobs["backup-db"].restore_points, s.bytes.stored);
    assert_eq!(job(&newest), job(&all), "the run itself is the same");
}

#[test]
fn cbt_reset_falls_back_to_digests_and_sends_only_changes() {
    let s = run("backup-cbt-reset", None);
    let job = &s.jobs["backup-app"];
    assert_eq!(job.cbt_fallbacks, 1, "exactly the disk of the session after the reset falls back");
    // The fallback session read every block but, comparing digests with the
    // previous point, sent only the changed ones.
    assert!(job.blocks_read > job.blocks_changed + 1000, "{job:?}");
}

#[test]
fn many_vms_all_get_points_within_proxy_slots() {
    // The checker fails the run if a proxy ever exceeds its slots.
    let s = run("backup-many-vms", None);
    for name in ["backup-web", "backup-data"] {
        assert_eq!(s.jobs[name].restore_points, 3, "{name}: every VM keeps 3 points");
        assert_eq!(s.jobs[name].restore_points_total, 15, "{name}");
    }
}

#[test]
fn real_bytes_compression_levels_store_different_amounts() {
    let s = run("backup-real-bytes", None);
    let sent = |job: &str| s.jobs[job].bytes_sent;
    assert!(sent("backup-none") > 2 * sent("backup-optimal"), "none {} optimal {}", sent("backup-none"), sent("backup-optimal"));
    assert!(sent("backup-optimal") > sent("backup-extreme"), "optimal {} extreme {}", sent("backup-optimal"), sent("backup-extreme"));
}

/// Scenarios small enough for turmoil, replayed through the real driver.
const TURMOIL_SCENARIOS: &[&str] = &["backup-turmoil-small"];

#[test]
fn small_scenarios_pass_under_turmoil_and_replay_exactly() {
    for name in TURMOIL_SCENARIOS {
        let scenario = load(name);
        let a = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(a.ok, "{name} failed under turmoil:\n{}", a.violations.join("\n"));
        let des = run(name, None);
        // Timing differs between engines; what was backed up must not.
        assert_eq!(a.jobs[*name_job(name)].restore_points, des.jobs[*name_job(name)].restore_points);
        let b = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash, "{name}: turmoil run is not deterministic");
    }
}

fn name_job(name: &str) -> &'static &'static str {
    match name {
        "backup-turmoil-small" => &"backup-web",
        other => panic!("no job named for {other}"),
    }
}

/// Fault scenarios short enough for turmoil: the real driver meets the
/// same fault timeline as the discrete-event engine (partitions noticed by
/// keepalives, crashes and restarts of every role, slow and lossy links
/// shaped in the transport, storage and CBT faults on the shared world).
#[test]
fn fault_scenarios_pass_under_turmoil() {
    let name = "turmoil-faults-crash";
    let s = runner::run(&load(name), None, Some(EngineChoice::Turmoil)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(s.ok, "{name} failed under turmoil:\n{}", s.violations.join("\n"));
    let job = &s.jobs["backup-web"];
    assert!(job.task_retries > 0, "no task was hit by a fault: {job:?}");
    let liveness = &s.liveness;
    let after = liveness.recovered_after_secs["backup-web"].unwrap_or_else(|| panic!("{name}: never recovered"));
    assert!(after <= liveness.bound_secs, "{name}: recovered after {after}s, bound {}s", liveness.bound_secs);
}

/// Same scenario and seed, same trace, faults and all: the loss draws, the
/// shaper and the fault steps are deterministic under turmoil too.
#[test]
fn link_faults_under_turmoil_replay_exactly() {
    let name = "turmoil-faults-link";
    let scenario = load(name);
    let a = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(a.ok, "{name} failed under turmoil:\n{}", a.violations.join("\n"));
    let job = &a.jobs["backup-web"];
    assert!(job.task_retries > 0, "the lossy link broke no connection: {job:?}");
    assert!(job.damaged_blocks_found > 0 && job.cbt_fallbacks > 0, "{job:?}");
    // The shaper counts what crossed the WAN, as the discrete-event network does.
    assert!(a.bytes.sent_wan > 0, "{:?}", a.bytes);
    let b = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(a.trace_hash, b.trace_hash, "{name}: turmoil run with faults is not deterministic");
}

#[test]
fn a_verification_pass_reports_what_a_lying_cbt_missed() {
    let s = run("faults-cbt-miss", None);
    let job = &s.jobs["backup"];
    assert!(job.cbt_missed_blocks > 0, "the verification pass found nothing: {job:?}");
    assert!(job.points_inconsistent > 0, "no point was reported inconsistent: {job:?}");
}

#[test]
fn health_check_finds_damage_and_the_next_pass_repairs_it() {
    let s = run("faults-corrupt-health", None);
    let job = &s.jobs["backup"];
    assert!(job.health_checks >= 2, "{job:?}");
    assert!(job.damaged_blocks_found > 0, "the health check missed the damaged blocks: {job:?}");
}

#[test]
fn fault_scenarios_recover_within_the_liveness_bound() {
    for name in ["faults-partition", "faults-crash", "faults-disk-full", "faults-slow-link"] {
        let s = run(name, None);
        let liveness = &s.liveness;
        for (job, after) in &liveness.recovered_after_secs {
            let after = after.unwrap_or_else(|| panic!("{name}: job {job} never recovered"));
            assert!(after <= liveness.bound_secs, "{name}: job {job} recovered after {after}s, bound {}s", liveness.bound_secs);
        }
    }
}
