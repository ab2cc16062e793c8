//! The attacks of issue 17 replayed against the real `fleet-server` binary
//! on loopback, each next to a legitimate agent (`pc-1`, the agent library's
//! real `up` and service): the server's answer is asserted (refused,
//! limited, timed out) and so is that `pc-1` still runs commands.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::install::Credentials;
use agent::{AgentConfig, StatusCell};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use proto::env::Env;
use proto::msg::TUNNEL_ALPN;
use rustls_pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-enroll";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-security-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A running `fleet-server` on ephemeral loopback ports.
struct Server {
    child: Child,
    dir: PathBuf,
    enroll: u16,
    tunnel: u16,
    ws: u16,
    admin: server::fleetctl::Client,
    ca_pem: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fleet-server")
}

fn number_after(line: &str, marker: &str) -> u16 {
    let rest = &line[line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {line}"))
        + marker.len()..];
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn start(tag: &str, extra: &[&str]) -> Server {
    let dir = temp_dir(tag);
    let data = dir.join("srv");
    let mut child = Command::new(bin())
        .args(["--data", data.to_str().unwrap(), "--token", TOKEN])
        .args(["--enroll-port", "0", "--tunnel-port", "0", "--ws-port", "0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let keep = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            keep.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    let (mut ports, mut admin) = (None, None);
    while ports.is_none() || admin.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("fleet-server did not start: {:?}", lines.lock().unwrap()));
        if line.contains("enrollment on TCP") {
            ports = Some((
                number_after(&line, "enrollment on TCP "),
                number_after(&line, "tunnel on UDP "),
                number_after(&line, "command channel on TCP "),
            ));
        }
        if let Some(i) = line.find("operator API on http://") {
            let rest = &line[i + "operator API on http://".len()..];
            admin = Some(rest.split(';').next().unwrap().to_string());
        }
    }
    let (enroll, tunnel, ws) = ports.unwrap();
    let admin_token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let ca_pem = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    Server {
        child,
        dir,
        enroll,
        tunnel,
        ws,
        admin: server::fleetctl::Client::new(&admin.unwrap(), Some(admin_token)).unwrap(),
        ca_pem,
        stderr: lines,
    }
}

/// An agent enrolled by the real `up`; with `run`, its service runs.
struct Agent {
    env: Env,
    creds: Credentials,
    service: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(s) = &self.service {
            s.abort();
        }
    }
}

async fn agent(srv: &Server, name: &str, run: bool) -> Result<Agent, String> {
    let dir = srv.dir.join(name);
    let env = proto::real::env(
        &format!("agent:{name}"),
        &dir,
        Arc::new(proto::real::JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new(name, "localhost", TOKEN, &srv.ca_pem);
    cfg.enroll_port = srv.enroll;
    cfg.liveness_port = 0;
    cfg.heartbeat_interval_ms = 200;
    let status = StatusCell::default();
    tokio::time::timeout(
        Duration::from_secs(30),
        agent::service::up(&env, &cfg, &status),
    )
    .await
    .map_err(|_| "up timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let creds = agent::install::load(env.disk.as_ref()).unwrap().unwrap();
    let service = if run {
        let s = tokio::spawn(agent::service::run(env.clone(), cfg, status.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !(status.get().ws_connected && status.get().tunnel_connected) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never connected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(s)
    } else {
        None
    };
    Ok(Agent {
        env,
        creds,
        service,
    })
}

/// `pc-1` runs a command through the operator API, within 15 s.
async fn legit_works(srv: &Server, what: &str) {
    let (status, body) = srv
        .admin
        .request(
            Method::POST,
            "/v1/agents/pc-1/commands",
            Some(json!({"command": "hostname"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 202, "{what}: {body}");
    let id = body["command_id"].as_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, c) = srv
            .admin
            .request(Method::GET, &format!("/v1/commands/{id}"), None)
            .await
            .unwrap();
        if c["status"] == "completed" {
            assert_eq!(c["output"], "pc-1", "{what}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: pc-1's command did not complete: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls(env: &Env, ca_pem: &str, port: u16) -> Tls {
    let cfg = proto::tls::client_config(env, ca_pem, None, &[b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One enrollment request: the status, the Retry-After header and the body.
async fn enroll(env: &Env, srv: &Server, token: &str, body: Bytes) -> (u16, Option<String>, Value) {
    enroll_as(env, srv, token, None, body).await
}

async fn enroll_as(
    env: &Env,
    srv: &Server,
    token: &str,
    agent_token: Option<&str>,
    body: Bytes,
) -> (u16, Option<String>, Value) {
    let stream = tls(env, &srv.ca_pem, srv.enroll).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::post(proto::msg::ENROLL_PATH)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(t) = agent_token {
        req = req.header(proto::msg::AGENT_TOKEN_HEADER, t);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = match tx.send_request(req).await {
        Ok(r) => r,
        // The server answered and closed before the body was all sent.
        Err(e) => {
            driver.abort();
            return (0, None, Value::String(e.to_string()));
        }
    };
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn named(name: &str) -> Bytes {
    Bytes::from(json!({"name": name, "version": "1.0.0"}).to_string())
}

#[test]
fn without_a_token_the_server_refuses_to_start_and_says_what_to_do() {
    let dir = temp_dir("no-token");
    let out = Command::new(bin())
        .args(["--data", dir.join("srv").to_str().unwrap()])
        .args(["--enroll-port", "0", "--tunnel-port", "0", "--ws-port", "0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no enrollment token") && err.contains("--token"),
        "{err}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_second_enrollment_of_a_live_name_is_refused_and_bad_names_too() {
    let srv = start("names", &[]);
    let pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let (status, _, body) = enroll(&pc1.env, &srv, TOKEN, named("pc-1")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "name_in_use");
    assert!(
        body["message"].as_str().unwrap().contains("revoke"),
        "{body}"
    );
    for bad in ["", "pc\u{1b}[31m-1", "a b", "server", &"x".repeat(65)] {
        let (status, _, body) = enroll(&pc1.env, &srv, TOKEN, named(bad)).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["code"], "invalid_name", "{bad:?}");
        assert!(body["message"].as_str().unwrap().len() < 300, "{body}");
    }
    legit_works(&srv, "after a second pc-1 and bad names").await;
    // A wrong agent token proves nothing.
    let (status, _, _) = enroll_as(&pc1.env, &srv, TOKEN, Some("0000"), named("pc-1")).await;
    assert_eq!(status, 409);
    // pc-1 itself re-installing proves it with its agent token.
    let own = pc1.creds.file.agent_token.clone().unwrap();
    let (status, _, body) = enroll_as(&pc1.env, &srv, TOKEN, Some(&own), named("pc-1")).await;
    assert_eq!(status, 200, "{body}");
    // The refused attempts made no record: two pc-1s, the original and
    // its own re-enrollment.
    let (_, agents) = srv
        .admin
        .request(Method::GET, "/v1/agents", None)
        .await
        .unwrap();
    let pcs = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] == "pc-1")
        .count();
    assert_eq!(pcs, 2, "{agents}");
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_tokens_at_rate_get_429_with_retry_after() {
    let srv = start("rate", &["--enroll-rate", "5"]);
    let pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..20 {
        let (status, retry, _) = enroll(&pc1.env, &srv, "guess", named("evil-1")).await;
        answers.push((status, retry));
    }
    let limited: Vec<_> = answers.iter().filter(|(s, _)| *s == 429).collect();
    assert!(limited.len() >= 14, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 401 || *s == 429),
        "{answers:?}"
    );
    let retry: u64 = limited[0].1.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{answers:?}");
    legit_works(&srv, "during a token-guessing storm").await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_is_refused_after_its_uses_and_after_it_expires() {
    let srv = start("uses", &["--token-max-uses", "2"]);
    let pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let (status, _, body) = enroll(&pc1.env, &srv, TOKEN, named("pc-2")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = enroll(&pc1.env, &srv, TOKEN, named("pc-3")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "token_used_up");
    legit_works(&srv, "after the token is used up").await;
    drop(srv);

    let expired = start("expired", &["--token-expires", "1000"]);
    let dir = expired.dir.join("probe");
    let env = proto::real::env(
        "probe",
        &dir,
        Arc::new(proto::real::JsonlObserver::new(None, None)),
    )
    .unwrap();
    let (status, _, body) = enroll(&env, &expired, TOKEN, named("pc-1")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "token_expired");
}

#[tokio::test(flavor = "current_thread")]
async fn an_oversized_tunnel_line_closes_that_connection_only() {
    let srv = start("tunnel-line", &[]);
    let _pc1 = agent(&srv, "pc-1", true).await.unwrap();
    // The attacker is an enrolled peer with its own certificate.
    let evil = agent(&srv, "evil-1", false).await.unwrap();
    let tls = proto::tls::client_config(
        &evil.env,
        &evil.creds.ca_pem,
        Some((&evil.creds.cert_pem, &evil.creds.key_pem)),
        &[TUNNEL_ALPN],
    )
    .unwrap();
    let cfg = proto::quic::client_config(Arc::new(tls), [9; 32]).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.tunnel));
    let conn = endpoint
        .connect_with(cfg, addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let writer = async {
        // 8 MiB without a newline (the field's attack sent 256 MiB).
        for _ in 0..128 {
            if send.write_all(&chunk).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), writer).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("the gateway closes the connection");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(u64::from(c.error_code), u64::from(server::tunnel::TOO_LONG));
        }
        other => panic!("an application close, not {other:?}"),
    }
    legit_works(&srv, "after an oversized tunnel line").await;
}

#[tokio::test(flavor = "current_thread")]
async fn huge_bodies_and_huge_headers_are_refused() {
    let srv = start("bodies", &[]);
    let pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let (status, _, body) = enroll(&pc1.env, &srv, TOKEN, Bytes::from(vec![b'{'; 1 << 20])).await;
    // 413, or the connection closed after it while the body was still going.
    assert!(status == 413 || status == 0, "{status} {body}");
    // 1 MiB of headers: the connection is refused (431 or closed), not buffered.
    let mut stream = tls(&pc1.env, &srv.ca_pem, srv.enroll).await;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\n",
        proto::msg::ENROLL_PATH
    );
    req.push_str(&format!("x-junk: {}\r\n", "a".repeat(1 << 20)));
    let _ = stream.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    legit_works(&srv, "after huge bodies and headers").await;
}

// Connects, completes nothing, and reports how long the server kept it.
async fn held_for(port: u16, send: &[u8]) -> Duration {
    let start = tokio::time::Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.write_all(send).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "current_thread")]
async fn idle_and_stalled_handshakes_are_timed_out() {
    let srv = start("idle", &[]);
    let _pc1 = agent(&srv, "pc-1", true).await.unwrap();
    // A TLS ClientHello's first bytes, then silence: on 7171 and 8443.
    let partial = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
    let (a, b, c) = tokio::join!(
        held_for(srv.enroll, &[]),
        held_for(srv.ws, &partial),
        held_for(srv.enroll, &partial),
    );
    for (what, held) in [("idle 7171", a), ("stalled 8443", b), ("stalled 7171", c)] {
        let limit = server::HANDSHAKE_TIMEOUT + Duration::from_secs(5);
        assert!(held < limit, "{what}: held for {held:?}");
        assert!(
            held >= server::HANDSHAKE_TIMEOUT - Duration::from_secs(1),
            "{what}: {held:?}"
        );
    }
    legit_works(&srv, "after idle and stalled connections").await;
    assert!(
        !srv.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("panicked")),
        "{:?}",
        srv.stderr.lock().unwrap()
    );
}
