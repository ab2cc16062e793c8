//! A request counter that also keeps the busiest minute: what an operator
//! reads off a storm against the enrollment API, in constant memory.

/// Seconds in the window the peak is taken over.
const WINDOW_S: usize = 60;

/// Requests in all, and the most in any 60 s window of whole seconds.
///
/// One bucket per second of the last minute, so a storm of any size costs
/// the same 60 counters; the peak is therefore over windows that start on a
/// whole second of the server's clock.
#[derive(Debug, Clone)]
pub struct RequestRate {
    total: u64,
    /// Requests in each of the last 60 seconds, by second modulo 60.
    buckets: [u64; WINDOW_S],
    /// The second the newest bucket counts.
    second: Option<u64>,
    /// Requests in the window ending at `second`.
    in_window: u64,
    peak: u64,
}

impl Default for RequestRate {
    fn default() -> Self {
        RequestRate {
            total: 0,
            buckets: [0; WINDOW_S],
            second: None,
            in_window: 0,
            peak: 0,
        }
    }
}

impl RequestRate {
    /// Counts a request at `now_us` (a clock that does not go back; an
    /// earlier time counts in the newest second).
    pub fn note(&mut self, now_us: u64) {
        let s = now_us / 1_000_000;
        match self.second {
            Some(cur) if s <= cur => {}
            Some(cur) => {
                // The seconds between `cur` and `s` leave the window.
                let gone = (s - cur).min(WINDOW_S as u64);
                for k in 1..=gone {
                    let b = &mut self.buckets[((cur + k) % WINDOW_S as u64) as usize];
                    self.in_window -= *b;
                    *b = 0;
                }
                self.second = Some(s);
            }
            None => self.second = Some(s),
        }
        let cur = self.second.expect("set above");
        self.buckets[(cur % WINDOW_S as u64) as usize] += 1;
        self.in_window += 1;
        self.total += 1;
        self.peak = self.peak.max(self.in_window);
    }

    /// Requests counted in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The most requests in any window of 60 whole seconds.
    pub fn peak_per_minute(&self) -> u64 {
        self.peak
    }
}

#[cfg(test)]
mod tests {
    use super::RequestRate;

    const S: u64 = 1_000_000;

    fn rate(times_s: &[f64]) -> RequestRate {
        let mut r = RequestRate::default();
        for t in times_s {
            r.note((t * S as f64) as u64);
        }
        r
    }

    #[test]
    fn the_peak_is_the_busiest_window_of_sixty_seconds() {
        assert_eq!(rate(&[]).peak_per_minute(), 0);
        assert_eq!(rate(&[5.0]).peak_per_minute(), 1);
        // 0 s and 59.9 s share a window; 60 s starts a window without 0 s.
        assert_eq!(rate(&[0.0, 30.0, 59.9, 60.0]).peak_per_minute(), 3);
        assert_eq!(rate(&[0.0, 61.0, 62.0, 63.0, 200.0]).peak_per_minute(), 3);
        // A long quiet gap empties the window.
        let r = rate(&[0.0, 1.0, 2.0, 1000.0]);
        assert_eq!((r.total(), r.peak_per_minute()), (4, 3));
    }

    #[test]
    fn a_storm_counts_every_request_in_constant_memory() {
        let mut r = RequestRate::default();
        // 10 a second for 10 minutes.
        for i in 0..6_000u64 {
            r.note(i * S / 10);
        }
        assert_eq!(r.total(), 6_000);
        assert_eq!(r.peak_per_minute(), 600);
    }
}
