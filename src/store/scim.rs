//! Storage of SCIM provisioning (§12): bearer tokens per directory, the app that registers the
//! users SCIM creates, and the SCIM attributes of those users.
//!
//! The SCIM rows are written by the group committer, inside the savepoint of a directory write
//! of the same team ([`ScimWrite`]), so that a user's row and its membership share one durable
//! commit with the other writes of the batch.
//!
//! Groups need nothing of their own: a SCIM group is a directory group, written through
//! [`ApplyBatch::apply`](super::ApplyBatch::apply) like any other.

use async_trait::async_trait;

use super::{StoreError, StoreResult, TeamRecord};
use crate::domain::values::{TeamId, UserId};

/// A SCIM token as listed (its value is never stored).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimTokenRecord {
    pub id: i64,
    pub team_id: TeamId,
    /// Unix seconds.
    pub created_at: i64,
}

/// A SCIM user of one directory.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimUserRecord {
    /// The user behind it.
    pub user_id: UserId,
    /// Its SCIM `id`, also its openid under the directory's SCIM app: a UUID given at
    /// creation that never changes.
    pub scim_id: String,
    /// `userName` lower-cased: unique per directory.
    pub user_name_key: String,
    pub external_id: Option<String>,
    pub active: bool,
    /// The resource as last written, as JSON (without `id`, `groups` and `meta`).
    pub resource: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// How many times the row was written over since its creation: a [`ScimWrite::Put`] of a
    /// record read at this count is refused if the row is at another, or gone.
    pub row_version: i64,
}

/// A write of SCIM's own rows, made inside a batch
/// ([`ApplyBatch::apply`](super::ApplyBatch::apply)) in the savepoint of a directory write of
/// the same team: both stand or neither does. A `userName` another user of the directory has is
/// refused with [`StoreError::NameTaken`]; a [`Put`](Self::Put) or [`Delete`](Self::Delete) of
/// a row that changed since it was read, or that is gone, with [`StoreError::ScimUserChanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimWrite {
    /// Register a new user under the directory's SCIM app, its openid being the record's SCIM
    /// id, and insert its SCIM row (the record's `user_id` is not used): the batch answers the
    /// new user's id. The write's changes name that user
    /// [`REGISTERED_USER`](crate::domain::directory::REGISTERED_USER) until it has its id.
    Create {
        nickname: crate::domain::values::Nickname,
        record: ScimUserRecord,
    },
    /// Overwrite the row of `user_id`, if it is still at the record's `row_version`.
    Put(ScimUserRecord),
    /// Forget the SCIM row of `user_id`, if it is still at `row_version` (the user stays
    /// registered, as users do).
    Delete { user_id: UserId, row_version: i64 },
}

/// A SCIM user [`ScimStore::scim_user_ids`] found.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimUserRef {
    pub user_id: UserId,
    pub scim_id: String,
}

#[async_trait]
pub trait ScimStore: Send + Sync {
    /// Store a token's digest for `team_id`; returns the token's id.
    async fn create_scim_token(
        &self,
        team_id: TeamId,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<i64>;
    /// The tokens of `team_id`, oldest first.
    async fn scim_tokens(&self, team_id: TeamId) -> StoreResult<Vec<ScimTokenRecord>>;
    /// Delete a token; returns it, or `None` when there is no such token.
    async fn revoke_scim_token(&self, id: i64) -> StoreResult<Option<ScimTokenRecord>>;
    /// The directory a token serves, with its org (one read).
    async fn scim_token_team(&self, token_hash: &[u8]) -> StoreResult<Option<TeamRecord>>;
    /// The app that registers the SCIM users of `team_id`, if it has one yet.
    async fn scim_app(&self, team_id: TeamId) -> StoreResult<Option<String>>;
    /// Make `appid` the SCIM app of `team_id` unless it has one; returns the one it has.
    async fn put_scim_app(&self, team_id: TeamId, appid: &str) -> StoreResult<String>;
    /// Every SCIM user of `team_id`, ascending by user id.
    async fn scim_users(&self, team_id: TeamId) -> StoreResult<Vec<ScimUserRecord>>;
    /// The SCIM users of `team_id` that are among `user_ids` or whose SCIM id is among
    /// `scim_ids`: a lookup of the ids one request names (a user may be listed twice).
    async fn scim_user_ids(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<ScimUserRef>>;
    async fn scim_user(
        &self,
        team_id: TeamId,
        scim_id: &str,
    ) -> StoreResult<Option<ScimUserRecord>>;
    async fn scim_user_by_name(
        &self,
        team_id: TeamId,
        user_name_key: &str,
    ) -> StoreResult<Option<ScimUserRecord>>;
}

/// `SELECT` of every column of a [`ScimUserRecord`] from `scim_users`, followed by `$rest`.
macro_rules! select_scim_users {
    ($rest:literal) => {
        concat!(
            "SELECT user_id, scim_id, user_name_key, external_id, active, resource, \
             created_at, updated_at, row_version FROM scim_users ",
            $rest
        )
    };
}

pub(crate) use select_scim_users;

/// The statement that inserts or overwrites a row of `scim_users`: this, the row's values
/// (team id, user id, SCIM id, `user_name_key`, `external_id`, `active`, `resource`,
/// `created_at`, `updated_at`, `row_version` 0), then [`ON_SCIM_USER_CONFLICT`]. An overwrite
/// counts one more write of the row; it comes after the check that the row is still as read
/// (`push_scim_row_current`).
pub(crate) const PUT_SCIM_USER: &str = "INSERT INTO scim_users (team_id, user_id, scim_id, \
     user_name_key, external_id, active, resource, created_at, updated_at, row_version) VALUES (";

/// The end of [`PUT_SCIM_USER`], after its values.
pub(crate) const ON_SCIM_USER_CONFLICT: &str = ") ON CONFLICT (team_id, user_id) DO UPDATE SET \
     user_name_key = excluded.user_name_key, external_id = excluded.external_id, \
     active = excluded.active, resource = excluded.resource, updated_at = excluded.updated_at, \
     row_version = scim_users.row_version + 1";

/// The error of a failed SCIM write: [`StoreError::NameTaken`] for a violation of the index
/// `scim_users_by_name` (a `userName` another user of the directory has),
/// [`StoreError::ScimUserChanged`] for one of the check `scim_users_row_current` (a row
/// written over or deleted since it was read); any other failure, another unique index
/// included, is the database's.
pub(crate) fn write_error(error: sqlx::Error) -> StoreError {
    let Some(e) = error.as_database_error() else {
        return StoreError::from(error);
    };
    // PostgreSQL names the constraint; SQLite names it, or the index's columns, in the message.
    let names = |constraint: &str, message: &str| {
        e.constraint() == Some(constraint) || e.message().contains(message)
    };
    if e.is_unique_violation() && names("scim_users_by_name", "scim_users.user_name_key") {
        StoreError::NameTaken
    } else if e.is_check_violation() && names("scim_users_row_current", "scim_users_row_current") {
        StoreError::ScimUserChanged
    } else {
        StoreError::from(error)
    }
}

/// [`ScimStore`] for `$store`, written once for both backends; the lookup whose SQL differs is
/// [`BackendUsers::scim_users_among`](super::backend::BackendUsers::scim_users_among).
macro_rules! impl_scim_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::domain::values::{TeamId, UserId};
            use $crate::store::backend::{Backend, BackendUsers, Tx};
            use $crate::store::scim::{
                ScimStore, ScimTokenRecord, ScimUserRecord, ScimUserRef, ScimWrite,
            };
            use $crate::store::{NewUser, StoreError, StoreResult, TeamRecord, rows};

            #[async_trait]
            impl ScimStore for $store {
                async fn create_scim_token(
                    &self,
                    team_id: TeamId,
                    token_hash: &[u8],
                    now: i64,
                ) -> StoreResult<i64> {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO scim_tokens (team_id, token_hash, created_at) \
                         VALUES ($1, $2, $3) RETURNING id",
                    )
                    .bind(team_id)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_one(self.writes())
                    .await?;
                    Ok(id)
                }

                async fn scim_tokens(&self, team_id: TeamId) -> StoreResult<Vec<ScimTokenRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT id, team_id, created_at FROM scim_tokens WHERE team_id = $1 \
                         ORDER BY id",
                    )
                    .bind(team_id)
                    .fetch_all(self.reads())
                    .await?)
                }

                async fn revoke_scim_token(&self, id: i64) -> StoreResult<Option<ScimTokenRecord>> {
                    Ok(sqlx::query_as(
                        "DELETE FROM scim_tokens WHERE id = $1 RETURNING id, team_id, created_at",
                    )
                    .bind(id)
                    .fetch_optional(self.writes())
                    .await?)
                }

                async fn scim_token_team(
                    &self,
                    token_hash: &[u8],
                ) -> StoreResult<Option<TeamRecord>> {
                    let team: Option<rows::TeamRow> = sqlx::query_as(
                        "SELECT t.id AS team_id, t.version, o.id AS org_id, o.name, o.plan, \
                         o.admin_seats, o.creator_appid FROM scim_tokens s \
                         JOIN teams t ON t.id = s.team_id JOIN orgs o ON o.id = t.org_id \
                         WHERE s.token_hash = $1",
                    )
                    .bind(token_hash)
                    .fetch_optional(self.reads())
                    .await?;
                    team.map(TryInto::try_into).transpose()
                }

                async fn scim_app(&self, team_id: TeamId) -> StoreResult<Option<String>> {
                    Ok(
                        sqlx::query_scalar("SELECT appid FROM scim_apps WHERE team_id = $1")
                            .bind(team_id)
                            .fetch_optional(self.reads())
                            .await?,
                    )
                }

                async fn put_scim_app(&self, team_id: TeamId, appid: &str) -> StoreResult<String> {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(
                        "INSERT INTO scim_apps (team_id, appid) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(team_id)
                    .bind(appid)
                    .execute(&mut *tx)
                    .await?;
                    let appid: String =
                        sqlx::query_scalar("SELECT appid FROM scim_apps WHERE team_id = $1")
                            .bind(team_id)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    Ok(appid)
                }

                async fn scim_users(&self, team_id: TeamId) -> StoreResult<Vec<ScimUserRecord>> {
                    Ok(sqlx::query_as($crate::store::scim::select_scim_users!(
                        "WHERE team_id = $1 ORDER BY user_id"
                    ))
                    .bind(team_id)
                    .fetch_all(self.reads())
                    .await?)
                }

                async fn scim_user_ids(
                    &self,
                    team_id: TeamId,
                    user_ids: &[UserId],
                    scim_ids: &[&str],
                ) -> StoreResult<Vec<ScimUserRef>> {
                    if user_ids.is_empty() && scim_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    Self::scim_users_among(self, team_id, user_ids, scim_ids).await
                }

                async fn scim_user(
                    &self,
                    team_id: TeamId,
                    scim_id: &str,
                ) -> StoreResult<Option<ScimUserRecord>> {
                    Ok(sqlx::query_as($crate::store::scim::select_scim_users!(
                        "WHERE team_id = $1 AND scim_id = $2"
                    ))
                    .bind(team_id)
                    .bind(scim_id)
                    .fetch_optional(self.reads())
                    .await?)
                }

                async fn scim_user_by_name(
                    &self,
                    team_id: TeamId,
                    user_name_key: &str,
                ) -> StoreResult<Option<ScimUserRecord>> {
                    Ok(sqlx::query_as($crate::store::scim::select_scim_users!(
                        "WHERE team_id = $1 AND user_name_key = $2"
                    ))
                    .bind(team_id)
                    .bind(user_name_key)
                    .fetch_optional(self.reads())
                    .await?)
                }
            }

            impl $store {
                /// Push the statement that refuses a write of `user_id`'s row unless the row is
                /// there at `row_version`: otherwise (gone, or written since) it inserts a
                /// placeholder row at -1, which the check `scim_users_row_current` refuses
                /// before anything else is looked at.
                pub(crate) fn push_scim_row_current(
                    query: &mut sqlx::QueryBuilder<<$store as Backend>::Db>,
                    team_id: TeamId,
                    user_id: UserId,
                    row_version: i64,
                ) {
                    query
                        .push(
                            "INSERT INTO scim_users (team_id, user_id, scim_id, user_name_key, \
                             active, resource, created_at, updated_at, row_version) SELECT ",
                        )
                        .push_bind(team_id)
                        .push(", ")
                        .push_bind(user_id)
                        .push(", '', '', ")
                        .push_bind(false)
                        .push(
                            ", '', 0, 0, -1 WHERE NOT EXISTS \
                             (SELECT 1 FROM scim_users WHERE team_id = ",
                        )
                        .push_bind(team_id)
                        .push(" AND user_id = ")
                        .push_bind(user_id)
                        .push(" AND row_version = ")
                        .push_bind(row_version)
                        .push(")");
                }

                /// Push the statement that deletes `user_id`'s row.
                pub(crate) fn push_scim_delete(
                    query: &mut sqlx::QueryBuilder<<$store as Backend>::Db>,
                    team_id: TeamId,
                    user_id: UserId,
                ) {
                    query
                        .push("DELETE FROM scim_users WHERE team_id = ")
                        .push_bind(team_id)
                        .push(" AND user_id = ")
                        .push_bind(user_id);
                }

                /// Push the statement that inserts or overwrites `user`'s row as the one of
                /// `user_id` (a created user's record does not know its id yet).
                pub(crate) fn push_scim_row(
                    query: &mut sqlx::QueryBuilder<<$store as Backend>::Db>,
                    team_id: TeamId,
                    user_id: UserId,
                    user: &ScimUserRecord,
                ) {
                    query.push($crate::store::scim::PUT_SCIM_USER);
                    query
                        .separated(", ")
                        .push_bind(team_id)
                        .push_bind(user_id)
                        .push_bind(user.scim_id.clone())
                        .push_bind(user.user_name_key.clone())
                        .push_bind(user.external_id.clone())
                        .push_bind(user.active)
                        .push_bind(user.resource.clone())
                        .push_bind(user.created_at)
                        .push_bind(user.updated_at)
                        .push_bind(0_i64);
                    query.push($crate::store::scim::ON_SCIM_USER_CONFLICT);
                }

                /// Make `write` inside `tx` (a batch, under a savepoint); answers the user a
                /// [`ScimWrite::Create`] registered.
                pub(crate) async fn write_scim(
                    tx: &mut Tx<$store>,
                    team_id: TeamId,
                    write: &ScimWrite,
                    now: i64,
                ) -> StoreResult<Option<UserId>> {
                    match write {
                        ScimWrite::Create { nickname, record } => {
                            let user = NewUser {
                                openid: &record.scim_id,
                                nickname,
                                avatar: "",
                            };
                            let user_id =
                                $crate::store::shared::insert_user(Self::INSERT_USER, user, now)
                                    .fetch_one(&mut **tx)
                                    .await?
                                    .user_id;
                            // A directory's SCIM app is made with its first token.
                            let claimed = sqlx::query(
                                "INSERT INTO app_users (appid, openid, user_id) \
                                 SELECT appid, $2, $3 FROM scim_apps WHERE team_id = $1",
                            )
                            .bind(team_id)
                            .bind(&record.scim_id)
                            .bind(user_id)
                            .execute(&mut **tx)
                            .await?;
                            if claimed.rows_affected() != 1 {
                                return Err(StoreError::Inconsistent(format!(
                                    "team {team_id} has a SCIM token but no SCIM app"
                                )));
                            }
                            put_row(tx, team_id, user_id, record).await?;
                            Ok(Some(user_id))
                        }
                        ScimWrite::Put(record) => {
                            row_current(tx, team_id, record.user_id, record.row_version).await?;
                            put_row(tx, team_id, record.user_id, record).await?;
                            Ok(None)
                        }
                        ScimWrite::Delete {
                            user_id,
                            row_version,
                        } => {
                            row_current(tx, team_id, *user_id, *row_version).await?;
                            let mut query = sqlx::QueryBuilder::new("");
                            <$store>::push_scim_delete(&mut query, team_id, *user_id);
                            run(tx, query).await?;
                            Ok(None)
                        }
                    }
                }
            }

            /// Refuse the write of `user_id`'s row ([`StoreError::ScimUserChanged`]) unless the
            /// row is there at `row_version`.
            async fn row_current(
                tx: &mut Tx<$store>,
                team_id: TeamId,
                user_id: UserId,
                row_version: i64,
            ) -> StoreResult<()> {
                let mut query = sqlx::QueryBuilder::new("");
                <$store>::push_scim_row_current(&mut query, team_id, user_id, row_version);
                run(tx, query).await
            }

            /// Insert or overwrite `user`'s row as the one of `user_id`;
            /// [`StoreError::NameTaken`] when another user of the directory has its
            /// `user_name_key`.
            async fn put_row(
                tx: &mut Tx<$store>,
                team_id: TeamId,
                user_id: UserId,
                user: &ScimUserRecord,
            ) -> StoreResult<()> {
                let mut query = sqlx::QueryBuilder::new("");
                <$store>::push_scim_row(&mut query, team_id, user_id, user);
                run(tx, query).await
            }

            /// Run a statement of a SCIM write, its failure told as
            /// [`write_error`]($crate::store::scim::write_error) tells it.
            async fn run(
                tx: &mut Tx<$store>,
                mut query: sqlx::QueryBuilder<<$store as Backend>::Db>,
            ) -> StoreResult<()> {
                query
                    .build()
                    .execute(&mut **tx)
                    .await
                    .map_err($crate::store::scim::write_error)?;
                Ok(())
            }
        };
    };
}

pub(crate) use impl_scim_store;
