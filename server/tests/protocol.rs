//! Protocol behaviours third-party clients found on the real network
//! (NOTES-real.md, "Interop"), held on loopback with raw clients: rustls,
//! hyper, tungstenite and quinn, no agent code on the wire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::install::Credentials;
use agent::{AgentConfig, StatusCell};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use proto::env::{Env, Observer};
use proto::frame::{Dir, EventRecord, FrameKind, FrameRecord, Stage};
use proto::msg::{AgentMsg, TunnelMsg, TUNNEL_ALPN};
use rustls_pki_types::ServerName;
use server::ServerConfig;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

/// The server's frame and event logs, in memory.
#[derive(Debug, Default)]
struct Memory {
    frames: Mutex<Vec<FrameRecord>>,
    events: Mutex<Vec<EventRecord>>,
    next: AtomicU64,
}

impl Observer for Memory {
    fn frame(&self, r: FrameRecord) {
        self.frames.lock().unwrap().push(r);
    }
    fn event(&self, r: EventRecord) {
        self.events.lock().unwrap().push(r);
    }
    fn next_conn_id(&self) -> String {
        format!("c{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-protocol-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

struct Bench {
    handle: server::ServerHandle,
    log: Arc<Memory>,
    env: Env,
    creds: Credentials,
    dirs: Vec<std::path::PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A server with 100 ms Pings and one agent enrolled by the real `up`.
async fn bench(tag: &str) -> Bench {
    let server_dir = temp_dir(&format!("{tag}-server"));
    let agent_dir = temp_dir(&format!("{tag}-agent"));
    let log = Arc::new(Memory::default());
    let env = proto::real::env("server", &server_dir, log.clone()).unwrap();
    let handle = server::start(
        env,
        ServerConfig {
            hostname: "localhost".into(),
            enroll_port: 0,
            tunnel_port: 0,
            ws_port: 0,
            ping_interval_ms: 100,
            enroll_tokens: vec!["enroll-token".into()],
            ..ServerConfig::default()
        },
    )
    .await
    .unwrap();
    let agent_env = proto::real::env(
        "agent:proto-1",
        &agent_dir,
        Arc::new(proto::real::JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new("proto-1", "localhost", "enroll-token", &handle.ca_pem());
    cfg.enroll_port = handle.ports().enroll;
    cfg.liveness_port = 0;
    agent::service::up(&agent_env, &cfg, &StatusCell::default())
        .await
        .expect("up succeeds");
    let creds = agent::install::load(agent_env.disk.as_ref())
        .unwrap()
        .unwrap();
    Bench {
        handle,
        log,
        env: agent_env,
        creds,
        dirs: vec![server_dir, agent_dir],
    }
}

async fn tls(
    b: &Bench,
    port: u16,
    client_cert: bool,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cert = client_cert.then_some((b.creds.cert_pem.as_str(), b.creds.key_pem.as_str()));
    let cfg = proto::tls::client_config(&b.env, &b.creds.ca_pem, cert, &[b"http/1.1"]).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

async fn enroll_with(b: &Bench, authorization: &str) -> hyper::StatusCode {
    let stream = tls(b, b.handle.ports().enroll, false).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(proto::msg::ENROLL_PATH)
        .header("host", "localhost")
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"name":"curl-1","version":"1.0.0"}"#,
        )))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    driver.abort();
    status
}

#[tokio::test(flavor = "current_thread")]
async fn enrollment_accepts_the_bearer_scheme_in_any_case() {
    let b = bench("bearer").await;
    for auth in [
        "Bearer enroll-token",
        "bearer enroll-token",
        "BEARER enroll-token",
    ] {
        assert_eq!(enroll_with(&b, auth).await, 200, "{auth}");
    }
    for auth in ["Basic enroll-token", "bearer wrong", "enroll-token"] {
        assert_eq!(enroll_with(&b, auth).await, 401, "{auth}");
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn ws(b: &Bench) -> Ws {
    let port = b.handle.ports().ws;
    let stream = tls(b, port, true).await;
    let req = format!("wss://localhost:{port}/agent")
        .into_client_request()
        .unwrap();
    tokio_tungstenite::client_async(req, stream)
        .await
        .unwrap()
        .0
}

fn auth(b: &Bench, agent_id: &str, version: &str) -> Message {
    Message::text(
        serde_json::to_string(&AgentMsg::Auth {
            agent_id: agent_id.into(),
            site: None,
            agent_token: b.creds.file.agent_token.clone(),
            agent_version: version.into(),
        })
        .unwrap(),
    )
}

/// Reads until `f` accepts a message, for at most 10 s.
async fn read_until(ws: &mut Ws, what: &str, mut f: impl FnMut(&Message) -> bool) -> Message {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if f(&m) => return m,
                Some(Ok(_)) => {}
                other => panic!("{what}: the connection ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
}

fn is_text_with(m: &Message, s: &str) -> bool {
    matches!(m, Message::Text(t) if t.as_str().contains(s))
}

#[tokio::test(flavor = "current_thread")]
async fn an_auth_naming_another_agent_is_closed_with_1008_and_a_reason() {
    let b = bench("auth").await;
    let mut s = ws(&b).await;
    s.send(auth(&b, "00000000-0000-4000-8000-000000000000", "1.0.0"))
        .await
        .unwrap();
    let m = read_until(&mut s, "close", |m| matches!(m, Message::Close(_))).await;
    let Message::Close(Some(frame)) = m else {
        panic!("a close frame with a code, not {m:?}");
    };
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.contains("another agent"), "{}", frame.reason);
}

/// A QUIC tunnel connection to the bench's gateway with the agent's
/// certificate, handshake done (keep the endpoint alive with it).
async fn tunnel(b: &Bench, seed: u8) -> (quinn::Endpoint, quinn::Connection) {
    let tls = proto::tls::client_config(
        &b.env,
        &b.creds.ca_pem,
        Some((&b.creds.cert_pem, &b.creds.key_pem)),
        &[TUNNEL_ALPN],
    )
    .unwrap();
    let cfg = proto::quic::client_config(Arc::new(tls), [seed; 32]).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], b.handle.ports().tunnel));
    let conn = endpoint
        .connect_with(cfg, addr, "localhost")
        .unwrap()
        .await
        .expect("the handshake succeeds with the agent's certificate");
    (endpoint, conn)
}

#[tokio::test(flavor = "current_thread")]
async fn a_tunnel_hello_naming_another_agent_is_closed() {
    let b = bench("hello").await;
    let (_endpoint, conn) = tunnel(&b, 7).await;
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let hello = serde_json::to_string(&TunnelMsg::Hello {
        agent_id: "00000000-0000-4000-8000-000000000000".into(),
        role: "service".into(),
    })
    .unwrap();
    send.write_all(format!("{hello}\n").as_bytes())
        .await
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("the gateway closes the connection, it does not leave it open");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                u64::from(c.error_code),
                u64::from(server::tunnel::HELLO_MISMATCH)
            );
            assert!(
                String::from_utf8_lossy(&c.reason).contains("another agent"),
                "{c:?}"
            );
        }
        other => panic!("an application close, not {other:?}"),
    }
    assert!(b.handle.tunnels().is_empty(), "nothing was registered");
}

#[tokio::test(flavor = "current_thread")]
async fn a_tunnel_peer_gets_credit_for_one_bidirectional_stream_and_no_other() {
    use futures_util::FutureExt;
    let b = bench("streams").await;
    let (_endpoint, conn) = tunnel(&b, 8).await;
    // After the handshake the peer's limits are known: opening a stream
    // either has credit now or waits for a MAX_STREAMS that never comes.
    assert!(
        conn.open_uni().now_or_never().is_none(),
        "no credit for a unidirectional stream"
    );
    let first = conn.open_bi().now_or_never();
    assert!(
        matches!(first, Some(Ok(_))),
        "credit for the tunnel's one stream"
    );
    assert!(
        conn.open_bi().now_or_never().is_none(),
        "no credit for a second bidirectional stream while the first is open"
    );
}

fn pings_enqueued_after(log: &Memory, conn: &str, t_us: u64) -> usize {
    log.frames
        .lock()
        .unwrap()
        .iter()
        .filter(|r| {
            r.conn == conn
                && r.frame == FrameKind::Ping
                && r.dir == Dir::Tx
                && r.stage == Stage::Enqueued
                && r.t_us > t_us
        })
        .count()
}

fn auth_ack_conn(m: &Message) -> String {
    let Message::Text(t) = m else { unreachable!() };
    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
    v["conn"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_replaced_by_a_reconnect_stops_its_pings_but_not_during_a_cutover() {
    let b = bench("replace").await;
    let id = b.creds.file.agent_id.clone();
    let mut first = ws(&b).await;
    first.send(auth(&b, &id, "1.0.0")).await.unwrap();
    let a = read_until(&mut first, "AuthAck", |m| is_text_with(m, "AuthAck")).await;
    let first_conn = auth_ack_conn(&a);
    read_until(&mut first, "a Ping", |m| matches!(m, Message::Ping(_))).await;

    // The same agent process reconnects (same version): the first session
    // is replaced and gets no more Pings.
    let mut second = ws(&b).await;
    second.send(auth(&b, &id, "1.0.0")).await.unwrap();
    let a = read_until(&mut second, "AuthAck", |m| is_text_with(m, "AuthAck")).await;
    let second_conn = auth_ack_conn(&a);
    for _ in 0..3 {
        read_until(&mut second, "Pings on the new session", |m| {
            matches!(m, Message::Ping(_))
        })
        .await;
    }
    let stopped = {
        let events = b.log.events.lock().unwrap();
        events
            .iter()
            .find(|e| e.event == "channel.pings_stopped")
            .cloned()
            .expect("the replaced session's Pings were stopped")
    };
    assert_eq!(stopped.fields["conn"], first_conn.as_str());
    assert_eq!(stopped.fields["replaced_by"], second_conn.as_str());
    assert_eq!(
        pings_enqueued_after(&b.log, &first_conn, stopped.t_us),
        0,
        "no Ping is queued on the replaced session after it was replaced"
    );

    // An upgrade's cutover: the new version's session replaces the old
    // version's in the registry, and the old one keeps its Pings (both
    // processes are alive; the old one waits for the operator's stop).
    let mut third = ws(&b).await;
    third.send(auth(&b, &id, "1.1.0")).await.unwrap();
    read_until(&mut third, "AuthAck", |m| is_text_with(m, "AuthAck")).await;
    let t = b.handle.log_us();
    for _ in 0..2 {
        read_until(&mut second, "Pings on the old version's session", |m| {
            matches!(m, Message::Ping(_))
        })
        .await;
    }
    assert!(pings_enqueued_after(&b.log, &second_conn, t) >= 2);
}
