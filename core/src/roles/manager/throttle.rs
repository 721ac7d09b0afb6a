//! Network traffic throttling: which running disk tasks share a bandwidth
//! cap, and the rate each may use.
//!
//! A disk task's data has two legs through its proxy: from the source (a
//! host's snapshot, or the repository on a restore) and to the destination
//! (the repository, the replica's receiving proxy, or a host on a restore).
//! Two kinds of cap apply: every global rule a leg crosses, and the job's
//! own throttle (on the leg to the destination). Each cap is split evenly
//! among the running tasks under it, as Veeam splits a rule's bandwidth
//! among active tasks; a task's rate is the smallest of its shares, and
//! the proxy paces the capped legs' traffic together to it
//! ([`crate::pacing::Pacer`]). Whenever a task starts or ends the shares
//! are recomputed and the proxies of tasks whose rate changed are told
//! (`SetTaskRate`).
//!
//! A proxy the manager cannot reach keeps pacing its tasks at whatever it
//! was last told — possibly less recent than what was sent, since messages
//! in flight when a connection breaks may be lost. While it is away its
//! tasks are held at the highest rate they may be using (their ceiling)
//! and the others share what the caps have left; once it is back it is
//! told every rate again. Otherwise the others would grow into shares the
//! unreachable proxy's tasks still use, and the caps would be overrun.

use crate::config::Deployment;
use crate::ids::{JobId, NodeId, TaskId};
use crate::wire::message::TaskRate;
use std::collections::{BTreeMap, BTreeSet};

/// The nodes a task's proxy exchanges its data with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Legs {
    pub proxy: NodeId,
    pub source: NodeId,
    pub destination: NodeId,
}

/// The throttled tasks running now.
#[derive(Debug, Default)]
pub struct Throttle {
    flows: BTreeMap<TaskId, Flow>,
    /// Proxies whose connection with the manager is down.
    unreachable: BTreeSet<NodeId>,
}

#[derive(Debug, Clone)]
struct Flow {
    /// The proxy that paces the task.
    proxy: NodeId,
    /// Indexes into [`Deployment::throttles`] of the rules it crosses.
    rules: Vec<usize>,
    /// The job's cap, if it has one.
    job: Option<(JobId, u64)>,
    rate: u64,
    /// The highest rate its proxy may be pacing it at: every rate sent it
    /// since it was last told the current one on a fresh connection (0:
    /// never told any).
    ceiling: u64,
}

/// A running task's rate changed: tell its proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateChange {
    pub proxy: NodeId,
    pub task: TaskId,
    pub rate: u64,
}

impl Throttle {
    /// Registers a task about to start, for `job` (restores have none).
    /// Returns its pacing (`None`: unthrottled) and the rate changes of the
    /// other tasks it now shares a cap with.
    pub fn admit(&mut self, cfg: &Deployment, task: TaskId, legs: Legs, job: Option<JobId>) -> (Option<TaskRate>, Vec<RateChange>) {
        let Legs { proxy, source, destination } = legs;
        let crossing = |peer: NodeId| cfg.throttles.iter().any(|r| r.covers(proxy, peer));
        let rules: Vec<usize> = cfg
            .throttles
            .iter()
            .enumerate()
            .filter(|(_, r)| r.covers(proxy, source) || r.covers(proxy, destination))
            .map(|(i, _)| i)
            .collect();
        let job = job.and_then(|id| cfg.job(id)).and_then(|j| j.throttle.map(|cap| (j.id, cap)));
        let mut peers: Vec<NodeId> = [source, destination].into_iter().filter(|p| crossing(*p)).collect();
        if job.is_some() && !peers.contains(&destination) {
            peers.push(destination);
        }
        if peers.is_empty() {
            return (None, Vec::new());
        }
        self.flows.insert(task, Flow { proxy, rules, job, rate: 0, ceiling: 0 });
        let mut changes = self.rebalance(cfg);
        let rate = changes.iter().position(|c| c.task == task).map_or(0, |i| changes.remove(i).rate);
        (Some(TaskRate { bytes_per_sec: rate, peers }), changes)
    }

    /// A task ended (or will never run): the others under its caps get
    /// its share.
    pub fn release(&mut self, cfg: &Deployment, task: TaskId) -> Vec<RateChange> {
        if self.flows.remove(&task).is_none() {
            return Vec::new();
        }
        self.rebalance(cfg)
    }

    /// The connection to `peer` broke: if it is a proxy, its tasks are
    /// held at their ceilings until it is back.
    pub fn peer_down(&mut self, cfg: &Deployment, peer: NodeId) -> Vec<RateChange> {
        if !self.unreachable.insert(peer) {
            return Vec::new();
        }
        self.rebalance(cfg)
    }

    /// `peer` is reachable again: its tasks share the caps again, and it is
    /// told each of their rates (whether or not they changed: what it was
    /// sent before may have been lost).
    pub fn peer_up(&mut self, cfg: &Deployment, peer: NodeId) -> Vec<RateChange> {
        if !self.unreachable.remove(&peer) {
            return Vec::new();
        }
        let mut changes = self.rebalance(cfg);
        for (task, flow) in self.flows.iter_mut().filter(|(_, f)| f.proxy == peer) {
            flow.ceiling = flow.rate;
            if !changes.iter().any(|c| c.task == *task) {
                changes.push(RateChange { proxy: peer, task: *task, rate: flow.rate });
            }
        }
        changes
    }

    /// Recomputes every flow's share; returns the flows whose rate changed.
    /// Flows of unreachable proxies keep their ceilings, and the others
    /// share what is left of each cap.
    fn rebalance(&mut self, cfg: &Deployment) -> Vec<RateChange> {
        let unreachable = &self.unreachable;
        let held = |flow: &Flow| flow.ceiling > 0 && unreachable.contains(&flow.proxy);
        let mut rule_room: Vec<u64> = cfg.throttles.iter().map(|r| r.bytes_per_sec).collect();
        let mut per_rule = vec![0u64; cfg.throttles.len()];
        let mut job_room: BTreeMap<JobId, u64> = BTreeMap::new();
        let mut per_job: BTreeMap<JobId, u64> = BTreeMap::new();
        for flow in self.flows.values() {
            let held = held(flow);
            for &r in &flow.rules {
                if held {
                    rule_room[r] = rule_room[r].saturating_sub(flow.ceiling);
                } else {
                    per_rule[r] += 1;
                }
            }
            if let Some((job, cap)) = flow.job {
                let room = job_room.entry(job).or_insert(cap);
                if held {
                    *room = room.saturating_sub(flow.ceiling);
                } else {
                    *per_job.entry(job).or_default() += 1;
                }
            }
        }
        let mut changes = Vec::new();
        for (task, flow) in self.flows.iter_mut() {
            if held(flow) {
                continue;
            }
            let rule_shares = flow.rules.iter().map(|&r| rule_room[r] / per_rule[r].max(1));
            let job_share =
                flow.job.map(|(job, cap)| job_room.get(&job).copied().unwrap_or(cap) / per_job.get(&job).copied().unwrap_or(1).max(1));
            let rate = rule_shares.chain(job_share).min().unwrap_or(u64::MAX).max(1);
            if rate != flow.rate {
                flow.rate = rate;
                changes.push(RateChange { proxy: flow.proxy, task: *task, rate });
            }
            flow.ceiling = flow.ceiling.max(rate);
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JobKind, JobSpec, ReplicationJob, ThrottleRule};
    use crate::{BlockSize, Compression};
    use std::collections::BTreeSet;
    use std::time::Duration;

    const PROD_PROXY: NodeId = NodeId(1);
    const PROD_PROXY_2: NodeId = NodeId(2);
    const DR_REPO: NodeId = NodeId(3);
    const PROD_REPO: NodeId = NodeId(4);
    const PROD_HOST: NodeId = NodeId(5);

    fn cfg(job_cap: Option<u64>) -> Deployment {
        let job = JobSpec {
            id: JobId(0),
            name: "j".into(),
            vms: Vec::new(),
            schedule: crate::config::Schedule::Every(Duration::from_secs(3600)),
            kind: JobKind::Replication(ReplicationJob {
                source_proxy: PROD_PROXY,
                target_proxy: NodeId(9),
                target_host: NodeId(8),
                metadata_repository: DR_REPO,
                restore_points: 1,
                compression: Compression::Optimal,
                block_size: BlockSize::default(),
                verify_every: None,
                seed_from: None,
                map: BTreeMap::new(),
            }),
            throttle: job_cap,
        };
        Deployment {
            jobs: vec![job],
            throttles: vec![ThrottleRule {
                name: "prod-dr".into(),
                bytes_per_sec: 1200,
                sides: [BTreeSet::from([PROD_PROXY, PROD_PROXY_2, PROD_REPO, PROD_HOST]), BTreeSet::from([DR_REPO])],
            }],
            ..Deployment::default()
        }
    }

    fn legs(proxy: NodeId, destination: NodeId) -> Legs {
        Legs { proxy, source: PROD_HOST, destination }
    }

    fn rate(bytes_per_sec: u64, peers: &[NodeId]) -> Option<TaskRate> {
        Some(TaskRate { bytes_per_sec, peers: peers.to_vec() })
    }

    #[test]
    fn tasks_under_a_rule_share_it_evenly_and_get_it_back() {
        let cfg = cfg(None);
        let mut t = Throttle::default();
        assert_eq!(t.admit(&cfg, TaskId(1), legs(PROD_PROXY, DR_REPO), None), (rate(1200, &[DR_REPO]), vec![]));
        let (r, changes) = t.admit(&cfg, TaskId(2), legs(PROD_PROXY_2, DR_REPO), None);
        assert_eq!(r, rate(600, &[DR_REPO]));
        assert_eq!(changes, vec![RateChange { proxy: PROD_PROXY, task: TaskId(1), rate: 600 }]);
        let (r, _) = t.admit(&cfg, TaskId(3), legs(PROD_PROXY, DR_REPO), None);
        assert_eq!(r, rate(400, &[DR_REPO]));
        let changes = t.release(&cfg, TaskId(1));
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.rate == 600));
    }

    #[test]
    fn an_unreachable_proxys_tasks_keep_their_share_until_it_is_told_again() {
        let cfg = cfg(None);
        let mut t = Throttle::default();
        t.admit(&cfg, TaskId(1), legs(PROD_PROXY, DR_REPO), None);
        // PROD_PROXY may not hear that its task is to slow down: until it
        // is back, its 1200 stay taken and the newcomer gets what is left.
        assert!(t.peer_down(&cfg, PROD_PROXY).is_empty());
        assert_eq!(t.admit(&cfg, TaskId(2), legs(PROD_PROXY_2, DR_REPO), None), (rate(1, &[DR_REPO]), vec![]));
        // Back: both share the rule, and PROD_PROXY is told its rate.
        let changes = t.peer_up(&cfg, PROD_PROXY);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().all(|c| c.rate == 600), "{changes:?}");
        // Told again even when unchanged (what it was sent may be lost).
        t.peer_down(&cfg, PROD_PROXY);
        assert_eq!(t.peer_up(&cfg, PROD_PROXY), vec![RateChange { proxy: PROD_PROXY, task: TaskId(1), rate: 600 }]);
    }

    #[test]
    fn traffic_inside_a_side_is_not_throttled() {
        let cfg = cfg(None);
        let mut t = Throttle::default();
        assert_eq!(t.admit(&cfg, TaskId(1), legs(PROD_PROXY, PROD_REPO), None), (None, vec![]));
        assert!(t.release(&cfg, TaskId(1)).is_empty());
    }

    #[test]
    fn a_proxy_across_the_rule_from_its_source_paces_its_reads() {
        let cfg = cfg(None);
        let mut t = Throttle::default();
        // A DR-side task reading a production host and writing to the DR repository.
        let across = Legs { proxy: DR_REPO, source: PROD_HOST, destination: DR_REPO };
        assert_eq!(t.admit(&cfg, TaskId(1), across, None).0, rate(1200, &[PROD_HOST]));
    }

    #[test]
    fn the_smaller_of_job_and_rule_shares_wins() {
        let cfg = cfg(Some(1000));
        let mut t = Throttle::default();
        // Inside prod: only the job cap applies, to the destination leg.
        assert_eq!(t.admit(&cfg, TaskId(1), legs(PROD_PROXY, PROD_REPO), Some(JobId(0))).0, rate(1000, &[PROD_REPO]));
        // Across: rule share 1200, job share 500.
        let (r, changes) = t.admit(&cfg, TaskId(2), legs(PROD_PROXY, DR_REPO), Some(JobId(0)));
        assert_eq!(r, rate(500, &[DR_REPO]));
        assert_eq!(changes, vec![RateChange { proxy: PROD_PROXY, task: TaskId(1), rate: 500 }]);
    }
}
