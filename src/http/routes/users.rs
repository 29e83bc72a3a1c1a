//! Third-party users (§7): an app registers users under its own openids.

use axum::extract::Path;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Answer, AppidQuery, EmptyAnswer};
use crate::domain::RuleError;
use crate::domain::values::{self, UserId};
use crate::http::AppState;
use crate::http::describe::{Avatar, Nickname, Openid, Success, claimed, claimed_body, failures};
use crate::http::envelope::Reply;
use crate::http::extract::{AppCall, RequestBody};
use crate::service::ServiceError;

type UserAnswer = Success<UserData>;
type UserProfileAnswer = Success<UserProfileData>;

/// A user to register under the app's own id for it.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"openid": "u-1001", "nickname": "Ada", "avatar": "https://example.com/ada.png"}))]
pub struct RegisterUserBody {
    /// The app's id for the user, unique per app.
    #[schema(value_type = Openid)]
    openid: String,
    #[serde(default)]
    #[schema(value_type = Nickname)]
    nickname: String,
    /// An image URL.
    #[serde(default)]
    #[schema(value_type = Avatar)]
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

failures!(RegisterUserFailures: claimed_body;
    RuleError::invalid("openid must be 1 to 128 characters without control characters"),
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
    responses(
        (status = 200, description = "The user.", body = UserAnswer),
        RegisterUserFailures,
    ),
)]
pub async fn register_user(
    AppCall(state, caller): AppCall,
    RequestBody(body): RequestBody<RegisterUserBody>,
) -> Answer {
    let openid = values::Openid::parse(&body.openid)?;
    let nickname = values::Nickname::parse(&body.nickname)?;
    let avatar = values::Avatar::parse(&body.avatar)?;
    let user = state
        .service
        .register_user(&caller, &openid, &nickname, &avatar)
        .await?;
    Reply::data(&UserData {
        user_id: user.user_id,
        respondent_id: user.respondent_id,
    })
}

/// The user named in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path; the handlers read it")]
pub struct OpenidPath {
    /// The app's id for the user.
    #[param(inline, value_type = Openid)]
    openid: String,
}

/// A user as the app registered it.
#[derive(Serialize, ToSchema)]
#[schema(as = UserProfile, example = json!({
    "openid": "u-1001",
    "user_id": 100000001,
    "respondent_id": 500000001,
    "nickname": "Ada",
    "avatar": "https://example.com/ada.png"
}))]
pub struct UserProfileData {
    /// The app's id for the user.
    openid: String,
    #[schema(value_type = i64)]
    user_id: UserId,
    /// The user's answering identity.
    respondent_id: i64,
    nickname: String,
    avatar: String,
}

failures!(GetUserFailures: claimed;
    RuleError::invalid("openid must be 1 to 128 characters without control characters"),
    ServiceError::UserNotFound,
);

/// Get a user by openid.
#[utoipa::path(
    get,
    path = "/api/sso/users/{openid}",
    tag = "users",
    params(OpenidPath, AppidQuery),
    responses(
        (status = 200, description = "The user.", body = UserProfileAnswer),
        GetUserFailures,
    ),
)]
pub async fn get_user(AppCall(state, caller): AppCall, Path(openid): Path<String>) -> Answer {
    let openid = values::Openid::parse(&openid)?;
    let user = state.service.user_by_openid(&caller, &openid).await?;
    Reply::data(&UserProfileData {
        openid: openid.into(),
        user_id: user.user_id,
        respondent_id: user.respondent_id,
        nickname: user.nickname,
        avatar: user.avatar,
    })
}

/// New profile values; a field left out (or `null`) keeps its value.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"nickname": "Ada L."}))]
pub struct UpdateUserBody {
    #[schema(value_type = Option<Nickname>)]
    nickname: Option<String>,
    /// An image URL.
    #[schema(value_type = Option<Avatar>)]
    avatar: Option<String>,
}

failures!(UpdateUserFailures: claimed_body;
    RuleError::invalid("nickname must be at most 64 characters without control characters"),
    ServiceError::UserNotFound,
);

/// Update a user's nickname or avatar.
#[utoipa::path(
    post,
    path = "/api/sso/users/{openid}",
    tag = "users",
    params(OpenidPath, AppidQuery),
    request_body = Option<UpdateUserBody>,
    responses(
        (status = 200, description = "Updated.", body = EmptyAnswer),
        UpdateUserFailures,
    ),
)]
pub async fn update_user(
    AppCall(state, caller): AppCall,
    Path(openid): Path<String>,
    RequestBody(body): RequestBody<UpdateUserBody>,
) -> Answer {
    let openid = values::Openid::parse(&openid)?;
    let nickname = body
        .nickname
        .as_deref()
        .map(values::Nickname::parse)
        .transpose()?;
    let avatar = body
        .avatar
        .as_deref()
        .map(values::Avatar::parse)
        .transpose()?;
    state
        .service
        .update_user(&caller, &openid, nickname.as_ref(), avatar.as_ref())
        .await?;
    Ok(Reply::empty())
}

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register_user))
        .routes(routes!(get_user, update_user))
}
