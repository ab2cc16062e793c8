//! The run's observer: every point's frame records and every host's events,
//! in the order the simulation produced them (one thread, so one order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::env::Observer;
use proto::frame::{EventRecord, FrameRecord};

use crate::crypto::SecretLog;

/// Collects the frame log and the event log of one run in memory.
#[derive(Debug, Default)]
pub struct RunObserver {
    frames: Mutex<Vec<FrameRecord>>,
    events: Mutex<Vec<EventRecord>>,
    next_conn: AtomicU64,
    // The sessions' TLS secrets, when the run keeps them (for its capture).
    secrets: Option<Arc<SecretLog>>,
}

impl RunObserver {
    /// An observer that also keeps every session's TLS secrets.
    pub fn keeping_secrets() -> Self {
        RunObserver {
            secrets: Some(Arc::default()),
            ..RunObserver::default()
        }
    }

    /// The secrets kept so far, as a key log file (empty when not kept).
    pub fn key_log_text(&self) -> String {
        self.secrets.as_ref().map(|s| s.text()).unwrap_or_default()
    }

    /// The secrets being kept, when they are.
    pub fn secrets(&self) -> Option<Arc<SecretLog>> {
        self.secrets.clone()
    }

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

    fn key_log(&self) -> Option<Arc<dyn rustls::KeyLog>> {
        self.secrets.clone().map(|s| s as Arc<dyn rustls::KeyLog>)
    }
}

/// Serialises records as JSON Lines.
pub fn to_jsonl<T: serde::Serialize>(records: &[T]) -> String {
    let mut out = Vec::new();
    write_jsonl(&mut out, records).expect("records serialize");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// The same JSON Lines, written to `w` record by record (a long run's frame
/// log is hundreds of MB: hashing it or writing it needs no copy of it).
pub fn write_jsonl<T: serde::Serialize>(
    w: &mut dyn std::io::Write,
    records: &[T],
) -> std::io::Result<()> {
    for r in records {
        serde_json::to_writer(&mut *w, r)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
