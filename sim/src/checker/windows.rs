//! Backup windows hold: a session of a job with `window = D` transfers
//! nothing after its start + D (plus [`WINDOW_SLACK`]): no point committed,
//! no disk task assigned or still running then.
//!
//! A window the manager never enforced would otherwise pass unnoticed: the
//! late session's points are right, only the timing is wrong. The slack
//! lets a VM that was already committing when the window closed finish (the
//! manager lets it), and a task's cancellation reach the checker.

use crate::topology::Topology;
use blockferry_core::config::JobKind;
use blockferry_core::{Event, JobId, SessionId, TaskId, Timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long after its window closes a session may still be seen finishing.
pub const WINDOW_SLACK: Duration = Duration::from_secs(300);

/// A running session of a job with a window.
#[derive(Debug)]
struct Open {
    job: JobId,
    window: Duration,
    /// When it must have stopped transferring (start + window + slack).
    deadline: Timestamp,
    tasks: BTreeSet<TaskId>,
}

#[derive(Debug, Default)]
pub struct Windows {
    open: BTreeMap<SessionId, Open>,
}

impl Windows {
    /// The manager crashed: its sessions ended with it.
    pub fn manager_crashed(&mut self) {
        self.open.clear();
    }

    pub fn observe(&mut self, at: Timestamp, topo: &Topology, event: &Event, violations: &mut Vec<String>) {
        let late: Vec<SessionId> = self.open.iter().filter(|(_, o)| at > o.deadline && !o.tasks.is_empty()).map(|(s, _)| *s).collect();
        for session in late {
            if let Some(o) = self.open.remove(&session) {
                let what = format!("{} disk tasks still running", o.tasks.len());
                violations.push(self.text(topo, at, session, &o, &what));
            }
        }
        match event {
            Event::SessionStarted { job, session } => {
                let Some(spec) = topo.deployment.job(*job) else { return };
                let JobKind::Backup(b) = &spec.kind else { return };
                let Some(window) = b.window else { return };
                let deadline = at + window + WINDOW_SLACK;
                self.open.insert(*session, Open { job: *job, window, deadline, tasks: BTreeSet::new() });
            }
            Event::TaskAssigned { task, session, .. } => {
                let Some(o) = self.open.get_mut(session) else { return };
                o.tasks.insert(*task);
                if at > o.deadline {
                    let text = self.text(topo, at, *session, &self.open[session], &format!("assigned {task}"));
                    violations.push(text);
                    self.open.remove(session);
                }
            }
            Event::TaskFinished { task, session, .. } => {
                if let Some(o) = self.open.get_mut(session) {
                    o.tasks.remove(task);
                }
            }
            Event::PointCommitted { session, point, .. } => {
                if let Some(o) = self.open.get(session).filter(|o| at > o.deadline) {
                    violations.push(self.text(topo, at, *session, o, &format!("committed {point}")));
                    self.open.remove(session);
                }
            }
            Event::SessionFinished { session, .. } => _ = self.open.remove(session),
            _ => {}
        }
    }

    fn text(&self, topo: &Topology, at: Timestamp, session: SessionId, o: &Open, what: &str) -> String {
        let name = topo.deployment.job(o.job).map_or("?", |s| s.name.as_str());
        format!(
            "at {at}: window broken: session {session} of job {name} {what} after its window of {}s closed (deadline with slack: {})",
            o.window.as_secs(),
            o.deadline
        )
    }
}
