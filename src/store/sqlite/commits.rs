//! Whether any process has committed to the database file, told without a query.
//!
//! In WAL mode every connection to a database, in whatever process, shares the WAL index: the
//! `-shm` file next to the database, mapped into each process's memory. Its first 48 bytes are
//! the index header (<https://www.sqlite.org/walformat.html>), which every commit rewrites (the
//! transaction counter `iChange`, the last valid frame `mxFrame`, checksums) and a restart of
//! the WAL changes too (new salts); a commit becomes visible to readers only once this header is
//! written. Reading those bytes with one `pread` therefore tells whether anything was committed
//! since they were last read, at the cost of two system calls instead of a hand-off to the
//! driver's thread and back.
//!
//! The file is looked up by path on each read: when the last connection to a database closes,
//! SQLite deletes the `-shm` file, and the next connection makes a new one.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bytes of the first copy of the WAL-index header.
const HEADER: usize = 48;
/// Offset of `isInit`, non-zero once the header is valid.
const IS_INIT: usize = 12;

/// The WAL index of one database file.
pub(super) struct Commits {
    path: PathBuf,
    /// The index file last opened, with its inode number.
    open: Mutex<Option<(u64, File)>>,
}

impl Commits {
    /// The WAL index of the database file `database`.
    pub(super) fn new(database: &Path) -> Commits {
        let mut path = database.as_os_str().to_owned();
        path.push("-shm");
        Commits {
            path: PathBuf::from(path),
            open: Mutex::new(None),
        }
    }

    /// A value that differs from every earlier one once any process has committed (a hash of
    /// the index header); `None` when the index cannot be read (an in-memory database, a file
    /// being recovered), in which case the caller must ask the database.
    pub(super) fn stamp(&self) -> Option<u64> {
        let inode = std::fs::metadata(&self.path).ok()?.ino();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_none_or(|(opened, _)| *opened != inode) {
            let file = File::open(&self.path).ok()?;
            *open = Some((file.metadata().ok()?.ino(), file));
        }
        let (_, file) = open.as_ref()?;
        let mut header = [0u8; HEADER];
        file.read_exact_at(&mut header, 0).ok()?;
        if header[IS_INIT] == 0 {
            return None;
        }
        let mut hasher = DefaultHasher::new();
        header.hash(&mut hasher);
        Some(hasher.finish())
    }
}
