//! The run summary of SCENARIOS.md ("--json"), built from the event stream.
//!
//! Per job it counts sessions and retained restore points and adds up what
//! the disk tasks did (blocks changed, blocks sent, payload bytes), with the
//! last successful session's figures separately, so an incremental's cost
//! can be read off directly.

mod replication;

pub use replication::{ActionRecord, FirstSync, ReplicationFigures, Transfer};

use crate::topology::Topology;
use blockferry_core::wire::message::TaskStats;
use blockferry_core::{Event, JobId, NodeId, RestorePointId, SessionId, Timestamp, VmId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub engine: String,
    pub ok: bool,
    pub simulated_secs: u64,
    pub trace_hash: String,
    pub jobs: BTreeMap<String, JobSummary>,
    pub bytes: Bytes,
    /// The end-of-run restores (see the scenario's `restore_check`).
    pub restores: Restores,
    /// How soon after the faults stopped every job completed a successful
    /// session (checked on every run, faults or not).
    pub liveness: Liveness,
    /// Present when the scenario has throttling rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub throttles: Vec<ThrottleFigures>,
    pub violations: Vec<String>,
}

/// The restores asked for at the end of a run, and how they ended.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Restores {
    pub requested: u64,
    /// Finished and wrote exactly the point's snapshot content.
    pub verified: u64,
    /// Refused because the point references blocks damaged at rest (the
    /// right answer when a health check could not repair them).
    pub refused_damaged: u64,
}

/// How much traffic crossed a throttling rule's sites, and the busiest
/// rate measured.
#[derive(Debug, Clone, Serialize)]
pub struct ThrottleFigures {
    pub between: [String; 2],
    pub limit_bps: u64,
    /// Bytes that crossed, both directions, over the run.
    pub bytes: u64,
    /// The busiest `window_secs` window, as bits per second.
    pub peak_bps: u64,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    /// When the faults stopped: the last one ended, or the liveness phase
    /// lifted what was still in force at the scenario's end (0: no faults).
    pub faults_end_secs: u64,
    /// Every job must succeed within this long after it.
    pub bound_secs: u64,
    /// How long the run went on, faults off, past the scenario's duration
    /// for every job to recover (0 when all had within the duration).
    pub phase_secs: u64,
    /// Whether every job recovered within the bound.
    pub recovered: bool,
    /// Per job: seconds from the end of the faults to its first successful
    /// session's end (`None`: none in the run).
    pub recovered_after_secs: BTreeMap<String, Option<u64>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JobSummary {
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    pub sessions_skipped: u64,
    /// Restore points retained per VM (the fewest any VM of the job has).
    pub restore_points: u64,
    /// Restore points retained over all the job's VMs.
    pub restore_points_total: u64,
    pub task_retries: u64,
    /// Summed over every task of the job.
    pub blocks_read: u64,
    pub blocks_changed: u64,
    pub blocks_sent: u64,
    pub blocks_deduped: u64,
    pub bytes_sent: u64,
    /// Payload bytes the job's tasks sent across WAN links.
    pub wan_bytes: u64,
    pub cbt_fallbacks: u64,
    /// The last successful session's task totals.
    pub last_session: SessionFigures,
    /// How long the first successful session took, start to end: in a run
    /// that starts with no backups or replicas, the first full (what a slow
    /// or lossy WAN shows in first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_session_secs: Option<u64>,
    /// Verification passes: changed blocks CBT had missed, and the points
    /// reported inconsistent because of them.
    pub cbt_missed_blocks: u64,
    pub points_inconsistent: u64,
    /// Health checks run, and damaged blocks they found.
    pub health_checks: u64,
    pub damaged_blocks_found: u64,
    /// Why VMs failed (the first few reasons, for the operator).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Replication jobs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationFigures>,
    /// Jobs with a throttle only: the fastest of their disk tasks that
    /// moved at least [`MEASURED_TASK_BYTES`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fastest_task: Option<TaskSpeed>,
}

/// Tasks smaller than this are not timed against a job's throttle (a few
/// batches fit in the pacer's credit).
pub const MEASURED_TASK_BYTES: u64 = 64 * 1024 * 1024;

/// How fast one disk task moved its payload.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TaskSpeed {
    pub bytes_sent: u64,
    pub millis: u64,
    pub bps: u64,
}

/// Failure reasons kept per job.
const FAILURES_KEPT: usize = 5;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SessionFigures {
    pub blocks_changed: u64,
    pub blocks_sent: u64,
    pub bytes_sent: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Bytes {
    /// Plaintext bytes read from snapshots.
    pub read: u64,
    /// Bytes on links inside a site.
    pub sent_lan: u64,
    /// Bytes on links between sites.
    pub sent_wan: u64,
    /// Payload bytes held by repositories at the end.
    pub stored: u64,
}

/// Folds events into job figures as the run goes.
#[derive(Debug, Default)]
pub struct JobTally {
    jobs: BTreeMap<JobId, JobSummary>,
    session_job: BTreeMap<SessionId, JobId>,
    open: BTreeMap<SessionId, SessionFigures>,
    /// When each open session started.
    started: BTreeMap<SessionId, Timestamp>,
    /// Retained points per (job, vm).
    points: BTreeMap<(JobId, VmId), BTreeSet<RestorePointId>>,
    /// When each job's successful sessions ended.
    ok_at: BTreeMap<JobId, Vec<Timestamp>>,
    /// Task id → (proxy, repository, assigned at) for WAN attribution and
    /// task speed.
    placement: BTreeMap<u64, (NodeId, NodeId, Timestamp)>,
    /// Task id → session, for tasks assigned and not yet finished.
    task_session: BTreeMap<u64, SessionId>,
    pub bytes_read: u64,
    /// Bytes on WAN links so far, when the engine measures them (set before
    /// each step's events are observed).
    pub wan_now: Option<u64>,
    /// Per session: WAN bytes when it started, then its total once finished.
    session_wan: BTreeMap<SessionId, u64>,
}

impl JobTally {
    pub fn observe(&mut self, topo: &Topology, at: Timestamp, event: &Event) {
        match event {
            Event::SessionStarted { job, session } => {
                if let Some(wan) = self.wan_now {
                    self.session_wan.insert(*session, wan);
                }
                self.session_job.insert(*session, *job);
                self.open.insert(*session, SessionFigures::default());
                self.started.insert(*session, at);
            }
            Event::SessionSkipped { job, .. } => self.job(*job).sessions_skipped += 1,
            Event::TaskAssigned { task, proxy, repository, attempt, session, .. } => {
                self.placement.insert(task.0, (*proxy, *repository, at));
                self.task_session.insert(task.0, *session);
                if *attempt > 1
                    && let Some(job) = self.session_job.get(session).copied()
                {
                    self.job(job).task_retries += 1;
                }
            }
            Event::TaskFinished { task, session, result: Ok(stats), .. } => {
                self.task_session.remove(&task.0);
                let Some(job) = self.session_job.get(session).copied() else { return };
                let placement = self.placement.remove(&task.0);
                let wan = match placement {
                    Some((proxy, repo, _)) if topo.site_of(proxy) != topo.site_of(repo) => stats.bytes_sent,
                    _ => 0,
                };
                let throttled = topo.deployment.job(job).is_some_and(|j| j.throttle.is_some());
                if let Some((_, _, assigned)) = placement.filter(|_| throttled && stats.bytes_sent >= MEASURED_TASK_BYTES) {
                    let millis = (at - assigned).as_millis().max(1) as u64;
                    let speed = TaskSpeed { bytes_sent: stats.bytes_sent, millis, bps: stats.bytes_sent * 8 * 1000 / millis };
                    let fastest = &mut self.job(job).fastest_task;
                    if fastest.is_none_or(|f| f.bps < speed.bps) {
                        *fastest = Some(speed);
                    }
                }
                self.bytes_read += stats.bytes_read;
                add(self.job(job), stats, wan);
                if let Some(open) = self.open.get_mut(session) {
                    open.blocks_changed += stats.blocks_changed;
                    open.blocks_sent += stats.blocks_sent;
                    open.bytes_sent += stats.bytes_sent;
                }
            }
            Event::TaskFinished { task, .. } => {
                self.placement.remove(&task.0);
                self.task_session.remove(&task.0);
            }
            Event::PointCommitted { job, vm, point, .. }
            | Event::PointAdopted { job, vm, point, .. }
            | Event::ReplicaPointCommitted { job, vm, point, .. } => {
                self.points.entry((*job, *vm)).or_default().insert(*point);
            }
            Event::PointRemoved { job, vm, point, result: Ok(()) } | Event::ReplicaPointRemoved { job, vm, point, result: Ok(()) } => {
                self.points.entry((*job, *vm)).or_default().remove(point);
            }
            Event::PointsInconsistent { job, points, missed_blocks, .. } => {
                let j = self.job(*job);
                j.cbt_missed_blocks += missed_blocks;
                j.points_inconsistent += points.len() as u64;
            }
            Event::HealthChecked { job, damaged_blocks, .. } => {
                let j = self.job(*job);
                j.health_checks += 1;
                j.damaged_blocks_found += damaged_blocks;
            }
            Event::VmFinished { job, vm, result: Err(reason), .. } => {
                let j = self.job(*job);
                if j.failures.len() < FAILURES_KEPT {
                    j.failures.push(format!("at {at}: {vm}: {reason}"));
                }
            }
            Event::SessionFinished { job, session, ok } => {
                if let (Some(start), Some(now)) = (self.session_wan.get_mut(session), self.wan_now) {
                    *start = now.saturating_sub(*start);
                }
                let figures = self.open.remove(session).unwrap_or_default();
                self.task_session.retain(|_, s| s != session);
                let started = self.started.remove(session);
                let j = self.job(*job);
                if *ok {
                    j.sessions_ok += 1;
                    j.last_session = figures;
                    if j.first_session_secs.is_none() {
                        j.first_session_secs = started.map(|start| (at - start).as_secs());
                    }
                    self.ok_at.entry(*job).or_default().push(at);
                } else {
                    j.sessions_failed += 1;
                }
            }
            _ => {}
        }
    }

    /// The job's sessions still running, each with the tasks it has out
    /// (for liveness reports: what a stuck job waits on).
    pub fn running_sessions(&self, job: JobId) -> Vec<String> {
        let tasks = |session: SessionId| -> Vec<String> {
            self.task_session.iter().filter(|(_, s)| **s == session).map(|(task, _)| format!("t{task}")).collect()
        };
        self.open
            .keys()
            .filter(|s| self.session_job.get(s) == Some(&job))
            .map(|s| match tasks(*s) {
                t if t.is_empty() => format!("{s}"),
                t => format!("{s} waiting on tasks {}", t.join(" ")),
            })
            .collect()
    }

    /// How long after `after` the job's first successful session ended.
    pub fn recovered_after(&self, job: JobId, after: Timestamp) -> Option<std::time::Duration> {
        self.ok_at.get(&job)?.iter().find(|t| **t > after).map(|t| *t - after)
    }

    /// Bytes a finished session put on WAN links (everything, not only its
    /// payloads), when measured.
    pub fn session_wan(&self, session: SessionId) -> Option<u64> {
        self.session_wan.get(&session).copied().filter(|_| !self.open.contains_key(&session))
    }

    fn job(&mut self, job: JobId) -> &mut JobSummary {
        self.jobs.entry(job).or_default()
    }

    /// Figures by job name (every job of the topology appears).
    pub fn by_name(&self, topo: &Topology) -> BTreeMap<String, JobSummary> {
        topo.deployment
            .jobs
            .iter()
            .map(|spec| {
                let mut j = self.jobs.get(&spec.id).cloned().unwrap_or_default();
                let per_vm = spec.vms.iter().map(|vm| self.points.get(&(spec.id, *vm)).map_or(0, |p| p.len() as u64));
                j.restore_points = per_vm.clone().min().unwrap_or(0);
                j.restore_points_total = per_vm.sum();
                (spec.name.clone(), j)
            })
            .collect()
    }
}

fn add(j: &mut JobSummary, s: &TaskStats, wan: u64) {
    j.blocks_read += s.blocks_read;
    j.blocks_changed += s.blocks_changed;
    j.blocks_sent += s.blocks_sent;
    j.blocks_deduped += s.blocks_deduped;
    j.bytes_sent += s.bytes_sent;
    j.wan_bytes += wan;
    j.cbt_fallbacks += u64::from(s.cbt_fallback);
}
