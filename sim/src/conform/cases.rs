//! The case table. Each case names its checks, a scenario for the
//! simulated side (seeded, so that side is deterministic) and a function
//! that runs it for real and reads the same checks off the real logs.
//!
//! Cases that need the operator API (a command dispatched during one-way
//! loss, verdict rows) are not here yet: on main `fleet-server` has no way
//! to dispatch on a real network. They slot in as further entries whose
//! `real` drives that API.

use std::time::Duration;

use serde_json::Value;

use super::real::{Bench, Proc};
use super::{Case, CheckSpec, Compare, Observed, Val};
use crate::run::RunOutput;

/// The agent's name on both sides.
const AGENT: &str = "pc-1";
/// When the simulated scenarios start the install.
const INSTALL_AT_US: u64 = 1_000_000;

const EXIT: CheckSpec = CheckSpec {
    name: "up exit code",
    compare: Compare::Exact,
};
const MESSAGE: CheckSpec = CheckSpec {
    name: "up error message",
    compare: Compare::Message,
};
const fn up_time(tol_s: f64) -> CheckSpec {
    CheckSpec {
        name: "up duration",
        compare: Compare::Within(tol_s),
    }
}
const FIRST_FAILURE: CheckSpec = CheckSpec {
    name: "service: first tunnel failure",
    compare: Compare::Message,
};
const FIRST_FAILURE_AT: CheckSpec = CheckSpec {
    name: "service: first tunnel failure after start",
    compare: Compare::Within(1.0),
};

static CASES: [Case; 4] = [
    Case {
        name: "udp-4433-blocked",
        summary: "UDP 4433 dropped; the fixed `up` probes the tunnel and fails with exit 4 after its 20 s probe and 3 s drain",
        checks: &[EXIT, MESSAGE, up_time(1.0)],
        scenario: r#"
name = "conform-udp-4433-blocked"
summary = "conformance: UDP 4433 dropped, fixed up"
incident = "enrollment-tunnel"
seed = 1
duration = "1m"
[server]
behavior = "fixed"
[[agent]]
name = "pc-1"
site = "lab"
behavior = "fixed"
[[fault]]
kind = "block"
between = ["site:lab", "server"]
proto = "udp"
port = 4433
[[action]]
at = "1s"
do = "install"
agent = "pc-1"
"#,
        sim: sim_up,
        real: |b| real_up(b, "fixed", &["udp dport 4433 counter drop"]),
    },
    Case {
        name: "udp-4433-blocked-legacy",
        summary: "UDP 4433 dropped; the legacy `up` only enrolls (exit 0), then the service's QUIC handshake times out 30 s after it starts",
        checks: &[EXIT, up_time(1.0), FIRST_FAILURE, FIRST_FAILURE_AT],
        scenario: r#"
name = "conform-udp-4433-blocked-legacy"
summary = "conformance: UDP 4433 dropped, legacy up, then the service"
incident = "enrollment-tunnel"
seed = 1
duration = "1m"
[server]
behavior = "legacy"
[[agent]]
name = "pc-1"
site = "lab"
behavior = "legacy"
[[fault]]
kind = "block"
between = ["site:lab", "server"]
proto = "udp"
port = 4433
[[action]]
at = "1s"
do = "install"
agent = "pc-1"
"#,
        sim: sim_legacy,
        real: real_legacy,
    },
    Case {
        name: "tcp-7171-dropped",
        summary: "TCP 7171 dropped; `up` cannot enroll and fails with exit 2 after its 20 s connect bound",
        checks: &[EXIT, MESSAGE, up_time(1.0)],
        scenario: r#"
name = "conform-tcp-7171-dropped"
summary = "conformance: TCP 7171 dropped"
incident = "enrollment-tunnel"
seed = 1
duration = "1m"
[server]
behavior = "fixed"
[[agent]]
name = "pc-1"
site = "lab"
behavior = "fixed"
[[fault]]
kind = "block"
between = ["site:lab", "server"]
proto = "tcp"
port = 7171
[[action]]
at = "1s"
do = "install"
agent = "pc-1"
"#,
        sim: sim_up,
        real: |b| real_up(b, "fixed", &["tcp dport 7171 counter drop"]),
    },
    Case {
        name: "tcp-7171-rejected",
        summary: "TCP 7171 rejected with a RST; `up` fails with exit 2 at once",
        checks: &[EXIT, MESSAGE, up_time(0.5)],
        scenario: r#"
name = "conform-tcp-7171-rejected"
summary = "conformance: TCP 7171 rejected"
incident = "enrollment-tunnel"
seed = 1
duration = "1m"
[server]
behavior = "fixed"
[[agent]]
name = "pc-1"
site = "lab"
behavior = "fixed"
[[fault]]
kind = "block"
between = ["site:lab", "server"]
proto = "tcp"
port = 7171
action = "reject"
[[action]]
at = "1s"
do = "install"
agent = "pc-1"
"#,
        sim: sim_up,
        real: |b| real_up(b, "fixed", &["tcp dport 7171 counter reject with tcp reset"]),
    },
];

/// Every case, in table order.
pub fn all() -> &'static [Case] {
    &CASES
}

fn secs_us(us: u64) -> Val {
    Val::Secs(us as f64 / 1e6)
}

fn install(out: &RunOutput) -> &Value {
    &out.outcome["agents"][AGENT]["install"]
}

/// `up` as the simulated installer ran it: exit code, error, duration.
fn sim_up(out: &RunOutput) -> Observed {
    let i = install(out);
    let mut o = Observed::new();
    o.insert(
        EXIT.name,
        i["exit_code"]
            .as_i64()
            .map(Val::Int)
            .ok_or_else(|| "no install exit code".to_string()),
    );
    o.insert(
        MESSAGE.name,
        Ok(Val::Text(i["error"].as_str().unwrap_or("").to_string())),
    );
    o.insert(
        "up duration",
        i["finished_us"]
            .as_u64()
            .map(|f| secs_us(f.saturating_sub(INSTALL_AT_US)))
            .ok_or_else(|| "install did not finish".to_string()),
    );
    o
}

/// [`sim_up`], and the service's first tunnel failure after it started.
fn sim_legacy(out: &RunOutput) -> Observed {
    let mut o = sim_up(out);
    let host = format!("agent:{AGENT}");
    let started = out
        .events
        .iter()
        .find(|e| e.host == host && e.event == "agent.started")
        .map(|e| e.t_us);
    let failed = out
        .events
        .iter()
        .find(|e| e.host == host && e.event == "tunnel.connect_failed");
    match (started, failed) {
        (Some(s), Some(f)) => {
            let error = f.fields.get("error").and_then(Value::as_str).unwrap_or("");
            o.insert(FIRST_FAILURE.name, Ok(Val::Text(error.to_string())));
            o.insert(FIRST_FAILURE_AT.name, Ok(secs_us(f.t_us.saturating_sub(s))));
        }
        _ => {
            let why = Err("no tunnel.connect_failed after agent.started".to_string());
            o.insert(FIRST_FAILURE.name, why.clone());
            o.insert(FIRST_FAILURE_AT.name, why);
        }
    }
    o
}

/// What a real `fleet-agent up` did.
struct Up {
    exit: i32,
    ran: Duration,
    message: String,
}

fn run_up(b: &Bench, behavior: &str) -> Result<Up, String> {
    let mut up = b.agent(AGENT, behavior, &["up", "--token", "enroll-token"])?;
    let (exit, ran) = up
        .wait_exit(Duration::from_secs(60))
        .ok_or("fleet-agent up did not exit within 60 s (killed)")?;
    let message = up
        .lines()
        .iter()
        .rev()
        .find_map(|l| {
            strip_ansi(&l.text)
                .strip_prefix("fleet-agent: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    Ok(Up { exit, ran, message })
}

fn up_observed(up: &Up) -> Observed {
    let mut o = Observed::new();
    o.insert(EXIT.name, Ok(Val::Int(up.exit as i64)));
    o.insert(MESSAGE.name, Ok(Val::Text(up.message.clone())));
    o.insert("up duration", Ok(Val::Secs(up.ran.as_secs_f64())));
    o
}

/// The server (preset `behavior`), the fault `rules`, then `up`.
fn real_up(b: &Bench, behavior: &str, rules: &[&str]) -> Result<Observed, String> {
    let _server = b.server(behavior)?;
    b.ns.firewall(rules)?;
    Ok(up_observed(&run_up(b, behavior)?))
}

/// Legacy: UDP 4433 dropped, `up`, then the service until its first
/// tunnel failure (bounded at 45 s).
fn real_legacy(b: &Bench) -> Result<Observed, String> {
    let _server = b.server("legacy")?;
    b.ns.firewall(&["udp dport 4433 counter drop"])?;
    let up = run_up(b, "legacy")?;
    let mut o = up_observed(&up);
    o.remove(MESSAGE.name);
    let service: Proc = b.agent(AGENT, "legacy", &["run"])?;
    let started = service.wait_line(Duration::from_secs(10), |l| {
        strip_ansi(l).contains("event=agent.started")
    });
    let failed = service.wait_line(Duration::from_secs(45), |l| {
        strip_ansi(l).contains("event=tunnel.connect_failed")
    });
    match (started, failed) {
        (Some(s), Some(f)) => {
            o.insert(
                FIRST_FAILURE.name,
                Ok(Val::Text(
                    event_error(&strip_ansi(&f.text)).unwrap_or_default(),
                )),
            );
            o.insert(
                FIRST_FAILURE_AT.name,
                Ok(Val::Secs(f.at.saturating_sub(s.at).as_secs_f64())),
            );
        }
        _ => {
            let why = Err("no tunnel.connect_failed within 45 s of the service start".to_string());
            o.insert(FIRST_FAILURE.name, why.clone());
            o.insert(FIRST_FAILURE_AT.name, why);
        }
    }
    Ok(o)
}

/// The `error` field of an event as the real binaries print it on stderr
/// (`fields={"error": String("...")}`).
fn event_error(line: &str) -> Option<String> {
    let start = line.find("\"error\": String(\"")? + "\"error\": String(\"".len();
    let rest = &line[start..];
    let end = rest.find("\")")?;
    Some(rest[..end].replace("\\\"", "\""))
}

/// `s` without ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_parses_and_resolves() {
        for c in all() {
            let sc = format::parse_scenario(c.name, c.scenario).unwrap();
            crate::scenario::resolve(&sc, None).unwrap();
        }
    }

    #[test]
    fn an_event_error_is_read_off_a_stderr_line() {
        let line = "\u{1b}[2m2026\u{1b}[0m INFO fleet::event: host=agent:pc-1 event=tunnel.connect_failed fields={\"error\": String(\"QUIC handshake: timed out\")}";
        assert_eq!(
            event_error(&strip_ansi(line)).as_deref(),
            Some("QUIC handshake: timed out")
        );
    }
}
