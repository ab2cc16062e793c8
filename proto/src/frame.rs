//! Frame-log and event-log records (DESIGN.md, "Observation"): the types
//! live in the serde-only `records` crate, re-exported here so existing
//! paths (`proto::frame::FrameRecord`) keep working.

pub use records::frame::*;

/// Builds a field map for [`crate::env::Env::event`]: `fields!{"agent_id" => id}`.
#[macro_export]
macro_rules! fields {
    () => { ::serde_json::Map::new() };
    ($($k:expr => $v:expr),+ $(,)?) => {{
        let mut m = ::serde_json::Map::new();
        $( m.insert(($k).to_string(), ::serde_json::json!($v)); )+
        m
    }};
}
