//! `blockferry-fuzz`: the long fuzzing run (issue 13 §8). The short one is
//! part of `cargo test -p blockferry-fuzz`.

use blockferry_fuzz::report::markdown;
use blockferry_fuzz::{Fuzzer, Options, Target};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Drives each role through random and mutated inputs from random peers;
/// fails if any role panics or sends or asks for more than a frame holds.
#[derive(Parser, Debug)]
#[command(name = "blockferry-fuzz")]
struct Cli {
    /// Inputs per role.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    inputs: u64,
    /// The run's seed: with the inputs and roles, it decides every input.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Roles to run (repeat the flag for several); all by default.
    #[arg(long = "role", value_enum)]
    roles: Vec<Target>,
    /// Replays one life of one role (named by a panic report), printing
    /// every input and output.
    #[arg(long, requires = "roles")]
    life: Option<u64>,
    /// Writes a Markdown report here (`reports/fuzz.md`).
    #[arg(long)]
    report: Option<PathBuf>,
}

impl Cli {
    /// The command line that reproduces this run.
    fn command(&self) -> String {
        let mut line = format!("cargo run --profile fuzz -p blockferry-fuzz -- --inputs {} --seed {}", self.inputs, self.seed);
        for role in &self.roles {
            line.push_str(&format!(" --role {}", role.name()));
        }
        if let Some(path) = &self.report {
            line.push_str(&format!(" --report {}", path.display()));
        }
        line
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.life.is_some() && cli.roles.len() != 1 {
        eprintln!("error: --life replays one life of one role: name exactly one --role");
        return ExitCode::from(2);
    }
    let fuzzer = match Fuzzer::new() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot record the corpus: {e}");
            return ExitCode::FAILURE;
        }
    };
    let roles = if cli.roles.is_empty() { Target::ALL.to_vec() } else { cli.roles.clone() };
    let options = Options { seed: cli.seed, inputs: cli.inputs, life: cli.life, verbose: cli.life.is_some() };
    let mut runs = Vec::new();
    for role in roles {
        let run = fuzzer.run(role, &options);
        println!(
            "{}: {} inputs, {} lives, {} panics, {} refused, {} oversized sends, {} oversized reads, {:.1} s, peak {} KiB",
            role.name(),
            run.inputs,
            run.lives,
            run.panics,
            run.refusals,
            run.oversized_sends,
            run.oversized_reads,
            run.wall.as_secs_f64(),
            run.checkpoints.last().and_then(|c| c.peak_kib).map_or("n/a".into(), |k| k.to_string()),
        );
        for p in &run.panic_reports {
            println!("  {} panics, first in life {} at input {} ({}): {}", p.count, p.life, p.step, p.input, p.message.replace('\n', " "));
            println!(
                "  replay: cargo run --profile fuzz -p blockferry-fuzz -- --role {} --seed {} --life {}",
                role.name(),
                cli.seed,
                p.life
            );
        }
        runs.push(run);
    }
    if let Some(path) = &cli.report
        && let Err(e) = std::fs::write(path, markdown(&runs, &cli.command(), fuzzer.kind_count()))
    {
        eprintln!("error: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let failed = runs.iter().any(|r| r.panics > 0 || r.oversized_sends > 0 || r.oversized_reads > 0 || r.oversized_inputs > 0);
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
