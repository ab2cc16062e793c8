//! Edge cases of the indexing and the row rules.

use records::frame::{Dir, EventRecord, FrameKind, FrameRecord, Stage};

use super::*;

const S: u64 = 1_000_000;

#[derive(Default)]
struct L {
    f: Vec<FrameRecord>,
}

impl L {
    fn push(&mut self, r: FrameRecord) -> usize {
        self.f.push(r);
        self.f.len()
    }
    fn srv(&mut self, t: u64, conn: &str, dir: Dir, stage: Stage, frame: FrameKind) -> FrameRecord {
        FrameRecord::new(t * S, "server", conn, "a", dir, stage, frame)
    }
    fn ping(&mut self, t: u64, conn: &str, seq: u64) -> usize {
        let mut r = self.srv(t, conn, Dir::Tx, Stage::Written, FrameKind::Ping);
        r.ping_seq = Some(seq);
        self.push(r)
    }
    fn pong(&mut self, t: u64, conn: &str, seq: u64) -> usize {
        let mut r = self.srv(t, conn, Dir::Rx, Stage::Read, FrameKind::Pong);
        r.ping_seq = Some(seq);
        self.push(r)
    }
    fn text(
        &mut self,
        t: u64,
        conn: &str,
        dir: Dir,
        stage: Stage,
        msg: &str,
        id: Option<&str>,
    ) -> usize {
        let mut r = self.srv(t, conn, dir, stage, FrameKind::Text);
        r.msg = Some(msg.into());
        r.command_id = id.map(Into::into);
        self.push(r)
    }
    fn cmd(&mut self, t: u64, conn: &str, id: &str) -> (usize, usize) {
        (
            self.text(t, conn, Dir::Tx, Stage::Enqueued, "Command", Some(id)),
            self.text(t, conn, Dir::Tx, Stage::Written, "Command", Some(id)),
        )
    }
    fn ack(&mut self, t: u64, conn: &str, id: &str) -> usize {
        self.text(t, conn, Dir::Rx, Stage::Read, "CommandAck", Some(id))
    }
    fn hb(&mut self, t: u64, conn: &str) -> usize {
        self.text(t, conn, Dir::Rx, Stage::Read, "Heartbeat", None)
    }
    fn one(&self, view: View) -> Diagnosis {
        let mut d = diagnose(&self.f, &[], view);
        assert_eq!(d.len(), 1, "{d:#?}");
        d.remove(0)
    }
}

#[test]
fn a_pong_that_answers_no_written_ping_is_not_a_pong_seen() {
    let mut l = L::default();
    l.hb(1, "c1");
    l.pong(5, "c1", 7); // answers nothing
    l.ping(30, "c1", 1);
    l.cmd(40, "c1", "cmd-0001");
    l.pong(45, "c1", 9); // wrong seq
    l.hb(60, "c1");
    let d = l.one(View::Server);
    assert!(d.affected);
    assert_eq!(d.conns[0].pongs_matched, 0);
    assert_eq!(d.conns[0].pongs_unmatched, 2);
    // The Ping at 30 s is due (log ends at 60 s) and unanswered: row 3, not 1.
    assert_eq!(d.row, Some(3), "{d:#?}");
}

#[test]
fn a_pong_for_a_ping_of_another_connection_does_not_count() {
    let mut l = L::default();
    l.ping(30, "c1", 1);
    l.pong(30, "c2", 1);
    l.cmd(40, "c1", "cmd-0001");
    l.hb(60, "c1");
    let d = l.one(View::Server);
    assert_eq!(d.conns[0].pongs_matched, 0);
    assert_eq!(d.conns[1].pongs_unmatched, 1);
    assert_eq!(d.row, Some(3));
}

#[test]
fn a_command_acked_on_a_later_connection_after_a_reconnect_is_not_affected() {
    let mut l = L::default();
    l.ping(30, "c1", 1);
    l.pong(30, "c1", 1);
    l.cmd(40, "c1", "cmd-0001"); // lost with the old connection
    l.hb(50, "c2");
    l.cmd(50, "c2", "cmd-0001"); // re-offered after the reconnect
    let ack = l.ack(51, "c2", "cmd-0001");
    l.hb(120, "c2");
    let d = l.one(View::Server);
    assert!(!d.affected, "{d:#?}");
    assert_eq!(d.row, None);
    assert!(d.unacked.is_empty());
    assert_eq!(
        d.with(Status::Refuted),
        ["H1", "H2", "H3", "H4", "H5", "H7"]
    );
    assert_eq!(d.verdict("H6").unwrap().status, Status::Inconclusive);
    assert_eq!(d.verdict("H1").unwrap().records, vec![ack]);
}

#[test]
fn a_command_sent_just_before_the_log_ends_is_not_yet_due() {
    let mut l = L::default();
    l.ping(30, "c1", 1);
    l.pong(30, "c1", 1);
    l.cmd(55, "c1", "cmd-0001");
    l.hb(60, "c1");
    let d = l.one(View::Server);
    assert!(!d.affected);
    assert_eq!(
        d.with(Status::Inconclusive).len(),
        7,
        "nothing acked: {d:#?}"
    );
}

#[test]
fn a_ping_whose_pong_is_not_yet_due_does_not_make_row_3() {
    let mut l = L::default();
    l.ping(30, "c1", 1);
    l.pong(30, "c1", 1);
    l.cmd(40, "c1", "cmd-0001");
    l.ping(60, "c1", 2); // the log ends 5 s later: not due
    l.hb(65, "c1");
    assert_eq!(l.one(View::Server).row, Some(1));
}

#[test]
fn a_text_enqueued_but_not_yet_written_at_the_end_is_not_row_2() {
    let mut l = L::default();
    l.ping(30, "c1", 1);
    l.pong(30, "c1", 1);
    l.cmd(40, "c1", "cmd-0001");
    l.text(
        60,
        "c1",
        Dir::Tx,
        Stage::Enqueued,
        "Command",
        Some("cmd-0001"),
    );
    l.hb(65, "c1");
    assert_eq!(l.one(View::Server).row, Some(1));
}

#[test]
fn no_ping_evidence_means_no_row_and_everything_inconclusive() {
    let mut l = L::default();
    l.hb(1, "c1");
    let (_, w) = l.cmd(2, "c1", "cmd-0001");
    l.hb(20, "c1");
    let d = l.one(View::Server);
    assert!(d.affected);
    assert_eq!(d.row, None);
    assert_eq!(d.with(Status::Inconclusive).len(), 7);
    assert!(d.verdict("H2").unwrap().records.contains(&w));
}

#[test]
fn tls_rejections_and_quic_records_name_no_connection() {
    let mut l = L::default();
    let mut r = FrameRecord::new(
        0,
        "server",
        "c1",
        "?",
        Dir::Rx,
        Stage::Event,
        FrameKind::Tls,
    );
    r.kind = Some("rejected_unknown_certificate".into());
    l.push(r);
    l.push(FrameRecord::new(
        0,
        "server",
        "c2",
        "a",
        Dir::Rx,
        Stage::Read,
        FrameKind::Quic,
    ));
    let d = l.one(View::Server);
    assert_eq!(d.agent, "a");
    assert!(d.conns.is_empty());
}

#[test]
fn server_view_ignores_agent_points_and_agent_events() {
    let mut l = L::default();
    l.push(FrameRecord::new(
        0,
        "agent:b",
        "c1",
        "server",
        Dir::Tx,
        Stage::Written,
        FrameKind::Ping,
    ));
    let ev = EventRecord {
        t_us: 0,
        host: "agent:b".into(),
        event: "channel.bad_message".into(),
        fields: Default::default(),
    };
    assert!(diagnose(&l.f, std::slice::from_ref(&ev), View::Server).is_empty());
    let full = diagnose(&l.f, &[ev], View::Full);
    assert_eq!(full.len(), 1);
    assert_eq!(full[0].agent, "b");
}

#[test]
fn long_citation_lists_keep_their_ends() {
    let v = cite((1..=100).rev().collect());
    assert_eq!(v, [1, 2, 3, 4, 5, 6, 95, 96, 97, 98, 99, 100]);
    assert_eq!(cite(vec![3, 1, 3]), [1, 3]);
}

#[test]
fn statuses_and_views_serialize_lowercase() {
    assert_eq!(
        serde_json::to_value(Status::Inconclusive).unwrap(),
        "inconclusive"
    );
    assert_eq!(serde_json::to_value(View::Full).unwrap(), "full");
}
