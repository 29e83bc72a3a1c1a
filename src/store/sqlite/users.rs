//! Users on SQLite: the store numbers new users itself (the writing connection is the only
//! one), registers a batch in chunks of multi-row statements, and reads every openid of an app
//! or every member of a team in JSON chunks ([`bulk_read`]).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{BATCH_ROWS, SqliteStore, bulk_read, json_ids};
use crate::domain::sync::MemberState;
use crate::domain::values::{Avatar, Nickname, Source, TeamId, UserId};
use crate::store::backend::{Backend, BackendUsers, Tx};
use crate::store::in_flight::WriteConn;
use crate::store::rows::profile_columns;
use crate::store::scim::ScimUserRef;
use crate::store::{MemberProfile, NewUser, StoreResult, UserRecord, shared};

/// The next user id: one past the highest, or the first handed out. The store is the only
/// writer, so a user inserted with it is the one of the highest id. Alone in its subquery, the
/// aggregate reads the last entry of the table; two aggregates in one query would scan the
/// whole table (every user of every tenant).
macro_rules! next_user_id {
    () => {
        "(SELECT COALESCE(MAX(id) + 1, 100000001) FROM users)"
    };
}

/// The next respondent id, as [`next_user_id`] numbers users (from the index on
/// `respondent_id`).
macro_rules! next_respondent_id {
    () => {
        "(SELECT COALESCE(MAX(respondent_id) + 1, 500000001) FROM users)"
    };
}
pub(super) use {next_respondent_id, next_user_id};

/// The next user id and respondent id, read once by a batch of registrations that then numbers
/// its users itself.
const NEXT_USER_IDS: &str = concat!(
    "SELECT ",
    next_user_id!(),
    " AS id, ",
    next_respondent_id!(),
    " AS respondent"
);

#[async_trait]
impl BackendUsers for SqliteStore {
    /// One writing connection: a second registration would wait for the first.
    const REGISTRATIONS_AT_ONCE: usize = 1;

    async fn register_one(
        &self,
        appid: &str,
        user: NewUser<'_>,
        now: i64,
    ) -> StoreResult<UserRecord> {
        let mut tx = self.begin_write().await?;
        let existing: Option<UserId> =
            sqlx::query_scalar("SELECT user_id FROM app_users WHERE appid = $1 AND openid = $2")
                .bind(appid)
                .bind(user.openid)
                .fetch_optional(&mut *tx)
                .await?;
        let registered: UserRecord = match existing {
            Some(user_id) => {
                sqlx::query_as(
                    "UPDATE users SET nickname = $1, avatar = $2 WHERE id = $3 \
                     RETURNING id, respondent_id, nickname, avatar",
                )
                .bind(user.nickname)
                .bind(user.avatar)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?
            }
            None => {
                let registered = shared::insert_user(Self::INSERT_USER, user, now)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO app_users (appid, openid, user_id) VALUES ($1, $2, $3)")
                    .bind(appid)
                    .bind(user.openid)
                    .bind(registered.user_id)
                    .execute(&mut *tx)
                    .await?;
                registered
            }
        };
        tx.commit().await?;
        Ok(registered)
    }

    const INSERT_USER: &'static str = concat!(
        "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) VALUES (",
        next_user_id!(),
        ", ",
        next_respondent_id!(),
        ", $1, $2, $3) RETURNING id, respondent_id, nickname, avatar"
    );

    async fn register_many(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>> {
        let mut tx = self.begin_large_write().await?;
        let row = sqlx::query(NEXT_USER_IDS).fetch_one(&mut *tx).await?;
        let (mut next_id, mut next_respondent): (i64, i64) =
            (row.try_get("id")?, row.try_get("respondent")?);
        // The transaction holds the write lock from its start (`BEGIN IMMEDIATE`): nobody
        // registers meanwhile, so one look-up tells every user of the batch that exists.
        let openids: Vec<&str> = users.iter().map(|user| user.openid).collect();
        let known: HashMap<String, UserId> = sqlx::query_as(
            "SELECT openid, user_id FROM app_users WHERE appid = $1 \
             AND openid IN (SELECT value FROM json_each($2))",
        )
        .bind(appid)
        .bind(json_ids(&openids)?)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        // The first mention of each new openid decides its profile.
        let mut registered = Vec::with_capacity(users.len());
        let mut fresh = Vec::new();
        let mut fresh_ids: HashMap<&str, UserId> = HashMap::new();
        for user in users {
            if let Some(user_id) = known.get(user.openid) {
                registered.push(*user_id);
            } else if let Some(user_id) = fresh_ids.get(user.openid) {
                registered.push(*user_id);
            } else {
                let user_id = UserId::new(next_id);
                fresh.push((user, user_id, next_respondent));
                fresh_ids.insert(user.openid, user_id);
                registered.push(user_id);
                next_id += 1;
                next_respondent += 1;
            }
        }
        // Each query is handed to the driver's thread and the next made meanwhile.
        let mut conn = WriteConn::new(tx);
        for chunk in fresh.chunks(BATCH_ROWS) {
            let mut insert_users = QueryBuilder::<Sqlite>::new(
                "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) ",
            );
            insert_users.push_values(chunk, |mut row, (user, user_id, respondent_id)| {
                row.push_bind(*user_id)
                    .push_bind(*respondent_id)
                    .push_bind(user.nickname)
                    .push_bind(user.avatar)
                    .push_bind(now);
            });
            conn.send(&mut insert_users, true).await?;
            let mut insert_app_users =
                QueryBuilder::<Sqlite>::new("INSERT INTO app_users (appid, openid, user_id) ");
            insert_app_users.push_values(chunk, |mut row, (user, user_id, _)| {
                row.push_bind(appid)
                    .push_bind(user.openid)
                    .push_bind(*user_id);
            });
            conn.send(&mut insert_app_users, true).await?;
        }
        conn.finish().await?.commit().await?;
        Ok(registered)
    }

    async fn profiles(&self, team: TeamId, users: &[UserId]) -> StoreResult<Vec<MemberProfile>> {
        Ok(sqlx::query_as(concat!(
            "SELECT u.id, u.respondent_id, ",
            profile_columns!(),
            " FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND m.user_id IN (SELECT value FROM json_each($2))",
        ))
        .bind(team)
        .bind(json_ids(users)?)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn openids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>> {
        let mut tx = self.reader.begin().await?;
        let mut rows = Vec::new();
        bulk_read(
            &mut tx,
            "SELECT json_group_array(json_array(openid, user_id)), max(openid) FROM \
             (SELECT openid, user_id FROM app_users WHERE appid = ?1 AND openid > ?2 \
             ORDER BY openid LIMIT ?3)",
            appid.to_owned(),
            String::new(),
            |chunk| {
                rows.extend(chunk);
                Ok(())
            },
        )
        .await?;
        Ok(rows)
    }

    async fn member_rows(
        tx: &mut Tx<Self>,
        team_id: TeamId,
    ) -> StoreResult<Vec<(UserId, MemberState)>> {
        let mut rows = Vec::new();
        bulk_read(
            tx,
            "SELECT json_group_array(json_array(user_id, nickname, avatar, source)), \
             max(user_id) FROM (SELECT user_id, nickname, avatar, source FROM members \
             WHERE team_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3)",
            team_id,
            0_i64,
            |chunk: Vec<(UserId, String, String, i64)>| {
                rows.extend(
                    chunk
                        .into_iter()
                        .map(|(user_id, nickname, avatar, source)| {
                            let source = Source::from_code(source);
                            (
                                user_id,
                                MemberState {
                                    nickname: Nickname::from_stored(nickname),
                                    avatar: Avatar::from_stored(avatar),
                                    source,
                                },
                            )
                        }),
                );
                Ok(())
            },
        )
        .await?;
        Ok(rows)
    }

    async fn scim_users_among(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<ScimUserRef>> {
        Ok(sqlx::query_as(
            "SELECT user_id, scim_id FROM scim_users \
             WHERE team_id = ?1 AND user_id IN (SELECT value FROM json_each(?2)) \
             UNION ALL SELECT user_id, scim_id FROM scim_users \
             WHERE team_id = ?1 AND scim_id IN (SELECT value FROM json_each(?3))",
        )
        .bind(team_id)
        .bind(json_ids(user_ids)?)
        .bind(json_ids(scim_ids)?)
        .fetch_all(&self.reader)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSettings;

    /// `EXPLAIN QUERY PLAN` names a full pass over a table `SCAN`, and a look-up `SEARCH`.
    #[tokio::test]
    async fn numbering_new_users_reads_no_whole_table() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("users.db").display());
        let store = SqliteStore::open(&url, &StoreSettings::default())
            .await
            .expect("open");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {NEXT_USER_IDS}"
        )))
        .fetch_all(store.reads())
        .await
        .expect("plan");
        let steps: Vec<&str> = plan.iter().map(|step| step.3.as_str()).collect();
        assert!(
            steps.iter().filter(|s| s.contains("users")).count() == 2
                && steps.iter().all(|s| !s.starts_with("SCAN users")),
            "{steps:?}"
        );
    }
}
