//! Simulated time for [`proto::env::Clock`].

use std::time::{Duration, SystemTime};

use proto::env::Clock;

/// A component's clock inside a turmoil simulation.
///
/// `now_us` is turmoil's simulated time since the start of the run; calendar
/// time is `epoch` plus that. Give it the same epoch as
/// `turmoil::Builder::epoch` so certificate validity and turmoil agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimClock {
    /// Calendar time at the start of the run.
    pub epoch: SystemTime,
}

impl SimClock {
    /// A clock whose run starts at `epoch`.
    pub fn new(epoch: SystemTime) -> Self {
        SimClock { epoch }
    }

    fn elapsed(&self) -> Duration {
        // Outside a host (the harness between steps, a unit test) there is no
        // simulated "now"; the start of the run is the honest answer, and it
        // keeps the wall clock out.
        turmoil::sim_elapsed().unwrap_or(Duration::ZERO)
    }
}

impl Clock for SimClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn system_time(&self) -> SystemTime {
        self.epoch + self.elapsed()
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
}
