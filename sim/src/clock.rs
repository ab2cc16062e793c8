//! Simulated time for [`proto::env::Clock`].

use std::time::{Duration, SystemTime};

use proto::env::Clock;

/// A component's clock inside a simulated world.
///
/// Calendar time is `epoch` plus the world's simulated time since the start of
/// the run; the logs are stamped with that run time too. `now_us`, the
/// process's monotonic clock, counts from the process's start
/// ([`SimClock::booted`]): a restarted server's monotonic clock starts again
/// at 0 while its calendar goes on, as on a real machine. Give it the same
/// epoch as the run's certificates so their validity follows simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimClock {
    /// Calendar time at the start of the run.
    pub epoch: SystemTime,
    /// How far calendar time is off (`clock-skew`): behind when true.
    skew: (bool, Duration),
    /// When (run time) the process reading this clock started.
    process_start: Duration,
}

impl SimClock {
    /// A clock whose run starts at `epoch`.
    pub fn new(epoch: SystemTime) -> Self {
        SimClock {
            epoch,
            skew: (false, Duration::ZERO),
            process_start: Duration::ZERO,
        }
    }

    /// The clock of a process starting now (a host's boot or restart): its
    /// `now_us` counts from now; calendar and log time go on.
    pub fn booted(&self) -> Self {
        self.started_at(self.elapsed())
    }

    /// The clock of a process that started at run time `start`.
    pub fn started_at(&self, start: Duration) -> Self {
        SimClock {
            process_start: start,
            ..*self
        }
    }

    /// The same clock with its calendar time `by` behind (or ahead). The
    /// time since the start of the run (timers, timeouts) is not skewed: a
    /// machine's wrong date does not change how fast its seconds go.
    pub fn skewed(&self, behind: bool, by: Duration) -> Self {
        SimClock {
            skew: (behind, by),
            ..*self
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
        let since_start = self.elapsed().saturating_sub(self.process_start);
        u64::try_from(since_start.as_micros()).unwrap_or(u64::MAX)
    }

    fn log_us(&self) -> u64 {
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

    #[test]
    fn a_restarted_process_counts_its_monotonic_time_from_its_start() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let mut sim = crate::world::World::new(0);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = seen.clone();
        sim.client("h", async move {
            proto::time::sleep(Duration::from_secs(40)).await;
            // A process that started 10 s into the run.
            let c = SimClock::new(epoch).started_at(Duration::from_secs(10));
            out.lock()
                .unwrap()
                .push((c.now_us(), c.log_us(), c.unix_us()));
            let b = SimClock::new(epoch).booted();
            out.lock()
                .unwrap()
                .push((b.now_us(), b.log_us(), b.unix_us()));
            Ok(())
        });
        sim.run(Duration::from_secs(60)).unwrap();
        let unix = 1_767_225_600_000_000 + 40_000_000;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0], (30_000_000, 40_000_000, unix));
        assert_eq!(seen[1], (0, 40_000_000, unix));
    }
}
