//! The fleet check-in: every `checkin_interval_ms` (30 s) the service sends
//! `POST /api/agents/<agent_id>/checkin` over HTTPS to the server's
//! enrollment listener, with the agent token issued at enrollment in
//! `X-Agent-Token`. A 2xx is a success; a non-2xx answer, a refused or timed
//! out connection, or no answer within `checkin_timeout_ms` is a failure.
//! Results feed the fleet state ([`crate::health::CheckinTracker`]); each
//! change of it is logged as a `fleet.state` event.
//!
//! The HTTP/1.1 connection is kept open between check-ins and opened again
//! after any failure other than an HTTP error answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use proto::env::Env;
use proto::fields;
use proto::msg::{checkin_path, CheckinRequest, ErrorBody, AGENT_TOKEN_HEADER};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::health::CheckinTracker;
use crate::install::Credentials;
use crate::{AgentConfig, StatusCell};

/// Why a check-in failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckinError {
    /// TCP connect failed (refused, timed out, unreachable).
    #[error("cannot reach the check-in service at {host}:{port}: {source}")]
    Connect {
        /// Server host.
        host: String,
        /// Port.
        port: u16,
        /// The socket error.
        source: std::io::Error,
    },
    /// TLS failed.
    #[error("TLS with the check-in service failed: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("check-in HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered non-2xx.
    #[error("check-in refused with HTTP {status} ({code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// No answer in time.
    #[error("check-in timed out after {0} ms")]
    Timeout(u64),
    /// Local configuration problem.
    #[error("check-in configuration: {0}")]
    Config(String),
}

/// A check-in client with its kept-alive connection.
#[derive(Debug, Default)]
pub struct CheckinClient {
    sender: Option<SendRequest<Full<Bytes>>>,
    driver: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for CheckinClient {
    fn drop(&mut self) {
        self.reset();
    }
}

impl CheckinClient {
    /// Forgets the connection; the next check-in opens a new one.
    pub fn reset(&mut self) {
        self.sender = None;
        if let Some(d) = self.driver.take() {
            d.abort();
        }
    }

    async fn connect(
        &mut self,
        env: &Env,
        cfg: &AgentConfig,
        creds: &Credentials,
    ) -> Result<(), CheckinError> {
        let (host, port) = (cfg.server_host.clone(), cfg.enroll_port);
        let tcp =
            env.net
                .connect_tcp(&host, port)
                .await
                .map_err(|source| CheckinError::Connect {
                    host: host.clone(),
                    port,
                    source,
                })?;
        let tls = proto::tls::client_config(env, &creds.ca_pem, None, &[b"http/1.1"])
            .map_err(|e| CheckinError::Config(e.to_string()))?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| CheckinError::Config(format!("server name {host}: {e}")))?;
        let tls = TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| CheckinError::Tls(e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        self.driver = Some(tokio::spawn(async move {
            let _ = conn.await;
        }));
        self.sender = Some(sender);
        Ok(())
    }

    /// One check-in on the kept connection (opened when needed).
    pub async fn checkin(
        &mut self,
        env: &Env,
        cfg: &AgentConfig,
        creds: &Credentials,
    ) -> Result<(), CheckinError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.reset();
            self.connect(env, cfg, creds).await?;
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender.ready().await?;
        let body = serde_json::to_vec(&CheckinRequest {
            agent_version: cfg.version.clone(),
        })
        .expect("requests serialize");
        let token = cfg
            .agent_token_override
            .clone()
            .or_else(|| creds.file.agent_token.clone())
            .unwrap_or_default();
        let req = hyper::Request::post(checkin_path(&creds.file.agent_id))
            .header(hyper::header::HOST, cfg.server_host.as_str())
            .header(AGENT_TOKEN_HEADER, token)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CheckinError::Config(e.to_string()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or(ErrorBody {
            code: "unknown".into(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
        Err(CheckinError::Rejected {
            status,
            code: err.code,
            message: err.message,
        })
    }
}

/// Checks in now and then every `checkin_interval_ms`, forever, keeping
/// the fleet state in `status` up to date.
pub async fn run(env: Env, cfg: AgentConfig, creds: Credentials, status: StatusCell) {
    let mut client = CheckinClient::default();
    let mut tracker = CheckinTracker::new();
    let bound = Duration::from_millis(cfg.checkin_timeout_ms);
    loop {
        let result = match proto::time::timeout(bound, client.checkin(&env, &cfg, &creds)).await {
            Ok(r) => r,
            Err(_) => Err(CheckinError::Timeout(cfg.checkin_timeout_ms)),
        };
        if matches!(&result, Err(e) if !matches!(e, CheckinError::Rejected { .. })) {
            client.reset();
        }
        let transition = match &result {
            Ok(()) => tracker.handle_success(),
            Err(e) => {
                env.event(
                    "checkin.failed",
                    fields! {"error" => e.to_string(), "consecutive" => tracker.failures() + 1},
                );
                tracker.handle_failure(&e.to_string())
            }
        };
        {
            let mut s = status.lock();
            s.checkins += 1;
            if result.is_err() {
                s.checkin_failures += 1;
            }
            s.health.fleet = tracker.poll_status().clone();
        }
        if let Some(t) = transition {
            env.event(
                "fleet.state",
                fields! {"from" => t.from.name(), "to" => t.to.name(), "reason" => t.reason},
            );
        }
        proto::time::sleep(Duration::from_millis(cfg.checkin_interval_ms)).await;
    }
}
