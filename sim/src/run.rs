//! The harness: builds a simulated [`World`] from a [`RunSpec`], runs the real
//! server and agents in it, applies the scenario's actions on time, and
//! collects the frame log, the event log and the outcome document.
//!
//! Topology (DESIGN.md, "Topology and scale"): one host for the
//! server and one per site; every agent of a site runs as its own tasks in
//! the site's host with its own sockets, identity, disk, clock and random
//! stream.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use agent::{AgentConfig, AgentSwitches, StatusCell};
use proto::env::Env;
use proto::fields;
use proto::frame::{EventRecord, FrameRecord};
use records::outcome::{
    AgentCommands, AgentDiagnosis, AgentOutcome, CheckinOutcome, CommandOutcome, Counts,
    EnrollOutcome, HealthOutcome, HostNet, InstallOutcome, LinkOutcome, LivenessOutcome,
    NetworkOutcome, Outcome, PhaseAt, RegistryOutcome, ServerEnroll, ServerOutcome, TunnelConn,
    UpgradeOutcome, WorldStats,
};
use serde_json::Value;
use server::{ServerConfig, ServerHandle, ServerSwitches};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::capture::Capture;
use crate::clock::SimClock;
use crate::crypto::{derive_seed, seeded_provider};
use crate::diagnose::{diagnose, View};
use crate::disk::SimDisk;
use crate::fault::{
    link_delay, BlockRule, DropPayloadRule, Firewall, HalfOpenRule, LinkRule, LinkShape, LossRule,
    PacketFault, PartitionRule, DEFAULT_DELAY,
};
use crate::kill::KillableDisk;
use crate::net::TurmoilNetwork;
use crate::observe::{to_jsonl, RunObserver};
use crate::proxy::{DropRule, Proxy, INTERNAL_WS_PORT, PROXY_HOST, PROXY_POINT};
use crate::tcp::host::{HostStack, Wire};
use crate::tcp::stack::Cpu;
use crate::world::World;
use format::scenario::{Endpoint, FrameDirection, FrameType, Target};
use proto::frame::FrameKind;

/// Calendar time at the start of every run (2026-01-01T00:00:00Z): fixed so
/// certificates and digests do not depend on when a run happens.
pub const EPOCH_UNIX_S: u64 = 1_767_225_600;
/// The token the simulated installer uses.
pub const ENROLL_TOKEN: &str = "enroll-token";
/// The token an agent with an `invalid-token` fault was installed with.
pub const REVOKED_TOKEN: &str = "revoked-enroll-token";
/// The server's host name in the simulation.
pub const SERVER_HOST: &str = "server";
/// What every site's host name starts with (`site-<site>`).
pub const SITE_HOST_PREFIX: &str = "site-";
/// The bench's monitor host, which probes every agent's `/liveness`.
pub const MONITOR_HOST: &str = "monitor";
/// How long before the end of the run the monitor probes.
pub const MONITOR_LEAD: Duration = Duration::from_secs(2);
/// Bound on one liveness probe (connect and answer).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The token an agent with a `bad-checkin-token` fault presents.
pub const BAD_AGENT_TOKEN: &str = "not-the-issued-agent-token";

/// One agent of a run.
#[derive(Clone, Debug)]
pub struct AgentSpec {
    /// Unique name.
    pub name: String,
    /// Site (host `site-<site>`).
    pub site: String,
    /// Running version.
    pub version: String,
    /// Behaviour switches.
    pub switches: AgentSwitches,
    /// An injected defect (`agent-bug`).
    pub defect: Option<agent::AgentDefect>,
    /// Installed at the start of the run with the default 60 s installer
    /// timeout (false when an `install` action does it).
    pub install_at_start: bool,
}

/// What an action does.
#[derive(Clone, Debug, PartialEq)]
pub enum ActionKind {
    /// Run the installer (`agent up`, then the service on success).
    Install {
        /// Which agent.
        agent: String,
        /// The installer's timeout.
        timeout: Duration,
        /// Hard-kill `agent up` after its certificates are written.
        kill_after_certs: bool,
        /// `agent up --delay-enroll`: the service enrolls when it starts.
        delay_enroll: bool,
    },
    /// Queue a command on the server for an agent.
    Dispatch {
        /// Which agent.
        agent: String,
        /// What to run.
        command: String,
    },
    /// Close the agent's command-channel session from the server side.
    Evict {
        /// Which agent.
        agent: String,
    },
    /// The server wakes the agent and starts its check-in deadline.
    Wake {
        /// Which agent.
        agent: String,
    },
    /// The operator upgrades the agent to a new build.
    Upgrade {
        /// Which agent.
        agent: String,
        /// The new version.
        to: String,
        /// A defect of the new build.
        defect: Option<proto::build::BuildDefect>,
    },
    /// Stop and start again, on the kept disk. The server: its host's
    /// software, a clean stop that loses no write. An agent: every process
    /// of its service, then the version its disk names active, with the
    /// settings of its last successful install (nothing before an install).
    Restart(Target),
    /// Kill at once and lose every write the disk has not made durable; it
    /// stays down until a restart (or, for an agent, an install).
    Crash(Target),
    /// The server revokes the agent's credential.
    Revoke {
        /// Which agent.
        agent: String,
    },
}

/// An action at a time.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionSpec {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub kind: ActionKind,
}

/// Everything a run needs, resolved from a scenario.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Scenario name.
    pub name: String,
    /// The one seed.
    pub seed: u64,
    /// Simulated duration.
    pub duration: Duration,
    /// Server behaviour.
    pub server_switches: ServerSwitches,
    /// The server software's CPU, when modelled (`[server] cpu`).
    pub server_cpu: Option<Cpu>,
    /// The fleet.
    pub agents: Vec<AgentSpec>,
    /// Actions, in any order.
    pub actions: Vec<ActionSpec>,
    /// Firewall rules (`block` faults).
    pub blocks: Vec<BlockRule>,
    /// (agent, command) pairs the server builds unparsably (`agent-bug`
    /// `unparsable-command`).
    pub malformed_commands: Vec<(String, String)>,
    /// Agents whose registry entry the server keeps after their session dies
    /// (`stale-registry`).
    pub stale_registry: Vec<String>,
    /// Frames the reverse proxy drops (`drop-frames`).
    pub drops: Vec<DropRule>,
    /// Half-open paths (`half-open`).
    pub half_open: Vec<HalfOpenRule>,
    /// `loss` faults.
    pub losses: Vec<LossSpec>,
    /// `drop-payload` faults.
    pub payload_drops: Vec<DropPayloadRule>,
    /// (agent, frame type) whose server socket writes never complete
    /// (`stall-writes`).
    pub stall_writes: Vec<(String, FrameKind)>,
    /// Agents whose enrollment token the server refuses (`invalid-token`).
    pub invalid_token: Vec<String>,
    /// Windows in which enrollment answers an HTTP error (`enroll-errors`).
    pub enroll_outages: Vec<server::Outage>,
    /// Windows in which some agents' check-ins get an HTTP error
    /// (`checkin-errors`).
    pub checkin_outages: Vec<server::CheckinOutage>,
    /// Agents that present a wrong agent token (`bad-checkin-token`).
    pub bad_checkin_token: Vec<String>,
    /// The server's reconcile queue worker does not run (`worker-down`).
    pub worker_down: bool,
    /// Delays on sites' paths (`latency`, `jitter`).
    pub links: Vec<LinkRule>,
    /// Agents whose calendar clock is off (`clock-skew`): behind when the
    /// flag is set, by the duration.
    pub clock_skew: Vec<(String, bool, Duration)>,
    /// Extra liveness probes of the bench's monitor, `(at, agent)`, whose
    /// answers it logs as `liveness.probed` events (host `monitor`), as it
    /// logs its probe of every agent before the end; the experiment of
    /// `simbench next` for `I3-liveness-masks`. No scenario file sets it.
    pub liveness_probes: Vec<(Duration, String)>,
}

impl RunSpec {
    /// A run of `agents` and `actions` with the fixed server, the default
    /// 10 ms tick and no fault.
    pub fn new(
        name: &str,
        seed: u64,
        duration: Duration,
        agents: Vec<AgentSpec>,
        actions: Vec<ActionSpec>,
    ) -> RunSpec {
        RunSpec {
            name: name.into(),
            seed,
            duration,
            server_switches: ServerSwitches::FIXED,
            server_cpu: None,
            agents,
            actions,
            blocks: Vec::new(),
            malformed_commands: Vec::new(),
            stale_registry: Vec::new(),
            drops: Vec::new(),
            half_open: Vec::new(),
            losses: Vec::new(),
            payload_drops: Vec::new(),
            stall_writes: Vec::new(),
            invalid_token: Vec::new(),
            enroll_outages: Vec::new(),
            checkin_outages: Vec::new(),
            bad_checkin_token: Vec::new(),
            worker_down: false,
            links: Vec::new(),
            clock_skew: Vec::new(),
            liveness_probes: Vec::new(),
        }
    }

    /// The hypotheses the injected faults make true for an agent: the
    /// ground truth the diagnosis is scored against.
    pub fn truth(&self, agent: &str) -> Vec<&'static str> {
        let mut t = self.injected(agent);
        // H6: faults of different kinds on different agents, grouped by
        // coincidence in the field.
        if !t.is_empty() {
            let mut kinds: Vec<Vec<&str>> = self
                .agents
                .iter()
                .map(|a| self.injected(&a.name))
                .filter(|k| !k.is_empty())
                .collect();
            kinds.sort();
            kinds.dedup();
            if kinds.len() >= 2 {
                t.push("H6");
                t.sort();
            }
        }
        t.extend(crate::diagnose::truth::named(self, agent));
        t
    }

    // The hypotheses this agent's own injected faults make true.
    fn injected(&self, agent: &str) -> Vec<&'static str> {
        let mut t = Vec::new();
        if self
            .agents
            .iter()
            .any(|a| a.name == agent && a.defect.is_some())
        {
            t.push("H3");
        }
        if self.stale_registry.iter().any(|a| a == agent) {
            t.push("H5");
        }
        if self.malformed_commands.iter().any(|(a, _)| a == agent) {
            t.push("H7");
        }
        // H1: the server's Text writes to the agent hang at the socket.
        if self
            .stall_writes
            .iter()
            .any(|(a, f)| a == agent && *f == FrameKind::Text)
        {
            t.push("H1");
        }
        // H2: the path drops server->agent Text; H4 when it does so for a
        // whole site.
        let site = self
            .agents
            .iter()
            .find(|a| a.name == agent)
            .map(|a| &a.site);
        for d in &self.drops {
            if d.frame != FrameType::Text || d.direction != FrameDirection::ServerToAgent {
                continue;
            }
            match &d.target {
                Endpoint::Agent(a) if a == agent => t.push("H2"),
                Endpoint::Site(s) if Some(s) == site => t.extend(["H2", "H4"]),
                _ => {}
            }
        }
        t.sort();
        t.dedup();
        t
    }
}

/// A `loss` fault, resolved (the firewall's [`LossRule`] is built from it
/// with the run's seed).
#[derive(Clone, Debug, PartialEq)]
pub struct LossSpec {
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Long-run fraction of packets lost.
    pub rate: f64,
    /// Mean burst length in packets (1: independent losses).
    pub burst: f64,
    /// In force from.
    pub from: Duration,
    /// In force until (exclusive).
    pub until: Option<Duration>,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A host of the world failed.
    #[error("simulation failed at {at_us} us: {message}")]
    Sim {
        /// When.
        at_us: u64,
        /// What the world said.
        message: String,
    },
    /// The server never came up.
    #[error("the server did not start: {0}")]
    ServerStart(String),
    /// The capture file could not be created.
    #[error("cannot create the capture file {path}: {message}")]
    Capture {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// capture.pcapng as a run left it.
#[derive(Debug)]
pub enum Pcap {
    /// The file's bytes: a capture in memory.
    Bytes(Vec<u8>),
    /// A capture written to a file as the run went
    /// ([`RunOptions::capture_file`]).
    File(crate::capture::CaptureFile),
}

/// The result of a run.
#[derive(Debug)]
pub struct RunOutput {
    /// The outcome document (report.json), with `digest`, as JSON: what
    /// outcome paths (`[[expect]] observe`) are looked up in. Written from
    /// [`RunOutput::doc`].
    pub outcome: Value,
    /// The same document, typed.
    pub doc: Outcome,
    /// frames.jsonl.
    pub frames: Vec<FrameRecord>,
    /// events.jsonl.
    pub events: Vec<EventRecord>,
    /// SHA-256 of frames.jsonl, events.jsonl and the outcome without the digest.
    pub digest: String,
    /// capture.pcapng, when [`RunOptions::capture`] asked for it.
    pub pcap: Option<Pcap>,
    /// keylog.txt (every session's TLS secrets, NSS key log format), when
    /// [`RunOptions::key_log`] asked for it.
    pub key_log: Option<String>,
}

/// How to run, beyond what the scenario says; nothing here changes the run
/// or its digest.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Record every packet the hosts send, for capture.pcapng
    /// ([`crate::capture`]), with the sessions' secrets inside.
    pub capture: bool,
    /// Where to write that capture as the run goes (created or truncated):
    /// a long run then holds none of it in memory, and one that fails
    /// leaves what it captured. `None`: in memory, in [`RunOutput::pcap`].
    pub capture_file: Option<std::path::PathBuf>,
    /// Keep every session's TLS secrets, for keylog.txt.
    pub key_log: bool,
    /// Told the simulated time reached, and the run's end, as the run goes
    /// (every [`PROGRESS_STEP`] of simulated time at most).
    pub progress: Option<ProgressFn>,
}

/// What [`RunOptions::progress`] calls: `(reached, end)`.
#[derive(Clone)]
pub struct ProgressFn(pub Arc<dyn Fn(Duration, Duration) + Send + Sync>);

impl fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// The harness drives the world this much simulated time at a time, at
/// most, and tells [`RunOptions::progress`] in between. The world does not
/// see the steps: an instant runs the same whether a step ends before it
/// or not (every shipped digest is the same as with one step to the end).
pub const PROGRESS_STEP: Duration = Duration::from_secs(1);

impl RunOutput {
    /// frames.jsonl contents.
    pub fn frames_jsonl(&self) -> String {
        to_jsonl(&self.frames)
    }

    /// events.jsonl contents.
    pub fn events_jsonl(&self) -> String {
        to_jsonl(&self.events)
    }
}

/// Install requests and the results the harness reads back.
#[derive(Debug, Default)]
struct AgentSlot {
    status: StatusCell,
    procs: Arc<crate::upgrade::Procs>,
    // The monitor's last answers: (failon=failed, failon=degraded).
    liveness: Mutex<(Option<u16>, Option<u16>)>,
    disk: Arc<KillableDisk>,
    install: Mutex<Option<agent::installer::InstallReport>>,
    // The service's settings, from the last successful install.
    service: Mutex<Option<AgentConfig>>,
}

type ServerSlot = Arc<Mutex<Option<ServerHandle>>>;
type InstallRx = mpsc::UnboundedReceiver<AgentOrder>;

/// What the bench tells an agent's installer.
#[derive(Clone, Copy, Debug)]
struct InstallOrder {
    timeout: Duration,
    kill_after_certs: bool,
    delay_enroll: bool,
}

/// What the bench tells an agent's machine: run the installer, or restart
/// or crash the agent's service.
#[derive(Clone, Copy, Debug)]
enum AgentOrder {
    Install(InstallOrder),
    Restart,
    Crash,
}
type SiteAgent = (AgentSpec, Arc<AgentSlot>, Arc<Mutex<InstallRx>>, u16);

/// The installer's timeout when nothing else is said (INCIDENTS.md, incident 1).
pub const DEFAULT_INSTALL_TIMEOUT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a spec to its end.
pub fn run(spec: &RunSpec) -> Result<RunOutput, RunError> {
    run_with(spec, RunOptions::default())
}

/// Runs a spec to its end, with `options`.
pub fn run_with(spec: &RunSpec, options: RunOptions) -> Result<RunOutput, RunError> {
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_UNIX_S);
    let mut sim = World::new(spec.seed);
    sim.set_default_delay(DEFAULT_DELAY.0, DEFAULT_DELAY.1);
    let observer = Arc::new(if options.capture || options.key_log {
        RunObserver::keeping_secrets()
    } else {
        RunObserver::default()
    });
    let capture = if options.capture {
        let c = match &options.capture_file {
            Some(path) => Capture::to_file(EPOCH_UNIX_S, path).map_err(|e| RunError::Capture {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            None => Capture::new(EPOCH_UNIX_S),
        };
        if let Some(secrets) = observer.secrets() {
            c.keep_secrets(secrets);
        }
        Some(Arc::new(c))
    } else {
        None
    };
    let clock = Arc::new(SimClock::new(epoch));
    let agent_sites: BTreeMap<String, String> = spec
        .agents
        .iter()
        .map(|a| (a.name.clone(), a.site.clone()))
        .collect();
    let mut packet_faults: Vec<Box<dyn PacketFault>> = Vec::new();
    for l in spec
        .links
        .iter()
        .filter(|l| l.shape == LinkShape::Partition)
    {
        packet_faults.push(Box::new(PartitionRule {
            site: l.site.clone(),
            from: l.from,
            until: l.until,
        }));
    }
    for d in &spec.payload_drops {
        packet_faults.push(Box::new(d.clone()));
    }
    for (i, l) in spec.losses.iter().enumerate() {
        let seed = derive_seed(spec.seed, &format!("loss/{i}"));
        packet_faults.push(Box::new(LossRule::new(
            l.a.clone(),
            l.b.clone(),
            l.rate,
            l.burst,
            (l.from, l.until),
            u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")),
        )));
    }
    let firewall = Arc::new(
        Firewall::new(spec.blocks.clone(), agent_sites.clone())
            .with_half_open(spec.half_open.clone())
            .with_faults(packet_faults),
    );
    // Every host's kernel, on one wire through the firewall (and the capture).
    let wire = Arc::new(Wire::new(firewall.clone(), capture.clone(), spec.seed));
    let kernels: Mutex<Vec<Arc<HostStack>>> = Mutex::default();
    let kernel = |name: &str, cpu: Option<Cpu>| {
        let k = HostStack::with_cpu(name, wire.clone(), cpu);
        lock(&kernels).push(k.clone());
        k
    };

    let server_kernel = kernel(SERVER_HOST, spec.server_cpu);
    // The server host. Its disk outlives the host closure, so a restart finds its store.
    let server_slot: ServerSlot = Arc::default();
    let server_disk = SimDisk::new();
    {
        let slot = server_slot.clone();
        let observer = observer.clone();
        let clock = clock.clone();
        let disk = server_disk.clone();
        let switches = spec.server_switches;
        let malformed_commands = spec.malformed_commands.clone();
        let stale_registry = spec.stale_registry.clone();
        let stall_writes = spec.stall_writes.clone();
        let enroll_outages = spec.enroll_outages.clone();
        let checkin_outages = spec.checkin_outages.clone();
        let wake_worker = !spec.worker_down;
        let seed = spec.seed;
        let kernel = server_kernel.clone();
        let boots = Arc::new(Mutex::new(0u64));
        sim.host(SERVER_HOST, move || {
            let slot = slot.clone();
            let env = Env {
                net: Arc::new(TurmoilNetwork::on("server", kernel.clone())),
                // A (re)started process: its monotonic clock starts again.
                clock: Arc::new(clock.booted()),
                crypto: seeded_provider(derive_seed(
                    seed,
                    &format!("server/boot-{}", {
                        let mut b = lock(&boots);
                        *b += 1;
                        *b
                    }),
                )),
                disk: Arc::new(disk.clone()),
                observer: observer.clone(),
                point: "server".into(),
            };
            let cfg = ServerConfig {
                hostname: SERVER_HOST.into(),
                enroll_tokens: vec![ENROLL_TOKEN.into()],
                switches,
                malformed_commands: malformed_commands.clone(),
                stale_registry_agents: stale_registry.clone(),
                stall_writes: stall_writes.clone(),
                enroll_outages: enroll_outages.clone(),
                checkin_outages: checkin_outages.clone(),
                wake_worker,
                channel_proxy: Some(server::ChannelProxy {
                    public_host: PROXY_HOST.into(),
                    public_port: proto::msg::WS_PORT,
                    internal_port: INTERNAL_WS_PORT,
                }),
                ..ServerConfig::default()
            };
            kernel.boot();
            async move {
                let handle = server::start(env, cfg).await?;
                *lock(&slot) = Some(handle);
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    // The reverse proxy in front of the command channel (the field's nginx).
    {
        let observer = observer.clone();
        let clock = clock.clone();
        let server_slot = server_slot.clone();
        let drops = spec.drops.clone();
        let seed = spec.seed;
        let sites = agent_sites.clone();
        let kernel = kernel(PROXY_HOST, None);
        sim.host(PROXY_HOST, move || {
            let env = Env {
                net: Arc::new(TurmoilNetwork::on(PROXY_HOST, kernel.clone())),
                clock: clock.clone(),
                crypto: seeded_provider(derive_seed(seed, PROXY_HOST)),
                disk: Arc::new(SimDisk::new()),
                observer: observer.clone(),
                point: PROXY_POINT.into(),
            };
            let proxy = Proxy::new(
                env,
                server_slot.clone(),
                (SERVER_HOST.into(), INTERNAL_WS_PORT),
                drops.clone(),
                sites.clone(),
            );
            kernel.boot();
            async move {
                proxy.serve(proto::msg::WS_PORT).await?;
                Ok(())
            }
        });
    }

    // One host per site, every agent its own tasks inside it.
    let mut slots: BTreeMap<String, Arc<AgentSlot>> = BTreeMap::new();
    let mut installers: BTreeMap<String, mpsc::UnboundedSender<AgentOrder>> = BTreeMap::new();
    let mut sites: BTreeMap<String, Vec<SiteAgent>> = BTreeMap::new();
    for a in &spec.agents {
        let slot = Arc::new(AgentSlot::default());
        let (tx, rx) = mpsc::unbounded_channel();
        if a.install_at_start {
            let _ = tx.send(AgentOrder::Install(InstallOrder {
                timeout: DEFAULT_INSTALL_TIMEOUT,
                kill_after_certs: false,
                delay_enroll: false,
            }));
        }
        installers.insert(a.name.clone(), tx);
        slots.insert(a.name.clone(), slot.clone());
        let site = sites.entry(a.site.clone()).or_default();
        // Agents of a site share its host: one liveness port each.
        let port = agent::LIVENESS_PORT + site.len() as u16;
        site.push((a.clone(), slot, Arc::new(Mutex::new(rx)), port));
    }
    // Where each agent's liveness endpoint is: its site's host and port.
    let endpoints: BTreeMap<String, (String, u16)> = sites
        .iter()
        .flat_map(|(site, agents)| {
            agents
                .iter()
                .map(move |(a, _, _, port)| (a.name.clone(), (format!("site-{site}"), *port)))
        })
        .collect();
    let extra_probes: Vec<(Duration, String, String, u16)> = spec
        .liveness_probes
        .iter()
        .filter_map(|(at, name)| {
            endpoints
                .get(name)
                .map(|(host, port)| (*at, name.clone(), host.clone(), *port))
        })
        .collect();
    let probes: Vec<(Arc<AgentSlot>, String, String, u16)> = sites
        .iter()
        .flat_map(|(site, agents)| {
            agents.iter().map(move |(a, slot, _, port)| {
                (slot.clone(), a.name.clone(), format!("site-{site}"), *port)
            })
        })
        .collect();
    for (site, agents) in sites {
        let invalid_token = spec.invalid_token.clone();
        let bad_checkin_token = spec.bad_checkin_token.clone();
        let observer = observer.clone();
        let clock = clock.clone();
        let clock_skew = spec.clock_skew.clone();
        let server_slot = server_slot.clone();
        let seed = spec.seed;
        let kernel = kernel(&format!("{SITE_HOST_PREFIX}{site}"), None);
        sim.host(format!("site-{site}"), move || {
            kernel.boot();
            for (a, slot, rx, port) in &agents {
                let clock = match clock_skew.iter().find(|(name, ..)| *name == a.name) {
                    Some((_, behind, by)) => Arc::new(clock.skewed(*behind, *by)),
                    None => clock.clone(),
                };
                let env = Env {
                    net: Arc::new(TurmoilNetwork::on(a.name.clone(), kernel.clone())),
                    clock,
                    crypto: seeded_provider(derive_seed(seed, &format!("agent:{}", a.name))),
                    disk: slot.disk.clone(),
                    observer: observer.clone(),
                    point: format!("agent:{}", a.name),
                };
                tokio::spawn(agent_main(
                    env,
                    a.clone(),
                    AgentFaults {
                        invalid_token: invalid_token.contains(&a.name),
                        bad_checkin_token: bad_checkin_token.contains(&a.name),
                        liveness_port: *port,
                    },
                    slot.clone(),
                    rx.clone(),
                    server_slot.clone(),
                    seed,
                ));
            }
            async { std::future::pending::<Result<(), Box<dyn std::error::Error>>>().await }
        });
    }

    // The bench's monitor: probes every agent's liveness endpoint over the
    // simulated network shortly before the end, as a real monitor would.
    {
        let observer = observer.clone();
        let clock = clock.clone();
        let seed = spec.seed;
        let probe_at = spec.duration.saturating_sub(MONITOR_LEAD);
        let kernel = kernel(MONITOR_HOST, None);
        sim.host(MONITOR_HOST, move || {
            kernel.boot();
            let env = Env {
                net: Arc::new(TurmoilNetwork::on(MONITOR_HOST, kernel.clone())),
                clock: clock.clone(),
                crypto: seeded_provider(derive_seed(seed, MONITOR_HOST)),
                disk: Arc::new(SimDisk::new()),
                observer: observer.clone(),
                point: MONITOR_HOST.into(),
            };
            let probes = probes.clone();
            let extra = extra_probes.clone();
            async move {
                // The experiment's probes, each logged with its answers.
                for (at, name, host, port) in extra {
                    let env = env.clone();
                    tokio::spawn(async move {
                        proto::time::sleep(at).await;
                        for failon in ["failed", "degraded"] {
                            let query = format!("failon={failon}");
                            let probe = agent::liveness::probe(&env, &host, port, &query);
                            let status = match proto::time::timeout(PROBE_TIMEOUT, probe).await {
                                Ok(Ok(c)) => Some(c),
                                _ => None,
                            };
                            env.event(
                                "liveness.probed",
                                fields! {"agent" => name.clone(), "failon" => failon, "status" => status},
                            );
                        }
                    });
                }
                proto::time::sleep(probe_at).await;
                let mut tasks = Vec::new();
                for (slot, name, host, port) in probes {
                    let env = env.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut codes = [None, None];
                        for (code, failon) in codes.iter_mut().zip(["failed", "degraded"]) {
                            let query = format!("failon={failon}");
                            let probe = agent::liveness::probe(&env, &host, port, &query);
                            *code = match proto::time::timeout(PROBE_TIMEOUT, probe).await {
                                Ok(Ok(c)) => Some(c),
                                _ => None,
                            };
                            // Logged as a monitoring system logs its checks,
                            // so the engine's full view can decide
                            // I3-liveness-masks.
                            env.event(
                                "liveness.probed",
                                fields! {"agent" => name.clone(), "failon" => failon, "status" => *code},
                            );
                        }
                        *lock(&slot.liveness) = (codes[0], codes[1]);
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }

    if let Some(c) = &capture {
        c.set_owners(
            [SERVER_HOST, PROXY_HOST, MONITOR_HOST]
                .into_iter()
                .map(|h| (h.to_string(), sim.lookup(h)))
                .chain(
                    spec.agents
                        .iter()
                        .map(|a| (a.name.clone(), sim.lookup(&format!("site-{}", a.site)))),
                ),
        );
    }
    firewall.set_addresses(
        vec![sim.lookup(SERVER_HOST), sim.lookup(PROXY_HOST)],
        spec.agents
            .iter()
            .map(|a| (sim.lookup(&format!("site-{}", a.site)), a.site.clone()))
            .collect(),
    );
    wire.set_names(
        [SERVER_HOST, PROXY_HOST, MONITOR_HOST]
            .into_iter()
            .map(String::from)
            .chain(spec.agents.iter().map(|a| format!("site-{}", a.site)))
            .map(|h| {
                let ip = sim.lookup(&h);
                (h, ip)
            })
            .collect(),
    );

    // Drive: actions on time, one tick at a time.
    let mut actions = spec.actions.clone();
    actions.sort_by_key(|a| a.at);
    let mut next = 0;
    // The delays each shaped site's path has now (partitions are packet
    // faults, in the firewall).
    let mut shaped: BTreeMap<&str, (Duration, Duration)> = spec
        .links
        .iter()
        .map(|l| (l.site.as_str(), DEFAULT_DELAY))
        .collect();
    loop {
        let now = sim.elapsed();
        for (site, delay) in shaped.iter_mut() {
            let host = format!("site-{site}");
            let want = link_delay(&spec.links, site, now);
            if want != *delay {
                for end in [SERVER_HOST, PROXY_HOST] {
                    sim.set_link_delay(&host, end, want.0, want.1);
                }
                *delay = want;
            }
        }
        if next < actions.len() && actions[next].at <= now {
            // Every host's clock at `now`, so the action happens at the
            // same time everywhere.
            sim.sync().map_err(|e| RunError::Sim {
                at_us: now.as_micros() as u64,
                message: e.to_string(),
            })?;
        }
        while next < actions.len() && actions[next].at <= now {
            let kind = &actions[next].kind;
            match kind {
                ActionKind::Restart(Target::Server) | ActionKind::Crash(Target::Server) => power(
                    &mut sim,
                    kind,
                    (&server_slot, &server_kernel),
                    &server_disk,
                    &observer,
                    now,
                ),
                _ => apply(kind, &server_slot, &installers, &observer, now),
            }
            next += 1;
        }
        if now >= spec.duration {
            break;
        }
        // Run to the next thing the harness itself does: an action, a
        // change of a path's delays, the end.
        let stop = actions
            .get(next)
            .map(|a| a.at)
            .into_iter()
            .chain(next_link_change(&spec.links, now))
            .fold(spec.duration, Duration::min)
            .min(now + PROGRESS_STEP);
        if let Err(e) = sim.step_until(stop) {
            return Err(RunError::Sim {
                at_us: sim.elapsed().as_micros() as u64,
                message: e.to_string(),
            });
        }
        if let Some(p) = &options.progress {
            (p.0)(sim.elapsed(), spec.duration);
        }
    }
    let sim_time_us = sim.elapsed().as_micros() as u64;
    let handle = lock(&server_slot).clone().ok_or_else(|| {
        RunError::ServerStart(format!(
            "the server is not running at the end of the run (at {:.1} s); a `crash` of the server needs a later `restart`",
            sim_time_us as f64 / 1e6
        ))
    })?;
    let mut outcome = outcome(spec, sim_time_us, &handle, &slots);
    // What each host's TCP counted (netstat's view), and the agents' hosts
    // (every site) summed: a connect storm's SYN retries show there.
    let mut agents = HostNet::default();
    for k in lock(&kernels).iter() {
        let st = k.stats();
        let net = HostNet {
            listen_overflows: st.listen_overflows,
            retransmits: st.retransmits,
            syn_retransmits: st.syn_retransmits,
            resets_sent: st.resets_sent,
            cpu_busy_ms: st.cpu_busy.as_millis() as u64,
            cpu_lag_max_ms: st.cpu_lag_max.as_millis() as u64,
        };
        if k.name().starts_with(SITE_HOST_PREFIX) {
            agents.listen_overflows += net.listen_overflows;
            agents.retransmits += net.retransmits;
            agents.syn_retransmits += net.syn_retransmits;
            agents.resets_sent += net.resets_sent;
        }
        outcome.network.hosts.insert(k.name().to_string(), net);
    }
    outcome.network.hosts.insert("agents".into(), agents);
    // How the world ran: what it cost, and whether any host ran late (a
    // timer that did not announce itself; must stay 0).
    let w = sim.stats();
    outcome.network.world = WorldStats {
        instants: w.instants,
        host_runs: w.host_runs,
        datagrams: w.datagrams,
        datagrams_lost: w.datagrams_lost,
        late_datagrams: w.late_datagrams,
        late_wakes: w.late_wakes,
    };
    let pcap = capture.map(|c| match c.finish_file() {
        Some(file) => Pcap::File(file),
        None => Pcap::Bytes(c.take_pcapng()),
    });
    let secrets = observer.key_log_text();
    drop(sim);
    let (frames, events) = observer.take();
    let mut output = finish(spec, outcome, frames, events);
    output.pcap = pcap;
    output.key_log = options.key_log.then_some(secrets);
    Ok(output)
}

fn apply(
    kind: &ActionKind,
    server: &ServerSlot,
    installers: &BTreeMap<String, mpsc::UnboundedSender<AgentOrder>>,
    observer: &RunObserver,
    now: Duration,
) {
    use proto::env::Observer;
    let handle = lock(server).clone();
    let (event, agent) = match kind {
        ActionKind::Install {
            agent,
            timeout,
            kill_after_certs,
            delay_enroll,
        } => {
            if let Some(tx) = installers.get(agent) {
                let _ = tx.send(AgentOrder::Install(InstallOrder {
                    timeout: *timeout,
                    kill_after_certs: *kill_after_certs,
                    delay_enroll: *delay_enroll,
                }));
            }
            ("bench.install", agent)
        }
        ActionKind::Restart(Target::Agent(agent)) | ActionKind::Crash(Target::Agent(agent)) => {
            let (order, event) = match kind {
                ActionKind::Restart(_) => (AgentOrder::Restart, "bench.restart"),
                _ => (AgentOrder::Crash, "bench.crash"),
            };
            if let Some(tx) = installers.get(agent) {
                let _ = tx.send(order);
            }
            (event, agent)
        }
        ActionKind::Dispatch { agent, command } => {
            if let Some(h) = &handle {
                h.dispatch(agent, command);
            }
            ("bench.dispatch", agent)
        }
        ActionKind::Evict { agent } => {
            if let Some(h) = &handle {
                h.evict(agent);
            }
            ("bench.evict", agent)
        }
        ActionKind::Wake { agent } => {
            if let Some(h) = &handle {
                h.wake(agent);
            }
            ("bench.wake", agent)
        }
        ActionKind::Upgrade { agent, to, defect } => {
            if let Some(h) = &handle {
                h.upgrade(agent, to, *defect);
            }
            ("bench.upgrade", agent)
        }
        ActionKind::Restart(Target::Server) | ActionKind::Crash(Target::Server) => {
            unreachable!("the driver applies the server's power actions with `power`")
        }
        ActionKind::Revoke { agent } => {
            if let Some(h) = &handle {
                h.revoke(agent);
            }
            ("bench.revoke", agent)
        }
    };
    observer.event(EventRecord {
        t_us: now.as_micros() as u64,
        host: "bench".into(),
        event: event.into(),
        fields: fields! {"agent" => agent, "server_up" => handle.is_some()},
    });
}

// The first time after `now` at which a path's delays change.
fn next_link_change(links: &[LinkRule], now: Duration) -> Option<Duration> {
    links
        .iter()
        .flat_map(|l| [Some(l.from), l.until])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

// Restarts or crashes the server host. Its handle is gone until the host's
// software has started again and published a new one.
fn power(
    sim: &mut World,
    kind: &ActionKind,
    (server, kernel): (&ServerSlot, &Arc<HostStack>),
    disk: &SimDisk,
    observer: &RunObserver,
    now: Duration,
) {
    use proto::env::Observer;
    let was_up = sim.is_host_running(SERVER_HOST);
    lock(server).take();
    let event = match kind {
        ActionKind::Crash(_) => {
            if was_up {
                // Power lost: its sockets die without a FIN or an RST.
                kernel.power_off();
                sim.crash(SERVER_HOST);
            }
            disk.crash();
            "bench.crash"
        }
        _ => {
            sim.bounce(SERVER_HOST);
            "bench.restart"
        }
    };
    observer.event(EventRecord {
        t_us: now.as_micros() as u64,
        host: "bench".into(),
        event: event.into(),
        fields: fields! {"target" => SERVER_HOST, "was_running" => was_up},
    });
}

/// What the bench sets up differently for one agent.
#[derive(Clone, Copy, Debug)]
struct AgentFaults {
    invalid_token: bool,
    bad_checkin_token: bool,
    liveness_port: u16,
}

// An agent's life in its site: wait for the installer, run `up`, then the
// service when the install succeeded.
async fn agent_main(
    env: Env,
    spec: AgentSpec,
    faults: AgentFaults,
    slot: Arc<AgentSlot>,
    install: Arc<Mutex<InstallRx>>,
    server: ServerSlot,
    seed: u64,
) {
    let penv = crate::upgrade::ProcEnv {
        env: env.clone(),
        seed,
        name: spec.name.clone(),
    };
    loop {
        let Some(order) = std::future::poll_fn(|cx| lock(&install).poll_recv(cx)).await else {
            return;
        };
        let order = match order {
            AgentOrder::Install(o) => o,
            AgentOrder::Crash => {
                stop_service(&slot, &env);
                slot.disk.inner().crash();
                env.event("agent.killed", fields! {"by" => "bench crash"});
                continue;
            }
            AgentOrder::Restart => {
                stop_service(&slot, &env);
                let Some(cfg) = lock(&slot.service).clone() else {
                    env.event(
                        "agent.restart_skipped",
                        fields! {"reason" => "not installed"},
                    );
                    continue;
                };
                match crate::upgrade::restart(&penv, &slot.procs, cfg, &slot.status) {
                    Ok(version) => env.event("agent.restarted", fields! {"version" => version}),
                    Err(e) => env.event("agent.restart_failed", fields! {"error" => e}),
                }
                continue;
            }
        };
        // The installer ships the gateway CA; wait for the server to have one.
        let ca_pem = loop {
            if let Some(h) = lock(&server).as_ref() {
                break h.ca_pem();
            }
            proto::time::sleep(Duration::from_millis(100)).await;
        };
        let token = if faults.invalid_token {
            REVOKED_TOKEN
        } else {
            ENROLL_TOKEN
        };
        let mut cfg = AgentConfig::new(&spec.name, SERVER_HOST, token, &ca_pem);
        cfg.delay_enroll = order.delay_enroll;
        cfg.version = spec.version.clone();
        cfg.switches = spec.switches;
        cfg.defect = spec.defect;
        cfg.site = Some(spec.site.clone());
        cfg.liveness_port = faults.liveness_port;
        if faults.bad_checkin_token {
            cfg.agent_token_override = Some(BAD_AGENT_TOKEN.into());
        }
        // A running service (a prior install) keeps running while the
        // installer works; it is replaced only when the new install succeeds.
        if order.kill_after_certs {
            slot.disk.arm(agent::install::AGENT_JSON);
        }
        let mut report = agent::installer::install(&env, &cfg, &slot.status, order.timeout).await;
        if slot.disk.disarm() {
            // What the installer saw: `up` died of SIGKILL.
            report.exit_code = 137;
            report.error = Some("`agent up` was killed after writing its certificates".into());
            env.event("install.up_killed", fields! {"at" => "certs-written"});
        }
        let ok = report.result == agent::installer::InstallResult::Success;
        *lock(&slot.install) = Some(report);
        if ok {
            // Whatever ran (a prior install, versions an upgrade started) is replaced.
            stop_service(&slot, &env);
            *lock(&slot.service) = Some(cfg.clone());
            slot.procs.spawn(&penv, cfg, slot.status.clone(), None);
        }
    }
}

// Stops every process of the agent's service. What the agent reports when
// none runs (its first process's status) is no longer connected.
fn stop_service(slot: &AgentSlot, env: &Env) {
    slot.procs.stop_all(env.now_us());
    let mut st = slot.status.lock();
    st.tunnel_connected = false;
    st.ws_connected = false;
}

fn outcome(
    spec: &RunSpec,
    sim_time_us: u64,
    server: &ServerHandle,
    slots: &BTreeMap<String, Arc<AgentSlot>>,
) -> Outcome {
    let views = server.agents().unwrap_or_default();
    let upgrades = server.upgrades().unwrap_or_default();
    let mut agents = BTreeMap::new();
    for a in &spec.agents {
        let slot = &slots[&a.name];
        let procs = slot.procs.snapshot();
        // What the agent reports is its newest running process's status.
        let st = procs
            .iter()
            .rev()
            .find(|p| p.2)
            .map(|p| p.1.clone())
            .unwrap_or_else(|| slot.status.get());
        let view = st
            .agent_id
            .as_ref()
            .and_then(|id| views.iter().find(|v| &v.record.agent_id == id));
        let install = lock(&slot.install).clone();
        let files = slot.disk.inner().snapshot();
        let referenced: Vec<String> = files
            .get(agent::install::AGENT_JSON)
            .and_then(|j| serde_json::from_slice::<agent::install::AgentFile>(j).ok())
            .map(|f| vec![f.cert_path])
            .unwrap_or_default();
        let certs_after: Vec<String> = files
            .keys()
            .filter(|p| {
                p.starts_with("certs/")
                    || p.starts_with(agent::install::INSTALLS_DIR)
                    || p.as_str() == agent::install::GATEWAY_CA
            })
            .cloned()
            .collect();
        let status = view
            .map(|v| v.status.clone())
            .unwrap_or_else(|| "unknown".into());
        let liveness = *lock(&slot.liveness);
        agents.insert(
            a.name.clone(),
            AgentOutcome {
                agent_id: st.agent_id.clone(),
                site: a.site.clone(),
                version: view
                    .map(|v| v.record.version.clone())
                    .unwrap_or_else(|| a.version.clone()),
                online: status == "online" && st.ws_connected && st.tunnel_connected,
                status,
                install: InstallOutcome {
                    exit_code: install.as_ref().map(|i| i.exit_code),
                    result: install.as_ref().map(|i| wire_name(&i.result)),
                    error: install.as_ref().and_then(|i| i.error.clone()),
                    certs_after,
                    rolled_back: install.as_ref().map(|i| i.rolled_back.clone()),
                    agent_json: files.contains_key(agent::install::AGENT_JSON),
                    client_certs: files.keys().filter(|p| p.ends_with(".crt")).count(),
                    orphans: files
                        .keys()
                        .filter(|p| p.ends_with(".crt") && !referenced.contains(p))
                        .count(),
                    finished_us: install.as_ref().map(|i| i.finished_us),
                },
                enroll: EnrollOutcome {
                    requests: st.enroll_requests,
                    max_per_minute: max_per_minute(&st.enroll_request_times_us),
                    state: st.enroll_state.clone(),
                },
                tunnel: LinkOutcome {
                    connected: st.tunnel_connected,
                    connects: st.tunnel_connects,
                },
                ws: LinkOutcome {
                    connected: st.ws_connected,
                    connects: st.ws_connects,
                },
                commands: AgentCommands {
                    completed: st.commands_completed,
                },
                last_error: st.last_error.clone(),
                fleet_state: st.health.fleet.state.name().to_string(),
                fleet_message: st.health.fleet.message.clone(),
                health: HealthOutcome {
                    coordinator: st.health.coordinator.state.name().to_string(),
                    tunnel: st
                        .health
                        .components
                        .get(agent::health::TUNNEL)
                        .map(|c| c.state.name().to_string()),
                    channel: st
                        .health
                        .components
                        .get(agent::health::CHANNEL)
                        .map(|c| c.state.name().to_string()),
                },
                liveness: LivenessOutcome {
                    failed: liveness.0,
                    degraded: liveness.1,
                },
                checkins: CheckinOutcome {
                    sent: st.checkins,
                    failed: st.checkin_failures,
                },
                wake_attempts: view.and_then(|v| v.wake.as_ref()).map(|w| w.wake_attempts),
                last_provision_error: view
                    .and_then(|v| v.wake.as_ref())
                    .and_then(|w| w.last_provision_error.clone()),
                upgrade: upgrade_outcome(
                    &procs,
                    st.agent_id.as_deref(),
                    &upgrades,
                    &files,
                    sim_time_us,
                ),
                diagnosis: AgentDiagnosis::default(),
            },
        );
    }
    let commands = server
        .commands()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            (
                c.command_id.clone(),
                CommandOutcome {
                    status: wire_name(&c.status),
                    agent: c.agent_name,
                    command: c.command,
                    attempts: c.attempts,
                    exit_code: c.exit_code,
                    output: c.output,
                },
            )
        })
        .collect();
    let tunnels = server.tunnels();
    Outcome {
        scenario: spec.name.clone(),
        seed: spec.seed,
        sim_time_us,
        agents,
        commands,
        server: ServerOutcome {
            registry: RegistryOutcome {
                tunnels: tunnels.len(),
                tunnel_conns: tunnels
                    .into_iter()
                    .map(|(agent_id, conn, role)| TunnelConn {
                        agent_id,
                        conn,
                        role,
                    })
                    .collect(),
            },
            enroll: ServerEnroll {
                requests: server.enroll_requests(),
                max_per_minute: server.enroll_max_per_minute(),
            },
        },
        counts: Counts::default(),
        network: NetworkOutcome::default(),
        digest: None,
    }
}

/// The name a serde enum (kebab-case) has on the wire: `failed-rolled-back`.
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

/// A process counts as heartbeating when its last heartbeat is at most this
/// old at the end of the run: two heartbeat intervals and some slack.
pub const HEARTBEAT_WINDOW_US: u64 = 65_000_000;

// `agents.<name>.upgrade`: the operator's record, the agent's processes and
// its disk.
fn upgrade_outcome(
    procs: &[(String, agent::AgentStatus, bool)],
    agent_id: Option<&str>,
    upgrades: &[server::upgrade::UpgradeRecord],
    files: &BTreeMap<String, Vec<u8>>,
    sim_time_us: u64,
) -> UpgradeOutcome {
    let rec = agent_id.and_then(|id| upgrades.iter().find(|u| u.agent_id == id));
    let running: Vec<String> = procs.iter().filter(|p| p.2).map(|p| p.0.clone()).collect();
    let heartbeating: Vec<String> = procs
        .iter()
        .filter(|p| {
            p.2 && p
                .1
                .last_heartbeat_us
                .is_some_and(|t| t + HEARTBEAT_WINDOW_US >= sim_time_us)
        })
        .map(|p| p.0.clone())
        .collect();
    // The agent's own view: the newest process that took part in an upgrade.
    let agent_phase = procs.iter().rev().find_map(|p| p.1.upgrade_phase.clone());
    let versions_on_disk: Vec<String> = files
        .keys()
        .filter_map(|p| {
            p.strip_prefix(agent::upgrade::driver::VERSIONS_DIR)
                .and_then(|r| r.strip_suffix("/agent.bin"))
                .map(str::to_string)
        })
        .collect();
    let active = files
        .get(agent::upgrade::driver::ACTIVE)
        .map(|b| String::from_utf8_lossy(b).trim().to_string());
    UpgradeOutcome {
        phase: rec.map(|r| r.phase.name().to_string()),
        from_version: rec.map(|r| r.from_version.clone()),
        to_version: rec.map(|r| r.to_version.clone()),
        stops_sent: rec.map_or(0, |r| u64::from(r.stops_sent)),
        reason: rec.and_then(|r| r.reason.clone()),
        history: rec.map(|r| {
            r.history
                .iter()
                .map(|c| PhaseAt {
                    phase: c.phase.name().to_string(),
                    at_us: c.at_us,
                })
                .collect()
        }),
        agent_phase,
        processes: running.len(),
        running_versions: running,
        heartbeating_versions: heartbeating,
        processes_started: procs.len(),
        stops_received: procs.iter().map(|p| p.1.upgrade_stops_received).sum(),
        stops_acted: procs.iter().map(|p| p.1.upgrade_stops_acted).sum(),
        active,
        versions_on_disk,
    }
}

/// The most requests in any 60 s window (times in microseconds, ascending).
fn max_per_minute(times_us: &[u64]) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in times_us.iter().enumerate() {
        while times_us[start] + 60_000_000 <= *t {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

fn finish(
    spec: &RunSpec,
    mut doc: Outcome,
    frames: Vec<FrameRecord>,
    events: Vec<EventRecord>,
) -> RunOutput {
    doc.counts = Counts {
        frames: frames.len(),
        events: events.len(),
        commands_completed: doc
            .commands
            .values()
            .filter(|c| c.status == "completed")
            .count(),
        agents_online: doc.agents.values().filter(|a| a.online).count(),
        last_install_finished_us: doc
            .agents
            .values()
            .filter_map(|a| a.install.finished_us)
            .max(),
    };
    // The hypothesis engine, twice: what the server's log alone tells, and
    // what every observation point tells; truth is what the run injected.
    // Every agent gets its truth, so one the engine did not return scores
    // as a miss.
    for a in &spec.agents {
        if let Some(agent) = doc.agents.get_mut(&a.name) {
            agent.diagnosis.truth = spec.truth(&a.name).iter().map(|h| h.to_string()).collect();
        }
    }
    for view in [View::Server, View::Full] {
        for d in diagnose(&frames, &events, view) {
            if let Some(agent) = doc.agents.get_mut(&d.agent) {
                let slot = match view {
                    View::Server => &mut agent.diagnosis.server,
                    View::Full => &mut agent.diagnosis.full,
                };
                *slot = Some(d.doc());
            }
        }
    }
    // The digest covers the document with its keys sorted (what the
    // `json!`-built document serialized as), without the digest.
    let mut outcome = doc.to_value();
    let mut h = Sha256::new();
    {
        // frames.jsonl and events.jsonl as they are written, hashed as they
        // are serialized (no copy of a log of hundreds of MB).
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut h);
        crate::observe::write_jsonl(&mut w, &frames).expect("records serialize");
        crate::observe::write_jsonl(&mut w, &events).expect("records serialize");
        serde_json::to_writer(&mut w, &outcome).expect("outcome serializes");
        std::io::Write::flush(&mut w).expect("hashing cannot fail");
    }
    let digest = hex::encode(h.finalize());
    doc.digest = Some(digest.clone());
    // The document with its digest: the same as `doc.to_value()` (the keys
    // are sorted), without serializing the whole outcome again.
    if let Value::Object(map) = &mut outcome {
        map.insert("digest".into(), Value::String(digest.clone()));
    }
    debug_assert_eq!(outcome, doc.to_value());
    RunOutput {
        outcome,
        doc,
        frames,
        events,
        digest,
        pcap: None,
        key_log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::max_per_minute;

    #[test]
    fn max_per_minute_is_the_busiest_sixty_second_window() {
        assert_eq!(max_per_minute(&[]), 0);
        assert_eq!(max_per_minute(&[5]), 1);
        let s = 1_000_000;
        // 0 s, 30 s, 59.9 s are one window; 60 s starts a new one without the first.
        assert_eq!(max_per_minute(&[0, 30 * s, 59 * s + 900_000, 60 * s]), 3);
        assert_eq!(max_per_minute(&[0, 61 * s, 62 * s, 63 * s, 200 * s]), 3);
    }
}
