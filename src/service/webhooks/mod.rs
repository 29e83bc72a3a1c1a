//! Webhook subscriptions (§11): creating, reading, changing, deleting and replaying a team's
//! subscriptions, with their settings. Delivery is [`deliver`]'s, signing [`sign`]'s, and the
//! check of where a URL leads (no loopback, private or metadata addresses) [`guard`]'s.

mod deliver;
mod guard;
pub mod sign;

use std::time::Duration;

pub use deliver::{RenderEvent, WebhookWorker};

use super::auth::random_webhook_secret;
use super::{Service, ServiceResult, unix_now};
use crate::domain::RuleError;
use crate::domain::access::Caller;
use crate::domain::values::{EventSeq, TeamId, WebhookId};
use crate::domain::webhooks::{
    DeliveryRecord, Listened, Webhook, WebhookState, check_secret, check_url,
};
use crate::store::webhooks::{NewWebhook, WebhookUpdate};

/// Settings of webhook subscriptions and their delivery.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow targets on loopback, private, link-local and metadata addresses.
    pub allow_private: bool,
    /// Subscriptions one team may hold.
    pub max_per_team: usize,
    /// How long a receiver has to answer a delivery.
    pub timeout: Duration,
    /// How long a failing subscription is retried before it is paused.
    pub retry_budget: Duration,
    /// The first wait after a failure; it doubles with each further failure, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries in flight in one process.
    pub workers: usize,
    /// Deliveries in flight for one team, across processes (below `workers`, so that one
    /// team's slow receivers cannot take every worker).
    pub workers_per_team: usize,
    /// The most events in one delivery.
    pub batch_events: i64,
    /// The most bytes of events in one delivery (one larger event goes alone).
    pub batch_bytes: usize,
    /// Attempts kept in each subscription's log.
    pub keep_deliveries: i64,
    /// How often the worker looks for due deliveries besides the wake-ups of this process's
    /// commits (commits by other processes, retries coming due).
    pub poll: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            max_per_team: 10,
            timeout: Duration::from_secs(10),
            retry_budget: Duration::from_secs(24 * 3600),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3600),
            workers: 16,
            workers_per_team: 2,
            batch_events: 100,
            batch_bytes: 1 << 20,
            keep_deliveries: 50,
            poll: Duration::from_millis(500),
        }
    }
}

/// A subscription's fields as a client sends them (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub is_active: Option<bool>,
    pub listened: Option<Vec<String>>,
}

impl Service {
    /// Create a subscription of `team_id` (its cursor: the team's last event).
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        team_id: TeamId,
        request: WebhookRequest,
    ) -> ServiceResult<Webhook> {
        self.team_for(caller, team_id).await?;
        let url = request
            .url
            .ok_or_else(|| RuleError::invalid("url is required"))?;
        let update = checked(WebhookRequest {
            url: Some(url),
            ..request
        })?;
        let new = NewWebhook {
            url: update.url.clone().unwrap_or_default(),
            secret: update.secret.unwrap_or_else(random_webhook_secret),
            state: update.state.unwrap_or(WebhookState::Active),
            listened: update.listened.unwrap_or_else(Listened::all),
        };
        guard::vet(&new.url, self.settings.webhooks.allow_private).await?;
        let most = self.settings.webhooks.max_per_team;
        self.store
            .create_webhook(team_id, &new, most as i64, unix_now())
            .await?
            .ok_or_else(|| RuleError::WebhookLimitReached { most }.into())
    }

    pub async fn webhooks(&self, caller: &Caller, team_id: TeamId) -> ServiceResult<Vec<Webhook>> {
        self.team_for(caller, team_id).await?;
        Ok(self.store.webhooks(team_id).await?)
    }

    pub async fn webhook(
        &self,
        caller: &Caller,
        team_id: TeamId,
        id: WebhookId,
    ) -> ServiceResult<Webhook> {
        self.team_for(caller, team_id).await?;
        found(self.store.webhook(team_id, id).await?)
    }

    /// Change any field; `is_active: true` resumes a paused subscription at once.
    pub async fn update_webhook(
        &self,
        caller: &Caller,
        team_id: TeamId,
        id: WebhookId,
        request: WebhookRequest,
    ) -> ServiceResult<Webhook> {
        self.team_for(caller, team_id).await?;
        let update = checked(request)?;
        if let Some(url) = &update.url {
            guard::vet(url, self.settings.webhooks.allow_private).await?;
        }
        found(
            self.store
                .update_webhook(team_id, id, &update, unix_now())
                .await?,
        )
    }

    pub async fn delete_webhook(
        &self,
        caller: &Caller,
        team_id: TeamId,
        id: WebhookId,
    ) -> ServiceResult<()> {
        self.team_for(caller, team_id).await?;
        if self.store.delete_webhook(team_id, id).await? {
            Ok(())
        } else {
            Err(RuleError::WebhookNotFound.into())
        }
    }

    /// The subscription's recent attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        team_id: TeamId,
        id: WebhookId,
    ) -> ServiceResult<Vec<DeliveryRecord>> {
        self.team_for(caller, team_id).await?;
        found(self.store.deliveries(team_id, id).await?)
    }

    /// Deliver again every event after `after` (which must be 0 or more and within the feed:
    /// not past its last event, nor before what retention removed).
    pub async fn replay_webhook(
        &self,
        caller: &Caller,
        team_id: TeamId,
        id: WebhookId,
        after: EventSeq,
    ) -> ServiceResult<Webhook> {
        if after.get() < 0 {
            return Err(RuleError::invalid("after must be 0 or more").into());
        }
        self.team_for(caller, team_id).await?;
        let bounds = self
            .store
            .events(team_id, after, 0)
            .await?
            .ok_or(super::ServiceError::TeamNotFound)?;
        if after > bounds.last_seq {
            return Err(RuleError::invalid(format!(
                "after must be at most the team's last event, {}",
                bounds.last_seq
            ))
            .into());
        }
        if after < bounds.pruned_through {
            let resume_after = bounds.last_seq;
            return Err(RuleError::EventsExpired { resume_after }.into());
        }
        found(
            self.store
                .replay_webhook(team_id, id, after, unix_now())
                .await?,
        )
    }
}

/// The fields of a request, checked (the URL's addresses are vetted separately).
fn checked(request: WebhookRequest) -> ServiceResult<WebhookUpdate> {
    if let Some(url) = &request.url {
        check_url(url)?;
    }
    if let Some(secret) = &request.secret {
        check_secret(secret)?;
    }
    let listened = request
        .listened
        .map(|names| Listened::from_names(&names))
        .transpose()?;
    Ok(WebhookUpdate {
        url: request.url,
        secret: request.secret,
        state: request.is_active.map(|active| {
            if active {
                WebhookState::Active
            } else {
                WebhookState::Paused
            }
        }),
        listened,
    })
}

fn found<T>(value: Option<T>) -> ServiceResult<T> {
    value.ok_or_else(|| RuleError::WebhookNotFound.into())
}
