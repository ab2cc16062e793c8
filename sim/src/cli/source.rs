//! Where a scenario comes from: a shipped name or a path, and the shipped
//! catalogue itself.

use std::path::{Path, PathBuf};

use format::scenario::Scenario;

use super::CliError;

/// The environment variable that points simbench at another catalogue
/// directory instead of the workspace's `scenarios/`.
pub const CATALOGUE_ENV: &str = "SIMBENCH_SCENARIOS";

/// A scenario as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioRef {
    /// A shipped scenario: `scenarios/<name>.toml`.
    Name(String),
    /// A file, as typed.
    Path(PathBuf),
}

impl ScenarioRef {
    /// Anything containing a path separator or ending in `.toml` is a path;
    /// everything else is a name.
    pub fn parse(text: &str) -> Self {
        if text.contains('/') || text.contains(std::path::MAIN_SEPARATOR) || text.ends_with(".toml")
        {
            ScenarioRef::Path(PathBuf::from(text))
        } else {
            ScenarioRef::Name(text.to_string())
        }
    }

    /// As typed: what a replay command repeats.
    pub fn shown(&self) -> String {
        match self {
            ScenarioRef::Name(n) => n.clone(),
            ScenarioRef::Path(p) => p.display().to_string(),
        }
    }
}

/// The catalogue directory: `$SIMBENCH_SCENARIOS` when set, else the
/// workspace's `scenarios/`.
pub fn catalogue_dir() -> PathBuf {
    match std::env::var_os(CATALOGUE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::scenario::catalogue_dir(),
    }
}

/// One file of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueFile {
    /// The file name without `.toml`: what `simbench run` takes.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
}

/// Every `*.toml` in the catalogue directory, sorted by name.
pub fn catalogue() -> Result<Vec<CatalogueFile>, CliError> {
    let dir = catalogue_dir();
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        CliError::BadInput(format!(
            "cannot read the scenario catalogue {}: {e}; run simbench from its cargo workspace, or set {CATALOGUE_ENV} to the scenarios directory",
            dir.display()
        ))
    })?;
    let mut files: Vec<CatalogueFile> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_string();
            Some(CatalogueFile { name, path })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// A scenario read and parsed, with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed scenario.
    pub scenario: Scenario,
    /// The reference as typed, for replay commands.
    pub shown: String,
    /// Where the file was read and the SHA-256 of its bytes.
    pub file: reports::json::ScenarioFile,
    /// Notes about old spellings the file uses (`file:line:col: note: ...`).
    pub notes: Vec<String>,
}

/// Reads and parses a scenario. An unknown name lists the shipped names
/// with a "did you mean"; a bad file gives `file:line:column: message`.
pub fn load(r: &ScenarioRef) -> Result<Loaded, CliError> {
    let path = match r {
        ScenarioRef::Path(p) => p.clone(),
        ScenarioRef::Name(name) => {
            let files = catalogue()?;
            match files.iter().find(|f| &f.name == name) {
                Some(f) => f.path.clone(),
                None => return Err(unknown_name(name, &files)),
            }
        }
    };
    let (scenario, file, notes) = load_file(&path, r)?;
    Ok(Loaded {
        scenario,
        shown: r.shown(),
        file,
        notes,
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn load_file(
    path: &Path,
    r: &ScenarioRef,
) -> Result<(Scenario, reports::json::ScenarioFile, Vec<String>), CliError> {
    // Names show as `scenarios/<name>.toml` in messages, whatever the
    // absolute path of the workspace; paths show as typed.
    let shown = match r {
        ScenarioRef::Name(n) if std::env::var_os(CATALOGUE_ENV).is_none() => {
            format!("scenarios/{n}.toml")
        }
        _ => path.display().to_string(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::BadInput(format!(
            "{shown}: cannot read the scenario file: {e}; check the path, or run `simbench list` for the shipped scenarios"
        ))
    })?;
    let file = reports::json::ScenarioFile {
        sha256: sha256_hex(text.as_bytes()),
        path: shown.clone(),
    };
    let (scenario, notes) =
        format::parse_scenario_with_notes(&shown, &text).map_err(CliError::Scenario)?;
    Ok((scenario, file, notes))
}

fn unknown_name(name: &str, files: &[CatalogueFile]) -> CliError {
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut msg = format!("no shipped scenario is named `{name}`");
    if let Some(s) = format::did_you_mean(name, names.iter().copied()) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    }
    if names.is_empty() {
        msg.push_str("\nthe catalogue is empty");
    } else {
        msg.push_str(&format!("\nshipped scenarios: {}", names.join(", ")));
    }
    msg.push_str("\nto run a file, give its path (with a `/` or ending in .toml)");
    CliError::BadInput(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            ScenarioRef::parse("smoke"),
            ScenarioRef::Name("smoke".into())
        );
        assert_eq!(
            ScenarioRef::parse("smoke.toml"),
            ScenarioRef::Path("smoke.toml".into())
        );
        assert_eq!(ScenarioRef::parse("./x"), ScenarioRef::Path("./x".into()));
    }
}
