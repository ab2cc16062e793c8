//! The fleet gateway/server.
//!
//! - [`store`]: the crash-safe store (redb on the env's disk): CA, agents, commands.
//! - [`commands`]: the reaper, a sans-IO brain for offers, attempts and timeouts.
//! - [`registry`]: agent -> live connection, with the generation check switch.
//! - [`enroll`]: `POST /jet/tunnel/enroll` over HTTPS (hyper on rustls), TCP 7171.
//! - [`tunnel`]: the QUIC + mTLS tunnel gateway, UDP 4433.
//! - [`channel`]: the WebSocket command channel (TLS with client certificates).
//! - [`wake`]: the wake / check-in reconciler, a sans-IO brain; its delayed
//!   reconcile tasks live in the store and a worker task runs them when due.
//! - [`upgrade`]: the upgrade operator, a sans-IO commit decision (when to
//!   send `UpgradeStop`); its marker and status live in the store.
//! - [`artifacts`]: the agent builds served for upgrades.
//! - [`fleetctl`]: the operator API's command line (the `fleetctl` binary).
//! - [`limits`]: connection caps per listener and per source address.
//! - [`admin`]: the operator API (HTTP + JSON, admin token, TCP 7443), a
//!   sans-IO router over the [`ServerHandle`] functions and a thin hyper driver.
//!
//! [`start`] brings all of it up on an [`proto::env::Env`] and returns a
//! [`ServerHandle`] through which the operator (the `fleet-server` binary or
//! the simulator) dispatches commands and reads the server's view.

pub mod admin;
pub mod artifacts;
pub mod channel;
pub mod commands;
pub mod enroll;
pub mod fleetctl;
pub mod limits;
pub mod rate;
pub mod registry;
pub mod store;
pub mod tunnel;
pub mod upgrade;
pub mod wake;

use std::sync::{Arc, Mutex, MutexGuard};

use proto::env::Env;
use proto::fields;
use proto::pki::Ca;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::commands::ReaperPolicy;
use crate::registry::Registry;
use crate::store::{AgentRecord, CommandRecord, CommandStatus, Store, StoreError, TaskUpdate};
use crate::wake::{Enrollment, Lifecycle, Reconcile, ReconcileTask, WakePolicy, WakeState};

/// Behaviour switches of the server (DESIGN.md, "Legacy and fixed behaviour").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServerSwitches {
    /// Unregister a tunnel connection only if it is the registered one.
    pub registry_generation_check: bool,
    /// The upgrade operator sends `UpgradeStop` only after it saw a
    /// heartbeat of the new version itself (legacy: on the agent's own
    /// cutover-ready report).
    pub operator_waits_for_new_heartbeat: bool,
    /// The upgrade marker and status live in the crash-safe store, so a
    /// restarted operator resumes an upgrade (legacy: in memory, forgotten).
    pub upgrade_status_persisted: bool,
}

impl ServerSwitches {
    /// The behaviour that produced the field incidents.
    pub const LEGACY: ServerSwitches = ServerSwitches {
        registry_generation_check: false,
        operator_waits_for_new_heartbeat: false,
        upgrade_status_persisted: false,
    };
    /// The fixed behaviour (the shipped default).
    pub const FIXED: ServerSwitches = ServerSwitches {
        registry_generation_check: true,
        operator_waits_for_new_heartbeat: true,
        upgrade_status_persisted: true,
    };
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Name agents connect to; the TLS certificate's DNS name.
    pub hostname: String,
    /// Enrollment bearer tokens accepted; none by default, and the server
    /// refuses to start without one.
    pub enroll_tokens: Vec<EnrollToken>,
    /// Enrollment requests allowed per source address (`None`: no limit,
    /// the library's default, so the simulator's enrollment storms keep
    /// their meaning; `fleet-server` turns it on).
    pub enroll_rate_limit: Option<RateLimit>,
    /// Connection caps of each listener (enrollment, command channel,
    /// tunnel), in all and per source address (off by default, as the
    /// simulator puts a whole site behind one address; `fleet-server` turns
    /// them on). The command channel's internal listener for a reverse
    /// proxy has only the per-listener cap: all of it comes from the proxy.
    pub conn_limits: limits::ConnLimits,
    /// Behaviour switches.
    pub switches: ServerSwitches,
    /// Heartbeat interval pushed to agents in `ConfigUpdate`.
    pub heartbeat_interval_ms: u64,
    /// Agents reconnect after this long with no inbound traffic (pushed in `ConfigUpdate`).
    pub inbound_timeout_ms: u64,
    /// Interval of server Pings on the command channel.
    pub ping_interval_ms: u64,
    /// Reaper policy.
    pub reaper: ReaperPolicy,
    /// Wake / check-in reconciler policy.
    pub wake: WakePolicy,
    /// Whether the reconcile queue's worker runs. False only to inject the
    /// field's failure mode (`worker-down`): tasks are queued and never run,
    /// so a woken agent that does not check in gets no second wake and stays
    /// `provisioning`. True in every shipped build.
    pub wake_worker: bool,
    /// Path of the store on the env's disk.
    pub store_path: String,
    /// Injected defect (field hypothesis H7): commands with exactly this
    /// text, for the agent with this name, are built without their
    /// `command` field, so the agent cannot parse them. Empty in every
    /// shipped build.
    pub malformed_commands: Vec<(String, String)>,
    /// Injected defect (field hypothesis H5): for agents with these names
    /// the command-channel registry keeps a closed session's sender (which
    /// still accepts messages) instead of the agent's live session. Empty in
    /// every shipped build.
    pub stale_registry_agents: Vec<String>,
    /// Injected defect (field hypothesis H1): on the command channel of the
    /// agent with this name, socket writes of this frame type never
    /// complete (the send loop gives up on each after `write_timeout_ms` and
    /// goes on with the next frame). Empty in every shipped build.
    pub stall_writes: Vec<(String, proto::frame::FrameKind)>,
    /// Windows in which enrollment answers an HTTP error (`enroll-errors`).
    /// Empty in every shipped build.
    pub enroll_outages: Vec<Outage>,
    /// Windows in which fleet check-ins of some agents answer an HTTP error
    /// (`checkin-errors`). Empty in every shipped build.
    pub checkin_outages: Vec<CheckinOutage>,
    /// How long the send loop waits for one frame's socket write before it
    /// logs a `write_error` and goes on with the next frame.
    pub write_timeout_ms: u64,
    /// Ports (0 = any free port, for tests on a real network).
    pub enroll_port: u16,
    /// QUIC tunnel port.
    pub tunnel_port: u16,
    /// WebSocket port.
    pub ws_port: u16,
    /// A reverse proxy (the field's nginx) in front of the command channel.
    pub channel_proxy: Option<ChannelProxy>,
}

/// An enrollment token: a bearer secret, with an optional use limit and
/// expiry.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollToken {
    /// The bearer secret agents send.
    pub secret: String,
    /// Enrollments it may make in all (counted in the store, so across
    /// restarts); `None`: unlimited.
    pub max_uses: Option<u64>,
    /// When it stops being accepted (microseconds since the Unix epoch, on
    /// the server's calendar); `None`: never.
    pub expires_unix_us: Option<u64>,
}

impl EnrollToken {
    /// A token with no use limit and no expiry.
    pub fn new(secret: impl Into<String>) -> Self {
        EnrollToken {
            secret: secret.into(),
            max_uses: None,
            expires_unix_us: None,
        }
    }

    /// The key its use count is stored under (the SHA-256 of the secret).
    pub fn digest(&self) -> String {
        token_digest(&self.secret)
    }
}

impl std::fmt::Debug for EnrollToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollToken")
            .field("secret", &"<redacted>")
            .field("max_uses", &self.max_uses)
            .field("expires_unix_us", &self.expires_unix_us)
            .finish()
    }
}

impl From<&str> for EnrollToken {
    fn from(s: &str) -> Self {
        EnrollToken::new(s)
    }
}

impl From<String> for EnrollToken {
    fn from(s: String) -> Self {
        EnrollToken::new(s)
    }
}

/// Parses a token file: one token a line, `SECRET [uses=N]
/// [expires=UNIX_SECONDS]`; blank lines and `#` comments are skipped.
pub fn parse_token_file(text: &str) -> Result<Vec<EnrollToken>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(secret) = words.next() else { continue };
        let mut t = EnrollToken::new(secret);
        for w in words {
            let bad = || {
                format!(
                    "line {}: {} is not uses=N or expires=UNIX_SECONDS",
                    i + 1,
                    enroll::quote_cut(w, 40)
                )
            };
            match w.split_once('=') {
                Some(("uses", n)) => t.max_uses = Some(n.parse().map_err(|_| bad())?),
                Some(("expires", s)) => {
                    let s: u64 = s.parse().map_err(|_| bad())?;
                    t.expires_unix_us = Some(s.saturating_mul(1_000_000));
                }
                _ => return Err(bad()),
            }
        }
        out.push(t);
    }
    Ok(out)
}

/// A token-bucket rate limit: `burst` requests at once, refilled at
/// `per_minute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a minute, sustained.
    pub per_minute: u32,
    /// Requests allowed at once.
    pub burst: u32,
}

/// A window of time in which a service answers an HTTP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    /// The HTTP status answered.
    pub status: u16,
    /// From (microseconds on the server's clock, inclusive).
    pub from_us: u64,
    /// Until (exclusive); `None`: for good.
    pub until_us: Option<u64>,
}

impl Outage {
    /// Whether the outage is in force at `now_us`.
    pub fn covers(&self, now_us: u64) -> bool {
        self.from_us <= now_us && self.until_us.is_none_or(|u| now_us < u)
    }
}

/// A window in which the check-ins of some agents get an HTTP error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckinOutage {
    /// The status and the window.
    pub outage: Outage,
    /// The agents (by name) whose check-ins fail; empty: every agent.
    pub agents: Vec<String>,
}

impl CheckinOutage {
    /// Whether the outage hits the agent named `agent` at `now_us`.
    pub fn covers(&self, agent: &str, now_us: u64) -> bool {
        self.outage.covers(now_us)
            && (self.agents.is_empty() || self.agents.iter().any(|a| a == agent))
    }
}

/// A TLS-terminating reverse proxy in front of the command channel, as
/// nginx is in the field: agents connect to `public_host:public_port` and
/// present their client certificates there; the proxy verifies them against
/// the server's CA and speaks plain WebSocket to the server's internal
/// listener, naming the certificate in [`CLIENT_CERT_HEADER`].
///
/// The internal listener trusts that header: it must be reachable from the
/// proxy only (a loopback or private address in a deployment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelProxy {
    /// The proxy's host name: where agents connect, and a DNS name in the
    /// server's certificate (the proxy serves that certificate).
    pub public_host: String,
    /// The proxy's public port.
    pub public_port: u16,
    /// The server's plain-WebSocket listener for the proxy (0 = any free port).
    pub internal_port: u16,
}

/// The header in which a [`ChannelProxy`] passes the SHA-256 fingerprint
/// (lowercase hex) of the client certificate it verified.
pub const CLIENT_CERT_HEADER: &str = "x-client-cert-sha256";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            hostname: "server".into(),
            enroll_tokens: Vec::new(),
            enroll_rate_limit: None,
            conn_limits: limits::ConnLimits::OFF,
            switches: ServerSwitches::FIXED,
            heartbeat_interval_ms: 30_000,
            inbound_timeout_ms: 90_000,
            ping_interval_ms: 30_000,
            reaper: ReaperPolicy::default(),
            wake: WakePolicy::default(),
            wake_worker: true,
            store_path: "server.redb".into(),
            malformed_commands: Vec::new(),
            stale_registry_agents: Vec::new(),
            stall_writes: Vec::new(),
            enroll_outages: Vec::new(),
            checkin_outages: Vec::new(),
            write_timeout_ms: 10_000,
            enroll_port: proto::msg::ENROLL_PORT,
            tunnel_port: proto::msg::TUNNEL_PORT,
            ws_port: proto::msg::WS_PORT,
            channel_proxy: None,
        }
    }
}

/// How long a TLS handshake (and a WebSocket upgrade) may take before the
/// connection is dropped: a peer that opens and stalls holds nothing longer.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long the command channel waits for a session's first frame (Auth).
pub const FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an enrollment connection may take to send its first request's
/// headers, and stay idle between requests after that.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long an enrollment connection may stay idle between requests.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Exponential pause after failed accepts (10 ms doubling to 1 s), so an
/// accept loop out of file descriptors waits instead of spinning.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(crate) async fn wait(&mut self) {
        let ms = (10u64 << self.failures.min(7)).min(1000);
        self.failures = self.failures.saturating_add(1);
        proto::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key or certificate generation failed.
    #[error(transparent)]
    Pki(#[from] proto::pki::PkiError),
    /// A TLS configuration was rejected.
    #[error(transparent)]
    Tls(#[from] proto::tls::TlsConfigError),
    /// No enrollment token was configured.
    #[error("no enrollment token is configured: start the server with --token SECRET (repeatable) or --token-file FILE, and give agents that token to install with")]
    NoEnrollToken,
    /// A socket could not be bound.
    #[error("cannot listen on {what} port {port}: {source}; is another server running?")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The port.
        port: u16,
        /// The OS (or simulator) error.
        source: std::io::Error,
    },
}

/// What the send task of a command-channel session writes.
#[derive(Debug)]
pub enum Outbound {
    /// A Text frame carrying this JSON.
    Text(String),
    /// Close the connection (eviction).
    Close,
    /// A newer session of the same agent process replaced this one in the
    /// registry: the agent gave this connection up, so stop its Pings
    /// (queued Text still goes out).
    Replaced,
}

/// A live command-channel session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Where the session's send task reads from.
    pub tx: mpsc::UnboundedSender<Outbound>,
}

/// A registered tunnel connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelEntry {
    /// `service` or `probe`.
    pub role: String,
}

/// Server state shared by its tasks.
#[derive(Debug)]
pub struct Shared {
    env: Env,
    cfg: ServerConfig,
    store: Store,
    ca: CaMaterial,
    sessions: Mutex<Registry<Session>>,
    tunnels: Mutex<Registry<TunnelEntry>>,
    ports: Mutex<Ports>,
    // The TLS identity the server (and a reverse proxy in front of it) serves.
    identity: proto::pki::Issued,
    // Receivers of dead sessions kept alive by the stale-registry defect, so
    // their senders go on accepting (and losing) messages.
    graveyard: Mutex<Vec<mpsc::UnboundedReceiver<Outbound>>>,
    // Enrollment requests received (any answer), with the busiest minute.
    enroll_requests: Mutex<rate::RequestRate>,
    // Ids of the pending commands (rebuilt from the store at start).
    pending: Mutex<std::collections::BTreeSet<String>>,
    // Every authenticated command-channel session with its version (an
    // agent has two during an upgrade's cutover).
    live: Mutex<upgrade::LiveSessions>,
    // Upgrade records of the legacy operator (switch `upgrade_status_persisted` off).
    volatile_upgrades: Mutex<std::collections::BTreeMap<String, upgrade::UpgradeRecord>>,
    // The site each agent named at its last command-channel Auth, by agent id.
    sites: Mutex<std::collections::BTreeMap<String, String>>,
    // Enrollment requests per source address (`enroll_rate_limit`).
    enroll_limiter: Mutex<enroll::Limiter>,
    // Agent ids by the name they enrolled with (rebuilt from the store at
    // start), for the uniqueness check of enrollment.
    names: Mutex<std::collections::BTreeMap<String, Vec<String>>>,
    // When each agent was last heard from and when that was last written
    // to the store, by agent id (see `Shared::seen`).
    seen: Mutex<std::collections::HashMap<String, Seen>>,
    // What opening the store migrated (a store of an older server).
    migration: Option<store::TimeMigration>,
}

/// When an agent was last heard from, and when the store last got it.
#[derive(Clone, Copy, Debug)]
struct Seen {
    heard_us: u64,
    stored_us: u64,
}

/// How stale the stored `last_seen_us` may get before a heartbeat writes it
/// again. Every heartbeat of every agent updates the in-memory time, which
/// is what the server reports; the store gets it at most this often, so a
/// fleet's heartbeats (two channels, every 30 s) do not cost a durable
/// commit each. After a crash the stored time is at most this old.
pub const LAST_SEEN_STORE_PERIOD: std::time::Duration = std::time::Duration::from_secs(300);

/// The ports the server actually listens on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Ports {
    /// HTTPS enrollment (TCP).
    pub enroll: u16,
    /// QUIC tunnel (UDP).
    pub tunnel: u16,
    /// WebSocket command channel (TCP).
    pub ws: u16,
    /// Plain WebSocket listener for a reverse proxy (0 when there is none).
    pub ws_internal: u16,
}

#[derive(Debug)]
struct CaMaterial {
    ca: Ca,
}

/// Hex SHA-256 of an agent token, as the store keeps it.
pub fn token_digest(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where an operator request's answer goes (`None`: nobody waits for it,
/// as for the simulator's actions).
type Reply<T> = Option<oneshot::Sender<Result<T, OpError>>>;

/// Operator requests, executed inside the server's runtime.
#[derive(Debug)]
enum Control {
    Dispatch {
        agent: String,
        command: String,
        reply: Reply<CommandRecord>,
    },
    Evict {
        agent: String,
        reply: Reply<Option<String>>,
    },
    Wake {
        agent: String,
        reply: Reply<WakeState>,
    },
    Upgrade {
        agent: String,
        to: String,
        defect: Option<proto::build::BuildDefect>,
        reply: Reply<upgrade::UpgradeRecord>,
    },
    Revoke {
        agent: String,
        reply: Reply<AgentRecord>,
    },
    Publish {
        version: String,
        defect: Option<proto::build::BuildDefect>,
        reply: Reply<artifacts::Artifact>,
    },
}

/// Why an operator request was refused. The messages say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// No enrolled, unrevoked agent has that name.
    #[error("no enrolled agent is named `{agent}` (revoked agents are not); list the agents to see their names")]
    UnknownAgent {
        /// The name asked for.
        agent: String,
    },
    /// The agent's previous upgrade has not settled.
    #[error(
        "an upgrade of `{agent}` is under way (phase {phase}); wait until it is done or reverted"
    )]
    UpgradeUnderWay {
        /// The agent.
        agent: String,
        /// The running upgrade's phase.
        phase: String,
    },
    /// The store failed.
    #[error("the server's store failed ({0}); retry, and read the server's log if it persists")]
    Store(String),
    /// The server's control loop is gone (it is shutting down).
    #[error("the server is shutting down; retry when it is up again")]
    Stopped,
}

impl OpError {
    /// The machine-readable code (`unknown_agent`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            OpError::UnknownAgent { .. } => "unknown_agent",
            OpError::UpgradeUnderWay { .. } => "upgrade_under_way",
            OpError::Store(_) => "store_failed",
            OpError::Stopped => "stopped",
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> OpError {
        OpError::Store(e.to_string())
    }
}

fn answer<T>(reply: Reply<T>, result: Result<T, OpError>) {
    if let Some(tx) = reply {
        let _ = tx.send(result);
    }
}

/// The operator's handle on a running server.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
}

/// The server's view of one agent, for reports.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    /// Stored record.
    #[serde(flatten)]
    pub record: AgentRecord,
    /// `online` (live command channel and tunnel); otherwise
    /// `provisioning` while the reconciler waits for a check-in, else
    /// `offline`.
    pub status: String,
    /// The reconciler's state, if the agent was ever woken.
    pub wake: Option<WakeState>,
    /// The registered tunnel connection, if any.
    pub tunnel_conn: Option<String>,
    /// The registered command-channel connection, if any.
    pub ws_conn: Option<String>,
    /// The agent's upgrade marker and status, if it was ever upgraded: with
    /// `version` (its `currentVersion`) what the device record shows.
    pub upgrade: Option<upgrade::UpgradeRecord>,
}

impl ServerHandle {
    /// The CA agents must trust (an installer ships it).
    pub fn ca_pem(&self) -> String {
        self.shared.ca.ca.cert_pem.clone()
    }

    /// What the server did to its store's times at start: `Some` when the
    /// store was written by an older server (process-uptime times, schema
    /// version 1) and was migrated onto the calendar.
    pub fn store_migration(&self) -> Option<&store::TimeMigration> {
        self.shared.migration.as_ref()
    }

    /// Enrollment requests received since this server started.
    pub fn enroll_requests(&self) -> u64 {
        lock(&self.shared.enroll_requests).total()
    }

    /// The most enrollment requests received in any 60 s (whole seconds)
    /// since this server started: a retry storm's rate.
    pub fn enroll_max_per_minute(&self) -> u64 {
        lock(&self.shared.enroll_requests).peak_per_minute()
    }

    /// The TLS certificate and key the server serves, for a reverse proxy in
    /// front of it (see [`ChannelProxy`]).
    pub fn tls_identity(&self) -> (String, String) {
        let id = &self.shared.identity;
        (id.cert_pem.clone(), id.key_pem.clone())
    }

    /// The name of the enrolled, unrevoked agent a client certificate
    /// belongs to (what a proxy logs as the peer).
    pub fn agent_name_for_cert(
        &self,
        cert: &rustls_pki_types::CertificateDer<'_>,
    ) -> Option<String> {
        self.shared.agent_for_cert(cert).map(|a| a.name)
    }

    /// Queues a command for the agent named `agent` (ids `cmd-0001`, ... in order).
    pub fn dispatch(&self, agent: &str, command: &str) {
        let _ = self.control.send(Control::Dispatch {
            agent: agent.into(),
            command: command.into(),
            reply: None,
        });
    }

    /// Closes the agent's command-channel session from the server side.
    pub fn evict(&self, agent: &str) {
        let _ = self.control.send(Control::Evict {
            agent: agent.into(),
            reply: None,
        });
    }

    /// Wakes the agent (an update of it): sends a wake if it has a live
    /// command-channel session and starts a new check-in escalation.
    pub fn wake(&self, agent: &str) {
        let _ = self.control.send(Control::Wake {
            agent: agent.into(),
            reply: None,
        });
    }

    /// Upgrades the agent to the build `to` (with an injected `defect`):
    /// publishes the build, writes the upgrade marker, sends the request.
    pub fn upgrade(&self, agent: &str, to: &str, defect: Option<proto::build::BuildDefect>) {
        let _ = self.control.send(Control::Upgrade {
            agent: agent.into(),
            to: to.into(),
            defect,
            reply: None,
        });
    }

    /// Revokes the agent's credential: its certificate and agent token are
    /// refused from now on, its command-channel session is closed, and the
    /// reconcile worker wakes it no more (it goes `offline`).
    pub fn revoke(&self, agent: &str) {
        let _ = self.control.send(Control::Revoke {
            agent: agent.into(),
            reply: None,
        });
    }

    // Sends a request to the control loop and waits for its answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Control) -> Result<T, OpError> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(make(Some(tx)))
            .map_err(|_| OpError::Stopped)?;
        rx.await.map_err(|_| OpError::Stopped)?
    }

    /// [`ServerHandle::dispatch`], answered: the command as stored after
    /// its first offer (`attempts` 1 when the agent had a live session).
    pub async fn dispatch_answered(
        &self,
        agent: &str,
        command: &str,
    ) -> Result<CommandRecord, OpError> {
        self.ask(|reply| Control::Dispatch {
            agent: agent.into(),
            command: command.into(),
            reply,
        })
        .await
    }

    /// [`ServerHandle::evict`], answered: the connection id closed, `None`
    /// when the agent had no session.
    pub async fn evict_answered(&self, agent: &str) -> Result<Option<String>, OpError> {
        self.ask(|reply| Control::Evict {
            agent: agent.into(),
            reply,
        })
        .await
    }

    /// [`ServerHandle::wake`], answered: the agent's reconciler state after the wake.
    pub async fn wake_answered(&self, agent: &str) -> Result<WakeState, OpError> {
        self.ask(|reply| Control::Wake {
            agent: agent.into(),
            reply,
        })
        .await
    }

    /// [`ServerHandle::upgrade`], answered: the upgrade marker written.
    pub async fn upgrade_answered(
        &self,
        agent: &str,
        to: &str,
        defect: Option<proto::build::BuildDefect>,
    ) -> Result<upgrade::UpgradeRecord, OpError> {
        self.ask(|reply| Control::Upgrade {
            agent: agent.into(),
            to: to.into(),
            defect,
            reply,
        })
        .await
    }

    /// [`ServerHandle::revoke`], answered: the agent's record, now revoked.
    pub async fn revoke_answered(&self, agent: &str) -> Result<AgentRecord, OpError> {
        self.ask(|reply| Control::Revoke {
            agent: agent.into(),
            reply,
        })
        .await
    }

    /// Publishes the agent build of `version` (with an injected `defect`)
    /// so agents can download it; [`ServerHandle::upgrade`] publishes too.
    pub async fn publish_build(
        &self,
        version: &str,
        defect: Option<proto::build::BuildDefect>,
    ) -> Result<artifacts::Artifact, OpError> {
        self.ask(|reply| Control::Publish {
            version: version.into(),
            defect,
            reply,
        })
        .await
    }

    /// The site each agent named at its last command-channel Auth since
    /// this server started, by agent id.
    pub fn sites(&self) -> std::collections::BTreeMap<String, String> {
        lock(&self.shared.sites).clone()
    }

    /// The server's calendar clock (microseconds since the Unix epoch), the
    /// one `last_seen_us` and the other `_us` fields of its records are on:
    /// they survive a restart, which the process's monotonic clock does not.
    pub fn now_us(&self) -> u64 {
        self.shared.env.unix_us()
    }

    /// The clock the server's frame and event logs are stamped with.
    pub fn log_us(&self) -> u64 {
        self.shared.env.log_us()
    }

    /// Every agent's upgrade marker and status, by agent id.
    pub fn upgrades(&self) -> Result<Vec<upgrade::UpgradeRecord>, StoreError> {
        self.shared.all_upgrades()
    }

    /// Every agent as the server sees it, by agent id.
    pub fn agents(&self) -> Result<Vec<AgentView>, StoreError> {
        let sessions = lock(&self.shared.sessions);
        let tunnels = lock(&self.shared.tunnels);
        Ok(self
            .shared
            .store
            .agents()?
            .into_iter()
            .map(|mut record| {
                record.last_seen_us = self.shared.last_seen(&record);
                let ws_conn = sessions.get(&record.agent_id).map(|e| e.conn.clone());
                let tunnel_conn = tunnels.get(&record.agent_id).map(|e| e.conn.clone());
                let wake = self.shared.store.wake(&record.agent_id).ok().flatten();
                let provisioning = wake
                    .as_ref()
                    .is_some_and(|w| w.lifecycle == Lifecycle::Provisioning);
                let status = if ws_conn.is_some() && tunnel_conn.is_some() {
                    "online"
                } else if provisioning {
                    "provisioning"
                } else {
                    "offline"
                };
                let upgrade = self.shared.upgrade_record(&record.agent_id);
                AgentView {
                    record,
                    status: status.into(),
                    wake,
                    tunnel_conn,
                    ws_conn,
                    upgrade,
                }
            })
            .collect())
    }

    /// The ports actually bound.
    pub fn ports(&self) -> Ports {
        *lock(&self.shared.ports)
    }

    /// Every command, by id.
    pub fn commands(&self) -> Result<Vec<CommandRecord>, StoreError> {
        self.shared.store.commands()
    }

    /// Registered tunnel connections: (agent id, connection id, role).
    pub fn tunnels(&self) -> Vec<(String, String, String)> {
        lock(&self.shared.tunnels)
            .iter()
            .map(|(a, e)| (a.clone(), e.conn.clone(), e.value.role.clone()))
            .collect()
    }
}

/// Starts the server's listeners and workers on the current tokio runtime.
pub async fn start(env: Env, cfg: ServerConfig) -> Result<ServerHandle, ServerError> {
    if cfg.enroll_tokens.iter().all(|t| t.secret.is_empty()) {
        return Err(ServerError::NoEnrollToken);
    }
    let store = Store::open(env.disk.as_ref(), &cfg.store_path)?;
    // A store of an older server keeps process uptimes: onto the calendar.
    let migration = store.migrate_times(env.unix_us())?;
    if let Some(m) = &migration {
        env.event(
            "store.migrated",
            fields! {
                "from_schema" => 1,
                "to_schema" => store::SCHEMA_VERSION,
                "records" => m.records,
                "values" => m.values,
                "last_uptime_us" => m.last_uptime_us,
                "shift_us" => m.shift_us,
            },
        );
        tracing::warn!(
            records = m.records,
            values = m.values,
            "store times migrated from process uptime to the calendar"
        );
    }
    let ca = match store.ca()? {
        Some(rec) => Ca::load(&rec.cert_pem, &rec.key_pem)?,
        None => {
            let ca = Ca::generate(env.random_seed(), env.clock.system_time())?;
            store.put_ca(&store::CaRecord {
                cert_pem: ca.cert_pem.clone(),
                key_pem: ca.key_pem.clone(),
            })?;
            env.event("server.ca_created", fields! {});
            ca
        }
    };
    let gen_check = cfg.switches.registry_generation_check;
    let mut agent_names: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for a in store.agents()? {
        agent_names.entry(a.name).or_default().push(a.agent_id);
    }
    let pending = store
        .commands()?
        .into_iter()
        .filter(|c| c.status == CommandStatus::Pending)
        .map(|c| c.command_id)
        .collect();
    // The certificate names the gateway and, when one fronts the command
    // channel, the reverse proxy (which serves the same certificate).
    let mut names = vec![cfg.hostname.clone()];
    if let Some(p) = &cfg.channel_proxy {
        names.push(p.public_host.clone());
    }
    let identity = ca.issue(
        &cfg.hostname,
        &names,
        false,
        env.random_seed(),
        env.clock.system_time(),
    )?;
    let shared = Arc::new(Shared {
        env: env.clone(),
        cfg,
        store,
        identity,
        ca: CaMaterial { ca },
        sessions: Mutex::new(Registry::new(true)),
        tunnels: Mutex::new(Registry::new(gen_check)),
        ports: Mutex::new(Ports::default()),
        graveyard: Mutex::new(Vec::new()),
        enroll_requests: Default::default(),
        pending: Mutex::new(pending),
        live: Mutex::new(upgrade::LiveSessions::default()),
        volatile_upgrades: Mutex::default(),
        sites: Mutex::default(),
        enroll_limiter: Mutex::default(),
        names: Mutex::new(agent_names),
        seen: Mutex::new(std::collections::HashMap::new()),
        migration,
    });
    shared.resume_upgrades();
    enroll::spawn(shared.clone(), &shared.identity).await?;
    tunnel::spawn(shared.clone(), &shared.identity).await?;
    channel::spawn(shared.clone(), &shared.identity).await?;
    let (control, rx) = mpsc::unbounded_channel();
    tokio::spawn(control_loop(shared.clone(), rx));
    tokio::spawn(timeout_loop(shared.clone()));
    if shared.cfg.wake_worker {
        tokio::spawn(reconcile_worker(shared.clone()));
    }
    env.event("server.started", fields! {});
    Ok(ServerHandle { shared, control })
}

async fn control_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Control>) {
    while let Some(c) = rx.recv().await {
        match c {
            Control::Dispatch {
                agent,
                command,
                reply,
            } => answer(reply, shared.dispatch(&agent, &command)),
            Control::Evict { agent, reply } => answer(reply, shared.evict(&agent)),
            Control::Upgrade {
                agent,
                to,
                defect,
                reply,
            } => answer(reply, shared.start_upgrade(&agent, &to, defect)),
            Control::Revoke { agent, reply } => answer(reply, shared.revoke(&agent)),
            Control::Wake { agent, reply } => answer(reply, shared.wake_by_name(&agent)),
            Control::Publish {
                version,
                defect,
                reply,
            } => answer(
                reply,
                shared
                    .publish_build(&version, defect)
                    .map_err(OpError::from),
            ),
        }
    }
}

// Checks offer timeouts once a second of (simulated) time.
async fn timeout_loop(shared: Arc<Shared>) {
    let mut tick = proto::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.reap_timeouts();
    }
}

// Runs the due reconcile tasks of the store's queue once a second of
// (simulated) time.
async fn reconcile_worker(shared: Arc<Shared>) {
    let mut tick = proto::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        shared.run_due_tasks();
    }
}

impl Shared {
    /// A stored (calendar) time on the logs' timeline, for events: the
    /// logs' now plus how far `unix_us` is from the calendar's now.
    pub(crate) fn log_at(&self, unix_us: u64) -> u64 {
        let (log, unix) = (self.env.log_us(), self.env.unix_us());
        if unix_us >= unix {
            log.saturating_add(unix_us - unix)
        } else {
            log.saturating_sub(unix - unix_us)
        }
    }

    fn wake_state(&self, agent_id: &str, agent_name: &str) -> WakeState {
        match self.store.wake(agent_id) {
            Ok(Some(w)) => w,
            Ok(None) => WakeState::new(agent_id, agent_name),
            Err(e) => {
                tracing::error!(error = %e, agent_id, "store read failed");
                WakeState::new(agent_id, agent_name)
            }
        }
    }

    fn put_wake(&self, w: &WakeState, task: TaskUpdate<'_>) -> bool {
        match self.store.put_wake(w, task) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, agent_id = %w.agent_id, "store write failed");
                false
            }
        }
    }

    /// Sends the agent a wake on its command-channel session, if it has
    /// one; true when the session's channel accepted it.
    fn send_wake(&self, agent_id: &str, agent_name: &str) -> bool {
        let json =
            serde_json::to_string(&proto::msg::ServerMsg::Wake).expect("server messages serialize");
        self.send_to(agent_id, agent_name, json)
    }

    // `reason`: what queued the task (a wake, a retrigger, a deferral).
    fn enqueued(&self, t: &ReconcileTask, reason: &str) {
        self.env.event(
            "lifecycle.queue.enqueued",
            fields! {"agent" => t.agent_name, "attempt" => t.attempt, "due_us" => self.log_at(t.due_us), "reason" => reason},
        );
    }

    /// The agent was provisioned (`reason` = "provisioned") or updated:
    /// wake it and queue the reconcile task for its check-in deadline.
    pub(crate) fn wake(&self, agent_id: &str, agent_name: &str, reason: &str) {
        let mut w = self.wake_state(agent_id, agent_name);
        let task = self.cfg.wake.handle_wake(&mut w, self.env.unix_us());
        if !self.put_wake(&w, TaskUpdate::Put(&task)) {
            return;
        }
        let delivered = self.send_wake(agent_id, agent_name);
        self.env.event(
            "lifecycle.queue.enqueued",
            fields! {"agent" => agent_name, "attempt" => task.attempt, "due_us" => self.log_at(task.due_us), "reason" => reason, "wake_delivered" => delivered},
        );
    }

    /// The agent checked in (an authenticated session or a Heartbeat).
    pub(crate) fn checkin(&self, agent_id: &str) {
        let Ok(Some(mut w)) = self.store.wake(agent_id) else {
            return;
        };
        if self.cfg.wake.handle_checkin(&mut w, self.env.unix_us()) {
            self.put_wake(&w, TaskUpdate::Keep);
        }
    }

    /// The server refused a check-in of the agent (its command-channel Auth
    /// or an HTTPS check-in) for `reason`: remembered for the reconciler's
    /// provision error.
    pub(crate) fn refused(&self, agent_id: &str, reason: &str) {
        let Ok(Some(mut w)) = self.store.wake(agent_id) else {
            return;
        };
        if self.cfg.wake.handle_refused(&mut w, reason) {
            self.put_wake(&w, TaskUpdate::Keep);
        }
    }

    /// Whether `token` is the agent token issued to `agent` (agents enrolled
    /// before tokens were issued have none to check).
    pub(crate) fn token_ok(agent: &AgentRecord, token: Option<&str>) -> bool {
        match &agent.agent_token_sha256 {
            None => true,
            Some(h) => token.is_some_and(|t| *h == token_digest(t)),
        }
    }

    /// Runs every queued reconcile task that is due.
    fn run_due_tasks(&self) {
        let now = self.env.unix_us();
        let tasks = match self.store.reconcile_tasks() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "store read failed");
                return;
            }
        };
        for task in tasks.into_iter().take_while(|t| t.due_us <= now) {
            self.run_task(&task, now);
        }
    }

    fn run_task(&self, task: &ReconcileTask, now: u64) {
        let mut w = self.wake_state(&task.agent_id, &task.agent_name);
        // Only an enrolled, unrevoked agent is woken again.
        let enrollment = match self.store.agent(&task.agent_id) {
            Ok(Some(a)) if a.revoked => Enrollment::Revoked,
            Ok(Some(_)) => Enrollment::Enrolled,
            Ok(None) => Enrollment::Unknown,
            Err(e) => {
                tracing::error!(error = %e, agent_id = %task.agent_id, "store read failed");
                return;
            }
        };
        let verdict = self.cfg.wake.handle_due(&mut w, now, enrollment);
        let next = match verdict {
            Reconcile::Deferred { due_us } | Reconcile::Retriggered { due_us, .. } => {
                Some(ReconcileTask {
                    due_us,
                    attempt: w.wake_attempts,
                    ..task.clone()
                })
            }
            Reconcile::SkipNotStuck | Reconcile::MaxAttemptsReached | Reconcile::Revoked => None,
        };
        let update = match &next {
            Some(t) => TaskUpdate::Put(t),
            None => TaskUpdate::Remove,
        };
        if !self.put_wake(&w, update) {
            return;
        }
        let agent = task.agent_name.as_str();
        match verdict {
            Reconcile::SkipNotStuck => self.env.event(
                "lifecycle.reconcile.skip_not_stuck",
                fields! {"agent" => agent, "attempt" => task.attempt, "wake_attempts" => w.wake_attempts},
            ),
            Reconcile::Deferred { due_us } => self.env.event(
                "lifecycle.reconcile.deferred",
                fields! {"agent" => agent, "attempt" => task.attempt, "due_us" => self.log_at(due_us)},
            ),
            Reconcile::Retriggered { attempt, .. } => {
                let delivered = self.send_wake(&task.agent_id, agent);
                self.env.event(
                    "lifecycle.reconcile.retriggered",
                    fields! {"agent" => agent, "attempt" => attempt, "wake_delivered" => delivered},
                );
            }
            Reconcile::MaxAttemptsReached => self.env.event(
                "lifecycle.reconcile.max_attempts_reached",
                fields! {"agent" => agent, "attempt" => w.wake_attempts, "error" => w.last_provision_error.clone().unwrap_or_default()},
            ),
            Reconcile::Revoked => self.env.event(
                "lifecycle.reconcile.revoked",
                fields! {"agent" => agent, "attempt" => w.wake_attempts, "error" => w.last_provision_error.clone().unwrap_or_default()},
            ),
        }
        if let Some(t) = &next {
            let reason = match verdict {
                Reconcile::Deferred { .. } => "deferred",
                _ => "retriggered",
            };
            self.enqueued(t, reason);
        }
        self.env.event(
            "queue.worker.success",
            fields! {"task" => "lifecycle.reconcile", "agent" => agent, "attempt" => task.attempt},
        );
    }

    /// The unrevoked agent named `name` that has a live command-channel
    /// session (the connection commands go on), if one has.
    pub(crate) fn live_agent_named(&self, name: &str) -> Option<AgentRecord> {
        let ids = lock(&self.names).get(name).cloned().unwrap_or_default();
        let live: Vec<String> = {
            let sessions = lock(&self.sessions);
            ids.into_iter()
                .filter(|id| sessions.get(id).is_some())
                .collect()
        };
        live.iter()
            .filter_map(|id| self.store.agent(id).ok().flatten())
            .find(|a| !a.revoked)
    }

    pub(crate) fn name_enrolled(&self, name: &str, agent_id: &str) {
        lock(&self.names)
            .entry(name.to_string())
            .or_default()
            .push(agent_id.to_string());
    }

    /// The newest unrevoked agent enrolled as `name`: read through the name
    /// index, so an operator action costs the agents of that name, not a
    /// scan of the fleet. Candidates go in the store's key order, so a tie
    /// in enrollment time picks what a scan of the store would.
    fn agent_by_name(&self, name: &str) -> Option<AgentRecord> {
        let mut ids = lock(&self.names).get(name).cloned().unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| self.store.agent(id).ok().flatten())
            .filter(|a| a.name == name && !a.revoked)
            .max_by_key(|a| a.enrolled_at_us)
    }

    fn persist(&self, c: &CommandRecord) {
        if let Err(e) = self.store.put_command(c) {
            tracing::error!(error = %e, command_id = %c.command_id, "store write failed");
        }
        let mut pending = lock(&self.pending);
        if c.status == CommandStatus::Pending {
            pending.insert(c.command_id.clone());
        } else {
            pending.remove(&c.command_id);
        }
    }

    /// The pending commands, from the store, by id (the index spares the
    /// reaper a scan of every command ever dispatched).
    fn pending_commands(&self) -> Vec<CommandRecord> {
        let ids: Vec<String> = lock(&self.pending).iter().cloned().collect();
        ids.iter()
            .filter_map(|id| match self.store.command(id) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, command_id = %id, "store read failed");
                    None
                }
            })
            .filter(|c| c.status == CommandStatus::Pending)
            .collect()
    }

    fn dispatch(&self, agent: &str, command: &str) -> Result<CommandRecord, OpError> {
        let now = self.env.unix_us();
        let seq = match self.store.next_command_seq() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot allocate a command id");
                return Err(e.into());
            }
        };
        let command_id = format!("cmd-{seq:04}");
        let Some(rec) = self.agent_by_name(agent) else {
            self.env.event(
                "command.rejected",
                fields! {"command_id" => command_id, "agent" => agent, "reason" => "unknown agent"},
            );
            return Err(OpError::UnknownAgent {
                agent: agent.into(),
            });
        };
        let mut c = CommandRecord {
            command_id: command_id.clone(),
            agent_id: rec.agent_id.clone(),
            agent_name: rec.name.clone(),
            command: command.into(),
            status: CommandStatus::Pending,
            attempts: 0,
            created_us: now,
            last_offer_us: None,
            acked_us: None,
            completed_us: None,
            exit_code: None,
            output: None,
        };
        self.env.event(
            "command.dispatched",
            fields! {"command_id" => command_id, "agent" => rec.name, "command" => command},
        );
        self.offer(&mut c);
        self.persist(&c);
        Ok(c)
    }

    /// Hands a command to the agent's session; like the field's `send_to`,
    /// success means the in-memory channel accepted it.
    fn offer(&self, c: &mut CommandRecord) -> bool {
        let msg = proto::msg::ServerMsg::Command {
            command_id: c.command_id.clone(),
            command: c.command.clone(),
        };
        let malformed = self
            .cfg
            .malformed_commands
            .iter()
            .any(|(agent, command)| *agent == c.agent_name && *command == c.command);
        let json = if malformed {
            serde_json::json!({"type": "Command", "command_id": c.command_id, "cmd": c.command})
                .to_string()
        } else {
            serde_json::to_string(&msg).expect("server messages serialize")
        };
        let sent = self.send_to(&c.agent_id, &c.agent_name, json);
        if sent {
            self.cfg.reaper.handle_offered(c, self.env.unix_us());
        }
        sent
    }

    /// Queues a Text frame on the agent's session as the registry has it;
    /// like the field's `send_to`, true means the in-memory channel accepted it.
    fn send_to(&self, agent_id: &str, peer: &str, json: String) -> bool {
        let sessions = lock(&self.sessions);
        let Some(entry) = sessions.get(agent_id) else {
            return false;
        };
        self.enqueue(&entry.value.tx, &entry.conn, peer, json)
    }

    /// Puts a Text frame on a session's channel and logs it `enqueued`.
    fn enqueue(
        &self,
        tx: &mpsc::UnboundedSender<Outbound>,
        conn: &str,
        peer: &str,
        json: String,
    ) -> bool {
        let m = tungstenite::Message::text(json.clone());
        if tx.send(Outbound::Text(json)).is_err() {
            return false;
        }
        proto::ws::log(
            &self.env,
            conn,
            peer,
            proto::frame::Dir::Tx,
            proto::frame::Stage::Enqueued,
            &m,
        );
        true
    }

    fn stale_registry(&self, agent_name: &str) -> bool {
        self.cfg
            .stale_registry_agents
            .iter()
            .any(|a| a == agent_name)
    }

    fn evict(&self, agent: &str) -> Result<Option<String>, OpError> {
        let Some(rec) = self.agent_by_name(agent) else {
            return Err(OpError::UnknownAgent {
                agent: agent.into(),
            });
        };
        let mut sessions = lock(&self.sessions);
        let entry = if self.stale_registry(&rec.name) {
            // The defect: the socket is closed, the entry stays.
            sessions.get(&rec.agent_id).cloned()
        } else {
            sessions.remove(&rec.agent_id)
        };
        Ok(entry.map(|e| {
            let _ = e.value.tx.send(Outbound::Close);
            self.env.event(
                "registry.evicted",
                fields! {"agent" => rec.name, "conn" => e.conn},
            );
            e.conn
        }))
    }

    fn revoke(&self, agent: &str) -> Result<AgentRecord, OpError> {
        let Some(mut rec) = self.agent_by_name(agent) else {
            self.env.event(
                "agent.revoke_rejected",
                fields! {"agent" => agent, "reason" => "unknown agent"},
            );
            return Err(OpError::UnknownAgent {
                agent: agent.into(),
            });
        };
        rec.revoked = true;
        if let Err(e) = self.store.put_agent(&rec) {
            tracing::error!(error = %e, agent, "store write failed");
            return Err(e.into());
        }
        self.env.event(
            "agent.revoked",
            fields! {"agent" => rec.name, "agent_id" => rec.agent_id},
        );
        // Its live session goes; a new one is refused at TLS.
        if let Some(e) = lock(&self.sessions).remove(&rec.agent_id) {
            let _ = e.value.tx.send(Outbound::Close);
            self.env.event(
                "registry.evicted",
                fields! {"agent" => rec.name, "conn" => e.conn},
            );
        }
        Ok(rec)
    }

    /// The operator's wake of the agent named `agent` (an update of it).
    fn wake_by_name(&self, agent: &str) -> Result<WakeState, OpError> {
        let Some(rec) = self.agent_by_name(agent) else {
            self.env.event(
                "lifecycle.wake_rejected",
                fields! {"agent" => agent, "reason" => "unknown agent"},
            );
            return Err(OpError::UnknownAgent {
                agent: agent.into(),
            });
        };
        self.wake(&rec.agent_id, &rec.name, "updated");
        Ok(self.wake_state(&rec.agent_id, &rec.name))
    }

    fn pending_for(&self, agent_id: &str) -> Vec<CommandRecord> {
        self.pending_commands()
            .into_iter()
            .filter(|c| c.agent_id == agent_id)
            .collect()
    }

    /// The agent was heard from (a heartbeat on either channel): the time
    /// is kept in memory and written to the store when the stored one is
    /// [`LAST_SEEN_STORE_PERIOD`] old.
    pub(crate) fn seen(&self, agent_id: &str) {
        let now = self.env.unix_us();
        let store = {
            let mut seen = lock(&self.seen);
            let period = LAST_SEEN_STORE_PERIOD.as_micros() as u64;
            match seen.get_mut(agent_id) {
                Some(s) => {
                    s.heard_us = now;
                    let due = now.saturating_sub(s.stored_us) >= period;
                    if due {
                        s.stored_us = now;
                    }
                    due
                }
                None => {
                    seen.insert(
                        agent_id.to_string(),
                        Seen {
                            heard_us: now,
                            stored_us: now,
                        },
                    );
                    true
                }
            }
        };
        if store {
            if let Ok(Some(mut a)) = self.store.agent(agent_id) {
                a.last_seen_us = Some(now);
                let _ = self.store.put_agent(&a);
            }
        }
    }

    /// When the agent of `record` was last heard from: the later of the
    /// stored time and the one in memory.
    pub(crate) fn last_seen(&self, record: &AgentRecord) -> Option<u64> {
        let heard = lock(&self.seen).get(&record.agent_id).map(|s| s.heard_us);
        record.last_seen_us.max(heard)
    }

    fn handle_heartbeat(&self, agent_id: &str) {
        let now = self.env.unix_us();
        self.seen(agent_id);
        self.checkin(agent_id);
        for mut c in self.pending_for(agent_id) {
            match self.cfg.reaper.handle_heartbeat(&mut c, now) {
                commands::Verdict::Offer => {
                    if self.offer(&mut c) {
                        self.persist(&c);
                    }
                }
                commands::Verdict::Changed => {
                    self.env.event(
                        "command.undeliverable",
                        fields! {"command_id" => c.command_id, "attempts" => c.attempts},
                    );
                    self.persist(&c);
                }
                commands::Verdict::Keep => {}
            }
        }
    }

    fn handle_ack(&self, agent_id: &str, command_id: &str) {
        self.update_command(agent_id, command_id, |p, c, now| p.handle_ack(c, now));
    }

    fn handle_result(&self, agent_id: &str, command_id: &str, exit_code: i32, output: &str) {
        self.update_command(agent_id, command_id, |p, c, now| {
            p.handle_result(c, now, exit_code, output)
        });
    }

    fn update_command(
        &self,
        agent_id: &str,
        command_id: &str,
        f: impl FnOnce(&ReaperPolicy, &mut CommandRecord, u64) -> commands::Verdict,
    ) {
        let Ok(Some(mut c)) = self.store.command(command_id) else {
            self.env.event(
                "command.unknown",
                fields! {"command_id" => command_id, "agent_id" => agent_id},
            );
            return;
        };
        if c.agent_id != agent_id {
            self.env.event(
                "command.wrong_agent",
                fields! {"command_id" => command_id, "agent_id" => agent_id},
            );
            return;
        }
        if f(&self.cfg.reaper, &mut c, self.env.unix_us()) == commands::Verdict::Changed {
            self.env.event(
                "command.status",
                fields! {"command_id" => command_id, "status" => c.status},
            );
            self.persist(&c);
        }
    }

    fn reap_timeouts(&self) {
        let now = self.env.unix_us();
        for mut c in self.pending_commands() {
            if self.cfg.reaper.handle_timeout(&mut c, now) == commands::Verdict::Changed {
                self.env.event(
                    "command.timed_out",
                    fields! {"command_id" => c.command_id, "attempts" => c.attempts},
                );
                self.persist(&c);
            }
        }
    }

    /// The agent whose certificate this is, if the server issued it and it is not revoked.
    fn agent_for_cert(&self, cert: &rustls_pki_types::CertificateDer<'_>) -> Option<AgentRecord> {
        self.agent_for_fingerprint(&proto::pki::fingerprint(cert))
    }

    fn agent_for_fingerprint(&self, fp: &str) -> Option<AgentRecord> {
        match self.store.agent_by_cert(fp) {
            Ok(Some(a)) if !a.revoked => Some(a),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn start_moves_an_old_stores_uptimes_onto_the_calendar() {
        let dir = std::env::temp_dir().join(format!("server-old-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let observer = Arc::new(proto::real::JsonlObserver::new(None, None));
        let env = proto::real::env("server", &dir, observer).unwrap();
        {
            // A store as a server of schema 1 left it: times of its uptime.
            let store = Store::open(env.disk.as_ref(), "server.redb").unwrap();
            store
                .put_agent(&AgentRecord {
                    agent_id: "a-1".into(),
                    name: "pc-1".into(),
                    version: "1.0.0".into(),
                    cert_fingerprint: "ff".into(),
                    enrolled_at_us: 5_000_000,
                    last_seen_us: Some(65_000_000),
                    revoked: false,
                    agent_token_sha256: None,
                })
                .unwrap();
            let mut w = WakeState::new("a-1", "pc-1");
            w.lifecycle = Lifecycle::Provisioning;
            let task = ReconcileTask {
                agent_id: "a-1".into(),
                agent_name: "pc-1".into(),
                attempt: 1,
                due_us: 92_000_000,
            };
            store.put_wake(&w, TaskUpdate::Put(&task)).unwrap();
            store.set_schema_version(1).unwrap();
        }
        let before = env.unix_us();
        let cfg = ServerConfig {
            enroll_tokens: vec!["t".into()],
            enroll_port: 0,
            tunnel_port: 0,
            ws_port: 0,
            ..ServerConfig::default()
        };
        let handle = start(env.clone(), cfg).await.unwrap();
        let after = env.unix_us();
        let m = handle.store_migration().expect("the old store is migrated");
        assert_eq!((m.records, m.values, m.last_uptime_us), (2, 3, 65_000_000));
        let agent = &handle.agents().unwrap()[0].record;
        // Enrolled 60 s before the old server's last heartbeat, which is now.
        assert!(agent.enrolled_at_us >= before - 60_000_000, "{agent:?}");
        assert!(agent.enrolled_at_us <= after - 60_000_000, "{agent:?}");
        let due = handle.shared.store.reconcile_tasks().unwrap()[0].due_us;
        assert!(
            (before + 27_000_000..=after + 27_000_000).contains(&due),
            "{due}"
        );
        assert_eq!(
            handle.shared.store.schema_version().unwrap(),
            store::SCHEMA_VERSION
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
