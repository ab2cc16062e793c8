//! [`Disk`] on a real directory.
//!
//! Paths are the seam's flat relative paths (`store.redb`, `certs/agent.crt`),
//! mapped below a root directory. Subdirectories are created on demand.
//! [`File::sync`] is an `fdatasync` of the file (data and length);
//! [`Disk::sync_dir`] fsyncs every directory under the root and the root
//! itself, which makes creations, renames and removals durable.
//!
//! [`check_path`] holds the path rules every [`Disk`] of this project applies,
//! so a path the simulated disk accepts is one the real disk accepts too.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::env::{Disk, File};

/// Checks that `path` is a valid relative disk path: non-empty parts joined
/// by `/`, without a leading `/`, `.`, `..`, backslashes or NUL bytes.
pub fn check_path(path: &str) -> io::Result<()> {
    let valid = !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid disk path {path:?}: use a relative path like \"certs/agent.crt\" \
                 with no empty, \".\" or \"..\" parts"
            ),
        ))
    }
}

/// A [`Disk`] rooted at a real directory.
#[derive(Clone, Debug)]
pub struct FsDisk {
    root: PathBuf,
}

impl FsDisk {
    /// A disk rooted at `root`, creating the directory (and its parents) if needed.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<FsDisk> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| annotate(e, "create the disk root", &root))?;
        Ok(FsDisk { root })
    }

    /// The directory this disk lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of a checked relative path.
    fn real_path(&self, path: &str) -> io::Result<PathBuf> {
        check_path(path)?;
        Ok(path
            .split('/')
            .fold(self.root.clone(), |p, part| p.join(part)))
    }

    /// Creates the parent directories of `real` below the root.
    fn create_parent(real: &Path) -> io::Result<()> {
        match real.parent() {
            Some(parent) => {
                fs::create_dir_all(parent).map_err(|e| annotate(e, "create directory", parent))
            }
            None => Ok(()),
        }
    }
}

impl Disk for FsDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn File>> {
        let real = self.real_path(path)?;
        if create {
            Self::create_parent(&real)?;
        }
        let mut options = fs::OpenOptions::new();
        options
            .read(true)
            .write(true)
            .create(create)
            .truncate(false);
        // A component's disk holds its secrets (the server's store with the
        // CA key, an agent's client key and token): owner-only.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&real)
            .map_err(|e| annotate(e, "open", &real))?;
        Ok(Box::new(FsFile {
            file: Mutex::new(file),
            path: real,
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let real_from = self.real_path(from)?;
        let real_to = self.real_path(to)?;
        if !real_from.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("cannot rename {}: no such file", real_from.display()),
            ));
        }
        Self::create_parent(&real_to)?;
        fs::rename(&real_from, &real_to).map_err(|e| annotate(e, "rename", &real_from))
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let real = self.real_path(path)?;
        fs::remove_file(&real).map_err(|e| annotate(e, "remove", &real))
    }

    fn exists(&self, path: &str) -> bool {
        self.real_path(path).is_ok_and(|real| real.is_file())
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        list_into(&self.root, "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn sync_dir(&self) -> io::Result<()> {
        sync_tree(&self.root)
    }
}

/// Adds the files below `dir` to `out`, as relative paths prefixed by `prefix`.
/// Entries whose names are not UTF-8 are skipped: no seam path can name them.
fn list_into(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| annotate(e, "list", dir))?;
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let rel = format!("{prefix}{name}");
        let kind = entry
            .file_type()
            .map_err(|e| annotate(e, "stat", &entry.path()))?;
        if kind.is_dir() {
            list_into(&entry.path(), &format!("{rel}/"), out)?;
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

/// Fsyncs every directory below `dir` (children first), then `dir` itself.
fn sync_tree(dir: &Path) -> io::Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| annotate(e, "list", dir))?;
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, "list", dir))?;
        if entry
            .file_type()
            .map_err(|e| annotate(e, "stat", &entry.path()))?
            .is_dir()
        {
            sync_tree(&entry.path())?;
        }
    }
    sync_one_dir(dir)
}

/// Fsyncs one directory, making the entries in it durable.
#[cfg(unix)]
fn sync_one_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| annotate(e, "sync directory", dir))
}

/// Directories cannot be fsynced here; the file system orders metadata itself.
#[cfg(not(unix))]
fn sync_one_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Adds what was attempted, and on which path, to an I/O error.
fn annotate(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("cannot {action} {}: {err}", path.display()),
    )
}

/// An open file of an [`FsDisk`].
#[derive(Debug)]
struct FsFile {
    file: Mutex<fs::File>,
    path: PathBuf,
}

impl FsFile {
    fn lock(&self) -> MutexGuard<'_, fs::File> {
        self.file.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl File for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self
            .lock()
            .metadata()
            .map_err(|e| annotate(e, "stat", &self.path))?
            .len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut file = self.lock();
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| annotate(e, "read", &self.path))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut file = self.lock();
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(data))
            .map_err(|e| annotate(e, "write", &self.path))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.lock()
            .set_len(len)
            .map_err(|e| annotate(e, "resize", &self.path))
    }

    fn sync(&self) -> io::Result<()> {
        self.lock()
            .sync_data()
            .map_err(|e| annotate(e, "sync", &self.path))
    }

    fn try_lock(&self) -> io::Result<()> {
        match self.lock().try_lock() {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", self.path.display()),
            )),
            Err(fs::TryLockError::Error(e)) => Err(annotate(e, "lock", &self.path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("simbench-fsdisk-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn new_creates_the_root() {
        let tmp = TempDir::new("root");
        let disk = FsDisk::new(tmp.0.join("a/b")).unwrap();
        assert!(disk.root().is_dir());
        assert_eq!(disk.list().unwrap(), Vec::<String>::new());
        disk.sync_dir().unwrap();
    }

    #[test]
    fn a_lock_refuses_a_second_handle_until_the_first_is_closed() {
        let tmp = TempDir::new("lock");
        let disk = FsDisk::new(&tmp.0).unwrap();
        let first = disk.open("server.redb", true).unwrap();
        first.try_lock().unwrap();
        // flock locks belong to the open file: a second open is refused,
        // as a second process would be.
        let second = disk.open("server.redb", false).unwrap();
        let err = second.try_lock().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        assert!(err.to_string().contains("server.redb"), "{err}");
        drop(first);
        second.try_lock().unwrap();
    }

    #[test]
    fn file_read_write_len_set_len() {
        let tmp = TempDir::new("rw");
        let disk = FsDisk::new(&tmp.0).unwrap();
        let f = disk.open("data.bin", true).unwrap();
        assert!(f.is_empty().unwrap());
        f.write_at(0, b"hello").unwrap();
        f.write_at(8, b"xy").unwrap(); // leaves a zero-filled gap
        assert_eq!(f.len().unwrap(), 10);
        let mut buf = [0u8; 10];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hello\0\0\0xy");
        f.set_len(3).unwrap();
        f.set_len(5).unwrap(); // zero-extends
        let mut buf = [9u8; 5];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(&buf, b"hel\0\0");
        let mut past = [0u8; 2];
        let err = f.read_at(4, &mut past).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        f.sync().unwrap();
        // Another handle sees the same bytes, and so does the real file.
        let g = disk.open("data.bin", false).unwrap();
        assert_eq!(g.len().unwrap(), 5);
        assert_eq!(fs::read(tmp.0.join("data.bin")).unwrap(), b"hel\0\0");
    }

    #[test]
    fn open_missing_without_create_is_not_found() {
        let tmp = TempDir::new("missing");
        let disk = FsDisk::new(&tmp.0).unwrap();
        let err = disk.open("nope", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!disk.exists("nope"));
    }

    #[test]
    fn subdirectories_on_demand_and_sorted_list() {
        let tmp = TempDir::new("list");
        let disk = FsDisk::new(&tmp.0).unwrap();
        for path in ["z.txt", "certs/b.crt", "certs/a.key", "a/b/c.bin", "m"] {
            files::write(&disk, path, path.as_bytes()).unwrap();
        }
        assert!(tmp.0.join("certs").is_dir());
        assert_eq!(
            disk.list().unwrap(),
            ["a/b/c.bin", "certs/a.key", "certs/b.crt", "m", "z.txt"]
        );
        assert!(disk.exists("certs/a.key"));
        assert!(!disk.exists("certs")); // a directory is not a file
        assert_eq!(files::read(&disk, "a/b/c.bin").unwrap(), b"a/b/c.bin");
        disk.sync_dir().unwrap();
    }

    #[test]
    fn rename_replaces_and_remove_deletes() {
        let tmp = TempDir::new("rename");
        let disk = FsDisk::new(&tmp.0).unwrap();
        files::write(&disk, "old", b"old").unwrap();
        files::write(&disk, "new", b"new").unwrap();
        disk.rename("new", "old").unwrap();
        assert_eq!(disk.list().unwrap(), ["old"]);
        assert_eq!(files::read(&disk, "old").unwrap(), b"new");
        // Renaming into a directory that does not exist yet creates it.
        disk.rename("old", "certs/moved").unwrap();
        assert_eq!(disk.list().unwrap(), ["certs/moved"]);
        let err = disk.rename("old", "x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        disk.remove("certs/moved").unwrap();
        assert!(!disk.exists("certs/moved"));
        assert_eq!(disk.list().unwrap(), Vec::<String>::new());
        let err = disk.remove("certs/moved").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    #[cfg(unix)]
    fn files_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("modes");
        let disk = FsDisk::new(&tmp.0).unwrap();
        crate::files::write_atomic(&disk, "agent.json", b"{}").unwrap();
        disk.open("server.redb", true).unwrap();
        for f in ["agent.json", "server.redb"] {
            let mode = fs::metadata(tmp.0.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}: {mode:o}");
        }
    }

    #[test]
    fn write_atomic_leaves_no_temporary() {
        let tmp = TempDir::new("atomic");
        let disk = FsDisk::new(&tmp.0).unwrap();
        files::write_atomic(&disk, "certs/agent.crt", b"first, longer").unwrap();
        files::write_atomic(&disk, "certs/agent.crt", b"second").unwrap();
        assert_eq!(disk.list().unwrap(), ["certs/agent.crt"]);
        assert_eq!(files::read(&disk, "certs/agent.crt").unwrap(), b"second");
    }

    #[test]
    fn invalid_paths_are_rejected() {
        let tmp = TempDir::new("invalid");
        let disk = FsDisk::new(&tmp.0).unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../escape",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\\b",
        ] {
            let err = disk.open(bad, true).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(!disk.exists(bad));
            assert!(disk.rename(bad, "x").is_err());
            assert!(disk.remove(bad).is_err());
        }
        assert!(!tmp.0.parent().unwrap().join("escape").exists());
        assert_eq!(disk.list().unwrap(), Vec::<String>::new());
        check_path("certs/agent-1.crt").unwrap();
        check_path("store.redb").unwrap();
    }
}
