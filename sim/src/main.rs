//! `blockferry-sim`: replays scenario files (see SCENARIOS.md "Running").

use blockferry_sim::runner::{self, EngineChoice, RunOptions};
use blockferry_sim::scenario::Scenario;
use blockferry_sim::swarm;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "blockferry-sim", version, about = "Deterministic simulator for blockferry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario; exits 1 if an invariant or expectation fails.
    Run {
        /// The scenario file (TOML, see SCENARIOS.md).
        file: PathBuf,
        /// Overrides the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Overrides the scenario's engine.
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Print one JSON summary object on stdout.
        #[arg(long)]
        json: bool,
        /// Print every event to stderr as it happens.
        #[arg(long)]
        trace: bool,
    },
    /// Draw and run a random scenario per seed; exits 1 if any fails.
    Swarm {
        /// How many seeds to run.
        #[arg(long)]
        seeds: u64,
        /// The first seed (seeds run from it upwards).
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
        #[arg(long, value_enum, default_value_t = EngineArg::Des)]
        engine: EngineArg,
        /// Write each failing seed's scenario to DIR/swarm-SEED.toml.
        #[arg(long, value_name = "DIR")]
        save_failures: Option<PathBuf>,
        /// Print the drawn scenario of every seed, not only failures.
        #[arg(long)]
        show: bool,
    },
}

impl EngineArg {
    fn choice(self) -> EngineChoice {
        match self {
            EngineArg::Des => EngineChoice::Des,
            EngineArg::Turmoil => EngineChoice::Turmoil,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Des,
    Turmoil,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { file, seed, engine, json, trace } => {
            let scenario = match Scenario::from_file(&file) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = RunOptions { seed, engine: engine.map(EngineArg::choice), print_events: trace, sabotage: None };
            let summary = match runner::run_with(&scenario, &options) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            if json {
                match serde_json::to_string_pretty(&summary) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("error: cannot print the summary: {e}"),
                }
            } else {
                print!("{}", runner::human_summary(&summary));
            }
            if summary.ok {
                ExitCode::SUCCESS
            } else {
                for v in &summary.violations {
                    eprintln!("violation: {v}");
                }
                eprintln!("reproduce: {}", runner::reproduce_line(&scenario.origin, summary.seed, &summary.engine));
                ExitCode::from(1)
            }
        }
        Command::Swarm { seeds, first_seed, engine, save_failures, show } => swarm(seeds, first_seed, engine.choice(), save_failures, show),
    }
}

fn swarm(seeds: u64, first_seed: u64, engine: EngineChoice, save_failures: Option<PathBuf>, show: bool) -> ExitCode {
    let started = std::time::Instant::now();
    let (mut failed, mut liveness_checked, mut phases) = (0u64, 0u64, 0u64);
    for seed in first_seed..first_seed.saturating_add(seeds) {
        let run = swarm::run_seed(seed, engine);
        if let Ok(s) = &run.result {
            liveness_checked += 1;
            phases += u64::from(s.liveness.phase_secs > 0);
        }
        if show {
            println!("# seed {seed}: {}\n{}", run.draw.options(), run.draw.toml);
        }
        if run.ok() {
            continue;
        }
        failed += 1;
        print!("{}", swarm::failure_report(&run));
        if let Some(dir) = &save_failures {
            let path = dir.join(format!("swarm-{seed}.toml"));
            match std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, &run.draw.toml)) {
                Ok(()) => println!("  scenario: {}", path.display()),
                Err(e) => eprintln!("  could not write {}: {e}", path.display()),
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "swarm: {seeds} seeds from {first_seed} ({}), {failed} failed, liveness checked on {liveness_checked} ({phases} needed a liveness phase), {secs:.1} s ({:.0} seeds/min)",
        engine.name(),
        seeds as f64 * 60.0 / secs.max(1e-9)
    );
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
