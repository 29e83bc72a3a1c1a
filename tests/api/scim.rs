//! SCIM 2.0 (§12): what identity providers send, as they send it, and what the WeSurvey API
//! shows afterwards.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_ok, members_path};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Scim<'a> {
    app: &'a TestApp,
    token: String,
}

struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

impl<'a> Scim<'a> {
    async fn new(app: &'a TestApp, team_id: i64) -> Scim<'a> {
        let token = app
            .service
            .create_scim_token(team_id)
            .await
            .unwrap_or_else(|e| panic!("scim token: {e}"))
            .token;
        Scim { app, token }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .app
            .client
            .request(method, format!("{}/scim/v2{path}", self.app.address))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .map(|v| v.to_str().expect("ascii").to_owned());
        if status != 204 && status != 304 {
            assert_eq!(
                response.headers()["content-type"],
                "application/scim+json",
                "{path}"
            );
        }
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("json")
        };
        if status >= 400 {
            assert_eq!(
                body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                "{body}"
            );
            assert_eq!(body["status"], status.to_string(), "{body}");
            assert!(body.get("code").is_none(), "no envelope: {body}");
        }
        Answer { status, etag, body }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    async fn patch(&self, path: &str, operations: Value) -> Answer {
        self.call(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH], "Operations": operations})),
            &[],
        )
        .await
    }

    async fn user(&self, name: &str) -> String {
        let answer = self
            .post(
                "/Users",
                json!({"schemas": [USER], "userName": name, "displayName": format!("{name} D")}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().expect("id").to_owned()
    }
}

#[tokio::test]
async fn okta_creates_looks_up_and_deactivates_a_user_seen_by_the_wesurvey_api() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let config = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config.body["patch"]["supported"], true);
    assert_eq!(config.body["bulk"]["supported"], false);
    assert_eq!(config.body["changePassword"]["supported"], false);
    // Okta's existence check before a create.
    let missing = scim
        .get("/Users?filter=userName%20eq%20%22Ada%40example.com%22")
        .await;
    assert_eq!(missing.body["totalResults"], 0);
    let id = scim.user("ada@example.com").await;
    let found = scim
        .get("/Users?filter=userName%20eq%20%22ADA%40example.com%22")
        .await;
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    // userName is unique without regard to case.
    let duplicate = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "Ada@Example.com"}),
        )
        .await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.body["scimType"], "uniqueness");
    // The WeSurvey API sees the member at once, under its displayName.
    let api = app.team_api().await;
    let members = assert_ok(&api.get(&members_path(app.team_id, 0)).await);
    assert!(
        members.to_string().contains("ada@example.com D"),
        "{members}"
    );
    // Okta deactivates with a PATCH without path.
    let off = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body["active"], false);
    let members = assert_ok(&api.get(&members_path(app.team_id, 0)).await);
    assert!(
        !members.to_string().contains("ada@example.com D"),
        "{members}"
    );
    // Entra ID reactivates with "op": "Replace" and a string.
    let on = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    assert_eq!(on.body["active"], true, "{}", on.body);
    let gone = scim
        .call(Method::DELETE, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(scim.get(&format!("/Users/{id}")).await.status, 404);
}

#[tokio::test]
async fn group_members_change_by_value_lists_and_filtered_paths_with_etags() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let a = scim.user("a").await;
    let b = scim.user("b").await;
    let group = scim
        .post(
            "/Groups",
            json!({"displayName": "Sales", "externalId": "S1", "members": [{"value": a}]}),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.body);
    let gid = group.body["id"].as_str().expect("id").to_owned();
    let path = format!("/Groups/{gid}");
    // Okta adds and removes with value lists.
    let added = scim
        .patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": b}]}]),
        )
        .await;
    assert_eq!(
        added.body["members"].as_array().map(Vec::len),
        Some(2),
        "{}",
        added.body
    );
    // Entra ID removes with a filtered path, and reads without members.
    let removed = scim
        .patch(
            &path,
            json!([{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}]),
        )
        .await;
    assert_eq!(
        removed.body["members"].as_array().map(Vec::len),
        Some(1),
        "{}",
        removed.body
    );
    let slim = scim
        .get(&format!("{path}?excludedAttributes=members"))
        .await;
    assert!(slim.body.get("members").is_none());
    assert_eq!(slim.body["displayName"], "Sales");
    // A stale If-Match is refused.
    let etag = slim.etag.expect("etag");
    scim.patch(
        &path,
        json!([{"op": "replace", "path": "displayName", "value": "Sales EU"}]),
    )
    .await;
    let stale = scim
        .call(
            Method::PUT,
            &path,
            Some(json!({"displayName": "X"})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(stale.status, 412);
    // The API shows the group, marked as written by a sync, with its remote id.
    let api = app.team_api().await;
    let shown = api.group(app.team_id, gid.parse().expect("int")).await;
    assert_eq!(shown["name"], "Sales EU");
    assert_eq!(shown["remote_id"], "S1");
    assert_eq!(shown["source"], 2);
    // Nesting through members, and cycles refused by the directory's rules.
    let child = scim
        .post(
            "/Groups",
            json!({"displayName": "EMEA", "members": [{"value": gid, "type": "Group"}]}),
        )
        .await;
    assert_eq!(child.status, 201, "{}", child.body);
    let cid = child.body["id"].as_str().expect("id");
    let cycle = scim
        .patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": cid, "type": "Group"}]}]),
        )
        .await;
    assert_eq!(cycle.status, 400, "{}", cycle.body);
}

#[tokio::test]
async fn one_teams_token_never_sees_another_team() {
    let app = TestApp::spawn().await;
    let other = app
        .create_org("Other", contactsd::domain::access::Plan::Business, 10)
        .await;
    let mine = Scim::new(&app, app.team_id).await;
    let theirs = Scim::new(&app, other.team_id).await;
    let id = mine.user("private").await;
    assert_eq!(theirs.get(&format!("/Users/{id}")).await.status, 404);
    assert_eq!(theirs.get("/Users").await.body["totalResults"], 0);
    let bad = Scim {
        app: &app,
        token: "nope".into(),
    };
    assert_eq!(bad.get("/Users").await.status, 401);
}
