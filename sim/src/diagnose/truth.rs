//! The ground truth of the named hypotheses (incidents 1, 3, 4 and 5): what
//! a run's injected faults, actions and switches make true for an agent.
//! The harness side of scoring, next to [`RunSpec::truth`] for H1..H7; the
//! engine never reads it.

use std::time::Duration;

use format::scenario::{Endpoint, Proto, Target};
use proto::build::BuildDefect;

use crate::fault::BlockRule;
use crate::run::{ActionKind, AgentSpec, RunSpec};

/// A block at least this long outlasts a QUIC handshake's timeout (30 s):
/// it blocks the tunnel. A shorter one only loses some packets of a
/// connection (such as a probe's close).
pub const LONG_BLOCK: Duration = Duration::from_secs(30);

/// The check-in deadline after a wake (seed 003): 30 s.
pub const CHECKIN_DEADLINE: Duration = Duration::from_secs(30);

/// A clock this far behind sees the server's certificates as not valid yet
/// (they are issued an hour before the run's epoch).
pub const SKEW_INVALIDATES: Duration = Duration::from_secs(3600);

fn covers(rule: &BlockRule, a: &AgentSpec) -> bool {
    [&rule.a, &rule.b].into_iter().any(|e| match e {
        Endpoint::Site(s) => *s == a.site,
        Endpoint::Agent(n) => *n == a.name,
        Endpoint::Server => false,
    })
}

fn blocks<'a>(
    spec: &'a RunSpec,
    a: &'a AgentSpec,
    proto: Proto,
    port: u16,
) -> impl Iterator<Item = &'a BlockRule> + 'a {
    spec.blocks
        .iter()
        .filter(move |r| r.proto == proto && r.port.is_none_or(|p| p == port) && covers(r, a))
}

fn length(r: &BlockRule, spec: &RunSpec) -> Duration {
    r.until.unwrap_or(spec.duration).saturating_sub(r.from)
}

/// When the agent's installs run, with their settings.
fn installs(spec: &RunSpec, a: &AgentSpec) -> Vec<(Duration, bool, bool)> {
    let mut v: Vec<(Duration, bool, bool)> = spec
        .actions
        .iter()
        .filter_map(|x| match &x.kind {
            ActionKind::Install {
                agent,
                kill_after_certs,
                delay_enroll,
                ..
            } if *agent == a.name => Some((x.at, *kill_after_certs, *delay_enroll)),
            _ => None,
        })
        .collect();
    if a.install_at_start {
        v.push((Duration::ZERO, false, false));
    }
    v.sort();
    v
}

/// The named hypotheses the run makes true for `agent`, sorted.
pub fn named(spec: &RunSpec, agent: &str) -> Vec<&'static str> {
    let Some(a) = spec.agents.iter().find(|a| a.name == agent) else {
        return Vec::new();
    };
    let mut t: Vec<&'static str> = Vec::new();
    let ins = installs(spec, a);
    let in_block = |r: &BlockRule, at: Duration| r.from <= at && r.until.is_none_or(|u| at < u);

    // Incident 1.
    let udp_long: Vec<&BlockRule> = blocks(spec, a, Proto::Udp, 4433)
        .filter(|r| length(r, spec) >= LONG_BLOCK)
        .collect();
    if !udp_long.is_empty() {
        t.push("I1-udp-blocked");
    }
    if blocks(spec, a, Proto::Tcp, 7171).any(|r| ins.iter().any(|(at, ..)| in_block(r, *at))) {
        t.push("I1-gateway-unreachable");
    }
    if spec
        .clock_skew
        .iter()
        .any(|(n, behind, d)| *n == a.name && *behind && *d > SKEW_INVALIDATES)
    {
        t.push("I1-tls-failure");
    }
    if !spec.server_switches.registry_generation_check
        && blocks(spec, a, Proto::Udp, 4433).any(|r| length(r, spec) < LONG_BLOCK)
    {
        t.push("I1-stale-close");
    }
    if ins.iter().any(|(_, kill, _)| *kill) {
        t.push("I1-up-interrupted");
    }

    // Incident 3.
    let delayed = ins.iter().any(|(_, _, d)| *d);
    if spec.invalid_token.contains(&a.name) {
        t.push("I3-invalid-token");
        if delayed && !a.switches.delayed_enroll_backoff {
            t.push("I3-auth-storm");
        }
    }
    let enroll_down = ins.iter().any(|(at, ..)| {
        let us = at.as_micros() as u64;
        spec.enroll_outages.iter().any(|o| o.covers(us))
    });
    if enroll_down {
        t.push("I3-enroll-unavailable");
        if delayed && !a.switches.delayed_enroll_backoff {
            t.push("I3-transient-storm");
        }
    }
    let revoked = spec
        .actions
        .iter()
        .any(|x| matches!(&x.kind, ActionKind::Revoke { agent } if *agent == a.name));
    let checkins_fail = spec
        .checkin_outages
        .iter()
        .any(|o| o.agents.is_empty() || o.agents.contains(&a.name))
        || spec.bad_checkin_token.contains(&a.name)
        || revoked;
    if checkins_fail {
        t.push("I3-checkin-failing");
        if !a.switches.liveness_includes_fleet_state {
            t.push("I3-liveness-masks");
        }
    }

    // Incident 4.
    // The enrollment of a failed or interrupted `up` never runs a service:
    // the fixed `up` fails its probe through a long UDP block, a killed
    // `up` never finishes.
    if (a.switches.up_probe
        && udp_long
            .iter()
            .any(|r| ins.iter().any(|(at, ..)| in_block(r, *at))))
        || ins.iter().any(|(_, kill, _)| *kill)
    {
        t.push("I4-never-started");
    }
    if spec.bad_checkin_token.contains(&a.name) {
        t.push("I4-bad-token");
    }
    let channel_blocks: Vec<&BlockRule> = blocks(spec, a, Proto::Tcp, 8443).collect();
    if !channel_blocks.is_empty() {
        t.push("I4-no-checkin-network");
        if channel_blocks.iter().all(|r| {
            r.until
                .is_some_and(|u| u > CHECKIN_DEADLINE && u < 3 * CHECKIN_DEADLINE)
        }) {
            t.push("I4-late-checkin");
        }
    }
    if spec.worker_down {
        t.push("I4-worker-down");
    }
    if revoked {
        t.push("I4-revoked");
    }

    // Incident 5.
    for x in &spec.actions {
        let ActionKind::Upgrade { agent, defect, .. } = &x.kind else {
            continue;
        };
        if *agent != a.name {
            continue;
        }
        match defect {
            Some(BuildDefect::Corrupt) => t.push("I5-stage-failure"),
            Some(BuildDefect::FailsSelfTest) => t.push("I5-self-test-failure"),
            Some(BuildDefect::NeverHeartbeats) => t.push("I5-new-silent"),
            Some(BuildDefect::CrashesOnStart) => t.push("I5-new-crashes"),
            None => {}
        }
        let reaches_cutover = matches!(defect, None | Some(BuildDefect::NeverHeartbeats));
        let restart_mid = spec.actions.iter().any(|r| {
            matches!(r.kind, ActionKind::Restart(Target::Server))
                && r.at > x.at
                && r.at < x.at + Duration::from_secs(120)
        });
        let forgot =
            reaches_cutover && restart_mid && !spec.server_switches.upgrade_status_persisted;
        if forgot {
            t.push("I5-operator-forgot");
        } else if reaches_cutover && !spec.server_switches.operator_waits_for_new_heartbeat {
            t.push("I5-stop-on-word");
        }
    }
    t.sort();
    t.dedup();
    t
}
