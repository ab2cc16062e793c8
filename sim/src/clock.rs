//! Simulated time for [`proto::env::Clock`].

use std::time::{Duration, SystemTime};

use proto::env::Clock;

/// A component's clock inside a simulated world.
///
/// `now_us` is the world's simulated time since the start of the run; calendar
/// time is `epoch` plus that. Give it the same epoch as
/// the run's certificates so their validity follows simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimClock {
    /// Calendar time at the start of the run.
    pub epoch: SystemTime,
    /// How far calendar time is off (`clock-skew`): behind when true.
    skew: (bool, Duration),
}

impl SimClock {
    /// A clock whose run starts at `epoch`.
    pub fn new(epoch: SystemTime) -> Self {
        SimClock {
            epoch,
            skew: (false, Duration::ZERO),
        }
    }

    /// The same clock with its calendar time `by` behind (or ahead). The
    /// time since the start of the run (timers, timeouts) is not skewed: a
    /// machine's wrong date does not change how fast its seconds go.
    pub fn skewed(&self, behind: bool, by: Duration) -> Self {
        SimClock {
            epoch: self.epoch,
            skew: (behind, by),
        }
    }

    fn elapsed(&self) -> Duration {
        // Outside a host (the harness between steps, a unit test) there is no
        // simulated "now"; the start of the run is the honest answer, and it
        // keeps the wall clock out.
        crate::world::elapsed().unwrap_or(Duration::ZERO)
    }
}

impl Clock for SimClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn system_time(&self) -> SystemTime {
        let t = self.epoch + self.elapsed();
        match self.skew {
            (true, by) => t - by,
            (false, by) => t + by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_simulation_time_stands_at_the_epoch() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let clock = SimClock::new(epoch);
        assert_eq!(clock.now_us(), 0);
        assert_eq!(clock.system_time(), epoch);
    }

    #[test]
    fn a_skewed_clock_moves_calendar_time_only() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let day = Duration::from_secs(86_400);
        let behind = SimClock::new(epoch).skewed(true, day);
        assert_eq!(behind.system_time(), epoch - day);
        assert_eq!(behind.now_us(), 0);
        assert_eq!(
            SimClock::new(epoch).skewed(false, day).system_time(),
            epoch + day
        );
    }
}
