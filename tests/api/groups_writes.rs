//! §5 groups, writes: create, update or move, batch delete (the reads are in `groups.rs`).

use std::collections::BTreeSet;

use chrono::FixedOffset;
use contactsd::domain::access::Plan;
use serde_json::{Value, json};

use crate::groups::{tree, tree_order};
use crate::helpers::*;

// ----- §5.3 create --------------------------------------------------------------------------

#[tokio::test]
async fn create_applies_the_defaults_and_returns_id_and_name() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let response = api
        .try_create_group(app.team_id, &json!({"name": "Sales"}))
        .await;
    let data = assert_ok(&response);
    let id = data["group_id"].as_i64().expect("group_id");
    assert!(id > 0 && id <= i64::from(u32::MAX));
    assert_eq!(data, json!({"group_id": id, "name": "Sales"}));

    let group = api.group(app.team_id, id).await;
    assert_eq!(group["id"], id);
    assert_eq!(group["team_id"], app.team_id);
    assert_eq!(group["parent_id"], 0);
    assert_eq!(group["source"], 1);
    assert_eq!(group["remote_id"], "");
    assert_eq!(group["name"], "Sales");
    assert_eq!(group["full_name"], "Acme/Sales");
    assert_eq!(group["order"], 0);
    assert_eq!(group["is_valid"], true);
    let created = assert_time(&group["created_at"], "+08:00");
    let updated = assert_time(&group["upd_at"], "+08:00");
    assert!(updated >= created);
    let age = chrono::Utc::now().signed_duration_since(created);
    assert!(
        age.num_seconds().abs() < 60,
        "created_at {created} is not now"
    );
}

#[tokio::test]
async fn times_use_the_configured_offset() {
    let offset = FixedOffset::west_opt(5 * 3600).expect("offset");
    let app = TestApp::builder().time_offset(offset).spawn().await;
    let api = app.team_api().await;
    let id = api.create_group(app.team_id, "Sales", 0).await;
    let group = api.group(app.team_id, id).await;
    let created = assert_time(&group["created_at"], "-05:00");
    assert_time(&group["upd_at"], "-05:00");
    let age = chrono::Utc::now().signed_duration_since(created);
    assert!(age.num_seconds().abs() < 60, "created_at {created}");
}

#[tokio::test]
async fn group_ids_are_unique_across_directories() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        ids.insert(api.create_group(app.team_id, &format!("G{i}"), 0).await);
        ids.insert(
            other_api
                .create_group(other.team_id, &format!("G{i}"), 0)
                .await,
        );
    }
    assert_eq!(ids.len(), 6);
}

#[tokio::test]
async fn names_are_trimmed_and_siblings_may_share_a_name() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let data = assert_ok(
        &api.try_create_group(app.team_id, &json!({"name": "  Sales \t"}))
            .await,
    );
    assert_eq!(data["name"], "Sales");
    let id = data["group_id"].as_i64().expect("group_id");
    let group = api.group(app.team_id, id).await;
    assert_eq!(group["name"], "Sales");
    assert_eq!(group["full_name"], "Acme/Sales");

    let twin = api.create_group(app.team_id, "Sales", 0).await;
    assert_ne!(twin, id);
    assert_eq!(
        api.list_groups(app.team_id, "").await.strings("name"),
        vec!["Sales", "Sales"]
    );
}

#[tokio::test]
async fn invalid_names_remote_ids_and_orders_are_refused_and_create_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let long_name = "x".repeat(65);
    let long_remote = "r".repeat(65);
    let refused = [
        json!({}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "Sales/East"}),
        json!({"name": "/"}),
        json!({"name": long_name}),
        json!({"name": "R", "remote_id": long_remote}),
        json!({"name": "O", "order": 2_147_483_648_i64}),
        json!({"name": "O", "order": -2_147_483_649_i64}),
    ];
    for body in &refused {
        let response = api.try_create_group(team, body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    assert_eq!(api.list_groups(team, "").await.total, 0);

    // The limits themselves are accepted; 64 characters are characters, not bytes.
    let wide = "界".repeat(64);
    let id = api.create_group(team, &wide, 0).await;
    assert_eq!(api.group(team, id).await["name"], wide.as_str());
    let remote = "r".repeat(64);
    let id = api
        .create_group_with(team, &json!({"name": "R", "remote_id": remote}))
        .await;
    assert_eq!(api.group(team, id).await["remote_id"], remote.as_str());
    for order in [i64::from(i32::MAX), i64::from(i32::MIN)] {
        let id = api
            .create_group_with(team, &json!({"name": "O", "order": order}))
            .await;
        assert_eq!(api.group(team, id).await["order"], order);
    }
}

#[tokio::test]
async fn a_remote_id_in_use_by_a_valid_group_is_duplicated_remote_id() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let first = api
        .create_group_with(team, &json!({"name": "One", "remote_id": "r1"}))
        .await;
    for body in [
        json!({"name": "Two", "remote_id": "r1"}),
        json!({"name": "Two", "remote_id": "r1", "parent_id": first}),
    ] {
        let response = api.try_create_group(team, &body).await;
        assert_error(&response, 409, "AlreadyExists", "duplicated_remote_id");
    }
    assert_eq!(api.list_groups(team, "").await.ints("id"), vec![first]);

    // Empty remote ids never collide, and other directories have their own remote ids.
    api.create_group(team, "Blank1", 0).await;
    api.create_group_with(team, &json!({"name": "Blank2", "remote_id": ""}))
        .await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    other_api
        .create_group_with(other.team_id, &json!({"name": "One", "remote_id": "r1"}))
        .await;
}

#[tokio::test]
async fn create_under_a_missing_foreign_or_deleted_parent_is_parent_group_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let deleted = api.create_group(team, "Deleted", 0).await;
    assert_ok(&api.delete_groups(team, &[deleted]).await);
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let foreign = other_api.create_group(other.team_id, "Foreign", 0).await;

    for parent in [deleted, foreign, foreign + deleted + 1000] {
        let response = api
            .try_create_group(team, &json!({"name": "Child", "parent_id": parent}))
            .await;
        assert_error(&response, 404, "NotFound", "parent_group_not_found");
    }
    assert_eq!(api.list_groups(team, "").await.total, 0);
}

#[tokio::test]
async fn a_create_beyond_the_maximum_depth_is_group_too_deep() {
    let app = TestApp::builder().max_group_depth(3).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let d1 = api.create_group(team, "D1", 0).await;
    let d2 = api.create_group(team, "D2", d1).await;
    let d3 = api.create_group(team, "D3", d2).await;
    assert_eq!(api.group(team, d3).await["full_name"], "Acme/D1/D2/D3");

    let response = api
        .try_create_group(team, &json!({"name": "D4", "parent_id": d3}))
        .await;
    assert_error(&response, 409, "InvalidArgument", "group_too_deep");
    assert_eq!(api.list_groups(team, "").await.total, 3);
}

#[tokio::test]
async fn full_name_follows_renames_and_moves_of_ancestors() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;
    assert_eq!(api.group(team, t.a2x).await["full_name"], "Acme/A/A2/A2x");

    assert_ok(&api.update_group(team, t.a, &json!({"name": "Alpha"})).await);
    assert_eq!(
        api.group(team, t.a2x).await["full_name"],
        "Acme/Alpha/A2/A2x"
    );
    assert_eq!(api.group(team, t.a1).await["full_name"], "Acme/Alpha/A1");

    assert_ok(
        &api.update_group(team, t.a2, &json!({"name": "A2", "to_id": t.b}))
            .await,
    );
    assert_eq!(api.group(team, t.a2x).await["full_name"], "Acme/B/A2/A2x");
    let listed = api.list_groups(team, "per_page=100").await;
    assert_eq!(listed.row("id", t.a2x)["full_name"], "Acme/B/A2/A2x");
    assert_eq!(listed.row("id", t.a2)["parent_id"], t.b);

    assert_ok(
        &api.update_group(team, t.a2, &json!({"name": "Top", "to_id": 0}))
            .await,
    );
    assert_eq!(api.group(team, t.a2x).await["full_name"], "Acme/Top/A2x");
    assert_eq!(api.group(team, t.a2).await["parent_id"], 0);
}

// ----- §5.4 update or move ------------------------------------------------------------------

/// Times are kept to the second: wait until the clock has passed the second of anything read
/// before, so that a time written afterwards must be later.
async fn wait_past_the_second() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn update_renames_reorders_and_keeps_what_is_not_given() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let parent = api.create_group(team, "Parent", 0).await;
    let id = api
        .create_group_with(
            team,
            &json!({"name": "Old", "parent_id": parent, "order": 2, "remote_id": "r-old"}),
        )
        .await;
    let before = api.group(team, id).await;
    wait_past_the_second().await;

    let response = api
        .update_group(team, id, &json!({"name": "  New  ", "order": 7}))
        .await;
    assert_eq!(assert_ok(&response), json!({}));
    let after = api.group(team, id).await;
    assert_eq!(after["name"], "New");
    assert_eq!(after["order"], 7);
    assert_eq!(after["parent_id"], parent);
    assert_eq!(after["remote_id"], "r-old");
    assert_eq!(after["source"], 1);
    assert_eq!(after["full_name"], "Acme/Parent/New");
    assert_eq!(after["created_at"], before["created_at"]);
    assert!(assert_time(&after["upd_at"], "+08:00") > assert_time(&before["upd_at"], "+08:00"));

    // Without `order`, the order stays.
    assert_ok(&api.update_group(team, id, &json!({"name": "Newer"})).await);
    assert_eq!(api.group(team, id).await["order"], 7);
}

#[tokio::test]
async fn update_refuses_a_missing_or_invalid_name_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let id = api.create_group(team, "Sales", 0).await;
    for body in [
        json!({}),
        json!({"order": 3}),
        json!({"name": ""}),
        json!({"name": "a/b"}),
        json!({"name": "x".repeat(65)}),
        json!({"name": "Sales", "order": 2_147_483_648_i64}),
    ] {
        let response = api.update_group(team, id, &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    let group = api.group(team, id).await;
    assert_eq!(
        (group["name"].clone(), group["order"].clone()),
        (json!("Sales"), json!(0))
    );
}

#[tokio::test]
async fn from_id_must_name_the_current_parent() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;

    let response = api
        .update_group(
            team,
            t.a1,
            &json!({"name": "Moved", "from_id": t.b, "to_id": t.c}),
        )
        .await;
    assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    let unchanged = api.group(team, t.a1).await;
    assert_eq!(
        (unchanged["parent_id"].clone(), unchanged["name"].clone()),
        (json!(t.a), json!("A1"))
    );

    assert_ok(
        &api.update_group(
            team,
            t.a1,
            &json!({"name": "Moved", "from_id": t.a, "to_id": t.c}),
        )
        .await,
    );
    let moved = api.group(team, t.a1).await;
    assert_eq!(moved["parent_id"], t.c);
    assert_eq!(moved["full_name"], "Acme/C/Moved");
    assert_eq!(
        api.list_groups(team, &format!("parent_id={}", t.c))
            .await
            .ints("id"),
        vec![t.a1]
    );
    assert_eq!(
        api.list_groups(team, &format!("parent_id={}", t.a))
            .await
            .ints("id"),
        vec![t.a2]
    );
    // A top-level group's parent is 0.
    assert_ok(
        &api.update_group(team, t.b, &json!({"name": "B", "from_id": 0}))
            .await,
    );
}

#[tokio::test]
async fn moving_a_group_under_itself_or_a_descendant_is_group_cycle() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;
    for target in [t.a, t.a2, t.a2x] {
        let response = api
            .update_group(team, t.a, &json!({"name": "A", "to_id": target}))
            .await;
        assert_error(&response, 409, "InvalidArgument", "group_cycle");
    }
    assert_eq!(api.group(team, t.a).await["parent_id"], 0);
    assert_eq!(api.group(team, t.a2x).await["full_name"], "Acme/A/A2/A2x");
    let listed = api.list_groups(team, "per_page=100").await;
    assert_eq!(listed.ints("id"), tree_order(&t));
}

#[tokio::test]
async fn a_move_that_puts_any_group_of_the_subtree_too_deep_is_group_too_deep() {
    let app = TestApp::builder().max_group_depth(3).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let x = api.create_group(team, "X", 0).await;
    let x1 = api.create_group(team, "X1", x).await;
    let x2 = api.create_group(team, "X2", x1).await;
    let y = api.create_group(team, "Y", 0).await;

    // X's subtree is 3 deep: under Y its leaf would be at depth 4.
    let response = api
        .update_group(team, x, &json!({"name": "X", "to_id": y}))
        .await;
    assert_error(&response, 409, "InvalidArgument", "group_too_deep");
    assert_eq!(api.group(team, x).await["parent_id"], 0);
    assert_eq!(api.group(team, x2).await["full_name"], "Acme/X/X1/X2");

    // X1's subtree is 2 deep: under Y it fits exactly.
    assert_ok(
        &api.update_group(team, x1, &json!({"name": "X1", "to_id": y}))
            .await,
    );
    assert_eq!(api.group(team, x2).await["full_name"], "Acme/Y/X1/X2");
}

#[tokio::test]
async fn the_default_group_cannot_be_renamed_or_moved() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let g = api.create_group(team, "G", 0).await;
    for body in [json!({"name": "Root"}), json!({"name": "Root", "to_id": g})] {
        let response = api.update_group(team, 0, &body).await;
        assert_error(
            &response,
            409,
            "InvalidArgument",
            "default_group_be_modified",
        );
    }
    assert_eq!(api.group(team, g).await["full_name"], "Acme/G");
}

#[tokio::test]
async fn updating_an_unknown_or_deleted_group_is_contacts_group_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let deleted = api.create_group(team, "Deleted", 0).await;
    assert_ok(&api.delete_groups(team, &[deleted]).await);
    for id in [deleted, deleted + 1000] {
        let response = api.update_group(team, id, &json!({"name": "Back"})).await;
        assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    }
    let tombstones = api.list_groups(team, "include_invalid=true").await;
    assert_eq!(tombstones.row("id", deleted)["name"], "Deleted");
}

#[tokio::test]
async fn update_may_change_the_remote_id_but_not_to_one_in_use() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api
        .create_group_with(team, &json!({"name": "One", "remote_id": "r1"}))
        .await;
    let two = api
        .create_group_with(team, &json!({"name": "Two", "remote_id": "r2"}))
        .await;

    let response = api
        .update_group(team, two, &json!({"name": "Two", "remote_id": "r1"}))
        .await;
    assert_error(&response, 409, "AlreadyExists", "duplicated_remote_id");
    assert_eq!(api.group(team, two).await["remote_id"], "r2");

    // Keeping one's own remote id is no conflict.
    assert_ok(
        &api.update_group(team, one, &json!({"name": "One", "remote_id": "r1"}))
            .await,
    );
    assert_ok(
        &api.update_group(team, two, &json!({"name": "Two", "remote_id": "r3"}))
            .await,
    );
    assert_eq!(
        api.list_groups(team, "remote_ids=r3").await.ints("id"),
        vec![two]
    );
    // r2 is free again.
    api.create_group_with(team, &json!({"name": "New", "remote_id": "r2"}))
        .await;
}

// ----- §5.5 batch delete --------------------------------------------------------------------

#[tokio::test]
async fn batch_delete_turns_groups_into_tombstones() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;
    let before = api.group(team, t.c).await;
    wait_past_the_second().await;

    let response = api.delete_groups(team, &[t.c, t.b1]).await;
    assert_eq!(assert_ok(&response), json!({}));
    let listed = api.list_groups(team, "per_page=100").await;
    assert_eq!(
        sorted(listed.ints("id")),
        sorted([t.a, t.b, t.a1, t.a2, t.a2x])
    );
    assert_eq!(listed.total, 5);

    let tombstones = api
        .list_groups(team, "per_page=100&include_invalid=true")
        .await;
    let c = tombstones.row("id", t.c);
    assert_eq!(c["is_valid"], false);
    assert_eq!(c["name"], "C");
    assert!(assert_time(&c["upd_at"], "+08:00") > assert_time(&before["upd_at"], "+08:00"));

    // A second delete of a tombstone finds nothing.
    let response = api.delete_groups(team, &[t.c]).await;
    assert_error(&response, 404, "NotFound", "contacts_group_not_found");
}

#[tokio::test]
async fn batch_delete_with_one_unknown_id_deletes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let foreign = other_api.create_group(other.team_id, "Foreign", 0).await;

    for unknown in [t.a2x + foreign + 1000, foreign] {
        let response = api.delete_groups(team, &[t.c, unknown, t.b1]).await;
        assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    }
    assert_eq!(api.list_groups(team, "per_page=100").await.total, 7);
    assert_eq!(
        other_api.list_groups(other.team_id, "").await.ints("id"),
        vec![foreign]
    );
}

#[tokio::test]
async fn batch_delete_of_a_group_with_a_child_outside_the_batch_is_group_not_empty() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let t = tree(&api, team).await;

    let response = api.delete_groups(team, &[t.c, t.a2]).await;
    assert_error(&response, 409, "InvalidArgument", "group_not_empty");
    assert_eq!(api.list_groups(team, "per_page=100").await.total, 7);

    // A parent deleted together with its whole subtree is fine, in any order.
    assert_ok(&api.delete_groups(team, &[t.a2x, t.a, t.a1, t.a2]).await);
    let listed = api.list_groups(team, "per_page=100").await;
    assert_eq!(sorted(listed.ints("id")), sorted([t.b, t.c, t.b1]));
}

#[tokio::test]
async fn batch_delete_with_the_default_group_is_default_group_be_modified() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let g = api.create_group(team, "G", 0).await;
    let response = api.delete_groups(team, &[g, 0]).await;
    assert_error(
        &response,
        409,
        "InvalidArgument",
        "default_group_be_modified",
    );
    assert_eq!(api.list_groups(team, "").await.ints("id"), vec![g]);
}

#[tokio::test]
async fn batch_delete_takes_1_to_100_ids() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let g = api.create_group(team, "G", 0).await;
    let too_many: Vec<i64> = (0..101).map(|i| g + i).collect();
    for body in [
        json!({"group_ids": []}),
        json!({"group_ids": too_many}),
        json!({}),
    ] {
        let response = api.post_json(&delete_groups_path(team), &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    assert_eq!(api.list_groups(team, "").await.total, 1);

    // 100 ids at once is fine.
    let mut ids = Vec::new();
    for i in 0..99 {
        ids.push(api.create_group(team, &format!("G{i}"), 0).await);
    }
    ids.push(g);
    assert_ok(&api.delete_groups(team, &ids).await);
    assert_eq!(api.list_groups(team, "").await.total, 0);
}

#[tokio::test]
async fn a_deleted_groups_remote_id_can_be_reused() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let old = api
        .create_group_with(team, &json!({"name": "Old", "remote_id": "hr-1"}))
        .await;
    assert_ok(&api.delete_groups(team, &[old]).await);

    let new = api
        .create_group_with(team, &json!({"name": "New", "remote_id": "hr-1"}))
        .await;
    assert_ne!(new, old);
    let listed = api.list_groups(team, "remote_ids=hr-1").await;
    assert_eq!((listed.ints("id"), listed.total), (vec![new], 1));
    // The tombstone still carries the id it had, for sync clients.
    let with_tombstones = api
        .list_groups(team, "remote_ids=hr-1&include_invalid=true")
        .await;
    assert_eq!(sorted(with_tombstones.ints("id")), sorted([old, new]));
    let all = api.list_groups(team, "include_invalid=true").await;
    let tombstone: &Value = all.row("id", old);
    assert_eq!(tombstone["is_valid"], false);
}
