//! The API description: `/openapi.json` against its committed snapshot, against the router's
//! routes and against real answers; and the `/docs` page.
//!
//! When the document changes on purpose, refresh the snapshot with
//! `UPDATE_SNAPSHOTS=1 cargo test --test api openapi` and review the diff.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, assert_ok, group_path, groups_path, member_path};

const SNAPSHOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/api/snapshots/openapi.json"
);

/// Routes that serve pages or the metrics, not operations of the API.
const NOT_OPERATIONS: [&str; 5] = [
    "/docs",
    "/docs/{*file}",
    "/console",
    "/console/{version}/{file}",
    "/metrics",
];

async fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers().contains_key("x-request-id"),
        "the middleware still tags the answer"
    );
    response.json().await.expect("JSON")
}

/// JSON pointers where `a` and `b` differ (at most `limit`).
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                match (x.get(key), y.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, &pointer, out, limit),
                    (Some(_), None) => out.push(format!("{pointer}: only in the snapshot")),
                    (None, Some(_)) => out.push(format!("{pointer}: only in the document")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                differences(x, y, &format!("{at}/{i}"), out, limit);
            }
        }
        _ => out.push(format!("{at}: {a} in the snapshot, {b} in the document")),
    }
}

#[tokio::test]
async fn the_document_matches_its_snapshot() {
    let app = TestApp::spawn().await;
    let served = document(&app).await;
    let committed: Option<Value> = std::fs::read_to_string(SNAPSHOT)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    if committed.as_ref() == Some(&served) {
        return;
    }
    if std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|value| value == "1") {
        let mut text = serde_json::to_string_pretty(&served).expect("serialize");
        text.push('\n');
        std::fs::create_dir_all(Path::new(SNAPSHOT).parent().expect("folder")).expect("mkdir");
        std::fs::write(SNAPSHOT, text).expect("write the snapshot");
        eprintln!("updated {SNAPSHOT}");
        return;
    }
    let mut found = Vec::new();
    if let Some(committed) = &committed {
        differences(committed, &served, "", &mut found, 20);
    } else {
        found.push("no readable snapshot".to_owned());
    }
    panic!(
        "/openapi.json differs from {SNAPSHOT}:\n  {}\nIf the change is intended, run \
         `UPDATE_SNAPSHOTS=1 cargo test --test api openapi` and commit the snapshot.",
        found.join("\n  ")
    );
}

/// The literal path of every `.route(...)` in the HTTP layer's source (test modules aside):
/// the routes registered without a description. Operations are registered with
/// `OpenApiRouter::routes`, which describes them in the same step. SCIM (`src/http/scim`) is
/// left out: it is its own protocol, described by its discovery resources (contract §12).
fn undescribed_routes_in_source() -> BTreeSet<String> {
    let mut folders = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/http"
    ))];
    let mut routes = BTreeSet::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if !path.ends_with("scim") {
                    folders.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for call in code.split(".route(").skip(1) {
                let route = call
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("a route without a literal path in {path:?}"));
                routes.insert(route.to_owned());
            }
        }
    }
    routes
}

fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            found.insert((method.clone(), path.clone()));
        }
    }
    found
}

#[test]
fn only_the_docs_pages_are_routed_without_a_description() {
    let undescribed = undescribed_routes_in_source();
    let allowed: BTreeSet<String> = NOT_OPERATIONS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(
        undescribed, allowed,
        "a route registered with `.route` has no description; register it with \
         `OpenApiRouter::routes(routes!(handler))` next to its resource"
    );
}

#[tokio::test]
async fn every_described_operation_answers_on_its_route() {
    let app = TestApp::spawn().await;
    let described = operations(&document(&app).await);
    for (method, path) in described {
        let url = fill_placeholders(&app.address, &path);
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != 405 && body["error"]["type"] != "no_route",
            "{method} {url} is not routed: {status} {body}"
        );
    }
}

fn fill_placeholders(base: &str, path: &str) -> String {
    let mut url = base.to_owned();
    for segment in path.split('/').skip(1) {
        url.push('/');
        match segment {
            "{openid}" => url.push_str("someone"),
            s if s.starts_with('{') => url.push('1'),
            s => url.push_str(s),
        }
    }
    url
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                out.push(target.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_reference_resolves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for target in refs {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["access_token"]["in"], "query");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    let list_groups = &doc["paths"]["/api/contacts/teams/{team_id}/groups"]["get"];
    let statuses: Vec<&str> = list_groups["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .map(String::as_str)
        .collect();
    // The default mode: every enveloped answer, failures included, is HTTP 200; the only other
    // statuses are the HTTP layer's bare refusals of a request head over its limit.
    assert_eq!(statuses, ["200", "414", "431"]);
    for status in ["414", "431"] {
        let refusal = &list_groups["responses"][status]["$ref"];
        let pointer = refusal.as_str().and_then(|target| target.strip_prefix('#'));
        let described = pointer
            .and_then(|pointer| doc.pointer(pointer))
            .expect(status);
        assert!(
            described["description"]
                .as_str()
                .is_some_and(|text| text.contains("64 KiB")),
            "{status}: {described}"
        );
    }
    let described = list_groups["responses"]["200"]["description"]
        .as_str()
        .expect("description");
    assert!(
        described.contains("(HTTP 404 when mapped)"),
        "the mapped status of each failure is named: {described}"
    );
    let per_page = list_groups["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|p| p["name"] == "per_page")
        .expect("per_page");
    assert_eq!(per_page["in"], "query");
    assert_eq!(per_page["schema"]["minimum"], 1);
    assert_eq!(per_page["schema"]["maximum"], 1000);
}

/// The example of `error_type` of an operation (in its HTTP 200 answer), without its request
/// id.
fn failure_example(doc: &Value, path: &str, method: &str, error_type: &str) -> Value {
    let mut example = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        ["examples"][error_type]["value"]
        .clone();
    example
        .as_object_mut()
        .unwrap_or_else(|| panic!("no example of {error_type} for {method} {path}"))
        .remove("request_id");
    example
}

/// The codes of the reference service (§2); no other may appear.
const REFERENCE_CODES: [&str; 9] = [
    "OK",
    "InvalidArgument",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "ResourceExhausted",
    "InternalServerError",
    "NoRoute",
    "RemoteServerError",
];

/// Every `code` value the document holds: example bodies and `code` enums of the schemas.
fn codes_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(code) = map.get("code") {
                match code {
                    Value::String(code) => out.push(code.clone()),
                    Value::Object(schema) => {
                        for code in schema
                            .get("enum")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            out.push(code.as_str().unwrap_or("<not a string>").to_owned());
                        }
                    }
                    _ => {}
                }
            }
            map.values().for_each(|v| codes_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| codes_in(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_failure_the_document_lists_has_a_code_of_the_reference_set() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut codes = Vec::new();
    let mut failures = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let responses = operation["responses"].as_object().expect("responses");
            for (status, response) in responses {
                let examples = response["content"]["application/json"]["examples"]
                    .as_object()
                    .into_iter()
                    .flatten();
                for (name, example) in examples {
                    let code = example["value"]["code"].as_str().unwrap_or_default();
                    assert!(
                        REFERENCE_CODES.contains(&code),
                        "{method} {path} {status} {name}: {code:?} is not a reference code"
                    );
                    failures += 1;
                }
            }
            codes_in(operation, &mut codes);
        }
    }
    assert!(failures > 100, "too few failures described: {failures}");
    for code in codes {
        assert!(REFERENCE_CODES.contains(&code.as_str()), "{code:?}");
    }
}

#[tokio::test]
async fn failure_examples_are_what_the_server_answers() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let api = app.team_api().await;
    let groups = "/api/contacts/teams/{team_id}/groups";

    let answer = api
        .get(&format!("{}?parent_id=4000", groups_path(app.team_id)))
        .await;
    assert_error(&answer, 404, "NotFound", "parent_group_not_found");
    let mut body = answer.body.clone();
    body.as_object_mut().expect("object").remove("request_id");
    assert_eq!(
        body,
        failure_example(&doc, groups, "get", "parent_group_not_found")
    );

    let answer = app.get(&groups_path(app.team_id)).await;
    assert_error(&answer, 401, "PermissionDenied", "invalid_token");
    let mut body = answer.body.clone();
    body.as_object_mut().expect("object").remove("request_id");
    assert_eq!(body, failure_example(&doc, groups, "get", "invalid_token"));
}

/// The keys of the example of a component schema.
fn example_keys(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["example"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema} has no example"))
        .keys()
        .cloned()
        .collect()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test]
async fn data_examples_have_the_fields_of_real_answers() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let token = app
        .token_response(&app.appid, &app.secret, "client_credential")
        .await;
    assert_eq!(keys(&assert_ok(&token)), example_keys(&doc, "Token"));

    let api = app.team_api().await;
    let sales = api
        .create_group_with(app.team_id, &json!({"name": "Sales", "remote_id": "sales"}))
        .await;
    let group = api.get(&group_path(app.team_id, sales)).await;
    assert_eq!(keys(&assert_ok(&group)), example_keys(&doc, "Group"));

    let user = api.register_user("u-1").await;
    let added = api
        .post_json(&member_path(app.team_id, sales, user), &json!({}))
        .await;
    assert_eq!(assert_ok(&added), json!({}));
    let members = api.members(app.team_id, sales, "").await;
    assert_eq!(keys(&members.list[0]), example_keys(&doc, "Member"));

    let health = app.get("/healthz").await;
    assert_eq!(keys(&assert_ok(&health)), example_keys(&doc, "Health"));

    // The sync call's body and report are described by types of their own: the example
    // snapshot must be accepted, and the report must have the described fields.
    let mut snapshot = doc["components"]["schemas"]["Snapshot"]["example"].clone();
    snapshot["dry_run"] = json!(true);
    let synced = api
        .post_json(
            &format!("/api/contacts/teams/{}/sync", app.team_id),
            &snapshot,
        )
        .await;
    assert_eq!(keys(&assert_ok(&synced)), example_keys(&doc, "SyncResult"));
}

#[tokio::test]
async fn the_docs_page_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("text");
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    assert!(
        !html.contains("http"),
        "the page loads nothing from elsewhere"
    );

    for (file, kind) in [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui-standalone-preset.js", "javascript"),
        ("swagger-ui.css", "css"),
    ] {
        let response = app
            .client
            .get(format!("{}/docs/{file}", app.address))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{file}");
        let content_type = response.headers()["content-type"].to_str().expect("ascii");
        assert!(content_type.contains(kind), "{file}: {content_type}");
        assert!(
            response.bytes().await.expect("body").len() > 10_000,
            "{file}"
        );
    }
    let initializer = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.address))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(initializer.contains("openapi.json"), "{initializer}");
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );

    let missing = app.get("/docs/nothing-here.js").await;
    assert_error(&missing, 404, "NoRoute", "no_route");
}
