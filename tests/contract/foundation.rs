//! §1-§3: calling convention, envelope, tokens, plans, tenancy, rate limits.

use contactsd::domain::access::Plan;
use contactsd::service::ServiceSettings;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_token_is_issued_and_works_in_the_query_and_as_a_bearer_header() {
    let app = TestApp::spawn().await;
    let answer = app.token_for(&app.appid, &app.secret).await;
    let data = answer.ok();
    assert_eq!(data["expires_in"], 7200);
    let token = data["access_token"].as_str().unwrap();
    assert!(token.len() >= 32);

    app.get(&app.groups(&format!("appid={}&access_token={token}", app.appid), ""))
        .await
        .ok();
    let bearer = app
        .send(
            app.client
                .get(format!(
                    "{}/api/contacts/teams/{}/groups",
                    app.base, app.team_id
                ))
                .bearer_auth(token),
        )
        .await;
    assert_eq!(bearer.ok()["total"], 0);
}

#[tokio::test]
async fn bad_credentials_and_grant_types_are_refused() {
    let app = TestApp::spawn().await;
    app.token_for(&app.appid, "wrong")
        .await
        .err(401, "Unauthenticated", "invalid_credential");
    app.token_for("tpidnobody1", &app.secret).await.err(
        401,
        "Unauthenticated",
        "invalid_credential",
    );
    app.get(&format!(
        "/api/oauth2/access_token?appid={}&secret={}&grant_type=password",
        app.appid, app.secret
    ))
    .await
    .err(400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn missing_garbage_and_superseded_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let path = |q: &str| format!("/api/contacts/teams/{}/groups?{q}", app.team_id);
    app.get(&path(""))
        .await
        .err(401, "Unauthenticated", "invalid_access_token");
    app.get(&path("access_token=garbage")).await.err(
        401,
        "Unauthenticated",
        "invalid_access_token",
    );
    let first = app.auth().await;
    let second = app.auth().await;
    app.get(&path(&first))
        .await
        .err(401, "Unauthenticated", "invalid_access_token");
    app.get(&path(&second)).await.ok();
}

#[tokio::test]
async fn an_expired_token_is_refused_as_expired() {
    let app = TestApp::with(ServiceSettings {
        token_ttl: 1,
        rate_limit: 0,
        token_rate_limit: 0,
        ..ServiceSettings::default()
    })
    .await;
    let auth = app.auth().await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.get(&app.groups(&auth, ""))
        .await
        .err(401, "Unauthenticated", "access_token_expired");
}

#[tokio::test]
async fn an_org_on_the_free_plan_gets_no_token() {
    let app = TestApp::spawn().await;
    let (_, free) = app
        .service
        .create_org_with_app("Free", Plan::Free, 10)
        .await
        .unwrap();
    app.token_for(&free.appid, &free.secret).await.err(
        403,
        "PermissionDenied",
        "invalid_org_subscription",
    );
}

#[tokio::test]
async fn one_tenant_never_touches_or_learns_of_another() {
    let app = TestApp::spawn().await;
    let (other, _) = app
        .service
        .create_org_with_app("Other", Plan::Business, 10)
        .await
        .unwrap();
    let auth = app.auth().await;
    for team in [other.team_id, 999_999] {
        let path = format!("/api/contacts/teams/{team}/groups?{auth}");
        app.get(&path)
            .await
            .err(403, "PermissionDenied", "claim_error");
        app.post(&path, json!({"name": "x"}))
            .await
            .err(403, "PermissionDenied", "claim_error");
    }
    // A platform app naming a directory that does not exist learns that it does not.
    let platform = app.service.create_platform_app("p").await.unwrap();
    let token = app.token_for(&platform.appid, &platform.secret).await;
    let token = token.ok()["access_token"].as_str().unwrap().to_owned();
    app.get(&format!(
        "/api/contacts/teams/999999/groups?access_token={token}"
    ))
    .await
    .err(404, "NotFound", "contacts_team_not_found");
    app.get(&format!(
        "/api/contacts/teams/{}/groups?access_token={token}",
        app.team_id
    ))
    .await
    .err(403, "PermissionDenied", "claim_error");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_for_that_appid_only() {
    let app = TestApp::with(ServiceSettings {
        rate_limit: 3,
        token_rate_limit: 0,
        ..ServiceSettings::default()
    })
    .await;
    let (other_org, other) = app
        .service
        .create_org_with_app("Other", Plan::Business, 10)
        .await
        .unwrap();
    let auth = app.auth().await;
    let mut limited = None;
    for _ in 0..10 {
        let answer = app.get(&app.groups(&auth, "")).await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the limit must bite within 10 calls");
    limited.err(429, "ResourceExhausted", "request_rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);

    let token = app.token_for(&other.appid, &other.secret).await;
    let token = token.ok()["access_token"].as_str().unwrap().to_owned();
    let other_path = format!(
        "/api/contacts/teams/{}/groups?appid={}&access_token={token}",
        other_org.team_id, other.appid
    );
    app.get(&other_path).await.ok();
}

#[tokio::test]
async fn token_calls_have_their_own_limit() {
    let app = TestApp::with(ServiceSettings {
        rate_limit: 0,
        token_rate_limit: 2,
        ..ServiceSettings::default()
    })
    .await;
    app.token_for(&app.appid, &app.secret).await.ok();
    app.token_for(&app.appid, &app.secret).await.ok();
    app.token_for(&app.appid, &app.secret).await.err(
        429,
        "ResourceExhausted",
        "request_rate_limited",
    );
}

#[tokio::test]
async fn every_failure_has_the_envelope() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    app.get("/no/such/route")
        .await
        .err(404, "NotFound", "not_found");
    app.send(
        app.client
            .put(format!("{}{}", app.base, app.groups(&auth, ""))),
    )
    .await
    .err(405, "InvalidArgument", "invalid_argument");
    let url = format!("{}{}", app.base, app.groups(&auth, ""));
    app.send(app.client.post(&url).body("{not json")).await.err(
        400,
        "InvalidArgument",
        "invalid_argument",
    );
    app.post(&app.groups(&auth, ""), json!({"name": 5}))
        .await
        .err(400, "InvalidArgument", "invalid_argument");
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    app.send(app.client.post(&url).body(huge)).await.err(
        413,
        "InvalidArgument",
        "invalid_argument",
    );
    app.get(&format!("/api/contacts/teams/abc/groups?{auth}"))
        .await
        .err(400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn a_valid_incoming_request_id_is_reused() {
    let app = TestApp::spawn().await;
    let id = "5ffeb778-6046-42b2-b6f7-0c79ebc82288";
    let answer = app
        .send(
            app.client
                .get(format!("{}/healthz", app.base))
                .header("x-request-id", id),
        )
        .await;
    answer.ok();
    assert_eq!(answer.body["request_id"], id);
    let answer = app
        .send(
            app.client
                .get(format!("{}/healthz", app.base))
                .header("x-request-id", "nope"),
        )
        .await;
    assert_ne!(answer.body["request_id"], "nope");
}
