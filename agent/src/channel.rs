//! The WebSocket command channel client.
//!
//! Auth -> AuthAck -> ConfigUpdate, then Heartbeats out, Commands in (each
//! acked on receipt, before execution, then answered with its result), Pings
//! answered with Pongs. Nothing inbound for the watchdog's timeout (90 s in
//! the field) means the connection is dead: return and let the service
//! reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proto::env::Env;
use proto::fields;
use proto::frame::{Dir, FrameKind, FrameRecord, Stage};
use proto::msg::{AgentMsg, ServerMsg};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::backoff::Watchdog;
use crate::install::Credentials;
use crate::upgrade::driver::{Input, UpgradeLink};
use crate::{execute, AgentConfig, AgentDefect, StatusCell};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Could not connect or upgrade.
    #[error("command channel connect: {0}")]
    Connect(String),
    /// Nothing arrived for the watchdog's timeout.
    #[error("no inbound traffic for {0} ms")]
    InboundTimeout(u64),
    /// The connection broke or was closed.
    #[error("command channel closed: {0}")]
    Closed(String),
    /// The server refused the agent's Auth (a close with code 1008, policy
    /// violation): a credential problem, retried with growing backoff.
    #[error("command channel Auth refused by the server: {0}")]
    AuthRefused(String),
}

fn tls_event(env: &Env, conn: &str, kind: &str, error: Option<String>) {
    env.observer.frame(FrameRecord {
        kind: Some(kind.into()),
        error: error.map(Into::into),
        ..FrameRecord::new(
            env.log_us(),
            &env.point,
            conn,
            "server",
            Dir::Tx,
            Stage::Event,
            FrameKind::Tls,
        )
    });
}

fn heartbeat_sent(env: &Env, status: &StatusCell) {
    let mut s = status.lock();
    s.heartbeats_sent += 1;
    s.last_heartbeat_us = Some(env.now_us());
}

type Ws = tokio_tungstenite::WebSocketStream<
    proto::ws::KeyedMasks<tokio_rustls::client::TlsStream<proto::env::BoxStream>>,
>;

// TCP, TLS with the client certificate, and the WebSocket upgrade, to the
// command channel's host (a reverse proxy when one fronts the gateway).
async fn connect(env: &Env, creds: &Credentials, conn: &str) -> Result<Ws, ChannelError> {
    let host = creds.file.tunnel.channel_host().to_string();
    let port = creds.file.tunnel.ws_port;
    let tcp = env
        .net
        .connect_tcp(&host, port)
        .await
        .map_err(|e| ChannelError::Connect(format!("TCP {host}:{port}: {e}")))?;
    let tls_cfg = proto::tls::client_config(
        env,
        &creds.ca_pem,
        Some((&creds.cert_pem, &creds.key_pem)),
        &[b"http/1.1"],
    )
    .map_err(|e| ChannelError::Connect(e.to_string()))?;
    let name =
        ServerName::try_from(host.clone()).map_err(|e| ChannelError::Connect(e.to_string()))?;
    let tls = match TlsConnector::from(Arc::new(tls_cfg))
        .connect(name, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tls_event(env, conn, "handshake_failed", Some(e.to_string()));
            return Err(ChannelError::Connect(format!("TLS: {e}")));
        }
    };
    tls_event(env, conn, "handshake_ok", None);
    let mut req = format!("wss://{host}:{port}/agent")
        .into_client_request()
        .map_err(|e| ChannelError::Connect(e.to_string()))?;
    let key = proto::ws::handshake_key(env);
    req.headers_mut().insert(
        "Sec-WebSocket-Key",
        key.parse()
            .map_err(|e: tungstenite::http::header::InvalidHeaderValue| {
                ChannelError::Connect(e.to_string())
            })?,
    );
    // Frame masks from the handshake key, not the OS (a run's capture repeats).
    let tls = proto::ws::KeyedMasks::new(tls, &key);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, tls, Some(proto::ws::config()))
        .await
        .map_err(|e| ChannelError::Connect(format!("WebSocket upgrade: {e}")))?;
    Ok(ws)
}

/// Runs one command-channel session until it ends.
pub async fn run_session(
    env: &Env,
    cfg: &AgentConfig,
    creds: &Credentials,
    status: &StatusCell,
    link: &UpgradeLink,
    mut rejoin: crate::upgrade::signal::Watcher<()>,
) -> Result<(), ChannelError> {
    let conn = env.observer.next_conn_id();
    let peer = "server";
    let bound = Duration::from_millis(cfg.connect_timeout_ms);
    let mut ws = match proto::time::timeout(bound, connect(env, creds, &conn)).await {
        Ok(ws) => ws?,
        Err(_) => {
            let tunnel = &creds.file.tunnel;
            return Err(ChannelError::Connect(format!(
                "{}:{} did not complete TCP, TLS and the WebSocket upgrade within {} ms",
                tunnel.channel_host(),
                tunnel.ws_port,
                cfg.connect_timeout_ms
            )));
        }
    };

    let send =
        |m: AgentMsg| Message::text(serde_json::to_string(&m).expect("agent messages serialize"));
    macro_rules! write {
        ($m:expr) => {{
            let m = $m;
            match ws.send(m.clone()).await {
                Ok(()) => proto::ws::log(env, &conn, peer, Dir::Tx, Stage::Written, &m),
                Err(e) => {
                    proto::ws::log_error(env, &conn, peer, &m, &e.to_string());
                    return Err(ChannelError::Closed(e.to_string()));
                }
            }
        }};
    }
    write!(send(AgentMsg::Auth {
        agent_id: creds.file.agent_id.clone(),
        agent_version: cfg.version.clone(),
        site: cfg.site.clone(),
        agent_token: cfg
            .agent_token_override
            .clone()
            .or_else(|| creds.file.agent_token.clone()),
    }));

    // A rejoin asked before this session began is this session.
    rejoin.borrow_and_update();
    // Where a self-upgrade stands, said again on every new session.
    let mut reports = link.reports();
    let current = reports.borrow_and_update();
    if let Some(report) = current {
        write!(send(report));
    }
    // A build with the never-heartbeats defect runs but stays silent.
    let silent = cfg.build_defect == Some(proto::build::BuildDefect::NeverHeartbeats);

    let mut watchdog = Watchdog::new(cfg.inbound_timeout_ms * 1000, env.now_us());
    let mut hb_period = Duration::from_millis(cfg.heartbeat_interval_ms);
    let mut heartbeats =
        proto::time::interval_at(tokio::time::Instant::now() + hb_period, hb_period);
    let mut hb_seq = 0u64;
    let mut commands_broken = false;
    // The session is up once Auth is written: heartbeats do not wait for the
    // server's AuthAck (as in the field, where heartbeats kept flowing while
    // server Text frames were lost on the way).
    {
        let mut s = status.lock();
        s.ws_connected = true;
        s.ws_connects += 1;
        s.health.components.insert(
            crate::health::CHANNEL.into(),
            crate::health::Status::new(crate::health::State::Healthy, None),
        );
    }
    loop {
        let until_deadline = watchdog.poll_deadline().saturating_sub(env.now_us());
        let inbound = tokio::select! {
            biased;
            m = ws.next() => m,
            _ = heartbeats.tick() => {
                if !silent {
                    hb_seq += 1;
                    write!(send(AgentMsg::Heartbeat { seq: hb_seq, agent_version: cfg.version.clone() }));
                    heartbeat_sent(env, status);
                }
                continue;
            }
            // Before a rejoin: the report of a revert goes out on this session.
            _ = reports.changed() => {
                if let Some(report) = reports.borrow_and_update() {
                    write!(send(report));
                }
                continue;
            }
            _ = crate::upgrade::driver::rejoin_requested(&mut rejoin) => {
                env.event("channel.rejoin", fields! {"conn" => conn, "reason" => "upgrade"});
                let _ = ws.close(None).await;
                return Err(ChannelError::Closed("re-registering after an upgrade".into()));
            }
            _ = proto::time::sleep(Duration::from_micros(until_deadline)) => {
                env.event("channel.inbound_timeout", fields! {"conn" => conn, "timeout_ms" => cfg.inbound_timeout_ms});
                return Err(ChannelError::InboundTimeout(cfg.inbound_timeout_ms));
            }
        };
        let m = match inbound {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(ChannelError::Closed(e.to_string())),
            None => return Err(ChannelError::Closed("end of stream".into())),
        };
        watchdog.handle_inbound(env.now_us());
        proto::ws::log(env, &conn, peer, Dir::Rx, Stage::Read, &m);
        match m {
            Message::Text(t) => match serde_json::from_str::<ServerMsg>(t.as_str()) {
                Ok(ServerMsg::AuthAck { conn: server_conn }) => {
                    env.event(
                        "channel.connected",
                        fields! {"conn" => conn, "server_conn" => server_conn},
                    );
                }
                Ok(ServerMsg::ConfigUpdate {
                    heartbeat_interval_ms,
                    inbound_timeout_ms,
                }) => {
                    watchdog.set_timeout(inbound_timeout_ms * 1000);
                    // The defect of the field's H3: the ConfigUpdate that
                    // follows a *re*connect leaves the command path broken.
                    if cfg.defect == Some(AgentDefect::CommandPathBrokenAfterConfigUpdate)
                        && status.lock().ws_connects > 1
                    {
                        commands_broken = true;
                        env.event("agent.defect_active", fields! {"conn" => conn, "defect" => "command-path-broken-after-config-update"});
                    }
                    let p = Duration::from_millis(heartbeat_interval_ms);
                    if p != hb_period {
                        hb_period = p;
                        heartbeats = proto::time::interval_at(tokio::time::Instant::now() + p, p);
                    }
                }
                Ok(ServerMsg::Wake) if silent => {}
                Ok(ServerMsg::Wake) => {
                    hb_seq += 1;
                    write!(send(AgentMsg::Heartbeat {
                        seq: hb_seq,
                        agent_version: cfg.version.clone()
                    }));
                    heartbeat_sent(env, status);
                }
                Ok(ServerMsg::Upgrade { version, sha256 }) => {
                    link.send(Input::Start { version, sha256 });
                }
                Ok(ServerMsg::UpgradeStop { version }) => {
                    link.send(Input::Stop { version });
                }
                Ok(ServerMsg::Command { .. }) if commands_broken => {}
                Ok(ServerMsg::Command {
                    command_id,
                    command,
                }) => {
                    write!(send(AgentMsg::CommandAck {
                        command_id: command_id.clone()
                    }));
                    let (exit_code, output) = execute(cfg, &command);
                    write!(send(AgentMsg::CommandResult {
                        command_id,
                        exit_code,
                        output
                    }));
                    status.lock().commands_completed += 1;
                }
                Err(e) => env.event(
                    "channel.bad_message",
                    fields! {"conn" => conn, "error" => e.to_string()},
                ),
            },
            Message::Ping(p) => {
                // tungstenite queued the Pong; flush it now and log it as written.
                if let Err(e) = ws.flush().await {
                    return Err(ChannelError::Closed(e.to_string()));
                }
                proto::ws::log(env, &conn, peer, Dir::Tx, Stage::Written, &Message::Pong(p));
            }
            Message::Close(frame) => {
                // Keep polling so tungstenite flushes the Close reply.
                while let Some(Ok(_)) = ws.next().await {}
                if let Some(f) = frame.filter(|f| f.code == CloseCode::Policy) {
                    let reason = f.reason.to_string();
                    env.event(
                        "channel.auth_refused",
                        fields! {"conn" => conn, "reason" => reason},
                    );
                    return Err(ChannelError::AuthRefused(reason));
                }
                return Err(ChannelError::Closed("closed by server".into()));
            }
            _ => {}
        }
    }
}
