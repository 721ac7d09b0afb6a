//! Who runs which task. The manager's view of its tasks and the proxies'
//! can drift apart whenever a connection breaks: the manager cannot tell a
//! partition from a proxy crash, nor the proxy a partition from a manager
//! restart, and a task's start or its end may be lost with the connection.
//! Left alone, an end dropped on the floor holds its VM open forever, and a
//! task the proxy still runs occupies a slot the manager gave to another.
//!
//! So both sides converge:
//! * A proxy whose connection breaks keeps its tasks for
//!   [`RECONNECT_GRACE`]: over a WAN that breaks connections now and then,
//!   failing every task at each break would redo work that never stopped
//!   (and let the redone and the original run side by side).
//! * When a proxy's connection comes up, the manager asks it which tasks
//!   it runs (`ListTasks`). A task it runs that the manager no longer has
//!   placed there is cancelled; a task placed there before the question
//!   that it does not list is gone (its start or its end was lost with the
//!   old connection) and fails now, to be retried.
//! * A task's end is believed only from the proxy it is placed on. A
//!   success reported for a task that was queued again in the meantime
//!   resolves it: its work is done, so the retry is dropped.
//! * A watchdog: proxies list their running tasks every
//!   [`REPORT_EVERY`](crate::roles::proxy::REPORT_EVERY); a placed task not
//!   heard of for [`TASK_SILENCE`] is cancelled at its proxy and fails
//!   (and is retried), so no task — and no session — waits forever on a
//!   message that was lost.

use super::Manager;
use crate::ids::{NodeId, TaskId};
use crate::time::Timestamp;
use crate::wire::Message;
use crate::wire::message::{OpId, TaskStats};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a placed task may go unheard before the manager gives up on
/// it: ten of the proxies' reports, so a report queued behind bulk data on
/// a slow WAN (minutes at worst) never trips it.
pub const TASK_SILENCE: Duration = Duration::from_secs(600);
/// How long the tasks of a proxy whose connection broke stay placed on it,
/// waiting for it to come back and list them; then they fail and are
/// retried like any failed task. A margin beyond
/// [`MANAGER_GRACE`](crate::roles::proxy::MANAGER_GRACE), after which the
/// proxy has dropped them: the two ends notice a break at different times
/// (a driver's keepalive timeout apart), and a task must never run twice
/// at once.
pub const RECONNECT_GRACE: Duration = Duration::from_secs(crate::roles::proxy::MANAGER_GRACE.as_secs() + 20);
/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_secs(60);
/// The manager's record of its placed tasks: since which request, and when
/// each was last heard of. Where a task runs is the task's own `proxy`; a
/// record whose task is no longer placed is stale and dropped.
#[derive(Debug, Default)]
pub(super) struct Placements {
    placed: BTreeMap<TaskId, Placed>,
    /// Whether the watchdog timer is armed.
    watching: bool,
}

#[derive(Debug, Clone, Copy)]
struct Placed {
    /// The manager's operation counter when the task was sent: a
    /// `ListTasks` with a larger op was sent after it, on the same
    /// connection or a later one.
    since_op: OpId,
    heard: Timestamp,
    /// When the connection to the proxy broke, if it has not listed the
    /// task since.
    lost_at: Option<Timestamp>,
}

impl Manager {
    /// A task was sent to its proxy.
    pub(super) fn task_placed(&mut self, task: TaskId) {
        self.placements.placed.insert(task, Placed { since_op: self.ids.op, heard: self.now, lost_at: None });
        if !self.placements.watching {
            self.placements.watching = true;
            self.out.set_timer(super::Timer::Watchdog.id(), self.now + WATCH_EVERY);
        }
    }

    /// A proxy's connection came up: ask what it runs.
    pub(super) fn ask_tasks(&mut self, proxy: NodeId) {
        self.ids.op += 1;
        self.out.send(proxy, Message::ListTasks { op: self.ids.op });
    }

    /// A proxy says how a task ended. Only the proxy the task is placed
    /// on is believed, except that a success for a task queued again
    /// since is taken (the retry would redo finished work).
    pub(super) fn on_task_report(&mut self, from: NodeId, id: TaskId, result: Result<TaskStats, String>) {
        let Some(task) = self.tasks.get(&id) else { return };
        match task.proxy {
            Some(proxy) if proxy == from => self.on_task_done(id, result),
            // A stale run elsewhere: the current placement answers.
            Some(_) => {}
            None if result.is_ok() && self.scheduler.cancel(id) => {
                let repository = self.needs(task.kind).1;
                self.scheduler.occupy(from, repository);
                if let Some(task) = self.tasks.get_mut(&id) {
                    task.proxy = Some(from);
                }
                self.on_task_done(id, result);
            }
            // A failure of a run already counted as failed.
            None => {}
        }
    }

    /// A proxy listed the manager's tasks it runs (see the module doc).
    pub(super) fn on_tasks_running(&mut self, from: NodeId, op: Option<OpId>, running: Vec<TaskId>) {
        for id in &running {
            match self.placements.placed.get_mut(id) {
                Some(p) if self.tasks.get(id).is_some_and(|t| t.proxy == Some(from)) => {
                    p.heard = self.now;
                    p.lost_at = None;
                }
                // Not ours there (any more): stop it.
                _ => self.out.send(from, Message::CancelTask { task: *id }),
            }
        }
        let Some(op) = op else { return };
        let gone: Vec<TaskId> = self.placed_on(from).filter(|(id, p)| p.since_op < op && !running.contains(id)).map(|(id, _)| id).collect();
        for id in gone {
            self.on_task_done(id, Err(format!("proxy {from} no longer runs the task")));
        }
    }

    /// The connection to a proxy broke: its tasks wait for it to come back
    /// (see [`RECONNECT_GRACE`]).
    pub(super) fn proxy_lost(&mut self, proxy: NodeId) {
        let lost: Vec<TaskId> = self.placed_on(proxy).map(|(id, _)| id).collect();
        for id in lost {
            if let Some(p) = self.placements.placed.get_mut(&id) {
                p.lost_at = Some(self.now);
            }
        }
    }

    /// The records of the tasks placed on `proxy` now.
    fn placed_on(&self, proxy: NodeId) -> impl Iterator<Item = (TaskId, Placed)> + '_ {
        let tasks = &self.tasks;
        self.placements.placed.iter().filter(move |(id, _)| tasks.get(id).is_some_and(|t| t.proxy == Some(proxy))).map(|(id, p)| (*id, *p))
    }

    /// A task ended (or was dropped): stop watching it.
    pub(super) fn task_unplaced(&mut self, task: TaskId) {
        self.placements.placed.remove(&task);
    }

    /// The watchdog: tasks unheard of for [`TASK_SILENCE`] are given up.
    pub(super) fn on_watchdog(&mut self) {
        let now = self.now;
        let tasks = &self.tasks;
        // Forget what ended by a path that did not say so.
        self.placements.placed.retain(|id, _| tasks.get(id).is_some_and(|t| t.proxy.is_some()));
        let silent: Vec<(TaskId, NodeId, bool)> = self
            .placements
            .placed
            .iter()
            .filter(|(_, p)| {
                p.lost_at.is_some_and(|at| now.saturating_since(at) >= RECONNECT_GRACE) || now.saturating_since(p.heard) >= TASK_SILENCE
            })
            .filter_map(|(id, p)| Some((*id, tasks.get(id)?.proxy?, p.lost_at.is_some())))
            .collect();
        for (id, proxy, lost) in silent {
            self.out.send(proxy, Message::CancelTask { task: id });
            let reason = match lost {
                true => format!("lost connection to proxy {proxy}"),
                false => format!("no report from proxy {proxy} for {} s", TASK_SILENCE.as_secs()),
            };
            self.on_task_done(id, Err(reason));
        }
        self.placements.watching = !self.placements.placed.is_empty();
        if self.placements.watching {
            self.out.set_timer(super::Timer::Watchdog.id(), now + WATCH_EVERY);
        }
    }
}
