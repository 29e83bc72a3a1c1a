//! Users on PostgreSQL: ids come from sequences; a registration that races another process for
//! the same openid settles on the winner's user (see the module documentation of
//! [`super`]); lists of ids travel as arrays, and large reads stream.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::Row;

use super::{PostgresStore, decode_rows};
use crate::domain::sync::MemberState;
use crate::domain::values::{Source, TeamId, UserId};
use crate::store::backend::{BackendUsers, Tx};
use crate::store::rows::profile_columns;
use crate::store::scim::ScimUserRef;
use crate::store::{MemberProfile, NewUser, StoreError, StoreResult, UserRecord, shared};

/// How often a registration tries again after losing a race for the same openid. The winner's
/// row is committed by the time the loser learns it lost, so one retry suffices.
const REGISTER_ATTEMPTS: usize = 3;

/// The openid at 1-based place `n` of an array bound with `WITH ORDINALITY`.
fn named<'a>(openids: &[&'a str], n: i64) -> StoreResult<&'a str> {
    usize::try_from(n - 1)
        .ok()
        .and_then(|index| openids.get(index).copied())
        .ok_or_else(|| StoreError::Inconsistent(format!("no openid at place {n} of the batch")))
}

#[async_trait]
impl BackendUsers for PostgresStore {
    /// A registration keeps one server process busy while this one waits: two use the
    /// machine's two cores (a first sync's million users in 10.1 s instead of 13.4 s, one run
    /// each; docs/SYNC.md). Each takes a pooled connection for its duration.
    const REGISTRATIONS_AT_ONCE: usize = 2;

    async fn register_one(
        &self,
        appid: &str,
        user: NewUser<'_>,
        now: i64,
    ) -> StoreResult<UserRecord> {
        for _ in 0..REGISTER_ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            let existing: Option<UserRecord> = sqlx::query_as(
                "UPDATE users SET nickname = $1, avatar = $2 WHERE id = \
                 (SELECT user_id FROM app_users WHERE appid = $3 AND openid = $4) \
                 RETURNING id, respondent_id, nickname, avatar",
            )
            .bind(user.nickname)
            .bind(user.avatar)
            .bind(appid)
            .bind(user.openid)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(existing) = existing {
                tx.commit().await?;
                return Ok(existing);
            }
            let registered = shared::insert_user(Self::INSERT_USER, user, now)
                .fetch_one(&mut *tx)
                .await?;
            // Waits for a concurrent insert of the same openid to commit or roll back.
            let claimed: Option<UserId> = sqlx::query_scalar(
                "INSERT INTO app_users (appid, openid, user_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (appid, openid) DO NOTHING RETURNING user_id",
            )
            .bind(appid)
            .bind(user.openid)
            .bind(registered.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            if claimed.is_some() {
                tx.commit().await?;
                return Ok(registered);
            }
            // Another registration of this openid won: drop our user row and update theirs.
            tx.rollback().await?;
        }
        Err(StoreError::Inconsistent(format!(
            "registering openid {:?} for app {appid:?} kept racing",
            user.openid
        )))
    }

    const INSERT_USER: &'static str = "INSERT INTO users (nickname, avatar, created_at) \
         VALUES ($1, $2, $3) RETURNING id, respondent_id, nickname, avatar";

    async fn register_many(
        &self,
        appid: &str,
        users: &[NewUser<'_>],
        now: i64,
    ) -> StoreResult<Vec<UserId>> {
        // A fixed number of statements whatever the batch size (a directory sync may register
        // a million users at once). Rows name openids by their place in the bound array, so no
        // openid is copied or decoded.
        //
        // Openids registered already are not looked up first: the caller (a sync) passes only
        // openids it found unregistered, and one registered by then keeps its user (the
        // insert into `app_users` below skips it; its user is read and ours deleted). The
        // lookup of 50,000 openids had cost 0.25-0.45 s of the 0.85 s each 50,000 took
        // (2026-12-05).
        let mut tx = self.pool.begin().await?;
        let mut known: HashMap<&str, UserId> = HashMap::with_capacity(users.len());
        // The first mention of each openid decides its profile, as on SQLite.
        let mut seen = HashSet::new();
        let fresh: Vec<&NewUser> = users
            .iter()
            .filter(|user| seen.insert(user.openid))
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
            let claimed = Self::claim_openids(&mut tx, appid, &fresh_openids, &user_ids).await?;
            let lost = fresh_openids.len() as i64 - claimed;
            known.extend(fresh_openids.iter().copied().zip(user_ids.iter().copied()));
            if lost > 0 {
                // Some openids were registered concurrently: take the winners' users and drop
                // ours, so that no user is left without an openid.
                let mut lost_users = Vec::new();
                for row in sqlx::query(
                    "SELECT o.n, a.user_id, o.user_id AS ours FROM app_users a \
                     JOIN UNNEST($2::TEXT[], $3::BIGINT[]) \
                     WITH ORDINALITY AS o (openid, user_id, n) \
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
                    StoreError::Inconsistent(format!(
                        "openid {:?} vanished while being registered",
                        user.openid
                    ))
                })
            })
            .collect()
    }

    async fn profiles(&self, team: TeamId, users: &[UserId]) -> StoreResult<Vec<MemberProfile>> {
        Ok(sqlx::query_as(concat!(
            "SELECT u.id, u.respondent_id, ",
            profile_columns!(),
            " FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND m.user_id = ANY($2)",
        ))
        .bind(team)
        .bind(users)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn openids(&self, appid: &str) -> StoreResult<Vec<(String, UserId)>> {
        let rows = sqlx::query_as("SELECT openid, user_id FROM app_users WHERE appid = $1")
            .bind(appid)
            .fetch(&self.pool);
        decode_rows(rows, Ok).await
    }

    async fn member_rows(
        tx: &mut Tx<Self>,
        team_id: TeamId,
    ) -> StoreResult<Vec<(UserId, MemberState)>> {
        let rows = sqlx::query_as(
            "SELECT user_id, nickname, avatar, source FROM members WHERE team_id = $1",
        )
        .bind(team_id)
        .fetch(&mut **tx);
        decode_rows(rows, |(user_id, nickname, avatar, source)| {
            let source = Source::from_code(source);
            Ok((
                user_id,
                MemberState {
                    nickname,
                    avatar,
                    source,
                },
            ))
        })
        .await
    }

    async fn scim_users_among(
        &self,
        team_id: TeamId,
        user_ids: &[UserId],
        scim_ids: &[&str],
    ) -> StoreResult<Vec<ScimUserRef>> {
        Ok(sqlx::query_as(
            "SELECT user_id, scim_id FROM scim_users WHERE team_id = $1 AND user_id = ANY($2) \
             UNION ALL SELECT user_id, scim_id FROM scim_users \
             WHERE team_id = $1 AND scim_id = ANY($3)",
        )
        .bind(team_id)
        .bind(user_ids)
        .bind(scim_ids)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Inserts the rows of `app_users` of app `$1` naming the openids `$2`, each for the user at its
/// place in `$3`, in openid order.
const INSERT_APP_USERS: &str = "INSERT INTO app_users (appid, openid, user_id) \
     SELECT $1, openid, user_id FROM UNNEST($2::TEXT[], $3::BIGINT[]) \
     AS a (openid, user_id) ORDER BY openid";

impl PostgresStore {
    /// Insert the rows of `app_users` naming `openids` (in openid order), each for the user
    /// at its place in `users`, in `tx`; answers how many were inserted: an openid that a
    /// concurrent registration took first is skipped (waiting for it to commit or roll back).
    ///
    /// A plain insert is tried first: one that collides fails whole and is made again with
    /// `ON CONFLICT DO NOTHING`, which checks every row before inserting it and took 9.2 and
    /// 8.8 s for a million openids against 6.0 s for the plain insert (docs/SYNC.md, "Speed").
    /// Rows go in openid order, so two batches sharing openids wait for each other in one order
    /// and cannot deadlock.
    async fn claim_openids(
        tx: &mut Tx<Self>,
        appid: &str,
        openids: &[&str],
        users: &[UserId],
    ) -> StoreResult<i64> {
        sqlx::raw_sql("SAVEPOINT claim").execute(&mut **tx).await?;
        let plain = sqlx::query(INSERT_APP_USERS)
            .bind(appid)
            .bind(openids)
            .bind(users)
            .execute(&mut **tx)
            .await;
        match plain {
            Ok(_) => {
                sqlx::raw_sql("RELEASE SAVEPOINT claim")
                    .execute(&mut **tx)
                    .await?;
                return Ok(openids.len() as i64);
            }
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT claim")
                    .execute(&mut **tx)
                    .await?;
            }
            Err(error) => return Err(error.into()),
        }
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH claimed AS ({INSERT_APP_USERS} \
             ON CONFLICT (appid, openid) DO NOTHING RETURNING 1) \
             SELECT COUNT(*) FROM claimed"
        )))
        .bind(appid)
        .bind(openids)
        .bind(users)
        .fetch_one(&mut **tx)
        .await?)
    }
}
