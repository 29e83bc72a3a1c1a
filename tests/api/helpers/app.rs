//! The server under test: [`TestAppBuilder`] and [`TestApp`], the real router on
//! `127.0.0.1:0` over its own database, and [`ApiResponse`], an answer whose envelope is checked.

use std::sync::Arc;

use chrono::FixedOffset;
use contactsd::domain::access::Plan;
use contactsd::http::{ConnectionSettings, HttpSettings, HttpStatus, router};
use contactsd::service::{Service, ServiceSettings};
use contactsd::store::StoreSettings;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use super::caller::Api;
use super::database::TestDatabase;
use super::envelope::{assert_ok, check_envelope, encode, test_http_status};
use super::{TEAM_NAME, http_client};

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

    /// Rotate `appid`'s secret on this server, as `contactsd admin rotate-secret` does; the
    /// new secret.
    pub async fn rotate_secret(&self, appid: &str) -> String {
        self.service
            .rotate_secret(appid)
            .await
            .unwrap_or_else(|error| panic!("rotate-secret failed: {error}"))
            .secret
    }

    /// A caller for the team app of the test's org.
    pub async fn team_api(&self) -> Api<'_> {
        self.login(&self.appid, &self.secret).await
    }
}

/// An org name the tests know to be valid.
fn org_name(name: &str) -> contactsd::domain::values::OrgName {
    contactsd::domain::values::OrgName::parse(name).expect("a valid org name")
}
