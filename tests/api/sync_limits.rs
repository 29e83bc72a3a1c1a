//! A hostile sync cannot hurt the server or another tenant: a snapshot is refused as soon as it
//! crosses one of its limits (so a compression bomb costs the server nothing), a team runs one
//! sync at a time, and a body that trickles in is cut by the total time limit.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Api, TestApp, TestDatabase, assert_error, assert_ok};
use crate::processes::{self, Server};

fn sync_path(team_id: i64) -> String {
    format!("/api/contacts/teams/{team_id}/sync")
}

/// `prefix`, then `unit` repeated up to `size` bytes in all, then `suffix`, gzip-compressed.
fn gzip_bomb(prefix: &str, unit: &str, suffix: &str, size: usize) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(prefix.as_bytes()).expect("gzip");
    let chunk = unit.repeat(1024 * 1024 / unit.len());
    let mut written = prefix.len();
    while written + chunk.len() + suffix.len() <= size {
        encoder.write_all(chunk.as_bytes()).expect("gzip");
        written += chunk.len();
    }
    encoder.write_all(suffix.as_bytes()).expect("gzip");
    encoder.finish().expect("gzip")
}

/// The peak resident size of a process so far, in bytes (Linux only).
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A `contactsd serve` process with an org, and a token of its team app.
struct Served {
    server: Server,
    team_id: i64,
    query: String,
    _database: TestDatabase,
}

async fn serve(settings: &[&str]) -> Served {
    let database = TestDatabase::fresh().await;
    let (ok, org, stderr) =
        processes::run(&database.url, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok, "{stderr}");
    let server = processes::start_with(&database.url, settings, &[]).await;
    let (appid, secret) = (
        org["appid"].as_str().expect("appid"),
        org["secret"].as_str().expect("secret"),
    );
    let token: Value = reqwest::get(format!(
        "{}/api/oauth2/access_token?appid={appid}&secret={secret}&grant_type=client_credential",
        server.base
    ))
    .await
    .expect("token call")
    .json()
    .await
    .expect("JSON");
    let token = token["data"]["access_token"].as_str().expect("a token");
    Served {
        team_id: org["team_id"].as_i64().expect("team_id"),
        query: format!("appid={appid}&access_token={token}"),
        server,
        _database: database,
    }
}

impl Served {
    async fn sync(&self, body: Vec<u8>, gzip: bool) -> Value {
        let mut request = crate::helpers::http_client()
            .post(format!(
                "{}{}?{}",
                self.server.base,
                sync_path(self.team_id),
                self.query
            ))
            .header("content-type", "application/json")
            .body(body);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let answer = request.send().await.expect("an answer");
        answer.json().await.expect("a JSON envelope")
    }
}

#[tokio::test]
async fn a_compression_bomb_is_refused_before_it_costs_memory() {
    if peak_rss(std::process::id()).is_none() {
        return; // No /proc: nothing to measure.
    }
    let served = serve(&[]).await;
    // Warm up: a small sync, so that the baseline includes what any sync allocates.
    let small = json!({"groups": [{"remote_id": "a", "name": "A"}],
                       "members": [{"openid": "u", "group_remote_ids": ["a"]}]});
    let answer = served.sync(small.to_string().into_bytes(), false).await;
    assert_eq!(answer["code"], "OK", "{answer}");
    let before = peak_rss(served.server.pid()).expect("the server's VmHWM");

    let size = 128 * 1024 * 1024;
    // One member naming 32 M groups, and one 128 MiB remote id: 128 MiB each once inflated.
    let list = gzip_bomb(
        r#"{"members":[{"openid":"u","group_remote_ids":["x""#,
        r#","x""#,
        "]}]}",
        size,
    );
    let string = gzip_bomb(
        r#"{"groups":[{"name":"A","remote_id":""#,
        "a",
        r#""}]}"#,
        size,
    );
    assert!(list.len() < 200 * 1024 && string.len() < 200 * 1024);
    for (bomb, says) in [
        (
            list,
            "members[0].group_remote_ids holds more than 1000 remote ids",
        ),
        (string, "longer than 16384 bytes"),
    ] {
        let answer = served.sync(bomb, true).await;
        assert_eq!(
            (&answer["code"], &answer["error"]["type"]),
            (&json!("InvalidArgument"), &json!("invalid_argument")),
            "{answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    let after = peak_rss(served.server.pid()).expect("the server's VmHWM");
    let grown = after.saturating_sub(before);
    // The figure docs/HARDENING.md quotes (`-- --nocapture` shows it).
    eprintln!(
        "two 128 MiB bombs: peak RSS {} KiB before, {} KiB after",
        before / 1024,
        after / 1024
    );
    assert!(
        grown < 64 * 1024 * 1024,
        "the server's peak grew by {} MiB",
        grown / (1024 * 1024)
    );
}

#[tokio::test]
async fn an_over_long_field_or_list_is_refused_while_streaming_and_named() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let path = sync_path(app.team_id);
    let long = "n".repeat(65);
    let ids: Vec<String> = (0..1001).map(|i| format!("g{i}")).collect();
    for (body, says) in [
        (
            json!({"groups": [{"remote_id": "a", "name": "A"}, {"remote_id": "b", "name": long}]}),
            "groups[1].name is longer than 64 characters",
        ),
        (
            json!({"groups": [{"remote_id": long, "name": "A"}]}),
            "groups[0].remote_id is longer than 64 characters",
        ),
        (
            json!({"members": [{"openid": "o".repeat(129)}]}),
            "members[0].openid is longer than 128 characters",
        ),
        (
            json!({"members": [{"openid": "u", "group_remote_ids": ids}]}),
            "members[0].group_remote_ids holds more than 1000 remote ids",
        ),
    ] {
        let answer = api.post_json(&path, &body).await;
        assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
    }
    let ndjson = format!(
        "{}\n{}\n",
        json!({"kind": "member", "openid": "u"}),
        json!({"kind": "member", "openid": "v", "avatar": "a".repeat(256)})
    );
    let answer = app
        .send(
            app.client
                .post(app.url(&api.authed(&path)))
                .header("content-type", "application/x-ndjson")
                .body(ndjson),
        )
        .await;
    assert_error(&answer, 400, "InvalidArgument", "invalid_argument");
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("avatar is longer than 255 characters at line 2"),
        "{message}"
    );
    // Nothing was applied, and nobody registered.
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
    assert_error(
        &api.get("/api/sso/users/u").await,
        404,
        "NotFound",
        "user_not_found",
    );
}

/// A sync request whose head and first `body` bytes are sent, announcing `length` bytes.
async fn start_upload(address: &str, path_and_query: &str, length: usize, body: &str) -> TcpStream {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{body}"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// The envelope of the answer on `stream` (read until the server closes or it is complete).
async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin)) -> Value {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = stream.read(&mut buffer).await.unwrap_or(0);
        received.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&received);
        if let Some((_, body)) = text.split_once("\r\n\r\n")
            && let Ok(envelope) = serde_json::from_str::<Value>(body)
        {
            return envelope;
        }
        assert!(read > 0, "the connection closed without an answer: {text}");
    }
}

#[tokio::test]
async fn a_team_runs_one_sync_at_a_time_and_others_are_not_held_up() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let path = sync_path(app.team_id);
    let body = json!({"groups": [{"remote_id": "a", "name": "A"}]}).to_string();
    let (first_part, rest) = body.split_at(10);
    let mut first = start_upload(&app.address, &api.authed(&path), body.len(), first_part).await;

    // Once the first sync holds its slot, a second one of the same team is refused at once.
    // (A probe that gets in before the first takes its slot refuses the first instead: then
    // the first starts again.)
    let started = Instant::now();
    let refused = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = api.post_json(&path, &json!({"groups": []})).await;
        if answer.status != 200 {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second sync was never refused"
        );
        let mut byte = [0u8; 1];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(10), first.peek(&mut byte)).await
        {
            assert!(read.is_ok(), "{read:?}");
            first = start_upload(&app.address, &api.authed(&path), body.len(), first_part).await;
        }
    };
    assert_error(&refused, 429, "ResourceExhausted", "sync_in_progress");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Another team syncs meanwhile.
    let other = app
        .create_org("Other", contactsd::domain::access::Plan::Business, 10)
        .await;
    let other_api: Api<'_> = app.login(&other.appid, &other.secret).await;
    assert_ok(
        &other_api
            .post_json(
                &sync_path(other.team_id),
                &json!({"groups": [{"remote_id": "o", "name": "O"}]}),
            )
            .await,
    );

    // The first sync ends normally, and gives its slot back.
    first.write_all(rest.as_bytes()).await.expect("send");
    let answer = read_answer(&mut first).await;
    assert_eq!(answer["code"], "OK", "{answer}");
    assert_eq!(answer["data"]["groups_created"], 1);
    let again = api
        .post_json(&path, &json!({"groups": [{"remote_id": "a", "name": "A"}]}))
        .await;
    assert_eq!(assert_ok(&again)["groups_unchanged"], 1);
}

#[tokio::test]
async fn a_trickling_body_is_cut_by_the_total_time_limit() {
    let served = serve(&["--sync-body-timeout", "2"]).await;
    let path = format!("{}?{}", sync_path(served.team_id), served.query);
    let upload = start_upload(&served.server.base, &path, 1_000_000, "{\"groups\":[").await;
    let started = Instant::now();
    let (mut reader, mut writer) = upload.into_split();
    // One byte every 200 ms: never a pause the per-chunk timeout would notice.
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), read_answer(&mut reader))
        .await
        .expect("the body was cut within 20 s");
    trickle.abort();
    assert_eq!(
        (&answer["code"], &answer["error"]["type"]),
        (&json!("InvalidArgument"), &json!("invalid_argument")),
        "{answer}"
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not arrive in time"), "{message}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(10),
        "cut after {elapsed:?}"
    );
}
