//! `simbench run`: one scenario, its files, its report.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use format::scenario::Scenario;
use format::{Expect, ExpectResult};
use reports::run::RunView;
use reports::timeline::TimelineOptions;

use super::args::OutputFormat;
use super::settings::{Artifact, Artifacts, RunSettings};
use super::{replay_command, source, CliError, Exit};
use crate::run::{Pcap, ProgressFn, RunError, RunOptions, RunOutput};
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

/// Writes the files `artifacts` names to `dir`, creating it: report.json
/// (pretty), frames.jsonl, events.jsonl, report.html (the report of
/// `view`), capture.pcapng and keylog.txt. report.json lists the other
/// files written with their SHA-256 under `artifacts` (the capture's hash
/// sits there, beside the digest, not in it). `Ok` with the names written.
pub(super) fn write_outputs(
    dir: &Path,
    output: &RunOutput,
    report: &mut serde_json::Value,
    view: &RunView,
    artifacts: Artifacts,
) -> Result<Vec<&'static str>, CliError> {
    let fail = |path: &Path, source| CliError::Write {
        path: path.display().to_string(),
        flag: "--out DIR",
        source,
    };
    if artifacts.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    // Each file is written as it is made and only its size and hash kept:
    // a 10,000-agent run's capture and frame log are hundreds of MB each,
    // and holding every file at once multiplied the run's peak memory.
    let mut written: Vec<(Artifact, u64, String)> = Vec::new();
    let mut capture_error = None;
    for a in artifacts.iter().filter(|a| *a != Artifact::Report) {
        let path = dir.join(a.file());
        if let (Artifact::Capture, Some(Pcap::File(f))) = (a, &output.pcap) {
            // The run wrote it as it went.
            if f.path == path {
                if let Some(e) = &f.error {
                    capture_error = Some(fail(&path, std::io::Error::other(e.clone())));
                }
                written.push((a, f.bytes, f.sha256.clone()));
                continue;
            }
        }
        let (bytes, sha256) = write_hashed(&path, |w| match a {
            Artifact::Report => Ok(()),
            Artifact::Frames => crate::observe::write_jsonl(w, &output.frames),
            Artifact::Events => crate::observe::write_jsonl(w, &output.events),
            Artifact::Html => {
                w.write_all(reports::html::render(view, &timeline_options()).as_bytes())
            }
            Artifact::Capture => match &output.pcap {
                Some(Pcap::Bytes(b)) => w.write_all(b),
                Some(Pcap::File(f)) => {
                    std::io::copy(&mut std::fs::File::open(&f.path)?, w).map(drop)
                }
                None => Ok(()),
            },
            Artifact::Keylog => {
                w.write_all(output.key_log.as_deref().unwrap_or_default().as_bytes())
            }
        })
        .map_err(|e| fail(&path, e))?;
        written.push((a, bytes, sha256));
    }
    let mut names: Vec<&'static str> = written.iter().map(|(a, _, _)| a.file()).collect();
    if artifacts.contains(Artifact::Report) {
        let path = dir.join(Artifact::Report.file());
        std::fs::write(&path, artifacts_json(report, &written)).map_err(|e| fail(&path, e))?;
        names.insert(0, Artifact::Report.file());
    }
    match capture_error {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

/// Writes the file at `path` through `body`, counting and hashing the bytes.
fn write_hashed(
    path: &Path,
    body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    struct Hashed<W> {
        inner: W,
        hash: sha2::Sha256,
        bytes: u64,
    }
    impl<W: std::io::Write> std::io::Write for Hashed<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hash.update(&buf[..n]);
            self.bytes += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    let mut w = Hashed {
        inner: std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path)?),
        hash: sha2::Sha256::new(),
        bytes: 0,
    };
    body(&mut w)?;
    std::io::Write::flush(&mut w)?;
    Ok((w.bytes, hex::encode(w.hash.finalize())))
}

/// report.json with `artifacts`: each other file written, its size and SHA-256.
fn artifacts_json(report: &mut serde_json::Value, files: &[(Artifact, u64, String)]) -> Vec<u8> {
    let listed: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(a, bytes, sha256)| {
            (
                a.file().to_string(),
                serde_json::json!({ "bytes": bytes, "sha256": sha256 }),
            )
        })
        .collect();
    if let Some(map) = report.as_object_mut() {
        map.insert("artifacts".into(), serde_json::Value::Object(listed));
    }
    reports::json::pretty(report).into_bytes()
}

/// Writes a finished run's files under `root/<scenario>-<seed>/`, as
/// `check --artifacts` and `sweep --artifacts` do for each run.
pub(super) fn save(
    root: &Path,
    finished: &Finished,
    sc: &Scenario,
    seed: u64,
    file: &reports::json::ScenarioFile,
    shown: &str,
    artifacts: Artifacts,
) -> Result<(), CliError> {
    if artifacts.is_empty() {
        return Ok(());
    }
    let dir = root.join(format!("{}-{seed}", dir_name(&sc.name)));
    let view = RunView {
        scenario: sc,
        outcome: &finished.output.outcome,
        frames: &finished.output.frames,
        expectations: &finished.results,
        wall_time: Some(finished.wall),
    };
    let mut report = report_json(finished, sc, seed, file, &replay_command(shown, seed));
    write_outputs(&dir, &finished.output, &mut report, &view, artifacts).map(|_| ())
}

/// SHA-256 of a run's capture, when it recorded one.
pub(super) fn capture_sha256(output: &RunOutput) -> Option<String> {
    use sha2::Digest;
    output.pcap.as_ref().map(|p| match p {
        Pcap::Bytes(b) => hex::encode(sha2::Sha256::digest(b)),
        Pcap::File(f) => f.sha256.clone(),
    })
}

/// report.json: the outcome document with the run's verdict under
/// `verdict` ([`reports::json::RunVerdict`]).
fn report_json(
    finished: &Finished,
    sc: &Scenario,
    seed: u64,
    file: &reports::json::ScenarioFile,
    replay: &str,
) -> serde_json::Value {
    use reports::json::{ExpectationResult, RunVerdict};
    let verdict = RunVerdict::new(
        &sc.name,
        seed,
        file.clone(),
        &finished.output.digest,
        ExpectationResult::all(&finished.results),
        replay.to_string(),
    );
    // The run's document is JSON already (`outcome`): a copy of it, not a
    // second serialization of the typed one.
    reports::json::with_verdict(finished.output.outcome.clone(), &verdict)
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
    let dir = s
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(format!("{}-{seed}", dir_name(&sc.name))));
    let mut options = s.artifacts.run_options();
    if options.capture {
        // The capture goes to its file as the run makes it (a large run's
        // is hundreds of MB, and a failed run leaves it).
        std::fs::create_dir_all(&dir).map_err(|e| CliError::Write {
            path: dir.display().to_string(),
            flag: "--out DIR",
            source: e,
        })?;
        options.capture_file = Some(dir.join(Artifact::Capture.file()));
    }
    let capture_file = options.capture_file.clone();
    let progress = progress_line(&sc.name);
    options.progress = Some(progress.clone());
    let ran = run_once(sc, Some(seed), options);
    // Whatever the run did (an error too), what follows starts on a clean line.
    (progress.0)(Duration::ZERO, Duration::ZERO);
    let finished = match ran? {
        Ok(f) => f,
        Err(e) => {
            writeln!(
                err,
                "error: scenario `{}` with seed {seed} did not run to its end: {e}",
                sc.name
            )?;
            if let Some(path) = capture_file.filter(|p| p.exists()) {
                writeln!(
                    err,
                    "the packets captured until then are in {}",
                    path.display()
                )?;
            }
            writeln!(err, "replay: {replay}")?;
            return Ok(Exit::Failed);
        }
    };
    let view = RunView {
        scenario: sc,
        outcome: &finished.output.outcome,
        frames: &finished.output.frames,
        expectations: &finished.results,
        wall_time: Some(finished.wall),
    };
    let mut report = report_json(&finished, sc, seed, &loaded.file, &replay);
    // Files first: whatever happens to the terminal, the run is on disk.
    let written = write_outputs(&dir, &finished.output, &mut report, &view, s.artifacts);
    let failed = view.failed() > 0;
    match s.format {
        OutputFormat::Table => {
            let report = reports::run::render(&view, &timeline_options());
            out.write_all(super::printable(&report).as_bytes())?;
            if let Ok(files) = &written {
                if !files.is_empty() {
                    writeln!(out, "wrote {}: {}", dir.display(), files.join(", "))?;
                }
            }
            if failed {
                writeln!(out, "replay: {replay}")?;
            }
        }
        OutputFormat::Json => {
            out.write_all(reports::json::pretty(&report).as_bytes())?;
            if failed {
                writeln!(err, "{}", reports::run::verdict(&view))?;
                writeln!(err, "replay: {replay}")?;
            }
        }
    }
    written?;
    Ok(if failed { Exit::Failed } else { Exit::Success })
}

/// A run shows nothing of its progress for this long (most runs end sooner).
const PROGRESS_QUIET: Duration = Duration::from_secs(3);

/// A long run's progress on stderr, as the simulated clock moves: on a
/// terminal one line redrawn in place (twice a second at most, cleared when
/// told the end: `reached >= end`), elsewhere (a CI log, a pipe) one line
/// every 30 s: `run connect-storm: 0:04.000 of 1:00.000 simulated, 21.4 s`
/// (the simulated clock as the logs print it, the wall time as the tables do).
fn progress_line(name: &str) -> ProgressFn {
    let name = name.to_string();
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(30)
    };
    // When the line was last drawn (none yet: nothing to clear).
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    ProgressFn(Arc::new(move |reached, end| {
        let wall = started.elapsed();
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let done = reached >= end;
        if done {
            if tty && last.take().is_some() {
                // The summary follows on a clean line.
                eprint!("\r\x1b[K");
            }
            return;
        }
        if wall < PROGRESS_QUIET || last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        *last = Some(Instant::now());
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let line = format!(
            "run {name}: {} of {} simulated, {}",
            reports::style::sim_time(us(reached)),
            reports::style::sim_time(us(end)),
            reports::style::wall_time(wall)
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }))
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
