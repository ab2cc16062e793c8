//! The `simbench` command line, as a library: `main.rs` parses the
//! arguments, calls [`execute`] and turns the result into an exit code, so
//! tests and other tools run exactly what the binary runs.
//!
//! Map of the module:
//! - [`args`]: the raw flags as clap parses them (with `--help` examples);
//! - [`settings`]: the same, checked and resolved (seed ranges, partitions,
//!   job counts), the second of ripgrep's two steps;
//! - [`source`]: scenario names and paths, the shipped catalogue;
//! - `list`, `run`, `check`, `sweep`, `diagnose`, `bench`, `conform`, `next`: one file per subcommand;
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
mod next;
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
    source::set_catalogue_dir(args.scenarios.clone());
    match Settings::from_args(args)? {
        Settings::List => list::list(out, err),
        Settings::Run(s) => run::run(&s, out, err),
        Settings::Check(s) => check::check(&s, out, err),
        Settings::Sweep(s) => sweep::sweep(&s, out, err),
        Settings::Diagnose(d) => diagnose::diagnose(&d, out, err),
        Settings::Bench(b) => bench::bench(&b, out, err),
        Settings::Conform(c) => conform::conform(&c, out, err),
        Settings::JunitMerge(m) => junit_merge(&m, out),
        Settings::Next(n) => next::next(&n, out, err),
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
        .with_timer(SimTime)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Stamps log lines with the simulated time of the host that logs
/// (`sim 1:10.012`) inside a simulation, and with `-` outside one (the
/// harness between steps, the CLI itself): the wall clock says nothing
/// about a deterministic run.
#[derive(Debug, Clone, Copy)]
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", sim_stamp(crate::world::elapsed()))
    }
}

fn sim_stamp(elapsed: Option<std::time::Duration>) -> String {
    match elapsed {
        Some(d) => format!(
            "sim {}",
            reports::style::sim_time(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        ),
        None => "sim -".into(),
    }
}

/// Whether stdout gets colour: it is a terminal and `NO_COLOR` is unset or
/// empty (<https://no-color.org>).
pub(crate) fn colour_stdout() -> bool {
    use std::io::IsTerminal;
    colour_allowed(std::env::var_os("NO_COLOR").as_deref()) && std::io::stdout().is_terminal()
}

/// `NO_COLOR` set to anything but the empty string turns colour off.
fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

/// The command that replays `scenario` with `seed` from any directory: a
/// shipped name as it is (it is built into simbench), a path made absolute.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    let shown = match source::ScenarioRef::parse(scenario) {
        source::ScenarioRef::Name(n) => n,
        source::ScenarioRef::Path(p) => std::path::absolute(&p).unwrap_or(p).display().to_string(),
    };
    let catalogue = match (
        source::ScenarioRef::parse(scenario),
        source::catalogue_dir(),
    ) {
        (source::ScenarioRef::Name(_), Some(dir)) => format!(
            " --scenarios {}",
            shell_quote(
                &std::path::absolute(&dir)
                    .unwrap_or(dir)
                    .display()
                    .to_string()
            )
        ),
        _ => String::new(),
    };
    format!(
        "simbench run {}{catalogue} --seed {seed}",
        shell_quote(&shown)
    )
}

/// Escapes what a terminal would act on in text from a file or a peer:
/// control characters (ESC, CR, ...) and the bidirectional overrides and
/// isolates (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C) become
/// `\u{..}`, so a scenario's `summary` cannot rewrite the screen or reorder
/// what is shown. Newlines and tabs stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}');
        if (c.is_control() && c != '\n' && c != '\t') || bidi {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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

/// `simbench junit-merge OUT IN...`: one JUnit file from several.
fn junit_merge(m: &args::JunitMergeArgs, out: &mut dyn Write) -> Result<Exit, CliError> {
    let mut inputs = Vec::new();
    for path in &m.inputs {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::BadInput(format!("{}: cannot read it: {e}", path.display())))?;
        inputs.push((path.display().to_string(), text));
    }
    let merged = reports::junit::merge("simbench", &inputs)
        .map_err(|e| CliError::BadInput(e.to_string()))?;
    let write_error = |source| CliError::Write {
        path: m.out.display().to_string(),
        flag: "OUT.xml",
        source,
    };
    if let Some(parent) = m.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    std::fs::write(&m.out, &merged.xml).map_err(write_error)?;
    let reports::junit::Merged {
        tests,
        failures,
        errors,
        skipped,
        ..
    } = merged;
    writeln!(
        out,
        "merged {} into {}: {tests} tests, {failures} failures, {errors} errors, {skipped} skipped",
        reports::style::count(m.inputs.len(), "file", "files"),
        m.out.display()
    )?;
    Ok(if failures + errors > 0 {
        Exit::Failed
    } else {
        Exit::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_carry_simulated_time() {
        assert_eq!(
            sim_stamp(Some(std::time::Duration::from_millis(70_012))),
            "sim 1:10.012"
        );
        assert_eq!(sim_stamp(None), "sim -");
    }

    #[test]
    fn no_color_turns_colour_off_unless_empty() {
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some(std::ffi::OsStr::new(""))));
        assert!(!colour_allowed(Some(std::ffi::OsStr::new("1"))));
    }

    #[test]
    fn replay_commands_quote_what_a_shell_would_split_and_work_anywhere() {
        assert_eq!(replay_command("smoke", 7), "simbench run smoke --seed 7");
        assert_eq!(
            replay_command("/tmp/my file.toml", 1),
            "simbench run '/tmp/my file.toml' --seed 1"
        );
        let cwd = std::env::current_dir().unwrap();
        let quoted = shell_quote(&cwd.join("it's.toml").display().to_string());
        assert_eq!(
            replay_command("it's.toml", 1),
            format!("simbench run {quoted} --seed 1"),
            "relative paths become absolute"
        );
    }

    #[test]
    fn printable_escapes_terminal_controls_and_bidi() {
        assert_eq!(printable("ok\tline\n"), "ok\tline\n");
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\u{202E}y\u{2066}"), "x\\u{202e}y\\u{2066}");
        assert_eq!(printable("\r"), "\\u{d}");
    }
}
