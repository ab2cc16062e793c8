//! The simulated side of a case: its scenario, resolved and run with the
//! scenario's own seed (deterministic), and the checks read off the run.

use super::{Case, Observed};
use crate::run::RunOptions;

/// Runs `case`'s scenario; why not, when it cannot be simulated.
pub fn run(case: &Case) -> Result<Observed, String> {
    let sc = format::parse_scenario(&format!("conform case {}", case.name), case.scenario)
        .map_err(|e| e.to_string())?;
    let spec =
        crate::scenario::resolve(&sc, None).map_err(|e| format!("unsupported: {}", e.what))?;
    let out = crate::run::run_with(&spec, RunOptions::default()).map_err(|e| e.to_string())?;
    Ok((case.sim)(&out))
}
