//! The diagnosis scorer, re-exported from the `diagnosis` crate.

pub use diagnosis::score::*;
