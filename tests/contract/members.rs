//! §4, §6, §7: users, members with roles, orgs.

use contactsd::domain::access::Plan;
use serde_json::json;

use crate::helpers::{TestApp, ids};

#[tokio::test]
async fn users_are_registered_once_per_app_and_openid() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let first = app
        .post(
            &format!("/api/sso/users?{auth}"),
            json!({"openid": "o1", "nickname": "Ann"}),
        )
        .await;
    let first = first.ok().clone();
    assert!(first["user_id"].as_i64().unwrap() > 100_000_000);
    assert!(first["respondent_id"].as_i64().unwrap() > 0);
    let again = app
        .post(
            &format!("/api/sso/users?{auth}"),
            json!({"openid": "o1", "nickname": "Anne"}),
        )
        .await;
    assert_eq!(again.ok(), &first);
    let got = app.get(&format!("/api/sso/users/o1?{auth}")).await;
    assert_eq!(got.ok(), &first);
    app.post(
        &format!("/api/sso/users/o1?{auth}"),
        json!({"nickname": "A."}),
    )
    .await
    .ok();
    app.get(&format!("/api/sso/users/nobody?{auth}"))
        .await
        .err(404, "NotFound", "user_not_found");
    app.post(&format!("/api/sso/users?{auth}"), json!({"openid": ""}))
        .await
        .err(400, "InvalidArgument", "invalid_argument");
    // Another app does not see this app's openids.
    let (other_org, other) = app
        .service
        .create_org_with_app("Other", Plan::Business, 10)
        .await
        .unwrap();
    let _ = other_org;
    let token = app.token_for(&other.appid, &other.secret).await;
    let token = token.ok()["access_token"].as_str().unwrap().to_owned();
    app.get(&format!("/api/sso/users/o1?access_token={token}"))
        .await
        .err(404, "NotFound", "user_not_found");
}

#[tokio::test]
async fn members_are_added_listed_moved_and_removed() {
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let sales = app.create_group(&auth, json!({"name": "Sales"})).await;
    let eu = app
        .create_group(&auth, json!({"name": "EU", "parent_id": sales}))
        .await;
    let ops = app.create_group(&auth, json!({"name": "Ops"})).await;
    let ann = app.register(&auth, "ann").await;
    let bob = app.register(&auth, "bob").await;
    let cat = app.register(&auth, "cat").await;

    app.post(&app.member_path(&auth, eu, ann), json!({"role": 2}))
        .await
        .ok();
    app.post(&app.member_path(&auth, sales, bob), json!({}))
        .await
        .ok();
    app.post(&app.member_path(&auth, 0, cat), json!({"role": 4}))
        .await
        .ok();
    app.post(&app.member_path(&auth, eu, ann), json!({}))
        .await
        .err(409, "AlreadyExists", "contacts_user_existed");
    app.post(&app.member_path(&auth, 0, ann), json!({}))
        .await
        .err(409, "AlreadyExists", "contacts_user_existed");
    app.post(&app.member_path(&auth, eu, 123), json!({}))
        .await
        .err(404, "NotFound", "contacts_user_not_found");
    app.post(&app.member_path(&auth, 999, ann), json!({}))
        .await
        .err(404, "NotFound", "contacts_group_not_found");
    app.post(&app.member_path(&auth, eu, bob), json!({"role": 1}))
        .await
        .err(400, "InvalidArgument", "invalid_argument");

    // Group 0: everyone once, by user id, with the first group or the root.
    let (everyone, total) = app.members(&auth, 0, "").await;
    assert_eq!((ids(&everyone, "user_id"), total), (vec![ann, bob, cat], 3));
    assert_eq!(everyone[0]["group_id"], eu);
    assert_eq!(everyone[0]["group_full_name"], "Acme/Sales/EU");
    assert_eq!(everyone[0]["name"], "ann");
    assert_eq!(everyone[0]["role"], 2);
    assert_eq!(everyone[2]["group_id"], 0);
    assert_eq!(everyone[2]["group_full_name"], "Acme");
    // Direct and recursive members.
    let (direct, _) = app.members(&auth, sales, "").await;
    assert_eq!(ids(&direct, "user_id"), vec![bob]);
    let (below, total) = app.members(&auth, sales, "&recursive=true").await;
    assert_eq!((ids(&below, "user_id"), total), (vec![ann, bob], 2));
    assert!(below.iter().all(|row| row["group_id"] == sales));
    let (admins, _) = app.members(&auth, 0, "&roles=2,3").await;
    assert_eq!(ids(&admins, "user_id"), vec![ann]);
    let (admins, _) = app.members(&auth, 0, "&roles[]=4").await;
    assert_eq!(ids(&admins, "user_id"), vec![bob, cat]);

    // Update replaces the group set; [] puts the member at the root only.
    let update = format!("/api/contacts/teams/{}/users/{bob}?{auth}", app.team_id);
    app.post(
        &update,
        json!({"group_ids": [ops, eu], "nickname": "Bobby"}),
    )
    .await
    .ok();
    let (direct, _) = app.members(&auth, sales, "").await;
    assert!(direct.is_empty());
    let (in_ops, _) = app.members(&auth, ops, "").await;
    assert_eq!(in_ops[0]["name"], "Bobby");
    app.post(&update, json!({"group_ids": []})).await.ok();
    let (everyone, _) = app.members(&auth, 0, "").await;
    assert_eq!(everyone[1]["group_id"], 0);
    app.post(&update, json!({"group_ids": [999]})).await.err(
        404,
        "NotFound",
        "contacts_group_not_found",
    );

    // A group with members cannot be deleted.
    let delete = format!(
        "/api/contacts/teams/{}/groups/batch_delete?{auth}",
        app.team_id
    );
    app.post(&delete, json!({"group_ids": [eu]})).await.err(
        409,
        "FailedPrecondition",
        "group_not_empty",
    );

    // Remove from a group, then from the directory.
    app.delete(&app.member_path(&auth, eu, ann)).await.ok();
    app.delete(&app.member_path(&auth, eu, ann)).await.err(
        404,
        "NotFound",
        "contacts_user_not_found",
    );
    app.post(&delete, json!({"group_ids": [eu]})).await.ok();
    app.delete(&app.member_path(&auth, 0, cat)).await.ok();
    let (everyone, total) = app.members(&auth, 0, "").await;
    assert_eq!((ids(&everyone, "user_id"), total), (vec![ann, bob], 2));
    app.post(
        &format!("/api/contacts/teams/{}/users/{cat}?{auth}", app.team_id),
        json!({}),
    )
    .await
    .err(404, "NotFound", "contacts_user_not_found");
}

#[tokio::test]
async fn admin_seats_are_counted_exactly() {
    // The harness's org has 2 admin seats.
    let app = TestApp::spawn().await;
    let auth = app.auth().await;
    let users = [
        app.register(&auth, "a").await,
        app.register(&auth, "b").await,
        app.register(&auth, "c").await,
    ];
    app.post(&app.member_path(&auth, 0, users[0]), json!({"role": 2}))
        .await
        .ok();
    app.post(&app.member_path(&auth, 0, users[1]), json!({"role": 3}))
        .await
        .ok();
    // No seat left: quietly lowered to a regular member.
    app.post(&app.member_path(&auth, 0, users[2]), json!({"role": 2}))
        .await
        .ok();
    let (rows, _) = app.members(&auth, 0, "").await;
    assert_eq!(ids(&rows, "role"), vec![2, 3, 4]);
    let promote = format!(
        "/api/contacts/teams/{}/users/{}?{auth}",
        app.team_id, users[2]
    );
    app.post(&promote, json!({"role": 2})).await.err(
        409,
        "FailedPrecondition",
        "exceed_user_limit",
    );
    // Freeing a seat makes room.
    let demote = format!(
        "/api/contacts/teams/{}/users/{}?{auth}",
        app.team_id, users[0]
    );
    app.post(&demote, json!({"role": 4})).await.ok();
    app.post(&promote, json!({"role": 2})).await.ok();
    let (rows, _) = app.members(&auth, 0, "").await;
    assert_eq!(ids(&rows, "role"), vec![4, 3, 2]);
}

#[tokio::test]
async fn platform_apps_create_orgs_owned_by_a_user() {
    let app = TestApp::spawn().await;
    let platform = app.service.create_platform_app("partner").await.unwrap();
    let token = app.token_for(&platform.appid, &platform.secret).await;
    let auth = format!(
        "access_token={}",
        token.ok()["access_token"].as_str().unwrap()
    );
    let owner = app.register(&auth, "owner").await;
    let created = app
        .post(
            &format!("/api/orgs?{auth}"),
            json!({"name": "Customer", "user_id": owner}),
        )
        .await;
    let created = created.ok().clone();
    let org_id = created["org_id"].as_i64().unwrap();
    let team_id = created["team_id"].as_i64().unwrap();
    assert!(org_id > 60_000_000_000);
    let org = app.get(&format!("/api/orgs/{org_id}?{auth}")).await;
    let org = org.ok();
    assert_eq!(org["id"], org_id);
    assert_eq!(org["name"], "Customer");
    assert_eq!(org["team_id"], team_id);
    assert_eq!(org["creator_id"], owner);
    assert_eq!(org["creator_name"], "owner");
    assert_eq!(org["current_user_role"], 0);
    // The creator is the owner member of the new directory and cannot be removed.
    let members = app
        .get(&format!(
            "/api/contacts/teams/{team_id}/groups/0/users?{auth}"
        ))
        .await;
    let list = members.ok()["list"].as_array().unwrap().clone();
    assert_eq!(
        (
            list.len(),
            list[0]["user_id"].as_i64(),
            list[0]["role"].as_i64()
        ),
        (1, Some(owner), Some(1))
    );
    app.delete(&format!(
        "/api/contacts/teams/{team_id}/groups/0/users/{owner}?{auth}"
    ))
    .await
    .err(400, "InvalidArgument", "invalid_argument");
    // Five orgs per user.
    for i in 0..4 {
        app.post(
            &format!("/api/orgs?{auth}"),
            json!({"name": format!("C{i}"), "user_id": owner}),
        )
        .await
        .ok();
    }
    app.post(
        &format!("/api/orgs?{auth}"),
        json!({"name": "Sixth", "user_id": owner}),
    )
    .await
    .err(429, "ResourceExhausted", "org_resource_exhausted");
    app.post(
        &format!("/api/orgs?{auth}"),
        json!({"name": "X", "user_id": 5}),
    )
    .await
    .err(404, "NotFound", "user_not_found");
    app.get(&format!("/api/orgs/1?{auth}"))
        .await
        .err(404, "NotFound", "org_not_found");
    // A team app: business plan cannot use the org endpoints; another org is never visible.
    let team_auth = app.auth().await;
    app.get(&format!("/api/orgs/{}?{team_auth}", app.org_id))
        .await
        .err(403, "PermissionDenied", "invalid_org_subscription");
    let (flagship, flag_app) = app
        .service
        .create_org_with_app("Big", Plan::Flagship, 10)
        .await
        .unwrap();
    let token = app.token_for(&flag_app.appid, &flag_app.secret).await;
    let flag_auth = format!(
        "access_token={}",
        token.ok()["access_token"].as_str().unwrap()
    );
    app.get(&format!("/api/orgs/{}?{flag_auth}", flagship.org_id))
        .await
        .ok();
    app.get(&format!("/api/orgs/{org_id}?{flag_auth}"))
        .await
        .err(403, "PermissionDenied", "claim_error");
    app.post(
        &format!("/api/orgs?{flag_auth}"),
        json!({"name": "Mine", "user_id": owner}),
    )
    .await
    .err(403, "PermissionDenied", "claim_error");
}
