//! §6 members, the listing of a group's members: its direct ones or its whole subtree, by
//! role, paged.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn group_0_lists_every_member_once_by_user_id_with_their_first_group() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let one = api.create_group(team, "One", 0).await;
    let two = api.create_group(team, "Two", one).await;
    let mut users = Vec::new();
    for name in ["u5", "u4", "u3", "u2", "u1"] {
        users.push(api.register_user(name).await);
    }
    // users[0]: two then one; users[1]: root; users[2]: two; users[3]: one; users[4]: root.
    api.add_member_ok(team, two, users[0], None).await;
    api.add_member_ok(team, one, users[0], None).await;
    api.add_member_ok(team, 0, users[1], None).await;
    api.add_member_ok(team, two, users[2], None).await;
    api.add_member_ok(team, one, users[3], None).await;
    api.add_member_ok(team, 0, users[4], None).await;

    let listed = api.members(team, 0, "per_page=100").await;
    assert_eq!(listed.ints("user_id"), sorted(users.clone()));
    assert_eq!(listed.total, 5);
    let expect = [
        (users[0], one.min(two)),
        (users[1], 0),
        (users[2], two),
        (users[3], one),
        (users[4], 0),
    ];
    for (user, group) in expect {
        let row = listed.row("user_id", user);
        assert_eq!(row["group_id"], group, "{row}");
        let full_name = match group {
            0 => "Acme",
            g if g == one => "Acme/One",
            _ => "Acme/One/Two",
        };
        assert_eq!(row["group_full_name"], full_name, "{row}");
    }

    // Pages of members are pages of that order.
    let page = api.members(team, 0, "per_page=2&page=2").await;
    assert_eq!(page.ints("user_id"), sorted(users.clone())[2..4].to_vec());
    assert_eq!(page.total, 5);
    let past = api.members(team, 0, "per_page=2&page=9").await;
    assert_eq!((past.list.len(), past.total), (0, 5));

    // A group lists its direct members with its own id and name.
    let direct = api.members(team, one, "").await;
    assert_eq!(direct.ints("user_id"), sorted([users[0], users[3]]));
    assert!(direct.list.iter().all(|row| row["group_id"] == one));
    assert!(
        direct
            .list
            .iter()
            .all(|row| row["group_full_name"] == "Acme/One")
    );
}

#[tokio::test]
async fn member_listings_page_10_by_default() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let g = api.create_group(team, "G", 0).await;
    let mut users = Vec::new();
    for i in 0..11 {
        let user = api.register_user(&format!("user-{i}")).await;
        api.add_member_ok(team, g, user, None).await;
        users.push(user);
    }
    users.sort_unstable();
    for group in [0, g] {
        let first = api.members(team, group, "").await;
        assert_eq!(first.ints("user_id"), users[..10].to_vec());
        assert_eq!(first.total, 11);
        let second = api.members(team, group, "page=2").await;
        assert_eq!(second.ints("user_id"), users[10..].to_vec());
    }
}

#[tokio::test]
async fn recursive_lists_every_member_of_the_subtree_once() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let top = api.create_group(team, "Top", 0).await;
    let mid = api.create_group(team, "Mid", top).await;
    let leaf = api.create_group(team, "Leaf", mid).await;
    let outside = api.create_group(team, "Outside", 0).await;
    let in_top = api.register_user("in-top").await;
    let in_mid_and_leaf = api.register_user("in-both").await;
    let in_leaf = api.register_user("in-leaf").await;
    let out = api.register_user("out").await;
    api.add_member_ok(team, top, in_top, None).await;
    api.add_member_ok(team, mid, in_mid_and_leaf, None).await;
    api.add_member_ok(team, leaf, in_mid_and_leaf, None).await;
    api.add_member_ok(team, leaf, in_leaf, None).await;
    api.add_member_ok(team, outside, out, None).await;

    let direct = api.members(team, top, "").await;
    assert_eq!((direct.ints("user_id"), direct.total), (vec![in_top], 1));

    let all = api.members(team, top, "recursive=true").await;
    assert_eq!(
        all.ints("user_id"),
        sorted([in_top, in_mid_and_leaf, in_leaf])
    );
    assert_eq!(all.total, 3);
    assert!(all.list.iter().all(|row| row["group_id"] == top));
    assert!(
        all.list
            .iter()
            .all(|row| row["group_full_name"] == "Acme/Top")
    );

    let below_mid = api.members(team, mid, "recursive=true").await;
    assert_eq!(
        below_mid.ints("user_id"),
        sorted([in_mid_and_leaf, in_leaf])
    );
    assert_eq!(below_mid.total, 2);
}

#[tokio::test]
async fn roles_filters_the_listing_and_counts_only_matches() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let g = api.create_group(team, "G", 0).await;
    let admin = api.register_user("admin").await;
    let survey = api.register_user("survey").await;
    let member = api.register_user("member").await;
    let elsewhere = api.register_user("elsewhere").await;
    api.add_member_ok(team, g, admin, Some(2)).await;
    api.add_member_ok(team, g, survey, Some(3)).await;
    api.add_member_ok(team, g, member, Some(4)).await;
    api.add_member_ok(team, 0, elsewhere, Some(2)).await;

    let admins = api.members(team, g, "roles=2").await;
    assert_eq!((admins.ints("user_id"), admins.total), (vec![admin], 1));
    let admins = api.members(team, 0, "roles=2").await;
    assert_eq!(admins.ints("user_id"), sorted([admin, elsewhere]));
    let some = api.members(team, g, "roles=3,4&per_page=1").await;
    assert_eq!(some.total, 2);
    assert_eq!(some.list.len(), 1);
    let owners = api.members(team, g, "roles=1").await;
    assert_eq!(owners.total, 0);

    for bad in ["roles=9", "roles=admin", "roles=%5B2"] {
        let response = api.get(&format!("{}?{bad}", members_path(team, g))).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn listing_an_unknown_group_is_contacts_group_not_found_and_paging_is_checked() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let deleted = api.create_group(team, "Deleted", 0).await;
    assert_ok(&api.delete_groups(team, &[deleted]).await);
    for group in [deleted, deleted + 1000] {
        let response = api.get(&members_path(team, group)).await;
        assert_error(&response, 404, "NotFound", "contacts_group_not_found");
    }
    for bad in ["per_page=0", "per_page=1001", "page=0"] {
        let response = api.get(&format!("{}?{bad}", members_path(team, 0))).await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}

#[tokio::test]
async fn a_group_with_members_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let parent = api.create_group(team, "Parent", 0).await;
    let child = api.create_group(team, "Child", parent).await;
    let user = api.register_user("lee").await;
    api.add_member_ok(team, child, user, None).await;

    for batch in [vec![child], vec![parent, child]] {
        let response = api.delete_groups(team, &batch).await;
        assert_error(&response, 409, "InvalidArgument", "group_not_empty");
    }
    assert_eq!(api.list_groups(team, "").await.total, 2);

    assert_ok(&api.remove_member(team, child, user).await);
    assert_ok(&api.delete_groups(team, &[parent, child]).await);
    assert_eq!(api.list_groups(team, "").await.total, 0);
    // The member stays in the directory, at the root.
    let everyone = api.members(team, 0, "").await;
    assert_eq!(everyone.ints("user_id"), vec![user]);
    assert_eq!(everyone.list[0]["group_id"], 0);
}

#[tokio::test]
async fn group_full_name_of_member_rows_follows_renames() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let parent = api.create_group(team, "Parent", 0).await;
    let child = api.create_group(team, "Child", parent).await;
    let user = api.register_user("mia").await;
    api.add_member_ok(team, child, user, None).await;
    assert_ok(
        &api.update_group(team, parent, &json!({"name": "Renamed"}))
            .await,
    );
    assert_eq!(
        api.members(team, child, "").await.list[0]["group_full_name"],
        "Acme/Renamed/Child"
    );
    assert_eq!(
        api.members(team, 0, "").await.list[0]["group_full_name"],
        "Acme/Renamed/Child"
    );
}
