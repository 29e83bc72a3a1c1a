//! One hostile client must not hurt another tenant: failed token calls are limited per client
//! address (never per appid, so a stranger cannot lock an app out), and an unknown appid and a
//! wrong secret are answered alike; directories evicted from the cache come back equal;
//! quotas refuse writes past a team's size limits; a write that cannot get the database's write
//! path in time is refused as retryable and leaves nothing behind, and a small team stays readable
//! while its sync waits for that path.

use std::net::{IpAddr, Ipv4Addr};

use contactsd::domain::access::Plan;
use serde_json::Value;

use crate::helpers::{
    Api, ApiResponse, TestApp, assert_error, assert_ok, groups_path, members_path,
};

/// A client whose connections come from `127.0.0.x` (Linux routes all of 127/8 to loopback).
fn client_from(last: u8) -> reqwest::Client {
    crate::helpers::http_client_builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .build()
        .expect("a client bound to a loopback address")
}

/// The token call, sent by `client` (the envelope is checked as for every answer).
async fn token_call(
    app: &mut TestApp,
    client: &reqwest::Client,
    appid: &str,
    secret: &str,
) -> ApiResponse {
    let own = std::mem::replace(&mut app.client, client.clone());
    let response = app.token_response(appid, secret, "client_credential").await;
    app.client = own;
    response
}

fn error_type(response: &ApiResponse) -> String {
    response.body["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn wrong_secrets_from_one_address_neither_lock_the_owner_out_nor_reveal_appids() {
    // 10 failures a minute: one more allowed every 6 s, far longer than the test's calls take.
    let mut app = TestApp::builder()
        .token_rate_limit(60)
        .token_failure_limit(10)
        .spawn()
        .await;
    let appid = app.appid.clone();
    let secret = app.secret.clone();
    let attacker = client_from(2);
    let prober = client_from(3);

    let mut wrong_secret = Vec::new();
    for _ in 0..100 {
        let response = token_call(&mut app, &attacker, &appid, "not-the-secret").await;
        wrong_secret.push(error_type(&response));
    }
    // Past its failures, an address is refused even with the right secret: the answer does not
    // tell a right secret from a wrong one.
    let response = token_call(&mut app, &attacker, &appid, &secret).await;
    assert_eq!(error_type(&response), "request_rate_limited");
    assert!(response.header("retry-after").is_some());

    let mut unknown_appid = Vec::new();
    for _ in 0..100 {
        let response = token_call(&mut app, &prober, "tpidnosuchap", "not-the-secret").await;
        unknown_appid.push(error_type(&response));
    }
    // The attacker is limited after the configured number of failures.
    let mut expected = vec!["invalid_credential".to_owned(); 10];
    expected.extend(vec!["request_rate_limited".to_owned(); 90]);
    assert_eq!(wrong_secret, expected);
    // An appid that exists and one that does not get the very same answers.
    assert_eq!(unknown_appid, expected);

    // The owner, from its own address, gets tokens as usual (the appid's own limit, 60 a
    // minute, was not touched by the failures).
    let owner = client_from(1);
    for _ in 0..3 {
        let response = token_call(&mut app, &owner, &appid, &secret).await;
        assert_ok(&response);
    }
    let api = app.team_api().await;
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

/// Everything a client can read of a directory: groups in both orders, members flat and
/// recursive, one group.
async fn everything(api: &Api<'_>, team: i64, top: i64) -> Vec<Value> {
    let mut answers = Vec::new();
    for path in [
        format!("{}?per_page=1000", groups_path(team)),
        format!("{}?parent_id={top}&per_page=1000", groups_path(team)),
        format!("{}?include_invalid=true&per_page=1000", groups_path(team)),
        format!("{}?per_page=1000", members_path(team, 0)),
        format!("{}?recursive=true&per_page=1000", members_path(team, top)),
        format!("{}/{top}", groups_path(team)),
    ] {
        answers.push(assert_ok(&api.get(&path).await));
    }
    answers
}

#[tokio::test]
async fn a_directory_dropped_from_the_cache_comes_back_equal() {
    // A budget of one byte: loading one directory drops every other.
    let app = TestApp::builder().cache_memory(1).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let top = api.create_group(team, "Sales", 0).await;
    let mut groups = vec![top];
    for n in 0..20 {
        groups.push(
            api.create_group(team, &format!("Team {n}"), groups[n / 3])
                .await,
        );
    }
    let doomed = api.create_group(team, "Old", 0).await;
    assert_ok(&api.delete_groups(team, &[doomed]).await);
    for n in 0..30 {
        let user = api.register_user(&format!("user-{n}")).await;
        api.add_member_ok(
            team,
            groups[n % groups.len()],
            user,
            Some(2 + (n as i64 % 3)),
        )
        .await;
    }
    let before = everything(&api, team, top).await;
    let own = app.service.cached_directory_bytes();
    assert!(own > 0);

    // Another tenant's read loads its directory and drops this one.
    let other = app.create_org("Other", Plan::Business, 10).await;
    let other_api = app.login(&other.appid, &other.secret).await;
    other_api.create_group(other.team_id, "Elsewhere", 0).await;
    let others = app.service.cached_directory_bytes();
    assert!(
        others < own,
        "only the other directory is cached: {others} < {own}"
    );

    // Read back from the database: the same answers, and this copy alone is cached again.
    assert_eq!(everything(&api, team, top).await, before);
    assert_eq!(app.service.cached_directory_bytes(), own);

    // Writes after a reload decide on the reloaded copy.
    other_api.create_group(other.team_id, "More", 0).await;
    let response = api
        .post_json(
            &groups_path(team),
            &serde_json::json!({"name": "New", "parent_id": groups[20]}),
        )
        .await;
    assert_ok(&response);
    let listed = api.list_groups(team, "per_page=1000").await;
    assert_eq!(listed.total, 22);
}

#[tokio::test]
async fn a_write_through_one_process_is_seen_at_once_by_writes_through_another() {
    // Records trusted for a minute: only the write path can make the second process current.
    let app = TestApp::builder()
        .read_cache(std::time::Duration::from_secs(60))
        .spawn()
        .await;
    let replica = app.replica().await;
    let api = app.team_api().await;
    let there = Api::new(&replica, &api.appid, &api.token);
    let team = app.team_id;
    let old = there.create_group(team, "Old", 0).await;
    assert_eq!(there.list_groups(team, "").await.total, 1);

    let parent = api.create_group(team, "Parent", 0).await;
    // The other process has the directory and the team record from before: its writes that
    // name the new group succeed all the same.
    let child = there.create_group(team, "Child", parent).await;
    let moved = there
        .update_group(
            team,
            old,
            &serde_json::json!({"name": "Old", "to_id": parent}),
        )
        .await;
    assert_ok(&moved);
    let listed = there
        .list_groups(team, &format!("parent_id={parent}"))
        .await;
    assert_eq!(listed.ints("id"), vec![old, child]);
}

/// An app whose writes wait at most a second for the database's write path; SQLite only (one
/// writer: PostgreSQL writers of different teams do not wait on each other).
async fn app_waiting_a_second() -> Option<TestApp> {
    let app = TestApp::builder()
        .write_wait(std::time::Duration::from_secs(1))
        .spawn()
        .await;
    app.database_url().starts_with("sqlite:").then_some(app)
}

/// The database file's write lock, held by a second connection: it stands for another
/// tenant's long sync.
async fn hold_write_lock(app: &TestApp) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut holder = sqlx::SqliteConnection::connect(app.database_url())
        .await
        .expect("a second connection to the database file");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .expect("the write lock");
    holder
}

async fn release_write_lock(mut holder: sqlx::SqliteConnection) {
    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("release the write lock");
}

#[tokio::test]
async fn a_write_kept_from_the_database_is_refused_as_retryable_and_stores_nothing() {
    let Some(app) = app_waiting_a_second().await else {
        return;
    };
    let api = app.team_api().await;
    let team = app.team_id;
    let holder = hold_write_lock(&app).await;

    let started = std::time::Instant::now();
    let refused = api
        .try_create_group(team, &serde_json::json!({"name": "Sales"}))
        .await;
    assert_error(&refused, 429, "ResourceExhausted", "request_rate_limited");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));

    release_write_lock(holder).await;
    // Nothing of the refused write was stored, and the retry succeeds.
    assert_eq!(api.list_groups(team, "").await.total, 0);
    assert_ok(
        &api.try_create_group(team, &serde_json::json!({"name": "Sales"}))
            .await,
    );
    assert_eq!(api.list_groups(team, "").await.total, 1);
}

#[tokio::test]
async fn writes_queued_behind_a_held_write_path_are_given_up_after_the_wait() {
    let Some(app) = app_waiting_a_second().await else {
        return;
    };
    let mut orgs = Vec::new();
    for n in 0..6 {
        orgs.push(
            app.create_org(&format!("Org {n}"), Plan::Business, 10)
                .await,
        );
    }
    let mut apis = Vec::new();
    for org in &orgs {
        apis.push((org.team_id, app.login(&org.appid, &org.secret).await));
    }
    for (team, api) in &apis {
        assert_eq!(api.list_groups(*team, "").await.total, 0);
    }
    let holder = hold_write_lock(&app).await;

    // Six teams write at once: the first job waits for the lock, the others queue behind it in
    // the committing task. Each writer gives up after the wait instead of waiting for the ones
    // before it (which would take about a second each).
    let started = std::time::Instant::now();
    let body = serde_json::json!({"name": "Sales"});
    let answers = futures_util::future::join_all(
        apis.iter()
            .map(|(team, api)| api.try_create_group(*team, &body)),
    )
    .await;
    let elapsed = started.elapsed();
    for answer in &answers {
        assert_error(answer, 429, "ResourceExhausted", "request_rate_limited");
    }
    assert!(elapsed < std::time::Duration::from_secs(4), "{elapsed:?}");

    release_write_lock(holder).await;
    // None of the jobs given up is written later.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for (team, api) in &apis {
        assert_eq!(api.list_groups(*team, "").await.total, 0);
    }
}

#[tokio::test]
async fn a_small_team_is_read_while_its_sync_waits_for_the_write_path() {
    let Some(app) = app_waiting_a_second().await else {
        return;
    };
    let api = app.team_api().await;
    let team = app.team_id;
    for name in ["Sales", "Support"] {
        api.create_group(team, name, 0).await;
    }
    let holder = hold_write_lock(&app).await;

    // The sync holds the team's gate while it waits for the write path (a second here); the
    // team's readers are answered from the old directory meanwhile.
    let synced = std::sync::atomic::AtomicBool::new(false);
    let body =
        serde_json::json!({"mode": "upsert", "groups": [{"remote_id": "ops", "name": "Ops"}]});
    let path = format!("/api/contacts/teams/{team}/sync");
    let syncing = async {
        let answer = api.post_json(&path, &body).await;
        synced.store(true, std::sync::atomic::Ordering::SeqCst);
        answer
    };
    let reading = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let names = api.list_groups(team, "per_page=100").await.strings("name");
        (names, synced.load(std::sync::atomic::Ordering::SeqCst))
    };
    let (answer, (names, sync_ended_first)) = tokio::join!(syncing, reading);
    assert!(!sync_ended_first, "the read waited for the sync to end");
    assert_eq!(names, ["Sales", "Support"]);
    assert_error(&answer, 429, "ResourceExhausted", "request_rate_limited");

    release_write_lock(holder).await;
    let names = api.list_groups(team, "per_page=100").await.strings("name");
    assert_eq!(names, ["Sales", "Support"]);
}
