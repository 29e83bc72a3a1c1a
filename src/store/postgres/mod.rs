//! The PostgreSQL backend, for several `contactsd` processes on one database.
//!
//! This module owns the PostgreSQL schema (`migrations/postgres`, embedded and applied by
//! [`PostgresStore::open`]; sqlx's migrator takes an advisory lock, so processes starting together
//! migrate once) and the SQL that differs from SQLite's, by capability: [`orgs`] (the creator's
//! lock), [`users`] (registration under races, reads over arrays), [`directory`] (the team lock,
//! writes over arrays), [`batched`] (what a batch of writes keeps between them), [`in_flight`]
//! (a large write's statements sent while the next is made). It behaves exactly like the SQLite
//! backend: same ids (sequences starting where SQLite's counters start), same rows, same
//! answers.
//! What differs is how concurrency is made safe, because here writers are not queued behind one
//! connection but run at once, from any number of processes.
//!
//! # Isolation
//!
//! Every transaction runs at PostgreSQL's default, READ COMMITTED, except the directory load.
//!
//! * **Directory writes** ([`ApplyBatch::apply`]). Every write to a team's groups, members and
//!   memberships goes through `apply` (or through `create_org`, which creates the team in the
//!   same transaction, so nobody else can see it yet), and `apply` starts by locking the team's
//!   row with `UPDATE teams SET version = version + 1, event_seq = ... WHERE id = $1 AND
//!   version = $2` (which also takes the write's event numbers). So all writers of one team, in every process, are
//!   serialized by that row lock, and each one commits its rows and the bumped version together.
//!   The lock is held until the commit, so the team's next writes in the same batch are
//!   checked against what the batch wrote, and their bumps held for the commit ([`batched`]).
//!   Hence a team's version names exactly one state of its rows. The service decides a change on
//!   a copy of the directory taken at some version (cycles, depth, remote-id uniqueness, seats:
//!   invariants over many rows that no single-row constraint can express); `apply` writes it only
//!   if, taking the lock, the version is still that one. When it is, the rows are exactly the
//!   ones the decision was made on and no one can change them before the commit, so every tree
//!   invariant that held on the copy holds in the database. When another writer committed first,
//!   the waiting `UPDATE` re-reads the row with the new committed version (READ COMMITTED
//!   re-checks the condition on a row that was updated while waiting for its lock), matches no
//!   row and the caller gets [`StoreError::Conflict`] without anything written, reloads and decides again.
//!   SERIALIZABLE would add nothing but retries: the lock already orders the writers, and
//!   REPEATABLE READ would turn the same situation into a serialization failure instead of a
//!   clean version mismatch.
//! * **Directory reads** ([`DirectoryStore::load_directory`]) read the team row, the counts, the
//!   groups, and the members with their memberships in one `REPEATABLE READ READ ONLY`
//!   transaction: one snapshot for every query, so the rows match the version they are tagged
//!   with even while writers commit. Such a transaction takes no locks and never blocks a
//!   writer.
//! * **Org creation** locks the creating user's row before counting the orgs that user created
//!   (see [`orgs`]).
//! * **User registration** is idempotent under races: the `(appid, openid)` row is inserted with
//!   `ON CONFLICT DO NOTHING` in the same transaction as the new user, which waits for a
//!   concurrent insert of the same openid to finish. The loser of a race rolls back (so no user
//!   row is left without its openid) and finds the winner's row on its retry; a bulk registration
//!   deletes the user rows it lost in the same transaction instead, and inserts in openid order so
//!   that two overlapping batches cannot deadlock. (A bulk registration tries a plain insert
//!   first, under a savepoint, and only when it collides inserts again with `ON CONFLICT`,
//!   which costs half as much again per row.) A lost race leaves a gap in the user ids,
//!   which, like any id gap after a rollback, nothing depends on.
//! * **Tokens** are one row per app, replaced with an upsert, so the newest token supersedes the
//!   older one for every process at once.
//!
//! # Errors
//!
//! Inside `apply`, the failures that mean "the database disagrees with the copy the change was
//! decided on" (a unique violation, a serialization failure, a deadlock) answer
//! [`StoreError::Conflict`], so the service reloads and decides again (a bounded number of
//! times). With the team lock held none of them should occur; if one does, the cached copy was
//! wrong and a reload is the cure. Everything else is [`StoreError::Database`].
//!
//! [`ApplyBatch::apply`]: super::ApplyBatch::apply
//! [`DirectoryStore::load_directory`]: super::DirectoryStore::load_directory
//! [`StoreError::Conflict`]: super::StoreError::Conflict
//! [`StoreError::Database`]: super::StoreError::Database

mod batched;
mod directory;
mod in_flight;
mod orgs;
mod users;
mod webhooks;

use std::str::FromStr;

use async_trait::async_trait;
use futures_util::{Stream, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres};

use super::backend::{Backend, Tx};
use super::{StoreError, StoreResult, shared};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// SQLSTATEs that, inside [`ApplyBatch::apply`](super::ApplyBatch::apply), mean "decide
/// again": unique_violation, serialization_failure, deadlock_detected.
const RETRYABLE_IN_APPLY: [&str; 3] = ["23505", "40001", "40P01"];

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect with at most `settings.pool_size` connections and bring the schema up to date.
    pub async fn open(url: &str, settings: &super::StoreSettings) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?.application_name("contactsd");
        // One plain connection first: when the server is unreachable or refuses us, a pool only
        // says that it timed out, while this says why.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_size)
            .acquire_timeout(settings.write_wait)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

#[async_trait]
impl Backend for PostgresStore {
    type Db = Postgres;

    fn reads(&self) -> &PgPool {
        &self.pool
    }

    fn writes(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<Tx<Self>> {
        Ok(self.pool.begin().await?)
    }

    /// Its statements run with generic plans, made once per connection and statement: the
    /// statement over arrays that adds a member to a group was otherwise planned again on every
    /// call, because its plan for arrays of a known length (one member) always looked cheaper
    /// than the generic one, and planning took about two thirds of its time (docs/BENCHMARKS.md,
    /// "PostgreSQL: a team's writes checked in memory"). Each of these statements reaches rows by
    /// their keys, so a generic plan is what a custom one would be.
    async fn begin_batch(&self) -> StoreResult<Tx<Self>> {
        Ok(self
            .pool
            .begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
            .await?)
    }

    async fn begin_snapshot(&self) -> StoreResult<Tx<Self>> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }
}

shared::impl_store!(PostgresStore);
crate::store::batch::impl_batch!(PostgresStore);
crate::store::events::impl_event_store!(PostgresStore);
crate::store::quotas::impl_quota_store!(PostgresStore);
crate::store::scim::impl_scim_store!(PostgresStore);

/// An error inside `apply`: see the module documentation.
fn apply_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database) = &error
        && database
            .code()
            .is_some_and(|code| RETRYABLE_IN_APPLY.contains(&code.as_ref()))
    {
        tracing::warn!(%error, "directory write refused by the database; reloading");
        return StoreError::Conflict;
    }
    error.into()
}

/// Decode rows one by one as the database sends them. A directory read is millions of rows;
/// collecting the raw rows first would hold them all (hundreds of bytes each) at once.
async fn decode_rows<R, T>(
    rows: impl Stream<Item = Result<R, sqlx::Error>>,
    mut decode: impl FnMut(R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut rows = std::pin::pin!(rows);
    let mut decoded = Vec::new();
    while let Some(row) = rows.try_next().await? {
        decoded.push(decode(row)?);
    }
    Ok(decoded)
}
