//! `simbench run`: one scenario, its files, its report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use format::scenario::Scenario;
use format::{Expect, ExpectResult};
use reports::run::RunView;
use reports::timeline::TimelineOptions;

use super::args::OutputFormat;
use super::settings::RunSettings;
use super::{replay_command, source, CliError, Exit};
use crate::run::{RunError, RunOptions, RunOutput};
use crate::scenario::{evaluate, resolve, Unsupported};

/// A run that went to its end, judged.
pub(super) struct Finished {
    /// What the harness produced.
    pub output: RunOutput,
    /// Every expectation with its verdict.
    pub results: Vec<(Expect, ExpectResult)>,
    /// How long it took on this machine.
    pub wall: Duration,
}

impl Finished {
    /// The failed expectations' messages, in file order.
    pub fn failures(&self) -> Vec<&str> {
        self.results
            .iter()
            .filter(|(_, r)| !r.passed)
            .map(|(_, r)| r.message.as_str())
            .collect()
    }
}

/// Resolves and runs `sc` with `seed` (or its own), and judges the result.
/// `Err` when the bench cannot simulate it; `Ok(Err)` when the run itself
/// failed (reproducible with the same seed).
pub(super) fn run_once(
    sc: &Scenario,
    seed: Option<u64>,
    options: RunOptions,
) -> Result<Result<Finished, RunError>, Unsupported> {
    let spec = resolve(sc, seed)?;
    let started = Instant::now();
    Ok(crate::run::run_with(&spec, options).map(|output| {
        let wall = started.elapsed();
        let results = evaluate(sc, &output.outcome);
        Finished {
            output,
            results,
            wall,
        }
    }))
}

/// The files a run writes, in the order they are written.
pub(super) const OUTPUT_FILES: [&str; 5] = [
    "report.json",
    "frames.jsonl",
    "events.jsonl",
    "report.html",
    "capture.pcap",
];

/// Writes report.json (pretty), frames.jsonl, events.jsonl, report.html
/// (the report of `view`) and capture.pcap to `dir`, creating it.
fn write_outputs(
    dir: &Path,
    output: &RunOutput,
    report: &str,
    view: &RunView,
) -> Result<(), CliError> {
    let fail = |path: &Path, source| CliError::Write {
        path: path.display().to_string(),
        flag: "--out DIR",
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    let contents = [
        report.as_bytes().to_vec(),
        output.frames_jsonl().into_bytes(),
        output.events_jsonl().into_bytes(),
        reports::html::render(view, &timeline_options()).into_bytes(),
        output.pcap.clone().unwrap_or_default(),
    ];
    for (name, text) in OUTPUT_FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| fail(&path, e))?;
    }
    Ok(())
}

/// report.json: the outcome document with the run's verdict under
/// `verdict` ([`reports::json::RunVerdict`]), pretty, ending in a newline.
fn report_json(
    finished: &Finished,
    sc: &Scenario,
    seed: u64,
    file: &reports::json::ScenarioFile,
    replay: &str,
) -> String {
    use reports::json::{ExpectationResult, RunVerdict};
    let verdict = RunVerdict::new(
        &sc.name,
        seed,
        file.clone(),
        &finished.output.digest,
        ExpectationResult::all(&finished.results),
        replay.to_string(),
    );
    reports::json::pretty(&reports::json::report_json(&finished.output.doc, &verdict))
}

/// The scenario's `name` as one directory name inside `out/`: letters,
/// digits, `-`, `_` and `.` kept, anything else (`/`, `\\`, control
/// characters) `_`, no leading `.`, so `../..` or an absolute name cannot
/// make `run` write outside `out/`.
fn dir_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "scenario".into()
    } else {
        safe.chars().take(100).collect()
    }
}

/// How much of the frame log `simbench run` shows.
pub(super) fn timeline_options() -> TimelineOptions {
    TimelineOptions::default()
}

pub(super) fn run(
    s: &RunSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let loaded = source::load(&s.scenario)?;
    for note in &loaded.notes {
        writeln!(err, "{note}")?;
    }
    let sc = &loaded.scenario;
    let seed = s.seed.unwrap_or(sc.seed);
    let replay = replay_command(&loaded.shown, seed);
    let finished = match run_once(sc, Some(seed), RunOptions { capture: true })? {
        Ok(f) => f,
        Err(e) => {
            writeln!(
                err,
                "error: scenario `{}` with seed {seed} did not run to its end: {e}",
                sc.name
            )?;
            writeln!(err, "replay: {replay}")?;
            return Ok(Exit::Failed);
        }
    };
    let dir = s
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}-{seed}", dir_name(&sc.name))));
    let view = RunView {
        scenario: sc,
        outcome: &finished.output.outcome,
        frames: &finished.output.frames,
        expectations: &finished.results,
        wall_time: Some(finished.wall),
    };
    let report = report_json(&finished, sc, seed, &loaded.file, &replay);
    // Files first: whatever happens to the terminal, the run is on disk.
    let written = write_outputs(&dir, &finished.output, &report, &view);
    let failed = view.failed() > 0;
    match s.format {
        OutputFormat::Table => {
            let report = reports::run::render(&view, &timeline_options());
            out.write_all(super::printable(&report).as_bytes())?;
            if written.is_ok() {
                writeln!(out, "wrote {}: {}", dir.display(), OUTPUT_FILES.join(", "))?;
            }
            if failed {
                writeln!(out, "replay: {replay}")?;
            }
        }
        OutputFormat::Json => {
            out.write_all(report.as_bytes())?;
            if failed {
                writeln!(err, "{}", reports::run::verdict(&view))?;
                writeln!(err, "replay: {replay}")?;
            }
        }
    }
    written?;
    Ok(if failed { Exit::Failed } else { Exit::Success })
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn scenario_names_cannot_leave_the_out_dir() {
        assert_eq!(dir_name("smoke"), "smoke");
        assert_eq!(dir_name("../.."), "_..");
        assert_eq!(dir_name("/etc/cron.d"), "_etc_cron.d");
        assert_eq!(dir_name(".."), "scenario");
        assert_eq!(dir_name("a\x1bb"), "a_b");
        for evil in ["../..", "/abs", "..\\..", "a/../../b"] {
            let p = std::path::Path::new("out").join(dir_name(evil));
            assert_eq!(p.components().count(), 2, "{evil}: {}", p.display());
        }
    }
}
