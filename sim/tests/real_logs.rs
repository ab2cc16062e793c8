//! Logs written by the real binaries on loopback line up (issue 14, item 3):
//! one clock (microseconds since the Unix epoch) for every process and
//! across a restart, connection ids unique across processes and restarts,
//! the agent's `--site` reaching the server's log, and `simbench diagnose`
//! merging a server log and several agent logs into the full view.

#[path = "real_logs/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use harness::Deployment;
use serde_json::Value;

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn registered(site: &str, n: usize) -> impl Fn(&[Value]) -> bool + '_ {
    move |ev: &[Value]| {
        ev.iter()
            .filter(|e| e["event"] == "registry.registered" && e["site"] == site)
            .count()
            >= n
    }
}

/// The process prefix of a real connection id (`<prefix>-c<n>`).
fn prefix(conn: &str) -> &str {
    conn.rsplit_once("-c").map(|(p, _)| p).unwrap_or("")
}

#[test]
fn real_logs_line_up_across_processes_and_a_server_restart() {
    let d = Deployment::new("line-up");
    let t0 = epoch_us();
    let mut srv = d.server("fixed");
    for name in ["a1", "a2"] {
        let (code, out) = d
            .agent(
                name,
                "lab",
                "fixed",
                &["up", "--token", harness::ENROLL_TOKEN],
            )
            .wait(Duration::from_secs(60));
        assert_eq!(code, 0, "{name} up: {out:?}");
    }
    let _a1 = d.agent("a1", "lab", "fixed", &["run"]);
    let _a2 = d.agent("a2", "lab", "fixed", &["run"]);
    d.wait_log(
        "srv.events.jsonl",
        "both registered",
        Duration::from_secs(30),
        registered("lab", 2),
    );

    // A command through the operator API, acked.
    let (status, cmd) = d.api(
        "POST",
        "/v1/agents/a1/commands",
        r#"{"command":"hostname"}"#,
    );
    assert_eq!(status, 202, "{cmd}");
    d.wait_log(
        "srv.frames.jsonl",
        "the CommandAck",
        Duration::from_secs(30),
        |f| f.iter().any(|r| r["msg"] == "CommandAck"),
    );

    // Restart the server (a crash: SIGKILL); the agents reconnect.
    srv.kill();
    let before = d.log("srv.frames.jsonl").len();
    let _srv = d.server("fixed");
    d.wait_log(
        "srv.events.jsonl",
        "both registered again",
        Duration::from_secs(60),
        registered("lab", 4),
    );
    let (status, cmd) = d.api(
        "POST",
        "/v1/agents/a2/commands",
        r#"{"command":"hostname"}"#,
    );
    assert_eq!(status, 202, "{cmd}");
    d.wait_log(
        "srv.frames.jsonl",
        "the second CommandAck",
        Duration::from_secs(30),
        |f| f.iter().filter(|r| r["msg"] == "CommandAck").count() >= 2,
    );
    let t1 = epoch_us();

    let logs = [
        "srv.frames.jsonl",
        "srv.events.jsonl",
        "a1.frames.jsonl",
        "a1.events.jsonl",
        "a2.frames.jsonl",
        "a2.events.jsonl",
    ];
    // One clock: every record of every process is stamped with the Unix
    // epoch's microseconds, between the test's start and end.
    for name in logs {
        let recs = d.log(name);
        assert!(!recs.is_empty(), "{name} is empty");
        for r in &recs {
            let t = r["t_us"].as_u64().unwrap();
            assert!(
                (t0..=t1).contains(&t),
                "{name}: t_us {t} not in {t0}..={t1}: {r}"
            );
        }
    }

    // The restarted server appends a log that goes forward in time, under a
    // new connection-id prefix.
    let frames = d.log("srv.frames.jsonl");
    assert!(before > 0 && frames.len() > before);
    let last_before = frames[..before]
        .iter()
        .map(|r| r["t_us"].as_u64().unwrap())
        .max()
        .unwrap();
    let first_after = frames[before..]
        .iter()
        .map(|r| r["t_us"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(first_after > last_before, "{first_after} <= {last_before}");
    let p1: BTreeSet<&str> = frames[..before]
        .iter()
        .map(|r| prefix(r["conn"].as_str().unwrap()))
        .collect();
    let p2: BTreeSet<&str> = frames[before..]
        .iter()
        .map(|r| prefix(r["conn"].as_str().unwrap()))
        .collect();
    assert_eq!((p1.len(), p2.len()), (1, 1), "{p1:?} {p2:?}");
    assert!(p1.is_disjoint(&p2), "the restarted server reuses {p1:?}");

    // Connection ids are unique across processes: no id is in two logs,
    // and the four agent processes (two `up`, two `run`) and two server
    // processes have six prefixes.
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for name in ["srv.frames.jsonl", "a1.frames.jsonl", "a2.frames.jsonl"] {
        for r in d.log(name) {
            let c = r["conn"].as_str().unwrap().to_string();
            let o = owner.entry(c.clone()).or_insert(name);
            assert_eq!(*o, name, "connection id {c} in {o} and {name}");
        }
    }
    let prefixes: BTreeSet<&str> = owner.keys().map(|c| prefix(c)).collect();
    assert_eq!(prefixes.len(), 6, "{prefixes:?}");
    assert!(prefixes.iter().all(|p| p.len() == 8), "{prefixes:?}");

    // --site reached the server's log.
    assert!(registered("lab", 4)(&d.log("srv.events.jsonl")));

    // `simbench diagnose` merges the server's and the agents' logs.
    let (code, out, err) = d.simbench(&[
        "diagnose",
        "srv.frames.jsonl",
        "a1.frames.jsonl",
        "a2.frames.jsonl",
        "--events",
        "srv.events.jsonl",
        "--events",
        "a1.events.jsonl",
        "--events",
        "a2.events.jsonl",
        "--merged",
        "merged.jsonl",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "every command acked: {out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    for view in ["server", "full"] {
        let names: Vec<&str> = doc[view]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["agent"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a1", "a2"], "{view}");
        for a in doc[view].as_array().unwrap() {
            assert_eq!(a["affected"], false, "{view}: {a}");
        }
    }
    let merged = d.log("merged.jsonl");
    let total: usize = ["srv.frames.jsonl", "a1.frames.jsonl", "a2.frames.jsonl"]
        .iter()
        .map(|n| d.log(n).len())
        .sum();
    assert_eq!(merged.len(), total);
    let points: BTreeSet<&str> = merged
        .iter()
        .map(|r| r["point"].as_str().unwrap())
        .collect();
    assert_eq!(points, BTreeSet::from(["agent:a1", "agent:a2", "server"]));
    // In time order wherever the inputs were.
    let out_of_order = merged
        .windows(2)
        .filter(|w| w[0]["t_us"].as_u64() > w[1]["t_us"].as_u64())
        .count();
    let inputs_out_of_order: usize = ["srv.frames.jsonl", "a1.frames.jsonl", "a2.frames.jsonl"]
        .iter()
        .map(|n| {
            d.log(n)
                .windows(2)
                .filter(|w| w[0]["t_us"].as_u64() > w[1]["t_us"].as_u64())
                .count()
        })
        .sum();
    assert!(
        out_of_order <= inputs_out_of_order,
        "{out_of_order} > {inputs_out_of_order}"
    );
    // The full view reads the agents' own points: the agent read the acked
    // Commands (their conns are the agents' ids, not the server's).
    let full_a1 = doc["full"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["agent"] == "a1")
        .unwrap();
    assert!(
        full_a1["conns"].as_array().is_some_and(|c| !c.is_empty()),
        "{full_a1}"
    );

    // The table form says what it merged.
    let (_, table, _) = d.simbench(&[
        "diagnose",
        "srv.frames.jsonl",
        "a1.frames.jsonl",
        "a2.frames.jsonl",
    ]);
    assert!(
        table.contains("merged by t_us: srv.frames.jsonl ("),
        "{table}"
    );
}
