//! The scenario file format v1 of simbench: plain data, a parser and checks
//! with located errors. No simulator inside; the `sim` crate runs what this
//! crate describes, the CLI and the docs print its catalogues.
//!
//! Map of the crate:
//! - [`scenario`]: the data types ([`Scenario`], [`Agent`], [`Fault`],
//!   [`Action`], [`Expect`], ...), serializable back to TOML or to JSON.
//! - [`catalogue`]: every name a file may use (top-level keys, fault kinds,
//!   actions, switches, presets, operators, outcome paths) with a one-line
//!   meaning each, as `&'static` lists.
//! - [`duration`]: `"90s"`, `"5m"`, `"1h30m"`, `"250ms"` to and from
//!   [`std::time::Duration`].
//! - [`outcome`]: which outcome paths exist ([`observe_path_is_known`]),
//!   finding a path in an outcome document ([`lookup`]) and judging an
//!   expectation ([`evaluate`]).
//! - [`ScenarioError`]: `file:line:column: message` with the valid choices
//!   and a "did you mean".
//! - [`parse_scenario`] and [`load`]: the way in.
//!
//! `docs/scenarios.md` documents the format for people; a test keeps it in
//! step with the catalogues.

#![warn(missing_docs)]

pub mod catalogue;
pub mod duration;
mod error;
pub mod outcome;
mod parse;
pub mod scenario;
mod suggest;
mod tree;

use std::path::Path;

pub use catalogue::switch;
pub use duration::{format_duration, parse_duration, DurationError, SignedDuration};
pub use error::{line_column, ErrorKind, ScenarioError};
pub use outcome::{evaluate, lookup, observe_path_is_known, ExpectResult};
pub use scenario::*;
pub use suggest::{did_you_mean, edit_distance};

/// Parses and checks a scenario from its text. `path_for_messages` is the
/// file name errors start with; nothing is read from disk.
///
/// Never panics: any text gives either a scenario or one error that says
/// where (`file:line:column`), what was expected and what is valid.
pub fn parse_scenario(path_for_messages: &str, text: &str) -> Result<Scenario, ScenarioError> {
    parse::parse(path_for_messages, text)
}

/// [`parse_scenario`], with notes about old spellings that still parse
/// (each `file:line:column: note: ...`, naming the new spelling), for the
/// caller to show.
pub fn parse_scenario_with_notes(
    path_for_messages: &str,
    text: &str,
) -> Result<(Scenario, Vec<String>), ScenarioError> {
    parse::parse_with_notes(path_for_messages, text)
}

/// Reads and parses the scenario file at `path`; errors name the path as
/// given.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_scenario(&shown, &text)
}
