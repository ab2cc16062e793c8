//! Connection registry: which live connection stands for each agent.
//!
//! Sans-IO. A connection registers under its agent id and gets a generation
//! number; on close it unregisters. With `generation_check` off (the legacy
//! gateway) the unregister removes whatever entry the agent has, so a late
//! close of an old connection (a probe, a replaced session) unregisters the
//! live one. With it on, only the entry of that very connection is removed.

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
}

/// Agent id -> live connection.
#[derive(Debug)]
pub struct Registry<T> {
    generation_check: bool,
    next_generation: u64,
    entries: BTreeMap<String, Entry<T>>,
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
    ) -> (u64, Option<Entry<T>>) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let old = self.entries.insert(
            agent_id.to_string(),
            Entry {
                conn: conn.to_string(),
                generation,
                value,
            },
        );
        (generation, old)
    }

    /// Connection `generation` of `agent_id` closed.
    pub fn handle_close(&mut self, agent_id: &str, generation: u64) -> Unregistered {
        let Some(e) = self.entries.get(agent_id) else {
            return Unregistered::Kept;
        };
        if e.generation == generation {
            self.entries.remove(agent_id);
            return Unregistered::Own;
        }
        if self.generation_check {
            return Unregistered::Kept;
        }
        let conn = e.conn.clone();
        self.entries.remove(agent_id);
        Unregistered::Other { conn }
    }

    /// The live entry of an agent.
    pub fn get(&self, agent_id: &str) -> Option<&Entry<T>> {
        self.entries.get(agent_id)
    }

    /// Removes the entry of an agent (eviction).
    pub fn remove(&mut self, agent_id: &str) -> Option<Entry<T>> {
        self.entries.remove(agent_id)
    }

    /// All entries, by agent id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry<T>)> {
        self.entries.iter()
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
}
