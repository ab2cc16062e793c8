//! The upgrade driver: runs [`super::UpgradeState`] with I/O.
//!
//! - Staging: `GET` [`proto::build::ARTIFACTS_PATH`]`<sha256>` over HTTPS
//!   from the enrollment listener (trusting the gateway CA), SHA-256 check
//!   against the announced hash, then the build is written atomically to
//!   `versions/<version>/agent.bin`. Bytes that fail the check are never
//!   written.
//! - The agent's disk layout: `versions/<version>/agent.bin` for every
//!   version ever staged or run (never deleted) and `active`, the version
//!   the agent starts as, replaced atomically (the field's symlink swap).
//!   Before the first cutover the running build is preserved at its
//!   versioned path, so the first rollback has something to go back to.
//!   From the cutover until the stop is acted on (committed) or the
//!   upgrade reverts, [`TRIAL`] names the old version: a service start that
//!   finds it ([`boot_guard`]) goes back to that version.
//! - Processes (start the new version beside this one, stop it, exit this
//!   one, notice the new one's exit, run a build's self-test) belong to a
//!   [`Supervisor`], the seam: systemd transient units in the field, tasks
//!   in the simulator.
//! - Reports: every phase change is published as an
//!   [`AgentMsg::UpgradeStatus`] on a watch channel that each command-channel
//!   session sends on change and once after its Auth; every phase change is
//!   also an `upgrade.phase` event.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use proto::build::{sha256_hex, Build, ARTIFACTS_PATH};
use proto::env::{BoxFuture, Disk, Env};
use proto::fields;
use proto::msg::AgentMsg;
use rustls_pki_types::ServerName;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use super::signal::{Signal, Watcher};
use super::{Action, Phase, UpgradeState};
use crate::{AgentConfig, StatusCell};

/// The file naming the active version.
pub const ACTIVE: &str = "active";
/// The trial marker: present from the cutover until the upgrade is
/// committed (the old agent acts on the operator's stop) or reverted; it
/// names the version to go back to. A service start that finds it boots
/// the old version again ([`boot_guard`]): an upgrade nobody committed is a
/// trial, and a restart ends the trial.
pub const TRIAL: &str = "upgrade-trial";
/// Where builds are kept, one directory per version.
pub const VERSIONS_DIR: &str = "versions/";
/// Download attempts while staging.
pub const STAGE_ATTEMPTS: u32 = 3;
/// Pause between download attempts.
pub const STAGE_RETRY_MS: u64 = 5_000;
/// Bound on one download.
pub const STAGE_TIMEOUT_MS: u64 = 30_000;
/// How long the old agent lets its last report flush before it exits.
pub const EXIT_GRACE_MS: u64 = 1_000;
/// How long after a stop for its own version the new agent re-registers
/// (reconnects), so that it holds the server's registrations once the old
/// agent, which may have reconnected after it, is gone.
pub const REJOIN_AFTER_STOP_MS: u64 = 3_000;

/// Resolves when `rejoin` (see [`spawn`]) is signalled.
pub async fn rejoin_requested(rejoin: &mut Watcher<()>) {
    rejoin.changed().await;
    rejoin.borrow_and_update();
}

/// Path of the build of `version`.
pub fn build_path(version: &str) -> String {
    format!("{VERSIONS_DIR}{version}/agent.bin")
}

/// The active version on `disk`, if an upgrade ever set one.
pub fn active_version(disk: &dyn Disk) -> Option<String> {
    let bytes = proto::files::read(disk, ACTIVE).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// Atomically makes `version` the active one.
pub fn set_active(disk: &dyn Disk, version: &str) -> std::io::Result<()> {
    proto::files::write_atomic(disk, ACTIVE, version.as_bytes())
}

/// Removes the trial marker, durably (nothing to do when there is none).
pub fn end_trial(disk: &dyn Disk) -> std::io::Result<()> {
    if !disk.exists(TRIAL) {
        return Ok(());
    }
    disk.remove(TRIAL)?;
    disk.sync_dir()
}

/// What the service manager runs before it starts the agent: when an
/// upgrade's trial was cut short (the service restarted, the machine
/// crashed, before the upgrade was committed or reverted), switch the
/// active version back to the one the trial started from and end the
/// trial. Returns (the version switched back to, the trial's version).
pub fn boot_guard(disk: &dyn Disk) -> std::io::Result<Option<(String, Option<String>)>> {
    let Ok(bytes) = proto::files::read(disk, TRIAL) else {
        return Ok(None);
    };
    let back = String::from_utf8_lossy(&bytes).trim().to_string();
    let trial = active_version(disk);
    if trial.as_deref() != Some(back.as_str()) {
        set_active(disk, &back)?;
    }
    end_trial(disk)?;
    Ok(Some((back, trial)))
}

/// Runs agent processes: the seam between the upgrade and the OS.
pub trait Supervisor: Send + Sync + Debug + 'static {
    /// Runs the self-test of the staged build of `version` (the field's
    /// `fleet-agent --self-test`, run by the old agent).
    fn self_test(&self, version: &str) -> BoxFuture<'static, Result<(), String>>;
    /// Starts the staged build of `version` beside this agent (the field's
    /// transient unit), with this agent's identity and disk.
    fn start(&self, version: &str) -> BoxFuture<'static, Result<(), String>>;
    /// Resolves when the agent of `version` this supervisor started exits.
    fn exited(&self, version: &str) -> BoxFuture<'static, ()>;
    /// Stops the agent of `version` this supervisor started (idempotent).
    fn stop(&self, version: &str) -> BoxFuture<'static, ()>;
    /// Ends this agent (the operator's stop after a completed upgrade).
    fn exit_self(&self);
}

/// A supervisor that cannot start a second agent: every cutover fails
/// (and reverts). What `fleet-agent run` uses until it has a real one.
#[derive(Debug, Default)]
pub struct Unsupervised;

impl Supervisor for Unsupervised {
    fn self_test(&self, version: &str) -> BoxFuture<'static, Result<(), String>> {
        let _ = version;
        Box::pin(async { Ok(()) })
    }
    fn start(&self, version: &str) -> BoxFuture<'static, Result<(), String>> {
        let msg = format!(
            "no process supervisor to start {version} beside this agent; run the agent under one"
        );
        Box::pin(async move { Err(msg) })
    }
    fn exited(&self, _version: &str) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
    fn stop(&self, _version: &str) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    fn exit_self(&self) {}
}

/// What a command-channel session hands the driver.
#[derive(Debug)]
pub enum Input {
    /// `ServerMsg::Upgrade`.
    Start {
        /// The new version.
        version: String,
        /// Its SHA-256.
        sha256: String,
    },
    /// `ServerMsg::UpgradeStop`.
    Stop {
        /// The version the upgrade went to.
        version: String,
    },
}

/// The command channel's end of the driver.
#[derive(Clone, Debug)]
pub struct UpgradeLink {
    tx: mpsc::UnboundedSender<Input>,
    reports: Signal<Option<AgentMsg>>,
}

impl UpgradeLink {
    /// Hands a server message's request to the driver.
    pub fn send(&self, input: Input) {
        let _ = self.tx.send(input);
    }

    /// The report channel: the latest `UpgradeStatus`, if any.
    pub fn reports(&self) -> Watcher<Option<AgentMsg>> {
        self.reports.watch()
    }
}

/// Starts the driver task of the agent running `cfg.version`.
///
/// Two agents of one identity replace each other's registrations on the
/// server (tunnel and command channel), and the one that leaves takes the
/// registration it holds with it. So `rejoin` is bumped, making the tunnel
/// and the command channel reconnect and register again, in the agent that
/// stays: the old one after a revert stopped the new one, and the new one
/// [`REJOIN_AFTER_STOP_MS`] after it received the stop for its own version.
pub fn spawn(
    env: Env,
    cfg: AgentConfig,
    status: StatusCell,
    supervisor: Arc<dyn Supervisor>,
    rejoin: Signal<()>,
) -> (UpgradeLink, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let reports = Signal::new(None);
    let task = tokio::spawn(drive(
        env,
        cfg,
        status,
        supervisor,
        rx,
        reports.clone(),
        rejoin,
    ));
    (UpgradeLink { tx, reports }, task)
}

async fn drive(
    env: Env,
    cfg: AgentConfig,
    status: StatusCell,
    supervisor: Arc<dyn Supervisor>,
    mut rx: mpsc::UnboundedReceiver<Input>,
    reports: Signal<Option<AgentMsg>>,
    rejoin: Signal<()>,
) {
    let mut sm = UpgradeState::new(cfg.upgrade, &cfg.version);
    let mut new_exited: Option<BoxFuture<'static, ()>> = None;
    let mut rejoin_at: Option<u64> = None;
    loop {
        // Do what the state machine asks, feeding each result back.
        while let Some(action) = sm.poll_action() {
            // Log and report the phase before its (possibly long) work.
            publish(&env, &mut sm, &status, &reports);
            match action {
                Action::Stage { version, sha256 } => {
                    let r = stage(&env, &cfg, &version, &sha256).await;
                    sm.handle_staged(env.now_us(), r);
                }
                Action::SelfTest { version } => {
                    let r = supervisor.self_test(&version).await;
                    sm.handle_self_test(env.now_us(), r);
                }
                Action::Cutover { version } => {
                    let r = cutover(&env, &cfg, supervisor.as_ref(), &version).await;
                    if r.is_ok() {
                        new_exited = Some(supervisor.exited(&version));
                    }
                    sm.handle_cutover(env.now_us(), r);
                }
                Action::Revert {
                    to,
                    switch_back,
                    stop,
                } => {
                    new_exited = None;
                    if switch_back {
                        if let Err(e) = set_active(env.disk.as_ref(), &to)
                            .and_then(|()| end_trial(env.disk.as_ref()))
                        {
                            env.event(
                                "upgrade.revert_write_failed",
                                fields! {"error" => e.to_string()},
                            );
                        }
                    }
                    if let Some(v) = &stop {
                        supervisor.stop(v).await;
                    }
                    env.event(
                        "upgrade.reverted",
                        fields! {"active" => to, "stopped" => stop},
                    );
                    if stop.is_some() {
                        rejoin.touch();
                    }
                }
                Action::Exit => {
                    new_exited = None;
                    // The operator saw the new version: the upgrade is committed.
                    if let Err(e) = end_trial(env.disk.as_ref()) {
                        env.event(
                            "upgrade.commit_write_failed",
                            fields! {"error" => e.to_string()},
                        );
                    }
                    publish(&env, &mut sm, &status, &reports);
                    env.event(
                        "upgrade.exit",
                        fields! {"version" => cfg.version, "grace_ms" => EXIT_GRACE_MS},
                    );
                    // Let the sessions flush the report, then end this agent.
                    proto::time::sleep(Duration::from_millis(EXIT_GRACE_MS)).await;
                    supervisor.exit_self();
                }
            }
            publish(&env, &mut sm, &status, &reports);
        }
        publish(&env, &mut sm, &status, &reports);
        let until = sm
            .poll_timeout()
            .map(|d| Duration::from_micros(d.saturating_sub(env.now_us())));
        tokio::select! {
            biased;
            input = rx.recv() => match input {
                Some(Input::Start { version, sha256 }) => {
                    if !sm.handle_start(env.now_us(), &version, &sha256) {
                        env.event("upgrade.start_ignored", fields! {"to_version" => version, "phase" => sm.phase().name()});
                        // Say again where this agent stands.
                        reports.touch();
                    }
                }
                Some(Input::Stop { version }) => {
                    let acted = sm.handle_stop(env.now_us(), &version);
                    if !acted && version == cfg.version {
                        // This is the new agent: the old one is about to exit.
                        rejoin_at = Some(env.now_us() + REJOIN_AFTER_STOP_MS * 1000);
                    }
                    {
                        let mut st = status.lock();
                        st.upgrade_stops_received += 1;
                        st.upgrade_stops_acted += u64::from(acted);
                    }
                    env.event("upgrade.stop_received", fields! {"to_version" => version, "running" => cfg.version, "phase" => sm.phase().name(), "acted" => acted});
                }
                None => return,
            },
            _ = async {
                match new_exited.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                new_exited = None;
                env.event("upgrade.new_exited", fields! {"to_version" => sm.target_version()});
                sm.handle_new_exited(env.now_us());
            }
            _ = async {
                match until {
                    Some(d) => proto::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => sm.handle_timeout(env.now_us()),
            _ = async {
                match rejoin_at {
                    Some(t) => proto::time::sleep(Duration::from_micros(t.saturating_sub(env.now_us()))).await,
                    None => std::future::pending().await,
                }
            } => {
                rejoin_at = None;
                env.event("upgrade.rejoin", fields! {"version" => cfg.version, "reason" => "the old agent was stopped"});
                rejoin.touch();
            }
        }
    }
}

// Logs every pending phase change and publishes the current report.
fn publish(
    env: &Env,
    sm: &mut UpgradeState,
    status: &StatusCell,
    reports: &Signal<Option<AgentMsg>>,
) {
    while let Some(t) = sm.poll_transition() {
        env.event(
            "upgrade.phase",
            fields! {"from" => t.from.name(), "to" => t.to.name(), "at_us" => t.at_us, "to_version" => t.to_version, "reason" => t.reason},
        );
    }
    if sm.phase() == Phase::Idle {
        return;
    }
    status.lock().upgrade_phase = Some(sm.phase().name().into());
    let msg = AgentMsg::UpgradeStatus {
        phase: sm.phase().name().into(),
        to_version: sm.target_version().unwrap_or_default().into(),
        reason: sm.reason().map(str::to_string),
    };
    if reports.get().as_ref() != Some(&msg) {
        reports.set(Some(msg));
    }
}

/// Download, verify and keep the build of `version`.
async fn stage(env: &Env, cfg: &AgentConfig, version: &str, sha256: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 1..=STAGE_ATTEMPTS {
        let got = proto::time::timeout(
            Duration::from_millis(STAGE_TIMEOUT_MS),
            download(env, cfg, sha256),
        )
        .await
        .unwrap_or_else(|_| Err(format!("download timed out after {STAGE_TIMEOUT_MS} ms")));
        match got {
            Ok(bytes) => {
                let actual = sha256_hex(&bytes);
                env.event(
                    "upgrade.downloaded",
                    fields! {"to_version" => version, "bytes" => bytes.len(), "sha256" => actual, "expected" => sha256},
                );
                if actual != sha256 {
                    // Not retried: the server serves what it serves.
                    return Err(format!(
                        "SHA-256 of the downloaded build is {actual}, the server announced {sha256}"
                    ));
                }
                return proto::files::write_atomic(env.disk.as_ref(), &build_path(version), &bytes)
                    .map_err(|e| format!("cannot write {}: {e}", build_path(version)));
            }
            Err(e) => {
                env.event(
                    "upgrade.download_failed",
                    fields! {"to_version" => version, "attempt" => attempt, "error" => e},
                );
                last = e;
                if attempt < STAGE_ATTEMPTS {
                    proto::time::sleep(Duration::from_millis(STAGE_RETRY_MS)).await;
                }
            }
        }
    }
    Err(format!("download failed {STAGE_ATTEMPTS} times: {last}"))
}

/// `GET /agent/builds/<sha256>` over HTTPS from the enrollment listener.
async fn download(env: &Env, cfg: &AgentConfig, sha256: &str) -> Result<Vec<u8>, String> {
    let tcp = env
        .net
        .connect_tcp(&cfg.server_host, cfg.enroll_port)
        .await
        .map_err(|e| format!("TCP {}:{}: {e}", cfg.server_host, cfg.enroll_port))?;
    let tls = proto::tls::client_config(env, &cfg.ca_pem, None, &[b"http/1.1"])
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(cfg.server_host.clone()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(format!("{ARTIFACTS_PATH}{sha256}"))
        .header(hyper::header::HOST, cfg.server_host.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if code != 200 {
            return Err(format!(
                "HTTP {code}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        Ok(body.to_vec())
    }
    .await;
    drop(sender);
    driver.abort();
    result
}

/// Preserve the running build, switch `active` to `version`, start it.
async fn cutover(
    env: &Env,
    cfg: &AgentConfig,
    supervisor: &dyn Supervisor,
    version: &str,
) -> Result<(), String> {
    let disk = env.disk.as_ref();
    let own = build_path(&cfg.version);
    if !disk.exists(&own) {
        // First upgrade of an agent installed before versioned builds: keep
        // the running build where a rollback looks for it.
        proto::files::write_atomic(
            disk,
            &own,
            &Build::new(&cfg.version, cfg.build_defect).bytes(),
        )
        .map_err(|e| format!("cannot preserve the running build at {own}: {e}"))?;
    }
    // The marker first: a crash between the two leaves a trial that ends
    // where it started.
    proto::files::write_atomic(disk, TRIAL, cfg.version.as_bytes())
        .map_err(|e| format!("cannot write the trial marker {TRIAL}: {e}"))?;
    set_active(disk, version).map_err(|e| format!("cannot switch {ACTIVE} to {version}: {e}"))?;
    env.event(
        "upgrade.switched",
        fields! {"active" => version, "previous" => cfg.version},
    );
    supervisor.start(version).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::fsdisk::FsDisk;

    // A disk in a fresh directory, removed at the end.
    struct Scratch(std::path::PathBuf, FsDisk);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("simbench-upgrade-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let disk = FsDisk::new(&dir).unwrap();
            Scratch(dir, disk)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_boot_guard_ends_an_uncommitted_trial_on_the_old_version() {
        let s = Scratch::new("trial");
        let disk = &s.1;
        assert_eq!(boot_guard(disk).unwrap(), None, "no trial: nothing to do");
        // The cutover: marker first, then the switch.
        proto::files::write_atomic(disk, TRIAL, b"1.0.0").unwrap();
        set_active(disk, "1.1.0").unwrap();
        assert_eq!(
            boot_guard(disk).unwrap(),
            Some(("1.0.0".to_string(), Some("1.1.0".to_string())))
        );
        assert_eq!(active_version(disk).as_deref(), Some("1.0.0"));
        assert!(!disk.exists(TRIAL));
        assert_eq!(boot_guard(disk).unwrap(), None, "once");
    }

    #[test]
    fn a_committed_upgrade_boots_the_new_version() {
        let s = Scratch::new("commit");
        let disk = &s.1;
        proto::files::write_atomic(disk, TRIAL, b"1.0.0").unwrap();
        set_active(disk, "1.1.0").unwrap();
        end_trial(disk).unwrap();
        end_trial(disk).unwrap();
        assert_eq!(boot_guard(disk).unwrap(), None);
        assert_eq!(active_version(disk).as_deref(), Some("1.1.0"));
    }
}
