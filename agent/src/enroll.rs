//! The HTTPS enrollment client: `POST /jet/tunnel/enroll` with a bearer token.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proto::env::Env;
use proto::fields;
use proto::msg::{EnrollRequest, EnrollResponse, ErrorBody, ENROLL_PATH};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::backoff::Backoff;
use crate::service::jitter;
use crate::{AgentConfig, StatusCell};

/// Attempts of one enrollment round (the inner retry).
pub const INNER_ATTEMPTS: u32 = 3;
/// Backoff of the inner retry between transient failures.
pub const INNER_BACKOFF_MS: (u64, u64) = (1_000, 4_000);
/// Backoff of the fixed outer loop between rounds: base and cap.
pub const OUTER_BACKOFF_MS: (u64, u64) = (5_000, 300_000);

/// Why an enrollment attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// TCP connect failed (refused, timed out, unreachable).
    #[error("cannot reach the enrollment service at {host}:{port}: {source}; check that TCP {port} to the server is open")]
    Connect {
        /// Server host.
        host: String,
        /// Port.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// TLS failed (wrong CA, bad name, expired certificate).
    #[error("TLS with the enrollment service failed: {0}; {hint}", hint = tls_hint(.0))]
    Tls(std::io::Error),
    /// The HTTP exchange failed.
    #[error("enrollment HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered non-2xx.
    #[error("enrollment rejected with HTTP {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A 2xx answer that did not parse.
    #[error("enrollment answer did not parse: {0}")]
    BadAnswer(String),
    /// Local configuration problem.
    #[error("enrollment configuration: {0}")]
    Config(String),
}

/// What to check after a failed TLS handshake with the enrollment service:
/// a certificate outside its validity period says more about this machine's
/// clock than about the CA.
fn tls_hint(e: &std::io::Error) -> &'static str {
    use rustls::CertificateError as C;
    let cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|r| match r {
            rustls::Error::InvalidCertificate(c) => Some(c),
            _ => None,
        });
    match cert {
        Some(
            C::NotValidYet | C::NotValidYetContext { .. } | C::Expired | C::ExpiredContext { .. },
        ) => "check this machine's date and time (NTP): certificates are judged by its clock",
        _ => "check the installer's gateway CA",
    }
}

impl EnrollError {
    /// Whether retrying cannot help (a 4xx: bad token, bad request).
    pub fn is_permanent(&self) -> bool {
        matches!(self, EnrollError::Rejected { status, .. } if (400..500).contains(status))
    }
}

/// One enrollment attempt (counted in `status`).
pub async fn enroll_once(
    env: &Env,
    cfg: &AgentConfig,
    status: &StatusCell,
) -> Result<EnrollResponse, EnrollError> {
    {
        let mut s = status.lock();
        s.enroll_requests += 1;
        s.enroll_request_times_us.push(env.now_us());
    }
    env.event(
        "enroll.request",
        fields! {"server" => cfg.server_host, "port" => cfg.enroll_port},
    );
    let connect = env.net.connect_tcp(&cfg.server_host, cfg.enroll_port);
    let tcp =
        match proto::time::timeout(Duration::from_millis(cfg.connect_timeout_ms), connect).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connect timed out after {} ms", cfg.connect_timeout_ms),
            )),
        }
        .map_err(|source| EnrollError::Connect {
            host: cfg.server_host.clone(),
            port: cfg.enroll_port,
            source,
        })?;
    let tls = proto::tls::client_config(env, &cfg.ca_pem, None, &[b"http/1.1"])
        .map_err(|e| EnrollError::Config(e.to_string()))?;
    let name = ServerName::try_from(cfg.server_host.clone())
        .map_err(|e| EnrollError::Config(format!("server name {}: {e}", cfg.server_host)))?;
    let tls = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(EnrollError::Tls)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(conn);
    let body = serde_json::to_vec(&EnrollRequest {
        name: cfg.name.clone(),
        version: cfg.version.clone(),
    })
    .expect("requests serialize");
    let mut req = hyper::Request::post(ENROLL_PATH)
        .header(hyper::header::HOST, cfg.server_host.as_str())
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", cfg.token),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json");
    // A re-install proves it is the agent already enrolled under this name
    // (whose service may still be connected) with that enrollment's token:
    // the server refuses a live name to anyone else.
    let previous = crate::install::load(env.disk.as_ref())
        .ok()
        .flatten()
        .and_then(|c| c.file.agent_token);
    if let Some(t) = previous {
        req = req.header(proto::msg::AGENT_TOKEN_HEADER, t);
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EnrollError::Config(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    driver.abort();
    if !(200..300).contains(&status) {
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            code: "unknown".into(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
        env.event(
            "enroll.rejected",
            fields! {"status" => status, "code" => err.code},
        );
        return Err(EnrollError::Rejected {
            status,
            code: err.code,
            message: err.message,
        });
    }
    let parsed: EnrollResponse =
        serde_json::from_slice(&bytes).map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    env.event("enroll.ok", fields! {"agent_id" => parsed.agent_id});
    Ok(parsed)
}

/// One enrollment round (the field's inner retry): up to
/// [`INNER_ATTEMPTS`] attempts with backoff between transient failures; a
/// permanent failure (a 4xx, such as a refused token) ends the round at once.
pub async fn enroll_round(
    env: &Env,
    cfg: &AgentConfig,
    status: &StatusCell,
) -> Result<EnrollResponse, EnrollError> {
    let mut backoff = Backoff::new(INNER_BACKOFF_MS.0, INNER_BACKOFF_MS.1);
    let mut attempt = 1;
    loop {
        match enroll_once(env, cfg, status).await {
            Ok(r) => return Ok(r),
            Err(e) if e.is_permanent() || attempt >= INNER_ATTEMPTS => return Err(e),
            Err(_) => {
                attempt += 1;
                proto::time::sleep(Duration::from_millis(backoff.handle_failure(jitter(env))))
                    .await;
            }
        }
    }
}

/// Delayed enrollment: the service enrolls when it starts, round after round.
///
/// Legacy (`delayed_enroll_backoff` off): the next round starts at once
/// after any failure, forever; with a refused token each round is a single
/// request, so the agent hammers the enrollment API (incident 3's storm).
/// Fixed: a permanent failure is a terminal state (`failed-permanent`,
/// event `enroll.terminal`, no more requests); a transient one waits with
/// exponential backoff, jitter and a cap ([`OUTER_BACKOFF_MS`]).
pub async fn delayed_enroll(
    env: &Env,
    cfg: &AgentConfig,
    status: &StatusCell,
) -> Result<EnrollResponse, EnrollError> {
    status.lock().enroll_state = Some("enrolling".into());
    let mut backoff = Backoff::new(OUTER_BACKOFF_MS.0, OUTER_BACKOFF_MS.1);
    loop {
        let e = match enroll_round(env, cfg, status).await {
            Ok(r) => {
                status.lock().enroll_state = Some("enrolled".into());
                return Ok(r);
            }
            Err(e) => e,
        };
        if !cfg.switches.delayed_enroll_backoff {
            env.event(
                "enroll.delayed_retry",
                fields! {"error" => e.to_string(), "delay_ms" => 0},
            );
            // Let the rest of the process run; no time passes.
            tokio::task::yield_now().await;
            continue;
        }
        if e.is_permanent() {
            status.lock().enroll_state = Some("failed-permanent".into());
            env.event(
                "enroll.terminal",
                fields! {"error" => e.to_string(), "requests" => status.lock().enroll_requests},
            );
            return Err(e);
        }
        let delay = backoff.handle_failure(jitter(env));
        env.event(
            "enroll.delayed_retry",
            fields! {"error" => e.to_string(), "delay_ms" => delay},
        );
        proto::time::sleep(Duration::from_millis(delay)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(e: rustls::Error) -> EnrollError {
        EnrollError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn a_certificate_out_of_its_validity_points_at_the_clock() {
        use rustls::CertificateError as C;
        for c in [C::NotValidYet, C::Expired] {
            let msg = tls(rustls::Error::InvalidCertificate(c)).to_string();
            assert!(msg.contains("date and time (NTP)"), "{msg}");
            assert!(!msg.contains("gateway CA"), "{msg}");
        }
        let msg = tls(rustls::Error::InvalidCertificate(C::UnknownIssuer)).to_string();
        assert!(msg.ends_with("check the installer's gateway CA"), "{msg}");
    }
}
