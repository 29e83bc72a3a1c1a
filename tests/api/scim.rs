//! SCIM 2.0 (§12): what identity providers send, as they send it, and what the WeSurvey API
//! shows afterwards.

use contactsd::domain::values::TeamId;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_ok, members_path};

pub const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub struct Scim<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Value,
}

impl<'a> Scim<'a> {
    pub async fn new(app: &'a TestApp, team_id: i64) -> Scim<'a> {
        let token = app
            .service
            .create_scim_token(TeamId::new(team_id))
            .await
            .unwrap_or_else(|e| panic!("scim token: {e}"))
            .token;
        Scim { app, token }
    }

    pub async fn call(
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

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, operations: Value) -> Answer {
        self.call(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH], "Operations": operations})),
            &[],
        )
        .await
    }

    /// How many users match `filter`.
    pub async fn count(&self, filter: &str) -> u64 {
        let url = format!("/Users?filter={}", crate::helpers::encode(filter));
        self.get(&url).await.body["totalResults"]
            .as_u64()
            .expect("total")
    }

    pub async fn user(&self, name: &str) -> String {
        let answer = self
            .post(
                "/Users",
                json!({"schemas": [USER], "userName": name, "displayName": format!("{name} D")}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["id"].as_str().expect("id").to_owned()
    }

    /// Create a group of these SCIM users and answer its path.
    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let answer = self
            .post("/Groups", json!({"displayName": name, "members": members}))
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        format!("/Groups/{}", answer.body["id"].as_str().expect("id"))
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
async fn racing_creates_of_one_user_name_leave_one_user_and_one_member() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let body = |name: &str| json!({"schemas": [USER], "userName": name, "displayName": "Racer"});
    let (a, b, c, d) = tokio::join!(
        scim.post("/Users", body("racer@example.com")),
        scim.post("/Users", body("Racer@example.com")),
        scim.post("/Users", body("RACER@example.com")),
        scim.post("/Users", body("racer@EXAMPLE.com")),
    );
    let answers = [a, b, c, d];
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(created, 1, "{:?}", answers.map(|a| a.status));
    for refused in answers.iter().filter(|a| a.status != 201) {
        assert_eq!(refused.status, 409, "{}", refused.body);
        assert_eq!(refused.body["scimType"], "uniqueness");
    }
    assert_eq!(scim.count("userName pr").await, 1);
    let api = app.team_api().await;
    let members = assert_ok(&api.get(&members_path(app.team_id, 0)).await);
    assert_eq!(members.to_string().matches("Racer").count(), 1, "{members}");
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

#[tokio::test]
async fn filters_use_every_operator_and_lists_page() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    for name in ["amy", "bob", "cat", "dan", "eve"] {
        let answer = scim
            .post(
                "/Users",
                json!({"userName": name, "externalId": format!("X-{name}"), "active": true,
                "emails": [{"value": format!("{name}@example.com"), "type": "work"}]}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    assert_eq!(scim.count("userName eq \"BOB\"").await, 1);
    assert_eq!(scim.count("userName ne \"bob\"").await, 4);
    assert_eq!(scim.count("userName co \"a\"").await, 3);
    assert_eq!(scim.count("userName sw \"c\"").await, 1);
    assert_eq!(scim.count("userName ew \"n\"").await, 1);
    assert_eq!(scim.count("userName gt \"cat\"").await, 2);
    assert_eq!(scim.count("userName ge \"cat\"").await, 3);
    assert_eq!(scim.count("userName lt \"cat\"").await, 2);
    assert_eq!(scim.count("userName le \"cat\"").await, 3);
    assert_eq!(
        scim.count("externalId eq \"X-amy\" or emails.value ew \"eve@example.com\"")
            .await,
        2
    );
    assert_eq!(scim.count("not (active eq true) and userName pr").await, 0);
    assert_eq!(
        scim.count("emails[type eq \"work\" and value sw \"dan\"]")
            .await,
        1
    );
    assert_eq!(
        scim.count("meta.lastModified ge \"2000-01-01T00:00:00Z\"")
            .await,
        5
    );
    assert_eq!(scim.count("displayName pr").await, 0);
    let bad = scim.get("/Users?filter=userName%20eq").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["scimType"], "invalidFilter");
    // Pages: startIndex counts from 1; count caps the page; totalResults counts every match.
    let page = scim
        .get("/Users?startIndex=2&count=2&attributes=userName")
        .await;
    assert_eq!(page.body["totalResults"], 5);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 2);
    let names: Vec<&str> = page.body["Resources"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["userName"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["bob", "cat"]);
    assert!(page.body["Resources"][0].get("emails").is_none());
    let past = scim.get("/Users?startIndex=9").await;
    assert_eq!(past.body["itemsPerPage"], 0);
    assert_eq!(past.body["totalResults"], 5);
}

#[tokio::test]
async fn entra_id_patches_with_filtered_paths_and_string_booleans() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let id = scim.user("grace").await;
    let path = format!("/Users/{id}");
    // As Entra ID documents them: op in any case, filtered paths, extension paths.
    let answer = scim
        .patch(&path, json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "grace@work.example"},
            {"op": "Replace", "path": "name.familyName", "value": "Hopper"},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Navy"},
            {"op": "Replace", "path": "active", "value": "False"},
        ]))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body["emails"],
        json!([{"value": "grace@work.example", "type": "work"}])
    );
    assert_eq!(answer.body["name"]["familyName"], "Hopper");
    assert_eq!(
        answer.body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Navy"
    );
    assert_eq!(answer.body["active"], false);
    let api = app.team_api().await;
    let listing = assert_ok(&api.get(&members_path(app.team_id, 0)).await);
    assert_eq!(listing["total"], 0, "an inactive user is not a member");
    // Google / OneLogin style: PUT replaces the whole user; what is left out is gone.
    let put = scim
        .call(
            Method::PUT,
            &path,
            Some(
                json!({"schemas": [USER], "userName": "grace", "active": true, "title": "Admiral"}),
            ),
            &[],
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(put.body.get("emails").is_none(), "{}", put.body);
    assert_eq!(put.body["title"], "Admiral");
    let listing = assert_ok(&api.get(&members_path(app.team_id, 0)).await);
    assert_eq!(listing["total"], 1);
    // Wrong types are refused as RFC 7644 says.
    let bad = scim
        .patch(
            &path,
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["scimType"], "invalidValue");
    let bad = scim
        .patch(
            &path,
            json!([{"op": "jump", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn versions_answer_304_and_412() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let id = scim.user("lin").await;
    let path = format!("/Users/{id}");
    let read = scim.get(&path).await;
    let etag = read.etag.expect("etag");
    assert_eq!(read.body["meta"]["version"], etag.as_str());
    let unchanged = scim
        .call(Method::GET, &path, None, &[("if-none-match", &etag)])
        .await;
    assert_eq!(unchanged.status, 304);
    let changed = scim
        .call(
            Method::PATCH,
            &path,
            Some(json!({"Operations": [{"op": "add", "path": "title", "value": "Dr"}]})),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_ne!(changed.etag.as_deref(), Some(etag.as_str()));
    let stale = scim
        .call(Method::DELETE, &path, None, &[("if-match", &etag)])
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(scim.get(&path).await.status, 200);
}

/// A user's version covers its groups: once another server adds the user to a group, a
/// PATCH, PUT or DELETE carrying the version read before is refused, and changes nothing.
#[tokio::test]
async fn if_match_sees_groups_changed_through_another_server() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let scim = Scim::new(&app, app.team_id).await;
    let other = Scim {
        app: &replica,
        token: scim.token.clone(),
    };
    let id = scim.user("lin").await;
    let path = format!("/Users/{id}");
    let etag = scim.get(&path).await.etag.expect("etag");
    other.group("Ops", &[&id]).await;
    let title = json!({"Operations": [{"op": "add", "path": "title", "value": "Dr"}]});
    let whole = json!({"schemas": [USER], "userName": "lin", "title": "Dr"});
    for (method, body) in [
        (Method::PATCH, Some(title)),
        (Method::PUT, Some(whole)),
        (Method::DELETE, None),
    ] {
        let answer = scim
            .call(method.clone(), &path, body, &[("if-match", &etag)])
            .await;
        assert_eq!(answer.status, 412, "{method}: {}", answer.body);
    }
    let user = scim.get(&path).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.body["groups"][0]["display"], "Ops", "{}", user.body);
    assert!(user.body.get("title").is_none(), "{}", user.body);
}

#[tokio::test]
async fn groups_form_a_tree_and_deleting_one_keeps_its_members_and_children() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let ext = "urn:contactsd:params:scim:schemas:extension:2.0:Group";
    let user = scim.user("kim").await;
    // A flat provider's group lands at the top level.
    let top = scim.post("/Groups", json!({"displayName": "Eng"})).await;
    let top_id = top.body["id"].as_str().expect("id").to_owned();
    let mid = scim
        .post(
            "/Groups",
            json!({"displayName": "Core", ext: {"parent": {"value": top_id}}}),
        )
        .await;
    assert_eq!(mid.status, 201, "{}", mid.body);
    let mid_id = mid.body["id"].as_str().expect("id").to_owned();
    let leaf = scim.post("/Groups", json!({"displayName": "DB", "members": [{"value": user}], ext: {"parent": {"value": mid_id}}})).await;
    let leaf_id = leaf.body["id"].as_str().expect("id").to_owned();
    let api = app.team_api().await;
    let shown = api.group(app.team_id, leaf_id.parse().expect("int")).await;
    assert_eq!(shown["full_name"], "Acme/Eng/Core/DB");
    // Names follow the directory's rules.
    let bad = scim.post("/Groups", json!({"displayName": "a/b"})).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    // Moving a group under its own descendant is a cycle.
    let cycle = scim
        .patch(
            &format!("/Groups/{top_id}"),
            json!([{"op": "replace", "path": format!("{ext}:parent.value"), "value": leaf_id}]),
        )
        .await;
    assert_eq!(cycle.status, 400, "{}", cycle.body);
    let gone = scim
        .call(Method::DELETE, &format!("/Groups/{mid_id}"), None, &[])
        .await;
    assert_eq!(gone.status, 204);
    let shown = api.group(app.team_id, leaf_id.parse().expect("int")).await;
    assert_eq!(shown["full_name"], "Acme/Eng/DB");
    let kept = scim.get(&format!("/Users/{user}")).await;
    assert_eq!(kept.body["groups"][0]["value"], leaf_id.as_str());
}

#[tokio::test]
async fn only_business_and_flagship_plans_get_scim_tokens() {
    let app = TestApp::spawn().await;
    let free = app
        .create_org("Free", contactsd::domain::access::Plan::Free, 10)
        .await;
    assert!(
        app.service
            .create_scim_token(TeamId::new(free.team_id))
            .await
            .is_err()
    );
    let flagship = app
        .create_org("Big", contactsd::domain::access::Plan::Flagship, 10)
        .await;
    assert!(
        app.service
            .create_scim_token(TeamId::new(flagship.team_id))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_directorys_scim_calls_share_the_rate_limit() {
    let app = TestApp::builder().rate_limit(2).spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let mut limited = 0;
    for _ in 0..6 {
        let answer = scim.get("/Users").await;
        if answer.status == 429 {
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "six calls at once stayed under a limit of two a second"
    );
    let response = app
        .client
        .get(format!("{}/scim/v2/Users", app.address))
        .bearer_auth(&scim.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn groups_are_found_by_name_paged_replaced_whole_and_private_to_their_directory() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let (a, b, c) = (
        scim.user("a").await,
        scim.user("b").await,
        scim.user("c").await,
    );
    let sales = scim
        .post(
            "/Groups",
            json!({"displayName": "Sales Team", "externalId": "G-1",
                   "members": [{"value": a}, {"value": b}]}),
        )
        .await;
    assert_eq!(sales.status, 201, "{}", sales.body);
    let gid = sales.body["id"].as_str().expect("id").to_owned();
    for name in ["Support", "Legal"] {
        let answer = scim.post("/Groups", json!({"displayName": name})).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
    }
    // The existence checks of Okta and Entra ID: displayName without case, externalId exactly.
    let find = |filter: &str| format!("/Groups?filter={}", crate::helpers::encode(filter));
    let found = scim.get(&find("displayName eq \"sales team\"")).await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["id"], gid.as_str());
    let mut members: Vec<&str> = found.body["Resources"][0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().expect("value"))
        .collect();
    members.sort_unstable();
    let mut expected = vec![a.as_str(), b.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    assert_eq!(
        scim.get(&find("externalId eq \"G-1\"")).await.body["totalResults"],
        1
    );
    assert_eq!(
        scim.get(&find("externalId eq \"g-1\"")).await.body["totalResults"],
        0
    );
    assert_eq!(
        scim.get(&find("displayName eq \"Nobody\"")).await.body["totalResults"],
        0
    );
    let by_member = scim.get(&find(&format!("members[value eq \"{b}\"]"))).await;
    assert_eq!(by_member.body["totalResults"], 1, "{}", by_member.body);
    // Pages of groups, ascending by id.
    let page = scim.get("/Groups?startIndex=2&count=1").await;
    assert_eq!(page.body["totalResults"], 3);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["Resources"][0]["displayName"], "Support");
    // Google / OneLogin style: PUT replaces the whole group, members included.
    let path = format!("/Groups/{gid}");
    let put = scim
        .call(
            Method::PUT,
            &path,
            Some(json!({"displayName": "Sales", "members": [{"value": c}]})),
            &[],
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(put.body.get("externalId").is_none(), "{}", put.body);
    assert_eq!(
        put.body["members"],
        json!([{
            "value": c, "type": "User", "$ref": format!("{}/scim/v2/Users/{c}", app.address)
        }])
    );
    let api = app.team_api().await;
    let shown = api.group(app.team_id, gid.parse().expect("int")).await;
    assert_eq!(shown["name"], "Sales");
    assert_eq!(shown["remote_id"], "");
    // Another directory's token neither sees nor changes the group, nor names its users.
    let other = app
        .create_org("Other", contactsd::domain::access::Plan::Business, 10)
        .await;
    let theirs = Scim::new(&app, other.team_id).await;
    assert_eq!(theirs.get(&path).await.status, 404);
    assert_eq!(theirs.get("/Groups").await.body["totalResults"], 0);
    let foreign = theirs
        .patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": a}]}]),
        )
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    let stolen = theirs
        .post(
            "/Groups",
            json!({"displayName": "Mine", "members": [{"value": a, "type": "User"}]}),
        )
        .await;
    assert_eq!(stolen.status, 400, "{}", stolen.body);
    assert_eq!(stolen.body["scimType"], "invalidValue");
}

#[tokio::test]
async fn discovery_lists_resource_types_and_schemas_and_finds_each_by_id() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let base = format!(
        "http://{}/scim/v2",
        app.address.trim_start_matches("http://")
    );
    let types = scim.get("/ResourceTypes").await;
    assert_eq!(types.status, 200, "{}", types.body);
    assert_eq!(types.body["totalResults"], 2);
    assert_eq!(types.body["Resources"][1]["id"], "Group");
    let group = scim.get("/ResourceTypes/Group").await;
    assert_eq!(group.status, 200, "{}", group.body);
    assert_eq!(group.body["endpoint"], "/Groups");
    assert_eq!(
        group.body["meta"]["location"],
        format!("{base}/ResourceTypes/Group")
    );
    let missing = scim.get("/ResourceTypes/Device").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["detail"], "no resource type Device");

    let schemas = scim.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 4);
    let user = scim.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.body["id"], USER);
    assert_eq!(
        user.body["meta"]["location"],
        format!("{base}/Schemas/{USER}")
    );
    let missing = scim.get("/Schemas/urn:example:Device").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["detail"], "no schema urn:example:Device");
}
