//! `fleet-agent install`'s library code (the installer the simulator's
//! `install` action runs) against the real server on loopback, with the
//! agent's outgoing UDP dropped at the network seam as a firewall on UDP
//! 4433 does: the fixed `up` enrolls, its tunnel probe times out, and the
//! installer rolls back what this `up` wrote and only that.

use std::io::IoSliceMut;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agent::installer::InstallResult;
use agent::{AgentConfig, StatusCell};
use proto::env::{BoxFuture, BoxStream, Listener, Network};
use proto::real::JsonlObserver;
use server::ServerConfig;

/// The real network with every outgoing UDP datagram dropped.
#[derive(Debug)]
struct UdpDropped(Arc<dyn Network>);

#[derive(Debug)]
struct DropSends(Arc<dyn quinn::AsyncUdpSocket>);

impl quinn::AsyncUdpSocket for DropSends {
    fn create_io_poller(self: Arc<Self>) -> std::pin::Pin<Box<dyn quinn::UdpPoller>> {
        self.0.clone().create_io_poller()
    }
    fn try_send(&self, _transmit: &quinn::udp::Transmit) -> std::io::Result<()> {
        Ok(())
    }
    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<std::io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }
    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.local_addr()
    }
}

impl Network for UdpDropped {
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<BoxStream>> {
        self.0.connect_tcp(host, port)
    }
    fn listen_tcp(&self, port: u16) -> BoxFuture<'static, std::io::Result<Box<dyn Listener>>> {
        self.0.listen_tcp(port)
    }
    fn bind_udp(
        &self,
        port: u16,
    ) -> BoxFuture<'static, std::io::Result<Arc<dyn quinn::AsyncUdpSocket>>> {
        let bind = self.0.bind_udp(port);
        Box::pin(async move {
            let s = bind.await?;
            Ok(Arc::new(DropSends(s)) as Arc<dyn quinn::AsyncUdpSocket>)
        })
    }
    fn quic_runtime(&self) -> Arc<dyn quinn::Runtime> {
        self.0.quic_runtime()
    }
    fn resolve(&self, host: &str) -> std::io::Result<std::net::IpAddr> {
        self.0.resolve(host)
    }
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fleet-install-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn start_server(dir: &std::path::Path) -> server::ServerHandle {
    let env = proto::real::env("server", dir, Arc::new(JsonlObserver::new(None, None))).unwrap();
    server::start(
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
    .expect("server starts")
}

fn agent_env(dir: &std::path::Path, udp_dropped: bool) -> proto::env::Env {
    let mut env = proto::real::env(
        "agent:inst-1",
        dir,
        Arc::new(JsonlObserver::new(None, None)),
    )
    .unwrap();
    if udp_dropped {
        env.net = Arc::new(UdpDropped(env.net.clone()));
    }
    env
}

fn config(handle: &server::ServerHandle) -> AgentConfig {
    let mut cfg = AgentConfig::new("inst-1", "localhost", "enroll-token", &handle.ca_pem());
    cfg.enroll_port = handle.ports().enroll;
    cfg.liveness_port = 0;
    cfg.probe_timeout_ms = 500;
    cfg.probe_drain_ms = 100;
    cfg
}

/// Every file under `dir`, relative, with its contents.
fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(
        root: &std::path::Path,
        d: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Default::default();
    walk(dir, dir, &mut out);
    out
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_fixed_up_leaves_no_credentials_and_keeps_a_prior_install() {
    let server_dir = temp_dir("server");
    let agent_dir = temp_dir("agent");
    let handle = start_server(&server_dir).await;
    let cfg = config(&handle);
    let timeout = Duration::from_secs(60);

    // A fresh machine, UDP 4433 blocked: exit 4, everything this `up` wrote is gone.
    let report = agent::installer::install(
        &agent_env(&agent_dir, true),
        &cfg,
        &StatusCell::default(),
        timeout,
    )
    .await;
    assert_eq!(report.exit_code, 4, "{report:?}");
    assert_eq!(report.result, InstallResult::FailedRolledBack, "{report:?}");
    assert!(
        report
            .error
            .as_deref()
            .unwrap()
            .contains("tunnel probe timed out after 500 ms"),
        "{report:?}"
    );
    assert!(
        report.rolled_back.contains(&"agent.json".to_string()),
        "{report:?}"
    );
    let left = files(&agent_dir);
    assert!(
        left.keys()
            .all(|p| !p.ends_with(".crt") && !p.ends_with(".key") && p != "agent.json"),
        "no certificate, key or agent.json is left behind: {:?}",
        left.keys()
    );
    assert_eq!(
        handle.agents().unwrap().len(),
        1,
        "the server did enroll it"
    );

    // A working install, then a failed reinstall over it: the prior
    // install's files are put back byte for byte and still work.
    let ok = agent::installer::install(
        &agent_env(&agent_dir, false),
        &cfg,
        &StatusCell::default(),
        timeout,
    )
    .await;
    assert_eq!(
        (ok.exit_code, ok.result),
        (0, InstallResult::Success),
        "{ok:?}"
    );
    let prior = files(&agent_dir);
    let prior_id = agent::install::load(agent_env(&agent_dir, false).disk.as_ref())
        .unwrap()
        .unwrap()
        .file
        .agent_id;
    let again = agent::installer::install(
        &agent_env(&agent_dir, true),
        &cfg,
        &StatusCell::default(),
        timeout,
    )
    .await;
    assert_eq!(
        (again.exit_code, again.result),
        (4, InstallResult::FailedRolledBack),
        "{again:?}"
    );
    assert_eq!(files(&agent_dir), prior, "the prior install is whole again");

    // The prior credentials still work: its service comes online.
    let status = StatusCell::default();
    let service = tokio::spawn(agent::service::run(
        agent_env(&agent_dir, false),
        cfg.clone(),
        status.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let online = handle
            .agents()
            .unwrap()
            .into_iter()
            .any(|a| a.record.agent_id == prior_id && a.status == "online");
        if online {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prior install never came online: {:?}",
            status.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.abort();
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}

/// A disk whose first listing fails (the installer's snapshot); later
/// ones, `up`'s own, work.
#[derive(Debug)]
struct Unlistable(Arc<dyn proto::env::Disk>, std::sync::atomic::AtomicBool);

impl proto::env::Disk for Unlistable {
    fn open(&self, path: &str, create: bool) -> std::io::Result<Box<dyn proto::env::File>> {
        self.0.open(path, create)
    }
    fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, path: &str) -> std::io::Result<()> {
        self.0.remove(path)
    }
    fn exists(&self, path: &str) -> bool {
        self.0.exists(path)
    }
    fn list(&self) -> std::io::Result<Vec<String>> {
        if self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return self.0.list();
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the data directory cannot be listed",
        ))
    }
    fn sync_dir(&self) -> std::io::Result<()> {
        self.0.sync_dir()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_snapshot_a_failed_up_touches_nothing() {
    let server_dir = temp_dir("server-nosnap");
    let agent_dir = temp_dir("agent-nosnap");
    let handle = start_server(&server_dir).await;
    let cfg = config(&handle);
    let timeout = Duration::from_secs(60);
    let ok = agent::installer::install(
        &agent_env(&agent_dir, false),
        &cfg,
        &StatusCell::default(),
        timeout,
    )
    .await;
    assert_eq!(ok.result, InstallResult::Success, "{ok:?}");
    let prior = files(&agent_dir);

    // A reinstall that fails (UDP 4433 blocked) on a disk the snapshot
    // cannot read: nothing tells this `up`'s files from the prior
    // install's, so nothing is removed or restored.
    let mut env = agent_env(&agent_dir, true);
    env.disk = Arc::new(Unlistable(env.disk.clone(), Default::default()));
    let report = agent::installer::install(&env, &cfg, &StatusCell::default(), timeout).await;
    assert_eq!(
        (report.exit_code, report.result),
        (4, InstallResult::Failed),
        "{report:?}"
    );
    assert!(report.rolled_back.is_empty(), "{report:?}");
    let after = files(&agent_dir);
    for (path, contents) in &prior {
        if path != "agent.json" {
            assert_eq!(
                after.get(path),
                Some(contents),
                "the prior install's {path} is untouched"
            );
        }
    }
    // This `up` did write (a new enrollment): without a snapshot it stays.
    assert_ne!(after.get("agent.json"), prior.get("agent.json"));
    assert!(after.len() > prior.len(), "{:?}", after.keys());
    let _ = std::fs::remove_dir_all(&server_dir);
    let _ = std::fs::remove_dir_all(&agent_dir);
}
