//! `last_seen_us` follows every heartbeat although the store gets it at most
//! every `LAST_SEEN_STORE_PERIOD`: the real server and a real agent on
//! loopback, heartbeating every 200 ms.

use std::sync::Arc;
use std::time::Duration;

use agent::{AgentConfig, StatusCell};
use proto::real::JsonlObserver;
use server::ServerConfig;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-seen-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "current_thread")]
async fn the_reported_last_seen_follows_every_heartbeat() {
    let env = proto::real::env(
        "server",
        &temp_dir("server"),
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
            heartbeat_interval_ms: 200,
            ..ServerConfig::default()
        },
    )
    .await
    .expect("server starts on ephemeral loopback ports");
    let agent_env = proto::real::env(
        "agent:seen-1",
        &temp_dir("agent"),
        Arc::new(JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new("seen-1", "localhost", "enroll-token", &handle.ca_pem());
    cfg.enroll_port = handle.ports().enroll;
    cfg.liveness_port = 0;
    cfg.heartbeat_interval_ms = 200;
    let status = StatusCell::default();
    tokio::time::timeout(
        Duration::from_secs(30),
        agent::service::up(&agent_env, &cfg, &status),
    )
    .await
    .expect("up finishes")
    .expect("up succeeds");
    let _service = tokio::spawn(agent::service::run(agent_env, cfg, status));

    let last_seen = || {
        handle
            .agents()
            .unwrap()
            .first()
            .and_then(|a| a.record.last_seen_us)
    };
    // Seen at once, at its Auth or its tunnel's Hello.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = loop {
        if let Some(t) = last_seen() {
            break t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every later look, a second apart, sees a newer heartbeat, one at most
    // about an interval old: far sooner than the store is written again.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = last_seen().expect("still seen");
        assert!(
            now > seen,
            "last_seen did not move in 1 s: {seen} then {now}"
        );
        let age = handle.now_us().saturating_sub(now);
        assert!(age < 1_000_000, "last_seen is {age} us old");
        seen = now;
    }
    assert!(server::LAST_SEEN_STORE_PERIOD > Duration::from_secs(3));
}
