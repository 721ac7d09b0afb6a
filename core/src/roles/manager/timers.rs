//! The manager's timers, typed. The node contract's `TimerId` is a bare
//! number; this is the one place that packs a timer into it and unpacks
//! it, so the rest of the manager names timers and `handle` matches them
//! exhaustively (quinn-proto's `Timer` enum is the model).

use crate::node::TimerId;

/// Per-job timers are numbered by the job's index in the configuration,
/// each kind in a range of its own.
const HEALTH: u64 = 1 << 32;
const WINDOW: u64 = 1 << 40;
/// Singletons, at the top of the number space.
const SCHEDULER_WAKE: u64 = u64::MAX;
const CATALOG_READY: u64 = u64::MAX - 1;
const WATCHDOG: u64 = u64::MAX - 2;
const SNAPSHOT_RETRY: u64 = u64::MAX - 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// A job's next scheduled session is due (by job index).
    Job(usize),
    /// A job's health check is due.
    Health(usize),
    /// A job's running session reached the end of its backup window.
    Window(usize),
    /// A queued task's retry delay ended: place what can be placed.
    SchedulerWake,
    /// Waited long enough for repositories to list their points.
    CatalogReady,
    /// The task watchdog (see `ownership`).
    Watchdog,
    /// Snapshot requests whose host stayed away (see `snapshot_wait`).
    SnapshotRetry,
}

impl Timer {
    pub(super) fn id(self) -> TimerId {
        TimerId(match self {
            Timer::Job(index) => index as u64,
            Timer::Health(index) => HEALTH + index as u64,
            Timer::Window(index) => WINDOW + index as u64,
            Timer::SchedulerWake => SCHEDULER_WAKE,
            Timer::CatalogReady => CATALOG_READY,
            Timer::Watchdog => WATCHDOG,
            Timer::SnapshotRetry => SNAPSHOT_RETRY,
        })
    }

    /// The timer an id names (`None`: no timer of the manager's).
    pub(super) fn from_id(TimerId(id): TimerId) -> Option<Timer> {
        Some(match id {
            SCHEDULER_WAKE => Timer::SchedulerWake,
            CATALOG_READY => Timer::CatalogReady,
            WATCHDOG => Timer::Watchdog,
            SNAPSHOT_RETRY => Timer::SnapshotRetry,
            id if id >= WINDOW + HEALTH => return None,
            id if id >= WINDOW => Timer::Window(usize::try_from(id - WINDOW).ok()?),
            id if id >= HEALTH => Timer::Health(usize::try_from(id - HEALTH).ok()?),
            index => Timer::Job(usize::try_from(index).ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_comes_back_as_itself() {
        let timers = [
            Timer::Job(0),
            Timer::Job(7),
            Timer::Health(0),
            Timer::Health(3),
            Timer::Window(0),
            Timer::Window(9),
            Timer::SchedulerWake,
            Timer::CatalogReady,
            Timer::Watchdog,
            Timer::SnapshotRetry,
        ];
        for timer in timers {
            assert_eq!(Timer::from_id(timer.id()), Some(timer));
        }
        assert_eq!(Timer::from_id(TimerId(u64::MAX - 4)), None);
    }
}
