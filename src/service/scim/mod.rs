//! SCIM 2.0 provisioning (§12): tokens, and Users and Groups mapped onto the directory.
//!
//! A SCIM token serves one directory. A SCIM user is a user registered by the directory's SCIM
//! app (a team app of the org made with the first token) under an openid that is also its SCIM
//! `id`: a UUID given at creation that never changes. While `active` it is a member of the
//! directory (role 4) whose nickname is its `displayName` (else its `userName`); its other
//! attributes are kept as SCIM wrote them. A SCIM group is a directory group. Every change of
//! the directory goes through the same decision and versioned commit as the WeSurvey API's
//! (`Directories::write`), and is marked as a sync's (`source` 2).

mod groups;
mod render;
mod users;

use serde_json::{Map, Value};

use super::{Service, ServiceError, unix_now};
use crate::domain::RuleError;
use crate::domain::access::Plan;
use crate::domain::scim::ScimError;
use crate::domain::scim::patch::{self, Operation};
use crate::domain::values::TeamId;
use crate::store::scim::ScimTokenRecord;
use crate::store::{StoreError, TeamRecord};

pub use render::Location;

/// A request on one existing resource: the directory of its credential, the resource's id as
/// the request wrote it, the `If-Match` header it carried (the write is refused unless it names
/// the resource's version), and where the directory's resources are served (`meta.location`).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub team: &'a TeamRecord,
    pub id: &'a str,
    pub if_match: Option<&'a str>,
    pub location: &'a Location,
}

/// Why a SCIM request failed: a refusal of the SCIM layer itself, or of the service below.
#[derive(Debug)]
pub enum ScimFailure {
    Scim(ScimError),
    Service(ServiceError),
}

impl std::fmt::Display for ScimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScimFailure::Scim(error) => f.write_str(&error.detail),
            ScimFailure::Service(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ScimFailure {}

impl From<ScimError> for ScimFailure {
    fn from(error: ScimError) -> Self {
        ScimFailure::Scim(error)
    }
}

impl From<ServiceError> for ScimFailure {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Store(StoreError::NameTaken) => ScimFailure::Scim(ScimError::uniqueness(
                "userName is already taken in this directory",
            )),
            error => ScimFailure::Service(error),
        }
    }
}

impl From<StoreError> for ScimFailure {
    fn from(error: StoreError) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<RuleError> for ScimFailure {
    fn from(error: RuleError) -> Self {
        ScimFailure::Service(error.into())
    }
}

pub type ScimResult<T> = Result<T, ScimFailure>;

/// A freshly created SCIM token (its value is shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    pub id: i64,
    pub team_id: TeamId,
    pub token: String,
}

/// How often a PUT, PATCH or DELETE of a user, or a PUT or PATCH of a group, is made again after
/// another write of the resource came between its read and its write.
const REWRITE_ATTEMPTS: usize = 5;

/// A resource as answered, with its version (`meta.version`, the ETag).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub resource: Map<String, Value>,
    pub version: String,
}

/// `team` if its plan allows SCIM.
fn scim_plan(team: TeamRecord) -> ScimResult<TeamRecord> {
    if team.access.plan < Plan::Business {
        return Err(ServiceError::Subscription.into());
    }
    Ok(team)
}

/// `current` with a PATCH's `operations` applied (`extension`: the resource's extension schema,
/// whose attributes a path may name without their URN).
fn patched(
    current: Versioned,
    operations: &[Operation],
    extension: &'static str,
) -> ScimResult<Value> {
    let mut resource = current.resource;
    patch::apply(&mut resource, operations, &[extension])?;
    Ok(Value::Object(resource))
}

/// Refuse a write whose `If-Match` names another version of the resource.
fn check_version(current: &Versioned, if_match: Option<&str>) -> ScimResult<()> {
    match if_match {
        Some(wanted)
            if wanted.trim() != "*"
                && !wanted.split(',').any(|tag| tag.trim() == current.version) =>
        {
            Err(ScimError::status(
                412,
                "the resource changed: its version differs from If-Match",
            )
            .into())
        }
        _ => Ok(()),
    }
}

impl Service {
    /// The directory of `team_id` if its plan allows SCIM.
    async fn scim_team(&self, team_id: TeamId) -> ScimResult<TeamRecord> {
        let team = self
            .store
            .team(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        scim_plan(team)
    }

    /// The directory a SCIM bearer token serves (fresh: writes of other processes are seen),
    /// if its calls are within the rate limit.
    pub async fn scim_authenticate(&self, token: &str) -> ScimResult<TeamRecord> {
        let digest = super::auth::digest(token);
        // Read again once anything was committed, so that a revocation (or a plan change) made
        // through any process counts at once.
        let stamp = self.store.change_stamp();
        let team = self
            .scim_tokens
            .stamped(digest.clone(), stamp, self.store.scim_token_team(&digest))
            .await?
            .ok_or_else(|| ScimError::status(401, "missing, unknown or revoked SCIM token"))?;
        // A directory's SCIM calls share one budget of the per-appid call limit.
        self.check_call(&format!("scim:{}", team.access.team_id))?;
        scim_plan(team)
    }

    /// A new long-lived token for `team_id` (plans `business` and `flagship` only). The
    /// directory's SCIM app is made with its first token.
    pub async fn create_scim_token(&self, team_id: TeamId) -> ScimResult<ScimToken> {
        let team = self.scim_team(team_id).await?;
        self.scim_app(&team).await?;
        let token = super::auth::random_token();
        let id = self
            .store
            .create_scim_token(team_id, &super::auth::digest(&token), unix_now())
            .await?;
        Ok(ScimToken { id, team_id, token })
    }

    pub async fn scim_tokens(&self, team_id: TeamId) -> ScimResult<Vec<ScimTokenRecord>> {
        self.store
            .team(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        Ok(self.store.scim_tokens(team_id).await?)
    }

    /// Revoke a token at once; `None` when there is no such token.
    pub async fn revoke_scim_token(&self, id: i64) -> ScimResult<Option<ScimTokenRecord>> {
        Ok(self.store.revoke_scim_token(id).await?)
    }

    /// The appid of the team's SCIM app, made if it has none yet.
    async fn scim_app(&self, team: &TeamRecord) -> ScimResult<String> {
        let team_id = team.access.team_id;
        if let Some(appid) = self.store.scim_app(team_id).await? {
            return Ok(appid);
        }
        let app = self
            .create_team_app("SCIM provisioning", team.access.org_id)
            .await?;
        Ok(self.store.put_scim_app(team_id, &app.appid).await?)
    }
}
