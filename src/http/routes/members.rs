//! Members (§6): list the members of a group, add, update and remove them.

use axum::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    Answer, AppidQuery, EmptyAnswer, GroupIdValue, ListData, PageQuery, RolesQuery, TeamPath,
    member_query,
};
use crate::domain::RuleError;
use crate::domain::values::{self, GroupId, MAX_ARRAY_ITEMS, ROOT_GROUP, Role, UserId};
use crate::http::AppState;
use crate::http::describe::{self, Avatar, Nickname, Success, failures, team, team_body};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{QueryParams, RequestBody, TeamCall};
use crate::service::{MemberRow, MemberUpdate};

type MemberListAnswer = Success<ListData<MemberData>>;

/// A member row.
#[derive(Serialize, ToSchema)]
#[schema(as = Member, example = json!({
    "user_id": 100000001,
    "respondent_id": 500000001,
    "name": "Ada",
    "avatar": "https://example.com/ada.png",
    "role": 4,
    "group_id": 1,
    "group_full_name": "Demo/Sales",
    "is_org_creator": false,
    "is_org_available": true
}))]
pub struct MemberData {
    #[schema(value_type = i64)]
    user_id: UserId,
    respondent_id: i64,
    /// The directory-level nickname when set, else the user's own.
    name: String,
    /// The directory-level avatar when set, else the user's own.
    avatar: String,
    /// `1` owner, `2` team admin, `3` survey admin, `4` regular member.
    #[schema(minimum = 1, maximum = 4)]
    role: i64,
    /// The listed group; for group 0, the member's first group by id, or 0.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    group_id: GroupId,
    /// That group's `full_name` (the team's name for 0).
    group_full_name: String,
    /// The member is the org's owner (role 1).
    is_org_creator: bool,
    /// The member is active in the directory: `true` for every listed member.
    is_org_available: bool,
}

/// The group of a member listing's path (`0`: the whole directory), after the team.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// The group (`0` = the whole directory).
    #[param(inline, value_type = GroupIdValue)]
    group_id: i64,
}

/// A member of a group, in the path after the team.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// The group (`0` = the whole directory).
    #[param(inline, value_type = GroupIdValue)]
    group_id: i64,
    /// The member.
    #[param(value_type = i64)]
    user_id: UserId,
}

/// A member of the directory, in the path after the team.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The member.
    #[param(value_type = i64)]
    user_id: UserId,
}

/// The query of the member list besides paging and roles (read by [`list_members`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; list_members reads it"
)]
pub struct ListMembersQuery {
    /// Also the members of every group below this one, once each (an extension).
    recursive: Option<bool>,
}

failures!(ListMembersFailures: team;
    ApiError::invalid("roles must hold 1, 2, 3 or 4"),
    RuleError::GroupNotFound,
);

/// List the members of a group.
///
/// Group `0` lists every member of the directory, once each; another group its direct members.
/// Ordered by `user_id`.
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/groups/{group_id}/users",
    tag = "members",
    params(TeamPath, GroupPath, PageQuery, RolesQuery, ListMembersQuery, AppidQuery),
    responses(
        (status = 200, description = "One page of members.",
            body = MemberListAnswer),
        ListMembersFailures,
    ),
)]
pub async fn list_members(
    TeamCall(state, caller, team_id): TeamCall,
    Path(GroupPath { group_id }): Path<GroupPath>,
    query: QueryParams,
) -> Answer {
    let group = values::group_id(group_id)?;
    let (filter, page) = member_query(&query, group, query.flag("recursive")?)?;
    let (rows, total) = state
        .service
        .list_members(&caller, team_id, &filter, page)
        .await?;
    member_page(rows, total)
}

/// A page of member rows as the contract shows them.
fn member_page(rows: Vec<MemberRow>, total: u64) -> Answer {
    Reply::data(&ListData {
        list: rows
            .into_iter()
            .map(|row| MemberData {
                user_id: row.user_id,
                respondent_id: row.respondent_id,
                name: row.name,
                avatar: row.avatar,
                role: row.role.code(),
                group_id: row.group_id,
                group_full_name: row.group_full_name,
                is_org_creator: row.role == Role::Owner,
                is_org_available: true,
            })
            .collect(),
        total,
    })
}

failures!(ListTeamMembersFailures: team;
    ApiError::invalid("roles must hold 1, 2, 3 or 4"),
);

/// List every member of a directory.
///
/// Every member once, exactly as the group `0` listing. Ordered by `user_id`.
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/users",
    tag = "members",
    params(TeamPath, PageQuery, RolesQuery, AppidQuery),
    responses(
        (status = 200, description = "One page of members.",
            body = MemberListAnswer),
        ListTeamMembersFailures,
    ),
)]
pub async fn list_team_members(
    TeamCall(state, caller, team_id): TeamCall,
    query: QueryParams,
) -> Answer {
    let (filter, page) = member_query(&query, ROOT_GROUP, false)?;
    let (rows, total) = state
        .service
        .list_members(&caller, team_id, &filter, page)
        .await?;
    member_page(rows, total)
}

/// How to add a member.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"role": 4}))]
pub struct AddMemberBody {
    #[schema(schema_with = add_member_role)]
    role: Option<i64>,
}

fn add_member_role() -> ObjectBuilder {
    describe::assignable_role(
        "`2` team admin, `3` survey admin or `4` regular member (the default). With no admin\n\
         seat left, an admin role is quietly lowered to 4. Ignored for an existing member.",
        true,
    )
}

failures!(AddMemberFailures: team_body;
    RuleError::invalid("role must be 2, 3 or 4"),
    RuleError::GroupNotFound,
    RuleError::ContactsUserNotFound,
    RuleError::ContactsUserExisted,
);

/// Add a user to a group.
///
/// Adds the user to the directory if needed, and to the group (`0` = the directory only).
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}",
    tag = "members",
    params(
        TeamPath,
        ("group_id" = inline(GroupIdValue), Path,
            description = "The group (`0` = the directory only)."),
        ("user_id" = i64, Path, description = "A registered user."),
        AppidQuery,
    ),
    request_body = Option<AddMemberBody>,
    responses(
        (status = 200, description = "Added.", body = EmptyAnswer),
        AddMemberFailures,
    ),
)]
pub async fn add_member(
    TeamCall(state, caller, team_id): TeamCall,
    Path(MemberPath { group_id, user_id }): Path<MemberPath>,
    RequestBody(body): RequestBody<AddMemberBody>,
) -> Answer {
    let role = body
        .role
        .map(Role::assignable)
        .transpose()?
        .unwrap_or(Role::Member);
    state
        .service
        .add_member(&caller, team_id, values::group_id(group_id)?, user_id, role)
        .await?;
    Ok(Reply::empty())
}

failures!(RemoveMemberFailures: team;
    RuleError::invalid("the owner cannot be removed"),
    RuleError::GroupNotFound,
    RuleError::ContactsUserNotFound,
);

/// Remove a member from a group.
///
/// Group `0` removes the member from the directory entirely. The owner cannot be removed from
/// the directory.
#[utoipa::path(
    delete,
    path = "/api/contacts/teams/{team_id}/groups/{group_id}/users/{user_id}",
    tag = "members",
    params(TeamPath, MemberPath, AppidQuery),
    responses(
        (status = 200, description = "Removed.", body = EmptyAnswer),
        RemoveMemberFailures,
    ),
)]
pub async fn remove_member(
    TeamCall(state, caller, team_id): TeamCall,
    Path(MemberPath { group_id, user_id }): Path<MemberPath>,
) -> Answer {
    state
        .service
        .remove_member(&caller, team_id, values::group_id(group_id)?, user_id)
        .await?;
    Ok(Reply::empty())
}

/// A member's new groups, profile or role; a field left out (or `null`) keeps its value.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"group_ids": [1, 2], "nickname": "Ada", "role": 3}))]
pub struct UpdateMemberBody {
    #[schema(schema_with = update_member_group_ids)]
    group_ids: Option<Vec<i64>>,
    /// The directory-level nickname.
    #[schema(value_type = Option<Nickname>)]
    nickname: Option<String>,
    /// The directory-level avatar URL.
    #[schema(value_type = Option<Avatar>)]
    avatar: Option<String>,
    #[schema(schema_with = update_member_role)]
    role: Option<i64>,
}

fn update_member_group_ids() -> ArrayBuilder {
    describe::group_ids(
        "Replaces the member's whole set of groups (`[]` = the root only; `0` is ignored).",
        None,
        MAX_ARRAY_ITEMS,
        true,
    )
}

fn update_member_role() -> ObjectBuilder {
    describe::assignable_role(
        "`2`, `3` or `4`. The owner's role cannot change; with no admin seat left, an admin role\n\
         is `exceed_user_limit`.",
        true,
    )
}

failures!(UpdateMemberFailures: team_body;
    RuleError::invalid("the owner's role cannot change"),
    RuleError::ContactsUserNotFound,
    RuleError::GroupNotFound,
    RuleError::ExceedUserLimit,
);

/// Update a member.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/users/{user_id}",
    tag = "members",
    params(TeamPath, UserPath, AppidQuery),
    request_body = Option<UpdateMemberBody>,
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateMemberFailures,
    ),
)]
pub async fn update_member(
    TeamCall(state, caller, team_id): TeamCall,
    Path(UserPath { user_id }): Path<UserPath>,
    RequestBody(body): RequestBody<UpdateMemberBody>,
) -> Answer {
    if body
        .group_ids
        .as_ref()
        .is_some_and(|ids| ids.len() > MAX_ARRAY_ITEMS)
    {
        return Err(ApiError::invalid("group_ids may hold at most 1000 ids"));
    }
    let update = MemberUpdate {
        group_ids: body
            .group_ids
            .map(|ids| ids.into_iter().map(values::group_id).collect())
            .transpose()?,
        nickname: body
            .nickname
            .as_deref()
            .map(values::Nickname::parse)
            .transpose()?,
        avatar: body
            .avatar
            .as_deref()
            .map(values::Avatar::parse)
            .transpose()?,
        role: body.role.map(Role::assignable).transpose()?,
    };
    state
        .service
        .update_member(&caller, team_id, user_id, &update)
        .await?;
    Ok(Reply::empty())
}

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_members))
        .routes(routes!(add_member, remove_member))
        .routes(routes!(update_member))
        .routes(routes!(list_team_members))
}
