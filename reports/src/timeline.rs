//! The per-connection timeline of the frames that matter, at one
//! observation point (the server by default: what a field engineer has).
//!
//! What is shown, per connection, in log order:
//! - WebSocket frames written and read (`written`, `read`), with the
//!   message type, `command_id` and `ping_seq`;
//! - write errors, dropped and passed frames, and frames that were
//!   `enqueued` but never written (a stalled socket);
//! - QUIC and TLS events (handshakes, hello/welcome, close) with their error.
//!
//! `enqueued` records that were later written are left out (the `written`
//! row says it). Runs of routine frames (Pings, Pongs, Heartbeats, QUIC
//! heartbeats) longer than [`TimelineOptions::fold_min`] fold into one row
//! that counts them and gives their `ping_seq` range. A connection with more
//! than [`TimelineOptions::max_rows_per_conn`] rows shows its first and last
//! rows and says how many frames were elided between them; at most
//! [`TimelineOptions::max_conns`] connections are shown, those with
//! commands or errors first. frames.jsonl always has everything.

use std::collections::BTreeMap;

use comfy_table::{ColumnConstraint, Table, Width};
use records::frame::{Dir, FrameKind, FrameRecord, Stage};

use crate::style::{self, count};

/// The widest the `what` column gets; longer text (folded rows) wraps.
pub const WHAT_WIDTH: u16 = 72;

/// How much of the frame log the timeline shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineOptions {
    /// The observation point (`server`, `agent:<name>`, `path:<name>`).
    pub point: String,
    /// The most rows one connection gets, the elision row included.
    pub max_rows_per_conn: usize,
    /// The most connections shown.
    pub max_conns: usize,
    /// Runs of routine frames longer than this fold into one row.
    pub fold_min: usize,
}

impl Default for TimelineOptions {
    /// The server's point, 16 rows per connection, 24 connections, runs of
    /// more than 2 routine frames folded (one Ping, Heartbeat, Pong cycle
    /// is a row).
    fn default() -> Self {
        TimelineOptions {
            point: "server".into(),
            max_rows_per_conn: 16,
            max_conns: 24,
            fold_min: 2,
        }
    }
}

/// One row of a connection's timeline.
#[derive(Debug, Clone, PartialEq)]
enum Row<'a> {
    /// A frame record; `never_written` marks an `enqueued` with no write after it.
    Frame {
        record: &'a FrameRecord,
        never_written: bool,
    },
    /// A run of routine frames.
    Fold(Vec<&'a FrameRecord>),
    /// Rows left out to keep the connection short, and how many frames they held.
    Elided { frames: usize },
}

impl Row<'_> {
    fn frames(&self) -> usize {
        match self {
            Row::Frame { .. } => 1,
            Row::Fold(rs) => rs.len(),
            Row::Elided { frames } => *frames,
        }
    }
}

/// The timeline as a table under nothing (the caller writes the heading),
/// or one line saying the point saw no frames.
pub fn render(frames: &[FrameRecord], opts: &TimelineOptions) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut by_conn: BTreeMap<&str, Vec<&FrameRecord>> = BTreeMap::new();
    for r in frames.iter().filter(|r| r.point == opts.point) {
        by_conn
            .entry(r.conn.as_str())
            .or_insert_with(|| {
                order.push(r.conn.as_str());
                Vec::new()
            })
            .push(r);
    }
    if order.is_empty() {
        return format!("no frames at point `{}`\n", opts.point);
    }
    // Connections with write errors, drops or failed closes first when not
    // all fit, then those with commands, then the rest; shown in the order
    // they first appeared.
    let mut chosen: Vec<usize> = (0..order.len()).collect();
    if order.len() > opts.max_conns {
        chosen.sort_by_key(|&i| (rank(&by_conn[order[i]]), i));
        chosen.truncate(opts.max_conns);
        chosen.sort_unstable();
    }
    let mut t: Table = style::table();
    t.set_header(vec!["conn", "peer", "t", "dir", "frame", "what", "stage"]);
    for &i in &chosen {
        let records = &by_conn[order[i]];
        let rows = cap(fold(select(records), opts.fold_min), opts.max_rows_per_conn);
        for (n, row) in rows.iter().enumerate() {
            let (conn, peer) = if n == 0 {
                (records[0].conn.to_string(), records[0].peer.to_string())
            } else {
                (String::new(), String::new())
            };
            t.add_row(cells(conn, peer, row));
        }
    }
    if let Some(c) = t.column_mut(5) {
        c.set_constraint(ColumnConstraint::UpperBoundary(Width::Fixed(WHAT_WIDTH)));
    }
    let mut out = format!("{t}\n");
    if chosen.len() < order.len() {
        out.push_str(&format!(
            "{} of {} at `{}` not shown (those with errors, drops or commands go first)\n",
            count(order.len() - chosen.len(), "connection", "connections"),
            order.len(),
            opts.point
        ));
    }
    out
}

/// How much a connection deserves its place in a capped timeline: 0 for
/// write errors, drops, frames never written and closes or handshakes with
/// an error; 1 for commands; 2 for the rest. A normal close (a QUIC
/// probe's `code 0`, a WebSocket Close) is not an error.
fn rank(records: &[&FrameRecord]) -> u8 {
    let broken = records.iter().any(|r| {
        matches!(r.stage, Stage::WriteError | Stage::Dropped)
            || (r.error.is_some() && !crate::sequence::is_normal_close(r))
    });
    if broken {
        0
    } else if records.iter().any(|r| r.command_id.is_some()) {
        1
    } else {
        2
    }
}

/// [`tally`] for the sequence diagrams' folded rows.
pub(crate) fn tally_of(rs: &[&FrameRecord]) -> String {
    tally(rs)
}

/// Pings, Pongs, Heartbeats and QUIC heartbeats that went as they should.
fn is_routine(r: &FrameRecord) -> bool {
    let ok = matches!(r.stage, Stage::Written | Stage::Read | Stage::Passed);
    ok && match r.frame {
        FrameKind::Ping | FrameKind::Pong => true,
        FrameKind::Text => r.msg.as_deref() == Some("Heartbeat"),
        FrameKind::Quic => r.kind.as_deref() == Some("heartbeat"),
        _ => false,
    }
}

/// The records worth a row: every stage but `enqueued`, plus `enqueued`
/// records that no later write (or write error) of the same frame matches.
fn select<'a>(records: &[&'a FrameRecord]) -> Vec<Row<'a>> {
    let same = |a: &FrameRecord, b: &FrameRecord| {
        a.dir == b.dir
            && a.frame == b.frame
            && a.msg == b.msg
            && a.command_id == b.command_id
            && a.ping_seq == b.ping_seq
            && a.len == b.len
    };
    let mut used = vec![false; records.len()];
    let mut rows = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.stage != Stage::Enqueued {
            rows.push(Row::Frame {
                record: r,
                never_written: false,
            });
            continue;
        }
        let write = (i + 1..records.len()).find(|&j| {
            !used[j]
                && matches!(records[j].stage, Stage::Written | Stage::WriteError)
                && same(r, records[j])
        });
        match write {
            Some(j) => used[j] = true,
            None => rows.push(Row::Frame {
                record: r,
                never_written: true,
            }),
        }
    }
    rows
}

/// Folds runs of more than `fold_min` routine frames into one row each.
fn fold(rows: Vec<Row<'_>>, fold_min: usize) -> Vec<Row<'_>> {
    fn flush<'a>(run: &mut Vec<&'a FrameRecord>, out: &mut Vec<Row<'a>>, fold_min: usize) {
        if run.len() > fold_min {
            out.push(Row::Fold(std::mem::take(run)));
        } else {
            out.extend(run.drain(..).map(|record| Row::Frame {
                record,
                never_written: false,
            }));
        }
    }
    let mut out = Vec::new();
    let mut run: Vec<&FrameRecord> = Vec::new();
    for row in rows {
        match row {
            Row::Frame {
                record,
                never_written: false,
            } if is_routine(record) => run.push(record),
            other => {
                flush(&mut run, &mut out, fold_min);
                out.push(other);
            }
        }
    }
    flush(&mut run, &mut out, fold_min);
    out
}

/// Keeps at most `max` rows: the first two thirds, one row counting the
/// elided frames, and the last rows.
fn cap(rows: Vec<Row<'_>>, max: usize) -> Vec<Row<'_>> {
    if rows.len() <= max || max < 3 {
        return rows;
    }
    let head = max * 2 / 3;
    let tail = max - head - 1;
    let elided: usize = rows[head..rows.len() - tail].iter().map(Row::frames).sum();
    let mut out: Vec<Row> = rows[..head].to_vec();
    out.push(Row::Elided { frames: elided });
    out.extend_from_slice(&rows[rows.len() - tail..]);
    out
}

fn cells(conn: String, peer: String, row: &Row) -> Vec<String> {
    match row {
        Row::Frame {
            record: r,
            never_written,
        } => {
            let stage = match r.stage {
                Stage::Enqueued if *never_written => "enqueued, never written",
                Stage::Enqueued => "enqueued",
                Stage::Written => "written",
                Stage::WriteError => "write_error",
                Stage::Read => "read",
                Stage::Dropped => "dropped",
                Stage::Passed => "passed",
                Stage::Event => "event",
            };
            vec![
                conn,
                peer,
                style::sim_time(r.t_us),
                dir(r.dir).into(),
                frame(r.frame).into(),
                what(r),
                stage.into(),
            ]
        }
        Row::Fold(rs) => {
            let first = rs[0].t_us;
            let last = rs[rs.len() - 1].t_us;
            vec![
                conn,
                peer,
                style::sim_time(first),
                String::new(),
                String::new(),
                format!(
                    "{} routine to {}: {}",
                    rs.len(),
                    style::sim_time(last),
                    tally(rs)
                ),
                String::new(),
            ]
        }
        Row::Elided { frames } => vec![
            conn,
            peer,
            "...".into(),
            String::new(),
            String::new(),
            format!(
                "{} elided (all in frames.jsonl)",
                count(*frames, "frame", "frames")
            ),
            String::new(),
        ],
    }
}

/// `ping x3, Heartbeat x3, pong x3 (seq 1..3)`: each kind of frame in order
/// of first appearance, then the range of `ping_seq` they carry. Directions
/// are left out: at one point each kind goes one way (the server writes
/// Pings and reads Pongs and Heartbeats), so a missing kind stands out.
fn tally(rs: &[&FrameRecord]) -> String {
    let mut labels: Vec<(String, usize)> = Vec::new();
    let mut seqs: Option<(u64, u64)> = None;
    for r in rs {
        let label = match r.frame {
            FrameKind::Text => r.msg.clone().unwrap_or_else(|| "text".into()),
            FrameKind::Quic => format!("quic {}", r.kind.as_deref().unwrap_or("frame")).into(),
            other => frame(other).to_string().into(),
        };
        match labels.iter_mut().find(|(l, _)| *l == label) {
            Some((_, n)) => *n += 1,
            None => labels.push((label.to_string(), 1)),
        }
        if let Some(s) = r.ping_seq {
            seqs = Some(seqs.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))));
        }
    }
    let mut out = labels
        .iter()
        .map(|(label, n)| format!("{label} x{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    match seqs {
        Some((lo, hi)) if lo != hi => out.push_str(&format!(" (seq {lo}..{hi})")),
        Some((lo, _)) => out.push_str(&format!(" (seq {lo})")),
        None => {}
    }
    out
}

fn dir(d: Dir) -> &'static str {
    match d {
        Dir::Tx => "tx",
        Dir::Rx => "rx",
    }
}

fn frame(f: FrameKind) -> &'static str {
    match f {
        FrameKind::Text => "text",
        FrameKind::Binary => "binary",
        FrameKind::Ping => "ping",
        FrameKind::Pong => "pong",
        FrameKind::Close => "close",
        FrameKind::Quic => "quic",
        FrameKind::Tls => "tls",
    }
}

/// What a record carries: the message and command id, the ping sequence,
/// the QUIC/TLS event kind, and the error.
fn what(r: &FrameRecord) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(k) = &r.kind {
        parts.push(k.to_string());
    }
    if let Some(m) = &r.msg {
        parts.push(if r.kind.is_some() {
            format!("({m})")
        } else {
            m.to_string()
        });
    }
    if let Some(c) = &r.command_id {
        parts.push(c.to_string());
    }
    if let Some(s) = r.ping_seq {
        parts.push(format!("seq {s}"));
    }
    if let Some(e) = &r.error {
        if crate::sequence::is_normal_close(r) {
            parts.push(format!("({e})"));
        } else {
            parts.push(format!("error: {e}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t_s: u64, conn: &str, dir: Dir, stage: Stage, frame: FrameKind) -> FrameRecord {
        FrameRecord::new(t_s * 1_000_000, "server", conn, "pst-1", dir, stage, frame)
    }

    fn text(t_s: u64, dir: Dir, stage: Stage, msg: &str, cmd: Option<&str>) -> FrameRecord {
        FrameRecord {
            msg: Some(msg.into()),
            command_id: cmd.map(Into::into),
            ..rec(t_s, "c1", dir, stage, FrameKind::Text)
        }
    }

    fn ping_cycle(t_s: u64, seq: u64) -> Vec<FrameRecord> {
        vec![
            FrameRecord {
                ping_seq: Some(seq),
                ..rec(t_s, "c1", Dir::Tx, Stage::Written, FrameKind::Ping)
            },
            text(t_s, Dir::Rx, Stage::Read, "Heartbeat", None),
            FrameRecord {
                ping_seq: Some(seq),
                ..rec(t_s, "c1", Dir::Rx, Stage::Read, FrameKind::Pong)
            },
        ]
    }

    #[test]
    fn folds_routine_frames_and_keeps_commands() {
        let mut frames = Vec::new();
        for seq in 1..=4 {
            frames.extend(ping_cycle(seq * 30, seq));
        }
        frames.push(text(
            130,
            Dir::Tx,
            Stage::Enqueued,
            "Command",
            Some("cmd-0001"),
        ));
        frames.push(text(
            130,
            Dir::Tx,
            Stage::Written,
            "Command",
            Some("cmd-0001"),
        ));
        frames.push(text(
            131,
            Dir::Rx,
            Stage::Read,
            "CommandAck",
            Some("cmd-0001"),
        ));
        let out = render(&frames, &TimelineOptions::default());
        assert!(
            out.contains("12 routine to 2:00.000: ping x4, Heartbeat x4, pong x4 (seq 1..4)"),
            "{out}"
        );
        assert!(out.contains("Command cmd-0001"), "{out}");
        assert!(out.contains("CommandAck cmd-0001"), "{out}");
        // The enqueued record that was written is not a row of its own.
        assert!(!out.contains("enqueued"), "{out}");
        assert_eq!(out.matches("c1").count(), 1, "{out}");
    }

    #[test]
    fn short_routine_runs_stay_and_stalled_writes_show() {
        let mut frames = ping_cycle(30, 1);
        frames.truncate(2);
        frames.push(text(
            70,
            Dir::Tx,
            Stage::Enqueued,
            "Command",
            Some("cmd-0001"),
        ));
        let out = render(&frames, &TimelineOptions::default());
        assert!(out.contains("seq 1"), "{out}");
        assert!(!out.contains("routine"), "{out}");
        assert!(out.contains("enqueued, never written"), "{out}");
    }

    #[test]
    fn long_connections_say_how_many_frames_were_elided() {
        let frames: Vec<FrameRecord> = (0..40)
            .map(|i| {
                text(
                    i,
                    Dir::Tx,
                    Stage::Written,
                    "Command",
                    Some(&format!("cmd-{i:04}")),
                )
            })
            .collect();
        let opts = TimelineOptions::default();
        let out = render(&frames, &opts);
        assert!(
            out.contains("25 frames elided (all in frames.jsonl)"),
            "{out}"
        );
        assert!(
            out.contains("cmd-0000") && out.contains("cmd-0039"),
            "{out}"
        );
        assert!(!out.contains("cmd-0010 "), "{out}");
    }

    #[test]
    fn many_connections_show_the_notable_ones_first() {
        let mut frames = Vec::new();
        for c in 0..5 {
            frames.push(rec(
                c,
                &format!("c{c}"),
                Dir::Rx,
                Stage::Event,
                FrameKind::Tls,
            ));
        }
        frames.push(FrameRecord {
            error: Some("reset".into()),
            ..rec(9, "c4", Dir::Tx, Stage::WriteError, FrameKind::Text)
        });
        let opts = TimelineOptions {
            max_conns: 2,
            ..TimelineOptions::default()
        };
        let out = render(&frames, &opts);
        assert!(out.contains("c0") && out.contains("c4"), "{out}");
        assert!(!out.contains("c1"), "{out}");
        assert!(
            out.contains("3 connections of 5 at `server` not shown"),
            "{out}"
        );
        assert_eq!(
            render(
                &frames,
                &TimelineOptions {
                    point: "path:x".into(),
                    ..opts
                }
            ),
            "no frames at point `path:x`\n"
        );
    }

    #[test]
    fn normal_closes_rank_below_commands_and_do_not_read_as_errors() {
        let mut frames = Vec::new();
        // Four probe connections that close normally, then one with a command.
        for c in 0..4 {
            frames.push(FrameRecord {
                kind: Some("closed".into()),
                error: Some("closed by peer: probe done (code 0)".into()),
                ..rec(c, &format!("c{c}"), Dir::Rx, Stage::Event, FrameKind::Quic)
            });
        }
        frames.push(FrameRecord {
            msg: Some("Command".into()),
            command_id: Some("cmd-0001".into()),
            ..rec(9, "c9", Dir::Tx, Stage::Written, FrameKind::Text)
        });
        let opts = TimelineOptions {
            max_conns: 2,
            ..TimelineOptions::default()
        };
        let out = render(&frames, &opts);
        assert!(
            out.contains("cmd-0001"),
            "the command's connection is shown: {out}"
        );
        assert!(
            out.contains("closed (closed by peer: probe done (code 0))"),
            "{out}"
        );
        assert!(!out.contains("error:"), "a normal close is no error: {out}");
    }
}
