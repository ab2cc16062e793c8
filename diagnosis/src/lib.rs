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

pub use records::read;

pub use named::{INCIDENT1, INCIDENT3, INCIDENT4, INCIDENT5};

use records::frame::{EventRecord, FrameRecord};
use serde::ser::SerializeStruct;
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

/// Which observation points the engine may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// Only frame records with `point == "server"` and events with
    /// `host == "server"`: what a field engineer has.
    Server,
    /// Every point (`server`, `agent:<name>`, `path:<name>`) and every event.
    Full,
}

/// A hypothesis's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The evidence points at it (several may be supported at once when the
    /// view cannot separate them, as in outcome row 1: "H2 or H3").
    Supported,
    /// The evidence contradicts it.
    Refuted,
    /// The evidence in this view does not decide it.
    Inconclusive,
}

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

/// What the server-side log shows on one of the agent's connections.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnSummary {
    /// The server's connection id.
    pub conn: String,
    /// Record number of the connection's first server record.
    pub first_record: usize,
    /// Pings whose socket write completed.
    pub pings_written: usize,
    /// Pongs read that answer a Ping written earlier on this connection.
    pub pongs_matched: usize,
    /// Pongs read that answer no Ping written on this connection (ignored).
    pub pongs_unmatched: usize,
    /// Heartbeats read.
    pub heartbeats: usize,
    /// `Command` Text frames accepted by the send channel.
    pub commands_enqueued: usize,
    /// `Command` Text frames whose socket write completed.
    pub commands_written: usize,
    /// `Command` Text frames whose socket write failed.
    pub command_write_errors: usize,
    /// `CommandAck`s read.
    pub acks: usize,
    /// Outcome-table row of this connection, when it carried unacked Commands
    /// and matched one.
    pub row: Option<u8>,
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

/// A machine-readable experiment: what to do, to whom, and from when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Plan {
    /// Do it at or after this time (microseconds on the log's clock): when
    /// the evidence that left the hypotheses standing was complete.
    pub after_us: u64,
    /// The steps, in order.
    pub steps: Vec<PlanStep>,
}

/// One step of a [`Plan`], named like a scenario's `[[action]]` `do`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum PlanStep {
    /// Queue a command for `agent`; `not` lists the commands already tried
    /// on it (a second command *kind*: anything else).
    Dispatch {
        /// The agent.
        agent: String,
        /// Commands the new one must differ from (may be empty).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not: Vec<String>,
    },
    /// Queue a command for another agent of `site` than `except`.
    DispatchSite {
        /// The site.
        site: String,
        /// The agent whose site it is (not this one).
        except: String,
    },
    /// Close the agent's command-channel session from the server side.
    Evict {
        /// The agent.
        agent: String,
    },
    /// Probe the agent's `/liveness?failon=failed` and `failon=degraded`
    /// and log the answers.
    ProbeLiveness {
        /// The agent.
        agent: String,
    },
    /// Read the agent's own logs (frame and event points): the full view.
    ReadAgentLogs {
        /// The agent.
        agent: String,
    },
}

/// A command that waits in the server's queue: dispatched, never offered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Queued {
    /// `cmd-0001`, ...
    pub command_id: String,
    /// Its last `command.status` (`pending` when none).
    pub status: String,
    /// The agent's last connection's records that tell why.
    pub records: Vec<usize>,
    /// `command.dispatched` and `command.status` event lines.
    pub events: Vec<usize>,
    /// Its state and the last connection's evidence.
    pub reason: String,
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

impl Serialize for Diagnosis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Diagnosis", 13)?;
        st.serialize_field("agent", &self.agent)?;
        st.serialize_field("view", &self.view)?;
        st.serialize_field("affected", &self.affected)?;
        st.serialize_field("row", &self.row)?;
        st.serialize_field("supported", &self.supported())?;
        st.serialize_field("unacked", &self.unacked)?;
        st.serialize_field("verdicts", &self.verdicts)?;
        st.serialize_field("conns", &self.conns)?;
        st.serialize_field("refuted", &self.with(Status::Refuted))?;
        st.serialize_field("named", &self.named)?;
        st.serialize_field("queued", &self.queued)?;
        st.serialize_field("next", &self.next)?;
        st.end()
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
    for name in named::agents(&log) {
        if out.iter().all(|d| d.agent != name) {
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
