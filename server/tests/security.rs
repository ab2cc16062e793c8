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

/// The directory [`start`] gives the server of `tag` (its data is in `srv`).
fn dir_of(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fleet-security-{tag}-{}", std::process::id()))
}

fn start(tag: &str, extra: &[&str]) -> Server {
    start_cmd(tag, extra, Command::new(bin()))
}

/// [`start`] with the server run by `cmd` (a wrapper, or with more environment).
fn start_cmd(tag: &str, extra: &[&str], mut cmd: Command) -> Server {
    let dir = temp_dir(tag);
    let data = dir.join("srv");
    let mut child = cmd
        .args(["--data", data.to_str().unwrap(), "--token", TOKEN])
        .args(["--enroll-port", "0", "--tunnel-port", "0", "--ws-port", "0"])
        .args(if extra.contains(&"--admin-listen") {
            &[][..]
        } else {
            &["--admin-listen", "127.0.0.1:0"][..]
        })
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
    agent_at(srv, name, run, "localhost").await
}

/// [`agent`] for a server reached at `host` (its certificate's name).
async fn agent_at(srv: &Server, name: &str, run: bool, host: &str) -> Result<Agent, String> {
    let dir = srv.dir.join(name);
    let env = proto::real::env(
        &format!("agent:{name}"),
        &dir,
        Arc::new(proto::real::JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new(name, host, TOKEN, &srv.ca_pem);
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

/// Events named `event` in a JSON Lines event log.
fn events(path: &std::path::Path, event: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// A TCP connection to the server's `port` from the loopback address `from`.
async fn connect_from(from: [u8; 4], port: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    sock.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Whether the server closed `tcp` within `wait` (EOF or reset), sending nothing.
async fn closed_within(tcp: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("the server sent {n} bytes to a connection that sent none"),
        Err(_) => false,
    }
}

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

#[tokio::test(flavor = "current_thread")]
async fn connections_past_the_per_source_cap_are_refused_at_once_and_counted() {
    const CAP: usize = 8;
    let log = dir_of("caps").join("events.jsonl");
    let srv = start(
        "caps",
        &[
            "--max-conns-per-source",
            &CAP.to_string(),
            "--event-log",
            log.to_str().unwrap(),
        ],
    );
    let _pc1 = agent(&srv, "pc-1", true).await.unwrap();
    // The attacker (127.0.0.2) is an enrolled peer, so its QUIC
    // connections complete their handshakes and are held.
    let evil = agent(&srv, "evil-1", false).await.unwrap();

    // TCP, 7171 and 8443: up to the cap, held (waiting in the TLS handshake) ...
    let mut held = Vec::new();
    for port in [srv.enroll, srv.ws] {
        for _ in 0..CAP {
            held.push((port, connect_from(ATTACKER, port).await));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... and past it, closed at once.
    for port in [srv.enroll, srv.ws] {
        for i in 0..12 {
            let mut tcp = connect_from(ATTACKER, port).await;
            assert!(
                closed_within(&mut tcp, Duration::from_secs(2)).await,
                "port {port}: connection {} past the cap of {CAP} was not closed",
                i + 1
            );
        }
    }
    for (port, tcp) in &mut held {
        assert!(
            !closed_within(tcp, Duration::from_millis(50)).await,
            "port {port}: a connection within the cap was closed"
        );
    }

    // QUIC, 4433: the same, refused with CONNECTION_REFUSED.
    let tls = proto::tls::client_config(
        &evil.env,
        &evil.creds.ca_pem,
        Some((&evil.creds.cert_pem, &evil.creds.key_pem)),
        &[TUNNEL_ALPN],
    )
    .unwrap();
    let cfg = proto::quic::client_config(Arc::new(tls), [7; 32]).unwrap();
    let endpoint = quinn::Endpoint::client(SocketAddr::from((ATTACKER, 0))).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], srv.tunnel));
    let mut quic = Vec::new();
    for i in 0..CAP {
        let c = endpoint
            .connect_with(cfg.clone(), addr, "localhost")
            .unwrap();
        let c = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("QUIC connection {} within the cap: {e}", i + 1));
        quic.push(c);
    }
    for i in 0..12 {
        let c = endpoint
            .connect_with(cfg.clone(), addr, "localhost")
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), c).await {
            Ok(Err(quinn::ConnectionError::ConnectionClosed(c)))
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED => {}
            other => panic!(
                "QUIC connection {} past the cap: {:?}",
                i + 1,
                other.map(|r| r.map(|c| c.stable_id()))
            ),
        }
    }
    assert!(quic.iter().all(|c| c.close_reason().is_none()));

    // The legitimate agent (127.0.0.1) goes on, and a new one enrolls and works.
    legit_works(&srv, "while 127.0.0.2 holds its cap on every listener").await;
    let pc2 = agent(&srv, "pc-2", true).await.unwrap();
    assert!(pc2.service.is_some());

    // A place freed is a place again.
    let (port, tcp) = held.pop().unwrap();
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = connect_from(ATTACKER, port).await;
    assert!(!closed_within(&mut again, Duration::from_millis(500)).await);

    // Every refusal is in the event log, with its listener, source and cap.
    let refused = events(&log, "conn.refused");
    for listener in ["enroll", "channel", "tunnel"] {
        let mine: Vec<_> = refused
            .iter()
            .filter(|e| e["listener"] == listener)
            .collect();
        assert_eq!(mine.len(), 12, "{listener}: {refused:?}");
        assert!(
            mine.iter()
                .all(|e| e["source"] == "127.0.0.2" && e["cap"] == "per_source"),
            "{mine:?}"
        );
        assert_eq!(mine.last().unwrap()["refused"], 12);
    }
}

// Completes the TLS handshake on the enrollment port, sends `head`, and
// reports how long the server then kept the connection.
async fn held_after_tls(srv: &Server, env: &Env, head: &[u8]) -> Duration {
    let mut tls = tls(env, &srv.ca_pem, srv.enroll).await;
    let start = tokio::time::Instant::now();
    tls.write_all(head).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    start.elapsed()
}

// Opens a command-channel session with `agent`'s certificate, upgrades it to
// a WebSocket, never sends Auth, and reports how long the server kept it.
async fn held_without_auth(srv: &Server, agent: &Agent) -> Duration {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let cfg = proto::tls::client_config(
        &agent.env,
        &agent.creds.ca_pem,
        Some((&agent.creds.cert_pem, &agent.creds.key_pem)),
        &[b"http/1.1"],
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", srv.ws))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let req = format!("wss://localhost:{}/agent", srv.ws)
        .into_client_request()
        .unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(req, tls, Some(proto::ws::config()))
            .await
            .expect("the WebSocket upgrade is answered");
    let start = tokio::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_header_after_tls_and_a_websocket_without_auth_are_timed_out() {
    let srv = start("slow-after-tls", &[]);
    let _pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let evil = agent(&srv, "evil-1", false).await.unwrap();
    // Half a request's headers, then silence; and a session that upgrades
    // to a WebSocket and never says who it is.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: appl",
        proto::msg::ENROLL_PATH
    );
    let (slow, no_auth) = tokio::join!(
        held_after_tls(&srv, &evil.env, head.as_bytes()),
        held_without_auth(&srv, &evil),
    );
    for (what, held, limit) in [
        ("slow header", slow, server::HEADER_TIMEOUT),
        ("no Auth", no_auth, server::FIRST_MESSAGE_TIMEOUT),
    ] {
        assert!(
            held < limit + Duration::from_secs(5),
            "{what}: held for {held:?}"
        );
        assert!(held >= limit - Duration::from_secs(1), "{what}: {held:?}");
    }
    legit_works(&srv, "after a slow header and a session without Auth").await;
}

/// (user + system CPU seconds, open file descriptors) of process `pid`.
fn cpu_and_fds(pid: u32) -> (f64, usize) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: utime and stime are
    // the 12th and 13th (fields 14 and 15 of proc(5)).
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (ticks as f64 / clock_ticks(), fds)
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    const NOFILE: u32 = 64;
    // The server in a child whose descriptor limit is 64.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("ulimit -n {NOFILE} && exec \"$0\" \"$@\""),
        bin(),
    ])
    .env("RUST_LOG", "warn");
    let srv = start_cmd("emfile", &["--max-conns-per-source", "0"], cmd);
    let pid = srv.child.id();
    let _pc1 = agent(&srv, "pc-1", true).await.unwrap();
    let (_, before) = cpu_and_fds(pid);
    assert!(
        before < NOFILE as usize - 20,
        "{before} descriptors at the start"
    );

    // More connections than it has descriptors: the kernel queues the rest,
    // and every accept of them fails with EMFILE.
    let mut flood = Vec::new();
    for _ in 0..2 * NOFILE {
        flood.push(connect_from(ATTACKER, srv.enroll).await);
    }
    let failures = || {
        srv.stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("enrollment accept failed"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while failures() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no accept failed: {:?}",
            cpu_and_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, during) = cpu_and_fds(pid);
    assert!(during >= NOFILE as usize - 2, "{during} descriptors");
    // Let the backoff reach its ceiling, then measure five seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, _) = cpu_and_fds(pid);
    let (f0, t0) = (failures(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu1, _) = cpu_and_fds(pid);
    let (f1, secs) = (failures(), t0.elapsed().as_secs_f64());
    let share = (cpu1 - cpu0) / secs;
    eprintln!(
        "out of descriptors: {:.1} % CPU, {} failed accepts in {secs:.1} s",
        share * 100.0,
        f1 - f0
    );
    // A spinning loop takes a whole core and fails accepts by the million.
    assert!(
        share < 0.10,
        "{:.1} % CPU while out of descriptors",
        share * 100.0
    );
    assert!(
        f1 - f0 <= 2 * secs.ceil() as usize + 2,
        "{} failed accepts in {secs:.1} s",
        f1 - f0
    );

    // The flood ends: within the backoff's ceiling, the server serves again.
    drop(flood);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    legit_works(&srv, "after running out of descriptors").await;
    let pc2 = agent(&srv, "pc-2", true).await.unwrap();
    assert!(pc2.service.is_some());
}

/// A network namespace with one end of a veth pair (`10.77.N.1`); the
/// other end (`10.77.N.2`) stays in the test's namespace. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
}

impl Netns {
    fn new(n: u8) -> Netns {
        let name = format!("fleetsec{}", std::process::id() % 10_000);
        let host_if = format!("fsh{}", std::process::id() % 10_000);
        let peer_if = format!("fsp{}", std::process::id() % 10_000);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
        };
        let inside = format!("10.77.{n}.1/24");
        let outside = format!("10.77.{n}.2/24");
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ],
            vec!["link", "set", &peer_if, "netns", &name],
            vec!["addr", "add", &outside, "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec!["-n", &name, "addr", "add", &inside, "dev", &peer_if],
            vec!["-n", &name, "link", "set", &peer_if, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test(flavor = "current_thread")]
async fn with_listen_a_remote_agent_reaches_the_server_over_tcp_and_quic() {
    if !is_root() {
        eprintln!("skipped: needs root (a network namespace and a veth pair)");
        return;
    }
    // The server alone in a namespace, on 10.77.9.1; this test (and its
    // agent) outside it, on 10.77.9.2: another host, as far as routing goes.
    let ns = Netns::new(9);
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, bin()]);
    let srv = start_cmd(
        "listen",
        &[
            "--listen",
            "10.77.9.1",
            "--hostname",
            "10.77.9.1",
            "--admin-listen",
            "10.77.9.1:0",
        ],
        cmd,
    );
    // Enrollment (TCP), the tunnel (QUIC: the agent's socket binds
    // 0.0.0.0; bound to 127.0.0.1 it could not send to 10.77.9.1) and the
    // command channel all work.
    let pc1 = agent_at(&srv, "pc-1", true, "10.77.9.1").await.unwrap();
    assert_eq!(pc1.creds.file.tunnel.host, "10.77.9.1");
    legit_works(&srv, "a remote agent").await;
}
