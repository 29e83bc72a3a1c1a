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
//! When the last connection to a database closes, SQLite deletes the `-shm` file, and the next
//! connection makes a new one. The file is therefore opened again by path whenever the one held
//! has no links left (`fstat` on the held descriptor, which costs a fraction of a look-up by
//! path: the path walk was most of this check's cost on every authenticated call).

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
    /// The index file last opened.
    open: Mutex<Option<File>>,
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
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let deleted = |file: &File| file.metadata().map_or(true, |meta| meta.nlink() == 0);
        if open.as_ref().is_none_or(deleted) {
            *open = Some(File::open(&self.path).ok()?);
        }
        let file = open.as_ref()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset of `iChange`, the transaction counter every commit advances.
    const I_CHANGE: usize = 8;

    /// Writes an index file whose header is valid and holds `change`.
    fn write_index(path: &Path, change: u8) {
        let mut header = [0u8; HEADER];
        header[IS_INIT] = 1;
        header[I_CHANGE] = change;
        std::fs::write(path, header).expect("write the index file");
    }

    #[test]
    fn the_stamp_follows_the_header_and_a_recreated_index_file() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database = dir.path().join("directory.db");
        let index = dir.path().join("directory.db-shm");
        let commits = Commits::new(&database);
        assert_eq!(commits.stamp(), None, "no index file yet");

        write_index(&index, 1);
        let first = commits.stamp().expect("a valid header");
        assert_eq!(commits.stamp(), Some(first), "nothing committed since");

        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .expect("open");
        file.write_all_at(&[2], I_CHANGE as u64)
            .expect("a commit rewrites the header in place");
        let second = commits.stamp().expect("a valid header");
        assert_ne!(second, first);

        // The last connection closes (the file is deleted) and a new one starts another file.
        std::fs::remove_file(&index).expect("delete the index file");
        assert_eq!(commits.stamp(), None, "a deleted index is not read");
        write_index(&index, 3);
        let third = commits.stamp().expect("the new file's header");
        assert_ne!(
            third, second,
            "the held descriptor of the deleted file was dropped"
        );
    }
}
