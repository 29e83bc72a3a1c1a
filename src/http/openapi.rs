//! The API description: `GET /openapi.json` (OpenAPI 3.1) and `GET /docs`, a page that
//! renders it.
//!
//! The document is generated from the code, so it cannot drift from it:
//! - every handler carries `#[utoipa::path(...)]` with its parameters, body and answers, and the
//!   body and data structs derive their schemas;
//! - [`super::routes::resources`] registers each handler with the router and its description
//!   with the document in one step; this module only adds the document's own parts (title,
//!   tags, security schemes) and its pages;
//! - the failures of an operation are listed next to its handler as error values
//!   ([`super::describe`]); their HTTP status, `code`, `error.type`, message and example body
//!   are rendered from those values by the real error mapping and envelope code
//!   ([`super::envelope`]), so the document shows what the server answers;
//! - the contract tests compare the document with a committed snapshot, check that every route
//!   of the router is described, and `scripts/schemathesis` fuzzes a live server against it.
//!
//! The docs page is Swagger UI, whose files are compiled into the binary (no network at run
//! time; the `vendored` build of `utoipa-swagger-ui` needs none at build time either).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::Response as ResponseDoc;
use utoipa::openapi::schema::{AnyOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::describe::{Empty, Failure};
use super::envelope::ApiError;
use super::routes::{self, RoleCode};
use super::server::MAX_HEAD_BYTES;

/// The operations of the contract and this document, described.
fn described() -> OpenApiRouter<AppState> {
    let mut described = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::resources())
        .routes(routes!(openapi_json));
    add_security(described.get_openapi_mut());
    optional_bodies_are_not_null(described.get_openapi_mut());
    fold_failures_into_200(described.get_openapi_mut());
    bare_head_refusals(described.get_openapi_mut());
    described
}

/// Every route: the contract's operations, this document and its page.
pub fn router() -> Router<AppState> {
    let (router, _) = described().split_for_parts();
    router
        .route("/docs", get(docs_page))
        .route("/docs/{*file}", get(docs_file))
}

/// The document the server describes itself with.
pub fn document() -> utoipa::openapi::OpenApi {
    described().into_openapi()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "contactsd",
        description = include_str!("openapi.md"),
    ),
    components(schemas(Failure, Empty, RoleCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "tokens", description = "App credentials and access tokens (§3)."),
        (name = "orgs", description = "Orgs (teams) and their contacts directories (§4)."),
        (name = "users", description = "Third-party users an app registers under its own openids (§7)."),
        (name = "groups", description = "The tree of groups of a directory (§5)."),
        (name = "members", description = "Members of a directory and their groups (§6)."),
        (name = "sync", description = "Directory sync from a snapshot (§8, an extension)."),
        (name = "events", description = "The change feed of a directory (§11, an extension)."),
        (name = "operations", description = "Health and this description (§9)."),
    ),
)]
pub struct ApiDoc;

/// Every operation of the document, of every method it uses.
fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// The two ways to present a token: `?access_token=` (with `appid`, as the reference service
/// expects) or an `Authorization: Bearer` header (an extension).
struct SecuritySchemes;

/// Every operation that takes an optional `appid` beside its token ([`routes::AppidQuery`])
/// accepts either way of presenting the token (the token call's `appid` is required).
fn add_security(openapi: &mut utoipa::openapi::OpenApi) {
    for operation in operations(openapi) {
        let takes_token = operation.parameters.iter().flatten().any(|parameter| {
            matches!(parameter, RefOr::T(parameter)
                    if parameter.name == "appid" && matches!(parameter.required, Required::False))
        });
        if takes_token && operation.security.is_none() {
            operation.security = Some(vec![
                SecurityRequirement::new("access_token", Vec::<String>::new()),
                SecurityRequirement::new("bearer", Vec::<String>::new()),
            ]);
        }
    }
}

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // Cargo.toml names no license; utoipa would copy the empty field.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "The token of `GET /api/oauth2/access_token`, usually with `appid` beside it.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <access_token>` (an extension; `appid` is then \
                         optional).",
                    ))
                    .build(),
            ),
        );
    }
}

/// A body that may be left out (`request_body = Option<...>`) reads as `{}` when it is
/// (`RequestBody`), but a `null` body is refused: utoipa describes the option as
/// `oneOf: [body, null]`, so the `null` is taken out again.
fn optional_bodies_are_not_null(openapi: &mut utoipa::openapi::OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        let Some(RefOr::T(body)) = item
            .post
            .as_mut()
            .and_then(|post| post.request_body.as_mut())
        else {
            continue;
        };
        for content in body.content.values_mut() {
            let RefOr::T(content) = content else { continue };
            if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                let not_null: Vec<RefOr<Schema>> = one_of
                    .items
                    .iter()
                    .filter(|item| {
                        !matches!(item, RefOr::T(Schema::Object(object))
                        if object.schema_type == SchemaType::Type(Type::Null))
                    })
                    .cloned()
                    .collect();
                if let [only] = not_null.as_slice() {
                    content.schema = Some(only.clone());
                }
            }
        }
    }
}

/// The document describes the default mode, where every enveloped answer is HTTP 200: each
/// operation's failures, declared at their mapped statuses, are folded into its 200 answer,
/// whose description names the status each failure has with `--http-status mapped`. Only
/// `/healthz`'s 503 keeps its status in both modes.
fn fold_failures_into_200(openapi: &mut utoipa::openapi::OpenApi) {
    for operation in operations(openapi) {
        let responses = &mut operation.responses.responses;
        let statuses: Vec<String> = responses
            .keys()
            .filter(|status| *status != "200" && *status != "503")
            .cloned()
            .collect();
        let failures: Vec<(String, RefOr<ResponseDoc>)> = statuses
            .into_iter()
            .filter_map(|status| {
                let response = responses.remove(&status)?;
                Some((status, response))
            })
            .collect();
        let Some(RefOr::T(success)) = responses.get_mut("200") else {
            continue;
        };
        let Some(RefOr::T(content)) = success.content.get_mut("application/json") else {
            continue;
        };
        let mut any_of = AnyOfBuilder::new();
        if let Some(schema) = content.schema.take() {
            any_of = any_of.item(schema);
        }
        let mut lines = Vec::new();
        for (status, failure) in &failures {
            let RefOr::T(failure) = failure else { continue };
            for line in failure.description.split("\n\n") {
                lines.push(format!("{line} (HTTP {status} when mapped)"));
            }
            let Some(RefOr::T(failure_content)) = failure.content.get("application/json") else {
                continue;
            };
            if let Some(schema) = &failure_content.schema {
                any_of = any_of.item(schema.clone());
            }
            for (name, example) in &failure_content.examples {
                let key = if content.examples.contains_key(name) {
                    format!("{name} ({status})")
                } else {
                    name.clone()
                };
                content.examples.insert(key, example.clone());
            }
            for (name, header) in &failure.headers {
                success
                    .headers
                    .entry(name.clone())
                    .or_insert(header.clone());
            }
        }
        if failures.is_empty() {
            content.schema = any_of_first(any_of);
            continue;
        }
        content.schema = Some(any_of.into());
        success.description = format!(
            "{}\n\nFailures, also HTTP 200 (their `code` is not `OK`):\n\n{}",
            success.description,
            lines.join("\n\n")
        );
    }
}

/// A request head over [`MAX_HEAD_BYTES`] is refused by the HTTP layer before contactsd reads it,
/// in both status modes, with a bare status and no envelope (docs/API-DESIGN.md): any operation
/// may answer so, and each one's document says it.
fn bare_head_refusals(openapi: &mut utoipa::openapi::OpenApi) {
    let kib = MAX_HEAD_BYTES / 1024;
    let refusals = [
        (
            "414",
            "RequestLineTooLong",
            format!(
                "The request line is longer than the request head's limit ({kib} KiB): a bare \
                 HTTP 414 without the envelope, in both status modes. Long lists belong in a \
                 body or in several calls."
            ),
        ),
        (
            "431",
            "RequestHeadTooLarge",
            format!(
                "The request head (request line and headers) is over {kib} KiB: a bare HTTP 431 \
                 without the envelope, in both status modes."
            ),
        ),
    ];
    let components = openapi.components.get_or_insert_with(Default::default);
    for (_, name, description) in &refusals {
        components.responses.insert(
            (*name).to_owned(),
            RefOr::T(ResponseDoc::new(description.as_str())),
        );
    }
    for operation in operations(openapi) {
        for (status, name, _) in &refusals {
            operation.responses.responses.insert(
                (*status).to_owned(),
                RefOr::Ref(Ref::from_response_name(*name)),
            );
        }
    }
}

/// The only schema of a one-item `anyOf`, as it was.
fn any_of_first(any_of: AnyOfBuilder) -> Option<RefOr<Schema>> {
    let any_of = any_of.build();
    any_of.items.into_iter().next()
}

/// The document, built once.
static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    // Serializing a document of plain maps and strings cannot fail.
    document().to_json().unwrap_or_default().into_bytes()
});

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 description of the API (not enveloped).",
            content_type = "application/json", body = Object),
    ),
)]
pub async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// The docs page: Swagger UI's own files with our settings. URLs are relative, so the page
/// also works behind a reverse proxy that adds a path prefix.
const DOCS_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>contactsd API</title>
    <link rel="stylesheet" type="text/css" href="docs/swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="docs/index.css">
    <link rel="icon" type="image/png" href="docs/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="docs/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="docs/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"#;

async fn docs_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        DOCS_PAGE,
    )
        .into_response()
}

/// Swagger UI's settings: our document, and no online validator (it would send the document's
/// address to a third party).
static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["openapi.json"])
            .validator_url("none")
            .try_it_out_enabled(false)
            .display_operation_id(true),
    )
});

/// One file of Swagger UI, from the binary.
async fn docs_file(Path(file): Path<String>) -> Response {
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(found)) => {
            let content_type = HeaderValue::from_str(&found.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let mut response = (
                [(header::CONTENT_TYPE, content_type)],
                found.bytes.into_owned(),
            )
                .into_response();
            if found.gzpipped {
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => ApiError::internal(format!("docs file {file:?}: {error}")).into_response(),
    }
}
