//! The change feed's storage (§11): reading a team's events in order, and removing those older
//! than the retention. Events are written by [`ApplyBatch::apply`](super::ApplyBatch::apply)
//! in the transaction of their change (see [`super::apply::write_events`]). The statements are
//! the same on both backends; [`impl_event_store`] implements the trait once for each.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::events::Event;
use crate::domain::values::{EventSeq, TeamId};

/// A page of a team's feed, with where the feed stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// The last number handed out in the team (0 before its first event).
    pub last_seq: EventSeq,
    /// The last number removed by retention: a cursor before it has missed events.
    pub pruned_through: EventSeq,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Up to `limit` events of `team_id` numbered after `after`, ascending (`None`: no such
    /// team).
    async fn events(
        &self,
        team_id: TeamId,
        after: EventSeq,
        limit: i64,
    ) -> StoreResult<Option<EventPage>>;
    /// Remove up to `batch` of the team's oldest events written before `before` (unix
    /// seconds); answers how many went.
    async fn prune_events(&self, team_id: TeamId, before: i64, batch: i64) -> StoreResult<u64>;
}

/// An event row, in the column order of the `events` table.
pub(crate) type EventRow = (
    EventSeq,
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(crate) fn event_of(row: EventRow) -> Event {
    let (seq, event_type, time, actor_kind, appid, request_id, object_kind, object_id) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    Event {
        seq,
        event_type,
        time,
        actor_kind,
        appid,
        request_id,
        object_kind,
        object_id,
        remote_id: row.8,
        before: row.9,
        after: row.10,
    }
}

pub(crate) const FEED_BOUNDS: &str =
    "SELECT event_seq, events_pruned_through FROM teams WHERE id = $1";

pub(crate) const FEED: &str = "SELECT seq, type, time, actor_kind, appid, request_id, \
     object_kind, object_id, remote_id, before, after FROM events \
     WHERE team_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The last of the team's oldest `$3` events (after `$2`, the last pruned) written before `$4`.
pub(crate) const PRUNE_BOUND: &str = "SELECT MAX(seq) FROM (SELECT seq, time FROM events \
     WHERE team_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) oldest WHERE time < $4";

pub(crate) const PRUNE: &str = "DELETE FROM events WHERE team_id = $1 AND seq <= $2";

pub(crate) const MARK_PRUNED: &str =
    "UPDATE teams SET events_pruned_through = $2 WHERE id = $1 AND events_pruned_through < $2";

/// [`EventStore`] for `$store`, which implements [`Backend`](super::backend::Backend).
macro_rules! impl_event_store {
    ($store:ty) => {
        const _: () = {
            use $crate::domain::values::{EventSeq, TeamId};
            use $crate::store::StoreResult;
            use $crate::store::backend::Backend;
            use $crate::store::events::{
                EventPage, EventRow, EventStore, FEED, FEED_BOUNDS, MARK_PRUNED, PRUNE,
                PRUNE_BOUND, event_of,
            };

            #[async_trait::async_trait]
            impl EventStore for $store {
                async fn events(
                    &self,
                    team_id: TeamId,
                    after: EventSeq,
                    limit: i64,
                ) -> StoreResult<Option<EventPage>> {
                    let mut tx = self.begin_snapshot().await?;
                    let bounds: Option<(EventSeq, EventSeq)> = sqlx::query_as(FEED_BOUNDS)
                        .bind(team_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some((last_seq, pruned_through)) = bounds else {
                        return Ok(None);
                    };
                    let rows: Vec<EventRow> = sqlx::query_as(FEED)
                        .bind(team_id)
                        .bind(after)
                        .bind(limit)
                        .fetch_all(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(Some(EventPage {
                        events: rows.into_iter().map(event_of).collect(),
                        last_seq,
                        pruned_through,
                    }))
                }

                async fn prune_events(
                    &self,
                    team_id: TeamId,
                    before: i64,
                    batch: i64,
                ) -> StoreResult<u64> {
                    let mut tx = self.begin_write().await?;
                    let pruned: Option<(i64, i64)> = sqlx::query_as(FEED_BOUNDS)
                        .bind(team_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some((_, pruned)) = pruned else {
                        return Ok(0);
                    };
                    let bound: Option<i64> = sqlx::query_scalar(PRUNE_BOUND)
                        .bind(team_id)
                        .bind(pruned)
                        .bind(batch)
                        .bind(before)
                        .fetch_one(&mut *tx)
                        .await?;
                    let Some(bound) = bound else {
                        return Ok(0);
                    };
                    let done = sqlx::query(PRUNE)
                        .bind(team_id)
                        .bind(bound)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(MARK_PRUNED)
                        .bind(team_id)
                        .bind(bound)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected())
                }
            }
        };
    };
}

pub(crate) use impl_event_store;
