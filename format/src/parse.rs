//! From TOML text to a checked [`Scenario`], with located errors.
//!
//! The text becomes a position-aware tree first ([`crate::tree`]); this module
//! walks it table by table against the catalogues, so every mistake is
//! reported at the key or value that makes it, with the valid choices. Tables
//! are read in catalogue order (top-level keys, `[server]`, agents, faults,
//! actions, expectations); the first mistake found is the one reported.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value as Json;

use crate::catalogue::{
    KeyDoc, KindDoc, ACTIONS, ACTION_COMMON_KEYS, AGENT_KEYS, CPU_KEYS, EXPECT_KEYS,
    FAULT_COMMON_KEYS, FAULT_KINDS, SERVER_KEYS, SWITCHES, TOP_LEVEL_KEYS,
};
use crate::duration::{
    format_duration, parse_cost, parse_duration, parse_signed_duration, DurationError,
};
use crate::error::{ErrorKind, ScenarioError};
use crate::outcome::{check_path, is_agent_name};
use crate::scenario::*;
use crate::suggest::{choices, hint, key_hint};
use crate::tree::{self, Key, Node, Span, Value};

type R<T> = Result<T, ScenarioError>;

/// The most agents a scenario may declare, after `count` expansion.
const MAX_AGENTS: usize = 100_000;

/// Parses and checks a scenario; `file` is only used in messages.
pub(crate) fn parse(file: &str, text: &str) -> R<Scenario> {
    parse_with_notes(file, text).map(|(sc, _)| sc)
}

/// [`parse`], with the notes about old spellings that still parse
/// (`file:line:column: note: ...`).
pub(crate) fn parse_with_notes(file: &str, text: &str) -> R<(Scenario, Vec<String>)> {
    let root = tree::parse(text).map_err(|e| {
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ScenarioError::at(
            file,
            text,
            e.span(),
            ErrorKind::Syntax,
            format!("invalid TOML: {message}"),
        )
    })?;
    let parser = Parser {
        file,
        text,
        notes: Default::default(),
    };
    let sc = parser.scenario(&root)?;
    Ok((sc, parser.notes.into_inner()))
}

struct Parser<'a> {
    file: &'a str,
    text: &'a str,
    /// Old spellings that parsed, each with the new one.
    notes: std::cell::RefCell<Vec<String>>,
}

/// A table being read, with the words messages use for it.
struct Table<'n> {
    /// How labels name it after a key: "" (top level), "[[agent]] #2", ...
    name: String,
    /// Where it starts, for "missing key" errors.
    span: Span,
    entries: &'n [(Key, Node)],
    /// The keys it may have, for "unknown key" and "missing key" errors.
    keys: Vec<KeyDoc>,
}

impl<'n> Table<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// "`key`" at the top level, "`key` in [[agent]] #2" elsewhere.
    fn label(&self, key: &str) -> String {
        if self.name.is_empty() {
            format!("`{key}`")
        } else {
            format!("`{key}` in {}", self.name)
        }
    }

    /// "at the top level" or "in [[agent]] #2".
    fn place(&self) -> String {
        if self.name.is_empty() {
            "at the top level".to_owned()
        } else {
            format!("in {}", self.name)
        }
    }
}

/// The declared agents and sites, for checking references.
#[derive(Default)]
struct Fleet {
    /// Every agent name after `count` expansion, in file order.
    names: Vec<String>,
    /// Each name of `names` and the number of the `[[agent]]` table that
    /// made it (a map, so that large fleets check in linear time).
    owner: HashMap<String, usize>,
    /// `[[agent]]` tables with `count`: (name as written, count).
    groups: Vec<(String, u32)>,
    /// The site of each entry of `names`.
    name_sites: Vec<String>,
    sites: Vec<String>,
    /// The entries of `sites`, for lookups in constant time (a fleet of
    /// 100,000 one-agent sites parses in linear time).
    site_set: std::collections::HashSet<String>,
}

/// Where an agent reference appears, which decides what else it may be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RefForm {
    /// Only an agent.
    Agent,
    /// An agent or `"server"` (`restart`, `crash`).
    AgentOrServer,
    /// A `between` end: a bare name is an agent, sites need `site:`.
    Endpoint,
}

/// A short description of a value for "found ..." in messages.
fn found(node: &Node) -> String {
    match &node.value {
        Value::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push_str("...");
            }
            format!("a string ({shown:?})")
        }
        Value::Integer(i) => format!("an integer ({i})"),
        Value::Float(f) => format!("a float ({f})"),
        Value::Boolean(b) => format!("a boolean ({b})"),
        Value::Datetime(d) => format!("a datetime ({d})"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

fn key_names(keys: &[KeyDoc]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

impl Parser<'_> {
    fn err(&self, span: &Span, kind: ErrorKind, message: String) -> ScenarioError {
        ScenarioError::at(self.file, self.text, span.clone(), kind, message)
    }

    fn wrong_type(&self, node: &Node, label: &str, expected: &str) -> ScenarioError {
        self.err(
            &node.span,
            ErrorKind::WrongType,
            format!("{label} must be {expected}, found {}", found(node)),
        )
    }

    fn duration_error(&self, node: &Node, e: DurationError) -> ScenarioError {
        self.err(&node.span, ErrorKind::BadDuration, e.to_string())
    }

    // ----- tables and keys -------------------------------------------------

    fn table<'n>(
        &self,
        node: &'n Node,
        label: &str,
        name: String,
        keys: Vec<KeyDoc>,
    ) -> R<Table<'n>> {
        match &node.value {
            Value::Table(entries) => Ok(Table {
                name,
                span: node.span.clone(),
                entries,
                keys,
            }),
            _ => Err(self.wrong_type(node, label, "a table")),
        }
    }

    /// Refuses keys the table may not have, in file order.
    fn check_keys(&self, t: &Table, place: &str) -> R<()> {
        let valid = key_names(&t.keys);
        for (key, _) in t.entries {
            if !valid.contains(&key.name.as_str()) {
                return Err(self.err(
                    &key.span,
                    ErrorKind::UnknownKey,
                    format!(
                        "unknown key `{}` {place}{}valid keys: {}",
                        key.name,
                        key_hint(&key.name, valid.iter().copied()),
                        choices(valid.iter().copied(), usize::MAX)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reports every required key the table lacks, in one message.
    fn check_required(&self, t: &Table) -> R<()> {
        let missing: Vec<&KeyDoc> = t
            .keys
            .iter()
            .filter(|k| k.required && t.get(k.name).is_none())
            .collect();
        let owner = if t.name.is_empty() {
            "the scenario".to_owned()
        } else {
            t.name.clone()
        };
        let message = match missing.as_slice() {
            [] => return Ok(()),
            [one] => format!(
                "{owner} is missing the required key `{}`: {}",
                one.name, one.doc
            ),
            [init @ .., last] => {
                let listed: Vec<String> = init
                    .iter()
                    .map(|k| format!("`{}` ({})", k.name, k.doc))
                    .collect();
                format!(
                    "{owner} is missing the required keys {} and `{}` ({})",
                    listed.join(", "),
                    last.name,
                    last.doc
                )
            }
        };
        Err(self.err(&t.span, ErrorKind::MissingKey, message))
    }

    fn required<'n>(&self, t: &Table<'n>, key: &str) -> R<&'n Node> {
        if let Some(node) = t.get(key) {
            return Ok(node);
        }
        let doc = t
            .keys
            .iter()
            .find(|k| k.name == key)
            .map(|k| format!(": {}", k.doc))
            .unwrap_or_default();
        let owner = if t.name.is_empty() {
            "the scenario".to_owned()
        } else {
            t.name.clone()
        };
        Err(self.err(
            &t.span,
            ErrorKind::MissingKey,
            format!("{owner} is missing the required key `{key}`{doc}"),
        ))
    }

    // ----- scalars ---------------------------------------------------------

    fn string<'n>(&self, node: &'n Node, label: &str) -> R<&'n str> {
        match &node.value {
            Value::String(s) => Ok(s),
            _ => Err(self.wrong_type(node, label, "a string")),
        }
    }

    fn text_value(&self, node: &Node, label: &str) -> R<String> {
        let s = self.string(node, label)?;
        if s.trim().is_empty() {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!("{label} must not be empty"),
            ));
        }
        Ok(s.to_owned())
    }

    fn integer_in(&self, node: &Node, label: &str, min: i64, max: i64) -> R<i64> {
        match &node.value {
            Value::Integer(i) if (min..=max).contains(i) => Ok(*i),
            Value::Integer(i) => Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!("{label} must be an integer from {min} to {max}, found {i}"),
            )),
            _ => Err(self.wrong_type(node, label, &format!("an integer from {min} to {max}"))),
        }
    }

    fn duration(&self, node: &Node, label: &str) -> R<Duration> {
        let Value::String(s) = &node.value else {
            return Err(self.wrong_type(
                node,
                label,
                "a duration string such as \"90s\" or \"5m\"",
            ));
        };
        parse_duration(s).map_err(|e| self.duration_error(node, e))
    }

    /// A name from a fixed set: `what` names the set in messages ("protocol").
    fn choice<T>(
        &self,
        node: &Node,
        label: &str,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> R<T> {
        let list = choices(names.iter().copied(), usize::MAX);
        let Value::String(s) = &node.value else {
            return Err(self.wrong_type(node, label, &format!("a string, one of {list}")));
        };
        match from_name(s).filter(|_| names.contains(&s.as_str())) {
            Some(v) => Ok(v),
            None => Err(self.err(
                &node.span,
                ErrorKind::UnknownChoice,
                format!(
                    "unknown {what} {s:?} for {label}{}valid: {list}",
                    hint(s, names.iter().copied())
                ),
            )),
        }
    }

    fn agent_name(&self, node: &Node, label: &str) -> R<String> {
        let s = self.string(node, label)?;
        if !is_agent_name(s) {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!("{label} must be 1 to 64 letters, digits, `-` or `_`, found {s:?}"),
            ));
        }
        if s == "server" {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!("{label} cannot be \"server\": that name means the server; pick another"),
            ));
        }
        Ok(s.to_owned())
    }

    fn version(&self, node: &Node, label: &str) -> R<String> {
        let s = self.string(node, label)?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-+._".contains(&b));
        if !ok {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!(
                    "{label} must be a version such as \"0.6.63\" (a digit first, then letters, digits, `.`, `-`, `+`), found {s:?}"
                ),
            ));
        }
        Ok(s.to_owned())
    }

    /// The time keys `at`, `from` and `until` must lie within the run.
    fn within_run(&self, node: &Node, label: &str, at: Duration, run: Duration) -> R<()> {
        if at > run {
            return Err(self.err(
                &node.span,
                ErrorKind::PastDuration,
                format!(
                    "{label} is {:?}, past the scenario's duration ({:?}); it must be at most {:?}",
                    format_duration(at),
                    format_duration(run),
                    format_duration(run)
                ),
            ));
        }
        Ok(())
    }

    // ----- references ------------------------------------------------------

    fn declared_agents(fleet: &Fleet) -> String {
        if fleet.names.is_empty() {
            "no agents are declared; add an [[agent]] table".to_owned()
        } else {
            format!(
                "declared agents: {}",
                choices(fleet.names.iter().map(String::as_str), 12)
            )
        }
    }

    /// Resolves a reference to one declared agent.
    fn agent_ref(&self, node: &Node, label: &str, fleet: &Fleet) -> R<String> {
        let name = self.string(node, label)?;
        self.agent_ref_str(name, node, label, fleet, RefForm::Agent)
    }

    /// Resolves `name` to one declared agent; the error suggests what `form`
    /// allows (a close agent name, `site:<name>`, `"server"`).
    fn agent_ref_str(
        &self,
        name: &str,
        node: &Node,
        label: &str,
        fleet: &Fleet,
        form: RefForm,
    ) -> R<String> {
        if fleet.owner.contains_key(name) {
            return Ok(name.to_owned());
        }
        if let Some((group, count)) = fleet.groups.iter().find(|(g, _)| g == name) {
            let members: Vec<String> = (1..=*count).map(|i| format!("{group}-{i}")).collect();
            return Err(self.err(
                &node.span,
                ErrorKind::UnknownAgent,
                format!(
                    "{label} names {name:?}, a group of {count} agents (count = {count}); name one of them: {}",
                    choices(members.iter().map(String::as_str), 5)
                ),
            ));
        }
        let mut candidates: Vec<&str> = fleet.names.iter().map(String::as_str).collect();
        if form == RefForm::AgentOrServer {
            candidates.insert(0, "server");
        }
        let is_site = fleet.site_set.contains(name);
        let joint = match form {
            RefForm::Endpoint if is_site => format!("; did you mean \"site:{name}\"? "),
            _ => hint(name, candidates.iter().copied()),
        };
        let site_note = if is_site && form != RefForm::Endpoint {
            let at_site: Vec<&str> = fleet
                .names
                .iter()
                .zip(&fleet.name_sites)
                .filter(|(_, s)| *s == name)
                .map(|(n, _)| n.as_str())
                .collect();
            format!(
                "{name:?} is a site; its agents: {}; ",
                choices(at_site.iter().copied(), 5)
            )
        } else {
            String::new()
        };
        let valid = match form {
            RefForm::AgentOrServer if !fleet.names.is_empty() => format!(
                "valid: \"server\" or a declared agent: {}",
                choices(fleet.names.iter().map(String::as_str), 12)
            ),
            _ => Self::declared_agents(fleet),
        };
        Err(self.err(
            &node.span,
            ErrorKind::UnknownAgent,
            format!("unknown agent {name:?} for {label}{joint}{site_note}{valid}"),
        ))
    }

    fn target(&self, node: &Node, label: &str, fleet: &Fleet) -> R<Target> {
        let name = self.string(node, label)?;
        if name == "server" {
            return Ok(Target::Server);
        }
        self.agent_ref_str(name, node, label, fleet, RefForm::AgentOrServer)
            .map(Target::Agent)
    }

    fn endpoint(&self, node: &Node, label: &str, fleet: &Fleet) -> R<Endpoint> {
        let s = self.string(node, label)?;
        if s == "server" {
            return Ok(Endpoint::Server);
        }
        if let Some(site) = s.strip_prefix("site:") {
            if fleet.site_set.contains(site) {
                return Ok(Endpoint::Site(site.to_owned()));
            }
            return Err(self.err(
                &node.span,
                ErrorKind::UnknownSite,
                format!(
                    "unknown site {site:?} in {label}{}sites: {}",
                    hint(site, fleet.sites.iter().map(String::as_str)),
                    if fleet.sites.is_empty() {
                        "none (no agents are declared)".to_owned()
                    } else {
                        choices(fleet.sites.iter().map(String::as_str), 12)
                    }
                ),
            ));
        }
        if let Some(agent) = s.strip_prefix("agent:") {
            return self
                .agent_ref_str(agent, node, label, fleet, RefForm::Endpoint)
                .map(Endpoint::Agent);
        }
        if s.contains(':') {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!(
                    "{s:?} in {label} is not an endpoint; write \"server\", \"site:<site>\", \"agent:<name>\" or an agent name"
                ),
            ));
        }
        self.agent_ref_str(s, node, label, fleet, RefForm::Endpoint)
            .map(Endpoint::Agent)
    }

    fn between(&self, t: &Table, fleet: &Fleet) -> R<[Endpoint; 2]> {
        let node = self.required(t, "between")?;
        let label = t.label("between");
        let expected = "an array of two endpoints, e.g. [\"site:pst\", \"server\"]";
        let Value::Array(items) = &node.value else {
            return Err(self.wrong_type(node, &label, expected));
        };
        if items.len() != 2 {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!(
                    "{label} must be {expected}, found {} endpoints",
                    items.len()
                ),
            ));
        }
        let a = self.endpoint(&items[0], &label, fleet)?;
        let b = self.endpoint(&items[1], &label, fleet)?;
        if a == b {
            return Err(self.err(
                &items[1].span,
                ErrorKind::BadValue,
                format!("the two ends of {label} are the same ({:?})", a.to_string()),
            ));
        }
        Ok([a, b])
    }

    // ----- the sections ----------------------------------------------------

    fn scenario(&self, root: &Node) -> R<Scenario> {
        let top = self.table(root, "the file", String::new(), TOP_LEVEL_KEYS.to_vec())?;
        self.check_keys(&top, "at the top level")?;
        // The values that are there are checked before complaining about
        // the keys that are not: the value being edited is the likelier
        // mistake.
        let text_key = |key: &str| {
            top.get(key)
                .map(|n| self.text_value(n, &top.label(key)))
                .transpose()
        };
        let name = text_key("name")?;
        let summary = text_key("summary")?;
        let incident = text_key("incident")?;
        let seed = match top.get("seed") {
            None => None,
            Some(node) => Some(match &node.value {
                Value::Integer(i) if *i >= 0 => *i as u64,
                Value::Integer(i) => {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        format!("`seed` must be a non-negative integer, found {i}"),
                    ))
                }
                _ => return Err(self.wrong_type(node, "`seed`", "a non-negative integer")),
            }),
        };
        let duration = match top.get("duration") {
            None => None,
            Some(node) => {
                let duration = self.duration(node, "`duration`")?;
                if duration.is_zero() {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        "`duration` must be longer than \"0s\"".to_owned(),
                    ));
                }
                Some(duration)
            }
        };
        let tick = match top.get("tick") {
            None => DEFAULT_TICK,
            Some(node) => {
                let tick = self.duration(node, "`tick`")?;
                if tick.is_zero() || duration.is_some_and(|d| tick > d) {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        format!(
                            "`tick` must be longer than \"0s\" and at most the duration ({:?}), found {:?}",
                            format_duration(duration.unwrap_or_default()),
                            format_duration(tick)
                        ),
                    ));
                }
                tick
            }
        };
        self.check_required(&top)?;
        let (Some(name), Some(summary), Some(incident), Some(seed), Some(duration)) =
            (name, summary, incident, seed, duration)
        else {
            // check_required has reported any missing key.
            return Err(self.err(
                &None,
                ErrorKind::MissingKey,
                "the scenario is missing a required key".to_owned(),
            ));
        };
        let server = match top.get("server") {
            None => Server::default(),
            Some(node) => self.server(node)?,
        };
        let agent_tables = self.array_of_tables(&top, "agent")?;
        let mut agents = Vec::new();
        let mut fleet = Fleet::default();
        // Which [[agent]] table made each name, for duplicate messages.
        for (i, node) in agent_tables.iter().enumerate() {
            let agent = self.agent(node, i + 1, &mut fleet)?;
            agents.push(agent);
        }
        self.check_runnable(&top, fleet.names.len(), duration)?;
        let mut faults = Vec::new();
        for (i, node) in self.array_of_tables(&top, "fault")?.iter().enumerate() {
            faults.push(self.fault(node, i + 1, &fleet, duration)?);
        }
        let mut actions = Vec::new();
        for (i, node) in self.array_of_tables(&top, "action")?.iter().enumerate() {
            actions.push(self.action(node, i + 1, &fleet, duration)?);
        }
        let mut expects = Vec::new();
        for (i, node) in self.array_of_tables(&top, "expect")?.iter().enumerate() {
            expects.push(self.expect(node, i + 1, &fleet)?);
        }
        Ok(Scenario {
            name,
            summary,
            incident,
            seed,
            duration,
            tick,
            server,
            agents,
            faults,
            actions,
            expects,
        })
    }

    /// The items of `[[key]]`, or none when the key is absent.
    fn array_of_tables<'n>(&self, top: &Table<'n>, key: &str) -> R<&'n [Node]> {
        let Some(node) = top.get(key) else {
            return Ok(&[]);
        };
        let expected = format!("an array of tables (write [[{key}]], with two brackets)");
        match &node.value {
            Value::Array(items) => {
                for item in items {
                    if !matches!(item.value, Value::Table(_)) {
                        return Err(self.wrong_type(
                            item,
                            &format!("each `{key}` entry"),
                            "a table",
                        ));
                    }
                }
                Ok(items)
            }
            _ => Err(self.wrong_type(node, &format!("`{key}`"), &expected)),
        }
    }

    fn server(&self, node: &Node) -> R<Server> {
        if matches!(node.value, Value::Array(_)) {
            return Err(self.wrong_type(
                node,
                "`server`",
                "a table (write [server], with one bracket)",
            ));
        }
        let t = self.table(node, "`server`", "[server]".into(), SERVER_KEYS.to_vec())?;
        self.check_keys(&t, "in [server]")?;
        let behavior = match t.get("behavior") {
            None => Behavior::default(),
            Some(b) => self.behavior(b, &t)?,
        };
        let cpu = match t.get("cpu") {
            None => None,
            Some(c) => Some(self.cpu(c)?),
        };
        Ok(Server { behavior, cpu })
    }

    fn cpu(&self, node: &Node) -> R<ServerCpu> {
        let t = self.table(
            node,
            "`cpu` in [server]",
            "[server] cpu".into(),
            CPU_KEYS.to_vec(),
        )?;
        self.check_keys(&t, "in [server] cpu")?;
        self.check_required(&t)?;
        let cost = |key: &str| -> R<Duration> {
            let node = self.required(&t, key)?;
            let label = t.label(key);
            let Value::String(s) = &node.value else {
                return Err(self.wrong_type(
                    node,
                    &label,
                    "a duration string such as \"2ms\" or \"400us\"",
                ));
            };
            let d = parse_cost(s).map_err(|_| {
                self.err(
                    &node.span,
                    ErrorKind::BadDuration,
                    format!("invalid CPU cost {s:?} for {label}: expected whole microseconds such as \"400us\" or a duration such as \"2ms\" (units: us, ms, s, m, h)"),
                )
            })?;
            if d > MAX_CPU_COST {
                return Err(self.err(
                    &node.span,
                    ErrorKind::BadValue,
                    format!(
                        "{label} is {s:?}; a CPU cost is at most {}",
                        format_duration(MAX_CPU_COST)
                    ),
                ));
            }
            Ok(d)
        };
        Ok(ServerCpu {
            connection: cost("connection")?,
            segment: cost("segment")?,
        })
    }

    fn preset(&self, node: &Node, label: &str) -> R<Preset> {
        let Value::String(s) = &node.value else {
            return Err(self.wrong_type(node, label, "\"legacy\" or \"fixed\""));
        };
        Preset::from_name(s).ok_or_else(|| {
            self.err(
                &node.span,
                ErrorKind::UnknownPreset,
                format!(
                    "unknown preset {s:?} for {label}{}valid presets: {} (or a table of switches)",
                    hint(s, Preset::NAMES.iter().copied()),
                    choices(Preset::NAMES.iter().copied(), usize::MAX)
                ),
            )
        })
    }

    fn behavior(&self, node: &Node, owner: &Table) -> R<Behavior> {
        let label = owner.label("behavior");
        match &node.value {
            Value::String(_) => Ok(Behavior::preset(self.preset(node, &label)?)),
            Value::Table(entries) => {
                let mut behavior = Behavior::default();
                let valid: Vec<&str> = std::iter::once("preset")
                    .chain(SWITCHES.iter().map(|(n, _)| *n))
                    .collect();
                for (key, value) in entries {
                    let key_label = format!("`{}` in {label}", key.name);
                    if key.name == "preset" {
                        behavior.preset = self.preset(value, &key_label)?;
                    } else if valid.contains(&key.name.as_str()) {
                        let Value::Boolean(on) = value.value else {
                            return Err(self.wrong_type(value, &key_label, "true or false"));
                        };
                        behavior.switches.insert(key.name.clone(), on);
                    } else {
                        return Err(self.err(
                            &key.span,
                            ErrorKind::UnknownSwitch,
                            format!(
                                "unknown switch `{}` in {label}{}valid switches: {}",
                                key.name,
                                key_hint(&key.name, valid.iter().copied()),
                                choices(valid[1..].iter().copied(), usize::MAX)
                            ),
                        ));
                    }
                }
                Ok(behavior)
            }
            _ => Err(self.wrong_type(
                node,
                &label,
                "a preset name (\"legacy\" or \"fixed\") or a table of switches",
            )),
        }
    }

    /// The optional `agent` or `site` of a fault that acts on some agents
    /// (neither: every agent); naming both is refused.
    fn agent_or_site(&self, t: &Table<'_>, fleet: &Fleet) -> R<(Option<String>, Option<String>)> {
        let agent = t
            .get("agent")
            .map(|n| self.agent_ref(n, &t.label("agent"), fleet))
            .transpose()?;
        let site = match t.get("site") {
            None => None,
            Some(n) => {
                let label = t.label("site");
                let name = self.string(n, &label)?;
                if !fleet.site_set.contains(name) {
                    return Err(self.err(
                        &n.span,
                        ErrorKind::UnknownSite,
                        format!(
                            "unknown site {name:?} in {label}{}sites: {}",
                            hint(name, fleet.sites.iter().map(String::as_str)),
                            choices(fleet.sites.iter().map(String::as_str), 12)
                        ),
                    ));
                }
                if agent.is_some() {
                    return Err(self.err(
                        &n.span,
                        ErrorKind::BadValue,
                        format!(
                            "{label} and `agent` exclude each other: name one agent or one site"
                        ),
                    ));
                }
                Some(name.to_owned())
            }
        };
        Ok((agent, site))
    }

    /// Refuses a fleet or a fleet x duration the simulator cannot finish
    /// ([`MAX_RUN_AGENTS`], [`MAX_AGENT_HOURS`]), naming the limit.
    fn check_runnable(&self, top: &Table<'_>, agents: usize, duration: Duration) -> R<()> {
        let span = top.get("duration").and_then(|n| n.span.clone());
        if agents > MAX_RUN_AGENTS {
            return Err(self.err(
                &span,
                ErrorKind::BadValue,
                format!(
                    "the scenario declares {agents} agents; a run simulates at most {MAX_RUN_AGENTS} (a larger fleet does not fit one machine's memory); use fewer or smaller `count`s"
                ),
            ));
        }
        let agent_hours = agents as f64 * duration.as_secs_f64() / 3600.0;
        if agent_hours > MAX_AGENT_HOURS as f64 {
            return Err(self.err(
                &span,
                ErrorKind::BadValue,
                format!(
                    "{agents} agents for {} is {agent_hours:.0} agent-hours; a run simulates at most {MAX_AGENT_HOURS} agent-hours (agents x duration); shorten `duration` or use fewer agents",
                    format_duration(duration)
                ),
            ));
        }
        Ok(())
    }

    fn agent(&self, node: &Node, number: usize, fleet: &mut Fleet) -> R<Agent> {
        let name = format!("[[agent]] #{number}");
        let t = self.table(node, "`agent`", name, AGENT_KEYS.to_vec())?;
        self.check_keys(&t, &t.place())?;
        self.check_required(&t)?;
        let name_node = self.required(&t, "name")?;
        let name = self.agent_name(name_node, &t.label("name"))?;
        let count = match t.get("count") {
            None => None,
            Some(n) => {
                Some(self.integer_in(n, &t.label("count"), 1, MAX_AGENT_COUNT.into())? as u32)
            }
        };
        let site = match t.get("site") {
            None => name.clone(),
            Some(n) => self.agent_name(n, &t.label("site"))?,
        };
        let behavior = match t.get("behavior") {
            None => Behavior::default(),
            Some(b) => self.behavior(b, &t)?,
        };
        let version = match t.get("version") {
            None => DEFAULT_AGENT_VERSION.to_owned(),
            Some(v) => self.version(v, &t.label("version"))?,
        };
        let agent = Agent {
            name,
            count,
            site,
            behavior,
            version,
        };
        let made = agent.instance_names();
        if fleet.names.len() + made.len() > MAX_AGENTS {
            return Err(self.err(
                &name_node.span,
                ErrorKind::BadValue,
                format!("the scenario declares more than {MAX_AGENTS} agents; use fewer or smaller `count`s"),
            ));
        }
        for instance in made {
            if let Some(first) = fleet.owner.get(&instance) {
                let via = match agent.count {
                    Some(c) => {
                        format!(" (this table makes {}-1 .. {}-{c})", agent.name, agent.name)
                    }
                    None => String::new(),
                };
                return Err(self.err(
                    &name_node.span,
                    ErrorKind::DuplicateAgent,
                    format!(
                        "agent {instance:?} is already declared by [[agent]] #{}{via}; agent names must be unique",
                        first
                    ),
                ));
            }
            fleet.owner.insert(instance.clone(), number);
            fleet.names.push(instance);
            fleet.name_sites.push(agent.site.clone());
        }
        if let Some(c) = agent.count {
            fleet.groups.push((agent.name.clone(), c));
        }
        if fleet.site_set.insert(agent.site.clone()) {
            fleet.sites.push(agent.site.clone());
        }
        Ok(agent)
    }

    /// A `[[fault]]` or `[[action]]` table: its `selector` key (`kind`,
    /// `do`) picks an entry of `catalogue`, whose keys the table may then
    /// have. Returns the checked table, the selector's node and the entry's name.
    #[allow(clippy::too_many_arguments)]
    fn kinded_table<'n>(
        &self,
        node: &'n Node,
        section: &str,
        number: usize,
        common: &[KeyDoc],
        selector: &str,
        catalogue: &'static [KindDoc],
        (what, plural, unknown): (&str, &str, ErrorKind),
    ) -> R<(Table<'n>, &'n Node, &'static str)> {
        let mut t = self.table(
            node,
            &format!("`{section}`"),
            format!("[[{section}]] #{number}"),
            common.to_vec(),
        )?;
        let selector_node = self.required(&t, selector)?;
        let name = self.string(selector_node, &t.label(selector))?;
        let Some(doc) = catalogue.iter().find(|k| k.name == name) else {
            return Err(self.unknown_kind(
                selector_node,
                name,
                &t,
                what,
                plural,
                catalogue,
                unknown,
            ));
        };
        t.keys.extend_from_slice(doc.keys);
        t.name = format!("[[{section}]] #{number} ({selector} {name:?})");
        self.check_keys(&t, &t.place())?;
        self.check_required(&t)?;
        Ok((t, selector_node, doc.name))
    }

    fn fault(&self, node: &Node, number: usize, fleet: &Fleet, run: Duration) -> R<Fault> {
        let (t, kind_node, kind_name) = self.kinded_table(
            node,
            "fault",
            number,
            FAULT_COMMON_KEYS,
            "kind",
            FAULT_KINDS,
            ("fault kind", "kinds", ErrorKind::UnknownFaultKind),
        )?;

        let from = self.opt_time(&t, "from", run)?;
        let until = self.opt_time(&t, "until", run)?;
        if let (Some(f), Some(u)) = (from, until) {
            if f >= u {
                let node = t.get("from").unwrap_or(kind_node);
                return Err(self.err(
                    &node.span,
                    ErrorKind::TimeOrder,
                    format!(
                        "{} is {:?}, not before `until` ({:?}); a fault must start before it stops",
                        t.label("from"),
                        format_duration(f),
                        format_duration(u)
                    ),
                ));
            }
        }
        let kind = self.fault_kind(&t, kind_name, fleet)?;
        Ok(Fault { kind, from, until })
    }

    #[allow(clippy::too_many_arguments)]
    fn unknown_kind(
        &self,
        node: &Node,
        name: &str,
        t: &Table,
        what: &str,
        plural: &str,
        catalogue: &[KindDoc],
        kind: ErrorKind,
    ) -> ScenarioError {
        let names = catalogue.iter().map(|k| k.name);
        self.err(
            &node.span,
            kind,
            format!(
                "unknown {what} {name:?} {}{}valid {plural}: {}",
                t.place(),
                hint(name, names.clone()),
                choices(names, usize::MAX)
            ),
        )
    }

    fn opt_time(&self, t: &Table, key: &str, run: Duration) -> R<Option<Duration>> {
        let Some(node) = t.get(key) else {
            return Ok(None);
        };
        let label = t.label(key);
        let at = self.duration(node, &label)?;
        self.within_run(node, &label, at, run)?;
        Ok(Some(at))
    }

    /// A fault's `direction`: `"a->b"` (from the first `between` end to the
    /// second), `"b->a"`, or `"both"` where `both` allows it. The old
    /// spellings `"server->agent"` and `"agent->server"` still parse when
    /// one end is the server, with a note that names the new one.
    fn direction(
        &self,
        t: &Table,
        node: &Node,
        kind: &str,
        between: &[Endpoint; 2],
        both: bool,
    ) -> R<Direction> {
        let label = t.label("direction");
        if let Value::String(old) = &node.value {
            let from_server = match old.as_str() {
                "server->agent" => Some(true),
                "agent->server" => Some(false),
                _ => None,
            };
            if let Some(from_server) = from_server {
                let Some(server_at) = between.iter().position(|e| *e == Endpoint::Server) else {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        format!(
                            "{label} {old:?} needs \"server\" as one end of `between`; write \"a->b\" (from the first end to the second) or \"b->a\""
                        ),
                    ));
                };
                let new = if from_server == (server_at == 0) {
                    Direction::AToB
                } else {
                    Direction::BToA
                };
                let (line, column) =
                    crate::line_column(self.text, node.span.as_ref().map_or(0, |r| r.start));
                self.notes.borrow_mut().push(format!(
                    "{}:{line}:{column}: note: {label} = {old:?} is the old spelling; write {:?} (directions are from the first `between` end, {}, to the second, {})",
                    self.file,
                    new.as_str(),
                    between[0],
                    between[1]
                ));
                return Ok(new);
            }
        }
        if !both && matches!(&node.value, Value::String(d) if d == "both") {
            return Err(self.err(
                &node.span,
                ErrorKind::BadValue,
                format!(
                    "{label} cannot be \"both\": {kind} acts on one direction; write \"a->b\" or \"b->a\", or use kind = \"partition\" to stop both"
                ),
            ));
        }
        let names: &[&str] = if both {
            Direction::NAMES
        } else {
            &["a->b", "b->a"]
        };
        self.choice(node, &label, "direction", names, Direction::from_name)
    }

    fn opt_choice<T>(
        &self,
        t: &Table,
        key: &str,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> R<Option<T>> {
        t.get(key)
            .map(|n| self.choice(n, &t.label(key), what, names, from_name))
            .transpose()
    }

    fn req_choice<T>(
        &self,
        t: &Table,
        key: &str,
        what: &str,
        names: &[&str],
        from_name: impl Fn(&str) -> Option<T>,
    ) -> R<T> {
        let node = self.required(t, key)?;
        self.choice(node, &t.label(key), what, names, from_name)
    }

    fn req_agent(&self, t: &Table, fleet: &Fleet) -> R<String> {
        let node = self.required(t, "agent")?;
        self.agent_ref(node, &t.label("agent"), fleet)
    }

    fn status(&self, t: &Table) -> R<u16> {
        match t.get("status") {
            None => Ok(DEFAULT_ERROR_STATUS),
            Some(n) => Ok(self.integer_in(n, &t.label("status"), 400, 599)? as u16),
        }
    }

    fn fault_kind(&self, t: &Table, kind: &str, fleet: &Fleet) -> R<FaultKind> {
        Ok(match kind {
            "block" => FaultKind::Block {
                between: self.between(t, fleet)?,
                proto: self.req_choice(t, "proto", "protocol", Proto::NAMES, Proto::from_name)?,
                port: match t.get("port") {
                    None => None,
                    Some(n) => Some(self.integer_in(n, &t.label("port"), 1, 65535)? as u16),
                },
                direction: match t.get("direction") {
                    None => Direction::Both,
                    Some(node) => self.direction(t, node, kind, &self.between(t, fleet)?, true)?,
                },
                action: self
                    .opt_choice(
                        t,
                        "action",
                        "block action",
                        BlockAction::NAMES,
                        BlockAction::from_name,
                    )?
                    .unwrap_or(BlockAction::Drop),
            },
            "partition" => FaultKind::Partition {
                between: self.between(t, fleet)?,
            },
            "half-open" | "drop-payload" => {
                let between = self.between(t, fleet)?;
                let node = self.required(t, "direction")?;
                let direction = self.direction(t, node, kind, &between, false)?;
                let port = match t.get("port") {
                    None => None,
                    Some(n) => Some(self.integer_in(n, &t.label("port"), 1, 65535)? as u16),
                };
                if kind == "half-open" {
                    FaultKind::HalfOpen {
                        between,
                        direction,
                        port,
                    }
                } else {
                    FaultKind::DropPayload {
                        between,
                        direction,
                        port,
                    }
                }
            }
            "drop-frames" => {
                let between = self.between(t, fleet)?;
                if !between.contains(&Endpoint::Server) {
                    let span = t.get("between").map_or(t.span.clone(), |n| n.span.clone());
                    return Err(self.err(
                        &span,
                        ErrorKind::BadValue,
                        format!(
                            "{} must have \"server\" as one end: WebSocket frames travel between the server and agents",
                            t.label("between")
                        ),
                    ));
                }
                let node = self.required(t, "direction")?;
                let direction = self.direction(t, node, kind, &between, false)?;
                let from_server =
                    (direction == Direction::AToB) == (between[0] == Endpoint::Server);
                FaultKind::DropFrames {
                    between,
                    direction: if from_server {
                        FrameDirection::ServerToAgent
                    } else {
                        FrameDirection::AgentToServer
                    },
                    frame: self.req_choice(
                        t,
                        "frame",
                        "frame type",
                        FrameType::NAMES,
                        FrameType::from_name,
                    )?,
                }
            }
            "stall-writes" => FaultKind::StallWrites {
                agent: self.req_agent(t, fleet)?,
                frame: self.req_choice(
                    t,
                    "frame",
                    "frame type",
                    FrameType::NAMES,
                    FrameType::from_name,
                )?,
            },
            "latency" => FaultKind::Latency {
                between: self.between(t, fleet)?,
                mean: self.duration(self.required(t, "mean")?, &t.label("mean"))?,
            },
            "jitter" => FaultKind::Jitter {
                between: self.between(t, fleet)?,
                amount: self.duration(self.required(t, "amount")?, &t.label("amount"))?,
            },
            "loss" => {
                let between = self.between(t, fleet)?;
                let node = self.required(t, "rate")?;
                let label = t.label("rate");
                let rate = match node.value {
                    Value::Float(f) => f,
                    Value::Integer(i) => i as f64,
                    _ => return Err(self.wrong_type(node, &label, "a number from 0.0 to 1.0")),
                };
                if !(0.0..=1.0).contains(&rate) {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        format!("{label} must be from 0.0 to 1.0 (a probability), found {rate}"),
                    ));
                }
                let burst = match t.get("burst") {
                    None => None,
                    Some(node) => {
                        let label = t.label("burst");
                        let b = match node.value {
                            Value::Float(f) => f,
                            Value::Integer(i) => i as f64,
                            _ => {
                                return Err(self.wrong_type(
                                    node,
                                    &label,
                                    "a number of packets, 1 or more",
                                ))
                            }
                        };
                        if !(1.0..=1000.0).contains(&b) {
                            return Err(self.err(
                                &node.span,
                                ErrorKind::BadValue,
                                format!("{label} must be from 1 to 1000 (packets in a burst of losses), found {b}"),
                            ));
                        }
                        Some(b)
                    }
                };
                FaultKind::Loss {
                    between,
                    rate,
                    burst,
                }
            }
            "clock-skew" => {
                let agent = self.req_agent(t, fleet)?;
                let node = self.required(t, "offset")?;
                let Value::String(s) = &node.value else {
                    return Err(self.wrong_type(
                        node,
                        &t.label("offset"),
                        "a duration string such as \"-2m\" or \"30s\"",
                    ));
                };
                let offset = parse_signed_duration(s).map_err(|e| self.duration_error(node, e))?;
                FaultKind::ClockSkew { agent, offset }
            }
            "stale-registry" => FaultKind::StaleRegistry {
                agent: self.req_agent(t, fleet)?,
            },
            "agent-bug" => FaultKind::AgentBug {
                agent: self.req_agent(t, fleet)?,
                bug: self.req_choice(t, "bug", "agent bug", Bug::NAMES, Bug::from_name)?,
                command: t
                    .get("command")
                    .map(|n| self.text_value(n, &t.label("command")))
                    .transpose()?,
            },
            "invalid-token" => {
                let (agent, site) = self.agent_or_site(t, fleet)?;
                FaultKind::InvalidToken { agent, site }
            }
            "enroll-errors" => FaultKind::EnrollErrors {
                status: self.status(t)?,
            },
            "checkin-errors" => {
                let (agent, site) = self.agent_or_site(t, fleet)?;
                FaultKind::CheckinErrors {
                    status: self.status(t)?,
                    agent,
                    site,
                }
            }
            "bad-checkin-token" => FaultKind::BadCheckinToken {
                agent: self.req_agent(t, fleet)?,
            },
            "worker-down" => FaultKind::WorkerDown,
            // The catalogue and this match are kept in step by a test; an
            // entry missing here is reported, not a panic.
            other => {
                return Err(self.err(
                    &t.span,
                    ErrorKind::UnknownFaultKind,
                    format!(
                        "fault kind {other:?} is in the catalogue but this build cannot read it"
                    ),
                ))
            }
        })
    }

    fn action(&self, node: &Node, number: usize, fleet: &Fleet, run: Duration) -> R<Action> {
        let (t, _, name) = self.kinded_table(
            node,
            "action",
            number,
            ACTION_COMMON_KEYS,
            "do",
            ACTIONS,
            ("action", "actions", ErrorKind::UnknownAction),
        )?;
        let at_node = self.required(&t, "at")?;
        let at = self.duration(at_node, &t.label("at"))?;
        if at > run {
            return Err(self.err(
                &at_node.span,
                ErrorKind::PastDuration,
                format!(
                    "{} is {:?}, past the scenario's duration ({:?}); an action must happen within the run",
                    t.label("at"),
                    format_duration(at),
                    format_duration(run)
                ),
            ));
        }
        let kind = match name {
            "install" => {
                let timeout = match t.get("timeout") {
                    None => DEFAULT_INSTALL_TIMEOUT,
                    Some(n) => {
                        let d = self.duration(n, &t.label("timeout"))?;
                        if d.is_zero() {
                            return Err(self.err(
                                &n.span,
                                ErrorKind::BadValue,
                                format!("{} must be longer than \"0s\"", t.label("timeout")),
                            ));
                        }
                        d
                    }
                };
                ActionKind::Install {
                    agent: t
                        .get("agent")
                        .map(|n| self.agent_ref(n, &t.label("agent"), fleet))
                        .transpose()?,
                    timeout,
                    kill_up_after: self.opt_choice(
                        &t,
                        "kill-up-after",
                        "kill point",
                        KillPoint::NAMES,
                        KillPoint::from_name,
                    )?,
                    delay_enroll: match t.get("delay-enroll") {
                        None => false,
                        Some(n) => match n.value {
                            Value::Boolean(b) => b,
                            _ => {
                                return Err(self.wrong_type(
                                    n,
                                    &t.label("delay-enroll"),
                                    "true or false",
                                ))
                            }
                        },
                    },
                }
            }
            "dispatch" => ActionKind::Dispatch {
                agent: self.req_agent(&t, fleet)?,
                command: self.text_value(self.required(&t, "command")?, &t.label("command"))?,
            },
            "evict" => ActionKind::Evict {
                agent: self.req_agent(&t, fleet)?,
            },
            "wake" => ActionKind::Wake {
                agent: self.req_agent(&t, fleet)?,
            },
            "revoke" => ActionKind::Revoke {
                agent: self.req_agent(&t, fleet)?,
            },
            "upgrade" => ActionKind::Upgrade {
                agent: self.req_agent(&t, fleet)?,
                to: self.version(self.required(&t, "to")?, &t.label("to"))?,
                defect: self.opt_choice(
                    &t,
                    "defect",
                    "upgrade defect",
                    UpgradeDefect::NAMES,
                    UpgradeDefect::from_name,
                )?,
            },
            "restart" => ActionKind::Restart {
                agent: self.target(self.required(&t, "agent")?, &t.label("agent"), fleet)?,
            },
            "crash" => ActionKind::Crash {
                agent: self.target(self.required(&t, "agent")?, &t.label("agent"), fleet)?,
            },
            other => {
                return Err(self.err(
                    &t.span,
                    ErrorKind::UnknownAction,
                    format!("action {other:?} is in the catalogue but this build cannot read it"),
                ))
            }
        };
        Ok(Action { at, kind })
    }

    fn expect(&self, node: &Node, number: usize, fleet: &Fleet) -> R<Expect> {
        let mut keys = EXPECT_KEYS.to_vec();
        keys.extend(ExpectOp::NAMES.iter().map(|op| KeyDoc {
            name: op,
            required: false,
            default: None,
            doc: "an expectation operator",
        }));
        let t = self.table(node, "`expect`", format!("[[expect]] #{number}"), keys)?;
        self.check_keys(&t, &t.place())?;
        self.check_required(&t)?;
        let observe_node = self.required(&t, "observe")?;
        let observe = self.string(observe_node, &t.label("observe"))?;
        let ops: Vec<(&Key, &Node, ExpectOp)> = t
            .entries
            .iter()
            .filter_map(|(k, v)| ExpectOp::from_name(&k.name).map(|op| (k, v, op)))
            .collect();
        let all_ops = choices(ExpectOp::NAMES.iter().copied(), usize::MAX);
        if ops.is_empty() {
            return Err(self.err(
                &t.span,
                ErrorKind::ExpectOperator,
                format!("{} has no operator; give exactly one of {all_ops}", t.name),
            ));
        }
        if ops.len() > 1 {
            let listed: Vec<String> = ops
                .iter()
                .map(|(k, _, _)| format!("`{}`", k.name))
                .collect();
            return Err(self.err(
                &ops[1].0.span,
                ErrorKind::ExpectOperator,
                format!(
                    "{} has {} operators ({}); give exactly one of {all_ops}",
                    t.name,
                    ops.len(),
                    listed.join(" and ")
                ),
            ));
        }
        let declared = |name: &str| fleet.owner.contains_key(name);
        if let Err(e) = check_path(observe, Some((&fleet.names, &declared))) {
            return Err(self.err(&observe_node.span, e.kind, e.message));
        }
        let (key, value_node, op) = ops[0];
        let label = t.label(&key.name);
        if matches!(op, ExpectOp::AtLeast | ExpectOp::AtMost)
            && !matches!(value_node.value, Value::Integer(_) | Value::Float(_))
        {
            return Err(self.wrong_type(value_node, &label, "a number"));
        }
        let value = self.json(value_node, &label)?;
        Ok(Expect {
            observe: observe.to_owned(),
            op,
            value,
        })
    }

    /// A TOML scalar or array as JSON; datetimes become strings.
    fn json(&self, node: &Node, label: &str) -> R<Json> {
        Ok(match &node.value {
            Value::String(s) => Json::String(s.clone()),
            Value::Integer(i) => Json::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Json::Number(n),
                None => {
                    return Err(self.err(
                        &node.span,
                        ErrorKind::BadValue,
                        format!("{label} must be a finite number, found {f}"),
                    ))
                }
            },
            Value::Boolean(b) => Json::Bool(*b),
            Value::Datetime(d) => Json::String(d.clone()),
            Value::Array(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.json(i, label))
                    .collect::<R<Vec<_>>>()?,
            ),
            Value::Table(_) => {
                return Err(self.wrong_type(node, label, "a string, number, boolean or array"))
            }
        })
    }
}
