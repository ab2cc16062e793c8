//! The installer: snapshot, `agent up` under a timeout, rollback.
//!
//! Rules (INCIDENTS.md, incident 1): on a failed `up` (non-zero exit or the
//! installer's timeout) roll back the enrollment only if this `up` wrote new
//! certificates — the client-certificate path named by `agent.json` differs
//! from the snapshot taken before `up`; never delete a prior install's files;
//! if the snapshot could not be taken, touch nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::env::{Disk, Env};
use proto::fields;
use serde::Serialize;

use crate::install::{self, AGENT_JSON};
use crate::{AgentConfig, StatusCell};

/// How an install ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstallResult {
    /// `up` exited 0.
    Success,
    /// `up` failed and what it wrote was removed.
    FailedRolledBack,
    /// `up` failed; nothing was rolled back.
    Failed,
}

/// What the installer reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstallReport {
    /// `up`'s exit code (124 when the installer's timeout killed it).
    pub exit_code: i32,
    /// The installer's verdict.
    pub result: InstallResult,
    /// `up`'s error, if any.
    pub error: Option<String>,
    /// Files removed or restored by the rollback.
    pub rolled_back: Vec<String>,
    /// When the installer finished (env clock, microseconds).
    pub finished_us: u64,
}

/// The installer's view of the disk before `up`: every file's contents.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    files: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    /// Reads every file on the disk.
    pub fn take(disk: &dyn Disk) -> std::io::Result<Snapshot> {
        let mut files = BTreeMap::new();
        for p in disk.list()? {
            files.insert(p.clone(), proto::files::read(disk, &p)?);
        }
        Ok(Snapshot { files })
    }

    fn cert_path(&self) -> Option<String> {
        let json = self.files.get(AGENT_JSON)?;
        serde_json::from_slice::<install::AgentFile>(json)
            .ok()
            .map(|f| f.cert_path)
    }
}

fn current_cert_path(disk: &dyn Disk) -> Option<String> {
    let json = proto::files::read(disk, AGENT_JSON).ok()?;
    serde_json::from_slice::<install::AgentFile>(&json)
        .ok()
        .map(|f| f.cert_path)
}

/// Puts the disk back as the snapshot had it: new files go, changed files
/// get their old contents. No file of the snapshot is ever removed.
fn rollback(disk: &dyn Disk, snap: &Snapshot) -> std::io::Result<Vec<String>> {
    let mut touched = Vec::new();
    for p in disk.list()? {
        match snap.files.get(&p) {
            None => {
                disk.remove(&p)?;
                touched.push(p);
            }
            Some(old) if proto::files::read(disk, &p)? != *old => {
                proto::files::write_atomic(disk, &p, old)?;
                touched.push(p);
            }
            Some(_) => {}
        }
    }
    disk.sync_dir()?;
    Ok(touched)
}

/// Runs the installer: snapshot, `up` bounded by `timeout`, rollback on failure.
pub async fn install(
    env: &Env,
    cfg: &AgentConfig,
    status: &StatusCell,
    timeout: Duration,
) -> InstallReport {
    let disk = env.disk.as_ref();
    let snapshot = Snapshot::take(disk);
    let up = proto::time::timeout(timeout, crate::service::up(env, cfg, status)).await;
    let (exit_code, error) = match up {
        Ok(Ok(_)) => (0, None),
        Ok(Err(e)) => (e.exit_code(), Some(e.to_string())),
        Err(_) => (
            124,
            Some(format!(
                "`agent up` did not finish within the installer's {} s timeout",
                timeout.as_secs()
            )),
        ),
    };
    let (result, rolled_back) = if exit_code == 0 {
        (InstallResult::Success, Vec::new())
    } else {
        match &snapshot {
            Err(e) => {
                // Fail safe: without a snapshot nothing tells this install's
                // files from a prior one's.
                env.event("install.no_snapshot", fields! {"error" => e.to_string()});
                (InstallResult::Failed, Vec::new())
            }
            Ok(snap) => {
                let after = current_cert_path(disk);
                if after.is_some() && after != snap.cert_path() {
                    match rollback(disk, snap) {
                        Ok(touched) => (InstallResult::FailedRolledBack, touched),
                        Err(e) => {
                            env.event(
                                "install.rollback_failed",
                                fields! {"error" => e.to_string()},
                            );
                            (InstallResult::Failed, Vec::new())
                        }
                    }
                } else {
                    (InstallResult::Failed, Vec::new())
                }
            }
        }
    };
    if result != InstallResult::Success {
        status.lock().agent_id = install::load(disk).ok().flatten().map(|c| c.file.agent_id);
    }
    let report = InstallReport {
        exit_code,
        result,
        error,
        rolled_back,
        finished_us: env.now_us(),
    };
    env.event(
        "install.result",
        fields! {
            "exit_code" => report.exit_code,
            "result" => report.result,
            "error" => report.error,
            "rolled_back" => report.rolled_back,
        },
    );
    report
}
