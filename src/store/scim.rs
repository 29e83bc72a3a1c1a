//! Storage of SCIM provisioning (§12): bearer tokens per directory, the app that registers the
//! users SCIM creates, and the SCIM attributes of those users.
//!
//! Groups need nothing of their own: a SCIM group is a directory group, written through
//! [`DirectoryStore::apply`](super::DirectoryStore::apply) like any other.

use async_trait::async_trait;

use super::StoreResult;
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
    /// The directory a token serves.
    async fn scim_token_team(&self, token_hash: &[u8]) -> StoreResult<Option<TeamId>>;
    /// The app that registers the SCIM users of `team_id`, if it has one yet.
    async fn scim_app(&self, team_id: TeamId) -> StoreResult<Option<String>>;
    /// Make `appid` the SCIM app of `team_id` unless it has one; returns the one it has.
    async fn put_scim_app(&self, team_id: TeamId, appid: &str) -> StoreResult<String>;
    /// Every SCIM user of `team_id`, ascending by user id.
    async fn scim_users(&self, team_id: TeamId) -> StoreResult<Vec<ScimUserRecord>>;
    /// The SCIM users of `team_id` that are among `user_ids` or whose SCIM id is among
    /// `scim_ids`, as `(user id, SCIM id)`: a lookup of the ids one request names.
    async fn scim_user_ids(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<(UserId, String)>>;
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
    /// Insert or overwrite a SCIM user; `false` (and nothing written) when another user of the
    /// directory has the same `user_name_key`.
    async fn put_scim_user(&self, team_id: TeamId, user: &ScimUserRecord) -> StoreResult<bool>;
    /// Returns `false` when there was no such user.
    async fn delete_scim_user(&self, team_id: TeamId, user_id: UserId) -> StoreResult<bool>;
}
