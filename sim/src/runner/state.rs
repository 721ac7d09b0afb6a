//! What a run keeps beside the engine: the world, the checker, the report
//! tally, and the end-of-run restores. Both engines feed it the same events.

use super::faults::FaultStep;
use super::liveness::Phase;
use super::{RunOptions, Sabotage};
use crate::checker::{Checker, Retained};
use crate::report::{Bytes, JobTally, Liveness, Restores, Summary};
use crate::scenario::{RestoreCheck, Scenario};
use crate::topology::{Role, Topology};
use crate::world::{Binding, World};
use blockferry_core::roles::{Authorised, Direct, Host, Manager, Proxy, Repository, Roster};
use blockferry_core::wire::Message;
use blockferry_core::{Event, JobId, Node, NodeId, RestorePointId, Timestamp, VmId};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub struct RunState {
    pub topo: Topology,
    /// Builds the nodes' state machines (at start and on restarts).
    pub nodes: NodeMaker,
    pub world: Rc<RefCell<World>>,
    pub checker: Checker,
    pub tally: JobTally,
    /// Restores asked for at the end, by point, and whether they finished.
    pub restores: BTreeMap<RestorePointId, bool>,
    /// What the throttling rules let through (measured by the engine).
    pub throttles: Vec<crate::report::ThrottleFigures>,
    print_events: bool,
}

/// Builds a node's state machine from the topology alone, so an engine can
/// make one at any moment — turmoil's host factories do, on a restart, while
/// the run state is busy applying the fault step that restarts them.
#[derive(Clone)]
pub struct NodeMaker {
    topo: Rc<Topology>,
    roster: Roster,
    sabotage: Option<Sabotage>,
}

impl NodeMaker {
    /// A fresh state machine for node `id` (at start, or after a crash).
    /// It sees only what its peers' roles may send it (see
    /// [`blockferry_core::roles::authorise`]).
    pub fn make(&self, id: NodeId) -> Option<Box<dyn Node>> {
        let info = self.topo.nodes.get(id.0 as usize)?;
        let role = self.role(id)?;
        Some(Box::new(Authorised::new(role, info.role, self.roster.clone()).allowing_synthetic_payloads()))
    }

    /// The role's own state machine.
    fn role(&self, id: NodeId) -> Option<Box<dyn Node>> {
        let info = self.topo.nodes.get(id.0 as usize)?;
        Some(match info.role {
            Role::Operator => return None,
            Role::Manager => {
                let cfg = self.topo.deployment.clone();
                Box::new(match self.sabotage {
                    Some(Sabotage::RetentionDropsNewest) => Manager::expiring_newest_points(cfg),
                    Some(Sabotage::SyncWithoutReplicaPoint) => Manager::skipping_replica_points(cfg),
                    Some(Sabotage::IgnoreBackupWindow) => Manager::ignoring_backup_windows(cfg),
                    Some(Sabotage::IdsStartOver) => Manager::restarting_ids_at_zero(cfg),
                    _ => Manager::new(cfg),
                })
            }
            Role::Host => Box::new(Host::new()),
            Role::Proxy => {
                let proxy = match self.sabotage {
                    Some(Sabotage::IgnoreThrottling) => Proxy::ignoring_throttles(),
                    _ => Proxy::new(),
                };
                match self.topo.direct.get(&id) {
                    Some(hosts) => Box::new(Direct::new(proxy, hosts.iter().copied())),
                    None => Box::new(proxy),
                }
            }
            Role::Repository => {
                let repository = match self.sabotage {
                    Some(Sabotage::SkipSyncBeforeManifest) => Repository::skipping_sync_before_manifest(),
                    Some(Sabotage::SyncAfterManifest) => Repository::syncing_after_manifest(),
                    Some(Sabotage::HealthTrustsUnreadable) => Repository::trusting_unreadable_blocks(),
                    Some(Sabotage::HealthNeverRepairs) => Repository::forgetting_damage(),
                    _ => Repository::new(),
                };
                Box::new(repository.expecting_blocks(self.topo.expected_blocks.get(&id).copied().unwrap_or(0)))
            }
        })
    }
}

impl RunState {
    pub fn new(scenario: &Scenario, seed: u64, options: &RunOptions) -> Result<RunState, String> {
        let topo = Topology::build(scenario)?;
        let mut world = World::from_scenario(scenario, seed)?;
        for node in &topo.nodes {
            match node.role {
                Role::Host => world.bind(node.id, Binding::Host(node.name.clone())),
                Role::Repository => world.bind(node.id, Binding::Repository(node.name.clone())),
                // A direct-mode proxy's reads go to its hosts' datastores.
                Role::Proxy => {
                    if let Some(hosts) = topo.direct.get(&node.id) {
                        world.bind(node.id, Binding::Datastore(hosts.iter().map(|h| topo.name(*h).to_string()).collect()));
                    }
                }
                Role::Manager | Role::Operator => {}
            }
        }
        let nodes = NodeMaker { topo: Rc::new(topo.clone()), roster: topo.roster(), sabotage: options.sabotage };
        Ok(RunState {
            topo,
            nodes,
            world: Rc::new(RefCell::new(world)),
            checker: Checker::default(),
            tally: JobTally::default(),
            restores: BTreeMap::new(),
            throttles: Vec::new(),
            print_events: options.print_events,
        })
    }

    /// The RNG for connection breaks, when some link has them (the stream
    /// lossy links drew from when `loss` meant breaks, so those runs replay).
    pub fn breaks_rng(&self, seed: u64) -> Option<rand_chacha::ChaCha8Rng> {
        self.topo.has_breaking_links().then(|| crate::seed::rng(seed, crate::seed::Stream::Network))
    }

    /// A fresh state machine for node `id` (at start, or after a crash).
    pub fn make_node(&self, id: NodeId) -> Option<Box<dyn Node>> {
        self.nodes.make(id)
    }

    /// One event of the run.
    pub fn observe(&mut self, at: Timestamp, event: &Event) {
        if self.print_events {
            eprintln!("{at} {event:?}");
        }
        // Completions the store made durable by `at` must be visible.
        self.world.borrow_mut().advance_to(at);
        self.collect_audit_findings();
        let world = self.world.borrow();
        self.checker.observe(at, &self.topo, &world, event);
        self.tally.observe(&self.topo, at, event);
        if let Event::RestoreFinished { point, vm, result, .. } = event {
            self.checker.check_restore(&world, *point, *vm, result);
            self.restores.insert(*point, true);
        }
    }

    /// Applies the world's side of a fault step (the engine applies the
    /// network's and the nodes'; [`super::faults::apply`] does both).
    pub fn apply_to_world(&mut self, now: Timestamp, step: &FaultStep) -> Result<(), String> {
        let mut world = self.world.borrow_mut();
        world.advance_to(now);
        match step {
            FaultStep::Crash { role: Role::Manager, .. } => self.checker.manager_crashed(),
            FaultStep::Crash { node, role: Role::Repository } => {
                let name = self.topo.name(*node).to_string();
                if let Some(store) = world.store_mut(&name) {
                    store.crash(now);
                }
                self.checker.repository_crashed(now, &self.topo, &name);
            }
            FaultStep::DiskFull { repository, full } => match world.store_mut(repository) {
                Some(s) => s.set_full(*full),
                None => return Err(format!("disk_full names {repository:?}, which is not a repository")),
            },
            FaultStep::Corrupt { repository, blocks, draw } => {
                let mut rng = world.fault_rng("corrupt_block", *draw);
                let Some(s) = world.store_mut(repository) else {
                    return Err(format!("corrupt_block names {repository:?}, which is not a repository"));
                };
                let damaged = s.corrupt(*blocks as usize, &mut rng);
                drop(world);
                self.checker.damaged(now, repository, damaged);
            }
            FaultStep::CbtReset(vm) => world.hypervisors_mut().cbt_reset(*vm)?,
            FaultStep::CbtMiss(vm, blocks) => world.hypervisors_mut().cbt_miss(*vm, *blocks)?,
            FaultStep::Crash { .. }
            | FaultStep::Restart(_)
            | FaultStep::Partition(..)
            | FaultStep::Repair(..)
            | FaultStep::Bandwidth(..) => {}
        }
        Ok(())
    }

    /// The restore requests for the retained points `check` names:
    /// messages for the manager, each onto a new VM on the point's original
    /// host.
    pub fn restore_requests(&mut self, check: RestoreCheck) -> Vec<Message> {
        let first_new_vm = self.topo.vms.len() as u32 + 1000;
        let mut retained: Vec<_> = self.checker.trusted().map(|(p, r)| (*p, r.clone())).collect();
        if check == RestoreCheck::Newest {
            // Newest by snapshot instant, per VM and job.
            let world = self.world.borrow();
            let frozen = |r: &Retained| world.hypervisors().snapshot(r.snap).map(|s| s.at);
            let mut newest: BTreeMap<(JobId, VmId), (Option<Timestamp>, RestorePointId)> = BTreeMap::new();
            for (point, r) in &retained {
                let candidate = (frozen(r), *point);
                newest.entry((r.job, r.vm)).and_modify(|n| *n = (*n).max(candidate)).or_insert(candidate);
            }
            retained.retain(|(point, r)| newest.get(&(r.job, r.vm)).is_some_and(|(_, p)| p == point));
        }
        retained
            .into_iter()
            .enumerate()
            .map(|(i, (point, r))| {
                self.restores.insert(point, false);
                let new_vm = VmId(first_new_vm + i as u32);
                let name = format!("{}-restored-{point}", self.topo.deployment.vms.get(&r.vm).map_or("vm", |v| v.name.as_str()));
                Message::RestoreVm { op: i as u64 + 1, point, host: r.host, new_vm, name }
            })
            .collect()
    }

    pub fn restores_done(&self) -> bool {
        self.restores.values().all(|done| *done)
    }

    /// Job figures and bytes as of now.
    pub fn figures(&self, sent_lan: u64, sent_wan: u64) -> (BTreeMap<String, crate::report::JobSummary>, Bytes) {
        let stored = self.world.borrow().stores().map(|s| s.stats().bytes_stored).sum();
        let mut jobs = self.tally.by_name(&self.topo);
        self.checker.replication().annotate(&self.topo, |session| self.tally.session_wan(session), &mut jobs);
        (jobs, Bytes { read: self.tally.bytes_read, sent_lan, sent_wan, stored })
    }

    /// Checks the scenario's expectations and finishes the summary.
    #[allow(clippy::too_many_arguments)]
    pub fn summary(
        mut self,
        scenario: &Scenario,
        seed: u64,
        engine: &str,
        simulated_secs: u64,
        trace_hash: String,
        jobs: BTreeMap<String, crate::report::JobSummary>,
        bytes: Bytes,
        phase: Phase,
    ) -> Summary {
        let liveness = self.check_liveness(scenario, phase);
        super::throttles::check_jobs(scenario, &jobs, &mut self.checker);
        self.collect_audit_findings();
        self.checker.finish(&self.topo, &self.world.borrow());
        for (point, done) in &self.restores {
            if !done {
                self.checker.violation(format!("restore of {point} did not finish"));
            }
        }
        for e in &scenario.expects {
            let Some(j) = jobs.get(&e.job) else { continue };
            let mut expect = |ok: bool, text: String| {
                if !ok {
                    self.checker.violation(format!("expectation for job {}: {text}", e.job));
                }
            };
            if let Some(min) = e.min_restore_points {
                expect(j.restore_points >= u64::from(min), format!("{} restore points, expected at least {min}", j.restore_points));
            }
            if let Some(max) = e.max_failed_sessions {
                expect(j.sessions_failed <= u64::from(max), format!("{} failed sessions, expected at most {max}", j.sessions_failed));
            }
            if let Some(min) = e.min_sessions_ok {
                expect(j.sessions_ok >= u64::from(min), format!("{} successful sessions, expected at least {min}", j.sessions_ok));
            }
            if let Some(max) = e.max_wan_bytes {
                expect(j.wan_bytes <= max, format!("{} bytes over WAN, expected at most {max}", j.wan_bytes));
            }
        }
        let violations = self.checker.violations().to_vec();
        Summary {
            scenario: scenario.name.clone(),
            seed,
            engine: engine.to_string(),
            ok: violations.is_empty(),
            simulated_secs,
            trace_hash,
            jobs,
            bytes,
            restores: Restores {
                requested: self.restores.len() as u64,
                verified: self.checker.restores_ok(),
                refused_damaged: self.checker.damaged_restores_refused(),
            },
            liveness,
            throttles: self.throttles,
            violations,
        }
    }

    /// What the stores' manifest audits found (see `checker::durable`).
    fn collect_audit_findings(&mut self) {
        let findings = self.world.borrow_mut().take_audit_findings();
        findings.into_iter().for_each(|f| self.checker.violation(f));
    }

    /// Whether every job has completed a successful session since
    /// `quiet_from` (the liveness phase ends as soon as they have).
    pub fn all_recovered(&self, quiet_from: Timestamp) -> bool {
        self.topo.deployment.jobs.iter().all(|spec| self.tally.recovered_after(spec.id, quiet_from).is_some())
    }

    /// Invariant 6 (see [`super::liveness`]): once the faults stop, every
    /// job completes a successful session within the bound. Checked on
    /// every run: the liveness phase ran for as long as the bound needed.
    fn check_liveness(&mut self, scenario: &Scenario, phase: Phase) -> Liveness {
        let bound = super::liveness::bound(scenario);
        let mut recovered = BTreeMap::new();
        for spec in &self.topo.deployment.jobs {
            let after = self.tally.recovered_after(spec.id, phase.quiet_from);
            if after.is_none_or(|d| d > bound) {
                let running = self.tally.running_sessions(spec.id);
                self.checker.violation(format!(
                    "liveness: job {} had no successful session within {}s after the faults stopped at {}{}",
                    spec.name,
                    bound.as_secs(),
                    phase.quiet_from,
                    if running.is_empty() { String::new() } else { format!(" (sessions still running: {})", running.join(", ")) },
                ));
            }
            recovered.insert(spec.name.clone(), after.map(|d| d.as_secs()));
        }
        let recovered_all = recovered.values().all(|a| a.is_some_and(|d| d <= bound.as_secs()));
        Liveness {
            faults_end_secs: (phase.quiet_from - self.topo.start).as_secs(),
            bound_secs: bound.as_secs(),
            phase_secs: phase.phase.as_secs(),
            recovered: recovered_all,
            recovered_after_secs: recovered,
        }
    }
}
