//! A bounded property test of the frame/event log reader (issue 15, done
//! means; issue 17, fuzzing): on any bytes it returns, never panics, and
//! reads no record past the bound; on a log of valid records cut anywhere
//! it returns every whole record before the cut.

use proptest::prelude::*;
use records::frame::{Dir, EventRecord, FrameKind, FrameRecord, Stage};
use records::read::{merge, read_jsonl, ReadError};

fn frame() -> impl Strategy<Value = FrameRecord> {
    (
        any::<u64>(),
        "\\PC{0,12}",
        "[a-z0-9-]{1,10}",
        any::<String>(),
        prop::sample::select(vec![Dir::Tx, Dir::Rx]),
        prop::sample::select(vec![
            Stage::Enqueued,
            Stage::Written,
            Stage::Read,
            Stage::Dropped,
        ]),
        prop::sample::select(vec![
            FrameKind::Text,
            FrameKind::Ping,
            FrameKind::Pong,
            FrameKind::Close,
        ]),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<String>()),
    )
        .prop_map(|(t, point, conn, peer, dir, stage, kind, seq, msg)| {
            let mut r = FrameRecord::new(t, &point, &conn, &peer, dir, stage, kind);
            r.ping_seq = seq;
            r.msg = msg.map(Into::into);
            r
        })
}

/// `n` cases, or PROPTEST_CASES when set (for long runs).
fn cases(n: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    #[test]
    fn any_bytes_give_records_or_an_error_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        match read_jsonl::<FrameRecord>(&bytes[..], "x", "frame log") {
            Ok(log) => prop_assert_eq!(log.records.len(), log.lines.len()),
            Err(ReadError::Bad { line, .. } | ReadError::TooLong { line, .. }) => prop_assert!(line >= 1),
            Err(e) => prop_assert!(false, "{e}"),
        }
        let _ = read_jsonl::<EventRecord>(&bytes[..], "x", "event log");
    }

    #[test]
    fn a_valid_log_cut_anywhere_keeps_every_whole_record(recs in prop::collection::vec(frame(), 0..20), cut in any::<prop::sample::Index>()) {
        let text: String = recs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        let at = if text.is_empty() { 0 } else { cut.index(text.len() + 1) };
        let bytes = &text.as_bytes()[..at];
        let log = read_jsonl::<FrameRecord>(bytes, "x", "frame log").unwrap();
        let whole = bytes.iter().filter(|&&b| b == b'\n').count();
        prop_assert!(log.records.len() == whole || log.records.len() == whole + 1);
        prop_assert_eq!(&log.records[..whole], &recs[..whole]);
        prop_assert_eq!(log.cut_last_line.is_some(), log.records.len() == whole && at > 0 && bytes[at - 1] != b'\n');
    }

    #[test]
    fn merge_keeps_every_record_and_each_logs_order(a in prop::collection::vec(0u64..50, 0..30), b in prop::collection::vec(0u64..50, 0..30)) {
        let log = |v: &Vec<u64>| records::read::Log { records: v.clone(), lines: (1..=v.len()).collect(), cut_last_line: None };
        let (out, src) = merge(vec![log(&a), log(&b)], |t| *t);
        prop_assert_eq!(out.len(), a.len() + b.len());
        for (k, v) in [(0, &a), (1, &b)] {
            let mine: Vec<u64> = out.iter().zip(&src).filter(|(_, s)| s.log == k).map(|(t, _)| *t).collect();
            prop_assert_eq!(&mine, v);
        }
    }
}
