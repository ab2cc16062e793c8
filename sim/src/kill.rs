//! A disk that dies with its process: the harness's way to hard-kill
//! `agent up` at a chosen point (`kill-up-after`).
//!
//! Armed with a trigger path, the first attempt to write that file fails
//! and so does every disk operation after it, as if the process had been
//! killed just before it: what was written stays (a kill is not a power
//! loss), nothing more gets written. Disarming revives the disk for the
//! processes that come after.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use proto::env::{Disk, File};

use crate::disk::SimDisk;

/// A [`SimDisk`] with a kill switch.
#[derive(Debug, Default)]
pub struct KillableDisk {
    inner: SimDisk,
    trigger: Mutex<Option<String>>,
    killed: AtomicBool,
}

fn killed() -> io::Error {
    io::Error::other("the process was killed")
}

impl KillableDisk {
    /// A kill switch over `inner`.
    pub fn new(inner: SimDisk) -> Self {
        KillableDisk {
            inner,
            ..KillableDisk::default()
        }
    }

    /// The disk underneath.
    pub fn inner(&self) -> &SimDisk {
        &self.inner
    }

    /// Kill at the first attempt to write `path` (or its temporary `path.tmp`).
    pub fn arm(&self, path: &str) {
        *self.trigger.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_string());
    }

    /// Disarms and revives; true when the kill happened.
    pub fn disarm(&self) -> bool {
        *self.trigger.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.killed.swap(false, Ordering::SeqCst)
    }

    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(killed())
        } else {
            Ok(())
        }
    }
}

impl Disk for KillableDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn File>> {
        self.check()?;
        // Opening with `create` is how every writer starts.
        if create {
            let trigger = self.trigger.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = trigger.as_deref() {
                if path == t || path == format!("{t}.tmp") {
                    self.killed.store(true, Ordering::SeqCst);
                    return Err(killed());
                }
            }
        }
        self.inner.open(path, create)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        self.check()?;
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        self.check()?;
        self.inner.remove(path)
    }

    fn exists(&self, path: &str) -> bool {
        self.inner.exists(path)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        self.check()?;
        self.inner.list()
    }

    fn sync_dir(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_dir()
    }
}
