//! Swarm testing: every seed draws a whole scenario — topology sizes,
//! workloads, job settings, and which fault kinds are enabled at all and how
//! often (swarm-testing style: each seed leaves some kinds out entirely, so
//! faults that mask each other get runs of their own) — then runs it under
//! the full checker. The drawn scenario is plain scenario TOML, so a failure
//! is reproduced by the same seed or by the file it prints.

use crate::report::Summary;
use crate::runner::{self, EngineChoice};
use crate::scenario::Scenario;
use crate::seed::{self, Stream};
use rand::Rng;
use rand::seq::IndexedRandom;
use std::fmt::Write as _;

/// Fault kinds the swarm may enable. `cbt_miss` is left out: a lying CBT
/// without a verification pass is *meant* to fail the run (see the checker
/// tests), and `verify_every` runs only repair from the next verification.
pub const FAULT_KINDS: [&str; 6] = ["partition", "crash", "cbt_reset", "disk_full", "corrupt_block", "slow_link"];

/// Where the manager runs, relative to the data. A manager beside the
/// proxies never loses them to a WAN partition; one in a headquarters of
/// its own, or in the DR site, does (and must converge with its proxies
/// when the link is back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerSite {
    /// In the source site, beside the hosts and proxies.
    Source,
    /// In the DR site, beside the repository (the source site when there is
    /// only one).
    Dr,
    /// In a site of its own (`hq`), linked to every other site.
    Own,
}

impl ManagerSite {
    pub const ALL: [ManagerSite; 3] = [ManagerSite::Source, ManagerSite::Dr, ManagerSite::Own];

    fn name(self) -> &'static str {
        match self {
            ManagerSite::Source => "source",
            ManagerSite::Dr => "dr",
            ManagerSite::Own => "own",
        }
    }
}

/// Packet loss rates a drawn WAN link may have.
pub const PACKET_LOSSES: [f64; 3] = [0.0001, 0.001, 0.005];

/// The shape of a drawn scenario: sizes and which fault kinds are on.
/// Everything else (disk sizes, workloads, fault times) is drawn from the
/// seed within it. Property tests generate shapes directly, so a failure
/// shrinks to the smallest shape that still fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Data sites: the source site, and a DR site holding the repository.
    pub sites: usize,
    pub manager: ManagerSite,
    pub hosts: usize,
    pub vms: usize,
    pub proxies: usize,
    pub jobs: usize,
    pub hours: u64,
    pub enabled_faults: Vec<&'static str>,
    /// The WAN link's chance per message of breaking a connection.
    pub breaks: f64,
    /// The WAN link's packet loss rate (slows each connection down).
    pub loss: f64,
    /// A throttling rule between the two sites (its bandwidth is drawn).
    pub throttle: bool,
    /// Hourly-or-slower jobs get a backup window of one schedule period.
    pub windows: bool,
}

impl Shape {
    /// The swarm's own draw: each fault kind on with probability ½.
    pub fn draw(rng: &mut impl Rng, engine: EngineChoice) -> Shape {
        let turmoil = engine == EngineChoice::Turmoil;
        let sites = rng.random_range(1..=2usize);
        let manager = ManagerSite::ALL[rng.random_range(0..3)];
        let hosts = rng.random_range(1..=2usize);
        let vms = rng.random_range(1..=if turmoil { 2 } else { 5 });
        let proxies = rng.random_range(1..=2usize);
        let jobs = rng.random_range(1..=2usize).min(vms);
        let hours = if turmoil { 3 } else { rng.random_range(6..=12u64) };
        // Both engines meet every fault kind (turmoil through the real
        // driver: keepalives notice partitions, the transport's shaper
        // models slow and lossy links); turmoil runs are kept short and
        // small instead.
        let enabled_faults = FAULT_KINDS.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
        let breaks = if sites == 2 && rng.random_bool(0.3) { [0.0005, 0.001, 0.005][rng.random_range(0..3)] } else { 0.0 };
        let throttle = sites == 2 && rng.random_bool(0.3);
        let windows = rng.random_bool(0.3);
        // Drawn last, independently of breaks, so the draws above stay as
        // they were before links had packet loss.
        let loss = if sites == 2 && rng.random_bool(0.5) { PACKET_LOSSES[rng.random_range(0..PACKET_LOSSES.len())] } else { 0.0 };
        Shape { sites, manager, hosts, vms, proxies, jobs, hours, enabled_faults, breaks, loss, throttle, windows }
    }

    /// One line, for failure reports.
    pub fn options(&self) -> String {
        format!(
            "sites={} manager={} hosts={} vms={} proxies={} jobs={} hours={} breaks={} loss={} throttle={} windows={} faults=[{}]",
            self.sites,
            self.manager.name(),
            self.hosts,
            self.vms,
            self.proxies,
            self.jobs,
            self.hours,
            self.breaks,
            self.loss,
            self.throttle,
            self.windows,
            self.enabled_faults.join(",")
        )
    }
}

/// What a seed drew.
#[derive(Debug, Clone)]
pub struct Draw {
    pub seed: u64,
    pub engine: EngineChoice,
    pub shape: Shape,
    pub toml: String,
}

impl Draw {
    pub fn options(&self) -> String {
        self.shape.options()
    }
}

/// Draws the scenario of `seed`. Small by design: swarm runs many seeds.
pub fn draw(seed: u64, engine: EngineChoice) -> Draw {
    let mut rng = seed::rng(seed, Stream::Swarm);
    let shape = Shape::draw(&mut rng, engine);
    let toml = scenario_text(seed, &shape, &mut rng);
    Draw { seed, engine, shape, toml }
}

/// Writes the scenario of a shape, drawing its details from `rng`.
pub fn scenario_text(seed: u64, shape: &Shape, rng: &mut impl Rng) -> String {
    let Shape { sites, manager, hosts, vms, proxies, jobs, hours, ref enabled_faults, breaks, loss, throttle, windows } = *shape;
    let jobs = jobs.clamp(1, vms.max(1));

    let mut t = String::new();
    let _ = writeln!(t, "name = \"swarm-{seed}\"\nseed = {seed}\nduration = \"{hours}h\"");
    let block = ["256KiB", "512KiB", "1MiB"].choose(rng).copied().unwrap_or("1MiB");
    let _ = writeln!(t, "block_size = \"{block}\"");
    let site_names: Vec<String> = (0..sites).map(|i| format!("site{i}")).collect();
    for s in &site_names {
        let _ = writeln!(t, "[[site]]\nname = \"{s}\"");
    }
    let manager_site = match manager {
        ManagerSite::Source => "site0".to_string(),
        ManagerSite::Dr => site_names.last().cloned().unwrap_or_default(),
        ManagerSite::Own => "hq".to_string(),
    };
    let _ = writeln!(t, "[manager]\nsite = \"{manager_site}\"");
    let hq = (manager == ManagerSite::Own).then(|| "hq".to_string());
    if let Some(hq) = &hq {
        let _ = writeln!(t, "[[site]]\nname = \"{hq}\"");
        for s in &site_names {
            let latency = rng.random_range(2..=60u32);
            let mbit = [10u32, 100, 1000][rng.random_range(0..3)];
            let _ = writeln!(t, "[[link]]\nbetween = [\"{hq}\", \"{s}\"]\nlatency = \"{latency}ms\"\nbandwidth = \"{mbit}Mbit\"");
        }
    }
    let all_sites: Vec<&String> = site_names.iter().chain(&hq).collect();
    let site_pairs: Vec<(&String, &String)> =
        all_sites.iter().enumerate().flat_map(|(i, a)| all_sites[i + 1..].iter().map(move |b| (*a, *b))).collect();
    if sites == 2 {
        let latency = rng.random_range(5..=80u32);
        let mbit = [50u32, 100, 1000][rng.random_range(0..3)];
        let _ = writeln!(
            t,
            "[[link]]\nbetween = [\"site0\", \"site1\"]\nlatency = \"{latency}ms\"\nbandwidth = \"{mbit}Mbit\"\nloss = {loss}\nbreaks = {breaks}"
        );
        if throttle {
            // Not below 100 Mbit: a first full must still fit in a window.
            let cap = [100u32, 200][rng.random_range(0..2)];
            let _ = writeln!(t, "[[throttle]]\nbetween = [\"site0\", \"site1\"]\nbandwidth = \"{cap}Mbit\"");
        }
    }
    for h in 0..hosts {
        let cbt = rng.random_bool(0.8);
        let _ = writeln!(t, "[[host]]\nname = \"host{h}\"\nsite = \"site0\"\ncbt = {cbt}");
    }
    for v in 0..vms {
        let disks: Vec<String> =
            (0..rng.random_range(1..=2)).map(|_| format!("\"{}MiB\"", [256, 512, 1024, 2048][rng.random_range(0..4)])).collect();
        let zero = rng.random_range(0..=5) as f64 / 10.0;
        let comp = rng.random_range(0..=9) as f64 / 10.0;
        let writes = rng.random_range(50..=1500u32);
        let hot = rng.random_range(0..=5) as f64 / 10.0;
        let _ = writeln!(
            t,
            "[[vm]]\nname = \"vm{v}\"\nhost = \"host{}\"\ndisks = [{}]\nzero_fraction = {zero}\ncompressibility = {comp}\nswap_fraction = 0.01\nworkload = {{ writes_per_hour = {writes}, hot_fraction = {hot} }}",
            v % hosts,
            disks.join(", ")
        );
    }
    for p in 0..proxies {
        let slots = rng.random_range(1..=3u32);
        let _ = writeln!(t, "[[proxy]]\nname = \"px{p}\"\nsite = \"site0\"\ntask_slots = {slots}");
    }
    let repo_site = site_names.last().cloned().unwrap_or_default();
    let _ = writeln!(t, "[[repository]]\nname = \"repo\"\nsite = \"{repo_site}\"\ncapacity = \"2TiB\"");
    for j in 0..jobs {
        let members: Vec<String> = (0..vms).filter(|v| v % jobs == j).map(|v| format!("\"vm{v}\"")).collect();
        let every = ["30m", "1h", "2h"][rng.random_range(0..3)];
        let retention = rng.random_range(2..=5u32);
        let compression = ["none", "dedupe-friendly", "optimal", "high"][rng.random_range(0..4)];
        let _ = writeln!(
            t,
            "[[job]]\nname = \"job{j}\"\nkind = \"backup\"\nvms = [{}]\nrepository = \"repo\"\nschedule = \"every {every}\"\nretention = {retention}\ncompression = \"{compression}\"",
            members.join(", ")
        );
        // A window of one period: only a session slowed by faults runs out
        // of it (a 30-minute job's first full might not fit, so none there).
        if windows && every != "30m" {
            let _ = writeln!(t, "window = \"{}\"", if every == "1h" { "1h" } else { "2h" });
        }
    }
    // Faults fall in the first half of the run (the liveness phase after
    // the run checks recovery whatever remains).
    let window_mins = hours * 60 / 2;
    let nodes: Vec<String> = std::iter::once("manager".to_string())
        .chain((0..hosts).map(|h| format!("host{h}")))
        .chain((0..proxies).map(|p| format!("px{p}")))
        .chain(std::iter::once("repo".to_string()))
        .collect();
    for kind in enabled_faults {
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(10..window_mins);
            let dur = rng.random_range(1..=30u64);
            let minutes = format!("{at}m");
            let (at, body) = match *kind {
                // Between any two sites, for minutes or for seconds (a
                // short one lands inside a running task, at any second).
                "partition" => {
                    let Some((a, b)) = site_pairs.choose(rng) else { continue };
                    let at_secs = rng.random_range(600..window_mins * 60);
                    let span = if rng.random_bool(0.5) { format!("{}s", rng.random_range(1..=30u32)) } else { format!("{dur}m") };
                    (format!("{at_secs}s"), format!("between = [\"{a}\", \"{b}\"]\nfor = \"{span}\""))
                }
                "slow_link" if sites == 2 => {
                    (minutes, format!("between = [\"site0\", \"site1\"]\nbandwidth = \"5Mbit\"\nfor = \"{dur}m\""))
                }
                "crash" => (minutes, format!("node = \"{}\"\nfor = \"{dur}m\"", nodes.choose(rng).cloned().unwrap_or_default())),
                "cbt_reset" => (minutes, format!("vm = \"vm{}\"", rng.random_range(0..vms))),
                "disk_full" => (minutes, format!("node = \"repo\"\nfor = \"{dur}m\"")),
                "corrupt_block" => (minutes, format!("node = \"repo\"\nblocks = {}", rng.random_range(1..=5))),
                _ => continue,
            };
            let _ = writeln!(t, "[[fault]]\nat = \"{at}\"\nkind = \"{kind}\"\n{body}");
        }
    }
    t
}

/// One seed's outcome.
pub struct SeedRun {
    pub draw: Draw,
    pub result: Result<Summary, String>,
}

impl SeedRun {
    pub fn ok(&self) -> bool {
        self.result.as_ref().is_ok_and(|s| s.ok)
    }
}

/// Draws and runs one seed.
pub fn run_seed(seed: u64, engine: EngineChoice) -> SeedRun {
    let draw = draw(seed, engine);
    let result = Scenario::from_str(&draw.toml, &format!("swarm seed {seed}"))
        .map_err(|e| format!("drawn scenario does not parse: {e}"))
        .and_then(|s| runner::run(&s, Some(seed), Some(engine)));
    SeedRun { draw, result }
}

/// A failing seed, as printed by `blockferry-sim swarm`.
pub fn failure_report(run: &SeedRun) -> String {
    let engine = run.draw.engine.name();
    let mut out = format!("seed {} FAILED ({})\n  options: {}\n", run.draw.seed, engine, run.draw.options());
    match &run.result {
        Ok(summary) => {
            for v in &summary.violations {
                let _ = writeln!(out, "  violation: {v}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    let _ = writeln!(out, "  reproduce: blockferry-sim swarm --seeds 1 --first-seed {} --engine {engine}", run.draw.seed);
    out
}
