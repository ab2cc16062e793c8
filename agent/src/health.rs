//! The agent's health, a sans-IO brain: the fleet (control-plane) state fed
//! by check-in results, and the `/liveness?failon=...` decision
//! (INCIDENTS.md, section 3).
//!
//! Three parts make the agent's health, as in the field's agent:
//! - the **coordinator** state: the service itself (starting until it has an
//!   enrollment, failed when delayed enrollment reached a terminal state);
//! - the **components**: the QUIC tunnel and the WebSocket command channel;
//! - the **fleet** state: whether the server accepts the agent's periodic
//!   HTTPS check-ins ([`CheckinTracker`]).
//!
//! [`liveness`] turns them into the endpoint's answer. The legacy logic
//! looks at the coordinator and the components only, so an agent whose
//! check-ins all fail answers 200; with the switch
//! `liveness_includes_fleet_state` the fleet state counts too.

use std::collections::BTreeMap;

use serde::Serialize;

/// A health state, from best to worst (the order matters: `max` is the worst).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not yet known (no check-in, no connection attempt yet).
    #[default]
    Starting,
    /// Working.
    Healthy,
    /// Working with errors; may recover on its own.
    Degraded,
    /// Not working.
    Failed,
}

impl State {
    /// The name as it appears in outcomes and events (`"degraded"`).
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Healthy => "healthy",
            State::Degraded => "degraded",
            State::Failed => "failed",
        }
    }
}

/// A state and the message that explains it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The state.
    pub state: State,
    /// Why (the last error), if anything is wrong.
    pub message: Option<String>,
}

impl Status {
    /// A state with a message.
    pub fn new(state: State, message: Option<String>) -> Status {
        Status { state, message }
    }
}

/// Everything liveness looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Health {
    /// The service itself.
    pub coordinator: Status,
    /// `tunnel` and `channel`, by name.
    pub components: BTreeMap<String, Status>,
    /// The fleet (control-plane) connection, from check-ins.
    pub fleet: Status,
}

/// Component name of the QUIC tunnel.
pub const TUNNEL: &str = "tunnel";
/// Component name of the WebSocket command channel.
pub const CHANNEL: &str = "channel";

/// Consecutive failed check-ins after which the fleet state is `Failed`
/// (the first failure makes it `Degraded`).
pub const CHECKIN_FAILED_AFTER: u32 = 3;
/// Consecutive failed connects after which a component (tunnel, command
/// channel) is `Failed`; before that it is `Degraded`.
pub const COMPONENT_FAILED_AFTER: u32 = 3;

/// A fleet-state transition, to be logged as a `fleet.state` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The check-in result that caused it.
    pub reason: String,
}

/// Turns check-in results into the fleet state: the first failure makes it
/// `Degraded`, [`CHECKIN_FAILED_AFTER`] consecutive failures `Failed`, one
/// success `Healthy` again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckinTracker {
    failures: u32,
    status: Status,
}

impl CheckinTracker {
    /// A tracker with no check-in yet (`Starting`).
    pub fn new() -> CheckinTracker {
        CheckinTracker::default()
    }

    /// A check-in succeeded; the transition if the state changed.
    pub fn handle_success(&mut self) -> Option<Transition> {
        self.failures = 0;
        self.set(State::Healthy, None, "check-in ok".into())
    }

    /// A check-in failed with `error`; the transition if the state changed.
    pub fn handle_failure(&mut self, error: &str) -> Option<Transition> {
        self.failures = self.failures.saturating_add(1);
        let state = if self.failures >= CHECKIN_FAILED_AFTER {
            State::Failed
        } else {
            State::Degraded
        };
        let message = format!(
            "{} consecutive check-in failure{}: {error}",
            self.failures,
            if self.failures == 1 { "" } else { "s" }
        );
        self.set(state, Some(message), error.into())
    }

    /// The fleet state now.
    pub fn poll_status(&self) -> &Status {
        &self.status
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    fn set(&mut self, state: State, message: Option<String>, reason: String) -> Option<Transition> {
        let from = self.status.state;
        self.status = Status::new(state, message);
        (from != state).then_some(Transition {
            from,
            to: state,
            reason,
        })
    }
}

/// What `failon` asks the liveness endpoint to fail on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    /// Never fail while the process answers (the default, as `failon=heartbeat`).
    Heartbeat,
    /// Fail on a degraded or failed state.
    Degraded,
    /// Fail on a failed state.
    Failed,
}

impl FailOn {
    /// The accepted `failon` values.
    pub const NAMES: &'static [&'static str] = &["heartbeat", "degraded", "failed"];

    /// Parses a `failon` value.
    pub fn from_name(s: &str) -> Option<FailOn> {
        match s {
            "heartbeat" => Some(FailOn::Heartbeat),
            "degraded" => Some(FailOn::Degraded),
            "failed" => Some(FailOn::Failed),
            _ => None,
        }
    }

    fn fails(self, s: State) -> bool {
        match self {
            FailOn::Heartbeat => false,
            FailOn::Degraded => matches!(s, State::Degraded | State::Failed),
            FailOn::Failed => s == State::Failed,
        }
    }
}

/// The liveness answer: HTTP status and a JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// 200, 500, or 400 for a bad query.
    pub status: u16,
    /// The body (JSON).
    pub body: String,
}

/// Why the query was refused.
fn bad_request(message: String) -> Answer {
    Answer {
        status: 400,
        body: serde_json::json!({"error": "bad_request", "message": message}).to_string(),
    }
}

/// Parses the query string of `/liveness` (`failon=degraded`, ...).
pub fn parse_query(query: Option<&str>) -> Result<FailOn, String> {
    let mut failon = FailOn::Heartbeat;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "failon" {
            continue;
        }
        failon = FailOn::from_name(v).ok_or_else(|| {
            format!(
                "unknown failon value {v:?}; use one of: {}",
                FailOn::NAMES.join(", ")
            )
        })?;
    }
    Ok(failon)
}

/// Whether the agent is live under `failon`: the legacy logic looks at the
/// coordinator and the components; with `include_fleet`
/// (`liveness_includes_fleet_state`) the fleet state counts too.
pub fn is_live(h: &Health, failon: FailOn, include_fleet: bool) -> bool {
    let coordinator = failon.fails(h.coordinator.state);
    let component = h.components.values().any(|c| failon.fails(c.state));
    let fleet = include_fleet && failon.fails(h.fleet.state);
    !(coordinator || component || fleet)
}

/// The `/liveness` endpoint: 200 when live, 500 when not, 400 for a bad
/// `failon`; the body names every state so a probe's log says why.
pub fn liveness(h: &Health, query: Option<&str>, include_fleet: bool) -> Answer {
    let failon = match parse_query(query) {
        Ok(f) => f,
        Err(m) => return bad_request(m),
    };
    let live = is_live(h, failon, include_fleet);
    let body = serde_json::json!({
        "live": live,
        "coordinator": h.coordinator,
        "components": h.components,
        "fleet": h.fleet,
        "fleet_state_counted": include_fleet,
    });
    Answer {
        status: if live { 200 } else { 500 },
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [State; 4] = [
        State::Starting,
        State::Healthy,
        State::Degraded,
        State::Failed,
    ];

    fn health(coordinator: State, component: State, fleet: State) -> Health {
        let mut components = BTreeMap::new();
        components.insert(TUNNEL.into(), Status::new(State::Healthy, None));
        components.insert(CHANNEL.into(), Status::new(component, None));
        Health {
            coordinator: Status::new(coordinator, None),
            components,
            fleet: Status::new(fleet, None),
        }
    }

    fn code(h: &Health, q: &str, include_fleet: bool) -> u16 {
        liveness(h, Some(q), include_fleet).status
    }

    #[test]
    fn every_combination_of_states_failon_and_switch() {
        for c in ALL {
            for comp in ALL {
                for fleet in ALL {
                    let h = health(c, comp, fleet);
                    let worst_local = c.max(comp);
                    for include in [false, true] {
                        let worst = if include {
                            worst_local.max(fleet)
                        } else {
                            worst_local
                        };
                        let failed = if worst == State::Failed { 500 } else { 200 };
                        let degraded = if worst >= State::Degraded { 500 } else { 200 };
                        let ctx = format!("{c:?} {comp:?} fleet {fleet:?} include {include}");
                        assert_eq!(code(&h, "failon=failed", include), failed, "{ctx}");
                        assert_eq!(code(&h, "failon=degraded", include), degraded, "{ctx}");
                        assert_eq!(code(&h, "failon=heartbeat", include), 200, "{ctx}");
                        assert_eq!(liveness(&h, None, include).status, 200, "{ctx}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_field_bug_fleet_failed_with_healthy_components() {
        let h = health(State::Healthy, State::Healthy, State::Failed);
        // Legacy: the fleet failure is masked.
        assert_eq!(code(&h, "failon=failed", false), 200);
        assert_eq!(code(&h, "failon=degraded", false), 200);
        // Fixed.
        assert_eq!(code(&h, "failon=failed", true), 500);
        assert_eq!(code(&h, "failon=degraded", true), 500);
        let h = health(State::Healthy, State::Healthy, State::Degraded);
        assert_eq!(code(&h, "failon=failed", true), 200);
        assert_eq!(code(&h, "failon=degraded", true), 500);
    }

    #[test]
    fn an_unknown_failon_is_a_400_naming_the_choices() {
        let h = health(State::Healthy, State::Healthy, State::Healthy);
        for include in [false, true] {
            let a = liveness(&h, Some("failon=broken"), include);
            assert_eq!(a.status, 400);
            assert!(a.body.contains("unknown failon value"), "{}", a.body);
            assert!(a.body.contains("heartbeat, degraded, failed"), "{}", a.body);
            assert_eq!(liveness(&h, Some("failon="), include).status, 400);
        }
        // Other parameters are ignored; the last failon wins.
        assert_eq!(code(&h, "x=1&failon=failed", true), 200);
        assert_eq!(
            code(
                &health(State::Healthy, State::Healthy, State::Degraded),
                "failon=failed&failon=degraded",
                true
            ),
            500
        );
    }

    #[test]
    fn checkins_degrade_at_once_fail_at_three_and_recover_on_one_success() {
        let mut t = CheckinTracker::new();
        assert_eq!(t.poll_status().state, State::Starting);
        let tr = t.handle_failure("HTTP 503").unwrap();
        assert_eq!((tr.from, tr.to), (State::Starting, State::Degraded));
        assert_eq!(t.handle_failure("HTTP 503"), None);
        let tr = t.handle_failure("HTTP 503").unwrap();
        assert_eq!((tr.from, tr.to), (State::Degraded, State::Failed));
        assert_eq!(
            t.poll_status().message.as_deref(),
            Some("3 consecutive check-in failures: HTTP 503")
        );
        assert_eq!(t.handle_failure("timeout"), None);
        assert_eq!(t.failures(), 4);
        let tr = t.handle_success().unwrap();
        assert_eq!((tr.from, tr.to), (State::Failed, State::Healthy));
        assert_eq!(t.poll_status(), &Status::new(State::Healthy, None));
        assert_eq!(t.handle_success(), None);
        assert_eq!(t.failures(), 0);
    }
}
