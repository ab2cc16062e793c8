//! One vocabulary for fault directions: `a->b` / `b->a` (from the first
//! `between` end to the second) / `both`, for every fault; the old
//! `server->agent` / `agent->server` still parse, with a note naming the
//! new spelling.

use format::scenario::{Direction, FaultKind, FrameDirection};

fn scenario(fault: &str) -> String {
    format!(
        "name = \"d\"\nsummary = \"s\"\nincident = \"i\"\nseed = 1\nduration = \"60s\"\n\n[[agent]]\nname = \"a1\"\nsite = \"pst\"\n\n[[fault]]\n{fault}\n"
    )
}

fn parse(fault: &str) -> (FaultKind, Vec<String>) {
    let (sc, notes) = format::parse_scenario_with_notes("d.toml", &scenario(fault))
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
    (sc.faults[0].kind.clone(), notes)
}

#[test]
fn drop_frames_takes_the_vocabulary_of_every_other_fault() {
    for (between, dir, want) in [
        (
            "[\"site:pst\", \"server\"]",
            "b->a",
            FrameDirection::ServerToAgent,
        ),
        (
            "[\"site:pst\", \"server\"]",
            "a->b",
            FrameDirection::AgentToServer,
        ),
        (
            "[\"server\", \"site:pst\"]",
            "a->b",
            FrameDirection::ServerToAgent,
        ),
    ] {
        let (kind, notes) = parse(&format!(
            "kind = \"drop-frames\"\nbetween = {between}\ndirection = \"{dir}\"\nframe = \"text\""
        ));
        assert!(notes.is_empty(), "{notes:?}");
        match kind {
            FaultKind::DropFrames { direction, .. } => {
                assert_eq!(direction, want, "{between} {dir}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn old_spellings_parse_with_a_note_naming_the_new_one() {
    let (kind, notes) = parse(
        "kind = \"drop-frames\"\nbetween = [\"site:pst\", \"server\"]\ndirection = \"server->agent\"\nframe = \"text\"",
    );
    assert!(matches!(
        kind,
        FaultKind::DropFrames {
            direction: FrameDirection::ServerToAgent,
            ..
        }
    ));
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("d.toml:14:13: note: "), "{}", notes[0]);
    assert!(
        notes[0].contains("\"server->agent\" is the old spelling; write \"b->a\""),
        "{}",
        notes[0]
    );
    // And the faults that never took it before take it now.
    for kind in ["half-open", "drop-payload", "block"] {
        let extra = if kind == "block" {
            "\nproto = \"tcp\""
        } else {
            ""
        };
        let (parsed, notes) = parse(&format!(
            "kind = \"{kind}\"\nbetween = [\"server\", \"site:pst\"]\ndirection = \"agent->server\"{extra}"
        ));
        let direction = match parsed {
            FaultKind::HalfOpen { direction, .. }
            | FaultKind::DropPayload { direction, .. }
            | FaultKind::Block { direction, .. } => direction,
            other => panic!("{other:?}"),
        };
        assert_eq!(direction, Direction::BToA, "{kind}");
        assert!(notes[0].contains("write \"b->a\""), "{kind}: {notes:?}");
    }
}

#[test]
fn old_spellings_need_the_server_as_one_end_and_both_stays_refused() {
    let e = format::parse_scenario_with_notes(
        "d.toml",
        &scenario("kind = \"half-open\"\nbetween = [\"site:pst\", \"agent:a1\"]\ndirection = \"server->agent\""),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("needs \"server\" as one end"), "{e}");
    let e = format::parse_scenario_with_notes(
        "d.toml",
        &scenario("kind = \"drop-frames\"\nbetween = [\"site:pst\", \"server\"]\ndirection = \"both\"\nframe = \"text\""),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot be \"both\""), "{e}");
}
