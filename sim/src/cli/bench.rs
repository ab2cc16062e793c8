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
    if s.scale || s.baseline.is_some() {
        return bench_processes(s, out, err);
    }
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
                    row.sim_s = o.doc.sim_time_us as f64 / 1e6;
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

// `--scale` and `--baseline`: every run in its own process, measured from
// outside, so this build and the baseline are measured the same way.
fn bench_processes(
    s: &BenchSettings,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let work = std::env::temp_dir().join(format!("simbench-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)
        .map_err(|e| CliError::BadInput(format!("cannot create {}: {e}", work.display())))?;
    let mut files = Vec::new();
    if s.scale {
        for p in scale_points() {
            let name = p.name();
            if s.filter.as_deref().is_some_and(|t| !name.contains(t)) {
                continue;
            }
            let path = work.join(format!("{name}.toml"));
            std::fs::write(&path, p.scenario())
                .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", path.display())))?;
            files.push((name, path));
        }
    } else {
        for f in source::catalogue()? {
            if s.filter.as_deref().is_none_or(|t| f.name.contains(t)) {
                // Both builds read the same file, wherever this one's came from.
                let path = match &f.origin {
                    source::Origin::File(p) => p.clone(),
                    source::Origin::Embedded(text) => {
                        let p = work.join(format!("{}.toml", f.name));
                        std::fs::write(&p, text).map_err(|e| {
                            CliError::BadInput(format!("cannot write {}: {e}", p.display()))
                        })?;
                        p
                    }
                };
                files.push((f.name.clone(), path));
            }
        }
    }
    if files.is_empty() {
        return Err(CliError::BadInput(format!(
            "nothing matches --filter {:?}",
            s.filter.as_deref().unwrap_or("")
        )));
    }
    if cfg!(debug_assertions) {
        writeln!(
            err,
            "note: this is a debug build; measure with `cargo run --release -p sim --bin simbench -- bench`"
        )?;
    }
    let started = Instant::now();
    let rows = compare(&files, s.baseline.as_deref(), s.repeat, &work);
    let _ = std::fs::remove_dir_all(&work);
    let rows = rows?;
    match s.format {
        OutputFormat::Table => {
            writeln!(out, "{}", compared_table(&rows))?;
            writeln!(
                out,
                "wall time: {:.1} s ({} runs of each scenario per build, in turn, each in its own process; wall and peak MiB are the fastest run's)",
                started.elapsed().as_secs_f64(),
                s.repeat
            )?;
        }
        OutputFormat::Json => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&rows).expect("JSON serializes")
            )?;
        }
    }
    Ok(
        if rows.iter().any(|r| {
            r.this.error.is_some() || r.baseline.as_ref().is_some_and(|b| b.error.is_some())
        }) {
            Exit::Failed
        } else {
            Exit::Success
        },
    )
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

/// A fleet the scaling curve runs: `agents` agents on sites of at most
/// [`SCALE_SITE`], installed at once, for `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalePoint {
    /// Agents.
    pub agents: u32,
    /// Simulated time.
    pub duration: std::time::Duration,
}

/// Agents per site in a generated fleet (an office behind one NAT).
pub const SCALE_SITE: u32 = 250;

/// The scaling curve of `simbench bench --scale`: against agents (100,
/// 1,000 and 10,000, the most a scenario may have, for 10 simulated minutes)
/// and against simulated hours (50 agents for 1, 6 and 24 hours), each
/// within the format's limit on agent-hours.
pub fn scale_points() -> Vec<ScalePoint> {
    let min = |m: u64| std::time::Duration::from_secs(60 * m);
    let mut v: Vec<ScalePoint> = [100, 1_000, 10_000]
        .into_iter()
        .map(|agents| ScalePoint {
            agents,
            duration: min(10),
        })
        .collect();
    v.extend([1, 6, 24].into_iter().map(|h| ScalePoint {
        agents: 50,
        duration: min(60 * h),
    }));
    v
}

impl ScalePoint {
    /// The generated scenario's name: `scale-<agents>-<duration>`.
    pub fn name(&self) -> String {
        format!(
            "scale-{}-{}",
            self.agents,
            format::duration::format_duration(self.duration)
        )
    }

    /// The scenario file: healthy fixed agents, every one installed at the
    /// start, and one expectation per site that its first agent is online
    /// (paths every simbench version has, so an older build can run it).
    pub fn scenario(&self) -> String {
        let mut s = format!(
            "name = \"{}\"\nsummary = \"Generated by simbench bench --scale: {} healthy agents on sites of {}, {} of simulated time.\"\nincident = \"enrollment\"\nseed = 1\nduration = \"{}\"\n\n[server]\nbehavior = \"fixed\"\n",
            self.name(),
            self.agents,
            SCALE_SITE,
            format::duration::format_duration(self.duration),
            format::duration::format_duration(self.duration),
        );
        let mut left = self.agents;
        let mut site = 0;
        while left > 0 {
            let n = left.min(SCALE_SITE);
            s.push_str(&format!(
                "\n[[agent]]\nname = \"s{site}\"\nsite = \"s{site}\"\ncount = {n}\n"
            ));
            left -= n;
            site += 1;
        }
        for i in 0..site {
            s.push_str(&format!(
                "\n[[expect]]\nobserve = \"agents.s{i}-1.online\"\nequals = true\n"
            ));
        }
        s
    }
}

/// One run of one scenario file by one simbench binary, measured from the
/// outside: wall time and the child's peak resident memory.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Measured {
    /// Wall time, seconds.
    pub wall_s: f64,
    /// Peak resident set of the run's process, MiB (its VmHWM).
    pub peak_rss_mib: f64,
    /// Simulated time of the run, seconds (its report.json's `sim_time_us`).
    pub sim_s: f64,
    /// Frame records it wrote.
    pub frames: u64,
    /// Why it did not finish with a report, when it did not.
    pub error: Option<String>,
}

/// Runs `bin run <file> --out <out> --format json` and measures it.
pub fn measure(bin: &std::path::Path, file: &std::path::Path, out: &std::path::Path) -> Measured {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let _ = std::fs::remove_dir_all(out);
    let started = Instant::now();
    let child = Command::new(bin)
        .arg("run")
        .arg(file)
        .arg("--out")
        .arg(out)
        .args(["--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Measured {
                error: Some(format!("cannot start {}: {e}", bin.display())),
                ..Measured::default()
            }
        }
    };
    // Read stdout on a thread so a big report cannot fill the pipe while
    // this one watches the child's memory.
    let reader = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let (status, rss_kib) = wait_with_peak_rss(&mut child);
    let stdout = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let wall_s = started.elapsed().as_secs_f64();
    let report: Option<serde_json::Value> = serde_json::from_slice(&stdout).ok();
    let frames = std::fs::read(out.join("frames.jsonl"))
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(out);
    Measured {
        wall_s,
        peak_rss_mib: rss_kib as f64 / 1024.0,
        sim_s: report
            .as_ref()
            .and_then(|r| r["sim_time_us"].as_u64())
            .unwrap_or(0) as f64
            / 1e6,
        frames,
        error: match (&report, status) {
            (Some(_), _) => None,
            (None, -9) => Some(format!("stopped after {} s", RUN_LIMIT.as_secs())),
            (None, s) => Some(format!("no report (exit status {s})")),
        },
    }
}

/// How long one measured run may take before `bench` stops it and records
/// that it did not finish.
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

// Waits for `child` and returns its exit status and peak RSS in KiB: the
// child's own high-water mark (VmHWM, which only grows), read every 10 ms
// while it runs, so at most the last 10 ms of growth is missed. A child
// still running after RUN_LIMIT is killed (status -9).
fn wait_with_peak_rss(child: &mut std::process::Child) -> (i32, i64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0i64;
    let started = Instant::now();
    loop {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return (-9, peak_kib);
        }
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
            {
                peak_kib = peak_kib.max(kib);
            }
        }
        match child.try_wait() {
            Ok(Some(st)) => return (st.code().unwrap_or(-1), peak_kib),
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(_) => return (-1, peak_kib),
        }
    }
}

/// What `--scale` and `--baseline` print: per scenario, this build beside
/// the baseline, with the ratios.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Compared {
    /// Scenario (shipped name or generated `scale-*`).
    pub scenario: String,
    /// This build's fastest run.
    pub this: Measured,
    /// The baseline's fastest run, when one was given.
    pub baseline: Option<Measured>,
}

impl Compared {
    /// This build's wall time over the baseline's (below 1: faster).
    pub fn wall_ratio(&self) -> Option<f64> {
        let b = self.baseline.as_ref()?;
        (b.wall_s > 0.0 && self.this.error.is_none() && b.error.is_none())
            .then(|| self.this.wall_s / b.wall_s)
    }

    /// This build's peak memory over the baseline's (none when either run
    /// failed: a run that panicked at its start says nothing of memory).
    pub fn rss_ratio(&self) -> Option<f64> {
        let b = self.baseline.as_ref()?;
        (b.peak_rss_mib > 0.0 && self.this.error.is_none() && b.error.is_none())
            .then(|| self.this.peak_rss_mib / b.peak_rss_mib)
    }
}

fn fastest(runs: Vec<Measured>) -> Measured {
    let failed = runs.iter().find(|m| m.error.is_some()).cloned();
    failed.unwrap_or_else(|| {
        runs.into_iter()
            .min_by(|a, b| a.wall_s.total_cmp(&b.wall_s))
            .unwrap_or_default()
    })
}

/// Measures each of `files` with this build and, when given, `baseline`,
/// in turn (this, baseline, this, ...) so both see the same machine.
pub(super) fn compare(
    files: &[(String, std::path::PathBuf)],
    baseline: Option<&std::path::Path>,
    repeat: u32,
    work: &std::path::Path,
) -> Result<Vec<Compared>, CliError> {
    let this = std::env::current_exe()
        .map_err(|e| CliError::BadInput(format!("cannot find this simbench binary: {e}")))?;
    let mut progress = Progress::new(
        "bench",
        files.len() * repeat as usize * if baseline.is_some() { 2 } else { 1 },
    );
    let mut rows = Vec::new();
    for (name, file) in files {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for k in 0..repeat {
            let m = measure(&this, file, &work.join(format!("{name}-this-{k}")));
            progress.tick(m.error.is_some());
            a.push(m);
            if let Some(base) = baseline {
                let m = measure(base, file, &work.join(format!("{name}-base-{k}")));
                progress.tick(m.error.is_some());
                b.push(m);
            }
        }
        rows.push(Compared {
            scenario: name.clone(),
            this: fastest(a),
            baseline: baseline.map(|_| fastest(b)),
        });
    }
    progress.finish();
    Ok(rows)
}

/// The comparison as a table.
pub fn compared_table(rows: &[Compared]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let with_base = rows.iter().any(|r| r.baseline.is_some());
    let mut header = vec![
        "scenario", "sim s", "wall s", "sim/wall", "frames/s", "peak MiB",
    ];
    if with_base {
        header.extend(["base wall s", "base MiB", "wall ratio", "mem ratio"]);
    }
    t.set_header(header);
    let f = |x: f64| format!("{x:.2}");
    for r in rows {
        let m = &r.this;
        let mut row = vec![
            r.scenario.clone(),
            format!("{:.0}", m.sim_s),
            match &m.error {
                Some(e) => format!("error: {e}"),
                None => f(m.wall_s),
            },
            if m.wall_s > 0.0 {
                format!("{:.0}", m.sim_s / m.wall_s)
            } else {
                "-".into()
            },
            if m.wall_s > 0.0 {
                format!("{:.0}", m.frames as f64 / m.wall_s)
            } else {
                "-".into()
            },
            format!("{:.0}", m.peak_rss_mib),
        ];
        if let Some(b) = &r.baseline {
            row.push(match &b.error {
                Some(e) => format!("error: {e}"),
                None => f(b.wall_s),
            });
            row.push(format!("{:.0}", b.peak_rss_mib));
            row.push(r.wall_ratio().map_or("-".into(), |x| format!("{x:.3}")));
            row.push(r.rss_ratio().map_or("-".into(), |x| format!("{x:.3}")));
        } else if with_base {
            row.extend(["-".into(), "-".into(), "-".into(), "-".into()]);
        }
        t.add_row(row);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::{compared_table, Compared, Measured};

    fn ran(wall_s: f64, peak_rss_mib: f64) -> Measured {
        Measured {
            wall_s,
            peak_rss_mib,
            sim_s: 600.0,
            frames: 10,
            error: None,
        }
    }

    #[test]
    fn ratios_compare_two_runs_that_finished_and_none_against_a_failed_one() {
        let both = Compared {
            scenario: "scale-100-10m".into(),
            this: ran(1.0, 50.0),
            baseline: Some(ran(2.0, 100.0)),
        };
        assert_eq!(both.wall_ratio(), Some(0.5));
        assert_eq!(both.rss_ratio(), Some(0.5));
        // The baseline panicked at t=0: its few MiB say nothing of memory.
        let failed = Compared {
            scenario: "scale-10000-10m".into(),
            this: ran(100.0, 4_000.0),
            baseline: Some(Measured {
                error: Some("no report (exit status 101)".into()),
                ..ran(0.5, 271.0)
            }),
        };
        assert_eq!(failed.wall_ratio(), None);
        assert_eq!(failed.rss_ratio(), None);
        let table = compared_table(&[both, failed]);
        let row = table
            .lines()
            .find(|l| l.contains("scale-10000-10m"))
            .expect("the failed row is in the table");
        assert!(row.contains("error: no report"), "{row}");
        assert!(!row.contains("14.760"), "no memory ratio: {row}");
        assert!(table.contains("0.500"), "{table}");
    }
}
