//! SCIM Groups: the directory's groups. `displayName` is the name, `externalId` the remote id,
//! `members` the SCIM users placed in the group and the groups directly under it, and the
//! extension's `parent` the group it sits under (absent: the top level, where the groups of a
//! provider without a tree land).

use std::collections::HashSet;

use serde_json::Value;

use super::render::{self, Location};
use super::{REWRITE_ATTEMPTS, ScimResult, Target, Versioned, check_version, patched};
use crate::domain::RuleError;
use crate::domain::directory::Directory;
use crate::domain::scim::ScimError;
use crate::domain::scim::filter::{Filter, equality, matches};
use crate::domain::scim::patch::Operation;
use crate::domain::scim::schema::{self, GROUP_EXTENSION_SCHEMA};
use crate::domain::values::{GroupId, UserId};
use crate::service::directories::Origin;
use crate::service::{Service, ServiceError};
use crate::store::TeamRecord;

mod changes;

use changes::{ReadGroup, ScimIds, decide, deletion, desired, group_id, member_values, named_in};

impl Service {
    /// Look up the SCIM ids of `users` and the users of `scim_ids` that `ids` does not know
    /// yet (one query, none when it knows them all).
    async fn resolve(
        &self,
        team: &TeamRecord,
        ids: &mut ScimIds,
        users: &[UserId],
        scim_ids: &[&str],
    ) -> ScimResult<()> {
        let users: Vec<UserId> = users
            .iter()
            .filter(|u| !ids.checked.contains(u))
            .copied()
            .collect();
        let scim_ids: Vec<&str> = scim_ids
            .iter()
            .filter(|s| !ids.by_scim_id.contains_key(**s))
            .copied()
            .collect();
        if users.is_empty() && scim_ids.is_empty() {
            return Ok(());
        }
        let pairs = self
            .store
            .scim_user_ids(team.access.team_id, &users, &scim_ids)
            .await?;
        ids.checked.extend(users);
        for found in pairs {
            let user = found.user_id;
            ids.checked.insert(user);
            ids.by_scim_id.insert(found.scim_id.clone(), user);
            ids.by_user.insert(user, found.scim_id);
        }
        Ok(())
    }

    fn render_group(
        d: &Directory,
        id: GroupId,
        ids: &ScimIds,
        location: &Location,
    ) -> Result<Versioned, RuleError> {
        let group = d.group(id)?.group;
        Ok(render::group(
            &group,
            d,
            &|u| ids.by_user.get(&u).cloned(),
            location,
        ))
    }

    /// Group `id` as answered, its members' SCIM ids looked up through `ids` (with those of
    /// `named`, users the caller is about to need).
    async fn group_of(
        &self,
        team: &TeamRecord,
        id: GroupId,
        ids: &mut ScimIds,
        named: &[&str],
        location: &Location,
    ) -> ScimResult<Versioned> {
        // Members added between the look-up and the rendering are looked up on another turn;
        // the last turn renders what it knows.
        for turn in 0..3 {
            let rendered = self
                .directories
                .read(&*self.store, team, |d| {
                    let members = d.direct_members(id);
                    Ok(if turn == 2 || ids.knows(members) {
                        Ok(Self::render_group(d, id, ids, location).ok())
                    } else {
                        Err(members.to_vec())
                    })
                })
                .await?;
            match rendered {
                Ok(found) => {
                    return found.ok_or_else(|| {
                        ScimError::not_found(format!("no group with id {id}")).into()
                    });
                }
                Err(members) => self.resolve(team, ids, &members, named).await?,
            }
        }
        Err(ScimError::not_found(format!("no group with id {id}")).into())
    }

    pub async fn scim_get_group(
        &self,
        team: &TeamRecord,
        id: &str,
        location: &Location,
    ) -> ScimResult<Versioned> {
        self.group_of(team, group_id(id)?, &mut ScimIds::default(), &[], location)
            .await
    }

    pub async fn scim_list_groups(
        &self,
        team: &TeamRecord,
        filter: Option<&Filter>,
        location: &Location,
    ) -> ScimResult<Vec<Versioned>> {
        // The existence checks providers make (`displayName eq`, `externalId eq`) pick their
        // groups by the two attributes alone, before any member is looked up.
        let by_name = filter.filter(|f| {
            equality(f).is_some_and(|(path, _)| {
                path.sub.is_none()
                    && path.urn.is_none()
                    && ["displayName", "externalId"]
                        .iter()
                        .any(|name| path.name.eq_ignore_ascii_case(name))
            })
        });
        let (valid, members) = self
            .directories
            .read(&*self.store, team, |d| {
                let mut valid: Vec<GroupId> = d
                    .all_groups()
                    .filter(|g| g.is_valid)
                    .filter(|g| by_name.is_none_or(|f| matches(f, &render::names(g))))
                    .map(|g| g.id)
                    .collect();
                valid.sort_unstable();
                let members: Vec<UserId> = valid
                    .iter()
                    .flat_map(|id| d.direct_members(*id).iter().copied())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                Ok((valid, members))
            })
            .await?;
        let mut ids = ScimIds::default();
        self.resolve(team, &mut ids, &members, &[]).await?;
        Ok(self
            .directories
            .read(&*self.store, team, |d| {
                // A group deleted since is left out.
                Ok(valid
                    .into_iter()
                    .filter_map(|id| Self::render_group(d, id, &ids, location).ok())
                    .filter(|g| filter.is_none_or(|f| matches(f, &g.resource)))
                    .collect())
            })
            .await?)
    }

    /// Create or change a group as `body` says, in one decision and one commit.
    async fn write_group(
        &self,
        team: &TeamRecord,
        target: Option<(GroupId, &ReadGroup)>,
        body: &Value,
        mut ids: ScimIds,
        location: &Location,
    ) -> ScimResult<Option<Versioned>> {
        let stored = schema::normalize(body, &schema::GROUP)?;
        let current_members: &[UserId] = target.map_or(&[], |(_, read)| &read.members);
        let (target, read) = (target.map(|(id, _)| id), target.map(|(_, read)| read));
        self.resolve(team, &mut ids, current_members, &member_values(&stored))
            .await?;
        let want = desired(&stored, &ids)?;
        let max_depth = self.settings.max_group_depth;
        let (written, created) = self
            .directories
            .write(&*self.store, team, Origin::scim(), |d| {
                if let (Some(id), Some(read)) = (target, read)
                    && !read.stands(d, id, &ids)
                {
                    return Ok((Vec::new(), false));
                }
                Ok((decide(d, target, &want, &ids, max_depth)?, true))
            })
            .await?;
        if !written {
            return Ok(None);
        }
        let id = target.or(created.first().copied()).unwrap_or_default();
        Ok(Some(
            self.group_of(team, id, &mut ids, &[], location).await?,
        ))
    }

    pub async fn scim_create_group(
        &self,
        team: &TeamRecord,
        body: &Value,
        location: &Location,
    ) -> ScimResult<Versioned> {
        self.write_group(team, None, body, ScimIds::default(), location)
            .await?
            .ok_or_else(|| ServiceError::Busy.into())
    }

    pub async fn scim_replace_group(
        &self,
        target: Target<'_>,
        body: &Value,
    ) -> ScimResult<Versioned> {
        self.rewrite_group(target, &[], |_| Ok(body.clone())).await
    }

    pub async fn scim_patch_group(
        &self,
        target: Target<'_>,
        operations: &[Operation],
    ) -> ScimResult<Versioned> {
        let named = named_in(operations);
        self.rewrite_group(target, &named, |current| {
            patched(current, operations, GROUP_EXTENSION_SCHEMA)
        })
        .await
    }

    /// The group `target` names as the directory holds it, read before it is answered so that
    /// any write after the read is seen by [`ReadGroup::stands`] (`None`: it did not exist
    /// then), and as answered, refused unless its `If-Match` names its version, with the SCIM
    /// ids of its members and of the users `named`.
    async fn read_group(
        &self,
        target: Target<'_>,
        named: &[&str],
    ) -> ScimResult<(Option<ReadGroup>, GroupId, Versioned, ScimIds)> {
        let id = group_id(target.id)?;
        let read = self
            .directories
            .read(&*self.store, target.team, |d| Ok(ReadGroup::of(d, id)))
            .await?;
        let mut ids = ScimIds::default();
        let current = self
            .group_of(target.team, id, &mut ids, named, target.location)
            .await?;
        check_version(&current, target.if_match)?;
        Ok((read, id, current, ids))
    }

    /// Write the group `target` names whole, as `new` makes it from the group as answered
    /// (with the SCIM ids of the users `named`), over the group as it was read: should another
    /// write change the group's row or members between the read and the decision, nothing is
    /// written and the request is made again on the group as it then is (its `If-Match`
    /// checked again), so that no write undoes another.
    async fn rewrite_group(
        &self,
        target: Target<'_>,
        named: &[&str],
        new: impl Fn(Versioned) -> ScimResult<Value>,
    ) -> ScimResult<Versioned> {
        for _ in 0..REWRITE_ATTEMPTS {
            let (read, id, current, ids) = self.read_group(target, named).await?;
            let body = new(current)?;
            let Some(read) = read else {
                continue;
            };
            let written = self
                .write_group(target.team, Some((id, &read)), &body, ids, target.location)
                .await?;
            if let Some(written) = written {
                return Ok(written);
            }
        }
        Err(ServiceError::Busy.into())
    }

    /// Delete a group: its members leave it, the groups under it move up to its parent, and
    /// it becomes a tombstone, in one commit. With an `If-Match`, only the group as read is
    /// deleted: should another write change it between the read and the decision, the
    /// request is made again on the group as it then is.
    pub async fn scim_delete_group(&self, target: Target<'_>) -> ScimResult<()> {
        for _ in 0..REWRITE_ATTEMPTS {
            let (read, id, _, ids) = self.read_group(target, &[]).await?;
            let Some(read) = read else {
                continue;
            };
            let conditional = target.if_match.is_some();
            let (deleted, _) = self
                .directories
                .write(&*self.store, target.team, Origin::scim(), |d| {
                    if conditional && !read.stands(d, id, &ids) {
                        return Ok((Vec::new(), false));
                    }
                    Ok((deletion(d, id)?, true))
                })
                .await?;
            if deleted {
                return Ok(());
            }
        }
        Err(ServiceError::Busy.into())
    }
}
