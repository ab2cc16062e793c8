//! The agent's self-upgrade (INCIDENTS.md section 5, the field's ADR-022):
//! a sans-IO state machine; [`driver`] runs it with I/O.
//!
//! Staging (download + SHA-256 verify) -> Verifying (this, the old agent,
//! runs the new build's self-test) -> CutoverReady (the active version on
//! disk was switched atomically and the new agent started beside this one)
//! -> the operator's `UpgradeStop` -> Done (this agent exits). A stage
//! failure, a failed self-test, a failed cutover, the new agent exiting, or
//! no stop within [`UpgradePolicy::new_heartbeat_timeout_us`] of the cutover
//! (the operator sends the stop only once it saw the new version heartbeat)
//! reverts: the active version is switched back and the new agent stopped.
//! No version is ever deleted.
//!
//! The agent never stops itself on its own judgement: only a stop that
//! arrives while armed in CutoverReady does it. A stop in any other phase
//! (the new agent receives one too, a duplicate after a server restart) is
//! ignored.
//!
//! Inputs are `handle_*(now_us, ..)`; outputs are [`UpgradeState::poll_action`]
//! and [`UpgradeState::poll_timeout`]; every phase change is recorded as a
//! [`Transition`] for the event log.

pub mod driver;
pub mod signal;

use std::collections::VecDeque;

use serde::Serialize;

/// Timing of the upgrade (field values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// How long after the cutover the old agent waits for the operator's
    /// stop (that is: for the operator to see the new version heartbeat)
    /// before it reverts. Two minutes: four heartbeat intervals.
    pub new_heartbeat_timeout_us: u64,
}

impl Default for UpgradePolicy {
    fn default() -> Self {
        UpgradePolicy {
            new_heartbeat_timeout_us: 120_000_000,
        }
    }
}

/// Where an upgrade stands on the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// No upgrade was asked of this agent.
    Idle,
    /// Downloading and verifying the new build.
    Staging,
    /// Running the new build's self-test.
    Verifying,
    /// Switched and started the new agent; waiting for the operator's stop.
    CutoverReady,
    /// The operator's stop arrived: the new version took over, this agent exits.
    Done,
    /// Switched back to this version; the new agent is stopped.
    Reverted,
}

impl Phase {
    /// The phase as reports and events spell it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Staging => "staging",
            Phase::Verifying => "verifying",
            Phase::CutoverReady => "cutover-ready",
            Phase::Done => "done",
            Phase::Reverted => "reverted",
        }
    }

    /// Whether the upgrade is over (or never started).
    pub fn is_settled(self) -> bool {
        matches!(self, Phase::Idle | Phase::Done | Phase::Reverted)
    }
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Download the build of `version` and verify it against `sha256`;
    /// answer with [`UpgradeState::handle_staged`].
    Stage {
        /// The new version.
        version: String,
        /// Its announced SHA-256 (hex).
        sha256: String,
    },
    /// Run the staged build's self-test; answer with
    /// [`UpgradeState::handle_self_test`].
    SelfTest {
        /// The new version.
        version: String,
    },
    /// Switch the active version to `version` atomically and start it
    /// beside this agent; answer with [`UpgradeState::handle_cutover`].
    Cutover {
        /// The new version.
        version: String,
    },
    /// Undo: switch the active version back to `to` (when `switch_back`)
    /// and stop `stop` (when set). Idempotent.
    Revert {
        /// This agent's own version.
        to: String,
        /// Whether the active version was (or may have been) switched.
        switch_back: bool,
        /// The new version's agent to stop.
        stop: Option<String>,
    },
    /// The operator's stop: the new version took over; this agent exits.
    Exit,
}

/// One phase change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// From.
    pub from: Phase,
    /// To.
    pub to: Phase,
    /// When (microseconds).
    pub at_us: u64,
    /// The version the upgrade goes to.
    pub to_version: String,
    /// Why, for a revert.
    pub reason: Option<String>,
}

/// The upgrade state of one running agent.
#[derive(Debug)]
pub struct UpgradeState {
    policy: UpgradePolicy,
    running: String,
    phase: Phase,
    target: Option<(String, String)>,
    deadline_us: Option<u64>,
    reason: Option<String>,
    actions: VecDeque<Action>,
    transitions: VecDeque<Transition>,
}

impl UpgradeState {
    /// The state of an agent running `running_version` with no upgrade asked.
    pub fn new(policy: UpgradePolicy, running_version: &str) -> UpgradeState {
        UpgradeState {
            policy,
            running: running_version.into(),
            phase: Phase::Idle,
            target: None,
            deadline_us: None,
            reason: None,
            actions: VecDeque::new(),
            transitions: VecDeque::new(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The version the last upgrade went (or goes) to.
    pub fn target_version(&self) -> Option<&str> {
        self.target.as_ref().map(|t| t.0.as_str())
    }

    /// Why the last upgrade reverted.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    fn go(&mut self, now_us: u64, to: Phase) {
        self.transitions.push_back(Transition {
            from: self.phase,
            to,
            at_us: now_us,
            to_version: self.target_version().unwrap_or_default().into(),
            reason: if to == Phase::Reverted {
                self.reason.clone()
            } else {
                None
            },
        });
        self.phase = to;
    }

    fn revert(&mut self, now_us: u64, reason: String, switched: bool) {
        let new = self.target_version().map(str::to_string);
        self.reason = Some(reason);
        self.deadline_us = None;
        self.actions.push_back(Action::Revert {
            to: self.running.clone(),
            switch_back: switched,
            stop: if switched { new } else { None },
        });
        self.go(now_us, Phase::Reverted);
    }

    /// The operator asks for an upgrade to `version` (`sha256`). Returns
    /// false (and changes nothing) while an upgrade is under way, for the
    /// version this agent runs, or for a target this agent already settled
    /// (a re-sent request after a server restart: the settled phase is
    /// reported again instead).
    pub fn handle_start(&mut self, now_us: u64, version: &str, sha256: &str) -> bool {
        if !self.phase.is_settled()
            || version == self.running
            || self.target_version() == Some(version)
        {
            return false;
        }
        self.target = Some((version.into(), sha256.into()));
        self.reason = None;
        self.actions.push_back(Action::Stage {
            version: version.into(),
            sha256: sha256.into(),
        });
        self.go(now_us, Phase::Staging);
        true
    }

    /// The download and verification finished.
    pub fn handle_staged(&mut self, now_us: u64, result: Result<(), String>) {
        if self.phase != Phase::Staging {
            return;
        }
        match result {
            Ok(()) => {
                let version = self.target_version().unwrap_or_default().to_string();
                self.actions.push_back(Action::SelfTest { version });
                self.go(now_us, Phase::Verifying);
            }
            Err(e) => self.revert(now_us, format!("stage failed: {e}"), false),
        }
    }

    /// The new build's self-test finished.
    pub fn handle_self_test(&mut self, now_us: u64, result: Result<(), String>) {
        if self.phase != Phase::Verifying {
            return;
        }
        match result {
            Ok(()) => {
                let version = self.target_version().unwrap_or_default().to_string();
                self.actions.push_back(Action::Cutover { version });
                self.go(now_us, Phase::CutoverReady);
                // Armed from here; the deadline starts once the new agent runs.
            }
            Err(e) => self.revert(now_us, format!("self-test failed: {e}"), false),
        }
    }

    /// The switch and the start of the new agent finished.
    pub fn handle_cutover(&mut self, now_us: u64, result: Result<(), String>) {
        if self.phase != Phase::CutoverReady || self.deadline_us.is_some() {
            return;
        }
        match result {
            Ok(()) => self.deadline_us = Some(now_us + self.policy.new_heartbeat_timeout_us),
            Err(e) => self.revert(now_us, format!("cutover failed: {e}"), true),
        }
    }

    /// The new agent exited on its own (crashed) while this one waits.
    pub fn handle_new_exited(&mut self, now_us: u64) {
        if self.phase == Phase::CutoverReady {
            self.revert(now_us, "the new version exited".into(), true);
        }
    }

    /// The operator's `UpgradeStop` for `version` arrived. Returns whether
    /// this agent acts on it (only when armed in CutoverReady for that version).
    pub fn handle_stop(&mut self, now_us: u64, version: &str) -> bool {
        if self.phase != Phase::CutoverReady || self.target_version() != Some(version) {
            return false;
        }
        self.deadline_us = None;
        self.actions.push_back(Action::Exit);
        self.go(now_us, Phase::Done);
        true
    }

    /// Time passed; call at [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now_us: u64) {
        if self.phase == Phase::CutoverReady && self.deadline_us.is_some_and(|d| now_us >= d) {
            let secs = self.policy.new_heartbeat_timeout_us / 1_000_000;
            self.revert(
                now_us,
                format!("no stop from the operator within {secs} s of the cutover: the new version did not heartbeat"),
                true,
            );
        }
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline_us
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next phase change to log.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        self.transitions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn started() -> UpgradeState {
        let mut u = UpgradeState::new(UpgradePolicy::default(), "1.0.0");
        assert!(u.handle_start(10 * S, "1.1.0", "abc"));
        assert_eq!(
            u.poll_action(),
            Some(Action::Stage {
                version: "1.1.0".into(),
                sha256: "abc".into()
            })
        );
        u
    }

    fn armed() -> UpgradeState {
        let mut u = started();
        u.handle_staged(11 * S, Ok(()));
        assert_eq!(
            u.poll_action(),
            Some(Action::SelfTest {
                version: "1.1.0".into()
            })
        );
        u.handle_self_test(12 * S, Ok(()));
        assert_eq!(
            u.poll_action(),
            Some(Action::Cutover {
                version: "1.1.0".into()
            })
        );
        assert_eq!(u.phase(), Phase::CutoverReady);
        assert_eq!(
            u.poll_timeout(),
            None,
            "no deadline before the new agent runs"
        );
        u.handle_cutover(13 * S, Ok(()));
        assert_eq!(u.poll_timeout(), Some(133 * S));
        u
    }

    fn phases(u: &mut UpgradeState) -> Vec<(&'static str, u64)> {
        std::iter::from_fn(|| u.poll_transition())
            .map(|t| (t.to.name(), t.at_us / S))
            .collect()
    }

    fn full_revert() -> Action {
        Action::Revert {
            to: "1.0.0".into(),
            switch_back: true,
            stop: Some("1.1.0".into()),
        }
    }

    #[test]
    fn the_operators_stop_completes_the_upgrade_and_the_old_agent_exits() {
        let mut u = armed();
        assert!(
            !u.handle_stop(20 * S, "9.9.9"),
            "a stop for another version"
        );
        assert!(u.handle_stop(20 * S, "1.1.0"));
        assert_eq!(u.poll_action(), Some(Action::Exit));
        assert_eq!(u.phase(), Phase::Done);
        assert_eq!(u.poll_timeout(), None);
        // A duplicate stop (both agents get it; a restarted server) does nothing.
        assert!(!u.handle_stop(21 * S, "1.1.0"));
        u.handle_timeout(500 * S);
        assert_eq!(u.poll_action(), None);
        assert_eq!(
            phases(&mut u),
            [
                ("staging", 10),
                ("verifying", 11),
                ("cutover-ready", 12),
                ("done", 20)
            ]
        );
    }

    #[test]
    fn a_stage_failure_reverts_without_touching_the_active_version() {
        let mut u = started();
        u.handle_staged(11 * S, Err("sha256 mismatch".into()));
        assert_eq!(
            u.poll_action(),
            Some(Action::Revert {
                to: "1.0.0".into(),
                switch_back: false,
                stop: None
            })
        );
        assert_eq!(u.phase(), Phase::Reverted);
        assert!(u.reason().unwrap().contains("sha256 mismatch"));
        // Late results of a reverted upgrade change nothing.
        u.handle_self_test(12 * S, Ok(()));
        assert!(!u.handle_stop(13 * S, "1.1.0"));
        assert_eq!(u.poll_action(), None);
    }

    #[test]
    fn a_failed_self_test_reverts() {
        let mut u = started();
        u.handle_staged(11 * S, Ok(()));
        u.poll_action();
        u.handle_self_test(12 * S, Err("exit 1".into()));
        assert_eq!(
            u.poll_action(),
            Some(Action::Revert {
                to: "1.0.0".into(),
                switch_back: false,
                stop: None
            })
        );
        assert!(u.reason().unwrap().starts_with("self-test failed"));
    }

    #[test]
    fn a_failed_cutover_switches_back_and_stops_the_new_agent() {
        let mut u = started();
        u.handle_staged(11 * S, Ok(()));
        u.handle_self_test(12 * S, Ok(()));
        u.poll_action();
        u.poll_action();
        u.handle_cutover(13 * S, Err("disk full".into()));
        assert_eq!(u.poll_action(), Some(full_revert()));
        assert_eq!(u.phase(), Phase::Reverted);
    }

    #[test]
    fn no_stop_within_the_timeout_reverts() {
        let mut u = armed();
        u.handle_timeout(132 * S);
        assert_eq!(u.poll_action(), None, "not yet");
        u.handle_timeout(133 * S);
        assert_eq!(u.poll_action(), Some(full_revert()));
        assert_eq!(u.phase(), Phase::Reverted);
        assert!(u.reason().unwrap().contains("did not heartbeat"));
        // A stop that comes after the revert is ignored.
        assert!(!u.handle_stop(140 * S, "1.1.0"));
        let p = phases(&mut u);
        assert_eq!(p.last(), Some(&("reverted", 133)));
    }

    #[test]
    fn the_new_agent_exiting_reverts_at_once() {
        let mut u = armed();
        u.handle_new_exited(14 * S);
        assert_eq!(u.poll_action(), Some(full_revert()));
        assert!(u.reason().unwrap().contains("exited"));
    }

    #[test]
    fn only_an_armed_agent_acts_on_a_stop() {
        // The new agent (idle) and an agent mid-staging ignore stops.
        let mut new = UpgradeState::new(UpgradePolicy::default(), "1.1.0");
        assert!(!new.handle_stop(5 * S, "1.1.0"));
        assert_eq!(new.poll_action(), None);
        let mut u = started();
        assert!(!u.handle_stop(11 * S, "1.1.0"));
        u.handle_staged(11 * S, Ok(()));
        u.poll_action();
        assert!(!u.handle_stop(11 * S, "1.1.0"), "verifying is not armed");
        assert_eq!(u.poll_action(), None);
    }

    #[test]
    fn starts_are_refused_while_busy_for_the_running_version_and_when_repeated() {
        let mut u = started();
        assert!(!u.handle_start(11 * S, "1.2.0", "x"), "busy");
        let mut idle = UpgradeState::new(UpgradePolicy::default(), "1.0.0");
        assert!(!idle.handle_start(0, "1.0.0", "x"), "already running it");
        u.handle_staged(12 * S, Err("404".into()));
        assert!(!u.handle_start(13 * S, "1.1.0", "abc"), "settled target");
        assert!(u.handle_start(14 * S, "1.2.0", "def"), "a new target");
        assert_eq!(u.phase(), Phase::Staging);
        assert_eq!(u.reason(), None);
    }
}
