//! The directory sync extension: modes, dry run, brake, validation, atomicity, formats.

use std::io::Write;

use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, ids};

fn group(remote: &str, name: &str, parent: &str) -> Value {
    json!({"remote_id": remote, "name": name, "parent_remote_id": parent})
}

fn member(openid: &str, groups: &[&str]) -> Value {
    json!({"openid": openid, "nickname": openid, "group_remote_ids": groups})
}

async fn sync(app: &TestApp, auth: &str, body: Value) -> Answer {
    app.post(
        &format!("/api/contacts/teams/{}/sync?{auth}", app.team_id),
        body,
    )
    .await
}

async fn names(app: &TestApp, auth: &str) -> Vec<String> {
    let (list, _) = app.list(auth, "&per_page=1000").await;
    list.iter()
        .map(|g| g["full_name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_snapshot_creates_the_tree_children_before_parents_included() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let answer = sync(
        &app,
        &auth,
        json!({
            "groups": [group("eu", "EU", "sales"), group("sales", "Sales", ""), group("ops", "Ops", "")],
            "members": [member("ann", &["eu"]), member("bob", &["sales", "ops"]), member("cat", &[])],
        }),
    )
    .await;
    let report = answer.ok();
    assert_eq!(report["groups_created"], 3);
    assert_eq!(report["members_added"], 3);
    assert_eq!(report["dry_run"], false);
    assert!(report["elapsed_ms"].is_u64());
    assert_eq!(
        names(&app, &auth).await,
        vec!["Acme/Sales", "Acme/Ops", "Acme/Sales/EU"]
    );
    let (list, _) = app.list(&auth, "").await;
    assert!(list.iter().all(|g| g["source"] == 2));
    let (everyone, total) = app.members(&auth, 0, "").await;
    assert_eq!(total, 3);
    assert_eq!(everyone[0]["name"], "ann");
    assert_eq!(everyone[0]["group_full_name"], "Acme/Sales/EU");
    // The same snapshot again changes nothing.
    let again = sync(
        &app,
        &auth,
        json!({
            "groups": [group("eu", "EU", "sales"), group("sales", "Sales", ""), group("ops", "Ops", "")],
            "members": [member("ann", &["eu"]), member("bob", &["sales", "ops"]), member("cat", &[])],
        }),
    )
    .await;
    let report = again.ok();
    assert_eq!(
        (
            report["groups_unchanged"].as_u64(),
            report["members_unchanged"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(report["groups_created"], 0);
}

#[tokio::test]
async fn moves_renames_and_replace_deletions_across_the_tree() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    sync(&app, &auth, json!({
        "groups": [group("a", "A", ""), group("b", "B", "a"), group("c", "C", "b"), group("gone", "Gone", "")],
        "members": [member("ann", &["c"]), member("old", &["gone"])],
    }))
    .await
    .ok();
    // A group made through the API is not the sync's to delete.
    let manual = app.create_group(&auth, json!({"name": "Manual"})).await;
    // Invert the chain, rename, and drop "gone" in replace mode.
    let answer = sync(
        &app,
        &auth,
        json!({
            "mode": "replace",
            "groups": [group("c", "C2", ""), group("b", "B", "c"), group("a", "A", "b")],
            "members": [member("ann", &["a"])],
        }),
    )
    .await;
    let report = answer.ok();
    assert_eq!(report["groups_moved"], 3);
    assert_eq!(report["groups_renamed"], 1);
    assert_eq!(report["groups_deleted"], 1);
    assert_eq!(report["members_changed"], 1);
    assert_eq!(report["members_removed"], 1);
    assert_eq!(
        names(&app, &auth).await,
        vec!["Acme/C2", "Acme/Manual", "Acme/C2/B", "Acme/C2/B/A"]
    );
    let (_, total) = app.list(&auth, "&include_invalid=true").await;
    assert_eq!(total, 5);
    let (everyone, _) = app.members(&auth, 0, "").await;
    assert_eq!(everyone.len(), 1);
    assert_eq!(everyone[0]["group_full_name"], "Acme/C2/B/A");
    let _ = manual;
}

#[tokio::test]
async fn a_dry_run_reports_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let answer = sync(
        &app,
        &auth,
        json!({
            "dry_run": true,
            "groups": [group("a", "A", "")],
            "members": [member("ann", &["a"])],
        }),
    )
    .await;
    let report = answer.ok();
    assert_eq!(
        (
            report["dry_run"].as_bool(),
            report["groups_created"].as_u64(),
            report["members_added"].as_u64()
        ),
        (Some(true), Some(1), Some(1))
    );
    assert!(names(&app, &auth).await.is_empty());
    let (_, total) = app.members(&auth, 0, "").await;
    assert_eq!(total, 0);
    app.get(&format!("/api/sso/users/ann?{auth}"))
        .await
        .err(404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn one_bad_row_applies_nothing_and_every_problem_is_listed() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    sync(&app, &auth, json!({"groups": [group("keep", "Keep", "")]}))
        .await
        .ok();
    let answer = sync(
        &app,
        &auth,
        json!({
            "groups": [
                group("keep", "Renamed", ""),
                group("x", "X", "y"), group("y", "Y", "x"),
                group("dup", "D1", ""), group("dup", "D2", ""),
                group("orphan", "O", "nowhere"),
                group("slash", "a/b", ""),
                group("", "No id", ""),
            ],
            "members": [
                member("m1", &["missing"]),
                json!({"openid": "m2", "role": 1}),
                member("m3", &[]), member("m3", &[]),
            ],
        }),
    )
    .await;
    answer.err_with_data(400, "InvalidArgument", "invalid_argument");
    let problems = answer.body["data"]["problems"].as_array().unwrap();
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|p| {
            let key = p["remote_id"]
                .as_str()
                .or(p["openid"].as_str())
                .unwrap()
                .to_owned();
            (key, p["type"].as_str().unwrap().to_owned())
        })
        .collect();
    for expected in [
        ("x", "group_cycle"),
        ("y", "group_cycle"),
        ("dup", "duplicated_remote_id"),
        ("orphan", "parent_group_not_found"),
        ("slash", "invalid_argument"),
        ("", "invalid_argument"),
        ("m1", "contacts_group_not_found"),
        ("m2", "invalid_argument"),
        ("m3", "duplicated_openid"),
    ] {
        assert!(
            found.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "missing {expected:?} in {found:?}"
        );
    }
    assert_eq!(
        names(&app, &auth).await,
        vec!["Acme/Keep"],
        "nothing applied"
    );
    app.get(&format!("/api/sso/users/m3?{auth}"))
        .await
        .err(404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn the_brake_stops_mass_deletion_unless_allowed() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let groups: Vec<Value> = (0..60)
        .map(|i| group(&format!("g{i}"), &format!("G{i}"), ""))
        .collect();
    sync(&app, &auth, json!({"groups": groups})).await.ok();
    let answer = sync(
        &app,
        &auth,
        json!({"mode": "replace", "groups": [group("g0", "G0", "")]}),
    )
    .await;
    answer.err_with_data(409, "FailedPrecondition", "sync_deletes_too_many");
    assert_eq!(answer.body["data"]["groups_to_delete"], 59);
    let (_, total) = app.list(&auth, "").await;
    assert_eq!(total, 60);
    let answer = sync(
        &app,
        &auth,
        json!({"mode": "replace", "allow_mass_delete": true, "groups": [group("g0", "G0", "")]}),
    )
    .await;
    assert_eq!(answer.ok()["groups_deleted"], 59);
    let (_, total) = app.list(&auth, "").await;
    assert_eq!(total, 1);
}

#[tokio::test]
async fn ndjson_and_gzip_bodies_are_accepted() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let body = [
        json!({"kind": "options", "mode": "upsert"}),
        json!({"kind": "group", "remote_id": "b", "name": "B", "parent_remote_id": "a"}),
        json!({"kind": "group", "remote_id": "a", "name": "A"}),
        json!({"kind": "member", "openid": "ann", "group_remote_ids": ["b"], "role": 2}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body.as_bytes()).unwrap();
    let compressed = encoder.finish().unwrap();
    let url = format!(
        "{}/api/contacts/teams/{}/sync?{auth}",
        app.base, app.team_id
    );
    let answer = app
        .send(
            app.client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .body(compressed),
        )
        .await;
    assert_eq!(answer.ok()["groups_created"], 2);
    assert_eq!(names(&app, &auth).await, vec!["Acme/A", "Acme/A/B"]);
    let (rows, _) = app.members(&auth, 0, "").await;
    assert_eq!(ids(&rows, "role"), vec![2]);
    // Garbage is a clean error.
    let answer = app
        .send(
            app.client
                .post(&url)
                .header("content-encoding", "gzip")
                .body("not gzip"),
        )
        .await;
    answer.err(400, "InvalidArgument", "invalid_argument");
    let answer = app
        .send(
            app.client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body("{\"kind\":\"nope\"}"),
        )
        .await;
    answer.err(400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn readers_during_a_sync_see_the_old_or_the_new_directory() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let groups: Vec<Value> = (0..400)
        .map(|i| group(&format!("g{i}"), "Old", ""))
        .collect();
    sync(&app, &auth, json!({"groups": groups})).await.ok();
    let renamed: Vec<Value> = (0..400)
        .map(|i| group(&format!("g{i}"), "New", ""))
        .collect();
    let writer = {
        let client = app.client.clone();
        let url = format!(
            "{}/api/contacts/teams/{}/sync?{auth}",
            app.base, app.team_id
        );
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"groups": renamed}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    for _ in 0..20 {
        let (list, _) = app.list(&auth, "&per_page=1000").await;
        let new = list.iter().filter(|g| g["name"] == "New").count();
        assert!(
            new == 0 || new == 400,
            "a reader saw a mix: {new} of 400 renamed"
        );
    }
    assert_eq!(writer.await.unwrap(), 200);
    let (list, _) = app.list(&auth, "&per_page=1000").await;
    assert!(list.iter().all(|g| g["name"] == "New"));
}
