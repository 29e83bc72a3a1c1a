//! §1 calling convention and §2 envelope (§3, tokens, tenants and rate limits, is in
//! `tokens.rs`).

use reqwest::header::AUTHORIZATION;
use serde_json::json;

use crate::helpers::*;

// ----- §1 calling convention ----------------------------------------------------------------

#[tokio::test]
async fn query_appid_and_access_token_authenticate_a_call() {
    let app = TestApp::spawn().await;
    let token = app.token(&app.appid, &app.secret).await;
    let path = format!(
        "{}?appid={}&access_token={}",
        groups_path(app.team_id),
        app.appid,
        token
    );
    let data = assert_ok(&app.get(&path).await);
    assert_eq!(data, json!({"list": [], "total": 0}));
}

#[tokio::test]
async fn bearer_header_authenticates_with_or_without_appid() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;

    // A write through the header alone, read back through the query convention.
    let created = assert_ok(
        &api.post_bearer(&groups_path(app.team_id), &json!({"name": "Sales"}))
            .await,
    );
    let listed = api.list_groups(app.team_id, "").await;
    assert_eq!(
        listed.ints("id"),
        vec![created["group_id"].as_i64().unwrap()]
    );

    let data = assert_ok(&api.get_bearer(&groups_path(app.team_id)).await);
    assert_eq!(data["total"], 1);

    let with_appid = format!("{}?appid={}", groups_path(app.team_id), app.appid);
    assert_ok(&api.get_bearer(&with_appid).await);

    let garbage = app
        .send(
            app.client
                .get(app.url(&groups_path(app.team_id)))
                .header(AUTHORIZATION, "Bearer not-a-token"),
        )
        .await;
    assert_error(&garbage, 401, "PermissionDenied", "invalid_token");
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    // RFC 9110 §11.1: the authentication scheme is matched case-insensitively.
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    for scheme in ["bearer", "BEARER"] {
        let response = app
            .send(
                app.client
                    .get(app.url(&groups_path(app.team_id)))
                    .header(AUTHORIZATION, format!("{scheme} {}", api.token)),
            )
            .await;
        assert_ok(&response);
    }
}

#[tokio::test]
async fn remote_ids_arrays_are_read_in_all_four_forms() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let a = api
        .create_group_with(team, &json!({"name": "A", "remote_id": "ra"}))
        .await;
    let b = api
        .create_group_with(team, &json!({"name": "B", "remote_id": "rb"}))
        .await;
    api.create_group_with(team, &json!({"name": "C", "remote_id": "rc"}))
        .await;

    let forms = [
        "remote_ids=ra&remote_ids=rb",
        "remote_ids[]=ra&remote_ids[]=rb",
        "remote_ids%5B%5D=ra&remote_ids%5B%5D=rb",
        "remote_ids=ra,rb",
        "remote_ids=ra%2Crb",
        r#"remote_ids=["ra","rb"]"#,
        "remote_ids=%5B%22ra%22%2C%22rb%22%5D",
    ];
    for form in forms {
        let listed = api.list_groups(team, form).await;
        let mut ids = listed.ints("id");
        ids.sort_unstable();
        assert_eq!(ids, vec![a, b], "form {form}");
        assert_eq!(listed.total, 2, "form {form}");
    }
}

#[tokio::test]
async fn repeated_array_keys_are_taken_as_they_are_and_a_single_value_is_split() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let comma = api
        .create_group_with(team, &json!({"name": "Comma", "remote_id": "x,y"}))
        .await;
    let z = api
        .create_group_with(team, &json!({"name": "Z", "remote_id": "z"}))
        .await;
    let x = api
        .create_group_with(team, &json!({"name": "X", "remote_id": "x"}))
        .await;

    let mut repeated = api
        .list_groups(team, "remote_ids=x%2Cy&remote_ids=z")
        .await
        .ints("id");
    repeated.sort_unstable();
    assert_eq!(repeated, vec![comma, z]);

    // One value is split on commas: "x" and "y", not "x,y".
    assert_eq!(
        api.list_groups(team, "remote_ids=x%2Cy").await.ints("id"),
        vec![x]
    );
    // One JSON value keeps its items whole.
    assert_eq!(
        api.list_groups(team, &format!("remote_ids={}", encode(r#"["x,y"]"#)))
            .await
            .ints("id"),
        vec![comma]
    );
    // A single value starting with `[` must be JSON.
    let broken = api
        .get(&format!("{}?remote_ids=%5Bx", groups_path(team)))
        .await;
    assert_error(&broken, 400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn roles_arrays_are_read_in_all_four_forms() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let team_admin = api.register_user("u-admin").await;
    let survey_admin = api.register_user("u-survey").await;
    let member = api.register_user("u-member").await;
    api.add_member_ok(team, 0, team_admin, Some(2)).await;
    api.add_member_ok(team, 0, survey_admin, Some(3)).await;
    api.add_member_ok(team, 0, member, Some(4)).await;
    let mut admins = vec![team_admin, survey_admin];
    admins.sort_unstable();

    let forms = [
        "roles=2&roles=3",
        "roles[]=2&roles[]=3",
        "roles%5B%5D=2&roles%5B%5D=3",
        "roles=2,3",
        "roles=[2,3]",
        "roles=%5B2%2C3%5D",
        r#"roles=["2","3"]"#,
    ];
    for form in forms {
        let listed = api.members(team, 0, form).await;
        assert_eq!(listed.ints("user_id"), admins, "form {form}");
        assert_eq!(listed.total, 2, "form {form}");
    }
    assert_eq!(
        api.members(team, 0, "roles=4").await.ints("user_id"),
        vec![member]
    );
}

// ----- §2 envelope --------------------------------------------------------------------------

#[tokio::test]
async fn unknown_routes_answer_not_found_in_the_envelope() {
    let app = TestApp::spawn().await;
    for path in ["/", "/api/nothing", "/api/contacts/teams/1/nothing/here"] {
        let response = app.get(path).await;
        assert_error(&response, 404, "NoRoute", "no_route");
    }
    let response = app.post_json("/api/nothing", &json!({})).await;
    assert_error(&response, 404, "NoRoute", "no_route");
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_405_no_route() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let response = api.delete(&groups_path(app.team_id)).await;
    assert_error(&response, 405, "NoRoute", "no_route");
    let response = app.post_json("/api/oauth2/access_token", &json!({})).await;
    assert_error(&response, 405, "NoRoute", "no_route");
    let response = app
        .send(app.client.put(app.url(&api.authed("/api/orgs"))))
        .await;
    assert_error(&response, 405, "NoRoute", "no_route");
    // `groups/batch_delete` is POST only (were it read as the group "batch_delete", that is
    // not a group id): refused as an invalid argument either way.
    let response = api.get(&delete_groups_path(app.team_id)).await;
    assert!(
        (response.status == 400 && response.body["code"] == "InvalidArgument")
            || (response.status == 405 && response.body["code"] == "NoRoute"),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn malformed_json_is_invalid_argument_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    for body in [r#"{"name": "Sales""#, "name=Sales", "[1, 2", "\"Sales\""] {
        let response = api.post_raw(&groups_path(app.team_id), body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

#[tokio::test]
async fn json_fields_of_the_wrong_type_are_invalid_argument() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let group = api.create_group(team, "Sales", 0).await;
    let user = api.register_user("u1").await;

    let cases = [
        (groups_path(team), json!({"name": 5})),
        (groups_path(team), json!({"name": "X", "order": "high"})),
        (groups_path(team), json!({"name": "X", "order": 1.5})),
        (groups_path(team), json!({"name": "X", "parent_id": "0"})),
        (groups_path(team), json!({"name": "X", "remote_id": 7})),
        (groups_path(team), json!({"name": "X", "parent_id": -1})),
        (group_path(team, group), json!({"name": ["Sales"]})),
        (delete_groups_path(team), json!({"group_ids": "1"})),
        (
            delete_groups_path(team),
            json!({"group_ids": [group.to_string()]}),
        ),
        ("/api/sso/users".to_owned(), json!({"openid": 12})),
        (member_path(team, group, user), json!({"role": "admin"})),
        (member_update_path(team, user), json!({"group_ids": group})),
    ];
    for (path, body) in cases {
        let response = api.post_json(&path, &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    // Nothing was created, renamed or deleted by the refused calls.
    let listed = api.list_groups(team, "").await;
    assert_eq!(listed.ints("id"), vec![group]);
    assert_eq!(listed.strings("name"), vec!["Sales"]);
    assert_eq!(api.members(team, 0, "").await.total, 0);
}

#[tokio::test]
async fn unknown_body_fields_are_ignored() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let id = api
        .create_group_with(
            app.team_id,
            &json!({"name": "Sales", "colour": "red", "extra": {"nested": [1, 2]}}),
        )
        .await;
    assert_eq!(api.group(app.team_id, id).await["name"], "Sales");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413_invalid_argument() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let path = groups_path(app.team_id);

    let padding = "a".repeat(1024 * 1024);
    let oversized = format!(r#"{{"name": "Big", "padding": "{padding}"}}"#);
    assert!(oversized.len() > 1024 * 1024);
    let response = api.post_raw(&path, oversized).await;
    assert_error(&response, 413, "InvalidArgument", "invalid_argument");
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);

    // Just under the limit is read (and the unknown field ignored).
    let padding = "a".repeat(1024 * 1024 - 100);
    let fits = format!(r#"{{"name": "Fits", "padding": "{padding}"}}"#);
    assert!(fits.len() < 1024 * 1024);
    assert_ok(&api.post_raw(&path, fits).await);
    assert_eq!(
        api.list_groups(app.team_id, "").await.strings("name"),
        vec!["Fits"]
    );
}

#[tokio::test]
async fn every_answer_has_a_fresh_request_id_and_a_valid_incoming_one_is_reused() {
    let app = TestApp::spawn().await;
    let path = groups_path(app.team_id);
    // `send` checks header == body on every answer; here: fresh per request.
    let first = app.get(&path).await;
    let second = app.get(&path).await;
    assert_ne!(first.body["request_id"], second.body["request_id"]);

    let mine = "7f0c4a52-3c55-4d8e-9d0e-2b7c2f6a1e11";
    let reused = app
        .send(app.client.get(app.url(&path)).header("x-request-id", mine))
        .await;
    assert_eq!(reused.body["request_id"], mine);
    assert_eq!(reused.header("x-request-id"), Some(mine));

    // Reused on successes too.
    let ok = app
        .send(
            app.client
                .get(app.url(&format!(
                    "/api/oauth2/access_token?appid={}&secret={}&grant_type=client_credential",
                    app.appid, app.secret
                )))
                .header("x-request-id", mine),
        )
        .await;
    assert_ok(&ok);
    assert_eq!(ok.body["request_id"], mine);

    let invalid = app
        .send(
            app.client
                .get(app.url(&path))
                .header("x-request-id", "not-a-uuid"),
        )
        .await;
    assert_ne!(invalid.body["request_id"], "not-a-uuid");
}
