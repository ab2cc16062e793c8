//! The wake / check-in reconciler's timeline in the shipped wake scenarios:
//! what the outcome cannot say (when each wake went out, what the worker did).

use std::time::Duration;

use format::scenario::Target;
use sim::run::{ActionKind, ActionSpec, RunSpec};
use sim::scenario::{catalogue_dir, resolve};

fn spec(name: &str) -> RunSpec {
    let sc = format::load(&catalogue_dir().join(format!("{name}.toml"))).unwrap();
    resolve(&sc, None).unwrap()
}

fn events(name: &str) -> Vec<(u64, String, serde_json::Value)> {
    timeline(&spec(name))
}

fn timeline(spec: &RunSpec) -> Vec<(u64, String, serde_json::Value)> {
    let out = sim::run::run(spec).unwrap();
    out.events
        .iter()
        .filter(|e| {
            e.event.starts_with("lifecycle.")
                || e.event.starts_with("queue.")
                || e.event == "server.started"
        })
        .map(|e| {
            let attempt = e.fields.get("attempt").cloned().unwrap_or_default();
            (e.t_us / 1_000_000, e.event.clone(), attempt)
        })
        .collect()
}

fn at(ev: &[(u64, String, serde_json::Value)], name: &str) -> Vec<(u64, i64)> {
    ev.iter()
        .filter(|(_, e, _)| e == name)
        .map(|(t, _, a)| (*t, a.as_i64().unwrap_or(-1)))
        .collect()
}

// The escalation of an agent enrolled at 0 s that never checks in: woken
// again at 31 and 61 s, offline at 91 s, each task run once.
fn assert_woken_three_times_then_offline(ev: &[(u64, String, serde_json::Value)]) {
    assert_eq!(
        at(ev, "lifecycle.reconcile.retriggered"),
        [(31, 2), (61, 3)],
        "{ev:?}"
    );
    assert_eq!(
        at(ev, "lifecycle.reconcile.max_attempts_reached"),
        [(91, 3)]
    );
    assert_eq!(at(ev, "queue.worker.success").len(), 3);
    assert!(at(ev, "lifecycle.reconcile.skip_not_stuck").is_empty());
}

#[test]
fn an_agent_that_never_checks_in_is_woken_three_times_then_offline_at_ninety_seconds() {
    assert_woken_three_times_then_offline(&events("wake-never-checks-in"));
}

#[test]
fn an_agent_that_checks_in_after_the_second_wake_is_not_woken_again() {
    let ev = events("wake-checks-in-second");
    assert_eq!(at(&ev, "lifecycle.reconcile.retriggered"), [(31, 2)]);
    // The task of the second wake finds it checked in; so does the task of
    // the operator's wake at 150 s, which its live session answered.
    assert_eq!(
        at(&ev, "lifecycle.reconcile.skip_not_stuck"),
        [(61, 2), (180, 1)]
    );
    assert!(at(&ev, "lifecycle.reconcile.max_attempts_reached").is_empty());
}

#[test]
fn with_the_worker_down_nothing_runs_the_queue() {
    let ev = events("wake-worker-down");
    assert_eq!(at(&ev, "lifecycle.queue.enqueued"), [(0, 1)]);
    let lifecycle = ev.iter().filter(|(_, e, _)| e != "server.started").count();
    assert_eq!(lifecycle, 1, "{ev:?}");
}

// The escalation of `wake-never-checks-in`, with the server down for a while
// after the second wake: the third wake is still due at 61 s, and the task
// queued for it runs after the reboot.
fn assert_escalation_survives_the_restart(ev: &[(u64, String, serde_json::Value)]) {
    assert_eq!(
        at(ev, "server.started")
            .iter()
            .map(|(t, _)| *t)
            .collect::<Vec<_>>(),
        [0, 45],
        "{ev:?}"
    );
    assert_woken_three_times_then_offline(ev);
}

#[test]
fn queued_reconcile_tasks_survive_a_server_restart() {
    assert_escalation_survives_the_restart(&events("wake-server-restart"));
}

#[test]
fn queued_reconcile_tasks_survive_a_server_crash() {
    // The same run with a power loss at 44 s and the reboot a second later:
    // what the store committed is durable, so nothing of the queue is lost.
    let mut spec = spec("wake-server-restart");
    let restart = spec
        .actions
        .iter_mut()
        .find(|a| a.kind == ActionKind::Restart(Target::Server))
        .expect("the scenario restarts the server");
    restart.at = Duration::from_secs(45);
    spec.actions.push(ActionSpec {
        at: Duration::from_secs(44),
        kind: ActionKind::Crash(Target::Server),
    });
    let ev = timeline(&spec);
    assert_escalation_survives_the_restart(&ev);
}

#[test]
fn an_agent_with_a_bad_token_is_refused_woken_three_times_then_offline() {
    let ev = events("wake-bad-token");
    // The same timeline as an agent that never checks in: its channel's Auth
    // and its check-ins are refused, so no check-in lands.
    assert_eq!(at(&ev, "lifecycle.queue.enqueued")[0], (0, 1));
    assert_woken_three_times_then_offline(&ev);
    assert!(at(&ev, "lifecycle.reconcile.revoked").is_empty());
    let sc = format::load(&catalogue_dir().join("wake-bad-token.toml")).unwrap();
    let out = sim::run::run(&resolve(&sc, None).unwrap()).unwrap();
    let refused: Vec<u64> = out
        .events
        .iter()
        .filter(|e| e.event == "channel.auth_refused" && e.host == "server")
        .map(|e| e.t_us)
        .collect();
    // The agent keeps retrying, with a growing backoff: gaps never shrink
    // much and the last ones are tens of seconds.
    assert!(refused.len() >= 5, "{refused:?}");
    let gaps: Vec<u64> = refused.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(*gaps.last().unwrap() >= 20_000_000, "{gaps:?}");
    let max_error = out.outcome["agents"]["pst-server"]["last_provision_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(max_error.contains("invalid agent token"), "{max_error}");
}

#[test]
fn a_revoked_agent_is_not_woken_again_and_goes_offline_at_its_deadline() {
    let ev = events("wake-revoked");
    assert_eq!(at(&ev, "lifecycle.queue.enqueued"), [(0, 1)]);
    assert_eq!(at(&ev, "lifecycle.reconcile.revoked"), [(31, 1)]);
    assert!(at(&ev, "lifecycle.reconcile.retriggered").is_empty());
    assert!(at(&ev, "lifecycle.reconcile.max_attempts_reached").is_empty());
    assert_eq!(at(&ev, "queue.worker.success"), [(31, 1)]);
}
