//! The change feed (§11): a team's events after a cursor, long-polling for the next commit, and
//! the retention that removes old events.
//!
//! A waiting caller holds neither a database connection nor a thread: it reads the feed, then
//! sleeps until this process commits a change of the team (an in-process wake-up) or a short
//! re-check interval passes (for commits by another process on the same database), and reads
//! again. Waiting callers are bounded per team and per process; one more is refused at once
//! with `request_rate_limited`.

use std::time::{Duration, Instant};

use super::{Service, ServiceError, ServiceResult, unix_now};
use crate::domain::RuleError;
use crate::domain::access::Caller;
use crate::domain::events::Event;
use crate::domain::values::{EventSeq, TeamId};

/// How often a waiting caller reads the feed again in case another process committed.
const RECHECK: Duration = Duration::from_millis(500);

/// Events removed per statement by retention, so that no write waits long behind it.
const PRUNE_BATCH: i64 = 10_000;

/// How often retention runs.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Settings of the change feed.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// Events older than this are removed.
    pub retention: Duration,
    /// Callers of one team waiting in one process.
    pub max_waiting_per_team: usize,
    /// Callers waiting in one process.
    pub max_waiting: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            retention: Duration::from_secs(30 * 86_400),
            max_waiting_per_team: 16,
            max_waiting: 1024,
        }
    }
}

/// A page of the feed and the cursor to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFeed {
    pub events: Vec<Event>,
    pub next: EventSeq,
}

impl Service {
    /// Up to `limit` events of `team_id` after `after`, waiting up to `wait` for one when none
    /// is pending.
    pub async fn events(
        &self,
        caller: &Caller,
        team_id: TeamId,
        after: EventSeq,
        limit: i64,
        wait: Duration,
    ) -> ServiceResult<EventFeed> {
        self.team_for(caller, team_id).await?;
        self.feed(team_id, after, limit, wait).await
    }

    /// `contactsd admin events`: the feed of any team, without waiting.
    pub async fn audit_events(
        &self,
        team_id: TeamId,
        after: EventSeq,
        limit: i64,
    ) -> ServiceResult<EventFeed> {
        self.feed(team_id, after, limit, Duration::ZERO).await
    }

    async fn feed(
        &self,
        team_id: TeamId,
        after: EventSeq,
        limit: i64,
        wait: Duration,
    ) -> ServiceResult<EventFeed> {
        let deadline = Instant::now() + wait;
        let settings = &self.settings.events;
        let parked = if wait.is_zero() {
            None
        } else {
            let parked =
                self.directories
                    .park(team_id, settings.max_waiting_per_team, settings.max_waiting);
            Some(parked.ok_or(ServiceError::RateLimited {
                retry_after_secs: 1,
            })?)
        };
        loop {
            // Registered before the read: a commit after it wakes this caller.
            let committed = parked.as_ref().map(|parked| parked.committed());
            let page = self
                .store
                .events(team_id, after, limit)
                .await?
                .ok_or(ServiceError::TeamNotFound)?;
            if after < page.pruned_through {
                let resume_after = page.last_seq;
                return Err(RuleError::EventsExpired { resume_after }.into());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if !page.events.is_empty() || remaining.is_zero() {
                let next = page.events.last().map_or(after, |event| event.seq);
                return Ok(EventFeed {
                    events: page.events,
                    next,
                });
            }
            let pause = tokio::time::sleep(remaining.min(RECHECK));
            match committed {
                Some(committed) => {
                    tokio::select! {
                        () = committed => {}
                        () = pause => {}
                    }
                }
                None => pause.await,
            }
        }
    }

    /// Remove the events older than the retention, in every team; answers how many went.
    pub async fn prune_events(&self) -> ServiceResult<u64> {
        let before = unix_now() - self.settings.events.retention.as_secs() as i64;
        let mut removed = 0;
        for team_id in self.store.team_ids().await? {
            loop {
                let done = self
                    .store
                    .prune_events(team_id, before, PRUNE_BATCH)
                    .await?;
                removed += done;
                if done < PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    /// Apply the retention now and every few minutes, for as long as the process serves.
    pub async fn prune_events_forever(&self) {
        loop {
            match self.prune_events().await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "events past the retention removed"),
                Err(error) => tracing::warn!(%error, "removing old events failed"),
            }
            tokio::time::sleep(PRUNE_EVERY).await;
        }
    }
}
