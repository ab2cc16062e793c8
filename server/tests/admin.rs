//! The operator API on real loopback sockets: the real server, a real agent
//! enrolled and connected, and every endpoint driven over HTTP (through
//! `fleetctl`'s client and its command line), refused requests included.

use std::sync::Arc;
use std::time::Duration;

use agent::{AgentConfig, StatusCell};
use hyper::{Method, StatusCode};
use proto::real::JsonlObserver;
use serde_json::{json, Value};
use server::admin::AdminToken;
use server::fleetctl::{exit, Cli, Client};
use server::ServerConfig;

const ADMIN: &str = "admin-secret";
const NAME: &str = "ops-1";

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-admin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Polls `f` every 20 ms until it gives `Some`, for at most 30 s.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ask(c: &Client, m: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    c.request(m, path, body).await.expect("the API answers")
}

async fn fleetctl(server: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    use clap::Parser;
    let mut argv = vec!["fleetctl", "--server", server, "--token", token];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("valid fleetctl arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = server::fleetctl::run(cli, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// One request to every endpoint of the operator API (`server::admin`'s
/// table), with a valid body where it takes one.
fn every_endpoint() -> Vec<(Method, String, Option<Value>)> {
    let all = vec![
        (Method::GET, "/v1/agents".to_string(), None),
        (Method::GET, format!("/v1/agents/{NAME}"), None),
        (
            Method::POST,
            format!("/v1/agents/{NAME}/commands"),
            Some(json!({"command": "hostname"})),
        ),
        (Method::GET, format!("/v1/agents/{NAME}/commands"), None),
        (Method::GET, "/v1/commands".to_string(), None),
        (Method::GET, "/v1/commands/cmd-0001".to_string(), None),
        (Method::POST, format!("/v1/agents/{NAME}/evict"), None),
        (Method::POST, format!("/v1/agents/{NAME}/wake"), None),
        (Method::POST, format!("/v1/agents/{NAME}/revoke"), None),
        (
            Method::POST,
            format!("/v1/agents/{NAME}/upgrade"),
            Some(json!({"version": "9.9.9"})),
        ),
        (Method::GET, "/v1/upgrades".to_string(), None),
        (
            Method::POST,
            "/v1/builds".to_string(),
            Some(json!({"version": "9.9.9"})),
        ),
    ];
    // With the token each is a route of its own, and together they are
    // every route: a new route fails to compile in `swept` until it is
    // listed here.
    let token = AdminToken::new(ADMIN);
    let mut seen = std::collections::BTreeSet::new();
    for (m, path, body) in &all {
        let req = server::admin::Request {
            method: m.clone(),
            path: path.clone(),
            authorization: Some(format!("Bearer {ADMIN}")),
            body: body
                .as_ref()
                .map(|b| serde_json::to_vec(b).unwrap().into())
                .unwrap_or_default(),
        };
        let r = server::admin::route(&token, &req).expect("a valid request");
        assert!(seen.insert(swept(&r)), "{m} {path} twice");
    }
    assert_eq!(seen.len(), 12, "every endpoint once");
    all
}

/// Which endpoint a route is (an exhaustive match: no route is left out).
fn swept(r: &server::admin::Route) -> &'static str {
    use server::admin::Route;
    match r {
        Route::ListAgents => "list agents",
        Route::GetAgent(_) => "get agent",
        Route::Dispatch { .. } => "dispatch",
        Route::ListCommands(Some(_)) => "agent's commands",
        Route::ListCommands(None) => "commands",
        Route::GetCommand(_) => "get command",
        Route::Evict(_) => "evict",
        Route::Wake(_) => "wake",
        Route::Revoke(_) => "revoke",
        Route::Upgrade { .. } => "upgrade",
        Route::ListUpgrades => "upgrades",
        Route::PublishBuild { .. } => "publish build",
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_operator_endpoint_on_loopback() {
    let server_dir = temp_dir("server");
    let agent_dir = temp_dir("agent");
    let env = proto::real::env(
        "server",
        &server_dir,
        Arc::new(JsonlObserver::new(None, None)),
    )
    .unwrap();
    let handle = server::start(
        env,
        ServerConfig {
            hostname: "localhost".into(),
            enroll_port: 0,
            tunnel_port: 0,
            ws_port: 0,
            enroll_tokens: vec!["enroll-token".into()],
            ..ServerConfig::default()
        },
    )
    .await
    .expect("server starts on ephemeral loopback ports");
    let addr = server::admin::spawn(
        handle.clone(),
        AdminToken::new(ADMIN),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the operator API binds loopback");
    let url = format!("http://{addr}");
    let api = Client::new(&url, Some(ADMIN.into())).unwrap();

    // Refused: no token, a wrong one, an enrollment token; nothing is revealed.
    for token in [None, Some("wrong"), Some("enroll-token")] {
        let c = Client::new(&url, token.map(String::from)).unwrap();
        for (m, path) in [
            (Method::GET, "/v1/agents"),
            (Method::POST, "/v1/agents/ops-1/revoke"),
            (Method::GET, "/nowhere"),
        ] {
            let (status, body) = ask(&c, m, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?} {path}");
            assert!(
                body["message"].as_str().unwrap().contains("admin token"),
                "{body}"
            );
        }
    }
    let (code, _, err) = fleetctl(&url, "wrong", &["agents"]).await;
    assert_eq!(code, exit::UNAUTHORIZED, "{err}");
    assert!(err.contains("invalid_admin_token, HTTP 401"), "{err}");

    // Enroll and run a real agent.
    let agent_env = proto::real::env(
        &format!("agent:{NAME}"),
        &agent_dir,
        Arc::new(JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new(NAME, "localhost", "enroll-token", &handle.ca_pem());
    cfg.enroll_port = handle.ports().enroll;
    cfg.liveness_port = 0;
    cfg.site = Some("lab".into());
    let status = StatusCell::default();
    let agent_id = tokio::time::timeout(
        Duration::from_secs(30),
        agent::service::up(&agent_env, &cfg, &status),
    )
    .await
    .expect("up finishes")
    .expect("up succeeds");
    let service = tokio::spawn(agent::service::run(agent_env, cfg, status.clone()));

    // GET /v1/agents: the agent, online, with its site.
    let agents = until("agent online", || async {
        let (s, v) = ask(&api, Method::GET, "/v1/agents", None).await;
        assert_eq!(s, StatusCode::OK);
        (v["agents"][0]["status"] == "online").then_some(v)
    })
    .await;
    let a = &agents["agents"][0];
    assert_eq!(a["name"], NAME);
    assert_eq!(a["agent_id"], agent_id.as_str());
    assert_eq!(a["site"], "lab");
    assert_eq!(a["version"], "1.0.0");
    assert_eq!(
        a["wake_attempts"], 0,
        "checked in since the provisioning wake"
    );
    assert!(a.get("last_provision_error").is_some());
    assert!(a.get("upgrade_phase").is_some());
    let (code, out, _) = fleetctl(&url, ADMIN, &["agents"]).await;
    assert_eq!(code, exit::OK);
    assert!(out.starts_with("NAME"), "{out}");
    assert!(
        out.contains(NAME) && out.contains("online") && out.contains("lab"),
        "{out}"
    );

    // Every endpoint refuses a request without the admin token, with a
    // wrong one and with an enrollment token, and nothing happens: no
    // command (the first dispatch below still gets cmd-0001), no eviction,
    // wake, revocation, build or upgrade.
    let refused = every_endpoint();
    for token in [None, Some("wrong"), Some("enroll-token")] {
        let c = Client::new(&url, token.map(String::from)).unwrap();
        for (m, path, body) in &refused {
            let (status, v) = ask(&c, m.clone(), path, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?} {m} {path}");
            let code = if token.is_none() {
                "missing_admin_token"
            } else {
                "invalid_admin_token"
            };
            assert_eq!(v["code"], code, "{token:?} {m} {path}: {v}");
        }
    }
    let (_, v) = ask(&api, Method::GET, &format!("/v1/agents/{NAME}"), None).await;
    assert_eq!(
        (
            v["status"].as_str(),
            v["ws_conn"].as_str(),
            v["wake_attempts"].as_u64()
        ),
        (Some("online"), a["ws_conn"].as_str(), Some(0)),
        "{v}"
    );
    let (_, v) = ask(&api, Method::GET, "/v1/commands", None).await;
    assert_eq!(v["commands"], json!([]));
    let (_, v) = ask(&api, Method::GET, "/v1/upgrades", None).await;
    assert_eq!(v["upgrades"], json!([]));

    // GET /v1/agents/<name> and by id; unknown is a JSON 404.
    for key in [NAME, agent_id.as_str()] {
        let (s, v) = ask(&api, Method::GET, &format!("/v1/agents/{key}"), None).await;
        assert_eq!(
            (s, v["agent_id"].as_str()),
            (StatusCode::OK, Some(agent_id.as_str()))
        );
    }
    let (s, v) = ask(&api, Method::GET, "/v1/agents/nobody", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_agent"))
    );

    // Dispatch, then read the command's status and attempts until completed.
    let (s, v) = ask(
        &api,
        Method::POST,
        &format!("/v1/agents/{NAME}/commands"),
        Some(json!({"command": "hostname"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["command_id"], "cmd-0001");
    assert_eq!(v["attempts"], 1, "offered at once on the live session");
    let done = until("cmd-0001 completed", || async {
        let (s, v) = ask(&api, Method::GET, "/v1/commands/cmd-0001", None).await;
        assert_eq!(s, StatusCode::OK);
        (v["status"] == "completed").then_some(v)
    })
    .await;
    assert_eq!(done["output"], NAME);
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["attempts"], 1);
    let (s, v) = ask(
        &api,
        Method::POST,
        "/v1/agents/nobody/commands",
        Some(json!({"command": "x"})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_agent"))
    );

    // The same through fleetctl: dispatch --wait prints the result.
    let (code, out, err) =
        fleetctl(&url, ADMIN, &["dispatch", NAME, "hostname", "--wait", "30"]).await;
    assert_eq!(code, exit::OK, "{out}{err}");
    assert!(out.contains("status      completed"), "{out}");
    assert!(out.contains(&format!("  {NAME}")), "{out}");
    let (code, out, _) = fleetctl(&url, ADMIN, &["--json", "command", "cmd-0001"]).await;
    assert_eq!(code, exit::OK);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "completed");

    // Command lists, all and per agent; an unknown id is a JSON 404.
    let (_, all) = ask(&api, Method::GET, "/v1/commands", None).await;
    let ids: Vec<&str> = all["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_id"].as_str().unwrap())
        .collect();
    // The refused dispatch to `nobody` used up cmd-0002 (ids are allocated
    // in dispatch order, as the simulator's outcome numbers them).
    assert_eq!(ids, ["cmd-0001", "cmd-0003"]);
    let (s, mine) = ask(
        &api,
        Method::GET,
        &format!("/v1/agents/{NAME}/commands"),
        None,
    )
    .await;
    assert_eq!(
        (s, mine["commands"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    let (s, v) = ask(&api, Method::GET, "/v1/commands/cmd-9999", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_command"))
    );

    // Evict: the session closes and the agent comes back on a new one.
    let before = a["ws_conn"].as_str().unwrap().to_string();
    let (s, v) = ask(
        &api,
        Method::POST,
        &format!("/v1/agents/{NAME}/evict"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["closed_conn"], before.as_str());
    until("agent reconnected after eviction", || async {
        let (_, v) = ask(&api, Method::GET, &format!("/v1/agents/{NAME}"), None).await;
        (v["status"] == "online" && v["ws_conn"] != before.as_str()).then_some(())
    })
    .await;

    // Wake: a new escalation starts.
    let (s, v) = ask(&api, Method::POST, &format!("/v1/agents/{NAME}/wake"), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["wake_attempts"], 1);
    assert_eq!(v["lifecycle"], "provisioning");

    // Publish a build; an upgrade to a corrupt build is requested, staged
    // and reverted by the real agent (the download misses the hash).
    let (s, v) = ask(
        &api,
        Method::POST,
        "/v1/builds",
        Some(json!({"version": "1.1.0"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let (s, v) = ask(
        &api,
        Method::POST,
        &format!("/v1/agents/{NAME}/upgrade"),
        Some(json!({"version": "1.2.0", "defect": "corrupt"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        (v["from_version"].as_str(), v["phase"].as_str()),
        (Some("1.0.0"), Some("requested"))
    );
    let (s, v) = ask(&api, Method::GET, "/v1/upgrades", None).await;
    assert_eq!(
        (s, v["upgrades"][0]["to_version"].as_str()),
        (StatusCode::OK, Some("1.2.0"))
    );
    until("upgrade reverted", || async {
        let (_, v) = ask(&api, Method::GET, &format!("/v1/agents/{NAME}"), None).await;
        (v["upgrade_phase"] == "reverted").then_some(())
    })
    .await;

    // Bad requests: JSON 400, 404, 405 and 413.
    let (s, v) = ask(
        &api,
        Method::POST,
        "/v1/builds",
        Some(json!({"version": "1", "defect": "nope"})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_request"))
    );
    let (s, v) = ask(&api, Method::GET, "/v1/nothing", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (s, v) = ask(&api, Method::DELETE, &format!("/v1/agents/{NAME}"), None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let huge = "x".repeat(server::admin::MAX_BODY + 1);
    let (s, v) = ask(
        &api,
        Method::POST,
        &format!("/v1/agents/{NAME}/commands"),
        Some(json!({"command": huge})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Revoke: refused from now on; the operator sees it as revoked.
    let (s, v) = ask(
        &api,
        Method::POST,
        &format!("/v1/agents/{NAME}/revoke"),
        None,
    )
    .await;
    assert_eq!(
        (s, v["revoked"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{v}"
    );
    let (s, v) = ask(&api, Method::GET, &format!("/v1/agents/{NAME}"), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("revoked")));
    let (code, _, err) = fleetctl(&url, ADMIN, &["dispatch", NAME, "hostname"]).await;
    assert_eq!(code, exit::API_ERROR, "{err}");
    assert!(err.contains("unknown_agent, HTTP 404"), "{err}");

    // The real fleetctl binary: table output, and its documented exit codes.
    let run_bin = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_fleetctl"))
                .args(args)
                .env_remove("FLEETCTL_TOKEN")
                .env_remove("FLEETCTL_SERVER")
                .env_remove("FLEETCTL_TOKEN_FILE")
                .output()
                .expect("fleetctl runs")
        })
    };
    let with = |token: &str, rest: &[&str]| {
        let mut v = vec![
            "--server".to_string(),
            url.clone(),
            "--token".into(),
            token.into(),
        ];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let out = run_bin(with(ADMIN, &["commands", NAME])).await.unwrap();
    assert_eq!(out.status.code(), Some(exit::OK), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ID"), "{stdout}");
    assert!(
        stdout.contains("cmd-0001  ops-1  completed  1         0     hostname"),
        "{stdout}"
    );
    let out = run_bin(with("wrong", &["agents"])).await.unwrap();
    assert_eq!(out.status.code(), Some(exit::UNAUTHORIZED), "{out:?}");
    let out = run_bin(with(ADMIN, &["no-such-command"])).await.unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE), "{out:?}");

    // Nothing listens: fleetctl says so with its own exit code.
    let (code, _, err) = fleetctl("http://127.0.0.1:1", ADMIN, &["agents"]).await;
    assert_eq!(code, exit::UNREACHABLE, "{err}");

    service.abort();
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}
