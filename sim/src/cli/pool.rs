//! Many runs at once, and the progress line.
//!
//! Each run is a single-threaded simulated world that owns everything it
//! touches, so J of them run on J scoped threads. The threads share only an
//! atomic index into the (read-only) work list and the channel their results
//! come back on; results are put back in work-list order, so the output does
//! not depend on which run finished first.

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Stack for a run's thread: the same as a main thread gets, since the
/// simulated hosts' futures nest deeply in debug builds.
const RUN_STACK_BYTES: usize = 8 << 20;

/// Runs `work` on every item, `jobs` at a time, calling `done` on the
/// calling thread as each finishes. A run that panics gives `Err` with the
/// panic message instead of taking the others down.
pub(super) fn run_all<T, R>(
    items: &[T],
    jobs: NonZeroUsize,
    mut done: impl FnMut(&Result<R, String>),
    work: impl Fn(&T) -> R + Sync,
) -> Vec<Result<R, String>>
where
    T: Sync,
    R: Send,
{
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<R, String>>> = items.iter().map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<(usize, Result<R, String>)>();
    std::thread::scope(|scope| {
        for n in 0..jobs.get().min(items.len()) {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            std::thread::Builder::new()
                .name(format!("simbench-run-{n}"))
                .stack_size(RUN_STACK_BYTES)
                .spawn_scoped(scope, move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = catch_unwind(AssertUnwindSafe(|| work(item))).map_err(panic_message);
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                })
                .expect("the operating system refused a thread for a simulation run");
        }
        drop(tx);
        for (i, r) in rx {
            done(&r);
            results[i] = Some(r);
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the run's thread ended without a result".into())))
        .collect()
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("the run panicked: {what}")
}

/// One line on stderr, redrawn in place, only when stderr is a terminal:
/// `sweep smoke [12/50] 1 failed`. Piped or captured stderr never sees it.
pub(super) struct Progress {
    label: String,
    total: usize,
    done: usize,
    failed: usize,
    enabled: bool,
}

impl Progress {
    /// A progress line for `total` runs.
    pub(super) fn new(label: impl Into<String>, total: usize) -> Self {
        let p = Progress {
            label: label.into(),
            total,
            done: 0,
            failed: 0,
            enabled: std::io::stderr().is_terminal(),
        };
        p.draw();
        p
    }

    /// Counts one finished run.
    pub(super) fn tick(&mut self, failed: bool) {
        self.done += 1;
        self.failed += usize::from(failed);
        self.draw();
    }

    fn draw(&self) {
        if !self.enabled {
            return;
        }
        let width = 24;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(width);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[2K{} [{bar}] {}/{} {} failed",
            self.label, self.done, self.total, self.failed
        );
        let _ = e.flush();
    }

    /// Erases the line.
    pub(super) fn finish(&self) {
        if self.enabled {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_work_order_and_panics_are_contained() {
        let items: Vec<u64> = (0..20).collect();
        let mut seen = 0;
        let jobs = NonZeroUsize::new(3).unwrap();
        let out = run_all(
            &items,
            jobs,
            |_| seen += 1,
            |&n| {
                if n == 5 {
                    panic!("five");
                }
                n * 2
            },
        );
        assert_eq!(seen, 20);
        for (i, r) in out.iter().enumerate() {
            if i == 5 {
                assert_eq!(r.as_ref().unwrap_err(), "the run panicked: five");
            } else {
                assert_eq!(*r.as_ref().unwrap(), i as u64 * 2);
            }
        }
        assert!(run_all(&[] as &[u8], jobs, |_| {}, |_| 0).is_empty());
    }
}
