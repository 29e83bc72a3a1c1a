//! SCIM 2.0 over HTTP (§12): `/scim/v2/…`, bearer SCIM tokens, `application/scim+json`,
//! errors as RFC 7644 §3.12 (never the WeSurvey envelope).

mod resources;

use resources::{Discovery, Resource};

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;

use crate::domain::RuleError;
use crate::domain::scim::ScimError;
use crate::service::scim::{Location, ScimFailure, Target};
use crate::service::{Service, ServiceError};
use crate::store::{StoreError, TeamRecord};

pub const CONTENT_TYPE: &str = "application/scim+json";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A JSON answer with the SCIM media type.
fn scim_json(status: StatusCode, body: &Value, etag: Option<&str>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

fn error_response(error: &ScimError) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": error.status.to_string(),
        "detail": error.detail,
    });
    if let Some(scim_type) = error.scim_type {
        body["scimType"] = json!(scim_type);
    }
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = scim_json(status, &body, None);
    if error.status == 401 {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Every failure below the SCIM layer as RFC 7644 answers it, in one place.
fn to_scim(failure: ScimFailure) -> ScimError {
    let service = match failure {
        ScimFailure::Scim(error) => return error,
        ScimFailure::Service(service) => service,
    };
    match service {
        ServiceError::Rule(rule) => match rule {
            RuleError::InvalidArgument(detail) => ScimError::invalid_value(detail),
            RuleError::GroupNotFound => ScimError::not_found("group not found"),
            RuleError::ParentGroupNotFound => {
                ScimError::invalid_value("the parent group does not exist")
            }
            RuleError::DuplicatedRemoteId => {
                ScimError::uniqueness("externalId is already used by another group")
            }
            RuleError::ContactsUserNotFound => ScimError::not_found("user not found"),
            other => ScimError::invalid_value(other.to_string()),
        },
        ServiceError::Subscription => {
            ScimError::status(403, "the org's plan does not include SCIM")
        }
        ServiceError::TeamNotFound | ServiceError::Claim => {
            ScimError::status(401, "missing, unknown or revoked SCIM token")
        }
        ServiceError::Busy | ServiceError::Store(StoreError::Unavailable) => {
            ScimError::status(503, "the directory is busy; retry")
        }
        other => {
            tracing::error!(error = %other, "SCIM request failed");
            ScimError::status(500, "internal error")
        }
    }
}

#[derive(Clone)]
struct ScimState {
    service: Arc<Service>,
}

/// What an authenticated SCIM request acts on: the directory its bearer token serves, and the
/// base URL of the locations it answers.
struct Scope {
    service: Arc<Service>,
    team: TeamRecord,
    location: Location,
}

impl Scope {
    /// The service, the team and the location base, as the service's SCIM calls take them.
    fn parts(&self) -> (&Service, &TeamRecord, &Location) {
        (&self.service, &self.team, &self.location)
    }

    /// The service, and the resource `id` of this scope's directory as a write names it, with
    /// the request's `If-Match` header.
    fn target<'a>(&'a self, id: &'a str, if_match: Option<&'a str>) -> (&'a Service, Target<'a>) {
        let target = Target {
            team: &self.team,
            id,
            if_match,
            location: &self.location,
        };
        (&self.service, target)
    }
}

/// The [`Scope`] of a request, or the answer refusing it.
async fn authenticate(state: &ScimState, headers: &HeaderMap) -> Result<Scope, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(error_response(&ScimError::status(
            401,
            "a SCIM bearer token is required",
        )));
    };
    let team = match state.service.scim_authenticate(&token).await {
        Ok(team) => team,
        Err(ScimFailure::Service(ServiceError::RateLimited { retry_after_secs })) => {
            let mut response =
                error_response(&ScimError::status(429, "too many requests; retry later"));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Err(response);
        }
        Err(failure) => return Err(error_response(&to_scim(failure))),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("localhost");
    Ok(Scope {
        service: state.service.clone(),
        team,
        location: Location(format!("http://{host}/scim/v2")),
    })
}

/// The body as JSON, or an `invalidSyntax` error.
fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

async fn unknown_route() -> Response {
    error_response(&ScimError::not_found("no such SCIM endpoint"))
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    error_response(&ScimError::status(500, "internal error"))
}

/// One log line per SCIM request, like the API's (no query string, no token).
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "-".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed_us = started.elapsed().as_micros() as u64;
    tracing::info!(%method, %route, status, elapsed_us, "scim request");
    response
}

/// The endpoints of one discovery collection under `base`.
fn discovery_routes(base: &str, discovery: Discovery) -> Router<ScimState> {
    Router::new()
        .route(base, get(resources::discovery_list))
        .route(&format!("{base}/{{id}}"), get(resources::discovery_one))
        .layer(Extension(discovery))
}

/// The endpoints of one resource type under `base`.
fn resource_routes(base: &str, resource: Resource) -> Router<ScimState> {
    Router::new()
        .route(base, get(resources::list_all).post(resources::create))
        .route(&format!("{base}/.search"), post(resources::search))
        .route(
            &format!("{base}/{{id}}"),
            get(resources::get_one)
                .put(resources::edit)
                .patch(resources::edit)
                .delete(resources::delete),
        )
        .layer(Extension(resource))
}

/// The `/scim/v2` routes, outside the envelope.
pub fn routes(service: Arc<Service>) -> Router {
    let state = ScimState { service };
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(resources::service_provider_config),
        )
        .merge(discovery_routes(
            "/scim/v2/ResourceTypes",
            Discovery::RESOURCE_TYPES,
        ))
        .merge(discovery_routes("/scim/v2/Schemas", Discovery::SCHEMAS))
        .route("/scim/v2/.search", post(resources::search_all))
        .merge(resource_routes("/scim/v2/Users", Resource::Users))
        .merge(resource_routes("/scim/v2/Groups", Resource::Groups))
        .route("/scim/v2", get(unknown_route))
        .route(
            "/scim/v2/{*rest}",
            get(unknown_route)
                .post(unknown_route)
                .put(unknown_route)
                .patch(unknown_route)
                .delete(unknown_route),
        )
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(log_request))
}
