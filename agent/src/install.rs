//! What enrollment leaves on the agent's disk.
//!
//! Legacy layout: `certs/<agent_id>.crt` and `.key` (uuid-named) and the
//! fixed-name `gateway-ca.pem`, each overwritten in place, then `agent.json`
//! with the identity and its `Tunnel` section.
//!
//! Transactional layout (switch `transactional_enroll_write`): everything of
//! one enrollment goes to its own `installs/<agent_id>/` (written to temporary
//! names, synced, renamed), nothing of a prior install is touched, and the
//! atomic replacement of `agent.json` is the single commit point. A kill at
//! any point leaves the old install or the new one whole; what an interrupted
//! enrollment staged is removed by the next one ([`remove_unreferenced`]).

use std::io;

use proto::env::Disk;
use proto::files;
use proto::msg::{EnrollResponse, TunnelInfo};
use serde::{Deserialize, Serialize};

/// Path of the agent's configuration.
pub const AGENT_JSON: &str = "agent.json";
/// Path of the gateway CA.
pub const GATEWAY_CA: &str = "gateway-ca.pem";

/// Contents of `agent.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentFile {
    /// Enrolled identity.
    pub agent_id: String,
    /// Client certificate path.
    pub cert_path: String,
    /// Client key path.
    pub key_path: String,
    /// Gateway CA path.
    pub ca_path: String,
    /// Where the gateway is.
    #[serde(rename = "Tunnel")]
    pub tunnel: TunnelInfo,
    /// The agent token issued at enrollment (check-ins, command-channel Auth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
}

/// Loaded credentials, ready for TLS.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `agent.json`.
    pub file: AgentFile,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Client key, PEM.
    pub key_pem: String,
    /// Gateway CA, PEM.
    pub ca_pem: String,
}

/// Directory of a transactional install.
pub const INSTALLS_DIR: &str = "installs/";

fn paths(agent_id: &str, transactional: bool) -> (String, String, String) {
    if transactional {
        let d = format!("{INSTALLS_DIR}{agent_id}");
        (
            format!("{d}/client.crt"),
            format!("{d}/client.key"),
            format!("{d}/gateway-ca.pem"),
        )
    } else {
        (
            format!("certs/{agent_id}.crt"),
            format!("certs/{agent_id}.key"),
            GATEWAY_CA.to_string(),
        )
    }
}

/// Removes every file under `installs/` that `agent.json` does not name:
/// what an interrupted transactional enrollment staged, or an install that a
/// newer one replaced. Files `agent.json` names are never touched.
pub fn remove_unreferenced(disk: &dyn Disk) -> io::Result<Vec<String>> {
    let keep: Vec<String> = match load(disk) {
        Ok(Some(c)) => vec![c.file.cert_path, c.file.key_path, c.file.ca_path],
        Ok(None) => Vec::new(),
        // An unreadable agent.json: we cannot tell what is in use; touch nothing.
        Err(_) => return Ok(Vec::new()),
    };
    let mut removed = Vec::new();
    for p in disk.list()? {
        if p.starts_with(INSTALLS_DIR) && !keep.contains(&p) {
            disk.remove(&p)?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        disk.sync_dir()?;
    }
    Ok(removed)
}

/// Writes an enrollment to disk. `transactional`: every file is written to a
/// temporary name, synced and renamed, `agent.json` last, so an interruption
/// leaves the previous install whole. Otherwise files are overwritten in
/// place, one after the other (the legacy behaviour).
pub fn write_enrollment(
    disk: &dyn Disk,
    resp: &EnrollResponse,
    transactional: bool,
) -> io::Result<AgentFile> {
    let (cert_path, key_path, ca_path) = paths(&resp.agent_id, transactional);
    let file = AgentFile {
        agent_id: resp.agent_id.clone(),
        cert_path,
        key_path,
        ca_path,
        tunnel: resp.tunnel.clone(),
        agent_token: resp.agent_token.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    let write = if transactional {
        files::write_atomic
    } else {
        files::write
    };
    write(disk, &file.cert_path, resp.cert_pem.as_bytes())?;
    write(disk, &file.key_path, resp.key_pem.as_bytes())?;
    write(disk, &file.ca_path, resp.ca_pem.as_bytes())?;
    write(disk, AGENT_JSON, &json)?;
    Ok(file)
}

/// Loads `agent.json` and the files it names; `Ok(None)` when not enrolled.
pub fn load(disk: &dyn Disk) -> io::Result<Option<Credentials>> {
    if !disk.exists(AGENT_JSON) {
        return Ok(None);
    }
    let file: AgentFile = serde_json::from_slice(&files::read(disk, AGENT_JSON)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("agent.json: {e}")))?;
    let text = |p: &str| -> io::Result<String> {
        String::from_utf8(files::read(disk, p)?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{p}: {e}")))
    };
    Ok(Some(Credentials {
        cert_pem: text(&file.cert_path)?,
        key_pem: text(&file.key_path)?,
        ca_pem: text(&file.ca_path)?,
        file,
    }))
}
