//! The PostgreSQL backend, for several `contactsd` processes on one database.
//!
//! This module owns the PostgreSQL schema (`migrations/postgres`, embedded and applied by
//! [`PostgresStore::open`]; sqlx's migrator takes an advisory lock, so processes starting together
//! migrate once) and the SQL behind every storage trait. It behaves exactly like the SQLite
//! backend: same ids (sequences starting where SQLite's counters start), same rows, same answers.
//! What differs is how concurrency is made safe, because here writers are not queued behind one
//! connection but run at once, from any number of processes.
//!
//! # Isolation
//!
//! Every transaction runs at PostgreSQL's default, READ COMMITTED, except the directory load.
//!
//! * **Directory writes** ([`DirectoryStore::apply`]). Every write to a team's groups, members and
//!   memberships goes through `apply` (or through `create_org`, which creates the team in the
//!   same transaction, so nobody else can see it yet), and `apply` starts by locking the team's
//!   row with `SELECT version ... FOR UPDATE`. So all writers of one team, in every process, are
//!   serialized by that row lock, and each one commits its rows and the bumped version together.
//!   Hence a team's version names exactly one state of its rows. The service decides a change on
//!   a copy of the directory taken at some version (cycles, depth, remote-id uniqueness, seats:
//!   invariants over many rows that no single-row constraint can express); `apply` writes it only
//!   if, holding the lock, the version is still that one. When it is, the rows are exactly the
//!   ones the decision was made on and no one can change them before the commit, so every tree
//!   invariant that held on the copy holds in the database. When another writer committed first,
//!   the waiting `SELECT ... FOR UPDATE` returns the new committed version (READ COMMITTED
//!   re-reads a row that was updated while waiting for its lock), the versions differ and the
//!   caller gets [`StoreError::Conflict`] without anything written, reloads and decides again.
//!   SERIALIZABLE would add nothing but retries: the lock already orders the writers, and
//!   REPEATABLE READ would turn the same situation into a serialization failure instead of a
//!   clean version mismatch.
//! * **Directory reads** ([`DirectoryStore::load_directory`]) read the team row, the counts, the
//!   groups, and the members with their memberships in one `REPEATABLE READ READ ONLY`
//!   transaction: one snapshot for every query, so the rows match the version they are tagged with even while writers commit. Such a
//!   transaction takes no locks and never blocks a writer.
//! * **Org creation** locks the creating user's row (`FOR NO KEY UPDATE`) before counting the
//!   orgs that user created, so two concurrent creations by one user cannot both pass the limit.
//!   `NO KEY UPDATE` rather than `UPDATE` because it still excludes a second creator, but does not
//!   block foreign-key checks (`FOR KEY SHARE`) of directory writes that add that user somewhere.
//! * **User registration** is idempotent under races: the `(appid, openid)` row is inserted with
//!   `ON CONFLICT DO NOTHING` in the same transaction as the new user, which waits for a
//!   concurrent insert of the same openid to finish. The loser of a race rolls back (so no user
//!   row is left without its openid) and finds the winner's row on its retry; a bulk registration
//!   deletes the user rows it lost in the same transaction instead, and inserts in openid order so
//!   that two overlapping batches cannot deadlock. A lost race leaves a gap in the user ids,
//!   which, like any id gap after a rollback, nothing depends on.
//! * **Tokens** are one row per app, replaced with an upsert, so the newest token supersedes the
//!   older one for every process at once.
//!
//! # Errors
//!
//! Inside `apply`, the failures that mean "the database disagrees with the copy the change was
//! decided on" (a unique violation, a serialization failure, a deadlock) answer
//! [`StoreError::Conflict`], so the service reloads and decides again (a bounded number of
//! times). With the team lock held none of them should occur; if one does, the cached copy was
//! wrong and a reload is the cure. Everything else is [`StoreError::Database`].

mod scim;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};

use super::{
    AppRecord, AppStore, Applied, DANGLING_REFERENCES, DIRECTORY_SIZE, DirectoryStore,
    MemberDetails, MemberProfile, NewApp, NewOrg, NewUser, OrgCreation, OrgRecord, OrgStore, Store,
    StoreError, StoreResult, TeamRecord, TokenRecord, UserRecord, UserStore, dangling_lines,
    decode_rows, directory_builder, role_of,
};
use crate::domain::access::{OrgAccess, Plan};
use crate::domain::directory::{Change, Directory, Group, GroupRef, Placement};
use crate::domain::sync::MemberState;
use crate::domain::values::{GroupId, OrgId, Role, Source, TeamId, UserId};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How often [`UserStore::register_user`] tries again after losing a race for the same openid.
/// The winner's row is committed by the time the loser learns it lost, so one retry suffices.
const REGISTER_ATTEMPTS: usize = 3;

/// SQLSTATEs that, inside [`DirectoryStore::apply`], mean "decide again": unique_violation,
/// serialization_failure, deadlock_detected.
const RETRYABLE_IN_APPLY: [&str; 3] = ["23505", "40001", "40P01"];

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect with at most `pool_size` connections and bring the schema up to date.
    pub async fn open(url: &str, pool_size: u32) -> StoreResult<PostgresStore> {
        let options = PgConnectOptions::from_str(url)?.application_name("contactsd");
        // One plain connection first: when the server is unreachable or refuses us, a pool only
        // says that it timed out, while this says why.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(PostgresStore { pool })
    }
}

/// An error inside `apply`: see the module documentation.
fn apply_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(database) = &error
        && database
            .code()
            .is_some_and(|code| RETRYABLE_IN_APPLY.contains(&code.as_ref()))
    {
        tracing::warn!(%error, "directory write refused by the database; reloading");
        return StoreError::Conflict;
    }
    error.into()
}

fn plan_of(raw: &str) -> StoreResult<Plan> {
    Plan::parse(raw).ok_or_else(|| StoreError::Database(format!("unknown plan {raw:?}")))
}

fn group_of(row: &PgRow) -> StoreResult<Group> {
    Ok(Group {
        id: row.try_get("id")?,
        parent_id: row.try_get("parent_id")?,
        source: Source::from_code(row.try_get("source")?),
        remote_id: row.try_get("remote_id")?,
        name: row.try_get("name")?,
        order: row.try_get("sort_order")?,
        is_valid: row.try_get("is_valid")?,
        created_at: row.try_get("created_at")?,
        upd_at: row.try_get("upd_at")?,
    })
}

fn user_of(row: &PgRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user_id: row.try_get("id")?,
        respondent_id: row.try_get("respondent_id")?,
        nickname: row.try_get("nickname")?,
        avatar: row.try_get("avatar")?,
    })
}

const TEAM_BY_ID: &str = "SELECT t.id AS team_id, t.version, o.id AS org_id, o.name, o.plan, \
     o.admin_seats, o.creator_appid FROM teams t JOIN orgs o ON o.id = t.org_id WHERE t.id = $1";

fn team_of(row: &PgRow) -> StoreResult<TeamRecord> {
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

/// The openid at 1-based place `n` of an array bound with `WITH ORDINALITY`.
fn named<'a>(openids: &[&'a str], n: i64) -> StoreResult<&'a str> {
    usize::try_from(n - 1)
        .ok()
        .and_then(|index| openids.get(index).copied())
        .ok_or_else(|| StoreError::Database(format!("no openid at place {n} of the batch")))
}

/// Changes per multi-row statement in [`DirectoryStore::apply`]: a sync of a large directory
/// writes its rows a batch at a time rather than one statement per row.
const BATCH_ROWS: usize = 1000;

fn resolve(created: &[GroupId], group: &GroupRef) -> GroupId {
    match group {
        GroupRef::Existing(id) => *id,
        GroupRef::New(index) => created[*index],
    }
}

/// How many changes from the start of `changes` are written together: a run of one kind, at most
/// [`BATCH_ROWS`], and for members cut before a user comes again (a multi-row upsert may not
/// touch a row twice, and the later change must replace the earlier one's groups, as it would
/// one statement at a time).
fn run_length(changes: &[Change]) -> usize {
    let kind = std::mem::discriminant(&changes[0]);
    let mut users = HashSet::new();
    changes
        .iter()
        .take(BATCH_ROWS)
        .take_while(|change| std::mem::discriminant(*change) == kind)
        .take_while(|change| match change {
            Change::PutMember { member, .. } => users.insert(member.user_id),
            _ => true,
        })
        .count()
}

/// Insert a run of `CreateGroup` changes in one statement. The ids are drawn from the groups'
/// sequence first (ascending, in the run's order), so that a group created later in the run can
/// name an earlier one as its parent. (`groups_id_seq` and `users_id_seq` are the sequences
/// PostgreSQL made for the identity columns; naming them, rather than asking
/// `pg_get_serial_sequence` in the query, keeps the lookup out of the per-row work.)
async fn insert_groups(
    tx: &mut Transaction<'static, Postgres>,
    team_id: TeamId,
    batch: &[Change],
    created: &mut Vec<GroupId>,
) -> StoreResult<()> {
    let mut ids: Vec<GroupId> = sqlx::query_scalar(
        "SELECT ARRAY(SELECT nextval('groups_id_seq') FROM generate_series(1, $1))",
    )
    .bind(batch.len() as i64)
    .fetch_one(&mut **tx)
    .await
    .map_err(apply_error)?;
    ids.sort_unstable();
    let mut parents = Vec::with_capacity(batch.len());
    let mut sources = Vec::with_capacity(batch.len());
    let mut remote_ids = Vec::with_capacity(batch.len());
    let mut names = Vec::with_capacity(batch.len());
    let mut orders = Vec::with_capacity(batch.len());
    let mut created_ats = Vec::with_capacity(batch.len());
    let mut upd_ats = Vec::with_capacity(batch.len());
    for (change, id) in batch.iter().zip(&ids) {
        if let Change::CreateGroup { parent, group } = change {
            parents.push(resolve(created, parent));
            sources.push(group.source.code());
            remote_ids.push(group.remote_id.clone());
            names.push(group.name.clone());
            orders.push(group.order);
            created_ats.push(group.created_at);
            upd_ats.push(group.upd_at);
            created.push(*id);
        }
    }
    sqlx::query(
        "INSERT INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
         is_valid, created_at, upd_at) \
         SELECT id, $1, parent_id, source, remote_id, name, sort_order, TRUE, created_at, upd_at \
         FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], \
         $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
         AS g (id, parent_id, source, remote_id, name, sort_order, created_at, upd_at)",
    )
    .bind(team_id)
    .bind(ids)
    .bind(parents)
    .bind(sources)
    .bind(remote_ids)
    .bind(names)
    .bind(orders)
    .bind(created_ats)
    .bind(upd_ats)
    .execute(&mut **tx)
    .await
    .map_err(apply_error)?;
    Ok(())
}

async fn update_group(
    tx: &mut Transaction<'static, Postgres>,
    team_id: TeamId,
    group: &Group,
    parent_id: GroupId,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE groups SET parent_id = $1, source = $2, remote_id = $3, name = $4, \
         sort_order = $5, is_valid = $6, upd_at = $7 WHERE id = $8 AND team_id = $9",
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
    .await
    .map_err(apply_error)?;
    Ok(())
}

/// Delete every membership of `users` in the team.
async fn delete_memberships(
    tx: &mut Transaction<'static, Postgres>,
    team_id: TeamId,
    users: Vec<UserId>,
) -> StoreResult<()> {
    // A join rather than `= ANY($2)`: without statistics (a table filled by this very sync)
    // the planner would scan the team's whole index range and filter it; the join looks each
    // user up in the primary key.
    sqlx::query(
        "DELETE FROM memberships m USING UNNEST($2::BIGINT[]) AS u (user_id) \
         WHERE m.team_id = $1 AND m.user_id = u.user_id",
    )
    .bind(team_id)
    .bind(users)
    .execute(&mut **tx)
    .await
    .map_err(apply_error)?;
    Ok(())
}

/// Upsert a run of members (no user twice, see [`run_length`]) and replace their memberships:
/// at most three statements per run.
async fn put_members(
    tx: &mut Transaction<'static, Postgres>,
    team_id: TeamId,
    batch: &[Change],
    created: &[GroupId],
    now: i64,
) -> StoreResult<()> {
    let mut users = Vec::with_capacity(batch.len());
    let mut roles = Vec::with_capacity(batch.len());
    let mut nicknames = Vec::with_capacity(batch.len());
    let mut avatars = Vec::with_capacity(batch.len());
    let mut sources = Vec::with_capacity(batch.len());
    let mut placed_users: Vec<UserId> = Vec::new();
    let mut placed_groups: Vec<GroupId> = Vec::new();
    for change in batch {
        if let Change::PutMember { member, groups } = change {
            users.push(member.user_id);
            roles.push(member.role.code());
            nicknames.push(member.nickname.clone());
            avatars.push(member.avatar.clone());
            sources.push(member.source.code());
            for group in groups {
                placed_users.push(member.user_id);
                placed_groups.push(resolve(created, group));
            }
        }
    }
    // Which of the users were members already: only their old memberships need deleting. In
    // a first sync none were, and the delete would be a join against a table this very
    // transaction is filling, which has no statistics yet and gets planned as a scan. A row
    // version that an upsert inserted has no xmax; one it updated carries the updater's.
    let replaced: Vec<Option<UserId>> = sqlx::query_scalar(
        "INSERT INTO members (team_id, user_id, role, nickname, avatar, source, created_at, \
         upd_at) \
         SELECT $1, user_id, role, nickname, avatar, source, $7, $7 \
         FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[]) \
         AS m (user_id, role, nickname, avatar, source) \
         ON CONFLICT (team_id, user_id) DO UPDATE SET role = EXCLUDED.role, \
         nickname = EXCLUDED.nickname, avatar = EXCLUDED.avatar, source = EXCLUDED.source, \
         upd_at = EXCLUDED.upd_at \
         RETURNING CASE WHEN xmax = 0 THEN NULL ELSE user_id END",
    )
    .bind(team_id)
    .bind(users)
    .bind(roles)
    .bind(nicknames)
    .bind(avatars)
    .bind(sources)
    .bind(now)
    .fetch_all(&mut **tx)
    .await
    .map_err(apply_error)?;
    let replaced: Vec<UserId> = replaced.into_iter().flatten().collect();
    if !replaced.is_empty() {
        delete_memberships(tx, team_id, replaced).await?;
    }
    if !placed_users.is_empty() {
        sqlx::query(
            "INSERT INTO memberships (team_id, user_id, group_id) \
             SELECT $1, user_id, group_id FROM UNNEST($2::BIGINT[], $3::BIGINT[]) \
             AS p (user_id, group_id) ON CONFLICT DO NOTHING",
        )
        .bind(team_id)
        .bind(placed_users)
        .bind(placed_groups)
        .execute(&mut **tx)
        .await
        .map_err(apply_error)?;
    }
    Ok(())
}

#[async_trait]
impl AppStore for PostgresStore {
    async fn count_apps(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM apps")
            .fetch_one(&self.pool)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn app(&self, appid: &str) -> StoreResult<Option<AppRecord>> {
        let row = sqlx::query("SELECT appid, org_id, secret_hash FROM apps WHERE appid = $1")
            .bind(appid.to_owned())
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE apps SET secret_hash = $1 WHERE appid = $2")
            .bind(secret_hash.to_vec())
            .bind(appid.to_owned())
            .execute(&mut *tx)
            .await?;
        // A new secret also ends the current token.
        sqlx::query("DELETE FROM tokens WHERE appid = $1")
            .bind(appid.to_owned())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_token(&self, appid: &str, token_hash: &[u8], expires_at: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (appid, token_hash, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (appid) DO UPDATE SET token_hash = EXCLUDED.token_hash, \
             expires_at = EXCLUDED.expires_at",
        )
        .bind(appid.to_owned())
        .bind(token_hash.to_vec())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token(&self, token_hash: &[u8]) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.appid, t.expires_at, a.org_id FROM tokens t \
             JOIN apps a ON a.appid = t.appid WHERE t.token_hash = $1",
        )
        .bind(token_hash.to_vec())
        .fetch_optional(&self.pool)
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
impl OrgStore for PostgresStore {
    async fn create_org(&self, org: NewOrg, now: i64) -> StoreResult<OrgCreation> {
        let mut tx = self.pool.begin().await?;
        if let Some((user_id, most)) = org.creator {
            // Serializes the count below among concurrent creations by this user.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            let created: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM orgs WHERE creator_user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if created >= most {
                return Ok(OrgCreation::CreatorLimitReached);
            }
        }
        let org_id: OrgId = sqlx::query_scalar(
            "INSERT INTO orgs (name, plan, admin_seats, creator_user_id, creator_appid, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(org.name)
        .bind(org.plan.as_str())
        .bind(org.admin_seats)
        .bind(org.creator.map(|(user, _)| user))
        .bind(org.creator_appid)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let team_id: TeamId =
            sqlx::query_scalar("INSERT INTO teams (org_id, version) VALUES ($1, 0) RETURNING id")
                .bind(org_id)
                .fetch_one(&mut *tx)
                .await?;
        if let Some((user_id, _)) = org.creator {
            sqlx::query(
                "INSERT INTO members (team_id, user_id, role, nickname, avatar, source, \
                 created_at, upd_at) VALUES ($1, $2, $3, '', '', $4, $5, $6)",
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
             LEFT JOIN users u ON u.id = o.creator_user_id WHERE o.id = $1",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
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
        let row = sqlx::query(TEAM_BY_ID)
            .bind(team_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(team_of).transpose()
    }

    async fn team_ids(&self) -> StoreResult<Vec<TeamId>> {
        Ok(sqlx::query_scalar("SELECT id FROM teams ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn team_appid(&self, org_id: OrgId) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT appid FROM apps WHERE org_id = $1 ORDER BY created_at, appid LIMIT 1",
        )
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn register_user(
        &self,
        appid: &str,
        openid: &str,
        nickname: &str,
        avatar: &str,
        now: i64,
    ) -> StoreResult<UserRecord> {
        for _ in 0..REGISTER_ATTEMPTS {
            let mut tx: Transaction<'static, Postgres> = self.pool.begin().await?;
            let existing = sqlx::query(
                "UPDATE users SET nickname = $1, avatar = $2 WHERE id = \
                 (SELECT user_id FROM app_users WHERE appid = $3 AND openid = $4) \
                 RETURNING id, respondent_id, nickname, avatar",
            )
            .bind(nickname.to_owned())
            .bind(avatar.to_owned())
            .bind(appid.to_owned())
            .bind(openid.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = existing {
                let user = user_of(&row)?;
                tx.commit().await?;
                return Ok(user);
            }
            let row = sqlx::query(
                "INSERT INTO users (nickname, avatar, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, respondent_id, nickname, avatar",
            )
            .bind(nickname.to_owned())
            .bind(avatar.to_owned())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let user = user_of(&row)?;
            // Waits for a concurrent insert of the same openid to commit or roll back.
            let claimed: Option<UserId> = sqlx::query_scalar(
                "INSERT INTO app_users (appid, openid, user_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (appid, openid) DO NOTHING RETURNING user_id",
            )
            .bind(appid.to_owned())
            .bind(openid.to_owned())
            .bind(user.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_some() {
                tx.commit().await?;
                return Ok(user);
            }
            // Another registration of this openid won: drop our user row and update theirs.
            tx.rollback().await?;
        }
        Err(StoreError::Database(format!(
            "registering openid {openid:?} for app {appid:?} kept racing"
        )))
    }

    async fn user_by_openid(&self, appid: &str, openid: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT u.id, u.respondent_id, u.nickname, u.avatar FROM app_users a \
             JOIN users u ON u.id = a.user_id WHERE a.appid = $1 AND a.openid = $2",
        )
        .bind(appid.to_owned())
        .bind(openid.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_of).transpose()
    }

    async fn user(&self, user_id: UserId) -> StoreResult<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT id, respondent_id, nickname, avatar FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
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
            "UPDATE users SET nickname = $1, avatar = $2 WHERE id = \
             (SELECT user_id FROM app_users WHERE appid = $3 AND openid = $4)",
        )
        .bind(nickname.to_owned())
        .bind(avatar.to_owned())
        .bind(appid.to_owned())
        .bind(openid.to_owned())
        .execute(&self.pool)
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
        let rows = sqlx::query(
            "SELECT u.id, u.respondent_id, \
             CASE WHEN m.nickname <> '' THEN m.nickname ELSE u.nickname END AS name, \
             CASE WHEN m.avatar <> '' THEN m.avatar ELSE u.avatar END AS avatar \
             FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND m.user_id = ANY($2)",
        )
        .bind(team_id)
        .bind(user_ids.to_vec())
        .fetch_all(&self.pool)
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
            "SELECT role, nickname, avatar FROM members WHERE team_id = $1 AND user_id = $2",
        )
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
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
        let rows = sqlx::query("SELECT openid, user_id FROM app_users WHERE appid = $1")
            .bind(appid.to_owned())
            .fetch(&self.pool);
        decode_rows(rows, |row| {
            Ok((row.try_get("openid")?, row.try_get("user_id")?))
        })
        .await
    }

    async fn register_users(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>> {
        // A fixed number of statements whatever the batch size (a directory sync may register
        // a million users at once). Rows name openids by their place in the bound array, so no
        // openid is copied or decoded.
        let mut tx = self.pool.begin().await?;
        let openids: Vec<&str> = users.iter().map(|user| user.openid).collect();
        let mut known: HashMap<&str, UserId> = HashMap::with_capacity(users.len());
        for row in sqlx::query(
            "SELECT o.n, a.user_id FROM app_users a \
             JOIN UNNEST($2::TEXT[]) WITH ORDINALITY AS o (openid, n) ON a.openid = o.openid \
             WHERE a.appid = $1",
        )
        .bind(appid)
        .bind(&openids[..])
        .fetch_all(&mut *tx)
        .await?
        {
            known.insert(named(&openids, row.try_get("n")?)?, row.try_get("user_id")?);
        }
        // The first mention of each new openid decides its profile, as on SQLite.
        let mut seen = HashSet::new();
        let fresh: Vec<&NewUser> = users
            .iter()
            .filter(|user| !known.contains_key(user.openid) && seen.insert(user.openid))
            .collect();
        drop(seen);
        if !fresh.is_empty() {
            // Ids ascend in the batch's order, as on SQLite. Everything large travels as one
            // array rather than as a row per user: decoding a million rows costs seconds.
            let ids = sqlx::query(
                "SELECT ARRAY(SELECT nextval('users_id_seq') FROM generate_series(1, $1)) AS ids, \
                 ARRAY(SELECT nextval('users_respondent_id_seq') FROM generate_series(1, $1)) \
                 AS respondent_ids",
            )
            .bind(fresh.len() as i64)
            .fetch_one(&mut *tx)
            .await?;
            let mut user_ids: Vec<UserId> = ids.try_get("ids")?;
            let mut respondent_ids: Vec<i64> = ids.try_get("respondent_ids")?;
            user_ids.sort_unstable();
            respondent_ids.sort_unstable();
            sqlx::query(
                "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) \
                 SELECT id, respondent_id, nickname, avatar, $5 \
                 FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[]) \
                 AS u (id, respondent_id, nickname, avatar)",
            )
            .bind(&user_ids[..])
            .bind(respondent_ids)
            .bind(&fresh.iter().map(|u| u.nickname).collect::<Vec<_>>()[..])
            .bind(&fresh.iter().map(|u| u.avatar).collect::<Vec<_>>()[..])
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let fresh_openids: Vec<&str> = fresh.iter().map(|u| u.openid).collect();
            // A concurrent registration of the same openid makes us wait for it, then skip it.
            // Rows go in openid order, so two batches sharing openids wait for each other in
            // one order and cannot deadlock.
            let claimed: i64 = sqlx::query_scalar(
                "WITH claimed AS (INSERT INTO app_users (appid, openid, user_id) \
                 SELECT $1, openid, user_id FROM UNNEST($2::TEXT[], $3::BIGINT[]) \
                 AS a (openid, user_id) ORDER BY openid \
                 ON CONFLICT (appid, openid) DO NOTHING RETURNING 1) \
                 SELECT COUNT(*) FROM claimed",
            )
            .bind(appid)
            .bind(&fresh_openids[..])
            .bind(&user_ids[..])
            .fetch_one(&mut *tx)
            .await?;
            let lost = fresh_openids.len() as i64 - claimed;
            known.extend(fresh_openids.iter().copied().zip(user_ids.iter().copied()));
            if lost > 0 {
                // Some openids were registered concurrently: take the winners' users and drop
                // ours, so that no user is left without an openid.
                let mut lost_users = Vec::new();
                for row in sqlx::query(
                    "SELECT o.n, a.user_id, o.user_id AS ours FROM app_users a \
                     JOIN UNNEST($2::TEXT[], $3::BIGINT[]) WITH ORDINALITY AS o (openid, user_id, n) \
                     ON a.openid = o.openid WHERE a.appid = $1 AND a.user_id <> o.user_id",
                )
                .bind(appid)
                .bind(&fresh_openids[..])
                .bind(&user_ids[..])
                .fetch_all(&mut *tx)
                .await?
                {
                    known.insert(
                        named(&fresh_openids, row.try_get("n")?)?,
                        row.try_get("user_id")?,
                    );
                    lost_users.push(row.try_get::<UserId, _>("ours")?);
                }
                sqlx::query("DELETE FROM users WHERE id = ANY($1)")
                    .bind(lost_users)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        users
            .iter()
            .map(|user| {
                known.get(user.openid).copied().ok_or_else(|| {
                    StoreError::Database(format!(
                        "openid {:?} vanished while being registered",
                        user.openid
                    ))
                })
            })
            .collect()
    }

    async fn member_states(&self, team_id: TeamId) -> StoreResult<Vec<(UserId, MemberState)>> {
        let rows =
            sqlx::query("SELECT user_id, nickname, avatar, source FROM members WHERE team_id = $1")
                .bind(team_id)
                .fetch(&self.pool);
        decode_rows(rows, |row| {
            Ok((
                row.try_get("user_id")?,
                MemberState {
                    nickname: row.try_get("nickname")?,
                    avatar: row.try_get("avatar")?,
                    source: Source::from_code(row.try_get("source")?),
                },
            ))
        })
        .await
    }
}

#[async_trait]
impl DirectoryStore for PostgresStore {
    async fn load_directory(&self, team_id: TeamId) -> StoreResult<Option<Directory>> {
        // One snapshot for every read: the rows are the ones of the version read with them.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let team = sqlx::query(TEAM_BY_ID)
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
        // Rows are decoded one by one as they arrive: collecting a million raw rows first
        // would hold them all (hundreds of bytes each) at once.
        let mut rows = sqlx::query(
            "SELECT id, parent_id, source, remote_id, name, sort_order, is_valid, created_at, \
             upd_at FROM groups WHERE team_id = $1",
        )
        .bind(team_id)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            builder.add_group(group_of(&row)?);
        }
        drop(rows);
        // Each member with its groups in one row, in user order: both tables are read along
        // their primary keys and merged as they stream, never sorted.
        let mut rows = sqlx::query(
            "SELECT b.user_id, b.role, COALESCE(array_agg(m.group_id ORDER BY m.group_id) \
             FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups \
             FROM members b LEFT JOIN memberships m \
             ON m.team_id = b.team_id AND m.user_id = b.user_id \
             WHERE b.team_id = $1 GROUP BY b.user_id, b.role ORDER BY b.user_id",
        )
        .bind(team_id)
        .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            builder.add_member(
                row.try_get("user_id")?,
                Placement {
                    role: role_of(row.try_get("role")?)?,
                    groups: row.try_get::<Vec<GroupId>, _>("groups")?.into(),
                },
            );
        }
        drop(rows);
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
        let mut tx = self.pool.begin().await?;
        // The team lock: see the module documentation.
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM teams WHERE id = $1 FOR UPDATE")
                .bind(team_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(apply_error)?;
        if version != Some(expected_version) {
            tx.rollback().await?;
            return Err(StoreError::Conflict);
        }
        let mut created: Vec<GroupId> = Vec::new();
        let mut rest = changes;
        while !rest.is_empty() {
            let run = run_length(rest);
            let (batch, tail) = rest.split_at(run);
            rest = tail;
            match &batch[0] {
                Change::CreateGroup { .. } => {
                    insert_groups(&mut tx, team_id, batch, &mut created).await?;
                }
                Change::UpdateGroup { .. } => {
                    // One statement each, in order: a later update may reuse a remote id an
                    // earlier one freed, and the unique index is checked row by row.
                    for change in batch {
                        if let Change::UpdateGroup { group, parent } = change {
                            update_group(&mut tx, team_id, group, resolve(&created, parent))
                                .await?;
                        }
                    }
                }
                Change::PutMember { .. } => {
                    put_members(&mut tx, team_id, batch, &created, now).await?;
                }
                Change::RemoveMember(_) => {
                    let ids: Vec<UserId> = batch
                        .iter()
                        .filter_map(|change| match change {
                            Change::RemoveMember(user_id) => Some(*user_id),
                            _ => None,
                        })
                        .collect();
                    delete_memberships(&mut tx, team_id, ids.clone()).await?;
                    sqlx::query(
                        "DELETE FROM members m USING UNNEST($2::BIGINT[]) AS u (user_id) \
                         WHERE m.team_id = $1 AND m.user_id = u.user_id",
                    )
                    .bind(team_id)
                    .bind(ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(apply_error)?;
                }
            }
        }
        let version: i64 = sqlx::query_scalar(
            "UPDATE teams SET version = version + 1 WHERE id = $1 RETURNING version",
        )
        .bind(team_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(apply_error)?;
        tx.commit().await?;
        Ok(Applied { created, version })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn dangling_references(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query_as(DANGLING_REFERENCES)
            .fetch_all(&self.pool)
            .await?;
        Ok(dangling_lines(rows))
    }
}
