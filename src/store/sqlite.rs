//! The embedded SQLite backend, the default.
//!
//! One file, WAL journal, a busy timeout so that the command line and the server can share the
//! file, foreign keys on. Writes go through a pool of exactly one connection and start with
//! `BEGIN IMMEDIATE`, so writers queue in this process instead of failing with `SQLITE_BUSY`;
//! reads use a separate pool and see the last committed state.

mod scim;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    AppRecord, AppStore, Applied, DANGLING_REFERENCES, DIRECTORY_SIZE, DirectoryStore,
    MemberDetails, MemberProfile, NewApp, NewOrg, NewUser, OrgCreation, OrgRecord, OrgStore, Store,
    StoreError, StoreResult, TeamRecord, TokenRecord, UserRecord, UserStore, add_members,
    dangling_lines, directory_builder, role_of,
};
use crate::domain::access::{OrgAccess, Plan};
use crate::domain::directory::{Change, Directory, Group, GroupRef};
use crate::domain::sync::MemberState;
use crate::domain::values::{GroupId, OrgId, Role, Source, TeamId, UserId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// First org id handed out: org ids are large integers, as in the reference service.
const FIRST_ORG_ID: i64 = 60_000_000_001;
/// First user id handed out.
const FIRST_USER_ID: i64 = 100_000_001;
/// First respondent id handed out.
const FIRST_RESPONDENT_ID: i64 = 500_000_001;

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore { reader, writer })
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn plan_of(raw: &str) -> StoreResult<Plan> {
    Plan::parse(raw).ok_or_else(|| StoreError::Database(format!("unknown plan {raw:?}")))
}

fn user_of(row: &SqliteRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user_id: row.try_get("id")?,
        respondent_id: row.try_get("respondent_id")?,
        nickname: row.try_get("nickname")?,
        avatar: row.try_get("avatar")?,
    })
}

/// Rows per chunk of a [`bulk_read`].
const BULK_CHUNK: i64 = 100_000;

/// A read of up to millions of rows (a whole directory, every user of an app); callers run it in
/// a read transaction, so that the chunks see one state. Through the driver, each row is a hand-off between threads that costs
/// microseconds; instead SQLite puts each chunk of rows into one JSON array of arrays, decoded
/// in one pass at a fraction of the cost (docs/SYNC-BENCHMARKS.md has the figures).
///
/// `sql` takes `?1` = `key`, `?2` = the cursor (rows strictly after it, in cursor order) and
/// `?3` = the chunk size, and selects two columns: the chunk as JSON and its last cursor (NULL
/// for an empty chunk).
async fn bulk_read<T, K, C>(
    connection: &mut sqlx::SqliteConnection,
    sql: &'static str,
    key: K,
    after: C,
) -> StoreResult<Vec<T>>
where
    T: serde::de::DeserializeOwned + Send,
    K: Clone + Send + for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
    C: Send + Unpin + for<'q> sqlx::Encode<'q, Sqlite> + for<'r> sqlx::Decode<'r, Sqlite>,
    C: sqlx::Type<Sqlite>,
{
    let mut rows = Vec::new();
    bulk_read_each(connection, sql, key, after, |chunk| rows.extend(chunk)).await?;
    Ok(rows)
}

/// [`bulk_read`], handing each chunk to `each` instead of collecting the rows.
async fn bulk_read_each<T, K, C>(
    connection: &mut sqlx::SqliteConnection,
    sql: &'static str,
    key: K,
    mut after: C,
    mut each: impl FnMut(Vec<T>) + Send,
) -> StoreResult<()>
where
    T: serde::de::DeserializeOwned + Send,
    K: Clone + Send + for<'q> sqlx::Encode<'q, Sqlite> + sqlx::Type<Sqlite>,
    C: Send + Unpin + for<'q> sqlx::Encode<'q, Sqlite> + for<'r> sqlx::Decode<'r, Sqlite>,
    C: sqlx::Type<Sqlite>,
{
    loop {
        let (json, last): (String, Option<C>) = sqlx::query_as(sql)
            .bind(key.clone())
            .bind(after)
            .bind(BULK_CHUNK)
            .fetch_one(&mut *connection)
            .await?;
        let Some(last) = last else { return Ok(()) };
        each(decode_chunk(&json)?);
        after = last;
    }
}

fn decode_chunk<T: serde::de::DeserializeOwned>(json: &str) -> StoreResult<Vec<T>> {
    serde_json::from_str(json).map_err(|error| StoreError::Database(error.to_string()))
}

const TEAM_QUERY: &str = "SELECT t.id AS team_id, t.version, o.id AS org_id, o.name, o.plan, \
     o.admin_seats, o.creator_appid FROM teams t JOIN orgs o ON o.id = t.org_id";

fn team_of(row: &SqliteRow) -> StoreResult<TeamRecord> {
    Ok(TeamRecord {
        access: OrgAccess {
            org_id: row.try_get("org_id")?,
            team_id: row.try_get("team_id")?,
            plan: plan_of(row.try_get("plan")?)?,
            creator_appid: row.try_get("creator_appid")?,
        },
        name: row.try_get("name")?,
        admin_seats: row.try_get("admin_seats")?,
        version: row.try_get("version")?,
    })
}

/// Rows per multi-row statement: bulk writes (a sync of a million members) go in statements
/// of this many rows, far below SQLite's limit of 32,766 parameters per statement.
const BATCH_ROWS: usize = 500;

/// `(?, ?, ?), (?, ?, ?)` for `rows` rows of `columns` values.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

fn json_ids(ids: &[i64]) -> StoreResult<String> {
    serde_json::to_string(ids).map_err(|error| StoreError::Database(error.to_string()))
}

fn resolve(created: &[GroupId], group: &GroupRef) -> GroupId {
    match group {
        GroupRef::Existing(id) => *id,
        GroupRef::New(index) => created[*index],
    }
}

/// Insert a run of `CreateGroup` changes with ids given here (the writer is the only one, so
/// the next id is known), so that one statement inserts many groups.
async fn insert_groups(
    tx: &mut Transaction<'static, Sqlite>,
    team_id: TeamId,
    batch: &[Change],
    next_group_id: &mut GroupId,
    created: &mut Vec<GroupId>,
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
         is_valid, created_at, upd_at) VALUES {}",
        placeholders(batch.len(), 10)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let mut id = *next_group_id;
    for change in batch {
        if let Change::CreateGroup { parent, group } = change {
            query = query
                .bind(id)
                .bind(team_id)
                .bind(resolve(created, parent))
                .bind(group.source.code())
                .bind(group.remote_id.clone())
                .bind(group.name.clone())
                .bind(group.order)
                .bind(true)
                .bind(group.created_at)
                .bind(group.upd_at);
            created.push(id);
            id += 1;
        }
    }
    query.execute(&mut **tx).await?;
    *next_group_id = id;
    Ok(())
}

async fn update_group(
    tx: &mut Transaction<'static, Sqlite>,
    team_id: TeamId,
    group: &Group,
    parent_id: GroupId,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE groups SET parent_id = ?, source = ?, remote_id = ?, name = ?, \
         sort_order = ?, is_valid = ?, upd_at = ? WHERE id = ? AND team_id = ?",
    )
    .bind(parent_id)
    .bind(group.source.code())
    .bind(group.remote_id.clone())
    .bind(group.name.clone())
    .bind(group.order)
    .bind(group.is_valid)
    .bind(group.upd_at)
    .bind(group.id)
    .bind(team_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Upsert a run of members and replace their memberships, a few statements per run.
async fn put_members(
    tx: &mut Transaction<'static, Sqlite>,
    team_id: TeamId,
    batch: &[Change],
    created: &[GroupId],
    now: i64,
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO members (team_id, user_id, role, nickname, avatar, source, created_at, \
         upd_at) VALUES {} ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role, \
         nickname = excluded.nickname, avatar = excluded.avatar, source = excluded.source, \
         upd_at = excluded.upd_at",
        placeholders(batch.len(), 8)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let mut users = Vec::with_capacity(batch.len());
    let mut pairs: Vec<(UserId, GroupId)> = Vec::new();
    for change in batch {
        if let Change::PutMember { member, groups } = change {
            query = query
                .bind(team_id)
                .bind(member.user_id)
                .bind(member.role.code())
                .bind(member.nickname.clone())
                .bind(member.avatar.clone())
                .bind(member.source.code())
                .bind(now)
                .bind(now);
            users.push(member.user_id);
            pairs.extend(groups.iter().map(|g| (member.user_id, resolve(created, g))));
        }
    }
    query.execute(&mut **tx).await?;
    sqlx::query(
        "DELETE FROM memberships WHERE team_id = ? \
         AND user_id IN (SELECT value FROM json_each(?))",
    )
    .bind(team_id)
    .bind(json_ids(&users)?)
    .execute(&mut **tx)
    .await?;
    for chunk in pairs.chunks(BATCH_ROWS) {
        let sql = format!(
            "INSERT OR IGNORE INTO memberships (team_id, user_id, group_id) VALUES {}",
            placeholders(chunk.len(), 3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (user_id, group_id) in chunk {
            query = query.bind(team_id).bind(*user_id).bind(*group_id);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

#[async_trait]
impl AppStore for SqliteStore {
    async fn count_apps(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM apps")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn create_app(&self, app: NewApp, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO apps (appid, name, org_id, secret_hash, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(app.appid)
        .bind(app.name)
        .bind(app.org_id)
        .bind(app.secret_hash)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn app(&self, appid: &str) -> StoreResult<Option<AppRecord>> {
        let row = sqlx::query("SELECT appid, org_id, secret_hash FROM apps WHERE appid = ?")
            .bind(appid.to_owned())
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(AppRecord {
                appid: row.try_get("appid")?,
                org_id: row.try_get("org_id")?,
                secret_hash: row.try_get("secret_hash")?,
            })
        })
        .transpose()
    }

    async fn set_secret(&self, appid: &str, secret_hash: &[u8]) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE apps SET secret_hash = ? WHERE appid = ?")
            .bind(secret_hash.to_vec())
            .bind(appid.to_owned())
            .execute(&mut *tx)
            .await?;
        // A new secret also ends the current token.
        sqlx::query("DELETE FROM tokens WHERE appid = ?")
            .bind(appid.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_token(&self, appid: &str, token_hash: &[u8], expires_at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (appid, token_hash, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (appid) DO UPDATE SET token_hash = excluded.token_hash, \
             expires_at = excluded.expires_at",
        )
        .bind(appid.to_owned())
        .bind(token_hash.to_vec())
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn token(&self, token_hash: &[u8]) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.appid, t.expires_at, a.org_id FROM tokens t \
             JOIN apps a ON a.appid = t.appid WHERE t.token_hash = ?",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(TokenRecord {
                appid: row.try_get("appid")?,
                org_id: row.try_get("org_id")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl OrgStore for SqliteStore {
    async fn create_org(&self, org: NewOrg, now: i64) -> StoreResult<OrgCreation> {
        let mut tx = self.begin_write().await?;
        if let Some((user_id, most)) = org.creator {
            let created: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE creator_user_id = ?")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if created >= most {
                return Ok(OrgCreation::CreatorLimitReached);
            }
        }
        let org_id: OrgId = sqlx::query_scalar(
            "INSERT INTO orgs (id, name, plan, admin_seats, creator_user_id, creator_appid, \
             created_at) VALUES ((SELECT COALESCE(MAX(id) + 1, ?) FROM orgs), ?, ?, ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(FIRST_ORG_ID)
        .bind(org.name)
        .bind(org.plan.as_str())
        .bind(org.admin_seats)
        .bind(org.creator.map(|(user, _)| user))
        .bind(org.creator_appid)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let team_id: TeamId =
            sqlx::query_scalar("INSERT INTO teams (org_id, version) VALUES (?, 0) RETURNING id")
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await?;
        if let Some((user_id, _)) = org.creator {
            sqlx::query(
                "INSERT INTO members (team_id, user_id, role, nickname, avatar, source, \
                 created_at, upd_at) VALUES (?, ?, ?, '', '', ?, ?, ?)",
            )
            .bind(team_id)
            .bind(user_id)
            .bind(Role::Owner.code())
            .bind(Source::Api.code())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(OrgCreation::Created { org_id, team_id })
    }

    async fn org(&self, org_id: OrgId) -> StoreResult<Option<OrgRecord>> {
        let row = sqlx::query(
            "SELECT o.id AS org_id, t.id AS team_id, o.name, o.plan, o.phone, o.creator_appid, \
             o.creator_user_id, COALESCE(u.nickname, '') AS creator_name, \
             COALESCE(u.avatar, '') AS creator_avatar \
             FROM orgs o JOIN teams t ON t.org_id = o.id \
             LEFT JOIN users u ON u.id = o.creator_user_id WHERE o.id = ?",
        )
        .bind(org_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(OrgRecord {
                access: OrgAccess {
                    org_id: row.try_get("org_id")?,
                    team_id: row.try_get("team_id")?,
                    plan: plan_of(row.try_get("plan")?)?,
                    creator_appid: row.try_get("creator_appid")?,
                },
                name: row.try_get("name")?,
                phone: row.try_get("phone")?,
                creator_id: row.try_get("creator_user_id")?,
                creator_name: row.try_get("creator_name")?,
                creator_avatar: row.try_get("creator_avatar")?,
            })
        })
        .transpose()
    }

    async fn org_access(&self, org_id: OrgId) -> StoreResult<Option<OrgAccess>> {
        Ok(self.org(org_id).await?.map(|org| org.access))
    }

    async fn team(&self, team_id: TeamId) -> StoreResult<Option<TeamRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{TEAM_QUERY} WHERE t.id = ?")))
            .bind(team_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(team_of).transpose()
    }

    async fn team_ids(&self) -> StoreResult<Vec<TeamId>> {
        Ok(sqlx::query_scalar("SELECT id FROM teams ORDER BY id")
            .fetch_all(&self.reader)
            .await?)
    }

    async fn team_appid(&self, org_id: OrgId) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT appid FROM apps WHERE org_id = ? ORDER BY created_at, appid LIMIT 1",
        )
        .bind(org_id)
        .fetch_optional(&self.reader)
        .await?)
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn register_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: &str,
        avatar: &str,
        now: i64,
    ) -> StoreResult<UserRecord> {
        let mut tx = self.begin_write().await?;
        let existing: Option<UserId> =
            sqlx::query_scalar("SELECT user_id FROM app_users WHERE appid = ? AND openid = ?")
                .bind(appid.to_owned())
                .bind(openid.to_owned())
                .fetch_optional(&mut *tx)
                .await?;
        let row = match existing {
            Some(user_id) => {
                sqlx::query(
                    "UPDATE users SET nickname = ?, avatar = ? WHERE id = ? \
                     RETURNING id, respondent_id, nickname, avatar",
                )
                .bind(nickname.to_owned())
                .bind(avatar.to_owned())
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) VALUES \
                     ((SELECT COALESCE(MAX(id) + 1, ?) FROM users), \
                      (SELECT COALESCE(MAX(respondent_id) + 1, ?) FROM users), ?, ?, ?) \
                     RETURNING id, respondent_id, nickname, avatar",
                )
                .bind(FIRST_USER_ID)
                .bind(FIRST_RESPONDENT_ID)
                .bind(nickname.to_owned())
                .bind(avatar.to_owned())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO app_users (appid, openid, user_id) VALUES (?, ?, ?)")
                    .bind(appid.to_owned())
                    .bind(openid.to_owned())
                    .bind(row.try_get::<i64, _>("id")?)
                    .execute(&mut *tx)
                    .await?;
                row
            }
        };
        let user = user_of(&row)?;
        tx.commit().await?;
        Ok(user)
    }

    async fn user_by_openid(&self, appid: &str, openid: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.respondent_id, u.nickname, u.avatar FROM app_users a \
             JOIN users u ON u.id = a.user_id WHERE a.appid = ? AND a.openid = ?",
        )
        .bind(appid.to_owned())
        .bind(openid.to_owned())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(user_of).transpose()
    }

    async fn user(&self, user_id: UserId) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query("SELECT id, respondent_id, nickname, avatar FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(user_of).transpose()
    }

    async fn update_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: &str,
        avatar: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE users SET nickname = ?, avatar = ? WHERE id = \
             (SELECT user_id FROM app_users WHERE appid = ? AND openid = ?)",
        )
        .bind(nickname.to_owned())
        .bind(avatar.to_owned())
        .bind(appid.to_owned())
        .bind(openid.to_owned())
        .execute(&self.writer)
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
        let ids = json_ids(user_ids)?;
        let rows = sqlx::query(
            "SELECT u.id, u.respondent_id, \
             CASE WHEN m.nickname <> '' THEN m.nickname ELSE u.nickname END AS name, \
             CASE WHEN m.avatar <> '' THEN m.avatar ELSE u.avatar END AS avatar \
             FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = ? AND m.user_id IN (SELECT value FROM json_each(?))",
        )
        .bind(team_id)
        .bind(ids)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MemberProfile {
                    user_id: row.try_get("id")?,
                    respondent_id: row.try_get("respondent_id")?,
                    name: row.try_get("name")?,
                    avatar: row.try_get("avatar")?,
                })
            })
            .collect()
    }

    async fn member_details(
        &self,
        team_id: TeamId,
        user_id: UserId,
    ) -> StoreResult<Option<MemberDetails>> {
        let row = sqlx::query(
            "SELECT role, nickname, avatar FROM members WHERE team_id = ? AND user_id = ?",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(MemberDetails {
                role: role_of(row.try_get("role")?)?,
                nickname: row.try_get("nickname")?,
                avatar: row.try_get("avatar")?,
            })
        })
        .transpose()
    }

    async fn app_user_ids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>> {
        let mut tx = self.reader.begin().await?;
        bulk_read(
            &mut tx,
            "SELECT json_group_array(json_array(openid, user_id)), max(openid) FROM \
             (SELECT openid, user_id FROM app_users WHERE appid = ?1 AND openid > ?2 \
             ORDER BY openid LIMIT ?3)",
            appid.to_owned(),
            String::new(),
        )
        .await
    }

    async fn register_users(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>> {
        let mut tx = self.begin_write().await?;
        let (mut next_id, mut next_respondent): (i64, i64) = {
            let row = sqlx::query(
                "SELECT COALESCE(MAX(id) + 1, ?) AS id, \
                 COALESCE(MAX(respondent_id) + 1, ?) AS respondent FROM users",
            )
            .bind(FIRST_USER_ID)
            .bind(FIRST_RESPONDENT_ID)
            .fetch_one(&mut *tx)
            .await?;
            (row.try_get("id")?, row.try_get("respondent")?)
        };
        let mut registered = Vec::with_capacity(users.len());
        for chunk in users.chunks(BATCH_ROWS) {
            let openids =
                serde_json::to_string(&chunk.iter().map(|u| &u.openid).collect::<Vec<_>>())
                    .map_err(|error| StoreError::Database(error.to_string()))?;
            let known: HashMap<String, UserId> = sqlx::query(
                "SELECT openid, user_id FROM app_users WHERE appid = ? \
                 AND openid IN (SELECT value FROM json_each(?))",
            )
            .bind(appid.to_owned())
            .bind(openids)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("openid")?, row.try_get("user_id")?)))
            .collect::<StoreResult<_>>()?;
            let mut fresh = Vec::new();
            let mut fresh_ids: HashMap<&str, UserId> = HashMap::new();
            for user in chunk {
                if let Some(user_id) = known.get(user.openid) {
                    registered.push(*user_id);
                } else if let Some(user_id) = fresh_ids.get(user.openid) {
                    registered.push(*user_id);
                } else {
                    fresh.push((user, next_id));
                    fresh_ids.insert(user.openid, next_id);
                    registered.push(next_id);
                    next_id += 1;
                }
            }
            if fresh.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) VALUES {}",
                placeholders(fresh.len(), 5)
            );
            let mut insert_users = sqlx::query(sqlx::AssertSqlSafe(sql));
            let sql = format!(
                "INSERT INTO app_users (appid, openid, user_id) VALUES {}",
                placeholders(fresh.len(), 3)
            );
            let mut insert_links = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (user, user_id) in &fresh {
                insert_users = insert_users
                    .bind(*user_id)
                    .bind(next_respondent)
                    .bind(user.nickname)
                    .bind(user.avatar)
                    .bind(now);
                insert_links = insert_links.bind(appid).bind(user.openid).bind(*user_id);
                next_respondent += 1;
            }
            insert_users.execute(&mut *tx).await?;
            insert_links.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(registered)
    }

    async fn member_states(&self, team_id: TeamId) -> StoreResult<Vec<(UserId, MemberState)>> {
        let mut tx = self.reader.begin().await?;
        let rows: Vec<(UserId, String, String, i64)> = bulk_read(
            &mut tx,
            "SELECT json_group_array(json_array(user_id, nickname, avatar, source)), \
             max(user_id) FROM (SELECT user_id, nickname, avatar, source FROM members \
             WHERE team_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3)",
            team_id,
            0_i64,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(user_id, nickname, avatar, source)| {
                let source = Source::from_code(source);
                (
                    user_id,
                    MemberState {
                        nickname,
                        avatar,
                        source,
                    },
                )
            })
            .collect())
    }
}

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn load_directory(&self, team_id: TeamId) -> StoreResult<Option<Directory>> {
        // One read transaction: the reads see the same committed state.
        let mut tx = self.reader.begin().await?;
        let team = sqlx::query(sqlx::AssertSqlSafe(format!("{TEAM_QUERY} WHERE t.id = ?")))
            .bind(team_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(team) = team.as_ref().map(team_of).transpose()? else {
            return Ok(None);
        };
        let size = sqlx::query_as(DIRECTORY_SIZE)
            .bind(team_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut builder = directory_builder(team, size);
        type GroupRow = (GroupId, GroupId, i64, String, String, i64, i64, i64, i64);
        bulk_read_each(
            &mut tx,
            "SELECT json_group_array(json_array(id, parent_id, source, remote_id, name, \
             sort_order, is_valid, created_at, upd_at)), max(id) FROM (SELECT * FROM groups \
             WHERE team_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3)",
            team_id,
            0_i64,
            |chunk: Vec<GroupRow>| {
                for (id, parent_id, source, remote_id, name, order, valid, created_at, upd_at) in
                    chunk
                {
                    builder.add_group(Group {
                        id,
                        parent_id,
                        source: Source::from_code(source),
                        remote_id,
                        name,
                        order,
                        is_valid: valid != 0,
                        created_at,
                        upd_at,
                    });
                }
            },
        )
        .await?;
        // Members chunk by chunk: the roles of the next members after the cursor, then the
        // memberships of exactly those members.
        let mut after: UserId = 0;
        loop {
            let (json, last): (String, Option<UserId>) = sqlx::query_as(
                "SELECT json_group_array(json_array(user_id, role)), max(user_id) FROM \
                 (SELECT user_id, role FROM members WHERE team_id = ?1 AND user_id > ?2 \
                 ORDER BY user_id LIMIT ?3)",
            )
            .bind(team_id)
            .bind(after)
            .bind(BULK_CHUNK)
            .fetch_one(&mut *tx)
            .await?;
            let Some(last) = last else { break };
            let roles = decode_chunk::<(UserId, i64)>(&json)?
                .into_iter()
                .map(|(user_id, role)| Ok((user_id, role_of(role)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            let json: String = sqlx::query_scalar(
                "SELECT json_group_array(json_array(user_id, group_id)) FROM memberships \
                 WHERE team_id = ?1 AND user_id > ?2 AND user_id <= ?3",
            )
            .bind(team_id)
            .bind(after)
            .bind(last)
            .fetch_one(&mut *tx)
            .await?;
            let mut memberships: Vec<(UserId, GroupId)> = decode_chunk(&json)?;
            memberships.sort_unstable();
            add_members(&mut builder, roles, &memberships);
            after = last;
        }
        tx.commit().await?;
        Ok(Some(builder.finish()))
    }

    async fn apply(
        &self,
        team_id: TeamId,
        expected_version: i64,
        changes: &[Change],
        now: i64,
    ) -> StoreResult<Applied> {
        let mut tx = self.begin_write().await?;
        // Check and bump the version, and learn the next group id, in one statement (each
        // statement is a round trip to the driver's thread, and writes are serialized); the
        // transaction is this process's only writer and rolls back on any failure below.
        let bumped: Option<(i64, GroupId)> = sqlx::query_as(
            "UPDATE teams SET version = version + 1 WHERE id = ? AND version = ? \
             RETURNING version, MAX(COALESCE((SELECT seq FROM sqlite_sequence \
             WHERE name = 'groups'), 0), COALESCE((SELECT MAX(id) FROM groups), 0)) + 1",
        )
        .bind(team_id)
        .bind(expected_version)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((version, mut next_group_id)) = bumped else {
            return Err(StoreError::Conflict);
        };
        let mut created: Vec<GroupId> = Vec::new();
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let kind = std::mem::discriminant(first);
            // A run holds changes of one kind and names each member once, so that applying it
            // at once equals applying its changes in order.
            let mut members_in_run = HashSet::new();
            let run = rest
                .iter()
                .take(BATCH_ROWS)
                .take_while(|change| {
                    std::mem::discriminant(*change) == kind
                        && match change {
                            Change::PutMember { member, .. } => {
                                members_in_run.insert(member.user_id)
                            }
                            Change::RemoveMember(user_id) => members_in_run.insert(*user_id),
                            _ => true,
                        }
                })
                .count();
            let (batch, tail) = rest.split_at(run);
            rest = tail;
            match first {
                Change::CreateGroup { .. } => {
                    insert_groups(&mut tx, team_id, batch, &mut next_group_id, &mut created)
                        .await?;
                }
                Change::UpdateGroup { .. } => {
                    for change in batch {
                        if let Change::UpdateGroup { group, parent } = change {
                            update_group(&mut tx, team_id, group, resolve(&created, parent))
                                .await?;
                        }
                    }
                }
                Change::PutMember { .. } => {
                    put_members(&mut tx, team_id, batch, &created, now).await?
                }
                Change::RemoveMember(_) => {
                    let ids: Vec<UserId> = batch
                        .iter()
                        .filter_map(|change| match change {
                            Change::RemoveMember(user_id) => Some(*user_id),
                            _ => None,
                        })
                        .collect();
                    sqlx::query(
                        "DELETE FROM members WHERE team_id = ? \
                         AND user_id IN (SELECT value FROM json_each(?))",
                    )
                    .bind(team_id)
                    .bind(json_ids(&ids)?)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Applied { created, version })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn dangling_references(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query_as(DANGLING_REFERENCES)
            .fetch_all(&self.reader)
            .await?;
        Ok(dangling_lines(rows))
    }
}
