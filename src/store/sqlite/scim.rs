//! [`ScimStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, json_ids};
use crate::domain::values::{TeamId, UserId};
use crate::store::backend::Backend;
use crate::store::scim::{ScimStore, ScimTokenRecord, ScimUserRecord};
use crate::store::{StoreError, StoreResult};

const USER_COLUMNS: &str =
    "user_id, scim_id, user_name_key, external_id, active, resource, created_at, updated_at";

fn scim_user_of(row: &SqliteRow) -> StoreResult<ScimUserRecord> {
    Ok(ScimUserRecord {
        user_id: row.try_get(0)?,
        scim_id: row.try_get(1)?,
        user_name_key: row.try_get(2)?,
        external_id: row.try_get(3)?,
        active: row.try_get(4)?,
        resource: row.try_get(5)?,
        created_at: row.try_get(6)?,
        updated_at: row.try_get(7)?,
    })
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

#[async_trait]
impl ScimStore for SqliteStore {
    async fn create_scim_token(
        &self,
        team_id: TeamId,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO scim_tokens (team_id, token_hash, created_at) VALUES (?, ?, ?) \
             RETURNING id",
        )
        .bind(team_id)
        .bind(token_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(id)
    }

    async fn scim_tokens(&self, team_id: TeamId) -> StoreResult<Vec<ScimTokenRecord>> {
        let rows: Vec<(i64, TeamId, i64)> = sqlx::query_as(
            "SELECT id, team_id, created_at FROM scim_tokens WHERE team_id = ? ORDER BY id",
        )
        .bind(team_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, team_id, created_at)| ScimTokenRecord {
                id,
                team_id,
                created_at,
            })
            .collect())
    }

    async fn revoke_scim_token(&self, id: i64) -> StoreResult<Option<ScimTokenRecord>> {
        let row: Option<(i64, TeamId, i64)> = sqlx::query_as(
            "DELETE FROM scim_tokens WHERE id = ? RETURNING id, team_id, created_at",
        )
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|(id, team_id, created_at)| ScimTokenRecord {
            id,
            team_id,
            created_at,
        }))
    }

    async fn scim_token_team(&self, token_hash: &[u8]) -> StoreResult<Option<TeamId>> {
        let row: Option<(TeamId,)> =
            sqlx::query_as("SELECT team_id FROM scim_tokens WHERE token_hash = ?")
                .bind(token_hash)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(team_id,)| team_id))
    }

    async fn scim_app(&self, team_id: TeamId) -> StoreResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT appid FROM scim_apps WHERE team_id = ?")
                .bind(team_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|(appid,)| appid))
    }

    async fn put_scim_app(&self, team_id: TeamId, appid: &str) -> StoreResult<String> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO scim_apps (team_id, appid) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(team_id)
            .bind(appid)
            .execute(&mut *tx)
            .await?;
        let (appid,): (String,) = sqlx::query_as("SELECT appid FROM scim_apps WHERE team_id = ?")
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(appid)
    }

    async fn scim_users(&self, team_id: TeamId) -> StoreResult<Vec<ScimUserRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE team_id = ? ORDER BY user_id"
        )))
        .bind(team_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(scim_user_of).collect()
    }

    async fn scim_user_ids(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<(UserId, String)>> {
        if user_ids.is_empty() && scim_ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT user_id, scim_id FROM scim_users WHERE team_id = ?1 \
             AND user_id IN (SELECT value FROM json_each(?2)) \
             UNION SELECT user_id, scim_id FROM scim_users WHERE team_id = ?1 \
             AND scim_id IN (SELECT value FROM json_each(?3))",
        )
        .bind(team_id)
        .bind(json_ids(user_ids)?)
        .bind(json_ids(scim_ids)?)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn scim_user(
        &self,
        team_id: TeamId,
        scim_id: &str,
    ) -> StoreResult<Option<ScimUserRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE team_id = ? AND scim_id = ?"
        )))
        .bind(team_id)
        .bind(scim_id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(scim_user_of).transpose()
    }

    async fn scim_user_by_name(
        &self,
        team_id: TeamId,
        user_name_key: &str,
    ) -> StoreResult<Option<ScimUserRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM scim_users WHERE team_id = ? AND user_name_key = ?"
        )))
        .bind(team_id)
        .bind(user_name_key)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(scim_user_of).transpose()
    }

    async fn put_scim_user(&self, team_id: TeamId, user: &ScimUserRecord) -> StoreResult<bool> {
        let written = sqlx::query(
            "INSERT INTO scim_users (team_id, user_id, scim_id, user_name_key, external_id, active, \
             resource, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET user_name_key = excluded.user_name_key, \
             external_id = excluded.external_id, active = excluded.active, \
             resource = excluded.resource, updated_at = excluded.updated_at",
        )
        .bind(team_id)
        .bind(user.user_id)
        .bind(&user.scim_id)
        .bind(&user.user_name_key)
        .bind(&user.external_id)
        .bind(user.active)
        .bind(&user.resource)
        .bind(user.created_at)
        .bind(user.updated_at)
        .execute(&self.writer)
        .await;
        match written {
            Ok(_) => Ok(true),
            Err(error) if is_unique_violation(&error) => Ok(false),
            Err(error) => Err(StoreError::from(error)),
        }
    }

    async fn delete_scim_user(&self, team_id: TeamId, user_id: UserId) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM scim_users WHERE team_id = ? AND user_id = ?")
            .bind(team_id)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
