//! Group operations (§5): list, get, create, update or move, batch delete.

use super::directories::Origin;
use super::quotas::Growth;
use super::{Service, ServiceResult, unix_now};
use crate::domain::RuleError;
use crate::domain::access::Caller;
use crate::domain::directory::{
    Change, Directory, Group, GroupFilter, GroupRef, GroupView, new_group,
};
use crate::domain::values::{
    GroupId, GroupName, MAX_DELETE_GROUPS, Page, RemoteId, Source, TeamId,
};

/// `POST /api/contacts/teams/{team_id}/groups`, validated.
#[derive(Debug, Clone)]
pub struct NewGroupRequest {
    pub name: GroupName,
    pub parent_id: GroupId,
    pub order: i64,
    pub remote_id: RemoteId,
}

/// `POST /api/contacts/teams/{team_id}/groups/{group_id}`, validated.
#[derive(Debug, Clone)]
pub struct GroupUpdate {
    pub name: GroupName,
    pub order: Option<i64>,
    pub from_id: Option<GroupId>,
    pub to_id: Option<GroupId>,
    pub remote_id: Option<RemoteId>,
}

impl Service {
    /// One page of groups and the number of all matches, handed to `render` with the
    /// directory they come from: the page is written while the directory is at hand, without
    /// copying a row.
    pub async fn list_groups<R>(
        &self,
        caller: &Caller,
        team_id: TeamId,
        filter: &GroupFilter,
        page: Page,
        render: impl FnOnce(&Directory, &[&Group], u64) -> R,
    ) -> ServiceResult<R> {
        let team = self.team_for(caller, team_id).await?;
        self.directories
            .read_weighed(
                &*self.store,
                &team,
                |d| d.listing_work(filter),
                |d| {
                    let (rows, total) = d.list_groups(filter, page)?;
                    Ok(render(d, &rows, total))
                },
            )
            .await
    }

    pub async fn get_group(
        &self,
        caller: &Caller,
        team_id: TeamId,
        group_id: GroupId,
    ) -> ServiceResult<GroupView> {
        let team = self.team_for(caller, team_id).await?;
        self.directories
            .read(&*self.store, &team, |d| d.group(group_id))
            .await
    }

    /// Returns the new group's id.
    pub async fn create_group(
        &self,
        caller: &Caller,
        team_id: TeamId,
        request: &NewGroupRequest,
    ) -> ServiceResult<GroupId> {
        let team = self.team_for(caller, team_id).await?;
        let max_depth = self.settings.max_group_depth;
        let quota = self.team_quota(&team).await?;
        let one_more = Growth {
            groups_added: 1,
            ..Growth::default()
        };
        let ((), created) = self
            .directories
            .write(&*self.store, &team, Origin::app(caller), |d| {
                d.check_create(request.parent_id, &request.remote_id, max_depth)?;
                quota.check(d, one_more)?;
                let group = new_group(
                    request.name.clone(),
                    request.remote_id.clone(),
                    request.order,
                    Source::Api,
                    unix_now(),
                );
                let parent = GroupRef::Existing(request.parent_id);
                Ok((vec![Change::CreateGroup { parent, group }], ()))
            })
            .await?;
        Ok(created[0])
    }

    pub async fn update_group(
        &self,
        caller: &Caller,
        team_id: TeamId,
        group_id: GroupId,
        update: &GroupUpdate,
    ) -> ServiceResult<()> {
        let team = self.team_for(caller, team_id).await?;
        let max_depth = self.settings.max_group_depth;
        self.directories
            .write(&*self.store, &team, Origin::app(caller), |d| {
                d.check_update(
                    group_id,
                    update.from_id,
                    update.to_id,
                    update.remote_id.as_deref(),
                    max_depth,
                )?;
                let mut group = d.group(group_id)?.group;
                group.name = update.name.clone();
                group.order = update.order.unwrap_or(group.order);
                group.parent_id = update.to_id.unwrap_or(group.parent_id);
                if let Some(remote_id) = &update.remote_id {
                    group.remote_id = remote_id.clone();
                }
                group.source = Source::Api;
                group.upd_at = unix_now();
                let parent = GroupRef::Existing(group.parent_id);
                Ok((vec![Change::UpdateGroup { group, parent }], ()))
            })
            .await?;
        Ok(())
    }

    /// All or nothing: every group becomes a tombstone, or none does.
    pub async fn delete_groups(
        &self,
        caller: &Caller,
        team_id: TeamId,
        group_ids: &[GroupId],
    ) -> ServiceResult<()> {
        if group_ids.is_empty() || group_ids.len() > MAX_DELETE_GROUPS {
            return Err(RuleError::invalid("group_ids must hold 1 to 100 ids").into());
        }
        let mut ids = group_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let team = self.team_for(caller, team_id).await?;
        self.directories
            .write(&*self.store, &team, Origin::app(caller), |d| {
                d.check_delete(&ids)?;
                let now = unix_now();
                let changes = ids
                    .iter()
                    .map(|id| {
                        let mut group = d.group(*id)?.group;
                        group.is_valid = false;
                        group.upd_at = now;
                        let parent = GroupRef::Existing(group.parent_id);
                        Ok(Change::UpdateGroup { group, parent })
                    })
                    .collect::<Result<Vec<_>, RuleError>>()?;
                Ok((changes, ()))
            })
            .await?;
        Ok(())
    }
}
