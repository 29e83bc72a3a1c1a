//! Quotas set per org and per platform app (`contactsd admin set-quota`); what is not set here
//! falls back to the server's defaults, which the service owns.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::values::OrgId;

/// An org's stored quotas; `None` means the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct OrgQuota {
    pub max_groups: Option<i64>,
    pub max_members: Option<i64>,
}

#[async_trait]
pub trait QuotaStore: Send + Sync {
    async fn org_quota(&self, org_id: OrgId) -> StoreResult<OrgQuota>;
    /// Store the quotas `quota` gives (`None` keeps the stored one) in one statement, so that
    /// two changes of different quotas both hold, and answer what is stored afterwards (the org
    /// must exist).
    async fn set_org_quota(&self, org_id: OrgId, quota: OrgQuota) -> StoreResult<OrgQuota>;
    /// How many orgs the platform app may create (`None`: the server's default).
    async fn app_org_quota(&self, appid: &str) -> StoreResult<Option<i64>>;
    /// Store it (the app must exist).
    async fn set_app_org_quota(&self, appid: &str, max_orgs: Option<i64>) -> StoreResult<()>;
    /// How many orgs the app created.
    async fn orgs_created_by(&self, appid: &str) -> StoreResult<i64>;
}

// The statements, valid on both backends.
pub(crate) const ORG_QUOTA: &str =
    "SELECT max_groups, max_members FROM org_quotas WHERE org_id = $1";
pub(crate) const SET_ORG_QUOTA: &str = "INSERT INTO org_quotas (org_id, max_groups, max_members) \
     VALUES ($1, $2, $3) ON CONFLICT (org_id) DO UPDATE \
     SET max_groups = COALESCE(excluded.max_groups, org_quotas.max_groups), \
     max_members = COALESCE(excluded.max_members, org_quotas.max_members) \
     RETURNING max_groups, max_members";
pub(crate) const APP_ORG_QUOTA: &str = "SELECT max_orgs FROM app_quotas WHERE appid = $1";
pub(crate) const SET_APP_ORG_QUOTA: &str = "INSERT INTO app_quotas (appid, max_orgs) \
     VALUES ($1, $2) ON CONFLICT (appid) DO UPDATE SET max_orgs = excluded.max_orgs";
pub(crate) const ORGS_CREATED_BY: &str = "SELECT COUNT(*) FROM orgs WHERE creator_appid = $1";

/// [`QuotaStore`] for `$store`, written once for both backends (the statements above).
macro_rules! impl_quota_store {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::domain::values::OrgId;
            use $crate::store::StoreResult;
            use $crate::store::backend::Backend;
            use $crate::store::quotas::{self, OrgQuota, QuotaStore};

            #[async_trait]
            impl QuotaStore for $store {
                async fn org_quota(&self, org_id: OrgId) -> StoreResult<OrgQuota> {
                    let row: Option<OrgQuota> = sqlx::query_as(quotas::ORG_QUOTA)
                        .bind(org_id)
                        .fetch_optional(self.reads())
                        .await?;
                    Ok(row.unwrap_or_default())
                }

                async fn set_org_quota(
                    &self,
                    org_id: OrgId,
                    quota: OrgQuota,
                ) -> StoreResult<OrgQuota> {
                    Ok(sqlx::query_as(quotas::SET_ORG_QUOTA)
                        .bind(org_id)
                        .bind(quota.max_groups)
                        .bind(quota.max_members)
                        .fetch_one(self.writes())
                        .await?)
                }

                async fn app_org_quota(&self, appid: &str) -> StoreResult<Option<i64>> {
                    let row: Option<(Option<i64>,)> = sqlx::query_as(quotas::APP_ORG_QUOTA)
                        .bind(appid)
                        .fetch_optional(self.reads())
                        .await?;
                    Ok(row.and_then(|(max_orgs,)| max_orgs))
                }

                async fn set_app_org_quota(
                    &self,
                    appid: &str,
                    max_orgs: Option<i64>,
                ) -> StoreResult<()> {
                    sqlx::query(quotas::SET_APP_ORG_QUOTA)
                        .bind(appid)
                        .bind(max_orgs)
                        .execute(self.writes())
                        .await?;
                    Ok(())
                }

                async fn orgs_created_by(&self, appid: &str) -> StoreResult<i64> {
                    let (count,): (i64,) = sqlx::query_as(quotas::ORGS_CREATED_BY)
                        .bind(appid)
                        .fetch_one(self.reads())
                        .await?;
                    Ok(count)
                }
            }
        };
    };
}

pub(crate) use impl_quota_store;
