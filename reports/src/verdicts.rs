//! The verdicts of one run, as `simbench run` prints them after the
//! timeline: what the hypothesis engine (docs/diagnosis.md) decided for
//! every agent, next to what the scenario injected.
//!
//! Everything is read from the outcome document (report.json):
//! `agents.<name>.diagnosis.server` and `.full` (the engine's answer from
//! the server's log alone and from every observation point) and
//! `.diagnosis.truth` (the hypotheses the scenario injected). No simulator
//! type is needed, so any report.json renders, and an agent without a
//! `diagnosis` shows `-`.
//!
//! Two parts:
//! - the fleet table ([`fleet`]): one row per agent with whether it is
//!   affected, its outcome-table row, the hypotheses each view supports and
//!   the injected ones. Agents that are not affected and would show the
//!   same row with the same verdicts share one row that counts them and
//!   names a few ([`MAX_NAMES`]), so a healthy 40-agent fleet is one line;
//!   affected agents always get a row of their own;
//! - for each affected agent, its verdict table ([`agent`]): H1..H7 with the
//!   status in each view, whether the scenario injected it, and the full
//!   view's evidence: its reason, then the frames.jsonl records (and
//!   events.jsonl lines) it cites.
//!
//! Both tables are [`WIDTH`] columns wide at most on every terminal and in
//! every pipe (the reasons wrap inside their cells), so the section is the
//! same bytes everywhere.

use std::cmp::Ordering;

use comfy_table::{ColumnConstraint, Table};
use serde_json::Value;

use crate::run::text;
use crate::style::{self, count};

/// The widest the verdict tables get, whatever the terminal.
pub const WIDTH: u16 = 120;

/// The most agent names a collapsed row of the fleet table lists.
pub const MAX_NAMES: usize = 4;

/// The most record numbers a cell shows: longer lists keep their first and
/// last halves, as the engine's own citations do.
pub const MAX_CITED: usize = 12;

/// The most unacked command ids an agent's heading lists.
pub const MAX_UNACKED: usize = 4;

/// The section under its caller's heading: the fleet table, then a table
/// `Verdicts for <agent>` for each affected agent, or one line when the
/// outcome names no agent.
pub fn render(outcome: &Value) -> String {
    let Some((fleet, affected)) = sections(outcome) else {
        return "no agents in the outcome\n".to_string();
    };
    let mut out = format!("{fleet}\n");
    for (heading, t) in affected {
        out.push_str(&format!("\n{heading}\n{t}\n"));
    }
    let steps = next_steps(outcome);
    if !steps.is_empty() {
        out.push_str("\nNext step\n");
        for s in steps {
            out.push_str(&format!("  {s}\n"));
        }
    }
    out
}

/// The engine's next steps (`diagnosis.<view>.next`), one line per agent
/// and experiment, the full view's first, without repeats.
pub fn next_steps(outcome: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Some(agents) = outcome["agents"].as_object() else {
        return out;
    };
    for (name, a) in agents {
        for view in ["full", "server"] {
            for n in a["diagnosis"][view]["next"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let between = strings(n.get("between")).join(" vs ");
                let line = format!(
                    "{name} ({between}, {view} view): {}",
                    text(&n["experiment"])
                );
                if !out.iter().any(|l| l.ends_with(&text(&n["experiment"]))) {
                    out.push(line);
                }
            }
        }
    }
    out
}

/// What [`render`] shows, as tables: the fleet table, then each affected
/// agent's heading (`Verdicts for <agent> (row ..)`) and table; `None` when
/// the outcome names no agent. report.html renders the same tables.
pub fn sections(outcome: &Value) -> Option<(Table, Vec<(String, Table)>)> {
    let agents = agents(outcome);
    if agents.is_empty() {
        return None;
    }
    let affected = agents
        .iter()
        .filter(|a| a.affected() == Some(true))
        .map(|a| {
            (
                format!("Verdicts for {}", a.heading()),
                agent(a.name, a.diagnosis),
            )
        })
        .collect();
    Some((fleet_of(&agents), affected))
}

/// The fleet table: affected agents first, each on its own row, then the
/// others, those that would show the same row with the same verdicts
/// collapsed into one row that counts them, names the first and last and
/// says what their verdicts refute. Agents in natural name order (`nyc-2`
/// before `nyc-10`).
pub fn fleet(outcome: &Value) -> Table {
    fleet_of(&agents(outcome))
}

/// One agent's verdict table, from its `diagnosis` value (`Null` when it
/// has none): one row per hypothesis with its status in the server and the
/// full view, `injected` when the scenario injected it, and the full view's
/// evidence: its reason, then the frames.jsonl records and events.jsonl
/// lines it cites (the server view's evidence, said so, when the full view
/// has no verdict on the hypothesis).
pub fn agent(name: &str, diagnosis: &Value) -> Table {
    let a = Agent { name, diagnosis };
    let (server, full) = (a.view("server"), a.view("full"));
    let truth = a.truth();
    let mut hypotheses: Vec<&str> = Vec::new();
    for view in [full, server] {
        for id in verdicts(view).filter_map(|v| v["hypothesis"].as_str()) {
            if !hypotheses.contains(&id) {
                hypotheses.push(id);
            }
        }
    }
    let mut t = table();
    t.set_header(vec![
        "hypothesis",
        "server",
        "full",
        "truth",
        "evidence (full view)",
    ]);
    for h in &hypotheses {
        let (s, f) = (verdict(server, h), verdict(full, h));
        let evidence = match (f, s) {
            (Some(v), _) => evidence(v),
            (None, Some(v)) => format!("server view: {}", evidence(v)),
            (None, None) => "-".to_string(),
        };
        t.add_row(vec![
            h.to_string(),
            s.map_or_else(|| "-".to_string(), |v| text(&v["status"])),
            f.map_or_else(|| "-".to_string(), |v| text(&v["status"])),
            if truth.contains(h) {
                "injected".to_string()
            } else {
                String::new()
            },
            evidence,
        ]);
    }
    if hypotheses.is_empty() {
        t.add_row(vec!["-", "-", "-", "-", "no verdicts in the diagnosis"]);
    }
    for i in 0..4 {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    t
}

/// Hypothesis ids joined by spaces (`H2 H3`), or `-` when there are none.
/// `simbench diagnose` prints its id lists with it too.
pub fn ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<&str> = ids.into_iter().collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v.join(" ")
    }
}

/// Record (or event) numbers joined by spaces; more than [`MAX_CITED`]
/// keep their first and last halves around `…`.
pub fn cited(numbers: &[u64]) -> String {
    let show = |ns: &[u64]| ns.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    if numbers.len() > MAX_CITED {
        let half = MAX_CITED / 2;
        format!(
            "{} … {}",
            show(&numbers[..half]),
            show(&numbers[numbers.len() - half..])
        )
    } else {
        show(numbers)
    }
}

/// One agent of the outcome and its `diagnosis` (`Null` when absent).
#[derive(Debug, Clone, Copy)]
struct Agent<'a> {
    name: &'a str,
    diagnosis: &'a Value,
}

impl<'a> Agent<'a> {
    /// The engine's answer in `view` (`server` or `full`), if any.
    fn view(&self, view: &str) -> Option<&'a Value> {
        self.diagnosis.get(view).filter(|v| v.is_object())
    }

    /// The injected hypothesis ids.
    fn truth(&self) -> Vec<&'a str> {
        strings(self.diagnosis.get("truth"))
    }

    /// Affected in either view; `None` without a diagnosis.
    fn affected(&self) -> Option<bool> {
        let views: Vec<&Value> = [self.view("server"), self.view("full")]
            .into_iter()
            .flatten()
            .collect();
        if views.is_empty() {
            None
        } else {
            Some(views.iter().any(|v| v["affected"].as_bool() == Some(true)))
        }
    }

    /// The outcome-table row (decided at the server point in both views).
    fn row(&self) -> String {
        [self.view("server"), self.view("full")]
            .into_iter()
            .flatten()
            .find_map(|v| v["row"].as_u64())
            .map_or_else(|| "-".to_string(), |r| r.to_string())
    }

    /// The fleet-table cells after the name: affected, row, server
    /// supported, full supported, truth.
    fn cells(&self) -> Vec<String> {
        let supported = |view: Option<&Value>| ids(strings(view.and_then(|v| v.get("supported"))));
        vec![
            match self.affected() {
                Some(true) => "yes".to_string(),
                Some(false) => "no".to_string(),
                None => "-".to_string(),
            },
            self.row(),
            supported(self.view("server")),
            supported(self.view("full")),
            ids(self.truth()),
        ]
    }

    /// Each view's statuses in verdict order: agents with the same cells
    /// and the same statuses share a collapsed row.
    fn statuses(&self) -> Vec<Vec<(&'a str, &'a str)>> {
        [self.view("server"), self.view("full")]
            .into_iter()
            .map(|view| {
                verdicts(view)
                    .map(|v| {
                        (
                            v["hypothesis"].as_str().unwrap_or(""),
                            v["status"].as_str().unwrap_or(""),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// `pst-1 (row 5, unacked cmd-0002)`: the name for an agent's heading.
    fn heading(&self) -> String {
        let unacked = [self.view("full"), self.view("server")]
            .into_iter()
            .flatten()
            .map(|v| strings(v.get("unacked")))
            .find(|u| !u.is_empty())
            .unwrap_or_default();
        let mut parts = vec![format!("row {}", self.row())];
        if !unacked.is_empty() {
            let mut shown = unacked
                .iter()
                .take(MAX_UNACKED)
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            if unacked.len() > MAX_UNACKED {
                shown.push_str(&format!(" and {} more", unacked.len() - MAX_UNACKED));
            }
            parts.push(format!("unacked {shown}"));
        }
        format!("{} ({})", self.name, parts.join(", "))
    }
}

/// The outcome's agents in natural name order; an `agents` that is not an
/// object has none.
fn agents(outcome: &Value) -> Vec<Agent<'_>> {
    let mut v: Vec<Agent> = outcome["agents"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, a)| Agent {
                    name,
                    diagnosis: &a["diagnosis"],
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| natural(a.name, b.name));
    v
}

/// [`fleet`] of agents already in order.
fn fleet_of(agents: &[Agent]) -> Table {
    let mut t = table();
    t.set_header(vec![
        "agent",
        "affected",
        "row",
        "server supported",
        "full supported",
        "truth",
    ]);
    for a in agents.iter().filter(|a| a.affected() == Some(true)) {
        let mut row = vec![a.name.to_string()];
        row.extend(a.cells());
        t.add_row(row);
    }
    // The rest, grouped by what their rows would show, groups in the order
    // of their first agent.
    type Key<'a> = (Vec<String>, Vec<Vec<(&'a str, &'a str)>>);
    let mut groups: Vec<(Key, Vec<&Agent>)> = Vec::new();
    for a in agents.iter().filter(|a| a.affected() != Some(true)) {
        let key = (a.cells(), a.statuses());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(a),
            None => groups.push((key, vec![a])),
        }
    }
    for ((cells, _), members) in groups {
        let label = match members.as_slice() {
            [one] => one.name.to_string(),
            all => collapsed(all),
        };
        let mut row = vec![label];
        row.extend(cells);
        t.add_row(row);
    }
    for i in 1..6 {
        if let Some(c) = t.column_mut(i) {
            c.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    t
}

/// The label of a collapsed row, one line each: how many agents, the first
/// and last of them, what the verdicts they share refute:
///
/// ```text
/// 36 unaffected agents:
/// nyc-1, nyc-2, nyc-3, …, pst-10
/// H1 H2 H3 H4 H5 H7 refuted
/// ```
fn collapsed(members: &[&Agent]) -> String {
    let Some(first) = members.first() else {
        return String::new();
    };
    let n = members.len();
    let names: Vec<&str> = members.iter().map(|a| a.name).collect();
    let listed = if names.len() > MAX_NAMES {
        let mut v = names[..MAX_NAMES - 1].to_vec();
        v.push("…");
        v.push(names[names.len() - 1]);
        v.join(", ")
    } else {
        names.join(", ")
    };
    let what = match first.affected() {
        Some(_) => count(n, "unaffected agent", "unaffected agents"),
        None => count(n, "agent without a diagnosis", "agents without a diagnosis"),
    };
    let refuted = |view: Option<&Value>| {
        let r: Vec<&str> = verdicts(view)
            .filter(|v| v["status"] == "refuted")
            .filter_map(|v| v["hypothesis"].as_str())
            .collect();
        if r.is_empty() {
            "nothing refuted".to_string()
        } else {
            format!("{} refuted", r.join(" "))
        }
    };
    let (server, full) = (first.view("server"), first.view("full"));
    let note = match (server, full) {
        (None, None) => String::new(),
        (Some(_), None) => format!("\n{}", refuted(server)),
        (_, Some(_)) if server.is_none() || refuted(server) == refuted(full) => {
            format!("\n{}", refuted(full))
        }
        _ => format!("\nserver: {}\nfull: {}", refuted(server), refuted(full)),
    };
    format!("{what}:\n{listed}{note}")
}

/// A view's verdicts, in its order (none when absent).
fn verdicts(view: Option<&Value>) -> impl Iterator<Item = &Value> {
    view.and_then(|v| v["verdicts"].as_array())
        .into_iter()
        .flatten()
}

/// A view's verdict on hypothesis `h`.
fn verdict<'a>(view: Option<&'a Value>, h: &str) -> Option<&'a Value> {
    verdicts(view).find(|v| v["hypothesis"] == h)
}

/// A verdict's reason, then the records it cites and the events it cites,
/// each on a line of its own.
fn evidence(v: &Value) -> String {
    let numbers = |key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let (records, events) = (numbers("records"), numbers("events"));
    let mut cites = Vec::new();
    if !records.is_empty() {
        cites.push(format!("records {}", cited(&records)));
    }
    if !events.is_empty() {
        cites.push(format!("events {}", cited(&events)));
    }
    let mut out = text(&v["reason"]);
    for line in cites {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// The strings of an array value (other entries skipped; none when absent).
fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A table in the house style, [`WIDTH`] columns at most whatever the
/// terminal.
fn table() -> Table {
    let mut t = style::table();
    t.set_width(WIDTH);
    t
}

/// Natural order of names: runs of digits compare as numbers (`pst-2`
/// before `pst-10`), everything else as text; ties fall back to bytes.
fn natural(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, dx), (true, dy)) => {
                let (tx, ty) = (dx.trim_start_matches('0'), dy.trim_start_matches('0'));
                tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
            }
            ((_, sx), (_, sy)) => sx.cmp(sy),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(name: &str, affected: bool, row: Option<u8>, statuses: &str) -> Value {
        let verdicts: Vec<Value> = statuses
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let status = match c {
                    's' => "supported",
                    'r' => "refuted",
                    _ => "inconclusive",
                };
                json!({
                    "hypothesis": format!("H{}", i + 1),
                    "status": status,
                    "records": [10 + i as u64, 20 + i as u64],
                    "reason": format!("Reason for H{}.", i + 1),
                })
            })
            .collect();
        let supported: Vec<String> = statuses
            .chars()
            .enumerate()
            .filter(|(_, c)| *c == 's')
            .map(|(i, _)| format!("H{}", i + 1))
            .collect();
        json!({
            "agent": name, "affected": affected, "row": row, "supported": supported,
            "unacked": if affected { json!(["cmd-0002"]) } else { json!([]) },
            "verdicts": verdicts, "conns": [],
        })
    }

    fn healthy(name: &str) -> Value {
        json!({"diagnosis": {
            "server": view(name, false, None, "rrrrrir"),
            "full": view(name, false, None, "rrrrrir"),
            "truth": [],
        }})
    }

    /// The line of `out` that contains `needle` (empty when none).
    fn line<'a>(out: &'a str, needle: &str) -> &'a str {
        out.lines().find(|l| l.contains(needle)).unwrap_or("")
    }

    #[test]
    fn unaffected_agents_with_the_same_verdicts_share_one_row() {
        let mut agents = serde_json::Map::new();
        for site in ["nyc", "pst"] {
            for i in 1..=18 {
                let name = format!("{site}-{i}");
                agents.insert(name.clone(), healthy(&name));
            }
        }
        // Nothing acked yet: other verdicts, so not in the healthy row.
        agents.insert(
            "lax-1".into(),
            json!({"diagnosis": {
                "server": view("lax-1", false, None, "iiiiiii"),
                "full": view("lax-1", false, None, "iiiiiii"),
                "truth": [],
            }}),
        );
        let out = render(&json!({ "agents": agents }));
        let first = line(&out, "36 unaffected agents:");
        assert!(first.contains("┆ no "), "{out}");
        // Natural order: the last agent is pst-18, not pst-9.
        assert!(out.contains("nyc-1, nyc-2, nyc-3, …, pst-18"), "{out}");
        assert!(out.contains("H1 H2 H3 H4 H5 H7 refuted"), "{out}");
        assert!(line(&out, "lax-1").contains("┆ no "), "{out}");
        assert!(!out.contains("nyc-4") && !out.contains("pst-17"), "{out}");
        // Frame, header, lax-1 and the three lines of the collapsed row.
        assert_eq!(out.lines().count(), 8, "{out}");
        assert!(!out.contains("Verdicts for"), "{out}");
        assert!(
            out.lines().all(|l| l.chars().count() <= WIDTH as usize),
            "{out}"
        );
    }

    #[test]
    fn an_affected_agent_gets_its_row_and_a_verdict_table_with_evidence() {
        let mut sick = json!({"diagnosis": {
            "server": view("pst-server", true, Some(5), "rsssrii"),
            "full": view("pst-server", true, Some(5), "rrsrrir"),
            "truth": ["H3"],
        }});
        let full = &mut sick["diagnosis"]["full"]["verdicts"][2];
        full["reason"] = json!(
            "The agent read Command cmd-0002 (records cited) and wrote no CommandAck: \
             its command path is broken, and this reason is long enough to wrap."
        );
        full["records"] = json!((100..120).collect::<Vec<u64>>());
        full["events"] = json!([7, 9]);
        let outcome = json!({"agents": {"pst-server": sick, "nyc-server": healthy("nyc-server")}});
        let out = render(&outcome);
        let row = line(&out, "pst-server ");
        for cell in ["┆ yes ", "┆ 5 ", "┆ H2 H3 H4 ", "┆ H3 "] {
            assert!(row.contains(cell), "{cell}: {out}");
        }
        // Affected first; the healthy agent alone keeps its own name.
        assert!(out.find("pst-server") < out.find("nyc-server"), "{out}");
        let heading = "\nVerdicts for pst-server (row 5, unacked cmd-0002)\n";
        let Some(at) = out.find(heading) else {
            panic!("no heading: {out}");
        };
        let table = &out[at..];
        assert_eq!(out.matches("Verdicts for").count(), 1, "{out}");
        let h3 = line(table, " H3 ");
        for cell in [
            "┆ supported ",
            "┆ injected ",
            "The agent read Command cmd-0002",
        ] {
            assert!(h3.contains(cell), "{cell}: {out}");
        }
        // The reason wraps; the cited records and events follow it, the
        // long list cut in its middle.
        assert!(table.contains("long enough to wrap."), "{out}");
        assert!(
            table.contains("records 100 101 102 103 104 105 … 114"),
            "{out}"
        );
        assert!(table.contains("119"), "{out}");
        assert!(line(table, "events 7 9").starts_with("│    "), "{out}");
        assert!(!table.contains(" 110 "), "{out}");
        let h1 = line(table, " H1 ");
        assert!(
            h1.contains("┆ refuted ") && h1.contains("Reason for H1."),
            "{out}"
        );
        assert!(table.contains("records 10 20"), "{out}");
        assert!(
            out.lines().all(|l| l.chars().count() <= WIDTH as usize),
            "{out}"
        );
    }

    #[test]
    fn truth_marks_the_injected_hypotheses() {
        let mut a = json!({"diagnosis": {
            "server": view("a", true, Some(1), "riiiris"),
            "full": view("a", true, Some(1), "rrrrrss"),
            "truth": ["H6", "H7"],
        }});
        let t = agent("a", &a["diagnosis"]).to_string();
        assert!(line(&t, " H6 ").contains("┆ injected "), "{t}");
        assert!(line(&t, " H7 ").contains("┆ injected "), "{t}");
        assert_eq!(t.matches("injected").count(), 2, "{t}");
        let f = fleet(&json!({"agents": {"a": a.clone()}})).to_string();
        assert!(line(&f, "│ a ").trim_end().ends_with("┆ H6 H7 │"), "{f}");
        // Not affected although injected: still its own row with the truth.
        a["diagnosis"]["server"]["affected"] = json!(false);
        a["diagnosis"]["full"]["affected"] = json!(false);
        let out = render(&json!({"agents": {"a": a, "b": healthy("b"), "c": healthy("c")}}));
        let row = line(&out, "│ a ");
        assert!(row.contains("┆ no ") && row.contains("┆ H6 H7 "), "{out}");
        assert!(out.contains("2 unaffected agents:"), "{out}");
        assert!(!out.contains("Verdicts for"), "{out}");
    }

    #[test]
    fn agents_without_a_diagnosis_show_dashes() {
        let alone = render(&json!({"agents": {"lonely": {"status": "offline"}}}));
        let row = line(&alone, "lonely");
        assert_eq!(row.matches(" - ").count(), 5, "{alone}");
        assert!(!alone.contains("Verdicts for"), "{alone}");
        // Malformed diagnoses count as none.
        let two = render(&json!({"agents": {
            "lonely": {},
            "odd": {"diagnosis": {"server": 3, "truth": "H1"}},
        }}));
        assert!(two.contains("2 agents without a diagnosis:"), "{two}");
        assert!(two.contains("lonely, odd"), "{two}");
        // An agent table with nothing to show says so.
        let t = agent("lonely", &Value::Null).to_string();
        assert!(
            line(&t, "no verdicts in the diagnosis").starts_with("│ - "),
            "{t}"
        );
        assert_eq!(render(&json!({})), "no agents in the outcome\n");
        assert_eq!(render(&json!({"agents": []})), "no agents in the outcome\n");
    }

    #[test]
    fn helpers() {
        assert_eq!(ids(["H2", "H3"]), "H2 H3");
        assert_eq!(ids(Vec::<&str>::new()), "-");
        assert_eq!(cited(&[1, 2, 3]), "1 2 3");
        let long: Vec<u64> = (1..=14).collect();
        assert_eq!(cited(&long), "1 2 3 4 5 6 … 9 10 11 12 13 14");
        let mut names = vec!["pst-10", "pst-2", "nyc-1", "pst-1", "pst-02", "", "é9"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(
            names,
            ["", "nyc-1", "pst-1", "pst-02", "pst-2", "pst-10", "é9"]
        );
    }
}
