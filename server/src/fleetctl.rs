//! `fleetctl`: the command line of the operator API (see [`crate::admin`]).
//!
//! [`Cli`] is the parsed command line and [`run`] does the work, writing to
//! the given outputs and returning the exit code ([`exit`]), so tests run
//! the same code as the binary. [`Client`] is a small HTTP/1.1 client for
//! the API.
//!
//! The server is `--server` (default `http://127.0.0.1:7443`, or
//! `FLEETCTL_SERVER`); the admin token is `--token`, else `FLEETCTL_TOKEN`,
//! else the first line of `--token-file` (default `FLEETCTL_TOKEN_FILE`, else
//! `fleet-server-data/admin-token`, the server's default data directory).

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use proto::build::BuildDefect;
use serde_json::{json, Value};

use crate::admin::{AgentSummary, ADMIN_PORT, ADMIN_TOKEN_FILE};
use crate::store::{CommandRecord, CommandStatus};

/// Exit codes of `fleetctl`.
pub mod exit {
    /// The request succeeded.
    pub const OK: i32 = 0;
    /// The server answered an error (unknown agent or command, bad request,
    /// an upgrade under way, a store failure).
    pub const API_ERROR: i32 = 1;
    /// Bad command-line arguments.
    pub const USAGE: i32 = 2;
    /// The operator API could not be reached or did not answer HTTP.
    pub const UNREACHABLE: i32 = 3;
    /// The admin token was missing or refused (HTTP 401).
    pub const UNAUTHORIZED: i32 = 4;
    /// `dispatch --wait`: the command ended undeliverable or timed out, or
    /// was not completed within the wait.
    pub const NOT_COMPLETED: i32 = 5;
}

const AFTER_HELP: &str = "\
Examples:
  fleetctl agents
  fleetctl agent pst-server
  fleetctl dispatch pst-server hostname --wait 30
  fleetctl dispatch pst-server -- uname -a
  fleetctl command cmd-0001
  fleetctl commands pst-server
  fleetctl evict pst-server
  fleetctl wake pst-server
  fleetctl revoke pst-server
  fleetctl publish-build 1.1.0
  fleetctl upgrade pst-server 1.1.0
  fleetctl --json agents | jq '.agents[].status'
  fleetctl --server http://10.0.0.5:7443 --token-file /var/lib/fleet/admin-token agents

Exit codes:
  0  the request succeeded
  1  the server answered an error (unknown agent or command, bad request, conflict)
  2  bad command-line arguments
  3  the operator API could not be reached
  4  the admin token was missing or refused
  5  dispatch --wait: the command was not completed (undeliverable, timed out, or not within the wait)";

/// The operator's command line for `fleet-server`.
#[derive(Parser, Debug, Clone)]
#[command(name = "fleetctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The operator API (plain HTTP). Default: $FLEETCTL_SERVER, else http://127.0.0.1:7443.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// The admin token. Default: $FLEETCTL_TOKEN, else the token file.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// File holding the admin token. Default: $FLEETCTL_TOKEN_FILE, else
    /// fleet-server-data/admin-token.
    #[arg(long, global = true)]
    pub token_file: Option<std::path::PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// A `fleetctl` subcommand.
#[derive(Subcommand, Debug, Clone)]
pub enum Cmd {
    /// List every agent: status, version, site, last seen, wakes, upgrade, error.
    Agents,
    /// Show one agent (by name or agent id).
    Agent {
        /// The agent's name or id.
        name: String,
    },
    /// Dispatch a command to an agent; prints its id.
    Dispatch {
        /// The agent's name.
        name: String,
        /// The command line; several words are joined with spaces (put words
        /// that start with `-` after `--`).
        #[arg(required = true, num_args = 1..)]
        command: Vec<String>,
        /// Wait up to this many seconds for the command to complete and print its result.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// Show one command: status, attempts, result.
    Command {
        /// The command's id (cmd-0001, ...).
        id: String,
    },
    /// List commands, of one agent or all.
    Commands {
        /// Only this agent's.
        name: Option<String>,
    },
    /// Close an agent's command-channel session (it reconnects).
    Evict {
        /// The agent's name.
        name: String,
    },
    /// Wake an agent and start a check-in escalation.
    Wake {
        /// The agent's name.
        name: String,
    },
    /// Revoke an agent's credential (certificate and agent token).
    Revoke {
        /// The agent's name.
        name: String,
    },
    /// Publish an agent build so agents can download it.
    PublishBuild {
        /// The build's version.
        version: String,
        /// Inject a defect: corrupt, fails-self-test, never-heartbeats, crashes-on-start.
        #[arg(long)]
        defect: Option<String>,
    },
    /// Ask an agent to upgrade itself to a version (publishes the build).
    Upgrade {
        /// The agent's name.
        name: String,
        /// The version to go to.
        version: String,
        /// Inject a defect into the build (as for publish-build).
        #[arg(long)]
        defect: Option<String>,
    },
    /// List every upgrade marker and status.
    Upgrades,
}

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--server` is not an `http://host:port` address.
    #[error("`{0}` is not an operator API address; use http://HOST:PORT (the API is plain HTTP)")]
    BadServer(String),
    /// Connecting failed.
    #[error("cannot connect to the operator API at {addr}: {source}; is fleet-server running with --admin-listen {addr}?")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting or the answer took too long.
    #[error("the operator API at {0} did not answer within 10 s")]
    Timeout(String),
    /// Not an HTTP answer, or the connection broke.
    #[error("the operator API at {addr} did not answer HTTP: {message}")]
    Http {
        /// Where.
        addr: String,
        /// What went wrong.
        message: String,
    },
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A client of the operator API.
#[derive(Clone, Debug)]
pub struct Client {
    addr: String,
    token: Option<String>,
}

impl Client {
    /// A client of the API at `server` (`http://host:port` or `host:port`).
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let rest = server.strip_prefix("http://").unwrap_or(server);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') || server.starts_with("https://") {
            return Err(ClientError::BadServer(server.into()));
        }
        let addr = if rest
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            rest.to_string()
        } else {
            format!("{rest}:{ADMIN_PORT}")
        };
        Ok(Client { addr, token })
    }

    /// Sends one request; the answer's status and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        proto::time::timeout(REQUEST_TIMEOUT, self.request_inner(method, path, body))
            .await
            .map_err(|_| ClientError::Timeout(self.addr.clone()))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let http = |message: String| ClientError::Http {
            addr: self.addr.clone(),
            message,
        };
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("JSON serializes"))
            .unwrap_or_default();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        driver.abort();
        let value = serde_json::from_slice(&body)
            .map_err(|e| http(format!("the answer (HTTP {status}) is not JSON: {e}")))?;
        Ok((status, value))
    }
}

// Settings resolved from flags and the environment.
fn resolve(cli: &Cli) -> Result<(String, Option<String>), String> {
    let server = cli
        .server
        .clone()
        .or_else(|| std::env::var("FLEETCTL_SERVER").ok())
        .unwrap_or_else(|| format!("http://127.0.0.1:{ADMIN_PORT}"));
    if let Some(t) = cli
        .token
        .clone()
        .or_else(|| std::env::var("FLEETCTL_TOKEN").ok())
    {
        return Ok((server, Some(t)));
    }
    let (file, explicit) = match cli
        .token_file
        .clone()
        .or_else(|| std::env::var_os("FLEETCTL_TOKEN_FILE").map(Into::into))
    {
        Some(f) => (f, true),
        None => (
            std::path::Path::new("fleet-server-data").join(ADMIN_TOKEN_FILE),
            false,
        ),
    };
    match std::fs::read_to_string(&file) {
        Ok(t) => Ok((server, t.lines().next().map(|l| l.trim().to_string()))),
        Err(e) if explicit => Err(format!(
            "cannot read the admin token file {}: {e}",
            file.display()
        )),
        Err(_) => Ok((server, None)),
    }
}

fn parse_defect(d: &Option<String>) -> Result<Option<BuildDefect>, String> {
    d.as_ref()
        .map(|d| {
            serde_json::from_value(Value::String(d.clone())).map_err(|_| {
                format!("unknown defect `{d}`; use corrupt, fails-self-test, never-heartbeats or crashes-on-start")
            })
        })
        .transpose()
}

/// Runs `fleetctl` with parsed arguments; returns the exit code.
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(&cli, out, err).await {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            let _ = writeln!(err, "fleetctl: {m}");
            exit::USAGE
        }
        Err(Failure::Client(e)) => {
            let _ = writeln!(err, "fleetctl: {e}");
            exit::UNREACHABLE
        }
        Err(Failure::Api { status, body }) => {
            if cli.json {
                let _ = writeln!(out, "{body}");
            }
            let code = body["code"].as_str().unwrap_or("error");
            let message = body["message"].as_str().unwrap_or("(no message)");
            let _ = writeln!(
                err,
                "fleetctl: {message} ({code}, HTTP {})",
                status.as_u16()
            );
            if status == StatusCode::UNAUTHORIZED {
                let _ = writeln!(
                    err,
                    "fleetctl: pass the admin token with --token, $FLEETCTL_TOKEN or --token-file (the server's DATA/admin-token)"
                );
                exit::UNAUTHORIZED
            } else {
                exit::API_ERROR
            }
        }
    }
}

enum Failure {
    Usage(String),
    Client(ClientError),
    Api { status: StatusCode, body: Value },
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        Failure::Client(e)
    }
}

async fn call(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let (status, body) = client.request(method, path, body).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(Failure::Api { status, body })
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, Failure> {
    serde_json::from_value(v.clone()).map_err(|e| {
        Failure::Client(ClientError::Http {
            addr: "the server".into(),
            message: format!("unexpected answer: {e}"),
        })
    })
}

async fn run_inner(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<i32, Failure> {
    let (server, token) = resolve(cli).map_err(Failure::Usage)?;
    let client = Client::new(&server, token)?;
    let get = |path: String| {
        let client = client.clone();
        async move { call(&client, Method::GET, &path, None).await }
    };
    let post = |path: String, body: Option<Value>| {
        let client = client.clone();
        async move { call(&client, Method::POST, &path, body).await }
    };
    let v = match &cli.command {
        Cmd::Agents => {
            let v = get("/v1/agents".into()).await?;
            if !cli.json {
                let agents: Vec<AgentSummary> = decode(&v["agents"])?;
                print_agents(out, &agents);
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Agent { name } => {
            let v = get(format!("/v1/agents/{name}")).await?;
            if !cli.json {
                print_agent(out, &decode(&v)?);
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Dispatch {
            name,
            command,
            wait,
        } => {
            let v = post(
                format!("/v1/agents/{name}/commands"),
                Some(json!({ "command": command.join(" ") })),
            )
            .await?;
            let c: CommandRecord = decode(&v)?;
            let Some(secs) = wait else {
                if cli.json {
                    let _ = writeln!(out, "{v}");
                } else {
                    let _ = writeln!(out, "{}", c.command_id);
                }
                return Ok(exit::OK);
            };
            if !cli.json {
                let _ = writeln!(
                    err,
                    "dispatched {} to {name}; waiting up to {secs} s",
                    c.command_id
                );
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(*secs);
            let mut last = v;
            loop {
                let c: CommandRecord = decode(&last)?;
                let terminal = matches!(
                    c.status,
                    CommandStatus::Completed
                        | CommandStatus::Undeliverable
                        | CommandStatus::TimedOut
                );
                if terminal || tokio::time::Instant::now() >= deadline {
                    if cli.json {
                        let _ = writeln!(out, "{last}");
                    } else {
                        print_command(out, &c);
                    }
                    return Ok(if c.status == CommandStatus::Completed {
                        exit::OK
                    } else {
                        exit::NOT_COMPLETED
                    });
                }
                // Polling the operator's own API at 5 Hz: cheap, and bounded by the deadline.
                proto::time::sleep(Duration::from_millis(200)).await;
                last = get(format!("/v1/commands/{}", c.command_id)).await?;
            }
        }
        Cmd::Command { id } => {
            let v = get(format!("/v1/commands/{id}")).await?;
            if !cli.json {
                print_command(out, &decode(&v)?);
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Commands { name } => {
            let path = match name {
                Some(n) => format!("/v1/agents/{n}/commands"),
                None => "/v1/commands".into(),
            };
            let v = get(path).await?;
            if !cli.json {
                let commands: Vec<CommandRecord> = decode(&v["commands"])?;
                print_commands(out, &commands);
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Evict { name } => {
            let v = post(format!("/v1/agents/{name}/evict"), None).await?;
            if !cli.json {
                match v["closed_conn"].as_str() {
                    Some(c) => writeln!(out, "evicted {name}: closed its session {c}"),
                    None => writeln!(out, "{name} had no command-channel session; nothing closed"),
                }
                .ok();
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Wake { name } => {
            let v = post(format!("/v1/agents/{name}/wake"), None).await?;
            if !cli.json {
                let _ = writeln!(
                    out,
                    "woke {name}: wake attempt {}, lifecycle {}",
                    v["wake_attempts"],
                    v["lifecycle"].as_str().unwrap_or("?")
                );
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Revoke { name } => {
            let v = post(format!("/v1/agents/{name}/revoke"), None).await?;
            if !cli.json {
                let _ = writeln!(
                    out,
                    "revoked {name} ({}): its certificate and agent token are refused from now on",
                    v["agent_id"].as_str().unwrap_or("?")
                );
                return Ok(exit::OK);
            }
            v
        }
        Cmd::PublishBuild { version, defect } => {
            let defect = parse_defect(defect).map_err(Failure::Usage)?;
            let v = post(
                "/v1/builds".into(),
                Some(json!({ "version": version, "defect": defect })),
            )
            .await?;
            if !cli.json {
                let _ = writeln!(
                    out,
                    "published {version}: sha256 {}",
                    v["sha256"].as_str().unwrap_or("?")
                );
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Upgrade {
            name,
            version,
            defect,
        } => {
            let defect = parse_defect(defect).map_err(Failure::Usage)?;
            let v = post(
                format!("/v1/agents/{name}/upgrade"),
                Some(json!({ "version": version, "defect": defect })),
            )
            .await?;
            if !cli.json {
                let _ = writeln!(
                    out,
                    "upgrade of {name} from {} to {version} requested (phase {}); follow it with `fleetctl agent {name}`",
                    v["from_version"].as_str().unwrap_or("?"),
                    v["phase"].as_str().unwrap_or("?")
                );
                return Ok(exit::OK);
            }
            v
        }
        Cmd::Upgrades => {
            let v = get("/v1/upgrades".into()).await?;
            if !cli.json {
                let rows: Vec<Vec<String>> = v["upgrades"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|u| {
                        [
                            "agent_name",
                            "from_version",
                            "to_version",
                            "phase",
                            "reason",
                        ]
                        .iter()
                        .map(|k| u[*k].as_str().unwrap_or("-").to_string())
                        .collect()
                    })
                    .collect();
                table(out, &["AGENT", "FROM", "TO", "PHASE", "REASON"], &rows);
                return Ok(exit::OK);
            }
            v
        }
    };
    let _ = writeln!(out, "{v}");
    Ok(exit::OK)
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

fn ago(seen_us: Option<u64>, ms: Option<u64>) -> String {
    match ms {
        None if seen_us.is_none() => "never".into(),
        None => "before a server restart".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms ago"),
        Some(ms) if ms < 120_000 => format!("{}s ago", ms / 1000),
        Some(ms) => format!("{}m ago", ms / 60_000),
    }
}

/// Prints rows under a header, columns padded to their widest cell.
fn table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for r in rows {
        let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
    }
}

fn print_agents(out: &mut dyn Write, agents: &[AgentSummary]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.status.clone(),
                a.version.clone(),
                opt(&a.site),
                ago(a.last_seen_us, a.last_seen_ago_ms),
                a.wake_attempts.to_string(),
                opt(&a.upgrade_phase),
                opt(&a.last_provision_error),
            ]
        })
        .collect();
    table(
        out,
        &[
            "NAME",
            "STATUS",
            "VERSION",
            "SITE",
            "LAST SEEN",
            "WAKES",
            "UPGRADE",
            "ERROR",
        ],
        &rows,
    );
}

fn print_agent(out: &mut dyn Write, a: &AgentSummary) {
    let lifecycle = a
        .lifecycle
        .map(|l| {
            serde_json::to_value(l)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
        })
        .unwrap_or_default();
    let upgrade = match (&a.upgrade_phase, &a.upgrade_to) {
        (Some(p), Some(to)) => format!("{p} (to {to})"),
        _ => "-".into(),
    };
    for (k, v) in [
        ("name", a.name.clone()),
        ("agent_id", a.agent_id.clone()),
        ("status", a.status.clone()),
        ("version", a.version.clone()),
        ("site", opt(&a.site)),
        ("last seen", ago(a.last_seen_us, a.last_seen_ago_ms)),
        ("wake attempts", a.wake_attempts.to_string()),
        ("lifecycle", opt(&lifecycle)),
        ("provision error", opt(&a.last_provision_error)),
        ("upgrade", upgrade),
        ("tunnel conn", opt(&a.tunnel_conn)),
        ("channel conn", opt(&a.ws_conn)),
        ("revoked", a.revoked.to_string()),
    ] {
        let _ = writeln!(out, "{k:<16}{v}");
    }
}

fn status_name(s: CommandStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn print_command(out: &mut dyn Write, c: &CommandRecord) {
    for (k, v) in [
        ("command_id", c.command_id.clone()),
        ("agent", c.agent_name.clone()),
        ("command", c.command.clone()),
        ("status", status_name(c.status)),
        ("attempts", c.attempts.to_string()),
        (
            "exit code",
            c.exit_code.map_or("-".into(), |e| e.to_string()),
        ),
    ] {
        let _ = writeln!(out, "{k:<12}{v}");
    }
    if let Some(o) = &c.output {
        let _ = writeln!(out, "output:");
        for l in o.lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
}

fn print_commands(out: &mut dyn Write, commands: &[CommandRecord]) {
    let rows: Vec<Vec<String>> = commands
        .iter()
        .map(|c| {
            vec![
                c.command_id.clone(),
                c.agent_name.clone(),
                status_name(c.status),
                c.attempts.to_string(),
                c.exit_code.map_or("-".into(), |e| e.to_string()),
                c.command.clone(),
            ]
        })
        .collect();
    table(
        out,
        &["ID", "AGENT", "STATUS", "ATTEMPTS", "EXIT", "COMMAND"],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_http_host_port() {
        assert_eq!(
            Client::new("http://127.0.0.1:7443", None).unwrap().addr,
            "127.0.0.1:7443"
        );
        assert_eq!(
            Client::new("localhost", None).unwrap().addr,
            "localhost:7443"
        );
        assert_eq!(Client::new("http://h:9/", None).unwrap().addr, "h:9");
        assert!(Client::new("https://h:9", None).is_err());
        assert!(Client::new("http://h:9/x", None).is_err());
    }

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A     BB\nlong  x\ns     y\n"
        );
    }

    #[test]
    fn defects_are_checked_before_anything_is_sent() {
        assert_eq!(
            parse_defect(&Some("fails-self-test".into())),
            Ok(Some(BuildDefect::FailsSelfTest))
        );
        assert!(parse_defect(&Some("nope".into()))
            .unwrap_err()
            .contains("crashes-on-start"));
        assert_eq!(parse_defect(&None), Ok(None));
    }

    #[test]
    fn the_help_names_every_example_and_exit_code() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for s in [
            "fleetctl agents",
            "fleetctl dispatch",
            "fleetctl upgrade",
            "Exit codes",
            "5  dispatch --wait",
        ] {
            assert!(help.contains(s), "{s} missing from:\n{help}");
        }
    }
}
