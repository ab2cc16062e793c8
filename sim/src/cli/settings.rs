//! Checked settings, resolved from the raw [`super::args`]: every value
//! parsed, every default filled in, every mistake a [`CliError::BadInput`]
//! that names the valid forms.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use super::args::{Args, BenchArgs, CheckArgs, Command, OutputFormat, RunArgs, SweepArgs};
use super::source::ScenarioRef;
use super::CliError;

/// What to do, with everything resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    /// `simbench list`.
    List,
    /// `simbench run`.
    Run(RunSettings),
    /// `simbench check`.
    Check(CheckSettings),
    /// `simbench sweep`.
    Sweep(SweepSettings),
    /// `simbench diagnose` (its flags need no resolving).
    Diagnose(super::args::DiagnoseArgs),
    /// `simbench bench`.
    Bench(BenchSettings),
    /// `simbench conform` (its flags need no resolving).
    Conform(super::args::ConformArgs),
    /// `simbench junit-merge` (its arguments need no resolving).
    JunitMerge(super::args::JunitMergeArgs),
    /// `simbench next` (its flags need no resolving).
    Next(super::args::NextArgs),
}

/// `simbench bench`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchSettings {
    /// Only scenarios whose name contains this.
    pub filter: Option<String>,
    /// Runs of each scenario, 1 to [`MAX_REPEAT`].
    pub repeat: u32,
    /// A table or JSON.
    pub format: OutputFormat,
    /// The generated scaling curve instead of the catalogue.
    pub scale: bool,
    /// Another build to measure beside this one.
    pub baseline: Option<std::path::PathBuf>,
}

/// The most runs `simbench bench --repeat` does of each scenario.
pub const MAX_REPEAT: u32 = 20;

/// `simbench run`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Which scenario.
    pub scenario: ScenarioRef,
    /// The seed to use instead of the file's.
    pub seed: Option<u64>,
    /// The output directory; `None`: `out/<scenario>-<seed>`, known once
    /// the file is read.
    pub out: Option<PathBuf>,
    /// Tables or report.json.
    pub format: OutputFormat,
    /// Which files the run writes.
    pub artifacts: Artifacts,
}

/// `simbench check`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    /// Where the JUnit XML goes, if anywhere.
    pub junit: Option<PathBuf>,
    /// Only scenarios whose name contains this.
    pub filter: Option<String>,
    /// This machine's share of the (filtered) catalogue.
    pub partition: Option<Partition>,
    /// Tables or the JSON document.
    pub format: OutputFormat,
    /// Runs at once.
    pub jobs: Jobs,
    /// Which files each run writes (none by default).
    pub artifacts: Artifacts,
    /// Where each run's directory goes, with `--artifacts`.
    pub out: PathBuf,
}

/// `simbench sweep`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSettings {
    /// Which scenario.
    pub scenario: ScenarioRef,
    /// The seeds, before partitioning.
    pub seeds: SeedRange,
    /// This machine's share of the seeds.
    pub partition: Option<Partition>,
    /// Tables or the JSON document.
    pub format: OutputFormat,
    /// Runs at once.
    pub jobs: Jobs,
    /// Which files each run writes (none by default).
    pub artifacts: Artifacts,
    /// Where each run's directory goes, with `--artifacts`.
    pub out: PathBuf,
    /// Where the JUnit XML goes, if anywhere.
    pub junit: Option<PathBuf>,
}

/// `--jobs`, resolved: never more runs at once than the machine has cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jobs {
    /// Runs at once.
    pub count: NonZeroUsize,
    /// The `--jobs` value asked for when it was above the cores and capped.
    pub capped_from: Option<usize>,
}

impl Jobs {
    /// The note `check` and `sweep` print on stderr when `--jobs` was capped.
    pub fn note(&self) -> Option<String> {
        self.capped_from.map(|asked| {
            format!(
                "note: --jobs {asked} capped at {}, the number of CPUs this process may use (each run is one busy thread; more would only share the cores and multiply memory)",
                self.count
            )
        })
    }
}

impl Settings {
    /// Resolves raw arguments.
    pub fn from_args(args: Args) -> Result<Self, CliError> {
        Ok(match args.command {
            Command::List => Settings::List,
            Command::Diagnose(d) => Settings::Diagnose(d),
            Command::Conform(c) => Settings::Conform(c),
            Command::JunitMerge(m) => Settings::JunitMerge(m),
            Command::Next(n) => Settings::Next(n),
            Command::Bench(BenchArgs {
                filter,
                repeat,
                format,
                scale,
                baseline,
            }) => {
                if !(1..=MAX_REPEAT).contains(&repeat) {
                    return Err(CliError::BadInput(format!(
                        "--repeat {repeat}: runs of each scenario must be 1 to {MAX_REPEAT}"
                    )));
                }
                if let Some(b) = &baseline {
                    if !b.is_file() {
                        return Err(CliError::BadInput(format!(
                            "--baseline {}: no such file; give the path of another simbench binary (for example target/release/simbench of another checkout)",
                            b.display()
                        )));
                    }
                }
                Settings::Bench(BenchSettings {
                    filter,
                    repeat,
                    format,
                    scale,
                    baseline,
                })
            }
            Command::Run(RunArgs {
                scenario,
                seed,
                out,
                format,
                artifacts,
            }) => Settings::Run(RunSettings {
                scenario: ScenarioRef::parse(&scenario),
                seed,
                out,
                format,
                artifacts: artifacts
                    .as_deref()
                    .map_or(Ok(Artifacts::ALL), Artifacts::parse)?,
            }),
            Command::Check(CheckArgs {
                junit,
                filter,
                partition,
                format,
                jobs,
                artifacts,
                out,
            }) => Settings::Check(CheckSettings {
                junit,
                filter,
                partition: partition.as_deref().map(Partition::parse).transpose()?,
                format,
                jobs: jobs_or_default(jobs, cores())?,
                artifacts: artifacts
                    .as_deref()
                    .map_or(Ok(Artifacts::NONE), Artifacts::parse)?,
                out: out.unwrap_or_else(|| PathBuf::from("out")),
            }),
            Command::Sweep(SweepArgs {
                scenario,
                seeds,
                partition,
                format,
                jobs,
                artifacts,
                out,
                junit,
            }) => Settings::Sweep(SweepSettings {
                scenario: ScenarioRef::parse(&scenario),
                seeds: SeedRange::parse(&seeds)?,
                partition: partition.as_deref().map(Partition::parse).transpose()?,
                format,
                jobs: jobs_or_default(jobs, cores())?,
                artifacts: artifacts
                    .as_deref()
                    .map_or(Ok(Artifacts::NONE), Artifacts::parse)?,
                out: out.unwrap_or_else(|| PathBuf::from("out")),
                junit,
            }),
        })
    }
}

/// One file a run can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// report.json: the outcome and the verdict.
    Report,
    /// frames.jsonl: the frame log.
    Frames,
    /// events.jsonl: the event log.
    Events,
    /// report.html: the report with its sequence diagram.
    Html,
    /// capture.pcapng: every packet, with the sessions' secrets inside.
    Capture,
    /// keylog.txt: the sessions' secrets (NSS key log, for `SSLKEYLOGFILE`-style use).
    Keylog,
}

impl Artifact {
    /// Every artifact, in the order a run writes them.
    pub const ALL: [Artifact; 6] = [
        Artifact::Report,
        Artifact::Frames,
        Artifact::Events,
        Artifact::Html,
        Artifact::Capture,
        Artifact::Keylog,
    ];

    /// Its name in `--artifacts`.
    pub fn name(self) -> &'static str {
        match self {
            Artifact::Report => "report",
            Artifact::Frames => "frames",
            Artifact::Events => "events",
            Artifact::Html => "html",
            Artifact::Capture => "capture",
            Artifact::Keylog => "keylog",
        }
    }

    /// The file it is written to, inside the run's directory.
    pub fn file(self) -> &'static str {
        match self {
            Artifact::Report => "report.json",
            Artifact::Frames => "frames.jsonl",
            Artifact::Events => "events.jsonl",
            Artifact::Html => "report.html",
            Artifact::Capture => "capture.pcapng",
            Artifact::Keylog => "keylog.txt",
        }
    }
}

/// `--artifacts`, resolved: which of a run's files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifacts(u8);

impl Artifacts {
    /// Every file (`simbench run`'s default).
    pub const ALL: Artifacts = Artifacts(0b11_1111);
    /// No file (`check`'s and `sweep`'s default).
    pub const NONE: Artifacts = Artifacts(0);

    fn bit(a: Artifact) -> u8 {
        1 << Artifact::ALL.iter().position(|x| *x == a).unwrap_or(0)
    }

    /// `report,frames,...`, `all` or `none`.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let names: Vec<&str> = Artifact::ALL.iter().map(|a| a.name()).collect();
        let valid = format!(
            "give a comma-separated list of {}, or `all` or `none`",
            names.join(", ")
        );
        match text.trim() {
            "all" => return Ok(Artifacts::ALL),
            "none" => return Ok(Artifacts::NONE),
            "" => return Err(CliError::BadInput(format!("--artifacts is empty; {valid}"))),
            _ => {}
        }
        let mut set = Artifacts::NONE;
        for word in text.split(',').map(str::trim) {
            match Artifact::ALL.iter().find(|a| a.name() == word) {
                Some(a) => set.0 |= Artifacts::bit(*a),
                None => {
                    let hint = match format::did_you_mean(
                        word,
                        names.iter().copied().chain(["all", "none"]),
                    ) {
                        Some(c) => format!(" (did you mean `{c}`?)"),
                        None => String::new(),
                    };
                    return Err(CliError::BadInput(format!(
                        "--artifacts {text}: unknown artifact `{word}`{hint}; {valid}"
                    )));
                }
            }
        }
        Ok(set)
    }

    /// Whether `a` is written.
    pub fn contains(self, a: Artifact) -> bool {
        self.0 & Artifacts::bit(a) != 0
    }

    /// Whether no file is written.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The artifacts written, in order.
    pub fn iter(self) -> impl Iterator<Item = Artifact> {
        Artifact::ALL.into_iter().filter(move |a| self.contains(*a))
    }

    /// What the run must record for them (the packets; the secrets).
    pub fn run_options(self) -> crate::run::RunOptions {
        crate::run::RunOptions {
            capture: self.contains(Artifact::Capture),
            capture_file: None,
            key_log: self.contains(Artifact::Keylog),
            progress: None,
        }
    }
}

/// The number of CPUs this process may use.
fn cores() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// `--jobs`, capped at `cores`; without it, `cores`.
fn jobs_or_default(jobs: Option<usize>, cores: NonZeroUsize) -> Result<Jobs, CliError> {
    match jobs {
        Some(j) => {
            let asked = NonZeroUsize::new(j).ok_or_else(|| {
                CliError::BadInput("--jobs must be at least 1 (the number of runs at once)".into())
            })?;
            Ok(Jobs {
                count: asked.min(cores),
                capped_from: (asked > cores).then_some(j),
            })
        }
        None => Ok(Jobs {
            count: cores,
            capped_from: None,
        }),
    }
}

/// A range of seeds: `start` included, `end` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    /// The first seed.
    pub start: u64,
    /// One past the last seed.
    pub end: u64,
}

/// The most seeds one `--seeds` range may hold.
pub const MAX_SEEDS: u64 = 10_000_000;

const SEEDS_FORMS: &str =
    "valid forms: A..B (A up to B, B excluded), A..=B (B included), or one seed N; e.g. --seeds 1..50";

impl SeedRange {
    /// Parses `A..B`, `A..=B` or `N`.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let bad = |why: &str| CliError::BadInput(format!("--seeds {text:?}: {why}; {SEEDS_FORMS}"));
        let number = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| {
                bad(&format!(
                    "{s:?} is not a seed (a whole number from 0 to {})",
                    u64::MAX
                ))
            })
        };
        let (start, end) = if let Some((a, b)) = text.split_once("..=") {
            let b = number(b)?;
            let end = b
                .checked_add(1)
                .ok_or_else(|| bad("the last seed is too large to include"))?;
            (number(a)?, end)
        } else if let Some((a, b)) = text.split_once("..") {
            (number(a)?, number(b)?)
        } else {
            let n = number(text)?;
            (n, n.checked_add(1).ok_or_else(|| bad("too large"))?)
        };
        if start >= end {
            return Err(bad("the range is empty"));
        }
        if end - start > MAX_SEEDS {
            return Err(CliError::BadInput(format!(
                "--seeds {text:?} holds {} seeds; one sweep runs at most {MAX_SEEDS}: use a smaller range, or several",
                end - start
            )));
        }
        Ok(SeedRange { start, end })
    }

    /// How many seeds the range holds.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it holds no seed (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for SeedRange {
    /// `seed 7` or `seeds 1 to 49` (both ends included).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.len() == 1 {
            write!(f, "seed {}", self.start)
        } else {
            write!(f, "seeds {} to {}", self.start, self.end - 1)
        }
    }
}

/// How `--partition` splits the seeds between machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStrategy {
    /// By position in the range: the i-th seed (from 0) goes to share
    /// `i % N + 1`. Shares differ in size by at most one.
    Count,
    /// By a stable hash of the seed: share `fnv1a(decimal seed) % N + 1`.
    /// A seed stays in its share when the range grows.
    Hash,
}

/// `--partition K/N`: this machine runs share K of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// How seeds are assigned.
    pub strategy: PartitionStrategy,
    /// This share, from 1.
    pub index: u64,
    /// How many shares.
    pub total: u64,
}

const PARTITION_FORMS: &str =
    "valid forms: K/N or count:K/N (by position in the range), hash:K/N (by a hash of the seed), with 1 <= K <= N; e.g. --partition 2/4";

impl Partition {
    /// Parses `K/N`, `count:K/N` or `hash:K/N`.
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let bad = |why: &str| {
            CliError::BadInput(format!("--partition {text:?}: {why}; {PARTITION_FORMS}"))
        };
        let (strategy, rest) = match text.split_once(':') {
            None => (PartitionStrategy::Count, text),
            Some(("count", rest)) => (PartitionStrategy::Count, rest),
            Some(("hash", rest)) => (PartitionStrategy::Hash, rest),
            Some((other, _)) => {
                return Err(bad(&format!("unknown strategy {other:?}")));
            }
        };
        let (k, n) = rest.split_once('/').ok_or_else(|| bad("expected K/N"))?;
        let k: u64 = k
            .parse()
            .map_err(|_| bad(&format!("{k:?} is not a number")))?;
        let n: u64 = n
            .parse()
            .map_err(|_| bad(&format!("{n:?} is not a number")))?;
        if n == 0 || k == 0 || k > n {
            return Err(bad("K must be from 1 to N"));
        }
        Ok(Partition {
            strategy,
            index: k,
            total: n,
        })
    }

    /// Whether this share runs `seed`, the one at `position` (from 0) in the range.
    pub fn selects(&self, position: u64, seed: u64) -> bool {
        self.selects_named(position, &seed.to_string())
    }

    /// Whether this share runs the item called `name` (a scenario's name,
    /// a seed in decimal) at `position` (from 0) in the list: nextest's
    /// count and hash partitioning, with the name as the test's name.
    pub fn selects_named(&self, position: u64, name: &str) -> bool {
        let key = match self.strategy {
            PartitionStrategy::Count => position,
            PartitionStrategy::Hash => fnv1a(name.as_bytes()),
        };
        key % self.total == self.index - 1
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.strategy {
            PartitionStrategy::Count => "count",
            PartitionStrategy::Hash => "hash",
        };
        write!(f, "{s}:{}/{}", self.index, self.total)
    }
}

/// 64-bit FNV-1a: small, stable across platforms and versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges() {
        assert_eq!(
            SeedRange::parse("1..3").unwrap(),
            SeedRange { start: 1, end: 3 }
        );
        assert_eq!(
            SeedRange::parse("1..=3").unwrap(),
            SeedRange { start: 1, end: 4 }
        );
        assert_eq!(
            SeedRange::parse("7").unwrap(),
            SeedRange { start: 7, end: 8 }
        );
        for bad in [
            "3..3",
            "5..1",
            "a..b",
            "1..",
            "..5",
            "",
            "-1..2",
            "0..=18446744073709551615",
        ] {
            let e = SeedRange::parse(bad).unwrap_err().to_string();
            assert!(e.contains("valid forms: A..B"), "{bad}: {e}");
        }
        let e = SeedRange::parse("0..20000000").unwrap_err().to_string();
        assert!(e.contains("at most 10000000"), "{e}");
    }

    #[test]
    fn partitions_by_count_cover_the_range_once() {
        let parts: Vec<Partition> = (1..=3)
            .map(|k| Partition::parse(&format!("{k}/3")).unwrap())
            .collect();
        let range = SeedRange::parse("10..20").unwrap();
        let mut seen = Vec::new();
        for p in &parts {
            let mine: Vec<u64> = (range.start..range.end)
                .filter(|s| p.selects(s - range.start, *s))
                .collect();
            seen.extend(mine);
        }
        seen.sort_unstable();
        assert_eq!(seen, (10..20).collect::<Vec<_>>());
        let first = Partition::parse("count:1/3").unwrap();
        let mine: Vec<u64> = (10..20).filter(|s| first.selects(s - 10, *s)).collect();
        assert_eq!(mine, vec![10, 13, 16, 19]);
    }

    #[test]
    fn partitions_by_hash_are_stable_and_cover_the_range_once() {
        let a = Partition::parse("hash:1/2").unwrap();
        let b = Partition::parse("hash:2/2").unwrap();
        for seed in 0..100 {
            assert_ne!(a.selects(0, seed), b.selects(0, seed));
            // Position does not matter for hash partitions.
            assert_eq!(a.selects(0, seed), a.selects(99, seed));
        }
        // The published values (docs/cli.md) stay as they are.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c); // the published test vector
        assert_eq!(fnv1a(b"1"), 0xaf63_ac4c_8601_9afc);
        let mine: Vec<u64> = (1..9).filter(|s| a.selects(0, *s)).collect();
        assert_eq!(mine, vec![1, 3, 5, 7]);
    }

    #[test]
    fn jobs_are_capped_at_the_cores_with_a_note() {
        let cores = NonZeroUsize::new(2).unwrap();
        let j = jobs_or_default(Some(100_000), cores).unwrap();
        assert_eq!(j.count, cores);
        assert_eq!(j.capped_from, Some(100_000));
        assert!(j.note().unwrap().contains("--jobs 100000 capped at 2"));
        let j = jobs_or_default(Some(1), cores).unwrap();
        assert_eq!((j.count.get(), j.note()), (1, None));
        assert_eq!(jobs_or_default(None, cores).unwrap().count, cores);
        assert!(jobs_or_default(Some(0), cores).is_err());
    }

    #[test]
    fn partitions_of_names_cover_the_list_once() {
        let names = ["a", "b", "smoke", "field-incident", "wake"];
        for strategy in ["count", "hash"] {
            let mut seen: Vec<&str> = Vec::new();
            for k in 1..=3 {
                let p = Partition::parse(&format!("{strategy}:{k}/3")).unwrap();
                seen.extend(
                    names
                        .iter()
                        .enumerate()
                        .filter(|(i, n)| p.selects_named(*i as u64, n))
                        .map(|(_, n)| *n),
                );
            }
            seen.sort_unstable();
            let mut all = names.to_vec();
            all.sort_unstable();
            assert_eq!(seen, all, "{strategy}");
        }
        let p = Partition::parse("hash:1/2").unwrap();
        assert_eq!(
            p.selects_named(0, "smoke"),
            fnv1a(b"smoke").is_multiple_of(2),
            "hash partitions hash the name"
        );
    }

    #[test]
    fn artifacts_parse_lists_all_and_none() {
        let a = Artifacts::parse("report,capture").unwrap();
        assert!(a.contains(Artifact::Report) && a.contains(Artifact::Capture));
        assert!(!a.contains(Artifact::Frames));
        assert_eq!(
            a.iter().map(Artifact::file).collect::<Vec<_>>(),
            ["report.json", "capture.pcapng"]
        );
        assert_eq!(Artifacts::parse("all").unwrap(), Artifacts::ALL);
        assert_eq!(Artifacts::ALL.iter().count(), 6);
        assert!(Artifacts::parse("none").unwrap().is_empty());
        let e = Artifacts::parse("report,captur").unwrap_err().to_string();
        assert!(
            e.contains("unknown artifact `captur` (did you mean `capture`?)"),
            "{e}"
        );
        assert!(
            e.contains("report, frames, events, html, capture, keylog"),
            "{e}"
        );
        assert!(Artifacts::parse("").is_err());
    }

    #[test]
    fn bad_partitions_name_the_valid_forms() {
        for bad in ["0/2", "3/2", "1/0", "1-2", "slice:1/2", "a/b", ""] {
            let e = Partition::parse(bad).unwrap_err().to_string();
            assert!(e.contains("valid forms: K/N"), "{bad}: {e}");
        }
    }
}
