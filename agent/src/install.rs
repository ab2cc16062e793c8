//! What enrollment leaves on the agent's disk.
//!
//! `certs/<agent_id>.crt` and `.key` (uuid-named), `gateway-ca.pem` (fixed
//! name) and `agent.json` with the identity and its `Tunnel` section.

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

/// Client certificate path for an agent id.
pub fn cert_path(agent_id: &str) -> String {
    format!("certs/{agent_id}.crt")
}

/// Client key path for an agent id.
pub fn key_path(agent_id: &str) -> String {
    format!("certs/{agent_id}.key")
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
    let file = AgentFile {
        agent_id: resp.agent_id.clone(),
        cert_path: cert_path(&resp.agent_id),
        key_path: key_path(&resp.agent_id),
        ca_path: GATEWAY_CA.into(),
        tunnel: resp.tunnel.clone(),
    };
    let json = serde_json::to_vec_pretty(&file).map_err(io::Error::other)?;
    let write = if transactional {
        files::write_atomic
    } else {
        files::write
    };
    write(disk, &file.cert_path, resp.cert_pem.as_bytes())?;
    write(disk, &file.key_path, resp.key_pem.as_bytes())?;
    write(disk, GATEWAY_CA, resp.ca_pem.as_bytes())?;
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
