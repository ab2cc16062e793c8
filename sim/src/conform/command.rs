//! The case that dispatches a command through the operator API during
//! one-way loss on the command channel, and compares what the operator
//! and the hypothesis engine make of it.
//!
//! Real: `fleet-server` and `fleet-agent` in the case's namespace; 10 s
//! after the command channel is up, `tcp sport 8443 drop` (every
//! server->agent packet of the channel, ACKs too); 10 s later `fleetctl
//! dispatch`; 75 s after that `fleetctl command` reads the command's final
//! status and attempts, and the diagnosis engine (`simbench diagnose`'s)
//! reads the server's and the agent's frame and event logs, merged by
//! `t_us`. Simulated: the same schedule as a scenario with a `dispatch`
//! action (the same server function the API calls), its status and
//! attempts off the outcome, its diagnosis off the run's logs.
//!
//! Like with like: the engine reads, on both sides, only what a real
//! deployment logs (points `server` and `agent:<name>`, hosts likewise).
//! The simulator also logs the TLS proxy it puts on the path (`path:proxy`)
//! and its own actions (`bench`); a real network has no such point, so
//! those records are left out of the simulated logs before the engine
//! reads them.

use std::time::{Duration, Instant, SystemTime};

use proto::frame::{EventRecord, FrameRecord};
use serde_json::Value;

use super::real::Bench;
use super::{CheckSpec, Compare, Observed, Val};
use crate::diagnose::{diagnose, read, View};
use crate::run::RunOutput;

/// The agent's name on both sides.
const AGENT: &str = "pc-1";
/// The command dispatched.
const COMMAND: &str = "hostname";
/// Fault start after the command channel is up.
const FAULT_AFTER_CHANNEL: Duration = Duration::from_secs(10);
/// Dispatch after the fault starts.
const DISPATCH_AFTER_FAULT: Duration = Duration::from_secs(10);
/// How long the case watches after the dispatch: past the server's 60 s
/// offer timeout of the last offer, and the engine's 10 s grace.
const WATCH_AFTER_DISPATCH: Duration = Duration::from_secs(73);

const fn exact(name: &'static str) -> CheckSpec {
    CheckSpec {
        name,
        compare: Compare::Exact,
    }
}

const STATUS: CheckSpec = exact("command status at the end (operator API)");
const ATTEMPTS: CheckSpec = exact("command attempts at the end (operator API)");

/// The checks, in table order: the operator's view of the command, then
/// per view the outcome-table row and H1..H7.
pub const CHECKS: [CheckSpec; 18] = [
    STATUS,
    ATTEMPTS,
    exact("server view: outcome row"),
    exact("server view: H1"),
    exact("server view: H2"),
    exact("server view: H3"),
    exact("server view: H4"),
    exact("server view: H5"),
    exact("server view: H6"),
    exact("server view: H7"),
    exact("full view: outcome row"),
    exact("full view: H1"),
    exact("full view: H2"),
    exact("full view: H3"),
    exact("full view: H4"),
    exact("full view: H5"),
    exact("full view: H6"),
    exact("full view: H7"),
];

/// The simulated side. Its schedule: the channel is up at about 0.3 s, so
/// the fault at 12 s and the dispatch at 22 s come 11.7 s and 21.7 s after
/// it (the real side: 10 s and 20 s), both before the agent's first
/// Heartbeat at 30 s after its Auth on either side; the run ends 73 s
/// after the dispatch.
pub const SCENARIO: &str = r#"
name = "conform-dispatch-one-way-loss-8443"
summary = "conformance: a command dispatched while the command channel's server-to-agent direction is dropped"
incident = "command-delivery"
seed = 1
duration = "95s"
[server]
behavior = "fixed"
[[agent]]
name = "pc-1"
site = "lab"
behavior = "fixed"
[[fault]]
kind = "half-open"
between = ["agent:pc-1", "server"]
direction = "b->a"
port = 8443
from = "12s"
[[action]]
at = "22s"
do = "dispatch"
agent = "pc-1"
command = "hostname"
"#;

/// Whether a real deployment logs at this point (or host).
fn real_point(p: &str) -> bool {
    p == "server" || p.starts_with("agent:")
}

/// The verdict checks off the two logs (in merged order).
fn verdicts(frames: &[FrameRecord], events: &[EventRecord]) -> Observed {
    let mut o = Observed::new();
    for (view, key) in [(View::Server, "server view"), (View::Full, "full view")] {
        let ds = diagnose(frames, events, view);
        let d = ds.iter().find(|d| d.agent == AGENT);
        for check in CHECKS.iter().filter(|c| c.name.starts_with(key)) {
            let what = &check.name[key.len() + 2..];
            let v = match d {
                None => Err(format!("the engine named no agent {AGENT}")),
                Some(d) if what == "outcome row" => Ok(match d.row {
                    Some(r) => Val::Int(r as i64),
                    None => Val::Text("none".into()),
                }),
                Some(d) => d
                    .verdict(what)
                    .map(|v| Val::Text(format!("{:?}", v.status).to_lowercase()))
                    .ok_or_else(|| format!("no verdict on {what}")),
            };
            o.insert(check.name, v);
        }
    }
    o
}

/// The command's status and attempts, as the API (or the outcome) has it.
fn command_checks(o: &mut Observed, cmd: Result<&Value, String>) {
    let field = |c: &Value, k: &str| -> Result<Val, String> {
        match &c[k] {
            Value::String(s) => Ok(Val::Text(s.clone())),
            Value::Number(n) => n
                .as_i64()
                .map(Val::Int)
                .ok_or_else(|| format!("`{k}` is {n}")),
            other => Err(format!("`{k}` is {other}")),
        }
    };
    match cmd {
        Ok(c) => {
            o.insert(STATUS.name, field(c, "status"));
            o.insert(ATTEMPTS.name, field(c, "attempts"));
        }
        Err(e) => {
            o.insert(STATUS.name, Err(e.clone()));
            o.insert(ATTEMPTS.name, Err(e));
        }
    }
}

/// Reads the simulated run.
pub fn sim(out: &RunOutput) -> Observed {
    let frames: Vec<FrameRecord> = out
        .frames
        .iter()
        .filter(|f| real_point(&f.point))
        .cloned()
        .collect();
    let events: Vec<EventRecord> = out
        .events
        .iter()
        .filter(|e| real_point(&e.host))
        .cloned()
        .collect();
    let mut o = verdicts(&frames, &events);
    let cmd = out.outcome["commands"]
        .as_object()
        .and_then(|m| m.values().next())
        .ok_or_else(|| "no command in the outcome".to_string());
    command_checks(&mut o, cmd);
    o
}

/// Reads the JSON Lines logs `paths` (missing files are empty logs) and
/// merges them by `t_us`.
fn read_merged<T: serde::de::DeserializeOwned>(
    paths: &[std::path::PathBuf],
    what: &'static str,
    t_us: impl Fn(&T) -> u64,
) -> Result<Vec<T>, String> {
    let mut logs = Vec::new();
    for p in paths {
        let file = std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let name = p.display().to_string();
        // A process killed mid-line leaves a cut last line: read_jsonl leaves it out.
        let log = read::read_jsonl(std::io::BufReader::new(file), &name, what)
            .map_err(|e| e.to_string())?;
        logs.push(log);
    }
    Ok(read::merge(logs, t_us).0)
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Runs the case on real sockets.
pub fn real(b: &Bench) -> Result<Observed, String> {
    let server = b.server("fixed")?;
    let agent_events = b.dir.join(format!("agent-{AGENT}.events.jsonl"));
    let ev = agent_events.display().to_string();
    let mut up = b.agent(
        AGENT,
        "fixed",
        &["--event-log", &ev, "up", "--token", "enroll-token"],
    )?;
    let (exit, _) = up
        .wait_exit(Duration::from_secs(60))
        .ok_or("fleet-agent up did not exit within 60 s (killed)")?;
    if exit != 0 {
        return Err(format!("fleet-agent up failed ({exit})"));
    }
    let service = b.agent(AGENT, "fixed", &["--event-log", &ev, "run"])?;
    let channel = service
        .wait_line(Duration::from_secs(15), |l| {
            super::cases::strip_ansi(l).contains("event=channel.connected")
        })
        .ok_or("the agent's command channel did not come up within 15 s")?;
    let channel_at = service.started() + channel.at;
    sleep_until(channel_at + FAULT_AFTER_CHANNEL);
    b.ns.firewall(&["tcp sport 8443 counter drop"])?;
    sleep_until(channel_at + FAULT_AFTER_CHANNEL + DISPATCH_AFTER_FAULT);
    let dispatched = b.fleetctl(&["dispatch", AGENT, COMMAND])?;
    let dispatched_at = Instant::now();
    let id = dispatched["command_id"]
        .as_str()
        .ok_or_else(|| format!("the dispatch answer has no command_id: {dispatched}"))?
        .to_string();
    sleep_until(dispatched_at + WATCH_AFTER_DISPATCH);
    let cmd = b.fleetctl(&["command", &id]);
    let ended = SystemTime::now();
    drop(service);
    drop(server);
    let frames: Vec<FrameRecord> = read_merged(
        &[
            b.dir.join("srv").join("frames.jsonl"),
            b.dir.join(format!("agent-{AGENT}.frames.jsonl")),
        ],
        "frame log",
        |r: &FrameRecord| r.t_us,
    )?;
    let events: Vec<EventRecord> = read_merged(
        &[b.dir.join("srv").join("events.jsonl"), agent_events],
        "event log",
        |r: &EventRecord| r.t_us,
    )?;
    // What the processes logged after the API was read (the kill) is left
    // out, as the simulated run ends when it does.
    let end_us = ended
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros() as u64;
    let frames: Vec<_> = frames.into_iter().filter(|r| r.t_us <= end_us).collect();
    let events: Vec<_> = events.into_iter().filter(|e| e.t_us <= end_us).collect();
    let mut o = verdicts(&frames, &events);
    command_checks(&mut o, cmd.as_ref().map_err(Clone::clone));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulated_side_diagnoses_the_command_it_dispatched() {
        let sc = format::parse_scenario("dispatch", SCENARIO).unwrap();
        let spec = crate::scenario::resolve(&sc, None).unwrap();
        let out = crate::run::run_with(&spec, crate::run::RunOptions::default()).unwrap();
        let o = sim(&out);
        for c in &CHECKS {
            assert!(
                matches!(o.get(c.name), Some(Ok(_))),
                "{}: {:?}",
                c.name,
                o.get(c.name)
            );
        }
        assert_eq!(o[STATUS.name], Ok(Val::Text("timed-out".into())));
        // Offered at the dispatch and again on the Heartbeat read 30 s after Auth.
        assert_eq!(o[ATTEMPTS.name], Ok(Val::Int(2)));
        assert_eq!(o["server view: outcome row"], Ok(Val::Int(3)));
        assert_eq!(o["full view: H3"], Ok(Val::Text("refuted".into())));
        // The filter is what makes the full view comparable: the simulated
        // path proxy saw the Command pass, which refutes H1 (no real point
        // can tell that).
        assert!(out.frames.iter().any(|f| f.point.starts_with("path:")));
        assert_eq!(o["full view: H1"], Ok(Val::Text("supported".into())));
        let unfiltered = verdicts(&out.frames, &out.events);
        assert_eq!(unfiltered["full view: H1"], Ok(Val::Text("refuted".into())));
    }
}
