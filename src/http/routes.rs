//! The handlers: one per operation of the contract, each reading its request, calling the
//! service, and shaping the answer's `data` field for field as the contract shows it.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::envelope::{ApiError, Reply};
use super::extract::{Authenticated, JsonBody, MAX_ARRAY_ITEMS, QueryParams};
use crate::domain::directory::{GroupFilter, GroupView, MemberFilter};
use crate::domain::values::{self, GroupId, OrgId, ROOT_GROUP, Role, TeamId, UserId};
use crate::service::{GroupUpdate, MemberUpdate, NewGroupRequest};

type Answer = Result<Reply, ApiError>;

fn order(raw: i64) -> Result<i64, ApiError> {
    if i32::try_from(raw).is_err() {
        return Err(ApiError::invalid("order must be a 32-bit integer"));
    }
    Ok(raw)
}

// ----- operations ---------------------------------------------------------------------------

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

pub async fn health(State(state): State<AppState>) -> Answer {
    if state.service.healthy().await {
        Reply::data(&Health { status: "ok" })
    } else {
        Err(ApiError::unavailable())
    }
}

// ----- tokens -------------------------------------------------------------------------------

#[derive(Serialize)]
struct TokenData {
    access_token: String,
    expires_in: u64,
}

pub async fn issue_token(State(state): State<AppState>, query: QueryParams) -> Answer {
    let appid = query.single("appid")?.unwrap_or_default();
    let secret = query.single("secret")?.unwrap_or_default();
    let grant_type = query.single("grant_type")?.unwrap_or_default();
    if appid.is_empty() || secret.is_empty() {
        return Err(ApiError::invalid("appid and secret are required"));
    }
    let issued = state.service.issue_token(appid, secret, grant_type).await?;
    Reply::data(&TokenData {
        access_token: issued.access_token,
        expires_in: issued.expires_in,
    })
}

// ----- orgs ---------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct CreateOrgBody {
    name: String,
    user_id: UserId,
}

#[derive(Serialize)]
struct CreatedOrgData {
    org_id: OrgId,
    team_id: TeamId,
}

pub async fn create_org(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<CreateOrgBody>,
) -> Answer {
    let name = values::org_name(&body.name)?;
    let created = state
        .service
        .create_org(&caller, &name, body.user_id)
        .await?;
    Reply::data(&CreatedOrgData {
        org_id: created.org_id,
        team_id: created.team_id,
    })
}

#[derive(Serialize)]
struct OrgData {
    id: OrgId,
    name: String,
    phone: String,
    current_user_role: i64,
    creator_id: UserId,
    creator_name: String,
    creator_avatar_url: String,
    team_id: TeamId,
}

pub async fn get_org(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(org_id): Path<OrgId>,
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

// ----- users --------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct RegisterUserBody {
    openid: String,
    #[serde(default)]
    nickname: String,
    #[serde(default)]
    avatar: String,
}

#[derive(Serialize)]
struct UserData {
    user_id: UserId,
    respondent_id: i64,
}

pub async fn register_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    JsonBody(body): JsonBody<RegisterUserBody>,
) -> Answer {
    let openid = values::openid(&body.openid)?;
    let nickname = values::nickname(&body.nickname)?;
    let avatar = values::avatar(&body.avatar)?;
    let user = state
        .service
        .register_user(&caller, &openid, &nickname, &avatar)
        .await?;
    Reply::data(&UserData {
        user_id: user.user_id,
        respondent_id: user.respondent_id,
    })
}

pub async fn get_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(openid): Path<String>,
) -> Answer {
    let openid = values::openid(&openid)?;
    let user = state.service.user_by_openid(&caller, &openid).await?;
    Reply::data(&UserData {
        user_id: user.user_id,
        respondent_id: user.respondent_id,
    })
}

#[derive(Deserialize)]
pub struct UpdateUserBody {
    nickname: Option<String>,
    avatar: Option<String>,
}

pub async fn update_user(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(openid): Path<String>,
    JsonBody(body): JsonBody<UpdateUserBody>,
) -> Answer {
    let openid = values::openid(&openid)?;
    let nickname = body.nickname.as_deref().map(values::nickname).transpose()?;
    let avatar = body.avatar.as_deref().map(values::avatar).transpose()?;
    state
        .service
        .update_user(&caller, &openid, nickname.as_deref(), avatar.as_deref())
        .await?;
    Ok(Reply::empty())
}

// ----- groups -------------------------------------------------------------------------------

#[derive(Serialize)]
struct GroupData {
    id: GroupId,
    team_id: TeamId,
    parent_id: GroupId,
    source: i64,
    remote_id: String,
    name: String,
    full_name: String,
    order: i64,
    is_valid: bool,
    created_at: String,
    upd_at: String,
}

impl GroupData {
    fn new(state: &AppState, team_id: TeamId, view: GroupView) -> GroupData {
        let group = view.group;
        GroupData {
            id: group.id,
            team_id,
            parent_id: group.parent_id,
            source: group.source.code(),
            remote_id: group.remote_id,
            name: group.name,
            full_name: view.full_name,
            order: group.order,
            is_valid: group.is_valid,
            created_at: state.format_time(group.created_at),
            upd_at: state.format_time(group.upd_at),
        }
    }
}

#[derive(Serialize)]
struct ListData<T> {
    list: Vec<T>,
    total: u64,
}

fn group_filter(query: &QueryParams) -> Result<GroupFilter, ApiError> {
    let parent = query.int("parent_id")?.map(values::group_id).transpose()?;
    let recursive = query.flag("recursive")?;
    if recursive && parent.is_none() {
        return Err(ApiError::invalid("recursive needs parent_id"));
    }
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

pub async fn list_groups(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    query: QueryParams,
) -> Answer {
    let filter = group_filter(&query)?;
    let page = query.page()?;
    let (rows, total) = state
        .service
        .list_groups(&caller, team_id, &filter, page)
        .await?;
    Reply::data(&ListData {
        list: rows
            .into_iter()
            .map(|view| GroupData::new(&state, team_id, view))
            .collect(),
        total,
    })
}

pub async fn get_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id)): Path<(TeamId, GroupId)>,
) -> Answer {
    let view = state.service.get_group(&caller, team_id, group_id).await?;
    Reply::data(&GroupData::new(&state, team_id, view))
}

#[derive(Deserialize)]
pub struct CreateGroupBody {
    name: String,
    parent_id: Option<GroupId>,
    order: Option<i64>,
    remote_id: Option<String>,
}

#[derive(Serialize)]
struct CreatedGroupData {
    group_id: GroupId,
    name: String,
}

pub async fn create_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    JsonBody(body): JsonBody<CreateGroupBody>,
) -> Answer {
    let request = NewGroupRequest {
        name: values::group_name(&body.name)?,
        parent_id: values::group_id(body.parent_id.unwrap_or(ROOT_GROUP))?,
        order: order(body.order.unwrap_or(0))?,
        remote_id: values::remote_id(body.remote_id.as_deref().unwrap_or_default())?,
    };
    let group_id = state
        .service
        .create_group(&caller, team_id, &request)
        .await?;
    Reply::data(&CreatedGroupData {
        group_id,
        name: request.name,
    })
}

#[derive(Deserialize)]
pub struct UpdateGroupBody {
    name: String,
    order: Option<i64>,
    from_id: Option<GroupId>,
    to_id: Option<GroupId>,
    remote_id: Option<String>,
}

pub async fn update_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id)): Path<(TeamId, GroupId)>,
    JsonBody(body): JsonBody<UpdateGroupBody>,
) -> Answer {
    let update = GroupUpdate {
        name: values::group_name(&body.name)?,
        order: body.order.map(order).transpose()?,
        from_id: body.from_id.map(values::group_id).transpose()?,
        to_id: body.to_id.map(values::group_id).transpose()?,
        remote_id: body
            .remote_id
            .as_deref()
            .map(values::remote_id)
            .transpose()?,
    };
    state
        .service
        .update_group(&caller, team_id, group_id, &update)
        .await?;
    Ok(Reply::empty())
}

#[derive(Deserialize)]
pub struct DeleteGroupsBody {
    group_ids: Vec<GroupId>,
}

pub async fn delete_groups(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    JsonBody(body): JsonBody<DeleteGroupsBody>,
) -> Answer {
    state
        .service
        .delete_groups(&caller, team_id, &body.group_ids)
        .await?;
    Ok(Reply::empty())
}

// ----- members ------------------------------------------------------------------------------

#[derive(Serialize)]
struct MemberData {
    user_id: UserId,
    respondent_id: i64,
    name: String,
    avatar: String,
    role: i64,
    group_id: GroupId,
    group_full_name: String,
}

pub async fn list_members(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id)): Path<(TeamId, GroupId)>,
    query: QueryParams,
) -> Answer {
    let roles = query
        .array("roles")?
        .map(|roles| {
            roles
                .iter()
                .map(|raw| {
                    raw.parse::<i64>()
                        .ok()
                        .and_then(Role::from_code)
                        .ok_or_else(|| ApiError::invalid("roles must hold 1, 2, 3 or 4"))
                })
                .collect::<Result<Vec<Role>, ApiError>>()
        })
        .transpose()?;
    let filter = MemberFilter {
        group: values::group_id(group_id)?,
        recursive: query.flag("recursive")?,
        roles,
    };
    let page = query.page()?;
    let (rows, total) = state
        .service
        .list_members(&caller, team_id, &filter, page)
        .await?;
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
            })
            .collect(),
        total,
    })
}

#[derive(Deserialize)]
pub struct AddMemberBody {
    role: Option<i64>,
}

pub async fn add_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id, user_id)): Path<(TeamId, GroupId, UserId)>,
    JsonBody(body): JsonBody<AddMemberBody>,
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

pub async fn remove_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id, user_id)): Path<(TeamId, GroupId, UserId)>,
) -> Answer {
    state
        .service
        .remove_member(&caller, team_id, values::group_id(group_id)?, user_id)
        .await?;
    Ok(Reply::empty())
}

#[derive(Deserialize)]
pub struct UpdateMemberBody {
    group_ids: Option<Vec<GroupId>>,
    nickname: Option<String>,
    avatar: Option<String>,
    role: Option<i64>,
}

pub async fn update_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, user_id)): Path<(TeamId, UserId)>,
    JsonBody(body): JsonBody<UpdateMemberBody>,
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
        nickname: body.nickname.as_deref().map(values::nickname).transpose()?,
        avatar: body.avatar.as_deref().map(values::avatar).transpose()?,
        role: body.role.map(Role::assignable).transpose()?,
    };
    state
        .service
        .update_member(&caller, team_id, user_id, &update)
        .await?;
    Ok(Reply::empty())
}
