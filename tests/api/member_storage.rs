//! §6 members: what a member's changes leave in the database, as another process reads it.

use serde_json::json;

use crate::helpers::*;

/// A member's groups as another process reads them from the database.
async fn stored_groups(app: &TestApp, token: &str, groups: &[i64], user: i64) -> Vec<i64> {
    let replica = app.replica().await;
    let api = Api::new(&replica, &app.appid, token);
    let mut found = Vec::new();
    for group in groups {
        if api
            .members(app.team_id, *group, "")
            .await
            .ints("user_id")
            .contains(&user)
        {
            found.push(*group);
        }
    }
    found
}

#[tokio::test]
async fn a_members_groups_are_stored_as_changed() {
    let app = TestApp::spawn().await;
    let token = app.token(&app.appid, &app.secret).await;
    let api = Api::new(&app, &app.appid, &token);
    let mut groups = Vec::new();
    for name in ["A", "B", "C", "D"] {
        groups.push(api.create_group(app.team_id, name, 0).await);
    }
    let user = api.register_user("ann").await;
    for group in &groups[..3] {
        api.add_member_ok(app.team_id, *group, user, None).await;
    }
    assert_eq!(
        stored_groups(&app, &token, &groups, user).await,
        groups[..3]
    );
    let moved = api
        .update_member(
            app.team_id,
            user,
            &json!({"group_ids": [groups[1], groups[3]]}),
        )
        .await;
    assert_ok(&moved);
    assert_eq!(
        stored_groups(&app, &token, &groups, user).await,
        vec![groups[1], groups[3]]
    );
    assert_ok(&api.remove_member(app.team_id, groups[3], user).await);
    assert_eq!(
        stored_groups(&app, &token, &groups, user).await,
        vec![groups[1]]
    );
}
