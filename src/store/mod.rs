//! Persistence: the storage traits and their backends.
//!
//! The traits are split by capability (apps and tokens, orgs, users, directories) and speak only
//! domain types, so nothing above this module sees SQL or a driver type. A backend is chosen at
//! start-up from the database URL ([`open`]); each backend owns its schema and migrations.
//!
//! What the backends do alike is written once: the statements both run as they are and the
//! trait methods around them ([`shared`]), the row mappers ([`rows`]) and the skeleton of a
//! directory write ([`apply`]). Each backend ([`sqlite`], [`postgres`]) supplies only what
//! differs, one file per capability, through [`backend::Backend`].
//!
//! Backends do no rule checking of their own: the service decides on an in-memory
//! [`Directory`] and the store writes the resulting changes
//! only if the team's version is unchanged ([`ApplyBatch::apply`]).

mod apply;
mod backend;
mod batch;
pub mod events;
mod ids;
mod in_flight;
pub mod postgres;
pub mod quotas;
mod rows;
pub mod scim;
mod shared;
pub mod sqlite;
pub mod webhooks;

use async_trait::async_trait;
use thiserror::Error;

use crate::domain::access::{OrgAccess, Plan};
use crate::domain::directory::{Change, Directory, Staging};
use crate::domain::events::{Actor, Draft};
use crate::domain::sync::MemberState;
use crate::domain::values::{Avatar, GroupId, Nickname, OrgId, OrgName, Role, TeamId, UserId};

/// Why a storage call failed. The database's own errors are kept as the source, for the log;
/// none of this is shown to clients.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The team changed since the caller's copy: reload and decide again.
    #[error("the team changed concurrently")]
    Conflict,
    /// The database URL is not one this build understands.
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// A batch of directory writes ([`ApplyBatch`]) failed: an earlier failure left its
    /// transaction unusable, or its commit failed (the error is logged where it happened).
    #[error("a batch of directory writes failed")]
    BatchFailed,
    /// The database's write path stayed taken (a connection or the lock was not had within
    /// [`StoreSettings::write_wait`]): nothing was written, and the caller may retry.
    #[error("the database is busy; retry")]
    Unavailable,
    /// A SCIM user's `userName` is another's in its directory ([`scim::ScimWrite`]): nothing
    /// was written.
    #[error("the SCIM userName is taken in this directory")]
    NameTaken,
    /// A SCIM user's row was written over or deleted since the record a
    /// [`scim::ScimWrite::Put`] was made from was read: nothing was written; read it again.
    #[error("the SCIM user changed since it was read")]
    ScimUserChanged,
    /// Anything the database or its driver reported.
    #[error("database error: {0}")]
    Database(#[source] Box<sqlx::Error>),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database: {0}")]
    Migration(#[source] Box<sqlx::migrate::MigrateError>),
    /// A chunk of rows the database encoded as JSON (SQLite's bulk reads) did not decode.
    #[error("cannot decode rows read in bulk: {0}")]
    Chunk(#[from] serde_json::Error),
    /// The staging file of a large write ([`DirectoryStore::stage`]) could not be
    /// made; nothing was written.
    #[error("cannot make the staging file {path}: {source}")]
    Staging {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Stored data this build cannot read (an unknown code, a row changed by hand), or a race
    /// that did not settle.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut => StoreError::Unavailable,
            // SQLite's SQLITE_BUSY and SQLITE_LOCKED (primary codes 5 and 6): another process
            // held the file's write lock past the busy timeout.
            sqlx::Error::Database(db)
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                    && matches!(db.code().as_deref().map(sqlite_primary), Some(5 | 6)) =>
            {
                StoreError::Unavailable
            }
            _ => StoreError::Database(Box::new(error)),
        }
    }
}

/// The primary result code of an extended SQLite result code.
fn sqlite_primary(code: &str) -> i64 {
    code.parse::<i64>().map_or(-1, |extended| extended & 0xff)
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(Box::new(error))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An app's stored identity.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AppRecord {
    pub appid: String,
    /// `None` for a platform app.
    pub org_id: Option<OrgId>,
    pub secret_hash: Vec<u8>,
}

/// The app behind a stored token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRecord {
    pub appid: String,
    pub org_id: Option<OrgId>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A new app to store.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub appid: String,
    pub name: String,
    pub org_id: Option<OrgId>,
    pub secret_hash: Vec<u8>,
}

#[async_trait]
pub trait AppStore: Send + Sync {
    async fn count_apps(&self) -> StoreResult<i64>;
    async fn create_app(&self, app: NewApp, now: i64) -> StoreResult<()>;
    async fn app(&self, appid: &str) -> StoreResult<Option<AppRecord>>;
    /// Replace the secret; returns `false` when there is no such app.
    async fn set_secret(&self, appid: &str, secret_hash: &[u8]) -> StoreResult<bool>;
    /// Make this the app's only valid token.
    async fn put_token(&self, appid: &str, token_hash: &[u8], expires_at: i64) -> StoreResult<()>;
    async fn token(&self, token_hash: &[u8]) -> StoreResult<Option<TokenRecord>>;
}

/// An org as shown by `GET /api/orgs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    pub access: OrgAccess,
    pub name: String,
    pub phone: String,
    pub creator_id: Option<UserId>,
    pub creator_name: String,
    pub creator_avatar: String,
}

/// A directory's facts needed on every contacts call: who may touch it, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    pub access: OrgAccess,
    pub name: String,
    pub admin_seats: i64,
    pub version: i64,
}

/// A new org (and its directory) to store.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub name: OrgName,
    pub plan: Plan,
    pub admin_seats: i64,
    /// The platform app that creates it, if any.
    pub creator_appid: Option<String>,
    /// The user who creates it and becomes its owner, with the most orgs that user may create.
    pub creator: Option<(UserId, i64)>,
}

/// The outcome of [`OrgStore::create_org`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgCreation {
    Created {
        org_id: OrgId,
        team_id: TeamId,
    },
    /// The creating user already created the most orgs allowed.
    CreatorLimitReached,
}

#[async_trait]
pub trait OrgStore: Send + Sync {
    async fn create_org(&self, org: NewOrg, now: i64) -> StoreResult<OrgCreation>;
    async fn org(&self, org_id: OrgId) -> StoreResult<Option<OrgRecord>>;
    async fn org_access(&self, org_id: OrgId) -> StoreResult<Option<OrgAccess>>;
    async fn team(&self, team_id: TeamId) -> StoreResult<Option<TeamRecord>>;
    /// Every directory, ascending.
    async fn team_ids(&self) -> StoreResult<Vec<TeamId>>;
    /// The oldest team app of an org, if it has one.
    async fn team_appid(&self, org_id: OrgId) -> StoreResult<Option<String>>;
}

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRecord {
    #[sqlx(rename = "id")]
    pub user_id: UserId,
    pub respondent_id: i64,
    pub nickname: String,
    pub avatar: String,
}

/// What a member listing row shows besides ids: directory-level names, or the user's own.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberProfile {
    #[sqlx(rename = "id")]
    pub user_id: UserId,
    pub respondent_id: i64,
    pub name: Nickname,
    pub avatar: Avatar,
}

/// A member's stored directory-level details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDetails {
    pub role: Role,
    pub nickname: Nickname,
    pub avatar: Avatar,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Register `openid` for `appid`, or update and return the user it already names.
    async fn register_user(
        &self,
        appid: &str,
        user: NewUser<'_>,
        now: i64,
    ) -> StoreResult<UserRecord>;
    async fn user_by_openid(&self, appid: &str, openid: &str) -> StoreResult<Option<UserRecord>>;
    async fn user(&self, user_id: UserId) -> StoreResult<Option<UserRecord>>;
    /// Whether `appid`, or an app of `org_id`, registered the user (a tenant's own users).
    async fn user_registered_by(
        &self,
        user_id: UserId,
        appid: &str,
        org_id: Option<OrgId>,
    ) -> StoreResult<bool>;
    /// Set the profile fields given (`None` keeps the stored one) of the user of an openid of
    /// `appid`; answers the user, or `None` when the app has no such openid.
    async fn update_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: Option<&str>,
        avatar: Option<&str>,
    ) -> StoreResult<Option<UserId>>;
    /// Profiles of these members of `team_id`, in any order.
    async fn member_profiles(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
    ) -> StoreResult<Vec<MemberProfile>>;
    async fn member_details(
        &self,
        team_id: TeamId,
        user_id: UserId,
    ) -> StoreResult<Option<MemberDetails>>;
    /// Every openid the app registered, with its user.
    async fn app_user_ids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>>;
    /// Register these openids for `appid` in one transaction (existing ones are left alone)
    /// and return the user of each, in the order given.
    async fn register_users(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>>;
    /// The stored details of every member of `team_id`, with the team's version they are of;
    /// `None`: no such team.
    async fn member_states(&self, team_id: TeamId) -> StoreResult<Option<StoredMembers>>;
    /// How many [`register_users`](Self::register_users) calls of one sync are worth running
    /// at once: PostgreSQL runs each on a connection of its own, on a core of its own; SQLite
    /// has one writer, so a second call would only wait for the first.
    fn registrations_at_once(&self) -> usize;
}

/// What [`UserStore::member_states`] answers: the stored details of a team's members, read in
/// one snapshot with the team's version, so that a write decided on that version's directory
/// may rely on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMembers {
    pub version: i64,
    pub states: Vec<(UserId, MemberState)>,
}

/// A user to register in bulk, borrowed from the snapshot that names it: a sync registers up
/// to millions at once, and copies of their strings would double what the snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewUser<'a> {
    pub openid: &'a str,
    pub nickname: &'a str,
    pub avatar: &'a str,
}

/// What [`ApplyBatch::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Ids given to the batch's created groups, in order.
    pub created: Vec<GroupId>,
    /// The team's version afterwards.
    pub version: i64,
    /// The user a [`scim::ScimWrite::Create`] made with it.
    pub registered: Option<UserId>,
}

#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The team's whole directory, read in one consistent snapshot (`None`: no such team).
    async fn load_directory(&self, team_id: TeamId) -> StoreResult<Option<Directory>>;
    /// A transaction for several [`ApplyBatch::apply`] calls, of one team or many, committed
    /// together (one durable commit for all of them).
    async fn begin_batch(&self) -> StoreResult<Box<dyn ApplyBatch>>;
    /// [`begin_batch`](Self::begin_batch) for one write of hundreds of MiB
    /// ([`ApplyBatch::apply_chunks`], a sync).
    async fn begin_large_batch(&self) -> StoreResult<Box<dyn ApplyBatch>>;
    /// Prepare a large write (`staging` says what it writes; a sync), handed over by `chunks`
    /// as for [`ApplyBatch::apply_chunks`], without holding the database's write lock, where
    /// the backend can: SQLite writes the rows into a staging file of their own, so that
    /// [`StagedWrite::commit`] holds the one writer only to copy them in. `None`: the backend
    /// does not stage (PostgreSQL, whose writers do not wait for each other, or SQLite in
    /// memory), and `chunks` is untouched.
    async fn stage(
        &self,
        write: LargeWrite,
        staging: Staging,
        chunks: &mut dyn ChangeChunks,
        actor: &Actor,
    ) -> StoreResult<Option<Box<dyn StagedWrite>>>;
}

/// Which team a large write changes, from which version, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LargeWrite {
    pub team_id: TeamId,
    pub expected_version: i64,
    pub now: i64,
}

/// A write prepared by [`DirectoryStore::stage`]; dropped uncommitted, it leaves
/// nothing behind.
#[async_trait]
pub trait StagedWrite: Send {
    /// Copy the prepared rows in, in one transaction, if the team is still at the version they
    /// were prepared on (otherwise nothing is written: [`StoreError::Conflict`]), and commit
    /// durably.
    async fn commit(self: Box<Self>) -> StoreResult<Applied>;
}

/// Directory writes gathered in one transaction ([`DirectoryStore::begin_batch`]). Each
/// [`ApplyBatch::apply`] is all or nothing on its own (it runs under a savepoint): a refused or
/// failed one leaves nothing behind and the others stand. Except: on PostgreSQL a team's later
/// write in the batch, once its version check passed in memory, runs without a savepoint of its
/// own, and should the database still refuse it the whole batch is lost
/// ([`ApplyBatch::lost`]). Nothing is durable, or visible to other connections, before
/// [`ApplyBatch::commit`]; dropping the batch rolls everything back.
#[async_trait]
pub trait ApplyBatch: Send {
    /// Write `scim` (if any), then `changes` and their events (`drafts`, made by `actor`), under
    /// one savepoint, if the team's version is still `expected_version`, and bump the version;
    /// otherwise write nothing and answer [`StoreError::Conflict`]. The version compared is the
    /// one the batch sees, so a second change of a team in the same batch expects the first
    /// one's version. Without `changes` the version is neither checked nor bumped (only `scim`
    /// is written).
    async fn apply(
        &mut self,
        team_id: TeamId,
        expected_version: i64,
        changes: &[Change],
        events: (&Actor, &[Draft]),
        scim: Option<&scim::ScimWrite>,
        now: i64,
    ) -> StoreResult<Applied>;
    /// [`ApplyBatch::apply`] of a write too large to hold as one list of changes (a sync),
    /// handed over by `chunks` a chunk at a time and written in order under the one savepoint;
    /// the events, made by `actor`, are numbered as they come.
    async fn apply_chunks(
        &mut self,
        write: LargeWrite,
        chunks: &mut dyn ChangeChunks,
        actor: &Actor,
    ) -> StoreResult<Applied>;
    /// Whether the batch's transaction is gone (a write that could not be undone alone failed,
    /// or the connection did): nothing of it will be committed, and every later call fails.
    fn lost(&self) -> bool;
    /// Commit every change applied so far, durably.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The changes of one write, made a chunk at a time as they are written
/// ([`ApplyBatch::apply_chunks`]).
pub trait ChangeChunks: Send {
    /// The next chunk of changes with their events (an event names its change by its place in
    /// the chunk), or `None` after the last. Every created group comes in the first chunk; a
    /// change names a created group by its place among all of them.
    fn next_chunk(&mut self) -> Option<(Vec<Change>, Vec<Draft>)>;
    /// The chunk last handed over is given to the database, which may still be writing it: it
    /// goes on the copy, which the caller discards if the write fails after all. `created`
    /// holds the ids of the groups created so far, in order.
    fn written(&mut self, changes: Vec<Change>, created: &[GroupId]);
}

/// Everything the service needs from a backend.
#[async_trait]
pub trait Store:
    AppStore
    + OrgStore
    + UserStore
    + DirectoryStore
    + quotas::QuotaStore
    + scim::ScimStore
    + events::EventStore
    + webhooks::WebhookStore
{
    /// A value that changes whenever any process (this one included) commits to the database,
    /// read without a query; `None` when the backend cannot tell that cheaply (PostgreSQL), so
    /// that a caller must ask the database. Compared with the value taken before a read, it
    /// says whether what was read may since have changed.
    fn change_stamp(&self) -> Option<u64>;
    /// How long a write waits for the database's write path before it is refused as
    /// [`StoreError::Unavailable`] ([`StoreSettings::write_wait`]).
    fn write_wait(&self) -> std::time::Duration;
    /// Does the database answer?
    async fn ping(&self) -> StoreResult<()>;
    /// Connections of each pool, open and idle, now (for the metrics).
    fn pool_use(&self) -> Vec<crate::metrics::PoolUse>;
    /// Rows that name something that does not exist, counted per kind and team (for `admin
    /// check`). The bulk tables have no foreign keys on either backend (see the migrations),
    /// so this is where a broken reference would show.
    async fn dangling_references(&self) -> StoreResult<Vec<DanglingReferences>>;
}

/// What a row of [`Store::dangling_references`] names that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DanglingKind {
    /// Memberships of a user who is not a member of the team.
    MembershipOfNonMember,
    /// Memberships in a group that is not one of the team's.
    MembershipOutsideTeam,
    /// Members who are not users.
    MemberNotUser,
    /// Members of a team that does not exist.
    MemberOfMissingTeam,
    /// Openids of a user that does not exist.
    OpenidOfMissingUser,
    /// Openids of an app that does not exist.
    OpenidOfMissingApp,
}

/// Rows of one kind that name something missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingReferences {
    pub kind: DanglingKind,
    /// The team the rows belong to; `None` for rows outside any team (openids).
    pub team_id: Option<TeamId>,
    pub count: i64,
}

/// How to open the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// The most connections one process opens to PostgreSQL (SQLite always uses one writing
    /// and four reading connections). Size it so that processes × pool size stays below the
    /// server's `max_connections`.
    pub pool_size: u32,
    /// When SQLite reports a commit done (PostgreSQL ignores it; it keeps its server's
    /// `synchronous_commit`, `on` by default).
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long a write waits for the database's write path (a pooled connection; on SQLite the
    /// one writing connection, held by another team's large sync for as long as it writes)
    /// before it is refused as [`StoreError::Unavailable`], to be retried.
    pub write_wait: std::time::Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            pool_size: 10,
            sqlite_synchronous: SqliteSynchronous::Full,
            write_wait: std::time::Duration::from_secs(10),
        }
    }
}

/// SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSynchronous {
    /// Each commit is synced to disk before it is acknowledged: an acknowledged write survives
    /// a power loss or an operating-system crash.
    Full,
    /// Commits are synced at checkpoints only: an acknowledged write survives a crash of the
    /// process, but the last ones may be lost on power loss or an operating-system crash (the
    /// file is never corrupted).
    Normal,
}

/// Open and migrate the database named by `url`: `sqlite:` (the file is created if missing) or
/// `postgres://` / `postgresql://` (the database must exist).
pub async fn open(url: &str, settings: &StoreSettings) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open(url, settings).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url, settings).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
