//! The change feed (§11, an extension): a team's events after a cursor, with long-polling.

use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Answer, AppidQuery, TeamPath};
use crate::domain::RuleError;
use crate::domain::events::Event;
use crate::domain::values::EventSeq;
use crate::http::describe::{Success, failures, team};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{QueryParams, TeamCall};
use crate::http::{ApiTime, AppState};
use crate::service::Service;
use crate::service::webhooks::{RenderEvent, WebhookWorker};

/// The most events of one page.
const MAX_LIMIT: i64 = 1000;
/// The longest wait, in seconds.
const MAX_WAIT: i64 = 60;

type EventFeedAnswer = Success<EventFeedData>;

/// Who made a change.
#[derive(Serialize, ToSchema)]
#[schema(as = EventActor)]
pub struct ActorData {
    /// `app`, `sync`, `scim` or `admin`.
    kind: String,
    /// The app, for `app` and `sync`.
    appid: Option<String>,
}

/// What a change was about.
#[derive(Serialize, ToSchema)]
#[schema(as = EventObject)]
pub struct ObjectData {
    /// `group`, `member` (the id is the user id) or `directory` (a sync's summary).
    kind: String,
    id: Option<i64>,
    /// The group's remote id.
    remote_id: Option<String>,
}

/// One committed change.
#[derive(Serialize, ToSchema)]
#[schema(as = Event, example = json!({
    "seq": 42,
    "type": "group.updated",
    "time": "2021-06-24T18:24:45+08:00",
    "actor": {"kind": "app", "appid": "tpidk3v9q2xa"},
    "request_id": "3f2b8a4e-6a39-4c3e-9d3e-0b8f3f7e2a11",
    "object": {"kind": "group", "id": 7, "remote_id": "sales"},
    "before": {"name": "Sales"},
    "after": {"name": "Sales EMEA"}
}))]
pub struct EventData {
    /// The team's sequence number: 1, 2, 3, ... without gaps.
    #[schema(value_type = i64)]
    seq: EventSeq,
    /// `group.created`, `group.updated`, `group.deleted`, `member.added`, `member.updated`,
    /// `member.removed` or `sync.applied`.
    #[serde(rename = "type")]
    event_type: String,
    #[schema(value_type = String, format = DateTime)]
    time: ApiTime,
    actor: ActorData,
    /// The id of the request that made the change (`null` for SCIM and the command line).
    request_id: Option<String>,
    object: ObjectData,
    /// The changed fields before the change; `null` for a creation.
    #[schema(value_type = Option<Object>)]
    before: Option<Box<RawValue>>,
    /// The changed fields after the change; `null` for a deletion. A sync's summary holds its
    /// report.
    #[schema(value_type = Option<Object>)]
    after: Option<Box<RawValue>>,
}

/// A page of the feed.
#[derive(Serialize, ToSchema)]
#[schema(as = EventFeed)]
pub struct EventFeedData {
    list: Vec<EventData>,
    /// The cursor to pass as `after` next: the last event's `seq`, or `after` when none.
    #[schema(value_type = i64)]
    next: EventSeq,
}

/// The query of the feed (read by [`list_events`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query string; list_events reads it")]
pub struct EventsQuery {
    /// Events numbered after this one (the `next` of the previous page; 0 from the start).
    #[param(minimum = 0, default = 0)]
    after: Option<i64>,
    /// The most events answered.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// Seconds to hold the call until an event exists, when none is pending.
    #[param(minimum = 0, maximum = 60, default = 0)]
    wait: Option<i64>,
}

failures!(EventFailures: team;
    ApiError::invalid("limit must be 1 to 1000"),
    RuleError::EventsExpired { resume_after: EventSeq::new(42) },
);

/// The change feed.
///
/// Every committed change of the directory, in order, after the cursor `after`. With `wait`,
/// the call is held until at least one event exists or the time is up (then `list` is empty).
/// A cursor older than the retention answers `events_expired`: read the directory again and
/// continue from the current `next`. An extension.
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/events",
    tag = "events",
    params(TeamPath, EventsQuery, AppidQuery),
    responses(
        (status = 200, description = "Events in order.", body = EventFeedAnswer),
        EventFailures,
    ),
)]
pub async fn list_events(TeamCall(state, caller, team_id): TeamCall, query: QueryParams) -> Answer {
    let within = |name: &str, default: i64, low: i64, high: i64| match query.int(name)? {
        None => Ok(default),
        Some(value) if (low..=high).contains(&value) => Ok(value),
        Some(_) => Err(ApiError::invalid(format!("{name} must be {low} to {high}"))),
    };
    let after = EventSeq::new(within("after", 0, 0, i64::MAX)?);
    let limit = within("limit", 100, 1, MAX_LIMIT)?;
    let wait = Duration::from_secs(within("wait", 0, 0, MAX_WAIT)? as u64);
    let feed = state
        .service
        .events(&caller, team_id, after, limit, wait)
        .await?;
    let list = feed
        .events
        .into_iter()
        .map(|event| EventData::new(event, state.settings.time_offset))
        .collect::<Result<_, _>>()
        .map_err(|error| ApiError::internal(format!("stored event JSON: {error}")))?;
    Reply::data(&EventFeedData {
        list,
        next: feed.next,
    })
}

impl EventData {
    /// An event as the feed shows it, its time at `offset` (the command line shows it too).
    pub fn new(event: Event, offset: FixedOffset) -> Result<EventData, serde_json::Error> {
        let raw = |json: Option<String>| json.map(RawValue::from_string).transpose();
        Ok(EventData {
            seq: event.seq,
            event_type: event.event_type,
            time: ApiTime::new(event.time, offset),
            actor: ActorData {
                kind: event.actor_kind,
                appid: event.appid,
            },
            request_id: event.request_id,
            object: ObjectData {
                kind: event.object_kind,
                id: event.object_id,
                remote_id: event.remote_id,
            },
            before: raw(event.before)?,
            after: raw(event.after)?,
        })
    }
}

/// The webhook delivery worker of `service`, its events rendered as the feed shows them, with
/// times at `offset`.
pub fn webhook_worker(service: Arc<Service>, offset: FixedOffset) -> Result<WebhookWorker, String> {
    let render: RenderEvent = Arc::new(move |event| {
        let data = EventData::new(event, offset).map_err(|error| error.to_string())?;
        serde_json::to_string(&data).map_err(|error| error.to_string())
    });
    WebhookWorker::new(service, render)
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}
