//! The run's observer: every point's frame records and every host's events,
//! in the order the simulation produced them (one thread, so one order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use proto::env::Observer;
use proto::frame::{EventRecord, FrameRecord};

/// Collects the frame log and the event log of one run in memory.
#[derive(Debug, Default)]
pub struct RunObserver {
    frames: Mutex<Vec<FrameRecord>>,
    events: Mutex<Vec<EventRecord>>,
    next_conn: AtomicU64,
}

impl RunObserver {
    /// Takes what was recorded so far.
    pub fn take(&self) -> (Vec<FrameRecord>, Vec<EventRecord>) {
        let f = std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()));
        let e = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        (f, e)
    }
}

impl Observer for RunObserver {
    fn frame(&self, record: FrameRecord) {
        tracing::trace!(target: "simbench::frame", ?record);
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    fn event(&self, record: EventRecord) {
        // The fields as JSON (`{"port":7171}`), not serde_json's Debug (`Number(7171)`).
        tracing::debug!(target: "simbench::event", t_us = record.t_us, host = %record.host, event = %record.event, fields = %serde_json::Value::Object(record.fields.clone()));
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    fn next_conn_id(&self) -> String {
        format!("c{}", self.next_conn.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// Serialises records as JSON Lines.
pub fn to_jsonl<T: serde::Serialize>(records: &[T]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).expect("records serialize"));
        out.push('\n');
    }
    out
}
