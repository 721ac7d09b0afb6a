//! The checker is only worth something if it fails runs that are wrong.
//! Here the world lies (a CBT that omits changed blocks) and nothing in the
//! job verifies digests: the restore point is wrong, and the run must fail
//! naming it, with a reproduce line's ingredients.

use blockferry_sim::runner::{self, EngineChoice, RunOptions, Sabotage};
use blockferry_sim::scenario::Scenario;

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

/// A repository that commits a manifest before its blocks are durable: the
/// checker must notice at once (the manifest references blocks a crash
/// would lose), even before any crash happens.
#[test]
fn a_commit_without_sync_fails_the_run() {
    let honest = LYING_CBT.split("[[fault]]").next().unwrap();
    let scenario = Scenario::from_str(honest, "skip-sync.toml").unwrap();
    let options = RunOptions { sabotage: Some(Sabotage::SkipSyncBeforeManifest), ..RunOptions::default() };
    let summary = runner::run_with(&scenario, &options).unwrap();
    assert!(!summary.ok, "the checker missed manifests committed before their blocks were durable");
    assert!(summary.violations.iter().any(|v| v.contains("not durable")), "{:?}", summary.violations);
}
