//! The resource scheduler: which proxy runs a disk task, and when.
//!
//! A task waits in FIFO order until it is due (retries wait a delay), a
//! proxy with a free task slot is available (the job's proxy, or the least
//! loaded one), and its repository is below its task limit. Slots are
//! released when the proxy reports the task done or is lost.

use crate::config::Deployment;
use crate::ids::{NodeId, TaskId};
use crate::time::Timestamp;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
pub struct Scheduler {
    queue: VecDeque<(TaskId, Timestamp)>,
    proxy_load: BTreeMap<NodeId, u32>,
    repo_load: BTreeMap<NodeId, u32>,
}

/// A placement the scheduler made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub task: TaskId,
    pub proxy: NodeId,
}

impl Scheduler {
    /// Queues a task, runnable from `not_before`.
    pub fn enqueue(&mut self, task: TaskId, not_before: Timestamp) {
        self.queue.push_back((task, not_before));
    }

    /// Places every due task that fits. `needs(task)` gives the task's
    /// preferred proxy (if the job names one) and its repository.
    pub fn place(&mut self, now: Timestamp, cfg: &Deployment, mut needs: impl FnMut(TaskId) -> (Option<NodeId>, NodeId)) -> Vec<Placement> {
        let mut placed = Vec::new();
        let mut waiting = VecDeque::new();
        while let Some((task, not_before)) = self.queue.pop_front() {
            let (preferred, repository) = needs(task);
            let repo_ok =
                cfg.repositories.get(&repository).is_none_or(|r| self.repo_load.get(&repository).copied().unwrap_or(0) < r.max_tasks);
            let proxy = if not_before <= now && repo_ok { self.free_proxy(cfg, preferred) } else { None };
            match proxy {
                Some(proxy) => {
                    *self.proxy_load.entry(proxy).or_default() += 1;
                    *self.repo_load.entry(repository).or_default() += 1;
                    placed.push(Placement { task, proxy });
                }
                None => waiting.push_back((task, not_before)),
            }
        }
        self.queue = waiting;
        placed
    }

    /// Forgets a task still waiting to be placed; whether it was waiting.
    pub fn cancel(&mut self, task: TaskId) -> bool {
        let before = self.queue.len();
        self.queue.retain(|(t, _)| *t != task);
        self.queue.len() != before
    }

    /// Counts a task as running on `proxy` without placing it (a task the
    /// proxy ran on after the manager had given up on it, taken back so
    /// that its end can be settled like any other).
    pub fn occupy(&mut self, proxy: NodeId, repository: NodeId) {
        *self.proxy_load.entry(proxy).or_default() += 1;
        *self.repo_load.entry(repository).or_default() += 1;
    }

    /// A task placed earlier finished (or its proxy was lost).
    pub fn release(&mut self, proxy: NodeId, repository: NodeId) {
        for (load, node) in [(&mut self.proxy_load, proxy), (&mut self.repo_load, repository)] {
            if let Some(n) = load.get_mut(&node) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The earliest time a queued task becomes due, if later than `now`.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        self.queue.iter().map(|(_, t)| *t).filter(|t| *t > now).min()
    }

    fn free_proxy(&self, cfg: &Deployment, preferred: Option<NodeId>) -> Option<NodeId> {
        let load = |p: &NodeId| self.proxy_load.get(p).copied().unwrap_or(0);
        let candidates: Vec<NodeId> = match preferred {
            Some(p) => vec![p],
            None => cfg.proxies.keys().copied().collect(),
        };
        candidates.into_iter().filter(|p| cfg.proxies.get(p).is_some_and(|spec| load(p) < spec.task_slots)).min_by_key(|p| (load(p), *p))
    }
}
