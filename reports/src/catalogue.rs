//! The tables of `simbench list`, `simbench check` and `simbench sweep`.

use comfy_table::{Attribute, Cell, CellAlignment, Color, ColumnConstraint, Table, Width};

use crate::style;

/// One shipped scenario, as `simbench list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    /// The name `simbench run` takes (the file name without `.toml`).
    pub name: String,
    /// The field incident it reproduces.
    pub incident: String,
    /// One line saying what it shows.
    pub summary: String,
}

/// The catalogue table: name, incident, summary.
pub fn list(rows: &[ListRow]) -> Table {
    let mut t = style::table();
    t.set_header(vec!["name", "incident", "summary"]);
    for r in rows {
        t.add_row(vec![&r.name, &r.incident, &r.summary]);
    }
    // Summaries are sentences: wrap them rather than make a page-wide table.
    if let Some(c) = t.column_mut(2) {
        c.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(SUMMARY_WIDTH)));
    }
    t
}

/// The widest a column of prose (a summary, a failure) gets; longer text wraps.
pub const SUMMARY_WIDTH: u16 = 72;

/// One scenario's line in `simbench check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    /// Scenario name.
    pub scenario: String,
    /// The seed both runs used, when the file could be read.
    pub seed: Option<u64>,
    /// Expectations that hold in the first run, and how many there are;
    /// `None` when the scenario did not run.
    pub expectations: Option<(usize, usize)>,
    /// The first run's digest, when there was one.
    pub digest: Option<String>,
    /// `PASS`, `FAIL`, `NONDETERMINISTIC`, `ERROR`, or several joined by `+`.
    pub result: String,
}

/// How many hex digits of a digest the check table shows; report.json has
/// all of them.
pub const SHORT_DIGEST: usize = 16;

/// The check table: scenario, seed, expectations held, digest, result;
/// with `colour`, the result green when it passes, red when not, yellow
/// for `ERROR`.
pub fn check(rows: &[CheckRow], colour: bool) -> Table {
    let mut t = style::table();
    t.set_header(vec!["scenario", "seed", "expectations", "digest", "result"]);
    for r in rows {
        t.add_row(vec![
            Cell::new(&r.scenario),
            Cell::new(r.seed.map_or_else(|| "-".into(), |s| s.to_string()))
                .set_alignment(CellAlignment::Right),
            Cell::new(
                r.expectations
                    .map_or_else(|| "-".into(), |(ok, all)| format!("{ok}/{all}")),
            )
            .set_alignment(CellAlignment::Right),
            Cell::new(r.digest.as_deref().map_or_else(
                || "-".into(),
                |d| d.chars().take(SHORT_DIGEST).collect::<String>(),
            )),
            result_cell(&r.result, colour),
        ]);
    }
    t
}

fn result_cell(result: &str, colour: bool) -> Cell {
    let cell = Cell::new(result);
    if !colour {
        return cell;
    }
    match result {
        "PASS" => cell.fg(Color::Green),
        "ERROR" => cell.fg(Color::Yellow),
        _ => cell.fg(Color::Red).add_attribute(Attribute::Bold),
    }
}

/// The counts `simbench check` ends with, as nextest counts tests: runs
/// that failed and scenarios that could not run are counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CheckSummary {
    /// Scenarios this machine ran (or tried to).
    pub run: usize,
    /// Met every expectation, and the two digests are the same.
    pub passed: usize,
    /// An expectation failed, a run did not finish, or the digests differ.
    pub failed: usize,
    /// Could not be run: the file does not parse or asks for something
    /// the bench cannot simulate.
    pub errors: usize,
    /// Left to other machines by `--partition`.
    pub skipped: usize,
}

impl CheckSummary {
    /// `52 scenarios run: 50 passed, 1 failed, 1 error, 3 skipped`; the
    /// non-zero failure counts in red (yellow for errors) with `colour`.
    pub fn line(&self, colour: bool) -> String {
        let paint = |text: String, code: &str, n: usize| {
            if colour && n > 0 {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text
            }
        };
        let mut s = format!(
            "{} run: {}, {}, {}",
            style::count(self.run, "scenario", "scenarios"),
            paint(format!("{} passed", self.passed), "32", self.passed),
            paint(format!("{} failed", self.failed), "1;31", self.failed),
            paint(
                style::count(self.errors, "error", "errors"),
                "33",
                self.errors
            ),
        );
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        s
    }
}

/// One failing seed of `simbench sweep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepFailure {
    /// The seed.
    pub seed: u64,
    /// Why it failed: the first failed expectation, or the run's error.
    pub reason: String,
    /// The command that replays it.
    pub replay: String,
}

/// The table of failing seeds: seed, why, and the replay command.
pub fn sweep_failures(rows: &[SweepFailure]) -> Table {
    let mut t = style::table();
    t.set_header(vec!["seed", "failed", "replay"]);
    for r in rows {
        t.add_row(vec![
            Cell::new(r.seed).set_alignment(CellAlignment::Right),
            Cell::new(&r.reason),
            Cell::new(&r.replay),
        ]);
    }
    if let Some(c) = t.column_mut(1) {
        c.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(SUMMARY_WIDTH)));
    }
    // A replay command is copied and pasted: never wrap it.
    if let Some(c) = t.column_mut(2) {
        c.set_constraint(ColumnConstraint::ContentWidth);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rows_shorten_digests_and_mark_missing_values() {
        let t = check(
            &[
                CheckRow {
                    scenario: "smoke".into(),
                    seed: Some(7),
                    expectations: Some((7, 7)),
                    digest: Some("0123456789abcdef0123456789abcdef".into()),
                    result: "PASS".into(),
                },
                CheckRow {
                    scenario: "broken".into(),
                    seed: None,
                    expectations: None,
                    digest: None,
                    result: "ERROR".into(),
                },
            ],
            false,
        )
        .to_string();
        let smoke = t.lines().find(|l| l.contains("smoke")).unwrap();
        assert!(
            smoke.contains("0123456789abcdef ") && smoke.contains("7/7"),
            "{t}"
        );
        let broken = t.lines().find(|l| l.contains("broken")).unwrap();
        assert!(broken.contains("ERROR") && broken.contains(" - "), "{t}");
    }

    #[test]
    fn summaries_count_errors_apart_and_colour_only_when_asked() {
        let s = CheckSummary {
            run: 4,
            passed: 2,
            failed: 1,
            errors: 1,
            skipped: 3,
        };
        assert_eq!(
            s.line(false),
            "4 scenarios run: 2 passed, 1 failed, 1 error, 3 skipped"
        );
        let c = s.line(true);
        assert!(c.contains("\x1b[1;31m1 failed\x1b[0m"), "{c:?}");
        assert!(c.contains("\x1b[33m1 error\x1b[0m"), "{c:?}");
        let clean = CheckSummary {
            failed: 0,
            errors: 0,
            skipped: 0,
            ..s
        };
        assert!(!clean.line(true).contains("31m"));
        assert_eq!(
            clean.line(false),
            "4 scenarios run: 2 passed, 0 failed, 0 errors"
        );
    }

    #[test]
    fn list_has_one_row_per_scenario() {
        let rows = [ListRow {
            name: "smoke".into(),
            incident: "foundation".into(),
            summary: "s".into(),
        }];
        let t = list(&rows).to_string();
        assert!(t
            .lines()
            .any(|l| l.contains("smoke") && l.contains("foundation")));
    }
}

/// One scenario's measurements in `simbench bench`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// Scenario name.
    pub scenario: String,
    /// Runs measured.
    pub runs: usize,
    /// Simulated time of one run, in seconds.
    pub sim_s: f64,
    /// The fastest run's wall time, in seconds.
    pub wall_min_s: f64,
    /// The median run's wall time, in seconds.
    pub wall_median_s: f64,
    /// Frame records of one run.
    pub frames: u64,
    /// Peak resident memory of the process during the scenario's runs, in
    /// MiB; `None` where the platform does not say.
    pub peak_rss_mib: Option<f64>,
    /// Why a run did not finish, if one did not.
    pub error: Option<String>,
}

impl BenchRow {
    /// Simulated seconds per wall second, from the fastest run.
    pub fn speed(&self) -> f64 {
        if self.wall_min_s > 0.0 {
            self.sim_s / self.wall_min_s
        } else {
            0.0
        }
    }
}

/// The bench table: scenario, runs, simulated time, fastest and median
/// wall time, speed-up, frames per wall second, peak memory.
pub fn bench(rows: &[BenchRow]) -> Table {
    let mut t = style::table();
    t.set_header(vec![
        "scenario",
        "runs",
        "sim time",
        "wall min",
        "wall median",
        "sim s / wall s",
        "frames / wall s",
        "peak RSS",
    ]);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for r in rows {
        if let Some(e) = &r.error {
            t.add_row(vec![
                Cell::new(&r.scenario),
                right(r.runs.to_string()),
                Cell::new(format!("did not finish: {e}")),
            ]);
            continue;
        }
        t.add_row(vec![
            Cell::new(&r.scenario),
            right(r.runs.to_string()),
            right(format!("{:.0} s", r.sim_s)),
            right(format!("{:.3} s", r.wall_min_s)),
            right(format!("{:.3} s", r.wall_median_s)),
            right(format!("{:.0}x", r.speed())),
            right(format!("{:.0}", r.frames as f64 / r.wall_min_s.max(1e-9))),
            right(
                r.peak_rss_mib
                    .map_or_else(|| "-".into(), |m| format!("{m:.0} MiB")),
            ),
        ]);
    }
    t
}
