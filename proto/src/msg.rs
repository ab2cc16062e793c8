//! Wire messages: enrollment over HTTPS, the tunnel over QUIC and the
//! command channel over WebSocket. All are JSON.

use serde::{Deserialize, Serialize};

/// HTTPS enrollment port (TCP).
pub const ENROLL_PORT: u16 = 7171;
/// QUIC tunnel port (UDP).
pub const TUNNEL_PORT: u16 = 4433;
/// WebSocket command-channel port (TCP, TLS with client certificates).
pub const WS_PORT: u16 = 8443;
/// Enrollment endpoint.
pub const ENROLL_PATH: &str = "/jet/tunnel/enroll";
/// ALPN of the QUIC tunnel.
pub const TUNNEL_ALPN: &[u8] = b"fleet-tunnel/1";
/// The header that carries the agent token (issued at enrollment) on check-ins.
pub const AGENT_TOKEN_HEADER: &str = "x-agent-token";

/// Path of an agent's fleet check-in: `POST /api/agents/<agent_id>/checkin`
/// on the enrollment listener (HTTPS, TCP 7171), authenticated by the agent
/// token in [`AGENT_TOKEN_HEADER`].
pub fn checkin_path(agent_id: &str) -> String {
    format!("/api/agents/{agent_id}/checkin")
}

/// The agent id of a check-in path written by [`checkin_path`].
pub fn checkin_agent(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/agents/")?
        .strip_suffix("/checkin")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Body of a check-in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckinRequest {
    /// Running version.
    pub agent_version: String,
}

/// 2xx answer to a check-in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckinResponse {
    /// When the server saw it (its clock, microseconds).
    pub server_time_us: u64,
}

/// Body of `POST /jet/tunnel/enroll` (the token travels as a bearer token).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The agent's host name, for the operator.
    pub name: String,
    /// The agent's version.
    pub version: String,
}

/// Where the agent finds the gateway after enrollment (`Tunnel` section of `agent.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunnelInfo {
    /// Gateway host name, also the TLS server name.
    pub host: String,
    /// QUIC (UDP) port.
    pub quic_port: u16,
    /// WebSocket (TCP) port.
    pub ws_port: u16,
    /// Host of the command channel when a reverse proxy fronts it (also its
    /// TLS server name); `None`: the gateway host itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_host: Option<String>,
}

impl TunnelInfo {
    /// The host the command channel connects to.
    pub fn channel_host(&self) -> &str {
        self.ws_host.as_deref().unwrap_or(&self.host)
    }
}

/// 2xx answer to an enrollment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The identity the server bound the certificate to.
    pub agent_id: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Client private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The gateway's CA, PEM.
    pub ca_pem: String,
    /// Where to connect next.
    pub tunnel: TunnelInfo,
    /// The agent's credential for check-ins and the command channel's Auth
    /// (the field's `X-Agent-Token`); `None` from servers that issue none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
}

/// Error body of a non-2xx HTTP answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_token`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// Agent -> server over the WebSocket (Text frames).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AgentMsg {
    /// First message on a connection.
    Auth {
        /// Must match the client certificate.
        agent_id: String,
        /// Running version.
        agent_version: String,
        /// The site (office, NAT) the agent's operator placed it in, for
        /// grouping in the server's logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        site: Option<String>,
        /// The agent token issued at enrollment, when it was issued one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_token: Option<String>,
    },
    /// Periodic liveness; also the reaper's trigger for re-offers.
    Heartbeat {
        /// Per-connection sequence number.
        seq: u64,
        /// Running version.
        agent_version: String,
    },
    /// Sent on receipt of a command, before executing it.
    CommandAck {
        /// Which command.
        command_id: String,
    },
    /// Sent after executing a command.
    CommandResult {
        /// Which command.
        command_id: String,
        /// Process exit code.
        exit_code: i32,
        /// Captured output.
        output: String,
    },
    /// Where the agent's self-upgrade stands (sent on every phase change
    /// and again after each Auth, so a report lost in a reconnect or a
    /// server restart arrives later).
    UpgradeStatus {
        /// The phase: `staging`, `verifying`, `cutover-ready`, `done`, `reverted`.
        phase: String,
        /// The version the upgrade goes to.
        to_version: String,
        /// Why it reverted, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Server -> agent over the WebSocket (Text frames).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMsg {
    /// Authentication accepted.
    AuthAck {
        /// The server's id for this connection.
        conn: String,
    },
    /// Settings pushed after every (re)connect.
    ConfigUpdate {
        /// How often to send Heartbeats.
        heartbeat_interval_ms: u64,
        /// Reconnect when nothing arrived for this long.
        inbound_timeout_ms: u64,
    },
    /// A command to execute.
    Command {
        /// `cmd-0001`, ... in dispatch order.
        command_id: String,
        /// What to run, e.g. `hostname`.
        command: String,
    },
    /// Check in now: the agent answers with an immediate Heartbeat.
    Wake,
    /// Upgrade to this build: download it from
    /// [`crate::build::ARTIFACTS_PATH`]`<sha256>` on the enrollment
    /// listener and verify it against `sha256`.
    Upgrade {
        /// The new version.
        version: String,
        /// Lowercase hex SHA-256 of the build's bytes.
        sha256: String,
    },
    /// The operator saw the new version heartbeat: the old agent, armed in
    /// CutoverReady, stops. Every session of the agent receives it; an agent
    /// not armed ignores it.
    UpgradeStop {
        /// The version the upgrade went to.
        version: String,
    },
}

/// Messages on the tunnel's control stream (newline-delimited JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TunnelMsg {
    /// Client -> gateway, first message.
    Hello {
        /// Must match the client certificate.
        agent_id: String,
        /// `service` or `probe`.
        role: String,
    },
    /// Gateway -> client: registered.
    Welcome {
        /// The gateway's id for this connection.
        conn: String,
    },
    /// Client -> gateway liveness.
    Heartbeat {
        /// Sequence number on this connection.
        seq: u64,
    },
}

impl AgentMsg {
    /// The message's type name, as logged in `msg`.
    pub fn name(&self) -> &'static str {
        match self {
            AgentMsg::Auth { .. } => "Auth",
            AgentMsg::Heartbeat { .. } => "Heartbeat",
            AgentMsg::CommandAck { .. } => "CommandAck",
            AgentMsg::CommandResult { .. } => "CommandResult",
            AgentMsg::UpgradeStatus { .. } => "UpgradeStatus",
        }
    }

    /// The command id the message carries, if any.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            AgentMsg::CommandAck { command_id } | AgentMsg::CommandResult { command_id, .. } => {
                Some(command_id)
            }
            _ => None,
        }
    }
}

impl ServerMsg {
    /// The message's type name, as logged in `msg`.
    pub fn name(&self) -> &'static str {
        match self {
            ServerMsg::AuthAck { .. } => "AuthAck",
            ServerMsg::ConfigUpdate { .. } => "ConfigUpdate",
            ServerMsg::Command { .. } => "Command",
            ServerMsg::Wake => "Wake",
            ServerMsg::Upgrade { .. } => "Upgrade",
            ServerMsg::UpgradeStop { .. } => "UpgradeStop",
        }
    }

    /// The command id the message carries, if any.
    pub fn command_id(&self) -> Option<&str> {
        match self {
            ServerMsg::Command { command_id, .. } => Some(command_id),
            _ => None,
        }
    }
}

/// Best-effort peek at a Text payload's `type` and `command_id`, for logging
/// frames that may not parse (a relay or a broken agent still logs them).
pub fn peek_text(payload: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) => (
            v.get("type").and_then(|t| t.as_str()).map(str::to_string),
            v.get("command_id")
                .and_then(|t| t.as_str())
                .map(str::to_string),
        ),
        Err(_) => (None, None),
    }
}

/// Encodes a Ping sequence number as its payload (8 bytes, big endian).
pub fn ping_payload(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

/// Decodes a Ping/Pong payload written by [`ping_payload`].
pub fn ping_seq(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips_with_its_type_tag() {
        let m = ServerMsg::Command {
            command_id: "cmd-0001".into(),
            command: "hostname".into(),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"type":"Command","command_id":"cmd-0001","command":"hostname"}"#
        );
        assert_eq!(serde_json::from_str::<ServerMsg>(&s).unwrap(), m);
        assert_eq!(
            peek_text(&s),
            (Some("Command".into()), Some("cmd-0001".into()))
        );
    }

    #[test]
    fn checkin_paths_round_trip() {
        assert_eq!(checkin_path("a-1"), "/api/agents/a-1/checkin");
        assert_eq!(checkin_agent("/api/agents/a-1/checkin"), Some("a-1"));
        assert_eq!(checkin_agent("/api/agents//checkin"), None);
        assert_eq!(checkin_agent("/api/agents/a/b/checkin"), None);
        assert_eq!(checkin_agent("/jet/tunnel/enroll"), None);
    }

    #[test]
    fn peek_survives_garbage_and_ping_seq_needs_eight_bytes() {
        assert_eq!(peek_text("{not json"), (None, None));
        assert_eq!(ping_seq(&ping_payload(42)), Some(42));
        assert_eq!(ping_seq(b"short"), None);
    }
}
