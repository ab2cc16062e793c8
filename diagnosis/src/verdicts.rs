//! H1..H7 per agent: the server-view verdicts from the row, the full-view
//! refinements from the agent and path points, then the cross-agent rules
//! (H4 by site, H6 across the fleet).

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Agent, Cmd, Conn, Log};
use super::rows::{agent_row, list, RowMatch};
use super::{
    cite, Diagnosis, NextStep, Plan, PlanStep, Queued, Status, Verdict, View, GRACE_US, HYPOTHESES,
};
use records::frame::{Dir, FrameKind, Stage};
use serde_json::Value;

use Status::{Inconclusive as I, Refuted as R, Supported as S};

fn verdict(h: &'static str, status: Status, records: Vec<usize>, reason: String) -> Verdict {
    Verdict {
        hypothesis: h,
        status,
        records: cite(records),
        events: Vec::new(),
        reason,
    }
}

/// The seven verdicts of one agent, indexed 0..7 for H1..H7.
struct Verdicts([Verdict; 7]);

impl Verdicts {
    fn all(status: Status, records: &[usize], reason: &str) -> Self {
        Verdicts(HYPOTHESES.map(|h| verdict(h, status, records.to_vec(), reason.to_string())))
    }

    fn set(&mut self, h: usize, status: Status, records: Vec<usize>, reason: impl Into<String>) {
        self.0[h - 1] = verdict(HYPOTHESES[h - 1], status, records, reason.into());
    }

    fn get(&self, h: usize) -> &Verdict {
        &self.0[h - 1]
    }

    fn supported(&self) -> BTreeSet<&'static str> {
        self.0
            .iter()
            .filter(|v| v.status == S)
            .map(|v| v.hypothesis)
            .collect()
    }
}

/// "Text loss" for H4: when it started and the records that show it.
struct Loss {
    first_t: u64,
    records: Vec<usize>,
}

/// One agent after the per-agent pass.
struct Pre<'a> {
    a: &'a Agent,
    row: Option<RowMatch>,
    conn_rows: Vec<Option<u8>>,
    affected: bool,
    v: Verdicts,
    loss: Option<Loss>,
}

/// Runs every pass and assembles the answer, sorted by agent name.
pub(crate) fn decide(log: &Log<'_>, agents: &BTreeMap<String, Agent>) -> Vec<Diagnosis> {
    let mut pre: Vec<Pre<'_>> = agents.values().map(|a| per_agent(log, a)).collect();
    site_rule(&mut pre);
    fleet_rule(&mut pre);
    pre.into_iter()
        .map(|p| {
            let next = next_steps(log, &p);
            Diagnosis {
                agent: p.a.name.clone(),
                view: log.view,
                row: p.row.as_ref().map(|m| m.row),
                verdicts: p.v.0.to_vec(),
                affected: p.affected,
                unacked: p.a.unacked.iter().cloned().collect(),
                conns: p
                    .a
                    .conns
                    .iter()
                    .zip(&p.conn_rows)
                    .map(|(c, r)| c.summary(*r))
                    .collect(),
                named: Vec::new(),
                queued: Vec::new(),
                next,
            }
        })
        .collect()
}

/// The commands the server logged dispatching to `agent`
/// (`command.dispatched`), sorted and without repeats.
fn dispatched(log: &Log<'_>, agent: &str) -> Vec<String> {
    let field = |e: &records::frame::EventRecord, k: &str| {
        e.fields.get(k).and_then(Value::as_str).map(str::to_string)
    };
    let mut v: Vec<String> = log
        .events
        .iter()
        .filter(|(_, e)| {
            e.event == "command.dispatched" && field(e, "agent").as_deref() == Some(agent)
        })
        .filter_map(|(_, e)| field(e, "command"))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Incident 2: the experiment that separates what the evidence leaves
/// standing.
fn next_steps(log: &Log<'_>, p: &Pre<'_>) -> Vec<NextStep> {
    let st = |h: usize| p.v.get(h).status;
    let name = &p.a.name;
    let cmd = p.a.unacked.iter().next().cloned().unwrap_or_default();
    let mut out = Vec::new();
    if !p.affected {
        return out;
    }
    // The evidence is complete once the grace after the latest unacked
    // command's first record has passed.
    let after_us =
        p.a.unacked
            .iter()
            .filter_map(|id| p.a.commands.get(id))
            .map(|(_, t)| t.saturating_add(GRACE_US))
            .max()
            .unwrap_or(log.end_t);
    let plan = |steps: Vec<PlanStep>| Some(Plan { after_us, steps });
    if st(2) == S && st(3) == S {
        out.push(NextStep {
            between: vec!["H2", "H3"],
            experiment: format!("read {name}'s own frame log (or capture at its site's path) for {cmd}: the Command Text read with no CommandAck => H3; never read => H2"),
            plan: plan(vec![PlanStep::ReadAgentLogs { agent: name.clone() }]),
        });
    }
    if st(4) == I && p.loss.is_some() {
        if let Some(site) = &p.a.site {
            out.push(NextStep {
                between: vec!["H2", "H4"],
                experiment: format!("dispatch a command to another agent of site {}: acked => not the site (H2 for this agent); lost too => H4", site.name),
                plan: plan(vec![PlanStep::DispatchSite {
                    site: site.name.clone(),
                    except: name.clone(),
                }]),
            });
        }
    }
    // Only while no other command was acked: once one was (the server
    // view's interleave rule), the second command has already been tried.
    if st(3) == I && st(7) == S && p.a.acked.is_empty() {
        out.push(NextStep {
            between: vec!["H3", "H7"],
            experiment: format!("dispatch a second command kind to {name}: acked => the first command's message is at fault (H7); not acked => its command path is broken (H3)"),
            plan: plan(vec![PlanStep::Dispatch {
                agent: name.clone(),
                not: dispatched(log, name),
            }]),
        });
    }
    if st(1) == S && st(5) == S {
        out.push(NextStep {
            between: vec!["H1", "H5"],
            experiment: format!("evict {name} and dispatch one tiny command on its fresh connection: acked => the registry pointed at a dead sender (H5); Pongs still missing => a half-open path (H1)"),
            plan: plan(vec![
                PlanStep::Evict { agent: name.clone() },
                PlanStep::Dispatch {
                    agent: name.clone(),
                    not: Vec::new(),
                },
            ]),
        });
    }
    out
}

/// Commands dispatched to an agent that the server never offered and that
/// were not acked: they wait in the queue. Each gets the state the events
/// give and the evidence of the agent's last connection.
pub(crate) fn queued(log: &Log<'_>, out: &mut [Diagnosis]) {
    let field = |e: &records::frame::EventRecord, k: &str| {
        e.fields.get(k).and_then(Value::as_str).map(str::to_string)
    };
    let offered: BTreeSet<&str> = log
        .frames
        .iter()
        .filter(|(_, r)| r.point == "server" && r.msg.as_deref() == Some("Command"))
        .filter_map(|(_, r)| r.command_id.as_deref())
        .collect();
    // One pass over the events: the commands dispatched per agent that were
    // never offered, and every status event per command, in file order.
    let mut waiting: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    let mut states: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (n, e) in &log.events {
        if e.host == "server" && e.event == "command.dispatched" {
            if let (Some(agent), Some(id)) = (field(e, "agent"), field(e, "command_id")) {
                if !offered.contains(id.as_str()) && log.decided(e.t_us) {
                    waiting.entry(agent).or_default().push((*n, id));
                }
            }
        }
        if e.event == "command.status" {
            if let (Some(id), Some(status)) = (field(e, "command_id"), field(e, "status")) {
                states.entry(id).or_default().push((*n, status));
            }
        }
    }
    if waiting.is_empty() {
        return;
    }
    // The server's command-channel records per agent, for the evidence.
    let mut channel: BTreeMap<&str, Vec<&(usize, &records::frame::FrameRecord)>> = BTreeMap::new();
    for f in &log.frames {
        if f.1.point == "server" && f.1.frame != FrameKind::Quic {
            channel.entry(f.1.peer.as_str()).or_default().push(f);
        }
    }
    let none = Vec::new();
    for d in out.iter_mut() {
        let Some(ids) = waiting.remove(&d.agent) else {
            continue;
        };
        for (n, id) in ids {
            let states = states.get(&id).unwrap_or(&none);
            if states.iter().any(|(_, s)| s == "acked" || s == "completed") {
                continue;
            }
            let status = states
                .last()
                .map_or_else(|| "pending".to_string(), |s| s.1.clone());
            let mut events = vec![n];
            events.extend(states.iter().map(|s| s.0));
            let recs = channel.get(d.agent.as_str()).map_or(&[][..], Vec::as_slice);
            let (records, reason) = last_connection(recs);
            d.queued.push(Queued {
                command_id: id.clone(),
                status,
                records: cite(records),
                events: cite(events),
                reason,
            });
        }
    }
}

/// What the server saw on the agent's last command-channel connection:
/// the last Pong, the unanswered Pings after it, when it went away. `recs`:
/// the server's command-channel records with the agent, in file order.
fn last_connection(recs: &[&(usize, &records::frame::FrameRecord)]) -> (Vec<usize>, String) {
    let Some(last) = recs.last() else {
        return (
            Vec::new(),
            "Never offered: the agent never opened a command channel in this log; the command \
             waits for its first session."
                .to_string(),
        );
    };
    let conn = &last.1.conn;
    let on: Vec<&&(usize, &records::frame::FrameRecord)> =
        recs.iter().filter(|(_, r)| r.conn == conn).collect();
    let pong = on
        .iter()
        .rev()
        .find(|(_, r)| r.frame == FrameKind::Pong && r.dir == Dir::Rx)
        .map(|(n, r)| (*n, r.t_us));
    let unanswered: Vec<usize> = on
        .iter()
        .filter(|(n, r)| {
            r.frame == FrameKind::Ping
                && r.stage == Stage::Written
                && pong.is_none_or(|(pn, _)| *n > pn)
        })
        .map(|(n, _)| *n)
        .collect();
    let mut records = unanswered.clone();
    records.extend(pong.map(|p| p.0));
    records.push(last.0);
    let pong_txt = match pong {
        Some((pn, t)) => format!("its last Pong at record {pn} ({} s)", t / 1_000_000),
        None => "no Pong at all".to_string(),
    };
    (
        records,
        format!(
            "Never offered: the agent's last connection {conn} showed {pong_txt}, then {} \
             Ping(s) written with no Pong before it went away at {} s (record {}); the \
             command waits for the agent's next session.",
            unanswered.len(),
            last.1.t_us / 1_000_000,
            last.0
        ),
    )
}

fn per_agent<'a>(log: &Log<'_>, a: &'a Agent) -> Pre<'a> {
    let (row, per_conn) = agent_row(log, a);
    let conn_rows = per_conn.iter().map(|m| m.as_ref().map(|m| m.row)).collect();
    let affected = !a.unacked.is_empty();
    if !affected {
        let acks = a.ack_records();
        let v = if acks.is_empty() {
            Verdicts::all(
                I,
                &[],
                "Not affected, and no Command to this agent was acked in the log: nothing \
                 exercised the command path.",
            )
        } else {
            let mut v = Verdicts::all(
                R,
                &acks,
                "Not affected: every Command sent to this agent was acked (records cited), so \
                 the server's Text reached it and it processed it.",
            );
            v.set(
                6,
                I,
                Vec::new(),
                "H6 groups affected agents; this agent is not affected.",
            );
            v
        };
        return Pre {
            a,
            row: None,
            conn_rows,
            affected,
            v,
            loss: None,
        };
    }

    let mut v = server_view(a, row.as_ref());
    let mut loss = row
        .as_ref()
        .filter(|m| matches!(m.row, 1 | 5))
        .map(|m| server_loss(a, m));
    if log.view == View::Full {
        full_view(a, row.as_ref(), &mut v, &mut loss);
    }
    Pre {
        a,
        row,
        conn_rows,
        affected,
        v,
        loss,
    }
}

/// The unacked Command Texts the server wrote on connection `c`.
fn unacked_written<'a>(a: &Agent, c: &'a Conn) -> Vec<&'a Cmd> {
    c.cmds
        .iter()
        .filter(|x| x.stage == records::frame::Stage::Written && a.unacked.contains(&x.id))
        .collect()
}

/// Rows 1/5: the unacked Texts written on the row's connection.
fn server_loss(a: &Agent, m: &RowMatch) -> Loss {
    let c = &a.conns[m.conn];
    let written = unacked_written(a, c);
    Loss {
        first_t: written.first().map(|x| x.t).unwrap_or(c.first_t),
        records: written.iter().map(|x| x.n).collect(),
    }
}

/// The verdicts the server point alone supports (outcome table).
fn server_view(a: &Agent, row: Option<&RowMatch>) -> Verdicts {
    let Some(m) = row else {
        return Verdicts::all(
            I,
            &a.unacked_tx(),
            "Affected, but the connection(s) carrying the unacked Commands match no \
             outcome-table row (e.g. no Ping answered and none due yet).",
        );
    };
    let rr = m.records.clone();
    let why = |s: &str| format!("Row {}: {} {s}", m.row, m.reason);
    let mut v = Verdicts::all(I, &rr, &why("This view does not decide it."));
    match m.row {
        1 | 5 => {
            v.set(1, R, rr.clone(), why("The Text write completed on a connection whose Pings get Pongs, so server Text writes do not stall."));
            v.set(
                2,
                S,
                rr.clone(),
                why("The server view cannot tell Text loss on the path (H2) from the agent (H3)."),
            );
            v.set(
                3,
                S,
                rr.clone(),
                why("The server view cannot tell Text loss on the path (H2) from the agent (H3)."),
            );
            v.set(5, R, rr.clone(), why("The connection the Commands were written to answers Pings: it is the agent's live session."));
            if m.row == 5 {
                let mut x = verdict("H4", S, rr.clone(), why("Persistent agent-side or site-path Text loss: a fresh connection does not help."));
                x.events = m.events.clone();
                v.0[3] = x;
            } else {
                v.set(
                    4,
                    I,
                    rr.clone(),
                    why("One connection's loss does not say whether the site's path is at fault."),
                );
            }
            interleave_rule(a, m, &mut v);
        }
        2 => {
            v.set(
                1,
                S,
                rr.clone(),
                why("Text writes stall or fail at the socket while Pings get through."),
            );
            v.set(5, R, rr.clone(), why("The connection the Commands were enqueued on answers Pings: it is the agent's live session."));
            for h in [2, 3] {
                v.set(h, I, rr.clone(), why("The Text never reached the socket, so the path and the agent were not tested."));
            }
        }
        3 => {
            for h in [1, 5] {
                v.set(h, S, rr.clone(), why("The Pings' answers are missing: the \"agent receives Pings\" inference fails (half-open path or connection mapping)."));
            }
        }
        4 => {
            v.set(5, S, rr.clone(), why("The registry sends Commands to a connection that is not the agent's live session."));
            v.set(1, R, rr.clone(), why("No Ping is written on that connection either: not a Text-only stall on a live socket."));
        }
        _ => {}
    }
    v
}

/// Server view, rows 1/5: the agent acked another Command on the same
/// connection after an unacked Command's Text was written there. The Text
/// path and the agent's command handling work; what fails is specific to
/// the unacked Commands: H7 over H2/H3.
fn interleave_rule(a: &Agent, m: &RowMatch, v: &mut Verdicts) {
    let c = &a.conns[m.conn];
    let written = unacked_written(a, c);
    let Some(w0) = written.first() else { return };
    let later_acks: Vec<(usize, &str)> = c
        .acks
        .iter()
        .filter(|(n, _, id)| *n > w0.n && !a.unacked.contains(id))
        .map(|(n, _, id)| (*n, id.as_str()))
        .collect();
    if later_acks.is_empty() {
        v.set(
            7,
            I,
            m.records.clone(),
            "The server view shows no content evidence, and no other Command was acked on this \
             connection after the unacked one.",
        );
        return;
    }
    let mut records: Vec<usize> = written.iter().map(|x| x.n).collect();
    records.extend(later_acks.iter().map(|(n, _)| *n));
    let acked: BTreeSet<&str> = later_acks.iter().map(|(_, id)| *id).collect();
    let reason = format!(
        "After Command {} was written on {} (record {}), the agent acked {} on the same \
         connection (records {}): Text reaches the agent and its command path works, so the \
         loss is specific to the unacked Command(s).",
        w0.id,
        c.id,
        w0.n,
        acked.into_iter().collect::<Vec<_>>().join(", "),
        list(&cite(later_acks.iter().map(|(n, _)| *n).collect())),
    );
    v.set(7, S, records.clone(), reason.clone());
    for h in [2, 3] {
        v.set(
            h,
            I,
            records.clone(),
            format!("{reason} General Text loss (H2) or a broken command path (H3) would not let the later Command through."),
        );
    }
}

/// Full view: what the agent and path points add.
fn full_view(a: &Agent, row: Option<&RowMatch>, v: &mut Verdicts, loss: &mut Option<Loss>) {
    let written = a.unacked_written();
    let server_written = |ids: &BTreeSet<&String>| -> Vec<usize> {
        ids.iter()
            .flat_map(|id| written[*id].iter().copied())
            .collect()
    };
    // What the agent read, by command id. A Text read without a `type`
    // carries no id: it is taken to be the latest unacked Command Text the
    // server wrote before it.
    let mut reads: BTreeMap<&String, Vec<usize>> =
        a.reads.iter().map(|(id, v)| (id, v.clone())).collect();
    let server_tx: Vec<(u64, &String)> = a
        .conns
        .iter()
        .flat_map(|c| &c.cmds)
        .filter(|c| c.stage == records::frame::Stage::Written && a.unacked.contains(&c.id))
        .map(|c| (c.t, &c.id))
        .collect();
    for (n, t) in &a.untyped_reads {
        let latest = server_tx
            .iter()
            .filter(|(w, _)| w <= t)
            .max_by_key(|(w, _)| *w);
        if let Some((_, id)) = latest {
            reads.entry(*id).or_default().push(*n);
        }
    }
    let reached: BTreeSet<&String> = written
        .keys()
        .filter(|id| reads.contains_key(*id))
        .collect();
    let lost: BTreeSet<&String> = if a.has_point {
        written.keys().filter(|id| !reached.contains(id)).collect()
    } else {
        BTreeSet::new()
    };
    let acked_by_agent: BTreeSet<&String> = reached
        .iter()
        .copied()
        .filter(|id| a.ack_writes.contains_key(*id))
        .collect();
    let unprocessed: BTreeSet<&String> = reached.difference(&acked_by_agent).copied().collect();
    let read_recs = |ids: &BTreeSet<&String>| -> Vec<usize> {
        ids.iter()
            .flat_map(|id| reads[*id].iter().copied())
            .collect()
    };
    let dropped: Vec<usize> = a
        .unacked
        .iter()
        .filter_map(|id| a.dropped.get(id))
        .flatten()
        .copied()
        .collect();
    let dropped_ids: BTreeSet<&String> = a
        .unacked
        .iter()
        .filter(|id| a.dropped.contains_key(*id))
        .collect();
    let passed: Vec<usize> = a
        .unacked
        .iter()
        .filter_map(|id| a.passed.get(id))
        .flatten()
        .copied()
        .collect();
    let e7 = !a.bad_reads.is_empty() || !a.bad_events.is_empty();
    let other_acks = !a.acked.is_empty();
    let row3 = row.map(|m| m.row) == Some(3);
    let names = |ids: &BTreeSet<&String>| {
        ids.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };

    // H1: the Text left the server if the agent or a path point saw it.
    if !reached.is_empty() || !dropped.is_empty() || !passed.is_empty() {
        let mut recs = read_recs(&reached);
        recs.extend(&dropped);
        recs.extend(&passed);
        v.set(
            1,
            R,
            recs,
            "The unacked Command Text left the server: the agent or a path point logged it.",
        );
    }

    // H2: Text written by the server that never reached the agent.
    if !dropped.is_empty() {
        let mut recs = dropped.clone();
        recs.extend(server_written(
            &dropped_ids
                .iter()
                .copied()
                .filter(|id| written.contains_key(*id))
                .collect(),
        ));
        v.set(
            2,
            S,
            recs,
            format!(
                "A path point dropped Command Text {} (records {}).",
                names(&dropped_ids),
                list(&cite(dropped.clone()))
            ),
        );
    } else if !lost.is_empty() {
        let recs = server_written(&lost);
        if row3 {
            v.set(
                2,
                I,
                recs,
                format!(
                    "Command Text {} was written by the server and never read by the agent, but \
                     the Pings went unanswered too (row 3): a half-open path, not Text-selective loss.",
                    names(&lost)
                ),
            );
        } else {
            v.set(
                2,
                S,
                recs,
                format!(
                    "Command Text {} was written by the server (records cited) and the agent \
                     never read it within the log.",
                    names(&lost)
                ),
            );
        }
    } else if a.has_point && !written.is_empty() {
        v.set(
            2,
            R,
            read_recs(&reached),
            "The agent read every unacked Command Text the server wrote: nothing was lost on the path.",
        );
    }

    // H3: the agent read the Command and did not ack it.
    if !unprocessed.is_empty() {
        let mut recs = read_recs(&unprocessed);
        recs.extend(server_written(&unprocessed));
        if e7 && other_acks {
            recs.extend(&a.bad_reads);
            v.set(
                3,
                R,
                recs,
                format!(
                    "The agent read {} but could not parse it, while it acks other Commands: its \
                     command path works; the message is at fault (H7).",
                    names(&unprocessed)
                ),
            );
        } else if e7 {
            recs.extend(&a.bad_reads);
            v.set(
                3,
                I,
                recs,
                format!(
                    "The agent could not parse {} (H7 explains the missing ack) and was sent no \
                     other Command to ack: nothing but that missing second Command keeps a \
                     broken command path (H3) alive.",
                    names(&unprocessed)
                ),
            );
        } else {
            v.set(
                3,
                S,
                recs,
                format!(
                    "The agent read Command {} (records cited) and wrote no CommandAck: its \
                     command path is broken.",
                    names(&unprocessed)
                ),
            );
        }
    } else if a.has_point && !written.is_empty() {
        let mut recs = server_written(&lost);
        recs.extend(
            acked_by_agent
                .iter()
                .flat_map(|id| a.ack_writes[*id].iter().copied()),
        );
        let reason = if lost.is_empty() {
            "The agent read and acked every unacked Command (its CommandAck was lost on the way back)."
        } else {
            "The agent never received the unacked Command Text: the failure is before its command path."
        };
        v.set(3, R, recs, reason);
    }

    // H5: the registry's connection delivered Text to the agent.
    if !reached.is_empty() {
        v.set(
            5,
            R,
            read_recs(&reached),
            "The agent read the Command Text on the connection the registry sent it to: the \
             registry points at the live session.",
        );
    } else if !passed.is_empty() {
        v.set(
            5,
            R,
            passed.clone(),
            "A path point passed the Command Text on towards the agent: the connection the \
             registry sent it to is the agent's own, not a dead sender.",
        );
    }

    // H7: agent-side evidence of an unparsable Command.
    if e7 {
        let mut x = verdict(
            "H7",
            S,
            a.bad_reads.clone(),
            if other_acks {
                "The agent could not parse a Command Text (records/events cited) while it acks \
                 other Commands: the message is malformed for this agent."
                    .to_string()
            } else {
                "The agent could not parse a Command Text (records/events cited); it acked no \
                 other Command, so H3 stays inconclusive until a second command is tried."
                    .to_string()
            },
        );
        x.events = a.bad_events.clone();
        v.0[6] = x;
    } else if !unprocessed.is_empty() {
        v.set(
            7,
            R,
            read_recs(&unprocessed),
            "The agent read the Command with its type and id and logged no bad_message: it parsed.",
        );
    } else if a.has_point {
        v.set(
            7,
            I,
            server_written(&lost),
            "The agent never read the unacked Command Text: its content was not tested.",
        );
    }

    // H4 input: Text loss as the full view sees it.
    if a.has_point || !dropped.is_empty() {
        let mut ids: BTreeSet<&String> = lost.clone();
        ids.extend(dropped_ids.iter().copied());
        *loss = if ids.is_empty() {
            None
        } else {
            let recs = server_written(
                &ids.iter()
                    .copied()
                    .filter(|id| written.contains_key(*id))
                    .collect(),
            );
            let first_t = a
                .conns
                .iter()
                .flat_map(|c| &c.cmds)
                .filter(|c| ids.contains(&c.id))
                .map(|c| c.t)
                .min()
                .unwrap_or(0);
            Some(Loss {
                first_t,
                records: [recs, dropped.clone()].concat(),
            })
        };
        if loss.is_none() && !written.is_empty() {
            v.set(
                4,
                R,
                read_recs(&reached),
                "The agent read the unacked Command Text: the site's path delivered it.",
            );
        }
    }
}

/// H4: the same Text loss on two agents of one site supports it; an agent
/// of the site that gets its Commands acked after the loss began refutes it.
fn site_rule(pre: &mut [Pre<'_>]) {
    struct Facts {
        name: String,
        site: Option<(String, Vec<usize>, Vec<usize>)>,
        affected: bool,
        loss: Option<(u64, Vec<usize>)>,
        acks: Vec<(usize, u64)>,
    }
    let facts: Vec<Facts> = pre
        .iter()
        .map(|p| Facts {
            name: p.a.name.clone(),
            site: p
                .a
                .site
                .as_ref()
                .map(|s| (s.name.clone(), s.events.clone(), s.records.clone())),
            affected: p.affected,
            loss: p.loss.as_ref().map(|l| (l.first_t, l.records.clone())),
            acks: p.a.acked.values().flatten().copied().collect(),
        })
        .collect();
    for (i, p) in pre.iter_mut().enumerate() {
        let Some((first_t, lost)) = &facts[i].loss else {
            continue;
        };
        let base = p.v.get(4).clone();
        let Some((site, site_events, site_records)) = &facts[i].site else {
            p.v.set(
                4,
                base.status,
                base.records,
                format!(
                    "{} The agent's site is unknown (no `site` event field, no shared path point).",
                    base.reason
                ),
            );
            p.v.0[3].events = base.events;
            continue;
        };
        let same: Vec<usize> = (0..facts.len())
            .filter(|&j| j != i && facts[j].site.as_ref().map(|s| &s.0) == Some(site))
            .collect();
        let fine: Vec<(usize, usize)> = same
            .iter()
            .filter(|&&j| !facts[j].affected)
            .filter_map(|&j| {
                facts[j]
                    .acks
                    .iter()
                    .filter(|(_, t)| t >= first_t)
                    .map(|(n, _)| (j, *n))
                    .min_by_key(|(_, n)| *n)
            })
            .collect();
        let also: Vec<usize> = same
            .iter()
            .copied()
            .filter(|&j| facts[j].affected && facts[j].loss.is_some())
            .collect();
        let mut events = site_events.clone();
        let mut records = lost.clone();
        records.extend(site_records);
        let (status, reason) = if !fine.is_empty() {
            records.extend(fine.iter().map(|(_, n)| *n));
            for (j, _) in &fine {
                events.extend(&facts[*j].site.as_ref().expect("same site").1);
            }
            let who: Vec<&str> = fine.iter().map(|(j, _)| facts[*j].name.as_str()).collect();
            (
                R,
                format!(
                    "Another agent of site {site} ({}) got Commands acked after this agent's Text \
                     loss began: the site path carries server Text.",
                    who.join(", ")
                ),
            )
        } else if !also.is_empty() {
            for &j in &also {
                records.extend(&facts[j].loss.as_ref().expect("filtered").1);
                events.extend(&facts[j].site.as_ref().expect("same site").1);
                records.extend(&facts[j].site.as_ref().expect("same site").2);
            }
            let who: Vec<&str> = also.iter().map(|&j| facts[j].name.as_str()).collect();
            (
                S,
                format!(
                    "The same Text loss hits {} other agent(s) of site {site} ({}).",
                    also.len(),
                    who.join(", ")
                ),
            )
        } else {
            (
                base.status,
                format!(
                    "{} No other agent of site {site} was exercised after the loss began.",
                    base.reason
                ),
            )
        };
        let mut x = verdict("H4", status, records, reason);
        events.extend(base.events.iter().filter(|_| status == S));
        events.sort_unstable();
        events.dedup();
        x.events = events;
        p.v.0[3] = x;
    }
}

/// H6 across the fleet: affected agents in different rows (5 counts as 1)
/// or with different supported sets (H4, H6 aside) support it.
fn fleet_rule(pre: &mut [Pre<'_>]) {
    let keyed: Vec<(usize, Option<u8>, BTreeSet<&'static str>)> = pre
        .iter()
        .enumerate()
        .filter(|(_, p)| p.affected)
        .map(|(i, p)| {
            let mut s = p.v.supported();
            s.remove("H4");
            s.remove("H6");
            (
                i,
                p.row.as_ref().map(|m| if m.row == 5 { 1 } else { m.row }),
                s,
            )
        })
        .collect();
    let summary: Vec<String> = keyed
        .iter()
        .map(|(i, row, s)| {
            format!(
                "{}: row {} {{{}}}",
                pre[*i].a.name,
                row.map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
                s.iter().copied().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    let records: Vec<usize> = keyed
        .iter()
        .filter_map(|(i, _, _)| {
            pre[*i]
                .row
                .as_ref()
                .and_then(|m| m.records.first().copied())
        })
        .collect();
    let known: BTreeSet<(u8, &BTreeSet<&'static str>)> = keyed
        .iter()
        .filter_map(|(_, r, s)| r.map(|r| (r, s)))
        .collect();
    let (status, reason) = if keyed.len() < 2 {
        (
            I,
            "Only one affected agent: there is nothing to group.".to_string(),
        )
    } else if known.len() >= 2 {
        (
            S,
            format!(
                "The affected agents show different failure modes ({}).",
                summary.join("; ")
            ),
        )
    } else if keyed.iter().any(|(_, r, _)| r.is_none()) {
        (
            I,
            format!(
                "Some affected agents match no row, so their failure modes cannot be compared ({}).",
                summary.join("; ")
            ),
        )
    } else {
        (
            R,
            format!(
                "All {} affected agents show the same row and supported set ({}).",
                keyed.len(),
                summary.join("; ")
            ),
        )
    };
    for (i, _, _) in &keyed {
        pre[*i].v.set(6, status, records.clone(), reason.clone());
    }
}
