//! `GET /metrics`: the Prometheus exposition, what moves its counters, what its labels may hold,
//! `--metrics off`, and the separate metrics listener of the real binary.

use std::collections::BTreeSet;

use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, assert_error, assert_ok, groups_path};
use crate::processes::{free_port, start_with};
use crate::scim::Scim;

/// The exposition, checked to be the Prometheus text format.
pub(crate) async fn scrape(base: &str) -> String {
    let answer = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    answer.text().await.expect("text")
}

/// The value of the series `name` whose labels include every one of `labels` (0 when none is
/// there yet); summed over the series that match.
pub(crate) fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(key, wanted)| rest.contains(&format!("{key}=\"{wanted}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Every label value of the exposition.
fn label_values(text: &str) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((_, labels)) = line.split_once('{') else {
            continue;
        };
        let labels = labels.rsplit_once('}').map_or(labels, |(inside, _)| inside);
        for pair in labels.split("\",") {
            if let Some((_, value)) = pair.split_once("=\"") {
                values.insert(value.trim_end_matches('"').to_owned());
            }
        }
    }
    values
}

const GROUPS_ROUTE: &str = "/api/contacts/teams/{team_id}/groups";

#[tokio::test]
async fn the_exposition_names_every_family_with_its_type() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    api.create_group(app.team_id, "Sales", 0).await;
    api.list_groups(app.team_id, "").await;
    let text = scrape(&app.address).await;
    for (name, kind) in [
        ("contactsd_http_requests_total", "counter"),
        ("contactsd_http_request_duration_seconds", "histogram"),
        ("contactsd_connections_refused_total", "counter"),
        ("contactsd_token_calls_total", "counter"),
        ("contactsd_directory_cache_hits_total", "counter"),
        ("contactsd_directory_cache_loads_total", "counter"),
        (
            "contactsd_directory_cache_load_duration_seconds",
            "histogram",
        ),
        ("contactsd_directory_cache_evictions_total", "counter"),
        ("contactsd_directory_cache_bytes", "gauge"),
        ("contactsd_directory_cache_entries", "gauge"),
        ("contactsd_write_commit_duration_seconds", "histogram"),
        ("contactsd_write_commit_change_sets", "histogram"),
        ("contactsd_write_commit_conflicts_total", "counter"),
        ("contactsd_sync_snapshot_groups", "histogram"),
        ("contactsd_sync_snapshot_members", "histogram"),
        ("contactsd_event_waiters", "gauge"),
        ("contactsd_db_pool_connections", "gauge"),
        ("contactsd_webhook_backlog_events", "gauge"),
        ("contactsd_webhook_subscriptions_behind", "gauge"),
        ("contactsd_webhook_subscriptions_paused", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "contactsd_token_calls_total",
            &[("outcome", "issued")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "contactsd_directory_cache_entries", &[]), 1.0);
    assert!(value(&text, "contactsd_directory_cache_bytes", &[]) > 0.0);
    assert!(value(&text, "contactsd_directory_cache_loads_total", &[]) >= 1.0);
    assert!(value(&text, "contactsd_directory_cache_hits_total", &[]) >= 1.0);
    assert_eq!(
        value(&text, "contactsd_write_commit_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "contactsd_write_commit_change_sets_bucket",
            &[("le", "1")]
        ),
        1.0
    );
    // The pool is sampled at scrape time: at least one connection is open.
    assert!(value(&text, "contactsd_db_pool_connections", &[]) >= 1.0);
}

#[tokio::test]
async fn a_request_moves_its_counter_under_the_route_template() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let listing = [
        ("method", "GET"),
        ("route", GROUPS_ROUTE),
        ("code", "OK"),
        ("status", "200"),
    ];
    let before = scrape(&app.address).await;
    for _ in 0..3 {
        api.list_groups(app.team_id, "").await;
    }
    let after = scrape(&app.address).await;
    let counted = value(&after, "contactsd_http_requests_total", &listing)
        - value(&before, "contactsd_http_requests_total", &listing);
    assert_eq!(counted, 3.0, "{after}");
    let timed = [("method", "GET"), ("route", GROUPS_ROUTE)];
    let observed = value(
        &after,
        "contactsd_http_request_duration_seconds_count",
        &timed,
    ) - value(
        &before,
        "contactsd_http_request_duration_seconds_count",
        &timed,
    );
    assert_eq!(observed, 3.0);
    // A refusal counts under its envelope code.
    let refused = api
        .get(&format!("{}?page=0", groups_path(app.team_id)))
        .await;
    assert_error(&refused, 400, "InvalidArgument", "invalid_argument");
    let text = scrape(&app.address).await;
    assert_eq!(
        value(
            &text,
            "contactsd_http_requests_total",
            &[("route", GROUPS_ROUTE), ("code", "InvalidArgument")]
        ),
        1.0
    );
}

#[tokio::test]
async fn labels_name_no_team_app_or_raw_path() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let group = api.create_group(app.team_id, "Sales", 0).await;
    api.group(app.team_id, group).await;
    let unknown = app.get("/api/contacts/teams/987654321/nothing-here").await;
    assert_error(&unknown, 404, "NoRoute", "no_route");
    let bad_secret = app
        .token_response(&app.appid, "wrong", "client_credential")
        .await;
    assert_eq!(bad_secret.body["error"]["type"], "invalid_credential");
    let text = scrape(&app.address).await;
    assert!(!text.contains("987654321"), "a raw path was recorded");
    assert!(!text.contains(&app.appid), "an appid was recorded");
    for value in label_values(&text) {
        assert!(
            !value.contains(&format!("/{}", app.team_id)),
            "a team id in the label value {value:?}"
        );
        assert!(
            !value.contains(&format!("/{group}")),
            "a group id in {value:?}"
        );
    }
    assert_eq!(
        value(
            &text,
            "contactsd_http_requests_total",
            &[("route", "unmatched"), ("code", "NoRoute")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "contactsd_token_calls_total",
            &[("outcome", "invalid_credential")]
        ),
        1.0
    );
}

#[tokio::test]
async fn scim_requests_are_counted_by_route_template() {
    let app = TestApp::spawn().await;
    let scim = Scim::new(&app, app.team_id).await;
    let created = scim
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(scim.get(&format!("/Groups/{id}")).await.status, 200);
    let text = scrape(&app.address).await;
    let one = |method: &'static str, route: &'static str, status: &'static str| {
        value(
            &text,
            "contactsd_http_requests_total",
            &[
                ("method", method),
                ("route", route),
                ("code", "none"),
                ("status", status),
            ],
        )
    };
    assert_eq!(one("POST", "/scim/v2/Groups", "201"), 1.0, "{text}");
    assert_eq!(one("GET", "/scim/v2/Groups/{id}", "200"), 1.0, "{text}");
    for value in label_values(&text) {
        assert!(
            !value.ends_with(&format!("/{id}")) && !value.contains(&format!("/{id}/")),
            "a SCIM id in the label value {value:?}"
        );
    }
}

#[tokio::test]
async fn syncs_and_quota_refusals_are_counted() {
    let app = TestApp::builder()
        .quotas(contactsd::service::QuotaSettings {
            max_groups: 1,
            ..Default::default()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let snapshot = json!({
        "groups": [{"remote_id": "a", "name": "A", "parent_remote_id": ""}],
        "members": [{"openid": "ann", "nickname": "Ann", "group_remote_ids": ["a"]}],
    });
    let sync = format!("/api/contacts/teams/{}/sync", app.team_id);
    assert_ok(&api.post_json(&sync, &snapshot).await);
    let refused = api
        .try_create_group(app.team_id, &json!({"name": "B"}))
        .await;
    assert_eq!(refused.body["error"]["type"], "group_quota_exceeded");
    let text = scrape(&app.address).await;
    assert_eq!(
        value(&text, "contactsd_syncs_total", &[("outcome", "applied")]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "contactsd_sync_duration_seconds_count",
            &[("outcome", "applied")]
        ),
        1.0
    );
    assert_eq!(
        value(&text, "contactsd_sync_snapshot_members_sum", &[]),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "contactsd_quota_refusals_total",
            &[("quota", "groups")]
        ),
        1.0
    );
}

#[tokio::test]
async fn rate_limit_refusals_are_counted_by_limit() {
    let app = TestApp::builder().rate_limit(1).spawn().await;
    let api = app.team_api().await;
    let mut refused = 0;
    for _ in 0..3 {
        let answer = api.get(&groups_path(app.team_id)).await;
        if answer.body["error"]["type"] == "request_rate_limited" {
            refused += 1;
        }
    }
    assert!(refused >= 1, "one call per second allows no three in a row");
    let text = scrape(&app.address).await;
    assert_eq!(
        value(
            &text,
            "contactsd_rate_limit_refusals_total",
            &[("limit", "calls")]
        ),
        f64::from(refused)
    );
}

#[tokio::test]
async fn with_metrics_off_the_route_is_unknown() {
    let app = TestApp::builder().metrics(false).spawn().await;
    let answer = app.get("/metrics").await;
    assert_error(&answer, 404, "NoRoute", "no_route");
}

#[tokio::test]
async fn the_metrics_listener_serves_them_and_the_api_listener_does_not() {
    let database = TestDatabase::fresh().await;
    let address = format!("127.0.0.1:{}", free_port());
    let server = start_with(&database.url, &["--metrics-listen", &address], &[]).await;
    let text = scrape(&format!("http://{address}")).await;
    assert!(
        text.contains("# TYPE contactsd_http_requests_total counter"),
        "{text}"
    );
    let client = reqwest::Client::new();
    for url in [
        format!("{}/metrics", server.base),
        format!("http://{address}/healthz"),
    ] {
        let answer = client.get(&url).send().await.expect("an answer");
        assert_eq!(answer.status(), 404, "{url}");
        let body: serde_json::Value = answer.json().await.expect("an envelope");
        assert_eq!(body["error"]["type"], "no_route", "{url}");
    }
}
