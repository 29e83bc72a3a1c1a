//! The harness: the real service on `127.0.0.1:0` with a fresh database per test, typed request
//! helpers, and the envelope checks that every answer goes through.
//!
//! Every answer is checked on arrival ([`TestApp::send`]): it is JSON with `code`, `error.type`,
//! `data` and `request_id`, the `x-request-id` header equals the body's `request_id`, and the
//! HTTP status is the one §2 of the contract gives for the `code`. Tests then state what they
//! expect with [`assert_ok`] or [`assert_error`].

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use contactsd::domain::access::Plan;
use contactsd::http::{ConnectionSettings, HttpSettings, HttpStatus, router};
use contactsd::service::{Service, ServiceSettings};
use contactsd::store::StoreSettings;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

/// A builder of HTTP clients for the tests. The build's HTTP client takes its TLS
/// cryptography from the process-wide provider, installed here (once) as `contactsd serve`
/// does.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// An HTTP client for the tests (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .build()
        .expect("an HTTP client with the default settings")
}

/// Name of the org (and so of its directory) every test app starts with.
pub const TEAM_NAME: &str = "Acme";

/// Environment variable naming a PostgreSQL server to test against instead of SQLite.
pub const DATABASE_URL_VAR: &str = "CONTACTSD_TEST_DATABASE_URL";

// ----- databases ----------------------------------------------------------------------------

/// A database that belongs to one test (and to the replicas of its server).
pub struct TestDatabase {
    pub url: String,
    /// Keeps the SQLite file's folder alive as long as the test runs.
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A brand-new, empty database: SQLite in a temporary folder by default, or a fresh
    /// database on the PostgreSQL server named by `CONTACTSD_TEST_DATABASE_URL`.
    pub async fn fresh() -> TestDatabase {
        match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => TestDatabase::fresh_postgres(url.trim()).await,
            _ => TestDatabase::fresh_sqlite(),
        }
    }

    fn fresh_sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("could not create a temporary folder for SQLite");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        TestDatabase {
            url,
            _dir: Some(dir),
        }
    }

    /// Create `contactsd_test_<uuid>` on the server of `server_url` and point at it. The
    /// databases are left behind for inspection; the CI's throwaway cluster removes them.
    async fn fresh_postgres(server_url: &str) -> TestDatabase {
        use sqlx::Connection;
        let name = format!("contactsd_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::postgres::PgConnection::connect(server_url)
            .await
            .unwrap_or_else(|error| {
                panic!("{DATABASE_URL_VAR}: cannot connect to {server_url}: {error}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("cannot create test database {name}: {error}"));
        let _ = admin.close().await;
        TestDatabase {
            url: with_database_name(server_url, &name),
            _dir: None,
        }
    }
}

/// `postgres://user@host:5432/postgres?sslmode=disable` with its database replaced by `name`.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

// ----- the app under test -------------------------------------------------------------------

/// An app's credentials as `admin create-*` prints them.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    pub appid: String,
    pub secret: String,
}

/// An org created for a test, with its directory and team app.
#[derive(Debug, Clone)]
pub struct TestOrg {
    pub org_id: i64,
    pub team_id: i64,
    pub appid: String,
    pub secret: String,
}

/// Settings of a test app; [`TestApp::spawn`] uses the defaults (no rate limits).
pub struct TestAppBuilder {
    service: ServiceSettings,
    http: HttpSettings,
    connections: ConnectionSettings,
    plan: Plan,
    admin_seats: i64,
    metrics: bool,
    /// Run the webhook delivery worker, as `contactsd serve` does.
    webhook_worker: bool,
    store: StoreSettings,
}

impl TestAppBuilder {
    /// Webhook settings, with the delivery worker running.
    pub fn webhooks(mut self, webhooks: contactsd::service::WebhookSettings) -> Self {
        self.service.webhooks = webhooks;
        self.webhook_worker = true;
        self
    }

    pub fn connections(mut self, connections: ConnectionSettings) -> Self {
        self.connections = ConnectionSettings {
            http_status: self.http.http_status,
            ..connections
        };
        self
    }

    /// Answer in this HTTP status mode, whatever `CONTACTSD_TEST_HTTP_STATUS` says.
    pub fn http_status(mut self, mode: HttpStatus) -> Self {
        self.http.http_status = mode;
        self.connections.http_status = mode;
        self
    }

    /// How long a write waits for the database's write path before it is refused as busy.
    pub fn write_wait(mut self, wait: std::time::Duration) -> Self {
        self.store.write_wait = wait;
        self
    }

    pub fn token_ttl(mut self, seconds: u64) -> Self {
        self.service.token_ttl = seconds;
        self
    }

    /// Trust token and team records for `ttl` (as `contactsd serve` does by default).
    pub fn read_cache(mut self, ttl: std::time::Duration) -> Self {
        self.service.read_cache_ttl = ttl;
        self
    }

    /// Budget of the directory cache, in estimated bytes.
    pub fn cache_memory(mut self, bytes: usize) -> Self {
        self.service.cache_memory = bytes;
        self
    }

    /// Default quotas of teams and platform apps.
    pub fn quotas(mut self, quotas: contactsd::service::QuotaSettings) -> Self {
        self.service.quotas = quotas;
        self
    }

    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.service.rate_limit = per_second;
        self
    }

    pub fn token_rate_limit(mut self, per_minute: u32) -> Self {
        self.service.token_rate_limit = per_minute;
        self
    }

    /// Syncs in flight in the process and per team.
    pub fn max_syncs(mut self, process: usize, per_team: usize) -> Self {
        self.service.max_syncs = process;
        self.service.max_syncs_per_team = per_team;
        self
    }

    pub fn token_failure_limit(mut self, per_minute: u32) -> Self {
        self.service.token_failure_limit = per_minute;
        self
    }

    pub fn events(mut self, events: contactsd::service::EventSettings) -> Self {
        self.service.events = events;
        self
    }

    pub fn max_group_depth(mut self, depth: u32) -> Self {
        self.service.max_group_depth = depth;
        self
    }

    /// Plan of the org the app starts with.
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// Admin seats of the org the app starts with.
    pub fn admin_seats(mut self, seats: i64) -> Self {
        self.admin_seats = seats;
        self
    }

    pub fn time_offset(mut self, offset: FixedOffset) -> Self {
        self.http.time_offset = offset;
        self
    }

    /// Record metrics and serve `GET /metrics` (on by default, as `contactsd serve` does).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let database = Arc::new(TestDatabase::fresh().await);
        let service = open_service(
            &database.url,
            &self.store,
            self.service.clone(),
            self.metrics,
        )
        .await;
        let (org, credentials) = service
            .create_org_with_app(&org_name(TEAM_NAME), self.plan, self.admin_seats)
            .await
            .unwrap_or_else(|error| panic!("could not create the test org: {error}"));
        let connections = ConnectionSettings {
            metrics: service.metrics().cloned(),
            ..self.connections
        };
        let address = serve(service.clone(), self.http.clone(), connections.clone()).await;
        if self.webhook_worker {
            let worker = contactsd::http::webhook_worker(service.clone(), self.http.time_offset)
                .unwrap_or_else(|error| panic!("{error}"));
            tokio::spawn(worker.run());
        }
        TestApp {
            address,
            client: http_client(),
            service,
            org_id: org.org_id.get(),
            team_id: org.team_id.get(),
            appid: credentials.appid,
            secret: credentials.secret,
            settings: self.service,
            store: self.store,
            http: self.http,
            connections,
            metrics: self.metrics,
            database,
        }
    }
}

async fn open_service(
    url: &str,
    store: &StoreSettings,
    settings: ServiceSettings,
    metrics: bool,
) -> Arc<Service> {
    let store = contactsd::store::open(url, store)
        .await
        .unwrap_or_else(|error| panic!("could not open the test database {url}: {error}"));
    let service = Service::new(store, settings);
    Arc::new(match metrics {
        true => service.with_metrics(Arc::new(contactsd::metrics::Metrics::new())),
        false => service,
    })
}

/// Serve the real router on a free local port in the background, through the same connection
/// layer as `contactsd serve`; returns `http://ip:port`.
async fn serve(
    service: Arc<Service>,
    settings: HttpSettings,
    connections: ConnectionSettings,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("could not bind 127.0.0.1:0");
    let address = listener
        .local_addr()
        .expect("bound listener has an address");
    let app = router(service, settings);
    tokio::spawn(contactsd::http::serve(
        listener,
        app,
        connections,
        std::future::pending(),
    ));
    format!("http://{address}")
}

/// One running server with its own fresh database, and a team app on a business-plan org
/// named [`TEAM_NAME`].
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub service: Arc<Service>,
    pub org_id: i64,
    pub team_id: i64,
    pub appid: String,
    pub secret: String,
    settings: ServiceSettings,
    store: StoreSettings,
    http: HttpSettings,
    connections: ConnectionSettings,
    metrics: bool,
    database: Arc<TestDatabase>,
}

/// An answer whose envelope is already checked.
#[derive(Debug)]
pub struct ApiResponse {
    /// `METHOD path` of the request, for failure messages.
    pub request: String,
    /// The answer's status in mapped mode: the HTTP status itself in that mode; in the default
    /// mode, where every answer is HTTP 200, the status its `code` and `error.type` map to.
    /// Either way the real status was checked against the envelope.
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            service: ServiceSettings {
                rate_limit: 0,
                token_rate_limit: 0,
                ..ServiceSettings::default()
            },
            http: HttpSettings {
                http_status: test_http_status(),
                ..HttpSettings::default()
            },
            connections: ConnectionSettings {
                http_status: test_http_status(),
                ..ConnectionSettings::default()
            },
            plan: Plan::Business,
            admin_seats: 10,
            metrics: true,
            webhook_worker: false,
            store: StoreSettings::default(),
        }
    }

    /// The URL of the app's database.
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    /// A second server process on the same database (own caches, own rate limits), as when
    /// several instances share one database.
    pub async fn replica(&self) -> TestApp {
        let service = open_service(
            &self.database.url,
            &self.store,
            self.settings.clone(),
            self.metrics,
        )
        .await;
        let connections = ConnectionSettings {
            metrics: service.metrics().cloned(),
            ..self.connections.clone()
        };
        let address = serve(service.clone(), self.http.clone(), connections.clone()).await;
        TestApp {
            address,
            client: http_client(),
            service,
            org_id: self.org_id,
            team_id: self.team_id,
            appid: self.appid.clone(),
            secret: self.secret.clone(),
            settings: self.settings.clone(),
            store: self.store.clone(),
            http: self.http.clone(),
            connections,
            metrics: self.metrics,
            database: self.database.clone(),
        }
    }

    /// Another org with its directory and team app, as `admin create-org` makes it.
    pub async fn create_org(&self, name: &str, plan: Plan, admin_seats: i64) -> TestOrg {
        let (org, credentials) = self
            .service
            .create_org_with_app(&org_name(name), plan, admin_seats)
            .await
            .unwrap_or_else(|error| panic!("could not create org {name}: {error}"));
        TestOrg {
            org_id: org.org_id.get(),
            team_id: org.team_id.get(),
            appid: credentials.appid,
            secret: credentials.secret,
        }
    }

    /// A platform app, as `admin create-platform-app` makes it.
    pub async fn create_platform_app(&self, name: &str) -> AppCredentials {
        let credentials = self
            .service
            .create_platform_app(name)
            .await
            .unwrap_or_else(|error| panic!("could not create platform app {name}: {error}"));
        AppCredentials {
            appid: credentials.appid,
            secret: credentials.secret,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.address)
    }

    /// Send a request and check the envelope of its answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> ApiResponse {
        let request = request.build().expect("a well-formed test request");
        let described = format!(
            "{} {}",
            request.method(),
            request
                .url()
                .as_str()
                .strip_prefix(&self.address)
                .unwrap_or(request.url().as_str())
        );
        let response = self
            .client
            .execute(request)
            .await
            .unwrap_or_else(|error| panic!("{described}: no answer: {error}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|error| panic!("{described}: body unreadable: {error}"));
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{described}: answer {status} is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let status = check_envelope(&described, status, &headers, &body, self.http.http_status);
        ApiResponse {
            request: described,
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path_and_query: &str) -> ApiResponse {
        self.send(self.client.get(self.url(path_and_query))).await
    }

    pub async fn post_json(&self, path_and_query: &str, body: &Value) -> ApiResponse {
        self.send(self.client.post(self.url(path_and_query)).json(body))
            .await
    }

    /// A POST whose body is sent byte for byte with `content-type: application/json`.
    pub async fn post_raw(&self, path_and_query: &str, body: impl Into<String>) -> ApiResponse {
        self.send(
            self.client
                .post(self.url(path_and_query))
                .header(CONTENT_TYPE, "application/json")
                .body(body.into()),
        )
        .await
    }

    pub async fn delete(&self, path_and_query: &str) -> ApiResponse {
        self.send(self.client.delete(self.url(path_and_query)))
            .await
    }

    /// The token call, as it is.
    pub async fn token_response(&self, appid: &str, secret: &str, grant_type: &str) -> ApiResponse {
        self.get(&format!(
            "/api/oauth2/access_token?appid={}&secret={}&grant_type={}",
            encode(appid),
            encode(secret),
            encode(grant_type)
        ))
        .await
    }

    /// A fresh token of an app (which supersedes its earlier ones).
    pub async fn token(&self, appid: &str, secret: &str) -> String {
        let response = self
            .token_response(appid, secret, "client_credential")
            .await;
        let data = assert_ok(&response);
        data["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token call without access_token: {}", response.body))
            .to_owned()
    }

    /// A caller for `appid`, with a fresh token.
    pub async fn login(&self, appid: &str, secret: &str) -> Api<'_> {
        let token = self.token(appid, secret).await;
        Api::new(self, appid, &token)
    }

    /// A caller for the team app of the test's org.
    pub async fn team_api(&self) -> Api<'_> {
        self.login(&self.appid, &self.secret).await
    }
}

/// The contract's table (§2): the HTTP status of an answer in mapped mode, judged by its
/// `code` and `error.type` (and, where one pair has two statuses, its message), with the
/// statuses its code may have.
fn mapped_status(code: &str, error_type: &str, body: &Value) -> (u16, &'static [u16]) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let allowed: &'static [u16] = match code {
        "OK" => &[200],
        "InvalidArgument" => &[400, 409, 413],
        "PermissionDenied" => &[401, 403],
        "NotFound" => &[404],
        "AlreadyExists" => &[409],
        "ResourceExhausted" => &[429],
        "InternalServerError" => &[500, 503],
        "NoRoute" => &[404, 405],
        other => panic!("{code:?} is not a code of the reference set ({other})"),
    };
    let status = match error_type {
        "" => 200,
        "invalid_argument" if message.contains("too large") => 413,
        "invalid_argument" | "events_expired" => 400,
        "group_too_deep"
        | "default_group_be_modified"
        | "group_not_empty"
        | "group_cycle"
        | "exceed_user_limit"
        | "sync_deletes_too_many" => 409,
        "invalid_token" | "invalid_credential" => 401,
        "claim_error" | "invalid_org_subscription" => 403,
        "duplicated_remote_id" | "contacts_user_existed" => 409,
        "request_rate_limited"
        | "org_resource_exhausted"
        | "sync_in_progress"
        | "group_quota_exceeded"
        | "member_quota_exceeded"
        | "org_quota_exceeded"
        | "webhook_quota_exceeded" => 429,
        "internal_error" if message.contains("database does not answer") => 503,
        "internal_error" => 500,
        "no_route" if message.contains("method not allowed") => 405,
        "no_route" => 404,
        other if other.ends_with("_not_found") => 404,
        other => panic!("{other:?} is not an error type of the contract"),
    };
    (status, allowed)
}

/// The HTTP status mode of test apps: the default (`200`), or `mapped` when
/// `CONTACTSD_TEST_HTTP_STATUS=mapped` (CI runs the suite in both).
pub fn test_http_status() -> HttpStatus {
    match std::env::var("CONTACTSD_TEST_HTTP_STATUS").as_deref() {
        Ok("mapped") => HttpStatus::Mapped,
        _ => HttpStatus::Ok,
    }
}

/// Checks the envelope and the HTTP status of an answer; returns the status the answer has in
/// mapped mode, which tests judge (in the default mode every answer is HTTP 200).
#[track_caller]
fn check_envelope(
    request: &str,
    status: u16,
    headers: &HeaderMap,
    body: &Value,
    mode: HttpStatus,
) -> u16 {
    let context = || format!("{request}: answer {status} {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{}: the envelope is not an object", context()));
    for field in ["code", "error", "data", "request_id"] {
        assert!(
            object.contains_key(field),
            "{}: the envelope lacks `{field}`",
            context()
        );
    }
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `code` is not a string", context()));
    let error_type = body["error"]["type"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `error.type` is not a string", context()));
    assert!(
        body["data"].is_object(),
        "{}: `data` is not an object",
        context()
    );
    let request_id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `request_id` is not a string", context()));
    assert!(
        uuid::Uuid::parse_str(request_id).is_ok(),
        "{}: `request_id` is not a UUID",
        context()
    );
    let header = headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("{}: no x-request-id header", context()))
        .to_str()
        .expect("x-request-id is ASCII");
    assert_eq!(
        header,
        request_id,
        "{}: x-request-id header differs from the body's request_id",
        context()
    );
    let (mapped, allowed) = mapped_status(code, error_type, body);
    let expected = if request.ends_with("/healthz") || mode == HttpStatus::Mapped {
        mapped
    } else {
        200
    };
    assert!(
        allowed.contains(&mapped),
        "{}: {code}/{error_type} is not a pair of the contract's table",
        context()
    );
    assert_eq!(
        status,
        expected,
        "{}: HTTP status in {mode:?} mode does not follow {code}/{error_type}",
        context()
    );
    if code == "OK" {
        assert_eq!(error_type, "", "{}: success with an error type", context());
    } else {
        assert_ne!(
            error_type,
            "",
            "{}: failure without an error type",
            context()
        );
        // Only a refused sync explains itself in `data` (its problems, or the brake's figures).
        if !request.contains("/sync") {
            assert_eq!(
                body["data"],
                json!({}),
                "{}: a failure carries data",
                context()
            );
        }
    }
    mapped_status(code, error_type, body).0
}

/// `data` of a successful answer.
#[track_caller]
pub fn assert_ok(response: &ApiResponse) -> Value {
    assert!(
        response.status == 200 && response.body["code"] == "OK",
        "{}: expected success, got {} {}",
        response.request,
        response.status,
        response.body
    );
    response.body["data"].clone()
}

/// A failure with exactly this HTTP status, `code` and `error.type`.
#[track_caller]
pub fn assert_error(response: &ApiResponse, status: u16, code: &str, error_type: &str) {
    assert!(
        response.status == status
            && response.body["code"] == code
            && response.body["error"]["type"] == error_type,
        "{}: expected {status} {code}/{error_type}, got {} {}",
        response.request,
        response.status,
        response.body
    );
}

/// `raw` percent-encoded for a query string.
pub fn encode(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// `raw` percent-encoded as one path segment (everything but ASCII letters and digits).
pub fn encode_segment(raw: &str) -> String {
    raw.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A time as the contract writes it: RFC 3339, second precision, the given explicit offset.
#[track_caller]
pub fn assert_time(value: &Value, offset: &str) -> DateTime<FixedOffset> {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("time {value} is not a string"));
    let time = DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|error| panic!("time {raw:?} is not RFC 3339: {error}"));
    assert_eq!(
        time.to_rfc3339_opts(SecondsFormat::Secs, false),
        raw,
        "time {raw:?} is not written like 2021-06-24T18:24:45+08:00"
    );
    assert!(
        raw.ends_with(offset),
        "time {raw:?} is not in offset {offset}"
    );
    time
}

// ----- paths --------------------------------------------------------------------------------

pub fn groups_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups")
}

pub fn group_path(team_id: i64, group_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}")
}

pub fn members_path(team_id: i64, group_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}/users")
}

pub fn member_path(team_id: i64, group_id: i64, user_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}")
}

pub fn member_update_path(team_id: i64, user_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/users/{user_id}")
}

pub fn delete_groups_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/groups/batch_delete")
}

// ----- a logged-in caller -------------------------------------------------------------------

/// `data.list` and `data.total` of a listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub list: Vec<Value>,
    pub total: i64,
}

impl Listing {
    /// `field` of every row, as integers.
    #[track_caller]
    pub fn ints(&self, field: &str) -> Vec<i64> {
        self.list
            .iter()
            .map(|row| {
                row[field]
                    .as_i64()
                    .unwrap_or_else(|| panic!("row field {field} is not an integer: {row}"))
            })
            .collect()
    }

    /// `field` of every row, as strings.
    #[track_caller]
    pub fn strings(&self, field: &str) -> Vec<String> {
        self.list
            .iter()
            .map(|row| {
                row[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("row field {field} is not a string: {row}"))
                    .to_owned()
            })
            .collect()
    }

    /// The row whose `field` is `id`.
    #[track_caller]
    pub fn row(&self, field: &str, id: i64) -> &Value {
        self.list
            .iter()
            .find(|row| row[field] == id)
            .unwrap_or_else(|| panic!("no row with {field} {id} in {:?}", self.list))
    }
}

#[track_caller]
fn listing(response: &ApiResponse) -> Listing {
    let data = assert_ok(response);
    let list = data["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: data.list is not an array", response.request))
        .clone();
    let total = data["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{}: data.total is not an integer", response.request));
    Listing { list, total }
}

/// A registered third-party user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub user_id: i64,
    pub respondent_id: i64,
}

/// An app with a token, calling with `?appid=…&access_token=…`.
pub struct Api<'a> {
    pub app: &'a TestApp,
    pub appid: String,
    pub token: String,
}

impl<'a> Api<'a> {
    pub fn new(app: &'a TestApp, appid: &str, token: &str) -> Api<'a> {
        Api {
            app,
            appid: appid.to_owned(),
            token: token.to_owned(),
        }
    }

    /// `path` (which may already have a query) with this caller's credentials added.
    pub fn authed(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!(
            "{path}{separator}appid={}&access_token={}",
            encode(&self.appid),
            encode(&self.token)
        )
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.app.get(&self.authed(path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> ApiResponse {
        self.app.post_json(&self.authed(path), body).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<String>) -> ApiResponse {
        self.app.post_raw(&self.authed(path), body).await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.app.delete(&self.authed(path)).await
    }

    /// A GET carrying the token only in an `Authorization: Bearer` header.
    pub async fn get_bearer(&self, path: &str) -> ApiResponse {
        self.app
            .send(
                self.app
                    .client
                    .get(self.app.url(path))
                    .header(AUTHORIZATION, format!("Bearer {}", self.token)),
            )
            .await
    }

    /// A JSON POST carrying the token only in an `Authorization: Bearer` header.
    pub async fn post_bearer(&self, path: &str, body: &Value) -> ApiResponse {
        self.app
            .send(
                self.app
                    .client
                    .post(self.app.url(path))
                    .header(AUTHORIZATION, format!("Bearer {}", self.token))
                    .json(body),
            )
            .await
    }

    // groups

    pub async fn try_create_group(&self, team_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&groups_path(team_id), body).await
    }

    /// Create a group from a full body; returns its id.
    pub async fn create_group_with(&self, team_id: i64, body: &Value) -> i64 {
        let response = self.try_create_group(team_id, body).await;
        let data = assert_ok(&response);
        data["group_id"]
            .as_i64()
            .unwrap_or_else(|| panic!("create group answered without group_id: {data}"))
    }

    pub async fn create_group(&self, team_id: i64, name: &str, parent_id: i64) -> i64 {
        self.create_group_with(team_id, &json!({"name": name, "parent_id": parent_id}))
            .await
    }

    /// GET one group; its `data`.
    pub async fn group(&self, team_id: i64, group_id: i64) -> Value {
        assert_ok(&self.get(&group_path(team_id, group_id)).await)
    }

    /// GET the group list with `query` (e.g. `"parent_id=0&per_page=100"`).
    pub async fn list_groups(&self, team_id: i64, query: &str) -> Listing {
        let path = if query.is_empty() {
            groups_path(team_id)
        } else {
            format!("{}?{query}", groups_path(team_id))
        };
        listing(&self.get(&path).await)
    }

    pub async fn update_group(&self, team_id: i64, group_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&group_path(team_id, group_id), body).await
    }

    pub async fn delete_groups(&self, team_id: i64, group_ids: &[i64]) -> ApiResponse {
        self.post_json(
            &delete_groups_path(team_id),
            &json!({"group_ids": group_ids}),
        )
        .await
    }

    // users

    pub async fn try_register(&self, body: &Value) -> ApiResponse {
        self.post_json("/api/sso/users", body).await
    }

    pub async fn register(&self, openid: &str, nickname: &str, avatar: &str) -> User {
        let response = self
            .try_register(&json!({"openid": openid, "nickname": nickname, "avatar": avatar}))
            .await;
        let data = assert_ok(&response);
        User {
            user_id: data["user_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("register answered without user_id: {data}")),
            respondent_id: data["respondent_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("register answered without respondent_id: {data}")),
        }
    }

    /// Register `openid` with itself as nickname; returns the user id.
    pub async fn register_user(&self, openid: &str) -> i64 {
        self.register(openid, openid, "").await.user_id
    }

    // members

    pub async fn add_member(
        &self,
        team_id: i64,
        group_id: i64,
        user_id: i64,
        body: &Value,
    ) -> ApiResponse {
        self.post_json(&member_path(team_id, group_id, user_id), body)
            .await
    }

    /// Add a member that must be accepted; `role` as in the body (None = default).
    pub async fn add_member_ok(
        &self,
        team_id: i64,
        group_id: i64,
        user_id: i64,
        role: Option<i64>,
    ) {
        let body = match role {
            Some(role) => json!({"role": role}),
            None => json!({}),
        };
        let response = self.add_member(team_id, group_id, user_id, &body).await;
        assert_eq!(
            assert_ok(&response),
            json!({}),
            "add member returns no data"
        );
    }

    pub async fn update_member(&self, team_id: i64, user_id: i64, body: &Value) -> ApiResponse {
        self.post_json(&member_update_path(team_id, user_id), body)
            .await
    }

    pub async fn remove_member(&self, team_id: i64, group_id: i64, user_id: i64) -> ApiResponse {
        self.delete(&member_path(team_id, group_id, user_id)).await
    }

    /// GET the members of a group with `query` (e.g. `"recursive=true&per_page=100"`).
    pub async fn members(&self, team_id: i64, group_id: i64, query: &str) -> Listing {
        let path = if query.is_empty() {
            members_path(team_id, group_id)
        } else {
            format!("{}?{query}", members_path(team_id, group_id))
        };
        listing(&self.get(&path).await)
    }
}

#[test]
fn database_names_are_replaced_in_postgres_urls() {
    assert_eq!(
        with_database_name("postgres://u:p@localhost:5432/postgres", "t1"),
        "postgres://u:p@localhost:5432/t1"
    );
    assert_eq!(
        with_database_name("postgres://localhost", "t1"),
        "postgres://localhost/t1"
    );
    assert_eq!(
        with_database_name("postgresql://h/db?sslmode=disable", "t1"),
        "postgresql://h/t1?sslmode=disable"
    );
}

/// An org name the tests know to be valid.
fn org_name(name: &str) -> contactsd::domain::values::OrgName {
    contactsd::domain::values::OrgName::parse(name).expect("a valid org name")
}
