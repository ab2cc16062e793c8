//! The command reaper: a sans-IO brain deciding, for each command, when to
//! offer it again and when to give up. Inputs carry an explicit `now_us`;
//! the driver persists what changed and writes what it is told to.

use crate::store::{CommandRecord, CommandStatus};

/// Reaper policy (field values from INCIDENTS.md, incident 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaperPolicy {
    /// Offers before a command is marked undeliverable.
    pub max_attempts: u32,
    /// An offered command with no ack and no new offer for this long times out.
    pub offer_timeout_us: u64,
}

impl Default for ReaperPolicy {
    fn default() -> Self {
        ReaperPolicy {
            max_attempts: 10,
            offer_timeout_us: 60_000_000,
        }
    }
}

/// What to do with one command after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it to the agent's session (again).
    Offer,
    /// Nothing to do.
    Keep,
    /// The state changed (persist it), nothing to send.
    Changed,
}

impl ReaperPolicy {
    /// The command was handed to the agent's send channel.
    pub fn handle_offered(&self, c: &mut CommandRecord, now_us: u64) {
        c.attempts += 1;
        c.last_offer_us = Some(now_us);
    }

    /// A Heartbeat arrived from the command's agent: re-offer a pending
    /// command, or give up after `max_attempts`.
    pub fn handle_heartbeat(&self, c: &mut CommandRecord, _now_us: u64) -> Verdict {
        if c.status != CommandStatus::Pending {
            return Verdict::Keep;
        }
        if c.attempts >= self.max_attempts {
            c.status = CommandStatus::Undeliverable;
            return Verdict::Changed;
        }
        Verdict::Offer
    }

    /// The agent acknowledged receipt.
    pub fn handle_ack(&self, c: &mut CommandRecord, now_us: u64) -> Verdict {
        if c.status != CommandStatus::Pending {
            return Verdict::Keep;
        }
        c.status = CommandStatus::Acked;
        c.acked_us = Some(now_us);
        Verdict::Changed
    }

    /// The agent reported the result.
    pub fn handle_result(
        &self,
        c: &mut CommandRecord,
        now_us: u64,
        exit_code: i32,
        output: &str,
    ) -> Verdict {
        if matches!(c.status, CommandStatus::Completed) {
            return Verdict::Keep;
        }
        if c.acked_us.is_none() {
            c.acked_us = Some(now_us);
        }
        c.status = CommandStatus::Completed;
        c.completed_us = Some(now_us);
        c.exit_code = Some(exit_code);
        c.output = Some(output.to_string());
        Verdict::Changed
    }

    /// When this command times out if nothing happens first.
    pub fn poll_timeout(&self, c: &CommandRecord) -> Option<u64> {
        match (c.status, c.last_offer_us) {
            (CommandStatus::Pending, Some(t)) => Some(t + self.offer_timeout_us),
            _ => None,
        }
    }

    /// Time passed: a pending command whose last offer is `offer_timeout_us` old times out.
    pub fn handle_timeout(&self, c: &mut CommandRecord, now_us: u64) -> Verdict {
        match self.poll_timeout(c) {
            Some(deadline) if now_us >= deadline => {
                c.status = CommandStatus::TimedOut;
                Verdict::Changed
            }
            _ => Verdict::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> CommandRecord {
        CommandRecord {
            command_id: "cmd-0001".into(),
            agent_id: "a".into(),
            agent_name: "pst-1".into(),
            command: "hostname".into(),
            status: CommandStatus::Pending,
            attempts: 0,
            created_us: 0,
            last_offer_us: None,
            acked_us: None,
            completed_us: None,
            exit_code: None,
            output: None,
        }
    }

    const S: u64 = 1_000_000;

    #[test]
    fn heartbeats_reoffer_until_ten_attempts_then_undeliverable() {
        let p = ReaperPolicy::default();
        let mut c = cmd();
        p.handle_offered(&mut c, 0);
        let mut now = 0;
        while p.handle_heartbeat(&mut c, now) == Verdict::Offer {
            now += 30 * S;
            p.handle_offered(&mut c, now);
            assert_eq!(p.handle_timeout(&mut c, now + 30 * S), Verdict::Keep);
        }
        assert_eq!(c.attempts, 10);
        assert_eq!(c.status, CommandStatus::Undeliverable);
        assert_eq!(p.handle_heartbeat(&mut c, now), Verdict::Keep);
    }

    #[test]
    fn an_idle_agent_times_out_after_one_attempt_at_sixty_seconds() {
        let p = ReaperPolicy::default();
        let mut c = cmd();
        p.handle_offered(&mut c, 5 * S);
        assert_eq!(p.handle_timeout(&mut c, 64 * S), Verdict::Keep);
        assert_eq!(p.poll_timeout(&c), Some(65 * S));
        assert_eq!(p.handle_timeout(&mut c, 65 * S), Verdict::Changed);
        assert_eq!((c.status, c.attempts), (CommandStatus::TimedOut, 1));
    }

    #[test]
    fn ack_stops_reoffers_and_result_completes() {
        let p = ReaperPolicy::default();
        let mut c = cmd();
        p.handle_offered(&mut c, 0);
        assert_eq!(p.handle_ack(&mut c, 1), Verdict::Changed);
        assert_eq!(p.handle_heartbeat(&mut c, 2), Verdict::Keep);
        assert_eq!(p.poll_timeout(&c), None);
        assert_eq!(p.handle_result(&mut c, 3, 0, "pst-1"), Verdict::Changed);
        assert_eq!(c.status, CommandStatus::Completed);
        assert_eq!(c.exit_code, Some(0));
        assert_eq!(p.handle_result(&mut c, 4, 0, "pst-1"), Verdict::Keep);
    }
}
