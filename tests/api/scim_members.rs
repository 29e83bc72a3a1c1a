//! SCIM writes and the member rows they touch: a user added to a group, taken out of it and put
//! back by a full replace keeps the name and avatar its directory shows, and a user write keeps
//! an avatar set through the API.

use serde_json::json;

use crate::helpers::{TestApp, assert_ok, members_path};
use crate::scim::Scim;

#[tokio::test]
async fn group_writes_keep_the_names_of_the_members_they_move() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let api = app.team_api().await;
    let ada = scim.user("ada@example.com").await;
    let bob = scim.user("bob@example.com").await;
    let group = scim.post("/Groups", json!({"displayName": "Eng"})).await;
    let gid = group.body["id"].as_str().expect("id").to_owned();
    let group_id: i64 = gid.parse().expect("a numeric id");
    // The names the WeSurvey API lists for the group's members.
    let names = async || {
        let listed = assert_ok(&api.get(&members_path(app.team_id, group_id)).await);
        let mut names: Vec<String> = listed["list"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|member| member["name"].as_str().expect("a name").to_owned())
            .collect();
        names.sort();
        names
    };

    // Okta: one member added by value.
    let added = scim
        .patch(
            &format!("/Groups/{gid}?excludedAttributes=members"),
            json!([{"op": "add", "path": "members", "value": [{"value": ada}]}]),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(names().await, ["ada@example.com D"]);
    // Entra ID: taken out with a filtered path, then another added.
    let removed = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!([
                {"op": "Remove", "path": format!("members[value eq \"{ada}\"]")},
                {"op": "Add", "path": "members", "value": [{"value": bob}]}
            ]),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(names().await, ["bob@example.com D"]);
    // Google: a full replace names both.
    let replaced = scim
        .call(
            reqwest::Method::PUT,
            &format!("/Groups/{gid}"),
            Some(json!({"displayName": "Eng", "members": [{"value": ada}, {"value": bob}]})),
            &[],
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(names().await, ["ada@example.com D", "bob@example.com D"]);
}

/// A SCIM user write sets the member's name from `displayName` and keeps the avatar an app set
/// through the API (SCIM has none); a group write keeps both.
#[tokio::test]
async fn scim_writes_keep_an_avatar_set_through_the_api() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let api = app.team_api().await;
    let team = app.team_id;
    let cy = scim.user("cy@example.com").await;
    let row = api.members(team, 0, "").await.list[0].clone();
    let user_id = row["user_id"].as_i64().expect("a user id");
    let avatar = "https://example.com/cy.png";
    assert_ok(
        &api.update_member(team, user_id, &json!({"avatar": avatar}))
            .await,
    );

    // The member's name and avatar as the WeSurvey API lists them.
    let listed = async || {
        let row = api.members(team, 0, "").await.list[0].clone();
        let text = |key: &str| row[key].as_str().unwrap_or_default().to_owned();
        (text("name"), text("avatar"))
    };
    let renamed = scim
        .patch(
            &format!("/Users/{cy}"),
            json!([{"op": "replace", "path": "displayName", "value": "Cy Young"}]),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(listed().await, ("Cy Young".to_owned(), avatar.to_owned()));

    scim.group("Ops", &[&cy]).await;
    assert_eq!(listed().await, ("Cy Young".to_owned(), avatar.to_owned()));
}
