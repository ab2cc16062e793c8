//! Every shipped scenario parses, resolves, runs and meets its expectations.

use sim::scenario::{catalogue_dir, evaluate, resolve};

#[test]
fn smoke_scenario_file_holds_its_expectations() {
    let sc = format::load(&catalogue_dir().join("smoke.toml")).expect("smoke.toml parses");
    let spec = resolve(&sc, None).expect("smoke resolves");
    let out = sim::run::run(&spec).expect("smoke runs");
    let results = evaluate(&sc, &out.outcome);
    assert!(!results.is_empty());
    for (_, r) in &results {
        assert!(r.passed, "{}", r.message);
    }
}
