//! Sans-IO timing brains of the agent: reconnect backoff and the inbound
//! watchdog. Inputs carry `now_us`; outputs are delays and deadlines.

/// Bounded exponential backoff with jitter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub base_ms: u64,
    /// Largest delay.
    pub cap_ms: u64,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base_ms`, never above `cap_ms`.
    pub fn new(base_ms: u64, cap_ms: u64) -> Self {
        Backoff {
            base_ms,
            cap_ms,
            failures: 0,
        }
    }

    /// A failure happened: the delay before the next try. `jitter` in
    /// `0..=u32::MAX` spreads it over the upper half of the step, so a fleet
    /// that failed together does not retry together.
    pub fn handle_failure(&mut self, jitter: u32) -> u64 {
        let step = self
            .base_ms
            .saturating_mul(1u64 << self.failures.min(20))
            .min(self.cap_ms);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + (half as u128 * jitter as u128 / u32::MAX as u128) as u64
    }

    /// A success: start over.
    pub fn handle_success(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Reconnects when nothing arrived for `timeout_us`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watchdog {
    timeout_us: u64,
    last_inbound_us: u64,
}

impl Watchdog {
    /// A watchdog armed at `now_us`.
    pub fn new(timeout_us: u64, now_us: u64) -> Self {
        Watchdog {
            timeout_us,
            last_inbound_us: now_us,
        }
    }

    /// Something arrived.
    pub fn handle_inbound(&mut self, now_us: u64) {
        self.last_inbound_us = now_us;
    }

    /// A new timeout (from `ConfigUpdate`).
    pub fn set_timeout(&mut self, timeout_us: u64) {
        self.timeout_us = timeout_us;
    }

    /// When the connection is declared dead if nothing arrives first.
    pub fn poll_deadline(&self) -> u64 {
        self.last_inbound_us + self.timeout_us
    }

    /// Whether the connection is dead at `now_us`.
    pub fn expired(&self, now_us: u64) -> bool {
        now_us >= self.poll_deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(1_000, 30_000);
        let full: Vec<u64> = (0..7).map(|_| b.handle_failure(u32::MAX)).collect();
        assert_eq!(full, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        b.handle_success();
        assert_eq!(b.handle_failure(0), 500, "no jitter = lower half bound");
    }

    #[test]
    fn watchdog_expires_ninety_seconds_after_the_last_inbound_frame() {
        let mut w = Watchdog::new(90_000_000, 0);
        w.handle_inbound(30_000_000);
        assert!(!w.expired(119_999_999));
        assert!(w.expired(120_000_000));
        assert_eq!(w.poll_deadline(), 120_000_000);
    }
}
