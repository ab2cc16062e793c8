//! Frame-log and event-log records (DESIGN.md, "Observation").
//!
//! One JSON object per line. Field order is fixed by the struct, optional
//! fields are left out when absent, so the same run always prints the same
//! bytes.

use compact_str::CompactString;
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
    pub point: CompactString,
    /// Connection id, unique for the whole run (on a real network, across
    /// the deployment's processes and restarts: `<prefix>-c<n>`).
    pub conn: CompactString,
    /// The other end, by agent name or `server`.
    pub peer: CompactString,
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
    pub msg: Option<CompactString>,
    /// Command id carried by the message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<CompactString>,
    /// Sequence number of a Ping, or of the Ping a Pong answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_seq: Option<u64>,
    /// Kind of a QUIC/TLS event (`handshake_started`, `handshake_ok`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CompactString>,
    /// Error text for `write_error` and failed handshakes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CompactString>,
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
            point: point.into(),
            conn: conn.into(),
            peer: peer.into(),
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

/// Most bytes of one string field a real process writes to its logs:
/// names, request paths, errors and message types come from peers, who
/// must not be able to fill the disk through them (issue 17). A longer
/// value keeps its first bytes and says how many it left out.
pub const MAX_FIELD_BYTES: usize = 256;

/// `s` cut to at most `max` bytes (on a character boundary) and marked
/// with `...(+N bytes)`, or `None` when it fits.
fn cut(s: &str, max: usize) -> Option<String> {
    if s.len() <= max {
        return None;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = s.len() - cut;
    Some(format!("{}...(+{dropped} bytes)", &s[..cut]))
}

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the
/// cut with `...(+N bytes)`.
pub fn cap_str(s: &mut String, max: usize) {
    if let Some(c) = cut(s, max) {
        *s = c;
    }
}

fn cap_compact(s: &mut CompactString) {
    if let Some(c) = cut(s, MAX_FIELD_BYTES) {
        *s = c.into();
    }
}

fn cap_opt(s: &mut Option<CompactString>) {
    if let Some(s) = s {
        cap_compact(s);
    }
}

/// Most entries of one array or object in an event's fields.
pub const MAX_FIELD_ITEMS: usize = 32;

/// Caps every string in a JSON value (keys too), at any depth, and keeps at
/// most [`MAX_FIELD_ITEMS`] entries of an array or object.
fn cap_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => cap_str(s, MAX_FIELD_BYTES),
        serde_json::Value::Array(a) => {
            a.truncate(MAX_FIELD_ITEMS);
            a.iter_mut().for_each(cap_value);
        }
        serde_json::Value::Object(m) => cap_map(m),
        _ => {}
    }
}

fn cap_map(m: &mut serde_json::Map<String, serde_json::Value>) {
    if m.len() > MAX_FIELD_ITEMS || m.keys().any(|k| k.len() > MAX_FIELD_BYTES) {
        let old = std::mem::take(m);
        for (mut k, v) in old.into_iter().take(MAX_FIELD_ITEMS) {
            cap_str(&mut k, MAX_FIELD_BYTES);
            m.insert(k, v);
        }
    }
    m.values_mut().for_each(cap_value);
}

impl FrameRecord {
    /// The record with every string field capped at [`MAX_FIELD_BYTES`].
    pub fn capped(mut self) -> Self {
        for s in [&mut self.point, &mut self.conn, &mut self.peer] {
            cap_compact(s);
        }
        for s in [
            &mut self.msg,
            &mut self.command_id,
            &mut self.kind,
            &mut self.error,
        ] {
            cap_opt(s);
        }
        self
    }
}

impl EventRecord {
    /// The record with its host, name and every string in its fields capped
    /// at [`MAX_FIELD_BYTES`].
    pub fn capped(mut self) -> Self {
        cap_str(&mut self.host, MAX_FIELD_BYTES);
        cap_str(&mut self.event, MAX_FIELD_BYTES);
        cap_map(&mut self.fields);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_records_keep_short_fields_and_cut_long_ones() {
        let long = "é".repeat(10_000); // 20,000 bytes, 2-byte characters
        let mut f = FrameRecord::new(
            1,
            "server",
            "c1",
            &long,
            Dir::Rx,
            Stage::Read,
            FrameKind::Text,
        );
        f.msg = Some("Heartbeat".into());
        f.error = Some(long.clone().into());
        let f = f.capped();
        assert_eq!(f.conn, "c1");
        assert_eq!(f.msg.as_deref(), Some("Heartbeat"));
        for s in [&f.peer, f.error.as_ref().unwrap()] {
            assert!(s.len() <= MAX_FIELD_BYTES + 20, "{}", s.len());
            assert!(s.ends_with(&format!("...(+{} bytes)", 20_000 - 256)), "{s}");
        }
        let e = EventRecord {
            t_us: 1,
            host: "server".into(),
            event: "enroll.rejected".into(),
            fields: serde_json::json!({"name": long, "status": 401, "list": vec!["x".repeat(300); 1000]})
                .as_object()
                .unwrap()
                .clone(),
        }
        .capped();
        let line = serde_json::to_string(&e).unwrap();
        assert!(line.len() < 12_000, "{}", line.len());
        assert_eq!(e.fields["status"], 401);
        assert_eq!(e.fields["list"].as_array().unwrap().len(), MAX_FIELD_ITEMS);
        assert!(e.fields["name"].as_str().unwrap().starts_with("éé"));
    }
}
