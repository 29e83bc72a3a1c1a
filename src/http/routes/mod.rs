//! The operations of the contract, one module per resource, each holding its handlers, their
//! request and answer types, and their part of the API description (`#[utoipa::path]`, see
//! [`super::describe`]).
//!
//! Each resource's `routes()` registers its handlers with the router and their descriptions
//! with the document together (`utoipa-axum`), so a route cannot exist undescribed, and
//! [`resources`] gathers them. Adding an operation touches its resource module only (plus its
//! test, the OpenAPI snapshot and the docs). A handler on a team's contacts takes a
//! [`TeamCall`](super::extract::TeamCall) (the app calling and the team of the path) and
//! reads only what else it needs. This module also holds the parameter and data types several
//! resources share.

pub mod auth;
pub mod events;
mod group_page;
pub mod groups;
pub mod members;
pub mod orgs;
pub mod sync;
pub mod users;
pub mod webhooks;

use std::borrow::Cow;

use axum::extract::State;
use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Required};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
pub use super::describe::GroupIdValue;
use super::describe::{Empty, Success, anonymous, example_of, failures};
use super::envelope::{ApiError, Reply};
use super::extract::QueryParams;
use crate::domain::directory::MemberFilter;
use crate::domain::values::{GroupId, MAX_ARRAY_ITEMS, Page, Role};

/// Every operation of the contract, with its description: each resource registers its own.
pub fn resources() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::routes())
        .merge(orgs::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(members::routes())
        .merge(sync::routes())
        .merge(events::routes())
        .merge(webhooks::routes())
        .routes(routes!(health))
}

/// What a handler answers.
type Answer = Result<Reply, ApiError>;

/// The envelope of a write that returns nothing.
type EmptyAnswer = Success<Empty>;

/// `appid` beside the token: the reference service's calling convention.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; the AppCall extractor reads it"
)]
pub struct AppidQuery {
    /// The calling app. Optional with a Bearer token; when given, it must be the token's app.
    #[param(min_length = 1, example = "tpidk3v9q2xa")]
    appid: Option<String>,
}

/// The `team_id` of a contacts path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path; the handlers read it")]
pub struct TeamPath {
    /// The directory (team) id.
    team_id: i64,
}

/// `page` and `per_page` of a listing (read by [`QueryParams::page`]), described from the limits
/// [`Page::new`] enforces.
///
/// [`QueryParams::page`]: super::extract::QueryParams::page
pub struct PageQuery;

impl IntoParams for PageQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let count = |maximum: Option<u64>, default: u64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(maximum)
                .default(Some(default.into()))
        };
        vec![
            query_parameter(
                "page",
                "The page, from 1. A page past the end answers an empty `list` and the real \
                 `total`.",
                count(None, 1),
            ),
            query_parameter(
                "per_page",
                "Rows per page.",
                count(Some(Page::MAX_PER_PAGE), 10),
            ),
        ]
    }
}

/// The `roles` filter of a member listing (read by [`roles_of`]).
pub struct RolesQuery;

impl IntoParams for RolesQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut roles = query_parameter(
            "roles",
            "Only members with one of these roles (none: every role). Also \
             `roles[]=1&roles[]=2`,\n`roles=1,2` or `roles=[1,2]`.",
            ArrayBuilder::new()
                .items(Ref::from_schema_name(RoleCode::name()))
                .max_items(Some(MAX_ARRAY_ITEMS)),
        );
        roles.style = Some(ParameterStyle::Form);
        roles.explode = Some(true);
        vec![roles]
    }
}

/// An optional query parameter.
fn query_parameter(name: &str, description: &str, schema: impl Into<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema.into()))
        .build()
}

/// The filter and page of a member listing of `group`: `roles` and paging from the query.
fn member_query(
    query: &QueryParams,
    group: GroupId,
    recursive: bool,
) -> Result<(MemberFilter, Page), ApiError> {
    let filter = MemberFilter {
        group,
        recursive,
        roles: roles_of(query)?,
    };
    Ok((filter, query.page()?))
}

/// The `roles` filter of a listing's query.
fn roles_of(query: &QueryParams) -> Result<Option<Vec<Role>>, ApiError> {
    query
        .array("roles")?
        .map(|roles| {
            roles
                .iter()
                .map(|raw| {
                    raw.trim()
                        .parse::<i64>()
                        .ok()
                        .and_then(Role::from_code)
                        .ok_or_else(|| ApiError::invalid("roles must hold 1, 2, 3 or 4"))
                })
                .collect()
        })
        .transpose()
}

/// A member role in a filter: `1` owner, `2` team admin, `3` survey admin, `4` regular member.
pub struct RoleCode;

impl PartialSchema for RoleCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .enum_values(Some([1, 2, 3, 4]))
            .description(Some(
                "`1` owner, `2` team admin, `3` survey admin, `4` regular member.",
            ))
            .into()
    }
}

impl ToSchema for RoleCode {}

/// One page of a listing.
#[derive(Serialize)]
pub struct ListData<T> {
    list: Vec<T>,
    total: u64,
}

impl<T> ListData<T> {
    /// A listing that is not paged: every row, and their count.
    fn whole(rows: impl IntoIterator<Item = T>) -> ListData<T> {
        let list: Vec<T> = rows.into_iter().collect();
        ListData {
            total: list.len() as u64,
            list,
        }
    }
}

/// `{"list": [...], "total": N}` of a listing, named after its rows (`GroupList`, ...).
impl<T: ToSchema> PartialSchema for ListData<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "list",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("list")
            .property(
                "total",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0))
                    .description(Some("Every match, not only this page's rows.")),
            )
            .required("total")
            .examples(
                example_of(&T::schema()).map(|row| serde_json::json!({"list": [row], "total": 1})),
            )
            .into()
    }
}

impl<T: ToSchema> ToSchema for ListData<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}List", T::name()))
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

// ----- operations ---------------------------------------------------------------------------

type HealthAnswer = Success<Health>;

/// The state of the service.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok`.
    #[schema(value_type = String)]
    status: &'static str,
}

failures!(HealthFailures: anonymous; ApiError::unavailable());

/// Health: does the database answer?
///
/// No authentication. HTTP 503 (`InternalServerError`) when the database does not answer, in both
/// HTTP status modes.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers.", body = HealthAnswer),
        HealthFailures,
    ),
)]
pub async fn health(State(state): State<AppState>) -> Answer {
    if state.service.healthy().await {
        Reply::data(&Health { status: "ok" })
    } else {
        Err(ApiError::unavailable())
    }
}
