//! Tokens (§3): `GET /api/oauth2/access_token`.

use axum::Extension;
use axum::extract::State;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Answer;
use crate::http::describe::{Success, anonymous, failures};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::QueryParams;
use crate::http::{AppState, ClientAddress};
use crate::service::ServiceError;

type TokenAnswer = Success<TokenData>;

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

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token))
}
