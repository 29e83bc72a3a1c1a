//! The handlers: one per operation of the contract, each reading its request, calling the
//! service, and shaping the answer's `data` field for field as the contract shows it.
//!
//! Each handler also carries its part of the API description (`#[utoipa::path]`, see
//! [`super::openapi`]): parameters, body, data, and the failures it can answer with, declared
//! with [`failures!`] as the error values themselves.

use std::borrow::Cow;

use axum::Extension;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::envelope::{ApiError, Reply};
use super::extract::{Authenticated, JsonBody, MAX_ARRAY_ITEMS, QueryParams};
use super::json::{JsonText, JsonWriter};
use super::openapi::{Empty, Success, anonymous, authenticated, authenticated_body, failures};
use super::{ApiTime, AppState, ClientAddress};
use crate::domain::RuleError;
use crate::domain::directory::{Directory, Group, GroupFilter, GroupView, MemberFilter};
use crate::domain::values::{self, GroupId, OrgId, ROOT_GROUP, Role, TeamId, UserId};
use crate::service::{GroupUpdate, MemberUpdate, NewGroupRequest, ServiceError};

type Answer = Result<Reply, ApiError>;

// ----- shared parts of the description ------------------------------------------------------

// The success envelopes (named components of the description).
type CreatedGroupAnswer = Success<CreatedGroupData>;
type CreatedOrgAnswer = Success<CreatedOrgData>;
type EmptyAnswer = Success<Empty>;
type GroupAnswer = Success<GroupData>;
type GroupListAnswer = Success<ListData<GroupData>>;
type HealthAnswer = Success<Health>;
type MemberListAnswer = Success<ListData<MemberData>>;
type OrgAnswer = Success<OrgData>;
type TokenAnswer = Success<TokenData>;
type UserAnswer = Success<UserData>;

/// `appid` beside the token: the reference service's calling convention.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; the Authenticated extractor reads it"
)]
pub struct AppidQuery {
    /// The calling app. Optional with a Bearer token; when given, it must be the token's app.
    #[param(min_length = 1, example = "tpidk3v9q2xa")]
    appid: Option<String>,
}

/// `page` and `per_page` of a listing (read by [`QueryParams::page`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query string; QueryParams reads it")]
pub struct PageQuery {
    /// The page, from 1. A page past the end answers an empty `list` and the real `total`.
    #[param(minimum = 1, maximum = 4294967295_i64, default = 1)]
    page: Option<i64>,
    /// Rows per page.
    #[param(minimum = 1, maximum = 1000, default = 10)]
    per_page: Option<i64>,
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
                super::openapi::example_of(&T::schema())
                    .map(|row| serde_json::json!({"list": [row], "total": 1})),
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

fn order(raw: i64) -> Result<i64, ApiError> {
    if i32::try_from(raw).is_err() {
        return Err(ApiError::invalid("order must be a 32-bit integer"));
    }
    Ok(raw)
}

// ----- operations ---------------------------------------------------------------------------

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
/// No authentication. HTTP 503 (`Internal`) when the database does not answer.
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

// ----- tokens -------------------------------------------------------------------------------

/// A new access token.
#[derive(Serialize, ToSchema)]
#[schema(as = Token, example = json!({
    "access_token": "HvTt8cTmFd0vDBWxgc41IGZ7X0YL2Mme1Oc74Ae0GhPMQkOQ",
    "expires_in": 7200
}))]
pub struct TokenData {
    /// The token; it replaces every earlier token of the app.
    access_token: String,
    /// Its lifetime in seconds.
    #[schema(minimum = 1)]
    expires_in: u64,
}

/// The query of the token call.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query string; issue_token reads it")]
pub struct TokenQuery {
    /// The app's id.
    #[param(min_length = 1, example = "tpidk3v9q2xa")]
    appid: String,
    /// The app's secret.
    #[param(min_length = 1)]
    secret: String,
    /// Always `client_credential`.
    #[param(inline)]
    grant_type: GrantType,
}

/// The only grant type.
#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types, reason = "describes the query string")]
pub enum GrantType {
    client_credential,
}

failures!(TokenFailures: anonymous;
    ApiError::invalid("appid and secret are required"),
    ServiceError::InvalidCredential,
    ServiceError::Subscription,
    ServiceError::RateLimited { retry_after_secs: 1 },
);

/// Get an access token.
///
/// Issuing a token invalidates every earlier token of the app at once. A wrong appid or secret
/// is `invalid_credential` (never saying which); an app whose org is on the `free` plan gets
/// `invalid_org_subscription`. Wrong appids and secrets are limited per client address, right
/// ones per appid (60 a minute by default).
#[utoipa::path(
    get,
    path = "/api/oauth2/access_token",
    tag = "tokens",
    params(TokenQuery),
    responses(
        (status = 200, description = "A new token.", body = TokenAnswer),
        TokenFailures,
    ),
)]
pub async fn issue_token(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddress>>,
    query: QueryParams,
) -> Answer {
    let appid = query.single("appid")?.unwrap_or_default();
    let secret = query.single("secret")?.unwrap_or_default();
    let grant_type = query.single("grant_type")?.unwrap_or_default();
    if appid.is_empty() || secret.is_empty() {
        return Err(ApiError::invalid("appid and secret are required"));
    }
    let client = client.map(|Extension(client)| client.0);
    let issued = state
        .service
        .issue_token(appid, secret, grant_type, client)
        .await?;
    Reply::data(&TokenData {
        access_token: issued.access_token,
        expires_in: issued.expires_in,
    })
}

// ----- orgs ---------------------------------------------------------------------------------

/// A new org and its owner.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Acme", "user_id": 100000001}))]
pub struct CreateOrgBody {
    /// 1..64 characters after trimming.
    #[schema(min_length = 1, max_length = 64)]
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

failures!(CreateOrgFailures: authenticated_body;
    RuleError::invalid("name must be 1 to 64 characters without control characters"),
    ServiceError::Claim,
    ServiceError::Subscription,
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
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The org was created.", body = CreatedOrgAnswer),
        CreateOrgFailures,
    ),
)]
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

failures!(GetOrgFailures: authenticated;
    ApiError::invalid("the request is malformed"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::OrgNotFound,
);

/// Get an org.
///
/// Team apps reach only their own org, on plan `flagship`; platform apps the orgs they created.
#[utoipa::path(
    get,
    path = "/api/orgs/{org_id}",
    tag = "orgs",
    params(("org_id" = i64, Path, description = "The org's id."), AppidQuery),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The org.", body = OrgAnswer),
        GetOrgFailures,
    ),
)]
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

/// A user to register under the app's own id for it.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"openid": "u-1001", "nickname": "Ada", "avatar": "https://example.com/ada.png"}))]
pub struct RegisterUserBody {
    /// The app's id for the user, unique per app.
    #[schema(min_length = 1, max_length = 128)]
    openid: String,
    #[serde(default)]
    #[schema(max_length = 64)]
    nickname: String,
    /// An image URL.
    #[serde(default)]
    #[schema(max_length = 255)]
    avatar: String,
}

/// A user's ids.
#[derive(Serialize, ToSchema)]
#[schema(as = User, example = json!({"user_id": 100000001, "respondent_id": 500000001}))]
pub struct UserData {
    #[schema(value_type = i64)]
    user_id: UserId,
    /// The user's answering identity.
    respondent_id: i64,
}

failures!(RegisterUserFailures: authenticated_body;
    RuleError::invalid("openid must be 1 to 128 characters without control characters"),
    ServiceError::Claim,
    ServiceError::Subscription,
);

/// Register a user.
///
/// Registering an openid the app already registered returns the same user and updates its
/// nickname and avatar.
#[utoipa::path(
    post,
    path = "/api/sso/users",
    tag = "users",
    params(AppidQuery),
    request_body = RegisterUserBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The user.", body = UserAnswer),
        RegisterUserFailures,
    ),
)]
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

failures!(GetUserFailures: authenticated;
    RuleError::invalid("openid must be 1 to 128 characters without control characters"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::UserNotFound,
);

/// Get a user by openid.
#[utoipa::path(
    get,
    path = "/api/sso/users/{openid}",
    tag = "users",
    params(
        ("openid" = String, Path, min_length = 1, max_length = 128,
            description = "The app's id for the user."),
        AppidQuery,
    ),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The user.", body = UserAnswer),
        GetUserFailures,
    ),
)]
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

/// New profile values; a field left out (or `null`) keeps its value.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"nickname": "Ada L."}))]
pub struct UpdateUserBody {
    #[schema(max_length = 64)]
    nickname: Option<String>,
    /// An image URL.
    #[schema(max_length = 255)]
    avatar: Option<String>,
}

failures!(UpdateUserFailures: authenticated_body;
    RuleError::invalid("nickname must be at most 64 characters without control characters"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::UserNotFound,
);

/// Update a user's nickname or avatar.
#[utoipa::path(
    post,
    path = "/api/sso/users/{openid}",
    tag = "users",
    params(
        ("openid" = String, Path, min_length = 1, max_length = 128,
            description = "The app's id for the user."),
        AppidQuery,
    ),
    request_body = UpdateUserBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateUserFailures,
    ),
)]
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
    "upd_at": "2026-11-28T20:28:23+08:00"
}))]
pub struct GroupData {
    #[schema(value_type = i64, minimum = 1, maximum = 4294967295_i64)]
    id: GroupId,
    #[schema(value_type = i64)]
    team_id: TeamId,
    /// `0` for a top-level group.
    #[schema(value_type = i64, minimum = 0, maximum = 4294967295_i64)]
    parent_id: GroupId,
    /// `1` created or last changed through the API, `2` by a directory sync.
    #[schema(minimum = 1, maximum = 2)]
    source: i64,
    /// The group's id in the client's own system, or `""`.
    #[schema(max_length = 64)]
    remote_id: String,
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// The team's name, every ancestor's name and the group's own, joined by `/`.
    full_name: String,
    /// Larger comes first among siblings.
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: i64,
    /// `false` for a deleted group kept as a tombstone.
    is_valid: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: ApiTime,
    #[schema(value_type = String, format = DateTime)]
    upd_at: ApiTime,
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
            created_at: state.time(group.created_at),
            upd_at: state.time(group.upd_at),
        }
    }
}

/// A listed group as the directory holds it, written as [`GroupData`] serializes, by hand: a
/// page of groups is the hottest answer (see [`super::json`]). Nothing is copied: the strings
/// are the directory's, and `full_name` is written from the names on the group's path.
struct GroupRow<'a> {
    group: &'a Group,
    team_id: TeamId,
    team_name: &'a str,
    /// The names on the group's path, its own first ([`Directory::names_upwards`]).
    names_upwards: &'a [&'a str],
    created_at: ApiTime,
    upd_at: ApiTime,
}

impl GroupRow<'_> {
    /// The fields in [`GroupData`]'s declared order.
    fn write_json(&self, json: &mut JsonWriter) {
        let group = self.group;
        json.raw("{\"id\":");
        json.int(group.id);
        json.raw(",\"team_id\":");
        json.int(self.team_id);
        json.raw(",\"parent_id\":");
        json.int(group.parent_id);
        json.raw(",\"source\":");
        json.int(group.source.code());
        json.raw(",\"remote_id\":");
        json.str(&group.remote_id);
        json.raw(",\"name\":");
        json.str(&group.name);
        json.raw(",\"full_name\":");
        json.joined_str(
            std::iter::once(self.team_name).chain(self.names_upwards.iter().rev().copied()),
        );
        json.raw(",\"order\":");
        json.int(group.order);
        json.raw(",\"is_valid\":");
        json.bool(group.is_valid);
        json.raw(",\"created_at\":");
        let start = json.len();
        self.created_at.write_json(json);
        let created_at = start..json.len();
        json.raw(",\"upd_at\":");
        if self.upd_at == self.created_at {
            // A group never changed since: the same text again, not formatted twice.
            json.copy(created_at);
        } else {
            self.upd_at.write_json(json);
        }
        json.raw("}");
    }
}

/// One page of a listing.
#[derive(Serialize)]
pub struct ListData<T> {
    list: Vec<T>,
    total: u64,
}

/// A page of groups as `ListData<GroupData>` serializes, written from the directory's rows.
fn group_page_json(
    state: &AppState,
    team_id: TeamId,
    directory: &Directory,
    rows: &[&Group],
    total: u64,
) -> JsonText {
    let mut names = Vec::new();
    write_group_page(rows.len(), total, |n, json| {
        let group = rows[n];
        names.clear();
        directory.names_upwards(group.id, &mut names);
        GroupRow {
            group,
            team_id,
            team_name: directory.team_name(),
            names_upwards: &names,
            created_at: state.time(group.created_at),
            upd_at: state.time(group.upd_at),
        }
        .write_json(json);
    })
}

/// `{"list":[row 0,…,row len-1],"total":total}`, each row written by `write_row(n, …)`.
fn write_group_page(
    len: usize,
    total: u64,
    mut write_row: impl FnMut(usize, &mut JsonWriter),
) -> JsonText {
    let mut json = JsonWriter::with_capacity(64 + 256 * len);
    json.raw("{\"list\":[");
    for n in 0..len {
        if n > 0 {
            json.raw(",");
        }
        write_row(n, &mut json);
    }
    json.raw("],\"total\":");
    json.uint(total);
    json.raw("}");
    JsonText::written(json)
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

/// The query of the group list (read by [`group_filter`] and [`QueryParams::page`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; group_filter reads it"
)]
pub struct ListGroupsQuery {
    /// Only groups whose `remote_id` is one of these.
    #[param(max_items = 1000, style = Form, explode)]
    remote_ids: Option<Vec<String>>,
    /// Only the direct children of this group (`0` = the top level).
    #[param(minimum = 0, maximum = 4294967295_i64)]
    parent_id: Option<i64>,
    /// With `parent_id`: every group below it, not only its children (an extension).
    recursive: Option<bool>,
    /// Also list deleted groups (tombstones) (an extension).
    include_invalid: Option<bool>,
    /// Only groups whose `upd_at` is at or after this time (an extension).
    #[param(value_type = Option<String>, format = DateTime)]
    updated_since: Option<String>,
    /// Only groups whose name contains this, case-insensitively (an extension).
    #[param(max_length = 64)]
    keyword: Option<String>,
}

failures!(ListGroupsFailures: authenticated;
    ApiError::invalid("recursive needs parent_id"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
        ("team_id" = i64, Path, description = "The directory (team) id."),
        PageQuery,
        ListGroupsQuery,
        AppidQuery,
    ),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "One page of groups.",
            body = GroupListAnswer),
        ListGroupsFailures,
    ),
)]
pub async fn list_groups(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    query: QueryParams,
) -> Answer {
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

failures!(GetGroupFailures: authenticated;
    ApiError::invalid("the request is malformed"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("group_id" = i64, Path, minimum = 1, maximum = 4294967295_i64,
            description = "The group's id."),
        AppidQuery,
    ),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The group.", body = GroupAnswer),
        GetGroupFailures,
    ),
)]
pub async fn get_group(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path((team_id, group_id)): Path<(TeamId, GroupId)>,
) -> Answer {
    let view = state.service.get_group(&caller, team_id, group_id).await?;
    Reply::data(&GroupData::new(&state, team_id, view))
}

/// A new group.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Sales", "parent_id": 0, "order": 0, "remote_id": "sales"}))]
pub struct CreateGroupBody {
    /// 1..64 characters after trimming, without `/` or control characters.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// The parent group; `0` (the default) for the top level.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    parent_id: Option<GroupId>,
    /// Larger comes first among siblings; default 0.
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
    /// The group's id in the client's own system, unique among the directory's valid groups;
    /// default `""` (none).
    #[schema(max_length = 64)]
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

failures!(CreateGroupFailures: authenticated_body;
    RuleError::invalid("name must not contain '/'"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
    RuleError::ParentGroupNotFound,
    RuleError::DuplicatedRemoteId,
    RuleError::GroupTooDeep,
);

/// Create a group.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/groups",
    tag = "groups",
    params(("team_id" = i64, Path, description = "The directory (team) id."), AppidQuery),
    request_body = CreateGroupBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The group was created.",
            body = CreatedGroupAnswer),
        CreateGroupFailures,
    ),
)]
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

/// A group's new name, and optionally its order, parent and remote id.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "Sales EMEA", "from_id": 0, "to_id": 2}))]
pub struct UpdateGroupBody {
    /// Required, as in the reference service: 1..64 characters after trimming, without `/`.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
    /// The current parent; if given and wrong, `invalid_argument`.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    from_id: Option<GroupId>,
    /// The new parent (`0` = the top level).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    to_id: Option<GroupId>,
    /// A new remote id (an extension).
    #[schema(max_length = 64)]
    remote_id: Option<String>,
}

failures!(UpdateGroupFailures: authenticated_body;
    RuleError::invalid("from_id is not the group's current parent"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("group_id" = i64, Path, minimum = 0, maximum = 4294967295_i64,
            description = "The group's id."),
        AppidQuery,
    ),
    request_body = UpdateGroupBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateGroupFailures,
    ),
)]
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

/// The groups to delete.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"group_ids": [3, 4]}))]
pub struct DeleteGroupsBody {
    /// 1..100 ids.
    #[schema(min_items = 1, max_items = 100, inline, value_type = Vec<GroupIdValue>)]
    group_ids: Vec<GroupId>,
}

failures!(DeleteGroupsFailures: authenticated_body;
    RuleError::invalid("group_ids must hold 1 to 100 ids"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
    params(("team_id" = i64, Path, description = "The directory (team) id."), AppidQuery),
    request_body = DeleteGroupsBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Deleted.", body = EmptyAnswer),
        DeleteGroupsFailures,
    ),
)]
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

/// A member row.
#[derive(Serialize, ToSchema)]
#[schema(as = Member, example = json!({
    "user_id": 100000001,
    "respondent_id": 500000001,
    "name": "Ada",
    "avatar": "https://example.com/ada.png",
    "role": 4,
    "group_id": 1,
    "group_full_name": "Demo/Sales"
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
}

/// The query of the member list (read by [`list_members`] and [`QueryParams::page`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; list_members reads it"
)]
pub struct ListMembersQuery {
    /// Only members with one of these roles.
    #[param(max_items = 1000, style = Form, explode, value_type = Option<Vec<RoleCode>>)]
    roles: Option<Vec<i64>>,
    /// Also the members of every group below this one, once each (an extension).
    recursive: Option<bool>,
}

failures!(ListMembersFailures: authenticated;
    ApiError::invalid("roles must hold 1, 2, 3 or 4"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
    params(
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("group_id" = i64, Path, minimum = 0, maximum = 4294967295_i64,
            description = "The group (`0` = the whole directory)."),
        PageQuery,
        ListMembersQuery,
        AppidQuery,
    ),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "One page of members.",
            body = MemberListAnswer),
        ListMembersFailures,
    ),
)]
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

/// How to add a member.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"role": 4}))]
pub struct AddMemberBody {
    /// `2` team admin, `3` survey admin or `4` regular member (the default). With no admin
    /// seat left, an admin role is quietly lowered to 4. Ignored for an existing member.
    #[schema(minimum = 2, maximum = 4)]
    role: Option<i64>,
}

failures!(AddMemberFailures: authenticated_body;
    RuleError::invalid("role must be 2, 3 or 4"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("group_id" = i64, Path, minimum = 0, maximum = 4294967295_i64,
            description = "The group (`0` = the directory only)."),
        ("user_id" = i64, Path, description = "A registered user."),
        AppidQuery,
    ),
    request_body = AddMemberBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Added.", body = EmptyAnswer),
        AddMemberFailures,
    ),
)]
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

failures!(RemoveMemberFailures: authenticated;
    RuleError::invalid("the owner cannot be removed"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
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
    params(
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("group_id" = i64, Path, minimum = 0, maximum = 4294967295_i64,
            description = "The group (`0` = the whole directory)."),
        ("user_id" = i64, Path, description = "The member."),
        AppidQuery,
    ),
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Removed.", body = EmptyAnswer),
        RemoveMemberFailures,
    ),
)]
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

/// A member's new groups, profile or role; a field left out (or `null`) keeps its value.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"group_ids": [1, 2], "nickname": "Ada", "role": 3}))]
pub struct UpdateMemberBody {
    /// Replaces the member's whole set of groups (`[]` = the root only; `0` is ignored).
    #[schema(max_items = 1000, value_type = Option<Vec<GroupIdValue>>)]
    group_ids: Option<Vec<GroupId>>,
    /// The directory-level nickname.
    #[schema(max_length = 64)]
    nickname: Option<String>,
    /// The directory-level avatar URL.
    #[schema(max_length = 255)]
    avatar: Option<String>,
    /// `2`, `3` or `4`. The owner's role cannot change; with no admin seat left, an admin role
    /// is `exceed_user_limit`.
    #[schema(minimum = 2, maximum = 4)]
    role: Option<i64>,
}

/// A group id in a body: `0` (the root) or a group's id.
pub struct GroupIdValue;

impl PartialSchema for GroupIdValue {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(4294967295_i64))
            .into()
    }
}

impl ToSchema for GroupIdValue {}

failures!(UpdateMemberFailures: authenticated_body;
    RuleError::invalid("the owner's role cannot change"),
    ServiceError::Claim,
    ServiceError::Subscription,
    ServiceError::TeamNotFound,
    RuleError::ContactsUserNotFound,
    RuleError::GroupNotFound,
    RuleError::ExceedUserLimit,
);

/// Update a member.
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/users/{user_id}",
    tag = "members",
    params(
        ("team_id" = i64, Path, description = "The directory (team) id."),
        ("user_id" = i64, Path, description = "The member."),
        AppidQuery,
    ),
    request_body = UpdateMemberBody,
    security(("access_token" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateMemberFailures,
    ),
)]
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

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::values::Source;

    /// A listed group: its row, its team, the names on its path (its own first) and the
    /// team's time offset.
    type Listed = (Group, TeamId, String, Vec<String>, FixedOffset);

    prop_compose! {
        fn listed()(
            ids in proptest::array::uniform3(any::<i64>()),
            sync in any::<bool>(),
            strings in proptest::array::uniform3(any::<String>()),
            path in proptest::collection::vec(any::<String>(), 0..4),
            order in any::<i64>(),
            is_valid in any::<bool>(),
            created in -70_000_000_000_i64..300_000_000_000,
            updated in prop_oneof![Just(None), (-70_000_000_000_i64..300_000_000_000).prop_map(Some)],
            offset_minutes in -(23 * 60 + 59)..(23 * 60 + 59),
        ) -> Listed {
            let [id, team_id, parent_id] = ids;
            let [remote_id, name, team_name] = strings;
            let group = Group {
                id,
                parent_id,
                source: if sync { Source::Sync } else { Source::Api },
                remote_id,
                name,
                order,
                is_valid,
                created_at: created,
                upd_at: updated.unwrap_or(created),
            };
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("offset");
            (group, team_id, team_name, path, offset)
        }
    }

    proptest! {
        #[test]
        fn a_page_of_groups_is_written_as_serde_writes_it(
            rows in proptest::collection::vec(listed(), 0..4),
            total in any::<u64>(),
        ) {
            let by_hand = write_group_page(rows.len(), total, |n, json| {
                let (group, team_id, team_name, path, offset) = &rows[n];
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                GroupRow {
                    group,
                    team_id: *team_id,
                    team_name,
                    names_upwards: &names,
                    created_at: ApiTime::new(group.created_at, *offset),
                    upd_at: ApiTime::new(group.upd_at, *offset),
                }
                .write_json(json);
            });
            // What serde writes for the same page, full_name being `team/top/.../own`.
            let list = rows
                .iter()
                .map(|(group, team_id, team_name, path, offset)| GroupData {
                    id: group.id,
                    team_id: *team_id,
                    parent_id: group.parent_id,
                    source: group.source.code(),
                    remote_id: group.remote_id.clone(),
                    name: group.name.clone(),
                    full_name: std::iter::once(team_name.as_str())
                        .chain(path.iter().rev().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join("/"),
                    order: group.order,
                    is_valid: group.is_valid,
                    created_at: ApiTime::new(group.created_at, *offset),
                    upd_at: ApiTime::new(group.upd_at, *offset),
                })
                .collect();
            let by_serde = serde_json::to_vec(&ListData { list, total }).expect("serialize");
            prop_assert_eq!(
                String::from_utf8_lossy(by_hand.as_bytes()),
                String::from_utf8_lossy(&by_serde)
            );
        }
    }
}
