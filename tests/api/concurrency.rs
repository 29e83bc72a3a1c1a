//! Races: many requests at once on one directory or one app must leave every invariant intact.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{Api, TestApp, group_path, groups_path, member_path};

/// The statuses (as mapped, whatever the server's HTTP status mode) of `count` concurrent POSTs
/// built by `request(i)`.
async fn race(
    app: &TestApp,
    api: &Api<'_>,
    count: usize,
    request: impl Fn(usize) -> (String, serde_json::Value),
) -> Vec<u16> {
    let sends = (0..count).map(|i| {
        let (path, body) = request(i);
        let url = app.url(&api.authed(&path));
        async move { app.send(app.client.post(url).json(&body)).await.status }
    });
    join_all(sends).await
}

#[tokio::test]
async fn of_fifty_creates_with_one_remote_id_exactly_one_succeeds() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let statuses = race(&app, &api, 50, |i| {
        (
            groups_path(app.team_id),
            json!({"name": format!("n{i}"), "remote_id": "same"}),
        )
    })
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 409)),
        "{statuses:?}"
    );
    assert_eq!(
        api.list_groups(app.team_id, "remote_ids=same").await.total,
        1
    );
}

#[tokio::test]
async fn racing_moves_between_two_subtrees_never_make_a_cycle() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let left = api.create_group(app.team_id, "L", 0).await;
    let right = api.create_group(app.team_id, "R", 0).await;
    let left_child = api.create_group(app.team_id, "L1", left).await;
    let right_child = api.create_group(app.team_id, "R1", right).await;
    let statuses = race(&app, &api, 40, |i| match i % 4 {
        0 => (
            group_path(app.team_id, left),
            json!({"name": "L", "to_id": right_child}),
        ),
        1 => (
            group_path(app.team_id, right),
            json!({"name": "R", "to_id": left_child}),
        ),
        2 => (
            group_path(app.team_id, left),
            json!({"name": "L", "to_id": 0}),
        ),
        _ => (
            group_path(app.team_id, right),
            json!({"name": "R", "to_id": 0}),
        ),
    })
    .await;
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 409)),
        "{statuses:?}"
    );
    let groups = api.list_groups(app.team_id, "per_page=1000").await;
    assert_eq!(groups.total, 4);
    // Walk every group to the root: a cycle would never get there.
    for row in &groups.list {
        let mut current = row["id"].as_i64().expect("id");
        for _ in 0..=groups.list.len() {
            if current == 0 {
                break;
            }
            current = groups.row("id", current)["parent_id"]
                .as_i64()
                .expect("parent");
        }
        assert_eq!(current, 0, "group {} does not reach the root", row["id"]);
    }
}

#[tokio::test]
async fn racing_adds_of_one_member_place_it_once() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let sales = api.create_group(app.team_id, "Sales", 0).await;
    let user = api.register_user("ann").await;
    let statuses = race(&app, &api, 30, |_| {
        (member_path(app.team_id, sales, user), json!({}))
    })
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 409)),
        "{statuses:?}"
    );
    assert_eq!(
        api.members(app.team_id, sales, "").await.ints("user_id"),
        vec![user]
    );
    assert_eq!(api.members(app.team_id, 0, "").await.total, 1);
}

#[tokio::test]
async fn racing_token_calls_leave_exactly_one_valid_token() {
    let app = TestApp::spawn().await;
    let tokens = join_all((0..20).map(|_| app.token(&app.appid, &app.secret))).await;
    let mut valid = 0;
    for token in &tokens {
        let api = Api::new(&app, &app.appid, token);
        if api.get(&groups_path(app.team_id)).await.status == 200 {
            valid += 1;
        }
    }
    assert_eq!(valid, 1, "exactly the latest token works");
}

#[tokio::test]
async fn racing_syncs_of_new_openids_give_each_openid_one_user() {
    // Lifted limits on syncs in flight, so that the syncs do race.
    let app = TestApp::builder().max_syncs(10, 10).spawn().await;
    let api = app.team_api().await;
    let openids: Vec<String> = (0..40).map(|n| format!("new-{n:02}")).collect();
    let statuses = race(&app, &api, 10, |i| {
        // The same users in a different order each time.
        let mut members: Vec<_> = openids
            .iter()
            .map(|openid| json!({"openid": openid, "nickname": openid}))
            .collect();
        members.rotate_left(i * 4);
        (
            format!("/api/contacts/teams/{}/sync", app.team_id),
            json!({"members": members}),
        )
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let mut registered = Vec::new();
    for openid in &openids {
        let user = crate::helpers::assert_ok(&api.get(&format!("/api/sso/users/{openid}")).await);
        registered.push(user["user_id"].as_i64());
    }
    let everyone = api.members(app.team_id, 0, "per_page=100").await;
    let mut listed: Vec<_> = everyone.ints("user_id").into_iter().map(Some).collect();
    listed.sort();
    registered.sort();
    assert_eq!(
        listed, registered,
        "the members are the openids' users, once each"
    );
    assert_eq!(
        everyone.strings("name").len(),
        40,
        "every openid is one member"
    );
}
