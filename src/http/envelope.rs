//! The response envelope of §2, the mapping of every error to its `code`, `error.type` and
//! HTTP status, and the middleware that gives each request its id and its log line.
//!
//! Handlers never write a body themselves: they return a [`Reply`] or an [`ApiError`], which
//! leave an [`Outcome`] on the response; the middleware turns it into the envelope once the
//! request id is known. A response without an outcome (an unknown route, a wrong method, a
//! caught panic) is given one from its status, so every response has the envelope.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::json::{JsonText, JsonWriter};
use crate::domain::RuleError;
use crate::domain::sync::SyncRefusal;
use crate::service::{QuotaKind, ServiceError};

/// What a handler decided; rendered into the envelope by [`envelope_middleware`].
#[derive(Debug, Clone)]
struct Outcome {
    code: &'static str,
    error_type: &'static str,
    /// A human-readable reason for failures (an extension of the envelope: `error.message`).
    message: Option<String>,
    data: JsonText,
}

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
            code: "OK",
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
    status: StatusCode,
    code: &'static str,
    error_type: &'static str,
    message: String,
    retry_after_secs: Option<u64>,
    internal: Option<String>,
    /// Details for the client (only the sync extension sends any: `data.problems`).
    data: Option<Box<JsonText>>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        code: &'static str,
        error_type: &'static str,
        message: String,
    ) -> Self {
        ApiError {
            status,
            code,
            error_type,
            message,
            retry_after_secs: None,
            internal: None,
            data: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "invalid_argument",
            message.into(),
        )
    }

    pub fn too_large() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidArgument",
            "invalid_argument",
            "the request body is too large".to_owned(),
        )
    }

    /// The answer on a connection beyond the server's connection limit.
    pub fn too_many_connections() -> ApiError {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "ResourceExhausted",
            "request_rate_limited",
            "the server has too many open connections; retry later".to_owned(),
        );
        error.retry_after_secs = Some(1);
        error
    }

    pub fn internal(detail: String) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            "internal",
            "internal error".to_owned(),
        );
        error.internal = Some(detail);
        error
    }

    pub fn unavailable() -> ApiError {
        let mut error = ApiError::internal("the database does not answer".to_owned());
        error.status = StatusCode::SERVICE_UNAVAILABLE;
        error
    }
}

impl From<RuleError> for ApiError {
    fn from(error: RuleError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        let (status, code, error_type) = match error {
            RuleError::InvalidArgument(_) => {
                (S::BAD_REQUEST, "InvalidArgument", "invalid_argument")
            }
            RuleError::GroupNotFound => (S::NOT_FOUND, "NotFound", "contacts_group_not_found"),
            RuleError::ParentGroupNotFound => (S::NOT_FOUND, "NotFound", "parent_group_not_found"),
            RuleError::ContactsUserNotFound => {
                (S::NOT_FOUND, "NotFound", "contacts_user_not_found")
            }
            RuleError::DuplicatedRemoteId => (S::CONFLICT, "AlreadyExists", "duplicated_remote_id"),
            RuleError::ContactsUserExisted => {
                (S::CONFLICT, "AlreadyExists", "contacts_user_existed")
            }
            RuleError::GroupTooDeep => (S::CONFLICT, "FailedPrecondition", "group_too_deep"),
            RuleError::DefaultGroupModified => (
                S::CONFLICT,
                "FailedPrecondition",
                "default_group_be_modified",
            ),
            RuleError::GroupNotEmpty => (S::CONFLICT, "FailedPrecondition", "group_not_empty"),
            RuleError::GroupCycle => (S::CONFLICT, "FailedPrecondition", "group_cycle"),
            RuleError::ExceedUserLimit => (S::CONFLICT, "FailedPrecondition", "exceed_user_limit"),
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
            ServiceError::InvalidAccessToken => {
                (S::UNAUTHORIZED, "Unauthenticated", "invalid_access_token")
            }
            ServiceError::AccessTokenExpired => {
                (S::UNAUTHORIZED, "Unauthenticated", "access_token_expired")
            }
            ServiceError::InvalidCredential => {
                (S::UNAUTHORIZED, "Unauthenticated", "invalid_credential")
            }
            ServiceError::Claim => (S::FORBIDDEN, "PermissionDenied", "claim_error"),
            ServiceError::Subscription => {
                (S::FORBIDDEN, "PermissionDenied", "invalid_org_subscription")
            }
            ServiceError::TeamNotFound => (S::NOT_FOUND, "NotFound", "contacts_team_not_found"),
            ServiceError::UserNotFound => (S::NOT_FOUND, "NotFound", "user_not_found"),
            ServiceError::OrgNotFound => (S::NOT_FOUND, "NotFound", "org_not_found"),
            ServiceError::OrgResourceExhausted => (
                S::TOO_MANY_REQUESTS,
                "ResourceExhausted",
                "org_resource_exhausted",
            ),
            ServiceError::QuotaExceeded(kind) => (
                S::TOO_MANY_REQUESTS,
                "ResourceExhausted",
                match kind {
                    QuotaKind::Groups => "group_quota_exceeded",
                    QuotaKind::Members => "member_quota_exceeded",
                    QuotaKind::Orgs => "org_quota_exceeded",
                },
            ),
            ServiceError::RateLimited { retry_after_secs } => {
                let mut error = ApiError::new(
                    S::TOO_MANY_REQUESTS,
                    "ResourceExhausted",
                    "request_rate_limited",
                    message,
                );
                error.retry_after_secs = Some(retry_after_secs);
                return error;
            }
            ServiceError::SyncRefused(refusal) => return sync_refusal(refusal),
            ServiceError::Busy | ServiceError::Store(_) => return ApiError::internal(message),
        };
        ApiError::new(status, code, error_type, message)
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
                "FailedPrecondition",
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
        StatusCode::NOT_FOUND => ("NotFound", "not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "InvalidArgument",
            "invalid_argument",
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "InvalidArgument",
            "invalid_argument",
            "the request body is too large",
        ),
        status if status.is_client_error() => (
            "InvalidArgument",
            "invalid_argument",
            "the request is malformed",
        ),
        _ => ("Internal", "internal", "internal error"),
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
        json.str(self.code);
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

/// Gives every request its id, renders the envelope, and writes one log line per request.
/// The query string is never logged: it carries secrets and tokens.
pub async fn envelope_middleware(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(&request).to_string();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();

    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let outcome = parts.extensions.remove::<Outcome>();
    let response = match outcome {
        None if parts.status == StatusCode::OK => {
            // A handler that writes its own body (health, documents): pass it through.
            Response::from_parts(parts, body)
        }
        outcome => {
            let outcome = outcome.unwrap_or_else(|| outcome_from_status(parts.status));
            let bytes = outcome.envelope(&request_id);
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
    // Whole microseconds: an integer is written at a fraction of a float's cost, and this line
    // is written for every request.
    let elapsed_us = started.elapsed().as_micros() as u64;
    let route = matched.as_ref().map_or("-", MatchedPath::as_str);
    if let Some(InternalDetail(detail)) = parts.extensions.remove::<InternalDetail>() {
        tracing::error!(%request_id, %method, %route, status, detail, "request failed");
    }
    tracing::info!(%request_id, %method, %route, status, elapsed_us, "request");
    Response::from_parts(parts, body)
}

/// Turns a caught panic into an `Internal` answer; the middleware logs it with the request id.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    ApiError::internal(format!("panic: {detail}")).into_response()
}
