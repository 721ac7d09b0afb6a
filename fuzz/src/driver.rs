//! Drives one role through lives of random inputs, as production runs it:
//! wrapped in [`Authorised`](blockferry_core::roles::Authorised) with the
//! deployment's roster (synthetic
//! payloads refused), fed one input at a time and drained fully after
//! each (the node contract), every input under `catch_unwind`.
//!
//! A run is a sequence of *lives*. A life builds a fresh node of the role
//! (one of the deployment's nodes of that role, so a proxy is sometimes a
//! direct-mode one), starts it, and feeds it inputs: mostly the corpus
//! that node received in the recorded run, in order, with random inputs
//! mixed in at a rate the life draws (from almost none, which follows the
//! real conversation deep into its states, to only random ones). Random
//! inputs are answers to what the node just sent or asked its store or
//! hypervisor, messages of any kind from any peer (the deployment's nodes
//! and strangers), timers it armed, peers connecting and leaving, old
//! corpus messages again or mutated, and crashes (a fresh node, started
//! again on the same store).
//!
//! Each life has its own RNG, seeded from the run's seed, the role and the
//! life's number: a panic is reproduced by replaying that one life
//! (`--role R --seed S --life L`, which prints every input and output).

use crate::catch::install_panic_hook;
use crate::corpus::Corpus;
use crate::harvest::Pools;
use crate::life::Life;
use crate::messages::build;
use crate::rss;
use crate::values::{Gen, Stock};
use crate::variants::message_kinds;
use blockferry_core::NodeId;
use blockferry_core::node::Input;
use blockferry_core::roles::authorise::{Route, route};
use blockferry_core::roles::{Role, Roster};
use blockferry_core::wire::{MAX_FRAME_DEFAULT, frame_len};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The roles the fuzzer drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Target {
    Manager,
    Host,
    Proxy,
    Repository,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Manager, Target::Host, Target::Proxy, Target::Repository];

    pub fn role(self) -> Role {
        match self {
            Target::Manager => Role::Manager,
            Target::Host => Role::Host,
            Target::Proxy => Role::Proxy,
            Target::Repository => Role::Repository,
        }
    }

    pub fn name(self) -> &'static str {
        self.role().name()
    }
}

/// What a run's lives share.
pub struct Fuzzer {
    pub(crate) corpus: Corpus,
    pub(crate) roster: Roster,
    pub(crate) stock: Stock,
    /// Every message kind, and who may send it to whom (`None`: the
    /// generator cannot make the kind).
    pub(crate) kinds: Vec<(String, Option<Route>)>,
    /// The kinds each role takes.
    pub(crate) taken: BTreeMap<Target, Vec<(String, Option<Route>)>>,
}

/// How to run a role.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Inputs to feed in all (ignored with `life`).
    pub inputs: u64,
    /// Replay only this life, whole.
    pub life: Option<u64>,
    /// Print every input (and the panic) as it happens.
    pub verbose: bool,
}

/// A panic, and how to replay it.
#[derive(Debug, Clone)]
pub struct PanicReport {
    /// How many panics the run had at this place (this is the first).
    pub count: u64,
    pub life: u64,
    /// The input's position in its life (0 is the life's `Start`).
    pub step: u64,
    /// What the input was.
    pub input: String,
    /// The panic's message and location.
    pub message: String,
}

/// Memory at a point of the run.
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    pub inputs: u64,
    pub resident_kib: Option<u64>,
    pub peak_kib: Option<u64>,
}

/// What a run of one role did.
#[derive(Debug, Clone)]
pub struct RoleRun {
    pub target: Target,
    pub seed: u64,
    pub inputs: u64,
    pub lives: u64,
    pub panics: u64,
    /// The first panic at each place in the code (the first few places).
    pub panic_reports: Vec<PanicReport>,
    /// Inputs the node refused (it closed the peer's connection).
    pub refusals: u64,
    /// Messages the node sent that no frame can carry.
    pub oversized_sends: u64,
    /// Reads the node asked of its hypervisor beyond the limit (refused by
    /// the fuzzer's hypervisor, not carried out).
    pub oversized_reads: u64,
    /// Messages fed that no frame carries (no driver would deliver them:
    /// the generator's fault, 0 if it stays realistic).
    pub oversized_inputs: u64,
    /// Messages fed, by kind.
    pub kinds: BTreeMap<&'static str, u64>,
    /// Messages the node sent, by kind, and events it reported, by
    /// variant: how far into its conversations the run took it.
    pub sent: BTreeMap<&'static str, u64>,
    pub events: BTreeMap<&'static str, u64>,
    /// Inputs fed, by what they were (`message`, `timer`...).
    pub inputs_by_type: BTreeMap<&'static str, u64>,
    pub wall: Duration,
    /// Whether the peak was reset at the start (else it includes what ran
    /// before in the process).
    pub peak_own: bool,
    pub checkpoints: Vec<Checkpoint>,
    /// The largest state (bytes of its `Debug` text) seen at each life
    /// age sampled: flat across ages means state does not pile up.
    pub state_by_age: BTreeMap<u64, usize>,
}

/// Places in the code whose panics the run reports.
const PANIC_REPORTS: usize = 10;
/// Life ages at which the node's state is measured.
pub(crate) const AGES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];

impl Fuzzer {
    /// Records the corpus and prepares what every run shares.
    pub fn new() -> Result<Fuzzer, String> {
        let corpus = Corpus::capture()?;
        let roster = corpus.topo.roster();
        if let Some(missing) = Target::ALL.iter().find(|t| !roster.values().any(|r| *r == t.role())) {
            return Err(format!("the corpus deployment has no {}", missing.name()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let stock = Stock::new(roster.iter().map(|(id, role)| (*id, *role)).collect(), &mut rng);
        let pools = Pools::default();
        let mut g = Gen { rng: &mut rng, pools: &pools, ctx: None, stock: &stock };
        let kinds: Vec<(String, Option<Route>)> = message_kinds()
            .into_iter()
            .map(|kind| {
                let route = build(&mut g, &kind).map(|m| route(&m));
                (kind, route)
            })
            .collect();
        let taken =
            Target::ALL.map(|t| (t, kinds.iter().filter(|(_, r)| r.is_some_and(|r| r.to.contains(&t.role()))).cloned().collect())).into();
        Ok(Fuzzer { corpus, roster, stock, kinds, taken })
    }

    /// The message kinds the generator cannot make (none, or a variant
    /// was added without a way to generate it).
    pub fn missing_kinds(&self) -> Vec<&str> {
        self.kinds.iter().filter(|(_, r)| r.is_none()).map(|(k, _)| k.as_str()).collect()
    }

    pub fn kind_count(&self) -> usize {
        self.kinds.len()
    }

    /// Runs `target` as `options` say.
    pub fn run(&self, target: Target, options: &Options) -> RoleRun {
        install_panic_hook();
        let mut run = RoleRun::new(target, options.seed, rss::reset_peak());
        let started = Instant::now();
        match options.life {
            Some(number) => self.run_life(target, options, number, u64::MAX, &mut run),
            None => {
                for number in 0.. {
                    if run.inputs >= options.inputs {
                        break;
                    }
                    self.run_life(target, options, number, options.inputs - run.inputs, &mut run);
                }
            }
        }
        run.wall = started.elapsed();
        run
    }

    /// Life `number`, for at most `budget` inputs.
    fn run_life(&self, target: Target, options: &Options, number: u64, budget: u64, run: &mut RoleRun) {
        let mut life = Life::new(self, target, options.seed, number);
        life.k.verbose = options.verbose;
        let budget = life.length.min(budget);
        let every = (options.inputs / 10).max(1);
        let mut peak = rss::peak_kib();
        run.lives += 1;
        if options.verbose {
            println!("life {number}: {} n{}, {} inputs, noise {}%", target.name(), life.id.0, life.length, life.noise);
        }
        let mut input = Input::Start;
        for step in 0..budget {
            let what = run.count_input(&input);
            if options.verbose {
                println!("  #{step} at {}: {}", life.now, truncate(format!("{input:?}"), 400));
            }
            let fed = life.feed(input);
            if options.verbose {
                peak = report_peak_growth(peak);
            }
            run.inputs += 1;
            if options.life.is_none() && run.inputs.is_multiple_of(every) {
                run.checkpoints.push(Checkpoint { inputs: run.inputs, resident_kib: rss::resident_kib(), peak_kib: rss::peak_kib() });
            }
            if let Err(message) = fed {
                if options.verbose {
                    println!("  PANIC: {message}");
                }
                run.count_panic(PanicReport { count: 1, life: number, step, input: what.describe(), message });
                break;
            }
            let age = step + 1;
            if AGES.contains(&age) || age == budget {
                life.measure(age, &mut run.state_by_age);
            }
            input = life.next_input();
        }
        run.refusals += life.k.refusals;
        run.oversized_sends += life.k.oversized_sends;
        run.oversized_reads += life.k.backends.oversized;
        merge(&mut run.sent, &life.k.sent);
        merge(&mut run.events, &life.k.events);
    }
}

impl RoleRun {
    fn new(target: Target, seed: u64, peak_own: bool) -> RoleRun {
        RoleRun {
            target,
            seed,
            inputs: 0,
            lives: 0,
            panics: 0,
            panic_reports: Vec::new(),
            refusals: 0,
            oversized_sends: 0,
            oversized_reads: 0,
            oversized_inputs: 0,
            kinds: BTreeMap::new(),
            sent: BTreeMap::new(),
            events: BTreeMap::new(),
            inputs_by_type: BTreeMap::new(),
            wall: Duration::ZERO,
            peak_own,
            checkpoints: Vec::new(),
            state_by_age: BTreeMap::new(),
        }
    }

    /// Counts an input about to be fed; returns what a panic report says
    /// of it.
    fn count_input(&mut self, input: &Input) -> What {
        let what = describe(input);
        *self.inputs_by_type.entry(what.0).or_default() += 1;
        if let Input::Message { msg, .. } = input {
            *self.kinds.entry(msg.kind()).or_default() += 1;
            if frame_len(msg).is_ok_and(|len| len > MAX_FRAME_DEFAULT) {
                self.oversized_inputs += 1;
            }
        }
        what
    }

    /// Counts a panic, keeping the first at each place in the code.
    fn count_panic(&mut self, report: PanicReport) {
        self.panics += 1;
        let site = |message: &str| message.lines().next().unwrap_or_default().to_string();
        let places = self.panic_reports.len();
        match self.panic_reports.iter_mut().find(|p| site(&p.message) == site(&report.message)) {
            Some(known) => known.count += 1,
            None if places < PANIC_REPORTS => self.panic_reports.push(report),
            None => {}
        }
    }
}

fn merge(total: &mut BTreeMap<&'static str, u64>, part: &BTreeMap<&'static str, u64>) {
    for (name, count) in part {
        *total.entry(name).or_default() += count;
    }
}

/// Prints the peak resident memory when the last input raised it by more
/// than 8 MiB (verbose runs: which inputs cost memory).
fn report_peak_growth(before: Option<u64>) -> Option<u64> {
    let after = rss::peak_kib();
    if let (Some(b), Some(a)) = (before, after)
        && a > b + 8 * 1024
    {
        println!("  peak resident memory {b} KiB → {a} KiB");
    }
    after
}

/// An input's kind and, for a message, its kind and sender: what a panic
/// report names (kept without allocating, for every input).
#[derive(Clone, Copy)]
struct What(&'static str, Option<(&'static str, NodeId)>);

impl What {
    fn describe(&self) -> String {
        match self.1 {
            Some((kind, from)) => format!("{} {kind} from {from}", self.0),
            None => self.0.to_string(),
        }
    }
}

fn describe(input: &Input) -> What {
    match input {
        Input::Start => What("start", None),
        Input::Message { from, msg } => What("message", Some((msg.kind(), *from))),
        Input::Timer(_) => What("timer", None),
        Input::PeerUp(_) => What("peer_up", None),
        Input::PeerDown(_) => What("peer_down", None),
        Input::Storage(_) => What("storage", None),
        Input::Hypervisor(_) => What("hypervisor", None),
    }
}

/// `text`, cut to `max` bytes (verbose output).
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    text
}
