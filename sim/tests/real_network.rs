//! The same agent and server code on real loopback sockets: no turmoil, the
//! system clock, the OS random source and real directories.

use std::sync::Arc;
use std::time::Duration;

use agent::{AgentConfig, StatusCell};
use proto::real::JsonlObserver;
use server::store::CommandStatus;
use server::ServerConfig;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("simbench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[tokio::test(flavor = "current_thread")]
async fn agent_enrolls_probes_and_completes_a_command_on_loopback() {
    let server_dir = temp_dir("server");
    let agent_dir = temp_dir("agent");
    let frames = server_dir.join("frames.jsonl");
    std::fs::create_dir_all(&server_dir).unwrap();
    let observer = Arc::new(JsonlObserver::new(
        Some(proto::real::jsonl_file(&frames).unwrap()),
        None,
    ));
    let env = proto::real::env("server", &server_dir, observer).unwrap();
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
    let ports = handle.ports();
    assert!(ports.enroll != 0 && ports.tunnel != 0 && ports.ws != 0);

    let agent_env = proto::real::env(
        "agent:loop-1",
        &agent_dir,
        Arc::new(JsonlObserver::new(None, None)),
    )
    .unwrap();
    let mut cfg = AgentConfig::new("loop-1", "localhost", "enroll-token", &handle.ca_pem());
    cfg.enroll_port = ports.enroll;
    cfg.heartbeat_interval_ms = 200;
    let status = StatusCell::default();
    let id = tokio::time::timeout(
        Duration::from_secs(30),
        agent::service::up(&agent_env, &cfg, &status),
    )
    .await
    .expect("up finishes")
    .expect("up succeeds: enrolled and the tunnel probe passed");
    assert!(agent_dir.join(format!("installs/{id}/client.crt")).exists());
    assert!(agent_dir.join("agent.json").exists());

    let service = tokio::spawn(agent::service::run(agent_env, cfg, status.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !(status.get().ws_connected && status.get().tunnel_connected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent never connected: {:?}",
            status.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.dispatch("loop-1", "hostname");
    loop {
        let cmds = handle.commands().unwrap();
        if let Some(c) = cmds
            .first()
            .filter(|c| c.status == CommandStatus::Completed)
        {
            assert_eq!(c.command_id, "cmd-0001");
            assert_eq!(c.output.as_deref(), Some("loop-1"));
            assert_eq!(c.exit_code, Some(0));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "command not completed: {cmds:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.abort();
    let log = std::fs::read_to_string(&frames).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(r#""stage":"written","frame":"text""#)
                && l.contains(r#""command_id":"cmd-0001""#)),
        "the real server's frame log records the written Command"
    );
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}
