//! Every shipped scenario parses, resolves, runs and meets its expectations;
//! every fixed scenario that has a legacy twin fails under the legacy preset.

use format::scenario::{Behavior, Preset, Scenario};
use sim::scenario::{evaluate, resolve};

mod common;
use common::shipped;

fn failures(sc: &Scenario) -> Vec<String> {
    let spec = resolve(sc, None).unwrap_or_else(|e| panic!("{e}"));
    let out = sim::run::run(&spec).unwrap_or_else(|e| panic!("{}: {e}", sc.name));
    let mut failed: Vec<String> = evaluate(sc, &out.outcome)
        .into_iter()
        .filter(|(_, r)| !r.passed)
        .map(|(_, r)| r.message)
        .collect();
    // The world ran every host on time: no timer fired late because it had
    // not announced itself, no host was woken while it lagged behind.
    let world = &out.outcome["network"]["world"];
    for counter in ["late_datagrams", "late_wakes"] {
        if world[counter].as_u64() != Some(0) {
            failed.push(format!(
                "network.world.{counter} is {}, not 0",
                world[counter]
            ));
        }
    }
    failed
}

#[test]
fn every_shipped_scenario_holds_its_expectations() {
    let all = shipped();
    assert!(all.len() >= 5, "the catalogue is shipped");
    for (file, sc) in &all {
        assert_eq!(file, &sc.name, "file name and scenario name agree");
        assert!(!sc.expects.is_empty(), "{file} has expectations");
        let failed = failures(sc);
        assert!(failed.is_empty(), "{file}:\n{}", failed.join("\n"));
    }
}

/// Fixed scenarios whose legacy twin is not named `<name>-legacy` (the
/// name says what the legacy run shows).
const TWINS: &[(&str, &str)] = &[(
    "liveness-fleet-failure",
    "liveness-misses-fleet-failure-legacy",
)];

/// The legacy twin's name of a fixed scenario, if it has one.
fn twin_name(file: &str) -> String {
    TWINS
        .iter()
        .find(|(fixed, _)| *fixed == file)
        .map_or_else(|| format!("{file}-legacy"), |(_, twin)| twin.to_string())
}

#[test]
fn every_explicit_twin_pair_ships() {
    let all = shipped();
    for (fixed, twin) in TWINS {
        for name in [fixed, twin] {
            assert!(all.iter().any(|(n, _)| n == name), "{name} is shipped");
        }
    }
}

/// A fixed scenario whose legacy twin ships shows a real fix: run with
/// the twin's behaviours (the legacy preset wherever the twin says
/// `legacy`), its own expectations fail. The twin may keep a switch fixed on
/// purpose: the probe-close follow-up exists only because `up` probes.
#[test]
fn fixed_scenarios_fail_under_their_legacy_behaviour() {
    let all = shipped();
    let mut checked = Vec::new();
    for (file, sc) in &all {
        let Some((_, twin)) = all.iter().find(|(n, _)| *n == twin_name(file)) else {
            continue;
        };
        let mut legacy = sc.clone();
        legacy.server.behavior = twin.server.behavior.clone();
        for a in &mut legacy.agents {
            let t = twin.agents.iter().find(|t| t.name == a.name);
            a.behavior = t.map_or(Behavior::preset(Preset::Legacy), |t| t.behavior.clone());
        }
        assert_ne!(
            &legacy, sc,
            "{file}: the twin must differ in behaviour from the fixed scenario"
        );
        let failed = failures(&legacy);
        assert!(
            !failed.is_empty(),
            "{file} still holds every expectation with its legacy twin's behaviour: the fix is not what makes it pass"
        );
        checked.push(file.as_str());
    }
    assert!(
        checked.len() >= 5,
        "the fixed/legacy pairs ship: {checked:?}"
    );
    for (fixed, _) in TWINS {
        assert!(checked.contains(fixed), "{fixed} was checked: {checked:?}");
    }
}
