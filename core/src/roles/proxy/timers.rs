//! The proxy's timers, typed: the one place that packs a timer into the
//! node contract's `TimerId` and unpacks it (see the manager's `timers`).

use crate::ids::TaskId;
use crate::node::TimerId;

/// Pacing timers are the task id with this bit set; resume timers are the
/// bare task id (task ids stay far below both singletons).
const PACE: u64 = 1 << 63;
const REPORT: u64 = PACE - 1;
const ORPHANS: u64 = PACE - 2;
/// The largest task id whose timers cannot meet the singletons above.
pub(super) const LAST_TASK_TIMER: u64 = ORPHANS - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// A suspended task waited long enough for its peers.
    Resume(TaskId),
    /// A throttled task's pacer lets its queue move on.
    Pace(TaskId),
    /// Time to tell the managers which of their tasks run here.
    Report,
    /// Drop the tasks of managers gone too long.
    Orphans,
}

impl Timer {
    pub(super) fn id(self) -> TimerId {
        TimerId(match self {
            Timer::Resume(task) => task.0,
            Timer::Pace(task) => task.0 | PACE,
            Timer::Report => REPORT,
            Timer::Orphans => ORPHANS,
        })
    }

    pub(super) fn from_id(TimerId(id): TimerId) -> Timer {
        match id {
            REPORT => Timer::Report,
            ORPHANS => Timer::Orphans,
            id if id & PACE != 0 => Timer::Pace(TaskId(id & !PACE)),
            task => Timer::Resume(TaskId(task)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timer_comes_back_as_itself() {
        for timer in [Timer::Resume(TaskId(0)), Timer::Resume(TaskId(9)), Timer::Pace(TaskId(9)), Timer::Report, Timer::Orphans] {
            assert_eq!(Timer::from_id(timer.id()), timer);
        }
    }
}
