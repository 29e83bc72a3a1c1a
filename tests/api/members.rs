//! §6 members: add, update, remove; roles and admin seats; members block group deletes (the
//! listing is in `members_list.rs`).

use std::collections::BTreeSet;

use serde_json::json;

use crate::helpers::*;

/// The member row fields of §6, no more, no less.
const MEMBER_FIELDS: [&str; 9] = [
    "user_id",
    "respondent_id",
    "name",
    "avatar",
    "role",
    "group_id",
    "group_full_name",
    "is_org_creator",
    "is_org_available",
];

// ----- add ----------------------------------------------------------------------------------

#[tokio::test]
async fn an_added_member_is_listed_in_its_group_with_the_contract_fields() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let sales = api.create_group(team, "Sales", 0).await;
    let user = api
        .register("alice", "Alice", "https://example.com/a.png")
        .await;

    let response = api.add_member(team, sales, user.user_id, &json!({})).await;
    assert_eq!(assert_ok(&response), json!({}));

    let listed = api.members(team, sales, "").await;
    assert_eq!(listed.total, 1);
    assert_eq!(
        listed.list[0],
        json!({
            "user_id": user.user_id,
            "respondent_id": user.respondent_id,
            "name": "Alice",
            "avatar": "https://example.com/a.png",
            "role": 4,
            "group_id": sales,
            "group_full_name": "Acme/Sales",
            "is_org_creator": false,
            "is_org_available": true,
        })
    );
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.ints("user_id"), vec![user.user_id]);
    assert_eq!(everyone.list[0]["group_id"], sales);
    assert_eq!(everyone.list[0]["group_full_name"], "Acme/Sales");
}

#[tokio::test]
async fn a_member_added_to_group_0_sits_at_the_root() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api.register_user("bob").await;
    api.add_member_ok(team, 0, user, Some(3)).await;

    let listed = api.members(team, 0, "").await;
    assert_eq!(listed.total, 1);
    let row = listed.row("user_id", user);
    assert_eq!(row["group_id"], 0);
    assert_eq!(row["group_full_name"], "Acme");
    assert_eq!(row["role"], 3);
    let keys: BTreeSet<&str> = row
        .as_object()
        .expect("row")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, MEMBER_FIELDS.into_iter().collect());
}

#[tokio::test]
async fn adding_a_member_again_to_the_same_group_or_the_root_is_contacts_user_existed() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let sales = api.create_group(team, "Sales", 0).await;
    let in_group = api.register_user("in-group").await;
    let at_root = api.register_user("at-root").await;
    api.add_member_ok(team, sales, in_group, None).await;
    api.add_member_ok(team, 0, at_root, None).await;

    for (group, user) in [(sales, in_group), (0, at_root), (0, in_group)] {
        let response = api.add_member(team, group, user, &json!({})).await;
        assert_error(&response, 409, "AlreadyExists", "contacts_user_existed");
    }
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.ints("user_id"), sorted([in_group, at_root]));
    assert_eq!(everyone.row("user_id", in_group)["group_id"], sales);
}

#[tokio::test]
async fn adding_an_existing_member_to_another_group_keeps_its_role_and_groups() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let two = api.create_group(team, "Two", 0).await;
    let user = api.register_user("carol").await;
    api.add_member_ok(team, one, user, Some(3)).await;
    api.add_member_ok(team, two, user, Some(4)).await;

    for group in [one, two] {
        let listed = api.members(team, group, "").await;
        assert_eq!(listed.ints("user_id"), vec![user], "group {group}");
        assert_eq!(listed.list[0]["role"], 3, "group {group}");
    }
    // Listed once in the whole directory, under its first group by id.
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.total, 1);
    assert_eq!(everyone.list[0]["group_id"], one.min(two));
}

#[tokio::test]
async fn adding_an_unknown_user_or_to_an_unknown_group_is_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let sales = api.create_group(team, "Sales", 0).await;
    let deleted = api.create_group(team, "Deleted", 0).await;
    assert_ok(&api.delete_groups(team, &[deleted]).await);
    let user = api.register_user("dave").await;

    let response = api
        .add_member(team, sales, user + 1_000_000, &json!({}))
        .await;
    assert_error(&response, 404, "NotFound", "contacts_user_not_found");
    for group in [deleted, sales + deleted + 1000] {
        let response = api.add_member(team, group, user, &json!({})).await;
        assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    }
    assert_eq!(api.members(team, 0, "").await.total, 0);
}

#[tokio::test]
async fn add_accepts_only_roles_2_to_4() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api.register_user("erin").await;
    for role in [json!(0), json!(1), json!(5), json!("2")] {
        let response = api.add_member(team, 0, user, &json!({"role": role})).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
    assert_eq!(api.members(team, 0, "").await.total, 0);
    api.add_member_ok(team, 0, user, Some(2)).await;
    assert_eq!(api.members(team, 0, "").await.list[0]["role"], 2);
}

#[tokio::test]
async fn an_admin_role_with_no_seat_left_is_quietly_lowered_to_4_on_add() {
    let app = TestApp::builder().admin_seats(1).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let first = api.register_user("first").await;
    let second = api.register_user("second").await;
    let third = api.register_user("third").await;
    api.add_member_ok(team, 0, first, Some(2)).await;
    api.add_member_ok(team, 0, second, Some(3)).await;
    api.add_member_ok(team, 0, third, Some(2)).await;

    let listed = api.members(team, 0, "").await;
    assert_eq!(listed.row("user_id", first)["role"], 2);
    assert_eq!(listed.row("user_id", second)["role"], 4);
    assert_eq!(listed.row("user_id", third)["role"], 4);
}

#[tokio::test]
async fn add_accepts_an_empty_body() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api.register_user("quiet").await;
    let response = api.post_raw(&member_path(team, 0, user), "").await;
    assert_eq!(assert_ok(&response), json!({}));
    assert_eq!(api.members(team, 0, "").await.list[0]["role"], 4);
}

#[tokio::test]
async fn admin_seats_are_counted_once_per_member_whatever_its_groups() {
    let app = TestApp::builder().admin_seats(2).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let two = api.create_group(team, "Two", 0).await;
    let admin = api.register_user("admin").await;
    let second = api.register_user("second").await;
    let third = api.register_user("third").await;
    api.add_member_ok(team, one, admin, Some(2)).await;
    api.add_member_ok(team, two, admin, None).await;
    assert_ok(&api.remove_member(team, one, admin).await);
    assert_ok(
        &api.update_member(
            team,
            admin,
            &json!({"group_ids": [one, two], "nickname": "A"}),
        )
        .await,
    );
    // Setting the role a member already has needs no new seat.
    assert_ok(&api.update_member(team, admin, &json!({"role": 2})).await);

    // One of two seats is used: the second admin gets a seat, the third does not.
    api.add_member_ok(team, one, second, Some(3)).await;
    api.add_member_ok(team, one, third, Some(3)).await;
    let listed = api.members(team, 0, "").await;
    assert_eq!(listed.row("user_id", admin)["role"], 2);
    assert_eq!(listed.row("user_id", second)["role"], 3);
    assert_eq!(listed.row("user_id", third)["role"], 4);
}

// ----- update -------------------------------------------------------------------------------

#[tokio::test]
async fn an_admin_role_with_no_seat_left_is_exceed_user_limit_on_update() {
    let app = TestApp::builder().admin_seats(1).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let admin = api.register_user("admin").await;
    let member = api.register_user("member").await;
    api.add_member_ok(team, 0, admin, Some(2)).await;
    api.add_member_ok(team, 0, member, None).await;

    for role in [2, 3] {
        let response = api
            .update_member(team, member, &json!({"role": role}))
            .await;
        assert_error(&response, 409, "InvalidArgument", "exceed_user_limit");
    }
    assert_eq!(
        api.members(team, 0, "").await.row("user_id", member)["role"],
        4
    );

    // An admin switching between admin roles keeps its seat.
    assert_ok(&api.update_member(team, admin, &json!({"role": 3})).await);
    // Freeing the seat lets the other take it.
    assert_ok(&api.update_member(team, admin, &json!({"role": 4})).await);
    assert_ok(&api.update_member(team, member, &json!({"role": 2})).await);
    let listed = api.members(team, 0, "").await;
    assert_eq!(listed.row("user_id", admin)["role"], 4);
    assert_eq!(listed.row("user_id", member)["role"], 2);

    // A member leaving the directory frees its seat too.
    assert_ok(&api.remove_member(team, 0, member).await);
    assert_ok(&api.update_member(team, admin, &json!({"role": 3})).await);
    assert_eq!(api.members(team, 0, "").await.list[0]["role"], 3);
}

#[tokio::test]
async fn update_group_ids_replaces_the_whole_set_and_empty_means_root_only() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let two = api.create_group(team, "Two", 0).await;
    let three = api.create_group(team, "Three", 0).await;
    let user = api.register_user("frank").await;
    api.add_member_ok(team, one, user, None).await;
    api.add_member_ok(team, two, user, None).await;

    let response = api
        .update_member(team, user, &json!({"group_ids": [three]}))
        .await;
    assert_eq!(assert_ok(&response), json!({}));
    assert_eq!(api.members(team, one, "").await.total, 0);
    assert_eq!(api.members(team, two, "").await.total, 0);
    assert_eq!(
        api.members(team, three, "").await.ints("user_id"),
        vec![user]
    );
    assert_eq!(api.members(team, 0, "").await.list[0]["group_id"], three);

    // 0 in the set is ignored: [0, one, two] is {one, two}.
    assert_ok(
        &api.update_member(team, user, &json!({"group_ids": [0, two, one]}))
            .await,
    );
    assert_eq!(api.members(team, one, "").await.total, 1);
    assert_eq!(api.members(team, two, "").await.total, 1);
    assert_eq!(api.members(team, three, "").await.total, 0);
    assert_eq!(
        api.members(team, 0, "").await.list[0]["group_id"],
        one.min(two)
    );

    assert_ok(
        &api.update_member(team, user, &json!({"group_ids": []}))
            .await,
    );
    for group in [one, two, three] {
        assert_eq!(api.members(team, group, "").await.total, 0);
    }
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.ints("user_id"), vec![user]);
    assert_eq!(everyone.list[0]["group_id"], 0);
    assert_eq!(everyone.list[0]["group_full_name"], "Acme");
    assert_eq!(everyone.list[0]["role"], 4, "the role is untouched");
}

#[tokio::test]
async fn update_with_an_unknown_group_changes_nothing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let user = api.register_user("gina").await;
    api.add_member_ok(team, one, user, None).await;
    let response = api
        .update_member(team, user, &json!({"group_ids": [one + 1000], "role": 3}))
        .await;
    assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    let listed = api.members(team, one, "").await;
    assert_eq!(listed.ints("user_id"), vec![user]);
    assert_eq!(listed.list[0]["role"], 4);
}

#[tokio::test]
async fn a_member_without_a_nickname_of_its_own_shows_the_users_new_one_at_once() {
    // With a read cache that would otherwise keep the names it listed for ten minutes.
    let app = TestApp::builder()
        .read_cache(std::time::Duration::from_secs(600))
        .spawn()
        .await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api.register("ivy", "Ivy", "").await;
    api.add_member_ok(team, 0, user.user_id, None).await;
    assert_eq!(api.members(team, 0, "").await.list[0]["name"], "Ivy");
    assert_ok(
        &api.post_json(
            "/api/sso/users/ivy",
            &json!({"nickname": "Ivy B.", "avatar": "https://example.com/i.png"}),
        )
        .await,
    );
    let row = api.members(team, 0, "").await.list[0].clone();
    assert_eq!(row["name"], "Ivy B.");
    assert_eq!(row["avatar"], "https://example.com/i.png");
    // And the directory's own nickname as soon as it is set.
    assert_ok(
        &api.update_member(team, user.user_id, &json!({"nickname": "Ivy (Ops)"}))
            .await,
    );
    assert_eq!(api.members(team, 0, "").await.list[0]["name"], "Ivy (Ops)");
}

#[tokio::test]
async fn update_sets_the_directory_nickname_and_avatar_over_the_users_own() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let user = api
        .register("hank", "Hank", "https://example.com/h.png")
        .await;
    api.add_member_ok(team, 0, user.user_id, None).await;
    let row = api.members(team, 0, "").await.list[0].clone();
    assert_eq!(
        (row["name"].clone(), row["avatar"].clone()),
        (json!("Hank"), json!("https://example.com/h.png"))
    );

    assert_ok(
        &api.update_member(
            team,
            user.user_id,
            &json!({"nickname": "Henry (Sales)", "avatar": "https://example.com/team.png"}),
        )
        .await,
    );
    let row = api.members(team, 0, "").await.list[0].clone();
    assert_eq!(row["name"], "Henry (Sales)");
    assert_eq!(row["avatar"], "https://example.com/team.png");
    assert_eq!(row["role"], 4);

    // The user's own profile changing does not override the directory's.
    assert_ok(
        &api.post_json("/api/sso/users/hank", &json!({"nickname": "H."}))
            .await,
    );
    assert_eq!(
        api.members(team, 0, "").await.list[0]["name"],
        "Henry (Sales)"
    );
    // Joining one more group keeps the directory's name and avatar.
    let sales = api.create_group(team, "Sales", 0).await;
    api.add_member_ok(team, sales, user.user_id, None).await;
    let row = api.members(team, sales, "").await.list[0].clone();
    assert_eq!(
        (row["name"].clone(), row["avatar"].clone()),
        (
            json!("Henry (Sales)"),
            json!("https://example.com/team.png")
        )
    );
    // Renamed and given another role without `group_ids`: it stays in its group, in the
    // database too.
    let renamed = json!({"nickname": "Henry", "role": 3});
    assert_ok(&api.update_member(team, user.user_id, &renamed).await);
    let in_sales = api.members(team, sales, "").await.ints("user_id");
    assert_eq!(in_sales, [user.user_id]);
    assert_stored_as_served(&app, &api).await;

    for body in [
        json!({"nickname": "n".repeat(65)}),
        json!({"avatar": "a".repeat(256)}),
        json!({"role": 1}),
        json!({"role": 5}),
    ] {
        let response = api.update_member(team, user.user_id, &body).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn updating_someone_who_is_not_a_member_is_contacts_user_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let registered = api.register_user("not-a-member").await;
    for user in [registered, registered + 1_000_000] {
        let response = api
            .update_member(team, user, &json!({"nickname": "X"}))
            .await;
        assert_error(&response, 404, "NotFound", "contacts_user_not_found");
    }
    assert_eq!(api.members(team, 0, "").await.total, 0);
}

// ----- remove -------------------------------------------------------------------------------

#[tokio::test]
async fn remove_takes_a_member_out_of_one_group_and_the_last_group_leaves_it_at_the_root() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let two = api.create_group(team, "Two", 0).await;
    let user = api.register_user("ivy").await;
    api.add_member_ok(team, one, user, Some(3)).await;
    api.add_member_ok(team, two, user, None).await;

    let response = api.remove_member(team, one, user).await;
    assert_eq!(assert_ok(&response), json!({}));
    assert_eq!(api.members(team, one, "").await.total, 0);
    assert_eq!(api.members(team, two, "").await.ints("user_id"), vec![user]);

    assert_ok(&api.remove_member(team, two, user).await);
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.ints("user_id"), vec![user]);
    assert_eq!(everyone.list[0]["group_id"], 0);
    assert_eq!(everyone.list[0]["role"], 3);

    // Not in that group (any more).
    let response = api.remove_member(team, two, user).await;
    assert_error(&response, 404, "NotFound", "contacts_user_not_found");
}

#[tokio::test]
async fn remove_from_group_0_takes_the_member_out_of_the_directory() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let user = api.register_user("jack").await;
    let stays = api.register_user("jill").await;
    api.add_member_ok(team, one, user, None).await;
    api.add_member_ok(team, one, stays, None).await;

    assert_ok(&api.remove_member(team, 0, user).await);
    assert_eq!(api.members(team, 0, "").await.ints("user_id"), vec![stays]);
    assert_eq!(
        api.members(team, one, "").await.ints("user_id"),
        vec![stays]
    );

    for group in [0, one] {
        let response = api.remove_member(team, group, user).await;
        assert_error(&response, 404, "NotFound", "contacts_user_not_found");
    }
    let response = api
        .update_member(team, user, &json!({"nickname": "Back"}))
        .await;
    assert_error(&response, 404, "NotFound", "contacts_user_not_found");

    // The user can join again.
    api.add_member_ok(team, one, user, None).await;
    assert_eq!(api.members(team, one, "").await.total, 2);
}

#[tokio::test]
async fn removing_from_an_unknown_group_is_contacts_group_not_found() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let user = api.register_user("kim").await;
    api.add_member_ok(team, one, user, None).await;
    let response = api.remove_member(team, one + 1000, user).await;
    assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    assert_eq!(api.members(team, one, "").await.total, 1);
}
