//! The `simbench` command line, as a library: `main.rs` parses the
//! arguments, calls [`execute`] and turns the result into an exit code, so
//! tests and other tools run exactly what the binary runs.
//!
//! Map of the module:
//! - [`args`]: the raw flags as clap parses them (with `--help` examples);
//! - [`settings`]: the same, checked and resolved (seed ranges, partitions,
//!   job counts), the second of ripgrep's two steps;
//! - [`source`]: scenario names and paths, the shipped catalogue;
//! - `list`, `run`, `check`, `sweep`, `diagnose`, `bench`, `conform`: one file per subcommand;
//! - `pool`: J runs at once on scoped threads, and the stderr progress line.
//!
//! Exit codes ([`Exit`]): 0 every expectation holds, 1 an expectation or a
//! run failed, 2 bad input. Human output goes to stdout and may change
//! between versions; report.json, frames.jsonl, events.jsonl, the JUnit XML
//! and `run --format json` are the machine-readable outputs.

pub mod args;
mod bench;
mod check;
mod conform;
mod diagnose;
mod list;
mod pool;
mod run;
pub mod settings;
pub mod source;
mod sweep;

use std::io::Write;

use self::settings::Settings;

/// How `simbench` ends (nextest's `NextestExitCode`, ripgrep's 0/1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every expectation holds (and for `check`, every digest repeats).
    Success = 0,
    /// An expectation failed, a run failed, or `check` found a
    /// nondeterministic scenario. The output says which and how to replay it.
    Failed = 1,
    /// Bad input: an unknown scenario, a malformed or unsupported scenario
    /// file, a bad flag value, an output directory that cannot be written.
    BadInput = 2,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a command could not do its work. Every variant is bad input
/// ([`Exit::BadInput`]); failed expectations are not errors but an
/// [`Exit::Failed`] result.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A message that already says what is wrong and what to do.
    #[error("{0}")]
    BadInput(String),
    /// The scenario file is malformed (`file:line:column: ...`).
    #[error(transparent)]
    Scenario(format::ScenarioError),
    /// The scenario uses something the bench cannot simulate yet.
    #[error(transparent)]
    Unsupported(#[from] crate::scenario::Unsupported),
    /// A file the user asked for could not be written.
    #[error("cannot write {path}: {source}; choose a writable place with {flag}")]
    Write {
        /// The file or directory.
        path: String,
        /// The flag that chooses it (`--out DIR`, `--junit FILE`).
        flag: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// stdout or stderr went away (for example `simbench list | head -1`).
    #[error("cannot write to the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

impl CliError {
    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        Exit::BadInput
    }

    /// Whether the reader closed the pipe: not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Terminal(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Runs the command `args` asks for, writing human output to `out` and
/// notes (warnings, the progress line) to `err`.
pub fn execute(
    args: args::Args,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    match Settings::from_args(args)? {
        Settings::List => list::list(out, err),
        Settings::Run(s) => run::run(&s, out, err),
        Settings::Check(s) => check::check(&s, out, err),
        Settings::Sweep(s) => sweep::sweep(&s, out, err),
        Settings::Diagnose(d) => diagnose::diagnose(&d, out, err),
        Settings::Bench(b) => bench::bench(&b, out, err),
        Settings::Conform(c) => conform::conform(&c, out, err),
    }
}

/// Installs the tracing subscriber: `RUST_LOG`-style filters (default
/// `warn`), plain text on stderr, colours only when stderr is a terminal.
/// A `RUST_LOG` that does not parse is reported and replaced by `warn`.
pub fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={spec:?} is not a valid filter ({e}); using `warn`");
            EnvFilter::new("warn")
        }),
        _ => EnvFilter::new("warn"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The command that replays `scenario` (as typed) with `seed`, from the
/// workspace, the way README.md runs simbench.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!(
        "cargo run --release -p sim --bin simbench -- run {} --seed {seed}",
        shell_quote(scenario)
    )
}

/// Quotes `s` for a POSIX shell when it holds anything but plain path characters.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_commands_quote_what_a_shell_would_split() {
        assert_eq!(
            replay_command("smoke", 7),
            "cargo run --release -p sim --bin simbench -- run smoke --seed 7"
        );
        assert!(replay_command("/tmp/my file.toml", 1).contains("run '/tmp/my file.toml' --seed 1"));
        assert!(replay_command("it's.toml", 1).contains("run 'it'\\''s.toml'"));
    }
}
