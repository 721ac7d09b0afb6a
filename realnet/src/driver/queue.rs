//! A peer's outgoing frames: shared between the driver's main loop (which
//! appends) and the connection's writer (which takes).

use std::cell::RefCell;
use std::collections::VecDeque;
use tokio::sync::Notify;

/// Frames waiting to be written to one peer, bounded in bytes.
#[derive(Debug)]
pub(crate) struct SendQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    limit: usize,
}

/// What a push or clear threw away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub frames: usize,
    pub bytes: usize,
}

impl SendQueue {
    pub(crate) fn new(limit: usize) -> Self {
        SendQueue { frames: VecDeque::new(), bytes: 0, limit }
    }

    /// Appends a frame; if the queue then holds more than its limit, drops
    /// the oldest frames (never the one just pushed) until it fits. Oldest
    /// first because a peer that comes back after a long absence is best
    /// served by the most recent state.
    pub(crate) fn push(&mut self, frame: Vec<u8>) -> Dropped {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        let mut dropped = Dropped::default();
        while self.bytes > self.limit && self.frames.len() > 1 {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.len();
                dropped.frames += 1;
                dropped.bytes += old.len();
            }
        }
        dropped
    }

    pub(crate) fn pop(&mut self) -> Option<Vec<u8>> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }

    pub(crate) fn clear(&mut self) -> Dropped {
        let dropped = Dropped { frames: self.frames.len(), bytes: self.bytes };
        self.frames.clear();
        self.bytes = 0;
        dropped
    }
}

/// A peer's queue plus the wake-up for its writer. One per peer for the
/// driver's lifetime; each connection's writer drains it while it lives.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub queue: RefCell<SendQueue>,
    pub ready: Notify,
}

impl Outbound {
    pub(crate) fn new(limit: usize) -> Self {
        Outbound { queue: RefCell::new(SendQueue::new(limit)), ready: Notify::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_oldest_beyond_limit_but_keeps_newest() {
        let mut q = SendQueue::new(10);
        assert_eq!(q.push(vec![1; 4]), Dropped::default());
        assert_eq!(q.push(vec![2; 4]), Dropped::default());
        assert_eq!(q.push(vec![3; 4]), Dropped { frames: 1, bytes: 4 });
        assert_eq!(q.pop(), Some(vec![2; 4]));
        // A frame larger than the limit on its own still goes out.
        assert_eq!(q.push(vec![4; 20]), Dropped { frames: 1, bytes: 4 });
        assert_eq!(q.pop(), Some(vec![4; 20]));
        assert_eq!(q.pop(), None);
        q.push(vec![5; 2]);
        assert_eq!(q.clear(), Dropped { frames: 1, bytes: 2 });
        assert_eq!(q.pop(), None);
    }
}
