//! Webhook subscriptions' storage (§11): the subscriptions of a team, their delivery cursors,
//! retry state and leases, and the bounded log of recent delivery attempts.
//!
//! The statements are the same on both backends except two, which each backend supplies
//! (`store/sqlite/webhooks.rs`, `store/postgres/webhooks.rs`): the lock that keeps the per-team
//! cap exact under concurrent creations, and the claim's row locking (PostgreSQL skips rows
//! another process is claiming, `FOR UPDATE SKIP LOCKED`; SQLite's one writer claims alone).
//! [`impl_webhook_store`] implements the trait once for each.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::values::{EventSeq, TeamId, WebhookId};
use crate::domain::webhooks::{DeliveryRecord, Listened, Webhook, WebhookState};

/// A subscription to create.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: String,
    pub secret: String,
    pub state: WebhookState,
    pub listened: Listened,
}

/// Fields of a subscription to change (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdate {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub state: Option<WebhookState>,
    pub listened: Option<Listened>,
}

/// Where a subscription stands after an attempt, written only while the worker still holds
/// its lease and nobody moved its cursor meanwhile.
#[derive(Debug, Clone)]
pub struct Progress {
    pub acked_seq: EventSeq,
    /// `Paused` once the retry budget is spent (a subscription paused meanwhile stays so).
    pub state: WebhookState,
    pub attempts: i64,
    pub failing_since: Option<i64>,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// A worker's claim: up to `limit` active subscriptions whose attempt is due at `now` (unix
/// milliseconds), leased to `owner` for `lease_ms`, skipping teams that already have
/// `per_team` leased. Named fields: four of them are integers a call could swap.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub owner: &'a str,
    pub now: i64,
    pub lease_ms: i64,
    pub limit: i64,
    pub per_team: i64,
}

/// An attempt to record: `owner`'s lease of subscription `id`, taken with its cursor at
/// `from_seq`, where the subscription stands after it, and the attempt's log entry if it
/// posted anything (the log keeps the last `keep`).
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub id: WebhookId,
    pub owner: &'a str,
    pub from_seq: EventSeq,
    pub progress: Progress,
    pub record: Option<DeliveryRecord>,
    pub keep: i64,
}

/// A subscription leased to a worker, with when it started failing (unix milliseconds).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub webhook: Webhook,
    pub failing_since: Option<i64>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Create a subscription whose cursor is the team's last event, unless the team holds
    /// `most` already (`None`).
    async fn create_webhook(
        &self,
        team_id: TeamId,
        webhook: &NewWebhook,
        most: i64,
        now: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// The team's subscriptions, by id.
    async fn webhooks(&self, team_id: TeamId) -> StoreResult<Vec<Webhook>>;
    async fn webhook(&self, team_id: TeamId, id: WebhookId) -> StoreResult<Option<Webhook>>;
    /// Change fields; resuming (`state: Active`) also clears the retry state so that the next
    /// attempt is immediate.
    async fn update_webhook(
        &self,
        team_id: TeamId,
        id: WebhookId,
        update: &WebhookUpdate,
        now: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// Delete a subscription and its log; `false` when there is none.
    async fn delete_webhook(&self, team_id: TeamId, id: WebhookId) -> StoreResult<bool>;
    /// Deliver again every event after `after`, at once.
    async fn replay_webhook(
        &self,
        team_id: TeamId,
        id: WebhookId,
        after: EventSeq,
        now: i64,
    ) -> StoreResult<Option<Webhook>>;
    /// The subscription's logged attempts, newest first (`None`: no such subscription).
    async fn deliveries(
        &self,
        team_id: TeamId,
        id: WebhookId,
    ) -> StoreResult<Option<Vec<DeliveryRecord>>>;
    /// Lease the subscriptions of a [`Claim`] that have undelivered events, the longest
    /// waiting first.
    async fn claim_webhooks(&self, claim: &Claim<'_>) -> StoreResult<Vec<Claimed>>;
    /// Record an [`Attempt`]: its log entry, and the subscription's progress if the lease is
    /// still held and the cursor has not moved; release the lease either way. Answers whether
    /// the progress was written.
    async fn finish_attempt(&self, attempt: &Attempt<'_>) -> StoreResult<bool>;
    /// The undelivered events of every team's subscriptions.
    async fn webhook_backlog(&self) -> StoreResult<crate::metrics::WebhookBacklog>;
}

/// A subscription row, in the order of `columns!`.
pub(crate) type WebhookRow = (
    WebhookId,
    TeamId,
    String,
    String,
    String,
    String,
    EventSeq,
    i64,
    Option<i64>,
    i64,
    Option<String>,
    i64,
    i64,
);

/// The columns of a [`WebhookRow`], as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, team_id, url, secret, state, listened, acked_seq, attempts, failing_since, \
         next_attempt_at, last_error, created_at, updated_at"
    };
}

pub(crate) fn claimed_of(row: WebhookRow) -> Claimed {
    let failing_since = row.8;
    Claimed {
        webhook: webhook_of(row),
        failing_since,
    }
}

pub(crate) fn webhook_of(row: WebhookRow) -> Webhook {
    Webhook {
        id: row.0,
        team_id: row.1,
        url: row.2,
        secret: row.3,
        state: WebhookState::from_stored(&row.4),
        listened: Listened::from_stored(&row.5),
        acked_seq: row.6,
        attempts: row.7,
        next_attempt_at: row.9,
        last_error: row.10,
        created_at: row.11,
        updated_at: row.12,
    }
}

/// A logged attempt row.
pub(crate) type DeliveryRow = (
    String,
    i64,
    EventSeq,
    EventSeq,
    i64,
    Option<i64>,
    i64,
    Option<String>,
);

pub(crate) fn delivery_of(row: DeliveryRow) -> DeliveryRecord {
    DeliveryRecord {
        delivery_id: row.0,
        time: row.1,
        first_seq: row.2,
        last_seq: row.3,
        events: row.4,
        status: row.5,
        latency_ms: row.6,
        error: row.7,
    }
}

pub(crate) const INSERT: &str = concat!(
    "INSERT INTO webhooks (team_id, url, secret, state, listened, \
     acked_seq, created_at, updated_at) SELECT $1, $2, $3, $4, $5, event_seq, $6, $6 \
     FROM teams WHERE id = $1 AND (SELECT COUNT(*) FROM webhooks WHERE team_id = $1) < $7 \
     RETURNING ",
    columns!()
);

pub(crate) const BY_TEAM: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM webhooks WHERE team_id = $1 ORDER BY id"
);

pub(crate) const ONE: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM webhooks WHERE team_id = $1 AND id = $2"
);

pub(crate) const EXISTS: &str = "SELECT id FROM webhooks WHERE team_id = $1 AND id = $2";

/// `$3`..`$6`: the new fields or NULL; `$7`: resume (clear the retry state); `$8`: now.
pub(crate) const UPDATE: &str = concat!(
    "UPDATE webhooks SET url = COALESCE($3, url), \
     secret = COALESCE($4, secret), state = COALESCE($5, state), \
     listened = COALESCE($6, listened), \
     attempts = CASE WHEN $7 = 1 THEN 0 ELSE attempts END, \
     failing_since = CASE WHEN $7 = 1 THEN NULL ELSE failing_since END, \
     next_attempt_at = CASE WHEN $7 = 1 THEN 0 ELSE next_attempt_at END, \
     updated_at = $8 WHERE team_id = $1 AND id = $2 RETURNING ",
    columns!()
);

pub(crate) const DELETE: &str = "DELETE FROM webhooks WHERE team_id = $1 AND id = $2";

pub(crate) const DELETE_LOG: &str = "DELETE FROM webhook_deliveries WHERE webhook_id = $1";

pub(crate) const REPLAY: &str = concat!(
    "UPDATE webhooks SET acked_seq = $3, attempts = 0, \
     failing_since = NULL, next_attempt_at = 0, updated_at = $4 \
     WHERE team_id = $1 AND id = $2 RETURNING ",
    columns!()
);

pub(crate) const LOG: &str = "SELECT delivery_id, time, first_seq, last_seq, events, status, \
     latency_ms, error FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY number DESC";

/// Whether anything is due (`$1`: now), read before claiming so that an idle worker does not
/// take the writer (SQLite's only writing connection) at every commit and poll.
pub(crate) const ANY_DUE: &str = "SELECT w.id FROM webhooks w JOIN teams t ON t.id = w.team_id \
     WHERE w.state = 'active' AND w.next_attempt_at <= $1 AND w.lease_expires_at <= $1 \
     AND w.acked_seq < t.event_seq LIMIT 1";

/// Events not acknowledged and subscriptions behind, over the subscriptions not paused; and
/// the paused ones.
/// (PostgreSQL sums integers as `numeric`, hence the casts.)
pub(crate) const BACKLOG: &str = "SELECT \
     CAST(COALESCE(SUM(CASE WHEN w.state = 'active' THEN t.event_seq - w.acked_seq ELSE 0 END), 0) AS BIGINT), \
     CAST(COALESCE(SUM(CASE WHEN w.state = 'active' AND w.acked_seq < t.event_seq THEN 1 ELSE 0 END), 0) AS BIGINT), \
     CAST(COALESCE(SUM(CASE WHEN w.state = 'active' THEN 0 ELSE 1 END), 0) AS BIGINT) \
     FROM webhooks w JOIN teams t ON t.id = w.team_id";

/// The claim, with the backend's row locking `$lock` (see [`impl_webhook_store`]).
macro_rules! claim {
    ($lock:literal) => {
        concat!(
            "UPDATE webhooks SET lease_owner = $1, \
     lease_expires_at = $2 + $3 WHERE id IN (SELECT w.id FROM webhooks w \
     JOIN teams t ON t.id = w.team_id \
     WHERE w.state = 'active' AND w.next_attempt_at <= $2 AND w.lease_expires_at <= $2 \
     AND w.acked_seq < t.event_seq \
     AND (SELECT COUNT(*) FROM webhooks busy WHERE busy.team_id = w.team_id \
     AND busy.lease_expires_at > $2) < $5 \
     ORDER BY w.next_attempt_at, w.id LIMIT $4",
            $lock,
            ") RETURNING ",
            $crate::store::webhooks::columns!()
        )
    };
}

pub(crate) const PROGRESS: &str = "UPDATE webhooks SET acked_seq = $4, \
     state = CASE WHEN state = 'active' THEN $5 ELSE state END, attempts = $6, \
     failing_since = $7, next_attempt_at = $8, last_error = $9, lease_owner = NULL, \
     lease_expires_at = 0 WHERE id = $1 AND lease_owner = $2 AND acked_seq = $3";

pub(crate) const RELEASE: &str = "UPDATE webhooks SET lease_owner = NULL, lease_expires_at = 0 \
     WHERE id = $1 AND lease_owner = $2";

pub(crate) const NUMBER_ATTEMPT: &str =
    "UPDATE webhooks SET deliveries = deliveries + 1 WHERE id = $1 RETURNING deliveries";

pub(crate) const LOG_ATTEMPT: &str = "INSERT INTO webhook_deliveries (webhook_id, number, \
     delivery_id, time, first_seq, last_seq, events, status, latency_ms, error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(crate) const TRIM_LOG: &str =
    "DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND number <= $2";

/// [`WebhookStore`] for `$store`, which implements [`Backend`](super::backend::Backend):
/// `$lock_team` (an optional statement locking team `$1` for the cap) and `$lock_claimed`
/// (appended to the claim's inner `SELECT`).
macro_rules! impl_webhook_store {
    ($store:ty, $lock_team:expr, $lock_claimed:literal) => {
        const _: () = {
            use $crate::domain::values::{EventSeq, TeamId, WebhookId};
            use $crate::domain::webhooks::{DeliveryRecord, Webhook, WebhookState};
            use $crate::store::StoreResult;
            use $crate::store::backend::Backend;
            use $crate::store::webhooks::*;

            const LOCK_TEAM: Option<&str> = $lock_team;

            #[async_trait::async_trait]
            impl WebhookStore for $store {
                async fn create_webhook(
                    &self,
                    team_id: TeamId,
                    webhook: &NewWebhook,
                    most: i64,
                    now: i64,
                ) -> StoreResult<Option<Webhook>> {
                    let mut tx = self.begin_write().await?;
                    if let Some(lock) = LOCK_TEAM {
                        sqlx::query(lock).bind(team_id).execute(&mut *tx).await?;
                    }
                    let row: Option<WebhookRow> = sqlx::query_as(INSERT)
                        .bind(team_id)
                        .bind(webhook.url.as_str())
                        .bind(webhook.secret.as_str())
                        .bind(webhook.state.as_str())
                        .bind(webhook.listened.stored())
                        .bind(now)
                        .bind(most)
                        .fetch_optional(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(row.map(webhook_of))
                }

                async fn webhooks(&self, team_id: TeamId) -> StoreResult<Vec<Webhook>> {
                    let rows: Vec<WebhookRow> = sqlx::query_as(BY_TEAM)
                        .bind(team_id)
                        .fetch_all(self.reads())
                        .await?;
                    Ok(rows.into_iter().map(webhook_of).collect())
                }

                async fn webhook(
                    &self,
                    team_id: TeamId,
                    id: WebhookId,
                ) -> StoreResult<Option<Webhook>> {
                    let row: Option<WebhookRow> = sqlx::query_as(ONE)
                        .bind(team_id)
                        .bind(id)
                        .fetch_optional(self.reads())
                        .await?;
                    Ok(row.map(webhook_of))
                }

                async fn update_webhook(
                    &self,
                    team_id: TeamId,
                    id: WebhookId,
                    update: &WebhookUpdate,
                    now: i64,
                ) -> StoreResult<Option<Webhook>> {
                    let resume = i64::from(update.state == Some(WebhookState::Active));
                    let row: Option<WebhookRow> = sqlx::query_as(UPDATE)
                        .bind(team_id)
                        .bind(id)
                        .bind(update.url.as_deref())
                        .bind(update.secret.as_deref())
                        .bind(update.state.map(WebhookState::as_str))
                        .bind(update.listened.as_ref().map(|listened| listened.stored()))
                        .bind(resume)
                        .bind(now)
                        .fetch_optional(self.writes())
                        .await?;
                    Ok(row.map(webhook_of))
                }

                async fn delete_webhook(
                    &self,
                    team_id: TeamId,
                    id: WebhookId,
                ) -> StoreResult<bool> {
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query(DELETE)
                        .bind(team_id)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    sqlx::query(DELETE_LOG).bind(id).execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn replay_webhook(
                    &self,
                    team_id: TeamId,
                    id: WebhookId,
                    after: EventSeq,
                    now: i64,
                ) -> StoreResult<Option<Webhook>> {
                    let row: Option<WebhookRow> = sqlx::query_as(REPLAY)
                        .bind(team_id)
                        .bind(id)
                        .bind(after)
                        .bind(now)
                        .fetch_optional(self.writes())
                        .await?;
                    Ok(row.map(webhook_of))
                }

                async fn deliveries(
                    &self,
                    team_id: TeamId,
                    id: WebhookId,
                ) -> StoreResult<Option<Vec<DeliveryRecord>>> {
                    let mut tx = self.begin_snapshot().await?;
                    let found: Option<(i64,)> = sqlx::query_as(EXISTS)
                        .bind(team_id)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if found.is_none() {
                        return Ok(None);
                    }
                    let rows: Vec<DeliveryRow> =
                        sqlx::query_as(LOG).bind(id).fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(Some(rows.into_iter().map(delivery_of).collect()))
                }

                async fn claim_webhooks(&self, claim: &Claim<'_>) -> StoreResult<Vec<Claimed>> {
                    let due: Option<i64> = sqlx::query_scalar(ANY_DUE)
                        .bind(claim.now)
                        .fetch_optional(self.reads())
                        .await?;
                    if due.is_none() {
                        return Ok(Vec::new());
                    }
                    let mut tx = self.begin_write().await?;
                    const CLAIM: &str = $crate::store::webhooks::claim!($lock_claimed);
                    let rows: Vec<WebhookRow> = sqlx::query_as(CLAIM)
                        .bind(claim.owner)
                        .bind(claim.now)
                        .bind(claim.lease_ms)
                        .bind(claim.limit)
                        .bind(claim.per_team)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(rows.into_iter().map(claimed_of).collect())
                }

                async fn finish_attempt(&self, attempt: &Attempt<'_>) -> StoreResult<bool> {
                    let Attempt {
                        id,
                        owner,
                        from_seq,
                        ref progress,
                        ref record,
                        keep,
                    } = *attempt;
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query(PROGRESS)
                        .bind(id)
                        .bind(owner)
                        .bind(from_seq)
                        .bind(progress.acked_seq)
                        .bind(progress.state.as_str())
                        .bind(progress.attempts)
                        .bind(progress.failing_since)
                        .bind(progress.next_attempt_at)
                        .bind(progress.last_error.as_deref())
                        .execute(&mut *tx)
                        .await?;
                    let written = done.rows_affected() > 0;
                    if !written {
                        sqlx::query(RELEASE)
                            .bind(id)
                            .bind(owner)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(record) = record {
                        let number: Option<i64> = sqlx::query_scalar(NUMBER_ATTEMPT)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if let Some(number) = number {
                            sqlx::query(LOG_ATTEMPT)
                                .bind(id)
                                .bind(number)
                                .bind(record.delivery_id.as_str())
                                .bind(record.time)
                                .bind(record.first_seq)
                                .bind(record.last_seq)
                                .bind(record.events)
                                .bind(record.status)
                                .bind(record.latency_ms)
                                .bind(record.error.as_deref())
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(TRIM_LOG)
                                .bind(id)
                                .bind(number - keep)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    tx.commit().await?;
                    Ok(written)
                }

                async fn webhook_backlog(&self) -> StoreResult<crate::metrics::WebhookBacklog> {
                    let (events, behind, paused): (i64, i64, i64) =
                        sqlx::query_as(BACKLOG).fetch_one(self.reads()).await?;
                    Ok(crate::metrics::WebhookBacklog {
                        events,
                        behind,
                        paused,
                    })
                }
            }
        };
    };
}

pub(crate) use {claim, columns, impl_webhook_store};
