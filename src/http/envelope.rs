//! The response envelope of §2, the mapping of every error to its `code`, `error.type` and
//! mapped HTTP status, and the middleware that gives each request its id and its log line.
//!
//! Handlers never write a body themselves: they return a [`Reply`] or an [`ApiError`], which
//! leave an [`Outcome`] on the response; the middleware turns it into the envelope once the
//! request id is known. A response without an outcome (an unknown route, a wrong method, a
//! caught panic) is given one from its status, so every response has the envelope.
//!
//! Every answer carries its mapped HTTP status up to the middleware, which sends HTTP 200 for
//! every enveloped answer in the default [`HttpStatus::Ok`] mode (what the reference service's
//! clients expect) and the mapped status in [`HttpStatus::Mapped`] mode.

use std::any::Any;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::json::{JsonText, JsonWriter};
use crate::domain::RuleError;
use crate::domain::sync::SyncRefusal;
use crate::metrics::{Answered, Metrics};
use crate::service::{QuotaKind, ServiceError};
use crate::snapshot::SnapshotError;
use crate::store::StoreError;

/// The `code` of an answer: the reference service's set (`RemoteServerError` aside, which
/// nothing here can answer). This enum is the only place these strings exist, so no other code
/// can reach a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok,
    InvalidArgument,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    ResourceExhausted,
    InternalServerError,
    NoRoute,
}

impl Code {
    /// Every code an answer can carry.
    pub const ALL: [Code; 8] = [
        Code::Ok,
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::NotFound,
        Code::AlreadyExists,
        Code::ResourceExhausted,
        Code::InternalServerError,
        Code::NoRoute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::InvalidArgument => "InvalidArgument",
            Code::PermissionDenied => "PermissionDenied",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::InternalServerError => "InternalServerError",
            Code::NoRoute => "NoRoute",
        }
    }
}

/// The HTTP status of enveloped answers (§2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HttpStatus {
    /// HTTP 200 for every enveloped answer; `code` tells success from failure (the default,
    /// the Tencent Open API convention).
    #[default]
    Ok,
    /// The status of the contract's "mapped HTTP" column (400, 401, 403, 404, 409, 429, ...).
    Mapped,
}

impl FromStr for HttpStatus {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "200" | "ok" => Ok(HttpStatus::Ok),
            "mapped" => Ok(HttpStatus::Mapped),
            _ => Err(format!("{raw:?} is not an HTTP status mode: 200 or mapped")),
        }
    }
}

/// What a handler decided; rendered into the envelope by [`envelope_middleware`].
#[derive(Debug, Clone)]
struct Outcome {
    code: Code,
    error_type: &'static str,
    /// A human-readable reason for failures (an extension of the envelope: `error.message`).
    message: Option<String>,
    data: JsonText,
}

/// Marks a response whose status is sent in both modes (`/healthz`).
#[derive(Debug, Clone, Copy)]
struct StatusInEveryMode;

/// Details of an internal failure, logged under the request id and never sent.
#[derive(Debug, Clone)]
struct InternalDetail(String);

/// A successful answer: HTTP 200, `code: "OK"`, and `data`.
pub struct Reply(JsonText);

impl Reply {
    pub fn data(data: &impl Serialize) -> Result<Reply, ApiError> {
        JsonText::of(data)
            .map(Reply)
            .map_err(|error| ApiError::internal(error.to_string()))
    }

    /// `data` written by hand (see [`super::json`]).
    pub fn json(data: JsonText) -> Reply {
        Reply(data)
    }

    /// `data: {}` for writes that return nothing.
    pub fn empty() -> Reply {
        Reply(JsonText::empty_object())
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = StatusCode::OK.into_response();
        response.extensions_mut().insert(Outcome {
            code: Code::Ok,
            error_type: "",
            message: None,
            data: self.0,
        });
        response
    }
}

/// A failed answer, with everything the envelope needs.
#[derive(Debug)]
pub struct ApiError {
    /// The mapped status (sent as it is only in [`HttpStatus::Mapped`] mode).
    status: StatusCode,
    code: Code,
    error_type: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    internal: Option<String>,
    /// Details for the client (only the sync extension sends any: `data.problems`).
    data: Option<Box<JsonText>>,
    /// Sent with its status in both modes (only `/healthz` is).
    status_in_every_mode: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: Code, error_type: &'static str, message: String) -> Self {
        ApiError {
            status,
            code,
            error_type,
            message,
            retry_after_secs: None,
            internal: None,
            data: None,
            status_in_every_mode: false,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "invalid_argument",
            message.into(),
        )
    }

    pub fn too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::InvalidArgument,
            "invalid_argument",
            "the request body is too large".to_owned(),
        )
    }

    /// The answer on a connection beyond the server's connection limit.
    pub fn too_many_connections() -> ApiError {
        ApiError::busy("the server has too many open connections; retry later".to_owned())
    }

    /// A refusal that a retry a second later may not meet: the type clients already retry on
    /// (`request_rate_limited`, with `Retry-After`). Nothing of the request was stored.
    pub fn busy(message: String) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::ResourceExhausted,
            "request_rate_limited",
            message,
        );
        error.retry_after_secs = Some(1);
        error
    }

    pub fn internal(detail: String) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::InternalServerError,
            "internal_error",
            "internal error".to_owned(),
        );
        error.internal = Some(detail);
        error
    }

    /// `/healthz` when the database does not answer: HTTP 503 in both modes.
    pub fn unavailable() -> ApiError {
        let mut error = ApiError::internal("the database does not answer".to_owned());
        error.status = StatusCode::SERVICE_UNAVAILABLE;
        error.status_in_every_mode = true;
        error
    }

    /// The envelope's `code`.
    pub fn code(&self) -> Code {
        self.code
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code, error_type) = match error {
            RuleError::InvalidArgument(_) => {
                (S::BAD_REQUEST, Code::InvalidArgument, "invalid_argument")
            }
            RuleError::GroupNotFound => (S::NOT_FOUND, Code::NotFound, "contacts_group_not_found"),
            RuleError::ParentGroupNotFound => {
                (S::NOT_FOUND, Code::NotFound, "parent_group_not_found")
            }
            RuleError::ContactsUserNotFound => {
                (S::NOT_FOUND, Code::NotFound, "contacts_user_not_found")
            }
            RuleError::DuplicatedRemoteId => {
                (S::CONFLICT, Code::AlreadyExists, "duplicated_remote_id")
            }
            RuleError::ContactsUserExisted => {
                (S::CONFLICT, Code::AlreadyExists, "contacts_user_existed")
            }
            // State conflicts: InvalidArgument in the reference code set, 409 when mapped.
            RuleError::GroupTooDeep => (S::CONFLICT, Code::InvalidArgument, "group_too_deep"),
            RuleError::DefaultGroupModified => (
                S::CONFLICT,
                Code::InvalidArgument,
                "default_group_be_modified",
            ),
            RuleError::GroupNotEmpty => (S::CONFLICT, Code::InvalidArgument, "group_not_empty"),
            RuleError::GroupCycle => (S::CONFLICT, Code::InvalidArgument, "group_cycle"),
            RuleError::ExceedUserLimit => (S::CONFLICT, Code::InvalidArgument, "exceed_user_limit"),
            RuleError::EventsExpired { .. } => {
                (S::BAD_REQUEST, Code::InvalidArgument, "events_expired")
            }
            RuleError::WebhookNotFound => (S::NOT_FOUND, Code::NotFound, "webhook_not_found"),
            RuleError::WebhookLimitReached { .. } => (
                S::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                "webhook_quota_exceeded",
            ),
        };
        ApiError::new(status, code, error_type, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code, error_type) = match error {
            ServiceError::Rule(rule) => return rule.into(),
            // Every token problem is one type, so that clients renew their token and retry.
            ServiceError::MissingAccessToken
            | ServiceError::InvalidAccessToken
            | ServiceError::AccessTokenExpired => {
                (S::UNAUTHORIZED, Code::PermissionDenied, "invalid_token")
            }
            ServiceError::InvalidCredential => (
                S::UNAUTHORIZED,
                Code::PermissionDenied,
                "invalid_credential",
            ),
            ServiceError::Claim => (S::FORBIDDEN, Code::PermissionDenied, "claim_error"),
            ServiceError::Subscription => (
                S::FORBIDDEN,
                Code::PermissionDenied,
                "invalid_org_subscription",
            ),
            ServiceError::TeamNotFound => (S::NOT_FOUND, Code::NotFound, "contacts_team_not_found"),
            ServiceError::UserNotFound => (S::NOT_FOUND, Code::NotFound, "user_not_found"),
            ServiceError::OrgNotFound => (S::NOT_FOUND, Code::NotFound, "org_not_found"),
            ServiceError::OrgResourceExhausted => (
                S::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                "org_resource_exhausted",
            ),
            ServiceError::QuotaExceeded(kind) => (
                S::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                match kind {
                    QuotaKind::Groups => "group_quota_exceeded",
                    QuotaKind::Members => "member_quota_exceeded",
                    QuotaKind::Orgs => "org_quota_exceeded",
                },
            ),
            ServiceError::RateLimited { retry_after_secs } => {
                let mut error = ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    Code::ResourceExhausted,
                    "request_rate_limited",
                    message,
                );
                error.retry_after_secs = Some(retry_after_secs);
                return error;
            }
            ServiceError::SyncInProgress(_) => (
                S::TOO_MANY_REQUESTS,
                Code::ResourceExhausted,
                "sync_in_progress",
            ),
            ServiceError::SyncRefused(refusal) => return sync_refusal(refusal),
            ServiceError::Busy | ServiceError::Store(StoreError::Unavailable) => {
                return ApiError::busy(message);
            }
            ServiceError::Store(_) => return ApiError::internal(message),
        };
        ApiError::new(status, code, error_type, message)
    }
}

/// A snapshot that could not be read: too large (413 when mapped), too slow to arrive, or not
/// a snapshot within the contract's limits (400); all `invalid_argument`.
impl From<SnapshotError> for ApiError {
    fn from(error: SnapshotError) -> Self {
        let status = match error {
            SnapshotError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            SnapshotError::TimedOut(_) | SnapshotError::Invalid(_) | SnapshotError::Read(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        ApiError::new(
            status,
            Code::InvalidArgument,
            "invalid_argument",
            error.to_string(),
        )
    }
}

/// A refused sync: the snapshot's problems, or the brake's figures, in `data`.
fn sync_refusal(refusal: SyncRefusal) -> ApiError {
    let (mut error, data) = match refusal {
        SyncRefusal::Problems(problems) => (
            ApiError::invalid(format!("the snapshot has {} problem(s)", problems.len())),
            serde_json::json!({ "problems": problems }),
        ),
        SyncRefusal::TooManyDeletes { groups, members } => (
            ApiError::new(
                StatusCode::CONFLICT,
                Code::InvalidArgument,
                "sync_deletes_too_many",
                "the snapshot would delete too much; set allow_mass_delete to proceed".to_owned(),
            ),
            serde_json::json!({ "groups_to_delete": groups, "members_to_remove": members }),
        ),
    };
    error.data = JsonText::of(&data).ok().map(Box::new);
    error
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if self.status_in_every_mode {
            response.extensions_mut().insert(StatusInEveryMode);
        }
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(detail) = self.internal {
            response.extensions_mut().insert(InternalDetail(detail));
        }
        response.extensions_mut().insert(Outcome {
            code: self.code,
            error_type: self.error_type,
            message: Some(self.message),
            data: self.data.map_or_else(JsonText::empty_object, |data| *data),
        });
        response
    }
}

/// The outcome of a response that no handler described (unknown route, wrong method, limits of
/// the HTTP stack, a caught panic).
fn outcome_from_status(status: StatusCode) -> Outcome {
    let (code, error_type, message) = match status {
        StatusCode::NOT_FOUND => (Code::NoRoute, "no_route", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            Code::NoRoute,
            "no_route",
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            Code::InvalidArgument,
            "invalid_argument",
            "the request body is too large",
        ),
        status if status.is_client_error() => (
            Code::InvalidArgument,
            "invalid_argument",
            "the request is malformed",
        ),
        _ => (
            Code::InternalServerError,
            "internal_error",
            "internal error",
        ),
    };
    Outcome {
        code,
        error_type,
        message: Some(message.to_owned()),
        data: JsonText::empty_object(),
    }
}

impl Outcome {
    /// `{"code":…,"error":{"type":…,"message":…},"data":…,"request_id":…}`, with `data` as
    /// the handler wrote it.
    fn envelope(&self, request_id: &str) -> Vec<u8> {
        let mut json = JsonWriter::with_capacity(
            self.data.as_bytes().len() + self.message.as_ref().map_or(0, String::len) + 128,
        );
        json.raw("{\"code\":");
        json.str(self.code.as_str());
        json.raw(",\"error\":{\"type\":");
        json.str(self.error_type);
        if let Some(message) = &self.message {
            json.raw(",\"message\":");
            json.str(message);
        }
        json.raw("},\"data\":");
        json.bytes(self.data.as_bytes());
        json.raw(",\"request_id\":");
        json.str(request_id);
        json.raw("}");
        json.into_bytes()
    }
}

/// The envelope the middleware would send for `response` under `request_id`. The API
/// description renders its examples with this, so they are the answers the server gives.
pub(crate) fn rendered(response: &Response, request_id: &str) -> serde_json::Value {
    let fallback;
    let outcome = match response.extensions().get::<Outcome>() {
        Some(outcome) => outcome,
        None => {
            fallback = outcome_from_status(response.status());
            &fallback
        }
    };
    serde_json::from_slice(&outcome.envelope(request_id)).unwrap_or_default()
}

/// The request id of a request: a valid incoming `x-request-id` UUID, or a fresh one.
fn request_id_of(request: &Request) -> Uuid {
    request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| Uuid::parse_str(value).ok())
        .unwrap_or_else(Uuid::new_v4)
}

/// The id of the request being served, for handlers (changes store it with their events).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What [`envelope_middleware`] needs: the HTTP status mode, and where requests are counted
/// (`None`: metrics off, or answers not worth counting).
#[derive(Clone)]
pub struct EnvelopeState {
    pub mode: HttpStatus,
    pub metrics: Option<Arc<Metrics>>,
}

/// Gives every request its id, renders the envelope (with HTTP 200 in [`HttpStatus::Ok`] mode),
/// writes one log line per request and counts it in the metrics (by route template, never the
/// raw path). The query string is never logged: it carries secrets and tokens.
pub async fn envelope_middleware(
    State(EnvelopeState { mode, metrics }): State<EnvelopeState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&request).to_string();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();

    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let outcome = parts.extensions.remove::<Outcome>();
    let mut outcome_code = outcome.as_ref().map(|outcome| outcome.code);
    let response = match outcome {
        None if parts.status == StatusCode::OK => {
            // A handler that writes its own body (health, documents): pass it through.
            Response::from_parts(parts, body)
        }
        outcome => {
            let outcome = outcome.unwrap_or_else(|| outcome_from_status(parts.status));
            outcome_code = Some(outcome.code);
            let bytes = outcome.envelope(&request_id);
            if mode == HttpStatus::Ok && parts.extensions.get::<StatusInEveryMode>().is_none() {
                parts.status = StatusCode::OK;
            }
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes))
        }
    };
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-request-id", value);
    }
    let status = parts.status.as_u16();
    let code = outcome_code.map_or("-", Code::as_str);
    // Whole microseconds: an integer is written at a fraction of a float's cost, and this line
    // is written for every request.
    let elapsed = started.elapsed();
    let elapsed_us = elapsed.as_micros() as u64;
    if let Some(metrics) = &metrics {
        metrics.request(Answered {
            method: &method,
            route: matched.as_ref().map(MatchedPath::as_str),
            code: outcome_code.map(Code::as_str),
            status,
            elapsed,
        });
    }
    let route = matched.as_ref().map_or("-", MatchedPath::as_str);
    if let Some(InternalDetail(detail)) = parts.extensions.remove::<InternalDetail>() {
        tracing::error!(%request_id, %method, %route, status, code, detail, "request failed");
    }
    tracing::info!(%request_id, %method, %route, status, code, elapsed_us, "request");
    Response::from_parts(parts, body)
}

/// Turns a caught panic into an `InternalServerError` answer; the middleware logs it with the request id.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::internal(format!("panic: {detail}")).into_response()
}
