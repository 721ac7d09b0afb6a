//! Scenario parsing and validation tests.

use super::*;

/// The example of `shared/SCENARIOS.md`, verbatim: the contract's own
/// example must always parse.
const CONTRACT_EXAMPLE: &str = r#"name = "replicate-over-flaky-wan"
seed = 7                 # default seed; `--seed` overrides
duration = "12h"         # simulated time the run may take
start = "2026-01-01T00:00:00Z"  # optional: the wall-clock instant the run starts at (UTC)
block_size = "256KiB"    # default storage-optimisation block size for jobs
engine = "des"           # "des" (default): discrete-event; "turmoil": real driver over turmoil TCP
payload = "synthetic"    # "synthetic" (default): blocks travel as descriptors — digest
                         # plus modelled raw/compressed sizes — so TiB-scale runs are cheap;
                         # "real": block bytes are materialised and run through the real
                         # encode/decode pipeline (use small disks)

[[site]]
name = "prod"
[[site]]
name = "dr"

[manager]                # optional: where the manager (backup server) runs
site = "prod"            # default: the first site

[[link]]                 # WAN between two sites (LAN inside a site is fast)
between = ["prod", "dr"]
latency = "40ms"
bandwidth = "100Mbit"
loss = 0.0               # packet loss rate: bounds each TCP connection's throughput
                         # (Mathis: MSS * 1.22 / (RTT * sqrt(loss)), MSS 1460 B, RTT = 2 x latency)
breaks = 0.0             # probability that a connection on this link breaks, per message

[[host]]                 # a virtual hypervisor host
name = "esx-prod"
site = "prod"
cbt = true               # changed block tracking available

[[host]]
name = "esx-dr"
site = "dr"

[[vm]]
name = "db01"
host = "esx-prod"
disks = ["8GiB", "2GiB"]
zero_fraction = 0.3      # share of blocks that are all zero
compressibility = 0.5    # 0 = random bytes, 1 = highly compressible
swap_fraction = 0.02     # share of blocks the guest reports as swap
# guest writes: blocks per hour, and the share of writes hitting a hot set
workload = { writes_per_hour = 2000, hot_fraction = 0.1 }

[[proxy]]
name = "px-prod"
site = "prod"
task_slots = 2           # concurrent disk tasks
transport = "network"    # "direct" (reads the datastore locally) or "network" (through the host)
streams = 5              # TCP connections a task spreads its batches over, per peer

[[proxy]]
name = "px-dr"
site = "dr"

[[repository]]
name = "repo-dr"
site = "dr"
capacity = "1TiB"

[[job]]
name = "backup-db"
kind = "backup"
vms = ["db01"]
proxy = "px-prod"          # optional: omitted → the scheduler picks one
repository = "repo-dr"
schedule = "every 1h"       # or "daily at 22:00" (UTC)
retention = 7              # restore points kept (forever forward incremental)
compression = "optimal"    # none | dedupe-friendly | optimal | high | extreme
block_size = "1MiB"        # optional per-job override
verify_every = 4           # optional: every Nth session re-reads all blocks and compares
                           # digests (catches a CBT that missed changes); off when absent
health_check = "every 24h" # optional: re-hash the newest point's blocks at rest

[[job]]
name = "replicate-db"
kind = "replication"
vms = ["db01"]
source_proxy = "px-prod"
target_proxy = "px-dr"
target_host = "esx-dr"
metadata_repository = "repo-dr"
schedule = "every 30m"
restore_points = 4         # replica restore points kept on the target host
seed_from = "backup-db"    # optional: replica seeding from this job's backups in a DR repository
# map = { db01 = "db01-copy" }   # optional: replica mapping to an existing VM on target_host

[[fault]]                  # the fault schedule
at = "2h"
kind = "partition"         # partition | crash | cbt_reset | cbt_miss | disk_full | corrupt_block | slow_link
between = ["prod", "dr"]   # partition, slow_link
for = "20m"

[[fault]]
at = "3h"
kind = "crash"
node = "repo-dr"           # any host, proxy, repository or "manager"
for = "5m"                 # restarts after this long

[[fault]]
at = "5h"
kind = "cbt_reset"         # host loses CBT for the VM: next pass must fall back to digests
vm = "db01"

[[action]]                 # operator actions on replicas, at a time
at = "8h"
kind = "failover"          # failover | undo_failover | failback | commit_failback | undo_failback | permanent_failover
vm = "db01"
point = "latest"           # or "previous", or an index counted back from the newest (0 = newest)

[[expect]]                 # checked at the end, beside the always-on invariants
job = "backup-db"
min_restore_points = 7
max_failed_sessions = 2

[[expect]]
job = "replicate-db"
max_wan_bytes = "3GiB"     # bound on bytes the job sent across WAN links
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_str(text, "scenarios/x.toml")
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A small valid scenario that tests break one key at a time.
const BASE: &str = r#"name = "base"
duration = "2h"

[[site]]
name = "prod"
[[site]]
name = "dr"

[[link]]
between = ["prod", "dr"]
latency = "40ms"
bandwidth = "100Mbit"

[[host]]
name = "esx-prod"
site = "prod"
[[host]]
name = "esx-dr"
site = "dr"

[[vm]]
name = "db01"
host = "esx-prod"
disks = ["1GiB"]
[[vm]]
name = "db01-copy"
host = "esx-dr"
disks = ["1GiB"]

[[proxy]]
name = "px-prod"
site = "prod"
[[proxy]]
name = "px-dr"
site = "dr"

[[repository]]
name = "repo-dr"
site = "dr"
capacity = "1TiB"

[[job]]
name = "backup-db"
kind = "backup"
vms = ["db01"]
repository = "repo-dr"
schedule = "every 1h"

[[job]]
name = "replicate-db"
kind = "replication"
vms = ["db01"]
source_proxy = "px-prod"
target_proxy = "px-dr"
target_host = "esx-dr"
metadata_repository = "repo-dr"
schedule = "every 30m"
"#;

#[test]
fn the_contract_example_parses_as_is() {
    let s = parse(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(s.name, "replicate-over-flaky-wan");
    assert_eq!(s.seed, 7);
    assert_eq!(s.duration, Duration::from_secs(12 * 3600));
    assert_eq!(s.block_size, BlockSize::WAN);
    assert_eq!(s.engine, Engine::Des);
    assert_eq!(s.payload, PayloadMode::Synthetic);
    assert_eq!(s.sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["prod", "dr"]);
    assert_eq!(s.manager.site, "prod");
    assert_eq!(
        s.links,
        [Link {
            between: ["prod".into(), "dr".into()],
            latency: Duration::from_millis(40),
            bandwidth_bps: 100_000_000,
            loss: 0.0,
            breaks: 0.0
        }]
    );
    assert_eq!(s.hosts[0], Host { name: "esx-prod".into(), site: "prod".into(), cbt: true });
    assert!(s.hosts[1].cbt, "cbt defaults to true");
    let vm = &s.vms[0];
    assert_eq!(vm.disks, [8 << 30, 2 << 30]);
    assert_eq!((vm.zero_fraction, vm.compressibility, vm.swap_fraction), (0.3, 0.5, 0.02));
    assert_eq!(vm.workload, Some(Workload { writes_per_hour: 2000, hot_fraction: 0.1 }));
    assert_eq!(
        s.proxies[0],
        Proxy { name: "px-prod".into(), site: "prod".into(), task_slots: 2, transport: Transport::Network, streams: 5 }
    );
    assert_eq!((s.proxies[1].task_slots, s.proxies[1].streams), (2, 5), "defaults");
    assert_eq!(s.repositories[0].capacity, 1 << 40);

    let backup = s.job("backup-db").unwrap();
    assert_eq!(backup.schedule, blockferry_core::config::Schedule::Every(Duration::from_secs(3600)));
    assert_eq!(backup.compression, Compression::Optimal);
    assert_eq!(backup.block_size, BlockSize::LOCAL);
    assert_eq!(backup.verify_every, Some(4));
    assert_eq!(
        backup.kind,
        JobKind::Backup(BackupJob {
            proxy: Some("px-prod".into()),
            repository: "repo-dr".into(),
            retention: 7,
            health_check: Some(Duration::from_secs(24 * 3600)),
            window: None,
        })
    );
    let replicate = s.job("replicate-db").unwrap();
    assert_eq!(replicate.block_size, BlockSize::WAN, "inherits the scenario block size");
    let JobKind::Replication(r) = &replicate.kind else { panic!("replication job") };
    assert_eq!(r.restore_points, 4);
    assert_eq!(r.seed_from.as_deref(), Some("backup-db"));
    assert!(r.map.is_empty());

    assert_eq!(s.start, Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").unwrap());
    assert_eq!(s.faults.len(), 3);
    assert_eq!(s.faults[0].at, DEFAULT_START + Duration::from_secs(7200));
    assert_eq!(s.faults[0].kind, FaultKind::Partition { between: ["prod".into(), "dr".into()], duration: Duration::from_secs(1200) });
    assert_eq!(s.faults[1].kind, FaultKind::Crash { node: "repo-dr".into(), duration: Duration::from_secs(300) });
    assert_eq!(s.faults[2].kind, FaultKind::CbtReset { vm: "db01".into() });
    assert_eq!(
        s.actions,
        [Action {
            at: DEFAULT_START + Duration::from_secs(8 * 3600),
            kind: ActionKind::Failover,
            vm: "db01".into(),
            point: PointRef::Latest
        }]
    );
    assert_eq!(s.expects[0].min_restore_points, Some(7));
    assert_eq!(s.expects[0].max_failed_sessions, Some(2));
    assert_eq!(s.expects[1].max_wan_bytes, Some(3 << 30));
    assert_eq!(s.block_size_range(), (BlockSize::WAN, BlockSize::LOCAL));
}

#[test]
fn base_defaults() {
    let s = parse(BASE).unwrap();
    assert_eq!(s.seed, 0);
    assert_eq!(s.block_size, BlockSize::LOCAL);
    assert_eq!(s.payload, PayloadMode::Synthetic);
    assert_eq!(s.engine, Engine::Des);
    assert_eq!(s.restore_check, RestoreCheck::All);
    let vm = s.vm("db01").unwrap();
    assert_eq!((vm.zero_fraction, vm.compressibility, vm.swap_fraction, vm.workload), (0.0, 0.5, 0.0, None));
    let JobKind::Backup(b) = &s.job("backup-db").unwrap().kind else { panic!() };
    assert_eq!((b.retention, b.proxy.as_deref(), b.health_check), (7, None, None));
    let JobKind::Replication(r) = &s.job("replicate-db").unwrap().kind else { panic!() };
    assert_eq!(r.restore_points, 7);
}

#[test]
fn all_fault_and_action_kinds() {
    let text = format!(
        "{BASE}{}",
        r#"
[[fault]]
at = "10m"
kind = "cbt_miss"
vm = "db01"
blocks = 3
[[fault]]
at = "11m"
kind = "disk_full"
node = "repo-dr"
for = "5m"
[[fault]]
at = "12m"
kind = "corrupt_block"
node = "repo-dr"
blocks = 2
[[fault]]
at = "13m"
kind = "slow_link"
between = ["dr", "prod"]
bandwidth = "1.5Mbit"
for = "1h"
[[fault]]
at = "14m"
kind = "crash"
node = "manager"
for = "1m"
[[action]]
at = "1h"
kind = "undo_failback"
vm = "db01"
point = 2
[[action]]
at = "1h30m"
kind = "permanent_failover"
vm = "db01"
point = "previous"
[[expect]]
job = "replicate-db"
min_sessions_ok = 3
"#
    );
    let s = parse(&text).unwrap();
    let kinds: Vec<&str> = s.faults.iter().map(|f| f.kind.name()).collect();
    assert_eq!(kinds, ["cbt_miss", "disk_full", "corrupt_block", "slow_link", "crash"]);
    assert_eq!(
        s.faults[3].kind,
        FaultKind::SlowLink { between: ["dr".into(), "prod".into()], bandwidth_bps: 1_500_000, duration: Duration::from_secs(3600) }
    );
    assert_eq!(s.actions[0].point, PointRef::Back(2));
    assert_eq!(s.actions[1].point, PointRef::Previous);
    assert_eq!(s.actions[1].at, DEFAULT_START + Duration::from_secs(5400));
    assert_eq!(s.expects[0].min_sessions_ok, Some(3));
}

#[test]
fn unknown_key_names_file_line_and_table() {
    let text = BASE.replace("disks = [\"1GiB\"]\n[[vm]]", "disks = [\"1GiB\"]\nfoo = 1\n[[vm]]");
    let line = text.lines().position(|l| l == "foo = 1").unwrap() + 1;
    assert_eq!(error(&text), format!("scenarios/x.toml:{line}: unknown key \"foo\" in [[vm]]"));

    let text = format!("colour = \"red\"\n{BASE}");
    assert_eq!(error(&text), "scenarios/x.toml:1: unknown key \"colour\" in the top level");

    let text = BASE.replace("disks = [\"1GiB\"]\n[[vm]]", "disks = [\"1GiB\"]\nworkload = { writes_per_hour = 5, cold = 1 }\n[[vm]]");
    let line = text.lines().position(|l| l.starts_with("workload")).unwrap() + 1;
    assert_eq!(error(&text), format!("scenarios/x.toml:{line}: unknown key \"cold\" in [[vm]] workload"));
}

#[test]
fn missing_keys_and_bad_enums_have_lines() {
    let text = BASE.replace("host = \"esx-prod\"\n", "");
    let e = error(&text);
    assert!(e.contains("missing key \"host\" in [[vm]]"), "{e}");
    assert!(e.starts_with("scenarios/x.toml:"), "{e}");

    let text = format!("engine = \"warp\"\n{BASE}");
    let e = error(&text);
    assert_eq!(e, "scenarios/x.toml:1: invalid value \"warp\" for engine (expected `des` or `turmoil`)");

    let text = BASE.replace("name = \"px-prod\"\n", "name = \"px-prod\"\ntransport = \"carrier-pigeon\"\n");
    assert!(error(&text).contains("carrier-pigeon"));

    assert_eq!(parse(&format!("restore_check = \"newest\"\n{BASE}")).unwrap().restore_check, RestoreCheck::Newest);
    let e = error(&format!("restore_check = \"some\"\n{BASE}"));
    assert_eq!(e, "scenarios/x.toml:1: invalid value \"some\" for restore_check (expected `all` or `newest`)");
}

#[test]
fn bad_values_are_reported_on_their_line() {
    let cases = [
        ("disks = [\"1GiB\"]\n[[vm]]", "disks = [\"1GB\"]\n[[vm]]", "[[vm]] disks: invalid size \"1GB\""),
        ("capacity = \"1TiB\"", "capacity = \"0.3KiB\"", "not a whole number of bytes"),
        ("bandwidth = \"100Mbit\"", "bandwidth = \"100MB/s\"", "invalid bandwidth"),
        ("latency = \"40ms\"", "latency = \"forty\"", "invalid duration"),
        ("duration = \"2h\"", "duration = \"2\"", "invalid duration"),
        ("schedule = \"every 1h\"", "schedule = \"hourly\"", "invalid schedule"),
        ("schedule = \"every 1h\"", "schedule = \"every 0s\"", "more than zero"),
        ("schedule = \"every 1h\"", "schedule = \"daily at 24:00\"", "between 00:00 and 23:59"),
        ("duration = \"2h\"", "duration = \"2h\"\nstart = \"2026-01-01\"", "start: \"2026-01-01\" is not an RFC 3339 instant"),
        ("schedule = \"every 1h\"", "schedule = \"every 1h\"\nblock_size = \"3MiB\"", "invalid block size"),
        ("schedule = \"every 1h\"", "schedule = \"every 1h\"\nblock_size = \"2KiB\"", "invalid block size"),
        ("schedule = \"every 1h\"", "schedule = \"every 1h\"\ncompression = \"max\"", "unknown compression"),
        ("schedule = \"every 1h\"", "schedule = \"every 1h\"\nretention = -1", "[[job]] retention: invalid value"),
    ];
    for (from, to, expected) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let e = error(&text);
        assert!(e.contains(expected), "{to}: {e}");
        let line: usize = e.split(':').nth(1).and_then(|l| l.parse().ok()).unwrap_or_else(|| panic!("no line in {e}"));
        let bad = to.lines().find(|l| !BASE.lines().any(|b| b == *l)).unwrap();
        assert_eq!(text.lines().nth(line - 1), Some(bad), "{e}");
    }
}

#[test]
fn bad_references_name_the_item() {
    let cases = [
        (
            "repository = \"repo-dr\"\nschedule",
            "repository = \"repo-x\"\nschedule",
            "job \"backup-db\" names unknown repository \"repo-x\"",
        ),
        ("host = \"esx-prod\"", "host = \"esx-nowhere\"", "vm \"db01\" names unknown host \"esx-nowhere\""),
        ("name = \"esx-dr\"\nsite = \"dr\"", "name = \"esx-dr\"\nsite = \"mars\"", "host \"esx-dr\" names unknown site \"mars\""),
        ("name = \"px-dr\"\nsite = \"dr\"", "name = \"px-dr\"\nsite = \"mars\"", "proxy \"px-dr\" names unknown site \"mars\""),
        ("site = \"dr\"\ncapacity", "site = \"moon\"\ncapacity", "repository \"repo-dr\" names unknown site \"moon\""),
        ("between = [\"prod\", \"dr\"]", "between = [\"prod\", \"mars\"]", "[[link]] names unknown site \"mars\""),
        ("between = [\"prod\", \"dr\"]", "between = [\"prod\", \"prod\"]", "names site \"prod\" twice"),
        ("between = [\"prod\", \"dr\"]", "between = [\"prod\"]", "exactly two sites"),
        ("vms = [\"db01\"]\nrepository", "vms = [\"db02\"]\nrepository", "job \"backup-db\" names unknown vm \"db02\""),
        ("vms = [\"db01\"]\nrepository", "vms = [\"db01\", \"db01\"]\nrepository", "lists vm \"db01\" twice"),
        ("vms = [\"db01\"]\nrepository", "vms = []\nrepository", "lists no vms"),
        ("source_proxy = \"px-prod\"", "source_proxy = \"px-nope\"", "job \"replicate-db\" names unknown proxy \"px-nope\""),
        ("target_host = \"esx-dr\"", "target_host = \"esx-x\"", "job \"replicate-db\" names unknown host \"esx-x\""),
        ("metadata_repository = \"repo-dr\"", "metadata_repository = \"r\"", "names unknown repository \"r\""),
        ("metadata_repository = \"repo-dr\"\n", "", "job \"replicate-db\" (replication) needs key \"metadata_repository\""),
        ("repository = \"repo-dr\"\nschedule", "schedule", "job \"backup-db\" (backup) needs key \"repository\""),
        (
            "schedule = \"every 30m\"",
            "schedule = \"every 30m\"\nrepository = \"repo-dr\"",
            "key \"repository\" does not apply to a replication job",
        ),
        ("schedule = \"every 30m\"", "schedule = \"every 30m\"\nseed_from = \"nope\"", "names unknown job \"nope\""),
        ("schedule = \"every 30m\"", "schedule = \"every 30m\"\nseed_from = \"replicate-db\"", "not a backup job"),
        ("schedule = \"every 30m\"", "schedule = \"every 30m\"\nmap = { db01 = \"ghost\" }", "names unknown vm \"ghost\""),
        (
            "schedule = \"every 30m\"",
            "schedule = \"every 30m\"\nmap = { db02 = \"db01-copy\" }",
            "maps vm \"db02\", which the job does not replicate",
        ),
        ("name = \"px-dr\"", "name = \"px-prod\"", "duplicate proxy name \"px-prod\""),
        ("name = \"px-dr\"", "name = \"esx-dr\"", "host \"esx-dr\" and proxy \"esx-dr\" share a name"),
        ("name = \"px-dr\"", "name = \"manager\"", "reserved"),
        ("name = \"db01-copy\"", "name = \"db01\"", "duplicate vm name \"db01\""),
        ("name = \"replicate-db\"", "name = \"backup-db\"", "duplicate job name \"backup-db\""),
        ("[[site]]\nname = \"dr\"", "[[site]]\nname = \"prod\"", "duplicate site name \"prod\""),
        ("disks = [\"1GiB\"]\n[[vm]]", "disks = []\n[[vm]]", "vm \"db01\" has no disks"),
        ("disks = [\"1GiB\"]\n[[vm]]", "disks = [\"1GiB\", \"0B\"]\n[[vm]]", "disk 1 has size zero"),
        (
            "disks = [\"1GiB\"]\n[[vm]]",
            "disks = [\"1GiB\"]\nzero_fraction = 1.5\n[[vm]]",
            "vm \"db01\": zero_fraction = 1.5 is outside [0, 1]",
        ),
        ("disks = [\"1GiB\"]\n[[vm]]", "disks = [\"1GiB\"]\nswap_fraction = -0.1\n[[vm]]", "swap_fraction"),
        (
            "disks = [\"1GiB\"]\n[[vm]]",
            "disks = [\"1GiB\"]\nworkload = { writes_per_hour = 1, hot_fraction = 2.0 }\n[[vm]]",
            "hot_fraction",
        ),
        ("bandwidth = \"100Mbit\"", "bandwidth = \"100Mbit\"\nloss = 1.1", "loss"),
        (
            "bandwidth = \"100Mbit\"",
            "bandwidth = \"100Mbit\"\nbreaks = 1.5",
            "link between \"prod\" and \"dr\": breaks = 1.5 is outside [0, 1]",
        ),
        ("name = \"px-dr\"", "name = \"px-dr\"\nstreams = 0", "proxy \"px-dr\": streams = 0 is outside [1, 64]"),
        ("name = \"px-dr\"", "name = \"px-dr\"\nstreams = 65", "streams = 65 is outside [1, 64]"),
        ("capacity = \"1TiB\"", "capacity = \"0B\"", "capacity zero"),
        ("duration = \"2h\"", "duration = \"2h\"\n[manager]\nsite = \"moon\"", "[manager] names unknown site \"moon\""),
    ];
    for (from, to, expected) in cases {
        assert!(BASE.contains(from), "{from}");
        let text = BASE.replacen(from, to, 1);
        let e = error(&text);
        assert!(e.starts_with("scenarios/x.toml: "), "{e}");
        assert!(e.contains(expected), "replacing {from:?} by {to:?}: {e}");
    }
    let mapped = BASE.replace("schedule = \"every 30m\"", "schedule = \"every 30m\"\nmap = { db01 = \"db01-copy\" }");
    let parsed = parse(&mapped).unwrap();
    let JobKind::Replication(r) = &parsed.job("replicate-db").unwrap().kind else { panic!() };
    assert_eq!(r.map.get("db01").map(String::as_str), Some("db01-copy"));
    let elsewhere = mapped.replace("name = \"db01-copy\"\nhost = \"esx-dr\"", "name = \"db01-copy\"\nhost = \"esx-prod\"");
    assert!(error(&elsewhere).contains("maps vm \"db01\" to \"db01-copy\", which is not on target host \"esx-dr\""));
}

#[test]
fn a_link_has_packet_loss_and_breaks_apart_and_a_proxy_its_streams() {
    let text = BASE.replacen("bandwidth = \"100Mbit\"", "bandwidth = \"100Mbit\"\nloss = 0.001\nbreaks = 0.002", 1);
    let s = parse(&text).unwrap();
    assert_eq!((s.links[0].loss, s.links[0].breaks), (0.001, 0.002));
    let absent = parse(BASE).unwrap();
    assert_eq!((absent.links[0].loss, absent.links[0].breaks), (0.0, 0.0), "both default to none");
    let one = parse(&BASE.replacen("name = \"px-dr\"", "name = \"px-dr\"\nstreams = 1", 1)).unwrap();
    let streams = |s: &Scenario| s.proxies.iter().map(|p| (p.name.clone(), p.streams)).collect::<Vec<_>>();
    assert!(streams(&one).contains(&("px-dr".to_string(), 1)), "{:?}", streams(&one));
    assert!(streams(&absent).iter().all(|(_, n)| *n == 5), "default: {:?}", streams(&absent));
}

#[test]
fn faults_take_exactly_their_keys() {
    let with = |fault: &str| format!("{BASE}\n[[fault]]\n{fault}\n");
    let cases = [
        ("at = \"1h\"\nkind = \"partition\"\nbetween = [\"prod\", \"dr\"]", "fault #1 (partition at 1h) needs key \"for\""),
        ("at = \"1h\"\nkind = \"crash\"\nfor = \"5m\"", "needs key \"node\""),
        ("at = \"1h\"\nkind = \"crash\"\nnode = \"px-moon\"\nfor = \"5m\"", "names unknown node \"px-moon\""),
        ("at = \"1h\"\nkind = \"cbt_reset\"", "needs key \"vm\""),
        ("at = \"1h\"\nkind = \"cbt_reset\"\nvm = \"db01\"\nfor = \"1m\"", "key \"for\" does not apply to cbt_reset faults"),
        ("at = \"1h\"\nkind = \"cbt_miss\"\nvm = \"db01\"", "needs key \"blocks\""),
        ("at = \"1h\"\nkind = \"cbt_miss\"\nvm = \"db9\"\nblocks = 1", "names unknown vm \"db9\""),
        ("at = \"1h\"\nkind = \"disk_full\"\nnode = \"px-dr\"\nfor = \"1m\"", "names unknown repository \"px-dr\""),
        ("at = \"1h\"\nkind = \"corrupt_block\"\nnode = \"repo-dr\"\nblocks = 0", "`blocks` must be 1 or more"),
        ("at = \"1h\"\nkind = \"slow_link\"\nbetween = [\"prod\", \"dr\"]\nfor = \"1m\"", "needs key \"bandwidth\""),
        ("at = \"1h\"\nkind = \"partition\"\nbetween = [\"prod\", \"dr\"]\nfor = \"0s\"", "`for` must be more than zero"),
        ("at = \"3h\"\nkind = \"cbt_reset\"\nvm = \"db01\"", "after the end of the run"),
    ];
    for (fault, expected) in cases {
        let e = error(&with(fault));
        assert!(e.contains(expected), "{fault}: {e}");
    }
    let e = error(&with("at = \"1h\"\nkind = \"meteor\""));
    assert!(e.contains("invalid value \"meteor\" for [[fault]] kind (expected"), "{e}");

    let unlinked = BASE.replace("[[link]]\nbetween = [\"prod\", \"dr\"]\nlatency = \"40ms\"\nbandwidth = \"100Mbit\"\n", "");
    let e = error(&format!("{unlinked}\n[[fault]]\nat = \"1h\"\nkind = \"partition\"\nbetween = [\"prod\", \"dr\"]\nfor = \"1m\"\n"));
    assert!(e.contains("have no [[link]]"), "{e}");
}

#[test]
fn actions_need_a_replicated_vm() {
    let e = error(&format!("{BASE}\n[[action]]\nat = \"1h\"\nkind = \"failover\"\nvm = \"db01-copy\"\n"));
    assert!(e.contains("action #1 (failover at 1h) names vm \"db01-copy\", which no replication job replicates"), "{e}");
    let e = error(&format!("{BASE}\n[[action]]\nat = \"1h\"\nkind = \"failover\"\nvm = \"db01\"\npoint = \"oldest\"\n"));
    assert!(e.contains("invalid point \"oldest\""), "{e}");
    let e = error(&format!("{BASE}\n[[expect]]\njob = \"nightly\"\n"));
    assert!(e.contains("[[expect]] names unknown job \"nightly\""), "{e}");
}

#[test]
fn throttling_rules_and_job_caps_parse_and_are_checked() {
    let text = format!("{BASE}\n[[throttle]]\nbetween = [\"dr\", \"prod\"]\nbandwidth = \"50Mbit\"\n");
    let s = parse(&text.replace("schedule = \"every 30m\"", "schedule = \"every 30m\"\nthrottle = \"10Mbit\"")).unwrap();
    assert_eq!(s.throttles, [Throttle { between: ["dr".into(), "prod".into()], bandwidth_bps: 50_000_000 }]);
    assert_eq!(s.jobs.iter().find(|j| j.name == "replicate-db").and_then(|j| j.throttle_bps), Some(10_000_000));
    assert!(s.jobs.iter().filter(|j| j.name != "replicate-db").all(|j| j.throttle_bps.is_none()));

    let e = error(&format!("{BASE}\n[[throttle]]\nbetween = [\"prod\", \"mars\"]\nbandwidth = \"50Mbit\"\n"));
    assert!(e.contains("[[throttle]] #1 names unknown site \"mars\""), "{e}");
    let e = error(&format!("{BASE}\n[[throttle]]\nbetween = [\"prod\", \"dr\"]\nbandwidth = \"1bit\"\n"));
    assert!(e.contains("[[throttle]] #1: bandwidth must be at least 8bit"), "{e}");
    let e = error(&format!("{BASE}\n[[throttle]]\nbetween = [\"prod\", \"dr\"]\n"));
    assert!(e.contains("bandwidth"), "{e}");
    let e = error(&format!("{BASE}\n[[throttle]]\nbetween = [\"prod\", \"dr\"]\nbandwidth = \"5Mbit\"\nlatency = \"1ms\"\n"));
    assert!(e.contains("latency"), "{e}");
    let e = error(&BASE.replace("schedule = \"every 30m\"", "schedule = \"every 30m\"\nthrottle = \"fast\""));
    assert!(e.starts_with("scenarios/x.toml:58: [[job]] throttle: invalid bandwidth \"fast\""), "{e}");
}

#[test]
fn backup_windows_parse_and_apply_to_backup_jobs_only() {
    let s = parse(&BASE.replace(
        "repository = \"repo-dr\"\nschedule = \"every 1h\"",
        "repository = \"repo-dr\"\nschedule = \"every 1h\"\nwindow = \"45m\"",
    ))
    .unwrap();
    let windows: Vec<Option<Duration>> = s
        .jobs
        .iter()
        .filter_map(|j| match &j.kind {
            JobKind::Backup(b) => Some(b.window),
            JobKind::Replication(_) => None,
        })
        .collect();
    assert_eq!(windows, [Some(Duration::from_secs(45 * 60))]);
    let e = error(&BASE.replace("schedule = \"every 30m\"", "schedule = \"every 30m\"\nwindow = \"45m\""));
    assert!(e.contains("key \"window\" does not apply to a replication job"), "{e}");
    let e = error(&BASE.replace(
        "repository = \"repo-dr\"\nschedule = \"every 1h\"",
        "repository = \"repo-dr\"\nschedule = \"every 1h\"\nwindow = \"0s\"",
    ));
    assert!(e.contains("window must be more than zero"), "{e}");
}

#[test]
fn syntax_errors_have_lines_and_files_are_read() {
    let e = error("name = \"x\"\nduration = \n");
    assert!(e.starts_with("scenarios/x.toml:2: "), "{e}");

    let e = Scenario::from_file("/nonexistent/blockferry.toml").unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/blockferry.toml: cannot read the file"), "{e}");

    let dir = std::env::temp_dir().join(format!("blockferry-scenario-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("base.toml");
    std::fs::write(&path, BASE).unwrap();
    let s = Scenario::from_file(&path).unwrap();
    assert_eq!(s.origin, path.display().to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_direct_proxy_needs_a_host_in_its_site() {
    let direct = |proxy: &str| BASE.replace(&format!("name = \"{proxy}\"\n"), &format!("name = \"{proxy}\"\ntransport = \"direct\"\n"));
    let s = parse(&direct("px-prod")).unwrap();
    assert_eq!(s.proxies[0].transport, Transport::Direct);
    let without_dr_host =
        direct("px-dr").replace("[[host]]\nname = \"esx-dr\"\nsite = \"dr\"\n", "").replace("host = \"esx-dr\"", "host = \"esx-prod\"");
    let e = error(&without_dr_host);
    assert_eq!(
        e,
        "scenarios/x.toml: proxy \"px-dr\": transport = \"direct\" reads the datastores of hosts in its own site, and site \"dr\" has no [[host]]"
    );
}

/// `start` moves the whole run: fault and action times are offsets from
/// it, and a `daily at` schedule is read in UTC.
#[test]
fn a_run_starts_at_its_start_and_daily_schedules_are_read() {
    let text = BASE.replacen("duration = \"2h\"", "duration = \"2h\"\nstart = \"2026-06-01T21:30:00Z\"", 1).replacen(
        "schedule = \"every 1h\"",
        "schedule = \"daily at 22:00\"",
        1,
    );
    let s = Scenario::from_str(&text, "x.toml").unwrap();
    let start = Timestamp::parse_rfc3339("2026-06-01T21:30:00Z").unwrap();
    assert_eq!(s.start, start);
    assert!(s.faults.iter().all(|f| f.at >= start), "{:?}", s.faults);
    assert!(s.jobs.iter().any(|j| j.schedule == blockferry_core::config::Schedule::DailyAt(Duration::from_secs(22 * 3600))));
}
