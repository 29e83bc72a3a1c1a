//! SCIM at size: a group of 1,000 members built one PATCH at a time and in one request.

use serde_json::json;

use crate::helpers::{TestApp, assert_ok, members_path};
use crate::scim::Scim;

#[tokio::test]
async fn a_thousand_member_group_patched_one_at_a_time_and_in_one_request() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let mut ids = Vec::new();
    for n in 0..1000 {
        ids.push(scim.user(&format!("user{n:04}")).await);
    }
    let one = scim
        .post("/Groups", json!({"displayName": "One by one"}))
        .await;
    let one_id = one.body["id"].as_str().expect("id").to_owned();
    for id in &ids {
        let answer = scim
            .patch(
                &format!("/Groups/{one_id}?excludedAttributes=members"),
                json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let all = scim
        .post("/Groups", json!({"displayName": "All at once"}))
        .await;
    let all_id = all.body["id"].as_str().expect("id").to_owned();
    let members: Vec<_> = ids.iter().map(|id| json!({"value": id})).collect();
    let answer = scim
        .patch(
            &format!("/Groups/{all_id}"),
            json!([{"op": "add", "path": "members", "value": members}]),
        )
        .await;
    assert_eq!(answer.body["members"].as_array().map(Vec::len), Some(1000));
    let api = app.team_api().await;
    for group in [&one_id, &all_id] {
        let group: i64 = group.parse().expect("int");
        let listing = assert_ok(
            &api.get(&format!("{}?per_page=1", members_path(app.team_id, group)))
                .await,
        );
        assert_eq!(listing["total"], 1000);
    }
    // Removing one member of the large group leaves the others.
    let removed = scim
        .patch(
            &format!("/Groups/{all_id}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[500])}]),
        )
        .await;
    assert_eq!(removed.body["members"].as_array().map(Vec::len), Some(999));
}
