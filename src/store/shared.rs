//! The storage traits implemented once for both backends, with the statements both run as they
//! are (SQLite accepts PostgreSQL's `$1` placeholders). What differs is asked of the backend
//! through [`Backend`](super::backend::Backend).
//!
//! The implementation is a macro expanded for each backend's store type, so that each
//! expansion is checked and compiled against its own driver's concrete types (sqlx code generic
//! over the database needs an encode and decode bound for every type bound or read).

use sqlx::{Database, Encode, Type};

use super::{NewUser, StoreError, UserRecord};
use crate::domain::directory::Group;
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

/// The failure of a change set, with a unique index's refusal answered as
/// [`StoreError::Conflict`]: the copy the change set was decided on missed a row (one written
/// behind the service's back), so it is reloaded and the change set decided again, and the
/// rules then refuse it as they should (PostgreSQL's `apply_error` does so for its writes
/// already; this gives SQLite's the same answer).
pub(crate) fn behind_a_row(error: StoreError) -> StoreError {
    match &error {
        StoreError::Database(database)
            if matches!(&**database, sqlx::Error::Database(refusal)
                if refusal.kind() == sqlx::error::ErrorKind::UniqueViolation) =>
        {
            tracing::warn!(%error, "directory write refused by a unique index; reloading");
            StoreError::Conflict
        }
        _ => error,
    }
}

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

/// Each change of an [`ApplyBatch`](super::ApplyBatch) runs under this savepoint, so that a
/// refused or failed one leaves the others standing. A change that stands is not released at
/// once: its savepoint ends with the next change's ([`NEXT_SAVEPOINT`]) or with the commit,
/// which saves a round trip per change.
pub(crate) const SAVEPOINT: &str = "SAVEPOINT apply";
/// The end of the last change, which stands, and the savepoint of the next, in one round trip.
pub(crate) const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT apply; SAVEPOINT apply";
/// How a member row put by a change overwrites the stored one
/// ([`Change::PutMember`](crate::domain::directory::Change::PutMember)): wholly.
pub(crate) const REWRITE_MEMBER: &str = " ON CONFLICT (team_id, user_id) DO UPDATE SET \
     role = excluded.role, nickname = excluded.nickname, avatar = excluded.avatar, \
     source = excluded.source, upd_at = excluded.upd_at";
/// How a member row stepped into or out of a group overwrites the stored one
/// ([`Change::StepMember`](crate::domain::directory::Change::StepMember)): its name and avatar
/// stay as stored.
pub(crate) const STEP_MEMBER: &str = " ON CONFLICT (team_id, user_id) DO UPDATE SET \
     role = excluded.role, source = excluded.source, upd_at = excluded.upd_at";
/// Undo the change begun at the savepoint and end the savepoint, in one round trip.
pub(crate) const UNDO: &str = "ROLLBACK TO SAVEPOINT apply; RELEASE SAVEPOINT apply";
/// Take `$2` more event numbers of team `$1`, inside a write that holds the team (a write in
/// chunks takes them once it knows how many it wrote).
pub(crate) const TAKE_EVENT_NUMBERS: &str =
    "UPDATE teams SET event_seq = event_seq + $2 WHERE id = $1";

/// `AppStore`, `OrgStore`, `UserStore`, `DirectoryStore` and `Store` for `$store`, which
/// implements the traits of [`backend`](super::backend).
macro_rules! impl_store {
    ($store:ty) => {
        const _: () = {
            use $crate::domain::access::OrgAccess;
            use $crate::domain::directory::{Change, Directory, Staging};
            use $crate::domain::events::{Actor, Draft};
            use $crate::domain::sync::MemberState;
            use $crate::domain::values::{OrgId, Role, Source, TeamId, UserId};
            use $crate::store::backend::{
                Backend, BackendDirectory, BackendOrgs, BackendUsers, Tx, WriteStart,
            };
            use $crate::store::{
                AppRecord, AppStore, Applied, ApplyBatch, ChangeChunks, DanglingReferences, DirectoryStore, LargeWrite,
                MemberDetails,
                MemberProfile, NewApp, NewOrg, NewUser, OrgCreation, OrgRecord, OrgStore, Store,
                StagedWrite, StoreError, StoreResult, TeamRecord, TokenRecord, UserRecord, UserStore, apply,
                rows, shared,
            };
            use $crate::store::apply::ChangeWriter;
            use $crate::store::scim::ScimWrite;
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
                    openid: &str,
                    nickname: &str,
                    avatar: &str,
                    now: i64,
                ) -> StoreResult<UserRecord> {
                    let user = NewUser {
                        openid,
                        nickname,
                        avatar,
                    };
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
                    nickname: &str,
                    avatar: &str,
                ) -> StoreResult<bool> {
                    let done = sqlx::query(
                        "UPDATE users SET nickname = $1, avatar = $2 WHERE id = \
                         (SELECT user_id FROM app_users WHERE appid = $3 AND openid = $4)",
                    )
                    .bind(nickname)
                    .bind(avatar)
                    .bind(appid)
                    .bind(openid)
                    .execute(self.writes())
                    .await?;
                    Ok(done.rows_affected() == 1)
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

                async fn member_states(
                    &self,
                    team_id: TeamId,
                ) -> StoreResult<Vec<(UserId, MemberState)>> {
                    Self::member_rows(self, team_id).await
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
                    let mut tx = self.begin_snapshot().await?;
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
                    Ok(Batch::boxed(Backend::begin_batch(self).await?))
                }

                async fn begin_large_batch(&self) -> StoreResult<Box<dyn ApplyBatch>> {
                    Ok(Batch::boxed(self.begin_large_write().await?))
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

            async fn undo(tx: &mut Tx<$store>) -> StoreResult<()> {
                sqlx::raw_sql(shared::UNDO).execute(&mut **tx).await?;
                Ok(())
            }

            /// [`ApplyBatch`] on this backend. `tx` is `None` once a failure left the
            /// transaction in an unknown state: every later call fails, and so does the commit.
            /// `open`: the last change stands and its savepoint is not yet released.
            struct Batch {
                tx: Option<Tx<$store>>,
                open: bool,
                known: <$store as BackendDirectory>::Known,
            }

            impl Batch {
                /// A batch in `tx`, which holds nothing yet.
                fn boxed(tx: Tx<$store>) -> Box<dyn ApplyBatch> {
                    Box::new(Batch { tx: Some(tx), open: false, known: Default::default() })
                }
            }

            #[async_trait]
            impl ApplyBatch for Batch {
                async fn apply(
                    &mut self,
                    team_id: TeamId,
                    expected_version: i64,
                    changes: &[Change],
                    (actor, drafts): (&Actor, &[Draft]),
                    scim: Option<&ScimWrite>,
                    now: i64,
                ) -> StoreResult<Applied> {
                    if changes.is_empty() && scim.is_none() {
                        return Ok(Applied { created: Vec::new(), version: expected_version, registered: None });
                    }
                    let mut tx = self.tx.take().ok_or(StoreError::BatchFailed)?;
                    let savepoint = if self.open { shared::NEXT_SAVEPOINT } else { shared::SAVEPOINT };
                    // From here on the last change's savepoint is released, or the batch failed.
                    self.open = false;
                    let start = WriteStart {
                        savepoint,
                        team_id,
                        expected: expected_version,
                        events: drafts.len(),
                        now,
                    };
                    let start = match scim {
                        // A SCIM write alone leaves the directory and its version as they are.
                        Some(write) if changes.is_empty() => {
                            // It may register a user the batch does not know of.
                            <$store>::forget(&mut tx, &mut self.known).await?;
                            sqlx::raw_sql(savepoint).execute(&mut *tx).await?;
                            let written = <$store>::write_scim(&mut tx, team_id, write, now).await;
                            match written {
                                Ok(_) => self.open = true,
                                Err(_) => undo(&mut tx).await?,
                            }
                            self.tx = Some(tx);
                            return written.map(|registered| Applied {
                                created: Vec::new(),
                                version: expected_version,
                                registered,
                            });
                        }
                        Some(write) => {
                            <$store>::start_scim_apply(tx, start, write, &mut self.known).await?
                        }
                        None => {
                            let start = <$store>::start_apply(tx, start, &mut self.known);
                            start.await?.map(|writer| (writer, None)).map_err(|tx| (tx, StoreError::Conflict))
                        }
                    };
                    let (mut writer, registered) = match start {
                        Ok(started) => started,
                        Err((mut tx, refusal)) => {
                            undo(&mut tx).await?;
                            self.tx = Some(tx);
                            return Err(refusal);
                        }
                    };
                    // The changes name the user the SCIM write just registered as
                    // `REGISTERED_USER`.
                    let named;
                    let (changes, drafts) = match registered {
                        Some(user_id) => {
                            named = (
                                $crate::domain::directory::with_registered(changes, user_id),
                                $crate::domain::events::with_registered(drafts, user_id),
                            );
                            (named.0.as_slice(), named.1.as_slice())
                        }
                        None => (changes, drafts),
                    };
                    let written = async {
                        let created = apply::write_changes(&mut writer, changes).await?;
                        apply::write_events(&mut writer, actor, drafts, changes, &created).await?;
                        writer.flush().await?;
                        Ok(created)
                    }
                    .await;
                    let finished =
                        <$store>::finish_apply(writer, written.is_ok(), &mut self.known).await;
                    let (mut tx, version) = match finished {
                        Ok(finished) => finished,
                        // The batch is lost ([`ApplyBatch::lost`]); the write's own failure is
                        // its answer.
                        Err(error) => return Err(written.err().unwrap_or(error)),
                    };
                    match written {
                        Ok(_) => self.open = true,
                        Err(_) => undo(&mut tx).await?,
                    }
                    self.tx = Some(tx);
                    written
                        .map(|created| Applied { created, version, registered })
                        .map_err(shared::behind_a_row)
                }

                async fn apply_chunks(
                    &mut self,
                    write: LargeWrite,
                    chunks: &mut dyn ChangeChunks,
                    actor: &Actor,
                ) -> StoreResult<Applied> {
                    let LargeWrite { team_id, expected_version, now } = write;
                    let mut tx = self.tx.take().ok_or(StoreError::BatchFailed)?;
                    let savepoint = if self.open { shared::NEXT_SAVEPOINT } else { shared::SAVEPOINT };
                    // No event number is taken yet: how many events there are is known at the end.
                    // The check is asked (a sync may have no chunk to send it with), and what the
                    // batch knew is forgotten: the sync creates groups and numbers events after.
                    <$store>::forget(&mut tx, &mut self.known).await?;
                    self.open = false;
                    let start = WriteStart {
                        savepoint,
                        team_id,
                        expected: expected_version,
                        events: 0,
                        now,
                    };
                    let start = <$store>::start_apply(tx, start, &mut self.known);
                    let mut writer =
                        match start.await? {
                            Ok(writer) => writer,
                            Err(mut tx) => {
                                undo(&mut tx).await?;
                                self.tx = Some(tx);
                                return Err(StoreError::Conflict);
                            }
                        };
                    let first_seq = apply::ChangeWriter::last_seq(&writer) + 1;
                    let written = apply::write_chunks(&mut writer, first_seq, chunks, actor).await;
                    let (mut tx, version) =
                        <$store>::finish_apply(writer, false, &mut self.known).await?;
                    let written = match written {
                        Ok((created, events)) => sqlx::query(shared::TAKE_EVENT_NUMBERS)
                            .bind(team_id)
                            .bind(events)
                            .execute(&mut *tx)
                            .await
                            .map(|_| created)
                            .map_err(StoreError::from),
                        Err(error) => Err(error),
                    };
                    match written {
                        Ok(_) => self.open = true,
                        Err(_) => undo(&mut tx).await?,
                    }
                    self.tx = Some(tx);
                    written.map(|created| Applied { created, version, registered: None })
                }

                fn lost(&self) -> bool {
                    self.tx.is_none()
                }

                async fn commit(self: Box<Self>) -> StoreResult<()> {
                    let Batch { tx, mut known, .. } = *self;
                    let mut tx = tx.ok_or(StoreError::BatchFailed)?;
                    <$store>::before_commit(&mut tx, &mut known).await?;
                    tx.commit().await?;
                    Ok(())
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
