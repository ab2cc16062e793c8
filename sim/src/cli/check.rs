//! `simbench check`: the catalogue as a regression suite. Every scenario
//! runs twice with its own seed; the first run must meet its expectations
//! and both runs must give the same digest.

use std::io::Write;
use std::time::{Duration, Instant};

use format::scenario::Scenario;
use reports::catalogue::CheckRow;
use reports::json::{CheckDocument, CheckScenario, ExpectationResult, Header, ScenarioFile};
use reports::junit::{self, CaseOutcome, TestCase, TestSuite};
use reports::style::count;

use super::args::OutputFormat;
use super::pool::{run_all, Progress, Status};
use super::run::{capture_sha256, run_once, save};
use super::settings::CheckSettings;
use super::{replay_command, source, CliError, Exit};

/// What one run of a scenario gave: its digest and failed expectations,
/// or why it did not finish.
#[derive(Debug, Clone)]
struct RunResult {
    outcome: Result<(String, Vec<String>, usize), String>,
    /// Every expectation with what the run observed (empty when it did not finish).
    expectations: Vec<ExpectationResult>,
    /// SHA-256 of the run's capture, with `--artifacts capture`.
    capture: Option<String>,
    wall: Duration,
}

/// One scenario of the catalogue, ready to run or already refused.
struct Entry {
    name: String,
    file: Option<ScenarioFile>,
    scenario: Result<Scenario, (&'static str, String)>,
}

pub(super) fn check(
    s: &CheckSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let started = Instant::now();
    let files = source::catalogue()?;
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let filtered: Vec<_> = files
        .iter()
        .filter(|f| s.filter.as_deref().is_none_or(|t| f.name.contains(t)))
        .collect();
    if filtered.is_empty() {
        let filter = s.filter.as_deref().unwrap_or("");
        return Err(CliError::BadInput(format!(
            "no shipped scenario matches --filter {filter:?} (shipped: {}); the filter keeps names that contain it",
            names.join(", ")
        )));
    }
    // This machine's share, by position in the sorted, filtered list or by
    // a hash of the name (nextest's `--partition`).
    let selected: Vec<_> = filtered
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            s.partition
                .is_none_or(|p| p.selects_named(*i as u64, &f.name))
        })
        .map(|(_, f)| *f)
        .collect();
    let skipped = filtered.len() - selected.len();
    if let Some(p) = &s.partition {
        writeln!(
            out,
            "partition {p} keeps {} of {}",
            count(selected.len(), "scenario", "scenarios"),
            filtered.len()
        )?;
        if selected.is_empty() {
            writeln!(out, "this partition holds no scenario; nothing to run")?;
            return Ok(Exit::Success);
        }
    }
    if let Some(note) = s.jobs.note() {
        writeln!(err, "{note}")?;
    }
    let entries: Vec<Entry> = selected
        .iter()
        .map(|f| {
            let loaded = source::load(&source::ScenarioRef::Name(f.name.clone()));
            let file = loaded.as_ref().ok().map(|l| l.file.clone());
            let scenario = loaded
                .map(|l| l.scenario)
                .map_err(|e| ("invalid-scenario", e.to_string()))
                .and_then(|sc| match crate::scenario::resolve(&sc, None) {
                    Ok(_) => Ok(sc),
                    Err(u) => Err(("unsupported", u.to_string())),
                });
            Entry {
                name: f.name.clone(),
                file,
                scenario,
            }
        })
        .collect();

    // Two runs of every runnable scenario, all in one pool.
    let work: Vec<(usize, &Scenario, u8)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.scenario.as_ref().ok().map(|sc| (i, sc)))
        .flat_map(|(i, sc)| [(i, sc, 1), (i, sc, 2)])
        .collect();
    let mut progress = Progress::new("check", work.len());
    let results = run_all(
        &work,
        s.jobs.count,
        |n, r: &Result<RunResult, String>| {
            let (i, _, run) = work[n];
            let (status, wall) = match r {
                Ok(RunResult {
                    outcome: Ok((_, failures, _)),
                    wall,
                    ..
                }) if failures.is_empty() => (Status::Pass, *wall),
                Ok(r) => (Status::Fail, r.wall),
                Err(_) => (Status::Error, Duration::ZERO),
            };
            let what = format!("{} (run {run} of 2)", entries[i].name);
            progress.finished(status, &what, wall);
        },
        |(i, sc, run)| run_twice_half(sc, &entries[*i], *run, s),
    );
    progress.finish();
    let mut by_entry: Vec<Vec<RunResult>> = entries.iter().map(|_| Vec::new()).collect();
    for ((i, _, _), r) in work.iter().zip(results) {
        by_entry[*i].push(r.unwrap_or_else(|panic| RunResult {
            outcome: Err(panic),
            expectations: Vec::new(),
            capture: None,
            wall: Duration::ZERO,
        }));
    }

    let mut rows = Vec::new();
    let mut documents = Vec::new();
    let mut cases = Vec::new();
    let mut details = String::new();
    let (mut failed, mut errors) = (0, 0);
    for (e, runs) in entries.iter().zip(&by_entry) {
        let (row, mut new_cases) = judge(e, runs);
        documents.push(document_entry(e, runs, &row, &new_cases));
        if row.result == "ERROR" {
            errors += 1;
        } else if row.result != "PASS" {
            failed += 1;
        }
        if row.result != "PASS" {
            details.push_str(&format!("{}: {}\n", e.name, row.result));
            for c in &new_cases {
                match &c.outcome {
                    CaseOutcome::Failure { detail, .. } | CaseOutcome::Error { detail, .. } => {
                        for line in detail.lines() {
                            details.push_str(&format!("  {line}\n"));
                        }
                    }
                    _ => {}
                }
            }
            if let Some(seed) = row.seed {
                details.push_str(&format!("  replay: {}\n", replay_command(&e.name, seed)));
            }
        }
        rows.push(row);
        cases.append(&mut new_cases);
    }

    let summary = reports::catalogue::CheckSummary {
        run: entries.len(),
        passed: entries.len() - failed - errors,
        failed,
        errors,
        skipped,
    };
    let wall = started.elapsed();
    // In JSON mode stdout is the document alone; the notes go to stderr.
    let notes: &mut dyn Write = match s.format {
        OutputFormat::Table => {
            let colour = super::colour_stdout();
            writeln!(out, "{}", reports::catalogue::check(&rows, colour))?;
            if !details.is_empty() {
                writeln!(out, "\n{details}")?;
            }
            writeln!(
                out,
                "{} (each run twice with its own seed; digests compared)",
                summary.line(colour)
            )?;
            writeln!(out, "wall time: {}", reports::style::wall_time(wall))?;
            out
        }
        OutputFormat::Json => {
            let doc = CheckDocument {
                header: Header::new("check", failed + errors == 0),
                partition: s.partition.map(|p| p.to_string()),
                summary,
                scenarios: documents,
            };
            out.write_all(reports::json::pretty(&doc).as_bytes())?;
            err
        }
    };
    if let Some(path) = &s.junit {
        let report = junit::Report {
            name: "simbench".into(),
            suites: vec![TestSuite {
                name: "simbench check".into(),
                cases,
                time: Some(wall),
            }],
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| write_error(path, e))?;
        }
        std::fs::write(path, junit::write(&report)).map_err(|e| write_error(path, e))?;
        writeln!(notes, "JUnit XML: {}", path.display())?;
    }
    Ok(if failed + errors > 0 {
        Exit::Failed
    } else {
        Exit::Success
    })
}

fn write_error(path: &std::path::Path, source: std::io::Error) -> CliError {
    CliError::Write {
        path: path.display().to_string(),
        flag: "--junit FILE",
        source,
    }
}

/// One of the two runs: digest, failed expectations and their count. With
/// `--artifacts`, the first run writes its files, and the capture's hash
/// joins the determinism comparison when the capture is asked for.
fn run_twice_half(sc: &Scenario, e: &Entry, run: u8, s: &CheckSettings) -> RunResult {
    let started = Instant::now();
    let mut expectations = Vec::new();
    let mut capture = None;
    let outcome = match run_once(sc, None, s.artifacts.run_options()) {
        Ok(Ok(f)) => {
            expectations = ExpectationResult::all(&f.results);
            capture = capture_sha256(&f.output);
            if let (1, Some(file)) = (run, &e.file) {
                if let Err(err) = save(&s.out, &f, sc, sc.seed, file, &e.name, s.artifacts) {
                    return RunResult {
                        outcome: Err(err.to_string()),
                        expectations,
                        capture,
                        wall: started.elapsed(),
                    };
                }
            }
            Ok((
                f.output.digest.clone(),
                f.failures().into_iter().map(String::from).collect(),
                f.results.len(),
            ))
        }
        Ok(Err(e)) => Err(format!("the run did not finish: {e}")),
        Err(u) => Err(u.to_string()),
    };
    RunResult {
        outcome,
        expectations,
        capture,
        wall: started.elapsed(),
    }
}

/// The scenario's entry in `check --format json`.
fn document_entry(
    e: &Entry,
    runs: &[RunResult],
    row: &CheckRow,
    cases: &[TestCase],
) -> CheckScenario {
    let error = cases.iter().find_map(|c| match &c.outcome {
        CaseOutcome::Failure { detail, .. } | CaseOutcome::Error { detail, .. } => {
            Some(detail.clone())
        }
        _ => None,
    });
    CheckScenario {
        scenario: e.name.clone(),
        result: row.result.clone(),
        passed: row.result == "PASS",
        scenario_file: e.file.clone(),
        seed: row.seed,
        digests: runs
            .iter()
            .map(|r| r.outcome.as_ref().ok().map(|(d, _, _)| d.clone()))
            .collect(),
        expectations: runs
            .first()
            .map(|r| r.expectations.clone())
            .unwrap_or_default(),
        error,
        replay: row.seed.map(|seed| replay_command(&e.name, seed)),
    }
}

/// The table row and the two JUnit cases (`expectations`, `determinism`)
/// of one scenario.
fn judge(e: &Entry, runs: &[RunResult]) -> (CheckRow, Vec<TestCase>) {
    let case = |name: &str, outcome, time, system_out| TestCase {
        classname: e.name.clone(),
        name: name.into(),
        time,
        outcome,
        system_out,
    };
    let sc = match &e.scenario {
        Ok(sc) => sc,
        Err((kind, message)) => {
            let error = CaseOutcome::Error {
                kind: kind.to_string(),
                message: message.lines().next().unwrap_or_default().to_string(),
                detail: message.clone(),
            };
            let row = CheckRow {
                scenario: e.name.clone(),
                seed: None,
                expectations: None,
                digest: None,
                result: "ERROR".into(),
            };
            // One error per scenario: the determinism case was never tried.
            let skipped = CaseOutcome::Skipped {
                message: "not run: the scenario could not be loaded".into(),
            };
            // The same <system-out> as a case that ran: what was tried and why not.
            let system_out = format!(
                "scenario file: {}\nnot run: {kind}\n{message}",
                e.file
                    .as_ref()
                    .map_or_else(|| format!("scenarios/{}.toml", e.name), |f| f.path.clone())
            );
            return (
                row,
                vec![
                    case("expectations", error, None, Some(system_out.clone())),
                    case("determinism", skipped, None, Some(system_out)),
                ],
            );
        }
    };
    let seed = sc.seed;
    let replay = replay_command(&e.name, seed);
    let (first, second) = (&runs[0], &runs[1]);
    let digest_of = |r: &RunResult| r.outcome.as_ref().ok().map(|(d, _, _)| d.clone());
    let system_out = format!(
        "seed: {seed}\ndigest run 1: {}\ndigest run 2: {}\nreplay: {replay}",
        digest_of(first).unwrap_or_else(|| "-".into()),
        digest_of(second).unwrap_or_else(|| "-".into()),
    );
    let mut results = Vec::new();
    let (expect_outcome, expectations) = match &first.outcome {
        Ok((_, failures, total)) if failures.is_empty() => {
            (CaseOutcome::Passed, Some((*total, *total)))
        }
        Ok((_, failures, total)) => {
            results.push("FAIL");
            (
                CaseOutcome::Failure {
                    kind: "expectation".into(),
                    message: format!(
                        "{} of {total} failed",
                        count(failures.len(), "expectation", "expectations")
                    ),
                    detail: failures.join("\n"),
                },
                Some((total - failures.len(), *total)),
            )
        }
        Err(why) => {
            results.push("FAIL");
            (
                CaseOutcome::Failure {
                    kind: "run-failed".into(),
                    message: why.lines().next().unwrap_or_default().to_string(),
                    detail: why.clone(),
                },
                None,
            )
        }
    };
    let determinism = match (&first.outcome, &second.outcome) {
        (Ok((a, _, _)), Ok((b, _, _))) if a == b && first.capture == second.capture => {
            CaseOutcome::Passed
        }
        (Err(a), Err(b)) if a == b => CaseOutcome::Passed,
        _ => {
            results.push("NONDETERMINISTIC");
            let show = |r: &RunResult| match (&r.outcome, &r.capture) {
                (Ok((d, _, _)), Some(c)) => format!("digest {d}, capture sha256 {c}"),
                (Ok((d, _, _)), None) => format!("digest {d}"),
                (Err(why), _) => why.clone(),
            };
            CaseOutcome::Failure {
                kind: "nondeterministic".into(),
                message: format!("two runs with seed {seed} differ"),
                detail: format!(
                    "nondeterministic: two runs with seed {seed} differ\nrun 1: {}\nrun 2: {}",
                    show(first),
                    show(second)
                ),
            }
        }
    };
    let row = CheckRow {
        scenario: e.name.clone(),
        seed: Some(seed),
        expectations,
        digest: digest_of(first),
        result: if results.is_empty() {
            "PASS".into()
        } else {
            results.join("+")
        },
    };
    let cases = vec![
        case(
            "expectations",
            expect_outcome,
            Some(first.wall),
            Some(system_out.clone()),
        ),
        case(
            "determinism",
            determinism,
            Some(second.wall),
            Some(system_out),
        ),
    ];
    (row, cases)
}
