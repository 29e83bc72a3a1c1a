//! The request shapes of the published WeSurvey clients, replayed as they send them, and what
//! such a client reads: in the default mode, HTTP 200 and the envelope's `code`, `error.type`
//! and `data` fields. (The Java SDK reads the envelope only from an HTTP 200 answer and decodes
//! `code` into the reference set; the PHP client renews its token on `PermissionDenied` /
//! `invalid_token`.)

use contactsd::domain::access::Plan;
use contactsd::http::HttpStatus;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::*;

/// The codes the published clients can decode.
const REFERENCE_CODES: [&str; 9] = [
    "OK",
    "PermissionDenied",
    "InternalServerError",
    "RemoteServerError",
    "NoRoute",
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "ResourceExhausted",
];

const FORM: &str = "application/x-www-form-urlencoded";

/// A default-mode server, whatever `CONTACTSD_TEST_HTTP_STATUS` says.
async fn reference_mode_app(plan: Plan) -> TestApp {
    TestApp::builder()
        .http_status(HttpStatus::Ok)
        .plan(plan)
        .spawn()
        .await
}

/// What a published client reads of an answer: the HTTP status must be 200 and the body the
/// envelope with a code it can decode; returns `(code, error.type, data)`.
async fn client_reads(request: reqwest::RequestBuilder) -> (String, String, Value) {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON envelope");
    assert_eq!(status, 200, "a client reads only HTTP 200 answers: {body}");
    let code = body["code"].as_str().expect("code").to_owned();
    assert!(
        REFERENCE_CODES.contains(&code.as_str()),
        "{code} cannot be decoded"
    );
    let error_type = body["error"]["type"]
        .as_str()
        .expect("error.type")
        .to_owned();
    (code, error_type, body["data"].clone())
}

/// `POST path` with a form body, as the Java SDK sends group and member writes.
fn form_post(api: &Api<'_>, path: &str, form: &str) -> reqwest::RequestBuilder {
    api.app
        .client
        .post(api.app.url(&api.authed(path)))
        .header(CONTENT_TYPE, FORM)
        .body(form.to_owned())
}

/// `GET path` with `Content-Type: application/json` and an empty body, as the clients send it.
fn json_get(api: &Api<'_>, path: &str) -> reqwest::RequestBuilder {
    api.app
        .client
        .get(api.app.url(&api.authed(path)))
        .header(CONTENT_TYPE, "application/json")
}

#[tokio::test]
async fn the_java_sdk_group_and_member_writes_work_as_forms() {
    let app = reference_mode_app(Plan::Business).await;
    let api = app.team_api().await;
    let team = app.team_id;

    // Create, as a form.
    let (code, _, data) = client_reads(form_post(
        &api,
        &groups_path(team),
        "name=Sales&parent_id=0&order=2&remote_id=s-1",
    ))
    .await;
    assert_eq!(code, "OK");
    let sales = data["group_id"].as_i64().expect("group_id");
    assert_eq!(data["name"], "Sales");
    let (_, _, data) = client_reads(form_post(&api, &groups_path(team), "name=EMEA")).await;
    let emea = data["group_id"].as_i64().expect("group_id");

    // Move EMEA under Sales with from_id / to_id, as a form.
    let (code, _, data) = client_reads(form_post(
        &api,
        &group_path(team, emea),
        &format!("name=EMEA&from_id=0&to_id={sales}"),
    ))
    .await;
    assert_eq!((code.as_str(), data), ("OK", json!({})));
    let (_, _, group) = client_reads(json_get(&api, &group_path(team, emea))).await;
    assert_eq!(group["parent_id"], sales);
    assert_eq!(group["full_name"], format!("{TEAM_NAME}/Sales/EMEA"));
    assert_eq!(group["updated_at"], group["upd_at"]);

    // Add a member with a role, as a form (with the open_id the SDK sends too).
    let user = api.register_user("u-java").await;
    let (code, _, _) = client_reads(form_post(
        &api,
        &member_path(team, sales, user),
        "role=3&open_id=u-java",
    ))
    .await;
    assert_eq!(code, "OK");

    // Update the member with group_ids as one JSON array string, as a form.
    let (code, _, _) = client_reads(form_post(
        &api,
        &member_update_path(team, user),
        &format!("group_ids=[{sales},{emea}]&nickname=Ada"),
    ))
    .await;
    assert_eq!(code, "OK");
    let (_, _, listed) = client_reads(json_get(
        &api,
        &format!("{}?page=1&per_page=10&roles[]=3", members_path(team, emea)),
    ))
    .await;
    let row = &listed["list"][0];
    assert_eq!(row["user_id"], user);
    assert_eq!(row["name"], "Ada");
    assert_eq!(row["role"], 3);
    assert_eq!(row["is_org_creator"], false);
    assert_eq!(row["is_org_available"], true);

    // A form error names the field, in the envelope, with HTTP 200.
    let (code, error_type, _) =
        client_reads(form_post(&api, &groups_path(team), "name=X&order=ten")).await;
    assert_eq!(
        (code.as_str(), error_type.as_str()),
        ("InvalidArgument", "invalid_argument")
    );

    // Delete in a batch, as JSON; a state conflict is InvalidArgument.
    let (code, error_type, _) = client_reads(
        api.app
            .client
            .post(api.app.url(&api.authed(&delete_groups_path(team))))
            .json(&json!({"group_ids": [sales]})),
    )
    .await;
    assert_eq!(
        (code.as_str(), error_type.as_str()),
        ("InvalidArgument", "group_not_empty")
    );
    assert_ok(&api.remove_member(team, sales, user).await);
    assert_ok(&api.remove_member(team, emea, user).await);
    let (code, _, data) = client_reads(
        api.app
            .client
            .post(api.app.url(&api.authed(&delete_groups_path(team))))
            .json(&json!({"group_ids": [emea, sales]})),
    )
    .await;
    assert_eq!((code.as_str(), data), ("OK", json!({})));
}

#[tokio::test]
async fn the_java_sdk_listings_work_with_its_query_shapes() {
    let app = reference_mode_app(Plan::Flagship).await;
    let api = app.team_api().await;
    let team = app.team_id;
    let group = api
        .create_group_with(team, &json!({"name": "Ops", "remote_id": "ops"}))
        .await;
    let admin = api.register_user("u-admin").await;
    let member = api.register_user("u-member").await;
    api.add_member_ok(team, group, admin, Some(2)).await;
    api.add_member_ok(team, group, member, Some(4)).await;

    let (code, _, groups) = client_reads(json_get(
        &api,
        &format!(
            "{}?page=1&per_page=10&remote_ids[]=ops&remote_ids[]=none",
            groups_path(team)
        ),
    ))
    .await;
    assert_eq!(code, "OK");
    assert_eq!(groups["total"], 1);
    assert_eq!(groups["list"][0]["updated_at"], groups["list"][0]["upd_at"]);

    // The whole directory's members.
    let (code, _, all) = client_reads(json_get(
        &api,
        &format!("/api/contacts/teams/{team}/users?page=1&per_page=10"),
    ))
    .await;
    assert_eq!(code, "OK");
    assert_eq!(all["total"], 2);

    // The org's owner and team admins (this org has no owner: created on the command line).
    let (code, _, admins) = client_reads(json_get(
        &api,
        &format!(
            "/api/orgs/{}/users?page=1&per_page=10&roles[]=1&roles[]=2",
            app.org_id
        ),
    ))
    .await;
    assert_eq!(code, "OK");
    assert_eq!(
        admins,
        json!({"list": [{"user_id": admin, "name": "u-admin", "avatar": "", "role": 2}], "total": 1})
    );
}

#[tokio::test]
async fn the_php_client_renews_its_token_on_invalid_token() {
    let app = reference_mode_app(Plan::Business).await;
    let old = app.token(&app.appid, &app.secret).await;
    let renewed = app.token(&app.appid, &app.secret).await;
    let path = format!(
        "/api/sso/users/nobody?appid={}&access_token={old}",
        app.appid
    );
    let (code, error_type, data) = client_reads(app.client.get(app.url(&path))).await;
    assert_eq!(
        (code.as_str(), error_type.as_str(), data),
        ("PermissionDenied", "invalid_token", json!({}))
    );
    let api = Api::new(&app, &app.appid, &renewed);
    let registered = api
        .register("u-php", "Ada", "https://example.com/a.png")
        .await;
    let (code, _, profile) = client_reads(json_get(&api, "/api/sso/users/u-php")).await;
    assert_eq!(code, "OK");
    assert_eq!(
        profile,
        json!({
            "openid": "u-php",
            "user_id": registered.user_id,
            "respondent_id": registered.respondent_id,
            "nickname": "Ada",
            "avatar": "https://example.com/a.png"
        })
    );
    // A wrong secret is invalid_credential, also with HTTP 200.
    let path = format!(
        "/api/oauth2/access_token?appid={}&secret=wrong&grant_type=client_credential",
        app.appid
    );
    let (code, error_type, _) = client_reads(app.client.get(app.url(&path))).await;
    assert_eq!(
        (code.as_str(), error_type.as_str()),
        ("PermissionDenied", "invalid_credential")
    );
    // An unknown route, with HTTP 200 too.
    let (code, error_type, _) = client_reads(app.client.get(app.url("/api/nothing"))).await;
    assert_eq!(
        (code.as_str(), error_type.as_str()),
        ("NoRoute", "no_route")
    );
}

#[tokio::test]
async fn mapped_mode_answers_the_contract_statuses() {
    let app = TestApp::builder()
        .http_status(HttpStatus::Mapped)
        .spawn()
        .await;
    let answer = app
        .client
        .get(app.url("/api/sso/users/x?access_token=nope"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 401);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(body["code"], "PermissionDenied");
    assert_eq!(body["error"]["type"], "invalid_token");
    let api = app.team_api().await;
    let response = api.delete_groups(app.team_id, &[0]).await;
    assert_error(
        &response,
        409,
        "InvalidArgument",
        "default_group_be_modified",
    );
    let answer = app
        .client
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 405);
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
}
