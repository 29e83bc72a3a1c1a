//! Orgs (§4): creating an org and reading one.

use axum::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Answer, AppidQuery, ListData, PageQuery, RolesQuery, member_query};
use crate::domain::RuleError;
use crate::domain::values::{self, OrgId, ROOT_GROUP, TeamId, UserId};
use crate::http::AppState;
use crate::http::describe::{OrgName, Success, claimed, claimed_body, failures};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{AppCall, QueryParams, RequestBody};
use crate::service::ServiceError;

type CreatedOrgAnswer = Success<CreatedOrgData>;
type OrgAnswer = Success<OrgData>;

/// A new org and its owner.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Acme", "user_id": 100000001}))]
pub struct CreateOrgBody {
    /// 1..64 characters after trimming.
    #[schema(value_type = OrgName)]
    name: String,
    /// A registered user (§7), who becomes the owner (role 1).
    #[schema(value_type = i64)]
    user_id: UserId,
}

/// The created org and its directory.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedOrg, example = json!({"org_id": 60000000002_i64, "team_id": 2}))]
pub struct CreatedOrgData {
    #[schema(value_type = i64)]
    org_id: OrgId,
    #[schema(value_type = i64)]
    team_id: TeamId,
}

failures!(CreateOrgFailures: claimed_body;
    RuleError::invalid("name must be 1 to 64 characters without control characters"),
    ServiceError::UserNotFound,
    ServiceError::OrgResourceExhausted,
);

/// Create an org (platform apps).
///
/// The org is on plan `business` with 10 admin seats; the user becomes its owner. A user may
/// create at most 5 orgs (`org_resource_exhausted`). Team apps get `claim_error` (or
/// `invalid_org_subscription` below `flagship`).
#[utoipa::path(
    post,
    path = "/api/orgs",
    tag = "orgs",
    params(AppidQuery),
    request_body = CreateOrgBody,
    responses(
        (status = 200, description = "The org was created.", body = CreatedOrgAnswer),
        CreateOrgFailures,
    ),
)]
pub async fn create_org(
    AppCall(state, caller): AppCall,
    RequestBody(body): RequestBody<CreateOrgBody>,
) -> Answer {
    let name = values::OrgName::parse(&body.name)?;
    let created = state
        .service
        .create_org(&caller, &name, body.user_id)
        .await?;
    Reply::data(&CreatedOrgData {
        org_id: created.org_id,
        team_id: created.team_id,
    })
}

/// The org named in the path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    /// The org's id.
    #[param(value_type = i64)]
    org_id: OrgId,
}

/// An org.
#[derive(Serialize, ToSchema)]
#[schema(as = Org, example = json!({
    "id": 60000000002_i64,
    "name": "Acme",
    "phone": "",
    "current_user_role": 0,
    "creator_id": 100000001,
    "creator_name": "Ada",
    "creator_avatar_url": "https://example.com/ada.png",
    "team_id": 2
}))]
pub struct OrgData {
    #[schema(value_type = i64)]
    id: OrgId,
    name: String,
    phone: String,
    /// Always 0 for app calls.
    current_user_role: i64,
    /// 0 for orgs created on the command line.
    #[schema(value_type = i64)]
    creator_id: UserId,
    creator_name: String,
    creator_avatar_url: String,
    #[schema(value_type = i64)]
    team_id: TeamId,
}

failures!(GetOrgFailures: claimed;
    ApiError::invalid("the request is malformed"),
    ServiceError::OrgNotFound,
);

/// Get an org.
///
/// Team apps reach only their own org, on plan `flagship`; platform apps the orgs they created.
#[utoipa::path(
    get,
    path = "/api/orgs/{org_id}",
    tag = "orgs",
    params(OrgPath, AppidQuery),
    responses(
        (status = 200, description = "The org.", body = OrgAnswer),
        GetOrgFailures,
    ),
)]
pub async fn get_org(
    AppCall(state, caller): AppCall,
    Path(OrgPath { org_id }): Path<OrgPath>,
) -> Answer {
    let org = state.service.get_org(&caller, org_id).await?;
    Reply::data(&OrgData {
        id: org.id,
        name: org.name,
        phone: org.phone,
        current_user_role: 0,
        creator_id: org.creator_id,
        creator_name: org.creator_name,
        creator_avatar_url: org.creator_avatar_url,
        team_id: org.team_id,
    })
}

/// A member of an org's directory, as the org listing shows it.
#[derive(Serialize, ToSchema)]
#[schema(as = OrgMember, example = json!({
    "user_id": 100000001,
    "name": "Ada",
    "avatar": "https://example.com/ada.png",
    "role": 1
}))]
pub struct OrgMemberData {
    #[schema(value_type = i64)]
    user_id: UserId,
    /// The directory-level nickname when set, else the user's own.
    name: String,
    /// The directory-level avatar when set, else the user's own.
    avatar: String,
    /// `1` owner, `2` team admin, `3` survey admin, `4` regular member.
    #[schema(minimum = 1, maximum = 4)]
    role: i64,
}

type OrgMemberListAnswer = Success<ListData<OrgMemberData>>;

failures!(ListOrgMembersFailures: claimed;
    ApiError::invalid("roles must hold 1, 2, 3 or 4"),
    ServiceError::OrgNotFound,
);

/// List the members of an org.
///
/// The members of the org's directory with the given roles (`roles[]=1&roles[]=2`: the owner
/// and the team admins), ordered by `user_id`. The access and plan rules of `GET
/// /api/orgs/{org_id}`.
#[utoipa::path(
    get,
    path = "/api/orgs/{org_id}/users",
    tag = "orgs",
    params(OrgPath, PageQuery, RolesQuery, AppidQuery),
    responses(
        (status = 200, description = "One page of members.", body = OrgMemberListAnswer),
        ListOrgMembersFailures,
    ),
)]
pub async fn list_org_members(
    AppCall(state, caller): AppCall,
    Path(OrgPath { org_id }): Path<OrgPath>,
    query: QueryParams,
) -> Answer {
    let (filter, page) = member_query(&query, ROOT_GROUP, false)?;
    let (rows, total) = state
        .service
        .list_org_members(&caller, org_id, &filter, page)
        .await?;
    Reply::data(&ListData {
        list: rows
            .into_iter()
            .map(|row| OrgMemberData {
                user_id: row.user_id,
                name: row.name,
                avatar: row.avatar,
                role: row.role.code(),
            })
            .collect(),
        total,
    })
}

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org))
        .routes(routes!(get_org))
        .routes(routes!(list_org_members))
}
