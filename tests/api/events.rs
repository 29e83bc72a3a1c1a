//! The change feed (§11): every kind of change yields exactly its event, numbered without gaps
//! even when two servers write at once, with the actor and request id of the write; `wait`
//! answers as soon as an event commits; retention answers `events_expired`; another tenant
//! cannot read the feed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use contactsd::domain::access::Plan;
use contactsd::service::EventSettings;

use crate::helpers::{
    Api, ApiResponse, TestApp, assert_error, assert_ok, assert_stored_as_served, groups_path,
};
use crate::scim::Scim;

fn events_path(team_id: i64, query: &str) -> String {
    format!("/api/contacts/teams/{team_id}/events?{query}")
}

/// The events after `after` (one page of up to 1000).
pub(crate) async fn feed(app: &TestApp, api: &Api<'_>, after: i64) -> Vec<Value> {
    let data = assert_ok(
        &api.get(&events_path(
            app.team_id,
            &format!("after={after}&limit=1000"),
        ))
        .await,
    );
    data["list"].as_array().cloned().unwrap_or_default()
}

/// The request id a write was answered with.
fn request_id(response: &ApiResponse) -> String {
    assert_ok(response);
    response.body["request_id"]
        .as_str()
        .expect("a request id")
        .to_owned()
}

/// `event` is of `kind` about `object`, with these `before` and `after`, made by the team app in
/// request `request`.
#[track_caller]
fn assert_event(
    event: &Value,
    kind: &str,
    object: Value,
    before: Value,
    after: Value,
    (appid, request): (&str, &str),
) {
    assert_eq!(event["type"], kind, "{event}");
    assert_eq!(event["object"], object, "{event}");
    assert_eq!(event["before"], before, "{event}");
    assert_eq!(event["after"], after, "{event}");
    assert_eq!(
        event["actor"],
        json!({"kind": "app", "appid": appid}),
        "{event}"
    );
    assert_eq!(event["request_id"], request, "{event}");
}

#[tokio::test]
async fn each_group_and_member_change_yields_exactly_its_event() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let appid = app.appid.as_str();

    let created = api
        .try_create_group(team, &json!({"name": "A", "remote_id": "a", "order": 1}))
        .await;
    let a = assert_ok(&created)["group_id"].as_i64().expect("id");
    let mut requests = vec![request_id(&created)];
    let created = api
        .try_create_group(team, &json!({"name": "B", "parent_id": a}))
        .await;
    let b = assert_ok(&created)["group_id"].as_i64().expect("id");
    requests.push(request_id(&created));
    for body in [
        json!({"name": "A2"}),
        json!({"name": "A2", "order": 7}),
        json!({"name": "A2", "remote_id": "a2"}),
        // Nothing that an event shows changes: no event.
        json!({"name": "A2"}),
    ] {
        requests.push(request_id(&api.update_group(team, a, &body).await));
    }
    requests.pop();
    let moved = api
        .update_group(team, b, &json!({"name": "B", "from_id": a, "to_id": 0}))
        .await;
    requests.push(request_id(&moved));
    let user = api.register_user("ann").await;
    let added = api.add_member(team, a, user, &json!({})).await;
    requests.push(request_id(&added));
    for body in [
        json!({"role": 3}),
        json!({"nickname": "Ann"}),
        json!({"group_ids": [a, b]}),
    ] {
        requests.push(request_id(&api.update_member(team, user, &body).await));
    }
    requests.push(request_id(&api.remove_member(team, 0, user).await));
    requests.push(request_id(&api.delete_groups(team, &[b]).await));

    let events = feed(&app, &api, 0).await;
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=requests.len() as i64).collect::<Vec<_>>());
    let group = |id: i64, remote: &str| json!({"kind": "group", "id": id, "remote_id": remote});
    let member = json!({"kind": "member", "id": user, "remote_id": null});
    let by = |n: usize| (appid, requests[n].as_str());
    let expected = [
        (
            "group.created",
            group(a, "a"),
            Value::Null,
            json!({"name": "A", "parent_id": 0, "order": 1, "remote_id": "a"}),
        ),
        (
            "group.created",
            group(b, ""),
            Value::Null,
            json!({"name": "B", "parent_id": a, "order": 0, "remote_id": ""}),
        ),
        (
            "group.updated",
            group(a, "a"),
            json!({"name": "A"}),
            json!({"name": "A2"}),
        ),
        (
            "group.updated",
            group(a, "a"),
            json!({"order": 1}),
            json!({"order": 7}),
        ),
        (
            "group.updated",
            group(a, "a2"),
            json!({"remote_id": "a"}),
            json!({"remote_id": "a2"}),
        ),
        (
            "group.updated",
            group(b, ""),
            json!({"parent_id": a}),
            json!({"parent_id": 0}),
        ),
        (
            "member.added",
            member.clone(),
            Value::Null,
            json!({"role": 4, "group_ids": [a]}),
        ),
        (
            "member.updated",
            member.clone(),
            json!({"role": 4}),
            json!({"role": 3}),
        ),
        (
            "member.updated",
            member.clone(),
            json!({"nickname": ""}),
            json!({"nickname": "Ann"}),
        ),
        (
            "member.updated",
            member.clone(),
            json!({"group_ids": [a]}),
            json!({"group_ids": [a, b]}),
        ),
        (
            "member.removed",
            member.clone(),
            json!({"role": 3, "group_ids": [a, b]}),
            Value::Null,
        ),
        (
            "group.deleted",
            group(b, ""),
            json!({"name": "B", "parent_id": 0, "order": 0, "remote_id": ""}),
            Value::Null,
        ),
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (n, (event, (kind, object, before, after))) in events.iter().zip(expected).enumerate() {
        assert_event(event, kind, object, before, after, by(n));
        assert!(event["time"].is_string(), "{event}");
    }
}

#[tokio::test]
async fn a_member_joining_or_leaving_one_group_is_told_with_all_its_groups() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let appid = app.appid.as_str();
    let mut groups = Vec::new();
    for name in ["C", "A", "B"] {
        groups.push(api.create_group(team, name, 0).await);
    }
    let [c, a, b] = groups[..] else {
        panic!("three groups")
    };
    let user = api.register_user("ann").await;
    let after = feed(&app, &api, 0).await.len() as i64;
    let mut requests = Vec::new();
    for group in [b, c, a] {
        let added = api.add_member(team, group, user, &json!({})).await;
        requests.push(request_id(&added));
    }
    requests.push(request_id(&api.remove_member(team, c, user).await));
    requests.push(request_id(&api.remove_member(team, a, user).await));
    // Refused: not in that group any more; no event.
    let refused = api.remove_member(team, a, user).await;
    assert_error(&refused, 404, "NotFound", "contacts_user_not_found");
    let added = api.add_member(team, 0, user, &json!({})).await;
    assert_error(&added, 409, "AlreadyExists", "contacts_user_existed");

    let events = feed(&app, &api, after).await;
    let member = json!({"kind": "member", "id": user, "remote_id": null});
    let groups = |ids: &[i64]| json!({ "group_ids": ids });
    let expected = [
        (
            "member.added",
            Value::Null,
            json!({"role": 4, "group_ids": [b]}),
        ),
        // Ascending ids (C was created first), whatever the order of joining.
        ("member.updated", groups(&[b]), groups(&[c, b])),
        ("member.updated", groups(&[c, b]), groups(&[c, a, b])),
        ("member.updated", groups(&[c, a, b]), groups(&[a, b])),
        ("member.updated", groups(&[a, b]), groups(&[b])),
    ];
    assert_eq!(events.len(), expected.len(), "{events:#?}");
    for (n, (event, (kind, before, after))) in events.iter().zip(expected).enumerate() {
        assert_event(
            event,
            kind,
            member.clone(),
            before,
            after,
            (appid, &requests[n]),
        );
    }
}

#[tokio::test]
async fn a_sync_writes_an_event_per_object_and_its_summary() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let snapshot = json!({
        "groups": [
            {"remote_id": "sales", "name": "Sales", "parent_remote_id": ""},
            {"remote_id": "eu", "name": "EU", "parent_remote_id": "sales"},
        ],
        "members": [
            {"openid": "ann", "nickname": "ann", "group_remote_ids": ["eu"]},
            {"openid": "bob", "nickname": "bob", "group_remote_ids": []},
        ],
    });
    let path = format!("/api/contacts/teams/{}/sync", app.team_id);
    let synced = api.post_json(&path, &snapshot).await;
    let request = request_id(&synced);
    let events = feed(&app, &api, 0).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "group.created",
            "group.created",
            "member.added",
            "member.added",
            "sync.applied"
        ]
    );
    for event in &events {
        assert_eq!(event["actor"], json!({"kind": "sync", "appid": app.appid}));
        assert_eq!(event["request_id"], request.as_str());
    }
    let summary = &events[4];
    assert_eq!(summary["object"]["kind"], "directory");
    assert_eq!(summary["after"]["groups_created"], 2);
    assert_eq!(summary["after"]["members_added"], 2);
    // The created group's events name its id and its parent's.
    let sales = api
        .list_groups(app.team_id, "remote_ids=sales")
        .await
        .ints("id")[0];
    let eu = &events[1];
    assert_eq!(eu["object"]["remote_id"], "eu");
    assert_eq!(eu["after"]["parent_id"], sales);

    // The same snapshot again changes nothing: no event at all.
    assert_ok(&api.post_json(&path, &snapshot).await);
    assert_eq!(feed(&app, &api, 5).await, Vec::<Value>::new());

    // A sync that only adds, to a directory that has rows and events (staged on SQLite): its
    // events follow the last one without a gap, and what was there stays.
    let more = json!({
        "groups": [{"remote_id": "apac", "name": "APAC", "parent_remote_id": "sales"}],
        "members": [{"openid": "cid", "nickname": "cid", "group_remote_ids": ["apac", "eu"]}],
    });
    assert_ok(&api.post_json(&format!("{path}?mode=upsert"), &more).await);
    let added = feed(&app, &api, 5).await;
    let seqs: Vec<i64> = added.iter().filter_map(|e| e["seq"].as_i64()).collect();
    let kinds: Vec<&str> = added.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(seqs, [6, 7, 8]);
    assert_eq!(kinds, ["group.created", "member.added", "sync.applied"]);
    let apac = api
        .list_groups(app.team_id, "remote_ids=apac")
        .await
        .ints("id")[0];
    assert_eq!(added[0]["object"]["id"], apac);
    assert_eq!(added[0]["after"]["parent_id"], sales);
    assert_eq!(
        api.members(app.team_id, 0, "").await.ints("user_id").len(),
        3
    );

    // A member renamed in the groups it is in: only its name is told, and it stays in them.
    let renamed = json!({
        "members": [{"openid": "ann", "nickname": "Ann Lee", "group_remote_ids": ["eu"]}],
    });
    assert_ok(
        &api.post_json(&format!("{path}?mode=upsert"), &renamed)
            .await,
    );
    let told = feed(&app, &api, 8).await;
    let kinds: Vec<&str> = told.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["member.updated", "sync.applied"]);
    assert_eq!(told[0]["before"], json!({"nickname": "ann"}));
    assert_eq!(told[0]["after"], json!({"nickname": "Ann Lee"}));
    let in_eu = api.members(app.team_id, eu["object"]["id"].as_i64().unwrap_or(0), "");
    let in_eu = in_eu.await;
    assert_eq!(in_eu.list.len(), 2, "{:?}", in_eu.list);
    assert!(
        in_eu.list.iter().any(|m| m["name"] == "Ann Lee"),
        "{:?}",
        in_eu.list
    );
    assert_stored_as_served(&app, &api).await;
}

#[tokio::test]
async fn scim_writes_are_events_of_the_scim_actor() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let scim = Scim::new(&app, app.team_id).await;
    let answer = scim
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Sales", "externalId": "S1"}),
            ),
            &[],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let events = feed(&app, &api, 0).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "group.created");
    assert_eq!(events[0]["actor"], json!({"kind": "scim", "appid": null}));
    assert_eq!(events[0]["after"]["name"], "Sales");

    // A user create is one write: the member it makes is named by its new user id.
    scim.user("ada@example.com").await;
    let members = api.members(app.team_id, 0, "").await;
    let events = feed(&app, &api, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "member.added");
    assert_eq!(events[0]["object"]["id"], members.ints("user_id")[0]);
    assert_eq!(events[0]["after"], json!({"role": 4, "group_ids": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn numbers_have_no_gap_when_two_servers_write_at_once() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let count = 40;
    let start = Arc::new(Barrier::new(count));
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let server = if i % 2 == 0 { &app } else { &replica };
            let url = server.url(&api.authed(&groups_path(app.team_id)));
            let client = server.client.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let answer: Value = client
                    .post(url)
                    .json(&json!({"name": format!("g{i}")}))
                    .send()
                    .await
                    .expect("an answer")
                    .json()
                    .await
                    .expect("json");
                answer["data"]["group_id"].as_i64().expect("created")
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.expect("a task"));
    }
    let events = feed(&app, &api, 0).await;
    let seqs: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=count as i64).collect::<Vec<_>>());
    let mut ids: Vec<i64> = events
        .iter()
        .filter_map(|e| e["object"]["id"].as_i64())
        .collect();
    ids.sort_unstable();
    created.sort_unstable();
    assert_eq!(ids, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_call_answers_as_soon_as_an_event_commits() {
    let app = TestApp::spawn().await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    // Written through this process, then through another one on the same database.
    for (writer, seq) in [(&app, 1), (&replica, 2)] {
        let url = app.url(&api.authed(&events_path(
            app.team_id,
            &format!("after={}&wait=30", seq - 1),
        )));
        let client = app.client.clone();
        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            let answer: Value = client
                .get(url)
                .send()
                .await
                .expect("answer")
                .json()
                .await
                .expect("json");
            (answer, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the call waits while no event exists"
        );
        let writer_api = Api::new(writer, &api.appid, &api.token);
        writer_api
            .create_group(app.team_id, &format!("g{seq}"), 0)
            .await;
        let (answer, elapsed) = waiting.await.expect("the waiting call");
        assert_eq!(answer["data"]["list"][0]["seq"], seq, "{answer}");
        assert_eq!(answer["data"]["next"], seq, "{answer}");
        assert!(
            elapsed < Duration::from_secs(20),
            "answered after {elapsed:?}"
        );
    }
    // Nothing pending: the wait runs out with an empty page and the same cursor.
    let empty = assert_ok(&api.get(&events_path(app.team_id, "after=2&wait=1")).await);
    assert_eq!(empty, json!({"list": [], "next": 2}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_are_bounded_per_team() {
    let app = TestApp::builder()
        .events(EventSettings {
            max_waiting_per_team: 1,
            ..EventSettings::default()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let url = app.url(&api.authed(&events_path(app.team_id, "wait=5")));
    let client = app.client.clone();
    let first = tokio::spawn(async move { client.get(url).send().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = api.get(&events_path(app.team_id, "wait=5")).await;
    assert_error(&second, 429, "ResourceExhausted", "request_rate_limited");
    // Without waiting, the feed still answers.
    assert_ok(&api.get(&events_path(app.team_id, "")).await);
    first.abort();
}

#[tokio::test]
async fn a_cursor_older_than_the_retention_is_expired() {
    let app = TestApp::builder()
        .events(EventSettings {
            retention: Duration::ZERO,
            ..EventSettings::default()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    api.create_group(app.team_id, "old", 0).await;
    api.create_group(app.team_id, "older", 0).await;
    // Stored times are whole seconds: the events are past a zero retention a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.service.prune_events().await.expect("pruned"), 2);
    let expired = api.get(&events_path(app.team_id, "after=1")).await;
    assert_error(&expired, 400, "InvalidArgument", "events_expired");
    let message = expired.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("after=2"), "{message}");
    // From the last removed number on, the feed is whole again.
    let data = assert_ok(&api.get(&events_path(app.team_id, "after=2")).await);
    assert_eq!(data, json!({"list": [], "next": 2}));
    api.create_group(app.team_id, "new", 0).await;
    assert_eq!(feed(&app, &api, 2).await[0]["seq"], 3);
}

#[tokio::test]
async fn out_of_range_parameters_are_invalid() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    for query in [
        "limit=0",
        "limit=1001",
        "wait=61",
        "wait=-1",
        "after=-1",
        "after=x",
    ] {
        let answer = api.get(&events_path(app.team_id, query)).await;
        assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
    }
    let data = assert_ok(&api.get(&events_path(app.team_id, "limit=1")).await);
    assert_eq!(data, json!({"list": [], "next": 0}));
}

#[tokio::test]
async fn another_tenant_cannot_read_the_feed() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    api.create_group(app.team_id, "secret", 0).await;
    let other = app.create_org("Other", Plan::Business, 10).await;
    let intruder = app.login(&other.appid, &other.secret).await;
    let answer = intruder.get(&events_path(app.team_id, "")).await;
    assert_error(&answer, 403, "PermissionDenied", "claim_error");
    // Its own feed holds none of the first team's events.
    let own = assert_ok(&intruder.get(&events_path(other.team_id, "")).await);
    assert_eq!(own, json!({"list": [], "next": 0}));
}
