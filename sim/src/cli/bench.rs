//! `simbench bench`: how fast and how big the shipped scenarios run. Each
//! scenario runs `--repeat` times, one run at a time, so no other run
//! shares the machine with the one being timed; the numbers are still only
//! as quiet as the machine.

use std::io::Write;
use std::time::Instant;

use reports::catalogue::BenchRow;

use super::args::OutputFormat;
use super::pool::Progress;
use super::settings::BenchSettings;
use super::{source, CliError, Exit};

pub(super) fn bench(
    s: &BenchSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let files = source::catalogue()?;
    let selected: Vec<_> = files
        .iter()
        .filter(|f| s.filter.as_deref().is_none_or(|t| f.name.contains(t)))
        .collect();
    if selected.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(CliError::BadInput(format!(
            "no shipped scenario matches --filter {:?} (shipped: {}); the filter keeps names that contain it",
            s.filter.as_deref().unwrap_or(""),
            names.join(", ")
        )));
    }
    if cfg!(debug_assertions) {
        writeln!(
            err,
            "note: this is a debug build; measure with `cargo run --release -p sim --bin simbench -- bench`"
        )?;
    }
    let started = Instant::now();
    let mut progress = Progress::new("bench", selected.len() * s.repeat as usize);
    let mut rows = Vec::new();
    for f in selected {
        let loaded = source::load(&source::ScenarioRef::Name(f.name.clone()))?;
        let spec = crate::scenario::resolve(&loaded.scenario, None)?;
        reset_peak_rss();
        let mut walls = Vec::new();
        let mut row = BenchRow {
            scenario: f.name.clone(),
            runs: 0,
            sim_s: 0.0,
            wall_min_s: 0.0,
            wall_median_s: 0.0,
            frames: 0,
            peak_rss_mib: None,
            error: None,
        };
        for _ in 0..s.repeat {
            let t = Instant::now();
            let result = crate::run::run(&spec);
            let wall = t.elapsed().as_secs_f64();
            progress.tick(result.is_err());
            match result {
                Ok(o) => {
                    walls.push(wall);
                    row.sim_s = o.outcome["sim_time_us"].as_u64().unwrap_or(0) as f64 / 1e6;
                    row.frames = o.frames.len() as u64;
                }
                Err(e) => {
                    row.error = Some(e.to_string());
                    break;
                }
            }
        }
        walls.sort_by(f64::total_cmp);
        row.runs = walls.len();
        row.wall_min_s = walls.first().copied().unwrap_or(0.0);
        row.wall_median_s = walls.get(walls.len() / 2).copied().unwrap_or(0.0);
        row.peak_rss_mib = peak_rss_mib();
        rows.push(row);
    }
    progress.finish();
    match s.format {
        OutputFormat::Table => {
            writeln!(out, "{}", reports::catalogue::bench(&rows))?;
            writeln!(
                out,
                "wall time: {:.1} s ({} runs of each scenario, one at a time)",
                started.elapsed().as_secs_f64(),
                s.repeat
            )?;
        }
        OutputFormat::Json => {
            let doc: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).expect("bench rows serialize");
                    v["sim_per_wall"] = serde_json::json!(r.speed());
                    v
                })
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).expect("JSON serializes")
            )?;
        }
    }
    Ok(if rows.iter().any(|r| r.error.is_some()) {
        Exit::Failed
    } else {
        Exit::Success
    })
}

// Linux: writing 5 to clear_refs resets the peak resident set size
// (VmHWM) to the current one. Elsewhere, or when refused, the peak is the
// process's since it started (or unknown).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

// The peak resident set size (VmHWM) in MiB, where the platform says.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
