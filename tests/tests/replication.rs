//! Replication (issue 4): the replication scenarios show what each exists
//! to show, beyond passing (every run's checker already holds invariants 3
//! and 4: each replica point equals its source snapshot, older points stay
//! intact, seeded and mapped first syncs move at most the differing
//! blocks, failover and failback leave exactly the content they promise).

use blockferry_sim::report::{FirstSync, JobSummary, ReplicationFigures, Summary};
use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_tests::scenarios;

fn run_file(name: &str) -> Summary {
    let scenario = scenarios::load(name);
    let summary = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(summary.ok, "{name} failed:\n{}", summary.violations.join("\n"));
    summary
}

fn figures(job: &JobSummary) -> &ReplicationFigures {
    job.replication.as_ref().expect("a replication job reports replication figures")
}

/// Issue 4's "done when": a seeded or mapped first sync moves only the
/// differing blocks, and its WAN bytes stay within 1.2 times their
/// compressed size plus metadata (digest lists and indexes, 64 bytes a
/// block at most) — far below a full copy.
fn assert_cheap_first_sync(sync: &FirstSync, kind: &str) {
    assert_eq!(sync.kind, kind);
    assert!(sync.blocks_transferred <= sync.blocks_differing, "{sync:?}");
    assert!(sync.blocks_sent > 0, "the source changed since the copy: something must be sent: {sync:?}");
    assert!(sync.blocks_differing * 2 < sync.blocks_full_copy, "the scenario should differ in well under half the blocks: {sync:?}");
    let wan = sync.wan_bytes.expect("the discrete-event engine measures WAN bytes");
    let metadata = 64 * sync.blocks_total;
    assert!(
        wan as f64 <= 1.2 * sync.bytes_sent as f64 + metadata as f64,
        "WAN {wan} bytes for {} payload bytes: {sync:?}",
        sync.bytes_sent
    );
    let full_copy = sync.bytes_sent / sync.blocks_sent.max(1) * sync.blocks_full_copy;
    assert!(wan * 2 < full_copy, "WAN {wan} bytes is not well below a full copy of about {full_copy}");
}

#[test]
fn basic_replication_keeps_four_points_and_sends_only_changes() {
    let s = run_file("replication-basic");
    let job = &s.jobs["replicate-db"];
    assert_eq!(job.sessions_ok, 12);
    assert_eq!(job.restore_points, 4, "at most restore_points replica points are kept");
    // Every block's payload crossed the WAN (source proxy in prod, target
    // proxy in dr); an incremental moves a small share of the disks.
    assert_eq!(job.wan_bytes, job.bytes_sent);
    assert!(job.last_session.blocks_sent > 0 && job.last_session.blocks_sent < 5 * 1024 / 4, "{:?}", job.last_session);
    assert_eq!(job.cbt_fallbacks, 0);
}

#[test]
fn without_cbt_the_replica_metadata_limits_what_is_sent() {
    let s = run_file("replication-no-cbt");
    let job = &s.jobs["replicate-db"];
    assert_eq!(job.restore_points, 4);
    assert!(job.cbt_fallbacks >= 2 * 7, "every disk of every incremental compares digests: {job:?}");
    // Each incremental reads everything but sends only the differing blocks.
    assert!(job.blocks_read > 3 * job.blocks_changed, "{job:?}");
    assert!(job.last_session.blocks_sent < 5 * 1024 / 4, "{:?}", job.last_session);
}

#[test]
fn seeding_restores_the_seed_and_sends_only_what_changed_since() {
    let s = run_file("replication-seeded");
    let job = &s.jobs["replicate-db"];
    let f = figures(job);
    assert_eq!(f.vms_skipped, 1, "the first session finds no seed backup yet");
    assert!(f.skip_reasons[0].contains("has no backup of db01"), "{:?}", f.skip_reasons);
    assert_eq!(f.first_syncs.len(), 1);
    assert_cheap_first_sync(&f.first_syncs[0], "seeded");
    assert_eq!(job.restore_points, 4);
    assert_eq!(job.sessions_failed, 0);
}

#[test]
fn mapping_adopts_the_copy_and_sends_only_what_differs() {
    let s = run_file("replication-mapped");
    let job = &s.jobs["replicate-db"];
    let f = figures(job);
    assert_eq!(f.first_syncs.len(), 1);
    assert_cheap_first_sync(&f.first_syncs[0], "mapped");
    assert_eq!(job.restore_points, 4);
}

#[test]
fn failover_to_an_older_point_starts_from_exactly_that_point() {
    let s = run_file("failover-failback");
    let f = figures(&s.jobs["replicate"]);
    let failover = &f.actions[0];
    assert_eq!((failover.action.as_str(), failover.point_back), ("failover", Some(1)));
    // The checker compared the replica at power-on with the point's
    // source snapshot, block for block.
    assert!(failover.ok && failover.verified, "{failover:?}");
    let kinds: Vec<&str> = f.actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "failover",
            "undo_failover",
            "failover",
            "permanent_failover",
            "failover",
            "failback",
            "undo_failback",
            "failback",
            "commit_failback"
        ]
    );
    assert!(f.actions.iter().all(|a| a.ok && a.verified), "{:?}", f.actions);
    // Failback sends back about what changed, not the disks.
    let back = f.actions[5].transfer.expect("a failback reports its transfer");
    assert!(back.blocks_sent > 0 && back.blocks_transferred < 3 * 1024 / 2, "{back:?}");
    assert!(f.skip_reasons.iter().any(|r| r.contains("permanently failed over")), "{:?}", f.skip_reasons);
}

#[test]
fn replication_runs_replay_exactly() {
    let a = run_file("failover-failback");
    let b = run_file("failover-failback");
    assert_eq!(a.trace_hash, b.trace_hash);
}

const LYING_CBT: &str = r#"
name = "replica-lying-cbt"
seed = 4
duration = "2h"
[[site]]
name = "prod"
[[site]]
name = "dr"
[[link]]
between = ["prod", "dr"]
latency = "30ms"
bandwidth = "1Gbit"
[[host]]
name = "esx"
site = "prod"
[[host]]
name = "esx-dr"
site = "dr"
[[vm]]
name = "vm1"
host = "esx"
disks = ["1GiB"]
workload = { writes_per_hour = 600, hot_fraction = 0.5 }
[[proxy]]
name = "px"
site = "prod"
[[proxy]]
name = "px-dr"
site = "dr"
[[repository]]
name = "repo-dr"
site = "dr"
capacity = "100GiB"
[[job]]
name = "r"
kind = "replication"
vms = ["vm1"]
source_proxy = "px"
target_proxy = "px-dr"
target_host = "esx-dr"
metadata_repository = "repo-dr"
schedule = "every 30m"
restore_points = 3
[[fault]]
at = "40m"
kind = "cbt_miss"
vm = "vm1"
blocks = 4
"#;

#[test]
fn a_replica_point_built_on_a_lying_cbt_fails_the_run() {
    let scenario = Scenario::from_str(LYING_CBT, "replica-lying-cbt.toml").unwrap();
    let summary = runner::run(&scenario, None, Some(EngineChoice::Des)).unwrap();
    assert!(!summary.ok, "the checker missed a wrong replica point");
    assert!(summary.violations.iter().any(|v| v.contains("replica point") && v.contains("differs from")), "{:?}", summary.violations);
    let honest = LYING_CBT.split("[[fault]]").next().unwrap();
    let summary = runner::run(&Scenario::from_str(honest, "honest.toml").unwrap(), None, Some(EngineChoice::Des)).unwrap();
    assert!(summary.ok, "{:?}", summary.violations);
}

/// The real async driver carries replication and failover messages too.
const TURMOIL_SMALL: &str = r#"
name = "replication-turmoil-small"
seed = 5
duration = "35m"
block_size = "1MiB"
[[site]]
name = "prod"
[[site]]
name = "dr"
[[link]]
between = ["prod", "dr"]
latency = "20ms"
bandwidth = "1Gbit"
[[host]]
name = "esx-prod"
site = "prod"
[[host]]
name = "esx-dr"
site = "dr"
[[vm]]
name = "web01"
host = "esx-prod"
disks = ["512MiB"]
zero_fraction = 0.3
workload = { writes_per_hour = 400, hot_fraction = 0.2 }
[[proxy]]
name = "px-prod"
site = "prod"
[[proxy]]
name = "px-dr"
site = "dr"
[[repository]]
name = "repo-dr"
site = "dr"
capacity = "100GiB"
[[job]]
name = "replicate-web"
kind = "replication"
vms = ["web01"]
source_proxy = "px-prod"
target_proxy = "px-dr"
target_host = "esx-dr"
metadata_repository = "repo-dr"
schedule = "every 10m"
restore_points = 3
[[action]]
at = "22m"
kind = "failover"
vm = "web01"
point = "previous"
[[action]]
at = "26m"
kind = "failback"
vm = "web01"
[[action]]
at = "30m"
kind = "commit_failback"
vm = "web01"
"#;

#[test]
fn replication_and_failover_pass_under_turmoil() {
    let scenario = Scenario::from_str(TURMOIL_SMALL, "replication-turmoil-small.toml").unwrap();
    let s = runner::run(&scenario, None, Some(EngineChoice::Turmoil)).unwrap();
    assert!(s.ok, "{:?}", s.violations);
    let job = &s.jobs["replicate-web"];
    let actions = &figures(job).actions;
    assert_eq!(actions.len(), 3);
    assert!(actions.iter().all(|a| a.ok && a.verified), "{actions:?}");
    // commit_failback made the replica's final state its newest point.
    assert_eq!(job.restore_points, 3);
}

/// A replication scenario with `extra` keys on its job and `vm_extra`
/// appended after its VMs.
fn config(job_extra: &str, vm_extra: &str) -> String {
    format!(
        r#"
name = "config"
duration = "1h"
[[site]]
name = "prod"
[[site]]
name = "dr"
[[link]]
between = ["prod", "dr"]
latency = "30ms"
bandwidth = "1Gbit"
[[host]]
name = "esx"
site = "prod"
[[host]]
name = "esx-dr"
site = "dr"
[[vm]]
name = "vm1"
host = "esx"
disks = ["1GiB"]
{vm_extra}
[[proxy]]
name = "px"
site = "prod"
[[proxy]]
name = "px-dr"
site = "dr"
[[repository]]
name = "repo"
site = "prod"
capacity = "100GiB"
[[repository]]
name = "repo-dr"
site = "dr"
capacity = "100GiB"
[[job]]
name = "b"
kind = "backup"
vms = ["vm1"]
repository = "repo"
schedule = "every 1h"
[[job]]
name = "r"
kind = "replication"
vms = ["vm1"]
target_host = "esx-dr"
metadata_repository = "repo-dr"
schedule = "every 30m"
{job_extra}
"#
    )
}

fn setup_error(text: &str) -> String {
    match Scenario::from_str(text, "config.toml") {
        Err(e) => e.to_string(),
        Ok(s) => runner::run(&s, None, Some(EngineChoice::Des)).err().unwrap_or_default(),
    }
}

#[test]
fn replication_configuration_errors_name_the_problem() {
    let proxies = "source_proxy = \"px\"\ntarget_proxy = \"px-dr\"";
    let e = setup_error(&config("source_proxy = \"px\"\ntarget_proxy = \"px\"", ""));
    assert!(e.contains("must be two proxies"), "{e}");
    let e = setup_error(&config(&format!("{proxies}\nseed_from = \"b\""), ""));
    assert!(e.contains("is not in the DR site"), "{e}");
    let copy = "[[vm]]\nname = \"copy\"\nhost = \"esx-dr\"\ndisks = [\"2GiB\"]\ncopy_of = \"vm1\"";
    let e = setup_error(&config(proxies, copy));
    assert!(e.contains("their disks differ"), "{e}");
    let e = setup_error(&config(proxies, "[[vm]]\nname = \"c\"\nhost = \"esx-dr\"\ndisks = [\"1GiB\"]\ncopy_of = \"nope\""));
    assert!(e.contains("unknown vm \"nope\""), "{e}");
    let e = setup_error(&config(proxies, "[[vm]]\nname = \"c\"\nhost = \"esx-dr\"\ndisks = [\"1GiB\"]\ncopy_age = \"1h\""));
    assert!(e.contains("copy_age needs copy_of"), "{e}");
    // And the well-formed one runs.
    assert_eq!(setup_error(&config(proxies, "")), "");
}
