//! The sequence diagrams of report.html: inline SVG, no script, nothing
//! fetched. One diagram per agent worth a look (write errors, drops,
//! commands, Pings without Pongs first), with one lane per observation
//! point that saw the agent's traffic: the agent on the left, the path
//! points in the middle, the server on the right. Time runs down the page,
//! one row per record (the simulated time is written at the left); each
//! frame is an arrow from the lane that sent it towards the lane it goes
//! to, labelled with its type, `command_id` and `ping_seq`. Write errors and
//! drops are red and crossed, Pings no Pong answered are orange, routine
//! traffic (answered Pings, Pongs, Heartbeats, QUIC heartbeats) folds into
//! one grey row with a count, and each fault's window is shaded.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use format::scenario::Scenario;
use records::frame::{Dir, FrameKind, FrameRecord, Stage};

use crate::junit::escape;
use crate::style;

/// The most agents that get a diagram.
pub const MAX_DIAGRAMS: usize = 4;
/// The most rows one diagram has; quiet stretches are elided first.
pub const MAX_ROWS: usize = 90;

const ROW_H: u32 = 18;
const LANE_W: u32 = 260;
const LEFT: u32 = 150;
const TOP: u32 = 44;

/// One row of a diagram.
#[derive(Debug, Clone, PartialEq)]
enum Row<'a> {
    Record {
        r: &'a FrameRecord,
        unanswered: bool,
    },
    Fold(Vec<&'a FrameRecord>),
    Elided(usize),
}

impl Row<'_> {
    fn t_us(&self) -> Option<u64> {
        match self {
            Row::Record { r, .. } => Some(r.t_us),
            Row::Fold(rs) => rs.first().map(|r| r.t_us),
            Row::Elided(_) => None,
        }
    }
    fn notable(&self) -> bool {
        match self {
            Row::Record { r, unanswered } => *unanswered || is_notable(r),
            _ => false,
        }
    }
}

/// Whether the record is worth a row of its own even in a long log: a
/// command, a write error, a drop, or a close or handshake with an error.
pub fn is_notable(r: &FrameRecord) -> bool {
    r.command_id.is_some()
        || matches!(r.stage, Stage::WriteError | Stage::Dropped)
        || (r.error.is_some() && !is_normal_close(r))
}

/// A close that went as it should: a WebSocket Close without an error, or
/// a QUIC close with application code 0 (`probe done (code 0)`).
pub fn is_normal_close(r: &FrameRecord) -> bool {
    let closing = r.frame == FrameKind::Close || r.kind.as_deref() == Some("closed");
    closing
        && r.error
            .as_deref()
            .is_none_or(|e| e.trim_end().ends_with("(code 0)"))
}

/// The agent a record belongs to: the point's own agent, or the peer.
fn agent_of(r: &FrameRecord) -> &str {
    r.point.strip_prefix("agent:").unwrap_or(&r.peer)
}

/// `(conn, ping_seq)` of every Ping written at the server that no Pong read
/// on the same connection answered.
fn unanswered_pings(records: &[&FrameRecord]) -> BTreeSet<(records::CompactString, u64)> {
    let mut pings = BTreeSet::new();
    let mut pongs = BTreeSet::new();
    for r in records.iter().filter(|r| r.point == "server") {
        let Some(seq) = r.ping_seq else { continue };
        match (r.frame, r.dir, r.stage) {
            (FrameKind::Ping, Dir::Tx, Stage::Written) => {
                pings.insert((r.conn.clone(), seq));
            }
            (FrameKind::Pong, Dir::Rx, Stage::Read) => {
                pongs.insert((r.conn.clone(), seq));
            }
            _ => {}
        }
    }
    pings.difference(&pongs).cloned().collect()
}

fn is_routine(r: &FrameRecord) -> bool {
    let ok = matches!(r.stage, Stage::Written | Stage::Read | Stage::Passed);
    ok && match r.frame {
        FrameKind::Ping | FrameKind::Pong => true,
        FrameKind::Text => r.msg.as_deref() == Some("Heartbeat"),
        FrameKind::Quic => r.kind.as_deref() == Some("heartbeat"),
        _ => false,
    }
}

/// The commands the server sent (or tried to) that no `CommandAck` read at
/// the server answered.
fn unacked_commands<'a>(records: &[&'a FrameRecord]) -> BTreeSet<&'a str> {
    let mut sent = BTreeSet::new();
    let mut acked = BTreeSet::new();
    for r in records.iter().filter(|r| r.point == "server") {
        let Some(id) = r.command_id.as_deref() else {
            continue;
        };
        match (r.dir, r.msg.as_deref()) {
            (Dir::Tx, Some("Command")) => {
                sent.insert(id);
            }
            (Dir::Rx, Some("CommandAck")) => {
                acked.insert(id);
            }
            _ => {}
        }
    }
    sent.difference(&acked).copied().collect()
}

/// How much is wrong with an agent's traffic, for ranking: write errors and
/// drops weigh most, then failed closes, unacked commands and Pings without
/// Pongs. A healthy agent scores 0.
fn trouble(records: &[&FrameRecord]) -> u64 {
    let mut score =
        100 * unanswered_pings(records).len() as u64 + 300 * unacked_commands(records).len() as u64;
    for r in records {
        score += match r.stage {
            Stage::WriteError | Stage::Dropped => 1_000,
            _ if r.error.is_some() && !is_normal_close(r) => 500,
            _ => 0,
        };
    }
    score
}

/// The agents that get a diagram, most trouble first (ties by name): those
/// with any trouble, at most [`MAX_DIAGRAMS`]; a healthy run shows its
/// first agent.
fn chosen_agents(frames: &[FrameRecord]) -> Vec<(&str, Vec<&FrameRecord>)> {
    let mut by_agent: BTreeMap<&str, Vec<&FrameRecord>> = BTreeMap::new();
    for r in frames {
        let a = agent_of(r);
        if a.is_empty() || a == "server" {
            continue;
        }
        by_agent.entry(a).or_default().push(r);
    }
    let mut ranked: Vec<(u64, &str, Vec<&FrameRecord>)> = by_agent
        .into_iter()
        .map(|(a, rs)| (trouble(&rs), a, rs))
        .collect();
    ranked.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)));
    let troubled = ranked.iter().filter(|(s, _, _)| *s > 0).count().max(1);
    ranked
        .into_iter()
        .take(troubled.min(MAX_DIAGRAMS))
        .map(|(_, a, rs)| (a, rs))
        .collect()
}

/// What matches an `enqueued` record to its write: point, conn, message,
/// `ping_seq`, `command_id`.
type WriteKey<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<u64>,
    Option<&'a str>,
);

/// The rows of one agent's diagram: records in time order (`enqueued`
/// records left out when a write of the same frame follows), routine runs
/// folded, quiet stretches elided to fit [`MAX_ROWS`].
fn rows<'a>(records: &[&'a FrameRecord]) -> Vec<Row<'a>> {
    let unanswered = unanswered_pings(records);
    let mut sorted: Vec<&FrameRecord> = records.to_vec();
    sorted.sort_by_key(|r| r.t_us); // stable: log order within a tick
    let written: BTreeSet<WriteKey> = sorted
        .iter()
        .filter(|r| matches!(r.stage, Stage::Written | Stage::WriteError))
        .map(|r| {
            (
                r.point.as_str(),
                r.conn.as_str(),
                r.msg.as_deref(),
                r.ping_seq,
                r.command_id.as_deref(),
            )
        })
        .collect();
    let mut out: Vec<Row> = Vec::new();
    let mut run: Vec<&FrameRecord> = Vec::new();
    let flush = |run: &mut Vec<&'a FrameRecord>, out: &mut Vec<Row<'a>>| {
        if run.len() > 2 {
            out.push(Row::Fold(std::mem::take(run)));
        } else {
            out.extend(run.drain(..).map(|r| Row::Record {
                r,
                unanswered: false,
            }));
        }
    };
    for r in sorted {
        if r.stage == Stage::Enqueued
            && written.contains(&(
                r.point.as_str(),
                r.conn.as_str(),
                r.msg.as_deref(),
                r.ping_seq,
                r.command_id.as_deref(),
            ))
        {
            continue;
        }
        let no_pong = r.frame == FrameKind::Ping
            && r.point == "server"
            && r.ping_seq
                .is_some_and(|s| unanswered.contains(&(r.conn.clone(), s)));
        if is_routine(r) && !no_pong {
            run.push(r);
            continue;
        }
        flush(&mut run, &mut out);
        out.push(Row::Record {
            r,
            unanswered: no_pong,
        });
    }
    flush(&mut run, &mut out);
    elide(out)
}

/// Elides stretches of rows that are not notable, longest first, until the
/// diagram fits; notable rows and one row of context either side stay.
fn elide(rows: Vec<Row<'_>>) -> Vec<Row<'_>> {
    if rows.len() <= MAX_ROWS {
        return rows;
    }
    let keep: Vec<bool> = (0..rows.len())
        .map(|i| {
            let near = |j: usize| rows.get(j).is_some_and(Row::notable);
            i < 3 || near(i) || near(i + 1) || (i > 0 && near(i - 1))
        })
        .collect();
    let mut out = Vec::new();
    let mut skipped = 0;
    for (row, k) in rows.into_iter().zip(keep) {
        if k {
            if skipped > 0 {
                out.push(Row::Elided(skipped));
                skipped = 0;
            }
            out.push(row);
        } else {
            skipped += match &row {
                Row::Fold(rs) => rs.len(),
                Row::Elided(n) => *n,
                Row::Record { .. } => 1,
            };
        }
    }
    if skipped > 0 {
        out.push(Row::Elided(skipped));
    }
    if out.len() > MAX_ROWS {
        let rest = out.len() - (MAX_ROWS - 1);
        out.truncate(MAX_ROWS - 1);
        out.push(Row::Elided(rest));
    }
    out
}

/// The lanes: the agent, the path points that saw its traffic, the server.
fn lanes(agent: &str, records: &[&FrameRecord]) -> Vec<String> {
    let mut lanes = vec![format!("agent:{agent}")];
    let paths: BTreeSet<&str> = records
        .iter()
        .map(|r| r.point.as_str())
        .filter(|p| p.starts_with("path:"))
        .collect();
    lanes.extend(paths.into_iter().map(String::from));
    lanes.push("server".into());
    lanes
}

/// The label of a frame: type (message), `command_id`, `seq`, event kind.
fn label(r: &FrameRecord) -> String {
    let mut parts: Vec<String> = Vec::new();
    match (r.frame, &r.msg, &r.kind) {
        (FrameKind::Text, Some(m), _) => parts.push(m.to_string()),
        (FrameKind::Quic | FrameKind::Tls, m, Some(k)) => {
            let f = if r.frame == FrameKind::Quic {
                "quic"
            } else {
                "tls"
            };
            parts.push(match m {
                Some(m) => format!("{f} {k} ({m})"),
                None => format!("{f} {k}"),
            });
        }
        (f, _, _) => parts.push(format!("{f:?}").to_lowercase()),
    }
    if let Some(c) = &r.command_id {
        parts.push(c.to_string());
    }
    if let Some(s) = r.ping_seq {
        parts.push(format!("seq {s}"));
    }
    match r.stage {
        Stage::WriteError => parts.push("WRITE ERROR".into()),
        Stage::Dropped => parts.push("DROPPED".into()),
        Stage::Enqueued => parts.push("enqueued, never written".into()),
        _ => {}
    }
    if let Some(e) = &r.error {
        if is_normal_close(r) {
            parts.push(format!("({e})"));
        } else {
            parts.push(format!("error: {e}"));
        }
    }
    let mut s = parts.join(" ");
    if s.chars().count() > 60 {
        s = s.chars().take(57).collect::<String>() + "...";
    }
    s
}

/// The windows of the faults that can touch `agent` (those that name no
/// agent, and those that name it) overlapping `[first, last]` µs.
fn windows(sc: &Scenario, agent: &str, first: u64, last: u64) -> Vec<(String, u64, u64)> {
    sc.faults
        .iter()
        .filter(|f| {
            let fields = serde_json::to_value(&f.kind).unwrap_or_default();
            fields
                .get("agent")
                .and_then(|a| a.as_str())
                .is_none_or(|a| a == agent)
        })
        .map(|f| {
            let from = f.from.map_or(0, |d| d.as_micros() as u64);
            let until = f
                .until
                .unwrap_or(Duration::from_micros(u64::MAX))
                .as_micros()
                .min(u128::from(u64::MAX)) as u64;
            (f.kind.name().to_string(), from, until)
        })
        .filter(|(_, from, until)| *from <= last && *until > first)
        .collect()
}

/// Every diagram of the run, each under an `<h3>`; a line when there are no frames.
pub fn render(sc: &Scenario, frames: &[FrameRecord]) -> String {
    let chosen = chosen_agents(frames);
    if chosen.is_empty() {
        return "<p>no frames to draw</p>\n".into();
    }
    let mut h = String::new();
    for (agent, records) in &chosen {
        let unanswered = unanswered_pings(records).len();
        let errors = records
            .iter()
            .filter(|r| matches!(r.stage, Stage::WriteError))
            .count();
        let drops = records
            .iter()
            .filter(|r| matches!(r.stage, Stage::Dropped))
            .count();
        let unacked: Vec<&str> = unacked_commands(records).into_iter().collect();
        let unacked = if unacked.is_empty() {
            "none".to_string()
        } else {
            unacked.join(" ")
        };
        let _ = writeln!(
            h,
            "<h3>{}: {} write errors, {} drops, {} Pings without a Pong, unacked commands: {}</h3>",
            escape(agent),
            errors,
            drops,
            unanswered,
            escape(&unacked)
        );
        h.push_str(&diagram(sc, agent, records));
    }
    h
}

/// One agent's diagram.
fn diagram(sc: &Scenario, agent: &str, records: &[&FrameRecord]) -> String {
    let lanes = lanes(agent, records);
    let rows = rows(records);
    let lane_x = |i: usize| LEFT + LANE_W / 2 + i as u32 * LANE_W;
    let width = LEFT + LANE_W * lanes.len() as u32 + 20;
    let height = TOP + ROW_H * (rows.len() as u32 + 1) + 10;
    let y_of = |n: usize| TOP + ROW_H * (n as u32 + 1);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"seq\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\" role=\"img\" aria-label=\"sequence diagram of {}\">",
        escape(agent)
    );
    s.push_str("<defs><marker id=\"a\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0L10,5L0,10z\" fill=\"context-stroke\"/></marker></defs>\n");
    // Fault windows: a shaded band over the rows whose time is inside.
    let (first, last) = (
        rows.iter().find_map(Row::t_us).unwrap_or(0),
        rows.iter().rev().find_map(Row::t_us).unwrap_or(0),
    );
    for (k, (name, from, until)) in windows(sc, agent, first, last).iter().enumerate() {
        let inside: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.t_us().is_some_and(|t| t >= *from && t < *until))
            .map(|(n, _)| n)
            .collect();
        let (Some(&a), Some(&b)) = (inside.first(), inside.last()) else {
            continue;
        };
        let (y0, y1) = (y_of(a) - ROW_H / 2 - 2, y_of(b) + ROW_H / 2);
        let _ = writeln!(
            s,
            "<rect class=\"fault\" x=\"{}\" y=\"{y0}\" width=\"{}\" height=\"{}\" fill=\"#fff1c9\" stroke=\"#e0b84c\" stroke-dasharray=\"4 3\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#8a6a00\">fault: {} ({} to {})</text>",
            LEFT - 4 + k as u32 * 6,
            width - LEFT - 10,
            y1 - y0,
            width - 16,
            y0 + 11,
            escape(name),
            style::sim_time(*from),
            if *until == u64::MAX {
                "end".to_string()
            } else {
                style::sim_time(*until)
            }
        );
    }
    // Lanes.
    for (i, lane) in lanes.iter().enumerate() {
        let x = lane_x(i);
        let _ = writeln!(
            s,
            "<text x=\"{x}\" y=\"18\" text-anchor=\"middle\" font-weight=\"bold\">{}</text><line x1=\"{x}\" y1=\"26\" x2=\"{x}\" y2=\"{}\" stroke=\"#888\"/>",
            escape(lane),
            height - 6
        );
    }
    let lane_of = |point: &str| lanes.iter().position(|l| l == point);
    for (n, row) in rows.iter().enumerate() {
        let y = y_of(n);
        match row {
            Row::Elided(k) => {
                let _ = writeln!(
                    s,
                    "<text x=\"{}\" y=\"{y}\" fill=\"#666\" font-style=\"italic\">... {} quiet records elided (all in frames.jsonl)</text>",
                    LEFT + 8,
                    k
                );
            }
            Row::Fold(rs) => {
                let _ = writeln!(
                    s,
                    "<text x=\"6\" y=\"{y}\" fill=\"#666\">{}</text><rect class=\"fold\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#eee\" rx=\"3\"/><text x=\"{}\" y=\"{y}\" fill=\"#555\">{} routine to {}: {}</text>",
                    style::sim_time(rs[0].t_us),
                    LEFT + 4,
                    y - ROW_H + 5,
                    LANE_W * lanes.len() as u32 - 8,
                    ROW_H - 2,
                    LEFT + 10,
                    rs.len(),
                    style::sim_time(rs[rs.len() - 1].t_us),
                    escape(&crate::timeline::tally_of(rs))
                );
            }
            Row::Record { r, unanswered } => {
                let Some(here) = lane_of(&r.point) else {
                    continue;
                };
                // The peer's side: the agent looks right, everyone else left.
                let towards: isize = if r.point.starts_with("agent:") { 1 } else { -1 };
                let other = (here as isize + towards).clamp(0, lanes.len() as isize - 1) as usize;
                let (from, to) = match r.dir {
                    Dir::Tx => (here, other),
                    Dir::Rx => (other, here),
                };
                let (colour, class) = match r.stage {
                    Stage::WriteError => ("#c62828", "write-error"),
                    Stage::Dropped => ("#c62828", "dropped"),
                    Stage::Enqueued => ("#c62828", "never-written"),
                    _ if *unanswered => ("#e65100", "no-pong"),
                    _ if r.error.is_some() && !is_normal_close(r) => ("#c62828", "error"),
                    _ if r.command_id.is_some() => ("#1565c0", "command"),
                    _ => ("#333", "frame"),
                };
                let _ = write!(
                    s,
                    "<g class=\"{class}\"><text x=\"6\" y=\"{y}\" fill=\"#666\">{}</text>",
                    style::sim_time(r.t_us)
                );
                let (x1, x2) = (lane_x(from), lane_x(to));
                if r.stage == Stage::Event || from == to {
                    let _ = write!(
                        s,
                        "<circle cx=\"{x1}\" cy=\"{}\" r=\"4\" fill=\"{colour}\"/><text x=\"{}\" y=\"{y}\" fill=\"{colour}\">{}</text>",
                        y - 4,
                        x1 + 8,
                        escape(&label(r))
                    );
                } else {
                    let dash = if r.stage == Stage::Enqueued {
                        " stroke-dasharray=\"3 3\""
                    } else {
                        ""
                    };
                    let width = if class == "frame" { 1 } else { 2 };
                    let _ = write!(
                        s,
                        "<line x1=\"{x1}\" y1=\"{y0}\" x2=\"{x2}\" y2=\"{y0}\" stroke=\"{colour}\" stroke-width=\"{width}\"{dash} marker-end=\"url(#a)\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
                        (x1 + x2) / 2,
                        y - 7,
                        escape(&label(r)),
                        y0 = y - 3,
                    );
                    if matches!(r.stage, Stage::WriteError | Stage::Dropped) {
                        let cx = (x1 + x2) / 2 + if x2 > x1 { 50 } else { 0 } - 25;
                        let _ = write!(
                            s,
                            "<path d=\"M{},{}l10,10M{},{}l-10,10\" stroke=\"{colour}\" stroke-width=\"2.5\"/>",
                            cx - 5,
                            y - 8,
                            cx + 5,
                            y - 8
                        );
                    }
                }
                s.push_str("</g>\n");
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        t_s: u64,
        point: &str,
        peer: &str,
        dir: Dir,
        stage: Stage,
        frame: FrameKind,
    ) -> FrameRecord {
        FrameRecord::new(t_s * 1_000_000, point, "c1", peer, dir, stage, frame)
    }

    fn scenario() -> Scenario {
        format::parse_scenario(
            "t.toml",
            "name = \"t\"\nsummary = \"s\"\nincident = \"i\"\nseed = 1\nduration = \"60s\"\n[[agent]]\nname = \"a1\"\nsite = \"x\"\n",
        )
        .unwrap()
    }

    #[test]
    fn normal_closes_are_not_errors() {
        let mut close = rec(1, "server", "a1", Dir::Rx, Stage::Event, FrameKind::Quic);
        close.kind = Some("closed".into());
        close.error = Some("closed by peer: probe done (code 0)".into());
        assert!(is_normal_close(&close) && !is_notable(&close));
        close.error = Some("timed out".into());
        assert!(!is_normal_close(&close) && is_notable(&close));
        let ws_close = rec(1, "server", "a1", Dir::Rx, Stage::Read, FrameKind::Close);
        assert!(is_normal_close(&ws_close) && !is_notable(&ws_close));
    }

    #[test]
    fn the_diagram_marks_drops_write_errors_and_unanswered_pings_and_folds_routine() {
        let mut frames = Vec::new();
        for seq in 1..=5 {
            frames.push(FrameRecord {
                ping_seq: Some(seq),
                ..rec(
                    seq,
                    "server",
                    "a1",
                    Dir::Tx,
                    Stage::Written,
                    FrameKind::Ping,
                )
            });
            frames.push(FrameRecord {
                ping_seq: Some(seq),
                ..rec(seq, "server", "a1", Dir::Rx, Stage::Read, FrameKind::Pong)
            });
        }
        frames.push(FrameRecord {
            ping_seq: Some(6),
            ..rec(6, "server", "a1", Dir::Tx, Stage::Written, FrameKind::Ping)
        });
        frames.push(FrameRecord {
            msg: Some("Command".into()),
            command_id: Some("cmd-0007".into()),
            error: Some("write did not complete within 10000 ms".into()),
            ..rec(
                7,
                "server",
                "a1",
                Dir::Tx,
                Stage::WriteError,
                FrameKind::Text,
            )
        });
        frames.push(FrameRecord {
            msg: Some("Command".into()),
            command_id: Some("cmd-0008".into()),
            ..rec(
                8,
                "path:proxy",
                "a1",
                Dir::Tx,
                Stage::Dropped,
                FrameKind::Text,
            )
        });
        // A healthy agent: not drawn while another has trouble.
        frames.push(rec(
            1,
            "agent:a2",
            "server",
            Dir::Tx,
            Stage::Written,
            FrameKind::Ping,
        ));
        let svg = render(&scenario(), &frames);
        assert_eq!(svg.matches("<svg ").count(), 1, "one troubled agent: {svg}");
        assert!(svg.contains(
            "<h3>a1: 1 write errors, 1 drops, 1 Pings without a Pong, unacked commands: cmd-0007</h3>"
        ), "{svg}");
        for lane in [">agent:a1<", ">path:proxy<", ">server<"] {
            assert!(svg.contains(lane), "{lane}");
        }
        assert!(
            svg.contains("10 routine to 0:05.000: ping x5, pong x5 (seq 1..5)"),
            "{svg}"
        );
        assert!(
            svg.contains("<g class=\"no-pong\">") && svg.contains("ping seq 6"),
            "{svg}"
        );
        assert!(
            svg.contains("<g class=\"write-error\">")
                && svg.contains("Command cmd-0007 WRITE ERROR")
        );
        assert!(svg.contains("<g class=\"dropped\">") && svg.contains("Command cmd-0008 DROPPED"));
        assert!(
            !svg.contains("<script") && !svg.contains("href"),
            "nothing runs or is fetched"
        );
    }

    #[test]
    fn long_logs_keep_every_notable_row() {
        let mut frames = Vec::new();
        for i in 0..400 {
            frames.push(FrameRecord {
                msg: Some("ConfigUpdate".into()),
                ..rec(i, "server", "a1", Dir::Tx, Stage::Written, FrameKind::Text)
            });
        }
        frames.push(FrameRecord {
            msg: Some("Command".into()),
            command_id: Some("cmd-0400".into()),
            ..rec(
                200,
                "server",
                "a1",
                Dir::Tx,
                Stage::WriteError,
                FrameKind::Text,
            )
        });
        let refs: Vec<&FrameRecord> = frames.iter().collect();
        let rows = rows(&refs);
        assert!(rows.len() <= MAX_ROWS);
        assert!(rows.iter().any(
            |r| matches!(r, Row::Record { r, .. } if r.command_id.as_deref() == Some("cmd-0400"))
        ));
        assert!(rows.iter().any(|r| matches!(r, Row::Elided(_))));
    }
}
