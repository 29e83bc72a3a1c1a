//! The HTTP face of the service: routes, extractors, the envelope and error mapping.
//!
//! Handlers are thin: read the request ([`extract`]), call the [`Service`], shape the answer
//! ([`envelope`]). Nothing here knows about SQL.

mod console;
pub mod envelope;
pub mod extract;
mod json;
mod openapi;
mod routes;
mod server;
pub mod sync;
mod time;

pub use server::{ConnectionSettings, serve};

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::FixedOffset;
use tower_http::catch_panic::CatchPanicLayer;

pub use self::time::ApiTime;
use crate::service::Service;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The offset of every time the API returns (stored times are UTC).
    pub time_offset: FixedOffset,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Largest accepted snapshot for the sync route, in bytes after decompression.
    pub sync_body_limit: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            time_offset: FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset"),
            body_limit: 1024 * 1024,
            sync_body_limit: 512 * 1024 * 1024,
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
    let state = AppState {
        service,
        settings: Arc::new(settings),
    };
    let router = Router::new()
        .route("/healthz", get(routes::health))
        .route("/api/oauth2/access_token", get(routes::issue_token))
        .route("/api/orgs", post(routes::create_org))
        .route("/api/orgs/{org_id}", get(routes::get_org))
        .route("/api/sso/users", post(routes::register_user))
        .route(
            "/api/sso/users/{openid}",
            get(routes::get_user).post(routes::update_user),
        )
        .route(
            "/api/contacts/teams/{team_id}/groups",
            get(routes::list_groups).post(routes::create_group),
        )
        .route(
            "/api/contacts/teams/{team_id}/sync",
            post(sync::sync_directory),
        )
        .route(
            "/api/contacts/teams/{team_id}/groups/batch_delete",
            post(routes::delete_groups),
        )
        .route(
            "/api/contacts/teams/{team_id}/groups/{group_id}",
            get(routes::get_group).post(routes::update_group),
        )
        .route(
            "/api/contacts/teams/{team_id}/groups/{group_id}/users",
            get(routes::list_members),
        )
        .route(
            "/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}",
            post(routes::add_member).delete(routes::remove_member),
        )
        .route(
            "/api/contacts/teams/{team_id}/users/{user_id}",
            post(routes::update_member),
        )
        .merge(openapi::routes())
        .merge(console::routes())
        .with_state(state);
    with_envelope(
        router
            .layer(DefaultBodyLimit::max(body_limit))
            .layer(axum::middleware::from_fn(run_writes_to_completion)),
    )
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

/// Wrap routes so that every response, a panic's included, gets the envelope and a log line.
fn with_envelope(router: Router) -> Router {
    router
        .layer(CatchPanicLayer::custom(envelope::panic_response))
        .layer(axum::middleware::from_fn(envelope::envelope_middleware))
}

#[cfg(test)]
mod fuzzing;

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;

    use super::*;

    fn with_write_guard(router: Router) -> Router {
        with_envelope(router.layer(axum::middleware::from_fn(run_writes_to_completion)))
    }

    #[tokio::test]
    async fn a_panic_is_answered_as_internal_in_the_envelope() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        // A read runs in the request's own task, a write in a task of its own.
        let app = with_write_guard(Router::new().route("/boom", get(boom).post(boom)));
        for request in [Request::get("/boom"), Request::post("/boom")] {
            let response = app
                .clone()
                .oneshot(request.body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let header = response.headers()["x-request-id"]
                .to_str()
                .expect("ascii")
                .to_owned();
            let body = to_bytes(response.into_body(), 1 << 16).await.expect("body");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(body["code"], "Internal");
            assert_eq!(body["error"]["type"], "internal");
            assert_eq!(body["data"], serde_json::json!({}));
            assert_eq!(body["request_id"], header.as_str());
            assert!(
                !body.to_string().contains("a bug"),
                "panic details must not leak"
            );
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
        let app = with_write_guard(Router::new().route("/write", post(slow_write)));
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
