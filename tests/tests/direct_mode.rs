//! `transport = "direct"`: a direct proxy reads its site's datastores
//! itself, so the blocks it reads never cross the network. Each test runs
//! one scenario twice, the proxy in network mode and in direct mode: the
//! backups must come out the same (restore points, stored bytes, every
//! point restored and verified by the checker) and direct mode's LAN bytes
//! must be lower by at least the bytes read from the disks — which cannot
//! hold if the key is ignored, since network mode sends every block read
//! from the host to the proxy.

use blockferry_sim::report::Summary;
use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_tests::scenarios;

const NAME: &str = "direct-mode";
const JOB: &str = "backup-db";
const DIRECT: &str = "transport = \"direct\"";

/// `text` with its proxy in network mode.
fn network_mode(text: &str) -> String {
    assert!(text.contains(DIRECT), "the scenario has no direct proxy");
    text.replace(DIRECT, "transport = \"network\"")
}

fn run(text: &str, engine: EngineChoice) -> Summary {
    let scenario = Scenario::from_str(text, NAME).unwrap_or_else(|e| panic!("{e}"));
    let summary = runner::run(&scenario, None, Some(engine)).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.ok, "{NAME} ({}) failed:\n{}", engine.name(), summary.violations.join("\n"));
    summary
}

/// The same backups, and the reads kept off the network.
fn assert_same_backups_without_read_traffic(direct: &Summary, network: &Summary) {
    for s in [direct, network] {
        assert!(s.restores.requested > 0, "nothing restored at the end: {:?}", s.restores);
        assert_eq!(s.restores.verified, s.restores.requested, "every point restores to its snapshot: {:?}", s.restores);
    }
    let points = |s: &Summary| (s.jobs[JOB].restore_points, s.jobs[JOB].sessions_ok, s.jobs[JOB].sessions_failed);
    assert_eq!(points(direct), points(network));
    assert_eq!(direct.bytes.stored, network.bytes.stored, "the same blocks reach the repository");
    let read = direct.bytes.read;
    assert!(read > 1 << 30, "the scenario reads little: {read}");
    assert!(
        direct.bytes.sent_lan + read <= network.bytes.sent_lan,
        "direct LAN {} + read {read} > network LAN {}",
        direct.bytes.sent_lan,
        network.bytes.sent_lan
    );
}

#[test]
fn direct_mode_keeps_the_blocks_read_off_the_lan() {
    let text = scenarios::text(NAME);
    let direct = run(&text, EngineChoice::Des);
    let network = run(&network_mode(&text), EngineChoice::Des);
    assert_same_backups_without_read_traffic(&direct, &network);
    // Both runs read the same blocks (the host crash costs neither a read).
    assert_eq!(direct.bytes.read, network.bytes.read);
}

/// Under turmoil the real driver carries the proxy's hypervisor requests
/// to the world's datastore, and keepalives notice the host crash. Shorter
/// (two sessions), since turmoil ticks through every idle second.
#[test]
fn direct_mode_under_turmoil_keeps_the_blocks_read_off_the_lan() {
    let text = scenarios::text(NAME);
    let short = text.replacen("duration = \"6h\"", "duration = \"2h\"", 1).replacen("min_restore_points = 4", "min_restore_points = 2", 1);
    assert_ne!(short, text, "the scenario's duration or expectation changed: update this test");
    let direct = run(&short, EngineChoice::Turmoil);
    let network = run(&network_mode(&short), EngineChoice::Turmoil);
    assert_same_backups_without_read_traffic(&direct, &network);
    let again = run(&short, EngineChoice::Turmoil);
    assert_eq!(direct.trace_hash, again.trace_hash, "a direct-mode run under turmoil replays exactly");
}

/// A direct proxy reaches only its own site's datastores: a VM on another
/// site's host is read through that host, over the WAN, as in network mode.
#[test]
fn a_direct_proxy_reads_other_sites_hosts_through_the_network() {
    let branch = r#"
[[site]]
name = "branch"

[[link]]
between = ["prod", "branch"]
latency = "10ms"
bandwidth = "1Gbit"

[[host]]
name = "esx-branch"
site = "branch"

[[vm]]
name = "app01"
host = "esx-branch"
disks = ["1GiB"]
workload = { writes_per_hour = 500, hot_fraction = 0.2 }
"#;
    let text = scenarios::text(NAME).replacen("[[host]]", &format!("{branch}\n[[host]]"), 1).replacen(
        "vms = [\"db01\"]",
        "vms = [\"db01\", \"app01\"]",
        1,
    );
    let direct = run(&text, EngineChoice::Des);
    let network = run(&network_mode(&text), EngineChoice::Des);
    assert_eq!(direct.jobs[JOB].restore_points, network.jobs[JOB].restore_points);
    assert_eq!(direct.restores.verified, direct.restores.requested);
    // app01's blocks cross the WAN in both modes, db01's LAN hop is gone.
    assert!(direct.bytes.sent_wan > 1 << 29, "app01 was not read over the WAN: {:?}", direct.bytes);
    let wan_gap = direct.bytes.sent_wan.abs_diff(network.bytes.sent_wan);
    assert!(wan_gap * 100 < network.bytes.sent_wan, "WAN: direct {:?}, network {:?}", direct.bytes, network.bytes);
    let saved = network.bytes.sent_lan.saturating_sub(direct.bytes.sent_lan);
    assert!(saved > 1 << 30 && saved < direct.bytes.read, "saved {saved} of {} read", direct.bytes.read);
}
