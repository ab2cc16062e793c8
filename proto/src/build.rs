//! Agent builds as the upgrade protocol moves them around (INCIDENTS.md,
//! section 5).
//!
//! In the simulator an agent "binary" is a small deterministic JSON
//! document naming its version and, to inject a field failure, a defect of
//! that build, padded to a fixed size. The server serves its bytes with
//! their SHA-256; the agent verifies the hash, keeps the build under
//! `versions/<version>/agent.bin` and, once it runs it, behaves as the
//! document says. A real deployment serves real binaries through the same
//! path; nothing in the protocol reads the document except the process
//! supervisor that "runs" it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where the server serves builds: `GET {ARTIFACTS_PATH}<sha256>` on the
/// HTTPS enrollment listener. Builds are addressed by their announced
/// SHA-256, so two builds of one version (one with a defect, for one site's
/// agents) are two artifacts.
pub const ARTIFACTS_PATH: &str = "/agent/builds/";

/// Size every build document is padded to.
pub const BUILD_LEN: usize = 1024;

/// A defect of a build, injected to reproduce a field failure of an upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BuildDefect {
    /// The served bytes differ from the announced SHA-256 (the build
    /// itself is sound; what arrives is not).
    Corrupt,
    /// The build's `--self-test` fails.
    FailsSelfTest,
    /// The build runs but never sends a heartbeat.
    NeverHeartbeats,
    /// The build exits as soon as it is started.
    CrashesOnStart,
}

impl BuildDefect {
    /// The defect's name as scenario files and events spell it.
    pub fn name(self) -> &'static str {
        match self {
            BuildDefect::Corrupt => "corrupt",
            BuildDefect::FailsSelfTest => "fails-self-test",
            BuildDefect::NeverHeartbeats => "never-heartbeats",
            BuildDefect::CrashesOnStart => "crashes-on-start",
        }
    }
}

/// The document a build's bytes carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// Always `fleet-agent`.
    pub build: String,
    /// The version the build runs as.
    pub version: String,
    /// Its defect; `None` for a sound build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defect: Option<BuildDefect>,
}

impl Build {
    /// The build of `version` with `defect`.
    pub fn new(version: &str, defect: Option<BuildDefect>) -> Build {
        Build {
            build: "fleet-agent".into(),
            version: version.into(),
            defect,
        }
    }

    /// The build's bytes: the JSON document, then spaces up to [`BUILD_LEN`].
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec(self).expect("builds serialize");
        if b.len() < BUILD_LEN {
            b.resize(BUILD_LEN, b' ');
        }
        b
    }

    /// Reads a build back from its bytes.
    pub fn parse(bytes: &[u8]) -> Result<Build, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not a build: {e}"))?;
        let b: Build =
            serde_json::from_str(text.trim_end()).map_err(|e| format!("not a build: {e}"))?;
        if b.build != "fleet-agent" {
            return Err(format!("not a fleet-agent build: {}", b.build));
        }
        Ok(b)
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_round_trips_through_its_padded_bytes() {
        let b = Build::new("1.1.0", Some(BuildDefect::NeverHeartbeats));
        let bytes = b.bytes();
        assert_eq!(bytes.len(), BUILD_LEN);
        assert_eq!(Build::parse(&bytes).unwrap(), b);
        assert_eq!(sha256_hex(&bytes), sha256_hex(&b.bytes()), "deterministic");
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        assert_ne!(sha256_hex(&flipped), sha256_hex(&bytes));
        assert!(Build::parse(b"garbage").is_err());
        assert_eq!(BuildDefect::CrashesOnStart.name(), "crashes-on-start");
    }
}
