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
            msg: self.msg.as_deref().map(Into::into),
            command_id: self.command_id.as_deref().map(Into::into),
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
        r.error = Some(error.into());
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

/// The client's WebSocket frames with masking keys drawn from the
/// connection's `Sec-WebSocket-Key` instead of the OS.
///
/// tungstenite masks every client frame with a key from `rand`'s thread
/// generator (RFC 6455 5.3), which a simulation cannot seed, so the
/// ciphertext of two runs of one seed would differ. This stream sits
/// between tungstenite and TLS and rewrites each outgoing frame: the header
/// gets the next key of a ChaCha20 stream seeded from the handshake key (a
/// fresh draw from the component's random source, [`handshake_key`]), the
/// payload is unmasked with tungstenite's key and masked with that one. The
/// frames mean exactly what tungstenite wrote; only their masks change. The
/// HTTP upgrade request before the first frame passes through untouched.
///
/// On a real host the handshake key comes from the OS, so the masks stay
/// unpredictable to whoever writes the payload, which is what masking is for.
pub struct KeyedMasks<S> {
    inner: S,
    masker: Remasker,
}

impl<S> KeyedMasks<S> {
    /// Wraps the client's stream; `key` is the `Sec-WebSocket-Key` it sends.
    pub fn new(inner: S, key: &str) -> Self {
        KeyedMasks {
            inner,
            masker: Remasker::new(key),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for KeyedMasks<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for KeyedMasks<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        // Rewrite on a copy of the state: the inner stream may take only
        // part of the buffer, and the rest comes again in the next call.
        let mut ahead = this.masker.clone();
        let out = ahead.rewrite(buf);
        let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, &out);
        if let std::task::Poll::Ready(Ok(n)) = poll {
            if n == buf.len() {
                this.masker = ahead;
            } else {
                this.masker.rewrite(&buf[..n.min(buf.len())]);
            }
        }
        poll
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the rewriter is in the client's byte stream.
#[derive(Clone, Debug)]
enum Part {
    /// The HTTP upgrade request; the last four bytes seen, to find its end.
    Http([u8; 4]),
    /// A frame header: its bytes so far and, once known, its length.
    Header { at: usize, len: usize, ext: [u8; 8] },
    /// A frame payload: bytes left, position, tungstenite's key, ours.
    Payload {
        left: u64,
        at: usize,
        old: [u8; 4],
        new: [u8; 4],
    },
}

/// The byte-level rewriting of [`KeyedMasks`], one byte out for each in.
#[derive(Clone)]
pub struct Remasker {
    part: Part,
    masks: rand_chacha::ChaCha20Rng,
    // The header being rewritten: its second byte, and the keys.
    second: u8,
    old: [u8; 4],
    new: [u8; 4],
}

impl std::fmt::Debug for Remasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remasker")
            .field("part", &self.part)
            .finish_non_exhaustive()
    }
}

impl Remasker {
    /// A rewriter for the client stream that sends `key` in its upgrade.
    pub fn new(key: &str) -> Self {
        use rand_core::SeedableRng;
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"websocket masks\0");
        h.update(key.as_bytes());
        Remasker {
            part: Part::Http([0; 4]),
            masks: rand_chacha::ChaCha20Rng::from_seed(h.finalize().into()),
            second: 0,
            old: [0; 4],
            new: [0; 4],
        }
    }

    /// The bytes to send for `buf`, the next bytes the client wrote.
    pub fn rewrite(&mut self, buf: &[u8]) -> Vec<u8> {
        buf.iter().map(|&b| self.byte(b)).collect()
    }

    fn byte(&mut self, b: u8) -> u8 {
        use rand_core::RngCore;
        match &mut self.part {
            Part::Http(last) => {
                last.copy_within(1.., 0);
                last[3] = b;
                if *last == *b"\r\n\r\n" {
                    self.part = Part::Header {
                        at: 0,
                        len: 2,
                        ext: [0; 8],
                    };
                }
                b
            }
            Part::Header { at, len, ext } => {
                let i = *at;
                *at += 1;
                let ext_len = match self.second & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let out = if i == 1 {
                    self.second = b;
                    let masked = b & 0x80 != 0;
                    let ext_len = match b & 0x7f {
                        126 => 2,
                        127 => 8,
                        _ => 0,
                    };
                    *len = 2 + ext_len + if masked { 4 } else { 0 };
                    if masked {
                        self.masks.fill_bytes(&mut self.new);
                    } else {
                        self.new = [0; 4];
                    }
                    self.old = [0; 4];
                    b
                } else if i >= 2 && i < 2 + ext_len {
                    ext[i - 2] = b;
                    b
                } else if i >= 2 + ext_len && i < *len {
                    let k = i - 2 - ext_len;
                    self.old[k] = b;
                    self.new[k]
                } else {
                    b
                };
                if *at == *len {
                    let payload = match self.second & 0x7f {
                        126 => u64::from(u16::from_be_bytes([ext[0], ext[1]])),
                        127 => u64::from_be_bytes(*ext),
                        n => u64::from(n),
                    };
                    self.part = if payload == 0 {
                        Part::Header {
                            at: 0,
                            len: 2,
                            ext: [0; 8],
                        }
                    } else {
                        Part::Payload {
                            left: payload,
                            at: 0,
                            old: self.old,
                            new: self.new,
                        }
                    };
                }
                out
            }
            Part::Payload { left, at, old, new } => {
                let out = b ^ old[*at % 4] ^ new[*at % 4];
                *at += 1;
                *left -= 1;
                if *left == 0 {
                    self.part = Part::Header {
                        at: 0,
                        len: 2,
                        ext: [0; 8],
                    };
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::{Role, WebSocket};

    // What a client writes, through a rewriter, into memory.
    struct Wire {
        masker: Remasker,
        out: Vec<u8>,
        input: std::io::Cursor<Vec<u8>>,
    }

    impl std::io::Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl std::io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Take at most 7 bytes at a time: headers and payloads split anywhere.
            let n = buf.len().min(7);
            let out = self.masker.rewrite(&buf[..n]);
            self.out.extend_from_slice(&out);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn messages() -> Vec<Message> {
        vec![
            Message::text(r#"{"type":"heartbeat"}"#),
            Message::Ping(vec![1, 2, 3].into()),
            Message::Binary(vec![0u8; 0].into()),
            Message::text("x".repeat(300)),
            Message::Binary(vec![7u8; 70_000].into()),
            Message::Close(None),
        ]
    }

    fn client_bytes(key: &str) -> Vec<u8> {
        let mut masker = Remasker::new(key);
        // The upgrade request went before the frames.
        let http = masker.rewrite(b"GET /agent HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(http, b"GET /agent HTTP/1.1\r\nHost: x\r\n\r\n");
        let wire = Wire {
            masker,
            out: Vec::new(),
            input: std::io::Cursor::new(Vec::new()),
        };
        let mut ws = WebSocket::from_raw_socket(wire, Role::Client, Some(config()));
        for m in messages() {
            ws.send(m).expect("send");
        }
        ws.get_ref().out.clone()
    }

    #[test]
    fn masks_follow_the_handshake_key_whatever_tungstenite_drew() {
        let a = client_bytes("dGhlIHNhbXBsZSBub25jZQ==");
        let b = client_bytes("dGhlIHNhbXBsZSBub25jZQ==");
        let c = client_bytes("AQIDBAUGBwgJCgsMDQ4PEA==");
        assert_eq!(a, b, "two clients, one key: the same bytes");
        assert_ne!(a, c, "another key, other masks");
        // The first frame is masked with a key that is not zero.
        assert_eq!(a[1] & 0x80, 0x80);
        assert_ne!(&a[2..6], &[0, 0, 0, 0]);
    }

    #[test]
    fn the_rewritten_frames_read_back_as_the_messages_sent() {
        let bytes = client_bytes("dGhlIHNhbXBsZSBub25jZQ==");
        let wire = Wire {
            masker: Remasker::new(""),
            out: Vec::new(),
            input: std::io::Cursor::new(bytes),
        };
        let mut server = WebSocket::from_raw_socket(wire, Role::Server, Some(config()));
        for sent in messages() {
            let got = server.read().expect("a valid masked frame");
            match sent {
                Message::Close(_) => assert!(matches!(got, Message::Close(_))),
                sent => assert_eq!(got, sent),
            }
        }
    }
}
