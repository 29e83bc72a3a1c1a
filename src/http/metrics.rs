//! `GET /metrics`: the service's metrics in the Prometheus text format, beside the API or on an
//! address of its own ([`metrics_router`]); and the counting of SCIM requests, which answer
//! outside the envelope (and its counting).
//!
//! The route is open, like `/healthz`: its labels name route templates, codes and outcomes,
//! never a team, an app or a path, so it tells a caller nothing about any tenant. In production
//! serve it on a private address (`--metrics-listen`) so that it stays off the public listener.
//! It is not an operation of the contract and is not in the OpenAPI document.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{HttpStatus, with_envelope};
use crate::metrics::{self, Answered, Metrics};
use crate::service::Service;

/// `GET /metrics` of `service`, or no route when it records no metrics.
pub(super) fn route(service: &Arc<Service>) -> Router {
    if service.metrics().is_none() {
        return Router::new();
    }
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(service.clone())
}

/// The router of a listener that serves `GET /metrics` only (anything else: `no_route` in the
/// envelope).
pub fn metrics_router(service: &Arc<Service>, http_status: HttpStatus) -> Router {
    with_envelope(route(service), http_status, service.metrics().cloned())
}

async fn scrape(State(service): State<Arc<Service>>) -> Response {
    match service.render_metrics().await {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `scim` with its requests counted in `metrics` (by route template and HTTP status).
pub(super) fn count_scim(scim: Router, metrics: Option<&Arc<Metrics>>) -> Router {
    match metrics {
        Some(metrics) => scim.layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            count_request,
        )),
        None => scim,
    }
}

async fn count_request(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.request(Answered {
        method: &method,
        route: matched.as_ref().map(MatchedPath::as_str),
        code: None,
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    });
    response
}
