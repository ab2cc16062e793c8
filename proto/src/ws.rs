//! WebSocket frame description for the frame log, shared by the agent, the
//! server and path observers.

use tungstenite::Message;

use crate::env::Env;
use crate::frame::{Dir, FrameKind, FrameRecord, Stage};
use crate::msg::{peek_text, ping_seq};

/// What the frame log says about one WebSocket message.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameInfo {
    /// Frame type.
    pub frame: FrameKind,
    /// Payload length in bytes.
    pub len: u64,
    /// Application message type of a Text frame.
    pub msg: Option<String>,
    /// Command id of a Text frame.
    pub command_id: Option<String>,
    /// Sequence number of a Ping/Pong.
    pub ping_seq: Option<u64>,
}

impl FrameInfo {
    /// Describes a message; `None` for tungstenite's internal raw frames.
    pub fn of(m: &Message) -> Option<FrameInfo> {
        let (frame, len, msg, command_id, seq) = match m {
            Message::Text(t) => {
                let (msg, id) = peek_text(t.as_str());
                (FrameKind::Text, t.len(), msg, id, None)
            }
            Message::Binary(b) => (FrameKind::Binary, b.len(), None, None, None),
            Message::Ping(p) => (FrameKind::Ping, p.len(), None, None, ping_seq(p)),
            Message::Pong(p) => (FrameKind::Pong, p.len(), None, None, ping_seq(p)),
            Message::Close(_) => (FrameKind::Close, 0, None, None, None),
            Message::Frame(_) => return None,
        };
        Some(FrameInfo {
            frame,
            len: len as u64,
            msg,
            command_id,
            ping_seq: seq,
        })
    }

    /// The frame-log record of this frame at `env`'s point, now.
    pub fn record(&self, env: &Env, conn: &str, peer: &str, dir: Dir, stage: Stage) -> FrameRecord {
        FrameRecord {
            len: Some(self.len),
            msg: self.msg.clone(),
            command_id: self.command_id.clone(),
            ping_seq: self.ping_seq,
            ..FrameRecord::new(env.log_us(), &env.point, conn, peer, dir, stage, self.frame)
        }
    }
}

/// Logs `m` at `env`'s point.
pub fn log(env: &Env, conn: &str, peer: &str, dir: Dir, stage: Stage, m: &Message) {
    if let Some(info) = FrameInfo::of(m) {
        env.observer.frame(info.record(env, conn, peer, dir, stage));
    }
}

/// Logs a failed write of `m` with its error.
pub fn log_error(env: &Env, conn: &str, peer: &str, m: &Message, error: &str) {
    if let Some(info) = FrameInfo::of(m) {
        let mut r = info.record(env, conn, peer, Dir::Tx, Stage::WriteError);
        r.error = Some(error.to_string());
        env.observer.frame(r);
    }
}

/// A `Sec-WebSocket-Key` from the component's random source, so a simulated
/// handshake is byte-identical across runs.
pub fn handshake_key(env: &Env) -> String {
    let mut k = [0u8; 16];
    env.fill_random(&mut k);
    data_encoding::BASE64.encode(&k)
}

/// Largest WebSocket message a peer may send (a command's output included).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest single WebSocket frame a peer may send.
pub const MAX_FRAME_BYTES: usize = 256 << 10;

/// How much a WebSocket asks of its stream in one read. tungstenite's
/// default, 128 KiB, is allocated for every connection and zero-filled
/// before every read; this protocol's frames are a few hundred bytes (a
/// larger frame still gets room for its whole length), so 4 KiB costs a
/// connection 4 KiB, not 128.
pub const READ_BUFFER_BYTES: usize = 4 << 10;

/// The WebSocket settings of both ends: the limits they apply to what the
/// peer sends (a larger message or frame closes the connection;
/// tungstenite's defaults accept 64 MiB messages of 16 MiB frames) and the
/// read buffer ([`READ_BUFFER_BYTES`]).
pub fn config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
}
