//! Staging of a large write (a sync), so that it holds SQLite's one writer for short copies
//! rather than for the whole write (docs/DESIGN.md, "Write path of a sync").
//!
//! SQLite lets one transaction write at a time, and a sync must commit whole. Writing a million
//! members with their memberships and events took 4-5 s, and every other team's write waited
//! behind it. Most of that time is making and binding the rows, not SQLite's B-trees: copied
//! from one database into another with `INSERT … SELECT`, the same rows take under a second.
//! So the rows are first written into a staging file of their own, next to the database, by
//! the same writer code as any write ([`SqliteWriter`]), without the database's lock; the file
//! is made durable, one short transaction on the writing connection checks the team's version
//! and records the write as decided, and the rows are then copied in by short transactions
//! ([`super::copy`]). Readers and crash recovery see the directory before or after, never a
//! mix.
//!
//! This needs what the rows name to be fixed before the lock is taken: the group ids are
//! reserved first (a short transaction that advances the table's counter), and the event
//! numbers follow the team's last one, which cannot change unless its version does (the
//! decision then refuses, and the sync is decided again).
//!
//! A write that only adds rows (a first sync) stages them as they are. One that changes stored
//! rows stages what they become instead, as a sync writes each object once: a changed group
//! whole, a member's row with the memberships it keeps or gains, and two lists, of the members
//! whose memberships are replaced and of those removed. The copy deletes what the lists and the
//! changed groups name and is not staged, and overwrites the rest: what the write would have
//! done in place, as set statements.
//!
//! A staging file is locked (`flock`) by the process writing or copying it and removed when
//! the write ends. One left by a process that was killed before its write was decided is
//! removed when the database is next opened or a write is next staged, by whichever process
//! finds it unlocked and untouched for a minute; one whose write was decided is kept until its
//! copy is finished.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::copy::{self, PendingCopy};
use super::directory::SqliteWriter;
use super::{BEGIN_WRITE, SqliteStore};
use crate::domain::directory::Staging;
use crate::domain::events::Actor;
use crate::domain::values::GroupId;
use crate::store::backend::Backend;
use crate::store::{
    Applied, ChangeChunks, LargeWrite, StagedWrite, StoreError, StoreResult, apply,
};

/// The tables a staged write fills, made in the staging file from the database's own
/// definitions (so they cannot drift from the migrations).
const STAGED_TABLES: &str = "SELECT sql FROM sqlite_schema WHERE type = 'table' \
     AND name IN ('groups', 'members', 'memberships', 'events', 'event_writes') ORDER BY name";

/// Reserve `$1` group ids: the counter the writers number new groups from
/// ([`super::directory`]: one past the larger of it and the highest id) is moved past them.
/// Answers the first reserved id.
const RESERVE_GROUP_IDS: &str = "UPDATE sqlite_sequence \
     SET seq = MAX(seq, COALESCE((SELECT MAX(id) FROM groups), 0)) + $1 \
     WHERE name = 'groups' RETURNING seq - $1 + 1";
/// [`RESERVE_GROUP_IDS`] when no group was ever numbered (the counter has no row yet).
const RESERVE_FIRST_GROUP_IDS: &str = "INSERT INTO sqlite_sequence (name, seq) \
     SELECT 'groups', COALESCE((SELECT MAX(id) FROM groups), 0) + $1 RETURNING seq - $1 + 1";

/// The staged write's version check, which also takes its event numbers: it stands only if
/// the team is still where the rows were staged from.
const BUMP: &str = "UPDATE teams SET version = version + 1, event_seq = event_seq + $1 \
     WHERE id = $2 AND version = $3 AND event_seq = $4 RETURNING version";

/// The list, beside the staged rows of a write that changes stored rows, of the members whose
/// memberships it replaces ([`super::directory`]).
pub(super) const REWRITTEN_MEMBERS: &str = "rewritten_members";
/// The list, beside the staged rows of a write that changes stored rows, of the members it
/// removes.
pub(super) const REMOVED_MEMBERS: &str = "removed_members";

/// How long a staging file no process holds must have been left untouched to be removed.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Where a database's staging files go: beside it, named after it.
#[derive(Debug, Clone)]
pub(super) struct StagingFiles {
    /// The database's path followed by `-staging-`; a file's name ends with a random part.
    prefix: PathBuf,
    /// The database file's permissions, given to its staging files (which hold its rows).
    mode: u32,
}

impl StagingFiles {
    /// The staging files of the database at `database`, if it is a file (an in-memory
    /// database stages nothing).
    pub(super) fn of(database: &Path) -> Option<StagingFiles> {
        let metadata = std::fs::metadata(database).ok().filter(|m| m.is_file())?;
        let mut prefix = database.as_os_str().to_owned();
        prefix.push("-staging-");
        Some(StagingFiles {
            prefix: prefix.into(),
            mode: metadata.permissions().mode() & 0o777,
        })
    }

    /// Remove the staging files no process holds (their writer was killed), but for those of
    /// the copies still pending (`pending`: their paths).
    pub(super) fn remove_abandoned(&self, pending: &[PendingCopy]) {
        let (Some(dir), Some(name)) = (self.prefix.parent(), self.prefix.file_name()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) else {
            return;
        };
        let name = name.to_string_lossy();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&*name) {
                continue;
            }
            let path = entry.path();
            if pending
                .iter()
                .any(|p| p.path.file_name() == path.file_name())
            {
                continue;
            }
            // Not one being made this instant, before its maker could lock it.
            let old = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > ABANDONED_AFTER));
            let unheld = old && File::open(&path).is_ok_and(|file| file.try_lock().is_ok());
            if unheld && std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "removed an abandoned staging file");
            }
        }
    }

    /// The staging file named `name` (as `pending_copies` records it).
    pub(super) fn path_of(&self, name: &str) -> PathBuf {
        self.prefix.with_file_name(name)
    }

    /// A new staging file, locked by this process until dropped (then removed); abandoned ones
    /// are removed first (but for those of the copies in `pending`).
    fn create(&self, pending: &[PendingCopy]) -> StoreResult<StagingFile> {
        self.remove_abandoned(pending);
        let mut path = self.prefix.clone().into_os_string();
        path.push(uuid::Uuid::new_v4().simple().to_string());
        let path = PathBuf::from(path);
        let made = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .open(&path);
        let file = match made {
            Ok(file) => StagingFile {
                path: path.clone(),
                lock: file,
                remove: true,
            },
            Err(source) => return Err(StoreError::Staging { path, source }),
        };
        // Dropped on failure, which removes it.
        let source = match file.lock.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::Error(error)) => error,
            Err(TryLockError::WouldBlock) => ErrorKind::WouldBlock.into(),
        };
        Err(StoreError::Staging { path, source })
    }
}

/// A staging file, held (locked) while it exists.
struct StagingFile {
    path: PathBuf,
    /// The open file holding the lock, closed after the removal.
    lock: File,
    /// Whether dropping it removes it (not once [`StagingFile::keep`] said so).
    remove: bool,
}

impl StagingFile {
    /// Make the file's rows and its name durable, before its write is decided.
    fn sync(&self) -> StoreResult<()> {
        let synced = self
            .lock
            .sync_all()
            .and_then(|()| match self.path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
                _ => Ok(()),
            });
        synced.map_err(|source| StoreError::Staging {
            path: self.path.clone(),
            source,
        })
    }

    /// Let the lock go and keep the file: its write was decided and its copy did not end, so
    /// whoever loads the team next finishes it ([`super::copy`]).
    fn keep(mut self) {
        self.remove = false;
    }
}

impl Drop for StagingFile {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        remove(&self.path);
    }
}

/// Remove the staging file at `path`, its write ended (a failure is logged: the file is then
/// removed as abandoned later).
pub(super) fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), %error, "cannot remove a staging file");
    }
}

/// [`BackendDirectory::stage`](crate::store::backend::BackendDirectory::stage)
/// on SQLite.
pub(super) async fn stage(
    store: &SqliteStore,
    write: LargeWrite,
    staging: Staging,
    chunks: &mut dyn ChangeChunks,
    actor: &Actor,
) -> StoreResult<Option<Box<dyn StagedWrite>>> {
    let Some(files) = &store.staging else {
        return Ok(None);
    };
    let team: Option<(i64, i64)> =
        sqlx::query_as("SELECT version, event_seq FROM teams WHERE id = $1")
            .bind(write.team_id)
            .fetch_optional(store.reads())
            .await?;
    let last_seq = match team {
        Some((version, last_seq)) if version == write.expected_version => last_seq,
        _ => return Err(StoreError::Conflict),
    };
    let new_groups = staging.new_groups;
    let first_group = reserve_group_ids(store, new_groups).await?;
    let file = files.create(&copy::pending(store, None).await?)?;
    let pool = staging_pool(store, &file.path).await?;
    // The ordinary cache: without a journal, spilled pages go straight to the file. The large
    // write's 16 MiB was no faster here (write 5.2-5.7 s either way) and raised a first sync's
    // peak from 421-422 MB to 441 MB (bench: `contactsd serve`, the benchmark's snapshot).
    let tx = pool.begin_with(BEGIN_WRITE).await?;
    let version = write.expected_version + 1;
    let mut writer = SqliteWriter::staging(
        tx,
        write.team_id,
        write.now,
        staging,
        (version, last_seq, first_group),
    );
    let (created, events) = apply::write_chunks(&mut writer, last_seq + 1, chunks, actor).await?;
    let (tx, next_group) = writer.finish().await?;
    if next_group.get() - first_group.get() != new_groups as i64 {
        return Err(StoreError::Inconsistent(format!(
            "a staged write created {} groups where {new_groups} were reserved",
            next_group.get() - first_group.get()
        )));
    }
    tx.commit().await?;
    pool.close().await;
    Ok(Some(Box::new(Staged {
        writer: store.writes().clone(),
        file,
        write,
        last_seq,
        events,
        created,
    })))
}

/// Reserve ids for `n` new groups in a transaction of their own; answers the first.
async fn reserve_group_ids(store: &SqliteStore, n: usize) -> StoreResult<GroupId> {
    if n == 0 {
        // Nothing to number (a sync that creates no group): no transaction for it.
        return Ok(GroupId::new(0));
    }
    let n = n as i64;
    let mut tx = store.begin_write().await?;
    let first: Option<GroupId> = sqlx::query_scalar(RESERVE_GROUP_IDS)
        .bind(n)
        .fetch_optional(&mut *tx)
        .await?;
    let first = match first {
        Some(first) => first,
        None => {
            sqlx::query_scalar(RESERVE_FIRST_GROUP_IDS)
                .bind(n)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    tx.commit().await?;
    Ok(first)
}

/// A one-connection pool on a new staging file, its tables made. Nothing in it needs to
/// survive a crash (the file is then abandoned), so it keeps no journal and never syncs.
async fn staging_pool(store: &SqliteStore, path: &Path) -> StoreResult<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Off)
        .synchronous(SqliteSynchronous::Off)
        .foreign_keys(false);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let tables: Vec<String> = sqlx::query_scalar(STAGED_TABLES)
        .fetch_all(store.reads())
        .await?;
    for table in tables {
        // The database's own definitions, read from its schema.
        sqlx::raw_sql(sqlx::AssertSqlSafe(table))
            .execute(&pool)
            .await?;
    }
    for list in [REWRITTEN_MEMBERS, REMOVED_MEMBERS] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {list} (team_id INTEGER NOT NULL, user_id INTEGER NOT NULL, \
             PRIMARY KEY (team_id, user_id)) WITHOUT ROWID"
        )))
        .execute(&pool)
        .await?;
    }
    Ok(pool)
}

/// Rows staged for one team, to be copied in ([`StagedWrite::commit`]).
struct Staged {
    /// The database's one writing connection.
    writer: SqlitePool,
    file: StagingFile,
    write: LargeWrite,
    /// The team's last event number when staged.
    last_seq: i64,
    /// How many events were staged.
    events: i64,
    created: Vec<GroupId>,
}

impl Staged {
    /// Decide the write: check the team's version (taking the event numbers) and record the
    /// copy as pending, in one transaction. [`StoreError::Conflict`]: the team moved on.
    async fn decide(&self, pending: &PendingCopy) -> StoreResult<i64> {
        let mut tx = self.writer.begin_with(BEGIN_WRITE).await?;
        let version: Option<i64> = sqlx::query_scalar(BUMP)
            .bind(self.events)
            .bind(self.write.team_id)
            .bind(self.write.expected_version)
            .bind(self.last_seq)
            .fetch_optional(&mut *tx)
            .await?;
        let version = version.ok_or(StoreError::Conflict)?;
        sqlx::query("INSERT INTO pending_copies (team_id, file) VALUES ($1, $2)")
            .bind(pending.team_id)
            .bind(&pending.file)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(version)
    }
}

#[async_trait]
impl StagedWrite for Staged {
    async fn commit(self: Box<Self>) -> StoreResult<Applied> {
        self.file.sync()?;
        let pending = PendingCopy {
            team_id: self.write.team_id,
            file: self
                .file
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: self.file.path.clone(),
        };
        let version = match self.decide(&pending).await {
            Ok(version) => version,
            Err(StoreError::Conflict) => return Err(StoreError::Conflict),
            Err(error) => {
                // Perhaps decided after all (an answer lost): the file stays for its copy, or
                // is removed as abandoned once no pending copy names it.
                self.file.keep();
                return Err(error);
            }
        };
        // scripts/crash-test kills the process on this line, to check that the write stands.
        tracing::info!(
            team_id = pending.team_id.get(),
            "a staged write was decided; copying it in"
        );
        if let Err(error) = copy::copy(&self.writer, &pending).await {
            // The write stands; its copy is finished when the team is next loaded.
            self.file.keep();
            return Err(error);
        }
        Ok(Applied {
            created: self.created,
            version,
            registered: None,
        })
    }
}
