//! The reverse proxy host: the field's nginx in front of the command channel.
//!
//! Agents connect to the proxy with TLS and their client certificates; the
//! proxy verifies them against the server's CA (with the server's own
//! certificate, as nginx holds it), then speaks plain WebSocket to the
//! server's internal listener, naming the verified certificate in
//! [`server::CLIENT_CERT_HEADER`] (see [`server::ChannelProxy`]). Only a
//! TLS-terminating relay can see WebSocket frames, so this is where the
//! path observes them: every frame in both directions is split out of the
//! byte stream with tungstenite's frame-header codec, logged at the
//! `path:proxy` point as `passed` or `dropped`, and forwarded byte for byte
//! (or not, when a `drop-frames` fault says so).
//!
//! At a path point `dir` is the server's: `tx` is server to agent, `rx` is
//! agent to server.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use format::scenario::{Endpoint, FrameDirection, FrameType};
use proto::env::{BoxStream, Env, Listener};
use proto::fields;
use proto::frame::{Dir, FrameKind, FrameRecord, Stage};
use proto::ws::FrameInfo;
use server::ServerHandle;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::Message;

/// The proxy's host name: where agents connect, and a name in the server's certificate.
pub const PROXY_HOST: &str = "proxy";
/// The proxy's observation point.
pub const PROXY_POINT: &str = "path:proxy";
/// The server's plain-WebSocket listener for the proxy.
pub const INTERNAL_WS_PORT: u16 = 8080;
/// The largest HTTP head (request or response) the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// The largest WebSocket frame payload the proxy relays.
const MAX_FRAME: u64 = 16 * 1024 * 1024;
/// Bytes one read of a pump asks for (as the channel's own ends read).
const READ_CHUNK: usize = proto::ws::READ_BUFFER_BYTES;

/// A `drop-frames` fault, resolved: the path drops frames of one type, one
/// way, for one agent or every agent of a site, for a window of time.
#[derive(Clone, Debug, PartialEq)]
pub struct DropRule {
    /// The agents' end of the path (a site or an agent).
    pub target: Endpoint,
    /// Which way the dropped frames travel.
    pub direction: FrameDirection,
    /// Which frames.
    pub frame: FrameType,
    /// In force from (inclusive).
    pub from: Duration,
    /// In force until (exclusive); `None`: to the end.
    pub until: Option<Duration>,
}

impl DropRule {
    fn drops(
        &self,
        agent: &str,
        site: &str,
        dir: FrameDirection,
        kind: FrameKind,
        now: Duration,
    ) -> bool {
        let target = match &self.target {
            Endpoint::Agent(a) => a == agent,
            Endpoint::Site(s) => s == site,
            Endpoint::Server => false,
        };
        let frame = matches!(
            (self.frame, kind),
            (FrameType::Text, FrameKind::Text)
                | (FrameType::Binary, FrameKind::Binary)
                | (FrameType::Ping, FrameKind::Ping)
                | (FrameType::Pong, FrameKind::Pong)
        );
        target
            && frame
            && self.direction == dir
            && self.from <= now
            && self.until.is_none_or(|u| now < u)
    }
}

/// The proxy of one run.
#[derive(Debug)]
pub struct Proxy {
    env: Env,
    server: Arc<Mutex<Option<ServerHandle>>>,
    upstream: (String, u16),
    rules: Vec<DropRule>,
    sites: BTreeMap<String, String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// Who is on the other end of one relayed connection.
struct Peer {
    conn: String,
    name: String,
    site: String,
}

impl Proxy {
    /// A proxy logging at `env.point`, relaying to `upstream` (the server's
    /// internal listener), applying `rules`; `sites` maps agents to sites.
    pub fn new(
        env: Env,
        server: Arc<Mutex<Option<ServerHandle>>>,
        upstream: (String, u16),
        rules: Vec<DropRule>,
        sites: BTreeMap<String, String>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            env,
            server,
            upstream,
            rules,
            sites,
        })
    }

    /// Serves `port` until the host stops: waits for the server to have a
    /// certificate, then accepts agents.
    pub async fn serve(self: Arc<Self>, port: u16) -> std::io::Result<()> {
        let handle = loop {
            if let Some(h) = lock(&self.server).clone() {
                break h;
            }
            proto::time::sleep(Duration::from_millis(100)).await;
        };
        let (cert_pem, key_pem) = handle.tls_identity();
        let ca_pem = handle.ca_pem();
        // Only the identity is kept: the handle holds the server process's
        // state, its open store among it, which must die with that process
        // when the server restarts (the new one locks the store again).
        drop(handle);
        let tls = proto::tls::server_config(
            &self.env,
            &cert_pem,
            &key_pem,
            Some(&ca_pem),
            &[b"http/1.1"],
        )
        .map_err(std::io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let mut listener: Box<dyn Listener> = self.env.net.listen_tcp(port).await?;
        self.env.event("proxy.started", fields! {"port" => port});
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(self.clone().relay(stream, acceptor.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "proxy accept failed"),
            }
        }
    }

    fn tls_event(&self, conn: &str, peer: &str, kind: &str, error: Option<String>) {
        self.env.observer.frame(FrameRecord {
            kind: Some(kind.into()),
            error: error.map(Into::into),
            ..FrameRecord::new(
                self.env.now_us(),
                &self.env.point,
                conn,
                peer,
                Dir::Rx,
                Stage::Event,
                FrameKind::Tls,
            )
        });
    }

    // One agent connection: TLS, the upgrade with the certificate named,
    // then frames both ways until both sides are done.
    async fn relay(self: Arc<Self>, stream: BoxStream, acceptor: TlsAcceptor) {
        let conn = self.env.observer.next_conn_id();
        let tls = match acceptor.accept(stream).await {
            Ok(t) => t,
            Err(e) => {
                self.tls_event(&conn, "?", "handshake_failed", Some(e.to_string()));
                return;
            }
        };
        // The verifier demands a certificate the CA issued.
        let Some(cert) = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
        else {
            return;
        };
        let fingerprint = proto::pki::fingerprint(&cert);
        let name = lock(&self.server)
            .as_ref()
            .and_then(|h| h.agent_name_for_cert(&cert))
            .unwrap_or_else(|| "?".into());
        self.tls_event(&conn, &name, "handshake_ok", None);
        let peer = Peer {
            site: self.sites.get(&name).cloned().unwrap_or_default(),
            conn,
            name,
        };
        let (host, port) = &self.upstream;
        let upstream = match self.env.net.connect_tcp(host, *port).await {
            Ok(s) => s,
            Err(e) => {
                self.env.event(
                    "proxy.upstream_failed",
                    fields! {"conn" => peer.conn, "agent" => peer.name, "error" => e.to_string()},
                );
                return;
            }
        };
        let (mut agent_r, mut agent_w) = tokio::io::split(tls);
        let (mut server_r, mut server_w) = tokio::io::split(upstream);
        let upgraded = async {
            let (request, agent_rest) = read_head(&mut agent_r).await?;
            server_w
                .write_all(&with_cert_header(&request, &fingerprint))
                .await?;
            let (response, server_rest) = read_head(&mut server_r).await?;
            agent_w.write_all(&response).await?;
            Ok::<_, std::io::Error>((
                response.starts_with(b"HTTP/1.1 101"),
                agent_rest,
                server_rest,
            ))
        };
        let (switched, agent_rest, server_rest) = match upgraded.await {
            Ok(u) => u,
            Err(e) => {
                self.env.event(
                    "proxy.upgrade_failed",
                    fields! {"conn" => peer.conn, "agent" => peer.name, "error" => e.to_string()},
                );
                return;
            }
        };
        if !switched {
            let _ = agent_w.write_all(&server_rest).await;
            let _ = agent_w.shutdown().await;
            return;
        }
        tokio::join!(
            self.pump(
                &peer,
                FrameDirection::AgentToServer,
                agent_r,
                server_w,
                agent_rest
            ),
            self.pump(
                &peer,
                FrameDirection::ServerToAgent,
                server_r,
                agent_w,
                server_rest
            ),
        );
    }

    // Frames one way: split out of the byte stream, logged, forwarded or
    // dropped. When the reading side ends, the writing side is shut down.
    async fn pump<R, W>(
        &self,
        peer: &Peer,
        dir: FrameDirection,
        mut r: R,
        mut w: W,
        mut buf: Vec<u8>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // What one read asks for: the channel's frames are a few hundred
        // bytes (a larger one is read in several), and every connection
        // holds two of these.
        let mut chunk = vec![0u8; READ_CHUNK];
        // The type a continuation frame continues.
        let mut data = FrameKind::Binary;
        loop {
            loop {
                let mut cursor = Cursor::new(&buf[..]);
                let (header, len) = match FrameHeader::parse(&mut cursor) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => return self.protocol_error(peer, dir, &e.to_string(), &mut w).await,
                };
                if len > MAX_FRAME {
                    let why = format!("frame of {len} bytes exceeds the proxy's {MAX_FRAME}");
                    return self.protocol_error(peer, dir, &why, &mut w).await;
                }
                let start = cursor.position() as usize;
                let end = start + len as usize;
                if buf.len() < end {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..end).collect();
                let mut payload = frame[start..].to_vec();
                if let Some(mask) = header.mask {
                    // Client frames are masked (RFC 6455 5.3): XOR with the key.
                    for (i, b) in payload.iter_mut().enumerate() {
                        *b ^= mask[i % 4];
                    }
                }
                let message = message(header.opcode, payload, &mut data);
                let info = FrameInfo::of(&message);
                let now = Duration::from_micros(self.env.now_us());
                let dropped = info.as_ref().is_some_and(|i| {
                    self.rules
                        .iter()
                        .any(|r| r.drops(&peer.name, &peer.site, dir, i.frame, now))
                });
                if let Some(info) = info {
                    let stage = if dropped {
                        Stage::Dropped
                    } else {
                        Stage::Passed
                    };
                    let d = match dir {
                        FrameDirection::ServerToAgent => Dir::Tx,
                        FrameDirection::AgentToServer => Dir::Rx,
                    };
                    self.env
                        .observer
                        .frame(info.record(&self.env, &peer.conn, &peer.name, d, stage));
                }
                if !dropped && w.write_all(&frame).await.is_err() {
                    return;
                }
            }
            if w.flush().await.is_err() {
                return;
            }
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    let _ = w.shutdown().await;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    async fn protocol_error<W: AsyncWrite + Unpin>(
        &self,
        peer: &Peer,
        dir: FrameDirection,
        error: &str,
        w: &mut W,
    ) {
        self.env.event(
            "proxy.protocol_error",
            fields! {"conn" => peer.conn, "agent" => peer.name, "direction" => dir.as_str(), "error" => error},
        );
        let _ = w.shutdown().await;
    }
}

// The message a frame carries, for the frame log.
fn message(opcode: OpCode, payload: Vec<u8>, data: &mut FrameKind) -> Message {
    let kind = match opcode {
        OpCode::Data(Data::Text) => FrameKind::Text,
        OpCode::Data(Data::Continue) => *data,
        OpCode::Data(_) => FrameKind::Binary,
        OpCode::Control(Control::Ping) => return Message::Ping(payload.into()),
        OpCode::Control(Control::Pong) => return Message::Pong(payload.into()),
        OpCode::Control(_) => return Message::Close(None),
    };
    *data = kind;
    match kind {
        FrameKind::Text => Message::text(String::from_utf8_lossy(&payload).into_owned()),
        _ => Message::Binary(payload.into()),
    }
}

// Reads an HTTP head (through the empty line); returns it and whatever
// came after it.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other(format!(
                "HTTP head longer than {MAX_HEAD} bytes"
            )));
        }
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the HTTP head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

// The request head with the verified certificate named, replacing any
// header of that name the client sent.
fn with_cert_header(head: &[u8], fingerprint: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let ours = line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(server::CLIENT_CERT_HEADER));
        if !ours {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "{}: {fingerprint}\r\n\r\n",
        server::CLIENT_CERT_HEADER
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_header_replaces_a_forged_one() {
        let head = b"GET /agent HTTP/1.1\r\nHost: proxy\r\nX-Client-Cert-SHA256: forged\r\nUpgrade: websocket\r\n\r\n";
        let out = String::from_utf8(with_cert_header(head, "abc")).unwrap();
        assert_eq!(
            out,
            "GET /agent HTTP/1.1\r\nHost: proxy\r\nUpgrade: websocket\r\nx-client-cert-sha256: abc\r\n\r\n"
        );
    }

    #[test]
    fn drop_rules_match_target_type_direction_and_window() {
        let rule = DropRule {
            target: Endpoint::Site("pst".into()),
            direction: FrameDirection::ServerToAgent,
            frame: FrameType::Text,
            from: Duration::from_secs(60),
            until: Some(Duration::from_secs(120)),
        };
        let t = Duration::from_secs(90);
        let s2a = FrameDirection::ServerToAgent;
        assert!(rule.drops("pst-1", "pst", s2a, FrameKind::Text, t));
        assert!(!rule.drops("nyc-1", "nyc", s2a, FrameKind::Text, t));
        assert!(!rule.drops("pst-1", "pst", s2a, FrameKind::Ping, t));
        assert!(!rule.drops(
            "pst-1",
            "pst",
            FrameDirection::AgentToServer,
            FrameKind::Text,
            t
        ));
        assert!(!rule.drops(
            "pst-1",
            "pst",
            s2a,
            FrameKind::Text,
            Duration::from_secs(30)
        ));
        assert!(!rule.drops(
            "pst-1",
            "pst",
            s2a,
            FrameKind::Text,
            Duration::from_secs(120)
        ));
        let one = DropRule {
            target: Endpoint::Agent("pst-2".into()),
            ..rule
        };
        assert!(one.drops("pst-2", "pst", s2a, FrameKind::Text, t));
        assert!(!one.drops("pst-1", "pst", s2a, FrameKind::Text, t));
    }

    #[test]
    fn continuation_frames_keep_their_message_type() {
        let mut data = FrameKind::Binary;
        let first = message(OpCode::Data(Data::Text), b"{\"type\":".to_vec(), &mut data);
        assert!(matches!(first, Message::Text(_)));
        let cont = message(OpCode::Data(Data::Continue), b"1}".to_vec(), &mut data);
        assert!(matches!(cont, Message::Text(_)));
        let ping = message(OpCode::Control(Control::Ping), vec![0; 8], &mut data);
        assert!(matches!(ping, Message::Ping(_)));
    }
}
