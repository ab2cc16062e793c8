//! The report of one finished run, as `simbench run` prints it: a summary,
//! the hosts, the faults in force, the timeline of the connections that
//! matter, the hypothesis verdicts and the expectations, each a table under
//! a heading.

use std::time::Duration;

use comfy_table::{Cell, CellAlignment, Table};
use format::scenario::{Behavior, Scenario};
use format::{Expect, ExpectResult};
use records::frame::FrameRecord;
use serde_json::Value;

use crate::style::{self, count};
use crate::timeline::{self, TimelineOptions};
use crate::verdicts;

/// The most agents the hosts table shows per site; the rest are counted.
pub const MAX_AGENTS_PER_SITE: usize = 8;

/// Everything the report of one run reads. Borrowed, so a caller builds it
/// from what it already holds (the scenario, the run output, the verdicts).
#[derive(Debug, Clone, Copy)]
pub struct RunView<'a> {
    /// The scenario that ran.
    pub scenario: &'a Scenario,
    /// The outcome document (report.json), with `digest` and `seed`.
    pub outcome: &'a Value,
    /// The frame log.
    pub frames: &'a [FrameRecord],
    /// Each expectation with its verdict, in file order.
    pub expectations: &'a [(Expect, ExpectResult)],
    /// How long the run took on this machine; `None` leaves the row out.
    /// It is the only line of the report that differs between two runs of
    /// the same scenario and seed.
    pub wall_time: Option<Duration>,
}

impl RunView<'_> {
    /// The seed the run used (from the outcome, falling back to the file's).
    pub fn seed(&self) -> u64 {
        self.outcome["seed"].as_u64().unwrap_or(self.scenario.seed)
    }

    /// How many expectations failed.
    pub fn failed(&self) -> usize {
        self.expectations.iter().filter(|(_, r)| !r.passed).count()
    }
}

/// The whole report: every section with its heading, ending in a verdict
/// line. `timeline` says how much of the frame log to show.
pub fn render(view: &RunView, timeline: &TimelineOptions) -> String {
    let mut out = format!("{}: {}\n", view.scenario.name, view.scenario.summary);
    out.push_str(&summary(view).to_string());
    out.push_str("\n\nHosts\n");
    out.push_str(&hosts(view.scenario, view.outcome).to_string());
    out.push('\n');
    out.push('\n');
    out.push_str(&faults(view.scenario));
    out.push_str(&format!(
        "\nTimeline (point `{}`; every frame is in frames.jsonl)\n",
        timeline.point
    ));
    out.push_str(&timeline::render(view.frames, timeline));
    out.push_str(
        "\nVerdicts (H1..H7, docs/diagnosis.md; server: the server's log alone, full: every point)\n",
    );
    out.push_str(&verdicts::render(view.outcome));
    out.push_str("\nExpectations\n");
    out.push_str(&expectations(view.expectations));
    out.push('\n');
    out.push_str(&verdict(view));
    out.push('\n');
    out
}

/// The summary table: scenario, incident, seed, sim time, digest, the sizes
/// of the logs and, when given, the wall time on a row of its own.
pub fn summary(view: &RunView) -> Table {
    let sc = view.scenario;
    let o = view.outcome;
    let mut t = style::table();
    let sim_us = o["sim_time_us"].as_u64().unwrap_or(0);
    let rows: Vec<(&str, String)> = vec![
        ("scenario", sc.name.clone()),
        ("incident", sc.incident.clone()),
        ("seed", view.seed().to_string()),
        (
            "sim time",
            format!(
                "{} (duration {}, tick {})",
                style::sim_time(sim_us),
                format::format_duration(sc.duration),
                format::format_duration(sc.tick)
            ),
        ),
        ("digest", text(&o["digest"])),
        (
            "logs",
            format!(
                "{} frames, {} events",
                text(&o["counts"]["frames"]),
                text(&o["counts"]["events"])
            ),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    if let Some(w) = view.wall_time {
        t.add_row(vec!["wall time".to_string(), style::wall_time(w)]);
    }
    t
}

/// The hosts table: the server, then one `site-<site>` host per site with
/// its agents (at most [`MAX_AGENTS_PER_SITE`] each), their behavior, and
/// what the outcome says about them at the end of the run.
pub fn hosts(sc: &Scenario, outcome: &Value) -> Table {
    let mut t = style::table();
    t.set_header(vec![
        "host", "agent", "behavior", "version", "install", "status", "online",
    ]);
    t.add_row(vec![
        "server".to_string(),
        "-".into(),
        behavior(&sc.server.behavior),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
    let instances = sc.agent_instances();
    for site in sc.sites() {
        let here: Vec<_> = instances.iter().filter(|a| a.site == site).collect();
        for (i, a) in here.iter().take(MAX_AGENTS_PER_SITE).enumerate() {
            let ao = &outcome["agents"][&a.name];
            let host = if i == 0 {
                format!("site-{site}")
            } else {
                String::new()
            };
            t.add_row(vec![
                host,
                a.name.clone(),
                behavior(&a.behavior),
                a.version.clone(),
                text(&ao["install"]["result"]),
                text(&ao["status"]),
                match ao["online"].as_bool() {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
            ]);
        }
        if here.len() > MAX_AGENTS_PER_SITE {
            t.add_row(vec![
                String::new(),
                match here.len() - MAX_AGENTS_PER_SITE {
                    1 => "... 1 more agent".to_string(),
                    n => format!("... {n} more agents"),
                },
            ]);
        }
    }
    t
}

/// A behavior as one short phrase: `fixed`, or `legacy + up_probe` for a
/// preset with switches turned on (`-name` for switches turned off).
pub fn behavior(b: &Behavior) -> String {
    let mut s = b.preset.as_str().to_string();
    for (name, on) in &b.switches {
        if *on != b.preset.switch_value() {
            s.push_str(if *on { " +" } else { " -" });
            s.push_str(name);
        }
    }
    s
}

/// The faults in force: a heading line, then a table of each fault with
/// where it acts, its settings and its window, or `none`.
pub fn faults(sc: &Scenario) -> String {
    match faults_table(sc) {
        None => "Faults in force: none\n".to_string(),
        Some(t) => format!(
            "Faults in force ({})\n{t}\n",
            count(sc.faults.len(), "fault", "faults")
        ),
    }
}

/// The table of [`faults`]; `None` when the scenario injects none.
pub fn faults_table(sc: &Scenario) -> Option<Table> {
    if sc.faults.is_empty() {
        return None;
    }
    let mut t = style::table();
    t.set_header(vec!["kind", "where", "settings", "from", "until"]);
    for f in &sc.faults {
        // The serialized form is the file's own spelling of every setting,
        // so new fault kinds show up here without a change.
        let mut fields = match serde_json::to_value(&f.kind) {
            Ok(Value::Object(m)) => m,
            _ => Default::default(),
        };
        fields.remove("kind");
        let place = match (fields.remove("between"), fields.remove("agent")) {
            (Some(Value::Array(ends)), _) => {
                ends.iter().map(text).collect::<Vec<_>>().join(" <-> ")
            }
            (_, Some(agent)) => format!("agent:{}", text(&agent)),
            _ => "server".to_string(),
        };
        let settings: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        t.add_row(vec![
            f.kind.name().to_string(),
            place,
            settings.join(" "),
            f.from
                .map(format::format_duration)
                .unwrap_or_else(|| "start".into()),
            f.until
                .map(format::format_duration)
                .unwrap_or_else(|| "end".into()),
        ]);
    }
    Some(t)
}

/// The expectations table: each `[[expect]]` with what was observed and
/// `PASS` or `FAIL` (report.html also lists each failure's message).
pub fn expectations(list: &[(Expect, ExpectResult)]) -> String {
    match expectations_table(list) {
        None => "none (the scenario has no [[expect]] tables)\n".to_string(),
        Some(t) => format!("{t}\n"),
    }
}

/// The table of [`expectations`]; `None` when there are none.
pub fn expectations_table(list: &[(Expect, ExpectResult)]) -> Option<Table> {
    if list.is_empty() {
        return None;
    }
    let mut t = style::table();
    t.set_header(vec![
        "#", "observe", "operator", "expected", "observed", "result",
    ]);
    for (i, (e, r)) in list.iter().enumerate() {
        t.add_row(vec![
            Cell::new(i + 1).set_alignment(CellAlignment::Right),
            Cell::new(&e.observe),
            Cell::new(e.op.as_str()),
            Cell::new(e.value.to_string()),
            Cell::new(
                r.observed
                    .as_ref()
                    .map_or_else(|| "(no value)".to_string(), Value::to_string),
            ),
            Cell::new(if r.passed { "PASS" } else { "FAIL" }),
        ]);
    }
    Some(t)
}

/// One line: whether every expectation holds, and how many failed.
pub fn verdict(view: &RunView) -> String {
    let total = view.expectations.len();
    match view.failed() {
        0 => format!(
            "PASS: {} of {total} hold (seed {})",
            count(total, "expectation", "expectations"),
            view.seed()
        ),
        n => format!(
            "FAIL: {} of {total} failed (seed {})",
            count(n, "expectation", "expectations"),
            view.seed()
        ),
    }
}

/// A JSON value for a table cell: strings without quotes, `-` for null or
/// absent, everything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\nsummary = \"s\"\nincident = \"i\"\nseed = 3\nduration = \"1m\"\n\
             [[agent]]\nname = \"a\"\ncount = 10\nsite = \"x\"\n{extra}"
        );
        format::parse_scenario("t.toml", &text).expect("test scenario parses")
    }

    #[test]
    fn hosts_cap_agents_per_site_and_say_how_many_more() {
        let t = hosts(&scenario(""), &json!({})).to_string();
        assert!(t.contains("site-x"), "{t}");
        assert!(t.contains("a-8"), "{t}");
        assert!(!t.contains("a-9"), "{t}");
        assert!(t.contains("... 2 more agents"), "{t}");
    }

    #[test]
    fn faults_show_place_settings_and_window() {
        let sc = scenario(
            "[[fault]]\nkind = \"drop-frames\"\nbetween = [\"site:x\", \"server\"]\n\
             direction = \"server->agent\"\nframe = \"text\"\nfrom = \"10s\"\n",
        );
        let f = faults(&sc);
        assert!(f.starts_with("Faults in force (1 fault)"), "{f}");
        assert!(f.contains("site:x <-> server"), "{f}");
        assert!(f.contains("direction=server->agent frame=text"), "{f}");
        assert!(f.contains("10s"), "{f}");
        assert!(f.contains("end"), "{f}");
        assert_eq!(faults(&scenario("")), "Faults in force: none\n");
    }

    #[test]
    fn behaviors_name_changed_switches_only() {
        let mut b = Behavior::preset(format::Preset::Legacy);
        assert_eq!(behavior(&b), "legacy");
        b.switches.insert("up_probe".into(), true);
        b.switches.insert("registry_generation_check".into(), false);
        assert_eq!(behavior(&b), "legacy +up_probe");
    }

    #[test]
    fn expectations_show_observed_and_verdict() {
        let sc = scenario(
            "[[expect]]\nobserve = \"counts.commands_completed\"\nequals = 99\n\
             [[expect]]\nobserve = \"seed\"\nequals = 3\n",
        );
        let outcome = json!({"seed": 3, "counts": {"commands_completed": 5}});
        let results: Vec<_> = sc
            .expects
            .iter()
            .map(|e| {
                (
                    e.clone(),
                    format::evaluate(e, format::lookup(&outcome, &e.observe)),
                )
            })
            .collect();
        let t = expectations(&results);
        let fail_row = t
            .lines()
            .find(|l| l.contains("commands_completed"))
            .unwrap();
        assert!(fail_row.contains("99") && fail_row.contains('5') && fail_row.contains("FAIL"));
        let pass_row = t.lines().find(|l| l.contains("seed")).unwrap();
        assert!(pass_row.contains("PASS"), "{t}");
        let view = RunView {
            scenario: &sc,
            outcome: &outcome,
            frames: &[],
            expectations: &results,
            wall_time: None,
        };
        assert_eq!(verdict(&view), "FAIL: 1 expectation of 2 failed (seed 3)");
        assert!(!summary(&view).to_string().contains("wall time"));
    }
}
