//! Where the driver's `now` comes from.
//!
//! Core never reads a clock; the driver reads one and passes the result as
//! `now` to every `handle` call. The clock is a trait so the simulator can
//! substitute its own notion of time.

use blockferry_core::Timestamp;

/// A source of [`Timestamp`]s: nanoseconds since the run's epoch.
pub trait Clock {
    /// The current time. Must never go backwards.
    fn now(&self) -> Timestamp;
}

/// Time from tokio's clock, counted from the instant the clock was created.
///
/// `tokio::time::Instant` (not `std::time`) is what makes this usable under
/// turmoil too: there tokio's clock is paused and advanced by the simulation,
/// so the same code reads simulated time.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    epoch: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose epoch is now. Must be called inside a tokio runtime when
    /// time is paused (as under turmoil), so the epoch is on the same clock.
    pub fn new() -> Self {
        TokioClock { epoch: tokio::time::Instant::now() }
    }

    /// A clock with an explicit epoch, so several drivers in one runtime can
    /// share a time base.
    pub fn with_epoch(epoch: tokio::time::Instant) -> Self {
        TokioClock { epoch }
    }

    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_duration(tokio::time::Instant::now().saturating_duration_since(self.epoch))
    }
}

impl<C: Clock + ?Sized> Clock for std::rc::Rc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
