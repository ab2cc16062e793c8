//! Turns a finished simbench run into what people and CI systems read:
//! terminal tables, an HTML page and JUnit XML. Plain functions from data to `String`;
//! nothing here runs a simulation, reads a clock or touches the disk, so the
//! `simbench` CLI, tests and other tools call the same code with any run.
//!
//! Map of the crate:
//! - [`run`]: the report of one run ([`run::RunView`]): summary, hosts,
//!   faults in force, the timeline, the verdicts and the expectations, each
//!   a table.
//! - [`timeline`]: the per-connection timeline of the frames that matter,
//!   short by construction (routine frames folded, rows capped, the rest
//!   counted).
//! - [`verdicts`]: what the hypothesis engine decided for each agent, read
//!   from the outcome document: a fleet table (healthy agents collapsed) and
//!   one table of H1..H7 with the evidence per affected agent.
//! - [`catalogue`]: the tables of `simbench list`, `check` and `sweep`.
//! - [`json`]: the JSON verdicts of `run`, `check`, `sweep` and `bench`, one family.
//! - [`junit`]: a hand-written JUnit XML writer that CI systems read.
//! - [`sequence`]: report.html's sequence diagrams, inline SVG.
//! - [`html`]: report.html, the run's report as one self-contained page.
//! - [`style`]: the one table style and the time formats every table uses.
//!
//! Output is deterministic: the same inputs give the same bytes. The only
//! number that changes between two runs of one scenario and seed is the wall
//! time, which [`run::summary`] prints on its own row labelled `wall time`
//! and only when the caller passes one.

#![warn(missing_docs)]

pub mod catalogue;
pub mod html;
pub mod json;
pub mod junit;
pub mod run;
pub mod sequence;
pub mod style;
pub mod timeline;
pub mod verdicts;
