//! The change feed's storage (§11): reading a team's events in order, and removing those older
//! than the retention. Events are written by [`ApplyBatch::apply`](super::ApplyBatch::apply)
//! in the transaction of their change (see [`super::apply::write_events`]); what the events of
//! one write share, its time and actor, is written once beside them, in `event_writes`, and
//! given back to each event here. The statements are the same on both backends;
//! [`impl_event_store`] implements the trait once for each.

use async_trait::async_trait;

use super::{StoreError, StoreResult};
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

/// An event row: what is the event's own (its write's time and actor are in a [`WriteRow`]).
pub(crate) type EventRow = (
    EventSeq,
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// A row of `event_writes`: the time and actor of the team's events from `first_seq` up to the
/// next row's.
pub(crate) type WriteRow = (i64, i64, String, Option<String>, Option<String>);

/// The events of `rows`, ascending, each with the time and actor of the write in `writes`
/// (ascending) that covers it.
pub(crate) fn events_of(rows: Vec<EventRow>, writes: Vec<WriteRow>) -> StoreResult<Vec<Event>> {
    let mut writes = writes.into_iter().peekable();
    let mut write = None;
    let mut events = Vec::with_capacity(rows.len());
    for (seq, event_type, object_kind, object_id, remote_id, before, after) in rows {
        while let Some(next) = writes.next_if(|next| next.0 <= seq.get()) {
            write = Some(next);
        }
        let Some((_, time, actor_kind, appid, request_id)) = write.clone() else {
            return Err(StoreError::Inconsistent(format!(
                "event {} has no write",
                seq.get()
            )));
        };
        events.push(Event {
            seq,
            event_type,
            time,
            actor_kind,
            appid,
            request_id,
            object_kind,
            object_id,
            remote_id,
            before,
            after,
        });
    }
    Ok(events)
}

pub(crate) const FEED_BOUNDS: &str =
    "SELECT event_seq, events_pruned_through FROM teams WHERE id = $1";

pub(crate) const FEED: &str = "SELECT seq, type, object_kind, object_id, remote_id, before, \
     after FROM events WHERE team_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The rows of `event_writes` that cover the team's events `$2` to `$3`.
pub(crate) const FEED_WRITES: &str = "SELECT first_seq, time, actor_kind, appid, request_id \
     FROM event_writes WHERE team_id = $1 AND first_seq <= $3 AND first_seq >= \
     (SELECT COALESCE(MAX(first_seq), 0) FROM event_writes \
     WHERE team_id = $1 AND first_seq <= $2) ORDER BY first_seq";

/// The team's last stored event. It can be behind `teams.event_seq`: a SQLite sync copied in
/// after its decision has taken its numbers before its events are stored.
pub(crate) const LAST_STORED: &str = "SELECT MAX(seq) FROM events WHERE team_id = $1";

/// The first event of the team's first write, from the one that covers event `$2` on, made at
/// or after `$3` (unix seconds): retention stops before it.
pub(crate) const FIRST_KEPT: &str = "SELECT MIN(first_seq) FROM event_writes \
     WHERE team_id = $1 AND time >= $3 AND first_seq >= \
     (SELECT COALESCE(MAX(first_seq), 0) FROM event_writes \
     WHERE team_id = $1 AND first_seq <= $2)";

pub(crate) const PRUNE: &str = "DELETE FROM events WHERE team_id = $1 AND seq <= $2";

/// Remove the team's `event_writes` rows whose events are all numbered before `$2` (the row
/// that covers event `$2` stays).
pub(crate) const PRUNE_WRITES: &str = "DELETE FROM event_writes WHERE team_id = $1 \
     AND first_seq < (SELECT MAX(first_seq) FROM event_writes \
     WHERE team_id = $1 AND first_seq <= $2)";

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
                EventPage, EventRow, EventStore, FEED, FEED_BOUNDS, FEED_WRITES, FIRST_KEPT,
                LAST_STORED, MARK_PRUNED, PRUNE, PRUNE_WRITES, WriteRow, events_of,
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
                    let writes: Vec<WriteRow> = match (rows.first(), rows.last()) {
                        (Some(first), Some(last)) => {
                            sqlx::query_as(FEED_WRITES)
                                .bind(team_id)
                                .bind(first.0)
                                .bind(last.0)
                                .fetch_all(&mut *tx)
                                .await?
                        }
                        _ => Vec::new(),
                    };
                    tx.commit().await?;
                    Ok(Some(EventPage {
                        events: events_of(rows, writes)?,
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
                    let bounds: Option<(i64, i64)> = sqlx::query_as(FEED_BOUNDS)
                        .bind(team_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some((_, pruned)) = bounds else {
                        return Ok(0);
                    };
                    let last_stored: Option<i64> = sqlx::query_scalar(LAST_STORED)
                        .bind(team_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let first_kept: Option<i64> = sqlx::query_scalar(FIRST_KEPT)
                        .bind(team_id)
                        .bind(pruned + 1)
                        .bind(before)
                        .fetch_one(&mut *tx)
                        .await?;
                    let bound = (pruned + batch)
                        .min(last_stored.unwrap_or(pruned))
                        .min(first_kept.map_or(i64::MAX, |seq| seq - 1));
                    if bound <= pruned {
                        return Ok(0);
                    }
                    let done = sqlx::query(PRUNE)
                        .bind(team_id)
                        .bind(bound)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(PRUNE_WRITES)
                        .bind(team_id)
                        .bind(bound + 1)
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
