//! Agent builds the server serves for self-upgrades:
//! `GET` [`proto::build::ARTIFACTS_PATH`]`<sha256>` on the HTTPS
//! enrollment listener, the bytes whose SHA-256 the `Upgrade` request
//! announces.
//!
//! A published build is a record in the store's `artifacts` table, keyed by
//! its announced SHA-256 (version and defect in the value), so a restarted
//! server serves it again, and two builds of one version can coexist. A
//! build published with the `corrupt` defect is served with one byte
//! flipped: what arrives no longer matches the announced hash.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use proto::build::{sha256_hex, Build, BuildDefect};
use proto::fields;
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::Shared;

/// A published agent build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The version.
    pub version: String,
    /// The build's defect, if any.
    pub defect: Option<BuildDefect>,
    /// The SHA-256 the server announces, of the build's sound bytes; the key.
    pub sha256: String,
}

impl Artifact {
    /// The build of `version` with `defect`.
    pub fn new(version: &str, defect: Option<BuildDefect>) -> Artifact {
        let build = Build::new(version, defect);
        Artifact {
            version: version.into(),
            defect,
            sha256: sha256_hex(&build.bytes()),
        }
    }

    /// The bytes served for it.
    pub fn served_bytes(&self) -> Vec<u8> {
        let mut bytes = Build::new(&self.version, self.defect).bytes();
        if self.defect == Some(BuildDefect::Corrupt) {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x5a;
        }
        bytes
    }
}

impl Shared {
    /// Publishes (or re-publishes) the build of `version`.
    pub(crate) fn publish_build(
        &self,
        version: &str,
        defect: Option<BuildDefect>,
    ) -> Result<Artifact, StoreError> {
        let a = Artifact::new(version, defect);
        self.store.put_artifact(&a)?;
        self.env.event(
            "artifact.published",
            fields! {"version" => version, "defect" => defect.map(|d| d.name()), "sha256" => a.sha256},
        );
        Ok(a)
    }
}

/// Answers `GET <ARTIFACTS_PATH><sha256>`.
pub(crate) fn serve(shared: &Shared, sha256: &str) -> Response<Full<Bytes>> {
    let found = shared.store.artifact(sha256);
    let version = found
        .as_ref()
        .ok()
        .and_then(|a| a.as_ref().map(|a| a.version.clone()));
    let (status, body) = match found {
        Ok(Some(a)) => (StatusCode::OK, a.served_bytes()),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("no build with SHA-256 {sha256} is published").into_bytes(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                b"store read failed; retry later".to_vec(),
            )
        }
    };
    shared.env.event(
        "artifact.served",
        fields! {"sha256" => sha256, "version" => version, "status" => status.as_u16(), "bytes" => body.len()},
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_builds_are_served_with_bytes_that_miss_the_announced_hash() {
        let sound = Artifact::new("1.1.0", None);
        assert_eq!(sha256_hex(&sound.served_bytes()), sound.sha256);
        let corrupt = Artifact::new("1.1.0", Some(BuildDefect::Corrupt));
        assert_ne!(sha256_hex(&corrupt.served_bytes()), corrupt.sha256);
        let silent = Artifact::new("1.1.0", Some(BuildDefect::NeverHeartbeats));
        assert_eq!(sha256_hex(&silent.served_bytes()), silent.sha256);
        assert_ne!(
            silent.sha256, sound.sha256,
            "the defect is part of the build"
        );
        assert_eq!(
            Build::parse(&silent.served_bytes()).unwrap().defect,
            Some(BuildDefect::NeverHeartbeats)
        );
    }
}
