//! The scenario runner: builds the world and the nodes from a scenario,
//! runs them under an engine, feeds every event to the checker and the
//! report, applies the fault schedule, and finally restores every retained
//! point to prove it restorable.

mod actions;
mod des_run;
mod faults;
mod liveness;
mod operator;
mod state;
mod throttles;
mod turmoil_faults;
mod turmoil_run;

pub use state::RunState;

use crate::report::Summary;
use crate::scenario::{self, Scenario};

/// How long after the scenario's end the restores of every retained point
/// may take.
pub const RESTORE_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Des,
    Turmoil,
}

impl EngineChoice {
    pub fn name(self) -> &'static str {
        match self {
            EngineChoice::Des => "des",
            EngineChoice::Turmoil => "turmoil",
        }
    }
}

/// How to run a scenario beyond the file itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Overrides the scenario's engine.
    pub engine: Option<EngineChoice>,
    /// Print every event to stderr as it happens.
    pub print_events: bool,
    /// Plant a known bug, to prove the checker catches it.
    pub sabotage: Option<Sabotage>,
}

/// Bugs the runner can plant on purpose (tests of the checker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// Repositories commit manifests without syncing their blocks first.
    SkipSyncBeforeManifest,
    /// Proxies ignore the rates throttling gives their tasks.
    IgnoreThrottling,
    /// Repositories write a manifest, then sync its blocks (and acknowledge
    /// after both): at commit time all is durable, but not in between.
    SyncAfterManifest,
    /// Repositories' health checks count unreadable blocks as intact.
    HealthTrustsUnreadable,
    /// Repositories' health checks report damage, then forget it, so the
    /// next backup never repairs it.
    HealthNeverRepairs,
    /// The manager's retention deletes the newest points, not the oldest.
    RetentionDropsNewest,
    /// The manager reports replica syncs successful without a replica point.
    SyncWithoutReplicaPoint,
    /// The manager never terminates a session at the end of its window.
    IgnoreBackupWindow,
    /// The manager's id counters start over at zero when it restarts.
    IdsStartOver,
}

/// Runs `scenario` with `seed` (default: the scenario's) under `engine`
/// (default: the scenario's). An `Err` means the run could not be set up;
/// a run that breaks an invariant returns a summary with `ok: false`.
pub fn run(scenario: &Scenario, seed: Option<u64>, engine: Option<EngineChoice>) -> Result<Summary, String> {
    run_with(scenario, &RunOptions { seed, engine, ..RunOptions::default() })
}

pub fn run_with(scenario: &Scenario, options: &RunOptions) -> Result<Summary, String> {
    let seed = options.seed.unwrap_or(scenario.seed);
    let engine = options.engine.unwrap_or(match scenario.engine {
        scenario::Engine::Des => EngineChoice::Des,
        scenario::Engine::Turmoil => EngineChoice::Turmoil,
    });
    match engine {
        EngineChoice::Des => des_run::run(scenario, seed, options),
        EngineChoice::Turmoil => turmoil_run::run(scenario, seed, options),
    }
}

/// The exact command that replays a run.
pub fn reproduce_line(origin: &str, seed: u64, engine: &str) -> String {
    format!("blockferry-sim run {origin} --seed {seed} --engine {engine}")
}

/// A few lines for people (the default output of `run`).
pub fn human_summary(s: &Summary) -> String {
    let mut out = format!(
        "{} seed {} ({}): {} after {} simulated s, trace {}\n",
        s.scenario,
        s.seed,
        s.engine,
        if s.ok { "ok" } else { "FAILED" },
        s.simulated_secs,
        &s.trace_hash[..16.min(s.trace_hash.len())]
    );
    for (name, j) in &s.jobs {
        out += &format!(
            "  job {name}: {} sessions ok, {} failed, {} restore points; last session {} blocks changed, {} sent ({} bytes)\n",
            j.sessions_ok,
            j.sessions_failed,
            j.restore_points,
            j.last_session.blocks_changed,
            j.last_session.blocks_sent,
            j.last_session.bytes_sent
        );
    }
    out += &format!("  bytes: read {}, LAN {}, WAN {}, stored {}\n", s.bytes.read, s.bytes.sent_lan, s.bytes.sent_wan, s.bytes.stored);
    let r = &s.restores;
    out +=
        &format!("  restores at the end: {} requested, {} verified, {} refused for damage\n", r.requested, r.verified, r.refused_damaged);
    for v in &s.violations {
        out += &format!("  violation: {v}\n");
    }
    out
}
