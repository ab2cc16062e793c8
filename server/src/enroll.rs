//! `POST /jet/tunnel/enroll` over HTTPS on TCP 7171 (hyper on rustls).
//!
//! A valid bearer token gets a fresh `agent_id`, a client certificate issued
//! by the server's CA for it, the CA itself, where the tunnel is and an
//! agent token (the agent's credential for check-ins and the command
//! channel's Auth; the store keeps only its SHA-256).
//!
//! The same listener answers the agents' fleet check-ins,
//! `POST /api/agents/<agent_id>/checkin` with the agent token in
//! `X-Agent-Token`: 200 when the agent is enrolled, not revoked and the
//! token matches; 401 for a wrong token, 403 for a revoked agent, 404 for
//! an unknown one; the `checkin-errors` fault's status while it is in force.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use proto::env::Listener;
use proto::fields;
use proto::msg::{
    checkin_agent, CheckinResponse, EnrollRequest, EnrollResponse, ErrorBody, TunnelInfo,
    AGENT_TOKEN_HEADER, ENROLL_PATH,
};
use proto::pki::{uuid_from_bytes, Issued};
use tokio_rustls::TlsAcceptor;

use crate::store::AgentRecord;
use crate::{lock, ServerError, Shared};

const MAX_BODY: usize = 16 * 1024;

pub(crate) async fn spawn(shared: Arc<Shared>, identity: &Issued) -> Result<(), ServerError> {
    let tls = proto::tls::server_config(
        &shared.env,
        &identity.cert_pem,
        &identity.key_pem,
        None,
        &[b"http/1.1"],
    )?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let port = shared.cfg.enroll_port;
    let listener = shared
        .env
        .net
        .listen_tcp(port)
        .await
        .map_err(|source| ServerError::Bind {
            what: "enrollment",
            port,
            source,
        })?;
    lock(&shared.ports).enroll = listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            what: "enrollment",
            port,
            source,
        })?
        .port();
    tokio::spawn(accept_loop(shared, listener, acceptor));
    Ok(())
}

async fn accept_loop(shared: Arc<Shared>, mut listener: Box<dyn Listener>, acceptor: TlsAcceptor) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "enrollment accept failed");
                continue;
            }
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    shared
                        .env
                        .event("enroll.tls_failed", fields! {"error" => e.to_string()});
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                // hyper's timeouts read the wall clock; keep them off so the
                // simulation stays on simulated time.
                .header_read_timeout(None)
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(body).expect("bodies serialize"),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &ErrorBody {
            code: code.into(),
            message: message.into(),
        },
    )
}

async fn handle(shared: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    if let Some(sha256) = req.uri().path().strip_prefix(proto::build::ARTIFACTS_PATH) {
        return crate::artifacts::serve(shared, sha256);
    }
    if let Some(agent_id) = checkin_agent(req.uri().path()) {
        let agent_id = agent_id.to_string();
        return checkin(shared, &agent_id, req).await;
    }
    if req.uri().path() != ENROLL_PATH {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown path; enroll at POST /jet/tunnel/enroll, check in at POST /api/agents/<agent_id>/checkin",
        );
    }
    if req.method() != hyper::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        );
    }
    shared
        .enroll_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = shared.env.now_us();
    if let Some(o) = shared.cfg.enroll_outages.iter().find(|o| o.covers(now)) {
        shared
            .env
            .event("enroll.unavailable", fields! {"status" => o.status});
        let status = StatusCode::from_u16(o.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error(
            status,
            "unavailable",
            "enrollment is unavailable right now; retry later",
        );
    }
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 7235: the scheme is case-insensitive (`bearer` is `Bearer`).
        .and_then(crate::admin::bearer)
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "enrollment body over 16 KiB",
            )
        }
    };
    let parsed: Result<EnrollRequest, _> = serde_json::from_slice(&body);
    let name = parsed.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let valid_token = token
        .as_deref()
        .is_some_and(|t| shared.cfg.enroll_tokens.iter().any(|ok| ok == t));
    if !valid_token {
        shared
            .env
            .event("enroll.rejected", fields! {"name" => name, "status" => 401});
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the enrollment token is not valid; get a new token from the operator",
        );
    }
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("enrollment body must be JSON {{\"name\",\"version\"}}: {e}"),
            )
        }
    };
    match issue(shared, &req) {
        Ok(resp) => {
            shared.env.event(
                "enroll.accepted",
                fields! {"name" => req.name, "agent_id" => resp.agent_id},
            );
            json(StatusCode::OK, &resp)
        }
        Err(e) => {
            tracing::error!(error = %e, "enrollment failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "enrollment failed on the server; retry later",
            )
        }
    }
}

// A fleet check-in. Successes are not logged (one every 30 s per agent);
// every refusal is, as `checkin.refused`.
async fn checkin(
    shared: &Shared,
    agent_id: &str,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        );
    }
    let token = req
        .headers()
        .get(AGENT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Drain the (small) body so the kept-alive connection stays usable.
    let _ = Limited::new(req.into_body(), MAX_BODY).collect().await;
    let now = shared.env.now_us();
    let refuse = |status: StatusCode, code: &str, message: &str, agent: &str| {
        shared.env.event(
            "checkin.refused",
            fields! {"agent" => agent, "status" => status.as_u16(), "code" => code},
        );
        error(status, code, message)
    };
    let agent = match shared.store.agent(agent_id) {
        Ok(Some(a)) => a,
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "unknown_agent",
                "no agent is enrolled with this id; install the agent again",
                agent_id,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "check-in failed on the server; retry later",
            );
        }
    };
    if let Some(o) = shared
        .cfg
        .checkin_outages
        .iter()
        .find(|o| o.covers(&agent.name, now))
    {
        let status =
            StatusCode::from_u16(o.outage.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return refuse(
            status,
            "unavailable",
            "check-ins are unavailable right now; retry later",
            &agent.name,
        );
    }
    if agent.revoked {
        shared.refused(&agent.agent_id, "credential revoked");
        return refuse(
            StatusCode::FORBIDDEN,
            "revoked",
            "the agent's credential was revoked; re-enroll the agent",
            &agent.name,
        );
    }
    if !Shared::token_ok(&agent, token.as_deref()) {
        shared.refused(&agent.agent_id, "invalid agent token");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_agent_token",
            "the X-Agent-Token is not the one issued to this agent at enrollment; re-enroll the agent",
            &agent.name,
        );
    }
    json(
        StatusCode::OK,
        &CheckinResponse {
            server_time_us: now,
        },
    )
}

fn issue(
    shared: &Shared,
    req: &EnrollRequest,
) -> Result<EnrollResponse, Box<dyn std::error::Error>> {
    let mut id = [0u8; 16];
    shared.env.fill_random(&mut id);
    let agent_id = uuid_from_bytes(id);
    let issued = shared.ca.ca.issue(
        &agent_id,
        &[],
        true,
        shared.env.random_seed(),
        shared.env.clock.system_time(),
    )?;
    let mut token = [0u8; 16];
    shared.env.fill_random(&mut token);
    let agent_token = hex::encode(token);
    shared.store.put_agent(&AgentRecord {
        agent_id: agent_id.clone(),
        name: req.name.clone(),
        version: req.version.clone(),
        cert_fingerprint: issued.fingerprint.clone(),
        enrolled_at_us: shared.env.now_us(),
        last_seen_us: None,
        revoked: false,
        agent_token_sha256: Some(crate::token_digest(&agent_token)),
    })?;
    // Provisioned: wake it and wait for its check-in.
    shared.wake(&agent_id, &req.name, "provisioned");
    let ports = *lock(&shared.ports);
    let (ws_host, ws_port) = match &shared.cfg.channel_proxy {
        Some(p) => (Some(p.public_host.clone()), p.public_port),
        None => (None, ports.ws),
    };
    Ok(EnrollResponse {
        agent_id,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        ca_pem: shared.ca.ca.cert_pem.clone(),
        tunnel: TunnelInfo {
            host: shared.cfg.hostname.clone(),
            quic_port: ports.tunnel,
            ws_port,
            ws_host,
        },
        agent_token: Some(agent_token),
    })
}
