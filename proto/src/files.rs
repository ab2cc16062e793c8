//! Whole-file helpers over a [`Disk`].

use std::io;

use crate::env::Disk;

/// Reads a whole file.
pub fn read(disk: &dyn Disk, path: &str) -> io::Result<Vec<u8>> {
    let f = disk.open(path, false)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_at(0, &mut buf)?;
    Ok(buf)
}

/// Overwrites a file in place and syncs it (not atomic: a crash may leave it torn).
pub fn write(disk: &dyn Disk, path: &str, data: &[u8]) -> io::Result<()> {
    let f = disk.open(path, true)?;
    f.set_len(0)?;
    f.write_at(0, data)?;
    f.sync()?;
    disk.sync_dir()
}

/// Replaces a file atomically: write a temporary file, sync it, rename it over
/// `path`, sync the directory. A crash leaves either the old or the new file.
pub fn write_atomic(disk: &dyn Disk, path: &str, data: &[u8]) -> io::Result<()> {
    let tmp = format!("{path}.tmp");
    let f = disk.open(&tmp, true)?;
    f.set_len(0)?;
    f.write_at(0, data)?;
    f.sync()?;
    disk.rename(&tmp, path)?;
    disk.sync_dir()
}
