//! The raw command line, as clap parses it: flags and strings exactly as
//! typed. [`super::settings`] turns them into checked settings (the two
//! steps ripgrep takes in `crates/core/flags/`), so that every message about
//! a bad value can name the valid forms.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  simbench list
  simbench run smoke --seed 7
  simbench run scenarios/smoke.toml --out /tmp/smoke --format json
  simbench check --junit target/simbench.xml
  simbench sweep smoke --seeds 1..50 --partition 1/4 --jobs 2
  simbench bench --filter fleet-day --repeat 3
  simbench next liveness-misses-fleet-failure-legacy

Exit codes: 0 every expectation holds, 1 an expectation (or a run) failed,
2 bad input (unknown scenario, malformed file, bad flag).
Logs: RUST_LOG-style filters on stderr, e.g. RUST_LOG=simbench::event=debug.
Docs: docs/cli.md";

const RUN_EXAMPLES: &str = "\
Examples:
  simbench run smoke                       # the file's seed
  simbench run smoke --seed 8              # another seed
  simbench run ./my-scenario.toml --out /tmp/run1
  simbench run smoke --format json | jq .counts
  simbench run fleet-day-healthy --artifacts report,html   # no capture

A name is one of the shipped scenarios (built into simbench; --scenarios DIR
or SIMBENCH_SCENARIOS=DIR use a directory instead); anything containing `/`
or ending in `.toml` is a path. Writes report.json, frames.jsonl,
events.jsonl, report.html, capture.pcapng (TLS and QUIC decryptable: the
secrets are inside) and keylog.txt to DIR before printing anything;
--artifacts report,frames keeps only those. Exit 0 when every expectation
holds, 1 when one fails (the replay command is printed), 2 on bad input.";

const CHECK_EXAMPLES: &str = "\
Examples:
  simbench check
  simbench check --filter smoke --junit target/simbench-junit.xml
  simbench check --partition hash:2/4            # CI machine 2 of 4

Each scenario runs twice with its own seed. Two JUnit test cases per
scenario: `expectations` (the first run meets every [[expect]]) and
`determinism` (both runs have the same digest). --partition count:K/N
keeps the scenarios at positions K, K+N, ... of the sorted (filtered)
catalogue; hash:K/N those whose FNV-1a hash of the name is K-1 modulo N.
On a terminal a progress bar; otherwise one line per finished run on
stderr. Colour on a terminal unless NO_COLOR is set. Exit 0 when all
pass, 1 when any fails or cannot run, 2 when --filter matches nothing.";

const SWEEP_EXAMPLES: &str = "\
Examples:
  simbench sweep smoke --seeds 1..100           # seeds 1 to 99
  simbench sweep smoke --seeds 1..=100          # seeds 1 to 100
  simbench sweep smoke --seeds 1..100 --partition 2/4    # CI machine 2 of 4

--partition K/N (same as count:K/N) runs the seeds at positions K, K+N,
K+2N, ... of the range (1-based), as nextest's count partitioning does;
hash:K/N runs the seeds whose FNV-1a hash of the decimal seed is K-1
modulo N. Exit 0 when every seed passes, 1 when any fails.";

/// `simbench`: a deterministic network simulator and diagnostic test bench.
#[derive(Debug, Parser)]
#[command(
    name = "simbench",
    version,
    about = "Replay field incidents as deterministic network simulations",
    after_help = EXAMPLES
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Use the scenarios in DIR instead of the catalogue built into simbench (also: SIMBENCH_SCENARIOS=DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the shipped scenarios: name, incident and summary.
    #[command(after_help = "Example:\n  simbench list")]
    List,
    /// Run one scenario, print its report, write its logs.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Run every shipped scenario twice; compare digests; write JUnit XML.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Run one scenario with many seeds; list the seeds that fail.
    #[command(after_help = SWEEP_EXAMPLES)]
    Sweep(SweepArgs),
    /// Decide H1..H7 from a frame log (a run's, or a real `fleet-server --frame-log`).
    #[command(after_help = DIAGNOSE_EXAMPLES)]
    Diagnose(DiagnoseArgs),
    /// Measure how fast and how big the shipped scenarios run.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(BenchArgs),
    /// Run conformance cases on real sockets (a Linux network namespace) and in the simulator; compare.
    #[command(after_help = CONFORM_EXAMPLES)]
    Conform(ConformArgs),
    /// Merge the JUnit files of several `check --partition` machines into one.
    #[command(after_help = JUNIT_MERGE_EXAMPLES)]
    JunitMerge(JunitMergeArgs),
    /// Run a scenario, run the engine's next experiment on a copy, show how the verdicts change.
    #[command(after_help = NEXT_EXAMPLES)]
    Next(NextArgs),
}

impl Command {
    /// How the command's work uses memory (see [`crate::malloc`]): `run` is
    /// one world that may be a large fleet; `sweep` runs many copies of one
    /// small world on worker threads, one after another. (`check` runs many
    /// worlds too, but of every size: measured, it gained nothing.)
    pub fn malloc_profile(&self) -> crate::malloc::Profile {
        use crate::malloc::Profile;
        match self {
            Command::Run(_) => Profile::OneLargeWorld,
            Command::Sweep(_) => Profile::ManyWorlds,
            _ => Profile::Default,
        }
    }
}

const JUNIT_MERGE_EXAMPLES: &str = "\
Examples:
  simbench junit-merge target/simbench.xml part-1.xml part-2.xml part-3.xml

Reads each file with quick-junit's reader; suites of the same name (every
share's `simbench check`) become one suite with every case in file order,
its time the sum, the counts recomputed. Exit 0 when the merged report has
no failure or error, 1 when it has one, 2 when a file cannot be read or is
not JUnit XML.";

/// `simbench junit-merge`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct JunitMergeArgs {
    /// The merged file to write (parent directories are created).
    #[arg(value_name = "OUT.xml")]
    pub out: PathBuf,
    /// The JUnit files to merge, in order.
    #[arg(value_name = "IN.xml", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
}

const NEXT_EXAMPLES: &str = "\
Examples:
  simbench next liveness-misses-fleet-failure-legacy
  simbench next h3-agent-command-path-broken --format json

Runs the scenario; wherever the engine leaves two or more hypotheses
standing, takes its next step's plan (a dispatch, an eviction, a liveness
probe, reading the agent's own logs), runs a copy of the scenario with it
and the same seed, and prints each verdict before -> after. Exit 0 when
every experiment separated its hypotheses (or there was none), 1 when one
did not or a run failed, 2 bad input. Docs: docs/cli.md";

/// `simbench next`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct NextArgs {
    /// A shipped scenario's name or a path to a .toml file.
    #[arg(value_name = "NAME|PATH")]
    pub scenario: String,
    /// The seed of both runs; default: the scenario file's `seed`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// What stdout gets: tables, or the experiments as JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
}

const CONFORM_EXAMPLES: &str = "\
Examples:
  sudo simbench conform                              # every case, a table
  sudo simbench conform --case tcp-7171-rejected --format json
  simbench conform --allow-skip                      # not root: say so, exit 0

Needs Linux, root, `ip` (iproute2) and `nft` (nftables); finds fleet-server,
fleet-agent and fleetctl next to simbench (cargo build --release) unless
--bin-dir. Each case gets its own network namespace; the fault is an
nftables rule in the input hook, the operator's actions go through the
operator API (fleetctl). Exit 0 when every check matches or is on the known list;
1 when a check differs and is not listed, when a listed one now matches,
or when the real side cannot run (without --allow-skip); 2 bad input.";

/// `simbench conform`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ConformArgs {
    /// Only this case.
    #[arg(long, value_name = "NAME")]
    pub case: Option<String>,
    /// The known-differences list.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "conform/known-differences.toml"
    )]
    pub known: PathBuf,
    /// Where fleet-server, fleet-agent and fleetctl are; default: simbench's own directory.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Exit 0 when namespaces cannot be made here (the cases are listed as skipped).
    #[arg(long)]
    pub allow_skip: bool,
    /// A table, or the report as JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
}

const BENCH_EXAMPLES: &str = "\
Examples:
  simbench bench                                  # every shipped scenario, 3 runs each
  simbench bench --filter fleet-day --repeat 5
  simbench bench --format json > bench.json

Runs each scenario REPEAT times, one run at a time (no other run shares the
machine with it), and prints per scenario: simulated time, the fastest and
the median wall time, simulated seconds per wall second, frames per wall
second, and the peak memory of the runs (Linux: VmHWM, reset before each
scenario; `-` elsewhere). Build with --release: a debug build is several
times slower. Exit 0 when every run finished, 1 when one did not.";

/// `simbench bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Only the scenarios whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Runs of each scenario (1 to 20).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeat: u32,
    /// What stdout gets: a table, or the measurements as JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
    /// Instead of the catalogue, the scaling curve: generated fleets of 100,
    /// 1,000 and 10,000 agents for 10 minutes, 50 for 1, 6 and 24 hours.
    #[arg(long)]
    pub scale: bool,
    /// Another simbench binary to measure beside this one, run for run in
    /// turn, with the ratios (each run in its own process, both builds).
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<std::path::PathBuf>,
}

const DIAGNOSE_EXAMPLES: &str = "\
Examples:
  simbench diagnose out/smoke-7/frames.jsonl --events out/smoke-7/events.jsonl
  fleet-server --frame-log srv/frames.jsonl ...; simbench diagnose srv/frames.jsonl
  simbench diagnose srv/frames.jsonl a1.frames.jsonl a2.frames.jsonl --events srv/events.jsonl --events a1.events.jsonl

Prints, per agent seen in the log, the outcome-table row and the verdict on
each hypothesis with the record numbers (lines of frames.jsonl) that decided
it, from the `server` point alone and from every point in the log.
Exit 0 when no agent is affected (every command acked), 1 when one is,
2 when a file cannot be read or a line is not a frame record.";

/// `simbench diagnose`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct DiagnoseArgs {
    /// Frame logs (JSON Lines): a run's, or a server's and its agents', merged by t_us.
    #[arg(value_name = "FRAMES.JSONL", required = true, num_args = 1..)]
    pub frames: Vec<PathBuf>,
    /// Event logs (repeatable), merged by t_us.
    #[arg(long, value_name = "FILE")]
    pub events: Vec<PathBuf>,
    /// Also write the merged frame log here (its lines are the record numbers).
    #[arg(long, value_name = "FILE")]
    pub merged: Option<PathBuf>,
    /// What stdout gets: tables, or the diagnoses as JSON.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
}

/// `simbench run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A shipped scenario's name (see `simbench list`) or a path to a .toml file.
    #[arg(value_name = "NAME|PATH")]
    pub scenario: String,
    /// The seed; default: the scenario file's `seed`.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Where report.json, frames.jsonl, events.jsonl, report.html, capture.pcapng and keylog.txt go; default: out/<scenario>-<seed>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// What stdout gets: the report as tables, or report.json only.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
    /// Which files to write: a list of report, frames, events, html, capture, keylog; or all, none. Default: all.
    #[arg(long, value_name = "LIST")]
    pub artifacts: Option<String>,
}

/// What `simbench run` prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for people; the layout may change between versions.
    Table,
    /// The report.json document only, for programs.
    Json,
}

/// `simbench check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Also write the results as JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Only the scenarios whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Run only this machine's share of the scenarios: K/N or count:K/N, or hash:K/N.
    #[arg(long, value_name = "K/N")]
    pub partition: Option<String>,
    /// What stdout gets: tables, or one JSON document (the family of report.json's `verdict`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
    /// How many runs at once; default and most: the number of CPUs.
    #[arg(long, short, value_name = "J")]
    pub jobs: Option<usize>,
    /// Which files each run writes: a list of report, frames, events, html, capture, keylog; or all, none. Default: none.
    #[arg(long, value_name = "LIST")]
    pub artifacts: Option<String>,
    /// Where each run's directory (<scenario>-<seed>) goes, with --artifacts; default: out.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `simbench sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// A shipped scenario's name or a path to a .toml file.
    #[arg(value_name = "NAME|PATH")]
    pub scenario: String,
    /// The seeds: A..B (B excluded), A..=B (B included) or one seed N.
    #[arg(long, value_name = "A..B")]
    pub seeds: String,
    /// Run only this machine's share: K/N or count:K/N, or hash:K/N.
    #[arg(long, value_name = "K/N")]
    pub partition: Option<String>,
    /// What stdout gets: tables, or one JSON document (the family of report.json's `verdict`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
    /// How many runs at once; default and most: the number of CPUs.
    #[arg(long, short, value_name = "J")]
    pub jobs: Option<usize>,
    /// Which files each run writes: a list of report, frames, events, html, capture, keylog; or all, none. Default: none.
    #[arg(long, value_name = "LIST")]
    pub artifacts: Option<String>,
    /// Where each run's directory (<scenario>-<seed>) goes, with --artifacts; default: out.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also write the results as JUnit XML to FILE: one case per seed run here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}
