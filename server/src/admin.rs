//! The operator API: HTTP + JSON on its own port (TCP 7443 by default,
//! loopback unless told otherwise), every request authenticated with the
//! admin token (`Authorization: Bearer <admin token>`, the scheme
//! case-insensitive), a secret distinct from the enrollment tokens.
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/v1/agents` | every agent ([`AgentSummary`]) |
//! | GET | `/v1/agents/<name>` | one agent, by name or agent id |
//! | POST | `/v1/agents/<name>/commands` | dispatch `{"command"}`; 202 with the [`CommandRecord`] |
//! | GET | `/v1/agents/<name>/commands` | the agent's commands |
//! | GET | `/v1/commands` | every command |
//! | GET | `/v1/commands/<id>` | one command: status, attempts, result |
//! | POST | `/v1/agents/<name>/evict` | close its command-channel session |
//! | POST | `/v1/agents/<name>/wake` | wake it, start a check-in escalation |
//! | POST | `/v1/agents/<name>/revoke` | revoke its credential |
//! | POST | `/v1/agents/<name>/upgrade` | `{"version", "defect"?}`: request an upgrade |
//! | GET | `/v1/upgrades` | every upgrade marker and status |
//! | POST | `/v1/builds` | `{"version", "defect"?}`: publish a build |
//!
//! The decisions are sans-IO: [`route`] turns a [`Request`] into a [`Route`]
//! or an error [`Response`] (authentication, path, method, body), and
//! [`execute`] runs a route on a [`ServerHandle`], through the same
//! functions the simulator's actions call. [`serve`] is the thin hyper
//! driver on a TCP listener. Errors are [`ErrorBody`] JSON, as the
//! enrollment API's are: a `code` and a `message` that says what to do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use proto::build::BuildDefect;
use proto::msg::ErrorBody;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::CommandRecord;
use crate::wake::Lifecycle;
use crate::{OpError, ServerHandle};

/// The operator API's default port.
pub const ADMIN_PORT: u16 = 7443;
/// Largest request body accepted.
pub const MAX_BODY: usize = 16 * 1024;
/// Name of the admin-token file the server creates (mode 0600) in its
/// data directory at first start when no token is given.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The bearer credential of an `Authorization` header value, the scheme
/// matched case-insensitively (RFC 7235); `None` for any other scheme.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ').trim_end();
    (!token.is_empty()).then_some(token)
}

/// The admin token the API accepts (only its SHA-256 is kept).
#[derive(Clone, Debug)]
pub struct AdminToken {
    sha256: [u8; 32],
}

impl AdminToken {
    /// Accepts `secret`.
    pub fn new(secret: &str) -> AdminToken {
        AdminToken {
            sha256: digest(secret),
        }
    }

    /// Whether `presented` is the token. Digests of equal length are
    /// compared in full, so the time taken says nothing about the secret.
    pub fn matches(&self, presented: &str) -> bool {
        let d = digest(presented);
        d.iter()
            .zip(self.sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

/// An HTTP request, as [`route`] sees it.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path (no query).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Bytes,
}

/// An HTTP answer: a status and a JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// Extra headers (`Allow`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    fn ok(status: StatusCode, body: impl Serialize) -> Response {
        Response {
            status,
            body: serde_json::to_value(body).expect("API bodies serialize"),
            headers: Vec::new(),
        }
    }

    /// An error answer with a [`ErrorBody`].
    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
        Response::ok(
            status,
            ErrorBody {
                code: code.into(),
                message: message.into(),
            },
        )
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

/// What a request asks for, once authenticated and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /v1/agents`.
    ListAgents,
    /// `GET /v1/agents/<name>`.
    GetAgent(String),
    /// `POST /v1/agents/<name>/commands`.
    Dispatch {
        /// The agent's name.
        agent: String,
        /// The command line.
        command: String,
    },
    /// `GET /v1/agents/<name>/commands` (`Some`) or `GET /v1/commands`.
    ListCommands(Option<String>),
    /// `GET /v1/commands/<id>`.
    GetCommand(String),
    /// `POST /v1/agents/<name>/evict`.
    Evict(String),
    /// `POST /v1/agents/<name>/wake`.
    Wake(String),
    /// `POST /v1/agents/<name>/revoke`.
    Revoke(String),
    /// `POST /v1/agents/<name>/upgrade`.
    Upgrade {
        /// The agent's name.
        agent: String,
        /// The version to go to.
        version: String,
        /// A defect injected into the build (tests, rehearsals).
        defect: Option<BuildDefect>,
    },
    /// `GET /v1/upgrades`.
    ListUpgrades,
    /// `POST /v1/builds`.
    PublishBuild {
        /// The version.
        version: String,
        /// A defect injected into the build.
        defect: Option<BuildDefect>,
    },
}

/// Body of `POST /v1/agents/<name>/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchBody {
    /// The command line.
    pub command: String,
}

/// Body of `POST /v1/builds` and `POST /v1/agents/<name>/upgrade`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildBody {
    /// The version.
    pub version: String,
    /// `corrupt`, `fails-self-test`, `never-heartbeats` or `crashes-on-start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defect: Option<BuildDefect>,
}

/// Answer of `POST /v1/agents/<name>/evict`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictAnswer {
    /// The agent.
    pub agent: String,
    /// The command-channel connection closed; `None` when it had none.
    pub closed_conn: Option<String>,
}

/// One agent as the operator API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// The name it enrolled with.
    pub name: String,
    /// Its identity.
    pub agent_id: String,
    /// `online`, `provisioning`, `offline` or `revoked`.
    pub status: String,
    /// The version it last reported.
    pub version: String,
    /// The site it named at its last command-channel Auth since the server started.
    pub site: Option<String>,
    /// When it enrolled (server clock, microseconds).
    pub enrolled_at_us: u64,
    /// When the server last heard from it (server clock).
    pub last_seen_us: Option<u64>,
    /// How long ago that was, in milliseconds (`None` when unknown: never,
    /// or on the clock of an earlier server process).
    pub last_seen_ago_ms: Option<u64>,
    /// Wakes sent since its last check-in.
    pub wake_attempts: u32,
    /// The reconciler's view: `provisioning`, `checked-in`, `offline`.
    pub lifecycle: Option<Lifecycle>,
    /// Why provisioning failed, once escalation stopped.
    pub last_provision_error: Option<String>,
    /// The phase of its latest upgrade, if it was ever upgraded.
    pub upgrade_phase: Option<String>,
    /// The version that upgrade goes to.
    pub upgrade_to: Option<String>,
    /// Whether its credential is revoked.
    pub revoked: bool,
    /// Its registered tunnel connection.
    pub tunnel_conn: Option<String>,
    /// Its registered command-channel connection.
    pub ws_conn: Option<String>,
}

const ENDPOINTS: &str =
    "GET /v1/agents, GET /v1/agents/<name>, POST|GET /v1/agents/<name>/commands, \
GET /v1/commands, GET /v1/commands/<id>, POST /v1/agents/<name>/{evict,wake,revoke,upgrade}, \
GET /v1/upgrades, POST /v1/builds";

fn unauthorized(code: &str, message: &str) -> Response {
    Response::error(StatusCode::UNAUTHORIZED, code, message)
        .with_header("www-authenticate", "Bearer realm=\"fleet-server admin\"")
}

fn not_found() -> Response {
    Response::error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("unknown path; the operator API has {ENDPOINTS}"),
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allow} on this path"),
    )
    .with_header("allow", allow)
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        Response::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body must be JSON {shape}: {e}"),
        )
    })
}

fn nonempty(s: String, what: &str) -> Result<String, Response> {
    if s.trim().is_empty() {
        Err(Response::error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{what}` must not be empty"),
        ))
    } else {
        Ok(s)
    }
}

/// Authenticates and parses a request: the [`Route`] it asks for, or the
/// error answer (401 without or with a wrong token, 404 for an unknown
/// path, 405 for a wrong method, 400 for a bad body).
pub fn route(token: &AdminToken, req: &Request) -> Result<Route, Response> {
    let Some(header) = req.authorization.as_deref() else {
        return Err(unauthorized(
            "missing_admin_token",
            "send the admin token as `Authorization: Bearer <token>`; the server printed where its token file is at start",
        ));
    };
    let Some(presented) = bearer(header) else {
        return Err(unauthorized(
            "missing_admin_token",
            "use the Bearer scheme: `Authorization: Bearer <admin token>`",
        ));
    };
    if !token.matches(presented) {
        return Err(unauthorized(
            "invalid_admin_token",
            "the admin token is not valid (enrollment tokens are not admin tokens); use the one in the server's admin-token file or given with --admin-token",
        ));
    }
    let path = req.path.strip_suffix('/').unwrap_or(&req.path);
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let get = req.method == Method::GET;
    let post = req.method == Method::POST;
    let name = |s: &str| s.to_string();
    match segs.as_slice() {
        ["v1", "agents"] if get => Ok(Route::ListAgents),
        ["v1", "agents"] => Err(method_not_allowed("GET")),
        ["v1", "agents", a] if get => Ok(Route::GetAgent(name(a))),
        ["v1", "agents", _] => Err(method_not_allowed("GET")),
        ["v1", "agents", a, "commands"] if post => {
            let b: DispatchBody = parse_body(&req.body, "{\"command\": \"...\"}")?;
            Ok(Route::Dispatch {
                agent: name(a),
                command: nonempty(b.command, "command")?,
            })
        }
        ["v1", "agents", a, "commands"] if get => Ok(Route::ListCommands(Some(name(a)))),
        ["v1", "agents", _, "commands"] => Err(method_not_allowed("GET, POST")),
        ["v1", "agents", a, op @ ("evict" | "wake" | "revoke")] if post => Ok(match *op {
            "evict" => Route::Evict(name(a)),
            "wake" => Route::Wake(name(a)),
            _ => Route::Revoke(name(a)),
        }),
        ["v1", "agents", a, "upgrade"] if post => {
            let b: BuildBody =
                parse_body(&req.body, "{\"version\": \"...\", \"defect\"?: \"...\"}")?;
            Ok(Route::Upgrade {
                agent: name(a),
                version: nonempty(b.version, "version")?,
                defect: b.defect,
            })
        }
        ["v1", "agents", _, "evict" | "wake" | "revoke" | "upgrade"] => {
            Err(method_not_allowed("POST"))
        }
        ["v1", "commands"] if get => Ok(Route::ListCommands(None)),
        ["v1", "commands"] => Err(method_not_allowed("GET")),
        ["v1", "commands", id] if get => Ok(Route::GetCommand(name(id))),
        ["v1", "commands", _] => Err(method_not_allowed("GET")),
        ["v1", "upgrades"] if get => Ok(Route::ListUpgrades),
        ["v1", "upgrades"] => Err(method_not_allowed("GET")),
        ["v1", "builds"] if post => {
            let b: BuildBody =
                parse_body(&req.body, "{\"version\": \"...\", \"defect\"?: \"...\"}")?;
            Ok(Route::PublishBuild {
                version: nonempty(b.version, "version")?,
                defect: b.defect,
            })
        }
        ["v1", "builds"] => Err(method_not_allowed("POST")),
        _ => Err(not_found()),
    }
}

fn op_error(e: OpError) -> Response {
    let status = match &e {
        OpError::UnknownAgent { .. } => StatusCode::NOT_FOUND,
        OpError::UpgradeUnderWay { .. } => StatusCode::CONFLICT,
        OpError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        OpError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    };
    Response::error(status, e.code(), e.to_string())
}

fn store_error(e: crate::store::StoreError) -> Response {
    op_error(e.into())
}

/// Every agent as the API shows it, by agent id.
pub fn agent_summaries(handle: &ServerHandle) -> Result<Vec<AgentSummary>, OpError> {
    let now = handle.now_us();
    let sites = handle.sites();
    Ok(handle
        .agents()?
        .into_iter()
        .map(|v| {
            let wake = v.wake.as_ref();
            AgentSummary {
                site: sites.get(&v.record.agent_id).cloned(),
                status: if v.record.revoked {
                    "revoked".into()
                } else {
                    v.status.clone()
                },
                // `None` also for a record from before a restart of a server
                // whose clock counts from its own start.
                last_seen_ago_ms: v
                    .record
                    .last_seen_us
                    .and_then(|t| now.checked_sub(t))
                    .map(|d| d / 1000),
                wake_attempts: wake.map_or(0, |w| w.wake_attempts),
                lifecycle: wake.map(|w| w.lifecycle),
                last_provision_error: wake.and_then(|w| w.last_provision_error.clone()),
                upgrade_phase: v.upgrade.as_ref().map(|u| u.phase.name().to_string()),
                upgrade_to: v.upgrade.as_ref().map(|u| u.to_version.clone()),
                name: v.record.name,
                agent_id: v.record.agent_id,
                version: v.record.version,
                enrolled_at_us: v.record.enrolled_at_us,
                last_seen_us: v.record.last_seen_us,
                revoked: v.record.revoked,
                tunnel_conn: v.tunnel_conn,
                ws_conn: v.ws_conn,
            }
        })
        .collect())
}

/// The agent `key` names: the newest unrevoked one of that name, else the
/// newest revoked one, else the one with that agent id.
pub fn find_agent(agents: &[AgentSummary], key: &str) -> Option<AgentSummary> {
    let newest = |revoked: bool| {
        agents
            .iter()
            .filter(|a| a.name == key && a.revoked == revoked)
            .max_by_key(|a| a.enrolled_at_us)
    };
    newest(false)
        .or_else(|| newest(true))
        .or_else(|| agents.iter().find(|a| a.agent_id == key))
        .cloned()
}

fn unknown_agent(agent: &str) -> Response {
    op_error(OpError::UnknownAgent {
        agent: agent.into(),
    })
}

/// Runs a route on the server: the same [`ServerHandle`] functions the
/// simulator's actions call, answered.
pub async fn execute(handle: &ServerHandle, route: Route) -> Response {
    match route {
        Route::ListAgents => match agent_summaries(handle) {
            Ok(a) => Response::ok(StatusCode::OK, json!({ "agents": a })),
            Err(e) => op_error(e),
        },
        Route::GetAgent(key) => match agent_summaries(handle) {
            Ok(a) => match find_agent(&a, &key) {
                Some(a) => Response::ok(StatusCode::OK, a),
                None => unknown_agent(&key),
            },
            Err(e) => op_error(e),
        },
        Route::Dispatch { agent, command } => match handle.dispatch_answered(&agent, &command).await
        {
            Ok(c) => Response::ok(StatusCode::ACCEPTED, c),
            Err(e) => op_error(e),
        },
        Route::ListCommands(agent) => {
            let commands = match handle.commands() {
                Ok(c) => c,
                Err(e) => return store_error(e),
            };
            let commands: Vec<CommandRecord> = match agent {
                None => commands,
                Some(key) => {
                    let agents = match agent_summaries(handle) {
                        Ok(a) => a,
                        Err(e) => return op_error(e),
                    };
                    let Some(a) = find_agent(&agents, &key) else {
                        return unknown_agent(&key);
                    };
                    commands
                        .into_iter()
                        .filter(|c| c.agent_id == a.agent_id)
                        .collect()
                }
            };
            Response::ok(StatusCode::OK, json!({ "commands": commands }))
        }
        Route::GetCommand(id) => match handle.commands() {
            Ok(c) => match c.into_iter().find(|c| c.command_id == id) {
                Some(c) => Response::ok(StatusCode::OK, c),
                None => Response::error(
                    StatusCode::NOT_FOUND,
                    "unknown_command",
                    format!("no command has the id `{id}`; ids are cmd-0001, cmd-0002, ... (GET /v1/commands lists them)"),
                ),
            },
            Err(e) => store_error(e),
        },
        Route::Evict(agent) => match handle.evict_answered(&agent).await {
            Ok(closed_conn) => Response::ok(StatusCode::OK, EvictAnswer { agent, closed_conn }),
            Err(e) => op_error(e),
        },
        Route::Wake(agent) => match handle.wake_answered(&agent).await {
            Ok(w) => Response::ok(StatusCode::OK, w),
            Err(e) => op_error(e),
        },
        Route::Revoke(agent) => match handle.revoke_answered(&agent).await {
            Ok(a) => Response::ok(StatusCode::OK, a),
            Err(e) => op_error(e),
        },
        Route::Upgrade {
            agent,
            version,
            defect,
        } => match handle.upgrade_answered(&agent, &version, defect).await {
            Ok(u) => Response::ok(StatusCode::ACCEPTED, u),
            Err(e) => op_error(e),
        },
        Route::ListUpgrades => match handle.upgrades() {
            Ok(u) => Response::ok(StatusCode::OK, json!({ "upgrades": u })),
            Err(e) => store_error(e),
        },
        Route::PublishBuild { version, defect } => {
            match handle.publish_build(&version, defect).await {
                Ok(a) => Response::ok(StatusCode::CREATED, a),
                Err(e) => op_error(e),
            }
        }
    }
}

/// Answers one request: [`route`], then [`execute`].
pub async fn handle(server: &ServerHandle, token: &AdminToken, req: &Request) -> Response {
    match route(token, req) {
        Ok(r) => execute(server, r).await,
        Err(resp) => resp,
    }
}

fn to_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(&r.body).expect("API bodies serialize");
    body.push(b'\n');
    let mut out = hyper::Response::new(Full::new(Bytes::from(body)));
    *out.status_mut() = r.status;
    let h = out.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (name, value) in r.headers {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    out
}

async fn answer_http(
    server: &ServerHandle,
    token: &AdminToken,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return to_hyper(Response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request bodies are at most {} KiB", MAX_BODY / 1024),
            ))
        }
    };
    let req = Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        authorization: parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    to_hyper(handle(server, token, &req).await)
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the operator API on `listener` until the task is dropped.
pub async fn serve(server: ServerHandle, token: AdminToken, listener: tokio::net::TcpListener) {
    let state = Arc::new((server, token));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "operator API accept failed");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer_http(&state.0, &state.1, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves the operator API there on a new task; returns
/// the address bound (port 0 picks a free one).
pub async fn spawn(
    server: ServerHandle,
    token: AdminToken,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for the operator API: {e}; is another server running? (--admin-listen picks another address)"),
        )
    })?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(server, token, listener));
    Ok(bound)
}

/// The admin token to use: `given`, else the one in `DIR/admin-token`,
/// else a new random one written there (mode 0600). Returns the token and
/// the file it is in (`None` when given).
pub fn load_or_create_token(
    data_dir: &std::path::Path,
    given: Option<&str>,
    random: impl FnOnce(&mut [u8]),
) -> std::io::Result<(String, Option<std::path::PathBuf>)> {
    if let Some(t) = given {
        return Ok((t.to_string(), None));
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((t.trim().to_string(), Some(path))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("cannot read the admin token {}: {e}", path.display()),
            ))
        }
    }
    let mut bytes = [0u8; 32];
    random(&mut bytes);
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot write the admin token {}: {e}", path.display()),
        )
    })?;
    use std::io::Write;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    Ok((token, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str, auth: Option<&str>, body: &str) -> Request {
        Request {
            method,
            path: path.into(),
            authorization: auth.map(str::to_string),
            body: Bytes::from(body.to_string()),
        }
    }

    fn token() -> AdminToken {
        AdminToken::new("admin-secret")
    }

    fn code(r: &Response) -> &str {
        r.body["code"].as_str().unwrap()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_refused() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("BEARER  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn every_request_needs_the_admin_token() {
        let t = token();
        for auth in [None, Some("Bearer wrong"), Some("Basic admin-secret")] {
            let r = route(&t, &req(Method::GET, "/v1/agents", auth, "")).unwrap_err();
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert!(r.headers.iter().any(|(n, _)| *n == "www-authenticate"));
        }
        // An unknown path is not revealed to an unauthenticated client.
        let r = route(&t, &req(Method::GET, "/nope", None, "")).unwrap_err();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let r = route(
            &t,
            &req(Method::GET, "/v1/agents", Some("Bearer wrong"), ""),
        )
        .unwrap_err();
        assert_eq!(code(&r), "invalid_admin_token");
        assert_eq!(
            route(
                &t,
                &req(Method::GET, "/v1/agents", Some("bearer admin-secret"), "")
            ),
            Ok(Route::ListAgents)
        );
    }

    #[test]
    fn paths_map_to_routes() {
        let t = token();
        let ok = |m: Method, p: &str, body: &str| {
            route(&t, &req(m, p, Some("Bearer admin-secret"), body)).unwrap()
        };
        assert_eq!(ok(Method::GET, "/v1/agents/", ""), Route::ListAgents);
        assert_eq!(
            ok(Method::GET, "/v1/agents/pst-1", ""),
            Route::GetAgent("pst-1".into())
        );
        assert_eq!(
            ok(
                Method::POST,
                "/v1/agents/pst-1/commands",
                r#"{"command":"hostname"}"#
            ),
            Route::Dispatch {
                agent: "pst-1".into(),
                command: "hostname".into()
            }
        );
        assert_eq!(
            ok(Method::GET, "/v1/agents/pst-1/commands", ""),
            Route::ListCommands(Some("pst-1".into()))
        );
        assert_eq!(
            ok(Method::GET, "/v1/commands", ""),
            Route::ListCommands(None)
        );
        assert_eq!(
            ok(Method::GET, "/v1/commands/cmd-0001", ""),
            Route::GetCommand("cmd-0001".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/agents/a/evict", ""),
            Route::Evict("a".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/agents/a/wake", ""),
            Route::Wake("a".into())
        );
        assert_eq!(
            ok(Method::POST, "/v1/agents/a/revoke", ""),
            Route::Revoke("a".into())
        );
        assert_eq!(
            ok(
                Method::POST,
                "/v1/agents/a/upgrade",
                r#"{"version":"1.1.0"}"#
            ),
            Route::Upgrade {
                agent: "a".into(),
                version: "1.1.0".into(),
                defect: None
            }
        );
        assert_eq!(
            ok(
                Method::POST,
                "/v1/builds",
                r#"{"version":"1.1.0","defect":"fails-self-test"}"#
            ),
            Route::PublishBuild {
                version: "1.1.0".into(),
                defect: Some(BuildDefect::FailsSelfTest)
            }
        );
        assert_eq!(ok(Method::GET, "/v1/upgrades", ""), Route::ListUpgrades);
    }

    #[test]
    fn unknown_paths_wrong_methods_and_bad_bodies_get_json_errors() {
        let t = token();
        let err = |m: Method, p: &str, body: &str| {
            route(&t, &req(m, p, Some("Bearer admin-secret"), body)).unwrap_err()
        };
        let r = err(Method::GET, "/v2/agents", "");
        assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
        assert!(r.body["message"]
            .as_str()
            .unwrap()
            .contains("GET /v1/agents"));
        let r = err(Method::DELETE, "/v1/agents", "");
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers, vec![("allow", "GET".to_string())]);
        let r = err(Method::GET, "/v1/agents/a/evict", "");
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
        let r = err(Method::POST, "/v1/agents/a/commands", "{not json");
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::BAD_REQUEST, "bad_request")
        );
        let r = err(Method::POST, "/v1/agents/a/commands", r#"{"command":"  "}"#);
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let r = err(
            Method::POST,
            "/v1/builds",
            r#"{"version":"1","defect":"nope"}"#,
        );
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("fails-self-test"),
            "the message lists the valid defects: {}",
            r.body
        );
    }

    #[test]
    fn an_agent_is_found_by_name_preferring_the_newest_unrevoked_or_by_id() {
        let a = |name: &str, id: &str, at: u64, revoked: bool| AgentSummary {
            name: name.into(),
            agent_id: id.into(),
            status: "offline".into(),
            version: "1".into(),
            site: None,
            enrolled_at_us: at,
            last_seen_us: None,
            last_seen_ago_ms: None,
            wake_attempts: 0,
            lifecycle: None,
            last_provision_error: None,
            upgrade_phase: None,
            upgrade_to: None,
            revoked,
            tunnel_conn: None,
            ws_conn: None,
        };
        let all = vec![
            a("x", "id-1", 1, false),
            a("x", "id-2", 2, true),
            a("x", "id-3", 3, false),
            a("y", "id-4", 4, true),
        ];
        assert_eq!(find_agent(&all, "x").unwrap().agent_id, "id-3");
        assert_eq!(find_agent(&all, "y").unwrap().agent_id, "id-4");
        assert_eq!(find_agent(&all, "id-1").unwrap().name, "x");
        assert!(find_agent(&all, "z").is_none());
    }

    #[test]
    fn the_admin_token_file_is_created_once_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("fleet-admin-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (t1, p1) = load_or_create_token(&dir, None, |b| b.fill(7)).unwrap();
        assert_eq!(t1, "07".repeat(32));
        let p1 = p1.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p1).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (t2, _) = load_or_create_token(&dir, None, |b| b.fill(9)).unwrap();
        assert_eq!(t2, t1, "a second start reads the same token");
        let (t3, p3) = load_or_create_token(&dir, Some("given"), |b| b.fill(9)).unwrap();
        assert_eq!((t3.as_str(), p3), ("given", None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
