//! The node's timers, kept in order so they fire deterministically.

use blockferry_core::{TimerId, Timestamp};
use std::collections::{BTreeMap, BTreeSet};

/// Armed timers, indexed both ways: by id (setting an armed id moves it,
/// cancelling needs its deadline) and by `(at, id)` (the firing order, which
/// is total, so equal deadlines never fire in an arbitrary order).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_id: BTreeMap<TimerId, Timestamp>,
    by_time: BTreeSet<(Timestamp, TimerId)>,
}

impl Timers {
    /// Arms `id` at `at`, moving it if it was armed.
    pub(crate) fn set(&mut self, id: TimerId, at: Timestamp) {
        if let Some(old) = self.by_id.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    pub(crate) fn cancel(&mut self, id: TimerId) {
        if let Some(at) = self.by_id.remove(&id) {
            self.by_time.remove(&(at, id));
        }
    }

    /// When the earliest timer is due.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.by_time.first().map(|&(at, _)| at)
    }

    /// Disarms and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<TimerId> {
        let &(at, id) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, id));
        self.by_id.remove(&id);
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_time_then_id_order_and_moves_on_rearm() {
        let mut t = Timers::default();
        t.set(TimerId(2), Timestamp(10));
        t.set(TimerId(1), Timestamp(10));
        t.set(TimerId(3), Timestamp(5));
        t.set(TimerId(3), Timestamp(20)); // moved
        t.set(TimerId(4), Timestamp(1));
        t.cancel(TimerId(4));
        assert_eq!(t.next_deadline(), Some(Timestamp(10)));
        assert_eq!(t.pop_due(Timestamp(9)), None);
        assert_eq!(t.pop_due(Timestamp(15)), Some(TimerId(1)));
        assert_eq!(t.pop_due(Timestamp(15)), Some(TimerId(2)));
        assert_eq!(t.pop_due(Timestamp(15)), None);
        assert_eq!(t.pop_due(Timestamp(20)), Some(TimerId(3)));
        assert_eq!(t.next_deadline(), None);
    }
}
