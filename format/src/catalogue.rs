//! Every name a scenario file may use, with a one-line meaning each.
//!
//! The parser checks against these lists, the CLI prints them, and
//! `docs/scenarios.md` must mention each entry (a test enforces that). To add
//! a switch, add a line to [`SWITCHES`]; to add a fault kind or an action,
//! add it here and to the matching enum in [`crate::scenario`].

/// One key of a table in a scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The key as written in TOML.
    pub name: &'static str,
    /// Whether the key must be present.
    pub required: bool,
    /// The value used when an optional key is absent, as TOML would write it.
    pub default: Option<&'static str>,
    /// What the key means and what values it takes.
    pub doc: &'static str,
}

/// A named variant (a fault kind or an action) and the keys it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDoc {
    /// The name as written in TOML (`kind = "..."`, `do = "..."`).
    pub name: &'static str,
    /// What it does, in one line.
    pub doc: &'static str,
    /// The keys it takes besides the common ones.
    pub keys: &'static [KeyDoc],
}

const fn req(name: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        name,
        required: true,
        default: None,
        doc,
    }
}

const fn opt(name: &'static str, default: Option<&'static str>, doc: &'static str) -> KeyDoc {
    KeyDoc {
        name,
        required: false,
        default,
        doc,
    }
}

/// The keys at the top level of a scenario file.
pub const TOP_LEVEL_KEYS: &[KeyDoc] = &[
    req(
        "name",
        "the scenario's name, as `simbench run <name>` finds it",
    ),
    req("summary", "one line saying what the scenario shows"),
    req(
        "incident",
        "which field incident it reproduces, e.g. \"command-delivery\"",
    ),
    req(
        "seed",
        "the seed that drives every random choice, a non-negative integer",
    ),
    req(
        "duration",
        "how much simulated time the run covers, e.g. \"20m\"",
    ),
    opt(
        "tick",
        Some("\"10ms\""),
        "the network quantum: how far simulated time moves per step",
    ),
    opt(
        "server",
        None,
        "the `[server]` table: the server's behavior",
    ),
    opt("agent", None, "the `[[agent]]` tables: the fleet"),
    opt(
        "fault",
        None,
        "the `[[fault]]` tables: what goes wrong, and when",
    ),
    opt(
        "action",
        None,
        "the `[[action]]` tables: what the operator does, and when",
    ),
    opt(
        "expect",
        None,
        "the `[[expect]]` tables: what must hold in the outcome",
    ),
];

/// The keys of the `[server]` table.
pub const SERVER_KEYS: &[KeyDoc] = &[
    opt(
        "behavior",
        Some("\"fixed\""),
        "a preset name, or a table of switches (optionally with `preset` as the base)",
    ),
    opt(
        "cpu",
        None,
        "the server software's one CPU: a table of `connection` and `segment` costs; without it the software costs no time",
    ),
];

/// The keys of `[server] cpu`.
pub const CPU_KEYS: &[KeyDoc] = &[
    req(
        "connection",
        "CPU per connection accepted, charged to its first data segment (the TLS handshake), e.g. \"2ms\" or \"400us\"",
    ),
    req(
        "segment",
        "CPU per other data segment received, e.g. \"50us\"",
    ),
];

/// The keys of a `behavior` table (besides the switch names in [`SWITCHES`]).
pub const BEHAVIOR_KEYS: &[KeyDoc] = &[opt(
    "preset",
    Some("\"fixed\""),
    "the preset the listed switches change",
)];

/// The keys of an `[[agent]]` table.
pub const AGENT_KEYS: &[KeyDoc] = &[
    req(
        "name",
        "the agent's name (letters, digits, `-`, `_`); faults, actions and paths use it",
    ),
    opt(
        "count",
        None,
        "make N agents named `<name>-1` .. `<name>-N` instead of one named `<name>`",
    ),
    opt(
        "site",
        Some("the agent's `name`"),
        "the site (one office behind one NAT) it sits in; agents of one site share one network path",
    ),
    opt(
        "behavior",
        Some("\"fixed\""),
        "a preset name, or a table of switches (optionally with `preset` as the base)",
    ),
    opt("version", Some("\"1.0.0\""), "the agent version it starts with"),
];

/// The keys every `[[fault]]` table takes, whatever its kind.
pub const FAULT_COMMON_KEYS: &[KeyDoc] = &[
    req("kind", "which fault, one of the fault kinds"),
    opt("from", Some("\"0s\""), "when the fault starts"),
    opt(
        "until",
        Some("the end of the run"),
        "when the fault stops (must be after `from`)",
    ),
];

const BETWEEN: KeyDoc = req(
    "between",
    "the two ends of the affected path: `\"server\"`, `\"site:<site>\"`, `\"agent:<name>\"` or a bare agent name",
);
const FAULT_AGENT: KeyDoc = req("agent", "the affected agent");

/// The fault kinds and their keys.
pub const FAULT_KINDS: &[KindDoc] = &[
    KindDoc {
        name: "block",
        doc: "a firewall blocks one protocol (and port) on a path",
        keys: &[
            BETWEEN,
            req("proto", "`\"udp\"` or `\"tcp\"`"),
            opt(
                "port",
                Some("every port"),
                "the destination port that is blocked",
            ),
            opt(
                "direction",
                Some("\"both\""),
                "`\"both\"`, `\"a->b\"` (from the first `between` end to the second) or `\"b->a\"`",
            ),
            opt(
                "action",
                Some("\"drop\""),
                "`\"drop\"` (packets vanish) or `\"reject\"` (the sender is told at once)",
            ),
        ],
    },
    KindDoc {
        name: "partition",
        doc: "nothing passes between the two ends, in either direction",
        keys: &[BETWEEN],
    },
    KindDoc {
        name: "half-open",
        doc: "one direction stops and neither side is told; the other keeps working",
        keys: &[
            BETWEEN,
            req(
                "direction",
                "the direction that stops: `\"a->b\"` or `\"b->a\"`",
            ),
            opt(
                "port",
                None,
                "only packets to or from this port (e.g. 8443, the command channel); unset: every packet",
            ),
        ],
    },
    KindDoc {
        name: "drop-frames",
        doc: "a WebSocket-aware middlebox drops frames of one type in one direction",
        keys: &[
            req(
                "between",
                "the path: `\"server\"` and an agent or site end, in either order",
            ),
            req(
                "direction",
                "the direction whose frames are dropped: `\"a->b\"` (from the first `between` end to the second) or `\"b->a\"`; the old `\"server->agent\"` / `\"agent->server\"` still parse, with a note",
            ),
            req(
                "frame",
                "the WebSocket frame type: `\"text\"`, `\"binary\"`, `\"ping\"` or `\"pong\"`",
            ),
        ],
    },
    KindDoc {
        name: "stall-writes",
        doc: "the server's socket writes of one frame type to an agent never complete",
        keys: &[
            FAULT_AGENT,
            req(
                "frame",
                "the WebSocket frame type: `\"text\"`, `\"binary\"`, `\"ping\"` or `\"pong\"`",
            ),
        ],
    },
    KindDoc {
        name: "latency",
        doc: "every packet on the path is delayed",
        keys: &[BETWEEN, req("mean", "the mean one-way delay, a duration")],
    },
    KindDoc {
        name: "jitter",
        doc: "packet delays on the path vary",
        keys: &[
            BETWEEN,
            req("amount", "the largest extra delay, a duration"),
        ],
    },
    KindDoc {
        name: "loss",
        doc: "packets on the path are lost at random",
        keys: &[
            BETWEEN,
            req("rate", "the probability a packet is lost, from 0.0 to 1.0"),
            opt(
                "burst",
                None,
                "mean length of a burst of losses in packets (Gilbert-Elliott); unset: independent losses",
            ),
        ],
    },
    KindDoc {
        name: "drop-payload",
        doc: "a middlebox drops TCP segments that carry data one way; pure ACKs, SYNs and FINs pass",
        keys: &[
            BETWEEN,
            req(
                "direction",
                "the direction whose data is lost: `\"a->b\"` or `\"b->a\"`",
            ),
            opt(
                "port",
                None,
                "only segments to or from this port; unset: every segment",
            ),
        ],
    },
    KindDoc {
        name: "clock-skew",
        doc: "an agent's clock is off by a fixed amount",
        keys: &[
            FAULT_AGENT,
            req(
                "offset",
                "how far its clock is off: a duration, `-` for behind (e.g. \"-2m\")",
            ),
        ],
    },
    KindDoc {
        name: "stale-registry",
        doc: "the server's connection registry keeps a dead sender for the agent",
        keys: &[FAULT_AGENT],
    },
    KindDoc {
        name: "agent-bug",
        doc: "a named defect in the agent's command path",
        keys: &[
            FAULT_AGENT,
            req("bug", "which defect, one of the agent bugs"),
            opt(
                "command",
                Some("every command"),
                "only commands with exactly this text are affected",
            ),
        ],
    },
    KindDoc {
        name: "invalid-token",
        doc: "the agents' enrollment token is refused (HTTP 401)",
        keys: &[
            opt(
                "agent",
                Some("every agent"),
                "only this agent's token is refused",
            ),
            opt(
                "site",
                Some("every site"),
                "only the tokens of this site's agents are refused (not with `agent`)",
            ),
        ],
    },
    KindDoc {
        name: "enroll-errors",
        doc: "the server answers enrollment requests with an HTTP error",
        keys: &[opt("status", Some("503"), "the HTTP status, 400 to 599")],
    },
    KindDoc {
        name: "checkin-errors",
        doc: "the server answers the agents' fleet check-ins (HTTPS) with an HTTP error; the command channel and the tunnel are untouched",
        keys: &[
            opt("status", Some("503"), "the HTTP status, 400 to 599"),
            opt(
                "agent",
                Some("every agent"),
                "only this agent's check-ins fail",
            ),
            opt(
                "site",
                Some("every site"),
                "only the check-ins of this site's agents fail (not with `agent`)",
            ),
        ],
    },
    KindDoc {
        name: "bad-checkin-token",
        doc: "after enrolling, the agent presents a wrong agent token: its check-ins and command-channel Auth are refused",
        keys: &[FAULT_AGENT],
    },
    KindDoc {
        name: "worker-down",
        doc: "the server's reconcile queue worker is not running",
        keys: &[],
    },
];

/// The keys every `[[action]]` table takes, whatever it does.
pub const ACTION_COMMON_KEYS: &[KeyDoc] = &[
    req("at", "when it happens; at most the scenario's `duration`"),
    req("do", "which action, one of the actions"),
];

/// The actions and their keys.
pub const ACTIONS: &[KindDoc] = &[
    KindDoc {
        name: "install",
        doc: "run the installer (`agent up`) for an agent, or for every agent",
        keys: &[
            opt("agent", Some("every agent"), "the agent to install"),
            opt(
                "timeout",
                Some("\"60s\""),
                "the installer gives up on `agent up` after this long",
            ),
            opt(
                "kill-up-after",
                Some("never"),
                "hard-kill `agent up` at this point (see the kill points)",
            ),
            opt(
                "delay-enroll",
                Some("false"),
                "`agent up --delay-enroll`: install only; the service enrolls when it starts, retrying (incident 3)",
            ),
        ],
    },
    KindDoc {
        name: "dispatch",
        doc: "queue a command for an agent; commands are numbered cmd-0001, cmd-0002, ... in dispatch order",
        keys: &[
            req("agent", "the agent that should run it"),
            req("command", "the command text, e.g. \"hostname\""),
        ],
    },
    KindDoc {
        name: "evict",
        doc: "the server closes the agent's connection and drops its registry entry",
        keys: &[req("agent", "the agent to evict")],
    },
    KindDoc {
        name: "wake",
        doc: "the server sends the agent a wake and starts the check-in deadline",
        keys: &[req("agent", "the agent to wake")],
    },
    KindDoc {
        name: "revoke",
        doc: "the server revokes the agent's credential: its sessions are closed, its certificate, check-ins and wakes refused",
        keys: &[req("agent", "the agent to revoke")],
    },
    KindDoc {
        name: "upgrade",
        doc: "the operator upgrades the agent to a new version",
        keys: &[
            req("agent", "the agent to upgrade"),
            req("to", "the new version"),
            opt(
                "defect",
                Some("none"),
                "a defect of the new version, one of the upgrade defects",
            ),
        ],
    },
    KindDoc {
        name: "restart",
        doc: "stop (if running) and start an agent or the server; its disk is kept",
        keys: &[req("agent", "an agent name, or \"server\"")],
    },
    KindDoc {
        name: "crash",
        doc: "kill an agent or the server at once; writes not yet synced are lost and it stays down until a `restart`",
        keys: &[req("agent", "an agent name, or \"server\"")],
    },
];

/// The keys of an `[[expect]]` table besides the operators.
pub const EXPECT_KEYS: &[KeyDoc] = &[req(
    "observe",
    "a path into the outcome document, e.g. \"commands.cmd-0001.status\"",
)];

/// Expectation operators: an `[[expect]]` table has exactly one.
pub const EXPECT_OPERATORS: &[(&str, &str)] = &[
    (
        "equals",
        "the observed value equals this one (numbers compare by value: 1 equals 1.0)",
    ),
    ("not", "the observed value exists and differs from this one"),
    ("at_least", "the observed number is at least this number"),
    ("at_most", "the observed number is at most this number"),
    (
        "contains",
        "the observed string contains this string, or the observed array contains this value \
         (an array here: every one of its values)",
    ),
];

/// Behavior presets.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "legacy",
        "every switch off: the behavior that produced the field incidents",
    ),
    (
        "fixed",
        "every switch on: the fixed behavior the shipped binaries use",
    ),
];

/// Named behavior switches: `legacy` turns each off, `fixed` turns each on.
/// `(agent)` or `(server)` says whose config reads it.
pub const SWITCHES: &[(&str, &str)] = &[
    (
        "up_probe",
        "(agent) `agent up` runs a one-shot QUIC + mTLS probe after enrolling and exits non-zero when it fails",
    ),
    (
        "transactional_enroll_write",
        "(agent) enrollment writes the certificates and `agent.json` as one unit, so a killed `up` leaves no orphans",
    ),
    (
        "registry_generation_check",
        "(server) the tunnel registry unregisters only the connection that registered, so a late close cannot remove a live one",
    ),
    (
        "delayed_enroll_backoff",
        "(agent) delayed enrollment backs off on transient errors and stops for good on a refused token",
    ),
    (
        "liveness_includes_fleet_state",
        "(agent) `/liveness?failon=...` also fails when the fleet (control-plane) connection has failed or degraded",
    ),
    (
        "operator_waits_for_new_heartbeat",
        "(server) the upgrade operator stops the old agent only after it sees a heartbeat from the new version",
    ),
    (
        "upgrade_status_persisted",
        "(server) the upgrade marker and status live in the server's crash-safe store, so a restarted operator resumes an upgrade",
    ),
];

/// The switch names as constants, so code that reads a switch cannot misspell it.
pub mod switch {
    /// See [`super::SWITCHES`].
    pub const UP_PROBE: &str = "up_probe";
    /// See [`super::SWITCHES`].
    pub const TRANSACTIONAL_ENROLL_WRITE: &str = "transactional_enroll_write";
    /// See [`super::SWITCHES`].
    pub const REGISTRY_GENERATION_CHECK: &str = "registry_generation_check";
    /// See [`super::SWITCHES`].
    pub const DELAYED_ENROLL_BACKOFF: &str = "delayed_enroll_backoff";
    /// See [`super::SWITCHES`].
    pub const LIVENESS_INCLUDES_FLEET_STATE: &str = "liveness_includes_fleet_state";
    /// See [`super::SWITCHES`].
    pub const OPERATOR_WAITS_FOR_NEW_HEARTBEAT: &str = "operator_waits_for_new_heartbeat";
    /// See [`super::SWITCHES`].
    pub const UPGRADE_STATUS_PERSISTED: &str = "upgrade_status_persisted";
}

/// WebSocket frame types a fault can select.
pub const FRAME_TYPES: &[(&str, &str)] = &[
    (
        "text",
        "Text frames: commands, acks, results, config updates",
    ),
    ("binary", "Binary frames"),
    ("ping", "WebSocket Pings"),
    ("pong", "WebSocket Pongs"),
];

/// Named defects of the agent's command path (`agent-bug` faults).
pub const AGENT_BUGS: &[(&str, &str)] = &[
    (
        "command-path-broken-after-config-update",
        "after a reconnect's ConfigUpdate the agent reads Text frames but never handles commands (H3)",
    ),
    (
        "unparsable-command",
        "the server builds the command named by `command` so that the agent cannot parse it (H7)",
    ),
];

/// Points at which an `install` action hard-kills `agent up`.
pub const KILL_POINTS: &[(&str, &str)] = &[(
    "certs-written",
    "after the certificate files are written, before `agent.json` is",
)];

/// Named defects of a new agent version (`upgrade` actions).
pub const UPGRADE_DEFECTS: &[(&str, &str)] = &[
    (
        "corrupt",
        "the downloaded bytes fail their SHA-256 check while staging",
    ),
    ("fails-self-test", "the new build's `--self-test` fails"),
    (
        "never-heartbeats",
        "the new version starts but never sends a heartbeat",
    ),
    ("crashes-on-start", "the new version crashes as it starts"),
];

/// Outcome paths an `[[expect]]` may observe. `<name>` is a declared agent
/// (after `count` expansion); `<id>` is a command id, `cmd-0001` for the
/// first dispatched command.
pub const OBSERVE_PATHS: &[(&str, &str)] = &[
    ("digest", "the run's SHA-256 digest (hex) over frame log, event log and outcome"),
    ("seed", "the seed the run used"),
    ("sim_time_us", "simulated time at the end of the run, in microseconds"),
    ("agents.<name>.online", "whether the agent is connected at the end (boolean)"),
    (
        "agents.<name>.status",
        "the agent's status as the server sees it: \"online\", \"offline\", \"provisioning\", ...",
    ),
    ("agents.<name>.version", "the agent version the server last saw"),
    ("agents.<name>.enroll.requests", "how many enrollment requests the agent sent"),
    (
        "agents.<name>.enroll.max_per_minute",
        "the most enrollment requests in any one minute (a retry storm shows here)",
    ),
    (
        "agents.<name>.enroll.state",
        "the agent's enrollment state at the end, e.g. \"enrolled\", \"retrying\", \"failed-permanent\"",
    ),
    ("agents.<name>.install.exit_code", "the exit code of `agent up` under the installer"),
    (
        "agents.<name>.install.result",
        "the installer's result: \"success\", \"failed-rolled-back\" or \"failed\"",
    ),
    (
        "agents.<name>.install.certs_after",
        "the certificate files on the agent's disk after the installer finished (array of paths)",
    ),
    (
        "agents.<name>.install.error",
        "the error `agent up` reported (a string, or null on success)",
    ),
    (
        "agents.<name>.install.rolled_back",
        "the files the installer's rollback removed or restored (array of paths)",
    ),
    (
        "agents.<name>.install.client_certs",
        "how many client certificates (`*.crt`) are on the agent's disk after the installer finished",
    ),
    (
        "agents.<name>.install.orphans",
        "how many client certificates on the agent's disk `agent.json` does not name (left by an interrupted `up`)",
    ),
    (
        "agents.<name>.install.agent_json",
        "whether `agent.json` is on the agent's disk after the installer finished",
    ),
    (
        "agents.<name>.install.finished_us",
        "simulated time at which the installer finished, in microseconds",
    ),
    ("agents.<name>.wake_attempts", "how many wakes the server sent since the last heartbeat"),
    (
        "agents.<name>.last_provision_error",
        "the server's last provisioning error for the agent (a string, or null: none, or it checked in since)",
    ),
    (
        "agents.<name>.liveness.failed",
        "HTTP status of the agent's `/liveness?failon=failed` as the bench's monitor probed it 2 s before the end (integer, or null: unreachable)",
    ),
    (
        "agents.<name>.liveness.degraded",
        "HTTP status of the agent's `/liveness?failon=degraded` as the bench's monitor probed it 2 s before the end (integer, or null: unreachable)",
    ),
    (
        "agents.<name>.fleet_state",
        "the agent's fleet (check-in) state at the end: \"starting\", \"healthy\", \"degraded\" or \"failed\"",
    ),
    (
        "agents.<name>.health.coordinator",
        "the agent service's own (coordinator) state at the end: \"starting\", \"healthy\", \"degraded\" or \"failed\"",
    ),
    (
        "agents.<name>.health.tunnel",
        "the tunnel component's state at the end (as `health.coordinator`; null before the service ran)",
    ),
    (
        "agents.<name>.health.channel",
        "the command-channel component's state at the end (as `health.coordinator`; null before the service ran)",
    ),
    (
        "agents.<name>.checkins.sent",
        "how many fleet check-ins the agent sent",
    ),
    (
        "agents.<name>.checkins.failed",
        "how many of the agent's fleet check-ins failed",
    ),
    (
        "agents.<name>.upgrade.phase",
        "the upgrade phase at the end, as the server's device record shows it: \"requested\", \"staging\", \"verifying\", \"cutover-ready\", \"stopping\", \"done\", \"reverted\" (null: never upgraded)",
    ),
    (
        "agents.<name>.upgrade.agent_phase",
        "the upgrade phase as the agent itself last reported it (its newest process that took part), or null",
    ),
    (
        "agents.<name>.upgrade.from_version",
        "the version the agent ran when the operator asked for the upgrade (or null: no upgrade)",
    ),
    (
        "agents.<name>.upgrade.to_version",
        "the version the upgrade went to (or null)",
    ),
    (
        "agents.<name>.upgrade.stops_sent",
        "how many `UpgradeStop`s the operator sent for the agent's upgrade (0 or 1)",
    ),
    (
        "agents.<name>.upgrade.stops_received",
        "how many `UpgradeStop`s the agent's processes received, all versions together (both the old and the new agent receive each one)",
    ),
    (
        "agents.<name>.upgrade.stops_acted",
        "how many `UpgradeStop`s an agent process acted on (only one armed in CutoverReady acts): 1 after a completed upgrade, never 2",
    ),
    (
        "agents.<name>.upgrade.reason",
        "why the agent reverted, as it reported (a string, or null)",
    ),
    (
        "agents.<name>.upgrade.processes",
        "how many agent processes (versions) run at the end",
    ),
    (
        "agents.<name>.upgrade.processes_started",
        "how many agent processes were ever started (the first service, and each new version an upgrade started)",
    ),
    (
        "agents.<name>.upgrade.running_versions",
        "the versions whose agent process runs at the end, in start order (array)",
    ),
    (
        "agents.<name>.upgrade.heartbeating_versions",
        "the running versions that sent a heartbeat in the last 65 s of the run (array)",
    ),
    (
        "agents.<name>.upgrade.active",
        "the active version on the agent's disk (the `active` pointer an upgrade switches), or null: never switched",
    ),
    (
        "agents.<name>.upgrade.versions_on_disk",
        "the versions kept under `versions/` on the agent's disk (array; never deleted)",
    ),
    ("agents.<name>.tunnel.connected", "whether the agent's QUIC tunnel is up at the end"),
    ("agents.<name>.tunnel.connects", "how many tunnel connections the agent's service established"),
    ("agents.<name>.ws.connected", "whether the agent's command channel is up at the end"),
    ("agents.<name>.ws.connects", "how many WebSocket connections the agent opened"),
    ("agents.<name>.last_error", "the agent's last connection error (a string, or null)"),
    ("agents.<name>.commands.completed", "how many commands the agent completed"),
    (
        "agents.<name>.diagnosis.server.row",
        "the outcome-table row (1-5) the server-side log matched",
    ),
    (
        "agents.<name>.diagnosis.server.supported",
        "hypothesis ids supported from the server point alone (array, e.g. [\"H2\", \"H3\"])",
    ),
    (
        "agents.<name>.diagnosis.full.supported",
        "hypothesis ids supported from all observation points (array)",
    ),
    (
        "agents.<name>.diagnosis.server.refuted",
        "hypothesis ids refuted from the server point alone (array, H1..H7 and the named ones of incidents 1, 3, 4 and 5)",
    ),
    (
        "agents.<name>.diagnosis.full.refuted",
        "hypothesis ids refuted from all observation points (array)",
    ),
    (
        "agents.<name>.diagnosis.truth",
        "the hypothesis ids the injected faults make true (array)",
    ),
    (
        "commands.<id>.status",
        "\"acked\", \"completed\", \"undeliverable\", \"timed-out\" or \"pending\"",
    ),
    ("commands.<id>.attempts", "how many times the command was offered to the agent"),
    ("commands.<id>.agent", "the agent the command was dispatched to"),
    ("commands.<id>.exit_code", "the command's exit code as the agent reported it (or null)"),
    ("commands.<id>.output", "the command's output as the agent reported it (or null)"),
    ("server.registry.tunnels", "how many tunnel connections the server's registry holds at the end"),
    ("server.enroll.requests", "how many enrollment requests the server received, whatever it answered"),
    ("server.enroll.max_per_minute", "the most enrollment requests the server received in any 60 s (windows of whole seconds)"),
    ("counts.frames", "how many frame-log records the run wrote"),
    ("counts.events", "how many event-log records the run wrote"),
    ("counts.commands_completed", "how many commands completed in the whole run"),
    ("counts.agents_online", "how many agents are online at the end"),
    ("counts.last_install_finished_us", "simulated time at which the last agent's installer finished, in microseconds (null: none finished); how long a fleet took to come up"),
    ("network.server.listen_overflows", "SYNs the server host's TCP dropped because a listen backlog was full"),
    ("network.server.retransmits", "TCP segments the server host sent again (timeouts and fast retransmits)"),
    ("network.server.resets_sent", "RSTs the server host sent for segments no socket wanted"),
    ("network.server.cpu_busy_ms", "with `[server] cpu`: the CPU time the server's software was charged, in milliseconds (absent without it)"),
    ("network.server.cpu_lag_max_ms", "with `[server] cpu`: the longest a segment or an accept turn waited for the server's CPU, in milliseconds (absent without it)"),
    ("network.agents.retransmits", "TCP segments the agents' hosts (every site together) sent again"),
    ("network.agents.syn_retransmits", "SYNs the agents' hosts sent again (Linux's `TCPSynRetrans`): connects that waited for a full backlog, or a path that drops them"),
    ("network.agents.resets_sent", "RSTs the agents' hosts sent for segments no socket wanted"),
    ("network.server.syn_retransmits", "SYN-ACKs the server host sent again (Linux's `TCPSynRetrans`)"),
    ("network.proxy.listen_overflows", "SYNs the reverse proxy's TCP dropped because its backlog was full"),
    ("network.proxy.retransmits", "TCP segments the reverse proxy's host sent again"),
    ("network.world.instants", "instants of simulated time at which some host had something to do"),
    ("network.world.late_datagrams", "datagrams a host sent at a time the world had passed (a timer that did not announce itself; 0 in every shipped scenario)"),
    ("network.world.late_wakes", "wakes of a host that lagged behind the world (0 in every shipped scenario)"),
];

/// The documentation line of a switch, or `None` for an unknown name.
pub fn switch_doc(name: &str) -> Option<&'static str> {
    SWITCHES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// The catalogue entry of a fault kind, or `None` for an unknown name.
pub fn fault_kind(name: &str) -> Option<&'static KindDoc> {
    FAULT_KINDS.iter().find(|k| k.name == name)
}

/// The catalogue entry of an action, or `None` for an unknown name.
pub fn action(name: &str) -> Option<&'static KindDoc> {
    ACTIONS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_constants_match_the_catalogue() {
        let constants = [
            switch::UP_PROBE,
            switch::TRANSACTIONAL_ENROLL_WRITE,
            switch::REGISTRY_GENERATION_CHECK,
            switch::DELAYED_ENROLL_BACKOFF,
            switch::LIVENESS_INCLUDES_FLEET_STATE,
            switch::OPERATOR_WAITS_FOR_NEW_HEARTBEAT,
            switch::UPGRADE_STATUS_PERSISTED,
        ];
        for c in constants {
            assert!(switch_doc(c).is_some(), "{c}");
        }
    }

    #[test]
    fn names_are_unique() {
        fn unique(names: Vec<&str>) {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "{names:?}");
        }
        unique(SWITCHES.iter().map(|s| s.0).collect());
        unique(FAULT_KINDS.iter().map(|s| s.name).collect());
        unique(ACTIONS.iter().map(|s| s.name).collect());
        unique(OBSERVE_PATHS.iter().map(|s| s.0).collect());
        unique(TOP_LEVEL_KEYS.iter().map(|s| s.name).collect());
        for kind in FAULT_KINDS.iter().chain(ACTIONS) {
            let mut keys: Vec<&str> = kind.keys.iter().map(|k| k.name).collect();
            keys.extend(FAULT_COMMON_KEYS.iter().map(|k| k.name));
            keys.extend(ACTION_COMMON_KEYS.iter().map(|k| k.name));
            unique(keys);
        }
    }
}
