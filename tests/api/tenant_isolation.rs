//! Tenant isolation, endpoint by endpoint: an app of one org, and a platform app that did not
//! create the org, call every operation on another org's resources and get `claim_error` with
//! nothing of the other org in the answer, and the other org is unchanged afterwards.
//!
//! The sweep is derived from the live API description: every operation whose path names a
//! directory (`{team_id}`) or an org (`{org_id}`) is called with the victim's ids and its own
//! request example as the body; any other operation must be listed, with a reason, as not
//! tenant-scoped. A new endpoint cannot be left out.

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
    webhook: i64,
}

/// The operations of the live API description as `(method, path template, operation)`.
async fn described_operations(app: &TestApp) -> (Value, Vec<(String, String, Value)>) {
    let document: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("the API description")
        .json()
        .await
        .expect("JSON");
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            operations.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    (document, operations)
}

fn not_tenant_scoped(method: &str, path: &str) -> bool {
    NOT_TENANT_SCOPED
        .iter()
        .any(|(methods, listed, _)| *listed == path && methods.split('|').any(|m| m == method))
}

/// The example body of an operation's JSON request, from the document.
fn example_body(document: &Value, operation: &Value) -> Value {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    let Some(reference) = schema["$ref"].as_str() else {
        return Value::Null;
    };
    let name = reference.rsplit('/').next().unwrap_or_default();
    let component = &document["components"]["schemas"][name];
    match &component["example"] {
        Value::Null => component["examples"][0].clone(),
        example => example.clone(),
    }
}

/// Every tenant-scoped operation, aimed at `victim`: (method, path template, path, body).
async fn operations(app: &TestApp, victim: &Victim) -> Vec<(String, String, String, Value)> {
    let (document, described) = described_operations(app).await;
    let mut aimed = Vec::new();
    for (method, template, operation) in described {
        if not_tenant_scoped(&method, &template) {
            continue;
        }
        assert!(
            template.contains("{team_id}") || template.contains("{org_id}"),
            "{method} {template} names no directory or org: sweep it here, or list it in \
             NOT_TENANT_SCOPED with the reason"
        );
        let path = template
            .replace("{team_id}", &victim.org.team_id.to_string())
            .replace("{org_id}", &victim.org.org_id.to_string())
            .replace("{group_id}", &victim.group.to_string())
            .replace("{user_id}", &victim.user.to_string())
            .replace("{webhook_id}", &victim.webhook.to_string());
        assert!(
            !path.contains('{'),
            "{template}: a placeholder the sweep cannot fill"
        );
        let body = example_body(&document, &operation);
        aimed.push((method, template, path, body));
    }
    assert!(aimed.len() >= 11, "too few operations swept: {aimed:?}");
    aimed
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
        "webhooks": assert_ok(&api.get(&format!("/api/contacts/teams/{team}/webhooks")).await),
    })
}

async fn make_victim(app: &TestApp) -> Victim {
    let org = app.create_org("Victim", Plan::Flagship, 10).await;
    let api = app.login(&org.appid, &org.secret).await;
    let group = api.create_group(org.team_id, "Secret Lab", 0).await;
    let openid = "victim-openid";
    let user = api.register(openid, "Victim Person", "").await.user_id;
    api.add_member_ok(org.team_id, group, user, None).await;
    // A public address (no worker runs here: nothing is delivered).
    let webhook = assert_ok(
        &api.post_json(
            &format!("/api/contacts/teams/{}/webhooks", org.team_id),
            &json!({"url": "http://93.184.216.34/hook"}),
        )
        .await,
    )["id"]
        .as_i64()
        .expect("a webhook id");
    Victim {
        org,
        group,
        user,
        openid,
        webhook,
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
        for (method, template, path, body) in operations(&app, &victim).await {
            let response = call(&api, &method, &path, &body).await;
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
async fn every_operation_listed_as_not_tenant_scoped_is_described() {
    let app = TestApp::spawn().await;
    let (_, described) = described_operations(&app).await;
    let described: BTreeSet<(String, String)> = described
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    for (methods, path, why) in NOT_TENANT_SCOPED {
        for method in methods.split('|') {
            assert!(
                described.contains(&(method.to_owned(), path.to_owned())),
                "{method} {path} ({why}) is not an operation of the API description"
            );
        }
    }
}

#[tokio::test]
async fn another_tenants_users_answer_as_unknown_ids() {
    let app = TestApp::spawn().await;
    let victim = make_victim(&app).await;
    let outsider = app
        .team_api()
        .await
        .register("outsider", "Outsider", "")
        .await
        .user_id;

    // A team app cannot add the victim's user, nor a user id that does not exist: the same
    // answer for both.
    let api = app.team_api().await;
    let group = api.create_group(app.team_id, "Lab", 0).await;
    for user in [victim.user, 999_999_999] {
        let response = api.add_member(app.team_id, group, user, &json!({})).await;
        assert_error(&response, 404, "NotFound", "contacts_user_not_found");
    }
    // A platform app cannot name another tenant's user (nor its own org's) as an org's creator.
    let platform = app.create_platform_app("Partner").await;
    let partner = app.login(&platform.appid, &platform.secret).await;
    for user in [victim.user, outsider, 999_999_999] {
        let response = partner
            .post_json("/api/orgs", &json!({"name": "Taken", "user_id": user}))
            .await;
        assert_error(&response, 404, "NotFound", "user_not_found");
    }
    // Its own user it can; the org's team app then keeps working with that member, whom an
    // app of another tenant (the platform app) registered.
    let own = partner.register_user("partner-user").await;
    let created = assert_ok(
        &partner
            .post_json("/api/orgs", &json!({"name": "Partnered", "user_id": own}))
            .await,
    );
    let team = created["team_id"].as_i64().expect("team_id");
    let lab = partner.create_group(team, "Lab", 0).await;
    partner.add_member_ok(team, lab, own, None).await;
    let listed = partner.members(team, lab, "").await;
    assert_eq!(listed.ints("user_id"), vec![own]);
}
