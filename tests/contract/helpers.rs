//! The harness: the real service on 127.0.0.1:0 with a fresh database per test, and typed
//! request helpers that check the envelope of every answer.

use std::sync::Arc;

use contactsd::domain::access::Plan;
use contactsd::http::{HttpSettings, router};
use contactsd::service::{Service, ServiceSettings};
use serde_json::{Value, json};

/// One running server with its own database, and a team app on a business-plan org.
pub struct TestApp {
    pub base: String,
    pub service: Arc<Service>,
    pub team_id: i64,
    pub org_id: i64,
    pub appid: String,
    pub secret: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// An answer, already checked to carry a well-formed envelope.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `data` of a successful answer.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected success, got {:?}", self.body);
        assert_eq!(self.body["code"], "OK");
        assert_eq!(self.body["error"]["type"], "");
        &self.body["data"]
    }

    /// A failure that carries details in `data` (the sync extension's problems).
    #[track_caller]
    pub fn err_with_data(&self, status: u16, code: &str, error_type: &str) {
        assert_eq!(
            (
                self.status,
                self.body["code"].as_str(),
                self.body["error"]["type"].as_str()
            ),
            (status, Some(code), Some(error_type)),
            "unexpected answer {:?}",
            self.body
        );
    }

    #[track_caller]
    pub fn err(&self, status: u16, code: &str, error_type: &str) {
        self.err_with_data(status, code, error_type);
        assert_eq!(self.body["data"], json!({}), "failures carry no data");
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::with(ServiceSettings {
            rate_limit: 0,
            token_rate_limit: 0,
            ..ServiceSettings::default()
        })
        .await
    }

    pub async fn with(settings: ServiceSettings) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/test.db", dir.path().display());
        let store = contactsd::store::open(&url)
            .await
            .expect("open the database");
        let service = Arc::new(Service::new(store, settings));
        let (org, app) = service
            .create_org_with_app("Acme", Plan::Business, 2)
            .await
            .expect("create org");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let app_router = router(service.clone(), HttpSettings::default());
        tokio::spawn(async move {
            axum::serve(listener, app_router).await.expect("serve");
        });
        TestApp {
            base: format!("http://{address}"),
            service,
            team_id: org.team_id,
            org_id: org.org_id,
            appid: app.appid,
            secret: app.secret,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("not JSON (status {status}): {text}"));
        for field in ["code", "error", "data", "request_id"] {
            assert!(body.get(field).is_some(), "envelope lacks {field}: {body}");
        }
        assert_eq!(
            headers["x-request-id"].to_str().expect("header"),
            body["request_id"].as_str().expect("request_id"),
            "x-request-id header must equal the body's request_id"
        );
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(format!("{}{path}", self.base)))
            .await
    }

    pub async fn token_for(&self, appid: &str, secret: &str) -> Answer {
        self.get(&format!(
            "/api/oauth2/access_token?appid={appid}&secret={secret}&grant_type=client_credential"
        ))
        .await
    }

    /// A valid token of the team app, as the `appid=…&access_token=…` query.
    pub async fn auth(&self) -> String {
        let answer = self.token_for(&self.appid, &self.secret).await;
        let token = answer.ok()["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        format!("appid={}&access_token={token}", self.appid)
    }

    pub fn groups(&self, auth: &str, query: &str) -> String {
        format!("/api/contacts/teams/{}/groups?{auth}{query}", self.team_id)
    }

    pub async fn create_group(&self, auth: &str, body: Value) -> i64 {
        let answer = self.post(&self.groups(auth, ""), body).await;
        answer.ok()["group_id"].as_i64().expect("group_id")
    }

    pub async fn list(&self, auth: &str, query: &str) -> (Vec<Value>, i64) {
        let answer = self.get(&self.groups(auth, query)).await;
        let data = answer.ok();
        (
            data["list"].as_array().expect("list").clone(),
            data["total"].as_i64().expect("total"),
        )
    }

    pub async fn register(&self, auth: &str, openid: &str) -> i64 {
        let answer = self
            .post(
                &format!("/api/sso/users?{auth}"),
                json!({"openid": openid, "nickname": openid}),
            )
            .await;
        answer.ok()["user_id"].as_i64().expect("user_id")
    }

    pub fn member_path(&self, auth: &str, group: i64, user: i64) -> String {
        format!(
            "/api/contacts/teams/{}/groups/{group}/users/{user}?{auth}",
            self.team_id
        )
    }

    pub async fn members(&self, auth: &str, group: i64, query: &str) -> (Vec<Value>, i64) {
        let answer = self
            .get(&format!(
                "/api/contacts/teams/{}/groups/{group}/users?{auth}{query}",
                self.team_id
            ))
            .await;
        let data = answer.ok();
        (
            data["list"].as_array().expect("list").clone(),
            data["total"].as_i64().expect("total"),
        )
    }
}

pub fn ids(rows: &[Value], field: &str) -> Vec<i64> {
    rows.iter()
        .map(|row| row[field].as_i64().expect("id"))
        .collect()
}
