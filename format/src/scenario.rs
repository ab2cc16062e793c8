//! The scenario as plain data: what a parsed, checked scenario file says.
//!
//! Every type serializes (with serde) back to the file format, so
//! `toml::to_string(&scenario)` writes a file that parses to the same value
//! and `serde_json::to_value(&scenario)` gives the same shape as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::catalogue::SWITCHES;
use crate::duration::{format_duration, SignedDuration};

/// The tick a scenario gets when it does not set one.
pub const DEFAULT_TICK: Duration = Duration::from_millis(10);
/// The version an agent gets when it does not set one.
pub const DEFAULT_AGENT_VERSION: &str = "1.0.0";
/// The installer's timeout when an `install` action does not set one.
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The HTTP status of `enroll-errors` and `checkin-errors` when not set.
pub const DEFAULT_ERROR_STATUS: u16 = 503;
/// The most agents one `[[agent]]` table may make with `count`.
pub const MAX_AGENT_COUNT: u32 = 10_000;

/// The most agents a run simulates, so the format refuses what a machine
/// like the CI's (2 cores, 24 GiB) cannot finish: docs/observation.md
/// gives the measured cost per agent (`simbench bench --scale`).
pub const MAX_RUN_AGENTS: usize = 10_000;

/// The most agent-hours (agents x duration) a run simulates: the largest
/// shipped scenario uses 240 (`fleet-day-healthy`, 40 agents for 6 h).
pub const MAX_AGENT_HOURS: u64 = 2_000;

/// A whole scenario file (format v1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// The scenario's name.
    pub name: String,
    /// One line saying what it shows.
    pub summary: String,
    /// The field incident it reproduces.
    pub incident: String,
    /// The seed that drives every random choice.
    pub seed: u64,
    /// How much simulated time the run covers.
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// The network quantum ([`DEFAULT_TICK`] unless set).
    #[serde(serialize_with = "ser_duration")]
    pub tick: Duration,
    /// The server's configuration.
    pub server: Server,
    /// The `[[agent]]` tables as written; see [`Scenario::agent_instances`]
    /// for one entry per agent after `count` expansion.
    #[serde(rename = "agent")]
    pub agents: Vec<Agent>,
    /// The `[[fault]]` tables in file order.
    #[serde(rename = "fault")]
    pub faults: Vec<Fault>,
    /// The `[[action]]` tables in file order (not sorted by time).
    #[serde(rename = "action")]
    pub actions: Vec<Action>,
    /// The `[[expect]]` tables in file order.
    #[serde(rename = "expect")]
    pub expects: Vec<Expect>,
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Server {
    /// Which code paths the server runs.
    pub behavior: Behavior,
    /// The server software's CPU, when modelled (`cpu = { ... }`); without
    /// it the software costs no simulated time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<ServerCpu>,
}

/// `[server] cpu`: what the server's software spends of its one CPU on what
/// the network brings it, in arrival order. The kernel still answers SYNs
/// and acknowledges data at once; a connection waits in the listen backlog
/// until the CPU gets to it, and SYNs are dropped while the backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServerCpu {
    /// Per connection accepted (accept, TLS handshake, first request).
    #[serde(serialize_with = "ser_cost")]
    pub connection: Duration,
    /// Per data segment received.
    #[serde(serialize_with = "ser_cost")]
    pub segment: Duration,
}

/// The most either `cpu` cost may be.
pub const MAX_CPU_COST: Duration = Duration::from_secs(10);

/// A behavior preset: every switch off (`legacy`) or on (`fixed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Preset {
    /// Every switch off: the behavior that produced the incidents.
    Legacy,
    /// Every switch on: the shipped default.
    #[default]
    Fixed,
}

impl Preset {
    /// Every preset's name, as written in scenario files.
    pub const NAMES: &'static [&'static str] = &["legacy", "fixed"];

    /// The name as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Legacy => "legacy",
            Preset::Fixed => "fixed",
        }
    }

    /// The preset written `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "legacy" => Some(Preset::Legacy),
            "fixed" => Some(Preset::Fixed),
            _ => None,
        }
    }

    /// The value this preset gives every switch.
    pub fn switch_value(self) -> bool {
        self == Preset::Fixed
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Preset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Which code paths an agent or the server runs: a preset plus single
/// switches set on top of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Behavior {
    /// The base every switch not listed in `switches` takes its value from.
    pub preset: Preset,
    /// Switches set explicitly; keys are names from [`SWITCHES`].
    pub switches: BTreeMap<String, bool>,
}

impl Behavior {
    /// A behavior that is exactly `preset`.
    pub fn preset(preset: Preset) -> Self {
        Behavior {
            preset,
            switches: BTreeMap::new(),
        }
    }

    /// Whether switch `name` is on. Use the constants in
    /// [`crate::catalogue::switch`]; a name not in [`SWITCHES`] gets the
    /// preset's value.
    pub fn is_on(&self, name: &str) -> bool {
        self.switches
            .get(name)
            .copied()
            .unwrap_or(self.preset.switch_value())
    }

    /// Every switch of the catalogue with its value, in catalogue order.
    pub fn resolved(&self) -> Vec<(&'static str, bool)> {
        SWITCHES
            .iter()
            .map(|(name, _)| (*name, self.is_on(name)))
            .collect()
    }
}

impl Serialize for Behavior {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.switches.is_empty() {
            return self.preset.serialize(s);
        }
        let mut map = s.serialize_map(Some(self.switches.len() + 1))?;
        map.serialize_entry("preset", &self.preset)?;
        for (name, on) in &self.switches {
            map.serialize_entry(name, on)?;
        }
        map.end()
    }
}

/// An `[[agent]]` table as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    /// The name, or with `count` the prefix of the names.
    pub name: String,
    /// With `Some(n)`: n agents named `<name>-1` .. `<name>-n`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The site the agents sit in (the `name` as written unless set).
    pub site: String,
    /// Which code paths the agents run.
    pub behavior: Behavior,
    /// The version the agents start with.
    pub version: String,
}

impl Agent {
    /// The names of the agents this table makes, in order.
    pub fn instance_names(&self) -> Vec<String> {
        match self.count {
            None => vec![self.name.clone()],
            Some(n) => (1..=n).map(|i| format!("{}-{i}", self.name)).collect(),
        }
    }
}

/// One agent after `count` expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentInstance {
    /// Its own name (`<name>-<i>` when the table has `count`).
    pub name: String,
    /// The `name` of the `[[agent]]` table it comes from.
    pub group: String,
    /// Its site.
    pub site: String,
    /// Which code paths it runs.
    pub behavior: Behavior,
    /// The version it starts with.
    pub version: String,
}

/// One command the scenario dispatches, with the id the server will give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// `cmd-0001` for the first dispatched command, and so on.
    pub id: String,
    /// When it is dispatched.
    pub at: Duration,
    /// The agent it goes to.
    pub agent: String,
    /// The command text.
    pub command: String,
}

/// The id of the `n`th dispatched command, counting from 1: `cmd-0001`.
pub fn command_id(n: usize) -> String {
    format!("cmd-{n:04}")
}

impl Scenario {
    /// Every agent after `count` expansion, in file order.
    pub fn agent_instances(&self) -> Vec<AgentInstance> {
        self.agents
            .iter()
            .flat_map(|a| {
                a.instance_names()
                    .into_iter()
                    .map(move |name| AgentInstance {
                        name,
                        group: a.name.clone(),
                        site: a.site.clone(),
                        behavior: a.behavior.clone(),
                        version: a.version.clone(),
                    })
            })
            .collect()
    }

    /// Every agent name after `count` expansion, in file order.
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.iter().flat_map(Agent::instance_names).collect()
    }

    /// Every site, in order of first appearance.
    pub fn sites(&self) -> Vec<String> {
        let mut sites: Vec<String> = Vec::new();
        for a in &self.agents {
            if !sites.contains(&a.site) {
                sites.push(a.site.clone());
            }
        }
        sites
    }

    /// The actions sorted by `at`; actions at the same time keep file order.
    pub fn actions_in_order(&self) -> Vec<&Action> {
        let mut actions: Vec<&Action> = self.actions.iter().collect();
        actions.sort_by_key(|a| a.at);
        actions
    }

    /// The dispatched commands in dispatch order, with their ids.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.actions_in_order()
            .into_iter()
            .filter_map(|a| match &a.kind {
                ActionKind::Dispatch { agent, command } => Some((a.at, agent, command)),
                _ => None,
            })
            .enumerate()
            .map(|(i, (at, agent, command))| Dispatch {
                id: command_id(i + 1),
                at,
                agent: agent.clone(),
                command: command.clone(),
            })
            .collect()
    }
}

/// Declares a closed set of names as an enum with `NAMES`, `as_str`,
/// `from_name`, `Display` and `Serialize` (as its name).
macro_rules! named_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every name, as written in scenario files.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name as written in scenario files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The variant written `name`, if any.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// A transport protocol a `block` fault selects.
    pub enum Proto {
        /// UDP (the QUIC tunnel, port 4433).
        Udp = "udp",
        /// TCP (enrollment over HTTPS, port 7171; the WebSocket).
        Tcp = "tcp",
    }
}

named_enum! {
    /// Which way a path fault acts, relative to the order of `between`.
    pub enum Direction {
        /// Both ways.
        Both = "both",
        /// From `between[0]` to `between[1]`.
        AToB = "a->b",
        /// From `between[1]` to `between[0]`.
        BToA = "b->a",
    }
}

named_enum! {
    /// What a `block` fault does with what it blocks.
    pub enum BlockAction {
        /// Packets vanish silently.
        Drop = "drop",
        /// The sender is told at once (ICMP unreachable / TCP reset).
        Reject = "reject",
    }
}

named_enum! {
    /// Which way WebSocket frames travel.
    pub enum FrameDirection {
        /// From the server to the agent.
        ServerToAgent = "server->agent",
        /// From the agent to the server.
        AgentToServer = "agent->server",
    }
}

named_enum! {
    /// A WebSocket frame type.
    pub enum FrameType {
        /// Text frames (commands, acks, results, config updates).
        Text = "text",
        /// Binary frames.
        Binary = "binary",
        /// Ping control frames.
        Ping = "ping",
        /// Pong control frames.
        Pong = "pong",
    }
}

named_enum! {
    /// A named defect of the agent's command path (see [`crate::catalogue::AGENT_BUGS`]).
    pub enum Bug {
        /// After a reconnect's ConfigUpdate the agent reads Text frames but
        /// never handles commands (H3).
        CommandPathBrokenAfterConfigUpdate = "command-path-broken-after-config-update",
        /// The server builds the command (`command = "..."`) so that the
        /// agent cannot parse it (H7).
        UnparsableCommand = "unparsable-command",
    }
}

named_enum! {
    /// A defect of the new version in an `upgrade` (see [`crate::catalogue::UPGRADE_DEFECTS`]).
    pub enum UpgradeDefect {
        /// The downloaded bytes fail their SHA-256 check.
        Corrupt = "corrupt",
        /// `--self-test` of the new build fails.
        FailsSelfTest = "fails-self-test",
        /// The new version starts but never sends a heartbeat.
        NeverHeartbeats = "never-heartbeats",
        /// The new version crashes as it starts.
        CrashesOnStart = "crashes-on-start",
    }
}

named_enum! {
    /// A point at which an `install` hard-kills `agent up` (see [`crate::catalogue::KILL_POINTS`]).
    pub enum KillPoint {
        /// After the certificate files are written, before `agent.json`.
        CertsWritten = "certs-written",
    }
}

named_enum! {
    /// An expectation operator (see [`crate::catalogue::EXPECT_OPERATORS`]).
    pub enum ExpectOp {
        /// The observed value equals the given one.
        Equals = "equals",
        /// The observed value exists and differs from the given one.
        Not = "not",
        /// The observed number is at least the given number.
        AtLeast = "at_least",
        /// The observed number is at most the given number.
        AtMost = "at_most",
        /// The observed string or array contains the given value.
        Contains = "contains",
    }
}

/// One end of a network path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// The server's host (`"server"`).
    Server,
    /// Every agent of a site (`"site:<site>"`).
    Site(String),
    /// One agent (`"agent:<name>"` or the bare name).
    Agent(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Server => f.write_str("server"),
            Endpoint::Site(s) => write!(f, "site:{s}"),
            Endpoint::Agent(a) => write!(f, "agent:{a}"),
        }
    }
}

impl Serialize for Endpoint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a `restart` or `crash` acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The server (`agent = "server"`).
    Server,
    /// One agent.
    Agent(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Server => f.write_str("server"),
            Target::Agent(a) => f.write_str(a),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A `[[fault]]` table: what goes wrong, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// The fault and its settings.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// When it starts; `None` means at the start of the run.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub from: Option<Duration>,
    /// When it stops; `None` means it lasts to the end of the run.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_duration"
    )]
    pub until: Option<Duration>,
}

impl Fault {
    /// Whether the fault is in force at sim time `t` (`from <= t < until`).
    pub fn active_at(&self, t: Duration) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }
}

/// The fault kinds (see [`crate::catalogue::FAULT_KINDS`]) with their settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FaultKind {
    /// A firewall blocks one protocol (and port) on a path.
    Block {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// The blocked protocol.
        proto: Proto,
        /// The blocked destination port; `None` blocks every port.
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Which way it blocks.
        direction: Direction,
        /// Drop silently or reject.
        action: BlockAction,
    },
    /// Nothing passes between the two ends.
    Partition {
        /// The two ends of the path.
        between: [Endpoint; 2],
    },
    /// One direction stops and neither side is told.
    HalfOpen {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// The direction that stops (never [`Direction::Both`]).
        direction: Direction,
        /// Only packets to or from this port; `None`: every packet.
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// A WebSocket-aware middlebox drops frames of one type, one way.
    DropFrames {
        /// The path; one end is [`Endpoint::Server`].
        between: [Endpoint; 2],
        /// Which way the dropped frames travel.
        direction: FrameDirection,
        /// Which frames are dropped.
        frame: FrameType,
    },
    /// The server's socket writes of one frame type to an agent never complete.
    StallWrites {
        /// The agent whose connection stalls.
        agent: String,
        /// Which frame type stalls.
        frame: FrameType,
    },
    /// Every packet on the path is delayed.
    Latency {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// The mean one-way delay.
        #[serde(serialize_with = "ser_duration")]
        mean: Duration,
    },
    /// Packet delays on the path vary.
    Jitter {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// The largest extra delay.
        #[serde(serialize_with = "ser_duration")]
        amount: Duration,
    },
    /// Packets on the path are lost at random.
    Loss {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// Probability a packet is lost, 0.0 to 1.0.
        rate: f64,
        /// Mean length of a burst of losses, in packets; `None`: independent losses.
        #[serde(skip_serializing_if = "Option::is_none")]
        burst: Option<f64>,
    },
    /// A middlebox drops TCP segments that carry data one way; pure ACKs,
    /// SYNs and FINs pass.
    DropPayload {
        /// The two ends of the path.
        between: [Endpoint; 2],
        /// The direction whose data is lost (never [`Direction::Both`]).
        direction: Direction,
        /// Only segments to or from this port; `None`: every segment.
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// An agent's clock is off.
    ClockSkew {
        /// The agent.
        agent: String,
        /// How far off; negative is behind.
        #[serde(serialize_with = "ser_signed_duration")]
        offset: SignedDuration,
    },
    /// The server's registry keeps a dead sender for the agent.
    StaleRegistry {
        /// The agent.
        agent: String,
    },
    /// A named defect in the agent's command path.
    AgentBug {
        /// The agent.
        agent: String,
        /// Which defect.
        bug: Bug,
        /// Only commands with exactly this text are affected; `None`: all.
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    /// The agent's enrollment token is refused (HTTP 401).
    InvalidToken {
        /// Only this agent's token; `None` (and no `site`): every agent's.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Only the tokens of this site's agents.
        #[serde(skip_serializing_if = "Option::is_none")]
        site: Option<String>,
    },
    /// Enrollment requests get an HTTP error.
    EnrollErrors {
        /// The HTTP status.
        status: u16,
    },
    /// Fleet check-ins get an HTTP error.
    CheckinErrors {
        /// The HTTP status.
        status: u16,
        /// Only this agent's check-ins; `None` (and no `site`): every agent's.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Only the check-ins of this site's agents.
        #[serde(skip_serializing_if = "Option::is_none")]
        site: Option<String>,
    },
    /// After enrolling, the agent presents a wrong agent token: the server
    /// refuses its check-ins and its command channel's Auth.
    BadCheckinToken {
        /// The agent.
        agent: String,
    },
    /// The server's reconcile queue worker is not running.
    WorkerDown,
}

impl FaultKind {
    /// The kind's name as written in scenario files (`"drop-frames"`).
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Block { .. } => "block",
            FaultKind::Partition { .. } => "partition",
            FaultKind::HalfOpen { .. } => "half-open",
            FaultKind::DropFrames { .. } => "drop-frames",
            FaultKind::StallWrites { .. } => "stall-writes",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Jitter { .. } => "jitter",
            FaultKind::Loss { .. } => "loss",
            FaultKind::DropPayload { .. } => "drop-payload",
            FaultKind::ClockSkew { .. } => "clock-skew",
            FaultKind::StaleRegistry { .. } => "stale-registry",
            FaultKind::AgentBug { .. } => "agent-bug",
            FaultKind::InvalidToken { .. } => "invalid-token",
            FaultKind::EnrollErrors { .. } => "enroll-errors",
            FaultKind::CheckinErrors { .. } => "checkin-errors",
            FaultKind::BadCheckinToken { .. } => "bad-checkin-token",
            FaultKind::WorkerDown => "worker-down",
        }
    }
}

/// An `[[action]]` table: what the operator does, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// When it happens.
    #[serde(serialize_with = "ser_duration")]
    pub at: Duration,
    /// What it does.
    #[serde(flatten)]
    pub kind: ActionKind,
}

/// The actions (see [`crate::catalogue::ACTIONS`]) with their settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum ActionKind {
    /// Run the installer (`agent up`).
    Install {
        /// The agent; `None` installs every agent.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// The installer gives up after this long.
        #[serde(serialize_with = "ser_duration")]
        timeout: Duration,
        /// Hard-kill `agent up` at this point.
        #[serde(rename = "kill-up-after", skip_serializing_if = "Option::is_none")]
        kill_up_after: Option<KillPoint>,
        /// `agent up --delay-enroll`: the service enrolls when it starts.
        #[serde(rename = "delay-enroll", skip_serializing_if = "std::ops::Not::not")]
        delay_enroll: bool,
    },
    /// Queue a command for an agent.
    Dispatch {
        /// The agent.
        agent: String,
        /// The command text.
        command: String,
    },
    /// Close the agent's connection and drop its registry entry.
    Evict {
        /// The agent.
        agent: String,
    },
    /// Send the agent a wake.
    Wake {
        /// The agent.
        agent: String,
    },
    /// Revoke the agent's credential on the server.
    Revoke {
        /// The agent.
        agent: String,
    },
    /// Upgrade the agent.
    Upgrade {
        /// The agent.
        agent: String,
        /// The new version.
        to: String,
        /// A defect of the new version, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        defect: Option<UpgradeDefect>,
    },
    /// Stop (if running) and start, keeping the disk.
    Restart {
        /// The agent or the server.
        agent: Target,
    },
    /// Kill at once; unsynced writes are lost; stays down until a restart.
    Crash {
        /// The agent or the server.
        agent: Target,
    },
}

impl ActionKind {
    /// The action's name as written in scenario files (`"dispatch"`).
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Install { .. } => "install",
            ActionKind::Dispatch { .. } => "dispatch",
            ActionKind::Evict { .. } => "evict",
            ActionKind::Wake { .. } => "wake",
            ActionKind::Revoke { .. } => "revoke",
            ActionKind::Upgrade { .. } => "upgrade",
            ActionKind::Restart { .. } => "restart",
            ActionKind::Crash { .. } => "crash",
        }
    }
}

/// An `[[expect]]` table: one test on the outcome document.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// The outcome path, e.g. `commands.cmd-0001.status`.
    pub observe: String,
    /// The operator.
    pub op: ExpectOp,
    /// The operand, as JSON (TOML datetimes become strings).
    pub value: serde_json::Value,
}

impl Expect {
    /// The expectation as one line: `commands.cmd-0001.status equals "acked"`.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.observe, self.op, self.value)
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("observe", &self.observe)?;
        map.serialize_entry(self.op.as_str(), &self.value)?;
        map.end()
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_cost<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_cost(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

fn ser_signed_duration<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{
        AGENT_BUGS, EXPECT_OPERATORS, FRAME_TYPES, KILL_POINTS, PRESETS, UPGRADE_DEFECTS,
    };

    fn names(list: &[(&str, &str)]) -> Vec<String> {
        list.iter().map(|(n, _)| n.to_string()).collect()
    }

    #[test]
    fn enums_match_the_catalogues() {
        assert_eq!(Bug::NAMES, names(AGENT_BUGS));
        assert_eq!(UpgradeDefect::NAMES, names(UPGRADE_DEFECTS));
        assert_eq!(KillPoint::NAMES, names(KILL_POINTS));
        assert_eq!(FrameType::NAMES, names(FRAME_TYPES));
        assert_eq!(ExpectOp::NAMES, names(EXPECT_OPERATORS));
        assert_eq!(Preset::NAMES, names(PRESETS));
    }

    #[test]
    fn behavior_resolves_switches() {
        let mut b = Behavior::preset(Preset::Legacy);
        b.switches.insert("up_probe".into(), true);
        assert!(b.is_on("up_probe"));
        assert!(!b.is_on("registry_generation_check"));
        assert!(Behavior::default().is_on("registry_generation_check"));
        assert_eq!(b.resolved().len(), SWITCHES.len());
    }

    #[test]
    fn fault_windows() {
        let f = Fault {
            kind: FaultKind::WorkerDown,
            from: Some(Duration::from_secs(10)),
            until: Some(Duration::from_secs(20)),
        };
        assert!(!f.active_at(Duration::from_secs(9)));
        assert!(f.active_at(Duration::from_secs(10)));
        assert!(!f.active_at(Duration::from_secs(20)));
    }
}
