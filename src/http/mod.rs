//! The HTTP face of the service: routes, extractors, the envelope and error mapping.
//!
//! Handlers are thin: read the request ([`extract`]), call the [`Service`], shape the answer
//! ([`envelope`]). Nothing here knows about SQL.

pub mod envelope;
pub mod extract;
mod json;
mod openapi;
mod routes;
mod server;
pub mod sync;

pub use server::{ConnectionSettings, serve};

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset};
use tower_http::catch_panic::CatchPanicLayer;

use self::json::JsonWriter;
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
        ApiTime {
            unix_seconds,
            offset: self.settings.time_offset,
        }
    }
}

/// A time as the API writes it: RFC 3339 in the configured offset with second precision, e.g.
/// `2021-06-24T18:24:45+08:00`. A page of groups holds twenty times, so each is written into
/// a buffer on the stack and then into the answer as one string: chrono's formatter and a
/// `String` per time took a seventh of a listing's instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTime {
    unix_seconds: i64,
    offset: FixedOffset,
}

/// `YYYY-MM-DDTHH:MM:SS+HH:MM`.
const API_TIME_LEN: usize = 25;

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01: the
/// well-known `civil_from_days` computation (eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl ApiTime {
    /// The text in `buffer` (ASCII), or `None` for a year outside 0..=9999 (never a stored
    /// time).
    fn write<'b>(&self, buffer: &'b mut [u8; API_TIME_LEN]) -> Option<&'b [u8]> {
        let offset = self.offset.local_minus_utc();
        let local = self.unix_seconds.checked_add(i64::from(offset))?;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400));
        let year = u32::try_from(year).ok().filter(|year| *year <= 9999)?;
        let second_of_day = local.rem_euclid(86_400) as u32;
        let offset_minutes = offset.unsigned_abs() / 60;
        let two = |value: u32| [b'0' + (value / 10 % 10) as u8, b'0' + (value % 10) as u8];
        let [y0, y1] = two(year / 100);
        let [y2, y3] = two(year % 100);
        let [mo0, mo1] = two(month);
        let [d0, d1] = two(day);
        let [h0, h1] = two(second_of_day / 3600);
        let [mi0, mi1] = two(second_of_day / 60 % 60);
        let [s0, s1] = two(second_of_day % 60);
        let [oh0, oh1] = two(offset_minutes / 60);
        let [om0, om1] = two(offset_minutes % 60);
        let sign = if offset < 0 { b'-' } else { b'+' };
        *buffer = [
            y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0,
            s1, sign, oh0, oh1, b':', om0, om1,
        ];
        Some(buffer)
    }

    /// The time as a JSON string, straight into `json` (it needs no escaping).
    pub(crate) fn write_json(&self, json: &mut JsonWriter) {
        let mut buffer = [0; API_TIME_LEN];
        match self.write(&mut buffer) {
            Some(text) => {
                json.raw("\"");
                json.bytes(text);
                json.raw("\"");
            }
            None => json.str(&self.to_string()),
        }
    }
}

impl std::fmt::Display for ApiTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut buffer = [0; API_TIME_LEN];
        match self
            .write(&mut buffer)
            .and_then(|text| std::str::from_utf8(text).ok())
        {
            Some(text) => f.write_str(text),
            None => f.write_str(
                &DateTime::from_timestamp(self.unix_seconds, 0)
                    .unwrap_or_default()
                    .with_timezone(&self.offset)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            ),
        }
    }
}

impl serde::Serialize for ApiTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0; API_TIME_LEN];
        match self
            .write(&mut buffer)
            .and_then(|text| std::str::from_utf8(text).ok())
        {
            Some(text) => serializer.serialize_str(text),
            None => serializer.collect_str(self),
        }
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

    proptest::proptest! {
        #[test]
        fn times_are_written_as_chrono_writes_them(
            unix_seconds in -62_167_219_200_i64..253_402_300_800,
            offset_minutes in -(23 * 60 + 59)..(23 * 60 + 59),
        ) {
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("offset");
            let expected = DateTime::from_timestamp(unix_seconds, 0)
                .expect("time")
                .with_timezone(&offset)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            proptest::prop_assert_eq!(ApiTime { unix_seconds, offset }.to_string(), expected);
        }
    }

    #[test]
    fn times_are_rfc3339_in_the_configured_offset() {
        let at = |unix_seconds, offset| ApiTime {
            unix_seconds,
            offset: FixedOffset::east_opt(offset).expect("offset"),
        };
        for (unix_seconds, offset) in [
            (1_624_530_285, 8 * 3600),
            (0, 0),
            (1_700_000_000, -(5 * 3600 + 30 * 60)),
            (4_102_444_799, 14 * 3600),
            (253_402_300_799, 0),
            (253_402_300_800, 0),
            (-62_167_219_201, 0),
        ] {
            let expected = DateTime::from_timestamp(unix_seconds, 0)
                .expect("time")
                .with_timezone(&FixedOffset::east_opt(offset).expect("offset"))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
            assert_eq!(at(unix_seconds, offset).to_string(), expected);
        }
        assert_eq!(
            at(1_624_530_285, 8 * 3600).to_string(),
            "2021-06-24T18:24:45+08:00"
        );
        assert_eq!(
            serde_json::to_string(&at(0, 0)).expect("json"),
            "\"1970-01-01T00:00:00+00:00\""
        );
    }

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
