//! The checked-in list of known differences between the simulator and
//! Linux (`conform/known-differences.toml`): each with the reason and what
//! will close it. It only shrinks: a listed check that matches fails the run.

use serde::Deserialize;

/// One listed difference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    /// `<case>/<check>`.
    pub check: String,
    /// Why the simulator differs today.
    pub reason: String,
    /// What will close it (the work item).
    pub closes: String,
}

/// The whole list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Known {
    /// The differences.
    #[serde(default)]
    pub difference: Vec<Difference>,
}

impl Known {
    /// Parses the list's TOML.
    pub fn parse(text: &str) -> Result<Self, String> {
        let k: Known = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, d) in k.difference.iter().enumerate() {
            if k.difference[..i].iter().any(|e| e.check == d.check) {
                return Err(format!("`{}` is listed twice", d.check));
            }
        }
        Ok(k)
    }

    /// Reads and parses `path`.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the known-differences list {}: {e}; run from the workspace or pass --known FILE",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The reason `check` is listed, if it is.
    pub fn reason(&self, check: &str) -> Option<&str> {
        self.difference
            .iter()
            .find(|d| d.check == check)
            .map(|d| d.reason.as_str())
    }

    /// Listed checks that are not among `ids` (renamed or removed checks).
    pub fn stale(&self, ids: &[String]) -> Vec<String> {
        self.difference
            .iter()
            .filter(|d| !ids.contains(&d.check))
            .map(|d| d.check.clone())
            .collect()
    }
}
