//! Connection registry: which live connection stands for each agent.
//!
//! Sans-IO. A connection registers under its agent id and gets a generation
//! number; on close it unregisters. With `generation_check` off (the legacy
//! gateway) the unregister removes whatever entry the agent has, so a late
//! close of an old connection (a probe, a replaced session) unregisters the
//! live one. With it on, only the entry of that very connection is removed,
//! and when the current connection closes while an earlier one of the same
//! agent is still open (a second session that came and went), the earlier
//! one is current again: the agent keeps getting its commands.

use std::collections::BTreeMap;

/// One registered connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<T> {
    /// The connection id (`c7`).
    pub conn: String,
    /// Unique per registration, increasing.
    pub generation: u64,
    /// What the driver keeps with it (a role, a sender).
    pub value: T,
}

/// What an unregister did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// The connection's own entry was removed.
    Own,
    /// Another (newer) connection's entry was removed: the legacy bug.
    Other {
        /// The connection that lost its registration.
        conn: String,
    },
    /// Nothing was removed (no entry, or a newer one protected by the generation check).
    Kept,
    /// The connection's own entry was removed and the agent's earlier,
    /// still open connection is current again.
    Restored {
        /// The connection that is current again.
        conn: String,
    },
}

/// Agent id -> live connection.
#[derive(Debug)]
pub struct Registry<T> {
    generation_check: bool,
    next_generation: u64,
    // Per agent, its open registered connections, the current one last.
    entries: BTreeMap<String, Vec<Entry<T>>>,
}

impl<T> Registry<T> {
    /// An empty registry.
    pub fn new(generation_check: bool) -> Self {
        Registry {
            generation_check,
            next_generation: 1,
            entries: BTreeMap::new(),
        }
    }

    /// Registers `conn` for `agent_id`, replacing any previous entry (returned).
    pub fn handle_register(
        &mut self,
        agent_id: &str,
        conn: &str,
        value: T,
    ) -> (u64, Option<Entry<T>>)
    where
        T: Clone,
    {
        let generation = self.next_generation;
        self.next_generation += 1;
        let stack = self.entries.entry(agent_id.to_string()).or_default();
        let old = stack.last().cloned();
        if !self.generation_check {
            stack.clear();
        }
        stack.push(Entry {
            conn: conn.to_string(),
            generation,
            value,
        });
        (generation, old)
    }

    /// Connection `generation` of `agent_id` closed.
    pub fn handle_close(&mut self, agent_id: &str, generation: u64) -> Unregistered {
        let Some(stack) = self.entries.get_mut(agent_id) else {
            return Unregistered::Kept;
        };
        let Some(current) = stack.last() else {
            self.entries.remove(agent_id);
            return Unregistered::Kept;
        };
        if current.generation == generation {
            stack.pop();
            return match stack.last() {
                Some(earlier) => Unregistered::Restored {
                    conn: earlier.conn.clone(),
                },
                None => {
                    self.entries.remove(agent_id);
                    Unregistered::Own
                }
            };
        }
        if self.generation_check {
            // An earlier connection closed: forget it, keep the current one.
            stack.retain(|e| e.generation != generation);
            return Unregistered::Kept;
        }
        let conn = current.conn.clone();
        self.entries.remove(agent_id);
        Unregistered::Other { conn }
    }

    /// The live (current) entry of an agent.
    pub fn get(&self, agent_id: &str) -> Option<&Entry<T>> {
        self.entries.get(agent_id).and_then(|s| s.last())
    }

    /// Removes the entries of an agent (eviction), returning the current one.
    pub fn remove(&mut self, agent_id: &str) -> Option<Entry<T>> {
        self.entries.remove(agent_id).and_then(|mut s| s.pop())
    }

    /// The current entries, by agent id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry<T>)> {
        self.entries
            .iter()
            .filter_map(|(a, s)| s.last().map(|e| (a, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_late_close_of_a_probe_unregisters_the_live_service() {
        let mut r = Registry::new(false);
        let (probe, _) = r.handle_register("a1", "c1", "probe");
        let (_service, replaced) = r.handle_register("a1", "c2", "service");
        assert_eq!(replaced.unwrap().conn, "c1");
        assert_eq!(
            r.handle_close("a1", probe),
            Unregistered::Other { conn: "c2".into() }
        );
        assert!(r.get("a1").is_none());
    }

    #[test]
    fn generation_check_keeps_the_live_service() {
        let mut r = Registry::new(true);
        let (probe, _) = r.handle_register("a1", "c1", "probe");
        let (service, _) = r.handle_register("a1", "c2", "service");
        assert_eq!(r.handle_close("a1", probe), Unregistered::Kept);
        assert_eq!(r.get("a1").unwrap().conn, "c2");
        assert_eq!(r.handle_close("a1", service), Unregistered::Own);
        assert!(r.get("a1").is_none());
        assert_eq!(r.handle_close("a1", service), Unregistered::Kept);
    }

    #[test]
    fn a_second_session_that_closes_gives_the_agent_back_its_live_one() {
        let mut r = Registry::new(true);
        let (live, _) = r.handle_register("a1", "c1", "live");
        let (second, replaced) = r.handle_register("a1", "c2", "second");
        assert_eq!(replaced.unwrap().conn, "c1");
        assert_eq!(r.get("a1").unwrap().conn, "c2");
        // The second session goes: the first, still open, is current again.
        assert_eq!(
            r.handle_close("a1", second),
            Unregistered::Restored { conn: "c1".into() }
        );
        assert_eq!(r.get("a1").unwrap().conn, "c1");
        assert_eq!(r.handle_close("a1", live), Unregistered::Own);
        assert!(r.get("a1").is_none());
        // An earlier session closing under a newer one is just forgotten.
        let (a, _) = r.handle_register("a1", "c3", "a");
        let (b, _) = r.handle_register("a1", "c4", "b");
        assert_eq!(r.handle_close("a1", a), Unregistered::Kept);
        assert_eq!(r.handle_close("a1", b), Unregistered::Own);
        assert!(r.get("a1").is_none());
    }
}
