//! Groups (§5): the tree of groups of a directory: list, get, create, update or move, delete.

use axum::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::openapi::KnownFormat;
use utoipa::openapi::path::{Parameter, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::group_page::group_page_json;
use super::{
    Answer, AppidQuery, EmptyAnswer, GroupIdValue, ListData, PageQuery, TeamPath, query_parameter,
};
use crate::domain::RuleError;
use crate::domain::directory::{GroupFilter, GroupView};
use crate::domain::values::{
    self, GroupId, MAX_ARRAY_ITEMS, MAX_DELETE_GROUPS, ROOT_GROUP, TeamId,
};
use crate::http::describe::{self, GroupName, RemoteId, Success, failures, team, team_body};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{QueryParams, RequestBody, TeamCall};
use crate::http::{ApiTime, AppState};
use crate::service::{GroupUpdate, NewGroupRequest};

type CreatedGroupAnswer = Success<CreatedGroupData>;
type GroupAnswer = Success<GroupData>;
type GroupListAnswer = Success<ListData<GroupData>>;

fn order(raw: i64) -> Result<i64, ApiError> {
    if i32::try_from(raw).is_err() {
        return Err(ApiError::invalid("order must be a 32-bit integer"));
    }
    Ok(raw)
}

/// A group of a directory.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Group, example = json!({
    "id": 1,
    "team_id": 1,
    "parent_id": 0,
    "source": 1,
    "remote_id": "sales",
    "name": "Sales",
    "full_name": "Demo/Sales",
    "order": 0,
    "is_valid": true,
    "created_at": "2026-11-28T20:28:23+08:00",
    "upd_at": "2026-11-28T20:28:23+08:00",
    "updated_at": "2026-11-28T20:28:23+08:00"
}))]
pub struct GroupData {
    #[schema(value_type = i64, minimum = 1, maximum = 4294967295_i64)]
    pub(super) id: GroupId,
    #[schema(value_type = i64)]
    pub(super) team_id: TeamId,
    /// `0` for a top-level group.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    pub(super) parent_id: GroupId,
    /// `1` created or last changed through the API, `2` by a directory sync.
    #[schema(minimum = 1, maximum = 2)]
    pub(super) source: i64,
    /// The group's id in the client's own system, or `""`.
    #[schema(max_length = 64)]
    pub(super) remote_id: String,
    #[schema(min_length = 1, max_length = 64)]
    pub(super) name: String,
    /// The team's name, every ancestor's name and the group's own, joined by `/`.
    pub(super) full_name: String,
    /// Larger comes first among siblings.
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    pub(super) order: i64,
    /// `false` for a deleted group kept as a tombstone.
    pub(super) is_valid: bool,
    #[schema(value_type = String, format = DateTime)]
    pub(super) created_at: ApiTime,
    #[schema(value_type = String, format = DateTime)]
    pub(super) upd_at: ApiTime,
    /// The same time as `upd_at`, under the name a published client reads.
    #[schema(value_type = String, format = DateTime)]
    pub(super) updated_at: ApiTime,
}

impl GroupData {
    fn new(state: &AppState, team_id: TeamId, view: GroupView) -> GroupData {
        let group = view.group;
        GroupData {
            id: group.id,
            team_id,
            parent_id: group.parent_id,
            source: group.source.code(),
            remote_id: group.remote_id.into(),
            name: group.name.into(),
            full_name: view.full_name,
            order: group.order,
            is_valid: group.is_valid,
            created_at: state.time(group.created_at),
            upd_at: state.time(group.upd_at),
            updated_at: state.time(group.upd_at),
        }
    }
}

fn group_filter(query: &QueryParams) -> Result<GroupFilter, ApiError> {
    let parent = query.int("parent_id")?.map(values::group_id).transpose()?;
    // Without `parent_id` every group is listed already: `recursive` changes nothing then.
    let recursive = query.flag("recursive")? && parent.is_some();
    let updated_since = query
        .single("updated_since")?
        .map(|raw| {
            chrono::DateTime::parse_from_rfc3339(raw)
                .map(|time| time.timestamp())
                .map_err(|_| ApiError::invalid("updated_since must be an RFC 3339 time"))
        })
        .transpose()?;
    let keyword = query
        .single("keyword")?
        .filter(|word| !word.is_empty())
        .map(|word| {
            if word.chars().count() > values::MAX_NAME_CHARS {
                Err(ApiError::invalid("keyword must be at most 64 characters"))
            } else {
                Ok(word.to_lowercase())
            }
        })
        .transpose()?;
    Ok(GroupFilter {
        parent,
        recursive,
        remote_ids: query.array("remote_ids")?,
        include_invalid: query.flag("include_invalid")?,
        updated_since,
        keyword,
    })
}

/// The query of the group list (read by [`group_filter`] and [`QueryParams::page`]), described
/// from the limits [`group_filter`] enforces.
pub struct ListGroupsQuery;

impl IntoParams for ListGroupsQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let text = || ObjectBuilder::new().schema_type(Type::String);
        let flag = || ObjectBuilder::new().schema_type(Type::Boolean);
        let mut remote_ids = query_parameter(
            "remote_ids",
            "Only groups whose `remote_id` is one of these.",
            ArrayBuilder::new()
                .items(text())
                .max_items(Some(MAX_ARRAY_ITEMS)),
        );
        remote_ids.style = Some(ParameterStyle::Form);
        remote_ids.explode = Some(true);
        vec![
            remote_ids,
            query_parameter(
                "parent_id",
                "Only the direct children of this group (`0` = the top level).",
                GroupIdValue::schema(),
            ),
            query_parameter(
                "recursive",
                "With `parent_id`: every group below it, not only its children (an extension); \
                 without\nit, every group is listed anyway.",
                flag(),
            ),
            query_parameter(
                "include_invalid",
                "Also list deleted groups (tombstones) (an extension).",
                flag(),
            ),
            query_parameter(
                "updated_since",
                "Only groups whose `upd_at` is at or after this time (an extension).",
                text().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            ),
            query_parameter(
                "keyword",
                "Only groups whose name contains this, case-insensitively (an extension).",
                text().max_length(Some(values::MAX_NAME_CHARS)),
            ),
        ]
    }
}

failures!(ListGroupsFailures: team;
    ApiError::invalid("keyword must be at most 64 characters"),
    RuleError::ParentGroupNotFound,
);

/// List groups.
///
/// Without `parent_id`: every valid group, by depth, then `order` descending, then `id`
/// (parents before their children). With `parent_id`: its children by `order` descending, then
/// `id`.
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/groups",
    tag = "groups",
    params(
        TeamPath,
        PageQuery,
        ListGroupsQuery,
        AppidQuery,
    ),
    responses(
        (status = 200, description = "One page of groups.",
            body = GroupListAnswer),
        ListGroupsFailures,
    ),
)]
pub async fn list_groups(TeamCall(state, caller, team_id): TeamCall, query: QueryParams) -> Answer {
    let filter = group_filter(&query)?;
    let page = query.page()?;
    let page = state
        .service
        .list_groups(&caller, team_id, &filter, page, |directory, rows, total| {
            group_page_json(&state, team_id, directory, rows, total)
        })
        .await?;
    Ok(Reply::json(page))
}

/// The group of the path, after the team.
#[derive(Deserialize)]
pub struct GroupPath {
    group_id: GroupId,
}

failures!(GetGroupFailures: team;
    ApiError::invalid("the request is malformed"),
    RuleError::GroupNotFound,
);

/// Get a group (an extension).
///
/// A deleted group is `contacts_group_not_found`.
#[utoipa::path(
    get,
    path = "/api/contacts/teams/{team_id}/groups/{group_id}",
    tag = "groups",
    params(
        TeamPath,
        ("group_id" = i64, Path, minimum = 1, maximum = 4294967295_i64,
            description = "The group's id."),
        AppidQuery,
    ),
    responses(
        (status = 200, description = "The group.", body = GroupAnswer),
        GetGroupFailures,
    ),
)]
pub async fn get_group(
    TeamCall(state, caller, team_id): TeamCall,
    Path(GroupPath { group_id }): Path<GroupPath>,
) -> Answer {
    let view = state.service.get_group(&caller, team_id, group_id).await?;
    Reply::data(&GroupData::new(&state, team_id, view))
}

/// A new group.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Sales", "parent_id": 0, "order": 0, "remote_id": "sales"}))]
pub struct CreateGroupBody {
    /// 1..64 characters after trimming, without `/` or control characters.
    #[schema(value_type = GroupName)]
    name: String,
    /// The parent group; `0` (the default) for the top level.
    #[schema(value_type = Option<GroupIdValue>, inline)]
    parent_id: Option<i64>,
    /// Larger comes first among siblings; default 0.
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
    /// The group's id in the client's own system, unique among the directory's valid groups;
    /// default `""` (none).
    #[schema(value_type = Option<RemoteId>)]
    remote_id: Option<String>,
}

/// The created group.
#[derive(Serialize, ToSchema)]
#[schema(as = CreatedGroup, example = json!({"group_id": 1, "name": "Sales"}))]
pub struct CreatedGroupData {
    #[schema(value_type = i64, minimum = 1, maximum = 4294967295_i64)]
    group_id: GroupId,
    /// The name as stored (trimmed).
    name: String,
}

failures!(CreateGroupFailures: team_body;
    RuleError::invalid("name must not contain '/'"),
    RuleError::ParentGroupNotFound,
    RuleError::DuplicatedRemoteId,
    RuleError::GroupTooDeep,
);

/// Create a group.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/groups",
    tag = "groups",
    params(TeamPath, AppidQuery),
    request_body = CreateGroupBody,
    responses(
        (status = 200, description = "The group was created.",
            body = CreatedGroupAnswer),
        CreateGroupFailures,
    ),
)]
pub async fn create_group(
    TeamCall(state, caller, team_id): TeamCall,
    RequestBody(body): RequestBody<CreateGroupBody>,
) -> Answer {
    let request = NewGroupRequest {
        name: values::GroupName::parse(&body.name)?,
        parent_id: values::group_id(body.parent_id.unwrap_or(ROOT_GROUP.get()))?,
        order: order(body.order.unwrap_or(0))?,
        remote_id: values::RemoteId::parse(body.remote_id.as_deref().unwrap_or_default())?,
    };
    let group_id = state
        .service
        .create_group(&caller, team_id, &request)
        .await?;
    Reply::data(&CreatedGroupData {
        group_id,
        name: request.name.into(),
    })
}

/// A group's new name, and optionally its order, parent and remote id.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Sales EMEA", "from_id": 0, "to_id": 2}))]
pub struct UpdateGroupBody {
    /// Required, as in the reference service: 1..64 characters after trimming, without `/`.
    #[schema(value_type = GroupName)]
    name: String,
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
    /// The current parent; if given and wrong, `invalid_argument`.
    #[schema(value_type = Option<GroupIdValue>, inline)]
    from_id: Option<i64>,
    /// The new parent (`0` = the top level).
    #[schema(value_type = Option<GroupIdValue>, inline)]
    to_id: Option<i64>,
    /// A new remote id (an extension).
    #[schema(value_type = Option<RemoteId>)]
    remote_id: Option<String>,
}

failures!(UpdateGroupFailures: team_body;
    RuleError::invalid("from_id is not the group's current parent"),
    RuleError::GroupNotFound,
    RuleError::ParentGroupNotFound,
    RuleError::DuplicatedRemoteId,
    RuleError::DefaultGroupModified,
    RuleError::GroupCycle,
    RuleError::GroupTooDeep,
);

/// Update or move a group.
///
/// Moving a group under itself or a descendant is `group_cycle`; a move that makes any group
/// of the moved subtree deeper than the limit is `group_too_deep`; group `0` is
/// `default_group_be_modified`.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/groups/{group_id}",
    tag = "groups",
    params(
        TeamPath,
        ("group_id" = inline(GroupIdValue), Path,
            description = "The group's id."),
        AppidQuery,
    ),
    request_body = UpdateGroupBody,
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateGroupFailures,
    ),
)]
pub async fn update_group(
    TeamCall(state, caller, team_id): TeamCall,
    Path(GroupPath { group_id }): Path<GroupPath>,
    RequestBody(body): RequestBody<UpdateGroupBody>,
) -> Answer {
    let update = GroupUpdate {
        name: values::GroupName::parse(&body.name)?,
        order: body.order.map(order).transpose()?,
        from_id: body.from_id.map(values::group_id).transpose()?,
        to_id: body.to_id.map(values::group_id).transpose()?,
        remote_id: body
            .remote_id
            .as_deref()
            .map(values::RemoteId::parse)
            .transpose()?,
    };
    state
        .service
        .update_group(&caller, team_id, group_id, &update)
        .await?;
    Ok(Reply::empty())
}

/// The groups to delete.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"group_ids": [3, 4]}))]
pub struct DeleteGroupsBody {
    #[schema(schema_with = delete_groups_ids)]
    group_ids: Vec<GroupId>,
}

fn delete_groups_ids() -> ArrayBuilder {
    describe::group_ids(
        &format!("1..{MAX_DELETE_GROUPS} ids."),
        Some(1),
        MAX_DELETE_GROUPS,
        false,
    )
}

failures!(DeleteGroupsFailures: team_body;
    RuleError::invalid("group_ids must hold 1 to 100 ids"),
    RuleError::GroupNotFound,
    RuleError::DefaultGroupModified,
    RuleError::GroupNotEmpty,
);

/// Delete groups.
///
/// All or nothing: every group becomes a tombstone (`is_valid: false`, its `remote_id` free
/// again), or none does. A group with members, or with child groups outside the batch, is
/// `group_not_empty`.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/groups/batch_delete",
    tag = "groups",
    params(TeamPath, AppidQuery),
    request_body = DeleteGroupsBody,
    responses(
        (status = 200, description = "Deleted.", body = EmptyAnswer),
        DeleteGroupsFailures,
    ),
)]
pub async fn delete_groups(
    TeamCall(state, caller, team_id): TeamCall,
    RequestBody(body): RequestBody<DeleteGroupsBody>,
) -> Answer {
    state
        .service
        .delete_groups(&caller, team_id, &body.group_ids)
        .await?;
    Ok(Reply::empty())
}

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(delete_groups))
        .routes(routes!(get_group, update_group))
}
