//! Good files: they parse, and what they parse to survives a trip through
//! TOML (and JSON) unchanged.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use format::catalogue::{ACTIONS, FAULT_KINDS, SWITCHES};
use format::{ActionKind, FaultKind, Preset, Scenario};

fn good_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/good");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/good")
        .join(name);
    format::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn good_files_round_trip_through_toml() {
    let files = good_files();
    assert!(files.len() >= 2);
    for path in files {
        let scenario = format::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let written = toml::to_string(&scenario).unwrap();
        let again = format::parse_scenario("written.toml", &written)
            .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
        assert_eq!(scenario, again, "{}:\n{written}", path.display());
        // Written once more, the text is stable.
        assert_eq!(toml::to_string(&again).unwrap(), written);
        // The JSON form has the same shape as the file.
        let json = serde_json::to_value(&scenario).unwrap();
        assert_eq!(json["name"], scenario.name.as_str());
        assert_eq!(json["duration"], format::format_duration(scenario.duration));
    }
}

#[test]
fn the_design_example_reads_as_documented() {
    let s = load("text-frame-loss.toml");
    assert_eq!(s.name, "text-frame-loss");
    assert_eq!(s.seed, 1);
    assert_eq!(s.duration, Duration::from_secs(20 * 60));
    assert_eq!(s.tick, Duration::from_millis(10));
    assert_eq!(s.server.behavior.preset, Preset::Legacy);
    assert!(!s
        .server
        .behavior
        .is_on(format::switch::REGISTRY_GENERATION_CHECK));
    assert_eq!(s.agents[0].site, "pst");
    assert!(s.agents[0].behavior.is_on(format::switch::UP_PROBE));
    assert_eq!(s.faults[0].from, Some(Duration::from_secs(120)));
    assert_eq!(s.faults[0].until, None);
    assert_eq!(s.dispatches()[0].id, "cmd-0001");
    assert_eq!(s.expects.len(), 2);
}

#[test]
fn every_catalogue_entry_parses() {
    let s = load("every-kind.toml");
    let faults: BTreeSet<&str> = s.faults.iter().map(|f| f.kind.name()).collect();
    let catalogue: BTreeSet<&str> = FAULT_KINDS.iter().map(|k| k.name).collect();
    assert_eq!(
        faults, catalogue,
        "every-kind.toml must use every fault kind"
    );
    let actions: BTreeSet<&str> = s.actions.iter().map(|a| a.kind.name()).collect();
    let catalogue: BTreeSet<&str> = ACTIONS.iter().map(|k| k.name).collect();
    assert_eq!(actions, catalogue, "every-kind.toml must use every action");
    let mut switches: BTreeSet<&str> = BTreeSet::new();
    for b in std::iter::once(&s.server.behavior).chain(s.agents.iter().map(|a| &a.behavior)) {
        switches.extend(b.switches.keys().map(String::as_str));
    }
    let catalogue: BTreeSet<&str> = SWITCHES.iter().map(|(n, _)| *n).collect();
    assert_eq!(switches, catalogue, "every-kind.toml must set every switch");
}

#[test]
fn defaults_and_expansion() {
    let s = load("every-kind.toml");
    assert_eq!(
        s.agent_names(),
        ["pst-server", "edge-1", "edge-2", "edge-3", "laptop"]
    );
    assert_eq!(s.sites(), ["pst", "branch", "laptop"]);
    let laptop = &s.agent_instances()[4];
    assert_eq!(laptop.site, "laptop");
    assert_eq!(laptop.version, "1.0.0");
    assert_eq!(laptop.behavior.preset, Preset::Fixed);
    assert!(!laptop.behavior.is_on("delayed_enroll_backoff"));
    assert!(laptop.behavior.is_on("up_probe"));
    let edge2 = &s.agent_instances()[2];
    assert_eq!(
        (edge2.group.as_str(), edge2.site.as_str()),
        ("edge", "branch")
    );
    match &s.faults[1].kind {
        FaultKind::Block {
            port,
            direction,
            action,
            ..
        } => {
            assert_eq!(*port, None);
            assert_eq!(*direction, format::Direction::Both);
            assert_eq!(*action, format::BlockAction::Drop);
        }
        other => panic!("{other:?}"),
    }
    match &s.faults[14].kind {
        FaultKind::EnrollErrors { status } => assert_eq!(*status, 503),
        other => panic!("{other:?}"),
    }
    match &s.actions[0].kind {
        ActionKind::Install {
            agent,
            timeout,
            kill_up_after,
            delay_enroll,
        } => {
            assert_eq!(*agent, None);
            assert_eq!(*timeout, Duration::from_secs(60));
            assert_eq!(*kill_up_after, None);
            assert!(!*delay_enroll);
        }
        other => panic!("{other:?}"),
    }
    match &s.actions[1].kind {
        ActionKind::Install { kill_up_after, .. } => {
            assert_eq!(*kill_up_after, Some(format::KillPoint::CertsWritten))
        }
        other => panic!("{other:?}"),
    }
    // Dispatch order is time order; the last action is at the very end.
    let d = s.dispatches();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[1].id.as_str(), d[1].agent.as_str()),
        ("cmd-0002", "edge-3")
    );
    // A datetime operand becomes a string.
    assert_eq!(s.expects[7].value, "1979-05-27T07:32:00Z");
    assert_eq!(s.seed, 18_446_744_073_709_551);
}

#[test]
fn shipped_scenarios_parse_and_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let scenario = format::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let written = toml::to_string(&scenario).unwrap();
        let again = format::parse_scenario("written.toml", &written)
            .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
        assert_eq!(scenario, again, "{}", path.display());
    }
}
