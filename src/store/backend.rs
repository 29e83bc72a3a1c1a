//! What a backend supplies: its connections and transactions ([`Backend`]), and by capability
//! every operation whose SQL differs between SQLite and PostgreSQL ([`BackendOrgs`],
//! [`BackendUsers`], [`BackendDirectory`]), each with the reason on its method. Everything else
//! is written once, over these traits ([`super::shared`], [`super::batch`], [`super::apply`]).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{Pool, Transaction};

use super::apply::ChangeWriter;
use super::scim::{ScimUserRef, ScimWrite};
use super::{
    ChangeChunks, LargeWrite, MemberProfile, NewUser, StagedWrite, StoreError, StoreResult,
    UserRecord,
};
use crate::domain::directory::{DirectoryBuilder, Staging};
use crate::domain::events::Actor;
use crate::domain::sync::MemberState;
use crate::domain::values::{TeamId, UserId};

/// What [`BackendDirectory::start_scim_apply`] answers.
pub(crate) type ScimStart<B> =
    Result<(<B as BackendDirectory>::Writer, Option<UserId>), (Tx<B>, StoreError)>;

/// Where a directory write starts ([`BackendDirectory::start_apply`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteStart {
    /// Statements without parameters that run first (the write's savepoint), possibly empty.
    pub(crate) savepoint: &'static str,
    pub(crate) team_id: TeamId,
    /// The team's version the write was decided on.
    pub(crate) expected: i64,
    /// How many event numbers the write takes.
    pub(crate) events: usize,
    pub(crate) now: i64,
}

/// The version and the last event number of each team a batch wrote, after its last write
/// that stood. The batch's transaction holds what it wrote of a team until its commit
/// (SQLite's one write lock, PostgreSQL's lock on the team's row), so that no other write
/// changes the team meanwhile: the team's next write in the same batch is checked here, without
/// asking the database.
#[derive(Debug, Default)]
pub(crate) struct TeamVersions(HashMap<TeamId, TeamVersion>);

/// A team's version and the last event number it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TeamVersion {
    pub(crate) version: i64,
    pub(crate) last_seq: i64,
}

impl TeamVersions {
    /// The version check of `start`, decided here: `None` if the batch has not written the
    /// team (the database decides), `Some(None)` if the team is at another version, else the
    /// team as the write leaves it.
    pub(crate) fn check(&self, start: &WriteStart) -> Option<Option<TeamVersion>> {
        let known = self.0.get(&start.team_id)?;
        Some((known.version == start.expected).then(|| TeamVersion {
            version: known.version + 1,
            last_seq: known.last_seq + start.events as i64,
        }))
    }

    /// Team `team_id` is at `team` after a write of the batch that stands.
    pub(crate) fn record(&mut self, team_id: TeamId, team: TeamVersion) {
        self.0.insert(team_id, team);
    }

    /// The team's version and last event number, if the batch wrote it.
    pub(crate) fn get(&self, team_id: TeamId) -> Option<TeamVersion> {
        self.0.get(&team_id).copied()
    }
}

/// A transaction of backend `B`.
pub(crate) type Tx<B> = Transaction<'static, <B as Backend>::Db>;

/// Connections and transactions.
#[async_trait]
pub(crate) trait Backend: Send + Sync + Sized {
    type Db: sqlx::Database;

    /// Where single reads go (SQLite: the read-only pool, apart from the one writer).
    fn reads(&self) -> &Pool<Self::Db>;
    /// Where single-statement writes go (SQLite: the one writing connection).
    fn writes(&self) -> &Pool<Self::Db>;
    /// A transaction that writes (SQLite: `BEGIN IMMEDIATE`, so that writers queue here rather
    /// than fail with `SQLITE_BUSY`).
    async fn begin_write(&self) -> StoreResult<Tx<Self>>;
    /// [`begin_write`](Self::begin_write) for a transaction that writes hundreds of MiB (a
    /// sync's directory write, its bulk registration of users): SQLite gives it a larger page
    /// cache for its duration.
    async fn begin_large_write(&self) -> StoreResult<Tx<Self>> {
        self.begin_write().await
    }
    /// [`begin_write`](Self::begin_write) for a batch of small directory writes (the group
    /// committer's, [`DirectoryStore::begin_batch`](super::DirectoryStore::begin_batch)).
    async fn begin_batch(&self) -> StoreResult<Tx<Self>> {
        self.begin_write().await
    }
    /// A read-only transaction in which every query sees one state (PostgreSQL:
    /// `REPEATABLE READ READ ONLY`; SQLite's read transaction is one already).
    async fn begin_snapshot(&self) -> StoreResult<Tx<Self>>;
    /// See [`Store::change_stamp`](super::Store::change_stamp); by default the backend cannot
    /// tell.
    fn change_stamp(&self) -> Option<u64> {
        None
    }
}

/// Org creation.
pub(crate) trait BackendOrgs: Backend {
    /// Makes concurrent org creations by user `$1` wait for this one, so that the count of the
    /// user's orgs stays true until commit (PostgreSQL locks the user's row; SQLite's writer is
    /// alone already).
    const LOCK_CREATOR: Option<&'static str>;
    /// Inserts the org (`$1` name, `$2` plan, `$3` admin seats, `$4` creating user, `$5`
    /// creating app, `$6` time) and returns its id: SQLite numbers it, PostgreSQL's identity
    /// column does.
    const INSERT_ORG: &'static str;
}

/// Users whose SQL differs.
#[async_trait]
pub(crate) trait BackendUsers: Backend {
    /// Register or update one openid (SQLite numbers the user; PostgreSQL draws ids from
    /// sequences and settles a race for the same openid between processes).
    async fn register_one(
        &self,
        appid: &str,
        user: NewUser<'_>,
        now: i64,
    ) -> StoreResult<UserRecord>;
    /// Insert a new user (no openid yet): `$1` nickname, `$2` avatar, `$3` time, answering
    /// `id, respondent_id, nickname, avatar` (SQLite numbers it, PostgreSQL's sequences do).
    const INSERT_USER: &'static str;
    /// [`UserStore::registrations_at_once`](super::UserStore::registrations_at_once).
    const REGISTRATIONS_AT_ONCE: usize;
    /// [`UserStore::register_users`](super::UserStore::register_users): SQLite in chunks of
    /// multi-row statements, PostgreSQL in a fixed number of statements over arrays.
    async fn register_many(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>>;
    /// Names of these members (SQLite binds the ids as one JSON array, PostgreSQL as an array).
    async fn profiles(&self, team: TeamId, users: &[UserId]) -> StoreResult<Vec<MemberProfile>>;
    /// Every openid of an app (SQLite reads in JSON chunks, PostgreSQL streams).
    async fn openids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>>;
    /// Every member's stored details, in `tx` (SQLite reads in JSON chunks, PostgreSQL
    /// streams).
    async fn member_rows(
        tx: &mut Tx<Self>,
        team_id: TeamId,
    ) -> StoreResult<Vec<(UserId, MemberState)>>;
    /// [`ScimStore::scim_user_ids`](super::scim::ScimStore::scim_user_ids) for a non-empty
    /// request (SQLite binds each list as one JSON array, PostgreSQL as an array).
    async fn scim_users_among(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<ScimUserRef>>;
}

/// Directory reads and writes.
#[async_trait]
pub(crate) trait BackendDirectory: Backend {
    /// The writes of one `apply`, holding its transaction.
    type Writer: ChangeWriter;
    /// What a batch of writes carries from one write to the next, so that a write need not ask
    /// the database what the batch already knows: on both, the versions and event numbers of
    /// the teams it wrote ([`TeamVersions`]: a version check is decided without a query); on
    /// SQLite the next group and user ids; on PostgreSQL the version bumps, the events it holds
    /// for its commit ([`BackendDirectory::before_commit`]) and the group ids it drew from the
    /// sequence and has not used yet.
    type Known: Default + Send;

    /// Feed a directory's groups and members to `builder`, inside the snapshot that read its
    /// team row (SQLite in JSON chunks, PostgreSQL streaming members with their groups).
    async fn read_directory(
        tx: &mut Tx<Self>,
        team_id: TeamId,
        builder: &mut DirectoryBuilder,
    ) -> StoreResult<()>;
    /// Start a directory write inside `tx` if the team's version is `start.expected`;
    /// `Err(tx)`: it is not, and nothing was written. One statement checks and bumps the
    /// version and takes the team's next `start.events` event numbers (gapless and ordered by
    /// commit: the statement holds the team, SQLite's one writer or PostgreSQL's row lock,
    /// until the commit). `start.savepoint` runs first, in the same round trip where the
    /// backend allows it (SQLite: one multi-statement query, or none at all when `known` holds
    /// the team: then the check is decided here and the statements are sent with the write's
    /// first changes). PostgreSQL skips it for a write that `known` checks and passes: such a
    /// write, should the database refuse it, loses the batch ([`Self::finish_apply`]).
    async fn start_apply(
        tx: Tx<Self>,
        start: WriteStart,
        known: &mut Self::Known,
    ) -> StoreResult<Result<Self::Writer, Tx<Self>>>;
    /// [`start_apply`](Self::start_apply) for a change that comes with SCIM write `scim`, made
    /// under the same savepoint (`start.savepoint`, not empty, runs first): the writer and the
    /// user a [`ScimWrite::Create`] registered, or the transaction, in which the savepoint is
    /// still to be undone, with the refusal ([`StoreError::Conflict`] for another version,
    /// [`StoreError::NameTaken`] for a `userName` taken). PostgreSQL makes the SCIM write
    /// first, statement by statement; SQLite holds its statements in the writer, sent with the
    /// change's rows, so its refusal may come from the writer instead.
    async fn start_scim_apply(
        tx: Tx<Self>,
        start: WriteStart,
        scim: &ScimWrite,
        known: &mut Self::Known,
    ) -> StoreResult<ScimStart<Self>>;
    /// Forget what `known` says of teams' versions and of the next ids, before a write that
    /// goes around them (a SCIM row written alone may register a user; a sync checks its team's
    /// version in the database, creates groups and numbers events after). What the database
    /// must see first is written into `tx` (PostgreSQL's version bumps held for the commit);
    /// what the batch must still write is kept (PostgreSQL's held events).
    async fn forget(tx: &mut Tx<Self>, known: &mut Self::Known) -> StoreResult<()>;
    /// Write what the batch held back for its commit (PostgreSQL: its small writes' events,
    /// [`ChangeWriter::insert_events`]), just before the commit, in its transaction.
    async fn before_commit(tx: &mut Tx<Self>, known: &mut Self::Known) -> StoreResult<()>;
    /// End a directory write, written or not: the transaction it ran in, to go on with, and
    /// the team's version after it. A write that `stands` (its savepoint is not undone) is
    /// added to `known`.
    ///
    /// A query still being written (both backends pipeline a large write's queries,
    /// [`ChangeWriter::large_write`]) is waited for first; if it fails, the transaction is
    /// given up with it and its error answered. So is a write that did not stand and cannot be
    /// undone alone (PostgreSQL's writes without a savepoint of their own), answering
    /// [`StoreError::BatchFailed`].
    async fn finish_apply(
        writer: Self::Writer,
        stands: bool,
        known: &mut Self::Known,
    ) -> StoreResult<(Tx<Self>, i64)>;
    /// See [`DirectoryStore::stage`](super::DirectoryStore::stage); by default the backend
    /// does not stage.
    async fn stage(
        &self,
        _write: LargeWrite,
        _staging: Staging,
        _chunks: &mut dyn ChangeChunks,
        _actor: &Actor,
    ) -> StoreResult<Option<Box<dyn StagedWrite>>> {
        Ok(None)
    }
    /// Before the team's rows are read as a whole: make them a directory again, should a write
    /// have left them part-way. SQLite finishes (or waits for) a staged write's copy left
    /// pending (`store::sqlite::copy`, refusing the read with [`StoreError::Unavailable`] past
    /// the write wait); PostgreSQL never leaves them so.
    async fn settle(&self, _team_id: TeamId) -> StoreResult<()> {
        Ok(())
    }
    /// Whether, in `tx`'s snapshot, a write of the team is decided and its rows are still being
    /// copied in (SQLite's pending copy); PostgreSQL's writes are whole at their commit.
    async fn copy_pending(_tx: &mut Tx<Self>, _team_id: TeamId) -> StoreResult<bool> {
        Ok(false)
    }
    /// A read-only snapshot in which the team's stored rows are whole, and so of the version
    /// stored with them: [`settle`](Self::settle), then a snapshot without a pending copy. A
    /// copy decided by another process between the two is settled again, up to
    /// [`LOAD_ATTEMPTS`](super::shared::LOAD_ATTEMPTS) times.
    async fn begin_settled(&self, team_id: TeamId) -> StoreResult<Tx<Self>> {
        for _ in 0..super::shared::LOAD_ATTEMPTS {
            self.settle(team_id).await?;
            let mut tx = self.begin_snapshot().await?;
            if !Self::copy_pending(&mut tx, team_id).await? {
                return Ok(tx);
            }
        }
        Err(StoreError::Unavailable)
    }
}
