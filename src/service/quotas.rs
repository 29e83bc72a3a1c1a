//! Quotas: how large one team's directory may grow (groups, members) and how many orgs one
//! platform app may create, so that no tenant can fill the server's memory or database.
//!
//! Each has a server default ([`QuotaSettings`]); `contactsd admin set-quota` overrides it for
//! one org or one platform app. Only a write that makes a directory larger is refused past a
//! quota (`ResourceExhausted` / `group_quota_exceeded`, `member_quota_exceeded`,
//! `org_quota_exceeded`): a team over a quota lowered below its size can still shrink, rename
//! and move. Directory writes are checked under the team's write gate on the copy the write is
//! decided on, so concurrent writes of one process cannot pass a quota together; across
//! processes the store's version check makes the loser decide again, on the new size.

use std::sync::Arc;

use super::{Service, ServiceError, ServiceResult};
use crate::domain::access::AppScope;
use crate::domain::directory::Directory;
use crate::domain::sync::SyncReport;
use crate::domain::values::OrgId;
use crate::metrics::Metrics;
use crate::store::TeamRecord;
use crate::store::quotas::OrgQuota;

/// The server's default quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Valid groups per directory.
    pub max_groups: i64,
    /// Members per directory.
    pub max_members: i64,
    /// Orgs one platform app may create.
    pub max_orgs_per_app: i64,
}

impl Default for QuotaSettings {
    /// The documented scale, with room: a directory of 1,000,000 groups and 5,000,000
    /// members (about 0.9 GB in memory, docs/DESIGN.md), 10,000 orgs per platform app.
    fn default() -> Self {
        QuotaSettings {
            max_groups: 1_000_000,
            max_members: 5_000_000,
            max_orgs_per_app: 10_000,
        }
    }
}

/// Which quota a write would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    Groups,
    Members,
    Orgs,
}

impl QuotaKind {
    fn label(self) -> &'static str {
        match self {
            QuotaKind::Groups => "groups",
            QuotaKind::Members => "members",
            QuotaKind::Orgs => "orgs",
        }
    }
}

/// Count `error` in `metrics` if it is a quota's refusal. Called where a refusal leaves the
/// service for good (a write decided again after a lost race is refused once).
pub(super) fn count_refusal(metrics: Option<&Arc<Metrics>>, error: &ServiceError) {
    if let (Some(metrics), ServiceError::QuotaExceeded(kind)) = (metrics, error) {
        metrics.quota_refusal(kind.label());
    }
}

/// One team's quotas in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TeamQuota {
    max_groups: i64,
    max_members: i64,
}

/// How a write changes a directory's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Growth {
    pub groups_added: u64,
    pub groups_removed: u64,
    pub members_added: u64,
    pub members_removed: u64,
}

impl From<&SyncReport> for Growth {
    fn from(report: &SyncReport) -> Growth {
        Growth {
            groups_added: report.groups_created,
            groups_removed: report.groups_deleted,
            members_added: report.members_added,
            members_removed: report.members_removed,
        }
    }
}

/// `size + added - removed > max`, for a write that grows the directory.
fn exceeds(size: usize, added: u64, removed: u64, max: i64) -> bool {
    added > removed && size as i128 + i128::from(added) - i128::from(removed) > i128::from(max)
}

impl TeamQuota {
    /// Refuse a write that makes `directory` larger than the quotas.
    pub(super) fn check(&self, directory: &Directory, growth: Growth) -> ServiceResult<()> {
        if exceeds(
            directory.member_count(),
            growth.members_added,
            growth.members_removed,
            self.max_members,
        ) {
            return Err(ServiceError::QuotaExceeded(QuotaKind::Members));
        }
        // Stored groups (tombstones too) are counted in O(1); only when they would not fit are
        // the valid ones counted.
        let (added, removed) = (growth.groups_added, growth.groups_removed);
        if exceeds(
            directory.stored_group_count(),
            added,
            removed,
            self.max_groups,
        ) && exceeds(
            directory.valid_group_count(),
            added,
            removed,
            self.max_groups,
        ) {
            return Err(ServiceError::QuotaExceeded(QuotaKind::Groups));
        }
        Ok(())
    }
}

impl Service {
    /// The quotas in force for `team`'s directory.
    pub(super) async fn team_quota(&self, team: &TeamRecord) -> ServiceResult<TeamQuota> {
        let org_id = team.access.org_id;
        let stored = match self.org_quotas.get(&org_id) {
            Some(stored) => stored,
            None => {
                let stored = self.store.org_quota(org_id).await?;
                self.org_quotas.put(org_id, stored);
                stored
            }
        };
        let defaults = self.settings.quotas;
        Ok(TeamQuota {
            max_groups: stored.max_groups.unwrap_or(defaults.max_groups),
            max_members: stored.max_members.unwrap_or(defaults.max_members),
        })
    }

    /// Refuse an org creation by a platform app that created its quota of orgs already.
    pub(super) async fn check_org_quota(&self, scope: &AppScope, appid: &str) -> ServiceResult<()> {
        if !matches!(scope, AppScope::Platform) {
            return Ok(());
        }
        let max_orgs = match self.store.app_org_quota(appid).await? {
            Some(max_orgs) => max_orgs,
            None => self.settings.quotas.max_orgs_per_app,
        };
        if self.store.orgs_created_by(appid).await? >= max_orgs {
            let refusal = ServiceError::QuotaExceeded(QuotaKind::Orgs);
            count_refusal(self.metrics.as_ref(), &refusal);
            return Err(refusal);
        }
        Ok(())
    }

    /// `admin set-quota --org-id`: change the given quotas of one org (`None` keeps the stored
    /// value) and answer what is stored afterwards (`None`: the server's default).
    pub async fn set_org_quota(
        &self,
        org_id: OrgId,
        max_groups: Option<i64>,
        max_members: Option<i64>,
    ) -> ServiceResult<OrgQuota> {
        if self.store.org_access(org_id).await?.is_none() {
            return Err(ServiceError::OrgNotFound);
        }
        let quota = OrgQuota {
            max_groups,
            max_members,
        };
        let stored = self.store.set_org_quota(org_id, quota).await?;
        self.org_quotas.forget(|_| true);
        Ok(stored)
    }

    /// `admin set-quota --appid`: how many orgs a platform app may create.
    pub async fn set_app_org_quota(&self, appid: &str, max_orgs: i64) -> ServiceResult<()> {
        match self.store.app(appid).await? {
            Some(app) if app.org_id.is_none() => {
                Ok(self.store.set_app_org_quota(appid, Some(max_orgs)).await?)
            }
            _ => Err(ServiceError::InvalidCredential),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growth_past_the_limit_exceeds() {
        assert!(!exceeds(10, 0, 0, 10));
        assert!(exceeds(10, 1, 0, 10));
        assert!(!exceeds(10, 1, 1, 10));
        assert!(!exceeds(20, 0, 5, 10), "shrinking is always allowed");
        assert!(!exceeds(20, 1, 5, 10), "so is a write that shrinks overall");
        assert!(exceeds(0, u64::MAX, 0, i64::MAX));
    }
}
