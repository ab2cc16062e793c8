//! The outcome table of incident 2, decided from the server point alone on
//! the connection(s) that carried the unacked Commands.

use records::frame::Stage;

use super::cite;
use super::facts::{Agent, Cmd, Conn, Log};

/// A connection that matched an outcome-table row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowMatch {
    /// Index into `Agent::conns`.
    pub conn: usize,
    /// 1..=5.
    pub row: u8,
    /// Deciding frame records.
    pub records: Vec<usize>,
    /// Deciding events (row 5 after an eviction).
    pub events: Vec<usize>,
    /// Why.
    pub reason: String,
}

/// The agent's row and every connection's row (`None` where a connection
/// carried no unacked Command or matched no row).
pub(crate) fn agent_row(log: &Log<'_>, a: &Agent) -> (Option<RowMatch>, Vec<Option<RowMatch>>) {
    let mut per_conn: Vec<Option<RowMatch>> =
        (0..a.conns.len()).map(|ci| conn_row(log, a, ci)).collect();

    // Row 5: row 1 on a connection opened after an eviction, or after an
    // earlier connection of the agent already showed row 1 (or 5).
    for ci in 0..per_conn.len() {
        if per_conn[ci].as_ref().map(|m| m.row) != Some(1) {
            continue;
        }
        let c = &a.conns[ci];
        let earlier = per_conn[..ci]
            .iter()
            .flatten()
            .find(|m| matches!(m.row, 1 | 5) && a.conns[m.conn].first_n < c.first_n)
            .map(|m| (a.conns[m.conn].id.clone(), m.records.clone()));
        let evicted = a.evictions.iter().find(|(_, t)| *t <= c.first_t).copied();
        let m = per_conn[ci].as_mut().expect("row 1 checked above");
        if let Some((prev, recs)) = earlier {
            m.row = 5;
            m.records = cite([m.records.clone(), recs].concat());
            m.reason = format!(
                "{} It is a fresh connection: the earlier connection {prev} already showed row 1.",
                m.reason
            );
        } else if let Some((en, _)) = evicted {
            m.row = 5;
            m.events = vec![en];
            m.reason = format!(
                "{} It is a fresh connection opened after the agent's eviction (event {en}).",
                m.reason
            );
        }
    }

    // The agent's row: that of the connection holding the latest unacked
    // Command record, falling back to earlier ones when it matched no row.
    let mut order: Vec<(usize, usize)> = a
        .conns
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| {
            c.cmds
                .iter()
                .filter(|m| a.unacked.contains(&m.id))
                .map(|m| m.n)
                .max()
                .map(|n| (n, ci))
        })
        .collect();
    order.sort_unstable_by(|x, y| y.cmp(x));
    let row = order.iter().find_map(|(_, ci)| per_conn[*ci].clone());
    (row, per_conn)
}

fn ids(cmds: &[&Cmd]) -> String {
    let mut v: Vec<&str> = cmds.iter().map(|c| c.id.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(", ")
}

/// The answered Ping/Pong pair to cite: the first one after record `after`,
/// else the last one before it.
fn pair_near(c: &Conn, after: usize) -> Option<(usize, usize)> {
    let pairs = c.answered();
    pairs
        .iter()
        .find(|(p, _)| *p > after)
        .or_else(|| pairs.last())
        .copied()
}

/// The row of connection `ci`, when it carried unacked Commands.
pub(crate) fn conn_row(log: &Log<'_>, a: &Agent, ci: usize) -> Option<RowMatch> {
    let c = &a.conns[ci];
    let u: Vec<&Cmd> = c
        .cmds
        .iter()
        .filter(|m| a.unacked.contains(&m.id))
        .collect();
    let first_u = u.first()?.n;
    let matched = |m: RowMatch| Some(m);

    // Row 4: a Command was enqueued here while the agent's latest Heartbeat
    // had arrived on another connection; afterwards this connection shows no
    // Ping written and no Pong read, yet Heartbeats keep arriving elsewhere.
    let last_ping = c.pings.last().map(|p| p.n).unwrap_or(0);
    let last_pong = c.pongs.last().map(|p| p.n).unwrap_or(0);
    let last_hb_elsewhere = a
        .heartbeats
        .iter()
        .filter(|h| h.2 != ci)
        .map(|h| h.0)
        .max()
        .unwrap_or(0);
    for e in &u {
        let before = a.heartbeats.partition_point(|h| h.0 < e.n);
        let Some(&(hb_n, _, hb_c)) = before.checked_sub(1).map(|i| &a.heartbeats[i]) else {
            continue;
        };
        if hb_c == ci || last_ping > e.n || last_pong > e.n || last_hb_elsewhere <= e.n {
            continue;
        }
        let after: Vec<usize> = a
            .heartbeats
            .iter()
            .filter(|h| h.0 > e.n && h.2 != ci)
            .map(|h| h.0)
            .collect();
        let later: Vec<&Cmd> = u.iter().copied().filter(|m| m.n >= e.n).collect();
        let mut records: Vec<usize> = later.iter().map(|m| m.n).collect();
        records.push(hb_n);
        records.extend(after.first());
        records.extend(after.last());
        return matched(RowMatch {
            conn: ci,
            row: 4,
            records: cite(records),
            events: Vec::new(),
            reason: format!(
                "Command(s) {} went to connection {} (record {}) while the agent's Heartbeats \
                 arrive on connection {} (records {hb_n}, {}); {} shows no Ping written and no \
                 Pong read after that: split or duplicate session.",
                ids(&later),
                c.id,
                e.n,
                a.conns[hb_c].id,
                after.first().copied().unwrap_or(hb_n),
                c.id,
            ),
        });
    }

    // Row 3: the last Ping whose answer is due went unanswered, and no Pong
    // was read on this connection since the first unacked Command record.
    let due = |i: usize| {
        let p = &c.pings[i];
        p.pong.is_some() || log.decided(p.t) || i + 1 < c.pings.len()
    };
    let last_due = (0..c.pings.len()).rev().find(|&i| due(i));
    let pong_since = c.pongs.iter().any(|p| p.ping.is_some() && p.n > first_u);
    if let Some(i) = last_due {
        if c.pings[i].pong.is_none() && !pong_since {
            let answered_until = c.pings[..i]
                .iter()
                .rev()
                .find(|p| p.pong.is_some())
                .map(|p| p.n)
                .unwrap_or(0);
            let unanswered: Vec<usize> = c.pings[..=i]
                .iter()
                .filter(|p| p.n > answered_until && p.pong.is_none())
                .map(|p| p.n)
                .collect();
            let mut records = unanswered.clone();
            // The Commands' Text: the writes when there are any, else the enqueues.
            let w: Vec<usize> = u
                .iter()
                .filter(|m| m.stage == Stage::Written)
                .map(|m| m.n)
                .collect();
            records.extend(if w.is_empty() {
                u.iter().map(|m| m.n).collect()
            } else {
                w
            });
            return matched(RowMatch {
                conn: ci,
                row: 3,
                records: cite(records),
                events: Vec::new(),
                reason: format!(
                    "Pings written on {} (records {}) got no Pong, and none was read since the \
                     Command(s) {}: half-open path or connection mapping.",
                    c.id,
                    list(&unanswered),
                    ids(&u),
                ),
            });
        }
    }

    let pair = pair_near(c, first_u)?;

    // Row 2: a Command Text accepted by the send channel was never written
    // (its `written` never came although due) or its write failed.
    let mut stuck: Vec<usize> = Vec::new();
    let mut failed: Vec<usize> = Vec::new();
    let mut per_id: std::collections::BTreeMap<&str, Vec<&Cmd>> = Default::default();
    for m in &u {
        per_id.entry(m.id.as_str()).or_default().push(m);
    }
    for recs in per_id.values() {
        let mut queue: std::collections::VecDeque<&Cmd> = Default::default();
        for m in recs {
            match m.stage {
                Stage::Enqueued => queue.push_back(m),
                Stage::Written => {
                    queue.pop_front();
                }
                _ => {
                    queue.pop_front();
                    failed.push(m.n);
                }
            }
        }
        stuck.extend(queue.iter().filter(|m| log.decided(m.t)).map(|m| m.n));
    }
    if !stuck.is_empty() || !failed.is_empty() {
        let mut records = [stuck.clone(), failed.clone()].concat();
        records.extend([pair.0, pair.1]);
        return matched(RowMatch {
            conn: ci,
            row: 2,
            records: cite(records),
            events: Vec::new(),
            reason: format!(
                "On {} the Ping (record {}) got its Pong (record {}), but Command Text {} \
                 (records {}) never completed its socket write.",
                c.id,
                pair.0,
                pair.1,
                if failed.is_empty() {
                    "was enqueued and"
                } else {
                    "failed or"
                },
                list(&cite([stuck, failed].concat())),
            ),
        });
    }

    // Row 1: the Command Text was written, Pings get Pongs, no CommandAck.
    let written: Vec<&Cmd> = u
        .iter()
        .copied()
        .filter(|m| m.stage == Stage::Written)
        .collect();
    if written.is_empty() {
        return None;
    }
    let pair = pair_near(c, written[0].n).unwrap_or(pair);
    let mut records: Vec<usize> = written.iter().map(|m| m.n).collect();
    records.extend([pair.0, pair.1]);
    matched(RowMatch {
        conn: ci,
        row: 1,
        records: cite(records),
        events: Vec::new(),
        reason: format!(
            "On {} Command Text {} was written (records {}) and the Ping (record {}) got its \
             Pong (record {}), but no CommandAck came: the agent is not processing server Text.",
            c.id,
            ids(&written),
            list(&cite(written.iter().map(|m| m.n).collect())),
            pair.0,
            pair.1,
        ),
    })
}

/// `1, 2, 3`.
pub(crate) fn list(v: &[usize]) -> String {
    v.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
