//! Which unreferenced blocks garbage collection must spare for points
//! still being written: a writer cutoff, as Proxmox Backup Server collects.
//!
//! A pending point relies on blocks that no manifest may reference (yet):
//! the blocks it stored; the blocks it was told the repository has (a
//! `HaveDigests` answer, a `PutBlocks` reference without payload, or a
//! payload the repository already held); and its base point's blocks,
//! which retention may unreference while it is written. Keeping, per
//! pending point, the set of digests it relies on would cost a set entry
//! per block of a full backup. Instead time is counted in *epochs*: the
//! clock advances each time a point starts, every pending point records
//! the epoch it started in, and every unreferenced block the epoch it was
//! last *touched* in (see `references`): when it was stored, confirmed to
//! a writer, or lost its last reference.
//!
//! Garbage collection sweeps an unreferenced block only if it was touched
//! before the *cutoff*: the start of the oldest pending point. That is
//! safe because every block a pending point relies on and no manifest
//! references was touched at or after the point started:
//! * a block it stored or was confirmed is touched then (the point is
//!   opened, and its start set, before its first block is touched);
//! * a block some manifest referenced when it was confirmed, or when the
//!   point's base was read, was touched again when that reference went;
//! * a confirmation answered before the point was named is dated (see
//!   below), and the point counts as started then.
//!
//! And it is bounded: a point's protection ends when it commits or aborts.
//! What became garbage while it was pending is swept at the first
//! collection after every point older than that garbage has ended: with
//! jobs that always overlap, one job's duration later, not never.
//!
//! `HaveDigests` carries its task but not its point, and a task's first
//! question comes before its first `PutBlocks` names the point. So a task
//! that was told "we have it" is remembered with the epoch of that answer
//! (an *ask*) until a message of the task names its point, which then
//! counts as started no later than the ask. An ask whose task never names
//! a point (the task failed in between) expires after [`ASK_LEASE`]; a
//! `PutBlocks` after that, which references a block swept meanwhile, is
//! refused, as any reference to a block the repository lacks: the task
//! fails and retries, and no committed point ever lacks a block.

use super::references::Epoch;
use crate::ids::TaskId;
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long an ask protects what it confirmed before its task names its
/// point. A proxy sends `PutBlocks` as soon as the answer arrives, so this
/// only has to outlast a slow link.
pub(super) const ASK_LEASE: Duration = Duration::from_secs(10 * 60);

/// At most this many tasks remembered: more than any deployment runs at
/// once. Past it the oldest ask is forgotten (its task may then see a
/// reference refused, never a block lost).
const MAX_ASKS: usize = 4096;

/// A task that was told blocks exist before it named its point.
#[derive(Debug, Clone, Copy)]
struct Ask {
    epoch: Epoch,
    at: Timestamp,
}

/// The epoch clock and the asks of tasks that have not named their point.
#[derive(Debug, Default)]
pub(super) struct Writers {
    now: Epoch,
    asks: BTreeMap<TaskId, Ask>,
}

impl Writers {
    /// The current epoch: what a touch records.
    pub fn now(&self) -> Epoch {
        self.now
    }

    /// A point starts: the clock advances, so what was touched before has
    /// an older epoch than the point, and what is touched from now on not.
    pub fn start(&mut self) -> Epoch {
        self.now = self.now.next();
        self.now
    }

    /// `task` was told at `at` that blocks exist (touched in the current
    /// epoch). Its first ask counts: a later one is no older.
    pub fn asked(&mut self, task: TaskId, at: Timestamp) {
        if self.asks.contains_key(&task) {
            return;
        }
        if self.asks.len() >= MAX_ASKS
            && let Some(oldest) = self.asks.iter().min_by_key(|(_, ask)| ask.epoch).map(|(task, _)| *task)
        {
            self.asks.remove(&oldest);
        }
        self.asks.insert(task, Ask { epoch: self.now, at });
    }

    /// `task` named its point: the epoch of its pending ask, if any, which
    /// the point's start must not be later than.
    pub fn named(&mut self, task: TaskId) -> Option<Epoch> {
        self.asks.remove(&task).map(|ask| ask.epoch)
    }

    /// The cutoff at `now` for points started at `starts`: the oldest of
    /// them and of the unexpired asks, or `None` when there is no writer
    /// (every unreferenced block may go).
    pub fn cutoff(&mut self, now: Timestamp, starts: impl IntoIterator<Item = Epoch>) -> Option<Epoch> {
        self.asks.retain(|_, ask| now.saturating_since(ask.at) < ASK_LEASE);
        starts.into_iter().chain(self.asks.values().map(|ask| ask.epoch)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_duration(Duration::from_secs(secs))
    }

    #[test]
    fn an_ask_holds_the_cutoff_until_its_task_names_its_point_or_it_expires() {
        let mut w = Writers::default();
        let before = w.now();
        assert_eq!(w.cutoff(at(0), []), None, "no writer: no cutoff");
        w.asked(TaskId(1), at(0));
        w.start();
        w.asked(TaskId(1), at(1));
        assert_eq!(w.cutoff(at(1), []), Some(before), "the first ask counts");
        assert_eq!(w.named(TaskId(1)), Some(before));
        assert_eq!(w.cutoff(at(1), []), None);
        w.asked(TaskId(2), at(10));
        assert_eq!(w.cutoff(at(10) + ASK_LEASE, []), None, "expired");
        assert_eq!(w.named(TaskId(2)), None);
    }

    #[test]
    fn asks_are_bounded_and_the_oldest_goes_first() {
        let mut w = Writers::default();
        let first = w.now();
        w.asked(TaskId(0), at(0));
        w.start();
        for task in 1..=MAX_ASKS as u64 {
            w.asked(TaskId(task), at(0));
        }
        assert_eq!(w.asks.len(), MAX_ASKS);
        assert!(w.cutoff(at(0), []) > Some(first), "the oldest ask was forgotten");
    }
}
