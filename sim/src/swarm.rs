//! Swarm testing: every seed draws a whole scenario — topology sizes,
//! workloads, job settings, and which fault kinds are enabled at all and how
//! often (swarm-testing style: each seed leaves some kinds out entirely, so
//! faults that mask each other get runs of their own) — then runs it under
//! the full checker. The drawn scenario is plain scenario TOML, so a failure
//! is reproduced by the same seed or by the file it prints.

use crate::net::tcp;
use crate::report::Summary;
use crate::runner::{self, EngineChoice};
use crate::scenario::Scenario;
use crate::seed::{self, Stream};
use rand::Rng;
use rand::seq::IndexedRandom;
use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

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

/// How a drawn replication job's replicas begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStart {
    /// A new replica, filled by a full first sync over the WAN.
    New,
    /// Seeded (`seed_from`) from the backups of the first backup job, whose
    /// repository is in the DR site: the first sync sends only what changed
    /// since the seed.
    Seeded,
    /// The first replicated VM is mapped (`map`) to an older copy of it
    /// already on the DR host: its first sync sends only what differs.
    Mapped,
}

impl ReplicaStart {
    pub const ALL: [ReplicaStart; 3] = [ReplicaStart::New, ReplicaStart::Seeded, ReplicaStart::Mapped];

    fn name(self) -> &'static str {
        match self {
            ReplicaStart::New => "new",
            ReplicaStart::Seeded => "seeded",
            ReplicaStart::Mapped => "mapped",
        }
    }
}

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
    /// A replication job of the first backup job's VMs from the source site
    /// to a DR host (only with two sites: it needs a DR site).
    pub replication: Option<ReplicaStart>,
    /// Operator actions (failover, failback, …) on replicas (only with
    /// replication).
    pub actions: bool,
    /// Backup jobs run health checks (with `corrupt_block` on, they must
    /// find and repair the damage).
    pub health_checks: bool,
    /// Repository `disk_full` faults and crashes timed to land on session
    /// commits, so that commit failure paths run.
    pub commit_faults: bool,
    /// Faults may fall anywhere in the run, up to its end (otherwise only
    /// in its first half): faults still in force at the end, or ending just
    /// before it, make the liveness phase after the run do the work.
    pub late_faults: bool,
}

impl Shape {
    /// The swarm's own draw: each fault kind on with probability ½; each
    /// feature on with its own probability, so that some seeds leave it
    /// out.
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
        // Likewise the features added after it, in the order they came.
        let replication = (sites == 2 && rng.random_bool(0.6)).then(|| ReplicaStart::ALL[rng.random_range(0..3)]);
        let actions = replication.is_some() && rng.random_bool(0.6);
        let health_checks = rng.random_bool(0.5);
        let commit_faults = rng.random_bool(0.4);
        let late_faults = rng.random_bool(0.6);
        Shape {
            sites,
            manager,
            hosts,
            vms,
            proxies,
            jobs,
            hours,
            enabled_faults,
            breaks,
            loss,
            throttle,
            windows,
            replication,
            actions,
            health_checks,
            commit_faults,
            late_faults,
        }
    }

    /// One line, for failure reports.
    pub fn options(&self) -> String {
        format!(
            "sites={} manager={} hosts={} vms={} proxies={} jobs={} hours={} breaks={} loss={} throttle={} windows={} replication={} \
             actions={} health_checks={} commit_faults={} late_faults={} faults=[{}]",
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
            self.replication.map_or("none", ReplicaStart::name),
            self.actions,
            self.health_checks,
            self.commit_faults,
            self.late_faults,
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

/// The DR site's replication target host and proxy.
const DR_HOST: &str = "host-dr";
const DR_PROXY: &str = "px-dr";

/// Longest `for` the fault draw gives a fault, in minutes.
const MAX_FAULT_MINS: u64 = 30;

/// Writes the scenario of a shape, drawing its details from `rng`.
pub fn scenario_text(seed: u64, shape: &Shape, rng: &mut impl Rng) -> String {
    let Shape { sites, manager, hosts, vms, proxies, jobs, hours, ref enabled_faults, breaks, loss, throttle, windows, .. } = *shape;
    let jobs = jobs.clamp(1, vms.max(1));
    // Replication needs a DR site to replicate to.
    let replication = shape.replication.filter(|_| sites == 2);

    let mut t = String::new();
    let _ = writeln!(t, "name = \"swarm-{seed}\"\nseed = {seed}\nduration = \"{hours}h\"");
    let _ = writeln!(t, "start = \"{}\"", drawn_start(seed));
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
    // Bytes per second the WAN sustains for one proxy's bundle of streams
    // (what the first syncs of replicas wait for).
    let mut wan_rate = f64::INFINITY;
    if sites == 2 {
        let latency = rng.random_range(5..=80u32);
        let mbit = [50u32, 100, 1000][rng.random_range(0..3)];
        let lossy = tcp::mathis_rate(Duration::from_millis(u64::from(latency)), loss, tcp::DEFAULT_STREAMS);
        wan_rate = lossy.unwrap_or(f64::INFINITY).min(f64::from(mbit) * 1e6 / 8.0);
        let _ = writeln!(
            t,
            "[[link]]\nbetween = [\"site0\", \"site1\"]\nlatency = \"{latency}ms\"\nbandwidth = \"{mbit}Mbit\"\nloss = {loss}\nbreaks = {breaks}"
        );
        if throttle {
            // Not below 100 Mbit: a first full must still fit in a window.
            let cap = [100u32, 200][rng.random_range(0..2)];
            wan_rate = wan_rate.min(f64::from(cap) * 1e6 / 8.0);
            let _ = writeln!(t, "[[throttle]]\nbetween = [\"site0\", \"site1\"]\nbandwidth = \"{cap}Mbit\"");
        }
    }
    for h in 0..hosts {
        let cbt = rng.random_bool(0.8);
        let _ = writeln!(t, "[[host]]\nname = \"host{h}\"\nsite = \"site0\"\ncbt = {cbt}");
    }
    let mut vm_disks = Vec::with_capacity(vms);
    let mut vm_mib = Vec::with_capacity(vms);
    for v in 0..vms {
        let sizes: Vec<u64> = (0..rng.random_range(1..=2)).map(|_| [256, 512, 1024, 2048][rng.random_range(0..4)]).collect();
        vm_mib.push(sizes.iter().sum::<u64>());
        let disks: Vec<String> = sizes.iter().map(|mib| format!("\"{mib}MiB\"")).collect();
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
        vm_disks.push(disks.join(", "));
    }
    for p in 0..proxies {
        let slots = rng.random_range(1..=3u32);
        let _ = writeln!(t, "[[proxy]]\nname = \"px{p}\"\nsite = \"site0\"\ntask_slots = {slots}");
    }
    let repo_site = site_names.last().cloned().unwrap_or_default();
    let _ = writeln!(t, "[[repository]]\nname = \"repo\"\nsite = \"{repo_site}\"\ncapacity = \"2TiB\"");
    // Every backup job's members and schedule period (for commit faults).
    let members = |j: usize| (0..vms).filter(move |v| v % jobs == j);
    let mut periods = Vec::with_capacity(jobs + 1);
    for j in 0..jobs {
        let every = ["30m", "1h", "2h"][rng.random_range(0..3)];
        let retention = rng.random_range(2..=5u32);
        let compression = ["none", "dedupe-friendly", "optimal", "high"][rng.random_range(0..4)];
        let _ = writeln!(
            t,
            "[[job]]\nname = \"job{j}\"\nkind = \"backup\"\nvms = [{}]\nrepository = \"repo\"\nschedule = \"every {every}\"\nretention = {retention}\ncompression = \"{compression}\"",
            quoted(members(j))
        );
        // A window of one period: only a session slowed by faults runs out
        // of it (a 30-minute job's first full might not fit, so none there,
        // nor where the WAN — lossy, or throttled — would need more than
        // half the window for the job's first full on its own).
        let full_secs = members(j).map(|v| vm_mib[v]).sum::<u64>() as f64 * f64::from(1u32 << 20) / wan_rate;
        if windows && every != "30m" && full_secs <= (minutes(every) * 30) as f64 {
            let _ = writeln!(t, "window = \"{every}\"");
        }
        if shape.health_checks {
            // Hours apart, so a check (which the checker expects to report
            // within one period) re-reads the newest point of each VM.
            let _ = writeln!(t, "health_check = \"every {}h\"", rng.random_range(1..=3u32));
        }
        periods.push(minutes(every));
    }
    let mut quiet = None;
    if let Some(start) = replication {
        let replicated: Vec<usize> = members(0).collect();
        let every = ["30m", "1h"][rng.random_range(0..2)];
        periods.push(minutes(every));
        let slots = rng.random_range(1..=2u32);
        let _ = writeln!(
            t,
            "[[host]]\nname = \"{DR_HOST}\"\nsite = \"site1\"\n[[proxy]]\nname = \"{DR_PROXY}\"\nsite = \"site1\"\ntask_slots = {slots}"
        );
        let _ = writeln!(
            t,
            "[[job]]\nname = \"replicate\"\nkind = \"replication\"\nvms = [{}]\nsource_proxy = \"px0\"\ntarget_proxy = \"{DR_PROXY}\"\ntarget_host = \"{DR_HOST}\"\nmetadata_repository = \"repo\"\nschedule = \"every {every}\"\nrestore_points = {}",
            quoted(replicated.iter().copied()),
            rng.random_range(2..=4u32)
        );
        match start {
            ReplicaStart::New => {}
            // job0 backs up exactly these VMs, into the DR site's `repo`.
            ReplicaStart::Seeded => _ = writeln!(t, "seed_from = \"job0\""),
            ReplicaStart::Mapped => {
                let v = replicated[0];
                let _ = writeln!(t, "map = {{ vm{v} = \"vm{v}-copy\" }}");
                let age = ["30m", "1h", "3h"][rng.random_range(0..3)];
                let _ = writeln!(
                    t,
                    "[[vm]]\nname = \"vm{v}-copy\"\nhost = \"{DR_HOST}\"\ndisks = [{}]\ncopy_of = \"vm{v}\"\ncopy_age = \"{age}\"",
                    vm_disks[v]
                );
            }
        }
        if shape.actions {
            // Every byte of every VM crosses the WAN twice at first (its
            // first backup to the DR repository, its first sync), sharing
            // it: actions wait for that, twice over, and two more syncs.
            let first_copies = 2 * vm_mib.iter().sum::<u64>() * (1 << 20);
            let synced = Duration::from_secs_f64(2.0 * first_copies as f64 / wan_rate) + Duration::from_secs(2 * 60 * minutes(every));
            if let Some((text, span)) = operator_actions(rng, hours, &replicated, synced.as_secs()) {
                t.push_str(&text);
                quiet = Some(span);
            }
        }
    }

    // The manager first (crashes after operator actions skip it).
    let nodes: Vec<String> = std::iter::once("manager".to_string())
        .chain((0..hosts).map(|h| format!("host{h}")))
        .chain((0..proxies).map(|p| format!("px{p}")))
        .chain(replication.iter().flat_map(|_| [DR_HOST.to_string(), DR_PROXY.to_string()]))
        .chain(std::iter::once("repo".to_string()))
        .collect();
    let run_secs = hours * 3600;
    let times = FaultTimes { from: 600, to: if shape.late_faults { run_secs } else { run_secs / 2 }, quiet };
    for kind in enabled_faults {
        for _ in 0..rng.random_range(1..=3) {
            let Some(at) = times.draw(rng) else { break };
            let dur = rng.random_range(1..=MAX_FAULT_MINS);
            let body = match *kind {
                // Between any two sites, for minutes or for seconds (a
                // short one lands inside a running task, at any second).
                "partition" => {
                    let Some((a, b)) = site_pairs.choose(rng) else { continue };
                    let span = if rng.random_bool(0.5) { format!("{}s", rng.random_range(1..=30u32)) } else { format!("{dur}m") };
                    format!("between = [\"{a}\", \"{b}\"]\nfor = \"{span}\"")
                }
                "slow_link" if sites == 2 => format!("between = [\"site0\", \"site1\"]\nbandwidth = \"5Mbit\"\nfor = \"{dur}m\""),
                "crash" => {
                    // A restarted manager rebuilds replica points from
                    // their metadata but not a failover (see the manager's
                    // replication module): it would sync over a failed-over
                    // replica. So once actions begin, it does not crash.
                    let after_actions = times.quiet.as_ref().is_some_and(|q| at >= q.start);
                    let candidates = if after_actions { &nodes[1..] } else { &nodes[..] };
                    format!("node = \"{}\"\nfor = \"{dur}m\"", candidates.choose(rng).cloned().unwrap_or_default())
                }
                "cbt_reset" => format!("vm = \"vm{}\"", rng.random_range(0..vms)),
                "disk_full" => format!("node = \"repo\"\nfor = \"{dur}m\""),
                "corrupt_block" => format!("node = \"repo\"\nblocks = {}", rng.random_range(1..=5)),
                _ => continue,
            };
            fault(&mut t, at, kind, &body);
        }
    }
    if shape.commit_faults {
        commit_faults(&mut t, rng, &times, &periods);
    }
    t
}

/// `"vm0", "vm2"`: VM names as a TOML array's items.
fn quoted(vms: impl Iterator<Item = usize>) -> String {
    vms.map(|v| format!("\"vm{v}\"")).collect::<Vec<_>>().join(", ")
}

/// Any second from 2026 to 2035: schedules, retention and id counters must
/// not depend on the run starting at a round instant.
fn drawn_start(seed: u64) -> String {
    const FROM: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    let secs = FROM + crate::seed::rng(seed, crate::seed::Stream::SwarmStart).random_range(0..10 * 365 * 86_400);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
}

/// Minutes of a drawn `every` period ("30m", "1h", "2h").
fn minutes(every: &str) -> u64 {
    match every {
        "30m" => 30,
        "1h" => 60,
        _ => 120,
    }
}

fn fault(t: &mut String, at_secs: u64, kind: &str, body: &str) {
    let _ = writeln!(t, "[[fault]]\nat = \"{at_secs}s\"\nkind = \"{kind}\"\n{body}");
}

/// When faults may start, in seconds into the run: in `[from, to)`, but
/// not in the `quiet` span around operator actions.
///
/// An action is a short run of host steps the checker requires to succeed;
/// a crash of the manager forgets a failover in progress, one of the DR
/// host or a partition fails a step, a full disk fails a failback's
/// metadata. Those are legitimate failures, not bugs, so the draw keeps
/// faults away from the actions rather than expecting the impossible.
struct FaultTimes {
    from: u64,
    to: u64,
    quiet: Option<Range<u64>>,
}

impl FaultTimes {
    /// A start time, uniform over what is allowed (`None` if nothing is).
    fn draw(&self, rng: &mut impl Rng) -> Option<u64> {
        let quiet = self.quiet.clone().map(|q| q.start.clamp(self.from, self.to)..q.end.clamp(self.from, self.to));
        let gap = quiet.as_ref().map_or(0, |q| q.end - q.start);
        let span = self.to.saturating_sub(self.from).saturating_sub(gap);
        if span == 0 {
            return None;
        }
        let at = self.from + rng.random_range(0..span);
        Some(match quiet {
            Some(q) if at >= q.start => at + gap,
            _ => at,
        })
    }

    fn allows(&self, at: u64) -> bool {
        (self.from..self.to).contains(&at) && !self.quiet.as_ref().is_some_and(|q| q.contains(&at))
    }
}

/// Failing commits: a repository's disk fills, or it crashes, a few seconds
/// to two minutes into a session — when a small incremental commits its
/// points (sessions start on their schedule's multiples) — and only
/// briefly, so that the commit, not the whole session, meets it.
fn commit_faults(t: &mut String, rng: &mut impl Rng, times: &FaultTimes, periods: &[u64]) {
    for _ in 0..rng.random_range(1..=3) {
        let Some(&period) = periods.choose(rng) else { return };
        let sessions = times.to / (period * 60);
        if sessions < 2 {
            continue;
        }
        let at = rng.random_range(1..sessions) * period * 60 + rng.random_range(10..=120);
        if !times.allows(at) {
            continue;
        }
        if rng.random_bool(0.5) {
            fault(t, at, "disk_full", &format!("node = \"repo\"\nfor = \"{}s\"", rng.random_range(5..=90)));
        } else {
            fault(t, at, "crash", &format!("node = \"repo\"\nfor = \"{}s\"", rng.random_range(10..=300)));
        }
    }
}

/// Where a replica stands, as far as operator actions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replica {
    Ready {
        failed_over_before: bool,
    },
    FailedOver,
    FailedBack,
    /// Permanently failed over: no action applies any more.
    Permanent,
}

/// Operator actions on one or two of the replicated VMs, as `[[action]]`
/// tables, and the span of the run faults must keep away from.
///
/// Each VM's actions are a walk through the replica's states in the order
/// the manager accepts them (failover from a replica in sync; undo,
/// failback or make permanent from failed over; commit or undo from failed
/// back), so each must succeed. They start at 40–55 % of the run, and not
/// before `synced` (seconds), by when the replicas are sure to have two
/// points each (failover needs one, to the previous point two); they are
/// minutes apart. `None` when the run is too short for that.
fn operator_actions(rng: &mut impl Rng, hours: u64, replicated: &[usize], synced: u64) -> Option<(String, Range<u64>)> {
    let run = hours * 3600;
    let first = (run * rng.random_range(40..=55) / 100).max(synced);
    if first + 600 > run {
        return None;
    }
    let spacing = (run / 36).max(180);
    let acted: Vec<usize> = replicated.iter().copied().take(rng.random_range(1..=2)).collect();
    let mut states = vec![Replica::Ready { failed_over_before: false }; acted.len()];
    let mut t = String::new();
    let (mut at, mut last) = (first, first);
    for _ in 0..rng.random_range(1..=6) {
        let open: Vec<usize> = (0..acted.len()).filter(|&i| states[i] != Replica::Permanent).collect();
        let Some(&i) = open.choose(rng) else { break };
        if at + 600 > run {
            break;
        }
        let (kind, next) = match states[i] {
            Replica::Ready { .. } => ("failover", Replica::FailedOver),
            Replica::FailedOver => match rng.random_range(0..100) {
                0..35 => ("undo_failover", Replica::Ready { failed_over_before: true }),
                35..85 => ("failback", Replica::FailedBack),
                _ => ("permanent_failover", Replica::Permanent),
            },
            Replica::FailedBack if rng.random_bool(0.6) => ("commit_failback", Replica::Ready { failed_over_before: true }),
            Replica::FailedBack => ("undo_failback", Replica::FailedOver),
            Replica::Permanent => continue,
        };
        let _ = writeln!(t, "[[action]]\nat = \"{at}s\"\nkind = \"{kind}\"\nvm = \"vm{}\"", acted[i]);
        // The point before the newest exists once two syncs are kept
        // (every job keeps two or more); only the first failover asks for
        // it, so that no failback has since replaced the replica's points.
        if states[i] == (Replica::Ready { failed_over_before: false }) && rng.random_bool(0.3) {
            let _ = writeln!(t, "point = \"previous\"");
        }
        states[i] = next;
        last = at;
        at += rng.random_range(spacing / 2..=spacing);
    }
    // Faults end (they last at most `MAX_FAULT_MINS`) and the system
    // settles for half an hour before the first action, and none comes
    // back until half an hour after the last (a failback's transfer or a
    // sync the action waits for may still run).
    let settle = 30 * 60;
    Some((t, first.saturating_sub(MAX_FAULT_MINS * 60 + settle)..last + settle))
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
