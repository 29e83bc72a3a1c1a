//! The storage traits implemented once for both backends, with the statements both run as they
//! are (SQLite accepts PostgreSQL's `$1` placeholders). What differs is asked of the backend
//! through [`Backend`](super::backend::Backend).
//!
//! The implementation is a macro expanded for each backend's store type, so that each
//! expansion is checked and compiled against its own driver's concrete types (sqlx code generic
//! over the database needs an encode and decode bound for every type bound or read).

use sqlx::{Database, Encode, Type};

use super::{NewUser, UserRecord};
use crate::domain::directory::{Group, Kept};
use crate::domain::values::{GroupId, TeamId};

/// Rewrite one group's row, placed under `parent_id`: the same statement for both backends'
/// [`ChangeWriter`](super::apply::ChangeWriter)s.
pub(crate) fn update_group<DB>(
    team_id: TeamId,
    group: &Group,
    parent_id: GroupId,
) -> sqlx::query::Query<'static, DB, DB::Arguments>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> bool: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    sqlx::query(
        "UPDATE groups SET parent_id = $1, source = $2, remote_id = $3, name = $4, \
         sort_order = $5, is_valid = $6, upd_at = $7 WHERE id = $8 AND team_id = $9",
    )
    .bind(parent_id)
    .bind(group.source.code())
    .bind(group.remote_id.as_str())
    .bind(group.name.as_str())
    .bind(group.order)
    .bind(group.is_valid)
    .bind(group.upd_at)
    .bind(group.id)
    .bind(team_id)
}

/// Insert a new user's row (no openid yet) with `sql`, the backend's
/// [`BackendUsers::INSERT_USER`](super::backend::BackendUsers::INSERT_USER), answering the row.
pub(crate) fn insert_user<'q, DB>(
    sql: &'static str,
    user: NewUser<'q>,
    now: i64,
) -> sqlx::query::QueryAs<'q, DB, UserRecord, DB::Arguments>
where
    DB: Database,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    UserRecord: for<'r> sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as(sql)
        .bind(user.nickname)
        .bind(user.avatar)
        .bind(now)
}

/// How often a read of a team's rows as a whole settles them again, finding them being copied
/// in by another process (SQLite's pending copy, decided after `settle`).
pub(crate) const LOAD_ATTEMPTS: u32 = 4;

/// Rows that name something missing, as (problem, team id or NULL, count); the problem names
/// are read by [`DanglingRow`](super::rows::DanglingRow).
pub(crate) const DANGLING_REFERENCES: &str = "\
    SELECT 'membership_of_non_member' AS problem, m.team_id AS team_id, \
    COUNT(*) AS n FROM memberships m LEFT JOIN members b \
    ON b.team_id = m.team_id AND b.user_id = m.user_id WHERE b.user_id IS NULL GROUP BY m.team_id \
    UNION ALL SELECT 'membership_outside_team', m.team_id, COUNT(*) \
    FROM memberships m LEFT JOIN groups g ON g.id = m.group_id AND g.team_id = m.team_id \
    WHERE g.id IS NULL GROUP BY m.team_id \
    UNION ALL SELECT 'member_not_user', b.team_id, COUNT(*) FROM members b \
    LEFT JOIN users u ON u.id = b.user_id WHERE u.id IS NULL GROUP BY b.team_id \
    UNION ALL SELECT 'member_of_missing_team', b.team_id, COUNT(*) \
    FROM members b LEFT JOIN teams t ON t.id = b.team_id WHERE t.id IS NULL GROUP BY b.team_id \
    UNION ALL SELECT 'openid_of_missing_user', NULL, COUNT(*) FROM app_users a \
    LEFT JOIN users u ON u.id = a.user_id WHERE u.id IS NULL HAVING COUNT(*) > 0 \
    UNION ALL SELECT 'openid_of_missing_app', NULL, COUNT(*) FROM app_users a \
    LEFT JOIN apps p ON p.appid = a.appid WHERE p.appid IS NULL HAVING COUNT(*) > 0";

/// A team with its org, by team id.
pub(crate) const TEAM_BY_ID: &str = "SELECT t.id AS team_id, t.version, o.id AS org_id, \
     o.name, o.plan, o.admin_seats, o.creator_appid FROM teams t JOIN orgs o ON o.id = t.org_id \
     WHERE t.id = $1";

/// The stored size of a directory, `(groups, members)`, read before its rows so that the
/// builder sizes its maps once.
pub(crate) const DIRECTORY_SIZE: &str = "SELECT (SELECT COUNT(*) FROM groups WHERE team_id = $1), \
     (SELECT COUNT(*) FROM members WHERE team_id = $1)";

/// The end of an insert of member rows that overwrites a stored row's role and source, and
/// the columns named.
macro_rules! overwrite_member {
    ($($column:literal),*) => {
        concat!(
            " ON CONFLICT (team_id, user_id) DO UPDATE SET ",
            $($column, " = excluded.", $column, ", ",)*
            "role = excluded.role, source = excluded.source, upd_at = excluded.upd_at"
        )
    };
}

/// How a member row put by a change overwrites the stored one
/// ([`Change::PutMember`](crate::domain::directory::Change::PutMember)) that keeps nothing:
/// wholly.
pub(crate) const REWRITE_MEMBER: &str = overwrite_member!("nickname", "avatar");
/// How a member row stepped into or out of a group overwrites the stored one
/// ([`Change::StepMember`](crate::domain::directory::Change::StepMember)): its name and avatar
/// stay as stored.
pub(crate) const STEP_MEMBER: &str = overwrite_member!();

/// How a member row put by a change overwrites the stored one
/// ([`Change::PutMember`](crate::domain::directory::Change::PutMember)): wholly but for what
/// the change keeps.
pub(crate) fn rewrite_member(kept: Kept) -> &'static str {
    match (kept.nickname, kept.avatar) {
        (false, false) => REWRITE_MEMBER,
        (false, true) => overwrite_member!("nickname"),
        (true, false) => overwrite_member!("avatar"),
        (true, true) => STEP_MEMBER,
    }
}

/// `AppStore`, `OrgStore`, `UserStore`, `DirectoryStore` and `Store` for `$store`, which
/// implements the traits of [`backend`](super::backend) and [`Batches`](super::batch::Batches)
/// (the directory's write batches, [`batch`](super::batch)).
macro_rules! impl_store {
    ($store:ty) => {
        const _: () = {
            use $crate::domain::access::OrgAccess;
            use $crate::domain::directory::{Directory, Staging};
            use $crate::domain::events::Actor;
            use $crate::domain::values::{OrgId, Role, Source, TeamId, UserId};
            use $crate::store::backend::{Backend, BackendDirectory, BackendOrgs, BackendUsers};
            use $crate::store::batch::Batches;
            use $crate::store::{
                AppRecord, AppStore, ApplyBatch, ChangeChunks, DanglingReferences, DirectoryStore,
                LargeWrite, MemberDetails, MemberProfile, NewApp, NewOrg, NewUser, OrgCreation,
                OrgRecord, OrgStore, Store, StagedWrite, StoreResult, StoredMembers, TeamRecord,
                TokenRecord, UserRecord, UserStore, rows, shared,
            };
            use async_trait::async_trait;
            #[async_trait]
            impl AppStore for $store {
                async fn count_apps(&self) -> StoreResult<i64> {
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM apps")
                        .fetch_one(self.reads())
                        .await?)
                }

                async fn create_app(&self, app: NewApp, now: i64) -> StoreResult<()> {
                    sqlx::query(
                        "INSERT INTO apps (appid, name, org_id, secret_hash, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(app.appid)
                    .bind(app.name)
                    .bind(app.org_id)
                    .bind(app.secret_hash)
                    .bind(now)
                    .execute(self.writes())
                    .await?;
                    Ok(())
                }

                async fn app(&self, appid: &str) -> StoreResult<Option<AppRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT appid, org_id, secret_hash FROM apps WHERE appid = $1",
                    )
                    .bind(appid)
                    .fetch_optional(self.reads())
                    .await?)
                }

                async fn set_secret(&self, appid: &str, secret_hash: &[u8]) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query("UPDATE apps SET secret_hash = $1 WHERE appid = $2")
                        .bind(secret_hash)
                        .bind(appid)
                        .execute(&mut *tx)
                        .await?;
                    // A new secret also ends the current token.
                    sqlx::query("DELETE FROM tokens WHERE appid = $1")
                        .bind(appid)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn put_token(
                    &self,
                    appid: &str,
                    token_hash: &[u8],
                    expires_at: i64,
                ) -> StoreResult<()> {
                    sqlx::query(
                        "INSERT INTO tokens (appid, token_hash, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (appid) DO UPDATE SET token_hash = EXCLUDED.token_hash, \
                         expires_at = EXCLUDED.expires_at",
                    )
                    .bind(appid)
                    .bind(token_hash)
                    .bind(expires_at)
                    .execute(self.writes())
                    .await?;
                    Ok(())
                }

                async fn token(&self, token_hash: &[u8]) -> StoreResult<Option<TokenRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT t.appid, t.expires_at, a.org_id FROM tokens t \
                         JOIN apps a ON a.appid = t.appid WHERE t.token_hash = $1",
                    )
                    .bind(token_hash)
                    .fetch_optional(self.reads())
                    .await?)
                }
            }

            #[async_trait]
            impl OrgStore for $store {
                async fn create_org(&self, org: NewOrg, now: i64) -> StoreResult<OrgCreation> {
                    use {Role, Source};
                    let mut tx = self.begin_write().await?;
                    if let Some((user_id, most)) = org.creator {
                        if let Some(lock) = Self::LOCK_CREATOR {
                            sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
                        }
                        let created: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM orgs WHERE creator_user_id = $1",
                        )
                        .bind(user_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        if created >= most {
                            return Ok(OrgCreation::CreatorLimitReached);
                        }
                    }
                    let org_id: OrgId = sqlx::query_scalar(Self::INSERT_ORG)
                        .bind(org.name)
                        .bind(org.plan.as_str())
                        .bind(org.admin_seats)
                        .bind(org.creator.map(|(user, _)| user))
                        .bind(org.creator_appid)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                    let team_id: TeamId = sqlx::query_scalar(
                        "INSERT INTO teams (org_id, version) VALUES ($1, 0) RETURNING id",
                    )
                    .bind(org_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if let Some((user_id, _)) = org.creator {
                        sqlx::query(
                            "INSERT INTO members (team_id, user_id, role, nickname, avatar, \
                             source, created_at, upd_at) \
                             VALUES ($1, $2, $3, '', '', $4, $5, $5)",
                        )
                        .bind(team_id)
                        .bind(user_id)
                        .bind(Role::Owner.code())
                        .bind(Source::Api.code())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    Ok(OrgCreation::Created { org_id, team_id })
                }

                async fn org(&self, org_id: OrgId) -> StoreResult<Option<OrgRecord>> {
                    let row: Option<rows::OrgRow> = sqlx::query_as(
                        "SELECT o.id AS org_id, t.id AS team_id, o.name, o.plan, o.phone, \
                         o.creator_appid, o.creator_user_id, \
                         COALESCE(u.nickname, '') AS creator_name, \
                         COALESCE(u.avatar, '') AS creator_avatar \
                         FROM orgs o JOIN teams t ON t.org_id = o.id \
                         LEFT JOIN users u ON u.id = o.creator_user_id WHERE o.id = $1",
                    )
                    .bind(org_id)
                    .fetch_optional(self.reads())
                    .await?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn org_access(&self, org_id: OrgId) -> StoreResult<Option<OrgAccess>> {
                    Ok(self.org(org_id).await?.map(|org| org.access))
                }

                async fn team(&self, team_id: TeamId) -> StoreResult<Option<TeamRecord>> {
                    let row: Option<rows::TeamRow> = sqlx::query_as(shared::TEAM_BY_ID)
                        .bind(team_id)
                        .fetch_optional(self.reads())
                        .await?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn team_ids(&self) -> StoreResult<Vec<TeamId>> {
                    Ok(sqlx::query_scalar("SELECT id FROM teams ORDER BY id")
                        .fetch_all(self.reads())
                        .await?)
                }

                async fn team_appid(&self, org_id: OrgId) -> StoreResult<Option<String>> {
                    Ok(sqlx::query_scalar(
                        "SELECT appid FROM apps WHERE org_id = $1 \
                         ORDER BY created_at, appid LIMIT 1",
                    )
                    .bind(org_id)
                    .fetch_optional(self.reads())
                    .await?)
                }
            }

            #[async_trait]
            impl UserStore for $store {
                async fn register_user(
                    &self,
                    appid: &str,
                    user: NewUser<'_>,
                    now: i64,
                ) -> StoreResult<UserRecord> {
                    Self::register_one(self, appid, user, now).await
                }

                async fn user_by_openid(
                    &self,
                    appid: &str,
                    openid: &str,
                ) -> StoreResult<Option<UserRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT u.id, u.respondent_id, u.nickname, u.avatar FROM app_users a \
                         JOIN users u ON u.id = a.user_id WHERE a.appid = $1 AND a.openid = $2",
                    )
                    .bind(appid)
                    .bind(openid)
                    .fetch_optional(self.reads())
                    .await?)
                }

                async fn user(&self, user_id: UserId) -> StoreResult<Option<UserRecord>> {
                    Ok(sqlx::query_as(
                        "SELECT id, respondent_id, nickname, avatar FROM users WHERE id = $1",
                    )
                    .bind(user_id)
                    .fetch_optional(self.reads())
                    .await?)
                }

                async fn user_registered_by(
                    &self,
                    user_id: UserId,
                    appid: &str,
                    org_id: Option<OrgId>,
                ) -> StoreResult<bool> {
                    let row: Option<(i32,)> = sqlx::query_as(
                        "SELECT 1 FROM app_users JOIN apps ON apps.appid = app_users.appid \
                         WHERE app_users.user_id = $1 AND (apps.appid = $2 OR apps.org_id = $3) \
                         LIMIT 1",
                    )
                    .bind(user_id)
                    .bind(appid)
                    .bind(org_id)
                    .fetch_optional(self.reads())
                    .await?;
                    Ok(row.is_some())
                }

                async fn update_user(
                    &self,
                    appid: &str,
                    openid: &str,
                    nickname: Option<&str>,
                    avatar: Option<&str>,
                ) -> StoreResult<Option<UserId>> {
                    // Only the fields given are written, in the statement that finds the user,
                    // so that concurrent updates of different fields all stand.
                    Ok(sqlx::query_scalar(
                        "UPDATE users SET nickname = COALESCE($1, nickname), \
                         avatar = COALESCE($2, avatar) WHERE id = \
                         (SELECT user_id FROM app_users WHERE appid = $3 AND openid = $4) \
                         RETURNING id",
                    )
                    .bind(nickname)
                    .bind(avatar)
                    .bind(appid)
                    .bind(openid)
                    .fetch_optional(self.writes())
                    .await?)
                }

                async fn member_profiles(
                    &self,
                    team_id: TeamId,
                    user_ids: &[UserId],
                ) -> StoreResult<Vec<MemberProfile>> {
                    if user_ids.is_empty() {
                        return Ok(Vec::new());
                    }
                    Self::profiles(self, team_id, user_ids).await
                }

                async fn member_details(
                    &self,
                    team_id: TeamId,
                    user_id: UserId,
                ) -> StoreResult<Option<MemberDetails>> {
                    let row: Option<rows::MemberDetailsRow> = sqlx::query_as(
                        "SELECT role, nickname, avatar FROM members \
                         WHERE team_id = $1 AND user_id = $2",
                    )
                    .bind(team_id)
                    .bind(user_id)
                    .fetch_optional(self.reads())
                    .await?;
                    row.map(TryInto::try_into).transpose()
                }

                async fn app_user_ids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>> {
                    Self::openids(self, appid).await
                }

                async fn register_users(
                    &self,
                    appid: &str,
                    users: &[NewUser<'_>],
                    now: i64,
                ) -> StoreResult<Vec<UserId>> {
                    Self::register_many(self, appid, users, now).await
                }

                async fn member_states(&self, team_id: TeamId) -> StoreResult<Option<StoredMembers>> {
                    let mut tx = <Self as BackendDirectory>::begin_settled(self, team_id).await?;
                    let version: Option<i64> =
                        sqlx::query_scalar("SELECT version FROM teams WHERE id = $1")
                            .bind(team_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let Some(version) = version else {
                        return Ok(None);
                    };
                    let states = Self::member_rows(&mut tx, team_id).await?;
                    tx.commit().await?;
                    Ok(Some(StoredMembers { version, states }))
                }

                fn registrations_at_once(&self) -> usize {
                    <Self as BackendUsers>::REGISTRATIONS_AT_ONCE
                }
            }

            #[async_trait]
            impl DirectoryStore for $store {
                async fn load_directory(&self, team_id: TeamId) -> StoreResult<Option<Directory>> {
                    // One snapshot for every read: the rows are the ones of the version read
                    // with them.
                    let mut tx = <Self as BackendDirectory>::begin_settled(self, team_id).await?;
                    let team: Option<rows::TeamRow> = sqlx::query_as(shared::TEAM_BY_ID)
                        .bind(team_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(team) = team.map(TryInto::try_into).transpose()? else {
                        return Ok(None);
                    };
                    let size = sqlx::query_as(shared::DIRECTORY_SIZE)
                        .bind(team_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let mut builder = rows::directory_builder(team, size);
                    Self::read_directory(&mut tx, team_id, &mut builder).await?;
                    tx.commit().await?;
                    Ok(Some(builder.finish()))
                }

                async fn begin_batch(&self) -> StoreResult<Box<dyn ApplyBatch>> {
                    Ok(<$store as Batches>::batch(Backend::begin_batch(self).await?))
                }

                async fn begin_large_batch(&self) -> StoreResult<Box<dyn ApplyBatch>> {
                    Ok(<$store as Batches>::batch(self.begin_large_write().await?))
                }

                async fn stage(
                    &self,
                    write: LargeWrite,
                    staging: Staging,
                    chunks: &mut dyn ChangeChunks,
                    actor: &Actor,
                ) -> StoreResult<Option<Box<dyn StagedWrite>>> {
                    BackendDirectory::stage(self, write, staging, chunks, actor).await
                }
            }

            #[async_trait]
            impl Store for $store {
                fn change_stamp(&self) -> Option<u64> {
                    Backend::change_stamp(self)
                }

                fn write_wait(&self) -> std::time::Duration {
                    // The writing pool was opened with the wait as its acquire timeout.
                    self.writes().options().get_acquire_timeout()
                }

                fn pool_use(&self) -> Vec<crate::metrics::PoolUse> {
                    let of = |pool: &'static str, connections: &sqlx::Pool<_>| crate::metrics::PoolUse {
                        pool,
                        open: connections.size(),
                        idle: connections.num_idle(),
                    };
                    let (reads, writes) = (self.reads(), self.writes());
                    if std::ptr::eq(reads, writes) {
                        vec![of("shared", reads)]
                    } else {
                        vec![of("reads", reads), of("writes", writes)]
                    }
                }

                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(self.reads()).await?;
                    Ok(())
                }

                async fn dangling_references(&self) -> StoreResult<Vec<DanglingReferences>> {
                    let rows: Vec<rows::DanglingRow> = sqlx::query_as(shared::DANGLING_REFERENCES)
                        .fetch_all(self.reads())
                        .await?;
                    rows.into_iter().map(TryInto::try_into).collect()
                }
            }
        };
    };
}

pub(crate) use impl_store;
