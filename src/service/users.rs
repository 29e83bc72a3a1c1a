//! Third-party users (§7): identities an app registers under its own openids.

use super::{Service, ServiceError, ServiceResult, unix_now};
use crate::domain::access::{AppScope, Caller, Plan};
use crate::domain::values::{Avatar, Nickname, Openid, UserId};
use crate::store::{NewUser, UserRecord};

impl Service {
    /// Team apps need a plan with third-party users; platform apps always may.
    async fn may_manage_users(&self, caller: &Caller) -> ServiceResult<()> {
        self.team_app_needs(caller, Plan::Business).await
    }

    /// Register `openid` for the calling app; registering it again returns the same user with
    /// the new nickname and avatar.
    pub async fn register_user(
        &self,
        caller: &Caller,
        openid: &Openid,
        nickname: &Nickname,
        avatar: &Avatar,
    ) -> ServiceResult<UserRecord> {
        self.may_manage_users(caller).await?;
        Ok(self
            .store
            .register_user(
                &caller.appid,
                NewUser {
                    openid,
                    nickname,
                    avatar,
                },
                unix_now(),
            )
            .await?)
    }

    /// Whether the caller's tenant registered the user: for a team app, any app of its org;
    /// for a platform app, itself (§3).
    pub(super) async fn is_tenant_user(
        &self,
        caller: &Caller,
        user_id: UserId,
    ) -> ServiceResult<bool> {
        let org_id = match caller.scope {
            AppScope::Team(org_id) => Some(org_id),
            AppScope::Platform => None,
        };
        Ok(self
            .store
            .user_registered_by(user_id, &caller.appid, org_id)
            .await?)
    }

    pub async fn user_by_openid(
        &self,
        caller: &Caller,
        openid: &Openid,
    ) -> ServiceResult<UserRecord> {
        self.may_manage_users(caller).await?;
        self.store
            .user_by_openid(&caller.appid, openid)
            .await?
            .ok_or(ServiceError::UserNotFound)
    }

    pub async fn update_user(
        &self,
        caller: &Caller,
        openid: &Openid,
        nickname: Option<&Nickname>,
        avatar: Option<&Avatar>,
    ) -> ServiceResult<()> {
        self.may_manage_users(caller).await?;
        let (nickname, avatar) = (nickname.map(Nickname::as_str), avatar.map(Avatar::as_str));
        let user_id = self
            .store
            .update_user(&caller.appid, openid, nickname, avatar)
            .await?
            .ok_or(ServiceError::UserNotFound)?;
        // A member without a nickname of its own shows the user's, in every directory.
        self.profiles
            .forget(|(_, profile)| profile.user_id == user_id);
        Ok(())
    }
}
