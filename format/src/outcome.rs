//! Outcome paths and expectations: which paths an `[[expect]]` may observe,
//! how to find a path in an outcome document, and how to judge one
//! expectation against what was observed.

use std::cmp::Ordering;

use serde_json::Value;

use crate::catalogue::OBSERVE_PATHS;
use crate::error::ErrorKind;
use crate::scenario::{Expect, ExpectOp};
use crate::suggest::{choices, hint};

/// One segment of a path pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seg<'a> {
    Lit(&'a str),
    Name,
    Id,
}

impl<'a> Seg<'a> {
    fn of(text: &'a str) -> Self {
        match text {
            "<name>" => Seg::Name,
            "<id>" => Seg::Id,
            _ => Seg::Lit(text),
        }
    }

    fn text(self) -> &'a str {
        match self {
            Seg::Lit(t) => t,
            Seg::Name => "<name>",
            Seg::Id => "<id>",
        }
    }

    fn matches(self, part: &str) -> bool {
        match self {
            Seg::Lit(t) => t == part,
            Seg::Name => is_agent_name(part),
            Seg::Id => is_command_id(part),
        }
    }
}

/// Whether `name` is a valid agent or site name: 1 to 64 ASCII letters,
/// digits, `-` or `_`.
pub fn is_agent_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `id` looks like a command id: `cmd-` and at least four digits.
pub fn is_command_id(id: &str) -> bool {
    id.strip_prefix("cmd-")
        .is_some_and(|d| d.len() >= 4 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Why a path is refused, for the parser.
pub(crate) struct PathError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Checks that `path` matches one of the patterns in [`OBSERVE_PATHS`]
/// (`<name>` any valid agent name, `<id>` any `cmd-NNNN`). The error says
/// which part is wrong, what is valid there and, when one is close, what was
/// probably meant.
pub fn observe_path_is_known(path: &str) -> Result<(), String> {
    check_path(path, None).map_err(|e| e.message)
}

/// The declared agents: their names in order (for messages) and a fast test.
pub(crate) type Declared<'a> = (&'a [String], &'a dyn Fn(&str) -> bool);

/// [`observe_path_is_known`], and with `agents` also checks that a
/// `<name>` part is a declared agent.
pub(crate) fn check_path(path: &str, agents: Option<Declared>) -> Result<(), PathError> {
    let patterns: Vec<Vec<Seg>> = OBSERVE_PATHS
        .iter()
        .map(|(p, _)| p.split('.').map(Seg::of).collect())
        .collect();
    let parts: Vec<&str> = path.split('.').collect();
    let unknown = |detail: String| PathError {
        kind: ErrorKind::UnknownPath,
        message: format!("unknown outcome path {path:?}: {detail}"),
    };
    let mut alive: Vec<&Vec<Seg>> = patterns.iter().collect();
    for (i, part) in parts.iter().enumerate() {
        let continuing: Vec<&Vec<Seg>> = alive.iter().copied().filter(|p| p.len() > i).collect();
        let prefix = parts[..i].join(".");
        if continuing.is_empty() {
            return Err(unknown(format!("{prefix:?} has no parts below it")));
        }
        let next: Vec<&Vec<Seg>> = continuing
            .iter()
            .copied()
            .filter(|p| p[i].matches(part))
            .collect();
        if next.is_empty() {
            let options = distinct(continuing.iter().map(|p| p[i]));
            let place = if i == 0 {
                format!("{part:?} cannot start a path")
            } else {
                format!("{part:?} cannot follow {prefix:?}")
            };
            if options == [Seg::Name] {
                return Err(unknown(format!(
                    "{part:?} is not an agent name (letters, digits, `-` and `_`)"
                )));
            }
            if options == [Seg::Id] {
                return Err(unknown(format!(
                    "{part:?} is not a command id; ids look like \"cmd-0001\" (the first dispatched command)"
                )));
            }
            let literals = options.iter().filter_map(|s| match s {
                Seg::Lit(t) => Some(*t),
                _ => None,
            });
            let dym = hint(part, literals);
            let valid = choices(options.iter().map(|s| s.text()), usize::MAX);
            return Err(unknown(format!("{place}{dym}valid here: {valid}")));
        }
        if let Some((agents, is_declared)) = agents {
            if next.iter().all(|p| p[i] == Seg::Name) && !is_declared(part) {
                let declared = if agents.is_empty() {
                    "no agents are declared; add an [[agent]] table".to_owned()
                } else {
                    format!(
                        "declared agents: {}",
                        choices(agents.iter().map(String::as_str), 12)
                    )
                };
                return Err(PathError {
                    kind: ErrorKind::UnknownAgent,
                    message: format!(
                        "outcome path {path:?} names agent {part:?}, which is not declared{}{declared}",
                        hint(part, agents.iter().map(String::as_str))
                    ),
                });
            }
        }
        alive = next;
    }
    if alive.iter().any(|p| p.len() == parts.len()) {
        return Ok(());
    }
    let options = distinct(alive.iter().map(|p| p[parts.len()]));
    Err(unknown(format!(
        "it needs more after {path:?}; continue with one of: {}",
        choices(options.iter().map(|s| s.text()), usize::MAX)
    )))
}

fn distinct<'a>(segs: impl Iterator<Item = Seg<'a>>) -> Vec<Seg<'a>> {
    let mut out: Vec<Seg> = Vec::new();
    for s in segs {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The value at a dotted `path` in an outcome document (object keys; a
/// numeric part also indexes an array), or `None` when there is none.
pub fn lookup<'v>(document: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(document, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The verdict on one expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectResult {
    /// Whether the expectation holds.
    pub passed: bool,
    /// What the outcome had at the path (`None`: nothing there).
    pub observed: Option<Value>,
    /// One line for people: the expectation and what was observed.
    pub message: String,
}

/// Judges `expect` against `observed`, the value at its path (from
/// [`lookup`]). A missing value fails every operator.
pub fn evaluate(expect: &Expect, observed: Option<&Value>) -> ExpectResult {
    let what = expect.describe();
    let Some(obs) = observed else {
        return ExpectResult {
            passed: false,
            observed: None,
            message: format!("{what} failed: the outcome has no value at this path"),
        };
    };
    let verdict: Result<bool, String> = match expect.op {
        ExpectOp::Equals => Ok(loose_eq(obs, &expect.value)),
        ExpectOp::Not => Ok(!loose_eq(obs, &expect.value)),
        ExpectOp::AtLeast | ExpectOp::AtMost => match num_cmp(obs, &expect.value) {
            Some(ord) if expect.op == ExpectOp::AtLeast => Ok(ord != Ordering::Less),
            Some(ord) => Ok(ord != Ordering::Greater),
            None => Err(format!(
                "{} compares numbers, but observed {} ({})",
                expect.op,
                obs,
                json_type(obs)
            )),
        },
        ExpectOp::Contains => contains(obs, &expect.value),
    };
    let (passed, message) = match verdict {
        Ok(true) => (true, format!("{what} (observed {obs})")),
        Ok(false) => (false, format!("{what} failed: observed {obs}")),
        Err(why) => (false, format!("{what} failed: {why}")),
    };
    ExpectResult {
        passed,
        observed: Some(obs.clone()),
        message,
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Orders two JSON numbers by value (exactly when both are integers).
fn num_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    let (Value::Number(a), Value::Number(b)) = (a, b) else {
        return None;
    };
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// Equality where numbers compare by value (1 equals 1.0), also inside
/// arrays and objects.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => num_cmp(a, b) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| loose_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| loose_eq(v, w)))
        }
        _ => a == b,
    }
}

fn contains(obs: &Value, wanted: &Value) -> Result<bool, String> {
    match (obs, wanted) {
        (Value::String(s), Value::String(w)) => Ok(s.contains(w.as_str())),
        (Value::String(_), _) => Err(format!(
            "contains on a string needs a string, but the expectation gives {}",
            json_type(wanted)
        )),
        (Value::Array(items), Value::Array(all)) => {
            Ok(all.iter().all(|w| items.iter().any(|i| loose_eq(i, w))))
        }
        (Value::Array(items), _) => Ok(items.iter().any(|i| loose_eq(i, wanted))),
        _ => Err(format!(
            "contains needs a string or an array, but observed {obs} ({})",
            json_type(obs)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_paths() {
        for ok in [
            "digest",
            "sim_time_us",
            "agents.pst-server.online",
            "agents.a_1.enroll.max_per_minute",
            "agents.x.liveness.degraded",
            "agents.x.diagnosis.server.row",
            "agents.x.diagnosis.full.supported",
            "agents.x.diagnosis.truth",
            "commands.cmd-0001.status",
            "commands.cmd-12345.agent",
            "server.registry.tunnels",
            "counts.commands_completed",
        ] {
            assert_eq!(observe_path_is_known(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn unknown_paths_say_what_is_valid() {
        let e = observe_path_is_known("agents.pst.enrol.requests").unwrap_err();
        assert!(
            e.contains("\"enrol\" cannot follow \"agents.pst\"; did you mean \"enroll\"?"),
            "{e}"
        );
        assert!(
            e.contains("valid here: online, status, version, enroll"),
            "{e}"
        );
        let e = observe_path_is_known("digests").unwrap_err();
        assert!(e.contains("did you mean \"digest\"?"), "{e}");
        let e = observe_path_is_known("agents.pst.enroll").unwrap_err();
        assert!(
            e.ends_with("continue with one of: requests, max_per_minute, state"),
            "{e}"
        );
        let e = observe_path_is_known("seed.x").unwrap_err();
        assert!(e.contains("\"seed\" has no parts below it"), "{e}");
        let e = observe_path_is_known("commands.1.status").unwrap_err();
        assert!(e.contains("\"1\" is not a command id"), "{e}");
        let e = observe_path_is_known("agents.a b.online").unwrap_err();
        assert!(e.contains("is not an agent name"), "{e}");
        assert!(observe_path_is_known("").is_err());
        assert!(observe_path_is_known("agents..online").is_err());
        assert!(observe_path_is_known(".").is_err());
    }

    #[test]
    fn declared_agents() {
        let agents = vec!["pst-server".to_owned()];
        let declared = |n: &str| agents.iter().any(|a| a == n);
        let known = Some((agents.as_slice(), &declared as &dyn Fn(&str) -> bool));
        assert!(check_path("agents.pst-server.online", known).is_ok());
        let e = check_path("agents.pst-srever.online", known).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnknownAgent);
        assert!(
            e.message.contains("did you mean \"pst-server\"?"),
            "{}",
            e.message
        );
    }

    fn expect(op: ExpectOp, value: Value) -> Expect {
        Expect {
            observe: "p".into(),
            op,
            value,
        }
    }

    fn passes(op: ExpectOp, value: Value, observed: Value) -> bool {
        evaluate(&expect(op, value), Some(&observed)).passed
    }

    #[test]
    fn operators() {
        use ExpectOp::*;
        assert!(passes(Equals, json!(1), json!(1.0)));
        assert!(passes(Equals, json!("a"), json!("a")));
        assert!(!passes(Equals, json!("a"), json!("b")));
        assert!(passes(Equals, json!([1, "x"]), json!([1.0, "x"])));
        assert!(passes(Not, json!("a"), json!("b")));
        assert!(!passes(Not, json!(2), json!(2)));
        assert!(passes(AtLeast, json!(3), json!(3)));
        assert!(passes(AtLeast, json!(2.5), json!(3)));
        assert!(!passes(AtLeast, json!(4), json!(3)));
        assert!(passes(AtMost, json!(3), json!(3)));
        assert!(!passes(AtMost, json!(2), json!(3)));
        assert!(!passes(AtMost, json!(2), json!("3")));
        assert!(passes(AtLeast, json!(u64::MAX), json!(u64::MAX)));
        assert!(passes(Contains, json!("undeliv"), json!("undeliverable")));
        assert!(passes(Contains, json!("H2"), json!(["H2", "H3"])));
        assert!(passes(Contains, json!(["H3", "H2"]), json!(["H2", "H3"])));
        assert!(!passes(Contains, json!(["H1"]), json!(["H2", "H3"])));
        assert!(!passes(Contains, json!("H1"), json!(["H2"])));
        assert!(!passes(Contains, json!(1), json!("1")));
        assert!(!passes(Contains, json!(1), json!(1)));
    }

    #[test]
    fn messages() {
        let e = expect(ExpectOp::Equals, json!("undeliverable"));
        let r = evaluate(&e, Some(&json!("acked")));
        assert_eq!(
            r.message,
            "p equals \"undeliverable\" failed: observed \"acked\""
        );
        assert_eq!(r.observed, Some(json!("acked")));
        let r = evaluate(&e, None);
        assert!(!r.passed);
        assert_eq!(
            r.message,
            "p equals \"undeliverable\" failed: the outcome has no value at this path"
        );
        let r = evaluate(&e, Some(&json!("undeliverable")));
        assert_eq!(
            r.message,
            "p equals \"undeliverable\" (observed \"undeliverable\")"
        );
        let r = evaluate(&expect(ExpectOp::AtLeast, json!(1)), Some(&json!("x")));
        assert_eq!(
            r.message,
            "p at_least 1 failed: at_least compares numbers, but observed \"x\" (a string)"
        );
    }

    #[test]
    fn lookups() {
        let doc = json!({"agents": {"a-1": {"online": true}}, "list": [1, 2]});
        assert_eq!(lookup(&doc, "agents.a-1.online"), Some(&json!(true)));
        assert_eq!(lookup(&doc, "list.1"), Some(&json!(2)));
        assert_eq!(lookup(&doc, "agents.b.online"), None);
        assert_eq!(lookup(&doc, "agents.a-1.online.x"), None);
    }
}
