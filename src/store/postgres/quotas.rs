//! [`QuotaStore`] on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::domain::values::OrgId;
use crate::store::StoreResult;
use crate::store::quotas::{
    APP_ORG_QUOTA, ORG_QUOTA, ORGS_CREATED_BY, OrgQuota, QuotaStore, SET_APP_ORG_QUOTA,
    SET_ORG_QUOTA,
};

#[async_trait]
impl QuotaStore for PostgresStore {
    async fn org_quota(&self, org_id: OrgId) -> StoreResult<OrgQuota> {
        let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(ORG_QUOTA)
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(
            row.map_or_else(OrgQuota::default, |(max_groups, max_members)| OrgQuota {
                max_groups,
                max_members,
            }),
        )
    }

    async fn set_org_quota(&self, org_id: OrgId, quota: OrgQuota) -> StoreResult<()> {
        sqlx::query(SET_ORG_QUOTA)
            .bind(org_id)
            .bind(quota.max_groups)
            .bind(quota.max_members)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn app_org_quota(&self, appid: &str) -> StoreResult<Option<i64>> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(APP_ORG_QUOTA)
            .bind(appid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.and_then(|(max_orgs,)| max_orgs))
    }

    async fn set_app_org_quota(&self, appid: &str, max_orgs: Option<i64>) -> StoreResult<()> {
        sqlx::query(SET_APP_ORG_QUOTA)
            .bind(appid)
            .bind(max_orgs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn orgs_created_by(&self, appid: &str) -> StoreResult<i64> {
        let (count,): (i64,) = sqlx::query_as(ORGS_CREATED_BY)
            .bind(appid)
            .fetch_one(&self.pool)
            .await?;
        Ok(count)
    }
}
