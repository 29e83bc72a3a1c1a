//! Several `contactsd` processes on one database behave as one service. The real binary is
//! started twice (on SQLite by default, on PostgreSQL when `CONTACTSD_TEST_DATABASE_URL` is
//! set), after `contactsd admin create-org` made an org on the shared database.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::TestDatabase;

pub const BINARY: &str = env!("CARGO_BIN_EXE_contactsd");

/// One `contactsd serve` process, killed when dropped.
pub struct Server {
    pub base: String,
    /// Everything the process logged (at `info`).
    pub log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
    child: Child,
}

impl Server {
    /// The process id, to read its figures from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

async fn start(database: &str) -> Server {
    start_with(database, &[], &[]).await
}

/// `contactsd serve` on a free port with extra `args` and environment variables `env`.
pub async fn start_with(database: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log_dir = tempfile::tempdir().expect("temp dir");
    let log = log_dir.path().join("server.log");
    let log_file = std::fs::File::create(&log).expect("log file");
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
        .args(args)
        .envs(env.iter().copied())
        .env("CONTACTSD_LOG", "info")
        .env("CONTACTSD_HTTP_STATUS", "mapped")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .expect("start contactsd serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::http_client();
    for _ in 0..600 {
        if let Ok(answer) = client.get(format!("{base}/healthz")).send().await
            && answer.status().is_success()
        {
            return Server {
                base,
                log,
                _log_dir: log_dir,
                child,
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
    let client = crate::helpers::http_client();
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
    // A newer token from the second process ends the first one on both at once, though the
    // first process read it within its read cache's time (1 s by default).
    let (_, body) = call(token_on(&second)).await;
    let new = body["data"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    for server in [&first, &second] {
        let (status, body) = call(client.get(groups_on(server, &old))).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (401, Some("invalid_token"))
        );
        let (status, _) = call(client.get(groups_on(server, &new))).await;
        assert_eq!(status, 200);
    }
    // A group created on one is listed by the other within the read cache's time.
    let (status, body) = call(
        client
            .post(groups_on(&first, &new))
            .json(&json!({"name": "Sales"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(DEFAULT_READ_CACHE).await;
    let (_, body) = call(client.get(groups_on(&second, &new))).await;
    assert_eq!(body["data"]["total"], 1);
    assert_eq!(body["data"]["list"][0]["full_name"], "Acme/Sales");
    // A secret rotated with the command line ends the current token on both at once.
    let (rotated, _, stderr) = run(
        &database.url,
        &["admin", "rotate-secret", "--appid", appid.as_str()],
    )
    .await;
    assert!(rotated, "{stderr}");
    for server in [&first, &second] {
        let (status, body) = call(client.get(groups_on(server, &new))).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (401, Some("invalid_token"))
        );
    }

    // The logs name every request but never a secret or a token.
    for server in [&first, &second] {
        let log = std::fs::read_to_string(&server.log).expect("read the log");
        assert!(
            log.contains("/api/contacts/teams/{team_id}/groups"),
            "{log}"
        );
        for secret in [&secret, &old, &new] {
            assert!(
                !log.contains(secret.as_str()),
                "a secret or token is in the log"
            );
        }
        // Each line starts with its time: UTC, to the microsecond, and now.
        let lines: Vec<&str> = log.lines().filter(|line| line.contains(" INFO ")).collect();
        assert!(lines.len() > 3, "{log}");
        for line in lines {
            let stamp = line.split(' ').next().unwrap_or_default();
            let time = chrono::DateTime::parse_from_rfc3339(stamp)
                .unwrap_or_else(|error| panic!("{error}: {line}"));
            assert!(stamp.len() == 27 && stamp.ends_with('Z'), "{line}");
            let age = chrono::Utc::now().signed_duration_since(time);
            assert!(age.num_seconds().abs() < 300, "{line}");
        }
    }
}

/// A little more than the default `--read-cache-ms` of `contactsd serve`.
const DEFAULT_READ_CACHE: std::time::Duration = std::time::Duration::from_millis(1100);

/// Run the binary with `args` on `database`; its exit status and stdout parsed as JSON.
pub async fn run(database: &str, args: &[&str]) -> (bool, Value, String) {
    let output = Command::new(BINARY)
        .args(args)
        .args(["--db", database])
        .env("CONTACTSD_LOG", "warn")
        .output()
        .await
        .expect("run contactsd");
    let stdout: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), stdout, stderr)
}

#[tokio::test]
async fn the_sync_command_reads_csv_and_json_and_admin_check_finds_nothing_wrong() {
    let database = TestDatabase::fresh().await;
    let (ok, org, _) = run(&database.url, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok);
    let team = org["team_id"].as_i64().expect("team_id").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("snapshot.csv");
    std::fs::write(
        &csv,
        "kind,remote_id,name,parent_remote_id,order,openid,nickname,avatar,role,group_remote_ids\n\
         group,eu,EU,sales,,,,,,\n\
         group,sales,Sales,,5,,,,,\n\
         member,,,,,u1,Ann,,2,eu|sales\n\
         member,,,,,u2,Bob,,,\n",
    )
    .expect("write CSV");
    let csv = csv.to_string_lossy().into_owned();
    let (ok, report, stderr) =
        run(&database.url, &["sync", "--team-id", &team, "--file", &csv]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        (
            report["groups_created"].as_u64(),
            report["members_added"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let (ok, report, _) = run(&database.url, &["sync", "--team-id", &team, "--file", &csv]).await;
    assert!(ok);
    assert_eq!(report["members_unchanged"], 2);

    // The audit trail shows what the first sync did, and pages by `--after`.
    let (ok, trail, stderr) = run(&database.url, &["admin", "events", "--team-id", &team]).await;
    assert!(ok, "{stderr}");
    let kinds: Vec<&str> = trail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|event| event["type"].as_str())
        .collect();
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
    assert_eq!(trail["events"][4]["actor"]["kind"], "sync");
    assert_eq!(trail["next"], 5);
    let args = [
        "admin",
        "events",
        "--team-id",
        &team,
        "--after",
        "3",
        "--limit",
        "1",
    ];
    let (ok, page, _) = run(&database.url, &args).await;
    assert!(ok);
    assert_eq!(page["events"][0]["seq"], 4);
    assert_eq!(page["next"], 4);
    let (ok, _, stderr) = run(&database.url, &["admin", "events", "--team-id", "999"]).await;
    assert!(!ok);
    assert!(stderr.contains("no team 999"), "{stderr}");

    // A bad snapshot changes nothing and says why.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"groups":[{"remote_id":"x","name":"X","parent_remote_id":"x"}]}"#,
    )
    .expect("write JSON");
    let bad = bad.to_string_lossy().into_owned();
    let (ok, _, stderr) = run(&database.url, &["sync", "--team-id", &team, "--file", &bad]).await;
    assert!(!ok);
    assert!(stderr.contains("group_cycle"), "{stderr}");

    let (ok, check, stderr) = run(&database.url, &["admin", "check"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(check["teams_checked"], 1);
    assert_eq!(
        (check["groups"].as_u64(), check["members"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(check["violations"], serde_json::json!([]));
}

#[tokio::test]
async fn admin_check_reports_a_corrupted_directory() {
    let database = TestDatabase::fresh().await;
    let (ok, org, _) = run(&database.url, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok);
    let team = org["team_id"].as_i64().expect("team_id");
    // Two groups that are each other's parent: what no write of the store makes.
    crate::store::execute_unchecked(
        &database.url,
        &format!(
            "INSERT INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
             is_valid, created_at, upd_at) VALUES (1, {team}, 2, 1, '', 'loop', 0, TRUE, 0, 0), \
             (2, {team}, 1, 1, '', 'loop', 0, TRUE, 0, 0)"
        ),
    )
    .await;
    let (ok, _, stderr) = run(&database.url, &["admin", "check"]).await;
    assert!(!ok, "a cycle must fail the check");
    assert!(stderr.contains("cycle"), "{stderr}");
}

#[tokio::test]
async fn admin_check_reports_rows_that_name_something_missing() {
    let database = TestDatabase::fresh().await;
    let (ok, org, _) = run(&database.url, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok);
    let team = org["team_id"].as_i64().expect("team_id");
    let (ok, check, stderr) = run(&database.url, &["admin", "check"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(check["dangling_references"], json!([]));

    // A membership of a user who is not a member, in a group that does not exist: what the
    // foreign keys would refuse (PostgreSQL has none on this table; SQLite's are switched off
    // on this connection).
    let corrupt =
        "INSERT INTO memberships (team_id, user_id, group_id) VALUES ($1, 424242, 424242)";
    if database.url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&database.url)
            .await
            .expect("connect");
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut connection)
            .await
            .expect("pragma");
        sqlx::query(corrupt)
            .bind(team)
            .execute(&mut connection)
            .await
            .expect("corrupt");
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(&database.url)
            .await
            .expect("connect");
        sqlx::query(corrupt)
            .bind(team)
            .execute(&mut connection)
            .await
            .expect("corrupt");
    }
    let (ok, _, stderr) = run(&database.url, &["admin", "check"]).await;
    assert!(!ok, "a dangling membership must fail the check");
    assert!(
        stderr.contains(&format!(
            "team {team}: 1 memberships of a user who is not a member"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "team {team}: 1 memberships in a group outside the team"
        )),
        "{stderr}"
    );
}

/// An org made with `admin create-org`: its team app's appid and secret, and its team.
async fn create_org(database: &str) -> (String, String, i64) {
    let (ok, org, stderr) = run(database, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok, "{stderr}");
    (
        org["appid"].as_str().expect("appid").to_owned(),
        org["secret"].as_str().expect("secret").to_owned(),
        org["team_id"].as_i64().expect("team_id"),
    )
}

/// `?appid=…&access_token=…` with a fresh token from `server`.
async fn credentials(server: &Server, appid: &str, secret: &str) -> String {
    let (_, body) = call(crate::helpers::http_client().get(format!(
        "{}/api/oauth2/access_token?appid={appid}&secret={secret}&grant_type=client_credential",
        server.base
    )))
    .await;
    assert_eq!(body["code"], "OK", "{body}");
    let token = body["data"]["access_token"].as_str().expect("token");
    format!("appid={appid}&access_token={token}")
}

#[tokio::test]
async fn sigterm_lets_the_requests_in_flight_finish() {
    let database = TestDatabase::fresh().await;
    let (appid, secret, team) = create_org(&database.url).await;
    let mut server = start(&database.url).await;
    let query = credentials(&server, &appid, &secret).await;
    // A sync of many new members: long enough to be in flight when the signal comes.
    const MEMBERS: usize = 40_000;
    let body: String = (0..MEMBERS)
        .map(|n| format!("{{\"kind\":\"member\",\"openid\":\"m-{n}\",\"nickname\":\"M {n}\"}}\n"))
        .collect();
    let request = crate::helpers::http_client()
        .post(format!(
            "{}/api/contacts/teams/{team}/sync?{query}",
            server.base
        ))
        .header("content-type", "application/x-ndjson")
        .body(body);
    let in_flight = tokio::spawn(call(request));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the sync ended before the signal: the test needs a longer one"
    );
    let pid = server.child.id().expect("the server runs");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success());

    let (_, answer) = in_flight.await.expect("the request task");
    assert_eq!(answer["code"], "OK", "{answer}");
    assert_eq!(answer["data"]["members_added"], MEMBERS);
    let exit = tokio::time::timeout(Duration::from_secs(60), server.child.wait())
        .await
        .expect("the server exits after its requests are done")
        .expect("wait for the server");
    assert!(exit.success(), "{exit:?}");
    // What it answered is what it stored.
    let (ok, check, stderr) = run(&database.url, &["admin", "check"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(check["members"], MEMBERS);
}

#[tokio::test]
async fn the_sqlite_synchronous_setting_takes_full_or_normal_only() {
    let database = TestDatabase::fresh().await;
    for value in ["full", "normal"] {
        let (ok, org, stderr) = run(
            &database.url,
            &[
                "--sqlite-synchronous",
                value,
                "admin",
                "create-org",
                "--name",
                "Acme",
            ],
        )
        .await;
        assert!(ok, "{value}: {stderr}");
        assert!(org["team_id"].is_i64(), "{org}");
    }
    let (ok, _, stderr) = run(
        &database.url,
        &["--sqlite-synchronous", "off", "admin", "check"],
    )
    .await;
    assert!(!ok, "an unknown level is refused");
    assert!(stderr.contains("--sqlite-synchronous"), "{stderr}");
}

#[tokio::test]
async fn a_flag_wins_over_its_environment_variable() {
    let database = TestDatabase::fresh().await;
    let (appid, secret, team) = create_org(&database.url).await;
    let elsewhere = free_port();
    let listen_env = format!("127.0.0.1:{elsewhere}");
    // Each of these variables names something else than its flag; the flags must win (a
    // server that took the environment's database or address would not start where expected).
    let server = start_with(
        &database.url,
        &["--time-offset", "+05:00", "--max-group-depth", "2"],
        &[
            ("CONTACTSD_LISTEN", &listen_env),
            (
                "CONTACTSD_DATABASE_URL",
                "sqlite:///nonexistent/folder/contactsd.db",
            ),
            ("CONTACTSD_TIME_OFFSET", "-03:00"),
            ("CONTACTSD_MAX_GROUP_DEPTH", "15"),
        ],
    )
    .await;
    let client = crate::helpers::http_client();
    assert!(
        client
            .get(format!("http://{listen_env}/healthz"))
            .send()
            .await
            .is_err(),
        "nothing listens on the environment's address"
    );
    let query = credentials(&server, &appid, &secret).await;
    let groups = format!("{}/api/contacts/teams/{team}/groups?{query}", server.base);
    let mut parent = 0;
    let mut answers = Vec::new();
    for name in ["One", "Two", "Three"] {
        let (_, body) = call(
            client
                .post(&groups)
                .json(&json!({"name": name, "parent_id": parent})),
        )
        .await;
        parent = body["data"]["group_id"].as_i64().unwrap_or(parent);
        answers.push(body);
    }
    assert_eq!(answers[0]["code"], "OK", "{}", answers[0]);
    assert_eq!(answers[1]["code"], "OK", "{}", answers[1]);
    assert_eq!(
        answers[2]["error"]["type"], "group_too_deep",
        "the flag's depth of 2, not the environment's 15: {}",
        answers[2]
    );
    let (_, body) = call(client.get(&groups)).await;
    let created = body["data"]["list"][0]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    assert!(created.ends_with("+05:00"), "{created}");
}

#[tokio::test]
async fn healthz_answers_503_when_the_database_is_gone() {
    let database = TestDatabase::fresh().await;
    let Ok(server_url) = std::env::var(crate::helpers::DATABASE_URL_VAR) else {
        // The embedded SQLite file is held open by the process itself: nothing outside it can
        // take the database away, so this runs in the PostgreSQL pass only.
        return;
    };
    let server = start(&database.url).await;
    let health = format!("{}/healthz", server.base);
    let (status, body) = call(crate::helpers::http_client().get(&health)).await;
    assert_eq!((status, &body["code"]), (200, &json!("OK")), "{body}");

    // The database disappears under the running server (its connections are cut).
    let name = database.url.rsplit('/').next().expect("a database name");
    let name = name.split('?').next().unwrap_or(name);
    {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(server_url.trim())
            .await
            .expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .expect("drop the database");
    }
    let (status, body) = call(crate::helpers::http_client().get(&health)).await;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["code"], "OK", "{body}");
}

#[tokio::test]
async fn admin_set_quota_changes_an_orgs_quota_for_the_servers() {
    let database = TestDatabase::fresh().await;
    let (ok, org, _) = run(&database.url, &["admin", "create-org", "--name", "Acme"]).await;
    assert!(ok);
    let org_id = org["org_id"].as_i64().expect("org_id");
    let (appid, secret, team) = (
        org["appid"].as_str().expect("appid"),
        org["secret"].as_str().expect("secret"),
        org["team_id"].as_i64().expect("team_id"),
    );
    let (ok, quota, stderr) = run(
        &database.url,
        &[
            "admin",
            "set-quota",
            "--org-id",
            &org_id.to_string(),
            "--max-groups",
            "1",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        quota,
        json!({"org_id": org_id, "max_groups": 1, "max_members": null})
    );
    let (ok, _, stderr) = run(
        &database.url,
        &["admin", "set-quota", "--org-id", "1", "--max-groups", "1"],
    )
    .await;
    assert!(!ok && stderr.contains("no org 1"), "{stderr}");

    let server = start(&database.url).await;
    let query = credentials(&server, appid, secret).await;
    let groups = format!("{}/api/contacts/teams/{team}/groups?{query}", server.base);
    let client = crate::helpers::http_client();
    let (_, body) = call(client.post(&groups).json(&json!({"name": "One"}))).await;
    assert_eq!(body["code"], "OK", "{body}");
    let (_, body) = call(client.post(&groups).json(&json!({"name": "Two"}))).await;
    assert_eq!(body["code"], "ResourceExhausted", "{body}");
    assert_eq!(body["error"]["type"], "group_quota_exceeded");
}

#[tokio::test]
async fn a_scim_token_revoked_with_the_command_line_is_refused_at_once() {
    let database = TestDatabase::fresh().await;
    let (ok, org, stderr) = run(
        &database.url,
        &[
            "admin",
            "create-org",
            "--name",
            "Acme",
            "--plan",
            "business",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let team = org["team_id"].as_i64().expect("team_id").to_string();
    let (ok, token, stderr) = run(
        &database.url,
        &["admin", "scim-token", "create", "--team-id", &team],
    )
    .await;
    assert!(ok, "{stderr}");
    let server = start(&database.url).await;
    let client = crate::helpers::http_client();
    let users = format!("{}/scim/v2/Users", server.base);
    let bearer = format!("Bearer {}", token["token"].as_str().expect("token"));
    // Twice: the second answer may come from what the server remembers of the token.
    for _ in 0..2 {
        let (status, body) = call(client.get(&users).header("Authorization", &bearer)).await;
        assert_eq!((status, &body["totalResults"]), (200, &json!(0)), "{body}");
    }
    let id = token["id"].as_i64().expect("id").to_string();
    let (ok, _, stderr) = run(
        &database.url,
        &["admin", "scim-token", "revoke", "--id", &id],
    )
    .await;
    assert!(ok, "{stderr}");
    let (status, body) = call(client.get(&users).header("Authorization", &bearer)).await;
    assert_eq!((status, &body["status"]), (401, &json!("401")), "{body}");
}
