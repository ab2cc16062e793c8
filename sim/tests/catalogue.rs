//! Every shipped scenario parses, resolves, runs and meets its expectations;
//! every fixed scenario that has a legacy twin fails under the legacy preset.

use format::scenario::{Behavior, Preset, Scenario};
use sim::scenario::{catalogue_dir, evaluate, resolve};

fn shipped() -> Vec<(String, Scenario)> {
    let mut files: Vec<_> = std::fs::read_dir(catalogue_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let sc = format::load(&p).unwrap_or_else(|e| panic!("{e}"));
            (p.file_stem().unwrap().to_string_lossy().into_owned(), sc)
        })
        .collect()
}

fn failures(sc: &Scenario) -> Vec<String> {
    let spec = resolve(sc, None).unwrap_or_else(|e| panic!("{e}"));
    let out = sim::run::run(&spec).unwrap_or_else(|e| panic!("{}: {e}", sc.name));
    evaluate(sc, &out.outcome)
        .into_iter()
        .filter(|(_, r)| !r.passed)
        .map(|(_, r)| r.message)
        .collect()
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

/// A fixed scenario whose `-legacy` twin ships shows a real fix: with every
/// behaviour set to `legacy`, its own expectations fail.
#[test]
fn fixed_scenarios_fail_under_the_legacy_preset() {
    let all = shipped();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let mut checked = 0;
    for (file, sc) in &all {
        if file.ends_with("-legacy") || !names.contains(&format!("{file}-legacy").as_str()) {
            continue;
        }
        let mut legacy = sc.clone();
        legacy.server.behavior = Behavior::preset(Preset::Legacy);
        for a in &mut legacy.agents {
            a.behavior = Behavior::preset(Preset::Legacy);
        }
        let failed = failures(&legacy);
        assert!(
            !failed.is_empty(),
            "{file} still holds every expectation under the legacy preset: the fix is not what makes it pass"
        );
        checked += 1;
    }
    assert!(checked >= 1, "at least one fixed/legacy pair ships");
}
