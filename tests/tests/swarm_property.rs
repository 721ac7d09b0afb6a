//! Property: every generated scenario passes the checker. proptest draws
//! the scenario's shape (sizes, which fault kinds are on) and a seed for the
//! details; a failure shrinks towards fewer VMs, fewer fault kinds, a
//! shorter run and fewer features (no replication, actions, health checks,
//! commit faults or late faults), and prints the scenario file to keep
//! under `scenarios/regressions/`.

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_sim::seed::{self, Stream};
use blockferry_sim::swarm::{FAULT_KINDS, ManagerSite, ReplicaStart, Shape, scenario_text};
use proptest::prelude::*;

/// What the swarm draws beside the topology: replication (none, or how
/// replicas start), operator actions, health checks, commit faults, late
/// faults.
fn features() -> impl Strategy<Value = (Option<ReplicaStart>, bool, bool, bool, bool)> {
    (prop::option::of(0usize..3), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>())
        .prop_map(|(start, actions, health, commit, late)| (start.map(|i| ReplicaStart::ALL[i]), actions, health, commit, late))
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1usize..=2,
        0usize..3,
        1usize..=2,
        1usize..=3,
        1usize..=2,
        1usize..=2,
        4u64..=8,
        prop::collection::vec(any::<bool>(), FAULT_KINDS.len()),
        0usize..3,
        0usize..3,
        (any::<bool>(), any::<bool>()),
        features(),
    )
        .prop_map(|(sites, manager, hosts, vms, proxies, jobs, hours, on, breaks, loss, (throttle, windows), features)| {
            let (replication, actions, health_checks, commit_faults, late_faults) = features;
            let replication = replication.filter(|_| sites == 2);
            Shape {
                sites,
                manager: ManagerSite::ALL[manager],
                hosts,
                vms,
                proxies,
                jobs,
                hours,
                enabled_faults: FAULT_KINDS.iter().zip(on).filter(|(_, on)| *on).map(|(k, _)| *k).collect(),
                breaks: if sites == 2 { [0.0, 0.0005, 0.002][breaks] } else { 0.0 },
                loss: if sites == 2 { [0.0, 0.0001, 0.001][loss] } else { 0.0 },
                throttle: throttle && sites == 2,
                windows,
                replication,
                actions: actions && replication.is_some(),
                health_checks,
                commit_faults,
                late_faults,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_scenarios_pass(shape in shape(), seed in 0u64..1_000_000) {
        let text = scenario_text(seed, &shape, &mut seed::rng(seed, Stream::Swarm));
        let scenario = Scenario::from_str(&text, "generated").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let summary = runner::run(&scenario, Some(seed), Some(EngineChoice::Des)).map_err(TestCaseError::fail)?;
        prop_assert!(summary.ok, "{}\n{}\n--- scenario ---\n{}", shape.options(), summary.violations.join("\n"), text);
    }
}
