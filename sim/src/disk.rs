//! An in-memory [`Disk`] with power-loss semantics.
//!
//! Each file (an inode) has *current* contents, which reads see, and
//! *durable* contents, which survive a crash; [`File::sync`] copies the one
//! to the other. The namespace (which names exist and which inode each names)
//! has a current and a durable version too; [`Disk::sync_dir`] makes the
//! current one durable. So a file created and synced but never covered by a
//! `sync_dir` is gone after a crash, and a rename not followed by `sync_dir`
//! is undone, as on a real file system that was not asked to persist its
//! directory.
//!
//! [`SimDisk::crash`] is the power loss: everything not durable is dropped
//! and every [`File`] opened before it fails from then on (the process that
//! held them is dead). [`SimDisk::crash_with`] can instead let an arbitrary,
//! seeded subset of the unsynced pages reach the medium, which is what a real
//! disk that reorders writes may do. [`SimDisk::crash_after`] arms a crash
//! that fires at the n-th following mutating operation, to crash in the
//! middle of a commit.
//!
//! The disk is a cheap [`Clone`] sharing its state, so the harness keeps it
//! across a host's crash and restart. Everything is ordered (`BTreeMap`) and
//! seeded: the same operations give the same disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use proto::env::{Disk, File};
use proto::fsdisk::check_path;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Granularity of write tracking, and of what survives a [`CrashMode::Torn`] crash.
pub const PAGE_SIZE: u64 = 4096;

/// Largest file the simulated disk holds, so a runaway length is an error, not an abort.
pub const MAX_FILE_LEN: u64 = 1 << 30;

/// What a crash keeps of the writes that were not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write and namespace change is lost.
    LoseUnsynced,
    /// Each unsynced page independently reached the medium or not, and each
    /// unsynced length change did or did not, as drawn from a ChaCha8 RNG
    /// seeded with this value. Namespace changes not covered by `sync_dir`
    /// are still lost.
    Torn(u64),
}

/// An in-memory disk with crash semantics; clones share the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

/// A crash armed by [`SimDisk::crash_after`].
#[derive(Clone, Copy, Debug)]
struct Armed {
    /// Mutating operations still allowed before the crash.
    remaining: u64,
    mode: CrashMode,
}

#[derive(Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    /// The namespace as the running processes see it.
    names: BTreeMap<String, u64>,
    /// The namespace a crash returns to.
    durable_names: BTreeMap<String, u64>,
    next_inode: u64,
    /// The id the next opened handle gets (for [`File::try_lock`]).
    next_handle: u64,
    /// Bumped at every crash; handles from an older epoch are dead.
    epoch: u64,
    /// Mutating operations performed so far.
    ops: u64,
    /// Crashes so far.
    crashes: u64,
    armed: Option<Armed>,
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Pages of `current` that may differ from `durable`; every byte at or
    /// past `durable.len()` and below `current.len()` is in one of them.
    dirty: BTreeSet<u64>,
    /// Live handles of the current epoch.
    open: usize,
    /// The handle holding the file's lock ([`File::try_lock`]), if one does.
    locked_by: Option<u64>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated power loss: the disk crashed; reopen the file after the restart")
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no such file on the simulated disk: {path}"),
    )
}

/// Converts a file position to an index, refusing lengths past [`MAX_FILE_LEN`].
fn position(pos: u64) -> io::Result<usize> {
    if pos > MAX_FILE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("simulated file would grow to {pos} bytes, past the {MAX_FILE_LEN}-byte limit"),
        ));
    }
    usize::try_from(pos).map_err(|_| io::Error::other("file position does not fit in memory"))
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A power loss: drops every write not made durable by [`File::sync`] and
    /// every namespace change not made durable by [`Disk::sync_dir`]. Files
    /// opened before the crash fail from now on.
    pub fn crash(&self) {
        self.crash_with(CrashMode::LoseUnsynced);
    }

    /// A power loss that keeps what `mode` says of the unsynced writes.
    pub fn crash_with(&self, mode: CrashMode) {
        lock(&self.state).crash(mode);
    }

    /// Arms a crash: the next `ops` mutating operations (file `write_at`,
    /// `set_len`, `sync`; disk `open` that creates, `rename`, `remove`,
    /// `sync_dir`) happen, and the one after them crashes the disk with
    /// `mode` instead of happening, failing with an error. Replaces an armed
    /// crash that has not fired.
    pub fn crash_after(&self, ops: u64, mode: CrashMode) {
        lock(&self.state).armed = Some(Armed {
            remaining: ops,
            mode,
        });
    }

    /// Disarms a crash set by [`SimDisk::crash_after`]; whether one was still armed.
    pub fn disarm(&self) -> bool {
        lock(&self.state).armed.take().is_some()
    }

    /// Mutating operations performed so far (see [`SimDisk::crash_after`]).
    pub fn ops(&self) -> u64 {
        lock(&self.state).ops
    }

    /// Crashes so far, armed or direct.
    pub fn crashes(&self) -> u64 {
        lock(&self.state).crashes
    }

    /// An independent disk with the same current and durable contents and
    /// none of the open files: a run can be branched at this point, e.g. to
    /// crash it at every later operation. Counters start from zero, nothing is armed.
    pub fn fork(&self) -> SimDisk {
        let state = lock(&self.state);
        let mut copy = State {
            inodes: state
                .inodes
                .iter()
                .map(|(&id, inode)| {
                    let copy = Inode {
                        current: inode.current.clone(),
                        durable: inode.durable.clone(),
                        dirty: inode.dirty.clone(),
                        open: 0,
                        locked_by: None,
                    };
                    (id, copy)
                })
                .collect(),
            names: state.names.clone(),
            durable_names: state.durable_names.clone(),
            next_inode: state.next_inode,
            ..State::default()
        };
        copy.collect_garbage();
        SimDisk {
            state: Arc::new(Mutex::new(copy)),
        }
    }

    /// Every file's current contents, by path.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let state = lock(&self.state);
        state
            .names
            .iter()
            .map(|(path, id)| (path.clone(), state.inodes[id].current.clone()))
            .collect()
    }

    /// What a [`SimDisk::crash`] now would leave: durable names and their durable contents.
    pub fn durable_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let state = lock(&self.state);
        state
            .durable_names
            .iter()
            .map(|(path, id)| (path.clone(), state.inodes[id].durable.clone()))
            .collect()
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        let files: BTreeMap<&str, usize> = state
            .names
            .iter()
            .map(|(path, id)| (path.as_str(), state.inodes[id].current.len()))
            .collect();
        f.debug_struct("SimDisk")
            .field("files", &files)
            .field("epoch", &state.epoch)
            .finish()
    }
}

impl State {
    /// Counts one mutating operation, or crashes the disk if an armed crash is due.
    fn step(&mut self) -> io::Result<()> {
        if let Some(armed) = &mut self.armed {
            if armed.remaining == 0 {
                let mode = armed.mode;
                self.armed = None;
                self.crash(mode);
                return Err(crashed_error());
            }
            armed.remaining -= 1;
        }
        self.ops += 1;
        Ok(())
    }

    fn crash(&mut self, mode: CrashMode) {
        let mut rng = match mode {
            CrashMode::LoseUnsynced => None,
            CrashMode::Torn(seed) => Some(ChaCha8Rng::seed_from_u64(seed)),
        };
        self.epoch += 1;
        self.crashes += 1;
        self.names = self.durable_names.clone();
        for inode in self.inodes.values_mut() {
            inode.open = 0;
            inode.locked_by = None;
            match &mut rng {
                None => inode.lose_unsynced(),
                Some(rng) => inode.tear(rng),
            }
        }
        self.collect_garbage();
    }

    /// Drops inodes that no name, durable name or live handle refers to.
    fn collect_garbage(&mut self) {
        let referenced: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes
            .retain(|id, inode| inode.open > 0 || referenced.contains(id));
    }

    /// Refuses a name that a file and a directory would both need.
    fn check_free(&self, path: &str) -> io::Result<()> {
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                if self.names.contains_key(&prefix) {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("cannot create {path}: {prefix} is a file"),
                    ));
                }
                prefix.push('/');
            }
            prefix.push_str(part);
        }
        let dir = format!("{path}/");
        if self
            .names
            .range(dir.clone()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(&dir))
        {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("cannot create {path}: it is a directory"),
            ));
        }
        Ok(())
    }
}

impl Inode {
    fn mark(&mut self, start: u64, end: u64) {
        if end > start {
            self.dirty
                .extend(start / PAGE_SIZE..end.div_ceil(PAGE_SIZE));
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| io::Error::other("write past the end of the address space"))?;
        let (start_ix, end_ix) = (position(offset)?, position(end)?);
        let old_len = self.current.len() as u64;
        if end > old_len {
            // The gap between the old end and `offset` becomes zeros: dirty too.
            self.mark(old_len.min(offset), end);
            self.current.resize(end_ix, 0);
        } else {
            self.mark(offset, end);
        }
        self.current[start_ix..end_ix].copy_from_slice(data);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let new_len = position(len)?;
        let old_len = self.current.len() as u64;
        if len > old_len {
            self.mark(old_len, len);
        } else {
            // The page holding the new end keeps only its head.
            self.mark(len, len + 1);
        }
        self.current.resize(new_len, 0);
        Ok(())
    }

    fn sync(&mut self) {
        let len = self.current.len();
        self.durable.resize(len, 0);
        for &page in &self.dirty {
            let start = (page * PAGE_SIZE) as usize;
            if start >= len {
                break;
            }
            let end = (start + PAGE_SIZE as usize).min(len);
            self.durable[start..end].copy_from_slice(&self.current[start..end]);
        }
        self.dirty.clear();
    }

    fn lose_unsynced(&mut self) {
        let (old_len, len) = (self.current.len(), self.durable.len());
        self.current.resize(len, 0);
        if old_len < len {
            self.current[old_len..].copy_from_slice(&self.durable[old_len..]);
        }
        for &page in &self.dirty {
            let start = (page * PAGE_SIZE) as usize;
            if start >= len {
                break;
            }
            let end = (start + PAGE_SIZE as usize).min(len);
            self.current[start..end].copy_from_slice(&self.durable[start..end]);
        }
        self.dirty.clear();
    }

    /// Lets a random subset of the dirty pages, and maybe the new length,
    /// become durable, then drops the rest.
    fn tear(&mut self, rng: &mut ChaCha8Rng) {
        if self.dirty.is_empty() && self.current.len() == self.durable.len() {
            return;
        }
        let len = if rng.next_u32() & 1 == 0 {
            self.current.len()
        } else {
            self.durable.len()
        };
        // Bytes past the old durable end are all in dirty pages, so the
        // dirty set still covers every difference after this.
        self.durable.resize(len, 0);
        let limit = len.min(self.current.len());
        for &page in &self.dirty {
            let keep = rng.next_u32() & 1 == 0;
            let start = (page * PAGE_SIZE) as usize;
            if keep && start < limit {
                let end = (start + PAGE_SIZE as usize).min(limit);
                self.durable[start..end].copy_from_slice(&self.current[start..end]);
            }
        }
        self.lose_unsynced();
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn File>> {
        check_path(path)?;
        let mut state = lock(&self.state);
        let id = match state.names.get(path) {
            Some(&id) => id,
            None if create => {
                state.check_free(path)?;
                state.step()?;
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.names.insert(path.to_string(), id);
                id
            }
            None => return Err(not_found(path)),
        };
        if let Some(inode) = state.inodes.get_mut(&id) {
            inode.open += 1;
        }
        let handle = state.next_handle;
        state.next_handle += 1;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode: id,
            handle,
            epoch: state.epoch,
            path: path.to_string(),
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        check_path(from)?;
        check_path(to)?;
        let mut state = lock(&self.state);
        if !state.names.contains_key(from) {
            return Err(not_found(from));
        }
        if from == to {
            return Ok(());
        }
        if !state.names.contains_key(to) {
            state.check_free(to)?;
        }
        state.step()?;
        if let Some(id) = state.names.remove(from) {
            state.names.insert(to.to_string(), id);
        }
        state.collect_garbage();
        Ok(())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        let mut state = lock(&self.state);
        if !state.names.contains_key(path) {
            return Err(not_found(path));
        }
        state.step()?;
        state.names.remove(path);
        state.collect_garbage();
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        check_path(path).is_ok() && lock(&self.state).names.contains_key(path)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(lock(&self.state).names.keys().cloned().collect())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.step()?;
        state.durable_names = state.names.clone();
        state.collect_garbage();
        Ok(())
    }
}

/// An open file of a [`SimDisk`]; refers to its inode, so it survives renames
/// and removals of its name, but not a crash.
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    /// This handle's id, unique on the disk.
    handle: u64,
    epoch: u64,
    path: String,
}

impl SimFile {
    /// Runs `f` on this file's inode, if the disk has not crashed since it was opened.
    fn with<T>(
        &self,
        mutating: bool,
        f: impl FnOnce(&mut Inode) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = lock(&self.state);
        if state.epoch != self.epoch {
            return Err(crashed_error());
        }
        if mutating {
            state.step()?;
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| io::Error::other("simulated disk lost an open file's inode"))?;
        f(inode)
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile")
            .field("path", &self.path)
            .field("inode", &self.inode)
            .finish()
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if state.epoch != self.epoch {
            return;
        }
        if let Some(inode) = state.inodes.get_mut(&self.inode) {
            inode.open = inode.open.saturating_sub(1);
            if inode.locked_by == Some(self.handle) {
                inode.locked_by = None;
            }
        }
        state.collect_garbage();
    }
}

impl File for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.with(false, |inode| Ok(inode.current.len() as u64))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with(false, |inode| {
            let len = inode.current.len() as u64;
            let end = offset.checked_add(buf.len() as u64);
            match end {
                Some(end) if end <= len => {
                    buf.copy_from_slice(&inode.current[offset as usize..end as usize]);
                    Ok(())
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "read of {} bytes at {offset} past the end of {} ({len} bytes)",
                        buf.len(),
                        self.path
                    ),
                )),
            }
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with(true, |inode| inode.write(offset, data))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(true, |inode| inode.set_len(len))
    }

    fn sync(&self) -> io::Result<()> {
        self.with(true, |inode| {
            inode.sync();
            Ok(())
        })
    }

    fn try_lock(&self) -> io::Result<()> {
        self.with(false, |inode| match inode.locked_by {
            Some(holder) if holder != self.handle => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another handle", self.path),
            )),
            _ => {
                inode.locked_by = Some(self.handle);
                Ok(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::files;

    fn read(disk: &SimDisk, path: &str) -> Vec<u8> {
        files::read(disk, path).unwrap()
    }

    #[test]
    fn unsynced_write_is_lost_at_crash() {
        let disk = SimDisk::new();
        let f = disk.open("a", true).unwrap();
        disk.sync_dir().unwrap();
        f.write_at(0, b"volatile").unwrap();
        assert_eq!(read(&disk, "a"), b"volatile");
        disk.crash();
        assert!(disk.exists("a"));
        assert_eq!(read(&disk, "a"), b"");
    }

    #[test]
    fn synced_write_is_kept_and_later_unsynced_one_lost() {
        let disk = SimDisk::new();
        let f = disk.open("a", true).unwrap();
        f.write_at(0, b"durable").unwrap();
        f.sync().unwrap();
        disk.sync_dir().unwrap();
        f.write_at(0, b"DUR").unwrap();
        f.set_len(100).unwrap();
        disk.crash();
        assert_eq!(read(&disk, "a"), b"durable");
        assert_eq!(disk.snapshot(), disk.durable_snapshot());
    }

    #[test]
    fn created_file_without_sync_dir_is_lost() {
        let disk = SimDisk::new();
        let f = disk.open("certs/new.crt", true).unwrap();
        f.write_at(0, b"data").unwrap();
        f.sync().unwrap();
        assert_eq!(disk.list().unwrap(), ["certs/new.crt"]);
        assert!(disk.durable_snapshot().is_empty());
        disk.crash();
        assert_eq!(disk.list().unwrap(), Vec::<String>::new());
        assert!(!disk.exists("certs/new.crt"));
    }

    #[test]
    fn rename_before_sync_dir_is_lost() {
        let disk = SimDisk::new();
        files::write(&disk, "a", b"A").unwrap();
        disk.rename("a", "b").unwrap();
        assert_eq!(disk.list().unwrap(), ["b"]);
        disk.crash();
        assert_eq!(disk.list().unwrap(), ["a"]);
        assert_eq!(read(&disk, "a"), b"A");
        // After sync_dir the rename survives.
        disk.rename("a", "b").unwrap();
        disk.sync_dir().unwrap();
        disk.crash();
        assert_eq!(disk.list().unwrap(), ["b"]);
        assert_eq!(read(&disk, "b"), b"A");
    }

    #[test]
    fn remove_before_sync_dir_is_undone() {
        let disk = SimDisk::new();
        files::write(&disk, "keep", b"K").unwrap();
        disk.remove("keep").unwrap();
        assert!(!disk.exists("keep"));
        assert_eq!(
            disk.remove("keep").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        disk.crash();
        assert_eq!(read(&disk, "keep"), b"K");
        disk.remove("keep").unwrap();
        disk.sync_dir().unwrap();
        disk.crash();
        assert!(!disk.exists("keep"));
    }

    #[test]
    fn handles_opened_before_a_crash_fail_after_it() {
        let disk = SimDisk::new();
        files::write(&disk, "a", b"A").unwrap();
        let old = disk.open("a", false).unwrap();
        disk.crash();
        assert!(old.len().is_err());
        assert!(old.write_at(0, b"zombie").is_err());
        assert!(old.sync().is_err());
        drop(old);
        let new = disk.open("a", false).unwrap();
        assert_eq!(new.len().unwrap(), 1);
        assert_eq!(disk.crashes(), 1);
    }

    #[test]
    fn open_handle_survives_rename_and_remove() {
        let disk = SimDisk::new();
        let f = disk.open("a", true).unwrap();
        f.write_at(0, b"one").unwrap();
        disk.rename("a", "b").unwrap();
        f.write_at(3, b"two").unwrap();
        assert_eq!(read(&disk, "b"), b"onetwo");
        disk.remove("b").unwrap();
        f.write_at(0, b"ONE").unwrap();
        let mut buf = [0u8; 6];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"ONEtwo");
        assert!(disk.snapshot().is_empty());
        drop(f);
        assert!(lock(&disk.state).inodes.is_empty(), "unlinked inode freed");
    }

    #[test]
    fn clones_share_the_disk() {
        let disk = SimDisk::new();
        let other = disk.clone();
        files::write(&disk, "a", b"A").unwrap();
        assert_eq!(read(&other, "a"), b"A");
        other.crash();
        assert_eq!(disk.crashes(), 1);
    }

    #[test]
    fn fork_is_independent() {
        let disk = SimDisk::new();
        files::write(&disk, "a", b"durable").unwrap();
        let f = disk.open("a", false).unwrap();
        f.write_at(0, b"VOLATILE").unwrap();
        let fork = disk.fork();
        assert_eq!(fork.snapshot(), disk.snapshot());
        assert_eq!(fork.durable_snapshot(), disk.durable_snapshot());
        files::write(&fork, "b", b"only in the fork").unwrap();
        assert!(!disk.exists("b"));
        fork.crash();
        assert_eq!(read(&fork, "a"), b"durable");
        assert_eq!(read(&disk, "a"), b"VOLATILE");
        f.write_at(0, b"still usable").unwrap(); // the original's handle is unaffected
        assert_eq!(disk.crashes(), 0);
    }

    #[test]
    fn reads_past_the_end_fail_and_gaps_are_zero() {
        let disk = SimDisk::new();
        let f = disk.open("a", true).unwrap();
        f.write_at(5, b"x").unwrap();
        let mut buf = [7u8; 6];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"\0\0\0\0\0x");
        let err = f.read_at(1, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = f.set_len(MAX_FILE_LEN + 1).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(f.len().unwrap(), 6);
    }

    #[test]
    fn paths_follow_the_real_disk_rules() {
        let disk = SimDisk::new();
        for bad in ["", "/abs", "../x", "a//b", "a/"] {
            assert_eq!(
                disk.open(bad, true).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        files::write(&disk, "certs/a.crt", b"").unwrap();
        files::write(&disk, "b", b"").unwrap();
        assert_eq!(
            disk.open("certs", true).unwrap_err().kind(),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            disk.open("b/c", true).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        assert_eq!(
            disk.rename("b", "certs").unwrap_err().kind(),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            disk.open("missing", false).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(disk.list().unwrap(), ["b", "certs/a.crt"]);
    }

    /// Runs `write_atomic` of `new` over a durable `old` with a crash armed
    /// after `k` mutating operations; returns what the file holds after the crash.
    fn write_atomic_crashing_after(k: u64, old: &[u8], new: &[u8]) -> (Vec<u8>, bool) {
        let disk = SimDisk::new();
        files::write_atomic(&disk, "certs/agent.crt", old).unwrap();
        disk.crash_after(k, CrashMode::LoseUnsynced);
        let result = files::write_atomic(&disk, "certs/agent.crt", new);
        let crashed = disk.crashes() == 1;
        assert_eq!(result.is_err(), crashed, "an error exactly when it crashed");
        if !crashed {
            assert!(disk.disarm());
            disk.crash();
        }
        (read(&disk, "certs/agent.crt"), crashed)
    }

    #[test]
    fn write_atomic_leaves_old_or_new_whole_at_every_crash_point() {
        let old = b"old certificate, longer than the new one".as_slice();
        let new = b"new certificate".as_slice();
        let mut outcomes = Vec::new();
        for k in 0..20 {
            let (content, crashed) = write_atomic_crashing_after(k, old, new);
            assert!(
                content == old || content == new,
                "crash after {k} ops left {:?}",
                String::from_utf8_lossy(&content)
            );
            outcomes.push((content == new, crashed));
            if !crashed {
                break;
            }
        }
        // open, set_len, write_at, sync, rename, sync_dir: six crash points, then none.
        assert_eq!(outcomes.len(), 7, "{outcomes:?}");
        assert!(outcomes[..6].iter().all(|&(_, crashed)| crashed));
        assert!(outcomes[..6].iter().all(|&(is_new, _)| !is_new));
        assert_eq!(outcomes[6], (true, false));
    }

    #[test]
    fn write_atomic_crash_points_with_torn_writes() {
        let old = vec![b'o'; 10_000];
        let new = vec![b'n'; 9_000];
        for k in 0..7 {
            for seed in 0..8 {
                let disk = SimDisk::new();
                files::write_atomic(&disk, "f", &old).unwrap();
                disk.crash_after(k, CrashMode::Torn(seed));
                let _ = files::write_atomic(&disk, "f", &new);
                disk.disarm();
                disk.crash_with(CrashMode::Torn(seed));
                let content = read(&disk, "f");
                assert!(content == old || content == new, "k={k} seed={seed}");
            }
        }
    }

    #[test]
    fn sync_and_crash_match_a_whole_copy_model() {
        // Page tracking against copying whole files, on random operations.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let disk = SimDisk::new();
            let mut f = disk.open("f", true).unwrap();
            disk.sync_dir().unwrap();
            let mut model_current: Vec<u8> = Vec::new();
            let mut model_durable: Vec<u8> = Vec::new();
            for _ in 0..30 {
                let max = 5 * PAGE_SIZE as u32;
                match rng.next_u32() % 7 {
                    0 | 1 => {
                        let offset = (rng.next_u32() % max) as usize;
                        let len = (rng.next_u32() % (PAGE_SIZE as u32 * 2)) as usize;
                        let byte = (rng.next_u32() % 255 + 1) as u8;
                        let data = vec![byte; len];
                        f.write_at(offset as u64, &data).unwrap();
                        if len > 0 {
                            if model_current.len() < offset + len {
                                model_current.resize(offset + len, 0);
                            }
                            model_current[offset..offset + len].copy_from_slice(&data);
                        }
                    }
                    2 => {
                        let len = (rng.next_u32() % max) as usize;
                        f.set_len(len as u64).unwrap();
                        model_current.resize(len, 0);
                    }
                    3 => {
                        f.sync().unwrap();
                        model_durable.clone_from(&model_current);
                    }
                    4 => {
                        disk.crash();
                        model_current.clone_from(&model_durable);
                        f = disk.open("f", false).unwrap();
                    }
                    5 => {
                        disk.crash_with(CrashMode::Torn(rng.next_u64()));
                        let got = read(&disk, "f");
                        let len = got.len();
                        assert!(len == model_current.len() || len == model_durable.len());
                        let (mut cur, mut dur) = (model_current.clone(), model_durable.clone());
                        cur.resize(len, 0);
                        dur.resize(len, 0);
                        for i in 0..len {
                            assert!(got[i] == cur[i] || got[i] == dur[i], "byte {i}");
                        }
                        model_current.clone_from(&got);
                        model_durable = got;
                        f = disk.open("f", false).unwrap();
                    }
                    _ => {
                        assert_eq!(disk.snapshot()["f"], model_current);
                        assert_eq!(disk.durable_snapshot()["f"], model_durable);
                    }
                }
            }
            assert_eq!(disk.snapshot()["f"], model_current);
            assert_eq!(disk.durable_snapshot()["f"], model_durable);
            disk.crash();
            assert_eq!(read(&disk, "f"), model_durable);
        }
    }

    #[test]
    fn torn_crash_keeps_synced_data_and_whole_pages() {
        let page = PAGE_SIZE as usize;
        let mut kept_some = false;
        let mut lost_some = false;
        for seed in 0..32 {
            let disk = SimDisk::new();
            let f = disk.open("f", true).unwrap();
            f.write_at(0, &vec![b'a'; 4 * page]).unwrap();
            f.sync().unwrap();
            disk.sync_dir().unwrap();
            f.write_at(0, &vec![b'b'; 4 * page]).unwrap();
            disk.crash_with(CrashMode::Torn(seed));
            let content = read(&disk, "f");
            assert_eq!(content.len(), 4 * page);
            for chunk in content.chunks(page) {
                assert!(chunk.iter().all(|&b| b == chunk[0]), "page torn inside");
                kept_some |= chunk[0] == b'b';
                lost_some |= chunk[0] == b'a';
            }
            // Same seed, same outcome.
            let again = SimDisk::new();
            let g = again.open("f", true).unwrap();
            g.write_at(0, &vec![b'a'; 4 * page]).unwrap();
            g.sync().unwrap();
            again.sync_dir().unwrap();
            g.write_at(0, &vec![b'b'; 4 * page]).unwrap();
            again.crash_with(CrashMode::Torn(seed));
            assert_eq!(read(&again, "f"), content);
        }
        assert!(kept_some && lost_some);
    }

    #[test]
    fn armed_crash_counts_mutating_operations() {
        let disk = SimDisk::new();
        files::write(&disk, "a", b"A").unwrap(); // open(create), set_len, write, sync, sync_dir
        assert_eq!(disk.ops(), 5);
        disk.crash_after(1, CrashMode::LoseUnsynced);
        let f = disk.open("a", false).unwrap(); // not mutating
        f.write_at(0, b"B").unwrap(); // the one allowed
        assert!(f.sync().is_err()); // crashes instead
        assert_eq!(disk.crashes(), 1);
        assert!(!disk.disarm());
        assert_eq!(read(&disk, "a"), b"A");
    }

    #[test]
    fn a_lock_is_held_until_its_handle_goes_and_dies_with_a_crash() {
        let disk = SimDisk::new();
        let first = disk.open("db", true).unwrap();
        disk.sync_dir().unwrap();
        first.try_lock().unwrap();
        first.try_lock().unwrap(); // its own lock again
        let second = disk.open("db", false).unwrap();
        let err = second.try_lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // Another file is not locked by it.
        disk.open("other", true).unwrap().try_lock().unwrap();
        drop(first);
        second.try_lock().unwrap();
        // A crash kills the holder: the restarted process takes the lock.
        disk.crash();
        let after = disk.open("db", false).unwrap();
        after.try_lock().unwrap();
        // A fork has no holders.
        disk.fork().open("db", false).unwrap().try_lock().unwrap();
    }
}
