//! `blockferry-sim`: replays scenario files (see SCENARIOS.md "Running").

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
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
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Des,
    Turmoil,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { file, seed, engine, json } => {
            let scenario = match Scenario::from_file(&file) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let engine = engine.map(|e| match e {
                EngineArg::Des => EngineChoice::Des,
                EngineArg::Turmoil => EngineChoice::Turmoil,
            });
            let summary = match runner::run(&scenario, seed, engine) {
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
    }
}
