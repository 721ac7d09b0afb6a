//! Simulator speed, against the targets of issue 5:
//!
//! * a day of hourly backups of 20 VMs holding 2 TiB of virtual disk, half
//!   of them also replicated every 2 h over a 1 Gbit WAN (synthetic
//!   payload), under the discrete-event engine: target ≤ 10 s wall;
//! * swarm: target ≥ 100 small seeds per minute.
//!
//! Prints the figures and writes them to reports/sim-speed.md.
//! Run: `cargo bench -p blockferry-sim --bench sim_speed`

use blockferry_sim::runner::{self, EngineChoice};
use blockferry_sim::scenario::Scenario;
use blockferry_sim::swarm;
use std::fmt::Write as _;
use std::time::Instant;

/// The large scenario: 20 VMs × (80 + 22.4) GiB ≈ 2 TiB; `restore_check`
/// says which retained points are restored at the end.
fn large_scenario(restore_check: &str) -> String {
    let mut t = format!("name = \"bench-2tib-day\"\nrestore_check = \"{restore_check}\"\n");
    t.push_str(
        "seed = 1\nduration = \"24h\"\nblock_size = \"1MiB\"\n\
         [[site]]\nname = \"prod\"\n[[site]]\nname = \"dr\"\n\
         [[link]]\nbetween = [\"prod\", \"dr\"]\nlatency = \"20ms\"\nbandwidth = \"1Gbit\"\n\
         [[host]]\nname = \"esx-1\"\nsite = \"prod\"\n[[host]]\nname = \"esx-2\"\nsite = \"prod\"\n\
         [[host]]\nname = \"esx-dr\"\nsite = \"dr\"\n\
         [[proxy]]\nname = \"px-1\"\nsite = \"prod\"\ntask_slots = 4\n[[proxy]]\nname = \"px-2\"\nsite = \"prod\"\ntask_slots = 4\n\
         [[proxy]]\nname = \"px-dr\"\nsite = \"dr\"\ntask_slots = 4\n\
         [[repository]]\nname = \"repo\"\nsite = \"prod\"\ncapacity = \"20TiB\"\n\
         [[repository]]\nname = \"repo-dr\"\nsite = \"dr\"\ncapacity = \"1TiB\"\n",
    );
    for v in 0..20 {
        let _ = writeln!(
            t,
            "[[vm]]\nname = \"vm{v:02}\"\nhost = \"esx-{}\"\ndisks = [\"80GiB\", \"22938MiB\"]\nzero_fraction = 0.3\ncompressibility = 0.5\n\
             swap_fraction = 0.01\nworkload = {{ writes_per_hour = 2000, hot_fraction = 0.1 }}",
            1 + v % 2
        );
    }
    let all: Vec<String> = (0..20).map(|v| format!("\"vm{v:02}\"")).collect();
    let half: Vec<String> = (0..10).map(|v| format!("\"vm{v:02}\"")).collect();
    let _ = writeln!(
        t,
        "[[job]]\nname = \"backup-all\"\nkind = \"backup\"\nvms = [{}]\nrepository = \"repo\"\nschedule = \"every 1h\"\nretention = 7",
        all.join(", ")
    );
    let _ = writeln!(
        t,
        "[[job]]\nname = \"replicate-half\"\nkind = \"replication\"\nvms = [{}]\nsource_proxy = \"px-1\"\ntarget_proxy = \"px-dr\"\n\
         target_host = \"esx-dr\"\nmetadata_repository = \"repo-dr\"\nschedule = \"every 2h\"\nrestore_points = 4",
        half.join(", ")
    );
    t
}

/// Runs the day `runs` times; its report line, with the median wall time
/// (wall time on this machine moves by ±10 % from run to run, so one run
/// says little).
fn run_day(restore_check: &str, what: &str, runs: usize) -> String {
    let scenario = match Scenario::from_str(&large_scenario(restore_check), "bench-2tib-day") {
        Ok(s) => s,
        Err(e) => return format!("2 TiB day ({what}): the bench scenario does not parse: {e}"),
    };
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let wall = Instant::now();
        let large = runner::run(&scenario, None, Some(EngineChoice::Des));
        walls.push(wall.elapsed().as_secs_f64());
        match large {
            Ok(s) => last = Some(s),
            Err(e) => return format!("2 TiB day ({what}): could not run: {e}"),
        }
    }
    let Some(s) = last else { return format!("2 TiB day ({what}): not run") };
    let each: Vec<String> = walls.iter().map(|w| format!("{w:.2}")).collect();
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    format!(
        "2 TiB day ({what}): 20 VMs hourly backup + 10 replicated every 2 h over 1 Gbit, 24 h simulated in {median:.2} s wall \
         (median of {runs}: {} s; {:.0} simulated s per wall s), ok = {}, {} violations, trace {}",
        each.join(", "),
        86_400.0 / median,
        s.ok,
        s.violations.len(),
        s.trace_hash
    )
}

fn main() {
    let mut lines = Vec::new();
    for (check, what, runs) in
        [("newest", "the target: newest point of each VM restored at the end", 3), ("all", "every retained point restored at the end", 1)]
    {
        let line = run_day(check, what, runs);
        println!("{line}");
        lines.push(line);
    }

    const SEEDS: u64 = 60;
    let wall = Instant::now();
    let failed = (0..SEEDS).filter(|&seed| !swarm::run_seed(seed, EngineChoice::Des).ok()).count();
    let swarm_secs = wall.elapsed().as_secs_f64();
    let swarm_line = format!(
        "swarm (des): {SEEDS} seeds in {swarm_secs:.1} s = {:.0} seeds per minute, {failed} failed",
        SEEDS as f64 * 60.0 / swarm_secs
    );
    println!("{swarm_line}");

    let report = format!(
        "# Simulator speed\n\nCommand: `cargo bench -p blockferry-sim --bench sim_speed` (release build, this 2-core machine)\n\n\
         Targets (issue 5): the 2 TiB day in ≤ 10 s wall; swarm ≥ 100 small seeds per minute.\n\n\
         Generated by the bench; the history and analysis are in `sim-speed-history.md`.\n\n- {}\n- {swarm_line}\n",
        lines.join("\n- ")
    );
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/sim-speed.md");
    if let Err(e) = std::fs::write(path, report) {
        eprintln!("could not write {path}: {e}");
    }
}
