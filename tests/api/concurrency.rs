//! Races: many requests at once on one directory or one app must leave every invariant intact.
//!
//! Each test runs on a multi-threaded runtime (four threads for servers and clients, so
//! requests run in parallel rather than taking turns at awaits) and sends its requests at once,
//! half to the test's server and half to a second server on the same database (its replica,
//! with its own cache of the directory): within one process the per-team gate decides writes
//! one at a time, across processes only the version check of the store's `apply` does. Answers
//! are judged by the envelope's `code` and `error.type`, never by the HTTP status.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::{Api, TestApp, group_path, groups_path, member_path, member_update_path};
use crate::metrics::{scrape, value};
use crate::scim::Scim;

/// `code` and `error.type` of `count` concurrent POSTs built by `request(i)`, sent at once
/// (behind a barrier) from tasks of their own, request `i` to `servers[i % servers.len()]`.
async fn race(
    servers: &[&TestApp],
    api: &Api<'_>,
    count: usize,
    request: impl Fn(usize) -> (String, Value),
) -> Vec<(String, String)> {
    let start = Arc::new(Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let (path, body) = request(i);
            let server = servers[i % servers.len()];
            let url = server.url(&api.authed(&path));
            let client = server.client.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let answer = match client.post(url).json(&body).send().await {
                    Ok(answer) => answer.json::<Value>().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                let text = |value: &Value| value.as_str().unwrap_or("(none)").to_owned();
                (text(&answer["code"]), text(&answer["error"]["type"]))
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(count);
    for task in tasks {
        answers.push(task.await.expect("a request task"));
    }
    answers
}

/// How many answers are successes.
fn successes(answers: &[(String, String)]) -> usize {
    answers.iter().filter(|(code, _)| code == "OK").count()
}

/// Every answer is a success or the refusal of type `refusal`.
#[track_caller]
fn only_ok_or(answers: &[(String, String)], refusal: &str) {
    assert!(
        answers
            .iter()
            .all(|(code, kind)| code == "OK" || kind == refusal),
        "{answers:?}"
    );
}

/// A team's first writes after a start, all at once, to one process: its copy is loaded once
/// (under the team's gate) and no write is decided on a copy that misses a change waiting,
/// uncommitted, in the open batch: such a write fails its version check, reloads and may fail
/// again, until the batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_first_writes_loads_the_directory_once_without_conflicts() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let before = scrape(&app.address).await;
    let answers = race(&[&app], &api, 48, |i| {
        (groups_path(app.team_id), json!({"name": format!("n{i}")}))
    })
    .await;
    assert_eq!(successes(&answers), 48, "{answers:?}");
    let after = scrape(&app.address).await;
    let count = |text: &str, name: &str| value(text, name, &[]);
    assert_eq!(
        count(&after, "contactsd_write_commit_conflicts_total"),
        0.0,
        "{after}"
    );
    let loads = "contactsd_directory_cache_loads_total";
    assert_eq!(count(&after, loads) - count(&before, loads), 1.0, "{after}");
    assert_eq!(api.list_groups(app.team_id, "per_page=100").await.total, 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_fifty_creates_with_one_remote_id_exactly_one_succeeds() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let answers = race(&[&app, &replica], &api, 50, |i| {
        (
            groups_path(app.team_id),
            json!({"name": format!("n{i}"), "remote_id": "same"}),
        )
    })
    .await;
    assert_eq!(successes(&answers), 1, "{answers:?}");
    only_ok_or(&answers, "duplicated_remote_id");
    assert_eq!(
        api.list_groups(app.team_id, "remote_ids=same").await.total,
        1
    );
    assert_eq!(
        api.list_groups(app.team_id, "per_page=100").await.total,
        1,
        "no other group was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_moves_between_two_subtrees_never_make_a_cycle() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let left = api.create_group(app.team_id, "L", 0).await;
    let right = api.create_group(app.team_id, "R", 0).await;
    let left_child = api.create_group(app.team_id, "L1", left).await;
    let right_child = api.create_group(app.team_id, "R1", right).await;
    // Rounds of: both roots to under the other's child, at once, then both back to the top.
    // Each round, at most one of the two crossing moves can succeed.
    for _ in 0..5 {
        let answers = race(&[&app, &replica], &api, 40, |i| match i % 2 {
            0 => (
                group_path(app.team_id, left),
                json!({"name": "L", "to_id": right_child}),
            ),
            _ => (
                group_path(app.team_id, right),
                json!({"name": "R", "to_id": left_child}),
            ),
        })
        .await;
        only_ok_or(&answers, "group_cycle");
        assert!(successes(&answers) >= 1, "{answers:?}");
        assert_no_cycle(&api, app.team_id).await;
        for (group, name) in [(left, "L"), (right, "R")] {
            crate::helpers::assert_ok(
                &api.update_group(app.team_id, group, &json!({"name": name, "to_id": 0}))
                    .await,
            );
        }
    }
}

/// Every group of the team reaches the root by its parents.
async fn assert_no_cycle(api: &Api<'_>, team_id: i64) {
    let groups = api.list_groups(team_id, "per_page=1000").await;
    assert_eq!(groups.total, 4);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_adds_of_one_member_place_it_once() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let sales = api.create_group(app.team_id, "Sales", 0).await;
    let user = api.register_user("ann").await;
    let answers = race(&[&app, &replica], &api, 30, |_| {
        (member_path(app.team_id, sales, user), json!({}))
    })
    .await;
    assert_eq!(successes(&answers), 1, "{answers:?}");
    only_ok_or(&answers, "contacts_user_existed");
    assert_eq!(
        api.members(app.team_id, sales, "").await.ints("user_id"),
        vec![user]
    );
    assert_eq!(api.members(app.team_id, 0, "").await.total, 1);
}

/// One create of a burst names the remote id of a group written behind the server's back, so
/// the team's copy lets it through and the database refuses it. It is likely a team's later
/// write in its batch, which on PostgreSQL has no savepoint of its own and loses the batch: the
/// batch's other creates are decided again and stand. Whatever the batches, every other create
/// stands, and the one is refused as the rules refuse a remote id taken once the team's copy is
/// reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_create_the_database_refuses_leaves_the_others_of_its_batch_standing() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    api.create_group(app.team_id, "Loaded", 0).await;
    crate::store::execute_unchecked(
        app.database_url(),
        &format!(
            "INSERT INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
             is_valid, created_at, upd_at) VALUES (1000000, {}, 0, 1, 'hidden', 'Hidden', 0, \
             TRUE, 0, 0)",
            app.team_id
        ),
    )
    .await;
    let answers = race(&[&app], &api, 32, |i| {
        let remote_id = if i == 20 {
            "hidden".to_owned()
        } else {
            format!("r{i}")
        };
        (
            groups_path(app.team_id),
            json!({"name": format!("n{i}"), "remote_id": remote_id}),
        )
    })
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.0 == "OK", i != 20, "{i}: {answers:?}");
    }
    // Refused by the rules once the copy is reloaded, on both backends.
    assert_eq!(answers[20].1, "duplicated_remote_id", "{answers:?}");
    let created: Vec<String> = (0..32)
        .filter(|i| *i != 20)
        .map(|i| format!("r{i}"))
        .collect();
    let query = format!("per_page=100&remote_ids={}", created.join(","));
    assert_eq!(api.list_groups(app.team_id, &query).await.total, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_token_calls_leave_exactly_one_valid_token() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let start = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let server = if i % 2 == 0 { &app } else { &replica };
            let (url, client) = (
                server.url(&format!(
                    "/api/oauth2/access_token?appid={}&secret={}&grant_type=client_credential",
                    app.appid, app.secret
                )),
                server.client.clone(),
            );
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let answer: Value = client
                    .get(url)
                    .send()
                    .await
                    .expect("an answer")
                    .json()
                    .await
                    .expect("an envelope");
                assert_eq!(answer["code"], "OK", "{answer}");
                answer["data"]["access_token"]
                    .as_str()
                    .expect("a token")
                    .to_owned()
            })
        })
        .collect();
    // Every call answered before any token is tried: a token tried while others are still
    // being issued may be the latest for a moment.
    let mut tokens = Vec::with_capacity(tasks.len());
    for task in tasks {
        tokens.push(task.await.expect("a token task"));
    }
    let mut valid = 0;
    for token in tokens {
        let api = Api::new(&app, &app.appid, &token);
        if api.get(&groups_path(app.team_id)).await.body["code"] == "OK" {
            valid += 1;
        }
    }
    assert_eq!(valid, 1, "exactly the latest token works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_syncs_of_new_openids_give_each_openid_one_user() {
    // Lifted limits on syncs in flight, so that the syncs do race.
    let app = TestApp::builder().max_syncs(10, 10).spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let openids: Vec<String> = (0..40).map(|n| format!("new-{n:02}")).collect();
    let answers = race(&[&app, &replica], &api, 10, |i| {
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
    assert_eq!(successes(&answers), answers.len(), "{answers:?}");
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

/// A sync decides on its members' stored names as they are when it takes the team's gate, not
/// as it read them before registering its new users: a member write acknowledged in between is
/// neither undone (a member the snapshot does not name, moved out of a group the sync deletes)
/// nor mistaken for the sync's own state (a member the snapshot names).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_writes_while_a_sync_registers_are_neither_undone_nor_missed() {
    // Six registrations of 50,000 (PostgreSQL runs two at once): the last is still to come
    // once the first new user is found and the member writes are made.
    const NEW: usize = 300_000;
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let sync_path = format!("/api/contacts/teams/{team}/sync");
    let named = json!({"openid": "named", "nickname": "from sync", "group_remote_ids": ["keep"]});
    let keep = json!({"remote_id": "keep", "name": "Keep"});
    let gone = json!({"remote_id": "gone", "name": "Gone"});
    let first = json!({"groups": [keep, gone], "members": [named]});
    crate::helpers::assert_ok(&api.post_json(&sync_path, &first).await);
    let groups = api.list_groups(team, "per_page=10").await;
    let id_of = |name: &str| {
        let names = groups.strings("name");
        groups.ints("id")[names.iter().position(|n| n == name).expect("synced group")]
    };
    let (keep_id, gone_id) = (id_of("Keep"), id_of("Gone"));
    // A member of the API's, in the sync's group `gone` and in a group of the API's.
    let own_id = api.create_group(team, "Own", 0).await;
    let unnamed = api.register_user("unnamed").await;
    let placed = json!({"nickname": "before", "group_ids": [gone_id, own_id]});
    api.add_member_ok(team, 0, unnamed, None).await;
    crate::helpers::assert_ok(&api.update_member(team, unnamed, &placed).await);

    let mut members = vec![named];
    members.extend((0..NEW).map(|n| json!({"openid": format!("new-{n:06}"), "nickname": "n"})));
    let body = json!({"mode": "replace", "groups": [keep], "members": members});
    let syncing = {
        let client = app.client.clone();
        let url = app.url(&api.authed(&sync_path));
        tokio::spawn(async move {
            let answer = client.post(url).json(&body).send().await?;
            answer.json::<Value>().await
        })
    };
    // Registration goes in openid order: once the first new user exists, the sync has read
    // the stored members and has not taken the gate.
    let registered = |openid: &'static str| {
        let api = &api;
        async move {
            let answer = api.get(&format!("/api/sso/users/{openid}")).await;
            answer.body["code"] == "OK"
        }
    };
    let waiting = std::time::Instant::now();
    while !registered("new-000000").await {
        assert!(!syncing.is_finished(), "the sync ended before registering");
        assert!(waiting.elapsed().as_secs() < 300, "no new user registered");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let named_id = crate::helpers::assert_ok(&api.get("/api/sso/users/named").await)["user_id"]
        .as_i64()
        .expect("a user id");
    let renamed = json!({"nickname": "during"});
    let (first, second) = tokio::join!(
        api.update_member(team, named_id, &renamed),
        api.update_member(team, unnamed, &renamed)
    );
    crate::helpers::assert_ok(&first);
    crate::helpers::assert_ok(&second);
    assert!(
        !registered("new-299999").await,
        "the sync registered every user before the member writes: this test missed its window"
    );
    let answer = syncing.await.expect("sync task").expect("sync answer");
    assert_eq!(answer["code"], "OK", "{answer}");

    // `named`: the sync came later and names it "from sync".
    let in_keep = api.members(team, keep_id, "").await;
    assert_eq!(in_keep.ints("user_id"), [named_id]);
    assert_eq!(in_keep.strings("name"), ["from sync"]);
    // `unnamed`: out of `gone`, which the sync deleted, with the name written meanwhile.
    let in_own = api.members(team, own_id, "").await;
    assert_eq!(in_own.ints("user_id"), [unnamed]);
    assert_eq!(in_own.strings("name"), ["during"]);
}

/// SCIM clients of `app`'s team on `app` and on `replica`, with one token.
async fn scim_on_both<'a>(app: &'a TestApp, replica: &'a TestApp) -> (Scim<'a>, Scim<'a>) {
    let scim = Scim::new(app, app.team_id).await;
    let other = Scim {
        app: replica,
        token: scim.token.clone(),
    };
    (scim, other)
}

/// Two PATCHes of one SCIM user, each changing an attribute of its own, sent at once to two
/// servers: both stand, whichever read the user first. A PATCH racing the user's DELETE never
/// brings the user back: it is made before the DELETE, or finds no user.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_scim_writes_of_one_user_neither_undo_nor_revive_each_other() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (scim, other) = scim_on_both(&app, &replica).await;
    let title = json!([{"op": "replace", "path": "title", "value": "Boss"}]);
    let email = json!([{"op": "add", "path": "emails", "value": [{"value": "a@example.com"}]}]);
    for round in 0..10 {
        let id = scim.user(&format!("racer{round}")).await;
        let path = format!("/Users/{id}");
        let (a, b) = tokio::join!(
            scim.patch(&path, title.clone()),
            other.patch(&path, email.clone())
        );
        assert_eq!((a.status, b.status), (200, 200), "{} {}", a.body, b.body);
        let user = scim.get(&path).await.body;
        assert_eq!(user["title"], "Boss", "round {round}: {user}");
        assert_eq!(
            user["emails"][0]["value"], "a@example.com",
            "round {round}: {user}"
        );

        let (deleted, patched) = tokio::join!(
            scim.call(Method::DELETE, &path, None, &[]),
            other.patch(&path, title.clone())
        );
        assert_eq!(deleted.status, 204, "{}", deleted.body);
        assert!([200, 404].contains(&patched.status), "{}", patched.body);
        let after = scim.get(&path).await;
        assert_eq!(
            after.status, 404,
            "round {round}: the deleted user is back: {}",
            after.body
        );
    }
}

/// A PATCH renaming a SCIM group and one adding a member to it, sent at once to two servers:
/// the group ends renamed and with the member, whichever read the group first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_scim_patches_of_one_group_keep_each_others_changes() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (scim, other) = scim_on_both(&app, &replica).await;
    for round in 0..10 {
        let user = scim.user(&format!("member{round}")).await;
        let path = scim.group(&format!("Team {round}"), &[]).await;
        let renamed = format!("Renamed {round}");
        let rename = json!([{"op": "replace", "path": "displayName", "value": renamed}]);
        let add = json!([{"op": "add", "path": "members", "value": [{"value": user}]}]);
        let (first, second) = tokio::join!(scim.patch(&path, rename), other.patch(&path, add));
        assert_eq!(
            (first.status, second.status),
            (200, 200),
            "{} {}",
            first.body,
            second.body
        );
        let after = scim.get(&path).await.body;
        assert_eq!(
            after["displayName"],
            renamed.as_str(),
            "round {round}: {after}"
        );
        assert_eq!(
            after["members"][0]["value"],
            user.as_str(),
            "round {round}: {after}"
        );
    }
    // Members added to one group at once all stand, none refused for the others.
    let group = scim.post("/Groups", json!({"displayName": "All"})).await;
    let path = format!("/Groups/{}", group.body["id"].as_str().expect("id"));
    let mut users = Vec::new();
    for n in 0..16 {
        users.push(scim.user(&format!("everyone{n}")).await);
    }
    let adds = users.iter().enumerate().map(|(n, user)| {
        let add = json!([{"op": "add", "path": "members", "value": [{"value": user}]}]);
        let client = if n % 2 == 0 { &scim } else { &other };
        client.patch(&path, add)
    });
    for added in futures_util::future::join_all(adds).await {
        assert_eq!(added.status, 200, "{}", added.body);
    }
    let members = scim.get(&path).await.body["members"].clone();
    assert_eq!(members.as_array().map(Vec::len), Some(16), "{members}");
}

/// Updates of one member sent at once to two servers, each setting one field (its name, its
/// avatar, its groups), and a SCIM PATCH adding it to a group racing a rename: every field
/// ends as the request that set it said, whichever read the member first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_one_member_keep_each_others_fields() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let sales = api.create_group(team, "Sales", 0).await;
    let user = api.register_user("ann").await;
    api.add_member_ok(team, 0, user, None).await;
    for round in 0..10 {
        let (name, avatar) = (
            format!("Ann {round}"),
            format!("https://a.example/{round}.png"),
        );
        let groups = if round % 2 == 0 { vec![sales] } else { vec![] };
        let answers = race(&[&app, &replica], &api, 3, |i| {
            let body = match i {
                0 => json!({"nickname": name}),
                1 => json!({"avatar": avatar}),
                _ => json!({"group_ids": groups}),
            };
            (member_update_path(team, user), body)
        })
        .await;
        assert_eq!(successes(&answers), 3, "{answers:?}");
        let row = api.members(team, 0, "").await.list[0].clone();
        assert_eq!(
            (&row["name"], &row["avatar"]),
            (&json!(name), &json!(avatar))
        );
        let in_sales = api.members(team, sales, "").await.ints("user_id");
        assert_eq!(in_sales.len(), groups.len(), "round {round}: {in_sales:?}");
    }

    let (scim, other) = scim_on_both(&app, &replica).await;
    let scim_user = scim.user("bob").await;
    let members = api.members(team, 0, "").await.list;
    let bob = members
        .iter()
        .find(|row| row["user_id"] != user)
        .and_then(|row| row["user_id"].as_i64())
        .expect("the SCIM user's member row");
    for round in 0..10 {
        let group = scim
            .post("/Groups", json!({"displayName": format!("Team {round}")}))
            .await;
        let path = format!("/Groups/{}", group.body["id"].as_str().expect("id"));
        let add = json!([{"op": "add", "path": "members", "value": [{"value": scim_user}]}]);
        let renamed = format!("Bob {round}");
        let rename = json!({"nickname": renamed});
        let (added, named) = tokio::join!(
            other.patch(&path, add),
            api.update_member(team, bob, &rename)
        );
        assert_eq!(added.status, 200, "{}", added.body);
        crate::helpers::assert_ok(&named);
        let row = api.members(team, 0, "").await.row("user_id", bob).clone();
        assert_eq!(row["name"], renamed.as_str(), "round {round}: {row}");
    }
}

/// Updates of one user's profile sent at once to two servers, one setting its nickname and
/// one its avatar: both stand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_updates_of_one_user_keep_each_others_fields() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    api.register_user("cy").await;
    for round in 0..10 {
        let (name, avatar) = (
            format!("Cy {round}"),
            format!("https://c.example/{round}.png"),
        );
        let answers = race(&[&app, &replica], &api, 2, |i| {
            let body = match i {
                0 => json!({"nickname": name}),
                _ => json!({"avatar": avatar}),
            };
            ("/api/sso/users/cy".to_owned(), body)
        })
        .await;
        assert_eq!(successes(&answers), 2, "{answers:?}");
        let user = crate::helpers::assert_ok(&api.get("/api/sso/users/cy").await);
        assert_eq!(
            (&user["nickname"], &user["avatar"]),
            (&json!(name), &json!(avatar))
        );
    }
}

/// A group's DELETE carrying the `If-Match` of the group as read, racing a PATCH renaming it,
/// on two servers: the group is deleted only as it was read. Either the DELETE goes first (the
/// PATCH then finds no group) or the rename does (the DELETE is then refused as stale); never
/// both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_scim_group_delete_racing_a_rename_deletes_only_the_group_it_read() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (scim, other) = scim_on_both(&app, &replica).await;
    for round in 0..50 {
        let group = scim
            .post("/Groups", json!({"displayName": format!("Doomed {round}")}))
            .await;
        let path = format!("/Groups/{}", group.body["id"].as_str().expect("id"));
        let etag = group.etag.expect("etag");
        let rename = json!([{"op": "replace", "path": "displayName", "value": "Kept"}]);
        let condition = [("if-match", etag.as_str())];
        let (deleted, renamed) = tokio::join!(
            scim.call(Method::DELETE, &path, None, &condition),
            other.patch(&path, rename)
        );
        let outcome = (deleted.status, renamed.status);
        assert!(
            [(204, 404), (412, 200)].contains(&outcome),
            "round {round}: {outcome:?} {} {}",
            deleted.body,
            renamed.body
        );
    }
}

/// A DELETE of a SCIM user carrying the `If-Match` a client read, sent to one server while the
/// other server adds the user to a group (which changes the user's version: it lists its
/// groups). A DELETE answered 204 was decided on the user as the client read it, so the feed
/// never shows the group addition before the removal; otherwise it is refused with 412 and the
/// user stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditional_scim_delete_racing_a_group_addition_never_removes_a_changed_user() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let (scim, other) = scim_on_both(&app, &replica).await;
    let api = app.team_api().await;
    for round in 0..30 {
        let after = crate::events::feed(&app, &api, 0)
            .await
            .last()
            .map_or(0, |event| event["seq"].as_i64().expect("seq"));
        let id = scim.user(&format!("leaver{round}")).await;
        let group_path = scim.group(&format!("Joined {round}"), &[]).await;
        let path = format!("/Users/{id}");
        let etag = scim.get(&path).await.etag.expect("etag");
        let add = json!([{"op": "add", "path": "members", "value": [{"value": id}]}]);
        let condition = [("if-match", etag.as_str())];
        // The DELETE leaves later round by round, so that some rounds meet the addition
        // between the DELETE's read and its write.
        let delay = std::time::Duration::from_micros(250 * (round % 12));
        let (deleted, added) = tokio::join!(
            async {
                tokio::time::sleep(delay).await;
                scim.call(Method::DELETE, &path, None, &condition).await
            },
            other.patch(&group_path, add)
        );
        let events = crate::events::feed(&app, &api, after).await;
        let member = events
            .iter()
            .find(|event| event["type"] == "member.added")
            .map(|event| event["object"]["id"].clone())
            .expect("the user's member.added");
        let told: Vec<&str> = events
            .iter()
            .filter(|event| event["object"]["id"] == member && event["object"]["kind"] == "member")
            .filter_map(|event| event["type"].as_str())
            .collect();
        match deleted.status {
            204 => assert_eq!(
                told,
                ["member.added", "member.removed"],
                "round {round}: deleted after the group addition ({}): {events:?}",
                added.status
            ),
            412 => {
                assert_eq!(added.status, 200, "{}", added.body);
                assert_eq!(told, ["member.added", "member.updated"], "round {round}");
                assert_eq!(scim.get(&path).await.status, 200);
            }
            status => panic!("round {round}: DELETE answered {status}: {}", deleted.body),
        }
    }
}
