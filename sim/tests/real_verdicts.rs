//! The real `fleet-server` and `fleet-agent` binaries, their logs given to
//! `simbench diagnose`, get the verdicts the simulator gets for the same
//! scenario (issue 15, "done means"):
//!
//! - **a tunnel blocked by a firewall**: scenario `udp-4433-blocked`; the
//!   real side runs in a network namespace whose nftables input hook drops
//!   UDP 4433 (sim::conform::real's `Bench`), the agent installs with
//!   `fleet-agent install`; compared: incident 1's hypotheses;
//! - **a bad agent token**: scenario `wake-bad-token`; the real agent
//!   installs, its `agent.json` then holds a token the server never issued,
//!   and `fleet-agent run` presents it; compared: incidents 3 and 4.
//!
//! Both views (server point alone, every point) must agree hypothesis by
//! hypothesis. Needs Linux, root, `ip` and `nft`: without them each test
//! prints `SKIPPED: <why>` on stderr and returns (there is nothing to
//! compare), which CI (root) never does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::conform::real::{unavailable, Bench};
use sim::diagnose::{INCIDENT1, INCIDENT3, INCIDENT4};

const AGENT: &str = "pst-server";

/// The debug `fleet-server` and `fleet-agent`, built once per test process
/// next to simbench (`cargo test -p sim` builds no other package's binary).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_simbench"))
            .parent()
            .unwrap()
            .to_path_buf();
        let st = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "server",
                "--bin",
                "fleet-server",
                "-p",
                "agent",
                "--bin",
                "fleet-agent",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("cargo runs");
        assert!(st.success(), "cargo build of fleet-server and fleet-agent");
        dir
    })
}

/// `None` (after saying so) when this machine cannot run the real side.
fn real_side(test: &str) -> Option<()> {
    match unavailable() {
        Some(why) => {
            eprintln!("SKIPPED {test}: the real side cannot run here: {why}");
            None
        }
        None => Some(()),
    }
}

/// hypothesis -> status of `agent`, for `ids`, per view, from a
/// `{"server": [...], "full": [...]}` document.
fn statuses(doc: &Value, ids: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for view in ["server", "full"] {
        let d = doc[view]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["agent"] == AGENT);
        let mut m = BTreeMap::new();
        for v in d
            .and_then(|d| d["named"].as_array())
            .into_iter()
            .flatten()
            .chain(
                d.and_then(|d| d["verdicts"].as_array())
                    .into_iter()
                    .flatten(),
            )
        {
            let h = v["hypothesis"].as_str().unwrap();
            if ids.contains(&h) {
                m.insert(h.to_string(), v["status"].as_str().unwrap().to_string());
            }
        }
        out.insert(view.to_string(), m);
    }
    out
}

/// The simulator's diagnoses of shipped scenario `name`, as
/// `simbench diagnose --format json` prints them.
fn simulated(name: &str) -> Value {
    let path = sim::scenario::catalogue_dir().join(format!("{name}.toml"));
    let sc = format::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let spec = sim::scenario::resolve(&sc, None).unwrap_or_else(|e| panic!("{e}"));
    let out = sim::run::run(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    // The bench's liveness monitor is a point these real runs do not have
    // (nothing probes the real agent): its events are left out, as the
    // conformance suite leaves out the simulated proxy's records.
    let events: Vec<_> = out
        .events
        .iter()
        .filter(|e| e.host != sim::run::MONITOR_HOST)
        .cloned()
        .collect();
    let view = |v| sim::diagnose::diagnose(&out.frames, &events, v);
    serde_json::json!({
        "server": view(sim::diagnose::View::Server),
        "full": view(sim::diagnose::View::Full),
    })
}

/// `simbench diagnose` on the real logs of `bench`.
fn diagnose_real(bench: &Bench) -> Value {
    let p = |n: &str| bench.dir.join(n).display().to_string();
    let args = [
        "diagnose".to_string(),
        p("srv/frames.jsonl"),
        p(&format!("agent-{AGENT}.frames.jsonl")),
        "--events".into(),
        p("srv/events.jsonl"),
        "--events".into(),
        p(&format!("agent-{AGENT}.events.jsonl")),
        "--format".into(),
        "json".into(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_simbench"))
        .args(&args)
        .output()
        .expect("simbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "simbench diagnose: not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The lines of a JSON Lines log (an absent file: none).
fn log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (at most `within`) until the server's event log has `event` for
/// the agent with `attempt` (any when `None`).
fn wait_event(bench: &Bench, event: &str, attempt: Option<u64>, within: Duration) {
    let path = bench.dir.join("srv/events.jsonl");
    let end = Instant::now() + within;
    while !log(&path).iter().any(|e| {
        e["event"] == event
            && e["agent"] == AGENT
            && attempt.is_none_or(|a| e["attempt"].as_u64() == Some(a))
    }) {
        assert!(
            Instant::now() < end,
            "no {event} for {AGENT} in the server's event log within {within:?}: {:#?}",
            log(&path)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_same(name: &str, real: &Value, simulated: &Value, ids: &[&str]) {
    let r = statuses(real, ids);
    let s = statuses(simulated, ids);
    for view in ["server", "full"] {
        assert!(
            !s[view].is_empty(),
            "{name}: the simulator gives {AGENT} no verdict in the {view} view"
        );
    }
    assert_eq!(
        r, s,
        "{name}: the real binaries' verdicts (left) differ from the simulator's (right)"
    );
}

fn agent_args(bench: &Bench, sub: &[&str]) -> Vec<String> {
    let events = bench.dir.join(format!("agent-{AGENT}.events.jsonl"));
    let mut v: Vec<String> = vec![
        "--site".into(),
        "pst".into(),
        "--event-log".into(),
        events.display().to_string(),
    ];
    v.extend(sub.iter().map(|s| s.to_string()));
    v
}

#[test]
fn a_firewall_dropping_udp_4433_gets_the_simulators_incident_1_verdicts() {
    let Some(()) = real_side("udp-4433-blocked") else {
        return;
    };
    let bench = Bench::new(bin_dir(), "verdict-udp").expect("a namespace");
    bench
        .ns
        .firewall(&["udp dport 4433 drop"])
        .expect("the nftables rule loads");
    let _srv = bench.server("fixed").expect("fleet-server starts");
    let args = agent_args(&bench, &["install", "--token", "enroll-token"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut install = bench
        .agent(AGENT, "fixed", &refs)
        .expect("fleet-agent starts");
    let (code, _) = install
        .wait_exit(Duration::from_secs(90))
        .expect("the install ends within its 60 s timeout");
    assert_ne!(code, 0, "the tunnel probe fails through the firewall");
    // The server's log must go on 35 s past the enrollment (the tunnel
    // window) for the server view to call the tunnel missing: the
    // reconciler's second retrigger (60 s after the wake) is the first
    // thing it logs after that.
    wait_event(
        &bench,
        "lifecycle.reconcile.retriggered",
        Some(3),
        Duration::from_secs(100),
    );
    let real = diagnose_real(&bench);
    let ids: Vec<&str> = INCIDENT1.to_vec();
    assert_same(
        "udp-4433-blocked",
        &real,
        &simulated("udp-4433-blocked"),
        &ids,
    );
    assert_eq!(
        statuses(&real, &ids)["server"]["I1-udp-blocked"],
        "supported"
    );
}

#[test]
fn a_bad_agent_token_gets_the_simulators_incident_3_and_4_verdicts() {
    let Some(()) = real_side("wake-bad-token") else {
        return;
    };
    let bench = Bench::new(bin_dir(), "verdict-token").expect("a namespace");
    let _srv = bench.server("fixed").expect("fleet-server starts");
    let args = agent_args(&bench, &["install", "--token", "enroll-token"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut install = bench
        .agent(AGENT, "fixed", &refs)
        .expect("fleet-agent starts");
    let (code, _) = install
        .wait_exit(Duration::from_secs(90))
        .expect("the install ends");
    assert_eq!(code, 0, "the install succeeds: {:?}", install.lines());
    // The agent's file now holds a token the server never issued (the
    // simulator's `bad-checkin-token`).
    let file = bench
        .dir
        .join(format!("agent-{AGENT}"))
        .join(agent::install::AGENT_JSON);
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("agent.json")).unwrap();
    assert!(json["agent_token"].is_string(), "{json}");
    json["agent_token"] = Value::String("not-the-issued-agent-token".into());
    std::fs::write(&file, json.to_string()).unwrap();
    let args = agent_args(&bench, &["run"]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let _run = bench
        .agent(AGENT, "fixed", &refs)
        .expect("fleet-agent runs");
    // Three wakes 30 s apart, then the reconciler gives up: the end of the
    // escalation the simulated run (3 minutes) also reaches.
    wait_event(
        &bench,
        "lifecycle.reconcile.max_attempts_reached",
        None,
        Duration::from_secs(150),
    );
    let real = diagnose_real(&bench);
    let ids: Vec<&str> = INCIDENT3.iter().chain(&INCIDENT4).copied().collect();
    assert_same("wake-bad-token", &real, &simulated("wake-bad-token"), &ids);
    assert_eq!(statuses(&real, &ids)["server"]["I4-bad-token"], "supported");
}
