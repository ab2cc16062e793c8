//! `simbench conform`: the simulator held to Linux, case by case.
//!
//! Each [`Case`] runs twice: on real sockets ([`real`]: the release
//! `fleet-server` and `fleet-agent` in a network namespace of its own, the
//! fault an nftables rule in the input hook) and in the simulator (a
//! seeded scenario, the same fault in the seam). Both sides fill the same
//! named checks; [`compare`] puts them side by side, and the checked-in
//! known-differences list ([`known`]) decides, strictly, which differences
//! are expected today: an unlisted difference fails the run, and so does a
//! listed check that now matches (take it off the list).
//!
//! Map: [`cases`] the case table, [`command`] the case driven through the
//! operator API (a dispatch, verdict rows), [`real`] the namespace runner,
//! [`sim_side`] the simulated runs, [`known`] the list, [`table`] the output.

pub mod cases;
pub mod command;
pub mod known;
pub mod real;
pub mod sim_side;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// One observed value of a check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Val {
    /// An exit code, a count.
    Int(i64),
    /// A message, a name.
    Text(String),
    /// A duration in seconds.
    Secs(f64),
    /// A yes/no fact.
    Bool(bool),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Int(i) => write!(f, "{i}"),
            Val::Text(t) => f.write_str(t),
            Val::Secs(s) => write!(f, "{s:.3} s"),
            Val::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// What one side saw: per check, the value or why it could not be observed.
pub type Observed = BTreeMap<&'static str, Result<Val, String>>;

/// How a check's two values are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compare {
    /// Equal values.
    Exact,
    /// Equal text once host names and address forms are replaced by
    /// `<server>` (`localhost`, `server`, `127.0.0.1`, `::1`).
    Message,
    /// Durations no further apart than this many seconds.
    Within(f64),
}

impl Compare {
    /// How the table states the tolerance.
    pub fn tolerance(&self) -> String {
        match self {
            Compare::Exact => "equal".into(),
            Compare::Message => "equal modulo host".into(),
            Compare::Within(s) => format!("±{s} s"),
        }
    }

    /// Whether `real` and `sim` agree.
    pub fn matches(&self, real: &Val, sim: &Val) -> bool {
        match (self, real, sim) {
            (Compare::Within(tol), Val::Secs(a), Val::Secs(b)) => (a - b).abs() <= *tol,
            (Compare::Message, Val::Text(a), Val::Text(b)) => {
                normalize_hosts(a) == normalize_hosts(b)
            }
            _ => real == sim,
        }
    }
}

/// Replaces each host-name or loopback-address word by `<server>`.
pub fn normalize_hosts(s: &str) -> String {
    const HOSTS: [&str; 4] = ["localhost", "server", "127.0.0.1", "::1"];
    let mut out = String::with_capacity(s.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if HOSTS.contains(&word.as_str()) {
            out.push_str("<server>");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A check of a case: its name and how its values compare.
#[derive(Debug, Clone, Copy)]
pub struct CheckSpec {
    /// Short name; the list and the table call it `<case>/<name>`.
    pub name: &'static str,
    /// How real and simulated compare.
    pub compare: Compare,
}

/// A conformance case.
pub struct Case {
    /// Its name (`--case NAME`).
    pub name: &'static str,
    /// What it does, one line.
    pub summary: &'static str,
    /// Its checks, in table order.
    pub checks: &'static [CheckSpec],
    /// The simulated side: a scenario file (format v1) with its seed.
    pub scenario: &'static str,
    /// Reads the checks off a finished simulated run.
    pub sim: fn(&crate::run::RunOutput) -> Observed,
    /// Runs the case on real sockets and reads the checks off the logs
    /// (every wait in it is bounded).
    pub real: fn(&real::Bench) -> Result<Observed, String>,
}

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Real and simulated agree.
    Match,
    /// They differ and the list says so.
    Known,
    /// They differ and the list does not say so: fails the run.
    Differs,
    /// They agree but the list says they differ: fails the run.
    NowMatches,
    /// Not run (no namespaces here).
    Skipped,
}

impl Status {
    /// Whether this row fails the run.
    pub fn fails(self) -> bool {
        matches!(self, Status::Differs | Status::NowMatches)
    }

    /// The table's `match` column.
    pub fn label(self) -> &'static str {
        match self {
            Status::Match => "yes",
            Status::Known => "no (known)",
            Status::Differs => "NO",
            Status::NowMatches => "yes, but listed: take it off the list",
            Status::Skipped => "skipped",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `<case>/<check>`.
    pub check: String,
    /// The real value, or why there is none.
    pub real: String,
    /// The simulated value, or why there is none.
    pub simulated: String,
    /// The stated tolerance.
    pub tolerance: String,
    /// The verdict.
    pub status: Status,
    /// The list's reason, for a known difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the suite found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Why the real side did not run, if it did not.
    pub skipped: Option<String>,
    /// Every check of every selected case.
    pub rows: Vec<Row>,
    /// Listed differences that name no check of the suite (a stale list).
    pub stale: Vec<String>,
    /// Wall time of each case's real side, seconds.
    pub real_wall_s: BTreeMap<String, f64>,
}

impl Report {
    /// Whether any row fails the run, or the list is stale.
    pub fn failed(&self) -> bool {
        !self.stale.is_empty() || self.rows.iter().any(|r| r.status.fails())
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this case.
    pub case: Option<String>,
    /// Where fleet-server and fleet-agent are.
    pub bin_dir: PathBuf,
}

fn show(v: &Result<Val, String>) -> String {
    match v {
        Ok(v) => v.to_string(),
        Err(e) => format!("({e})"),
    }
}

/// Compares one case's two sides into rows.
pub fn compare(
    case: &Case,
    real: &Result<Observed, String>,
    sim: &Result<Observed, String>,
    known: &known::Known,
) -> Vec<Row> {
    case.checks
        .iter()
        .map(|c| {
            let id = format!("{}/{}", case.name, c.name);
            let get = |side: &Result<Observed, String>| match side {
                Ok(o) => o
                    .get(c.name)
                    .cloned()
                    .unwrap_or_else(|| Err("not observed".into())),
                Err(e) => Err(e.clone()),
            };
            let (r, s) = (get(real), get(sim));
            let same = matches!((&r, &s), (Ok(a), Ok(b)) if c.compare.matches(a, b));
            let listed = known.reason(&id);
            let status = match (same, listed.is_some()) {
                (true, false) => Status::Match,
                (true, true) => Status::NowMatches,
                (false, true) => Status::Known,
                (false, false) => Status::Differs,
            };
            Row {
                check: id,
                real: show(&r),
                simulated: show(&s),
                tolerance: c.compare.tolerance(),
                status,
                reason: listed.map(str::to_string),
            }
        })
        .collect()
}

/// The cases `--case` selects; an unknown name lists the valid ones.
pub fn select(case: Option<&str>) -> Result<Vec<&'static Case>, String> {
    let all = cases::all();
    match case {
        None => Ok(all.iter().collect()),
        Some(name) => all
            .iter()
            .find(|c| c.name == name)
            .map(|c| vec![c])
            .ok_or_else(|| {
                format!(
                    "no conformance case `{name}` (cases: {})",
                    all.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                )
            }),
    }
}

/// Runs the selected cases, each case's real side in its own namespace, all
/// cases at once (they mostly wait on timeouts), and compares.
pub fn run_suite(opts: &Options, known: &known::Known) -> Result<Report, String> {
    let selected = select(opts.case.as_deref())?;
    let skipped = real::unavailable();
    if skipped.is_none() {
        for ns in real::sweep_stale() {
            eprintln!("simbench conform: deleted namespace {ns} left by an earlier run");
        }
    }
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = selected
            .iter()
            .map(|case| {
                let skip = skipped.is_some();
                scope.spawn(move || {
                    let started = std::time::Instant::now();
                    let real = if skip {
                        None
                    } else {
                        Some(
                            real::Bench::new(&opts.bin_dir, case.name)
                                .and_then(|bench| (case.real)(&bench)),
                        )
                    };
                    let wall = started.elapsed();
                    let sim = sim_side::run(case);
                    (real, sim, wall)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    (
                        Some(Err("panicked".into())),
                        Err("panicked".into()),
                        Duration::ZERO,
                    )
                })
            })
            .collect()
    });
    let mut rows = Vec::new();
    let mut real_wall_s = BTreeMap::new();
    for (case, (real, sim, wall)) in selected.iter().zip(results) {
        match real {
            Some(real) => {
                real_wall_s.insert(case.name.to_string(), wall.as_secs_f64());
                rows.extend(compare(case, &real, &sim, known));
            }
            None => rows.extend(case.checks.iter().map(|c| {
                Row {
                    check: format!("{}/{}", case.name, c.name),
                    real: "(not run)".into(),
                    simulated: match &sim {
                        Ok(o) => o
                            .get(c.name)
                            .map(show)
                            .unwrap_or_else(|| "(not observed)".into()),
                        Err(e) => format!("({e})"),
                    },
                    tolerance: c.compare.tolerance(),
                    status: Status::Skipped,
                    reason: None,
                }
            })),
        }
    }
    let ids: Vec<String> = cases::all()
        .iter()
        .flat_map(|c| {
            c.checks
                .iter()
                .map(move |k| format!("{}/{}", c.name, k.name))
        })
        .collect();
    let stale = known.stale(&ids);
    Ok(Report {
        skipped,
        rows,
        stale,
        real_wall_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_loopback_forms_compare_equal() {
        assert_eq!(
            normalize_hosts("check that UDP 4433 to localhost is open"),
            normalize_hosts("check that UDP 4433 to server is open")
        );
        assert_eq!(normalize_hosts("127.0.0.1:7171"), "<server>:7171");
        assert_eq!(normalize_hosts("fleet-server died"), "fleet-server died");
    }

    #[test]
    fn durations_compare_within_the_tolerance() {
        let c = Compare::Within(1.0);
        assert!(c.matches(&Val::Secs(23.05), &Val::Secs(23.9)));
        assert!(!c.matches(&Val::Secs(20.0), &Val::Secs(21.5)));
    }

    #[test]
    fn the_checked_in_list_parses_and_names_only_checks_of_the_suite() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conform/known-differences.toml");
        let list = known::Known::load(&path).unwrap();
        let ids: Vec<String> = cases::all()
            .iter()
            .flat_map(|c| {
                c.checks
                    .iter()
                    .map(move |k| format!("{}/{}", c.name, k.name))
            })
            .collect();
        assert_eq!(list.stale(&ids), Vec::<String>::new());
        assert!(list
            .difference
            .iter()
            .all(|d| !d.reason.is_empty() && !d.closes.is_empty()));
    }

    #[test]
    fn the_list_is_strict_both_ways() {
        let case = &cases::all()[0];
        let check = case.checks[0].name;
        let obs =
            |v: i64| -> Result<Observed, String> { Ok(Observed::from([(check, Ok(Val::Int(v)))])) };
        let id = format!("{}/{check}", case.name);
        let listed = known::Known::parse(&format!(
            "[[difference]]\ncheck = \"{id}\"\nreason = \"r\"\ncloses = \"c\"\n"
        ))
        .unwrap();
        let empty = known::Known::default();
        assert_eq!(
            compare(case, &obs(1), &obs(1), &empty)[0].status,
            Status::Match
        );
        assert_eq!(
            compare(case, &obs(1), &obs(2), &empty)[0].status,
            Status::Differs
        );
        assert_eq!(
            compare(case, &obs(1), &obs(2), &listed)[0].status,
            Status::Known
        );
        assert_eq!(
            compare(case, &obs(1), &obs(1), &listed)[0].status,
            Status::NowMatches
        );
    }
}
