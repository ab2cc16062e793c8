//! Frame-log and event-log records (DESIGN.md, "Observation").
//!
//! One JSON object per line. Field order is fixed by the struct, optional
//! fields are left out when absent, so the same run always prints the same
//! bytes.

use serde::{Deserialize, Serialize};

/// Direction of a frame relative to the observation point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Sent by this point.
    Tx,
    /// Received by this point.
    Rx,
}

/// How far a frame got at this point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepted by the in-memory send channel.
    Enqueued,
    /// The socket write completed.
    Written,
    /// The socket write failed.
    WriteError,
    /// Read from the socket.
    Read,
    /// Discarded by a path point.
    Dropped,
    /// Relayed by a path point.
    Passed,
    /// A QUIC/TLS event (see `kind`).
    Event,
}

/// Frame type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    /// WebSocket Text frame.
    Text,
    /// WebSocket Binary frame.
    Binary,
    /// WebSocket Ping.
    Ping,
    /// WebSocket Pong.
    Pong,
    /// WebSocket Close.
    Close,
    /// A QUIC connection event or stream message.
    Quic,
    /// A TLS handshake event on a TCP connection.
    Tls,
}

/// One frame event at one observation point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    /// Microseconds: since the run's start in the simulator, since the Unix
    /// epoch on a real network.
    pub t_us: u64,
    /// Observation point: `server`, `agent:<name>`, `path:<name>`.
    pub point: String,
    /// Connection id, unique for the whole run (on a real network, across
    /// the deployment's processes and restarts: `<prefix>-c<n>`).
    pub conn: String,
    /// The other end, by agent name or `server`.
    pub peer: String,
    /// Direction relative to `point`.
    pub dir: Dir,
    /// How far the frame got.
    pub stage: Stage,
    /// Frame type.
    pub frame: FrameKind,
    /// Payload length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// Application message type carried by a Text frame (`Command`, `Heartbeat`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// Command id carried by the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// Sequence number of a Ping, or of the Ping a Pong answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_seq: Option<u64>,
    /// Kind of a QUIC/TLS event (`handshake_started`, `handshake_ok`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Error text for `write_error` and failed handshakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FrameRecord {
    /// A record with the required fields; fill optional ones with struct update.
    pub fn new(
        t_us: u64,
        point: &str,
        conn: &str,
        peer: &str,
        dir: Dir,
        stage: Stage,
        frame: FrameKind,
    ) -> Self {
        FrameRecord {
            t_us,
            point: point.to_string(),
            conn: conn.to_string(),
            peer: peer.to_string(),
            dir,
            stage,
            frame,
            len: None,
            msg: None,
            command_id: None,
            ping_seq: None,
            kind: None,
            error: None,
        }
    }
}

/// One lifecycle event (enrollment, registry change, reconcile step, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Microseconds: since the run's start in the simulator, since the Unix
    /// epoch on a real network.
    pub t_us: u64,
    /// The host or point that logged it.
    pub host: String,
    /// Event name, e.g. `enroll.ok`, `tunnel.registered`.
    pub event: String,
    /// Event-specific fields, in insertion order.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Builds a field map for [`crate::env::Env::event`]: `fields!{"agent_id" => id}`.
#[macro_export]
macro_rules! fields {
    () => { ::serde_json::Map::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut m = ::serde_json::Map::new();
        $( m.insert(($k).to_string(), ::serde_json::json!($v)); )+
        m
    }};
}
