//! The named hypotheses of incidents 1, 3, 4 and 5 (INCIDENTS.md; seeds
//! 000, 002, 003 and 004), decided per agent from the event log and the
//! frame log of a view. The rules are documented in `docs/diagnosis.md`,
//! one section per incident.
//!
//! An incident's verdicts are given only to agents the logs show taking
//! part in it (enrolling, woken, upgraded); every verdict cites the event
//! lines and frame records that decided it.

use std::collections::BTreeMap;

use records::frame::{Dir, EventRecord, FrameKind, FrameRecord};
use serde_json::Value;

use super::facts::Log;
use super::{cite, NextStep, Plan, PlanStep, Status, Verdict, View, GRACE_US};

use Status::{Inconclusive as I, Refuted as R, Supported as S};

/// Incident 1: enrollment succeeds, tunnel is dead.
pub const INCIDENT1: [&str; 5] = [
    "I1-udp-blocked",
    "I1-gateway-unreachable",
    "I1-tls-failure",
    "I1-stale-close",
    "I1-up-interrupted",
];
/// Incident 3: managed-mode resilience gaps.
pub const INCIDENT3: [&str; 6] = [
    "I3-invalid-token",
    "I3-auth-storm",
    "I3-enroll-unavailable",
    "I3-transient-storm",
    "I3-checkin-failing",
    "I3-liveness-masks",
];
/// Incident 4: wake / check-in convergence.
pub const INCIDENT4: [&str; 6] = [
    "I4-never-started",
    "I4-bad-token",
    "I4-no-checkin-network",
    "I4-worker-down",
    "I4-revoked",
    "I4-late-checkin",
];
/// Incident 5: agent self-upgrade with automatic rollback.
pub const INCIDENT5: [&str; 6] = [
    "I5-stage-failure",
    "I5-self-test-failure",
    "I5-new-silent",
    "I5-new-crashes",
    "I5-stop-on-word",
    "I5-operator-forgot",
];

/// How long a QUIC handshake may take before the agent gives up, and so
/// how long after an accepted enrollment the server must see the agent's
/// tunnel: 35 s (the agent's 30 s handshake timeout and some slack).
pub const TUNNEL_WINDOW_US: u64 = 35_000_000;
/// Enrollment refusals in one minute that make a retry storm: 10.
pub const STORM_PER_MINUTE: usize = 10;
/// How long a new version's session must last without a Heartbeat before
/// the new version counts as silent: 65 s (two heartbeat intervals and
/// some slack).
pub const SILENT_US: u64 = 65_000_000;

/// One event of the agent, with its line number.
type Ev<'a> = (usize, &'a EventRecord);

/// What the logs of a view hold about one agent.
#[derive(Default)]
struct Facts<'a> {
    ev: Vec<Ev<'a>>,
    /// Server-point QUIC records with this peer: `(record, t, record)`.
    srv_quic: Vec<(usize, u64, &'a FrameRecord)>,
    /// Server-point records of the command channel with this peer.
    srv_tcp: Vec<(usize, u64, &'a FrameRecord)>,
    /// Agent-point QUIC records.
    ag_quic: Vec<(usize, u64, &'a FrameRecord)>,
    /// Agent-point records read from the server over TCP.
    ag_tcp_rx: Vec<(usize, u64)>,
}

impl<'a> Facts<'a> {
    fn named(&self, name: &str) -> Vec<Ev<'a>> {
        self.ev
            .iter()
            .copied()
            .filter(|(_, e)| e.event == name)
            .collect()
    }
    fn any(&self, names: &[&str]) -> Vec<Ev<'a>> {
        self.ev
            .iter()
            .copied()
            .filter(|(_, e)| names.contains(&e.event.as_str()))
            .collect()
    }
    fn agent_side(&self, name: &str) -> Vec<Ev<'a>> {
        self.named(name)
            .into_iter()
            .filter(|(_, e)| e.host.starts_with("agent:"))
            .collect()
    }
    fn server_side(&self, name: &str) -> Vec<Ev<'a>> {
        self.named(name)
            .into_iter()
            .filter(|(_, e)| e.host == "server")
            .collect()
    }
}

fn s<'e>(e: &'e EventRecord, k: &str) -> Option<&'e str> {
    e.fields.get(k).and_then(Value::as_str)
}
fn u(e: &EventRecord, k: &str) -> Option<u64> {
    e.fields.get(k).and_then(Value::as_u64)
}
fn b(e: &EventRecord, k: &str) -> Option<bool> {
    e.fields.get(k).and_then(Value::as_bool)
}

/// The agent an event is about: its `agent` field, the `name` of an
/// enrollment event, or the `<name>` of host `agent:<name>`.
fn subject(e: &EventRecord) -> Option<&str> {
    s(e, "agent")
        .or_else(|| {
            e.event
                .starts_with("enroll.")
                .then(|| s(e, "name"))
                .flatten()
        })
        .or_else(|| e.host.strip_prefix("agent:"))
}

/// Every agent the view's events or frames name, sorted.
pub(crate) fn agents(log: &Log<'_>) -> Vec<String> {
    let mut out: Vec<String> = log
        .events
        .iter()
        .filter_map(|(_, e)| subject(e))
        .chain(log.frames.iter().filter_map(|(_, r)| {
            if r.point == "server" {
                Some(r.peer.as_str()).filter(|p| !p.is_empty() && *p != "?" && *p != "server")
            } else {
                r.point.strip_prefix("agent:")
            }
        }))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn facts<'a>(log: &Log<'a>) -> BTreeMap<String, Facts<'a>> {
    let mut m: BTreeMap<String, Facts<'a>> = BTreeMap::new();
    for &(n, e) in &log.events {
        if let Some(a) = subject(e) {
            m.entry(a.to_string()).or_default().ev.push((n, e));
        }
    }
    for &(n, r) in &log.frames {
        if r.point == "server" {
            let f = m.entry(r.peer.to_string()).or_default();
            if r.frame == FrameKind::Quic {
                f.srv_quic.push((n, r.t_us, r));
            } else {
                f.srv_tcp.push((n, r.t_us, r));
            }
        } else if let Some(a) = r.point.strip_prefix("agent:") {
            let f = m.entry(a.to_string()).or_default();
            if r.frame == FrameKind::Quic {
                f.ag_quic.push((n, r.t_us, r));
            } else if r.dir == Dir::Rx && r.frame != FrameKind::Tls {
                f.ag_tcp_rx.push((n, r.t_us));
            }
        }
    }
    m
}

/// What the view's logs say once for every agent.
struct Shared {
    /// The server's `enroll.unavailable` events (they name no agent).
    unavailable: usize,
}

/// Collects verdicts and next steps for one agent.
struct Out {
    verdicts: Vec<Verdict>,
    next: Vec<NextStep>,
}

impl Out {
    fn put(
        &mut self,
        h: &'static str,
        status: Status,
        records: Vec<usize>,
        events: Vec<usize>,
        reason: impl Into<String>,
    ) {
        self.verdicts.push(Verdict {
            hypothesis: h,
            status,
            records: cite(records),
            events: cite(events),
            reason: reason.into(),
        });
    }
    fn status(&self, h: &str) -> Option<Status> {
        self.verdicts
            .iter()
            .find(|v| v.hypothesis == h)
            .map(|v| v.status)
    }
    fn standing(&self, h: &str) -> bool {
        matches!(self.status(h), Some(S | I))
    }
    fn step(&mut self, between: &[&'static str], experiment: String, plan: Option<Plan>) {
        self.next.push(NextStep {
            between: between.to_vec(),
            experiment,
            plan,
        });
    }
}

fn ns(v: &[Ev<'_>]) -> Vec<usize> {
    v.iter().map(|(n, _)| *n).collect()
}

/// The named verdicts and next steps of every agent of the view.
pub(crate) fn decide(log: &Log<'_>) -> BTreeMap<String, (Vec<Verdict>, Vec<NextStep>)> {
    let shared = Shared {
        unavailable: log
            .events
            .iter()
            .filter(|(_, e)| e.host == "server" && e.event == "enroll.unavailable")
            .count(),
    };
    let mut out = BTreeMap::new();
    for (name, f) in facts(log) {
        let mut o = Out {
            verdicts: Vec::new(),
            next: Vec::new(),
        };
        incident1(log, &name, &f, &mut o);
        incident3(log, &shared, &name, &f, &mut o);
        incident4(log, &name, &f, &mut o);
        incident5(log, &name, &f, &mut o);
        out.insert(name, (o.verdicts, o.next));
    }
    out
}

fn err_of(e: &EventRecord) -> &str {
    s(e, "error").unwrap_or("")
}

fn incident1(log: &Log<'_>, name: &str, f: &Facts<'_>, o: &mut Out) {
    let applies = !f
        .any(&[
            "enroll.request",
            "enroll.ok",
            "install.result",
            "enroll.accepted",
            "enroll.rejected",
            "tunnel.registered",
            "bench.install",
        ])
        .is_empty();
    if !applies {
        return;
    }
    let full = log.view == View::Full;
    let accepted = f.server_side("enroll.accepted");
    let srv_answer: Vec<Ev<'_>> = f
        .server_side("enroll.accepted")
        .into_iter()
        .chain(f.server_side("enroll.rejected"))
        .collect();
    let ag_answer: Vec<Ev<'_>> = f
        .agent_side("enroll.ok")
        .into_iter()
        .chain(f.agent_side("enroll.rejected"))
        .collect();
    let quic_ok: Vec<usize> = f
        .srv_quic
        .iter()
        .chain(&f.ag_quic)
        .filter(|(_, _, r)| r.kind.as_deref() == Some("handshake_ok"))
        .map(|(n, _, _)| *n)
        .collect();

    // I1-udp-blocked.
    if full {
        // Handshakes that timed out, each with TCP working around it.
        let mut fails: Vec<(Option<usize>, Option<usize>, u64)> = Vec::new();
        for (n, e) in f.agent_side("tunnel.connect_failed") {
            if err_of(e).contains("timed out") {
                fails.push((None, Some(n), e.t_us));
            }
        }
        for (n, e) in f.agent_side("up.probe") {
            if b(e, "ok") == Some(false) && err_of(e).contains("timed out") {
                fails.push((None, Some(n), e.t_us));
            }
        }
        for (n, t, r) in &f.ag_quic {
            if r.kind.as_deref() == Some("handshake_failed")
                && r.error.as_deref().is_some_and(|x| x.contains("timed out"))
            {
                fails.push((Some(*n), None, *t));
            }
        }
        let enrolled = f.agent_side("enroll.ok");
        let mut recs = Vec::new();
        let mut evs = Vec::new();
        for (r, e, t) in &fails {
            let tcp_ev = enrolled
                .iter()
                .find(|(_, x)| x.t_us <= *t && x.t_us + 60_000_000 >= *t);
            let tcp_rec = f
                .ag_tcp_rx
                .iter()
                .find(|(_, x)| *x <= *t && *x + 30_000_000 >= *t);
            if tcp_ev.is_some() || tcp_rec.is_some() {
                recs.extend(r);
                evs.extend(e);
                evs.extend(tcp_ev.map(|x| x.0));
                recs.extend(tcp_rec.map(|x| x.0));
            }
        }
        if !recs.is_empty() || !evs.is_empty() {
            o.put("I1-udp-blocked", S, recs, evs, "QUIC handshakes to UDP 4433 timed out while TCP to the server worked (an enrollment answered or command-channel frames read shortly before): the UDP path is blocked.");
        } else if !quic_ok.is_empty() {
            o.put(
                "I1-udp-blocked",
                R,
                quic_ok.clone(),
                Vec::new(),
                "No QUIC handshake timed out while TCP worked, and QUIC handshakes completed: UDP 4433 reaches the gateway.",
            );
        } else {
            o.put(
                "I1-udp-blocked",
                I,
                Vec::new(),
                Vec::new(),
                "No QUIC handshake outcome in the log.",
            );
        }
    } else {
        let mut missing = Vec::new();
        let mut seen = Vec::new();
        for (n, e) in &accepted {
            if !log.decided(e.t_us + TUNNEL_WINDOW_US - GRACE_US) {
                continue;
            }
            let q = f
                .srv_quic
                .iter()
                .find(|(_, t, _)| *t >= e.t_us && *t <= e.t_us + TUNNEL_WINDOW_US);
            match q {
                Some((qn, _, _)) => seen.push((*n, *qn)),
                None => missing.push(*n),
            }
        }
        if !missing.is_empty() {
            o.put("I1-udp-blocked", S, Vec::new(), missing, "The gateway accepted the agent's enrollment over TCP 7171 (events cited) and then received no QUIC packet of the agent for 35 s: TCP works, the UDP tunnel does not arrive.");
        } else if !seen.is_empty() {
            o.put(
                "I1-udp-blocked",
                R,
                seen.iter().map(|x| x.1).collect(),
                seen.iter().map(|x| x.0).collect(),
                "The agent's QUIC traffic reached the gateway within 35 s of each accepted enrollment.",
            );
        } else {
            o.put(
                "I1-udp-blocked",
                I,
                Vec::new(),
                Vec::new(),
                "No accepted enrollment in the server's log.",
            );
        }
    }

    // I1-gateway-unreachable and I1-tls-failure: why an install failed.
    let failed: Vec<Ev<'_>> = f
        .agent_side("install.result")
        .into_iter()
        .filter(|(_, e)| s(e, "result") != Some("success"))
        .collect();
    let tls_word = |x: &str| x.contains("TLS") || x.contains("certificate");
    let answered: Vec<usize> = ns(&srv_answer).into_iter().chain(ns(&ag_answer)).collect();
    let unreachable: Vec<usize> = failed
        .iter()
        .filter(|(_, e)| {
            let t = e.t_us;
            let req = f
                .agent_side("enroll.request")
                .into_iter()
                .rfind(|(_, r)| r.t_us <= t);
            req.is_some_and(|(_, r)| {
                !ag_answer
                    .iter()
                    .chain(&srv_answer)
                    .any(|(_, a)| a.t_us >= r.t_us && a.t_us <= t)
            }) && !tls_word(err_of(e))
        })
        .map(|(n, _)| *n)
        .collect();
    if !unreachable.is_empty() {
        o.put("I1-gateway-unreachable", S, Vec::new(), unreachable, "`agent up` sent its enrollment request and no answer came before the install failed (no enroll.ok or rejection, no TLS error): the gateway's TCP 7171 is unreachable.");
    } else if !answered.is_empty() {
        o.put(
            "I1-gateway-unreachable",
            R,
            Vec::new(),
            answered.clone(),
            "The gateway answered an enrollment request: TCP 7171 reaches it.",
        );
    } else {
        o.put(
            "I1-gateway-unreachable",
            I,
            Vec::new(),
            Vec::new(),
            "No enrollment answer and no failed install in this view.",
        );
    }
    let tls: Vec<usize> = failed
        .iter()
        .filter(|(_, e)| tls_word(err_of(e)))
        .map(|(n, _)| *n)
        .collect();
    if !tls.is_empty() {
        o.put("I1-tls-failure", S, Vec::new(), tls, "The install failed with a TLS/certificate error (an unknown CA, or a certificate not valid by the agent's clock).");
    } else if !answered.is_empty() && !quic_ok.is_empty() {
        o.put(
            "I1-tls-failure",
            R,
            quic_ok.clone(),
            answered.clone(),
            "TLS with the enrollment service and the mTLS tunnel handshake both completed.",
        );
    } else {
        o.put("I1-tls-failure", I, Vec::new(), Vec::new(), "No completed TLS handshake on both paths, and no TLS error from the agent in this view.");
    }

    // I1-stale-close.
    let other = f.server_side("tunnel.unregistered_other");
    let skipped = f.server_side("tunnel.unregister_skipped");
    let plain = f.server_side("tunnel.unregistered");
    if !other.is_empty() {
        o.put("I1-stale-close", S, Vec::new(), ns(&other), "An older tunnel connection's late close unregistered the agent's live tunnel (the removed connection is not the one that closed).");
    } else if !skipped.is_empty() {
        o.put("I1-stale-close", R, Vec::new(), ns(&skipped), "A late close of an older connection came, but the gateway checked the connection identity and kept the live tunnel.");
    } else if !plain.is_empty() {
        o.put(
            "I1-stale-close",
            R,
            Vec::new(),
            ns(&plain),
            "Every unregister removed the connection that closed.",
        );
    } else {
        o.put(
            "I1-stale-close",
            I,
            Vec::new(),
            Vec::new(),
            "No tunnel unregistered in this view.",
        );
    }

    // I1-up-interrupted.
    let killed = f.agent_side("install.up_killed");
    if !killed.is_empty() {
        let cleaned = f.agent_side("up.removed_unreferenced");
        let why = if cleaned.is_empty() {
            "`agent up` was killed after writing its certificates, before agent.json: the files it wrote stay behind as orphans."
        } else {
            "`agent up` was killed after writing its certificates, before agent.json; a later `up` removed the unreferenced files."
        };
        o.put(
            "I1-up-interrupted",
            S,
            Vec::new(),
            [ns(&killed), ns(&cleaned)].concat(),
            why,
        );
    } else if full && !f.agent_side("install.result").is_empty() {
        o.put(
            "I1-up-interrupted",
            R,
            Vec::new(),
            ns(&f.agent_side("install.result")),
            "Every install ran `agent up` to its end.",
        );
    } else {
        o.put(
            "I1-up-interrupted",
            I,
            Vec::new(),
            Vec::new(),
            "The server's log does not show whether `agent up` ran to its end.",
        );
    }
    if o.status("I1-udp-blocked") == Some(S) && o.standing("I1-up-interrupted") && !full {
        o.step(&["I1-udp-blocked", "I1-up-interrupted"], format!("read {name}'s own install events (or run `fleet-agent up` on it again and read its exit code): a tunnel probe timeout (exit 4) => I1-udp-blocked; `up` killed before agent.json => I1-up-interrupted"), Some(Plan { after_us: log.end_t, steps: vec![PlanStep::ReadAgentLogs { agent: name.to_string() }] }));
    }
}

fn per_minute(ts: &[u64]) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in ts.iter().enumerate() {
        while ts[start] + 60_000_000 <= *t {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

fn incident3(log: &Log<'_>, shared: &Shared, name: &str, f: &Facts<'_>, o: &mut Out) {
    let full = log.view == View::Full;
    let enroll = f.any(&[
        "enroll.request",
        "enroll.accepted",
        "enroll.rejected",
        "enroll.ok",
    ]);
    let checkins = f.any(&["checkin.refused", "checkin.failed", "fleet.state"]);
    if enroll.is_empty() && checkins.is_empty() {
        return;
    }
    let rejected = |status: fn(u64) -> bool| -> Vec<Ev<'_>> {
        let side = if full {
            f.agent_side("enroll.rejected")
        } else {
            f.server_side("enroll.rejected")
        };
        side.into_iter()
            .filter(|(_, e)| u(e, "status").is_some_and(status))
            .collect()
    };
    let ok: Vec<Ev<'_>> = if full {
        f.agent_side("enroll.ok")
    } else {
        f.server_side("enroll.accepted")
    };
    let auth = rejected(|s| s == 401);
    let terminal = f.agent_side("enroll.terminal");

    // I3-invalid-token.
    if !auth.is_empty() {
        o.put(
            "I3-invalid-token",
            S,
            Vec::new(),
            [ns(&auth), ns(&terminal)].concat(),
            "Enrollment was refused with HTTP 401: the enrollment token is not valid (a permanent failure).",
        );
    } else if !ok.is_empty() {
        o.put(
            "I3-invalid-token",
            R,
            Vec::new(),
            ns(&ok),
            "Enrollment was accepted: the token is valid.",
        );
    } else {
        o.put(
            "I3-invalid-token",
            I,
            Vec::new(),
            Vec::new(),
            "No enrollment answer for this agent in this view.",
        );
    }

    // I3-auth-storm.
    let ts: Vec<u64> = auth.iter().map(|(_, e)| e.t_us).collect();
    let rate = per_minute(&ts);
    if rate >= STORM_PER_MINUTE {
        o.put("I3-auth-storm", S, Vec::new(), ns(&auth), format!("{} enrollment refusals with HTTP 401, up to {rate} in one minute{}: the permanent failure is retried at once, with no back-off and no terminal state.", auth.len(), if terminal.is_empty() { ", and no terminal state" } else { "" }));
    } else if !terminal.is_empty() {
        o.put(
            "I3-auth-storm",
            R,
            Vec::new(),
            [ns(&auth), ns(&terminal)].concat(),
            "The agent stopped at the permanent refusal in an explicit terminal state.",
        );
    } else if !auth.is_empty() && ts.last().is_some_and(|t| log.decided(t + 50_000_000)) {
        o.put(
            "I3-auth-storm",
            R,
            Vec::new(),
            ns(&auth),
            format!(
                "{} refusal(s), at most {rate} a minute, then none for a minute: no storm.",
                auth.len()
            ),
        );
    } else if auth.is_empty() && !ok.is_empty() {
        o.put(
            "I3-auth-storm",
            R,
            Vec::new(),
            ns(&ok),
            "Enrollment was accepted: nothing permanent to retry.",
        );
    } else {
        o.put(
            "I3-auth-storm",
            I,
            Vec::new(),
            ns(&auth),
            "Too few refusals in this view to tell a storm.",
        );
    }

    // I3-enroll-unavailable and I3-transient-storm (full view: the server's
    // 5xx events do not name the agent).
    let transient = rejected(|s| s >= 500);
    if full {
        if !transient.is_empty() {
            o.put(
                "I3-enroll-unavailable",
                S,
                Vec::new(),
                ns(&transient),
                format!(
                    "The enrollment service answered {} transient error(s) (HTTP 5xx).",
                    transient.len()
                ),
            );
        } else if !ok.is_empty() || !auth.is_empty() {
            o.put("I3-enroll-unavailable", R, Vec::new(), [ns(&ok), ns(&auth)].concat(), "Every enrollment answer the agent got was a success or a permanent refusal, none transient.");
        } else {
            o.put(
                "I3-enroll-unavailable",
                I,
                Vec::new(),
                Vec::new(),
                "No enrollment answer in the log.",
            );
        }
        let retries: Vec<Ev<'_>> = f
            .agent_side("enroll.delayed_retry")
            .into_iter()
            .filter(|(_, e)| err_of(e).contains("HTTP 5"))
            .collect();
        let tts: Vec<u64> = transient.iter().map(|(_, e)| e.t_us).collect();
        let trate = per_minute(&tts);
        let immediate = retries
            .iter()
            .filter(|(_, e)| u(e, "delay_ms") == Some(0))
            .count();
        if trate >= STORM_PER_MINUTE && immediate * 2 >= retries.len() && !retries.is_empty() {
            o.put("I3-transient-storm", S, Vec::new(), [ns(&transient), ns(&retries)].concat(), format!("{} transient refusals, up to {trate} in one minute, and {immediate} of {} retry rounds started at once (delay 0 ms): no back-off.", transient.len(), retries.len()));
        } else if !transient.is_empty() {
            o.put("I3-transient-storm", R, Vec::new(), [ns(&transient), ns(&retries)].concat(), format!("The transient errors were retried with back-off: at most {trate} refusals in a minute."));
        } else if !ok.is_empty() || !auth.is_empty() {
            o.put(
                "I3-transient-storm",
                R,
                Vec::new(),
                ns(&ok),
                "No transient enrollment error to retry.",
            );
        } else {
            o.put(
                "I3-transient-storm",
                I,
                Vec::new(),
                Vec::new(),
                "No enrollment answer in the log.",
            );
        }
    } else {
        let unnamed = shared.unavailable;
        for h in ["I3-enroll-unavailable", "I3-transient-storm"] {
            o.put(h, I, Vec::new(), Vec::new(), format!("The server's transient-error events ({unnamed} in the log) do not name the agent."));
        }
    }

    // I3-checkin-failing.
    let refused = f.server_side("checkin.refused");
    let failed: Vec<Ev<'_>> = f
        .agent_side("checkin.failed")
        .into_iter()
        .filter(|(_, e)| err_of(e).contains("HTTP"))
        .collect();
    let states = f.agent_side("fleet.state");
    let bad_state: Vec<Ev<'_>> = states
        .iter()
        .copied()
        .filter(|(_, e)| matches!(s(e, "to"), Some("failed" | "degraded")))
        .collect();
    if !refused.is_empty() || !failed.is_empty() {
        o.put("I3-checkin-failing", S, Vec::new(), [ns(&refused), ns(&failed)].concat(), "The server answered the agent's fleet check-ins with an HTTP error: the control plane is failing for this agent.");
    } else if full && !states.is_empty() {
        o.put(
            "I3-checkin-failing",
            R,
            Vec::new(),
            ns(&states),
            "The agent's check-ins were answered (no refusal, fleet state never degraded by one).",
        );
    } else {
        o.put(
            "I3-checkin-failing",
            I,
            Vec::new(),
            Vec::new(),
            "The server's log shows no check-in refusal; it does not log accepted check-ins.",
        );
    }

    // I3-liveness-masks: the logs hold the fleet state; what /liveness
    // answered only when a monitor logged its probes (`liveness.probed`).
    let state_at = |t: u64| {
        states
            .iter()
            .rev()
            .find(|(_, e)| e.t_us <= t)
            .and_then(|(_, e)| s(e, "to"))
    };
    // Probes while the fleet state was as bad as the probe's `failon`.
    let mut masked = Vec::new();
    let mut caught = Vec::new();
    for (n, e) in f.named("liveness.probed") {
        let bad = matches!(
            (s(e, "failon"), state_at(e.t_us)),
            (Some("failed"), Some("failed")) | (Some("degraded"), Some("failed" | "degraded"))
        );
        match u(e, "status") {
            Some(200) if bad => masked.push(n),
            Some(500) if bad => caught.push(n),
            _ => {}
        }
    }
    if !masked.is_empty() {
        o.put("I3-liveness-masks", S, Vec::new(), [ns(&bad_state), masked].concat(), "A liveness probe answered 200 (healthy) for the failon level the agent's fleet state had reached while its check-ins failed: liveness masks the failure.");
    } else if !caught.is_empty() {
        o.put("I3-liveness-masks", R, Vec::new(), [ns(&bad_state), caught].concat(), "A liveness probe answered 500 while the agent's fleet state was degraded or failed: liveness reports the failure.");
    } else if !bad_state.is_empty() || (!full && !refused.is_empty()) {
        o.put("I3-liveness-masks", I, Vec::new(), [ns(&bad_state), ns(&refused)].concat(), "The fleet state went degraded or failed; the logs do not hold what /liveness answered then.");
        let after_us = bad_state
            .iter()
            .chain(&refused)
            .map(|(_, e)| e.t_us)
            .min()
            .unwrap_or(log.end_t);
        o.step(&["I3-liveness-masks"], format!("probe /liveness?failon=failed (and failon=degraded) on {name} while its check-ins fail: 200 => I3-liveness-masks, 500 refutes it"), Some(Plan { after_us, steps: vec![PlanStep::ProbeLiveness { agent: name.to_string() }] }));
    } else if full && !states.is_empty() {
        o.put(
            "I3-liveness-masks",
            R,
            Vec::new(),
            ns(&states),
            "The fleet state never went degraded or failed: nothing for liveness to mask.",
        );
    }
}

fn incident4(log: &Log<'_>, name: &str, f: &Facts<'_>, o: &mut Out) {
    let full = log.view == View::Full;
    let enq = f.server_side("lifecycle.queue.enqueued");
    if enq.is_empty() {
        return;
    }
    let lifecycle: Vec<Ev<'_>> =
        f.ev.iter()
            .copied()
            .filter(|(_, e)| {
                e.host == "server"
                    && (e.event.starts_with("lifecycle.reconcile.")
                        || e.event == "queue.worker.success")
            })
            .collect();
    let missed = f.any(&[
        "lifecycle.reconcile.retriggered",
        "lifecycle.reconcile.max_attempts_reached",
        "lifecycle.reconcile.revoked",
    ]);
    let revoked = f.any(&["agent.revoked", "lifecycle.reconcile.revoked"]);
    let skip = f.server_side("lifecycle.reconcile.skip_not_stuck");
    let maxed = f.server_side("lifecycle.reconcile.max_attempts_reached");

    // I4-worker-down.
    let first = enq[0].1;
    let due = u(first, "due_us").unwrap_or(first.t_us);
    if lifecycle.is_empty() && log.decided(due) {
        o.put("I4-worker-down", S, Vec::new(), vec![enq[0].0], "A lifecycle task was queued and its deadline passed, yet no worker ran any lifecycle task for the agent (no reconcile, no worker success).");
    } else if !lifecycle.is_empty() {
        o.put(
            "I4-worker-down",
            R,
            Vec::new(),
            vec![lifecycle[0].0],
            "The queue worker ran the agent's lifecycle task.",
        );
    } else {
        o.put(
            "I4-worker-down",
            I,
            Vec::new(),
            ns(&enq),
            "The task is not due yet in this log.",
        );
    }

    // I4-revoked.
    if !revoked.is_empty() {
        o.put(
            "I4-revoked",
            S,
            Vec::new(),
            ns(&revoked),
            "The agent's credential was revoked; the reconciler stops waking it.",
        );
    } else if !skip.is_empty() || !maxed.is_empty() {
        o.put(
            "I4-revoked",
            R,
            Vec::new(),
            [ns(&skip), ns(&maxed)].concat(),
            "The reconciler decided the agent without any revocation.",
        );
    } else {
        o.put(
            "I4-revoked",
            I,
            Vec::new(),
            Vec::new(),
            "No reconcile decision in this view.",
        );
    }

    // I4-bad-token.
    let auth_refused = f.server_side("channel.auth_refused");
    let refused401: Vec<Ev<'_>> = f
        .server_side("checkin.refused")
        .into_iter()
        .filter(|(_, e)| u(e, "status") == Some(401))
        .collect();
    let registered = f.server_side("registry.registered");
    if !auth_refused.is_empty() || !refused401.is_empty() {
        o.put("I4-bad-token", S, Vec::new(), [ns(&auth_refused), ns(&refused401)].concat(), "The server refused the agent's Auth or check-ins for its agent token: its heartbeat is refused.");
    } else if !registered.is_empty() {
        o.put(
            "I4-bad-token",
            R,
            Vec::new(),
            vec![registered[0].0],
            "The server accepted the agent's Auth (its session registered).",
        );
    } else {
        o.put(
            "I4-bad-token",
            I,
            Vec::new(),
            Vec::new(),
            "The agent's command channel never reached the server in this view.",
        );
    }

    // The wake cycle that missed its deadline: from the enqueue before the
    // first missed deadline to that deadline.
    let stuck = missed.first().copied();
    let (w0, w1) = match stuck {
        Some((_, m)) => (
            // The retrigger enqueues the next wake at its own time.
            enq.iter()
                .rfind(|(_, e)| e.t_us < m.t_us)
                .map_or(0, |(_, e)| e.t_us),
            m.t_us,
        ),
        None => (first.t_us, due),
    };
    // With no worker, the first wake's deadline passing is the miss.
    let stuck = stuck.or((o.status("I4-worker-down") == Some(S)).then_some(enq[0]));
    let in_w = |t: u64| t >= w0 && t <= w1;

    // I4-no-checkin-network.
    if let Some((mn, _)) = stuck {
        let quic: Vec<usize> = f
            .srv_quic
            .iter()
            .filter(|(_, t, _)| in_w(*t))
            .map(|x| x.0)
            .collect();
        let tcp: Vec<usize> = f
            .srv_tcp
            .iter()
            .filter(|(_, t, _)| in_w(*t))
            .map(|x| x.0)
            .collect();
        let reached: Vec<Ev<'_>> = f
            .any(&[
                "registry.registered",
                "channel.auth_refused",
                "channel.proxied",
            ])
            .into_iter()
            .filter(|(_, e)| e.host == "server" && in_w(e.t_us))
            .collect();
        let lost: Vec<Ev<'_>> = f
            .agent_side("channel.lost")
            .into_iter()
            .filter(|(_, e)| in_w(e.t_us) && err_of(e).contains("connect"))
            .collect();
        if !reached.is_empty() || !tcp.is_empty() {
            o.put(
                "I4-no-checkin-network",
                R,
                tcp,
                ns(&reached),
                "The agent's command channel reached the server during the missed wake.",
            );
        } else if full && !lost.is_empty() {
            o.put("I4-no-checkin-network", S, Vec::new(), [ns(&lost), vec![mn]].concat(), "The agent ran and tried its command channel during the wake, but every connect failed on the network: its heartbeat cannot reach the server.");
        } else if !full && !quic.is_empty() {
            o.put("I4-no-checkin-network", S, quic, vec![mn], "During the missed wake the agent's tunnel traffic reached the server (it runs) while its command channel never did: the heartbeat cannot reach the server over the network.");
        } else {
            o.put(
                "I4-no-checkin-network",
                I,
                Vec::new(),
                vec![mn],
                "Nothing from the agent during the missed wake: it may not run at all.",
            );
        }
    } else if !skip.is_empty() {
        o.put(
            "I4-no-checkin-network",
            R,
            Vec::new(),
            vec![skip[0].0],
            "The agent checked in before its deadline.",
        );
    }

    // I4-never-started.
    if let Some((mn, _)) = stuck {
        let started: Vec<Ev<'_>> = f
            .any(&["process.started", "agent.started", "agent.restarted"])
            .into_iter()
            .filter(|(_, e)| in_w(e.t_us))
            .collect();
        let install_failed: Vec<Ev<'_>> = f
            .agent_side("install.result")
            .into_iter()
            .filter(|(_, e)| in_w(e.t_us) && s(e, "result") != Some("success"))
            .collect();
        let quic: Vec<usize> = f
            .srv_quic
            .iter()
            .filter(|(_, t, _)| in_w(*t))
            .map(|x| x.0)
            .collect();
        if full && !install_failed.is_empty() {
            o.put("I4-never-started", S, Vec::new(), [ns(&install_failed), vec![mn]].concat(), "The install of this enrollment failed, so its agent service never started to answer the wake.");
        } else if !started.is_empty() || !quic.is_empty() {
            o.put(
                "I4-never-started",
                R,
                quic,
                ns(&started),
                "The agent's service ran during the missed wake.",
            );
        } else if full
            && f.agent_side("install.result").is_empty()
            && f.agent_side("process.started").is_empty()
        {
            o.put(
                "I4-never-started",
                S,
                Vec::new(),
                vec![mn],
                "The agent logged no service start at all before its deadline passed.",
            );
        } else {
            o.put("I4-never-started", I, Vec::new(), vec![mn], "Nothing from the agent during the missed wake in this view: not started, or cut off.");
        }
        if o.standing("I4-never-started") && o.standing("I4-no-checkin-network") {
            o.step(&["I4-never-started", "I4-no-checkin-network"], format!("check on {name}'s machine that the agent service runs (process started, its tunnel up) and whether TCP 8443 to the server connects, then wake it"), Some(Plan { after_us: log.end_t, steps: vec![PlanStep::ReadAgentLogs { agent: name.to_string() }] }));
        }
    } else if !skip.is_empty() {
        o.put(
            "I4-never-started",
            R,
            Vec::new(),
            vec![skip[0].0],
            "The agent checked in before its deadline.",
        );
    }

    // I4-late-checkin.
    if let Some((mn, m)) = stuck {
        // A check-in of the same escalation (attempt 2 or later), not of a
        // new enrollment's first wake.
        let later: Vec<Ev<'_>> = skip
            .iter()
            .copied()
            .filter(|(_, e)| e.t_us > m.t_us && u(e, "attempt").is_some_and(|a| a >= 2))
            .collect();
        let final_max = maxed
            .iter()
            .filter(|(_, x)| !later.iter().any(|(_, l)| l.t_us > x.t_us))
            .map(|x| x.0)
            .collect::<Vec<_>>();
        if !later.is_empty() && m.event == "lifecycle.reconcile.retriggered" {
            o.put(
                "I4-late-checkin",
                S,
                Vec::new(),
                vec![mn, later[0].0],
                "The first wake went unanswered and the agent checked in after a later wake.",
            );
        } else if !final_max.is_empty() || !revoked.is_empty() {
            o.put(
                "I4-late-checkin",
                R,
                Vec::new(),
                [final_max, ns(&revoked)].concat(),
                "The agent never checked in: the escalation ended.",
            );
        } else {
            o.put(
                "I4-late-checkin",
                I,
                Vec::new(),
                vec![mn],
                "The escalation has not ended in this log.",
            );
        }
    } else if !skip.is_empty() {
        o.put(
            "I4-late-checkin",
            R,
            Vec::new(),
            vec![skip[0].0],
            "The agent checked in on the first wake.",
        );
    }
}

fn incident5(log: &Log<'_>, name: &str, f: &Facts<'_>, o: &mut Out) {
    let full = log.view == View::Full;
    let requested = f.server_side("upgrade.requested");
    let ag_phases = f.agent_side("upgrade.phase");
    if requested.is_empty() && ag_phases.is_empty() {
        return;
    }
    let op: Vec<Ev<'_>> = f.server_side("upgrade.operator_phase");
    let op_has = |p: &str| op.iter().any(|(_, e)| s(e, "phase") == Some(p));
    let op_named = |p: &str| -> Vec<usize> {
        op.iter()
            .filter(|(_, e)| s(e, "phase") == Some(p))
            .map(|x| x.0)
            .collect()
    };
    let to_version = requested
        .first()
        .and_then(|(_, e)| s(e, "to_version"))
        .or_else(|| ag_phases.first().and_then(|(_, e)| s(e, "to_version")))
        .unwrap_or("")
        .to_string();
    let phase_to = |from: &str, to: &str| -> Vec<usize> {
        ag_phases
            .iter()
            .filter(|(_, e)| s(e, "from") == Some(from) && s(e, "to") == Some(to))
            .map(|x| x.0)
            .collect()
    };
    let early_revert = op_has("reverted") && !op_has("cutover-ready") && !op_has("done");

    // I5-stage-failure and I5-self-test-failure.
    if full {
        let bad_sum: Vec<usize> = f
            .agent_side("upgrade.downloaded")
            .iter()
            .filter(|(_, e)| s(e, "sha256") != s(e, "expected"))
            .map(|x| x.0)
            .collect();
        let stage_fail = [bad_sum, phase_to("staging", "reverted")].concat();
        let staged = phase_to("staging", "verifying");
        if !stage_fail.is_empty() {
            o.put("I5-stage-failure", S, Vec::new(), stage_fail, "Staging failed (the downloaded build's SHA-256 differs from the announced one, or the download failed) and the agent reverted.");
        } else if !staged.is_empty() {
            o.put(
                "I5-stage-failure",
                R,
                Vec::new(),
                staged,
                "The build was downloaded and verified: staging passed.",
            );
        } else {
            o.put(
                "I5-stage-failure",
                I,
                Vec::new(),
                Vec::new(),
                "The agent never reported the end of staging.",
            );
        }
        let tests = f.agent_side("process.self_test");
        let failed: Vec<usize> = tests
            .iter()
            .filter(|(_, e)| b(e, "ok") == Some(false))
            .map(|x| x.0)
            .collect();
        if !failed.is_empty() {
            o.put("I5-self-test-failure", S, Vec::new(), failed, "The new build's self-test, run by the old agent, failed and the agent reverted before any switch.");
        } else if !tests.is_empty() {
            o.put(
                "I5-self-test-failure",
                R,
                Vec::new(),
                ns(&tests),
                "The new build passed its self-test.",
            );
        } else {
            o.put(
                "I5-self-test-failure",
                I,
                Vec::new(),
                Vec::new(),
                "No self-test ran.",
            );
        }
    } else if early_revert {
        for h in ["I5-stage-failure", "I5-self-test-failure"] {
            o.put(h, I, Vec::new(), [op_named("staging"), op_named("reverted")].concat(), "The operator saw the upgrade revert before any cutover: staging or the self-test failed, and the server's log does not say which.");
        }
        o.step(&["I5-stage-failure", "I5-self-test-failure"], format!("read {name}'s upgrade events (upgrade.downloaded: SHA-256 against the announced one; process.self_test) or its revert reason in the device record"), Some(Plan { after_us: log.end_t, steps: vec![PlanStep::ReadAgentLogs { agent: name.to_string() }] }));
    } else if op_has("cutover-ready") || op_has("done") {
        for h in ["I5-stage-failure", "I5-self-test-failure"] {
            o.put(
                h,
                R,
                Vec::new(),
                op_named("cutover-ready"),
                "The upgrade reached the cutover: staging and the self-test passed.",
            );
        }
    } else {
        for h in ["I5-stage-failure", "I5-self-test-failure"] {
            o.put(
                h,
                I,
                Vec::new(),
                ns(&op),
                "The upgrade has not passed or failed staging in this log.",
            );
        }
    }

    // The new version's sessions: registry.replaced after the cutover.
    let cut_t = op
        .iter()
        .find(|(_, e)| s(e, "phase") == Some("cutover-ready"))
        .map(|(_, e)| e.t_us);
    let crashed: Vec<usize> = f
        .ev
        .iter()
        .filter(|(_, e)| {
            e.host.starts_with("agent:")
                && (e.event == "upgrade.new_exited"
                    || (e.event == "agent.crashed" && s(e, "version") == Some(to_version.as_str())))
        })
        .map(|x| x.0)
        .collect();
    let mut new_hb = Vec::new();
    let mut silent = Vec::new();
    if let Some(ct) = cut_t {
        for (n, e) in f.server_side("registry.replaced") {
            if e.t_us + 1_000_000 < ct {
                continue;
            }
            let Some(conn) = s(e, "conn") else { continue };
            let recs: Vec<&(usize, u64, &FrameRecord)> = f
                .srv_tcp
                .iter()
                .filter(|(_, _, r)| r.conn == conn)
                .collect();
            let hb: Vec<usize> = recs
                .iter()
                .filter(|(_, _, r)| r.msg.as_deref() == Some("Heartbeat"))
                .map(|x| x.0)
                .collect();
            // The session's life: its first to its last server record.
            let last = recs.iter().map(|x| x.1).max().unwrap_or(e.t_us);
            if !hb.is_empty() {
                new_hb.push(hb[0]);
            } else if last >= e.t_us + SILENT_US {
                silent.push(n);
            }
        }
    }
    // I5-new-crashes.
    if full && !crashed.is_empty() {
        o.put(
            "I5-new-crashes",
            S,
            Vec::new(),
            crashed.clone(),
            "The new version exited as it started; the old agent switched back.",
        );
    } else if !new_hb.is_empty() {
        o.put(
            "I5-new-crashes",
            R,
            new_hb.clone(),
            Vec::new(),
            "The new version's session sent heartbeats: it runs.",
        );
    } else if !silent.is_empty() {
        o.put(
            "I5-new-crashes",
            R,
            Vec::new(),
            silent.clone(),
            "The new version opened a session and kept it: it did not crash at start.",
        );
    } else if cut_t.is_some() {
        o.put(
            "I5-new-crashes",
            I,
            Vec::new(),
            op_named("cutover-ready"),
            "After the cutover the server saw no session of the new version.",
        );
    } else if op_has("reverted") || !ag_phases.is_empty() {
        o.put(
            "I5-new-crashes",
            R,
            Vec::new(),
            op_named("reverted"),
            "The upgrade never reached the cutover: the new version never started.",
        );
    }
    // I5-new-silent.
    if !new_hb.is_empty() {
        o.put(
            "I5-new-silent",
            R,
            new_hb.clone(),
            Vec::new(),
            "The new version's session sent heartbeats (records cited).",
        );
    } else if !silent.is_empty() {
        o.put("I5-new-silent", S, Vec::new(), silent.clone(), "The new version opened its session after the cutover and sent no heartbeat on it for 65 s or more.");
    } else if full && !crashed.is_empty() {
        o.put(
            "I5-new-silent",
            R,
            Vec::new(),
            crashed.clone(),
            "The new version crashed; it did not run silent.",
        );
    } else if cut_t.is_some() {
        o.put(
            "I5-new-silent",
            I,
            Vec::new(),
            op_named("cutover-ready"),
            "No session of the new version lasted long enough to tell.",
        );
    } else if op_has("reverted") || !ag_phases.is_empty() {
        o.put(
            "I5-new-silent",
            R,
            Vec::new(),
            op_named("reverted"),
            "The upgrade never reached the cutover.",
        );
    }
    if o.standing("I5-new-silent") && o.standing("I5-new-crashes") && cut_t.is_some() {
        o.step(&["I5-new-silent", "I5-new-crashes"], format!("read {name}'s process events for {to_version}: an exit right after its start => I5-new-crashes; running without heartbeats => I5-new-silent"), Some(Plan { after_us: log.end_t, steps: vec![PlanStep::ReadAgentLogs { agent: name.to_string() }] }));
    }

    // I5-stop-on-word.
    let stops = f.server_side("upgrade.stop_sent");
    let seen = f.server_side("upgrade.new_heartbeat_seen");
    if let Some((sn, st)) = stops.first() {
        match seen.iter().find(|(_, e)| e.t_us <= st.t_us) {
            Some((hn, _)) => o.put("I5-stop-on-word", R, Vec::new(), vec![*hn, *sn], "The operator sent the stop after it had itself seen a heartbeat of the new version."),
            None => o.put("I5-stop-on-word", S, Vec::new(), vec![*sn], "The operator sent UpgradeStop to the old agent without having seen any heartbeat of the new version: it acted on the agent's own cutover report."),
        }
    } else if op_has("reverted") || op_has("done") {
        o.put(
            "I5-stop-on-word",
            R,
            Vec::new(),
            [op_named("reverted"), op_named("done")].concat(),
            "The operator never sent a stop.",
        );
    } else {
        o.put(
            "I5-stop-on-word",
            I,
            Vec::new(),
            ns(&op),
            "The upgrade has not ended in this log.",
        );
    }

    // I5-operator-forgot.
    let req_t = requested.first().map(|(_, e)| e.t_us).unwrap_or(0);
    let restarts: Vec<usize> = log
        .events
        .iter()
        .filter(|(_, e)| e.host == "server" && e.event == "server.started" && e.t_us > req_t)
        .map(|x| x.0)
        .collect();
    let resumed = f.server_side("upgrade.resumed");
    if requested.is_empty() {
        // Full view of an upgrade the server's log does not show.
    } else if let Some(&rn) = restarts.first() {
        let rt = log
            .events
            .iter()
            .find(|(n, _)| *n == rn)
            .map_or(0, |(_, e)| e.t_us);
        let after: Vec<usize> = op
            .iter()
            .filter(|(_, e)| e.t_us >= rt)
            .map(|x| x.0)
            .collect();
        let ended_before = op
            .iter()
            .any(|(_, e)| e.t_us < rt && matches!(s(e, "phase"), Some("done" | "reverted")));
        if ended_before {
            o.put(
                "I5-operator-forgot",
                R,
                Vec::new(),
                vec![rn],
                "The upgrade had ended before the operator restarted.",
            );
        } else if !resumed.is_empty() || !after.is_empty() {
            o.put(
                "I5-operator-forgot",
                R,
                Vec::new(),
                [vec![rn], ns(&resumed), after].concat(),
                "The operator restarted mid-upgrade and resumed it from its persisted marker.",
            );
        } else if log.decided(rt + SILENT_US) {
            o.put("I5-operator-forgot", S, Vec::new(), vec![rn], "The operator restarted while the upgrade was under way and logged nothing more about it: it forgot the upgrade (no resume, no phase).");
        } else {
            o.put(
                "I5-operator-forgot",
                I,
                Vec::new(),
                vec![rn],
                "The operator restarted mid-upgrade; too little log after it.",
            );
        }
    } else {
        o.put(
            "I5-operator-forgot",
            R,
            Vec::new(),
            ns(&requested),
            "The operator did not restart during the upgrade.",
        );
    }
}
