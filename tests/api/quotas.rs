//! Quotas per team and per platform app: a write that would make a directory larger than its
//! quota, or a platform app's org count larger than its own, is refused with
//! `ResourceExhausted` and the quota's type, and nothing is written; `admin set-quota` changes
//! one org's quotas without touching another's.

use contactsd::domain::access::Plan;
use contactsd::domain::values::OrgId;
use contactsd::service::QuotaSettings;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, assert_ok, groups_path};

fn small() -> QuotaSettings {
    QuotaSettings {
        max_groups: 3,
        max_members: 2,
        max_orgs_per_app: 2,
    }
}

#[tokio::test]
async fn groups_past_the_quota_are_refused_and_a_deleted_one_frees_its_place() {
    let app = TestApp::builder().quotas(small()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let mut groups = Vec::new();
    for name in ["A", "B", "C"] {
        groups.push(api.create_group(team, name, 0).await);
    }
    let response = api
        .post_json(
            &groups_path(team),
            &json!({"name": "D", "parent_id": groups[0]}),
        )
        .await;
    assert_error(&response, 429, "ResourceExhausted", "group_quota_exceeded");
    assert_eq!(api.list_groups(team, "").await.total, 3);
    // Renames and moves of a full directory go on.
    let rename = api
        .update_group(team, groups[1], &json!({"name": "B2", "to_id": groups[0]}))
        .await;
    assert_ok(&rename);
    // A deleted group no longer counts.
    assert_ok(&api.delete_groups(team, &[groups[2]]).await);
    api.create_group(team, "D", 0).await;
    assert_eq!(api.list_groups(team, "").await.total, 3);
}

#[tokio::test]
async fn members_past_the_quota_are_refused_but_members_may_join_more_groups() {
    let app = TestApp::builder().quotas(small()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let group = api.create_group(team, "A", 0).await;
    let ann = api.register_user("ann").await;
    let bob = api.register_user("bob").await;
    let cat = api.register_user("cat").await;
    api.add_member_ok(team, 0, ann, None).await;
    api.add_member_ok(team, 0, bob, None).await;
    let response = api.add_member(team, group, cat, &json!({})).await;
    assert_error(&response, 429, "ResourceExhausted", "member_quota_exceeded");
    api.add_member_ok(team, group, ann, None).await;
    assert_eq!(
        api.members(team, 0, "").await.ints("user_id"),
        vec![ann, bob]
    );
}

#[tokio::test]
async fn a_sync_past_the_quota_is_refused_whole_dry_run_or_not() {
    let app = TestApp::builder().quotas(small()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let path = format!("/api/contacts/teams/{team}/sync");
    let group = |id: &str| json!({"remote_id": id, "name": id, "parent_remote_id": ""});
    let member = |id: &str| json!({"openid": id, "nickname": id, "group_remote_ids": []});
    let too_many_groups = json!({
        "groups": [group("a"), group("b"), group("c"), group("d")],
        "members": [member("ann")],
    });
    let too_many_members = json!({
        "groups": [group("a")],
        "members": [member("ann"), member("bob"), member("cat")],
    });
    for dry_run in [true, false] {
        let mut body = too_many_groups.clone();
        body["dry_run"] = json!(dry_run);
        let response = api.post_json(&path, &body).await;
        assert_error(&response, 429, "ResourceExhausted", "group_quota_exceeded");
        let mut body = too_many_members.clone();
        body["dry_run"] = json!(dry_run);
        let response = api.post_json(&path, &body).await;
        assert_error(&response, 429, "ResourceExhausted", "member_quota_exceeded");
    }
    // Nothing was written; a snapshot within the quotas goes through.
    assert_eq!(api.list_groups(team, "").await.total, 0);
    assert_eq!(api.members(team, 0, "").await.total, 0);
    let within = json!({
        "groups": [group("a"), group("b"), group("c")],
        "members": [member("ann"), member("bob")],
    });
    let report = assert_ok(&api.post_json(&path, &within).await);
    assert_eq!(report["groups_created"], 3);
    // Still refused once the users of the refused snapshots exist (the plan under the write
    // gate checks too).
    let response = api.post_json(&path, &too_many_members).await;
    assert_error(&response, 429, "ResourceExhausted", "member_quota_exceeded");
    assert_eq!(api.members(team, 0, "").await.total, 2);
}

#[tokio::test]
async fn a_platform_app_creates_at_most_its_quota_of_orgs() {
    let app = TestApp::builder().quotas(small()).spawn().await;
    let platform = app.create_platform_app("Partner").await;
    let api = app.login(&platform.appid, &platform.secret).await;
    let mut creators = Vec::new();
    for n in 0..3 {
        creators.push(api.register_user(&format!("owner-{n}")).await);
    }
    for (n, user) in creators.iter().take(2).enumerate() {
        let body = json!({"name": format!("Org {n}"), "user_id": user});
        assert_ok(&api.post_json("/api/orgs", &body).await);
    }
    let body = json!({"name": "One too many", "user_id": creators[2]});
    let response = api.post_json("/api/orgs", &body).await;
    assert_error(&response, 429, "ResourceExhausted", "org_quota_exceeded");

    // Another platform app has its own quota; `admin set-quota` raises this one's.
    let other = app.create_platform_app("Other").await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let user = other_api.register_user("theirs").await;
    let body = json!({"name": "Theirs", "user_id": user});
    assert_ok(&other_api.post_json("/api/orgs", &body).await);
    app.service
        .set_app_org_quota(&platform.appid, 3)
        .await
        .expect("set-quota");
    let body = json!({"name": "One more", "user_id": creators[2]});
    assert_ok(&api.post_json("/api/orgs", &body).await);
}

#[tokio::test]
async fn set_quota_changes_one_orgs_quotas_only() {
    let app = TestApp::builder().quotas(small()).spawn().await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let api = app.team_api().await;
    let other_api = app.login(&other.appid, &other.secret).await;
    let stored = app
        .service
        .set_org_quota(OrgId::new(app.org_id), Some(5), None)
        .await
        .expect("set-quota");
    assert_eq!((stored.max_groups, stored.max_members), (Some(5), None));
    for n in 0..5 {
        api.create_group(app.team_id, &format!("G{n}"), 0).await;
    }
    let response = api
        .post_json(&groups_path(app.team_id), &json!({"name": "G5"}))
        .await;
    assert_error(&response, 429, "ResourceExhausted", "group_quota_exceeded");
    // The other org keeps the default of 3.
    for n in 0..3 {
        other_api
            .create_group(other.team_id, &format!("G{n}"), 0)
            .await;
    }
    let response = other_api
        .post_json(&groups_path(other.team_id), &json!({"name": "G3"}))
        .await;
    assert_error(&response, 429, "ResourceExhausted", "group_quota_exceeded");
    // Members keep the default too, and a later change keeps the groups' value.
    let stored = app
        .service
        .set_org_quota(OrgId::new(app.org_id), None, Some(10))
        .await
        .expect("set-quota");
    assert_eq!((stored.max_groups, stored.max_members), (Some(5), Some(10)));
}
