//! Persistence: the storage traits and their backends.
//!
//! The traits are split by capability (apps and tokens, orgs, users, directories) and speak only
//! domain types, so nothing above this module sees SQL or a driver type. A backend is chosen at
//! start-up from the database URL ([`open`]); each backend owns its schema and migrations.
//!
//! Backends do no rule checking of their own: the service decides on an in-memory
//! [`Directory`](crate::domain::directory::Directory) and the store writes the resulting changes
//! only if the team's version is unchanged ([`DirectoryStore::apply`]).

pub mod postgres;
pub mod scim;
pub mod sqlite;

use async_trait::async_trait;
use futures_util::{Stream, TryStreamExt};
use thiserror::Error;

use crate::domain::access::{OrgAccess, Plan};
use crate::domain::directory::{Change, Directory, DirectoryBuilder, Placement};
use crate::domain::sync::MemberState;
use crate::domain::values::{GroupId, OrgId, Role, TeamId, UserId};

/// Why a storage call failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The team changed since the caller's copy: reload and decide again.
    #[error("the team changed concurrently")]
    Conflict,
    /// The database URL is not one this build understands.
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
    /// Anything the database reported; details are for the log only.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(error.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An app's stored identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    pub appid: String,
    /// `None` for a platform app.
    pub org_id: Option<OrgId>,
    pub secret_hash: Vec<u8>,
}

/// The app behind a stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub name: String,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: UserId,
    pub respondent_id: i64,
    pub nickname: String,
    pub avatar: String,
}

/// What a member listing row shows besides ids: directory-level names, or the user's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberProfile {
    pub user_id: UserId,
    pub respondent_id: i64,
    pub name: String,
    pub avatar: String,
}

/// A member's stored directory-level details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDetails {
    pub role: Role,
    pub nickname: String,
    pub avatar: String,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Register `openid` for `appid`, or update and return the user it already names.
    async fn register_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: &str,
        avatar: &str,
        now: i64,
    ) -> StoreResult<UserRecord>;
    async fn user_by_openid(&self, appid: &str, openid: &str) -> StoreResult<Option<UserRecord>>;
    async fn user(&self, user_id: UserId) -> StoreResult<Option<UserRecord>>;
    /// Returns `false` when the app has no such openid.
    async fn update_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: &str,
        avatar: &str,
    ) -> StoreResult<bool>;
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
    /// The stored details of every member of `team_id`.
    async fn member_states(&self, team_id: TeamId) -> StoreResult<Vec<(UserId, MemberState)>>;
}

/// A user to register in bulk, borrowed from the snapshot that names it: a sync registers up
/// to millions at once, and copies of their strings would double what the snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewUser<'a> {
    pub openid: &'a str,
    pub nickname: &'a str,
    pub avatar: &'a str,
}

/// What [`DirectoryStore::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Ids given to the batch's created groups, in order.
    pub created: Vec<GroupId>,
    /// The team's version afterwards.
    pub version: i64,
}

#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// The team's whole directory, read in one consistent snapshot (`None`: no such team).
    async fn load_directory(&self, team_id: TeamId) -> StoreResult<Option<Directory>>;
    /// Write `changes` in one transaction if the team's version is still `expected_version`,
    /// and bump the version; otherwise write nothing and answer [`StoreError::Conflict`].
    async fn apply(
        &self,
        team_id: TeamId,
        expected_version: i64,
        changes: &[Change],
        now: i64,
    ) -> StoreResult<Applied>;
}

/// Everything the service needs from a backend.
#[async_trait]
pub trait Store: AppStore + OrgStore + UserStore + DirectoryStore + scim::ScimStore {
    /// Does the database answer?
    async fn ping(&self) -> StoreResult<()>;
    /// Rows that name something that does not exist, one line per kind and team (for `admin
    /// check`). The bulk tables have no foreign keys on PostgreSQL (see its migrations), so
    /// this is where a broken reference would show.
    async fn dangling_references(&self) -> StoreResult<Vec<String>>;
}

/// The query behind [`Store::dangling_references`], valid on both backends: rows of
/// (problem, team id or NULL, count).
pub(crate) const DANGLING_REFERENCES: &str = "\
    SELECT 'memberships of a user who is not a member' AS problem, m.team_id AS team_id, \
    COUNT(*) AS n FROM memberships m LEFT JOIN members b \
    ON b.team_id = m.team_id AND b.user_id = m.user_id WHERE b.user_id IS NULL GROUP BY m.team_id \
    UNION ALL SELECT 'memberships in a group outside the team', m.team_id, COUNT(*) \
    FROM memberships m LEFT JOIN groups g ON g.id = m.group_id AND g.team_id = m.team_id \
    WHERE g.id IS NULL GROUP BY m.team_id \
    UNION ALL SELECT 'members who are not users', b.team_id, COUNT(*) FROM members b \
    LEFT JOIN users u ON u.id = b.user_id WHERE u.id IS NULL GROUP BY b.team_id \
    UNION ALL SELECT 'members of a team that does not exist', b.team_id, COUNT(*) \
    FROM members b LEFT JOIN teams t ON t.id = b.team_id WHERE t.id IS NULL GROUP BY b.team_id \
    UNION ALL SELECT 'openids of a user that does not exist', NULL, COUNT(*) FROM app_users a \
    LEFT JOIN users u ON u.id = a.user_id WHERE u.id IS NULL HAVING COUNT(*) > 0 \
    UNION ALL SELECT 'openids of an app that does not exist', NULL, COUNT(*) FROM app_users a \
    LEFT JOIN apps p ON p.appid = a.appid WHERE p.appid IS NULL HAVING COUNT(*) > 0";

/// The lines of [`Store::dangling_references`] from the rows of [`DANGLING_REFERENCES`].
pub(crate) fn dangling_lines(rows: Vec<(String, Option<TeamId>, i64)>) -> Vec<String> {
    rows.into_iter()
        .map(|(problem, team_id, count)| match team_id {
            Some(team_id) => format!("team {team_id}: {count} {problem}"),
            None => format!("{count} {problem}"),
        })
        .collect()
}

/// The environment variable giving the most connections one process opens to PostgreSQL.
pub const POOL_SIZE_ENV: &str = "CONTACTSD_DB_POOL_SIZE";
/// Connections per process to PostgreSQL when [`POOL_SIZE_ENV`] is not set. Size it so that
/// processes × pool size stays below the server's `max_connections`.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// Open and migrate the database named by `url`: `sqlite:` (the file is created if missing) or
/// `postgres://` / `postgresql://` (the database must exist; its pool size is read from
/// [`POOL_SIZE_ENV`], default [`DEFAULT_POOL_SIZE`]).
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool_size = match std::env::var(POOL_SIZE_ENV) {
            Err(_) => DEFAULT_POOL_SIZE,
            Ok(raw) => match raw.trim().parse::<u32>() {
                Ok(size) if size > 0 => size,
                _ => {
                    return Err(StoreError::Database(format!(
                        "{POOL_SIZE_ENV} must be a positive integer, not {raw:?}"
                    )));
                }
            },
        };
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url, pool_size).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// Decode rows one by one as the database sends them. A directory read is millions of rows;
/// collecting the raw rows first would hold them all (hundreds of bytes each) at once.
pub(crate) async fn decode_rows<R, T>(
    rows: impl Stream<Item = Result<R, sqlx::Error>>,
    mut decode: impl FnMut(&R) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut rows = std::pin::pin!(rows);
    let mut decoded = Vec::new();
    while let Some(row) = rows.try_next().await? {
        decoded.push(decode(&row)?);
    }
    Ok(decoded)
}

/// The stored size of a directory, `(groups, members)`, read before its rows so that the
/// builder sizes its maps once (valid on both backends).
pub(crate) const DIRECTORY_SIZE: &str = "SELECT (SELECT COUNT(*) FROM groups WHERE team_id = $1), \
     (SELECT COUNT(*) FROM members WHERE team_id = $1)";

/// The builder of `team`'s directory, of the size [`DIRECTORY_SIZE`] read.
pub(crate) fn directory_builder(
    team: TeamRecord,
    (groups, members): (i64, i64),
) -> DirectoryBuilder {
    DirectoryBuilder::new(
        team.name,
        team.admin_seats,
        team.version,
        usize::try_from(groups).unwrap_or_default(),
        usize::try_from(members).unwrap_or_default(),
    )
}

/// Add each member of a chunk to `builder`, from its role and its memberships, both ascending
/// by user id.
pub(crate) fn add_members(
    builder: &mut DirectoryBuilder,
    roles: Vec<(UserId, Role)>,
    memberships: &[(UserId, GroupId)],
) {
    let mut rest = memberships;
    for (user_id, role) in roles {
        // Skip memberships of users before this one (none in a consistent database).
        let start = rest.partition_point(|(member, _)| *member < user_id);
        let end = start + rest[start..].partition_point(|(member, _)| *member == user_id);
        let groups = rest[start..end].iter().map(|(_, group)| *group).collect();
        rest = &rest[end..];
        builder.add_member(user_id, Placement { role, groups });
    }
}

/// A stored role code; an unknown one means the database was changed by hand.
pub(crate) fn role_of(raw: i64) -> StoreResult<Role> {
    Role::from_code(raw).ok_or_else(|| StoreError::Database(format!("unknown role {raw}")))
}
