//! Webhooks (§11): subscriptions are validated, capped per team and private to their team;
//! every change reaches the receiver signed as documented, in order and without gaps; a
//! failing receiver is retried, then paused with its last error, and can be resumed and
//! replayed; URLs leading to internal addresses are refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use contactsd::domain::access::Plan;
use contactsd::service::WebhookSettings;

use crate::helpers::{Api, TestApp, assert_error, assert_ok};

fn webhooks_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/webhooks")
}

fn webhook_path(team_id: i64, id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/webhooks/{id}")
}

/// Settings for quick tests: loopback receivers allowed, short back-off, and a timeout well
/// under a hanging receiver's 3 s yet long enough that a loaded test machine's slow answer is
/// not taken for a hang (a delivery timed out and sent again would arrive twice).
fn quick() -> WebhookSettings {
    WebhookSettings {
        allow_private: true,
        timeout: Duration::from_millis(1500),
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..WebhookSettings::default()
    }
}

/// What the receiver answers to one delivery.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Answer only after the sender gave up.
    Hang,
}

/// A delivery as received.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    json: Value,
}

/// A local receiver recording every delivery and answering from a script (then 200, or
/// `otherwise`).
#[derive(Clone)]
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    otherwise: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let receiver = Receiver {
            url: String::new(),
            received: Arc::default(),
            script: Arc::default(),
            otherwise: Arc::new(Mutex::new(Answer::Status(200))),
        };
        let state = receiver.clone();
        let route = axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                state.received.lock().unwrap().push(Received {
                    headers,
                    body,
                    json,
                });
                let next = state.script.lock().unwrap().pop_front();
                let answer = next.unwrap_or(*state.otherwise.lock().unwrap());
                match answer {
                    Answer::Status(status) => StatusCode::from_u16(status).unwrap(),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        StatusCode::OK
                    }
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/hook", route);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{address}/hook"),
            ..receiver
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Wait (up to 10 s) until `done` holds for what was received.
    async fn until(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..500 {
            let received = self.received();
            if done(&received) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "timed out waiting for {what}; received {:?}",
            self.received()
        );
    }
}

/// The `seq` of every event in these deliveries, in order of arrival.
fn seqs(received: &[Received]) -> Vec<i64> {
    received
        .iter()
        .flat_map(|delivery| {
            delivery.json["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|event| event["seq"].as_i64().expect("seq"))
        .collect()
}

async fn create(api: &Api<'_>, team_id: i64, body: Value) -> Value {
    assert_ok(&api.post_json(&webhooks_path(team_id), &body).await)
}

async fn webhook(api: &Api<'_>, team_id: i64, id: i64) -> Value {
    assert_ok(&api.get(&webhook_path(team_id, id)).await)
}

/// Wait (up to 10 s) until the subscription satisfies `done`.
async fn until_webhook(
    api: &Api<'_>,
    team_id: i64,
    id: i64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..500 {
        let data = webhook(api, team_id, id).await;
        if done(&data) {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "timed out; the subscription is {}",
        webhook(api, team_id, id).await
    );
}

/// The recipe of docs/EVENTS.md.
fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("v1={hex}")
}

#[tokio::test]
async fn subscriptions_are_created_read_updated_and_deleted() {
    let app = TestApp::builder()
        .webhooks(WebhookSettings {
            max_per_team: 2,
            ..quick()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let team = app.team_id;

    let created = create(&api, team, json!({"url": "http://127.0.0.1:9/a"})).await;
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["object"], format!("Team_{team}"));
    assert_eq!(created["url"], "http://127.0.0.1:9/a");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["options"],
        json!({"listenedResources": ["group", "member", "sync"]})
    );
    let secret = created["secret"].as_str().expect("a generated secret");
    assert!(secret.len() >= 32 && secret.chars().all(|c| c.is_ascii_alphanumeric()));

    let second = create(
        &api,
        team,
        json!({"url": "https://127.0.0.1/b", "secret": "s3cret-of-sixteen-chars", "is_active": false,
               "options": {"listenedResources": ["member"]}}),
    )
    .await;
    assert_eq!(second["secret"], "s3cret-of-sixteen-chars");
    assert_eq!(second["is_active"], false);
    assert_eq!(second["status"], "paused");
    assert_eq!(second["options"]["listenedResources"], json!(["member"]));

    // The cap.
    let third = api
        .post_json(&webhooks_path(team), &json!({"url": "http://127.0.0.1/c"}))
        .await;
    assert_error(&third, 429, "ResourceExhausted", "webhook_quota_exceeded");

    let list = assert_ok(&api.get(&webhooks_path(team)).await);
    assert_eq!(list["total"], 2);
    assert_eq!(list["list"][0]["id"], id);
    assert_eq!(webhook(&api, team, id).await, created);

    let updated = assert_ok(
        &api.post_json(
            &webhook_path(team, id),
            &json!({"url": "http://127.0.0.1:9/z", "options": {"listenedResources": ["sync", "group"]}}),
        )
        .await,
    );
    assert_eq!(updated["url"], "http://127.0.0.1:9/z");
    assert_eq!(updated["secret"], secret, "unchanged when not given");
    assert_eq!(
        updated["options"]["listenedResources"],
        json!(["group", "sync"])
    );
    assert_eq!(webhook(&api, team, id).await, updated);

    for (body, message) in [
        (json!({}), "url is required"),
        (json!({"url": "ftp://127.0.0.1/x"}), "http or https"),
        (json!({"url": "not a url"}), "absolute"),
        (
            json!({"url": "http://127.0.0.1/", "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": "http://127.0.0.1/", "options": {"listenedResources": ["groups"]}}),
            "listenedResources",
        ),
        (
            json!({"url": "http://127.0.0.1/", "options": {"listenedResources": []}}),
            "listenedResources",
        ),
    ] {
        let answer = api.post_json(&webhook_path(team, id), &body).await;
        if body == json!({}) {
            // An empty update changes nothing.
            assert_ok(&answer);
            let refused = api.post_json(&webhooks_path(team), &body).await;
            assert_error(&refused, 400, "InvalidArgument", "invalid_argument");
            continue;
        }
        assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
        let text = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{body}: {text}");
    }
    // The empty update touched only `updated_at`.
    let mut now = webhook(&api, team, id).await;
    let mut expected = updated.clone();
    now["updated_at"] = Value::Null;
    expected["updated_at"] = Value::Null;
    assert_eq!(now, expected, "nothing changed");

    assert_ok(&api.delete(&webhook_path(team, id)).await);
    for answer in [
        api.get(&webhook_path(team, id)).await,
        api.delete(&webhook_path(team, id)).await,
        api.post_json(&webhook_path(team, id), &json!({"is_active": true}))
            .await,
        api.get(&format!("{}/deliveries", webhook_path(team, id)))
            .await,
    ] {
        assert_error(&answer, 404, "NotFound", "webhook_not_found");
    }
    let list = assert_ok(&api.get(&webhooks_path(team)).await);
    assert_eq!(list["total"], 1);
}

#[tokio::test]
async fn another_team_cannot_see_or_touch_a_subscription() {
    let app = TestApp::builder().webhooks(quick()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let created = create(&api, team, json!({"url": "http://127.0.0.1:9/a"})).await;
    let id = created["id"].as_i64().expect("id");

    let other = app.create_org("Other", Plan::Business, 10).await;
    let intruder = app.login(&other.appid, &other.secret).await;
    let path = webhook_path(team, id);
    for answer in [
        intruder.get(&webhooks_path(team)).await,
        intruder
            .post_json(&webhooks_path(team), &json!({"url": "http://127.0.0.1/x"}))
            .await,
        intruder.get(&path).await,
        intruder
            .post_json(&path, &json!({"url": "http://127.0.0.1/x"}))
            .await,
        intruder.delete(&path).await,
        intruder.get(&format!("{path}/deliveries")).await,
        intruder
            .post_json(&format!("{path}/replay"), &json!({"after": 0}))
            .await,
    ] {
        assert_error(&answer, 403, "PermissionDenied", "claim_error");
    }
    // Under its own team, the id names nothing.
    let own = webhook_path(other.team_id, id);
    assert_error(
        &intruder.get(&own).await,
        404,
        "NotFound",
        "webhook_not_found",
    );
    assert_error(
        &intruder.delete(&own).await,
        404,
        "NotFound",
        "webhook_not_found",
    );
    assert_eq!(webhook(&api, team, id).await, created, "untouched");
}

#[tokio::test]
async fn urls_leading_to_internal_addresses_are_refused() {
    let app = TestApp::builder()
        .webhooks(WebhookSettings {
            allow_private: false,
            ..quick()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let team = app.team_id;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://100.64.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://224.0.0.1/",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
    ] {
        let answer = api
            .post_json(&webhooks_path(team), &json!({"url": url}))
            .await;
        assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
    }
    let list = assert_ok(&api.get(&webhooks_path(team)).await);
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn changes_arrive_signed_in_order_without_gaps() {
    let app = TestApp::builder().webhooks(quick()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let receiver = Receiver::start().await;
    let all = create(&api, team, json!({"url": receiver.url})).await;
    let start = all["acked_seq"].as_i64().expect("cursor");
    let members_only = create(
        &api,
        team,
        json!({"url": receiver.url, "options": {"listenedResources": ["member"]}}),
    )
    .await;

    let mut group = 0;
    for index in 0..12 {
        group = api.create_group(team, &format!("G{index}"), 0).await;
    }
    let last = start + 12;
    let received = receiver
        .until("every event", |got| seqs(got).last() == Some(&last))
        .await;
    assert_eq!(
        seqs(&received),
        ((start + 1)..=last).collect::<Vec<_>>(),
        "in order, without gaps or repeats"
    );
    let secret = all["secret"].as_str().expect("secret");
    for delivery in &received {
        let header = |name: &str| {
            delivery.headers[name]
                .to_str()
                .expect("an ASCII header")
                .to_owned()
        };
        assert_eq!(header("content-type"), "application/json");
        assert!(uuid::Uuid::parse_str(&header("x-contactsd-delivery")).is_ok());
        let timestamp = header("x-contactsd-timestamp");
        let sent: i64 = timestamp.parse().expect("unix seconds");
        assert!((sent - chrono::Utc::now().timestamp()).abs() < 60);
        assert_eq!(
            header("x-contactsd-signature"),
            expected_signature(secret, &timestamp, &delivery.body)
        );
        assert_eq!(delivery.json["webhook_id"], all["id"]);
        assert_eq!(delivery.json["team_id"], team);
    }
    // The events are the feed's.
    let feed = assert_ok(
        &api.get(&format!(
            "/api/contacts/teams/{team}/events?after={start}&limit=100"
        ))
        .await,
    );
    let delivered: Vec<Value> = received
        .iter()
        .flat_map(|delivery| {
            delivery.json["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(Value::from(delivered), feed["list"]);

    // The member-only subscription heard nothing, yet its cursor moved past the group events.
    let id = members_only["id"].as_i64().expect("id");
    let skipped = until_webhook(&api, team, id, |data| data["acked_seq"] == last).await;
    assert_eq!(skipped["status"], "active");
    let log = assert_ok(
        &api.get(&format!("{}/deliveries", webhook_path(team, id)))
            .await,
    );
    assert_eq!(log["total"], 0, "nothing was posted");
    // A delivery is logged with its acknowledgement, after the receiver has answered.
    let all_id = all["id"].as_i64().expect("id");
    until_webhook(&api, team, all_id, |data| data["acked_seq"] == last).await;
    let log = assert_ok(
        &api.get(&format!("{}/deliveries", webhook_path(team, all_id)))
            .await,
    );
    assert_eq!(log["list"][0]["status"], 200);
    assert_eq!(log["list"][0]["last_seq"], last);
    assert!(group > 0);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_then_acknowledged() {
    let app = TestApp::builder().webhooks(quick()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let receiver = Receiver::start().await;
    receiver
        .script
        .lock()
        .unwrap()
        .extend([Answer::Status(500), Answer::Hang]);
    let created = create(&api, team, json!({"url": receiver.url})).await;
    let id = created["id"].as_i64().expect("id");
    let start = created["acked_seq"].as_i64().expect("cursor");
    api.create_group(team, "G", 0).await;

    let received = receiver.until("three attempts", |got| got.len() >= 3).await;
    assert_eq!(
        seqs(&received[..3]),
        vec![start + 1; 3],
        "the same batch each time"
    );
    let ids: std::collections::HashSet<_> = received[..3]
        .iter()
        .map(|delivery| delivery.headers["x-contactsd-delivery"].clone())
        .collect();
    assert_eq!(ids.len(), 3, "each attempt has its own delivery id");
    let data = until_webhook(&api, team, id, |data| data["acked_seq"] == start + 1).await;
    assert_eq!(data["status"], "active");
    assert_eq!(data["last_error"], Value::Null);

    let log = assert_ok(
        &api.get(&format!("{}/deliveries", webhook_path(team, id)))
            .await,
    );
    let list = log["list"].as_array().expect("list");
    assert_eq!(list.len(), 3, "{log}");
    assert_eq!(list[0]["status"], 200);
    assert_eq!(list[0]["error"], Value::Null);
    assert_eq!(list[1]["status"], Value::Null);
    assert_eq!(list[1]["error"], "the receiver did not answer in time");
    assert_eq!(list[2]["status"], 500);
    assert_eq!(list[2]["error"], "the receiver answered HTTP 500");
    for attempt in list {
        assert_eq!(attempt["first_seq"], start + 1);
        assert_eq!(attempt["events"], 1);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        receiver.received().len(),
        3,
        "no delivery after the acknowledgement"
    );

    let text = crate::metrics::scrape(&app.address).await;
    let deliveries = |outcome| {
        crate::metrics::value(
            &text,
            "contactsd_webhook_deliveries_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(deliveries("failed"), 2.0, "{text}");
    assert_eq!(deliveries("acknowledged"), 1.0, "{text}");
    let lags = crate::metrics::value(&text, "contactsd_webhook_delivery_lag_seconds_count", &[]);
    assert_eq!(lags, 1.0, "{text}");
}

#[tokio::test]
async fn a_receiver_failing_past_the_budget_is_paused_then_resumed_and_replayed() {
    let app = TestApp::builder()
        .webhooks(WebhookSettings {
            retry_budget: Duration::from_millis(400),
            ..quick()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let team = app.team_id;
    let receiver = Receiver::start().await;
    *receiver.otherwise.lock().unwrap() = Answer::Status(503);
    let created = create(&api, team, json!({"url": receiver.url})).await;
    let id = created["id"].as_i64().expect("id");
    let start = created["acked_seq"].as_i64().expect("cursor");
    api.create_group(team, "A", 0).await;

    let paused = until_webhook(&api, team, id, |data| data["is_active"] == false).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["last_error"], "the receiver answered HTTP 503");
    assert_eq!(paused["acked_seq"], start);
    let attempts = receiver.received().len();
    assert!(attempts >= 2, "retried before pausing: {attempts}");
    api.create_group(team, "B", 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        attempts,
        "a paused subscription gets nothing"
    );

    // Resume: both events arrive.
    *receiver.otherwise.lock().unwrap() = Answer::Status(204);
    let resumed = assert_ok(
        &api.post_json(&webhook_path(team, id), &json!({"is_active": true}))
            .await,
    );
    assert_eq!(resumed["is_active"], true);
    let received = receiver
        .until("both events", |got| seqs(got).last() == Some(&(start + 2)))
        .await;
    let delivered = seqs(&received[attempts..]);
    assert_eq!(delivered, vec![start + 1, start + 2]);
    let data = until_webhook(&api, team, id, |data| data["acked_seq"] == start + 2).await;
    assert_eq!(data["status"], "active");

    // Replay from the first event: delivered again, in order.
    let before = receiver.received().len();
    let replayed = assert_ok(
        &api.post_json(
            &format!("{}/replay", webhook_path(team, id)),
            &json!({"after": start + 1}),
        )
        .await,
    );
    assert_eq!(replayed["acked_seq"], start + 1);
    let received = receiver
        .until("the replay", |got| {
            got.len() > before && seqs(&got[before..]).last() == Some(&(start + 2))
        })
        .await;
    assert_eq!(seqs(&received[before..]), vec![start + 2]);

    for (after, error_type) in [(start + 3, "invalid_argument"), (-1, "invalid_argument")] {
        let answer = api
            .post_json(
                &format!("{}/replay", webhook_path(team, id)),
                &json!({"after": after}),
            )
            .await;
        assert_error(&answer, 400, "InvalidArgument", error_type);
    }
}

#[tokio::test]
async fn the_metrics_show_the_undelivered_events_and_paused_subscriptions() {
    let app = TestApp::builder().webhooks(quick()).spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    // A paused subscription is not counted as behind, however many events it missed.
    create(
        &api,
        team,
        json!({"url": "http://127.0.0.1:9/paused", "is_active": false}),
    )
    .await;
    api.create_group(team, "Before", 0).await;
    // Nothing listens on port 9: every delivery fails and the events stay undelivered.
    create(&api, team, json!({"url": "http://127.0.0.1:9/down"})).await;
    for name in ["Sales", "Support", "Legal"] {
        api.create_group(team, name, 0).await;
    }
    let text = crate::metrics::scrape(&app.address).await;
    let gauge = |name: &str| crate::metrics::value(&text, name, &[]);
    assert_eq!(gauge("contactsd_webhook_backlog_events"), 3.0, "{text}");
    assert_eq!(gauge("contactsd_webhook_subscriptions_behind"), 1.0);
    assert_eq!(gauge("contactsd_webhook_subscriptions_paused"), 1.0);
}

#[tokio::test]
async fn a_subscription_whose_events_expired_is_paused_until_replayed_past_them() {
    let app = TestApp::builder()
        .webhooks(quick())
        .events(contactsd::service::EventSettings {
            retention: Duration::ZERO,
            ..contactsd::service::EventSettings::default()
        })
        .spawn()
        .await;
    let api = app.team_api().await;
    let team = app.team_id;
    let receiver = Receiver::start().await;
    let created = create(&api, team, json!({"url": receiver.url, "is_active": false})).await;
    let id = created["id"].as_i64().expect("id");
    api.create_group(team, "A", 0).await;
    api.create_group(team, "B", 0).await;
    // Stored times are whole seconds: the events are past a zero retention a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.service.prune_events().await.expect("pruned"), 2);

    // Resumed, it cannot be brought up to date: paused again, saying what to do, nothing sent.
    assert_ok(
        &api.post_json(&webhook_path(team, id), &json!({"is_active": true}))
            .await,
    );
    let paused = until_webhook(&api, team, id, |data| data["status"] == "paused").await;
    let error = paused["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("events_expired"), "{error}");
    assert!(error.contains("after=2"), "{error}");
    assert!(receiver.received().is_empty());

    // Replayed from the feed's end and resumed, it gets the next change.
    assert_ok(
        &api.post_json(
            &format!("{}/replay", webhook_path(team, id)),
            &json!({"after": 2}),
        )
        .await,
    );
    assert_ok(
        &api.post_json(&webhook_path(team, id), &json!({"is_active": true}))
            .await,
    );
    api.create_group(team, "C", 0).await;
    let received = receiver
        .until("the new event", |got| seqs(got).last() == Some(&3))
        .await;
    assert_eq!(seqs(&received), vec![3]);
}
