//! §7 third-party users and §4 orgs (with the owner rules of §6 that only orgs created through
//! the API can show).

use contactsd::domain::access::Plan;
use serde_json::json;

use crate::helpers::*;

/// A platform app that registered `owner` and created an org for it.
struct PlatformOrg<'a> {
    api: Api<'a>,
    owner: User,
    org_id: i64,
    team_id: i64,
}

async fn platform_org<'a>(app: &'a TestApp, name: &str) -> PlatformOrg<'a> {
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let owner = api
        .register("owner", "Olga", "https://example.com/o.png")
        .await;
    let response = api
        .post_json(
            "/api/orgs",
            &json!({"name": name, "user_id": owner.user_id}),
        )
        .await;
    let data = assert_ok(&response);
    let org_id = data["org_id"].as_i64().expect("org_id");
    let team_id = data["team_id"].as_i64().expect("team_id");
    assert_eq!(data, json!({"org_id": org_id, "team_id": team_id}));
    PlatformOrg {
        api,
        owner,
        org_id,
        team_id,
    }
}

// ----- §7 users -----------------------------------------------------------------------------

#[tokio::test]
async fn register_returns_ids_and_get_finds_them_by_openid() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let response = api
        .try_register(&json!({"openid": "o-1", "nickname": "One", "avatar": "https://a/1.png"}))
        .await;
    let data = assert_ok(&response);
    let user_id = data["user_id"]
        .as_u64()
        .expect("user_id is an unsigned integer");
    let respondent_id = data["respondent_id"]
        .as_u64()
        .expect("respondent_id is an unsigned integer");
    assert!(user_id > 0 && respondent_id > 0);
    assert_eq!(
        data,
        json!({"user_id": user_id, "respondent_id": respondent_id})
    );

    let found = assert_ok(&api.get("/api/sso/users/o-1").await);
    assert_eq!(
        found,
        json!({
            "openid": "o-1",
            "user_id": user_id,
            "respondent_id": respondent_id,
            "nickname": "One",
            "avatar": "https://a/1.png"
        })
    );

    let other = api.register("o-2", "Two", "").await;
    assert_ne!(other.user_id as u64, user_id);
}

#[tokio::test]
async fn registering_an_openid_again_returns_the_same_user_with_the_new_profile() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let first = api.register("same", "Before", "https://a/before.png").await;
    api.add_member_ok(team, 0, first.user_id, None).await;
    let again = api.register("same", "After", "https://a/after.png").await;
    assert_eq!(again, first);

    let row = api.members(team, 0, "").await.list[0].clone();
    assert_eq!(row["name"], "After");
    assert_eq!(row["avatar"], "https://a/after.png");
}

#[tokio::test]
async fn openids_belong_to_the_app_that_registered_them() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let mine = api.register("shared-openid", "Mine", "").await;

    let response = other_api.get("/api/sso/users/shared-openid").await;
    assert_error(&response, 404, "NotFound", "user_not_found");
    let response = other_api
        .post_json(
            "/api/sso/users/shared-openid",
            &json!({"nickname": "Hijack"}),
        )
        .await;
    assert_error(&response, 404, "NotFound", "user_not_found");

    let theirs = other_api.register("shared-openid", "Theirs", "").await;
    assert_ne!(theirs.user_id, mine.user_id);
    assert_eq!(
        assert_ok(&api.get("/api/sso/users/shared-openid").await)["user_id"],
        mine.user_id
    );
}

#[tokio::test]
async fn openids_with_any_characters_round_trip_through_the_path() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    for openid in ["a/b c", "üser@example.com", "100%+1", "o?x=1&y#z"] {
        let user = api.register(openid, "N", "").await;
        let path = format!("/api/sso/users/{}", encode_segment(openid));
        let found = assert_ok(&api.get(&path).await);
        assert_eq!(found["user_id"], user.user_id, "openid {openid:?}");
        assert_ok(&api.post_json(&path, &json!({"nickname": "M"})).await);
    }
}

#[tokio::test]
async fn an_unknown_openid_is_user_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let response = api.get("/api/sso/users/nobody").await;
    assert_error(&response, 404, "NotFound", "user_not_found");
    let response = api
        .post_json("/api/sso/users/nobody", &json!({"nickname": "X"}))
        .await;
    assert_error(&response, 404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn update_user_changes_the_profile_members_show() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api.register("pat", "Pat", "https://a/pat.png").await;
    api.add_member_ok(team, 0, user.user_id, None).await;

    let response = api
        .post_json(
            "/api/sso/users/pat",
            &json!({"nickname": "Patricia", "avatar": "https://a/patricia.png"}),
        )
        .await;
    assert_eq!(assert_ok(&response), json!({}));
    let row = api.members(team, 0, "").await.list[0].clone();
    assert_eq!(row["name"], "Patricia");
    assert_eq!(row["avatar"], "https://a/patricia.png");
    // Same identity as before.
    assert_eq!(
        assert_ok(&api.get("/api/sso/users/pat").await)["user_id"],
        user.user_id
    );
}

#[tokio::test]
async fn user_fields_are_checked() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let long_openid = "o".repeat(129);
    for body in [
        json!({}),
        json!({"openid": ""}),
        json!({"openid": long_openid}),
        json!({"openid": "ok", "nickname": "n".repeat(65)}),
        json!({"openid": "ok", "avatar": "a".repeat(256)}),
    ] {
        let response = api.try_register(&body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    let response = api.get("/api/sso/users/ok").await;
    assert_error(&response, 404, "NotFound", "user_not_found");

    // The limits themselves are fine.
    let openid = "o".repeat(128);
    api.register(&openid, &"n".repeat(64), &"a".repeat(255))
        .await;
    assert_ok(&api.get(&format!("/api/sso/users/{openid}")).await);
    api.register("ok", "", "").await;
    for body in [
        json!({"nickname": "n".repeat(65)}),
        json!({"avatar": "a".repeat(256)}),
    ] {
        let response = api.post_json("/api/sso/users/ok", &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

// ----- §4 orgs ------------------------------------------------------------------------------

#[tokio::test]
async fn a_platform_app_creates_an_org_whose_creator_is_its_owner() {
    let app = TestApp::spawn().await;
    let org = platform_org(&app, "  Globex  ").await;

    let members = org.api.members(org.team_id, 0, "").await;
    assert_eq!(members.total, 1);
    let owner = &members.list[0];
    assert_eq!(owner["user_id"], org.owner.user_id);
    assert_eq!(owner["respondent_id"], org.owner.respondent_id);
    assert_eq!(owner["role"], 1);
    assert_eq!(owner["group_id"], 0);
    assert_eq!(owner["group_full_name"], "Globex");
    assert_eq!(owner["name"], "Olga");

    // The platform app manages the new directory.
    let g = org.api.create_group(org.team_id, "Engineering", 0).await;
    assert_eq!(
        org.api.group(org.team_id, g).await["full_name"],
        "Globex/Engineering"
    );
}

#[tokio::test]
async fn get_org_returns_the_org_with_its_creator() {
    let app = TestApp::spawn().await;
    let org = platform_org(&app, "Globex").await;
    let data = assert_ok(&org.api.get(&format!("/api/orgs/{}", org.org_id)).await);
    assert_eq!(data["id"], org.org_id);
    assert_eq!(data["name"], "Globex");
    assert!(data["phone"].is_string(), "{data}");
    assert_eq!(data["current_user_role"], 0);
    assert_eq!(data["creator_id"], org.owner.user_id);
    assert_eq!(data["creator_name"], "Olga");
    assert_eq!(data["creator_avatar_url"], "https://example.com/o.png");
    assert_eq!(data["team_id"], org.team_id);
    let mut keys: Vec<&str> = data
        .as_object()
        .expect("org")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![
            "creator_avatar_url",
            "creator_id",
            "creator_name",
            "current_user_role",
            "id",
            "name",
            "phone",
            "team_id"
        ]
    );
}

#[tokio::test]
async fn creating_an_org_for_an_unknown_user_is_user_not_found() {
    let app = TestApp::spawn().await;
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let user = api.register_user("real").await;
    let response = api
        .post_json(
            "/api/orgs",
            &json!({"name": "Ghost", "user_id": user + 1_000_000}),
        )
        .await;
    assert_error(&response, 404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn org_names_must_be_1_to_64_characters() {
    let app = TestApp::spawn().await;
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let user = api.register_user("u").await;
    for body in [
        json!({"name": "", "user_id": user}),
        json!({"name": "   ", "user_id": user}),
        json!({"name": "x".repeat(65), "user_id": user}),
        json!({"user_id": user}),
        json!({"name": "No user"}),
        json!({"name": "Bad user", "user_id": "1"}),
    ] {
        let response = api.post_json("/api/orgs", &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    assert_ok(
        &api.post_json(
            "/api/orgs",
            &json!({"name": "界".repeat(64), "user_id": user}),
        )
        .await,
    );
}

#[tokio::test]
async fn a_user_may_create_at_most_5_orgs() {
    let app = TestApp::spawn().await;
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let busy = api.register_user("busy").await;
    let other = api.register_user("other").await;
    let mut teams = Vec::new();
    for i in 0..5 {
        let data = assert_ok(
            &api.post_json(
                "/api/orgs",
                &json!({"name": format!("Org {i}"), "user_id": busy}),
            )
            .await,
        );
        teams.push(data["team_id"].as_i64().expect("team_id"));
    }
    let response = api
        .post_json("/api/orgs", &json!({"name": "Org 6", "user_id": busy}))
        .await;
    assert_error(
        &response,
        429,
        "ResourceExhausted",
        "org_resource_exhausted",
    );
    // Another user is not affected, and the five orgs all exist.
    assert_ok(
        &api.post_json("/api/orgs", &json!({"name": "Theirs", "user_id": other}))
            .await,
    );
    for team in teams {
        let owners = api.members(team, 0, "roles=1").await;
        assert_eq!(owners.ints("user_id"), vec![busy]);
    }
}

#[tokio::test]
async fn platform_apps_see_only_the_orgs_they_created() {
    let app = TestApp::spawn().await;
    let org = platform_org(&app, "Globex").await;
    let response = org
        .api
        .get(&format!("/api/orgs/{}", org.org_id + 1_000_000))
        .await;
    assert_error(&response, 404, "NotFound", "org_not_found");

    // The org made on the command line is not this platform's.
    let response = org.api.get(&format!("/api/orgs/{}", app.org_id)).await;
    assert_error(&response, 403, "PermissionDenied", "claim_error");

    let rival = app.create_platform_app("Rival").await;
    let rival_api = app.login(&rival.appid, &rival.secret).await;
    let response = rival_api.get(&format!("/api/orgs/{}", org.org_id)).await;
    assert_error(&response, 403, "PermissionDenied", "claim_error");
    let response = rival_api.get(&groups_path(org.team_id)).await;
    assert_error(&response, 403, "PermissionDenied", "claim_error");
}

#[tokio::test]
async fn team_apps_reach_their_own_org_only_on_the_flagship_plan() {
    let app = TestApp::spawn().await;
    // The default org is on business.
    let api = app.team_api().await;
    let response = api.get(&format!("/api/orgs/{}", app.org_id)).await;
    assert_error(
        &response,
        403,
        "PermissionDenied",
        "invalid_org_subscription",
    );

    let flagship = app.create_org("Initech", Plan::Flagship, 10).await;
    let flagship_api = app.login(&flagship.appid, &flagship.secret).await;
    let data = assert_ok(
        &flagship_api
            .get(&format!("/api/orgs/{}", flagship.org_id))
            .await,
    );
    assert_eq!(data["id"], flagship.org_id);
    assert_eq!(data["name"], "Initech");
    assert_eq!(data["team_id"], flagship.team_id);
    assert_eq!(data["current_user_role"], 0);

    // Another org, or one that does not exist, is not its business either way.
    for org_id in [app.org_id, flagship.org_id + 1_000_000] {
        let response = flagship_api.get(&format!("/api/orgs/{org_id}")).await;
        assert_error(&response, 403, "PermissionDenied", "claim_error");
    }
}

#[tokio::test]
async fn team_apps_may_not_create_orgs() {
    let app = TestApp::spawn().await;
    let flagship = app.create_org("Initech", Plan::Flagship, 10).await;
    let api = app.login(&flagship.appid, &flagship.secret).await;
    let user = api.register_user("someone").await;
    let response = api
        .post_json("/api/orgs", &json!({"name": "Spin-off", "user_id": user}))
        .await;
    assert_error(&response, 403, "PermissionDenied", "claim_error");
    // The user owns nothing: it is in no directory.
    let response = api
        .update_member(flagship.team_id, user, &json!({"nickname": "x"}))
        .await;
    assert_error(&response, 404, "NotFound", "contacts_user_not_found");
}

#[tokio::test]
async fn the_owner_keeps_its_role_and_its_place_in_the_directory() {
    let app = TestApp::spawn().await;
    let org = platform_org(&app, "Globex").await;
    let team = org.team_id;
    let owner = org.owner.user_id;

    for role in [2, 3, 4] {
        let response = org
            .api
            .update_member(team, owner, &json!({"role": role}))
            .await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    let response = org.api.remove_member(team, 0, owner).await;
    assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    let owners = org.api.members(team, 0, "").await;
    assert_eq!(owners.ints("user_id"), vec![owner]);
    assert_eq!(owners.list[0]["role"], 1);

    // The owner may still be placed in groups and renamed in the directory.
    let g = org.api.create_group(team, "Board", 0).await;
    assert_ok(
        &org.api
            .update_member(team, owner, &json!({"group_ids": [g], "nickname": "Chair"}))
            .await,
    );
    let board = org.api.members(team, g, "").await;
    assert_eq!(board.ints("user_id"), vec![owner]);
    assert_eq!(board.list[0]["role"], 1);
    assert_eq!(board.list[0]["name"], "Chair");
    // Adding the owner to the directory again is no way around it.
    let response = org
        .api
        .add_member(team, 0, owner, &json!({"role": 4}))
        .await;
    assert_error(&response, 409, "AlreadyExists", "contacts_user_existed");
}
