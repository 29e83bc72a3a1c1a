//! Fuzzing of everything a request carries: random query strings through the query parser, and
//! random requests (any route of the API description, method, ids, query and body: JSON of
//! every body type, forms, or raw bytes) through the whole router over a real SQLite database,
//! with a valid token most of the time so that requests get past authentication. No input may
//! panic, answer 5xx, or break the envelope.
//!
//! `cargo test --lib fuzzing` runs a short form; `scripts/fuzz` the long one (release build,
//! `PROPTEST_CASES` raised to a million per target).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::Request;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::extract::QueryParams;
use super::{HttpSettings, router};
use crate::domain::access::Plan;
use crate::domain::values::{OrgName, TeamId};
use crate::service::{Service, ServiceSettings};

/// Cases per target unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The router over a fresh database with one org, and a valid token of its team app.
struct Target {
    runtime: tokio::runtime::Runtime,
    router: Router,
    team_id: TeamId,
    appid: String,
    token: String,
    _directory: tempfile::TempDir,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", directory.path().join("fuzz.db").display());
    let (router, team_id, appid, token) = runtime.block_on(async {
        let store = crate::store::open(&url, &crate::store::StoreSettings::default())
            .await
            .expect("the database");
        let settings = ServiceSettings {
            rate_limit: 0,
            token_rate_limit: 0,
            ..ServiceSettings::default()
        };
        let service = Arc::new(Service::new(store, settings));
        let (org, app) = service
            .create_org_with_app(&OrgName::parse("Fuzz").expect("a name"), Plan::Flagship, 10)
            .await
            .expect("an org");
        let token = service
            .issue_token(&app.appid, &app.secret, "client_credential", None)
            .await
            .expect("a token");
        // Mapped statuses: a 5xx is then visible as such (the default mode answers HTTP 200).
        let settings = HttpSettings {
            http_status: super::HttpStatus::Mapped,
            ..HttpSettings::default()
        };
        let router = router(service, settings);
        (router, org.team_id, app.appid, token.access_token)
    });
    Target {
        runtime,
        router,
        team_id,
        appid,
        token,
        _directory: directory,
    }
});

/// Route templates of the API's operations, from its live description, with `{}` where an id
/// goes (the operations endpoints aside: they read no input).
static ROUTES: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    let document = super::openapi::document();
    let mut routes = Vec::new();
    for (path, item) in &document.paths.paths {
        let template = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "{}"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
        ] {
            let Some(operation) = operation else { continue };
            let tags = operation.tags.as_deref().unwrap_or_default();
            if !tags.iter().any(|tag| tag == "operations") {
                routes.push((method, template.clone()));
            }
        }
    }
    assert!(
        routes.len() >= 16,
        "too few operations described: {routes:?}"
    );
    routes
});

/// Query parameter names the API reads, plus a stranger (not the feed's `wait`, which holds a
/// call for up to a minute by design).
const PARAMETERS: [&str; 20] = [
    "page",
    "per_page",
    "parent_id",
    "recursive",
    "remote_ids",
    "remote_ids[]",
    "include_invalid",
    "updated_since",
    "keyword",
    "roles",
    "mode",
    "dry_run",
    "allow_mass_delete",
    "grant_type",
    "after",
    "limit",
    "secret",
    "appid",
    "access_token",
    "other",
];

/// Body field names of every body type.
const FIELDS: [&str; 20] = [
    "name",
    "user_id",
    "openid",
    "nickname",
    "avatar",
    "parent_id",
    "remote_id",
    "order",
    "from_id",
    "to_id",
    "group_ids",
    "role",
    "groups",
    "members",
    "parent_remote_id",
    "group_remote_ids",
    "mode",
    "dry_run",
    "allow_mass_delete",
    "kind",
];

/// Short strings that are mostly values the API understands, sometimes not.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        (0_i64..40).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("true".to_owned()),
        Just("replace".to_owned()),
        Just(String::new()),
        "[a-z0-9,\\[\\]\"%]{0,12}",
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0_i64..40).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((prop::sample::select(&FIELDS[..]), inner), 0..6).prop_map(
                |pairs| {
                    Value::Object(
                        pairs
                            .into_iter()
                            .map(|(key, value)| (key.to_owned(), value))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

/// A body: JSON built from the API's field names, NDJSON lines, or raw bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        json_value().prop_map(|value| value.to_string().into_bytes()),
        prop::collection::vec(json_value(), 0..4).prop_map(|lines| {
            lines
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
        form().prop_map(String::into_bytes),
    ]
}

/// `name=value` pairs as a query string or form body, the values percent-encoded (the names
/// are sent as they are).
fn encoded<N: std::fmt::Display>(pairs: Vec<(N, String)>) -> String {
    pairs
        .iter()
        .map(|(name, value)| {
            let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            format!("{name}={value}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A form body: known fields (some in bracket form) with short values.
fn form() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        prop::sample::select(&FIELDS[..]).prop_map(str::to_owned),
        prop::sample::select(&FIELDS[..]).prop_map(|name| format!("{name}[]")),
    ];
    prop::collection::vec((names, word()), 0..6).prop_map(encoded)
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(&PARAMETERS[..]), word()), 0..5).prop_map(encoded)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_query_string_parses_without_panicking(raw in any::<String>(), bytes in ".{0,80}") {
        for input in [raw.as_str(), bytes.as_str()] {
            let query = QueryParams::parse(Some(input));
            for name in PARAMETERS {
                let _ = query.single(name);
                let _ = query.int(name);
                let _ = query.flag(name);
                let _ = query.array(name);
            }
            let _ = query.page();
        }
    }

    #[test]
    fn any_request_gets_an_envelope_and_never_a_5xx(
        route in 0..ROUTES.len(),
        ids in prop::collection::vec(word(), 3),
        use_own_team in any::<bool>(),
        authenticated in prop::bool::weighted(0.9),
        query in query(),
        body in body(),
        content_type in prop::sample::select(&[
            "application/json",
            "application/x-ndjson",
            "application/x-www-form-urlencoded",
            "",
        ][..]),
    ) {
        let target = &*TARGET;
        let (method, template) = (ROUTES[route].0, ROUTES[route].1.as_str());
        let mut path = String::new();
        let mut ids = ids.iter();
        for (n, piece) in template.split("{}").enumerate() {
            if n > 0 {
                let id = match ids.next() {
                    Some(_) if n == 1 && use_own_team && template.contains("/teams/") => {
                        target.team_id.to_string()
                    }
                    Some(id) => id.clone(),
                    None => String::new(),
                };
                let segment: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
                path.push_str(&segment);
            }
            path.push_str(piece);
        }
        let mut uri = format!("{path}?{query}");
        if authenticated {
            uri.push_str(&format!("&appid={}&access_token={}", target.appid, target.token));
        }
        let mut request = Request::builder().method(method).uri(uri);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body));
        // A URI that the HTTP layer itself would refuse never reaches the router.
        let Ok(request) = request else { return Ok(()); };
        let (status, envelope) = target.runtime.block_on(async {
            let response = target
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router answers");
            let status = response.status();
            let bytes = to_bytes(response.into_body(), 1 << 24).await.expect("a body");
            (status, serde_json::from_slice::<Value>(&bytes))
        });
        prop_assert!(status.as_u16() < 500, "{} {} answered {}", method, template, status);
        let envelope = envelope.expect("a JSON answer");
        prop_assert!(envelope["code"].is_string());
        prop_assert_ne!(&envelope["code"], "InternalServerError");
        prop_assert!(envelope["error"]["type"].is_string());
        prop_assert!(envelope["request_id"].is_string());
        prop_assert!(envelope.get("data").is_some());
    }
}
