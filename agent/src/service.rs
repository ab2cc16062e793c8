//! `agent up` (enroll, then in the fixed behaviour probe the tunnel) and the
//! long-running agent service (tunnel + command channel, reconnecting).

use std::sync::Arc;
use std::time::Duration;

use proto::build::BuildDefect;
use proto::env::Env;
use proto::fields;

use crate::backoff::Backoff;
use crate::enroll::{enroll_once, EnrollError};
use crate::health::{State, Status, CHANNEL, COMPONENT_FAILED_AFTER, TUNNEL};
use crate::install::{self, Credentials};
use crate::tunnel::{TunnelClient, TunnelError};
use crate::upgrade::driver::{Supervisor, Unsupervised, UpgradeLink};
use crate::{channel, checkin, liveness, upgrade, AgentConfig, StatusCell};

/// Why `agent up` failed.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Enrollment failed.
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// Writing the enrollment to disk failed.
    #[error("cannot write the enrollment to disk: {0}")]
    Write(std::io::Error),
    /// The tunnel probe failed.
    #[error("enrolled, but the tunnel probe failed ({0}); check that UDP {port} to {host} is open (firewall/NAT)", port = .1, host = .2)]
    Probe(TunnelError, u16, String),
    /// The tunnel probe did not finish in time.
    #[error("enrolled, but the tunnel probe timed out after {0} ms; check that UDP {port} to {host} is open (firewall/NAT)", port = .1, host = .2)]
    ProbeTimeout(u64, u16, String),
}

impl UpError {
    /// The process exit code `agent up` reports.
    pub fn exit_code(&self) -> i32 {
        match self {
            UpError::Enroll(_) => 2,
            UpError::Write(_) => 3,
            UpError::Probe(..) | UpError::ProbeTimeout(..) => 4,
        }
    }
}

/// `agent up`: enroll, persist, and (switch `up_probe`) prove the tunnel works
/// with one handshake on the service's own connect path, then drain.
pub async fn up(env: &Env, cfg: &AgentConfig, status: &StatusCell) -> Result<String, UpError> {
    if cfg.switches.transactional_enroll_write {
        let removed = install::remove_unreferenced(env.disk.as_ref()).map_err(UpError::Write)?;
        if !removed.is_empty() {
            env.event("up.removed_unreferenced", fields! {"files" => removed});
        }
    }
    if cfg.delay_enroll {
        // `up --delay-enroll`: the service enrolls when it starts.
        env.event("up.delayed_enroll", fields! {});
        return Ok(String::new());
    }
    let resp = match enroll_once(env, cfg, status).await {
        Ok(r) => {
            status.lock().enroll_state = Some("enrolled".into());
            r
        }
        Err(e) => {
            let state = if e.is_permanent() {
                "failed-permanent"
            } else {
                "failed"
            };
            status.lock().enroll_state = Some(state.into());
            return Err(e.into());
        }
    };
    let file = install::write_enrollment(
        env.disk.as_ref(),
        &resp,
        cfg.switches.transactional_enroll_write,
    )
    .map_err(UpError::Write)?;
    status.lock().agent_id = Some(file.agent_id.clone());
    env.event("up.enrolled", fields! {"agent_id" => file.agent_id});
    if !cfg.switches.up_probe {
        return Ok(file.agent_id);
    }
    let creds = install::load(env.disk.as_ref())
        .map_err(UpError::Write)?
        .ok_or_else(|| UpError::Write(std::io::Error::other("agent.json missing after write")))?;
    let host = creds.file.tunnel.host.clone();
    let port = creds.file.tunnel.quic_port;
    let client = TunnelClient::new(env, &host)
        .await
        .map_err(|e| UpError::Probe(e, port, host.clone()))?;
    let probe = proto::time::timeout(
        Duration::from_millis(cfg.probe_timeout_ms),
        client.connect(env, &creds, "probe"),
    )
    .await;
    let result = match probe {
        Ok(Ok(tunnel)) => {
            tunnel.close(env, "probe done");
            // The new install works: the one it replaced is garbage now.
            let removed =
                install::remove_unreferenced(env.disk.as_ref()).map_err(UpError::Write)?;
            if !removed.is_empty() {
                env.event("up.removed_unreferenced", fields! {"files" => removed});
            }
            Ok(file.agent_id)
        }
        Ok(Err(e)) => Err(UpError::Probe(e, port, host)),
        Err(_) => Err(UpError::ProbeTimeout(cfg.probe_timeout_ms, port, host)),
    };
    // Drain so the gateway sees the probe's close promptly, but bounded.
    let _ = proto::time::timeout(
        Duration::from_millis(cfg.probe_drain_ms),
        client.wait_idle(),
    )
    .await;
    env.event(
        "up.probe",
        fields! {"ok" => result.is_ok(), "error" => result.as_ref().err().map(|e| e.to_string())},
    );
    result
}

/// A random jitter input for [`Backoff::handle_failure`] from the agent's random source.
pub(crate) fn jitter(env: &Env) -> u32 {
    let mut b = [0u8; 4];
    env.fill_random(&mut b);
    u32::from_le_bytes(b)
}

/// A task that ends with its owner: the service's helpers (liveness
/// endpoint, check-ins) stop when the service is stopped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets the state of a component (`tunnel`, `channel`) in the agent's health.
pub(crate) fn set_component(
    status: &StatusCell,
    name: &str,
    state: State,
    message: Option<String>,
) {
    status
        .lock()
        .health
        .components
        .insert(name.into(), Status::new(state, message));
}

// A component that failed to connect `consecutive` times in a row.
fn component_failed(status: &StatusCell, name: &str, consecutive: u32, error: String) {
    let state = if consecutive >= COMPONENT_FAILED_AFTER {
        State::Failed
    } else {
        State::Degraded
    };
    set_component(status, name, state, Some(error));
}

/// The agent service: serves `/liveness`, waits for an enrollment on disk,
/// then keeps the tunnel and the command channel up, reconnecting with
/// backoff, and checks in with the fleet server. Never returns: after a
/// terminal enrollment failure it keeps serving `/liveness`, which reports
/// the coordinator failed. Upgrades fail at their cutover: there is no
/// supervisor to start a new version (see [`run_with`]).
pub async fn run(env: Env, cfg: AgentConfig, status: StatusCell) {
    run_with(env, cfg, status, Arc::new(Unsupervised)).await
}

/// [`run`], with a process supervisor for self-upgrades. Returns at once
/// when the build is one that crashes on start (an injected defect).
pub async fn run_with(
    env: Env,
    cfg: AgentConfig,
    status: StatusCell,
    supervisor: Arc<dyn Supervisor>,
) {
    if cfg.build_defect == Some(BuildDefect::CrashesOnStart) {
        env.event(
            "agent.crashed",
            fields! {"version" => cfg.version, "defect" => "crashes-on-start"},
        );
        return;
    }
    {
        let mut s = status.lock();
        s.health.coordinator = Status::new(State::Starting, None);
        for c in [TUNNEL, CHANNEL] {
            s.health.components.insert(c.into(), Status::default());
        }
    }
    let _liveness = AbortOnDrop(tokio::spawn(liveness::serve(
        env.clone(),
        cfg.clone(),
        status.clone(),
    )));
    if cfg.delay_enroll && matches!(install::load(env.disk.as_ref()), Ok(None)) {
        let resp = match crate::enroll::delayed_enroll(&env, &cfg, &status).await {
            Ok(r) => r,
            // A terminal state: reported (event, status), and no more requests.
            Err(e) => {
                status.lock().health.coordinator = Status::new(
                    State::Failed,
                    Some(format!("delayed enrollment stopped: {e}")),
                );
                std::future::pending::<()>().await;
                return;
            }
        };
        if let Err(e) = install::write_enrollment(
            env.disk.as_ref(),
            &resp,
            cfg.switches.transactional_enroll_write,
        ) {
            env.event("enroll.write_failed", fields! {"error" => e.to_string()});
            {
                let mut s = status.lock();
                s.enroll_state = Some("failed".into());
                s.health.coordinator = Status::new(
                    State::Failed,
                    Some(format!("cannot write the enrollment: {e}")),
                );
            }
            std::future::pending::<()>().await;
            return;
        }
    }
    let creds = loop {
        match install::load(env.disk.as_ref()) {
            Ok(Some(c)) => break c,
            Ok(None) => {}
            Err(e) => env.event("service.bad_install", fields! {"error" => e.to_string()}),
        }
        proto::time::sleep(Duration::from_secs(5)).await;
    };
    {
        let mut s = status.lock();
        s.agent_id = Some(creds.file.agent_id.clone());
        s.health.coordinator = Status::new(State::Healthy, None);
    }
    let _checkins = AbortOnDrop(tokio::spawn(checkin::run(
        env.clone(),
        cfg.clone(),
        creds.clone(),
        status.clone(),
    )));
    env.event("agent.started", fields! {"version" => cfg.version});
    // The agent's tasks end with it, also when it is stopped from outside
    // (its future dropped): a process takes its threads with it.
    let rejoin = upgrade::signal::Signal::new(());
    let rejoin_rx = rejoin.watch();
    let _tunnel = AbortOnDrop(tokio::spawn(run_tunnel(
        env.clone(),
        cfg.clone(),
        creds.clone(),
        status.clone(),
        rejoin_rx.clone(),
    )));
    let (link, upgrade) =
        upgrade::driver::spawn(env.clone(), cfg.clone(), status.clone(), supervisor, rejoin);
    let _upgrade = AbortOnDrop(upgrade);
    run_channel(env, cfg, creds, status, link, rejoin_rx).await;
}

async fn run_tunnel(
    env: Env,
    cfg: AgentConfig,
    creds: Credentials,
    status: StatusCell,
    mut rejoin: upgrade::signal::Watcher<()>,
) {
    let mut backoff = Backoff::new(cfg.backoff_base_ms, cfg.backoff_cap_ms);
    let client = loop {
        match TunnelClient::new(&env, &creds.file.tunnel.host).await {
            Ok(c) => break c,
            Err(e) => {
                env.event("tunnel.setup_failed", fields! {"error" => e.to_string()});
                proto::time::sleep(Duration::from_millis(backoff.handle_failure(jitter(&env))))
                    .await;
            }
        }
    };
    loop {
        match client.connect(&env, &creds, "service").await {
            Ok(mut t) => {
                backoff.handle_success();
                {
                    let mut s = status.lock();
                    s.tunnel_connected = true;
                    s.tunnel_connects += 1;
                }
                set_component(&status, TUNNEL, State::Healthy, None);
                env.event("tunnel.connected", fields! {"conn" => t.conn_id});
                let period = Duration::from_millis(cfg.heartbeat_interval_ms);
                let mut tick =
                    proto::time::interval_at(tokio::time::Instant::now() + period, period);
                let reason = loop {
                    tokio::select! {
                        biased;
                        r = t.closed() => break r,
                        _ = upgrade::driver::rejoin_requested(&mut rejoin) => {
                            t.close(&env, "rejoin after an upgrade");
                            break "re-registering after an upgrade".to_string();
                        }
                        _ = tick.tick() => {
                            if let Err(e) = t.heartbeat(&env).await {
                                break e.to_string();
                            }
                        }
                    }
                };
                status.lock().tunnel_connected = false;
                set_component(&status, TUNNEL, State::Degraded, Some(reason.clone()));
                env.event(
                    "tunnel.lost",
                    fields! {"conn" => t.conn_id, "reason" => reason},
                );
            }
            Err(e) => {
                status.lock().last_error = Some(e.to_string());
                component_failed(&status, TUNNEL, backoff.failures() + 1, e.to_string());
                env.event("tunnel.connect_failed", fields! {"error" => e.to_string()});
            }
        }
        proto::time::sleep(Duration::from_millis(backoff.handle_failure(jitter(&env)))).await;
    }
}

async fn run_channel(
    env: Env,
    cfg: AgentConfig,
    creds: Credentials,
    status: StatusCell,
    link: UpgradeLink,
    rejoin: upgrade::signal::Watcher<()>,
) {
    let mut backoff = Backoff::new(cfg.backoff_base_ms, cfg.backoff_cap_ms);
    loop {
        let connects = status.lock().ws_connects;
        let result = channel::run_session(&env, &cfg, &creds, &status, &link, rejoin.clone()).await;
        // A refused Auth is not a session that was up: back off further.
        let refused = matches!(result, Err(channel::ChannelError::AuthRefused(_)));
        let was_up = status.lock().ws_connects > connects && !refused;
        status.lock().ws_connected = false;
        if was_up {
            backoff.handle_success();
        }
        let error = match &result {
            Ok(()) => "session ended".to_string(),
            Err(e) => e.to_string(),
        };
        if was_up {
            set_component(&status, CHANNEL, State::Degraded, Some(error.clone()));
        } else {
            component_failed(&status, CHANNEL, backoff.failures() + 1, error.clone());
        }
        if result.is_err() {
            status.lock().last_error = Some(error.clone());
            env.event("channel.lost", fields! {"error" => error});
        }
        proto::time::sleep(Duration::from_millis(backoff.handle_failure(jitter(&env)))).await;
    }
}
