//! The agent's `/liveness?failon=heartbeat|degraded|failed` endpoint: plain
//! HTTP/1.1 (hyper) on the agent's `liveness_port`, served through the
//! network seam so the bench (or a real monitor) can probe it. The decision
//! is [`crate::health::liveness`]'s; this is only its driver.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use proto::env::Env;
use proto::fields;

use crate::{health, AgentConfig, StatusCell};

/// The endpoint's path.
pub const PATH: &str = "/liveness";

fn answer(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The answer to one request.
pub fn handle<B>(
    cfg: &AgentConfig,
    status: &StatusCell,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return answer(
            404,
            serde_json::json!({"error": "not_found", "message": "unknown path; probe GET /liveness?failon=degraded|failed"}).to_string(),
        );
    }
    if req.method() != hyper::Method::GET {
        return answer(
            405,
            serde_json::json!({"error": "method_not_allowed", "message": "use GET"}).to_string(),
        );
    }
    let h = status.lock().health.clone();
    let a = health::liveness(
        &h,
        req.uri().query(),
        cfg.switches.liveness_includes_fleet_state,
    );
    answer(a.status, a.body)
}

/// How often the endpoint tries again to listen on a port that is taken.
pub const LISTEN_RETRY_MS: u64 = 5_000;

/// Serves the endpoint until the task is dropped; an event says when it
/// cannot listen (it retries every [`LISTEN_RETRY_MS`]).
pub async fn serve(env: Env, cfg: AgentConfig, status: StatusCell) {
    let port = cfg.liveness_port;
    // The port may be held for a while: during a self-upgrade's cutover the
    // old agent still serves it. Retry until it is free.
    let mut failed = false;
    let mut listener = loop {
        match env.net.listen_tcp(port).await {
            Ok(l) => {
                if failed {
                    env.event("liveness.listening", fields! {"port" => port});
                }
                break l;
            }
            Err(e) => {
                if !failed {
                    env.event(
                        "liveness.listen_failed",
                        fields! {"port" => port, "error" => e.to_string(), "retry_ms" => LISTEN_RETRY_MS},
                    );
                }
                failed = true;
                proto::time::sleep(std::time::Duration::from_millis(LISTEN_RETRY_MS)).await;
            }
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                env.event("liveness.accept_failed", fields! {"error" => e.to_string()});
                continue;
            }
        };
        let (cfg, status, env) = (cfg.clone(), status.clone(), env.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let mut r = handle(&cfg, &status, &req);
                // The Date from the env's clock, not hyper's wall clock.
                if let Ok(v) = hyper::header::HeaderValue::from_str(&env.http_date()) {
                    r.headers_mut().insert(hyper::header::DATE, v);
                }
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                // hyper's timeouts and Date header read the wall clock; keep
                // them off so the simulation stays on simulated time.
                .header_read_timeout(None)
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Why a probe got no HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// TCP connect failed.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Host probed.
        host: String,
        /// Port probed.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("liveness HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("liveness request: {0}")]
    Request(String),
}

/// A monitor's probe: `GET /liveness?<query>` on `host:port`; the HTTP
/// status the endpoint answered.
pub async fn probe(env: &Env, host: &str, port: u16, query: &str) -> Result<u16, ProbeError> {
    let tcp = env
        .net
        .connect_tcp(host, port)
        .await
        .map_err(|source| ProbeError::Connect {
            host: host.into(),
            port,
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let driver = tokio::spawn(conn);
    let req = Request::get(format!("{PATH}?{query}"))
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Request(e.to_string()))?;
    let resp = sender.send_request(req).await;
    driver.abort();
    Ok(resp?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{State, Status};
    use http_body_util::BodyExt;

    fn status(fleet: State) -> StatusCell {
        let s = StatusCell::default();
        {
            let mut st = s.lock();
            st.health.coordinator = Status::new(State::Healthy, None);
            st.health.fleet = Status::new(fleet, Some("3 consecutive check-in failures".into()));
        }
        s
    }

    fn get(cfg: &AgentConfig, st: &StatusCell, method: &str, uri: &str) -> (u16, String) {
        let req = Request::builder().method(method).uri(uri).body(()).unwrap();
        let resp = handle(cfg, st, &req);
        let code = resp.status().as_u16();
        let body = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn the_handler_answers_by_path_method_query_and_switch() {
        let mut cfg = AgentConfig::new("a", "server", "t", "");
        let st = status(State::Failed);
        let (code, body) = get(&cfg, &st, "GET", "/liveness?failon=failed");
        assert_eq!(code, 500);
        assert!(body.contains("\"fleet\""), "{body}");
        assert!(body.contains("3 consecutive check-in failures"), "{body}");
        assert_eq!(get(&cfg, &st, "GET", "/liveness").0, 200);
        assert_eq!(get(&cfg, &st, "GET", "/liveness?failon=nope").0, 400);
        assert_eq!(get(&cfg, &st, "POST", "/liveness?failon=failed").0, 405);
        assert_eq!(get(&cfg, &st, "GET", "/health").0, 404);
        cfg.switches = crate::AgentSwitches::LEGACY;
        assert_eq!(get(&cfg, &st, "GET", "/liveness?failon=failed").0, 200);
        assert_eq!(get(&cfg, &st, "GET", "/liveness?failon=degraded").0, 200);
    }
}
