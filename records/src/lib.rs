//! The records a fleet deployment and the simulator write, as plain serde
//! data with no runtime, network or simulator inside (issue 15, item 4):
//!
//! - [`frame`]: one frame-log record ([`frame::FrameRecord`]) and one
//!   event-log record ([`frame::EventRecord`]), the JSON Lines contract of
//!   docs/observation.md, and the caps a real process applies to what peers
//!   sent;
//! - [`outcome`]: the typed outcome document of a run, written and read
//!   by the same types, with the engine's answer as plain data;
//! - [`read`]: reading such logs with a bound on every record, a tolerated
//!   cut last line, and the merge of several processes' logs in time order.
//!
//! `proto::frame` re-exports [`frame`]; the hypothesis engine (`diagnosis`)
//! builds on this crate alone.

pub mod frame;
pub mod outcome;
pub mod read;

/// The string type of a frame record's fields: up to 24 bytes inline (every
/// point, connection id, peer and message type the product writes), so a
/// record costs no allocation of its own for them.
pub use compact_str::CompactString;
