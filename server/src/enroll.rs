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

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
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

/// The most header bytes an enrollment connection may buffer.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What one enrollment connection did: its watchdog drops it when its first
/// request's headers take over [`crate::HEADER_TIMEOUT`], or when it stays
/// idle between requests over [`crate::IDLE_TIMEOUT`].
#[derive(Debug, Default)]
struct Activity {
    started: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicU64,
    last_end_us: std::sync::atomic::AtomicU64,
}

impl Activity {
    fn begin(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.started.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
    }

    fn end(&self, now_us: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_end_us.store(now_us, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    // Completes when the connection should be dropped.
    async fn expired(&self, env: &proto::env::Env) {
        use std::sync::atomic::Ordering::Relaxed;
        proto::time::sleep(crate::HEADER_TIMEOUT).await;
        if self.started.load(Relaxed) == 0 {
            return;
        }
        let idle_us = crate::IDLE_TIMEOUT.as_micros() as u64;
        loop {
            let busy = self.in_flight.load(Relaxed) > 0;
            let idle = env.now_us().saturating_sub(self.last_end_us.load(Relaxed));
            if !busy && idle >= idle_us {
                return;
            }
            let wait = if busy { idle_us } else { idle_us - idle };
            proto::time::sleep(std::time::Duration::from_micros(wait.max(1_000_000))).await;
        }
    }
}

/// Why an enrollment body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// Not the JSON object `{"name", "version"}`.
    #[error("enrollment body must be JSON {{\"name\",\"version\"}}: {0}")]
    Json(String),
    /// The name breaks the naming rule.
    #[error(
        "agent name {0} is not valid: use 1 to 64 letters, digits, `-` or `_` (and not `server`)"
    )]
    Name(String),
    /// The version is empty or too long.
    #[error("agent version {0} is not valid: use 1 to 64 printable characters")]
    Version(String),
}

impl BadRequest {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BadRequest::Json(_) => "bad_request",
            BadRequest::Name(_) => "invalid_name",
            BadRequest::Version(_) => "invalid_version",
        }
    }
}

/// `s` quoted and escaped, at most `max` bytes of it (escapes included, so
/// a name of wide or unprintable characters stays as short as any other),
/// with `...` when cut.
pub fn quote_cut(s: &str, max: usize) -> String {
    let mut out = String::from("\"");
    let mut cut = false;
    for c in s.chars() {
        let escaped: String = c.escape_debug().collect();
        if out.len() - 1 + escaped.len() > max {
            cut = true;
            break;
        }
        out.push_str(&escaped);
    }
    out.push('"');
    if cut {
        out.push_str("...");
    }
    out
}

/// Parses and checks an enrollment body: the agent name follows the
/// scenario format's rule ([`format::outcome::is_agent_name`], and not
/// `server`), the version is 1 to 64 printable characters.
pub fn parse_request(body: &[u8]) -> Result<EnrollRequest, BadRequest> {
    let req: EnrollRequest = serde_json::from_slice(body).map_err(|e| {
        let mut m = e.to_string();
        m.truncate(m.floor_char_boundary(200));
        BadRequest::Json(m)
    })?;
    if !format::outcome::is_agent_name(&req.name) || req.name == "server" {
        return Err(BadRequest::Name(quote_cut(&req.name, 64)));
    }
    let version_ok = !req.version.is_empty()
        && req.version.len() <= 64
        && req.version.chars().all(|c| !c.is_control());
    if !version_ok {
        return Err(BadRequest::Version(quote_cut(&req.version, 64)));
    }
    Ok(req)
}

/// Enrollment requests per source address: a token bucket each.
#[derive(Debug, Default)]
pub struct Limiter {
    // Source -> (tokens left, in millionths, and when last refilled).
    buckets: BTreeMap<IpAddr, (u64, u64)>,
}

/// Sources the limiter remembers at most; full buckets are forgotten first.
const LIMITER_SOURCES: usize = 65_536;

impl Limiter {
    /// One request from `source` at `now_us`: `Ok` when allowed, else
    /// `Err(seconds)` until the next would be.
    pub fn check(
        &mut self,
        limit: crate::RateLimit,
        source: IpAddr,
        now_us: u64,
    ) -> Result<(), u64> {
        const ONE: u64 = 1_000_000;
        let cap = u64::from(limit.burst.max(1)) * ONE;
        // Millionths of a request refilled per microsecond, times 60e6.
        let per_minute = u64::from(limit.per_minute.max(1));
        let refill = |tokens: u64, since: u64| {
            let gained = now_us.saturating_sub(since).saturating_mul(per_minute) / 60;
            tokens.saturating_add(gained).min(cap)
        };
        if self.buckets.len() >= LIMITER_SOURCES && !self.buckets.contains_key(&source) {
            self.buckets
                .retain(|_, (tokens, since)| refill(*tokens, *since) < cap);
            if self.buckets.len() >= LIMITER_SOURCES {
                // Every remembered source is throttled: refuse newcomers
                // rather than grow without bound.
                return Err(60 / per_minute.min(60) + 1);
            }
        }
        let (tokens, since) = self.buckets.entry(source).or_insert((cap, now_us));
        let have = refill(*tokens, *since);
        *since = now_us;
        if have >= ONE {
            *tokens = have - ONE;
            Ok(())
        } else {
            *tokens = have;
            // Microseconds until one whole request is refilled, rounded up to seconds.
            let wait_us = (ONE - have).saturating_mul(60).div_ceil(per_minute);
            Err(wait_us.div_ceil(1_000_000).max(1))
        }
    }
}

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
    let mut backoff = crate::AcceptBackoff::default();
    let gate = crate::limits::Gate::new("enroll", shared.cfg.conn_limits);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => {
                backoff.reset();
                s
            }
            Err(e) => {
                // EMFILE and the like: wait instead of spinning on the error.
                tracing::warn!(error = %e, "enrollment accept failed");
                backoff.wait().await;
                continue;
            }
        };
        // Over a cap: closed at once, before any TLS work.
        let Some(permit) = gate.admit(&shared.env, peer.ip()) else {
            drop(stream);
            continue;
        };
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match proto::time::timeout(crate::HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
            {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    shared
                        .env
                        .event("enroll.tls_failed", fields! {"error" => e.to_string()});
                    return;
                }
                Err(_) => {
                    shared.env.event(
                        "enroll.tls_failed",
                        fields! {"error" => "handshake timed out"},
                    );
                    return;
                }
            };
            let source = peer.ip();
            let activity = Arc::new(Activity::default());
            let watched = activity.clone();
            let env = shared.env.clone();
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                let activity = activity.clone();
                async move {
                    activity.begin();
                    let mut r = handle(&shared, source, req).await;
                    activity.end(shared.env.now_us());
                    date_header(&shared.env, &mut r);
                    Ok::<_, Infallible>(r)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                // hyper's timeouts read the wall clock; keep them off so the
                // simulation stays on simulated time (the watchdog below
                // times slow and idle connections out instead).
                .header_read_timeout(None)
                // Its Date header too: the service sets one from the env's clock.
                .auto_date_header(false)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(tls), svc);
            tokio::select! {
                _ = conn => {}
                _ = watched.expired(&env) => {}
            }
        });
    }
}

/// The `Date` of a response, from the component's clock (simulated time in
/// the simulator, so a run's capture repeats byte for byte).
fn date_header<B>(env: &proto::env::Env, r: &mut Response<B>) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&env.http_date()) {
        r.headers_mut().insert(hyper::header::DATE, v);
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

async fn handle(
    shared: &Shared,
    source: IpAddr,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
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
    lock(&shared.enroll_requests).note(shared.env.now_us());
    if let Some(limit) = shared.cfg.enroll_rate_limit {
        let verdict = lock(&shared.enroll_limiter).check(limit, source, shared.env.now_us());
        if let Err(retry_after_s) = verdict {
            shared.env.event(
                "enroll.rate_limited",
                fields! {"source" => source.to_string(), "retry_after_s" => retry_after_s},
            );
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!("too many enrollment requests from {source}; retry in {retry_after_s} s"),
            );
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, retry_after_s.into());
            return r;
        }
    }
    // Injected outages are windows of the run: on the logs' timeline.
    let now = shared.env.log_us();
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
    let previous_token = req
        .headers()
        .get(AGENT_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // RFC 7235: the scheme is case-insensitive (`bearer` is `Bearer`).
        .and_then(crate::admin::bearer)
        .map(str::to_string);
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match proto::time::timeout(crate::HEADER_TIMEOUT, collect).await {
        Ok(Ok(b)) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "timed_out",
                "the enrollment body did not arrive in time",
            )
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "enrollment body over 16 KiB",
            )
        }
    };
    let parsed = parse_request(&body);
    let name = parsed.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let matched = token.as_deref().and_then(|t| {
        shared
            .cfg
            .enroll_tokens
            .iter()
            .find(|ok| !ok.secret.is_empty() && ok.secret == t)
    });
    let Some(matched) = matched else {
        shared
            .env
            .event("enroll.rejected", fields! {"name" => name, "status" => 401});
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the enrollment token is not valid; get a new token from the operator",
        );
    };
    if matched
        .expires_unix_us
        .is_some_and(|e| shared.env.unix_us() >= e)
    {
        shared.env.event(
            "enroll.rejected",
            fields! {"name" => name, "status" => 401, "code" => "token_expired"},
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "token_expired",
            "the enrollment token has expired; get a new token from the operator",
        );
    }
    let req = match parsed {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()),
    };
    let live = shared
        .live_agent_named(&req.name)
        // The same agent re-installing proves itself with its agent token.
        .filter(|a| !(previous_token.is_some() && Shared::token_ok(a, previous_token.as_deref())));
    if let Some(live) = live {
        shared.env.event(
            "enroll.rejected",
            fields! {"name" => req.name, "status" => 409, "code" => "name_in_use"},
        );
        return error(
            StatusCode::CONFLICT,
            "name_in_use",
            &format!(
                "an agent named `{}` (agent_id {}) is connected now; names are unique among live agents. \
                 Enroll under another name, or stop that agent or revoke it (fleetctl revoke {}) first",
                req.name, live.agent_id, req.name
            ),
        );
    }
    if let Some(max) = matched.max_uses {
        match shared.store.take_token_use(&matched.digest(), max) {
            Ok(Some(_)) => {}
            Ok(None) => {
                shared.env.event(
                    "enroll.rejected",
                    fields! {"name" => req.name, "status" => 401, "code" => "token_used_up"},
                );
                return error(
                    StatusCode::UNAUTHORIZED,
                    "token_used_up",
                    &format!(
                        "the enrollment token was used for its {max} enrollments; get a new token from the operator"
                    ),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "enrollment failed on the server; retry later",
                );
            }
        }
    }
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
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let _ = proto::time::timeout(crate::HEADER_TIMEOUT, collect).await;
    let now = shared.env.log_us();
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
            server_time_us: shared.env.unix_us(),
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
        enrolled_at_us: shared.env.unix_us(),
        last_seen_us: None,
        revoked: false,
        agent_token_sha256: Some(crate::token_digest(&agent_token)),
    })?;
    shared.name_enrolled(&req.name, &agent_id);
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
