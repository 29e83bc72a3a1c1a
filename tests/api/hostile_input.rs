//! Hostile input in every string a client controls: path segments, query parameters and JSON
//! fields get SQL metacharacters, NUL bytes, invalid UTF-8, very long values and Unicode that
//! normalizes differently. Each answer is a clean 4xx in the envelope or a correct result (a
//! stored value reads back byte for byte), never a 5xx; the directory works afterwards.

use serde_json::{Value, json};

use crate::helpers::*;

/// Hostile values that are valid UTF-8 (invalid UTF-8 is sent separately, as raw bytes); the
/// long ones are `long` bytes.
fn hostile_values(long: usize) -> Vec<String> {
    vec![
        "' OR 1=1 --".to_owned(),
        "\"; DROP TABLE groups; --".to_owned(),
        "%".to_owned(),
        "_".to_owned(),
        "\\".to_owned(),
        "a\\'b".to_owned(),
        "\0".to_owned(),
        "a\0b".to_owned(),
        "x".repeat(long),
        "9".repeat(long),
        "-9223372036854775809".to_owned(),
        "e\u{301}".to_owned(),
        "\u{e9}".to_owned(),
        "\u{ff11}\u{ff12}\u{ff13}".to_owned(),
        "\u{202e}abc".to_owned(),
        "\u{1f469}\u{200d}\u{1f4bb}".to_owned(),
        "\u{200b}".to_owned(),
        "[\"a\",".to_owned(),
        "{}".to_owned(),
    ]
}

/// Short form of a value for failure messages.
fn shown(value: &str) -> String {
    let short: String = value.chars().take(24).collect();
    format!("{short:?} ({} bytes)", value.len())
}

fn assert_clean(response: &ApiResponse, what: &str) {
    assert!(
        response.status < 500,
        "{what}: answered {} {:?}",
        response.status,
        response.body
    );
    if response.status >= 400 {
        assert_eq!(response.body["data"], json!({}), "{what}");
    }
}

#[tokio::test]
async fn hostile_path_segments_and_query_values_get_clean_answers() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let group = api.create_group(team, "Sales", 0).await;
    let user = api.register_user("someone").await;
    api.add_member_ok(team, group, user, None).await;

    // URLs stay under the 64 KiB request line the HTTP layer reads (see the next test).
    for value in hostile_values(30_000) {
        let segment = encode_segment(&value);
        let query = encode(&value);
        let what = shown(&value);
        let paths = [
            format!("/api/contacts/teams/{segment}/groups"),
            format!("/api/contacts/teams/{team}/groups/{segment}"),
            format!("/api/contacts/teams/{team}/groups/{segment}/users"),
            format!("/api/contacts/teams/{team}/groups/{group}/users/{segment}"),
            format!("/api/sso/users/{segment}"),
            format!("/api/orgs/{segment}"),
        ];
        for path in &paths {
            assert_clean(&api.get(path).await, &format!("GET {path} with {what}"));
        }
        assert_clean(
            &api.delete(&format!(
                "/api/contacts/teams/{team}/groups/{group}/users/{segment}"
            ))
            .await,
            &format!("DELETE member {what}"),
        );
        for name in [
            "page",
            "per_page",
            "parent_id",
            "remote_ids",
            "remote_ids[]",
            "recursive",
            "include_invalid",
            "updated_since",
            "keyword",
        ] {
            let response = api
                .get(&format!("{}?{name}={query}", groups_path(team)))
                .await;
            assert_clean(&response, &format!("list groups {name}={what}"));
        }
        for name in ["page", "per_page", "recursive", "roles"] {
            let response = api
                .get(&format!("{}?{name}={query}", members_path(team, group)))
                .await;
            assert_clean(&response, &format!("list members {name}={what}"));
        }
        // Credentials themselves.
        for url in [
            format!(
                "/api/oauth2/access_token?appid={query}&secret={query}&grant_type=client_credential"
            ),
            format!(
                "/api/oauth2/access_token?appid={}&secret={}&grant_type={query}",
                app.appid, app.secret
            ),
            format!("{}?appid={query}&access_token={query}", groups_path(team)),
        ] {
            let response = app.get(&url).await;
            assert_clean(&response, &format!("credentials {what}"));
            assert_ne!(response.status, 200, "{what} must not authenticate");
        }
    }

    // Invalid UTF-8 and raw NUL, percent-encoded in the path and in the query.
    for raw in ["%FF%FE", "%C0%AF", "%00", "%ED%A0%80"] {
        for path in [
            format!("/api/contacts/teams/{team}/groups/{raw}"),
            format!("/api/sso/users/{raw}"),
            format!("{}?remote_ids={raw}", groups_path(team)),
            format!("{}?keyword={raw}", groups_path(team)),
        ] {
            assert_clean(&api.get(&path).await, &format!("GET {path}"));
        }
    }

    // The directory is intact.
    let listing = api.list_groups(team, "").await;
    assert_eq!(listing.ints("id"), vec![group]);
    assert_eq!(
        api.members(team, group, "").await.ints("user_id"),
        vec![user]
    );
}

#[tokio::test]
async fn a_request_line_over_64_kib_is_refused_by_the_http_layer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .expect("connect");
    let request = format!(
        "GET /api/contacts/teams/{}/groups HTTP/1.1\r\nhost: x\r\n\r\n",
        "x".repeat(70_000)
    );
    // The server may answer and close before the whole line is written.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    // Past the 64 KiB head limit before the line even ends: 431 (a line too long to be a
    // URI that fits in the limit would be 414).
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 414"),
        "{answer:.200}"
    );
    // The server goes on serving.
    let api = app.team_api().await;
    assert_eq!(api.list_groups(app.team_id, "").await.total, 0);
}

#[tokio::test]
async fn hostile_json_fields_are_refused_cleanly_or_stored_exactly() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let group = api.create_group(team, "Sales", 0).await;
    let user = api.register_user("someone").await;
    api.add_member_ok(team, group, user, None).await;
    let platform = app.create_platform_app("Partner").await;
    let platform_api = app.login(&platform.appid, &platform.secret).await;

    for value in hostile_values(100_000) {
        let what = shown(&value);
        // Group names and remote ids: stored exactly when accepted.
        for field in ["name", "remote_id"] {
            let mut body = json!({"name": format!("G{}", value.len()), "parent_id": 0});
            body[field] = json!(value);
            let response = api.try_create_group(team, &body).await;
            assert_clean(&response, &format!("create group {field}={what}"));
            if response.status == 200 {
                let id = assert_ok(&response)["group_id"].as_i64().expect("group_id");
                let stored = api.group(team, id).await;
                assert_eq!(stored[field], json!(value), "{field} {what} stored exactly");
            }
        }
        let response = api
            .post_json(&group_path(team, group), &json!({"name": value}))
            .await;
        assert_clean(&response, &format!("rename {what}"));
        // Ids given as strings.
        for body in [
            json!({"name": "X", "parent_id": value}),
            json!({"name": "X", "order": value}),
        ] {
            let response = api.try_create_group(team, &body).await;
            assert_clean(&response, &format!("create group {body:.40}"));
            assert_ne!(response.status, 200, "{what} is not an integer");
        }
        for body in [
            json!({"to_id": value}),
            json!({"from_id": value, "to_id": 0}),
        ] {
            assert_clean(
                &api.post_json(&group_path(team, group), &body).await,
                &format!("move {what}"),
            );
        }
        assert_clean(
            &api.post_json(&delete_groups_path(team), &json!({"group_ids": [value]}))
                .await,
            &format!("batch delete {what}"),
        );
        // Members.
        for body in [json!({"role": value}), json!({"nickname": value})] {
            assert_clean(
                &api.add_member(team, group, user, &body).await,
                &format!("add member {what}"),
            );
        }
        let response = api
            .post_json(
                &member_update_path(team, user),
                &json!({"nickname": value, "avatar": value}),
            )
            .await;
        assert_clean(&response, &format!("update member {what}"));
        // Users: accepted values read back exactly.
        let response = api
            .try_register(&json!({"openid": value, "nickname": value, "avatar": ""}))
            .await;
        assert_clean(&response, &format!("register {what}"));
        if response.status == 200 {
            let registered = assert_ok(&response)["user_id"].clone();
            let found = api
                .get(&format!("/api/sso/users/{}", encode_segment(&value)))
                .await;
            assert_eq!(assert_ok(&found)["user_id"], registered, "openid {what}");
        }
        // Orgs (platform app).
        assert_clean(
            &platform_api
                .post_json("/api/orgs", &json!({"name": value, "user_id": user}))
                .await,
            &format!("create org {what}"),
        );
        // Sync rows.
        for snapshot in [
            json!({"groups": [{"remote_id": value, "name": "N", "parent_remote_id": ""}]}),
            json!({"groups": [{"remote_id": "r", "name": value, "parent_remote_id": value}]}),
            json!({"members": [{"openid": value, "nickname": value, "group_remote_ids": [value]}]}),
        ] {
            let response = api
                .post_json(
                    &format!("/api/contacts/teams/{team}/sync?dry_run=true"),
                    &snapshot,
                )
                .await;
            assert!(
                response.status < 500,
                "sync {what}: {} {:?}",
                response.status,
                response.body
            );
        }
    }

    // Names that differ only in Unicode normalization are different names (no normalization).
    let composed = api.create_group(team, "Caf\u{e9}", 0).await;
    let decomposed = api.create_group(team, "Cafe\u{301}", 0).await;
    assert_ne!(composed, decomposed);
    assert_eq!(api.group(team, composed).await["name"], "Caf\u{e9}");
    assert_eq!(api.group(team, decomposed).await["name"], "Cafe\u{301}");

    assert_eq!(
        api.members(team, group, "").await.ints("user_id"),
        vec![user]
    );
}

#[tokio::test]
async fn bodies_that_are_not_utf8_or_not_json_get_invalid_argument() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let team = app.team_id;
    let bodies: [&[u8]; 6] = [
        b"{\"name\": \"\xff\xfe\"}",
        b"\xc0\xaf",
        b"{\"name\": \"a\0b\"}",
        b"{\"name\": ",
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
        b"{\"name\": \"\\ud800\"}",
    ];
    for body in bodies {
        for path in [
            groups_path(team),
            format!("/api/contacts/teams/{team}/sync"),
            "/api/sso/users".to_owned(),
        ] {
            let response = app
                .send(
                    app.client
                        .post(app.url(&api.authed(&path)))
                        .header("content-type", "application/json")
                        .body(body.to_vec()),
                )
                .await;
            assert_error(&response, 400, "InvalidArgument", "invalid_argument");
        }
    }
    assert_eq!(api.list_groups(team, "").await.total, 0);
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_harm() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let response = api
        .post_raw(&groups_path(app.team_id), format!("{{\"name\": {deep}}}"))
        .await;
    assert_clean(&response, "deep nesting");
    assert_ne!(response.status, 200);
    let _: Value = assert_ok(&api.get(&groups_path(app.team_id)).await);
}

#[tokio::test]
async fn a_json_body_that_is_not_an_object_gets_invalid_argument() {
    let app = TestApp::spawn().await;
    let api = app.team_api().await;
    api.register("u-1", "Ada", "").await;
    // Without the check, serde reads a struct's fields from an array in order: both fields
    // null, an update that changes nothing, answered `OK`.
    for body in ["[null, null]", "[\"Ada L.\"]", "7", "\"x\""] {
        let response = app
            .send(
                app.client
                    .post(app.url(&api.authed("/api/sso/users/u-1")))
                    .header("content-type", "application/json")
                    .body(body),
            )
            .await;
        assert_error(&response, 400, "InvalidArgument", "invalid_argument");
    }
}
