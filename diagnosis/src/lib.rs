//! `diagnosis`: the hypothesis engine and its scorer as a library without
//! the simulator; it builds on `records` (serde only), serde_json and
//! comfy-table: no tokio, quinn, rustls or turmoil (issue 15, item 4).
//!
//! The hypothesis engine for incident 2 (commands never delivered on a live,
//! asymmetric channel): reads a frame log and an event log and decides
//! H1..H7 per agent, naming the outcome-table row the server-side log
//! matches (INCIDENTS.md, incident 2; DESIGN.md, "Diagnosis").
//!
//! Sans-IO: the input is the two logs in file order, the output is plain
//! data. No clock, no files, no `HashMap` iteration; the same logs always
//! give the same answer. The rules are documented in `docs/diagnosis.md`.
//!
//! Record numbers are 1-based positions in the frame log (the line number
//! in frames.jsonl), counted over the whole log whatever the [`View`];
//! event numbers are 1-based line numbers in events.jsonl.

mod facts;
mod named;
mod rows;
pub mod score;
mod verdicts;

pub use records::outcome::{
    ConnSummary, DiagnosisDoc, NextDoc, Plan, PlanStep, Queued, Status, VerdictDoc, View,
};
pub use records::read;

pub use named::{INCIDENT1, INCIDENT3, INCIDENT4, INCIDENT5};

use records::frame::{EventRecord, FrameRecord};
use serde::{Serialize, Serializer};

/// How long after its last record a Ping, an enqueued Text or a Command
/// must be followed by more log before its missing answer (Pong, `written`,
/// `CommandAck`) counts as missing rather than not yet due: 10 s.
pub const GRACE_US: u64 = 10_000_000;

/// The hypothesis ids of incident 2, in verdict order.
pub const HYPOTHESES: [&str; 7] = ["H1", "H2", "H3", "H4", "H5", "H6", "H7"];

/// Most record numbers one verdict cites per kind of evidence; longer lists
/// keep their first and last halves.
pub const MAX_CITED: usize = 12;

/// The verdict on one hypothesis for one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `H1` .. `H7`.
    pub hypothesis: &'static str,
    /// Supported, refuted or inconclusive.
    pub status: Status,
    /// Frame-log record numbers (1-based) that decided it, ascending.
    pub records: Vec<usize>,
    /// Event-log line numbers (1-based) that decided it, ascending.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<usize>,
    /// Why, in one or two sentences.
    pub reason: String,
}

/// The one experiment that would separate hypotheses the evidence leaves
/// standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextStep {
    /// The hypotheses it separates.
    pub between: Vec<&'static str>,
    /// What to do, in one sentence.
    pub experiment: String,
    /// The same experiment for a program (`simbench next` turns it into
    /// actions on a copy of the scenario), when it is one a bench can run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

/// The engine's answer for one agent in one view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// The agent's name (`peer` at the server, `<name>` of `agent:<name>`).
    pub agent: String,
    /// Which points were read.
    pub view: View,
    /// The outcome-table row (1..=5) the server-side log matched; `None` when
    /// the agent is unaffected or no row matches.
    pub row: Option<u8>,
    /// H1..H7, in that order.
    pub verdicts: Vec<Verdict>,
    /// Some `Command` sent to the agent never got a `CommandAck`.
    pub affected: bool,
    /// The commands that decided `affected` (never acked), ascending.
    pub unacked: Vec<String>,
    /// The agent's connections at the server, in order of first record.
    pub conns: Vec<ConnSummary>,
    /// The named hypotheses of incidents 1, 3, 4 and 5 that apply to the
    /// agent (docs/diagnosis.md), incident by incident.
    pub named: Vec<Verdict>,
    /// Commands dispatched to the agent (`command.dispatched`) that the
    /// server never offered on a connection and that were not acked: they
    /// wait in the queue.
    pub queued: Vec<Queued>,
    /// Where the evidence leaves two or more hypotheses standing: the
    /// experiment that separates them.
    pub next: Vec<NextStep>,
}

impl Diagnosis {
    /// Ids of the supported hypotheses, in H1..H7 order.
    pub fn supported(&self) -> Vec<&'static str> {
        self.with(Status::Supported)
    }

    /// Ids of the hypotheses with `status`: H1..H7 in order, then the
    /// named ones.
    pub fn with(&self, status: Status) -> Vec<&'static str> {
        self.verdicts
            .iter()
            .chain(&self.named)
            .filter(|v| v.status == status)
            .map(|v| v.hypothesis)
            .collect()
    }

    /// The verdict on `hypothesis` (`"H1"` .. `"H7"`, or a named one).
    pub fn verdict(&self, hypothesis: &str) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .chain(&self.named)
            .find(|v| v.hypothesis == hypothesis)
    }
}

impl Diagnosis {
    /// The answer as plain data: what the outcome document holds at
    /// `agents.<name>.diagnosis.<view>` and what [`Diagnosis`] serializes as.
    pub fn doc(&self) -> DiagnosisDoc {
        let ids = |v: Vec<&'static str>| v.into_iter().map(str::to_string).collect();
        let verdict = |v: &Verdict| VerdictDoc {
            hypothesis: v.hypothesis.to_string(),
            status: v.status,
            records: v.records.clone(),
            events: v.events.clone(),
            reason: v.reason.clone(),
        };
        DiagnosisDoc {
            agent: self.agent.clone(),
            view: self.view,
            affected: self.affected,
            row: self.row,
            supported: ids(self.supported()),
            unacked: self.unacked.clone(),
            verdicts: self.verdicts.iter().map(verdict).collect(),
            conns: self.conns.clone(),
            refuted: ids(self.with(Status::Refuted)),
            named: self.named.iter().map(verdict).collect(),
            queued: self.queued.clone(),
            next: self
                .next
                .iter()
                .map(|n| NextDoc {
                    between: ids(n.between.clone()),
                    experiment: n.experiment.clone(),
                    plan: n.plan.clone(),
                })
                .collect(),
        }
    }
}

impl Serialize for Diagnosis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.doc().serialize(s)
    }
}

/// Diagnoses every agent seen in `frames` or named by `events` (in
/// `view`): one [`Diagnosis`] per agent, sorted by name. `frames` and
/// `events` are the two logs in file order.
pub fn diagnose(frames: &[FrameRecord], events: &[EventRecord], view: View) -> Vec<Diagnosis> {
    let log = facts::Log::new(frames, events, view);
    let agents = facts::agents(&log);
    let mut out = verdicts::decide(&log, &agents);
    // Agents only the events name (never on the command channel): H1..H7
    // are not exercised.
    let known: std::collections::BTreeSet<String> = out.iter().map(|d| d.agent.clone()).collect();
    for name in named::agents(&log) {
        if !known.contains(&name) {
            out.push(Diagnosis {
                agent: name.clone(),
                view,
                row: None,
                verdicts: HYPOTHESES
                    .iter()
                    .map(|h| Verdict {
                        hypothesis: h,
                        status: Status::Inconclusive,
                        records: Vec::new(),
                        events: Vec::new(),
                        reason:
                            "No command-channel record of this agent in this view: the command \
                                 path was not exercised."
                                .to_string(),
                    })
                    .collect(),
                affected: false,
                unacked: Vec::new(),
                conns: Vec::new(),
                named: Vec::new(),
                queued: Vec::new(),
                next: Vec::new(),
            });
        }
    }
    out.sort_by(|a, b| a.agent.cmp(&b.agent));
    let mut named = named::decide(&log);
    for d in &mut out {
        if let Some((v, next)) = named.remove(&d.agent) {
            d.named = v;
            d.next.extend(next);
        }
    }
    verdicts::queued(&log, &mut out);
    out
}

/// Sorts, dedups and bounds a citation list (first and last halves of
/// [`MAX_CITED`] when longer).
pub(crate) fn cite(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v.dedup();
    if v.len() > MAX_CITED {
        let half = MAX_CITED / 2;
        let tail = v.split_off(v.len() - half);
        v.truncate(half);
        v.extend(tail);
    }
    v
}

#[cfg(test)]
mod tests;
