//! Orgs (§4): created by platform apps through the API, or by an operator on the command line.

use super::{Credentials, MemberRow, Service, ServiceError, ServiceResult, unix_now};
use crate::domain::access::{AppScope, Caller, Plan};
use crate::domain::directory::MemberFilter;
use crate::domain::values::{OrgId, OrgName, Page, TeamId, UserId};
use crate::store::{NewOrg, OrgCreation};

/// How many orgs one user may create through the API.
pub const ORGS_PER_CREATOR: i64 = 5;

/// A created org and its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedOrg {
    pub org_id: OrgId,
    pub team_id: TeamId,
}

/// `GET /api/orgs/{id}` as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgView {
    pub id: OrgId,
    pub name: String,
    pub phone: String,
    pub creator_id: UserId,
    pub creator_name: String,
    pub creator_avatar_url: String,
    pub team_id: TeamId,
}

impl Service {
    /// Team apps reach the org endpoints only on the flagship plan, and never create orgs.
    async fn check_org_endpoint(&self, caller: &Caller) -> ServiceResult<()> {
        self.team_app_needs(caller, Plan::Flagship).await
    }

    /// A team app's own org must exist and be on `plan` or above; platform apps always pass.
    pub(super) async fn team_app_needs(&self, caller: &Caller, plan: Plan) -> ServiceResult<()> {
        if let AppScope::Team(org_id) = caller.scope {
            let org = self
                .store
                .org_access(org_id)
                .await?
                .ok_or(ServiceError::Claim)?;
            caller.may_touch(&org, plan)?;
        }
        Ok(())
    }

    /// `POST /api/orgs`: a platform app creates an org whose owner is `user_id`.
    pub async fn create_org(
        &self,
        caller: &Caller,
        name: &OrgName,
        user_id: UserId,
    ) -> ServiceResult<CreatedOrg> {
        self.check_org_endpoint(caller).await?;
        if !caller.is_platform() {
            return Err(ServiceError::Claim);
        }
        // Only a user this app registered: another tenant's user answers as an unknown id.
        if !self.is_tenant_user(caller, user_id).await? {
            return Err(ServiceError::UserNotFound);
        }
        self.check_org_quota(&caller.scope, &caller.appid).await?;
        let creation = self
            .store
            .create_org(
                NewOrg {
                    name: name.clone(),
                    plan: Plan::Business,
                    admin_seats: self.settings.default_admin_seats,
                    creator_appid: Some(caller.appid.clone()),
                    creator: Some((user_id, ORGS_PER_CREATOR)),
                },
                unix_now(),
            )
            .await?;
        match creation {
            OrgCreation::Created { org_id, team_id } => Ok(CreatedOrg { org_id, team_id }),
            OrgCreation::CreatorLimitReached => Err(ServiceError::OrgResourceExhausted),
        }
    }

    pub async fn get_org(&self, caller: &Caller, org_id: OrgId) -> ServiceResult<OrgView> {
        self.check_org_endpoint(caller).await?;
        let Some(org) = self.store.org(org_id).await? else {
            return Err(if caller.is_platform() {
                ServiceError::OrgNotFound
            } else {
                ServiceError::Claim
            });
        };
        caller.may_touch(&org.access, Plan::Flagship)?;
        Ok(OrgView {
            id: org.access.org_id,
            name: org.name,
            phone: org.phone,
            creator_id: org.creator_id.unwrap_or_default(),
            creator_name: org.creator_name,
            creator_avatar_url: org.creator_avatar,
            team_id: org.access.team_id,
        })
    }

    /// `GET /api/orgs/{id}/users`: the members of the org's directory, with the access and
    /// plan rules of [`Service::get_org`].
    pub async fn list_org_members(
        &self,
        caller: &Caller,
        org_id: OrgId,
        filter: &MemberFilter,
        page: Page,
    ) -> ServiceResult<(Vec<MemberRow>, u64)> {
        let org = self.get_org(caller, org_id).await?;
        self.list_members(caller, org.team_id, filter, page).await
    }

    /// `admin create-org`: an org, its directory, and a team app for it.
    pub async fn create_org_with_app(
        &self,
        name: &OrgName,
        plan: Plan,
        admin_seats: i64,
    ) -> ServiceResult<(CreatedOrg, Credentials)> {
        let creation = self
            .store
            .create_org(
                NewOrg {
                    name: name.clone(),
                    plan,
                    admin_seats,
                    creator_appid: None,
                    creator: None,
                },
                unix_now(),
            )
            .await?;
        let OrgCreation::Created { org_id, team_id } = creation else {
            return Err(ServiceError::OrgResourceExhausted);
        };
        let credentials = self.create_team_app(&format!("{name} app"), org_id).await?;
        Ok((CreatedOrg { org_id, team_id }, credentials))
    }
}
