//! The checker is only worth something if it fails runs that are wrong.
//! Here the world lies (a CBT that omits changed blocks) and nothing in the
//! job verifies digests: the restore point is wrong, and the run must fail
//! naming it, with a reproduce line's ingredients.

use blockferry_sim::runner::{self, EngineChoice, RunOptions, Sabotage};
use blockferry_sim::scenario::Scenario;
use blockferry_tests::scenarios;

const LYING_CBT: &str = r#"
name = "lying-cbt"
seed = 9
duration = "3h"
[[site]]
name = "prod"
[[host]]
name = "esx"
site = "prod"
[[vm]]
name = "vm1"
host = "esx"
disks = ["1GiB"]
workload = { writes_per_hour = 300, hot_fraction = 0.5 }
[[proxy]]
name = "px"
site = "prod"
[[repository]]
name = "repo"
site = "prod"
capacity = "100GiB"
[[job]]
name = "b"
kind = "backup"
vms = ["vm1"]
repository = "repo"
schedule = "every 1h"
[[fault]]
at = "1h30m"
kind = "cbt_miss"
vm = "vm1"
blocks = 5
"#;

#[test]
fn a_point_built_on_a_lying_cbt_fails_the_run() {
    let scenario = Scenario::from_str(LYING_CBT, "lying-cbt.toml").unwrap();
    let summary = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap();
    assert!(!summary.ok, "the checker missed a wrong restore point");
    assert!(summary.violations.iter().any(|v| v.contains("differs from")), "{:?}", summary.violations);
}

#[test]
fn the_same_world_without_the_lie_passes() {
    let honest = LYING_CBT.split("[[fault]]").next().unwrap();
    let scenario = Scenario::from_str(honest, "honest.toml").unwrap();
    let summary = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap();
    assert!(summary.ok, "{:?}", summary.violations);
}

/// Runs a scenario file of `scenarios/` under the discrete-event engine,
/// with `sabotage` planted (or none).
fn run_file(name: &str, sabotage: Option<Sabotage>) -> blockferry_sim::report::Summary {
    run_text(&scenarios::load(name), sabotage)
}

fn run_text(scenario: &Scenario, sabotage: Option<Sabotage>) -> blockferry_sim::report::Summary {
    let options = RunOptions { sabotage, engine: Some(EngineChoice::Des), ..RunOptions::default() };
    runner::run_with(scenario, &options).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that the sabotaged run failed with a violation containing
/// `text`, and that the honest one has no such violation and passes.
fn caught(sabotaged: &blockferry_sim::report::Summary, honest: &blockferry_sim::report::Summary, text: &str) {
    assert!(!sabotaged.ok, "the checker missed the planted bug ({text})");
    assert!(sabotaged.violations.iter().any(|v| v.contains(text)), "no violation with {text:?}: {:?}", sabotaged.violations);
    assert!(honest.ok, "the honest run fails: {:?}", honest.violations);
}

/// Both ways of making a manifest durable before its blocks (committing
/// without a sync, or syncing after the manifest) are caught by the store's
/// audit at the instant the manifest alone was durable, before any crash
/// loses the blocks ("... durable while disk D block B ... is not durable").
/// Syncing after the manifest has everything durable by the time the
/// repository acknowledges, so a check at commit time would pass it.
#[test]
fn a_manifest_durable_before_its_blocks_fails_the_run() {
    let honest = LYING_CBT.split("[[fault]]").next().unwrap();
    let scenario = Scenario::from_str(honest, "sync-order.toml").unwrap();
    let honest_run = run_text(&scenario, None);
    for sabotage in [Sabotage::SyncAfterManifest, Sabotage::SkipSyncBeforeManifest] {
        caught(&run_text(&scenario, Some(sabotage)), &honest_run, "durable while disk");
    }
}

/// Blocks damaged at 2h10m; health checks at 2h30m and 5h fall between
/// hourly sessions, so each finding is repaired by the next session.
const DAMAGE: &str = r#"
name = "damage"
seed = 31
duration = "6h"
block_size = "1MiB"
[[site]]
name = "prod"
[[host]]
name = "esx"
site = "prod"
[[vm]]
name = "db01"
host = "esx"
disks = ["2GiB", "1GiB"]
zero_fraction = 0.3
compressibility = 0.5
workload = { writes_per_hour = 1500, hot_fraction = 0.1 }
[[proxy]]
name = "px"
site = "prod"
task_slots = 2
[[repository]]
name = "repo"
site = "prod"
capacity = "1TiB"
[[job]]
name = "backup"
kind = "backup"
vms = ["db01"]
repository = "repo"
schedule = "every 1h"
retention = 4
health_check = "every 2h30m"
[[fault]]
at = "2h10m"
kind = "corrupt_block"
node = "repo"
blocks = 20
"#;

/// The damage scenario with `sabotage` is caught for `why`; unsabotaged it passes.
fn damage_caught(sabotage: Sabotage, why: &str) {
    let scenario = Scenario::from_str(DAMAGE, "damage.toml").unwrap();
    caught(&run_text(&scenario, Some(sabotage)), &run_text(&scenario, None), why);
}

#[test]
fn a_health_check_that_trusts_unreadable_blocks_fails_the_run() {
    damage_caught(Sabotage::HealthTrustsUnreadable, "missed damage");
}

#[test]
fn a_health_check_that_never_repairs_fails_the_run() {
    damage_caught(Sabotage::HealthNeverRepairs, "did not repair");
}

#[test]
fn retention_that_drops_the_newest_point_fails_the_run() {
    let sabotaged = run_file("backup-basic", Some(Sabotage::RetentionDropsNewest));
    caught(&sabotaged, &run_file("backup-basic", None), "it must remove the oldest");
}

#[test]
fn a_replica_sync_without_a_replica_point_fails_the_run() {
    let sabotaged = run_file("replication-basic", Some(Sabotage::SyncWithoutReplicaPoint));
    caught(&sabotaged, &run_file("replication-basic", None), "left no replica point");
}

/// Issue 13 §4: a manager whose ids start over when it restarts hands out
/// ids that already name sessions, tasks or points, and the checker says
/// so; the honest manager of the same run (a daily job, retention, a
/// manager crash) passes, retention included.
#[test]
fn ids_reused_after_a_manager_restart_fail_the_run() {
    let sabotaged = run_file("daily-manager-restart", Some(Sabotage::IdsStartOver));
    caught(&sabotaged, &run_file("daily-manager-restart", None), "an id was reused");
}

#[test]
fn a_backup_window_never_enforced_fails_the_run() {
    let sabotaged = run_file("faults-backup-window", Some(Sabotage::IgnoreBackupWindow));
    caught(&sabotaged, &run_file("faults-backup-window", None), "window broken");
}
