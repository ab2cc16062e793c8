//! End-to-end runs of the real agent and server on turmoil.

use std::time::Duration;

use agent::AgentSwitches;
use format::scenario::Target;
use sim::run::{run, ActionKind, ActionSpec, AgentSpec, RunSpec};

fn smoke(seed: u64) -> RunSpec {
    let agents = (1..=3)
        .map(|i| AgentSpec {
            name: format!("a-{i}"),
            site: if i < 3 { "pst".into() } else { "nyc".into() },
            version: "1.0.0".into(),
            switches: AgentSwitches::FIXED,
            defect: None,
            install_at_start: true,
        })
        .collect();
    let actions = (1..=5)
        .map(|i| ActionSpec {
            at: Duration::from_secs(60 + 10 * i),
            kind: ActionKind::Dispatch {
                agent: format!("a-{}", 1 + (i % 3)),
                command: "hostname".into(),
            },
        })
        .collect();
    RunSpec::new("smoke", seed, Duration::from_secs(180), agents, actions)
}

#[test]
fn three_agents_enroll_connect_and_complete_five_commands() {
    let out = run(&smoke(7)).expect("run completes");
    let o = &out.outcome;
    for i in 1..=3 {
        let a = &o["agents"][format!("a-{i}")];
        assert_eq!(a["online"], true, "agent a-{i}: {a:#}");
        assert_eq!(a["install"]["result"], "success");
    }
    let cmds = o["commands"].as_object().unwrap();
    assert_eq!(cmds.len(), 5, "{o:#}");
    for (id, c) in cmds {
        assert_eq!(c["status"], "completed", "{id}: {c}");
    }
    let frames = out.frames_jsonl();
    assert!(frames.contains(r#""stage":"written","frame":"text""#));
    assert!(frames.contains(r#""frame":"pong","len":8,"ping_seq":1"#));
    assert!(frames.contains(r#""frame":"quic","kind":"handshake_ok""#));
}

#[test]
fn same_seed_same_digest_and_bytes_other_seed_differs_but_passes() {
    let a = run(&smoke(7)).unwrap();
    let b = run(&smoke(7)).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.frames_jsonl(), b.frames_jsonl());
    assert_eq!(a.events_jsonl(), b.events_jsonl());
    let c = run(&smoke(8)).unwrap();
    assert_ne!(a.digest, c.digest, "the seed must reach the run");
    assert_eq!(c.outcome["counts"]["commands_completed"], 5);
}

#[test]
fn a_crashed_agent_that_stays_down_is_reported_disconnected_and_offline() {
    let mut spec = smoke(7);
    spec.actions.push(ActionSpec {
        at: Duration::from_secs(120),
        kind: ActionKind::Crash(Target::Agent("a-3".into())),
    });
    let out = run(&spec).expect("run completes");
    let a = &out.outcome["agents"]["a-3"];
    assert_eq!(a["online"], false, "{a:#}");
    assert_eq!(a["ws"]["connected"], false, "{a:#}");
    assert_eq!(a["tunnel"]["connected"], false, "{a:#}");
    assert_eq!(
        a["upgrade"]["running_versions"],
        serde_json::json!([]),
        "{a:#}"
    );
    // Its neighbours are untouched.
    assert_eq!(out.outcome["agents"]["a-1"]["online"], true);
}
