//! The hypothesis engine, re-exported from the `diagnosis` crate (which
//! builds on `records` alone: no tokio, quinn, rustls or turmoil), plus
//! [`truth`]: what the simulator injected, for scoring.

pub use diagnosis::*;

pub mod truth;
