//! Bugs a manager can be built with, only to prove that the simulator's
//! checker catches them: each constructor here plants one. Never deploy a
//! manager built by them.
//!
//! They live apart from the manager's own code so that each bug is one
//! flag and one test of it where the correct behaviour is; a restart keeps
//! them (see `Manager::on_start`), as a restart keeps the deployment.

use super::Manager;
use crate::config::Deployment;

/// The bugs planted in a manager; all off in a real one.
#[derive(Debug, Default, Clone, Copy)]
pub(in crate::roles::manager) struct Planted {
    /// Retention deletes the newest points instead of the oldest.
    pub expire_newest: bool,
    /// A replica sync ends successfully without making a replica point.
    pub no_replica_points: bool,
    /// A backup window closing does nothing.
    pub ignore_windows: bool,
    /// Id counters start over at zero on every start.
    pub ids_start_over: bool,
}

impl Manager {
    /// A manager whose retention deletes the newest restore points instead
    /// of the oldest. Only for proving the checker catches it.
    pub fn expiring_newest_points(cfg: Deployment) -> Self {
        Manager::new(cfg).with_planted(Planted { expire_newest: true, ..Planted::default() })
    }

    /// A manager that reports a replica sync successful without sealing a
    /// replica restore point. Only for proving the checker catches it.
    pub fn skipping_replica_points(cfg: Deployment) -> Self {
        Manager::new(cfg).with_planted(Planted { no_replica_points: true, ..Planted::default() })
    }

    /// A manager that never terminates a session at the end of its backup
    /// window. Only for proving the checker catches it.
    pub fn ignoring_backup_windows(cfg: Deployment) -> Self {
        Manager::new(cfg).with_planted(Planted { ignore_windows: true, ..Planted::default() })
    }

    /// A manager whose id counters start over at zero whenever it starts
    /// (as a daemon's did while time counted from each process's start).
    /// Only for proving the checker catches it.
    pub fn restarting_ids_at_zero(cfg: Deployment) -> Self {
        Manager::new(cfg).with_planted(Planted { ids_start_over: true, ..Planted::default() })
    }

    /// The same manager with `planted` bugs (the catalog keeps its own).
    pub(super) fn with_planted(mut self, planted: Planted) -> Self {
        self.planted = planted;
        self.catalog.expire_newest = planted.expire_newest;
        self
    }
}
