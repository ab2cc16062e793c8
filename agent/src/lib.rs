//! The fleet agent.
//!
//! - [`backoff`]: sans-IO reconnect backoff and inbound watchdog.
//! - [`health`]: sans-IO fleet state (from check-ins) and the liveness decision.
//! - [`checkin`]: the periodic HTTPS fleet check-in that feeds the fleet state.
//! - [`liveness`]: the `/liveness?failon=...` HTTP endpoint.
//! - [`install`]: what enrollment leaves on the agent's disk (`agent.json`, certificates).
//! - [`installer`]: snapshot, `up` under a timeout, rollback of what a failed `up` wrote.
//! - [`enroll`]: the HTTPS enrollment client (hyper on rustls).
//! - [`tunnel`]: the QUIC + mTLS tunnel client, shared by the service and `up`'s probe.
//! - [`channel`]: the WebSocket command channel client.
//! - [`service`]: `agent up` and the long-running agent service.
//! - [`upgrade`]: self-upgrade with automatic rollback (sans-IO state machine
//!   and its driver; the process supervisor is a seam).

pub mod backoff;
pub mod channel;
pub mod checkin;
pub mod enroll;
pub mod health;
pub mod install;
pub mod installer;
pub mod liveness;
pub mod service;
pub mod tunnel;
pub mod upgrade;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

/// Behaviour switches of the agent (DESIGN.md, "Legacy and fixed behaviour").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AgentSwitches {
    /// `agent up` probes the tunnel after enrolling and fails when it cannot connect.
    pub up_probe: bool,
    /// Enrollment files are written atomically, `agent.json` last.
    pub transactional_enroll_write: bool,
    /// Delayed enrollment backs off between rounds and stops for good on a
    /// refused token (legacy: it starts the next round at once, forever).
    pub delayed_enroll_backoff: bool,
    /// `/liveness?failon=...` also fails on the fleet (check-in) state
    /// (legacy: coordinator and component states only).
    pub liveness_includes_fleet_state: bool,
}

impl AgentSwitches {
    /// The behaviour that produced the field incidents.
    pub const LEGACY: AgentSwitches = AgentSwitches {
        up_probe: false,
        transactional_enroll_write: false,
        delayed_enroll_backoff: false,
        liveness_includes_fleet_state: false,
    };
    /// The fixed behaviour (the shipped default).
    pub const FIXED: AgentSwitches = AgentSwitches {
        up_probe: true,
        transactional_enroll_write: true,
        delayed_enroll_backoff: true,
        liveness_includes_fleet_state: true,
    };
}

/// A named defect of the agent, injected to reproduce a field failure
/// (`agent-bug` faults). `None` in every shipped build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentDefect {
    /// After a reconnect's ConfigUpdate, Text frames are read but commands
    /// are never handled (no CommandAck, no result); heartbeats go on (H3).
    CommandPathBrokenAfterConfigUpdate,
}

/// Default port of the `/liveness` endpoint.
pub const LIVENESS_PORT: u16 = 6791;

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The agent's name (its host name, and what `hostname` prints).
    pub name: String,
    /// The running version.
    pub version: String,
    /// Where to enroll.
    pub server_host: String,
    /// Enrollment port.
    pub enroll_port: u16,
    /// Enrollment bearer token.
    pub token: String,
    /// The gateway CA the installer ships (trust for enrollment).
    pub ca_pem: String,
    /// The site (office, NAT) the operator placed the agent in; told to the
    /// server at Auth so its logs can group agents by site.
    pub site: Option<String>,
    /// `agent up --delay-enroll`: `up` only installs; the service enrolls
    /// when it starts (see [`enroll::delayed_enroll`]).
    pub delay_enroll: bool,
    /// Behaviour switches.
    pub switches: AgentSwitches,
    /// An injected defect, if any.
    pub defect: Option<AgentDefect>,
    /// The defect of the build this agent runs (read from its build
    /// document by the supervisor that started it); `None` in every
    /// shipped build.
    pub build_defect: Option<proto::build::BuildDefect>,
    /// Self-upgrade timing.
    pub upgrade: upgrade::UpgradePolicy,
    /// Bound on a TCP connect to the server (enrollment), and on the command
    /// channel's connect, TLS handshake and WebSocket upgrade together.
    pub connect_timeout_ms: u64,
    /// Bound on `up`'s tunnel probe handshake.
    pub probe_timeout_ms: u64,
    /// Bound on the probe's drain (close + wait idle).
    pub probe_drain_ms: u64,
    /// Heartbeat interval until the server's `ConfigUpdate` says otherwise.
    pub heartbeat_interval_ms: u64,
    /// Reconnect after this long with no inbound traffic, until `ConfigUpdate`.
    pub inbound_timeout_ms: u64,
    /// Reconnect backoff start.
    pub backoff_base_ms: u64,
    /// Reconnect backoff cap.
    pub backoff_cap_ms: u64,
    /// Interval of the fleet check-ins (HTTPS, see [`checkin`]).
    pub checkin_interval_ms: u64,
    /// Bound on one check-in (connect, TLS and the HTTP exchange).
    pub checkin_timeout_ms: u64,
    /// TCP port of the `/liveness` endpoint (plain HTTP). Agents that share
    /// a host need one each.
    pub liveness_port: u16,
    /// Injected fault (`bad-checkin-token`): the agent presents this token
    /// instead of the one it was issued. `None` in every shipped build.
    pub agent_token_override: Option<String>,
}

impl AgentConfig {
    /// Defaults for an agent named `name` enrolling at `server_host`.
    pub fn new(name: &str, server_host: &str, token: &str, ca_pem: &str) -> Self {
        AgentConfig {
            name: name.into(),
            version: "1.0.0".into(),
            server_host: server_host.into(),
            enroll_port: proto::msg::ENROLL_PORT,
            token: token.into(),
            ca_pem: ca_pem.into(),
            site: None,
            delay_enroll: false,
            switches: AgentSwitches::FIXED,
            defect: None,
            build_defect: None,
            upgrade: upgrade::UpgradePolicy::default(),
            connect_timeout_ms: 20_000,
            probe_timeout_ms: 20_000,
            probe_drain_ms: 3_000,
            heartbeat_interval_ms: 30_000,
            inbound_timeout_ms: 90_000,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 60_000,
            checkin_interval_ms: 30_000,
            checkin_timeout_ms: 10_000,
            liveness_port: LIVENESS_PORT,
            agent_token_override: None,
        }
    }
}

/// What the agent reports about itself (for the outcome document).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    /// The enrolled identity.
    pub agent_id: Option<String>,
    /// Enrollment requests sent.
    pub enroll_requests: u64,
    /// When each enrollment request was sent (microseconds).
    pub enroll_request_times_us: Vec<u64>,
    /// Where enrollment stands: `enrolling`, `enrolled`, `failed-permanent`
    /// (a refused token: no more requests), `failed`.
    pub enroll_state: Option<String>,
    /// The tunnel is up.
    pub tunnel_connected: bool,
    /// Tunnel connections established.
    pub tunnel_connects: u64,
    /// The command channel is authenticated.
    pub ws_connected: bool,
    /// Command-channel connections authenticated.
    pub ws_connects: u64,
    /// Commands executed.
    pub commands_completed: u64,
    /// Heartbeats written on the command channel.
    pub heartbeats_sent: u64,
    /// When the last one was written (microseconds).
    pub last_heartbeat_us: Option<u64>,
    /// The self-upgrade's phase (`None`: never asked to upgrade).
    pub upgrade_phase: Option<String>,
    /// `UpgradeStop`s received.
    pub upgrade_stops_received: u64,
    /// `UpgradeStop`s acted on (only when armed in CutoverReady).
    pub upgrade_stops_acted: u64,
    /// Last connection error.
    pub last_error: Option<String>,
    /// Coordinator, component and fleet states (what liveness reads).
    pub health: health::Health,
    /// Fleet check-ins sent, and how many of them failed.
    pub checkins: u64,
    /// Failed fleet check-ins.
    pub checkin_failures: u64,
}

/// Shared, lockable [`AgentStatus`].
#[derive(Clone, Debug, Default)]
pub struct StatusCell(Arc<Mutex<AgentStatus>>);

impl StatusCell {
    /// Locks the status for reading or update.
    pub fn lock(&self) -> MutexGuard<'_, AgentStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current status.
    pub fn get(&self) -> AgentStatus {
        self.lock().clone()
    }
}

/// Runs a command the way the agent's executor does: a few built-ins.
pub fn execute(cfg: &AgentConfig, command: &str) -> (i32, String) {
    let mut words = command.split_whitespace();
    match words.next() {
        Some("hostname") => (0, cfg.name.clone()),
        Some("version") => (0, cfg.version.clone()),
        Some("echo") => (0, words.collect::<Vec<_>>().join(" ")),
        Some("true") => (0, String::new()),
        Some("false") => (1, String::new()),
        Some(other) => (127, format!("{other}: command not found")),
        None => (127, "empty command".into()),
    }
}
