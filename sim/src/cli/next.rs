//! `simbench next`: closes the diagnostic loop. Runs a scenario, takes the
//! engine's next step wherever it leaves hypotheses standing (its
//! machine-readable [`Plan`]), turns each step into an experiment on a copy
//! of the scenario (a dispatch, an eviction, a liveness probe), runs the
//! copy with the same seed and shows how every verdict changed.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use comfy_table::Table;
use serde::Serialize;

use super::args::{NextArgs, OutputFormat};
use super::source::{self, ScenarioRef};
use super::{CliError, Exit};
use crate::diagnose::{diagnose, Diagnosis, NextStep, Plan, PlanStep, Status, View};
use crate::run::{ActionKind, ActionSpec, RunOutput, RunSpec};
use crate::scenario::resolve;

/// Commands a "second command kind" is chosen from, in order: built-ins of
/// the agent's executor.
pub const SPARE_COMMANDS: [&str; 3] = ["version", "hostname", "true"];

/// How long after an eviction the dispatch follows, so that the agent's
/// fresh connection is up (the agent reconnects within a few seconds).
pub const EVICT_TO_DISPATCH: Duration = Duration::from_secs(10);

/// How much run an experiment needs after it starts: the engine's grace
/// (an answer missing for 10 s counts as missing) and some slack.
pub const EXPERIMENT_ROOM: Duration = Duration::from_secs(30);

/// One verdict that changed between the two runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The agent.
    pub agent: String,
    /// `server` or `full`.
    pub view: &'static str,
    /// `H1` .. `H7` or a named hypothesis.
    pub hypothesis: String,
    /// In the first run (`null`: not given).
    pub before: Option<Status>,
    /// In the copy with the experiment.
    pub after: Option<Status>,
    /// Whether the run injected it (the simulator's truth).
    pub truth: bool,
}

/// One experiment and what it changed.
#[derive(Clone, Debug, Serialize)]
pub struct Experiment {
    /// The agent whose diagnosis asked for it.
    pub agent: String,
    /// The view that left the hypotheses standing.
    pub view: &'static str,
    /// The hypotheses it separates.
    pub between: Vec<String>,
    /// The engine's sentence.
    pub experiment: String,
    /// The engine's plan.
    pub plan: Plan,
    /// What was done to the copy, in scenario words; empty when the
    /// experiment reads a log the run already has (`read-agent-logs`).
    pub applied: Vec<String>,
    /// Where the "after" verdicts come from: the copy's `server` or `full`
    /// view, or the `full` view for `read-agent-logs` (the same run) and
    /// `probe-liveness` (the monitor's log).
    pub after_view: &'static str,
    /// Set when the copy runs longer than the scenario to leave the
    /// experiment time (both runs then use the longer duration).
    pub duration_s: Option<u64>,
    /// The `between` hypotheses for the agent: before and after, in
    /// `after_view` (before: in `view`).
    pub standing: Vec<Change>,
    /// Whether at most one of `between` is still standing (supported or
    /// inconclusive) afterwards; with one hypothesis, whether it is decided.
    pub separated: bool,
    /// Every verdict of every agent that changed, both views.
    pub changes: Vec<Change>,
}

/// The document `simbench next --format json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct NextReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed of every run.
    pub seed: u64,
    /// One entry per distinct plan, in the order the engine gave them.
    pub experiments: Vec<Experiment>,
    /// Next steps the bench cannot turn into an experiment, with why.
    pub skipped: Vec<String>,
}

fn view_key(v: View) -> &'static str {
    match v {
        View::Server => "server",
        View::Full => "full",
    }
}

fn status_name(s: Option<Status>) -> &'static str {
    match s {
        Some(Status::Supported) => "supported",
        Some(Status::Refuted) => "refuted",
        Some(Status::Inconclusive) => "inconclusive",
        None => "-",
    }
}

fn standing(s: Option<Status>) -> bool {
    matches!(s, Some(Status::Supported | Status::Inconclusive))
}

/// Both views' diagnoses of a run, by (view, agent).
type Verdicts = BTreeMap<(&'static str, String), Diagnosis>;

fn verdicts(out: &RunOutput) -> Verdicts {
    let mut m = BTreeMap::new();
    for view in [View::Server, View::Full] {
        for d in diagnose(&out.frames, &out.events, view) {
            m.insert((view_key(view), d.agent.clone()), d);
        }
    }
    m
}

fn status_of(v: &Verdicts, view: &'static str, agent: &str, h: &str) -> Option<Status> {
    v.get(&(view, agent.to_string()))
        .and_then(|d| d.verdict(h))
        .map(|x| x.status)
}

/// Every verdict that differs between `before` and `after`.
fn changes(spec: &RunSpec, before: &Verdicts, after: &Verdicts) -> Vec<Change> {
    let mut keys: Vec<(&'static str, String, String)> = Vec::new();
    for v in [before, after] {
        for ((view, agent), d) in v {
            for x in d.verdicts.iter().chain(&d.named) {
                keys.push((view, agent.clone(), x.hypothesis.to_string()));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(view, agent, h)| {
            let b = status_of(before, view, &agent, &h);
            let a = status_of(after, view, &agent, &h);
            (b != a).then(|| Change {
                truth: spec.truth(&agent).contains(&h.as_str()),
                agent,
                view,
                hypothesis: h,
                before: b,
                after: a,
            })
        })
        .collect()
}

/// The experiment as changes to `spec`: the actions added (in scenario
/// words), or why it cannot be run.
fn apply(plan: &Plan, spec: &mut RunSpec) -> Result<Vec<String>, String> {
    // At the first whole second after the evidence was complete.
    let after = Duration::from_micros(plan.after_us);
    let mut at = Duration::from_secs(after.as_secs() + 1);
    let mut applied = Vec::new();
    let dispatched = |spec: &RunSpec, agent: &str| -> Vec<String> {
        spec.actions
            .iter()
            .filter_map(|a| match &a.kind {
                ActionKind::Dispatch { agent: x, command } if x == agent => Some(command.clone()),
                _ => None,
            })
            .collect()
    };
    let known = |spec: &RunSpec, agent: &str| -> Result<(), String> {
        if spec.agents.iter().any(|a| a.name == agent) {
            Ok(())
        } else {
            Err(format!("agent {agent} is not in the scenario"))
        }
    };
    for step in &plan.steps {
        match step {
            PlanStep::Dispatch { agent, not } => {
                known(spec, agent)?;
                let mut tried = dispatched(spec, agent);
                tried.extend(not.iter().cloned());
                let command = SPARE_COMMANDS
                    .iter()
                    .find(|c| !tried.iter().any(|t| t == *c))
                    .ok_or_else(|| format!("every spare command was already sent to {agent}"))?;
                spec.actions.push(ActionSpec {
                    at,
                    kind: ActionKind::Dispatch {
                        agent: agent.clone(),
                        command: command.to_string(),
                    },
                });
                applied.push(format!(
                    "at {} s: dispatch `{command}` to {agent}",
                    at.as_secs()
                ));
            }
            PlanStep::DispatchSite { site, except } => {
                let other = spec
                    .agents
                    .iter()
                    .find(|a| a.site == *site && a.name != *except)
                    .map(|a| a.name.clone())
                    .ok_or_else(|| {
                        format!("site {site} has no agent but {except} in the scenario")
                    })?;
                let command = SPARE_COMMANDS[0];
                spec.actions.push(ActionSpec {
                    at,
                    kind: ActionKind::Dispatch {
                        agent: other.clone(),
                        command: command.into(),
                    },
                });
                applied.push(format!(
                    "at {} s: dispatch `{command}` to {other} (site {site})",
                    at.as_secs()
                ));
            }
            PlanStep::Evict { agent } => {
                known(spec, agent)?;
                spec.actions.push(ActionSpec {
                    at,
                    kind: ActionKind::Evict {
                        agent: agent.clone(),
                    },
                });
                applied.push(format!("at {} s: evict {agent}", at.as_secs()));
                at += EVICT_TO_DISPATCH;
            }
            PlanStep::ProbeLiveness { agent } => {
                known(spec, agent)?;
                spec.liveness_probes.push((at, agent.clone()));
                applied.push(format!(
                    "at {} s: probe {agent}'s /liveness?failon=failed and ?failon=degraded",
                    at.as_secs()
                ));
            }
            PlanStep::ReadAgentLogs { .. } => {}
        }
    }
    if !applied.is_empty() && at + EXPERIMENT_ROOM > spec.duration {
        spec.duration = at + EXPERIMENT_ROOM;
    }
    Ok(applied)
}

/// Runs `spec`; a run that does not finish is an error naming the seed.
fn run(spec: &RunSpec) -> Result<RunOutput, String> {
    crate::run::run(spec).map_err(|e| {
        format!(
            "scenario `{}` with seed {} did not run to its end: {e}",
            spec.name, spec.seed
        )
    })
}

/// Does everything `simbench next` does, without printing.
pub fn next_report(spec: &RunSpec) -> Result<NextReport, String> {
    let base = run(spec)?;
    let before = verdicts(&base);
    // Distinct plans, in agent and view order (the full view's first: it
    // leaves less standing, so its steps are the ones worth running).
    let mut steps: Vec<(&'static str, String, NextStep)> = Vec::new();
    for view in ["full", "server"] {
        for ((v, agent), d) in &before {
            if *v != view {
                continue;
            }
            for n in &d.next {
                if n.plan.is_some() && !steps.iter().any(|(_, _, s)| s.plan == n.plan) {
                    steps.push((view, agent.clone(), n.clone()));
                }
            }
        }
    }
    let mut report = NextReport {
        scenario: spec.name.clone(),
        seed: spec.seed,
        experiments: Vec::new(),
        skipped: Vec::new(),
    };
    // The first run again with a longer duration, when an experiment needs
    // one, so the only difference left is the experiment.
    let mut longer: BTreeMap<Duration, Verdicts> = BTreeMap::new();
    for (view, agent, step) in steps {
        let plan = step.plan.clone().expect("filtered");
        let mut copy = spec.clone();
        let applied = match apply(&plan, &mut copy) {
            Ok(a) => a,
            Err(why) => {
                report.skipped.push(format!(
                    "{agent} ({}, {view} view): {why}",
                    step.between.join(" vs ")
                ));
                continue;
            }
        };
        let (after, after_view, before_v) = if applied.is_empty() {
            // Reading the agent's own logs: the same run's full view.
            (before.clone(), "full", &before)
        } else {
            let after = verdicts(&run(&copy)?);
            let before_v = if copy.duration != spec.duration {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    longer.entry(copy.duration)
                {
                    let mut same = spec.clone();
                    same.duration = copy.duration;
                    slot.insert(verdicts(&run(&same)?));
                }
                &longer[&copy.duration]
            } else {
                &before
            };
            // A liveness probe's answer is in the monitor's log, which only
            // the full view reads (what the server's own log cannot show).
            let probes = plan
                .steps
                .iter()
                .any(|s| matches!(s, PlanStep::ProbeLiveness { .. }));
            (after, if probes { "full" } else { view }, before_v)
        };
        let standing_changes: Vec<Change> = step
            .between
            .iter()
            .map(|h| Change {
                agent: agent.clone(),
                view: after_view,
                hypothesis: h.to_string(),
                before: status_of(before_v, view, &agent, h),
                after: status_of(&after, after_view, &agent, h),
                truth: copy.truth(&agent).contains(h),
            })
            .collect();
        let left = standing_changes
            .iter()
            .filter(|c| standing(c.after))
            .count();
        let separated = if step.between.len() == 1 {
            standing_changes[0].after != Some(Status::Inconclusive)
                && standing_changes[0].after.is_some()
        } else {
            left <= 1
        };
        let all = if applied.is_empty() {
            // Server view before, full view after, for every agent.
            let mut shifted: Verdicts = BTreeMap::new();
            for ((v, a), d) in &before {
                if *v == "full" {
                    shifted.insert(("server", a.clone()), d.clone());
                }
            }
            let server_only: Verdicts = before
                .iter()
                .filter(|((v, _), _)| *v == "server")
                .map(|(k, d)| (k.clone(), d.clone()))
                .collect();
            changes(spec, &server_only, &shifted)
                .into_iter()
                .map(|mut c| {
                    c.view = "full";
                    c
                })
                .collect()
        } else {
            changes(&copy, before_v, &after)
        };
        report.experiments.push(Experiment {
            agent: agent.clone(),
            view,
            between: step.between.iter().map(|s| s.to_string()).collect(),
            experiment: step.experiment.clone(),
            plan,
            applied,
            after_view,
            duration_s: (copy.duration != spec.duration).then_some(copy.duration.as_secs()),
            standing: standing_changes,
            separated,
            changes: all,
        });
    }
    Ok(report)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()));
    t
}

fn write_human(out: &mut dyn Write, r: &NextReport) -> std::io::Result<()> {
    writeln!(out, "{} (seed {})", r.scenario, r.seed)?;
    if r.experiments.is_empty() && r.skipped.is_empty() {
        writeln!(
            out,
            "The engine leaves no hypotheses standing that an experiment would separate: nothing to run."
        )?;
    }
    for (i, e) in r.experiments.iter().enumerate() {
        writeln!(out)?;
        writeln!(
            out,
            "Experiment {}: {} ({}, {} view)",
            i + 1,
            e.between.join(" vs "),
            e.agent,
            e.view
        )?;
        writeln!(out, "  {}", super::printable(&e.experiment))?;
        if e.applied.is_empty() {
            writeln!(
                out,
                "  done as: the same run's every-point view (the agent's own logs)"
            )?;
        } else {
            for a in &e.applied {
                writeln!(out, "  done as: {a} (a copy of the scenario, same seed)")?;
            }
        }
        if let Some(d) = e.duration_s {
            writeln!(
                out,
                "  both runs last {d} s to leave the experiment {} s",
                EXPERIMENT_ROOM.as_secs()
            )?;
        }
        let mut t = table(&["agent", "view", "hypothesis", "before", "after", "injected"]);
        for c in &e.standing {
            t.add_row(row(c));
        }
        writeln!(out, "{t}")?;
        writeln!(
            out,
            "  {}",
            if e.separated {
                "separated"
            } else {
                "not separated: the experiment left them standing"
            }
        )?;
        let others: Vec<&Change> = e
            .changes
            .iter()
            .filter(|c| !e.standing.contains(c))
            .collect();
        if !others.is_empty() {
            writeln!(out, "  Every other verdict that changed:")?;
            let mut t = table(&["agent", "view", "hypothesis", "before", "after", "injected"]);
            for c in others {
                t.add_row(row(c));
            }
            writeln!(out, "{t}")?;
        }
    }
    for s in &r.skipped {
        writeln!(
            out,
            "\nNot run: {}",
            super::diagnose::escape(&super::printable(s))
        )?;
    }
    Ok(())
}

fn row(c: &Change) -> Vec<String> {
    vec![
        super::printable(&c.agent),
        c.view.to_string(),
        c.hypothesis.clone(),
        status_name(c.before).to_string(),
        status_name(c.after).to_string(),
        if c.truth { "yes" } else { "no" }.to_string(),
    ]
}

/// `simbench next`.
pub(super) fn next(
    args: &NextArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Exit, CliError> {
    let loaded = source::load(&ScenarioRef::parse(&args.scenario))?;
    for note in &loaded.notes {
        writeln!(err, "{note}")?;
    }
    let spec = resolve(&loaded.scenario, args.seed)?;
    let report = match next_report(&spec) {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            writeln!(
                err,
                "replay: {}",
                super::replay_command(&loaded.shown, spec.seed)
            )?;
            return Ok(Exit::Failed);
        }
    };
    match args.format {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&report).expect("the report serializes");
            writeln!(out, "{text}")?;
        }
        OutputFormat::Table => write_human(out, &report)?,
    }
    // Exit 1 when an experiment ran and did not separate what it should.
    Ok(if report.experiments.iter().all(|e| e.separated) {
        Exit::Success
    } else {
        Exit::Failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        let agent = |name: &str, site: &str| crate::run::AgentSpec {
            name: name.into(),
            site: site.into(),
            version: "1.0.0".into(),
            switches: agent::AgentSwitches::FIXED,
            defect: None,
            install_at_start: true,
        };
        RunSpec::new(
            "t",
            1,
            Duration::from_secs(120),
            vec![agent("a1", "pst"), agent("a2", "pst")],
            vec![ActionSpec {
                at: Duration::from_secs(60),
                kind: ActionKind::Dispatch {
                    agent: "a1".into(),
                    command: "version".into(),
                },
            }],
        )
    }

    #[test]
    fn a_second_command_kind_differs_from_every_command_tried() {
        let mut s = spec();
        let plan = Plan {
            after_us: 70_500_000,
            steps: vec![PlanStep::Dispatch {
                agent: "a1".into(),
                not: vec!["hostname".into()],
            }],
        };
        let applied = apply(&plan, &mut s).unwrap();
        assert_eq!(applied, ["at 71 s: dispatch `true` to a1"]);
        assert_eq!(s.duration, Duration::from_secs(120), "room enough");
    }

    #[test]
    fn an_experiment_late_in_the_run_lengthens_the_copy() {
        let mut s = spec();
        let plan = Plan {
            after_us: 110_000_000,
            steps: vec![
                PlanStep::Evict { agent: "a1".into() },
                PlanStep::Dispatch {
                    agent: "a1".into(),
                    not: Vec::new(),
                },
            ],
        };
        apply(&plan, &mut s).unwrap();
        assert_eq!(s.duration, Duration::from_secs(111 + 10 + 30));
        assert!(crate::diagnose::GRACE_US < EXPERIMENT_ROOM.as_micros() as u64);
    }

    #[test]
    fn another_agent_of_the_site_must_exist() {
        let mut s = spec();
        let ok = Plan {
            after_us: 0,
            steps: vec![PlanStep::DispatchSite {
                site: "pst".into(),
                except: "a1".into(),
            }],
        };
        assert_eq!(
            apply(&ok, &mut s).unwrap(),
            ["at 1 s: dispatch `version` to a2 (site pst)"]
        );
        let none = Plan {
            after_us: 0,
            steps: vec![PlanStep::DispatchSite {
                site: "nyc".into(),
                except: "a1".into(),
            }],
        };
        assert!(apply(&none, &mut s).unwrap_err().contains("site nyc"));
        let ghost = Plan {
            after_us: 0,
            steps: vec![PlanStep::ProbeLiveness {
                agent: "ghost".into(),
            }],
        };
        assert!(apply(&ghost, &mut s).unwrap_err().contains("ghost"));
    }
}
