//! The embedded SQLite backend, the default.
//!
//! One file, WAL journal, `synchronous=FULL` unless told otherwise ([`super::SqliteSynchronous`]),
//! a busy timeout so that the command line and the server can share the file, foreign keys on
//! (except on the tables a sync fills by the million, which have none: migration 0007). Writes
//! go through a pool of exactly one connection and start with `BEGIN IMMEDIATE`, so writers
//! queue in this process instead of failing with `SQLITE_BUSY`; reads use a separate pool and
//! see the last committed state. Being the only writer, the store numbers new rows itself
//! (`MAX(id) + 1`), which lets one multi-row statement insert rows that name each other.
//!
//! What is SQLite's own, by capability: [`orgs`] (numbering orgs), [`users`] (registering in
//! chunks, bulk reads), [`directory`] (bulk reads of a directory, its multi-row writes),
//! [`in_flight`] (a large write's queries sent without waiting for each), [`staging`] (a sync's
//! write, prepared without the write lock), [`copy`] (a staged write copied in by short
//! transactions), [`statements`] (what a directory write is made of),
//! [`scim`] (SCIM writes sent with the directory write they come with).

mod commits;
mod copy;
mod directory;
mod in_flight;
mod orgs;
mod scim;
mod staging;
mod statements;
mod users;
mod webhooks;

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use super::backend::{Backend, Tx};
use super::{StoreResult, shared};
use commits::Commits;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per multi-row statement: bulk writes (a sync of a million members) go in statements
/// of this many rows, far below SQLite's limit of 32,766 parameters per statement.
const BATCH_ROWS: usize = 500;

/// How a write transaction starts on the one writing connection, with the size of its page
/// cache (in KiB, negative in the pragma): SQLite's default of 2,000 for ordinary writes, and
/// 16 MiB for a large one ([`Backend::begin_large_write`]). A sync writes hundreds of MiB in one
/// transaction: with the default cache its pages are spilled to the WAL and read back again and
/// again (a first sync of 200,000 members read 165,000 pages back from the WAL). The large cache
/// is given back at the next ordinary write, so that a process that syncs does not keep it: kept,
/// it filled with the pages of every event appended, growing a steady server towards 16 MiB more
/// (`scripts/soak`: 43 to 50 MB in 45 s). docs/SYNC.md, "Speed", has the figures.
const BEGIN_WRITE: &str = "PRAGMA cache_size = -2000; BEGIN IMMEDIATE";
const BEGIN_LARGE_WRITE: &str = "PRAGMA cache_size = -16384; BEGIN IMMEDIATE";

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    commits: Commits,
    /// Where a sync's writes are staged (`None` in memory).
    staging: Option<staging::StagingFiles>,
    /// How long a directory load waits for another process's copy ([`copy::settle`]).
    write_wait: std::time::Duration,
}

impl SqliteStore {
    pub async fn open(url: &str, settings: &super::StoreSettings) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match settings.sqlite_synchronous {
                super::SqliteSynchronous::Full => SqliteSynchronous::Full,
                super::SqliteSynchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(settings.write_wait)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.write_wait)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let commits = Commits::new(options.get_filename());
        let staging = staging::StagingFiles::of(options.get_filename());
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let store = SqliteStore {
            reader,
            writer,
            commits,
            staging,
            write_wait: settings.write_wait,
        };
        // The copies of staged writes that were decided and left unfinished (a kill) first,
        // then the staging files no write will use.
        copy::finish_abandoned(&store).await?;
        if let Some(files) = &store.staging {
            files.remove_abandoned(&copy::pending(&store, None).await?);
        }
        Ok(store)
    }
}

#[async_trait]
impl Backend for SqliteStore {
    type Db = Sqlite;

    fn reads(&self) -> &SqlitePool {
        &self.reader
    }

    fn writes(&self) -> &SqlitePool {
        &self.writer
    }

    async fn begin_write(&self) -> StoreResult<Tx<Self>> {
        Ok(self.writer.begin_with(BEGIN_WRITE).await?)
    }

    async fn begin_large_write(&self) -> StoreResult<Tx<Self>> {
        Ok(self.writer.begin_with(BEGIN_LARGE_WRITE).await?)
    }

    async fn begin_snapshot(&self) -> StoreResult<Tx<Self>> {
        Ok(self.reader.begin().await?)
    }

    fn change_stamp(&self) -> Option<u64> {
        self.commits.stamp()
    }
}

shared::impl_store!(SqliteStore);
crate::store::batch::impl_batch!(SqliteStore);
crate::store::events::impl_event_store!(SqliteStore);
crate::store::quotas::impl_quota_store!(SqliteStore);
crate::store::scim::impl_scim_store!(SqliteStore);

/// Rows per chunk of a [`bulk_read`].
const BULK_CHUNK: i64 = 100_000;

/// A read of up to millions of rows (a whole directory, every user of an app); callers run it
/// in a read transaction, so that the chunks see one state. Through the driver, each row is a
/// hand-off between threads that costs microseconds; instead SQLite puts each chunk of rows
/// into one JSON array of arrays, decoded in one pass at a fraction of the cost
/// (docs/SYNC-BENCHMARKS.md has the figures).
///
/// `sql` takes `?1` = `key`, `?2` = the cursor (rows strictly after it, in cursor order) and
/// `?3` = the chunk size, and selects two columns: the chunk as JSON and its last cursor (NULL
/// for an empty chunk). Each chunk is handed to `each`.
async fn bulk_read<T, K, C>(
    connection: &mut SqliteConnection,
    sql: &'static str,
    key: K,
    mut after: C,
    mut each: impl FnMut(Vec<T>) -> StoreResult<()> + Send,
) -> StoreResult<()>
where
    T: serde::de::DeserializeOwned + Send,
    K: Clone + Send + for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
    C: Send + Unpin + for<'q> sqlx::Encode<'q, Sqlite> + for<'r> sqlx::Decode<'r, Sqlite>,
    C: sqlx::Type<Sqlite>,
{
    loop {
        let (json, last): (String, Option<C>) = sqlx::query_as(sql)
            .bind(key.clone())
            .bind(after)
            .bind(BULK_CHUNK)
            .fetch_one(&mut *connection)
            .await?;
        let Some(last) = last else { return Ok(()) };
        each(serde_json::from_str(&json)?)?;
        after = last;
    }
}

/// Ids as one JSON array, for `IN (SELECT value FROM json_each(?))`: one bound value whatever
/// the number of ids.
fn json_ids<T: serde::Serialize>(ids: &[T]) -> StoreResult<String> {
    Ok(serde_json::to_string(ids)?)
}
