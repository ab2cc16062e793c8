//! The outcome document of a run (report.json without its `verdict`), as
//! typed serde data: the harness writes it with these types and every
//! reader (expectations, `simbench check`, the reports, the scorer) reads
//! it back with the same ones. Also the plain data of the engine's answer
//! ([`DiagnosisDoc`] and the types it holds), which the outcome embeds
//! under `agents.<name>.diagnosis`.
//!
//! Every field has a default, so a partial document (an older report.json,
//! a hand-built one in a test) reads with the missing parts empty.
//!
//! Field order does not matter on the wire: the digest and report.json are
//! written from [`Outcome::to_value`], whose objects have their keys sorted
//! (serde_json's map), as the `json!`-built document had.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which observation points the engine may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Only frame records with `point == "server"` and events with
    /// `host == "server"`: what a field engineer has (the default of a
    /// document that does not say).
    #[default]
    Server,
    /// Every point (`server`, `agent:<name>`, `path:<name>`) and every event.
    Full,
}

/// A hypothesis's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The evidence points at it (several may be supported at once when the
    /// view cannot separate them, as in outcome row 1: "H2 or H3").
    Supported,
    /// The evidence contradicts it.
    Refuted,
    /// The evidence in this view does not decide it.
    Inconclusive,
}

/// What the server-side log shows on one of the agent's connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnSummary {
    /// The server's connection id.
    pub conn: String,
    /// Record number of the connection's first server record.
    pub first_record: usize,
    /// Pings whose socket write completed.
    pub pings_written: usize,
    /// Pongs read that answer a Ping written earlier on this connection.
    pub pongs_matched: usize,
    /// Pongs read that answer no Ping written on this connection (ignored).
    pub pongs_unmatched: usize,
    /// Heartbeats read.
    pub heartbeats: usize,
    /// `Command` Text frames accepted by the send channel.
    pub commands_enqueued: usize,
    /// `Command` Text frames whose socket write completed.
    pub commands_written: usize,
    /// `Command` Text frames whose socket write failed.
    pub command_write_errors: usize,
    /// `CommandAck`s read.
    pub acks: usize,
    /// Outcome-table row of this connection, when it carried unacked Commands
    /// and matched one.
    pub row: Option<u8>,
}

/// A machine-readable experiment: what to do, to whom, and from when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Do it at or after this time (microseconds on the log's clock): when
    /// the evidence that left the hypotheses standing was complete.
    pub after_us: u64,
    /// The steps, in order.
    pub steps: Vec<PlanStep>,
}

/// One step of a [`Plan`], named like a scenario's `[[action]]` `do`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum PlanStep {
    /// Queue a command for `agent`; `not` lists the commands already tried
    /// on it (a second command *kind*: anything else).
    Dispatch {
        /// The agent.
        agent: String,
        /// Commands the new one must differ from (may be empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not: Vec<String>,
    },
    /// Queue a command for another agent of `site` than `except`.
    DispatchSite {
        /// The site.
        site: String,
        /// The agent whose site it is (not this one).
        except: String,
    },
    /// Close the agent's command-channel session from the server side.
    Evict {
        /// The agent.
        agent: String,
    },
    /// Probe the agent's `/liveness?failon=failed` and `failon=degraded`
    /// and log the answers.
    ProbeLiveness {
        /// The agent.
        agent: String,
    },
    /// Read the agent's own logs (frame and event points): the full view.
    ReadAgentLogs {
        /// The agent.
        agent: String,
    },
}

/// A command that waits in the server's queue: dispatched, never offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// `cmd-0001`, ...
    pub command_id: String,
    /// Its last `command.status` (`pending` when none).
    pub status: String,
    /// The agent's last connection's records that tell why.
    pub records: Vec<usize>,
    /// `command.dispatched` and `command.status` event lines.
    pub events: Vec<usize>,
    /// Its state and the last connection's evidence.
    pub reason: String,
}

/// A verdict as the document holds it (the engine's `Verdict` with owned
/// strings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictDoc {
    /// `H1` .. `H7` or a named hypothesis.
    pub hypothesis: String,
    /// Supported, refuted or inconclusive.
    pub status: Status,
    /// Frame-log record numbers that decided it.
    pub records: Vec<usize>,
    /// Event-log line numbers that decided it (left out when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<usize>,
    /// Why.
    pub reason: String,
}

/// A next step as the document holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextDoc {
    /// The hypotheses it separates.
    pub between: Vec<String>,
    /// What to do, in one sentence.
    pub experiment: String,
    /// The same for a program.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// The engine's answer for one agent in one view, as the outcome holds it
/// at `agents.<name>.diagnosis.server` / `.full` (docs/diagnosis.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiagnosisDoc {
    /// The agent.
    pub agent: String,
    /// Which points were read.
    pub view: View,
    /// Some command was never acked.
    pub affected: bool,
    /// The outcome-table row.
    pub row: Option<u8>,
    /// Supported hypothesis ids: H1..H7, then the named ones.
    pub supported: Vec<String>,
    /// The unacked commands.
    pub unacked: Vec<String>,
    /// H1..H7.
    pub verdicts: Vec<VerdictDoc>,
    /// The agent's connections at the server.
    pub conns: Vec<ConnSummary>,
    /// Refuted hypothesis ids.
    pub refuted: Vec<String>,
    /// The named hypotheses of incidents 1, 3, 4 and 5.
    pub named: Vec<VerdictDoc>,
    /// Commands waiting in the queue.
    pub queued: Vec<Queued>,
    /// The next steps.
    pub next: Vec<NextDoc>,
}

impl DiagnosisDoc {
    /// The verdict on `hypothesis`, H1..H7 or named.
    pub fn verdict(&self, hypothesis: &str) -> Option<&VerdictDoc> {
        self.verdicts
            .iter()
            .chain(&self.named)
            .find(|v| v.hypothesis == hypothesis)
    }
}

/// `agents.<name>.diagnosis`: the truth the run injected, and the engine's
/// two views (absent when the engine did not return the agent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentDiagnosis {
    /// The hypothesis ids the run made true.
    pub truth: Vec<String>,
    /// From the server point alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<DiagnosisDoc>,
    /// From every point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<DiagnosisDoc>,
}

impl AgentDiagnosis {
    /// The view named `server` or `full`.
    pub fn view(&self, view: View) -> Option<&DiagnosisDoc> {
        match view {
            View::Server => self.server.as_ref(),
            View::Full => self.full.as_ref(),
        }
    }
}

/// `agents.<name>.install`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstallOutcome {
    /// The installer's exit code (`null`: no install ran).
    pub exit_code: Option<i32>,
    /// `success`, `failed-rolled-back`, ... (`null`: no install ran).
    pub result: Option<String>,
    /// The installer's error.
    pub error: Option<String>,
    /// Certificate and install files on the disk at the end.
    pub certs_after: Vec<String>,
    /// What the rollback removed.
    pub rolled_back: Option<Vec<String>>,
    /// Whether agent.json exists.
    pub agent_json: bool,
    /// Client certificates on the disk.
    pub client_certs: usize,
    /// Client certificates agent.json does not reference.
    pub orphans: usize,
    /// When the installer finished.
    pub finished_us: Option<u64>,
}

/// `agents.<name>.enroll`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnrollOutcome {
    /// Enrollment requests sent.
    pub requests: u64,
    /// The most in any 60 s window.
    pub max_per_minute: usize,
    /// The agent's enrollment state.
    pub state: Option<String>,
}

/// `agents.<name>.tunnel` and `.ws`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkOutcome {
    /// Connected at the end.
    pub connected: bool,
    /// Connections made.
    pub connects: u64,
}

/// `agents.<name>.commands`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentCommands {
    /// Commands the agent completed.
    pub completed: u64,
}

/// `agents.<name>.health`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthOutcome {
    /// The coordinator's state.
    pub coordinator: String,
    /// The tunnel component's state.
    pub tunnel: Option<String>,
    /// The command channel component's state.
    pub channel: Option<String>,
}

/// `agents.<name>.liveness`: the monitor's last answers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LivenessOutcome {
    /// `/liveness?failon=failed`.
    pub failed: Option<u16>,
    /// `/liveness?failon=degraded`.
    pub degraded: Option<u16>,
}

/// `agents.<name>.checkins`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckinOutcome {
    /// Check-ins sent.
    pub sent: u64,
    /// Check-ins that failed.
    pub failed: u64,
}

/// One phase of an upgrade, with when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseAt {
    /// The phase.
    pub phase: String,
    /// When (Unix microseconds).
    pub at_us: u64,
}

/// `agents.<name>.upgrade`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradeOutcome {
    /// The operator's phase.
    pub phase: Option<String>,
    /// From version.
    pub from_version: Option<String>,
    /// To version.
    pub to_version: Option<String>,
    /// Stops the operator sent.
    pub stops_sent: u64,
    /// Why it ended as it did.
    pub reason: Option<String>,
    /// The operator's phases.
    pub history: Option<Vec<PhaseAt>>,
    /// The agent's own phase.
    pub agent_phase: Option<String>,
    /// Processes running at the end.
    pub processes: usize,
    /// Their versions.
    pub running_versions: Vec<String>,
    /// Versions that heartbeat recently.
    pub heartbeating_versions: Vec<String>,
    /// Processes started in all.
    pub processes_started: usize,
    /// Stops received.
    pub stops_received: u64,
    /// Stops acted on.
    pub stops_acted: u64,
    /// The version the disk names active.
    pub active: Option<String>,
    /// Versions on the disk.
    pub versions_on_disk: Vec<String>,
}

/// `agents.<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentOutcome {
    /// The id the server issued.
    pub agent_id: Option<String>,
    /// Its site.
    pub site: String,
    /// Its version.
    pub version: String,
    /// Online at the server with both channels up.
    pub online: bool,
    /// The server's status of it.
    pub status: String,
    /// The install.
    pub install: InstallOutcome,
    /// Enrollment.
    pub enroll: EnrollOutcome,
    /// The QUIC tunnel.
    pub tunnel: LinkOutcome,
    /// The command channel.
    pub ws: LinkOutcome,
    /// Commands.
    pub commands: AgentCommands,
    /// The agent's last error.
    pub last_error: Option<String>,
    /// Its fleet state.
    pub fleet_state: String,
    /// The fleet state's message.
    pub fleet_message: Option<String>,
    /// Its components' health.
    pub health: HealthOutcome,
    /// The monitor's probes.
    pub liveness: LivenessOutcome,
    /// Check-ins.
    pub checkins: CheckinOutcome,
    /// Wakes the server sent.
    pub wake_attempts: Option<u32>,
    /// The server's last provision error.
    pub last_provision_error: Option<String>,
    /// The upgrade.
    pub upgrade: UpgradeOutcome,
    /// Truth and the engine's verdicts.
    pub diagnosis: AgentDiagnosis,
}

/// `commands.<id>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandOutcome {
    /// The agent it was sent to.
    pub agent: String,
    /// The command.
    pub command: String,
    /// Its status (`completed`, `undeliverable`, ...).
    pub status: String,
    /// Offers made.
    pub attempts: u32,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Its output.
    pub output: Option<String>,
}

/// A tunnel connection the registry holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelConn {
    /// The agent.
    pub agent_id: String,
    /// The connection.
    pub conn: String,
    /// Its role.
    pub role: String,
}

/// `server.registry`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryOutcome {
    /// Tunnels registered at the end.
    pub tunnels: usize,
    /// Their connections.
    pub tunnel_conns: Vec<TunnelConn>,
}

/// `server.enroll`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerEnroll {
    /// Enrollment requests the server received.
    pub requests: u64,
    /// The most it received in any 60 s (windows of whole seconds).
    pub max_per_minute: u64,
}

/// `server`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerOutcome {
    /// The registry.
    pub registry: RegistryOutcome,
    /// Enrollment.
    pub enroll: ServerEnroll,
}

/// `counts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Frame records.
    pub frames: usize,
    /// Events.
    pub events: usize,
    /// Commands completed.
    pub commands_completed: usize,
    /// Agents online at the end.
    pub agents_online: usize,
    /// When the last agent's installer finished (`None`: none finished).
    pub last_install_finished_us: Option<u64>,
}

/// `network.<host>`: what a host's TCP counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostNet {
    /// SYNs dropped on a full backlog.
    pub listen_overflows: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Of those, SYNs and SYN-ACKs (Linux's `TCPSynRetrans`).
    pub syn_retransmits: u64,
    /// RSTs sent.
    pub resets_sent: u64,
    /// With the server's CPU modelled (`[server] cpu`): the CPU time its
    /// software was charged, in milliseconds (absent otherwise).
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_busy_ms: u64,
    /// With the server's CPU modelled: the longest a new connection or a
    /// segment waited for the CPU, in milliseconds (absent otherwise).
    #[serde(skip_serializing_if = "is_zero")]
    pub cpu_lag_max_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `network.world`: how the world ran.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorldStats {
    /// Instants the world stopped at.
    pub instants: u64,
    /// Host runs.
    pub host_runs: u64,
    /// Datagrams delivered or lost.
    pub datagrams: u64,
    /// Datagrams lost.
    pub datagrams_lost: u64,
    /// Datagrams delivered late (must be 0).
    pub late_datagrams: u64,
    /// Wakes that came late (must be 0).
    pub late_wakes: u64,
}

/// `network`: per host, and the world.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkOutcome {
    /// The world's counters.
    pub world: WorldStats,
    /// Per host name.
    #[serde(flatten)]
    pub hosts: BTreeMap<String, HostNet>,
}

/// The outcome document (report.json without `verdict`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Simulated time at the end.
    pub sim_time_us: u64,
    /// Per agent.
    pub agents: BTreeMap<String, AgentOutcome>,
    /// Per command id.
    pub commands: BTreeMap<String, CommandOutcome>,
    /// The server.
    pub server: ServerOutcome,
    /// Counts.
    pub counts: Counts,
    /// The network.
    pub network: NetworkOutcome,
    /// SHA-256 over frames.jsonl, events.jsonl and the document without
    /// its digest (absent while it is computed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Outcome {
    /// The document as JSON with sorted keys: what report.json and the
    /// digest are written from, and what outcome paths are looked up in.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("the outcome serializes")
    }

    /// Reads a document (report.json, with or without `verdict`).
    pub fn from_value(v: &Value) -> Result<Self, serde_json::Error> {
        Outcome::deserialize(v)
    }
}
