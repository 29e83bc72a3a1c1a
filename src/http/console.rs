//! `GET /console`: the web console, served from the binary.
//!
//! The console is plain ES modules and CSS under `console/` at the repository root, embedded at
//! build time (no build step, no Node). It is a client of the public API and nothing else: it
//! signs in through the token call and sends `Authorization: Bearer` on every call.
//!
//! The page is served at `/console` and never cached; its files are served under
//! `/console/{version}/{file}`, where `version` is a hash of every embedded file, so they can be
//! cached for a year and a new build is picked up at once. Every answer carries a strict
//! Content-Security-Policy: scripts, styles and calls only from this origin, no inline code, no
//! framing. These routes are not part of the WeSurvey API and are not in the OpenAPI document.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The page; `{{VERSION}}` is replaced by [`VERSION`] in the served copy.
const INDEX: &str = include_str!("../../console/index.html");

/// The console's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    ("app.js", JS, include_bytes!("../../console/app.js")),
    ("api.js", JS, include_bytes!("../../console/api.js")),
    ("dom.js", JS, include_bytes!("../../console/dom.js")),
    ("tree.js", JS, include_bytes!("../../console/tree.js")),
    ("groups.js", JS, include_bytes!("../../console/groups.js")),
    ("members.js", JS, include_bytes!("../../console/members.js")),
    ("sync.js", JS, include_bytes!("../../console/sync.js")),
    (
        "snapshot.js",
        JS,
        include_bytes!("../../console/snapshot.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../console/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The first 16 hex digits of the SHA-256 of the page and every file.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    hasher.update(INDEX.as_bytes());
    for (name, _, bytes) in FILES {
        hasher.update(name.as_bytes());
        hasher.update(bytes);
    }
    hasher.finalize()[..8]
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
});

static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{VERSION}}", &VERSION));

/// The console's routes (they read no state).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(page))
        .route("/console/{version}/{file}", get(file))
}

async fn page() -> Response {
    answer(
        "text/html; charset=utf-8",
        "no-cache",
        PAGE.as_bytes().to_vec(),
    )
}

async fn file(Path((version, name)): Path<(String, String)>) -> Response {
    let found = FILES.iter().find(|(file, _, _)| *file == name);
    match found {
        Some((_, content_type, bytes)) if version == *VERSION => answer(
            content_type,
            "public, max-age=31536000, immutable",
            bytes.to_vec(),
        ),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn answer(content_type: &'static str, cache: &'static str, body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::extract::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn the_page_names_its_files_by_version_and_is_not_cached() {
        let response = get_path("/console").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"));
        let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(body.contains(&format!("console/{}/app.js", *VERSION)));
        assert!(!body.contains("{{VERSION}}"));
        assert!(!body.contains("<style") && !body.contains("style="));
        assert!(!body.contains("<script>"));
    }

    #[tokio::test]
    async fn every_file_is_served_under_the_current_version_only() {
        for (name, content_type, bytes) in FILES {
            let response = get_path(&format!("/console/{}/{name}", *VERSION)).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *content_type);
            assert!(
                response.headers()[header::CACHE_CONTROL]
                    .to_str()
                    .expect("ascii")
                    .contains("immutable")
            );
            let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
            assert_eq!(&body[..], *bytes);
            let stale = get_path(&format!("/console/0000000000000000/{name}")).await;
            assert_eq!(stale.status(), StatusCode::NOT_FOUND);
        }
        let unknown = get_path(&format!("/console/{}/secret.txt", *VERSION)).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }
}
