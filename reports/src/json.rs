//! The machine-readable verdicts: one family of JSON documents for `run`
//! (the `verdict` object of report.json), `check --format json`,
//! `sweep --format json` and `bench --format json`.
//!
//! Every document of the family starts with the same four fields
//! ([`Header`]): `kind` (`run`, `check`, `sweep`, `bench`), `schema` (the
//! family's version, [`SCHEMA`]), `simbench_version` and `passed`, the
//! overall verdict a CI system acts on without re-deriving it. Expectations
//! are written the same way everywhere ([`ExpectationResult`]), and so is
//! the scenario file a verdict is about ([`ScenarioFile`]).

use format::{Expect, ExpectResult};
use serde::Serialize;
use serde_json::Value;

use crate::catalogue::{BenchRow, CheckSummary};

/// The version of the documents' layout; it grows when a field changes
/// meaning or goes away (new fields do not change it).
pub const SCHEMA: u32 = 1;

/// The simbench version that wrote a document (the workspace's version).
pub const SIMBENCH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The fields every document of the family starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// `run`, `check`, `sweep` or `bench`.
    pub kind: &'static str,
    /// [`SCHEMA`].
    pub schema: u32,
    /// [`SIMBENCH_VERSION`].
    pub simbench_version: &'static str,
    /// The overall verdict: what the exit code says (0 when true).
    pub passed: bool,
}

impl Header {
    /// The header of a `kind` document with its verdict.
    pub fn new(kind: &'static str, passed: bool) -> Self {
        Header {
            kind,
            schema: SCHEMA,
            simbench_version: SIMBENCH_VERSION,
            passed,
        }
    }
}

/// The scenario file a verdict is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioFile {
    /// Where it was read: a path as given, or `scenarios/<name>.toml` for
    /// a shipped one (embedded in the binary or from the catalogue directory).
    pub path: String,
    /// SHA-256 of its bytes, lowercase hex: the same file gives the same
    /// verdict with the same seed and simbench version.
    pub sha256: String,
}

/// One `[[expect]]` with what the run observed and whether it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpectationResult {
    /// The outcome path, e.g. `commands.cmd-0001.status`.
    pub observe: String,
    /// The operator as written in the file (`equals`, `at_least`, ...).
    pub op: &'static str,
    /// The operand.
    pub expected: Value,
    /// What the outcome has at the path; `null` when nothing is there.
    pub observed: Option<Value>,
    /// Whether it holds.
    pub passed: bool,
    /// The same verdict for people.
    pub message: String,
}

impl ExpectationResult {
    /// From an expectation and its judgement.
    pub fn new(expect: &Expect, result: &ExpectResult) -> Self {
        ExpectationResult {
            observe: expect.observe.clone(),
            op: expect.op.as_str(),
            expected: expect.value.clone(),
            observed: result.observed.clone(),
            passed: result.passed,
            message: result.message.clone(),
        }
    }

    /// Every expectation of a run, in file order.
    pub fn all(results: &[(Expect, ExpectResult)]) -> Vec<Self> {
        results.iter().map(|(e, r)| Self::new(e, r)).collect()
    }
}

/// The verdict of one run: the `verdict` object of report.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunVerdict {
    /// `kind: "run"`, and whether every expectation holds.
    #[serde(flatten)]
    pub header: Header,
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    /// The file it came from.
    pub scenario_file: ScenarioFile,
    /// The run's digest (the same as the outcome's `digest`).
    pub digest: String,
    /// How many expectations hold.
    pub expectations_passed: usize,
    /// How many fail.
    pub expectations_failed: usize,
    /// Each expectation, in file order.
    pub expectations: Vec<ExpectationResult>,
    /// The command that replays the run.
    pub replay: String,
}

impl RunVerdict {
    /// The verdict of a run whose expectations gave `expectations`.
    pub fn new(
        scenario: &str,
        seed: u64,
        scenario_file: ScenarioFile,
        digest: &str,
        expectations: Vec<ExpectationResult>,
        replay: String,
    ) -> Self {
        let failed = expectations.iter().filter(|e| !e.passed).count();
        RunVerdict {
            header: Header::new("run", failed == 0),
            scenario: scenario.into(),
            seed,
            scenario_file,
            digest: digest.into(),
            expectations_passed: expectations.len() - failed,
            expectations_failed: failed,
            expectations,
            replay,
        }
    }
}

/// report.json: the typed outcome document (its sorted-key JSON form)
/// with the run's verdict under `verdict` (the outcome's own keys are
/// untouched; the digest covers the outcome without `digest` and
/// `verdict`). [`records::outcome::Outcome::from_value`] reads it back.
pub fn report_json(outcome: &records::outcome::Outcome, verdict: &RunVerdict) -> Value {
    with_verdict(outcome.to_value(), verdict)
}

/// The same from the outcome document already as JSON
/// ([`records::outcome::Outcome::to_value`]).
pub fn with_verdict(mut doc: Value, verdict: &RunVerdict) -> Value {
    if let Value::Object(map) = &mut doc {
        map.insert(
            "verdict".into(),
            serde_json::to_value(verdict).expect("a verdict serializes"),
        );
    }
    doc
}

/// One scenario of `simbench check`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckScenario {
    /// Its name in the catalogue.
    pub scenario: String,
    /// `PASS`, `FAIL`, `NONDETERMINISTIC`, `FAIL+NONDETERMINISTIC` or `ERROR`.
    pub result: String,
    /// Whether it passed.
    pub passed: bool,
    /// The file, when it could be read.
    pub scenario_file: Option<ScenarioFile>,
    /// The seed both runs used, when the file could be read.
    pub seed: Option<u64>,
    /// Each run's digest (`null` for a run that did not finish).
    pub digests: Vec<Option<String>>,
    /// The first run's expectations.
    pub expectations: Vec<ExpectationResult>,
    /// Why it failed or could not run, if it did.
    pub error: Option<String>,
    /// The command that replays it, when it ran.
    pub replay: Option<String>,
}

/// `simbench check --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckDocument {
    /// `kind: "check"`.
    #[serde(flatten)]
    pub header: Header,
    /// `--partition`, as `count:K/N` or `hash:K/N`.
    pub partition: Option<String>,
    /// The counts.
    pub summary: CheckSummary,
    /// One entry per scenario run, in catalogue order.
    pub scenarios: Vec<CheckScenario>,
}

/// One seed of `simbench sweep`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepSeed {
    /// The seed.
    pub seed: u64,
    /// Whether it passed.
    pub passed: bool,
    /// Why not: the first failed expectation, or the run's error.
    pub reason: Option<String>,
    /// The command that replays it, when it failed.
    pub replay: Option<String>,
}

/// `simbench sweep --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepDocument {
    /// `kind: "sweep"`.
    #[serde(flatten)]
    pub header: Header,
    /// The scenario's name.
    pub scenario: String,
    /// The file it came from.
    pub scenario_file: ScenarioFile,
    /// `--seeds`, resolved: the first and one past the last seed.
    pub seeds: [u64; 2],
    /// `--partition`, as `count:K/N` or `hash:K/N`.
    pub partition: Option<String>,
    /// Seeds that passed.
    pub passed_count: usize,
    /// Seeds that failed.
    pub failed_count: usize,
    /// Every seed this machine ran, in order.
    pub results: Vec<SweepSeed>,
}

/// `simbench bench --format json`: the same header, then the rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchDocument {
    /// `kind: "bench"`; `passed` when every run finished.
    #[serde(flatten)]
    pub header: Header,
    /// One row per scenario.
    pub scenarios: Vec<BenchRow>,
}

impl BenchDocument {
    /// The document of `rows`; it passes when no row has an error.
    pub fn new(rows: Vec<BenchRow>) -> Self {
        BenchDocument {
            header: Header::new("bench", rows.iter().all(|r| r.error.is_none())),
            scenarios: rows,
        }
    }
}

/// Any document of the family, pretty, ending in a newline.
pub fn pretty<T: Serialize>(doc: &T) -> String {
    let mut s = serde_json::to_string_pretty(doc).expect("a simbench document serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use format::ExpectOp;
    use serde_json::json;

    fn file() -> ScenarioFile {
        ScenarioFile {
            path: "scenarios/smoke.toml".into(),
            sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn a_run_verdict_lists_each_expectation_with_its_observed_value() {
        let expect = Expect {
            observe: "counts.commands_completed".into(),
            op: ExpectOp::Equals,
            value: json!(99),
        };
        let failed = ExpectResult {
            passed: false,
            observed: Some(json!(0)),
            message: "counts.commands_completed equals 99 failed: observed 0".into(),
        };
        let held = ExpectResult {
            passed: true,
            observed: Some(json!(99)),
            message: "ok".into(),
        };
        let v = RunVerdict::new(
            "never-99",
            3,
            file(),
            "d1",
            ExpectationResult::all(&[(expect.clone(), failed), (expect, held)]),
            "simbench run never-99 --seed 3".into(),
        );
        let outcome =
            records::outcome::Outcome::from_value(&json!({"seed": 3, "digest": "d1"})).unwrap();
        let doc = report_json(&outcome, &v);
        assert_eq!(doc["seed"], 3, "the outcome's keys stay");
        assert_eq!(
            records::outcome::Outcome::from_value(&doc).unwrap(),
            outcome,
            "report.json reads back as the document it was written from"
        );
        let verdict = &doc["verdict"];
        assert_eq!(verdict["kind"], "run");
        assert_eq!(verdict["schema"], SCHEMA);
        assert_eq!(verdict["simbench_version"], SIMBENCH_VERSION);
        assert_eq!(verdict["passed"], false);
        assert_eq!(verdict["expectations_failed"], 1);
        assert_eq!(verdict["expectations_passed"], 1);
        assert_eq!(verdict["scenario_file"]["sha256"], "ab".repeat(32));
        let first = &verdict["expectations"][0];
        assert_eq!(first["op"], "equals");
        assert_eq!(first["expected"], 99);
        assert_eq!(first["observed"], 0);
        assert_eq!(first["passed"], false);
    }

    #[test]
    fn every_document_of_the_family_starts_with_the_same_header() {
        let bench = serde_json::to_value(BenchDocument::new(vec![])).unwrap();
        let sweep = serde_json::to_value(SweepDocument {
            header: Header::new("sweep", true),
            scenario: "smoke".into(),
            scenario_file: file(),
            seeds: [1, 3],
            partition: None,
            passed_count: 2,
            failed_count: 0,
            results: vec![],
        })
        .unwrap();
        for (doc, kind) in [(&bench, "bench"), (&sweep, "sweep")] {
            assert_eq!(doc["kind"], kind);
            assert_eq!(doc["schema"], SCHEMA);
            assert_eq!(doc["simbench_version"], SIMBENCH_VERSION);
            assert_eq!(doc["passed"], true);
        }
        let failing = BenchDocument::new(vec![BenchRow {
            scenario: "x".into(),
            runs: 0,
            sim_s: 0.0,
            wall_min_s: 0.0,
            wall_median_s: 0.0,
            frames: 0,
            peak_rss_mib: None,
            error: Some("did not finish".into()),
        }]);
        assert!(!failing.header.passed);
    }
}
