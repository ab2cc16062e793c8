//! From a parsed scenario file ([`format::scenario::Scenario`]) to a
//! [`RunSpec`] the harness runs, and from a finished run back to the
//! scenario's expectations.
//!
//! A scenario may name faults and actions this build of the bench does not
//! simulate yet; resolving it then fails with a message naming them, rather
//! than running a scenario that would silently mean something else.

use std::collections::BTreeSet;

use agent::AgentSwitches;
use format::scenario::{ActionKind as FileAction, Bug, Endpoint, FaultKind, FrameType, Scenario};
use proto::frame::FrameKind;
use server::ServerSwitches;

use crate::fault::{BlockRule, DropPayloadRule, HalfOpenRule, LinkRule, LinkShape};
use crate::proxy::DropRule;
use crate::run::LossSpec;
use crate::run::{ActionKind, ActionSpec, AgentSpec, RunSpec};
use crate::tcp::stack::Cpu;

/// A scenario uses something the bench cannot simulate yet.
#[derive(Debug, thiserror::Error)]
#[error("scenario `{scenario}` uses {what}, which this simbench does not simulate yet (supported: {supported})")]
pub struct Unsupported {
    /// Scenario name.
    pub scenario: String,
    /// What is missing.
    pub what: String,
    /// What works today.
    pub supported: &'static str,
}

const SUPPORTED_ACTIONS: &str = "actions install, dispatch, evict, wake, upgrade, revoke, restart and crash (of the server or an agent); faults block, half-open, drop-frames, stall-writes, agent-bug, stale-registry, invalid-token, enroll-errors, checkin-errors, bad-checkin-token, worker-down, latency, jitter and partition (between the server and a site), clock-skew";

fn agent_switches(b: &format::scenario::Behavior) -> AgentSwitches {
    AgentSwitches {
        up_probe: b.is_on("up_probe"),
        transactional_enroll_write: b.is_on("transactional_enroll_write"),
        delayed_enroll_backoff: b.is_on("delayed_enroll_backoff"),
        liveness_includes_fleet_state: b.is_on("liveness_includes_fleet_state"),
    }
}

fn server_switches(b: &format::scenario::Behavior) -> ServerSwitches {
    ServerSwitches {
        registry_generation_check: b.is_on("registry_generation_check"),
        operator_waits_for_new_heartbeat: b
            .is_on(format::catalogue::switch::OPERATOR_WAITS_FOR_NEW_HEARTBEAT),
        upgrade_status_persisted: b.is_on(format::catalogue::switch::UPGRADE_STATUS_PERSISTED),
    }
}

/// Resolves a scenario into a run; `seed` overrides the file's seed.
pub fn resolve(sc: &Scenario, seed: Option<u64>) -> Result<RunSpec, Unsupported> {
    let unsupported = |what: String| Unsupported {
        scenario: sc.name.clone(),
        what,
        supported: SUPPORTED_ACTIONS,
    };
    let mut blocks = Vec::new();
    let mut defects = std::collections::BTreeMap::new();
    let mut malformed_commands = Vec::new();
    let mut stale_registry = Vec::new();
    let (mut half_open, mut drops, mut stall_writes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut invalid_token, mut enroll_outages) = (Vec::new(), Vec::new());
    let (mut checkin_outages, mut bad_checkin_token) = (Vec::new(), Vec::new());
    let mut worker_down = false;
    let (mut links, mut clock_skew) = (Vec::new(), Vec::new());
    let (mut losses, mut payload_drops) = (Vec::new(), Vec::new());
    let instances = sc.agent_instances();
    for f in &sc.faults {
        let windowed = matches!(
            f.kind,
            FaultKind::Block { .. }
                | FaultKind::HalfOpen { .. }
                | FaultKind::DropFrames { .. }
                | FaultKind::EnrollErrors { .. }
                | FaultKind::CheckinErrors { .. }
                | FaultKind::Latency { .. }
                | FaultKind::Jitter { .. }
                | FaultKind::Partition { .. }
                | FaultKind::Loss { .. }
                | FaultKind::DropPayload { .. }
        );
        if (f.from.is_some() || f.until.is_some()) && !windowed {
            return Err(unsupported(format!(
                "`from`/`until` on fault `{}` (block, half-open, drop-payload, loss, drop-frames, enroll-errors, checkin-errors, latency, jitter and partition have time windows)",
                f.kind.name()
            )));
        }
        let from = f.from.unwrap_or_default();
        match &f.kind {
            FaultKind::AgentBug {
                agent,
                bug: Bug::CommandPathBrokenAfterConfigUpdate,
                command: None,
            } => {
                defects.insert(
                    agent.clone(),
                    agent::AgentDefect::CommandPathBrokenAfterConfigUpdate,
                );
            }
            FaultKind::AgentBug {
                agent,
                bug: Bug::UnparsableCommand,
                command: Some(command),
            } => malformed_commands.push((agent.clone(), command.clone())),
            FaultKind::StaleRegistry { agent } => stale_registry.push(agent.clone()),
            FaultKind::AgentBug { bug, .. } => {
                return Err(unsupported(format!(
                    "agent-bug `{bug}` with{} `command` (command-path-broken-after-config-update takes none; unparsable-command needs one)",
                    if matches!(bug, Bug::UnparsableCommand) { "out" } else { "" }
                )))
            }
            FaultKind::Block {
                between,
                proto,
                port,
                direction,
                action,
            } => blocks.push(BlockRule {
                a: between[0].clone(),
                b: between[1].clone(),
                proto: *proto,
                port: *port,
                direction: *direction,
                action: *action,
                from,
                until: f.until,
            }),
            FaultKind::HalfOpen {
                between,
                direction,
                port,
            } => half_open.push(HalfOpenRule {
                a: between[0].clone(),
                b: between[1].clone(),
                direction: *direction,
                port: *port,
                from,
                until: f.until,
            }),
            FaultKind::DropFrames {
                between,
                direction,
                frame,
            } => drops.push(DropRule {
                // The parser makes one end the server; the other is the target.
                target: between
                    .iter()
                    .find(|e| **e != Endpoint::Server)
                    .cloned()
                    .unwrap_or(Endpoint::Server),
                direction: *direction,
                frame: *frame,
                from,
                until: f.until,
            }),
            FaultKind::StallWrites { agent, frame } => {
                stall_writes.push((agent.clone(), frame_kind(*frame)))
            }
            FaultKind::InvalidToken { agent, site } => invalid_token.extend(
                instances
                    .iter()
                    .filter(|i| match (agent, site) {
                        (Some(a), _) => &i.name == a,
                        (None, Some(s)) => &i.site == s,
                        (None, None) => true,
                    })
                    .map(|i| i.name.clone()),
            ),
            FaultKind::EnrollErrors { status } => enroll_outages.push(server::Outage {
                status: *status,
                from_us: from.as_micros() as u64,
                until_us: f.until.map(|u| u.as_micros() as u64),
            }),
            FaultKind::CheckinErrors {
                status,
                agent,
                site,
            } => checkin_outages.push(server::CheckinOutage {
                outage: server::Outage {
                    status: *status,
                    from_us: from.as_micros() as u64,
                    until_us: f.until.map(|u| u.as_micros() as u64),
                },
                agents: match (agent, site) {
                    (Some(a), _) => vec![a.clone()],
                    (None, Some(s)) => instances
                        .iter()
                        .filter(|i| &i.site == s)
                        .map(|i| i.name.clone())
                        .collect(),
                    (None, None) => Vec::new(),
                },
            }),
            FaultKind::BadCheckinToken { agent } => bad_checkin_token.push(agent.clone()),
            FaultKind::WorkerDown => worker_down = true,
            FaultKind::Latency { between, mean } => links.push(LinkRule {
                site: shaped_site(between, f.kind.name()).map_err(unsupported)?,
                shape: LinkShape::Latency(*mean),
                from,
                until: f.until,
            }),
            FaultKind::Jitter { between, amount } => links.push(LinkRule {
                site: shaped_site(between, f.kind.name()).map_err(unsupported)?,
                shape: LinkShape::Jitter(*amount),
                from,
                until: f.until,
            }),
            FaultKind::Partition { between } => links.push(LinkRule {
                site: shaped_site(between, f.kind.name()).map_err(unsupported)?,
                shape: LinkShape::Partition,
                from,
                until: f.until,
            }),
            FaultKind::DropPayload {
                between,
                direction,
                port,
            } => payload_drops.push(DropPayloadRule {
                a: between[0].clone(),
                b: between[1].clone(),
                direction: *direction,
                port: *port,
                from,
                until: f.until,
            }),
            FaultKind::Loss {
                between,
                rate,
                burst,
            } => losses.push(LossSpec {
                a: between[0].clone(),
                b: between[1].clone(),
                rate: *rate,
                burst: burst.unwrap_or(1.0),
                from,
                until: f.until,
            }),
            FaultKind::ClockSkew { agent, offset } => {
                clock_skew.push((agent.clone(), offset.negative, offset.magnitude))
            }
        }
    }
    let all: Vec<String> = instances.iter().map(|a| a.name.clone()).collect();
    let mut installed_by_action = BTreeSet::new();
    let mut actions = Vec::new();
    for a in sc.actions_in_order() {
        match &a.kind {
            FileAction::Install {
                agent,
                timeout,
                kill_up_after,
                delay_enroll,
            } => {
                let targets = match agent {
                    Some(one) => vec![one.clone()],
                    None => all.clone(),
                };
                for agent in targets {
                    installed_by_action.insert(agent.clone());
                    actions.push(ActionSpec {
                        at: a.at,
                        kind: ActionKind::Install {
                            agent,
                            timeout: *timeout,
                            kill_after_certs: kill_up_after.is_some(),
                            delay_enroll: *delay_enroll,
                        },
                    });
                }
            }
            FileAction::Dispatch { agent, command } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Dispatch {
                    agent: agent.clone(),
                    command: command.clone(),
                },
            }),
            FileAction::Evict { agent } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Evict {
                    agent: agent.clone(),
                },
            }),
            FileAction::Wake { agent } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Wake {
                    agent: agent.clone(),
                },
            }),
            FileAction::Upgrade { agent, to, defect } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Upgrade {
                    agent: agent.clone(),
                    to: to.clone(),
                    defect: defect.map(build_defect),
                },
            }),
            FileAction::Revoke { agent } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Revoke {
                    agent: agent.clone(),
                },
            }),
            FileAction::Restart { agent } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Restart(agent.clone()),
            }),
            FileAction::Crash { agent } => actions.push(ActionSpec {
                at: a.at,
                kind: ActionKind::Crash(agent.clone()),
            }),
        }
    }
    Ok(RunSpec {
        name: sc.name.clone(),
        seed: seed.unwrap_or(sc.seed),
        duration: sc.duration,
        server_switches: server_switches(&sc.server.behavior),
        server_cpu: sc.server.cpu.map(|c| Cpu {
            connection: c.connection,
            segment: c.segment,
        }),
        agents: instances
            .iter()
            .map(|i| AgentSpec {
                name: i.name.clone(),
                site: i.site.clone(),
                version: i.version.clone(),
                switches: agent_switches(&i.behavior),
                defect: defects.get(&i.name).copied(),
                install_at_start: !installed_by_action.contains(&i.name),
            })
            .collect(),
        actions,
        blocks,
        malformed_commands,
        stale_registry,
        drops,
        half_open,
        losses,
        payload_drops,
        stall_writes,
        invalid_token,
        enroll_outages,
        checkin_outages,
        bad_checkin_token,
        worker_down,
        links,
        clock_skew,
        liveness_probes: Vec::new(),
    })
}

fn build_defect(d: format::scenario::UpgradeDefect) -> proto::build::BuildDefect {
    use format::scenario::UpgradeDefect as D;
    use proto::build::BuildDefect as B;
    match d {
        D::Corrupt => B::Corrupt,
        D::FailsSelfTest => B::FailsSelfTest,
        D::NeverHeartbeats => B::NeverHeartbeats,
        D::CrashesOnStart => B::CrashesOnStart,
    }
}

// The site whose path a `latency`, `jitter` or `partition` fault shapes: one end is the
// server, the other a site (agents of a site share its host and its path).
fn shaped_site(between: &[Endpoint; 2], kind: &str) -> Result<String, String> {
    let other: Vec<&Endpoint> = between.iter().filter(|e| **e != Endpoint::Server).collect();
    match other.as_slice() {
        [Endpoint::Site(site)] => Ok(site.clone()),
        [Endpoint::Agent(a)] => Err(format!(
            "`{kind}` between the server and agent `{a}`: the agents of a site share its host and its path, so name the site (`site:<name>`)"
        )),
        _ => Err(format!(
            "`{kind}` between {} and {}: one end must be the server, the other a site",
            between[0], between[1]
        )),
    }
}

fn frame_kind(f: FrameType) -> FrameKind {
    match f {
        FrameType::Text => FrameKind::Text,
        FrameType::Binary => FrameKind::Binary,
        FrameType::Ping => FrameKind::Ping,
        FrameType::Pong => FrameKind::Pong,
    }
}

/// Judges every expectation of `sc` against a finished run's outcome document.
pub fn evaluate(
    sc: &Scenario,
    outcome: &serde_json::Value,
) -> Vec<(format::Expect, format::ExpectResult)> {
    sc.expects
        .iter()
        .map(|e| {
            let r = format::evaluate(e, format::lookup(outcome, &e.observe));
            (e.clone(), r)
        })
        .collect()
}

/// Directory of the shipped catalogue (`scenarios/` at the workspace root).
pub fn catalogue_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
}
