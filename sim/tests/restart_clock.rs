//! Deadlines the server stores keep the calendar across its restarts: a
//! restarted process's monotonic clock starts again at 0 (the simulator
//! models that, as a real machine has it), so a deadline stored on it would
//! fire late by the whole uptime before the restart. Stored on the calendar,
//! a wake deadline and a command's offer timeout fire when they are due.

use std::time::Duration;

use format::scenario::Target;
use sim::run::{ActionKind, ActionSpec, RunSpec};
use sim::scenario::{catalogue_dir, resolve};

fn spec(name: &str) -> RunSpec {
    let sc = format::load(&catalogue_dir().join(format!("{name}.toml"))).unwrap();
    resolve(&sc, None).unwrap()
}

fn at(s: u64, kind: ActionKind) -> ActionSpec {
    ActionSpec {
        at: Duration::from_secs(s),
        kind,
    }
}

// (seconds, event, attempt) of the server's events named `name`.
fn times(out: &sim::run::RunOutput, name: &str) -> Vec<(f64, i64)> {
    out.events
        .iter()
        .filter(|e| e.host == "server" && e.event == name)
        .map(|e| {
            let attempt = e.fields.get("attempt").and_then(|a| a.as_i64());
            (e.t_us as f64 / 1e6, attempt.unwrap_or(-1))
        })
        .collect()
}

#[test]
fn a_wake_deadline_fires_on_the_calendar_after_the_server_was_down_mid_wake() {
    // The agent never checks in (its command channel is blocked); it is
    // woken at enrollment (about 1 s), due to check in by about 31 s. The
    // server loses power at 20 s and boots again at 40 s, past the
    // deadline: the task must run right after the boot, not 31 s of the
    // new process's uptime later (at about 71 s).
    let mut spec = spec("wake-server-restart");
    spec.actions = vec![
        at(20, ActionKind::Crash(Target::Server)),
        at(40, ActionKind::Restart(Target::Server)),
    ];
    let out = sim::run::run(&spec).unwrap();
    let started = times(&out, "server.started");
    assert_eq!(started.len(), 2, "{started:?}");
    assert!((40.0..41.0).contains(&started[1].0), "{started:?}");
    let retriggered = times(&out, "lifecycle.reconcile.retriggered");
    assert!(!retriggered.is_empty(), "no second wake: {:?}", out.events);
    let (t2, a2) = retriggered[0];
    assert_eq!(a2, 2);
    assert!(
        (40.0..43.0).contains(&t2),
        "the overdue wake ran at {t2} s, not right after the boot at 40 s"
    );
    // The escalation goes on from the new wakes, on the same calendar.
    assert_eq!(retriggered.len(), 2, "{retriggered:?}");
    let (t3, a3) = retriggered[1];
    assert_eq!(a3, 3);
    assert!((t3 - t2 - 30.0).abs() < 1.5, "{retriggered:?}");
    let maxed = times(&out, "lifecycle.reconcile.max_attempts_reached");
    assert_eq!(maxed.len(), 1, "{maxed:?}");
    assert!((maxed[0].0 - t3 - 30.0).abs() < 1.5, "{maxed:?} after {t3}");
    assert_eq!(out.outcome["agents"]["pst-server"]["status"], "offline");
}

#[test]
fn a_wake_deadline_is_kept_across_a_clean_restart_before_it() {
    // Restarted at 20 s, before the 31 s deadline: the deadline is still
    // 31 s of the calendar, not 31 s after the restart (51 s).
    let mut spec = spec("wake-server-restart");
    spec.actions = vec![at(20, ActionKind::Restart(Target::Server))];
    let out = sim::run::run(&spec).unwrap();
    let retriggered = times(&out, "lifecycle.reconcile.retriggered");
    assert_eq!(retriggered.len(), 2, "{retriggered:?}");
    assert!((30.0..33.0).contains(&retriggered[0].0), "{retriggered:?}");
    assert!((60.0..63.0).contains(&retriggered[1].0), "{retriggered:?}");
    // The task's `due_us` in the event log is on the log's timeline.
    let enq = out
        .events
        .iter()
        .find(|e| e.event == "lifecycle.queue.enqueued")
        .expect("the enrollment's wake queued a task");
    let due = enq.fields["due_us"].as_u64().unwrap();
    assert_eq!(due, enq.t_us + 30_000_000, "{enq:?}");
}

#[test]
fn a_command_offer_times_out_on_the_calendar_across_a_server_restart() {
    // pst-1 is online by 60 s. A command dispatched at 62 s is offered on
    // its session, but the session's Text writes never complete (the
    // `stall-writes` fault), and its machine loses power at 63 s, so no
    // heartbeat asks for it again. Never acknowledged, it times out 60 s
    // after the offer (about 122 s), though the server restarted at 90 s
    // in between (on the process's clock it would be about 152 s).
    let mut spec = spec("smoke");
    spec.stall_writes = vec![("pst-1".into(), proto::frame::FrameKind::Text)];
    spec.actions = vec![
        at(
            62,
            ActionKind::Dispatch {
                agent: "pst-1".into(),
                command: "hostname".into(),
            },
        ),
        at(63, ActionKind::Crash(Target::Agent("pst-1".into()))),
        at(90, ActionKind::Restart(Target::Server)),
    ];
    let out = sim::run::run(&spec).unwrap();
    assert_eq!(times(&out, "server.started").len(), 2);
    let dispatched = times(&out, "command.dispatched");
    assert_eq!(dispatched.len(), 1);
    let timed_out: Vec<&proto::frame::EventRecord> = out
        .events
        .iter()
        .filter(|e| e.event == "command.timed_out")
        .collect();
    assert_eq!(timed_out.len(), 1, "{:?}", out.outcome["commands"]);
    let t = timed_out[0].t_us as f64 / 1e6;
    assert!(
        (121.0..124.0).contains(&t),
        "timed out at {t} s, not 60 s after the offer at {} s",
        dispatched[0].0
    );
    assert_eq!(timed_out[0].fields["attempts"], 1);
    assert_eq!(
        out.outcome["commands"]["cmd-0001"]["status"], "timed-out",
        "{}",
        out.outcome["commands"]
    );
}
