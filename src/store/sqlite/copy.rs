//! The copy of a staged write (a sync) into the database, in short transactions that let other
//! writes through between them (docs/DESIGN.md, "Write path of a sync").
//!
//! A write staged in a file of its own ([`super::staging`]) is decided by one short
//! transaction: the team's version check, which also takes its event numbers, and a row of
//! `pending_copies` naming the staging file, which was made durable before (migration 0008).
//! From that commit on the write stands. Its rows are then copied in step by step ([`STEPS`]),
//! each step in chunks of [`CHUNK_ROWS`] staged rows, one transaction per chunk on the writing
//! connection, which other writes take in turn; the last transaction deletes the row. A
//! million members changed, which held the one writer for about 3 s as one transaction, hold
//! it for tens of milliseconds at a time.
//!
//! Until the row is gone the team's stored rows are partly old and partly new, so nothing reads
//! them as a directory: this process holds the team's write gate until the copy ends, a
//! directory load first finishes or waits for a pending copy of its team ([`settle`]) and
//! refuses to read one that is pending, and opening the database finishes those left behind.
//! The staging file's lock (`flock`) tells whether a copy is under way: whoever finds a pending
//! row whose file no process holds (its writer was killed, or its copy failed) copies it again
//! from the start. Every step can run again over what it did: it deletes only what is not
//! staged, and inserts by skipping or overwriting what is there.

use std::fs::{OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;

use super::staging::{self, REMOVED_MEMBERS, REWRITTEN_MEMBERS};
use super::{BEGIN_LARGE_WRITE, SqliteStore};
use crate::domain::values::TeamId;
use crate::store::backend::Backend;
use crate::store::{StoreError, StoreResult, shared};

/// Staged rows copied per transaction: about 20-40 ms of the writer's time.
const CHUNK_ROWS: i64 = 20_000;

/// How often a chunk whose turn at the writer did not come within the write wait is tried
/// again before the copy gives up (to be finished by the team's next load).
const CHUNK_ATTEMPTS: usize = 6;

/// How long a directory load waits between looks at a copy another process is making.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// A staged write decided and not yet copied in whole: its team and its staging file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PendingCopy {
    pub(super) team_id: TeamId,
    /// The file's name, as `pending_copies` records it (the folder is the database's, so that
    /// a process that names the database by another path finds it too).
    pub(super) file: String,
    pub(super) path: PathBuf,
}

/// Whether the write `pending` names still waits for its copy, in this transaction's view.
const STILL_PENDING: &str = "SELECT EXISTS (SELECT 1 FROM pending_copies \
     WHERE team_id = $1 AND file = $2)";

/// The pending copies of one team (`$1`), or of all (`$1` NULL).
const PENDING: &str = "SELECT team_id, file FROM pending_copies \
     WHERE $1 IS NULL OR team_id = $1 ORDER BY team_id";

/// One step of the copy: which staged keys its chunks follow, and what it does with a chunk.
struct Step {
    /// The last key of the next chunk: `?1` the last key copied, `?2` [`CHUNK_ROWS`], `?3` the
    /// team; NULL when no staged row is left.
    bound: String,
    /// The chunk's statement: the staged rows with keys in (`?1`, `?2`] of team `?3`.
    copy: String,
}

impl Step {
    fn new(table: &str, key: &str, copy: String) -> Step {
        Step {
            bound: format!(
                "SELECT max({key}) FROM (SELECT {key} FROM staging.{table} \
                 WHERE team_id = ?3 AND {key} > ?1 ORDER BY {key} LIMIT ?2)"
            ),
            copy,
        }
    }
}

/// The copy, in order. A staged group replaces the stored one (all of them deleted first, so
/// that no two valid groups share a remote id even for a statement); a listed member loses the
/// memberships not staged for it, a removed one all of them and its row; a staged member
/// overwrites the stored one as [`shared::REWRITE_MEMBER`] says, and its staged memberships
/// are added where missing; the events come last, in order, after their writes' times and
/// actors, so that a reader of the team's events never sees one whose change is not stored.
static STEPS: LazyLock<[Step; 9]> = LazyLock::new(|| {
    let range = |key: &str| format!("team_id = ?3 AND {key} > ?1 AND {key} <= ?2");
    let users = range("user_id");
    let removed = |table: &str| {
        Step::new(
            REMOVED_MEMBERS,
            "user_id",
            format!(
                "DELETE FROM main.{table} WHERE team_id = ?3 AND user_id IN \
                 (SELECT user_id FROM staging.{REMOVED_MEMBERS} WHERE {})",
                range("user_id")
            ),
        )
    };
    [
        Step::new(
            "groups",
            "id",
            format!(
                "DELETE FROM main.groups WHERE id IN (SELECT id FROM staging.groups WHERE {})",
                range("id")
            ),
        ),
        Step::new(
            "groups",
            "id",
            format!(
                "INSERT INTO main.groups SELECT * FROM staging.groups WHERE {}",
                range("id")
            ),
        ),
        Step::new(
            REWRITTEN_MEMBERS,
            "user_id",
            format!(
                "DELETE FROM main.memberships AS m WHERE m.team_id = ?3 AND m.user_id IN \
                 (SELECT user_id FROM staging.{REWRITTEN_MEMBERS} WHERE {users}) \
                 AND NOT EXISTS (SELECT 1 FROM staging.memberships AS s \
                 WHERE s.team_id = m.team_id AND s.user_id = m.user_id \
                 AND s.group_id = m.group_id)"
            ),
        ),
        removed("memberships"),
        removed("members"),
        Step::new(
            "members",
            "user_id",
            format!(
                "INSERT INTO main.members SELECT * FROM staging.members WHERE {users}{}",
                shared::REWRITE_MEMBER
            ),
        ),
        Step::new(
            "memberships",
            "user_id",
            format!(
                "INSERT INTO main.memberships SELECT * FROM staging.memberships \
                 WHERE {users} ON CONFLICT DO NOTHING"
            ),
        ),
        Step::new(
            "event_writes",
            "first_seq",
            format!(
                "INSERT INTO main.event_writes SELECT * FROM staging.event_writes WHERE {} \
                 ON CONFLICT DO NOTHING",
                range("first_seq")
            ),
        ),
        Step::new(
            "events",
            "seq",
            format!(
                "INSERT INTO main.events SELECT * FROM staging.events WHERE {} \
                 ON CONFLICT DO NOTHING",
                range("seq")
            ),
        ),
    ]
});

/// What one chunk found.
enum Chunk {
    /// Copied, up to this key.
    Copied(i64),
    /// The step has nothing left.
    Done,
    /// The copy is no longer pending: another process finished it.
    Gone,
}

/// Copy the staged rows of `pending` in, chunk by chunk, and delete its row. The caller holds
/// the staging file's lock.
pub(super) async fn copy(writer: &SqlitePool, pending: &PendingCopy) -> StoreResult<()> {
    for step in STEPS.iter() {
        let mut after = i64::MIN;
        loop {
            match with_retries(|| chunk(writer, pending, step, after)).await? {
                Chunk::Copied(last) => after = last,
                Chunk::Done => break,
                Chunk::Gone => return Ok(()),
            }
        }
    }
    let mut conn = writer.acquire().await?;
    sqlx::query("DELETE FROM pending_copies WHERE team_id = $1 AND file = $2")
        .bind(pending.team_id)
        .bind(&pending.file)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `attempt`, tried again while the writer was not had within the write wait.
async fn with_retries<F, T>(mut attempt: impl FnMut() -> F) -> StoreResult<T>
where
    F: Future<Output = StoreResult<T>>,
{
    let mut left = CHUNK_ATTEMPTS;
    loop {
        match attempt().await {
            Err(StoreError::Unavailable) if left > 1 => left -= 1,
            done => return done,
        }
    }
}

/// One chunk of `step` after key `after`, in a transaction of its own with the staging file
/// attached.
async fn chunk(
    writer: &SqlitePool,
    pending: &PendingCopy,
    step: &Step,
    after: i64,
) -> StoreResult<Chunk> {
    let mut conn = writer.acquire().await?;
    sqlx::query("ATTACH DATABASE $1 AS staging")
        .bind(pending.path.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    let copied: StoreResult<Chunk> = async {
        sqlx::raw_sql(BEGIN_LARGE_WRITE).execute(&mut *conn).await?;
        let still: bool = sqlx::query_scalar(STILL_PENDING)
            .bind(pending.team_id)
            .bind(&pending.file)
            .fetch_one(&mut *conn)
            .await?;
        let last: Option<i64> = if still {
            sqlx::query_scalar(sqlx::AssertSqlSafe(step.bound.as_str()))
                .bind(after)
                .bind(CHUNK_ROWS)
                .bind(pending.team_id)
                .fetch_one(&mut *conn)
                .await?
        } else {
            None
        };
        if let Some(last) = last {
            sqlx::query(sqlx::AssertSqlSafe(step.copy.as_str()))
                .bind(after)
                .bind(last)
                .bind(pending.team_id)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        Ok(match last {
            Some(last) => Chunk::Copied(last),
            None if still => Chunk::Done,
            None => Chunk::Gone,
        })
    }
    .await;
    let detached = copied.is_ok()
        && sqlx::raw_sql("DETACH DATABASE staging")
            .execute(&mut *conn)
            .await
            .is_ok();
    if !detached {
        // Closed rather than handed to the next write with a transaction or the staging file
        // still open: closing rolls back what is not committed.
        conn.close_on_drop();
    }
    copied
}

/// What [`finish`] found of a pending copy.
enum Finished {
    /// Copied in (here or by another process).
    Done,
    /// Another process holds its staging file: it is copying it.
    Held,
}

/// Copy `pending` in if no process holds its staging file, then remove the file.
async fn finish(store: &SqliteStore, pending: &PendingCopy) -> StoreResult<Finished> {
    let path = pending.path.clone();
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(source) => {
            if source.kind() == ErrorKind::NotFound && !still_pending(store, pending).await? {
                // Its copy ended and its file was removed since the row was read.
                return Ok(Finished::Done);
            }
            return Err(StoreError::Staging { path, source });
        }
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Finished::Held),
        Err(TryLockError::Error(source)) => return Err(StoreError::Staging { path, source }),
    }
    // Held by this process now: a copy that ended before deleted its row first.
    if still_pending(store, pending).await? {
        let started = Instant::now();
        copy(store.writes(), pending).await?;
        tracing::warn!(
            team_id = pending.team_id.get(),
            path = %path.display(),
            copy_ms = started.elapsed().as_millis() as u64,
            "finished the copy of a staged write left pending"
        );
    }
    // Removed before its lock goes.
    staging::remove(&path);
    drop(file);
    Ok(Finished::Done)
}

async fn still_pending(store: &SqliteStore, pending: &PendingCopy) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(STILL_PENDING)
        .bind(pending.team_id)
        .bind(&pending.file)
        .fetch_one(store.reads())
        .await?)
}

/// The pending copies of `team_id` (`None`: of every team); none in memory, where nothing is
/// staged.
pub(super) async fn pending(
    store: &SqliteStore,
    team_id: Option<TeamId>,
) -> StoreResult<Vec<PendingCopy>> {
    let Some(files) = &store.staging else {
        return Ok(Vec::new());
    };
    let rows: Vec<(TeamId, String)> = sqlx::query_as(PENDING)
        .bind(team_id)
        .fetch_all(store.reads())
        .await?;
    Ok(rows
        .into_iter()
        .map(|(team_id, file)| PendingCopy {
            team_id,
            path: files.path_of(&file),
            file,
        })
        .collect())
}

/// Finish every pending copy no process is making (on opening the database).
pub(super) async fn finish_abandoned(store: &SqliteStore) -> StoreResult<()> {
    for pending in pending(store, None).await? {
        finish(store, &pending).await?;
    }
    Ok(())
}

/// Before `team_id`'s directory is loaded: finish its pending copy, or wait for the process
/// making it, up to the write wait ([`StoreError::Unavailable`] past it).
pub(super) async fn settle(store: &SqliteStore, team_id: TeamId) -> StoreResult<()> {
    let deadline = Instant::now() + store.write_wait;
    loop {
        let mut held = false;
        for pending in pending(store, Some(team_id)).await? {
            held |= matches!(finish(store, &pending).await?, Finished::Held);
        }
        if !held {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StoreError::Unavailable);
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// Whether `team_id` has a copy pending, in the transaction of `connection`: its stored rows
/// are then no directory to read.
pub(super) async fn is_pending(
    connection: &mut sqlx::SqliteConnection,
    team_id: TeamId,
) -> StoreResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pending_copies WHERE team_id = $1)")
            .bind(team_id)
            .fetch_one(connection)
            .await?,
    )
}
