//! The hypothesis engine on synthetic logs (one per outcome-table row, one
//! per hypothesis in the full view, a healthy agent) and on a real healthy run.

use std::collections::BTreeMap;
use std::time::Duration;

use agent::AgentSwitches;
use proto::frame::{Dir, EventRecord, FrameKind, FrameRecord, Stage};
use serde_json::{json, Value};
use sim::diagnose::{diagnose, Diagnosis, Status, View};
use sim::run::{run, ActionKind, ActionSpec, AgentSpec, RunSpec};

// ---------------------------------------------------------------- builder

/// A handle to a record pushed into a [`B`]; its record number is known
/// once the log is built (records are sorted by time, stably).
#[derive(Clone, Copy, Debug)]
struct H(usize);

/// Synthetic frame and event logs. Times are milliseconds.
#[derive(Default)]
struct B {
    frames: Vec<(u64, FrameRecord)>,
    events: Vec<(u64, EventRecord)>,
}

/// A built log: the two logs in file order and the handles' record numbers.
struct Built {
    frames: Vec<FrameRecord>,
    events: Vec<EventRecord>,
    number: Vec<usize>,
    event_number: Vec<usize>,
}

/// What a steady session logged.
#[derive(Default)]
struct Session {
    pings: Vec<H>,
    pongs: Vec<H>,
    heartbeats: Vec<H>,
}

/// Where a record is logged: `(point, conn, peer)`.
type At<'a> = (&'a str, &'a str, &'a str);

impl B {
    fn push(&mut self, t_ms: u64, at: At<'_>, dir: Dir, stage: Stage, frame: FrameKind) -> H {
        let (point, conn, peer) = at;
        let r = FrameRecord::new(t_ms * 1000, point, conn, peer, dir, stage, frame);
        self.frames.push((t_ms, r));
        H(self.frames.len() - 1)
    }

    fn last(&mut self) -> &mut FrameRecord {
        &mut self.frames.last_mut().expect("a record").1
    }

    fn text(
        &mut self,
        t: u64,
        at: At<'_>,
        dir: Dir,
        stage: Stage,
        msg: Option<&str>,
        id: Option<&str>,
    ) -> H {
        let h = self.push(t, at, dir, stage, FrameKind::Text);
        self.last().msg = msg.map(Into::into);
        self.last().command_id = id.map(Into::into);
        h
    }

    // --- the server point
    fn ping(&mut self, t: u64, agent: &str, conn: &str, seq: u64) -> H {
        let h = self.push(
            t,
            ("server", conn, agent),
            Dir::Tx,
            Stage::Written,
            FrameKind::Ping,
        );
        self.last().ping_seq = Some(seq);
        h
    }
    fn pong(&mut self, t: u64, agent: &str, conn: &str, seq: u64) -> H {
        let h = self.push(
            t,
            ("server", conn, agent),
            Dir::Rx,
            Stage::Read,
            FrameKind::Pong,
        );
        self.last().ping_seq = Some(seq);
        h
    }
    fn hb(&mut self, t: u64, agent: &str, conn: &str) -> H {
        self.text(
            t,
            ("server", conn, agent),
            Dir::Rx,
            Stage::Read,
            Some("Heartbeat"),
            None,
        )
    }
    fn enqueue(&mut self, t: u64, agent: &str, conn: &str, id: &str) -> H {
        self.text(
            t,
            ("server", conn, agent),
            Dir::Tx,
            Stage::Enqueued,
            Some("Command"),
            Some(id),
        )
    }
    fn written(&mut self, t: u64, agent: &str, conn: &str, id: &str) -> H {
        self.text(
            t,
            ("server", conn, agent),
            Dir::Tx,
            Stage::Written,
            Some("Command"),
            Some(id),
        )
    }
    /// Enqueued and written: returns the `written` record.
    fn send(&mut self, t: u64, agent: &str, conn: &str, id: &str) -> H {
        self.enqueue(t, agent, conn, id);
        self.written(t, agent, conn, id)
    }
    fn ack(&mut self, t: u64, agent: &str, conn: &str, id: &str) -> H {
        self.text(
            t,
            ("server", conn, agent),
            Dir::Rx,
            Stage::Read,
            Some("CommandAck"),
            Some(id),
        )
    }

    /// A session on `conn` from `from` to `to` seconds: a Heartbeat and a
    /// Ping every 30 s; the Pongs come back while `pongs_until` (seconds).
    fn session(
        &mut self,
        agent: &str,
        conn: &str,
        from: u64,
        to: u64,
        pongs_until: u64,
    ) -> Session {
        let mut s = Session::default();
        let mut seq = 0;
        let mut t = from + 30;
        while t <= to {
            seq += 1;
            s.pings.push(self.ping(t * 1000, agent, conn, seq));
            if t <= pongs_until {
                s.pongs.push(self.pong(t * 1000 + 20, agent, conn, seq));
            }
            s.heartbeats.push(self.hb(t * 1000 + 5000, agent, conn));
            t += 30;
        }
        s
    }

    // --- the agent point (agent conn ids are the server's with an `a` prefix)
    fn agent_ping(&mut self, t: u64, agent: &str, conn: &str) -> H {
        let point = format!("agent:{agent}");
        self.push(
            t,
            (&point, conn, "server"),
            Dir::Rx,
            Stage::Read,
            FrameKind::Ping,
        )
    }
    fn agent_read(
        &mut self,
        t: u64,
        agent: &str,
        conn: &str,
        msg: Option<&str>,
        id: Option<&str>,
    ) -> H {
        let point = format!("agent:{agent}");
        self.text(t, (&point, conn, "server"), Dir::Rx, Stage::Read, msg, id)
    }
    fn agent_ack(&mut self, t: u64, agent: &str, conn: &str, id: &str) -> H {
        let point = format!("agent:{agent}");
        self.text(
            t,
            (&point, conn, "server"),
            Dir::Tx,
            Stage::Written,
            Some("CommandAck"),
            Some(id),
        )
    }

    // --- a path point
    fn path(&mut self, t: u64, point: &str, agent: &str, stage: Stage, id: &str) -> H {
        let point = format!("path:{point}");
        self.text(
            t,
            (&point, "p1", agent),
            Dir::Tx,
            stage,
            Some("Command"),
            Some(id),
        )
    }

    fn event(&mut self, t: u64, host: &str, event: &str, fields: Value) -> H {
        let fields = fields.as_object().cloned().unwrap_or_default();
        self.events.push((
            t,
            EventRecord {
                t_us: t * 1000,
                host: host.into(),
                event: event.into(),
                fields,
            },
        ));
        H(self.events.len() - 1)
    }

    fn build(self) -> Built {
        let mut order: Vec<usize> = (0..self.frames.len()).collect();
        order.sort_by_key(|&i| (self.frames[i].0, i));
        let mut number = vec![0; order.len()];
        for (pos, &i) in order.iter().enumerate() {
            number[i] = pos + 1;
        }
        let mut eorder: Vec<usize> = (0..self.events.len()).collect();
        eorder.sort_by_key(|&i| (self.events[i].0, i));
        let mut event_number = vec![0; eorder.len()];
        for (pos, &i) in eorder.iter().enumerate() {
            event_number[i] = pos + 1;
        }
        Built {
            frames: order.iter().map(|&i| self.frames[i].1.clone()).collect(),
            events: eorder.iter().map(|&i| self.events[i].1.clone()).collect(),
            number,
            event_number,
        }
    }
}

impl Built {
    fn n(&self, h: H) -> usize {
        self.number[h.0]
    }
    fn ns(&self, hs: &[H]) -> Vec<usize> {
        let mut v: Vec<usize> = hs.iter().map(|h| self.n(*h)).collect();
        v.sort_unstable();
        v
    }
    fn ev(&self, h: H) -> usize {
        self.event_number[h.0]
    }
    fn diag(&self, view: View) -> BTreeMap<String, Diagnosis> {
        let d = diagnose(&self.frames, &self.events, view);
        let names: Vec<&str> = d.iter().map(|x| x.agent.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "sorted by name");
        d.into_iter().map(|x| (x.agent.clone(), x)).collect()
    }
}

fn status(d: &Diagnosis, h: &str) -> Status {
    d.verdict(h).unwrap_or_else(|| panic!("{h} missing")).status
}

fn records(d: &Diagnosis, h: &str) -> Vec<usize> {
    d.verdict(h).unwrap().records.clone()
}

/// Every verdict cites something and lists H1..H7 in order.
fn well_formed(d: &Diagnosis) {
    let ids: Vec<&str> = d.verdicts.iter().map(|v| v.hypothesis).collect();
    assert_eq!(ids, ["H1", "H2", "H3", "H4", "H5", "H6", "H7"]);
    for v in &d.verdicts {
        assert!(!v.reason.is_empty());
        if v.status != Status::Inconclusive {
            assert!(
                !v.records.is_empty() || !v.events.is_empty(),
                "{}: {v:?}",
                d.agent
            );
        }
        let mut sorted = v.records.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(v.records, sorted);
    }
}

/// A healthy agent next to the affected one: `nyc-1` on `c9`, cmd-0900 acked.
fn healthy(b: &mut B) -> H {
    b.session("nyc-1", "c9", 0, 300, 300);
    b.send(80_000, "nyc-1", "c9", "cmd-0900");
    b.ack(80_030, "nyc-1", "c9", "cmd-0900")
}

// ---------------------------------------------------------------- rows

#[test]
fn row_1_text_written_pongs_seen_no_ack_supports_h2_h3() {
    let mut b = B::default();
    let s = b.session("pst-1", "c1", 0, 300, 300);
    let w = b.send(70_000, "pst-1", "c1", "cmd-0001");
    let ack = healthy(&mut b);
    let l = b.build();
    let d = l.diag(View::Server);
    let x = &d["pst-1"];
    well_formed(x);
    assert!(x.affected);
    assert_eq!(x.unacked, ["cmd-0001"]);
    assert_eq!(x.row, Some(1));
    assert_eq!(x.supported(), ["H2", "H3"]);
    // Deciding records: the Text written, then the first Ping after it and its Pong.
    let deciding = l.ns(&[w, s.pings[2], s.pongs[2]]);
    assert_eq!(records(x, "H1"), deciding);
    assert_eq!(status(x, "H1"), Status::Refuted);
    assert_eq!(records(x, "H2"), deciding);
    assert_eq!(status(x, "H5"), Status::Refuted);
    assert_eq!(status(x, "H4"), Status::Inconclusive);
    assert_eq!(status(x, "H6"), Status::Inconclusive);
    assert_eq!(status(x, "H7"), Status::Inconclusive);
    assert_eq!(x.conns.len(), 1);
    assert_eq!(x.conns[0].pings_written, 10);
    assert_eq!(x.conns[0].pongs_matched, 10);
    assert_eq!(x.conns[0].commands_written, 1);
    assert_eq!(x.conns[0].row, Some(1));

    // The healthy agent: unaffected, refuted by its ack.
    let y = &d["nyc-1"];
    well_formed(y);
    assert!(!y.affected);
    assert_eq!(y.row, None);
    assert!(y.supported().is_empty());
    assert_eq!(records(y, "H1"), [l.n(ack)]);
    assert_eq!(status(y, "H6"), Status::Inconclusive);
}

#[test]
fn row_2_text_enqueued_never_written_supports_h1() {
    let mut b = B::default();
    // The send loop stalls on the Text: the Pings stop after it, Heartbeats go on.
    let s = b.session("pst-1", "c1", 0, 60, 60);
    let e = b.enqueue(70_000, "pst-1", "c1", "cmd-0001");
    for t in [95, 125, 155, 185] {
        b.hb(t * 1000, "pst-1", "c1");
    }
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(2));
    assert_eq!(x.supported(), ["H1"]);
    assert_eq!(records(x, "H1"), l.ns(&[s.pings[1], s.pongs[1], e]));
    assert_eq!(status(x, "H2"), Status::Inconclusive);
    assert_eq!(status(x, "H3"), Status::Inconclusive);
    assert_eq!(status(x, "H5"), Status::Refuted);

    // Full view: the agent point adds nothing that decides otherwise.
    let f = &l.diag(View::Full)["pst-1"];
    assert_eq!(f.row, Some(2));
    assert_eq!(f.supported(), ["H1"]);
}

#[test]
fn row_2_also_on_a_write_error() {
    let mut b = B::default();
    let s = b.session("pst-1", "c1", 0, 60, 60);
    b.enqueue(70_000, "pst-1", "c1", "cmd-0001");
    let err = b.push(
        70_000,
        ("server", "c1", "pst-1"),
        Dir::Tx,
        Stage::WriteError,
        FrameKind::Text,
    );
    b.last().msg = Some("Command".into());
    b.last().command_id = Some("cmd-0001".into());
    b.last().error = Some("broken pipe".into());
    b.hb(95_000, "pst-1", "c1");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    assert_eq!(x.row, Some(2));
    assert_eq!(records(x, "H1"), l.ns(&[s.pings[1], s.pongs[1], err]));
    assert_eq!(x.conns[0].command_write_errors, 1);
}

#[test]
fn row_3_pings_written_no_pongs_supports_h1_h5() {
    let mut b = B::default();
    // Half-open from 45 s: the Pings after it get no Pong.
    let s = b.session("gts-1", "c1", 0, 300, 45);
    let w = b.send(70_000, "gts-1", "c1", "cmd-0001");
    let l = b.build();
    let x = &l.diag(View::Server)["gts-1"];
    well_formed(x);
    assert_eq!(x.row, Some(3));
    assert_eq!(x.supported(), ["H1", "H5"]);
    let mut want: Vec<H> = s.pings[1..].to_vec(); // 60 s .. 300 s, all due (the last is followed by 5 s of log... )
    want.retain(|h| l.n(*h) < l.n(s.pings[9])); // ... except the 300 s one, not due
    want.push(w);
    assert_eq!(records(x, "H5"), l.ns(&want));
    assert_eq!(status(x, "H2"), Status::Inconclusive);
    assert_eq!(status(x, "H3"), Status::Inconclusive);
}

#[test]
fn row_4_commands_to_a_silent_connection_heartbeats_elsewhere_supports_h5() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 100, 100);
    // The agent reconnected; the registry kept c1's sender.
    let s2 = b.session("pst-1", "c2", 100, 400, 400);
    let e1 = b.enqueue(150_000, "pst-1", "c1", "cmd-0001");
    let e2 = b.enqueue(165_000, "pst-1", "c1", "cmd-0001"); // re-offered on the Heartbeat at 165 s
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(4));
    assert_eq!(x.supported(), ["H5"]);
    // The enqueues, the Heartbeat before them on c2, the first and last after.
    let hb = &s2.heartbeats;
    assert_eq!(
        records(x, "H5"),
        l.ns(&[e1, e2, hb[0], hb[1], hb[hb.len() - 1]])
    );
    assert_eq!(status(x, "H1"), Status::Refuted);
    assert_eq!(x.conns.len(), 2);
    assert_eq!(x.conns[0].row, Some(4));
    assert_eq!(x.conns[1].row, None);
}

#[test]
fn row_5_row_1_on_a_fresh_connection_after_eviction_supports_h2_h3_h4() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 200, 200);
    let w1 = b.send(70_000, "pst-1", "c1", "cmd-0001");
    let ev = b.event(
        200_000,
        "server",
        "registry.evicted",
        json!({"agent": "pst-1", "conn": "c1"}),
    );
    b.event(200_000, "bench", "bench.evict", json!({"agent": "pst-1"}));
    let s2 = b.session("pst-1", "c2", 201, 400, 400);
    let w2 = b.send(236_000, "pst-1", "c2", "cmd-0001");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(5));
    assert_eq!(x.supported(), ["H2", "H3", "H4"]);
    // c1 is row 1 too, so row 5 cites c2's Text + Ping/Pong and c1's evidence.
    let h2 = records(x, "H2");
    assert!(h2.contains(&l.n(w2)) && h2.contains(&l.n(w1)), "{h2:?}");
    assert!(h2.contains(&l.n(s2.pings[1])) && h2.contains(&l.n(s2.pongs[1])));
    assert_eq!(
        x.conns.iter().map(|c| c.row).collect::<Vec<_>>(),
        [Some(1), Some(5)]
    );
    let _ = ev;
}

#[test]
fn row_5_from_the_eviction_event_alone() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 200, 200);
    b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.ack(70_030, "pst-1", "c1", "cmd-0001"); // c1 worked
    let ev = b.event(
        200_000,
        "server",
        "registry.evicted",
        json!({"agent": "pst-1", "conn": "c1"}),
    );
    b.session("pst-1", "c2", 201, 400, 400);
    b.send(236_000, "pst-1", "c2", "cmd-0002");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    assert_eq!(x.row, Some(5));
    assert_eq!(x.verdict("H4").unwrap().events, [l.ev(ev)]);
    assert_eq!(x.supported(), ["H2", "H3", "H4"]);
}

#[test]
fn worked_once_then_failed_after_a_plain_reconnect_is_row_1() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 200, 200);
    b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.ack(70_030, "pst-1", "c1", "cmd-0001");
    b.session("pst-1", "c2", 201, 400, 400);
    b.send(236_000, "pst-1", "c2", "cmd-0002");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    assert_eq!(x.row, Some(1));
    assert_eq!(x.unacked, ["cmd-0002"]);
    // cmd-0001 was acked on another connection: no H7 evidence.
    assert_eq!(x.supported(), ["H2", "H3"]);
}

// ---------------------------------------------------------------- full view

/// pst-1: Pings reach the agent, cmd-0001 is written at 70 s and not acked.
fn row_1_with_agent_point(b: &mut B) -> (Session, H) {
    let s = b.session("pst-1", "c1", 0, 300, 300);
    for t in (30..=300).step_by(30) {
        b.agent_ping(t * 1000 + 10, "pst-1", "ac1");
    }
    let w = b.send(70_000, "pst-1", "c1", "cmd-0001");
    (s, w)
}

#[test]
fn h2_full_view_a_path_point_drops_the_command_text() {
    let mut b = B::default();
    let (_, w) = row_1_with_agent_point(&mut b);
    let drop = b.path(70_005, "pst", "pst-1", Stage::Dropped, "cmd-0001");
    let l = b.build();
    assert_eq!(l.diag(View::Server)["pst-1"].supported(), ["H2", "H3"]);
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(1));
    assert_eq!(x.supported(), ["H2"]);
    assert_eq!(records(x, "H2"), l.ns(&[w, drop]));
    assert_eq!(status(x, "H3"), Status::Refuted);
    assert_eq!(records(x, "H3"), [l.n(w)]);
    assert_eq!(status(x, "H1"), Status::Refuted);
    assert_eq!(records(x, "H1"), [l.n(drop)]);
    assert_eq!(status(x, "H7"), Status::Inconclusive);
}

#[test]
fn h2_full_view_the_agent_never_reads_the_command_text() {
    let mut b = B::default();
    let (_, w) = row_1_with_agent_point(&mut b);
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.supported(), ["H2"]);
    assert_eq!(records(x, "H2"), [l.n(w)]);
    assert_eq!(status(x, "H3"), Status::Refuted);
}

#[test]
fn h3_full_view_the_agent_reads_the_command_and_never_acks() {
    let mut b = B::default();
    let (_, w) = row_1_with_agent_point(&mut b);
    let r = b.agent_read(70_010, "pst-1", "ac1", Some("Command"), Some("cmd-0001"));
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(1));
    assert_eq!(x.supported(), ["H3"]);
    assert_eq!(records(x, "H3"), l.ns(&[w, r]));
    assert_eq!(status(x, "H2"), Status::Refuted);
    assert_eq!(records(x, "H2"), [l.n(r)]);
    assert_eq!(status(x, "H7"), Status::Refuted);
    assert_eq!(status(x, "H5"), Status::Refuted);
    assert_eq!(status(x, "H4"), Status::Refuted);
}

#[test]
fn h7_full_view_bad_message_at_the_agent_while_other_commands_are_acked() {
    let mut b = B::default();
    let (_, w) = row_1_with_agent_point(&mut b);
    // cmd-0000 went through before.
    b.send(40_000, "pst-1", "c1", "cmd-0000");
    b.agent_read(40_010, "pst-1", "ac1", Some("Command"), Some("cmd-0000"));
    b.agent_ack(40_010, "pst-1", "ac1", "cmd-0000");
    b.ack(40_020, "pst-1", "c1", "cmd-0000");
    let r = b.agent_read(70_010, "pst-1", "ac1", Some("Command"), Some("cmd-0001"));
    let bad = b.event(
        70_010,
        "agent:pst-1",
        "channel.bad_message",
        json!({"conn": "ac1", "error": "missing field `command`"}),
    );
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.supported(), ["H7"]);
    assert_eq!(records(x, "H7"), [l.n(r)]);
    assert_eq!(x.verdict("H7").unwrap().events, [l.ev(bad)]);
    assert_eq!(status(x, "H3"), Status::Refuted);
    assert_eq!(status(x, "H2"), Status::Refuted);
    let _ = w;
    // The server view has no content evidence and the ack came before: inconclusive.
    assert_eq!(
        status(&l.diag(View::Server)["pst-1"], "H7"),
        Status::Inconclusive
    );
}

#[test]
fn h7_full_view_a_text_without_a_type_at_the_agent() {
    let mut b = B::default();
    row_1_with_agent_point(&mut b);
    b.send(40_000, "pst-1", "c1", "cmd-0000");
    b.ack(40_020, "pst-1", "c1", "cmd-0000");
    let r = b.agent_read(70_010, "pst-1", "ac1", None, None);
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    assert_eq!(status(x, "H7"), Status::Supported);
    assert_eq!(records(x, "H7"), [l.n(r)]);
}

#[test]
fn a_bad_message_about_a_config_update_is_not_h7_evidence() {
    let mut b = B::default();
    row_1_with_agent_point(&mut b);
    b.agent_read(1_000, "pst-1", "ac1", Some("ConfigUpdate"), None);
    b.event(
        1_000,
        "agent:pst-1",
        "channel.bad_message",
        json!({"conn": "ac1"}),
    );
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    assert_eq!(status(x, "H7"), Status::Inconclusive);
    assert_eq!(x.supported(), ["H2"]);
}

#[test]
fn h7_server_view_the_agent_acks_a_later_command_on_the_same_connection() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 300, 300);
    let w = b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.send(80_000, "pst-1", "c1", "cmd-0002");
    let ack = b.ack(80_030, "pst-1", "c1", "cmd-0002");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(1));
    assert_eq!(x.supported(), ["H7"]);
    assert_eq!(records(x, "H7"), l.ns(&[w, ack]));
    assert_eq!(status(x, "H2"), Status::Inconclusive);
    assert_eq!(status(x, "H3"), Status::Inconclusive);
}

#[test]
fn h1_full_view_keeps_row_2() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 60, 60);
    b.agent_ping(30_010, "pst-1", "ac1");
    b.enqueue(70_000, "pst-1", "c1", "cmd-0001");
    b.hb(95_000, "pst-1", "c1");
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.supported(), ["H1"]);
    assert_eq!(status(x, "H2"), Status::Inconclusive);
}

#[test]
fn h5_full_view_keeps_row_4() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 100, 100);
    b.session("pst-1", "c2", 100, 400, 400);
    b.agent_ping(130_010, "pst-1", "ac2");
    b.enqueue(150_000, "pst-1", "c1", "cmd-0001");
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(x.row, Some(4));
    assert_eq!(x.supported(), ["H5"]);
}

#[test]
fn row_3_in_the_full_view_text_lost_with_the_pings_is_not_h2() {
    let mut b = B::default();
    b.session("gts-1", "c1", 0, 300, 45);
    b.agent_ping(30_010, "gts-1", "ac1");
    b.send(70_000, "gts-1", "c1", "cmd-0001");
    let l = b.build();
    let x = &l.diag(View::Full)["gts-1"];
    assert_eq!(x.row, Some(3));
    assert_eq!(status(x, "H2"), Status::Inconclusive);
    assert_eq!(status(x, "H3"), Status::Refuted);
    assert_eq!(x.supported(), ["H1", "H5"]);
}

// ---------------------------------------------------------------- H4, H6

fn site_event(b: &mut B, agent: &str, site: &str) -> H {
    b.event(
        0,
        "server",
        "registry.registered",
        json!({"agent": agent, "conn": "c0", "site": site}),
    )
}

#[test]
fn h4_two_agents_of_one_site_lose_text_supported() {
    let mut b = B::default();
    let e1 = site_event(&mut b, "pst-1", "pst");
    let e2 = site_event(&mut b, "pst-2", "pst");
    site_event(&mut b, "nyc-1", "nyc");
    b.session("pst-1", "c1", 0, 300, 300);
    let w1 = b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.session("pst-2", "c2", 0, 300, 300);
    let w2 = b.send(75_000, "pst-2", "c2", "cmd-0002");
    healthy(&mut b); // another site: does not refute
    let l = b.build();
    let d = l.diag(View::Server);
    for (name, other) in [("pst-1", w2), ("pst-2", w1)] {
        let x = &d[name];
        well_formed(x);
        assert_eq!(x.row, Some(1));
        assert_eq!(x.supported(), ["H2", "H3", "H4"], "{name}");
        assert_eq!(records(x, "H4"), l.ns(&[w1, w2]));
        assert!(records(x, "H4").contains(&l.n(other)));
        assert_eq!(x.verdict("H4").unwrap().events, [l.ev(e1), l.ev(e2)]);
        // Same row and same supported set: one failure mode.
        assert_eq!(status(x, "H6"), Status::Refuted);
    }
}

#[test]
fn h4_an_agent_of_the_same_site_gets_its_commands_acked_refuted() {
    let mut b = B::default();
    site_event(&mut b, "pst-1", "pst");
    site_event(&mut b, "pst-2", "pst");
    b.session("pst-1", "c1", 0, 300, 300);
    let w = b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.session("pst-2", "c2", 0, 300, 300);
    b.send(80_000, "pst-2", "c2", "cmd-0002");
    let ack = b.ack(80_030, "pst-2", "c2", "cmd-0002");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    assert_eq!(status(x, "H4"), Status::Refuted);
    assert_eq!(records(x, "H4"), l.ns(&[w, ack]));
    assert_eq!(x.supported(), ["H2", "H3"]);
}

#[test]
fn h4_refutes_row_5s_site_reading_too() {
    let mut b = B::default();
    site_event(&mut b, "pst-1", "pst");
    site_event(&mut b, "pst-2", "pst");
    b.session("pst-1", "c1", 0, 200, 200);
    b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.event(
        200_000,
        "server",
        "registry.evicted",
        json!({"agent": "pst-1", "conn": "c1"}),
    );
    b.session("pst-1", "c3", 201, 400, 400);
    b.send(236_000, "pst-1", "c3", "cmd-0001");
    b.session("pst-2", "c2", 0, 400, 400);
    b.send(300_000, "pst-2", "c2", "cmd-0002");
    b.ack(300_030, "pst-2", "c2", "cmd-0002");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    assert_eq!(x.row, Some(5));
    assert_eq!(x.supported(), ["H2", "H3"]);
    assert_eq!(status(x, "H4"), Status::Refuted);
}

#[test]
fn h4_full_view_site_from_a_shared_path_point() {
    let mut b = B::default();
    let (_, w1) = row_1_with_agent_point(&mut b);
    let p1 = b.path(70_005, "pst", "pst-1", Stage::Passed, "cmd-0001");
    b.session("pst-2", "c2", 0, 300, 300);
    b.agent_ping(30_010, "pst-2", "ac2");
    let w2 = b.send(75_000, "pst-2", "c2", "cmd-0002");
    let p2 = b.path(75_005, "pst", "pst-2", Stage::Passed, "cmd-0002");
    let l = b.build();
    // The server view has no site: H4 stays inconclusive.
    assert_eq!(
        status(&l.diag(View::Server)["pst-1"], "H4"),
        Status::Inconclusive
    );
    let d = l.diag(View::Full);
    let x = &d["pst-1"];
    well_formed(x);
    assert_eq!(x.supported(), ["H2", "H4"]);
    assert_eq!(records(x, "H4"), l.ns(&[w1, p1, w2, p2]));
    assert_eq!(d["pst-2"].supported(), ["H2", "H4"]);
}

#[test]
fn h6_affected_agents_in_different_rows_supported_in_each() {
    let mut b = B::default();
    let s1 = b.session("pst-1", "c1", 0, 300, 300);
    let w1 = b.send(70_000, "pst-1", "c1", "cmd-0001");
    let s2 = b.session("gts-1", "c2", 0, 300, 45);
    b.send(70_000, "gts-1", "c2", "cmd-0002");
    healthy(&mut b);
    let l = b.build();
    let d = l.diag(View::Server);
    assert_eq!(d["pst-1"].row, Some(1));
    assert_eq!(d["gts-1"].row, Some(3));
    let want = l.ns(&[w1, s2.pings[1]]);
    for name in ["pst-1", "gts-1"] {
        assert_eq!(status(&d[name], "H6"), Status::Supported, "{name}");
        assert_eq!(records(&d[name], "H6"), want);
    }
    assert_eq!(d["pst-1"].supported(), ["H2", "H3", "H6"]);
    assert_eq!(d["gts-1"].supported(), ["H1", "H5", "H6"]);
    assert_eq!(status(&d["nyc-1"], "H6"), Status::Inconclusive);
    let _ = s1;
}

// ---------------------------------------------------------------- output

#[test]
fn the_outcome_embeds_row_supported_and_verdicts_in_lowercase() {
    let mut b = B::default();
    b.session("pst-1", "c1", 0, 300, 300);
    b.send(70_000, "pst-1", "c1", "cmd-0001");
    let l = b.build();
    let x = &l.diag(View::Server)["pst-1"];
    let v = serde_json::to_value(x).unwrap();
    assert_eq!(v["row"], 1);
    assert_eq!(v["view"], "server");
    assert_eq!(v["supported"], json!(["H2", "H3"]));
    assert_eq!(v["verdicts"][0]["hypothesis"], "H1");
    assert_eq!(v["verdicts"][0]["status"], "refuted");
    assert_eq!(v["verdicts"][3]["status"], "inconclusive");
    assert!(v["verdicts"][0]["records"].is_array());
    assert!(
        v["verdicts"][0].get("events").is_none(),
        "empty events are left out"
    );
}

#[test]
fn same_logs_same_answer() {
    let mut b = B::default();
    site_event(&mut b, "pst-1", "pst");
    b.session("pst-1", "c1", 0, 300, 300);
    b.send(70_000, "pst-1", "c1", "cmd-0001");
    b.session("gts-1", "c2", 0, 300, 45);
    b.send(70_000, "gts-1", "c2", "cmd-0002");
    let l = b.build();
    for view in [View::Server, View::Full] {
        let a = serde_json::to_string(&diagnose(&l.frames, &l.events, view)).unwrap();
        let b = serde_json::to_string(&diagnose(&l.frames, &l.events, view)).unwrap();
        assert_eq!(a, b);
    }
}

// ---------------------------------------------------------------- real runs

fn smoke(seed: u64, evict: bool) -> RunSpec {
    let agents = (1..=3)
        .map(|i| AgentSpec {
            name: format!("a-{i}"),
            site: if i < 3 { "pst".into() } else { "nyc".into() },
            version: "1.0.0".into(),
            switches: AgentSwitches::FIXED,
            defect: None,
            install_at_start: true,
        })
        .collect();
    let mut actions: Vec<ActionSpec> = (1..=5)
        .map(|i| ActionSpec {
            at: Duration::from_secs(60 + 10 * i),
            kind: ActionKind::Dispatch {
                agent: format!("a-{}", 1 + (i % 3)),
                command: "hostname".into(),
            },
        })
        .collect();
    if evict {
        actions.push(ActionSpec {
            at: Duration::from_secs(130),
            kind: ActionKind::Evict {
                agent: "a-1".into(),
            },
        });
        actions.push(ActionSpec {
            at: Duration::from_secs(150),
            kind: ActionKind::Dispatch {
                agent: "a-1".into(),
                command: "hostname".into(),
            },
        });
    }
    RunSpec::new("smoke", seed, Duration::from_secs(180), agents, actions)
}

#[test]
fn a_real_healthy_run_has_no_affected_agent_in_either_view() {
    for evict in [false, true] {
        let out = run(&smoke(7, evict)).expect("run completes");
        for view in [View::Server, View::Full] {
            let d = diagnose(&out.frames, &out.events, view);
            let names: Vec<&str> = d.iter().map(|x| x.agent.as_str()).collect();
            assert_eq!(names, ["a-1", "a-2", "a-3"], "{view:?}");
            for x in &d {
                well_formed(x);
                assert!(!x.affected, "evict={evict} {view:?}: {x:#?}");
                assert_eq!(x.row, None);
                assert!(x.supported().is_empty());
                // Every agent got a command acked: the command path is refuted as broken.
                assert_eq!(status(x, "H1"), Status::Refuted, "{}", x.agent);
                assert!(x
                    .conns
                    .iter()
                    .all(|c| c.pongs_matched > 0 || c.pings_written == 0));
            }
            if evict {
                let a1 = &d[0];
                assert_eq!(a1.conns.len(), 2, "a reconnect after the eviction");
            }
        }
    }
}

#[test]
fn the_shipped_smoke_scenario_has_no_affected_agent() {
    let path = sim::scenario::catalogue_dir().join("smoke.toml");
    let sc = format::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let spec = sim::scenario::resolve(&sc, None).unwrap_or_else(|e| panic!("{e}"));
    let out = run(&spec).expect("run completes");
    for view in [View::Server, View::Full] {
        let d = diagnose(&out.frames, &out.events, view);
        assert_eq!(d.len(), 3);
        for x in &d {
            well_formed(x);
            assert!(
                !x.affected && x.row.is_none() && x.supported().is_empty(),
                "{x:#?}"
            );
        }
    }
}

#[test]
fn one_unparsable_command_and_no_other_supports_h7_and_leaves_h3_inconclusive_with_a_next_step() {
    let mut b = B::default();
    row_1_with_agent_point(&mut b);
    let r = b.agent_read(70_010, "pst-1", "ac1", Some("Command"), Some("cmd-0001"));
    let bad = b.event(
        70_010,
        "agent:pst-1",
        "channel.bad_message",
        json!({"conn": "ac1", "error": "missing field `command`"}),
    );
    let l = b.build();
    let x = &l.diag(View::Full)["pst-1"];
    well_formed(x);
    assert_eq!(status(x, "H7"), Status::Supported);
    assert_eq!(x.verdict("H7").unwrap().events, [l.ev(bad)]);
    assert_eq!(
        status(x, "H3"),
        Status::Inconclusive,
        "nothing but the missing second command keeps H3 alive"
    );
    assert!(records(x, "H3").contains(&l.n(r)));
    assert!(
        x.next.iter().any(|n| n.between == ["H3", "H7"]),
        "names the experiment that separates them: {:?}",
        x.next
    );
}

#[test]
fn the_outcome_document_reads_back_as_the_type_it_was_written_with() {
    let out = run(&smoke(7, true)).expect("run completes");
    let read = records::outcome::Outcome::from_value(&out.outcome).expect("the outcome reads");
    assert_eq!(read, out.doc, "written and read by the same types");
    assert_eq!(read.digest.as_deref(), Some(out.digest.as_str()));
    assert_eq!(read.to_value(), out.outcome);
    // Every agent carries both views, as the engine's own answer.
    for a in ["a-1", "a-2", "a-3"] {
        let d = &read.agents[a].diagnosis;
        for view in [View::Server, View::Full] {
            let engine = diagnose(&out.frames, &out.events, view)
                .into_iter()
                .find(|x| x.agent == a)
                .unwrap();
            assert_eq!(d.view(view), Some(&engine.doc()), "{a} {view:?}");
        }
    }
}

#[test]
fn a_command_queued_while_its_agent_is_down_gets_a_diagnosis() {
    let mut spec = smoke(7, false);
    // a-3 crashes at 100 s (no FIN, no RST: its machine loses power) and a
    // command is dispatched to it at 120 s; it never comes back.
    spec.actions.push(ActionSpec {
        at: Duration::from_secs(100),
        kind: ActionKind::Crash(format::scenario::Target::Agent("a-3".into())),
    });
    spec.actions.push(ActionSpec {
        at: Duration::from_secs(120),
        kind: ActionKind::Dispatch {
            agent: "a-3".into(),
            command: "hostname".into(),
        },
    });
    let out = run(&spec).expect("run completes");
    let d = diagnose(&out.frames, &out.events, View::Server);
    let a3 = d
        .iter()
        .find(|x| x.agent == "a-3")
        .expect("a-3 is diagnosed");
    // Smoke's own dispatch at 110 s and ours at 120 s both wait.
    let ids: Vec<&str> = a3.queued.iter().map(|q| q.command_id.as_str()).collect();
    assert_eq!(ids, ["cmd-0005", "cmd-0006"], "{a3:#?}");
    for q in &a3.queued {
        assert_eq!(q.status, "pending", "{q:#?}");
        assert!(!q.events.is_empty() && !q.records.is_empty(), "{q:#?}");
        assert!(
            q.reason.contains("Pong"),
            "the last connection's evidence: {}",
            q.reason
        );
        // Never offered: no unacked command of the channel.
        assert!(!a3.unacked.contains(&q.command_id), "{a3:#?}");
    }
}
