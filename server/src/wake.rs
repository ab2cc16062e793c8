//! The wake / check-in reconciler: a sans-IO brain deciding, for each agent
//! the server provisioned or updated, when to wake it again and when to give
//! up (INCIDENTS.md, section 4). Inputs carry an explicit `now_us`; the
//! driver persists the state and the queued reconcile task together, sends
//! the wakes and logs the events.
//!
//! - A wake (provisioning at enrollment, or an operator's `wake`) is attempt
//!   1 and queues a reconcile task at the check-in deadline (30 s).
//! - A check-in (an authenticated command-channel session, or a Heartbeat)
//!   resets the attempts to 0 and clears the deadline.
//! - A reconcile task that runs at the deadline with no check-in since the
//!   wake wakes again, at most `max_attempts` wakes in all; after the last
//!   one the agent is `offline` with a `last_provision_error`, and the
//!   escalation stops. When the server refused the agent's check-ins in the
//!   meantime (a bad agent token), the error says so.
//! - Before waking again, the worker checks that the agent is still enrolled
//!   and not revoked: a revoked (or deleted) agent goes straight to
//!   `offline` with a `last_provision_error` saying so, and gets no wake.
//!
//! The fleet check-ins (HTTPS, `POST /api/agents/<id>/checkin`) are not
//! check-ins for this reconciler: a wake asks the agent's command channel to
//! come back, so only the channel's session or Heartbeat answers it.

use serde::{Deserialize, Serialize};

/// Reconciler policy (field values from INCIDENTS.md, section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WakePolicy {
    /// How long after each wake the agent has to check in.
    pub checkin_deadline_us: u64,
    /// Wakes in all before the agent is marked offline.
    pub max_attempts: u32,
}

impl Default for WakePolicy {
    fn default() -> Self {
        WakePolicy {
            checkin_deadline_us: 30_000_000,
            max_attempts: 3,
        }
    }
}

/// Where an agent is in its provisioning life, as the reconciler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Woken, waiting for a check-in.
    Provisioning,
    /// Checked in since the last wake.
    CheckedIn,
    /// No check-in after the last wake: escalation stopped.
    Offline,
}

/// One agent's wake state (stored in the server's `wake` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WakeState {
    /// The agent.
    pub agent_id: String,
    /// Its name, for events and reports.
    pub agent_name: String,
    /// Where it is.
    pub lifecycle: Lifecycle,
    /// Wakes sent since its last check-in.
    pub wake_attempts: u32,
    /// When the current wake's check-in is due; `None` when nothing is awaited.
    pub checkin_deadline_us: Option<u64>,
    /// When the last wake was sent.
    pub last_wake_us: Option<u64>,
    /// When it last checked in.
    pub last_checkin_us: Option<u64>,
    /// Why provisioning failed, once escalation stopped.
    pub last_provision_error: Option<String>,
    /// Why the server last refused a check-in of the agent since the last
    /// wake (a bad agent token), if it did.
    #[serde(default)]
    pub last_refusal: Option<String>,
}

impl WakeState {
    /// The state of an agent nothing has been asked of yet.
    pub fn new(agent_id: &str, agent_name: &str) -> WakeState {
        WakeState {
            agent_id: agent_id.into(),
            agent_name: agent_name.into(),
            lifecycle: Lifecycle::CheckedIn,
            wake_attempts: 0,
            checkin_deadline_us: None,
            last_wake_us: None,
            last_checkin_us: None,
            last_provision_error: None,
            last_refusal: None,
        }
    }
}

/// A delayed reconcile task (stored in the server's `reconcile_queue`
/// table, one per agent, so it survives a restart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileTask {
    /// The agent; the key of the task.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
    /// The wake attempt the task checks on.
    pub attempt: u32,
    /// When the worker runs it.
    pub due_us: u64,
}

/// What a reconcile task run decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconcile {
    /// The agent checked in (or escalation already stopped): nothing to do.
    SkipNotStuck,
    /// The deadline has not come yet: run again at `due_us`.
    Deferred {
        /// When to run again.
        due_us: u64,
    },
    /// No check-in by the deadline: wake again (this is wake `attempt`) and
    /// run again at `due_us`.
    Retriggered {
        /// The new wake's attempt number.
        attempt: u32,
        /// The new deadline.
        due_us: u64,
    },
    /// The last wake went unanswered: the agent is offline, escalation stops.
    MaxAttemptsReached,
    /// The agent is revoked or no longer enrolled: offline at once, no wake.
    Revoked,
}

/// Whether the agent a reconcile task is about may still be woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrollment {
    /// Enrolled, credential valid.
    Enrolled,
    /// Enrolled, but its credential was revoked.
    Revoked,
    /// No such agent any more.
    Unknown,
}

impl WakePolicy {
    /// The server provisioned or updated the agent: send a wake (attempt 1
    /// of a new escalation) and queue the returned task.
    pub fn handle_wake(&self, s: &mut WakeState, now_us: u64) -> ReconcileTask {
        s.lifecycle = Lifecycle::Provisioning;
        s.wake_attempts = 1;
        s.last_wake_us = Some(now_us);
        s.last_provision_error = None;
        s.last_refusal = None;
        let due_us = now_us + self.checkin_deadline_us;
        s.checkin_deadline_us = Some(due_us);
        ReconcileTask {
            agent_id: s.agent_id.clone(),
            agent_name: s.agent_name.clone(),
            attempt: 1,
            due_us,
        }
    }

    /// The agent checked in; true when the state changed (persist it).
    pub fn handle_checkin(&self, s: &mut WakeState, now_us: u64) -> bool {
        let changed = s.lifecycle != Lifecycle::CheckedIn
            || s.wake_attempts != 0
            || s.checkin_deadline_us.is_some()
            || s.last_provision_error.is_some();
        s.lifecycle = Lifecycle::CheckedIn;
        s.wake_attempts = 0;
        s.checkin_deadline_us = None;
        s.last_provision_error = None;
        s.last_refusal = None;
        s.last_checkin_us = Some(now_us);
        changed
    }

    /// The server refused a check-in of the agent (`reason`, e.g. a bad
    /// agent token); true when the state changed (persist it). Remembered
    /// only while a check-in is awaited, for the provision error.
    pub fn handle_refused(&self, s: &mut WakeState, reason: &str) -> bool {
        if s.lifecycle != Lifecycle::Provisioning || s.last_refusal.as_deref() == Some(reason) {
            return false;
        }
        s.last_refusal = Some(reason.into());
        true
    }

    /// A reconcile task came due; `enrollment` is what the store says about
    /// the agent now.
    pub fn handle_due(&self, s: &mut WakeState, now_us: u64, enrollment: Enrollment) -> Reconcile {
        let deadline = match (s.lifecycle, s.checkin_deadline_us) {
            (Lifecycle::Provisioning, Some(d)) => d,
            _ => return Reconcile::SkipNotStuck,
        };
        if enrollment != Enrollment::Enrolled {
            s.lifecycle = Lifecycle::Offline;
            s.checkin_deadline_us = None;
            s.last_provision_error = Some(match enrollment {
                Enrollment::Revoked => "the agent's credential was revoked; no wake was sent. \
                     Re-enroll the agent (install it again) to provision it"
                    .into(),
                _ => "the agent is no longer enrolled; no wake was sent. \
                     Install it again to provision it"
                    .into(),
            });
            return Reconcile::Revoked;
        }
        if now_us < deadline {
            return Reconcile::Deferred { due_us: deadline };
        }
        if s.wake_attempts >= self.max_attempts {
            s.lifecycle = Lifecycle::Offline;
            s.checkin_deadline_us = None;
            let cause = match &s.last_refusal {
                Some(r) => format!(
                    "the server refused its check-ins ({r}): fix the agent's credential \
                     (re-enroll it), then wake it"
                ),
                None => "the agent is not running, or its command channel cannot reach the \
                     server: check the agent service and the path to the command channel, \
                     then wake it"
                    .into(),
            };
            s.last_provision_error = Some(format!(
                "no check-in after {} wakes ({} s deadline each); {cause}",
                s.wake_attempts,
                self.checkin_deadline_us / 1_000_000
            ));
            return Reconcile::MaxAttemptsReached;
        }
        s.wake_attempts += 1;
        s.last_wake_us = Some(now_us);
        let due_us = now_us + self.checkin_deadline_us;
        s.checkin_deadline_us = Some(due_us);
        Reconcile::Retriggered {
            attempt: s.wake_attempts,
            due_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    const E: Enrollment = Enrollment::Enrolled;

    fn state() -> WakeState {
        WakeState::new("a", "pst-1")
    }

    #[test]
    fn no_checkin_wakes_three_times_then_offline_at_ninety_seconds() {
        let p = WakePolicy::default();
        let mut s = state();
        let t = p.handle_wake(&mut s, 5 * S);
        assert_eq!((t.attempt, t.due_us), (1, 35 * S));
        assert_eq!(s.lifecycle, Lifecycle::Provisioning);
        assert_eq!(
            p.handle_due(&mut s, 35 * S, E),
            Reconcile::Retriggered {
                attempt: 2,
                due_us: 65 * S
            }
        );
        assert_eq!(
            p.handle_due(&mut s, 65 * S, E),
            Reconcile::Retriggered {
                attempt: 3,
                due_us: 95 * S
            }
        );
        assert_eq!(s.last_provision_error, None);
        assert_eq!(
            p.handle_due(&mut s, 95 * S, E),
            Reconcile::MaxAttemptsReached
        );
        assert_eq!(s.lifecycle, Lifecycle::Offline);
        assert_eq!(s.wake_attempts, 3);
        assert_eq!(s.checkin_deadline_us, None);
        let err = s.last_provision_error.clone().unwrap();
        assert!(err.contains("no check-in after 3 wakes"), "{err}");
        // Escalation stopped: a stray task changes nothing.
        assert_eq!(p.handle_due(&mut s, 200 * S, E), Reconcile::SkipNotStuck);
        assert_eq!(s.wake_attempts, 3);
    }

    #[test]
    fn a_checkin_after_the_second_wake_resets_and_the_task_skips() {
        let p = WakePolicy::default();
        let mut s = state();
        p.handle_wake(&mut s, 0);
        assert!(matches!(
            p.handle_due(&mut s, 30 * S, E),
            Reconcile::Retriggered { attempt: 2, .. }
        ));
        assert!(p.handle_checkin(&mut s, 31 * S));
        assert_eq!(s.wake_attempts, 0);
        assert_eq!(s.checkin_deadline_us, None);
        assert_eq!(s.lifecycle, Lifecycle::CheckedIn);
        assert_eq!(s.last_checkin_us, Some(31 * S));
        assert_eq!(p.handle_due(&mut s, 60 * S, E), Reconcile::SkipNotStuck);
        // Further heartbeats change nothing worth a write.
        assert!(!p.handle_checkin(&mut s, 61 * S));
    }

    #[test]
    fn a_task_run_before_the_deadline_is_deferred_to_it() {
        let p = WakePolicy::default();
        let mut s = state();
        p.handle_wake(&mut s, 0);
        // An operator wake moved the deadline after the task was queued.
        p.handle_wake(&mut s, 10 * S);
        assert_eq!(
            p.handle_due(&mut s, 30 * S, E),
            Reconcile::Deferred { due_us: 40 * S }
        );
        assert_eq!(s.wake_attempts, 1);
        assert!(matches!(
            p.handle_due(&mut s, 40 * S, E),
            Reconcile::Retriggered { attempt: 2, .. }
        ));
    }

    #[test]
    fn a_new_wake_after_offline_starts_a_fresh_escalation() {
        let p = WakePolicy::default();
        let mut s = state();
        p.handle_wake(&mut s, 0);
        for t in [30, 60] {
            p.handle_due(&mut s, t * S, E);
        }
        assert_eq!(
            p.handle_due(&mut s, 90 * S, E),
            Reconcile::MaxAttemptsReached
        );
        let t = p.handle_wake(&mut s, 100 * S);
        assert_eq!((t.attempt, s.wake_attempts), (1, 1));
        assert_eq!(s.lifecycle, Lifecycle::Provisioning);
        assert_eq!(s.last_provision_error, None);
        // And a late check-in clears an offline verdict.
        p.handle_due(&mut s, 130 * S, E);
        assert!(p.handle_checkin(&mut s, 131 * S));
        assert_eq!(s.lifecycle, Lifecycle::CheckedIn);
    }

    #[test]
    fn a_revoked_agent_goes_offline_at_its_task_without_a_wake() {
        let p = WakePolicy::default();
        for (enrollment, says) in [
            (Enrollment::Revoked, "credential was revoked"),
            (Enrollment::Unknown, "no longer enrolled"),
        ] {
            let mut s = state();
            p.handle_wake(&mut s, 0);
            // Even before the deadline: no point waiting for a check-in the
            // server would refuse.
            assert_eq!(p.handle_due(&mut s, 10 * S, enrollment), Reconcile::Revoked);
            assert_eq!(s.lifecycle, Lifecycle::Offline);
            assert_eq!(s.wake_attempts, 1, "no further wake");
            assert_eq!(s.checkin_deadline_us, None);
            let err = s.last_provision_error.clone().unwrap();
            assert!(err.contains(says), "{err}");
            assert!(err.contains("no wake was sent"), "{err}");
            // Escalation stopped.
            assert_eq!(
                p.handle_due(&mut s, 40 * S, enrollment),
                Reconcile::SkipNotStuck
            );
        }
    }

    #[test]
    fn refused_checkins_are_named_in_the_provision_error() {
        let p = WakePolicy::default();
        let mut s = state();
        // Not provisioning: nothing to remember.
        assert!(!p.handle_refused(&mut s, "invalid agent token"));
        p.handle_wake(&mut s, 0);
        assert!(p.handle_refused(&mut s, "invalid agent token"));
        assert!(!p.handle_refused(&mut s, "invalid agent token"));
        for t in [30, 60] {
            assert!(matches!(
                p.handle_due(&mut s, t * S, E),
                Reconcile::Retriggered { .. }
            ));
        }
        assert_eq!(
            p.handle_due(&mut s, 90 * S, E),
            Reconcile::MaxAttemptsReached
        );
        let err = s.last_provision_error.clone().unwrap();
        assert!(err.contains("no check-in after 3 wakes"), "{err}");
        assert!(
            err.contains("refused its check-ins (invalid agent token)"),
            "{err}"
        );
        // A check-in clears it; a new wake starts clean.
        assert!(p.handle_checkin(&mut s, 100 * S));
        assert_eq!(s.last_refusal, None);
    }
}
