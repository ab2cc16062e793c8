//! Helpers shared by the integration tests.

use format::scenario::Scenario;

/// Every shipped scenario, as `simbench list` finds them, parsed: (name, scenario).
pub fn shipped() -> Vec<(String, Scenario)> {
    sim::cli::source::catalogue()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|f| {
            let r = sim::cli::source::ScenarioRef::Name(f.name.clone());
            let loaded = sim::cli::source::load(&r).unwrap_or_else(|e| panic!("{e}"));
            (f.name, loaded.scenario)
        })
        .collect()
}
