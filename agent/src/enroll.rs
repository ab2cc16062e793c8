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

use crate::AgentConfig;

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
    #[error("TLS with the enrollment service failed: {0}; check the installer's gateway CA")]
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

impl EnrollError {
    /// Whether retrying cannot help (a 4xx: bad token, bad request).
    pub fn is_permanent(&self) -> bool {
        matches!(self, EnrollError::Rejected { status, .. } if (400..500).contains(status))
    }
}

/// One enrollment attempt.
pub async fn enroll_once(env: &Env, cfg: &AgentConfig) -> Result<EnrollResponse, EnrollError> {
    env.event(
        "enroll.request",
        fields! {"server" => cfg.server_host, "port" => cfg.enroll_port},
    );
    let connect = env.net.connect_tcp(&cfg.server_host, cfg.enroll_port);
    let tcp =
        match tokio::time::timeout(Duration::from_millis(cfg.connect_timeout_ms), connect).await {
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
    let req = hyper::Request::post(ENROLL_PATH)
        .header(hyper::header::HOST, cfg.server_host.as_str())
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", cfg.token),
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
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
