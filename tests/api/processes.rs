//! Several `contactsd` processes on one database behave as one service. The real binary is
//! started twice (on SQLite by default, on PostgreSQL when `CONTACTSD_TEST_DATABASE_URL` is
//! set), after `contactsd admin create-org` made an org on the shared database.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::TestDatabase;

const BINARY: &str = env!("CARGO_BIN_EXE_contactsd");

/// One `contactsd serve` process, killed when dropped.
struct Server {
    base: String,
    _child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

async fn start(database: &str) -> Server {
    let port = free_port();
    let child = Command::new(BINARY)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--rate-limit",
            "0",
            "--token-rate-limit",
            "0",
            "--db",
            database,
        ])
        .env("CONTACTSD_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start contactsd serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(answer) = client.get(format!("{base}/healthz")).send().await
            && answer.status().is_success()
        {
            return Server {
                base,
                _child: child,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("contactsd serve on port {port} did not become healthy");
}

async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let answer = request.send().await.expect("an answer");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON envelope"))
}

#[tokio::test]
async fn two_processes_share_tokens_and_the_directory() {
    let database = TestDatabase::fresh().await;
    let created = Command::new(BINARY)
        .args([
            "admin",
            "create-org",
            "--name",
            "Acme",
            "--db",
            &database.url,
        ])
        .env("CONTACTSD_LOG", "warn")
        .output()
        .await
        .expect("run admin create-org");
    assert!(
        created.status.success(),
        "admin create-org failed: {created:?}"
    );
    let org: Value = serde_json::from_slice(&created.stdout).expect("one JSON object on stdout");
    let (appid, secret, team) = (
        org["appid"].as_str().expect("appid").to_owned(),
        org["secret"].as_str().expect("secret").to_owned(),
        org["team_id"].as_i64().expect("team_id"),
    );
    let (first, second) = (start(&database.url).await, start(&database.url).await);
    let client = reqwest::Client::new();
    let token_on = |server: &Server| {
        client.get(format!(
            "{}/api/oauth2/access_token?appid={appid}&secret={secret}&grant_type=client_credential",
            server.base
        ))
    };
    let groups_on = |server: &Server, token: &str| {
        format!(
            "{}/api/contacts/teams/{team}/groups?appid={appid}&access_token={token}",
            server.base
        )
    };

    let (status, body) = call(token_on(&first)).await;
    assert_eq!(status, 200, "{body}");
    let old = body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    // A token issued by one process works on the other.
    let (status, _) = call(client.get(groups_on(&second, &old))).await;
    assert_eq!(status, 200);
    // A newer token from the second process ends the first one on both.
    let (_, body) = call(token_on(&second)).await;
    let new = body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    for server in [&first, &second] {
        let (status, body) = call(client.get(groups_on(server, &old))).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (401, Some("invalid_access_token"))
        );
        let (status, _) = call(client.get(groups_on(server, &new))).await;
        assert_eq!(status, 200);
    }
    // A group created on one is listed by the other at once.
    let (status, body) = call(
        client
            .post(groups_on(&first, &new))
            .json(&json!({"name": "Sales"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(client.get(groups_on(&second, &new))).await;
    assert_eq!(body["data"]["total"], 1);
    assert_eq!(body["data"]["list"][0]["full_name"], "Acme/Sales");
}
