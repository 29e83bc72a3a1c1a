//! Webhook subscriptions (§11, an extension): create, list, get, update (pause, resume),
//! delete, their recent deliveries, and replay from an event.

use axum::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Answer, AppidQuery, EmptyAnswer, ListData, TeamPath};
use crate::domain::RuleError;
use crate::domain::values::{EventSeq, WebhookId};
use crate::domain::webhooks::{DeliveryRecord, Webhook, WebhookState};
use crate::http::describe::{Success, failures, team, team_body};
use crate::http::envelope::Reply;
use crate::http::extract::{RequestBody, TeamCall};
use crate::http::{ApiTime, AppState};
use crate::service::WebhookRequest;

type WebhookAnswer = Success<WebhookData>;
type WebhookListAnswer = Success<ListData<WebhookData>>;
type DeliveryListAnswer = Success<ListData<DeliveryData>>;

/// What a subscription listens to.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = WebhookOptions, example = json!({"listenedResources": ["group", "member"]}))]
pub struct OptionsData {
    /// Some of `group`, `member` and `sync` (the event types' prefixes); all three by default.
    #[serde(rename = "listenedResources")]
    #[schema(min_items = 1, value_type = Vec<ResourceName>)]
    listened_resources: Vec<String>,
}

/// A resource a webhook can listen to.
#[derive(ToSchema)]
#[schema(as = WebhookResource)]
#[allow(
    dead_code,
    reason = "describes the names; OptionsData reads them as strings"
)]
pub enum ResourceName {
    #[schema(rename = "group")]
    Group,
    #[schema(rename = "member")]
    Member,
    #[schema(rename = "sync")]
    Sync,
}

/// A webhook subscription.
#[derive(Serialize, ToSchema)]
#[schema(as = Webhook, example = json!({
    "id": 1,
    "object": "Team_1",
    "url": "https://hooks.example.com/contactsd",
    "secret": "8dJ2kQ0vX5mP1rT7yW3zB6nC9fH4gL2aS0eU5iO8",
    "is_active": true,
    "options": {"listenedResources": ["group", "member", "sync"]},
    "status": "active",
    "last_error": null,
    "acked_seq": 42,
    "next_attempt_at": null,
    "created_at": "2026-11-28T20:28:23+08:00",
    "updated_at": "2026-11-28T20:28:23+08:00"
}))]
pub struct WebhookData {
    #[schema(value_type = i64)]
    id: WebhookId,
    /// `Team_<team_id>`.
    object: String,
    url: String,
    /// The key of the deliveries' signatures.
    secret: String,
    /// Whether it is delivered to: `false` once paused by a client or after failing for the
    /// whole retry budget.
    is_active: bool,
    options: OptionsData,
    /// `active`, `retrying` (active, the last attempts failed; see `last_error`) or `paused`.
    status: &'static str,
    /// Why the last attempt failed, until one succeeds.
    last_error: Option<String>,
    /// The last event acknowledged by the receiver (or skipped as not listened to).
    #[schema(value_type = i64)]
    acked_seq: EventSeq,
    /// When the next attempt is due, while retrying.
    #[schema(value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<ApiTime>,
    #[schema(value_type = String, format = DateTime)]
    created_at: ApiTime,
    #[schema(value_type = String, format = DateTime)]
    updated_at: ApiTime,
}

impl WebhookData {
    fn new(state: &AppState, webhook: Webhook) -> WebhookData {
        let status = match (webhook.state, webhook.attempts) {
            (WebhookState::Paused, _) => "paused",
            (WebhookState::Active, 0) => "active",
            (WebhookState::Active, _) => "retrying",
        };
        WebhookData {
            id: webhook.id,
            object: format!("Team_{}", webhook.team_id),
            url: webhook.url,
            secret: webhook.secret,
            is_active: webhook.state == WebhookState::Active,
            options: OptionsData {
                listened_resources: webhook
                    .listened
                    .resources()
                    .iter()
                    .map(|resource| resource.as_str().to_owned())
                    .collect(),
            },
            status,
            last_error: webhook.last_error,
            acked_seq: webhook.acked_seq,
            next_attempt_at: (status == "retrying")
                .then(|| state.time(webhook.next_attempt_at / 1000)),
            created_at: state.time(webhook.created_at),
            updated_at: state.time(webhook.updated_at),
        }
    }
}

/// The subscription named in the path, after the team.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookPath {
    /// The subscription's id.
    #[param(value_type = i64)]
    webhook_id: WebhookId,
}

/// A new subscription; only `url` is required.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({
    "url": "https://hooks.example.com/contactsd",
    "is_active": true,
    "options": {"listenedResources": ["group", "member", "sync"]}
}))]
pub struct NewWebhookBody {
    /// An absolute `http` or `https` URL of at most 2048 bytes, whose host does not resolve to
    /// a loopback, private, link-local or metadata address.
    #[schema(required = true, nullable = false, max_length = 2048)]
    url: Option<String>,
    /// 16 to 256 printable ASCII characters; generated (40 letters and digits) when absent.
    #[schema(min_length = 16, max_length = 256, pattern = "^[!-~]+$")]
    secret: Option<String>,
    /// Default `true`.
    is_active: Option<bool>,
    /// Default: every resource.
    options: Option<OptionsData>,
}

/// A subscription's fields to change: only those given change.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"is_active": true}))]
pub struct WebhookBody {
    /// As at creation.
    #[schema(max_length = 2048)]
    url: Option<String>,
    /// As at creation (never generated on update).
    #[schema(min_length = 16, max_length = 256, pattern = "^[!-~]+$")]
    secret: Option<String>,
    /// `true` resumes a paused subscription at once; `false` pauses it.
    is_active: Option<bool>,
    options: Option<OptionsData>,
}

impl From<NewWebhookBody> for WebhookBody {
    fn from(body: NewWebhookBody) -> WebhookBody {
        WebhookBody {
            url: body.url,
            secret: body.secret,
            is_active: body.is_active,
            options: body.options,
        }
    }
}

impl WebhookBody {
    fn request(self) -> WebhookRequest {
        WebhookRequest {
            url: self.url,
            secret: self.secret,
            is_active: self.is_active,
            listened: self.options.map(|options| options.listened_resources),
        }
    }
}

/// One delivery attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery, example = json!({
    "id": "0b7f6a52-3c1e-4f7e-9b8a-2f1d6c0e4a93",
    "time": "2026-11-28T20:28:23+08:00",
    "status": 500,
    "latency_ms": 35,
    "error": "the receiver answered HTTP 500",
    "first_seq": 41,
    "last_seq": 42,
    "events": 2
}))]
pub struct DeliveryData {
    /// The `X-Contactsd-Delivery` header sent.
    id: String,
    #[schema(value_type = String, format = DateTime)]
    time: ApiTime,
    /// The receiver's HTTP status; `null` when it did not answer.
    status: Option<i64>,
    latency_ms: i64,
    /// Why it failed; `null` on success.
    error: Option<String>,
    #[schema(value_type = i64)]
    first_seq: EventSeq,
    #[schema(value_type = i64)]
    last_seq: EventSeq,
    /// Events in the batch.
    events: i64,
}

impl DeliveryData {
    fn new(state: &AppState, record: DeliveryRecord) -> DeliveryData {
        DeliveryData {
            id: record.delivery_id,
            time: state.time(record.time / 1000),
            status: record.status,
            latency_ms: record.latency_ms,
            error: record.error,
            first_seq: record.first_seq,
            last_seq: record.last_seq,
            events: record.events,
        }
    }
}

/// Where to deliver again from.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"after": 40}))]
pub struct ReplayBody {
    /// Events numbered after this one are delivered again (0: every event kept).
    #[schema(value_type = i64, minimum = 0)]
    after: EventSeq,
}

failures!(CreateWebhookFailures: team_body;
    RuleError::invalid("url must use http or https"),
    RuleError::WebhookLimitReached { most: 10 },
);

/// Subscribe a URL to the team's events (an extension).
///
/// Events committed after the subscription are delivered to `url` in order, in batches
/// signed with `secret` (docs/EVENTS.md shows how to verify them).
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/webhooks",
    tag = "events",
    params(TeamPath, AppidQuery),
    request_body = NewWebhookBody,
    responses(
        (status = 200, description = "The subscription.", body = WebhookAnswer),
        CreateWebhookFailures,
    ),
)]
pub async fn create_webhook(
    TeamCall(state, caller, team_id): TeamCall,
    RequestBody(body): RequestBody<NewWebhookBody>,
) -> Answer {
    let webhook = state
        .service
        .create_webhook(&caller, team_id, WebhookBody::from(body).request())
        .await?;
    Reply::data(&WebhookData::new(&state, webhook))
}

failures!(ListWebhooksFailures: team;);

/// List the team's webhook subscriptions (an extension).
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/webhooks",
    tag = "events",
    params(TeamPath, AppidQuery),
    responses(
        (status = 200, description = "Every subscription, by id.", body = WebhookListAnswer),
        ListWebhooksFailures,
    ),
)]
pub async fn list_webhooks(TeamCall(state, caller, team_id): TeamCall) -> Answer {
    let webhooks = state.service.webhooks(&caller, team_id).await?;
    Reply::data(&ListData::whole(
        webhooks
            .into_iter()
            .map(|webhook| WebhookData::new(&state, webhook)),
    ))
}

failures!(GetWebhookFailures: team; RuleError::WebhookNotFound);

/// Get a webhook subscription (an extension).
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/webhooks/{webhook_id}",
    tag = "events",
    params(TeamPath, WebhookPath, AppidQuery),
    responses(
        (status = 200, description = "The subscription.", body = WebhookAnswer),
        GetWebhookFailures,
    ),
)]
pub async fn get_webhook(
    TeamCall(state, caller, team_id): TeamCall,
    Path(WebhookPath { webhook_id: id }): Path<WebhookPath>,
) -> Answer {
    let webhook = state.service.webhook(&caller, team_id, id).await?;
    Reply::data(&WebhookData::new(&state, webhook))
}

failures!(UpdateWebhookFailures: team_body;
    RuleError::invalid("url must use http or https"),
    RuleError::WebhookNotFound,
);

/// Update a webhook subscription (an extension).
///
/// Only the fields given change. `is_active: false` pauses it; `is_active: true` resumes it,
/// with its next attempt at once.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/webhooks/{webhook_id}",
    tag = "events",
    params(TeamPath, WebhookPath, AppidQuery),
    request_body = WebhookBody,
    responses(
        (status = 200, description = "The subscription as changed.", body = WebhookAnswer),
        UpdateWebhookFailures,
    ),
)]
pub async fn update_webhook(
    TeamCall(state, caller, team_id): TeamCall,
    Path(WebhookPath { webhook_id: id }): Path<WebhookPath>,
    RequestBody(body): RequestBody<WebhookBody>,
) -> Answer {
    let webhook = state
        .service
        .update_webhook(&caller, team_id, id, body.request())
        .await?;
    Reply::data(&WebhookData::new(&state, webhook))
}

/// Delete a webhook subscription and its delivery log (an extension).
#[utoipa::path(
    delete,
    path = "/api/contacts/teams/{team_id}/webhooks/{webhook_id}",
    tag = "events",
    params(TeamPath, WebhookPath, AppidQuery),
    responses(
        (status = 200, description = "Deleted.", body = EmptyAnswer),
        GetWebhookFailures,
    ),
)]
pub async fn delete_webhook(
    TeamCall(state, caller, team_id): TeamCall,
    Path(WebhookPath { webhook_id: id }): Path<WebhookPath>,
) -> Answer {
    state.service.delete_webhook(&caller, team_id, id).await?;
    Ok(Reply::empty())
}

/// A webhook subscription's recent delivery attempts, newest first (an extension).
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/webhooks/{webhook_id}/deliveries",
    tag = "events",
    params(TeamPath, WebhookPath, AppidQuery),
    responses(
        (status = 200, description = "The last 50 attempts at most.", body = DeliveryListAnswer),
        GetWebhookFailures,
    ),
)]
pub async fn list_deliveries(
    TeamCall(state, caller, team_id): TeamCall,
    Path(WebhookPath { webhook_id: id }): Path<WebhookPath>,
) -> Answer {
    let records = state
        .service
        .webhook_deliveries(&caller, team_id, id)
        .await?;
    Reply::data(&ListData::whole(
        records
            .into_iter()
            .map(|record| DeliveryData::new(&state, record)),
    ))
}

failures!(ReplayWebhookFailures: team_body;
    RuleError::invalid("after must be at most the team's last event, 42"),
    RuleError::EventsExpired { resume_after: EventSeq::new(42) },
    RuleError::WebhookNotFound,
);

/// Deliver a webhook subscription's events again from a point (an extension).
///
/// Its cursor moves to `after`: the events after it are delivered again, in order, starting
/// at once (a paused subscription starts when resumed).
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/webhooks/{webhook_id}/replay",
    tag = "events",
    params(TeamPath, WebhookPath, AppidQuery),
    request_body = ReplayBody,
    responses(
        (status = 200, description = "The subscription with its cursor moved.", body = WebhookAnswer),
        ReplayWebhookFailures,
    ),
)]
pub async fn replay_webhook(
    TeamCall(state, caller, team_id): TeamCall,
    Path(WebhookPath { webhook_id: id }): Path<WebhookPath>,
    RequestBody(body): RequestBody<ReplayBody>,
) -> Answer {
    let webhook = state
        .service
        .replay_webhook(&caller, team_id, id, body.after)
        .await?;
    Reply::data(&WebhookData::new(&state, webhook))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(replay_webhook))
}
