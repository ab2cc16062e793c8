//! Timers that say when they are due.
//!
//! The agent and server sleep, time out and tick through this module instead
//! of `tokio::time`. On a real network it is `tokio::time` and nothing more.
//! In the simulator every timer also *announces* its deadline to the host it
//! runs on ([`announce`]), so the simulation can jump straight to the next
//! thing any host has to do instead of stepping every host through every
//! tick: a timer the simulation was not told about would fire only when
//! something else woke its host, late. The simulator counts such late wakes.
//!
//! The announcement is a push onto a thread-local list that the simulator
//! drains after running a host; where nobody collects ([`collect`] never
//! called), announcing is one thread-local check.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

pub use tokio::time::{Instant, MissedTickBehavior, Sleep, Timeout};

thread_local! {
    /// `None`: nobody collects (a real process). `Some`: the deadlines
    /// announced since the collector last drained them.
    static ANNOUNCED: RefCell<Option<Vec<Instant>>> = const { RefCell::new(None) };
}

/// Tells whoever drives this thread's runtimes that something is due at
/// `deadline`. Extra or stale announcements cost a wake-up, never
/// correctness; a missing one makes a timer late in the simulator.
pub fn announce(deadline: Instant) {
    ANNOUNCED.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            list.push(deadline);
        }
    });
}

/// Starts collecting this thread's announcements (the simulator's driver
/// calls it once); they pile up until [`take_announced`].
pub fn collect() {
    ANNOUNCED.with(|a| {
        let mut a = a.borrow_mut();
        if a.is_none() {
            *a = Some(Vec::new());
        }
    });
}

/// The deadlines announced since the last call, into `out` (emptied first).
pub fn take_announced(out: &mut Vec<Instant>) {
    out.clear();
    ANNOUNCED.with(|a| {
        if let Some(list) = a.borrow_mut().as_mut() {
            std::mem::swap(list, out);
        }
    });
}

/// `tokio::time::sleep`, announced.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// `tokio::time::sleep_until`, announced.
pub fn sleep_until(deadline: Instant) -> Sleep {
    announce(deadline);
    tokio::time::sleep_until(deadline)
}

/// `tokio::time::timeout`, announced.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    announce(Instant::now() + duration);
    tokio::time::timeout(duration, future)
}

/// A periodic timer like `tokio::time::interval_at` with
/// [`MissedTickBehavior::Delay`] (the only behaviour the agent and server
/// use): the first tick at `start`, each later one a `period` after the
/// previous tick completed.
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
}

impl Interval {
    /// Waits for the next tick and returns when it was due.
    pub async fn tick(&mut self) -> Instant {
        let due = self.next;
        sleep_until(due).await;
        self.next = Instant::now() + self.period;
        announce(self.next);
        due
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// A [`Interval`] whose first tick is at `start`.
///
/// # Panics
/// If `period` is zero, as `tokio::time::interval_at` does.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "`period` must be non-zero");
    Interval {
        next: start,
        period,
    }
}

/// A [`Interval`] whose first tick is now.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timers_announce_their_deadlines_only_to_a_collector() {
        // Not collecting: announcing is a no-op.
        drop(sleep(Duration::from_secs(1)));
        let mut got = Vec::new();
        take_announced(&mut got);
        assert!(got.is_empty());

        collect();
        let start = Instant::now();
        drop(sleep(Duration::from_secs(2)));
        drop(timeout(Duration::from_secs(3), async {}));
        take_announced(&mut got);
        assert_eq!(
            got,
            vec![
                start + Duration::from_secs(2),
                start + Duration::from_secs(3)
            ]
        );
        take_announced(&mut got);
        assert!(got.is_empty(), "draining empties the list");
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_delays_after_a_late_tick_and_announces_the_next() {
        collect();
        let start = Instant::now();
        let mut every = interval_at(start + Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(every.tick().await, start + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(7)).await;
        let mut got = Vec::new();
        take_announced(&mut got);
        assert_eq!(got.last(), Some(&(start + Duration::from_secs(6))));
        // Late by 2 s: the tick comes at once, the next one 5 s after it.
        assert_eq!(every.tick().await, start + Duration::from_secs(6));
        assert_eq!(Instant::now(), start + Duration::from_secs(8));
        take_announced(&mut got);
        assert_eq!(got.last(), Some(&(start + Duration::from_secs(13))));
    }
}
