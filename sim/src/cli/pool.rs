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
use std::time::Duration;

/// Stack for a run's thread: the same as a main thread gets, since the
/// simulated hosts' futures nest deeply in debug builds.
const RUN_STACK_BYTES: usize = 8 << 20;

/// Runs `work` on every item, `jobs` at a time, calling `done` with the
/// item's index on the calling thread as each finishes. A run that panics gives `Err` with the
/// panic message instead of taking the others down.
pub(super) fn run_all<T, R>(
    items: &[T],
    jobs: NonZeroUsize,
    mut done: impl FnMut(usize, &Result<R, String>),
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
            done(i, &r);
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

/// How one finished run ended, as the progress output shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// It met its expectations.
    Pass,
    /// An expectation failed, or two runs differ.
    Fail,
    /// It could not run (panicked, or the harness refused it).
    Error,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

/// Progress on stderr. On a terminal, one line redrawn in place:
/// `sweep smoke [####----] 12/50 1 failed`. Otherwise (a CI log, a pipe)
/// one line per finished run, as nextest prints them:
/// `    PASS [ 12/50] [  0.84s] smoke (run 1 of 2)`, so a long job shows
/// that it is alive and which run failed before the summary.
pub(super) struct Progress {
    label: String,
    total: usize,
    done: usize,
    failed: usize,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bar,
    Lines,
}

impl Progress {
    /// Progress for `total` runs.
    pub(super) fn new(label: impl Into<String>, total: usize) -> Self {
        let p = Progress {
            label: label.into(),
            total,
            done: 0,
            failed: 0,
            mode: if std::io::stderr().is_terminal() {
                Mode::Bar
            } else {
                Mode::Lines
            },
        };
        p.draw();
        p
    }

    /// Counts one finished run of the label's work that failed or not.
    pub(super) fn tick(&mut self, failed: bool) {
        let status = if failed { Status::Fail } else { Status::Pass };
        let what = self.label.clone();
        self.record(status, &what, None);
    }

    /// Counts one finished run, `what` (a scenario and run, a seed) that
    /// took `wall`.
    pub(super) fn finished(&mut self, status: Status, what: &str, wall: Duration) {
        self.record(status, what, Some(wall));
    }

    fn record(&mut self, status: Status, what: &str, wall: Option<Duration>) {
        self.done += 1;
        self.failed += usize::from(status != Status::Pass);
        match self.mode {
            Mode::Bar => self.draw(),
            Mode::Lines => {
                let line = progress_line(status, self.done, self.total, wall, what);
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{line}");
            }
        }
    }

    fn draw(&self) {
        if self.mode != Mode::Bar {
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

    /// Erases the bar.
    pub(super) fn finish(&self) {
        if self.mode == Mode::Bar {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K");
            let _ = e.flush();
        }
    }
}

/// `    PASS [  3/104] [  0.84s] smoke (run 1 of 2)`: the status right-aligned
/// in 9 columns, the count padded to the total's width, the wall time.
fn progress_line(
    status: Status,
    done: usize,
    total: usize,
    wall: Option<Duration>,
    what: &str,
) -> String {
    let width = total.to_string().len();
    let wall = wall.map_or_else(String::new, |w| format!(" [{:>7.2}s]", w.as_secs_f64()));
    format!("{:>9} [{done:>width$}/{total}]{wall} {what}", status.word())
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
            |_, _| seen += 1,
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
        assert!(run_all(&[] as &[u8], jobs, |_, _| {}, |_| 0).is_empty());
    }

    #[test]
    fn progress_lines_read_like_nextests() {
        assert_eq!(
            progress_line(
                Status::Pass,
                3,
                104,
                Some(Duration::from_millis(840)),
                "smoke (run 1 of 2)"
            ),
            "     PASS [  3/104] [   0.84s] smoke (run 1 of 2)"
        );
        assert_eq!(
            progress_line(Status::Error, 10, 10, Some(Duration::ZERO), "broken"),
            "    ERROR [10/10] [   0.00s] broken"
        );
        assert_eq!(
            progress_line(Status::Fail, 1, 3, None, "bench"),
            "     FAIL [1/3] bench"
        );
    }
}
