//! End-to-end runs of the real agent and server on turmoil.

use std::time::Duration;

use agent::AgentSwitches;
use server::ServerSwitches;
use sim::run::{run, ActionKind, ActionSpec, AgentSpec, RunSpec};

fn smoke(seed: u64) -> RunSpec {
    let agents = (1..=3)
        .map(|i| AgentSpec {
            name: format!("a-{i}"),
            site: if i < 3 { "pst".into() } else { "nyc".into() },
            version: "1.0.0".into(),
            switches: AgentSwitches::FIXED,
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
    RunSpec {
        name: "smoke".into(),
        seed,
        duration: Duration::from_secs(180),
        tick: Duration::from_millis(10),
        server_switches: ServerSwitches::FIXED,
        agents,
        actions,
    }
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
    std::fs::write("/tmp/smoke-frames.jsonl", out.frames_jsonl()).unwrap();
    std::fs::write("/tmp/smoke-events.jsonl", out.events_jsonl()).unwrap();
    std::fs::write(
        "/tmp/smoke-report.json",
        serde_json::to_string_pretty(o).unwrap(),
    )
    .unwrap();
}
