//! `simbench sweep`: one scenario, many seeds, the failing ones with the
//! command that replays each.

use std::io::Write;
use std::time::{Duration, Instant};

use reports::catalogue::SweepFailure;
use reports::json::{Header, SweepDocument, SweepSeed};
use reports::style::count;

use super::args::OutputFormat;
use super::pool::{run_all, Progress, Status};
use super::run::{run_once, save};
use super::settings::SweepSettings;
use super::{replay_command, source, CliError, Exit};

pub(super) fn sweep(
    s: &SweepSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let started = Instant::now();
    let loaded = source::load(&s.scenario)?;
    for note in &loaded.notes {
        writeln!(err, "{note}")?;
    }
    let sc = &loaded.scenario;
    // Refuse an unsupported scenario before running anything.
    crate::scenario::resolve(sc, Some(s.seeds.start))?;
    let mut sink = std::io::sink();
    let json = s.format == OutputFormat::Json;
    // In JSON mode stdout gets the document alone.
    let (human, out): (&mut dyn Write, &mut dyn Write) = if json {
        (&mut sink, out)
    } else {
        (out, &mut sink)
    };
    let seeds: Vec<u64> = (s.seeds.start..s.seeds.end)
        .filter(|seed| {
            s.partition
                .is_none_or(|p| p.selects(seed - s.seeds.start, *seed))
        })
        .collect();
    writeln!(
        human,
        "sweep {}: {} ({})",
        sc.name,
        s.seeds,
        count(s.seeds.len() as usize, "seed", "seeds")
    )?;
    if let Some(p) = &s.partition {
        writeln!(
            human,
            "partition {p} keeps {} of them{}",
            count(seeds.len(), "seed", "seeds"),
            seed_list(&seeds)
        )?;
    }
    if seeds.is_empty() {
        writeln!(
            human,
            "this partition holds no seed of the range; nothing to run"
        )?;
        if let Some(path) = &s.junit {
            write_junit(path, &sc.name, &loaded.shown, &[], &[], started.elapsed())?;
            writeln!(err, "JUnit XML: {}", path.display())?;
        }
        if json {
            write_document(out, s, &loaded, &[], &[])?;
        }
        return Ok(Exit::Success);
    }
    if let Some(note) = s.jobs.note() {
        writeln!(err, "{note}")?;
    }
    let mut progress = Progress::new(format!("sweep {}", sc.name), seeds.len());
    let results = run_all(
        &seeds,
        s.jobs.count,
        |i, r: &Result<(Option<String>, Duration), String>| {
            let (status, wall) = match r {
                Ok((None, wall)) => (Status::Pass, *wall),
                Ok((Some(_), wall)) => (Status::Fail, *wall),
                Err(_) => (Status::Error, Duration::ZERO),
            };
            progress.finished(status, &format!("{} seed {}", sc.name, seeds[i]), wall);
        },
        |seed| {
            let started = Instant::now();
            let failed = match run_once(sc, Some(*seed), s.artifacts.run_options()) {
                Ok(Ok(f)) => {
                    let failures = f.failures();
                    let saved = save(
                        &s.out,
                        &f,
                        sc,
                        *seed,
                        &loaded.file,
                        &loaded.shown,
                        s.artifacts,
                    );
                    match (failures.as_slice(), saved) {
                        (_, Err(e)) => Some(e.to_string()),
                        ([], _) => None,
                        ([one], _) => Some(one.to_string()),
                        ([first, rest @ ..], _) => {
                            Some(format!("{first} (and {} more)", rest.len()))
                        }
                    }
                }
                Ok(Err(e)) => Some(format!("the run did not finish: {e}")),
                Err(u) => Some(u.to_string()),
            };
            (failed, started.elapsed())
        },
    );
    progress.finish();
    if let Some(path) = &s.junit {
        write_junit(
            path,
            &sc.name,
            &loaded.shown,
            &seeds,
            &results,
            started.elapsed(),
        )?;
        writeln!(err, "JUnit XML: {}", path.display())?;
    }
    let failures: Vec<SweepFailure> = seeds
        .iter()
        .zip(results)
        .filter_map(|(seed, r)| {
            let reason = match r {
                Ok((None, _)) => return None,
                Ok((Some(reason), _)) => reason,
                Err(panic) => panic,
            };
            Some(SweepFailure {
                seed: *seed,
                reason,
                replay: replay_command(&loaded.shown, *seed),
            })
        })
        .collect();
    if failures.is_empty() {
        match seeds.as_slice() {
            [one] => writeln!(human, "seed {one} passes")?,
            _ => writeln!(human, "all {} seeds pass", seeds.len())?,
        }
    } else {
        writeln!(human, "{}", reports::catalogue::sweep_failures(&failures))?;
        writeln!(
            human,
            "{} of {} failed; replay any of them with the command in its row",
            count(failures.len(), "seed", "seeds"),
            seeds.len()
        )?;
    }
    writeln!(
        human,
        "wall time: {}",
        reports::style::wall_time(started.elapsed())
    )?;
    if json {
        write_document(out, s, &loaded, &seeds, &failures)?;
    }
    Ok(if failures.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

/// `sweep --junit`: one case per seed this machine ran, named `seed N`
/// under the scenario's name, so the files of several machines merge with
/// `simbench junit-merge`.
fn write_junit(
    path: &std::path::Path,
    scenario: &str,
    shown: &str,
    seeds: &[u64],
    results: &[Result<(Option<String>, Duration), String>],
    wall: Duration,
) -> Result<(), CliError> {
    use reports::junit::{CaseOutcome, Report, TestCase, TestSuite};
    let cases = seeds
        .iter()
        .zip(results)
        .map(|(seed, r)| {
            let replay = replay_command(shown, *seed);
            let (outcome, time) = match r {
                Ok((None, wall)) => (CaseOutcome::Passed, Some(*wall)),
                Ok((Some(reason), wall)) => (
                    CaseOutcome::Failure {
                        kind: "seed".into(),
                        message: reason.clone(),
                        detail: format!("{reason}\nreplay: {replay}"),
                    },
                    Some(*wall),
                ),
                Err(panic) => (
                    CaseOutcome::Error {
                        kind: "panic".into(),
                        message: panic.clone(),
                        detail: format!("{panic}\nreplay: {replay}"),
                    },
                    None,
                ),
            };
            TestCase {
                classname: scenario.to_string(),
                name: format!("seed {seed}"),
                time,
                outcome,
                system_out: Some(format!("seed {seed}\nreplay: {replay}")),
            }
        })
        .collect();
    let report = Report {
        name: "simbench".into(),
        suites: vec![TestSuite {
            name: format!("simbench sweep {scenario}"),
            cases,
            time: Some(wall),
        }],
    };
    let write_error = |source| CliError::Write {
        path: path.display().to_string(),
        flag: "--junit FILE",
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    std::fs::write(path, reports::junit::write(&report)).map_err(write_error)
}

/// `sweep --format json`: every seed this machine ran, in order.
fn write_document(
    out: &mut dyn Write,
    s: &SweepSettings,
    loaded: &source::Loaded,
    seeds: &[u64],
    failures: &[SweepFailure],
) -> Result<(), CliError> {
    let results: Vec<SweepSeed> = seeds
        .iter()
        .map(|seed| {
            let failed = failures.iter().find(|f| f.seed == *seed);
            SweepSeed {
                seed: *seed,
                passed: failed.is_none(),
                reason: failed.map(|f| f.reason.clone()),
                replay: failed.map(|f| f.replay.clone()),
            }
        })
        .collect();
    let doc = SweepDocument {
        header: Header::new("sweep", failures.is_empty()),
        scenario: loaded.scenario.name.clone(),
        scenario_file: loaded.file.clone(),
        seeds: [s.seeds.start, s.seeds.end],
        partition: s.partition.map(|p| p.to_string()),
        passed_count: seeds.len() - failures.len(),
        failed_count: failures.len(),
        results,
    };
    out.write_all(reports::json::pretty(&doc).as_bytes())?;
    Ok(())
}

/// `: 1, 3, 5` for a few seeds, nothing for many.
fn seed_list(seeds: &[u64]) -> String {
    const MAX_LISTED: usize = 20;
    if seeds.is_empty() || seeds.len() > MAX_LISTED {
        return String::new();
    }
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    format!(": {}", list.join(", "))
}
