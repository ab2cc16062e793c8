//! `simbench next`: on shipped scenarios where the engine leaves
//! hypotheses standing, the experiment it names, run on a copy of the
//! scenario with the same seed, separates them, and what it decides is the
//! scenario's injected truth (issue 15, item 2).

use std::process::Command;

use serde_json::Value;

fn simbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(args)
        .output()
        .expect("simbench runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn next_json(scenario: &str) -> Value {
    let (code, out, err) = simbench(&["next", scenario, "--format", "json"]);
    let doc: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{scenario}: not JSON ({e}): {out}\nstderr: {err}"));
    assert_eq!(code, 0, "{scenario}: exit {code}: {out}\nstderr: {err}");
    doc
}

/// The experiment that separates `between` for `agent`, with every
/// standing hypothesis decided as the truth says: supported when
/// injected, refuted otherwise.
fn assert_separates(doc: &Value, agent: &str, between: &[&str], plan_do: &str) -> Value {
    let e = doc["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["agent"] == agent && e["between"] == serde_json::json!(between))
        .unwrap_or_else(|| panic!("no experiment for {agent} {between:?}: {doc:#}"))
        .clone();
    assert_eq!(e["plan"]["steps"][0]["do"], plan_do, "{e:#}");
    assert_eq!(e["separated"], true, "{e:#}");
    let standing = e["standing"].as_array().unwrap();
    assert_eq!(standing.len(), between.len());
    for c in standing {
        let want = if c["truth"] == true {
            "supported"
        } else {
            "refuted"
        };
        assert_eq!(
            c["after"], want,
            "{} after the experiment vs the injected truth: {e:#}",
            c["hypothesis"]
        );
    }
    assert!(
        standing.iter().any(|c| c["before"] != c["after"]),
        "the experiment changed a verdict: {e:#}"
    );
    e
}

/// `liveness-checkin-recovers` with legacy behaviours and no expectations:
/// the check-ins fail for 40 s and recover, so the monitor's probe before
/// the end (logged) sees a healthy agent and leaves I3-liveness-masks
/// standing; only a probe during the failure decides it.
fn legacy_recovering_copy() -> String {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/liveness-checkin-recovers.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let text = text[..text.find("[[expect]]").unwrap()]
        .replace(
            "name = \"liveness-checkin-recovers\"",
            "name = \"liveness-recovers-legacy\"",
        )
        .replace("behavior = \"fixed\"", "behavior = \"legacy\"");
    let dir = std::env::temp_dir().join(format!("simbench-next-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("liveness-recovers-legacy.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_liveness_probe_confirms_that_legacy_liveness_masks_failing_checkins() {
    let doc = next_json(&legacy_recovering_copy());
    let e = assert_separates(&doc, "kiosk", &["I3-liveness-masks"], "probe-liveness");
    assert_eq!(e["standing"][0]["before"], "inconclusive");
    assert_eq!(e["standing"][0]["truth"], true);
    assert!(
        e["applied"][0].as_str().unwrap().contains("probe kiosk"),
        "{e:#}"
    );
    // The probe decides nothing else.
    assert_eq!(e["changes"].as_array().unwrap().len(), 1, "{e:#}");
}

#[test]
fn a_liveness_probe_refutes_masking_when_liveness_counts_the_fleet_state() {
    let doc = next_json("liveness-checkin-recovers");
    let e = assert_separates(&doc, "kiosk", &["I3-liveness-masks"], "probe-liveness");
    assert_eq!(e["standing"][0]["truth"], false);
}

#[test]
fn the_monitors_probe_before_the_end_decides_masking_in_the_shipped_runs() {
    // The failure lasts to the end: the logged probe of the bench's monitor
    // decides it, and `next` has nothing left to separate for it.
    for (scenario, want) in [
        ("liveness-misses-fleet-failure-legacy", "supported"),
        ("liveness-fleet-failure", "refuted"),
    ] {
        let dir = std::env::temp_dir().join(format!(
            "simbench-next-run-{scenario}-{}",
            std::process::id()
        ));
        let (code, out, err) = simbench(&[
            "run",
            scenario,
            "--format",
            "json",
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{scenario}: {err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        let named = doc["agents"]["kiosk"]["diagnosis"]["full"]["named"]
            .as_array()
            .unwrap();
        let v = named
            .iter()
            .find(|n| n["hypothesis"] == "I3-liveness-masks")
            .unwrap_or_else(|| panic!("{scenario}: {named:#?}"));
        assert_eq!(v["status"], want, "{scenario}: {v:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_agents_own_log_separates_h2_from_h3() {
    let doc = next_json("h3-agent-command-path-broken");
    let e = assert_separates(&doc, "pst-server", &["H2", "H3"], "read-agent-logs");
    assert_eq!(e["view"], "server");
    assert_eq!(e["after_view"], "full");
    assert_eq!(e["applied"], serde_json::json!([]));
}

#[test]
fn the_table_shows_each_verdict_before_and_after() {
    let (code, out, err) = simbench(&["next", &legacy_recovering_copy()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("Experiment 1: I3-liveness-masks (kiosk, full view)"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("kiosk") && l.contains("I3-liveness-masks"))
        .unwrap_or_else(|| panic!("{out}"));
    let words: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "kiosk",
            "full",
            "I3-liveness-masks",
            "inconclusive",
            "supported",
            "yes"
        ]
    );
    assert!(out.contains("separated"), "{out}");
}

#[test]
fn a_scenario_with_nothing_standing_runs_no_experiment() {
    let (code, out, err) = simbench(&["next", "smoke"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("nothing to run"), "{out}");
}

#[test]
fn an_unknown_scenario_is_bad_input() {
    let (code, _, err) = simbench(&["next", "smok"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("did you mean `smoke`"), "{err}");
}

/// h7-unparsable-command without its second command: the agent could not
/// parse the one command it got, so H7 is supported and H3 inconclusive
/// until a second command kind is tried; `next` tries it.
const ONE_UNPARSABLE: &str = r#"
name = "h7-one-command"
summary = "H7 with a single command: the agent cannot parse it and gets no other."
incident = "command-delivery"
seed = 1
duration = "4m"

[server]
behavior = "fixed"

[[agent]]
name = "pst-server"
site = "pst"

[[fault]]
kind = "agent-bug"
agent = "pst-server"
bug = "unparsable-command"
command = "hostname"

[[action]]
at = "1m"
do = "dispatch"
agent = "pst-server"
command = "hostname"
"#;

#[test]
fn a_second_command_kind_separates_h3_from_h7() {
    let dir = std::env::temp_dir().join(format!("simbench-next-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h7-one-command.toml");
    std::fs::write(&path, ONE_UNPARSABLE).unwrap();
    let doc = next_json(path.to_str().unwrap());
    let e = assert_separates(&doc, "pst-server", &["H3", "H7"], "dispatch");
    assert_eq!(e["view"], "full");
    // The copy dispatched a command other than the unparsable one.
    let applied = e["applied"][0].as_str().unwrap();
    assert!(
        applied.contains("dispatch `version` to pst-server"),
        "{applied}"
    );
    assert_eq!(e["standing"][1]["before"], "supported", "H7 was supported");
    let _ = std::fs::remove_dir_all(&dir);
}
