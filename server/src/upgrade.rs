//! The upgrade operator (INCIDENTS.md section 5, the field's ADR-022): a
//! sans-IO coordinator deciding, per agent, when to send `UpgradeStop`, and
//! its driver on [`Shared`].
//!
//! The marker (from, to, SHA-256) and the status (phase, whether and when
//! the stop was sent, when the new version was first seen heartbeating,
//! the phase history) are one [`UpgradeRecord`] in the store's `upgrades`
//! table, written in one transaction before anything is sent. A restarted
//! server reads it back and goes on from there. (Legacy, switch
//! `upgrade_status_persisted` off: the record lives in memory, as the
//! field's first operator kept it on fire-and-forget subjects; a restart
//! forgets the upgrade, the agent never gets its stop and reverts.)
//!
//! - Fixed (`operator_waits_for_new_heartbeat`): the stop goes out once the
//!   server itself has seen a Heartbeat carrying the new `agent_version` and
//!   a session of the old version is there to receive it.
//! - Legacy: the stop goes out on the agent's own word, its
//!   `UpgradeStatus { phase: "cutover-ready" }`.
//!
//! The stop is sent once: `stops_sent` is persisted before the send, and a
//! restarted server never sends it again. It goes to every live session of
//! the agent (old and new both get it; only the agent armed in CutoverReady
//! acts on it), so a duplicate would be harmless too.
//!
//! The device record's `version` follows the agent's heartbeats except
//! while an upgrade is in flight (both versions heartbeat then); when it
//! settles, it is the new version (done) or the old one (reverted).

use std::collections::BTreeMap;

use proto::fields;
use proto::msg::ServerMsg;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{lock, OpError, Outbound, Shared};

/// The operator's view of an upgrade's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpPhase {
    /// The marker is written; the agent has not reported yet.
    Requested,
    /// The agent reports staging.
    Staging,
    /// The agent reports verifying.
    Verifying,
    /// The agent reports cutover-ready.
    CutoverReady,
    /// The stop was sent.
    Stopping,
    /// The new version took over.
    Done,
    /// The agent went back to the old version.
    Reverted,
}

impl OpPhase {
    /// The phase as the outcome and events spell it.
    pub fn name(self) -> &'static str {
        match self {
            OpPhase::Requested => "requested",
            OpPhase::Staging => "staging",
            OpPhase::Verifying => "verifying",
            OpPhase::CutoverReady => "cutover-ready",
            OpPhase::Stopping => "stopping",
            OpPhase::Done => "done",
            OpPhase::Reverted => "reverted",
        }
    }

    /// Whether the upgrade is over.
    pub fn is_settled(self) -> bool {
        matches!(self, OpPhase::Done | OpPhase::Reverted)
    }

    fn from_agent(phase: &str) -> Option<OpPhase> {
        Some(match phase {
            "staging" => OpPhase::Staging,
            "verifying" => OpPhase::Verifying,
            "cutover-ready" => OpPhase::CutoverReady,
            "done" => OpPhase::Done,
            "reverted" => OpPhase::Reverted,
            _ => return None,
        })
    }
}

/// One phase change of an upgrade, as the operator recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseChange {
    /// The new phase.
    pub phase: OpPhase,
    /// When (server microseconds).
    pub at_us: u64,
}

/// An agent's upgrade marker and status (the store's `upgrades` table).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeRecord {
    /// The agent; the key.
    pub agent_id: String,
    /// Its name.
    pub agent_name: String,
    /// The version it ran when the upgrade was asked.
    pub from_version: String,
    /// The version it goes to.
    pub to_version: String,
    /// The announced SHA-256 of the new build.
    pub sha256: String,
    /// Where it stands.
    pub phase: OpPhase,
    /// The agent's last reported phase.
    pub agent_phase: Option<String>,
    /// Why the agent reverted, as it reported.
    pub reason: Option<String>,
    /// How often the stop was sent (0 or 1).
    pub stops_sent: u32,
    /// When the stop was sent.
    pub stop_sent_us: Option<u64>,
    /// When the server first saw a Heartbeat with `to_version`.
    pub new_heartbeat_us: Option<u64>,
    /// Every phase change.
    pub history: Vec<PhaseChange>,
}

impl UpgradeRecord {
    /// A new marker: the upgrade was asked at `now_us`.
    pub fn new(
        agent_id: &str,
        agent_name: &str,
        from_version: &str,
        to_version: &str,
        sha256: &str,
        now_us: u64,
    ) -> UpgradeRecord {
        UpgradeRecord {
            agent_id: agent_id.into(),
            agent_name: agent_name.into(),
            from_version: from_version.into(),
            to_version: to_version.into(),
            sha256: sha256.into(),
            phase: OpPhase::Requested,
            agent_phase: None,
            reason: None,
            stops_sent: 0,
            stop_sent_us: None,
            new_heartbeat_us: None,
            history: vec![PhaseChange {
                phase: OpPhase::Requested,
                at_us: now_us,
            }],
        }
    }

    fn go(&mut self, phase: OpPhase, now_us: u64) {
        if self.phase != phase {
            self.phase = phase;
            self.history.push(PhaseChange {
                phase,
                at_us: now_us,
            });
        }
    }
}

/// What the coordinator decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// The record changed: persist it (before sending anything).
    pub changed: bool,
    /// Send `UpgradeStop` to every session of the agent.
    pub send_stop: bool,
    /// (Re)send the `Upgrade` request on the session that just authenticated.
    pub send_upgrade: bool,
}

/// What the operator sees of the agent's sessions when it decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// A session authenticated with the old version is open.
    pub old_live: bool,
    /// A session authenticated with the new version is open.
    pub new_live: bool,
}

/// How long after the agent's cutover a new version that heartbeats with
/// no session of the old version left counts as running alone. It must
/// exceed the agent's revert window (no stop within 120 s of the cutover:
/// the old agent switches back and stops the new one,
/// `agent::upgrade::UpgradePolicy`) by a heartbeat interval (30 s), so
/// that an old agent which is only disconnected has reverted, and its new
/// version stopped heartbeating, by then.
pub const ALONE_AFTER_US: u64 = 150_000_000;

/// The operator's commit decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coordinator {
    /// Switch `operator_waits_for_new_heartbeat`.
    pub waits_for_new_heartbeat: bool,
}

impl Coordinator {
    // Settled by observation alone (fixed operator only), once the old
    // agent's revert window has passed since the cutover, when one version
    // heartbeats and no session of the other is left:
    // - the new one: the old agent is gone (it acted on the stop and its
    //   `done` report was lost, or it died before a stop could reach it):
    //   done. Before the window has passed, no session of the old version
    //   proves nothing: a stop that was sent may not have arrived, and an
    //   old agent that is only disconnected (a network outage, the server
    //   itself restarted and the old agent has not reconnected yet) is
    //   still armed and reverts when its window ends;
    // - the old one: the new one is gone (a restart ended the trial and the
    //   boot guard brought the old version back, which knows nothing of
    //   the upgrade and ignores a stop): reverted.
    fn decide_alone(
        &self,
        r: &mut UpgradeRecord,
        s: Sessions,
        now_us: u64,
        version: &str,
        d: &mut Decision,
    ) {
        if !self.waits_for_new_heartbeat || r.phase.is_settled() {
            return;
        }
        let cutover = r
            .history
            .iter()
            .find(|h| h.phase == OpPhase::CutoverReady)
            .map(|h| h.at_us);
        if cutover.is_none_or(|c| now_us < c + ALONE_AFTER_US) {
            return;
        }
        let (phase, reason) = if version == r.to_version && !s.old_live {
            (
                OpPhase::Done,
                "no session of the old version is left and the new one heartbeats past the revert window: it runs alone",
            )
        } else if version == r.from_version && !s.new_live {
            (
                OpPhase::Reverted,
                "no session of the new version is left and the old one heartbeats past the revert window: the trial ended (the agent restarted) and the old version runs alone",
            )
        } else {
            return;
        };
        r.reason = Some(reason.into());
        r.go(phase, now_us);
        d.changed = true;
    }

    fn decide_stop(&self, r: &mut UpgradeRecord, s: Sessions, now_us: u64, d: &mut Decision) {
        if r.phase.is_settled() || r.stops_sent > 0 || !s.old_live {
            return;
        }
        let commit = if self.waits_for_new_heartbeat {
            r.new_heartbeat_us.is_some()
        } else {
            r.agent_phase.as_deref() == Some("cutover-ready")
        };
        if commit {
            r.stops_sent += 1;
            r.stop_sent_us = Some(now_us);
            r.go(OpPhase::Stopping, now_us);
            d.changed = true;
            d.send_stop = true;
        }
    }

    /// The agent reported its phase (`UpgradeStatus`).
    pub fn handle_report(
        &self,
        r: &mut UpgradeRecord,
        now_us: u64,
        to_version: &str,
        phase: &str,
        reason: Option<&str>,
        s: Sessions,
    ) -> Decision {
        let mut d = Decision::default();
        if to_version != r.to_version || r.phase.is_settled() {
            return d;
        }
        if r.agent_phase.as_deref() != Some(phase) {
            r.agent_phase = Some(phase.into());
            d.changed = true;
        }
        match OpPhase::from_agent(phase) {
            Some(OpPhase::Reverted) => {
                r.reason = reason.map(str::to_string);
                r.go(OpPhase::Reverted, now_us);
                d.changed = true;
            }
            // The old agent acted on the stop.
            Some(OpPhase::Done) if r.stops_sent > 0 => {
                r.go(OpPhase::Done, now_us);
                d.changed = true;
            }
            Some(p) if p < OpPhase::Stopping && p > r.phase => {
                r.go(p, now_us);
                d.changed = true;
            }
            _ => {}
        }
        self.decide_stop(r, s, now_us, &mut d);
        d
    }

    /// A Heartbeat carrying `version` arrived.
    pub fn handle_heartbeat(
        &self,
        r: &mut UpgradeRecord,
        now_us: u64,
        version: &str,
        s: Sessions,
    ) -> Decision {
        let mut d = Decision::default();
        if r.phase.is_settled() {
            return d;
        }
        if version == r.to_version && r.new_heartbeat_us.is_none() {
            r.new_heartbeat_us = Some(now_us);
            d.changed = true;
        }
        self.decide_stop(r, s, now_us, &mut d);
        self.decide_alone(r, s, now_us, version, &mut d);
        d
    }

    /// A session of the agent authenticated, or one closed. Until the
    /// cutover the request goes again on every new session: the agent may
    /// have restarted and forgotten it (one that acts on it ignores the
    /// repeat).
    pub fn handle_sessions(&self, r: &mut UpgradeRecord, now_us: u64, s: Sessions) -> Decision {
        let mut d = Decision {
            send_upgrade: matches!(
                r.phase,
                OpPhase::Requested | OpPhase::Staging | OpPhase::Verifying
            ),
            ..Decision::default()
        };
        self.decide_stop(r, s, now_us, &mut d);
        d
    }
}

/// Every authenticated command-channel session, by agent and connection,
/// with the version it authenticated as: during a cutover an agent has two.
#[derive(Debug, Default)]
pub struct LiveSessions(BTreeMap<String, BTreeMap<String, LiveSession>>);

#[derive(Debug)]
struct LiveSession {
    version: String,
    tx: mpsc::UnboundedSender<Outbound>,
}

impl Shared {
    fn coordinator(&self) -> Coordinator {
        Coordinator {
            waits_for_new_heartbeat: self.cfg.switches.operator_waits_for_new_heartbeat,
        }
    }

    fn sessions_of(&self, agent_id: &str, from_version: &str, to_version: &str) -> Sessions {
        let live = lock(&self.live);
        let sessions = live.0.get(agent_id);
        let any = |v: &str| sessions.is_some_and(|m| m.values().any(|s| s.version == v));
        Sessions {
            old_live: any(from_version),
            new_live: any(to_version),
        }
    }

    // The legacy operator (switch `upgrade_status_persisted` off) keeps the
    // marker and status in memory: a restart forgets the upgrade.
    fn save_upgrade(&self, r: &UpgradeRecord) -> Result<(), crate::store::StoreError> {
        if self.cfg.switches.upgrade_status_persisted {
            return self.store.put_upgrade(r);
        }
        lock(&self.volatile_upgrades).insert(r.agent_id.clone(), r.clone());
        Ok(())
    }

    /// Every upgrade record, wherever the operator keeps them.
    pub(crate) fn all_upgrades(&self) -> Result<Vec<UpgradeRecord>, crate::store::StoreError> {
        if self.cfg.switches.upgrade_status_persisted {
            return self.store.upgrades();
        }
        Ok(lock(&self.volatile_upgrades).values().cloned().collect())
    }

    pub(crate) fn upgrade_record(&self, agent_id: &str) -> Option<UpgradeRecord> {
        if !self.cfg.switches.upgrade_status_persisted {
            return lock(&self.volatile_upgrades).get(agent_id).cloned();
        }
        match self.store.upgrade(agent_id) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, agent_id, "store read failed");
                None
            }
        }
    }

    /// The operator asks for an upgrade of `agent` to `to` (a build with
    /// `defect`): publish the build, write the marker, send the request.
    pub(crate) fn start_upgrade(
        &self,
        agent: &str,
        to: &str,
        defect: Option<proto::build::BuildDefect>,
    ) -> Result<UpgradeRecord, OpError> {
        let Some(rec) = self.agent_by_name(agent) else {
            self.env.event(
                "upgrade.rejected",
                fields! {"agent" => agent, "reason" => "unknown agent"},
            );
            return Err(OpError::UnknownAgent {
                agent: agent.into(),
            });
        };
        if let Some(r) = self.upgrade_record(&rec.agent_id) {
            if !r.phase.is_settled() {
                self.env.event(
                    "upgrade.rejected",
                    fields! {"agent" => agent, "reason" => "an upgrade is under way", "phase" => r.phase.name()},
                );
                return Err(OpError::UpgradeUnderWay {
                    agent: agent.into(),
                    phase: r.phase.name().into(),
                });
            }
        }
        let artifact = match self.publish_build(to, defect) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "cannot publish the build");
                return Err(e.into());
            }
        };
        let now = self.env.unix_us();
        let r = UpgradeRecord::new(
            &rec.agent_id,
            &rec.name,
            &rec.version,
            to,
            &artifact.sha256,
            now,
        );
        if let Err(e) = self.save_upgrade(&r) {
            tracing::error!(error = %e, "cannot write the upgrade marker");
            return Err(e.into());
        }
        let delivered = self.send_upgrade(&r);
        self.env.event(
            "upgrade.requested",
            fields! {"agent" => rec.name, "from_version" => rec.version, "to_version" => to, "sha256" => artifact.sha256, "delivered" => delivered},
        );
        Ok(r)
    }

    fn send_upgrade(&self, r: &UpgradeRecord) -> bool {
        let msg = ServerMsg::Upgrade {
            version: r.to_version.clone(),
            sha256: r.sha256.clone(),
        };
        let json = serde_json::to_string(&msg).expect("server messages serialize");
        self.send_to(&r.agent_id, &r.agent_name, json)
    }

    // Persists a decision, then acts on it.
    fn apply_upgrade(&self, before: &UpgradeRecord, r: &UpgradeRecord, d: Decision) {
        if d.changed {
            if let Err(e) = self.save_upgrade(r) {
                // Nothing is sent on a state that is not durable.
                tracing::error!(error = %e, "cannot write the upgrade status");
                return;
            }
            for c in r.history.iter().skip(before.history.len()) {
                self.env.event(
                    "upgrade.operator_phase",
                    fields! {"agent" => r.agent_name, "phase" => c.phase.name(), "at_us" => self.log_at(c.at_us), "to_version" => r.to_version},
                );
            }
            if r.new_heartbeat_us.is_some() && before.new_heartbeat_us.is_none() {
                self.env.event(
                    "upgrade.new_heartbeat_seen",
                    fields! {"agent" => r.agent_name, "to_version" => r.to_version},
                );
            }
            if r.phase.is_settled() && !before.phase.is_settled() {
                let version = if r.phase == OpPhase::Done {
                    &r.to_version
                } else {
                    &r.from_version
                };
                self.set_current_version(&r.agent_id, version);
            }
        }
        if d.send_stop {
            let sent = self.send_stop(r);
            self.env.event(
                "upgrade.stop_sent",
                fields! {"agent" => r.agent_name, "to_version" => r.to_version, "sessions" => sent, "stops_sent" => r.stops_sent},
            );
        }
    }

    fn send_stop(&self, r: &UpgradeRecord) -> usize {
        let json = serde_json::to_string(&ServerMsg::UpgradeStop {
            version: r.to_version.clone(),
        })
        .expect("server messages serialize");
        let targets: Vec<(String, mpsc::UnboundedSender<Outbound>)> = lock(&self.live)
            .0
            .get(&r.agent_id)
            .map(|m| m.iter().map(|(c, s)| (c.clone(), s.tx.clone())).collect())
            .unwrap_or_default();
        targets
            .iter()
            .filter(|(conn, tx)| self.enqueue(tx, conn, &r.agent_name, json.clone()))
            .count()
    }

    fn set_current_version(&self, agent_id: &str, version: &str) {
        if let Ok(Some(mut a)) = self.store.agent(agent_id) {
            if a.version != version {
                a.version = version.into();
                if let Err(e) = self.store.put_agent(&a) {
                    tracing::error!(error = %e, "store write failed");
                }
            }
        }
    }

    /// The version the agent's session `conn` authenticated as, if it is live.
    pub(crate) fn session_version(&self, agent_id: &str, conn: &str) -> Option<String> {
        lock(&self.live)
            .0
            .get(agent_id)
            .and_then(|m| m.get(conn))
            .map(|s| s.version.clone())
    }

    /// A session of the agent authenticated as `version` (its own channel is `tx`).
    pub(crate) fn upgrade_session_opened(
        &self,
        agent_id: &str,
        conn: &str,
        version: &str,
        tx: &mpsc::UnboundedSender<Outbound>,
    ) {
        lock(&self.live)
            .0
            .entry(agent_id.into())
            .or_default()
            .insert(
                conn.into(),
                LiveSession {
                    version: version.into(),
                    tx: tx.clone(),
                },
            );
        let Some(mut r) = self.upgrade_record(agent_id) else {
            return;
        };
        let before = r.clone();
        let s = self.sessions_of(agent_id, &r.from_version, &r.to_version);
        let d = self
            .coordinator()
            .handle_sessions(&mut r, self.env.unix_us(), s);
        if d.send_upgrade {
            // The request may have been lost (no session, a restart): again,
            // on this session. The agent ignores a repeat it already acts on.
            let msg = ServerMsg::Upgrade {
                version: r.to_version.clone(),
                sha256: r.sha256.clone(),
            };
            let json = serde_json::to_string(&msg).expect("server messages serialize");
            self.enqueue(tx, conn, &r.agent_name, json);
        }
        self.apply_upgrade(&before, &r, d);
    }

    /// A session closed.
    pub(crate) fn upgrade_session_closed(&self, agent_id: &str, conn: &str) {
        {
            let mut live = lock(&self.live);
            if let Some(m) = live.0.get_mut(agent_id) {
                m.remove(conn);
                if m.is_empty() {
                    live.0.remove(agent_id);
                }
            }
        }
        let Some(mut r) = self.upgrade_record(agent_id) else {
            return;
        };
        let before = r.clone();
        let s = self.sessions_of(agent_id, &r.from_version, &r.to_version);
        let mut d = self
            .coordinator()
            .handle_sessions(&mut r, self.env.unix_us(), s);
        d.send_upgrade = false;
        self.apply_upgrade(&before, &r, d);
    }

    /// A Heartbeat with `version` arrived.
    pub(crate) fn upgrade_heartbeat(&self, agent_id: &str, version: &str) {
        let r = self.upgrade_record(agent_id);
        if r.as_ref().is_none_or(|r| r.phase.is_settled()) {
            // No upgrade in flight: the record follows the heartbeats.
            self.set_current_version(agent_id, version);
        }
        let Some(mut r) = r else {
            return;
        };
        let before = r.clone();
        let s = self.sessions_of(agent_id, &r.from_version, &r.to_version);
        let d = self
            .coordinator()
            .handle_heartbeat(&mut r, self.env.unix_us(), version, s);
        self.apply_upgrade(&before, &r, d);
    }

    /// An `UpgradeStatus` arrived.
    pub(crate) fn upgrade_report(
        &self,
        agent_id: &str,
        to_version: &str,
        phase: &str,
        reason: Option<&str>,
    ) {
        let Some(mut r) = self.upgrade_record(agent_id) else {
            return;
        };
        let before = r.clone();
        let s = self.sessions_of(agent_id, &r.from_version, &r.to_version);
        let d = self.coordinator().handle_report(
            &mut r,
            self.env.unix_us(),
            to_version,
            phase,
            reason,
            s,
        );
        self.apply_upgrade(&before, &r, d);
    }

    /// Logs the upgrades a (re)started server resumes.
    pub(crate) fn resume_upgrades(&self) {
        match self.all_upgrades() {
            Ok(all) => {
                for r in all.iter().filter(|r| !r.phase.is_settled()) {
                    self.env.event(
                        "upgrade.resumed",
                        fields! {"agent" => r.agent_name, "phase" => r.phase.name(), "to_version" => r.to_version, "stops_sent" => r.stops_sent},
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "store read failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    const FIXED: Coordinator = Coordinator {
        waits_for_new_heartbeat: true,
    };
    const LEGACY: Coordinator = Coordinator {
        waits_for_new_heartbeat: false,
    };
    const OLD: Sessions = Sessions {
        old_live: true,
        new_live: false,
    };
    const NO_OLD: Sessions = Sessions {
        old_live: false,
        new_live: true,
    };
    const BOTH: Sessions = Sessions {
        old_live: true,
        new_live: true,
    };

    fn rec() -> UpgradeRecord {
        UpgradeRecord::new("a1", "pst-1", "1.0.0", "1.1.0", "abc", 0)
    }

    fn report(c: Coordinator, r: &mut UpgradeRecord, t: u64, phase: &str) -> Decision {
        c.handle_report(r, t * S, "1.1.0", phase, None, OLD)
    }

    #[test]
    fn fixed_stops_only_after_seeing_the_new_version_heartbeat_and_only_once() {
        let mut r = rec();
        for (t, p) in [(1, "staging"), (2, "verifying"), (3, "cutover-ready")] {
            let d = report(FIXED, &mut r, t, p);
            assert!(d.changed && !d.send_stop, "{p}");
        }
        assert_eq!(r.phase, OpPhase::CutoverReady);
        // The old version's heartbeats are not the new one's.
        assert!(
            !FIXED
                .handle_heartbeat(&mut r, 4 * S, "1.0.0", OLD)
                .send_stop
        );
        let d = FIXED.handle_heartbeat(&mut r, 5 * S, "1.1.0", OLD);
        assert!(d.changed && d.send_stop);
        assert_eq!((r.stops_sent, r.stop_sent_us), (1, Some(5 * S)));
        assert_eq!(r.phase, OpPhase::Stopping);
        // Never twice, whatever comes next.
        assert!(
            !FIXED
                .handle_heartbeat(&mut r, 6 * S, "1.1.0", OLD)
                .send_stop
        );
        assert!(!FIXED.handle_sessions(&mut r, 7 * S, OLD).send_stop);
        // The old agent reports that it acted on the stop: done.
        let d = report(FIXED, &mut r, 8, "done");
        assert!(d.changed && !d.send_stop);
        assert_eq!(r.phase, OpPhase::Done);
        let phases: Vec<_> = r.history.iter().map(|c| c.phase.name()).collect();
        assert_eq!(
            phases,
            [
                "requested",
                "staging",
                "verifying",
                "cutover-ready",
                "stopping",
                "done"
            ]
        );
    }

    #[test]
    fn fixed_never_stops_on_the_agents_word_alone() {
        let mut r = rec();
        report(FIXED, &mut r, 1, "staging");
        let d = report(FIXED, &mut r, 3, "cutover-ready");
        assert!(!d.send_stop);
        // The new version never heartbeats: the agent times out and reverts.
        let d = FIXED.handle_report(&mut r, 125 * S, "1.1.0", "reverted", Some("timeout"), OLD);
        assert!(d.changed && !d.send_stop);
        assert_eq!(r.phase, OpPhase::Reverted);
        assert_eq!(r.reason.as_deref(), Some("timeout"));
        assert_eq!(r.stops_sent, 0);
        // Settled: late heartbeats or reports change nothing.
        assert_eq!(
            FIXED.handle_heartbeat(&mut r, 130 * S, "1.1.0", OLD),
            Decision::default()
        );
        assert_eq!(
            report(FIXED, &mut r, 131, "cutover-ready"),
            Decision::default()
        );
    }

    #[test]
    fn legacy_stops_on_the_agents_cutover_ready_report() {
        let mut r = rec();
        report(LEGACY, &mut r, 1, "staging");
        let d = report(LEGACY, &mut r, 3, "cutover-ready");
        assert!(d.send_stop, "no heartbeat of the new version was seen");
        assert_eq!(r.new_heartbeat_us, None);
        assert_eq!(r.stops_sent, 1);
        let d = report(LEGACY, &mut r, 4, "done");
        assert!(d.changed && !d.send_stop);
        assert_eq!(r.phase, OpPhase::Done);
    }

    #[test]
    fn a_stop_waits_for_a_session_of_the_old_version() {
        // After a restart the new agent reconnects first.
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        let d = FIXED.handle_heartbeat(&mut r, 60 * S, "1.1.0", NO_OLD);
        assert!(d.changed && !d.send_stop, "no one to stop yet");
        assert_eq!(
            r.phase,
            OpPhase::CutoverReady,
            "not done: the stop was never sent"
        );
        // The old agent's session comes back: the stop goes out then.
        let d = FIXED.handle_sessions(&mut r, 62 * S, OLD);
        assert!(d.send_stop && !d.send_upgrade);
        assert_eq!(r.stops_sent, 1);
    }

    #[test]
    fn no_session_of_the_old_version_after_the_stop_is_not_done() {
        // The property's seed 40, server restarted at 90.1 s: the stop went
        // out at 90.095 s, the restart lost it on the old agent's session,
        // and the new version's session came back first. That the old
        // version has no session proves nothing: it is still armed.
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        assert!(
            FIXED
                .handle_heartbeat(&mut r, 33 * S, "1.1.0", BOTH)
                .send_stop
        );
        FIXED.handle_sessions(&mut r, 34 * S, NO_OLD);
        FIXED.handle_heartbeat(&mut r, 60 * S, "1.1.0", NO_OLD);
        assert_eq!(r.phase, OpPhase::Stopping);
        // It reconnects (no second stop) and, its window over, reports reverted.
        assert!(!FIXED.handle_sessions(&mut r, 61 * S, BOTH).send_stop);
        let d = FIXED.handle_report(&mut r, 123 * S, "1.1.0", "reverted", Some("timeout"), OLD);
        assert!(d.changed && !d.send_stop);
        assert_eq!((r.phase, r.stops_sent), (OpPhase::Reverted, 1));
        // Had it acted on the stop (and its report been lost), the new
        // version alone past the window is done.
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        FIXED.handle_heartbeat(&mut r, 33 * S, "1.1.0", BOTH);
        FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US - 1, "1.1.0", NO_OLD);
        assert_eq!(r.phase, OpPhase::Stopping);
        let d = FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US, "1.1.0", NO_OLD);
        assert!(d.changed && !d.send_stop);
        assert_eq!((r.phase, r.stops_sent), (OpPhase::Done, 1));
    }

    #[test]
    fn the_request_is_sent_again_on_each_new_session_until_the_cutover() {
        let mut r = rec();
        assert!(FIXED.handle_sessions(&mut r, S, OLD).send_upgrade);
        // A restarted agent forgot it; one that stages ignores the repeat.
        report(FIXED, &mut r, 2, "staging");
        assert!(FIXED.handle_sessions(&mut r, 3 * S, OLD).send_upgrade);
        // Reports for another target or going backwards are ignored.
        assert!(
            !FIXED
                .handle_report(&mut r, 4 * S, "9.9.9", "reverted", None, OLD)
                .changed
        );
        report(FIXED, &mut r, 5, "verifying");
        report(FIXED, &mut r, 6, "staging");
        assert_eq!(r.phase, OpPhase::Verifying);
        // From the cutover on, the active version on the agent's disk is
        // the new one: no request again.
        report(FIXED, &mut r, 7, "cutover-ready");
        assert!(!FIXED.handle_sessions(&mut r, 8 * S, OLD).send_upgrade);
    }

    #[test]
    fn the_stop_survives_a_restart_as_sent() {
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        assert!(
            FIXED
                .handle_heartbeat(&mut r, 5 * S, "1.1.0", OLD)
                .send_stop
        );
        // What a restarted server reads back from the store.
        let mut back: UpgradeRecord =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(!FIXED.handle_sessions(&mut back, 20 * S, OLD).send_stop);
        assert!(
            !FIXED
                .handle_heartbeat(&mut back, 21 * S, "1.1.0", OLD)
                .send_stop
        );
        assert_eq!(back.stops_sent, 1);
    }

    #[test]
    fn a_new_version_alone_past_the_revert_window_is_done_without_a_stop() {
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        // The agent restarted into the new version: only it heartbeats.
        let d = FIXED.handle_heartbeat(&mut r, 60 * S, "1.1.0", NO_OLD);
        assert!(!d.send_stop);
        assert_eq!(
            r.phase,
            OpPhase::CutoverReady,
            "an old agent may still be out there"
        );
        let d = FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US - 1, "1.1.0", NO_OLD);
        assert!(!d.changed && r.phase == OpPhase::CutoverReady);
        let d = FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US, "1.1.0", NO_OLD);
        assert!(d.changed && !d.send_stop);
        assert_eq!((r.phase, r.stops_sent), (OpPhase::Done, 0));
        assert!(r.reason.as_deref().unwrap().contains("runs alone"));
    }

    #[test]
    fn an_old_session_or_the_old_version_heartbeat_keeps_the_upgrade_open() {
        let late = 3 * S + ALONE_AFTER_US + 10 * S;
        for (version, sessions) in [("1.1.0", OLD), ("1.0.0", NO_OLD)] {
            let mut r = rec();
            report(FIXED, &mut r, 3, "cutover-ready");
            let d = FIXED.handle_heartbeat(&mut r, late, version, sessions);
            assert_ne!(r.phase, OpPhase::Done, "{version}: {d:?}");
        }
        // The legacy operator never decides by observation.
        let mut r = rec();
        LEGACY.handle_report(&mut r, 3 * S, "1.1.0", "cutover-ready", None, NO_OLD);
        LEGACY.handle_heartbeat(&mut r, late, "1.1.0", NO_OLD);
        assert_eq!((r.phase, r.stops_sent), (OpPhase::CutoverReady, 0));
    }

    #[test]
    fn the_old_version_alone_past_the_revert_window_is_reverted_even_after_a_stop() {
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        // The new version heartbeats, the stop goes out...
        assert!(
            FIXED
                .handle_heartbeat(&mut r, 40 * S, "1.1.0", BOTH)
                .send_stop
        );
        // ...but a restart ended the trial: only the old version is back,
        // and it ignores the stop (it knows nothing of the upgrade).
        FIXED.handle_heartbeat(&mut r, 100 * S, "1.0.0", OLD);
        assert_eq!(r.phase, OpPhase::Stopping, "still inside the window");
        let d = FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US, "1.0.0", OLD);
        assert!(d.changed && !d.send_stop);
        assert_eq!((r.phase, r.stops_sent), (OpPhase::Reverted, 1));
        assert!(r.reason.as_deref().unwrap().contains("trial ended"));
        // With a session of the new version open, the old one's heartbeat settles nothing.
        let mut r = rec();
        report(FIXED, &mut r, 3, "cutover-ready");
        FIXED.handle_heartbeat(&mut r, 3 * S + ALONE_AFTER_US, "1.0.0", BOTH);
        assert_eq!(r.phase, OpPhase::CutoverReady);
    }
}
