//! The directory sync extension: modes, dry run, brake, validation, atomicity, formats, and
//! readers during a sync.

use std::io::Write;

use serde_json::{Value, json};

use crate::helpers::{Api, ApiResponse, TestApp, assert_error, assert_ok, assert_stored_as_served};

fn group(remote: &str, name: &str, parent: &str) -> Value {
    json!({"remote_id": remote, "name": name, "parent_remote_id": parent})
}

fn member(openid: &str, groups: &[&str]) -> Value {
    json!({"openid": openid, "nickname": openid, "group_remote_ids": groups})
}

fn sync_path(app: &TestApp) -> String {
    format!("/api/contacts/teams/{}/sync", app.team_id)
}

async fn sync(app: &TestApp, api: &Api<'_>, body: Value) -> ApiResponse {
    api.post_json(&sync_path(app), &body).await
}

/// The user id of the app's user `openid`.
async fn user_id(api: &Api<'_>, openid: &str) -> Option<i64> {
    let user = assert_ok(&api.get(&format!("/api/sso/users/{openid}")).await);
    user["user_id"].as_i64()
}

async fn full_names(app: &TestApp, api: &Api<'_>) -> Vec<String> {
    api.list_groups(app.team_id, "per_page=1000")
        .await
        .strings("full_name")
}

fn three_groups_three_members() -> Value {
    json!({
        "groups": [group("eu", "EU", "sales"), group("sales", "Sales", ""), group("ops", "Ops", "")],
        "members": [member("ann", &["eu"]), member("bob", &["sales", "ops"]), member("cat", &[])],
    })
}

#[tokio::test]
async fn a_snapshot_creates_the_tree_children_before_parents_included() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let report = assert_ok(&sync(&app, &api, three_groups_three_members()).await);
    assert_eq!(report["groups_created"], 3);
    assert_eq!(report["members_added"], 3);
    assert_eq!(report["dry_run"], false);
    assert!(report["elapsed_ms"].is_u64());
    assert_eq!(
        full_names(&app, &api).await,
        vec!["Acme/Sales", "Acme/Ops", "Acme/Sales/EU"]
    );
    let groups = api.list_groups(app.team_id, "").await;
    assert!(groups.list.iter().all(|g| g["source"] == 2));
    let everyone = api.members(app.team_id, 0, "").await;
    assert_eq!(everyone.total, 3);
    assert_eq!(everyone.list[0]["name"], "ann");
    assert_eq!(everyone.list[0]["group_full_name"], "Acme/Sales/EU");
    // The same snapshot again changes nothing.
    let report = assert_ok(&sync(&app, &api, three_groups_three_members()).await);
    assert_eq!(report["groups_unchanged"], 3);
    assert_eq!(report["members_unchanged"], 3);
    assert_eq!(report["groups_created"], 0);
    assert_stored_as_served(&app, &api).await;
}

#[tokio::test]
async fn a_sync_uses_the_apps_registered_users_and_registers_the_others() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let bob = api.register_user("bob").await;
    let body = json!({
        "groups": [group("ops", "Ops", "")],
        "members": [member("ann", &["ops"]), member("bob", &["ops"]), member("cat", &[])],
    });
    assert_ok(&sync(&app, &api, body).await);
    let mut synced = Vec::new();
    for openid in ["ann", "bob", "cat"] {
        synced.push((user_id(&api, openid).await, openid.to_owned()));
    }
    assert_eq!(synced[1].0, Some(bob), "bob keeps the user he had");
    let everyone = api.members(app.team_id, 0, "").await;
    let mut listed: Vec<_> = everyone
        .list
        .iter()
        .map(|m| {
            (
                m["user_id"].as_i64(),
                m["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    listed.sort();
    synced.sort();
    assert_eq!(listed, synced, "each member is the user of its own openid");
}

#[tokio::test]
async fn new_users_are_numbered_in_openid_order_and_members_written_by_user_id() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let bob = api.register_user("bob").await;
    let body = json!({
        "groups": [],
        "members": [member("dan", &[]), member("bob", &[]), member("ann", &[]), member("cat", &[])],
    });
    assert_ok(&sync(&app, &api, body).await);
    let mut ids = Vec::new();
    for openid in ["ann", "cat", "dan"] {
        ids.push(user_id(&api, openid).await.unwrap_or_default());
    }
    assert!(
        bob < ids[0] && ids[0] < ids[1] && ids[1] < ids[2],
        "the new users' ids ascend with their openids, after bob's: {bob} {ids:?}"
    );
    // The members were written, and their events numbered, by ascending user id.
    let added: Vec<i64> = crate::events::feed(&app, &api, 0)
        .await
        .iter()
        .filter(|e| e["type"] == "member.added")
        .filter_map(|e| e["object"]["id"].as_i64())
        .collect();
    assert_eq!(added, [bob, ids[0], ids[1], ids[2]]);
}

/// More new users than one registration takes (50,000; PostgreSQL runs two at once): each
/// member is still the user registered for its own openid.
#[tokio::test]
async fn a_sync_registering_users_in_several_chunks_gives_each_member_its_own_user() {
    const MEMBERS: usize = 120_000;
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    // Openids in no order, so that the registration's order (by openid) is not the snapshot's.
    let openid = |n: usize| format!("u{:06}", (n * 7_919) % MEMBERS);
    let members: Vec<Value> = (0..MEMBERS)
        .map(|n| json!({"openid": openid(n), "nickname": format!("name of {}", openid(n))}))
        .collect();
    let report = assert_ok(&sync(&app, &api, json!({"groups": [], "members": members})).await);
    assert_eq!(report["members_added"], MEMBERS);
    let mut names = std::collections::HashMap::new();
    for page in 1..=MEMBERS / 1000 {
        let listing = api
            .members(app.team_id, 0, &format!("per_page=1000&page={page}"))
            .await;
        for member in &listing.list {
            names.insert(member["user_id"].as_i64(), member["name"].clone());
        }
    }
    assert_eq!(names.len(), MEMBERS);
    // The first and last openids of every chunk of 50,000, and some between.
    for n in [
        0, 1, 49_999, 50_000, 50_001, 99_999, 100_000, 119_999, 77_777,
    ] {
        let openid = format!("u{n:06}");
        let user = user_id(&api, &openid).await;
        assert_eq!(names[&user], format!("name of {openid}"), "{openid}");
    }
}

#[tokio::test]
async fn moves_renames_and_replace_deletions_across_the_tree() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let first = json!({
        "groups": [group("a", "A", ""), group("b", "B", "a"), group("c", "C", "b"), group("gone", "Gone", "")],
        "members": [member("ann", &["c"]), member("old", &["gone"])],
    });
    assert_ok(&sync(&app, &api, first).await);
    // A group made through the API is not the sync's to delete.
    api.create_group(app.team_id, "Manual", 0).await;
    // Invert the chain, rename one, and drop "gone" in replace mode.
    let second = json!({
        "mode": "replace",
        "groups": [group("c", "C2", ""), group("b", "B", "c"), group("a", "A", "b")],
        "members": [member("ann", &["a"])],
    });
    let report = assert_ok(&sync(&app, &api, second).await);
    assert_eq!(report["groups_moved"], 3);
    assert_eq!(report["groups_renamed"], 1);
    assert_eq!(report["groups_deleted"], 1);
    assert_eq!(report["members_changed"], 1);
    assert_eq!(report["members_removed"], 1);
    assert_eq!(
        full_names(&app, &api).await,
        vec!["Acme/C2", "Acme/Manual", "Acme/C2/B", "Acme/C2/B/A"]
    );
    let with_tombstones = api.list_groups(app.team_id, "include_invalid=true").await;
    assert_eq!(with_tombstones.total, 5);
    let everyone = api.members(app.team_id, 0, "").await;
    assert_eq!(everyone.total, 1);
    assert_eq!(everyone.list[0]["group_full_name"], "Acme/C2/B/A");
    assert_stored_as_served(&app, &api).await;
}

#[tokio::test]
async fn a_dry_run_reports_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let body = json!({
        "dry_run": true,
        "groups": [group("a", "A", "")],
        "members": [member("ann", &["a"])],
    });
    let report = assert_ok(&sync(&app, &api, body).await);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["groups_created"], 1);
    assert_eq!(report["members_added"], 1);
    assert!(full_names(&app, &api).await.is_empty());
    assert_eq!(api.members(app.team_id, 0, "").await.total, 0);
    let unknown = api.get("/api/sso/users/ann").await;
    assert_error(&unknown, 404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn query_options_apply_where_the_body_is_silent_and_a_malformed_one_is_refused() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let one_group = json!({"groups": [group("a", "A", "")]});
    let path = |query: &str| format!("{}?{query}", sync_path(&app));

    let planned = api.post_json(&path("dry_run=true"), &one_group).await;
    assert_eq!(assert_ok(&planned)["dry_run"], true);
    assert!(full_names(&app, &api).await.is_empty());

    // The body's options win over the query's.
    let applied = api
        .post_json(
            &path("dry_run=1"),
            &json!({"dry_run": false, "groups": [group("a", "A", "")]}),
        )
        .await;
    assert_eq!(assert_ok(&applied)["dry_run"], false);
    assert_eq!(full_names(&app, &api).await, vec!["Acme/A"]);

    // A malformed query option is refused even where the body gives that option, and nothing
    // is applied.
    let add_b = json!({
        "mode": "upsert", "dry_run": false, "allow_mass_delete": false,
        "groups": [group("a", "A", ""), group("b", "B", "")],
    });
    for query in [
        "mode=merge",
        "dry_run=maybe",
        "allow_mass_delete=2",
        "mode=upsert&mode=replace",
    ] {
        let refused = api.post_json(&path(query), &add_b).await;
        assert_error(&refused, 400, "InvalidArgument", "invalid_argument");
    }
    assert_eq!(full_names(&app, &api).await, vec!["Acme/A"]);
}

#[tokio::test]
async fn one_bad_row_applies_nothing_and_every_problem_is_listed() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    assert_ok(&sync(&app, &api, json!({"groups": [group("keep", "Keep", "")]})).await);
    let body = json!({
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
    });
    let answer = sync(&app, &api, body).await;
    assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
    let problems = answer.body["data"]["problems"]
        .as_array()
        .expect("data.problems lists the problems");
    let found: Vec<(String, String)> = problems
        .iter()
        .map(|p| {
            let key = p["remote_id"]
                .as_str()
                .or(p["openid"].as_str())
                .unwrap_or("?");
            (key.to_owned(), p["type"].as_str().unwrap_or("?").to_owned())
        })
        .collect();
    for (key, reason) in [
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
            found.contains(&(key.to_owned(), reason.to_owned())),
            "missing ({key:?}, {reason}) in {found:?}"
        );
    }
    assert_eq!(
        full_names(&app, &api).await,
        vec!["Acme/Keep"],
        "nothing applied"
    );
    let unknown = api.get("/api/sso/users/m3").await;
    assert_error(&unknown, 404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn the_brake_stops_mass_deletion_unless_allowed() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let groups: Vec<Value> = (0..60)
        .map(|i| group(&format!("g{i}"), &format!("G{i}"), ""))
        .collect();
    assert_ok(&sync(&app, &api, json!({"groups": groups})).await);
    let keep_one = json!({"mode": "replace", "groups": [group("g0", "G0", "")]});
    let answer = sync(&app, &api, keep_one.clone()).await;
    assert_error(&answer, 409, "InvalidArgument", "sync_deletes_too_many");
    assert_eq!(answer.body["data"]["groups_to_delete"], 59);
    assert_eq!(api.list_groups(app.team_id, "").await.total, 60);
    let mut allowed = keep_one;
    allowed["allow_mass_delete"] = json!(true);
    let report = assert_ok(&sync(&app, &api, allowed).await);
    assert_eq!(report["groups_deleted"], 59);
    assert_eq!(api.list_groups(app.team_id, "").await.total, 1);
}

#[tokio::test]
async fn ndjson_and_gzip_bodies_are_accepted_and_garbage_is_refused() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
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
    encoder.write_all(body.as_bytes()).expect("gzip");
    let compressed = encoder.finish().expect("gzip");
    let url = app.url(&api.authed(&sync_path(&app)));
    let answer = app
        .send(
            app.client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .header("content-encoding", "gzip")
                .body(compressed),
        )
        .await;
    assert_eq!(assert_ok(&answer)["groups_created"], 2);
    assert_eq!(full_names(&app, &api).await, vec!["Acme/A", "Acme/A/B"]);
    assert_eq!(api.members(app.team_id, 0, "").await.ints("role"), vec![2]);

    let not_gzip = app
        .send(
            app.client
                .post(&url)
                .header("content-encoding", "gzip")
                .body("not gzip"),
        )
        .await;
    assert_error(&not_gzip, 400, "InvalidArgument", "invalid_argument");
    let bad_line = app
        .send(
            app.client
                .post(&url)
                .header("content-type", "application/x-ndjson")
                .body("{\"kind\":\"nope\"}"),
        )
        .await;
    assert_error(&bad_line, 400, "InvalidArgument", "invalid_argument");
    let bad_mode = sync(&app, &api, json!({"mode": "merge"})).await;
    assert_error(&bad_mode, 400, "InvalidArgument", "invalid_argument");
}

#[tokio::test]
async fn readers_during_a_sync_see_the_old_or_the_new_directory() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let old: Vec<Value> = (0..400)
        .map(|i| group(&format!("g{i}"), "Old", ""))
        .collect();
    assert_ok(&sync(&app, &api, json!({"groups": old})).await);
    let renamed: Vec<Value> = (0..400)
        .map(|i| group(&format!("g{i}"), "New", ""))
        .collect();
    let writer = {
        let client = app.client.clone();
        let url = app.url(&api.authed(&sync_path(&app)));
        tokio::spawn(async move {
            let answer = client
                .post(url)
                .json(&json!({"groups": renamed}))
                .send()
                .await;
            match answer {
                Ok(answer) => answer
                    .json::<Value>()
                    .await
                    .map(|body| body["code"].clone()),
                Err(error) => Err(error),
            }
        })
    };
    for _ in 0..20 {
        let names = api
            .list_groups(app.team_id, "per_page=1000")
            .await
            .strings("name");
        let new = names.iter().filter(|name| *name == "New").count();
        assert!(
            new == 0 || new == 400,
            "a reader saw a mix: {new} of 400 renamed"
        );
    }
    assert_eq!(
        writer.await.expect("writer task").expect("an answer"),
        json!("OK")
    );
    let names = api
        .list_groups(app.team_id, "per_page=1000")
        .await
        .strings("name");
    assert!(names.iter().all(|name| name == "New"));
}

#[tokio::test]
async fn another_tenant_is_refused_before_its_body_is_read() {
    let app = TestApp::spawn().await;
    let other = app
        .create_org("Other", contactsd::domain::access::Plan::Business, 10)
        .await;
    let api = app.team_api().await;
    let answer = api
        .post_raw(
            &format!("/api/contacts/teams/{}/sync", other.team_id),
            "not json at all",
        )
        .await;
    assert_error(&answer, 403, "PermissionDenied", "claim_error");
}
