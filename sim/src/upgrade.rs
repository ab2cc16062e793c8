//! Agent processes in the simulator, and the process supervisor the
//! agent's self-upgrade drives ([`agent::upgrade::driver::Supervisor`]).
//!
//! Every running agent version is a process: an `agent::service::run_with`
//! task with its own status, random stream and supervisor, sharing the
//! agent's identity, disk and network. The harness starts the first one
//! after a successful install; an upgrade's cutover starts the new version
//! beside it (the field's transient unit); the operator's stop makes the
//! old one exit; a revert stops the new one. The [`Procs`] table keeps
//! every process ever started, so the outcome can say which versions run
//! and which of them heartbeat.
//!
//! A new process runs the build its document on the agent's disk names
//! (`versions/<v>/agent.bin`, see [`proto::build`]), defect included:
//! `crashes-on-start` exits at once, `never-heartbeats` stays silent, and
//! `fails-self-test` fails the self-test the old agent runs.
//!
//! Nothing here uses `tokio::sync::watch`: its wake-ups go through tokio's
//! unseeded random generator (see [`agent::upgrade::signal`]).

use std::sync::{Arc, Mutex};

use agent::upgrade::driver::{build_path, Supervisor};
use agent::upgrade::signal::Signal;
use agent::{AgentConfig, AgentStatus, StatusCell};
use proto::build::{Build, BuildDefect};
use proto::env::{BoxFuture, Env};
use proto::fields;

use crate::crypto::{derive_seed, seeded_provider};

/// One agent process.
#[derive(Debug)]
pub struct Proc {
    /// The version it runs.
    pub version: String,
    /// Its own status.
    pub status: StatusCell,
    /// Which process started it (`None`: the harness).
    pub parent: Option<usize>,
    /// When it started (microseconds).
    pub started_us: u64,
    /// When it exited, if it did.
    pub exited_us: Option<u64>,
    task: Option<tokio::task::AbortHandle>,
    exited: Signal<bool>,
}

/// Every process of one agent, in start order.
#[derive(Debug, Default)]
pub struct Procs(Mutex<Vec<Proc>>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a process of an agent needs to start another.
#[derive(Clone, Debug)]
pub struct ProcEnv {
    /// The agent's env (its net, clock, disk, observer, point).
    pub env: Env,
    /// The run's seed, for each process's random stream.
    pub seed: u64,
    /// The agent's name.
    pub name: String,
}

impl Procs {
    /// A copy of the table: (version, status, running).
    pub fn snapshot(&self) -> Vec<(String, AgentStatus, bool)> {
        lock(&self.0)
            .iter()
            .map(|p| (p.version.clone(), p.status.get(), p.exited_us.is_none()))
            .collect()
    }

    /// Stops every running process (a reinstall replaces the service).
    pub fn stop_all(&self, now_us: u64) {
        let mut procs = lock(&self.0);
        for p in procs.iter_mut().filter(|p| p.exited_us.is_none()) {
            Self::end(p, now_us);
        }
    }

    fn end(p: &mut Proc, now_us: u64) {
        if let Some(t) = p.task.take() {
            t.abort();
        }
        if p.exited_us.is_none() {
            p.exited_us = Some(now_us);
        }
        p.exited.set(true);
    }

    /// Starts a process running `cfg` (the harness's first one, or an
    /// upgrade's new version started by process `parent`).
    pub fn spawn(
        self: &Arc<Self>,
        penv: &ProcEnv,
        cfg: AgentConfig,
        status: StatusCell,
        parent: Option<usize>,
    ) -> usize {
        let exited = Signal::new(false);
        let idx = {
            let mut procs = lock(&self.0);
            procs.push(Proc {
                version: cfg.version.clone(),
                status: status.clone(),
                parent,
                started_us: penv.env.now_us(),
                exited_us: None,
                task: None,
                exited,
            });
            procs.len() - 1
        };
        let mut env = penv.env.clone();
        // The first process keeps the agent's own random stream.
        if idx > 0 {
            env.crypto = seeded_provider(derive_seed(
                penv.seed,
                &format!("agent:{}/proc-{idx}", penv.name),
            ));
        }
        let supervisor = Arc::new(SimSupervisor {
            procs: self.clone(),
            penv: penv.clone(),
            cfg: cfg.clone(),
            me: idx,
        });
        env.event(
            "process.started",
            fields! {"proc" => idx, "version" => cfg.version, "parent" => parent},
        );
        let procs = self.clone();
        let task_env = env.clone();
        let task = tokio::spawn(async move {
            agent::service::run_with(task_env.clone(), cfg, status, supervisor).await;
            // The service returned on its own: the process exited.
            let mut all = lock(&procs.0);
            let p = &mut all[idx];
            if p.exited_us.is_none() {
                task_env.event(
                    "process.exited",
                    fields! {"proc" => idx, "version" => p.version},
                );
                p.task = None;
                Self::end(p, task_env.now_us());
            }
        });
        let mut procs = lock(&self.0);
        if procs[idx].exited_us.is_none() {
            procs[idx].task = Some(task.abort_handle());
        }
        idx
    }
}

/// The supervisor of one process.
#[derive(Debug)]
struct SimSupervisor {
    procs: Arc<Procs>,
    penv: ProcEnv,
    cfg: AgentConfig,
    me: usize,
}

/// The build of `version` on the agent's disk.
fn build(penv: &ProcEnv, version: &str) -> Result<Build, String> {
    let path = build_path(version);
    let bytes =
        proto::files::read(penv.env.disk.as_ref(), &path).map_err(|e| format!("{path}: {e}"))?;
    let b = Build::parse(&bytes)?;
    if b.version != version {
        return Err(format!("{path} is a build of {}, not {version}", b.version));
    }
    Ok(b)
}

/// `cfg` running the build `b`.
fn running(cfg: &AgentConfig, b: &Build) -> AgentConfig {
    let mut cfg = cfg.clone();
    cfg.version = b.version.clone();
    cfg.build_defect = b.defect;
    cfg
}

/// A new process's status: what the agent knows of itself (`from`), none
/// of the old process's connections or upgrade.
fn fresh_status(from: &StatusCell) -> StatusCell {
    let mut st = from.get();
    st.tunnel_connected = false;
    st.ws_connected = false;
    st.heartbeats_sent = 0;
    st.last_heartbeat_us = None;
    st.upgrade_phase = None;
    st.upgrade_stops_received = 0;
    st.upgrade_stops_acted = 0;
    let status = StatusCell::default();
    *status.lock() = st;
    status
}

/// The service manager starts the agent's service again (after a restart
/// or a crash): first the boot guard ends an uncommitted upgrade's trial
/// (`agent::upgrade::driver::boot_guard`), then the version the disk's
/// `active` pointer names (the
/// installed one, `cfg`'s, when there is none or it is `cfg`'s), as a
/// process of its own. Its status carries on from the agent's newest
/// process. Returns the version started.
pub fn restart(
    penv: &ProcEnv,
    procs: &Arc<Procs>,
    cfg: AgentConfig,
    first: &StatusCell,
) -> Result<String, String> {
    let disk = penv.env.disk.as_ref();
    match agent::upgrade::driver::boot_guard(disk) {
        Ok(Some((back, trial))) => penv.env.event(
            "upgrade.boot_revert",
            fields! {"active" => back, "trial" => trial},
        ),
        Ok(None) => {}
        Err(e) => return Err(format!("the boot guard failed: {e}")),
    }
    let active = agent::upgrade::driver::active_version(disk);
    let cfg = match active {
        Some(v) if v != cfg.version => running(&cfg, &build(penv, &v)?),
        _ => cfg,
    };
    let last = lock(&procs.0).last().map(|p| p.status.clone());
    let status = fresh_status(last.as_ref().unwrap_or(first));
    let version = cfg.version.clone();
    procs.spawn(penv, cfg, status, None);
    Ok(version)
}

impl SimSupervisor {
    fn build(&self, version: &str) -> Result<Build, String> {
        build(&self.penv, version)
    }

    // The running children of this process with `version`.
    fn children(&self, version: &str) -> Vec<usize> {
        lock(&self.procs.0)
            .iter()
            .enumerate()
            .filter(|(_, p)| p.parent == Some(self.me) && p.version == version)
            .map(|(i, _)| i)
            .collect()
    }
}

impl Supervisor for SimSupervisor {
    fn self_test(&self, version: &str) -> BoxFuture<'static, Result<(), String>> {
        let r = self.build(version).and_then(|b| match b.defect {
            Some(BuildDefect::FailsSelfTest) => Err(format!(
                "`fleet-agent --self-test` of {version} exited with 1"
            )),
            _ => Ok(()),
        });
        self.penv.env.event(
            "process.self_test",
            fields! {"version" => version, "ok" => r.is_ok(), "error" => r.as_ref().err().cloned()},
        );
        Box::pin(async move { r })
    }

    fn start(&self, version: &str) -> BoxFuture<'static, Result<(), String>> {
        let r = self.build(version).map(|b| {
            let cfg = running(&self.cfg, &b);
            let me = lock(&self.procs.0)[self.me].status.clone();
            self.procs
                .spawn(&self.penv, cfg, fresh_status(&me), Some(self.me));
        });
        Box::pin(async move { r })
    }

    fn exited(&self, version: &str) -> BoxFuture<'static, ()> {
        let rx = self
            .children(version)
            .last()
            .map(|&i| lock(&self.procs.0)[i].exited.watch());
        Box::pin(async move {
            match rx {
                Some(mut rx) => {
                    rx.wait_for(|e| *e).await;
                }
                None => std::future::pending().await,
            }
        })
    }

    fn stop(&self, version: &str) -> BoxFuture<'static, ()> {
        let now = self.penv.env.now_us();
        for i in self.children(version) {
            let mut procs = lock(&self.procs.0);
            if procs[i].exited_us.is_none() {
                Procs::end(&mut procs[i], now);
                self.penv.env.event(
                    "process.stopped",
                    fields! {"proc" => i, "version" => version, "by" => self.me},
                );
            }
        }
        Box::pin(async {})
    }

    fn exit_self(&self) {
        let now = self.penv.env.now_us();
        let mut procs = lock(&self.procs.0);
        let p = &mut procs[self.me];
        self.penv.env.event(
            "process.exited",
            fields! {"proc" => self.me, "version" => p.version, "reason" => "operator stop"},
        );
        Procs::end(p, now);
    }
}
