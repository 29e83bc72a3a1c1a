//! §3 apps, plans, tokens, tenants and rate limits, on one process and across processes.

use std::time::Duration;

use contactsd::domain::access::Plan;
use serde_json::json;

use crate::helpers::*;

// ----- §3 tokens ----------------------------------------------------------------------------

#[tokio::test]
async fn the_token_call_returns_a_working_token_and_its_lifetime() {
    let app = TestApp::spawn().await;
    let response = app
        .token_response(&app.appid, &app.secret, "client_credential")
        .await;
    let data = assert_ok(&response);
    let token = data["access_token"].as_str().expect("access_token");
    assert!(
        token.len() >= 22,
        "a token carries at least 128 bits: {token:?}"
    );
    assert_eq!(data["expires_in"], 7200);
    assert_eq!(data.as_object().map(|o| o.len()), Some(2), "{data}");

    let api = Api::new(&app, &app.appid, token);
    assert_ok(&api.get(&groups_path(app.team_id)).await);

    let short = TestApp::builder().token_ttl(600).spawn().await;
    let data = assert_ok(
        &short
            .token_response(&short.appid, &short.secret, "client_credential")
            .await,
    );
    assert_eq!(data["expires_in"], 600);
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_appid_is_invalid_credential_without_saying_which() {
    let app = TestApp::spawn().await;
    let wrong_secret = app
        .token_response(&app.appid, "not-the-secret", "client_credential")
        .await;
    assert_error(&wrong_secret, 401, "PermissionDenied", "invalid_credential");
    let unknown_appid = app
        .token_response("tpidnosuchap", &app.secret, "client_credential")
        .await;
    assert_error(
        &unknown_appid,
        401,
        "PermissionDenied",
        "invalid_credential",
    );
    assert_eq!(
        wrong_secret.body["error"], unknown_appid.body["error"],
        "the two failures must read the same"
    );
}

#[tokio::test]
async fn a_grant_type_other_than_client_credential_is_invalid_argument() {
    let app = TestApp::spawn().await;
    for grant in ["password", "", "CLIENT_CREDENTIAL"] {
        let response = app.token_response(&app.appid, &app.secret, grant).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    let missing = app
        .get(&format!(
            "/api/oauth2/access_token?appid={}&secret={}",
            app.appid, app.secret
        ))
        .await;
    assert_error(&missing, 400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn missing_or_garbage_tokens_are_invalid_access_token() {
    let app = TestApp::spawn().await;
    let path = groups_path(app.team_id);
    let long_garbage = "x".repeat(1000);
    let cases = [
        path.clone(),
        format!("{path}?appid={}", app.appid),
        format!("{path}?appid={}&access_token=", app.appid),
        format!("{path}?appid={}&access_token=garbage", app.appid),
        format!("{path}?access_token=garbage"),
        format!("{path}?appid={}&access_token={long_garbage}", app.appid),
    ];
    for case in cases {
        let response = app.get(&case).await;
        assert_error(&response, 401, "PermissionDenied", "invalid_token");
    }
    // A write without a token changes nothing.
    let response = app.post_json(&path, &json!({"name": "Sneaky"})).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    let api = app.team_api().await;
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

#[tokio::test]
async fn a_new_token_supersedes_every_earlier_one_at_once() {
    let app = TestApp::spawn().await;
    let first = app.team_api().await;
    assert_ok(&first.get(&groups_path(app.team_id)).await);
    let second = app.team_api().await;
    assert_ne!(first.token, second.token);

    let response = first.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    let response = first.get_bearer(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    assert_ok(&second.get(&groups_path(app.team_id)).await);
}

#[tokio::test]
async fn a_new_token_supersedes_the_old_one_on_every_server_sharing_the_database() {
    let app = TestApp::spawn().await;
    let other_server = app.replica().await;
    let old = app.team_api().await;
    // The token works on the other process too.
    let on_other = Api::new(&other_server, &old.appid, &old.token);
    assert_ok(&on_other.get(&groups_path(app.team_id)).await);
    // A write on one is seen by the other.
    let id = on_other.create_group(app.team_id, "Sales", 0).await;
    assert_eq!(old.list_groups(app.team_id, "").await.ints("id"), vec![id]);

    let new = other_server.team_api().await;
    let response = old.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    let on_first = Api::new(&app, &new.appid, &new.token);
    assert_ok(&on_first.get(&groups_path(app.team_id)).await);
}

#[tokio::test]
async fn with_a_read_cache_a_process_sees_its_own_changes_at_once() {
    let app = TestApp::builder()
        .read_cache(Duration::from_secs(600))
        .spawn()
        .await;
    let first = app.team_api().await;
    assert_ok(&first.get(&groups_path(app.team_id)).await);
    let id = first.create_group(app.team_id, "Sales", 0).await;
    assert_eq!(
        first.list_groups(app.team_id, "").await.ints("id"),
        vec![id]
    );

    let second = app.team_api().await;
    let response = first.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    assert_ok(&second.get(&groups_path(app.team_id)).await);

    app.rotate_secret(&app.appid).await;
    let response = second.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
}

#[tokio::test]
async fn with_a_read_cache_other_processes_see_changes_within_its_time() {
    let ttl = Duration::from_millis(300);
    let app = TestApp::builder().read_cache(ttl).spawn().await;
    let other_server = app.replica().await;
    let old = app.team_api().await;
    assert_ok(&old.get(&groups_path(app.team_id)).await);
    let on_other = Api::new(&other_server, &old.appid, &old.token);
    let id = on_other.create_group(app.team_id, "Sales", 0).await;
    let new = other_server.team_api().await;

    // Within a little more than the time-to-live, the first process sees both changes.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let on_first = Api::new(&app, &new.appid, &new.token);
    assert_eq!(
        on_first.list_groups(app.team_id, "").await.ints("id"),
        vec![id]
    );
    let response = old.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
}

#[tokio::test]
async fn a_superseded_token_and_a_rotated_secret_are_refused_at_once_by_every_process() {
    // Records trusted for ten minutes: only the checks that decide access can be exact.
    let app = TestApp::builder()
        .read_cache(Duration::from_secs(600))
        .spawn()
        .await;
    let other_server = app.replica().await;
    let old = app.team_api().await;
    let on_other = Api::new(&other_server, &old.appid, &old.token);
    assert_ok(&old.get(&groups_path(app.team_id)).await);
    assert_ok(&on_other.get(&groups_path(app.team_id)).await);

    // A token issued through the first process supersedes the old one on the second at once.
    let new = app.team_api().await;
    let response = on_other.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    let new_on_other = Api::new(&other_server, &new.appid, &new.token);
    assert_ok(&new_on_other.get(&groups_path(app.team_id)).await);

    // A secret rotated through the second process ends the token on the first at once.
    assert_ok(&new.get(&groups_path(app.team_id)).await);
    let rotated = other_server.rotate_secret(&app.appid).await;
    let response = new.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    // The new secret gets a token that works on both.
    let token = app.token(&app.appid, &rotated).await;
    assert_ok(
        &Api::new(&app, &app.appid, &token)
            .get(&groups_path(app.team_id))
            .await,
    );
    assert_ok(
        &Api::new(&other_server, &app.appid, &token)
            .get(&groups_path(app.team_id))
            .await,
    );
}

#[tokio::test]
async fn a_token_of_one_app_sent_with_another_appid_is_refused() {
    let app = TestApp::spawn().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let token = app.token(&app.appid, &app.secret).await;
    let response = app
        .get(&format!(
            "{}?appid={}&access_token={token}",
            groups_path(app.team_id),
            other.appid
        ))
        .await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
}

#[tokio::test]
async fn an_expired_token_is_access_token_expired() {
    let app = TestApp::builder().token_ttl(1).spawn().await;
    let data = assert_ok(
        &app.token_response(&app.appid, &app.secret, "client_credential")
            .await,
    );
    assert_eq!(data["expires_in"], 1);
    let token = data["access_token"].as_str().expect("token").to_owned();
    let api = Api::new(&app, &app.appid, &token);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = api.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    let response = api.get_bearer(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
    // A new token works again. Expiry is counted in whole seconds, so a one-second token taken
    // just before a second ends lives a few milliseconds: this one is taken just after a second
    // begins.
    let into_second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1010 - into_second))).await;
    let fresh = app.team_api().await;
    assert_ok(&fresh.get(&groups_path(app.team_id)).await);
}

#[tokio::test]
async fn an_app_of_a_free_org_is_refused_at_the_token_call() {
    let app = TestApp::builder().plan(Plan::Free).spawn().await;
    let response = app
        .token_response(&app.appid, &app.secret, "client_credential")
        .await;
    assert_error(
        &response,
        403,
        "PermissionDenied",
        "invalid_org_subscription",
    );
}

// ----- §3 tenants ---------------------------------------------------------------------------

#[tokio::test]
async fn a_team_app_gets_claim_error_for_another_orgs_team_and_for_a_missing_team() {
    let app = TestApp::spawn().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let their_group = other_api.create_group(other.team_id, "Theirs", 0).await;
    let api = app.team_api().await;
    let missing_team = other.team_id + 1000;

    for team in [other.team_id, missing_team] {
        let calls = [
            api.get(&groups_path(team)).await,
            api.get(&group_path(team, their_group)).await,
            api.post_json(&groups_path(team), &json!({"name": "Intruder"}))
                .await,
            api.post_json(&group_path(team, their_group), &json!({"name": "Renamed"}))
                .await,
            api.delete_groups(team, &[their_group]).await,
            api.get(&members_path(team, 0)).await,
        ];
        for response in calls {
            assert_error(&response, 403, "PermissionDenied", "claim_error");
        }
    }
    // The other org's directory is untouched.
    let theirs = other_api.list_groups(other.team_id, "").await;
    assert_eq!(theirs.ints("id"), vec![their_group]);
    assert_eq!(theirs.strings("name"), vec!["Theirs"]);
    // And its groups are not reachable through one's own team either.
    let response = api.get(&group_path(app.team_id, their_group)).await;
    assert_error(&response, 404, "NotFound", "contacts_group_not_found");
}

#[tokio::test]
async fn a_platform_app_on_a_missing_team_gets_team_not_found_and_claim_error_on_foreign_ones() {
    let app = TestApp::spawn().await;
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let response = api.get(&groups_path(app.team_id + 1000)).await;
    assert_error(&response, 404, "NotFound", "contacts_team_not_found");
    let response = api
        .post_json(&groups_path(app.team_id + 1000), &json!({"name": "X"}))
        .await;
    assert_error(&response, 404, "NotFound", "contacts_team_not_found");
    // A team the platform did not create exists, but is not its own.
    let response = api.get(&groups_path(app.team_id)).await;
    assert_error(&response, 403, "PermissionDenied", "claim_error");
}

// ----- §3 rate limits -----------------------------------------------------------------------

#[tokio::test]
async fn calls_over_the_rate_limit_get_429_with_retry_after_while_other_apps_are_unaffected() {
    let app = TestApp::builder().rate_limit(2).spawn().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let api = app.team_api().await;
    let other_api = app.login(&other.appid, &other.secret).await;

    let mut limited = None;
    for _ in 0..20 {
        let response = api.get(&groups_path(app.team_id)).await;
        if response.status == 429 {
            limited = Some(response);
            break;
        }
        assert_ok(&response);
    }
    let limited = limited.expect("20 quick calls at 2 a second must hit the limit");
    assert_error(&limited, 429, "ResourceExhausted", "request_rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");

    assert_ok(&other_api.get(&groups_path(other.team_id)).await);
}

#[tokio::test]
async fn token_calls_over_their_limit_get_429_with_retry_after_per_appid() {
    let app = TestApp::builder().token_rate_limit(2).spawn().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    for _ in 0..2 {
        assert_ok(
            &app.token_response(&app.appid, &app.secret, "client_credential")
                .await,
        );
    }
    let limited = app
        .token_response(&app.appid, &app.secret, "client_credential")
        .await;
    assert_error(&limited, 429, "ResourceExhausted", "request_rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("a 429 carries Retry-After")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(retry_after >= 1);

    assert_ok(
        &app.token_response(&other.appid, &other.secret, "client_credential")
            .await,
    );
}

#[tokio::test]
async fn ids_in_the_path_that_are_not_numbers_are_invalid_argument() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let paths = [
        "/api/contacts/teams/abc/groups".to_owned(),
        format!("/api/contacts/teams/{team}/groups/abc"),
        format!("/api/contacts/teams/{team}/groups/abc/users"),
        format!("/api/contacts/teams/{team}/groups/0/users/abc"),
        "/api/orgs/abc".to_owned(),
    ];
    for path in &paths[..3] {
        let response = api.get(path).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    let response = api.delete(&paths[3]).await;
    assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    let response = api.get(&paths[4]).await;
    assert_error(&response, 400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one() {
    let app = TestApp::spawn().await;
    let rotated = app.rotate_secret(&app.appid).await;
    assert_ne!(rotated, app.secret);
    let response = app
        .token_response(&app.appid, &app.secret, "client_credential")
        .await;
    assert_error(&response, 401, "PermissionDenied", "invalid_credential");
    let api = app.login(&app.appid, &rotated).await;
    assert_ok(&api.get(&groups_path(app.team_id)).await);
}

#[tokio::test]
async fn rotating_the_secret_ends_the_current_token() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    app.rotate_secret(&app.appid).await;
    let response = api.get(&groups_path(app.team_id)).await;
    assert_error(&response, 401, "PermissionDenied", "invalid_token");
}

#[tokio::test]
async fn directory_changes_on_one_server_are_seen_by_another_on_the_same_database() {
    let app = TestApp::spawn().await;
    let other_server = app.replica().await;
    let api = app.team_api().await;
    let team = app.team_id;
    // Warm both servers' view of the directory before changing it.
    let on_other = Api::new(&other_server, &api.appid, &api.token);
    assert_eq!(on_other.list_groups(team, "").await.total, 0);
    assert_eq!(api.list_groups(team, "").await.total, 0);

    let sales = api.create_group(team, "Sales", 0).await;
    let user = api.register_user("shared").await;
    api.add_member_ok(team, sales, user, Some(2)).await;
    let seen = on_other.members(team, sales, "").await;
    assert_eq!(seen.ints("user_id"), vec![user]);
    assert_eq!(seen.list[0]["role"], 2);

    assert_ok(
        &on_other
            .update_group(team, sales, &json!({"name": "Revenue"}))
            .await,
    );
    assert_eq!(
        api.members(team, sales, "").await.list[0]["group_full_name"],
        "Acme/Revenue"
    );
    assert_ok(&on_other.remove_member(team, 0, user).await);
    assert_eq!(api.members(team, 0, "").await.total, 0);
    assert_ok(&api.delete_groups(team, &[sales]).await);
    assert_eq!(on_other.list_groups(team, "").await.total, 0);
}

#[tokio::test]
async fn healthz_answers_200_without_auth() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz answers");
    assert_eq!(response.status().as_u16(), 200);
}
