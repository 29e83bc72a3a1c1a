//! Tenant isolation, endpoint by endpoint: an app of one org, and a platform app that did not
//! create the org, call every operation on another org's resources and get `claim_error` with
//! nothing of the other org in the answer, and the other org is unchanged afterwards.
//!
//! The sweep is a table; a test checks that the table names every operation of the API
//! description, so a new endpoint cannot be forgotten.

use std::collections::BTreeSet;

use contactsd::domain::access::Plan;
use serde_json::{Value, json};

use crate::helpers::*;

/// Operations that name no other tenant's resource, and why.
const NOT_TENANT_SCOPED: [(&str, &str, &str); 6] = [
    (
        "get",
        "/api/oauth2/access_token",
        "takes the caller's own credentials",
    ),
    (
        "post",
        "/api/orgs",
        "creates a new org for the calling platform app",
    ),
    (
        "post",
        "/api/sso/users",
        "registers in the caller's own openid namespace",
    ),
    ("get", "/healthz", "names no resource"),
    ("get", "/openapi.json", "names no resource"),
    // Openids are per app: another app's openid is simply unknown (checked below).
    (
        "get|post",
        "/api/sso/users/{openid}",
        "looks up the caller's own openids",
    ),
];

/// What the victim org holds.
struct Victim {
    org: TestOrg,
    group: i64,
    user: i64,
    openid: &'static str,
}

/// Every tenant-scoped operation, aimed at `victim`: (method, path template, path, body).
fn operations(victim: &Victim) -> Vec<(&'static str, &'static str, String, Value)> {
    let (team, group, user) = (victim.org.team_id, victim.group, victim.user);
    vec![
        (
            "get",
            "/api/contacts/teams/{team_id}/groups",
            groups_path(team),
            Value::Null,
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/groups",
            groups_path(team),
            json!({"name": "Intruder"}),
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/groups/batch_delete",
            delete_groups_path(team),
            json!({"group_ids": [group]}),
        ),
        (
            "get",
            "/api/contacts/teams/{team_id}/groups/{group_id}",
            group_path(team, group),
            Value::Null,
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/groups/{group_id}",
            group_path(team, group),
            json!({"name": "Renamed"}),
        ),
        (
            "get",
            "/api/contacts/teams/{team_id}/groups/{group_id}/users",
            members_path(team, group),
            Value::Null,
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}",
            member_path(team, group, user),
            json!({"role": 4}),
        ),
        (
            "delete",
            "/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}",
            member_path(team, group, user),
            Value::Null,
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/users/{user_id}",
            member_update_path(team, user),
            json!({"nickname": "Renamed"}),
        ),
        (
            "post",
            "/api/contacts/teams/{team_id}/sync",
            format!("/api/contacts/teams/{team}/sync"),
            json!({"mode": "replace", "allow_mass_delete": true, "groups": [], "members": []}),
        ),
        (
            "get",
            "/api/orgs/{org_id}",
            format!("/api/orgs/{}", victim.org.org_id),
            Value::Null,
        ),
    ]
}

async fn call(api: &Api<'_>, method: &str, path: &str, body: &Value) -> ApiResponse {
    match method {
        "get" => api.get(path).await,
        "delete" => api.delete(path).await,
        _ => api.post_json(path, body).await,
    }
}

/// The victim's directory and user as its own app sees them.
async fn victim_state(app: &TestApp, victim: &Victim) -> Value {
    let api = app.login(&victim.org.appid, &victim.org.secret).await;
    let team = victim.org.team_id;
    json!({
        "groups": assert_ok(&api.get(&groups_path(team)).await),
        "members": assert_ok(&api.get(&members_path(team, 0)).await),
        "user": assert_ok(&api.get(&format!("/api/sso/users/{}", victim.openid)).await),
    })
}

async fn make_victim(app: &TestApp) -> Victim {
    let org = app.create_org("Victim", Plan::Flagship, 10).await;
    let api = app.login(&org.appid, &org.secret).await;
    let group = api.create_group(org.team_id, "Secret Lab", 0).await;
    let openid = "victim-openid";
    let user = api.register(openid, "Victim Person", "").await.user_id;
    api.add_member_ok(org.team_id, group, user, None).await;
    Victim {
        org,
        group,
        user,
        openid,
    }
}

#[tokio::test]
async fn every_operation_on_another_orgs_resources_is_a_claim_error() {
    let app = TestApp::spawn().await;
    let victim = make_victim(&app).await;
    let before = victim_state(&app, &victim).await;

    let intruder = app.create_org("Intruder", Plan::Flagship, 10).await;
    let platform = app.create_platform_app("Partner").await;
    let callers = [
        ("team app of another org", intruder.appid, intruder.secret),
        (
            "platform app that did not create the org",
            platform.appid,
            platform.secret,
        ),
    ];
    for (who, appid, secret) in &callers {
        let api = app.login(appid, secret).await;
        for (method, template, path, body) in operations(&victim) {
            let response = call(&api, method, &path, &body).await;
            let context = format!("{who}: {method} {template}");
            assert_eq!(response.status, 403, "{context}: {:?}", response.body);
            assert_eq!(response.body["code"], "PermissionDenied", "{context}");
            assert_eq!(response.body["error"]["type"], "claim_error", "{context}");
            assert_eq!(response.body["data"], json!({}), "{context}");
            let text = response.body.to_string();
            for secret in ["Secret Lab", "Victim Person", "Victim", "victim-openid"] {
                assert!(!text.contains(secret), "{context} leaks {secret:?}: {text}");
            }
        }
        // Another app's openid is unknown in this app's namespace, for reading and writing.
        let response = api.get(&format!("/api/sso/users/{}", victim.openid)).await;
        assert_error(&response, 404, "NotFound", "user_not_found");
        let response = api
            .post_json(
                &format!("/api/sso/users/{}", victim.openid),
                &json!({"nickname": "Hijacked", "avatar": ""}),
            )
            .await;
        assert_error(&response, 404, "NotFound", "user_not_found");
    }

    assert_eq!(
        victim_state(&app, &victim).await,
        before,
        "the victim's directory and user must be unchanged"
    );
}

#[tokio::test]
async fn the_sweep_covers_every_operation_of_the_api_description() {
    let snapshot = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/snapshots/openapi.json"
    ))
    .expect("the committed API description");
    let document: Value = serde_json::from_str(&snapshot).expect("JSON");
    let described: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();

    let placeholder = Victim {
        org: TestOrg {
            org_id: 1,
            team_id: 1,
            appid: String::new(),
            secret: String::new(),
        },
        group: 1,
        user: 1,
        openid: "x",
    };
    let mut swept: BTreeSet<(String, String)> = operations(&placeholder)
        .into_iter()
        .map(|(method, template, _, _)| (method.to_owned(), template.to_owned()))
        .collect();
    for (methods, path, _why) in NOT_TENANT_SCOPED {
        for method in methods.split('|') {
            swept.insert((method.to_owned(), path.to_owned()));
        }
    }
    assert_eq!(
        swept, described,
        "every operation must be in the isolation sweep or listed as not tenant-scoped"
    );
}
