//! Property: every generated scenario passes the checker. proptest draws
//! the scenario's shape (sizes, which fault kinds are on) and a seed for the
//! details; a failure shrinks towards fewer VMs, fewer fault kinds and a
//! shorter run, and prints the scenario file to keep under
//! `scenarios/regressions/`.

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_sim::seed::{self, Stream};
use blockferry_sim::swarm::{FAULT_KINDS, ManagerSite, Shape, scenario_text};
use proptest::prelude::*;

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
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(sites, manager, hosts, vms, proxies, jobs, hours, on, breaks, loss, throttle, windows)| Shape {
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
