//! The QUIC + mTLS tunnel client. The service and `up`'s probe use the same
//! [`TunnelClient::connect`], so a probe that passes means the service's
//! path works too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::env::Env;
use proto::frame::{Dir, FrameKind, FrameRecord, Stage};
use proto::msg::{TunnelMsg, TUNNEL_ALPN};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use crate::install::Credentials;

/// Why the tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Local socket or configuration problem.
    #[error("tunnel setup: {0}")]
    Setup(String),
    /// The QUIC handshake failed.
    #[error("QUIC handshake: {0}")]
    Handshake(String),
    /// The gateway did not register the connection.
    #[error("tunnel registration: {0}")]
    Register(String),
}

/// An open tunnel: the connection and its control stream.
pub struct Tunnel {
    /// Connection id in the frame log.
    pub conn_id: String,
    /// The QUIC connection.
    pub conn: quinn::Connection,
    send: quinn::SendStream,
    lines: Lines<BufReader<quinn::RecvStream>>,
    heartbeat_seq: u64,
    peer: String,
}

/// A QUIC endpoint for tunnel connections.
pub struct TunnelClient {
    endpoint: quinn::Endpoint,
}

fn quic_event(
    env: &Env,
    conn: &str,
    peer: &str,
    dir: Dir,
    stage: Stage,
    kind: &str,
) -> FrameRecord {
    FrameRecord {
        kind: Some(kind.into()),
        ..FrameRecord::new(
            env.log_us(),
            &env.point,
            conn,
            peer,
            dir,
            stage,
            FrameKind::Quic,
        )
    }
}

impl TunnelClient {
    /// Binds a UDP socket and a client endpoint on the env's network, for
    /// the tunnel at `host` (resolved here: a real network binds the
    /// unspecified address of its family, so a remote server is reachable).
    pub async fn new(env: &Env, host: &str) -> Result<Self, TunnelError> {
        let ip = env
            .net
            .resolve(host)
            .map_err(|e| TunnelError::Setup(format!("resolve {host}: {e}")))?;
        let socket = env
            .net
            .bind_udp_client(ip)
            .await
            .map_err(|e| TunnelError::Setup(format!("bind UDP: {e}")))?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            proto::quic::endpoint_config(env.random_seed()),
            None,
            socket,
            env.net.quic_runtime(),
        )
        .map_err(|e| TunnelError::Setup(e.to_string()))?;
        Ok(TunnelClient { endpoint })
    }

    /// Opens a tunnel connection with this role (`service` or `probe`):
    /// handshake, `Hello`, `Welcome`.
    pub async fn connect(
        &self,
        env: &Env,
        creds: &Credentials,
        role: &str,
    ) -> Result<Tunnel, TunnelError> {
        let host = &creds.file.tunnel.host;
        let ip = env
            .net
            .resolve(host)
            .map_err(|e| TunnelError::Setup(format!("resolve {host}: {e}")))?;
        let addr = SocketAddr::new(ip, creds.file.tunnel.quic_port);
        let tls = proto::tls::client_config(
            env,
            &creds.ca_pem,
            Some((&creds.cert_pem, &creds.key_pem)),
            &[TUNNEL_ALPN],
        )
        .map_err(|e| TunnelError::Setup(e.to_string()))?;
        let mut client_cfg = proto::quic::client_config(Arc::new(tls), env.random_seed())
            .map_err(|e| TunnelError::Setup(e.to_string()))?;
        // Heartbeats come every 30 s, quinn's idle timeout is 30 s: keep the
        // connection alive in between.
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        // The server never opens a stream: give it credit for none.
        transport.max_concurrent_bidi_streams(0u32.into());
        transport.max_concurrent_uni_streams(0u32.into());
        client_cfg.transport_config(Arc::new(transport));
        let conn_id = env.observer.next_conn_id();
        let peer = "server".to_string();
        env.observer.frame(quic_event(
            env,
            &conn_id,
            &peer,
            Dir::Tx,
            Stage::Event,
            "handshake_started",
        ));
        let connecting = self
            .endpoint
            .connect_with(client_cfg, addr, host)
            .map_err(|e| TunnelError::Setup(e.to_string()))?;
        let conn = match connecting.await {
            Ok(c) => c,
            Err(e) => {
                let err = match e {
                    quinn::ConnectionError::TimedOut => "timed out".to_string(),
                    other => other.to_string(),
                };
                let mut r = quic_event(
                    env,
                    &conn_id,
                    &peer,
                    Dir::Rx,
                    Stage::Event,
                    "handshake_failed",
                );
                r.error = Some(err.clone().into());
                env.observer.frame(r);
                return Err(TunnelError::Handshake(err));
            }
        };
        env.observer.frame(quic_event(
            env,
            &conn_id,
            &peer,
            Dir::Rx,
            Stage::Event,
            "handshake_ok",
        ));
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| TunnelError::Register(e.to_string()))?;
        let hello = serde_json::to_string(&TunnelMsg::Hello {
            agent_id: creds.file.agent_id.clone(),
            role: role.into(),
        })
        .expect("tunnel messages serialize");
        send.write_all(format!("{hello}\n").as_bytes())
            .await
            .map_err(|e| TunnelError::Register(e.to_string()))?;
        let mut r = quic_event(env, &conn_id, &peer, Dir::Tx, Stage::Written, "hello");
        r.msg = Some(role.into());
        env.observer.frame(r);
        let mut lines = BufReader::with_capacity(proto::line::READ_BUFFER_BYTES, recv).lines();
        match lines.next_line().await {
            Ok(Some(line))
                if matches!(serde_json::from_str(&line), Ok(TunnelMsg::Welcome { .. })) =>
            {
                env.observer.frame(quic_event(
                    env,
                    &conn_id,
                    &peer,
                    Dir::Rx,
                    Stage::Read,
                    "welcome",
                ));
            }
            other => {
                return Err(TunnelError::Register(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
        }
        Ok(Tunnel {
            conn_id,
            conn,
            send,
            lines,
            heartbeat_seq: 0,
            peer,
        })
    }

    /// Waits until every connection of this endpoint is closed and drained.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

impl Tunnel {
    /// Sends one heartbeat on the control stream.
    pub async fn heartbeat(&mut self, env: &Env) -> Result<(), TunnelError> {
        self.heartbeat_seq += 1;
        let hb = serde_json::to_string(&TunnelMsg::Heartbeat {
            seq: self.heartbeat_seq,
        })
        .expect("tunnel messages serialize");
        self.send
            .write_all(format!("{hb}\n").as_bytes())
            .await
            .map_err(|e| TunnelError::Register(e.to_string()))?;
        let mut r = quic_event(
            env,
            &self.conn_id,
            &self.peer,
            Dir::Tx,
            Stage::Written,
            "heartbeat",
        );
        r.ping_seq = Some(self.heartbeat_seq);
        env.observer.frame(r);
        Ok(())
    }

    /// Resolves when the gateway closes the connection or the stream.
    pub async fn closed(&mut self) -> String {
        tokio::select! {
            biased;
            e = self.conn.closed() => e.to_string(),
            _ = async { while let Ok(Some(_)) = self.lines.next_line().await {} } => "control stream ended".into(),
        }
    }

    /// Closes the connection.
    pub fn close(&self, env: &Env, reason: &str) {
        self.conn.close(0u32.into(), reason.as_bytes());
        env.observer.frame(quic_event(
            env,
            &self.conn_id,
            &self.peer,
            Dir::Tx,
            Stage::Event,
            "closed",
        ));
    }
}
