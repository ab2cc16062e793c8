//! The WebSocket command channel: TLS with client certificates, one session
//! per agent.
//!
//! As in the field: `send_to` (see [`Shared::send_to`]) succeeds when the
//! session's unbounded in-memory channel accepts a message, not when bytes
//! reach the socket; one send task loops over queued Text frames and Pings.
//! The frame log says which is which: `enqueued` at the channel, `written`
//! when the socket write completed, `write_error` when it failed or did not
//! complete within the write timeout (the loop then goes on with the next
//! frame, so a write that hangs for one frame type does not stop the others).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proto::env::{BoxStream, Listener};
use proto::fields;
use proto::frame::{Dir, FrameKind, FrameRecord, Stage};
use proto::msg::{ping_payload, AgentMsg, ServerMsg};
use proto::pki::Issued;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

use crate::{lock, Outbound, ServerError, Session, Shared};

pub(crate) async fn spawn(shared: Arc<Shared>, identity: &Issued) -> Result<(), ServerError> {
    let ca_pem = shared.ca.ca.cert_pem.clone();
    let tls = proto::tls::server_config(
        &shared.env,
        &identity.cert_pem,
        &identity.key_pem,
        Some(&ca_pem),
        &[b"http/1.1"],
    )?;
    let port = shared.cfg.ws_port;
    let bind_err = |source| ServerError::Bind {
        what: "command channel",
        port,
        source,
    };
    let listener = shared.env.net.listen_tcp(port).await.map_err(bind_err)?;
    lock(&shared.ports).ws = listener.local_addr().map_err(bind_err)?.port();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let gate = crate::limits::Gate::new("channel", shared.cfg.conn_limits);
    tokio::spawn(accept_loop(
        shared.clone(),
        listener,
        gate,
        move |shared, stream| serve_tls(shared, stream, acceptor.clone()),
    ));
    if let Some(proxy) = &shared.cfg.channel_proxy {
        let port = proxy.internal_port;
        let bind_err = |source| ServerError::Bind {
            what: "command channel (internal, for the reverse proxy)",
            port,
            source,
        };
        let listener = shared.env.net.listen_tcp(port).await.map_err(bind_err)?;
        lock(&shared.ports).ws_internal = listener.local_addr().map_err(bind_err)?.port();
        // Every connection comes from the proxy: a cap per source would
        // be a cap on the whole fleet.
        let limits = crate::limits::ConnLimits {
            per_source: None,
            ..shared.cfg.conn_limits
        };
        let gate = crate::limits::Gate::new("channel_internal", limits);
        tokio::spawn(accept_loop(shared.clone(), listener, gate, serve_proxied));
    }
    Ok(())
}

async fn accept_loop<F, Fut>(
    shared: Arc<Shared>,
    mut listener: Box<dyn Listener>,
    gate: Arc<crate::limits::Gate>,
    serve: F,
) where
    F: Fn(Arc<Shared>, BoxStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = crate::AcceptBackoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff.reset();
                // Over a cap: closed at once, before any TLS work.
                let Some(permit) = gate.admit(&shared.env, peer.ip()) else {
                    drop(stream);
                    continue;
                };
                let conn = serve(shared.clone(), stream);
                tokio::spawn(async move {
                    let _permit = permit;
                    conn.await
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "command channel accept failed");
                backoff.wait().await;
            }
        }
    }
}

fn tls_event(shared: &Shared, conn: &str, peer: &str, kind: &str, error: Option<String>) {
    shared.env.observer.frame(FrameRecord {
        kind: Some(kind.into()),
        error: error.map(Into::into),
        ..FrameRecord::new(
            shared.env.log_us(),
            &shared.env.point,
            conn,
            peer,
            Dir::Rx,
            Stage::Event,
            FrameKind::Tls,
        )
    });
}

// A connection straight from an agent: TLS with its client certificate.
async fn serve_tls(shared: Arc<Shared>, stream: BoxStream, acceptor: TlsAcceptor) {
    let conn = shared.env.observer.next_conn_id();
    let tls = match proto::time::timeout(crate::HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tls_event(&shared, &conn, "?", "handshake_failed", Some(e.to_string()));
            return;
        }
        Err(_) => {
            tls_event(&shared, &conn, "?", "handshake_timed_out", None);
            return;
        }
    };
    let agent = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| shared.agent_for_cert(c));
    let Some(agent) = agent else {
        tls_event(&shared, &conn, "?", "rejected_unknown_certificate", None);
        return;
    };
    tls_event(&shared, &conn, &agent.name, "handshake_ok", None);
    let upgrade = tokio_tungstenite::accept_async_with_config(tls, Some(proto::ws::config()));
    match proto::time::timeout(crate::HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => session(shared, conn, agent, ws).await,
        Ok(Err(e)) => upgrade_failed(&shared, &conn, &agent.name, &e),
        Err(_) => upgrade_failed(
            &shared,
            &conn,
            &agent.name,
            &tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()),
        ),
    }
}

// A connection from the reverse proxy: plain WebSocket, the agent named by
// the fingerprint of the certificate the proxy verified.
async fn serve_proxied(shared: Arc<Shared>, stream: BoxStream) {
    let conn = shared.env.observer.next_conn_id();
    let mut agent = None;
    // tungstenite's handshake callback fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let check = |req: &Request, resp: Response| {
        let named = req
            .headers()
            .get(crate::CLIENT_CERT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|fp| shared.agent_for_fingerprint(fp));
        match named {
            Some(a) => {
                agent = Some(a);
                Ok(resp)
            }
            None => {
                let mut refusal = ErrorResponse::new(Some(format!(
                    "no enrolled agent for the certificate named in {}",
                    crate::CLIENT_CERT_HEADER
                )));
                *refusal.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
                Err(refusal)
            }
        }
    };
    let upgrade =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(proto::ws::config()));
    let upgraded = match proto::time::timeout(crate::HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(u) => u,
        Err(_) => Err(tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into())),
    };
    match (upgraded, agent) {
        (Ok(ws), Some(agent)) => {
            shared.env.event(
                "channel.proxied",
                fields! {"conn" => conn, "agent" => agent.name},
            );
            session(shared, conn, agent, ws).await
        }
        (Err(e), Some(agent)) => upgrade_failed(&shared, &conn, &agent.name, &e),
        (_, None) => shared.env.event(
            "channel.rejected",
            fields! {"conn" => conn, "reason" => "unknown or missing client certificate header"},
        ),
    }
}

fn upgrade_failed(shared: &Shared, conn: &str, agent: &str, e: &tungstenite::Error) {
    shared.env.event(
        "channel.upgrade_failed",
        fields! {"conn" => conn, "agent" => agent, "error" => e.to_string()},
    );
}

// One authenticated agent's session, whichever way it came in.
async fn session<S>(
    shared: Arc<Shared>,
    conn: String,
    agent: crate::store::AgentRecord,
    ws: tokio_tungstenite::WebSocketStream<S>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = agent.name.clone();
    let (mut sink, mut stream) = ws.split();

    // The first frame must be Auth naming the certificate's agent.
    // `Ok((site, agent token, version))` once authenticated, else why not
    // (`None`: the connection ended before any frame).
    let first = proto::time::timeout(crate::FIRST_MESSAGE_TIMEOUT, stream.next()).await;
    let authed = match first.unwrap_or(None) {
        Some(Ok(m)) => {
            proto::ws::log(&shared.env, &conn, &peer, Dir::Rx, Stage::Read, &m);
            match m {
                Message::Text(t) => match serde_json::from_str::<AgentMsg>(t.as_str()) {
                    Ok(AgentMsg::Auth {
                        agent_id,
                        site,
                        agent_token,
                        agent_version,
                    }) if agent_id == agent.agent_id => Ok((site, agent_token, agent_version)),
                    Ok(AgentMsg::Auth { .. }) => Err(Some(
                        "Auth names another agent than the client certificate; authenticate as the certificate's agent",
                    )),
                    _ => Err(Some("the first frame must be an Auth Text frame")),
                },
                _ => Err(Some("the first frame must be an Auth Text frame")),
            }
        }
        _ => Err(None),
    };
    let (site, token, version) = match authed {
        Ok(a) => a,
        Err(reason) => {
            shared.env.event(
                "channel.auth_failed",
                fields! {"conn" => conn, "agent" => peer, "reason" => reason},
            );
            // The agent is told why: a close with 1008 (policy violation).
            if let Some(reason) = reason {
                let close = Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: reason.into(),
                }));
                if sink.send(close.clone()).await.is_ok() {
                    proto::ws::log(&shared.env, &conn, &peer, Dir::Tx, Stage::Written, &close);
                }
            }
            let _ = sink.close().await;
            return;
        }
    };
    if !Shared::token_ok(&agent, token.as_deref()) {
        // A credential problem the agent must be told about: a close with
        // 1008 (policy violation) and the reason.
        let reason = "invalid agent token";
        shared.env.event(
            "channel.auth_refused",
            fields! {"conn" => conn, "agent" => peer, "reason" => reason},
        );
        shared.refused(&agent.agent_id, reason);
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Policy,
            reason: reason.into(),
        }));
        if sink.send(close.clone()).await.is_ok() {
            proto::ws::log(&shared.env, &conn, &peer, Dir::Tx, Stage::Written, &close);
        }
        let _ = sink.close().await;
        return;
    }

    let (tx, rx) = mpsc::unbounded_channel();
    let stale = shared.stale_registry(&peer);
    let generation = {
        let mut sessions = lock(&shared.sessions);
        match sessions.get(&agent.agent_id) {
            Some(dead) if stale => {
                // The defect: the registry keeps the old (dead) sender.
                shared.env.event(
                    "registry.kept_stale",
                    fields! {"agent" => peer, "stale_conn" => dead.conn, "conn" => conn},
                );
                None
            }
            _ => {
                let (generation, old) =
                    sessions.handle_register(&agent.agent_id, &conn, Session { tx: tx.clone() });
                if let Some(old) = old {
                    shared.env.event(
                        "registry.replaced",
                        fields! {"agent" => peer, "old_conn" => old.conn, "conn" => conn},
                    );
                    // A reconnect of the same agent process (same version)
                    // means the agent gave the old connection up: Pings into
                    // it only fill a dead path. During an upgrade's cutover
                    // the old version's session is alive and keeps its Pings.
                    let old_version = shared.session_version(&agent.agent_id, &old.conn);
                    if old_version.is_none_or(|v| v == version)
                        && old.value.tx.send(Outbound::Replaced).is_ok()
                    {
                        shared.env.event(
                            "channel.pings_stopped",
                            fields! {"agent" => peer, "conn" => old.conn, "replaced_by" => conn},
                        );
                    }
                }
                shared.env.event(
                    "registry.registered",
                    fields! {"agent" => peer, "conn" => conn, "generation" => generation, "site" => site},
                );
                // Heard from: an agent is last seen at its Auth, not only
                // at its first Heartbeat an interval later.
                shared.seen(&agent.agent_id);
                Some(generation)
            }
        }
    };
    if let Some(site) = &site {
        lock(&shared.sites).insert(agent.agent_id.clone(), site.clone());
    }
    // An authenticated session is a check-in.
    shared.checkin(&agent.agent_id);
    // The session's own greeting goes on its own channel, whatever the registry holds.
    for msg in [
        ServerMsg::AuthAck { conn: conn.clone() },
        ServerMsg::ConfigUpdate {
            heartbeat_interval_ms: shared.cfg.heartbeat_interval_ms,
            inbound_timeout_ms: shared.cfg.inbound_timeout_ms,
        },
    ] {
        let json = serde_json::to_string(&msg).expect("server messages serialize");
        shared.enqueue(&tx, &conn, &peer, json);
    }
    shared.upgrade_session_opened(&agent.agent_id, &conn, &version, &tx);
    let writer = tokio::spawn(send_loop(
        shared.clone(),
        conn.clone(),
        peer.clone(),
        sink,
        rx,
    ));

    while let Some(m) = stream.next().await {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                shared.env.event(
                    "channel.read_error",
                    fields! {"conn" => conn, "agent" => peer, "error" => e.to_string()},
                );
                break;
            }
        };
        proto::ws::log(&shared.env, &conn, &peer, Dir::Rx, Stage::Read, &m);
        match m {
            Message::Text(t) => match serde_json::from_str::<AgentMsg>(t.as_str()) {
                Ok(AgentMsg::Heartbeat { agent_version, .. }) => {
                    shared.handle_heartbeat(&agent.agent_id);
                    shared.upgrade_heartbeat(&agent.agent_id, &agent_version);
                }
                Ok(AgentMsg::UpgradeStatus {
                    phase,
                    to_version,
                    reason,
                }) => {
                    shared.upgrade_report(&agent.agent_id, &to_version, &phase, reason.as_deref())
                }
                Ok(AgentMsg::CommandAck { command_id }) => {
                    shared.handle_ack(&agent.agent_id, &command_id)
                }
                Ok(AgentMsg::CommandResult {
                    command_id,
                    exit_code,
                    output,
                }) => shared.handle_result(&agent.agent_id, &command_id, exit_code, &output),
                Ok(AgentMsg::Auth { .. }) => {}
                Err(e) => shared.env.event(
                    "channel.bad_message",
                    fields! {"conn" => conn, "agent" => peer, "error" => e.to_string()},
                ),
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    shared.upgrade_session_closed(&agent.agent_id, &conn);
    // Stop the send task and take its channel back.
    let _ = tx.send(Outbound::Close);
    drop(tx);
    // A writer stuck on a dead socket is not waited for long.
    let abort = writer.abort_handle();
    let rx = match proto::time::timeout(Duration::from_secs(5), writer).await {
        Ok(joined) => joined.ok(),
        Err(_) => {
            abort.abort();
            None
        }
    };
    let unregistered = match generation {
        Some(g) if !stale => {
            let outcome = lock(&shared.sessions).handle_close(&agent.agent_id, g);
            if let crate::registry::Unregistered::Restored { conn: earlier } = &outcome {
                shared.env.event(
                    "registry.restored",
                    fields! {"agent" => peer, "conn" => earlier, "closed_conn" => conn},
                );
            }
            matches!(
                outcome,
                crate::registry::Unregistered::Own | crate::registry::Unregistered::Restored { .. }
            )
        }
        _ => false,
    };
    if stale {
        // The defect: the dead session's sender keeps accepting messages.
        if let Some(rx) = rx {
            lock(&shared.graveyard).push(rx);
        }
    }
    shared.env.event(
        "registry.closed",
        fields! {"agent" => peer, "conn" => conn, "unregistered" => unregistered},
    );
}

async fn send_loop<S>(
    shared: Arc<Shared>,
    conn: String,
    peer: String,
    mut sink: S,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) -> mpsc::UnboundedReceiver<Outbound>
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let period = Duration::from_millis(shared.cfg.ping_interval_ms);
    let write_timeout = Duration::from_millis(shared.cfg.write_timeout_ms);
    let mut pings = proto::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut ping_seq = 0u64;
    let mut pinging = true;
    loop {
        let m = tokio::select! {
            biased;
            out = rx.recv() => match out {
                Some(Outbound::Text(json)) => Message::text(json),
                Some(Outbound::Replaced) => {
                    pinging = false;
                    continue;
                }
                Some(Outbound::Close) | None => {
                    let _ = sink.close().await;
                    return rx;
                }
            },
            _ = pings.tick(), if pinging => {
                ping_seq += 1;
                let m = Message::Ping(ping_payload(ping_seq).into());
                proto::ws::log(&shared.env, &conn, &peer, Dir::Tx, Stage::Enqueued, &m);
                m
            }
        };
        // The injected H1 defect: this frame type's socket writes hang.
        let stalled = proto::ws::FrameInfo::of(&m).is_some_and(|i| {
            shared
                .cfg
                .stall_writes
                .iter()
                .any(|(a, f)| *a == peer && *f == i.frame)
        });
        let write = async {
            if stalled {
                std::future::pending::<()>().await;
            }
            sink.send(m.clone()).await
        };
        match proto::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => proto::ws::log(&shared.env, &conn, &peer, Dir::Tx, Stage::Written, &m),
            Ok(Err(e)) => {
                proto::ws::log_error(&shared.env, &conn, &peer, &m, &e.to_string());
                return rx;
            }
            // Given up on: logged, and the loop goes on with the next frame.
            Err(_) => proto::ws::log_error(
                &shared.env,
                &conn,
                &peer,
                &m,
                &format!(
                    "write did not complete within {} ms",
                    write_timeout.as_millis()
                ),
            ),
        }
    }
}
