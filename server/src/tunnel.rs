//! The QUIC tunnel gateway on UDP 4433, mutual TLS.
//!
//! A client opens one bidirectional control stream, says `Hello` with its
//! agent id and role (`service` or `probe`), is registered and answered
//! `Welcome`, then sends `Heartbeat`s. When the connection ends the gateway
//! unregisters it (see [`crate::registry`] for the generation check).

use std::sync::Arc;

use proto::fields;
use proto::frame::{Dir, FrameKind, FrameRecord, Stage};
use proto::msg::{TunnelMsg, TUNNEL_ALPN};
use proto::pki::Issued;
use tokio::io::BufReader;

use crate::registry::Unregistered;

/// QUIC application close code of a tunnel whose `Hello` names another
/// agent than its client certificate.
pub const HELLO_MISMATCH: u32 = 2;

/// The QUIC application close code for a tunnel message over
/// [`MAX_LINE_BYTES`] (or not UTF-8).
pub const TOO_LONG: u32 = 3;

/// The longest tunnel message (one JSON line) a peer may send.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
use crate::{lock, ServerError, Shared, TunnelEntry};

pub(crate) async fn spawn(shared: Arc<Shared>, identity: &Issued) -> Result<(), ServerError> {
    let env = &shared.env;
    let ca_pem = shared.ca.ca.cert_pem.clone();
    let tls = proto::tls::server_config(
        env,
        &identity.cert_pem,
        &identity.key_pem,
        Some(&ca_pem),
        &[TUNNEL_ALPN],
    )?;
    let port = shared.cfg.tunnel_port;
    let bind_err = |source| ServerError::Bind {
        what: "tunnel (UDP)",
        port,
        source,
    };
    let mut server_config =
        proto::quic::server_config(Arc::new(tls), env.random_seed(), env.clock.clone())
            .map_err(|e| bind_err(std::io::Error::other(e.to_string())))?;
    server_config.transport_config(Arc::new(transport_config()));
    let socket = env.net.bind_udp(port).await.map_err(bind_err)?;
    let local = socket.local_addr().map_err(bind_err)?;
    lock(&shared.ports).tunnel = local.port();
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        proto::quic::endpoint_config(env.random_seed()),
        Some(server_config),
        socket,
        env.net.quic_runtime(),
    )
    .map_err(bind_err)?;
    tokio::spawn(accept_loop(shared, endpoint));
    Ok(())
}

fn quic_record(shared: &Shared, conn: &str, peer: &str, dir: Dir, kind: &str) -> FrameRecord {
    FrameRecord {
        kind: Some(kind.to_string().into()),
        ..FrameRecord::new(
            shared.env.log_us(),
            &shared.env.point,
            conn,
            peer,
            dir,
            if dir == Dir::Rx {
                Stage::Read
            } else {
                Stage::Written
            },
            FrameKind::Quic,
        )
    }
}

/// The tunnel is one bidirectional stream that the agent opens. The server
/// gives a peer credit for that one and for no unidirectional stream: quinn's
/// default (100 of each, every one able to buffer a full stream window the
/// server would never read) would let a peer make the server hold far more
/// than the protocol needs, and costs ~8 KiB of stream table per connection.
fn transport_config() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    let gate = crate::limits::Gate::new("tunnel", shared.cfg.conn_limits);
    while let Some(incoming) = endpoint.accept().await {
        // Over a cap: refused (CONNECTION_REFUSED) before any TLS work.
        let Some(permit) = gate.admit(&shared.env, incoming.remote_address().ip()) else {
            incoming.refuse();
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn_id = shared.env.observer.next_conn_id();
            match incoming.await {
                Ok(c) => serve(&shared, &conn_id, c).await,
                Err(e) => {
                    let mut r = quic_record(&shared, &conn_id, "?", Dir::Rx, "handshake_failed");
                    r.stage = Stage::Event;
                    r.error = Some(e.to_string().into());
                    shared.env.observer.frame(r);
                }
            }
        });
    }
}

async fn serve(shared: &Shared, conn_id: &str, conn: quinn::Connection) {
    let agent = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().and_then(|c| shared.agent_for_cert(c)));
    let Some(agent) = agent else {
        let mut r = quic_record(
            shared,
            conn_id,
            "?",
            Dir::Rx,
            "rejected_unknown_certificate",
        );
        r.stage = Stage::Event;
        shared.env.observer.frame(r);
        conn.close(1u32.into(), b"unknown client certificate");
        return;
    };
    let peer = agent.name.clone();
    let mut r = quic_record(shared, conn_id, &peer, Dir::Rx, "handshake_ok");
    r.stage = Stage::Event;
    shared.env.observer.frame(r);

    let Ok((mut send, recv)) = conn.accept_bi().await else {
        return;
    };
    let mut lines = proto::line::BoundedLines::new(
        BufReader::with_capacity(proto::line::READ_BUFFER_BYTES, recv),
        MAX_LINE_BYTES,
    );
    let mut generation = None;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(proto::line::LineError::Io(_)) => break,
            Err(e) => {
                // Oversized or not text: the peer is not speaking the
                // protocol; close before it costs more memory.
                shared.env.event(
                    "tunnel.bad_message",
                    fields! {"conn" => conn_id, "error" => e.to_string()},
                );
                conn.close(TOO_LONG.into(), b"message too long or not UTF-8");
                break;
            }
        };
        let msg: TunnelMsg = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                shared.env.event(
                    "tunnel.bad_message",
                    fields! {"conn" => conn_id, "error" => e.to_string()},
                );
                break;
            }
        };
        match msg {
            TunnelMsg::Hello { agent_id, role } => {
                let mut r = quic_record(shared, conn_id, &peer, Dir::Rx, "hello");
                r.msg = Some(role.clone().into());
                shared.env.observer.frame(r);
                if agent_id != agent.agent_id {
                    shared.env.event(
                        "tunnel.identity_mismatch",
                        fields! {"conn" => conn_id, "claimed" => agent_id, "certificate" => agent.agent_id},
                    );
                    // Closed, not left open: the peer learns why at once.
                    conn.close(
                        HELLO_MISMATCH.into(),
                        b"Hello names another agent than the client certificate",
                    );
                    break;
                }
                let (g, old) = lock(&shared.tunnels).handle_register(
                    &agent.agent_id,
                    conn_id,
                    TunnelEntry { role: role.clone() },
                );
                generation = Some(g);
                shared.env.event(
                    "tunnel.registered",
                    fields! {"agent" => peer, "conn" => conn_id, "role" => role, "replaced" => old.map(|o| o.conn)},
                );
                shared.seen(&agent.agent_id);
                let welcome = serde_json::to_string(&TunnelMsg::Welcome {
                    conn: conn_id.to_string(),
                })
                .expect("tunnel messages serialize");
                if send
                    .write_all(format!("{welcome}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
                shared
                    .env
                    .observer
                    .frame(quic_record(shared, conn_id, &peer, Dir::Tx, "welcome"));
            }
            TunnelMsg::Heartbeat { seq } => {
                let mut r = quic_record(shared, conn_id, &peer, Dir::Rx, "heartbeat");
                r.ping_seq = Some(seq);
                shared.env.observer.frame(r);
                shared.seen(&agent.agent_id);
            }
            TunnelMsg::Welcome { .. } => break,
        }
    }
    // The stream ended: wait for the connection to close, then unregister.
    let reason = conn.closed().await;
    let mut r = quic_record(shared, conn_id, &peer, Dir::Rx, "closed");
    r.stage = Stage::Event;
    r.error = Some(reason.to_string().into());
    shared.env.observer.frame(r);
    if let Some(g) = generation {
        let outcome = lock(&shared.tunnels).handle_close(&agent.agent_id, g);
        let (event, other) = match outcome {
            Unregistered::Own => ("tunnel.unregistered", None),
            Unregistered::Restored { conn } => {
                shared.env.event(
                    "tunnel.restored",
                    fields! {"agent" => peer, "conn" => conn, "closed_conn" => conn_id},
                );
                ("tunnel.unregistered", None)
            }
            Unregistered::Other { conn } => ("tunnel.unregistered_other", Some(conn)),
            Unregistered::Kept => ("tunnel.unregister_skipped", None),
        };
        shared.env.event(
            event,
            fields! {"agent" => peer, "conn" => conn_id, "removed_conn" => other},
        );
    }
}
