//! The HTTP face of the service: routes, extractors, the envelope and error mapping.
//!
//! Handlers are thin: read the request ([`extract`]), call the [`Service`], shape the answer
//! ([`envelope`]). Nothing here knows about SQL.

mod console;
mod describe;
pub mod envelope;
pub mod extract;
mod form;
mod json;
mod metrics;
mod openapi;
mod routes;
mod scim;
mod server;
mod time;

pub use envelope::{Code, HttpStatus};
pub use metrics::metrics_router;
pub use server::{ClientAddress, ConnectionSettings, MAX_HEAD_BYTES, serve};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::FixedOffset;
use tower_http::catch_panic::CatchPanicLayer;

pub use self::routes::events::{EventData, webhook_worker};
pub use self::time::ApiTime;
use crate::metrics::Metrics;
use crate::service::Service;
use crate::snapshot::SnapshotLimits;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The offset of every time the API returns (stored times are UTC).
    pub time_offset: FixedOffset,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Limits of a snapshot sent to the sync route.
    pub sync_limits: SnapshotLimits,
    /// Longest time a sync body may take to arrive, from its first byte to its last.
    pub sync_body_timeout: Duration,
    /// HTTP 200 for every enveloped answer (the default), or the mapped statuses.
    pub http_status: HttpStatus,
    /// Whether `GET /metrics` is served beside the API (when the service records metrics and
    /// they are not served on an address of their own).
    pub metrics_route: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            time_offset: FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset"),
            body_limit: 1024 * 1024,
            sync_limits: SnapshotLimits::default(),
            sync_body_timeout: Duration::from_secs(300),
            http_status: HttpStatus::default(),
            metrics_route: true,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub settings: Arc<HttpSettings>,
}

impl AppState {
    /// A stored time (unix seconds) as answers show it.
    pub fn time(&self, unix_seconds: i64) -> ApiTime {
        ApiTime::new(unix_seconds, self.settings.time_offset)
    }
}

/// Every route of the contract, wrapped in the envelope middleware.
pub fn router(service: Arc<Service>, settings: HttpSettings) -> Router {
    let body_limit = settings.body_limit;
    let http_status = settings.http_status;
    let recorded = service.metrics().cloned();
    let scraped = match settings.metrics_route {
        true => metrics::route(&service),
        false => Router::new(),
    };
    let state = AppState {
        service,
        settings: Arc::new(settings),
    };
    let scim = metrics::count_scim(scim::routes(state.service.clone()), recorded.as_ref());
    let api = with_envelope(
        openapi::router()
            .merge(console::routes())
            .with_state(state)
            .merge(scraped)
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(axum::middleware::from_fn(run_writes_to_completion)),
        http_status,
        recorded,
    );
    // SCIM answers outside the envelope; every other request goes to the API.
    scim.layer(axum::middleware::from_fn(run_writes_to_completion))
        .fallback_service(api)
}

/// A write runs to its end even when its client goes away. The HTTP server drops a request's
/// future when the connection closes; a write dropped between its commit and the update of the
/// process's copy of the directory would leave the copy behind the database, and the next call
/// would reload the whole directory (seconds at a million members, every caller waiting).
async fn run_writes_to_completion(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        // Handed on to the panic layer, which answers it in the envelope.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// Wrap routes so that every response, a panic's included, gets the envelope and a log line,
/// and is counted in `metrics`.
fn with_envelope(router: Router, http_status: HttpStatus, metrics: Option<Arc<Metrics>>) -> Router {
    router
        .layer(CatchPanicLayer::custom(envelope::panic_response))
        .layer(axum::middleware::from_fn_with_state(
            envelope::EnvelopeState {
                mode: http_status,
                metrics,
            },
            envelope::envelope_middleware,
        ))
}

#[cfg(test)]
mod fuzzing;

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::routing::{get, post};
    use tower::ServiceExt;

    use super::*;

    fn with_write_guard(router: Router, http_status: HttpStatus) -> Router {
        with_envelope(
            router.layer(axum::middleware::from_fn(run_writes_to_completion)),
            http_status,
            None,
        )
    }

    #[tokio::test]
    async fn a_panic_is_answered_as_internal_in_the_envelope() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        // A read runs in the request's own task, a write in a task of its own.
        for (mode, status) in [
            (HttpStatus::Ok, StatusCode::OK),
            (HttpStatus::Mapped, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            let app = with_write_guard(Router::new().route("/boom", get(boom).post(boom)), mode);
            for request in [Request::get("/boom"), Request::post("/boom")] {
                let response = app
                    .clone()
                    .oneshot(request.body(Body::empty()).expect("request"))
                    .await
                    .expect("response");
                assert_eq!(response.status(), status);
                let header = response.headers()["x-request-id"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                let body = to_bytes(response.into_body(), 1 << 16).await.expect("body");
                let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
                assert_eq!(body["code"], "InternalServerError");
                assert_eq!(body["error"]["type"], "internal_error");
                assert_eq!(body["data"], serde_json::json!({}));
                assert_eq!(body["request_id"], header.as_str());
                assert!(
                    !body.to_string().contains("a bug"),
                    "panic details must not leak"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_write_goes_on_when_its_client_goes_away() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static DONE: AtomicBool = AtomicBool::new(false);
        async fn slow_write() -> StatusCode {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            DONE.store(true, Ordering::SeqCst);
            StatusCode::OK
        }
        let app = with_write_guard(
            Router::new().route("/write", post(slow_write)),
            HttpStatus::Ok,
        );
        let request = Request::post("/write")
            .body(Body::empty())
            .expect("request");
        // The client gives up after 10 ms: its request's future is dropped.
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(10), app.oneshot(request)).await;
        assert!(gave_up.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(DONE.load(Ordering::SeqCst), "the write was cut short");
    }
}
