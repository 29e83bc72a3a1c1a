//! SCIM Groups: the directory's groups. `displayName` is the name, `externalId` the remote id,
//! `members` the SCIM users placed in the group and the groups directly under it, and the
//! extension's `parent` the group it sits under (absent: the top level, where the groups of a
//! provider without a tree land).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::render::{self, Location};
use super::{REWRITE_ATTEMPTS, ScimResult, Target, Versioned, check_version, patched};
use crate::domain::RuleError;
use crate::domain::directory::{Change, Directory, GroupRef};
use crate::domain::scim::ScimError;
use crate::domain::scim::filter::{Filter, equality, matches};
use crate::domain::scim::patch::Operation;
use crate::domain::scim::schema::{self, GROUP_EXTENSION_SCHEMA};
use crate::domain::values::{Avatar, GroupId, Nickname, Source, UserId};
use crate::service::directories::Origin;
use crate::service::{Service, ServiceError, unix_now};
use crate::store::TeamRecord;

mod changes;

use changes::{ReadGroup, ScimIds, decide, desired, group_id, member_values, named_in, put};

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
            if let (Some(name), Some(avatar)) = (found.name, found.avatar) {
                ids.profiles.insert(user, (name, avatar));
            }
            ids.by_scim_id.insert(found.scim_id.clone(), user);
            ids.by_user.insert(user, found.scim_id);
        }
        Ok(())
    }

    /// Names and avatars of SCIM users, as their member rows are rewritten unchanged but
    /// for groups: those `ids` looked up already, the others in one query.
    async fn profiles_of(
        &self,
        team: &TeamRecord,
        users: &[UserId],
        ids: &ScimIds,
    ) -> ScimResult<HashMap<UserId, (Nickname, Avatar)>> {
        let mut profiles = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match ids.profiles.get(user) {
                Some(profile) => {
                    profiles.insert(*user, profile.clone());
                }
                None => missing.push(*user),
            }
        }
        let read = self
            .store
            .member_profiles(team.access.team_id, &missing)
            .await?;
        profiles.extend(read.into_iter().map(|p| (p.user_id, (p.name, p.avatar))));
        Ok(profiles)
    }

    /// Stored names and avatars of any members, as they are.
    async fn member_rows_of(
        &self,
        team: &TeamRecord,
        users: &[UserId],
    ) -> ScimResult<HashMap<UserId, (Nickname, Avatar)>> {
        let mut details = HashMap::with_capacity(users.len());
        for user in users {
            if let Some(found) = self
                .store
                .member_details(team.access.team_id, *user)
                .await?
            {
                details.insert(*user, (found.nickname, found.avatar));
            }
        }
        Ok(details)
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
        // Only the users whose groups change have their rows rewritten.
        let wanted: BTreeSet<UserId> = want.users.iter().copied().collect();
        let current = ids.known_among(current_members);
        let touched: Vec<UserId> = wanted.symmetric_difference(&current).copied().collect();
        let profiles = self.profiles_of(team, &touched, &ids).await?;
        let max_depth = self.settings.max_group_depth;
        let (written, created) = self
            .directories
            .write(&*self.store, team, Origin::scim(), |d| {
                if let (Some(id), Some(read)) = (target, read)
                    && !read.stands(d, id, &ids)
                {
                    return Ok((Vec::new(), false));
                }
                Ok((decide(d, target, &want, &ids, &profiles, max_depth)?, true))
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

    /// The group `target` names, as answered, refused unless its `If-Match` names the group's
    /// version, with the SCIM ids of its members and of the users `named`.
    async fn current_group(
        &self,
        target: Target<'_>,
        named: &[&str],
    ) -> ScimResult<(GroupId, Versioned, ScimIds)> {
        let id = group_id(target.id)?;
        let mut ids = ScimIds::default();
        let current = self
            .group_of(target.team, id, &mut ids, named, target.location)
            .await?;
        check_version(&current, target.if_match)?;
        Ok((id, current, ids))
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
            // Read before the group is answered, so that any write after it is seen.
            let read = match group_id(target.id) {
                Ok(id) => {
                    self.directories
                        .read(&*self.store, target.team, |d| Ok(ReadGroup::of(d, id)))
                        .await?
                }
                Err(_) => None,
            };
            let (id, current, ids) = self.current_group(target, named).await?;
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
    /// it becomes a tombstone, in one commit.
    pub async fn scim_delete_group(&self, target: Target<'_>) -> ScimResult<()> {
        let (id, _, _) = self.current_group(target, &[]).await?;
        let team = target.team;
        let members: Vec<UserId> = self
            .directories
            .read(&*self.store, team, |d| Ok(d.direct_members(id).to_vec()))
            .await?;
        let profiles = self.member_rows_of(team, &members).await?;
        self.directories
            .write(&*self.store, team, Origin::scim(), |d| {
                let now = unix_now();
                let mut group = d.group(id)?.group;
                let mut changes = Vec::new();
                for child in d.children_of(id) {
                    let mut child = d.group(*child)?.group;
                    child.source = Source::Sync;
                    child.upd_at = now;
                    let parent = GroupRef::Existing(group.parent_id);
                    changes.push(Change::UpdateGroup {
                        group: child,
                        parent,
                    });
                }
                for user in d.direct_members(id) {
                    let Some(placement) = d.placement(*user) else {
                        continue;
                    };
                    let groups = placement
                        .groups
                        .iter()
                        .filter(|g| **g != id)
                        .map(|g| GroupRef::Existing(*g))
                        .collect();
                    changes.push(put(d, *user, &profiles, groups));
                }
                group.is_valid = false;
                group.source = Source::Sync;
                group.upd_at = now;
                let parent = GroupRef::Existing(group.parent_id);
                changes.push(Change::UpdateGroup { group, parent });
                Ok((changes, ()))
            })
            .await?;
        Ok(())
    }
}
