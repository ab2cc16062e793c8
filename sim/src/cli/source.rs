//! Where a scenario comes from: a shipped name or a path, and the shipped
//! catalogue itself.

use std::path::{Path, PathBuf};

use format::scenario::Scenario;

use super::CliError;

/// The environment variable that points simbench at a catalogue directory
/// instead of the catalogue embedded in the binary.
pub const CATALOGUE_ENV: &str = "SIMBENCH_SCENARIOS";

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/catalogue.rs"));
}

/// The largest scenario file simbench reads (a bounded read: `/dev/zero`
/// or a log passed by mistake is refused, not read to the end).
pub const MAX_SCENARIO_BYTES: u64 = 4 << 20;

/// `--scenarios DIR`, when given: it wins over [`CATALOGUE_ENV`].
static DIR_FLAG: std::sync::RwLock<Option<PathBuf>> = std::sync::RwLock::new(None);

/// Makes `dir` the catalogue for this process (`--scenarios DIR`).
pub fn set_catalogue_dir(dir: Option<PathBuf>) {
    *DIR_FLAG.write().unwrap_or_else(|e| e.into_inner()) = dir;
}

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

/// The catalogue directory, when one replaces the embedded catalogue:
/// `--scenarios DIR`, else `$SIMBENCH_SCENARIOS` when set and not empty.
pub fn catalogue_dir() -> Option<PathBuf> {
    if let Some(dir) = DIR_FLAG.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Some(dir);
    }
    match std::env::var_os(CATALOGUE_ENV) {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => None,
    }
}

/// Where a catalogue file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built into the binary: the text.
    Embedded(&'static str),
    /// A file of the catalogue directory.
    File(PathBuf),
}

/// One file of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueFile {
    /// The file name without `.toml`: what `simbench run` takes.
    pub name: String,
    /// Where it is.
    pub origin: Origin,
}

/// Every scenario of the catalogue, sorted by name: the directory's
/// `*.toml` when one is given, else the catalogue embedded in the binary.
pub fn catalogue() -> Result<Vec<CatalogueFile>, CliError> {
    let Some(dir) = catalogue_dir() else {
        return Ok(embedded::EMBEDDED
            .iter()
            .map(|(name, text)| CatalogueFile {
                name: name.to_string(),
                origin: Origin::Embedded(text),
            })
            .collect());
    };
    let entries = std::fs::read_dir(&dir).map_err(|e| {
        CliError::BadInput(format!(
            "cannot read the scenario catalogue {}: {e}; check --scenarios DIR or {CATALOGUE_ENV}, or unset both to use the catalogue built into simbench",
            dir.display()
        ))
    })?;
    let mut files: Vec<CatalogueFile> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|path| {
            let name = path.file_stem()?.to_str()?.to_string();
            Some(CatalogueFile {
                name,
                origin: Origin::File(path),
            })
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
    let origin = match r {
        ScenarioRef::Path(p) => Origin::File(p.clone()),
        ScenarioRef::Name(name) => {
            let files = catalogue()?;
            match files.iter().find(|f| &f.name == name) {
                Some(f) => f.origin.clone(),
                None => return Err(unknown_name(name, &files)),
            }
        }
    };
    let (scenario, file, notes) = load_file(&origin, r)?;
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

/// Reads at most [`MAX_SCENARIO_BYTES`] of `path` as UTF-8.
pub fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(format!(
            "larger than {} MiB; a scenario file is a few KiB of TOML",
            MAX_SCENARIO_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("not UTF-8 text ({e})"))
}

fn load_file(
    origin: &Origin,
    r: &ScenarioRef,
) -> Result<(Scenario, reports::json::ScenarioFile, Vec<String>), CliError> {
    // Shipped names show as `scenarios/<name>.toml` in messages; paths as typed.
    let (shown, text) = match origin {
        Origin::Embedded(text) => {
            let ScenarioRef::Name(n) = r else {
                unreachable!("only names come from the embedded catalogue")
            };
            (format!("scenarios/{n}.toml"), text.to_string())
        }
        Origin::File(path) => {
            let shown = path.display().to_string();
            let text = read_bounded(path).map_err(|e| {
                CliError::BadInput(format!(
                    "{shown}: cannot read the scenario file: {e}; check the path, or run `simbench list` for the shipped scenarios"
                ))
            })?;
            (shown, text)
        }
    };
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

    #[test]
    fn the_catalogue_is_built_into_the_binary() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let on_disk = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "toml")
            })
            .count();
        assert_eq!(embedded::EMBEDDED.len(), on_disk);
        let smoke = embedded::EMBEDDED
            .iter()
            .find(|(n, _)| *n == "smoke")
            .unwrap();
        assert_eq!(
            smoke.1,
            std::fs::read_to_string(dir.join("smoke.toml")).unwrap()
        );
    }

    #[test]
    fn reads_are_bounded() {
        let e = read_bounded(Path::new("/dev/zero")).unwrap_err();
        assert!(e.contains("larger than 4 MiB"), "{e}");
    }
}
