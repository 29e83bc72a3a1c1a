//! §5: groups.

use contactsd::service::ServiceSettings;
use serde_json::json;

use crate::helpers::{TestApp, ids};

#[tokio::test]
async fn a_group_comes_back_field_for_field() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let sales = app
        .create_group(
            &auth,
            json!({"name": "  Sales ", "remote_id": "1202", "order": 1002}),
        )
        .await;
    let (list, total) = app.list(&auth, "&page=1&per_page=10").await;
    assert_eq!(total, 1);
    let group = &list[0];
    assert_eq!(group["id"], sales);
    assert_eq!(group["team_id"], app.team_id);
    assert_eq!(group["parent_id"], 0);
    assert_eq!(group["source"], 1);
    assert_eq!(group["remote_id"], "1202");
    assert_eq!(group["name"], "Sales");
    assert_eq!(group["full_name"], "Acme/Sales");
    assert_eq!(group["order"], 1002);
    assert_eq!(group["is_valid"], true);
    let created = group["created_at"].as_str().unwrap();
    assert!(
        created.ends_with("+08:00") && created.len() == 25,
        "{created}"
    );
    assert_eq!(group["upd_at"], group["created_at"]);
    let one = app
        .get(&format!(
            "/api/contacts/teams/{}/groups/{sales}?{auth}",
            app.team_id
        ))
        .await;
    assert_eq!(one.ok(), group);
}

#[tokio::test]
async fn listings_go_by_depth_then_order_desc_then_id() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let a = app.create_group(&auth, json!({"name": "A"})).await;
    let b = app
        .create_group(&auth, json!({"name": "B", "order": 5}))
        .await;
    let a1 = app
        .create_group(&auth, json!({"name": "A1", "parent_id": a}))
        .await;
    let c = app.create_group(&auth, json!({"name": "C"})).await;
    let b1 = app
        .create_group(&auth, json!({"name": "B1", "parent_id": b, "order": 9}))
        .await;
    let (list, total) = app.list(&auth, "&per_page=100").await;
    assert_eq!(total, 5);
    assert_eq!(ids(&list, "id"), vec![b, a, c, b1, a1]);
    // Paging returns every group once, in the same order.
    let mut paged = Vec::new();
    for page in 1..=3 {
        let (list, total) = app.list(&auth, &format!("&per_page=2&page={page}")).await;
        assert_eq!(total, 5);
        paged.extend(ids(&list, "id"));
    }
    assert_eq!(paged, vec![b, a, c, b1, a1]);
    let (past, total) = app.list(&auth, "&per_page=2&page=99").await;
    assert!(past.is_empty());
    assert_eq!(total, 5);
    // Children of one parent; the top level.
    let (children, _) = app.list(&auth, &format!("&parent_id={a}")).await;
    assert_eq!(ids(&children, "id"), vec![a1]);
    let (top, total) = app.list(&auth, "&parent_id=0").await;
    assert_eq!((ids(&top, "id"), total), (vec![b, a, c], 3));
    // Whole subtree.
    let (below, _) = app
        .list(&auth, &format!("&parent_id={b}&recursive=true"))
        .await;
    assert_eq!(ids(&below, "id"), vec![b1]);
    app.get(&app.groups(&auth, "&parent_id=999")).await.err(
        404,
        "NotFound",
        "parent_group_not_found",
    );
    for bad in [
        "&page=0",
        "&per_page=0",
        "&per_page=1001",
        "&page=x",
        "&parent_id=-1",
    ] {
        app.get(&app.groups(&auth, bad))
            .await
            .err(400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn remote_ids_filter_in_every_array_form() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let x = app
        .create_group(&auth, json!({"name": "X", "remote_id": "x"}))
        .await;
    let y = app
        .create_group(&auth, json!({"name": "Y", "remote_id": "y"}))
        .await;
    app.create_group(&auth, json!({"name": "Z", "remote_id": "z"}))
        .await;
    for query in [
        "&remote_ids=x&remote_ids=y",
        "&remote_ids[]=x&remote_ids[]=y",
        "&remote_ids=x,y",
        "&remote_ids=%5B%22x%22,%22y%22%5D",
    ] {
        let (list, total) = app.list(&auth, query).await;
        assert_eq!((ids(&list, "id"), total), (vec![x, y], 2), "{query}");
    }
}

#[tokio::test]
async fn extensions_filter_by_keyword_time_and_tombstones() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let sales = app
        .create_group(&auth, json!({"name": "Sales EU", "remote_id": "s"}))
        .await;
    let ops = app.create_group(&auth, json!({"name": "Ops"})).await;
    let (list, _) = app.list(&auth, "&keyword=sALes").await;
    assert_eq!(ids(&list, "id"), vec![sales]);
    let (list, total) = app
        .list(&auth, "&updated_since=2000-01-01T00:00:00%2B08:00")
        .await;
    assert_eq!((list.len(), total), (2, 2));
    let (_, total) = app.list(&auth, "&updated_since=2999-01-01T00:00:00Z").await;
    assert_eq!(total, 0);
    app.get(&app.groups(&auth, "&updated_since=yesterday"))
        .await
        .err(400, "InvalidArgument", "invalid_argument");

    app.post(
        &app.groups(&auth, "")
            .replace("/groups?", "/groups/batch_delete?"),
        json!({"group_ids": [ops]}),
    )
    .await
    .ok();
    let (list, _) = app.list(&auth, "").await;
    assert_eq!(ids(&list, "id"), vec![sales]);
    let (list, total) = app.list(&auth, "&include_invalid=true").await;
    assert_eq!(total, 2);
    let tombstone = list.iter().find(|g| g["id"] == ops).unwrap();
    assert_eq!(tombstone["is_valid"], false);
}

#[tokio::test]
async fn names_and_remote_ids_are_checked() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let path = app.groups(&auth, "");
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "a/b"}),
        json!({"name": "x".repeat(65)}),
        json!({}),
        json!({"name": "ok", "remote_id": "r".repeat(65)}),
        json!({"name": "ok", "order": 1i64 << 40}),
    ] {
        app.post(&path, body)
            .await
            .err(400, "InvalidArgument", "invalid_argument");
    }
    app.create_group(&auth, json!({"name": "界".repeat(64)}))
        .await;
    app.create_group(&auth, json!({"name": "One", "remote_id": "dup"}))
        .await;
    app.post(&path, json!({"name": "Two", "remote_id": "dup"}))
        .await
        .err(409, "AlreadyExists", "duplicated_remote_id");
    app.post(&path, json!({"name": "Orphan", "parent_id": 4242}))
        .await
        .err(404, "NotFound", "parent_group_not_found");
}

#[tokio::test]
async fn full_names_follow_renames_and_moves_of_ancestors() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let a = app.create_group(&auth, json!({"name": "A"})).await;
    let b = app
        .create_group(&auth, json!({"name": "B", "parent_id": a}))
        .await;
    let c = app
        .create_group(&auth, json!({"name": "C", "parent_id": b}))
        .await;
    let other = app.create_group(&auth, json!({"name": "Other"})).await;
    let update = |id: i64| format!("/api/contacts/teams/{}/groups/{id}?{auth}", app.team_id);
    let full = |list: &[serde_json::Value], id: i64| {
        list.iter().find(|g| g["id"] == id).unwrap()["full_name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.post(&update(a), json!({"name": "Alpha"})).await.ok();
    let (list, _) = app.list(&auth, "").await;
    assert_eq!(full(&list, c), "Acme/Alpha/B/C");
    app.post(
        &update(b),
        json!({"name": "B", "from_id": a, "to_id": other}),
    )
    .await
    .ok();
    let (list, _) = app.list(&auth, "").await;
    assert_eq!(full(&list, c), "Acme/Other/B/C");
    let moved = list.iter().find(|g| g["id"] == b).unwrap();
    assert_eq!(moved["parent_id"], other);
    // Depth order follows the move: c is now at depth 3.
    assert_eq!(ids(&list, "id"), vec![a, other, b, c]);
}

#[tokio::test]
async fn moves_are_checked_for_cycles_depth_and_the_current_parent() {
    let app = TestApp::with(ServiceSettings {
        max_group_depth: 3,
        rate_limit: 0,
        token_rate_limit: 0,
        ..ServiceSettings::default()
    })
    .await;
    let auth = app.auth().await;
    let a = app.create_group(&auth, json!({"name": "A"})).await;
    let b = app
        .create_group(&auth, json!({"name": "B", "parent_id": a}))
        .await;
    let c = app
        .create_group(&auth, json!({"name": "C", "parent_id": b}))
        .await;
    let d = app.create_group(&auth, json!({"name": "D"})).await;
    app.post(
        &app.groups(&auth, ""),
        json!({"name": "too deep", "parent_id": c}),
    )
    .await
    .err(409, "FailedPrecondition", "group_too_deep");
    let update = |id: i64| format!("/api/contacts/teams/{}/groups/{id}?{auth}", app.team_id);
    app.post(&update(a), json!({"name": "A", "to_id": c}))
        .await
        .err(409, "FailedPrecondition", "group_cycle");
    app.post(&update(a), json!({"name": "A", "to_id": a}))
        .await
        .err(409, "FailedPrecondition", "group_cycle");
    // Moving A (height 3) under D would make C depth 4.
    app.post(&update(a), json!({"name": "A", "to_id": d}))
        .await
        .err(409, "FailedPrecondition", "group_too_deep");
    app.post(&update(b), json!({"name": "B", "from_id": d, "to_id": 0}))
        .await
        .err(400, "InvalidArgument", "invalid_argument");
    app.post(&update(0), json!({"name": "Root"})).await.err(
        409,
        "FailedPrecondition",
        "default_group_be_modified",
    );
    app.post(&update(999), json!({"name": "Nope"})).await.err(
        404,
        "NotFound",
        "contacts_group_not_found",
    );
    // Nothing changed.
    let (list, _) = app.list(&auth, "&per_page=100").await;
    assert_eq!(ids(&list, "id"), vec![a, d, b, c]);
    // A valid move and a remote id change bump upd_at and keep source 1.
    app.post(
        &update(b),
        json!({"name": "B2", "from_id": a, "to_id": d, "remote_id": "bb"}),
    )
    .await
    .ok();
    let one = app
        .get(&format!(
            "/api/contacts/teams/{}/groups/{b}?{auth}",
            app.team_id
        ))
        .await;
    let group = one.ok();
    assert_eq!(
        (group["parent_id"].as_i64(), group["remote_id"].as_str()),
        (Some(d), Some("bb"))
    );
    assert_eq!(group["full_name"], "Acme/D/B2");
}

#[tokio::test]
async fn batch_delete_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let a = app
        .create_group(&auth, json!({"name": "A", "remote_id": "a"}))
        .await;
    let a1 = app
        .create_group(&auth, json!({"name": "A1", "parent_id": a}))
        .await;
    let b = app.create_group(&auth, json!({"name": "B"})).await;
    let path = format!(
        "/api/contacts/teams/{}/groups/batch_delete?{auth}",
        app.team_id
    );
    app.post(&path, json!({"group_ids": [b, 999]})).await.err(
        404,
        "NotFound",
        "contacts_group_not_found",
    );
    app.post(&path, json!({"group_ids": [a]})).await.err(
        409,
        "FailedPrecondition",
        "group_not_empty",
    );
    app.post(&path, json!({"group_ids": [0]})).await.err(
        409,
        "FailedPrecondition",
        "default_group_be_modified",
    );
    app.post(&path, json!({"group_ids": []}))
        .await
        .err(400, "InvalidArgument", "invalid_argument");
    app.post(&path, json!({"group_ids": "1"})).await.err(
        400,
        "InvalidArgument",
        "invalid_argument",
    );
    let (_, total) = app.list(&auth, "").await;
    assert_eq!(total, 3, "a refused batch deletes nothing");
    app.post(&path, json!({"group_ids": [a, a1]})).await.ok();
    let (list, _) = app.list(&auth, "").await;
    assert_eq!(ids(&list, "id"), vec![b]);
    app.get(&format!(
        "/api/contacts/teams/{}/groups/{a}?{auth}",
        app.team_id
    ))
    .await
    .err(404, "NotFound", "contacts_group_not_found");
    // The remote id is free again.
    app.create_group(&auth, json!({"name": "A again", "remote_id": "a"}))
        .await;
}

#[tokio::test]
async fn racing_moves_and_creates_never_break_the_tree() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let left = app.create_group(&auth, json!({"name": "L"})).await;
    let right = app
        .create_group(&auth, json!({"name": "R", "parent_id": left}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let base = app.base.clone();
        let team = app.team_id;
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let (url, body) = match i % 4 {
                0 => (
                    format!("{base}/api/contacts/teams/{team}/groups/{left}?{auth}"),
                    json!({"name": "L", "to_id": right}),
                ),
                1 => (
                    format!("{base}/api/contacts/teams/{team}/groups/{right}?{auth}"),
                    json!({"name": "R", "to_id": 0}),
                ),
                2 => (
                    format!("{base}/api/contacts/teams/{team}/groups/{right}?{auth}"),
                    json!({"name": "R", "to_id": left}),
                ),
                _ => (
                    format!("{base}/api/contacts/teams/{team}/groups?{auth}"),
                    json!({"name": format!("n{i}"), "remote_id": "same"}),
                ),
            };
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut created = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let status = task.await.unwrap();
        assert!(matches!(status, 200 | 404 | 409), "unexpected {status}");
        if i % 4 == 3 && status == 200 {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one create may take the remote id");
    // Afterwards: no cycle, and only the groups that were created.
    let (list, total) = app.list(&auth, "&per_page=1000").await;
    assert_eq!(total, 3);
    let l = list.iter().find(|g| g["id"] == left).unwrap();
    let r = list.iter().find(|g| g["id"] == right).unwrap();
    assert!(
        !(l["parent_id"] == right && r["parent_id"] == left),
        "cycle between L and R"
    );
}
